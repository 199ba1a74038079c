#!/bin/bash
# make demo: the main job on the embedded default (an image file as the LUN),
# mounted by three hosts at once (three mount.lunfs daemons, each with its
# own host name and mount point, sharing nothing but the LUN).
#  1. create a volume with a 3 s lease  2. mount it as esx01, esx02, esx03
#  3. esx01 runs a VM: a thin 10 GiB disk, written into and held open
#  4. the lock conflict: esx02 cannot open the disk; lunfs locks/hosts
#  5. esx01 dies (kill -9): esx02 takes the disk over, timed
#  6. live migration: esx02 hands the disk to esx03 with lunfs handoff
#  7. unmount everything and fsck
# Cleans up after itself, also when interrupted.
set -eu
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN="$ROOT/build/bin"
DIR=$(mktemp -d /tmp/lunfs-demo.XXXXXX)
IMG="$DIR/lun0.img"
HOSTS="esx01 esx02 esx03"
declare -A PID
cleanup() {
	set +e
	exec 7>&- 8>&- 2>/dev/null
	for h in $HOSTS; do
		m="$DIR/$h"
		if grep -q " $m fuse.lunfs " /proc/mounts; then umount "$m" 2>/dev/null || umount -l "$m"; fi
		[ -n "${PID[$h]:-}" ] && kill "${PID[$h]}" 2>/dev/null && wait "${PID[$h]}" 2>/dev/null
	done
	rm -rf "$DIR"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
step() { printf '\n== %s\n' "$*"; }
now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }
start=$(date +%s)
mount_host() { # mount_host NAME: a daemon in the foreground, in the background
	mkdir -p "$DIR/$1"
	"$BIN/mount.lunfs" "$IMG" "$DIR/$1" -f -o "host=$1,log=$DIR/$1.log" &
	PID[$1]=$!
	for _ in $(seq 100); do grep -q " $DIR/$1 fuse.lunfs " /proc/mounts && return; sleep 0.1; done
	echo "mount of $1 failed:" >&2
	cat "$DIR/$1.log" >&2
	exit 1
}
# try_rw FILE: 0 when a read-write open of FILE succeeds
try_rw() { (exec 9<>"$1") 2>/dev/null; }

step "1. a 4 GiB LUN as a sparse image file, and mkfs.lunfs (lease 3 s, heartbeat 0.5 s)"
truncate -s 4G "$IMG"
"$BIN/mkfs.lunfs" -L demo-datastore --lease-ms 3000 --heartbeat-ms 500 "$IMG"

step "2. three hosts mount the same LUN: mount.lunfs $IMG $DIR/HOST -o host=HOST"
for h in $HOSTS; do mount_host "$h"; done
grep " $DIR/" /proc/mounts

step "3. esx01 runs vm01: a thin 10 GiB disk, written into, held open read-write"
V1="$DIR/esx01/vm01"
mkdir "$V1"
truncate -s 10G "$V1/vm01-flat.vmdk"
printf 'displayName = "vm01"\nscsi0:0.fileName = "vm01-flat.vmdk"\n' >"$V1/vm01.vmx"
dd if=/dev/urandom of="$V1/vm01-flat.vmdk" bs=1M count=32 seek=100 conv=notrunc,fsync oflag=direct status=none
sum=$(dd if="$V1/vm01-flat.vmdk" bs=1M count=32 skip=100 iflag=direct status=none | md5sum)
exec 7<>"$V1/vm01-flat.vmdk" # the "VM" on esx01 holds its disk open read-write
for _ in $(seq 50); do [ -e "$DIR/esx03/vm01/vm01.vmx" ] && break; sleep 0.1; done
echo "esx03 sees what esx01 created:"
ls -ls "$DIR/esx03/vm01"
du -h --apparent-size "$V1/vm01-flat.vmdk"; du -h "$V1/vm01-flat.vmdk"
echo "(thin: 10 GiB apparent, 32 MiB allocated)"

step "4. the lock conflict: esx02 tries to open vm01's disk read-write"
if err=$( (exec 9<>"$DIR/esx02/vm01/vm01-flat.vmdk") 2>&1); then
	echo "esx02 opened a disk esx01 holds: the lock did not work" >&2
	exit 1
fi
echo "-> refused: ${err##*: }. esx01 holds it. What the LUN says:"
"$BIN/lunfs" locks "$IMG" /vm01/vm01-flat.vmdk
echo
"$BIN/lunfs" hosts "$IMG"

step "5. esx01 dies (kill -9 of its daemon); esx02 retries the open until it gets the disk"
t0=$(now)
kill -9 "${PID[esx01]}"
wait "${PID[esx01]}" 2>/dev/null || true
PID[esx01]=
exec 7>&-
umount -l "$DIR/esx01"
until try_rw "$DIR/esx02/vm01/vm01-flat.vmdk"; do
	if awk -v e="$(elapsed "$t0")" 'BEGIN { exit !(e > 30) }'; then
		echo "esx02 did not get the disk within 30 s" >&2
		exit 1
	fi
	sleep 0.05
done
took=$(elapsed "$t0")
exec 8<>"$DIR/esx02/vm01/vm01-flat.vmdk" # vm01 now runs on esx02
echo "-> esx02 took vm01 over $took s after esx01 died (lease 3 s; VMFS breaks locks after 16 s)"
echo "what the survivors logged:"
grep -h "recover" "$DIR/esx02.log" "$DIR/esx03.log"
[ "$(dd if="$DIR/esx02/vm01/vm01-flat.vmdk" bs=1M count=32 skip=100 iflag=direct status=none | md5sum)" = "$sum" ]
echo "every byte esx01 wrote is there"
"$BIN/lunfs" hosts "$IMG"
echo
"$BIN/lunfs" locks "$IMG" /vm01/vm01-flat.vmdk

step "6. live migration: esx02 hands vm01's disk to esx03 without closing it (lunfs handoff)"
"$BIN/lunfs" handoff "$DIR/esx02/vm01/vm01-flat.vmdk" esx03
exec 7<>"$DIR/esx03/vm01/vm01-flat.vmdk" # esx03 opens it: the lock is already its own
exec 8>&-
echo "esx03 holds it now:"
"$BIN/lunfs" locks "$IMG" /vm01/vm01-flat.vmdk
exec 7>&-

step "7. unmount everything, then fsck.lunfs"
for h in esx02 esx03; do
	umount "$DIR/$h"
	wait "${PID[$h]}"
	PID[$h]=
done
"$BIN/fsck.lunfs" -n "$IMG"
printf '\n== demo done in %s s (everything under %s removed)\n' "$(( $(date +%s) - start ))" "$DIR"
