#!/bin/bash
# HA restart of a frozen host (issue 13, point 4): a host frozen past its
# lease must not leave two running guests writing one disk.  Hosts A and B
# mount one volume (3 s lease), each with `lunfs ha agent`; a registered
# guest runs on A (started by A's agent) and writes sector n with "seq n
# hostA" in a loop.  The whole of host A is frozen (SIGSTOP to its daemon,
# its agent and its QEMU); B's daemon recovers A after a lease, B's agent
# wins the disk and restarts the guest on B, whose writes say "hostB".
# When B's guest has written 20 sectors, A is continued (daemon, QEMU,
# agent).  Then:
#   - A's daemon says it was fenced; A's QEMU is gone within 15 s: A's
#     agent killed it (its log says so), or its guest's I/O failed (EIO
#     from the fenced mount: GUEST-FAIL) and it powered off; A's guest
#     acknowledges no write after the freeze but for the one that may have
#     been in flight;
#   - B's guest goes on writing; when it has written 40 more sectors it is
#     killed, and the disk, read through B's mount, holds B's writes in
#     every sector B wrote (1..N): nothing A did after it resumed landed.
#     A's write in flight at the freeze may land after B's (the residual
#     window of docs/LOCKING.md section 4): one sector holding A's next
#     sequence number is reported as a NOTE; anything else fails;
#   - lunfs ha list names B; A rejoined (its log says so) and its agent
#     started nothing; fsck -n is clean after both unmounted.
# Twice, on a fresh volume each time: variant 1 freezes the whole host
# (daemon, QEMU, agent); variant 2 its daemon and QEMU only, while its agent
# runs on (its calls into A's frozen mount wait until A resumes).
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib-guest.sh"
. "$(dirname "$0")/lib-ha.sh"
ha_vm_script
for v in 1 2; do
	IMG="$T/v$v.img" A="$T/a$v" B="$T/b$v"
	mkfs_multi "$IMG" 1G
	mount_lunfs "$IMG" "$A" hostA "log=$T/a$v.log"
	mount_lunfs "$IMG" "$B" hostB "log=$T/b$v.log"
	on_exit "ha_vm_kill hostA.f$v; ha_vm_kill hostB.f$v"
	mkdir "$A/vm"
	truncate -s 16M "$A/vm/disk.img"
	"$BIN/lunfs" ha register "$A/vm/disk.img" -- "$T/vm.sh" "{host}.f$v" "{disk}" >/dev/null || fail "lunfs ha register"
	ha_agent A$v "$A"
	ha_first_ms "$GDIR/ha-hostA.f$v.log" 120 '^GUEST-SEQ ' >/dev/null ||
		fail "no write from the guest on A: $(cat "$GDIR/ha-hostA.f$v.log" "$T/agent-A$v.log")"
	ha_agent B$v "$B"
	poll 20 eval '[ "$(ha_seqs hostA.f$v | wc -l)" -ge 10 ]' || fail "the guest on A does not go on writing"
	qa=$(ha_vm_pid hostA.f$v) || fail "no QEMU on A"
	dpa=$(daemon_pid "$A")
	ok "variant $v: the guest runs on A (QEMU PID $qa, started by A's agent) and writes"

	# the whole host A freezes
	aga=$(eval echo "\$AGENT_PID_A$v") agb=$(eval echo "\$AGENT_PID_B$v")
	frozen="$dpa $qa"
	[ "$v" = 1 ] && frozen="$frozen $aga"
	kill -STOP $frozen
	on_exit "kill -CONT $frozen 2>/dev/null"
	t0=$(now_ms)
	LA=$(ha_seqs hostA.f$v | tail -1)
	poll 60 eval '[ "$(ha_seqs hostB.f$v | wc -l)" -ge 20 ]' ||
		fail "no guest on B writes: $(cat "$T/agent-B$v.log"; tail -3 "$T/b$v.log")"
	TB=$(( $(now_ms) - t0 ))
	grep -q 'recovered host hostA ' "$T/b$v.log" || fail "B's log does not say it recovered A"
	grep -q 'is gone (recovered); started PID' "$T/agent-B$v.log" || fail "B's agent: $(cat "$T/agent-B$v.log")"
	ok "variant $v: A frozen (last write acknowledged on A: seq $LA); B recovered A and B's agent restarted the guest on B, which wrote 20 sectors ${TB} ms after the freeze"

	# A resumes
	NB0=$(ha_seqs hostB.f$v | tail -1)
	kill -CONT $frozen
	t1=$(now_ms)
	poll 15 eval '! kill -0 '"$qa"' 2>/dev/null' ||
		fail "A's QEMU still runs 15 s after A resumed: $(cat "$T/agent-A$v.log")"
	TK=$(( $(now_ms) - t1 ))
	if grep -q "killed PID $qa here" "$T/agent-A$v.log"; then
		how="A's agent killed it: $(grep "killed PID $qa" "$T/agent-A$v.log" | sed 's/.*lunfs ha: [^:]*: //')"
	elif grep -q '^GUEST-FAIL' "$GDIR/ha-hostA.f$v.log"; then
		how="its guest's I/O failed and it powered off: $(grep -m1 '^GUEST-FAIL' "$GDIR/ha-hostA.f$v.log" | tr -d '\r')"
	else
		fail "A's QEMU ended, but neither A's agent killed it nor did its guest fail: $(cat "$T/agent-A$v.log")"
	fi
	grep -q 'fenced' "$T/a$v.log" || fail "A's log does not say it was fenced: $(tail -5 "$T/a$v.log")"
	after=$(ha_seqs hostA.f$v | awk -v la="$LA" '$1 > la' | tr '\n' ' ')
	case "$after" in "" | "$((LA + 1)) ") ;; *) fail "A's guest acknowledged writes after the freeze: $after" ;; esac
	ok "variant $v: A resumed: fenced; A's QEMU gone within $TK ms ($how); A's guest acknowledged $( [ -n "$after" ] && echo "seq ${after% } after the resume (the write in flight at the freeze: LOCKING.md section 4's window)" || echo "no write after the freeze")"

	poll 60 eval '[ "$(ha_seqs hostB.f$v | tail -1)" -ge $((NB0 + 40)) ]' || fail "the guest on B stopped writing after A resumed"
	ha_vm_kill hostB.f$v
	N=$(ha_seqs hostB.f$v | tail -1)
	[ "$N" -lt 2048 ] || fail "B's guest wrapped around its 2048 sectors; the check needs fewer"
	python3 - "$B/vm/disk.img" "$N" "$LA" "hostB.f$v" "hostA.f$v" >"$T/check.out" <<'EOF' || fail "the disk after A resumed: $(cat "$T/check.out")"
import sys
f, n, la = open(sys.argv[1], "rb"), int(sys.argv[2]), int(sys.argv[3])
tb, ta = sys.argv[4], sys.argv[5]
note = []
for k in range(1, n + 1):
    f.seek(512 * k)
    got = f.read(512).decode(errors="replace").split()[:4]
    if got == ["lunfs-loop", "seq", str(k), tb]:
        continue
    if got == ["lunfs-loop", "seq", str(la + 1), ta] and k == la + 1:
        note.append(k)  # A's write in flight at the freeze (section 4's window)
        continue
    sys.exit("sector %d: %s, want seq %d %s" % (k, got, k, tb))
if note:
    print("NOTE: sector %d holds A's write in flight at the freeze (residual window)" % note[0])
EOF
	[ -s "$T/check.out" ] && cat "$T/check.out"
	ok "variant $v: sectors 1..$N all hold B's guest's writes$( [ -s "$T/check.out" ] && echo ", but for the window noted")"

	poll 20 grep -q 'rejoined after the fence' "$T/a$v.log" || fail "A did not rejoin: $(tail -3 "$T/a$v.log")"
	grep -q 'started PID' "$T/agent-A$v.log" && [ "$(grep -c 'started PID' "$T/agent-A$v.log")" != 1 ] &&
		fail "A's agent started the VM again: $(cat "$T/agent-A$v.log")"
	"$BIN/lunfs" ha list "$A" | grep -q '^/vm/disk.img *\(hostB \|failed (signal 9 on hostB)\)' ||
		fail "lunfs ha list on A: $("$BIN/lunfs" ha list "$A")"
	kill "$aga" "$agb"
	wait "$aga" "$agb" 2>/dev/null || true
	umount_lunfs "$A" || fail "umount A"
	umount_lunfs "$B" || fail "umount B"
	slots_free "$IMG"
	"$BIN/fsck.lunfs" -n "$IMG" >"$T/fsck.out" 2>&1 || fail "fsck -n: $(cat "$T/fsck.out")"
	ok "variant $v: A rejoined; its agent started nothing; lunfs ha list on A names B; fsck -n clean"
	rm -f "$IMG"
done
