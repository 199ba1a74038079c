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
# the same for an online grow (lunfs grow on the faulty device)
"$TBIN/crashtest" --grow "$T/mnt/grow.img" "$BIN/fsck.lunfs" | tee "$T/gout"
grep -q 'crash states checked (.*old size, [1-9][0-9]* new size), 0 failed' "$T/gout" ||
	fail "grow: $(tail -1 "$T/gout")"
ok "$n crash states checked, none failed; grow: $(tail -1 "$T/gout" | sed 's/^crashtest --grow: //')"
