# lunfs — shared-disk cluster filesystem for VM images.
#   make          build everything into build/
#   make check    install missing packages, build, run every test
#   make demo     install missing packages, build, run the main job
#   make install  PREFIX=/usr/local DESTDIR=   (the tools, liblunfs.a and
#                 liblunfs.so, lunfs.h, lunfs.pc, the nbdkit plugin in
#                 nbdkit's plugindir, man pages; make uninstall removes them)

PREFIX ?= /usr/local
DESTDIR ?=
SBINDIR ?= /sbin
B := build
PKGS := libiscsi liburing libxxhash blkid
CC ?= cc
WARN := -Wall -Wextra -Werror
CFLAGS ?= -O2 -g
CFLAGS += $(WARN) -std=gnu11 -D_GNU_SOURCE -I. -pthread \
	$(shell pkg-config --cflags $(PKGS) 2>/dev/null)
LDLIBS := $(shell pkg-config --libs $(PKGS) 2>/dev/null) -pthread
CHECK_LIBS := $(shell pkg-config --libs check 2>/dev/null)

ifeq ($(filter deps clean check demo,$(MAKECMDGOALS)),)
ifneq ($(shell pkg-config --exists $(PKGS) check fuse3 mount nbdkit && echo ok),ok)
$(error pkg-config cannot find $(PKGS) check fuse3 mount nbdkit: run 'make deps' (as root) first)
endif
endif

LIB_SRC := $(wildcard util/*.c dev/*.c format/*.c lock/*.c journal/*.c fs/*.c)
LIB_OBJ := $(LIB_SRC:%.c=$(B)/obj/%.o)
TOOL_SRC := $(wildcard tests/tools/*.c)
TOOLS := $(TOOL_SRC:tests/tools/%.c=$(B)/tests/%)
UNIT_SRC := $(wildcard tests/unit/*.c)
BINS := $(B)/bin/mkfs.lunfs $(B)/bin/fsck.lunfs $(B)/bin/mount.lunfs $(B)/bin/lunfs

# The shared library: soname liblunfs.so.MAJOR, real name with the release
# of fs/version.h; it exports the public API alone (fs/liblunfs.map).
RELEASE := $(shell sed -n 's/^\#define LUNFS_RELEASE "\(.*\)"/\1/p' fs/version.h)
SOMAJOR := $(firstword $(subst ., ,$(RELEASE)))
SONAME := liblunfs.so.$(SOMAJOR)
SOLIB := $(B)/lib/liblunfs.so.$(RELEASE)
NBDKIT_PLUGIN := $(B)/lib/nbdkit-lunfs-plugin.so
NBDKIT_PLUGINDIR ?= $(shell pkg-config --variable=plugindir nbdkit 2>/dev/null)

.PHONY: uninstall all deps check check-layers check-model check-unit check-asan check-integration demo install clean bench fuzz check-fuzz-regress
all: $(B)/lib/liblunfs.a $(SOLIB) $(NBDKIT_PLUGIN) $(BINS) $(TOOLS) $(B)/tests/unit_tests

deps:
	@sh scripts/deps.sh

$(B)/obj/%.o: %.c $(wildcard */*.h)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -c -o $@ $<

# The library's objects are position-independent: one set serves the
# static archive, the shared library and the nbdkit plugin.  The stamp
# rebuilds them once in a build directory made before they were.
$(LIB_OBJ): CFLAGS += -fPIC
$(LIB_OBJ): $(B)/obj/.fpic
$(B)/obj/.fpic:
	@mkdir -p $(dir $@)
	@touch $@

$(B)/lib/liblunfs.a: $(LIB_OBJ)
	@mkdir -p $(dir $@)
	rm -f $@ && ar rcs $@ $^

$(SOLIB): $(LIB_OBJ) fs/liblunfs.map
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -shared -Wl,-soname,$(SONAME) -Wl,--version-script=fs/liblunfs.map \
		-Wl,--no-undefined -o $@ $(LIB_OBJ) $(LDLIBS)
	ln -sf $(notdir $@) $(B)/lib/$(SONAME)
	ln -sf $(SONAME) $(B)/lib/liblunfs.so

