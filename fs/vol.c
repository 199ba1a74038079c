/* Mount and unmount, the lock cache with its linger release, the metadata
 * buffer cache, and transactions.  See internal.h for the rules. */
#include <execinfo.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>
#include <xxhash.h>
#include "fs/internal.h"
#include "fs/lunfs_test.h"

#define LOCK_WAIT_MS 30000

static size_t bucket(uint64_t addr)
{
	return (addr / BS) % VOL_NBUCKETS;
}

static struct buf *cache_find(struct lunfs_vol *v, uint64_t addr)
{
	VOL_HELD(v);
	for (struct buf *b = v->bh[bucket(addr)]; b; b = b->next)
		if (b->addr == addr)
			return b;
	return NULL;
}

static void buf_free(struct buf *b)
{
	free(b->data);
	free(b);
}

/* A block leaving the cache: a transaction that has it dirty (another
 * thread's, parked with v->mu dropped) keeps it until its end. */
static void buf_drop(struct buf *b)
{
	if (b->txrefs)
		b->dropped = 1;
	else
		buf_free(b);
}

static void cache_drop(struct lunfs_vol *v, uint64_t addr)
{
	VOL_HELD(v);
	struct buf **pp = &v->bh[bucket(addr)];
	for (; *pp; pp = &(*pp)->next) {
		if ((*pp)->addr == addr) {
			struct buf *b = *pp;
			*pp = b->next;
			buf_drop(b);
			v->cache_epoch++;
			return;
		}
	}
}

/* Drops every cached block covered by lock (0: everything). */
void vol_cache_drop_lock(struct lunfs_vol *v, uint64_t lock)
{
	v->cache_epoch++;
	for (size_t i = 0; i < VOL_NBUCKETS; i++) {
		struct buf **pp = &v->bh[i];
		while (*pp) {
			if (!lock || (*pp)->lock == lock) {
				struct buf *b = *pp;
				*pp = b->next;
				buf_drop(b);
			} else {
				pp = &(*pp)->next;
			}
		}
	}
}

static struct buf *buf_new(uint64_t addr, uint64_t lock)
{
	struct buf *b = calloc(1, sizeof(*b));
	if (!b)
		return NULL;
	b->data = dev_alloc(BS);
	if (!b->data) {
		free(b);
		return NULL;
	}
	b->addr = addr;
	b->lock = lock;
	return b;
}

/* ---- locks ---- */

struct held *vl_find(struct lunfs_vol *v, uint64_t off)
{
	VOL_HELD(v);
	for (struct held *h = v->locks; h; h = h->next)
		if (h->lk.off == off && h->lk.mode != LK_FREE)
			return h;
	return NULL;
}

static int mode_covers(int held, int want)
{
	return held == want || held == LK_EXCLUSIVE ||
	       (want == LK_SHARED_RO && held == LK_MULTI_WRITER && 0);
}

static void release_unpinned(struct lunfs_vol *v, uint64_t idle_ms, int drop);
static int release_dropping(struct lunfs_vol *v, struct held **hs, int n, int *rel_err);

/* Another host waits for a lock we only linger on: let it go, and give the
 * waiter a moment to take it before we queue behind it (fairness).  The
 * release's device I/O and that moment (up to 300 ms) pass without v->mu:
 * this host's other operations and data I/O go on.  Only a caller that may
 * drop v->mu yields (may_drop of vl_get); one that already pinned or
 * changed something uses the hold as it is, and the linger thread lets it
 * go once that operation ends (it sees the want at its next round). */
static int yield(struct lunfs_vol *v, struct held *h)
{
	VOL_HELD(v);
	uint64_t off = h->lk.off;
	int r = release_dropping(v, &h, 1, NULL);
	if (r)
		return r;
	pthread_mutex_unlock(&v->mu);
	for (uint64_t t0 = lunfs_now_ms(); lunfs_now_ms() - t0 < 300;) {
		struct lunfs_lock rec;
		usleep(5000);
		if (lk_read(v->d, v->sb.uuid, off, &rec) || rec.mode != LK_FREE)
			break;
	}
	pthread_mutex_lock(&v->mu);
	return 0;
}

/* The entry of the thread of this host that acquires the lock at off with
 * v->mu dropped, or NULL.  While there is one, it alone acquires that lock:
 * two acquisitions of one record by one host would both find themselves
 * the holder.  The others wait on the entry's own condition (acq_wait). */
static struct acq *acquiring(struct lunfs_vol *v, uint64_t off)
{
	VOL_HELD(v);
	for (struct acq *a = v->acquiring; a; a = a->next)
		if (a->off == off)
			return a;
	return NULL;
}

static void acq_put(struct acq *a)
{
	if (--a->refs == 0) {
		pthread_cond_destroy(&a->cv);
		free(a);
	}
}

/* Waits until a's acquisition is over (v->mu dropped meanwhile). */
static void acq_wait(struct lunfs_vol *v, struct acq *a)
{
	VOL_HELD(v);
	a->refs++;
	while (!a->done)
		pthread_cond_wait(&a->cv, &v->mu);
	acq_put(a);
}

static struct acq *acq_start(struct lunfs_vol *v, uint64_t off)
{
	VOL_HELD(v);
	struct acq *a = calloc(1, sizeof(*a));
	if (!a)
		return NULL;
	a->off = off;
	a->refs = 1;
	pthread_cond_init(&a->cv, NULL);
	a->next = v->acquiring;
	v->acquiring = a;
	return a;
}

static void acq_end(struct lunfs_vol *v, struct acq *a)
{
	VOL_HELD(v);
	struct acq **pp = &v->acquiring;
	while (*pp != a)
		pp = &(*pp)->next;
	*pp = a->next;
	a->done = 1;
	pthread_cond_broadcast(&a->cv);
	acq_put(a);
}

static int lk_busy(int r, const struct lk_lock *lk)
{
	return (r == -EBUSY && !lk->pinned) || r == -ESTALE;
}

