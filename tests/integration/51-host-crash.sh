#!/bin/bash
# Host crash and takeover, many times over.  Host A writes a thin VM disk
# (random 64 KiB chunks of random data, each pwrite followed by fsync; a log
# outside the volume records each chunk's intent before the write and its
# completion after the fsync) and, in some rounds, creates, renames and
# deletes small files in a directory (each change fsynced, file and
# directory).  At a random moment A's daemon gets kill -9.  Host B, mounted
# throughout, must recover A (its log says so), then open the disk O_RDWR
# (polled, 20 s deadline) and find every fsynced chunk byte for byte, and
# every fsynced name with its contents.  A is remounted (same identity) for
# the next round.  At the end fsck -n is clean.
# LUNFS_SEED=N replays a run; LUNFS_ROUNDS=N changes the number of rounds.
. "$(dirname "$0")/lib.sh"
ROUNDS=${LUNFS_ROUNDS:-20}
SEED=${LUNFS_SEED:-$(( $$ ^ $(date +%s) ))}
SEED=$(( SEED % 32768 ))
RANDOM=$SEED
echo "seed $SEED (LUNFS_SEED=$SEED replays the delays)"
IMG="$T/v.img"
mkfs_multi "$IMG" 1G
A="$T/a" B="$T/b"
mkdir -p "$A" "$B"
mount_lunfs "$IMG" "$B" hostB "log=$T/b.log"
on_exit "umount_lunfs '$A'"
mkdir "$B/meta"
# another host sees a new name once B checkpoints it (within about a second,
# LOCKING.md section 6): A's first round must not start before
sleep 2

