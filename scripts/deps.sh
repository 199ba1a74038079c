#!/bin/sh
# Installs the Debian packages lunfs needs to build and test, only when missing.
set -e
PKGS="build-essential pkg-config libfuse3-dev fuse3 libiscsi-dev libiscsi-bin liburing-dev \
libxxhash-dev libblkid-dev libmount-dev check tgt istgt clang libclang-rt-14-dev fio python3 gdb spin \
nbdkit nbdkit-plugin-dev qemu-utils libnbd-bin qemu-system-x86 busybox-static strace"
# installed without their recommends (the guest kernel of the QEMU tests
# needs no firmware, initramfs-tools or microcode)
PKGS_NOREC="linux-image-amd64"
missing=""
missing_norec=""
for p in $PKGS; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing="$missing $p"
done
for p in $PKGS_NOREC; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing_norec="$missing_norec $p"
done
[ -z "$missing$missing_norec" ] && exit 0
if [ "$(id -u)" != 0 ]; then
	echo "deps: missing packages:$missing$missing_norec (run as root, or install them)" >&2
	exit 1
fi
echo "deps: installing$missing$missing_norec"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
[ -z "$missing" ] || apt-get install -y -qq $missing >/dev/null
[ -z "$missing_norec" ] || apt-get install -y -qq --no-install-recommends $missing_norec >/dev/null
