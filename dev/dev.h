/* dev: one interface over the LUN.
 *
 * A device is opened by URL or path:
 *   iscsi://HOST[:PORT]/TARGET-IQN/LUN   libiscsi backend
 *   file:/path or /path                  image file or block device (O_DIRECT + io_uring)
 * The faulty backend (tests only) wraps another open device: dev/faulty.h.
 *
 * Every I/O works in whole logical blocks: offsets and lengths are in bytes
 * but must be multiples of dev_lbs(), and buffers must be aligned to
 * DEV_BUF_ALIGN (use dev_alloc()).  Sync calls are thread-safe.  The async
 * queue (dev_submit/dev_reap) belongs to one thread at a time, unless the
 * device has DEV_CAP_ASYNC_MT: then any threads may submit at once while
 * one thread reaps.
 *
 * Every function returns 0 (or a byte count) on success, or a negative errno
 * (see util/lerrno.h: -EMISCOMPARE for a compare-and-write that lost).
 */
#ifndef LUNFS_DEV_H
#define LUNFS_DEV_H

#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>
#include "util/lerrno.h"

#define DEV_BUF_ALIGN 4096

struct dev;

/* Capability flags, dev_caps(). */
enum {
	DEV_CAP_CAW_NATIVE = 1u << 0, /* SCSI COMPARE AND WRITE in the target */
	DEV_CAP_CAW_RESERVE = 1u << 1, /* CAW emulated under RESERVE(6)/RELEASE(6) */
	DEV_CAP_CAW_OFD = 1u << 2,     /* CAW emulated under an OFD byte-range lock */
	DEV_CAP_PR = 1u << 3,          /* SCSI-3 persistent reservations */
	DEV_CAP_ZERO = 1u << 4,        /* cheap zeroing (punch hole, WRITE SAME/UNMAP) */
	DEV_CAP_FAULTY = 1u << 5,      /* a test wrapper */
	DEV_CAP_ASYNC_MT = 1u << 7,    /* dev_submit from several threads at once,
					  dev_reap from one, concurrently */
	DEV_CAP_CAW_ARB = 1u << 6,     /* with CAW_OFD: under the shared-memory
					  arbiter (breakable), not the OFD lock */
};

/* How compare-and-write is done on iSCSI. */
enum dev_caw_mode {
	DEV_CAW_AUTO = 0,    /* native when the target has it, else reservation */
	DEV_CAW_NATIVE = 1,  /* native only; open fails if the target lacks it */
	DEV_CAW_RESERVE = 2, /* always the RESERVE(6) fallback */
};

/* Open options.  Zero means the default for every field. */
struct dev_opts {
	int readonly;          /* open read-only; writes fail with -EROFS */
	const char *initiator; /* iSCSI initiator IQN; default iqn.2026-11.org.lunfs:init-<pid> */
	int caw_mode;          /* enum dev_caw_mode; default DEV_CAW_AUTO */
	int buffered;          /* file: no O_DIRECT (for filesystems without it) */
	int no_pr;             /* iSCSI: do not use persistent reservations even if
				  the target has them (targets whose PREEMPT is broken) */
};

/* I/O counters, kept by the generic layer for every backend. */
struct dev_stats {
	uint64_t reads, writes, flushes, caws, zeroes;
	uint64_t read_bytes, write_bytes;
	uint64_t miscompares;
};

enum dev_op { DEV_OP_READ = 1, DEV_OP_WRITE = 2, DEV_OP_FLUSH = 3 };

/* One asynchronous request.  The caller owns the struct until it is reaped. */
struct dev_io {
	int op;                  /* enum dev_op */
	uint64_t off;            /* byte offset, multiple of dev_lbs() */
	const struct iovec *iov; /* total length a multiple of dev_lbs() */
	int iovcnt;
	int64_t res;             /* out: bytes transferred, or -errno */
	void *priv;              /* caller's */
};

/* Opens URL.  Returns 0 and sets *out, or a negative errno; *msg (if not
 * NULL) gets a static or thread-local one-line reason on failure. */
int dev_open(const char *url, const struct dev_opts *opts, struct dev **out);
void dev_close(struct dev *d);

/* Last error text from dev_open() (or a failed iSCSI I/O) in this thread
 * ("" if none). */
