#!/bin/bash
# Plain live migration of a running QEMU (TCG) guest from host A to host B of
# one volume, with no management step between `migrate` and the guest
# running on B: no handoff, no late-block-activate, no cont.  QEMU opens the
# disk O_RDONLY on B at start (-incoming), closes its O_RDWR fd on A at the
# switchover but keeps an O_RDONLY one until it exits, and opens O_RDWR on B
# at activation, a few ms after that close (docs/notes/qemu-migration-trace.md).
# lunfs allows it (docs/LOCKING.md 10.14): A's last writable close lets go
# of the lock although the read-only fd stays, and B's O_RDWR open, which
# may come before A's FUSE RELEASE is done, waits for A's open pin to go
# (open_wait_ms, default 3000).  What must hold: before the migration, a
# second QEMU started normally on B (not -incoming) is refused with EBUSY
# and the guest runs on on A; the destination runs on B within 15 s of
# `migrate`; hostB then holds the disk, before and after the source QEMU
# exits; a `cont` sent to the source (a rollback) while the guest runs on B
# fails with EBUSY and the source stays stopped; a third host's read-write open gets EBUSY at every phase; the
# guest's sequence goes on on B without a gap, and every acknowledged guest
# write is on the disk; fsck -n is clean.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib-guest.sh"
. "$(dirname "$0")/lib-migrate.sh"
mig_setup
mig_locks_name hostA
mig_third_busy "before the migration"
ok "hostA holds the disk; hostC's O_RDWR open: EBUSY after ${THIRD_MS} ms"
# a second VM of the same disk on hostB, started normally: refused
t0=$(now_ms)
guest_boot g2 "loop:$MIG_SECTORS" -drive "file=$B/vm01/disk.img,format=raw,if=virtio,cache=none,aio=io_uring"
rc=0
guest_wait g2 30 || rc=$?
REFUSE_MS=$(( $(now_ms) - t0 ))
[ "$rc" != 0 ] && [ "$rc" != 124 ] || fail "a second QEMU on hostB opened the disk QEMU on hostA runs (exit $rc): $(cat "$GDIR/g2.log")"
grep -q 'Device or resource busy' "$GDIR/g2.err" || fail "g2 (exit $rc): $(cat "$GDIR/g2.err"), want EBUSY"
! grep -q GUEST "$GDIR/g2.log" 2>/dev/null || fail "g2's guest ran"
[ "$(mig_status src)" = running ] || fail "src is $(mig_status src) after g2"
mig_locks_name hostA
seq0=$(tr -d '\r' <"$GDIR/src.log" | sed -n 's/.*GUEST-SEQ //p' | tail -1)
guest_wait_line src "GUEST-SEQ $(( ${seq0:-0} + 20 ))" 60 || fail "the guest stopped writing on hostA after g2"
ok "a second QEMU on hostB (not -incoming), same disk: exit $rc after $REFUSE_MS ms: $(head -1 "$GDIR/g2.err"); the guest writes on on hostA"
t0=$(now_ms)
qmp src migrate "{\"uri\": \"unix:$T/mig.sock\"}" >"$T/migrate.out" || fail "migrate: $(cat "$T/migrate.out")"
mig_wait_migration 120 completed && [ "$MIG_ST" = completed ] || fail "migration: $MIG_ST: $(qmp src query-migrate)"
t1=$(now_ms)
mig_wait_status dst running 15 ||
	fail "dst is $(mig_status dst) on hostB, not running, $(( $(now_ms) - t1 )) ms after the migration completed: $(cat "$GDIR/dst.err")"
WAITED=$(grep 'for writing waited .*: opened' "$T/b.log" | sed 's/.*\(waited .*\)/\1/' | tail -1)
ok "migrated in $(( t1 - t0 )) ms; dst runs on hostB $(( $(now_ms) - t1 )) ms later; hostB's O_RDWR open: ${WAITED:-no wait (hostA had let go first)}"
mig_locks_name hostB
grep -q 'inode [0-9]*: last writable open closed, 1 read-only open(s) left: lock released$' "$T/a.log" ||
	fail "hostA's log does not say it let go at the source's O_RDWR close: $(tail -5 "$T/a.log")"
mig_third_busy "after the switchover, source QEMU still there"
[ "$(mig_status src)" = postmigrate ] || fail "src is $(mig_status src)"
first=$(tr -d '\r' <"$GDIR/dst.log" | sed -n 's/.*GUEST-SEQ //p' | head -1)
guest_wait_line dst "GUEST-SEQ $(( ${first:-0} + 100 ))" 60 || fail "the guest does not write on dst: $(cat "$GDIR/dst.log")"
# a rollback while the guest runs on B: `cont` on the source reopens the
# disk O_RDWR on hostA, which must fail (after the open wait): never two
t2=$(now_ms)
if qmp src cont >"$T/cont.out" 2>&1; then
	sleep 1
	fail "cont on the source succeeded while dst runs on hostB (src: $(mig_status src)): $(cat "$T/cont.out")"
fi
grep -q 'resource busy' "$T/cont.out" || fail "cont on the source: $(cat "$T/cont.out"), want EBUSY"
[ "$(mig_status src)" != running ] || fail "src runs again on hostA while dst runs on hostB"
[ "$(mig_status dst)" = running ] || fail "dst is $(mig_status dst) after the source's cont"
mig_locks_name hostB
ok "cont on the source QEMU while the guest runs on hostB: refused after $(( $(now_ms) - t2 )) ms ($(tr -d '\n' <"$T/cont.out" | cut -c1-160)); src stays $(mig_status src)"
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
