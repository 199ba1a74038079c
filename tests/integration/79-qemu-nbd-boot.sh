#!/bin/bash
# Unmodified QEMU (TCG) boots guests whose virtio disk is served by the NBD
# export (issue 13, point 2, the export half): no FUSE between QEMU and the
# library.  Host A's FUSE mount creates two thin disks; nbdkit with the lunfs
# plugin serves each under its own host name, and QEMU opens it:
#   vm01: -drive file=nbd+unix:///?socket=...,format=raw (the URI form)
#   vm02: -blockdev driver=nbd,server.type=unix,... under a raw node (the
#         QMP-style form libvirt uses), cache.direct=on
# Each guest writes a deterministic pattern with dd, fsyncs, reads it back
# with O_DIRECT and powers off.  The guest's checksum must be the host's; once
# nbdkit stopped (exit 0: the plugin closed the file and unmounted), the disk
# must equal zeros with the pattern at its offset through A's mount, and
# qemu-img map through a fresh read-only export must report exactly the
# pattern's range as data (the rest of the thin disk stays holes).  While
# vm01's guest runs, A's mount cannot open vm01 read-write (EBUSY: the export
# holds the exclusive open).  fsck -n is clean at the end.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib-guest.sh"
need nbdkit qemu-img python3
IMG="$T/v.img"
mkfs_multi "$IMG" 1G
EXPORT_IMG=$IMG
. "$(dirname "$0")/lib-nbd.sh"
A="$T/a"
mount_lunfs "$IMG" "$A" hostA "log=$T/a.log"
guest_init
mkdir "$A/vm01" "$A/vm02"
truncate -s 64M "$A/vm01/disk.img" "$A/vm02/disk.img"
ok "volume mounted as hostA; two thin 64 MiB disks; guest initramfs built (kernel $GUEST_KVER)"

MIB=16 OFF=8
# want SEED FILE: a 64 MiB disk of zeros with SEED's pattern at $OFF MiB
want() {
	rm -f "$2"
	truncate -s 64M "$2"
	guest_pattern "$1" "$MIB" | dd of="$2" bs=1M seek="$OFF" conv=notrunc iflag=fullblock status=none
}
# boot_nbd NAME SEED EXPORT DRIVE-ARGS...: boots, waits, checks the guest's read-back
boot_nbd() {
	local name=$1 seed=$2 exp=$3 t0 rc
	shift 3
	t0=$(now_ms)
	guest_boot "$name" "write:$seed:$MIB:$OFF" "$@"
	guest_wait_line "$name" 'GUEST-READY' 120 || fail "$name: no GUEST-READY: $(cat "$GDIR/$name.log" "$GDIR/$name.err")"
	BOOT_MS=$(( $(now_ms) - t0 ))
	if [ "$name" = g1 ]; then
		# the export holds vm01's exclusive open: A's own read-write open is refused
		expect_fail 1 "busy" python3 -c 'import os, sys
try:
    os.open(sys.argv[1], os.O_RDWR)
except OSError as e:
    sys.exit("busy" if e.errno == 16 else str(e))' "$A/vm01/disk.img"
		ok "while g1 runs, hostA's mount gets EBUSY opening vm01 read-write (the export holds it)"
	fi
	rc=0
	guest_wait "$name" 300 || rc=$?
	TOTAL_MS=$(( $(now_ms) - t0 ))
	[ "$rc" = 0 ] || fail "$name: QEMU exit $rc: $(cat "$GDIR/$name.err")"
	grep -q 'GUEST-FAIL' "$GDIR/$name.log" && fail "$name: $(grep 'GUEST-FAIL' "$GDIR/$name.log")"
	[ "$(guest_result "$name")" = "$(guest_pattern "$seed" "$MIB" | sha256sum | cut -d' ' -f1)" ] ||
		fail "$name read back '$(guest_result "$name")': $(cat "$GDIR/$name.log")"
	stop_export "$exp" || fail "nbdkit $exp did not exit cleanly"
}
# check_disk N SEED: A's mount reads the pattern; the export's map shows only it as data
check_disk() {
	local n=$1 seed=$2
	want "$seed" "$T/want$n"
	poll 5 cmp -s "$A/vm$n/disk.img" "$T/want$n" || fail "vm$n through hostA's mount differs from the pattern"
	EXPORT_FILE=/vm$n/disk.img start_export map$n mapper$n readonly=1
	qemu-img map --output=json -f raw "$(uri map$n)" >"$T/map$n.json" || fail "qemu-img map vm$n"
	stop_export map$n || fail "the read-only export of vm$n did not exit cleanly"
	python3 -c '
import json, sys
MiB = 1 << 20
data = [(e["start"], e["length"]) for e in json.load(open(sys.argv[1])) if e["data"]]
merged = []
for s, l in data:
    if merged and merged[-1][0] + merged[-1][1] == s:
        merged[-1] = (merged[-1][0], merged[-1][1] + l)
    else:
        merged.append((s, l))
want = [(int(sys.argv[2]) * MiB, int(sys.argv[3]) * MiB)]
assert merged == want, (merged, want)' "$T/map$n.json" "$OFF" "$MIB" ||
		fail "vm$n: data extents $(cat "$T/map$n.json"), want only [$OFF MiB, +$MIB MiB)"
}

EXPORT_FILE=/vm01/disk.img start_export e1 nbdA1
boot_nbd g1 201 e1 -drive "file=$(uri e1),format=raw,if=virtio,cache=none"
check_disk 01 201
ok "vm01 through the export (nbd+unix URI, cache=none): boot to GUEST-READY $BOOT_MS ms, all $TOTAL_MS ms; the guest's read-back, hostA's read and the export's map are right"

EXPORT_FILE=/vm02/disk.img start_export e2 nbdA2
boot_nbd g2 202 e2 -blockdev "driver=nbd,node-name=n2,server.type=unix,server.path=$T/e2.sock,cache.direct=on" \
	-blockdev driver=raw,node-name=d2,file=n2 -device virtio-blk-pci,drive=d2
check_disk 02 202
ok "vm02 through the export (-blockdev nbd, cache.direct=on): boot $BOOT_MS ms, all $TOTAL_MS ms; read-back, hostA's read and the map are right"

umount_lunfs "$A" || fail "umount hostA"
slots_free "$IMG"
"$BIN/fsck.lunfs" -n "$IMG" >"$T/fsck.out" 2>&1 || fail "fsck -n: $(cat "$T/fsck.out")"
ok "every slot free; fsck -n clean"
