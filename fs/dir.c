/* Directories: entries in 4 KiB directory blocks (meta blocks mapped by the
 * directory inode).  Entries never move once written, so a readdir cookie is
 * simply an entry's position: block index * 4096 + offset in the block. */
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include "fs/internal.h"

int name_check(const char *name)
{
	size_t n = strlen(name);
	if (n == 0 || strchr(name, '/'))
		return -EINVAL;
	if (n > LUNFS_NAME_MAX)
		return -ENAMETOOLONG;
	if (!strcmp(name, ".") || !strcmp(name, ".."))
		return -EINVAL;
	return 0;
}

/* Directory blocks to look at.  Directories grow one block at a time and
 * never have holes, so a size beyond the blocks allocated (a hostile inode)
 * must not make us walk an enormous empty map. */
static uint64_t dir_blocks(struct txn *tx, const struct lunfs_inode *dir)
{
	uint64_t n = dir->size / BS;
	if (n > dir->nblocks)
		n = dir->nblocks;
	if (n > tx->v->sb.meta_blocks)
		n = tx->v->sb.meta_blocks;
	return n;
}

/* Reads directory block idx of dir (cached under dir's lock, else transient
 * and re-read if torn).  *bp is NULL for a hole. */
static int dblk_load(struct txn *tx, struct lunfs_inode *dir, uint64_t idx, struct buf **bp)
{
	struct lunfs_vol *v = tx->v;
	uint64_t ptr;
	int r = bmap_get(tx, dir, idx, &ptr);
	*bp = NULL;
	if (r || !ptr)
		return r;
	if ((ptr & PTR_FLAGS_MASK) || (ptr & PTR_BLOCK_MASK) >= v->sb.meta_blocks)
		return -EFSCORRUPTED;
	uint64_t addr = geom_meta_blk(&v->sb, ptr & PTR_BLOCK_MASK);
	uint64_t lock = geom_ino_lock(&v->sb, dir->ino);
	for (int attempt = 0;; attempt++) {
		if ((r = tx_read(tx, addr, lock, bp)))
			return r;
		r = lunfs_dir_check((*bp)->data, v->sb.uuid, addr, dir->ino, idx, NULL);
		if (!r || (*bp)->lock || attempt == 3)
			return r;
	}
}

static int dblk_store(struct txn *tx, struct lunfs_inode *dir, uint64_t idx, struct buf *b)
{
	lunfs_dir_seal(b->data, tx->v->sb.uuid, b->addr, lunfs_hdr_gen(b->data) + 1, dir->ino, idx);
	return tx_dirty(tx, b);
}

struct found {
	uint64_t idx;
	struct buf *b;
	uint32_t off, prev; /* prev: offset of the entry before (0: first) */
	struct lunfs_dirent_info e;
};

static int find(struct txn *tx, struct lunfs_inode *dir, const char *name, struct found *f)
{
	size_t nl = strlen(name);
	for (uint64_t idx = 0; idx < dir_blocks(tx, dir); idx++) {
		struct buf *b;
		int r = dblk_load(tx, dir, idx, &b);
		if (r)
			return r;
		if (!b)
			continue;
		uint32_t prev = 0;
		for (uint32_t off = DIR_FIRST; off < BS;) {
			struct lunfs_dirent_info e;
			lunfs_dirent_get(b->data, off, &e);
			if (e.ino && e.name_len == nl && !memcmp(e.name, name, nl)) {
				*f = (struct found){idx, b, off, prev, e};
				return 0;
			}
			prev = off;
			off += e.rec_len;
		}
	}
	return -ENOENT;
}

int dir_lookup(struct txn *tx, struct lunfs_inode *dir, const char *name, uint64_t *ino,
	       uint32_t *type)
{
	struct found f;
	int r = find(tx, dir, name, &f);
	if (r)
		return r;
	*ino = f.e.ino;
	if (type)
		*type = f.e.type;
	return 0;
}

/* First fit for an entry of need bytes: a free entry, or the slack after
 * a live one (*split).  Returns 0 with *bp, *idx and *offp, or with *bp
 * NULL when no block of dir has room; or -errno. */
static int dir_slot(struct txn *tx, struct lunfs_inode *dir, uint32_t need, uint64_t *idx,
		    struct buf **bp, uint32_t *offp, int *split)
{
	*bp = NULL;
	for (uint64_t i = 0; i < dir_blocks(tx, dir); i++) {
		struct buf *b;
		int r = dblk_load(tx, dir, i, &b);
		if (r)
			return r;
		if (!b)
			continue;
		for (uint32_t off = DIR_FIRST; off < BS;) {
			struct lunfs_dirent_info e;
			lunfs_dirent_get(b->data, off, &e);
			uint32_t used = e.ino ? dirent_size(e.name_len) : 0;
			if ((!e.ino && e.rec_len >= need) || (e.ino && e.rec_len >= used + need)) {
				*bp = b;
				*idx = i;
				*offp = off;
				*split = e.ino != 0;
				return 0;
			}
			off += e.rec_len;
		}
	}
	return 0;
}

int dir_has_room(struct txn *tx, struct lunfs_inode *dir, const char *name)
{
	uint64_t idx;
	struct buf *b;
	uint32_t off;
	int split, r = dir_slot(tx, dir, dirent_size(strlen(name)), &idx, &b, &off, &split);
	return r ? r : b != NULL;
}

