#!/bin/bash
# Many hosts at once.
# (a) 8 hosts mounted together run a mixed workload for 20 s: create,
#     overwrite, rename and delete files in a private directory, and create,
#     rename and delete files (names unique per host) in one shared
#     directory.  Every operation must succeed: an error, EBUSY in
#     particular, fails the test with the operation, host, path and time.
#     Each host keeps a manifest of what it should have left; after all
#     unmount, fsck -n is clean and a fresh mount finds exactly that: every
#     name with its contents, and nothing else.
# (b) A soak: 4 waves of 8 short-lived hosts (32 in all) mount, do a little
#     work and unmount, while 2 long-lived hosts keep working throughout.
#     Their longest pause between two operations is reported (not asserted:
#     joins and leaves should not stall them, but timing is not a verdict).
#     Everything must succeed, the long-lived hosts' manifests and the
#     short-lived hosts' files must be there on a fresh mount, and fsck -n
#     is clean.
# LUNFS_SECONDS=N changes the length of (a).  LUNFS_TOLERATE_EBUSY=1 counts
# EBUSY failures without failing the test (retrying the soak's commands), to
# check everything else while EBUSY under contention is a known lunfs bug;
# it is off by default.
. "$(dirname "$0")/lib.sh"
SECS=${LUNFS_SECONDS:-20}
IMG="$T/v.img"
mkfs_multi "$IMG" 2G -I 4096
export IMG LUNFS_CLI="$BIN/lunfs"

# worker.py ROOT HOST SECONDS OUT [STOPFILE]: the workload of one host, for
# SECONDS or until STOPFILE exists; writes its manifest, its errors and its
# timing to OUT (JSON)
cat >"$T/worker.py" <<'EOF'
import errno, json, os, random, subprocess, sys, time
root, host, secs, out = sys.argv[1], sys.argv[2], float(sys.argv[3]), sys.argv[4]
stop = sys.argv[5] if len(sys.argv) > 5 else None
img, lunfs = os.environ["IMG"], os.environ["LUNFS_CLI"]
tolerate = os.environ.get("LUNFS_TOLERATE_EBUSY") == "1"
pdir, sdir = os.path.join(root, "p_" + host), os.path.join(root, "shared")
rng = random.Random(host)
priv, shared, unknown, errors, tolerated = {}, {}, [], [], []
count = {}
last, max_gap, max_op, max_op_what = None, 0.0, 0.0, ""
k = 0
MAXP, MAXS = 30, 15  # live files per host, so that the volume does not fill up

def data(seed, n):
    return random.Random(seed).randbytes(n)

def op(what, fn, *args):
    """Runs one operation.  An error is recorded with the time and how long
    the operation took; at the first EBUSY the lock table is saved."""
    global last, max_gap, max_op, max_op_what
    t = time.monotonic()
    try:
        fn(*args)
        res = True
    except OSError as e:
        name = errno.errorcode.get(e.errno, str(e.errno))
        msg = "%s host %s: %s %s: %s after %.1f s" % (
            time.strftime("%H:%M:%S"), host, what, args[0], name, time.monotonic() - t)
        if e.errno == errno.EBUSY and not os.path.exists(out + ".locks"):
            with open(out + ".locks", "w") as f:
                f.write(msg + "\n")
                f.flush()
                subprocess.run([lunfs, "locks", img], stdout=f, stderr=f)
        (tolerated if tolerate and e.errno == errno.EBUSY else errors).append(msg)
        res = False
    now = time.monotonic()
    if now - t > max_op:
        max_op, max_op_what = now - t, what
    if last is not None:
        max_gap = max(max_gap, now - last)
    last = now
    count[what] = count.get(what, 0) + 1
    return res

def put(path, seed, n, flags):
    fd = os.open(path, os.O_WRONLY | flags, 0o644)
    try:
        os.write(fd, data(seed, n))
    finally:
        os.close(fd)

def unsure(path):
    """A create or an overwrite failed half-way: the name may be there, with
    any contents; the check skips it."""
    unknown.append(os.path.relpath(path, root))

while not op("mkdir", os.mkdir, pdir) and tolerate and len(tolerated) < 20:
    time.sleep(0.2)
