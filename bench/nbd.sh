#!/bin/sh
# bench/nbd.sh: the NBD export measured against what a user would pick
# instead.  The same disk served over a Unix socket, in one run, round-robin
# (every server started for one run and stopped after it):
#
#   file       nbdkit's own file plugin on a raw image file, its defaults
#              (cache=default: reads and writes through the host's page
#              cache; fadvise=normal);
#   file_nc    the same with cache=none (nbdkit 1.32 has no O_DIRECT: it
#              evicts what it read or wrote from the page cache after each
#              request, and starts write-back of written ranges at once);
#   qemu       qemu-nbd -f raw --cache=none --aio=io_uring on that raw image:
#              O_DIRECT and io_uring, as lunfs's own file backend does
#              (dev/file.c opens the volume with O_DIRECT);
#   qemu_def   qemu-nbd -f raw with its defaults (--cache=writeback,
#              --aio=threads: the page cache);
#   lunfs      nbdkit with nbd/nbdkit-lunfs-plugin.c: a NBD_SIZE file of a
#              lunfs volume whose image is on the same host filesystem (the
#              image prefilled, as a LUN has every block, then mkfs.lunfs and
#              lunfs-cluster fill; the file written in full through
#              mount.lunfs with dd oflag=direct: every block mapped).
#
# The raw image: NBD_SIZE, prefilled with dd oflag=direct.  Workloads:
# nbdcopy of the whole disk out (to null:) and in (from a NBD_SIZE file of
# random bytes in the page cache, with --flush: the copy ends when the data
# is durable), and fio's nbd engine, 4 KiB random read and write at QD32 for
# NBD_SECS each.  Before every run the images are synced and dropped from
# the page cache (POSIX_FADV_DONTNEED on the two image files only), so each
# run starts cold and no write-back of one run falls into the next.  The
# server's CPU time (utime + stime from /proc/PID/stat, all its threads) is
# taken around each run.  bench/nbd_report.py writes the "Through the NBD
# export" section.
#
# Run by bench/run.sh (make bench; NBD=0 skips it), or alone by
# `make bench-nbd`, which replaces that section in docs/PERFORMANCE.md and
# keeps the rest.  Needs root (mount.lunfs to write the disk file).
# Whatever happens (an error, ^C, SIGTERM), every server and mount this
# script started is stopped (by its PID) and its directory removed.
#
# Environment (defaults in brackets):
#   B [build]  BENCH_DIR [/var/tmp]  the images go in a new directory there
#   NBD_ROUNDS [3]        round-robin rounds
#   NBD_SECS [6]          seconds per fio run
#   NBD_SIZE [2G]         the disk (raw image, lunfs file, copy source)
#   NBD_TARGETS [file file_nc qemu qemu_def lunfs]
#   NBD_FRAG              write the section to this file (run.sh sets it);
#                         unset: splice it into OUT [docs/PERFORMANCE.md]
#   NBD_CMD [make bench-nbd]  the command named in the report
set -u
set -f # no globbing: the URI has a "?"

B=${B:-build}
BENCH_DIR=${BENCH_DIR:-/var/tmp}
NBD_ROUNDS=${NBD_ROUNDS:-3}
NBD_SECS=${NBD_SECS:-6}
NBD_SIZE=${NBD_SIZE:-2G}
NBD_TARGETS=${NBD_TARGETS:-file file_nc qemu qemu_def lunfs}
NBD_FRAG=${NBD_FRAG:-}
NBD_CMD=${NBD_CMD:-make bench-nbd}
OUT=${OUT:-docs/PERFORMANCE.md}

MKFS=$B/bin/mkfs.lunfs
MOUNTD=$B/bin/mount.lunfs
LC=$B/bench/lunfs-cluster
PLUGIN=$B/lib/nbdkit-lunfs-plugin.so
for p in "$MKFS" "$MOUNTD" "$LC" "$PLUGIN"; do
	[ -e "$p" ] || { echo "bench-nbd: $p is missing (run make bench-nbd)" >&2; exit 1; }
done
PLUGIN=$(cd "$(dirname "$PLUGIN")" && pwd)/$(basename "$PLUGIN")
for c in nbdkit qemu-nbd nbdcopy nbdinfo fio python3 mountpoint; do
	command -v "$c" >/dev/null || { echo "bench-nbd: $c is not installed" >&2; exit 1; }
