# bench/lib.sh: what bench/fuse.sh and bench/nbd.sh share; sourced after
# they set BENCH_NAME and defined cleanup.  Stderr is kept on fd 3 for the
# traps (the scripts' stderr may be redirected to a file).
exec 3>&2
trap 'cleanup 2>&3' EXIT
trap 'echo "$BENCH_NAME: interrupted; cleaning up" >&3; cleanup 2>&3; trap - EXIT; exit 130' INT TERM HUP

fail() {
	echo "$BENCH_NAME: $*" >&2
	exit 1
}

# bg LIMIT CMD...: in the background (so that a signal reaches the trap at
# once), killed after LIMIT seconds
bg() {
	limit=$1
	shift
	timeout -s TERM -k 10 "$limit" "$@" &
	CHILD=$!
	wait "$CHILD"
	rc=$?
	CHILD=
	return $rc
}

# prefill_bs FILE BYTES BS_MIB: FILE written in full with O_DIRECT writes of
# BS_MIB MiB, then fsync
prefill_bs() {
	bg 900 dd if=/dev/zero of="$1" bs=${3}M count=$(($2 / MIB / $3)) oflag=direct conv=notrunc,fsync status=none
}
