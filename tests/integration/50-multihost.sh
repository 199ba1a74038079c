#!/bin/bash
# Three hosts (h1, h2, h3) mount one volume.  Every namespace operation done
# on one host shows on the other two within a few seconds: create+write,
# mkdir, rename of a file and of a directory, link, symlink, chmod, setattr
# (times, owner), truncate (shrink and grow), setxattr/removexattr, unlink,
# rmdir.  Each operation is done by a different host than the one before, so
# the locks move between hosts.  Then: an O_RDWR open excludes the other
# hosts (EBUSY for opens and for changes to that inode, `lunfs locks` names
# the holder) until it is closed; three hosts hold one file open O_RDONLY at
# once and all read the right bytes; fsck -n is clean after all unmount.
. "$(dirname "$0")/lib.sh"
IMG="$T/v.img"
mkfs_multi "$IMG"
HOSTS="h1 h2 h3"
for h in $HOSTS; do mount_lunfs "$IMG" "$T/$h" "$h" "log=$T/$h.log"; done
ok "three hosts mounted"

# others H: the hosts other than H
others() { for o in $HOSTS; do [ "$o" = "$1" ] || echo "$o"; done; }
# seen HOST WHAT CHECK...: CHECK (with @ standing for HOST's mount point)
# must hold on every other host within 5 s of the operation (polled every
# 0.1 s); reports how long it took on each
seen() {
	h=$1 what=$2 t0=$(now_ms)
	shift 2
	msg=""
	for o in $(others "$h"); do
		args=()
		for a in "$@"; do args+=("${a//@/$T/$o}"); done
		left=$(( 5 - ($(now_ms) - t0) / 1000 ))
		[ "$left" -ge 1 ] || left=1
		poll "$left" "${args[@]}" || fail "$what on $h: not seen on $o after $(( $(now_ms) - t0 )) ms (check: ${args[*]})"
		msg="$msg $o $(( $(now_ms) - t0 )) ms,"
	done
	ok "$what on $h: seen on${msg%,}"
}
gone() { [ ! -e "$1" ] && [ ! -L "$1" ]; }
same_file() { cmp -s "$1" "$2"; }
renamed() { gone "$1" && cmp -s "$2" "$3"; }
linked() { [ "$(stat -c '%h %i' "$1" 2>/dev/null)" = "2 $(stat -c %i "$2")" ] && [ "$(stat -c %h "$2")" = 2 ]; }
stat_is() { [ "$(stat -c "$2" "$1" 2>/dev/null)" = "$3" ]; }
link_is() { [ "$(readlink "$1")" = "$2" ] && cmp -s "$1" "$3"; }
xattr_is() { python3 -c '
import os, sys
try:
    v = os.getxattr(sys.argv[1], sys.argv[2]).decode()
except OSError:
    v = None
sys.exit(0 if v == (sys.argv[3] if len(sys.argv) > 3 else None) else 1)' "$@"; }
prefix_is() { [ "$(stat -c %s "$1" 2>/dev/null)" = "$3" ] && cmp -s -n "$3" "$1" "$2"; }
grown_is() { # FILE REF PREFIX SIZE: REF's first PREFIX bytes, then zeros up to SIZE
	[ "$(stat -c %s "$1" 2>/dev/null)" = "$4" ] && cmp -s -n "$3" "$1" "$2" &&
		cmp -s -i "$3:0" -n $(( $4 - $3 )) "$1" /dev/zero
}

head -c 300000 /dev/urandom >"$T/ref"
cp "$T/ref" "$T/h1/f1"
seen h1 "create+write" same_file @/f1 "$T/ref"
mkdir "$T/h2/d1"
seen h2 "mkdir" test -d @/d1
mv "$T/h3/f1" "$T/h3/d1/f1b"
seen h3 "rename of a file into a directory" renamed @/f1 @/d1/f1b "$T/ref"
mv "$T/h1/d1" "$T/h1/d2"
seen h1 "rename of a directory" renamed @/d1 @/d2/f1b "$T/ref"
ln "$T/h2/d2/f1b" "$T/h2/hard"
seen h2 "link" linked @/hard @/d2/f1b
ln -s d2/f1b "$T/h3/sym"
seen h3 "symlink" link_is @/sym d2/f1b "$T/ref"
chmod 640 "$T/h1/d2/f1b"
seen h1 "chmod" stat_is @/hard %a 640
touch -m -d @1600000000 "$T/h2/hard"
chown 1234:5678 "$T/h2/hard"
seen h2 "setattr (mtime, owner)" stat_is @/d2/f1b '%Y %u %g' '1600000000 1234 5678'
truncate -s 1000 "$T/h3/d2/f1b"
seen h3 "truncate (shrink)" prefix_is @/hard "$T/ref" 1000
truncate -s 3000000 "$T/h1/hard"
seen h1 "truncate (grow)" grown_is @/d2/f1b "$T/ref" 1000 3000000
python3 -c 'import os,sys; os.setxattr(sys.argv[1], "user.color", b"blue")' "$T/h2/d2/f1b"
seen h2 "setxattr user.color" xattr_is @/hard user.color blue
python3 -c 'import os,sys; os.setxattr(sys.argv[1], "user.color", b"green")' "$T/h3/hard"
seen h3 "setxattr (replace)" xattr_is @/d2/f1b user.color green
python3 -c 'import os,sys; os.removexattr(sys.argv[1], "user.color")' "$T/h1/hard"
seen h1 "removexattr" xattr_is @/d2/f1b user.color
rm "$T/h2/hard"
seen h2 "unlink of one of two links" eval 'gone @/hard && stat_is @/d2/f1b %h 1'
rm "$T/h3/d2/f1b" "$T/h3/sym"
seen h3 "unlink of the last link and of a symlink" eval 'gone @/d2/f1b && gone @/sym'
rmdir "$T/h1/d2"
seen h1 "rmdir" gone @/d2
[ -z "$(ls -A "$T/h2")" ] && [ -z "$(ls -A "$T/h3")" ] || fail "root not empty: $(ls -A "$T/h2")"
ok "the root directory is empty again on every host"

# --- an O_RDWR open is exclusive against the other hosts
head -c 1048576 /dev/urandom >"$T/disk.ref"
cp "$T/disk.ref" "$T/h1/vm.disk"
on_exit "exec 7>&- 8>&-"
exec 7<>"$T/h1/vm.disk"
busy() { # CMD...: must fail with EBUSY
	if "$@" 2>"$T/err"; then fail "$* succeeded on a file open O_RDWR on another host"; fi
	grep -q 'Device or resource busy' "$T/err" || fail "$*: $(cat "$T/err"), want EBUSY"
}
poll 5 test -e "$T/h2/vm.disk" || fail "vm.disk not seen on h2"
busy sh -c "exec 6<>'$T/h2/vm.disk'"
busy sh -c "exec 6>>'$T/h3/vm.disk'"
busy chmod 600 "$T/h2/vm.disk"
busy rm "$T/h3/vm.disk"
busy mv "$T/h2/vm.disk" "$T/h2/vm2.disk"
busy truncate -s 0 "$T/h3/vm.disk"
"$BIN/lunfs" locks "$IMG" /vm.disk --json >"$T/locks.json" || fail "lunfs locks"
python3 -c '
import json, sys
l = json.load(open(sys.argv[1]))["locks"]
assert len(l) == 1 and l[0]["mode"] == "exclusive", l
h = l[0]["holders"]
assert len(h) == 1 and h[0]["host"] == "h1" and h[0]["open"], h' "$T/locks.json" ||
	fail "lunfs locks does not name h1 as the open holder: $(cat "$T/locks.json")"
cmp -s "$T/h3/vm.disk" "$T/disk.ref" || fail "O_RDONLY read on h3 of a file open O_RDWR on h1"
ok "h1 holds vm.disk O_RDWR: h2/h3 opens for writing, chmod, unlink, rename, truncate get EBUSY; lunfs locks names h1"
exec 7>&-
t0=$(now_ms)
poll 5 sh -c "exec 6<>'$T/h2/vm.disk'" || fail "h2 cannot open vm.disk O_RDWR after h1 closed it: $(sh -c "exec 6<>'$T/h2/vm.disk'" 2>&1)"
ok "after h1's close, h2 opens vm.disk O_RDWR (after $(( $(now_ms) - t0 )) ms)"
# and the other way round, writing through the open
exec 8<>"$T/h2/vm.disk"
printf 'written by h2' >&8
busy sh -c "exec 6<>'$T/h1/vm.disk'"
exec 8>&-
poll 5 sh -c "exec 6<>'$T/h1/vm.disk'" || fail "h1 cannot open vm.disk O_RDWR after h2 closed it"
printf 'written by h2' >"$T/want"
tail -c +14 "$T/disk.ref" >>"$T/want"
seen h2 "write through an O_RDWR open, then close" same_file @/vm.disk "$T/want"
ok "h2 holds it: h1 gets EBUSY; after h2's close h1 opens it, and everyone reads h2's write"

# --- shared read-only opens: three hosts at once
head -c 2500000 /dev/urandom >"$T/ro.ref"
cp "$T/ro.ref" "$T/h3/ro.dat"
for h in $HOSTS; do poll 5 same_file "$T/$h/ro.dat" "$T/ro.ref" || fail "ro.dat on $h"; done
on_exit "exec 3<&- 4<&- 5<&-"
exec 3<"$T/h1/ro.dat" 4<"$T/h2/ro.dat" 5<"$T/h3/ro.dat"
cmp - "$T/ro.ref" <&3 || fail "h1's O_RDONLY read"
cmp - "$T/ro.ref" <&4 || fail "h2's O_RDONLY read"
cmp - "$T/ro.ref" <&5 || fail "h3's O_RDONLY read"
# and a second pass through the same descriptors, interleaved, from offset 0
python3 - "$T/ro.ref" <<'EOF' || fail "interleaved preads through the three O_RDONLY opens"
import os, sys
ref = open(sys.argv[1], "rb").read()
for off in range(0, len(ref), 65536 * 3):
    for i, fd in enumerate((3, 4, 5)):
        o = off + i * 65536
        got = os.pread(fd, 65536, o)
        assert got == ref[o:o + 65536], (fd, o)
EOF
exec 3<&- 4<&- 5<&-
ok "h1, h2 and h3 hold ro.dat open O_RDONLY at once and all read the right bytes"

for h in $HOSTS; do umount_lunfs "$T/$h" || fail "umount $h"; done
slots_free "$IMG"
"$BIN/fsck.lunfs" -n "$IMG" >"$T/fsck.out" 2>&1 || fail "fsck -n: $(cat "$T/fsck.out")"
ok "all unmounted; fsck -n clean"
