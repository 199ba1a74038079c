# Helpers for tests that boot a real guest under QEMU (TCG) on a disk file
# in a lunfs mount.  Sourced after lib.sh.
#
# guest_init                 builds $T/guest/initramfs.gz once (busybox-static,
#                            virtio_pci + virtio_blk and their dependencies, /init)
# guest_boot NAME JOB [QEMU-ARGS...]
#                            starts qemu-system-x86_64 -accel tcg in the background
#                            with lunfs_job=JOB on the kernel command line; the
#                            caller gives the disk (-drive ...) and any other
#                            argument (-incoming ...).  Serial console in
#                            $T/guest/NAME.log, QEMU's stdout+stderr in
#                            $T/guest/NAME.err, QMP socket $T/guest/NAME.qmp.
#                            GUEST_WRAP (an array) is put in front of the
#                            qemu command (e.g. strace).  The cleanup kills it.
# guest_pid NAME             the PID of NAME's QEMU (from its -pidfile)
# guest_wait NAME SECONDS    waits for NAME's QEMU to exit; returns its exit
#                            status, or 124 (and kills it) after SECONDS
# guest_wait_line NAME REGEX SECONDS
#                            waits for a console line matching REGEX
# guest_result NAME          the word after GUEST-DONE on NAME's console
# guest_stop NAME            kills NAME's QEMU (SIGTERM, then SIGKILL)
# guest_pattern SEED MIB     the pattern the guest's write job writes, on stdout
#                            (the same awk program run by the same busybox)
# qmp NAME COMMAND...        tests/tools/qmp.py on NAME's QMP socket
#
# Guest jobs (lunfs_job= on the kernel command line, run by /init on /dev/vda):
#   write:SEED:MIB[:OFF]     writes guest_pattern SEED MIB at OFF MiB (default 0),
#                            fsyncs, drops the page cache and reads it back with
#                            O_DIRECT: GUEST-DONE <sha256 of what it read>
#   verify:MIB[:OFF]         GUEST-DONE <sha256 of MIB MiB at OFF MiB>
#   loop[:SECTORS[:TAG]]     writes sector n % SECTORS (default 2048) with
#                            "lunfs-loop seq n" (O_DIRECT, fsync) for n = 1, 2, ...
#                            and prints "GUEST-SEQ n" after each one is acknowledged;
#                            with TAG, the sector says "lunfs-loop seq n TAG"
#   idle                     prints GUEST-READY and waits
# Every job prints GUEST-READY first (the disk is there), GUEST-FAIL <why> on
# an error, and ends with poweroff -f (QEMU exits with status 0: -no-reboot).
need qemu-system-x86_64 cpio gzip
[ -x /bin/busybox ] && file -L /bin/busybox 2>/dev/null | grep -q 'statically linked' ||
	fail "/bin/busybox is not busybox-static (run make deps)"
GUEST_KVER=${GUEST_KVER:-$(ls /boot/vmlinuz-*-amd64 2>/dev/null | sed 's|/boot/vmlinuz-||' | sort -V | tail -1)}
GUEST_KERNEL=/boot/vmlinuz-$GUEST_KVER
[ -n "$GUEST_KVER" ] && [ -r "$GUEST_KERNEL" ] || fail "no /boot/vmlinuz-*-amd64 (run make deps)"
GDIR=$T/guest
GUEST_INITRD=$GDIR/initramfs.gz
GUEST_MEM=${GUEST_MEM:-256}
GUEST_WRAP=()
QMP_TOOL=$ROOT/tests/tools/qmp.py

# the pattern: 512 bytes per sector, one line each, "lunfs SEED blk B sec S
# rnd R" padded with dots; R from busybox awk's rand() after srand(SEED)
_guest_awk='BEGIN {
	srand(seed)
	pad = "................................................................"
	while (length(pad) < 512) pad = pad pad
	for (b = 0; b < mib * 256; b++)
		for (s = 0; s < 8; s++) {
			l = sprintf("lunfs %s blk %d sec %d rnd %08x ", seed, b, s, int(rand() * 4294967295))
			printf "%s%s\n", l, substr(pad, 1, 511 - length(l))
		}
}'
guest_pattern() { /bin/busybox awk -v seed="$1" -v mib="$2" "$_guest_awk"; }

