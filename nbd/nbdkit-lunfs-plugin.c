/* nbdkit-lunfs-plugin: one file of a lunfs volume served as an NBD export.
 *
 *   nbdkit [-U SOCKET] lunfs DEVICE file=/vm01/disk.img [host=NAME] [readonly=1]
 *          [incoming=1 [incoming_wait=SECONDS]] [caw=auto|native|reserve] [pr=on|off]
 *
 * An adapter over the public API (fs/lunfs.h) like the FUSE daemon, with
 * nbdkit doing the NBD protocol.  The plugin mounts DEVICE as host NAME
 * (a heartbeat slot of its own, beside any FUSE mount of the same volume
 * under another name), looks the path up one component at a time and opens
 * the file once for the whole life of nbdkit:
 *   - read-write export: LUNFS_OPEN_EXCL, exclusive on the whole cluster
 *     (another host's open of the file fails with EBUSY while we serve it);
 *   - readonly=1: LUNFS_OPEN_SHARED_RO, the shared read-only lock: other
 *     hosts may read it too, nobody may write it.
 *   - incoming=1, the export on the destination host of a QEMU live
 *     migration: the file is opened without a lock (LUNFS_OPEN_READ: what
 *     the destination QEMU reads before the switchover, it reads unlocked),
 *     and the first write, trim, zero or flush takes the exclusive lock
 *     (a LUNFS_OPEN_RW open beside the first), with the library's open
 *     wait of incoming_wait seconds (default 30) while the source's export
 *     still holds it; still busy then: that request fails with EBUSY (the guest
 *     sees an I/O error: two running QEMUs never both write).  The source's
 *     export gives the lock up when its nbdkit exits (e.g. run it with
 *     --filter=exitlast: it exits when the source QEMU disconnects).
 * nbdkit's -r without readonly=1 still opens exclusively (the plugin only
 * learns of -r per connection); say readonly=1 for a shared export.
 *
 * Every connection serves the one open file, so a flush (lunfs_fsync of that
 * file) makes every connection's writes durable: the export allows
 * multi-conn.  The library is thread-safe: requests run in parallel.
 *
 * When: the mount starts the library's threads (heartbeat, linger), which
 * must not cross nbdkit's fork into the background, so the open that serves
 * is made in .after_fork.  .get_ready makes the same mount and open once
 * before, then lets them go, so a missing device or file or a file held
 * elsewhere fails while nbdkit still has its terminal: one clear line and a
 * non-zero exit.  .cleanup closes the file and unmounts cleanly, releasing
 * the lock and the heartbeat slot.
 *
 * Extents (base:allocation) come from lunfs_seek_hole_data: data is
 * allocated; a hole is HOLE|ZERO.  That call counts a block still to be
 * zeroed (allocated by ZERO_RANGE, not yet written) as a hole, so it is
 * reported as HOLE|ZERO too: it reads as zeros, and a client that skips it
 * loses nothing.
 */
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <sys/stat.h>
#include <time.h>

#define NBDKIT_API_VERSION 2
#include <nbdkit-plugin.h>

#include "fs/lunfs.h"
#include "fs/version.h"

#define THREAD_MODEL NBDKIT_THREAD_MODEL_PARALLEL

/* The configuration (set by .config before any thread runs, read only after). */
static char *device;
static char *path;
static char *host;
static int readonly;
static int incoming;                  /* incoming=1: the lock at the first write */
static unsigned incoming_wait = 30;   /* seconds */
static int caw_mode = LUNFS_CAW_AUTO;
static int no_pr;

/* The mount and the open file that serve every connection (set in
 * .after_fork, freed in .cleanup). */
static struct lunfs_vol *vol;
static struct lunfs_file *file;
/* incoming=1: the exclusive open, once the first write took it (then every
 * request uses it); up_mu serialises taking it */
static struct lunfs_file *_Atomic wfile;
static pthread_mutex_t up_mu = PTHREAD_MUTEX_INITIALIZER;

/* The handle for reads: the exclusive one once taken. */
static struct lunfs_file *rd(void)
{
	struct lunfs_file *w = atomic_load(&wfile);
	return w ? w : file;
}

