/* The free path: what gives file blocks and inodes back.  Truncate (the cut
 * block's tail zeroed with its commit), fallocate (punch, zero-range and
 * preallocation), the orphan directory (inodes whose last name is gone
 * while they are open) and the release of an orphan's inode. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include "fs/internal.h"

/* The orphan directory lists inodes whose last link is gone but whose space
 * is not yet freed (open files, or a delete in progress). */
static void orphan_name(uint64_t ino, char *name)
{
	snprintf(name, 24, "%llu", (unsigned long long)ino);
}

/* Lists ino in the orphan directory (add 1) or takes it out (0); with
 * ORPHAN_PREPARE only reads and locks what listing it will need. */
int orphan_edit(struct txn *tx, uint64_t ino, int add)
{
	struct lunfs_inode *o = malloc(sizeof(*o));
	char name[24];
	if (!o)
		return -ENOMEM;
	orphan_name(ino, name);
	int r = dir_read(tx, ORPHAN_INO, LK_EXCLUSIVE, o);
	if (r)
		goto out;
	if (add == ORPHAN_PREPARE) {
		r = dir_prepare_add(tx, o, name);
		goto out;
	}
	r = add ? dir_add(tx, o, name, ino, DT_REG_LUNFS) : dir_remove(tx, o, name);
	if (r == -EEXIST)
		r = 0; /* listed already (a truncate under way): that entry serves */
	if (r)
		goto out;
	r = ino_write(tx, o);
out:
	free(o);
	return r;
}

/* Frees everything of an inode already listed as an orphan, in steps.
 * Lock order: the orphan directory, then the inode's group, then the
 * clusters of its blocks.  A create takes a group and then a meta cluster,
 * and an unlink the orphan directory and then the group: any other order
 * here would let two hosts wait for each other until their timeouts. */
int file_release_inode(struct txn *tx, struct lunfs_inode *in)
{
	const struct lunfs_sb *s = &tx->v->sb;
	uint64_t g = in->ino / s->ig_inodes;
	int r = tx_lock(tx, geom_ino_lock(s, ORPHAN_INO), geom_ino_blk(s, ORPHAN_INO), LK_EXCLUSIVE);
	if (r)
		return r;
	if ((r = tx_lock(tx, geom_ig_lock(s, g), geom_ig_hdr(s, g), LK_EXCLUSIVE)))
		return r;
	if (!(in->flags & INOF_INLINE) && (r = bmap_punch(tx, in, 0, 0)))
		return r;
	if ((r = ino_write(tx, in)) || (r = orphan_edit(tx, in->ino, 0)))
		return r;
	if ((r = xattr_free_all(tx, in)))
		return r;
	return ino_free(tx, in);
}

/* A truncate that may take steps (more file blocks than a step frees) is
 * listed in the orphan directory while it runs, with its inode linked: a
 * crash between two steps leaves the new size committed with blocks past
 * it still mapped, and a growth would show their old data.  The listing
 * commits before the truncate and goes after it, each in a transaction of
 * its own (the orphan directory's lock is never held across the steps);
 * every read-write mount finishes what a crash left (truncate_finish).
 * This host's truncates of one inode share one listing (v->truncs counts
 * them): the last to end removes it.  The entry stays after a failed
 * truncate (the next orphan pass finishes it), and when the inode lost
 * its last link meanwhile (the entry is the delete's now). */
static struct trunc_ref **trunc_ref(struct lunfs_vol *v, uint64_t ino)
{
	struct trunc_ref **pp = &v->truncs;
	while (*pp && (*pp)->ino != ino)
		pp = &(*pp)->next;
	return pp;
}

static int truncate_list_in(struct txn *tx, uint64_t ino, uint64_t size,
			    struct lunfs_inode *in, int *listed)
{
	struct lunfs_vol *v = tx->v;
	struct trunc_ref **pp = trunc_ref(v, ino);
	*listed = 0;
	if (*pp) { /* another truncate of this host listed it */
		(*pp)->n++;
		*listed = 1;
		return 0;
	}
	int r = ino_read(tx, ino, LK_FREE, in);
	if (r)
		return r == -ENOENT ? 0 : r; /* the truncate reports it */
	if (!S_ISREG(in->mode) || (in->flags & INOF_SNAPSHOT) || size >= in->size ||
	    in->nblocks <= TX_STEP_UNITS + size / v->sb.file_bs)
		return 0;
	struct trunc_ref *t = malloc(sizeof(*t));
	if (!t)
		return -ENOMEM;
	if ((r = orphan_edit(tx, ino, 1))) {
		free(t);
		return r;
	}
	*t = (struct trunc_ref){ino, 1, v->truncs};
	v->truncs = t;
	*listed = 1;
	return 0;
}

