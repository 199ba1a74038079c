/* Opening and closing files: the open modes and the inode locks they pin,
 * the last close (times committed, an unlinked inode freed), fsync, and the
 * lock handoff for live migration (docs/LOCKING.md sections 8 and 13). */
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <syslog.h>
#include <unistd.h>
#include "fs/internal.h"

static int lk_mode_for(int mode)
{
	switch (mode) {
	case LUNFS_OPEN_EXCL:
	case LUNFS_OPEN_RW:
		return LK_EXCLUSIVE;
	case LUNFS_OPEN_SHARED_RO:
		return LK_SHARED_RO;
	case LUNFS_OPEN_MULTI:
		return LK_MULTI_WRITER;
	}
	return LK_FREE;
}

/* Every unit below size is allocated and not to-be-zeroed. */
static int fully_allocated(struct txn *tx, struct lunfs_inode *in)
{
	uint64_t n = (in->size + tx->v->sb.file_bs - 1) / tx->v->sb.file_bs;
	for (uint64_t i = 0; i < n; i++) {
		uint64_t p;
		int r = bmap_get(tx, in, i, &p);
		if (r)
			return r;
		if (!p || (p & PTR_TBZ))
			return 0;
	}
	return 1;
}

int of_pin(struct lunfs_vol *v, struct ofile *of, int want)
{
	VOL_HELD(v);
	uint64_t ino = of->ino;
	if (want == LK_FREE || (of->h && (of->h->lk.mode == want || of->h->lk.mode == LK_EXCLUSIVE)))
		return 0;
	struct held *h;
	uint64_t lock = geom_ino_lock(&v->sb, ino);
	int r = vl_get(v, lock, geom_ino_blk(&v->sb, ino), want, 0, &h);
	if (r)
		return r;
	/* mark the hold as pinned by an open: others fail at once */
	if (!(h->lk.rec.holders[0].flags & LK_HOLD_OPEN) || h->lk.rec.nholders > 1) {
		int fl = 0;
		for (uint32_t i = 0; i < h->lk.rec.nholders; i++)
			if (h->lk.rec.holders[i].slot == v->slot)
				fl = h->lk.rec.holders[i].flags;
		if (!(fl & LK_HOLD_OPEN) &&
		    (r = lk_acquire_flags(v->hb, &h->lk, lock, geom_ino_blk(&v->sb, ino), h->lk.mode,
					  LK_HOLD_OPEN, LK_NOWAIT, 0))) {
			vl_unpin(v, h);
			return r;
		}
	}
	if (of->h)
		vl_unpin(v, of->h); /* the same held entry, now stronger */
	of_set_hold(of, h, of->handed_off);
	return 0;
}

/* open_inode's steps under tx: the inode read into in, this host's open
 * of it found or made and pinned, f filled in.  Returns 0 or -errno (an
 * ofile made here is gone again). */