static uint64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* The handle for writes.  incoming=1: the first call takes the exclusive
 * lock, waiting while another host (the migration's source) holds it: the
 * library's open wait, incoming_wait seconds (the mount's open_wait_ms).
 * Returns NULL after recording the error. */
static struct lunfs_file *wr(const char *what)
{
	struct lunfs_file *w = atomic_load(&wfile);
	if (w || !incoming)
		return w ? w : file;
	pthread_mutex_lock(&up_mu);
	int r = 0;
	if (!(w = atomic_load(&wfile))) {
		uint64_t t0 = now_ms();
		if (!(r = lunfs_open(vol, lunfs_file_ino(file), LUNFS_OPEN_RW, &w))) {
			atomic_store(&wfile, w);
			nbdkit_debug("%s: took the exclusive lock for %s after %llu ms", path, what,
				     (unsigned long long)(now_ms() - t0));
		}
	}
	pthread_mutex_unlock(&up_mu);
	if (!w) {
		nbdkit_error("%s: %s: cannot take the exclusive lock%s: %s", path, what,
			     r == -EBUSY ? " (another host still has the file open)" : "",
			     lunfs_strerror(r));
		/* NBD has no EBUSY (nbdkit would send EINVAL): an I/O error */
		nbdkit_set_error(EIO);
	}
	return w;
}

static void lib_log(int prio, const char *msg)
{
	if (prio <= LOG_ERR)
		nbdkit_error("%s", msg);
	else
		nbdkit_debug("%s", msg);
}

/* Records a library error for the NBD reply (its nearest errno) and the log. */
static int fail(int r, const char *what)
{
	nbdkit_error("%s: %s", what, lunfs_strerror(r));
	int e = lunfs_sys_errno(r);
	nbdkit_set_error(e < 0 ? -e : EIO);
	return -1;
}

static void nl_unload(void)
{
	free(device);
	free(path);
	free(host);
}

static int choice(const char *key, const char *value, const char *a, const char *b, int *second)
{
	if (strcmp(value, a) && strcmp(value, b)) {
		nbdkit_error("%s=%s: must be %s=%s or %s=%s", key, value, key, a, key, b);
		return -1;
	}
	*second = !strcmp(value, b);
	return 0;
}

static int set_str(char **dst, const char *key, const char *value)
{
	if (!*value) {
		nbdkit_error("%s=: needs a value", key);
		return -1;
	}
	free(*dst);
	if (!(*dst = strdup(value))) {
		nbdkit_error("strdup: %m");
		return -1;
	}
	return 0;
}

static int nl_config(const char *key, const char *value)
{
	if (!strcmp(key, "device"))
		return set_str(&device, key, value);
	if (!strcmp(key, "file"))
		return set_str(&path, key, value);
	if (!strcmp(key, "host"))
		return set_str(&host, key, value);
	if (!strcmp(key, "readonly")) {
		int r = nbdkit_parse_bool(value);
		if (r < 0)
			return -1;
		readonly = r;
		return 0;
	}
	if (!strcmp(key, "incoming")) {
		int r = nbdkit_parse_bool(value);
		if (r < 0)
			return -1;
		incoming = r;
		return 0;
	}
	if (!strcmp(key, "incoming_wait"))
		return nbdkit_parse_unsigned(key, value, &incoming_wait);
	if (!strcmp(key, "caw")) {
		if (!strcmp(value, "auto"))
			caw_mode = LUNFS_CAW_AUTO;
		else if (!strcmp(value, "native"))
			caw_mode = LUNFS_CAW_NATIVE;
		else if (!strcmp(value, "reserve"))
			caw_mode = LUNFS_CAW_RESERVE;
		else {
			nbdkit_error("caw=%s: must be caw=auto, caw=native or caw=reserve", value);
			return -1;
		}
		return 0;
	}
	if (!strcmp(key, "pr"))
		return choice(key, value, "on", "off", &no_pr);
	nbdkit_error("unknown parameter '%s'", key);
	return -1;
}