int truncate_list(struct lunfs_vol *v, uint64_t ino, uint64_t size, int *listed)
{
	struct lunfs_inode *in = malloc(sizeof(*in));
	struct txn tx;
	int r;
	*listed = 0;
	if (!in)
		return -ENOMEM;
	TX_RUN(v, &tx, r, truncate_list_in(&tx, ino, size, in, listed));
	r = op_finish(&tx, r);
	free(in);
	if (r && *listed) { /* counted, but its commit failed */
		pthread_mutex_lock(&v->mu);
		struct trunc_ref **pp = trunc_ref(v, ino), *t = *pp;
		if (t && --t->n == 0) {
			*pp = t->next;
			free(t);
		}
		pthread_mutex_unlock(&v->mu);
		*listed = 0;
	}
	return r;
}

/* The listing's removal: not while another truncate of this host is under
 * way, nor when the inode lost its last link (read after the orphan
 * directory's lock: a delete that found the entry committed first). */
static int truncate_unlist_in(struct txn *tx, uint64_t ino, int ok, struct lunfs_inode *in)
{
	struct trunc_ref **pp = trunc_ref(tx->v, ino), *t = *pp;
	if (t && t->n > 1) {
		t->n--;
		return 0;
	}
	int r = ok ? orphan_edit(tx, ino, ORPHAN_PREPARE) : 0;
	if (!r && ok && !(r = ino_read(tx, ino, LK_FREE, in)) && in->nlink)
		r = orphan_edit(tx, ino, 0);
	if (r == -ENOENT)
		r = 0; /* freed, or an orphan pass finished it */
	if (!r && t) {
		tx_no_restart(tx); /* the count changes below: no run again */
		*pp = t->next;
		free(t);
	}
	return r;
}

void truncate_unlist(struct lunfs_vol *v, uint64_t ino, int ok)
{
	struct lunfs_inode *in = malloc(sizeof(*in));
	struct txn tx;
	int r;
	if (!in)
		return; /* the entry stays: the next orphan pass removes it */
	TX_RUN(v, &tx, r, truncate_unlist_in(&tx, ino, ok, in));
	op_finish(&tx, r);
	free(in);
}

/* A truncate a crash interrupted (listed, its inode linked): the blocks
 * past the size are freed, in steps, and the entry goes.  Lock order as
 * for a delete: the inode, the orphan directory, the clusters. */
static int truncate_finish(struct txn *tx, struct lunfs_inode *in)
{
	uint64_t bs = tx->v->sb.file_bs;
	int r = orphan_edit(tx, in->ino, ORPHAN_PREPARE);
	if (r || (!(in->flags & INOF_INLINE) && (r = bmap_punch(tx, in, (in->size + bs - 1) / bs, 0))))
		return r;
	if ((r = ino_write(tx, in)))
		return r;
	r = orphan_edit(tx, in->ino, 0);
	return r == -ENOENT ? 0 : r;
}

/* Zeroes [from, to) inside block lblk if it is mapped (not TBZ). */
static int zero_in_block(struct txn *tx, struct lunfs_inode *in, uint64_t lblk, uint64_t from,
			 uint64_t to)
{
	struct lunfs_vol *v = tx->v;
	uint64_t ptr;
	int r = bmap_get(tx, in, lblk, &ptr);
	if (r || !ptr || (ptr & PTR_TBZ) || from >= to)
		return r;
	uint8_t *z = calloc(1, to - from);
	if (!z)
		return -ENOMEM;
	r = write_range(v, geom_file_blk(&v->sb, ptr & PTR_BLOCK_MASK) + from, z, to - from, 0);
	free(z);
	return r;
}

