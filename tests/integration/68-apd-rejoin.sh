#!/bin/bash
# 68-apd-rejoin: all paths down, longer than the lease, then the storage
# comes back; the host rejoins by itself.  One host, a, mounts a LUN of a
# stock tgtd; a writer on a rewrites a file and fsyncs in a loop through one
# open descriptor.  tgtd is stopped (SIGSTOP: every command hangs, as when
# every path to the array is down) for LEASE + 5 s.  Then:
#   - during the outage a fences itself (its log says so) and the writer's
#     calls fail or hang, never succeed;
#   - tgtd continues: with no survivor, a recovers its own old slot (the same
#     identity taking over: its old persistent-reservation key is preempted
#     before its journal is replayed) and logs "rejoined";
#   - the writer's old descriptor keeps failing with EIO; a new file written
#     through a's mount after the rejoin reads back right; exactly one PR key
#     (the new mount's) is registered;
#   - a unmounts cleanly: no key and no reservation left, fsck.lunfs -n over
#     the URL is clean.
# tgtd runs on 127.0.0.1:32680 (control port 32680), started and stopped here.
. "$(dirname "$0")/lib.sh"
PR=$TBIN/pr_tool
PORT=${LUNFS_IT68_PORT:-32680}
IQN=iqn.2026-12.org.lunfs:it68
URL=iscsi://127.0.0.1:$PORT/$IQN/1
LEASE=3000
need tgtd tgtadm python3
. "$(dirname "$0")/lib-tgt.sh"
truncate -s 1G "$T/lun.img"
start_tgtd "$PORT" "$IQN" "$T/lun.img"
# whatever happens, tgtd runs again before the cleanup stops it
on_exit "kill -CONT $TGTD_PID 2>/dev/null"
"$BIN/mkfs.lunfs" -q --lease-ms $LEASE --heartbeat-ms 500 -N 8 -J 1M "$URL" || fail "mkfs over $URL"
A=$T/a
mount_lunfs "$URL" "$A" hostA "log=$T/a.log"
[ "$(keys | wc -l)" = 1 ] || fail "want one PR key after the mount: $(keys)"
old_key=$(keys)

cat >"$T/writer.py" <<'EOF'
# writer.py PATH LOG: pwrite 64 KiB + fsync in a loop through one descriptor;
# one line per call that returned: "ok" or "err ERRNO-NAME"
import errno, os, sys, time
log = open(sys.argv[2], "a", buffering=1)
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o644)
data = b"w" * 65536
while True:
    try:
        os.pwrite(fd, data, 0)
        os.fsync(fd)
        log.write("ok\n")
    except OSError as e:
        log.write("err %s\n" % errno.errorcode.get(e.errno, e.errno))
    time.sleep(0.05)
EOF
W=$T/writer.log
: >"$W"
python3 "$T/writer.py" "$A/vm.img" "$W" &
wpid=$!
on_exit "kill -9 $wpid 2>/dev/null"
poll 10 eval '[ "$(grep -c "^ok" "$W")" -ge 5 ]' || fail "the writer does not write: $(tail -3 "$W")"

# ---- all paths down ----
n0=$(wc -l <"$W")
kill -STOP "$TGTD_PID"
t0=$(now_ms)
poll $((LEASE / 1000 + 10)) grep -q 'fenced' "$T/a.log" || fail "a did not fence itself during the outage: $(tail -5 "$T/a.log")"
t_fence=$(( $(now_ms) - t0 ))
sleep $((LEASE / 1000 + 5 - t_fence / 1000))
tail -n +$((n0 + 1)) "$W" | tail -n +2 | grep -q '^ok' &&
	fail "the writer succeeded during the outage: $(tail -n +$((n0 + 1)) "$W" | uniq -c)"
grep -q 'rejoined' "$T/a.log" && fail "a rejoined while the storage was still down"
n1=$(wc -l <"$W")
kill -CONT "$TGTD_PID"
t1=$(now_ms)

# ---- the storage is back ----
poll 40 grep -q 'rejoined after the fence' "$T/a.log" || fail "a did not rejoin: $(tail -8 "$T/a.log")"
t_rejoin=$(( $(now_ms) - t1 ))
sleep 1
after=$(tail -n +$((n1 + 1)) "$W" | tail -n +2) # the one call in flight at the resume may finish either way
echo "$after" | grep -q '^ok' && fail "the writer's old descriptor wrote after the outage: $(echo "$after" | uniq -c)"
bad=$(echo "$after" | grep -v '^err EIO$' | grep . | sort -u || true)
[ -z "$bad" ] || fail "the old descriptor failed with other errors than EIO: $bad"
head -c 1048576 /dev/urandom >"$T/new.ref"
cp "$T/new.ref" "$A/new.img" && sync "$A/new.img" || fail "a, rejoined, cannot write a new file"
cmp -s "$A/new.img" "$T/new.ref" || fail "a, rejoined, reads its new file wrong"
[ "$(keys | wc -l)" = 1 ] || fail "want exactly one PR key after the rejoin: $(keys)"
has_key "$old_key" && fail "the fenced mount's key $old_key is still registered"
kill -9 "$wpid"
wait "$wpid" 2>/dev/null || true
umount_lunfs "$A" || fail "umount a"
grep -q 'unmounted$' "$T/a.log" || fail "a's unmount was not clean: $(tail -3 "$T/a.log")"
[ -z "$(keys)" ] || fail "keys left after the unmount: $(keys)"
"$BIN/fsck.lunfs" -n "$URL" >"$T/fsck.out" 2>&1 || fail "fsck -n: $(cat "$T/fsck.out")"
ok "a fenced itself $t_fence ms into the outage, rejoined $t_rejoin ms after the storage came back (old key preempted, one new key); the old descriptor fails with EIO, a new file reads back right; clean unmount, no key left, fsck -n clean"
