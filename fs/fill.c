/* Pending writes and their group commit.
 *
 * A write that exposes new blocks (a hole, a to-be-zeroed block) or grows
 * the file must not return before the metadata change is durable, and the
 * data it exposes must be durable before that change (or a crash shows
 * stale data).  Done one write at a time, that is four device round trips
 * per request (data, flush, journal, flush), all under the volume mutex.
 * Here the K writes that are pending at a moment share them:
 *
 *   1. under v->mu, briefly (data.c, chunk_map): the write is listed in
 *      v->gw; each hole it touches gets a block reserved in memory (the
 *      cluster's lock stays pinned by the reservation, rc_take skips it);
 *   2. without v->mu: its data is written, the blocks it exposes in whole
 *      (fill_block zeroes the rest of each);
 *   3. under v->mu: it is WRITTEN.  If no group commit runs, this thread
 *      leads one: it waits a little for the writes registered before it
 *      whose data is still on its way (gw_gather), takes every WRITTEN
 *      write, drops v->mu, flushes the device once (the data of all of them
 *      before any pointer; not at all when a flush that started after their
 *      data was written, usually the journal's of the group before, already
 *      covers it), and in one transaction claims the reserved blocks, sets
 *      the pointers, the sizes and times, and commits it (one journal write
 *      and its flush).  The others wait on their own condition variable and
 *      find their result when it is done; the oldest one left leads next.
 *
 * What keeps it right:
 *   - a write whose range holds another pending write's fill waits for that
 *     one to be done (gw_wait_ready), then looks again (the block is mapped
 *     now, or still a hole if that write failed).  A write being looked up
 *     (GW_MAPPING) holds its whole range, so two writes never fill one
 *     block;
 *   - anything else that changes a file's map or size (truncate, fallocate,
 *     punch, the last close, handoff) first waits until no write into the
 *     file is pending (gw_wait_ino), and then runs under v->mu as before, so
 *     a write registered later happens after it;
 *   - no registration and no group commit looks at the cache while another
 *     transaction is parked half-done with v->mu dropped (tx_parked);
 *   - a write whose data fails, or a group whose flush or transaction
 *     fails, gives its reservations back: the reserved blocks were never
 *     marked used, and a to-be-zeroed block stays so (it reads as zeros);
 *   - the data writes and the journal's go through the device's write
 *     guard: a fenced host's fills fail, and nothing of theirs is committed.
 */
#include <stdlib.h>
#include <time.h>
#include "fs/internal.h"

#define GW_BATCH 64 /* writes per group commit */
#define GW_GATHER_US 1000 /* how long a leader waits for data in flight */
/* Dirty blocks a fill may add to the transaction: its cluster header, and
 * for a new path of pointer blocks three of them with their meta cluster
 * headers.  A group stops short of TX_MAX. */
#define GW_DIRTY_PER_FILL 7

static int touches(const struct gwrite *g, const struct ofile *of, uint64_t l0, uint64_t l1)
{
	if (g->of != of || g->lblk0 >= l1 || l0 >= g->lblk1)
		return 0;
	if (g->state == GW_MAPPING)
		return 1;
	for (int i = 0; i < g->nfill; i++)
		if (g->fill[i].lblk >= l0 && g->fill[i].lblk < l1)
			return 1;
	return 0;
}

void gw_wait_ready(struct lunfs_vol *v, struct ofile *of, uint64_t lblk0, uint64_t lblk1)
{
	VOL_HELD(v);
	for (;;) {
		int busy = v->tx_parked > 0 || of->stepping ||
			   (of->zbusy && lblk0 < of->zb1 && of->zb0 < lblk1);
		for (struct gwrite *g = v->gw; g && !busy; g = g->next)
			busy = touches(g, of, lblk0, lblk1);
		if (!busy)
			return;
		pthread_cond_wait(&v->gw_cv, &v->mu);
	}
}

void gw_add(struct lunfs_vol *v, struct gwrite *g)
{
	VOL_HELD(v);
	struct gwrite **pp = &v->gw;
	while (*pp)
		pp = &(*pp)->next;
	g->state = GW_MAPPING;
	g->seq = v->gw_seq++;
	g->next = NULL;
	*pp = g;
}

void gw_drop(struct lunfs_vol *v, struct gwrite *g, int r)
{
	VOL_HELD(v);
	struct gwrite **pp = &v->gw;
	while (*pp && *pp != g)
		pp = &(*pp)->next;
	if (*pp)
		*pp = g->next;
	for (int i = 0; i < g->nfill; i++)
		if (!g->fill[i].old)
			blk_unreserve(v, g->fill[i].blk);
	g->res = r;
	g->state = GW_DONE;
	pthread_cond_signal(&g->cv);
	if (v->gw_gatherer)
		pthread_cond_signal(&v->gw_gatherer->cv);
	pthread_cond_broadcast(&v->gw_cv);
}

/* The group's metadata, in tx: the writes batch[0..*took) (fewer than n
 * when the transaction would grow too large; the rest wait for the next
 * group).  Returns 0 or -errno (then the whole group fails). */
