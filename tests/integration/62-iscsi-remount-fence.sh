#!/bin/bash
# 62-iscsi-remount-fence: the same identity remounting preempts its old PR
# key (iSCSI, a stock tgtd with persistent reservations).
#   1. host a mounts the LUN (its PR key ka registered) and writes 64 KiB of
#      a file; gdb then holds a's daemon right before a data WRITE of 64 KiB
#      in place (an overwrite: no metadata) that passed every fencing check
#      (in libiscsi's iscsi_write16_iov_task: past the lease guard too, so
#      that only the target's persistent reservation can stop it);
#   2. no other host is mounted: a's own identity remounts on another mount
#      point (it waits for a lease of silence of its old slot and takes it
#      over); the old key ka must be gone (preempted) and the new mount's
#      key registered;
#   3. the new mount writes 64 KiB of a tagged pattern over the same range of
#      the file and fsyncs;
#   4. the old a is released: its late WRITE must bounce (the application
#      gets EIO) and not land: the new mount reads its pattern back, and a
#      raw read of the whole LUN finds the new pattern exact and not one of
#      the old a's late blocks;
#   5. every host unmounts (the old a's daemon, fenced, exits too): no PR
#      key and no reservation is left on the target; fsck.lunfs -n over the
#      URL is clean.
# Before the fix, the remount registered a second key and left the old one
# registered: the old a's late 64 KiB WRITE landed over the new mount's
# fsynced data, and ka stayed registered after every host unmounted.
# tgtd runs on 127.0.0.1:32620 (control port 32620), started and stopped here.
. "$(dirname "$0")/lib.sh"
PR=$TBIN/pr_tool
PORT=${LUNFS_IT62_PORT:-32620}
IQN=iqn.2026-11.org.lunfs:it62
URL=iscsi://127.0.0.1:$PORT/$IQN/1
NBLK=16 # 64 KiB
for b in "$PR" "$BIN/mkfs.lunfs" "$BIN/fsck.lunfs" "$BIN/mount.lunfs"; do
	[ -x "$b" ] || fail "$b is not built (run make)"
done
need gdb python3
. "$(dirname "$0")/lib-tgt.sh"
truncate -s 256M "$T/lun.img"
start_tgtd "$PORT" "$IQN" "$T/lun.img"
ok "tgtd (pid $TGTD_PID) on 127.0.0.1:$PORT: $URL, 256 MiB file"

logs() { grep -hv 'lunfs: returning' "$@" | tail -n 5; }
# what went wrong, all of it: the checks after a failed one still run
BAD=""
bad() {
	echo "not ok: $*" >&2
	BAD="$BAD
  - $*"
}
cat >"$T/pattern.py" <<'EOF'
# tagged 4 KiB blocks: "LUNFS62 WHO blk=K" padded
BS = 4096
def block(who, k):
    head = ("LUNFS62 %s blk=%d\n" % (who, k)).encode()
    return head + b"." * (BS - len(head))
def data(who, n):
    return b"".join(block(who, k) for k in range(n))
EOF

"$BIN/mkfs.lunfs" -q -f -N 16 -J 1M --lease-ms 3000 --heartbeat-ms 500 -L it62 "$URL" || fail "mkfs.lunfs on $URL"
[ -z "$(keys)" ] || fail "PR keys registered on a fresh volume: $(keys | tr '\n' ' ')"
A1=$T/a1 A2=$T/a2 G=$T/g
mkdir -p "$G"
mount_lunfs "$URL" "$A1" a "log=$T/a1.log,caw=auto"
ka=$(new_key)
ok "a mounted, key $ka; reservation: $("$PR" resv "$URL")"

# the old a's writer: 64 KiB, fsync; then (on $G/go) the late 64 KiB in place
python3 -c "import sys; sys.path.insert(0, '$T'); from pattern import data
open('$G/first', 'wb').write(data('first', $NBLK)); open('$G/late', 'wb').write(data('late', $NBLK))"
python3 "$(dirname "$0")/held_write.py" "$A1/late.img" "$G" "$G/first" "$G/late" 2>"$G/w.err" &
wpid=$!
on_exit "kill $wpid 2>/dev/null"
poll 20 test -e "$G/ready" || fail "a's writer: $(cat "$G/w.err")"
pida=$(daemon_pid "$A1")
# stop at a's next pwrite, then at that thread's first data WRITE, then at
# the libiscsi call that queues its WRITE(16) (past every check of this
# host, the lease guard too: only the target can refuse it now); hold the
# process there until $G/release exists
gdb_hold "$pida" "$G" 'break lunfs_pwrite' continue delete \
	'eval "break iscsi_rw thread %d if op == 2", $_thread' continue delete \
	'eval "break iscsi_write16_iov_task thread %d", $_thread' continue 'bt 16'
