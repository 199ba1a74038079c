#!/bin/bash
# The recovering host dies during recovery (docs/LOCKING.md 10.10).  Host A
# writes a file it holds open (fsynced chunks, recorded outside the volume)
# and commits metadata changes (files created, written, fsynced, renamed,
# some deleted); host B holds a file open for writing and has fsynced data
# and names of its own.  B is mounted with recovery_pause_ms=8000: once it
# has claimed A's slot as REPLAYING it sleeps.  A gets kill -9; when B's log
# says it is recovering A, B gets kill -9 too, mid-recovery.  A's slot must
# then show REPLAYING by B.  A fresh host C must recover both: take A's
# REPLAYING slot over from the dead B and replay A's journal, and recover B.
# Afterwards no slot of A or B is in use, everything A and B fsynced is
# there, both files open O_RDWR on C, and fsck -n is clean.
. "$(dirname "$0")/lib.sh"
IMG="$T/v.img"
mkfs_multi "$IMG" 1G
A="$T/a" B="$T/b" C="$T/c"
mount_lunfs "$IMG" "$A" hostA "log=$T/a.log"
mount_lunfs "$IMG" "$B" hostB "log=$T/b.log,recovery_pause_ms=8000"

# hold.py FILE REC SEED [MAX]: open O_RDWR, append seeded 64 KiB chunks,
# each fsynced and then recorded in REC ("D index seed"); after MAX chunks
# (default: no end) just hold the file open
cat >"$T/hold.py" <<'EOF'
import os, random, sys, time
path, rec, rnd = sys.argv[1], sys.argv[2], int(sys.argv[3])
most = int(sys.argv[4]) if len(sys.argv) > 4 else 1 << 40
CH = 65536
log = os.open(rec, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
i = 0
while i < most:
    seed = rnd * 100000 + i
    os.pwrite(fd, random.Random(seed).randbytes(CH), i * CH)
    os.fsync(fd)
    os.write(log, b"D %d %d\n" % (i, seed))
    i += 1
while True:
    time.sleep(1)
EOF
# meta.py DIR REC SEED: names created, written, fsynced, renamed, some
# deleted; each fsynced change recorded ("M name seed len", "U name")
cat >"$T/meta.py" <<'EOF'
import os, random, sys
d, rec, rnd = sys.argv[1], sys.argv[2], int(sys.argv[3])
log = os.open(rec, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
os.mkdir(d)
def dsync():
    dfd = os.open(d, os.O_RDONLY | os.O_DIRECTORY)
    os.fsync(dfd)
    os.close(dfd)
dsync()
for k in range(30):
    name, seed = "f%d" % k, rnd * 100000 + k
    data = random.Random(seed).randbytes(random.Random(seed).randrange(1, 30000))
    fd = os.open(os.path.join(d, name + ".tmp"), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    os.write(fd, data)
    os.fsync(fd)
    os.close(fd)
    os.rename(os.path.join(d, name + ".tmp"), os.path.join(d, name))
    dsync()
    os.write(log, b"M %s %d %d\n" % (name.encode(), seed, len(data)))
    if k % 4 == 3:
        os.unlink(os.path.join(d, "f%d" % (k - 2)))
        dsync()
        os.write(log, b"U f%d\n" % (k - 2))
EOF
# check.py FILE REC [DIR MREC]: on the survivor, open FILE O_RDWR (polled,
# 20 s) and compare every recorded chunk; then every recorded name in DIR
cat >"$T/check.py" <<'EOF'
import os, random, sys, time
path, rec = sys.argv[1], sys.argv[2]
CH = 65536
chunks = [tuple(map(int, l.split()[1:])) for l in open(rec) if l.startswith("D ")]
t0 = time.time()
while True:
    try:
        fd = os.open(path, os.O_RDWR)
        break
    except OSError as e:
        if time.time() - t0 > 20:
            sys.exit("%s: O_RDWR open still fails after 20 s: %s" % (path, e))
        time.sleep(0.1)
bad = [i for i, seed in chunks if os.pread(fd, CH, i * CH) != random.Random(seed).randbytes(CH)]
os.close(fd)
if bad:
    sys.exit("%s: fsynced chunks lost or damaged: %s" % (path, bad))
msg = "%d chunks" % len(chunks)
if len(sys.argv) > 3:
    d, want, gone = sys.argv[3], {}, []
    for l in open(sys.argv[4]):
        f = l.split()
        if f[0] == "M":
            want[f[1]] = (int(f[2]), int(f[3]))
        else:
            want.pop(f[1])
            gone.append(f[1])
    for name, (seed, n) in want.items():
        p = os.path.join(d, name)
        if not os.path.exists(p) or open(p, "rb").read() != random.Random(seed).randbytes(n):
            sys.exit("%s: fsynced but missing or damaged" % p)
    for name in gone:
        if os.path.lexists(os.path.join(d, name)):
            sys.exit("%s: deleted (and the directory fsynced) but still there" % name)
    msg += ", %d names, %d deletions" % (len(want), len(gone))
print(msg)
EOF
chunks() { [ -e "$1" ] && [ "$(grep -c '^D' "$1" || true)" -ge "$2" ]; }

# B: a file held open for writing, and names of its own
python3 "$T/hold.py" "$B/bfile" "$T/b.rec" 2 40 2>"$T/bhold.err" &
bpid=$!
on_exit "kill -9 $bpid 2>/dev/null"
python3 "$T/meta.py" "$B/bdir" "$T/b.meta" 2 || fail "B's metadata changes"
poll 20 chunks "$T/b.rec" 40 || fail "B's writer: $(cat "$T/bhold.err")"
# A: a file written continuously, and metadata changes just before the crash
python3 "$T/hold.py" "$A/afile" "$T/a.rec" 1 2>"$T/ahold.err" &
apid=$!
on_exit "kill -9 $apid 2>/dev/null"
poll 20 chunks "$T/a.rec" 30 || fail "A's writer: $(cat "$T/ahold.err")"
python3 "$T/meta.py" "$A/adir" "$T/a.meta" 1 || fail "A's metadata changes"
kill -0 $apid 2>/dev/null || fail "A's writer died: $(cat "$T/ahold.err")"
ok "A: $(grep -c '^D' "$T/a.rec") chunks and $(wc -l <"$T/a.meta") name changes fsynced; B: $(grep -c '^D' "$T/b.rec") chunks and $(wc -l <"$T/b.meta") name changes"

t0=$(now_ms)
kill_daemon "$A"
kill -9 $apid 2>/dev/null || true
poll 20 grep -Eq 'host hostA \(slot [0-9]+, mount [0-9]+\) is dead: recovering it' "$T/b.log" ||
	fail "B does not start recovering A within 20 s: $(cat "$T/b.log")"
kill_daemon "$B"
kill -9 $bpid 2>/dev/null || true
wait 2>/dev/null || true
ok "A killed; B began to recover it after $(( $(now_ms) - t0 )) ms, and was killed while paused"
grep -q 'recovered host hostA' "$T/b.log" && fail "B finished recovering A despite its pause: $(cat "$T/b.log")"
"$BIN/lunfs" hosts "$IMG" --json >"$T/hosts.json" || fail "lunfs hosts"
python3 - "$T/hosts.json" <<'EOF' || fail "A's slot is not REPLAYING by B: $("$BIN/lunfs" hosts "$IMG")"
import json, sys
s = {x["host"]: x for x in json.load(open(sys.argv[1]))["slots"]}
a, b = s["hostA"], s["hostB"]
assert a["state"] == "replaying" and a["replayer"]["host"] == "hostB", a
assert a["replayer"]["slot"] == b["slot"] and a["replayer"]["mount_gen"] == b["mount_gen"], (a, b)
assert b["state"] != "free", b
EOF
ok "lunfs hosts: A's slot is REPLAYING by B, which is dead"

t0=$(now_ms)
mount_lunfs "$IMG" "$C" hostC "log=$T/c.log"
poll 20 eval 'grep -q "recovered host hostA " "$T/c.log" && grep -q "recovered host hostB " "$T/c.log"' ||
	fail "C did not recover both A and B within 20 s: $(cat "$T/c.log")"
grep -Eq 'host hostA \(slot [0-9]+, mount [0-9]+\) is dead: recovering it' "$T/c.log" || fail "C's log: $(cat "$T/c.log")"
grep -Eq 'host hostB \(slot [0-9]+, mount [0-9]+\) is dead: recovering it' "$T/c.log" || fail "C's log: $(cat "$T/c.log")"
grep -E 'recovery of host .* failed' "$T/c.log" && fail "a recovery failed on C"
ok "C recovered A (taking its REPLAYING slot over from B) and B within $(( $(now_ms) - t0 )) ms of mounting: $(grep -o 'recovered host.*transaction(s)' "$T/c.log" | tr '\n' ';')"
slots_free "$IMG" hostA hostB
ok "lunfs hosts: no slot of A or B is in use"
m=$(python3 "$T/check.py" "$C/afile" "$T/a.rec" "$C/adir" "$T/a.meta") || fail "A's data on C: $m"
ok "A's fsynced data on C: $m; its file opens O_RDWR on C"
m=$(python3 "$T/check.py" "$C/bfile" "$T/b.rec" "$C/bdir" "$T/b.meta") || fail "B's data on C: $m"
ok "B's fsynced data on C: $m; its file opens O_RDWR on C"
# C can change what A and B held: their locks are free
rm "$C/adir/f0" "$C/bdir/f0" && mv "$C/afile" "$C/afile2" && echo x >>"$C/bfile" || fail "C cannot change A's and B's files"
umount_lunfs "$C" || fail "umount C"
slots_free "$IMG"
"$BIN/fsck.lunfs" -n "$IMG" >"$T/fsck.out" 2>&1 || fail "fsck -n: $(cat "$T/fsck.out")"
ok "fsck -n clean"
