#!/bin/bash
# 12-caw-iscsi-native: SCSI COMPARE AND WRITE done by the target (istgt).
#
# istgt (Debian package istgt) implements COMPARE AND WRITE atomically, so
# the iSCSI backend uses it natively.  Checks:
#   1. --caw-mode auto detects native CAW on istgt.
#   2. --caw-mode native: 4 initiators x 500 increments end at exactly 2000.
# Each istgt login takes about a second, so the runs open the LUN first and
# start together (--go-file).  istgt's PREEMPT is broken: no PR checks here.
# istgt runs in the foreground (-D) on 127.0.0.1:$PORT and is killed by PID.
set -eu

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BUILD=${BUILD:-$ROOT/build}
CAW=$BUILD/tests/caw_counter
PORT=${LUNFS_IT12_PORT:-32604}
UCPORT=$((PORT + 1)) # istgt's unit-control portal, also local only
IQN=iqn.2026-11.org.lunfs:it12
URL=iscsi://127.0.0.1:$PORT/$IQN/0
PROCS=4
EACH=500
OFF=4096

fail() { echo "FAIL: $*"; exit 1; }

TMP=$(mktemp -d /tmp/lunfs-it12.XXXXXX)
PIDS=()
ISTGT_PID=
cleanup() {
	for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
	for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
	if [ -n "$ISTGT_PID" ]; then
		kill "$ISTGT_PID" 2>/dev/null || true
		for _ in $(seq 1 50); do
			kill -0 "$ISTGT_PID" 2>/dev/null || break
			sleep 0.1
		done
		kill -9 "$ISTGT_PID" 2>/dev/null || true
		wait "$ISTGT_PID" 2>/dev/null || true
	fi
	rm -rf "$TMP"
}
trap cleanup EXIT
trap 'echo "FAIL: interrupted"; exit 1' INT TERM HUP

[ -x "$CAW" ] || fail "$CAW is not built (run make)"
ISTGT=$(command -v istgt || echo /usr/sbin/istgt)
[ -x "$ISTGT" ] || fail "istgt not found (Debian package istgt)"

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

# ---- start istgt -----------------------------------------------------------
for p in $PORT $UCPORT; do
	if (exec 3<>/dev/tcp/127.0.0.1/$p) 2>/dev/null; then
		fail "127.0.0.1:$p is already in use"
	fi
done
truncate -s 64M "$TMP/lun.img"
. "$(dirname "$0")/lib-tgt.sh"
{
	istgt_conf_head "$TMP" "$PORT" "$UCPORT"
	cat <<EOF
[LogicalUnit1]
  TargetName it12
  Mapping PortalGroup1 InitiatorGroup1
  AuthMethod None
  UseDigest Auto
  UnitType Disk
  LUN0 Storage $TMP/lun.img 64MB
EOF
} >"$TMP/istgt.conf"
"$ISTGT" -c "$TMP/istgt.conf" -D >"$TMP/istgt.log" 2>&1 &
ISTGT_PID=$!
up=0
for _ in $(seq 1 100); do
	kill -0 $ISTGT_PID 2>/dev/null || fail "istgt exited: $(cat "$TMP/istgt.log")"
	if (exec 3<>/dev/tcp/127.0.0.1/$PORT) 2>/dev/null; then
		up=1
		break
	fi
	sleep 0.1
done
[ $up = 1 ] || fail "istgt does not listen on 127.0.0.1:$PORT: $(cat "$TMP/istgt.log")"
echo "ok - istgt (pid $ISTGT_PID) on 127.0.0.1:$PORT, $IQN LUN 0: 64 MiB file"

"$CAW" init "$URL" $OFF >/dev/null || fail "caw_counter init over iSCSI"
echo "ok - counter initialised to 0"

# ---- 1: auto detects native --------------------------------------------------
"$CAW" run "$URL" $OFF 10 --caw-mode auto 2>"$TMP/auto.log" || fail "auto run: $(cat "$TMP/auto.log")"
mode=$(sed -n 's/.*CAW mode \([a-z]*\).*/\1/p' "$TMP/auto.log")
[ "$mode" = native ] || fail "--caw-mode auto chose '$mode' on istgt, want native"
got=$("$CAW" get "$URL" $OFF)
[ "$got" = 10 ] || fail "counter is $got after 10 increments"
echo "ok - --caw-mode auto chose native COMPARE AND WRITE; 10 increments = $got"

# ---- 2: native, parallel -----------------------------------------------------
"$CAW" init "$URL" $OFF >/dev/null || fail "caw_counter init over iSCSI"
run_parallel "$URL" $EACH --caw-mode native --initiator "iqn.2026-11.org.lunfs:it12-@"
for i in $(seq 1 $PROCS); do
	m=$(sed -n 's/.*CAW mode \([a-z]*\).*/\1/p' "$TMP/run$i.log")
	[ "$m" = native ] || fail "run $i used CAW mode '$m', want native"
done
misses=$(sed -n 's/.* \([0-9]*\) miscompares.*/\1/p' "$TMP"/run*.log | awk '{s += $1} END {print s + 0}')
got=$("$CAW" get "$URL" $OFF)
[ "$got" = $((PROCS * EACH)) ] || fail "counter is $got, want $((PROCS * EACH)) (CAW not atomic)"
echo "ok - --caw-mode native: $PROCS initiators x $EACH increments = $got exactly ($misses miscompares retried)"
[ "$misses" -gt 0 ] || fail "no miscompares: the runs never overlapped, the test proved nothing"
echo "PASS: 12-caw-iscsi-native"