static int open_in(struct txn *tx, uint64_t ino, int mode, int dir, struct lunfs_inode *in,
		   struct lunfs_file *f, int *lock_busy)
{
	struct lunfs_vol *v = tx->v;
	struct ofile *of = NULL;
	int r, created = 0;
	if ((r = ino_read(tx, ino, LK_FREE, in)))
		goto out;
	if (!S_ISDIR(in->mode) != !dir) {
		r = dir ? -ENOTDIR : -EISDIR;
		goto out;
	}
	if (mode_writable(mode) && (in->flags & INOF_SNAPSHOT)) {
		r = -EROFS;
		goto out;
	}
	of = of_find(v, ino);
	if (of && of->closing) {
		/* its last close is under way with v->mu dropped (a lock
		 * wait, an unlinked file's free): wait until it is gone, then
		 * run again (read nothing of it under a lock yet) */
		while ((of = of_find(v, ino)) && of->closing)
			pthread_cond_wait(&v->gw_cv, &v->mu);
		of = NULL;
		tx->need = (struct tx_need){.kind = NEED_AGAIN};
		r = -ERESTART_TX;
		goto out;
	}
	if (of) {
		/* this host's other opens */
		if (of->excl_here || (mode == LUNFS_OPEN_EXCL && of->opens) ||
		    ((mode == LUNFS_OPEN_MULTI) != (of->mode == LUNFS_OPEN_MULTI) &&
		     of->mode != LUNFS_OPEN_READ && mode != LUNFS_OPEN_READ)) {
			r = -EBUSY;
			goto out;
		}
	} else {
		if (!(of = calloc(1, sizeof(*of)))) {
			r = -ENOMEM;
			goto out;
		}
		of->ino = ino;
		of->mode = LUNFS_OPEN_READ;
		pthread_mutex_init(&of->mapmu, NULL);
		created = 1;
	}
	/* the lock's acquisition or wait without v->mu (a restart); from the
	 * pin on, the open changes this host's open-file table: no restart */
	int want = lk_mode_for(mode);
	if (want != LK_FREE && ((r = tx_want_lock(tx, geom_ino_lock(&v->sb, ino),
						  geom_ino_blk(&v->sb, ino), want)) ||
				(r = tx_want_open_flag(tx, geom_ino_lock(&v->sb, ino),
						       geom_ino_blk(&v->sb, ino)))))
		goto out;
	tx_no_restart(tx);
	if ((r = of_pin(v, of, want))) {
		if (r == -EBUSY && lock_busy)
			*lock_busy = 1;
		goto out;
	}
	if (mode == LUNFS_OPEN_MULTI && (r = fully_allocated(tx, in)) != 1) {
		r = r ? r : -EINVAL; /* multi-writer needs every block allocated and zeroed */
		if (created && of->h)
			vl_unpin(v, of->h);
		goto out;
	}
	if (mode != LUNFS_OPEN_READ && (of->mode == LUNFS_OPEN_READ || mode == LUNFS_OPEN_EXCL ||
					 mode == LUNFS_OPEN_RW))
		of->mode = mode;
	if (mode == LUNFS_OPEN_EXCL)
		of->excl_here = 1;
	if (mode_writable(mode))
		of->writers++;
	of->opens++;
	if (created) {
		of->next = v->ofiles;
		v->ofiles = of;
		created = 0;
	}
	f->v = v;
	f->of = of;
	f->mode = mode;
	pthread_mutex_init(&f->mu, NULL);
	r = 0;
out:
	if (created) {
		pthread_mutex_destroy(&of->mapmu);
		free(of);
	}
	return r;
}

/* lunfs_open, and lunfs_opendir (dir: ino must be a directory, opened
 * LUNFS_OPEN_READ).  *lock_busy (if not NULL) is set when the open failed
 * with -EBUSY on the inode lock (another host), not on this host's opens. */
static int open_inode(struct lunfs_vol *v, uint64_t ino, int mode, int dir, struct lunfs_file **out,
		      int *lock_busy)
{
	struct txn tx;
	struct lunfs_inode *in = malloc(sizeof(*in));
	struct lunfs_file *f = calloc(1, sizeof(*f));
	int r;
	if (!in || !f) {
		r = -ENOMEM;
		goto out;
	}
	if (mode < LUNFS_OPEN_READ || mode > LUNFS_OPEN_RW) {
		r = -EINVAL;
		goto out;
	}
	if (mode_writable(mode) && (r = vol_check_writable(v)))
		goto out;
	if (v->ro && mode != LUNFS_OPEN_READ)
		mode = mode == LUNFS_OPEN_SHARED_RO ? LUNFS_OPEN_READ : mode;
	TX_RUN(v, &tx, r, open_in(&tx, ino, mode, dir, in, f, lock_busy));
	if (r == -EBUSY && (tx.failed_need == NEED_LOCK || tx.failed_need == NEED_OPEN_FLAG) &&
	    lock_busy)
		*lock_busy = 1; /* the restart's acquisition met another host's open pin */
	tx_end(&tx, r);
	if (r)
		goto out;
	*out = f;
	f = NULL;
out:
	free(in);
	free(f);
	return r;
}

/* Does another host pin the lock record rec with an open? */
static int other_open_pin(const struct lunfs_vol *v, const struct lunfs_lock *rec)
{
	for (uint32_t i = 0; i < rec->nholders && i < LUNFS_MAX_HOLDERS; i++)
		if (rec->holders[i].slot != v->slot && (rec->holders[i].flags & LK_HOLD_OPEN))
			return 1;
	return 0;
}

/* A writable open that meets another host's open pin waits up to
 * v->open_wait_ms for it to go (LOCKING.md 10.14: a live migration's
 * destination opens for writing a few ms before the source's FUSE RELEASE
 * has let go of the lock).  The wait polls the lock record every 25 ms
 * without v->mu (no lock wait under the volume mutex: LOCKING.md 15), and
 * tries the open again whenever the record changed or shows no other
 * host's open pin.  Still -EBUSY after the wait. */
