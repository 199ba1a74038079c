/* Recovery of dead peers by a survivor, and persistent-reservation fencing.
 * See docs/LOCKING.md section 11.
 *
 * Every read-write mount runs one recovery thread.  The heartbeat layer
 * watches every slot continuously (it reads the whole heartbeat region after
 * each renewal); every hb_ms / 2 this thread asks it which slots need a
 * survivor and recovers each:
 *   1. CAW the slot to REPLAYING by us (hb_recover_begin);
 *   2. on iSCSI with persistent reservations, PREEMPT the dead host's key,
 *      so the target refuses whatever it still sends;
 *   3. replay its journal with the one replay (jnl_replay), every write
 *      guarded by our own heartbeat, which seals it;
 *   4. CAW the slot to FREE (hb_recover_end).
 * From step 4 on every hold of the dead mount classifies as GONE.  The thread
 * does not take the volume mutex during the replay: the dead host's locks
 * were never ours, so no block of our cache is involved. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>
#include "fs/internal.h"

/* ---- persistent reservations (iSCSI) ---- */

/* Makes sure a Write Exclusive - Registrants Only reservation exists: the
 * first host takes it, later ones get RESERVATION CONFLICT (someone holds
 * it), which is fine.  A holder's clean unmount releases it; the survivors
 * take it again at their next check. */
static void pr_ensure(struct lunfs_vol *v)
{
	int r = dev_pr_reserve(v->d, v->pr_key, DEV_PR_WRITE_EXCLUSIVE_REGS_ONLY);
	if (r && r != -EACCES)
		lunfs_log(LOG_WARNING, "lunfs: cannot take the persistent reservation: %s",
			  lunfs_strerror(r));
}

int pr_mount(struct lunfs_vol *v)
{
	return hb_pr_register(v->d, &v->pr_key);
}

void pr_unmount(struct lunfs_vol *v)
{
	if (v->pr_key)
		dev_pr_unregister(v->d, v->pr_key);
	v->pr_key = 0;
}

/* ---- recovery ---- */

/* Test hook: waits recovery_pause_ms, or until the mount stops (then
 * returns 1: act as if this host died here). */
static int pause_or_stop(struct lunfs_vol *v)
{
	struct timespec ts = lunfs_deadline(v->recovery_pause_ms);
	pthread_mutex_lock(&v->rec_mu);
	while (!v->rec_stop && pthread_cond_timedwait(&v->rec_cv, &v->rec_mu, &ts) == 0)
		;
	int stop = v->rec_stop;
	pthread_mutex_unlock(&v->rec_mu);
	return stop;
}

/* The one takeover path for slot s, REPLAYING by us since t0 (victim: its
 * image before): fence, replay, free.  *step names the step under way. */
static int take_over(struct lunfs_vol *v, uint32_t s, const struct lunfs_hb *victim, uint64_t t0,
		     const char **step)
{
	*step = "fencing its persistent-reservation key";
	int r = hb_fence_taken(v->hb, victim);
	if (r)
		return r;
	struct jnl_geom g = {.slot = s, .off = geom_jnl(&v->sb, s), .size = v->sb.jnl_size,
			     .target_ok = vol_jtarget_ok, .arg = &v->sb, .guard = v->hb};
	struct jnl_replay_stats st;
	memcpy(g.uuid, v->sb.uuid, 16);
	*step = "replaying its journal";
	if ((r = jnl_replay(v->d, &g, 1, &st)))
		return r;
	*step = "freeing its slot";
	if ((r = hb_recover_end(v->hb, s)))
		return r;
	if (vol_purge_locks(v, s, victim->mount_gen + 1) < 0)
		lunfs_log(LOG_WARNING, "lunfs: could not clear every lock of host %s",
			  victim->host_name);
	lunfs_log(LOG_WARNING,
		  "lunfs: recovered host %s (slot %u): replayed %llu "
		  "transaction(s) in %llu ms; its locks are free",
		  victim->host_name, s, (unsigned long long)st.txns,
		  (unsigned long long)(lunfs_now_ms() - t0));
	return 0;
}

