/* Online grow: lunfs grow adds file clusters at the end of a volume that
 * hosts have mounted, and every mounted host follows the new superblock
 * without a remount.  Protocol and interleavings: docs/LOCKING.md section
 * "Online grow"; bytes: docs/FORMAT.md "Online grow".
 *
 * The grower (lunfs_grow) is an ordinary mount (its own heartbeat slot, so
 * every write it submits is checked against its lease) that takes the
 * volume lock EXCLUSIVE, which serialises the writers of the superblock:
 *   1. zero the new entries of the file-cluster table (lock blocks and
 *      headers; all-zero reads as FREE and "never initialised"), flush;
 *   2. write the new superblock as the backup at the new end, flush;
 *   3. write it as the primary at 0, flush: the commit point.
 * A crash before 3 leaves the old volume: nothing the old geometry uses was
 * written (the new entries and the new end lie outside it).  A crash after 3
 * leaves the new one, complete with its backup.
 *
 * A mounted host never writes the superblock; it re-reads it (one 4 KiB
 * read, no lock: a torn read fails its checksum and is retried at the next
 * check) every hb_ms, on statfs, when file allocation finds no space, and
 * when it meets a block number or a cluster header beyond its geometry
 * (written by a host that followed the grow first).  It adopts a newer
 * superblock only when it is this volume grown (lunfs_geom_is_grow). */
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include "format/format.h"
#include "fs/internal.h"

/* Reads and decodes the primary superblock into n (blk: its buffer). */
static int sb_read(struct lunfs_vol *v, uint8_t *blk, struct lunfs_sb *n)
{
	int r = dev_read(v->d, LUNFS_SB_OFF, blk, LUNFS_META_BS);
	if (r)
		return r;
	return lunfs_sb_decode(blk, n, NULL);
}

/* Reads the superblock into *n (no lock needed). */
static int sb_fetch(struct lunfs_vol *v, struct lunfs_sb *n)
{
	uint8_t *blk = dev_alloc(LUNFS_META_BS);
	if (!blk)
		return -ENOMEM;
	int r = sb_read(v, blk, n);
	free(blk);
	return r;
}

static int grow_follow(struct lunfs_vol *v, const struct lunfs_sb *sn);

int vol_grow_check(struct lunfs_vol *v)
{
	VOL_HELD(v);
	struct lunfs_sb n;
	v->grow_checked_ms = lunfs_now_ms();
	return sb_fetch(v, &n) ? 0 : grow_follow(v, &n);
}

int vol_grow_poll(struct lunfs_vol *v)
{
	VOL_HELD(v);
	struct lunfs_sb n;
	v->grow_checked_ms = lunfs_now_ms();
	pthread_mutex_unlock(&v->mu);
	int r = sb_fetch(v, &n);
	pthread_mutex_lock(&v->mu);
	return r ? 0 : grow_follow(v, &n);
}

/* Follows the grow the superblock sn (just read) shows, if any.  v->mu
 * held.  Returns 1 when it did, else 0. */
static int grow_follow(struct lunfs_vol *v, const struct lunfs_sb *sn)
{
	struct lunfs_sb n = *sn;
	if (n.gen <= v->sb.gen)
		return 0; /* unchanged, or torn by a grow in progress: next time */
	if (!lunfs_geom_is_grow(&v->sb, &n)) {
		if (v->grow_warned != n.gen)
			lunfs_log(LOG_ERR, "lunfs: the superblock changed (generation %llu) in a way a "
					   "mounted host cannot follow: unmount and mount again",
				  (unsigned long long)n.gen);
		v->grow_warned = n.gen;
		return 0;
	}
	if (n.dev_size > dev_size(v->d) &&
	    (dev_refresh_size(v->d) || n.dev_size > dev_size(v->d))) {
		if (v->grow_warned != n.gen)
			lunfs_log(LOG_WARNING, "lunfs: the volume grew to %llu bytes, but this host "
					       "sees the device at %llu bytes: rescan the LUN",
				  (unsigned long long)n.dev_size, (unsigned long long)dev_size(v->d));
		v->grow_warned = n.gen;
		return 0;
	}
	/* Data I/O reads file_blocks without v->mu: the bounds only grow, so
	 * a reader that sees the old value refuses nothing the new one allows
	 * that it could have been given (it falls back to the locked path). */
	__atomic_store_n(&v->sb.file_blocks, n.file_blocks, __ATOMIC_RELEASE);
	__atomic_store_n(&v->sb.fc_count, n.fc_count, __ATOMIC_RELEASE);
	__atomic_store_n(&v->sb.dev_size, n.dev_size, __ATOMIC_RELEASE);
	__atomic_store_n(&v->sb.backup_off, n.backup_off, __ATOMIC_RELEASE);
	v->sb.incompat = n.incompat;
	v->sb.gen = n.gen;
	lunfs_log(LOG_NOTICE, "lunfs: the volume grew to %llu bytes (%llu file blocks in %u clusters)",
		  (unsigned long long)n.dev_size, (unsigned long long)n.file_blocks, n.fc_count);
	return 1;
}

