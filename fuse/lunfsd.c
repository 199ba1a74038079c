/* lunfsd / mount.lunfs: the FUSE daemon of lunfs.
 *
 * A thin adapter over fs/lunfs.h with the libfuse3 low-level API.  Every
 * lo_X() sends exactly one reply and delegates to the library, whose
 * negative errno becomes the reply's errno in one place (reply_err).
 *
 * Invoked as mount.lunfs (by mount(8), fstab) or as lunfsd:
 *   mount.lunfs DEVICE DIR [-f] [-o host=NAME,ro,allow_other,log=FILE,...]
 * It mounts the volume (claiming a heartbeat slot, replaying this host's
 * journal), mounts FUSE, and only then daemonizes, so mount(8) returns once
 * the file system is there and reports errors itself.  It exits at umount,
 * releasing its locks and its slot.
 *
 * Cache rules (docs/LOCKING.md, "FUSE caches"): attributes and entries are
 * cached for 1 s, so changes from another host show within about a second;
 * file pages are cached only for read-write opens, which hold the inode
 * lock exclusively; read-only opens (no lock) and O_DIRECT opens go direct.
 *
 * Limits: no mmap of files opened read-only (direct I/O); no file locks
 * (flock/fcntl) across hosts beyond the open modes.
 */
#define FUSE_USE_VERSION 312
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <fuse_lowlevel.h>
#include <libmount.h>
#include <linux/fuse.h> /* struct fuse_in_header: the loop looks at the opcode */
#include <limits.h>
#include <pthread.h>
#include <time.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <getopt.h>
#include <poll.h>
#include <semaphore.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>
#include <sys/xattr.h>
#include <syslog.h>
#include <unistd.h>
#include "fs/lunfs.h"
#include "fs/lunfs_test.h" /* recovery_pause_ms= */
#include "fs/version.h"
#include "format/ondisk.h" /* LUNFS_HOSTNAME_LEN */
#include "dev/dev.h"
#include "format/format.h"
#include "util/log.h"

#define TIMEOUT 1.0
/* requests served at once: the FUSE threads, and the kernel's limit of
 * asynchronous (background) requests in flight */
#define MAX_REQUESTS 64
#define MAX_BACKGROUND MAX_REQUESTS

/* Read-only virtual xattr of the root: the daemon's PID, for the umount
 * helper (trusted.*: the kernel lets only CAP_SYS_ADMIN read it). */
#define PID_XATTR "trusted.lunfs.daemon_pid"
/* Read-only virtual xattr of the root: "1" when the volume is mounted
 * read-only (no heartbeat slot), else "0", for a remount. */
#define RO_XATTR "trusted.lunfs.readonly"

/* The mounted volume.  After a fence it is replaced by a new mount of the
 * same identity (rejoin_thread): handlers read it once per request; the
 * open files of the old mount keep pointing at it and fail. */
static struct lunfs_vol *V_;
#define V (__atomic_load_n(&V_, __ATOMIC_ACQUIRE))
static int mounted_ro; /* the volume is mounted read-only (set before the loop) */
static struct fuse_session *SE;
static FILE *logf_;
static int use_syslog;

/* One line to the log: with log=FILE (or -f) each line starts with a
 * timestamp (syslog stamps its own).  A line identical to the one before
 * within LOG_REPEAT_MS is counted, not written (a fenced host fails every
 * operation with the same line), and the count follows as "(repeated N
 * times)" with the next different line, or the next repeat after the
 * window. */
#define LOG_REPEAT_MS 5000
static pthread_mutex_t log_mu = PTHREAD_MUTEX_INITIALIZER;
static char log_last[512];  /* protected by log_mu */
static int log_last_prio;   /* protected by log_mu */
static unsigned log_repeats; /* protected by log_mu */
static struct timespec log_last_ts; /* protected by log_mu: when log_last was written */

static void log_line(int prio, const char *msg)
{
	if (use_syslog) {
		syslog(prio, "%s", msg);
		return;
	}
	if (!logf_)
		return;
	struct timespec ts;
	struct tm tm;
	char stamp[40];
	clock_gettime(CLOCK_REALTIME, &ts);
	localtime_r(&ts.tv_sec, &tm);
	size_t n = strftime(stamp, sizeof(stamp), "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(stamp + n, sizeof(stamp) - n, ".%03ld", ts.tv_nsec / 1000000);
	fprintf(logf_, "%s %s\n", stamp, msg);
	fflush(logf_);
}

static void flush_repeats(void)
{
	if (log_repeats) {
		char m[600];
		snprintf(m, sizeof(m), "%s (repeated %u times)", log_last, log_repeats);
		log_line(log_last_prio, m);
		log_repeats = 0;
	}
}

static void logmsg(int prio, const char *fmt, ...)
{
	char msg[512];
	struct timespec now;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	clock_gettime(CLOCK_MONOTONIC, &now);
	pthread_mutex_lock(&log_mu);
	int64_t ms = (now.tv_sec - log_last_ts.tv_sec) * 1000 + (now.tv_nsec - log_last_ts.tv_nsec) / 1000000;
	if (!strcmp(msg, log_last) && ms < LOG_REPEAT_MS) {
		log_repeats++;
	} else {
		if (!strcmp(msg, log_last)) {
			log_repeats++; /* the same line after the window: the count says it */
			flush_repeats();
		} else {
			flush_repeats();
			log_line(prio, msg);
			snprintf(log_last, sizeof(log_last), "%s", msg);
			log_last_prio = prio;
		}
		log_last_ts = now;
	}
	pthread_mutex_unlock(&log_mu);
}

/* The library's messages (recovery, fencing) go to our log. */
static void lib_log(int prio, const char *msg)
{
	logmsg(prio, "%s", msg);
}

/* The one place a library error becomes a FUSE reply. */
static void reply_err(fuse_req_t req, int r)
{
	int orig = r;
	r = lunfs_sys_errno(r);
	if (r == -EIO || r == -EUCLEAN)
		logmsg(LOG_ERR, "lunfs: returning %s: %s", r == -EIO ? "EIO" : "EUCLEAN",
		       lunfs_strerror(orig));
	fuse_reply_err(req, r < 0 ? -r : r);
}

static void to_stat(const struct lunfs_stat *s, struct stat *st)
{
	memset(st, 0, sizeof(*st));
	st->st_ino = s->ino;
	st->st_mode = s->mode;
	st->st_nlink = s->nlink;
	st->st_uid = s->uid;
	st->st_gid = s->gid;
	st->st_rdev = s->rdev;
	st->st_size = s->size;
	st->st_blocks = s->blocks;
	st->st_blksize = s->blksize;
	st->st_atim = s->atime;
	st->st_mtim = s->mtime;
	st->st_ctim = s->ctime;
}

static void reply_entry(fuse_req_t req, int r, const struct lunfs_stat *s)
{
	if (r) {
		reply_err(req, r);
		return;
	}
	struct fuse_entry_param e;
	memset(&e, 0, sizeof(e));
	e.ino = s->ino;
	e.generation = s->igen;
	e.attr_timeout = TIMEOUT;
	e.entry_timeout = TIMEOUT;
	to_stat(s, &e.attr);
	fuse_reply_entry(req, &e);
}

static struct lunfs_cred cred_of(fuse_req_t req)
{
	const struct fuse_ctx *c = fuse_req_ctx(req);
	return (struct lunfs_cred){c->uid, c->gid};
}

static uint64_t ino_of(fuse_ino_t ino)
{
	return ino == FUSE_ROOT_ID ? LUNFS_ROOT_INO : ino;
}

static void lo_init(void *ud, struct fuse_conn_info *conn)
{
	(void)ud;
	conn->max_write = 1 << 20;
	conn->max_readahead = 1 << 20;
	/* a write's data is read into the worker's buffer (serve()), on a
	 * page boundary, never spliced */
	conn->want &= ~FUSE_CAP_SPLICE_READ;
	/* the kernel clears setuid/setgid itself (through setattr) */
	conn->want &= ~FUSE_CAP_HANDLE_KILLPRIV;
	if (conn->capable & FUSE_CAP_ASYNC_DIO)
		conn->want |= FUSE_CAP_ASYNC_DIO;
	/* A guest's queue depth must reach us: the kernel sends asynchronous
	 * direct I/O (io_uring, libaio) as background requests, at most
	 * max_background at a time (12 by default, so a QD32 guest ran at
	 * QD12), and marks the connection congested at congestion_threshold.
	 * The kernel caps both (fuse_max_bg, 12 pages' worth by default for
	 * unprivileged mounts; we mount as root). */
	conn->max_background = MAX_BACKGROUND;
	conn->congestion_threshold = MAX_BACKGROUND * 3 / 4;
	/* open(O_TRUNC): the kernel truncates through setattr (which takes
	 * the inode lock) before the open, instead of passing O_TRUNC to us */
	conn->want &= ~FUSE_CAP_ATOMIC_O_TRUNC;
	/* file handles (name_to_handle_at, an NFS export): the kernel looks
	 * up "." and ".." of a directory to reconnect a handle's dentry */
	if (conn->capable & FUSE_CAP_EXPORT_SUPPORT)
		conn->want |= FUSE_CAP_EXPORT_SUPPORT;
}

static void lo_lookup(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	struct lunfs_stat st;
	int r = lunfs_lookup(V, ino_of(parent), name, &st);
	if (r == -ENOENT) {
		/* a negative entry, cached as briefly as a positive one */
		struct fuse_entry_param e = {.ino = 0, .entry_timeout = TIMEOUT};
		fuse_reply_entry(req, &e);
		return;
	}
	reply_entry(req, r, &st);
}

static void lo_forget(fuse_req_t req, fuse_ino_t ino, uint64_t nlookup)
{
	/* The library keeps no per-inode state for lookups: nothing to drop. */
	(void)ino;
	(void)nlookup;
	fuse_reply_none(req);
}

static void lo_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct lunfs_stat s;
	struct stat st;
	(void)fi;
	int r = lunfs_getattr(V, ino_of(ino), &s);
	if (r) {
		reply_err(req, r);
		return;
	}
	to_stat(&s, &st);
	fuse_reply_attr(req, &st, TIMEOUT);
}