const char *dev_last_error(void);

uint64_t dev_size(const struct dev *d); /* bytes */
/* Asks the backend for the device's size again (an image or LUN that was
 * enlarged while open: lunfs grow).  The size only grows: a smaller answer
 * is ignored.  Thread-safe; I/O beyond the old size works once it returns.
 * Returns 0 or -errno. */
int dev_refresh_size(struct dev *d);
uint32_t dev_lbs(const struct dev *d);  /* logical block size, bytes */
unsigned dev_caps(const struct dev *d);
const char *dev_backend(const struct dev *d); /* "file", "iscsi", "faulty" */
const char *dev_url(const struct dev *d);

/* Aligned buffer of len bytes (zero-filled), free with free(). NULL on ENOMEM. */
void *dev_alloc(size_t len);

/* Sync I/O.  Return 0 when the whole range was transferred, or -errno. */
int dev_read(struct dev *d, uint64_t off, void *buf, size_t len);
int dev_write(struct dev *d, uint64_t off, const void *buf, size_t len);
int dev_readv(struct dev *d, uint64_t off, const struct iovec *iov, int iovcnt);
int dev_writev(struct dev *d, uint64_t off, const struct iovec *iov, int iovcnt);
/* Makes every completed write durable. */
int dev_flush(struct dev *d);
/* Flush epochs, so that a caller can skip a flush that another one already
 * did: take a mark after some writes completed; once dev_flushed_since(d,
 * mark) is true, a dev_flush() that started after the mark has succeeded,
 * so those writes are durable (as durable as dev_flush makes them).  Flushes
 * submitted through dev_submit do not count. */
uint64_t dev_flush_mark(struct dev *d);
int dev_flushed_since(struct dev *d, uint64_t mark);

/* Atomic compare-and-write of len bytes (whole logical blocks) at off: if the
 * device holds exactly cmp, write data.  Returns 0, or -EMISCOMPARE when it
 * did not match; then, if cur is not NULL, cur receives what the device
 * holds (read under the same atomicity, best effort on native CAW). */
int dev_caw(struct dev *d, uint64_t off, const void *cmp, const void *data, size_t len,
	    void *cur);

/* Break time of an emulated compare-and-write (file backend; iSCSI and the
 * faulty wrapper ignore it).  A CAW whose exclusion has been held by another
 * process or thread for ms milliseconds (frozen, stopped in a debugger) takes
 * it over; the held one then refuses its write with -ETIMEDOUT, and it also
 * refuses it by itself once it has held the exclusion for ms / 2 or more.  A
 * holder whose process died is taken over at once.  So no CAW waits much
 * longer than ms behind another one, and different blocks never wait for
 * each other.  0 restores the default, 2000 ms.  Keep it below the
 * heartbeat lease (the lock layer sets lease / 2).  See dev/arbiter.c and
 * docs/CAW-ARBITER.md. */
#define DEV_CAW_BREAK_MS_DEFAULT 2000
void dev_set_caw_break_ms(struct dev *d, uint32_t ms);

/* Makes [off, off+len) read as zeros (punch hole, BLKZEROOUT, WRITE SAME or
 * plain writes).  Returns 0 or -errno. */
int dev_zero(struct dev *d, uint64_t off, uint64_t len);

/* Makes sure later writes to [off, off+len) need no new space on the
 * storage under the device: an image file gets those bytes allocated
 * (fallocate, keeping what they read), so that a full host filesystem
 * cannot fail them.  Returns 0; -EOPNOTSUPP when it means nothing here (a
 * block device, iSCSI) or the host filesystem cannot; -ENOSPC when the
 * storage has less room than len (nothing is allocated then); or -errno. */
int dev_reserve(struct dev *d, uint64_t off, uint64_t len);

/* Async queue.  dev_submit queues and starts n requests; dev_reap waits for at
 * least min completions and stores up to max of them in out.  Returns the
 * number submitted / reaped, or -errno. */
int dev_submit(struct dev *d, struct dev_io **ios, unsigned n);
int dev_reap(struct dev *d, unsigned min, struct dev_io **out, unsigned max);

