/* Inodes: read (locked or transient), write through the transaction,
 * allocate from inode groups, free. */
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include "fs/internal.h"
#include "fs/lunfs_test.h"

void ino_now(struct lunfs_time *t)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	t->sec = ts.tv_sec;
	t->nsec = ts.tv_nsec;
}

/* Reads inode ino into *in.  allow_free: a free inode is not -ENOENT. */
static int ino_load(struct txn *tx, uint64_t ino, int mode, struct lunfs_inode *in, int allow_free)
{
	struct lunfs_vol *v = tx->v;
	struct buf *b;
	const char *why;
	int r = ino_check(v, ino);
	if (r)
		return r;
	uint64_t lock = geom_ino_lock(&v->sb, ino), addr = geom_ino_blk(&v->sb, ino);
	if (mode != LK_FREE && (r = tx_lock(tx, lock, addr, mode)))
		return r;
	/* A block read without its lock may be torn by a writer on another
	 * host: its checksum says so, and a second read gets it whole. */
	for (int attempt = 0;; attempt++) {
		if ((r = tx_read(tx, addr, lock, &b)))
			return r;
		r = lunfs_inode_decode(b->data, v->sb.uuid, addr, ino, in, &why);
		if (!r || b->lock || attempt == 3)
			break;
	}
	if (r)
		return r;
	if (!allow_free && in->mode == 0)
		return -ENOENT;
	return 0;
}

int ino_read(struct txn *tx, uint64_t ino, int mode, struct lunfs_inode *in)
{
	return ino_load(tx, ino, mode, in, 0);
}

int ino_write(struct txn *tx, struct lunfs_inode *in)
{
	struct lunfs_vol *v = tx->v;
	struct buf *b;
	uint64_t lock = geom_ino_lock(&v->sb, in->ino), addr = geom_ino_blk(&v->sb, in->ino);
	if (!vl_find(v, lock))
		return -EINVAL;
	int r = tx_read(tx, addr, lock, &b);
	if (r)
		return r;
	in->gen++;
	lunfs_inode_encode(in, v->sb.uuid, addr, b->data);
	struct ofile *of = of_find(v, in->ino);
	if (of && of->h)
		of_set_size(of, in->size);
	return tx_dirty(tx, b);
}

static int find_free_bit(const struct lunfs_rc *rc, uint32_t from)
{
	for (uint32_t i = from; i < rc->nentries; i++) {
		if (rc->bitmap[i / 8] == 0xff) {
			i |= 7;
			continue;
		}
		if (!rc_test(rc, i))
			return i;
	}
	return -1;
}

/* Reads and decodes cluster header (locked EXCL). */
static int rc_load(struct txn *tx, uint64_t lock, uint64_t hdr, uint32_t kind, uint32_t n,
		   uint64_t first, struct lunfs_rc *rc, struct buf **bp)
{
	struct lunfs_vol *v = tx->v;
	int r = tx_lock(tx, lock, hdr, LK_EXCLUSIVE);
	if (r)
		return r;
	if ((r = tx_read(tx, hdr, lock, bp)))
		return r;
	r = lunfs_rc_decode((*bp)->data, v->sb.uuid, hdr, kind, n, first, rc, NULL);
	/* a host that followed an online grow first rewrote the header that
	 * was the last one with the count the new geometry gives it */
	int g = 0;
	if (r == -EFSCORRUPTED && kind == RC_FILE && (g = tx_grow_check(tx, 0)) < 0)
		return g;
	if (r == -EFSCORRUPTED && kind == RC_FILE && g > 0)
		r = lunfs_rc_decode((*bp)->data, v->sb.uuid, hdr, kind,
				    geom_fc_entries(&v->sb, first / v->sb.fc_blocks), first, rc, NULL);
	return r;
}

static int rc_store(struct txn *tx, struct lunfs_rc *rc, struct buf *b, uint64_t index)
{
	rc->gen++;
	rc->affinity = tx->v->slot;
	lunfs_rc_encode(rc, tx->v->sb.uuid, b->addr, index, b->data);
	return tx_dirty(tx, b);
}

/* ---- clusters: file blocks, meta blocks, inodes ---- */

