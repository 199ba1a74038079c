#!/bin/bash
# HA restart (issue 13, point 4): a host's registered VM is restarted on a
# survivor by `lunfs ha agent` after kill -9 of the host's daemon, agent and
# QEMU.  Each round has a fresh volume (3 s lease) and two hosts A and B,
# each with a mount and an agent.  A guest disk is registered (lunfs ha
# register DISK -- vm.sh {host}.ROUND {disk}); A's agent starts it (the disk
# was never started; A's agent is alone), and its guest writes in a loop
# (GUEST-SEQ on its console).  Then B's agent starts, and A is killed
# (daemon, agent, QEMU: kill -9 each).  B's agent must start the VM on B
# once B's daemon has recovered A: the time from the kill to B's agent
# starting QEMU must be at most the lease + 2 s, and the guest's first
# write on B comes one QEMU boot later.  After the takeover: exactly one
# QEMU runs the disk (B's), lunfs locks names hostB as the open holder,
# lunfs ha list names B's mount as the owner, and the disk's sectors 1..N
# carry B's guest's tag.  B's QEMU is then killed: B's agent marks the disk
# failed and nobody restarts it.  fsck -n is clean after every round.
# A guest booted plainly (guest_boot) on the same kind of disk gives the
# boot time the target is measured against.
#
# LUNFS_HA_ROUNDS=N rounds (default 1); LUNFS_HA_RESULTS=FILE appends one
# tab-separated line per round (bench/ha.sh): kill to recovery done, the
# recovery's own ms, recovery to B's agent starting QEMU, QEMU start to
# GUEST-READY, QEMU start to the first write, kill to the first write, A's
# boot (agent start to first write), the plain boot.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib-guest.sh"
. "$(dirname "$0")/lib-ha.sh"
ROUNDS=${LUNFS_HA_ROUNDS:-1}
LEASE_MS=3000
ha_vm_script

# the plain boot: QEMU started by hand on a lunfs disk to its first write
IMG="$T/plain.img"
mkfs_multi "$IMG" 512M
mount_lunfs "$IMG" "$T/p" hostP "log=$T/p.log"
truncate -s 16M "$T/p/disk.img"
t0=$(now_ms)
guest_boot plain loop:2048:plain -drive "file=$T/p/disk.img,format=raw,if=virtio,cache=none,aio=io_uring"
t1=$(ha_first_ms "$GDIR/plain.log" 120 '^GUEST-SEQ ') || fail "plain boot: no write: $(cat "$GDIR/plain.log" "$GDIR/plain.err")"
PLAIN_MS=$((t1 - t0))
guest_stop plain
umount_lunfs "$T/p" || fail "umount plain"
ok "plain boot (QEMU start to the guest's first write): $PLAIN_MS ms"

for r in $(seq "$ROUNDS"); do
	IMG="$T/v$r.img" A="$T/a$r" B="$T/b$r"
	mkfs_multi "$IMG" 1G
	mount_lunfs "$IMG" "$A" hostA "log=$T/a$r.log"
	mount_lunfs "$IMG" "$B" hostB "log=$T/b$r.log"
	on_exit "ha_vm_kill hostA.$r; ha_vm_kill hostB.$r"
	mkdir "$A/vm"
	truncate -s 16M "$A/vm/disk.img"
	"$BIN/lunfs" ha register "$A/vm/disk.img" -- "$T/vm.sh" "{host}.$r" "{disk}" >/dev/null ||
		fail "round $r: lunfs ha register"
	ha_agent A$r "$A"
	ta=$(ha_stamp_ms "$T/agent-A$r.log" 'never started; started PID') ||
		{ sleep 1; ta=$(ha_stamp_ms "$T/agent-A$r.log" 'never started; started PID'); } ||
		fail "round $r: A's agent did not start the VM: $(cat "$T/agent-A$r.log")"
	tw=$(ha_first_ms "$GDIR/ha-hostA.$r.log" 120 '^GUEST-SEQ ') ||
		fail "round $r: no write from the guest on A: $(cat "$GDIR/ha-hostA.$r.log" "$T/agent-A$r.log")"
	BOOT_A=$((tw - ta))
	poll 20 eval '[ "$(ha_seqs hostA.$r | wc -l)" -ge 5 ]' || fail "round $r: the guest on A does not go on writing"
	"$BIN/lunfs" ha list "$B" --json >"$T/list.json" || fail "lunfs ha list"
	python3 -c '
