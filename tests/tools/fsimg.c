/* fsimg: test volumes for fsck.
 *   fsimg make IMAGE            a small populated volume (256 MiB image)
 *   fsimg corrupt IMAGE KIND    apply one named corruption
 *   fsimg kinds                 list the kinds
 * Targets are found through a read-only mount; damage is done with the
 * on-disk codecs, so each kind is exactly one inconsistency. */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "dev/dev.h"
#include "format/format.h"
#include "fs/lunfs.h"
#include "fs/lunfs_test.h"
#include "journal/jnl.h"

#define MiB (1024ull * 1024)
#define BS LUNFS_META_BS

static void die(const char *what, int r)
{
	fprintf(stderr, "fsimg: %s: %s\n", what, lunfs_strerror(r));
	exit(1);
}

static void wfile(struct lunfs_vol *v, uint64_t dir, const char *name, uint64_t off, size_t len)
{
	struct lunfs_stat st;
	struct lunfs_file *f;
	int r = lunfs_mknod(v, dir, name, S_IFREG | 0644, 0, NULL, &st);
	if (r)
		die(name, r);
	if ((r = lunfs_open(v, st.ino, LUNFS_OPEN_EXCL, &f)))
		die(name, r);
	char *b = malloc(len);
	for (size_t i = 0; i < len; i++)
		b[i] = (char)(i * 7 + off);
	if (len && lunfs_pwrite(f, b, len, off) != (ssize_t)len)
		die("write", -EIO);
	free(b);
	lunfs_close(f);
}

static int make(const char *path)
{
	int fd = open(path, O_CREAT | O_TRUNC | O_RDWR, 0644);
	if (fd < 0 || ftruncate(fd, 256 * MiB))
		die(path, -errno);
	close(fd);
	struct dev *d;
	int r = dev_open(path, NULL, &d);
	if (r)
		die(path, r);
	struct lunfs_mkfs_opts o = {.max_hosts = 8, .jnl_size = MiB, .lease_ms = 2400, .hb_ms = 200};
	struct lunfs_sb sb;
	char err[256];
	if ((r = lunfs_geom_compute(&o, dev_size(d), dev_lbs(d), &sb, err, sizeof(err))))
		die(err, r);
	lunfs_uuid_gen(sb.uuid);
	if ((r = lunfs_format(d, &sb)))
		die("format", r);
	dev_close(d);
	struct lunfs_mount_opts mo = {.host = "populate"};
	struct lunfs_vol *v;
	if ((r = lunfs_mount(path, &mo, &v, NULL)))
		die("mount", r);
	struct lunfs_stat vm1, vm2, st;
	if ((r = lunfs_mkdir(v, 1, "vm1", 0755, NULL, &vm1)) || (r = lunfs_mkdir(v, 1, "vm2", 0755, NULL, &vm2)))
		die("mkdir", r);
	wfile(v, vm1.ino, "disk.img", 0, 3 * MiB);
	wfile(v, vm1.ino, "disk.vmx", 0, 300);
	wfile(v, vm2.ino, "file", 0, 5000);
	wfile(v, vm2.ino, "sparse", 200 * MiB, 4096); /* needs a pointer block */
	if ((r = lunfs_lookup(v, vm1.ino, "disk.vmx", &st)) || (r = lunfs_link(v, st.ino, vm1.ino, "hard", &st)))
		die("link", r);
	if ((r = lunfs_symlink(v, 1, "link", "vm1/disk.img", NULL, &st)))
		die("symlink", r);
	if ((r = lunfs_setxattr(v, vm1.ino, "user.vm", "yes", 3, 0)))
		die("xattr", r);
	/* enough xattrs on vm2/file for a chain of two xattr blocks */
	if ((r = lunfs_lookup(v, vm2.ino, "file", &st)))
		die("lookup", r);
	for (int i = 0; i < 200; i++) {
		char name[32];
		snprintf(name, sizeof(name), "user.x%03d", i);
		if ((r = lunfs_setxattr(v, st.ino, name, "0123456789abcdef", 16, 0)))
			die("xattr", r);
	}
	if ((r = lunfs_unmount(v)))
		die("unmount", r);
	return 0;
}

/* ---- corruption ---- */

struct ctx {
	struct dev *d;
	struct lunfs_sb sb;
	uint64_t vm1, vm2, img, vmx, file, sparse;
};

static uint64_t ino_of(struct lunfs_vol *v, uint64_t dir, const char *name)
{
	struct lunfs_stat st;
	int r = lunfs_lookup(v, dir, name, &st);
	if (r)
		die(name, r);
	return st.ino;
}

static void rd(struct ctx *c, uint64_t off, void *b)
{
	int r = dev_read(c->d, off, b, BS);
	if (r)
		die("read", r);
}

