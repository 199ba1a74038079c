#!/bin/bash
# The NBD export (nbd/nbdkit-lunfs-plugin.c under nbdkit): a thin VM disk
# written through a FUSE mount of host esx01 is served by nbdkit as host
# nbd1 beside it.  qemu-img info, map (the extents equal what lunfs's own
# SEEK_DATA/SEEK_HOLE says through FUSE, and the pattern written), convert
# out and in, qemu-io writes, FUA, discard, write-zeroes (fast and with
# unmap) checked with -P patterns, nbdcopy out and in, nbdinfo --map and the
# export's flags.  The lock semantics (docs/LOCKING.md section 8): while nbd1
# serves read-write, a second read-write export, a readonly=1 export and a
# FUSE read-write open on other hosts are refused with EBUSY; once nbdkit
# exits the lock is free, read-only exports of two hosts share the file and
# a read-write one is refused beside them; a missing device or file fails
# with one line and a non-zero exit; nbdkit in the background (the mount
# in .after_fork) serves and frees its slot; fsck -n is clean at the end.
. "$(dirname "$0")/lib.sh"
need nbdkit qemu-img qemu-io nbdcopy nbdinfo python3
. "$(dirname "$0")/lib-nbd.sh"
MiB=1048576
SIZE=$((256 * MiB))

# data_extents: the data ranges "start+length" (merged), from qemu-img map's JSON on stdin
data_extents() {
	python3 -c '
import json, sys
out = []
for e in json.load(sys.stdin):
    if e["data"]:
        if out and out[-1][0] + out[-1][1] == e["start"]:
            out[-1][1] += e["length"]
        else:
            out.append([e["start"], e["length"]])
print(" ".join(f"{s}+{l}" for s, l in out))'
}
# fuse_extents FILE: the same from SEEK_DATA/SEEK_HOLE on a file of the FUSE mount
fuse_extents() {
	python3 - "$1" <<'PYEOF'
import os, sys
fd = os.open(sys.argv[1], os.O_RDONLY)
size, off, out = os.fstat(fd).st_size, 0, []
while off < size:
    try:
        d = os.lseek(fd, off, os.SEEK_DATA)
    except OSError:
        break
    h = os.lseek(fd, d, os.SEEK_HOLE)
    out.append(f"{d}+{h - d}")
    off = h
print(" ".join(out))
PYEOF
}
# put OFF LEN: the same random bytes at OFF into the reference and into FILE
put() {
	head -c "$2" /dev/urandom >"$T/piece"
	dd if="$T/piece" of="$T/ref.img" bs=4096 seek="$1" oflag=seek_bytes conv=notrunc status=none
	dd if="$T/piece" of="$PUT_FILE" bs=4096 seek="$1" oflag=seek_bytes conv=notrunc status=none
}

truncate -s 1G "$T/v.img"
"$BIN/mkfs.lunfs" -q -N 8 -J 1M "$T/v.img" || fail "mkfs.lunfs"
mount_lunfs "$T/v.img" "$T/m" esx01
mkdir "$T/m/vm01"
truncate -s $SIZE "$T/m/vm01/disk.img" "$T/ref.img"
PUT_FILE="$T/m/vm01/disk.img"
put 0 65536
put $((5 * MiB)) $MiB
put $((100 * MiB + 4096)) 8192
put $((SIZE - 512)) 512
sync "$T/m/vm01/disk.img"
want="0+$MiB $((5 * MiB))+$MiB $((100 * MiB))+$MiB $((SIZE - MiB))+$MiB"
got=$(fuse_extents "$T/m/vm01/disk.img")
[ "$got" = "$want" ] || fail "SEEK_DATA through FUSE: $got, want $want"
ok "a thin disk with data in 4 blocks, written through FUSE as esx01"

# ---- the read-write export beside the FUSE mount ----
start_export rw nbd1
qemu-img info --output=json "$(uri rw)" >"$T/info" || fail "qemu-img info"
python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); assert d["virtual-size"]==int(sys.argv[2]), d' \
	"$T/info" $SIZE || fail "qemu-img info: $(cat "$T/info")"
nbdinfo "$(uri rw)" >"$T/nbdinfo" || fail "nbdinfo"
for f in can_multi_conn can_flush can_fua can_trim can_zero can_fast_zero; do
	grep -Eq "^[[:space:]]*$f: true" "$T/nbdinfo" || fail "nbdinfo: $f is not true: $(cat "$T/nbdinfo")"
