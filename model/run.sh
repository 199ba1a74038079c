#!/bin/sh
# model/run.sh BUILD-DIR: checks model/lunfs.pml with Spin in every
# configuration (docs/MODEL.md).  The correct ones must show no error; the
# residual window of the file backend and every seeded bug must be found
# (a model that can no longer see them checks nothing).  One line each;
# exit 1 on any surprise.
set -eu
SRC=$(cd "$(dirname "$0")" && pwd)/lunfs.pml
OUT=${1:-build/model}
mkdir -p "$OUT"
cd "$OUT"
command -v spin >/dev/null || { echo "model: spin not found (make deps installs it)" >&2; exit 1; }
bad=0
# check NAME WANT(ok|violation) SPIN-FLAGS...
check() {
	name=$1 want=$2
	shift 2
	rm -f pan pan.* _spin_nvr.tmp
	spin -a "$@" "$SRC" >spin.out 2>&1 || { echo "model: $name: spin failed: $(cat spin.out)"; bad=1; return; }
	cc -O0 -w -DSAFETY -o pan pan.c || { echo "model: $name: cc failed"; bad=1; return; }
	./pan -m100000 >pan.out 2>&1 || true
	errors=$(sed -n 's/.*errors: \([0-9]*\).*/\1/p' pan.out | head -1)
	states=$(sed -n 's/^ *\([0-9][0-9e+.]*\) states, stored.*/\1/p' pan.out | head -1)
	what=$(grep -m1 -oE 'assertion violated.*|invalid end state' pan.out || true)
	if [ -z "$errors" ]; then
		echo "model: $name: no result: $(tail -3 pan.out)"
		bad=1
	elif [ "$want" = ok ] && [ "$errors" = 0 ]; then
		echo "model: $name: 0 errors, $states states, search complete (ok)"
	elif [ "$want" = violation ] && [ "$errors" != 0 ]; then
		echo "model: $name: found: $what (ok, expected)"
	else
		echo "model: $name: $errors error(s), want $want: $what (FAIL)"
		bad=1
	fi
}
check "correct, peer recovery, no window" ok
check "correct, same identity remounting, no window" ok -DREMOUNT
check "correct, peer recovery, window, PR barrier" ok -DWINDOW -DBARRIER
check "correct, remount, window, PR barrier" ok -DWINDOW -DBARRIER -DREMOUNT
check "residual window: file backend, peer" violation -DWINDOW
check "residual window: file backend, remount" violation -DWINDOW -DREMOUNT
check "bug NO_GUARD" violation -DNO_GUARD
check "bug REMOUNT_NO_FENCE" violation -DWINDOW -DBARRIER -DREMOUNT -DREMOUNT_NO_FENCE
check "bug FSCK_NO_CLAIM" violation -DFSCK_NO_CLAIM
check "bug NO_BREAK" violation -DNO_BREAK
check "bug DAMAGED_AS_FREE" violation -DDAMAGED_AS_FREE
[ $bad = 0 ] && echo "model: 11 configurations as expected" || echo "model: FAILED"
exit $bad
