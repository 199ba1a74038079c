#!/bin/bash
# 57-frozen-caw: a host frozen INSIDE the file backend's emulated
# compare-and-write (after its exclusion is taken, before its write) must
# not take the cluster down with it (dev/arbiter.c, docs/CAW-ARBITER.md).
#   1. hosts A, B, C mount one image (lease 3000 ms, heartbeat 500 ms); A
#      and B create and remove files in a directory, shared, in loops, so
#      that its lock goes back and forth (lock CAWs);
#   2. gdb stops A's daemon inside the critical section of a CAW of that
#      lock record: a breakpoint on dev_caw at the record's offset picks the
#      thread, then a breakpoint on the write guard line of file_caw in that
#      thread (dev/file.c: after the exclusion, the read and the compare,
#      before the write); B's loop stops;
#   3. A stays stopped for three leases.  Meanwhile B and C keep working
#      (create, write and read files of their own every 0.5 s), never fence
#      themselves, one of them recovers A ("recovered host hostA"), and B
#      creates files in shared, whose lock A was in the middle of CAWing,
#      within a lease + the CAW break time (2000 ms) + slack;
#   4. gdb lets A go: A's pending CAW does not write, A's loop fails with
#      EIO and A's log says fenced;
#   5. B's files are intact (on B and on C), everybody unmounts, fsck.lunfs
#      -n is clean.
# On the old emulation (a per-open mutex + F_OFD_SETLKW held around the
# read-compare-write) B's CAW of that lock record blocks for as long as A is
# stopped, and B's mutex queues its own heartbeat renewals behind it: B
# fences itself after a lease, and its create in shared never returns.
. "$(dirname "$0")/lib.sh"
need gdb python3
LEASE=3000
BREAK=2000 # DEV_CAW_BREAK_MS_DEFAULT (the lock layer may set it lower)
IMG="$T/v.img"
mkfs_multi "$IMG" 1G
A="$T/a" B="$T/b" C="$T/c"
# rejoin=off: what is checked is what the fenced mount does after it resumes
# (its loop's calls go by path: a rejoined mount would serve them anew)
mount_lunfs "$IMG" "$A" hostA "log=$T/a.log,rejoin=off"
mount_lunfs "$IMG" "$B" hostB "log=$T/b.log"
mount_lunfs "$IMG" "$C" hostC "log=$T/c.log"
mkdir "$B/shared" "$B/own_b" "$C/own_c"
echo before >"$B/shared/b0"
poll 5 test -e "$A/shared/b0" || fail "A does not see B's file in shared"

# A's busy loop: create, write, remove files in shared; "ok N" after each
# round, "err ERRNO OP N" when a call fails (then it goes on); every line
# also goes to a.status.all.
cat >"$T/abusy.py" <<'EOF'
import errno, os, sys, time
d, status = sys.argv[1], sys.argv[2]
hist = open(status + ".all", "a", buffering=1)
def say(s):
    hist.write(s + "\n")
    with open(status + ".tmp", "w") as f:
        f.write(s + "\n")
    os.rename(status + ".tmp", status)
n = 0
while True:
    n += 1
    p = os.path.join(d, "a.%d" % (n % 8))
    op = "create"
    try:
        fd = os.open(p, os.O_RDWR | os.O_CREAT, 0o644)
        op = "write"
        os.write(fd, b"A" * 4096)
        os.close(fd)
        op = "unlink"
        os.unlink(p)
        say("ok %d" % n)
    except OSError as e:
        say("err %s %s %d" % (errno.errorcode.get(e.errno, e.errno), op, n))
        time.sleep(0.05)
