# Fuzzing fsck.lunfs and the mount path with damaged volumes (included by
# the Makefile).  tests/fuzz/fuzz_volume.c explains the input format.
#
#   make fuzz [FUZZ_SECONDS=60] [FUZZ_FORK=0]
#       libFuzzer (clang) for a bounded time on $(B)/fuzz/corpus, seeded from
#       tests/fuzz/seeds/.  Crashes go to $(B)/fuzz/crashes/; the target fails
#       when this run wrote any.  FUZZ_FORK=N runs N worker processes that go
#       on after a crash (to collect several in one run).
#   make check-fuzz-regress
#       the same harness with a plain main() (gcc or clang, no libFuzzer),
#       under ASan and UBSan, over tests/fuzz/seeds/ and tests/fuzz/regress/.
#       Fails on any sanitizer report.

FUZZ_SECONDS ?= 60
FUZZ_FORK ?= 0
FUZZ_CC ?= clang
FUZZ_DIR := $(B)/fuzz
FUZZ_SRC := tests/fuzz/fuzz_volume.c
FUZZ_DEPS := $(FUZZ_SRC) fsck/fsck.c $(LIB_SRC) $(wildcard */*.h) tests/fuzz/fuzz.mk
FUZZ_BASE := $(WARN) -std=gnu11 -D_GNU_SOURCE -I. -pthread -O1 -g -fno-omit-frame-pointer \
	$(shell pkg-config --cflags $(PKGS) 2>/dev/null)
FUZZ_SAN := -fsanitize=address,undefined -fno-sanitize-recover=all
FUZZ_INPUTS := $(sort $(wildcard tests/fuzz/seeds/* tests/fuzz/regress/*))

# fsck.lunfs is a program: its main() becomes fsck_main() for the harness.
$(FUZZ_DIR)/fuzz_volume: $(FUZZ_DEPS)
	@mkdir -p $(FUZZ_DIR)/obj
	$(FUZZ_CC) $(FUZZ_BASE) -fsanitize=fuzzer $(FUZZ_SAN) -Dmain=fsck_main \
		-c -o $(FUZZ_DIR)/obj/fsck-fuzzer.o fsck/fsck.c
	$(FUZZ_CC) $(FUZZ_BASE) -fsanitize=fuzzer $(FUZZ_SAN) -o $@ \
		$(FUZZ_SRC) $(LIB_SRC) $(FUZZ_DIR)/obj/fsck-fuzzer.o $(LDLIBS)

$(FUZZ_DIR)/fuzz_replay: $(FUZZ_DEPS)
	@mkdir -p $(FUZZ_DIR)/obj
	$(CC) $(FUZZ_BASE) $(FUZZ_SAN) -Dmain=fsck_main \
		-c -o $(FUZZ_DIR)/obj/fsck-replay.o fsck/fsck.c
	$(CC) $(FUZZ_BASE) $(FUZZ_SAN) -DREPLAY_MAIN -o $@ \
		$(FUZZ_SRC) $(LIB_SRC) $(FUZZ_DIR)/obj/fsck-replay.o $(LDLIBS)

fuzz: $(FUZZ_DIR)/fuzz_volume
	@mkdir -p $(FUZZ_DIR)/corpus $(FUZZ_DIR)/crashes
	cp -n tests/fuzz/seeds/* $(FUZZ_DIR)/corpus/ 2>/dev/null || true
	@touch $(FUZZ_DIR)/.start
	ASAN_OPTIONS=detect_leaks=1 $(FUZZ_DIR)/fuzz_volume -max_total_time=$(FUZZ_SECONDS) \
		-timeout=30 -rss_limit_mb=4096 -max_len=512 -len_control=10 -close_fd_mask=3 -print_final_stats=1 \
		-dict=tests/fuzz/lunfs.dict -artifact_prefix=$(FUZZ_DIR)/crashes/ \
		$(if $(filter-out 0,$(FUZZ_FORK)),-fork=$(FUZZ_FORK) -ignore_crashes=1 -ignore_timeouts=1 -ignore_ooms=1) \
		$(FUZZ_DIR)/corpus; \
	st=$$?; new=$$(find $(FUZZ_DIR)/crashes -type f -newer $(FUZZ_DIR)/.start | sort); \
	if [ -n "$$new" ] || [ $$st != 0 ]; then \
		echo "fuzz: crashes (exit status $$st):"; for f in $$new; do echo "  $$f"; done; exit 1; \
	fi; echo "fuzz: no crash in $(FUZZ_SECONDS) s"

check-fuzz-regress: $(FUZZ_DIR)/fuzz_replay
	ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 \
		$(FUZZ_DIR)/fuzz_replay $(FUZZ_INPUTS)
