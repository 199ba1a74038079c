/* Heartbeat slots: claim, renewal thread, self-fencing, peer liveness.
 * See docs/LOCKING.md for the protocol and the lease arithmetic. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>
#include <xxhash.h>
#include "lock/lk.h"
#include "util/clock.h"
#include "util/log.h"

struct peer_obs {
	uint64_t mount_gen, counter, since_ms;
	int valid;
};

struct hb_host {
	struct dev *d;
	struct lk_params p;
	struct hb_ident id;
	uint32_t slot, lbs;
	uint64_t mount_gen;
	pthread_mutex_t mu;          /* protects everything below */
	pthread_cond_t cv;
	pthread_cond_t idle_cv;      /* signalled when a renewal's CAW is done */
	int renewing;                /* a renewal's CAW is in flight (mu dropped) */
	uint8_t *img;                /* our slot as last written (lbs bytes) */
	struct lunfs_hb hb;          /* decoded img */
	/* Read by the write guard without mu (it runs under callers' locks). */
	_Atomic uint64_t last_ok_submit_ms; /* when the last successful renewal was submitted */
	_Atomic int64_t skew_ms;     /* test hook: added to our clock (hb_test_clock_jump) */
	_Atomic int preempted;       /* the device said our PR registration is gone */
	const char *_Atomic fence_why; /* why we fenced (NULL while we are not) */
	int stop, paused, renew_now;
	pthread_t thr;
	struct peer_obs *peers;      /* max_hosts entries */
	struct lunfs_hb *snap;       /* every slot as the last scan read it */
	uint8_t *damaged;            /* per slot: it did not decode at the last scan */
	int snap_valid, any_want;    /* any_want: some other slot shows a want */
	uint8_t *region;             /* buffer for the scan: max_hosts * stride */
	struct hb_pub pub;           /* what the next renewal publishes */
	int pub_fresh;               /* pub was set since the last renewal took it */
	struct lunfs_hbstat stat_last; /* statistics as last written (gen, mono_ms 0) */
	int stat_idle;               /* ... twice the same: no more writes until a change */
	uint64_t want_off;           /* ... and the lock we wait for (hb_set_want) */
	uint8_t *rimg;               /* a slot we recover: its REPLAYING image */
	uint64_t prev_pr_key;        /* claim of our own crashed slot: its old PR key */
	uint32_t rslot;
};

static uint64_t wall_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + ts.tv_nsec;
}

const char *hb_state_name(int s)
{
	return s == HB_FREE ? "free" : s == HB_LIVE ? "live" : s == HB_REPLAYING ? "replaying"
	       : s == HB_EXCLUSIVE ? "exclusive" : "?";
}

struct lk_params lk_params_of(const struct lunfs_sb *s)
{
	struct lk_params p = {.hb_off = s->hb_off, .max_hosts = s->max_hosts, .lease_ms = s->lease_ms,
			      .hb_ms = s->hb_ms, .fence_margin_ms = s->fence_margin_ms,
			      .jnl_off = s->jnl_off, .jnl_size = s->jnl_size};
	memcpy(p.uuid, s->uuid, 16);
	return p;
}

static uint64_t slot_off(const struct lk_params *p, uint32_t s)
{
	return p->hb_off + (uint64_t)s * LUNFS_SLOT_STRIDE;
}

/* Advances nb (counter, generation, wall clock) and encodes it for slot s
 * into img. */
static void stamp(struct hb_host *h, uint32_t s, struct lunfs_hb *nb, uint8_t *img)
{
	nb->counter++;
	nb->gen++;
	nb->wall_ns = wall_ns();
	lunfs_hb_encode(nb, h->p.uuid, slot_off(&h->p, s), img);
}

int hb_read(struct dev *d, const struct lk_params *p, uint32_t s, struct lunfs_hb *hb)
{
	uint32_t lbs = dev_lbs(d);
	if (s >= p->max_hosts)
		return -EINVAL;
	uint8_t *buf = dev_alloc(lbs);
	if (!buf)
		return -ENOMEM;
	int r = dev_read(d, slot_off(p, s), buf, lbs);
	if (r)
		goto out;
	r = lunfs_hb_decode(buf, p->uuid, slot_off(p, s), hb, NULL);
out:
	free(buf);
	return r;
}

/* Lock-free: the write guard fences from under any caller's lock. */
static void fence(struct hb_host *h, const char *why)
{
	const char *none = NULL;
	if (atomic_compare_exchange_strong(&h->fence_why, &none, why))
		lunfs_log(LOG_ERR, "lunfs: host %s (slot %u): %s: fenced, no more writes",
			  h->id.name, h->slot, why);
}

void hb_fence_self(struct hb_host *h, const char *why)
{
	fence(h, why);
}

static int is_fenced(struct hb_host *h)
{
	return h->fence_why != NULL;
}

const char *hb_fence_reason(struct hb_host *h)
{
	return h->fence_why;
}

/* Our clock: the lease clock plus the test hook's jump. */
static uint64_t host_now(struct hb_host *h)
{
	return lunfs_now_ms() + h->skew_ms;
}

void hb_test_clock_jump(struct hb_host *h, int64_t ms)
{
	h->skew_ms += ms;
}

/* Lease arithmetic: a peer declares us dead after watching our counter stand
 * still for lease_ms on its own clock.  Its watch starts no earlier than our
 * last successful renewal landed, which is after we submitted it.  So if we
 * stop writing by submit + lease - margin on our clock, we stop before any
 * peer can have decided we are dead, with margin to spare for clock-rate
 * differences and the time a write spends in flight. */
static int lease_expired(struct hb_host *h, uint64_t now)
{
	uint64_t last = h->last_ok_submit_ms;
	return now < last || now - last > h->p.lease_ms - h->p.fence_margin_ms;
}

