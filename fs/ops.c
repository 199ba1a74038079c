/* Namespace operations of the public API (lunfs.h).  Each one is a single
 * transaction: it locks what it changes (directory first, then the child),
 * changes the cached blocks, and commits through the journal.  Large frees
 * (deleting a big file) commit in steps, kept consistent by the orphan
 * directory: an inode being freed is listed there until it is gone. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include "fs/internal.h"

static uint32_t dtype(uint32_t mode)
{
	return (mode >> 12) & 15;
}

static int read_dir(struct txn *tx, uint64_t ino, int mode, struct lunfs_inode *d)
{
	int r = ino_read(tx, ino, mode, d);
	if (!r && !S_ISDIR(d->mode))
		r = -ENOTDIR;
	return r;
}

/* Overlays what open files on this host have not committed yet. */
static void overlay(struct lunfs_vol *v, struct lunfs_stat *st);

int lunfs_getattr(struct lunfs_vol *v, uint64_t ino, struct lunfs_stat *st)
{
	struct txn tx;
	struct lunfs_inode *in = malloc(sizeof(*in));
	if (!in)
		return -ENOMEM;
	tx_begin(v, &tx);
	int r = ino_read(&tx, ino, LK_FREE, in);
	if (!r) {
		ino_stat(v, in, st);
		overlay(v, st);
	}
	tx_end(&tx, r);
	free(in);
	return r;
}

int lunfs_lookup(struct lunfs_vol *v, uint64_t dir, const char *name, struct lunfs_stat *st)
{
	struct txn tx;
	struct lunfs_inode *d = malloc(sizeof(*d)), *in = malloc(sizeof(*in));
	uint64_t ino;
	int r = name_check(name);
	if (!d || !in) {
		free(d);
		free(in);
		return -ENOMEM;
	}
	if (r == -EINVAL && (!strcmp(name, ".") || !strcmp(name, "..")))
		r = 0;
	if (r)
		goto out_free;
	tx_begin(v, &tx);
	r = read_dir(&tx, dir, LK_FREE, d);
	if (!r) {
		if (!strcmp(name, "."))
			ino = d->ino;
		else if (!strcmp(name, ".."))
			ino = d->parent;
		else
			r = dir_lookup(&tx, d, name, &ino, NULL);
	}
	if (!r)
		r = ino_read(&tx, ino, LK_FREE, in);
	if (!r) {
		ino_stat(v, in, st);
		overlay(v, st);
	}
	tx_end(&tx, r);
out_free:
	free(d);
	free(in);
	return r;
}

/* The orphan directory lists inodes whose last link is gone but whose space
 * is not yet freed (open files, or a delete in progress). */
static void orphan_name(uint64_t ino, char *name)
{
	snprintf(name, 24, "%llu", (unsigned long long)ino);
}

/* Lists ino in the orphan directory (add) or takes it out. */
static int orphan_edit(struct txn *tx, uint64_t ino, int add)
{
	struct lunfs_inode *o = malloc(sizeof(*o));
	char name[24];
	int r;
	if (!o)
		return -ENOMEM;
	orphan_name(ino, name);
	r = read_dir(tx, ORPHAN_INO, LK_EXCLUSIVE, o);
	if (!r)
		r = add ? dir_add(tx, o, name, ino, DT_REG_LUNFS) : dir_remove(tx, o, name);
	if (!r)
		r = ino_write(tx, o);
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
	if (!r)
		r = tx_lock(tx, geom_ig_lock(s, g), geom_ig_hdr(s, g), LK_EXCLUSIVE);
	if (!r && !(in->flags & INOF_INLINE))
		r = bmap_punch(tx, in, 0, 0);
	if (!r)
		r = ino_write(tx, in);
	if (!r)
		r = orphan_edit(tx, in->ino, 0);
	if (!r)
		r = ino_free(tx, in);
	return r;
}

/* The last link of in went away (in is locked and written by the caller
 * after this).  Frees it now, or at its last close on this host. */