int file_truncate(struct txn *tx, struct lunfs_inode *in, uint64_t size)
{
	struct lunfs_vol *v = tx->v;
	uint64_t bs = v->sb.file_bs, ptr;
	int r = 0;
	if (size >= in->size) {
		in->size = size;
		return 0;
	}
	/* Bytes past the new end inside its last block must read as zeros if
	 * the file grows again.  They are zeroed with the commit of the new
	 * size (tx_zero_at_commit), not before it: a checkpoint's flush in
	 * between would make the zeros durable while a crash could still lose
	 * the truncate, leaving the old size with its tail zeroed.  A data
	 * write into that tail still in flight (registered before us, outside
	 * v->mu) would land after the zeros, and a later growth would show its
	 * bytes past the old end: drain first (tx_drain also keeps new data
	 * I/O from starting until our transaction ends; they look again and
	 * find the new size).  lunfs_setattr drained before it read the inode
	 * (modify_inode), so this wait finds nothing in flight. */
	if (size % bs) {
		if ((r = bmap_get(tx, in, size / bs, &ptr)))
			return r;
		if (ptr && !(ptr & PTR_TBZ)) {
			tx_drain(tx);
			if ((r = tx_zero_at_commit(tx, geom_file_blk(&v->sb, ptr & PTR_BLOCK_MASK) +
							       size % bs,
						   bs - size % bs)))
				return r;
		}
	}
	in->size = size;
	if ((r = ino_write(tx, in)))
		return r;
	return bmap_punch(tx, in, (size + bs - 1) / bs, 0);
}

/* After a unit of a long mapping (a preallocation, a zero range): commits
 * a step (tx_step) once the transaction nears its limit or TX_STEP_UNITS
 * units were mapped since the last one.  Each step is consistent: the
 * pointers with the allocations they make. */
static int map_step(struct txn *tx, struct lunfs_inode *in, uint32_t *units)
{
	if (++*units < TX_STEP_UNITS && tx->ndirty <= TX_MAX - 20)
		return 0;
	*units = 0;
	int r = ino_write(tx, in);
	return r ? r : tx_step(tx, in->ino);
}

/* FALLOC_FL_ZERO_RANGE: every block the range touches ends up allocated.
 * One it covers whole becomes to-be-zeroed (PTR_TBZ: a pointer change, no
 * data I/O, like an unwritten extent); the partial blocks at the ends are
 * zeroed in place when written, and left alone when they are holes filled
 * now or already to-be-zeroed (they read as zeros).  A data I/O to a
 * block in flight outside v->mu meanwhile may land before or after: the
 * block is not freed, so it reaches nothing else. */
static int zero_range(struct txn *tx, struct lunfs_inode *in, uint64_t off, uint64_t len)
{
	uint64_t bs = tx->v->sb.file_bs, end = off + len;
	uint32_t units = 0;
	int r = 0;
	for (uint64_t l = off / bs; l <= (end - 1) / bs && !r; l++) {
		uint64_t from = l == off / bs ? off % bs : 0;
		uint64_t to = l == (end - 1) / bs ? end - l * bs : bs;
		uint64_t ptr, blk;
		if ((r = bmap_get(tx, in, l, &ptr)))
			break;
		if (ptr & PTR_TBZ)
			continue;
		if (ptr && (from || to < bs)) {
			r = zero_in_block(tx, in, l, from, to);
			continue;
		}
		if (!ptr) {
			if ((r = blk_alloc(tx, RC_FILE, &blk)))
				break;
			in->nblocks++;
		} else {
			blk = ptr & PTR_BLOCK_MASK;
		}
		if ((r = bmap_set(tx, in, l, blk | PTR_TBZ)) || (r = map_step(tx, in, &units)))
			break;
	}
	if (r)
		return r;
	in->flags |= INOF_THICK;
	return 0;
}

#define FZ_CHUNK 64 /* file blocks an eager fallocate zeroes per transaction */

struct fz {
	uint64_t lblk, blk, old; /* old: the to-be-zeroed pointer, 0 for a hole */
};

static void fz_unreserve(struct lunfs_vol *v, const struct fz *z, int n)
{
	for (int i = 0; i < n; i++)
		if (!z[i].old)
			blk_unreserve(v, z[i].blk);
}

