#!/bin/sh
# Runs every integration test script in tests/integration/ in order and
# prints a closing "N passed, N failed" line.  Exit status 0 only if all pass.
# LUNFS_TESTS=pattern runs only scripts whose name contains pattern.
cd "$(dirname "$0")/.." || exit 1
pass=0
fail=0
failed=""
for t in tests/integration/*.sh; do
	case "$t" in */lib.sh | */lib-*.sh) continue ;; esac # helpers, sourced by the tests
	case "$t" in *"${LUNFS_TESTS:-}"*) ;; *) continue ;; esac
	name=$(basename "$t")
	echo "=== $name"
	start=$(date +%s)
	# under a subreaper: daemons a test leaves running are named and killed
	if build/tests/reaper bash "$t"; then
		pass=$((pass + 1))
		echo "--- PASS $name ($(( $(date +%s) - start ))s)"
	else
		fail=$((fail + 1))
		failed="$failed $name"
		echo "--- FAIL $name ($(( $(date +%s) - start ))s)"
	fi
done
[ -n "$failed" ] && echo "failed:$failed"
echo "integration: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
