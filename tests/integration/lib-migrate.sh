# Live migration of a lib-guest.sh guest between two hosts of one volume
# (tests 73 and 74).  Sourced after lib.sh and lib-guest.sh.
#
# mig_setup                 mkfs; hostA, hostB and hostC mount it ($A $B $C);
#                           a 64 MiB thin vm01/disk.img; QEMU "src" on A runs
#                           the loop job; QEMU "dst" on B waits with -incoming
#                           (DST_ARGS: more arguments for it)
# mig_third_busy PHASE      hostC's O_RDWR open of the disk fails with EBUSY
#                           (after its open_wait_ms; THIRD_MS: how long it took)
# mig_locks_name HOST       lunfs locks names HOST as the disk's only, open holder
# mig_status NAME           QEMU NAME's run state (query-status)
# mig_wait_status NAME STATE SECONDS
# mig_migrate_status        the source's query-migrate status
# mig_wait_migration SECONDS STATUS...
# mig_verify                after both QEMUs exited: the guest's GUEST-SEQ
#                           lines of src and dst form 1..N without a gap, and
#                           every acknowledged write is on the disk (read on C)
MIG_SECTORS=2048
mig_setup() {
	IMG="$T/v.img"
	mkfs_multi "$IMG" 1G
	A="$T/a" B="$T/b" C="$T/c"
	mount_lunfs "$IMG" "$A" hostA "log=$T/a.log"
	mount_lunfs "$IMG" "$B" hostB "log=$T/b.log"
	mount_lunfs "$IMG" "$C" hostC "log=$T/c.log"
	guest_init
	mkdir "$A/vm01"
	truncate -s 64M "$A/vm01/disk.img"
	guest_boot src "loop:$MIG_SECTORS" -drive "file=$A/vm01/disk.img,format=raw,if=virtio,cache=none,aio=io_uring"
	guest_wait_line src 'GUEST-SEQ 20' 120 || fail "src: the guest does not write: $(cat "$GDIR/src.log" "$GDIR/src.err")"
	poll 5 test -e "$B/vm01/disk.img" || fail "vm01/disk.img not seen on hostB"
	guest_boot dst "loop:$MIG_SECTORS" -drive "file=$B/vm01/disk.img,format=raw,if=virtio,cache=none,aio=io_uring" \
		-incoming "unix:$T/mig.sock" ${DST_ARGS:-}
	mig_wait_status dst inmigrate 30 || fail "dst (on hostB, -incoming): $(mig_status dst) $(cat "$GDIR/dst.err")"
	ok "src runs on hostA (guest writing), dst waits with -incoming on hostB's mount of the same disk"
}
mig_status() { qmp "$1" query-status 2>/dev/null | sed -n 's/.*"status": "\([a-z-]*\)".*/\1/p' | head -1; }
mig_wait_status() {
	local end=$(( $(now_ms) + $3 * 1000 ))
	while [ "$(now_ms)" -lt "$end" ]; do
		[ "$(mig_status "$1")" = "$2" ] && return 0
		sleep 0.1
	done
	return 1
}
# mig_wait_migration SECONDS STATUS...: polls the source's query-migrate
# until its status is one of STATUS (or failed/cancelled); MIG_ST is the last
mig_wait_migration() {
	local end=$(( $(now_ms) + $1 * 1000 ))
	shift
	while :; do
		MIG_ST=$(mig_migrate_status)
		case " $* failed cancelled " in *" $MIG_ST "*) return 0 ;; esac
		[ "$(now_ms)" -lt "$end" ] || return 1
		sleep 0.1
	done
}
mig_migrate_status() { qmp src query-migrate | sed -n 's/.*"status": "\([a-z-]*\)".*/\1/p' | head -1; }
mig_third_busy() {
	local t0
	t0=$(now_ms)
	if sh -c "exec 6<>'$C/vm01/disk.img'" 2>"$T/err"; then
		fail "$1: hostC opened the VM disk read-write"
	fi
	grep -q 'Device or resource busy' "$T/err" || fail "$1: hostC's open: $(cat "$T/err"), want EBUSY"
	THIRD_MS=$(( $(now_ms) - t0 ))
}
mig_locks_name() {
	"$BIN/lunfs" locks "$IMG" /vm01/disk.img --json >"$T/locks.json" || fail "lunfs locks"
	python3 -c '
import json, sys
l = json.load(open(sys.argv[1]))["locks"]
assert len(l) == 1 and l[0]["mode"] == "exclusive", l
h = l[0]["holders"]
assert len(h) == 1 and h[0]["host"] == sys.argv[2] and h[0]["open"], h' "$T/locks.json" "$1" ||
		fail "lunfs locks does not name $1 as the open holder: $(cat "$T/locks.json")"
}
mig_verify() {
	python3 - "$GDIR/src.log" "$GDIR/dst.log" "$C/vm01/disk.img" "$MIG_SECTORS" <<'EOF' || fail "mig_verify"
import re, sys
src, dst, disk, secs = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
# a console line cut by the switchover goes on in dst's log: read them as one
text = open(src, errors="replace").read() + open(dst, errors="replace").read()
seqs = [int(x) for x in re.findall(r"GUEST-SEQ (\d+)", text.replace("\r", ""))]
dseqs = [int(x) for x in re.findall(r"GUEST-SEQ (\d+)", open(dst, errors="replace").read())]
if not dseqs:
    sys.exit("the guest wrote nothing on the destination")
n = max(seqs)
missing = sorted(set(range(1, n + 1)) - set(seqs))
if missing or seqs != sorted(seqs):
    sys.exit("the guest's sequence is broken: missing %s" % missing[:10])
data = open(disk, "rb").read(secs * 512)
bad = []
for k in range(max(1, n - secs + 1), n + 1):
    s = k % secs
    got = data[s * 512:s * 512 + 512].split(b"\n")[0].strip().decode(errors="replace")
    ok = [("lunfs-loop seq %d" % k)]
    if s == (n + 1) % secs:  # write n + 1 may have landed before the QEMU quit
        ok.append("lunfs-loop seq %d" % (n + 1))
    if got not in ok:
        bad.append((k, got))
if bad:
    sys.exit("acknowledged writes missing from the disk (seq, found): %s" % bad[:5])
print("guest writes 1..%d (%d on the destination, from %d): all acknowledged writes of the last %d on the disk"
      % (n, len(dseqs), dseqs[0], min(n, secs)))
EOF
}