/* Acquires the record at off into h->lk: at once if it is free, else in
 * short rounds until timeout_ms.  Between them, let go of what other hosts
 * want and we only linger on: the linger thread cannot while we hold the
 * volume mutex, and the holder we wait for may itself be waiting for one of
 * those.  dropped: v->mu is not held (it is taken for that release only). */
static int acquire_record(struct lunfs_vol *v, struct held *h, uint64_t off, uint64_t object,
			  int mode, uint32_t timeout_ms, int dropped)
{
	int r = lk_acquire_flags(v->hb, &h->lk, off, object, mode, 0, LK_NOWAIT, 0);
	if (!lk_busy(r, &h->lk))
		return r;
	hb_set_want(v->hb, off);
	uint64_t t0 = lunfs_now_ms();
	for (;;) {
		r = lk_acquire_flags(v->hb, &h->lk, off, object, mode, 0, LK_WAIT, 200);
		if (!lk_busy(r, &h->lk) || lunfs_now_ms() - t0 >= timeout_ms)
			break;
		if (dropped)
			pthread_mutex_lock(&v->mu);
		release_unpinned(v, UINT64_MAX, dropped);
		if (dropped)
			pthread_mutex_unlock(&v->mu);
	}
	ios_lock_wait(v, (lunfs_now_ms() - t0) * 1000000);
	hb_clear_want(v->hb, off);
	return r;
}

/* This host's holder flags in h's record (0 if it has no entry). */
static unsigned our_flags(struct lunfs_vol *v, const struct held *h)
{
	for (uint32_t i = 0; i < h->lk.rec.nholders; i++)
		if (h->lk.rec.holders[i].slot == v->slot &&
		    h->lk.rec.holders[i].mount_gen == hb_mount_gen(v->hb))
			return h->lk.rec.holders[i].flags;
	return 0;
}

/* The upgrade of h (pinned by the caller) to mode with v->mu dropped for
 * its compare-and-write: on a copy of the lock state, so that the threads
 * that pin h meanwhile read it unchanged; the entry in v->acquiring keeps
 * this host's others from acquiring or upgrading the record meanwhile. */
static int upgrade_dropping(struct lunfs_vol *v, struct held *h, uint64_t object, int mode,
			    unsigned fl)
{
	VOL_HELD(v);
	struct lk_lock *nl = malloc(sizeof(*nl));
	struct acq *a = nl ? acq_start(v, h->lk.off) : NULL;
	if (!a) {
		free(nl);
		return -ENOMEM;
	}
	*nl = h->lk;
	pthread_mutex_unlock(&v->mu);
	int r = lk_acquire_flags(v->hb, nl, nl->off, object, mode, fl, LK_NOWAIT, 0);
	pthread_mutex_lock(&v->mu);
	if (!r)
		h->lk = *nl;
	acq_end(v, a);
	free(nl);
	return r;
}

int vl_get(struct lunfs_vol *v, uint64_t off, uint64_t object, int mode, int may_drop,
	   struct held **out)
{
	struct held *h;
	struct acq *a;
	int r;
again:
	while ((a = acquiring(v, off))) {
		/* an operation that already holds locks or blocks parks here */
		if (!may_drop)
			tx_park(v);
		acq_wait(v, a);
		if (!may_drop)
			tx_unpark(v);
	}
	h = vl_find(v, off);
	if (h && !h->pins && may_drop && hb_wanted(v->hb, off) && !yield(v, h))
		goto again; /* v->mu was dropped: look again */
	if (h && mode_covers(h->lk.mode, mode)) {
		h->pins++;
		h->last_ms = lunfs_now_ms();
		*out = h;
		return 0;
	}
	/* A wait ends only to break a cycle of hosts waiting for each other
	 * (section 7 of LOCKING.md): long enough for a queue of hosts that each
	 * notice wants and let go in turn, and for a dead holder to be declared
	 * dead and recovered. */
	uint32_t timeout = LOCK_WAIT_MS + v->sb.lease_ms + 4 * v->sb.hb_ms;
	if (h) {
		/* upgrade (we are then the only holder) */
		unsigned fl = our_flags(v, h);
		h->pins++; /* ours: nothing releases h meanwhile */
		r = may_drop ? upgrade_dropping(v, h, object, mode, fl) :
			       lk_acquire_flags(v->hb, &h->lk, off, object, mode, fl, LK_NOWAIT, 0);
		if (r) {
			h->pins--;
			return r;
		}
		h->last_ms = lunfs_now_ms();
		*out = h;
		return 0;
	}
	h = calloc(1, sizeof(*h));
	if (!h)
		return -ENOMEM;
	/* The caller read and changed nothing under a lock yet (may_drop):
	 * the acquisition, its compare-and-write and any wait, runs without
	 * the volume mutex, so that this host's other operations and its data
	 * I/O go on meanwhile; the entry keeps this host's others off it. */
	a = may_drop ? acq_start(v, off) : NULL;
	if (may_drop && !a) {
		free(h);
		return -ENOMEM;
	}
	if (a)
		pthread_mutex_unlock(&v->mu);
	r = acquire_record(v, h, off, object, mode, timeout, a != NULL);
	if (a) {
		pthread_mutex_lock(&v->mu);
		acq_end(v, a);
		if (!r && vl_find(v, off)) {
			/* cannot happen (the entry kept the others out), but
			 * never keep two holds of one record */
			free(h);
			goto again;
		}
	}
	if (r) {
		free(h);
		return r;
	}
	v->nacquired++;
	h->gen = v->nacquired;
	h->object = object;
	h->pins = 1;
	h->last_ms = lunfs_now_ms();
	h->next = v->locks;
	v->locks = h;
	*out = h;
	return 0;
}

int vl_busy(struct lunfs_vol *v, uint64_t off)
{
	return acquiring(v, off) != NULL;
}

int vl_wait_acquired(struct lunfs_vol *v, uint64_t off)
{
	struct acq *a = acquiring(v, off);
	if (!a)
		return 0;
	acq_wait(v, a);
	return 1;
}

