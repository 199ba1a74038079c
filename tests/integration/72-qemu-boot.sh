#!/bin/bash
# Unmodified QEMU (TCG) runs guests whose virtio disks are raw files in a
# lunfs mount (issue 13, point 2, the mount half).  Host A mounts a volume;
# a guest boots from lib-guest.sh's initramfs and writes a deterministic
# pattern onto its /dev/vda with dd, fsyncs, reads it back with O_DIRECT and
# powers off.  Three disks, three boots on A:
#   vm01: thin (truncate -s 64M), cache=none,aio=io_uring, 32 MiB at 8 MiB
#   vm02: qemu-img create -o preallocation=falloc (to-be-zeroed blocks), aio=native
#   vm03: qemu-img create -o preallocation=full (zeros written: eager-zeroed), aio=native
# The guest's checksum of what it read back must be the host's checksum of
# the same pattern (the same busybox awk), and each disk must equal, byte for
# byte, zeros with the pattern at its offset: read through A's mount, through
# host B's mount, by a guest booted on B's mount (the lock moves from A to B
# with QEMU's own open), and after every host unmounted, through a fresh
# mount as host C.  While vm01's guest runs on A, a second QEMU on B opening
# the same disk read-write must fail with EBUSY once hostB's open_wait_ms
# (3 s) has passed (QEMU reports it as "Could not open ...: Device or
# resource busy" and exits 1), within 10 s; A's guest goes on unharmed.  fsck -n is clean at the end.  Boot times are printed.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib-guest.sh"
need qemu-img
IMG="$T/v.img"
mkfs_multi "$IMG" 1G
A="$T/a" B="$T/b" C="$T/c"
mount_lunfs "$IMG" "$A" hostA "log=$T/a.log"
mount_lunfs "$IMG" "$B" hostB "log=$T/b.log"
guest_init
ok "volume mounted as hostA and hostB; guest initramfs built (kernel $GUEST_KVER)"

MIB=32 OFF=8
# want SEED FILE: a 64 MiB disk of zeros with SEED's pattern at $OFF MiB
want() {
	rm -f "$2"
	truncate -s 64M "$2"
	guest_pattern "$1" "$MIB" | dd of="$2" bs=1M seek="$OFF" conv=notrunc iflag=fullblock status=none
}
# drive FILE AIO: the -drive argument of a VM disk
drive() { echo "file=$1,format=raw,if=virtio,cache=none,aio=$2"; }
# run_guest NAME JOB DISK AIO: boots, waits (300 s), checks the exit status and
# that the console says GUEST-DONE; prints the boot and total times
run_guest() {
	local name=$1 job=$2 disk=$3 aio=$4 t0 rc
	t0=$(now_ms)
	guest_boot "$name" "$job" -drive "$(drive "$disk" "$aio")"
	guest_wait_line "$name" 'GUEST-READY' 120 || fail "$name: no GUEST-READY: $(cat "$GDIR/$name.log" "$GDIR/$name.err")"
	BOOT_MS=$(( $(now_ms) - t0 ))
	rc=0
	guest_wait "$name" 300 || rc=$?
	TOTAL_MS=$(( $(now_ms) - t0 ))
	[ "$rc" = 0 ] || fail "$name: QEMU exit $rc: $(cat "$GDIR/$name.err")"
	grep -q 'GUEST-FAIL' "$GDIR/$name.log" && fail "$name: $(grep 'GUEST-FAIL' "$GDIR/$name.log")"
	[ -n "$(guest_result "$name")" ] || fail "$name: no GUEST-DONE: $(cat "$GDIR/$name.log")"
}

# --- vm01: thin, io_uring; and a second QEMU on hostB
mkdir "$A/vm01" "$A/vm02" "$A/vm03"
truncate -s 64M "$A/vm01/disk.img"
want 101 "$T/want01"
SUM01=$(guest_pattern 101 "$MIB" | sha256sum | cut -d' ' -f1)
t0=$(now_ms)
guest_boot g1 "write:101:$MIB:$OFF" -drive "$(drive "$A/vm01/disk.img" io_uring)"
# QMP answers once QEMU has opened its drives
qmp g1 query-status >"$T/g1.status" || fail "g1: no QMP: $(cat "$GDIR/g1.err")"
grep -q '"running"' "$T/g1.status" || fail "g1 not running: $(cat "$T/g1.status")"
"$BIN/lunfs" locks "$IMG" /vm01/disk.img --json >"$T/locks.json" || fail "lunfs locks"
python3 -c '
import json, sys
l = json.load(open(sys.argv[1]))["locks"]
assert len(l) == 1 and l[0]["mode"] == "exclusive", l
h = l[0]["holders"]
assert len(h) == 1 and h[0]["host"] == "hostA" and h[0]["open"], h' "$T/locks.json" ||
	fail "lunfs locks does not name hostA as the open holder: $(cat "$T/locks.json")"
