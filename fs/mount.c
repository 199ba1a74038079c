/* Mount and unmount: the one takeover path of a host's own slot (claim,
 * fence the old mount, replay, purge its locks), the threads a mount runs
 * (linger, peer recovery, the aio engine), a fenced mount's retirement,
 * and the clean unmount.  The top of fs/: it calls every layer below and
 * nothing calls it but the API (docs/LOCKING.md sections 2, 9 and 14). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>
#include <xxhash.h>
#include "fs/internal.h"
#include "fs/lunfs_test.h"

static int host_identity(const char *name, struct hb_ident *id)
{
	char buf[256] = "";
	memset(id, 0, sizeof(*id));
	if (!name || !*name) {
		FILE *f = fopen("/etc/machine-id", "r");
		if (f) {
			if (fgets(buf, sizeof(buf), f))
				buf[strcspn(buf, "\n")] = 0;
			fclose(f);
		}
		if (!*buf)
			gethostname(buf, sizeof(buf) - 1);
		name = buf;
	}
	size_t n = strlen(name);
	if (n == 0 || n > LUNFS_HOSTNAME_LEN)
		return -ENAMETOOLONG;
	memcpy(id->name, name, n);
	/* the identity persists: the same name gives the same UUID */
	XXH128_hash_t hsh = XXH3_128bits_withSeed(id->name, strlen(id->name), 0x6c756e6673);
	memcpy(id->uuid, &hsh.low64, 8);
	memcpy(id->uuid + 8, &hsh.high64, 8);
	return 0;
}

/* Frees what lunfs_mount_test set up first: the device, the cache's hash,
 * the reservations, the mutex and conditions, v itself. */
static void vol_destroy(struct lunfs_vol *v)
{
	if (v->d)
		dev_close(v->d);
	free(v->bh);
	free(v->resv);
	pthread_mutex_destroy(&v->mu);
	pthread_cond_destroy(&v->linger_cv);
	pthread_cond_destroy(&v->io_cv);
	pthread_cond_destroy(&v->gw_cv);
	free(v);
}

/* The public device options, as dev/ takes them. */
static struct dev_opts dev_opts_of(const struct lunfs_dev_opts *o, int readonly)
{
	_Static_assert((int)LUNFS_CAW_AUTO == DEV_CAW_AUTO && (int)LUNFS_CAW_NATIVE == DEV_CAW_NATIVE &&
		       (int)LUNFS_CAW_RESERVE == DEV_CAW_RESERVE, "caw modes");
	return (struct dev_opts){.readonly = readonly, .initiator = o->initiator,
				 .caw_mode = o->caw_mode, .buffered = o->buffered, .no_pr = o->no_pr};
}

int lunfs_mount(const char *url, const struct lunfs_mount_opts *o, struct lunfs_vol **out,
		const char **msg)
{
	return lunfs_mount_test(url, o, NULL, out, msg);
}