#define OPEN_WAIT_POLL_MS 25
int lunfs_open(struct lunfs_vol *v, uint64_t ino, int mode, struct lunfs_file **out)
{
	int busy = 0, nowait = mode & LUNFS_OPEN_NOWAIT;
	mode &= ~LUNFS_OPEN_NOWAIT;
	int r = open_inode(v, ino, mode, 0, out, &busy);
	if (r != -EBUSY || !busy || !mode_writable(mode) || !v->open_wait_ms || nowait)
		return r;
	pthread_mutex_lock(&v->mu);
	uint64_t lock = geom_ino_lock(&v->sb, ino);
	pthread_mutex_unlock(&v->mu);
	uint64_t t0 = lunfs_now_ms(), last_gen = 0, tries = 1;
	struct lunfs_lock rec;
	if (lk_read(v->d, v->sb.uuid, lock, &rec) == 0)
		last_gen = rec.gen;
	while (lunfs_now_ms() - t0 < v->open_wait_ms) {
		usleep(OPEN_WAIT_POLL_MS * 1000);
		int e = lk_read(v->d, v->sb.uuid, lock, &rec);
		if (!e && rec.gen == last_gen && other_open_pin(v, &rec))
			continue;
		last_gen = e ? 0 : rec.gen;
		busy = 0;
		tries++;
		r = open_inode(v, ino, mode, 0, out, &busy);
		if (r != -EBUSY || !busy)
			break;
	}
	lunfs_log(r ? LOG_NOTICE : LOG_INFO,
		  "lunfs: open of inode %llu for writing waited %llu ms for another host's open "
		  "(%llu tries): %s",
		  (unsigned long long)ino, (unsigned long long)(lunfs_now_ms() - t0),
		  (unsigned long long)tries, r ? lunfs_strerror(r) : "opened");
	return r;
}

/* No lock: a lock held by an open directory would keep other hosts from
 * changing it.  The open counts here, so that a directory losing its last
 * name (rmdir, rename over it) stays an orphan until its last close; it
 * then pins its lock (drop_last_link in ops.c). */
int lunfs_opendir(struct lunfs_vol *v, uint64_t ino, struct lunfs_file **out)
{
	return open_inode(v, ino, LUNFS_OPEN_READ, 1, out, NULL);
}

/* Commits the mtime/ctime that writes left pending on an open inode. */
static int commit_times(struct txn *tx, struct ofile *of, struct lunfs_inode *in)
{
	struct lunfs_time t;
	if (!of_take_times(of, &t))
		return 0; /* taken by another commit meanwhile */
	int r = ino_read(tx, of->ino, LK_EXCLUSIVE, in);
	if (r)
		goto out;
	in->mtime = in->ctime = t;
	r = ino_write(tx, in);
out:
	if (r)
		of_restore_times(of, &t); /* still pending */
	return r;
}

/* What goes before an open lets go of the inode lock: the times writes
 * left pending (multi-writer files take no metadata change), with release
 * the inode of an unlinked file freed.  The caller commits it. */
static int commit_pending(struct txn *tx, struct ofile *of, struct lunfs_inode *in, int release)
{
	int r;
	if (of->mode == LUNFS_OPEN_MULTI)
		of_clear_times(of, NULL); /* multi-writer files take no metadata change */
	if (of_times_dirty(of) && (r = commit_times(tx, of, in)))
		return r;
	if (release && of->unlinked &&
	    ((r = ino_read(tx, of->ino, LK_EXCLUSIVE, in)) || (r = file_release_inode(tx, in))))
		return r;
	return 0;
}

/* The last writable open of of closed on this host while read-only opens
 * (SHARED_RO, READ) remain: the host lets go of the inode lock now, not at
 * the last close, and the remaining opens read on without a lock, as READ
 * opens do (LOCKING.md 8 and 10.14: QEMU's live migration keeps a read-only
 * handle open on the source after the switchover, while the destination
 * opens for writing).  The pending times go first, under the lock; then,
 * as at a last close, the release checkpoints (the journal rule), drops the
 * cached blocks and CAWs the record.  Ends tx (the caller's open still
 * counts in of->opens, so of stays while v->mu is dropped). */
