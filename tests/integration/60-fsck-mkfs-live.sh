#!/bin/bash
# 60-fsck-mkfs-live: fsck.lunfs -y and mkfs.lunfs -f never write under a live
# host, and no host mounts while they hold the volume (issue findings 5, 6, 7).
#  1. mkfs -f while hosts a and b are mounted and a VM disk is being written
#     on a: mkfs refuses (exit 1, names the live host), writes nothing; the
#     writer never sees an error, its data is intact.  (Before: mkfs
#     succeeded and the hosts went on writing into the new volume.)
#  2. fsck -y with a and b mounted: exit 8, "nothing was written"; a still
#     holds its disk exclusively (b's O_RDWR open gets EBUSY).
#  3. a damaged sector over live a's heartbeat slot, fsck -y with b mounted:
#     exit 8 and the damaged slot is left as it is (before: fsck zeroed it
#     first, a's locks counted as free without a replay, and a's remount
#     replayed its old journal over b's files).  Then b recovers a's slot by
#     itself (after a lease of unchanged bytes), b creates files, a's
#     identity remounts, and every file of b is there.
#  4. fsck -y that must watch a dead host's slot for a lease: a host that
#     mounts meanwhile is refused ("held by fsck.lunfs@..."), and no lock is
#     reset under it (before: fsck reset the new host's exclusive open lock
#     as stale and a second host opened the same file read-write).  fsck
#     then takes the dead slot over and the volume mounts again.
# Ends with fsck -n clean.
. "$(dirname "$0")/lib.sh"
IMG="$T/v.img"
mkfs_multi "$IMG" 1G
A="$T/a" B="$T/b" C="$T/c" D="$T/d"
mount_lunfs "$IMG" "$A" hostA "log=$T/a.log"
mount_lunfs "$IMG" "$B" hostB "log=$T/b.log"

# writer: rewrites a 1 MiB VM disk with a counter pattern and fsyncs, until
# the stop file appears; one line per round ("ok N" / "err ERRNO").
cat >"$T/writer.py" <<'EOF'
import os, sys, time
path, stop, log = sys.argv[1], sys.argv[2], open(sys.argv[3], "a", buffering=1)
fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
n = 0
while not os.path.exists(stop):
    n += 1
    data = (b"%08d" % n) * (1 << 17)
    try:
        os.pwrite(fd, data, 0)
        os.fsync(fd)
        log.write("ok %d\n" % n)
    except OSError as e:
        log.write("err %s\n" % e.strerror)
    time.sleep(0.02)
os.close(fd)
EOF
touch "$T/writer.log"
python3 "$T/writer.py" "$A/vm.vmdk" "$T/stop" "$T/writer.log" &
WPID=$!
on_exit "touch '$T/stop'; wait $WPID 2>/dev/null"
poll 10 grep -q '^ok' "$T/writer.log" || fail "writer on a does not start: $(cat "$T/writer.log")"

# ---- 1. mkfs -f under live hosts ----
cp --sparse=always "$IMG" "$T/before.img" 2>/dev/null || true
set +e
"$BIN/mkfs.lunfs" -f -q "$IMG" >"$T/mkfs.out" 2>&1
rc=$?
set -e
[ "$rc" = 1 ] || fail "mkfs -f under live hosts: exit $rc, want 1: $(cat "$T/mkfs.out")"
grep -q 'is mounted by host "host[AB]"' "$T/mkfs.out" || fail "mkfs -f does not name the live host: $(cat "$T/mkfs.out")"
grep -q 'does not override a live host' "$T/mkfs.out" || fail "mkfs -f: $(cat "$T/mkfs.out")"
ok "mkfs -f with 2 live hosts refused (exit 1): $(head -1 "$T/mkfs.out")"
n0=$(grep -c '^ok' "$T/writer.log")
sleep 1.5
n1=$(grep -c '^ok' "$T/writer.log")
[ "$n1" -gt "$n0" ] || fail "the writer on a stopped after mkfs: $(tail -3 "$T/writer.log")"
! grep -q '^err' "$T/writer.log" || fail "the writer on a got errors: $(grep '^err' "$T/writer.log" | head -3)"
ls "$B/vm.vmdk" >/dev/null || fail "b no longer sees a's disk"
"$BIN/lunfs" info "$IMG" >/dev/null || fail "the volume is no longer readable after mkfs -f"
ok "a's writer went on without an error ($n0 -> $n1 fsynced rounds); the volume is intact"

# ---- 2. fsck -y under live hosts ----
set +e
"$BIN/fsck.lunfs" -y "$IMG" >"$T/fsck.out" 2>&1
rc=$?
set -e
[ "$rc" = 8 ] || fail "fsck -y under live hosts: exit $rc, want 8: $(cat "$T/fsck.out")"
grep -q 'nothing was written' "$T/fsck.out" || fail "fsck -y: $(cat "$T/fsck.out")"
python3 - "$B/vm.vmdk" <<'EOF' || fail "b could open a's open disk read-write after fsck -y"
import errno, os, sys
try:
    os.close(os.open(sys.argv[1], os.O_RDWR))
except OSError as e:
    sys.exit(0 if e.errno == errno.EBUSY else 1)