t_end = time.monotonic() + secs
while (os.path.isdir(pdir) and time.monotonic() < t_end and len(errors) < 20 and
       not (stop and os.path.exists(stop))):
    k += 1
    name, seed, n = "%s_%d" % (host, k), rng.randrange(1 << 30), rng.randrange(1, 40000)
    c = rng.random()
    if len(priv) >= MAXP and c < 0.45:
        c = 0.5  # full: delete instead
    if len(shared) >= MAXS and 0.55 <= c < 0.88:
        c = 0.9
    if c < 0.25 or not priv:
        p = os.path.join(pdir, name)
        if op("create", put, p, seed, n, os.O_CREAT | os.O_EXCL):
            priv[name] = (seed, n)
        elif os.path.lexists(p):
            unsure(p)
    elif c < 0.35:
        old = rng.choice(sorted(priv))
        if op("overwrite", put, os.path.join(pdir, old), seed, n, os.O_TRUNC):
            priv[old] = (seed, n)
        else:
            del priv[old]
            unsure(os.path.join(pdir, old))
    elif c < 0.45:
        old = rng.choice(sorted(priv))
        if op("rename", os.rename, os.path.join(pdir, old), os.path.join(pdir, name)):
            priv[name] = priv.pop(old)
    elif c < 0.55:
        old = rng.choice(sorted(priv))
        if op("unlink", os.unlink, os.path.join(pdir, old)):
            del priv[old]
    elif c < 0.75 or not shared:
        p = os.path.join(sdir, name)
        if op("shared create", put, p, seed, n, os.O_CREAT | os.O_EXCL):
            shared[name] = (seed, n)
        elif os.path.lexists(p):
            unsure(p)
    elif c < 0.88:
        old = rng.choice(sorted(shared))
        if op("shared rename", os.rename, os.path.join(sdir, old), os.path.join(sdir, name)):
            shared[name] = shared.pop(old)
    else:
        old = rng.choice(sorted(shared))
        if op("shared unlink", os.unlink, os.path.join(sdir, old)):
            del shared[old]
if not os.path.isdir(pdir):
    errors.append("host %s: no private directory, no work done" % host)
json.dump({"host": host, "priv": priv, "shared": shared, "unknown": unknown, "errors": errors,
           "tolerated": tolerated, "ops": count, "max_gap": max_gap, "max_op": max_op,
           "max_op_what": max_op_what}, open(out, "w"))
EOF
# check.py ROOT OUT...: the manifests against a fresh mount; prints a summary
cat >"$T/check.py" <<'EOF'
import json, os, random, sys
root, bad, nfiles, nunknown = sys.argv[1], [], 0, 0
sdir = os.path.join(root, "shared")
seen_shared = set(os.listdir(sdir))
want_shared = set()
for out in sys.argv[2:]:
    m = json.load(open(out))
    h = m["host"]
    skip = set(m["unknown"])
    nunknown += len(skip)
    pdir = os.path.join(root, "p_" + h)
    for where, d, files in (("private", pdir, m["priv"]), ("shared", sdir, m["shared"])):
        if where == "shared":
            names = {x for x in seen_shared if x.startswith(h + "_")}
        elif os.path.isdir(d) or files:
            names = set(os.listdir(d))
        else:
            names = set()  # it could not even make its directory
        names = {x for x in names if os.path.relpath(os.path.join(d, x), root) not in skip}
        if names != set(files):
            bad.append("%s %s: missing %s, extra %s" % (h, where, sorted(set(files) - names)[:10],
                                                          sorted(names - set(files))[:10]))
        for name, (seed, n) in files.items():
            p = os.path.join(d, name)
            try:
                good = open(p, "rb").read() == random.Random(seed).randbytes(n)
            except OSError:
                good = False
            if not good:
                bad.append("%s: contents differ from what host %s wrote" % (p, h))
            nfiles += 1
    want_shared |= set(m["shared"]) | {os.path.basename(x) for x in skip if x.startswith("shared/")}
others = seen_shared - want_shared
if others:
    bad.append("the shared directory holds names nobody left there: %s" % sorted(others)[:10])
if bad:
    sys.exit("\n  ".join(["the manifests do not match the volume:"] + bad[:30]))
print("%d files of %d manifests match%s" % (nfiles, len(sys.argv) - 2,
      " (%d names left unsure by failed operations skipped)" % nunknown if nunknown else ""))