static int drop_writer_hold(struct txn *tx, struct ofile *of, struct lunfs_inode *in)
{
	struct lunfs_vol *v = tx->v;
	int r = 0;
	gw_wait_ino(v, of->ino); /* none: the writers' handles are closed */
	if (vol_check_writable(v) == 0 && !(r = commit_pending(tx, of, in, 0)))
		r = tx_flush_unlocked(tx); /* the journal write without v->mu */
	tx_end(tx, r); /* the tx pinned the lock too: end it before letting go */
	if (r)
		return r; /* keep the hold: the times are not committed */
	pthread_mutex_lock(&v->mu);
	/* v->mu was dropped: a new writer, a handoff, an unlink or the close
	 * of every other handle (then ours is the last close) may have come */
	if (!of->writers && of->opens > 1 && of->h && !of->handed_off && !of->unlinked) {
		struct held *h = of->h;
		of_set_hold(of, NULL, 0);
		of->mode = LUNFS_OPEN_READ;
		of_invalidate(v, of->ino);
		r = vl_release_now(v, h);
		lunfs_log(r ? LOG_WARNING : LOG_INFO,
			  "lunfs: inode %llu: last writable open closed, %d read-only open(s) left: "
			  "lock released%s%s",
			  (unsigned long long)of->ino, of->opens - 1, r ? ": " : "", r ? lunfs_strerror(r) : "");
	}
	pthread_mutex_unlock(&v->mu);
	return r;
}

/* The last close of of on this host: what is pending commits, of goes and
 * its lock is let go.  Ends tx. */
static int last_close(struct txn *tx, struct ofile *of, struct lunfs_inode *in)
{
	struct lunfs_vol *v = tx->v;
	struct tx_sealed sd = {0};
	int r = 0;
	gw_wait_ino(v, of->ino); /* none: the writers' handles are open */
	of->closing = 1; /* it may drop v->mu below: opens wait for it */
	if (vol_check_writable(v) == 0 && !(r = commit_pending(tx, of, in, 1)))
		r = tx_seal_only(tx, &sd);
	/* of leaves the table under v->mu, before the journal write: an open
	 * meanwhile makes a new one (and finds the sealed inode in the cache) */
	struct ofile **pp = &v->ofiles;
	while (*pp != of)
		pp = &(*pp)->next;
	*pp = of->next;
	pthread_cond_broadcast(&v->gw_cv); /* opens waiting for it to go */
	free(of->mapc);
	pthread_mutex_destroy(&of->mapmu);
	struct held *h = of->h;
	free(of);
	/* the tx pinned h too: end the tx before letting go */
	tx_end(tx, r);
	if (sd.jt)
		r = tx_write_sealed(v, &sd); /* without v->mu */
	if (h) {
		/* the release checkpoints: it waits for that write */
		pthread_mutex_lock(&v->mu);
		int e = vl_release_now(v, h);
		pthread_mutex_unlock(&v->mu);
		if (!r)
			r = e;
	}
	return r;
}

int lunfs_close(struct lunfs_file *f)
{
	struct lunfs_vol *v = f->v;
	struct ofile *of = f->of;
	struct lunfs_inode *in = malloc(sizeof(*in));
	struct txn tx;
	int r = 0, rd = 0;
	if (!in)
		return -ENOMEM;
	tx_begin(v, &tx);
	if (f->mode == LUNFS_OPEN_EXCL)
		of->excl_here = 0;
	if (mode_writable(f->mode) && --of->writers == 0 && of->opens > 1 && of->h && !of->handed_off &&
	    !of->unlinked) {
		/* our open still counts meanwhile: of stays; its result is
		 * reported, but does not stop a last close that the other
		 * handles' closes meanwhile made ours */
		rd = drop_writer_hold(&tx, of, in);
		tx_begin(v, &tx);
	}
	if (--of->opens > 0) {
		r = rd;
		tx_end(&tx, r);
	} else {
		r = last_close(&tx, of, in);
	}
	pthread_mutex_destroy(&f->mu);
	free(f);
	free(in);
	return r ? r : rd;
}

/* lunfs_handoff's first transaction: of (NULL: not open here) must be open
 * for writing, and the times writes left in memory commit, under our lock. */