done
fio --enghelp 2>/dev/null | grep -qw nbd || { echo "bench-nbd: this fio has no nbd engine" >&2; exit 1; }
[ "$(id -u)" = 0 ] || { echo "bench-nbd: run as root (mount.lunfs)" >&2; exit 1; }

SIZE_B=$(numfmt --from=iec "$NBD_SIZE") || exit 1
MIB=1048576
# the volume: the disk file plus 1 GiB for lunfs's metadata
IMG_B=$((SIZE_B + (1 << 30)))

WORK=$(mktemp -d "$BENCH_DIR/lunfs-bench-nbd.XXXXXX") || exit 1
WORK=$(cd "$WORK" && pwd)
RAWIMG=$WORK/raw.img   # file, file_nc, qemu, qemu_def
LIMG=$WORK/lunfs.img   # the volume: /vm01/disk.img is served by lunfs
LMNT=$WORK/mnt         # mount.lunfs, only while the disk file is written
SRC=$WORK/src.raw      # the source of the copy in
SOCK=$WORK/nbd.sock
URI="nbd+unix:///?socket=$SOCK"
RES=$WORK/results
LOGS=$WORK/logs
mkdir -p "$LMNT" "$RES" "$LOGS" || exit 1
CHILD='' DPID='' SPID=''

gone() { [ ! -e "/proc/$1" ] || [ "$(awk '{ print $3 }' "/proc/$1/stat" 2>/dev/null)" = Z ]; }

# stop_server: SIGTERM to the server we started, SIGKILL after 30 s;
# returns its exit status
stop_server() {
	[ -n "$SPID" ] || return 0
	kill -TERM "$SPID" 2>/dev/null
	i=0
	while ! gone "$SPID" && [ $i -lt 300 ]; do sleep 0.1; i=$((i + 1)); done
	gone "$SPID" || { echo "bench-nbd: server $SPID did not exit; killing it" >&2; kill -KILL "$SPID"; }
	wait "$SPID"
	src=$?
	SPID=
	return $src
}

cleanup() {
	if [ -n "$CHILD" ]; then
		kill -TERM "$CHILD" 2>/dev/null
		wait "$CHILD" 2>/dev/null
		CHILD=
	fi
	stop_server
	if mountpoint -q "$LMNT" 2>/dev/null; then
		umount "$LMNT" 2>/dev/null || { sleep 1; umount "$LMNT" 2>/dev/null; } ||
			{ echo "bench-nbd: $LMNT busy; detaching it" >&2; umount -l "$LMNT"; }
	fi
	if [ -n "$DPID" ]; then
		i=0
		while ! gone "$DPID" && [ $i -lt 100 ]; do sleep 0.2; i=$((i + 1)); done
		gone "$DPID" || { echo "bench-nbd: mount.lunfs did not exit; killing it" >&2; kill -KILL "$DPID"; }
		wait "$DPID" 2>/dev/null
		DPID=
	fi
	rm -rf --one-file-system "$WORK"
}
BENCH_NAME=bench-nbd
. bench/lib.sh
prefill() { prefill_bs "$@"; }

T0=$(date +%s)
LOAD0=$(cut -d' ' -f1-3 /proc/loadavg)
echo "== nbd: $NBD_ROUNDS rounds; a disk of $NBD_SIZE; fio runs of $NBD_SECS s; targets: $NBD_TARGETS; in $WORK" >&2

echo "== nbd: the raw image, prefilled (dd oflag=direct)" >&2
prefill "$RAWIMG" "$SIZE_B" 4 || fail "cannot write $RAWIMG"

echo "== nbd: the lunfs volume: image prefilled, mkfs.lunfs, lunfs-cluster fill, the disk file written in full through mount.lunfs" >&2
prefill "$LIMG" "$IMG_B" 4 || fail "cannot write $LIMG"
MKFS_ARGS="-q -f -N 8 -J 8M"
# shellcheck disable=SC2086
bg 300 "$MKFS" $MKFS_ARGS "$LIMG" || fail "mkfs.lunfs failed"
bg 300 "$LC" fill "$LIMG" >/dev/null || fail "lunfs-cluster fill failed"
"$MOUNTD" "$LIMG" "$LMNT" -f -o host=bench-nbd >"$LOGS/mount.lunfs.log" 2>&1 &
DPID=$!
i=0
until [ "$(findmnt -n -o FSTYPE "$LMNT" 2>/dev/null)" = fuse.lunfs ]; do
	gone "$DPID" && { cat "$LOGS/mount.lunfs.log" >&2; fail "mount.lunfs exited"; }
	[ $i -lt 300 ] || fail "mount.lunfs did not mount in 30 s"
	sleep 0.1
	i=$((i + 1))