/* dev_set_fence_hook: may run with h->mu held (a CAW of ours): only flag */
static void dev_preempted(void *arg)
{
	struct hb_host *h = arg;
	h->preempted = 1;
}

/* The write guard (dev_set_guard), also hb_ok(): never blocks, takes no
 * lock, so the device layer can run it right before each submission. */
static int guard(void *arg)
{
	struct hb_host *h = arg;
	if (!is_fenced(h) && h->preempted)
		fence(h, "the target refuses our writes (persistent reservation preempted)");
	if (!is_fenced(h) && lease_expired(h, host_now(h)))
		fence(h, "last heartbeat renewal is older than the lease");
	return is_fenced(h) ? -EFENCED : 0;
}

int hb_ok(struct hb_host *h)
{
	return guard(h);
}

/* Records an observation of slot s (mu held).  Returns PEER_ALIVE or
 * PEER_DEAD for a LIVE or REPLAYING slot: DEAD once its counter stood still
 * for a whole lease on our clock. */
static int observe(struct hb_host *h, uint32_t s, const struct lunfs_hb *hb, uint64_t now)
{
	struct peer_obs *o = &h->peers[s];
	if (!o->valid || o->mount_gen != hb->mount_gen || o->counter != hb->counter) {
		*o = (struct peer_obs){hb->mount_gen, hb->counter, now, 1};
		return PEER_ALIVE;
	}
	return now - o->since_ms >= h->p.lease_ms ? PEER_DEAD : PEER_ALIVE;
}

/* A slot that does not decode may still be a live host's (a damaged sector,
 * a stray write): it is never taken for FREE.  It is watched like a live
 * slot, with a hash of its raw bytes standing for the counter, and recovered
 * (by its index: the journal is at a fixed place) once those bytes stood
 * still for a whole lease.  Fills *hb with that stand-in (state LIVE, slot s,
 * mount_gen DAMAGED_GEN) and returns 1 for such a slot, else decodes and
 * returns 0. */
#define DAMAGED_GEN UINT64_MAX
static int decode_or_damaged(struct hb_host *h, const uint8_t *raw, uint32_t s, struct lunfs_hb *hb)
{
	if (!lunfs_hb_decode(raw, h->p.uuid, slot_off(&h->p, s), hb, NULL))
		return 0;
	memset(hb, 0, sizeof(*hb));
	hb->state = HB_LIVE;
	hb->slot = s;
	hb->mount_gen = DAMAGED_GEN;
	hb->counter = XXH3_64bits(raw, h->lbs);
	snprintf(hb->host_name, sizeof(hb->host_name), "(damaged slot %u)", s);
	return 1;
}

/* The mount generation a recovered damaged slot is freed with: above any a
 * real mount of it can have had (generations count mounts), so the next
 * claim's generation is new and every hold naming the slot is GONE. */
static uint64_t damaged_free_gen(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec << 16;
}

/* Reads the whole heartbeat region (one I/O) and observes every slot, so
 * that each peer's watch runs continuously.  Called with h->mu held; drops
 * it around the I/O. */
static void scan(struct hb_host *h)
{
	size_t stride = LUNFS_SLOT_STRIDE;
	pthread_mutex_unlock(&h->mu);
	int r = dev_read(h->d, h->p.hb_off, h->region, (size_t)h->p.max_hosts * stride);
	pthread_mutex_lock(&h->mu);
	if (r) {
		h->snap_valid = 0;
		return;
	}
	uint64_t now = lunfs_now_ms();
	int want = 0;
	for (uint32_t s = 0; s < h->p.max_hosts; s++) {
		struct lunfs_hb hb;
		h->damaged[s] = decode_or_damaged(h, h->region + s * stride, s, &hb);
		h->snap[s] = hb;
		if ((hb.state != HB_FREE || h->damaged[s]) && s != h->slot)
			observe(h, s, &hb, now);
		want |= s != h->slot && hb.state == HB_LIVE && hb.want_off;
	}
	h->snap_valid = 1;
	h->any_want = want;
}

/* The statistics of the renewal that writes nb (h->mu held).  A logical
 * block that covers them takes them into the CAW image nimg; else returns
 * them encoded for a plain write after the CAW (NULL: nothing to write, as
 * when they were written twice unchanged: an idle host writes nothing). */
static uint8_t *stat_take(struct hb_host *h, const struct lunfs_hb *nb, uint8_t *nimg)
{
	if (!h->pub.has_stat)
		return NULL;
	struct lunfs_hbstat st = h->pub.stat;
	h->pub_fresh = 0;
	st.gen = st.mono_ms = 0;
	st.mount_gen = nb->mount_gen;
	int same = !memcmp(&st, &h->stat_last, sizeof(st));
	int embed = h->lbs >= LUNFS_SLOT_STRIDE;
	if (same && h->stat_idle && !embed)
		return NULL;
	h->stat_idle = same;
	h->stat_last = st;
	st.gen = nb->counter;
	st.mono_ms = h->pub.stat.mono_ms;
	uint64_t self = slot_off(&h->p, h->slot) + LUNFS_HBSTAT_OFF;
	if (embed) {
		lunfs_hbstat_encode(&st, h->p.uuid, self, h->slot, nimg + LUNFS_HBSTAT_OFF);
		return NULL;
	}
	uint8_t *buf = dev_alloc(LUNFS_HBSTAT_SIZE);
	if (buf)
		lunfs_hbstat_encode(&st, h->p.uuid, self, h->slot, buf);
	return buf;
}