static void pool(const struct lunfs_sb *s, int kind, uint64_t *count, uint32_t *per)
{
	*count = kind == RC_FILE ? s->fc_count : kind == RC_META ? s->mc_count : s->ig_count;
	*per = kind == RC_FILE ? s->fc_blocks : kind == RC_META ? s->mc_blocks : s->ig_inodes;
}

static uint32_t entries(const struct lunfs_sb *s, int kind, uint64_t c)
{
	return kind == RC_FILE ? geom_fc_entries(s, c) : kind == RC_META ? s->mc_blocks : s->ig_inodes;
}

static uint64_t rc_lock_addr(const struct lunfs_sb *s, int kind, uint64_t c)
{
	return kind == RC_FILE ? geom_fc_lock(s, c) : kind == RC_META ? geom_mc_lock(s, c) : geom_ig_lock(s, c);
}

static uint64_t *rc_hint(struct lunfs_vol *v, int kind)
{
	return kind == RC_FILE ? &v->fc_hint : kind == RC_META ? &v->mc_hint : &v->ig_hint;
}

/* ---- reservations: file blocks promised to pending writes (fill.c) ----
 *
 * A reserved block is free on disk and in the cluster header; rc_take skips
 * it, and the reservation pins the cluster's lock, so that no other host
 * allocates from the cluster (and no release drops its header) until the
 * write that holds it commits or gives it back.  v->mu protects the set. */

static int resv_find(const struct lunfs_vol *v, uint64_t blk)
{
	for (unsigned k = 0; k < v->nresv; k++)
		if (v->resv[k].blk == blk)
			return (int)k;
	return -1;
}

/* Reserved blocks in [first, first + n). */
static uint32_t resv_count(const struct lunfs_vol *v, uint64_t first, uint32_t n)
{
	uint32_t c = 0;
	for (unsigned k = 0; k < v->nresv; k++)
		c += v->resv[k].blk >= first && v->resv[k].blk < first + n;
	return c;
}

static int resv_add(struct lunfs_vol *v, uint64_t blk, struct held *h)
{
	if (v->nresv == v->cresv) {
		unsigned c = v->cresv ? 2 * v->cresv : 64;
		struct resv *nr = realloc(v->resv, c * sizeof(*nr));
		if (!nr)
			return -ENOMEM;
		v->resv = nr;
		v->cresv = c;
	}
	h->pins++;
	v->resv[v->nresv++] = (struct resv){blk, h};
	return 0;
}

void blk_unreserve(struct lunfs_vol *v, uint64_t blk)
{
	VOL_HELD(v);
	int k = resv_find(v, blk);
	if (k < 0)
		return;
	vl_unpin(v, v->resv[k].h);
	v->resv[k] = v->resv[--v->nresv];
}

#define RC_PEEK 2 /* rc_take's reserve: only choose (rc_claim marks it) */

/* Finds a free entry of kind, starting at this host's hint (so hosts
 * allocate in different places), skipping reserved file blocks.  Marks it
 * used (a block with one reference) in the cached header, or, with
 * reserve, only reserves it, or, with RC_PEEK, only chooses it.  Returns 0 and *n, the block or inode number,
 * or -ENOSPC. */
