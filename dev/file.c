/* file backend: a regular image file or a block device.
 *
 * Opened with O_DIRECT.  Sync calls use preadv/pwritev (thread-safe); the
 * async queue is an io_uring created on first use.
 *
 * Compare-and-write is emulated: read, compare, write, under an exclusion
 * that covers every process and thread of this machine, per block, and that
 * a frozen or dead holder cannot keep (see dev_set_caw_break_ms):
 *   - the arbiter (arbiter.c): one shared-memory word per logical block in
 *     /dev/shm, taken by atomic CAS, broken after the break time or at once
 *     when the holder's process is gone;
 *   - when the arbiter cannot be used (no /dev/shm, not ours, cannot map):
 *     an OFD write lock (F_OFD_SETLK, polled up to the break time, then
 *     -ETIMEDOUT) on the block range, plus an in-process list of the ranges
 *     this open's threads hold (OFD locks do not exclude threads sharing an
 *     open file description).  A frozen holder then still blocks its range
 *     (it cannot be broken), but every waiter gives up after the break time
 *     and nothing else waits.
 * The two modes do not exclude each other, so they must not be mixed on one
 * device: each open holds a read lock on a mode byte of the image far past
 * its end; an open that can use the arbiter joins the OFD mode when another
 * open is in it, and one that cannot fails with -EBUSY while another open is
 * in arbiter mode.  Either way this is atomic among processes on one machine
 * only; that is all the embedded default promises.
 */
#include <fcntl.h>
#include <poll.h>
#include <liburing.h>
#include <linux/fs.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>
#include "dev/arbiter.h"
#include "dev/dev_impl.h"
#include "dev/faulty.h"

#define RING_DEPTH 256
/* Mode bytes of the image (read-locked by each open, far past any device end). */
#define MODE_ARB_BYTE (1ll << 62)
#define MODE_OFD_BYTE ((1ll << 62) + 1)

void (*dev_file_caw_stall)(struct dev *d, uint64_t off);

/* A range held in OFD mode; lives on the holder's stack. */
struct range {
	uint64_t off, len;
	struct range *next;
};

struct file_dev {
	struct dev d;
	int fd;
	int is_blk;
	int use_arb;              /* CAW under the arbiter, else the OFD mode */
	struct arb arb;
	/* OFD mode: the ranges this open's threads hold (OFD locks belong to the
	 * open file description and do not exclude its threads) */
	pthread_mutex_t rl_mu;
	pthread_cond_t rl_cv;     /* CLOCK_MONOTONIC */
	struct range *held;
	/* The async queue: submitters take sq_mu (DEV_CAP_ASYNC_MT: several
	 * threads may submit); one thread at a time reaps, without sq_mu (the
	 * completion ring is its own).  inflight is shared: atomic. */
	pthread_mutex_t sq_mu;
	struct io_uring ring;
	int ring_ready;           /* set once, under sq_mu, before any submit */
	unsigned inflight;        /* submitted, not reaped (atomic) */
};

static struct file_dev *FD(struct dev *d)
{
	return (struct file_dev *)d;
}

static int full_rw(int fd, int op, uint64_t off, const struct iovec *iov, int iovcnt)
{
	struct iovec local[64];
	size_t want = dev_iov_len(iov, iovcnt);
	if (iovcnt > 64)
		return -EINVAL;
	memcpy(local, iov, iovcnt * sizeof(*iov));
	struct iovec *v = local;
	while (want) {
		ssize_t n = op == DEV_OP_READ ? preadv(fd, v, iovcnt, off) : pwritev(fd, v, iovcnt, off);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (n == 0)
			return -EIO; /* past the end of a file that shrank */
		want -= n;
		off += n;
		while (n && iovcnt) {
			if ((size_t)n >= v->iov_len) {
				n -= v->iov_len;
				v++;
				iovcnt--;
			} else {
				v->iov_base = (char *)v->iov_base + n;
				v->iov_len -= n;
				n = 0;
			}
		}
	}
	return 0;
}

static int file_rw(struct dev *d, int op, uint64_t off, const struct iovec *iov, int iovcnt)
{
	return full_rw(FD(d)->fd, op, off, iov, iovcnt);
}

static int file_flush(struct dev *d)
{
	return fdatasync(FD(d)->fd) ? -errno : 0;
}

