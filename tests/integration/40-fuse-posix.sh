#!/bin/bash
# A real FUSE mount: POSIX behaviour (ownership, setgid rule, permissions,
# suid clearing, UTIME_NOW/OMIT, nlink and ctime, mkfifo/mknod, 255-byte
# names, symlinks up to 4095 bytes, unlink while open, readdir during
# changes, xattrs, statfs, O_DIRECT, ENOSPC); a remount keeps what it left
# (the 4095-byte symlink); then unmount and fsck clean.
. "$(dirname "$0")/lib.sh"
truncate -s 512M "$T/v.img"
"$BIN/mkfs.lunfs" -q -N 8 -J 1M "$T/v.img"
mount_lunfs "$T/v.img" "$T/mnt" posix allow_other
mkdir "$T/mnt/t"
"$TBIN/posix_check" "$T/mnt/t" --enospc | tee "$T/out"
grep -q ', 0 failed' "$T/out" || fail "POSIX checks failed"
umount_lunfs "$T/mnt" || fail "unmount"
mount_lunfs "$T/v.img" "$T/mnt" posix allow_other
"$TBIN/posix_check" "$T/mnt/t" --after-remount | tee "$T/out"
grep -q ', 0 failed' "$T/out" || fail "POSIX checks after a remount failed"
umount_lunfs "$T/mnt" || fail "unmount"
"$BIN/fsck.lunfs" -n "$T/v.img" >"$T/fsck" || fail "fsck after the POSIX run: $(cat "$T/fsck")"
ok "POSIX checks pass; fsck clean"
