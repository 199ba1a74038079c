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

static int getattr_in(struct txn *tx, uint64_t ino, struct lunfs_inode *in,
		      struct lunfs_stat *st)
{
	int r = ino_read(tx, ino, LK_FREE, in);
	if (r)
		return r;
	ino_stat(tx->v, in, st);
	of_overlay_stat(tx->v, st);
	return 0;
}

int lunfs_getattr(struct lunfs_vol *v, uint64_t ino, struct lunfs_stat *st)
{
	struct txn tx;
	struct lunfs_inode *in = malloc(sizeof(*in));
	if (!in)
		return -ENOMEM;
	int r;
	TX_RUN(v, &tx, r, getattr_in(&tx, ino, in, st));
	tx_end(&tx, r);
	free(in);
	return r;
}

/* lunfs_lookup under tx: name in dir (d receives dir), its inode in in. */
static int lookup_in(struct txn *tx, uint64_t dir, const char *name, struct lunfs_inode *d,
		     struct lunfs_inode *in, struct lunfs_stat *st)
{
	uint64_t ino;
	int r = dir_read(tx, dir, LK_FREE, d);
	if (r)
		return r;
	if (!strcmp(name, "."))
		ino = d->ino;
	else if (!strcmp(name, ".."))
		ino = d->parent;
	else if ((r = dir_lookup(tx, d, name, &ino, NULL)))
		return r;
	r = ino_read(tx, ino, LK_FREE, in);
	if (r)
		return r;
	ino_stat(tx->v, in, st);
	of_overlay_stat(tx->v, st);
	return 0;
}

int lunfs_lookup(struct lunfs_vol *v, uint64_t dir, const char *name, struct lunfs_stat *st)
{
	int r = name_check(name);
	if (r == -EINVAL && (!strcmp(name, ".") || !strcmp(name, "..")))
		r = 0;
	if (r)
		return r;
	struct txn tx;
	struct lunfs_inode *d = malloc(sizeof(*d)), *in = malloc(sizeof(*in));
	r = -ENOMEM;
	if (!d || !in)
		goto out;
	TX_RUN(v, &tx, r, lookup_in(&tx, dir, name, d, in, st));
	tx_end(&tx, r);
out:
	free(d);
	free(in);
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
	if ((r = ino_write(tx, in)) || (r = tx_step(tx, in->ino)))
		return r;
	return file_release_inode(tx, in);
}

/* do_create under tx: d receives dir, in the new inode. */
static int create_in(struct txn *tx, uint64_t dir, const char *name, uint32_t mode,
		     uint64_t rdev, const char *target, const struct lunfs_cred *c,
		     struct lunfs_inode *d, struct lunfs_inode *in, struct lunfs_stat *st)
{
	int r = dir_read(tx, dir, LK_EXCLUSIVE, d);
	if (r)
		return r;
	if (d->nlink == 0)
		return -ENOENT; /* a removed directory still open */
	uint64_t exist;
	if ((r = dir_lookup(tx, d, name, &exist, NULL)) != -ENOENT)
		return r ? r : -EEXIST;
	int room = dir_has_room(tx, d, name);
	if (room < 0 || (r = ino_alloc(tx, !room, in)))
		return room < 0 ? room : r;
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
		} else if ((r = file_put_first(tx, in, target, in->size))) {
			return r;
		}
	}
	if ((r = ino_write(tx, in)) || (r = dir_add(tx, d, name, in->ino, dtype(mode))))
		return r;
	if (S_ISDIR(mode))
		d->nlink++;
	d->mtime = d->ctime = now;
	if ((r = ino_write(tx, d)))
		return r;
	ino_stat(tx->v, in, st);
	return 0;
}