static int nl_config_complete(void)
{
	if (!device || !path) {
		nbdkit_error("the DEVICE (device=) and file= parameters are required");
		return -1;
	}
	if (incoming_wait > 600) {
		nbdkit_error("incoming_wait=%u: at most 600 seconds", incoming_wait);
		return -1;
	}
	if (incoming && readonly) {
		nbdkit_error("incoming=1 and readonly=1 exclude each other");
		return -1;
	}
	if (path[0] != '/') {
		nbdkit_error("file=%s: must be an absolute path inside the volume", path);
		return -1;
	}
	lunfs_log_set(lib_log);
	return 0;
}

#define nl_config_help                                                                         \
	"[device=]DEVICE      (required) lunfs volume: image file, block device or iscsi:// URL\n" \
	"file=/PATH           (required) the file inside the volume to export\n"                  \
	"host=NAME            this host's identity on the volume (default: /etc/machine-id)\n"    \
	"readonly=1           shared read-only open (default: exclusive read-write)\n"            \
	"incoming=1           live migration destination: the lock at the first write\n"         \
	"incoming_wait=SECS   how long that write waits for the source (default 30)\n"          \
	"caw=auto|native|reserve  iSCSI compare-and-write (default auto)\n"                       \
	"pr=on|off            iSCSI persistent reservations (default on)"

/* Resolves path one component at a time from the root; *ino is the last. */
static int resolve(struct lunfs_vol *v, const char *p, uint64_t *ino)
{
	char name[NAME_MAX + 1];
	struct lunfs_stat st = {.ino = LUNFS_ROOT_INO};
	while (*p) {
		while (*p == '/')
			p++;
		size_t n = strcspn(p, "/");
		if (!n)
			break;
		if (n > NAME_MAX)
			return -ENAMETOOLONG;
		memcpy(name, p, n);
		name[n] = 0;
		p += n;
		int r = lunfs_lookup(v, st.ino, name, &st);
		if (r)
			return r;
	}
	if (!S_ISREG(st.mode))
		return S_ISDIR(st.mode) ? -EISDIR : -EINVAL;
	*ino = st.ino;
	return 0;
}

/* Mounts the volume and opens the file in the export's mode; on an error
 * nothing stays mounted and one line says why. */
static int open_export(struct lunfs_vol **vp, struct lunfs_file **fp)
{
	struct lunfs_mount_opts mo = {.host = host,
				      .dev = {.caw_mode = caw_mode, .no_pr = no_pr},
				      /* incoming=1: the first write's open waits for the source */
				      .open_wait_ms = incoming ? incoming_wait * 1000 : 0};
	struct lunfs_vol *v = NULL;
	const char *msg = NULL;
	uint64_t ino;
	int r = lunfs_mount(device, &mo, &v, &msg);
	if (r) {
		nbdkit_error("cannot mount %s: %s", device, msg ? msg : lunfs_strerror(r));
		return -1;
	}
	if ((r = resolve(v, path, &ino))) {
		nbdkit_error("%s: %s", path, lunfs_strerror(r));
		goto out;
	}
	r = lunfs_open(v, ino,
		       incoming   ? LUNFS_OPEN_READ
		       : readonly ? LUNFS_OPEN_SHARED_RO
				  : LUNFS_OPEN_EXCL,
		       fp);
	if (r == -EBUSY)
		nbdkit_error("%s: busy: %s (EBUSY)", path,
			     readonly ? "another host has it open read-write"
				      : "another host has it open (read-write or shared read-only)");
	else if (r)
		nbdkit_error("%s: cannot open: %s", path, lunfs_strerror(r));
out:
	if (r) {
		lunfs_unmount(v);
		return -1;
	}
	*vp = v;
	return 0;
}

static void close_export(struct lunfs_vol *v, struct lunfs_file *f)
{
	struct lunfs_file *w = atomic_exchange(&wfile, NULL);
	int r = w ? lunfs_close(w) : 0;
	if (r)
		nbdkit_error("%s: close: %s", path, lunfs_strerror(r));
	r = f ? lunfs_close(f) : 0;
	if (r)
		nbdkit_error("%s: close: %s", path, lunfs_strerror(r));
	if (v && (r = lunfs_unmount(v)))
		nbdkit_error("%s: unmount: %s", device, lunfs_strerror(r));
}

