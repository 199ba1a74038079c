#!/bin/bash
# 61-damaged-slot: a heartbeat slot that no longer decodes never blocks the
# cluster (issue finding 8).  Host a holds a VM disk open read-write and has
# just created a file in / (it holds the root directory's lock, lingering
# for 10 s); random bytes land over a's slot.  a fences itself (its renewal
# miscompares); b watches the slot's raw bytes, and once they stood still
# for a lease recovers it by its index: it replays the journal at the slot's
# place and frees the slot under a new generation.  b must then open a's
# disk read-write and create files in /, within a few leases (before: b
# failed on a's objects indefinitely, still at +20 s, and nobody could
# create in / because the stuck lock was the root's).  a's writes through
# its old descriptor fail with EIO; a rejoins by itself (new operations
# work); a's identity remounts; fsck -n is clean at the end.
. "$(dirname "$0")/lib.sh"
IMG="$T/v.img"
mkfs_multi "$IMG" 1G
A="$T/a" B="$T/b"
mount_lunfs "$IMG" "$A" hostA "log=$T/a.log,linger_ms=10000"
mount_lunfs "$IMG" "$B" hostB "log=$T/b.log"
head -c 1048576 /dev/urandom >"$T/disk.ref"
cp "$T/disk.ref" "$A/vm.vmdk"
sync "$A/vm.vmdk"
exec 7<>"$A/vm.vmdk" # a holds it open read-write
on_exit "exec 7>&-"
echo new >"$A/new-in-root" # a holds the root's lock now (lingering)
"$BIN/lunfs" hosts "$IMG" --json >"$T/hosts.json"
SA=$(python3 -c 'import json,sys; print([s["slot"] for s in json.load(open(sys.argv[1]))["slots"] if s["host"]=="hostA" and s["state"]=="live"][0])' "$T/hosts.json")
HB_OFF=$(python3 -c 'import struct,sys; f=open(sys.argv[1],"rb"); f.seek(120); print(struct.unpack("<Q", f.read(8))[0])' "$IMG")
head -c 512 /dev/urandom >"$T/junk"
dd if="$T/junk" of="$IMG" bs=512 seek=$(((HB_OFF + SA * 4096) / 512)) conv=notrunc status=none
t0=$(now_ms)
ok "random bytes over a's heartbeat slot $SA"

# b: a's disk read-write, and a new file in /
cat >"$T/open_rw.py" <<'EOF'
import errno, os, sys
try:
    os.close(os.open(sys.argv[1], os.O_RDWR))
except OSError as e:
    sys.exit(1)
EOF
poll 30 python3 "$T/open_rw.py" "$B/vm.vmdk" ||
	fail "b cannot open a's disk read-write $(( ($(now_ms) - t0) / 1000 )) s after the damage: $(grep lunfs "$T/b.log" | tail -3)"
ms=$(( $(now_ms) - t0 ))
[ "$ms" -ge 2000 ] || fail "b opened a's disk after $ms ms: before a lease of silence"
ok "b opened a's disk read-write $ms ms after the damage (lease 3000 ms)"
poll 30 sh -c "echo b >'$B/b-in-root'" || fail "b cannot create in /"
ok "b created a file in / ($POLL_MS ms more)"
cmp "$B/vm.vmdk" "$T/disk.ref" || fail "a's fsynced disk differs on b"
[ "$(cat "$B/new-in-root")" = new ] || fail "a's new file in / is gone"
grep -q 'recovered host (damaged slot' "$T/b.log" || fail "b's log: $(grep lunfs "$T/b.log" | tail -3)"
ok "a's disk and a's new file intact on b; b's log: $(grep -o 'recovered host (damaged slot[^;]*' "$T/b.log" | head -1)"
grep -q 'fenced' "$T/a.log" || fail "a did not fence itself: $(tail -3 "$T/a.log")"
! (printf late >&7) 2>/dev/null || fail "a's disk, open before the fence, could still be written"
# a rejoins by itself (a new slot, once b recovered the damaged one): new
# operations work, its old descriptor stays failed
poll 20 grep -q 'rejoined after the fence' "$T/a.log" || fail "a did not rejoin: $(tail -3 "$T/a.log")"
echo late >"$A/late" || fail "a, rejoined, cannot create a file"
poll 5 test -e "$B/late" || fail "b does not see the file a created after rejoining"
! (printf late >&7) 2>/dev/null || fail "a's old descriptor works again after the rejoin"
ok "a fenced itself, then rejoined: a new file shows on b, its old descriptor still fails"
exec 7>&-
umount_lunfs "$A" || true
mount_lunfs "$IMG" "$A" hostA "log=$T/a2.log"
[ "$(cat "$A/b-in-root")" = b ] || fail "b's file is not there on a's remount"
umount_lunfs "$A"
umount_lunfs "$B"
slots_free "$IMG"
"$BIN/fsck.lunfs" -n "$IMG" >"$T/fsck.out" 2>&1 || fail "fsck -n: $(cat "$T/fsck.out")"
ok "a's identity remounted and sees b's file; every slot free; fsck -n clean"