static int grow_write(struct lunfs_vol *v, const struct lunfs_sb *n)
{
	const struct lunfs_sb *s = &v->sb;
	uint8_t *blk = dev_alloc(LUNFS_META_BS);
	int r;
	if (!blk)
		return -ENOMEM;
	/* 1. the new clusters: FREE locks, never-initialised headers */
	r = dev_zero(v->d, geom_fc_lock(s, s->fc_count), (uint64_t)(n->fc_count - s->fc_count) * TBL_ENTRY);
	if (r || (r = dev_flush(v->d)))
		goto out;
	/* 2. the backup at the new end: outside the old volume */
	lunfs_sb_encode(n, blk, 1);
	if ((r = dev_write(v->d, n->backup_off, blk, LUNFS_META_BS)) || (r = dev_flush(v->d)))
		goto out;
	/* 3. the primary: the commit point */
	lunfs_sb_encode(n, blk, 0);
	if ((r = dev_write(v->d, LUNFS_SB_OFF, blk, LUNFS_META_BS)))
		goto out;
	r = dev_flush(v->d);
out:
	free(blk);
	return r;
}

int lunfs_grow(struct lunfs_vol *v, uint64_t size, struct lunfs_grow_info *gi, const char **msg)
{
	struct lunfs_sb n;
	struct lk_lock *l = calloc(1, sizeof(*l));
	const char *why = NULL;
	int r;
	memset(gi, 0, sizeof(*gi));
	if (!l)
		return -ENOMEM;
	if (v->ro) {
		free(l);
		return -EROFS;
	}
	/* The volume lock serialises the writers of the superblock; live hosts
	 * only read it.  A lingering peer never holds it, so no want is needed. */
	r = lk_acquire(v->hb, l, v->sb.vlock_off, LUNFS_SB_OFF, LK_EXCLUSIVE, LK_WAIT, 30000);
	if (r) {
		why = r == -EBUSY ? "another lunfs grow holds the volume lock" : "cannot take the volume lock";
		goto out;
	}
	pthread_mutex_lock(&v->mu);
	vol_grow_check(v); /* another grow may have finished before we got the lock */
	pthread_mutex_unlock(&v->mu);
	if ((r = dev_refresh_size(v->d))) {
		why = "cannot read the device's size";
		goto out;
	}
	gi->old_size = v->sb.dev_size;
	gi->old_blocks = v->sb.file_blocks;
	gi->dev_size = dev_size(v->d);
	if (size > gi->dev_size) {
		why = "the size asked for is larger than the device";
		r = -EINVAL;
		goto out;
	}
	r = lunfs_geom_grow(&v->sb, size ? size : gi->dev_size, &n, &gi->max_size);
	if (r) {
		why = r == -EALREADY ? "the device is not larger than the volume by a file block "
				       "(enlarge the image or LUN first)"
		      : r == -EFBIG  ? "the file-cluster table has no room for that size (see --size)"
				     : "the size asked for is smaller than the volume";
		goto out;
	}
	gi->new_size = n.dev_size;
	gi->new_blocks = n.file_blocks;
	if ((r = grow_write(v, &n))) {
		why = r == -EFENCED ? "this grow lost its heartbeat (fenced)" : "writing the new geometry failed";
		goto out;
	}
	pthread_mutex_lock(&v->mu);
	vol_grow_check(v);
	pthread_mutex_unlock(&v->mu);
out:
	if (l->mode != LK_FREE) { /* not taken when lk_acquire failed */
		int r2 = lk_release(v->hb, l);
		if (!r)
			r = r2;
	}
	if (msg)
		*msg = why;
	free(l);
	return r;
}
