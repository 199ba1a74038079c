#!/bin/bash
# 63-frozen-zeroing: a frozen host's late zeroing never lands over a new
# mount's data (file backend).
#   1. host A writes 4 KiB at offset 0 of a new file: the write allocates a
#      1 MiB file block, writes the 4 KiB and then zeroes the rest of the
#      block (fs/file.c fill_block: dev_zero, a punch-hole on an image file);
#      gdb holds A's daemon right before that dev_zero, after every check
#      above it;
#   2. past the lease, A's identity remounts on another mount point (it
#      waits for a lease of silence of its old slot and takes it over: the
#      old mount's uncommitted allocation is free again), creates a new
#      file, writes 1 MiB of a known pattern and fsyncs;
#   3. the old A is released (gdb detaches): its zeroing must be refused
#      (its lease ran out), its application gets EIO;
#   4. the new mount's 1 MiB reads back intact a few seconds later, on the
#      new mount and on a fresh mount of another host; every host unmounts;
#      fsck.lunfs -n is clean.
# Before the device-layer lease guard, the old A's punch-hole landed: 1020
# KiB of the new mount's fsynced data read back as zeros, and fsck said
# clean.
. "$(dirname "$0")/lib.sh"
need gdb python3
[ -x "$BIN/mount.lunfs" ] || fail "$BIN/mount.lunfs is not built (run make)"
IMG="$T/v.img"
mkfs_multi "$IMG" 1G
A1="$T/a1" A2="$T/a2" C="$T/c" G="$T/g"
mkdir -p "$G"
SIZE=1048576

# rejoin=off: the old A must stay fenced (its identity is mounted again
# below; a rejoin would only wait for that mount to go)
mount_lunfs "$IMG" "$A1" hostA "log=$T/a1.log,rejoin=off"
# the old A's writer: a new file, then (on $G/go) 4 KiB at offset 0 and an
# fsync; $G/result gets "ok" or "ERRNO-NAME OP"
head -c 4096 /dev/zero | tr '\0' o >"$G/late" # allocates a block, zeroes its last 1020 KiB
python3 "$(dirname "$0")/held_write.py" "$A1/old" "$G" - "$G/late" 2>"$G/w.err" &
wpid=$!
on_exit "kill $wpid 2>/dev/null"
poll 10 test -e "$G/ready" || fail "A's writer does not start: $(cat "$G/w.err")"
pida=$(daemon_pid "$A1")
# stop at A's next pwrite, then at that thread's first zeroing (inside
# fill_block, after the 4 KiB went out); hold it until $G/release exists
gdb_hold "$pida" "$G" 'break lunfs_pwrite' continue delete \
	'eval "break dev_zero thread %d", $_thread' continue 'bt 8'
gpid=$GDB_PID
poll 10 grep -q '^Breakpoint 1 at' "$G/gdb.log" || fail "gdb does not attach: $(tail -3 "$G/gdb.log")"
touch "$G/go"
poll 10 grep -q 'hit Breakpoint 2' "$G/gdb.log" || fail "A's daemon does not stop at dev_zero: $(tail -5 "$G/gdb.log")"
grep -q 'fill_block' "$G/gdb.log" || fail "A stopped elsewhere than fill_block: $(grep -A8 'hit Breakpoint 2' "$G/gdb.log")"
t0=$(now_ms)
ok "A's daemon (pid $pida) held by gdb in lunfs_pwrite -> fill_block -> dev_zero, its 4 KiB written, the zeroing of the rest of the block not yet done"

# A's identity remounts: it waits for its old slot to be silent for a lease
mount_lunfs "$IMG" "$A2" hostA "log=$T/a2.log"
ok "A's identity remounted on a second mount point $(($(now_ms) - t0)) ms after the freeze"
head -c $SIZE /dev/urandom >"$T/pattern"
python3 - "$A2/new" "$T/pattern" <<'EOF' || fail "the new mount's write"
import os, sys
data = open(sys.argv[2], "rb").read()
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
assert os.pwrite(fd, data, 0) == len(data)
os.fsync(fd)
os.close(fd)
dfd = os.open(os.path.dirname(sys.argv[1]), os.O_RDONLY)
os.fsync(dfd)
os.close(dfd)
EOF
cmp -s "$A2/new" "$T/pattern" || fail "the new mount reads back something else right after its fsync"
ok "the new mount wrote 1 MiB of a pattern to 'new' and fsynced"

# release the old A: its zeroing goes on now, long after its lease
touch "$G/release"
wait "$gpid" || true
poll 15 test -s "$G/result" || fail "the old A's pwrite does not return after the release: $(tail -5 "$G/gdb.log")"
res=$(cat "$G/result")
ok "the old A released; its application got: $res"
sleep 3

# readback: drop the kernel's cached pages of the file first
cat >"$T/check.py" <<'EOF'
import os, sys
want = open(sys.argv[2], "rb").read()
fd = os.open(sys.argv[1], os.O_RDONLY)
os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
got = os.pread(fd, len(want) + 1, 0)
if got == want:
    print("intact")
    sys.exit(0)
bad = [i for i in range(0, max(len(got), len(want)), 4096) if got[i:i + 4096] != want[i:i + 4096]]
zero = sum(1 for i in bad if got[i:i + 4096] == bytes(len(got[i:i + 4096])))
print("%d bytes; %d KiB differ (%d KiB of them zeros), first at %d" % (len(got), len(bad) * 4, zero * 4, bad[0]))
sys.exit(1)
EOF
bad=""
r=$(python3 "$T/check.py" "$A2/new" "$T/pattern") || bad="$bad
  read on the new mount: $r"
mount_lunfs "$IMG" "$C" hostC "log=$T/c.log"
r=$(python3 "$T/check.py" "$C/new" "$T/pattern") || bad="$bad
  read on a fresh mount (hostC): $r"
[ -z "$bad" ] || fail "the new mount's fsynced 1 MiB was damaged after the old A resumed (its application got '$res'):$bad
  old A's log: $(grep -v 'returning' "$T/a1.log" | tail -3)"
ok "the new mount's 1 MiB is intact on the new mount and on a fresh mount"
case "$res" in
"EIO "*) ;;
*) fail "the old A's pwrite, whose zeroing was refused, returned '$res' to the application, want EIO" ;;
esac
ok "the old A's pwrite failed with $res"

umount_lunfs "$C" || fail "umount C"
umount_lunfs "$A1" || fail "the old A's daemon does not exit after umount"
umount_lunfs "$A2" || fail "umount A2"
slots_free "$IMG"
"$BIN/fsck.lunfs" -n "$IMG" >"$T/fsck.out" 2>&1 || fail "fsck.lunfs -n: $(cat "$T/fsck.out")"
ok "every host unmounted; fsck.lunfs -n clean"
echo "PASS: 63-frozen-zeroing"
