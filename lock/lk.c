/* On-disk lock records, taken and dropped with compare-and-write.
 * See docs/LOCKING.md: "Lock records". */
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include "lock/lk.h"
#include "util/clock.h"

const char *lk_mode_name(int m)
{
	switch (m) {
	case LK_FREE:
		return "free";
	case LK_EXCLUSIVE:
		return "exclusive";
	case LK_SHARED_RO:
		return "shared-ro";
	case LK_MULTI_WRITER:
		return "multi-writer";
	}
	return "?";
}

int lk_read(struct dev *d, const uint8_t uuid[16], uint64_t off, struct lunfs_lock *rec)
{
	uint32_t lbs = dev_lbs(d);
	uint8_t *buf = dev_alloc(lbs);
	if (!buf)
		return -ENOMEM;
	int r = dev_read(d, off, buf, lbs);
	if (r)
		goto out;
	r = lunfs_lock_decode(buf, uuid, off, rec, NULL);
out:
	free(buf);
	return r;
}

static uint64_t wall_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + ts.tv_nsec;
}

static void backoff(unsigned attempt)
{
	unsigned ms = 2u << (attempt < 5 ? attempt : 5); /* 2 .. 64 ms */
	usleep((ms + (unsigned)rand() % ms) * 1000);
}

static int is_me(struct hb_host *h, const struct lunfs_lock *rec, uint32_t i)
{
	return rec->holders[i].slot == hb_slot(h) && rec->holders[i].mount_gen == hb_mount_gen(h);
}

int lk_acquire(struct hb_host *h, struct lk_lock *l, uint64_t off, uint64_t object, int mode,
	       int wait, uint32_t timeout_ms)
{
	return lk_acquire_flags(h, l, off, object, mode, 0, wait, timeout_ms);
}

int lk_acquire_flags(struct hb_host *h, struct lk_lock *l, uint64_t off, uint64_t object,
		     int mode, unsigned hflags, int wait, uint32_t timeout_ms)
{
	struct dev *d = hb_dev(h);
	const uint8_t *uuid = hb_params(h)->uuid;
	uint32_t lbs = dev_lbs(d);
	uint8_t *cur = dev_alloc(lbs), *nimg = dev_alloc(lbs);
	uint64_t t0 = lunfs_now_ms();
	int r;

	if (!cur || !nimg) {
		r = -ENOMEM;
		goto out;
	}
	if (mode != LK_EXCLUSIVE && mode != LK_SHARED_RO && mode != LK_MULTI_WRITER) {
		r = -EINVAL;
		goto out;
	}
	r = dev_read(d, off, cur, lbs);
	for (unsigned attempt = 0; !r; attempt++) {
		struct lunfs_lock rec, nrec;
		/* a fenced host says so, not that the lock is busy */
		if ((r = hb_ok(h)))
			break;
		r = lunfs_lock_decode(cur, uuid, off, &rec, NULL);
		if (r)
			break;
		memset(&nrec, 0, sizeof(nrec));
		int alive = 0, dead = 0, mine = 0, pinned = 0;
		for (uint32_t i = 0; i < rec.nholders; i++) {
			if (is_me(h, &rec, i)) {
				mine = rec.holders[i].flags == hflags ? 1 : 2;
				continue;
			}
			int st = hb_peer(h, rec.holders[i].slot, rec.holders[i].mount_gen);
			if (st < 0) {
				r = st;
				break;
			}
			if (st == PEER_GONE)
				continue; /* its host was recovered: the hold is void */
			alive += st == PEER_ALIVE;
			dead += st == PEER_DEAD;
			pinned += st == PEER_ALIVE && (rec.holders[i].flags & LK_HOLD_OPEN);
			nrec.holders[nrec.nholders++] = rec.holders[i];
		}
		if (r)
			break;
		if (mine == 1 && rec.mode == (uint32_t)mode) {
			r = -EALREADY;
			break;
		}
		int compatible = nrec.nholders == 0 ||
				 (mode != LK_EXCLUSIVE && rec.mode == (uint32_t)mode &&
				  nrec.nholders < LUNFS_MAX_HOLDERS);
		if (!compatible) {
			l->rec = rec;
			l->pinned = pinned > 0;
			r = dead && !alive ? -ESTALE : -EBUSY;
			/* a hold pinned by an open will not go away soon: no wait */
			if (wait && !pinned && lunfs_now_ms() - t0 < timeout_ms) {
				backoff(attempt);
				r = dev_read(d, off, cur, lbs);
				continue;
			}
			break;
		}
		/* (the device's write guard checks the lease again right
		 * before the CAW: the classification above can block) */
		nrec.holders[nrec.nholders].slot = hb_slot(h);
		nrec.holders[nrec.nholders].flags = hflags;
		nrec.holders[nrec.nholders].mount_gen = hb_mount_gen(h);
		nrec.nholders++;
		nrec.mode = mode;
		nrec.gen = rec.gen + 1;
		nrec.owner = object;
		nrec.object = object;
		nrec.wall_ns = wall_ns();
		lunfs_lock_encode(&nrec, uuid, off, nimg);
		r = dev_caw(d, off, cur, nimg, lbs, cur);
		if (r == -ETIMEDOUT && attempt < 1000 && !(r = dev_read(d, off, cur, lbs))) {
			/* the file backend's arbiter refused a hold that took too
			 * long (or was broken): nothing was written; decide again */
			backoff(attempt);
			continue;
		}
		if (r == -EMISCOMPARE) {
			r = 0; /* cur now holds the new state: decide again */
			if (attempt > 3)
				backoff(attempt - 3);
			continue;
		}
		if (!r) {
			memset(l, 0, sizeof(*l));
			l->off = off;
			l->mode = mode;
			l->rec = nrec;
			memcpy(l->img, nimg, lbs);
		}
		break;
	}
out:
	free(cur);
	free(nimg);
	return r;
}

