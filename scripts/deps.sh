#!/bin/sh
# Installs the Debian packages lunfs needs to build and test, only when missing.
set -e
PKGS="build-essential pkg-config libfuse3-dev fuse3 libiscsi-dev libiscsi-bin liburing-dev \
libxxhash-dev libblkid-dev libmount-dev check tgt istgt clang libclang-rt-14-dev fio python3 gdb spin \
nbdkit nbdkit-plugin-dev qemu-utils libnbd-bin"
missing=""
for p in $PKGS; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
if [ "$(id -u)" != 0 ]; then
	echo "deps: missing packages:$missing (run as root, or install them)" >&2
	exit 1
fi
echo "deps: installing$missing"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq $missing >/dev/null