done
mkdir "$LMNT/vm01" || fail "mkdir through the mount"
prefill "$LMNT/vm01/disk.img" "$SIZE_B" 1 || fail "cannot write the disk file through the mount"
umount "$LMNT" || fail "cannot unmount $LMNT"
i=0
while ! gone "$DPID" && [ $i -lt 300 ]; do sleep 0.1; i=$((i + 1)); done
wait "$DPID" || fail "mount.lunfs exited with an error: $(tail -3 "$LOGS/mount.lunfs.log")"
DPID=

echo "== nbd: the copy source: $NBD_SIZE of random bytes (in the page cache)" >&2
bg 300 dd if=/dev/urandom of="$SRC" bs=4M count=$((SIZE_B / MIB / 4)) iflag=fullblock status=none ||
	fail "cannot write $SRC"
cat "$SRC" >/dev/null
sync -f "$WORK"
PREP_SECS=$(($(date +%s) - T0))

# server_cmd TARGET: the server's command line (also shown in the report)
server_cmd() {
	case $1 in
	file) echo "nbdkit --foreground -U $SOCK file file=$RAWIMG" ;;
	file_nc) echo "nbdkit --foreground -U $SOCK file file=$RAWIMG cache=none" ;;
	qemu) echo "qemu-nbd -f raw --cache=none --aio=io_uring --persistent --shared=8 -k $SOCK $RAWIMG" ;;
	qemu_def) echo "qemu-nbd -f raw --persistent --shared=8 -k $SOCK $RAWIMG" ;;
	lunfs) echo "nbdkit --foreground -U $SOCK $PLUGIN $LIMG file=/vm01/disk.img host=bench-nbd" ;;
	*) return 1 ;;
	esac
}

# start_server TARGET: the server in the background ($SPID), ready when
# nbdinfo can read the export's size
start_server() {
	rm -f "$SOCK"
	# the command line server_cmd prints, run (split at spaces: no path has one)
	# shellcheck disable=SC2046,SC2091
	$(server_cmd "$1") >>"$LOGS/$1.log" 2>&1 &
	SPID=$!
	i=0
	until [ -S "$SOCK" ] && nbdinfo --size "$URI" >/dev/null 2>&1; do
		gone "$SPID" && { tail -5 "$LOGS/$1.log" >&2; fail "server $1 exited"; }
		[ $i -lt 300 ] || fail "server $1 not ready in 30 s"
		sleep 0.1
		i=$((i + 1))
	done
}

# evict: the images durable and out of the page cache (only these files)
evict() {
	sync -f "$WORK"
	for f in "$RAWIMG" "$LIMG"; do
		dd if="$f" iflag=nocache count=0 status=none
	done
}

server_ticks() {
	awk '{ print $14 + $15 }' "/proc/${SPID:-0}/stat" 2>/dev/null || echo 0
}

COPY_OUT="nbdcopy $URI null:"
COPY_IN="nbdcopy --flush $SRC $URI"
FIO_COMMON="--ioengine=nbd --uri=$URI --bs=4k --iodepth=32 --time_based --runtime=$NBD_SECS --randrepeat=0 --norandommap --output-format=json"
FAILS=0
# one_run ROUND WORKLOAD TARGET: start the server, the run, stop the server
one_run() {
	r=$1 wl=$2 tg=$3
	out=$RES/$r.$wl.$tg
	evict
	start_server "$tg"
	t0=$(server_ticks)
	ok=1
	case $wl in
	copy_out | copy_in)
		[ "$wl" = copy_out ] && cmd=$COPY_OUT || cmd=$COPY_IN
		s0=$(date +%s.%N)
		# shellcheck disable=SC2086
		bg 600 $cmd 2>"$out.err" || ok=0
		s1=$(date +%s.%N)
		[ $ok = 1 ] && echo "$SIZE_B $s0 $s1" >"$out.copy"
		;;
	rand_read | rand_write)
		rw=randread
		[ "$wl" = rand_write ] && rw=randwrite
		# shellcheck disable=SC2086
		bg $((NBD_SECS * 3 + 120)) fio $FIO_COMMON --name="$wl" --rw=$rw --output="$out.json" 2>"$out.err" &&
			[ -s "$out.json" ] || { ok=0; rm -f "$out.json"; }
		;;
	esac
	echo "$(($(server_ticks) - t0)) $(getconf CLK_TCK)" >"$out.cpu"
	stop_server || { [ "$tg" = lunfs ] && { echo "bench-nbd: the lunfs nbdkit exited with an error: $(tail -3 "$LOGS/lunfs.log")" >&2; ok=0; }; }
	if [ $ok = 0 ]; then
		echo "bench-nbd: $wl on $tg (round $r) failed:" >&2
		sed 's/^/  /' "$out.err" >&2
		FAILS=$((FAILS + 1))
		return 1
	fi
	echo "  round $r $wl $tg: $(python3 bench/nbd_report.py --one "$out")" >&2
}