void vl_unpin(struct lunfs_vol *v, struct held *h)
{
	VOL_HELD(v);
	h->pins--;
	h->last_ms = lunfs_now_ms();
	(void)v;
}

/* Releases h: checkpoint first (the journal rule), then drop its cache. */
int vl_release(struct lunfs_vol *v, struct held *h)
{
	VOL_HELD(v);
	int r = jnl_checkpoint(v->j);
	if (r)
		return r; /* keep holding it: its blocks are not all home yet */
	vol_cache_drop_lock(v, h->lk.off);
	r = lk_release(v->hb, &h->lk);
	struct held **pp = &v->locks;
	while (*pp != h)
		pp = &(*pp)->next;
	*pp = h->next;
	free(h);
	return r;
}

int vl_hand_over(struct lunfs_vol *v, struct held *h, uint32_t slot, uint64_t mount_gen)
{
	VOL_HELD(v);
	int r;
	/* the open's own pin only: a transaction of this host that pins it
	 * too (one that waited with v->mu dropped while the caller drained)
	 * would go on with a lock that is not ours any more */
	if (h->pins > 1)
		return -EBUSY;
	/* the journal rule, as for a release */
	if ((r = hb_ok(v->hb)) || (r = jnl_checkpoint(v->j)))
		return r;
	vol_cache_drop_lock(v, h->lk.off);
	if ((r = lk_transfer(v->hb, &h->lk, slot, mount_gen, LK_HOLD_OPEN)))
		return r;
	struct held **pp = &v->locks;
	while (*pp != h)
		pp = &(*pp)->next;
	*pp = h->next;
	free(h);
	return 0;
}

int vl_release_now(struct lunfs_vol *v, struct held *h)
{
	VOL_HELD(v);
	if (--h->pins > 0)
		return 0;
	if (hb_ok(v->hb))
		return -EFENCED;
	int e = 0, r = release_dropping(v, &h, 1, &e);
	return r ? r : e;
}

/* Releases the n holds hs (unpinned, nobody acquiring them) with v->mu
 * dropped for the device I/O: each is marked as being acquired meanwhile
 * (no thread of this host pins it, uses it for a new pin, or acquires its
 * record again before it is released), then the journal is checkpointed
 * (the journal rule: every transaction that changed a block under them was
 * sealed before, since none pins them), their cached blocks are dropped,
 * and their records released.  A hold whose checkpoint fails stays.  v->mu
 * held on entry and return.  Returns 0 or the checkpoint's -errno (the
 * holds stay); the first failed release's -errno goes to *rel_err (if not
 * NULL; that hold is gone all the same). */
static int release_dropping(struct lunfs_vol *v, struct held **hs, int n, int *rel_err)
{
	VOL_HELD(v);
	struct acq **a = calloc(n, sizeof(*a));
	int r = a ? 0 : -ENOMEM;
	for (int i = 0; i < n && !r; i++)
		if (!(a[i] = acq_start(v, hs[i]->lk.off)))
			r = -ENOMEM;
	if (!r) {
		pthread_mutex_unlock(&v->mu);
		r = jnl_checkpoint(v->j);
		pthread_mutex_lock(&v->mu);
	}
	for (int i = 0; i < n && !r; i++) {
		vol_cache_drop_lock(v, hs[i]->lk.off);
		struct held **pp = &v->locks;
		while (*pp != hs[i])
			pp = &(*pp)->next;
		*pp = hs[i]->next;
	}
	if (!r) {
		pthread_mutex_unlock(&v->mu);
		for (int i = 0; i < n; i++) {
			int e = lk_release(v->hb, &hs[i]->lk);
			if (e && rel_err && !*rel_err)
				*rel_err = e;
			free(hs[i]);
		}
		pthread_mutex_lock(&v->mu);
	}
	for (int i = 0; a && i < n && a[i]; i++)
		acq_end(v, a[i]);
	free(a);
	return r;
}

/* Releases the holds nothing pins that were idle for idle_ms, or that
 * another host wants (and that no thread of this host is acquiring or
 * releasing).  v->mu held; with drop, dropped for the device I/O
 * (release_dropping), else kept throughout. */
static void release_unpinned(struct lunfs_vol *v, uint64_t idle_ms, int drop)
{
	VOL_HELD(v);
	uint64_t now = lunfs_now_ms();
	struct held *h = v->locks, *n, **go = NULL;
	int ngo = 0, cgo = 0;
	for (; h; h = n) {
		n = h->next;
		if (h->pins || acquiring(v, h->lk.off) ||
		    (now - h->last_ms < idle_ms && !hb_wanted(v->hb, h->lk.off)))
			continue;
		if (!drop) {
			vl_release(v, h);
			continue;
		}
		if (ngo == cgo) {
			int c = cgo ? 2 * cgo : 16;
			struct held **ng = realloc(go, c * sizeof(*ng));
			if (!ng)
				break;
			go = ng;
			cgo = c;
		}
		go[ngo++] = h;
	}
	if (ngo)
		release_dropping(v, go, ngo, NULL);
	free(go);
}

/* The linger thread's round: releases holds idle for idle_ms or wanted by
 * another host, checkpoints committed changes older than idle_ms (so other
 * hosts' unlocked reads see them within about a second), and publishes this
 * host's counters in its heartbeat slot. */
static void release_idle(struct lunfs_vol *v, uint64_t idle_ms)
{
	uint64_t held = 0;
	struct held *h;
	/* the checkpoints and releases run without v->mu */
	release_unpinned(v, idle_ms, 1);
	if (jnl_pending_age_ms(v->j) >= idle_ms || jnl_room_low(v->j)) {
		pthread_mutex_unlock(&v->mu);
		jnl_checkpoint(v->j);
		pthread_mutex_lock(&v->mu);
	}
	for (h = v->locks; h; h = h->next)
		held++;
	struct dev_stats st;
	dev_get_stats(v->d, &st);
	struct hb_pub *pub = malloc(sizeof(*pub));
	if (!pub)
		return;
	*pub = (struct hb_pub){.reads = st.reads, .writes = st.writes + st.caws,
			       .locks = v->nacquired, .held = held, .has_stat = 1};
	ios_sample(v, &pub->stat);
	hb_publish(v->hb, pub);
	free(pub);
}

