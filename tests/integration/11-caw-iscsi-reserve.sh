#!/bin/bash
# 11-caw-iscsi-reserve: compare-and-write and persistent reservations on a
# stock tgt target (Debian package tgt).
#
# Stock tgt rejects SCSI COMPARE AND WRITE (although REPORT SUPPORTED
# OPERATION CODES lists it), so the iSCSI backend emulates it under
# RESERVE(6)/RELEASE(6).  Checks:
#   1. --caw-mode reserve: 4 initiators x 500 increments end at exactly 2000.
#   2. --caw-mode auto falls back to reserve on tgt and counts exactly too.
#   3. SCSI-3 PR, the way fencing uses them (pr_tool fence): register, reserve
#      type 5, preempt; the preempted initiator's write fails with -EFENCED
#      (RESERVATION CONFLICT),
#      its read still works.
# tgtd runs on 127.0.0.1:$PORT with its own control port, and is stopped with
# tgtadm (it ignores SIGTERM), or killed by PID if that fails.
set -eu

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BUILD=${BUILD:-$ROOT/build}
CAW=$BUILD/tests/caw_counter
PR=$BUILD/tests/pr_tool
PORT=${LUNFS_IT11_PORT:-32602}
CPORT=$PORT # tgtd control port: a UNIX socket /var/run/tgtd/socket.N
IQN=iqn.2026-11.org.lunfs:it11
URL=iscsi://127.0.0.1:$PORT/$IQN/1
PROCS=4
EACH=500
OFF=4096

fail() { echo "FAIL: $*"; exit 1; }

TMP=$(mktemp -d /tmp/lunfs-it11.XXXXXX)
PIDS=()
TGTD_PID=
cleanup() {
	for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
	for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
	if [ -n "$TGTD_PID" ] && kill -0 "$TGTD_PID" 2>/dev/null; then
		tgtadm -C $CPORT --lld iscsi --op delete --force --mode target --tid 1 >/dev/null 2>&1 || true
		tgtadm -C $CPORT --op delete --mode system >/dev/null 2>&1 || true
		for _ in $(seq 1 50); do
			kill -0 "$TGTD_PID" 2>/dev/null || break
			sleep 0.1
		done
		kill -9 "$TGTD_PID" 2>/dev/null || true
	fi
	if [ -n "$TGTD_PID" ]; then
		wait "$TGTD_PID" 2>/dev/null || true
		rm -f /var/run/tgtd/socket.$CPORT /var/run/tgtd/socket.$CPORT.lock
	fi
	rm -rf "$TMP"
}
trap cleanup EXIT
trap 'echo "FAIL: interrupted"; exit 1' INT TERM HUP

for b in "$CAW" "$PR"; do
	[ -x "$b" ] || fail "$b is not built (run make)"
done
command -v tgtd >/dev/null || fail "tgtd not found (Debian package tgt)"
command -v tgtadm >/dev/null || fail "tgtadm not found (Debian package tgt)"

# Starts PROCS runs of caw_counter on $1 with $2 increments each (more
# arguments go to every run; a run's index replaces @ in them), waits until
# every one has opened the device, then lets them go together.
run_parallel() {
	local url=$1 n=$2 i t ready=0; shift 2
	rm -f "$TMP/go"
	PIDS=()
	for i in $(seq 1 $PROCS); do
		"$CAW" run "$url" $OFF "$n" --go-file "$TMP/go" "${@//@/$i}" 2>"$TMP/run$i.log" &
		PIDS+=($!)
	done
	for t in $(seq 1 600); do
		ready=0
		for i in $(seq 1 $PROCS); do
			grep -q "CAW mode" "$TMP/run$i.log" && ready=$((ready + 1))
			kill -0 "${PIDS[$((i - 1))]}" 2>/dev/null ||
				grep -q "CAW mode" "$TMP/run$i.log" ||
				fail "run $i died before starting: $(cat "$TMP/run$i.log")"
		done
		[ $ready = $PROCS ] && break
		sleep 0.1
	done
	[ $ready = $PROCS ] || fail "only $ready of $PROCS runs opened the device within 60 s"
	touch "$TMP/go"
	for i in $(seq 1 $PROCS); do
		wait "${PIDS[$((i - 1))]}" || fail "run $i failed: $(cat "$TMP/run$i.log")"
	done
	PIDS=()
}