static void lo_setattr(fuse_req_t req, fuse_ino_t ino, struct stat *attr, int to_set,
		       struct fuse_file_info *fi)
{
	struct lunfs_setattr sa = {0};
	struct lunfs_stat s;
	struct stat st;
	unsigned m = 0;
	(void)fi;
	if (to_set & FUSE_SET_ATTR_MODE) {
		m |= LUNFS_SET_MODE;
		sa.mode = attr->st_mode;
	}
	if (to_set & FUSE_SET_ATTR_UID) {
		m |= LUNFS_SET_UID;
		sa.uid = attr->st_uid;
	}
	if (to_set & FUSE_SET_ATTR_GID) {
		m |= LUNFS_SET_GID;
		sa.gid = attr->st_gid;
	}
	if (to_set & FUSE_SET_ATTR_SIZE) {
		m |= LUNFS_SET_SIZE;
		sa.size = attr->st_size;
	}
	if (to_set & FUSE_SET_ATTR_ATIME_NOW)
		m |= LUNFS_SET_ATIME_NOW;
	else if (to_set & FUSE_SET_ATTR_ATIME) {
		m |= LUNFS_SET_ATIME;
		sa.atime = attr->st_atim;
	}
	if (to_set & FUSE_SET_ATTR_MTIME_NOW)
		m |= LUNFS_SET_MTIME_NOW;
	else if (to_set & FUSE_SET_ATTR_MTIME) {
		m |= LUNFS_SET_MTIME;
		sa.mtime = attr->st_mtim;
	}
	if (to_set & FUSE_SET_ATTR_CTIME) {
		m |= LUNFS_SET_CTIME;
		sa.ctime = attr->st_ctim;
	}
	if (to_set & (FUSE_SET_ATTR_KILL_SUID | FUSE_SET_ATTR_KILL_SGID))
		m |= LUNFS_SET_KILL_SUID;
	int r = lunfs_setattr(V, ino_of(ino), m, &sa, &s);
	if (r) {
		reply_err(req, r);
		return;
	}
	to_stat(&s, &st);
	fuse_reply_attr(req, &st, TIMEOUT);
}

static void lo_readlink(fuse_req_t req, fuse_ino_t ino)
{
	char buf[PATH_MAX + 1];
	int r = lunfs_readlink(V, ino_of(ino), buf, sizeof(buf) - 1);
	if (r < 0) {
		reply_err(req, r);
		return;
	}
	buf[r < PATH_MAX ? r : PATH_MAX] = 0;
	fuse_reply_readlink(req, buf);
}

static void lo_mknod(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode, dev_t rdev)
{
	struct lunfs_cred c = cred_of(req);
	struct lunfs_stat st;
	reply_entry(req, lunfs_mknod(V, ino_of(parent), name, mode, rdev, &c, &st), &st);
}

static void lo_mkdir(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode)
{
	struct lunfs_cred c = cred_of(req);
	struct lunfs_stat st;
	reply_entry(req, lunfs_mkdir(V, ino_of(parent), name, mode, &c, &st), &st);
}

static void lo_symlink(fuse_req_t req, const char *link, fuse_ino_t parent, const char *name)
{
	struct lunfs_cred c = cred_of(req);
	struct lunfs_stat st;
	reply_entry(req, lunfs_symlink(V, ino_of(parent), name, link, &c, &st), &st);
}

static void lo_link(fuse_req_t req, fuse_ino_t ino, fuse_ino_t parent, const char *name)
{
	struct lunfs_stat st;
	reply_entry(req, lunfs_link(V, ino_of(ino), ino_of(parent), name, &st), &st);
}

static void lo_unlink(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	fuse_reply_err(req, -lunfs_sys_errno(lunfs_unlink(V, ino_of(parent), name)));
}

static void lo_rmdir(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	fuse_reply_err(req, -lunfs_sys_errno(lunfs_rmdir(V, ino_of(parent), name)));
}

static void lo_rename(fuse_req_t req, fuse_ino_t parent, const char *name, fuse_ino_t newparent,
		      const char *newname, unsigned int flags)
{
	unsigned f = 0;
	if (flags & RENAME_NOREPLACE)
		f |= LUNFS_RENAME_NOREPLACE;
	if (flags & RENAME_EXCHANGE)
		f |= LUNFS_RENAME_EXCHANGE;
	if (flags & ~(RENAME_NOREPLACE | RENAME_EXCHANGE)) {
		fuse_reply_err(req, EINVAL);
		return;
	}
	fuse_reply_err(req, -lunfs_sys_errno(lunfs_rename(V, ino_of(parent), name, ino_of(newparent),
							   newname, f)));
}

/* Read-write opens hold the inode lock exclusively against other hosts, so
 * their pages may be cached; everything else goes direct.  O_NONBLOCK: a
 * read-write open another host holds fails at once, without open_wait_ms. */
static int do_open(fuse_ino_t ino, struct fuse_file_info *fi)
{
	int acc = fi->flags & O_ACCMODE;
	int mode = acc == O_RDONLY ? LUNFS_OPEN_SHARED_RO : LUNFS_OPEN_RW;
	struct lunfs_file *f;
	int r = lunfs_open(V, ino_of(ino), mode | ((fi->flags & O_NONBLOCK) ? LUNFS_OPEN_NOWAIT : 0), &f);
	if (r == -EBUSY && mode == LUNFS_OPEN_SHARED_RO) {
		/* a writer on another host: read without a lock (direct I/O,
		 * the file may change under us, as with any shared disk read) */
		mode = LUNFS_OPEN_READ;
		r = lunfs_open(V, ino_of(ino), mode, &f);
	}
	if (r)
		return r;
	fi->fh = (uintptr_t)f;
	fi->direct_io = mode != LUNFS_OPEN_RW || (fi->flags & O_DIRECT);
	fi->keep_cache = 0;
	return 0;
}

/* libfuse 3.14 cannot ask for parallel direct writes (FOPEN_PARALLEL_DIRECT_WRITES
 * of linux/fuse.h, kernel 6.2 and later; libfuse 3.15 adds it): without it the
 * kernel holds the inode lock across every direct write's whole round trip,
 * so a VM's writes reach the daemon one at a time, whatever its queue depth.
 * For a direct-I/O open the reply (a struct fuse_open_out: fh, open_flags,
 * padding) is sent with that bit through fuse_reply_iov; a kernel that does
 * not know the bit ignores it. */
#define OPEN_DIRECT_IO (1u << 0)
#define OPEN_KEEP_CACHE (1u << 1)
#define OPEN_PARALLEL_DIRECT_WRITES (1u << 6)
static void reply_open(fuse_req_t req, const struct fuse_file_info *fi)
{
	if (!fi->direct_io) {
		fuse_reply_open(req, fi);
		return;
	}
	struct {
		uint64_t fh;
		uint32_t open_flags, padding;
	} out = {fi->fh, OPEN_DIRECT_IO | OPEN_PARALLEL_DIRECT_WRITES | (fi->keep_cache ? OPEN_KEEP_CACHE : 0), 0};
	struct iovec v = {&out, sizeof(out)};
	fuse_reply_iov(req, &v, 1);
}

static void lo_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	int r = do_open(ino, fi);
	if (r) {
		reply_err(req, r);
		return;
	}
	/* Another host may have changed the file since the kernel cached its
	 * attributes (for up to TIMEOUT): an open starts from the disk's size. */
	fuse_lowlevel_notify_inval_inode(SE, ino, -1, 0);
	reply_open(req, fi);
}

static void lo_create(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode,
		      struct fuse_file_info *fi)
{
	struct lunfs_cred c = cred_of(req);
	struct lunfs_stat st;
	int r = lunfs_mknod(V, ino_of(parent), name, S_IFREG | (mode & 07777), 0, &c, &st);
	int made = !r;
	/* O_CREAT without O_EXCL of a name another host created a moment ago
	 * (the kernel's lookup read the directory before it was checkpointed):
	 * open the existing file, as open(2) promises */
	if (r == -EEXIST && !(fi->flags & O_EXCL) && !(r = lunfs_lookup(V, ino_of(parent), name, &st)) &&
	    S_ISDIR(st.mode))
		r = -EISDIR;
	if (!r && (r = do_open(st.ino, fi)) && made)
		lunfs_unlink(V, ino_of(parent), name);
	if (r) {
		reply_err(req, r);
		return;
	}
	struct fuse_entry_param e;
	memset(&e, 0, sizeof(e));
	e.ino = st.ino;
	e.generation = st.igen;
	e.attr_timeout = e.entry_timeout = TIMEOUT;
	to_stat(&st, &e.attr);
	fuse_reply_create(req, &e, fi);
}

static void lo_release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	(void)ino;
	int r = lunfs_close((struct lunfs_file *)(uintptr_t)fi->fh);
	if (r)
		logmsg(LOG_WARNING, "lunfs: close of inode %llu: %s", (unsigned long long)ino,
		       lunfs_strerror(r));
	fuse_reply_err(req, 0);
}

static void lo_flush(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	(void)ino;
	(void)fi;
	fuse_reply_err(req, 0);
}

static void lo_fsync(fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info *fi)
{
	(void)ino;
	(void)datasync;
	fuse_reply_err(req, -lunfs_sys_errno(lunfs_fsync((struct lunfs_file *)(uintptr_t)fi->fh)));
}

/* Reads and writes.  By default (io=loop, serve_loop()) LOOPS threads read
 * the requests from /dev/fuse and send each read or write of mapped blocks
 * to the device on a queue of their own (lunfs_loop_try), replying from the
 * completion, which the kernel posts while the thread waits for its next
 * request: with many requests in flight, no thread sleeps or wakes per
 * request.  Everything else goes to a pool of worker threads, with the
 * request's buffer.  Where the device has no such queue (iSCSI, a kernel
 * before 6.1), and with io=threads, the worker thread that took the request
 * does the device I/O and replies: the kernel keeps up to MAX_REQUESTS
 * requests in flight (max_background), one worker each, so a guest's queue
 * depth reaches the device, at the cost of a sleep and a wake-up per
 * request.  With io=async the worker hands a read or write of mapped blocks
 * to the library's completion-driven path (lunfs_aio_start) and goes back
 * to /dev/fuse; the reply goes from the completion thread (a hole to fill or
 * a partial sector is still served, and replied to, by the worker): the
 * slowest of the three, since the kernel completes each request in the
 * thread that submitted it, which it must wake.  docs/PERFORMANCE.md. */