gpid=$GDB_PID
poll 10 grep -q '^Breakpoint 1 at' "$G/gdb.log" || fail "gdb does not attach: $(tail -3 "$G/gdb.log")"
touch "$G/go"
poll 10 grep -q 'hit Breakpoint 3' "$G/gdb.log" || fail "a's daemon does not stop before its WRITE: $(tail -5 "$G/gdb.log")"
sed -n '/hit Breakpoint 3/,$p' "$G/gdb.log" | grep -Eq 'write_range|pwrite_mapped' ||
	fail "a stopped elsewhere than a data write: $(sed -n '/hit Breakpoint 3/,$p' "$G/gdb.log")"
t0=$(now_ms)
ok "a's daemon (pid $pida) held by gdb in iscsi_write16_iov_task (write_range -> dev_write -> iscsi_rw), its WRITE past every fencing check of its own"

# a's own identity remounts; nobody else is there to recover the old mount
mount_lunfs "$URL" "$A2" a "log=$T/a2.log,caw=auto"
ka2=$(new_key "$ka")
ok "a's identity remounted $(($(now_ms) - t0)) ms after the freeze, key $ka2; keys now: $(keys | tr '\n' ' ')"
if has_key "$ka"; then
	bad "the old mount's key $ka is still registered after its identity remounted (keys: $(keys | tr '\n' ' '))"
else
	ok "the old mount's key $ka is gone (preempted)"
fi
r=$(python3 - "$A2/late.img" "$NBLK" "$T" <<'EOF'
import errno, os, sys, time
path, n = sys.argv[1], int(sys.argv[2])
sys.path.insert(0, sys.argv[3])
from pattern import data
t0 = time.monotonic()
while True:
    try:
        fd = os.open(path, os.O_RDWR)
        break
    except OSError as e:
        if time.monotonic() - t0 > 20:
            print("no O_RDWR open: %s" % errno.errorcode.get(e.errno)); sys.exit(1)
        time.sleep(0.1)
assert os.pwrite(fd, data("new", n), 0) == n * 4096
os.fsync(fd)
os.close(fd)
print("ok")
EOF
) || fail "the new mount's write: $r"
ok "the new mount wrote $NBLK tagged blocks over late.img and fsynced"

# release the old a: its WRITE goes out now, long after its lease
touch "$G/release"
wait "$gpid" || true
poll 15 test -s "$G/result" || fail "the old a's pwrite does not return after the release: $(tail -5 "$G/gdb.log")"
res=$(cat "$G/result")
ok "the old a released; its application got: $res"
sleep 2
r=$(python3 - "$A2/late.img" "$NBLK" "$T" <<'EOF'
import os, sys
path, n = sys.argv[1], int(sys.argv[2])
sys.path.insert(0, sys.argv[3])
from pattern import data
fd = os.open(path, os.O_RDONLY)
os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
got = os.pread(fd, n * 4096 + 1, 0)
if got == data("new", n):
    print("intact")
    sys.exit(0)
print("%d bytes, first block %r" % (len(got), got[:24]))
sys.exit(1)
EOF
) && ok "the new mount reads its pattern back" || bad "the new mount's fsynced data was overwritten after the old a resumed: $r"
r=$("$PR" read "$URL" 0 $((256 << 20)) | python3 -c '
import sys
sys.path.insert(0, sys.argv[1])
from pattern import block
n = int(sys.argv[2])
want = {block("new", k) for k in range(n)}
late = new = badnew = 0
f = sys.stdin.buffer
while True:
    chunk = f.read(4 << 20)
    if not chunk:
        break
    for o in range(0, len(chunk), 4096):
        b = chunk[o:o + 4096]
        if b.startswith(b"LUNFS62 late "):
            late += 1
        elif b.startswith(b"LUNFS62 new "):
            new += 1
            badnew += b not in want
print("late=%d new=%d damaged=%d" % (late, new, badnew))' "$T" "$NBLK") || fail "raw read of the LUN"
[ "$r" = "late=0 new=$NBLK damaged=0" ] && ok "raw LUN: $r" ||
	bad "raw LUN: $r, want late=0 new=$NBLK damaged=0 (the old a's late WRITE landed)"
case "$res" in
"EIO "*) ok "the old a's pwrite failed with $res" ;;
*) bad "the old a's pwrite returned '$res' to the application, want EIO" ;;
esac

umount_lunfs "$A1" || fail "the old a's daemon does not exit after umount"
umount_lunfs "$A2" || fail "umount a2"
k=$(keys | tr '\n' ' ')
[ -z "$k" ] && ok "no PR key left after every host unmounted" || bad "PR keys left after every host unmounted: $k"
r=$("$PR" resv "$URL")
[ "$r" = none ] && ok "no reservation left" || bad "reservation '$r' left after every host unmounted"
"$BIN/fsck.lunfs" -n "$URL" >"$T/fsck.out" 2>&1 && ok "fsck.lunfs -n clean" || bad "fsck.lunfs -n: $(cat "$T/fsck.out")"
[ -z "$BAD" ] || fail "$(echo "$BAD" | grep -c .) check(s) failed:$BAD
  old a's log: $(logs "$T/a1.log")"
stop_tgtd
echo "PASS: 62-iscsi-remount-fence"