static int rc_take(struct txn *tx, int kind, uint64_t *n, int reserve)
{
	struct lunfs_vol *v = tx->v;
	const struct lunfs_sb *s = &v->sb;
	uint64_t count, *hint = rc_hint(v, kind);
	uint32_t per;
	struct lunfs_rc *rc = malloc(sizeof(*rc));
	int r = -ENOSPC;
	if (!rc)
		return -ENOMEM;
	int retried = 0;
	pool(s, kind, &count, &per);
again:
	for (uint64_t k = 0; k < count; k++) {
		uint64_t c = (*hint + k) % count;
		uint64_t lock = rc_lock_addr(s, kind, c);
		struct buf *b;
		r = rc_load(tx, lock, lock + BS, kind, entries(s, kind, c), c * per, rc, &b);
		if (r)
			break;
		uint32_t held_back = kind == RC_FILE ? resv_count(v, c * per, per) : 0;
		if (rc->nfree <= held_back)
			continue;
		int i = find_free_bit(rc, 0);
		while (i >= 0 && held_back && resv_find(v, c * per + i) >= 0)
			i = find_free_bit(rc, i + 1);
		if (i < 0) {
			r = -EFSCORRUPTED;
			break;
		}
		if (reserve == RC_PEEK) {
			r = 0; /* the caller claims it (rc_claim) */
		} else if (reserve) {
			r = resv_add(v, c * per + i, vl_find(v, lock));
		} else {
			rc_set(rc, i, 1);
			if (kind != RC_INODE)
				rc->refcnt[i] = 1;
			rc->nfree--;
			r = rc_store(tx, rc, b, c);
		}
		if (r)
			break;
		*n = c * per + i;
		*hint = c;
		goto out;
	}
	if (r == 0)
		r = -ENOSPC;
	/* the volume may have grown since the last check */
	if (r == -ENOSPC && kind == RC_FILE && !retried++) {
		int g = tx_grow_check(tx, 1);
		if (g < 0)
			r = g;
		if (g > 0) {
			pool(s, kind, &count, &per);
			goto again;
		}
	}
out:
	free(rc);
	return r;
}

/* Marks entry n of a kind's cluster used (a file or meta block with
 * reference count 1): -EAGAIN if it is not free any more. */
static int rc_claim(struct txn *tx, int kind, uint64_t n)
{
	const struct lunfs_sb *s = &tx->v->sb;
	uint64_t count;
	uint32_t per;
	struct buf *b;
	pool(s, kind, &count, &per);
	uint64_t c = n / per, lock = rc_lock_addr(s, kind, c);
	uint32_t i = n % per;
	struct lunfs_rc *rc = malloc(sizeof(*rc));
	if (!rc)
		return -ENOMEM;
	int r = c >= count ? -EFSCORRUPTED :
		rc_load(tx, lock, lock + BS, kind, entries(s, kind, c), c * per, rc, &b);
	if (!r && (rc_test(rc, i) || rc->nfree == 0))
		r = -EAGAIN;
	if (!r) {
		rc_set(rc, i, 1);
		if (kind != RC_INODE)
			rc->refcnt[i] = 1;
		rc->nfree--;
		r = rc_store(tx, rc, b, c);
	}
	free(rc);
	return r;
}

int ino_alloc(struct txn *tx, int new_dir_blk, struct lunfs_inode *in)
{
	struct lunfs_inode old;
	uint64_t ino, seen;
	int r;
	/* A free inode is chosen first, its lock taken and its block read (and
	 * the cluster of a new directory block loaded), and only then is it
	 * marked used: the acquisitions and reads happen before this operation
	 * changes anything, so a restartable one gets them without v->mu
	 * (tx_lock, tx_read), in the lock order of LOCKING.md 7 (the group,
	 * the new inode, a meta cluster).  Between the choice and the claim v->mu was
	 * held, unless a wait under it dropped it: then another thread may
	 * have taken the inode, and the next one is tried. */
	for (int tries = 0;; tries++) {
		if ((r = rc_take(tx, RC_INODE, &ino, RC_PEEK)) ||
		    (r = ino_load(tx, ino, LK_EXCLUSIVE, &old, 1)) ||
		    (new_dir_blk && (r = blk_alloc_ready(tx, RC_META, 0, 1, 2, &seen))))
			return r;
		if ((r = rc_claim(tx, RC_INODE, ino)) == 0 && old.mode)
			return -EFSCORRUPTED; /* the bitmap says free, the inode says used */
		if (r != -EAGAIN || tries == 8)
			break;
	}
	if (r)
		return r == -EAGAIN ? -EBUSY : r;
	memset(in, 0, sizeof(*in));
	in->ino = ino;
	in->gen = old.gen; /* generations only grow, across reuse too */
	in->igen = old.igen + 1;
	return 0;
}