static void wr(struct ctx *c, uint64_t off, const void *b)
{
	int r = dev_write(c->d, off, b, BS);
	if (r)
		die("write", r);
}

static void load_ino(struct ctx *c, uint64_t ino, struct lunfs_inode *in)
{
	uint8_t b[BS] __attribute__((aligned(4096)));
	rd(c, geom_ino_blk(&c->sb, ino), b);
	int r = lunfs_inode_decode(b, c->sb.uuid, geom_ino_blk(&c->sb, ino), ino, in, NULL);
	if (r)
		die("inode", r);
}

static void store_ino(struct ctx *c, struct lunfs_inode *in)
{
	uint8_t b[BS] __attribute__((aligned(4096)));
	in->gen++;
	lunfs_inode_encode(in, c->sb.uuid, geom_ino_blk(&c->sb, in->ino), b);
	wr(c, geom_ino_blk(&c->sb, in->ino), b);
}

/* Edits the cluster header that covers file block blk (kind RC_FILE) or
 * inode ino (RC_INODE): set (on=1) or clear its bit, set refcnt. */
static void rc_edit(struct ctx *c, int kind, uint64_t n, int on, int ref)
{
	const struct lunfs_sb *s = &c->sb;
	uint32_t per = kind == RC_FILE ? s->fc_blocks : s->ig_inodes;
	uint64_t idx = n / per;
	uint64_t hdr = kind == RC_FILE ? geom_fc_hdr(s, idx) : geom_ig_hdr(s, idx);
	uint32_t ents = kind == RC_FILE ? geom_fc_entries(s, idx) : s->ig_inodes;
	uint8_t b[BS] __attribute__((aligned(4096)));
	struct lunfs_rc rc;
	rd(c, hdr, b);
	int r = lunfs_rc_decode(b, s->uuid, hdr, kind, ents, idx * per, &rc, NULL);
	if (r)
		die("cluster", r);
	uint32_t i = n % per;
	if (rc_test(&rc, i) != on)
		rc.nfree += on ? -1 : 1;
	rc_set(&rc, i, on);
	if (kind == RC_FILE)
		rc.refcnt[i] = ref;
	rc.gen++;
	lunfs_rc_encode(&rc, s->uuid, hdr, idx, b);
	wr(c, hdr, b);
}

static uint64_t first_free_file_block(struct ctx *c)
{
	/* the last block of the volume is never used by the small image */
	return c->sb.file_blocks - 1;
}

static uint64_t dir_block(struct ctx *c, uint64_t dir)
{
	struct lunfs_inode in;
	load_ino(c, dir, &in);
	return geom_meta_blk(&c->sb, in.direct[0] & PTR_BLOCK_MASK);
}

/* Sets the inode number of entry name in dir's first block. */
static void dirent_retarget(struct ctx *c, uint64_t dir, const char *name, uint64_t ino)
{
	uint8_t b[BS] __attribute__((aligned(4096)));
	uint64_t addr = dir_block(c, dir);
	rd(c, addr, b);
	for (uint32_t off = DIR_FIRST; off < BS;) {
		struct lunfs_dirent_info e;
		lunfs_dirent_get(b, off, &e);
		if (e.ino && e.name_len == strlen(name) && !memcmp(e.name, name, e.name_len)) {
			char keep[256];
			memcpy(keep, e.name, e.name_len);
			lunfs_dirent_put(b, off, ino, e.rec_len, ino ? e.type : 0, keep, ino ? e.name_len : 0);
			lunfs_dir_seal(b, c->sb.uuid, addr, lunfs_hdr_gen(b) + 1, dir, 0);
			wr(c, addr, b);
			return;
		}
		off += e.rec_len;
	}
	die(name, -ENOENT);
}

static void flip(struct ctx *c, uint64_t off, uint32_t at)
{
	uint8_t b[BS] __attribute__((aligned(4096)));
	rd(c, off, b);
	b[at] ^= 0x5a;
	wr(c, off, b);
}

static const char *kinds[] = {
	"sb-csum", "sb-backup", "hb-corrupt", "stale-live", "torn-journal", "stale-lock",
	"cluster-hdr", "inode-csum", "bad-pointer", "double-alloc", "ptr-block", "dir-block",
	"leaked-block", "unmarked-block", "refcount", "inode-bitmap", "dirent-free-inode",
	"nlink", "orphan", "nblocks", "xattr-block", NULL,
};