/* One renewal.  Called with h->mu held; drops it around the I/O. */
static void renew(struct hb_host *h)
{
	struct lunfs_hb nb = h->hb;
	uint8_t *nimg = dev_alloc(h->lbs), *cur = dev_alloc(h->lbs);
	if (!nimg || !cur)
		goto out;
	nb.want_off = h->want_off;
	nb.st_reads = h->pub.reads;
	nb.st_writes = h->pub.writes;
	nb.st_locks = h->pub.locks;
	nb.st_held = h->pub.held;
	stamp(h, h->slot, &nb, nimg);
	uint8_t *sbuf = stat_take(h, &nb, nimg);
	uint8_t *old = h->img;
	uint64_t t0 = host_now(h);
	h->renewing = 1; /* nobody else CAWs our slot from h->img meanwhile */
	pthread_mutex_unlock(&h->mu);
	int r = dev_caw(h->d, slot_off(&h->p, h->slot), old, nimg, h->lbs, cur);
	/* the statistics after the record, their own sectors: only after a
	 * renewal that kept the slot ours; the write guard checks the lease */
	if (!r && sbuf)
		dev_write(h->d, slot_off(&h->p, h->slot) + LUNFS_HBSTAT_OFF, sbuf, LUNFS_HBSTAT_SIZE);
	free(sbuf);
	pthread_mutex_lock(&h->mu);
	h->renewing = 0;
	pthread_cond_broadcast(&h->idle_cv);
	if (r == 0) {
		free(h->img);
		h->img = nimg;
		nimg = NULL;
		h->hb = nb;
		if (!is_fenced(h))
			h->last_ok_submit_ms = t0;
	} else if (r == -EMISCOMPARE) {
		fence(h, "heartbeat slot was taken over by another host");
	} else if (r == -EACCES || (r == -EFENCED && !is_fenced(h))) {
		fence(h, "the target refuses our writes (persistent reservation preempted)");
	} else if (r == -EFENCED) {
		/* the guard refused the renewal: fenced already, with the reason */
	} else {
		lunfs_log(LOG_WARNING, "lunfs: host %s: heartbeat renewal failed: %s", h->id.name,
		       lunfs_strerror(r));
	}
	if (!is_fenced(h) && lease_expired(h, host_now(h)))
		fence(h, "heartbeat renewals failed for longer than the lease");
out:
	free(nimg);
	free(cur);
}

static void *renew_thread(void *arg)
{
	struct hb_host *h = arg;
	pthread_mutex_lock(&h->mu);
	while (!h->stop) {
		struct timespec ts = lunfs_deadline(h->p.hb_ms);
		if (!h->renew_now)
			pthread_cond_timedwait(&h->cv, &h->mu, &ts);
		h->renew_now = 0;
		if (h->stop)
			break;
		if (!h->paused && !is_fenced(h))
			renew(h);
		if (!h->paused && !is_fenced(h) && !h->stop)
			scan(h);
	}
	pthread_mutex_unlock(&h->mu);
	return NULL;
}

/* Watches slot s (LIVE under our UUID) for a whole lease.  Returns 0 when its
 * counter stood still (a crashed earlier mount of ours), -EEXIST when it
 * moved (this identity is mounted elsewhere right now). */
static int wait_own_stale(struct dev *d, const struct lk_params *p, uint32_t s,
			  const struct lunfs_hb *first)
{
	uint64_t t0 = lunfs_now_ms();
	while (lunfs_now_ms() - t0 <= p->lease_ms) {
		struct lunfs_hb hb;
		usleep(p->hb_ms * 1000 / 2);
		int r = hb_read(d, p, s, &hb);
		if (r)
			return r;
		if (hb.state != first->state || hb.counter != first->counter ||
		    hb.mount_gen != first->mount_gen)
			return hb.state == HB_LIVE ? -EEXIST : -EAGAIN;
	}
	return 0;
}

/* Slot s (ours) is REPLAYING by a peer.  Watches the replayer: returns 0
 * when it is gone (its slot FREE or re-mounted) or its counter stood still
 * for a whole lease (it died mid-recovery: we take the recovery over),
 * -EAGAIN when our slot changes (the recovery progressed or ended), and
 * -EBUSY when a live replayer has not finished after many leases. */
static int wait_replayer(struct dev *d, const struct lk_params *p, uint32_t s,
			 const struct lunfs_hb *first)
{
	uint64_t t0 = lunfs_now_ms(), since = t0, counter = 0;
	int seen = 0;
	while (lunfs_now_ms() - t0 <= 20ull * p->lease_ms) {
		struct lunfs_hb hb, rp;
		int r = hb_read(d, p, s, &hb);
		if (r)
			return r;
		if (hb.state != first->state || hb.gen != first->gen)
			return -EAGAIN;
		if (first->replayer_slot >= p->max_hosts)
			return 0;
		if ((r = hb_read(d, p, first->replayer_slot, &rp)))
			return r;
		if (rp.state == HB_FREE || rp.mount_gen != first->replayer_gen)
			return 0;
		if (!seen || rp.counter != counter) {
			seen = 1;
			counter = rp.counter;
			since = lunfs_now_ms();
		} else if (lunfs_now_ms() - since >= p->lease_ms) {
			return 0;
		}
		usleep(p->hb_ms * 1000 / 2);
	}
	return -EBUSY;
}

int hb_claim(struct dev *d, const struct lk_params *p, const struct hb_ident *id,
	     struct hb_host **out, uint32_t *prev_state)
{
	return hb_claim_flags(d, p, id, 0, out, prev_state);
}