static int drop_last_link(struct txn *tx, struct lunfs_inode *in)
{
	int r = orphan_edit(tx, in->ino, 1);
	if (r)
		return r;
	struct ofile *of = of_find(tx->v, in->ino);
	if (of) {
		/* An open without a lock (a directory, a read-only open that
		 * found a writer) now pins the inode lock we hold, so that no
		 * other host's orphan pass frees the inode before our last
		 * close: nobody else needs the lock of a nameless inode. */
		if ((r = of_pin(tx->v, of, LK_EXCLUSIVE)))
			return r;
		of->unlinked = 1;
		return ino_write(tx, in);
	}
	/* commit the unlink itself first, then free in steps */
	if ((r = ino_write(tx, in)) || (r = tx_flush(tx)))
		return r;
	return file_release_inode(tx, in);
}

static int do_create(struct lunfs_vol *v, uint64_t dir, const char *name, uint32_t mode,
		     uint64_t rdev, const char *target, const struct lunfs_cred *c,
		     struct lunfs_stat *st)
{
	struct txn tx;
	struct lunfs_inode *d = malloc(sizeof(*d)), *in = malloc(sizeof(*in));
	struct lunfs_cred root = {0, 0};
	int r;
	if (!c)
		c = &root;
	if (!d || !in) {
		r = -ENOMEM;
		goto out_free;
	}
	if ((r = name_check(name)) || (r = vol_check_writable(v)))
		goto out_free;
	if (target && strlen(target) > LUNFS_SYMLINK_MAX) {
		r = -ENAMETOOLONG;
		goto out_free;
	}
	tx_begin(v, &tx);
	if ((r = read_dir(&tx, dir, LK_EXCLUSIVE, d)))
		goto out;
	if (d->nlink == 0) {
		r = -ENOENT; /* a removed directory still open */
		goto out;
	}
	uint64_t exist;
	if ((r = dir_lookup(&tx, d, name, &exist, NULL)) != -ENOENT) {
		r = r ? r : -EEXIST;
		goto out;
	}
	if ((r = ino_alloc(&tx, dir, in)))
		goto out;
	struct lunfs_time now;
	ino_now(&now);
	in->mode = mode;
	in->uid = c->uid;
	in->gid = c->gid;
	/* setgid directories give their group, and their setgid bit to subdirs */
	if (d->mode & S_ISGID) {
		in->gid = d->gid;
		if (S_ISDIR(mode))
			in->mode |= S_ISGID;
	}
	in->nlink = S_ISDIR(mode) ? 2 : 1;
	in->atime = in->mtime = in->ctime = in->btime = now;
	in->parent = dir;
	in->rdev = rdev;
	if (S_ISDIR(mode))
		in->flags |= INOF_MAPMETA;
	if (target) {
		/* a target too long for the inline area takes file block 0 */
		in->size = strlen(target);
		if (in->size <= INO_INLINE_LEN) {
			in->flags |= INOF_INLINE;
			memcpy(in->inline_data, target, in->size);
		} else if ((r = file_put_first(&tx, in, target, in->size))) {
			goto out;
		}
	}
	if ((r = ino_write(&tx, in)) || (r = dir_add(&tx, d, name, in->ino, dtype(mode))))
		goto out;
	if (S_ISDIR(mode))
		d->nlink++;
	d->mtime = d->ctime = now;
	if ((r = ino_write(&tx, d)))
		goto out;
	ino_stat(v, in, st);
	r = tx_commit(&tx);
	goto out_free;
out:
	tx_end(&tx, r);
out_free:
	free(d);
	free(in);
	return r;
}

int lunfs_mknod(struct lunfs_vol *v, uint64_t dir, const char *name, uint32_t mode, uint64_t rdev,
		const struct lunfs_cred *c, struct lunfs_stat *st)
{
	if (S_ISDIR(mode) || S_ISLNK(mode))
		return -EINVAL;
	if (!(mode & S_IFMT))
		mode |= S_IFREG;
	return do_create(v, dir, name, mode, rdev, NULL, c, st);
}

int lunfs_mkdir(struct lunfs_vol *v, uint64_t dir, const char *name, uint32_t mode,
		const struct lunfs_cred *c, struct lunfs_stat *st)
{
	return do_create(v, dir, name, S_IFDIR | (mode & 07777), 0, NULL, c, st);
}