int ino_free(struct txn *tx, struct lunfs_inode *in)
{
	struct lunfs_vol *v = tx->v;
	const struct lunfs_sb *s = &v->sb;
	uint64_t g = in->ino / s->ig_inodes;
	uint32_t i = in->ino % s->ig_inodes;
	struct lunfs_rc *rc = malloc(sizeof(*rc));
	struct buf *b;
	int r;
	if (!rc)
		return -ENOMEM;
	r = rc_load(tx, geom_ig_lock(s, g), geom_ig_hdr(s, g), RC_INODE, s->ig_inodes,
		    g * s->ig_inodes, rc, &b);
	if (r)
		goto out;
	if (!rc_test(rc, i)) {
		r = -EFSCORRUPTED;
		goto out;
	}
	rc_set(rc, i, 0);
	rc->nfree++;
	if ((r = rc_store(tx, rc, b, g)))
		goto out;
	uint64_t gen = in->gen, ino = in->ino;
	uint32_t igen = in->igen;
	memset(in, 0, sizeof(*in));
	in->ino = ino;
	in->gen = gen;
	in->igen = igen;
	r = ino_write(tx, in);
out:
	free(rc);
	return r;
}

void ino_stat(struct lunfs_vol *v, const struct lunfs_inode *in, struct lunfs_stat *st)
{
	memset(st, 0, sizeof(*st));
	st->ino = in->ino;
	st->mode = in->mode;
	st->nlink = in->nlink;
	st->uid = in->uid;
	st->gid = in->gid;
	st->rdev = in->rdev;
	st->size = in->size;
	uint64_t unit = (in->flags & INOF_MAPMETA) ? BS : v->sb.file_bs;
	st->blocks = in->nblocks * (unit / 512);
	if (in->flags & INOF_INLINE)
		st->blocks = 0;
	st->blksize = S_ISDIR(in->mode) ? BS : v->sb.file_bs;
	st->atime = (struct timespec){in->atime.sec, in->atime.nsec};
	st->mtime = (struct timespec){in->mtime.sec, in->mtime.nsec};
	st->ctime = (struct timespec){in->ctime.sec, in->ctime.nsec};
	st->flags = ((in->flags & INOF_THICK) ? LUNFS_F_THICK : 0) |
		    ((in->flags & INOF_EZT) ? LUNFS_F_EZT : 0) |
		    ((in->flags & INOF_SNAPSHOT) ? LUNFS_F_SNAPSHOT : 0);
	st->igen = in->igen;
}

int blk_alloc_ready(struct txn *tx, int kind, uint64_t k0, unsigned max, uint64_t n,
		    uint64_t *seen)
{
	struct lunfs_vol *v = tx->v;
	const struct lunfs_sb *s = &v->sb;
	uint64_t count, hint = *rc_hint(v, kind);
	uint32_t per;
	struct lunfs_rc *rc = malloc(sizeof(*rc));
	struct buf *b;
	int r = 0;
	if (!rc)
		return -ENOMEM;
	pool(s, kind, &count, &per);
	*seen = 0;
	for (uint64_t k = k0; k < count && k < k0 + max && *seen < n; k++) {
		uint64_t c = (hint + k) % count, lock = rc_lock_addr(s, kind, c);
		if ((r = rc_load(tx, lock, lock + BS, kind, entries(s, kind, c), c * per, rc, &b)))
			break;
		uint32_t held_back = kind == RC_FILE ? resv_count(v, c * per, per) : 0;
		if (rc->nfree > held_back)
			*seen += rc->nfree - held_back;
	}
	free(rc);
	return r;
}

/* A few clusters per transaction: each one it loads may cost two restarts
 * (its lock, its header), and a transaction restarts 16 times at most.  It
 * stops at the first clusters that hold n free entries: the ones after
 * are other hosts' (their hints), and locking them would make those hosts
 * take them back. */
#define PREFETCH_CLUSTERS 6

int alloc_prefetch(struct lunfs_vol *v, int kind, uint64_t n)
{
	if (v->ro)
		return 0;
	for (int polled = 0;; polled = 1) {
		uint64_t count, total = 0;
		uint32_t per;
		pool(&v->sb, kind, &count, &per);
		for (uint64_t k = 0; k < count && total < n; k += PREFETCH_CLUSTERS) {
			struct txn tx;
			uint64_t seen = 0;
			int r;
			TX_RUN(v, &tx, r,
			       blk_alloc_ready(&tx, kind, k, PREFETCH_CLUSTERS, n - total, &seen));
			tx_end(&tx, 0);
			if (r)
				return polled; /* the allocation that follows finds out */
			total += seen;
		}
		if (total >= n || kind != RC_FILE || polled)
			return polled;
		/* short of space: the volume may have grown online (another
		 * host's grow); the superblock read without v->mu */
		pthread_mutex_lock(&v->mu);
		int grew = vol_grow_poll(v);
		pthread_mutex_unlock(&v->mu);
		if (grew <= 0)
			return 1;
	}
}