# nbd/: the nbdkit plugin, the library linked in (its symbols kept inside)
$(B)/obj/nbd/%.o: CFLAGS += -fPIC $(shell pkg-config --cflags nbdkit)
$(NBDKIT_PLUGIN): $(B)/obj/nbd/nbdkit-lunfs-plugin.o $(B)/lib/liblunfs.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -shared -Wl,--exclude-libs,ALL -o $@ $^ $(LDLIBS)

$(B)/bin/mkfs.lunfs: $(B)/obj/mkfs/mkfs.o $(B)/lib/liblunfs.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -o $@ $^ $(LDLIBS)

$(B)/bin/fsck.lunfs: $(B)/obj/fsck/fsck.o $(B)/lib/liblunfs.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -o $@ $^ $(LDLIBS)

$(B)/bin/lunfs: $(B)/obj/admin/lunfs.o $(B)/lib/liblunfs.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -o $@ $^ $(LDLIBS)

$(B)/obj/fuse/%.o: CFLAGS += $(shell pkg-config --cflags fuse3 mount)
$(B)/bin/mount.lunfs: $(B)/obj/fuse/lunfsd.o $(B)/lib/liblunfs.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -o $@ $^ $(LDLIBS) $(shell pkg-config --libs fuse3 mount)

$(B)/tests/%: $(B)/obj/tests/tools/%.o $(B)/lib/liblunfs.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -o $@ $^ $(LDLIBS)

$(B)/tests/unit_tests: $(UNIT_SRC:%.c=$(B)/obj/%.o) $(B)/lib/liblunfs.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -o $@ $^ $(LDLIBS) $(CHECK_LIBS)

