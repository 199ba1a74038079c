#!/bin/bash
# HA restart: the election among several survivors, and the agent's other
# paths, with a plain process as the "VM" (sh opens the disk read-write and
# sleeps; no QEMU).  Four hosts A, B, C, D on one volume (3 s lease), each
# with `lunfs ha agent --poll-ms 100` (a short poll, so that the survivors
# try at the same moment).
#   - Adoption: a disk opened read-write by hand on B and then registered
#     is adopted by B's agent (owner B), and nobody starts a second copy;
#     C cannot unregister it meanwhile (the xattrs change only where the
#     disk is open).
#   - A VM that exits with status 0 is marked stopped and not restarted;
#     `lunfs ha start` makes an agent start it again; `lunfs ha unregister`
#     removes it from `lunfs ha list`.
#   - A command that fails before opening its disk is marked failed at
#     once and not retried.
#   - The race: the VM runs on A; A dies (kill -9 of its daemon, agent and
#     VM); exactly one of the survivors restarts it, and no other starts a
#     second copy in the 3 s after.  Then the winner dies, and again one of
#     the two left restarts it; then once more with one left.
. "$(dirname "$0")/lib.sh"
IMG="$T/v.img"
mkfs_multi "$IMG" 1G
for h in A B C D; do
	mount_lunfs "$IMG" "$T/$h" "host$h" "log=$T/$h.log"
done
# the VMs: sh, which opens the disk read-write and then sleeps (as sleep);
# each writes "HOST PID" to $T/started.  The cleanup kills these PIDs only.
on_exit 'for p in $(awk "{print \$2}" "$T/started" 2>/dev/null); do
	tr "\0" " " 2>/dev/null <"/proc/$p/cmdline" | grep -q "^sleep 600" && kill -9 "$p"; done'
VM='exec 3<>"$1"; echo "$2 $$" >>'"$T"'/started; exec sleep 600'
declare -A AG
agent() {
	"$BIN/lunfs" ha agent "$T/$1" --poll-ms 100 >"$T/agent-$1.log" 2>&1 &
	AG[$1]=$!
	on_exit "kill -CONT ${AG[$1]} 2>/dev/null; kill ${AG[$1]} 2>/dev/null"
	poll 10 grep -qs "this host's mount" "$T/agent-$1.log" || fail "agent $1: $(cat "$T/agent-$1.log")"
}
starts() { grep -c "^$1 " "$T/started" 2>/dev/null || true; }
vm_pid() { awk -v h="$1" '$1 == h {p = $2} END {print p}' "$T/started"; }

mkdir "$T/A/vm"
truncate -s 1M "$T/A/vm/disk.img"
"$BIN/lunfs" ha register "$T/A/vm/disk.img" -- sh -c "$VM" sh {disk} {host} >/dev/null || fail "register"
agent A
poll 10 grep -qs '^hostA ' "$T/started" || fail "A's agent did not start the VM: $(cat "$T/agent-A.log")"
for h in B C D; do agent $h; done
sleep 1
[ "$(wc -l <"$T/started")" = 1 ] || fail "more than one start: $(cat "$T/started")"
ok "the VM runs on A (started by A's agent); agents on B, C, D leave it alone"

# adoption: opened by hand on B, then registered
truncate -s 1M "$T/B/vm/hand.img"
exec 7<>"$T/B/vm/hand.img"
"$BIN/lunfs" ha register "$T/B/vm/hand.img" -- sh -c "$VM" sh {disk} {host} >/dev/null || fail "register hand.img"
poll 10 grep -q 'hand.img: adopted PID' "$T/agent-B.log" || fail "B's agent did not adopt: $(cat "$T/agent-B.log")"
sleep 1
grep -q 'hand.img.*started PID' "$T"/agent-*.log && fail "an agent started hand.img, which runs on B"
"$BIN/lunfs" ha list "$T/B" | grep -q '^/vm/hand.img *hostB ' || fail "hand.img's owner: $("$BIN/lunfs" ha list "$T/B")"
poll 5 test -e "$T/C/vm/hand.img" || fail "C does not see hand.img"
expect_fail 1 "open read-write on another host" "$BIN/lunfs" ha unregister "$T/C/vm/hand.img"
exec 7>&-
"$BIN/lunfs" ha unregister "$T/B/vm/hand.img" >/dev/null || fail "unregister hand.img"
ok "a disk open read-write by hand on B, then registered: B's agent adopted it; no agent started a second copy"