int lunfs_symlink(struct lunfs_vol *v, uint64_t dir, const char *name, const char *target,
		  const struct lunfs_cred *c, struct lunfs_stat *st)
{
	if (!*target)
		return -ENOENT;
	return do_create(v, dir, name, S_IFLNK | 0777, 0, target, c, st);
}

int lunfs_readlink(struct lunfs_vol *v, uint64_t ino, char *buf, size_t size)
{
	struct txn tx;
	struct lunfs_inode *in = malloc(sizeof(*in));
	if (!in)
		return -ENOMEM;
	tx_begin(v, &tx);
	int r = ino_read(&tx, ino, LK_FREE, in);
	char *t = NULL;
	if (!r && !S_ISLNK(in->mode))
		r = -EINVAL;
	if (!r && (in->size == 0 || in->size > LUNFS_SYMLINK_MAX))
		r = -EFSCORRUPTED;
	if (!r && !(in->flags & INOF_INLINE)) {
		/* in file block 0 (FORMAT.md, "Inline area") */
		if (!(t = malloc(in->size)))
			r = -ENOMEM;
		else
			r = file_get_first(&tx, in, t, in->size);
	}
	if (!r) {
		size_t n = in->size < size ? in->size : size;
		memcpy(buf, t ? t : (char *)in->inline_data, n);
		if (n < size)
			buf[n] = 0;
		r = in->size;
	}
	tx_end(&tx, r < 0 ? r : 0);
	free(t);
	free(in);
	return r;
}

int lunfs_link(struct lunfs_vol *v, uint64_t ino, uint64_t dir, const char *name,
	       struct lunfs_stat *st)
{
	struct txn tx;
	struct lunfs_inode *d = malloc(sizeof(*d)), *in = malloc(sizeof(*in));
	int r;
	if (!d || !in) {
		r = -ENOMEM;
		goto out_free;
	}
	if ((r = name_check(name)) || (r = vol_check_writable(v)))
		goto out_free;
	tx_begin(v, &tx);
	if ((r = read_dir(&tx, dir, LK_EXCLUSIVE, d)) || (r = ino_read(&tx, ino, LK_EXCLUSIVE, in)))
		goto out;
	if (S_ISDIR(in->mode)) {
		r = -EPERM;
		goto out;
	}
	if (in->nlink == 0 || d->nlink == 0) {
		r = -ENOENT;
		goto out;
	}
	if (in->nlink >= 65000) {
		r = -EMLINK;
		goto out;
	}
	if ((r = dir_add(&tx, d, name, ino, dtype(in->mode))))
		goto out;
	struct lunfs_time now;
	ino_now(&now);
	in->nlink++;
	in->ctime = now;
	d->mtime = d->ctime = now;
	if ((r = ino_write(&tx, in)) || (r = ino_write(&tx, d)))
		goto out;
	ino_stat(v, in, st);
	overlay(v, st);
	r = tx_commit(&tx);
	goto out_free;
out:
	tx_end(&tx, r);
out_free:
	free(d);
	free(in);
	return r;
}