/* The trial open before the fork (see the comment at the top). */
static int nl_get_ready(void)
{
	struct lunfs_vol *v;
	struct lunfs_file *f;
	if (open_export(&v, &f))
		return -1;
	close_export(v, f);
	return 0;
}

static int nl_after_fork(void)
{
	if (open_export(&vol, &file))
		return -1;
	nbdkit_debug("serving %s of %s as host %s, %s", path, device, host ? host : "(machine-id)",
		     incoming   ? "read-write, the lock at the first write (incoming)"
		     : readonly ? "shared read-only"
				: "exclusive read-write");
	return 0;
}

static void nl_cleanup(void)
{
	close_export(vol, file);
	file = NULL;
	vol = NULL;
}

static void *nl_open_conn(int ro)
{
	(void)ro;
	return file; /* every connection serves the one open file */
}

static int64_t nl_get_size(void *h)
{
	struct lunfs_stat st;
	(void)h;
	int r = lunfs_getattr(vol, lunfs_file_ino(rd()), &st);
	if (r)
		return fail(r, "getattr");
	return (int64_t)st.size;
}

static int nl_can_write(void *h)
{
	(void)h;
	return !readonly;
}

static int nl_can_flush(void *h)
{
	(void)h;
	return 1;
}

static int nl_can_trim(void *h)
{
	(void)h;
	return !readonly;
}

static int nl_can_zero(void *h)
{
	(void)h;
	return !readonly;
}

/* A zero is a pointer change (punch, or to-be-zeroed blocks), never a write
 * of zeros beyond the partial blocks at the ends of the range. */
static int nl_can_fast_zero(void *h)
{
	(void)h;
	return !readonly;
}

static int nl_can_fua(void *h)
{
	(void)h;
	return NBDKIT_FUA_NATIVE;
}

static int nl_can_multi_conn(void *h)
{
	(void)h;
	return 1; /* one open file for all connections: one fsync covers all */
}

static int nl_can_extents(void *h)
{
	(void)h;
	return 1;
}

static int nl_can_cache(void *h)
{
	(void)h;
	return NBDKIT_CACHE_NONE;
}

static int nl_pread(void *h, void *buf, uint32_t count, uint64_t offset, uint32_t flags)
{
	(void)h;
	(void)flags;
	char *p = buf;
	while (count) {
		ssize_t n = lunfs_pread(rd(), p, count, offset);
		if (n < 0)
			return fail((int)n, "pread");
		if (n == 0) {
			nbdkit_error("pread: end of file at %llu", (unsigned long long)offset);
			nbdkit_set_error(EIO);
			return -1;
		}
		p += n;
		count -= (uint32_t)n;
		offset += (uint64_t)n;
	}
	return 0;
}

static int sync_if_fua(struct lunfs_file *f, uint32_t flags)
{
	int r;
	if ((flags & NBDKIT_FLAG_FUA) && (r = lunfs_fsync(f)))
		return fail(r, "fsync");
	return 0;
}

static int nl_pwrite(void *h, const void *buf, uint32_t count, uint64_t offset, uint32_t flags)
{
	(void)h;
	const char *p = buf;
	struct lunfs_file *f = wr("pwrite");
	if (!f)
		return -1;
	while (count) {
		ssize_t n = lunfs_pwrite(f, p, count, offset);
		if (n < 0)
			return fail((int)n, "pwrite");
		p += n;
		count -= (uint32_t)n;
		offset += (uint64_t)n;
	}
	return sync_if_fua(f, flags);
}

static int nl_flush(void *h, uint32_t flags)
{
	(void)h;
	(void)flags;
	if (incoming && !atomic_load(&wfile))
		return 0; /* nothing written through this export yet */
	int r = lunfs_fsync(rd());
	return r ? fail(r, "fsync") : 0;
}

