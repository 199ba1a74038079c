/* Internal to fs/: the mounted volume, its caches and transactions.
 *
 * Concurrency: one mutex per volume (v->mu) protects all metadata state and
 * is held for the length of a metadata operation, but for its waits while
 * it has changed nothing yet: a restartable operation (TX_RUN) that misses
 * the cache or needs a lock gives up, the runner reads the block or
 * acquires the lock without v->mu and runs it again.  Data I/O to mapped
 * blocks (lunfs_pread, lunfs_pwrite of allocated blocks) runs outside it:
 * the thread registers as a data I/O in flight (io_enter_fast, v->data_io)
 * and looks the mapping up in the open file's cache under that file's
 * of->mapmu (map_cached, data.c), or, when the cache cannot answer, under
 * v->mu (io_enter); it does the device I/O without either lock and
 * unregisters (io_exit).  Freeing a file block waits until no data I/O
 * is in flight and keeps new ones from starting until its transaction ends
 * (tx_drain, v->draining), so no I/O ever reaches a block after it was
 * freed and handed to another file.  The async queue's device I/O also
 * runs outside v->mu.
 * Writes into holes and to-be-zeroed blocks, and writes past the end, are
 * pending writes (fill.c): under v->mu a write reserves the free blocks it
 * needs (v->resv; allocation skips them, their cluster locks stay pinned)
 * and lists itself in v->gw; it writes its data without v->mu; then one
 * thread commits every write whose data is written in one group: a flush,
 * then one transaction that claims the blocks, sets the pointers, sizes and
 * times.  A write waits (gw_cv) for a pending write that fills a block of
 * its range; truncate, fallocate, handoff and the last close wait for the
 * pending writes of their file; no write registers and no group commits
 * while a transaction waits half-done with v->mu dropped (v->tx_parked).
 * Lock order: a file's f->mu, then v->mu, then an open inode's of->mapmu (a
 * leaf).  A thread registered as a data I/O takes no lock (io_exit takes
 * v->mu briefly only to wake a free waiting for the last one).  docs/LOCKING.md section 15
 * has the whole picture.
 *
 * Cache rule (docs/LOCKING.md): a metadata block is cached only while this
 * host holds the on-disk lock that covers it (its inode's lock, or its
 * cluster's lock).  Blocks read without that lock are transient: they live
 * for one operation.  When a lock is released, the journal is checkpointed
 * first and every cached block under it is dropped.
 */
#ifndef LUNFS_INTERNAL_H
#define LUNFS_INTERNAL_H

#include <pthread.h>
#include "dev/dev.h"
#include "format/format.h"
#include "format/geom.h"
#include "fs/lunfs.h"
#include "journal/jnl.h"
#include "lock/lk.h"
#include "util/clock.h"
#include "util/lerrno.h" /* fs/lunfs.h repeats it: both here, they must agree */
#include "util/log.h"

/* Debug builds (-DLUNFS_DEBUG: `make check-asan` builds the unit tests so)
 * check every "v->mu held" precondition: glibc keeps the owner's thread id
 * in the mutex. */
#ifdef LUNFS_DEBUG
#include <assert.h>
#include <unistd.h>
#define VOL_HELD(v) assert((v)->mu.__data.__owner == gettid())
#else
#define VOL_HELD(v) ((void)0)
#endif

#define BS LUNFS_META_BS
#define ORPHAN_INO LUNFS_ORPHAN_INO
#define DT_REG_LUNFS 8

struct buf {
	uint64_t addr;
	uint64_t lock;    /* address of the covering lock; 0 = transient */
	uint8_t *data;    /* BS bytes, aligned */
	struct buf *next; /* hash chain, or the transaction's transient list */
	unsigned txrefs;  /* open transactions with it in their dirty list */
	int dropped;      /* out of the cache; freed when txrefs reaches 0 */
};

/* A lock this host holds, cached with its last image.  Protected by v->mu. */
struct held {
	struct lk_lock lk;
	uint64_t object;
	int pins;          /* operations and opens using it now */
	uint64_t gen;      /* which acquisition (v->nacquired then) */
	uint64_t last_ms;  /* last use, for the linger release */
	struct held *next;
};

struct ofile;

/* Data I/O statistics (iostat.c) of the volume or of one open file, for
 * lunfs top.  Every field is updated atomically, without a lock. */
struct iostat {
	uint64_t rd_ops, wr_ops, rd_bytes, wr_bytes, rd_ns, wr_ns;
	uint64_t max_ns;       /* longest request since the last publication */
	uint64_t inflight;     /* requests started and not completed */
	uint64_t lk_waits, lk_wait_ns;
	uint64_t pub_ops;      /* rd_ops + wr_ops at the last publication (ranking) */
};

#define REC_RETRY_SLOTS 64 /* recovery backoff per slot (modulo) */

