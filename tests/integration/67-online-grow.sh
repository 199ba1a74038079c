#!/bin/bash
# Online grow: two hosts mount a 512 MiB volume; fio writes a VM disk
# through h1 and verifies it; the image is enlarged by 1 GiB and `lunfs
# grow` runs beside them.  Both hosts follow within a heartbeat (their logs
# say so before anything asks them), their df shows the new size within a few
# seconds without a remount, a file larger than the old free space is
# written through h2, fio saw no error, and after unmounting fsck is clean
# and the backup superblock sits in the last 4 KiB of the image (raw bytes,
# docs/FORMAT.md: magic LNSB at offset 8, owner 1 at 48, self at 32).  A grow
# is refused while fsck -y holds the volume, and works once it is done.
. "$(dirname "$0")/lib.sh"
command -v fio >/dev/null || fail "fio is not installed (make deps installs it)"
IMG="$T/v.img"
mkfs_multi "$IMG" 512M
mount_lunfs "$IMG" "$T/h1" h1 "log=$T/h1.log"
mount_lunfs "$IMG" "$T/h2" h2 "log=$T/h2.log"
ok "two hosts mounted"
# a LE u64 at byte offset OFF of the image
u64() { od -An -tu8 -j "$1" -N 8 "$IMG" | tr -d ' '; }
old_blocks=$(stat -f -c %b "$T/h1")
old_free=$(stat -f -c %a "$T/h1")

expect_fail 1 'not larger than the volume' "$BIN/lunfs" grow "$IMG"

cd "$T" # fio keeps verify state files in the working directory
fio --name=vm --filename="$T/h1/vm.img" --size=96M --bs=64k --rw=randwrite --ioengine=psync \
	--direct=1 --verify=crc32c --do_verify=1 --time_based --runtime=12 --output="$T/fio.out" &
FIO=$!
on_exit "kill $FIO 2>/dev/null"
sleep 3
truncate -s +1G "$IMG"
"$BIN/lunfs" grow "$IMG" >"$T/grow.out" 2>&1 || fail "lunfs grow: $(cat "$T/grow.out")"
ok "$(cat "$T/grow.out")"
t0=$(now_ms)
# each host follows by itself (its heartbeat-time check), before any df
for h in h1 h2; do
	poll 5 grep -q 'the volume grew to 1610612736 bytes' "$T/$h.log" ||
		fail "$h did not follow the grow: $(tail -3 "$T/$h.log")"
	ok "$h followed the grow by itself within $(( $(now_ms) - t0 )) ms"
done
t0=$(now_ms)
for h in h1 h2; do
	poll 5 eval '[ "$(stat -f -c %b "$T/'$h'")" -gt $(( old_blocks + 900 )) ]' ||
		fail "$h: df still shows $(stat -f -c %b "$T/$h") blocks (was $old_blocks)"
	ok "$h: df shows $(stat -f -c %b "$T/$h") blocks (was $old_blocks) after $(( $(now_ms) - t0 )) ms"
done
"$BIN/lunfs" grow "$T/h2" >"$T/grow2.out" 2>&1 && fail "a second grow did something: $(cat "$T/grow2.out")"

# more than the whole old free space, through the other host
big=$(( old_free + 64 ))
dd if=/dev/urandom of="$T/h2/big" bs=1M count="$big" conv=fsync status=none || fail "writing $big MiB through h2"
ok "h2 wrote a ${big} MiB file (the old volume had $old_free MiB free)"
wait "$FIO" || fail "fio: $(tail -20 "$T/fio.out")"
grep -q 'err= 0' "$T/fio.out" || fail "fio saw an error: $(grep err= "$T/fio.out")"
ok "fio wrote and verified through the grow without an error"
md5=$(md5sum <"$T/h2/big")
[ "$(md5sum <"$T/h1/big")" = "$md5" ] || fail "h1 reads other bytes of big than h2 wrote"
ok "h1 reads the big file h2 wrote"
umount_lunfs "$T/h1" && umount_lunfs "$T/h2" || fail "unmount"
"$BIN/fsck.lunfs" -n "$IMG" >"$T/fsck.out" 2>&1 || fail "fsck -n: $(cat "$T/fsck.out")"
ok "fsck -n clean after the grow"

# raw bytes: the primary names the new end, and the backup is there
size=$(stat -c %s "$IMG")
boff=$(( size / 4096 * 4096 - 4096 ))
[ "$(u64 256)" = "$boff" ] || fail "primary backup_off $(u64 256), want $boff"
[ "$(u64 80)" = "$(( boff + 4096 ))" ] || fail "primary dev_size $(u64 80)"
[ "$(dd if="$IMG" bs=1 skip=$(( boff + 8 )) count=4 status=none)" = LNSB ] || fail "no LNSB at the new end"
[ "$(u64 $(( boff + 32 )))" = "$boff" ] && [ "$(u64 $(( boff + 48 )))" = 1 ] ||
	fail "backup self $(u64 $(( boff + 32 ))) owner $(u64 $(( boff + 48 )))"
inc=$(od -An -tu4 -j 64 -N 4 "$IMG" | tr -d ' ')
[ $((inc & 1)) = 1 ] || fail "incompat $inc lacks GROWN (bit 0)"
ok "backup superblock at $boff (the new end), primary dev_size $(( boff + 4096 ))"

# refused while fsck -y holds the volume (it watches a dead host for a lease)
truncate -s +256M "$IMG"
mount_lunfs "$IMG" "$T/h3" h3 "log=$T/h3.log"
kill_daemon "$T/h3"
"$BIN/fsck.lunfs" -y "$IMG" >"$T/fsck-y.out" 2>&1 &
FPID=$!
on_exit "wait $FPID 2>/dev/null"
poll 10 grep -q '^Claiming' "$T/fsck-y.out" || fail "fsck does not claim: $(cat "$T/fsck-y.out")"
sleep 0.5
expect_fail 1 'held by fsck.lunfs@' "$BIN/lunfs" grow "$IMG"
wait "$FPID" || [ $? -le 1 ] || fail "fsck -y: $(cat "$T/fsck-y.out")"
"$BIN/lunfs" grow "$IMG" >"$T/grow3.out" 2>&1 || fail "grow after fsck: $(cat "$T/grow3.out")"
"$BIN/fsck.lunfs" -n "$IMG" >"$T/fsck3.out" 2>&1 || fail "fsck -n after the second grow: $(cat "$T/fsck3.out")"
ok "grown again once fsck was done: $(cat "$T/grow3.out"); fsck -n clean"
