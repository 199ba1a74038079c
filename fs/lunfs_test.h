/* lunfs_test.h: the library's test hooks, beside the public API of
 * fs/lunfs.h.  Not installed: the unit tests, tests/tools, the fuzz harness,
 * the benchmarks and the FUSE daemon's test options include it. */
#ifndef LUNFS_TEST_H
#define LUNFS_TEST_H

#include "dev/dev.h"
#include "dev/faulty.h"
#include "fs/lunfs.h"

/* What lunfs_mount_test adds to lunfs_mount.  Zero means none of it. */
struct lunfs_test_opts {
	struct dev *device;         /* an already open device (the faulty wrapper)
				       instead of the url; the volume owns it */
	uint32_t recovery_pause_ms; /* a recovery of a dead peer pauses this long
				       after taking its slot */
};

/* lunfs_mount with test hooks (t may be NULL). */
int lunfs_mount_test(const char *url, const struct lunfs_mount_opts *opts,
		     const struct lunfs_test_opts *t, struct lunfs_vol **out, const char **msg);
/* Like a crash: frees v without writing anything. */
void lunfs_abandon(struct lunfs_vol *v);
/* Counters of the device under v (I/Os per operation in benchmarks). */
void lunfs_dev_stats(struct lunfs_vol *v, struct dev_stats *st);
struct dev *lunfs_device(struct lunfs_vol *v);
/* An operation that changes inode ino's block and then fails (-ENOSPC):
 * its change is dropped from the cache (a failure path beside commits in
 * flight).  Returns -ENOSPC, or the error that came first. */
int lunfs_test_fail_after_dirty(struct lunfs_vol *v, uint64_t ino);
/* The journal checkpoints at a seal beyond n pending homes (default 4096). */
void lunfs_test_set_pend_max(struct lunfs_vol *v, unsigned n);
/* No checkpoint when half the log is live: only a seal without room
 * checkpoints (what a test of that seal needs). */
void lunfs_test_no_early_checkpoints(struct lunfs_vol *v);
/* The synchronous device requests made under the volume mutex since the
 * mount: reads, writes, flushes, CAWs, zeroings (docs/LOCKING.md 15). */
void lunfs_test_mu_io(struct lunfs_vol *v, uint64_t out[5]);
/* Whether a long operation in steps owns f's inode (of->stepping). */
int lunfs_test_stepping(struct lunfs_file *f);
/* Transactions freeing file blocks (v->draining) and parked half-done. */
void lunfs_test_drain_state(struct lunfs_vol *v, unsigned *draining, unsigned *parked);
/* Whether f's open file is in the volume's open-file table. */
int lunfs_test_file_listed(struct lunfs_file *f);
/* The journal's counters: its wraps, and the seals that had to checkpoint. */
struct jnl_counters;
void lunfs_test_jnl_counters(struct lunfs_vol *v, struct jnl_counters *c);

#endif