static int ofd_lock(int fd, int cmd, short type, uint64_t off, uint64_t len)
{
	struct flock fl = {.l_type = type, .l_whence = SEEK_SET, .l_start = off, .l_len = len};
	while (fcntl(fd, cmd, &fl) < 0) {
		if (errno != EINTR)
			return errno == EACCES ? -EAGAIN : -errno;
	}
	return 0;
}

/* 1 when another open holds a lock on image byte b that a write lock would
 * conflict with. */
static int locked_by_other(int fd, off_t b)
{
	struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = b, .l_len = 1};
	return !fcntl(fd, F_OFD_GETLK, &fl) && fl.l_type != F_UNLCK;
}

static void abs_deadline(uint64_t ns, struct timespec *ts)
{
	ts->tv_sec = ns / 1000000000ull;
	ts->tv_nsec = ns % 1000000000ull;
}

/* OFD mode: the range for this thread among the open's threads, then the
 * OFD lock among opens; both waits end at the break time (-ETIMEDOUT). */

/* Takes me off this open's list of held ranges and wakes its waiters. */
static void range_drop(struct file_dev *f, struct range *me)
{
	pthread_mutex_lock(&f->rl_mu);
	for (struct range **p = &f->held; *p; p = &(*p)->next)
		if (*p == me) {
			*p = me->next;
			break;
		}
	pthread_cond_broadcast(&f->rl_cv);
	pthread_mutex_unlock(&f->rl_mu);
}

static int ofd_acquire(struct file_dev *f, struct range *me, uint32_t break_ms)
{
	uint64_t end = arb_now_ns() + (uint64_t)break_ms * 1000000ull, backoff = 20000;
	struct timespec ts;
	int r = 0;
	abs_deadline(end, &ts);
	pthread_mutex_lock(&f->rl_mu);
	for (;;) {
		struct range *o = f->held;
		while (o && (o->off >= me->off + me->len || me->off >= o->off + o->len))
			o = o->next;
		if (!o)
			break;
		if (pthread_cond_timedwait(&f->rl_cv, &f->rl_mu, &ts) == ETIMEDOUT) {
			pthread_mutex_unlock(&f->rl_mu);
			return -ETIMEDOUT;
		}
	}
	me->next = f->held;
	f->held = me;
	pthread_mutex_unlock(&f->rl_mu);
	while ((r = ofd_lock(f->fd, F_OFD_SETLK, F_WRLCK, me->off, me->len)) == -EAGAIN) {
		if (arb_now_ns() >= end) {
			r = -ETIMEDOUT;
			break;
		}
		struct timespec z = {0, backoff};
		nanosleep(&z, NULL);
		backoff = backoff * 2 > 1000000 ? 1000000 : backoff * 2;
	}
	if (r)
		range_drop(f, me);
	return r;
}

static void ofd_release(struct file_dev *f, struct range *me)
{
	ofd_lock(f->fd, F_OFD_SETLK, F_UNLCK, me->off, me->len);
	range_drop(f, me);
}

static int file_caw(struct dev *d, uint64_t off, const void *cmp, const void *data, size_t len,
		    void *cur)
{
	struct file_dev *f = FD(d);
	uint32_t break_ms = dev_caw_break(d);
	struct arb_hold h;
	struct range me = {off, len, NULL};
	void *buf = dev_alloc(len);
	int held = 0;
	if (!buf)
		return -ENOMEM;
	int r = f->use_arb ? arb_acquire(&f->arb, off / d->lbs, len / d->lbs, break_ms, &h)
			   : ofd_acquire(f, &me, break_ms);
	if (r)
		goto out;
	held = 1;
	struct iovec v = {buf, len};
	if ((r = full_rw(f->fd, DEV_OP_READ, off, &v, 1)))
		goto out;
	if (memcmp(buf, cmp, len)) {
		if (cur)
			memcpy(cur, buf, len);
		r = -EMISCOMPARE;
		goto out;
	}
	if (dev_file_caw_stall)
		dev_file_caw_stall(d, off);
	/* the waits and the read can block: the lease may be gone */
	if ((r = dev_guard(d)))
		goto out;
	/* last: still ours, and far enough from any break (arbiter.c) */
	if (f->use_arb && (r = arb_check(&f->arb, &h, break_ms)))
		goto out;
	struct iovec w = {(void *)data, len};
	r = full_rw(f->fd, DEV_OP_WRITE, off, &w, 1);
out:
	if (held) {
		if (f->use_arb)
			arb_release(&f->arb, &h);
		else
			ofd_release(f, &me);
	}
	free(buf);
	return r;
}