int hb_claim_flags(struct dev *d, const struct lk_params *p, const struct hb_ident *id,
		   unsigned flags, struct hb_host **out, uint32_t *prev_state)
{
	uint32_t lbs = dev_lbs(d);
	size_t rlen = (size_t)p->max_hosts * LUNFS_SLOT_STRIDE;
	uint8_t *all = NULL, *nimg = NULL, *cur = NULL;
	struct hb_host *h = NULL;
	int r;

	if (lbs > LUNFS_SLOT_STRIDE || !p->max_hosts || p->hb_ms == 0)
		return -EINVAL;
	all = dev_alloc(rlen);
	nimg = dev_alloc(lbs);
	cur = dev_alloc(lbs);
	h = calloc(1, sizeof(*h));
	if (!all || !nimg || !cur || !h) {
		r = -ENOMEM;
		goto fail;
	}
	h->peers = calloc(p->max_hosts, sizeof(*h->peers));
	h->snap = calloc(p->max_hosts, sizeof(*h->snap));
	h->damaged = calloc(p->max_hosts, 1);
	h->region = dev_alloc(rlen);
	if (!h->peers || !h->snap || !h->damaged || !h->region) {
		r = -ENOMEM;
		goto fail;
	}
	for (int attempt = 0;; attempt++) {
		if (attempt > 1000) {
			r = -EAGAIN;
			goto fail;
		}
		r = dev_read(d, p->hb_off, all, rlen);
		if (r)
			goto fail;
		int64_t pick = -1;
		struct lunfs_hb hb, cand;
		for (uint32_t s = 0; s < p->max_hosts; s++) {
			r = lunfs_hb_decode(all + (size_t)s * LUNFS_SLOT_STRIDE, p->uuid,
					    slot_off(p, s), &hb, NULL);
			if (r == 0 && hb.state != HB_FREE && !(flags & HB_CLAIM_EXCLUSIVE) &&
			    !memcmp(hb.host_uuid, id->uuid, 16)) {
				pick = s;
				cand = hb;
				break;
			}
		}
		/* REPLAYING by itself: an earlier mount of ours died while
		 * recovering its own slot; treat it like a crashed LIVE one */
		int own_replay = pick >= 0 && cand.state == HB_REPLAYING && cand.replayer_slot == pick;
		if (pick >= 0 && (cand.state == HB_LIVE || own_replay) && !(flags & HB_ASSUME_DEAD)) {
			r = wait_own_stale(d, p, pick, &cand);
			if (r == -EAGAIN)
				continue;
			if (r)
				goto fail;
		} else if (pick >= 0 && cand.state == HB_REPLAYING && !own_replay &&
			   !(flags & HB_ASSUME_DEAD)) {
			/* a peer is recovering our last mount: let it finish, unless
			 * the replayer died: then we recover it ourselves (replay is
			 * idempotent) */
			r = wait_replayer(d, p, pick, &cand);
			if (r == -EAGAIN)
				continue;
			if (r)
				goto fail;
		}
		if (pick < 0) {
			uint32_t start = XXH3_64bits(id->uuid, 16) % p->max_hosts;
			for (uint32_t i = 0; i < p->max_hosts && pick < 0; i++) {
				uint32_t s = (start + i) % p->max_hosts;
				r = lunfs_hb_decode(all + (size_t)s * LUNFS_SLOT_STRIDE, p->uuid,
						    slot_off(p, s), &hb, NULL);
				if (r == 0 && hb.state == HB_FREE) {
					pick = s;
					cand = hb;
				}
			}
		}
		if (pick < 0) {
			r = -ENOSPC;
			goto fail;
		}
		/* The CAW compares against exactly what we decoded. */
		uint8_t *oldimg = all + (size_t)pick * LUNFS_SLOT_STRIDE;
		struct lunfs_hb nb = cand;
		/* Our own slot after a crash: claim it as REPLAYING, keeping the
		 * old mount generation, so peers still see the old holds as a
		 * dead host's (blocked) until our journal is replayed; then
		 * hb_recovered() makes it LIVE under the new generation. */
		int recovering = cand.state != HB_FREE;
		nb.state = recovering ? HB_REPLAYING : flags & HB_CLAIM_EXCLUSIVE ? HB_EXCLUSIVE : HB_LIVE;
		nb.slot = pick;
		nb.mount_gen = recovering ? cand.mount_gen : cand.mount_gen + 1;
		nb.counter = cand.counter + 1;
		nb.gen = cand.gen + 1;
		memcpy(nb.host_uuid, id->uuid, 16);
		snprintf(nb.host_name, sizeof(nb.host_name), "%s", id->name);
		nb.jnl_off = p->jnl_off + (uint64_t)pick * p->jnl_size;
		nb.jnl_size = p->jnl_size;
		nb.replayer_slot = recovering ? (uint32_t)pick : 0;
		nb.replayer_gen = recovering ? cand.mount_gen + 1 : 0;
		/* our own crashed slot keeps the old mount's key while it is
		 * REPLAYING: if we die before fencing it, the survivor that
		 * takes the recovery over preempts that key (the one with
		 * writes that may still be in flight); hb_recovered publishes
		 * ours */
		nb.pr_key = recovering ? cand.pr_key : id->pr_key;
		nb.st_reads = nb.st_writes = nb.st_locks = nb.st_held = nb.want_off = 0;
		nb.wall_ns = wall_ns();
		lunfs_hb_encode(&nb, p->uuid, slot_off(p, pick), nimg);
		uint64_t t0 = lunfs_now_ms();
		r = dev_caw(d, slot_off(p, pick), oldimg, nimg, lbs, cur);
		if (r == -EMISCOMPARE)
			continue;
		if (r)
			goto fail;
		if (prev_state)
			*prev_state = cand.state;
		h->prev_pr_key = recovering ? cand.pr_key : 0;
		h->d = d;
		h->p = *p;
		h->id = *id;
		h->slot = pick;
		h->lbs = lbs;
		h->mount_gen = cand.mount_gen + 1;
		h->img = nimg;
		h->hb = nb;
		h->last_ok_submit_ms = t0;
		break;
	}
	pthread_mutex_init(&h->mu, NULL);
	lunfs_cond_init(&h->cv);
	pthread_cond_init(&h->idle_cv, NULL);
	dev_set_fence_hook(d, dev_preempted, h);
	dev_set_guard(d, guard, h);
	/* a CAW holder frozen on the file backend is broken after lease/2, so
	 * it never holds up a renewal or a recovery for long; its own write must
	 * come within lease/4 of taking the arbiter (CAW-ARBITER.md) */
	dev_set_caw_break_ms(d, p->lease_ms / 2);
	if ((r = -pthread_create(&h->thr, NULL, renew_thread, h))) {
		dev_set_fence_hook(d, NULL, NULL);
		dev_set_guard(d, NULL, NULL);
		/* leave the slot LIVE: the next mount of this identity reclaims it */
		pthread_mutex_destroy(&h->mu);
		pthread_cond_destroy(&h->cv);
		pthread_cond_destroy(&h->idle_cv);
		goto fail;
	}
	free(all);
	free(cur);
	*out = h;
	return 0;
fail:
	free(all);
	free(cur);
	free(nimg);
	if (h) {
		free(h->peers);
		free(h->snap);
		free(h->damaged);
		free(h->region);
	}
	free(h);
	return r;
}