int blk_alloc(struct txn *tx, int kind, uint64_t *blk)
{
	return rc_take(tx, kind, blk, 0);
}

int blk_reserve(struct txn *tx, uint64_t *blk)
{
	return rc_take(tx, RC_FILE, blk, 1);
}

int blk_claim(struct txn *tx, uint64_t blk)
{
	struct lunfs_vol *v = tx->v;
	const struct lunfs_sb *s = &v->sb;
	struct lunfs_rc *rc = malloc(sizeof(*rc));
	struct buf *b;
	uint64_t c = blk / s->fc_blocks;
	uint32_t i = blk % s->fc_blocks;
	int r;
	if (!rc)
		return -ENOMEM;
	if (c >= s->fc_count || blk == 0 || resv_find(v, blk) < 0) {
		r = -EFSCORRUPTED;
		goto out;
	}
	uint64_t lock = rc_lock_addr(s, RC_FILE, c);
	r = rc_load(tx, lock, lock + BS, RC_FILE, entries(s, RC_FILE, c), c * s->fc_blocks, rc, &b);
	if (r)
		goto out;
	if (rc_test(rc, i) || rc->nfree == 0) {
		r = -EFSCORRUPTED; /* a reserved block must still be free */
		goto out;
	}
	rc_set(rc, i, 1);
	rc->refcnt[i] = 1;
	rc->nfree--;
	r = rc_store(tx, rc, b, c);
out:
	free(rc);
	return r;
}

int blk_ref(struct txn *tx, int kind, uint64_t blk, int delta, uint32_t *newref)
{
	struct lunfs_vol *v = tx->v;
	const struct lunfs_sb *s = &v->sb;
	uint64_t count;
	uint32_t per;
	struct lunfs_rc *rc = malloc(sizeof(*rc));
	struct buf *b;
	int r;
	if (!rc)
		return -ENOMEM;
	pool(s, kind, &count, &per);
	uint64_t c = blk / per;
	uint32_t i = blk % per;
	if (c >= count || blk == 0) {
		r = -EFSCORRUPTED;
		goto out;
	}
	uint64_t lock = rc_lock_addr(s, kind, c);
	r = rc_load(tx, lock, lock + BS, kind, entries(s, kind, c), c * per, rc, &b);
	if (r)
		goto out;
	if (!rc_test(rc, i) || (int)rc->refcnt[i] + delta < 0 || rc->refcnt[i] + delta > 0xffff) {
		r = -EFSCORRUPTED; /* freeing a free block: never make it worse */
		goto out;
	}
	rc->refcnt[i] += delta;
	if (rc->refcnt[i] == 0) {
		rc_set(rc, i, 0);
		rc->nfree++;
	}
	if (newref)
		*newref = rc->refcnt[i];
	r = rc_store(tx, rc, b, c);
out:
	free(rc);
	return r;
}

int blk_free(struct txn *tx, int kind, uint64_t blk)
{
	if (kind == RC_FILE)
		tx_drain(tx); /* no data I/O may still be on its way to it */
	return blk_ref(tx, kind, blk, -1, NULL);
}

/* Free counts for statfs: every cluster header, from the cache where this
 * host holds its lock (its newest state may not be on disk yet). */
/* The free count of cluster or inode group k (ino) under tx: 0 when its
 * header does not decode. */
static int rc_count_in(struct txn *tx, uint64_t lock, int ino, uint64_t k, struct lunfs_rc *rc,
		       uint64_t *nfree)
{
	const struct lunfs_sb *s = &tx->v->sb;
	struct buf *b;
	int r = tx_read(tx, lock + BS, lock, &b);
	if (r)
		return r;
	*nfree = lunfs_rc_decode(b->data, s->uuid, lock + BS, ino ? RC_INODE : RC_FILE,
				 ino ? s->ig_inodes : geom_fc_entries(s, k),
				 ino ? k * s->ig_inodes : k * s->fc_blocks, rc, NULL) ? 0 : rc->nfree;
	return 0;
}

