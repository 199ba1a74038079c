#!/bin/bash
# lunfs top and lunfs hosts against two FUSE mounts of one volume (3 s
# lease, 500 ms heartbeat): bad arguments exit 2 with a one-line error;
# `lunfs top -n 3 -d 1 --json` reports both hosts live, with plausible
# numbers and a write rate for the host that writes; the text batch output
# has one line per host per iteration.  With fio writing a VM disk through
# esx02, `lunfs top -n 2 --json` lists that disk (its path) under esx02 with
# non-zero IOPS, MB/s and latency, and the text view has a disk line.  Then esx02's daemon is killed -9:
# `lunfs hosts --json` shows its slot REPLAYING by esx01 (whose recovery is
# held 2 s by the recovery_pause_ms test hook), then FREE with its name
# kept.  Last esx01 is killed too, with nobody left to recover it: `lunfs
# hosts` calls it dead after watching it stand still for a lease, and
# `lunfs top` shows it not live.
. "$(dirname "$0")/lib.sh"
L="$BIN/lunfs"
IMG="$T/v.img"
truncate -s 1G "$IMG"
"$BIN/mkfs.lunfs" -q -L toptest --lease-ms 3000 --heartbeat-ms 500 -N 16 -J 1M "$IMG" || fail "mkfs.lunfs"

# ---- bad arguments: one line on stderr, exit 2 ----
expect_fail 2 'delay' "$L" top "$IMG" -d 0
expect_fail 2 'delay' "$L" top "$IMG" -d abc
expect_fail 2 'iteration' "$L" top "$IMG" -n 0
expect_fail 2 'iteration' "$L" top "$IMG" -n 2x
expect_fail 2 'needs a value' "$L" top "$IMG" -n
expect_fail 2 'unknown option' "$L" top "$IMG" --bogus
expect_fail 2 'usage' "$L" top
expect_fail 2 'usage' "$L" top "$IMG" extra
expect_fail 2 'top only' "$L" hosts "$IMG" -n 3

# ---- two hosts; esx02 writes ----
# esx01 holds every recovery it starts for 2 s, so REPLAYING is seen
mount_lunfs "$IMG" "$T/a" esx01 "log=$T/esx01.log,recovery_pause_ms=2000"
mount_lunfs "$IMG" "$T/b" esx02 "log=$T/esx02.log"
head -c 4M /dev/urandom >"$T/rand"
(
	i=0
	while [ ! -e "$T/stop" ]; do
		dd if="$T/rand" of="$T/b/busy$((i % 4))" bs=1M conv=fsync status=none 2>/dev/null || sleep 0.1
		i=$((i + 1))
	done
) &
WRITER=$!
on_exit "touch '$T/stop'; wait $WRITER 2>/dev/null"
sleep 0.5
"$L" top "$IMG" -n 3 -d 1 --json >"$T/top.json" || fail "lunfs top --json: exit $?"
"$L" top "$IMG" -n 2 -d 0.5 >"$T/top.txt" || fail "lunfs top (text): exit $?"
touch "$T/stop"
wait $WRITER
python3 - "$T/top.json" <<'EOF' || fail "lunfs top --json: $(cat "$T/top.json")"
import json, sys
its = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
assert len(its) == 3, "%d iterations, want 3" % len(its)
rate = {"esx01": [], "esx02": []}
for n, it in enumerate(its, 1):
    assert it["iteration"] == n and it["label"] == "toptest", it
    assert it["hosts"] == 2 and it["dead"] == 0 and it["replaying"] == 0, it
    by = {s["host"]: s for s in it["slots"]}
    assert sorted(by) == ["esx01", "esx02"], by
    for s in it["slots"]:
        # renewed every 500 ms: live, or at worst silent on a loaded machine
        assert s["state"] in ("live", "silent") and 0 <= s["hb_age_ms"] < 3000, s
        assert s["hb_age_known"] or s["state"] == "silent", s
        assert s["mount_gen"] >= 1 and s["held"] >= 0 and s["waiting"] in (True, False), s
        for k in ("reads_per_s", "writes_per_s", "locks_per_s"):
            assert s[k] is None or s[k] >= 0, s
        if s["writes_per_s"] is not None:
            rate[s["host"]].append(s["writes_per_s"])
assert any(it["live"] == 2 for it in its), "never both live"
busy, idle = max(rate["esx02"], default=0), max(rate["esx01"], default=0)
assert busy >= 5 and busy > idle, ("writes/s", rate)
assert its[-1]["slots"][0]["writes"] > 0
print("ok: lunfs top --json: both hosts live; writes/s esx02 %s, esx01 %s" % (rate["esx02"], rate["esx01"]))
EOF
[ "$(grep -c '^lunfs top - toptest .*hosts: 2 (' "$T/top.txt")" = 2 ] || fail "top text headers: $(cat "$T/top.txt")"
for h in esx01 esx02; do
	[ "$(grep -Ec "^ *[0-9]+ $h +(live|silent) " "$T/top.txt")" = 2 ] || fail "top text: want one line for $h per iteration: $(cat "$T/top.txt")"