static int do_create(struct lunfs_vol *v, uint64_t dir, const char *name, uint32_t mode,
		     uint64_t rdev, const char *target, const struct lunfs_cred *c,
		     struct lunfs_stat *st)
{
	struct txn tx;
	struct lunfs_inode *d = malloc(sizeof(*d)), *in = malloc(sizeof(*in));
	struct lunfs_cred root = {0, 0};
	int r = -ENOMEM;
	if (!d || !in)
		goto out;
	if ((r = name_check(name)) || (r = vol_check_writable(v)))
		goto out;
	r = -ENAMETOOLONG;
	if (target && strlen(target) > LUNFS_SYMLINK_MAX)
		goto out;
	TX_RUN(v, &tx, r, create_in(&tx, dir, name, mode, rdev, target, c ? c : &root, d, in, st));
	r = op_finish(&tx, r);
out:
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

/* lunfs_readlink under tx: the target's length, or -errno. */
static int readlink_in(struct txn *tx, uint64_t ino, struct lunfs_inode *in, char *buf, size_t size)
{
	int r = ino_read(tx, ino, LK_FREE, in);
	if (r)
		return r;
	if (!S_ISLNK(in->mode))
		return -EINVAL;
	if (in->size == 0 || in->size > LUNFS_SYMLINK_MAX)
		return -EFSCORRUPTED;
	char *t = NULL;
	if (!(in->flags & INOF_INLINE)) {
		/* in file block 0 (FORMAT.md, "Inline area") */
		if (!(t = malloc(in->size)))
			return -ENOMEM;
		if ((r = file_get_first(tx, in, t, in->size)))
			goto out;
	}
	size_t n = in->size < size ? in->size : size;
	memcpy(buf, t ? t : (char *)in->inline_data, n);
	if (n < size)
		buf[n] = 0;
	r = in->size;
out:
	free(t);
	return r;
}

int lunfs_readlink(struct lunfs_vol *v, uint64_t ino, char *buf, size_t size)
{
	struct txn tx;
	struct lunfs_inode *in = malloc(sizeof(*in));
	if (!in)
		return -ENOMEM;
	int r;
	TX_RUN(v, &tx, r, readlink_in(&tx, ino, in, buf, size));
	tx_end(&tx, r < 0 ? r : 0);
	free(in);
	return r;
}

/* lunfs_link under tx: d receives dir, in the inode ino. */
static int link_in(struct txn *tx, uint64_t ino, uint64_t dir, const char *name,
		   struct lunfs_inode *d, struct lunfs_inode *in, struct lunfs_stat *st)
{
	int r = dir_read(tx, dir, LK_EXCLUSIVE, d);
	if (r)
		return r;
	if ((r = ino_read(tx, ino, LK_EXCLUSIVE, in)))
		return r;
	if (S_ISDIR(in->mode))
		return -EPERM;
	if (in->nlink == 0 || d->nlink == 0)
		return -ENOENT;
	if (in->nlink >= 65000)
		return -EMLINK;
	if ((r = dir_add(tx, d, name, ino, dtype(in->mode))))
		return r;
	struct lunfs_time now;
	ino_now(&now);
	in->nlink++;
	in->ctime = now;
	d->mtime = d->ctime = now;
	if ((r = ino_write(tx, in)) || (r = ino_write(tx, d)))
		return r;
	ino_stat(tx->v, in, st);
	of_overlay_stat(tx->v, st);
	return 0;
}

int lunfs_link(struct lunfs_vol *v, uint64_t ino, uint64_t dir, const char *name,
	       struct lunfs_stat *st)
{
	struct txn tx;
	struct lunfs_inode *d = malloc(sizeof(*d)), *in = malloc(sizeof(*in));
	int r = -ENOMEM;
	if (!d || !in)
		goto out;
	if ((r = name_check(name)) || (r = vol_check_writable(v)))
		goto out;
	TX_RUN(v, &tx, r, link_in(&tx, ino, dir, name, d, in, st));
	r = op_finish(&tx, r);
out:
	free(d);
	free(in);
	return r;
}

/* do_remove under tx: d receives dir, in the inode removed. */
static int remove_in(struct txn *tx, uint64_t dir, const char *name, int isdir,
		     struct lunfs_inode *d, struct lunfs_inode *in)
{
	uint64_t ino;
	int r = dir_read(tx, dir, LK_EXCLUSIVE, d);
	if (r)
		return r;
	if ((r = dir_lookup(tx, d, name, &ino, NULL)) || (r = ino_read(tx, ino, LK_EXCLUSIVE, in)))
		return r;
	if (isdir && !S_ISDIR(in->mode))
		return -ENOTDIR;
	if (!isdir && S_ISDIR(in->mode))
		return -EISDIR;
	if (isdir && (r = dir_is_empty(tx, in)) != 1)
		return r ? r : -ENOTEMPTY;
	/* the last link: the orphan directory's lock and blocks first */
	if ((isdir || in->nlink <= 1) && (r = orphan_edit(tx, ino, ORPHAN_PREPARE)))
		return r;
	if ((r = dir_remove(tx, d, name)))
		return r;
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
	if ((r = ino_write(tx, d)))
		return r;
	return in->nlink ? ino_write(tx, in) : drop_last_link(tx, in);
}

static int do_remove(struct lunfs_vol *v, uint64_t dir, const char *name, int isdir)
{
	struct txn tx;
	struct lunfs_inode *d = malloc(sizeof(*d)), *in = malloc(sizeof(*in));
	int r = -ENOMEM;
	if (!d || !in)
		goto out;
	if ((r = name_check(name))) {
		if (!strcmp(name, "."))
			r = -EINVAL;
		else if (!strcmp(name, ".."))
			r = -ENOTEMPTY;
		goto out;
	}
	if ((r = vol_check_writable(v)))
		goto out;
	TX_RUN(v, &tx, r, remove_in(&tx, dir, name, isdir, d, in));
	r = op_finish(&tx, r);
out:
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

/* The inodes lunfs_rename reads: both directories and both names' inodes. */
struct rename_ino {
	struct lunfs_inode od, nd, src, dst;
};

/* lunfs_rename under tx. */
static int rename_in(struct txn *tx, uint64_t odir, const char *oname, uint64_t ndir,
		     const char *nname, unsigned flags, struct rename_ino *i)
{
	struct lunfs_inode *od = &i->od, *nd = &i->nd, *src = &i->src, *dst = &i->dst;
	uint64_t sino, dino = 0;
	/* both directories, in address order (one lock if they are the same) */
	uint64_t first = odir < ndir ? odir : ndir, second = odir < ndir ? ndir : odir;
	int r = dir_read(tx, first, LK_EXCLUSIVE, first == odir ? od : nd);
	if (r)
		return r;
	if (second != first && (r = dir_read(tx, second, LK_EXCLUSIVE, second == odir ? od : nd)))
		return r;
	struct lunfs_inode *ndp = odir == ndir ? od : nd; /* one in-memory copy when shared */
	if ((r = dir_lookup(tx, od, oname, &sino, NULL)) || (r = ino_read(tx, sino, LK_EXCLUSIVE, src)))
		return r;
	r = dir_lookup(tx, ndp, nname, &dino, NULL);
	if (r && r != -ENOENT)
		return r;
	int exists = r == 0;
	if (exists && (flags & LUNFS_RENAME_NOREPLACE))
		return -EEXIST;
	if (!exists && (flags & LUNFS_RENAME_EXCHANGE))
		return -ENOENT;
	if (exists && dino == sino)
		return 0; /* two links to one inode: nothing to do */
	if (exists && (r = ino_read(tx, dino, LK_EXCLUSIVE, dst)))
		return r;
	int sdir = S_ISDIR(src->mode), ddir = exists && S_ISDIR(dst->mode);
	/* a directory may not move below itself */
	if (sdir && odir != ndir && (r = is_descendant(tx, ndir, sino)) != 0)
		return r > 0 ? -EINVAL : r;
	if ((flags & LUNFS_RENAME_EXCHANGE) && ddir && odir != ndir &&
	    (r = is_descendant(tx, odir, dino)) != 0)
		return r > 0 ? -EINVAL : r;
	struct lunfs_time now;
	ino_now(&now);
	if (flags & LUNFS_RENAME_EXCHANGE) {
		if ((r = dir_set(tx, od, oname, dino, dtype(dst->mode))) ||
		    (r = dir_set(tx, ndp, nname, sino, dtype(src->mode))))
			return r;
		if (odir != ndir) {
			src->parent = sdir ? ndir : src->parent;
			dst->parent = ddir ? odir : dst->parent;
			od->nlink += ddir - sdir;
			nd->nlink += sdir - ddir;
		}
		src->ctime = dst->ctime = now;
		if ((r = ino_write(tx, src)) || (r = ino_write(tx, dst)))
			return r;
	} else {
		if (exists) {
			if (sdir && !ddir)
				return -ENOTDIR;
			if (!sdir && ddir)
				return -EISDIR;
			if (ddir && (r = dir_is_empty(tx, dst)) != 1)
				return r ? r : -ENOTEMPTY;
			if ((r = dir_set(tx, ndp, nname, sino, dtype(src->mode))))
				return r;
		} else if ((r = dir_add(tx, ndp, nname, sino, dtype(src->mode)))) {
			return r;
		}
		if ((r = dir_remove(tx, od, oname)))
			return r;
		if (sdir && odir != ndir) {
			src->parent = ndir;
			od->nlink--;
			nd->nlink++;
		}
		src->ctime = now;
		if ((r = ino_write(tx, src)))
			return r;
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
	if ((r = ino_write(tx, od)))
		return r;
	if (odir != ndir && (r = ino_write(tx, nd)))
		return r;
	if (exists && !(flags & LUNFS_RENAME_EXCHANGE))
		return dst->nlink ? ino_write(tx, dst) : drop_last_link(tx, dst);
	return 0;
}

int lunfs_rename(struct lunfs_vol *v, uint64_t odir, const char *oname, uint64_t ndir,
		 const char *nname, unsigned flags)
{
	if ((flags & LUNFS_RENAME_NOREPLACE) && (flags & LUNFS_RENAME_EXCHANGE))
		return -EINVAL;
	int r;
	if ((r = name_check(oname)) || (r = name_check(nname)) || (r = vol_check_writable(v)))
		return r;
	struct rename_ino *i = malloc(sizeof(*i));
	if (!i)
		return -ENOMEM;
	struct txn tx;
	TX_RUN(v, &tx, r, rename_in(&tx, odir, oname, ndir, nname, flags, i));
	r = op_finish(&tx, r);
	free(i);
	return r;
}

/* The caller's callback is an effect outside the transaction: from the
 * first entry on, readdir runs to its end without starting over. */
struct rd_ctx {
	lunfs_dirfn fn;
	void *arg;
	struct txn *tx;
};

static int rd_entry(void *arg, const char *name, uint64_t ino, uint32_t type, uint64_t next)
{
	struct rd_ctx *c = arg;
	tx_no_restart(c->tx);
	return c->fn(c->arg, name, ino, type, next);
}

static int readdir_in(struct txn *tx, uint64_t dir, uint64_t off, struct lunfs_inode *d,
		      struct rd_ctx *c)
{
	int r = dir_read(tx, dir, LK_FREE, d);
	return r ? r : dir_iter(tx, d, off, rd_entry, c);
}

int lunfs_readdir(struct lunfs_vol *v, uint64_t dir, uint64_t off, lunfs_dirfn fn, void *arg)
{
	struct txn tx;
	struct rd_ctx c = {fn, arg, &tx};
	struct lunfs_inode *d = malloc(sizeof(*d));
	int r;
	if (!d)
		return -ENOMEM;
	TX_RUN(v, &tx, r, readdir_in(&tx, dir, off, d, &c));
	tx_end(&tx, r);
	free(d);
	return r;
}

int lunfs_statfs(struct lunfs_vol *v, struct lunfs_statfs *st)
{
	uint64_t ff, fi;
	pthread_mutex_lock(&v->mu);
	vol_grow_poll(v); /* df shows a grow at once, read-only mounts too */
	pthread_mutex_unlock(&v->mu);
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

/* ---- setattr ---- */

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
		of_clear_times(of, &now);
	return 0;
}

int lunfs_setattr(struct lunfs_vol *v, uint64_t ino, unsigned mask, const struct lunfs_setattr *sa,
		  struct lunfs_stat *st)
{
	struct setattr_arg a = {mask, sa};
	int listed = 0, r;
	if ((mask & LUNFS_SET_SIZE) && !v->ro && (r = truncate_list(v, ino, sa->size, &listed)))
		return r;
	r = modify_inode(v, ino, do_setattr, &a, st, (mask & LUNFS_SET_SIZE) != 0);
	if (listed)
		truncate_unlist(v, ino, r == 0);
	return r;
}
