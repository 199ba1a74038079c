/* journal/: one redo journal per heartbeat slot.
 *
 * A transaction is a descriptor block (sequence number, home addresses), the
 * full images of the metadata blocks, and a commit block whose XXH3-64 covers
 * descriptor and images; all three go out in one write, then a flush makes
 * the transaction durable.  The newest image of each block is kept in memory
 * and written in place at the checkpoint (lock release, log wrap, unmount,
 * or when too many are pending), which flushes them and then advances the
 * tail in the journal header.  Until then the caller reads its own blocks
 * from its cache (fs/ caches every block under a lock it holds).
 *
 * jnl_replay() is the one replay implementation: mount, peer recovery and
 * fsck all call it.  It scans from the tail in sequence order, checks every
 * checksum, applies whole committed transactions and stops at the first gap
 * or bad record.  Running it twice gives the same volume.
 *
 * Functions return 0 or a negative errno.
 */
#ifndef LUNFS_JNL_H
#define LUNFS_JNL_H

#include <stdint.h>
#include "dev/dev.h"
#include "lock/lk.h"

/* Returns 0 when replay may write a 4 KiB block at target (it must be a
 * metadata block of the volume), or -EFSCORRUPTED.  Required: replay trusts
 * no address it reads from the disk. */
typedef int (*jnl_target_fn)(void *arg, uint64_t target);

struct jnl_geom {
	uint8_t uuid[16];
	uint32_t slot;
	uint64_t off, size;   /* the journal's region: header block + log area */
	uint64_t mount_gen;   /* jnl_open: the writer's mount generation (>= 1;
				 0 = take it from the hb_host) */
	jnl_target_fn target_ok;
	void *arg;
	struct hb_host *guard; /* jnl_replay: when set, every write first checks
				  hb_ok(guard) (a survivor replaying a peer) */
};

struct jnl_replay_stats {
	uint64_t txns;        /* committed transactions found */
	uint64_t blocks;      /* block images applied (or that would be) */
	uint64_t next_seq, next_off; /* where the log continues */
	const char *stop;     /* why the scan stopped ("end of log", ...) */
	int torn;             /* it stopped at a torn transaction (crash mid-commit) */
};

/* Replays the journal described by g.  With apply == 0 it only scans and
 * counts (fsck -n).  Only transactions written by the mount that owns the
 * header (its mount_gen) count.  With apply, the header is then rewritten
 * empty and owned by nobody (mount_gen 0), which seals the journal: a late
 * write from a host fenced while its transaction was in flight can never be
 * replayed.  Returns 0 or -errno; -EFSCORRUPTED when the header is damaged or
 * a committed transaction names a home that is not metadata. */
int jnl_replay(struct dev *d, const struct jnl_geom *g, int apply, struct jnl_replay_stats *st);

/* Empties the journal: zeroes the log and writes a header starting at seq
 * (fsck repair of a damaged journal).  Returns 0 or -errno. */
int jnl_reset(struct dev *d, const struct jnl_geom *g, uint64_t seq);

struct jnl;
struct jnl_txn;

/* Opens the journal of this host's slot for writing: replays it first (the
 * last mount may have crashed), then takes the header over for
 * g->mount_gen.  h may be NULL (mkfs, fsck); otherwise every
 * write first checks hb_ok(h).  st (may be NULL) receives what replay did. */
int jnl_open(struct dev *d, const struct jnl_geom *g, struct hb_host *h, struct jnl **out,
	     struct jnl_replay_stats *st);
/* Checkpoints and frees j.  Returns the checkpoint's result. */
int jnl_close(struct jnl *j);
/* Frees j without a checkpoint, as a crash would leave it (tests, and a
 * fenced host that must not write). */
void jnl_abandon(struct jnl *j);

int jnl_txn_begin(struct jnl *j, struct jnl_txn **out);
/* Adds (or replaces) the image of the 4 KiB block at target.  The image is
 * copied.  Returns 0, or -E2BIG when the transaction is full. */
int jnl_txn_add(struct jnl_txn *t, uint64_t target, const void *blk);
/* Number of blocks in t. */
unsigned jnl_txn_count(const struct jnl_txn *t);
/* Commits: one write of descriptor + images + commit, then a flush.  Frees t.
 * The contract:
 *  - 0: the transaction is durable (its write and the flush after it
 *    succeeded).  What follows cannot undo that and is not reported: a home
 *    that cannot be remembered for the checkpoint (no memory) breaks the
 *    journal and fences the host (a replay brings it home), and a
 *    checkpoint that fails leaves its homes pending for the next one.
 *  - -errno before the write (a wrap's checkpoint, the lease, memory):
 *    nothing was written; the journal goes on.
 *  - -errno from the write or its flush: the transaction may or may not be
 *    on disk.  The journal then refuses every further transaction with that
 *    error: only a replay (the next mount of this slot, a survivor, fsck)
 *    can tell, and it makes the volume consistent either way.
 * The homes are written at a later checkpoint. */
