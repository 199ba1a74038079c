/* The completion-driven data path (lunfs_aio_start), for a daemon that serves
 * many requests at once (the FUSE daemon).
 *
 * A plain read or write of mapped blocks (file_aio_map) goes to the device
 * queue from the caller's thread, and its callback runs on the volume's
 * completion thread when the device is done: N requests in flight in the
 * daemon are N at the device, and no daemon thread sleeps in the device
 * meanwhile (a thread per request in flight, each sleeping and waking twice,
 * cost more CPU than the I/O itself on a small machine).  Everything else
 * (holes to fill, unaligned or partial ranges, the end of the file, a device
 * whose queue is not shared, DEV_CAP_ASYNC_MT) runs synchronously in the
 * caller, through lunfs_pread and lunfs_pwrite, and calls back before
 * lunfs_aio_start returns.
 *
 * Safety is the synchronous path's: the mapping is looked up and the request
 * registered as a data I/O (io_enter) under v->mu, so no block is freed
 * while a request is on its way to it (tx_drain waits for io_exit, which the
 * completion thread calls); the device's write guard checks the lease right
 * before the submission (dev_submit), and a refused submission goes the
 * synchronous way, which reports the fence.
 *
 * Locks: e->inflight is atomic; e->mu only orders the sleeps on it (the
 * completion thread waiting for work, aio_stop for the last completion).
 * It nests inside nothing and is never held across device I/O or a
 * callback.  The device's submission
 * side has its own lock (dev/file.c sq_mu); one thread reaps.
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <unistd.h>
#include "fs/internal.h"

struct aeng {
	struct lunfs_vol *v;
	pthread_mutex_t mu;
	pthread_cond_t cv;     /* inflight became non-zero, or stop */
	pthread_cond_t idle;   /* inflight reached 0 */
	/* device requests counted after dev_submit took them, minus those
	 * reaped: never above the device's own count, so the completion thread
	 * waits in dev_reap only for requests that are in flight; below 0 for a
	 * moment when a request completes before its submitter counted it */
	int inflight;          /* atomic; waited for under mu */
	int stop;
	pthread_t thr;
};

struct areq {
	struct areq *next;     /* a loop's free list */
	struct lunfs_aio *a;
	lunfs_aio_done done;
	struct lunfs_vol *v;   /* for the statistics (ios_end) */
	struct ofile *of;
	uint64_t t0;           /* ios_begin */
	int pending;           /* device requests not completed (atomic) */
	int64_t err;
	struct dev_io io[2];
	struct iovec iov[2];
};

/* Signals cv under e->mu, so a waiter that checked the count under e->mu
 * cannot miss it. */
static void wake(struct aeng *e, pthread_cond_t *cv)
{
	pthread_mutex_lock(&e->mu);
	pthread_cond_broadcast(cv);
	pthread_mutex_unlock(&e->mu);
}

/* Starts rq's bookkeeping for a on f, in nd device requests. */
static void areq_begin(struct areq *rq, struct lunfs_file *f, struct lunfs_aio *a,
		       lunfs_aio_done done, int nd)
{
	rq->a = a;
	rq->done = done;
	rq->pending = nd;
	rq->v = f->v;
	rq->of = f->of;
	rq->t0 = ios_begin(f->v, f->of);
}

/* Ends rq's request: its result, the statistics, the caller's callback. */
static void complete(struct areq *rq)
{
	struct lunfs_aio *a = rq->a;
	a->res = rq->err ? rq->err : (ssize_t)a->len;
	ios_end(rq->v, rq->of, a->op == LUNFS_AIO_WRITE, a->res, rq->t0);
	rq->done(a);
}

static void finish(struct areq *rq)
{
	complete(rq);
	free(rq);
}

static void *completions(void *arg)
{
	struct aeng *e = arg;
	struct lunfs_vol *v = e->v;
	struct dev_io *ios[64];
	for (;;) {
		if (__atomic_load_n(&e->inflight, __ATOMIC_ACQUIRE) <= 0) {
			pthread_mutex_lock(&e->mu);
			while (__atomic_load_n(&e->inflight, __ATOMIC_ACQUIRE) <= 0 && !e->stop)
				pthread_cond_wait(&e->cv, &e->mu);
			int stop = __atomic_load_n(&e->inflight, __ATOMIC_ACQUIRE) <= 0;
			pthread_mutex_unlock(&e->mu);
			if (stop)
				break;
		}
		int n = dev_reap(v->d, 1, ios, 64);
		if (n <= 0)
			continue; /* -EINTR: the requests are still in flight */
		struct areq *fin[64];
		int nfin = 0;
		for (int k = 0; k < n; k++) {
			struct areq *rq = ios[k]->priv;
			if (ios[k]->res < 0)
				rq->err = ios[k]->res;
			if (__atomic_sub_fetch(&rq->pending, 1, __ATOMIC_ACQ_REL) == 0)
				fin[nfin++] = rq;
		}
		io_exit_n(v, nfin);
		if (__atomic_sub_fetch(&e->inflight, n, __ATOMIC_ACQ_REL) == 0)
			wake(e, &e->idle);
		for (int k = 0; k < nfin; k++)
			finish(fin[k]);
	}
	return NULL;
}