static void stop_thread(struct hb_host *h)
{
	pthread_mutex_lock(&h->mu);
	h->stop = 1;
	pthread_cond_broadcast(&h->cv);
	pthread_mutex_unlock(&h->mu);
	pthread_join(h->thr, NULL);
}

static void destroy(struct hb_host *h)
{
	dev_set_fence_hook(h->d, NULL, NULL);
	dev_set_guard(h->d, NULL, NULL);
	pthread_mutex_destroy(&h->mu);
	pthread_cond_destroy(&h->cv);
	pthread_cond_destroy(&h->idle_cv);
	free(h->img);
	free(h->peers);
	free(h->snap);
	free(h->damaged);
	free(h->region);
	free(h->rimg);
	free(h);
}

/* hb_release: our slot FREE, in one CAW from our last image. */
static int free_own_slot(struct hb_host *h)
{
	int r = hb_ok(h);
	if (r)
		return r;
	/* our own crashed mount's slot, not replayed yet (a mount that gave up
	 * before its replay): it stays REPLAYING under the old generation for
	 * the next mount or a survivor; freeing it would make the old holds
	 * GONE without the replay */
	if (h->hb.state == HB_REPLAYING)
		return -EAGAIN;
	uint8_t *nimg = dev_alloc(h->lbs);
	if (!nimg)
		return -ENOMEM;
	struct lunfs_hb nb = h->hb;
	nb.state = HB_FREE;
	stamp(h, h->slot, &nb, nimg);
	r = dev_caw(h->d, slot_off(&h->p, h->slot), h->img, nimg, h->lbs, NULL);
	free(nimg);
	return r;
}

int hb_release(struct hb_host *h)
{
	stop_thread(h);
	int r = free_own_slot(h);
	destroy(h);
	return r;
}

void hb_abandon(struct hb_host *h)
{
	stop_thread(h);
	destroy(h);
}

int hb_recovered(struct hb_host *h)
{
	int r = 0;
	pthread_mutex_lock(&h->mu);
	while (h->renewing)
		pthread_cond_wait(&h->idle_cv, &h->mu);
	if (h->hb.state == HB_REPLAYING) {
		struct lunfs_hb nb = h->hb;
		uint8_t *nimg = dev_alloc(h->lbs);
		if (!nimg) {
			r = -ENOMEM;
			goto out;
		}
		nb.state = HB_LIVE;
		nb.mount_gen = h->mount_gen;
		nb.replayer_slot = 0;
		nb.replayer_gen = 0;
		nb.pr_key = h->id.pr_key;
		stamp(h, h->slot, &nb, nimg);
		uint64_t t0 = host_now(h);
		r = is_fenced(h) ? -EFENCED : dev_caw(h->d, slot_off(&h->p, h->slot), h->img, nimg, h->lbs, NULL);
		if (r == 0) {
			free(h->img);
			h->img = nimg;
			h->hb = nb;
			h->last_ok_submit_ms = t0;
		} else {
			free(nimg);
			if (r == -EMISCOMPARE)
				fence(h, "heartbeat slot was taken over by another host");
		}
	}
out:
	pthread_mutex_unlock(&h->mu);
	return r;
}

void hb_pause_renewal(struct hb_host *h, int paused)
{
	pthread_mutex_lock(&h->mu);
	h->paused = paused;
	pthread_mutex_unlock(&h->mu);
}

uint32_t hb_slot(const struct hb_host *h) { return h->slot; }
uint64_t hb_mount_gen(const struct hb_host *h) { return h->mount_gen; }
struct dev *hb_dev(const struct hb_host *h) { return h->d; }
const struct lk_params *hb_params(const struct hb_host *h) { return &h->p; }

int hb_peer(struct hb_host *h, uint32_t slot, uint64_t mount_gen)
{
	struct lunfs_hb hb;
	if (slot >= h->p.max_hosts)
		return -EFSCORRUPTED;
	int r = hb_read(h->d, &h->p, slot, &hb);
	if (r == -EFSCORRUPTED)
		return PEER_DEAD; /* maybe alive: wait for its recovery (decode_or_damaged) */
	if (r)
		return r;
	if (hb.state == HB_FREE || hb.state == HB_EXCLUSIVE || hb.mount_gen != mount_gen)
		return PEER_GONE;
	if (hb.state == HB_REPLAYING)
		return PEER_DEAD;
	pthread_mutex_lock(&h->mu);
	r = observe(h, slot, &hb, lunfs_now_ms());
	pthread_mutex_unlock(&h->mu);
	return r;
}

/* ---- published state, wants, and recovery of dead peers ---- */

/* A renewal publishes the longest latency since the one before it, across
 * every publication in between. */
static void stat_merge_max(struct lunfs_hbstat *st, const struct lunfs_hbstat *prev)
{
	if (prev->host.max_ns > st->host.max_ns)
		st->host.max_ns = prev->host.max_ns;
	for (uint32_t i = 0; i < st->nfiles; i++)
		for (uint32_t k = 0; k < prev->nfiles; k++)
			if (prev->files[k].ino == st->files[i].ino &&
			    prev->files[k].io.max_ns > st->files[i].io.max_ns)
				st->files[i].io.max_ns = prev->files[k].io.max_ns;
}