int jnl_txn_commit(struct jnl_txn *t);
/* jnl_txn_commit in two phases, so that the caller's lock need not be held
 * while the device writes (fs/ commits this way; see docs/LOCKING.md
 * section 15):
 *  - jnl_txn_seal, under the caller's lock like every other call here but
 *    jnl_txn_write, jnl_checkpoint and jnl_pending_copy:
 *    places t in the log (the next sequence number, the room after the
 *    last sealed one, or at the start when it does not fit before the end
 *    and the live part leaves room there; a log without room, or too
 *    many pending homes, checkpoint first)
 *    and builds its descriptor and commit block.  An error here is one of
 *    the "before the write" kind above: nothing reserved, the journal goes
 *    on; t is not freed (jnl_txn_write or jnl_txn_abort does it).  An
 *    empty t is not placed.
 *  - jnl_txn_write, with or without the caller's lock (it never takes
 *    it): waits for its turn (sealed order), checks the lease, flushes
 *    first when jnl_txn_preflush asked, writes, flushes.  It returns 0 when
 *    t and every transaction sealed before it are durable.  Any failure
 *    here breaks the journal (a transaction sealed after t has its room
 *    behind t's: written without t, replay would stop at the gap).  Frees t.
 * A checkpoint (and jnl_close, jnl_abandon) first waits until every sealed
 * transaction was written or failed, so the caller must not hold anything
 * a writer in jnl_txn_write waits for. */
int jnl_txn_seal(struct jnl_txn *t);
/* Waits until every sealed transaction was written (or failed).  Returns 0,
 * or the error that broke the journal. */
int jnl_wait_written(struct jnl *j);
/* Waits, without the caller's lock, until every transaction sealed with a
 * sequence number below seq (jnl_next_seq when the caller looked) was
 * written, or the journal broke.  Returns 0, or the error that broke it. */
int jnl_wait_written_upto(struct jnl *j, uint64_t seq);
int jnl_txn_write(struct jnl_txn *t);
/* The device is flushed right before t's journal write (data written
 * before the seal that t's new pointers expose). */
void jnl_txn_preflush(struct jnl_txn *t);
/* Makes room in the log for t now: waits until every transaction sealed
 * before t was written, and checkpoints if the log has no room for t
 * (what jnl_txn_seal would do first), so that nothing of this journal
 * flushes between now and t's own journal write: from here until t is
 * written or aborted, no other checkpoint starts, and one under way was
 * waited for.  Returns 0 or -errno. */
int jnl_txn_make_room(struct jnl_txn *t);
/* Test hook: checkpoint at a seal beyond n pending homes (default 4096). */
void jnl_test_set_pend_max(struct jnl *j, unsigned n);
/* Test hook: jnl_room_low always says no (only seals checkpoint). */
void jnl_test_no_early_checkpoints(struct jnl *j);
void jnl_txn_abort(struct jnl_txn *t);

/* Writes every pending home, flushes, and advances the tail to the head as
 * it was at the call: what is sealed before it is home after it (replay
 * finds nothing of it to do).  Needs no lock of the caller's: seals and
 * journal writes go on meanwhile (what they add stays pending, behind the
 * new tail), other checkpoints wait for it.  Returns 0 or -errno. */
int jnl_checkpoint(struct jnl *j);

/* The newest committed image of the block at target whose home is not
 * written yet, into buf (BS bytes): 1 if there is one, else 0 (the home is
 * current).  A block read from its home must come from here first. */
int jnl_pending_copy(struct jnl *j, uint64_t target, void *buf);

/* How long (ms, monotonic) the oldest committed transaction whose homes are
 * not written yet has waited; 0 when nothing is pending. */
uint64_t jnl_pending_age_ms(struct jnl *j);
/* Is half the log live, or are half the homes a seal tolerates pending?
 * Then a checkpoint now (without the caller's lock) spares a later seal
 * one under it. */
int jnl_room_low(struct jnl *j);
struct jnl_counters {
	uint64_t wraps;            /* seals placed at 0 while transactions at the
				      end of the log are live (no checkpoint) */
	uint64_t seal_checkpoints; /* seals (and make_room) that had to checkpoint */
};
void jnl_get_counters(struct jnl *j, struct jnl_counters *c);

/* Sequence number the next transaction gets. */
uint64_t jnl_next_seq(const struct jnl *j);

#endif