int lunfs_mount_test(const char *url, const struct lunfs_mount_opts *o,
		     const struct lunfs_test_opts *t, struct lunfs_vol **out, const char **msg)
{
	struct lunfs_mount_opts dflt = {0};
	struct lunfs_test_opts no_hooks = {0};
	struct lunfs_vol *v = calloc(1, sizeof(*v));
	const char *why = NULL;
	int r, used_backup;
	if (!o)
		o = &dflt;
	if (!t)
		t = &no_hooks;
	if (msg)
		*msg = NULL;
	if (!v)
		return -ENOMEM;
	pthread_mutex_init(&v->mu, NULL);
	lunfs_cond_init(&v->linger_cv);
	pthread_cond_init(&v->io_cv, NULL);
	lunfs_cond_init(&v->gw_cv); /* gw_gather waits on CLOCK_MONOTONIC */
	v->ro = o->readonly;
	v->linger_ms = o->linger_ms ? o->linger_ms : 500;
	v->open_wait_ms = o->open_wait_ms;
	v->bh = calloc(VOL_NBUCKETS, sizeof(*v->bh));
	if (!v->bh) {
		r = -ENOMEM;
		goto fail;
	}
	if (t->device) {
		v->d = t->device;
	} else {
		struct dev_opts dopts = dev_opts_of(&o->dev, v->ro);
		if ((r = dev_open(url, &dopts, &v->d))) {
			why = dev_last_error();
			goto fail;
		}
	}
	v->mu_trace = getenv("LUNFS_TRACE_MU_IO") != NULL;
	dev_set_probe(v->d, vol_mu_probe, v);
	if (dev_lbs(v->d) > LUNFS_SLOT_STRIDE) {
		why = "device logical block size above 4096 is not supported";
		r = -EINVAL;
		goto fail;
	}
	r = lunfs_read_sb(v->d, &v->sb, 1, &used_backup, &why);
	if (r)
		goto fail;
	if (used_backup) {
		why = "primary superblock is damaged (the backup is good): run fsck.lunfs -y";
		r = -EFSCORRUPTED;
		goto fail;
	}
	if (!v->ro) {
		struct hb_ident id;
		struct lk_params p = lk_params_of(&v->sb);
		if ((r = host_identity(o->host, &id))) {
			why = "host name is empty or longer than 64 bytes";
			goto fail;
		}
		if ((r = pr_mount(v))) {
			why = "cannot register a persistent-reservation key on the target";
			goto fail;
		}
		id.pr_key = v->pr_key;
		v->recovery_pause_ms = t->recovery_pause_ms;
		uint32_t prev = HB_FREE;
		if ((r = hb_claim_flags(v->d, &p, &id, o->assume_dead ? HB_ASSUME_DEAD : 0, &v->hb,
					&prev))) {
			why = r == -ENOSPC   ? "no free heartbeat slot (too many hosts mounted)"
			      : r == -EEXIST ? "this host identity is already mounted (heartbeat moves)"
					     : "cannot claim a heartbeat slot";
			goto fail;
		}
		v->slot = hb_slot(v->hb);
		/* before any other write: fsck or mkfs may hold the volume */
		char who[LUNFS_HOSTNAME_LEN + 1] = "";
		if ((r = hb_exclusive_alive(v->hb, who, sizeof(who)))) {
			static __thread char msgbuf[160];
			snprintf(msgbuf, sizeof(msgbuf),
				 "the volume is held by %s (fsck.lunfs or mkfs.lunfs is running)", who);
			why = r > 0 ? msgbuf : "cannot read the heartbeat region";
			r = r > 0 ? -EBUSY : r;
			hb_release(v->hb);
			goto fail;
		}
		/* the same identity taking its own crashed slot over: the one
		 * takeover path, so its old key is preempted before the replay */
		if ((r = hb_fence_victim(v->hb, hb_prev_pr_key(v->hb)))) {
			why = "cannot fence this host's earlier mount (persistent reservation)";
			hb_abandon(v->hb);
			goto fail;
		}
		struct jnl_geom g = {.slot = v->slot, .off = geom_jnl(&v->sb, v->slot),
				     .size = v->sb.jnl_size, .target_ok = vol_jtarget_ok, .arg = &v->sb};
		memcpy(g.uuid, v->sb.uuid, 16);
		struct jnl_replay_stats st;
		if ((r = jnl_open(v->d, &g, v->hb, &v->j, &st))) {
			why = "journal replay failed: run fsck.lunfs";
			hb_abandon(v->hb);
			goto fail;
		}
		if (st.txns)
			lunfs_log(LOG_NOTICE, "lunfs: replayed %llu transaction(s) from slot %u",
			       (unsigned long long)st.txns, v->slot);
		/* replayed: the old holds may now be treated as gone */
		if ((r = hb_recovered(v->hb))) {
			why = "cannot mark the heartbeat slot live after recovery";
			jnl_abandon(v->j);
			hb_abandon(v->hb);
			goto fail;
		}
		/* hosts start their searches in different places */
		v->ig_hint = (uint64_t)v->slot * v->sb.ig_count / v->sb.max_hosts;
		v->fc_hint = (uint64_t)v->slot * v->sb.fc_count / v->sb.max_hosts;
		v->mc_hint = (uint64_t)v->slot * v->sb.mc_count / v->sb.max_hosts;
		if ((r = pthread_create(&v->linger_thr, NULL, vol_linger_thread, v))) {
			r = -r;
			jnl_abandon(v->j);
			hb_abandon(v->hb);
			goto fail;
		}
		if (prev != HB_FREE && (r = vol_purge_locks(v, v->slot, hb_mount_gen(v->hb)))) {
			if (msg)
				*msg = "cannot clear the locks of this host's crashed mount";
			lunfs_unmount(v);
			return r;
		}
		if ((r = orphans_process(v))) {
			if (msg)
				*msg = "cannot clean up orphan inodes (run fsck.lunfs)";
			lunfs_unmount(v);
			return r;
		}
		if ((r = recover_start(v))) {
			if (msg)
				*msg = "cannot start the recovery thread";
			lunfs_unmount(v);
			return r;
		}
	}
	*out = v;
	return 0;
fail:
	if (msg)
		*msg = why ? why : lunfs_strerror(r);
	if (v->d)
		pr_unmount(v);
	vol_destroy(v);
	return r;
}