void hb_publish(struct hb_host *h, const struct hb_pub *pub)
{
	pthread_mutex_lock(&h->mu);
	struct hb_pub prev = h->pub;
	h->pub = *pub;
	if (h->pub_fresh && prev.has_stat && pub->has_stat)
		stat_merge_max(&h->pub.stat, &prev.stat);
	h->pub_fresh = 1;
	pthread_mutex_unlock(&h->mu);
}

void hb_set_want(struct hb_host *h, uint64_t off)
{
	pthread_mutex_lock(&h->mu);
	if (h->want_off != off) {
		h->want_off = off;
		if (off) { /* tell the holder now, not at the next interval */
			h->renew_now = 1;
			pthread_cond_broadcast(&h->cv);
		}
	}
	pthread_mutex_unlock(&h->mu);
}

void hb_clear_want(struct hb_host *h, uint64_t off)
{
	pthread_mutex_lock(&h->mu);
	if (h->want_off == off)
		h->want_off = 0;
	pthread_mutex_unlock(&h->mu);
}

int hb_wanted(struct hb_host *h, uint64_t off)
{
	int r = 0;
	pthread_mutex_lock(&h->mu);
	for (uint32_t s = 0; h->snap_valid && h->any_want && s < h->p.max_hosts && !r; s++)
		r = s != h->slot && h->snap[s].state == HB_LIVE && h->snap[s].want_off == off;
	pthread_mutex_unlock(&h->mu);
	return r;
}

/* CAWs peer slot s from cur to nb (counter, gen and wall clock advanced),
 * encoded into nimg.  Returns 0, -EAGAIN on a miscompare, or -errno. */
static int caw_peer(struct hb_host *h, uint32_t s, const void *cur, struct lunfs_hb *nb,
		    uint8_t *nimg)
{
	stamp(h, s, nb, nimg);
	int r = hb_ok(h);
	if (r)
		return r;
	r = dev_caw(h->d, slot_off(&h->p, s), cur, nimg, h->lbs, NULL);
	return r == -EMISCOMPARE ? -EAGAIN : r;
}

/* Does slot s (mu held, from the last scan) need recovery by a survivor? */
static int needs_recovery(struct hb_host *h, uint32_t s, uint64_t now)
{
	const struct lunfs_hb *hb = &h->snap[s];
	if (s == h->slot || hb->slot != s)
		return 0;
	if (hb->state == HB_LIVE || hb->state == HB_EXCLUSIVE)
		return observe(h, s, hb, now) == PEER_DEAD;
	if (hb->state != HB_REPLAYING)
		return 0;
	uint32_t rs = hb->replayer_slot;
	if (rs == s) /* the host's own replay after a crash: it renews meanwhile */
		return observe(h, s, hb, now) == PEER_DEAD;
	if (rs == h->slot && hb->replayer_gen == h->mount_gen)
		return 1; /* ours, left over from a recovery that failed: retry */
	if (rs >= h->p.max_hosts)
		return 1;
	const struct lunfs_hb *r = &h->snap[rs];
	if (r->state == HB_FREE || r->mount_gen != hb->replayer_gen)
		return 1; /* the replayer is gone */
	return observe(h, rs, r, now) == PEER_DEAD; /* the replayer died */
}

int hb_needs_recovery(struct hb_host *h, uint32_t *slots, int max)
{
	int n = 0;
	pthread_mutex_lock(&h->mu);
	uint64_t now = lunfs_now_ms();
	for (uint32_t s = 0; h->snap_valid && !is_fenced(h) && s < h->p.max_hosts && n < max; s++)
		if (needs_recovery(h, s, now))
			slots[n++] = s;
	pthread_mutex_unlock(&h->mu);
	return n;
}

int hb_recover_begin(struct hb_host *h, uint32_t s, struct lunfs_hb *victim)
{
	uint8_t *cur = dev_alloc(h->lbs), *nimg = dev_alloc(h->lbs);
	int r;
	if (!cur || !nimg) {
		r = -ENOMEM;
		goto out;
	}
	if (s >= h->p.max_hosts || s == h->slot) {
		r = -EINVAL;
		goto out;
	}
	if ((r = dev_read(h->d, slot_off(&h->p, s), cur, h->lbs)))
		goto out;
	struct lunfs_hb hb;
	/* decide again on what the disk holds now, against our own watch */
	pthread_mutex_lock(&h->mu);
	int damaged = h->damaged[s] = decode_or_damaged(h, cur, s, &hb);
	h->snap[s] = hb;
	int need = needs_recovery(h, s, lunfs_now_ms());
	pthread_mutex_unlock(&h->mu);
	if (!need) {
		r = -EAGAIN;
		goto out;
	}
	struct lunfs_hb nb = hb;
	if (damaged) {
		/* its owner is unknown: replay the journal at the slot's place,
		 * and free the slot under a generation no mount of it had */
		memset(&nb, 0, sizeof(nb));
		nb.slot = s;
		nb.mount_gen = hb.mount_gen = damaged_free_gen();
		nb.jnl_off = h->p.jnl_off + (uint64_t)s * h->p.jnl_size;
		nb.jnl_size = h->p.jnl_size;
		snprintf(nb.host_name, sizeof(nb.host_name), "%s", hb.host_name);
		hb.pr_key = HB_KEY_UNKNOWN; /* hb_fence_victim preempts every unpublished key */
	}
	*victim = hb;
	nb.state = HB_REPLAYING;
	nb.replayer_slot = h->slot;
	nb.replayer_gen = h->mount_gen;
	nb.want_off = 0;
	/* -EAGAIN: another survivor, or the host itself, got there first */
	if (!(r = caw_peer(h, s, cur, &nb, nimg))) {
		pthread_mutex_lock(&h->mu);
		free(h->rimg);
		h->rimg = nimg;
		h->rslot = s;
		nimg = NULL;
		pthread_mutex_unlock(&h->mu);
	}
out:
	free(cur);
	free(nimg);
	return r;
}