void *vol_linger_thread(void *arg)
{
	struct lunfs_vol *v = arg;
	pthread_mutex_lock(&v->mu);
	while (!v->stop) {
		struct timespec ts = lunfs_deadline(v->linger_ms / 2 + 1);
		pthread_cond_timedwait(&v->linger_cv, &v->mu, &ts);
		if (!v->stop && hb_ok(v->hb) == 0)
			release_idle(v, v->linger_ms);
		/* follow an online grow within a heartbeat (grow.c) */
		if (!v->stop && lunfs_now_ms() - v->grow_checked_ms >= v->sb.hb_ms)
			vol_grow_poll(v);
	}
	pthread_mutex_unlock(&v->mu);
	return NULL;
}

void vol_mu_probe(void *arg, int op)
{
	/* on every synchronous request (the data path's too): the thread id
	 * once per thread, not a system call per request */
	static __thread pid_t me;
	struct lunfs_vol *v = arg;
	if (!me)
		me = gettid();
	if (v->mu.__data.__owner != me)
		return;
	int i = op == DEV_OP_READ ? 0 : op == DEV_OP_WRITE ? 1 : op == DEV_OP_FLUSH ? 2 :
		op == DEV_OP_CAW ? 3 : 4;
	__atomic_add_fetch(&v->mu_io[i], 1, __ATOMIC_RELAXED);
	if (v->mu_trace) {
		static const char *const what[] = {"read", "write", "flush", "caw", "zero"};
		void *pc[32];
		int n = backtrace(pc, 32);
		char line[64];
		int len = snprintf(line, sizeof(line), "lunfs: device %s under v->mu:\n", what[i]);
		if (write(2, line, len) < 0 || n <= 0)
			return;
		backtrace_symbols_fd(pc + 1, n - 1, 2);
	}
}

/* ---- transactions ---- */

int vol_check_writable(struct lunfs_vol *v)
{
	if (v->ro)
		return -EROFS;
	return hb_ok(v->hb);
}

/* Has tx changed nothing yet, so that it may still start over? */
static int tx_can_restart(const struct txn *tx)
{
	return tx->restartable && !tx->ndirty && !tx->nlate && !tx->preflush;
}

/* Adds h (pinned for tx) to tx's pins. */
static int tx_pin_add(struct txn *tx, struct held *h)
{
	if (tx->npinned == tx->cpinned) {
		int c = tx->cpinned ? 2 * tx->cpinned : 16;
		struct held **np = realloc(tx->pinned, c * sizeof(*np));
		if (!np)
			return -ENOMEM;
		tx->pinned = np;
		tx->cpinned = c;
	}
	tx->pinned[tx->npinned++] = h;
	return 0;
}

void tx_begin(struct lunfs_vol *v, struct txn *tx)
{
	memset(tx, 0, sizeof(*tx));
	tx->v = v;
	pthread_mutex_lock(&v->mu);
}

void tx_begin_restartable(struct lunfs_vol *v, struct txn *tx)
{
	tx_begin(v, tx);
	tx->restartable = 1;
}

static void buf_list_free(struct buf *b)
{
	while (b) {
		struct buf *n = b->next;
		buf_free(b);
		b = n;
	}
}

#define TX_MAX_RESTARTS 16 /* then the operation waits under v->mu */

/* Reads the block n names without v->mu; then, under it, caches it if the
 * lock it was read under is still the same hold (gen) and nothing left
 * the cache meanwhile (epoch: a block dropped after a failed transaction
 * may have had a newer image than the one read), else throws it away;
 * a block read without its lock goes to *pre.  Returns 0 or -errno. */
static int tx_fetch(struct txn *tx, const struct tx_need *n, struct buf **pre)
{
	struct lunfs_vol *v = tx->v;
	struct held *h = n->lock ? vl_find(v, n->lock) : NULL;
	uint64_t gen = h ? h->gen : 0, epoch = v->cache_epoch;
	struct buf *b = buf_new(n->addr, h ? n->lock : 0);
	if (!b)
		return -ENOMEM;
	pthread_mutex_unlock(&v->mu);
	int r = v->j && jnl_pending_copy(v->j, n->addr, b->data) ? 0 :
		dev_read(v->d, n->addr, b->data, BS);
	pthread_mutex_lock(&v->mu);
	if (r) {
		buf_free(b);
		return r;
	}
	if (!h) {
		b->next = *pre;
		*pre = b;
		return 0;
	}
	h = vl_find(v, n->lock);
	if (h && h->gen == gen && v->cache_epoch == epoch && !cache_find(v, n->addr)) {
		b->next = v->bh[bucket(n->addr)];
		v->bh[bucket(n->addr)] = b;
	} else {
		buf_free(b);
	}
	return 0;
}