/* Picks the CAW mode of a writable open (see the head of this file). */
static int caw_mode(struct file_dev *f, const struct stat *st, const char *path)
{
	if (!arb_open(&f->arb, NULL, st, f->d.size / f->d.lbs, f->d.lbs)) {
		if (!ofd_lock(f->fd, F_OFD_SETLK, F_RDLCK, MODE_ARB_BYTE, 1) &&
		    !locked_by_other(f->fd, MODE_OFD_BYTE)) {
			f->use_arb = 1;
			f->d.caps |= DEV_CAP_CAW_ARB;
			return 0;
		}
		/* another open is in the OFD mode: join it */
		ofd_lock(f->fd, F_OFD_SETLK, F_UNLCK, MODE_ARB_BYTE, 1);
		arb_close(&f->arb);
	}
	int r = ofd_lock(f->fd, F_OFD_SETLK, F_RDLCK, MODE_OFD_BYTE, 1);
	if (!r && locked_by_other(f->fd, MODE_ARB_BYTE))
		r = -EBUSY;
	if (r)
		dev_set_error("%s: cannot use the compare-and-write arbiter (/dev/shm or "
			      "$LUNFS_CAW_DIR), and other opens of this device do: %s",
			      path, strerror(-r));
	return r;
}

static int file_zero(struct dev *d, uint64_t off, uint64_t len)
{
	struct file_dev *f = FD(d);
	if (f->is_blk) {
		uint64_t range[2] = {off, len};
		if (!ioctl(f->fd, BLKZEROOUT, range))
			return 0;
	} else if (!fallocate(f->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, off, len)) {
		return 0;
	}
	return dev_generic_zero(d, off, len);
}

/* Allocates the holes of [off, off+len) of an image file (they keep
 * reading as zeros).  It checks the room first: a failed fallocate may
 * leave part of the range allocated, and a volume too large for the host
 * filesystem (a 64 TiB sparse image) is not an error, only not reserved. */
static int file_reserve(struct dev *d, uint64_t off, uint64_t len)
{
	struct file_dev *f = FD(d);
	struct statvfs sv;
	struct stat st;
	if (f->is_blk)
		return -EOPNOTSUPP;
	if (fstatvfs(f->fd, &sv) || fstat(f->fd, &st))
		return -errno;
	/* what is allocated already counts as room (a re-made volume) */
	uint64_t room = (uint64_t)sv.f_bavail * sv.f_frsize + (uint64_t)st.st_blocks * 512;
	if (len > room)
		return -ENOSPC;
	if (fallocate(f->fd, FALLOC_FL_KEEP_SIZE, off, len))
		return errno == EOPNOTSUPP || errno == ENOSYS ? -EOPNOTSUPP : -errno;
	return 0;
}

static int ring_setup(struct file_dev *f)
{
	if (f->ring_ready)
		return 0;
	int r = io_uring_queue_init(RING_DEPTH, &f->ring, 0);
	if (r < 0)
		return r;
	__atomic_store_n(&f->ring_ready, 1, __ATOMIC_RELEASE);
	return 0;
}

/* Sets io's result from its completion's: a short transfer at O_DIRECT
 * alignment is an error for us. */
static void cqe_done(struct dev_io *io, int64_t res)
{
	if (res >= 0 && io->op != DEV_OP_FLUSH && (size_t)res != dev_iov_len(io->iov, io->iovcnt))
		res = -EIO;
	io->res = res;
}

/* Fills sqe for io on fd; its user_data is io. */
static void prep_sqe(struct io_uring_sqe *sqe, int fd, struct dev_io *io)
{
	if (io->op == DEV_OP_READ)
		io_uring_prep_readv(sqe, fd, io->iov, io->iovcnt, io->off);
	else if (io->op == DEV_OP_WRITE)
		io_uring_prep_writev(sqe, fd, io->iov, io->iovcnt, io->off);
	else
		io_uring_prep_fsync(sqe, fd, IORING_FSYNC_DATASYNC);
	io_uring_sqe_set_data(sqe, io);
}