struct lunfs_vol {
	struct dev *d;
	/* Constant after mount but for the fields an online grow raises
	 * (vol_grow_check, under mu): file_blocks, fc_count, dev_size and
	 * backup_off only grow and are stored atomically, because the data
	 * path reads file_blocks without mu; gen and incompat change under mu. */
	struct lunfs_sb sb;
	struct hb_host *hb;
	struct jnl *j;
	int ro;
	uint32_t slot;
	uint32_t linger_ms;
	uint32_t open_wait_ms;   /* a writable open waits this long for another
				    host's open pin to go (lunfs_open) */
	/* Synchronous device requests a thread made while it held mu (the
	 * device's probe, vol_mu_probe): reads, writes, flushes, CAWs,
	 * zeroings.  LUNFS_TRACE_MU_IO in the environment at mount: each one
	 * also prints its call stack to stderr. */
	_Atomic uint64_t mu_io[5];
	int mu_trace;
	pthread_mutex_t mu;     /* the volume mutex: everything below */
	struct buf **bh;        /* buffer hash */
	size_t nbh;
	struct held *locks;     /* held locks */
	struct ofile *ofiles;   /* inodes open on this host */
	struct trunc_ref {      /* truncates listed as orphans (free.c) */
		uint64_t ino;
		int n;          /* this host's truncates of ino under way */
		struct trunc_ref *next;
	} *truncs;
	uint64_t ig_hint, fc_hint, mc_hint;
	pthread_t linger_thr;
	pthread_cond_t linger_cv;
	int stop;
	int linger_joined;      /* stop_linger ran (lunfs_retire, then unmount) */
	int ioq_busy;           /* a lunfs_ioq, or the aio engine, owns the device queue */
	struct aeng *aeng;      /* the aio engine (aio.c), once started; under mu */
	/* data I/Os in flight outside mu (io_enter, io_enter_fast), and the
	 * transactions freeing file blocks (tx_drain): atomic, because the
	 * fast path registers without mu; draining changes under mu only */
	unsigned data_io;
	unsigned draining;
	pthread_cond_t io_cv;   /* data_io reached 0, or draining did */
	struct acq {            /* locks a thread acquires with mu dropped */
		uint64_t off;
		struct acq *next;
		pthread_cond_t cv;  /* the threads waiting for this one */
		int refs;           /* the acquirer and each waiter */
		int done;
	} *acquiring;
	uint64_t cache_epoch;   /* blocks dropped from the cache, ever */
	uint64_t nacquired;     /* lock records acquired (published for lunfs top) */
	struct iostat io;       /* data I/O of every file (atomic, not under mu) */
	struct resv {           /* file blocks reserved for pending writes (inode.c) */
		uint64_t blk;
		struct held *h; /* its cluster's lock, pinned by the reservation */
	} *resv;
	unsigned nresv, cresv;
	struct gwrite *gw;      /* writes waiting for their metadata commit (fill.c) */
	int gw_leader;          /* a thread commits a group now */
	struct gwrite *gw_gatherer; /* the leader's write, while it gathers */
	uint64_t gw_seq;        /* pending writes registered so far */
	unsigned tx_parked;     /* transactions waiting with mu dropped mid-way */
	pthread_cond_t gw_cv;   /* a pending write went or is down to its fills,
				   or tx_parked reached 0 (the writers' own
				   threads wait on their gwrite's cv) */
	uint64_t pr_key;        /* our iSCSI PR registration, 0 none */
	/* peer recovery (recover.c): its own thread, outside mu */
	pthread_t rec_thr;
	int rec_started, rec_stop;
	pthread_mutex_t rec_mu;
	pthread_cond_t rec_cv;
	uint32_t recovery_pause_ms; /* test hook: pause after REPLAYING */
	uint64_t grow_checked_ms;   /* last vol_grow_check (monotonic); under mu */
	uint64_t grow_warned;       /* superblock gen we could not follow (logged once) */
	struct rec_retry {
		uint64_t at;       /* no new attempt before (ms, monotonic) */
		uint32_t backoff;  /* ms; doubles after each failure, up to 60 s */
	} rec_retry[REC_RETRY_SLOTS];
};

/* vol.c: gives the hold h (pinned by an open) to the mount (slot,
 * mount_gen), checkpointing first; h is freed.  -EBUSY while a
 * transaction of this host pins it too.  v->mu held. */
int vl_hand_over(struct lunfs_vol *v, struct held *h, uint32_t slot, uint64_t mount_gen);
/* vol.c: the journal replay's check of a home address */
int vol_jtarget_ok(void *sb, uint64_t target);
/* grow.c: re-reads the primary superblock and adopts it when it is this
 * volume grown online.  Returns 1 when v->sb grew, else 0 (unchanged, torn,
 * or not followable: logged), or -ENOMEM.  v->mu held. */
int vol_grow_check(struct lunfs_vol *v);
/* vol_grow_check with v->mu dropped for the superblock read (the linger
 * thread's poll). */
