#!/bin/sh
# bench/run.sh: raw io_uring against lunfs on one image file; writes
# docs/PERFORMANCE.md.  Run by `make bench` (which builds the programs first).
#
#   1. A fresh sparse image file.  raw writes all of it once (so that the
#      host filesystem has every block allocated, as a LUN has), then
#      measures a 1 GiB region of it: sequential 1 MiB QD8 writes and reads,
#      random 4 KiB QD32 reads and writes.
#   2. mkfs.lunfs on the same file, and lunfs-bench: the same workloads
#      through the library, plus device I/Os per create and per lock.
#   3. The paired baseline: before each lunfs run, lunfs-bench runs raw once
#      more, on a second (prefilled) image file of the same host filesystem.
#      Storage under a VM drifts by tens of percent from one minute to the
#      next; raw runs taken moments before each lunfs run keep most of that
#      drift out of the ratios.  The same-file raw runs of step 1 are
#      reported beside them as a check.
#   4. Several hosts (lunfs-cluster, each step on a volume made for it):
#      failover time after a kill -9 of a host's mount.lunfs daemon, at a
#      3 s lease and at the default 8 s; device I/Os of an idle host per
#      heartbeat renewal; file creates by 1, 2, 4 and 8 hosts at once
#      (library, in one process; then through mount.lunfs daemons), on
#      volumes whose metadata regions are filled (allocated, as on a LUN),
#      each library run followed by a paired baseline that replays the same
#      device I/Os per file on a plain file.  About 2.5 minutes; CLUSTER=0
#      skips it.
#   5. Through the FUSE mount (bench/fuse.sh, its own images and trap): fio
#      on a file through mount.lunfs against a raw image file and ext4 on a
#      loop device, round-robin; about 8 minutes at its defaults.  FUSE=0
#      skips it; its knobs (FUSE_ROUNDS, FUSE_SECS, FUSE_FILE_SIZE, ...) are
#      at the top of bench/fuse.sh.
#   6. Through the NBD export (bench/nbd.sh, its own images and trap):
#      nbdcopy and fio's nbd engine through the lunfs nbdkit plugin against
#      nbdkit's file plugin and qemu-nbd on a raw image file, round-robin;
#      about 6 minutes at its defaults.  NBD=0 skips it; its knobs
#      (NBD_ROUNDS, NBD_SECS, NBD_SIZE, ...) are at the top of bench/nbd.sh.
#   7. HA restart (bench/ha.sh): 3 rounds of kill -9 of a host whose guest is
#      registered with `lunfs ha`, timed to the guest's first write on the
#      survivor; about a minute.  HA=0 skips it.
# Every timed workload runs REPS times, round-robin; the report gives the
# median and the range.  The images are removed, and lunfs-bench is stopped
# (it unmounts on SIGTERM), whatever happens.
#
# Environment: B (build dir), BENCH_DIR (where the images go), and the knobs
# below.
set -u

B=${B:-build}
BENCH_DIR=${BENCH_DIR:-/var/tmp}
IMG_SIZE=${IMG_SIZE:-4G}     # the image file (sparse)
FILE_SIZE=${FILE_SIZE:-1G}   # the measured region / each lunfs test file
SEQ_SECS=${SEQ_SECS:-1.5}    # per sequential run
RAND_SECS=${RAND_SECS:-2}    # per random run
REPS=${REPS:-5}              # runs of each timed workload
THIN_ROUNDS=${THIN_ROUNDS:-3}
CREATES=${CREATES:-200}
LOCK_CYCLES=${LOCK_CYCLES:-100}
SEED=${SEED:-1}
OUT=${OUT:-docs/PERFORMANCE.md}
# Hard limits per program (seconds); lunfs-bench gets SIGTERM first and
# unmounts, then SIGKILL 30 s later.
LIMIT_RAW=${LIMIT_RAW:-90}
LIMIT_LUNFS=${LIMIT_LUNFS:-240}  # includes the paired raw runs
# The cluster part (about 2 minutes).  Set CLUSTER=0 to skip it.
CLUSTER=${CLUSTER:-1}
FO_ROUNDS=${FO_ROUNDS:-5}        # failover rounds at FO_LEASE_MS
FO_LEASE_MS=${FO_LEASE_MS:-3000}
FO_HB_MS=${FO_HB_MS:-500}
FO_DEF_ROUNDS=${FO_DEF_ROUNDS:-2} # rounds at the mkfs defaults (8 s lease); 0 skips
FO_POLL_MS=${FO_POLL_MS:-25}     # host B retries its open this often
CR_HOSTS=${CR_HOSTS:-"1 2 4 8"}
CR_SECS=${CR_SECS:-3}            # per creates run
CR_REPS=${CR_REPS:-2}            # library runs of each host count, round-robin
CR_FUSE=${CR_FUSE:-1}            # one run of each host count through FUSE; 0 skips
CR_WSIZE=${CR_WSIZE:-4096}       # bytes written into each new file
RP_SECS=${RP_SECS:-2}            # per paired baseline run (the creates' I/Os without lunfs)
HB_SECS=${HB_SECS:-4}            # idle-host heartbeat I/O count, per volume
LIMIT_CLUSTER=${LIMIT_CLUSTER:-150} # per lunfs-cluster run
# The FUSE part (bench/fuse.sh).  Set FUSE=0 to skip it.
FUSE=${FUSE:-1}
FUSE_CMD=${FUSE_CMD:-make bench}
# The NBD part (bench/nbd.sh).  Set NBD=0 to skip it.
NBD=${NBD:-1}
NBD_CMD=${NBD_CMD:-make bench}
# The HA restart part (bench/ha.sh).  Set HA=0 to skip it.
HA=${HA:-1}

RAW=$B/bench/raw
LB=$B/bench/lunfs-bench
LC=$B/bench/lunfs-cluster
MKFS=$B/bin/mkfs.lunfs
MOUNTD=$B/bin/mount.lunfs
for p in "$RAW" "$LB" "$LC" "$MKFS" "$MOUNTD"; do
	[ -x "$p" ] || { echo "bench: $p is missing (run make bench)" >&2; exit 1; }
done

WORK=$(mktemp -d "$BENCH_DIR/lunfs-bench.XXXXXX") || exit 1
WORK=$(cd "$WORK" && pwd) # absolute: mount.lunfs wants absolute paths
IMG=$WORK/lun.img
CHILD=