int tx_retry(struct txn *tx, int *r)
{
	/* a request counts even where a callee turned it into another error */
	if (!tx->need.kind)
		return 0;
	struct lunfs_vol *v = tx->v;
	VOL_HELD(v);
	struct tx_need n = tx->need;
	int restarts = tx->nrestarts + 1;
	/* what this run read without a lock, the next one reads again */
	struct buf *pre = tx->pre;
	while (tx->transient) {
		struct buf *b = tx->transient;
		tx->transient = b->next;
		b->next = pre;
		pre = b;
	}
	tx->pre = NULL;
	/* Its pins go (normally nothing is dirty; after a request a callee
	 * ignored, what it changed leaves the cache).  The holds linger: the
	 * next run pins them again in its own order, so no run ever waits
	 * for a lock while pinning one that comes after it; a hold lost
	 * meanwhile (another host wanted it, a handoff) is asked for again. */
	tx_end(tx, tx->ndirty ? -ERESTART_TX : 0);
	int grow_polled = tx->grow_polled || n.kind == NEED_GROW;
	tx_begin(v, tx);
	tx->restartable = restarts < TX_MAX_RESTARTS;
	tx->nrestarts = restarts;
	tx->grow_polled = grow_polled;
	int e = 0;
	if (n.kind == NEED_READ) {
		e = tx_fetch(tx, &n, &pre);
	} else if (n.kind == NEED_GROW) {
		vol_grow_poll(v); /* the superblock read without v->mu */
	} else if (n.kind == NEED_AGAIN) {
		/* what it waited for is over: run again */
	} else {
		struct held *h;
		if (!(e = vl_get(v, n.off, n.object, n.mode, 1, &h))) {
			unsigned fl = our_flags(v, h);
			if (n.kind == NEED_OPEN_FLAG && !(fl & LK_HOLD_OPEN))
				e = upgrade_dropping(v, h, n.object, h->lk.mode, fl | LK_HOLD_OPEN);
			vl_unpin(v, h);
		}
	}
	tx->pre = pre;
	if (e) {
		*r = e;
		tx->failed_need = n.kind;
		return 0;
	}
	return 1;
}

/* Would vl_get give us h (the hold of off, or NULL) in mode at once? */
static int vl_ready(struct lunfs_vol *v, struct held *h, uint64_t off, int mode)
{
	return h && mode_covers(h->lk.mode, mode) && !acquiring(v, off) &&
	       (h->pins || !hb_wanted(v->hb, off));
}

int tx_grow_check(struct txn *tx, int enospc)
{
	if (tx->grow_polled && enospc)
		return 0; /* read earlier in this operation: a grow since is concurrent */
	if (!tx->grow_polled && tx_can_restart(tx)) {
		tx->need = (struct tx_need){.kind = NEED_GROW};
		return -ERESTART_TX;
	}
	return vol_grow_check(tx->v);
}

int tx_want_lock(struct txn *tx, uint64_t off, uint64_t object, int mode)
{
	if (tx->v->ro || !tx_can_restart(tx) || vl_ready(tx->v, vl_find(tx->v, off), off, mode))
		return 0;
	tx->need = (struct tx_need){.kind = NEED_LOCK, .off = off, .object = object, .mode = mode};
	return -ERESTART_TX;
}

int tx_want_open_flag(struct txn *tx, uint64_t off, uint64_t object)
{
	struct lunfs_vol *v = tx->v;
	struct held *h = vl_find(v, off);
	if (v->ro || !tx_can_restart(tx) || !h || (our_flags(v, h) & LK_HOLD_OPEN))
		return 0;
	tx->need = (struct tx_need){.kind = NEED_OPEN_FLAG, .off = off, .object = object,
				    .mode = h->lk.mode};
	return -ERESTART_TX;
}

int tx_lock(struct txn *tx, uint64_t off, uint64_t object, int mode)
{
	struct held *h;
	if (tx->v->ro)
		return mode == LK_EXCLUSIVE ? -EROFS : 0;
	/* already pinned by this operation in a mode that covers it? */
	h = vl_find(tx->v, off);
	if (h && (h->lk.mode == mode || h->lk.mode == LK_EXCLUSIVE))
		for (int i = 0; i < tx->npinned; i++)
			if (tx->pinned[i] == h)
				return 0;
	/* acquired (or waited for) by tx_retry, without v->mu */
	int r = tx_want_lock(tx, off, object, mode);
	if (r)
		return r;
	/* nothing read or changed under a lock yet: its wait may drop v->mu */
	int may_drop = !tx->npinned && !tx->ndirty && !tx->draining && !tx->transient;
	if ((r = vl_get(tx->v, off, object, mode, may_drop, &h)))
		return r;
	for (int i = 0; i < tx->npinned; i++)
		if (tx->pinned[i] == h) {
			vl_unpin(tx->v, h); /* upgraded in place: keep one pin */
			return 0;
		}
	if ((r = tx_pin_add(tx, h)))
		vl_unpin(tx->v, h);
	return r;
}

int tx_read(struct txn *tx, uint64_t addr, uint64_t lock, struct buf **out)
{
	struct lunfs_vol *v = tx->v;
	int locked = lock && vl_find(v, lock);
	struct buf *b = locked ? cache_find(v, addr) : NULL;
	if (b) {
		*out = b;
		return 0;
	}
	if (!locked) {
		/* read by an earlier run of this restartable transaction */
		for (struct buf **pp = &tx->pre; *pp; pp = &(*pp)->next) {
			if ((*pp)->addr == addr) {
				b = *pp;
				*pp = b->next;
				b->next = tx->transient;
				tx->transient = b;
				*out = b;
				return 0;
			}
		}
	}
	if (tx_can_restart(tx)) {
		/* read by tx_retry, without v->mu */
		tx->need = (struct tx_need){.kind = NEED_READ, .addr = addr,
					    .lock = locked ? lock : 0};
		return -ERESTART_TX;
	}
	b = buf_new(addr, locked ? lock : 0);
	if (!b)
		return -ENOMEM;
	/* A block committed but not yet checkpointed has a stale home: a
	 * failed transaction dropped it from the cache (the cache must equal
	 * what is committed, not what the home holds). */
	int r = v->j && jnl_pending_copy(v->j, addr, b->data) ? 0 : dev_read(v->d, addr, b->data, BS);
	if (r) {
		buf_free(b);
		return r;
	}
	if (locked) {
		b->next = v->bh[bucket(addr)];
		v->bh[bucket(addr)] = b;
	} else {
		b->next = tx->transient;
		tx->transient = b;
	}
	*out = b;
	return 0;
}

int tx_new(struct txn *tx, uint64_t addr, uint64_t lock, struct buf **out)
{
	struct lunfs_vol *v = tx->v;
	struct buf *b = cache_find(v, addr);
	if (!b) {
		b = buf_new(addr, lock);
		if (!b)
			return -ENOMEM;
		b->next = v->bh[bucket(addr)];
		v->bh[bucket(addr)] = b;
	}
	b->lock = lock;
	memset(b->data, 0, BS);
	*out = b;
	return 0;
}

