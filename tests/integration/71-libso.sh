#!/bin/bash
# The shared library and the installed plugin: make install lays out
# liblunfs.so.RELEASE with its soname link liblunfs.so.MAJOR and the
# development link liblunfs.so beside liblunfs.a; the .so exports exactly
# the functions of lunfs.h; lunfs.pc names the dependencies as private, so
# `cc prog.c $(pkg-config --cflags --libs lunfs)` alone links the .so, and
# the program mounts a volume, writes a file and reads it back.  The
# installed plugin runs by its name (`nbdkit ... lunfs DEVICE file=...`) and
# serves the file the program wrote.  make uninstall removes it all.
. "$(dirname "$0")/lib.sh"
need nbdkit nbdcopy readelf nm pkg-config cc
ver=$(sed -n 's/^#define LUNFS_RELEASE "\(.*\)"/\1/p' "$ROOT/fs/version.h")
major=${ver%%.*}
plugindir=$(pkg-config --variable=plugindir nbdkit)
[ -n "$plugindir" ] || fail "pkg-config knows no nbdkit plugindir"
make -s -C "$ROOT" install DESTDIR="$T/root" PREFIX=/usr >/dev/null || fail "make install"
L="$T/root/usr/lib"
[ -f "$L/liblunfs.so.$ver" ] && [ ! -L "$L/liblunfs.so.$ver" ] || fail "liblunfs.so.$ver not installed"
[ "$(readlink "$L/liblunfs.so.$major")" = "liblunfs.so.$ver" ] || fail "liblunfs.so.$major is not a link to liblunfs.so.$ver"
[ "$(readlink "$L/liblunfs.so")" = "liblunfs.so.$major" ] || fail "liblunfs.so is not a link to liblunfs.so.$major"
[ -f "$L/liblunfs.a" ] || fail "the static liblunfs.a is not installed"
soname=$(readelf -d "$L/liblunfs.so.$ver" | sed -n 's/.*(SONAME).*\[\(.*\)\]/\1/p')
[ "$soname" = "liblunfs.so.$major" ] || fail "soname '$soname', want liblunfs.so.$major"
[ -f "$T/root$plugindir/nbdkit-lunfs-plugin.so" ] || fail "the plugin is not in $plugindir"
[ -f "$T/root/usr/share/man/man1/nbdkit-lunfs-plugin.1" ] || fail "nbdkit-lunfs-plugin.1 not installed"
ok "make install: liblunfs.so.$ver (soname liblunfs.so.$major), the links, liblunfs.a, the plugin in $plugindir, its man page"
# the exports are the public API: every function of lunfs.h, nothing else
api=$(grep -oE '\blunfs_[a-z_]+\(' "$T/root/usr/include/lunfs/lunfs.h" | tr -d '(' | sort -u)
exp=$(nm -D --defined-only "$L/liblunfs.so.$ver" | awk '$2 == "T" { sub(/@.*/, "", $3); print $3 }' | sort -u)
other=$(nm -D --defined-only "$L/liblunfs.so.$ver" | awk '$2 != "T" && $2 != "A"')
[ "$api" = "$exp" ] && [ -z "$other" ] ||
	fail "liblunfs.so exports other than lunfs.h's functions: $(diff <(echo "$api") <(echo "$exp") | grep '^[<>]' | tr '\n' ' ') $other"
ok "liblunfs.so exports the $(echo "$exp" | wc -l) functions of lunfs.h and nothing else"
pc() { PKG_CONFIG_PATH="$L/pkgconfig" pkg-config --define-variable=prefix="$T/root/usr" "$@"; }
libs=$(pc --libs lunfs) || fail "pkg-config --libs lunfs"
case " $libs " in *" -llunfs "*) ;; *) fail "pkg-config --libs lunfs: $libs" ;; esac
case "$libs" in *iscsi* | *uring*) fail "pkg-config --libs lunfs names private dependencies: $libs" ;; esac
slibs=$(pc --static --libs lunfs)
case "$slibs" in *-liscsi*-luring*-lxxhash*-lblkid*-pthread* | *-pthread*-liscsi*) ;;
	*) fail "pkg-config --static --libs lunfs lacks the dependencies: $slibs" ;; esac
ok "lunfs.pc: --libs '$libs'; --static adds the dependencies"
# shellcheck disable=SC2046
cc "$ROOT/tests/integration/libso.c" $(pc --cflags --libs lunfs) -o "$T/libso" 2>"$T/out" ||
	fail "cc libso.c \$(pkg-config --cflags --libs lunfs): $(cat "$T/out")"
readelf -d "$T/libso" | grep -q "NEEDED.*\[liblunfs.so.$major\]" || fail "the program does not need liblunfs.so.$major"
LD_LIBRARY_PATH="$L" ldd "$T/libso" | grep -q "liblunfs.so.$major => $L/liblunfs.so.$major" ||
	fail "the loader does not take the installed library: $(LD_LIBRARY_PATH="$L" ldd "$T/libso")"
truncate -s 512M "$T/v.img"
"$BIN/mkfs.lunfs" -q -N 4 -J 1M "$T/v.img" || fail "mkfs.lunfs"
LD_LIBRARY_PATH="$L" "$T/libso" "$T/v.img" app1 >"$T/out" 2>"$T/err" || fail "the program: $(cat "$T/err")"
[ "$(cat "$T/out")" = "written through liblunfs.so" ] || fail "the program read back: $(cat "$T/out")"
ok "cc prog.c \$(pkg-config --cflags --libs lunfs): linked to liblunfs.so.$major, mounts, writes, reads back"
# the installed plugin by its name, as an admin runs it
if [ -e "$plugindir/nbdkit-lunfs-plugin.so" ]; then
	cp -p "$plugindir/nbdkit-lunfs-plugin.so" "$T/saved-plugin"
	on_exit "cp -p '$T/saved-plugin' '$plugindir/nbdkit-lunfs-plugin.so'"
else
	on_exit "rm -f '$plugindir/nbdkit-lunfs-plugin.so'"
fi
install -m 755 "$T/root$plugindir/nbdkit-lunfs-plugin.so" "$plugindir/"
nbdkit -U "$T/sock" --foreground lunfs "$T/v.img" file=/libso.txt host=nbd1 readonly=1 >"$T/nbdkit.log" 2>&1 &
NBD_PID=$!
on_exit "kill $NBD_PID 2>/dev/null; wait $NBD_PID"
poll 20 test -S "$T/sock" || fail "nbdkit lunfs did not listen: $(cat "$T/nbdkit.log")"
nbdcopy "nbd+unix:///?socket=$T/sock" - >"$T/out" || fail "nbdcopy from the export"
[ "$(cat "$T/out")" = "written through liblunfs.so" ] || fail "the export serves: $(cat "$T/out")"
kill "$NBD_PID"
wait "$NBD_PID" || fail "nbdkit lunfs exited $?: $(cat "$T/nbdkit.log")"
ok "nbdkit -U SOCK lunfs DEVICE file=/libso.txt host=nbd1 readonly=1: the installed plugin serves the file"
"$BIN/fsck.lunfs" -n "$T/v.img" >"$T/out" 2>&1 || fail "fsck -n: $(cat "$T/out")"
ok "fsck.lunfs -n clean"
make -s -C "$ROOT" uninstall DESTDIR="$T/root" PREFIX=/usr >/dev/null || fail "make uninstall"
left=$(find "$T/root" \( -type f -o -type l \))
[ -z "$left" ] || fail "make uninstall left: $left"
ok "make uninstall removes the libraries, their links and the plugin"
