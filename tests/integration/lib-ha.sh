# Helpers for the HA restart tests (75, 76): VMs started by `lunfs ha agent`,
# not by the test.  Sourced after lib.sh and lib-guest.sh.
#
# ha_vm_script               writes $T/vm.sh, the registered command:
#                            vm.sh TAG DISK runs QEMU (TCG) on DISK with the
#                            guest job loop:2048:TAG, console $GDIR/ha-TAG.log,
#                            pidfile $GDIR/ha-TAG.pid, name lunfs-ha-TAG;
#                            register it with TAG = {host} plus a suffix
# ha_agent NAME MOUNT        starts `lunfs ha agent MOUNT` in the background,
#                            log $T/agent-NAME.log; AGENT_PID_NAME is its PID;
#                            waits until it knows its host's slot.  The cleanup
#                            continues and stops it
# ha_vm_pid TAG              the PID of TAG's QEMU (from its pidfile, checked
#                            against /proc/PID/cmdline), or fails
# ha_vm_kill TAG             SIGCONT then SIGKILL to TAG's QEMU, waits until it
#                            is gone; on_exit it for every TAG the test boots
# ha_seqs TAG                the GUEST-SEQ numbers on TAG's console, one a line
# ha_first_ms FILE SECONDS REGEX...
#                            polls FILE every 10 ms; prints, one a line, the
#                            CLOCK_REALTIME ms at which a line first matched
#                            each REGEX; fails when one did not within SECONDS
# ha_stamp_ms FILE REGEX     the ms (CLOCK_REALTIME) of the first line of a
#                            daemon or agent log matching REGEX (the
#                            YYYY-MM-DDTHH:MM:SS.mmm stamp each line starts with)

ha_vm_script() {
	guest_init
	cat >"$T/vm.sh" <<EOF
#!/bin/sh
# vm.sh TAG DISK: registered with lunfs ha register; run by an agent
exec qemu-system-x86_64 -accel tcg -m $GUEST_MEM -nographic -nodefaults -no-reboot \\
	-name "lunfs-ha-\$1" -kernel $GUEST_KERNEL -initrd $GUEST_INITRD \\
	-append "console=ttyS0 quiet panic=-1 lunfs_job=loop:2048:\$1" \\
	-serial "file:$GDIR/ha-\$1.log" -monitor none -pidfile "$GDIR/ha-\$1.pid" \\
	-drive "file=\$2,format=raw,if=virtio,cache=none,aio=io_uring"
EOF
	chmod 755 "$T/vm.sh"
}

ha_agent() {
	local name=$1 mnt=$2 p
	"$BIN/lunfs" ha agent "$mnt" --poll-ms "${HA_POLL_MS:-500}" >"$T/agent-$name.log" 2>&1 &
	p=$!
	eval "AGENT_PID_$name=$p"
	on_exit "kill -CONT $p 2>/dev/null; kill $p 2>/dev/null; wait $p 2>/dev/null"
	poll 10 grep -qs "this host's mount" "$T/agent-$name.log" ||
		fail "agent $name did not start: $(cat "$T/agent-$name.log")"
}

ha_vm_pid() {
	local p
	p=$(cat "$GDIR/ha-$1.pid" 2>/dev/null) || return 1
	[ -n "$p" ] && tr '\0' ' ' 2>/dev/null <"/proc/$p/cmdline" | grep -q -- "-name lunfs-ha-$1 " || return 1
	echo "$p"
}

ha_vm_kill() {
	local p
	p=$(ha_vm_pid "$1") || return 0
	kill -CONT "$p" 2>/dev/null
	kill -9 "$p" 2>/dev/null
	for _ in $(seq 100); do kill -0 "$p" 2>/dev/null || return 0; sleep 0.05; done
	return 0
}

ha_seqs() { tr -d '\r' 2>/dev/null <"$GDIR/ha-$1.log" | sed -n 's/^GUEST-SEQ //p'; }

ha_first_ms() {
	python3 - "$@" <<'EOF'
import re, sys, time
path, lim = sys.argv[1], float(sys.argv[2])
rxs = [re.compile(a) for a in sys.argv[3:]]
seen = [None] * len(rxs)
end = time.time() + lim
while time.time() < end and None in seen:
    try:
        lines = open(path, errors="replace").readlines()
    except FileNotFoundError:
        lines = []
    now = int(time.time() * 1000)
    for i, rx in enumerate(rxs):
        if seen[i] is None and any(rx.search(l) for l in lines):
            seen[i] = now
    time.sleep(0.01)
if None in seen:
    sys.exit(1)
print("\n".join(map(str, seen)))
EOF
}

ha_stamp_ms() {
	python3 - "$@" <<'EOF'
import datetime, re, sys
rx = re.compile(sys.argv[2])
for l in open(sys.argv[1], errors="replace"):
    if rx.search(l):
        t = datetime.datetime.strptime(l.split()[0], "%Y-%m-%dT%H:%M:%S.%f")
        print(int(t.timestamp() * 1000))
        sys.exit(0)
sys.exit(1)
EOF
}