/* Rewrites the lock record at off (current image in cur, lbs bytes) without
 * the holders that drop() selects; the mode becomes FREE when none is left.
 * Retries on miscompare from the image the device returns.  *found: some
 * holder was selected.  On success cur holds the new image. */
struct add_holder {
	uint16_t slot, flags;
	uint64_t mount_gen;
};

static int drop_holders(struct hb_host *h, uint64_t off, uint8_t *cur,
			int (*drop)(struct hb_host *, const struct lunfs_lock *, uint32_t, void *),
			void *arg, const struct add_holder *add, int *found)
{
	struct dev *d = hb_dev(h);
	const uint8_t *uuid = hb_params(h)->uuid;
	uint32_t lbs = dev_lbs(d);
	uint8_t *nimg = dev_alloc(lbs);
	int r = -EAGAIN;
	if (!nimg)
		return -ENOMEM;
	*found = 0;
	for (int attempt = 0; attempt < 10000 && r == -EAGAIN; attempt++) {
		struct lunfs_lock rec, nrec;
		if ((r = lunfs_lock_decode(cur, uuid, off, &rec, NULL)))
			break;
		nrec = rec;
		nrec.nholders = 0;
		*found = 0;
		for (uint32_t i = 0; i < rec.nholders; i++) {
			if (drop(h, &rec, i, arg))
				*found = 1;
			else
				nrec.holders[nrec.nholders++] = rec.holders[i];
		}
		if (!*found)
			break; /* r == 0 */
		if ((r = hb_ok(h)))
			break;
		if (add) { /* in place of what was dropped: the record never goes FREE */
			nrec.holders[nrec.nholders].slot = add->slot;
			nrec.holders[nrec.nholders].flags = add->flags;
			nrec.holders[nrec.nholders].mount_gen = add->mount_gen;
			nrec.nholders++;
		}
		if (!nrec.nholders)
			nrec.mode = LK_FREE;
		nrec.gen = rec.gen + 1;
		nrec.wall_ns = wall_ns();
		lunfs_lock_encode(&nrec, uuid, off, nimg);
		r = dev_caw(d, off, cur, nimg, lbs, cur);
		if (r == 0)
			memcpy(cur, nimg, lbs);
		else if (r == -EMISCOMPARE)
			r = -EAGAIN;
		else if (r == -ETIMEDOUT && !(r = dev_read(d, off, cur, lbs)))
			r = -EAGAIN; /* the arbiter refused a slow hold: nothing written */
	}
	free(nimg);
	return r;
}

static int drop_me(struct hb_host *h, const struct lunfs_lock *rec, uint32_t i, void *arg)
{
	(void)arg;
	return is_me(h, rec, i);
}

/* lk_release and lk_transfer: drops our entry, adding add (if not NULL) in
 * the same CAW. */
static int release_to(struct hb_host *h, struct lk_lock *l, const struct add_holder *add)
{
	if (l->mode == LK_FREE)
		return -EINVAL;
	uint32_t lbs = dev_lbs(hb_dev(h));
	uint8_t *cur = dev_alloc(lbs);
	if (!cur)
		return -ENOMEM;
	/* Our last image is the likely state: one CAW in the common case. */
	memcpy(cur, l->img, lbs);
	int found, r = drop_holders(h, l->off, cur, drop_me, NULL, add, &found);
	free(cur);
	if (r)
		return r;
	if (!found)
		return -ESTALE; /* someone recovered us and broke the lock */
	l->mode = LK_FREE;
	return 0;
}

int lk_release(struct hb_host *h, struct lk_lock *l)
{
	return release_to(h, l, NULL);
}

int lk_transfer(struct hb_host *h, struct lk_lock *l, uint32_t slot, uint64_t mount_gen,
		unsigned flags)
{
	struct add_holder a = {(uint16_t)slot, (uint16_t)flags, mount_gen};
	if (slot >= hb_params(h)->max_hosts || !mount_gen)
		return -EINVAL;
	return release_to(h, l, &a);
}

struct purge_arg {
	uint32_t slot;
	uint64_t below;
};

static int drop_old(struct hb_host *h, const struct lunfs_lock *rec, uint32_t i, void *arg)
{
	const struct purge_arg *p = arg;
	(void)h;
	return rec->holders[i].slot == p->slot && rec->holders[i].mount_gen < p->below;
}

int lk_purge(struct hb_host *h, uint64_t off, const void *img, uint32_t slot, uint64_t below_gen)
{
	uint32_t lbs = dev_lbs(hb_dev(h));
	uint8_t *cur = dev_alloc(lbs);
	struct purge_arg pa = {slot, below_gen};
	int found, r;
	if (!cur)
		return -ENOMEM;
	memcpy(cur, img, lbs);
	r = drop_holders(h, off, cur, drop_old, &pa, NULL, &found);
	free(cur);
	return r ? r : found;
}