static uint64_t replayer_key(struct hb_host *h, const struct lunfs_hb *victim)
{
	struct lunfs_hb r;
	if (victim->state != HB_REPLAYING || victim->replayer_slot == victim->slot ||
	    victim->replayer_slot >= h->p.max_hosts || victim->replayer_slot == h->slot)
		return 0;
	if (hb_read(h->d, &h->p, victim->replayer_slot, &r))
		return HB_KEY_UNKNOWN; /* its slot does not decode: fence every unpublished key */
	/* still the mount that began the recovery: its key may have writes in flight */
	return r.state != HB_FREE && r.mount_gen == victim->replayer_gen ? r.pr_key : 0;
}

int hb_recover_end(struct hb_host *h, uint32_t s)
{
	uint8_t *nimg = dev_alloc(h->lbs);
	int r;
	pthread_mutex_lock(&h->mu);
	uint8_t *old = h->rslot == s ? h->rimg : NULL;
	h->rimg = NULL;
	pthread_mutex_unlock(&h->mu);
	if (!nimg || !old) {
		r = nimg ? -EINVAL : -ENOMEM;
		goto out;
	}
	struct lunfs_hb hb;
	if ((r = lunfs_hb_decode(old, h->p.uuid, slot_off(&h->p, s), &hb, NULL)))
		goto out;
	/* FREE, keeping mount_gen (the next claim takes mount_gen + 1, so the
	 * dead mount's holds stay GONE) and the name, for the admin */
	hb.state = HB_FREE;
	hb.replayer_slot = 0;
	hb.replayer_gen = 0;
	hb.pr_key = 0;
	r = caw_peer(h, s, old, &hb, nimg); /* -EAGAIN: someone took it over from us */
out:
	free(old);
	free(nimg);
	return r;
}

int hb_find_live(struct hb_host *h, const char *name, uint32_t *slot, uint64_t *mount_gen)
{
	size_t stride = LUNFS_SLOT_STRIDE;
	uint8_t *all = dev_alloc((size_t)h->p.max_hosts * stride);
	int r;
	if (!all)
		return -ENOMEM;
	r = dev_read(h->d, h->p.hb_off, all, (size_t)h->p.max_hosts * stride);
	for (uint32_t s = 0; !r && s < h->p.max_hosts; s++) {
		struct lunfs_hb hb;
		if (lunfs_hb_decode(all + s * stride, h->p.uuid, slot_off(&h->p, s), &hb, NULL) ||
		    hb.state != HB_LIVE || strcmp(hb.host_name, name))
			continue;
		*slot = s;
		*mount_gen = hb.mount_gen;
		free(all);
		return 0;
	}
	free(all);
	return r ? r : -ENOENT;
}

uint64_t hb_prev_pr_key(const struct hb_host *h)
{
	return h->prev_pr_key;
}

/* ---- the liveness watch, shared by mount, fsck, mkfs and the CLI ---- */

int hb_watch(struct dev *d, const struct lk_params *p, uint32_t self, unsigned states,
	     uint32_t ms, struct hb_watch *w)
{
	size_t stride = LUNFS_SLOT_STRIDE, rlen = (size_t)p->max_hosts * stride;
	uint32_t lbs = dev_lbs(d);
	uint8_t *first = dev_alloc(rlen), *now = dev_alloc(rlen);
	int r = 0, watched = 0;
	if (!first || !now) {
		r = -ENOMEM;
		goto out;
	}
	memset(w, 0, sizeof(*w));
	if ((r = dev_read(d, p->hb_off, first, rlen)))
		goto out;
	for (uint32_t s = 0; s < p->max_hosts && s < HB_WATCH_MAX; s++) {
		struct lunfs_hb hb;
		int bad = lunfs_hb_decode(first + s * stride, p->uuid, slot_off(p, s), &hb, NULL) != 0;
		w->slot[s].damaged = bad;
		w->slot[s].hb = hb;
		if (s == self || (!bad && hb.state == HB_FREE) ||
		    (!bad && states && !(states & (1u << hb.state)))) {
			w->slot[s].status = HB_W_IGNORED;
			continue;
		}
		w->slot[s].status = HB_W_DEAD; /* until it moves */
		watched++;
	}
	w->nwatched = watched;
	uint64_t t0 = lunfs_now_ms();
	uint32_t step = p->hb_ms / 2 > 50 ? p->hb_ms / 2 : 50;
	while (watched > w->nalive && lunfs_now_ms() - t0 < ms) {
		usleep(step * 1000);
		if ((r = dev_read(d, p->hb_off, now, rlen)))
			goto out;
		for (uint32_t s = 0; s < p->max_hosts && s < HB_WATCH_MAX; s++) {
			if (w->slot[s].status != HB_W_DEAD ||
			    !memcmp(first + s * stride, now + s * stride, lbs))
				continue;
			w->slot[s].status = HB_W_ALIVE; /* its bytes changed: a host writes it */
			lunfs_hb_decode(now + s * stride, p->uuid, slot_off(p, s), &w->slot[s].hb, NULL);
			w->nalive++;
		}
	}
out:
	free(first);
	free(now);
	return r;
}

int hb_exclusive_alive(struct hb_host *h, char *who, size_t wlen)
{
	struct hb_watch *w = calloc(1, sizeof(*w));
	if (!w)
		return -ENOMEM;
	int r = hb_watch(h->d, &h->p, h->slot, 1u << HB_EXCLUSIVE, h->p.lease_ms + h->p.hb_ms, w);
	for (uint32_t s = 0; !r && s < h->p.max_hosts && s < HB_WATCH_MAX; s++)
		if (w->slot[s].status == HB_W_ALIVE) {
			snprintf(who, wlen, "%s", w->slot[s].hb.host_name);
			r = 1;
		}
	free(w);
	return r;
}