int vol_grow_poll(struct lunfs_vol *v);
/* vol.c: removes the holds of mounts of slot older than below from every
 * lock record */
int vol_purge_locks(struct lunfs_vol *v, uint32_t slot, uint64_t below);
/* free.c: frees what the orphan directory lists and nobody has open */
int orphans_process(struct lunfs_vol *v);

/* recover.c */
int recover_start(struct lunfs_vol *v);
void recover_stop(struct lunfs_vol *v);
int pr_mount(struct lunfs_vol *v);
void pr_unmount(struct lunfs_vol *v);

/* An inode open on this host (one per inode, shared by its handles). */
struct ofile {
	uint64_t ino;
	int opens;
	int writers;       /* opens of them in a writable mode (RW, EXCL, MULTI):
			      when the last closes, the hold goes (lunfs_close) */
	int mode;          /* strongest open mode */
	int unlinked;      /* nlink reached 0 while open: free at last close */
	int excl_here;     /* an LUNFS_OPEN_EXCL open: no other open on this host */
	int handed_off;    /* its lock went to another host (lunfs_handoff): no
			      more writes here; reads go unlocked, as READ */
	/* The map lock: h, handed_off, size_ok, size, mapc and its entries
	 * change under v->mu and mapmu; the data path's fast lookup
	 * (map_cached, data.c) reads them under mapmu alone.  mtime and
	 * times_dirty change under mapmu (the fast path's writes set them
	 * without v->mu) and are read under it (of_touch, of_take_times).
	 * Order: v->mu, then mapmu; nothing is taken under mapmu. */
	pthread_mutex_t mapmu;
	struct held *h;    /* the pinned inode lock (NULL for LUNFS_OPEN_READ) */
	int times_dirty;   /* mtime/ctime changed by writes, not yet committed */
	struct lunfs_time mtime;
	/* While h pins the inode lock, no other host changes this inode: its
	 * size and block map may be cached here.  Every bmap change and every
	 * failed transaction clears the cache. */
	int size_ok;
	uint64_t size;
	struct mapc *mapc; /* MAPC_SIZE entries, direct-mapped by unit */
	struct iostat io;  /* its data I/O while open here (atomic) */
	/* An eager fallocate zeroes file units [zb0, zb1) with v->mu dropped
	 * and maps them (zbusy, under v->mu: one at a time per file): no
	 * write into them registers meanwhile (gw_wait_ready).  falloc: eager
	 * fallocates under way (under v->mu): a handoff waits for them. */
	int zbusy, falloc;
	uint64_t zb0, zb1;
	/* A long operation on this inode commits in steps (tx_step) with
	 * v->mu dropped between them: from its first step to its end, no
	 * write into a hole registers and no eager fallocate maps blocks
	 * (they change the inode under the open's pin).  Under v->mu. */
	int stepping;
	/* Its last close is under way: it may drop v->mu (a lock wait, the
	 * steps of an unlinked file's free) while this stays in the table;
	 * an open that finds it waits until it is gone (gw_cv) and looks
	 * again. */
	int closing;
	struct ofile *next;
};

#define MAPC_SIZE 4096
struct mapc {
	uint64_t lblk1; /* unit + 1; 0 = empty */
	uint64_t ptr;
};
void of_invalidate(struct lunfs_vol *v, uint64_t ino); /* ino 0: every open file */
/* Drops the cached mapping of unit lblk of ino (its pointer changes). */
void of_forget(struct lunfs_vol *v, uint64_t ino, uint64_t lblk);

struct lunfs_file {
	struct lunfs_vol *v;
	struct ofile *of;
	int mode;
	pthread_mutex_t mu; /* serialises read-modify-write of partial sectors */
};

/* One metadata operation: holds v->mu from tx_begin to tx_end. */
#define TX_MAX 240
struct txn {
	struct lunfs_vol *v;
	struct buf *dirty[TX_MAX];
	int ndirty;
	struct buf *transient;  /* blocks read without their lock */
	struct held **pinned;   /* locks this operation holds pinned (each once) */
	int npinned, cpinned;
	int preflush;           /* data written for this txn must be durable first */
	int draining;           /* tx_drain() ran: v->draining counts us */
	int drained;            /* and saw no data I/O registered: done */
	struct acq *owns;       /* the inode it owns (tx_own): its record marked
				 * in v->acquiring, until tx_end */
	uint64_t owns_ino;      /* that inode (its open file is stepping) */
	struct late {           /* data zeroed at the commit (tx_zero_at_commit) */
		uint64_t off, len;
	} *late;
	int nlate;
	/* A restartable transaction (tx_run) gives up instead of waiting
	 * under v->mu while it has changed nothing (tx_can_restart): a cache
	 * miss or a lock it must acquire or wait for ends it with
	 * -ERESTART_TX and names what it needs here; the runner gets that
	 * without v->mu and runs the operation again from the start. */
	int restartable;
	int nrestarts;
	int grow_polled;        /* a restart read the superblock (NEED_GROW) */
	struct tx_need {
		int kind;               /* NEED_READ, NEED_LOCK, NEED_OPEN_FLAG */
		uint64_t addr, lock;    /* a block, and its lock if we hold it */
		uint64_t off, object;   /* a lock */
		int mode;
	} need;
	struct buf *pre;        /* blocks earlier runs read without their lock */
	int failed_need;        /* tx_run ended because getting this failed */
};