static void vol_free(struct lunfs_vol *v)
{
	vol_cache_drop_lock(v, 0);
	while (v->locks) {
		struct held *h = v->locks;
		v->locks = h->next;
		free(h);
	}
	while (v->ofiles) {
		struct ofile *of = v->ofiles;
		v->ofiles = of->next;
		free(of->mapc);
		pthread_mutex_destroy(&of->mapmu);
		free(of);
	}
	while (v->truncs) { /* a failed truncate's listing: on disk still */
		struct trunc_ref *t = v->truncs;
		v->truncs = t->next;
		free(t);
	}
	vol_destroy(v);
}

static void stop_linger(struct lunfs_vol *v)
{
	if (v->ro || v->linger_joined)
		return;
	pthread_mutex_lock(&v->mu);
	v->stop = 1;
	pthread_cond_broadcast(&v->linger_cv);
	pthread_mutex_unlock(&v->mu);
	pthread_join(v->linger_thr, NULL);
	v->linger_joined = 1;
}

int lunfs_unmount(struct lunfs_vol *v)
{
	int r = 0, e;
	if (!v)
		return -EINVAL;
	aio_stop(v);
	recover_stop(v);
	stop_linger(v);
	if (!v->ro) {
		pthread_mutex_lock(&v->mu);
		if (hb_ok(v->hb) == 0) {
			r = jnl_checkpoint(v->j);
			for (struct held *h = v->locks; h; h = h->next)
				h->pins = 0;
			while (v->locks)
				if ((e = vl_release(v, v->locks)) && !r)
					r = e;
			if ((e = jnl_close(v->j)) && !r)
				r = e;
		} else {
			jnl_abandon(v->j);
			r = -EFENCED;
		}
		pthread_mutex_unlock(&v->mu);
		if ((e = hb_release(v->hb)) && !r)
			r = e;
		if (r != -EFENCED)
			pr_unmount(v);
	}
	vol_free(v);
	return r;
}

void lunfs_abandon(struct lunfs_vol *v)
{
	aio_stop(v);
	recover_stop(v);
	stop_linger(v);
	if (!v->ro) {
		jnl_abandon(v->j);
		hb_abandon(v->hb);
	}
	vol_free(v);
}

void lunfs_retire(struct lunfs_vol *v)
{
	aio_stop(v);
	recover_stop(v);
	stop_linger(v);
	pthread_mutex_lock(&v->mu);
	vol_cache_drop_lock(v, 0);
	of_invalidate(v, 0);
	pthread_mutex_unlock(&v->mu);
}

void lunfs_dev_stats(struct lunfs_vol *v, struct dev_stats *st)
{
	dev_get_stats(v->d, st);
}

struct dev *lunfs_device(struct lunfs_vol *v)
{
	return v->d;
}

void lunfs_test_set_pend_max(struct lunfs_vol *v, unsigned n)
{
	pthread_mutex_lock(&v->mu);
	jnl_test_set_pend_max(v->j, n);
	pthread_mutex_unlock(&v->mu);
}

void lunfs_test_jnl_counters(struct lunfs_vol *v, struct jnl_counters *c)
{
	jnl_get_counters(v->j, c);
}

void lunfs_test_no_early_checkpoints(struct lunfs_vol *v)
{
	jnl_test_no_early_checkpoints(v->j);
}

void lunfs_test_mu_io(struct lunfs_vol *v, uint64_t out[5])
{
	for (int i = 0; i < 5; i++)
		out[i] = v->mu_io[i];
}

int lunfs_test_stepping(struct lunfs_file *f)
{
	pthread_mutex_lock(&f->v->mu);
	int st = f->of->stepping;
	pthread_mutex_unlock(&f->v->mu);
	return st;
}

void lunfs_test_drain_state(struct lunfs_vol *v, unsigned *draining, unsigned *parked)
{
	pthread_mutex_lock(&v->mu);
	*draining = __atomic_load_n(&v->draining, __ATOMIC_SEQ_CST);
	*parked = v->tx_parked;
	pthread_mutex_unlock(&v->mu);
}

int lunfs_test_file_listed(struct lunfs_file *f)
{
	int listed = 0;
	pthread_mutex_lock(&f->v->mu);
	for (struct ofile *of = f->v->ofiles; of; of = of->next)
		listed |= of == f->of;
	pthread_mutex_unlock(&f->v->mu);
	return listed;
}
