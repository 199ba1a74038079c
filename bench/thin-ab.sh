#!/bin/bash
# bench/thin-ab.sh: an A/B of the first write into a thin file through the
# mount, between two builds, with a raw baseline after each pair.
#
#   bench/thin-ab.sh OLD_BUILD_DIR NEW_BUILD_DIR [ROUNDS]
#
# Each round, for each build: a 6 GiB image prefilled with dd (a LUN has
# every block), mkfs.lunfs -q -f -N 8 -J 8M, mount.lunfs, then fio
# (1 MiB sequential writes, QD8, O_DIRECT, io_uring, 2 GiB) into a new file
# through the mount; then the same fio on a prefilled 2 GiB raw file next
# to it.  Prints MB/s per run.  Needs root (FUSE).  The image and the mount
# go away whatever happens.  Used for the A/B in bench/analysis-fuse.md.
set -u
[ $# -ge 2 ] || { echo "usage: $0 OLD_BUILD_DIR NEW_BUILD_DIR [ROUNDS]" >&2; exit 2; }
OLD=$1 NEW=$2 ROUNDS=${3:-3}
D=$(mktemp -d "${BENCH_DIR:-/var/tmp}/thin-ab.XXXXXX")
mkdir "$D/m"
cleanup() {
	umount "$D/m" 2>/dev/null
	rm -rf "$D"
}
trap cleanup EXIT
trap 'exit 1' INT TERM
mbps() {
	fio --name=t --filename="$1" --size=2G --bs=1M --iodepth=8 --rw=write --direct=1 \
		--ioengine=io_uring --output-format=json 2>/dev/null |
		python3 -c 'import json,sys; print(round(json.load(sys.stdin)["jobs"][0]["write"]["bw_bytes"]/1e6))'
}
dd if=/dev/zero of="$D/img" bs=4M count=1536 oflag=direct status=none || exit 1
for round in $(seq "$ROUNDS"); do
	for b in old new; do
		B=$OLD
		[ $b = new ] && B=$NEW
		"$B/bin/mkfs.lunfs" -q -f -N 8 -J 8M "$D/img" >/dev/null || exit 1
		"$B/bin/mount.lunfs" "$D/img" "$D/m" -o host=ab || exit 1
		echo "round $round $b $(mbps "$D/m/thin.img") MB/s"
		umount "$D/m"
		# the daemon lets go of its heartbeat slot after the unmount
		while pgrep -f "mount.lunfs $D/img" >/dev/null; do sleep 0.1; done
	done
	dd if=/dev/zero of="$D/raw" bs=4M count=512 oflag=direct status=none
	echo "round $round raw $(mbps "$D/raw") MB/s"
	rm -f "$D/raw"
done