/* Internal only: never returned by the library (tx_run consumes it). */
#define ERESTART_TX (LUNFS_ERRBASE + 64)
enum { NEED_READ = 1, NEED_LOCK = 2, NEED_OPEN_FLAG = 3, NEED_GROW = 4, NEED_AGAIN = 5 };
/* Runs body (an expression using tx) as a restartable transaction: begins
 * tx, evaluates r = body, and while it asks for a restart, gets what it
 * needs without v->mu and runs it again.  Ends with tx open (v->mu held)
 * and r the body's result, or the failure of getting what it needed.  The
 * body must change nothing outside tx's dirty blocks before its first
 * dirty block, or call tx_no_restart first (tx_step does). */
#define TX_RUN(v, tx, r, body) \
	for (tx_begin_restartable((v), (tx)); (r) = (body), tx_retry((tx), &(r));)
void tx_begin_restartable(struct lunfs_vol *v, struct txn *tx);
int tx_retry(struct txn *tx, int *r);
static inline void tx_no_restart(struct txn *tx)
{
	tx->restartable = 0;
}

/* Data I/O outside v->mu (see the top of this file).  io_enter: v->mu held;
 * registers the caller and returns 0, or, while a transaction frees file
 * blocks, waits for it (on v->mu, dropping it) and returns -EAGAIN without
 * registering: what the caller looked up before may name a block freed
 * meanwhile, so it must look again.  io_exit: v->mu not held.  tx_drain:
 * called before a file block is freed; v->mu held. */
int io_enter(struct lunfs_vol *v);
/* io_enter without v->mu: registers and returns 0, or returns -EAGAIN at
 * once (not registered) while a transaction frees file blocks.  The caller
 * looks its blocks up after registering: a free that starts later waits
 * for its io_exit, one under way made this fail. */
int io_enter_fast(struct lunfs_vol *v);
void io_exit(struct lunfs_vol *v);
void io_exit_n(struct lunfs_vol *v, unsigned n); /* n I/Os at once */
void tx_drain(struct txn *tx);
/* Ends tx's drain before its end (data I/O may register again). */
void tx_undrain(struct txn *tx);

void tx_begin(struct lunfs_vol *v, struct txn *tx);
/* Commits the dirty blocks (if any) through the journal, then ends. */
int tx_commit(struct txn *tx);
/* Drops the dirty blocks from the cache (a re-read finds the last committed
 * image: the journal's pending copy, else the home). */
void tx_end(struct txn *tx, int r);
/* A commit that goes on, with the journal write outside v->mu: the dirty blocks are
 * sealed under it, then v->mu is dropped for the write and taken again;
 * tx stays open (its pins hold its locks).  For a caller that acts under
 * v->mu after its commit (the group commit's leader). */
int tx_flush_unlocked(struct txn *tx);
/* tx_commit in two halves, for a caller that acts under v->mu between the
 * seal and tx_end (the last close takes its file out of the table): the
 * seal (tx stays open; *sd holds what to write, nothing when sd->jt is
 * NULL), then, after tx_end, the journal write without v->mu.  A sealed
 * transaction must be written (tx_write_sealed), even after a failure:
 * the journal writes in sealed order. */
struct tx_sealed {
	struct jnl_txn *jt;
	uint64_t addrs[TX_MAX];
	int n;
};
int tx_seal_only(struct txn *tx, struct tx_sealed *sd);
int tx_write_sealed(struct lunfs_vol *v, struct tx_sealed *sd);
/* Commits what is dirty so far and continues: a step of a large operation
 * on inode ino, its journal write without v->mu (vol.c says what holds
 * meanwhile).  The caller stored every copy it changed (pointer blocks,
 * the inode) and keeps no cached block across. */
int tx_step(struct txn *tx, uint64_t ino);
/* Makes inode ino tx's alone on this host until tx_end: its lock record is
 * marked in v->acquiring, so that every other operation of this host waits
 * before it pins the lock (vl_get) or, pinned already, before it reads the
 * inode (ino_lock_settled).  A no-op when tx owns it already, or when
 * another thread acquires the record (tx holds no pin then) or memory is
 * short (then without the mark, as before).  v->mu held. */
void tx_own(struct txn *tx, uint64_t ino);
/* File units a step of a long operation frees or maps at most: it bounds
 * how long one step runs under v->mu (a few milliseconds: each unit
 * decodes and encodes its cluster header) and, for a free, drains data
 * I/O. */