static int nl_trim(void *h, uint32_t count, uint64_t offset, uint32_t flags)
{
	(void)h;
	struct lunfs_file *f = wr("trim");
	if (!f)
		return -1;
	int r = lunfs_fallocate(f, LUNFS_FALLOC_PUNCH | LUNFS_FALLOC_KEEP_SIZE, offset, count);
	if (r)
		return fail(r, "trim");
	return sync_if_fua(f, flags);
}

/* MAY_TRIM: punch (holes read as zeros); else the range stays allocated
 * and reads as zeros (ZERO_RANGE: whole blocks become to-be-zeroed). */
static int nl_zero(void *h, uint32_t count, uint64_t offset, uint32_t flags)
{
	(void)h;
	unsigned mode = LUNFS_FALLOC_KEEP_SIZE |
			(flags & NBDKIT_FLAG_MAY_TRIM ? LUNFS_FALLOC_PUNCH : LUNFS_FALLOC_ZERO_RANGE);
	struct lunfs_file *f = wr("zero");
	if (!f)
		return -1;
	int r = lunfs_fallocate(f, mode, offset, count);
	if (r)
		return fail(r, "zero");
	return sync_if_fua(f, flags);
}

/* base:allocation: data and holes from SEEK_DATA / SEEK_HOLE, from offset
 * until count is covered (or one extent with REQ_ONE). */
static int nl_extents(void *h, uint32_t count, uint64_t offset, uint32_t flags,
			 struct nbdkit_extents *ex)
{
	(void)h;
	uint64_t end = offset + count;
	while (offset < end) {
		int64_t data = lunfs_seek_hole_data(rd(), offset, LUNFS_SEEK_DATA);
		if (data == -ENXIO)
			data = (int64_t)end; /* a hole to the end */
		else if (data < 0)
			return fail((int)data, "extents: SEEK_DATA");
		if ((uint64_t)data > offset) {
			uint64_t len = ((uint64_t)data < end ? (uint64_t)data : end) - offset;
			if (nbdkit_add_extent(ex, offset, len, NBDKIT_EXTENT_HOLE | NBDKIT_EXTENT_ZERO))
				return -1;
			offset += len;
			if (flags & NBDKIT_FLAG_REQ_ONE)
				break;
			continue;
		}
		int64_t hole = lunfs_seek_hole_data(rd(), offset, LUNFS_SEEK_HOLE);
		if (hole < 0)
			return fail((int)hole, "extents: SEEK_HOLE");
		uint64_t len = ((uint64_t)hole < end ? (uint64_t)hole : end) - offset;
		if (nbdkit_add_extent(ex, offset, len, 0))
			return -1;
		offset += len;
		if (flags & NBDKIT_FLAG_REQ_ONE)
			break;
	}
	return 0;
}

static struct nbdkit_plugin plugin = {
	.name = "lunfs",
	.longname = "lunfs: a file of a lunfs shared-disk volume",
	.version = LUNFS_RELEASE,
	.description = "Serves one file of a lunfs volume (a VM disk) over NBD.",
	.unload = nl_unload,
	.config = nl_config,
	.config_complete = nl_config_complete,
	.config_help = nl_config_help,
	.magic_config_key = "device",
	.get_ready = nl_get_ready,
	.after_fork = nl_after_fork,
	.cleanup = nl_cleanup,
	.open = nl_open_conn,
	.get_size = nl_get_size,
	.can_write = nl_can_write,
	.can_flush = nl_can_flush,
	.can_trim = nl_can_trim,
	.can_zero = nl_can_zero,
	.can_fast_zero = nl_can_fast_zero,
	.can_fua = nl_can_fua,
	.can_multi_conn = nl_can_multi_conn,
	.can_extents = nl_can_extents,
	.can_cache = nl_can_cache,
	.pread = nl_pread,
	.pwrite = nl_pwrite,
	.flush = nl_flush,
	.trim = nl_trim,
	.zero = nl_zero,
	.extents = nl_extents,
	.errno_is_preserved = 0,
};

NBDKIT_REGISTER_PLUGIN(plugin)
