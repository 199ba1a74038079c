#!/bin/bash
# 4 processes of random create/rename/link/unlink/mkdir/rmdir/write in one
# tree on a real mount, then unmount and fsck -n clean.
. "$(dirname "$0")/lib.sh"
truncate -s 1G "$T/v.img"
"$BIN/mkfs.lunfs" -q -N 8 -J 2M "$T/v.img"
mount_lunfs "$T/v.img" "$T/mnt" stress
M="$T/mnt"
mkdir -p "$M/a" "$M/b" "$M/c"
worker() {
	RANDOM=$1
	local dirs=(a b c a/x b/y) i n d e
	for i in $(seq 400); do
		n=$((RANDOM % 20)); d=${dirs[RANDOM % 5]}; e=${dirs[RANDOM % 5]}
		case $((RANDOM % 8)) in
		0) : >"$M/$d/f$n" ;;
		1) mv "$M/$d/f$n" "$M/$e/f$((RANDOM % 20))" ;;
		2) ln "$M/$d/f$n" "$M/$e/h$1-$n" ;;
		3) rm -f "$M/$d/f$n" "$M/$d/h$1-$n" ;;
		4) mkdir "$M/$d/x" "$M/$d/y" ;;
		5) rmdir "$M/$d/x" "$M/$d/y" ;;
		6) head -c $((RANDOM * 40)) /dev/urandom >"$M/$d/f$n" ;;
		7) ls -la "$M/$d" >/dev/null ;;
		esac 2>/dev/null
	done
}
for w in 1 2 3 4; do worker $w & done
wait
count=$(find "$M" | wc -l)
umount_lunfs "$M" || fail "unmount"
"$BIN/fsck.lunfs" -n "$T/v.img" >"$T/fsck" || fail "fsck after the stress run: $(cat "$T/fsck")"
ok "4 x 400 random namespace operations; $count entries left; fsck clean"