#define TX_STEP_UNITS 2048
/* Zeroes the device bytes [off, off + len) (off + len on a logical block
 * boundary) at the next commit of tx, after the journal made room and
 * right before the journal write, so that no journal flush (a checkpoint)
 * comes between them and a crash keeps both or neither: a data change that
 * must go with the transaction (the tail of a block a truncate cuts).  (A
 * flush of another thread outside v->mu at that moment still can.)
 * Nothing is written if tx fails first. */
int tx_zero_at_commit(struct txn *tx, uint64_t off, uint64_t len);
/* vol_grow_check for an allocation that found no space, or a block number
 * past the geometry (enospc 0): a restartable transaction asks for it
 * (-ERESTART_TX; tx_retry reads the superblock without v->mu, follows a
 * grow and runs the operation again), once; any other reads under v->mu.
 * At ENOSPC, a read earlier in the operation (tx->grow_polled: at its
 * restart, or by alloc_prefetch) is enough.  Returns 1 when the volume
 * grew, 0, or -ERESTART_TX. */
int tx_grow_check(struct txn *tx, int enospc);
/* A restartable transaction that will need the lock at off in mode (for
 * a caller that takes it another way, of_pin): -ERESTART_TX unless this
 * host holds it ready to pin, 0 otherwise or when tx cannot restart. */
int tx_want_lock(struct txn *tx, uint64_t off, uint64_t object, int mode);
/* Before an open pins the lock at off (held ready: tx_want_lock), so that
 * of_pin's compare-and-write that marks the record pinned by an open
 * (LK_HOLD_OPEN) runs without v->mu too: -ERESTART_TX while tx can restart
 * and this host's holder entry lacks the flag, 0 otherwise. */
int tx_want_open_flag(struct txn *tx, uint64_t off, uint64_t object);
/* Takes (or reuses) the lock at off in mode, pinned until tx_end. */
int tx_lock(struct txn *tx, uint64_t off, uint64_t object, int mode);
/* Returns the block at addr: cached when this host holds lock, else a
 * transient copy.  Verifies nothing (the caller decodes). */
int tx_read(struct txn *tx, uint64_t addr, uint64_t lock, struct buf **out);
/* A block being written for the first time (no read): zeroed, cached. */
int tx_new(struct txn *tx, uint64_t addr, uint64_t lock, struct buf **out);
/* Marks b as part of the transaction (b must be under a lock we hold). */
int tx_dirty(struct txn *tx, struct buf *b);
int vol_check_writable(struct lunfs_vol *v);

/* Lock helpers (vol.c) */
/* may_drop: the caller read and changed nothing under a lock yet, so a
 * wait for a contended lock may drop v->mu (other operations and data I/O
 * of this host go on meanwhile). */
int vl_get(struct lunfs_vol *v, uint64_t off, uint64_t object, int mode, int may_drop,
	   struct held **out);
void vl_unpin(struct lunfs_vol *v, struct held *h);
struct held *vl_find(struct lunfs_vol *v, uint64_t off);
/* While a thread of this host acquires or releases the lock at off with
 * v->mu dropped, or a long operation owns its inode (tx_step), waits for
 * that to end (v->mu dropped meanwhile) and returns 1; else 0 at once. */
int vl_wait_acquired(struct lunfs_vol *v, uint64_t off);
/* Whether a thread of this host acquires or releases the lock at off, or
 * a long operation owns its inode (tx_step), right now. */
int vl_busy(struct lunfs_vol *v, uint64_t off);

/* Inodes (inode.c) */
int ino_check(struct lunfs_vol *v, uint64_t ino);
/* Before an operation that changes inode ino's map or size reads it: its
 * lock (exclusive) first, then the wait until no write into it is pending
 * (gw_wait_ino: they commit under a shared pin of the same hold), then,
 * with drain, the drain of data I/O (tx_drain).  Every wait, each with
 * v->mu dropped, comes before the inode is read (a copy read first could
 * go stale), and a wait for the lock (another thread acquires it, or a
 * long operation owns the inode: tx_step) holds no drain. */
int ino_lock_settled(struct txn *tx, uint64_t ino, int drain);
/* Reads inode ino (locked in mode if mode != LK_FREE) into *in. */
int ino_read(struct txn *tx, uint64_t ino, int mode, struct lunfs_inode *in);
int ino_write(struct txn *tx, struct lunfs_inode *in);
/* A new inode into *in; new_dir_blk: its entry will need a new directory
 * block (dir_has_room said no), whose meta cluster is loaded before
 * anything changes. */
int ino_alloc(struct txn *tx, int new_dir_blk, struct lunfs_inode *in);
/* Frees inode in in its group (its blocks and xattr blocks must be freed
 * already: file_release_inode does both). */
int ino_free(struct txn *tx, struct lunfs_inode *in);
void ino_stat(struct lunfs_vol *v, const struct lunfs_inode *in, struct lunfs_stat *st);
void ino_now(struct lunfs_time *t);