# Unit tests again under AddressSanitizer and UndefinedBehaviorSanitizer.
ASAN_FLAGS := -DLUNFS_DEBUG -O1 -g -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all
$(B)/asan/unit_tests: $(LIB_SRC) $(UNIT_SRC) $(wildcard */*.h)
	@mkdir -p $(dir $@)
	$(CC) $(WARN) -std=gnu11 -D_GNU_SOURCE -I. -pthread $(ASAN_FLAGS) \
		$(shell pkg-config --cflags $(PKGS)) -o $@ $(LIB_SRC) $(UNIT_SRC) $(LDLIBS) $(CHECK_LIBS)

# Every #include goes downward: util <- dev <- format <- lock <- journal <- fs
# <- tools (docs/CODING.md).
check-layers: $(LIB_OBJ)
	@sh scripts/check-layers.sh
	@python3 scripts/check-fs-cycles.py $(filter $(B)/obj/fs/%,$(LIB_OBJ))

check-unit: all
	$(B)/tests/unit_tests

check-asan: $(B)/asan/unit_tests $(B)/bin/fsck.lunfs
	ASAN_OPTIONS=detect_leaks=1 $(B)/asan/unit_tests

check-integration: all
	@sh tests/run-integration.sh

check: deps
	$(MAKE) check-layers
	$(MAKE) all
	$(MAKE) check-unit
	$(MAKE) check-asan
	$(MAKE) check-fuzz-regress
	$(MAKE) check-model
	$(MAKE) check-integration

demo: deps
	$(MAKE) all
	@bash scripts/demo.sh

# mount(8) looks for helpers in /sbin: mount.lunfs goes to $(SBINDIR), with
# umount.fuse.lunfs, the umount helper that waits for the daemon, linked to it.
# uninstall removes exactly the files install puts in place.
# The public header alone: fs/lunfs.h includes system headers only (the
# test hooks are in fs/lunfs_test.h, not installed).  pkg-config lunfs finds
# it and the library (contrib/lunfs.pc.in).
HEADERS := fs/lunfs.h
PCDIR := $(PREFIX)/lib/pkgconfig
MAN8 := $(notdir $(wildcard man/*.8))
MAN1 := $(notdir $(wildcard man/*.1))
COMPL := lunfs mkfs.lunfs fsck.lunfs mount.lunfs
DOCDIR := $(PREFIX)/share/doc/lunfs/examples
INSTALLED := $(addprefix $(PREFIX)/sbin/,mkfs.lunfs fsck.lunfs lunfs) \
	$(SBINDIR)/mount.lunfs $(SBINDIR)/umount.fuse.lunfs $(SBINDIR)/mount.fuse.lunfs $(PREFIX)/lib/liblunfs.a $(PCDIR)/lunfs.pc \
	$(addprefix $(PREFIX)/lib/,liblunfs.so.$(RELEASE) $(SONAME) liblunfs.so) \
	$(NBDKIT_PLUGINDIR)/nbdkit-lunfs-plugin.so \
	$(addprefix $(PREFIX)/share/man/man1/,$(MAN1)) \
	$(addprefix $(PREFIX)/include/lunfs/,$(notdir $(HEADERS))) \
	$(addprefix $(PREFIX)/share/man/man8/,$(MAN8)) \
	$(addprefix $(PREFIX)/share/bash-completion/completions/,$(COMPL)) \
	$(DOCDIR)/vmfs-lun0.mount
install: all
	install -d $(DESTDIR)$(PREFIX)/sbin $(DESTDIR)$(SBINDIR) $(DESTDIR)$(PREFIX)/lib $(DESTDIR)$(PCDIR) \
		$(DESTDIR)$(PREFIX)/include/lunfs $(DESTDIR)$(PREFIX)/share/man/man8 \
		$(DESTDIR)$(PREFIX)/share/bash-completion/completions $(DESTDIR)$(DOCDIR) \
		$(DESTDIR)$(NBDKIT_PLUGINDIR) $(DESTDIR)$(PREFIX)/share/man/man1
	install -m 755 $(B)/bin/mkfs.lunfs $(B)/bin/fsck.lunfs $(B)/bin/lunfs $(DESTDIR)$(PREFIX)/sbin/
	install -m 755 $(B)/bin/mount.lunfs $(DESTDIR)$(SBINDIR)/
	ln -sf mount.lunfs $(DESTDIR)$(SBINDIR)/umount.fuse.lunfs
	ln -sf mount.lunfs $(DESTDIR)$(SBINDIR)/mount.fuse.lunfs
	install -m 644 $(B)/lib/liblunfs.a $(DESTDIR)$(PREFIX)/lib/
	install -m 755 $(SOLIB) $(DESTDIR)$(PREFIX)/lib/
	ln -sf $(notdir $(SOLIB)) $(DESTDIR)$(PREFIX)/lib/$(SONAME)
	ln -sf $(SONAME) $(DESTDIR)$(PREFIX)/lib/liblunfs.so
	install -m 755 $(NBDKIT_PLUGIN) $(DESTDIR)$(NBDKIT_PLUGINDIR)/
	install -m 644 $(HEADERS) $(DESTDIR)$(PREFIX)/include/lunfs/
	sed -e 's|@PREFIX@|$(PREFIX)|' -e 's|@VERSION@|$(RELEASE)|' -e 's|@PKGS@|$(PKGS)|' \
		contrib/lunfs.pc.in >$(DESTDIR)$(PCDIR)/lunfs.pc
	install -m 644 man/*.8 $(DESTDIR)$(PREFIX)/share/man/man8/
	install -m 644 man/*.1 $(DESTDIR)$(PREFIX)/share/man/man1/
	install -m 644 contrib/lunfs.bash-completion $(DESTDIR)$(PREFIX)/share/bash-completion/completions/lunfs
	for c in $(filter-out lunfs,$(COMPL)); do ln -sf lunfs $(DESTDIR)$(PREFIX)/share/bash-completion/completions/$$c; done
	install -m 644 contrib/vmfs-lun0.mount $(DESTDIR)$(DOCDIR)/
	@# a real install (no DESTDIR): the loader learns of the new library
	[ -n "$(DESTDIR)" ] || ldconfig 2>/dev/null || true

uninstall:
	rm -f $(addprefix $(DESTDIR),$(INSTALLED))
	-rmdir $(DESTDIR)$(PREFIX)/include/lunfs $(DESTDIR)$(DOCDIR) $(DESTDIR)$(PREFIX)/share/doc/lunfs 2>/dev/null
	[ -n "$(DESTDIR)" ] || ldconfig 2>/dev/null || true

clean:
	rm -rf $(B)

# bench/ adds its own rules and the 'bench' target.
-include bench/bench.mk
# tests/fuzz/ adds 'fuzz' (bounded run) and 'check-fuzz-regress' (run by check).
-include tests/fuzz/fuzz.mk
# model/ adds 'model' (the Spin model of the protocol) and 'check-model' (run by check).
-include model/model.mk