# _guest_mods MODULE...: the .ko paths (relative to /lib/modules/KVER) of the
# modules and their dependencies from modules.dep, dependencies first;
# built-in modules are skipped
_guest_mods() {
	python3 - "/lib/modules/$GUEST_KVER" "$@" <<'EOF'
import os, sys
base, want = sys.argv[1], sys.argv[2:]
deps = {}
for line in open(os.path.join(base, "modules.dep")):
    mod, _, rest = line.partition(":")
    deps[mod] = rest.split()
def name(p):
    return os.path.basename(p).split(".ko")[0].replace("-", "_")
byname = {name(p): p for p in deps}
builtin = {name(l.strip()) for l in open(os.path.join(base, "modules.builtin"))}
out = []
def visit(p):
    if p in out:
        return
    for d in deps[p]:  # every (transitive) dependency is listed
        visit(d)
    out.append(p)
for w in want:
    if w in builtin:
        continue
    if w not in byname:
        sys.exit("module %s: not in modules.dep of %s" % (w, base))
    visit(byname[w])
print("\n".join(out))
EOF
}

guest_init() {
	[ -s "$GUEST_INITRD" ] && return 0
	local r=$GDIR/root m f
	rm -rf "$r"
	mkdir -p "$r"/bin "$r"/sbin "$r"/proc "$r"/sys "$r"/dev "$r"/mod "$r"/tmp
	cp /bin/busybox "$r/bin/busybox"
	mods=$(_guest_mods virtio_pci virtio_blk) || fail "guest modules"
	: >"$r/mod/order"
	for m in $mods; do
		f=/lib/modules/$GUEST_KVER/$m
		case "$m" in
		*.ko) cp "$f" "$r/mod/" ;;
		*.ko.xz) xz -dc "$f" >"$r/mod/$(basename "$m" .xz)" ;;
		*.ko.zst) zstd -qdc "$f" >"$r/mod/$(basename "$m" .zst)" ;;
		*.ko.gz) gzip -dc "$f" >"$r/mod/$(basename "$m" .gz)" ;;
		*) fail "module $m: unknown compression" ;;
		esac
		basename "${m%.ko*}.ko" >>"$r/mod/order"
	done
	printf '%s\n' "$_guest_awk" >"$r/pattern.awk"
	cat >"$r/init" <<'EOF'
#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
done_() { echo "$*"; sync; poweroff -f; sleep 10; }
for m in $(cat /mod/order); do insmod /mod/$m || done_ "GUEST-FAIL insmod $m"; done
job=
for a in $(cat /proc/cmdline); do
	case "$a" in lunfs_job=*) job=${a#lunfs_job=} ;; esac
done
for i in $(seq 100); do [ -b /dev/vda ] && break; sleep 0.1; done
[ -b /dev/vda ] || done_ "GUEST-FAIL no /dev/vda"
echo; echo "GUEST-READY $job $(cat /sys/block/vda/size) sectors"
IFS=: read -r kind a1 a2 a3 <<JOB
$job
JOB
case "$kind" in
write)
	awk -v seed="$a1" -v mib="$a2" -f /pattern.awk |
		dd of=/dev/vda bs=1048576 seek="${a3:-0}" iflag=fullblock conv=notrunc,fsync 2>/tmp/dd.err ||
		done_ "GUEST-FAIL write: $(cat /tmp/dd.err)"
	sync
	echo 3 >/proc/sys/vm/drop_caches
	sum=$(dd if=/dev/vda bs=1048576 skip="${a3:-0}" count="$a2" iflag=direct 2>/dev/null | sha256sum)
	done_ "GUEST-DONE ${sum%% *}"
	;;
verify)
	sum=$(dd if=/dev/vda bs=1048576 skip="${a2:-0}" count="$a1" iflag=direct 2>/dev/null | sha256sum)
	done_ "GUEST-DONE ${sum%% *}"
	;;
loop)
	n=0 secs=${a1:-2048}
	while :; do
		n=$((n + 1))
		printf '%-511s\n' "lunfs-loop seq $n${a2:+ $a2}" |
			dd of=/dev/vda bs=512 seek=$((n % secs)) oflag=direct conv=notrunc,fsync 2>/tmp/dd.err ||
			done_ "GUEST-FAIL loop seq $n: $(cat /tmp/dd.err)"
		echo "GUEST-SEQ $n"
	done
	;;