int dir_prepare_add(struct txn *tx, struct lunfs_inode *dir, const char *name)
{
	/* the meta cluster its new block (and perhaps a pointer block for
	 * it) would come from */
	uint64_t seen;
	int r = dir_has_room(tx, dir, name);
	return r ? (r < 0 ? r : 0) : blk_alloc_ready(tx, RC_META, 0, 1, 2, &seen);
}

int dir_add(struct txn *tx, struct lunfs_inode *dir, const char *name, uint64_t ino, uint32_t type)
{
	struct lunfs_vol *v = tx->v;
	struct found f;
	uint32_t nl = strlen(name), need = dirent_size(nl);
	int r = find(tx, dir, name, &f);
	if (r == 0)
		return -EEXIST;
	if (r != -ENOENT)
		return r;
	uint64_t slot;
	struct buf *sb;
	uint32_t off;
	int split;
	if ((r = dir_slot(tx, dir, need, &slot, &sb, &off, &split)))
		return r;
	if (sb && !split) {
		struct lunfs_dirent_info e;
		lunfs_dirent_get(sb->data, off, &e);
		lunfs_dirent_put(sb->data, off, ino, e.rec_len, type, name, nl);
		return dblk_store(tx, dir, slot, sb);
	}
	if (sb) {
		struct lunfs_dirent_info e;
		char keep[LUNFS_NAME_MAX];
		lunfs_dirent_get(sb->data, off, &e);
		uint32_t used = dirent_size(e.name_len);
		memcpy(keep, e.name, e.name_len);
		lunfs_dirent_put(sb->data, off, e.ino, used, e.type, keep, e.name_len);
		lunfs_dirent_put(sb->data, off + used, ino, e.rec_len - used, type, name, nl);
		return dblk_store(tx, dir, slot, sb);
	}
	/* a new block at the end */
	uint64_t idx = dir_blocks(tx, dir), blk;
	struct buf *b;
	if ((r = blk_alloc(tx, RC_META, &blk)))
		return r;
	if ((r = tx_new(tx, geom_meta_blk(&v->sb, blk), geom_ino_lock(&v->sb, dir->ino), &b)))
		return r;
	lunfs_dir_init(b->data);
	lunfs_dirent_put(b->data, DIR_FIRST, ino, BS - DIR_FIRST, type, name, nl);
	if ((r = bmap_set(tx, dir, idx, blk)))
		return r;
	dir->size += BS;
	dir->nblocks++;
	return dblk_store(tx, dir, idx, b);
}

int dir_remove(struct txn *tx, struct lunfs_inode *dir, const char *name)
{
	struct found f;
	int r = find(tx, dir, name, &f);
	if (r)
		return r;
	if (f.prev) {
		/* fold the entry into the one before it */
		struct lunfs_dirent_info p;
		char keep[LUNFS_NAME_MAX];
		lunfs_dirent_get(f.b->data, f.prev, &p);
		memcpy(keep, p.name, p.name_len);
		lunfs_dirent_put(f.b->data, f.prev, p.ino, p.rec_len + f.e.rec_len, p.type, keep,
				 p.ino ? p.name_len : 0);
	} else {
		lunfs_dirent_put(f.b->data, f.off, 0, f.e.rec_len, 0, NULL, 0);
	}
	return dblk_store(tx, dir, f.idx, f.b);
}

int dir_set(struct txn *tx, struct lunfs_inode *dir, const char *name, uint64_t ino, uint32_t type)
{
	struct found f;
	int r = find(tx, dir, name, &f);
	if (r)
		return r;
	char keep[LUNFS_NAME_MAX];
	memcpy(keep, f.e.name, f.e.name_len);
	lunfs_dirent_put(f.b->data, f.off, ino, f.e.rec_len, type, keep, f.e.name_len);
	return dblk_store(tx, dir, f.idx, f.b);
}

int dir_is_empty(struct txn *tx, struct lunfs_inode *dir)
{
	for (uint64_t idx = 0; idx < dir_blocks(tx, dir); idx++) {
		struct buf *b;
		int r = dblk_load(tx, dir, idx, &b);
		if (r)
			return r;
		for (uint32_t off = DIR_FIRST; b && off < BS;) {
			struct lunfs_dirent_info e;
			lunfs_dirent_get(b->data, off, &e);
			if (e.ino)
				return 0;
			off += e.rec_len;
		}
	}
	return 1;
}

int dir_iter(struct txn *tx, struct lunfs_inode *dir, uint64_t cookie, lunfs_dirfn fn, void *arg)
{
	if (cookie == 0 && fn(arg, ".", dir->ino, 4, 1))
		return 0;
	if (cookie <= 1 && fn(arg, "..", dir->parent, 4, 2))
		return 0;
	for (uint64_t idx = cookie / BS; idx < dir_blocks(tx, dir); idx++) {
		struct buf *b;
		int r = dblk_load(tx, dir, idx, &b);
		if (r)
			return r;
		for (uint32_t off = DIR_FIRST; b && off < BS;) {
			struct lunfs_dirent_info e;
			lunfs_dirent_get(b->data, off, &e);
			uint64_t pos = idx * BS + off;
			if (e.ino && pos >= cookie) {
				char name[LUNFS_NAME_MAX + 1];
				memcpy(name, e.name, e.name_len);
				name[e.name_len] = 0;
				if (fn(arg, name, e.ino, e.type, pos + e.rec_len))
					return 0;
			}
			off += e.rec_len;
		}
	}
	return 0;
}

int dir_read(struct txn *tx, uint64_t ino, int mode, struct lunfs_inode *d)
{
	int r = ino_read(tx, ino, mode, d);
	if (r)
		return r;
	return S_ISDIR(d->mode) ? 0 : -ENOTDIR;
}