/* The engine of v, started on first use; NULL when the device queue cannot
 * be shared or is taken by a lunfs_ioq. */
static struct aeng *engine(struct lunfs_vol *v)
{
	pthread_mutex_lock(&v->mu);
	struct aeng *e = v->aeng;
	if (e || v->ioq_busy || !(dev_caps(v->d) & DEV_CAP_ASYNC_MT))
		goto out;
	e = calloc(1, sizeof(*e));
	if (!e)
		goto out;
	e->v = v;
	pthread_mutex_init(&e->mu, NULL);
	pthread_cond_init(&e->cv, NULL);
	pthread_cond_init(&e->idle, NULL);
	if (pthread_create(&e->thr, NULL, completions, e)) {
		pthread_cond_destroy(&e->idle);
		pthread_cond_destroy(&e->cv);
		pthread_mutex_destroy(&e->mu);
		free(e);
		e = NULL;
		goto out;
	}
	v->aeng = e;
	v->ioq_busy = 1;
out:
	pthread_mutex_unlock(&v->mu);
	return e;
}

static void run_sync(struct lunfs_file *f, struct lunfs_aio *a, lunfs_aio_done done)
{
	a->res = a->op == LUNFS_AIO_READ ? lunfs_pread(f, a->buf, a->len, a->off)
					 : lunfs_pwrite(f, a->buf, a->len, a->off);
	done(a);
}

void lunfs_aio_start(struct lunfs_file *f, struct lunfs_aio *a, lunfs_aio_done done)
{
	struct lunfs_vol *v = f->v;
	if (a->op != LUNFS_AIO_READ && a->op != LUNFS_AIO_WRITE) {
		a->res = -EINVAL;
		done(a);
		return;
	}
	struct aeng *e = engine(v);
	struct areq *rq = e ? calloc(1, sizeof(*rq)) : NULL;
	int nd = rq ? file_aio_map(f, a, rq->io, rq->iov, rq, 0) : 0;
	if (!nd) {
		free(rq);
		run_sync(f, a, done);
		return;
	}
	areq_begin(rq, f, a, done, nd);
	struct dev_io *ios[2] = {&rq->io[0], &rq->io[1]};
	int r = dev_submit(v->d, ios, nd);
	if (r > 0) {
		int now = __atomic_add_fetch(&e->inflight, r, __ATOMIC_ACQ_REL);
		if (now > 0 && now <= r)
			wake(e, &e->cv); /* it may be waiting for work */
		else if (!now)
			wake(e, &e->idle);
	}
	if (r == nd)
		return;
	/* Refused (a full queue; a write after the lease ran out, or of a
	 * fenced host): nothing, or only a part (not with the file backend),
	 * is in flight.  With nothing in flight the synchronous path serves a
	 * and says why; a part in flight completes with an error. */
	if (r <= 0) {
		io_exit(v);
		ios_end(v, rq->of, 0, -1, rq->t0); /* run_sync counts it */
		free(rq);
		run_sync(f, a, done);
		return;
	}
	rq->err = -EIO;
	if (__atomic_sub_fetch(&rq->pending, nd - r, __ATOMIC_ACQ_REL) == 0) {
		io_exit(v);
		finish(rq);
	}
}

void aio_stop(struct lunfs_vol *v)
{
	pthread_mutex_lock(&v->mu);
	struct aeng *e = v->aeng;
	v->aeng = NULL;
	pthread_mutex_unlock(&v->mu);
	if (!e)
		return;
	pthread_mutex_lock(&e->mu);
	/* the callers' requests all ended before this */
	while (__atomic_load_n(&e->inflight, __ATOMIC_ACQUIRE))
		pthread_cond_wait(&e->idle, &e->mu);
	e->stop = 1;
	pthread_cond_signal(&e->cv);
	pthread_mutex_unlock(&e->mu);
	pthread_join(e->thr, NULL);
	pthread_cond_destroy(&e->idle);
	pthread_cond_destroy(&e->cv);
	pthread_mutex_destroy(&e->mu);
	free(e);
	pthread_mutex_lock(&v->mu);
	v->ioq_busy = 0;
	pthread_mutex_unlock(&v->mu);
}

