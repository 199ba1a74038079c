#!/bin/sh
# bench/fuse.sh: the mount measured, as a VM uses it.  fio (io_uring,
# O_DIRECT) on three targets on the same host filesystem, in one run,
# round-robin (a, b, c, a, b, c, ...):
#
#   (a) raw    a prefilled image file on the host filesystem;
#   (b) lunfs  a file through the mount.lunfs FUSE mount of a volume on an
#              image file (the image prefilled on the host, as a LUN has every
#              block, then mkfs.lunfs; the file written in full through the
#              mount with dd oflag=direct: eager-zeroed, every block mapped);
#   (c) ext4   ext4 on a loop device (losetup --direct-io=on) over an image
#              file of the same size (prefilled the same way), the file
#              written in full with dd oflag=direct.
#
# Workloads: sequential write and read 1 MiB QD8, random read and write
# 4 KiB QD32, "4 VM disks on one host" (4 files, 4 jobs at once, random
# 4 KiB QD8 each, reads and writes mixed), a per-request latency probe at QD1
# (4 KiB random read and write), and the first write into a thin file (lunfs
# and ext4; never written, a new file every round) at 1 MiB QD8.  Each run
# is time_based, FUSE_SECS long (the thin run stops at the end of its file if
# that comes first).  The figures are parsed from fio --output-format=json by
# bench/fuse_report.py, which writes the "Through the FUSE mount" section.
#
# Run by bench/run.sh (make bench; FUSE=0 skips it), or alone by
# `make bench-fuse`, which replaces that section in docs/PERFORMANCE.md and
# keeps the rest.  Needs root (losetup, mount, FUSE).  Whatever happens (an
# error, ^C, SIGTERM), the FUSE mount and the ext4 mount are unmounted, the
# loop device detached, and the directory with the images removed.
#
# Environment (defaults in brackets):
#   B [build]  BENCH_DIR [/var/tmp]  the images go in a new directory there
#   FUSE_ROUNDS [3]      round-robin rounds
#   FUSE_SECS [6]        seconds per fio run
#   FUSE_LAT_SECS [3]    seconds per QD1 latency probe run (0 skips the probe)
#   FUSE_FILE_SIZE [2G]  the test file of each target (and the thin file)
#   FUSE_VM_SIZE [FUSE_FILE_SIZE]  each of the 4 VM disks
#   FUSE_VMS [4]  FUSE_VM_QD [8]  FUSE_VM_READ_PCT [70]
#   FUSE_THIN [1]        the thin first-write runs (0 skips them)
#   FUSE_FRAG            write the section to this file (run.sh sets it);
#                        unset: splice it into OUT [docs/PERFORMANCE.md]
#   FUSE_CMD [make bench-fuse]  the command named in the report
set -u

B=${B:-build}
BENCH_DIR=${BENCH_DIR:-/var/tmp}
FUSE_ROUNDS=${FUSE_ROUNDS:-3}
FUSE_SECS=${FUSE_SECS:-6}
FUSE_LAT_SECS=${FUSE_LAT_SECS:-3}
FUSE_FILE_SIZE=${FUSE_FILE_SIZE:-2G}
FUSE_VM_SIZE=${FUSE_VM_SIZE:-$FUSE_FILE_SIZE}
FUSE_VMS=${FUSE_VMS:-4}
FUSE_VM_QD=${FUSE_VM_QD:-8}
FUSE_VM_READ_PCT=${FUSE_VM_READ_PCT:-70}
FUSE_THIN=${FUSE_THIN:-1}
FUSE_FRAG=${FUSE_FRAG:-}
FUSE_CMD=${FUSE_CMD:-make bench-fuse}
OUT=${OUT:-docs/PERFORMANCE.md}

MKFS=$B/bin/mkfs.lunfs
MOUNTD=$B/bin/mount.lunfs
LC=$B/bench/lunfs-cluster
for p in "$MKFS" "$MOUNTD" "$LC"; do
	[ -x "$p" ] || { echo "bench-fuse: $p is missing (run make bench-fuse)" >&2; exit 1; }
done
for c in fio python3 losetup mkfs.ext4 mountpoint; do
	command -v "$c" >/dev/null || { echo "bench-fuse: $c is not installed" >&2; exit 1; }
done
[ "$(id -u)" = 0 ] || { echo "bench-fuse: run as root (losetup, mount, FUSE)" >&2; exit 1; }