/* The zeroing of eager fallocate's chunk z (n blocks of file units [l0,
 * l1)), with v->mu dropped: registered as data I/O (a free of one of the
 * blocks waits for it: tx_drain), and no write into those units registers
 * until the chunk is mapped (of->zbusy, gw_wait_ready; the caller clears
 * it with fz_done once its pointers are set); one zeroing per file at a
 * time.  The holes' blocks are reserved, so nothing else allocates them;
 * nothing is dirty.  Returns with v->mu held and no transaction parked
 * half-done (their blocks may be ours to change next), zbusy set unless
 * it failed; -EAGAIN when a free was under way (look again). */
static int fz_zero(struct txn *tx, struct ofile *of, const struct fz *z, int n, uint64_t l0,
		   uint64_t l1)
{
	struct lunfs_vol *v = tx->v;
	VOL_HELD(v);
	while (of->zbusy) /* another handle's eager fallocate of this file */
		pthread_cond_wait(&v->gw_cv, &v->mu);
	int r = io_enter(v);
	if (r)
		return r;
	of->zbusy = 1;
	of->zb0 = l0;
	of->zb1 = l1;
	pthread_mutex_unlock(&v->mu);
	for (int i = 0; i < n && !r; i++)
		r = dev_zero(v->d, geom_file_blk(&v->sb, z[i].blk), v->sb.file_bs);
	io_exit(v);
	pthread_mutex_lock(&v->mu);
	while (v->tx_parked || of->stepping)
		pthread_cond_wait(&v->gw_cv, &v->mu);
	return r;
}

static void fz_done(struct lunfs_vol *v, struct ofile *of)
{
	VOL_HELD(v);
	if (!of->zbusy)
		return;
	of->zbusy = 0;
	pthread_cond_broadcast(&v->gw_cv);
}

/* An eager-zeroed fallocate of file units [first, last] (LUNFS_FALLOC_ZERO),
 * in transactions of up to FZ_CHUNK blocks: under v->mu, the holes get
 * reserved blocks and the to-be-zeroed ones are listed; the zeros are
 * written without it (fz_zero); then, under it again, each block whose
 * pointer is still what it was is claimed and mapped, and the transaction
 * commits (after a flush: the zeros are durable before the pointers).
 * end: the size the file grows to, unless keep_size.  Counted in
 * of->falloc throughout: a handoff waits for it. */
static int falloc_eager(struct lunfs_file *f, struct lunfs_inode *in, uint64_t first,
			uint64_t last, uint64_t end, int keep_size)
{
	struct lunfs_vol *v = f->v;
	struct ofile *of = f->of;
	struct fz z[FZ_CHUNK];
	int r = 0;
	pthread_mutex_lock(&v->mu);
	of->falloc++;
	pthread_mutex_unlock(&v->mu);
	for (uint64_t l = first; l <= last && !r;) {
		struct txn tx;
		uint64_t next = l;
		int n = 0;
		int polled =
			alloc_prefetch(v, RC_FILE, last - l + 1 < FZ_CHUNK ? last - l + 1 : FZ_CHUNK);
		tx_begin(v, &tx);
		tx.grow_polled = polled;
		/* the writes in flight commit first */
		if ((r = ino_lock_settled(&tx, of->ino, 0)) || (r = of_handed_off(of)) ||
		    (r = ino_read(&tx, of->ino, LK_EXCLUSIVE, in)))
			goto fail;
		for (; next <= last && n < FZ_CHUNK; next++) {
			uint64_t ptr, blk = 0;
			if ((r = bmap_get(&tx, in, next, &ptr)))
				goto fail;
			if (ptr && !(ptr & PTR_TBZ))
				continue;
			if (!ptr && (r = blk_reserve(&tx, &blk)))
				goto fail;
			z[n++] = (struct fz){next, ptr ? ptr & PTR_BLOCK_MASK : blk, ptr};
		}
		if (n) {
			if ((r = fz_zero(&tx, of, z, n, l, next)) == -EAGAIN) {
				fz_unreserve(v, z, n);
				tx_end(&tx, 0);
				r = 0;
				continue; /* a free came: this chunk again */
			}
			/* the inode may have changed meanwhile (our pin kept
			 * other hosts off, not this host's other threads) */
			if (r || (r = ino_read(&tx, of->ino, LK_EXCLUSIVE, in)))
				goto fail;
			for (int i = 0; i < n; i++) {
				uint64_t ptr;
				if ((r = bmap_get(&tx, in, z[i].lblk, &ptr)))
					goto fail;
				if (ptr != z[i].old)
					continue; /* changed meanwhile: theirs */
				if (!z[i].old) {
					if ((r = blk_claim(&tx, z[i].blk)))
						goto fail;
					in->nblocks++;
				}
				if ((r = bmap_set(&tx, in, z[i].lblk, z[i].blk)))
					goto fail;
			}
			tx.preflush = 1;
		}
		in->flags |= INOF_THICK | INOF_EZT;
		if (next > last && !keep_size && end > in->size)
			in->size = end;
		ino_now(&in->ctime);
		if ((r = ino_write(&tx, in)))
			goto fail;
		fz_unreserve(v, z, n); /* the claimed ones are marked used now */
		/* a write that waited for these units finds them mapped once it
		 * gets v->mu, after this commit's seal */
		fz_done(v, of);
		r = tx_commit(&tx);
		l = next;
		continue;
fail:
		fz_unreserve(v, z, n);
		fz_done(v, of);
		tx_end(&tx, r);
	}
	pthread_mutex_lock(&v->mu);
	if (--of->falloc == 0)
		pthread_cond_broadcast(&v->gw_cv);
	pthread_mutex_unlock(&v->mu);
	return r;
}