done
grep -Eq "is_read_only: false" "$T/nbdinfo" || fail "nbdinfo: read-only"
ok "qemu-img info: $SIZE bytes; nbdinfo: writable, multi-conn, flush, FUA, trim, zero, fast zero"
got=$(qemu-img map --output=json "$(uri rw)" | data_extents)
[ "$got" = "$want" ] || fail "qemu-img map: data $got, want $want (as FUSE's SEEK_DATA)"
nbdinfo --map "$(uri rw)" >"$T/map" || fail "nbdinfo --map"
got=$(awk '$4 == "data" { printf "%s%s+%s", n++ ? " " : "", $1, $2 }' "$T/map")
[ "$got" = "$want" ] || fail "nbdinfo --map: data $got, want $want: $(cat "$T/map")"
awk '$4 != "data" && $4 != "hole,zero" { exit 1 }' "$T/map" || fail "nbdinfo --map: $(cat "$T/map")"
ok "qemu-img map and nbdinfo --map: data exactly where lunfs has it ($want), the rest hole,zero"
qemu-img convert -f raw -O raw "$(uri rw)" "$T/out.raw" || fail "qemu-img convert out"
cmp "$T/out.raw" "$T/ref.img" || fail "qemu-img convert out: not the written data"
nbdcopy "$(uri rw)" "$T/out2.raw" || fail "nbdcopy out"
cmp "$T/out2.raw" "$T/ref.img" || fail "nbdcopy out: not the written data"
ok "qemu-img convert and nbdcopy out: the bytes written through FUSE"

# ---- the lock: other hosts are refused while nbd1 serves ----
expect_fail 1 "busy.*EBUSY" nbdkit -U "$T/x.sock" --foreground "$PLUGIN" "$T/v.img" file=/vm01/disk.img host=nbd2
expect_fail 1 "busy.*EBUSY" nbdkit -U "$T/x.sock" --foreground "$PLUGIN" "$T/v.img" file=/vm01/disk.img \
	host=nbd2 readonly=1
( exec 6>>"$T/m/vm01/disk.img" ) 2>"$T/err" && fail "esx01 opened read-write a disk nbd1 exports"
grep -q busy "$T/err" || fail "esx01's read-write open: $(cat "$T/err"), want EBUSY"
ok "while nbd1 exports read-write: a second export (rw or readonly=1) and esx01's rw open get EBUSY"
expect_fail 1 "cannot mount .*No such file" nbdkit -U "$T/x.sock" --foreground "$PLUGIN" "$T/none.img" \
	file=/vm01/disk.img host=nbd2
expect_fail 1 "/vm01/nodisk.img: No such file" nbdkit -U "$T/x.sock" --foreground "$PLUGIN" "$T/v.img" \
	file=/vm01/nodisk.img host=nbd2
expect_fail 1 "/vm01: Is a directory" nbdkit -U "$T/x.sock" --foreground "$PLUGIN" "$T/v.img" \
	file=/vm01 host=nbd2
[ ! -e "$T/x.sock" ] || fail "a refused export left its socket"
ok "a missing device, a missing file, a directory: one line, exit 1"

# ---- writes through the export: qemu-io with patterns ----
qio() { qemu-io -f raw "$(uri rw)" "$@" >"$T/qio" 2>&1 || fail "qemu-io $*: $(cat "$T/qio")"
	! grep -Eqi "fail|error|mismatch" "$T/qio" || fail "qemu-io $*: $(cat "$T/qio")"; }
qio -c "write -P 0x55 $((10 * MiB)) 64k" -c "write -f -P 0x66 $((20 * MiB + 512)) 4k" \
	-c "read -P 0x55 $((10 * MiB)) 64k" -c "read -P 0x66 $((20 * MiB + 512)) 4k" -c flush
python3 - "$T/ref.img" $((10 * MiB)) $((20 * MiB + 512)) <<'PYEOF'
import sys
with open(sys.argv[1], "r+b") as f:
    f.seek(int(sys.argv[2])); f.write(b"\x55" * 65536)
    f.seek(int(sys.argv[3])); f.write(b"\x66" * 4096)
PYEOF
ok "qemu-io: write, write with FUA, read back with -P, flush"
# discard a whole block: a hole; write-zeroes with unmap (punch), and
# without (a block to be zeroed), and fast (-n: no slow fallback)
qio -c "discard $((5 * MiB)) 1M" -c "read -P 0 $((5 * MiB)) 1M" \
	-c "write -z -u 0 64k" -c "read -P 0 0 64k" \
	-c "write -z $((100 * MiB)) 1M" -c "read -P 0 $((100 * MiB)) 1M" \
	-c "write -z -n $((10 * MiB + 4096)) 8k" -c "read -P 0x55 $((10 * MiB)) 4k" \
	-c "read -P 0 $((10 * MiB + 4096)) 8k" -c "read -P 0x55 $((10 * MiB + 12288)) 52k"
python3 - "$T/ref.img" <<'PYEOF'
import sys
M = 1 << 20
with open(sys.argv[1], "r+b") as f:
    for off, n in ((5 * M, M), (0, 65536), (100 * M, M), (10 * M + 4096, 8192)):
        f.seek(off); f.write(b"\0" * n)