WLS="copy_out copy_in rand_read rand_write"
r=1
while [ "$r" -le "$NBD_ROUNDS" ]; do
	echo "== nbd: round $r of $NBD_ROUNDS" >&2
	for wl in $WLS; do
		for tg in $NBD_TARGETS; do
			one_run "$r" "$wl" "$tg"
		done
	done
	r=$((r + 1))
done
RUN_SECS=$(($(date +%s) - T0 - PREP_SECS))
LOAD1=$(cut -d' ' -f1-3 /proc/loadavg)
[ "$FAILS" = 0 ] || echo "bench-nbd: $FAILS runs failed" >&2

# the export's flags as nbdcopy sees them (multi-conn decides its connections)
for tg in $NBD_TARGETS; do
	evict
	start_server "$tg"
	nbdinfo "$URI" 2>/dev/null | awk -v t="$tg" '/can_multi_conn:/ { print t, $2 }' >>"$RES/multi_conn"
	stop_server
done

REV=$(git rev-parse --short HEAD 2>/dev/null || echo "?")
[ -n "$(git status --porcelain -- dev lock journal fs nbd 2>/dev/null)" ] && REV="$REV, with uncommitted changes"
CMDS=$WORK/commands
{
	for tg in $NBD_TARGETS; do echo "$tg	$(server_cmd "$tg")"; done
	echo "copy_out	$COPY_OUT"
	echo "copy_in	$COPY_IN"
	echo "rand_read	fio $FIO_COMMON --name=rand_read --rw=randread"
	echo "rand_write	fio $FIO_COMMON --name=rand_write --rw=randwrite"
} | sed "s|$WORK|\$W|g; s|$PLUGIN|$B/lib/nbdkit-lunfs-plugin.so|g" >"$CMDS"
VERS="$(nbdkit --version | head -1); $(qemu-nbd --version | head -1); $(nbdcopy --version | tr '\n' ' ' | sed 's/ $//'); $(fio --version)"
FRAG=${NBD_FRAG:-$WORK/nbd.md}
python3 bench/nbd_report.py --results "$RES" --out "$FRAG" --commands "$CMDS" \
	--cmd "$NBD_CMD" --rev "$REV" --date "$(date -u '+%Y-%m-%d %H:%M UTC')" \
	--load0 "$LOAD0" --load1 "$LOAD1" --prep-secs "$PREP_SECS" --run-secs "$RUN_SECS" \
	--rounds "$NBD_ROUNDS" --secs "$NBD_SECS" --size "$NBD_SIZE" --img-mib $((IMG_B / MIB)) \
	--mkfs "$MKFS_ARGS" --fs "$(findmnt -n -o FSTYPE,SOURCE -T "$BENCH_DIR")" --bench-dir "$BENCH_DIR" \
	--work "$WORK" --versions "$VERS" --targets "$NBD_TARGETS" --fails "$FAILS" ||
	fail "nbd_report.py failed"
if [ -z "$NBD_FRAG" ]; then
	python3 bench/nbd_report.py --splice "$FRAG" --into "$OUT" || fail "cannot write $OUT"
	echo "bench-nbd: wrote the NBD section of $OUT" >&2
fi
echo "bench-nbd: done: $PREP_SECS s preparing, $RUN_SECS s measuring; load average $LOAD0 at the start, $LOAD1 at the end" >&2
[ "$FAILS" = 0 ]
