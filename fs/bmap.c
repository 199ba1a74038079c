/* Block maps: 128 direct pointers, then single, double and triple indirect
 * pointer blocks of 500 pointers each.  A unit is a file block, or a meta
 * block for INOF_MAPMETA inodes (directories).  Pointer blocks are meta
 * blocks covered by the inode's lock. */
#include <stdlib.h>
#include <string.h>
#include "fs/internal.h"

#define P PTRS_PER_BLOCK
static const uint64_t span[4] = {1, P, (uint64_t)P * P, (uint64_t)P * P * P};

uint64_t bmap_max_units(void)
{
	return INO_NDIRECT + span[1] + span[2] + span[3];
}

/* Splits lblk into an indirect root (0..2) and the per-level indexes. */
static int path(uint64_t lblk, int *root, uint32_t idx[3])
{
	if (lblk < INO_NDIRECT)
		return 0;
	lblk -= INO_NDIRECT;
	for (int lvl = 1; lvl <= 3; lvl++) {
		if (lblk < span[lvl]) {
			*root = lvl - 1;
			for (int d = 0; d < lvl; d++)
				idx[d] = (lblk / span[lvl - 1 - d]) % P;
			return lvl;
		}
		lblk -= span[lvl];
	}
	return -EFBIG;
}

static uint64_t pool_blocks(struct lunfs_vol *v, const struct lunfs_inode *in)
{
	return ino_kind(in) == RC_META ? v->sb.meta_blocks : v->sb.file_blocks;
}

/* Reads pointer block blk (level lvl) of inode in. */
static int ptr_load(struct txn *tx, const struct lunfs_inode *in, uint64_t blk, uint32_t lvl,
		    struct lunfs_ptrblk *p, struct buf **bp)
{
	struct lunfs_vol *v = tx->v;
	uint64_t addr = geom_meta_blk(&v->sb, blk);
	uint64_t lock = geom_ino_lock(&v->sb, in->ino);
	const char *why;
	if (blk == 0 || blk >= v->sb.meta_blocks)
		return -EFSCORRUPTED;
	int r = tx_read(tx, addr, lock, bp);
	if (r)
		return r;
	/* lower levels point at meta blocks; level 1 at the inode's units */
	uint64_t limit = lvl == 1 ? pool_blocks(v, in) : v->sb.meta_blocks;
	r = lunfs_ptr_decode((*bp)->data, v->sb.uuid, addr, in->ino, lvl, limit, p, &why);
	/* a block number beyond our geometry: another host may have followed
	 * an online grow first and allocated in the new space */
	int g = 0;
	if (r == -EFSCORRUPTED && lvl == 1 && ino_kind(in) == RC_FILE && (g = tx_grow_check(tx, 0)) < 0)
		return g;
	if (r == -EFSCORRUPTED && lvl == 1 && ino_kind(in) == RC_FILE && g > 0)
		r = lunfs_ptr_decode((*bp)->data, v->sb.uuid, addr, in->ino, lvl, pool_blocks(v, in),
				     p, &why);
	return r;
}

static int ptr_store(struct txn *tx, struct lunfs_ptrblk *p, struct buf *b)
{
	p->gen++;
	lunfs_ptr_encode(p, tx->v->sb.uuid, b->addr, b->data);
	return tx_dirty(tx, b);
}

int bmap_get(struct txn *tx, struct lunfs_inode *in, uint64_t lblk, uint64_t *ptr)
{
	uint32_t idx[3];
	int root = 0;
	int lvl = path(lblk, &root, idx);
	if (lvl < 0)
		return lvl;
	if (lvl == 0) {
		*ptr = in->direct[lblk];
		/* see ptr_load: the callers check the block against file_blocks */
		if ((*ptr & PTR_BLOCK_MASK) >= pool_blocks(tx->v, in)) {
			int g = tx_grow_check(tx, 0);
			if (g < 0)
				return g;
		}
		return 0;
	}
	uint64_t cur = in->indirect[root] & PTR_BLOCK_MASK;
	struct lunfs_ptrblk *p = malloc(sizeof(*p));
	int r = 0;
	if (!p)
		return -ENOMEM;
	*ptr = 0;
	for (int d = 0; d < lvl && cur; d++) {
		struct buf *b;
		if ((r = ptr_load(tx, in, cur, lvl - d, p, &b)))
			goto out;
		cur = p->ptrs[idx[d]];
		if (d < lvl - 1)
			cur &= PTR_BLOCK_MASK;
	}
	*ptr = cur;
out:
	free(p);
	return r;
}

