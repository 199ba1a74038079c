#!/bin/bash
# 56-iscsi-frozen: a frozen host is fenced by persistent reservations on a
# stock tgtd (which implements SCSI-3 PR), twice in a row.  Each cycle:
#   1. hosts a (caw=auto) and b (caw=reserve) mount the LUN; each registers
#      its own PR key, and a type 5 (Write Exclusive - Registrants Only)
#      reservation exists;
#   2. a writer on a rewrites a 256 KiB file in a loop (pwrite of 64 tagged
#      'A' blocks + fsync); a's daemon is SIGSTOPped mid-loop;
#   3. b polls an O_RDWR open of the file: it succeeds only once b's recovery
#      of a is done, and no sooner than lease - heartbeat after the stop;
#      pr_tool then shows a's key gone and b's registered, and the
#      reservation still type 5;
#   4. direct check that no stale write can land, while a is still stopped:
#      pr_tool stale -- a registered session X writes, is preempted by Y, and
#      then its WRITE fails with RESERVATION CONFLICT (-EFENCED) and does not
#      land, while a session that never registers (a backup proxy) can still
#      read;
#   5. b writes 64 tagged 'B' blocks over the file and fsyncs;
#   6. SIGCONT a: a's writer fails with EIO, a's log says "fenced"; then a
#      rejoins by itself (a new mount, a new key) and a new file created on
#      it shows on b;
#   7. b's pattern is intact: read on b, on a fresh host c, and raw from the
#      LUN through the iSCSI URL (every block of the cycle's file is b's, and
#      no block anywhere on the LUN carries a's tag of this cycle);
#   8. every host unmounts (a's daemon, fenced, exits too); no PR key and no
#      reservation is left; fsck.lunfs -n over the URL is clean.
# The next cycle mounts a again.
# Then (with gdb) the frozen daemon's own late WRITE: a's daemon is held by
# gdb right before a data WRITE that passed every fencing check, b recovers a
# and preempts its key, a goes on: the WRITE must bounce, the data must not
# land, and the application must get EIO.
# tgtd runs on 127.0.0.1:32610 (control port 32610), started and stopped here.
. "$(dirname "$0")/lib.sh"
PR=$TBIN/pr_tool
PORT=${LUNFS_IT56_PORT:-32610}
IQN_BASE=iqn.2026-11.org.lunfs
IQN=$IQN_BASE:it56
URL=iscsi://127.0.0.1:$PORT/$IQN/1
LEASE=3000
HB=500
NBLK=64
CYCLES=${LUNFS_IT56_CYCLES:-2}
for b in "$PR" "$BIN/mkfs.lunfs" "$BIN/fsck.lunfs" "$BIN/mount.lunfs"; do
	[ -x "$b" ] || fail "$b is not built (run make)"
done
command -v python3 >/dev/null || fail "python3 not found"
command -v tgtd >/dev/null && command -v tgtadm >/dev/null || fail "tgtd/tgtadm not found (package tgt)"

# ---- tgtd ---------------------------------------------------------------------
. "$(dirname "$0")/lib-tgt.sh"
truncate -s 1G "$T/lun.img"
start_tgtd "$PORT" "$IQN" "$T/lun.img"
ok "tgtd (pid $TGTD_PID) on 127.0.0.1:$PORT: $URL, 1 GiB file"