int tx_dirty(struct txn *tx, struct buf *b)
{
	if (!b->lock)
		return -EINVAL; /* never write what we do not hold the lock of */
	for (int i = 0; i < tx->ndirty; i++)
		if (tx->dirty[i] == b)
			return 0;
	if (tx->ndirty == TX_MAX)
		return -E2BIG;
	b->txrefs++;
	tx->dirty[tx->ndirty++] = b;
	return 0;
}

/* Empties tx's dirty list; with drop, its blocks leave the cache first (a
 * failure: the cache must equal what is committed, and a re-read finds the
 * journal's pending image, else the home).  Before a drop, every sealed
 * transaction still in flight is waited for: until its images are pending
 * in the journal, the cache holds their only copy, and a block dropped now
 * and read again would lose them.  v->mu held. */
static void tx_clear_dirty(struct txn *tx, int drop)
{
	struct lunfs_vol *v = tx->v;
	VOL_HELD(v);
	if (drop && tx->ndirty) {
		if (v->j)
			jnl_wait_written(v->j);
		for (int i = 0; i < tx->ndirty; i++)
			cache_drop(v, tx->dirty[i]->addr);
		of_invalidate(v, 0);
	}
	for (int i = 0; i < tx->ndirty; i++) {
		struct buf *b = tx->dirty[i];
		if (--b->txrefs == 0 && b->dropped)
			buf_free(b);
	}
	tx->ndirty = 0;
}

static void late_free(struct txn *tx)
{
	free(tx->late);
	tx->late = NULL;
	tx->nlate = 0;
}

int tx_zero_at_commit(struct txn *tx, uint64_t off, uint64_t len)
{
	if (!len)
		return 0;
	if ((off + len) % dev_lbs(tx->v->d))
		return -EINVAL;
	struct late *nl = realloc(tx->late, (tx->nlate + 1) * sizeof(*nl));
	if (!nl)
		return -ENOMEM;
	tx->late = nl;
	tx->late[tx->nlate++] = (struct late){off, len};
	return 0;
}

/* Zeroes the sector off falls in from off to its end: read, cut, written
 * back. */
static int late_zero_sector(struct lunfs_vol *v, uint64_t off)
{
	uint32_t a = dev_lbs(v->d);
	uint64_t s = off / a * a;
	uint8_t *sec = dev_alloc(a);
	int r;
	if (!sec)
		return -ENOMEM;
	if ((r = dev_read(v->d, s, sec, a)))
		goto out;
	memset(sec + off % a, 0, a - off % a);
	r = dev_write(v->d, s, sec, a);
out:
	free(sec);
	return r;
}

/* Zeroes [off, off + len), the end on a logical block boundary: the sector
 * the start falls in is read, cut and written back; the rest is zeroed. */
static int late_zero(struct lunfs_vol *v, uint64_t off, uint64_t len)
{
	uint32_t a = dev_lbs(v->d);
	uint64_t end = off + len;
	int r;
	if (off % a) {
		if ((r = late_zero_sector(v, off)))
			return r;
		off = off / a * a + a;
	}
	if (off >= end)
		return 0;
	return dev_zero(v->d, off, end - off);
}


/* The second phase of a commit: the journal write of jt (sealed from the
 * blocks at addrs; NULL: nothing to write), with v->mu held (held) or not.
 * If it fails, the journal is broken and the host fenced (jnl_txn_write),
 * and what the commit changed is forgotten, after the transactions sealed
 * after it failed too (tx_clear_dirty says why).  Returns 0 or -errno. */
static int tx_write(struct lunfs_vol *v, struct jnl_txn *jt, const uint64_t *addrs, int n, int held)
{
	int r = jt ? jnl_txn_write(jt) : 0;
	if (!r)
		return 0;
	if (!held)
		pthread_mutex_lock(&v->mu);
	jnl_wait_written(v->j);
	for (int i = 0; i < n; i++)
		cache_drop(v, addrs[i]);
	of_invalidate(v, 0);
	if (!held)
		pthread_mutex_unlock(&v->mu);
	return r;
}

/* Seals tx's dirty blocks as one journal transaction (*out, NULL when
 * there is nothing to commit) and records their addresses in addrs (for
 * tx_write if the write fails): the first phase of a commit, under v->mu.
 * On failure the dirty blocks are forgotten at once.  Returns 0 or -errno. */
static int tx_seal(struct txn *tx, struct jnl_txn **out, uint64_t *addrs, int *naddrs)
{
	VOL_HELD(tx->v);
	struct lunfs_vol *v = tx->v;
	struct jnl_txn *jt = NULL;
	int r;
	*out = NULL;
	*naddrs = 0;
	if (!tx->ndirty)
		return 0;
	if ((r = vol_check_writable(v)) || (r = jnl_txn_begin(v->j, &jt)))
		goto fail;
	for (int i = 0; i < tx->ndirty; i++)
		if ((r = jnl_txn_add(jt, tx->dirty[i]->addr, tx->dirty[i]->data)))
			goto fail;
	/* the data that goes with this transaction: after any checkpoint the
	 * journal needs (it flushes), before the journal write */
	if (tx->nlate && (r = jnl_txn_make_room(jt)))
		goto fail;
	for (int i = 0; i < tx->nlate; i++)
		if ((r = late_zero(v, tx->late[i].off, tx->late[i].len)))
			goto fail;
	late_free(tx);
	if ((r = jnl_txn_seal(jt)))
		goto fail;
	/* half the log live: the linger thread checkpoints now, without
	 * v->mu, so that no seal has to under it */
	if (jnl_room_low(v->j))
		pthread_cond_signal(&v->linger_cv);
	/* data a new pointer exposes must be on disk before the pointer: the
	 * journal write flushes first */
	if (tx->preflush)
		jnl_txn_preflush(jt);
	tx->preflush = 0;
	for (int i = 0; i < tx->ndirty; i++)
		addrs[i] = tx->dirty[i]->addr;
	*naddrs = tx->ndirty;
	tx_clear_dirty(tx, 0);
	*out = jt;
	return 0;
fail:
	jnl_txn_abort(jt);
	late_free(tx);
	tx_clear_dirty(tx, 1);
	return r;
}