bytes() { numfmt --from=iec "$1"; }
FILE_B=$(bytes "$FUSE_FILE_SIZE") && VM_B=$(bytes "$FUSE_VM_SIZE") || exit 1
# The volume holds the test file, the VM disks and the thin file, plus 1 GiB
# for lunfs's metadata (journals, inode table) and ext4's.
IMG_B=$((FILE_B + FUSE_VMS * VM_B + FILE_B + (1 << 30)))
MIB=1048576

WORK=$(mktemp -d "$BENCH_DIR/lunfs-bench-fuse.XXXXXX") || exit 1
WORK=$(cd "$WORK" && pwd) # absolute: mount.lunfs wants absolute paths
RAW=$WORK/raw          # (a): raw/disk.img, raw/vm0.img ...
LIMG=$WORK/lunfs.img   # (b): the volume's image, mounted on $LMNT
LMNT=$WORK/lunfs
EIMG=$WORK/ext4.img    # (c): the ext4 image, on a loop device, mounted on $EMNT
EMNT=$WORK/ext4
RES=$WORK/results      # one fio JSON per run
mkdir -p "$RAW" "$LMNT" "$EMNT" "$RES" || exit 1
CHILD= DPID= LOOP=

# gone PID: the process has exited (a zombie counts as exited)
gone() { [ ! -e "/proc/$1" ] || [ "$(awk '{ print $3 }' "/proc/$1/stat" 2>/dev/null)" = Z ]; }

cleanup() {
	if [ -n "$CHILD" ]; then
		kill -TERM "$CHILD" 2>/dev/null
		wait "$CHILD" 2>/dev/null
		CHILD=
	fi
	# the FUSE mount: a clean unmount (the daemon then exits), else detach and kill
	if mountpoint -q "$LMNT" 2>/dev/null; then
		umount "$LMNT" 2>/dev/null || { sleep 1; umount "$LMNT" 2>/dev/null; } ||
			{ echo "bench-fuse: $LMNT busy; detaching it" >&2; umount -l "$LMNT"; }
	fi
	if [ -n "$DPID" ]; then
		i=0
		while ! gone "$DPID" && [ $i -lt 100 ]; do sleep 0.2; i=$((i + 1)); done
		gone "$DPID" || { echo "bench-fuse: mount.lunfs did not exit; killing it" >&2; kill -KILL "$DPID"; }
		wait "$DPID" 2>/dev/null
		DPID=
	fi
	if mountpoint -q "$EMNT" 2>/dev/null; then
		umount "$EMNT" 2>/dev/null || { sleep 1; umount "$EMNT" 2>/dev/null; } ||
			{ echo "bench-fuse: $EMNT busy; detaching it" >&2; umount -l "$EMNT"; }
	fi
	# every loop device on our image (also one whose name we had not yet read)
	for l in $LOOP $(losetup -n -O NAME -j "$EIMG" 2>/dev/null); do
		losetup -d "$l" 2>/dev/null
	done
	LOOP=
	# anything else still mounted under our directory
	awk -v w="$WORK/" 'index($2, w) == 1 { print $2 }' /proc/mounts 2>/dev/null |
		while read -r m; do umount -l "$m"; done
	rm -rf --one-file-system "$WORK"
}
BENCH_NAME=bench-fuse
. bench/lib.sh

