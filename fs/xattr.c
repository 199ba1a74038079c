/* Extended attributes: the inode's xattr area, then a chain of up to
 * XATTR_MAX_BLOCKS xattr blocks (meta blocks under the inode's lock,
 * journaled with it, freed with it).  docs/FORMAT.md, "Xattr blocks".
 *
 * An attribute lives whole in one area.  A set removes the old entry and
 * appends the new one to the first area with room (the inode's, then the
 * blocks in chain order), growing the chain by a block when none has; a
 * removal that empties a block unlinks and frees it.  Listing is in area
 * order.  Every block changed is re-encoded and made dirty at once, so a
 * failed transaction drops it from the cache with the rest (tx_end).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include "fs/internal.h"

/* One area: the inode's (x == NULL) or a block's. */
struct xarea {
	uint8_t *a;
	uint32_t *len, cap;
};

struct xchain {
	struct lunfs_inode *in;
	unsigned n;                          /* blocks in the chain */
	uint64_t blk[XATTR_MAX_BLOCKS];
	struct buf *b[XATTR_MAX_BLOCKS];
	struct lunfs_xblk *x[XATTR_MAX_BLOCKS];
};

static void xc_free(struct xchain *c)
{
	for (unsigned i = 0; i < c->n; i++)
		free(c->x[i]);
	c->n = 0;
}

/* Reads the chain of in (cached under its lock when we hold it). */
static int xc_load(struct txn *tx, struct lunfs_inode *in, struct xchain *c)
{
	const struct lunfs_sb *s = &tx->v->sb;
	uint64_t lock = geom_ino_lock(s, in->ino);
	c->in = in;
	c->n = 0;
	for (uint64_t blk = in->xattr_blk; blk; blk = c->x[c->n - 1]->next) {
		const char *why;
		if (c->n == XATTR_MAX_BLOCKS || blk >= s->meta_blocks)
			return -EFSCORRUPTED;
		uint64_t addr = geom_meta_blk(s, blk);
		struct lunfs_xblk *x = malloc(sizeof(*x));
		struct buf *b;
		if (!x)
			return -ENOMEM;
		int r;
		if ((r = tx_read(tx, addr, lock, &b)) ||
		    (r = lunfs_xblk_decode(b->data, s->uuid, addr, in->ino, s->meta_blocks, x, &why))) {
			free(x);
			return r;
		}
		c->blk[c->n] = blk;
		c->b[c->n] = b;
		c->x[c->n++] = x;
	}
	return 0;
}

/* Area k: 0 the inode's, k >= 1 block k - 1. */
static struct xarea xc_area(struct xchain *c, unsigned k)
{
	if (k == 0)
		return (struct xarea){c->in->xattrs, &c->in->xattr_len, INO_XATTR_LEN};
	return (struct xarea){c->x[k - 1]->entries, &c->x[k - 1]->len, XBLK_AREA};
}

/* Writes block i of the chain into its buffer and the transaction. */
static int xc_store(struct txn *tx, struct xchain *c, unsigned i)
{
	c->x[i]->gen++;
	lunfs_xblk_encode(c->x[i], tx->v->sb.uuid, c->b[i]->addr, c->b[i]->data);
	return tx_dirty(tx, c->b[i]);
}

/* Area k changed: the inode is written by the caller, a block here. */
static int xc_changed(struct txn *tx, struct xchain *c, unsigned k)
{
	return k ? xc_store(tx, c, k - 1) : 0;
}

static int xc_find(struct xchain *c, const char *name, unsigned *area, struct lunfs_xattr_info *x)
{
	size_t nl = strlen(name);
	for (unsigned k = 0; k <= c->n; k++) {
		struct xarea a = xc_area(c, k);
		uint32_t pos = 0;
		while (lunfs_xattr_next(a.a, *a.len, &pos, x))
			if (x->name_len == nl && !memcmp(x->name, name, nl)) {
				*area = k;
				return 1;
			}
	}
	return 0;
}

