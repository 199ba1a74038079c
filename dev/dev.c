/* Generic device layer: URL dispatch, argument checks, I/O counters. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>
#include "dev/dev_impl.h"
#include "util/log.h"

/* The counters are bumped by every thread doing I/O: relaxed atomics (they
 * order nothing, they only must not lose counts). */
#define STAT_ADD(d, field, n) __atomic_fetch_add(&(d)->st.field, (n), __ATOMIC_RELAXED)

static __thread char last_error[256];

void dev_set_error(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(last_error, sizeof(last_error), fmt, ap);
	va_end(ap);
}

const char *dev_last_error(void)
{
	return last_error;
}

int dev_open(const char *url, const struct dev_opts *opts, struct dev **out)
{
	struct dev_opts dflt = {0};
	int r;

	last_error[0] = 0;
	if (!opts)
		opts = &dflt;
	if (!url || !*url) {
		dev_set_error("empty device name");
		return -EINVAL;
	}
	if (!strncmp(url, "iscsi://", 8))
		r = dev_iscsi_open(url, opts, out);
	else if (!strncmp(url, "file:", 5))
		r = dev_file_open(url + 5, opts, out);
	else if (strstr(url, "://")) {
		dev_set_error("%s: unknown URL scheme (use iscsi:// or a path)", url);
		return -EINVAL;
	} else
		r = dev_file_open(url, opts, out);
	if (r < 0)
		return r;
	(*out)->readonly = opts->readonly;
	if (!(*out)->url)
		(*out)->url = strdup(url);
	return 0;
}

void dev_close(struct dev *d)
{
	if (!d)
		return;
	char *url = d->url;
	struct dev_io **done = d->done;
	d->ops->close(d);
	free(url);
	free(done);
}

uint64_t dev_size(const struct dev *d) { return __atomic_load_n(&d->size, __ATOMIC_ACQUIRE); }

int dev_refresh_size(struct dev *d)
{
	uint64_t n;
	if (!d->ops->size)
		return 0;
	int r = d->ops->size(d, &n);
	if (r)
		return r;
	n -= n % d->lbs;
	/* only ever larger: check_range's unlocked read of the old size stays safe */
	if (n > dev_size(d))
		__atomic_store_n(&d->size, n, __ATOMIC_RELEASE);
	return 0;
}
uint32_t dev_lbs(const struct dev *d) { return d->lbs; }
unsigned dev_caps(const struct dev *d) { return d->caps; }
const char *dev_backend(const struct dev *d) { return d->ops->name; }
const char *dev_url(const struct dev *d) { return d->url; }

void *dev_alloc(size_t len)
{
	void *p;
	size_t l = (len + DEV_BUF_ALIGN - 1) & ~(size_t)(DEV_BUF_ALIGN - 1);
	if (posix_memalign(&p, DEV_BUF_ALIGN, l ? l : DEV_BUF_ALIGN))
		return NULL;
	memset(p, 0, l ? l : DEV_BUF_ALIGN);
	return p;
}

/* Range check shared by every I/O entry point: whole blocks, inside the device. */
static int check_range(const struct dev *d, uint64_t off, uint64_t len)
{
	if (off % d->lbs || len % d->lbs)
		return -EINVAL;
	uint64_t size = dev_size(d);
	if (off > size || len > size - off)
		return -ENOSPC;
	return 0;
}

/* check_range, and the device must be writable. */
static int check_write(const struct dev *d, uint64_t off, uint64_t len)
{
	int r = check_range(d, off, len);
	return r ? r : d->readonly ? -EROFS : 0;
}

void dev_set_fence_hook(struct dev *d, void (*fn)(void *arg), void *arg)
{
	d->fenced_arg = arg;
	d->on_fenced = fn;
}

void dev_set_guard(struct dev *d, int (*fn)(void *arg), void *arg)
{
	d->guard = NULL;
	d->guard_arg = arg;
	d->guard = fn;
}

void dev_set_caw_break_ms(struct dev *d, uint32_t ms)
{
	d->caw_break_ms = ms;
}

/* The result of a write-type request: RESERVATION CONFLICT on a device with
 * persistent reservations means we were preempted (dev/iscsi.c tells a
 * peer's short SCSI-2 reservation apart and retries that). */
static int fenced(struct dev *d, int r)
{
	if (r != -EACCES || !(d->caps & DEV_CAP_PR))
		return r;
	if (d->on_fenced)
		d->on_fenced(d->fenced_arg);
	return -EFENCED;
}