done
[ "$(grep -Ec '^ *[0-9]+ ' "$T/top.txt")" = 4 ] || fail "top text: want 2 host lines per iteration: $(cat "$T/top.txt")"
ok "lunfs top -n 2 (text): a header and one line per host in each iteration"

"$L" hosts "$IMG" --json >"$T/hosts.json" || fail "lunfs hosts --json"
python3 - "$T/hosts.json" <<'EOF' || fail "lunfs hosts --json: $(cat "$T/hosts.json")"
import json, sys
d = json.load(open(sys.argv[1]))
by = {s["host"]: s for s in d["slots"]}
for h in ("esx01", "esx02"):
    s = by[h]
    assert s["state"] == "live" and s["moving"] and not s["dead"], s
    assert s["pr_key"] is None and s["replayer"] is None, s  # image file: no PR key
assert d["watched_ms"] < 3000, d  # it stops once every live slot moved
EOF
"$L" hosts "$IMG" | grep -Eq '^[0-9]+ +live +esx02 .* - +counter moved' || fail "lunfs hosts text: $("$L" hosts "$IMG")"
ok "lunfs hosts: both live, no PR key"

# ---- per VM disk: fio writes vm1.img through esx02 ----
# fio lays the file out first, then writes at random for a while; top must
# show the disk on esx02 (and only there) with its IOPS, MB/s and latency,
# its path resolved by lunfs top itself from the published inode number.
need fio
fio --name=vm1 --filename="$T/b/vm1.img" --size=32M --bs=64k --rw=randrw --rwmixread=30 \
	--ioengine=psync --direct=1 --time_based --runtime=10 --output="$T/fio.out" &
FIO=$!
on_exit "kill $FIO 2>/dev/null; wait $FIO 2>/dev/null"
for _ in $(seq 100); do [ "$(stat -c %s "$T/b/vm1.img" 2>/dev/null || echo 0)" = 33554432 ] && break; sleep 0.1; done
sleep 1.5
"$L" top "$IMG" -n 2 -d 1 --json >"$T/top2.json" || fail "lunfs top --json (fio): exit $?"
"$L" top "$IMG" -n 2 -d 1 >"$T/top2.txt" || fail "lunfs top (fio, text): exit $?"
wait $FIO || fail "fio: $(tail -20 "$T/fio.out")"
python3 - "$T/top2.json" <<'EOF2' || fail "lunfs top --json per disk: $(cat "$T/top2.json")"
import json, sys
its = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
assert len(its) == 2, len(its)
it = its[-1]
by = {s["host"]: s for s in it["slots"]}
b, a = by["esx02"], by["esx01"]
disks = {d["path"]: d for d in b["disks"]}
assert "/vm1.img" in disks, ("esx02 disks", b["disks"])
d = disks["/vm1.img"]
assert d["ino"] > 2, d
for k in ("writes_per_s", "reads_per_s", "iops", "write_mb_per_s", "read_mb_per_s",
          "avg_lat_ms", "write_lat_ms", "max_lat_ms"):
    assert d[k] is not None and d[k] > 0, (k, d)
assert d["max_lat_ms"] >= d["avg_lat_ms"] * 0.99, d
assert d["queue_depth"] >= 0 and d["avg_queue_depth"] > 0, d
assert d["writes"] > 0 and d["write_bytes"] >= 65536 * d["writes"] * 0.99, d
assert d["lock_waits_per_s"] is not None and d["lock_waits_per_s"] >= 0, d
h = b["io"]
assert h["writes_per_s"] >= d["writes_per_s"] * 0.99 and h["write_mb_per_s"] > 0, (h, d)
assert all(x["path"] != "/vm1.img" for x in a["disks"]), a["disks"]
print("ok: lunfs top --json: /vm1.img on esx02: %.0f r/s %.0f w/s, %.1f/%.1f MB/s, lat %.2f ms (max %.2f), qd %.1f" %
      (d["reads_per_s"], d["writes_per_s"], d["read_mb_per_s"], d["write_mb_per_s"],
       d["avg_lat_ms"], d["max_lat_ms"], d["avg_queue_depth"]))
EOF2
grep -Eq '^HOST +DISK +READS/s +WRITES/s +MBREAD/s +MBWRTN/s +LAT-ms +MAX-ms +QUED' "$T/top2.txt" ||
	fail "top text: no disk view: $(cat "$T/top2.txt")"