void tx_park(struct lunfs_vol *v)
{
	VOL_HELD(v);
	v->tx_parked++;
}

void tx_unpark(struct lunfs_vol *v)
{
	VOL_HELD(v);
	if (--v->tx_parked == 0)
		pthread_cond_broadcast(&v->gw_cv);
}

/* v->data_io and v->draining are atomic (sequentially consistent): the
 * fast path registers without v->mu (io_enter_fast: data_io, then
 * draining) while a free announces itself (tx_drain: draining, then
 * data_io), so at least one of the two sees the other.  draining changes
 * under v->mu only; the wait for data_io to reach 0 is on io_cv under
 * v->mu, and the io_exit that brings it there takes v->mu to wake it. */
int io_enter(struct lunfs_vol *v)
{
	VOL_HELD(v);
	if (__atomic_load_n(&v->draining, __ATOMIC_SEQ_CST)) {
		while (__atomic_load_n(&v->draining, __ATOMIC_SEQ_CST))
			pthread_cond_wait(&v->io_cv, &v->mu);
		return -EAGAIN;
	}
	__atomic_add_fetch(&v->data_io, 1, __ATOMIC_SEQ_CST);
	return 0;
}

int io_enter_fast(struct lunfs_vol *v)
{
	__atomic_add_fetch(&v->data_io, 1, __ATOMIC_SEQ_CST);
	if (!__atomic_load_n(&v->draining, __ATOMIC_SEQ_CST))
		return 0;
	io_exit(v);
	return -EAGAIN;
}

void io_exit(struct lunfs_vol *v)
{
	io_exit_n(v, 1);
}

void io_exit_n(struct lunfs_vol *v, unsigned n)
{
	if (!n)
		return;
	if (__atomic_sub_fetch(&v->data_io, n, __ATOMIC_SEQ_CST) == 0 &&
	    __atomic_load_n(&v->draining, __ATOMIC_SEQ_CST)) {
		/* a transaction freeing blocks waits for the last one */
		pthread_mutex_lock(&v->mu);
		pthread_cond_broadcast(&v->io_cv);
		pthread_mutex_unlock(&v->mu);
	}
}

void tx_drain(struct txn *tx)
{
	VOL_HELD(tx->v);
	struct lunfs_vol *v = tx->v;
	if (!tx->draining) {
		tx->draining = 1;
		__atomic_add_fetch(&v->draining, 1, __ATOMIC_SEQ_CST);
	}
	/* Once no data I/O was registered under our drain, none can be: a
	 * registration after that sees draining and leaves at once (the
	 * count it raised for that moment is no I/O).  So a later free of
	 * this transaction does not wait, and never parks half-done. */
	if (tx->drained)
		return;
	while (__atomic_load_n(&v->data_io, __ATOMIC_SEQ_CST)) {
		tx_park(v);
		pthread_cond_wait(&v->io_cv, &v->mu);
		tx_unpark(v);
	}
	tx->drained = 1;
}

void tx_undrain(struct txn *tx)
{
	struct lunfs_vol *v = tx->v;
	tx->drained = 0;
	if (tx->draining) {
		tx->draining = 0;
		if (__atomic_sub_fetch(&v->draining, 1, __ATOMIC_SEQ_CST) == 0)
			pthread_cond_broadcast(&v->io_cv);
	}
}

void tx_end(struct txn *tx, int r)
{
	struct lunfs_vol *v = tx->v;
	tx_undrain(tx);
	if (tx->owns) {
		/* by number: a last close may have freed the open file */
		struct ofile *of = of_find(v, tx->owns_ino);
		if (of && of->stepping) {
			of->stepping = 0;
			pthread_cond_broadcast(&v->gw_cv);
		}
		acq_end(v, tx->owns);
		tx->owns = NULL;
	}
	tx_clear_dirty(tx, r != 0);
	buf_list_free(tx->transient);
	tx->transient = NULL;
	buf_list_free(tx->pre);
	tx->pre = NULL;
	late_free(tx); /* never committed: the data stays as it was */
	for (int i = 0; i < tx->npinned; i++)
		vl_unpin(v, tx->pinned[i]);
	free(tx->pinned);
	tx->pinned = NULL;
	tx->npinned = tx->cpinned = 0;
	pthread_mutex_unlock(&v->mu);
}

int tx_seal_only(struct txn *tx, struct tx_sealed *sd)
{
	sd->jt = NULL;
	sd->n = 0;
	if (tx->need.kind)
		return -ERESTART_TX;
	tx_no_restart(tx);
	return tx_seal(tx, &sd->jt, sd->addrs, &sd->n);
}

int tx_write_sealed(struct lunfs_vol *v, struct tx_sealed *sd)
{
	int r = tx_write(v, sd->jt, sd->addrs, sd->n, 0);
	sd->jt = NULL;
	return r;
}

int tx_flush_unlocked(struct txn *tx)
{
	struct lunfs_vol *v = tx->v;
	struct tx_sealed sd;
	int r = tx_seal_only(tx, &sd);
	if (r || !sd.jt)
		return r;
	pthread_mutex_unlock(&v->mu);
	r = tx_write_sealed(v, &sd);
	pthread_mutex_lock(&v->mu);
	return r;
}

void tx_own(struct txn *tx, uint64_t ino)
{
	struct lunfs_vol *v = tx->v;
	VOL_HELD(v);
	uint64_t lock = geom_ino_lock(&v->sb, ino);
	if (tx->owns || acquiring(v, lock) || !(tx->owns = acq_start(v, lock)))
		return;
	tx->owns_ino = ino;
}

