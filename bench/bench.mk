# bench/bench.mk: `make bench` builds the benchmark programs into build/bench/
# and runs bench/run.sh, which measures raw io_uring against lunfs on the same
# image file, then several hosts on one volume (failover, creates, heartbeat
# I/O; lunfs-cluster), then fio through the FUSE mount against a raw file
# and ext4 on loop (bench/fuse.sh), then the NBD export against nbdkit's
# file plugin and qemu-nbd (bench/nbd.sh), and writes docs/PERFORMANCE.md.
# Included by the top Makefile.  Run as root: the failover and FUSE steps mount mount.lunfs.
#
#   make bench                       the whole run (about 20 minutes)
#   make bench CLUSTER=0             without the several-hosts part
#   make bench BENCH_DIR=/mnt/x      put the image on another filesystem
#   make bench FUSE=0                without the FUSE part (bench/fuse.sh)
#   make bench-fuse                  only the FUSE part (about 8 minutes):
#                                    fio through mount.lunfs against a raw
#                                    file and ext4 on loop; replaces its
#                                    section of docs/PERFORMANCE.md
#   make bench-fuse FUSE_ROUNDS=1 FUSE_SECS=2 FUSE_FILE_SIZE=256M   quick
#                                    (knobs: the top of bench/fuse.sh)
#   make bench NBD=0                 without the NBD part (bench/nbd.sh)
#   make bench-nbd                   only the NBD part (about 6 minutes):
#                                    nbdcopy and fio's nbd engine through
#                                    the lunfs nbdkit plugin against nbdkit's
#                                    file plugin and qemu-nbd on a raw image;
#                                    replaces its section of docs/PERFORMANCE.md
#   make bench-nbd NBD_ROUNDS=1 NBD_SECS=2 NBD_SIZE=256M   quick
#                                    (knobs: the top of bench/nbd.sh)
#   make bench HA=0                  without the HA restart part (bench/ha.sh)
#   make bench-ha                    only the HA restart part (about a minute):
#                                    3 rounds of kill -9 of a host running a
#                                    registered guest, timed to the guest's first
#                                    write on the survivor; replaces its section
#                                    of docs/PERFORMANCE.md (HA_ROUNDS=N)
#   make bench-progs                 only build the programs

BENCH_PROGS := $(B)/bench/raw $(B)/bench/lunfs-bench $(B)/bench/lunfs-cluster
BENCH_DIR ?= /var/tmp

.PHONY: bench bench-progs bench-fuse bench-nbd bench-ha
bench-progs: $(BENCH_PROGS)

# raw does not use the library: it is the baseline, and it builds even
# while fs/ does not.
$(B)/bench/raw: bench/raw.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -o $@ $< $(LDLIBS)

$(B)/bench/lunfs-bench: $(B)/obj/bench/lunfs_bench.o $(B)/lib/liblunfs.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -o $@ $^ $(LDLIBS)

$(B)/bench/lunfs-cluster: $(B)/obj/bench/cluster_bench.o $(B)/lib/liblunfs.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -o $@ $^ $(LDLIBS)

CLUSTER ?= 1
FUSE ?= 1
NBD ?= 1
HA ?= 1
# The FUSE_* and NBD_* knobs reach bench/fuse.sh and bench/nbd.sh through the
# environment (make exports command-line variables); the reports name them
# in their command lines.
FUSE_KNOBS = $(strip $(foreach v,BENCH_DIR CLUSTER FUSE NBD $(filter FUSE_%,$(.VARIABLES)),\
	$(if $(filter command line environment,$(origin $(v))),$(v)=$($(v)))))
NBD_KNOBS = $(strip $(foreach v,BENCH_DIR CLUSTER FUSE NBD $(filter NBD_%,$(.VARIABLES)),\
	$(if $(filter command line environment,$(origin $(v))),$(v)=$($(v)))))
HA_PROGS := $(B)/bin/mkfs.lunfs $(B)/bin/mount.lunfs $(B)/bin/lunfs $(B)/bin/fsck.lunfs $(B)/tests/reaper
bench: $(BENCH_PROGS) $(HA_PROGS) $(NBDKIT_PLUGIN)
	BENCH_DIR='$(BENCH_DIR)' B='$(B)' CLUSTER='$(CLUSTER)' FUSE='$(FUSE)' NBD='$(NBD)' HA='$(HA)' \
		FUSE_CMD='$(strip make bench $(FUSE_KNOBS))' NBD_CMD='$(strip make bench $(NBD_KNOBS))' \
		sh bench/run.sh

bench-fuse: $(B)/bench/lunfs-cluster $(B)/bin/mkfs.lunfs $(B)/bin/mount.lunfs
	BENCH_DIR='$(BENCH_DIR)' B='$(B)' FUSE_CMD='$(strip make bench-fuse $(FUSE_KNOBS))' sh bench/fuse.sh

bench-nbd: $(B)/bench/lunfs-cluster $(B)/bin/mkfs.lunfs $(B)/bin/mount.lunfs $(NBDKIT_PLUGIN)
	BENCH_DIR='$(BENCH_DIR)' B='$(B)' NBD_CMD='$(strip make bench-nbd $(NBD_KNOBS))' sh bench/nbd.sh

bench-ha: $(HA_PROGS)
	B='$(B)' HA_CMD='$(strip make bench-ha $(if $(filter command line,$(origin HA_ROUNDS)),HA_ROUNDS=$(HA_ROUNDS)))' sh bench/ha.sh
