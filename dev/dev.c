/* Generic device layer: URL dispatch, argument checks, I/O counters. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "dev_impl.h"

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

uint64_t dev_size(const struct dev *d) { return d->size; }
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
	if (off > d->size || len > d->size - off)
		return -ENOSPC;
	return 0;
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
	if (op == DEV_OP_READ) {
		d->st.reads++;
		d->st.read_bytes += len;
	} else {
		d->st.writes++;
		d->st.write_bytes += len;
	}
	if (op == DEV_OP_WRITE && (r = dev_guard(d)))
		return r;
	r = d->ops->rw(d, op, off, iov, iovcnt);
	return op == DEV_OP_WRITE ? fenced(d, r) : r;
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
	d->st.flushes++;
	/* numbered when it starts: it covers every write completed before */
	uint64_t me = ++d->flush_started;
	int r = fenced(d, d->ops->flush(d));
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
	int r = check_range(d, off, len);
	if (r)
		return r;
	if (d->readonly)
		return -EROFS;
	if (!len)
		return -EINVAL;
	d->st.caws++;
	if ((r = dev_guard(d)))
		return r;
	r = d->ops->caw(d, off, cmp, data, len, cur);
	if (r == -EMISCOMPARE)
		d->st.miscompares++;
	return fenced(d, r);
}

int dev_generic_zero(struct dev *d, uint64_t off, uint64_t len)
{
	const size_t chunk = 1 << 20;
	void *z = dev_alloc(chunk);
	int r = 0;
	if (!z)
		return -ENOMEM;
	while (len && !r) {
		size_t n = len < chunk ? len : chunk;
		struct iovec v = {z, n};
		r = dev_guard(d);
		if (!r)
			r = d->ops->rw(d, DEV_OP_WRITE, off, &v, 1);
		off += n;
		len -= n;
	}
	free(z);
	return r;
}

int dev_zero(struct dev *d, uint64_t off, uint64_t len)
{
	int r = check_range(d, off, len);
	if (r)
		return r;
	if (d->readonly)
		return -EROFS;
	d->st.zeroes++;
	if ((r = dev_guard(d)))
		return r;
	return fenced(d, d->ops->zero ? d->ops->zero(d, off, len) : dev_generic_zero(d, off, len));
}

int dev_submit(struct dev *d, struct dev_io **ios, unsigned n)
{
	int writes = 0;
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
		if (io->op == DEV_OP_READ) {
			d->st.reads++;
			d->st.read_bytes += len;
		} else if (io->op == DEV_OP_WRITE) {
			writes = 1;
			d->st.writes++;
			d->st.write_bytes += len;
		} else {
			d->st.flushes++;
		}
	}
	int r = writes ? dev_guard(d) : 0;
	return r ? r : d->ops->submit(d, ios, n);
}

int dev_reap(struct dev *d, unsigned min, struct dev_io **out, unsigned max)
{
	int n = d->ops->reap(d, min, out, max);
	for (int i = 0; i < n; i++)
		if (out[i]->op != DEV_OP_READ && out[i]->res == -EACCES)
			out[i]->res = fenced(d, -EACCES);
	return n;
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