cleanup() {
	if [ -n "$CHILD" ]; then
		# timeout passes SIGTERM on; lunfs-bench then stops and unmounts.
		kill -TERM "$CHILD" 2>/dev/null
		wait "$CHILD" 2>/dev/null
		CHILD=
		if [ -n "${log:-}" ] && [ -f "$log" ]; then
			tail -n 3 "$log" | sed 's/^/  last output: /' >&2
			sed 's/^/  stderr: /' "$log.err" >&2
		fi
	fi
	# FUSE mounts lunfs-cluster left behind (only under our own directory)
	awk -v w="$WORK/" 'index($2, w) == 1 { print $2 }' /proc/mounts 2>/dev/null |
		while read -r m; do umount -l "$m"; done
	rm -rf --one-file-system "$WORK"
}
trap cleanup EXIT
trap 'echo "bench: interrupted" >&2; cleanup; trap - EXIT; exit 130' INT TERM HUP

# run LOG LIMIT PROGRAM ARGS...: runs in the background (so that a signal to
# us reaches the trap at once), output to LOG and to our stdout.
run() {
	log=$1 limit=$2
	shift 2
	echo "+ $*" >&2
	timeout -s TERM -k 30 "$limit" "$@" >"$log" 2>"$log.err" &
	CHILD=$!
	wait "$CHILD"
	rc=$?
	CHILD=
	cat "$log"
	if [ -s "$log.err" ]; then sed 's/^/  stderr: /' "$log.err" >&2; fi
	return $rc
}

fail() {
	echo "bench: $*" >&2
	echo "bench: $OUT not written" >&2
	exit 1
}

START=$(date +%s)
LOAD0=$(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null)
truncate -s "$IMG_SIZE" "$IMG" || fail "cannot create $IMG"
RIMG=$WORK/raw.img
truncate -s "$FILE_SIZE" "$RIMG" || fail "cannot create $RIMG"

echo "== raw: first write of the whole image, then the same-file baseline" >&2
run "$WORK/raw0.log" "$LIMIT_RAW" "$RAW" -s "$IMG_SIZE" -w seq_write_first -S "$SEED" "$IMG" ||
	fail "raw (first write) failed"
# Make the host write its cache back now, not during the measurements
# (sync FILE is fsync: on a VM it reaches the host's disk).
sync "$IMG"
run "$WORK/raw1.log" "$LIMIT_RAW" "$RAW" -o "$FILE_SIZE" -s "$FILE_SIZE" -t "$SEQ_SECS" \
	-T "$RAND_SECS" -r "$REPS" -S "$SEED" -w seq_write,seq_read,rand_read,rand_write "$IMG" ||
	fail "raw failed"
echo "== raw: first write of the second image (for the paired baseline)" >&2
run "$WORK/rawp0.log" "$LIMIT_RAW" "$RAW" -s "$FILE_SIZE" -w seq_write_first -S "$SEED" "$RIMG" ||
	fail "raw (second image) failed"

echo "== mkfs.lunfs" >&2
MKFS_ARGS="-q -f -N 8 -J 8M"
# shellcheck disable=SC2086
"$MKFS" $MKFS_ARGS "$IMG" || fail "mkfs.lunfs failed"
sync "$IMG" "$RIMG"

echo "== lunfs, each round-robin run after a paired raw run" >&2
PAIRED="'$RAW' -s $FILE_SIZE -t $SEQ_SECS -T $RAND_SECS -r 1 -S \$((1000 + LUNFS_BENCH_REP))"
PAIRED="$PAIRED -w seq_write,seq_read,rand_read,rand_write '$RIMG'"
PAIRED="$PAIRED >>'$WORK/rawp.log' 2>>'$WORK/rawp.log.err'"
LB_ARGS="-s $FILE_SIZE -t $SEQ_SECS -T $RAND_SECS -r $REPS -R $THIN_ROUNDS -N $CREATES -L $LOCK_CYCLES -S $SEED"
# shellcheck disable=SC2086
run "$WORK/lunfs.log" "$LIMIT_LUNFS" "$LB" $LB_ARGS -B "$PAIRED" "$IMG"
LRC=$?
echo "paired raw runs:" >&2
cat "$WORK/rawp.log"
if [ -s "$WORK/rawp.log.err" ]; then sed 's/^/  stderr: /' "$WORK/rawp.log.err" >&2; fi

if [ "$LRC" -ne 0 ]; then
	fail "lunfs-bench failed (exit $LRC)"
fi

# ---- several hosts ----

