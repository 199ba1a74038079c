#!/bin/bash
# mount.lunfs options: every bad one is a one-line error naming it, exit 2,
# before anything is written to the volume; relative device and log paths;
# the daemon lets go of the caller's stdin/stdout/stderr (`| tee` ends).
. "$(dirname "$0")/lib.sh"
mkfs_multi "$T/v.img" 1G -N 8
mkdir "$T/m1"
before=$(stat -c %Y.%y "$T/v.img")
for o in linger_ms=-5 linger_ms=abc linger_ms=99999999999999 caw=maybe pr=maybe bogusopt=3 host= \
	recovery_pause_ms=x open_wait_ms=-1 open_wait_ms=600001; do
	name=${o%%=*}
	expect_fail 2 "$name" "$BIN/mount.lunfs" "$T/v.img" "$T/m1" -o "host=esx01,$o"
done
expect_fail 2 "unknown option -x" "$BIN/mount.lunfs" "$T/v.img" "$T/m1" -x
expect_fail 2 "host=.*1 to 64" "$BIN/mount.lunfs" "$T/v.img" "$T/m1" -o "host=$(printf 'h%.0s' $(seq 65))"
[ "$(stat -c %Y.%y "$T/v.img")" = "$before" ] || fail "a refused mount wrote to the volume"
slots_free "$T/v.img"
grep -q " $T/m1 " /proc/mounts && fail "a refused mount mounted"
ok "bad options refused before the volume is touched"
# relative DEVICE and log=FILE, resolved against the caller's cwd; the
# daemon's stdio is not the caller's, so a pipe through tee ends
cd "$T"
on_exit "umount_lunfs '$T/m1'"
timeout 30 bash -c "'$BIN/mount.lunfs' v.img m1 -o host=esx01,log=rel.log 2>&1 | tee tee.out" ||
	fail "mount.lunfs ... | tee did not return (exit $?)"
grep -q " $T/m1 fuse.lunfs " /proc/mounts || fail "relative mount not mounted"
grep -q "^$T/v.img $T/m1 " /proc/mounts || fail "fsname is not the absolute device path: $(grep m1 /proc/mounts)"
pid=$(python3 -c 'import os,sys; print(os.getxattr(sys.argv[1], "trusted.lunfs.daemon_pid").decode())' "$T/m1")
for fd in 0 1 2; do
	t=$(readlink "/proc/$pid/fd/$fd")
	case "$t" in /dev/null|"$T/rel.log") ;; *) fail "daemon fd $fd is $t, not /dev/null or the log" ;; esac
done
echo data >m1/f
[ "$(cat m1/f)" = data ] || fail "data through the relative mount"
grep -q "mounted on $T/m1" rel.log || fail "log=rel.log (relative) has no mount line: $(cat rel.log 2>&1)"
umount m1
poll 20 grep -q "unmounted" rel.log || fail "no unmount line in the log"
ok "relative device and log=, stdio let go (mount | tee returns)"
# -h / --version
"$BIN/mount.lunfs" --help | grep -q "usage" || fail "--help"
"$BIN/mount.lunfs" --version | grep -q "lunfs" || fail "--version"
ok "--help and --version exit 0"
