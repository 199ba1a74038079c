#!/bin/bash
# The admin's tools: --help and --version (exit 0, one version everywhere);
# every option each tool parses is in its man page (read mechanically from
# the option tables); make uninstall removes exactly what make install put
# in place, and a program built against the installed lunfs.h with
# pkg-config alone runs; bash completion; lunfs locks through a mount path;
# mount.lunfs LABEL= and UUID= on a loop device; fsck's problem lines.
. "$(dirname "$0")/lib.sh"
ver=$(sed -n 's/^#define LUNFS_RELEASE "\(.*\)"/\1/p' "$ROOT/fs/version.h")
[ -n "$ver" ] || fail "no LUNFS_RELEASE in fs/version.h"
for t in mkfs.lunfs fsck.lunfs lunfs mount.lunfs; do
	"$BIN/$t" --help >"$T/out" || fail "$t --help: exit $?"
	grep -qi usage "$T/out" || fail "$t --help prints no usage"
	"$BIN/$t" --version >"$T/out" || fail "$t --version: exit $?"
	grep -q "^$t (lunfs) $ver\$" "$T/out" || fail "$t --version: $(cat "$T/out"), want $ver"
done
ok "--help and --version: exit 0, version $ver everywhere"
expect_fail 16 "usage" "$BIN/fsck.lunfs" --bogus x.img
expect_fail 2 "usage" "$BIN/mkfs.lunfs" --bogus x.img
expect_fail 2 "unknown option" "$BIN/lunfs" --bogus info x.img
expect_fail 2 "unknown option" "$BIN/mount.lunfs" --bogus x.img /mnt
python3 "$ROOT/tests/integration/opts_in_man.py" "$ROOT" || fail "options missing from man pages"
ok "every parsed option is in its man page"
make -s -C "$ROOT" install DESTDIR="$T/root" PREFIX=/usr >/dev/null || fail "make install"
n=$(find "$T/root" \( -type f -o -type l \) | wc -l)
[ -L "$T/root/sbin/umount.fuse.lunfs" ] || fail "umount helper not installed"
[ -f "$T/root/usr/share/bash-completion/completions/lunfs" ] || fail "completion not installed"
[ -f "$T/root/usr/share/doc/lunfs/examples/vmfs-lun0.mount" ] || fail "systemd unit example not installed"
# the public header alone: nothing else of the tree is installed, and a
# program built with pkg-config (strict C11, warnings as errors) runs
hdrs=$(cd "$T/root/usr/include" && find . -type f | sort | tr '\n' ' ')
[ "$hdrs" = "./lunfs/lunfs.h " ] || fail "make install put headers other than lunfs.h: $hdrs"
pc() { PKG_CONFIG_PATH="$T/root/usr/lib/pkgconfig" pkg-config --define-variable=prefix="$T/root/usr" "$@"; }
# shellcheck disable=SC2046
cc -std=c11 -pedantic -Wall -Wextra -Werror $(pc --cflags lunfs) -o "$T/embed" "$ROOT/tests/integration/embed.c" \
	$(pc --libs lunfs) 2>"$T/out" || fail "a program against the installed lunfs.h: $(cat "$T/out")"
truncate -s 300M "$T/e.img"
"$BIN/mkfs.lunfs" -q -N 2 -J 1M "$T/e.img"
LD_LIBRARY_PATH="$T/root/usr/lib" "$T/embed" "$T/e.img" >"$T/out" || fail "the embedding program: exit $?"
grep -q "^bsize 1048576 blocks [1-9]" "$T/out" || fail "the embedding program: $(cat "$T/out")"
ok "make install: lunfs.h alone and lunfs.pc; a program built with pkg-config --cflags --libs lunfs mounts a volume"
make -s -C "$ROOT" uninstall DESTDIR="$T/root" PREFIX=/usr >/dev/null || fail "make uninstall"
left=$(find "$T/root" \( -type f -o -type l \))
[ -z "$left" ] || fail "make uninstall left: $left"
ok "make install puts $n files in place, make uninstall removes them all"
# completion: the functions load and complete
# shellcheck disable=SC1091
( set +eu; . "$ROOT/contrib/lunfs.bash-completion"
  COMP_WORDS=(lunfs lo); COMP_CWORD=1; _lunfs lunfs; [ "${COMPREPLY[*]}" = locks ] || exit 1
  COMP_WORDS=(mkfs.lunfs --lea); COMP_CWORD=1; _lunfs mkfs.lunfs; [ "${COMPREPLY[*]}" = --lease-ms ] ) ||
	fail "bash completion"
ok "bash completion"
# lunfs locks through a mount path; LABEL= and UUID=
truncate -s 600M "$T/v.img"
"$BIN/mkfs.lunfs" -q -N 4 -J 1M -L it47label "$T/v.img"
loop=$(losetup -f --show "$T/v.img") || fail "losetup"
on_exit "losetup -d $loop"
mkdir "$T/m"
"$BIN/mount.lunfs" LABEL=it47label "$T/m" -o host=esx01 || fail "mount.lunfs LABEL="
on_exit "umount_lunfs '$T/m'"
grep -q "^$loop $T/m fuse.lunfs" /proc/mounts || fail "LABEL= did not mount $loop: $(grep "$T/m" /proc/mounts)"
echo vm >"$T/m/vm.vmx"
exec 7>>"$T/m/vm.vmx"
"$BIN/lunfs" locks "$T/m/vm.vmx" >"$T/out" || fail "lunfs locks MOUNT/FILE: exit $?"
grep -q "^inode .*exclusive.*esx01(slot 0, open)" "$T/out" || fail "lunfs locks MOUNT/FILE: $(cat "$T/out")"
"$BIN/lunfs" hosts "$T/m" | grep -q "esx01" || fail "lunfs hosts MOUNTPOINT"
exec 7>&-
ok "lunfs locks MOUNT/FILE and lunfs hosts MOUNTPOINT read the mount's device"
umount_lunfs "$T/m"
uuid=$("$BIN/lunfs" info "$T/v.img" | awk '/^uuid:/{print $2}')
"$BIN/mount.lunfs" "UUID=$uuid" "$T/m" -o host=esx01 || fail "mount.lunfs UUID="
grep -q "^$loop $T/m " /proc/mounts || fail "UUID= did not mount $loop"
umount_lunfs "$T/m"
expect_fail 1 "LABEL=nope.*no lunfs volume" "$BIN/mount.lunfs" LABEL=nope "$T/m" -o host=esx01
ok "mount.lunfs LABEL= and UUID= find the loop device"
# fsck problem lines: parentheses closed, no double space under -y
truncate -s 600M "$T/f.img"
"$BIN/mkfs.lunfs" -q -N 4 -J 1M "$T/f.img"
dd if=/dev/zero of="$T/f.img" bs=4096 count=1 conv=notrunc status=none
set +e
"$BIN/fsck.lunfs" -y "$T/f.img" >"$T/out" 2>&1; rc=$?
set -e
[ $rc = 1 ] || fail "fsck -y of a zeroed primary: exit $rc: $(cat "$T/out")"
line=$(grep SB_PRIMARY_BAD "$T/out")
python3 -c 'import sys; l=sys.argv[1]; assert l.count("(")==l.count(")") and "  " not in l.strip() and ": rewrite it" in l, l' "$line" ||
	fail "fsck problem line: $line"
"$BIN/fsck.lunfs" -n "$T/f.img" >/dev/null || fail "second fsck not clean"
ok "fsck problem line: $line"