CL=$WORK/cluster.log      # every lunfs-cluster output line
CMDS=$WORK/cluster.cmds   # the commands, for the report
CL_FAIL=
: >"$CL"
: >"$CMDS"
# note CMD...: the command line as the report shows it ($WORK for our directory)
note() { echo "$*" | sed "s|$WORK|\$WORK|g" >>"$CMDS"; }
# crun NAME PROGRAM ARGS...: one lunfs-cluster run; a failure is noted, not fatal
crun() {
	n=$1
	shift
	note "$@"
	run "$WORK/c-$n.log" "$LIMIT_CLUSTER" "$@"
	rc=$?
	cat "$WORK/c-$n.log" >>"$CL"
	if [ "$rc" -ne 0 ]; then
		CL_FAIL="$CL_FAIL $n"
		echo "cluster failed step=$n exit=$rc" >>"$CL"
		sed 's/^/  /' "$WORK/c-$n.log.err" >>"$WORK/cluster.err" 2>/dev/null
	fi
	return $rc
}
# cmkfs IMG SIZE ARGS...: a fresh volume for one step
cmkfs() {
	img=$1 size=$2
	shift 2
	rm -f "$img"
	truncate -s "$size" "$img" || fail "cannot create $img"
	note "$MKFS" -q -f "$@" "$img"
	"$MKFS" -q -f "$@" "$img" || fail "mkfs.lunfs $* failed"
}
CSTART=$(date +%s)
FO_MKFS="-N 8 --lease-ms $FO_LEASE_MS --heartbeat-ms $FO_HB_MS"
CR_MKFS="-N 16 -J 8M -I 16384"
if [ "$CLUSTER" = 1 ]; then
	echo "== cluster: failover at a ${FO_LEASE_MS} ms lease" >&2
	mkdir -p "$WORK/fo"
	# shellcheck disable=SC2086
	cmkfs "$WORK/fo.img" 1G $FO_MKFS
	crun failover "$LC" failover -r "$FO_ROUNDS" -p "$FO_POLL_MS" -m "$MOUNTD" -w "$WORK/fo" "$WORK/fo.img"
	echo "== cluster: idle host's heartbeat I/O" >&2
	crun hbio "$LC" hbio -t "$HB_SECS" "$WORK/fo.img"
	if [ "$FO_DEF_ROUNDS" -gt 0 ]; then
		echo "== cluster: failover at the mkfs defaults" >&2
		mkdir -p "$WORK/fo8"
		cmkfs "$WORK/fo8.img" 1G
		crun failover8 "$LC" failover -r "$FO_DEF_ROUNDS" -p "$FO_POLL_MS" -m "$MOUNTD" -w "$WORK/fo8" "$WORK/fo8.img"
		crun hbio8 "$LC" hbio -t "$HB_SECS" "$WORK/fo8.img"
	fi
	# the failover images are done with; let the host write back before the creates
	rm -f "$WORK/fo.img" "$WORK/fo8.img"
	sync -f "$WORK" 2>/dev/null
	echo "== cluster: creates on $CR_HOSTS hosts at once, each with its paired device baseline" >&2
	r=1
	while [ "$r" -le "$CR_REPS" ]; do
		for h in $CR_HOSTS; do
			# shellcheck disable=SC2086
			cmkfs "$WORK/cr.img" 32G $CR_MKFS
			crun "fill-$h-$r" "$LC" fill "$WORK/cr.img"
			crun "creates-$h-$r" "$LC" creates -n "$h" -t "$CR_SECS" -s "$CR_WSIZE" -r "$r" "$WORK/cr.img" || continue
			# the baseline: the device I/Os per file just measured, without lunfs
			pat=$(awk '$2 == "creates_io" { for (i = 3; i <= NF; i++) if ($i ~ /^pattern=/) print substr($i, 9) }' "$WORK/c-creates-$h-$r.log")
			[ -n "$pat" ] && crun "replay-$h-$r" "$LC" replay -n "$h" -t "$RP_SECS" -r "$r" -P "$pat" "$WORK/replay.dat"
		done
		r=$((r + 1))
	done
	rm -f "$WORK/replay.dat"
	if [ "$CR_FUSE" = 1 ]; then
		echo "== cluster: creates through mount.lunfs daemons" >&2
		mkdir -p "$WORK/fc"
		for h in $CR_HOSTS; do
			# shellcheck disable=SC2086
			cmkfs "$WORK/cr.img" 32G $CR_MKFS
			crun "ffill-$h" "$LC" fill "$WORK/cr.img"
			crun "fcreates-$h" "$LC" fcreates -n "$h" -t "$CR_SECS" -s "$CR_WSIZE" -m "$MOUNTD" -w "$WORK/fc" "$WORK/cr.img"
		done
	fi
	rm -f "$WORK/cr.img"
	# B's logs: the recoveries as the survivor saw them
	for f in "$WORK/fo/host-b.log" "$WORK/fo8/host-b.log"; do
		[ -f "$f" ] && sed "s|$WORK|\$WORK|g; s/^/$(basename "$(dirname "$f")"): /" "$f" >>"$WORK/hostb.log"
	done
fi
CSECS=$(( $(date +%s) - CSTART ))

# ---- through the FUSE mount ----

FSTART=$(date +%s)
FUSE_FAIL=
if [ "$FUSE" = 1 ]; then
	echo "== FUSE mount: bench/fuse.sh" >&2
	# in the background, so that our trap can stop it (it cleans up on SIGTERM)
	log=
	FUSE_FRAG="$WORK/fuse.md" FUSE_CMD="$FUSE_CMD" B="$B" BENCH_DIR="$BENCH_DIR" sh bench/fuse.sh &
	CHILD=$!
	wait "$CHILD"
	rc=$?
	CHILD=
	[ "$rc" -eq 0 ] || FUSE_FAIL="bench/fuse.sh exited with status $rc"
fi
FSECS=$(( $(date +%s) - FSTART ))

# ---- through the NBD export ----

NSTART=$(date +%s)
NBD_FAIL=
if [ "$NBD" = 1 ]; then
	echo "== NBD export: bench/nbd.sh" >&2
	log=
	NBD_FRAG="$WORK/nbd.md" NBD_CMD="$NBD_CMD" B="$B" BENCH_DIR="$BENCH_DIR" sh bench/nbd.sh &
	CHILD=$!
	wait "$CHILD"
	rc=$?
	CHILD=
	[ "$rc" -eq 0 ] || NBD_FAIL="bench/nbd.sh exited with status $rc"
fi
NSECS=$(( $(date +%s) - NSTART ))

# ---- HA restart ----

HA_FAIL=
if [ "$HA" = 1 ]; then
	echo "== HA restart: bench/ha.sh" >&2
	HA_FRAG="$WORK/ha.md" HA_CMD="make bench" B="$B" sh bench/ha.sh &
	CHILD=$!
	wait "$CHILD"
	rc=$?
	CHILD=
	[ "$rc" -eq 0 ] || HA_FAIL="bench/ha.sh exited with status $rc"
fi

# ---- the report ----

# vals WHO WORKLOAD FIELD FILES...: every FIELD= value of the lines
# "WHO WORKLOAD ...", one a line.
vals() {
	who=$1 wl=$2 f=$3
	shift 3
	awk -v who="$who" -v wl="$wl" -v f="$f" '$1 == who && $2 == wl {
		for (i = 3; i <= NF; i++) { n = index($i, "="); if (substr($i, 1, n - 1) == f) print substr($i, n + 1) }
	}' "$@"
}
# stats: median, min, max of the numbers on stdin ("- - -" if none).
stats() {
	sort -g | awk '{ a[NR] = $1 } END {
		if (!NR) { print "- - -"; exit }
		m = NR % 2 ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2
		printf "%s %s %s\n", m, a[1], a[NR] }'
}
# fmt N: a number with no decimals (MB/s, IOPS), "-" stays.
fmt() { awk -v x="$1" 'BEGIN { if (x == "-") print "-"; else printf "%.0f\n", x }'; }

# ratio A B: A / B with two decimals, "-" when either is missing.
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "-" || b == "-" || b == 0) print "-"; else printf "%.2f\n", a / b }'; }