enum { IO_LOOP = 0, IO_THREADS = 1, IO_AIO = 2 };
static int IO_MODE; /* io= */
#define IO_ASYNC (IO_MODE == IO_AIO)

/* Each worker's receive buffer (serve()): a write request's data begins
 * WRITE_HDR bytes in (struct fuse_in_header and struct fuse_write_in), so
 * the buffer starts that far before a page boundary and the data lies on
 * it.  WORKER_DATA bytes from that boundary on are the worker's: a read
 * is read into them. */
#define WRITE_HDR 80
#define WORKER_DATA ((1u << 20) + 8192) /* max_write, and more than libfuse reads */
static __thread uint8_t *worker_data;

/* io=loop: a request's buffer (4096 + WORKER_DATA bytes, page-aligned).  The
 * request is read WRITE_HDR bytes before its second page (as above); this
 * header at its start says what it is for while it is queued for a worker
 * or on its way to the device. */
struct rbuf {
	struct rbuf *next;      /* the pool's or the job queue's list */
	struct fuse_buf fb;     /* the request as read */
	int kind;               /* JOB_PROCESS: the whole request; JOB_DATA: a
				   read or write the loop could not send */
	fuse_req_t req;         /* JOB_DATA and the loop's requests */
	struct lunfs_file *f;   /* JOB_DATA */
	struct lunfs_aio a;     /* JOB_DATA and the loop's requests */
};
enum { JOB_PROCESS = 1, JOB_DATA = 2 };
#define RB_DATA(rb) ((uint8_t *)(rb) + 4096)

static __thread struct lunfs_loop *LOOP; /* this loop thread's queue */
static __thread int on_loop;        /* this thread is the loop */
static __thread int loop_kept;      /* a handler kept the loop's buffer */
static __thread struct rbuf *loop_rb; /* the buffer of the request in hand */
static __thread int loop_replied;   /* loop_done ran on the loop's thread */

/* Free buffers; at most POOL_KEEP are kept (their touched pages stay). */
#define POOL_KEEP (2 * MAX_REQUESTS)
static pthread_mutex_t pool_mu = PTHREAD_MUTEX_INITIALIZER;
static struct rbuf *pool;           /* protected by pool_mu */
static unsigned pool_n;             /* protected by pool_mu */

static struct rbuf *rb_get(void)
{
	pthread_mutex_lock(&pool_mu);
	struct rbuf *rb = pool;
	if (rb) {
		pool = rb->next;
		pool_n--;
	}
	pthread_mutex_unlock(&pool_mu);
	if (!rb && !(rb = aligned_alloc(4096, 4096 + WORKER_DATA)))
		return NULL;
	rb->fb = (struct fuse_buf){.mem = (uint8_t *)rb + 4096 - WRITE_HDR};
	return rb;
}

static void rb_put(struct rbuf *rb)
{
	pthread_mutex_lock(&pool_mu);
	if (pool_n < POOL_KEEP) {
		rb->next = pool;
		pool = rb;
		pool_n++;
		rb = NULL;
	}
	pthread_mutex_unlock(&pool_mu);
	free(rb);
}

/* The job queue of the workers (FIFO). */
static pthread_mutex_t job_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t job_cv = PTHREAD_COND_INITIALIZER;
static struct rbuf *job_head, **job_tail = &job_head; /* protected by job_mu */
static int job_stop;                                   /* protected by job_mu */

static void job_push(struct rbuf *rb)
{
	rb->next = NULL;
	pthread_mutex_lock(&job_mu);
	*job_tail = rb;
	job_tail = &rb->next;
	pthread_cond_signal(&job_cv);
	pthread_mutex_unlock(&job_mu);
}

/* Replies to req with a's result: an error, the data read, or the count
 * written. */
static void reply_aio(fuse_req_t req, const struct lunfs_aio *a)
{
	if (a->res < 0)
		reply_err(req, (int)a->res);
	else if (a->op == LUNFS_AIO_READ)
		fuse_reply_buf(req, a->buf, a->res);
	else
		fuse_reply_write(req, a->res);
}

/* Serves a synchronously on f (lunfs_pread or lunfs_pwrite): a->res. */
static void serve_sync(struct lunfs_file *f, struct lunfs_aio *a)
{
	a->res = a->op == LUNFS_AIO_READ ? lunfs_pread(f, a->buf, a->len, a->off)
					 : lunfs_pwrite(f, a->buf, a->len, a->off);
}

/* A loop request's completion (lunfs_loop_run, on the loop's thread). */
static void loop_done(struct lunfs_aio *a)
{
	struct rbuf *rb = a->priv;
	reply_aio(rb->req, a);
	rb_put(rb);
	loop_replied = 1;
}

/* A read or write on the loop's thread: to the device on the loop's queue
 * when the library can send it so, else to a worker (JOB_DATA) with the
 * buffer.  Returns 1 when it took the request. */
static int loop_data(fuse_req_t req, struct fuse_file_info *fi, int op, const void *wbuf,
		     size_t size, off_t off)
{
	struct rbuf *rb = loop_rb;
	int big = op == LUNFS_AIO_READ && size > WORKER_DATA; /* not from this kernel */
	if (!on_loop)
		return 0;
	/* without a queue of its own (loop_for failed), every read and
	 * write goes to the workers */
	rb->req = req;
	rb->f = (struct lunfs_file *)(uintptr_t)fi->fh;
	rb->a = (struct lunfs_aio){.op = op,
				   .buf = big ? NULL : op == LUNFS_AIO_READ ? RB_DATA(rb) : (void *)wbuf,
				   .len = size,
				   .off = (uint64_t)off,
				   .priv = rb};
	loop_kept = 1;
	if (big || !LOOP || lunfs_loop_try(LOOP, rb->f, &rb->a, loop_done) != 1) {
		rb->kind = JOB_DATA;
		job_push(rb);
	}
	return 1;
}

struct fop {
	struct lunfs_aio a;
	fuse_req_t req;
};

static struct fop *fop_new(fuse_req_t req, int op, size_t size, off_t off)
{
	struct fop *o = malloc(sizeof(*o));
	void *buf = aligned_alloc(4096, (size + 4095) / 4096 * 4096 + 4096);
	if (!o || !buf) {
		free(o);
		free(buf);
		fuse_reply_err(req, ENOMEM);
		return NULL;
	}
	*o = (struct fop){.a = {.op = op, .buf = buf, .len = size, .off = off}, .req = req};
	return o;
}

static void fop_done(struct lunfs_aio *a)
{
	struct fop *o = (struct fop *)a; /* a is its first member */
	reply_aio(o->req, a);
	free(a->buf);
	free(o);
}

static void fop_run(struct fop *o, struct fuse_file_info *fi)
{
	struct lunfs_file *f = (struct lunfs_file *)(uintptr_t)fi->fh;
	struct lunfs_aio *a = &o->a;
	if (IO_ASYNC) {
		lunfs_aio_start(f, a, fop_done);
		return;
	}
	serve_sync(f, a);
	fop_done(a);
}

static void lo_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, struct fuse_file_info *fi)
{
	(void)ino;
	if (loop_data(req, fi, LUNFS_AIO_READ, NULL, size, off))
		return;
	if (!IO_ASYNC && size <= WORKER_DATA) {
		/* into the page-aligned part of this worker's receive buffer:
		 * the request (80 bytes) lies before it, and the reply is sent
		 * before the worker reads the next request */
		ssize_t r = lunfs_pread((struct lunfs_file *)(uintptr_t)fi->fh, worker_data, size, off);
		if (r < 0)
			reply_err(req, (int)r);
		else
			fuse_reply_buf(req, (const char *)worker_data, (size_t)r);
		return;
	}
	struct fop *o = fop_new(req, LUNFS_AIO_READ, size, off);
	if (o)
		fop_run(o, fi);
}

static void lo_write(fuse_req_t req, fuse_ino_t ino, const char *buf, size_t size, off_t off,
		     struct fuse_file_info *fi)
{
	(void)ino;
	if (loop_data(req, fi, LUNFS_AIO_WRITE, buf, size, off))
		return;
	if (!IO_ASYNC) {
		/* from the request itself: serve() puts a write's data on a page
		 * boundary, so an aligned write goes to the device as it is */
		ssize_t r = lunfs_pwrite((struct lunfs_file *)(uintptr_t)fi->fh, buf, size, off);
		if (r < 0)
			reply_err(req, (int)r);
		else
			fuse_reply_write(req, (size_t)r);
		return;
	}
	/* io=async: copied, the request's buffer is gone when this returns */
	struct fop *o = fop_new(req, LUNFS_AIO_WRITE, size, off);
	if (!o)
		return;
	memcpy(o->a.buf, buf, size);
	fop_run(o, fi);
}

/* The kernel asks for SEEK_DATA and SEEK_HOLE only (it does the others). */
static void lo_lseek(fuse_req_t req, fuse_ino_t ino, off_t off, int whence,
		     struct fuse_file_info *fi)
{
	(void)ino;
	int w = whence == SEEK_DATA ? LUNFS_SEEK_DATA : whence == SEEK_HOLE ? LUNFS_SEEK_HOLE : -1;
	if (w < 0 || off < 0) {
		fuse_reply_err(req, EINVAL);
		return;
	}
	int64_t r = lunfs_seek_hole_data((struct lunfs_file *)(uintptr_t)fi->fh, off, w);
	if (r < 0)
		reply_err(req, (int)r);
	else
		fuse_reply_lseek(req, r);
}

