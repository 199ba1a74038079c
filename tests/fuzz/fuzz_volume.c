/* fuzz_volume: fsck.lunfs and the mount path against damaged volumes.
 *
 * The input is not an image but a compact description of damage to one, so
 * that every mutation lands in metadata instead of in megabytes of zeros.
 * Once per process the harness builds a small populated volume (64 MiB, 4
 * hosts, 1 MiB journals, 64 KiB file blocks, 128 inodes, the shortest lease
 * mkfs accepts: heartbeat 50 ms, lease 150 ms) in a memfd and keeps a
 * pristine copy.  It has directories of one and two blocks, a file reached
 * through single and double indirect pointer blocks, a thick file, xattrs,
 * hard links, symlinks and device nodes.  Its last mount "crashed": the
 * journal holds committed transactions that were never checkpointed (their
 * homes are stale) and the locks of that mount are still held.  Its
 * heartbeat slot is then marked FREE, so that fsck does not watch a LIVE
 * slot for a lease on every execution (an input can make it LIVE again).
 * The UUID and mkfs time are fixed, so an input means the same in every
 * process.
 *
 * For each input the pristine image is restored, the patches are applied
 * (and the checksums re-stamped, so mutations reach the decoders), and then,
 * in this process so that the sanitizers see everything, a sequence chosen
 * by the mode byte of:
 *   - fsck.lunfs -n or -y (fsck/fsck.c compiled with -Dmain=fsck_main);
 *   - lunfs_mount as host "fuzz2" (assume_dead: the crashed mount was its
 *     own), read-only or read-write, a walk of the tree (readdir, lookup,
 *     getattr, xattrs, readlink, reads at several offsets), and read-write:
 *     create, write, link, symlink, rename (also exchange, and into its own
 *     subtree), truncate, punch, fallocate, multi-writer open, unlink,
 *     rmdir; then unmount.
 * Errors are expected; crashes, sanitizer reports, leaks and hangs are what
 * is being looked for.
 *
 * Input format (all little-endian):
 *   byte 0        mode: bits 0-1 the order of the runs (see ORDERS),
 *                 bit 2 do not re-hash journal transactions after patching
 *   then records  u32 sel, u8 len, len bytes
 *     sel bits 28-31  block class (enum cls, modulo CLS_COUNT)
 *         bits 12-27  index within the class (modulo the class's count)
 *         bits 0-11   byte offset in the block (modulo the record size)
 *     len bits 0-6    number of bytes (clipped at the end of the record)
 *         bit 7       raw: do not re-stamp the checksum of the block
 * A truncated last record applies the bytes that are there.
 *
 * Build: make fuzz (libFuzzer) or make check-fuzz-regress (-DREPLAY_MAIN:
 * main() replays the files and directories named on the command line).
 * FUZZ_DUMP=FILE writes the pristine image to FILE.
 * FUZZ_VERBOSE=1 in the environment keeps the output of fsck and of the
 * library (the replay build silences stdout and stderr otherwise; sanitizer
 * reports still reach the real stderr).  Under libFuzzer use -close_fd_mask=3.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>
#include "dev/dev.h"
#include "format/format.h"
#include "format/geom.h"
#include "fs/lunfs.h"
#include "fs/lunfs_test.h"
#include "lock/lk.h"

int fsck_main(int argc, char **argv); /* fsck/fsck.c built with -Dmain=fsck_main */
/* from the sanitizer runtime, when there is one */
void __sanitizer_set_report_fd(void *fd) __attribute__((weak));
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FZ_MiB (1024ull * 1024)
#define FZ_BS 4096u
#define FZ_IMG_SIZE (64 * FZ_MiB)
#define FZ_HB_MS 50
#define FZ_LEASE_MS 150
/* Above this (lease + heartbeat, either superblock copy) a LIVE slot would
 * make fsck watch it, and lock waits last, for too long (see free_slots()). */
#define FZ_MAX_WATCH_MS 1000

enum cls {
	CLS_SB,      /* primary and backup superblock */
	CLS_HB,      /* heartbeat slots (512-byte records) */
	CLS_LOCK,    /* the volume lock and every lock block in use (512) */
	CLS_JHDR,    /* journal headers */
	CLS_JLOG,    /* non-zero journal log blocks: descriptors, images, commits */
	CLS_RC,      /* cluster and inode-group headers in use */
	CLS_INODE,   /* inode blocks in use */
	CLS_PTR,     /* pointer blocks */
	CLS_DIR,     /* directory blocks */
	CLS_META,    /* other non-zero meta blocks */
	CLS_INOSLOT, /* any inode block, in use or not */
	CLS_RAW,     /* any 4 KiB block of the volume */
	CLS_COUNT
};