/* A write the storage under the device refused for lack of space (an
 * image file on a full host filesystem, a thin LUN out of space): said
 * once, with what to do, then at most every FULL_SAY_MS with the count of
 * writes refused meanwhile; the callers see ENOSPC every time. */
#define FULL_SAY_MS 600000u
static int full(struct dev *d, int r)
{
	if (r != -ENOSPC)
		return r;
	uint64_t n = atomic_fetch_add(&d->nfull, 1) + 1;
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	uint64_t now = (uint64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000 + 1;
	uint64_t said = atomic_load(&d->full_said_ms);
	if (said && now - said < FULL_SAY_MS)
		return r;
	if (!atomic_compare_exchange_strong(&d->full_said_ms, &said, now))
		return r; /* another thread says it */
	uint64_t before = atomic_exchange(&d->full_said_n, n);
	if (!said)
		lunfs_log(LOG_ERR, "lunfs: the storage under %s is full (a write failed with ENOSPC): "
			  "free space on it or grow it; further failures are counted here every "
			  "%u minutes", d->url, FULL_SAY_MS / 60000);
	else
		lunfs_log(LOG_ERR, "lunfs: the storage under %s is still full: %llu more write(s) "
			  "failed with ENOSPC: free space on it or grow it", d->url,
			  (unsigned long long)(n - before));
	return r;
}

static void probe(struct dev *d, int op)
{
	void (*fn)(void *, int) = d->probe;
	if (fn)
		fn(d->probe_arg, op);
}

void dev_set_probe(struct dev *d, void (*fn)(void *arg, int op), void *arg)
{
	d->probe = NULL;
	d->probe_arg = arg;
	d->probe = fn;
}

static int do_rw(struct dev *d, int op, uint64_t off, const struct iovec *iov, int iovcnt)
{
	size_t len = dev_iov_len(iov, iovcnt);
	int r = check_range(d, off, len);
	if (r)
		return r;
	if (op == DEV_OP_WRITE && d->readonly)
		return -EROFS;
	if (len == 0)
		return 0;
	probe(d, op);
	if (op == DEV_OP_READ) {
		STAT_ADD(d, reads, 1);
		STAT_ADD(d, read_bytes, len);
	} else {
		STAT_ADD(d, writes, 1);
		STAT_ADD(d, write_bytes, len);
	}
	if (op == DEV_OP_WRITE && (r = dev_guard(d)))
		return r;
	r = d->ops->rw(d, op, off, iov, iovcnt);
	return op == DEV_OP_WRITE ? full(d, fenced(d, r)) : r;
}

int dev_readv(struct dev *d, uint64_t off, const struct iovec *iov, int iovcnt)
{
	return do_rw(d, DEV_OP_READ, off, iov, iovcnt);
}

int dev_writev(struct dev *d, uint64_t off, const struct iovec *iov, int iovcnt)
{
	return do_rw(d, DEV_OP_WRITE, off, iov, iovcnt);
}

int dev_read(struct dev *d, uint64_t off, void *buf, size_t len)
{
	struct iovec v = {buf, len};
	return do_rw(d, DEV_OP_READ, off, &v, 1);
}

int dev_write(struct dev *d, uint64_t off, const void *buf, size_t len)
{
	struct iovec v = {(void *)buf, len};
	return do_rw(d, DEV_OP_WRITE, off, &v, 1);
}

int dev_flush(struct dev *d)
{
	if (d->readonly)
		return 0;
	probe(d, DEV_OP_FLUSH);
	STAT_ADD(d, flushes, 1);
	/* numbered when it starts: it covers every write completed before */
	uint64_t me = ++d->flush_started;
	int r = full(d, fenced(d, d->ops->flush(d)));
	if (!r) {
		uint64_t done = d->flush_done;
		while (done < me && !atomic_compare_exchange_weak(&d->flush_done, &done, me))
			;
	}
	return r;
}

uint64_t dev_flush_mark(struct dev *d)
{
	return d->flush_started;
}

int dev_flushed_since(struct dev *d, uint64_t mark)
{
	return d->flush_done > mark;
}

int dev_caw(struct dev *d, uint64_t off, const void *cmp, const void *data, size_t len,
	    void *cur)
{
	int r = check_write(d, off, len);
	if (r)
		return r;
	if (!len)
		return -EINVAL;
	probe(d, DEV_OP_CAW);
	STAT_ADD(d, caws, 1);
	if ((r = dev_guard(d)))
		return r;
	r = d->ops->caw(d, off, cmp, data, len, cur);
	if (r == -EMISCOMPARE)
		STAT_ADD(d, miscompares, 1);
	return full(d, fenced(d, r));
}

int dev_generic_zero(struct dev *d, uint64_t off, uint64_t len)
{
	const size_t chunk = 1 << 20;
	void *z = dev_alloc(chunk);
	int r = 0;
	if (!z)
		return -ENOMEM;
	while (len) {
		size_t n = len < chunk ? len : chunk;
		struct iovec v = {z, n};
		if ((r = dev_guard(d)) || (r = d->ops->rw(d, DEV_OP_WRITE, off, &v, 1)))
			break;
		off += n;
		len -= n;
	}
	free(z);
	return r;
}

int dev_zero(struct dev *d, uint64_t off, uint64_t len)
{
	int r = check_write(d, off, len);
	if (r)
		return r;
	probe(d, DEV_OP_ZERO);
	STAT_ADD(d, zeroes, 1);
	if ((r = dev_guard(d)))
		return r;
	return full(d, fenced(d, d->ops->zero ? d->ops->zero(d, off, len)
					    : dev_generic_zero(d, off, len)));
}

int dev_reserve(struct dev *d, uint64_t off, uint64_t len)
{
	int r = check_write(d, off, len);
	if (r)
		return r;
	/* it changes the device (allocation, not bytes): a write site like any
	 * other, checked against the lease right before it is issued */
	if ((r = dev_guard(d)))
		return r;
	return d->ops->reserve ? d->ops->reserve(d, off, len) : -EOPNOTSUPP;
}

/* Checks a batch for dev_submit and dev_tq_submit and counts it; sets
 * *writes when it holds a write.  0 or the first request's error (nothing
 * counted then). */
static int check_batch(struct dev *d, struct dev_io **ios, unsigned n, int *writes)
{
	*writes = 0;
	for (unsigned i = 0; i < n; i++) {
		struct dev_io *io = ios[i];
		size_t len = io->op == DEV_OP_FLUSH ? 0 : dev_iov_len(io->iov, io->iovcnt);
		int r = io->op == DEV_OP_FLUSH ? 0 : check_range(d, io->off, len);
		if (!r && io->op == DEV_OP_WRITE && d->readonly)
			r = -EROFS;
		if (!r && io->op != DEV_OP_READ && io->op != DEV_OP_WRITE && io->op != DEV_OP_FLUSH)
			r = -EINVAL;
		if (r)
			return r;
	}
	for (unsigned i = 0; i < n; i++) {
		struct dev_io *io = ios[i];
		size_t len = io->op == DEV_OP_FLUSH ? 0 : dev_iov_len(io->iov, io->iovcnt);
		if (io->op == DEV_OP_READ) {
			STAT_ADD(d, reads, 1);
			STAT_ADD(d, read_bytes, len);
		} else if (io->op == DEV_OP_WRITE) {
			*writes = 1;
			STAT_ADD(d, writes, 1);
			STAT_ADD(d, write_bytes, len);
		} else {
			STAT_ADD(d, flushes, 1);
		}
	}
	return 0;
}

/* What a reaped request's error means for the device (dev_reap, dev_tq_run):
 * a refused write fences, a full storage is said. */
static void reaped(struct dev *d, struct dev_io **out, int n)
{
	for (int i = 0; i < n; i++) {
		if (out[i]->op != DEV_OP_READ && out[i]->res == -EACCES)
			out[i]->res = fenced(d, -EACCES);
		if (out[i]->op != DEV_OP_READ && out[i]->res == -ENOSPC)
			full(d, -ENOSPC);
	}
}

int dev_submit(struct dev *d, struct dev_io **ios, unsigned n)
{
	int writes, r = check_batch(d, ios, n, &writes);
	if (!r && writes)
		r = dev_guard(d);
	return r ? r : d->ops->submit(d, ios, n);
}

int dev_reap(struct dev *d, unsigned min, struct dev_io **out, unsigned max)
{
	int n = d->ops->reap(d, min, out, max);
	reaped(d, out, n);
	return n;
}

int dev_tq_open(struct dev *d, struct dev_tq **out)
{
	*out = NULL;
	if (!d->ops->tq_open || !(d->caps & DEV_CAP_ASYNC_MT))
		return -EOPNOTSUPP;
	int r = d->ops->tq_open(d, out);
	if (!r)
		(*out)->d = d;
	return r;
}

int dev_tq_watch(struct dev_tq *q, int fd)
{
	return q->d->ops->tq_watch(q, fd);
}

int dev_tq_submit(struct dev_tq *q, struct dev_io **ios, unsigned n)
{
	struct dev *d = q->d;
	int writes, r = check_batch(d, ios, n, &writes);
	if (!r && writes)
		r = dev_guard(d);
	if (!r && (r = d->ops->tq_submit(q, ios, n)) >= 0)
		q->inflight += n;
	return r;
}

int dev_tq_run(struct dev_tq *q, int timeout_ms, struct dev_io **out, unsigned max, int *fired)
{
	int n = q->d->ops->tq_run(q, timeout_ms, out, max, fired);
	if (n > 0) {
		q->inflight -= (unsigned)n;
		reaped(q->d, out, n);
	}
	return n;
}

unsigned dev_tq_inflight(const struct dev_tq *q)
{
	return q->inflight;
}

void dev_tq_close(struct dev_tq *q)
{
	if (!q)
		return;
	struct dev_io *out[64];
	int fired;
	/* nothing may outlive the queue: its requests point into the caller's
	 * memory */
	while (q->inflight)
		if (dev_tq_run(q, 100, out, 64, &fired) < 0)
			usleep(1000);
	q->d->ops->tq_close(q);
}

int dev_sync_submit(struct dev *d, struct dev_io **ios, unsigned n)
{
	if (d->ndone + n > d->done_cap) {
		unsigned cap = (d->ndone + n) * 2;
		struct dev_io **nd = realloc(d->done, cap * sizeof(*nd));
		if (!nd)
			return -ENOMEM;
		d->done = nd;
		d->done_cap = cap;
	}
	for (unsigned i = 0; i < n; i++) {
		struct dev_io *io = ios[i];
		int r;
		if (io->op == DEV_OP_FLUSH)
			r = d->ops->flush(d);
		else
			r = d->ops->rw(d, io->op, io->off, io->iov, io->iovcnt);
		io->res = r < 0 ? r : (int64_t)dev_iov_len(io->iov, io->iovcnt);
		d->done[d->ndone++] = io;
	}
	return n;
}

int dev_sync_reap(struct dev *d, unsigned min, struct dev_io **out, unsigned max)
{
	(void)min;
	unsigned n = d->ndone < max ? d->ndone : max;
	if (!n)
		return 0;
	memcpy(out, d->done, n * sizeof(*out));
	memmove(d->done, d->done + n, (d->ndone - n) * sizeof(*out));
	d->ndone -= n;
	return n;
}

#define PR_CALL(fn, ...)                                                                          \
	do {                                                                                      \
		if (!d->ops->fn)                                                                  \
			return -EOPNOTSUPP;                                                       \
		return d->ops->fn(d, __VA_ARGS__);                                               \
	} while (0)

int dev_pr_register(struct dev *d, uint64_t key) { PR_CALL(pr_register, key); }
int dev_pr_unregister(struct dev *d, uint64_t key) { PR_CALL(pr_unregister, key); }
int dev_pr_reserve(struct dev *d, uint64_t key, int type) { PR_CALL(pr_reserve, key, type); }
int dev_pr_preempt(struct dev *d, uint64_t key, uint64_t victim, int type)
{
	PR_CALL(pr_preempt, key, victim, type);
}
int dev_pr_read_keys(struct dev *d, uint64_t *keys, int max) { PR_CALL(pr_read_keys, keys, max); }

void dev_get_stats(const struct dev *d, struct dev_stats *o)
{
	o->reads = d->st.reads;
	o->writes = d->st.writes;
	o->flushes = d->st.flushes;
	o->caws = d->st.caws;
	o->zeroes = d->st.zeroes;
	o->read_bytes = d->st.read_bytes;
	o->write_bytes = d->st.write_bytes;
	o->miscompares = d->st.miscompares;
}

void dev_reset_stats(struct dev *d)
{
	d->st.reads = d->st.writes = d->st.flushes = d->st.caws = d->st.zeroes = 0;
	d->st.read_bytes = d->st.write_bytes = d->st.miscompares = 0;
}
