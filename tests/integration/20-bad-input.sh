#!/bin/bash
# Bad input: a truncated device, a wrong magic, a bad checksum and an unknown
# version each give a one-line error and a non-zero exit, never a crash.
. "$(dirname "$0")/lib.sh"
MKFS="$BIN/mkfs.lunfs" FSCK="$BIN/fsck.lunfs"
mk() { truncate -s 512M "$1"; "$MKFS" -q -N 4 -J 1M "$1"; }
# poke FILE OFFSET HEX: write bytes at an offset
poke() { printf "$3" | dd of="$1" bs=1 seek="$2" conv=notrunc status=none; }

# a healthy volume checks clean
mk "$T/good.img"
"$FSCK" -n "$T/good.img" >/dev/null || fail "fresh volume not clean"
ok "fresh volume is clean"

# truncated device: the volume says it is larger than the device
mk "$T/trunc.img"
truncate -s 300M "$T/trunc.img"
expect_fail 8 "smaller than the volume|truncated" "$FSCK" -n "$T/trunc.img"

# wrong magic in both copies: not a lunfs volume
mk "$T/magic.img"
poke "$T/magic.img" 8 'XXXX'
poke "$T/magic.img" $((512*1024*1024 - 4096 + 8)) 'XXXX'
expect_fail 8 "bad magic" "$FSCK" -n "$T/magic.img"

# bad checksum in both copies
mk "$T/csum.img"
poke "$T/csum.img" 300 '\xff'
poke "$T/csum.img" $((512*1024*1024 - 4096 + 300)) '\xff'
expect_fail 8 "checksum" "$FSCK" -n "$T/csum.img"

# bad checksum in the primary only: fsck -n reports it (exit 4), -y repairs
# it from the backup (exit 1), and a second run is clean (exit 0)
mk "$T/prim.img"
poke "$T/prim.img" 300 '\xff'
set +e
"$FSCK" -n "$T/prim.img" >"$T/out" 2>&1; rc=$?
set -e
[ $rc = 4 ] || fail "fsck -n on a damaged primary: exit $rc, want 4"
grep -q 'would rewrite it from the backup' "$T/out" || fail "fsck -n did not say what it would do"
set +e
"$FSCK" -y "$T/prim.img" >"$T/out" 2>&1; rc=$?
set -e
[ $rc = 1 ] || fail "fsck -y: exit $rc, want 1: $(cat "$T/out")"
"$FSCK" -n "$T/prim.img" >/dev/null || fail "second fsck not clean"
ok "primary superblock repaired from the backup, second run clean"

# unknown version (checksum made right, so it is not mere damage)
mk "$T/ver.img"
python3 - "$T/ver.img" <<'PY'
import sys, struct, subprocess
p = sys.argv[1]
with open(p, 'r+b') as f:
    b = bytearray(f.read(4096))
    b[12:14] = struct.pack('<H', 7)
    f.seek(0); f.write(b)
PY
"$TBIN/restamp" "$T/ver.img" 0
expect_fail 8 "unknown lunfs format version" "$FSCK" -n "$T/ver.img"

# not a volume at all, an empty file, a missing file, a bad option
truncate -s 64M "$T/zero.img"
expect_fail 8 "bad magic" "$FSCK" -n "$T/zero.img"
: >"$T/empty.img"
expect_fail 8 "too small" "$FSCK" -n "$T/empty.img"
expect_fail 8 "No such file" "$FSCK" -n "$T/missing.img"
expect_fail 16 "usage" "$FSCK" -n -y "$T/good.img"

# mkfs refuses nonsense with one line each
expect_fail 1 "too small.*at least" "$MKFS" -q "$T/zero.img"
expect_fail 2 "bad file block size" "$MKFS" -q -b 3Q "$T/zero.img"
expect_fail 2 "power of two" "$MKFS" -q -b 3M -N 4 -J 1M "$T/zero.img"
expect_fail 2 "bad host count" "$MKFS" -q -N 0 "$T/zero.img"
expect_fail 2 "lease" "$MKFS" -q -N 4 -J 1M --lease-ms 1000 --heartbeat-ms 1000 "$T/zero.img"
# every option out of its range is a usage error (2), like one that does not parse
for a in "-b 1G" "-N 5000" "-J 100" "-J 1T" "-I 10" "-I 99999999" "--lease-ms 99999999" "--heartbeat-ms 10" "-L $(printf "x%.0s" $(seq 70))"; do
	# shellcheck disable=SC2086
	expect_fail 2 "." "$MKFS" -q $a "$T/zero.img"
done
expect_fail 1 "already holds a lunfs volume" "$MKFS" -q -N 4 -J 1M "$T/good.img"
mkfs.ext4 -q -F "$T/zero.img" >/dev/null 2>&1 || fail "mkfs.ext4 missing"
expect_fail 1 "type ext4" "$MKFS" -q -N 4 -J 1M "$T/zero.img"
"$MKFS" -q -f -N 4 -J 1M "$T/zero.img" || fail "mkfs -f over ext4"
ok "mkfs -f overwrites ext4"
echo "bad input: all checks passed"
