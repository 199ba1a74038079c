#!/bin/bash
# 69-long-free-no-stall: a long operation on one file stalls no VM on the
# host (issue 11, point 1).  A VM disk is written through host a's mount
# (fio: random 4 KiB, O_DIRECT, queue depth 8) while, on the same host, a
# 270 GiB file is preallocated (lazy fallocate: 270k pointers), cut to
# 135 GiB (a truncate frees 135k blocks) and deleted (the rest).  Each of
# those runs in steps (tx_step): a pass of at most 2048 units under the
# volume mutex, then a journal commit without it, and data I/O goes on
# between passes.  Before, the whole operation held the volume mutex and
# kept data I/O drained, so the VM's writes waited for all of it (its
# longest write took as long as the operation, 0.4 to 0.5 s for the
# truncate and the delete on this machine).  Checked per operation: the VM's longest write is under
# a third of the operation's time, and the operation took long enough
# (200 ms) for that to mean something.  Then fsck -n is clean.
. "$(dirname "$0")/lib.sh"
need fio python3
IMG="$T/v.img"
truncate -s 300G "$IMG"
"$BIN/mkfs.lunfs" -q -N 4 -J 4M -I 4096 --max-size 300G "$IMG" || fail "mkfs"
A="$T/a"
mount_lunfs "$IMG" "$A" hostA "log=$T/a.log"
dd if=/dev/urandom of="$A/vm.vmdk" bs=1M count=256 oflag=direct status=none || fail "prefill"
sync

# with_fio NAME CMD...: runs CMD on the mount while fio writes the VM disk;
# checks the VM's longest write against CMD's time.
with_fio() {
	name=$1
	shift
	fio --name=vm --filename="$A/vm.vmdk" --direct=1 --ioengine=io_uring --rw=randwrite \
		--bs=4k --iodepth=8 --size=256M --runtime=120 --time_based --output-format=json \
		--output="$T/$name.json" >/dev/null 2>&1 &
	FIO=$!
	on_exit "kill -INT $FIO 2>/dev/null; wait $FIO 2>/dev/null"
	sleep 1
	kill -0 "$FIO" 2>/dev/null || fail "fio did not start"
	t0=$(now_ms)
	"$@" || fail "$name: $* failed"
	op_ms=$(( $(now_ms) - t0 ))
	sleep 0.5
	kill -INT "$FIO"
	wait "$FIO" || true # interrupted: fio still writes its report
	[ -s "$T/$name.json" ] || fail "fio wrote no report for $name"
	python3 - "$T/$name.json" "$name" "$op_ms" <<'EOF' || fail "$name stalled the VM's I/O"
import json, sys
path, name, op_ms = sys.argv[1], sys.argv[2], int(sys.argv[3])
text = open(path).read()  # fio may put a line about the signal first
w = json.loads(text[text.index("{"):])["jobs"][0]["write"]
cl = w["clat_ns"]
mx, p99 = cl["max"] / 1e6, cl["percentile"]["99.000000"] / 1e6
print(f"ok: {name}: took {op_ms} ms; the VM meanwhile: {w['iops']:.0f} IOPS, "
      f"longest write {mx:.1f} ms, p99 {p99:.2f} ms")
if op_ms < 200:
    sys.exit(f"{name} took {op_ms} ms: too short to show a stall (make the file larger)")
if mx >= op_ms / 3:
    sys.exit(f"the VM's longest write ({mx:.0f} ms) is a third or more of {name} ({op_ms} ms)")
EOF
}

with_fio prealloc fallocate -l 270G "$A/big"
[ "$(stat -c %s "$A/big")" = $((270 << 30)) ] || fail "big is not 270 GiB"
with_fio truncate truncate -s 135G "$A/big"
[ "$(stat -c %s "$A/big")" = $((135 << 30)) ] || fail "big is not 135 GiB"
with_fio delete rm "$A/big"
[ ! -e "$A/big" ] || fail "big is still there"
umount_lunfs "$A"
"$BIN/fsck.lunfs" -n "$IMG" >"$T/fsck.out" 2>&1 || { cat "$T/fsck.out"; fail "fsck -n"; }
ok "fsck -n clean"