static int do_remove(struct lunfs_vol *v, uint64_t dir, const char *name, int isdir)
{
	struct txn tx;
	struct lunfs_inode *d = malloc(sizeof(*d)), *in = malloc(sizeof(*in));
	uint64_t ino;
	int r;
	if (!d || !in) {
		r = -ENOMEM;
		goto out_free;
	}
	if ((r = name_check(name))) {
		if (!strcmp(name, "."))
			r = -EINVAL;
		else if (!strcmp(name, ".."))
			r = -ENOTEMPTY;
		goto out_free;
	}
	if ((r = vol_check_writable(v)))
		goto out_free;
	tx_begin(v, &tx);
	if ((r = read_dir(&tx, dir, LK_EXCLUSIVE, d)) || (r = dir_lookup(&tx, d, name, &ino, NULL)) ||
	    (r = ino_read(&tx, ino, LK_EXCLUSIVE, in)))
		goto out;
	if (isdir && !S_ISDIR(in->mode)) {
		r = -ENOTDIR;
		goto out;
	}
	if (!isdir && S_ISDIR(in->mode)) {
		r = -EISDIR;
		goto out;
	}
	if (isdir && (r = dir_is_empty(&tx, in)) != 1) {
		r = r ? r : -ENOTEMPTY;
		goto out;
	}
	if ((r = dir_remove(&tx, d, name)))
		goto out;
	struct lunfs_time now;
	ino_now(&now);
	d->mtime = d->ctime = now;
	in->ctime = now;
	if (isdir) {
		d->nlink--;
		in->nlink = 0;
	} else {
		in->nlink--;
	}
	if ((r = ino_write(&tx, d)))
		goto out;
	r = in->nlink ? ino_write(&tx, in) : drop_last_link(&tx, in);
	if (r)
		goto out;
	r = tx_commit(&tx);
	goto out_free;
out:
	tx_end(&tx, r);
out_free:
	free(d);
	free(in);
	return r;
}

int lunfs_unlink(struct lunfs_vol *v, uint64_t dir, const char *name)
{
	return do_remove(v, dir, name, 0);
}

int lunfs_rmdir(struct lunfs_vol *v, uint64_t dir, const char *name)
{
	return do_remove(v, dir, name, 1);
}

/* Is dir (or one of its ancestors) the directory anc? */
static int is_descendant(struct txn *tx, uint64_t dir, uint64_t anc)
{
	struct lunfs_inode *in = malloc(sizeof(*in));
	int r = 0, depth = 0;
	if (!in)
		return -ENOMEM;
	while (dir != LUNFS_ROOT_INO && depth++ < 100000) {
		if (dir == anc) {
			r = 1;
			break;
		}
		if ((r = ino_read(tx, dir, LK_FREE, in)))
			break;
		dir = in->parent;
	}
	free(in);
	return r;
}