EOF
# report OUT...: fails on any error a worker saw (with the lock table at the
# first EBUSY); prints the operations and timings of each host
report() {
	python3 - "$@" <<'EOF'
import json, os, sys
errs, tol, lines = [], [], []
for out in sys.argv[1:]:
    m = json.load(open(out))
    errs += m["errors"]
    tol += m["tolerated"]
    lines.append("%s: %d ops, longest op %.2f s (%s), longest gap between ops %.2f s" % (
        m["host"], sum(m["ops"].values()), m["max_op"], m["max_op_what"], m["max_gap"]))
print("\n".join("  " + l for l in lines))
if tol:
    print("  EBUSY tolerated (LUNFS_TOLERATE_EBUSY=1): %d, first: %s" % (len(tol), tol[:5]))
if errs:
    locks = [o + ".locks" for o in sys.argv[1:] if os.path.exists(o + ".locks")]
    extra = []
    if locks:
        extra = ["lock table at the first EBUSY (%s):" % locks[0]] + \
            ["  " + l.rstrip() for l in open(locks[0]).readlines()[:40]]
    sys.exit("\n  ".join(["operations failed (%d):" % len(errs)] + errs[:40] + extra))
EOF
}

# Problems with the operations themselves (errors, EBUSY, lost changes) are
# collected, so that (b) still runs after (a) found some; the test fails at
# the end if there were any.  Damage (fsck) and crashes fail at once.
PROBLEMS=""
problem() {
	echo "PROBLEM: $*" >&2
	PROBLEMS="$PROBLEMS
- $(echo "$*" | head -1)"
}

# ---- (a) 8 hosts at once
HOSTS="m1 m2 m3 m4 m5 m6 m7 m8"
for h in $HOSTS; do mount_lunfs "$IMG" "$T/$h" "$h" "log=$T/$h.log"; done
mkdir "$T/m1/shared"
for h in $HOSTS; do poll 5 test -d "$T/$h/shared" || fail "$h does not see the shared directory"; done
pids=""
for h in $HOSTS; do
	python3 "$T/worker.py" "$T/$h" "$h" "$SECS" "$T/$h.json" 2>"$T/$h.err" &
	pids="$pids $!"
	on_exit "kill -9 $! 2>/dev/null"
done
for p in $pids; do wait "$p" || fail "a worker crashed: $(cat "$T"/m*.err)"; done
outs=""
for h in $HOSTS; do outs="$outs $T/$h.json"; done
if summary=$(report $outs 2>&1); then
	echo "$summary"
	ok "(a) 8 hosts, $SECS s of mixed private and shared-directory operations: no errors"
else
	problem "(a) operations failed while 8 hosts worked at once:
$summary"
fi
for h in $HOSTS; do umount_lunfs "$T/$h" || fail "umount $h"; done
grep -l 'fenced\|failed' "$T"/m?.log && fail "a host logged a failure: $(grep -h 'fenced\|failed' "$T"/m?.log | head)"
slots_free "$IMG"
"$BIN/fsck.lunfs" -n "$IMG" >"$T/fsck.out" 2>&1 || fail "fsck -n after (a): $(cat "$T/fsck.out")"
ok "(a) all unmounted, fsck -n clean"
mount_lunfs "$IMG" "$T/v" verifier "log=$T/v.log"
if m=$(python3 "$T/check.py" "$T/v" $outs 2>&1); then
	ok "(a) on a fresh mount: $m"
else
	problem "(a) on a fresh mount: $m"
fi
umount_lunfs "$T/v" || fail "umount verifier"

# ---- (b) soak: 2 long-lived hosts, 4 waves of 8 short-lived ones
for h in l1 l2; do mount_lunfs "$IMG" "$T/$h" "$h" "log=$T/$h.log"; done
mkdir "$T/l1/soak"
head -c 100000 /dev/urandom >"$T/seed.dat"
lpids=""
for h in l1 l2; do
	python3 "$T/worker.py" "$T/$h" "$h" 600 "$T/$h.json" "$T/stop" 2>"$T/$h.err" &
	lpids="$lpids $!"
	on_exit "kill -9 $! 2>/dev/null"
