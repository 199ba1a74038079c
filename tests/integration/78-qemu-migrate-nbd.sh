#!/bin/bash
# Live migration of a running QEMU (TCG) guest whose disk is served by the
# NBD export, from host A's export to host B's, with unmodified QEMU and
# no lunfs step at the switchover (issue 13, point 3, the export half).
# A's export (host nbdA) holds the disk's exclusive open and runs with
# nbdkit's exitlast filter: it exits, freeing the lock, once its last client
# (the source QEMU) is gone.  B's export (host nbdB) runs with incoming=1: it
# opens the disk without a lock, and its first write takes the exclusive
# lock, waiting while A's export still holds it.  The guest writes a
# sequence number to sector n % 2048 with O_DIRECT and fsync, forever.
#   - while the guest runs on A, a third export's writes (incoming=1,
#     incoming_wait=2) fail after the wait: a second running QEMU could not
#     write;
#   - `migrate` over QMP; at `completed` the source QEMU quits, A's nbdkit
#     exits by itself, and the guest's writes on B go on;
#   - lunfs locks names nbdB; every sequence number is acknowledged once, in
#     order, across the two consoles, and every acknowledged write of the
#     last 2048 is on the disk (read through host C's FUSE mount); fsck -n
#     is clean once everything stopped.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib-guest.sh"
. "$(dirname "$0")/lib-migrate.sh"
need nbdkit qemu-io
IMG="$T/v.img"
mkfs_multi "$IMG" 1G
EXPORT_IMG=$IMG
. "$(dirname "$0")/lib-nbd.sh"
C="$T/c"
mount_lunfs "$IMG" "$C" hostC "log=$T/c.log"
mkdir "$C/vm01"
truncate -s 64M "$C/vm01/disk.img"
guest_init
EXPORT_FILTERS=--filter=exitlast start_export ea nbdA
start_export eb nbdB incoming=1 incoming_wait=60
nbd_drive() { echo "file=$(uri "$1"),format=raw,if=virtio,cache=none"; }
guest_boot src "loop:$MIG_SECTORS" -drive "$(nbd_drive ea)"
guest_wait_line src 'GUEST-SEQ 20' 120 || fail "src: the guest does not write: $(cat "$GDIR/src.log" "$GDIR/src.err")"
guest_boot dst "loop:$MIG_SECTORS" -drive "$(nbd_drive eb)" -incoming "unix:$T/mig.sock"
mig_wait_status dst inmigrate 30 || fail "dst (-incoming, on nbdB's export): $(mig_status dst) $(cat "$GDIR/dst.err")"
mig_locks_name nbdA
ok "src runs through nbdA's export (the guest writes; nbdA holds the disk), dst waits with -incoming on nbdB's export"

# a third export's write while nbdA holds the disk: refused after its wait
start_export ec nbdC incoming=1 incoming_wait=2
t0=$(now_ms)
if qemu-io -f raw -c 'write -P 0x55 0 4k' "$(uri ec)" >"$T/qio.out" 2>&1; then
	fail "a write through nbdC's export landed while nbdA holds the disk: $(cat "$T/qio.out")"
fi
waited=$(( $(now_ms) - t0 ))
grep -Eq 'busy|Input/output error' "$T/qio.out" || fail "nbdC's write: $(cat "$T/qio.out")"
[ "$waited" -ge 1900 ] || fail "nbdC's write failed after $waited ms, before its 2 s wait"
stop_export ec || fail "nbdC's export did not exit cleanly"
mig_locks_name nbdA
ok "nbdC's write (incoming=1, incoming_wait=2) failed after $waited ms: $(head -1 "$T/qio.out")"

t0=$(now_ms)
qmp src migrate "{\"uri\": \"unix:$T/mig.sock\"}" >"$T/migrate.out" || fail "migrate: $(cat "$T/migrate.out")"
mig_wait_migration 120 completed && [ "$MIG_ST" = completed ] || fail "migration: $MIG_ST: $(qmp src query-migrate)"
t1=$(now_ms)
qmp src quit >/dev/null
guest_wait src 20 || fail "src did not exit"
# exitlast: nbdA's nbdkit exits (0) once the source QEMU disconnected
for _ in $(seq 100); do kill -0 "$PID_ea" 2>/dev/null || break; sleep 0.1; done
stop_export ea || fail "nbdA's export did not exit cleanly: $(tail -5 "$T/ea.log")"
mig_wait_status dst running 15 || fail "dst is $(mig_status dst), not running: $(cat "$GDIR/dst.err")"
first=$(tr -d '\r' <"$GDIR/dst.log" | sed -n 's/.*GUEST-SEQ //p' | head -1)
guest_wait_line dst "GUEST-SEQ $(( ${first:-0} + 100 ))" 90 || fail "the guest does not write on dst: $(tail -5 "$GDIR/dst.log"); nbdB: $(tail -5 "$T/eb.log")"
t2=$(now_ms)
mig_locks_name nbdB
ok "migrated: $(( t1 - t0 )) ms to completed; the source QEMU quit and nbdA's export exited; the guest writes on, through nbdB's export, which holds the disk (100 writes in $(( t2 - t1 )) ms)"
grep -q "took the exclusive lock" "$T/eb.log" && ok "nbdB: $(grep -o 'took the exclusive lock.*' "$T/eb.log" | head -1)"
qmp dst quit >/dev/null
guest_wait dst 20 || fail "dst did not exit"
stop_export eb || fail "nbdB's export did not exit cleanly"
ok "$(mig_verify)"
umount_lunfs "$C" || fail "umount hostC"
slots_free "$IMG"
"$BIN/fsck.lunfs" -n "$IMG" >"$T/fsck.out" 2>&1 || fail "fsck -n: $(cat "$T/fsck.out")"
ok "every slot free; fsck -n clean"