idle)
	while :; do sleep 1; done
	;;
*) done_ "GUEST-FAIL unknown job '$job'" ;;
esac
EOF
	chmod 755 "$r/init"
	(cd "$r" && find . | cpio -o -H newc --quiet | gzip -1) >"$GUEST_INITRD.tmp" || fail "initramfs"
	mv "$GUEST_INITRD.tmp" "$GUEST_INITRD"
}

guest_boot() {
	local name=$1 job=$2
	shift 2
	guest_init
	rm -f "$GDIR/$name.log" "$GDIR/$name.err" "$GDIR/$name.qmp" "$GDIR/$name.pid"
	"${GUEST_WRAP[@]}" qemu-system-x86_64 -accel tcg -m "$GUEST_MEM" -nographic -nodefaults -no-reboot \
		-name "lunfs-$name" -kernel "$GUEST_KERNEL" -initrd "$GUEST_INITRD" \
		-append "console=ttyS0 quiet panic=-1 lunfs_job=$job" \
		-serial "file:$GDIR/$name.log" -monitor none \
		-qmp "unix:$GDIR/$name.qmp,server,nowait" -pidfile "$GDIR/$name.pid" \
		"$@" </dev/null >"$GDIR/$name.err" 2>&1 &
	eval "GUEST_JOB_$name=$!"
	on_exit "guest_stop $name"
}

# guest_pid NAME: QEMU's own PID (written by QEMU at start; waits up to 10 s)
guest_pid() {
	local j
	j=$(eval echo "\${GUEST_JOB_$1:-}")
	for _ in $(seq 100); do
		[ -s "$GDIR/$1.pid" ] && { cat "$GDIR/$1.pid"; return 0; }
		[ -n "$j" ] && kill -0 "$j" 2>/dev/null || return 1
		sleep 0.1
	done
	return 1
}

# _guest_alive NAME: NAME's QEMU (or its wrapper) is still running
_guest_alive() {
	local j
	j=$(eval echo "\${GUEST_JOB_$1:-}")
	[ -n "$j" ] && kill -0 "$j" 2>/dev/null
}

guest_wait() {
	local name=$1 lim=$(( $2 * 10 )) j rc
	j=$(eval echo "\${GUEST_JOB_$name:-}")
	[ -n "$j" ] || return 127
	for _ in $(seq "$lim"); do
		_guest_alive "$name" || break
		sleep 0.1
	done
	if _guest_alive "$name"; then
		guest_stop "$name"
		return 124
	fi
	rc=0
	wait "$j" || rc=$?
	return $rc
}

guest_wait_line() {
	local name=$1 re=$2 lim=$(( $3 * 10 ))
	for _ in $(seq "$lim"); do
		grep -Eq "$re" "$GDIR/$name.log" 2>/dev/null && return 0
		_guest_alive "$name" || { grep -Eq "$re" "$GDIR/$name.log" 2>/dev/null; return; }
		sleep 0.1
	done
	return 1
}

guest_result() { tr -d '\r' <"$GDIR/$1.log" | sed -n 's/^GUEST-DONE //p' | tail -1; }

# guest_stop NAME: SIGTERM to QEMU (by the PID it wrote, or the job's own
# PID), SIGKILL after 5 s; then reaps the job.  Only our own processes.
guest_stop() {
	local name=$1 j p
	j=$(eval echo "\${GUEST_JOB_$name:-}")
	[ -n "$j" ] || return 0
	if kill -0 "$j" 2>/dev/null; then
		p=$(cat "$GDIR/$name.pid" 2>/dev/null || true)
		# the pidfile names our QEMU only while our job (QEMU, or its wrapper) runs
		[ -n "$p" ] && kill "$p" 2>/dev/null
		kill "$j" 2>/dev/null
		for _ in $(seq 50); do kill -0 "$j" 2>/dev/null || break; sleep 0.1; done
		if kill -0 "$j" 2>/dev/null; then
			[ -n "$p" ] && kill -9 "$p" 2>/dev/null
			kill -9 "$j" 2>/dev/null
		fi
	fi
	wait "$j" 2>/dev/null || true
	return 0
}

qmp() {
	local name=$1
	shift
	python3 "$QMP_TOOL" "$GDIR/$name.qmp" "$@"
}