int lunfs_fallocate(struct lunfs_file *f, unsigned mode, uint64_t off, uint64_t len)
{
	struct lunfs_vol *v = f->v;
	struct lunfs_inode *in = malloc(sizeof(*in));
	uint64_t bs = v->sb.file_bs;
	struct txn tx;
	int r;
	if (!in)
		return -ENOMEM;
	if (!len || off + len < off) {
		free(in);
		return -EINVAL;
	}
	if (!mode_writable(f->mode) || f->mode == LUNFS_OPEN_MULTI) {
		free(in);
		return f->mode == LUNFS_OPEN_MULTI ? -EPERM : -EBADF;
	}
	unsigned kinds = mode & (LUNFS_FALLOC_PUNCH | LUNFS_FALLOC_ZERO | LUNFS_FALLOC_ZERO_RANGE);
	if ((kinds & (kinds - 1)) || (mode & ~(kinds | LUNFS_FALLOC_KEEP_SIZE))) {
		free(in);
		return -EINVAL;
	}
	if ((mode & LUNFS_FALLOC_PUNCH) && !(mode & LUNFS_FALLOC_KEEP_SIZE)) {
		free(in);
		return -EOPNOTSUPP;
	}
	if (off + len > bmap_max_units() * bs) {
		free(in);
		return -EFBIG;
	}
	if ((r = vol_check_writable(v)) || (r = of_handed_off(f->of))) {
		free(in);
		return r;
	}
	pthread_mutex_lock(&f->mu);
	if (mode & LUNFS_FALLOC_ZERO) {
		r = falloc_eager(f, in, off / bs, (off + len - 1) / bs, off + len,
				 mode & LUNFS_FALLOC_KEEP_SIZE);
		pthread_mutex_unlock(&f->mu);
		free(in);
		return r;
	}
	uint64_t first = off / bs, last = (off + len - 1) / bs;
	int polled = 0;
	if (!(mode & (LUNFS_FALLOC_PUNCH | LUNFS_FALLOC_ZERO_RANGE)))
		polled = alloc_prefetch(v, RC_FILE, last - first + 1); /* without v->mu */
	tx_begin(v, &tx);
	tx.grow_polled = polled;
	/* the writes in flight commit first; a punch frees, so it drains */
	if ((r = ino_lock_settled(&tx, f->of->ino, mode & LUNFS_FALLOC_PUNCH)) ||
	    (r = ino_read(&tx, f->of->ino, LK_EXCLUSIVE, in)))
		goto out;
	if (mode & LUNFS_FALLOC_PUNCH) {
		uint64_t end = off + len;
		uint64_t full0 = (off + bs - 1) / bs, full1 = end / bs;
		if (off / bs == (end - 1) / bs && (off % bs || end % bs)) {
			if ((r = zero_in_block(&tx, in, off / bs, off % bs, end - (off / bs) * bs)))
				goto out;
		} else {
			if (off % bs && (r = zero_in_block(&tx, in, off / bs, off % bs, bs)))
				goto out;
			if (end % bs && (r = zero_in_block(&tx, in, end / bs, 0, end % bs)))
				goto out;
		}
		if (full1 > full0 && (r = bmap_punch(&tx, in, full0, full1)))
			goto out;
	} else if (mode & LUNFS_FALLOC_ZERO_RANGE) {
		if ((r = zero_range(&tx, in, off, len)))
			goto out;
		if (!(mode & LUNFS_FALLOC_KEEP_SIZE) && off + len > in->size)
			in->size = off + len;
	} else {
		uint32_t units = 0;
		for (uint64_t l = first; l <= last && !r; l++) {
			uint64_t ptr, blk;
			if ((r = bmap_get(&tx, in, l, &ptr)))
				break;
			if (ptr)
				continue;
			if ((r = blk_alloc(&tx, RC_FILE, &blk)))
				break;
			in->nblocks++;
			if ((r = bmap_set(&tx, in, l, blk | PTR_TBZ)) ||
			    (r = map_step(&tx, in, &units)))
				break;
		}
		in->flags |= INOF_THICK;
		if (r)
			goto out;
		if (!(mode & LUNFS_FALLOC_KEEP_SIZE) && off + len > in->size)
			in->size = off + len;
	}
	ino_now(&in->ctime);
	if ((r = ino_write(&tx, in)))
		goto out;
	r = tx_commit(&tx);
	pthread_mutex_unlock(&f->mu);
	free(in);
	return r;
out:
	tx_end(&tx, r);
	pthread_mutex_unlock(&f->mu);
	free(in);
	return r;
}