int lunfs_rename(struct lunfs_vol *v, uint64_t odir, const char *oname, uint64_t ndir,
		 const char *nname, unsigned flags)
{
	struct txn tx;
	struct lunfs_inode *od = malloc(sizeof(*od)), *nd = malloc(sizeof(*nd));
	struct lunfs_inode *src = malloc(sizeof(*src)), *dst = malloc(sizeof(*dst));
	uint64_t sino, dino = 0;
	int r;
	if (!od || !nd || !src || !dst) {
		r = -ENOMEM;
		goto out_free;
	}
	if ((flags & LUNFS_RENAME_NOREPLACE) && (flags & LUNFS_RENAME_EXCHANGE)) {
		r = -EINVAL;
		goto out_free;
	}
	if ((r = name_check(oname)) || (r = name_check(nname)) || (r = vol_check_writable(v)))
		goto out_free;
	tx_begin(v, &tx);
	/* both directories, in address order (one lock if they are the same) */
	uint64_t first = odir < ndir ? odir : ndir, second = odir < ndir ? ndir : odir;
	if ((r = read_dir(&tx, first, LK_EXCLUSIVE, first == odir ? od : nd)))
		goto out;
	if (second != first && (r = read_dir(&tx, second, LK_EXCLUSIVE, second == odir ? od : nd)))
		goto out;
	struct lunfs_inode *ndp = odir == ndir ? od : nd; /* one in-memory copy when shared */
	if ((r = dir_lookup(&tx, od, oname, &sino, NULL)) || (r = ino_read(&tx, sino, LK_EXCLUSIVE, src)))
		goto out;
	r = dir_lookup(&tx, ndp, nname, &dino, NULL);
	if (r && r != -ENOENT)
		goto out;
	int exists = r == 0;
	r = 0;
	if (exists && (flags & LUNFS_RENAME_NOREPLACE)) {
		r = -EEXIST;
		goto out;
	}
	if (!exists && (flags & LUNFS_RENAME_EXCHANGE)) {
		r = -ENOENT;
		goto out;
	}
	if (exists && dino == sino)
		goto commit; /* two links to one inode: nothing to do */
	if (exists && (r = ino_read(&tx, dino, LK_EXCLUSIVE, dst)))
		goto out;
	int sdir = S_ISDIR(src->mode), ddir = exists && S_ISDIR(dst->mode);
	/* a directory may not move below itself */
	if (sdir && odir != ndir && (r = is_descendant(&tx, ndir, sino)) != 0) {
		r = r > 0 ? -EINVAL : r;
		goto out;
	}
	if ((flags & LUNFS_RENAME_EXCHANGE) && ddir && odir != ndir &&
	    (r = is_descendant(&tx, odir, dino)) != 0) {
		r = r > 0 ? -EINVAL : r;
		goto out;
	}
	struct lunfs_time now;
	ino_now(&now);
	if (flags & LUNFS_RENAME_EXCHANGE) {
		if ((r = dir_set(&tx, od, oname, dino, dtype(dst->mode))) ||
		    (r = dir_set(&tx, ndp, nname, sino, dtype(src->mode))))
			goto out;
		if (odir != ndir) {
			src->parent = sdir ? ndir : src->parent;
			dst->parent = ddir ? odir : dst->parent;
			od->nlink += ddir - sdir;
			nd->nlink += sdir - ddir;
		}
		src->ctime = dst->ctime = now;
		if ((r = ino_write(&tx, src)) || (r = ino_write(&tx, dst)))
			goto out;
	} else {
		if (exists) {
			if (sdir && !ddir) {
				r = -ENOTDIR;
				goto out;
			}
			if (!sdir && ddir) {
				r = -EISDIR;
				goto out;
			}
			if (ddir && (r = dir_is_empty(&tx, dst)) != 1) {
				r = r ? r : -ENOTEMPTY;
				goto out;
			}
			if ((r = dir_set(&tx, ndp, nname, sino, dtype(src->mode))))
				goto out;
		} else if ((r = dir_add(&tx, ndp, nname, sino, dtype(src->mode)))) {
			goto out;
		}
		if ((r = dir_remove(&tx, od, oname)))
			goto out;
		if (sdir && odir != ndir) {
			src->parent = ndir;
			od->nlink--;
			nd->nlink++;
		}
		src->ctime = now;
		if ((r = ino_write(&tx, src)))
			goto out;
		if (exists) {
			dst->ctime = now;
			if (ddir) {
				dst->nlink = 0;
				ndp->nlink--;
			} else {
				dst->nlink--;
			}
		}
	}
	od->mtime = od->ctime = now;
	ndp->mtime = ndp->ctime = now;
	if ((r = ino_write(&tx, od)))
		goto out;
	if (odir != ndir && (r = ino_write(&tx, nd)))
		goto out;
	if (exists && !(flags & LUNFS_RENAME_EXCHANGE))
		r = dst->nlink ? ino_write(&tx, dst) : drop_last_link(&tx, dst);
	if (r)
		goto out;
commit:
	r = tx_commit(&tx);
	goto out_free;
out:
	tx_end(&tx, r);
out_free:
	free(od);
	free(nd);
	free(src);
	free(dst);
	return r;
}

struct rd_ctx {
	lunfs_dirfn fn;
	void *arg;
};

int lunfs_readdir(struct lunfs_vol *v, uint64_t dir, uint64_t off, lunfs_dirfn fn, void *arg)
{
	struct txn tx;
	struct lunfs_inode *d = malloc(sizeof(*d));
	if (!d)
		return -ENOMEM;
	tx_begin(v, &tx);
	int r = read_dir(&tx, dir, LK_FREE, d);
	if (!r)
		r = dir_iter(&tx, d, off, fn, arg);
	tx_end(&tx, r);
	free(d);
	return r;
}

int lunfs_statfs(struct lunfs_vol *v, struct lunfs_statfs *st)
{
	uint64_t ff, fi;
	int r = alloc_counts(v, &ff, &fi);
	if (r)
		return r;
	memset(st, 0, sizeof(*st));
	st->bsize = v->sb.file_bs;
	st->blocks = v->sb.file_blocks - 1; /* block 0 is reserved */
	st->bfree = ff;
	st->files = geom_ninodes(&v->sb) - 3; /* 0, root, orphans */
	st->ffree = fi;
	st->namemax = LUNFS_NAME_MAX;
	return 0;
}

