#!/bin/bash
# log=FILE lines carry timestamps, and a repeated error is written once and
# then counted: a fenced host (its daemon frozen past the lease with
# SIGSTOP) fails each write with EIO and one "returning EIO" line, which
# must not flood the log.
. "$(dirname "$0")/lib.sh"
mkfs_multi "$T/v.img" 1G -N 8
mount_lunfs "$T/v.img" "$T/m" esx01 "log=$T/a.log"
head -1 "$T/a.log" | grep -Eq '^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{3} lunfs: ' ||
	fail "log line has no timestamp: $(head -1 "$T/a.log")"
ok "log lines start with a timestamp: $(head -1 "$T/a.log")"
echo x >"$T/m/f"
pid=$(python3 -c 'import os,sys; print(os.getxattr(sys.argv[1], "trusted.lunfs.daemon_pid").decode())' "$T/m")
kill -STOP "$pid"
sleep 4.5 # past the 3 s lease
kill -CONT "$pid"
poll 10 grep -q "fenced" "$T/a.log" || true
fails=0
for i in $(seq 40); do
	mkdir "$T/m/d$i" 2>/dev/null || fails=$((fails + 1))
done
[ "$fails" -ge 30 ] || fail "only $fails of 40 mkdirs failed on a fenced host"
umount_lunfs "$T/m"
n=$(grep -c "returning EIO" "$T/a.log" || true)
grep -Eq "returning EIO.*\(repeated [0-9]+ times\)" "$T/a.log" || fail "no repeat count: $(cat "$T/a.log")"
[ "$n" -le 6 ] || fail "$n 'returning EIO' lines for $fails failures: not rate-limited: $(cat "$T/a.log")"
ok "$fails failed operations on a fenced host: $n 'returning EIO' lines, with a count: $(grep -m1 repeated "$T/a.log")"