static void lo_fallocate(fuse_req_t req, fuse_ino_t ino, int mode, off_t off, off_t len,
			 struct fuse_file_info *fi)
{
	unsigned m = 0;
	(void)ino;
	/* COLLAPSE_RANGE, INSERT_RANGE, UNSHARE_RANGE: EOPNOTSUPP (QEMU uses
	 * none of them on a raw image) */
	if (mode & ~(FALLOC_FL_KEEP_SIZE | FALLOC_FL_PUNCH_HOLE | FALLOC_FL_ZERO_RANGE)) {
		fuse_reply_err(req, EOPNOTSUPP);
		return;
	}
	if (mode & FALLOC_FL_KEEP_SIZE)
		m |= LUNFS_FALLOC_KEEP_SIZE;
	if (mode & FALLOC_FL_PUNCH_HOLE)
		m |= LUNFS_FALLOC_PUNCH;
	if (mode & FALLOC_FL_ZERO_RANGE)
		m |= LUNFS_FALLOC_ZERO_RANGE;
	fuse_reply_err(req, -lunfs_sys_errno(lunfs_fallocate((struct lunfs_file *)(uintptr_t)fi->fh,
							      m, off, len)));
}

/* An open directory is known to the library, so that it outlives its
 * last name (rmdir, rename over it) until releasedir. */
static void lo_opendir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct lunfs_file *f;
	int r = lunfs_opendir(V, ino_of(ino), &f);
	if (r) {
		reply_err(req, r);
		return;
	}
	fi->fh = (uintptr_t)f;
	fuse_reply_open(req, fi);
}

static void lo_releasedir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	int r = lunfs_close((struct lunfs_file *)(uintptr_t)fi->fh);
	if (r)
		logmsg(LOG_WARNING, "lunfs: close of directory %llu: %s", (unsigned long long)ino,
		       lunfs_strerror(r));
	fuse_reply_err(req, 0);
}

struct dirbuf {
	fuse_req_t req;
	char *buf;
	size_t size, used;
};

static int fill_dir(void *arg, const char *name, uint64_t ino, uint32_t type, uint64_t next)
{
	struct dirbuf *d = arg;
	struct stat st = {.st_ino = ino, .st_mode = type << 12};
	size_t n = fuse_add_direntry(d->req, d->buf + d->used, d->size - d->used, name, &st, next);
	if (n > d->size - d->used)
		return 1; /* full: the kernel asks again from this entry */
	d->used += n;
	return 0;
}

static void lo_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		       struct fuse_file_info *fi)
{
	(void)fi;
	struct dirbuf d = {req, malloc(size), size, 0};
	if (!d.buf) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	int r = lunfs_readdir(V, ino_of(ino), off, fill_dir, &d);
	if (r)
		reply_err(req, r);
	else
		fuse_reply_buf(req, d.buf, d.used);
	free(d.buf);
}

static void lo_statfs(fuse_req_t req, fuse_ino_t ino)
{
	struct lunfs_statfs s;
	struct statvfs st;
	(void)ino;
	int r = lunfs_statfs(V, &s);
	if (r) {
		reply_err(req, r);
		return;
	}
	memset(&st, 0, sizeof(st));
	st.f_bsize = s.bsize;
	st.f_frsize = s.bsize;
	st.f_blocks = s.blocks;
	st.f_bfree = s.bfree;
	st.f_bavail = s.bfree;
	st.f_files = s.files;
	st.f_ffree = s.ffree;
	st.f_favail = s.ffree;
	st.f_namemax = s.namemax;
	fuse_reply_statfs(req, &st);
}

static void lo_setxattr(fuse_req_t req, fuse_ino_t ino, const char *name, const char *value,
			size_t size, int flags)
{
	unsigned f = ((flags & XATTR_CREATE) ? LUNFS_XATTR_CREATE : 0) |
		     ((flags & XATTR_REPLACE) ? LUNFS_XATTR_REPLACE : 0);
	if (!strcmp(name, LUNFS_HANDOFF_XATTR)) {
		/* `lunfs handoff FILE HOST`: not stored, an order to this daemon */
		char host[65];
		if (!size || size >= sizeof(host) || memchr(value, 0, size)) {
			fuse_reply_err(req, EINVAL);
			return;
		}
		memcpy(host, value, size);
		host[size] = 0;
		int r = lunfs_handoff(V, ino_of(ino), host);
		logmsg(r ? LOG_ERR : LOG_NOTICE, "lunfs: handoff of inode %llu to host %s: %s",
		       (unsigned long long)ino_of(ino), host, r ? lunfs_strerror(r) : "done");
		fuse_reply_err(req, -lunfs_sys_errno(r));
		return;
	}
	fuse_reply_err(req, -lunfs_sys_errno(lunfs_setxattr(V, ino_of(ino), name, value, size, f)));
}

static void lo_getxattr(fuse_req_t req, fuse_ino_t ino, const char *name, size_t size)
{
	if (ino == FUSE_ROOT_ID && (!strcmp(name, PID_XATTR) || !strcmp(name, RO_XATTR))) {
		char pid[24];
		int n = !strcmp(name, RO_XATTR) ? snprintf(pid, sizeof(pid), "%d", mounted_ro)
						: snprintf(pid, sizeof(pid), "%ld", (long)getpid());
		if (!size)
			fuse_reply_xattr(req, n);
		else if (size < (size_t)n)
			fuse_reply_err(req, ERANGE);
		else
			fuse_reply_buf(req, pid, n);
		return;
	}
	char *buf = size ? malloc(size) : NULL;
	int r = lunfs_getxattr(V, ino_of(ino), name, buf, size);
	if (r < 0)
		reply_err(req, r);
	else if (!size)
		fuse_reply_xattr(req, r);
	else
		fuse_reply_buf(req, buf, r);
	free(buf);
}

static void lo_listxattr(fuse_req_t req, fuse_ino_t ino, size_t size)
{
	char *buf = size ? malloc(size) : NULL;
	int r = lunfs_listxattr(V, ino_of(ino), buf, size);
	if (r < 0)
		reply_err(req, r);
	else if (!size)
		fuse_reply_xattr(req, r);
	else
		fuse_reply_buf(req, buf, r);
	free(buf);
}

static void lo_removexattr(fuse_req_t req, fuse_ino_t ino, const char *name)
{
	fuse_reply_err(req, -lunfs_sys_errno(lunfs_removexattr(V, ino_of(ino), name)));
}

static const struct fuse_lowlevel_ops ops = {
	.init = lo_init,
	.lookup = lo_lookup,
	.forget = lo_forget,
	.getattr = lo_getattr,
	.setattr = lo_setattr,
	.readlink = lo_readlink,
	.mknod = lo_mknod,
	.mkdir = lo_mkdir,
	.symlink = lo_symlink,
	.link = lo_link,
	.unlink = lo_unlink,
	.rmdir = lo_rmdir,
	.rename = lo_rename,
	.open = lo_open,
	.create = lo_create,
	.release = lo_release,
	.flush = lo_flush,
	.fsync = lo_fsync,
	.read = lo_read,
	.write = lo_write,
	.fallocate = lo_fallocate,
	.lseek = lo_lseek,
	.opendir = lo_opendir,
	.readdir = lo_readdir,
	.releasedir = lo_releasedir,
	.statfs = lo_statfs,
	.setxattr = lo_setxattr,
	.getxattr = lo_getxattr,
	.listxattr = lo_listxattr,
	.removexattr = lo_removexattr,
};

/* ---- command line ---- */

/* What the command line asks; validated in full by parse_cmdline before
 * anything touches the volume. */
struct opts {
	char *host, *log, *dev, *mnt;
	int ro, foreground, help, version;
	int rw_given;   /* ro or rw was given (the last one counts) */
	int noatime, remount;
	uint32_t linger, recovery_pause, unmount_pause;
	uint32_t open_wait; /* open_wait_ms: default OPEN_WAIT_MS */
	int caw, no_pr;
	int io_mode;    /* io=: IO_LOOP (default), IO_THREADS or IO_AIO */
	int no_rejoin;  /* rejoin=off: a fenced mount stays fenced */
};

enum { K_HOST, K_LOG, K_LINGER, K_OWAIT, K_CAW, K_PR, K_RPAUSE, K_UPAUSE, K_RO, K_RW, K_FG, K_HELP, K_VERSION,
       K_NOATIME, K_STRICTATIME, K_REMOUNT, K_IO, K_REJOIN };

/* Our options; the rest goes to FUSE (fuse_session_new rejects what it
 * does not know), except options meant for mount(8) only, dropped here. */
static const struct fuse_opt opt_table[] = {
	FUSE_OPT_KEY("host=", K_HOST),
	FUSE_OPT_KEY("log=", K_LOG),
	FUSE_OPT_KEY("linger_ms=", K_LINGER),
	FUSE_OPT_KEY("open_wait_ms=", K_OWAIT),
	FUSE_OPT_KEY("caw=", K_CAW),
	FUSE_OPT_KEY("io=", K_IO),
	FUSE_OPT_KEY("rejoin=", K_REJOIN),
	FUSE_OPT_KEY("pr=", K_PR),
	FUSE_OPT_KEY("recovery_pause_ms=", K_RPAUSE),
	FUSE_OPT_KEY("unmount_pause_ms=", K_UPAUSE),
	FUSE_OPT_KEY("ro", K_RO),
	FUSE_OPT_KEY("rw", K_RW),
	FUSE_OPT_KEY("remount", K_REMOUNT),
	/* Access times: lunfs never updates them on access (reads write no
	 * metadata; FUSE leaves atime to the daemon).  noatime says so to
	 * the kernel; nodiratime, relatime and lazytime hold as they are;
	 * strictatime cannot, and is refused. */
	FUSE_OPT_KEY("noatime", K_NOATIME),
	FUSE_OPT_KEY("strictatime", K_STRICTATIME),
	FUSE_OPT_KEY("nodiratime", FUSE_OPT_KEY_DISCARD),
	FUSE_OPT_KEY("relatime", FUSE_OPT_KEY_DISCARD),
	FUSE_OPT_KEY("lazytime", FUSE_OPT_KEY_DISCARD),
	FUSE_OPT_KEY("-f", K_FG),
	FUSE_OPT_KEY("-h", K_HELP),
	FUSE_OPT_KEY("--help", K_HELP),
	FUSE_OPT_KEY("-V", K_VERSION),
	FUSE_OPT_KEY("--version", K_VERSION),
	/* mount(8) passes these: sloppy, no mtab, verbose */
	FUSE_OPT_KEY("-s", FUSE_OPT_KEY_DISCARD),
	FUSE_OPT_KEY("-n", FUSE_OPT_KEY_DISCARD),
	FUSE_OPT_KEY("-v", FUSE_OPT_KEY_DISCARD),
	FUSE_OPT_KEY("-t ", FUSE_OPT_KEY_DISCARD),
	/* for mount(8), not for us (x-* too, in opt_proc) */
	FUSE_OPT_KEY("defaults", FUSE_OPT_KEY_DISCARD),
	FUSE_OPT_KEY("_netdev", FUSE_OPT_KEY_DISCARD),
	FUSE_OPT_KEY("auto", FUSE_OPT_KEY_DISCARD),
	FUSE_OPT_KEY("noauto", FUSE_OPT_KEY_DISCARD),
	FUSE_OPT_KEY("user", FUSE_OPT_KEY_DISCARD),
	FUSE_OPT_KEY("nouser", FUSE_OPT_KEY_DISCARD),
	FUSE_OPT_KEY("users", FUSE_OPT_KEY_DISCARD),
	FUSE_OPT_KEY("nofail", FUSE_OPT_KEY_DISCARD),
	FUSE_OPT_KEY("helper=", FUSE_OPT_KEY_DISCARD),
	FUSE_OPT_END,
};