done
# wave W: 8 hosts mount at once, each makes /soak/NAME, writes three files
# there and reads them back, renames one, deletes one, adds /soak/NAME.x,
# then unmounts.  A failed command is a problem (with the lock table as it
# was right after it); that host's files are then not checked.
# ty CMD...: runs CMD; on failure saves `lunfs locks`; with
# LUNFS_TOLERATE_EBUSY=1 retries it (an EBUSY changes nothing) up to 10 times
ty() {
	_t0=$(now_ms)
	"$@" && return 0
	echo "($* failed after $(( $(now_ms) - _t0 )) ms)" >&2
	"$BIN/lunfs" locks "$IMG" >"$T/$h.locks" 2>&1
	[ "${LUNFS_TOLERATE_EBUSY:-}" = 1 ] || return 1
	for _ in 1 2 3 4 5 6 7 8 9 10; do
		sleep 0.3
		"$@" 2>/dev/null && echo "tolerated: $* failed, then worked" >&2 && return 0
	done
	return 1
}
short_work() {
	h=$1 d="$T/$1/soak/$1"
	ty mkdir "$d" || return 1
	for i in 1 2 3; do ty sh -c "head -c $(( 20000 * i )) '$T/seed.dat' >'$d/f$i'" || return 1; done
	for i in 1 2 3; do cmp -n $(( 20000 * i )) "$d/f$i" "$T/seed.dat" || return 1; done
	ty mv "$d/f1" "$d/g1" && ty rm "$d/f2" && ty sh -c "echo '$1' >'$T/$1/soak/$1.x'"
}
t_soak=$(now_ms)
SHORT="" GOOD=""
for w in 1 2 3 4; do
	wave=""
	for i in 1 2 3 4 5 6 7 8; do
		h="s${w}x$i"
		wave="$wave $h"
		mkdir -p "$T/$h"
		on_exit "umount_lunfs '$T/$h'"
		"$BIN/mount.lunfs" "$IMG" "$T/$h" -o "host=$h,log=$T/$h.log" >"$T/$h.mount" 2>&1 &
	done
	for h in $wave; do
		poll 20 grep -q " $T/$h fuse.lunfs " /proc/mounts || fail "wave $w: $h did not mount: $(cat "$T/$h.mount" "$T/$h.log")"
		poll 5 test -d "$T/$h/soak" || fail "wave $w: $h does not see /soak"
	done
	wpids=""
	for h in $wave; do
		short_work "$h" 2>"$T/$h.work" &
		wpids="$wpids $!"
	done
	set -- $wave
	nbad=0
	for p in $wpids; do
		if wait "$p"; then
			GOOD="$GOOD $1"
		else
			nbad=$((nbad + 1))
			problem "wave $w: host $1's work failed: $(cat "$T/$1.work")
   lock table right after: $(head -30 "$T/$1.locks" 2>/dev/null)"
		fi
		shift
	done
	for h in $wave; do umount_lunfs "$T/$h" || fail "wave $w: umount $h"; done
	SHORT="$SHORT $wave"
	for l in $lpids; do kill -0 "$l" || fail "a long-lived worker died: $(cat "$T"/l?.err)"; done
	ok "wave $w: 8 hosts mounted at once, worked ($nbad failed), unmounted"
done
soak_ms=$(( $(now_ms) - t_soak ))
touch "$T/stop"
for p in $lpids; do wait "$p" || fail "a long-lived worker crashed: $(cat "$T"/l?.err)"; done
if summary=$(report "$T/l1.json" "$T/l2.json" 2>&1); then
	echo "$summary"
	ok "(b) soak: 32 short-lived hosts came and went in $soak_ms ms while l1 and l2 worked without an error"
else
	problem "(b) the long-lived hosts' operations failed during the soak:
$summary"
fi
for h in l1 l2; do umount_lunfs "$T/$h" || fail "umount $h"; done
grep -l 'fenced\|failed' "$T"/*.log && fail "a host logged a failure: $(grep -h 'fenced\|failed' "$T"/*.log | head)"
slots_free "$IMG"
"$BIN/fsck.lunfs" -n "$IMG" >"$T/fsck.out" 2>&1 || fail "fsck -n after the soak: $(cat "$T/fsck.out")"
ok "(b) all unmounted, fsck -n clean"
mount_lunfs "$IMG" "$T/v" verifier "log=$T/v.log"
if m=$(python3 "$T/check.py" "$T/v" $outs "$T/l1.json" "$T/l2.json" 2>&1); then
	ok "(b) on a fresh mount: $m"
else
	problem "(b) on a fresh mount: $m"
fi
n=0
for h in $GOOD; do
	d="$T/v/soak/$h"
	[ "$(ls "$d" | tr '\n' ' ')" = "f3 g1 " ] || { problem "soak host $h left $(ls "$d"), want f3 g1"; continue; }
	cmp -s -n 60000 "$d/f3" "$T/seed.dat" && [ "$(stat -c %s "$d/f3")" = 60000 ] &&
		cmp -s -n 20000 "$d/g1" "$T/seed.dat" && [ "$(stat -c %s "$d/g1")" = 20000 ] &&
		[ "$(cat "$T/v/soak/$h.x")" = "$h" ] || { problem "soak host $h: contents differ"; continue; }
	n=$((n + 1))
done
umount_lunfs "$T/v" || fail "umount verifier"
ok "(b) the files of $n short-lived hosts are there"
[ -z "$PROBLEMS" ] || fail "problems found (details above):$PROBLEMS"