/* Allocation (alloc.c).  kind RC_FILE or RC_META. */
int blk_alloc(struct txn *tx, int kind, uint64_t *blk);
int blk_free(struct txn *tx, int kind, uint64_t blk);
int blk_ref(struct txn *tx, int kind, uint64_t blk, int delta, uint32_t *newref);
/* Reservations of free file blocks for pending writes (fill.c): reserve
 * one (allocation skips it from then on; its cluster lock stays pinned),
 * claim it in the transaction that points at it (marks it used), and give
 * the reservation back after that transaction, whatever its outcome. */
int blk_reserve(struct txn *tx, uint64_t *blk);
/* Loads (locks and reads) the clusters of kind from which an allocation
 * would take its entries, as rc_take would, changing nothing: from the
 * k0-th from the hint, at most max, until they hold n free entries
 * (*seen: how many they hold).  Run
 * as a restartable transaction before one that allocates under v->mu
 * (alloc_prefetch), it takes the locks and reads the headers without it. */
int blk_alloc_ready(struct txn *tx, int kind, uint64_t k0, unsigned max, uint64_t n,
		    uint64_t *seen);
/* blk_alloc_ready in restartable transactions of its own until the
 * clusters loaded hold n free entries of kind; errors are left to the
 * allocation that follows.  Short of n free file blocks, it reads the
 * superblock (an online grow on another host) without v->mu, follows a
 * grow, and returns 1: the caller's transaction sets tx.grow_polled, so
 * that its allocation at ENOSPC does not read it again under v->mu (a grow
 * committed since is concurrent with the operation).  Else 0. */
int alloc_prefetch(struct lunfs_vol *v, int kind, uint64_t n);
int blk_claim(struct txn *tx, uint64_t blk);
void blk_unreserve(struct lunfs_vol *v, uint64_t blk);
int alloc_counts(struct lunfs_vol *v, uint64_t *free_file, uint64_t *free_ino);

/* Block maps (bmap.c).  Units are file blocks, or meta blocks for
 * INOF_MAPMETA inodes. */
int bmap_get(struct txn *tx, struct lunfs_inode *in, uint64_t lblk, uint64_t *ptr);
int bmap_set(struct txn *tx, struct lunfs_inode *in, uint64_t lblk, uint64_t ptr);
/* Frees every unit at or after lblk (within [lblk, end) when end != 0). */
int bmap_punch(struct txn *tx, struct lunfs_inode *in, uint64_t lblk, uint64_t end);
uint64_t bmap_max_units(void);
static inline int ino_kind(const struct lunfs_inode *in)
{
	return (in->flags & INOF_MAPMETA) ? RC_META : RC_FILE;
}

/* Directories (dir.c) */
int dir_lookup(struct txn *tx, struct lunfs_inode *dir, const char *name, uint64_t *ino,
	       uint32_t *type);
int dir_add(struct txn *tx, struct lunfs_inode *dir, const char *name, uint64_t ino, uint32_t type);
/* Before an operation that will dir_add name changes anything: if no
 * block of dir has room for it, loads the meta cluster its new block would
 * come from (blk_alloc_ready), so that a restartable operation takes that
 * lock and reads that header without v->mu.  Changes nothing. */
int dir_prepare_add(struct txn *tx, struct lunfs_inode *dir, const char *name);
/* 1 if a block of dir has room for an entry called name, 0 if dir_add
 * would need a new block, or -errno.  Changes nothing. */
int dir_has_room(struct txn *tx, struct lunfs_inode *dir, const char *name);
int dir_remove(struct txn *tx, struct lunfs_inode *dir, const char *name);
int dir_set(struct txn *tx, struct lunfs_inode *dir, const char *name, uint64_t ino, uint32_t type);
int dir_is_empty(struct txn *tx, struct lunfs_inode *dir);
int dir_iter(struct txn *tx, struct lunfs_inode *dir, uint64_t off, lunfs_dirfn fn, void *arg);
int name_check(const char *name);

/* vol.c: ends the operation tx, the one error exit of every operation:
 * commits it when r is 0, else drops what it changed (tx_end).  Returns r,
 * or the commit's error. */
int op_finish(struct txn *tx, int r);
/* dir.c: reads directory ino (-ENOTDIR if it is not one) */
int dir_read(struct txn *tx, uint64_t ino, int mode, struct lunfs_inode *d);

/* Statistics (iostat.c).  ios_begin/ios_end bracket one data request of
 * an open file (of may be NULL: the volume only); ios_end counts it when
 * res >= 0.  ios_lock_wait counts a lock wait of this host, and of the
 * file whose request this thread serves.  ios_sample fills what the next
 * renewals publish: the volume's counters and the busiest open files
 * (v->mu held). */
