/* Opening and closing files: the open modes and the inode locks they pin,
 * the last close (times committed, an unlinked inode freed), fsync, and the
 * lock handoff for live migration (docs/LOCKING.md sections 8 and 13). */
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
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
	of->h = h;
	return 0;
}

/* lunfs_open, and lunfs_opendir (dir: ino must be a directory, opened
 * LUNFS_OPEN_READ). */
static int open_inode(struct lunfs_vol *v, uint64_t ino, int mode, int dir, struct lunfs_file **out)
{
	struct txn tx;
	struct lunfs_inode *in = malloc(sizeof(*in));
	struct lunfs_file *f = calloc(1, sizeof(*f));
	struct ofile *of = NULL;
	int r, created = 0;
	if (!in || !f) {
		r = -ENOMEM;
		goto out_free;
	}
	if (mode < LUNFS_OPEN_READ || mode > LUNFS_OPEN_RW) {
		r = -EINVAL;
		goto out_free;
	}
	if (mode_writable(mode) && (r = vol_check_writable(v)))
		goto out_free;
	if (v->ro && mode != LUNFS_OPEN_READ)
		mode = mode == LUNFS_OPEN_SHARED_RO ? LUNFS_OPEN_READ : mode;
	tx_begin(v, &tx);
	if ((r = ino_read(&tx, ino, LK_FREE, in)))
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
		created = 1;
	}
	if ((r = of_pin(v, of, lk_mode_for(mode))))
		goto out;
	if (mode == LUNFS_OPEN_MULTI && (r = fully_allocated(&tx, in)) != 1) {
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
	*out = f;
	f = NULL;
	r = 0;
out:
	if (created)
		free(of);
	tx_end(&tx, r);
out_free:
	free(in);
	free(f);
	return r;
}

int lunfs_open(struct lunfs_vol *v, uint64_t ino, int mode, struct lunfs_file **out)
{
	return open_inode(v, ino, mode, 0, out);
}

/* No lock: a lock held by an open directory would keep other hosts from
 * changing it.  The open counts here, so that a directory losing its last
 * name (rmdir, rename over it) stays an orphan until its last close; it
 * then pins its lock (drop_last_link in ops.c). */
int lunfs_opendir(struct lunfs_vol *v, uint64_t ino, struct lunfs_file **out)
{
	return open_inode(v, ino, LUNFS_OPEN_READ, 1, out);
}

/* Commits the mtime/ctime that writes left pending on an open inode. */
static int commit_times(struct txn *tx, struct ofile *of, struct lunfs_inode *in)
{
	int r = ino_read(tx, of->ino, LK_EXCLUSIVE, in);
	if (r)
		return r;
	in->mtime = in->ctime = of->mtime;
	of->times_dirty = 0;
	return ino_write(tx, in);
}

int lunfs_close(struct lunfs_file *f)
{
	struct lunfs_vol *v = f->v;
	struct ofile *of = f->of;
	struct lunfs_inode *in = malloc(sizeof(*in));
	struct txn tx;
	int r = 0;
	if (!in)
		return -ENOMEM;
	tx_begin(v, &tx);
	if (f->mode == LUNFS_OPEN_EXCL)
		of->excl_here = 0;
	if (--of->opens > 0)
		goto out;
	gw_wait_ino(v, of->ino); /* none: the writers' handles are open */
	if (vol_check_writable(v) == 0) {
		if (of->mode == LUNFS_OPEN_MULTI)
			of->times_dirty = 0; /* multi-writer files take no metadata change */
		if (of->times_dirty)
			r = commit_times(&tx, of, in);
		if (!r && of->unlinked && !(r = ino_read(&tx, of->ino, LK_EXCLUSIVE, in)))
			r = file_release_inode(&tx, in);
		if (!r)
			r = tx_flush(&tx);
	}
	struct ofile **pp = &v->ofiles;
	while (*pp != of)
		pp = &(*pp)->next;
	*pp = of->next;
	free(of->mapc);
	if (of->h) {
		/* the tx pinned it too: end the tx before letting go */
		struct held *h = of->h;
		tx_end(&tx, r);
		pthread_mutex_lock(&v->mu);
		int e = vl_release_now(v, h);
		pthread_mutex_unlock(&v->mu);
		if (!r)
			r = e;
		free(of);
		goto done;
	}
	free(of);
out:
	tx_end(&tx, r);
done:
	pthread_mutex_destroy(&f->mu);
	free(f);
	free(in);
	return r;
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
		free(in);
		return -EINVAL;
	}
	if ((r = vol_check_writable(v)) || (r = hb_find_live(v->hb, host, &slot, &gen))) {
		free(in);
		return r;
	}
	if (slot == v->slot) {
		free(in);
		return -EINVAL; /* to ourselves */
	}
	tx_begin(v, &tx);
	struct ofile *of = of_find(v, ino);
	if (!of || !of->h || of->h->lk.mode != LK_EXCLUSIVE || of->handed_off ||
	    of->mode == LUNFS_OPEN_MULTI)
		r = -ENOLCK; /* not open for writing here */
	else if (of->unlinked)
		r = -ESTALE;
	/* the times writes left in memory go first, under our lock */
	if (!r && of->times_dirty && !(r = commit_times(&tx, of, in)))
		r = tx_flush(&tx);
	tx_end(&tx, r);
	if (!r) {
		pthread_mutex_lock(&v->mu);
		/* pending writes commit under our lock; new ones wait for v->mu
		 * and then find the file handed off */
		gw_wait_ino(v, ino);
		if (!of->h || of->handed_off) {
			r = -ENOLCK; /* a close raced with us */
		} else if (!(r = vl_hand_over(v, of->h, slot, gen))) {
			of->h = NULL;
			of->handed_off = 1;
			of->excl_here = 0;
			of_invalidate(v, ino);
		}
		pthread_mutex_unlock(&v->mu);
	}
	free(in);
	return r;
}

int lunfs_fsync(struct lunfs_file *f)
{
	struct lunfs_vol *v = f->v;
	struct lunfs_inode *in = malloc(sizeof(*in));
	struct txn tx;
	int r = 0;
	if (!in)
		return -ENOMEM;
	tx_begin(v, &tx);
	if (f->of->handed_off)
		r = -ESTALE;
	else if (mode_writable(f->mode) && (r = vol_check_writable(v)))
		; /* fenced: nothing this host wrote is known to be durable any more */
	else if (f->of->times_dirty && mode_writable(f->mode) && f->mode != LUNFS_OPEN_MULTI) {
		r = commit_times(&tx, f->of, in);
		if (!r)
			r = tx_flush(&tx);
	}
	tx_end(&tx, r);
	free(in);
	if (!r && !v->ro)
		r = dev_flush(v->d);
	return r;
}