import json, sys
d = json.load(open(sys.argv[1]))["disks"]
assert len(d) == 1 and d[0]["disk"] == "/vm/disk.img" and d[0]["owner"].startswith("hostA "), d
assert d[0]["command"][1:] == ["{host}.%s" % sys.argv[2], "{disk}"], d' "$T/list.json" "$r" ||
		fail "round $r: lunfs ha list on B: $(cat "$T/list.json")"
	ha_agent B$r "$B"
	grep -q 'started PID' "$T/agent-B$r.log" && fail "round $r: B's agent started a VM A runs: $(cat "$T/agent-B$r.log")"
	ok "round $r: A's agent started the registered VM (its boot to the first write: $BOOT_A ms); lunfs ha list on B names hostA; B's agent leaves it alone"

	# host A dies: its daemon, its agent, its QEMU
	qa=$(ha_vm_pid hostA.$r) || fail "round $r: no QEMU on A"
	dpa=$(daemon_pid "$A")
	t0=$(now_ms)
	kill -9 "$(eval echo "\$AGENT_PID_A$r")" "$qa" "$dpa"
	tt=$(ha_first_ms "$GDIR/ha-hostB.$r.log" $((LEASE_MS / 1000 + 120)) '^GUEST-READY' '^GUEST-SEQ ') ||
		fail "round $r: no write from a guest on B: $(cat "$T/agent-B$r.log"; tail -3 "$T/b$r.log")"
	tready=$(echo "$tt" | head -1) t1=$(echo "$tt" | tail -1)
	TOTAL=$((t1 - t0))
	umount -l "$A" 2>/dev/null || true
	trec=$(ha_stamp_ms "$T/b$r.log" 'recovered host hostA ') || fail "round $r: B's log: no recovery of A"
	rec_ms=$(sed -n 's/.*recovered host hostA .* in \([0-9]*\) ms.*/\1/p' "$T/b$r.log" | head -1)
	tb=$(ha_stamp_ms "$T/agent-B$r.log" 'is gone \(recovered\); started PID') ||
		fail "round $r: B's agent log: $(cat "$T/agent-B$r.log")"
	DETECT=$((trec - t0)) REACT=$((tb - trec)) READY=$((tready - tb)) BOOT_B=$((t1 - tb))
	echo "round $r: kill -9 to recovery done $DETECT ms (of which recovery $rec_ms ms), to B's agent starting QEMU +$REACT ms, QEMU start to GUEST-READY $READY ms, to the first write $BOOT_B ms; kill to first write on B: $TOTAL ms"
	[ $((tb - t0)) -le $((LEASE_MS + 2000)) ] ||
		fail "round $r: B's agent started the VM $((tb - t0)) ms after the kill, more than the lease + 2 s"
	[ "$TOTAL" -le $((LEASE_MS + 2000 + BOOT_B)) ] || fail "round $r: $TOTAL ms"
	ok "round $r: kill -9 of A to the guest's first write on B: $TOTAL ms <= lease $LEASE_MS + 2000 + B's boot $BOOT_B ms (plain boot $PLAIN_MS ms, A's $BOOT_A ms)"
	[ -n "${LUNFS_HA_RESULTS:-}" ] &&
		printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$DETECT" "$rec_ms" "$REACT" "$READY" "$BOOT_B" "$TOTAL" "$BOOT_A" "$PLAIN_MS" >>"$LUNFS_HA_RESULTS"

	# after the takeover: one QEMU (B's), the lock and the owner are B's
	kill -0 "$qa" 2>/dev/null && fail "round $r: A's QEMU still runs"
	qb=$(ha_vm_pid hostB.$r) || fail "round $r: no QEMU on B"
	[ "$(grep -c 'started PID' "$T/agent-B$r.log")" = 1 ] || fail "round $r: B's agent started more than once: $(cat "$T/agent-B$r.log")"
	"$BIN/lunfs" locks "$B/vm/disk.img" --json >"$T/locks.json" || fail "lunfs locks"
	python3 -c '
import json, sys
l = json.load(open(sys.argv[1]))["locks"]
h = l[0]["holders"]
assert len(l) == 1 and len(h) == 1 and h[0]["host"] == "hostB" and h[0]["open"], l' "$T/locks.json" ||
		fail "round $r: lunfs locks: $(cat "$T/locks.json")"
	"$BIN/lunfs" ha list "$B" >"$T/list.txt" || fail "lunfs ha list"
	grep -q '^/vm/disk.img *hostB ' "$T/list.txt" || fail "round $r: lunfs ha list: $(cat "$T/list.txt")"
	poll 30 eval '[ "$(ha_seqs hostB.$r | wc -l)" -ge 10 ]' || fail "round $r: the guest on B does not go on writing"
	n=$(ha_seqs hostB.$r | tail -1)
	python3 - "$B/vm/disk.img" "$n" "hostB.$r" <<'EOF' || fail "round $r: the disk does not hold B's guest's writes"
import sys
f, n, tag = open(sys.argv[1], "rb"), int(sys.argv[2]), sys.argv[3]
for k in range(1, n + 1):
    f.seek(512 * k)
    got = f.read(512).decode(errors="replace").split()
    assert got[:4] == ["lunfs-loop", "seq", str(k), tag], (k, got[:4])
EOF
	ok "round $r: after the takeover one QEMU runs the disk (B's, PID $qb); lunfs locks and lunfs ha list name hostB; sectors 1..$n hold B's guest's writes"

	# B's QEMU dies: its agent marks the disk failed; nobody restarts it
	ha_vm_kill hostB.$r
	poll 5 grep -q 'ended: failed (signal 9' "$T/agent-B$r.log" || fail "round $r: B's agent: $(tail -3 "$T/agent-B$r.log")"
	sleep 1.5
	[ "$(grep -c 'started PID' "$T/agent-B$r.log")" = 1 ] || fail "round $r: B's agent restarted a failed VM"
	"$BIN/lunfs" ha list "$B" | grep -q '^/vm/disk.img *failed (signal 9 on hostB)' || fail "round $r: $("$BIN/lunfs" ha list "$B")"
	p=$(eval echo "\$AGENT_PID_B$r")
	kill "$p"
	wait "$p" 2>/dev/null || true
	umount_lunfs "$B" || fail "round $r: umount B"
	"$BIN/fsck.lunfs" -n "$IMG" >"$T/fsck.out" 2>&1 || fail "round $r: fsck -n: $(cat "$T/fsck.out")"
	rm -f "$IMG"
	ok "round $r: B's QEMU killed: its agent marked the disk failed and did not restart it; fsck -n clean"
done