uint64_t ios_begin(struct lunfs_vol *v, struct ofile *of);
void ios_end(struct lunfs_vol *v, struct ofile *of, int write, int64_t res, uint64_t t0);
void ios_lock_wait(struct lunfs_vol *v, uint64_t ns);
void ios_sample(struct lunfs_vol *v, struct lunfs_hbstat *st);
/* Makes io the open file whose request this thread serves (NULL: none),
 * for ios_lock_wait; returns the one it served before. */
struct iostat *ios_serve(struct iostat *io);
/* data.c: the data path lunfs_pread and lunfs_pwrite count around */
ssize_t file_pread(struct lunfs_file *f, void *buf, size_t len, uint64_t off);
ssize_t file_pwrite(struct lunfs_file *f, const void *buf, size_t len, uint64_t off);

/* inode.c: one transaction that reads inode ino locked exclusive (after
 * the writes pending into it, and with drain after the data I/O in flight:
 * tx_drain), lets fn change it (and what hangs off it), writes it and
 * commits; fills st. */
int modify_inode(struct lunfs_vol *v, uint64_t ino,
		 int (*fn)(struct txn *, struct lunfs_inode *, void *), void *arg,
		 struct lunfs_stat *st, int drain);
/* xattr.c: frees the xattr blocks of in (its inode is being freed: the
 * free path calls it before ino_free). */
int xattr_free_all(struct txn *tx, struct lunfs_inode *in);
/* Pending writes (fill.c): a write into holes or to-be-zeroed blocks, or
 * past the end, of at most GW_BLOCKS file blocks.  Its data is written
 * outside v->mu; the transaction that exposes it (the blocks claimed, the
 * pointers, the size and times) is shared by every write pending at that
 * moment: one group commit.  See docs/LOCKING.md, section 15. */
#define GW_BLOCKS 32 /* a FUSE write (1 MiB) is one, even with 64 KiB blocks */
enum {
	GW_MAPPING,    /* its range is being looked up and reserved (v->mu held) */
	GW_WRITING,    /* its data is being written (outside v->mu) */
	GW_WRITTEN,    /* data written: waits for a group commit */
	GW_COMMITTING, /* in the group being committed */
	GW_DONE,       /* res is final; no longer listed */
};
struct gfill {         /* one file block the write exposes */
	uint64_t lblk, blk;
	uint64_t old;  /* its pointer before: 0 (a hole; blk is reserved) or TBZ */
};
struct gwrite {
	struct ofile *of;
	uint64_t lblk0, lblk1; /* the file blocks it touches: [lblk0, lblk1) */
	uint64_t end;          /* the file's size after it, at least */
	int nfill;
	struct gfill fill[GW_BLOCKS];
	int state, res;
	uint64_t flushed;      /* dev_flush_mark() once its data was written */
	uint64_t seq;          /* order of registration (v->gw_seq) */
	pthread_cond_t cv;     /* its thread waits here in gw_finish */
	struct gwrite *next;   /* v->gw, oldest first */
};
/* All with v->mu held.  gw_wait_ready: at the start of a transaction (it may
 * drop v->mu): until no transaction is parked and no pending write of of
 * touches [lblk0, lblk1).  gw_add: lists g (GW_MAPPING).  gw_drop: gives
 * its reservations back and unlists it with result r.  gw_wait_ino: at the
 * start of a transaction that changes ino's block map or size other than by
 * writing: until no write into ino is pending. */
void gw_wait_ready(struct lunfs_vol *v, struct ofile *of, uint64_t lblk0, uint64_t lblk1);
void gw_add(struct lunfs_vol *v, struct gwrite *g);
void gw_drop(struct lunfs_vol *v, struct gwrite *g, int r);
void gw_wait_ino(struct lunfs_vol *v, uint64_t ino);
/* g's data is written (r: its result); v->mu not held.  Waits until a group
 * commit that holds g is durable, leading one when none runs.  Returns 0 or
 * -errno (g is unlisted either way).  g->cv was set up with lunfs_cond_init. */
int gw_finish(struct lunfs_vol *v, struct gwrite *g, int r);
/* A transaction waits with v->mu dropped after it read or changed blocks
 * (tx_drain, a lock another thread acquires): no group commit or write
 * registration may look at the cache meanwhile. */
void tx_park(struct lunfs_vol *v);
void tx_unpark(struct lunfs_vol *v);

/* The open-file table (ofile.c; of_invalidate and of_forget above).
 * v->mu held, except of_touch (the fast path's writes) and what it calls
 * from map_cached; each takes of->mapmu for what it changes or reads. */
struct ofile *of_find(struct lunfs_vol *v, uint64_t ino);
void of_overlay(struct ofile *of, struct lunfs_stat *st);
/* of_overlay for st->ino, if it is open here */
void of_overlay_stat(struct lunfs_vol *v, struct lunfs_stat *st);
int of_handed_off(const struct ofile *of);
/* forgets the times writes left pending, unless a write came after upto
 * (NULL: whatever came) */
