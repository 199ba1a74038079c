#!/bin/bash
# NOT REGISTERED (the runner takes *.sh only): fails with the current lock
# protocol.  Rename to 73-qemu-migrate.sh once it passes.
#
# Plain live migration of a running QEMU (TCG) guest from host A to host B of
# one volume, with no management step between `migrate` and the guest
# running on B: no handoff, no late-block-activate, no cont.  QEMU opens the
# disk O_RDONLY on B at start (-incoming), closes its O_RDWR fd on A at the
# switchover but keeps an O_RDONLY one until it exits, and opens O_RDWR on B
# at activation, a few ms after that close (docs/notes/qemu-migration-trace.md).
# Today that open gets EBUSY: A still holds the lock through the read-only
# fd, and the destination stays paused.  What must hold once the protocol
# allows it: the destination runs on B within 15 s of `migrate`; hostB then
# holds the disk, before and after the source QEMU exits; a third host's
# read-write open gets EBUSY at every phase; every acknowledged guest write
# is on the disk; fsck -n is clean.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib-guest.sh"
. "$(dirname "$0")/lib-migrate.sh"
mig_setup
mig_locks_name hostA
mig_third_busy "before the migration"
t0=$(now_ms)
qmp src migrate "{\"uri\": \"unix:$T/mig.sock\"}" >"$T/migrate.out" || fail "migrate: $(cat "$T/migrate.out")"
mig_wait_migration 120 completed && [ "$MIG_ST" = completed ] || fail "migration: $MIG_ST: $(qmp src query-migrate)"
t1=$(now_ms)
mig_wait_status dst running 15 ||
	fail "dst is $(mig_status dst) on hostB, not running, $(( $(now_ms) - t1 )) ms after the migration completed: $(cat "$GDIR/dst.err")"
ok "migrated in $(( t1 - t0 )) ms; dst runs on hostB $(( $(now_ms) - t1 )) ms later"
mig_locks_name hostB
mig_third_busy "after the switchover, source QEMU still there"
[ "$(mig_status src)" = postmigrate ] || fail "src is $(mig_status src)"
first=$(tr -d '\r' <"$GDIR/dst.log" | sed -n 's/.*GUEST-SEQ //p' | head -1)
guest_wait_line dst "GUEST-SEQ $(( ${first:-0} + 100 ))" 60 || fail "the guest does not write on dst: $(cat "$GDIR/dst.log")"
qmp src quit >/dev/null
guest_wait src 20 || fail "src did not exit"
mig_locks_name hostB
mig_third_busy "after the source QEMU exited"
ok "the guest writes on hostB; hostB holds the disk before and after the source QEMU quit; hostC: EBUSY"
qmp dst quit >/dev/null
guest_wait dst 20 || fail "dst did not exit"
ok "$(mig_verify)"
umount_lunfs "$A" && umount_lunfs "$B" && umount_lunfs "$C" || fail "umount"
slots_free "$IMG"
"$BIN/fsck.lunfs" -n "$IMG" >"$T/fsck.out" 2>&1 || fail "fsck -n: $(cat "$T/fsck.out")"
ok "all unmounted; fsck -n clean"