sys.exit(1)
EOF
ok "fsck -y with 2 live hosts: exit 8, nothing written; a's disk still exclusive (EBUSY on b)"
touch "$T/stop"
wait $WPID
! grep -q '^err' "$T/writer.log" || fail "the writer on a got errors: $(grep '^err' "$T/writer.log" | head -3)"
last=$(tail -1 "$T/writer.log" | awk '{print $2}')
python3 - "$B/vm.vmdk" "$last" <<'EOF' || fail "a's last fsynced round is not what b reads"
import sys, time
want = (b"%08d" % int(sys.argv[2])) * (1 << 17)
for _ in range(50):
    if open(sys.argv[1], "rb").read() == want:
        sys.exit(0)
    time.sleep(0.1)
sys.exit(1)
EOF
ok "a's last fsynced round ($last) reads back on b"

# ---- 3. a damaged sector over live a's slot, fsck -y with b mounted ----
"$BIN/lunfs" hosts "$IMG" --json >"$T/hosts.json"
SA=$(python3 -c 'import json,sys; print([s["slot"] for s in json.load(open(sys.argv[1]))["slots"] if s["host"]=="hostA" and s["state"]=="live"][0])' "$T/hosts.json")
HB_OFF=$(python3 -c 'import struct,sys; f=open(sys.argv[1],"rb"); f.seek(120); print(struct.unpack("<Q", f.read(8))[0])' "$IMG")
OFF=$((HB_OFF + SA * 4096))
mkdir -p "$A/keep" && echo a-data >"$A/keep/x" && sync "$A/keep/x"
head -c 512 /dev/urandom >"$T/junk"
dd if="$T/junk" of="$IMG" bs=512 seek=$((OFF / 512)) conv=notrunc status=none
set +e
"$BIN/fsck.lunfs" -y "$IMG" >"$T/fsck3.out" 2>&1
rc=$?
set -e
[ "$rc" = 8 ] || fail "fsck -y with b live and a's slot damaged: exit $rc, want 8: $(cat "$T/fsck3.out")"
python3 - "$IMG" "$OFF" <<'EOF' || fail "fsck -y rewrote the damaged slot while b was live"
import sys
f = open(sys.argv[1], "rb"); f.seek(int(sys.argv[2])); b = f.read(512)
sys.exit(1 if b == bytes(512) else 0)
EOF
ok "fsck -y with b live and a's slot damaged: exit 8, the slot left alone"
# b recovers a's damaged slot by itself
poll 30 grep -q 'recovered host (damaged slot' "$T/b.log" ||
	fail "b did not recover a's damaged slot: $(grep lunfs "$T/b.log" | tail -5)"
ok "b recovered a's damaged slot ($(grep -o 'recovered host (damaged slot [0-9]*)[^;]*' "$T/b.log" | head -1))"
for i in 1 2 3 4 5; do echo "b-$i" >"$B/bfile$i"; done
sync "$B/bfile5"
grep -q 'fenced' "$T/a.log" || fail "a did not fence itself: $(tail -3 "$T/a.log")"
umount_lunfs "$A" || true
mount_lunfs "$IMG" "$A" hostA "log=$T/a2.log"
for i in 1 2 3 4 5; do
	[ "$(cat "$A/bfile$i" 2>/dev/null)" = "b-$i" ] || fail "b's file bfile$i is gone after a's remount"
done
[ "$(cat "$A/keep/x")" = a-data ] || fail "a's fsynced file is gone"
ok "a's identity remounted: b's 5 files and a's fsynced file are there"
umount_lunfs "$A"
umount_lunfs "$B"

# ---- 4. a host mounting while fsck -y holds the volume ----
mount_lunfs "$IMG" "$C" hostC "log=$T/c.log"
echo c >"$C/c-file" && sync "$C/c-file"
kill_daemon "$C" # a dead host: fsck must watch its slot for a lease
"$BIN/fsck.lunfs" -y "$IMG" >"$T/fsck4.out" 2>&1 &
FPID=$!
on_exit "wait $FPID 2>/dev/null"
poll 10 grep -q '^Claiming' "$T/fsck4.out" || fail "fsck does not claim: $(cat "$T/fsck4.out")"
sleep 0.5
mkdir -p "$D"
set +e
"$BIN/mount.lunfs" "$IMG" "$D" -o host=hostD >"$T/mountd.out" 2>&1
rc=$?
set -e
if [ "$rc" = 0 ]; then
	on_exit "umount_lunfs '$D'"
	fail "hostD mounted while fsck -y held the volume"
fi
grep -q 'held by fsck.lunfs@' "$T/mountd.out" || fail "hostD's mount failed for another reason: $(cat "$T/mountd.out")"
ok "hostD's mount during fsck -y refused: $(head -1 "$T/mountd.out")"
set +e
wait $FPID
rc=$?
set -e
[ "$rc" = 0 ] || [ "$rc" = 1 ] || fail "fsck -y over a dead host: exit $rc: $(cat "$T/fsck4.out")"
grep -q 'HB_STALE_LIVE' "$T/fsck4.out" || fail "fsck did not take the dead host's slot over: $(cat "$T/fsck4.out")"
slots_free "$IMG"
mount_lunfs "$IMG" "$D" hostD "log=$T/d.log"
[ "$(cat "$D/c-file")" = c ] || fail "c's fsynced file is gone"
umount_lunfs "$D"
ok "fsck -y took the dead host's slot over (exit $rc); the volume mounts again and c's file is there"
"$BIN/fsck.lunfs" -n "$IMG" >"$T/fsck5.out" 2>&1 || fail "fsck -n not clean: $(cat "$T/fsck5.out")"
ok "fsck -n clean"