static int handoff_times(struct txn *tx, struct ofile *of, struct lunfs_inode *in)
{
	if (!of || !of->h || of->h->lk.mode != LK_EXCLUSIVE || of->handed_off ||
	    of->mode == LUNFS_OPEN_MULTI)
		return -ENOLCK; /* not open for writing here */
	if (of->unlinked)
		return -ESTALE;
	/* the times writes left in memory go first, under our lock */
	if (!of_times_dirty(of))
		return 0;
	return commit_times(tx, of, in); /* committed by op_finish, without v->mu */
}

/* lunfs_handoff's second transaction: of's lock goes to the host in slot. */
static int handoff_lock(struct txn *tx, struct ofile *of, uint64_t ino, uint32_t slot,
			uint64_t gen)
{
	struct lunfs_vol *v = tx->v;
	int r;
	/* pending writes commit under our lock; new ones wait for v->mu
	 * and then find the file handed off; an eager fallocate under way
	 * (it drops v->mu while it zeroes, its transaction pinning the lock)
	 * ends first */
	for (;;) {
		gw_wait_ino(v, ino);
		if (of_find(v, ino) != of)
			return -ENOLCK; /* closed while v->mu was dropped */
		if (of->falloc) {
			pthread_cond_wait(&v->gw_cv, &v->mu);
			continue;
		}
		/* a long operation that owns the inode (tx_step) pins the
		 * lock too: it ends first */
		if (!of->h || !vl_wait_acquired(v, of->h->lk.off))
			break;
	}
	if (!of->h || of->handed_off)
		return -ENOLCK; /* a close raced with us */
	/* no data I/O in flight when the lock goes, and none starts
	 * until the file is marked handed off: the fast path's
	 * registration fails while we drain, the locked path waits
	 * for v->mu and then finds it handed off */
	tx_drain(tx);
	if ((r = vl_hand_over(v, of->h, slot, gen)))
		return r;
	of_set_hold(of, NULL, 1);
	of->excl_here = 0;
	of_invalidate(v, ino);
	return 0;
}

int lunfs_handoff(struct lunfs_vol *v, uint64_t ino, const char *host)
{
	struct lunfs_inode *in = malloc(sizeof(*in));
	struct txn tx;
	uint32_t slot;
	uint64_t gen;
	int r;
	if (!in)
		return -ENOMEM;
	if (!host || !*host) {
		r = -EINVAL;
		goto out;
	}
	if ((r = vol_check_writable(v)) || (r = hb_find_live(v->hb, host, &slot, &gen)))
		goto out;
	if (slot == v->slot) {
		r = -EINVAL; /* to ourselves */
		goto out;
	}
	tx_begin(v, &tx);
	struct ofile *of = of_find(v, ino);
	r = op_finish(&tx, handoff_times(&tx, of, in));
	/* the journal rule's checkpoint, without v->mu: the one of
	 * vl_hand_over (under it) then writes only what was sealed meanwhile */
	if (r || (r = jnl_checkpoint(v->j)))
		goto out;
	tx_begin(v, &tx);
	/* v->mu was dropped: a last close may have freed of */
	of = of_find(v, ino);
	r = of ? handoff_lock(&tx, of, ino, slot, gen) : -ENOLCK;
	tx_end(&tx, r);
out:
	free(in);
	return r;
}

/* lunfs_fsync's transaction: the times writes left pending commit. */
static int fsync_times(struct txn *tx, struct lunfs_file *f, struct lunfs_inode *in)
{
	int r;
	if (f->of->handed_off)
		return -ESTALE;
	if (mode_writable(f->mode) && (r = vol_check_writable(tx->v)))
		return r; /* fenced: nothing this host wrote is known to be durable any more */
	if (!of_times_dirty(f->of) || !mode_writable(f->mode) || f->mode == LUNFS_OPEN_MULTI)
		return 0;
	return commit_times(tx, f->of, in); /* committed by op_finish, without v->mu */
}

int lunfs_fsync(struct lunfs_file *f)
{
	struct lunfs_vol *v = f->v;
	struct lunfs_inode *in = malloc(sizeof(*in));
	struct txn tx;
	int r;
	if (!in)
		return -ENOMEM;
	tx_begin(v, &tx);
	/* the commits sealed before (another fsync's of these times, any
	 * operation's) may still be in their journal write without v->mu */
	uint64_t upto = v->ro ? 0 : jnl_next_seq(v->j);
	r = op_finish(&tx, fsync_times(&tx, f, in));
	free(in);
	if (r || v->ro)
		return r;
	if ((r = jnl_wait_written_upto(v->j, upto)))
		return r;
	return dev_flush(v->d);
}