ok "g1 (QEMU on hostA's mount) has vm01/disk.img open: lunfs locks shows hostA's exclusive open"
# the same disk, read-write, from hostB's mount: refused after the open wait (3 s)
poll 5 test -e "$B/vm01/disk.img" || fail "vm01/disk.img not seen on hostB"
t1=$(now_ms)
guest_boot g2 "verify:$MIB:$OFF" -drive "$(drive "$B/vm01/disk.img" io_uring)"
rc=0
guest_wait g2 20 || rc=$?
REFUSE_MS=$(( $(now_ms) - t1 ))
[ "$rc" != 0 ] && [ "$rc" != 124 ] || fail "a second QEMU on hostB opened the disk QEMU on hostA runs (exit $rc): $(cat "$GDIR/g2.log")"
grep -q 'Device or resource busy' "$GDIR/g2.err" || fail "g2 (exit $rc): $(cat "$GDIR/g2.err"), want EBUSY"
[ "$REFUSE_MS" -lt 10000 ] || fail "g2 took $REFUSE_MS ms to fail"
[ ! -s "$GDIR/g2.log" ] || ! grep -q GUEST "$GDIR/g2.log" || fail "g2's guest ran"
ok "QEMU on hostB, same disk read-write: exit $rc after $REFUSE_MS ms: $(head -1 "$GDIR/g2.err")"
guest_wait_line g1 'GUEST-READY' 120 || fail "g1: no GUEST-READY: $(cat "$GDIR/g1.log" "$GDIR/g1.err")"
BOOT_MS=$(( $(now_ms) - t0 ))
rc=0
guest_wait g1 300 || rc=$?
TOTAL_MS=$(( $(now_ms) - t0 ))
[ "$rc" = 0 ] || fail "g1: QEMU exit $rc: $(cat "$GDIR/g1.err")"
[ "$(guest_result g1)" = "$SUM01" ] || fail "g1 read back $(guest_result g1), want $SUM01: $(cat "$GDIR/g1.log")"
cmp "$A/vm01/disk.img" "$T/want01" || fail "vm01 through hostA's mount"
ok "vm01 (thin, aio=io_uring): boot to GUEST-READY $BOOT_MS ms, write of $MIB MiB and power-off $TOTAL_MS ms in all; the guest's read-back and hostA's read equal the pattern"

# --- vm02: preallocation=falloc (to-be-zeroed blocks), aio=native
qemu-img create -q -f raw -o preallocation=falloc "$A/vm02/disk.img" 64M || fail "qemu-img create falloc"
want 102 "$T/want02"
run_guest g3 "write:102:$MIB:$OFF" "$A/vm02/disk.img" native
[ "$(guest_result g3)" = "$(guest_pattern 102 "$MIB" | sha256sum | cut -d' ' -f1)" ] || fail "g3 read back $(guest_result g3)"
cmp "$A/vm02/disk.img" "$T/want02" || fail "vm02 through hostA's mount"
ok "vm02 (qemu-img preallocation=falloc, aio=native): boot $BOOT_MS ms, all $TOTAL_MS ms; read-back and hostA's read right"

# --- vm03: preallocation=full (eager-zeroed), aio=native
qemu-img create -q -f raw -o preallocation=full "$A/vm03/disk.img" 64M || fail "qemu-img create full"
want 103 "$T/want03"
run_guest g4 "write:103:$MIB:$OFF" "$A/vm03/disk.img" native
[ "$(guest_result g4)" = "$(guest_pattern 103 "$MIB" | sha256sum | cut -d' ' -f1)" ] || fail "g4 read back $(guest_result g4)"
cmp "$A/vm03/disk.img" "$T/want03" || fail "vm03 through hostA's mount"
ok "vm03 (qemu-img preallocation=full, aio=native): boot $BOOT_MS ms, all $TOTAL_MS ms; read-back and hostA's read right"

# --- hostB reads them; a guest on hostB reads vm01
for n in 01 02 03; do
	poll 5 cmp -s "$B/vm$n/disk.img" "$T/want$n" || fail "vm$n through hostB's mount"
done
ok "hostB reads all three disks byte for byte"
run_guest g5 "verify:$MIB:$OFF" "$B/vm01/disk.img" io_uring
[ "$(guest_result g5)" = "$SUM01" ] || fail "g5 (on hostB) read $(guest_result g5), want $SUM01"
ok "a guest on hostB's mount (QEMU's read-write open now on hostB) reads vm01's pattern: boot $BOOT_MS ms, all $TOTAL_MS ms"

# --- after every host unmounted: a fresh mount as hostC, then fsck
umount_lunfs "$A" || fail "umount hostA"
umount_lunfs "$B" || fail "umount hostB"
slots_free "$IMG"
mount_lunfs "$IMG" "$C" hostC "log=$T/c.log"
for n in 01 02 03; do cmp "$C/vm$n/disk.img" "$T/want$n" || fail "vm$n through hostC's fresh mount"; done
umount_lunfs "$C" || fail "umount hostC"
ok "unmounted; a fresh mount as hostC reads all three disks byte for byte"
"$BIN/fsck.lunfs" -n "$IMG" >"$T/fsck.out" 2>&1 || fail "fsck -n: $(cat "$T/fsck.out")"
ok "fsck -n clean"
