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
#include <errno.h>
#include <fcntl.h>
#include <fuse_lowlevel.h>
#include <libmount.h>
#include <limits.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <getopt.h>
#include <poll.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>
#include <sys/xattr.h>
#include <syslog.h>
#include <unistd.h>
#include "fs/lunfs.h"
#include "fs/version.h"

#define TIMEOUT 1.0

/* Read-only virtual xattr of the root: the daemon's PID, for the umount
 * helper (trusted.*: the kernel lets only CAP_SYS_ADMIN read it). */
#define PID_XATTR "trusted.lunfs.daemon_pid"

static struct lunfs_vol *V;
static struct fuse_session *SE;
static FILE *logf_;
static int use_syslog;

static void logmsg(int prio, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	if (use_syslog) {
		vsyslog(prio, fmt, ap);
	} else if (logf_) {
		vfprintf(logf_, fmt, ap);
		fputc('\n', logf_);
		fflush(logf_);
	}
	va_end(ap);
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
	/* the kernel clears setuid/setgid itself (through setattr) */
	conn->want &= ~FUSE_CAP_HANDLE_KILLPRIV;
	if (conn->capable & FUSE_CAP_ASYNC_DIO)
		conn->want |= FUSE_CAP_ASYNC_DIO;
	/* open(O_TRUNC): the kernel truncates through setattr (which takes
	 * the inode lock) before the open, instead of passing O_TRUNC to us */
	conn->want &= ~FUSE_CAP_ATOMIC_O_TRUNC;
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
 * their pages may be cached; everything else goes direct. */
static int do_open(fuse_ino_t ino, struct fuse_file_info *fi)
{
	int acc = fi->flags & O_ACCMODE;
	int mode = acc == O_RDONLY ? LUNFS_OPEN_SHARED_RO : LUNFS_OPEN_RW;
	struct lunfs_file *f;
	int r = lunfs_open(V, ino_of(ino), mode, &f);
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
	fuse_reply_open(req, fi);
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

static void lo_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, struct fuse_file_info *fi)
{
	(void)ino;
	char *buf = aligned_alloc(4096, (size + 4095) / 4096 * 4096 + 4096);
	if (!buf) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	ssize_t n = lunfs_pread((struct lunfs_file *)(uintptr_t)fi->fh, buf, size, off);
	if (n < 0)
		reply_err(req, (int)n);
	else
		fuse_reply_buf(req, buf, n);
	free(buf);
}

static void lo_write(fuse_req_t req, fuse_ino_t ino, const char *buf, size_t size, off_t off,
		     struct fuse_file_info *fi)
{
	(void)ino;
	ssize_t n = lunfs_pwrite((struct lunfs_file *)(uintptr_t)fi->fh, buf, size, off);
	if (n < 0)
		reply_err(req, (int)n);
	else
		fuse_reply_write(req, n);
}

static void lo_fallocate(fuse_req_t req, fuse_ino_t ino, int mode, off_t off, off_t len,
			 struct fuse_file_info *fi)
{
	unsigned m = 0;
	(void)ino;
	if (mode & ~(FALLOC_FL_KEEP_SIZE | FALLOC_FL_PUNCH_HOLE)) {
		fuse_reply_err(req, EOPNOTSUPP);
		return;
	}
	if (mode & FALLOC_FL_KEEP_SIZE)
		m |= LUNFS_FALLOC_KEEP_SIZE;
	if (mode & FALLOC_FL_PUNCH_HOLE)
		m |= LUNFS_FALLOC_PUNCH;
	fuse_reply_err(req, -lunfs_sys_errno(lunfs_fallocate((struct lunfs_file *)(uintptr_t)fi->fh,
							      m, off, len)));
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
	if (ino == FUSE_ROOT_ID && !strcmp(name, PID_XATTR)) {
		char pid[24];
		int n = snprintf(pid, sizeof(pid), "%ld", (long)getpid());
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
	.readdir = lo_readdir,
	.statfs = lo_statfs,
	.setxattr = lo_setxattr,
	.getxattr = lo_getxattr,
	.listxattr = lo_listxattr,
	.removexattr = lo_removexattr,
};

/* ---- command line ---- */

struct opts {
	char *host, *log;
	int ro, foreground, linger, caw, recovery_pause, unmount_pause, no_pr;
};

/* Splits -o lists: our options are taken out, mount(8)-only options are
 * dropped, the rest goes to FUSE. */
static int take_opts(const char *list, struct opts *o, char *fuse_opts, size_t n)
{
	char *copy = strdup(list), *save, *tok;
	for (tok = strtok_r(copy, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
		if (!strncmp(tok, "host=", 5)) {
			free(o->host);
			o->host = strdup(tok + 5);
		} else if (!strncmp(tok, "log=", 4)) {
			free(o->log);
			o->log = strdup(tok + 4);
		} else if (!strncmp(tok, "linger_ms=", 10)) {
			o->linger = atoi(tok + 10);
		} else if (!strcmp(tok, "pr=off") || !strcmp(tok, "pr=on")) {
			o->no_pr = tok[4] == 'f';
		} else if (!strncmp(tok, "recovery_pause_ms=", 18)) {
			o->recovery_pause = atoi(tok + 18); /* test hook */
		} else if (!strncmp(tok, "unmount_pause_ms=", 17)) {
			o->unmount_pause = atoi(tok + 17); /* test hook */
		} else if (!strcmp(tok, "caw=auto") || !strcmp(tok, "caw=native") ||
			   !strcmp(tok, "caw=reserve")) {
			o->caw = tok[4] == 'a' ? DEV_CAW_AUTO : tok[4] == 'n' ? DEV_CAW_NATIVE
									 : DEV_CAW_RESERVE;
		} else if (!strcmp(tok, "ro")) {
			o->ro = 1;
		} else if (!strcmp(tok, "rw") || !strcmp(tok, "defaults") || !strcmp(tok, "_netdev") ||
			   !strcmp(tok, "noauto") || !strcmp(tok, "auto") || !strcmp(tok, "user") ||
			   !strcmp(tok, "nouser") || !strcmp(tok, "users") || !strcmp(tok, "nofail") ||
			   !strncmp(tok, "x-", 2) || !strncmp(tok, "helper=", 7) || !strcmp(tok, "relatime") || !strcmp(tok, "noatime")) {
			/* for mount(8) */
		} else {
			size_t used = strlen(fuse_opts);
			if (used + strlen(tok) + 2 > n) {
				free(copy);
				return -1;
			}
			snprintf(fuse_opts + used, n - used, "%s%s", used ? "," : "", tok);
		}
	}
	free(copy);
	return 0;
}

static void usage(const char *prog)
{
	fprintf(stderr,
		"usage: %s DEVICE MOUNTPOINT [-f] [-o host=NAME,ro,allow_other,log=FILE,linger_ms=N,caw=auto|native|reserve,pr=on|off]\n"
		"  DEVICE: an image file, a block device or iscsi://HOST[:PORT]/IQN/LUN\n"
		"  host=NAME  this host's identity (default: /etc/machine-id)\n"
		"  -f         stay in the foreground\n",
		prog);
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

int main(int argc, char **argv)
{
	struct opts o = {0};
	char fuse_opts[1024] = "";
	const char *dev = NULL, *mnt = NULL;
	const char *prog = strrchr(argv[0], '/') ? strrchr(argv[0], '/') + 1 : argv[0];
	if (!strncmp(prog, "umount.", 7))
		return umount_main(prog, argc, argv);
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "-o") && i + 1 < argc) {
			if (take_opts(argv[++i], &o, fuse_opts, sizeof(fuse_opts))) {
				fprintf(stderr, "%s: too many options\n", prog);
				return 1;
			}
		} else if (!strncmp(argv[i], "-o", 2) && argv[i][2]) {
			take_opts(argv[i] + 2, &o, fuse_opts, sizeof(fuse_opts));
		} else if (!strcmp(argv[i], "-f")) {
			o.foreground = 1;
		} else if (!strcmp(argv[i], "-s") || !strcmp(argv[i], "-n") || !strcmp(argv[i], "-v")) {
			/* mount(8) passes these: sloppy, no mtab, verbose */
		} else if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
			usage(prog);
			return 0;
		} else if (argv[i][0] == '-') {
			fprintf(stderr, "%s: unknown option %s (-h for help)\n", prog, argv[i]);
			return 1;
		} else if (!dev) {
			dev = argv[i];
		} else if (!mnt) {
			mnt = argv[i];
		} else {
			fprintf(stderr, "%s: too many arguments (-h for help)\n", prog);
			return 1;
		}
	}
	if (!dev || !mnt) {
		usage(prog);
		return 1;
	}
	char *mntpoint = realpath(mnt, NULL);
	if (!mntpoint) {
		fprintf(stderr, "%s: %s: %s\n", prog, mnt, strerror(errno));
		return 1;
	}
	/* The library runs threads (heartbeat, lock linger) that a fork would
	 * lose, so fork first: the parent waits for the child's verdict on the
	 * mount and exits with it, so mount(8) still sees every error. */
	int pfd[2] = {-1, -1};
	if (!o.foreground) {
		if (pipe(pfd)) {
			perror(prog);
			return 1;
		}
		pid_t pid = fork();
		if (pid < 0) {
			perror(prog);
			return 1;
		}
		if (pid > 0) {
			char m[512];
			close(pfd[1]);
			ssize_t n = read(pfd[0], m, sizeof(m) - 1);
			if (n <= 0) {
				fprintf(stderr, "%s: the daemon died while mounting\n", prog);
				return 1;
			}
			m[n] = 0;
			if (strcmp(m, "OK")) {
				fprintf(stderr, "%s", m);
				return 1;
			}
			return 0;
		}
		close(pfd[0]);
		setsid();
		if (chdir("/"))
			{ /* keep going: the mount point is absolute */ }
		int nul = open("/dev/null", O_RDWR);
		if (nul >= 0) {
			dup2(nul, 0);
			dup2(nul, 1);
			if (!o.log)
				dup2(nul, 2);
			if (nul > 2)
				close(nul);
		}
	}
	char err[512] = "";
	if (o.log) {
		logf_ = fopen(o.log, "a");
		if (!logf_) {
			snprintf(err, sizeof(err), "%s: log file %s: %s\n", prog, o.log, strerror(errno));
			goto fail;
		}
	} else if (!o.foreground) {
		use_syslog = 1;
		openlog("lunfs", LOG_PID, LOG_DAEMON);
	} else {
		logf_ = stderr;
	}

	if (logf_ || use_syslog)
		lunfs_log_set(lib_log);
	struct lunfs_mount_opts mo = {.host = o.host, .readonly = o.ro, .linger_ms = o.linger,
				      .recovery_pause_ms = o.recovery_pause,
				      .dev = {.caw_mode = o.caw, .no_pr = o.no_pr}};
	const char *msg = NULL;
	int r = lunfs_mount(dev, &mo, &V, &msg);
	if (r) {
		snprintf(err, sizeof(err), "%s: cannot mount %s: %s\n", prog, dev, msg ? msg : lunfs_strerror(r));
		goto fail;
	}
	/* FUSE options: ours first, then what the user gave */
	char all[1400];
	snprintf(all, sizeof(all), "fsname=%s,subtype=lunfs,default_permissions%s%s%s", dev,
		 o.ro ? ",ro" : "", *fuse_opts ? "," : "", fuse_opts);
	char *fargv[] = {(char *)prog, "-o", all, NULL};
	struct fuse_args args = FUSE_ARGS_INIT(3, fargv);
	struct fuse_session *se = fuse_session_new(&args, &ops, sizeof(ops), NULL);
	SE = se;
	if (!se) {
		snprintf(err, sizeof(err), "%s: bad FUSE options (see -h)\n", prog);
		lunfs_unmount(V);
		goto fail;
	}
	if (fuse_set_signal_handlers(se) || fuse_session_mount(se, mntpoint)) {
		snprintf(err, sizeof(err), "%s: cannot mount FUSE on %s\n", prog, mntpoint);
		fuse_session_destroy(se);
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
	}
	struct fuse_loop_config *cfg = fuse_loop_cfg_create();
	fuse_loop_cfg_set_max_threads(cfg, 16);
	r = fuse_session_loop_mt(se, cfg);
	fuse_loop_cfg_destroy(cfg);
	fuse_session_unmount(se);
	utab_update(dev, mntpoint, 0);
	fuse_remove_signal_handlers(se);
	fuse_session_destroy(se);
	/* test hook: a slow unmount (a long checkpoint), for the umount helper's test */
	if (o.unmount_pause > 0)
		usleep((useconds_t)o.unmount_pause * 1000);
	int e = lunfs_unmount(V);
	logmsg(LOG_NOTICE, "lunfs: %s unmounted%s%s", dev, e ? ": " : "", e ? lunfs_strerror(e) : "");
	free(mntpoint);
	return r || e ? 1 : 0;
fail:
	if (pfd[1] >= 0) {
		if (write(pfd[1], err, strlen(err)) < 0)
			{ /* the parent is gone */ }
		close(pfd[1]);
	} else {
		fputs(err, stderr);
	}
	free(mntpoint);
	return 1;
}
