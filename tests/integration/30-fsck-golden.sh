#!/bin/bash
# Golden damaged images: for every named corruption, fsck -n reports it and
# writes nothing (exit 4), fsck -y repairs it with exactly the expected
# problem codes (exit 1), a second run is clean (exit 0), and the repaired
# volume mounts and reads back.
. "$(dirname "$0")/lib.sh"
FSCK="$BIN/fsck.lunfs"
GOLD="$ROOT/tests/golden/fsck-codes.txt"
"$TBIN/fsimg" make "$T/base.img"
"$FSCK" -n "$T/base.img" >"$T/out" || fail "fresh populated volume not clean: $(cat "$T/out")"
n=0
for kind in $("$TBIN/fsimg" kinds); do
	want=$(sed -n "s/^$kind: //p" "$GOLD")
	[ -n "$want" ] || fail "$kind: no expected codes in $GOLD"
	img="$T/$kind.img"
	cp --sparse=always "$T/base.img" "$img"
	"$TBIN/fsimg" corrupt "$img" "$kind" || fail "$kind: could not apply"
	sum=$(md5sum <"$img")
	set +e
	"$FSCK" -n "$img" >"$T/n.out" 2>&1; rn=$?
	set -e
	[ $rn = 4 ] || fail "$kind: fsck -n exit $rn, want 4: $(cat "$T/n.out")"
	[ "$(md5sum <"$img")" = "$sum" ] || fail "$kind: fsck -n changed the image"
	set +e
	"$FSCK" -y "$img" >"$T/y.out" 2>&1; ry=$?
	set -e
	got=$(grep -o '^  \[[A-Z_]*\]' "$T/y.out" | tr -d ' []' | sort -u | tr '\n' ' ' | sed 's/ $//')
	[ $ry = 1 ] || fail "$kind: fsck -y exit $ry, want 1: $(cat "$T/y.out")"
	[ "$got" = "$want" ] || fail "$kind: codes '$got', want '$want'"
	"$FSCK" -n "$img" >"$T/n2.out" 2>&1 || fail "$kind: second run not clean: $(cat "$T/n2.out")"
	"$TBIN/fsimg" check "$img" || fail "$kind: repaired volume does not read back"
	"$FSCK" -n "$img" >"$T/n3.out" 2>&1 || fail "$kind: not clean after mount: $(cat "$T/n3.out")"
	ok "$kind: $got"
	n=$((n + 1))
	rm -f "$img"
done
[ $n -ge 12 ] || fail "only $n corruption kinds"
echo "fsck golden images: $n kinds repaired, all second runs clean"