grep -Eq '^esx02 +/vm1\.img +[0-9.]+ +[0-9.]+ +[0-9.]+ +[0-9.]+ +[0-9.]+ +[0-9.]+ ' "$T/top2.txt" ||
	fail "top text: no line for /vm1.img on esx02: $(cat "$T/top2.txt")"
ok "lunfs top (text): a disk view with /vm1.img on esx02"
rm -f "$T/b/vm1.img"

# ---- esx02 crashes; esx01 recovers it ----
SLOT_A=$(python3 -c 'import json,sys; print([s["slot"] for s in json.load(open(sys.argv[1]))["slots"] if s["host"]=="esx01"][0])' "$T/hosts.json")
GEN_B=$(python3 -c 'import json,sys; print([s["mount_gen"] for s in json.load(open(sys.argv[1]))["slots"] if s["host"]=="esx02"][0])' "$T/hosts.json")
kill_mount() { # DIR: kill -9 of DIR's daemon (one we started), then a lazy umount
	p=$(pgrep -f "mount.lunfs .* $1( |$)" || true)
	[ -n "$p" ] && [ "$(echo "$p" | wc -l)" = 1 ] || fail "daemon for $1: '$p'"
	kill -9 "$p"
	for _ in $(seq 100); do [ -s "/proc/$p/cmdline" ] || break; sleep 0.05; done
	umount -l "$1" 2>/dev/null || true
}
kill_mount "$T/b"
t0=$(date +%s%N)
: >"$T/seen"
for _ in $(seq 60); do
	"$L" hosts "$IMG" --json >"$T/h.json" || fail "lunfs hosts --json after the kill"
	python3 - "$T/h.json" "$SLOT_A" "$GEN_B" >>"$T/seen" <<'EOF' || fail "lunfs hosts --json: $(cat "$T/h.json")"
import json, sys
d = json.load(open(sys.argv[1]))
slot_a, gen_b = int(sys.argv[2]), int(sys.argv[3])
by = {s["host"]: s for s in d["slots"]}
s = by["esx02"]
assert by["esx01"]["state"] == "live", by["esx01"]
assert s["mount_gen"] == gen_b, s
assert s["state"] in ("live", "dead", "replaying", "free"), s
if s["state"] == "replaying":
    r = s["replayer"]
    assert r["slot"] == slot_a and r["host"] == "esx01", s
    assert s["detail"] == "replaying (by esx01 slot %d)" % slot_a, s
if s["state"] == "dead":
    assert s["dead"] and not s["moving"] and s["still_ms"] >= 3000, s
print(s["state"])
EOF
	[ "$(tail -n1 "$T/seen")" = free ] && break
	[ $(( ($(date +%s%N) - t0) / 1000000 )) -lt 15000 ] || break
done
SEEN=$(uniq "$T/seen" | tr '\n' ' ')
[ "$(tail -n1 "$T/seen")" = free ] || fail "esx02 not recovered within 15 s: states seen: $SEEN"
echo "$SEEN" | grep -Eq '^(live )?(dead )?replaying free $' || fail "esx02's slot went through: $SEEN"
ok "esx02 killed: lunfs hosts showed its slot ${SEEN% }, replaying by esx01 (slot $SLOT_A), free with its name kept after $(( ($(date +%s%N) - t0) / 1000000 )) ms"

# ---- esx01 crashes too: nobody recovers it ----
kill_mount "$T/a"
"$L" hosts "$IMG" --json >"$T/h.json" || fail "lunfs hosts --json"
python3 - "$T/h.json" <<'EOF' || fail "lunfs hosts --json with esx01 dead: $(cat "$T/h.json")"
import json, sys
d = json.load(open(sys.argv[1]))
by = {s["host"]: s for s in d["slots"]}
a = by["esx01"]
assert a["state"] == "dead" and a["dead"] and not a["moving"] and a["still_ms"] >= 3000, a
assert d["watched_ms"] >= 3000, d
assert by["esx02"]["state"] == "free", by
EOF
"$L" hosts "$IMG" | grep -Eq "^$SLOT_A +dead +esx01 .*counter stood still for [0-9]+ ms \(lease 3000 ms\)" ||
	fail "lunfs hosts text: $("$L" hosts "$IMG")"
"$L" top "$IMG" -n 1 -d 0.5 --json >"$T/top.json" || fail "lunfs top"
python3 - "$T/top.json" <<'EOF' || fail "lunfs top with esx01 dead: $(cat "$T/top.json")"
import json, sys
it = json.load(open(sys.argv[1]))
assert it["hosts"] == 1 and it["live"] == 0, it  # esx02's free slot is not shown
s = it["slots"][0]
assert s["host"] == "esx01" and s["state"] in ("silent", "dead") and not s["hb_age_known"], s
assert s["writes_per_s"] in (None, 0), s
EOF
ok "esx01 killed with no survivor: lunfs hosts calls it dead after a lease; lunfs top shows it not live"
