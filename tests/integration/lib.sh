# Shared helpers for the integration scripts (sourced, not run).
set -eu
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BIN="$ROOT/build/bin"
TBIN="$ROOT/build/tests"
T=$(mktemp -d /tmp/lunfs-it.XXXXXX)
chmod 755 "$T" # tests drop to other users inside
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

# mount_lunfs IMG DIR HOST [extra -o options]: mounts with the daemon in the
# background (mount.lunfs forks like it does for mount(8)); the cleanup
# unmounts and waits for the daemon to exit.
mount_lunfs() {
	mkdir -p "$2"
	"$BIN/mount.lunfs" "$1" "$2" -o "host=$3${4:+,$4}" || fail "mount.lunfs $1 $2"
	on_exit "umount_lunfs '$2'"
	grep -q " $2 fuse.lunfs " /proc/mounts || fail "$2 is not mounted"
}
# umount_lunfs DIR: unmounts and waits (up to 20 s) for the daemon to exit.
umount_lunfs() {
	grep -q " $1 fuse.lunfs " /proc/mounts || return 0
	umount "$1" || { sleep 1; umount -l "$1"; }
	for _ in $(seq 200); do
		pgrep -f "mount.lunfs .* $1( |$)" >/dev/null || return 0
		sleep 0.1
	done
	echo "daemon for $1 did not exit" >&2
	return 1
}