int alloc_counts(struct lunfs_vol *v, uint64_t *free_file, uint64_t *free_ino)
{
	const struct lunfs_sb *s = &v->sb;
	struct lunfs_rc *rc = malloc(sizeof(*rc));
	int r = 0;
	*free_file = *free_ino = 0;
	if (!rc)
		return -ENOMEM;
	for (uint64_t c = 0; c < s->fc_count + s->ig_count && !r; c++) {
		int ino = c >= s->fc_count;
		uint64_t k = ino ? c - s->fc_count : c;
		uint64_t lock = ino ? geom_ig_lock(s, k) : geom_fc_lock(s, k);
		struct txn tx;
		uint64_t nfree = 0;
		TX_RUN(v, &tx, r, rc_count_in(&tx, lock, ino, k, rc, &nfree));
		tx_end(&tx, 0);
		if (!r)
			*(ino ? free_ino : free_file) += nfree;
	}
	free(rc);
	return r;
}

int ino_lock_settled(struct txn *tx, uint64_t ino, int drain)
{
	struct lunfs_vol *v = tx->v;
	uint64_t lock = geom_ino_lock(&v->sb, ino);
	int r = ino_check(v, ino);
	if (r || (r = tx_lock(tx, lock, geom_ino_blk(&v->sb, ino), LK_EXCLUSIVE)))
		return r;
	for (;;) {
		gw_wait_ino(v, ino);
		if (drain)
			tx_drain(tx);
		/* Another operation that pinned the inode before us, as we
		 * did, may have taken it over (tx_own) while we waited: our
		 * pin does not stop it.  Its end comes first, drained of
		 * nothing, and then the waits again. */
		if (tx->owns || !vl_busy(v, lock)) {
			tx_own(tx, ino); /* from here until its end, ours alone */
			return 0;
		}
		tx_undrain(tx);
		vl_wait_acquired(v, lock);
	}
}

/* modify_inode under tx (restartable: fn changes nothing outside tx
 * before its first dirty block) */
static int modify_in(struct txn *tx, uint64_t ino,
		     int (*fn)(struct txn *, struct lunfs_inode *, void *), void *arg,
		     struct lunfs_stat *st, int drain, struct lunfs_inode *in)
{
	/* a truncate happens after the writes in flight; a size change has
	 * no data I/O in flight from here to the commit */
	int r = ino_lock_settled(tx, ino, drain);
	if (r || (r = ino_read(tx, ino, LK_EXCLUSIVE, in)) || (r = fn(tx, in, arg)) ||
	    (r = ino_write(tx, in)))
		return r;
	if (st) {
		ino_stat(tx->v, in, st);
		of_overlay_stat(tx->v, st);
	}
	return 0;
}

/* One change to one inode: lock it exclusively, let fn change it, write it
 * and commit.  st (may be NULL) receives its attributes afterwards. */
int modify_inode(struct lunfs_vol *v, uint64_t ino,
		 int (*fn)(struct txn *, struct lunfs_inode *, void *), void *arg,
		 struct lunfs_stat *st, int drain)
{
	int r = vol_check_writable(v);
	if (r)
		return r;
	struct lunfs_inode *in = malloc(sizeof(*in));
	if (!in)
		return -ENOMEM;
	struct txn tx;
	TX_RUN(v, &tx, r, modify_in(&tx, ino, fn, arg, st, drain, in));
	r = op_finish(&tx, r);
	free(in);
	return r;
}

static int dirty_then_fail(struct txn *tx, struct lunfs_inode *in, void *arg)
{
	(void)arg;
	int r = ino_write(tx, in);
	return r ? r : -ENOSPC;
}

int lunfs_test_fail_after_dirty(struct lunfs_vol *v, uint64_t ino)
{
	return modify_inode(v, ino, dirty_then_fail, NULL, NULL, 0);
}