/* A new, empty block at the end of the chain. */
static int xc_grow(struct txn *tx, struct xchain *c)
{
	const struct lunfs_sb *s = &tx->v->sb;
	uint64_t blk;
	struct buf *b;
	if (c->n == XATTR_MAX_BLOCKS || !(s->incompat & LUNFS_INCOMPAT_XATTR_BLOCKS))
		return -ENOSPC;
	struct lunfs_xblk *x = calloc(1, sizeof(*x));
	if (!x)
		return -ENOMEM;
	int r;
	if ((r = blk_alloc(tx, RC_META, &blk)) ||
	    (r = tx_new(tx, geom_meta_blk(s, blk), geom_ino_lock(s, c->in->ino), &b))) {
		free(x);
		return r;
	}
	x->owner = c->in->ino;
	c->blk[c->n] = blk;
	c->b[c->n] = b;
	c->x[c->n++] = x;
	if ((r = xc_store(tx, c, c->n - 1)))
		return r;
	if (c->n == 1) {
		c->in->xattr_blk = blk;
		return 0;
	}
	c->x[c->n - 2]->next = blk;
	return xc_store(tx, c, c->n - 2);
}

/* Block i is empty: unlink it from the chain and free it. */
static int xc_drop(struct txn *tx, struct xchain *c, unsigned i)
{
	uint64_t next = c->x[i]->next;
	int r = 0;
	if (i == 0)
		c->in->xattr_blk = next;
	else {
		c->x[i - 1]->next = next;
		if ((r = xc_store(tx, c, i - 1)))
			goto out;
	}
	r = blk_free(tx, RC_META, c->blk[i]);
out:
	free(c->x[i]);
	memmove(&c->blk[i], &c->blk[i + 1], (c->n - i - 1) * sizeof(c->blk[0]));
	memmove(&c->b[i], &c->b[i + 1], (c->n - i - 1) * sizeof(c->b[0]));
	memmove(&c->x[i], &c->x[i + 1], (c->n - i - 1) * sizeof(c->x[0]));
	c->n--;
	return r;
}

/* Removes the entry at x (in area k). */
static int xc_del(struct txn *tx, struct xchain *c, unsigned k, const struct lunfs_xattr_info *x)
{
	struct xarea a = xc_area(c, k);
	lunfs_xattr_del(a.a, a.len, x->off);
	if (k && *a.len == 0)
		return xc_drop(tx, c, k - 1);
	return xc_changed(tx, c, k);
}

struct setx_arg {
	const char *name;
	const void *val;
	size_t len;
	unsigned flags;
};

static int do_setxattr(struct txn *tx, struct lunfs_inode *in, void *arg)
{
	const struct setx_arg *a = arg;
	struct lunfs_xattr_info x;
	struct xchain c;
	unsigned k;
	uint32_t nl = (uint32_t)strlen(a->name), need = XATTR_HDR + nl + (uint32_t)a->len;
	int r = xc_load(tx, in, &c);
	if (r)
		goto out;
	int had = xc_find(&c, a->name, &k, &x);
	if (had && (a->flags & LUNFS_XATTR_CREATE))
		r = -EEXIST;
	else if (!had && (a->flags & LUNFS_XATTR_REPLACE))
		r = -ENODATA;
	else if (had)
		r = xc_del(tx, &c, k, &x);
	if (r)
		goto out;
	for (k = 0; k <= c.n; k++) {
		struct xarea ar = xc_area(&c, k);
		if (*ar.len + need <= ar.cap)
			break;
	}
	if (k > c.n && (r = xc_grow(tx, &c)))
		goto out;
	struct xarea ar = xc_area(&c, k);
	if ((r = lunfs_xattr_add(ar.a, ar.len, ar.cap, a->name, nl, a->val, (uint32_t)a->len)) ||
	    (r = xc_changed(tx, &c, k)))
		goto out;
	ino_now(&in->ctime);
out:
	xc_free(&c);
	return r;
}

int lunfs_setxattr(struct lunfs_vol *v, uint64_t ino, const char *name, const void *val,
		   size_t len, unsigned flags)
{
	size_t nl = strlen(name);
	if (nl == 0 || nl > 255)
		return nl ? -ERANGE : -EINVAL;
	/* an attribute lives whole in one area: at most a block's */
	if (len > XBLK_AREA - XATTR_HDR - nl)
		return -E2BIG;
	/* POSIX ACLs are not enforced (access is decided by the mode bits):
	 * refuse them, so that setfacl fails visibly instead of storing an ACL
	 * that nobody checks */
	if (!strcmp(name, "system.posix_acl_access") || !strcmp(name, "system.posix_acl_default"))
		return -EOPNOTSUPP;
	struct setx_arg a = {name, val, len, flags};
	return modify_inode(v, ino, do_setxattr, &a, NULL, 0);
}

