/* Internal to dev/: the backend table and the common device header. */
#ifndef LUNFS_DEV_IMPL_H
#define LUNFS_DEV_IMPL_H

#include <pthread.h>
#include <stdatomic.h>
#include "dev/dev.h"

struct dev_ops {
	const char *name;
	void (*close)(struct dev *d);
	/* Whole-range sync transfer; op is DEV_OP_READ or DEV_OP_WRITE. */
	int (*rw)(struct dev *d, int op, uint64_t off, const struct iovec *iov, int iovcnt);
	int (*flush)(struct dev *d);
	int (*caw)(struct dev *d, uint64_t off, const void *cmp, const void *data, size_t len,
		   void *cur);
	int (*zero)(struct dev *d, uint64_t off, uint64_t len); /* NULL: generic writes */
	int (*reserve)(struct dev *d, uint64_t off, uint64_t len); /* NULL: -EOPNOTSUPP */
	int (*submit)(struct dev *d, struct dev_io **ios, unsigned n);
	int (*reap)(struct dev *d, unsigned min, struct dev_io **out, unsigned max);
	/* A thread's own queue (dev_tq_*); NULL: -EOPNOTSUPP.  tq_submit gets
	 * checked requests (dev.c ran the guard for a batch with writes) and
	 * queues all or none; tq_run runs the guard again before it hands
	 * queued writes to the device. */
	int (*tq_open)(struct dev *d, struct dev_tq **out);
	int (*tq_watch)(struct dev_tq *q, int fd);
	int (*tq_submit)(struct dev_tq *q, struct dev_io **ios, unsigned n);
	int (*tq_run)(struct dev_tq *q, int timeout_ms, struct dev_io **out, unsigned max,
		      int *fired);
	void (*tq_close)(struct dev_tq *q);
	int (*pr_register)(struct dev *d, uint64_t key);
	int (*pr_unregister)(struct dev *d, uint64_t key);
	int (*pr_reserve)(struct dev *d, uint64_t key, int type);
	int (*pr_preempt)(struct dev *d, uint64_t key, uint64_t victim, int type);
	int (*pr_read_keys)(struct dev *d, uint64_t *keys, int max);
	/* The device's size now (it may have been enlarged).  NULL: fixed. */
	int (*size)(struct dev *d, uint64_t *size);
};

/* Every backend embeds this as its first member. */
struct dev {
	const struct dev_ops *ops;
	uint64_t size;
	uint32_t lbs;
	unsigned caps;
	int readonly;
	char *url;
	struct {
		_Atomic uint64_t reads, writes, flushes, caws, zeroes;
		_Atomic uint64_t read_bytes, write_bytes, miscompares;
	} st;
	void (*on_fenced)(void *arg); /* dev_set_fence_hook() */
	void *fenced_arg;
	int (*_Atomic guard)(void *arg); /* dev_set_guard() */
	void *_Atomic guard_arg;
	_Atomic uint32_t caw_break_ms; /* dev_set_caw_break_ms(); 0: the default */
	void (*_Atomic probe)(void *arg, int op); /* dev_set_probe() */
	void *_Atomic probe_arg;
	/* writes the storage refused with ENOSPC (full()): all, and when we last
	 * said so (CLOCK_MONOTONIC ms, 0 never) with how many by then */
	_Atomic uint64_t nfull, full_said_ms, full_said_n;
	/* dev_flush_mark(): flushes started, and the highest number of one
	 * that succeeded */
	_Atomic uint64_t flush_started, flush_done;
	/* Completed requests of dev_sync_submit(), waiting for dev_sync_reap(). */
	struct dev_io **done;
	unsigned ndone, done_cap;
};

/* Every backend's thread queue embeds this as its first member. */
struct dev_tq {
	struct dev *d;
	unsigned inflight; /* queued or submitted, not reaped */
};

/* Runs the write guard (dev_set_guard): 0, or the guard's refusal.  Backends
 * call it again right before the write of an emulated compare-and-write and
 * before every write they retry after a wait. */
static inline int dev_guard(struct dev *d)
{
	int (*fn)(void *) = d->guard;
	return fn ? fn(d->guard_arg) : 0;
}

/* The CAW break time in force (dev_set_caw_break_ms). */
static inline uint32_t dev_caw_break(const struct dev *d)
{
	uint32_t ms = d->caw_break_ms;
	return ms ? ms : DEV_CAW_BREAK_MS_DEFAULT;
}

/* Backend constructors.  They fill the struct dev header. */
int dev_file_open(const char *path, const struct dev_opts *o, struct dev **out);
int dev_iscsi_open(const char *url, const struct dev_opts *o, struct dev **out);

/* Sets the thread's dev_last_error() text (printf-style). */
void dev_set_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Generic fallbacks a backend may point its table at. */
int dev_generic_zero(struct dev *d, uint64_t off, uint64_t len);
/* Sync emulation of submit/reap: runs each request at submit time. */
int dev_sync_submit(struct dev *d, struct dev_io **ios, unsigned n);
int dev_sync_reap(struct dev *d, unsigned min, struct dev_io **out, unsigned max);

static inline size_t dev_iov_len(const struct iovec *iov, int n)
{
	size_t t = 0;
	for (int i = 0; i < n; i++)
		t += iov[i].iov_len;
	return t;
}

#endif