# a VM that powers off is not restarted; ha start arms it again
truncate -s 1M "$T/B/vm/once.img"
"$BIN/lunfs" ha register "$T/B/vm/once.img" -- sh -c 'exec 3<>"$1"; echo "$2" >>'"$T"'/once; sleep 0.5' sh {disk} {host} >/dev/null ||
	fail "register once.img"
poll 10 eval '"$BIN/lunfs" ha list "$T/B" | grep -q "^/vm/once.img *stopped "' || fail "once.img not stopped: $("$BIN/lunfs" ha list "$T/B")"
sleep 1.5
[ "$(wc -l <"$T/once")" = 1 ] || fail "once.img started again after it stopped: $(cat "$T/once")"
"$BIN/lunfs" ha start "$T/B/vm/once.img" >/dev/null || fail "lunfs ha start"
poll 10 eval '[ "$(wc -l <"$T/once")" = 2 ]' || fail "lunfs ha start: not started again"
poll 10 eval '"$BIN/lunfs" ha list "$T/B" | grep -q "^/vm/once.img *stopped "' || fail "once.img not stopped again"
"$BIN/lunfs" ha unregister "$T/B/vm/once.img" >/dev/null || fail "lunfs ha unregister"
"$BIN/lunfs" ha list "$T/B" | grep -q once.img && fail "once.img still listed after unregister"
ok "a VM that exits 0 is marked stopped and not restarted; lunfs ha start starts it again; unregister removes it"

# a command that fails before it opens the disk: marked failed at once (the
# agent stops waiting for the open), never retried
truncate -s 1M "$T/B/vm/bad.img"
"$BIN/lunfs" ha register "$T/B/vm/bad.img" -- sh -c 'echo "$1" >>'"$T"'/bad; exit 3' sh {host} >/dev/null || fail "register bad.img"
poll 5 eval '"$BIN/lunfs" ha list "$T/B" | grep -q "^/vm/bad.img *failed (exit 3 on host[A-D])"' ||
	fail "bad.img not marked failed within 5 s: $("$BIN/lunfs" ha list "$T/B"; cat "$T"/agent-*.log)"
sleep 1
[ "$(wc -l <"$T/bad")" = 1 ] || fail "bad.img was tried more than once: $(cat "$T/bad")"
"$BIN/lunfs" ha unregister "$T/B/vm/bad.img" >/dev/null || fail "unregister bad.img"
ok "a command that exits 3 before opening its disk: marked failed within $POLL_MS ms by the agent that ran it, not retried"

live="B C D" dead=A
for round in 1 2 3; do
	n0=$(wc -l <"$T/started")
	p=$(vm_pid "host$dead")
	t0=$(now_ms)
	kill -9 "${AG[$dead]}" "$p" "$(daemon_pid "$T/$dead")"
	poll 20 eval '[ "$(wc -l <"$T/started")" -gt '"$n0"' ]' || fail "round $round: no survivor restarted the VM"
	ms=$(( $(now_ms) - t0 ))
	umount -l "$T/$dead" 2>/dev/null || true
	sleep 3
	[ "$(wc -l <"$T/started")" = $((n0 + 1)) ] || fail "round $round: more than one survivor started it: $(tail -n +$((n0 + 1)) "$T/started")"
	win=$(tail -1 "$T/started" | cut -d' ' -f1)
	win=${win#host}
	lost=""
	for h in $live; do
		[ "$h" = "$win" ] && continue
		lost="$lost $h"
		grep -q 'disk.img: .*started PID' "$T/agent-$h.log" && fail "round $round: $h's agent also says it started it"
	done
	"$BIN/lunfs" ha list "$T/$win" | grep -q "^/vm/disk.img *host$win " || fail "round $round: owner: $("$BIN/lunfs" ha list "$T/$win")"
	ok "round $round: host$dead killed; host$win's agent restarted the VM after $ms ms, $( [ -n "$lost" ] && echo "alone (the agents on$lost did not)" || echo "the only survivor"); lunfs ha list names host$win"
	live=${lost# } dead=$win
done

for h in $live $dead; do kill "${AG[$h]}" 2>/dev/null; done
for p in $(awk '{print $2}' "$T/started"); do
	tr '\0' ' ' 2>/dev/null <"/proc/$p/cmdline" | grep -q '^sleep 600' && kill -9 "$p"
done
sleep 0.5
for h in A B C D; do umount_lunfs "$T/$h" || fail "umount $h"; done
"$BIN/fsck.lunfs" -n "$IMG" >"$T/fsck.out" 2>&1 || fail "fsck -n: $(cat "$T/fsck.out")"
ok "fsck -n clean"