static int file_submit(struct dev *d, struct dev_io **ios, unsigned n)
{
	struct file_dev *f = FD(d);
	pthread_mutex_lock(&f->sq_mu);
	int r = ring_setup(f);
	if (r)
		goto out;
	r = -EBUSY;
	if (__atomic_load_n(&f->inflight, __ATOMIC_ACQUIRE) + n > RING_DEPTH)
		goto out;
	for (unsigned i = 0; i < n; i++) {
		struct io_uring_sqe *sqe = io_uring_get_sqe(&f->ring);
		struct dev_io *io = ios[i];
		if (!sqe) {
			io_uring_submit(&f->ring);
			sqe = io_uring_get_sqe(&f->ring);
			if (!sqe) {
				r = i ? (int)i : -EBUSY;
				goto out;
			}
		}
		prep_sqe(sqe, f->fd, io);
		/* counted before the kernel sees it, so a reaper that finds it
		 * completed never finds inflight at 0 */
		__atomic_fetch_add(&f->inflight, 1, __ATOMIC_RELEASE);
	}
	r = io_uring_submit(&f->ring);
	r = r < 0 ? r : (int)n;
out:
	pthread_mutex_unlock(&f->sq_mu);
	return r;
}

static int file_reap(struct dev *d, unsigned min, struct dev_io **out, unsigned max)
{
	struct file_dev *f = FD(d);
	unsigned got = 0;
	if (!__atomic_load_n(&f->ring_ready, __ATOMIC_ACQUIRE))
		return 0;
	unsigned inflight = __atomic_load_n(&f->inflight, __ATOMIC_ACQUIRE);
	if (min > inflight)
		min = inflight;
	while (got < max) {
		struct io_uring_cqe *cqe;
		int r = got < min ? io_uring_wait_cqe(&f->ring, &cqe) : io_uring_peek_cqe(&f->ring, &cqe);
		if (r == -EAGAIN || (r == -EINTR && got >= min))
			break;
		if (r == -EINTR)
			continue;
		if (r < 0)
			return got ? (int)got : r;
		struct dev_io *io = io_uring_cqe_get_data(cqe);
		cqe_done(io, cqe->res);
		io_uring_cqe_seen(&f->ring, cqe);
		__atomic_fetch_sub(&f->inflight, 1, __ATOMIC_RELEASE);
		out[got++] = io;
	}
	return got;
}

/* A thread's own queue (dev_tq_*): a ring of its own, created with
 * SINGLE_ISSUER and DEFER_TASKRUN (kernel 6.1 and later), so the
 * completions of its requests are posted while its thread waits in
 * io_uring_enter (no task work interrupting another thread, no other thread
 * woken).  Queued requests wait in the submission ring until tq_run; pend[]
 * lists them in queue order (the watch's poll too, with no dev_io), so that
 * a guard that refuses the writes among them at the hand-over can turn them
 * into no-ops that complete with its error, and so that entries the kernel
 * did not take in one call are guarded again before the next.
 * user_data: the dev_io; TQ_WATCH for the watched descriptor's poll; the
 * dev_io with TQ_REFUSED set for a request turned into a no-op. */
#define TQ_WATCH 1u
#define TQ_REFUSED 2u

struct file_tq {
	struct dev_tq q;
	struct io_uring ring;
	int watch_fd;            /* -1: none */
	int watch_armed;         /* its multishot poll is in the ring */
	unsigned npend;          /* queued, not yet taken by the kernel */
	struct io_uring_sqe *pend[RING_DEPTH];
	struct dev_io *pend_io[RING_DEPTH];
};

static int file_tq_open(struct dev *d, struct dev_tq **out)
{
	struct file_tq *q = calloc(1, sizeof(*q));
	if (!q)
		return -ENOMEM;
	(void)d;
	q->watch_fd = -1;
	/* a kernel before 6.1 has no DEFER_TASKRUN (nor, before 5.13, the
	 * multishot poll, or before 5.11 the wait with a timeout that does not
	 * queue an entry of its own): no such queue there, the caller serves
	 * every request another way */
	int r = io_uring_queue_init(RING_DEPTH, &q->ring,
				    IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN);
	if (r == -EINVAL)
		r = -EOPNOTSUPP;
	if (!r && !(q->ring.features & IORING_FEAT_EXT_ARG)) {
		io_uring_queue_exit(&q->ring);
		r = -EOPNOTSUPP;
	}
	if (r < 0) {
		free(q);
		return r;
	}
	*out = &q->q;
	return 0;
}

/* An entry of the submission ring, listed in pend[] with io (NULL: the
 * watch).  NULL when the ring is full. */
static struct io_uring_sqe *tq_sqe(struct file_tq *q, struct dev_io *io)
{
	struct io_uring_sqe *sqe = q->npend < RING_DEPTH ? io_uring_get_sqe(&q->ring) : NULL;
	if (sqe) {
		q->pend[q->npend] = sqe;
		q->pend_io[q->npend++] = io;
	}
	return sqe;
}