int hb_claim_exclusive(struct dev *d, const struct lk_params *p, const struct hb_ident *id,
		       struct hb_host **out, struct hb_watch *w)
{
	struct hb_host *h;
	int r = hb_claim_flags(d, p, id, HB_CLAIM_EXCLUSIVE, &h, NULL);
	if (r)
		return r;
	/* Both sides write their slot before they read the others': a host
	 * that claims after our claim sees us (and refuses, hb_exclusive_alive),
	 * one that claimed before shows up here as alive. */
	if ((r = hb_watch(d, p, h->slot, 0, p->lease_ms + p->hb_ms, w)) || w->nalive) {
		hb_release(h);
		return r ? r : -EBUSY;
	}
	*out = h;
	return 0;
}

/* ---- fencing a victim's persistent-reservation key ---- */

/* The key of a damaged slot is unknown: every registered key that no slot
 * that decodes publishes is preempted (a host that registered and has not
 * claimed yet loses its key too: its claim then fails and can be retried). */
static int fence_unknown(struct hb_host *h)
{
	size_t stride = LUNFS_SLOT_STRIDE;
	uint8_t *all = dev_alloc((size_t)h->p.max_hosts * stride);
	uint64_t keys[256];
	int n = all ? dev_pr_read_keys(h->d, keys, 256) : -ENOMEM, r = 0;
	if (n >= 0)
		r = dev_read(h->d, h->p.hb_off, all, (size_t)h->p.max_hosts * stride);
	for (int i = 0; n >= 0 && !r && i < n && i < 256; i++) {
		int published = keys[i] == h->id.pr_key;
		for (uint32_t s = 0; s < h->p.max_hosts && !published; s++) {
			struct lunfs_hb hb;
			published = !lunfs_hb_decode(all + s * stride, h->p.uuid, slot_off(&h->p, s), &hb,
						     NULL) &&
				    hb.state != HB_FREE && hb.pr_key == keys[i];
		}
		if (!published && (r = hb_fence_victim(h, keys[i])))
			break;
	}
	free(all);
	return n < 0 ? n : r;
}

int hb_fence_victim(struct hb_host *h, uint64_t victim)
{
	uint64_t mine = h->id.pr_key;
	if (!(dev_caps(h->d) & DEV_CAP_PR) || !mine || !victim || victim == mine)
		return 0;
	if (victim == HB_KEY_UNKNOWN)
		return fence_unknown(h);
	int r = dev_pr_preempt(h->d, mine, victim, DEV_PR_WRITE_EXCLUSIVE_REGS_ONLY);
	if (r && r != -EACCES)
		return r;
	/* A PREEMPT of a key nobody holds any more (an earlier recoverer
	 * preempted it) gets RESERVATION CONFLICT: check the key list. */
	r = dev_pr_reserve(h->d, mine, DEV_PR_WRITE_EXCLUSIVE_REGS_ONLY);
	if (r && r != -EACCES)
		lunfs_log(LOG_WARNING, "lunfs: cannot take the persistent reservation: %s",
			  lunfs_strerror(r));
	uint64_t keys[256];
	int n = dev_pr_read_keys(h->d, keys, 256), own = 0;
	if (n < 0)
		return n;
	for (int i = 0; i < n && i < 256; i++) {
		if (keys[i] == victim)
			return -EBUSY; /* still registered: not fenced yet */
		own |= keys[i] == mine;
	}
	return own ? 0 : -EACCES; /* we were preempted ourselves */
}

int hb_pr_register(struct dev *d, uint64_t *key)
{
	uint64_t rnd = 0;
	*key = 0;
	if (!(dev_caps(d) & DEV_CAP_PR))
		return 0;
	while (!(rnd & 0xffffffffffffull))
		if (getrandom(&rnd, sizeof(rnd), 0) != sizeof(rnd))
			rnd = (uint64_t)lunfs_now_ms() * 2654435761u ^ (uint64_t)getpid();
	/* "LN" in the top bytes marks our keys for the admin */
	uint64_t k = 0x4c4e000000000000ull | (rnd & 0xffffffffffffull);
	int r = dev_pr_register(d, k);
	if (r)
		return r;
	/* the first host takes the reservation; later ones get a conflict */
	r = dev_pr_reserve(d, k, DEV_PR_WRITE_EXCLUSIVE_REGS_ONLY);
	if (r && r != -EACCES)
		lunfs_log(LOG_WARNING, "lunfs: cannot take the persistent reservation: %s",
			  lunfs_strerror(r));
	*key = k;
	return 0;
}

void hb_pr_unregister(struct dev *d, uint64_t key)
{
	if (key)
		dev_pr_unregister(d, key);
}

uint64_t hb_pr_key(const struct hb_host *h)
{
	return h->id.pr_key;
}

int hb_fence_taken(struct hb_host *h, const struct lunfs_hb *victim)
{
	int r = hb_fence_victim(h, victim->pr_key);
	if (r)
		return r;
	return hb_fence_victim(h, replayer_key(h, victim));
}

int hb_take_over(struct hb_host *h, uint32_t s, uint32_t wait_ms, struct lunfs_hb *victim)
{
	uint64_t t0 = lunfs_now_ms();
	int r;
	/* our renewal thread's scans watch the slot too: they agree once they
	 * have seen it stand still for a lease */
	while ((r = hb_recover_begin(h, s, victim)) == -EAGAIN && lunfs_now_ms() - t0 < wait_ms)
		usleep(h->p.hb_ms * 1000 / 2);
	if (r)
		return r;
	return hb_fence_taken(h, victim);
}