ROWS=
MET_ALL=yes
# row LABEL UNIT FIELD RAW_WL LUNFS_WL TARGET
row() {
	label=$1 unit=$2 f=$3 rwl=$4 lwl=$5 target=$6
	set -- $(vals raw "$rwl" "$f" "$WORK/rawp.log" | stats)
	pm=$1 plo=$2 phi=$3
	set -- $(vals raw "$rwl" "$f" "$WORK/raw1.log" | stats)
	sm=$1 slo=$2 shi=$3
	set -- $(vals lunfs "$lwl" "$f" "$WORK/lunfs.log" | stats)
	lm=$1 llo=$2 lhi=$3
	rs=$(ratio "$lm" "$sm")
	# Pairs: the k-th lunfs run and the raw run just before it.  With
	# pairs, the ratio is the median of the pair ratios; without (the thin
	# file), the ratio of the medians.
	vals raw "$rwl" "$f" "$WORK/rawp.log" >"$WORK/p.raw"
	vals lunfs "$lwl" "$f" "$WORK/lunfs.log" >"$WORK/p.lunfs"
	if [ "$rwl" = "$lwl" ] && [ -s "$WORK/p.raw" ] &&
	   [ "$(wc -l <"$WORK/p.raw")" -eq "$(wc -l <"$WORK/p.lunfs")" ]; then
		paste "$WORK/p.raw" "$WORK/p.lunfs" | awk '$1 > 0 { print $2 / $1 }' >"$WORK/p.ratio"
		set -- $(stats <"$WORK/p.ratio")
		rp=$(awk -v x="$1" 'BEGIN { printf "%.2f\n", x }')
		pairs="$(awk -v t="$target" '$1 >= t { n++ } END { print n + 0 }' "$WORK/p.ratio") of $(wc -l <"$WORK/p.ratio")"
	else
		rp=$(ratio "$lm" "$pm")
		pairs="(no pairs)"
	fi
	if [ "$target" = "-" ]; then
		met="(not a target)"
	else
		met=$(awk -v r="$rp" -v t="$target" 'BEGIN { if (r == "-") print "no data"; else print (r + 0 >= t + 0) ? "yes" : "**no**" }')
		[ "$met" = yes ] || MET_ALL=no
	fi
	tgt="≥ $target"
	[ "$target" = "-" ] && tgt="-"
	ROWS="$ROWS| $label | $unit | $(fmt "$pm") ($(fmt "$plo")–$(fmt "$phi")) | $(fmt "$sm") ($(fmt "$slo")–$(fmt "$shi")) | $(fmt "$lm") ($(fmt "$llo")–$(fmt "$lhi")) | **$rp** | $pairs | $rs | $tgt | $met |
"
}
row "sequential write 1 MiB QD8, preallocated (eager-zeroed) file" "MB/s" MBps seq_write seq_write 0.95
row "sequential write 1 MiB QD8, thin file, first write" "MB/s" MBps seq_write seq_write_thin -
row "sequential read 1 MiB QD8, preallocated file" "MB/s" MBps seq_read seq_read 0.95
row "sequential read 1 MiB QD8, thin file read back once" "MB/s" MBps seq_read seq_read_thin -
row "random read 4 KiB QD32, preallocated file" "IOPS" iops rand_read rand_read 0.90
row "random write 4 KiB QD32, preallocated file" "IOPS" iops rand_write rand_write 0.90

one() { vals "$@" | head -n 1; }
L=$WORK/lunfs.log
# per-request device I/Os of a lunfs workload: (reads+writes+flushes+caws) / ops, over all runs
ioreq() {
	awk -v wl="$1" '$1 == "lunfs" && $2 == wl {
		for (i = 3; i <= NF; i++) { n = index($i, "="); k = substr($i, 1, n - 1); v = substr($i, n + 1)
			if (k == "ops") o += v; else if (k ~ /^dev_(reads|writes|flushes|caws)$/) d += v
			else if (k == "dev_write_MB") wmb += v; else if (k == "bytes") b += v }
	} END { if (o) printf "| %s | %.3f | %.2f |\n", wl, d / o, b ? wmb * 1e6 / b : 0 }' "$L"
}
IOREQ=$(for w in seq_write_thin seq_read_thin seq_write seq_read rand_read rand_write; do ioreq $w; done)

first_mb=$(fmt "$(one raw seq_write_first MBps "$WORK/raw0.log")")
rawp_first=$(fmt "$(one raw seq_write_first MBps "$WORK/rawp0.log")")
fz_mb=$(fmt "$(one lunfs fallocate_zero MBps "$L")")
fz_s=$(one lunfs fallocate_zero secs "$L")
fz_w=$(one lunfs fallocate_zero dev_write_MB "$L")
ezt_img=$(one lunfs ezt_after_fallocate image_alloc_MB "$L")
mount_s=$(one lunfs mount secs "$L")
umount_s=$(one lunfs unmount secs "$L")

fz_chunk=$(one lunfs fallocate_zero chunk "$L")
thin_n=$(vals lunfs seq_write_thin MBps "$L" | wc -l)
PROBLEMS=$(awk '$1 == "lunfs" && $2 == "problem" { $1 = ""; $2 = ""; sub(/^  /, ""); print "- " $0 }' "$L")
[ -n "$PROBLEMS" ] || PROBLEMS="None: every call returned success and every sector read back right."

cr() { one lunfs create "$1" "$L"; }
la() { one lunfs lock_acquire "$1" "$L"; }
lr() { one lunfs lock_release "$1" "$L"; }

# ---- the cluster figures ----

# cvals WL KEY VAL FIELD: FIELD of the "cluster WL" lines with KEY=VAL (KEY "-": all)
cvals() {
	awk -v wl="$1" -v key="$2" -v val="$3" -v f="$4" '$1 == "cluster" && $2 == wl {
		ok = key == "-"; x = ""
		for (i = 3; i <= NF; i++) { n = index($i, "="); k = substr($i, 1, n - 1); v = substr($i, n + 1)
			if (k == key && v == val) ok = 1; if (k == f) x = v }
		if (ok && x != "") print x }' "$CL"
}
# fo LOG: "median min max" failover seconds of one step's log
fo_stats() { [ -f "$1" ] && awk '$1 == "cluster" && $2 == "failover" { for (i = 3; i <= NF; i++) if ($i ~ /^secs=/) print substr($i, 6) }' "$1" | stats || echo "- - -"; }
f2() { awk -v x="$1" 'BEGIN { if (x == "-" || x == "") print "-"; else printf "%.2f\n", x }'; }
f1() { awk -v x="$1" 'BEGIN { if (x == "-" || x == "") print "-"; else printf "%.1f\n", x }'; }
CL_PROBLEMS=$(awk '$1 == "cluster" && ($2 == "problem" || $2 == "failed") { $1 = ""; sub(/^ /, ""); print "- " $0 }' "$CL" 2>/dev/null)
[ -n "$CL_PROBLEMS" ] || CL_PROBLEMS="None: every round failed over, every file was created and written, every mount unmounted cleanly."