/* A new, empty pointer block of level lvl. */
static int ptr_new(struct txn *tx, struct lunfs_inode *in, uint32_t lvl, uint64_t *blk,
		   struct lunfs_ptrblk *p, struct buf **bp)
{
	struct lunfs_vol *v = tx->v;
	int r = blk_alloc(tx, RC_META, blk);
	if (r)
		return r;
	r = tx_new(tx, geom_meta_blk(&v->sb, *blk), geom_ino_lock(&v->sb, in->ino), bp);
	if (r)
		return r;
	memset(p, 0, sizeof(*p));
	p->owner = in->ino;
	p->level = lvl;
	return 0;
}

int bmap_set(struct txn *tx, struct lunfs_inode *in, uint64_t lblk, uint64_t ptr)
{
	/* only this unit's mapping changes (a failed transaction clears the
	 * whole cache): the other cached lookups of an open file stay */
	of_forget(tx->v, in->ino, lblk);
	uint32_t idx[3];
	int root = 0;
	int lvl = path(lblk, &root, idx);
	if (lvl < 0)
		return lvl;
	if (lvl == 0) {
		in->direct[lblk] = ptr;
		return 0;
	}
	struct lunfs_ptrblk *p = malloc(sizeof(*p));
	int r = 0;
	if (!p)
		return -ENOMEM;
	uint64_t *slot = &in->indirect[root];
	/* parent block being updated (NULL: the inode) */
	struct buf *pb = NULL;
	struct lunfs_ptrblk *pp = NULL;
	for (int d = 0; d < lvl; d++) {
		struct buf *b;
		uint64_t cur = *slot & PTR_BLOCK_MASK;
		if (!cur) {
			if (ptr == 0)
				goto out; /* clearing a hole: nothing to do */
			if ((r = ptr_new(tx, in, lvl - d, &cur, p, &b)))
				goto out;
			*slot = cur;
			if (pb && (r = ptr_store(tx, pp, pb)))
				goto out;
			if ((r = ptr_store(tx, p, b)))
				goto out;
		} else if ((r = ptr_load(tx, in, cur, lvl - d, p, &b))) {
			goto out;
		}
		if (d == lvl - 1) {
			p->ptrs[idx[d]] = ptr;
			r = ptr_store(tx, p, b);
			goto out;
		}
		/* descend: the child pointer lives in p, which we keep as parent */
		if (!pp && !(pp = malloc(sizeof(*pp)))) {
			r = -ENOMEM;
			goto out;
		}
		memcpy(pp, p, sizeof(*p));
		pb = b;
		slot = &pp->ptrs[idx[d]];
	}
out:
	free(p);
	free(pp);
	return r;
}

/* Room a punch pass leaves in a transaction: each freed unit dirties at
 * most its cluster header, and the levels above it store their pointer
 * blocks and free emptied ones on the way out. */
#define PUNCH_STEP (TX_MAX - 40)

/* Where a pass stands: units it freed; more: it stopped short. */
struct pstep {
	uint32_t freed;
	int more;
};

/* Counts one freed unit; says whether the pass must stop after it. */
static void pstep_count(struct txn *tx, struct pstep *ps)
{
	if (++ps->freed >= TX_STEP_UNITS || tx->ndirty > PUNCH_STEP)
		ps->more = 1;
}

/* Frees the units [from, to) below pointer block blk of level lvl, which
 * maps units starting at base, until the pass is full (pstep_count: then
 * ps->more).  Whatever it freed, its pointers are
 * cleared in the stored block before it returns, so that the caller can
 * commit there.  *empty: the block maps nothing any more. */