PYEOF
ok "qemu-io: discard, write-zeroes with unmap, without, and fast (-n), read back as zeros"
# the map follows: block 5 punched, block 100 to be zeroed (a hole to SEEK_DATA)
want2="0+$MiB $((10 * MiB))+$MiB $((20 * MiB))+$MiB $((SIZE - MiB))+$MiB"
got=$(qemu-img map --output=json "$(uri rw)" | data_extents)
[ "$got" = "$want2" ] || fail "qemu-img map after the writes: data $got, want $want2"
nbdcopy "$(uri rw)" "$T/out3.raw" || fail "nbdcopy out"
cmp "$T/out3.raw" "$T/ref.img" || fail "after qemu-io: the export differs from the reference"
ok "qemu-img map after discard and zeroes: $want2; the whole disk equals the reference"
# convert in and nbdcopy in: a new image over the whole disk
truncate -s $SIZE "$T/src.raw"
PUT_FILE="$T/src.raw"
cp "$T/src.raw" "$T/ref.img"
put $((3 * MiB)) 300000
put $((64 * MiB)) $((2 * MiB))
qemu-img convert -n -f raw -O raw "$T/src.raw" "$(uri rw)" || fail "qemu-img convert in"
nbdcopy "$(uri rw)" "$T/out4.raw" || fail "nbdcopy out"
cmp "$T/out4.raw" "$T/src.raw" || fail "qemu-img convert in: the export differs from the source"
put $((200 * MiB)) 12345
nbdcopy "$T/src.raw" "$(uri rw)" || fail "nbdcopy in"
qemu-img compare -f raw -F raw "$T/src.raw" "$(uri rw)" >"$T/out" || fail "nbdcopy in: $(cat "$T/out")"
ok "qemu-img convert in and nbdcopy in: the export equals the source"
stop_export rw || fail "nbdkit nbd1 did not exit cleanly"
grep -q "lunfs: cleanup" "$T/rw.log" || fail "nbdkit nbd1 did not run the plugin's cleanup"
ok "nbdkit nbd1 stops on SIGTERM with exit 0"

# ---- after nbdkit: the lock is free; shared read-only exports ----
start_export ro1 nbd1 readonly=1
start_export ro2 nbd2 readonly=1
nbdinfo "$(uri ro2)" | grep -Eq "is_read_only: true" || fail "readonly=1 export is writable"
qemu-img compare -f raw -F raw "$T/src.raw" "$(uri ro1)" >"$T/out" || fail "ro1: $(cat "$T/out")"
qemu-img compare -f raw -F raw "$T/src.raw" "$(uri ro2)" >"$T/out" || fail "ro2: $(cat "$T/out")"
qemu-io -f raw "$(uri ro1)" -c "write 0 4k" >"$T/qio" 2>&1 && fail "qemu-io wrote to a readonly=1 export"
grep -qi "read-only\|permission\|not permitted" "$T/qio" || fail "a write to a readonly=1 export: $(cat "$T/qio")"
expect_fail 1 "busy: another host has it open \(read-write or shared read-only\) \(EBUSY\)" \
	nbdkit -U "$T/x.sock" --foreground "$PLUGIN" "$T/v.img" file=/vm01/disk.img host=nbd3
( exec 6>>"$T/m/vm01/disk.img" ) 2>"$T/err" && fail "esx01 opened read-write a disk two hosts export read-only"
cmp "$T/m/vm01/disk.img" "$T/src.raw" || fail "esx01 reads other bytes than the exports wrote"
ok "the lock is free after nbdkit: two readonly=1 exports share it, refuse writes; rw beside them: EBUSY"
stop_export ro1 || fail "nbdkit ro1 exit"
stop_export ro2 || fail "nbdkit ro2 exit"
start_export rw2 nbd3
qemu-img compare -f raw -F raw "$T/src.raw" "$(uri rw2)" >"$T/out" || fail "rw2: $(cat "$T/out")"
stop_export rw2 || fail "nbdkit rw2 exit"
ok "a read-write export again once the read-only ones are gone"
# nbdkit in the background (it forks after .get_ready; the plugin mounts
# again in .after_fork, its threads in the child)
nbdkit -U "$T/bg.sock" -P "$T/bg.pid" "$PLUGIN" "$T/v.img" file=/vm01/disk.img host=nbd4 \
	</dev/null >/dev/null 2>"$T/bg.log" || fail "nbdkit in the background: $(cat "$T/bg.log")"
BG_PID=$(cat "$T/bg.pid")
on_exit "kill $BG_PID 2>/dev/null"
qemu-img compare -f raw -F raw "$T/src.raw" "$(uri bg)" >"$T/out" || fail "background export: $(cat "$T/out")"
"$BIN/lunfs" hosts "$T/v.img" | grep -Eq "live +nbd4 " || fail "nbd4 is not live: $("$BIN/lunfs" hosts "$T/v.img")"
kill "$BG_PID"
poll 20 sh -c "! kill -0 $BG_PID 2>/dev/null" || fail "nbdkit in the background did not exit"
slots_free "$T/v.img" nbd4
ok "nbdkit in the background: serves, and frees its slot when stopped"
umount_lunfs "$T/m" || fail "umount"
slots_free "$T/v.img"
"$BIN/fsck.lunfs" -n "$T/v.img" >"$T/out" 2>&1 || fail "fsck -n after the exports: $(cat "$T/out")"
ok "every slot free, fsck.lunfs -n clean"
