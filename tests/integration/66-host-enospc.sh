#!/bin/bash
# The storage under the volume fills up: a thin 1 GiB image on a 64 MiB
# tmpfs.  mkfs allocates the image's metadata regions (journals included)
# on the tmpfs, so metadata writes never need new space there.  Writing
# through the mount until the tmpfs is full fails with ENOSPC; the daemon
# logs it once, saying what to do, however many writes fail; rm of the big
# file still works, the freed space takes new writes again, and fsck is
# clean.  A volume whose metadata does not fit is made with a warning.
. "$(dirname "$0")/lib.sh"
mount_tmpfs "$T/host" 64M
IMG="$T/host/v.img"
truncate -s 1G "$IMG"
"$BIN/mkfs.lunfs" -N 4 -J 1M "$IMG" >"$T/mkfs.out" 2>&1 || fail "mkfs: $(cat "$T/mkfs.out")"
mib=$(sed -n 's/^metadata: *\([0-9]*\) MiB allocated on the storage under .*/\1/p' "$T/mkfs.out")
[ -n "$mib" ] && [ "$mib" -gt 4 ] || fail "mkfs did not allocate the metadata: $(cat "$T/mkfs.out")"
used=$(du -k "$IMG" | cut -f1)
[ "$used" -ge $((mib * 1024)) ] || fail "image uses $used KiB, metadata is $mib MiB"
ok "mkfs allocated $mib MiB of metadata on the host filesystem (image uses $used KiB of 1 GiB)"

# a volume whose metadata cannot fit: made sparse, with a warning
truncate -s 64G "$T/host/huge.img"
"$BIN/mkfs.lunfs" -q "$T/host/huge.img" 2>"$T/huge.err" || fail "mkfs of a 64 GiB image: $(cat "$T/huge.err")"
grep -q "warning: the storage under $T/host/huge.img has no room for the metadata" "$T/huge.err" ||
	fail "no warning for metadata that does not fit: $(cat "$T/huge.err")"
rm "$T/host/huge.img"
ok "metadata that does not fit: $(cat "$T/huge.err")"

mount_lunfs "$IMG" "$T/mnt" h1 "log=$T/h1.log"
set +e
dd if=/dev/zero of="$T/mnt/big" bs=1M count=200 conv=fsync 2>"$T/dd.err"
rc=$?
set -e
[ $rc != 0 ] && grep -q 'No space left on device' "$T/dd.err" || fail "dd until full: exit $rc: $(cat "$T/dd.err")"
size=$(stat -c %s "$T/mnt/big")
for i in 1 2 3 4 5; do
	dd if=/dev/zero of="$T/mnt/more$i" bs=1M count=4 oflag=direct 2>/dev/null && fail "a write to a full host filesystem succeeded"
done
ok "writes fail with ENOSPC once the host filesystem is full ($((size >> 20)) MiB written)"

n=$(grep -c 'the storage under .* is full' "$T/h1.log" || true)
[ "$n" = 1 ] || fail "want exactly one 'storage is full' line, got $n: $(cat "$T/h1.log")"
grep -q "lunfs: the storage under $IMG is full (a write failed with ENOSPC): free space on it or grow it" "$T/h1.log" ||
	fail "the line does not say what to do: $(cat "$T/h1.log")"
! grep -q 'still full' "$T/h1.log" || fail "said twice: $(cat "$T/h1.log")"
ok "logged once: $(grep 'is full' "$T/h1.log")"

rm "$T/mnt/big" || fail "rm of the big file on a full host filesystem"
rm -f "$T/mnt"/more* || fail "rm of the empty files"
[ ! -e "$T/mnt/big" ] || fail "big is still there"
head -c 3M /dev/urandom >"$T/data"
cp "$T/data" "$T/mnt/after" && cmp "$T/data" "$T/mnt/after" || fail "a write into the freed space"
ok "rm works on a full host filesystem; the freed space takes writes again"

umount_lunfs "$T/mnt" || fail "unmount"
"$BIN/fsck.lunfs" -n "$IMG" >"$T/fsck.out" 2>&1 || fail "fsck: $(cat "$T/fsck.out")"
ok "fsck clean"
