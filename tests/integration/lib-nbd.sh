# Sourced by the tests of the NBD export (after lib.sh): the plugin of this
# build, and nbdkit serving one file of a volume.
PLUGIN="$ROOT/build/lib/nbdkit-lunfs-plugin.so"
[ -n "${LUNFS_BUILD:-}" ] && PLUGIN="$LUNFS_BUILD/lib/nbdkit-lunfs-plugin.so"
[ -f "$PLUGIN" ] || fail "$PLUGIN not built"
# what start_export serves: the volume image and the file in it
# (EXPORT_FILTERS: nbdkit options before the plugin, e.g. --filter=exitlast)
EXPORT_IMG=${EXPORT_IMG:-$T/v.img}
EXPORT_FILE=${EXPORT_FILE:-/vm01/disk.img}

# start_export NAME HOST [PARAM...]: nbdkit in the foreground (in the
# background of this shell) on $T/NAME.sock; waits for the socket.  The
# cleanup stops it (by its PID) if the test has not.
start_export() {
	local name=$1 host=$2
	shift 2
	nbdkit -U "$T/$name.sock" --foreground -v ${EXPORT_FILTERS:-} "$PLUGIN" "$EXPORT_IMG" "file=$EXPORT_FILE" "host=$host" "$@" \
		>"$T/$name.log" 2>&1 &
	eval "PID_$name=$!"
	on_exit "stop_export $name"
	poll 20 test -S "$T/$name.sock" || fail "nbdkit $name did not listen: $(tail -5 "$T/$name.log")"
}
# stop_export NAME: SIGTERM to that nbdkit, and its exit status must be 0
# (the plugin closed the file and unmounted cleanly).
stop_export() {
	local pid
	eval "pid=\${PID_$1:-}"
	[ -n "$pid" ] || return 0
	eval "PID_$1="
	kill "$pid" 2>/dev/null
	wait "$pid" || { echo "nbdkit $1 exited $?: $(tail -5 "$T/$1.log")" >&2; return 1; }
}
uri() { echo "nbd+unix:///?socket=$T/$1.sock"; }
