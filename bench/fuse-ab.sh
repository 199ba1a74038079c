#!/bin/bash
# bench/fuse-ab.sh: an A/B of mount options (the FUSE data paths) on random
# and sequential I/O through the mount, with a raw baseline after each run.
#
#   bench/fuse-ab.sh BUILD_DIR ROUNDS "OPTS_A" "OPTS_B" ...
#   e.g. bench/fuse-ab.sh build 2 "" "io=threads"
#
# Each round, for each option set: a 4 GiB image prefilled with dd (a LUN
# has every block), mkfs.lunfs -q -f -N 8 -J 8M, mount.lunfs -o host=ab,OPTS,
# a 2 GiB file written in full through the mount; then fio (O_DIRECT,
# io_uring, 4 s each) random 4 KiB reads and writes at QD32 and sequential
# 1 MiB reads and writes at QD8, each followed by the same fio on a
# prefilled 2 GiB raw file next to it.  Prints, per workload, lunfs/raw
# (ratio) and, for lunfs, the daemon's CPU time and context switches per
# request.  Needs root (FUSE).  Used for bench/analysis-fuse.md.
set -u
[ $# -ge 3 ] || { echo "usage: $0 BUILD_DIR ROUNDS OPTS..." >&2; exit 2; }
B=$1 R=$2
shift 2
OPTS=("$@")
D=$(mktemp -d "${BENCH_DIR:-/var/tmp}/fuse-ab.XXXXXX")
mkdir "$D/m"
cleanup() {
	umount "$D/m" 2>/dev/null
	rm -rf "$D"
}
trap cleanup EXIT
trap 'exit 1' INT TERM
iops() {
	fio --name=t --filename="$1" --size=2G --bs="$3" --iodepth="$4" --rw="$2" --direct=1 \
		--ioengine=io_uring --time_based --runtime=4 --norandommap --randrepeat=0 \
		--output-format=json 2>/dev/null |
		python3 -c 'import json,sys; j=json.load(sys.stdin)["jobs"][0]; print(round(j["read"]["iops"]+j["write"]["iops"]))'
}
cpu() { awk '{print $14 + $15}' "/proc/$1/stat"; }
ctx() { cat /proc/"$1"/task/*/status | awk '/ctxt_switches/ {s += $2} END {print s}'; }
dd if=/dev/zero of="$D/img" bs=4M count=1024 oflag=direct status=none || exit 1
dd if=/dev/zero of="$D/raw" bs=4M count=512 oflag=direct status=none || exit 1
hz=$(getconf CLK_TCK)
for round in $(seq "$R"); do
	for o in "${OPTS[@]}"; do
		"$B/bin/mkfs.lunfs" -q -f -N 8 -J 8M "$D/img" >/dev/null || exit 1
		"$B/bin/mount.lunfs" "$D/img" "$D/m" -o "host=ab${o:+,$o}" || exit 1
		pid=$(pgrep -f "mount.lunfs $D/img")
		dd if=/dev/zero of="$D/m/f" bs=1M count=2048 oflag=direct status=none || exit 1
		for w in "randread 4k 32" "randwrite 4k 32" "read 1M 8" "write 1M 8"; do
			set -- $w
			c0=$(cpu "$pid") s0=$(ctx "$pid")
			a=$(iops "$D/m/f" "$1" "$2" "$3")
			c1=$(cpu "$pid") s1=$(ctx "$pid")
			b=$(iops "$D/raw" "$1" "$2" "$3")
			python3 -c "a,b,c,s=$a,$b,($c1-$c0)/$hz,$s1-$s0; n=max(a*4,1); print('round $round [$o] %-9s lunfs %7d raw %7d (%.2f) daemon %.1f us and %.2f switches per request' % ('$1', a, b, a/max(b,1), c*1e6/n, s/n))"
		done
		umount "$D/m"
		while pgrep -f "mount.lunfs $D/img" >/dev/null; do sleep 0.1; done
	done
done