static int tq_arm(struct file_tq *q)
{
	struct io_uring_sqe *sqe = tq_sqe(q, NULL);
	if (!sqe)
		return -EBUSY;
	io_uring_prep_poll_multishot(sqe, q->watch_fd, POLLIN);
	io_uring_sqe_set_data64(sqe, TQ_WATCH);
	q->watch_armed = 1;
	return 0;
}

static int file_tq_watch(struct dev_tq *dq, int fd)
{
	struct file_tq *q = (struct file_tq *)dq;
	if (q->watch_fd >= 0)
		return -EBUSY;
	q->watch_fd = fd;
	return tq_arm(q);
}

static int file_tq_submit(struct dev_tq *dq, struct dev_io **ios, unsigned n)
{
	struct file_tq *q = (struct file_tq *)dq;
	struct file_dev *f = FD(dq->d);
	/* one entry stays free for the watch's poll */
	if (dq->inflight + n > RING_DEPTH - 1 || io_uring_sq_space_left(&q->ring) < n + 1 ||
	    q->npend + n + 1 > RING_DEPTH)
		return -EBUSY;
	for (unsigned i = 0; i < n; i++) {
		struct dev_io *io = ios[i];
		struct io_uring_sqe *sqe = tq_sqe(q, io);
		prep_sqe(sqe, f->fd, io);
	}
	return (int)n;
}

/* The write guard, right before the queued requests go to the device.
 * When it refuses, every queued request becomes a no-op that completes with
 * its error: the writes of course, and the reads too, since a host whose
 * lease is gone may hold mappings to blocks that other hosts have freed and
 * reused since (a fenced host reads nothing more).  The watch goes ahead. */
static unsigned tq_guard(struct file_tq *q)
{
	unsigned any = 0, writes = 0;
	int r;
	for (unsigned i = 0; i < q->npend; i++) {
		any |= q->pend_io[i] != NULL;
		writes += q->pend_io[i] && q->pend_io[i]->op != DEV_OP_READ;
	}
	if (!any || !(r = dev_guard(q->q.d)))
		return writes;
	for (unsigned i = 0; i < q->npend; i++) {
		struct dev_io *io = q->pend_io[i];
		if (!io)
			continue;
		io->res = r;
		io_uring_prep_nop(q->pend[i]);
		io_uring_sqe_set_data64(q->pend[i], (uintptr_t)io | TQ_REFUSED);
	}
	return 0;
}

/* Hands the queued entries to the kernel (writes of them are writes that
 * go out: the freeze test, 58, watches this function for writes after a
 * takeover, so it stays a function of its own, noipa: its arguments as written),
 * then waits as asked. */
__attribute__((noipa)) static int tq_enter(struct file_tq *q, int timeout_ms, unsigned writes)
{
	struct io_uring_cqe *cqe;
	(void)writes;
	if (timeout_ms == 0)
		return io_uring_submit_and_get_events(&q->ring);
	struct __kernel_timespec ts = {timeout_ms / 1000, (timeout_ms % 1000) * 1000000ll};
	return io_uring_submit_and_wait_timeout(&q->ring, &cqe, 1, timeout_ms > 0 ? &ts : NULL, NULL);
}

/* After a hand-over: what the kernel did not take stays listed (the last
 * entries queued), to be guarded again at the next. */
static void tq_taken(struct file_tq *q)
{
	unsigned left = io_uring_sq_ready(&q->ring);
	if (left > q->npend)
		left = q->npend;
	memmove(q->pend, q->pend + q->npend - left, left * sizeof(q->pend[0]));
	memmove(q->pend_io, q->pend_io + q->npend - left, left * sizeof(q->pend_io[0]));
	q->npend = left;
}