static int punch_block(struct txn *tx, struct lunfs_inode *in, uint64_t blk, uint32_t lvl,
		       uint64_t base, uint64_t from, uint64_t to, int *empty, struct pstep *ps)
{
	struct lunfs_ptrblk *p = malloc(sizeof(*p));
	struct buf *b;
	int r, changed = 0;
	if (!p)
		return -ENOMEM;
	if ((r = ptr_load(tx, in, blk, lvl, p, &b)))
		goto out;
	uint64_t per = span[lvl - 1];
	for (uint32_t i = 0; i < P && !r && !ps->more; i++) {
		uint64_t lo = base + i * per, hi = lo + per;
		if (hi <= from || lo >= to || !p->ptrs[i])
			continue;
		uint64_t child = p->ptrs[i] & PTR_BLOCK_MASK;
		if (lvl == 1) {
			if ((r = blk_free(tx, ino_kind(in), child)))
				break;
			in->nblocks--;
			p->ptrs[i] = 0;
			changed = 1;
			pstep_count(tx, ps);
		} else {
			int cempty = 0;
			if ((r = punch_block(tx, in, child, lvl - 1, lo, from, to, &cempty, ps)))
				break;
			if (cempty) {
				if ((r = blk_free(tx, RC_META, child)))
					break;
				p->ptrs[i] = 0;
				changed = 1;
			}
		}
	}
	if (r)
		goto out;
	*empty = 1;
	for (uint32_t i = 0; i < P; i++)
		if (p->ptrs[i])
			*empty = 0;
	if (changed && !*empty)
		r = ptr_store(tx, p, b);
out:
	free(p);
	return r;
}

/* One pass of bmap_punch: frees what it can of [from, to) until it is full
 * (ps->more), every copy it changed stored but the inode's (the caller
 * writes in). */
static int punch_pass(struct txn *tx, struct lunfs_inode *in, uint64_t from, uint64_t to,
		      struct pstep *ps)
{
	int r;
	for (uint64_t i = from; i < INO_NDIRECT && i < to && !ps->more; i++) {
		if (!in->direct[i])
			continue;
		r = blk_free(tx, ino_kind(in), in->direct[i] & PTR_BLOCK_MASK);
		in->direct[i] = 0;
		in->nblocks--;
		if (r)
			return r;
		pstep_count(tx, ps);
	}
	uint64_t base = INO_NDIRECT;
	for (int lvl = 1; lvl <= 3 && !ps->more; lvl++) {
		uint64_t root = in->indirect[lvl - 1] & PTR_BLOCK_MASK;
		if (root && to > base && from < base + span[lvl]) {
			int empty = 0;
			if ((r = punch_block(tx, in, root, lvl, base, from, to, &empty, ps)))
				return r;
			if (empty) {
				r = blk_free(tx, RC_META, root);
				in->indirect[lvl - 1] = 0;
				if (r)
					return r;
			}
		}
		base += span[lvl];
	}
	return 0;
}

/* Frees the units [from, to) (to 0: to the end) in passes; between two,
 * a step commits what the pass freed (tx_step: without v->mu, and data
 * I/O goes on meanwhile).  Every committed step is consistent: a pointer
 * is cleared in the transaction that frees its block, at every level.
 * Each pass first clears the open file's map cache: data I/O between
 * steps may have cached pointers that this pass frees (it drains before
 * its first free, and nothing enters the cache until the step). */
int bmap_punch(struct txn *tx, struct lunfs_inode *in, uint64_t from, uint64_t to)
{
	int r;
	if (!to)
		to = bmap_max_units();
	for (;;) {
		struct pstep ps = {0};
		of_invalidate(tx->v, in->ino);
		if ((r = punch_pass(tx, in, from, to, &ps)) || !ps.more)
			return r;
		if ((r = ino_write(tx, in)) || (r = tx_step(tx, in->ino)))
			return r;
	}
}
