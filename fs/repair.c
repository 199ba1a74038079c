/* Repair helpers for fsck.lunfs: journaled like every other change. */
#include <stdlib.h>
#include <sys/stat.h>
#include "fs/internal.h"
#include "fs/repair.h"

/* lunfs_relink under tx: d receives dir, in the inode ino. */
static int relink_in(struct txn *tx, uint64_t dir, const char *name, uint64_t ino,
		     struct lunfs_inode *d, struct lunfs_inode *in)
{
	int r = ino_read(tx, dir, LK_EXCLUSIVE, d);
	if (r)
		return r;
	if (!S_ISDIR(d->mode))
		return -ENOTDIR;
	if ((r = ino_read(tx, ino, LK_EXCLUSIVE, in)) ||
	    (r = dir_add(tx, d, name, ino, (in->mode >> 12) & 15)))
		return r;
	if (S_ISDIR(in->mode)) {
		in->parent = dir;
		d->nlink++;
	} else {
		in->nlink++;
	}
	ino_now(&in->ctime);
	d->mtime = d->ctime = in->ctime;
	if ((r = ino_write(tx, in)))
		return r;
	return ino_write(tx, d);
}

int lunfs_relink(struct lunfs_vol *v, uint64_t dir, const char *name, uint64_t ino)
{
	struct txn tx;
	struct lunfs_inode *d = malloc(sizeof(*d)), *in = malloc(sizeof(*in));
	int r = -ENOMEM;
	if (!d || !in)
		goto out;
	if ((r = name_check(name)) || (r = vol_check_writable(v)))
		goto out;
	tx_begin(v, &tx);
	r = op_finish(&tx, relink_in(&tx, dir, name, ino, d, in));
out:
	free(d);
	free(in);
	return r;
}