# Every run must report CAW mode $1.
check_mode() {
	local i m
	for i in $(seq 1 $PROCS); do
		m=$(sed -n 's/.*CAW mode \([a-z]*\).*/\1/p' "$TMP/run$i.log")
		[ "$m" = "$1" ] || fail "run $i used CAW mode '$m', want $1"
	done
}

misses() {
	sed -n 's/.* \([0-9]*\) miscompares.*/\1/p' "$TMP"/run*.log | awk '{s += $1} END {print s + 0}'
}

# One counter round: init, PROCS x EACH increments, exact total.
counter_round() {
	local mode=$1 want_mode=$2 got m
	"$CAW" init "$URL" $OFF >/dev/null || fail "caw_counter init over iSCSI"
	run_parallel "$URL" $EACH --caw-mode "$mode" --initiator "iqn.2026-11.org.lunfs:it11-$mode-@"
	check_mode "$want_mode"
	m=$(misses)
	got=$("$CAW" get "$URL" $OFF) || fail "caw_counter get"
	[ "$got" = $((PROCS * EACH)) ] ||
		fail "--caw-mode $mode: counter is $got, want $((PROCS * EACH)) (CAW not atomic)"
	echo "ok - --caw-mode $mode: CAW mode $want_mode, $PROCS initiators x $EACH increments = $got exactly ($m miscompares retried)"
	[ "$m" -gt 0 ] || fail "--caw-mode $mode: no miscompares, the runs never overlapped"
}

# ---- start tgtd ----------------------------------------------------------
if tgtadm -C $CPORT --op show --mode system >/dev/null 2>&1; then
	fail "a tgtd already listens on control port $CPORT"
fi
if (exec 3<>/dev/tcp/127.0.0.1/$PORT) 2>/dev/null; then
	fail "127.0.0.1:$PORT is already in use"
fi
truncate -s 64M "$TMP/lun.img"
tgtd -f --iscsi portal=127.0.0.1:$PORT -C $CPORT >"$TMP/tgtd.log" 2>&1 &
TGTD_PID=$!
for _ in $(seq 1 100); do
	tgtadm -C $CPORT --op show --mode system >/dev/null 2>&1 && break
	kill -0 $TGTD_PID 2>/dev/null || fail "tgtd exited: $(cat "$TMP/tgtd.log")"
	sleep 0.1
done
tgtadm -C $CPORT --lld iscsi --op new --mode target --tid 1 -T $IQN
tgtadm -C $CPORT --lld iscsi --op new --mode logicalunit --tid 1 --lun 1 -b "$TMP/lun.img"
tgtadm -C $CPORT --lld iscsi --op bind --mode target --tid 1 -I ALL
echo "ok - tgtd (pid $TGTD_PID) on 127.0.0.1:$PORT, $IQN LUN 1: 64 MiB file"

# ---- 1, 2: counters --------------------------------------------------------
counter_round reserve reserve
counter_round auto reserve

# ---- 3: persistent reservations ------------------------------------------
if ! "$PR" fence "$URL" iqn.2026-11.org.lunfs:it11-a iqn.2026-11.org.lunfs:it11-b >"$TMP/pr.log" 2>&1; then
	sed 's/^/    /' "$TMP/pr.log"
	fail "persistent reservation checks"
fi
sed 's/^/    /' "$TMP/pr.log"
echo "ok - persistent reservations: register, reserve type 5, preempt, -EFENCED on the preempted write"

# ---- 4: mkfs.lunfs and fsck.lunfs on an iscsi:// URL -----------------------
# (PR fencing above left no reservation behind: A unregistered)
LBIN="$(cd "$(dirname "$0")/../.." && pwd)/build/bin"
"$LBIN/mkfs.lunfs" -q -f -N 4 -J 1M -L iscsi "$URL" || fail "mkfs.lunfs on $URL"
"$LBIN/fsck.lunfs" -n "$URL" >"$TMP/fsck.log" 2>&1 || fail "fsck.lunfs on $URL: $(cat "$TMP/fsck.log")"
"$LBIN/lunfs" info "$URL" | grep -q 'label:           iscsi' || fail "lunfs info on $URL"
echo "ok - mkfs.lunfs, fsck.lunfs and lunfs info on $URL"
echo "PASS: 11-caw-iscsi-reserve"