/* ---- lunfs_loop: an event loop's own queue ----
 *
 * The same requests as lunfs_aio_start's (file_aio_map, here from the map
 * cache only, so that trying never waits), on a device queue of the loop's
 * thread (dev_tq_*): that thread queues them, hands them to the device in
 * one batch, and reaps and calls back in lunfs_loop_run.  Safety is the
 * engine's: a request is registered as data I/O (io_enter_fast in
 * map_cached) before it is queued and leaves at its completion (io_exit),
 * so no block is freed under it; the device's write guard runs when a write
 * is queued and again right before the batch goes (dev_tq_run), and a write
 * it refuses completes with -EFENCED.  The loop is its thread's alone: no
 * lock.  Its requests come from a free list of its own.
 *
 * LOOP_BATCH: completions handled per lunfs_loop_run: the caller goes back to its
 * watched descriptor between batches, so that a burst of completions (a
 * batch the device took together) does not keep new requests waiting until
 * every reply is out. */
#define LOOP_BATCH 16

struct lunfs_loop {
	struct lunfs_vol *v;
	struct dev_tq *q;
	struct areq *free;
};

int lunfs_loop_open(struct lunfs_vol *v, struct lunfs_loop **out)
{
	struct lunfs_loop *l = calloc(1, sizeof(*l));
	*out = NULL;
	if (!l)
		return -ENOMEM;
	int r = dev_tq_open(v->d, &l->q);
	if (r) {
		free(l);
		return r;
	}
	l->v = v;
	*out = l;
	return 0;
}

int lunfs_loop_watch(struct lunfs_loop *l, int fd)
{
	return dev_tq_watch(l->q, fd);
}

static void loop_put(struct lunfs_loop *l, struct areq *rq)
{
	rq->next = l->free;
	l->free = rq;
}

int lunfs_loop_try(struct lunfs_loop *l, struct lunfs_file *f, struct lunfs_aio *a,
		   lunfs_aio_done done)
{
	struct lunfs_vol *v = l->v;
	if ((a->op != LUNFS_AIO_READ && a->op != LUNFS_AIO_WRITE) || f->v != v)
		return 0;
	struct areq *rq = l->free;
	if (rq)
		l->free = rq->next;
	else if (!(rq = malloc(sizeof(*rq))))
		return 0;
	*rq = (struct areq){0};
	int nd = file_aio_map(f, a, rq->io, rq->iov, rq, 1);
	if (!nd) {
		loop_put(l, rq);
		return 0;
	}
	struct dev_io *ios[2] = {&rq->io[0], &rq->io[1]};
	if (dev_tq_submit(l->q, ios, nd) != nd) {
		/* a full queue, or refused (a fenced host: the synchronous path
		 * says so) */
		io_exit(v);
		loop_put(l, rq);
		return 0;
	}
	areq_begin(rq, f, a, done, nd);
	return 1;
}

int lunfs_loop_run(struct lunfs_loop *l, int timeout_ms)
{
	struct lunfs_vol *v = l->v;
	struct dev_io *ios[LOOP_BATCH];
	struct areq *fin[LOOP_BATCH];
	int fired, nfin = 0;
	int n = dev_tq_run(l->q, timeout_ms, ios, LOOP_BATCH, &fired);
	if (n < 0)
		return n;
	for (int k = 0; k < n; k++) {
		struct areq *rq = ios[k]->priv;
		if (ios[k]->res < 0)
			rq->err = ios[k]->res;
		if (!--rq->pending)
			fin[nfin++] = rq;
	}
	io_exit_n(v, nfin);
	for (int k = 0; k < nfin; k++) {
		complete(fin[k]);
		loop_put(l, fin[k]);
	}
	return fired;
}

void lunfs_loop_close(struct lunfs_loop *l)
{
	if (!l)
		return;
	/* however long it takes: a request given up would stay registered as
	 * data I/O (every free would wait for it) and its buffer in use */
	while (dev_tq_inflight(l->q))
		if (lunfs_loop_run(l, 100) < 0)
			usleep(1000);
	dev_tq_close(l->q);
	for (struct areq *rq = l->free, *nx; rq; rq = nx) {
		nx = rq->next;
		free(rq);
	}
	free(l);
}