static int gw_apply(struct txn *tx, struct gwrite **batch, int n, int *took)
{
	struct bino {
		struct ofile *of;
		struct lunfs_inode in;
	} *bi = malloc(n * sizeof(*bi));
	struct lunfs_time now;
	int nbi = 0, r = 0, i;
	if (!bi)
		return -ENOMEM;
	ino_now(&now);
	for (i = 0; i < n && !r; i++) {
		struct gwrite *g = batch[i];
		struct lunfs_inode *in = NULL;
		if (tx->ndirty + g->nfill * GW_DIRTY_PER_FILL + 1 > TX_MAX)
			break;
		if (!g->of->h || g->of->handed_off) {
			r = -ESTALE; /* cannot happen: a handoff waits for pending writes */
			break;
		}
		for (int k = 0; k < nbi && !in; k++)
			if (bi[k].of == g->of)
				in = &bi[k].in;
		if (!in) {
			in = &bi[nbi].in;
			bi[nbi].of = g->of;
			if ((r = ino_read(tx, g->of->ino, LK_EXCLUSIVE, in)))
				break;
			nbi++;
		}
		for (int k = 0; k < g->nfill && !r; k++) {
			struct gfill *fl = &g->fill[k];
			uint64_t cur;
			if ((r = bmap_get(tx, in, fl->lblk, &cur)))
				break;
			/* nothing else changes a pending block's pointer */
			if (cur != fl->old) {
				r = -EFSCORRUPTED;
				break;
			}
			if (!fl->old) {
				if ((r = blk_claim(tx, fl->blk)))
					break;
				in->nblocks++;
			}
			r = bmap_set(tx, in, fl->lblk, fl->blk);
		}
		if (in->size < g->end)
			in->size = g->end;
		in->mtime = in->ctime = now;
		of_clear_times(g->of, &now); /* a write after now keeps its own */
	}
	*took = r ? n : i;
	for (int k = 0; k < nbi && !r; k++)
		r = ino_write(tx, &bi[k].in);
	free(bi);
	return r;
}

/* Before a group is formed, its leader waits (at most GW_GATHER_US) for the
 * writes registered before it whose data is still on its way: they are
 * done soon, and a group of their own would cost another flush and
 * transaction.  Writes registered later do not hold it up. */
static void gw_gather(struct lunfs_vol *v, struct gwrite *me)
{
	uint64_t upto = v->gw_seq;
	struct timespec dl;
	clock_gettime(CLOCK_MONOTONIC, &dl);
	dl.tv_nsec += GW_GATHER_US * 1000;
	if (dl.tv_nsec >= 1000000000) {
		dl.tv_sec++;
		dl.tv_nsec -= 1000000000;
	}
	for (;;) {
		int busy = 0;
		for (struct gwrite *g = v->gw; g && !busy; g = g->next)
			busy = g->seq < upto && (g->state == GW_MAPPING || g->state == GW_WRITING);
		if (!busy)
			break;
		v->gw_gatherer = me; /* woken when one of them is written */
		int e = pthread_cond_timedwait(&me->cv, &v->mu, &dl);
		v->gw_gatherer = NULL;
		if (e == ETIMEDOUT)
			break;
	}
}

/* Commits one group: every WRITTEN write, oldest first; me (WRITTEN) is
 * the leader's.  v->mu held on entry and on return; dropped for the data
 * flush. */
static void gw_lead(struct lunfs_vol *v, struct gwrite *me)
{
	VOL_HELD(v);
	struct gwrite *batch[GW_BATCH];
	struct txn tx;
	int n = 0, fills = 0, took = 0;
	uint64_t mark = 0;
	v->gw_leader = 1;
	gw_gather(v, me);
	for (struct gwrite *g = v->gw; g && n < GW_BATCH; g = g->next) {
		if (g->state != GW_WRITTEN)
			continue;
		g->state = GW_COMMITTING;
		fills += g->nfill;
		if (g->nfill && g->flushed > mark)
			mark = g->flushed;
		batch[n++] = g;
	}
	pthread_mutex_unlock(&v->mu);
	/* the data of the whole group before any pointer that exposes it; a
	 * flush that started after all of it was written (the journal's, for
	 * the group before) already did that */
	int r = fills && !dev_flushed_since(v->d, mark) ? dev_flush(v->d) : 0;
	tx_begin(v, &tx);
	while (v->tx_parked)
		pthread_cond_wait(&v->gw_cv, &v->mu);
	if (!r && !(r = gw_apply(&tx, batch, n, &took)))
		r = tx_flush_unlocked(&tx); /* the journal write without v->mu */
	for (int i = 0; i < n; i++) {
		if (r || i < took)
			gw_drop(v, batch[i], r);
		else
			batch[i]->state = GW_WRITTEN;
	}
	v->gw_leader = 0;
	/* the oldest write still waiting leads the next group */
	for (struct gwrite *g = v->gw; g; g = g->next)
		if (g->state == GW_WRITTEN) {
			pthread_cond_signal(&g->cv);
			break;
		}
	tx_end(&tx, r);
	pthread_mutex_lock(&v->mu);
}

int gw_finish(struct lunfs_vol *v, struct gwrite *g, int r)
{
	g->flushed = dev_flush_mark(v->d);
	pthread_mutex_lock(&v->mu);
	if (r) {
		gw_drop(v, g, r); /* nothing to commit: its data did not land */
	} else {
		g->state = GW_WRITTEN;
		if (v->gw_gatherer)
			pthread_cond_signal(&v->gw_gatherer->cv);
	}
	while (g->state != GW_DONE) {
		if (!v->gw_leader && g->state == GW_WRITTEN)
			gw_lead(v, g);
		else
			pthread_cond_wait(&g->cv, &v->mu);
	}
	r = g->res;
	pthread_mutex_unlock(&v->mu);
	return r;
}