# prefill FILE BYTES: write FILE in full, 4 MiB O_DIRECT writes (1 MiB
# through FUSE, its largest request), then fsync.
prefill() {
	bs=4; case $1 in "$LMNT"/*) bs=1 ;; esac
	prefill_bs "$1" "$2" "$bs"
}

# prefill_set DIR: the test file and the VM disks in DIR, written in full
prefill_set() {
	prefill "$1/disk.img" "$FILE_B" || fail "cannot write $1/disk.img"
	v=0
	while [ $v -lt "$FUSE_VMS" ]; do
		prefill "$1/vm$v.img" "$VM_B" || fail "cannot write $1/vm$v.img"
		v=$((v + 1))
	done
}

T0=$(date +%s)
LOAD0=$(cut -d' ' -f1-3 /proc/loadavg)
echo "== fuse: $FUSE_ROUNDS rounds of ${FUSE_SECS} s runs; files of $FUSE_FILE_SIZE, $FUSE_VMS VM disks of $FUSE_VM_SIZE; images of $((IMG_B / MIB)) MiB in $WORK" >&2

echo "== fuse: (a) raw image files, prefilled" >&2
prefill_set "$RAW"

echo "== fuse: (b) lunfs: image prefilled, mkfs.lunfs, metadata holes filled, mount.lunfs" >&2
prefill "$LIMG" "$IMG_B" || fail "cannot write $LIMG"
MKFS_ARGS="-q -f -N 8 -J 8M"
# shellcheck disable=SC2086
bg 300 "$MKFS" $MKFS_ARGS "$LIMG" || fail "mkfs.lunfs failed"
bg 300 "$LC" fill "$LIMG" >/dev/null || fail "lunfs-cluster fill failed"
"$MOUNTD" "$LIMG" "$LMNT" -f -o host=bench-fuse >"$WORK/mount.lunfs.log" 2>&1 &
DPID=$!
i=0
until [ "$(findmnt -n -o FSTYPE "$LMNT" 2>/dev/null)" = fuse.lunfs ]; do
	gone "$DPID" && { cat "$WORK/mount.lunfs.log" >&2; fail "mount.lunfs exited"; }
	[ $i -lt 300 ] || fail "mount.lunfs did not mount in 30 s"
	sleep 0.1
	i=$((i + 1))
done
echo "== fuse: (b) the test files written in full through the mount (dd oflag=direct)" >&2
prefill_set "$LMNT"

echo "== fuse: (c) ext4 on a loop device (direct I/O) over a prefilled image" >&2
prefill "$EIMG" "$IMG_B" || fail "cannot write $EIMG"
LOOP=$(losetup --direct-io=on --find --show "$EIMG") || fail "losetup failed"
LOOP_DIO=$(cat "/sys/block/${LOOP#/dev/}/loop/dio" 2>/dev/null || echo "?")
# no discard (it would punch holes into the prefilled image), inode tables
# and journal written now rather than by ext4lazyinit during the runs
bg 300 mkfs.ext4 -q -F -E nodiscard,lazy_itable_init=0,lazy_journal_init=0 "$LOOP" ||
	fail "mkfs.ext4 failed"
mount -t ext4 "$LOOP" "$EMNT" || fail "cannot mount $LOOP"
EXT4_OPTS=$(findmnt -n -o OPTIONS "$EMNT")
prefill_set "$EMNT"
sync -f "$WORK"
PREP_SECS=$(($(date +%s) - T0))

dir_of() {
	case $1 in raw) echo "$RAW" ;; lunfs) echo "$LMNT" ;; ext4) echo "$EMNT" ;; esac
}

FIO_COMMON="--ioengine=io_uring --direct=1 --fallocate=none --randrepeat=0 --norandommap --output-format=json"
# fio_run ROUND WORKLOAD TARGET ARGS...: one fio run; its JSON in $RES
FAILS=0
fio_run() {
	r=$1 wl=$2 tg=$3
	shift 3
	out=$RES/$r.$wl.$tg.json
	# the daemon's CPU time during the run (clock ticks, all its threads)
	d0=$(daemon_ticks)
	# shellcheck disable=SC2086
	if ! bg $((FUSE_SECS * 3 + 120)) fio $FIO_COMMON --output="$out" "$@" 2>"$out.err" ||
		! [ -s "$out" ]; then
		echo "bench-fuse: fio $wl on $tg (round $r) failed:" >&2
		sed 's/^/  /' "$out.err" >&2
		rm -f "$out"
		FAILS=$((FAILS + 1))
		# a signal: stop here (the trap has run)
		return 1
	fi
	[ "$tg" = lunfs ] && echo "$(( $(daemon_ticks) - d0 )) $(getconf CLK_TCK)" >"$out.daemon_cpu"
	echo "  round $r $wl $tg: $(python3 bench/fuse_report.py --one "$out")" >&2
}
# daemon_ticks: user + system clock ticks of the mount.lunfs daemon so far
daemon_ticks() {
	awk '{print $14 + $15}' "/proc/${DPID:-0}/stat" 2>/dev/null || echo 0
}

# one JOB: fio options for a single-file workload
one_job() {
	case $1 in
	seq_write) echo "--rw=write --bs=1M --iodepth=8" ;;
	seq_read) echo "--rw=read --bs=1M --iodepth=8" ;;
	rand_read) echo "--rw=randread --bs=4k --iodepth=32" ;;
	rand_write) echo "--rw=randwrite --bs=4k --iodepth=32" ;;
	lat_read) echo "--rw=randread --bs=4k --iodepth=1" ;;
	lat_write) echo "--rw=randwrite --bs=4k --iodepth=1" ;;
	esac
}

WLS="seq_write seq_read rand_read rand_write"
[ "$FUSE_LAT_SECS" != 0 ] && WLS="$WLS lat_read lat_write"
r=1
while [ "$r" -le "$FUSE_ROUNDS" ]; do
	echo "== fuse: round $r of $FUSE_ROUNDS" >&2
	for wl in $WLS; do
		secs=$FUSE_SECS
		case $wl in lat_*) secs=$FUSE_LAT_SECS ;; esac
		for tg in raw lunfs ext4; do
			# shellcheck disable=SC2046
			fio_run "$r" "$wl" "$tg" --name="$wl" --filename="$(dir_of $tg)/disk.img" \
				--size="$FILE_B" --time_based --runtime="$secs" $(one_job "$wl")
		done
	done
	for tg in raw lunfs ext4; do
		d=$(dir_of $tg)
		jobs= v=0
		while [ $v -lt "$FUSE_VMS" ]; do
			jobs="$jobs --name=vm$v --filename=$d/vm$v.img"
			v=$((v + 1))
		done
		# shellcheck disable=SC2086
		fio_run "$r" vm4 "$tg" --rw=randrw --rwmixread="$FUSE_VM_READ_PCT" --bs=4k \
			--iodepth="$FUSE_VM_QD" --size="$VM_B" --time_based --runtime="$FUSE_SECS" $jobs
	done
	if [ "$FUSE_THIN" = 1 ]; then
		for tg in lunfs ext4; do
			f=$(dir_of $tg)/thin.img
			rm -f "$f"
			truncate -s "$FILE_B" "$f" || fail "cannot create $f"
			fio_run "$r" thin_write "$tg" --name=thin_write --filename="$f" --size="$FILE_B" \
				--runtime="$FUSE_SECS" --rw=write --bs=1M --iodepth=8
			rm -f "$f"
		done
	fi
	r=$((r + 1))
done
RUN_SECS=$(($(date +%s) - T0 - PREP_SECS))
LOAD1=$(cut -d' ' -f1-3 /proc/loadavg)
[ "$FAILS" = 0 ] || echo "bench-fuse: $FAILS fio runs failed" >&2

REV=$(git rev-parse --short HEAD 2>/dev/null || echo "?")
[ -n "$(git status --porcelain -- dev lock journal fs fuse 2>/dev/null)" ] && REV="$REV, with uncommitted changes"
FRAG=${FUSE_FRAG:-$WORK/fuse.md}
python3 bench/fuse_report.py --results "$RES" --out "$FRAG" \
	--cmd "$FUSE_CMD" --rev "$REV" --date "$(date -u '+%Y-%m-%d %H:%M UTC')" \
	--load0 "$LOAD0" --load1 "$LOAD1" --prep-secs "$PREP_SECS" --run-secs "$RUN_SECS" \
	--rounds "$FUSE_ROUNDS" --secs "$FUSE_SECS" --lat-secs "$FUSE_LAT_SECS" \
	--file-size "$FUSE_FILE_SIZE" --vm-size "$FUSE_VM_SIZE" --vms "$FUSE_VMS" --vm-qd "$FUSE_VM_QD" \
	--vm-read-pct "$FUSE_VM_READ_PCT" --img-mib $((IMG_B / MIB)) --mkfs "$MKFS_ARGS" \
	--ext4-opts "$EXT4_OPTS" --loop-dio "$LOOP_DIO" --fs "$(findmnt -n -o FSTYPE,SOURCE -T "$BENCH_DIR")" \
	--bench-dir "$BENCH_DIR" --fio "$(fio --version)" --fails "$FAILS" ||
	fail "fuse_report.py failed"
if [ -z "$FUSE_FRAG" ]; then
	python3 bench/fuse_report.py --splice "$FRAG" --into "$OUT" || fail "cannot write $OUT"
	echo "bench-fuse: wrote the FUSE section of $OUT" >&2
fi
echo "bench-fuse: done: $PREP_SECS s preparing, $RUN_SECS s measuring; load average $LOAD0 at the start, $LOAD1 at the end" >&2
[ "$FAILS" = 0 ]