FO_ROWS= FO_MET="no data" FO_MED=-
# fo_row LOG LABEL TARGET_S
fo_row() {
	set -- "$1" "$2" "$3" $(fo_stats "$1")
	n=0
	[ -f "$1" ] && n=$(grep -c '^cluster failover ' "$1")
	lease=$(awk '$2 == "failover" { for (i = 3; i <= NF; i++) if ($i ~ /^lease_ms=/) { print substr($i, 10) / 1000; exit } }' "$1" 2>/dev/null)
	hb=$(awk '$2 == "failover" { for (i = 3; i <= NF; i++) if ($i ~ /^hb_ms=/) { print substr($i, 7) / 1000; exit } }' "$1" 2>/dev/null)
	[ -n "$lease" ] || lease=- hb=-
	if [ "$3" = "-" ]; then met="(not a target)"; tgt="-"
	else tgt="≤ $3 s"; met=$(awk -v m="$6" -v t="$3" 'BEGIN { if (m == "-") print "no data"; else print (m + 0 <= t + 0) ? "yes" : "**no**" }'); fi
	lo=$(awk -v a="$4" -v l="$lease" -v h="$hb" 'BEGIN { if (a == "-" || l == "-") print "-"; else printf "%.2f", a / l }')
	FO_ROWS="$FO_ROWS| $2 | $lease s ($hb s) | $n | $(f2 "$5") s | **$(f2 "$4") s** | $(f2 "$6") s | $lo | $tgt | $met |
"
	[ "$3" = "-" ] || { FO_MET=$met; FO_MED=$4; }
}
fo_row "$WORK/c-failover.log" "\`--lease-ms $FO_LEASE_MS --heartbeat-ms $FO_HB_MS\`" 5
[ "$FO_DEF_ROUNDS" -gt 0 ] && fo_row "$WORK/c-failover8.log" "mkfs defaults" -
# per-round details
FO_DETAIL=$(awk '$1 == "cluster" && $2 == "failover" {
	for (i = 3; i <= NF; i++) { n = index($i, "="); v[substr($i, 1, n - 1)] = substr($i, n + 1) }
	printf "| %.0f s | %s | %.3f s | %s | %s EBUSY, %s ESTALE, %s other | %s ms | %s | %s | %s in %s ms |\n",
		v["lease_ms"] / 1000, v["round"], v["secs"], v["before_kill"], v["ebusy"], v["estale"], v["other"],
		v["max_open_ms"], v["polls"], v["b_write"], v["replay_txns"], v["replay_ms"] }' "$WORK/c-failover.log" "$WORK/c-failover8.log" 2>/dev/null)
# the anchors: how many times longer than lunfs's median at the short lease
anc() { awk -v s="$1" -v m="$FO_MED" 'BEGIN { if (m == "-" || m == 0) print "-"; else printf "%.1f×", s / m }'; }

# creates
CR_ROWS=
m1= fm1= rp1=
for h in $CR_HOSTS; do
	set -- $(cvals creates hosts "$h" files_per_s | stats)
	m=$1 lo=$2 hi=$3
	[ "$h" = 1 ] && m1=$m
	set -- $(cvals replay threads "$h" per_s | stats)
	rpm=$1
	[ "$h" = 1 ] && rp1=$rpm
	fpf=$(f2 "$(cvals creates hosts "$h" flushes_per_file | stats | cut -d' ' -f1)")
	iopf=$(f2 "$(cvals creates hosts "$h" io_per_file | stats | cut -d' ' -f1)")
	# the host's lowest and highest per-host rate over all runs
	hmin=$(cvals creates hosts "$h" min_host | sort -g | head -n 1)
	hmax=$(cvals creates hosts "$h" max_host | sort -g | tail -n 1)
	lat=$(cvals creates hosts "$h" max_lat_ms | sort -g | tail -n 1)
	# lunfs / device only, pair by pair (a creates run and the replay just after it)
	vs=$(awk -v h="$h" '$1 == "cluster" && ($2 == "creates" || $2 == "replay") {
		delete v
		for (i = 3; i <= NF; i++) { n = index($i, "="); v[substr($i, 1, n - 1)] = substr($i, n + 1) }
		if ($2 == "creates" && v["hosts"] == h) c[v["rep"]] = v["files_per_s"]
		if ($2 == "replay" && v["threads"] == h) b[v["rep"]] = v["per_s"]
	} END { for (r in c) if ((r in b) && b[r] > 0) print c[r] / b[r] }' "$CL" | stats | cut -d' ' -f1)
	set -- $(cvals fcreates hosts "$h" files_per_s | stats)
	fm=$1
	[ "$h" = 1 ] && fm1=$fm
	per=$(awk -v m="$m" -v h="$h" 'BEGIN { if (m == "-") print "-"; else printf "%.0f", m / h }')
	CR_ROWS="$CR_ROWS| $h | **$(fmt "$m")** ($(fmt "$lo")–$(fmt "$hi")) | $per ($(fmt "${hmin:--}")–$(fmt "${hmax:--}")) | **$(ratio "$m" "$m1")** | $(fmt "$rpm") | $(ratio "$rpm" "$rp1") | **$(f2 "$vs")** | $iopf | $fpf | $(f1 "${lat:--}") ms | $(fmt "$fm") | $(ratio "$fm" "$fm1") |
"
done
CR_IO=$(awk '$1 == "cluster" && $2 == "creates_io" && $3 == "hosts=1" && $4 == "rep=1" {
	for (i = 5; i <= 8; i++) { n = index($i, "="); split(substr($i, n + 1), a, "/")
		printf "| %s | %.2f | %.2f | %.2f | %.2f | %.2f | %.2f |\n", substr($i, 1, n - 1), a[1] + a[2] + a[3] + a[4] + a[5], a[1], a[2], a[3], a[4], a[5] } }' "$CL")
cr1() { cvals creates hosts 1 "$1" | stats | cut -d' ' -f1; }