void of_clear_times(struct ofile *of, const struct lunfs_time *upto);
/* gives back times of_take_times took, unless a write marked newer ones */
void of_restore_times(struct ofile *of, const struct lunfs_time *t);
/* a write changed the file's data now: its mtime and ctime are due */
void of_touch(struct ofile *of, const struct lunfs_time *now);
/* the times writes left pending: returns 1 and *t, clearing them, or 0 */
int of_take_times(struct ofile *of, struct lunfs_time *t);
int of_times_dirty(struct ofile *of);
void of_set_map(struct ofile *of, uint64_t lblk, uint64_t ptr); /* caches a pointer */
void of_set_size(struct ofile *of, uint64_t size);
void of_set_hold(struct ofile *of, struct held *h, int handed_off);
/* Whether an open mode writes. */
static inline int mode_writable(int mode)
{
	return mode == LUNFS_OPEN_EXCL || mode == LUNFS_OPEN_RW || mode == LUNFS_OPEN_MULTI;
}

/* open.c: makes of pin its inode lock in mode want (or stronger), marked
 * as held by an open (LK_HOLD_OPEN), until its last close.  v->mu held. */
int of_pin(struct lunfs_vol *v, struct ofile *of, int want);
/* vol.c: drops a pin of h; the last one releases it at once (checkpoint
 * first), with v->mu dropped for the checkpoint and the CAW.  v->mu held
 * on entry and return. */
int vl_release_now(struct lunfs_vol *v, struct held *h);
/* vol.c: releases h (checkpoint first: the journal rule), dropping its
 * cached blocks.  v->mu held. */
int vl_release(struct lunfs_vol *v, struct held *h);
/* vol.c: drops the cached blocks under lock (0: every block).  v->mu held. */
void vol_cache_drop_lock(struct lunfs_vol *v, uint64_t lock);
/* vol.c: the linger thread (releases idle holds, checkpoints, samples the
 * I/O statistics, follows an online grow); started by the mount. */
void *vol_linger_thread(void *arg);
/* The device probe (dev_set_probe) that counts v->mu_io. */
void vol_mu_probe(void *arg, int op);
#define VOL_NBUCKETS 4096 /* buckets of the block cache's hash */

/* The free path (free.c). */
/* Frees everything of an inode listed as an orphan (its blocks, xattr
 * blocks, the inode), in steps; takes it out of the orphan directory. */
int file_release_inode(struct txn *tx, struct lunfs_inode *in);
/* Lists ino in the orphan directory (add) or takes it out. */
int orphan_edit(struct txn *tx, uint64_t ino, int add);
/* orphan_edit's add: what orphan_edit(tx, ino, 1) will read and lock,
 * read and locked before the operation changes anything (a restartable
 * one: without v->mu). */
#define ORPHAN_PREPARE 2
/* A truncate of ino to size that may take steps is listed in the orphan
 * directory while it runs (free.c says why): truncate_list before it
 * (*listed: it was), truncate_unlist after it (ok: it succeeded; after a
 * failure the entry stays for the next orphan pass). */
int truncate_list(struct lunfs_vol *v, uint64_t ino, uint64_t size, int *listed);
void truncate_unlist(struct lunfs_vol *v, uint64_t ino, int ok);
/* Sets in's size: a cut frees the blocks past it and zeroes the cut
 * block's tail with the commit (tx_zero_at_commit); growth only changes
 * the size (the new part reads as zeros).  Writes in. */
int file_truncate(struct txn *tx, struct lunfs_inode *in, uint64_t size);

/* The data path (data.c). */
/* Writes len bytes at device offset off; fresh: the sectors around the
 * range belong to a block being exposed now, so they are zeros. */
int write_range(struct lunfs_vol *v, uint64_t off, const void *buf, size_t len, int fresh);
/* A new inode's first len bytes (len <= file_bs) into a new file block 0,
 * written before the pointer (tx->preflush), for a symlink target longer
 * than the inline area. */
int file_put_first(struct txn *tx, struct lunfs_inode *in, const void *buf, size_t len);
/* Reads len bytes of file block 0 (it must be mapped and written). */
int file_get_first(struct txn *tx, struct lunfs_inode *in, void *buf, size_t len);
/* The device requests (at most 2) of a, a plain read or write of mapped
 * blocks: aligned, inside the file, nothing to allocate or zero; their priv
 * is priv.  Returns their number, the caller then registered as a data I/O
 * (io_enter: it calls io_exit once they completed), or 0: the synchronous
 * path (lunfs_pread, lunfs_pwrite) must serve a.  With cached_only, only
 * the open file's map cache is asked (no v->mu, no device read: the event
 * loop's lunfs_loop_try).  v->mu not held. */
int file_aio_map(struct lunfs_file *f, struct lunfs_aio *a, struct dev_io io[2],
		 struct iovec iov[2], void *priv, int cached_only);

/* aio.c: the completion-driven data path (lunfs_aio_start) */
struct aeng;
void aio_stop(struct lunfs_vol *v);

#endif
