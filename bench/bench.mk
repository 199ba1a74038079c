# bench/bench.mk: `make bench` builds the benchmark programs into build/bench/
# and runs bench/run.sh, which measures raw io_uring against lunfs on the same
# image file, then several hosts on one volume (failover, creates, heartbeat
# I/O; lunfs-cluster), and writes docs/PERFORMANCE.md.  Included by the top
# Makefile.  Run as root: the failover and FUSE steps mount mount.lunfs.
#
#   make bench                       the whole run (about 5 minutes)
#   make bench CLUSTER=0             without the several-hosts part
#   make bench BENCH_DIR=/mnt/x      put the image on another filesystem
#   make bench-progs                 only build the programs

BENCH_PROGS := $(B)/bench/raw $(B)/bench/lunfs-bench $(B)/bench/lunfs-cluster
BENCH_DIR ?= /var/tmp

.PHONY: bench bench-progs
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
bench: $(BENCH_PROGS) $(B)/bin/mkfs.lunfs $(B)/bin/mount.lunfs
	BENCH_DIR='$(BENCH_DIR)' B='$(B)' CLUSTER='$(CLUSTER)' sh bench/run.sh