# the data writer: chunk writes with intent/done records, until it dies
cat >"$T/writer.py" <<'EOF'
import mmap, os, random, sys
disk, rec, rnd, direct = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
CH, N = 65536, 512  # a 32 MiB disk
log = os.open(rec, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
fd = os.open(disk, os.O_RDWR | os.O_CREAT | (os.O_DIRECT if direct else 0), 0o644)
buf = mmap.mmap(-1, CH)  # page aligned, for O_DIRECT
pick = random.Random(rnd)
seq = 0
while True:
    seq += 1
    idx, seed = pick.randrange(N), rnd * 100000 + seq
    buf[:] = random.Random(seed).randbytes(CH)
    os.write(log, b"I %d %d\n" % (idx, seed))
    assert os.pwrite(fd, buf, idx * CH) == CH
    os.fsync(fd)
    os.write(log, b"D %d %d\n" % (idx, seed))
EOF
# the metadata writer: create, write, fsync, rename, fsync the directory;
# now and then delete an earlier name (recorded before, as a deletion that
# may have happened, and after the directory fsync, as one that did)
cat >"$T/meta.py" <<'EOF'
import os, random, sys
d, rec, rnd = sys.argv[1], sys.argv[2], int(sys.argv[3])
log = os.open(rec, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
pick = random.Random(rnd)
done = []
k = 0
while True:
    k += 1
    name = "r%d_%d" % (rnd, k)
    data = random.Random(rnd * 100000 + k).randbytes(pick.randrange(1, 20000))
    fd = os.open(os.path.join(d, name + ".tmp"), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    os.write(fd, data)
    os.fsync(fd)
    os.close(fd)
    os.rename(os.path.join(d, name + ".tmp"), os.path.join(d, name))
    dfd = os.open(d, os.O_RDONLY | os.O_DIRECTORY)
    os.fsync(dfd)
    os.close(dfd)
    os.write(log, b"M %s %d %d\n" % (name.encode(), rnd * 100000 + k, len(data)))
    done.append(name)
    if len(done) > 3 and pick.random() < 0.3:
        victim = done.pop(pick.randrange(len(done)))
        os.write(log, b"u %s\n" % victim.encode())  # may be gone after a crash
        os.unlink(os.path.join(d, victim))
        dfd = os.open(d, os.O_RDONLY | os.O_DIRECTORY)
        os.fsync(dfd)
        os.close(dfd)
        os.write(log, b"U %s\n" % victim.encode())
EOF
# the verifier on B: every chunk whose last record is a completed fsync holds
# exactly that data; a chunk with an unfinished write is unknown until it is
# written again.  Prints "chunks-checked chunks-this-round".
cat >"$T/verify.py" <<'EOF'
import errno, os, random, sys, time
disk, rounds = sys.argv[1], int(sys.argv[2])
CH = 65536
state, this_round = {}, 0
for r in range(1, rounds + 1):
    pending = {}
    try:
        lines = open("%s.%d" % (sys.argv[3], r)).read().split("\n")
    except FileNotFoundError:
        lines = []
    for line in lines:
        if not line:
            continue
        op, idx, seed = line.split()
        if op == "I":
            pending[int(idx)] = int(seed)
            state.pop(int(idx), None)
        elif op == "D":
            pending.pop(int(idx), None)
            state[int(idx)] = int(seed)
            if r == rounds:
                this_round += 1
# open O_RDWR: polled until A's locks are free (deadline 20 s)
t0, errs = time.time(), []
while True:
    try:
        fd = os.open(disk, os.O_RDWR)
        break
    except FileNotFoundError:
        if state:
            raise
        print("0 0 no-disk-yet")
        sys.exit(0)
    except OSError as e:
        if not errs or errs[-1] != e.errno:
            errs.append(e.errno)
        if time.time() - t0 > 20:
            sys.exit("O_RDWR open of the disk on B still fails after 20 s: %s" %
                     [errno.errorcode[x] for x in errs])
        time.sleep(0.1)
took = time.time() - t0
size = os.fstat(fd).st_size
bad = []
for idx, seed in sorted(state.items()):
    want = random.Random(seed).randbytes(CH)
    got = os.pread(fd, CH, idx * CH)
    if got != want:
        nz = sum(1 for i in range(0, CH, 4096) if got[i:i + 4096] != want[i:i + 4096])
        bad.append("chunk %d (seed %d): %d of 16 pages differ%s" %
                   (idx, seed, nz, " (short read %d)" % len(got) if len(got) != CH else ""))
os.close(fd)
if bad:
    sys.exit("fsynced chunks lost or damaged (file size %d):\n  %s" % (size, "\n  ".join(bad)))
print("%d %d open-after-%.1fs-errors-%s" % (len(state), this_round, took,
      ",".join(errno.errorcode[x] for x in errs) or "none"))
EOF
cat >"$T/verify_meta.py" <<'EOF'
import os, random, sys
d, rec = sys.argv[1], sys.argv[2]
want, gone = {}, set()
for line in open(rec).read().split("\n"):
    f = line.split()
    if len(f) == 4 and f[0] == "M":
        want[f[1]] = (int(f[2]), int(f[3]))
    elif len(f) == 2 and f[0] == "u":  # a deletion began: the name may be gone
        want.pop(f[1], None)
    elif len(f) == 2 and f[0] == "U":  # deleted, the directory fsynced: gone
        gone.add(f[1])
bad = []
for name, (seed, n) in sorted(want.items()):
    try:
        got = open(os.path.join(d, name), "rb").read()
    except OSError as e:
        bad.append("%s: %s" % (name, e))
        continue
    if got != random.Random(seed).randbytes(n):
        bad.append("%s: %d bytes, want %d, contents differ" % (name, len(got), n))
for name in sorted(gone):
    if os.path.lexists(os.path.join(d, name)):
        bad.append("%s: deleted (and the directory fsynced) but still there" % name)
if bad:
    sys.exit("fsynced metadata lost:\n  " + "\n  ".join(bad))
print(len(want), len(gone))
EOF

recovered() { [ "$(grep -c 'recovered host hostA ' "$T/b.log")" -ge "$1" ]; }
total=0 meta_total=0 slowest=0
for r in $(seq "$ROUNDS"); do
	t_round=$(now_ms)
	"$BIN/mount.lunfs" "$IMG" "$A" -o "host=hostA,log=$T/a.log" || fail "round $r: mount A"
	direct=$(( RANDOM % 2 ))
	python3 "$T/writer.py" "$A/disk" "$T/rec.$r" "$r" "$direct" 2>"$T/writer.err" &
	wpid=$!
	on_exit "kill -9 $wpid 2>/dev/null"
	mpid=""
	if [ $(( RANDOM % 3 )) != 0 ]; then
		python3 "$T/meta.py" "$A/meta" "$T/meta.rec" "$r" 2>"$T/meta.err" &
		mpid=$!
		on_exit "kill -9 $mpid 2>/dev/null"
	fi
	# the random moment is counted from the first fsynced chunk (and name),
	# so that every round has something to lose
	poll 15 grep -qs '^D' "$T/rec.$r" || fail "round $r: A's writer fsynced nothing in 15 s: $(cat "$T/writer.err")"
	t_first=$(( $(now_ms) - t_round ))
	[ -z "$mpid" ] || poll 15 test -s "$T/meta.rec" || fail "round $r: A's metadata writer fsynced nothing in 15 s: $(cat "$T/meta.err")"
	delay=$(( RANDOM % 1000 ))
	sleep "$(printf '%d.%03d' $(( delay / 1000 )) $(( delay % 1000 )))"
	kill -0 "$wpid" 2>/dev/null || fail "round $r: the writer died before the kill: $(cat "$T/writer.err")"
	[ -z "$mpid" ] || kill -0 "$mpid" 2>/dev/null || fail "round $r: the metadata writer died before the kill: $(cat "$T/meta.err")"
	t_kill=$(now_ms)
	kill_daemon "$A"
	kill -9 $wpid $mpid 2>/dev/null || true
	wait $wpid $mpid 2>/dev/null || true
	poll 20 recovered "$r" || fail "round $r: B did not recover A within 20 s: $(tail -5 "$T/b.log")"
	t_rec=$(( $(now_ms) - t_kill ))
	[ "$t_rec" -gt "$slowest" ] && slowest=$t_rec
	out=$(python3 "$T/verify.py" "$B/disk" "$r" "$T/rec") || fail "round $r (seed $SEED, delay $delay ms, O_DIRECT=$direct): $out"
	set -- $out
	total=$(( total + $2 ))
	mmsg=""
	if [ -n "$mpid" ]; then
		m=$(python3 "$T/verify_meta.py" "$B/meta" "$T/meta.rec") || fail "round $r (seed $SEED, delay $delay ms): $m"
		meta_total=$(( meta_total + ${m%% *} ))
		mmsg=", $m fsynced names present/deleted"
		# B clears the directory: A's locks on it and its files are free now
		rm -f "$B"/meta/* || fail "round $r: B cannot clear the directory A used"
		: >"$T/meta.rec"
	fi
	ok "round $r ($(( $(now_ms) - t_round )) ms): kill $delay ms after the first fsync (${t_first} ms after the mount; O_DIRECT=$direct); B recovered A after $t_rec ms; $1 fsynced chunks intact ($2 this round), $3$mmsg"
done
[ "$total" -gt 0 ] || fail "no chunk was ever fsynced: the test tested nothing"
[ "$meta_total" -gt 0 ] || fail "no metadata change was ever fsynced: the test tested nothing"
n=$(grep -c 'recovered host hostA ' "$T/b.log")
[ "$n" = "$ROUNDS" ] || fail "B recovered A $n times, want $ROUNDS"
grep -E 'recovery of host .* failed' "$T/b.log" && fail "a recovery failed"
umount_lunfs "$B" || fail "umount B"
slots_free "$IMG"
"$BIN/fsck.lunfs" -n "$IMG" >"$T/fsck.out" 2>&1 || fail "fsck -n: $(cat "$T/fsck.out")"
ok "$ROUNDS crashes of A, each recovered by B within $slowest ms; $total chunk fsyncs and $meta_total name changes checked; fsck -n clean"
