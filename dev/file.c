/* file backend: a regular image file or a block device.
 *
 * Opened with O_DIRECT.  Sync calls use preadv/pwritev (thread-safe); the
 * async queue is an io_uring created on first use.  Compare-and-write holds
 * an OFD write lock (F_OFD_SETLKW) on the byte range around the
 * read-compare-write.  OFD locks belong to the open file description, so they
 * exclude other opens (other processes, other dev_open()s), but not threads
 * sharing this one: a mutex covers those.  This is atomic among processes on
 * one machine only; that is all the embedded default promises.
 */
#include <fcntl.h>
#include <liburing.h>
#include <linux/fs.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>
#include "dev_impl.h"

#define RING_DEPTH 256

struct file_dev {
	struct dev d;
	int fd;
	int is_blk;
	pthread_mutex_t caw_lock; /* serialises CAW among this open's threads */
	struct io_uring ring;     /* async queue; protected by its single-thread rule */
	int ring_ready;
	unsigned inflight;
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

static int ofd_lock(int fd, short type, uint64_t off, uint64_t len)
{
	struct flock fl = {.l_type = type, .l_whence = SEEK_SET, .l_start = off, .l_len = len};
	while (fcntl(fd, F_OFD_SETLKW, &fl) < 0) {
		if (errno != EINTR)
			return -errno;
	}
	return 0;
}

static int file_caw(struct dev *d, uint64_t off, const void *cmp, const void *data, size_t len,
		    void *cur)
{
	struct file_dev *f = FD(d);
	void *buf = dev_alloc(len);
	int r;
	if (!buf)
		return -ENOMEM;
	pthread_mutex_lock(&f->caw_lock);
	r = ofd_lock(f->fd, F_WRLCK, off, len);
	if (r)
		goto out_mutex;
	struct iovec v = {buf, len};
	r = full_rw(f->fd, DEV_OP_READ, off, &v, 1);
	if (r)
		goto out_unlock;
	if (memcmp(buf, cmp, len)) {
		if (cur)
			memcpy(cur, buf, len);
		r = -EMISCOMPARE;
		goto out_unlock;
	}
	if ((r = dev_guard(d))) /* the OFD lock wait and the read can block */
		goto out_unlock;
	struct iovec w = {(void *)data, len};
	r = full_rw(f->fd, DEV_OP_WRITE, off, &w, 1);
out_unlock:
	ofd_lock(f->fd, F_UNLCK, off, len);
out_mutex:
	pthread_mutex_unlock(&f->caw_lock);
	free(buf);
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

static int ring_setup(struct file_dev *f)
{
	if (f->ring_ready)
		return 0;
	int r = io_uring_queue_init(RING_DEPTH, &f->ring, 0);
	if (r < 0)
		return r;
	f->ring_ready = 1;
	return 0;
}

static int file_submit(struct dev *d, struct dev_io **ios, unsigned n)
{
	struct file_dev *f = FD(d);
	int r = ring_setup(f);
	if (r)
		return r;
	if (f->inflight + n > RING_DEPTH)
		return -EBUSY;
	for (unsigned i = 0; i < n; i++) {
		struct io_uring_sqe *sqe = io_uring_get_sqe(&f->ring);
		struct dev_io *io = ios[i];
		if (!sqe) {
			io_uring_submit(&f->ring);
			sqe = io_uring_get_sqe(&f->ring);
			if (!sqe)
				return i ? (int)i : -EBUSY;
		}
		if (io->op == DEV_OP_READ)
			io_uring_prep_readv(sqe, f->fd, io->iov, io->iovcnt, io->off);
		else if (io->op == DEV_OP_WRITE)
			io_uring_prep_writev(sqe, f->fd, io->iov, io->iovcnt, io->off);
		else
			io_uring_prep_fsync(sqe, f->fd, IORING_FSYNC_DATASYNC);
		io_uring_sqe_set_data(sqe, io);
		f->inflight++;
	}
	r = io_uring_submit(&f->ring);
	return r < 0 ? r : (int)n;
}

static int file_reap(struct dev *d, unsigned min, struct dev_io **out, unsigned max)
{
	struct file_dev *f = FD(d);
	unsigned got = 0;
	if (!f->ring_ready)
		return 0;
	if (min > f->inflight)
		min = f->inflight;
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
		int64_t res = cqe->res;
		io_uring_cqe_seen(&f->ring, cqe);
		f->inflight--;
		/* A short transfer at O_DIRECT alignment is an error for us. */
		if (res >= 0 && io->op != DEV_OP_FLUSH && (size_t)res != dev_iov_len(io->iov, io->iovcnt))
			res = -EIO;
		io->res = res;
		out[got++] = io;
	}
	return got;
}

static void file_close(struct dev *d)
{
	struct file_dev *f = FD(d);
	if (f->ring_ready)
		io_uring_queue_exit(&f->ring);
	close(f->fd);
	pthread_mutex_destroy(&f->caw_lock);
	free(f);
}

static const struct dev_ops file_ops = {
	.name = "file",
	.close = file_close,
	.rw = file_rw,
	.flush = file_flush,
	.caw = file_caw,
	.zero = file_zero,
	.submit = file_submit,
	.reap = file_reap,
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
	f->d.caps = DEV_CAP_CAW_OFD | DEV_CAP_ZERO;
	pthread_mutex_init(&f->caw_lock, NULL);
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
	*out = &f->d;
	return 0;
}