static const char *PROG = "mount.lunfs";

/* open_wait_ms's default: a live migration's destination opens the disk
 * for writing 1-40 ms after the source closed its writable handle, whose
 * FUSE RELEASE (a checkpoint and a CAW) comes after close(2) returned
 * (LOCKING.md 10.14); 3 s covers that on a loaded host and still refuses
 * a second VM quickly. */
#define OPEN_WAIT_MS 3000

/* A whole number of milliseconds, 0..max, or a one-line error naming the
 * option. */
static int parse_ms(const char *arg, uint32_t max, uint32_t *out)
{
	const char *v = strchr(arg, '=') + 1;
	char *end;
	errno = 0;
	long long n = strtoll(v, &end, 10);
	if (!*v || *end || errno || n < 0 || n > max) {
		fprintf(stderr, "%s: %s: must be a whole number of milliseconds, 0 to %u\n", PROG, arg, max);
		return -1;
	}
	*out = (uint32_t)n;
	return 0;
}

/* NAME=a or NAME=b: *second is 1 for b; else a one-line error naming the
 * option. */
static int choice(const char *arg, const char *a, const char *b, int *second)
{
	const char *v = strchr(arg, '=') + 1;
	if (strcmp(v, a) && strcmp(v, b)) {
		int n = (int)(v - arg - 1);
		fprintf(stderr, "%s: %s: must be %.*s=%s or %.*s=%s\n", PROG, arg, n, arg, a, n, arg, b);
		return -1;
	}
	*second = !strcmp(v, b);
	return 0;
}

static int opt_proc(void *data, const char *arg, int key, struct fuse_args *outargs)
{
	struct opts *o = data;
	const char *v = strchr(arg, '=') ? strchr(arg, '=') + 1 : "";
	(void)outargs;
	switch (key) {
	case K_HOST:
		if (!*v || strlen(v) > LUNFS_HOSTNAME_LEN) {
			fprintf(stderr, "%s: %s: the host name is 1 to %u bytes\n", PROG, arg, LUNFS_HOSTNAME_LEN);
			return -1;
		}
		free(o->host);
		o->host = strdup(v);
		return 0;
	case K_LOG:
		if (!*v) {
			fprintf(stderr, "%s: log=: needs a file name\n", PROG);
			return -1;
		}
		free(o->log);
		o->log = strdup(v);
		return 0;
	case K_LINGER:
		return parse_ms(arg, 3600000, &o->linger);
	case K_OWAIT:
		return parse_ms(arg, 600000, &o->open_wait);
	case K_RPAUSE:
		return parse_ms(arg, 600000, &o->recovery_pause);
	case K_UPAUSE:
		return parse_ms(arg, 600000, &o->unmount_pause);
	case K_IO:
		if (!strcmp(v, "loop") || !strcmp(v, "threads") || !strcmp(v, "async")) {
			o->io_mode = !strcmp(v, "loop") ? IO_LOOP : !strcmp(v, "threads") ? IO_THREADS : IO_AIO;
			return 0;
		}
		fprintf(stderr, "%s: %s: must be io=loop, io=threads or io=async\n", PROG, arg);
		return -1;
	case K_REJOIN:
		return choice(arg, "on", "off", &o->no_rejoin);
	case K_CAW:
		if (!strcmp(v, "auto"))
			o->caw = LUNFS_CAW_AUTO;
		else if (!strcmp(v, "native"))
			o->caw = LUNFS_CAW_NATIVE;
		else if (!strcmp(v, "reserve"))
			o->caw = LUNFS_CAW_RESERVE;
		else {
			fprintf(stderr, "%s: %s: must be caw=auto, caw=native or caw=reserve\n", PROG, arg);
			return -1;
		}
		return 0;
	case K_PR:
		return choice(arg, "on", "off", &o->no_pr);
	case K_RO:
	case K_RW:
		o->ro = key == K_RO;
		o->rw_given = 1;
		return 1; /* FUSE mounts read-only too (the last one counts) */
	case K_NOATIME:
		o->noatime = 1;
		return 1; /* the kernel's MS_NOATIME: shown in /proc/mounts */
	case K_STRICTATIME:
		fprintf(stderr, "%s: strictatime: lunfs does not update access times (it works as noatime); "
			"use noatime or relatime\n", PROG);
		return -1;
	case K_REMOUNT:
		o->remount = 1;
		return 0;
	case K_FG:
		o->foreground = 1;
		return 0;
	case K_HELP:
		o->help = 1;
		return 0;
	case K_VERSION:
		o->version = 1;
		return 0;
	case FUSE_OPT_KEY_NONOPT:
		if (!o->dev)
			o->dev = strdup(arg);
		else if (!o->mnt)
			o->mnt = strdup(arg);
		else {
			fprintf(stderr, "%s: %s: too many arguments (-h for help)\n", PROG, arg);
			return -1;
		}
		return 0;
	default: /* FUSE_OPT_KEY_OPT */
		if (!strncmp(arg, "x-", 2))
			return 0; /* for mount(8) and systemd */
		if (arg[0] == '-') {
			fprintf(stderr, "%s: unknown option %s (-h for help)\n", PROG, arg);
			return -1;
		}
		return 1; /* for FUSE: allow_other and the like */
	}
}

/* ---- rejoin after a fence ----
 * A host whose lease ran out (its storage stalled or vanished longer than a
 * lease, or the whole host froze) is fenced: the library refuses its writes
 * and its reads, and other hosts recover its slot and take its locks.
 * VMware calls the storage side of this all-paths-down.  When the storage
 * answers again, the host comes back by itself: a new mount with the same
 * identity (lunfs_mount waits until a survivor has recovered the old slot,
 * or, with no survivor, recovers it itself: the same-identity takeover), and
 * the new mount serves every new operation.  Files opened before the fence
 * stay failed (EIO): their locks belong to others now, and what a VM wrote
 * into them since its last flush may be lost, which its owner must learn. */
#define REJOIN_MAX_OLD 64

struct rejoin {
	const char *dev;
	struct lunfs_mount_opts mo;
	struct lunfs_test_opts hooks;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	int stop;
	pthread_t thr;
	struct lunfs_vol *old[REJOIN_MAX_OLD]; /* fenced mounts, freed at exit */
	int nold;
};

/* Waits ms, or until asked to stop; returns 1 to stop. */
static int rejoin_wait(struct rejoin *rj, unsigned ms)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += ms / 1000;
	ts.tv_nsec += (long)(ms % 1000) * 1000000;
	if (ts.tv_nsec >= 1000000000) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000;
	}
	pthread_mutex_lock(&rj->mu);
	if (!rj->stop)
		pthread_cond_timedwait(&rj->cv, &rj->mu, &ts);
	int stop = rj->stop;
	pthread_mutex_unlock(&rj->mu);
	return stop;
}

static void *rejoin_thread(void *arg)
{
	struct rejoin *rj = arg;
	unsigned backoff = 500;
	int told = 0;
	while (!rejoin_wait(rj, told ? backoff : 500)) {
		struct lunfs_vol *cur = V;
		if (!lunfs_fenced(cur)) {
			told = 0;
			backoff = 500;
			continue;
		}
		if (!told) {
			logmsg(LOG_ERR, "lunfs: %s: this host lost its lease (fenced): open files fail; "
			       "it mounts again as soon as the storage answers", rj->dev);
			told = 1;
		}
		if (rj->nold == REJOIN_MAX_OLD)
			continue; /* an unmount is overdue; keep failing safely */
		struct lunfs_vol *nv;
		const char *msg = NULL;
		int r = lunfs_mount_test(rj->dev, &rj->mo, &rj->hooks, &nv, &msg);
		if (r) {
			logmsg(LOG_WARNING, "lunfs: %s: cannot rejoin yet: %s", rj->dev,
			       msg ? msg : lunfs_strerror(r));
			backoff = backoff < 8000 ? backoff * 2 : 8000;
			continue;
		}
		__atomic_store_n(&V_, nv, __ATOMIC_RELEASE);
		lunfs_retire(cur);
		rj->old[rj->nold++] = cur;
		logmsg(LOG_NOTICE, "lunfs: %s: rejoined after the fence; files open before it stay "
		       "failed", rj->dev);
		told = 0;
		backoff = 500;
	}
	return NULL;
}