# ---- helpers ----------------------------------------------------------------
# poll_for SECS WHAT CMD...: CMD must succeed within SECS seconds
poll_for() {
	local secs=$1 what=$2 end
	shift 2
	end=$(($(date +%s%N) / 1000000 + secs * 1000))
	until "$@" 2>/dev/null; do
		[ $(($(date +%s%N) / 1000000)) -lt "$end" ] || fail "$what: not within $secs s"
		sleep 0.1
	done
}
now_ms() { echo $(($(date +%s%N) / 1000000)); }
# daemon_of DIR: the mount.lunfs daemon serving DIR (started by this script)
daemon_of() {
	local p
	p=$(pgrep -f "mount.lunfs .* $1( |$)") || return 1
	[ "$(echo "$p" | wc -l)" = 1 ] || fail "more than one daemon for $1: $p"
	echo "$p"
}
logs() { grep -hv 'lunfs: returning' "$@" | tail -n 20; }
# diag_b DIR: b's log, and whether the LU is reserved (SCSI-2) by someone:
# a host frozen inside a reserve-mode compare-and-write (RESERVE(6) .. RELEASE(6))
# shuts every other initiator out, so every other host fences itself after
# lease - margin
diag_b() {
	timeout 20 "$PR" read "$URL" 0 4096 >/dev/null 2>"$1/diag" && echo "works" >"$1/diag"
	printf '\n    a fresh session READ of block 0: %s' "$(cat "$1/diag")"
	printf '\n    b log: %s' "$(logs "$1/b.log")"
	grep -q 'older than the lease: fenced' "$1/b.log" &&
		printf '\n    (b fenced itself: its renewals stalled; a frozen holding RESERVE(6) does that)'
	return 0
}
status_is() { grep -q "$1" "$2"; }

cat >"$T/pattern.py" <<'EOF'
# the tagged blocks: "LUNFS56 host=H cycle=C seq=S blk=K" padded with H
BS = 4096
def block(host, cycle, seq, k):
    head = ("LUNFS56 host=%s cycle=%d seq=%d blk=%d\n" % (host, cycle, seq, k)).encode()
    return head + host.encode() * (BS - len(head))
def tag(host, cycle):
    return ("LUNFS56 host=%s cycle=%d " % (host, cycle)).encode()
EOF
cat >"$T/awriter.py" <<'EOF'
# awriter.py PATH CYCLE NBLK STATUS: rewrites PATH with tagged 'A' blocks and
# fsyncs, in a loop; STATUS holds "ok SEQ" after each round, and
# "err ERRNO-NAME OP SEQ" when a call fails (then it exits 1).
import errno, os, sys, time
sys.path.insert(0, os.path.dirname(sys.argv[0]))
from pattern import block
path, cycle, nblk, status = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
def say(s):
    with open(status + ".tmp", "w") as f:
        f.write(s + "\n")
    os.rename(status + ".tmp", status)
fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
seq = 0
while True:
    seq += 1
    op = "pwrite"
    try:
        data = b"".join(block("A", cycle, seq, k) for k in range(nblk))
        assert os.pwrite(fd, data, 0) == len(data)
        op = "fsync"
        os.fsync(fd)
    except OSError as e:
        say("err %s %s %d" % (errno.errorcode.get(e.errno, e.errno), op, seq))
        sys.exit(1)
    say("ok %d" % seq)
    time.sleep(0.05)
EOF
cat >"$T/bwriter.py" <<'EOF'
# bwriter.py PATH CYCLE NBLK SECS DIR: polls an O_RDWR open of PATH for up to
# SECS s and writes "OPENED_AT_MS ERRORS-SEEN" to DIR/opened; waits for
# DIR/go; writes tagged 'B' blocks over the file, fsyncs, reads them back,
# creates DIR/written; keeps the file open until DIR/close exists.
import errno, os, sys, time
sys.path.insert(0, os.path.dirname(sys.argv[0]))
from pattern import block
path, cycle, nblk, secs, d = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4]), sys.argv[5]
t0 = time.monotonic()
seen = {}
while True:
    try:
        fd = os.open(path, os.O_RDWR)
        break
    except OSError as e:
        n = errno.errorcode.get(e.errno, str(e.errno))
        seen[n] = seen.get(n, 0) + 1
        if time.monotonic() - t0 > secs:
            print("no O_RDWR open within %g s; errors: %s" % (secs, seen), file=sys.stderr)
            sys.exit(1)
        time.sleep(0.1)
with open(os.path.join(d, "opened"), "w") as f:
    f.write("%d %s\n" % (int(time.time() * 1000), ",".join("%s*%d" % kv for kv in sorted(seen.items())) or "-"))
while not os.path.exists(os.path.join(d, "go")):
    time.sleep(0.02)
