# Shared helpers for the integration scripts (sourced, not run).
set -eu
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BIN="$ROOT/build/bin"
TBIN="$ROOT/build/tests"
T=$(mktemp -d /tmp/lunfs-it.XXXXXX)
chmod 755 "$T" # tests drop to other users inside
CLEANUP=""
# Register a cleanup command; all run at exit, last registered first.
# LUNFS_KEEP=1 keeps $T (images, logs) after the cleanup, for a post-mortem.
on_exit() { CLEANUP="$1; $CLEANUP"; }
_cleanup() { set +e; eval "$CLEANUP"; [ -n "${LUNFS_KEEP:-}" ] && echo "kept $T" >&2 || { drop_arbiters; rm -rf "$T"; }; }
# The CAW arbiter files of the images under $T (docs/CAW-ARBITER.md): the
# last clean close removes one, a killed daemon leaves it; no daemon of the
# test runs any more when this is called.
drop_arbiters() {
	find "$T" -type f -print0 2>/dev/null | while IFS= read -r -d '' _f; do
		rm -f "/dev/shm/lunfs-caw-f-$(stat -c %D "$_f")-$(printf %x "$(stat -c %i "$_f")")"
	done
}
trap _cleanup EXIT
trap 'exit 130' INT TERM
fail() { echo "FAIL: $*" >&2; exit 1; }
# LUNFS_BUILD=DIR: the binaries of another build directory (DIR/bin and
# DIR/tests), e.g. an older tree's build, to show what a test guards.
if [ -n "${LUNFS_BUILD:-}" ]; then
	BIN=$LUNFS_BUILD/bin
	TBIN=$LUNFS_BUILD/tests
fi
# need CMD...: each command must be installed ('make deps' installs them all).
need() { for _c; do command -v "$_c" >/dev/null || fail "$_c not found (run make deps)"; done; }
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
# mount_tmpfs DIR SIZE: a tmpfs of SIZE on DIR (made), unmounted by the cleanup.
mount_tmpfs() {
	mkdir -p "$1"
	mount -t tmpfs -o "size=$2" tmpfs "$1" || fail "cannot mount tmpfs (run as root)"
	on_exit "umount '$1'"
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

# ---- helpers for the multi-host tests (50-54) ----
# mkfs_multi IMG [SIZE [MKFS-OPTIONS...]]: a sparse volume with a short
# lease (3 s), for tests that watch hosts die and get recovered.
mkfs_multi() {
	_img=$1
	truncate -s "${2:-2G}" "$_img"
	shift $(( $# < 2 ? $# : 2 ))
	"$BIN/mkfs.lunfs" -q --lease-ms 3000 --heartbeat-ms 500 -N 64 -J 1M "$@" "$_img" || fail "mkfs.lunfs $_img"
}
# now_ms: CLOCK_REALTIME in milliseconds.
now_ms() { echo $(( $(date +%s%N) / 1000000 )); }
# daemon_pid DIR: the PID of the mount.lunfs daemon serving DIR (exactly one).
daemon_pid() {
	_p=$(pgrep -f "mount.lunfs .* $1( |$)" || true)
	[ -n "$_p" ] && [ "$(echo "$_p" | wc -l)" = 1 ] || fail "daemon for $1: '$_p'"
	echo "$_p"
}
# poll SECONDS CMD...: runs CMD every 0.1 s until it succeeds (returns 0) or
# SECONDS have passed (returns 1).  POLL_MS is the time it took.
poll() {
	_lim=$(( $1 * 1000 ))
	shift
	_t0=$(now_ms)
	while :; do
		if "$@"; then
			POLL_MS=$(( $(now_ms) - _t0 ))
			return 0
		fi
		POLL_MS=$(( $(now_ms) - _t0 ))
		[ "$POLL_MS" -lt "$_lim" ] || return 1
		sleep 0.1
	done
}
# kill_daemon DIR: kill -9 of DIR's daemon (a crash), then a lazy unmount of
# the dead mount point.
kill_daemon() {
	_p=$(daemon_pid "$1")
	kill -9 "$_p"
	# gone, or a zombie (its cmdline is empty then)
	for _ in $(seq 100); do [ -s "/proc/$_p/cmdline" ] || break; sleep 0.05; done
	umount -l "$1" 2>/dev/null || true
}
# slots_free IMG [HOST...]: every used heartbeat slot (or every slot of the
# named hosts) is free; prints `lunfs hosts` and fails otherwise.
slots_free() {
	_img=$1
	shift
	"$BIN/lunfs" hosts "$_img" --json >"$T/hosts.json" || fail "lunfs hosts $_img"
	python3 - "$T/hosts.json" "$@" <<'PYEOF' || fail "slots not free: $("$BIN/lunfs" hosts "$_img")"
import json, sys
want = set(sys.argv[2:])
busy = [s for s in json.load(open(sys.argv[1]))["slots"]
        if s["state"] != "free" and (not want or s["host"] in want)]
sys.exit(1 if busy else 0)
PYEOF
}

# gdb_hold PID DIR GDB-COMMAND...: gdb attaches to PID in the background,
# runs the commands (one -ex each: breakpoints, continue, bt), then keeps
# the process stopped until DIR/release exists, and detaches.  gdb writes
# DIR/gdb.log; GDB_PID is its pid.  The cleanup releases and continues PID
# even when the test fails, so nothing stays stopped or traced.
gdb_hold() {
	local pid=$1 dir=$2 e
	shift 2
	local args=()
	for e; do args+=(-ex "$e"); done
	gdb -p "$pid" -batch -ex 'set pagination off' "${args[@]}" \
		-ex "shell while [ ! -e '$dir/release' ]; do sleep 0.05; done" -ex delete -ex detach \
		>"$dir/gdb.log" 2>&1 &
	GDB_PID=$!
	on_exit "touch '$dir/release'; sleep 0.5; kill $GDB_PID 2>/dev/null; kill -CONT $pid 2>/dev/null"
}