static void usage(void)
{
	printf("usage: %s DEVICE MOUNTPOINT [-f] [-o OPTION[,OPTION...]]\n"
	       "  DEVICE: an image file, a block device, iscsi://HOST[:PORT]/IQN/LUN,\n"
	       "          or LABEL=LABEL / UUID=UUID of a lunfs volume on a block device\n"
	       "  -o host=NAME        this host's identity (default: /etc/machine-id)\n"
	       "  -o ro               read-only\n"
	       "  -o remount,ro|rw    make a lunfs mount read-only, or read-write again\n"
	       "  -o noatime          (access times are never updated: relatime, nodiratime\n"
	       "                      and lazytime are accepted; strictatime is refused)\n"
	       "  -o linger_ms=N      idle locks are released after N ms (default 500)\n"
	       "  -o open_wait_ms=N   a read-write open waits up to N ms for another host's\n"
	       "                      open to close before EBUSY (default 3000; 0: at once)\n"
	       "  -o io=loop|threads|async  reads and writes: an event loop sends them to\n"
	       "                      the device and replies (default; threads where the\n"
	       "                      device has no queue for it), a thread each, or the\n"
	       "                      library's completion thread replies\n"
	       "  -o rejoin=on|off    after a fence, mount again by itself (default on)\n"
	       "  -o log=FILE         log to FILE instead of syslog\n"
	       "  -o caw=auto|native|reserve, pr=on|off   iSCSI compare-and-write, persistent reservations\n"
	       "  -o allow_other,...  FUSE options\n"
	       "  -f                  stay in the foreground\n"
	       "  -h, --help          this help;  -V, --version  the version\n",
	       PROG);
}

/* A path the caller gave relative to its cwd, made absolute now: the
 * daemon runs in / (it must not pin the caller's directory). */
static char *abs_path(const char *p)
{
	char cwd[PATH_MAX], *r = NULL;
	if (p[0] == '/' || !getcwd(cwd, sizeof(cwd)))
		return strdup(p);
	return asprintf(&r, "%s/%s", cwd, p) < 0 ? NULL : r;
}

/* umount(8) finds a mount's type without reading mountinfo (by statfs:
 * plain "fuse") unless utab has an entry for the mount point; with one,
 * it reads the type fuse.lunfs and runs /sbin/umount.fuse.lunfs.  So the
 * daemon records its mount in utab (helper=lunfs), whoever started it, and
 * removes the entry when it exits (umount(8) also removes it after the
 * helper).  Failure only loses the wait at umount: logged, not fatal. */
static void utab_update(const char *dev, const char *mnt, int add)
{
	struct libmnt_update *upd = mnt_new_update();
	struct libmnt_fs *fs = NULL;
	int r = -ENOMEM;
	if (!upd)
		goto out;
	if (add) {
		if (!(fs = mnt_new_fs()) || mnt_fs_set_source(fs, dev) || mnt_fs_set_target(fs, mnt) ||
		    mnt_fs_set_fstype(fs, "fuse.lunfs") || mnt_fs_set_options(fs, "helper=lunfs"))
			goto out;
		r = mnt_update_set_fs(upd, 0, NULL, fs);
	} else {
		r = mnt_update_set_fs(upd, 0, mnt, NULL);
	}
	if (r == 0)
		r = mnt_update_table(upd, NULL);
	else if (r == 1)
		r = 0; /* nothing to update */
out:
	if (r)
		logmsg(LOG_WARNING, "lunfs: cannot %s the utab entry of %s (umount will not wait for "
		       "the daemon): %s", add ? "add" : "remove", mnt, strerror(r < 0 ? -r : r));
	mnt_unref_fs(fs);
	mnt_free_update(upd);
}

/* ---- umount helper ----
 *
 * The kernel sends FUSE_DESTROY, and waits for its reply, only for fuseblk
 * mounts (a block device the kernel opens itself): for ours, umount(2)
 * returns as soon as the mount is gone, and the daemon learns of it only
 * afterwards, when its next read of /dev/fuse fails.  It then still has to
 * checkpoint its journal and release its locks and its heartbeat slot, so
 * `umount DIR && fsck.lunfs -y DEV` would race with it.  umount(8) runs
 * /sbin/umount.fuse.lunfs (a link to this program) for fuse.lunfs mounts:
 * it asks the daemon its PID (PID_XATTR), holds a pidfd on it, unmounts,
 * and returns only when the daemon has exited.  fusermount3 -u has no such
 * hook and returns early (docs/ADMIN.md). */
static int umount_main(const char *prog, int argc, char **argv)
{
	int flags = UMOUNT_NOFOLLOW, wait = 1, c;
	/* umount(8) runs helpers as: umount.fuse.lunfs DIR [-flnrv] [-N NS] [-t TYPE] */
	while ((c = getopt(argc, argv, "flnrvt:N:hV")) != -1) {
		switch (c) {
		case 'f':
			flags |= MNT_FORCE;
			break;
		case 'l':
			/* lazy: the mount may stay busy for long; do not wait */
			flags |= MNT_DETACH;
			wait = 0;
			break;
		case 'N':
			fprintf(stderr, "%s: -N (mount namespaces) is not supported\n", prog);
			return 2;
		case 'h':
			printf("usage: %s DIR [-f] [-l] [-n] [-r] [-v] [-t TYPE]\n"
			       "  unmounts a lunfs mount and waits for its daemon to exit\n", prog);
			return 0;
		case 'V':
			printf("%s (lunfs) %s\n", prog, LUNFS_RELEASE);
			return 0;
		case 'n': case 'r': case 'v': case 't':
			break; /* no mtab; read-only remount does not apply; verbose; the type is ours */
		default:
			return 2;
		}
	}
	if (optind != argc - 1) {
		fprintf(stderr, "%s: usage: %s DIR [-flnrv] (-h for help)\n", prog, prog);
		return 2;
	}
	const char *dir = argv[optind];
	char pid[24];
	int pidfd = -1;
	ssize_t n = getxattr(dir, PID_XATTR, pid, sizeof(pid) - 1);
	if (wait && n > 0) {
		pid[n] = 0;
		pidfd = (int)syscall(SYS_pidfd_open, (pid_t)atol(pid), 0);
	}
	if (umount2(dir, flags)) {
		fprintf(stderr, "%s: %s: %s\n", prog, dir, strerror(errno));
		if (pidfd >= 0)
			close(pidfd);
		return 1;
	}
	/* no PID (a daemon without PID_XATTR, or it died): nothing to wait for */
	if (pidfd >= 0) {
		struct pollfd p = {.fd = pidfd, .events = POLLIN};
		while (poll(&p, 1, -1) < 0 && errno == EINTR)
			;
		close(pidfd);
	}
	return 0;
}

/* fuse_session_new's complaints, kept for a one-line error. */
static char fuse_msg[300];
static void capture_log(enum fuse_log_level level, const char *fmt, va_list ap)
{
	size_t n = strlen(fuse_msg);
	(void)level;
	if (n < sizeof(fuse_msg) - 1)
		vsnprintf(fuse_msg + n, sizeof(fuse_msg) - n, fmt, ap);
	for (char *p = fuse_msg; *p; p++)
		if (*p == '\n')
			*p = ' ';
	n = strlen(fuse_msg);
	while (n && fuse_msg[n - 1] == ' ')
		fuse_msg[--n] = 0;
	if (!strncmp(fuse_msg, "fuse: ", 6))
		memmove(fuse_msg, fuse_msg + 6, strlen(fuse_msg + 6) + 1);
}

/* LABEL=L or UUID=U: the one block device whose lunfs superblock has it.
 * libblkid knows no lunfs, so the block devices the kernel lists in
 * /sys/class/block are read one by one (read-only, primary superblock or
 * backup).  NULL (reported) when none or several match. */
static char *find_by_tag(const char *tag)
{
	int by_label = !strncmp(tag, "LABEL=", 6);
	const char *want = strchr(tag, '=') + 1;
	char *found = NULL;
	int n = 0;
	DIR *dir = opendir("/sys/class/block");
	struct dirent *e;
	while (dir && (e = readdir(dir))) {
		char path[300], u[37];
		struct dev *d;
		struct lunfs_sb sb;
		int used_backup;
		if (e->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "/dev/%s", e->d_name);
		struct dev_opts o = {.readonly = 1};
		if (dev_open(path, &o, &d))
			continue;
		int r = lunfs_read_sb(d, &sb, 1, &used_backup, NULL);
		dev_close(d);
		if (r)
			continue;
		lunfs_uuid_str(sb.uuid, u);
		if (by_label ? strcmp(sb.label, want) : strcasecmp(u, want))
			continue;
		if (n++ == 0)
			found = strdup(path);
		else
			fprintf(stderr, "%s: %s: on %s and %s: give the device\n", PROG, tag, found, path);
	}
	if (dir)
		closedir(dir);
	if (n == 1)
		return found;
	if (n == 0)
		fprintf(stderr, "%s: %s: no lunfs volume on a block device has it\n", PROG, tag);
	free(found);
	return NULL;
}

/* DEVICE as the daemon will open it after its chdir("/"): an iSCSI URL as
 * is, LABEL=/UUID= looked up, a path made absolute.  NULL (reported) when
 * it cannot be. */
static char *resolve_device(const char *dev)
{
	if (!strncmp(dev, "iscsi://", 8))
		return strdup(dev);
	if (!strncmp(dev, "LABEL=", 6) || !strncmp(dev, "UUID=", 5))
		return find_by_tag(dev);
	char *p = realpath(dev, NULL);
	if (!p)
		fprintf(stderr, "%s: cannot mount %s: %s\n", PROG, dev, strerror(errno));
	return p;
}

/* mount -o remount,ro|rw DIR (mount(8) runs the helper mount.fuse.lunfs
 * with the mount's options and "remount").  The daemon keeps running:
 * ro makes the kernel refuse every change (EROFS) while the daemon stays a
 * live host of the volume (heartbeat slot and cached locks kept, so
 * fsck -y still sees it); rw lifts that again.  A daemon that mounted the
 * volume with ro holds no heartbeat slot and cannot become a writer:
 * remount,rw of it is refused (unmount, then mount read-write).  The other
 * options of the mount cannot change. */
