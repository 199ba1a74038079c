#!/bin/bash
# The installed helper: `make install` lays out binaries and man pages;
# `mount -t lunfs` with host=, `umount`, an fstab line with _netdev and
# noatime,nodiratime, mount -o remount,ro/rw, a read-only mount (EROFS), the daemon exiting at umount and freeing its
# slot, and the lunfs CLI (info/hosts/locks, --json) against the live mount.
. "$(dirname "$0")/lib.sh"
make -s -C "$ROOT" install DESTDIR="$T/root" PREFIX=/usr >/dev/null || fail "make install"
for f in usr/sbin/mkfs.lunfs usr/sbin/fsck.lunfs usr/sbin/lunfs sbin/mount.lunfs sbin/mount.fuse.lunfs \
	usr/share/man/man8/mount.lunfs.8 usr/share/man/man8/lunfs.8 usr/include/lunfs/lunfs.h; do
	[ -e "$T/root/$f" ] || fail "make install did not install $f"
done
ok "make install honours DESTDIR and PREFIX; mount.lunfs in /sbin"
# mount(8) runs /sbin/mount.lunfs: put ours there for the test
if [ -e /sbin/mount.lunfs ] && ! cmp -s /sbin/mount.lunfs "$BIN/mount.lunfs"; then
	cp -p /sbin/mount.lunfs "$T/saved-helper"
	on_exit "cp -p '$T/saved-helper' /sbin/mount.lunfs"
elif [ ! -e /sbin/mount.lunfs ]; then
	on_exit "rm -f /sbin/mount.lunfs"
fi
install -m 755 "$BIN/mount.lunfs" /sbin/mount.lunfs
# and /sbin/mount.fuse.lunfs, which mount(8) runs for a remount
if [ -e /sbin/mount.fuse.lunfs ] || [ -L /sbin/mount.fuse.lunfs ]; then
	cp -P /sbin/mount.fuse.lunfs "$T/saved-fuse-helper"
	on_exit "cp -P '$T/saved-fuse-helper' /sbin/mount.fuse.lunfs"
else
	on_exit "rm -f /sbin/mount.fuse.lunfs"
fi
ln -sf mount.lunfs /sbin/mount.fuse.lunfs
truncate -s 1G "$T/v.img"
"$BIN/mkfs.lunfs" -q -N 8 -J 1M -L helper "$T/v.img"
mkdir "$T/m1" "$T/m2"
on_exit "umount_lunfs '$T/m1'"
on_exit "umount_lunfs '$T/m2'"
mount -t lunfs "$T/v.img" "$T/m1" -o host=esx01 || fail "mount -t lunfs"
grep -q " $T/m1 fuse.lunfs " /proc/mounts || fail "not in /proc/mounts"
echo vm >"$T/m1/vm.vmx"
exec 7>>"$T/m1/vm.vmx" # hold it open read-write: an exclusive lock
ok "mount -t lunfs -o host=esx01"
# the CLI reads while the volume is mounted
"$BIN/lunfs" info "$T/v.img" --json | python3 -c 'import json,sys; d=json.load(sys.stdin); assert d["label"]=="helper" and d["free"]>0, d' ||
	fail "lunfs info --json"
"$BIN/lunfs" hosts "$T/v.img" --json | python3 -c '
import json,sys; d=json.load(sys.stdin); s=[x for x in d["slots"] if x["host"]=="esx01"]
assert s and s[0]["state"]=="live" and s[0]["moving"], d' || fail "lunfs hosts --json does not show esx01 live"
"$BIN/lunfs" locks "$T/v.img" /vm.vmx --json | python3 -c '
import json,sys; d=json.load(sys.stdin); l=d["locks"]
assert len(l)==1 and l[0]["mode"]=="exclusive" and l[0]["holders"][0]["host"]=="esx01" and l[0]["holders"][0]["open"], d' ||
	fail "lunfs locks does not name esx01 as the holder"
"$BIN/lunfs" locks "$T/v.img" | grep -q 'esx01(slot' || fail "lunfs locks text"
ok "lunfs info/hosts/locks (--json) on a mounted volume"
# a second host: its read-write open of esx01's open disk fails with EBUSY
mount -t lunfs "$T/v.img" "$T/m2" -o host=esx02 || fail "second host mount"
[ "$(cat "$T/m2/vm.vmx")" = vm ] || fail "second host reads"
( exec 6>>"$T/m2/vm.vmx" ) 2>"$T/err" && fail "second host opened a disk held read-write by the first"
grep -q 'busy' "$T/err" || fail "second host's open: $(cat "$T/err"), want EBUSY"
ok "a read-write open on host esx02 of a file esx01 holds open: EBUSY"
umount "$T/m2"
# fsck refuses to repair under a live host, and names it
set +e
"$BIN/fsck.lunfs" -y "$T/v.img" >"$T/out" 2>"$T/err"; rc=$?
set -e
[ $rc = 8 ] || fail "fsck -y under a live host: exit $rc, want 8"
grep -q 'esx01' "$T/out" "$T/err" && grep -q 'refusing to repair' "$T/err" ||
	fail "fsck -y under a live host: $(cat "$T/out" "$T/err")"
ok "fsck -y refuses while host esx01 is live, and names it"
exec 7>&-
umount "$T/m1" || fail "umount"
for _ in $(seq 100); do pgrep -f "mount.lunfs .*$T/m1" >/dev/null || break; sleep 0.1; done
pgrep -f "mount.lunfs .*$T/m1" >/dev/null && fail "daemon still running after umount"
"$BIN/lunfs" hosts "$T/v.img" | grep -q 'live' && fail "slot still live after umount"
ok "umount: the daemon exits and frees its slot"
# fstab with _netdev and the atime options
printf '%s %s lunfs _netdev,noatime,nodiratime,host=esx02 0 0\n' "$T/v.img" "$T/m2" >"$T/fstab"
mount -T "$T/fstab" "$T/m2" || fail "mount from fstab"
[ "$(cat "$T/m2/vm.vmx")" = vm ] || fail "data through the fstab mount"
grep -q " $T/m2 fuse.lunfs rw,.*noatime" /proc/mounts || fail "noatime not in /proc/mounts"
ok "fstab line with _netdev,noatime,nodiratime"
# mount -o remount: mount(8) runs /sbin/mount.fuse.lunfs
mount -o remount,ro "$T/m2" || fail "mount -o remount,ro"
grep -q " $T/m2 fuse.lunfs ro," /proc/mounts || fail "not ro after remount,ro"
( echo x >"$T/m2/new" ) 2>/dev/null && fail "a write after remount,ro"
mount -o remount,rw "$T/m2" || fail "mount -o remount,rw"
echo x >"$T/m2/new" || fail "a write after remount,rw"
rm "$T/m2/new"
umount "$T/m2"
ok "mount -o remount,ro and remount,rw"
# read-only
mount -t lunfs "$T/v.img" "$T/m2" -o ro,host=esx03 || fail "ro mount"
set +e
( echo x >"$T/m2/new" ) 2>"$T/err"
rc=$?
set -e
[ $rc != 0 ] && grep -qi 'read-only' "$T/err" || fail "write on a ro mount: $(cat "$T/err")"
[ "$(cat "$T/m2/vm.vmx")" = vm ] || fail "read on a ro mount"
umount "$T/m2"
ok "ro mount reads and refuses writes with EROFS"
"$BIN/fsck.lunfs" -n "$T/v.img" >"$T/out" || fail "fsck: $(cat "$T/out")"
ok "fsck clean"