/* A thread's own queue, for an event loop (the FUSE daemon's): the thread
 * that opened it submits to it and reaps from it, and nothing else touches
 * it.  The kernel completes its requests while that thread waits in
 * dev_tq_run (no other thread is woken per request), and a batch of queued
 * requests reaches the device in one system call.  It can watch one file
 * descriptor as well, so the loop waits for its next job and for its
 * completions in one place.  Devices with DEV_CAP_ASYNC_MT only, on
 * Linux 6.1 or later (-EOPNOTSUPP elsewhere).
 *
 * dev_tq_submit queues n requests (all or none: -EBUSY when the queue is
 * full, or the error of the first bad one).  The write guard runs there
 * (for a batch with a write) and again right before the batch is handed to
 * the device (dev_tq_run, for any batch): when it refuses then, every queued
 * request, read or write, completes with its error.  dev_tq_run hands over what
 * is queued, then waits up to timeout_ms (0: no wait; < 0: no limit) until
 * a request completed or the watched descriptor became readable; it stores
 * up to max completed requests in out and sets *fired when the descriptor
 * fired (edge: read it until it would block).  Returns the number stored,
 * or -errno (the queue is broken: its requests stay in flight; run it
 * again).  dev_tq_close waits for the queue's requests first, however long
 * that takes: their buffers are the caller's. */
struct dev_tq;
int dev_tq_open(struct dev *d, struct dev_tq **out);
int dev_tq_watch(struct dev_tq *q, int fd);
int dev_tq_submit(struct dev_tq *q, struct dev_io **ios, unsigned n);
int dev_tq_run(struct dev_tq *q, int timeout_ms, struct dev_io **out, unsigned max, int *fired);
unsigned dev_tq_inflight(const struct dev_tq *q);
void dev_tq_close(struct dev_tq *q);

/* SCSI-3 persistent reservations (iSCSI only; -EOPNOTSUPP elsewhere). */
enum { DEV_PR_WRITE_EXCLUSIVE_REGS_ONLY = 5 };
int dev_pr_register(struct dev *d, uint64_t key);
int dev_pr_unregister(struct dev *d, uint64_t key);
int dev_pr_reserve(struct dev *d, uint64_t key, int type);
int dev_pr_preempt(struct dev *d, uint64_t key, uint64_t victim, int type);
/* Fills up to max registered keys; returns how many are registered (may be > max). */
int dev_pr_read_keys(struct dev *d, uint64_t *keys, int max);

/* A write, compare-and-write, zeroing or flush that the device refuses for
 * good because this initiator's persistent-reservation registration is gone
 * (RESERVATION CONFLICT: another host preempted us) calls fn(arg) and
 * returns -EFENCED instead of -EACCES.  fn must not block.  NULL removes it. */
void dev_set_fence_hook(struct dev *d, void (*fn)(void *arg), void *arg);

/* The write guard: fn(arg) runs right before every request that changes the
 * device is handed to it (a write, each chunk of a zeroing, the write half of
 * a compare-and-write after its read and compare, an async batch holding a
 * write), after everything in this layer that can block.  A non-zero return
 * (-EFENCED: the lease ran out) refuses the request with that error, so a
 * host that stalled anywhere above (a flush, a lock wait, a debugger) cannot
 * submit a write once its lease is gone.  Flushes and reads are not guarded.
 * fn must not block and must be callable with any caller lock held.  NULL
 * removes it.  The faulty wrapper runs it again after a freeze (dev_faulty_freeze
 * models a stall at the call site, before the last check). */
void dev_set_guard(struct dev *d, int (*fn)(void *arg), void *arg);

/* The probe: fn(arg, op) runs in the calling thread right before every
 * synchronous request (dev_read/readv, dev_write/writev, dev_flush, dev_caw,
 * dev_zero; op is the DEV_OP_* of the request, DEV_OP_CAW for a
 * compare-and-write, DEV_OP_ZERO for a zeroing), not for the async queues'.
 * The fs layer counts with it the requests a thread makes while it holds
 * the volume mutex (docs/LOCKING.md 15).  fn must not block.  NULL removes
 * it. */
enum { DEV_OP_CAW = 100, DEV_OP_ZERO = 101 };
void dev_set_probe(struct dev *d, void (*fn)(void *arg, int op), void *arg);

void dev_get_stats(const struct dev *d, struct dev_stats *out);
void dev_reset_stats(struct dev *d);

#endif