data = b"".join(block("B", cycle, 0, k) for k in range(nblk))
assert os.pwrite(fd, data, 0) == len(data)
os.fsync(fd)
assert os.pread(fd, len(data) + 1, 0) == data, "b reads back something else"
open(os.path.join(d, "written"), "w").close()
while not os.path.exists(os.path.join(d, "close")):
    time.sleep(0.05)
os.close(fd)
EOF
cat >"$T/verify.py" <<'EOF'
# verify.py PATH CYCLE NBLK: PATH must hold exactly b's blocks of CYCLE
import os, sys
sys.path.insert(0, os.path.dirname(sys.argv[0]))
from pattern import block
path, cycle, nblk = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
with open(path, "rb") as f:
    got = f.read()
want = b"".join(block("B", cycle, 0, k) for k in range(nblk))
if got != want:
    for k in range(max(len(got), len(want)) // 4096 + 1):
        if got[k * 4096:(k + 1) * 4096] != want[k * 4096:(k + 1) * 4096]:
            print("%d bytes; block %d is %r..." % (len(got), k, got[k * 4096:k * 4096 + 48]))
            sys.exit(1)
print("ok")
EOF
cat >"$T/rawscan.py" <<'EOF'
# rawscan.py CYCLE NBLK < raw LUN: counts the blocks carrying a's and b's tags
# of CYCLE; b's must be exact.  Prints "A=n B=n BAD=n".
import os, sys
sys.path.insert(0, os.path.dirname(sys.argv[0]))
from pattern import block, tag
cycle, nblk = int(sys.argv[1]), int(sys.argv[2])
ta, tb = tag("A", cycle), tag("B", cycle)
want = {block("B", cycle, 0, k) for k in range(nblk)}
a = b = bad = 0
f = sys.stdin.buffer
while True:
    chunk = f.read(4 << 20)
    if not chunk:
        break
    for o in range(0, len(chunk), 4096):
        blk = chunk[o:o + 4096]
        if blk.startswith(ta):
            a += 1
        elif blk.startswith(tb):
            b += 1
            bad += blk not in want
print("A=%d B=%d BAD=%d" % (a, b, bad))
EOF

# ---- the volume -----------------------------------------------------------------
[ -z "$(keys)" ] || fail "PR keys registered on a fresh LUN: $(keys | tr '\n' ' ')"
"$BIN/mkfs.lunfs" -q -f -N 16 -J 1M --lease-ms $LEASE --heartbeat-ms $HB -L it56 "$URL" || fail "mkfs.lunfs on $URL"
ok "mkfs.lunfs --lease-ms $LEASE --heartbeat-ms $HB on $URL"

cycle() {
	local c=$1 C=$T/c$1
	local ma=$T/c$1/a mb=$T/c$1/b mc=$T/c$1/c f=disk$1.img
	local ka kb r pida wpid bpid t_stop opened seen st
	mkdir -p "$C"
	# 1. two hosts, two keys, one type 5 reservation
	mount_lunfs "$URL" "$ma" a "log=$C/a.log,caw=auto"
	ka=$(new_key)
	mount_lunfs "$URL" "$mb" b "log=$C/b.log,caw=reserve"
	kb=$(new_key "$ka")
	r=$("$PR" resv "$URL") || fail "cycle $c: pr_tool resv"
	case "$r" in
	"key $ka type 5" | "key $kb type 5") ;;
	*) fail "cycle $c: reservation is '$r', want type 5 held by $ka or $kb" ;;
	esac
	ok "cycle $c: a (key $ka) and b (key $kb) mounted; reservation: $r"

	# 2. a writes in a loop, then freezes
	python3 "$T/awriter.py" "$ma/$f" "$c" $NBLK "$C/a.status" 2>"$C/a.err" &
	wpid=$!
	on_exit "kill $wpid 2>/dev/null"
	poll_for 20 "cycle $c: a's writer gets going ($(cat "$C/a.err" "$C/a.status" 2>/dev/null))" \
		grep -Eq '^ok ([5-9]|[1-9][0-9]+)$' "$C/a.status"
	poll_for 5 "cycle $c: b sees $f" test -e "$mb/$f"
	pida=$(daemon_of "$ma") || fail "cycle $c: no daemon for $ma"
	kill -STOP "$pida"
	on_exit "kill -CONT $pida 2>/dev/null"
	t_stop=$(now_ms)
	ok "cycle $c: a's writer at $(cat "$C/a.status"); a's daemon (pid $pida) SIGSTOPped"

	# 3. b takes the file over once it has recovered a
	python3 "$T/bwriter.py" "$mb/$f" "$c" $NBLK 20 "$C" 2>"$C/b.err" &
	bpid=$!
	on_exit "kill $bpid 2>/dev/null"
	local end=$(($(now_ms) + 25000))
	until [ -s "$C/opened" ]; do
		[ "$(now_ms)" -lt $end ] ||
			fail "cycle $c: b's O_RDWR open not within 25 s of a's SIGSTOP ($(cat "$C/b.err" 2>/dev/null))$(diag_b "$C")"
		sleep 0.1
	done
	read -r opened seen <"$C/opened"
	[ $((opened - t_stop)) -ge $((LEASE - HB)) ] ||
		fail "cycle $c: b opened the file $((opened - t_stop)) ms after a froze, before a lease ($LEASE ms) could have passed"
	ok "cycle $c: b opened $f O_RDWR $((opened - t_stop)) ms after a froze (errors meanwhile: $seen)"
	# (the log line follows the purge of a's locks, which can be after the open)
	poll_for 5 "cycle $c: b's log shows the recovery of a ($(logs "$C/b.log"))" grep -q 'recovered host a ' "$C/b.log"
	has_key "$ka" && fail "cycle $c: a's key $ka is still registered after b recovered a"
	has_key "$kb" || fail "cycle $c: b's key $kb is not registered: $(keys | tr '\n' ' ')"
	r=$("$PR" resv "$URL") || fail "cycle $c: pr_tool resv"
	case "$r" in *" type 5") ;; *) fail "cycle $c: reservation after the preemption: '$r', want type 5" ;; esac
	ok "cycle $c: $(grep -h 'recovered host a ' "$C/b.log" | head -1)"
	ok "cycle $c: a's key $ka was preempted, b's key $kb is registered; reservation: $r"

	# 4. a preempted initiator's writes bounce; a reader that never
	#    registered still reads (a stands still meanwhile)
	"$PR" stale "$URL" "$IQN_BASE:it56-x$c" "$IQN_BASE:it56-y$c" "$IQN_BASE:it56-z$c" >"$C/stale.log" 2>&1 ||
		fail "cycle $c: stale writer check: $(cat "$C/stale.log")"
	sed 's/^/    /' "$C/stale.log"
	[ "$(keys)" = "$kb" ] || fail "cycle $c: keys after the stale check: $(keys | tr '\n' ' '), want only $kb"
	[ "$("$PR" resv "$URL")" = "$r" ] || fail "cycle $c: the stale check changed the reservation"
	ok "cycle $c: a preempted session's WRITE fails with RESERVATION CONFLICT and does not land; an unregistered reader still reads"

	# 5. b writes its pattern
	touch "$C/go"
	poll_for 20 "cycle $c: b writes and fsyncs ($(cat "$C/b.err" 2>/dev/null))" test -e "$C/written"
	ok "cycle $c: b wrote $NBLK 'B' blocks over $f and fsynced"

	# 6. a resumes: fenced
	kill -CONT "$pida"
	poll_for 15 "cycle $c: a's writer fails after SIGCONT (status: $(cat "$C/a.status"))" status_is '^err ' "$C/a.status"
	wait "$wpid" 2>/dev/null && fail "cycle $c: a's writer exited 0"
	st=$(cat "$C/a.status")
	case "$st" in "err EIO "*) ;; *) fail "cycle $c: a's writer: '$st', want EIO
    a log: $(logs "$C/a.log")" ;; esac
	ok "cycle $c: after SIGCONT a's writer fails: $st"
	poll_for 5 "cycle $c: a's log says fenced ($(logs "$C/a.log"))" grep -q 'fenced' "$C/a.log"
	ok "cycle $c: a's log: $(grep -h 'fenced' "$C/a.log" | head -1)"
	# a comes back by itself: a new mount of its identity, once b recovered
	# its old slot; new operations work (its writer's descriptor stayed
	# failed, above)
	poll_for 20 "cycle $c: a rejoins ($(logs "$C/a.log"))" grep -q 'rejoined after the fence' "$C/a.log"
	echo late >"$ma/late-$c" || fail "cycle $c: a, rejoined, cannot create a file"
	poll_for 5 "cycle $c: b sees a's new file" test -e "$mb/late-$c"
	ok "cycle $c: a rejoined by itself; a new file created on a shows on b"

	# 7. b's pattern is intact: on b, on a fresh host c, raw on the LUN
	touch "$C/close"
	wait "$bpid" || fail "cycle $c: b's writer: $(cat "$C/b.err")"
	r=$(python3 "$T/verify.py" "$mb/$f" "$c" $NBLK) || fail "cycle $c: b reads $f: $r"
	mount_lunfs "$URL" "$mc" c "log=$C/c.log"
	poll_for 5 "cycle $c: c sees $f" test -e "$mc/$f"
	r=$(python3 "$T/verify.py" "$mc/$f" "$c" $NBLK) || fail "cycle $c: c reads $f: $r"
	r=$("$PR" read "$URL" 0 $((1 << 30)) | python3 "$T/rawscan.py" "$c" $NBLK) || fail "cycle $c: raw read of the LUN"
	[ "$r" = "A=0 B=$NBLK BAD=0" ] ||
		fail "cycle $c: raw LUN holds $r blocks of a's/b's/b's damaged tags of this cycle, want A=0 B=$NBLK BAD=0"
	ok "cycle $c: b's pattern intact on b, on a fresh host c, and raw on the LUN ($r: not one of a's blocks of this cycle left)"

	# 8. everyone leaves
	umount_lunfs "$ma" || fail "cycle $c: a's daemon does not exit after umount"
	grep -q 'unmounted' "$C/a.log" || fail "cycle $c: a's daemon did not log its unmount: $(logs "$C/a.log")"
	umount_lunfs "$mb" || fail "cycle $c: umount b"
	umount_lunfs "$mc" || fail "cycle $c: umount c"
	[ -z "$(keys)" ] || fail "cycle $c: PR keys left after every host unmounted: $(keys | tr '\n' ' ')"
	r=$("$PR" resv "$URL")
	[ "$r" = none ] || fail "cycle $c: reservation '$r' left after every host unmounted"
	"$BIN/fsck.lunfs" -n "$URL" >"$C/fsck.out" 2>&1 || fail "cycle $c: fsck.lunfs -n: $(cat "$C/fsck.out")"
	ok "cycle $c: a (fenced), b and c unmounted; no keys, no reservation; fsck.lunfs -n clean"
}

