#!/bin/bash
# 64-frozen-checkpoint: a late journal-header write never hides a new
# mount's transactions (file backend).
#   1. host A (mount generation G1) makes a change; its linger thread
#      checkpoints it, and gdb holds A's daemon in jnl_checkpoint right at
#      the journal-header write (the homes are written and flushed, the
#      header naming G1 and the new tail is not);
#   2. past the lease, A's identity remounts (G2; it waits for a lease of
#      silence of its old slot, replays its journal and takes it over), with
#      a long linger so that it never checkpoints: it creates a directory
#      and a file in it, writes and fsyncs them (committed in the journal,
#      not home yet), and is killed (kill -9);
#   3. the old A is released: its header write must be refused (its lease
#      ran out long ago);
#   4. A's identity mounts a third time: it replays the killed mount's
#      transactions, and the fsynced directory and file must be there with
#      their data; every host unmounts; fsck.lunfs -n is clean.
# Before the device-layer lease guard, the late header write landed between
# the new mount's commits and the replay; it named G1, so the replay took
# the killed mount's transactions for another mount's ("replayed 0") and
# the fsynced directory was gone.
. "$(dirname "$0")/lib.sh"
need gdb python3
[ -x "$BIN/mount.lunfs" ] || fail "$BIN/mount.lunfs is not built (run make)"
IMG="$T/v.img"
mkfs_multi "$IMG" 1G
A1="$T/a1" A2="$T/a2" A3="$T/a3" G="$T/g"
mkdir -p "$G"
logs() { grep -hv 'lunfs: returning' "$@" | tail -n 5; }

# rejoin=off: the old A, released long after its lease, must stay fenced (a
# rejoin would replay the killed mount's journal before step 4 does)
mount_lunfs "$IMG" "$A1" hostA "log=$T/a1.log,rejoin=off"
sleep 1 # whatever the mount itself committed is checkpointed by now
pida=$(daemon_pid "$A1")
# stop at the next journal-header write of a checkpoint; hold the process
# there until $G/release exists
gdb_hold "$pida" "$G" 'break write_header' continue 'bt 8'
gpid=$GDB_PID
poll 10 grep -q '^Breakpoint 1 at' "$G/gdb.log" || fail "gdb does not attach: $(tail -3 "$G/gdb.log")"
# a change for A's linger thread to checkpoint (in the background: A's
# daemon may stop before it answers)
(mkdir "$A1/before" && echo before >"$A1/before/f") 2>"$G/before.err" &
on_exit "kill $! 2>/dev/null"
poll 10 grep -q 'hit Breakpoint 1' "$G/gdb.log" || fail "A's daemon does not stop at a header write: $(tail -5 "$G/gdb.log")"
grep -q 'jnl_checkpoint' "$G/gdb.log" || fail "A stopped at a header write outside jnl_checkpoint: $(grep -A8 'hit Breakpoint 1' "$G/gdb.log")"
t0=$(now_ms)
ok "A's daemon (pid $pida) held by gdb in jnl_checkpoint -> write_header, its homes flushed, its header not written"

# A's identity remounts (waits for its old slot to be silent for a lease),
# commits a directory and a file, and dies before any checkpoint
mount_lunfs "$IMG" "$A2" hostA "log=$T/a2.log,linger_ms=600000"
ok "A's identity remounted on a second mount point $(($(now_ms) - t0)) ms after the freeze: $(grep -h 'replayed' "$T/a2.log" | head -1 | sed 's/^lunfs: //')"
head -c 65536 /dev/urandom >"$T/pattern"
# (the file stays open until the kill: its close would release its lock,
# and a release checkpoints first)
python3 - "$A2" "$T/pattern" "$G/written" <<'EOF' 2>"$G/new.err" &
import os, sys, time
top, pat, done = sys.argv[1], open(sys.argv[2], "rb").read(), sys.argv[3]
os.mkdir(os.path.join(top, "newdir"))
for d in (os.path.join(top, "newdir"), top):
    dfd = os.open(d, os.O_RDONLY)
    os.fsync(dfd)
    os.close(dfd)
fd = os.open(os.path.join(top, "newdir", "f"), os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
assert os.pwrite(fd, pat, 0) == len(pat)
os.fsync(fd)
open(done, "w").close()
time.sleep(60)
EOF
npid=$!
on_exit "kill $npid 2>/dev/null"
poll 10 test -e "$G/written" || fail "the new mount's writes: $(cat "$G/new.err")"
kill_daemon "$A2"
kill "$npid" 2>/dev/null || true
wait "$npid" 2>/dev/null || true
ok "the new mount created newdir/f (64 KiB), fsynced it and its directories, and was killed (kill -9)"

# release the old A: its header write goes on now, long after its lease
touch "$G/release"
wait "$gpid" || true
poll 10 grep -q 'fenced' "$T/a1.log" || fail "the old A's log does not say it is fenced: $(logs "$T/a1.log")"
sleep 1
ok "the old A released: $(grep -h 'fenced' "$T/a1.log" | head -1 | sed 's/^lunfs: //')"
umount_lunfs "$A1" || fail "the old A's daemon does not exit after umount"

# the replay
mount_lunfs "$IMG" "$A3" hostA "log=$T/a3.log"
rep=$(grep -h 'replayed' "$T/a3.log" | head -1 | sed 's/^lunfs: //')
[ -n "$rep" ] || rep="nothing replayed"
[ -d "$A3/newdir" ] || fail "the fsynced directory newdir is gone after the replay ($rep); the root holds: $(ls "$A3" | tr '\n' ' ')
  old A's log: $(logs "$T/a1.log")"
cmp -s "$A3/newdir/f" "$T/pattern" || fail "newdir/f is not the fsynced 64 KiB after the replay ($rep): $(ls -l "$A3/newdir" 2>&1)"
case "$rep" in
"replayed 0 "* | "nothing replayed") fail "newdir/f is there, but the replay found nothing to do: the killed mount checkpointed its transactions, the test missed its window" ;;
esac
ok "A's identity mounted again and replayed ($rep): newdir/f is there with its 64 KiB"
umount_lunfs "$A3" || fail "umount A3"
slots_free "$IMG"
"$BIN/fsck.lunfs" -n "$IMG" >"$T/fsck.out" 2>&1 || fail "fsck.lunfs -n: $(cat "$T/fsck.out")"
ok "every host unmounted; fsck.lunfs -n clean"
echo "PASS: 64-frozen-checkpoint"
