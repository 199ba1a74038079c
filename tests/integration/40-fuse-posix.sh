#!/bin/bash
# A real FUSE mount: POSIX behaviour (ownership, setgid rule, permissions,
# suid clearing, UTIME_NOW/OMIT, nlink and ctime, mkfifo/mknod, 255-byte
# names, symlinks up to 4095 bytes, unlink while open, readdir during
# changes, xattrs (1000 on one file), statfs, O_DIRECT, fallocate modes,
# ENOSPC); a remount
# with mount(8)'s atime options keeps what it left (a 4095-byte symlink,
# fallocated data) and reads leave atime alone; remount,ro and remount,rw;
# strictatime refused; then unmount and fsck clean.  First, mkfs -n's
# default inode count on 8 GiB.
. "$(dirname "$0")/lib.sh"
# the default inode count suits a general-purpose volume: one per MiB
truncate -s 8G "$T/big.img"
"$BIN/mkfs.lunfs" -n "$T/big.img" >"$T/geom" || fail "mkfs -n: $(cat "$T/geom")"
grep -q '^inodes: *8192 in 128 groups of 64$' "$T/geom" || fail "8 GiB volume: $(grep inodes "$T/geom")"
rm "$T/big.img"
ok "mkfs -n: 8192 inodes on 8 GiB"
truncate -s 512M "$T/v.img"
"$BIN/mkfs.lunfs" -q -N 8 -J 1M "$T/v.img"
mount_lunfs "$T/v.img" "$T/mnt" posix allow_other
mkdir "$T/mnt/t"
"$TBIN/posix_check" "$T/mnt/t" --enospc | tee "$T/out"
grep -q ', 0 failed' "$T/out" || fail "POSIX checks failed"
umount_lunfs "$T/mnt" || fail "unmount"
# mount(8)'s atime options (an fstab line); noatime reaches the kernel
mount_lunfs "$T/v.img" "$T/mnt" posix allow_other,noatime,nodiratime,relatime,lazytime
grep -q " $T/mnt fuse.lunfs rw,.*noatime" /proc/mounts || fail "noatime not in /proc/mounts: $(grep " $T/mnt " /proc/mounts)"
"$TBIN/posix_check" "$T/mnt/t" --after-remount | tee "$T/out"
grep -q ', 0 failed' "$T/out" || fail "POSIX checks after a remount failed"
# mount -o remount,ro / remount,rw: mount(8) runs the helper with these arguments
remount() {
	"$BIN/mount.lunfs" "$T/v.img" "$T/mnt" -o "$1,nosuid,nodev,noatime,remount,user_id=0,group_id=0,default_permissions,helper=lunfs" -t fuse.lunfs
}
remount ro || fail "remount,ro"
grep -q " $T/mnt fuse.lunfs ro,.*noatime" /proc/mounts || fail "not ro after remount,ro: $(grep " $T/mnt " /proc/mounts)"
( echo x >"$T/mnt/t/after-ro" ) 2>"$T/err" && fail "a write after remount,ro"
grep -qi 'read-only' "$T/err" || fail "a write after remount,ro: $(cat "$T/err"), want EROFS"
remount rw || fail "remount,rw"
grep -q " $T/mnt fuse.lunfs rw,.*noatime" /proc/mounts || fail "not rw after remount,rw: $(grep " $T/mnt " /proc/mounts)"
echo x >"$T/mnt/t/after-rw" || fail "a write after remount,rw"
ok "noatime,nodiratime,relatime,lazytime mount; remount,ro refuses writes, remount,rw allows them"
umount_lunfs "$T/mnt" || fail "unmount"
expect_fail 2 "strictatime: lunfs does not update access times" \
	"$BIN/mount.lunfs" "$T/v.img" "$T/mnt" -o host=posix,strictatime
mount_lunfs "$T/v.img" "$T/mnt" posix ro
expect_fail 1 "remount,rw: .* was mounted with ro" remount rw
umount_lunfs "$T/mnt" || fail "unmount"
"$BIN/fsck.lunfs" -n "$T/v.img" >"$T/fsck" || fail "fsck after the POSIX run: $(cat "$T/fsck")"
ok "POSIX checks pass; fsck clean"