struct blist {
	uint64_t *v;
	size_t n, cap;
};

static struct {
	int ready;
	int fd;          /* the image, for restoring and patching (no O_DIRECT) */
	char path[256];  /* what fsck and mount open */
	char *tmpfile;   /* set when the image is a file to unlink at exit */
	struct lunfs_sb sb;
	uint8_t *pristine; /* FZ_IMG_SIZE bytes */
	struct blist nz;   /* non-zero 4 KiB blocks of the pristine image */
	struct blist cls[CLS_COUNT];
	int devnull, saved_stdout, saved_stderr, verbose;
	int quiet_stderr; /* the replay build: libFuzzer has -close_fd_mask */
} G;

static void die(const char *what, int r)
{
	fprintf(stderr, "fuzz_volume: %s: %s\n", what, r < 0 ? lunfs_strerror(r) : strerror(errno));
	abort();
}

static void bl_add(struct blist *b, uint64_t v)
{
	if (b->n == b->cap) {
		b->cap = b->cap ? 2 * b->cap : 64;
		b->v = realloc(b->v, b->cap * sizeof(*b->v));
		if (!b->v)
			die("realloc", -ENOMEM);
	}
	b->v[b->n++] = v;
}

static uint32_t get32(const uint8_t *p)
{
	return p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static void put64(uint8_t *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = v >> (8 * i);
}

/* ---- the backing store ---- */

static int direct_ok(const char *path)
{
	int fd = open(path, O_RDWR | O_DIRECT);
	if (fd < 0)
		return 0;
	close(fd);
	return 1;
}

static void rm_tmpfile(void)
{
	if (G.tmpfile)
		unlink(G.tmpfile);
}

/* A memfd when the kernel can open it with O_DIRECT (tmpfs supports it
 * since 6.6), else a file in a directory that can. */
static void open_backing(void)
{
	int fd = memfd_create("lunfs-fuzz", MFD_CLOEXEC);
	if (fd >= 0 && ftruncate(fd, FZ_IMG_SIZE) == 0) {
		snprintf(G.path, sizeof(G.path), "/proc/self/fd/%d", fd);
		if (direct_ok(G.path)) {
			G.fd = fd;
			return;
		}
	}
	if (fd >= 0)
		close(fd);
	const char *dirs[] = {getenv("FUZZ_IMG_DIR"), "/dev/shm", getenv("TMPDIR"), "/var/tmp", "."};
	for (size_t i = 0; i < sizeof(dirs) / sizeof(dirs[0]); i++) {
		if (!dirs[i])
			continue;
		snprintf(G.path, sizeof(G.path), "%s/lunfs-fuzz-%d.img", dirs[i], (int)getpid());
		fd = open(G.path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
		if (fd < 0)
			continue;
		G.tmpfile = strdup(G.path);
		atexit(rm_tmpfile);
		if (ftruncate(fd, FZ_IMG_SIZE) == 0 && direct_ok(G.path)) {
			G.fd = fd;
			return;
		}
		close(fd);
		unlink(G.path);
		free(G.tmpfile);
		G.tmpfile = NULL;
	}
	die("no directory supports O_DIRECT for the image", -EINVAL);
}

/* ---- the pristine volume ---- */

static void wr(struct lunfs_vol *v, uint64_t ino, uint64_t off, size_t len, int seed)
{
	struct lunfs_file *f;
	int r = lunfs_open(v, ino, LUNFS_OPEN_RW, &f);
	if (r)
		die("open", r);
	char *b = malloc(len);
	for (size_t i = 0; i < len; i++)
		b[i] = (char)(i * 7 + seed);
	if (lunfs_pwrite(f, b, len, off) != (ssize_t)len)
		die("pwrite", -EIO);
	free(b);
	if ((r = lunfs_close(f)))
		die("close", r);
}

static uint64_t mk(struct lunfs_vol *v, uint64_t dir, const char *name, uint32_t mode)
{
	struct lunfs_stat st;
	int r = S_ISDIR(mode) ? lunfs_mkdir(v, dir, name, mode & 07777, NULL, &st)
			      : lunfs_mknod(v, dir, name, mode, 0, NULL, &st);
	if (r)
		die(name, r);
	return st.ino;
}

static void populate(void)
{
	struct lunfs_mount_opts mo = {.host = "fuzz"};
	struct lunfs_vol *v;
	const char *msg = NULL;
	int r = lunfs_mount(G.path, &mo, &v, &msg);
	if (r)
		die(msg ? msg : "mount", r);
	uint64_t fbs = G.sb.file_bs;
	uint64_t vm1 = mk(v, 1, "vm1", S_IFDIR | 0755);
	uint64_t vm2 = mk(v, 1, "vm2", S_IFDIR | 0755);
	mk(v, vm1, "sub", S_IFDIR | 0700);
	uint64_t disk = mk(v, vm1, "disk.img", S_IFREG | 0644);
	wr(v, disk, 0, 8192, 1);
	wr(v, disk, 200 * fbs, 4096, 2);         /* unit 200: single indirect */
	wr(v, disk, (628 + 5) * fbs + 100, 4096, 3); /* unit 633: double indirect */
	uint64_t small = mk(v, vm1, "disk.vmx", S_IFREG | 0644);
	wr(v, small, 0, 300, 4);
	uint64_t mid = mk(v, vm2, "file", S_IFREG | 0600);
	wr(v, mid, 0, 5000, 5);
	/* enough long names for the directory to need a second block */
	for (int i = 0; i < 20; i++) {
		char name[256];
		snprintf(name, sizeof(name), "entry-%02d-%0*d", i, 200, i);
		mk(v, vm2, name, S_IFREG | 0644);
	}
	struct lunfs_stat st;
	if ((r = lunfs_link(v, small, vm2, "hard", &st)))
		die("link", r);
	if ((r = lunfs_symlink(v, 1, "link", "vm1/disk.img", NULL, &st)))
		die("symlink", r);
	char longtarget[INO_INLINE_LEN + 1]; /* the longest target: the whole inline area */
	memset(longtarget, 'x', sizeof(longtarget) - 1);
	longtarget[sizeof(longtarget) - 1] = 0;
	if ((r = lunfs_symlink(v, vm2, "longlink", longtarget, NULL, &st)))
		die("symlink", r);
	if ((r = lunfs_mknod(v, vm2, "fifo", S_IFIFO | 0644, 0, NULL, &st)) ||
	    (r = lunfs_mknod(v, vm2, "chr", S_IFCHR | 0600, 0x0103, NULL, &st)))
		die("mknod", r);
	if ((r = lunfs_setxattr(v, vm1, "user.vm", "yes", 3, 0)) ||
	    (r = lunfs_setxattr(v, disk, "user.a", "1", 1, 0)) ||
	    (r = lunfs_setxattr(v, disk, "trusted.bb", "twenty-two", 10, 0)))
		die("setxattr", r);
	uint64_t thick = mk(v, vm2, "thick", S_IFREG | 0644);
	struct lunfs_file *f;
	if ((r = lunfs_open(v, thick, LUNFS_OPEN_EXCL, &f)) ||
	    (r = lunfs_fallocate(f, 0, 0, 2 * fbs)) || (r = lunfs_close(f)))
		die("fallocate", r);
	if ((r = lunfs_unmount(v)))
		die("unmount", r);

	/* A second mount that crashes: its journal keeps what it committed
	 * (the linger time is long, so nothing is checkpointed), its locks stay
	 * held. */
	mo = (struct lunfs_mount_opts){.host = "fuzz2", .linger_ms = 60000};
	if ((r = lunfs_mount(G.path, &mo, &v, &msg)))
		die(msg ? msg : "mount", r);
	char name3[256];
	snprintf(name3, sizeof(name3), "entry-%02d-%0*d", 3, 200, 3);
	/* unlinked while open: the inode goes through the orphan directory */
	if ((r = lunfs_open(v, mid, LUNFS_OPEN_RW, &f)) || (r = lunfs_unlink(v, vm2, "file")))
		die("unlink open", r);
	lunfs_close(f);
	uint64_t nf = mk(v, vm2, "new", S_IFREG | 0644);
	wr(v, nf, 0, 5000, 6);
	/* no open or close from here: closing releases a lock, which
	 * checkpoints the journal */
	if ((r = lunfs_rename(v, vm1, "disk.vmx", vm2, "moved.vmx", 0)))
		die("rename", r);
	if ((r = lunfs_setxattr(v, nf, "user.new", "v", 1, 0)))
		die("setxattr", r);
	mk(v, vm2, "d2", S_IFDIR | 0755);
	mk(v, 1, "d3", S_IFDIR | 0755);
	if ((r = lunfs_unlink(v, vm2, name3)))
		die("unlink", r);
	struct lunfs_setattr sa = {.size = 4096};
	if ((r = lunfs_setattr(v, disk, LUNFS_SET_SIZE, &sa, &st)))
		die("truncate", r);
	lunfs_abandon(v);

	/* Its slot stays LIVE after the crash; mark it FREE (as a peer's
	 * recovery would), or every fsck run would watch it for a lease. */
	struct dev *d;
	if ((r = dev_open(G.path, NULL, &d)))
		die("dev_open", r);
	struct lk_params p = lk_params_of(&G.sb);
	for (uint32_t s = 0; s < G.sb.max_hosts; s++) {
		struct lunfs_hb hb;
		if ((r = hb_read(d, &p, s, &hb)))
			die("hb_read", r);
		if (hb.state == HB_FREE)
			continue;
		uint8_t *rec = dev_alloc(FZ_BS);
		hb.state = HB_FREE;
		hb.gen++;
		hb.counter++;
		lunfs_hb_encode(&hb, G.sb.uuid, geom_hb(&G.sb, s), rec);
		if ((r = dev_write(d, geom_hb(&G.sb, s), rec, dev_lbs(d))))
			die("hb write", r);
		free(rec);
	}
	dev_flush(d);
	dev_close(d);
}

static uint32_t magic_of(const uint8_t *b)
{
	return get32(b + 8);
}

static int in_range(uint64_t a, uint64_t off, uint64_t len)
{
	return a >= off && a - off < len;
}

/* Record size of the block at a: 512 for heartbeat slots and lock blocks. */
static uint32_t recsize(uint64_t a)
{
	const struct lunfs_sb *s = &G.sb;
	if (in_range(a, s->hb_off, (uint64_t)s->max_hosts * FZ_BS) || a == s->vlock_off)
		return LUNFS_REC_SIZE;
	uint64_t tabs[][2] = {{s->fc_off, s->fc_count}, {s->mc_off, s->mc_count},
			      {s->ig_off, s->ig_count}, {s->ino_off, geom_ninodes(s)}};
	for (int t = 0; t < 4; t++)
		if (in_range(a, tabs[t][0], tabs[t][1] * TBL_ENTRY) && (a - tabs[t][0]) % TBL_ENTRY == 0)
			return LUNFS_REC_SIZE;
	return FZ_BS;
}

static void classify(void)
{
	const struct lunfs_sb *s = &G.sb;
	bl_add(&G.cls[CLS_SB], 0);
	bl_add(&G.cls[CLS_SB], s->backup_off);
	bl_add(&G.cls[CLS_LOCK], s->vlock_off);
	for (uint32_t i = 0; i < s->max_hosts; i++) {
		bl_add(&G.cls[CLS_HB], geom_hb(s, i));
		bl_add(&G.cls[CLS_JHDR], geom_jnl(s, i));
	}
	for (uint64_t i = 1; i < geom_ninodes(s); i++)
		bl_add(&G.cls[CLS_INOSLOT], geom_ino_blk(s, i));
	for (uint64_t a = 0; a < FZ_IMG_SIZE; a += FZ_BS) {
		const uint8_t *b = G.pristine + a;
		if (lunfs_is_zero(b, FZ_BS))
			continue;
		bl_add(&G.nz, a);
		uint32_t m = magic_of(b);
		if (in_range(a, s->jnl_off, (uint64_t)s->max_hosts * s->jnl_size)) {
			if ((a - s->jnl_off) % s->jnl_size)
				bl_add(&G.cls[CLS_JLOG], a);
		} else if (m == MAGIC_LOCK && a != s->vlock_off) {
			bl_add(&G.cls[CLS_LOCK], a);
		} else if (m == MAGIC_RC) {
			bl_add(&G.cls[CLS_RC], a);
		} else if (m == MAGIC_INODE) {
			bl_add(&G.cls[CLS_INODE], a);
		} else if (in_range(a, s->meta_off, s->meta_blocks * FZ_BS)) {
			bl_add(&G.cls[m == MAGIC_PTR ? CLS_PTR : m == MAGIC_DIR ? CLS_DIR : CLS_META], a);
		}
	}
	for (int c = 0; c < CLS_COUNT; c++)
		if (c != CLS_RAW && !G.cls[c].n)
			bl_add(&G.cls[c], 0); /* never empty: the superblock */
	if (getenv("FUZZ_VERBOSE"))
		for (int c = 0; c < CLS_COUNT; c++)
			fprintf(stderr, "fuzz_volume: class %d: %zu blocks\n", c, G.cls[c].n);
}

static void setup(void)
{
	struct dev *d;
	char err[256];
	int r;
	G.verbose = getenv("FUZZ_VERBOSE") != NULL;
	G.devnull = open("/dev/null", O_WRONLY | O_CLOEXEC);
	G.saved_stdout = dup(1);
	G.saved_stderr = dup(2);
#ifdef REPLAY_MAIN
	if (!G.verbose && __sanitizer_set_report_fd) {
		__sanitizer_set_report_fd((void *)(intptr_t)G.saved_stderr);
		G.quiet_stderr = 1;
	}
#endif
	open_backing();
	if ((r = dev_open(G.path, NULL, &d)))
		die("dev_open", r);
	/* small blocks and few inodes: every fsck pass reads all inodes, and a
	 * truncate zeroes the tail of a whole file block */
	struct lunfs_mkfs_opts o = {.max_hosts = 4, .jnl_size = FZ_MiB, .lease_ms = FZ_LEASE_MS,
				    .hb_ms = FZ_HB_MS, .file_bs = 64 * 1024, .inodes = 128};
	if ((r = lunfs_geom_compute(&o, dev_size(d), dev_lbs(d), &G.sb, err, sizeof(err))))
		die(err, r);
	/* a fixed UUID and time instead of lunfs_uuid_gen() and now: inputs
	 * that carry them must mean the same in every process */
	memcpy(G.sb.uuid, "\x6c\x75\x6e\x66\x73\x2d\x46\x55\x5a\x5a\x2d\x76\x6f\x6c\x21\x01", 16);
	G.sb.ctime = 1767225600;
	if ((r = lunfs_format(d, &G.sb)))
		die("format", r);
	dev_close(d);
	populate();
	G.pristine = malloc(FZ_IMG_SIZE);
	if (!G.pristine || pread(G.fd, G.pristine, FZ_IMG_SIZE, 0) != (ssize_t)FZ_IMG_SIZE)
		die("read pristine", -EIO);
	classify();
	/* FUZZ_DUMP=FILE: a copy of the pristine image, to write inputs against */
	const char *dump = getenv("FUZZ_DUMP");
	if (dump) {
		int fd = open(dump, O_WRONLY | O_CREAT | O_TRUNC, 0644);
		if (fd < 0 || pwrite(fd, G.pristine, FZ_IMG_SIZE, 0) != (ssize_t)FZ_IMG_SIZE)
			die(dump, -EIO);
		close(fd);
	}
	G.ready = 1;
}

/* ---- one execution ---- */

static void restore(void)
{
	/* punching the whole image frees whatever the last run wrote; then only
	 * the pristine's non-zero blocks are written back */
	if (fallocate(G.fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 0, FZ_IMG_SIZE) == 0) {
		for (size_t i = 0; i < G.nz.n;) {
			size_t j = i + 1;
			while (j < G.nz.n && G.nz.v[j] == G.nz.v[j - 1] + FZ_BS)
				j++;
			uint64_t off = G.nz.v[i], len = G.nz.v[j - 1] + FZ_BS - off;
			if (pwrite(G.fd, G.pristine + off, len, off) != (ssize_t)len)
				die("restore", -EIO);
			i = j;
		}
	} else if (pwrite(G.fd, G.pristine, FZ_IMG_SIZE, 0) != (ssize_t)FZ_IMG_SIZE) {
		die("restore", -EIO);
	}
}

struct touched {
	uint64_t addr;
	int restamp;
};

static void restamp_blk(uint64_t a)
{
	uint8_t b[FZ_BS];
	uint32_t sz = recsize(a);
	if (pread(G.fd, b, sz, a) != (ssize_t)sz)
		die("pread", -EIO);
	put64(b, XXH3_64bits(b + 8, sz - 8));
	if (pwrite(G.fd, b, 8, a) != 8)
		die("pwrite", -EIO);
}

/* After patches inside journal j's log: every descriptor followed by a commit
 * gets the commit's txn_hash recomputed (and the commit re-stamped), so a
 * patched image or descriptor is replayed instead of ending the log. */
static void rehash_journal(uint64_t j)
{
	uint64_t base = j + FZ_BS, L = G.sb.jnl_size - FZ_BS;
	uint8_t *log = malloc(L);
	if (!log || pread(G.fd, log, L, base) != (ssize_t)L)
		die("read journal", -EIO);
	for (uint64_t pos = 0; pos + 2 * FZ_BS <= L;) {
		uint8_t *ds = log + pos;
		uint32_t n = get32(ds + 72);
		if (magic_of(ds) != MAGIC_JDESC || n == 0 || n > JNL_MAX_BLOCKS ||
		    pos + (uint64_t)(n + 2) * FZ_BS > L) {
			pos += FZ_BS;
			continue;
		}
		uint8_t *cm = ds + (size_t)(n + 1) * FZ_BS;
		if (magic_of(cm) == MAGIC_JCOMMIT) {
			put64(cm + 80, XXH3_64bits(ds, (size_t)(n + 1) * FZ_BS));
			put64(cm, XXH3_64bits(cm + 8, FZ_BS - 8));
			uint64_t coff = base + pos + (uint64_t)(n + 1) * FZ_BS;
			if (pwrite(G.fd, cm, FZ_BS, coff) != FZ_BS)
				die("pwrite", -EIO);
		}
		pos += (uint64_t)(n + 2) * FZ_BS;
	}
	free(log);
}

/* fsck watches a LIVE slot for a whole lease (and lock waits last as long):
 * fine while the lease is short, as the harness makes it.  A superblock
 * (either copy) patched to a long lease would turn every LIVE slot, whether
 * patched or left by a mount that failed half-way, into a wait of up to ten
 * minutes: then non-free slots are marked FREE before each run (as an
 * operator who knows no host is alive would).  A slot with a bad checksum is
 * left alone: it reads as damaged, not as LIVE. */
static int long_lease(void)
{
	uint8_t b[FZ_BS];
	uint64_t offs[2] = {0, G.sb.backup_off};
	for (int i = 0; i < 2; i++) {
		if (pread(G.fd, b, FZ_BS, offs[i]) != FZ_BS)
			die("pread", -EIO);
		if ((uint64_t)get32(b + 104) + get32(b + 108) > FZ_MAX_WATCH_MS)
			return 1;
	}
	return 0;
}

static void free_slots(void)
{
	if (!long_lease())
		return;
	for (uint32_t s = 0; s < G.sb.max_hosts; s++) {
		uint8_t b[LUNFS_REC_SIZE];
		uint64_t a = geom_hb(&G.sb, s);
		if (pread(G.fd, b, sizeof(b), a) != sizeof(b))
			die("pread", -EIO);
		if (magic_of(b) != MAGIC_HB || get32(b + 64) == HB_FREE ||
		    lunfs_csum(b, sizeof(b)) != (get32(b) | (uint64_t)get32(b + 4) << 32))
			continue;
		memset(b + 64, 0, 4);
		put64(b, lunfs_csum(b, sizeof(b)));
		if (pwrite(G.fd, b, sizeof(b), a) != sizeof(b))
			die("pwrite", -EIO);
	}
}

/* Applies the patches of the input. */
static void apply(const uint8_t *data, size_t size)
{
	struct touched t[64];
	int nt = 0;
	size_t p = 1;
	while (p + 5 <= size) {
		uint32_t sel = get32(data + p);
		uint8_t lf = data[p + 4];
		p += 5;
		size_t len = lf & 0x7f;
		if (len > size - p)
			len = size - p;
		const uint8_t *bytes = data + p;
		p += len;
		struct blist *bl = &G.cls[(sel >> 28) % CLS_COUNT];
		uint32_t idx = (sel >> 12) & 0xffff;
		uint64_t a = (sel >> 28) % CLS_COUNT == CLS_RAW ? (uint64_t)(idx % (FZ_IMG_SIZE / FZ_BS)) * FZ_BS
								: bl->v[idx % bl->n];
		uint32_t rs = recsize(a), off = (sel & 0xfff) % rs;
		if (len > rs - off)
			len = rs - off;
		if (len && pwrite(G.fd, bytes, len, a + off) != (ssize_t)len)
			die("pwrite", -EIO);
		int k;
		for (k = 0; k < nt && t[k].addr != a; k++)
			;
		if (k == nt && nt < 64)
			t[nt++] = (struct touched){a, 0};
		if (k < nt)
			t[k].restamp = !(lf & 0x80); /* the last patch of a block decides */
	}
	for (int k = 0; k < nt; k++)
		if (t[k].restamp)
			restamp_blk(t[k].addr);
	if (!(data[0] & 4)) {
		for (uint32_t s = 0; s < G.sb.max_hosts; s++) {
			uint64_t j = geom_jnl(&G.sb, s);
			for (int k = 0; k < nt; k++) {
				if (t[k].restamp && in_range(t[k].addr, j + FZ_BS, G.sb.jnl_size - FZ_BS)) {
					rehash_journal(j);
					break;
				}
			}
		}
	}
}

static void quiet(int on)
{
	if (G.verbose)
		return;
	fflush(stdout);
	dup2(on ? G.devnull : G.saved_stdout, 1);
	if (G.quiet_stderr)
		dup2(on ? G.devnull : G.saved_stderr, 2);
}

static int run_fsck(const char *flag)
{
	char prog[] = "fsck.lunfs", f[4];
	snprintf(f, sizeof(f), "%s", flag);
	char *argv[] = {prog, f, G.path, NULL};
	optind = 0; /* glibc: a full re-initialisation of getopt */
	return fsck_main(3, argv);
}

/* ---- the mount workload ---- */

struct ent {
	char name[LUNFS_NAME_MAX + 1];
	uint64_t ino;
	uint32_t type;
};
struct ents {
	struct ent e[48];
	int n, calls;
};

static int collect(void *arg, const char *name, uint64_t ino, uint32_t type, uint64_t next)
{
	struct ents *es = arg;
	(void)next;
	if (++es->calls > 4096)
		return 1; /* a cookie loop would go on forever: readdir's bug, not ours */
	if (es->n < 48) {
		snprintf(es->e[es->n].name, sizeof(es->e[es->n].name), "%s", name);
		es->e[es->n].ino = ino;
		es->e[es->n].type = type;
		es->n++;
	}
	return 0;
}

/* What the walk found for the changes to work on. */
struct found {
	uint64_t file_dir, file_ino, file2_ino; /* the first two regular files */
	char file[LUNFS_NAME_MAX + 1];
	uint64_t dir, dir_parent;              /* the first directory below the root */
	char dir_name[LUNFS_NAME_MAX + 1];
};

static void read_file(struct lunfs_vol *v, uint64_t ino, uint64_t size)
{
	struct lunfs_file *f;
	static char buf[65536];
	if (lunfs_open(v, ino, LUNFS_OPEN_READ, &f))
		return;
	uint64_t fbs = G.sb.file_bs;
	uint64_t offs[] = {0, size > 4096 ? size - 4096 : 0, 200 * fbs, 633 * fbs, size / 2};
	for (size_t i = 0; i < sizeof(offs) / sizeof(offs[0]); i++)
		lunfs_pread(f, buf, i ? 4096 : sizeof(buf), offs[i]);
	lunfs_close(f);
}

static void walk(struct lunfs_vol *v, uint64_t dir, int depth, struct found *fd)
{
	struct ents *es = calloc(1, sizeof(*es));
	char buf[1024];
	if (!es)
		return;
	lunfs_readdir(v, dir, 0, collect, es);
	for (int i = 0; i < es->n; i++) {
		struct ent *e = &es->e[i];
		struct lunfs_stat st;
		if (!strcmp(e->name, ".") || !strcmp(e->name, ".."))
			continue;
		if (lunfs_lookup(v, dir, e->name, &st))
			continue;
		lunfs_getattr(v, st.ino, &st);
		int n = lunfs_listxattr(v, st.ino, buf, sizeof(buf));
		for (int k = 0; n > 0 && k < n;) {
			char val[256];
			lunfs_getxattr(v, st.ino, buf + k, val, sizeof(val));
			k += strnlen(buf + k, n - k) + 1;
		}
		if (S_ISREG(st.mode)) {
			read_file(v, st.ino, st.size);
			if (!fd->file_ino) {
				fd->file_ino = st.ino;
				fd->file_dir = dir;
				snprintf(fd->file, sizeof(fd->file), "%s", e->name);
			} else if (!fd->file2_ino && st.ino != fd->file_ino) {
				fd->file2_ino = st.ino;
			}
		} else if (S_ISLNK(st.mode)) {
			lunfs_readlink(v, st.ino, buf, sizeof(buf));
		} else if (S_ISDIR(st.mode) && depth < 3) {
			if (!fd->dir) {
				fd->dir = st.ino;
				fd->dir_parent = dir;
				snprintf(fd->dir_name, sizeof(fd->dir_name), "%s", e->name);
			}
			walk(v, st.ino, depth + 1, fd);
		}
	}
	free(es);
}

static void changes(struct lunfs_vol *v, struct found *fd)
{
	struct lunfs_stat st;
	struct lunfs_file *f;
	static char buf[8192];
	uint64_t fbs = G.sb.file_bs;
	memset(buf, 0x5a, sizeof(buf));
	if (!lunfs_mknod(v, 1, "fz.new", S_IFREG | 0644, 0, NULL, &st) &&
	    !lunfs_open(v, st.ino, LUNFS_OPEN_RW, &f)) {
		lunfs_pwrite(f, buf, 5000, 0);
		lunfs_pwrite(f, buf, 4096, 130 * fbs);
		lunfs_fsync(f);
		lunfs_close(f);
		lunfs_setxattr(v, st.ino, "user.fz", "1", 1, 0);
		lunfs_link(v, st.ino, 1, "fz.hard", &st);
	}
	lunfs_mkdir(v, 1, "fz.dir", 0755, NULL, &st);
	lunfs_symlink(v, 1, "fz.lnk", "fz.new", NULL, &st);
	lunfs_rename(v, 1, "fz.new", 1, "fz.renamed", 0);
	if (fd->dir) {
		lunfs_mknod(v, fd->dir, "fz.in", S_IFREG | 0644, 0, NULL, &st);
		lunfs_rename(v, 1, "fz.hard", fd->dir, "fz.moved", 0);
		lunfs_unlink(v, fd->dir, "fz.in");
	}
	if (fd->file_ino && !lunfs_open(v, fd->file_ino, LUNFS_OPEN_RW, &f)) {
		struct lunfs_setattr sa = {.size = 10};
		lunfs_pwrite(f, buf, 100, 0);
		lunfs_pwrite(f, buf, 4096, 2 * fbs);
		lunfs_setattr(v, fd->file_ino, LUNFS_SET_SIZE, &sa, &st);
		lunfs_close(f);
		lunfs_unlink(v, fd->file_dir, fd->file);
	}
	/* the second file: punch its map, then thick, eager-zeroed and
	 * multi-writer (which wants every block allocated) */
	if (fd->file2_ino && !lunfs_open(v, fd->file2_ino, LUNFS_OPEN_EXCL, &f)) {
		lunfs_fallocate(f, LUNFS_FALLOC_PUNCH | LUNFS_FALLOC_KEEP_SIZE, fbs, 700 * fbs);
		lunfs_fallocate(f, 0, 0, 3 * fbs);
		lunfs_fallocate(f, LUNFS_FALLOC_ZERO | LUNFS_FALLOC_KEEP_SIZE, fbs, fbs);
		lunfs_close(f);
		if (!lunfs_open(v, fd->file2_ino, LUNFS_OPEN_MULTI, &f))
			lunfs_close(f);
	}
	if (!lunfs_lookup(v, 1, "fz.renamed", &st))
		lunfs_removexattr(v, st.ino, "user.fz");
	lunfs_rename(v, 1, "fz.lnk", 1, "fz.renamed", LUNFS_RENAME_EXCHANGE);
	if (fd->dir) /* into itself: refused, after walking up the parents */
		lunfs_rename(v, fd->dir_parent, fd->dir_name, fd->dir, "fz.loop", 0);
	lunfs_rmdir(v, 1, "fz.dir");
	struct lunfs_statfs sf;
	lunfs_statfs(v, &sf);
}

static void run_mount(int readonly)
{
	struct lunfs_mount_opts o = {.host = "fuzz2", .assume_dead = 1, .linger_ms = 100,
				     .readonly = readonly};
	struct lunfs_vol *v;
	const char *msg;
	if (lunfs_mount(G.path, &o, &v, &msg))
		return;
	struct found fd = {0};
	walk(v, 1, 0, &fd);
	if (!readonly)
		changes(v, &fd);
	lunfs_unmount(v);
}

static void step(char what)
{
	free_slots();
	if (what == 'm' || what == 'r')
		run_mount(what == 'r');
	else
		run_fsck(what == 'y' ? "-y" : "-n");
}

/* The order of the runs (mode bits 0-1), n/y: fsck -n/-y, m/r: mount
 * read-write/read-only. */
static const char *const ORDERS[4] = {
	"nynm", /* check, repair, check again, mount the repaired volume */
	"nmyn", /* mount the damaged volume, then repair */
	"rmyn", /* the same, read-only first */
	"ymn",  /* repair at once, mount, check what the mount left */
};

static void run_mode(int mode)
{
	for (const char *p = ORDERS[mode & 3]; *p; p++)
		step(*p);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (!G.ready)
		setup();
	if (size < 1)
		return 0;
	restore();
	apply(data, size);
	quiet(1);
	run_mode(data[0]);
	quiet(0);
	return 0;
}

#ifdef REPLAY_MAIN
/* Replays inputs without libFuzzer: each argument is a file or a directory
 * of files.  A sanitizer error aborts with a non-zero status. */
static int replay_file(const char *path)
{
	FILE *f = fopen(path, "rb");
	if (!f) {
		perror(path);
		exit(2);
	}
	uint8_t *buf = NULL;
	size_t n = 0, cap = 0;
	for (;;) {
		if (n == cap) {
			cap = cap ? 2 * cap : 4096;
			buf = realloc(buf, cap);
			if (!buf)
				exit(2);
		}
		size_t got = fread(buf + n, 1, cap - n, f);
		if (!got)
			break;
		n += got;
	}
	fclose(f);
	if (getenv("FUZZ_VERBOSE"))
		fprintf(stderr, "replay %s (%zu bytes)\n", path, n);
	LLVMFuzzerTestOneInput(buf, n);
	free(buf);
	return 1;
}

int main(int argc, char **argv)
{
	int count = 0;
	for (int i = 1; i < argc; i++) {
		struct stat st;
		if (stat(argv[i], &st)) {
			perror(argv[i]);
			return 2;
		}
		if (!S_ISDIR(st.st_mode)) {
			count += replay_file(argv[i]);
			continue;
		}
		struct dirent **names;
		int n = scandir(argv[i], &names, NULL, alphasort);
		for (int k = 0; k < n; k++) {
			char p[4096];
			snprintf(p, sizeof(p), "%s/%s", argv[i], names[k]->d_name);
			if (names[k]->d_name[0] != '.' && !stat(p, &st) && S_ISREG(st.st_mode))
				count += replay_file(p);
			free(names[k]);
		}
		free(names);
	}
	printf("fuzz regress: %d inputs replayed\n", count);
	return 0;
}
#endif