EOF
python3 "$T/abusy.py" "$A/shared" "$T/a.status" 2>"$T/a.err" &
apy=$!
on_exit "kill $apy 2>/dev/null"
# B does the same until A is stopped, so that the lock of shared goes back
# and forth and A keeps CAWing its record
(cd "$B/shared" && while :; do : >b.tmp && rm -f b.tmp; sleep 0.5; done) 2>/dev/null &
bbusy=$!
on_exit "kill -9 $bbusy 2>/dev/null"
poll 30 grep -Eq '^ok ([5-9]|[1-9][0-9]+)$' "$T/a.status" ||
	fail "A's loop does not get going: $(cat "$T/a.status" "$T/a.err" 2>/dev/null)"
ok "A and B create and remove files in shared ($(cat "$T/a.status"))"

# ---- stop A inside a lock CAW's critical section --------------------------------
# the write guard call of file_caw: inside the critical section in the old
# emulation and in the new one
LINE=$(awk '/^static int file_caw\(/,/^}/ { if (/dev_guard\(d\)/) { print NR; exit } }' "$ROOT/dev/file.c")
[ -n "$LINE" ] || fail "no dev_guard(d) call in file_caw of dev/file.c"
# the lock record of shared: ino_off (u64 at byte 200 of the superblock) + ino * 8 KiB
INO=$(stat -c %i "$A/shared")
LOCK_OFF=$(python3 -c 'import struct, sys
f = open(sys.argv[1], "rb"); f.seek(200)
print(struct.unpack("<Q", f.read(8))[0] + int(sys.argv[2]) * 8192)' "$IMG" "$INO")
apid=$(daemon_pid "$A")
gdb_hold "$apid" "$T" "break dev_caw if off == $LOCK_OFF" continue delete \
	"eval \"break dev/file.c:$LINE thread %d\", \$_thread" continue 'bt 12'
gpid=$GDB_PID
poll 20 grep -q 'hit Breakpoint 2' "$T/gdb.log" || fail "A's daemon does not stop in file_caw: $(tail -5 "$T/gdb.log")"
t_stop=$(now_ms)
kill -9 $bbusy 2>/dev/null || true
wait $bbusy 2>/dev/null || true
grep -q 'file_caw' "$T/gdb.log" || fail "A stopped elsewhere: $(grep -A12 'hit Breakpoint 2' "$T/gdb.log")"
grep -Eq "off=$LOCK_OFF\b" "$T/gdb.log" || fail "A stopped in another CAW than shared's lock: $(grep -A12 'hit Breakpoint 2' "$T/gdb.log")"
ok "A's daemon (pid $apid) stopped by gdb in file_caw (dev/file.c:$LINE), in the CAW of shared's lock record (inode $INO, offset $LOCK_OFF): $(grep -Eo ' in (lk|vl|drop|release)[a-z_]* ' "$T/gdb.log" | head -3 | tr -s ' \n' ' ')"

# ---- three leases: B and C keep working, B gets shared ----------------------------
work() { # work MOUNT DIR N: a new file in DIR, written and read back
	local f="$1/$2/f.$3"
	timeout -s KILL 10 sh -c "echo '$3' >'$f' && [ \"\$(cat '$f')\" = '$3' ]"
}
t_shared=
bc=0
end=$((t_stop + 3 * LEASE))
while [ "$(now_ms)" -lt $end ]; do
	bc=$((bc + 1))
	work "$B" own_b $bc || fail "B's own work failed $(( $(now_ms) - t_stop )) ms after A froze; B log: $(tail -3 "$T/b.log")"
	work "$C" own_c $bc || fail "C's own work failed $(( $(now_ms) - t_stop )) ms after A froze; C log: $(tail -3 "$T/c.log")"
	if [ -z "$t_shared" ] && timeout -s KILL 3 sh -c "echo b1 >'$B/shared/b1'" 2>/dev/null; then
		t_shared=$(( $(now_ms) - t_stop ))
		ok "B created a file in shared $t_shared ms after A froze in the CAW of its lock"
	fi
	for h in b c; do
		grep -q 'fenced' "$T/$h.log" && fail "host $h fenced itself $(( $(now_ms) - t_stop )) ms after A froze: $(grep -m1 fenced "$T/$h.log")"
	done
	sleep 0.5
done
[ -n "$t_shared" ] || fail "B could not create a file in shared within $((3 * LEASE)) ms of A's freeze; B log: $(tail -3 "$T/b.log")"
[ "$t_shared" -le $((LEASE + BREAK + 3000)) ] ||
	fail "B took shared only $t_shared ms after A froze, want <= lease + break + 3 s = $((LEASE + BREAK + 3000)) ms"
grep -q 'recovered host hostA ' "$T/b.log" "$T/c.log" || fail "nobody recovered A: $(tail -2 "$T/b.log" "$T/c.log")"
ok "for 3 leases: B and C worked ($bc rounds each), neither fenced; $(grep -h 'recovered host hostA ' "$T/b.log" "$T/c.log" | head -1 | sed 's/.*lunfs: //')"
for i in 2 3 4; do
	echo "b$i" >"$B/shared/b$i" || fail "B's create b$i in shared"
done

# ---- A resumes: its CAW does not write, it is fenced ------------------------------
n_before=$(cat "$T/a.status")
l_before=$(wc -l <"$T/a.status.all") # A's loop logs nothing while A is stopped
touch "$T/release"
wait "$gpid" || true
poll 15 grep -q '^err' "$T/a.status" || fail "A's loop got no error after the release (status $(cat "$T/a.status"))"
poll 5 grep -q 'fenced' "$T/a.log" || fail "A's log does not say fenced: $(tail -3 "$T/a.log")"
sleep 1
st=$(cat "$T/a.status")
case "$st" in "err EIO "*) ;; *) fail "A's loop after the release: '$st', want EIO" ;; esac
# The call in flight at the stop: its CAW is refused by the write guard
# (-EFENCED: EIO) or, where no guard is installed, by the arbiter's last check
# (-ETIMEDOUT: it was broken).  Every later call: EIO (fenced).
tail -n +$((l_before + 1)) "$T/a.status.all" >"$T/after"
first=$(head -1 "$T/after")
grep -q '^ok' "$T/after" && fail "A's loop succeeded after the release: $(grep -m3 '^ok' "$T/after")"
case "$first" in "err EIO "* | "err ETIMEDOUT "*) ;; *) fail "A's call in flight at the stop: '$first', want EIO or ETIMEDOUT" ;; esac
bad=$(tail -n +2 "$T/after" | grep -v '^err EIO ' | sort -u | head -3)
[ -z "$bad" ] || fail "A's loop got other errors than EIO after the release: $bad"
ok "A resumed (was at '$n_before'): the call in flight failed ('$first'), every later one with EIO ($(grep -c . "$T/after") tries); A: $(grep -m1 fenced "$T/a.log" | sed 's/.*lunfs: //')"

# ---- B's data intact ----------------------------------------------------------------
for h in "$B" "$C"; do
	[ "$(cat "$h/shared/b0")" = before ] || fail "$h/shared/b0 damaged"
	for i in 1 2 3 4; do
		[ "$(cat "$h/shared/b$i")" = "b$i" ] || fail "$h/shared/b$i: '$(cat "$h/shared/b$i" 2>&1)'"
	done
	[ "$(cat "$h/own_b/f.$bc")" = "$bc" ] || fail "$h/own_b/f.$bc damaged"
done
ok "B's files in shared intact, on B and on C"
kill "$apy" 2>/dev/null || true
wait "$apy" 2>/dev/null || true
umount_lunfs "$A" || fail "A's daemon does not exit after umount"
umount_lunfs "$B" || fail "umount B"
umount_lunfs "$C" || fail "umount C"
"$BIN/fsck.lunfs" -n "$IMG" >"$T/fsck.out" 2>&1 || fail "fsck.lunfs -n: $(cat "$T/fsck.out")"
ok "all unmounted; fsck.lunfs -n clean"
echo "PASS: 57-frozen-caw"
