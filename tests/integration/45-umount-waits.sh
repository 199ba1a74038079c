#!/bin/bash
# umount returns only after the daemon has checkpointed and released its
# locks and its heartbeat slot: umount(8) runs /sbin/umount.fuse.lunfs (a
# link to mount.lunfs), which waits for the daemon to exit.  The daemon is
# made slow to unmount (unmount_pause_ms, a test hook), so a umount that
# returned early would leave fsck -y facing a live host (exit 8).
. "$(dirname "$0")/lib.sh"
for f in mount.lunfs umount.fuse.lunfs; do
	if [ -e "/sbin/$f" ] || [ -L "/sbin/$f" ]; then
		cp -P "/sbin/$f" "$T/saved-$f"
		on_exit "rm -f '/sbin/$f'; cp -P '$T/saved-$f' '/sbin/$f'"
	else
		on_exit "rm -f '/sbin/$f'"
	fi
done
install -m 755 "$BIN/mount.lunfs" /sbin/mount.lunfs
ln -sf mount.lunfs /sbin/umount.fuse.lunfs
mkfs_multi "$T/v.img" 1G -N 8
mkdir "$T/m"
on_exit "umount_lunfs '$T/m'"
# the control: umount -i skips the helper, returns at once, and fsck -y
# finds the host still live
mount -t lunfs "$T/v.img" "$T/m" -o host=esx01,unmount_pause_ms=1500 || fail "mount"
umount -i "$T/m"
set +e
"$BIN/fsck.lunfs" -y "$T/v.img" >"$T/out" 2>&1; rc=$?
set -e
[ $rc = 8 ] || fail "control: fsck -y right after umount -i: exit $rc, want 8: $(cat "$T/out")"
sleep 2
ok "control: without the helper, fsck -y right after umount finds a live host (exit 8)"
pass=0
for i in $(seq 20); do
	mount -t lunfs "$T/v.img" "$T/m" -o host=esx01,unmount_pause_ms=300 || fail "mount $i"
	mkdir "$T/m/d$i"
	for j in 1 2 3 4 5; do echo "$i.$j" >"$T/m/d$i/f$j"; done
	set +e
	umount "$T/m" && "$BIN/fsck.lunfs" -y "$T/v.img" >"$T/out" 2>&1; rc=$?
	set -e
	[ $rc = 0 ] || fail "round $i: umount && fsck.lunfs -y: exit $rc: $(cat "$T/out")"
	pass=$((pass + 1))
done
ok "umount && fsck.lunfs -y: $pass/20 exit 0"
# the daemon is gone when umount returns, and so is its slot
mount -t lunfs "$T/v.img" "$T/m" -o host=esx01 || fail "mount"
pid=$(python3 -c 'import os,sys; print(os.getxattr(sys.argv[1], "trusted.lunfs.daemon_pid").decode())' "$T/m")
[ -d "/proc/$pid" ] || fail "daemon PID $pid from the xattr is not running"
umount "$T/m"
[ -s "/proc/$pid/cmdline" ] && fail "daemon $pid still runs after umount returned" # (a zombie has no cmdline)
slots_free "$T/v.img"
ok "after umount: daemon $pid exited, every slot free"
