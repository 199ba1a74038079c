#!/bin/bash
# make demo: the main job on the embedded default (an image file as the LUN).
# 1. create a volume  2. mount it  3. a VM folder with a thin 10 GiB disk,
# written into  4. lunfs info, hosts, locks  5. unmount and fsck.
# Cleans up after itself, also when interrupted.
set -eu
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN="$ROOT/build/bin"
DIR=$(mktemp -d /tmp/lunfs-demo.XXXXXX)
IMG="$DIR/lun0.img"
MNT="$DIR/datastore"
PID=
cleanup() {
	set +e
	exec 7>&- 2>/dev/null
	if grep -q " $MNT fuse.lunfs " /proc/mounts; then umount "$MNT"; fi
	[ -n "$PID" ] && wait "$PID" 2>/dev/null
	rm -rf "$DIR"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
step() { printf '\n== %s\n' "$*"; }
start=$(date +%s)

step "1. a 4 GiB LUN as a sparse image file, and mkfs.lunfs"
truncate -s 4G "$IMG"
"$BIN/mkfs.lunfs" -L demo-datastore "$IMG"

step "2. mount it as host esx01: mount.lunfs $IMG $MNT -o host=esx01"
mkdir "$MNT"
"$BIN/mount.lunfs" "$IMG" "$MNT" -f -o host=esx01 &
PID=$!
for _ in $(seq 100); do grep -q " $MNT fuse.lunfs " /proc/mounts && break; sleep 0.1; done
grep " $MNT " /proc/mounts

step "3. a VM folder with a thin 10 GiB disk, written into"
mkdir "$MNT/vm01"
truncate -s 10G "$MNT/vm01/vm01-flat.vmdk"
printf 'displayName = "vm01"\nscsi0:0.fileName = "vm01-flat.vmdk"\n' >"$MNT/vm01/vm01.vmx"
dd if=/dev/urandom of="$MNT/vm01/vm01-flat.vmdk" bs=1M count=32 seek=100 conv=notrunc oflag=direct status=none
sum=$(dd if="$MNT/vm01/vm01-flat.vmdk" bs=1M count=32 skip=100 iflag=direct status=none | md5sum)
ls -ls "$MNT/vm01"
du -h --apparent-size "$MNT/vm01/vm01-flat.vmdk"; du -h "$MNT/vm01/vm01-flat.vmdk"
echo "(thin: 10 GiB apparent, 32 MiB allocated)"
exec 7>>"$MNT/vm01/vm01-flat.vmdk" # the "VM" holds its disk open read-write

step "4. lunfs info / hosts / locks (they only read the LUN)"
"$BIN/lunfs" info "$IMG"
echo
"$BIN/lunfs" hosts "$IMG"
echo
"$BIN/lunfs" locks "$IMG"

step "5. unmount, then fsck.lunfs"
exec 7>&-
umount "$MNT"
wait "$PID"
PID=
"$BIN/fsck.lunfs" -n "$IMG"
"$BIN/mount.lunfs" "$IMG" "$MNT" -f -o host=esx01,ro &
PID=$!
for _ in $(seq 100); do grep -q " $MNT fuse.lunfs " /proc/mounts && break; sleep 0.1; done
[ "$(dd if="$MNT/vm01/vm01-flat.vmdk" bs=1M count=32 skip=100 iflag=direct status=none | md5sum)" = "$sum" ]
echo "the disk's data reads back after the remount"
umount "$MNT"
wait "$PID"
PID=
printf '\n== demo done in %s s (everything under %s removed)\n' "$(( $(date +%s) - start ))" "$DIR"
