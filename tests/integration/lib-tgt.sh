# iSCSI targets for the tests (sourced, not run): a stock tgtd, and the
# common part of an istgt configuration.
# start_tgtd PORT IQN LUNFILE: tgtd on 127.0.0.1:PORT (control port PORT)
# with LUNFILE as LUN 1 of target IQN; stop_tgtd is registered to run at exit.
TGTD_PID=
TGT_PORT=
stop_tgtd() {
	[ -n "$TGTD_PID" ] || return 0
	if kill -0 "$TGTD_PID" 2>/dev/null; then
		tgtadm -C "$TGT_PORT" --lld iscsi --op delete --force --mode target --tid 1 >/dev/null 2>&1 || true
		tgtadm -C "$TGT_PORT" --op delete --mode system >/dev/null 2>&1 || true
		for _ in $(seq 50); do
			kill -0 "$TGTD_PID" 2>/dev/null || break
			sleep 0.1
		done
		kill -9 "$TGTD_PID" 2>/dev/null || true
	fi
	wait "$TGTD_PID" 2>/dev/null || true
	rm -f "/var/run/tgtd/socket.$TGT_PORT" "/var/run/tgtd/socket.$TGT_PORT.lock"
	TGTD_PID=
}
start_tgtd() {
	TGT_PORT=$1
	command -v tgtd >/dev/null && command -v tgtadm >/dev/null || fail "tgtd/tgtadm not found (package tgt)"
	tgtadm -C "$TGT_PORT" --op show --mode system >/dev/null 2>&1 &&
		fail "a tgtd already listens on control port $TGT_PORT"
	(exec 3<>/dev/tcp/127.0.0.1/"$TGT_PORT") 2>/dev/null && fail "127.0.0.1:$TGT_PORT is already in use"
	tgtd -f --iscsi portal=127.0.0.1:$TGT_PORT -C "$TGT_PORT" >"$T/tgtd.log" 2>&1 &
	TGTD_PID=$!
	on_exit stop_tgtd
	for _ in $(seq 100); do
		tgtadm -C "$TGT_PORT" --op show --mode system >/dev/null 2>&1 && break
		kill -0 "$TGTD_PID" 2>/dev/null || fail "tgtd exited: $(cat "$T/tgtd.log")"
		sleep 0.1
	done
	tgtadm -C "$TGT_PORT" --lld iscsi --op new --mode target --tid 1 -T "$2" &&
		tgtadm -C "$TGT_PORT" --lld iscsi --op new --mode logicalunit --tid 1 --lun 1 -b "$3" &&
		tgtadm -C "$TGT_PORT" --lld iscsi --op bind --mode target --tid 1 -I ALL ||
		fail "tgtadm could not set up the target"
}

# istgt_conf_head DIR PORT UCPORT: the [Global], [UnitControl], [PortalGroup1]
# and [InitiatorGroup1] sections of an istgt.conf for files in DIR, a portal
# on 127.0.0.1:PORT and unit control on UCPORT, all local only; the caller
# appends its [LogicalUnitN] sections (Mapping PortalGroup1 InitiatorGroup1).
istgt_conf_head() {
	: >"$1/auth.conf"
	cat <<EOF
[Global]
  NodeBase "iqn.2026-11.org.lunfs"
  PidFile $1/istgt.pid
  AuthFile $1/auth.conf
  MediaDirectory $1
  Timeout 30
  NopInInterval 20
  DiscoveryAuthMethod None
  MaxSessions 16
  MaxConnections 4
  FirstBurstLength 262144
  MaxBurstLength 1048576
  MaxRecvDataSegmentLength 262144
  InitialR2T Yes
  ImmediateData Yes
[UnitControl]
  AuthMethod None
  Portal UC1 127.0.0.1:$3
  Netmask 127.0.0.1
[PortalGroup1]
  Portal DA1 127.0.0.1:$2
[InitiatorGroup1]
  InitiatorName "ALL"
  Netmask 127.0.0.1
EOF
}

# Persistent-reservation keys of the LU at $URL, read with $PR (pr_tool).
keys() { "$PR" keys "$URL" | tail -n +2; }
has_key() { keys | grep -qx "$1"; }
# new_key KNOWN...: the one registered key not among KNOWN
new_key() {
	local k n=0 got=
	for k in $(keys); do
		case " $* " in *" $k "*) continue ;; esac
		got=$k
		n=$((n + 1))
	done
	[ $n = 1 ] || fail "want exactly one new PR key, found $n: $(keys | tr '\n' ' ')"
	case $got in 0x4c4e*) ;; *) fail "PR key $got lacks the LN (0x4c4e) prefix" ;; esac
	echo "$got"
}