static int file_tq_run(struct dev_tq *dq, int timeout_ms, struct dev_io **out, unsigned max,
		       int *fired)
{
	struct file_tq *q = (struct file_tq *)dq;
	unsigned got = 0, head, seen = 0;
	struct io_uring_cqe *cqe;
	int r;
	*fired = 0;
	if (q->watch_fd >= 0 && !q->watch_armed && (r = tq_arm(q)))
		return r;
	r = tq_enter(q, timeout_ms, tq_guard(q));
	tq_taken(q);
	/* -ETIME, -EINTR: the wait ended; -EAGAIN, -EBUSY: the kernel took
	 * fewer entries for now (they stay listed and go at the next run).
	 * Completions are reaped either way. */
	if (r < 0 && r != -ETIME && r != -EINTR && r != -EAGAIN && r != -EBUSY)
		return r;
	io_uring_for_each_cqe(&q->ring, head, cqe) {
		uint64_t ud = io_uring_cqe_get_data64(cqe);
		if (ud == TQ_WATCH) {
			*fired = 1;
			if (!(cqe->flags & IORING_CQE_F_MORE))
				q->watch_armed = 0; /* armed again at the next run */
		} else if (got == max) {
			break;
		} else {
			struct dev_io *io = (struct dev_io *)(uintptr_t)(ud & ~(uint64_t)TQ_REFUSED);
			if (!(ud & TQ_REFUSED))
				cqe_done(io, cqe->res);
			out[got++] = io;
		}
		seen++;
	}
	io_uring_cq_advance(&q->ring, seen);
	return (int)got;
}

static void file_tq_close(struct dev_tq *dq)
{
	struct file_tq *q = (struct file_tq *)dq;
	io_uring_queue_exit(&q->ring);
	free(q);
}

static void file_close(struct dev *d)
{
	struct file_dev *f = FD(d);
	if (f->ring_ready)
		io_uring_queue_exit(&f->ring);
	if (f->use_arb)
		arb_close(&f->arb);
	close(f->fd);
	pthread_mutex_destroy(&f->rl_mu);
	pthread_mutex_destroy(&f->sq_mu);
	pthread_cond_destroy(&f->rl_cv);
	free(f);
}

/* dev_refresh_size: an image file or block device may have been enlarged. */
static int file_size(struct dev *d, uint64_t *size)
{
	struct file_dev *f = (struct file_dev *)d;
	struct stat st;
	if (f->is_blk)
		return ioctl(f->fd, BLKGETSIZE64, size) < 0 ? -errno : 0;
	if (fstat(f->fd, &st) < 0)
		return -errno;
	*size = st.st_size;
	return 0;
}

static const struct dev_ops file_ops = {
	.name = "file",
	.close = file_close,
	.rw = file_rw,
	.flush = file_flush,
	.caw = file_caw,
	.zero = file_zero,
	.reserve = file_reserve,
	.submit = file_submit,
	.reap = file_reap,
	.tq_open = file_tq_open,
	.tq_watch = file_tq_watch,
	.tq_submit = file_tq_submit,
	.tq_run = file_tq_run,
	.tq_close = file_tq_close,
	.size = file_size,
};

int dev_file_open(const char *path, const struct dev_opts *o, struct dev **out)
{
	int flags = (o->readonly ? O_RDONLY : O_RDWR) | O_CLOEXEC | (o->buffered ? 0 : O_DIRECT);
	struct stat st;
	int fd = open(path, flags);
	if (fd < 0) {
		int e = errno;
		dev_set_error("%s: %s", path, strerror(e));
		return -e;
	}
	if (fstat(fd, &st) < 0) {
		int e = errno;
		close(fd);
		return -e;
	}
	struct file_dev *f = calloc(1, sizeof(*f));
	if (!f) {
		close(fd);
		return -ENOMEM;
	}
	f->fd = fd;
	f->d.ops = &file_ops;
	f->d.caps = DEV_CAP_CAW_OFD | DEV_CAP_ZERO | DEV_CAP_ASYNC_MT;
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&f->rl_cv, &ca);
	pthread_condattr_destroy(&ca);
	pthread_mutex_init(&f->rl_mu, NULL);
	pthread_mutex_init(&f->sq_mu, NULL);
	if (S_ISBLK(st.st_mode)) {
		int ss = 512;
		f->is_blk = 1;
		if (ioctl(fd, BLKGETSIZE64, &f->d.size) < 0 || ioctl(fd, BLKSSZGET, &ss) < 0) {
			int e = errno;
			dev_set_error("%s: cannot read device size: %s", path, strerror(e));
			file_close(&f->d);
			return -e;
		}
		f->d.lbs = ss;
	} else if (S_ISREG(st.st_mode)) {
		f->d.size = st.st_size;
		f->d.lbs = 512;
	} else {
		dev_set_error("%s: not a regular file or block device", path);
		file_close(&f->d);
		return -ENODEV;
	}
	f->d.size -= f->d.size % f->d.lbs;
	if (!o->readonly) {
		int r = caw_mode(f, &st, path);
		if (r) {
			file_close(&f->d);
			return r;
		}
	}
	*out = &f->d;
	return 0;
}
