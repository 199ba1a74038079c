/* Repair helpers for fsck.lunfs: journaled like every other change. */
#include <stdlib.h>
#include <sys/stat.h>
#include "fs/internal.h"
#include "fs/repair.h"

int lunfs_relink(struct lunfs_vol *v, uint64_t dir, const char *name, uint64_t ino)
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
	r = ino_read(&tx, dir, LK_EXCLUSIVE, d);
	if (!r && !S_ISDIR(d->mode))
		r = -ENOTDIR;
	if (!r)
		r = ino_read(&tx, ino, LK_EXCLUSIVE, in);
	if (!r)
		r = dir_add(&tx, d, name, ino, (in->mode >> 12) & 15);
	if (!r) {
		if (S_ISDIR(in->mode)) {
			in->parent = dir;
			d->nlink++;
		} else {
			in->nlink++;
		}
		ino_now(&in->ctime);
		d->mtime = d->ctime = in->ctime;
		r = ino_write(&tx, in);
	}
	if (!r)
		r = ino_write(&tx, d);
	if (!r) {
		r = tx_commit(&tx);
		goto out_free;
	}
	tx_end(&tx, r);
out_free:
	free(d);
	free(in);
	return r;
}
