#!/bin/bash
# Crash consistency: a workload of create, write+fsync, rename, unlink, mkdir,
# truncate, fallocate and xattr runs on the faulty device, which cuts power
# after write k, for every k (then again keeping random parts of the cache),
# at least 2000 cut points.  After each: mount (replays), fsck -n clean, and
# every file holds what was durable.  The image lives on a tmpfs the test
# mounts (fdatasync there is free, so the many cut points stay quick).
. "$(dirname "$0")/lib.sh"
mkdir "$T/mnt"
mount -t tmpfs -o size=2G tmpfs "$T/mnt" || fail "cannot mount tmpfs (run as root)"
on_exit "umount '$T/mnt'"
truncate -s 256M "$T/mnt/crash.img"
"$TBIN/crashtest" "$T/mnt/crash.img" 2000 "$BIN/fsck.lunfs" | tee "$T/out"
line=$(grep 'crash states checked' "$T/out") || fail "no summary"
n=$(echo "$line" | awk '{print $2}')
echo "$line" | grep -q ', 0 failed' || fail "$line"
[ "$n" -ge 2000 ] || fail "only $n crash states"
ok "$n crash states checked, none failed"