static int corrupt(const char *path, const char *kind)
{
	struct ctx c = {0};
	struct lunfs_mount_opts mo = {.readonly = 1};
	struct lunfs_vol *v;
	int r = lunfs_mount(path, &mo, &v, NULL);
	if (r)
		die("mount", r);
	c.vm1 = ino_of(v, 1, "vm1");
	c.vm2 = ino_of(v, 1, "vm2");
	c.img = ino_of(v, c.vm1, "disk.img");
	c.vmx = ino_of(v, c.vm1, "disk.vmx");
	c.file = ino_of(v, c.vm2, "file");
	c.sparse = ino_of(v, c.vm2, "sparse");
	lunfs_unmount(v);
	if ((r = dev_open(path, NULL, &c.d)))
		die(path, r);
	if ((r = lunfs_read_sb(c.d, &c.sb, 0, NULL, NULL)))
		die("superblock", r);
	struct lunfs_inode in, in2;
	const struct lunfs_sb *s = &c.sb;
	if (!strcmp(kind, "sb-csum")) {
		flip(&c, 0, 300);
	} else if (!strcmp(kind, "sb-backup")) {
		flip(&c, s->backup_off, 300);
	} else if (!strcmp(kind, "hb-corrupt")) {
		flip(&c, geom_hb(s, 7), 100);
	} else if (!strcmp(kind, "stale-live")) {
		/* a host that died without anyone noticing: LIVE, never renewed */
		uint8_t b[BS] __attribute__((aligned(4096))) = {0};
		struct lunfs_hb hb = {.gen = 9, .state = HB_LIVE, .slot = 6, .mount_gen = 4, .counter = 77};
		strcpy(hb.host_name, "ghost");
		hb.host_uuid[0] = 0x99;
		hb.jnl_off = geom_jnl(s, 6);
		hb.jnl_size = s->jnl_size;
		lunfs_hb_encode(&hb, s->uuid, geom_hb(s, 6), b);
		wr(&c, geom_hb(s, 6), b);
	} else if (!strcmp(kind, "torn-journal")) {
		/* slot 3 crashed mid-commit: the log write landed half */
		struct dev *f;
		dev_faulty_wrap(c.d, &f);
		c.d = NULL;
		struct dev_fault fc = {.tear_write = 2, .cut_after = 3};
		dev_faulty_set(f, &fc);
		struct jnl_geom g = {.slot = 3, .off = geom_jnl(s, 3), .size = s->jnl_size, .mount_gen = 1};
		memcpy(g.uuid, s->uuid, 16);
		g.target_ok = (jnl_target_fn)geom_is_journaled;
		g.arg = (void *)s;
		struct jnl *j;
		struct jnl_txn *t;
		uint8_t b[BS] __attribute__((aligned(4096)));
		if ((r = jnl_open(f, &g, NULL, &j, NULL)))
			die("journal", r);
		rd(&(struct ctx){.d = f}, geom_ino_blk(s, c.vmx), b);
		jnl_txn_begin(j, &t);
		jnl_txn_add(t, geom_ino_blk(s, c.vmx), b);
		jnl_txn_add(t, geom_ino_blk(s, c.img), b);
		jnl_txn_commit(t);
		jnl_abandon(j);
		dev_close(f);
		return 0;
	} else if (!strcmp(kind, "stale-lock")) {
		uint8_t b[BS] __attribute__((aligned(4096))) = {0};
		struct lunfs_lock lk = {.gen = 3, .mode = LK_EXCLUSIVE, .nholders = 1};
		lk.holders[0].slot = 5;
		lk.holders[0].mount_gen = 3;
		lk.object = lk.owner = geom_ino_blk(s, c.img);
		lunfs_lock_encode(&lk, s->uuid, geom_ino_lock(s, c.img), b);
		wr(&c, geom_ino_lock(s, c.img), b);
	} else if (!strcmp(kind, "cluster-hdr")) {
		load_ino(&c, c.img, &in);
		flip(&c, geom_fc_hdr(s, (in.direct[0] & PTR_BLOCK_MASK) / s->fc_blocks), 200);
	} else if (!strcmp(kind, "inode-csum")) {
		flip(&c, geom_ino_blk(s, c.file), 500);
	} else if (!strcmp(kind, "bad-pointer")) {
		load_ino(&c, c.img, &in);
		in.direct[1] = 0xffffffffffull;
		store_ino(&c, &in);
	} else if (!strcmp(kind, "double-alloc")) {
		load_ino(&c, c.img, &in);
		load_ino(&c, c.file, &in2);
		in2.direct[0] = in.direct[0];
		store_ino(&c, &in2);
	} else if (!strcmp(kind, "ptr-block")) {
		load_ino(&c, c.sparse, &in);
		flip(&c, geom_meta_blk(s, in.indirect[0] & PTR_BLOCK_MASK), 1000);
	} else if (!strcmp(kind, "dir-block")) {
		flip(&c, dir_block(&c, c.vm2), 700);
	} else if (!strcmp(kind, "leaked-block")) {
		rc_edit(&c, RC_FILE, first_free_file_block(&c), 1, 1);
	} else if (!strcmp(kind, "unmarked-block")) {
		load_ino(&c, c.img, &in);
		rc_edit(&c, RC_FILE, in.direct[2] & PTR_BLOCK_MASK, 0, 0);
	} else if (!strcmp(kind, "refcount")) {
		load_ino(&c, c.img, &in);
		rc_edit(&c, RC_FILE, in.direct[0] & PTR_BLOCK_MASK, 1, 2);
	} else if (!strcmp(kind, "inode-bitmap")) {
		rc_edit(&c, RC_INODE, c.vmx, 0, 0);
	} else if (!strcmp(kind, "dirent-free-inode")) {
		dirent_retarget(&c, c.vm1, "hard", geom_ninodes(s) - 1);
	} else if (!strcmp(kind, "nlink")) {
		load_ino(&c, c.img, &in);
		in.nlink = 5;
		store_ino(&c, &in);
	} else if (!strcmp(kind, "orphan")) {
		dirent_retarget(&c, c.vm2, "file", 0);
	} else if (!strcmp(kind, "nblocks")) {
		load_ino(&c, c.img, &in);
		in.nblocks = 77;
		store_ino(&c, &in);
	} else if (!strcmp(kind, "xattr-block")) {
		load_ino(&c, c.file, &in);
		if (!in.xattr_blk)
			die("xattr block", -ENOENT);
		flip(&c, geom_meta_blk(s, in.xattr_blk), 2000);
	} else {
		fprintf(stderr, "fsimg: unknown corruption '%s' (fsimg kinds lists them)\n", kind);
		dev_close(c.d);
		return 2;
	}
	dev_flush(c.d);
	dev_close(c.d);
	return 0;
}