/* One change to one inode: lock it exclusively, let fn change it, write it
 * and commit.  st (may be NULL) receives its attributes afterwards. */
static int modify_inode(struct lunfs_vol *v, uint64_t ino,
			int (*fn)(struct txn *, struct lunfs_inode *, void *), void *arg,
			struct lunfs_stat *st)
{
	struct txn tx;
	struct lunfs_inode *in = malloc(sizeof(*in));
	int r;
	if (!in)
		return -ENOMEM;
	if ((r = vol_check_writable(v))) {
		free(in);
		return r;
	}
	tx_begin(v, &tx);
	gw_wait_ino(v, ino); /* a truncate happens after the writes in flight */
	if (!(r = ino_read(&tx, ino, LK_EXCLUSIVE, in)) && !(r = fn(&tx, in, arg)) &&
	    !(r = ino_write(&tx, in))) {
		if (st) {
			ino_stat(v, in, st);
			overlay(v, st);
		}
		r = tx_commit(&tx);
	} else {
		tx_end(&tx, r);
	}
	free(in);
	return r;
}

/* ---- setattr ---- */

int file_truncate(struct txn *tx, struct lunfs_inode *in, uint64_t size); /* file.c */

struct setattr_arg {
	unsigned mask;
	const struct lunfs_setattr *sa;
};

static int do_setattr(struct txn *tx, struct lunfs_inode *in, void *arg)
{
	const struct setattr_arg *a = arg;
	const struct lunfs_setattr *sa = a->sa;
	unsigned mask = a->mask;
	struct lunfs_time now;
	int r;
	ino_now(&now);
	if (mask & LUNFS_SET_SIZE) {
		if (S_ISDIR(in->mode))
			return -EISDIR;
		if (!S_ISREG(in->mode) || (in->flags & INOF_SNAPSHOT))
			return -EINVAL;
		if (sa->size > bmap_max_units() * tx->v->sb.file_bs)
			return -EFBIG;
		if (sa->size != in->size) {
			if ((r = file_truncate(tx, in, sa->size)))
				return r;
			in->mtime = now;
		}
	}
	if (mask & LUNFS_SET_MODE)
		in->mode = (in->mode & S_IFMT) | (sa->mode & 07777);
	if (mask & LUNFS_SET_UID)
		in->uid = sa->uid;
	if (mask & LUNFS_SET_GID)
		in->gid = sa->gid;
	if (mask & LUNFS_SET_KILL_SUID) {
		in->mode &= ~S_ISUID;
		if (in->mode & S_IXGRP)
			in->mode &= ~S_ISGID;
	}
	if (mask & LUNFS_SET_ATIME_NOW)
		in->atime = now;
	else if (mask & LUNFS_SET_ATIME)
		in->atime = (struct lunfs_time){sa->atime.tv_sec, (uint32_t)sa->atime.tv_nsec};
	if (mask & LUNFS_SET_MTIME_NOW)
		in->mtime = now;
	else if (mask & LUNFS_SET_MTIME)
		in->mtime = (struct lunfs_time){sa->mtime.tv_sec, (uint32_t)sa->mtime.tv_nsec};
	if (mask & LUNFS_SET_CTIME)
		in->ctime = (struct lunfs_time){sa->ctime.tv_sec, (uint32_t)sa->ctime.tv_nsec};
	else
		in->ctime = now;
	struct ofile *of = of_find(tx->v, in->ino);
	if (of && (mask & (LUNFS_SET_MTIME | LUNFS_SET_MTIME_NOW | LUNFS_SET_SIZE)))
		of_clear_times(of);
	return 0;
}

int lunfs_setattr(struct lunfs_vol *v, uint64_t ino, unsigned mask, const struct lunfs_setattr *sa,
		  struct lunfs_stat *st)
{
	struct setattr_arg a = {mask, sa};
	return modify_inode(v, ino, do_setattr, &a, st);
}

/* ---- extended attributes ---- */