/* Reads the inode and its chain without taking its lock (one operation's
 * transient copies, as for stat). */
static int read_chain(struct txn *tx, uint64_t ino, struct lunfs_inode *in, struct xchain *c)
{
	c->n = 0;
	int r = ino_read(tx, ino, LK_FREE, in);
	if (r)
		return r;
	return xc_load(tx, in, c);
}

/* lunfs_getxattr under tx */
static int getxattr_in(struct txn *tx, uint64_t ino, const char *name, void *buf, size_t size,
		       struct lunfs_inode *in)
{
	struct lunfs_xattr_info x;
	struct xchain c;
	unsigned k;
	int r = read_chain(tx, ino, in, &c);
	if (r)
		goto out;
	r = -ENODATA;
	if (!xc_find(&c, name, &k, &x))
		goto out;
	r = -ERANGE;
	if (size && size < x.value_len)
		goto out;
	if (size)
		memcpy(buf, x.value, x.value_len);
	r = x.value_len;
out:
	xc_free(&c);
	return r;
}

int lunfs_getxattr(struct lunfs_vol *v, uint64_t ino, const char *name, void *buf, size_t size)
{
	struct txn tx;
	struct lunfs_inode *in = malloc(sizeof(*in));
	int r;
	if (!in)
		return -ENOMEM;
	TX_RUN(v, &tx, r, getxattr_in(&tx, ino, name, buf, size, in));
	tx_end(&tx, r < 0 ? r : 0);
	free(in);
	return r;
}

/* lunfs_listxattr under tx */
static int listxattr_in(struct txn *tx, uint64_t ino, char *buf, size_t size,
			struct lunfs_inode *in)
{
	struct lunfs_xattr_info x;
	struct xchain c;
	int r = read_chain(tx, ino, in, &c);
	size_t total = 0;
	for (unsigned k = 0; !r && k <= c.n; k++) {
		struct xarea a = xc_area(&c, k);
		uint32_t pos = 0;
		while (!r && lunfs_xattr_next(a.a, *a.len, &pos, &x)) {
			if (size) {
				if (total + x.name_len + 1 > size) {
					r = -ERANGE;
					break;
				}
				memcpy(buf + total, x.name, x.name_len);
				buf[total + x.name_len] = 0;
			}
			total += x.name_len + 1;
		}
	}
	xc_free(&c);
	return r ? r : (int)total;
}

int lunfs_listxattr(struct lunfs_vol *v, uint64_t ino, char *buf, size_t size)
{
	struct txn tx;
	struct lunfs_inode *in = malloc(sizeof(*in));
	int r;
	if (!in)
		return -ENOMEM;
	TX_RUN(v, &tx, r, listxattr_in(&tx, ino, buf, size, in));
	tx_end(&tx, r < 0 ? r : 0);
	free(in);
	return r;
}

static int do_removexattr(struct txn *tx, struct lunfs_inode *in, void *arg)
{
	struct lunfs_xattr_info x;
	struct xchain c;
	unsigned k;
	int r = xc_load(tx, in, &c);
	if (r)
		goto out;
	if (!xc_find(&c, arg, &k, &x)) {
		r = -ENODATA;
		goto out;
	}
	if ((r = xc_del(tx, &c, k, &x)))
		goto out;
	ino_now(&in->ctime);
out:
	xc_free(&c);
	return r;
}

int lunfs_removexattr(struct lunfs_vol *v, uint64_t ino, const char *name)
{
	return modify_inode(v, ino, do_removexattr, (void *)name, NULL, 0);
}

int xattr_free_all(struct txn *tx, struct lunfs_inode *in)
{
	struct xchain c;
	int r = xc_load(tx, in, &c);
	if (r)
		goto out;
	for (unsigned i = 0; i < c.n; i++)
		if ((r = blk_free(tx, RC_META, c.blk[i])))
			goto out;
	in->xattr_blk = 0;
out:
	xc_free(&c);
	return r;
}