struct olist {
	uint64_t *ino;
	size_t n, cap;
};

static int collect(void *arg, const char *name, uint64_t ino, uint32_t type, uint64_t next)
{
	struct olist *l = arg;
	(void)type;
	(void)next;
	if (name[0] == '.')
		return 0;
	if (l->n == l->cap) {
		size_t cap = l->cap ? 2 * l->cap : 16;
		uint64_t *ni = realloc(l->ino, cap * sizeof(*ni));
		if (!ni)
			return 1;
		l->ino = ni;
		l->cap = cap;
	}
	l->ino[l->n++] = ino;
	return 0;
}

/* The orphan directory's entries into l (in: room for its inode). */
static int orphans_list(struct txn *tx, struct lunfs_inode *in, struct olist *l)
{
	int r = ino_read(tx, ORPHAN_INO, LK_FREE, in);
	if (r)
		return r;
	if (!S_ISDIR(in->mode))
		return -EFSCORRUPTED;
	return dir_iter(tx, in, 2, collect, l);
}

/* Finishes deletes and truncates that a crash interrupted, and frees
 * files that were unlinked while open.  Inodes still open on another host
 * stay listed. */
int orphans_process(struct lunfs_vol *v)
{
	struct lunfs_inode *in = malloc(sizeof(*in));
	struct olist l = {0};
	struct txn tx;
	int r;
	if (!in)
		return -ENOMEM;
	tx_begin(v, &tx);
	r = orphans_list(&tx, in, &l);
	tx_end(&tx, r);
	for (size_t i = 0; i < l.n && !r; i++) {
		tx_begin(v, &tx);
		/* as any operation that changes a map: its writes and data
		 * I/O first (one open on this host), then the read */
		int e = ino_lock_settled(&tx, l.ino[i], 1);
		if (!e)
			e = ino_read(&tx, l.ino[i], LK_EXCLUSIVE, in);
		if (!e)
			e = in->nlink ? truncate_finish(&tx, in) : file_release_inode(&tx, in);
		e = op_finish(&tx, e);
		/* Busy: open on another host (its host frees it at the last
		 * close), or another host frees it right now (a survivor after a
		 * recovery), or a lock it needs is held elsewhere: whoever next
		 * processes the orphans frees it.  Only hard errors count. */
		if (e && e != -EBUSY && e != -ESTALE && e != -ENOENT)
			r = e;
	}
	free(l.ino);
	free(in);
	return r;
}