static int xattr_find(const struct lunfs_inode *in, const char *name, struct lunfs_xattr_info *x)
{
	uint32_t pos = 0;
	size_t nl = strlen(name);
	while (lunfs_xattr_next(in->xattrs, in->xattr_len, &pos, x))
		if (x->name_len == nl && !memcmp(x->name, name, nl))
			return 1;
	return 0;
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
	(void)tx;
	int had = xattr_find(in, a->name, &x);
	if (had && (a->flags & LUNFS_XATTR_CREATE))
		return -EEXIST;
	if (!had && (a->flags & LUNFS_XATTR_REPLACE))
		return -ENODATA;
	uint8_t save[INO_XATTR_LEN];
	uint32_t save_len = in->xattr_len;
	memcpy(save, in->xattrs, INO_XATTR_LEN);
	if (had)
		lunfs_xattr_del(in->xattrs, &in->xattr_len, x.off);
	if (lunfs_xattr_add(in->xattrs, &in->xattr_len, a->name, strlen(a->name), a->val, a->len)) {
		memcpy(in->xattrs, save, INO_XATTR_LEN);
		in->xattr_len = save_len;
		return -ENOSPC;
	}
	ino_now(&in->ctime);
	return 0;
}

int lunfs_setxattr(struct lunfs_vol *v, uint64_t ino, const char *name, const void *val,
		   size_t len, unsigned flags)
{
	size_t nl = strlen(name);
	if (nl == 0 || nl > 255)
		return nl ? -ERANGE : -EINVAL;
	if (len > INO_XATTR_LEN)
		return -E2BIG;
	/* POSIX ACLs are not enforced (access is decided by the mode bits):
	 * refuse them, so that setfacl fails visibly instead of storing an ACL
	 * that nobody checks */
	if (!strcmp(name, "system.posix_acl_access") || !strcmp(name, "system.posix_acl_default"))
		return -EOPNOTSUPP;
	struct setx_arg a = {name, val, len, flags};
	return modify_inode(v, ino, do_setxattr, &a, NULL);
}

int lunfs_getxattr(struct lunfs_vol *v, uint64_t ino, const char *name, void *buf, size_t size)
{
	struct txn tx;
	struct lunfs_inode *in = malloc(sizeof(*in));
	struct lunfs_xattr_info x;
	if (!in)
		return -ENOMEM;
	tx_begin(v, &tx);
	int r = ino_read(&tx, ino, LK_FREE, in);
	if (!r && !xattr_find(in, name, &x))
		r = -ENODATA;
	if (!r) {
		if (size && size < x.value_len)
			r = -ERANGE;
		else {
			if (size)
				memcpy(buf, x.value, x.value_len);
			r = x.value_len;
		}
	}
	tx_end(&tx, r < 0 ? r : 0);
	free(in);
	return r;
}

int lunfs_listxattr(struct lunfs_vol *v, uint64_t ino, char *buf, size_t size)
{
	struct txn tx;
	struct lunfs_inode *in = malloc(sizeof(*in));
	struct lunfs_xattr_info x;
	if (!in)
		return -ENOMEM;
	tx_begin(v, &tx);
	int r = ino_read(&tx, ino, LK_FREE, in);
	size_t total = 0;
	uint32_t pos = 0;
	while (!r && lunfs_xattr_next(in->xattrs, in->xattr_len, &pos, &x)) {
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
	tx_end(&tx, r);
	free(in);
	return r ? r : (int)total;
}

static int do_removexattr(struct txn *tx, struct lunfs_inode *in, void *arg)
{
	struct lunfs_xattr_info x;
	(void)tx;
	if (!xattr_find(in, arg, &x))
		return -ENODATA;
	lunfs_xattr_del(in->xattrs, &in->xattr_len, x.off);
	ino_now(&in->ctime);
	return 0;
}

int lunfs_removexattr(struct lunfs_vol *v, uint64_t ino, const char *name)
{
	return modify_inode(v, ino, do_removexattr, (void *)name, NULL);
}

static void overlay(struct lunfs_vol *v, struct lunfs_stat *st)
{
	struct ofile *of = of_find(v, st->ino);
	if (of)
		of_overlay(of, st);
}