static int remount(const struct opts *o)
{
	char *mnt = realpath(o->mnt, NULL), ro[8];
	struct statvfs sv;
	int rc = 1;
	if (!mnt) {
		fprintf(stderr, "%s: remount: %s: %s\n", PROG, o->mnt, strerror(errno));
		return 1;
	}
	ssize_t n = getxattr(mnt, RO_XATTR, ro, sizeof(ro) - 1);
	if (n <= 0 || statvfs(mnt, &sv)) {
		fprintf(stderr, "%s: remount: %s is not a lunfs mount point\n", PROG, mnt);
		goto out;
	}
	ro[n] = 0;
	int want_ro = o->rw_given ? o->ro : !!(sv.f_flag & ST_RDONLY);
	if (!want_ro && !strcmp(ro, "1")) {
		fprintf(stderr, "%s: remount,rw: %s was mounted with ro (no heartbeat slot): unmount it and "
			"mount it read-write\n", PROG, mnt);
		goto out;
	}
	/* a remount sets every per-mount flag: keep the ones it has */
	static const struct { unsigned long st, ms; } keep[] = {
		{ST_NOSUID, MS_NOSUID}, {ST_NODEV, MS_NODEV}, {ST_NOEXEC, MS_NOEXEC},
		{ST_NOATIME, MS_NOATIME}, {ST_NODIRATIME, MS_NODIRATIME}, {ST_RELATIME, MS_RELATIME},
	};
	unsigned long fl = MS_REMOUNT | (want_ro ? MS_RDONLY : 0) | (o->noatime ? MS_NOATIME : 0);
	for (size_t i = 0; i < sizeof(keep) / sizeof(keep[0]); i++)
		if (sv.f_flag & keep[i].st)
			fl |= keep[i].ms;
	if (mount(NULL, mnt, NULL, fl, NULL)) {
		fprintf(stderr, "%s: remount of %s: %s\n", PROG, mnt, strerror(errno));
		goto out;
	}
	rc = 0;
out:
	free(mnt);
	return rc;
}

/* The request loop: MAX_REQUESTS workers, each reading a request from
 * /dev/fuse into its own buffer and handling it (fuse_session_receive_buf,
 * fuse_session_process_buf), so every request in flight has its worker.
 * Not fuse_session_loop_mt, because its buffers come from malloc: a
 * write's data would lie 80 bytes past a page boundary, and each write
 * would be copied into an aligned buffer for the O_DIRECT device.  Signals
 * go to the main thread (or a library thread), whose handler ends the
 * session; the main thread looks at least once a second, and is woken at
 * once by a worker that saw the unmount.  Then it cancels the workers, each
 * while it waits for a request, never inside one. */
static sem_t serve_end;
static int serve_failed; /* a worker could not read /dev/fuse */

static void *worker(void *arg)
{
	struct fuse_session *se = arg;
	uint8_t *base = aligned_alloc(4096, 4096 + WORKER_DATA);
	if (!base) {
		logmsg(LOG_ERR, "lunfs: no memory for a FUSE worker");
		fuse_session_exit(se);
		sem_post(&serve_end);
		return NULL;
	}
	pthread_cleanup_push(free, base);
	struct fuse_buf fb = {.mem = base + 4096 - WRITE_HDR};
	worker_data = base + 4096;
	/* cancellable only while waiting for a request */
	pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, NULL);
	while (!fuse_session_exited(se)) {
		pthread_setcancelstate(PTHREAD_CANCEL_ENABLE, NULL);
		int r = fuse_session_receive_buf(se, &fb);
		pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, NULL);
		if (r == -EINTR)
			continue;
		if (r <= 0) {
			if (r < 0) {
				logmsg(LOG_ERR, "lunfs: reading /dev/fuse: %s", strerror(-r));
				serve_failed = 1;
			}
			fuse_session_exit(se);
			break;
		}
		fuse_session_process_buf(se, &fb);
	}
	sem_post(&serve_end);
	pthread_cleanup_pop(1);
	return NULL;
}

/* io=loop: a worker runs the jobs the loop hands it. */
static void run_job(struct fuse_session *se, struct rbuf *rb)
{
	if (rb->kind == JOB_PROCESS) {
		worker_data = RB_DATA(rb); /* lo_read reads into it */
		fuse_session_process_buf(se, &rb->fb);
		rb_put(rb);
		return;
	}
	struct lunfs_aio *a = &rb->a;
	void *big = NULL;
	if (!a->buf && !(a->buf = big = aligned_alloc(4096, (a->len + 4095) / 4096 * 4096)))
		a->res = -ENOMEM;
	else
		serve_sync(rb->f, a);
	loop_done(a);
	free(big);
}

static void *job_worker(void *arg)
{
	struct fuse_session *se = arg;
	pthread_mutex_lock(&job_mu);
	for (;;) {
		while (!job_head && !job_stop)
			pthread_cond_wait(&job_cv, &job_mu);
		struct rbuf *rb = job_head;
		if (!rb)
			break; /* stopped, and every job done */
		if (!(job_head = rb->next))
			job_tail = &job_head;
		pthread_mutex_unlock(&job_mu);
		run_job(se, rb);
		pthread_mutex_lock(&job_mu);
	}
	pthread_mutex_unlock(&job_mu);
	return NULL;
}

/* The loop's queue for the volume mounted now (a new one after a rejoin:
 * lunfs_loop_try serves only files of its own volume).  When it cannot be
 * opened, LOOP stays NULL: the loop still reads the requests, and hands
 * every read and write to the workers. */
static void loop_for(struct lunfs_vol *v, struct lunfs_vol **lv, int fd)
{
	if (*lv == v)
		return;
	lunfs_loop_close(LOOP);
	LOOP = NULL;
	*lv = v;
	int r = lunfs_loop_open(v, &LOOP);
	if (!r && (r = lunfs_loop_watch(LOOP, fd))) {
		lunfs_loop_close(LOOP);
		LOOP = NULL;
	}
	if (r)
		logmsg(LOG_WARNING, "lunfs: no device queue for a FUSE loop (%s): its reads and "
		       "writes go to the worker threads", lunfs_strerror(r));
}

/* io=loop: LOOPS threads read the requests, each with a device queue of
 * its own (lunfs_loop_open), all watching /dev/fuse.  One is not enough on
 * a small machine: a reply wakes the guest's thread on the loop's CPU,
 * which then waits behind it while the other CPU idles; with two, the
 * other loop takes the next requests meanwhile.  A read or write goes to
 * fuse_session_process_buf on the loop's thread (lo_read, lo_write:
 * loop_data); every other request, with its buffer, to the workers, which
 * may wait (locks, the device).  /dev/fuse is non-blocking: a loop reads
 * until it would block, then waits in lunfs_loop_run for the next request
 * or completion, at most a second (a signal ends the session: each loop
 * looks at least once a second).  At the end each loop waits for its
 * requests; then the workers finish what they were given. */
#define LOOPS 2
static int loop_failed;  /* a loop could not go on (atomic) */

static void loop_fail(struct fuse_session *se)
{
	__atomic_store_n(&loop_failed, 1, __ATOMIC_RELAXED);
	fuse_session_exit(se);
}

static void loop_main(struct fuse_session *se)
{
	int fd = fuse_session_fd(se), ready = 1;
	struct lunfs_vol *lv = NULL;
	struct rbuf *rb = NULL;
	on_loop = 1;
	while (!fuse_session_exited(se)) {
		loop_for(V, &lv, fd);
		if (!rb && !(rb = rb_get()))
			logmsg(LOG_ERR, "lunfs: no memory for a FUSE request buffer");
		for (int k = 0; rb && ready && k < 64 && !fuse_session_exited(se); k++) {
			int r = fuse_session_receive_buf(se, &rb->fb);
			if (r == -EAGAIN) {
				ready = 0;
			} else if (r == -EINTR) {
				continue;
			} else if (r <= 0) {
				if (r < 0) {
					logmsg(LOG_ERR, "lunfs: reading /dev/fuse: %s", strerror(-r));
					loop_fail(se);
				}
				fuse_session_exit(se); /* 0: unmounted */
			} else {
				const struct fuse_in_header *h = rb->fb.mem;
				loop_kept = 0;
				if (h->opcode == FUSE_READ || h->opcode == FUSE_WRITE) {
					loop_rb = rb;
					fuse_session_process_buf(se, &rb->fb);
				} else {
					rb->kind = JOB_PROCESS;
					job_push(rb);
					loop_kept = 1;
				}
				if (loop_kept && !(rb = rb_get()))
					logmsg(LOG_ERR, "lunfs: no memory for a FUSE request buffer");
			}
		}
		/* no buffer: the completions (which free some) go on; look again
		 * in 10 ms */
		int wait = !rb ? 10 : ready ? 0 : 1000, r;
		loop_replied = 0;
		if (LOOP) {
			r = lunfs_loop_run(LOOP, wait);
		} else {
			struct pollfd p = {.fd = fd, .events = POLLIN};
			r = poll(&p, 1, wait) > 0;
		}
		/* a reply brings the next request: look before waiting */
		if (r > 0 || (r == 0 && loop_replied)) {
			ready = 1;
		} else if (r < 0 && r != -EINTR) {
			/* the device queue failed: what is in flight stays so
			 * and is reaped by a later run */
			logmsg(LOG_ERR, "lunfs: the FUSE loop's device queue: %s", lunfs_strerror(r));
			usleep(1000);
			ready = 1;
		}
	}
	on_loop = 0;
	lunfs_loop_close(LOOP); /* its requests are answered */
	LOOP = NULL;
	if (rb)
		rb_put(rb);
}

static void *loop_thread(void *arg)
{
	loop_main(arg);
	return NULL;
}

/* Returns 1 when the device has no queue for a loop (serve() then), else
 * as serve(). */
static int serve_loop(struct fuse_session *se)
{
	int fd = fuse_session_fd(se);
	struct lunfs_loop *probe;
	pthread_t t[MAX_REQUESTS], lt[LOOPS];
	int n = 0, nl = 0;
	if (lunfs_loop_open(V, &probe))
		return 1;
	lunfs_loop_close(probe);
	int fl = fcntl(fd, F_GETFL);
	if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK))
		return 1;
	sigset_t all, old;
	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, &old); /* the threads inherit it */
	while (n < MAX_REQUESTS && !pthread_create(&t[n], NULL, job_worker, se))
		n++;
	while (n && nl < LOOPS - 1 && !pthread_create(&lt[nl], NULL, loop_thread, se))
		nl++;
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (!n) {
		logmsg(LOG_ERR, "lunfs: cannot start the FUSE workers");
		loop_fail(se);
	}
	loop_main(se);
	for (int i = 0; i < nl; i++)
		pthread_join(lt[i], NULL);
	pthread_mutex_lock(&job_mu);
	job_stop = 1;
	pthread_cond_broadcast(&job_cv);
	pthread_mutex_unlock(&job_mu);
	for (int i = 0; i < n; i++)
		pthread_join(t[i], NULL);
	for (struct rbuf *p = pool, *nx; p; p = nx) {
		nx = p->next;
		free(p);
	}
	pool = NULL;
	pool_n = 0;
	return loop_failed ? -1 : 0;
}