static int recover_slot(struct lunfs_vol *v, uint32_t s)
{
	struct lunfs_hb victim;
	uint64_t t0 = lunfs_now_ms();
	int r = hb_recover_begin(v->hb, s, &victim);
	if (r)
		return r == -EAGAIN ? 0 : r;
	lunfs_log(LOG_WARNING,
		  "lunfs: host %s (slot %u, mount %llu) is dead: recovering it (slot REPLAYING)",
		  victim.host_name, s, (unsigned long long)victim.mount_gen);
	if (v->recovery_pause_ms && pause_or_stop(v)) {
		/* test hook: the mount was abandoned during the pause; leave the
		 * slot REPLAYING by us, as a crash here would */
		return -ECANCELED;
	}
	/* its journal may name headers of clusters an online grow added; never
	 * wait for v->mu here (a thread may hold it while it waits for a lock
	 * of the very host we recover): a replay that fails on such a header
	 * is retried later, when the linger thread has followed the grow */
	if (pthread_mutex_trylock(&v->mu) == 0) {
		vol_grow_check(v);
		pthread_mutex_unlock(&v->mu);
	}
	const char *step;
	r = take_over(v, s, &victim, t0, &step);
	if (r && r != -EAGAIN)
		lunfs_log(LOG_ERR, "lunfs: recovery of host %s (slot %u) failed while %s: %s",
			  victim.host_name, s, step, lunfs_strerror(r));
	return r == -EAGAIN ? 0 : r; /* -EAGAIN: someone else goes on with it */
}

static void *recover_thread(void *arg)
{
	struct lunfs_vol *v = arg;
	uint64_t last_pr = lunfs_now_ms();
	pthread_mutex_lock(&v->rec_mu);
	while (!v->rec_stop) {
		struct timespec ts = lunfs_deadline(v->sb.hb_ms / 2 + 1);
		pthread_cond_timedwait(&v->rec_cv, &v->rec_mu, &ts);
		if (v->rec_stop || hb_ok(v->hb))
			continue;
		pthread_mutex_unlock(&v->rec_mu);
		uint32_t slots[64];
		int n = hb_needs_recovery(v->hb, slots, 64), done = 0;
		for (int i = 0; i < n && !v->rec_stop; i++) {
			struct rec_retry *rt = &v->rec_retry[slots[i] % REC_RETRY_SLOTS];
			if (lunfs_now_ms() < rt->at)
				continue; /* failed lately: do not hammer (or flood the log) */
			int r = recover_slot(v, slots[i]);
			done += r == 0;
			if (r && r != -ECANCELED) {
				/* a damaged journal, an I/O error: try again later,
				 * backing off to once a minute; fsck repairs it */
				rt->backoff = rt->backoff ? rt->backoff * 2 : v->sb.hb_ms;
				if (rt->backoff > 60000)
					rt->backoff = 60000;
				rt->at = lunfs_now_ms() + rt->backoff;
			} else {
				rt->backoff = rt->at = 0;
			}
		}
		/* files the dead host had unlinked while open are ours to free */
		if (done && !hb_ok(v->hb))
			orphans_process(v);
		if (v->pr_key && lunfs_now_ms() - last_pr >= v->sb.lease_ms) {
			pr_ensure(v);
			last_pr = lunfs_now_ms();
		}
		pthread_mutex_lock(&v->rec_mu);
	}
	pthread_mutex_unlock(&v->rec_mu);
	return NULL;
}

int recover_start(struct lunfs_vol *v)
{
	pthread_mutex_init(&v->rec_mu, NULL);
	lunfs_cond_init(&v->rec_cv);
	int r = pthread_create(&v->rec_thr, NULL, recover_thread, v);
	if (r) {
		pthread_mutex_destroy(&v->rec_mu);
		pthread_cond_destroy(&v->rec_cv);
		return -r;
	}
	v->rec_started = 1;
	return 0;
}

void recover_stop(struct lunfs_vol *v)
{
	if (!v->rec_started)
		return;
	pthread_mutex_lock(&v->rec_mu);
	v->rec_stop = 1;
	pthread_cond_broadcast(&v->rec_cv);
	pthread_mutex_unlock(&v->rec_mu);
	pthread_join(v->rec_thr, NULL);
	pthread_mutex_destroy(&v->rec_mu);
	pthread_cond_destroy(&v->rec_cv);
	v->rec_started = 0;
}
