#!/bin/bash
# 10-caw-file: compare-and-write is atomic across processes on an image file.
#
# Four processes each add 1 to a shared counter 2000 times, only through
# dev_caw() (caw_counter run).  They open the file first and start together
# (--go-file), so their compare-and-writes really interleave.  If CAW is
# atomic the counter ends at exactly 8000; a lost update would leave less.
set -eu

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BUILD=${BUILD:-$ROOT/build}
CAW=$BUILD/tests/caw_counter
PROCS=4
EACH=2000
OFF=4096

fail() { echo "FAIL: $*"; exit 1; }

TMP=$(mktemp -d /tmp/lunfs-it10.XXXXXX)
PIDS=()
cleanup() {
	for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
	for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
	rm -rf "$TMP"
}
trap cleanup EXIT
trap 'echo "FAIL: interrupted"; exit 1' INT TERM HUP

[ -x "$CAW" ] || fail "$CAW is not built (run make)"

# Starts PROCS runs of caw_counter on $1, waits until every one has opened
# the device, then lets them go.  Leaves the logs in $TMP/run<i>.log.
run_parallel() {
	local url=$1 n=$2 i t; shift 2
	rm -f "$TMP/go"
	PIDS=()
	for i in $(seq 1 $PROCS); do
		"$CAW" run "$url" $OFF "$n" --go-file "$TMP/go" "$@" 2>"$TMP/run$i.log" &
		PIDS+=($!)
	done
	for t in $(seq 1 600); do
		local ready=0
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

truncate -s 1M "$TMP/lun.img"
"$CAW" init "$TMP/lun.img" $OFF >/dev/null || fail "caw_counter init"
[ "$("$CAW" get "$TMP/lun.img" $OFF)" = 0 ] || fail "counter does not read 0 after init"
echo "ok - 1 MiB image, counter initialised to 0"

run_parallel "$TMP/lun.img" $EACH
mode=$(sed -n 's/.*CAW mode \([a-z]*\).*/\1/p' "$TMP/run1.log")
misses=$(sed -n 's/.* \([0-9]*\) miscompares.*/\1/p' "$TMP"/run*.log | awk '{s += $1} END {print s + 0}')
echo "ok - $PROCS processes x $EACH increments finished (CAW mode $mode, $misses miscompares)"

got=$("$CAW" get "$TMP/lun.img" $OFF)
want=$((PROCS * EACH))
[ "$got" = "$want" ] || fail "counter is $got, want $want (lost updates: CAW not atomic)"
echo "ok - counter is exactly $got"
[ "$misses" -gt 0 ] || fail "no miscompares: the processes never overlapped, the test proved nothing"
echo "ok - the processes contended ($misses miscompares retried)"
echo "PASS: 10-caw-file"
