#!/bin/bash
# Live migration of a running QEMU (TCG) guest from host A to host B of one
# volume, with unmodified QEMU and `lunfs handoff` at the switchover, so
# that the disk's lock is never free (docs/notes/qemu-migration-trace.md,
# "Two ways that work today", 2).  The guest writes a sequence number to
# sector n % 2048 with O_DIRECT and fsync, forever.  The source gets the
# capability pause-before-switchover; `migrate`; at pre-switchover (VM
# stopped, writes flushed, the O_RDWR fd still open) `lunfs handoff` names
# hostB in the lock record; migrate-continue; the destination's activation
# (its O_RDWR open on hostB) adopts the lock and the guest runs on, on B.
# Throughout, a third host's read-write open gets EBUSY.  At the end every
# sequence number is acknowledged once in order across the two consoles and
# every acknowledged write of the last 2048 is on the disk; fsck -n clean.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib-guest.sh"
. "$(dirname "$0")/lib-migrate.sh"
mig_setup
mig_locks_name hostA
mig_third_busy "before the migration"
ok "hostA holds the disk; hostC's O_RDWR open: EBUSY"
qmp src migrate-set-capabilities '{"capabilities": [{"capability": "pause-before-switchover", "state": true}]}' >/dev/null ||
	fail "migrate-set-capabilities"
t0=$(now_ms)
qmp src migrate "{\"uri\": \"unix:$T/mig.sock\"}" >"$T/migrate.out" || fail "migrate: $(cat "$T/migrate.out")"
mig_wait_migration 120 pre-switchover && [ "$MIG_ST" = pre-switchover ] || fail "migration: $(qmp src query-migrate)"
t1=$(now_ms)
# hostC's probes take open_wait_ms to get EBUSY: they are left out of the
# switchover's time (probe_ms)
mig_third_busy "at pre-switchover"
probe_ms=$(( $(now_ms) - t1 ))
th=$(now_ms)
"$BIN/lunfs" handoff "$A/vm01/disk.img" hostB >"$T/handoff.out" 2>&1 || fail "lunfs handoff: $(cat "$T/handoff.out")"
th=$(( $(now_ms) - th ))
mig_locks_name hostB
tp=$(now_ms)
mig_third_busy "after the handoff"
probe_ms=$(( probe_ms + $(now_ms) - tp ))
qmp src migrate-continue '{"state": "pre-switchover"}' >/dev/null || fail "migrate-continue"
mig_wait_migration 60 completed && [ "$MIG_ST" = completed ] || fail "migration: $MIG_ST: $(qmp src query-migrate)"
mig_wait_status dst running 15 || fail "dst is $(mig_status dst), not running: $(cat "$GDIR/dst.err")"
t2=$(now_ms)
ok "migrated: RAM copy $(( t1 - t0 )) ms, switchover with lunfs handoff $(( t2 - t1 - probe_ms )) ms (the handoff $th ms; hostC's two probes, $probe_ms ms, left out); dst runs on hostB; hostC got EBUSY at pre-switchover and after the handoff"
mig_locks_name hostB
[ "$(mig_status src)" = postmigrate ] || fail "src is $(mig_status src)"
first=$(tr -d '\r' <"$GDIR/dst.log" | sed -n 's/.*GUEST-SEQ //p' | head -1)
guest_wait_line dst "GUEST-SEQ $(( ${first:-0} + 100 ))" 60 || fail "the guest does not write on dst: $(cat "$GDIR/dst.log")"
qmp src quit >/dev/null
guest_wait src 20 || fail "src did not exit"
mig_locks_name hostB
mig_third_busy "after the source QEMU exited"
ok "the guest writes on hostB; the source QEMU quit; hostB still holds the disk; hostC: EBUSY"
qmp dst quit >/dev/null
guest_wait dst 20 || fail "dst did not exit"
ok "$(mig_verify)"
umount_lunfs "$A" && umount_lunfs "$B" && umount_lunfs "$C" || fail "umount"
slots_free "$IMG"
"$BIN/fsck.lunfs" -n "$IMG" >"$T/fsck.out" 2>&1 || fail "fsck -n: $(cat "$T/fsck.out")"
ok "all unmounted; fsck -n clean"
