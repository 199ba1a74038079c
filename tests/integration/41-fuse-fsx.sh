#!/bin/bash
# Random I/O verified against a shadow copy (50k ops buffered, 50k with
# O_DIRECT), and fio with verify=crc32c, on a real mount; then fsck clean.
# That mount uses the default data path, io=loop (the daemon's event loop:
# reads and writes of mapped blocks on the loop's own device queue).  Then
# the same, shorter, with io=threads (a thread per request) and io=async
# (the library's completion thread).
. "$(dirname "$0")/lib.sh"
command -v fio >/dev/null || fail "fio is not installed (make deps installs it)"
truncate -s 2G "$T/v.img"
"$BIN/mkfs.lunfs" -q -N 8 -J 4M "$T/v.img"
mount_lunfs "$T/v.img" "$T/mnt" fsx
"$TBIN/fsx" "$T/mnt/fsx-buffered" -N 50000 -S 11 || fail "fsx buffered"
"$TBIN/fsx" "$T/mnt/fsx-direct" -N 50000 -S 12 -d || fail "fsx O_DIRECT"
cd "$T" # fio keeps verify state files in the working directory
fio --name=verify --directory="$T/mnt" --size=64M --bs=4k --rw=randwrite --ioengine=psync \
	--verify=crc32c --verify_fatal=1 --do_verify=1 --numjobs=2 --group_reporting \
	--output="$T/fio.out" || fail "fio: $(tail -20 "$T/fio.out")"
grep -q 'err= 0' "$T/fio.out" || fail "fio reported errors: $(cat "$T/fio.out")"
ok "fio randwrite with verify=crc32c: no errors"
fio --name=direct --directory="$T/mnt" --size=64M --bs=64k --rw=write --direct=1 --ioengine=libaio \
	--iodepth=8 --verify=crc32c --verify_fatal=1 --output="$T/fio2.out" || fail "fio O_DIRECT: $(tail -20 "$T/fio2.out")"
ok "fio O_DIRECT libaio QD8 with verify: no errors"
fio --name=loop --directory="$T/mnt" --size=64M --bs=4k --rw=randwrite --direct=1 --ioengine=io_uring \
	--iodepth=32 --verify=crc32c --verify_fatal=1 --output="$T/fio4.out" || fail "fio io_uring QD32: $(tail -20 "$T/fio4.out")"
grep -q 'err= 0' "$T/fio4.out" || fail "fio io_uring QD32 reported errors: $(cat "$T/fio4.out")"
ok "fio O_DIRECT io_uring QD32 random writes with verify: no errors"
umount_lunfs "$T/mnt" || fail "unmount"
"$BIN/fsck.lunfs" -n "$T/v.img" >"$T/fsck" || fail "fsck: $(cat "$T/fsck")"
ok "fsck clean"
# the other data paths: the same checks, then fsck again
for mode in threads async; do
	mount_lunfs "$T/v.img" "$T/mnt" fsx io=$mode
	"$TBIN/fsx" "$T/mnt/fsx-$mode" -N 15000 -S 13 -d || fail "fsx O_DIRECT, io=$mode"
	"$TBIN/fsx" "$T/mnt/fsx-$mode-buf" -N 10000 -S 14 || fail "fsx buffered, io=$mode"
	fio --name=$mode --directory="$T/mnt" --size=64M --bs=4k --rw=randwrite --direct=1 --ioengine=io_uring \
		--iodepth=32 --verify=crc32c --verify_fatal=1 --output="$T/fio3.out" || fail "fio io=$mode: $(tail -20 "$T/fio3.out")"
	grep -q 'err= 0' "$T/fio3.out" || fail "fio io=$mode reported errors: $(cat "$T/fio3.out")"
	ok "io=$mode: fsx and fio io_uring QD32 with verify: no errors"
	umount_lunfs "$T/mnt" || fail "unmount"
	"$BIN/fsck.lunfs" -n "$T/v.img" >"$T/fsck" || fail "fsck: $(cat "$T/fsck")"
	ok "fsck clean after io=$mode"
done
