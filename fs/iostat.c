/* Data I/O statistics for lunfs top: per volume and per open file, counted
 * around every data request (lunfs_pread, lunfs_pwrite, and the completion
 * of lunfs_aio_start), published through the heartbeat slot
 * (docs/FORMAT.md, "Published I/O statistics").
 *
 * The counters are atomics, updated without a lock by the threads doing the
 * I/O and by the aio completion thread; the linger thread samples them
 * under v->mu (which keeps the open-file list still).  A sample is not one
 * consistent snapshot: a request may be counted in ops but not yet in
 * bytes.  lunfs top derives rates from two samples, so the error is one
 * request.
 */
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "fs/internal.h"

/* The open file whose request this thread serves: lock waits count for it. */
static __thread struct iostat *cur_file;

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + ts.tv_nsec;
}

static void add(uint64_t *p, uint64_t n)
{
	__atomic_add_fetch(p, n, __ATOMIC_RELAXED);
}

static uint64_t get(const uint64_t *p)
{
	return __atomic_load_n(p, __ATOMIC_RELAXED);
}

static void raise_max(uint64_t *p, uint64_t n)
{
	uint64_t m = get(p);
	while (n > m && !__atomic_compare_exchange_n(p, &m, n, 1, __ATOMIC_RELAXED, __ATOMIC_RELAXED))
		;
}

uint64_t ios_begin(struct lunfs_vol *v, struct ofile *of)
{
	add(&v->io.inflight, 1);
	if (of)
		add(&of->io.inflight, 1);
	return now_ns();
}

static void count(struct iostat *s, int write, int64_t res, uint64_t ns)
{
	if (res >= 0) {
		add(write ? &s->wr_ops : &s->rd_ops, 1);
		add(write ? &s->wr_bytes : &s->rd_bytes, (uint64_t)res);
		add(write ? &s->wr_ns : &s->rd_ns, ns);
		raise_max(&s->max_ns, ns);
	}
	__atomic_sub_fetch(&s->inflight, 1, __ATOMIC_RELAXED);
}

void ios_end(struct lunfs_vol *v, struct ofile *of, int write, int64_t res, uint64_t t0)
{
	uint64_t ns = now_ns() - t0;
	count(&v->io, write, res, ns);
	if (of)
		count(&of->io, write, res, ns);
}

void ios_lock_wait(struct lunfs_vol *v, uint64_t ns)
{
	add(&v->io.lk_waits, 1);
	add(&v->io.lk_wait_ns, ns);
	if (cur_file) {
		add(&cur_file->lk_waits, 1);
		add(&cur_file->lk_wait_ns, ns);
	}
}

/* Reads s into out; the longest latency starts again with the next
 * publication. */
static void take(struct iostat *s, struct lunfs_iostat *out)
{
	out->rd_ops = get(&s->rd_ops);
	out->wr_ops = get(&s->wr_ops);
	out->rd_bytes = get(&s->rd_bytes);
	out->wr_bytes = get(&s->wr_bytes);
	out->rd_ns = get(&s->rd_ns);
	out->wr_ns = get(&s->wr_ns);
	out->max_ns = __atomic_exchange_n(&s->max_ns, 0, __ATOMIC_RELAXED);
	out->inflight = get(&s->inflight);
	out->lk_waits = get(&s->lk_waits);
	out->lk_wait_ns = get(&s->lk_wait_ns);
}

struct ranked {
	struct ofile *of;
	uint64_t recent, ops;
};

/* Busiest first: requests since the last publication, then in flight now,
 * then since the open. */
static int by_recent(const void *a, const void *b)
{
	const struct ranked *x = a, *y = b;
	if (x->recent != y->recent)
		return x->recent < y->recent ? 1 : -1;
	uint64_t fx = get(&x->of->io.inflight), fy = get(&y->of->io.inflight);
	if (fx != fy)
		return fx < fy ? 1 : -1;
	return x->ops < y->ops ? 1 : x->ops > y->ops ? -1 : 0;
}

void ios_sample(struct lunfs_vol *v, struct lunfs_hbstat *st)
{
	VOL_HELD(v);
	memset(st, 0, sizeof(*st));
	st->mono_ms = lunfs_now_ms();
	take(&v->io, &st->host);
	size_t n = 0, cap = 0;
	struct ranked *r = NULL;
	for (struct ofile *of = v->ofiles; of; of = of->next) {
		uint64_t ops = get(&of->io.rd_ops) + get(&of->io.wr_ops);
		if (!ops && !get(&of->io.inflight))
			continue; /* no data I/O since it was opened (a directory...) */
		if (n == cap) {
			struct ranked *nr = realloc(r, (cap = cap ? 2 * cap : 64) * sizeof(*r));
			if (!nr)
				break;
			r = nr;
		}
		r[n++] = (struct ranked){of, ops - of->io.pub_ops, ops};
	}
	if (n)
		qsort(r, n, sizeof(*r), by_recent);
	for (size_t i = 0; i < n; i++) {
		if (i < LUNFS_HBSTAT_FILES) {
			st->files[i].ino = r[i].of->ino;
			take(&r[i].of->io, &st->files[i].io);
			st->nfiles++;
		}
		r[i].of->io.pub_ops = r[i].ops;
	}
	free(r);
}

struct iostat *ios_serve(struct iostat *io)
{
	struct iostat *outer = cur_file;
	cur_file = io;
	return outer;
}
