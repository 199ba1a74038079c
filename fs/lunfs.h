/* lunfs.h: the public API of the lunfs core library.
 *
 * This is the API the FUSE daemon, the NBD export and a VMM embed
 * (`pkg-config --cflags --libs lunfs`; installed as <lunfs/lunfs.h>).  A
 * volume is mounted by one host identity; objects are named by inode number,
 * as in the FUSE low-level API.  Every function returns 0 (or a count) on
 * success and a negative errno on failure; -EFENCED means this host lost its
 * heartbeat and the volume refuses all further changes.
 *
 * Thread safety: every function may be called from any thread.
 *
 * The header stands alone: it includes system headers only.  What it shares
 * with the library's internal headers (the error codes, lunfs_strerror, the
 * log hook) is declared here again, identically; fs/internal.h includes both
 * copies, so a difference does not compile.  Test hooks are in
 * fs/lunfs_test.h, which is not installed.
 */
#ifndef LUNFS_H
#define LUNFS_H

#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <time.h>

#ifdef __cplusplus
extern "C" {
#endif

#define LUNFS_ROOT_INO 1

/* ---- errors (util/lerrno.h) ---- */
#define LUNFS_ERRBASE 4000
#define EMISCOMPARE (LUNFS_ERRBASE + 1)  /* compare-and-write lost */
#define EFSCORRUPTED (LUNFS_ERRBASE + 2) /* on-disk metadata failed a check */
#define EFENCED (LUNFS_ERRBASE + 3)      /* this host lost its heartbeat */
/* strerror() that knows the lunfs codes (positive or negative). */
const char *lunfs_strerror(int err);
/* The nearest system errno of a lunfs code (negative in, negative out). */
int lunfs_sys_errno(int err);
/* Where the library's log messages go (util/log.h); NULL: syslog, and
 * stderr for LOG_ERR or worse. */
void lunfs_log_set(void (*fn)(int prio, const char *msg));

struct lunfs_vol;
struct lunfs_file;

/* How the device is opened.  Zero means the default for every field. */
enum lunfs_caw_mode {
	LUNFS_CAW_AUTO = 0,    /* iSCSI: native when the target has it, else reservation */
	LUNFS_CAW_NATIVE = 1,  /* native only; the mount fails if the target lacks it */
	LUNFS_CAW_RESERVE = 2, /* always the RESERVE(6) fallback */
};
struct lunfs_dev_opts {
	const char *initiator; /* iSCSI initiator IQN; default iqn.2026-11.org.lunfs:init-<pid> */
	int caw_mode;          /* enum lunfs_caw_mode; default LUNFS_CAW_AUTO */
	int buffered;          /* file: no O_DIRECT (for filesystems without it) */
	int no_pr;             /* iSCSI: do not use persistent reservations even if
				  the target has them (targets whose PREEMPT is broken) */
};

/* Mount options.  Zero means the default for every field. */
struct lunfs_mount_opts {
	const char *host;       /* host name; default: /etc/machine-id, else the hostname */
	int readonly;           /* no heartbeat slot, no writes, no journal replay */
	struct lunfs_dev_opts dev; /* device open options */
	uint32_t linger_ms;     /* idle locks are released after this; default 500 */
	int assume_dead;        /* this host identity's earlier mount is known to be
				   gone (its process exited): take its heartbeat
				   slot without waiting a lease.  Wrong use lets
				   two mounts write at once. */
	uint32_t open_wait_ms;  /* a writable open (RW, EXCL, MULTI) that meets
				   another host's open pin waits up to this long
				   for it to go, then fails with -EBUSY; default
				   0: -EBUSY at once (mount.lunfs: 3000) */
};

/* Mounts the volume on url.  Claims a heartbeat slot and
 * replays this host's journal.  Returns 0 and *out, or -errno; *msg (if not
 * NULL) receives a one-line reason. */
int lunfs_mount(const char *url, const struct lunfs_mount_opts *opts, struct lunfs_vol **out,
		const char **msg);
/* Checkpoints, releases every lock and the heartbeat slot, frees v.  Returns 0
 * or the first error (v is freed in every case). */
int lunfs_unmount(struct lunfs_vol *v);
/* 0 while this mount holds its lease (or is read-only), -EFENCED once it
 * lost it: it never writes again, and its open files fail.  A host comes
 * back by mounting anew (lunfs_mount with the same identity: it waits
 * until its old slot was recovered, or recovers it itself), then retires
 * this mount. */
int lunfs_fenced(struct lunfs_vol *v);
/* Stops a fenced mount's threads and drops its caches; its open files keep
 * failing (and can still be closed) until lunfs_unmount frees it (which
 * writes nothing for a fenced mount, and returns -EFENCED). */
void lunfs_retire(struct lunfs_vol *v);

/* Online grow (lunfs grow; docs/ADMIN.md): makes the volume mounted as v
 * (read-write; normally a mount of its own, beside the live hosts) span size
 * bytes of its device, or the whole device when size is 0, while other hosts
 * have it mounted; they follow within a heartbeat.  Takes the volume lock.
 * Returns 0, -EALREADY (the device is not larger by a file block), -EFBIG
 * (beyond the room mkfs kept: gi->max_size), -EINVAL (size beyond the device
 * or below the volume), -EBUSY (another grow holds the volume lock), or
 * -errno; *msg (if not NULL) receives a one-line reason. */
struct lunfs_grow_info {
	uint64_t old_size, new_size;     /* bytes the volume spans, before and after */
	uint64_t old_blocks, new_blocks; /* file blocks */
	uint64_t dev_size;               /* the device's size */
	uint64_t max_size;               /* largest size the file-cluster table allows */
};
int lunfs_grow(struct lunfs_vol *v, uint64_t size, struct lunfs_grow_info *gi, const char **msg);

struct lunfs_stat {
	uint64_t ino;
	uint32_t mode, nlink, uid, gid;
	uint64_t rdev, size;
	uint64_t blocks; /* 512-byte units allocated */
	uint32_t blksize;
	struct timespec atime, mtime, ctime;
	uint32_t flags;  /* LUNFS_F_* */
	uint32_t igen;
};
enum { LUNFS_F_THICK = 1, LUNFS_F_EZT = 2, LUNFS_F_SNAPSHOT = 4 };

int lunfs_getattr(struct lunfs_vol *v, uint64_t ino, struct lunfs_stat *st);

/* setattr: which fields of struct lunfs_setattr apply. */
enum {
	LUNFS_SET_MODE = 1, LUNFS_SET_UID = 2, LUNFS_SET_GID = 4, LUNFS_SET_SIZE = 8,
	LUNFS_SET_ATIME = 16, LUNFS_SET_MTIME = 32, LUNFS_SET_ATIME_NOW = 64,
	LUNFS_SET_MTIME_NOW = 128, LUNFS_SET_CTIME = 256,
	LUNFS_SET_KILL_SUID = 512, /* clear setuid, and setgid if group-exec */
};
struct lunfs_setattr {
	uint32_t mode, uid, gid;
	uint64_t size;
	struct timespec atime, mtime, ctime;
};
int lunfs_setattr(struct lunfs_vol *v, uint64_t ino, unsigned mask, const struct lunfs_setattr *sa,
		  struct lunfs_stat *st);

/* Who creates: the new object's owner, and the credentials for the setgid rule. */
struct lunfs_cred {
	uint32_t uid, gid;
};

int lunfs_lookup(struct lunfs_vol *v, uint64_t dir, const char *name, struct lunfs_stat *st);
/* mode carries the type (S_IFREG, S_IFDIR, S_IFLNK, S_IFIFO, S_IFCHR,
 * S_IFBLK, S_IFSOCK) and the permission bits (umask already applied). */
int lunfs_mknod(struct lunfs_vol *v, uint64_t dir, const char *name, uint32_t mode, uint64_t rdev,
		const struct lunfs_cred *c, struct lunfs_stat *st);
int lunfs_mkdir(struct lunfs_vol *v, uint64_t dir, const char *name, uint32_t mode,
		const struct lunfs_cred *c, struct lunfs_stat *st);
/* target: 1 .. 4095 bytes (LUNFS_SYMLINK_MAX); -ENOENT if empty,
 * -ENAMETOOLONG if longer. */
int lunfs_symlink(struct lunfs_vol *v, uint64_t dir, const char *name, const char *target,
		  const struct lunfs_cred *c, struct lunfs_stat *st);
/* Returns the target's length (the target is NUL-terminated if it fits). */
int lunfs_readlink(struct lunfs_vol *v, uint64_t ino, char *buf, size_t size);
int lunfs_link(struct lunfs_vol *v, uint64_t ino, uint64_t dir, const char *name,
	       struct lunfs_stat *st);
int lunfs_unlink(struct lunfs_vol *v, uint64_t dir, const char *name);
int lunfs_rmdir(struct lunfs_vol *v, uint64_t dir, const char *name);
enum { LUNFS_RENAME_NOREPLACE = 1, LUNFS_RENAME_EXCHANGE = 2 };
int lunfs_rename(struct lunfs_vol *v, uint64_t odir, const char *oname, uint64_t ndir,
		 const char *nname, unsigned flags);

/* readdir: calls fn for each entry at or after cookie off ("." is 0, ".." is
 * 1); fn returns non-zero to stop.  next is the cookie of the entry after
 * this one.  Cookies stay valid while entries come and go.  Returns 0 or
 * -errno. */
typedef int (*lunfs_dirfn)(void *arg, const char *name, uint64_t ino, uint32_t type, uint64_t next);
int lunfs_readdir(struct lunfs_vol *v, uint64_t dir, uint64_t off, lunfs_dirfn fn, void *arg);

struct lunfs_statfs {
	uint64_t bsize, blocks, bfree, files, ffree;
	uint32_t namemax;
};
int lunfs_statfs(struct lunfs_vol *v, struct lunfs_statfs *st);

/* Extended attributes (user.*, trusted.*, security.*, system.* names). */
enum { LUNFS_XATTR_CREATE = 1, LUNFS_XATTR_REPLACE = 2 };
int lunfs_setxattr(struct lunfs_vol *v, uint64_t ino, const char *name, const void *val,
		   size_t len, unsigned flags);
/* Returns the value's length; with size 0 only the length. -ERANGE if too small. */
int lunfs_getxattr(struct lunfs_vol *v, uint64_t ino, const char *name, void *buf, size_t size);
/* NUL-separated names; returns the total length. */
int lunfs_listxattr(struct lunfs_vol *v, uint64_t ino, char *buf, size_t size);
int lunfs_removexattr(struct lunfs_vol *v, uint64_t ino, const char *name);

/* ---- files ---- */
enum lunfs_open_mode {
	LUNFS_OPEN_READ = 0,      /* read only, no lock on another host needed beyond shared */
	LUNFS_OPEN_EXCL = 1,      /* read-write; exclusive on the whole cluster */
	LUNFS_OPEN_SHARED_RO = 2, /* read-only; many hosts at once, no writer */
	LUNFS_OPEN_MULTI = 3,     /* multi-writer; fully allocated files only */
	LUNFS_OPEN_RW = 4,        /* read-write; exclusive against other hosts,
				     shared with this host's other RW opens (POSIX) */
	LUNFS_OPEN_NOWAIT = 0x100, /* or'ed into a writable mode: -EBUSY at once,
				      without the mount's open_wait_ms */
};
/* Opens ino.  A conflicting open (here or on another host) gives -EBUSY;
 * a directory -EISDIR.  An inode whose last name goes away while it is open
 * here (unlink, rmdir, rename over it) lives until its last close. */
int lunfs_open(struct lunfs_vol *v, uint64_t ino, int mode, struct lunfs_file **out);
/* Opens directory ino (-ENOTDIR if it is not one), only to keep it alive
 * while open: no lock while it has a name, no I/O through the handle
 * (readdir takes the inode number). */
int lunfs_opendir(struct lunfs_vol *v, uint64_t ino, struct lunfs_file **out);
/* Closes a handle of lunfs_open or lunfs_opendir; the last close of an
 * inode without a name frees it. */
int lunfs_close(struct lunfs_file *f);
/* Reads up to len bytes at off; returns bytes read (short at EOF). */
ssize_t lunfs_pread(struct lunfs_file *f, void *buf, size_t len, uint64_t off);
/* Writes len bytes at off (extends the file).  A write that fills holes or
 * to-be-zeroed blocks, or grows the file, returns once that change is
 * durable (the data it exposes first); writes of concurrent threads share
 * one flush and one transaction.  A write over allocated blocks only is
 * made durable by lunfs_fsync.  Returns len, a shorter count when a write
 * of more than 32 file blocks fails part-way (the blocks before are
 * written), or -errno. */
ssize_t lunfs_pwrite(struct lunfs_file *f, const void *buf, size_t len, uint64_t off);
/* Makes everything written through f durable. */
int lunfs_fsync(struct lunfs_file *f);

/* Lock handoff for live migration: passes this host's exclusive lock on
 * the open file ino to the live host named host, in one compare-and-write
 * (the lock is never free in between, so no third host can take it).  The
 * times pending in memory are committed and the journal checkpointed first,
 * so host sees a consistent inode.  From then on this host's handles of ino
 * refuse writes, fsync and fallocate with -ESTALE (reads still work), and
 * host's next read-write open of ino adopts the lock.  Drain an async queue
 * on ino before calling.  Returns 0, -ENOENT (no live host of that name),
 * -ENOLCK (ino is not open read-write here), -EINVAL (host is this host), or
 * -errno. */
int lunfs_handoff(struct lunfs_vol *v, uint64_t ino, const char *host);
/* The FUSE daemon takes a setxattr of this name (value: the target host's
 * name) on a file as a handoff order; `lunfs handoff` sends it. */
#define LUNFS_HANDOFF_XATTR "trusted.lunfs.handoff"

/* fallocate: mode 0 allocates (thick, lazily zeroed), LUNFS_FALLOC_KEEP_SIZE
 * keeps the size, LUNFS_FALLOC_ZERO writes zeros now (eager-zeroed thick),
 * LUNFS_FALLOC_PUNCH frees the range (with KEEP_SIZE; -EOPNOTSUPP without),
 * LUNFS_FALLOC_ZERO_RANGE makes the range read as zeros and allocated
 * (FALLOC_FL_ZERO_RANGE: whole blocks become to-be-zeroed, no data I/O;
 * the partial blocks at its ends are zeroed in place), with or without
 * KEEP_SIZE.  PUNCH, ZERO and ZERO_RANGE exclude each other (-EINVAL). */
enum { LUNFS_FALLOC_KEEP_SIZE = 1, LUNFS_FALLOC_PUNCH = 2, LUNFS_FALLOC_ZERO = 4,
       LUNFS_FALLOC_ZERO_RANGE = 8 };
int lunfs_fallocate(struct lunfs_file *f, unsigned mode, uint64_t off, uint64_t len);
uint64_t lunfs_file_ino(const struct lunfs_file *f);

/* SEEK_DATA / SEEK_HOLE (whence LUNFS_SEEK_DATA or LUNFS_SEEK_HOLE): the
 * first offset >= off that is in data / in a hole, in units of file blocks
 * (holes are blocks never written and blocks still to be zeroed: both read
 * as zeros).  The end of the file counts as a hole.  Returns the offset,
 * -ENXIO when off is at or past the end (or, for DATA, no data follows), or
 * -errno.  qemu-img map and cp --sparse find a thin disk's holes with it. */
enum { LUNFS_SEEK_DATA = 3, LUNFS_SEEK_HOLE = 4 };
int64_t lunfs_seek_hole_data(struct lunfs_file *f, uint64_t off, int whence);

/* ---- asynchronous data I/O (a VMM's I/O thread, the NBD export) ----
 * A queue belongs to one thread.  Requests to allocated blocks go straight
 * to the device queue (io_uring on the file backend) with no copy when the
 * buffer, offset and length are aligned to the device's logical block size;
 * others (holes to fill, unaligned ranges) complete synchronously inside
 * submit.  One queue per volume at a time. */
enum { LUNFS_AIO_READ = 1, LUNFS_AIO_WRITE = 2 };
struct lunfs_aio {
	int op;         /* LUNFS_AIO_READ or LUNFS_AIO_WRITE */
	void *buf;
	size_t len;
	uint64_t off;
	ssize_t res;    /* out: bytes, or -errno */
	void *priv;     /* caller's */
};
struct lunfs_ioq;
/* depth: most requests in flight (<= 128). -EBUSY if the volume has a queue. */
int lunfs_ioq_create(struct lunfs_file *f, unsigned depth, struct lunfs_ioq **out);
/* Returns how many were accepted (all, unless the queue is full), or -errno. */
int lunfs_ioq_submit(struct lunfs_ioq *q, struct lunfs_aio **ios, unsigned n);
/* Waits for at least min completions; returns how many were stored in out. */
int lunfs_ioq_reap(struct lunfs_ioq *q, unsigned min, struct lunfs_aio **out, unsigned max);
/* Waits for everything in flight, then frees q. */
void lunfs_ioq_destroy(struct lunfs_ioq *q);

/* ---- completion-driven data I/O (a daemon serving many requests) ----
 * Starts a (a->op, buf, len, off as above) on f; done(a) is called exactly
 * once, with a->res set: from the volume's completion thread when a is a
 * plain read or write of mapped blocks (aligned to the device's logical
 * block, inside the file), or from this thread before lunfs_aio_start
 * returns when it is anything else (a hole to fill, a partial sector, the
 * end of the file, a device without a shared queue), served as by
 * lunfs_pread and lunfs_pwrite.  Any number of threads may start requests
 * at once; the buffer must stay valid until done.  done must not wait for
 * this volume's I/O (it runs on the completion thread).  While this is in
 * use, lunfs_ioq_create on the volume fails with -EBUSY. */
typedef void (*lunfs_aio_done)(struct lunfs_aio *a);
void lunfs_aio_start(struct lunfs_file *f, struct lunfs_aio *a, lunfs_aio_done done);

/* ---- an event loop's own queue (the FUSE daemon's loop) ----
 * One thread opens a loop and is the only one to use it: the loop's reads
 * and writes of mapped blocks go to the device on a queue of that thread's
 * own, and their completions are reaped, and done(a) called, by that
 * thread in lunfs_loop_run.  A loop can watch one file descriptor too, so
 * its thread waits for new work and for completions in one call.
 *   lunfs_loop_open: -EOPNOTSUPP when the device has no such queue (iSCSI,
 *     a test wrapper): serve everything with lunfs_pread/lunfs_pwrite.
 *   lunfs_loop_try: 1 when a (as for lunfs_aio_start) is on its way (done
 *     comes from a later lunfs_loop_run; the buffer must stay valid until
 *     then); 0 when it is not a plain read or write of blocks whose mapping
 *     the open file has cached (a hole, a partial sector, the end of the
 *     file, a mapping not cached yet, a fenced host, a full queue): nothing
 *     was done, serve it with lunfs_pread/lunfs_pwrite (from any thread).
 *     It never waits for the device or for a lock.
 *   lunfs_loop_run: hands what was tried to the device, then waits up to
 *     timeout_ms (0: no wait, < 0: no limit) for a completion or for the
 *     watched descriptor, and calls done for each completed request.
 *     Returns 1 when the descriptor became readable (read it until it
 *     would block: the watch fires on new data, not while data is there), 0
 *     if not, or -errno (the device queue failed: what is in flight stays
 *     so, call it again).
 *   lunfs_loop_close: waits for the loop's requests, then frees it; before
 *     lunfs_unmount. */
struct lunfs_loop;
int lunfs_loop_open(struct lunfs_vol *v, struct lunfs_loop **out);
int lunfs_loop_watch(struct lunfs_loop *l, int fd);
int lunfs_loop_try(struct lunfs_loop *l, struct lunfs_file *f, struct lunfs_aio *a,
		   lunfs_aio_done done);
int lunfs_loop_run(struct lunfs_loop *l, int timeout_ms);
void lunfs_loop_close(struct lunfs_loop *l);

#ifdef __cplusplus
}
#endif

#endif
