# Shared helpers for the integration scripts (sourced, not run).
set -eu
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BIN="$ROOT/build/bin"
TBIN="$ROOT/build/tests"
T=$(mktemp -d /tmp/lunfs-it.XXXXXX)
CLEANUP=""
# Register a cleanup command; all run at exit, last registered first.
on_exit() { CLEANUP="$1; $CLEANUP"; }
_cleanup() { set +e; eval "$CLEANUP"; rm -rf "$T"; }
trap _cleanup EXIT
trap 'exit 130' INT TERM
fail() { echo "FAIL: $*" >&2; exit 1; }
ok() { echo "ok: $*"; }
# expect_fail CODE WANT-REGEX CMD...: CMD must exit with CODE and print WANT on stderr in one line
expect_fail() {
	code=$1 want=$2
	shift 2
	set +e
	"$@" >"$T/out" 2>"$T/err"
	rc=$?
	set -e
	[ "$rc" = "$code" ] || fail "$*: exit $rc, want $code (stderr: $(cat "$T/err"))"
	grep -Eq "$want" "$T/err" || fail "$*: stderr lacks /$want/: $(cat "$T/err")"
	[ "$(wc -l <"$T/err")" -le 1 ] || fail "$*: error is more than one line: $(cat "$T/err")"
	ok "$(basename "$1") -> exit $rc: $(cat "$T/err")"
}