# The frozen daemon's own late WRITE.  gdb stops a's daemon exactly where
# a data pwrite has passed every fencing check and is about to send its
# WRITE (the residual window of docs/LOCKING.md section 4); b recovers a and
# preempts its key meanwhile; then a goes on: the target must refuse the
# WRITE, the data must not land, and the application's pwrite must fail
# with EIO like every other operation of a fenced host.
late_write() {
	local C=$T/g ma=$T/g/a mb=$T/g/b ka kb gpid wpid t0 r
	mkdir -p "$C"
	mount_lunfs "$URL" "$ma" a "log=$C/a.log,caw=auto"
	ka=$(new_key)
	mount_lunfs "$URL" "$mb" b "log=$C/b.log,caw=reserve"
	kb=$(new_key "$ka")
	python3 - "$ma/late.img" "$C" <<'EOF' 2>"$C/w.err" &
import errno, os, sys, time
path, d = sys.argv[1:]
fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
os.pwrite(fd, b"A" * 65536, 0)
os.fsync(fd)
open(os.path.join(d, "ready"), "w").close()
while not os.path.exists(os.path.join(d, "go")):
    time.sleep(0.01)
r = "ok"
try:
    os.pwrite(fd, b"Z" * 4096, 0)  # in place: a data WRITE, no metadata
    r = "fsync"
    os.fsync(fd)
    r = "ok"
except OSError as e:
    r = "%s %s" % (errno.errorcode.get(e.errno, e.errno), "pwrite" if r == "ok" else r)
open(os.path.join(d, "result"), "w").write(r + "\n")
EOF
	wpid=$!
	on_exit "kill $wpid 2>/dev/null"
	poll_for 20 "late: a writes late.img ($(cat "$C/w.err"))" test -e "$C/ready"
	poll_for 5 "late: b sees late.img" test -e "$mb/late.img"
	pida=$(daemon_of "$ma") || fail "late: no daemon for $ma"
	# stop at a's next pwrite, then at that thread's first data WRITE; hold
	# the process there until $C/release exists
	gdb_hold "$pida" "$C" 'break lunfs_pwrite' continue delete \
		'eval "break iscsi_rw thread %d if op == 2", $_thread' continue 'bt 8'
	gpid=$GDB_PID
	poll_for 10 "late: gdb attaches ($(tail -3 "$C/gdb.log"))" grep -q '^Breakpoint 1 at' "$C/gdb.log"
	touch "$C/go"
	poll_for 10 "late: a's daemon stops before its WRITE ($(tail -5 "$C/gdb.log"))" grep -q 'hit Breakpoint 2' "$C/gdb.log"
	grep -Eq 'write_range|pwrite_mapped' "$C/gdb.log" || fail "late: a stopped elsewhere than a data write: $(grep -A5 'hit Breakpoint 2' "$C/gdb.log")"
	t0=$(now_ms)
	ok "late: a's daemon (pid $pida) held by gdb in write_range -> dev_write, its pwrite past every fencing check"
	r=$(python3 -c '
import errno, os, sys, time
t0 = time.monotonic()
while True:
    try:
        fd = os.open(sys.argv[1], os.O_RDWR)
        break
    except OSError as e:
        if time.monotonic() - t0 > 20:
            print("no open:", errno.errorcode.get(e.errno)); sys.exit(1)
        time.sleep(0.1)
print(os.pread(fd, 8, 0).decode())' "$mb/late.img") || fail "late: b's O_RDWR open: $r$(diag_b "$C")"
	[ "$r" = AAAAAAAA ] || fail "late: b reads '$r' before a resumed"
	has_key "$ka" && fail "late: a's key $ka is still registered after b's recovery"
	ok "late: b recovered a and opened late.img O_RDWR $(($(now_ms) - t0)) ms later; a's key $ka is gone"
	touch "$C/release"
	wait "$gpid" || true
	poll_for 15 "late: a's pwrite returns ($(cat "$C/w.err"))" test -s "$C/result"
	r=$(python3 -c 'import sys; print(open(sys.argv[1], "rb").read(8).decode())' "$mb/late.img")
	[ "$r" = AAAAAAAA ] || fail "late: a's late WRITE landed: b reads '$r'"
	ok "late: a's late WRITE did not land (b still reads 'AAAAAAAA')"
	r=$(cat "$C/result")
	case "$r" in
	"EIO "*) ok "late: a's pwrite failed with $r" ;;
	*) fail "late: a's pwrite, whose WRITE the target refused, returned '$r' to the application, want EIO
    a log: $(logs "$C/a.log")" ;;
	esac
	umount_lunfs "$ma" || fail "late: a's daemon does not exit after umount"
	umount_lunfs "$mb" || fail "late: umount b"
	[ -z "$(keys)" ] || fail "late: PR keys left after every host unmounted: $(keys | tr '\n' ' ')"
	"$BIN/fsck.lunfs" -n "$URL" >"$C/fsck.out" 2>&1 || fail "late: fsck.lunfs -n: $(cat "$C/fsck.out")"
	ok "late: a and b unmounted; no keys; fsck.lunfs -n clean"
}

for c in $(seq "$CYCLES"); do
	cycle "$c"
done
need gdb # never skipped: make deps installs it
late_write
stop_tgtd
echo "PASS: 56-iscsi-frozen"