/* Mounts (read-write), reads every file in the tree to the end. */
static int walk_read(struct lunfs_vol *v, uint64_t dir, int depth);

struct ents {
	char name[64][256];
	uint64_t ino[64];
	int n;
};

static int take(void *arg, const char *name, uint64_t ino, uint32_t type, uint64_t next)
{
	struct ents *e = arg;
	(void)type;
	(void)next;
	if (e->n < 64 && strcmp(name, ".") && strcmp(name, "..")) {
		snprintf(e->name[e->n], 256, "%s", name);
		e->ino[e->n++] = ino;
	}
	return 0;
}

static int walk_read(struct lunfs_vol *v, uint64_t dir, int depth)
{
	struct ents *e = calloc(1, sizeof(*e));
	int r = lunfs_readdir(v, dir, 0, take, e);
	for (int i = 0; !r && i < e->n; i++) {
		struct lunfs_stat st;
		if ((r = lunfs_getattr(v, e->ino[i], &st)))
			break;
		if (S_ISDIR(st.mode) && depth < 8) {
			r = walk_read(v, e->ino[i], depth + 1);
		} else if (S_ISREG(st.mode)) {
			struct lunfs_file *f;
			char *b = malloc(1 << 20);
			if (!(r = lunfs_open(v, e->ino[i], LUNFS_OPEN_READ, &f))) {
				for (uint64_t off = 0; off < st.size && r >= 0; off += 1 << 20)
					r = lunfs_pread(f, b, 1 << 20, off) < 0 ? -EIO : 0;
				lunfs_close(f);
			}
			free(b);
		}
	}
	free(e);
	return r;
}

static int check(const char *path)
{
	struct lunfs_mount_opts mo = {.host = "verify"};
	struct lunfs_vol *v;
	const char *msg;
	int r = lunfs_mount(path, &mo, &v, &msg);
	if (r) {
		fprintf(stderr, "fsimg: mount: %s\n", msg ? msg : lunfs_strerror(r));
		return 1;
	}
	r = walk_read(v, 1, 0);
	int e = lunfs_unmount(v);
	if (r || e) {
		fprintf(stderr, "fsimg: reading the tree: %s\n", lunfs_strerror(r ? r : e));
		return 1;
	}
	return 0;
}

int main(int argc, char **argv)
{
	if (argc == 3 && !strcmp(argv[1], "check"))
		return check(argv[2]);
	if (argc == 2 && !strcmp(argv[1], "kinds")) {
		for (int i = 0; kinds[i]; i++)
			puts(kinds[i]);
		return 0;
	}
	if (argc == 3 && !strcmp(argv[1], "make"))
		return make(argv[2]);
	if (argc == 4 && !strcmp(argv[1], "corrupt"))
		return corrupt(argv[2], argv[3]);
	fprintf(stderr, "usage: fsimg make IMAGE | fsimg corrupt IMAGE KIND | fsimg check IMAGE | fsimg kinds\n");
	return 2;
}
