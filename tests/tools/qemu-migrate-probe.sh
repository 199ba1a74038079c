#!/bin/bash
# Records what two unmodified QEMUs do to a VM disk in a lunfs volume during
# a live migration, and what lunfs answers (docs/notes/qemu-migration-trace.md).
#
#   bash tests/tools/qemu-migrate-probe.sh SCENARIO [OUTDIR]
#
# Source QEMU on hostA's mount, destination (-incoming) on hostB's mount of
# the same volume (SCENARIO same: both on hostA's); both run under strace
# (openat, close, flock, fcntl, fdatasync, fsync, fsetxattr) into
# OUTDIR/src.strace and OUTDIR/dst.strace; OUTDIR/marks has the phases with
# times, QMP replies and `lunfs locks` of the disk at each one; the consoles,
# QEMU's stderr and the daemons' logs are copied there too.  SCENARIO:
#   cross     plain migrate, nothing else
#   same      the same, both QEMUs on hostA's mount
#   late      destination with -S and late-block-activate; quit the source, then cont
#   retry     plain; after the failed activation: quit the source, cont the destination
#   rollback  plain; after the failed activation: cont the source
#   handoff   source with pause-before-switchover; lunfs handoff at pre-switchover; migrate-continue
# OUTDIR defaults to /tmp/qemu-probe-SCENARIO.  Needs strace.  Not a test.
. "$(dirname "$0")/../integration/lib.sh"
. "$(dirname "$0")/../integration/lib-guest.sh"
need strace
SCEN=${1:?usage: qemu-migrate-probe.sh cross|same|late|retry|rollback|handoff [OUTDIR]}
case "$SCEN" in cross | same | late | retry | rollback | handoff) ;; *) fail "unknown scenario $SCEN" ;; esac
OUT=${2:-/tmp/qemu-probe-$SCEN}
rm -rf "$OUT"
mkdir -p "$OUT"
IMG="$T/v.img"
mkfs_multi "$IMG" 1G
A="$T/a" B="$T/b"
mount_lunfs "$IMG" "$A" hostA "log=$T/a.log"
mount_lunfs "$IMG" "$B" hostB "log=$T/b.log"
guest_init
mkdir "$A/vm01"
truncate -s 64M "$A/vm01/disk.img"
on_exit "cp '$T/a.log' '$T/b.log' '$GDIR'/*.log '$GDIR'/*.err '$OUT/' 2>/dev/null"
DA=file=$A/vm01/disk.img,format=raw,if=virtio,cache=none,aio=io_uring
DB=file=$B/vm01/disk.img,format=raw,if=virtio,cache=none,aio=io_uring
ST=(strace -f -tt -y -e trace=openat,close,flock,fcntl,fdatasync,fsync,fsetxattr -e signal=none)
mark() { echo "$(date +%H:%M:%S.%N | cut -c1-15) $*" >>"$OUT/marks"; }
locks() { mark "locks ($1): $("$BIN/lunfs" locks "$IMG" /vm01/disk.img 2>&1 | tr '\n' '|')"; }
status() { qmp "$1" query-status | sed -n 's/.*"status": "\([a-z-]*\)".*/\1/p' | head -1; }
migstatus() { qmp src query-migrate | sed -n 's/.*"status": "\([a-z-]*\)".*/\1/p' | head -1; }
wait_mig() { # STATUS...: polls query-migrate (2 min)
	for _ in $(seq 600); do
		st=$(migstatus)
		case " $* failed cancelled " in *" $st "*) break ;; esac
		sleep 0.1
	done
	mark "source migration status: $st; $(qmp src query-migrate | grep -o '"downtime": [0-9]*, "total-time": [0-9]*')"
}

GUEST_WRAP=("${ST[@]}" -o "$OUT/src.strace")
mark "start source on hostA"
guest_boot src loop:2048 -drive "$DA"
guest_wait_line src 'GUEST-SEQ 5' 120 || fail "src: the guest does not write"
mark "source running, guest at seq 5"
locks "source running"
D=$DB
[ "$SCEN" = same ] && D=$DA
extra=()
[ "$SCEN" = late ] && extra=(-S)
GUEST_WRAP=("${ST[@]}" -o "$OUT/dst.strace")
mark "start destination ($SCEN) -incoming ${extra[*]}"
guest_boot dst loop:2048 -drive "$D" -incoming "unix:$T/mig.sock" "${extra[@]}"
mark "destination status: $(status dst)"
locks "destination started"
[ "$SCEN" = late ] && qmp dst migrate-set-capabilities \
	'{"capabilities": [{"capability": "late-block-activate", "state": true}]}' >>"$OUT/marks"
[ "$SCEN" = handoff ] && qmp src migrate-set-capabilities \
	'{"capabilities": [{"capability": "pause-before-switchover", "state": true}]}' >>"$OUT/marks"
mark "migrate"
qmp src migrate "{\"uri\": \"unix:$T/mig.sock\"}" >>"$OUT/marks"
if [ "$SCEN" = handoff ]; then
	wait_mig pre-switchover
	locks "pre-switchover"
	mark "handoff: $("$BIN/lunfs" handoff "$A/vm01/disk.img" hostB 2>&1)"
	locks "after the handoff"
	qmp src migrate-continue '{"state": "pre-switchover"}' >>"$OUT/marks"
	mark "migrate-continue sent"
fi
wait_mig completed
mark "source status: $(status src)"
locks "migration ended"
sleep 2
mark "destination status: $(status dst); stderr: $(tr '\n' '|' <"$GDIR/dst.err")"
case "$SCEN" in
late | retry)
	mark "quit the source"
	qmp src quit >>"$OUT/marks"
	guest_wait src 20 || true
	mark "source exited"
	locks "source exited"
	qmp dst cont >>"$OUT/marks"
	mark "cont sent to the destination"
	;;
rollback)
	qmp src cont >>"$OUT/marks"
	sleep 2
	mark "source status: $(status src)"
	locks "source continued"
	;;
esac
sleep 1
mark "destination status: $(status dst)"
locks "after the destination's activation"
sleep 4
mark "guest: source's last $(tr -d '\r' <"$GDIR/src.log" | grep -o 'GUEST-SEQ [0-9]*' | tail -1), destination's first $(tr -d '\r' <"$GDIR/dst.log" | grep -o 'GUEST-SEQ [0-9]*' | head -1), last $(tr -d '\r' <"$GDIR/dst.log" | grep -o 'GUEST-SEQ [0-9]*' | tail -1)"
if guest_pid src >/dev/null && _guest_alive src; then
	mark "quit the source"
	qmp src quit >>"$OUT/marks"
	guest_wait src 20 || true
	mark "source exited"
	locks "source exited"
fi
mark "quit the destination"
qmp dst quit >>"$OUT/marks"
guest_wait dst 20 || true
mark "destination exited"
locks "end"
echo "$OUT: marks, src.strace, dst.strace; the disk file's lines: grep disk.img $OUT/*.strace"
