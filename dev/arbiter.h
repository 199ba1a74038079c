/* Internal to dev/: the compare-and-write arbiter of the file backend.
 *
 * The file backend emulates CAW as read, compare, write under exclusion.  The
 * exclusion must be breakable: a process frozen (SIGSTOP, debugger) or dead
 * inside it must not hold up anyone for longer than a bounded time, and
 * unrelated blocks must never wait for each other.  See arbiter.c for the
 * protocol, the break arithmetic and the residual window.
 */
#ifndef LUNFS_DEV_ARBITER_H
#define LUNFS_DEV_ARBITER_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>

/* One open of an arbiter file (one per dev_open of the file backend). */
struct arb {
	int fd;                  /* the arbiter file: our own open file description */
	_Atomic uint64_t *map;   /* header page, then one word per logical block */
	size_t map_len;
	uint64_t nblk;           /* words in the table */
	uint32_t token;          /* ours; its liveness byte is locked while we live */
	_Atomic uint32_t seq;    /* per-acquisition counter */
	char *path;
};

/* One acquisition of a range of blocks. */
struct arb_hold {
	uint64_t blk, nblk;   /* the range, in logical blocks */
	uint64_t word;        /* our holder value in each of their words */
	uint64_t t_acq_ns;    /* CLOCK_MONOTONIC, read right before the CAS that took the first word */
	int broke;            /* we took at least one word over (stats/tests) */
};

/* Opens (creating if needed) the arbiter of the device whose identity is st
 * (st_rdev of a block device, else st_dev + st_ino) with nblk logical blocks
 * of lbs bytes, in dir (NULL: $LUNFS_CAW_DIR or /dev/shm).  0 or -errno. */
int arb_open(struct arb *a, const char *dir, const struct stat *st, uint64_t nblk, uint32_t lbs);
/* Drops the liveness lock and the mapping; removes the file when no other
 * open of it is left. */
void arb_close(struct arb *a);

/* Takes the words of blocks [blk, blk + n) in ascending order, breaking a
 * holder that held one for break_ms (or whose open is gone).  0 or -errno. */
int arb_acquire(struct arb *a, uint64_t blk, uint64_t n, uint32_t break_ms, struct arb_hold *h);
/* The holder's last check before its write: 0 while every word is still ours
 * and we have held them for less than break_ms / 2; else -ETIMEDOUT. */
int arb_check(struct arb *a, const struct arb_hold *h, uint32_t break_ms);
/* Gives back whatever words are still ours. */
void arb_release(struct arb *a, const struct arb_hold *h);

uint64_t arb_now_ns(void);

#endif