# heartbeat I/O of an idle host
HB_ROWS=$(awk '$1 == "cluster" && $2 == "hbio" {
	for (i = 3; i <= NF; i++) { n = index($i, "="); v[substr($i, 1, n - 1)] = substr($i, n + 1) }
	printf "| %d (%s ms, %s ms) | %s | %s | %s | %s KiB (%s slots × 4 KiB) | %s | %s |\n",
		v["max_hosts"], v["hb_ms"], v["lease_ms"], v["renewals"], v["caws_per_renewal"], v["reads_per_renewal"],
		v["bytes_per_read"] / 1024, v["max_hosts"], v["writes"] + v["flushes"], v["ios_per_s"] }' "$CL")

CPU=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo 2>/dev/null)
MEM=$(awk '/^MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo 2>/dev/null)
FSTYPE=$(findmnt -n -o FSTYPE -T "$BENCH_DIR" 2>/dev/null || stat -f -c %T "$BENCH_DIR")
FSSRC=$(findmnt -n -o SOURCE -T "$BENCH_DIR" 2>/dev/null || echo "?")
REV=$(git rev-parse --short HEAD 2>/dev/null || echo "?")
if [ -n "$(git status --porcelain -- dev lock journal fs 2>/dev/null)" ]; then
	REV="$REV, with uncommitted changes in the library"
fi
ELAPSED=$(( $(date +%s) - START ))
LOAD1=$(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null)

# The several-hosts section of the report.
cluster_section() {
	if [ "$CLUSTER" != 1 ]; then
		printf '## Several hosts: failover, creates, heartbeat cost\n\nNot measured in this run (CLUSTER=0).\n'
		return
	fi
	cat <<EOF
## Several hosts: failover, creates, heartbeat cost

Measured by \`build/bench/lunfs-cluster\` (source \`bench/cluster_bench.c\`), each step on a volume made for it in the same directory as the images above, by \`make bench\` (knobs: the variables at the top of \`bench/run.sh\`, e.g. \`make bench FO_ROUNDS=10\`; \`CLUSTER=0\` skips this part).

<details><summary>every command of this part, as bench/run.sh ran them ($(wc -l <"$CMDS") commands; \$WORK is its temporary directory)</summary>

\`\`\`sh
$(cat "$CMDS")
\`\`\`
</details>

### Failover after a host dies

Host B, a \`mount.lunfs\` daemon, stays mounted.  In each round host A, another daemon, mounts; a writer process opens a 256 MiB thin VM disk through A with \`O_RDWR|O_DIRECT\` and writes it (64 KiB sequential writes, \`fsync\` every 16, so A's journal has transactions to replay); after one second, B's \`open(O_RDWR)\` of the disk is checked to fail.  Then A's daemon gets \`kill -9\`, and the time runs from that \`kill(2)\` until B's \`open(O_RDWR)\` of the disk returns a descriptor, B retrying every $FO_POLL_MS ms.  B then writes and fsyncs 4 KiB through it.  The writer is killed, A's dead mount point is lazily unmounted, and A mounts again for the next round.  The baseline is the lease itself: *failover / lease*.

| volume | lease (heartbeat) | rounds | min | median | max | failover / lease (median) | target | met (on the max) |
|---|---|---|---|---|---|---|---|---|
$FO_ROWS
Target ($FO_LEASE_MS ms lease): every round ≤ 5 s: **$FO_MET**.

What B waits for: it declares A dead once A's renewal counter has stood still for a lease on B's own clock.  B's watch of A's last counter value starts at the first scan of the heartbeat region that saw it (B scans after each of its own renewals, every heartbeat), so it starts between A's last renewal and one heartbeat later; A's last renewal was up to one heartbeat before the kill.  B's recovery thread looks every half heartbeat, then replays A's journal and frees its slot; A's locks are then GONE and B's open succeeds.  The failover time therefore lies between about lease − heartbeat and lease + 1.5 × heartbeat, plus the replay and B's retry interval: $(awk -v l="$FO_LEASE_MS" -v h="$FO_HB_MS" 'BEGIN { printf "%.2f to %.2f s (+ replay) at a %g s lease with %g s heartbeats", (l - h) / 1000, (l + 1.5 * h) / 1000, l / 1000, h / 1000 }').

For comparison (published defaults, not measured here):

| system | a dead host's locks are broken after | vs lunfs median at the ${FO_LEASE_MS} ms lease |
|---|---|---|
| lunfs, \`--lease-ms $FO_LEASE_MS --heartbeat-ms $FO_HB_MS\` (measured above) | $(f2 "$FO_MED") s | 1× |
| VMware VMFS (heartbeat lease) | 16 s | $(anc 16) |
| OCFS2 (o2cb dead threshold) | 60 s | $(anc 60) |
| sanlock (\`host_dead\`) | 140 s | $(anc 140) |

Every round:

| lease | round | failover | B's open before the kill | B's failed opens after it | slowest single open | opens tried | B's write after the takeover | A's journal replayed by B (from B's log) |
|---|---|---|---|---|---|---|---|---|
$FO_DETAIL

### Creates on several hosts at once

Library, in one process: N mounts of one volume (\`lunfs_mount\` with host names bench-h1…N, so N heartbeat slots, N journals, N lock caches), one thread each; each host creates files in its own directory for $CR_SECS s: \`lunfs_mknod\`, \`lunfs_open(LUNFS_OPEN_RW)\`, \`lunfs_pwrite\` of $CR_WSIZE bytes at 0, \`lunfs_close\`.  A fresh volume (\`mkfs.lunfs -q -f $CR_MKFS\`, 32 GiB sparse) for every run, its metadata regions then filled with zeros (\`lunfs-cluster fill\`: the holes that mkfs punched in front of the file-block region are written, the content does not change), so that lunfs's metadata writes overwrite blocks the host filesystem has, as on a LUN; the file-block region stays sparse.  Each run stops at ${CR_SECS} s, or when its files would take nine tenths of the free blocks.  $CR_REPS runs of each host count, round-robin.  Through FUSE: the same with N \`mount.lunfs\` daemons, one thread per mount doing \`open(O_CREAT|O_EXCL|O_WRONLY)\`, \`write\`, \`close\` (one run each).  The machine has $(nproc) CPUs: beyond that, hosts share CPUs, as separate hypervisor hosts would not.  One difference between the two: through FUSE, \`close(2)\` waits for the daemon's flush but not for its release (\`lunfs_close\`: the journal checkpoint and the release of the open pin), which the kernel sends in the background; the library thread waits for \`lunfs_close\`.

The baseline (*device only*): right after each library run, as many threads replay the device I/Os that run counted per file (\`lunfs-cluster replay -P\`, the pattern below: r read, c CAW, w write, z zeroing, f flush) on a plain file in the same directory, the way lunfs's file backend does them: 4 KiB \`O_DIRECT\` \`pread\`/\`pwrite\` of blocks written before the clock runs, \`fdatasync\`, a CAW as an OFD lock + read + write, and a new file's data as lunfs exposes a new file block: 4 KiB written into a fresh 1 MiB segment, the rest punched.  Its rate is the most files/s this storage allows with those I/Os done one at a time, and nothing else; *lunfs / device only* is the median over the pairs (1.00: lunfs costs nothing but its device I/Os).  If the device-only rate does not grow with the thread count, neither can lunfs's.

| hosts | files/s, all hosts (median, range) | per host (lowest–highest host) | scaling vs 1 host | device only: patterns/s | device only: vs 1 thread | lunfs / device only | device I/Os per file | flushes per file | slowest file | FUSE: files/s | FUSE: vs 1 host |
|---|---|---|---|---|---|---|---|---|---|---|---|
$CR_ROWS
Device I/Os per file created and written, one host (library, first run), by step (background I/O between the steps is in the total above but not here); replayed as the pattern \`$(awk '$2 == "creates_io" && $3 == "hosts=1" && $4 == "rep=1" { for (i = 5; i <= NF; i++) if ($i ~ /^pattern=/) print substr($i, 9) }' "$CL")\`:

| step | device I/Os | reads | writes | flushes | CAWs | zeroings (hole punches) |
|---|---|---|---|---|---|---|
$CR_IO

### Heartbeat and lock I/O

An idle host mounted in-process (\`lunfs-cluster hbio\`, $HB_SECS s): its device counters against the renewals counted in its slot (read through a second handle).  Each renewal is one CAW of the host's own slot; after it, the host reads the whole heartbeat region in one read, to watch its peers continuously (the scan that peer recovery needs).

| volume: slots (heartbeat, lease) | renewals counted | CAWs per renewal | scan reads per renewal | bytes per scan read | other I/Os | heartbeat I/Os per second per host |
|---|---|---|---|---|---|---|
$HB_ROWS

The heartbeat costs every host 2 I/Os per interval whatever it does; the scan read grows with the slot count (\`mkfs.lunfs -N\`): 256 KiB per second per host at the defaults (64 slots, 1 s).

Lock records (from the metadata table above, \`lock/lk.h\` on the volume of the single-host runs, heartbeat paused while counting): an uncontended acquire of a free lock is **$(la io_per_op)** I/Os ($(la reads) read, $(la caws) CAW), its release **$(lr io_per_op)** ($(lr caws) CAW).  A create + write + close of a file on one host costs **$(f2 "$(cr1 io_per_file)")** device I/Os, of which $(f2 "$(cr1 flushes_per_file)") flushes.

### Problems seen with several hosts

$CL_PROBLEMS
EOF
}

# The FUSE section (bench/fuse.sh wrote it).
fuse_section() {
	if [ "$FUSE" != 1 ]; then
		printf '## Through the FUSE mount\n\nNot measured in this run (FUSE=0).\n'
	elif [ -s "$WORK/fuse.md" ]; then
		cat "$WORK/fuse.md"
		[ -z "$FUSE_FAIL" ] || printf '\n**%s**: see its output.\n' "$FUSE_FAIL"
	else
		printf '## Through the FUSE mount\n\nNot measured: %s.\n' "$FUSE_FAIL"
	fi
}

# The NBD section (bench/nbd.sh wrote it).
nbd_section() {
	if [ "$NBD" != 1 ]; then
		printf '## Through the NBD export\n\nNot measured in this run (NBD=0).\n'
	elif [ -s "$WORK/nbd.md" ]; then
		cat "$WORK/nbd.md"
		[ -z "$NBD_FAIL" ] || printf '\n**%s**: see its output.\n' "$NBD_FAIL"
	else
		printf '## Through the NBD export\n\nNot measured: %s.\n' "$NBD_FAIL"
	fi
}

# The HA restart section (bench/ha.sh wrote it).
ha_section() {
	if [ "$HA" != 1 ]; then
		printf '## HA restart\n\nNot measured in this run (HA=0).\n'
	elif [ -s "$WORK/ha.md" ]; then
		cat "$WORK/ha.md"
		[ -z "$HA_FAIL" ] || printf '\n**%s**: see its output.\n' "$HA_FAIL"
	else
		printf '## HA restart\n\nNot measured: %s.\n' "$HA_FAIL"
	fi
}

TMP=$OUT.tmp.$$
cat >"$TMP" <<EOF
# lunfs performance

Written by \`bench/run.sh\`; do not edit by hand.  Reproduce with:

\`\`\`sh
make bench
\`\`\`

| | |
|---|---|
| date | $(date -u '+%Y-%m-%d %H:%M UTC') |
| machine | $(nproc) CPUs ($CPU), $MEM, kernel $(uname -r) $(uname -m) |
| image | $IMG_SIZE sparse file on $FSTYPE ($FSSRC), in $BENCH_DIR |
| lunfs volume | \`mkfs.lunfs $MKFS_ARGS\`, mounted as host \`bench\` |
| source | $REV |
| load average | $LOAD0 at the start, $LOAD1 at the end (other work on the machine adds noise) |
| bench run | ${ELAPSED} s (of which ${CSECS} s for the several-hosts part, ${FSECS} s through the FUSE mount, ${NSECS} s through the NBD export); every timed workload $REPS times round-robin, ${SEQ_SECS} s sequential / ${RAND_SECS} s random per run |

## Method

- **raw** (\`build/bench/raw\`) is the baseline: io_uring on an image file opened with O_DIRECT, plain reads and writes (no registered buffers, no polling), as lunfs's own file backend does.  Every image is written in full once first, so that the host filesystem has every block allocated, as a LUN would.
- **raw, same file**: raw on a $FILE_SIZE region of the image file, before \`mkfs.lunfs\` makes the volume on that same file.
- **raw, paired** (the baseline of the ratios): storage under a VM drifts by tens of percent from one minute to the next (compare the ranges), so a raw run a few minutes before lunfs says little about the moment lunfs ran.  While the volume is mounted, lunfs-bench therefore runs raw once more before each of its round-robin runs, on a second, prefilled $FILE_SIZE image file on the same host filesystem (\`lunfs-bench -B\`); each lunfs run has a raw run of the same workload seconds before it.
- **lunfs** (\`build/bench/lunfs-bench\`) runs the same workloads through \`fs/lunfs.h\`: files in the root directory, opened \`LUNFS_OPEN_EXCL\`, data through the async queue (\`lunfs_ioq_*\`) at the same queue depths.  The *thin* file is sized with \`lunfs_setattr\` (all holes), written once from start to end, then read back once ($THIN_ROUNDS rounds asked, each on a new file).  The *preallocated* file is made with \`lunfs_fallocate(LUNFS_FALLOC_ZERO)\` (eager-zeroed) and gets the other workloads.
- Sequential requests are 1 MiB at queue depth 8; random requests are 4 KiB at queue depth 32, uniform over the $FILE_SIZE file (region), from fixed seeds.  Every 4 KiB sector written carries its own offset and every read checks it; a wrong sector stops the bench, so none came back wrong.
- Numbers are the median of all runs, with the lowest and highest in brackets.  *lunfs / raw* is the median over the pairs of (lunfs run / the raw run just before it), and *pairs at target* counts the pairs whose ratio meets the target; the thin file has no pairs, so its ratio is lunfs / the median paired raw run.  *vs same file* is lunfs median / same-file raw median, as a check.  The targets are judged on *lunfs / raw*.

## Results

| workload | unit | raw, paired | raw, same file | lunfs | lunfs / raw | pairs at target | vs same file | target | met |
|---|---|---|---|---|---|---|---|---|---|
$ROWS
All targets met: **$MET_ALL**.  Targets (as the issue sets them, on a preallocated file): sequential ≥ 0.95× raw, random IOPS ≥ 0.90× raw.

The thin-file rows are for information.  A first write into a hole costs about four device I/Os per 1 MiB request: the data, a flush (the data must be durable before the pointer that exposes it), the journal transaction that allocates the block, and its flush.  Concurrent callers (the FUSE mount's threads) share that work: the writes pending together cost one flush and one transaction (group commit, LOCKING.md section 15; see the FUSE section's thin row).  The async queue still runs such writes synchronously through \`lunfs_pwrite\`, one at a time, so queue depth 8 behaves like depth 1 here and each write is a group of its own.  VMware's answer is the same trade: thin disks are slower on first write than thick ones.

Related figures:

| | |
|---|---|
| raw first write of the fresh sparse image (host filesystem allocating), 1 MiB QD8 | $first_mb MB/s (second image: $rawp_first MB/s) |
| lunfs \`fallocate(LUNFS_FALLOC_ZERO)\` of $FILE_SIZE, in calls of $fz_chunk bytes | $fz_mb MB/s ($fz_s s; $fz_w MB written to the device; the image file then holds $ezt_img MB) |
| thin first-write rounds done (each on a new $FILE_SIZE file) | $thin_n of $THIN_ROUNDS |
| lunfs mount / unmount | $mount_s s / $umount_s s |

Device I/Os per lunfs request (reads + writes + flushes + CAWs, from \`lunfs_dev_stats()\`, over all runs), and bytes written to the device per byte written by the application:

| workload | device I/Os per request | device bytes written per byte written |
|---|---|---|
$IOREQ

## Problems seen in the library

$PROBLEMS

## Metadata: device I/Os per operation

Counted with \`lunfs_dev_stats()\` (creates) or the device's own counters (locks); heartbeat renewals and the read of the heartbeat region after each (see *Heartbeat and lock I/O* below), which run in the background, are not counted.

| operation | device I/Os | reads | writes | flushes | CAWs | time |
|---|---|---|---|---|---|---|
| create an empty file (\`lunfs_mknod\` S_IFREG\|0644, $(cr n) files in a fresh directory), during the loop | **$(cr io_per_op)** | $(cr reads) | $(cr writes) | $(cr flushes) | $(cr caws) | $(cr us_per_op) µs |
| the same, including what follows once the idle locks are released (journal checkpoint, lock releases) | **$(cr settled_io_per_op)** | $(cr settled_reads) | $(cr settled_writes) | $(cr settled_flushes) | $(cr settled_caws) | |
| lock acquire (\`lk_acquire\` exclusive on a free inode lock, $(la n) times) | **$(la io_per_op)** | $(la reads) | $(la writes) | $(la flushes) | $(la caws) | $(la us_per_op) µs |
| lock release (\`lk_release\`) | **$(lr io_per_op)** | $(lr reads) | $(lr writes) | $(lr flushes) | $(lr caws) | $(lr us_per_op) µs |

The lock figures come from \`lock/lk.h\` directly (\`hb_claim\` on the fresh volume, then \`lk_acquire\`/\`lk_release\` on \`geom_ino_lock()\` of an unused inode), because \`fs/lunfs.h\` has no call that takes just a lock.  On the file backend a CAW is emulated under an OFD lock; on iSCSI it is one SCSI COMPARE AND WRITE.

$(cluster_section)

$(fuse_section)

$(cat bench/analysis-fuse.md)

$(nbd_section)

$(ha_section)

## Raw output

<details><summary>raw, same file (before mkfs)</summary>

\`\`\`
$(cat "$WORK/raw0.log" "$WORK/raw1.log")
\`\`\`
</details>

<details><summary>raw, paired (second image)</summary>

\`\`\`
$(cat "$WORK/rawp0.log" "$WORK/rawp.log")
\`\`\`
</details>

<details><summary>lunfs-bench</summary>

\`\`\`
$(cat "$WORK/lunfs.log")
\`\`\`
</details>

<details><summary>lunfs-cluster</summary>

\`\`\`
$(cat "$CL")
\`\`\`
</details>

<details><summary>host B's log (mount.lunfs, the survivor of the failover rounds)</summary>

\`\`\`
$(cat "$WORK/hostb.log" 2>/dev/null)
\`\`\`
</details>
EOF
mv "$TMP" "$OUT" || fail "cannot write $OUT"
echo "bench: wrote $OUT (${ELAPSED} s, ${CSECS} s of it several hosts, ${FSECS} s through FUSE, ${NSECS} s through NBD); all targets met: $MET_ALL; failover target met: $FO_MET" >&2
if [ -n "$FUSE_FAIL" ] || [ -n "$NBD_FAIL" ]; then
	for f in "$FUSE_FAIL" "$NBD_FAIL"; do
		[ -z "$f" ] || echo "bench: $f (see $OUT)" >&2
	done
	exit 1
fi
if [ -n "$CL_FAIL" ]; then
	echo "bench: lunfs-cluster failed in:$CL_FAIL (see $OUT)" >&2
	[ -s "$WORK/cluster.err" ] && cat "$WORK/cluster.err" >&2
	exit 1
fi