static int serve(struct fuse_session *se)
{
	pthread_t t[MAX_REQUESTS];
	int n = 0;
	sigset_t all, old;
	sigfillset(&all);
	sem_init(&serve_end, 0, 0);
	pthread_sigmask(SIG_BLOCK, &all, &old); /* the workers inherit it */
	while (n < MAX_REQUESTS && !pthread_create(&t[n], NULL, worker, se))
		n++;
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (!n) {
		logmsg(LOG_ERR, "lunfs: cannot start a FUSE worker");
		return -1;
	}
	/* a signal (fuse_set_signal_handlers: the session exits) interrupts
	 * the wait when it comes to this thread; the timeout covers one that
	 * another thread took, or that came just before the wait */
	while (!fuse_session_exited(se)) {
		struct timespec dl;
		clock_gettime(CLOCK_REALTIME, &dl);
		dl.tv_sec++;
		sem_timedwait(&serve_end, &dl);
	}
	for (int i = 0; i < n; i++)
		pthread_cancel(t[i]);
	for (int i = 0; i < n; i++)
		pthread_join(t[i], NULL);
	sem_destroy(&serve_end);
	return serve_failed ? -1 : 0; /* a signal is a clean end */
}

int main(int argc, char **argv)
{
	struct opts o = {.open_wait = OPEN_WAIT_MS};
	const char *prog = strrchr(argv[0], '/') ? strrchr(argv[0], '/') + 1 : argv[0];
	if (!strncmp(prog, "umount.", 7))
		return umount_main(prog, argc, argv);
	PROG = prog;
	struct fuse_args args = FUSE_ARGS_INIT(argc, argv);
	char *mntpoint = NULL, *dev = NULL;
	struct fuse_session *se = NULL;
	char err[600] = "";
	int pfd[2] = {-1, -1}, rc = 1;
	/* Every option is checked here, before the volume is opened: an error
	 * is one line naming the option, and nothing was written. */
	if (fuse_opt_parse(&args, &o, opt_table, opt_proc))
		goto usage;
	if (o.help) {
		usage();
		rc = 0;
		goto out;
	}
	if (o.version) {
		printf("%s (lunfs) %s\n", prog, LUNFS_RELEASE);
		rc = 0;
		goto out;
	}
	if (o.remount && o.dev && !o.mnt) {
		o.mnt = o.dev; /* mount -o remount DIR */
		o.dev = NULL;
	}
	if (o.remount && o.mnt) {
		rc = remount(&o);
		goto out;
	}
	if (!o.dev || !o.mnt) {
		fprintf(stderr, "%s: usage: %s DEVICE MOUNTPOINT [-f] [-o OPTIONS] (-h for help)\n", prog, prog);
		goto usage;
	}
	if (!(mntpoint = realpath(o.mnt, NULL))) {
		fprintf(stderr, "%s: %s: %s\n", prog, o.mnt, strerror(errno));
		goto out;
	}
	if (!(dev = resolve_device(o.dev)))
		goto out;
	if (o.log) {
		char *a = abs_path(o.log);
		free(o.log);
		o.log = a;
		/* opened here, so an error is reported before anything is mounted */
		if (!o.log || !(logf_ = fopen(o.log, "a"))) {
			fprintf(stderr, "%s: log=%s: %s\n", prog, o.log ? o.log : "", strerror(errno));
			goto out;
		}
		setvbuf(logf_, NULL, _IOLBF, 0);
	}
	/* FUSE options: ours first, then what the user gave.  The session is
	 * made now, to check them: it names the ones it does not know. */
	char *fo = NULL, *fsname = NULL;
	if (asprintf(&fsname, "fsname=%s", dev) < 0 || fuse_opt_add_opt_escaped(&fo, fsname) ||
	    fuse_opt_add_opt(&fo, "subtype=lunfs,default_permissions") ||
	    fuse_opt_insert_arg(&args, 1, "-o") || fuse_opt_insert_arg(&args, 2, fo)) {
		fprintf(stderr, "%s: out of memory\n", prog);
		free(fo);
		free(fsname);
		goto out;
	}
	free(fo);
	free(fsname);
	fuse_set_log_func(capture_log);
	se = fuse_session_new(&args, &ops, sizeof(ops), NULL);
	fuse_set_log_func(NULL);
	SE = se;
	if (!se) {
		fprintf(stderr, "%s: %s\n", prog, *fuse_msg ? fuse_msg : "bad FUSE options (-h for help)");
		goto usage;
	}
	/* The library runs threads (heartbeat, lock linger) that a fork would
	 * lose, so fork first: the parent waits for the child's verdict on the
	 * mount and exits with it, so mount(8) still sees every error. */
	if (!o.foreground) {
		if (pipe(pfd)) {
			perror(prog);
			goto out;
		}
		pid_t pid = fork();
		if (pid < 0) {
			perror(prog);
			goto out;
		}
		if (pid > 0) {
			char m[600];
			close(pfd[1]);
			ssize_t n = read(pfd[0], m, sizeof(m) - 1);
			if (n <= 0) {
				fprintf(stderr, "%s: the daemon died while mounting\n", prog);
				goto out;
			}
			m[n] = 0;
			if (strcmp(m, "OK"))
				fprintf(stderr, "%s", m);
			else
				rc = 0;
			goto out;
		}
		close(pfd[0]);
		setsid();
		if (chdir("/"))
			{ /* keep going: every path is absolute */ }
		/* Let go of the caller's terminal or pipes (`mount ... | tee` must
		 * end): errors go to the parent through pfd, the rest to the log;
		 * stderr goes to the log file too, for what libraries print. */
		int nul = open("/dev/null", O_RDWR);
		if (nul >= 0) {
			dup2(nul, 0);
			dup2(nul, 1);
			dup2(logf_ ? fileno(logf_) : nul, 2);
			if (nul > 2)
				close(nul);
		}
	}
	if (!logf_ && !o.foreground) {
		use_syslog = 1;
		openlog("lunfs", LOG_PID, LOG_DAEMON);
	} else if (!logf_) {
		logf_ = stderr;
	}
	lunfs_log_set(lib_log);
	IO_MODE = o.io_mode;
	struct lunfs_mount_opts mo = {.host = o.host, .readonly = o.ro, .linger_ms = o.linger,
				      .open_wait_ms = o.open_wait,
				      .dev = {.caw_mode = o.caw, .no_pr = o.no_pr}};
	struct lunfs_test_opts hooks = {.recovery_pause_ms = o.recovery_pause};
	const char *msg = NULL;
	mounted_ro = o.ro;
	int r = lunfs_mount_test(dev, &mo, &hooks, &V_, &msg);
	if (r) {
		snprintf(err, sizeof(err), "%s: cannot mount %s: %s\n", prog, dev, msg ? msg : lunfs_strerror(r));
		goto fail;
	}
	if (fuse_set_signal_handlers(se) || fuse_session_mount(se, mntpoint)) {
		snprintf(err, sizeof(err), "%s: cannot mount FUSE on %s\n", prog, mntpoint);
		lunfs_unmount(V);
		goto fail;
	}
	utab_update(dev, mntpoint, 1);
	logmsg(LOG_NOTICE, "lunfs: %s mounted on %s as host %s", dev, mntpoint,
	       o.host ? o.host : "(machine-id)");
	if (pfd[1] >= 0) {
		if (write(pfd[1], "OK", 2) != 2)
			logmsg(LOG_WARNING, "lunfs: could not tell the parent");
		close(pfd[1]);
		pfd[1] = -1;
	}
	struct rejoin rj = {.dev = dev, .mo = mo, .hooks = hooks};
	pthread_mutex_init(&rj.mu, NULL);
	pthread_cond_init(&rj.cv, NULL);
	int rj_started = !o.ro && !o.no_rejoin && !pthread_create(&rj.thr, NULL, rejoin_thread, &rj);
	r = IO_MODE == IO_LOOP ? serve_loop(se) : 1;
	if (r == 1)
		r = serve(se);
	if (rj_started) {
		pthread_mutex_lock(&rj.mu);
		rj.stop = 1;
		pthread_cond_signal(&rj.cv);
		pthread_mutex_unlock(&rj.mu);
		pthread_join(rj.thr, NULL);
	}
	fuse_session_unmount(se);
	utab_update(dev, mntpoint, 0);
	fuse_remove_signal_handlers(se);
	/* test hook: a slow unmount (a long checkpoint), for the umount helper's test */
	if (o.unmount_pause > 0)
		usleep((useconds_t)o.unmount_pause * 1000);
	int e = lunfs_unmount(V);
	for (int i = 0; i < rj.nold; i++)
		lunfs_unmount(rj.old[i]); /* fenced: it writes nothing */
	logmsg(LOG_NOTICE, "lunfs: %s unmounted%s%s", dev, e ? ": " : "", e ? lunfs_strerror(e) : "");
	pthread_mutex_lock(&log_mu);
	flush_repeats();
	pthread_mutex_unlock(&log_mu);
	rc = r || e ? 1 : 0;
	goto out;
fail:
	if (pfd[1] >= 0) {
		if (write(pfd[1], err, strlen(err)) < 0)
			{ /* the parent is gone */ }
		close(pfd[1]);
	} else {
		fputs(err, stderr);
	}
	goto out;
usage:
	rc = 2;
out:
	if (se)
		fuse_session_destroy(se);
	fuse_opt_free_args(&args);
	free(mntpoint);
	free(dev);
	return rc;
}