/* A step of a long operation (a truncate, punch, delete or preallocation
 * of many blocks) on inode ino, which goes on from what the step
 * committed.  Under v->mu the dirty blocks are sealed and the drain ends:
 * every pointer the step removed is out of the cache (the caller stored
 * its copies), so data I/O that looks its blocks up from here on finds
 * them free, and the next free drains again.  The journal write runs
 * without v->mu; this host's other operations and its data I/O go on.
 * From the first step to the end of tx, ino is the caller's alone on this
 * host (its copy of the inode lives across steps, and across the drain of
 * its next free, which waits with v->mu dropped too):
 *   - the inode's lock record is marked as being acquired (tx->owns): no
 *     other operation of this host pins it anew (they wait for the entry),
 *     so none changes the inode, its pointers or its size;
 *   - its open file, if any, is stepping (tx->owns_ino): no write into a
 *     hole registers and no eager fallocate maps blocks (they change the
 *     inode under the open's pin, which the entry does not stop).
 * The caller keeps no block of the cache across a step (it reads them
 * again).  No transaction counts as parked meanwhile (the caller has
 * nothing dirty): writes into holes of other files go on.  Returns with
 * v->mu held; 0 or -errno (the write failed: the journal is broken and
 * the host fenced). */
int tx_step(struct txn *tx, uint64_t ino)
{
	struct lunfs_vol *v = tx->v;
	VOL_HELD(v);
	struct tx_sealed sd;
	int r = tx_seal_only(tx, &sd); /* what it commits stays: no restart */
	if (r || !sd.jt)
		return r;
	tx_undrain(tx);
	tx_own(tx, ino);
	if (!tx->owns) /* no memory for the mark: the write stays under v->mu */
		return tx_write(v, sd.jt, sd.addrs, sd.n, 1);
	struct ofile *of = of_find(v, ino);
	if (of)
		of->stepping = 1;
	pthread_mutex_unlock(&v->mu);
	r = tx_write_sealed(v, &sd);
	pthread_mutex_lock(&v->mu);
	return r;
}

int tx_commit(struct txn *tx)
{
	struct lunfs_vol *v = tx->v;
	struct tx_sealed sd;
	sd.jt = NULL;
	sd.n = 0;
	int r = tx_seal(tx, &sd.jt, sd.addrs, &sd.n);
	tx_end(tx, r);
	/* The journal write runs without v->mu: this host's other operations
	 * and its data I/O go on meanwhile, and may build on what this
	 * transaction changed (the journal writes in sealed order and fails
	 * everything after a failed write).  Our locks may be released
	 * meanwhile only through a checkpoint, which waits for this write. */
	if (r)
		return r;
	return tx_write_sealed(v, &sd);
}

int op_finish(struct txn *tx, int r)
{
	if (r) {
		tx_end(tx, r);
		return r;
	}
	return tx_commit(tx);
}

int ino_check(struct lunfs_vol *v, uint64_t ino)
{
	return ino == 0 || ino >= geom_ninodes(&v->sb) ? -ENOENT : 0;
}

int vol_jtarget_ok(void *arg, uint64_t t)
{
	return geom_is_journaled(arg, t);
}

/* vol_purge_locks on the volume lock record (vl: its buffer). */
static int purge_vlock(struct lunfs_vol *v, uint8_t *vl, uint32_t slot, uint64_t below)
{
	const struct lunfs_sb *s = &v->sb;
	int r = dev_read(v->d, s->vlock_off, vl, dev_lbs(v->d));
	if (r)
		return r;
	return lk_purge(v->hb, s->vlock_off, vl, slot, below);
}

/* After a crash (ours, or a peer's we recovered), the locks the dead mounts
 * of slot held still name them.  They are void (the slot is FREE or carries
 * a newer mount generation), but leaving them would keep stale records
 * around until someone needs each lock: clear every holder (slot, gen <
 * below).  The tables are contiguous, so this is a few large reads. */
int vol_purge_locks(struct lunfs_vol *v, uint32_t slot, uint64_t below)
{
	const struct lunfs_sb *s = &v->sb;
	struct {
		uint64_t off, n;
	} tab[] = {
		{s->fc_off, s->fc_count},
		{s->mc_off, s->mc_count},
		{s->ig_off, s->ig_count},
		{s->ino_off, geom_ninodes(s)},
	};
	const uint64_t per = 256; /* entries per read */
	uint8_t *buf = dev_alloc(per * TBL_ENTRY);
	uint64_t cleared = 0;
	int r = 0;
	if (!buf)
		return -ENOMEM;
	uint8_t *vl = dev_alloc(LUNFS_SLOT_STRIDE);
	if (vl)
		r = purge_vlock(v, vl, slot, below);
	free(vl);
	r = r < 0 ? r : 0;
	for (size_t t = 0; t < sizeof(tab) / sizeof(tab[0]) && !r; t++) {
		for (uint64_t i = 0; i < tab[t].n && !r; i += per) {
			uint64_t n = tab[t].n - i < per ? tab[t].n - i : per;
			if ((r = dev_read(v->d, tab[t].off + i * TBL_ENTRY, buf, n * TBL_ENTRY)))
				break;
			for (uint64_t k = 0; k < n && r >= 0; k++) {
				uint8_t *rec = buf + k * TBL_ENTRY;
				if (lunfs_is_zero(rec, LUNFS_REC_SIZE))
					continue;
				r = lk_purge(v->hb, tab[t].off + (i + k) * TBL_ENTRY, rec, slot,
					     below);
				cleared += r > 0;
				if (r == -EFSCORRUPTED)
					r = 0; /* fsck's business, not the mount's */
			}
			r = r < 0 ? r : 0;
		}
	}
	if (cleared)
		lunfs_log(LOG_NOTICE, "lunfs: cleared %llu lock(s) of dead mounts of slot %u",
			  (unsigned long long)cleared, slot);
	free(buf);
	return r;
}

int lunfs_fenced(struct lunfs_vol *v)
{
	return v->ro ? 0 : hb_ok(v->hb) ? -EFENCED : 0;
}
