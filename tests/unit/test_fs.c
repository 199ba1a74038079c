/* The core library through its public API (fs/lunfs.h). */
#include <dirent.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include "tests/unit/tu.h"
#include "fs/lunfs.h"
#include "fs/lunfs_test.h"
#include "format/format.h"
#include "format/geom.h"
#include "journal/jnl.h"
#include "lock/lk.h"
#include "util/clock.h"

#define MiB (1024 * 1024)

static struct lunfs_vol *mnt(const char *path, const char *host)
{
	struct lunfs_mount_opts o = {.host = host, .linger_ms = 200};
	struct lunfs_vol *v;
	const char *msg;
	int r = lunfs_mount(path, &o, &v, &msg);
	ck_assert_msg(r == 0, "mount %s: %s", path, msg ? msg : lunfs_strerror(r));
	return v;
}

static uint64_t mkfile(struct lunfs_vol *v, uint64_t dir, const char *name)
{
	struct lunfs_stat st;
	int r = lunfs_mknod(v, dir, name, S_IFREG | 0644, 0, NULL, &st);
	ck_assert_msg(r == 0, "create %s: %s", name, lunfs_strerror(r));
	return st.ino;
}

/* A fresh 256 MiB volume (*path) on the faulty device (*d), mounted as h1
 * with a long linger (its locks stay cached). */
static struct lunfs_vol *mnt_faulty(char **path, struct dev **d)
{
	struct lunfs_sb sb;
	*path = tu_volume(256 << 20, &sb);
	ck_assert_int_eq(dev_faulty_wrap(tu_open(*path), d), 0);
	struct lunfs_mount_opts o = {.host = "h1", .linger_ms = 60000};
	struct lunfs_test_opts to = {.device = *d};
	struct lunfs_vol *v;
	ck_assert_int_eq(lunfs_mount_test(NULL, &o, &to, &v, NULL), 0);
	return v;
}

/* Unmounts v, checks its image p with fsck -n, and removes p. */
static void unmount_fsck_remove(struct lunfs_vol *v, char *p)
{
	ck_assert_int_eq(lunfs_unmount(v), 0);
	ck_assert_int_eq(tu_fsck(p), 0);
	unlink(p);
	free(p);
}

/* Waits up to 5 s until the device under v has counted n more reads (reads)
 * or writes than in s0: a thread that reached a frozen device is counted
 * there.  Returns whether it did. */
static int wait_dev_io(struct lunfs_vol *v, const struct dev_stats *s0, int reads, uint64_t n)
{
	for (int ms = 0; ms < 5000; ms += 10) {
		struct dev_stats s;
		lunfs_dev_stats(v, &s);
		if ((reads ? s.reads - s0->reads : s.writes - s0->writes) >= n)
			return 1;
		usleep(10 * 1000);
	}
	return 0;
}

struct names {
	char n[64][64];
	uint64_t next[64];
	int count;
};

static int add_name(void *arg, const char *name, uint64_t ino, uint32_t type, uint64_t next)
{
	struct names *ns = arg;
	(void)ino;
	(void)type;
	if (ns->count < 64) {
		snprintf(ns->n[ns->count], 64, "%s", name);
		ns->next[ns->count] = next;
		ns->count++;
	}
	return 0;
}

static int has(struct names *ns, const char *name)
{
	for (int i = 0; i < ns->count; i++)
		if (!strcmp(ns->n[i], name))
			return 1;
	return 0;
}

START_TEST(namespace_ops)
{
	struct lunfs_sb sb;
	char *p = tu_volume(256 << 20, &sb);
	struct lunfs_vol *v = mnt(p, "h1");
	struct lunfs_stat st, st2;
	struct lunfs_cred c = {1000, 100};

	ck_assert_int_eq(lunfs_mkdir(v, 1, "vm1", 0755, &c, &st), 0);
	uint64_t vm1 = st.ino;
	ck_assert_uint_eq(st.uid, 1000);
	ck_assert_uint_eq(st.nlink, 2);
	ck_assert_int_eq(lunfs_getattr(v, 1, &st), 0);
	ck_assert_uint_eq(st.nlink, 3);
	ck_assert_int_eq(lunfs_mkdir(v, 1, "vm1", 0755, &c, &st), -EEXIST);
	uint64_t a = mkfile(v, vm1, "disk.img");
	ck_assert_int_eq(lunfs_lookup(v, vm1, "disk.img", &st), 0);
	ck_assert_uint_eq(st.ino, a);
	ck_assert_int_eq(lunfs_lookup(v, vm1, "nope", &st), -ENOENT);
	ck_assert_int_eq(lunfs_lookup(v, a, "x", &st), -ENOTDIR);
	char longname[300];
	memset(longname, 'x', 256);
	longname[256] = 0;
	ck_assert_int_eq(lunfs_mknod(v, vm1, longname, S_IFREG | 0644, 0, NULL, &st), -ENAMETOOLONG);
	longname[255] = 0;
	ck_assert_int_eq(lunfs_mknod(v, vm1, longname, S_IFREG | 0644, 0, NULL, &st), 0);
	ck_assert_int_eq(lunfs_unlink(v, vm1, longname), 0);

	/* setgid directory: group and bit inherited */
	struct lunfs_setattr sa = {.mode = 02775};
	ck_assert_int_eq(lunfs_setattr(v, vm1, LUNFS_SET_MODE, &sa, &st), 0);
	sa.gid = 555;
	ck_assert_int_eq(lunfs_setattr(v, vm1, LUNFS_SET_GID, &sa, &st), 0);
	struct lunfs_cred c2 = {7, 8};
	ck_assert_int_eq(lunfs_mkdir(v, vm1, "sub", 0755, &c2, &st), 0);
	ck_assert_uint_eq(st.gid, 555);
	ck_assert(st.mode & S_ISGID);
	ck_assert_int_eq(lunfs_mknod(v, vm1, "f2", S_IFREG | 0600, 0, &c2, &st), 0);
	ck_assert_uint_eq(st.gid, 555);
	ck_assert_uint_eq(st.uid, 7);

	/* hard links, nlink and ctime */
	ck_assert_int_eq(lunfs_link(v, a, 1, "alias", &st), 0);
	ck_assert_uint_eq(st.nlink, 2);
	ck_assert_int_eq(lunfs_link(v, vm1, 1, "dirlink", &st), -EPERM);
	ck_assert_int_eq(lunfs_unlink(v, 1, "alias"), 0);
	ck_assert_int_eq(lunfs_getattr(v, a, &st), 0);
	ck_assert_uint_eq(st.nlink, 1);

	/* symlinks */
	ck_assert_int_eq(lunfs_symlink(v, vm1, "link", "../target/path", NULL, &st), 0);
	char buf[64];
	ck_assert_int_eq(lunfs_readlink(v, st.ino, buf, sizeof(buf)), 14);
	ck_assert_str_eq(buf, "../target/path");
	ck_assert(S_ISLNK(st.mode));

	/* special files */
	ck_assert_int_eq(lunfs_mknod(v, vm1, "fifo", S_IFIFO | 0644, 0, NULL, &st), 0);
	ck_assert(S_ISFIFO(st.mode));
	ck_assert_int_eq(lunfs_mknod(v, vm1, "null", S_IFCHR | 0644, 0x0103, NULL, &st), 0);
	ck_assert_uint_eq(st.rdev, 0x0103);

	/* rename: plain, over an existing file, across directories */
	ck_assert_int_eq(lunfs_rename(v, vm1, "f2", vm1, "f3", 0), 0);
	ck_assert_int_eq(lunfs_lookup(v, vm1, "f2", &st), -ENOENT);
	ck_assert_int_eq(lunfs_lookup(v, vm1, "f3", &st), 0);
	uint64_t f3 = st.ino;
	ck_assert_int_eq(lunfs_rename(v, vm1, "f3", vm1, "disk.img", LUNFS_RENAME_NOREPLACE), -EEXIST);
	ck_assert_int_eq(lunfs_rename(v, vm1, "f3", vm1, "disk.img", 0), 0); /* replaces a */
	ck_assert_int_eq(lunfs_lookup(v, vm1, "disk.img", &st), 0);
	ck_assert_uint_eq(st.ino, f3);
	ck_assert_int_eq(lunfs_getattr(v, a, &st), -ENOENT); /* a was freed */
	ck_assert_int_eq(lunfs_rename(v, vm1, "sub", 1, "sub-moved", 0), 0);
	ck_assert_int_eq(lunfs_getattr(v, vm1, &st), 0);
	ck_assert_uint_eq(st.nlink, 2);
	ck_assert_int_eq(lunfs_lookup(v, 1, "sub-moved", &st), 0);
	uint64_t sub = st.ino;
	ck_assert_int_eq(lunfs_lookup(v, sub, "..", &st2), 0);
	ck_assert_uint_eq(st2.ino, 1);
	/* a directory may not move into itself */
	ck_assert_int_eq(lunfs_mkdir(v, sub, "deeper", 0755, NULL, &st), 0);
	ck_assert_int_eq(lunfs_rename(v, 1, "sub-moved", st.ino, "loop", 0), -EINVAL);
	/* exchange */
	mkfile(v, 1, "x1");
	ck_assert_int_eq(lunfs_rename(v, 1, "x1", vm1, "disk.img", LUNFS_RENAME_EXCHANGE), 0);
	ck_assert_int_eq(lunfs_lookup(v, 1, "x1", &st), 0);
	ck_assert_uint_eq(st.ino, f3);

	/* rmdir */
	ck_assert_int_eq(lunfs_rmdir(v, 1, "sub-moved"), -ENOTEMPTY);
	ck_assert_int_eq(lunfs_rmdir(v, sub, "deeper"), 0);
	ck_assert_int_eq(lunfs_rmdir(v, 1, "sub-moved"), 0);
	ck_assert_int_eq(lunfs_rmdir(v, 1, "x1"), -ENOTDIR);
	ck_assert_int_eq(lunfs_unlink(v, 1, "vm1"), -EISDIR);

	/* readdir with stable cookies while entries come and go */
	for (int i = 0; i < 40; i++) {
		char n[64];
		snprintf(n, sizeof(n), "file-%02d-with-a-longer-name", i);
		mkfile(v, vm1, n);
	}
	struct names ns = {0};
	ck_assert_int_eq(lunfs_readdir(v, vm1, 0, add_name, &ns), 0);
	ck_assert(has(&ns, ".") && has(&ns, "..") && has(&ns, "file-39-with-a-longer-name"));
	int total = ns.count;
	/* resume from the middle after deleting entries before it */
	uint64_t cookie = ns.next[20];
	ck_assert_int_eq(lunfs_unlink(v, vm1, "file-00-with-a-longer-name"), 0);
	struct names rest = {0};
	ck_assert_int_eq(lunfs_readdir(v, vm1, cookie, add_name, &rest), 0);
	ck_assert_int_eq(rest.count, total - 21);
	ck_assert_str_eq(rest.n[0], ns.n[21]);

	/* xattrs */
	ck_assert_int_eq(lunfs_setxattr(v, f3, "user.vm", "win10", 5, 0), 0);
	ck_assert_int_eq(lunfs_setxattr(v, f3, "user.vm", "x", 1, LUNFS_XATTR_CREATE), -EEXIST);
	ck_assert_int_eq(lunfs_setxattr(v, f3, "user.new", "x", 1, LUNFS_XATTR_REPLACE), -ENODATA);
	ck_assert_int_eq(lunfs_setxattr(v, f3, "user.vm", "linux", 5, LUNFS_XATTR_REPLACE), 0);
	ck_assert_int_eq(lunfs_getxattr(v, f3, "user.vm", NULL, 0), 5);
	ck_assert_int_eq(lunfs_getxattr(v, f3, "user.vm", buf, 2), -ERANGE);
	ck_assert_int_eq(lunfs_getxattr(v, f3, "user.vm", buf, sizeof(buf)), 5);
	ck_assert_int_eq(memcmp(buf, "linux", 5), 0);
	ck_assert_int_eq(lunfs_setxattr(v, f3, "user.b", "", 0, 0), 0);
	ck_assert_int_eq(lunfs_listxattr(v, f3, buf, sizeof(buf)), 15); /* user.vm, user.b */
	ck_assert_int_eq(lunfs_removexattr(v, f3, "user.vm"), 0);
	ck_assert_int_eq(lunfs_getxattr(v, f3, "user.vm", buf, sizeof(buf)), -ENODATA);
	char big[4000] = {0};
	ck_assert_int_eq(lunfs_setxattr(v, f3, "user.big", big, sizeof(big), 0), -E2BIG);
	ck_assert_int_eq(lunfs_setxattr(v, f3, "user.big", big, 2000, 0), 0); /* an xattr block */
	ck_assert_int_eq(lunfs_getxattr(v, f3, "user.big", NULL, 0), 2000);
	ck_assert_int_eq(lunfs_removexattr(v, f3, "user.big"), 0);

	/* times: explicit, now, omitted */
	struct lunfs_setattr ts = {.atime = {100, 5}, .mtime = {200, 6}};
	ck_assert_int_eq(lunfs_setattr(v, f3, LUNFS_SET_ATIME | LUNFS_SET_MTIME, &ts, &st), 0);
	ck_assert_int_eq(st.atime.tv_sec, 100);
	ck_assert_int_eq(st.mtime.tv_nsec, 6);
	ck_assert_int_eq(lunfs_setattr(v, f3, LUNFS_SET_MTIME_NOW, &ts, &st), 0);
	ck_assert_int_eq(st.atime.tv_sec, 100);
	ck_assert_int_gt(st.mtime.tv_sec, 1000000);

	ck_assert_int_eq(lunfs_unmount(v), 0);
	/* all of it survives a remount */
	v = mnt(p, "h1");
	ck_assert_int_eq(lunfs_lookup(v, vm1, "file-39-with-a-longer-name", &st), 0);
	ck_assert_int_eq(lunfs_lookup(v, 1, "x1", &st), 0);
	ck_assert_uint_eq(st.ino, f3);
	ck_assert_int_eq(lunfs_unmount(v), 0);
	unlink(p);
	free(p);
}
END_TEST

static void fill(uint8_t *b, size_t n, uint64_t seed)
{
	for (size_t i = 0; i < n; i++)
		b[i] = (uint8_t)((seed + i) * 2654435761u >> 13);
}

START_TEST(file_io)
{
	struct lunfs_sb sb;
	char *p = tu_volume(256 << 20, &sb);
	struct lunfs_vol *v = mnt(p, "h1");
	struct lunfs_statfs sf0, sf1;
	struct lunfs_stat st;
	struct lunfs_file *f;
	ck_assert_int_eq(lunfs_statfs(v, &sf0), 0);
	uint64_t ino = mkfile(v, 1, "thin.img");
	ck_assert_int_eq(lunfs_open(v, ino, LUNFS_OPEN_EXCL, &f), 0);
	uint8_t *w = malloc(3 * MiB), *r = malloc(3 * MiB);
	fill(w, 3 * MiB, 1);
	/* an unaligned write across a block boundary into a thin file */
	ck_assert_int_eq(lunfs_pwrite(f, w, 1000, MiB - 500), 1000);
	ck_assert_int_eq(lunfs_getattr(v, ino, &st), 0);
	ck_assert_uint_eq(st.size, MiB + 500);
	ck_assert_uint_eq(st.blocks, 2 * MiB / 512); /* two blocks allocated */
	memset(r, 0xee, 3 * MiB);
	ck_assert_int_eq(lunfs_pread(f, r, 3 * MiB, 0), MiB + 500);
	for (size_t i = 0; i < MiB - 500; i++)
		ck_assert_uint_eq(r[i], 0); /* the fresh block's head reads zero */
	ck_assert_int_eq(memcmp(r + MiB - 500, w, 1000), 0);
	/* a hole in the middle */
	ck_assert_int_eq(lunfs_pwrite(f, w, MiB, 10 * MiB), MiB);
	ck_assert_int_eq(lunfs_pread(f, r, MiB, 5 * MiB), MiB);
	ck_assert(lunfs_is_zero(r, MiB));
	ck_assert_int_eq(lunfs_pread(f, r, MiB, 10 * MiB), MiB);
	ck_assert_int_eq(memcmp(r, w, MiB), 0);
	/* overwrite in place */
	fill(w, MiB, 7);
	ck_assert_int_eq(lunfs_pwrite(f, w + 3, 4093, 10 * MiB + 3), 4093);
	ck_assert_int_eq(lunfs_pread(f, r, 4096, 10 * MiB), 4096);
	ck_assert_int_eq(memcmp(r + 3, w + 3, 4093), 0);
	/* truncate down to the middle of a block, then up: the tail reads zero */
	struct lunfs_setattr sa = {.size = 10 * MiB + 100};
	ck_assert_int_eq(lunfs_setattr(v, ino, LUNFS_SET_SIZE, &sa, &st), 0);
	sa.size = 12 * MiB;
	ck_assert_int_eq(lunfs_setattr(v, ino, LUNFS_SET_SIZE, &sa, &st), 0);
	ck_assert_int_eq(lunfs_pread(f, r, 4096, 10 * MiB), 4096);
	ck_assert_int_eq(memcmp(r + 3, w + 3, 97), 0);
	ck_assert(lunfs_is_zero(r + 100, 4096 - 100));
	ck_assert_int_eq(lunfs_fsync(f), 0);
	ck_assert_int_eq(lunfs_close(f), 0);
	/* delete: the space comes back */
	ck_assert_int_eq(lunfs_unlink(v, 1, "thin.img"), 0);
	ck_assert_int_eq(lunfs_statfs(v, &sf1), 0);
	ck_assert_uint_eq(sf1.bfree, sf0.bfree);
	ck_assert_uint_eq(sf1.ffree, sf0.ffree);
	free(w);
	free(r);
	ck_assert_int_eq(lunfs_unmount(v), 0);
	unlink(p);
	free(p);
}
END_TEST

START_TEST(thick_and_zeroing)
{
	struct lunfs_sb sb;
	char *p = tu_image(256 << 20);
	/* stale data on the device where file blocks will land */
	struct dev *d = tu_open(p);
	uint8_t *junk = dev_alloc(MiB);
	memset(junk, 0xab, MiB);
	for (uint64_t off = 0; off + MiB <= 256ull << 20; off += MiB)
		dev_write(d, off, junk, MiB);
	struct lunfs_mkfs_opts o = {.max_hosts = 8, .jnl_size = 1 << 20, .lease_ms = 2400, .hb_ms = 200};
	char err[200];
	ck_assert_int_eq(lunfs_geom_compute(&o, dev_size(d), dev_lbs(d), &sb, err, sizeof(err)), 0);
	lunfs_uuid_gen(sb.uuid);
	ck_assert_int_eq(lunfs_format(d, &sb), 0);
	dev_close(d);
	struct lunfs_vol *v = mnt(p, "h1");
	struct lunfs_file *f;
	struct lunfs_stat st;
	uint64_t ino = mkfile(v, 1, "thick.img");
	ck_assert_int_eq(lunfs_open(v, ino, LUNFS_OPEN_EXCL, &f), 0);
	ck_assert_int_eq(lunfs_fallocate(f, 0, 0, 8 * MiB), 0);
	ck_assert_int_eq(lunfs_getattr(v, ino, &st), 0);
	ck_assert_uint_eq(st.size, 8 * MiB);
	ck_assert_uint_eq(st.blocks, 8 * MiB / 512);
	ck_assert(st.flags & LUNFS_F_THICK);
	uint8_t *r = malloc(8 * MiB);
	ck_assert_int_eq(lunfs_pread(f, r, 8 * MiB, 0), 8 * MiB);
	ck_assert(lunfs_is_zero(r, 8 * MiB)); /* to-be-zeroed: never the stale 0xab */
	/* a small write into a to-be-zeroed block: the rest stays zero */
	ck_assert_int_eq(lunfs_pwrite(f, "hello", 5, 3 * MiB + 77), 5);
	ck_assert_int_eq(lunfs_pread(f, r, MiB, 3 * MiB), MiB);
	ck_assert_int_eq(memcmp(r + 77, "hello", 5), 0);
	r[77] = 0;
	memset(r + 77, 0, 5);
	ck_assert(lunfs_is_zero(r, MiB));
	/* eager-zeroed, keep size */
	ck_assert_int_eq(lunfs_fallocate(f, LUNFS_FALLOC_ZERO | LUNFS_FALLOC_KEEP_SIZE, 8 * MiB, 2 * MiB), 0);
	ck_assert_int_eq(lunfs_getattr(v, ino, &st), 0);
	ck_assert_uint_eq(st.size, 8 * MiB);
	ck_assert(st.flags & LUNFS_F_EZT);
	/* punch a hole: reads zero, space freed */
	ck_assert_int_eq(lunfs_pwrite(f, junk, MiB, 5 * MiB), MiB);
	ck_assert_int_eq(lunfs_fallocate(f, LUNFS_FALLOC_PUNCH | LUNFS_FALLOC_KEEP_SIZE, 5 * MiB, MiB), 0);
	ck_assert_int_eq(lunfs_pread(f, r, MiB, 5 * MiB), MiB);
	ck_assert(lunfs_is_zero(r, MiB));
	ck_assert_int_eq(lunfs_getattr(v, ino, &st), 0);
	ck_assert_uint_eq(st.blocks, 9 * MiB / 512);
	ck_assert_int_eq(lunfs_fallocate(f, LUNFS_FALLOC_PUNCH, 0, MiB), -EOPNOTSUPP);
	/* zero a range: written blocks become to-be-zeroed, the space stays */
	ck_assert_int_eq(lunfs_pwrite(f, junk, MiB, 6 * MiB), MiB);
	ck_assert_int_eq(lunfs_fallocate(f, LUNFS_FALLOC_ZERO_RANGE, 6 * MiB - 10, MiB + 20), 0);
	ck_assert_int_eq(lunfs_pread(f, r, 2 * MiB, 5 * MiB), 2 * MiB);
	ck_assert(lunfs_is_zero(r, 2 * MiB));
	ck_assert_int_eq(lunfs_getattr(v, ino, &st), 0);
	ck_assert_uint_eq(st.blocks, 10 * MiB / 512); /* the hole at 5 MiB was filled */
	ck_assert_uint_eq(st.size, 8 * MiB);
	ck_assert_int_eq(lunfs_fallocate(f, LUNFS_FALLOC_ZERO_RANGE | LUNFS_FALLOC_KEEP_SIZE, 9 * MiB, MiB), 0);
	ck_assert_int_eq(lunfs_getattr(v, ino, &st), 0);
	ck_assert_uint_eq(st.size, 8 * MiB);
	ck_assert_int_eq(lunfs_fallocate(f, LUNFS_FALLOC_ZERO_RANGE, 9 * MiB, MiB + 1), 0);
	ck_assert_int_eq(lunfs_getattr(v, ino, &st), 0);
	ck_assert_uint_eq(st.size, 10 * MiB + 1);
	ck_assert_int_eq(lunfs_fallocate(f, LUNFS_FALLOC_ZERO_RANGE | LUNFS_FALLOC_PUNCH, 0, MiB), -EINVAL);
	ck_assert_int_eq(lunfs_close(f), 0);
	free(r);
	free(junk);
	ck_assert_int_eq(lunfs_unmount(v), 0);
	unlink(p);
	free(p);
}
END_TEST

START_TEST(open_modes)
{
	struct lunfs_sb sb;
	char *p = tu_volume(256 << 20, &sb);
	struct lunfs_vol *v = mnt(p, "h1");
	struct lunfs_file *a, *b, *c;
	uint64_t ino = mkfile(v, 1, "vm.img");
	/* exclusive: a second open in the same process is refused */
	ck_assert_int_eq(lunfs_open(v, ino, LUNFS_OPEN_EXCL, &a), 0);
	ck_assert_int_eq(lunfs_open(v, ino, LUNFS_OPEN_EXCL, &b), -EBUSY);
	ck_assert_int_eq(lunfs_open(v, ino, LUNFS_OPEN_RW, &b), -EBUSY);
	ck_assert_int_eq(lunfs_close(a), 0);
	/* RW opens share this host */
	ck_assert_int_eq(lunfs_open(v, ino, LUNFS_OPEN_RW, &a), 0);
	ck_assert_int_eq(lunfs_open(v, ino, LUNFS_OPEN_RW, &b), 0);
	ck_assert_int_eq(lunfs_open(v, ino, LUNFS_OPEN_EXCL, &c), -EBUSY);
	ck_assert_int_eq(lunfs_open(v, ino, LUNFS_OPEN_MULTI, &c), -EBUSY);
	ck_assert_int_eq(lunfs_close(a), 0);
	ck_assert_int_eq(lunfs_close(b), 0);
	/* multi-writer needs a fully allocated, zeroed file */
	ck_assert_int_eq(lunfs_open(v, ino, LUNFS_OPEN_EXCL, &a), 0);
	ck_assert_int_eq(lunfs_pwrite(a, "x", 1, 2 * MiB), 1); /* blocks 0, 1 are holes */
	ck_assert_int_eq(lunfs_close(a), 0);
	ck_assert_int_eq(lunfs_open(v, ino, LUNFS_OPEN_MULTI, &a), -EINVAL);
	ck_assert_int_eq(lunfs_open(v, ino, LUNFS_OPEN_EXCL, &a), 0);
	ck_assert_int_eq(lunfs_fallocate(a, LUNFS_FALLOC_ZERO, 0, 4 * MiB), 0);
	ck_assert_int_eq(lunfs_close(a), 0);
	ck_assert_int_eq(lunfs_open(v, ino, LUNFS_OPEN_MULTI, &a), 0);
	ck_assert_int_eq(lunfs_open(v, ino, LUNFS_OPEN_MULTI, &b), 0);
	ck_assert_int_eq(lunfs_pwrite(a, "abc", 3, 100), 3);
	ck_assert_int_eq(lunfs_pwrite(b, "abc", 3, 5 * MiB), -EPERM); /* no growth */
	ck_assert_int_eq(lunfs_close(a), 0);
	ck_assert_int_eq(lunfs_close(b), 0);

	/* another host (another process) cannot open it while we hold it */
	ck_assert_int_eq(lunfs_open(v, ino, LUNFS_OPEN_EXCL, &a), 0);
	pid_t pid = fork();
	if (pid == 0) {
		struct lunfs_mount_opts o = {.host = "h2", .linger_ms = 200};
		struct lunfs_vol *v2;
		struct lunfs_file *x;
		if (lunfs_mount(p, &o, &v2, NULL))
			_exit(10);
		int r1 = lunfs_open(v2, ino, LUNFS_OPEN_EXCL, &x);
		int r2 = lunfs_open(v2, ino, LUNFS_OPEN_SHARED_RO, &x);
		lunfs_unmount(v2);
		_exit(r1 == -EBUSY && r2 == -EBUSY ? 0 : 11);
	}
	int status;
	waitpid(pid, &status, 0);
	ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0, "child: %d", WEXITSTATUS(status));
	ck_assert_int_eq(lunfs_close(a), 0);
	/* shared read-only from two hosts at once */
	ck_assert_int_eq(lunfs_open(v, ino, LUNFS_OPEN_SHARED_RO, &a), 0);
	pid = fork();
	if (pid == 0) {
		struct lunfs_mount_opts o = {.host = "h2", .linger_ms = 200};
		struct lunfs_vol *v2;
		struct lunfs_file *x;
		char c3[3];
		if (lunfs_mount(p, &o, &v2, NULL))
			_exit(10);
		int r1 = lunfs_open(v2, ino, LUNFS_OPEN_SHARED_RO, &x);
		int r2 = r1 ? r1 : (int)lunfs_pread(x, c3, 3, 100);
		if (!r1)
			lunfs_close(x);
		lunfs_unmount(v2);
		_exit(r1 == 0 && r2 == 3 && !memcmp(c3, "abc", 3) ? 0 : 12);
	}
	waitpid(pid, &status, 0);
	ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0, "child: %d", WEXITSTATUS(status));
	ck_assert_int_eq(lunfs_close(a), 0);
	ck_assert_int_eq(lunfs_unmount(v), 0);
	unlink(p);
	free(p);
}
END_TEST

/* The lock record of inode ino, read from the image. */
static struct lunfs_lock ino_lock_rec(const char *p, const struct lunfs_sb *sb, uint64_t ino)
{
	struct lunfs_lock rec;
	struct dev *d = tu_open(p);
	ck_assert_int_eq(lk_read(d, sb->uuid, geom_ino_lock(sb, ino), &rec), 0);
	dev_close(d);
	return rec;
}

struct late_close {
	struct lunfs_file *f;
	unsigned ms;
	int r;
};

static void *close_later(void *arg)
{
	struct late_close *c = arg;
	usleep(c->ms * 1000);
	c->r = lunfs_close(c->f);
	return NULL;
}

/* QEMU's live migration without a handoff (LOCKING.md 10.14), through the
 * library, two mounts of one image as two hosts: the source keeps a
 * read-only handle after its read-write one closed, and that close lets go
 * of the lock; the destination's read-write open waits for an open pin of
 * the source up to open_wait_ms, and is refused after it when the pin
 * stays (a second VM). */
START_TEST(migration_open_modes)
{
	struct lunfs_sb sb;
	char *p = tu_volume(256 << 20, &sb);
	struct lunfs_mount_opts oa = {.host = "src", .linger_ms = 200};
	struct lunfs_mount_opts ob = {.host = "dst", .linger_ms = 200, .open_wait_ms = 1500};
	struct lunfs_vol *a, *b;
	ck_assert_int_eq(lunfs_mount(p, &oa, &a, NULL), 0);
	ck_assert_int_eq(lunfs_mount(p, &ob, &b, NULL), 0);
	uint64_t ino = mkfile(a, 1, "disk.img");
	struct lunfs_file *arw, *aro, *brd, *brw, *x;
	char rd[8];
	/* B sees the file once A checkpoints its creation */
	uint64_t t0 = lunfs_now_ms();
	int r;
	while ((r = lunfs_open(b, ino, LUNFS_OPEN_READ, &brd)) == -ENOENT && lunfs_now_ms() - t0 < 5000)
		usleep(20000);
	ck_assert_int_eq(r, 0);
	/* A runs the VM: RW, and a read-only handle beside it */
	ck_assert_int_eq(lunfs_open(a, ino, LUNFS_OPEN_RW, &arw), 0);
	ck_assert_int_eq(lunfs_pwrite(arw, "hello", 5, 0), 5);
	ck_assert_int_eq(lunfs_open(a, ino, LUNFS_OPEN_SHARED_RO, &aro), 0);
	/* B's incoming QEMU has its READ handle (brd); a SHARED_RO open does
	 * not wait (refused at once; FUSE then opens READ) */
	t0 = lunfs_now_ms();
	ck_assert_int_eq(lunfs_open(b, ino, LUNFS_OPEN_SHARED_RO, &x), -EBUSY);
	ck_assert_uint_lt(lunfs_now_ms() - t0, 500);
	/* a second VM on B while A's writer stays: EBUSY after the wait */
	t0 = lunfs_now_ms();
	ck_assert_int_eq(lunfs_open(b, ino, LUNFS_OPEN_RW, &x), -EBUSY);
	uint64_t waited = lunfs_now_ms() - t0, refused = waited;
	ck_assert_uint_ge(waited, 1500);
	ck_assert_uint_lt(waited, 4000);
	ck_assert_int_eq(lunfs_open(b, ino, LUNFS_OPEN_EXCL, &x), -EBUSY);
	/* LUNFS_OPEN_NOWAIT (O_NONBLOCK through FUSE): refused at once */
	t0 = lunfs_now_ms();
	ck_assert_int_eq(lunfs_open(b, ino, LUNFS_OPEN_RW | LUNFS_OPEN_NOWAIT, &x), -EBUSY);
	ck_assert_uint_lt(lunfs_now_ms() - t0, 500);
	/* the switchover: A closes RW, keeps its read-only handle, and lets go */
	struct lunfs_lock rec = ino_lock_rec(p, &sb, ino);
	ck_assert_uint_eq(rec.mode, LK_EXCLUSIVE);
	ck_assert_int_eq(lunfs_close(arw), 0);
	rec = ino_lock_rec(p, &sb, ino);
	ck_assert_uint_eq(rec.nholders, 0);
	ck_assert_uint_eq(rec.mode, LK_FREE);
	/* B takes it at once, while A's read-only handle stays open */
	t0 = lunfs_now_ms();
	ck_assert_int_eq(lunfs_open(b, ino, LUNFS_OPEN_RW, &brw), 0);
	uint64_t took = lunfs_now_ms() - t0;
	ck_assert_uint_lt(took, 500);
	rec = ino_lock_rec(p, &sb, ino);
	ck_assert_uint_eq(rec.mode, LK_EXCLUSIVE);
	ck_assert_uint_eq(rec.nholders, 1);
	ck_assert_uint_eq(rec.holders[0].flags & LK_HOLD_OPEN, LK_HOLD_OPEN);
	ck_assert_int_eq(lunfs_pread(brw, rd, 5, 0), 5); /* A's write is home */
	ck_assert_int_eq(memcmp(rd, "hello", 5), 0);
	ck_assert_int_eq(lunfs_pwrite(brw, "world", 5, 0), 5);
	ck_assert_int_eq(lunfs_pwrite(brw, "later", 5, 3 * MiB), 5); /* a hole filled */
	ck_assert_int_eq(lunfs_fsync(brw), 0);
	/* A's remaining handle reads without a lock: B's data, no stale cache */
	ck_assert_int_eq(lunfs_pread(aro, rd, 5, 0), 5);
	ck_assert_int_eq(memcmp(rd, "world", 5), 0);
	ck_assert_int_lt(lunfs_pwrite(aro, "x", 1, 0), 0);
	/* A can no longer write (a rollback would be refused while B runs) */
	ck_assert_int_eq(lunfs_open(a, ino, LUNFS_OPEN_RW, &x), -EBUSY);
	ck_assert_int_eq(lunfs_open(a, ino, LUNFS_OPEN_SHARED_RO, &x), -EBUSY);
	ck_assert_int_eq(lunfs_close(brd), 0);
	ck_assert_int_eq(lunfs_close(brw), 0); /* releases: B's map is home */
	ck_assert_int_eq(lunfs_pread(aro, rd, 5, 3 * MiB), 5);
	ck_assert_int_eq(memcmp(rd, "later", 5), 0);
	/* the pin goes while B waits: B gets it within the wait */
	ck_assert_int_eq(lunfs_open(a, ino, LUNFS_OPEN_RW, &arw), 0);
	struct late_close lc = {arw, 300, -1};
	pthread_t th;
	ck_assert_int_eq(pthread_create(&th, NULL, close_later, &lc), 0);
	t0 = lunfs_now_ms();
	ck_assert_int_eq(lunfs_open(b, ino, LUNFS_OPEN_RW, &brw), 0);
	waited = lunfs_now_ms() - t0;
	pthread_join(th, NULL);
	ck_assert_int_eq(lc.r, 0);
	ck_assert_uint_ge(waited, 250);
	ck_assert_uint_lt(waited, 1500);
	printf("migration_open_modes: RW open against a pin that stays: EBUSY after %llu ms (wait 1500); "
	       "after the source's RW close (RO kept): opened in %llu ms; against a pin closed after "
	       "300 ms: opened after %llu ms\n",
	       (unsigned long long)refused, (unsigned long long)took, (unsigned long long)waited);
	/* A's last close (its read-only handle) releases nothing of B's */
	ck_assert_int_eq(lunfs_close(aro), 0);
	rec = ino_lock_rec(p, &sb, ino);
	ck_assert_uint_eq(rec.mode, LK_EXCLUSIVE);
	ck_assert_uint_eq(rec.nholders, 1);
	ck_assert_int_eq(lunfs_close(brw), 0);
	ck_assert_int_eq(lunfs_unmount(b), 0);
	ck_assert_int_eq(lunfs_unmount(a), 0);
	unlink(p);
	free(p);
}
END_TEST

START_TEST(crash_replay_and_orphans)
{
	struct lunfs_sb sb;
	char *p = tu_volume(256 << 20, &sb);
	struct lunfs_vol *v = mnt(p, "h1");
	struct lunfs_file *f;
	struct lunfs_statfs sf0, sf1;
	ck_assert_int_eq(lunfs_statfs(v, &sf0), 0);
	uint64_t ino = mkfile(v, 1, "a");
	ck_assert_int_eq(lunfs_open(v, ino, LUNFS_OPEN_EXCL, &f), 0);
	ck_assert_int_eq(lunfs_pwrite(f, "durable", 7, 0), 7);
	ck_assert_int_eq(lunfs_fsync(f), 0);
	/* unlinked while open: readable until close */
	uint64_t tmp = mkfile(v, 1, "tmp");
	struct lunfs_file *t;
	ck_assert_int_eq(lunfs_open(v, tmp, LUNFS_OPEN_EXCL, &t), 0);
	ck_assert_int_eq(lunfs_pwrite(t, "gone soon", 9, 0), 9);
	ck_assert_int_eq(lunfs_unlink(v, 1, "tmp"), 0);
	char buf[16];
	ck_assert_int_eq(lunfs_pread(t, buf, 16, 0), 9);
	/* directories replaced (rename over) or removed while open: alive
	 * until the last close, or until the orphan pass after a crash */
	struct lunfs_stat ds;
	struct lunfs_file *d1, *d2;
	ck_assert_int_eq(lunfs_mkdir(v, 1, "dv", 0755, NULL, &ds), 0);
	uint64_t dv = ds.ino;
	ck_assert_int_eq(lunfs_mkdir(v, 1, "dn", 0755, NULL, &ds), 0);
	ck_assert_int_eq(lunfs_opendir(v, dv, &d1), 0);
	ck_assert_int_eq(lunfs_opendir(v, mkfile(v, 1, "notdir"), &d2), -ENOTDIR);
	ck_assert_int_eq(lunfs_rename(v, 1, "dn", 1, "dv", 0), 0);
	ck_assert_int_eq(lunfs_getattr(v, dv, &ds), 0);
	ck_assert_uint_eq(ds.nlink, 0);
	ck_assert_int_eq(lunfs_close(d1), 0);
	ck_assert_int_eq(lunfs_getattr(v, dv, &ds), -ENOENT);
	ck_assert_int_eq(lunfs_unlink(v, 1, "notdir"), 0);
	ck_assert_int_eq(lunfs_lookup(v, 1, "dv", &ds), 0);
	ck_assert_int_eq(lunfs_opendir(v, ds.ino, &d1), 0);
	ck_assert_int_eq(lunfs_rmdir(v, 1, "dv"), 0);
	ck_assert_int_eq(lunfs_getattr(v, ds.ino, &ds), 0);
	/* crash with all three open */
	lunfs_abandon(v);
	free(f);
	free(t);
	free(d1);
	v = mnt(p, "h1"); /* waits out the lease, replays, frees the orphan */
	struct lunfs_stat st;
	ck_assert_int_eq(lunfs_lookup(v, 1, "a", &st), 0);
	ck_assert_int_eq(lunfs_open(v, st.ino, LUNFS_OPEN_READ, &f), 0);
	ck_assert_int_eq(lunfs_pread(f, buf, 16, 0), 7);
	ck_assert_int_eq(memcmp(buf, "durable", 7), 0);
	ck_assert_int_eq(lunfs_close(f), 0);
	ck_assert_int_eq(lunfs_getattr(v, tmp, &st), -ENOENT);
	ck_assert_int_eq(lunfs_unlink(v, 1, "a"), 0);
	ck_assert_int_eq(lunfs_statfs(v, &sf1), 0);
	ck_assert_uint_eq(sf1.bfree, sf0.bfree);
	ck_assert_uint_eq(sf1.ffree, sf0.ffree);
	ck_assert_int_eq(lunfs_unmount(v), 0);
	unlink(p);
	free(p);
}
END_TEST

/* Writes near the end of a 64 TiB sparse file on a sparse 64 TiB+ image.
 * The image lives on /dev/shm (tmpfs): ext4 caps files at 16 TiB. */
START_TEST(file_64t)
{
	const char *p = "/dev/shm/lunfs-unit-64t.img";
	int fd = open(p, O_CREAT | O_TRUNC | O_RDWR, 0600);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(ftruncate(fd, 80ull << 40), 0);
	close(fd);
	struct dev *d = tu_open(p);
	struct lunfs_mkfs_opts o = {.max_hosts = 8, .jnl_size = 4 << 20};
	struct lunfs_sb sb;
	char err[200];
	ck_assert_int_eq(lunfs_geom_compute(&o, dev_size(d), dev_lbs(d), &sb, err, sizeof(err)), 0);
	lunfs_uuid_gen(sb.uuid);
	ck_assert_int_eq(lunfs_format(d, &sb), 0);
	dev_close(d);
	struct lunfs_vol *v = mnt(p, "h1");
	struct lunfs_file *f;
	uint64_t ino = mkfile(v, 1, "huge.img");
	ck_assert_int_eq(lunfs_open(v, ino, LUNFS_OPEN_EXCL, &f), 0);
	uint64_t end = 64ull << 40;
	ck_assert_int_eq(lunfs_pwrite(f, "the end", 7, end - 7), 7);
	ck_assert_int_eq(lunfs_pwrite(f, "x", 1, end), -EFBIG * 0 + 1); /* 64 TiB is not the limit */
	char buf[8] = {0};
	ck_assert_int_eq(lunfs_pread(f, buf, 7, end - 7), 7);
	ck_assert_int_eq(memcmp(buf, "the end", 7), 0);
	ck_assert_int_eq(lunfs_pread(f, buf, 7, end / 2), 7);
	ck_assert(lunfs_is_zero(buf, 7));
	struct lunfs_stat st;
	ck_assert_int_eq(lunfs_getattr(v, ino, &st), 0);
	ck_assert_uint_eq(st.size, end + 1);
	ck_assert_uint_eq(st.blocks, 2 * MiB / 512);
	ck_assert_int_eq(lunfs_close(f), 0);
	ck_assert_int_eq(lunfs_unlink(v, 1, "huge.img"), 0);
	ck_assert_int_eq(lunfs_unmount(v), 0);
	unlink(p);
}
END_TEST

/* One call that allocates and frees blocks in many clusters (many locks). */
START_TEST(big_alloc_and_free)
{
	char *p = tu_image(1ull << 30);
	struct dev *d = tu_open(p);
	struct lunfs_mkfs_opts o = {.max_hosts = 64, .jnl_size = 1 << 20, .lease_ms = 2400, .hb_ms = 200};
	struct lunfs_sb sb;
	char err[200];
	ck_assert_int_eq(lunfs_geom_compute(&o, dev_size(d), dev_lbs(d), &sb, err, sizeof(err)), 0);
	lunfs_uuid_gen(sb.uuid);
	ck_assert_int_eq(lunfs_format(d, &sb), 0);
	dev_close(d);
	ck_assert_uint_le(sb.fc_blocks, 8);
	struct lunfs_vol *v = mnt(p, "h1");
	struct lunfs_statfs s0, s1;
	struct lunfs_file *f;
	ck_assert_int_eq(lunfs_statfs(v, &s0), 0);
	uint64_t ino = mkfile(v, 1, "big");
	ck_assert_int_eq(lunfs_open(v, ino, LUNFS_OPEN_EXCL, &f), 0);
	ck_assert_int_eq(lunfs_fallocate(f, 0, 0, 600 * MiB), 0); /* ~75 clusters */
	ck_assert_int_eq(lunfs_statfs(v, &s1), 0);
	ck_assert_uint_eq(s1.bfree, s0.bfree - 600);
	ck_assert_int_eq(lunfs_close(f), 0);
	ck_assert_int_eq(lunfs_unlink(v, 1, "big"), 0);
	ck_assert_int_eq(lunfs_statfs(v, &s1), 0);
	ck_assert_uint_eq(s1.bfree, s0.bfree);
	ck_assert_int_eq(lunfs_unmount(v), 0);
	unlink(p);
	free(p);
}
END_TEST

/* fsck.lunfs -n over path, when the tools are built; 0 = clean. */
static int fsck_n(const char *path)
{
	char cmd[512];
	if (access("build/bin/fsck.lunfs", X_OK))
		return 0;
	snprintf(cmd, sizeof(cmd), "build/bin/fsck.lunfs -n '%s' >/dev/null 2>&1", path);
	return system(cmd);
}

/* Online grow: refused while the device did not grow; after truncate +N a
 * grow makes a mounted host's statfs and allocator see the new space at
 * once, a file larger than the old free space fits, the volume remounts
 * with the new size, and fsck finds it clean. */
START_TEST(online_grow)
{
	struct lunfs_sb sb;
	char *p = tu_volume(256 << 20, &sb);
	struct lunfs_vol *v = mnt(p, "h1"), *g = mnt(p, "grower");
	struct lunfs_grow_info gi;
	struct lunfs_statfs s0, s1;
	struct lunfs_file *f;
	const char *msg;
	ck_assert_int_eq(lunfs_grow(g, 0, &gi, &msg), -EALREADY);
	ck_assert_int_eq(lunfs_grow(g, 4096, &gi, &msg), -EINVAL);
	ck_assert_int_eq(lunfs_statfs(v, &s0), 0);
	uint64_t ino = mkfile(v, 1, "vm.img");
	ck_assert_int_eq(lunfs_open(v, ino, LUNFS_OPEN_EXCL, &f), 0);
	/* fill the volume: nothing is left */
	ck_assert_int_eq(lunfs_fallocate(f, 0, 0, s0.bfree * (uint64_t)MiB), 0);
	ck_assert_int_eq(lunfs_fallocate(f, 0, s0.bfree * (uint64_t)MiB, MiB), -ENOSPC);
	ck_assert_int_eq(truncate(p, (512 << 20) + 12345), 0);
	ck_assert_int_eq(lunfs_grow(g, 64ull << 40, &gi, &msg), -EINVAL); /* beyond the device */
	ck_assert_int_eq(lunfs_grow(g, 0, &gi, &msg), 0);
	ck_assert_uint_eq(gi.old_size, 256 << 20);
	ck_assert_uint_eq(gi.new_size, (512 << 20) + 12288); /* rounded down to 4 KiB */
	ck_assert_uint_gt(gi.new_blocks, gi.old_blocks + 250);
	struct lunfs_grow_info gi2;
	ck_assert_int_eq(lunfs_grow(g, 0, &gi2, &msg), -EALREADY);
	ck_assert_int_eq(lunfs_unmount(g), 0);
	/* the live host sees it without a remount */
	ck_assert_int_eq(lunfs_statfs(v, &s1), 0);
	ck_assert_uint_eq(s1.blocks, gi.new_blocks - 1);
	ck_assert_uint_eq(s1.bfree, gi.new_blocks - gi.old_blocks);
	/* more than the old volume's free space, in the new clusters */
	uint64_t more = (s0.bfree + 10) * (uint64_t)MiB, at = s0.bfree * (uint64_t)MiB;
	ck_assert_int_eq(lunfs_fallocate(f, 0, at, more), 0);
	char buf[4096], back[4096];
	memset(buf, 0x5a, sizeof(buf));
	ck_assert_int_eq(lunfs_pwrite(f, buf, sizeof(buf), at + more - 4096), 4096);
	ck_assert_int_eq(lunfs_close(f), 0);
	ck_assert_int_eq(lunfs_unmount(v), 0);
	v = mnt(p, "h1");
	ck_assert_int_eq(lunfs_statfs(v, &s1), 0);
	ck_assert_uint_eq(s1.blocks, gi.new_blocks - 1);
	ck_assert_int_eq(lunfs_open(v, ino, LUNFS_OPEN_READ, &f), 0);
	ck_assert_int_eq(lunfs_pread(f, back, sizeof(back), at + more - 4096), 4096);
	ck_assert_int_eq(memcmp(buf, back, sizeof(buf)), 0);
	ck_assert_int_eq(lunfs_close(f), 0);
	ck_assert_int_eq(lunfs_unmount(v), 0);
	/* the backup superblock moved to the new end */
	struct dev *d = tu_open(p);
	struct lunfs_sb nsb;
	int used_backup;
	ck_assert_int_eq(lunfs_read_sb(d, &nsb, 0, &used_backup, &msg), 0);
	ck_assert_uint_eq(nsb.backup_off, (512 << 20) + 12288 - 4096);
	ck_assert_uint_eq(nsb.gen, sb.gen + 1);
	dev_close(d);
	ck_assert_int_eq(fsck_n(p), 0);
	unlink(p);
	free(p);
}
END_TEST

/* Hundreds of small xattrs on one file (as xfstests expects of a FUSE
 * filesystem: 1000): the inode's area, then a chain of xattr blocks, which
 * removals shrink and the file's deletion frees (fsck finds no leak). */
START_TEST(many_xattrs)
{
	struct lunfs_sb sb;
	char *p = tu_volume(256ull << 20, &sb);
	struct lunfs_vol *v = mnt(p, "h1");
	uint64_t ino = mkfile(v, 1, "x");
	char name[64], val[64], buf[64];
	static char list[64 * 1024];
	const int N = 1000;
	for (int i = 0; i < N; i++) {
		snprintf(name, sizeof(name), "user.attribute_%03d", i);
		snprintf(val, sizeof(val), "value_%03d", i);
		int r = lunfs_setxattr(v, ino, name, val, strlen(val), LUNFS_XATTR_CREATE);
		ck_assert_msg(r == 0, "set %s: %s", name, lunfs_strerror(r));
	}
	ck_assert_int_eq(lunfs_setxattr(v, ino, "user.attribute_500", "x", 1, LUNFS_XATTR_CREATE), -EEXIST);
	ck_assert_int_eq(lunfs_listxattr(v, ino, list, sizeof(list)), N * 19);
	ck_assert_int_eq(lunfs_listxattr(v, ino, NULL, 0), N * 19);
	/* replacing one in the middle with a value too big for its block */
	static char big[3000];
	memset(big, 'b', sizeof(big));
	ck_assert_int_eq(lunfs_setxattr(v, ino, "user.attribute_400", big, sizeof(big), LUNFS_XATTR_REPLACE), 0);
	ck_assert_int_eq(lunfs_unmount(v), 0);
	v = mnt(p, "h1"); /* everything again from the disk */
	for (int i = 0; i < N; i++) {
		snprintf(name, sizeof(name), "user.attribute_%03d", i);
		snprintf(val, sizeof(val), "value_%03d", i);
		if (i == 400) {
			ck_assert_int_eq(lunfs_getxattr(v, ino, name, NULL, 0), (int)sizeof(big));
			continue;
		}
		ck_assert_int_eq(lunfs_getxattr(v, ino, name, buf, sizeof(buf)), 9);
		ck_assert_int_eq(memcmp(buf, val, 9), 0);
	}
	for (int i = 1; i < N; i += 2) {
		snprintf(name, sizeof(name), "user.attribute_%03d", i);
		ck_assert_int_eq(lunfs_removexattr(v, ino, name), 0);
	}
	ck_assert_int_eq(lunfs_getxattr(v, ino, "user.attribute_001", buf, sizeof(buf)), -ENODATA);
	ck_assert_int_eq(lunfs_getxattr(v, ino, "user.attribute_998", buf, sizeof(buf)), 9);
	ck_assert_int_eq(lunfs_listxattr(v, ino, NULL, 0), N / 2 * 19);
	/* a second file keeps its chain; the first one's is freed with it */
	uint64_t y = mkfile(v, 1, "y");
	for (int i = 0; i < 300; i++) {
		snprintf(name, sizeof(name), "user.y%d", i);
		ck_assert_int_eq(lunfs_setxattr(v, y, name, "0123456789abcdef", 16, 0), 0);
	}
	ck_assert_int_eq(lunfs_unlink(v, 1, "x"), 0);
	ck_assert_int_eq(lunfs_getxattr(v, y, "user.y299", buf, sizeof(buf)), 16);
	ck_assert_int_eq(lunfs_unmount(v), 0);
	char cmd[512];
	const char *bin = getenv("LUNFS_BIN") ? getenv("LUNFS_BIN") : "build/bin";
	snprintf(cmd, sizeof(cmd), "%s/fsck.lunfs -n %s >/dev/null", bin, p);
	ck_assert_int_eq(system(cmd), 0);
	unlink(p);
	free(p);
}
END_TEST

/* The data path counts per host and per open file, and the host publishes
 * the counts after its heartbeat record (lunfs top reads them there). */
START_TEST(io_statistics_published)
{
	struct lunfs_sb sb;
	char *p = tu_volume(256ull << 20, &sb);
	struct lunfs_vol *v = mnt(p, "stats-host");
	uint64_t ino = mkfile(v, 1, "vm.img");
	struct lunfs_file *f;
	uint8_t *buf = dev_alloc(65536);
	ck_assert_int_eq(lunfs_open(v, ino, LUNFS_OPEN_EXCL, &f), 0);
	for (int i = 0; i < 4; i++)
		ck_assert_int_eq(lunfs_pwrite(f, buf, 65536, i * 65536ull), 65536);
	for (int i = 0; i < 2; i++)
		ck_assert_int_eq(lunfs_pread(f, buf, 65536, i * 65536ull), 65536);
	struct dev *d = tu_open(p);
	uint8_t *region = dev_alloc((size_t)sb.max_hosts * 4096);
	struct lunfs_hbstat *st = malloc(sizeof(*st)), *got = NULL;
	for (int tries = 0; tries < 100 && !got; tries++) {
		usleep(50 * 1000);
		ck_assert_int_eq(dev_read(d, sb.hb_off, region, (size_t)sb.max_hosts * 4096), 0);
		for (uint32_t s = 0; s < sb.max_hosts && !got; s++) {
			struct lunfs_hb hb;
			uint64_t off = sb.hb_off + s * 4096ull;
			if (lunfs_hb_decode(region + s * 4096, sb.uuid, off, &hb, NULL) ||
			    strcmp(hb.host_name, "stats-host") || hb.state != HB_LIVE)
				continue;
			if (!lunfs_hbstat_decode(region + s * 4096 + 512, sb.uuid, off + 512, st, NULL) &&
			    st->mount_gen == hb.mount_gen && st->nfiles == 1 && st->files[0].io.rd_ops == 2)
				got = st;
		}
	}
	ck_assert_ptr_nonnull(got);
	ck_assert_uint_eq(got->files[0].ino, ino);
	ck_assert_uint_eq(got->files[0].io.wr_ops, 4);
	ck_assert_uint_eq(got->files[0].io.wr_bytes, 4 * 65536);
	ck_assert_uint_eq(got->files[0].io.rd_bytes, 2 * 65536);
	ck_assert_uint_gt(got->files[0].io.wr_ns, 0);
	ck_assert_uint_eq(got->files[0].io.inflight, 0);
	ck_assert_uint_ge(got->host.wr_ops, 4);
	ck_assert_uint_ge(got->host.rd_ops, 2);
	dev_close(d);
	free(st);
	free(region);
	free(buf);
	ck_assert_int_eq(lunfs_close(f), 0);
	ck_assert_int_eq(lunfs_unmount(v), 0);
	unlink(p);
	free(p);
}
END_TEST

START_TEST(async_queue)
{
	struct lunfs_sb sb;
	char *p = tu_volume(256 << 20, &sb);
	struct lunfs_vol *v = mnt(p, "h1");
	struct lunfs_file *f;
	struct lunfs_ioq *q, *q2;
	uint64_t ino = mkfile(v, 1, "aio.img");
	ck_assert_int_eq(lunfs_open(v, ino, LUNFS_OPEN_EXCL, &f), 0);
	ck_assert_int_eq(lunfs_fallocate(f, LUNFS_FALLOC_ZERO, 0, 8 * MiB), 0);
	ck_assert_int_eq(lunfs_ioq_create(f, 32, &q), 0);
	ck_assert_int_eq(lunfs_ioq_create(f, 32, &q2), -EBUSY);
	enum { N = 64 };
	struct lunfs_aio io[N], *ptr[N], *done[N];
	uint8_t *buf = dev_alloc(N * 8192);
	/* fast path (mapped, aligned), a request spanning two blocks, and
	 * slow ones (unaligned, past the end: a hole to fill) */
	for (int i = 0; i < N; i++) {
		fill(buf + i * 8192, 8192, i);
		uint64_t off = (uint64_t)i * 3 * 4096 * 41 % (8 * MiB - 8192);
		if (i == 1)
			off = MiB - 4096;
		if (i == 2)
			off = 8 * MiB + 4096;
		io[i] = (struct lunfs_aio){.op = LUNFS_AIO_WRITE, .buf = buf + i * 8192,
					   .len = i == 3 ? 5000 : 8192,
					   .off = i == 3 ? 8 * MiB + 65536 + 77 : off};
		ptr[i] = &io[i];
	}
	/* distinct offsets: */
	for (int i = 4; i < N; i++)
		io[i].off = (uint64_t)(i + 4) * 16384 * 7 % (8 * MiB - 8192) / 4096 * 4096;
	int sub = 0, got = 0;
	while (got < N) {
		if (sub < N) {
			int s = lunfs_ioq_submit(q, ptr + sub, N - sub);
			ck_assert_int_ge(s, 0);
			sub += s;
		}
		int n = lunfs_ioq_reap(q, 1, done, N);
		ck_assert_int_ge(n, 0);
		for (int k = 0; k < n; k++)
			ck_assert_int_eq(done[k]->res, done[k]->len);
		got += n;
	}
	lunfs_ioq_destroy(q);
	uint8_t *r = malloc(8192);
	for (int i = 0; i < N; i++) {
		/* overlapping requests in flight together have no order (as on
		 * any device queue): check only ranges no other request touched */
		int overlap = 0;
		for (int k = 0; k < N; k++)
			if (k != i && io[k].off < io[i].off + io[i].len && io[i].off < io[k].off + io[k].len)
				overlap = 1;
		if (overlap) {
			ck_assert_int_gt(i, 3); /* the special requests must be checked */
			continue;
		}
		ck_assert_int_eq(lunfs_pread(f, r, io[i].len, io[i].off), io[i].len);
		ck_assert_msg(!memcmp(r, io[i].buf, io[i].len), "request %d differs", i);
	}
	free(r);
	free(buf);
	ck_assert_int_eq(lunfs_close(f), 0);
	ck_assert_int_eq(lunfs_unmount(v), 0);
	unlink(p);
	free(p);
}
END_TEST

/* lunfs_aio_start from several threads at once: mapped blocks go to the
 * device queue and call back from the completion thread; a hole, a partial
 * sector and a range past the end call back before the start returns.
 * Every byte is then read back; the queue is shared, so a lunfs_ioq is
 * refused meanwhile. */
struct aio_thr {
	struct lunfs_file *f;
	int id;
	uint8_t *buf;
	struct lunfs_aio io[64];
	int inline_done; /* callbacks that ran inside lunfs_aio_start */
	pthread_t self;
};
static int aio_done_count;
static pthread_mutex_t aio_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t aio_cv = PTHREAD_COND_INITIALIZER;

static void aio_cb(struct lunfs_aio *a)
{
	struct aio_thr *t = a->priv;
	if (pthread_equal(pthread_self(), t->self))
		t->inline_done++;
	pthread_mutex_lock(&aio_mu);
	aio_done_count++;
	pthread_cond_broadcast(&aio_cv);
	pthread_mutex_unlock(&aio_mu);
}

static void *aio_writer(void *arg)
{
	struct aio_thr *t = arg;
	t->self = pthread_self();
	for (int i = 0; i < 64; i++) {
		/* thread id's own 4 KiB slots, spread over 8 MiB of mapped blocks;
		 * request 0: a hole past the mapped part; request 1: unaligned */
		uint64_t off = ((uint64_t)(i * 4 + t->id) * 8191 % 2048) * 4096;
		size_t len = 4096;
		if (i == 0) /* each thread its own 1 MiB hole */
			off = (8 + (uint64_t)t->id) * MiB + 4096;
		if (i == 1) {
			off = 12 * MiB + (uint64_t)t->id * 8192 + 100;
			len = 3000;
		}
		fill(t->buf + i * 4096, 4096, t->id * 64 + i);
		t->io[i] = (struct lunfs_aio){.op = LUNFS_AIO_WRITE, .buf = t->buf + i * 4096,
					      .len = len, .off = off, .priv = t};
		lunfs_aio_start(t->f, &t->io[i], aio_cb);
	}
	return NULL;
}

/* A volume mounted as h1 with a file vm.img open LUNFS_OPEN_EXCL: its first
 * zeroed bytes allocated (eager-zeroed), the rest up to size holes. */
static void vm_disk(char **p, struct lunfs_vol **v, struct lunfs_file **f, uint64_t zeroed,
		    uint64_t size)
{
	struct lunfs_sb sb;
	struct lunfs_setattr sa = {.size = size};
	struct lunfs_stat st;
	*p = tu_volume(256 << 20, &sb);
	*v = mnt(*p, "h1");
	uint64_t ino = mkfile(*v, 1, "vm.img");
	ck_assert_int_eq(lunfs_open(*v, ino, LUNFS_OPEN_EXCL, f), 0);
	ck_assert_int_eq(lunfs_fallocate(*f, LUNFS_FALLOC_ZERO, 0, zeroed), 0);
	ck_assert_int_eq(lunfs_setattr(*v, ino, LUNFS_SET_SIZE, &sa, &st), 0);
}

/* Closes f, unmounts v, removes the image p. */
static void vm_disk_end(char *p, struct lunfs_vol *v, struct lunfs_file *f)
{
	ck_assert_int_eq(lunfs_close(f), 0);
	ck_assert_int_eq(lunfs_unmount(v), 0);
	unlink(p);
	free(p);
}

START_TEST(aio_engine)
{
	char *p;
	struct lunfs_vol *v;
	struct lunfs_file *f;
	struct lunfs_ioq *q;
	vm_disk(&p, &v, &f, 8 * MiB, 13 * MiB);
	struct aio_thr t[4];
	aio_done_count = 0;
	for (int i = 0; i < 4; i++) {
		t[i] = (struct aio_thr){.f = f, .id = i, .buf = dev_alloc(64 * 4096)};
		ck_assert_int_eq(pthread_create(&t[i].self, NULL, aio_writer, &t[i]), 0);
	}
	for (int i = 0; i < 4; i++)
		pthread_join(t[i].self, NULL);
	pthread_mutex_lock(&aio_mu);
	while (aio_done_count < 4 * 64)
		pthread_cond_wait(&aio_cv, &aio_mu);
	pthread_mutex_unlock(&aio_mu);
	ck_assert_int_eq(lunfs_ioq_create(f, 8, &q), -EBUSY);
	uint8_t *r = dev_alloc(4096);
	int inline_total = 0;
	for (int i = 0; i < 4; i++) {
		inline_total += t[i].inline_done;
		for (int k = 0; k < 64; k++) {
			struct lunfs_aio *a = &t[i].io[k];
			ck_assert_int_eq(a->res, (ssize_t)a->len);
			ck_assert_int_eq(lunfs_pread(f, r, a->len, a->off), (ssize_t)a->len);
			ck_assert_msg(!memcmp(r, a->buf, a->len), "thread %d request %d differs", i, k);
		}
		free(t[i].buf);
	}
	/* the hole and the unaligned request of each thread at least ran inline;
	 * most others went to the queue */
	ck_assert_int_ge(inline_total, 8);
	ck_assert_int_lt(inline_total, 4 * 64);
	/* a read past the end is short, through the synchronous path */
	struct lunfs_aio rd = {.op = LUNFS_AIO_READ, .buf = r, .len = 4096, .off = 13 * MiB - 1024,
			       .priv = &t[0]};
	t[0].self = pthread_self();
	lunfs_aio_start(f, &rd, aio_cb);
	ck_assert_int_eq(rd.res, 1024);
	free(r);
	vm_disk_end(p, v, f);
}
END_TEST

/* An event loop's own queue (lunfs_loop_*): a write of blocks whose mapping
 * the open file has cached is queued and completes in lunfs_loop_run on
 * this thread; a hole, an unaligned range or a mapping not cached yet is
 * refused (0: nothing done).  A queued write is registered as data I/O: a
 * punch of its block waits until the write completed, so the block is never
 * freed under it and reads as zeros after the punch. */
struct loop_ctx {
	int done;
};

static void loop_cb(struct lunfs_aio *a)
{
	((struct loop_ctx *)a->priv)->done++;
}

struct punch_arg {
	struct lunfs_file *f;
	uint64_t off;
};

static int punch_fn(void *arg)
{
	struct punch_arg *pa = arg;
	return lunfs_fallocate(pa->f, LUNFS_FALLOC_PUNCH | LUNFS_FALLOC_KEEP_SIZE, pa->off, MiB);
}

START_TEST(event_loop_queue)
{
	char *p;
	struct lunfs_vol *v;
	struct lunfs_file *f;
	struct lunfs_loop *l;
	vm_disk(&p, &v, &f, 4 * MiB, 5 * MiB);
	ck_assert_int_eq(lunfs_loop_open(v, &l), 0);
	struct loop_ctx c = {0};
	uint8_t *buf = dev_alloc(16 * 4096), *r = dev_alloc(4096);
	struct lunfs_aio a[16];
	int queued = 0;
	for (int i = 0; i < 16; i++) {
		fill(buf + i * 4096, 4096, 100 + i);
		a[i] = (struct lunfs_aio){.op = LUNFS_AIO_WRITE, .buf = buf + i * 4096, .len = 4096,
					  .off = (uint64_t)(i % 4) * MiB + (uint64_t)i * 8192,
					  .priv = &c};
		if (lunfs_loop_try(l, f, &a[i], loop_cb) == 1) {
			queued++;
			continue;
		}
		/* not cached yet: the synchronous path serves it (and caches) */
		ck_assert_int_eq(lunfs_pwrite(f, a[i].buf, 4096, a[i].off), 4096);
		a[i].res = 4096;
	}
	ck_assert_int_ge(queued, 12); /* the first write of each block may miss */
	while (c.done < queued)
		ck_assert_int_ge(lunfs_loop_run(l, 1000), 0);
	for (int i = 0; i < 16; i++) {
		ck_assert_int_eq(a[i].res, 4096);
		ck_assert_int_eq(lunfs_pread(f, r, 4096, a[i].off), 4096);
		ck_assert_msg(!memcmp(r, a[i].buf, 4096), "request %d differs", i);
	}
	/* refused: a hole (4-5 MiB), an unaligned range */
	struct lunfs_aio h = {.op = LUNFS_AIO_WRITE, .buf = buf, .len = 4096, .off = 4 * MiB,
			      .priv = &c};
	ck_assert_int_eq(lunfs_loop_try(l, f, &h, loop_cb), 0);
	h.off = 100;
	h.len = 3000;
	ck_assert_int_eq(lunfs_loop_try(l, f, &h, loop_cb), 0);
	ck_assert_int_eq(lunfs_loop_run(l, 0), 0);
	ck_assert_int_eq(c.done, queued);
	/* a punch waits for a queued write of its block */
	struct lunfs_aio w = {.op = LUNFS_AIO_WRITE, .buf = buf, .len = 4096, .off = MiB + 8192,
			      .priv = &c};
	ck_assert_int_eq(lunfs_loop_try(l, f, &w, loop_cb), 1);
	struct punch_arg pa = {f, MiB};
	struct tu_bg bg;
	tu_bg_start(&bg, punch_fn, &pa);
	ck_assert_msg(!tu_bg_wait(&bg, 300), "the punch freed a block with a write queued to it");
	while (c.done < queued + 1)
		ck_assert_int_ge(lunfs_loop_run(l, 1000), 0);
	ck_assert_int_eq(w.res, 4096);
	ck_assert_int_eq(tu_bg_join(&bg), 0);
	ck_assert_int_eq(lunfs_pread(f, r, 4096, MiB + 8192), 4096);
	ck_assert(lunfs_is_zero(r, 4096));
	lunfs_loop_close(l);
	free(buf);
	free(r);
	vm_disk_end(p, v, f);
}
END_TEST

/* A transaction that fails after changing a cluster header drops its
 * changes from the cache; the header must come back as last committed (the
 * journal's pending image), not as its stale home. */
START_TEST(failed_tx_rereads_committed)
{
	struct lunfs_sb sb;
	char *p = tu_volume(256 << 20, &sb);
	struct lunfs_mount_opts o = {.host = "h1", .linger_ms = 60000};
	struct lunfs_vol *v;
	ck_assert_int_eq(lunfs_mount(p, &o, &v, NULL), 0);
	struct lunfs_file *f;
	uint64_t ino = mkfile(v, 1, "a");
	ck_assert_int_eq(lunfs_open(v, ino, LUNFS_OPEN_EXCL, &f), 0);
	ck_assert_int_eq(lunfs_pwrite(f, "AAAA", 4, 0), 4);
	ck_assert_int_eq(lunfs_fallocate(f, 0, MiB, 1ull << 34), -ENOSPC);
	/* fill the volume: a stale header would hand block 0's block out again */
	ssize_t w;
	for (uint64_t i = 1; (w = lunfs_pwrite(f, "BBBB", 4, i * MiB)) == 4; i++)
		;
	ck_assert_int_eq(w, -ENOSPC);
	char buf[4];
	ck_assert_int_eq(lunfs_pread(f, buf, 4, 0), 4);
	ck_assert_int_eq(memcmp(buf, "AAAA", 4), 0);
	ck_assert_int_eq(lunfs_close(f), 0);
	ck_assert_int_eq(lunfs_unmount(v), 0);
	unlink(p);
	free(p);
}
END_TEST

/* ---- group commit of writes into holes (fs/fill.c) ---- */

#define GC_MAXW 16
struct gc_job {
	struct lunfs_file *f;
	pthread_barrier_t *bar;
	const uint8_t *src; /* the data: write i takes src[off, off + len) */
	uint64_t off[GC_MAXW];
	size_t len[GC_MAXW];
	ssize_t res[GC_MAXW];
	int nw;
};

static void *gc_writer(void *arg)
{
	struct gc_job *j = arg;
	if (j->bar)
		pthread_barrier_wait(j->bar);
	for (int i = 0; i < j->nw; i++)
		j->res[i] = lunfs_pwrite(j->f, j->src + j->off[i], j->len[i], j->off[i]);
	return NULL;
}

static void gc_add(struct gc_job *j, struct lunfs_file *f, const uint8_t *src, uint64_t off,
		   size_t len)
{
	ck_assert_int_lt(j->nw, GC_MAXW);
	j->f = f;
	j->src = src;
	j->off[j->nw] = off;
	j->len[j->nw++] = len;
}

/* Runs the jobs at once (a barrier); returns when all are done. */
static void gc_run(struct gc_job *jobs, int n)
{
	pthread_t t[64];
	pthread_barrier_t bar;
	pthread_barrier_init(&bar, NULL, n);
	for (int i = 0; i < n; i++) {
		jobs[i].bar = &bar;
		ck_assert_int_eq(pthread_create(&t[i], NULL, gc_writer, &jobs[i]), 0);
	}
	for (int i = 0; i < n; i++)
		pthread_join(t[i], NULL);
	pthread_barrier_destroy(&bar);
}

/* Applies the successful writes of the jobs to a model of the file. */
static uint64_t gc_model(struct gc_job *jobs, int n, struct lunfs_file *f, uint8_t *m,
			 uint64_t size)
{
	for (int i = 0; i < n; i++)
		for (int k = 0; k < jobs[i].nw; k++) {
			if (jobs[i].f != f || jobs[i].res[k] != (ssize_t)jobs[i].len[k])
				continue;
			memcpy(m + jobs[i].off[k], jobs[i].src + jobs[i].off[k], jobs[i].len[k]);
			if (jobs[i].off[k] + jobs[i].len[k] > size)
				size = jobs[i].off[k] + jobs[i].len[k];
		}
	return size;
}

/* The file named name holds model m (size bytes). */
static void gc_check(struct lunfs_vol *v, const char *name, const uint8_t *m, uint64_t size)
{
	struct lunfs_stat st;
	struct lunfs_file *f;
	ck_assert_int_eq(lunfs_lookup(v, 1, name, &st), 0);
	ck_assert_uint_eq(st.size, size);
	uint8_t *r = malloc(size + 1);
	ck_assert_int_eq(lunfs_open(v, st.ino, LUNFS_OPEN_READ, &f), 0);
	ck_assert_int_eq(lunfs_pread(f, r, size + 1, 0), size);
	if (memcmp(r, m, size)) {
		uint64_t i = 0;
		while (r[i] == m[i])
			i++;
		ck_abort_msg("%s: byte %llu is %u, not %u", name, (unsigned long long)i, r[i], m[i]);
	}
	ck_assert_int_eq(lunfs_close(f), 0);
	free(r);
}

/* Many threads write into the holes of a thin file and into the
 * to-be-zeroed blocks of a thick one at once: whole blocks, partial
 * blocks, one block from two threads, unaligned writes, writes across two
 * holes.  Every byte is there after a remount, and fsck finds nothing. */
START_TEST(group_commit_holes)
{
	struct lunfs_sb sb;
	char *p = tu_volume(256 << 20, &sb);
	struct lunfs_vol *v = mnt(p, "h1");
	struct lunfs_file *a, *b;
	const uint64_t asz = 40 * MiB, bsz = 24 * MiB;
	ck_assert_int_eq(lunfs_open(v, mkfile(v, 1, "thin"), LUNFS_OPEN_RW, &a), 0);
	ck_assert_int_eq(lunfs_open(v, mkfile(v, 1, "thick"), LUNFS_OPEN_RW, &b), 0);
	ck_assert_int_eq(lunfs_fallocate(b, 0, 0, bsz), 0); /* to be zeroed */
	uint8_t *srca = malloc(asz), *srcb = malloc(bsz);
	uint8_t *ma = calloc(1, asz), *mb = calloc(1, bsz);
	fill(srca, asz, 3);
	fill(srcb, bsz, 5);
	struct gc_job j[8];
	memset(j, 0, sizeof(j));
	for (int t = 0; t < 8; t++) {
		gc_add(&j[t], a, srca, t * MiB, MiB);                          /* whole */
		gc_add(&j[t], a, srca, (t + 8) * MiB, MiB);
		gc_add(&j[t], a, srca, (16 + t) * MiB + 8192 * t, 4096);       /* partial */
		gc_add(&j[t], a, srca, (24 + t / 2) * MiB + (t % 2) * 512 * 1024, 65536); /* shared */
		gc_add(&j[t], a, srca, (28 + t / 4) * MiB + 777 + t * 5000, 1000); /* unaligned */
		if (t < 4)                                                       /* two holes */
			gc_add(&j[t], a, srca, (32 + 2 * t) * MiB + 256 * 1024, 3 * MiB / 2);
	}
	gc_run(j, 8);
	/* the thick file from other threads (the handle of an RW open) */
	struct gc_job k[8];
	memset(k, 0, sizeof(k));
	for (int t = 0; t < 8; t++) {
		gc_add(&k[t], b, srcb, t * MiB, MiB);
		gc_add(&k[t], b, srcb, (t + 8) * MiB + 4096 * t, 4096);
		gc_add(&k[t], b, srcb, (16 + t / 2) * MiB + (t % 2) * 4096 + 100, 3000);
		gc_add(&k[t], a, srca, (36 + t / 2) * MiB + (t % 2) * MiB / 2, MiB / 2); /* and thin */
	}
	gc_run(k, 8);
	for (int t = 0; t < 8; t++) {
		for (int i = 0; i < j[t].nw; i++)
			ck_assert_int_eq(j[t].res[i], j[t].len[i]);
		for (int i = 0; i < k[t].nw; i++)
			ck_assert_int_eq(k[t].res[i], k[t].len[i]);
	}
	uint64_t sa = gc_model(j, 8, a, ma, 0);
	sa = gc_model(k, 8, a, ma, sa);
	gc_model(k, 8, b, mb, 0);
	struct lunfs_stat st;
	ck_assert_int_eq(lunfs_getattr(v, lunfs_file_ino(a), &st), 0);
	ck_assert_uint_eq(st.size, sa);
	ck_assert_uint_eq(st.blocks, 38 * MiB / 512); /* all but 30 and 31 */
	ck_assert_int_eq(lunfs_getattr(v, lunfs_file_ino(b), &st), 0);
	ck_assert_uint_eq(st.size, bsz);
	ck_assert_uint_eq(st.blocks, bsz / 512);
	gc_check(v, "thin", ma, sa); /* before and after a remount */
	ck_assert_int_eq(lunfs_close(a), 0);
	ck_assert_int_eq(lunfs_close(b), 0);
	ck_assert_int_eq(lunfs_unmount(v), 0);
	v = mnt(p, "h1");
	gc_check(v, "thin", ma, sa);
	gc_check(v, "thick", mb, bsz);
	ck_assert_int_eq(lunfs_unmount(v), 0);
	ck_assert_int_eq(tu_fsck(p), 0);
	free(srca);
	free(srcb);
	free(ma);
	free(mb);
	unlink(p);
	free(p);
}
END_TEST

/* Writes into holes that are pending together share the flushes and the
 * transaction: fewer flushes than writes.  The device is frozen while the
 * writers start, so that their data writes all wait for it at once. */
START_TEST(group_commit_batches)
{
	char *p;
	struct dev *d;
	struct lunfs_vol *v = mnt_faulty(&p, &d);
	struct lunfs_file *f;
	ck_assert_int_eq(lunfs_open(v, mkfile(v, 1, "c"), LUNFS_OPEN_RW, &f), 0);
	enum { N = 12 };
	uint8_t *src = malloc((N + 1) * MiB), *m = calloc(1, (N + 1) * MiB);
	fill(src, (N + 1) * MiB, 9);
	/* the first block takes the cluster's lock (kept: long linger) */
	ck_assert_int_eq(lunfs_pwrite(f, src + N * MiB, MiB, N * MiB), MiB);
	struct gc_job j[N];
	memset(j, 0, sizeof(j));
	pthread_t t[N];
	struct dev_stats s0, s1;
	lunfs_dev_stats(v, &s0);
	dev_faulty_freeze(d, 1);
	for (int i = 0; i < N; i++) {
		gc_add(&j[i], f, src, (uint64_t)i * MiB, MiB);
		ck_assert_int_eq(pthread_create(&t[i], NULL, gc_writer, &j[i]), 0);
	}
	/* until every writer waits for the device with its data write */
	ck_assert(wait_dev_io(v, &s0, 0, N));
	dev_faulty_freeze(d, 0);
	for (int i = 0; i < N; i++)
		pthread_join(t[i], NULL);
	lunfs_dev_stats(v, &s1);
	for (int i = 0; i < N; i++)
		ck_assert_int_eq(j[i].res[0], MiB);
	uint64_t flushes = s1.flushes - s0.flushes, writes = s1.writes - s0.writes;
	fprintf(stderr, "group_commit_batches: %d writes into holes: %llu device writes, %llu flushes\n",
		N, (unsigned long long)writes, (unsigned long long)flushes);
	ck_assert_uint_ge(writes, N);
	ck_assert_uint_lt(flushes, N);
	memcpy(m, src, (N + 1) * MiB);
	gc_check(v, "c", m, (N + 1) * MiB);
	ck_assert_int_eq(lunfs_close(f), 0);
	ck_assert_int_eq(lunfs_unmount(v), 0);
	v = mnt(p, "h1");
	gc_check(v, "c", m, (N + 1) * MiB);
	ck_assert_int_eq(lunfs_unmount(v), 0);
	ck_assert_int_eq(tu_fsck(p), 0);
	free(src);
	free(m);
	unlink(p);
	free(p);
}
END_TEST

/* Threads fill the volume through holes until it is full: each write
 * succeeds whole or fails with ENOSPC, every free block ends up used, a
 * to-be-zeroed block is still written, and the volume is consistent. */
START_TEST(group_commit_enospc)
{
	struct lunfs_sb sb;
	char *p = tu_volume(128 << 20, &sb);
	struct lunfs_vol *v = mnt(p, "h1");
	struct lunfs_file *f, *e;
	struct lunfs_statfs s0, s1;
	ck_assert_int_eq(lunfs_open(v, mkfile(v, 1, "full"), LUNFS_OPEN_EXCL, &f), 0);
	ck_assert_int_eq(lunfs_open(v, mkfile(v, 1, "tbz"), LUNFS_OPEN_EXCL, &e), 0);
	ck_assert_int_eq(lunfs_fallocate(e, 0, 0, 4 * MiB), 0);
	ck_assert_int_eq(lunfs_statfs(v, &s0), 0);
	const uint64_t fsz = 8 * 15 * MiB;
	uint8_t *src = malloc(fsz), *m = calloc(1, fsz);
	fill(src, fsz, 11);
	struct gc_job j[8];
	memset(j, 0, sizeof(j));
	for (int t = 0; t < 8; t++) {
		for (int i = 0; i < 15; i++) {
			uint64_t l = (uint64_t)i * 8 + t;
			if (i % 3 == 2) /* a partial write */
				gc_add(&j[t], f, src, l * MiB + 4096, 8192);
			else
				gc_add(&j[t], f, src, l * MiB, MiB);
		}
	}
	gc_run(j, 8);
	int ok = 0, nospc = 0;
	for (int t = 0; t < 8; t++)
		for (int i = 0; i < j[t].nw; i++) {
			ok += j[t].res[i] == (ssize_t)j[t].len[i];
			nospc += j[t].res[i] == -ENOSPC;
		}
	ck_assert_int_eq(ok + nospc, 8 * 15);
	ck_assert_int_gt(nospc, 0);
	ck_assert_int_eq(ok, s0.bfree);
	ck_assert_int_eq(lunfs_statfs(v, &s1), 0);
	ck_assert_uint_eq(s1.bfree, 0);
	ck_assert_int_eq(lunfs_pwrite(f, src, 4096, 1000 * MiB), -ENOSPC);
	/* a to-be-zeroed block needs no free block */
	ck_assert_int_eq(lunfs_pwrite(e, src, MiB, MiB), MiB);
	uint64_t size = gc_model(j, 8, f, m, 0);
	ck_assert_int_eq(lunfs_close(f), 0);
	ck_assert_int_eq(lunfs_close(e), 0);
	ck_assert_int_eq(lunfs_unmount(v), 0);
	v = mnt(p, "h1");
	gc_check(v, "full", m, size);
	ck_assert_int_eq(lunfs_unmount(v), 0);
	ck_assert_int_eq(tu_fsck(p), 0);
	free(src);
	free(m);
	unlink(p);
	free(p);
}
END_TEST

static uint64_t stats_ios(struct lunfs_vol *v)
{
	struct dev_stats s;
	lunfs_dev_stats(v, &s);
	return s.reads + s.writes + s.flushes + s.caws + s.zeroes;
}

/* The device fails one I/O in the middle of concurrent writes into holes
 * (a data write, a flush, the journal's write, whichever comes): the
 * writes report it or succeed, the volume stays consistent, and every write
 * that succeeded is there after the replay.  Then a host that loses its
 * lease while its writers wait for the device: they fail with EIO, and
 * nothing of theirs is committed. */
START_TEST(group_commit_faults)
{
	struct lunfs_sb sb;
	const uint64_t fsz = 32 * MiB;
	uint8_t *src = malloc(fsz), *m = malloc(fsz);
	fill(src, fsz, 13);
	for (int step = 1; step <= 40; step += 3) {
		char *p = tu_volume(256 << 20, &sb);
		struct dev *d;
		ck_assert_int_eq(dev_faulty_wrap(tu_open(p), &d), 0);
		struct lunfs_mount_opts o = {.host = "h1"};
		struct lunfs_test_opts to = {.device = d};
		struct lunfs_vol *v;
		ck_assert_int_eq(lunfs_mount_test(NULL, &o, &to, &v, NULL), 0);
		struct lunfs_file *f;
		ck_assert_int_eq(lunfs_open(v, mkfile(v, 1, "x"), LUNFS_OPEN_EXCL, &f), 0);
		struct gc_job j[8];
		memset(j, 0, sizeof(j));
		for (int t = 0; t < 8; t++)
			for (int i = 0; i < 4; i++)
				gc_add(&j[t], f, src, ((uint64_t)i * 8 + t) * MiB + (i == 3) * 4096,
				       i == 3 ? 4096 : MiB);
		struct dev_fault cfg = {.fail_io = stats_ios(v) + step};
		dev_faulty_set(d, &cfg);
		gc_run(j, 8);
		int failed = 0;
		for (int t = 0; t < 8; t++)
			for (int i = 0; i < j[t].nw; i++) {
				ssize_t r = j[t].res[i];
				ck_assert_msg(r == (ssize_t)j[t].len[i] || r == -EIO || r == -EFENCED,
					      "step %d: a write returned %zd", step, r);
				failed += r < 0;
			}
		memset(m, 0, fsz);
		uint64_t size = gc_model(j, 8, f, m, 0);
		lunfs_close(f);
		lunfs_unmount(v); /* may fail: a failed journal write stops it */
		struct lunfs_mount_opts o2 = {.host = "h1", .assume_dead = 1};
		ck_assert_int_eq(lunfs_mount(p, &o2, &v, NULL), 0);
		/* a failed write may have landed: compare what succeeded */
		struct lunfs_stat st;
		ck_assert_int_eq(lunfs_lookup(v, 1, "x", &st), 0);
		ck_assert_uint_ge(st.size, size);
		ck_assert_int_eq(lunfs_open(v, st.ino, LUNFS_OPEN_READ, &f), 0);
		uint8_t *r = malloc(MiB);
		for (int t = 0; t < 8; t++)
			for (int i = 0; i < j[t].nw; i++) {
				if (j[t].res[i] < 0)
					continue;
				ck_assert_int_eq(lunfs_pread(f, r, j[t].len[i], j[t].off[i]), j[t].len[i]);
				ck_assert_msg(!memcmp(r, src + j[t].off[i], j[t].len[i]),
					      "step %d: a write that succeeded is lost", step);
			}
		free(r);
		ck_assert_int_eq(lunfs_close(f), 0);
		ck_assert_int_eq(lunfs_unmount(v), 0);
		ck_assert_msg(tu_fsck(p) == 0, "step %d (%d writes failed): fsck", step, failed);
		unlink(p);
		free(p);
	}

	/* fenced while the writers wait for a frozen device */
	char *p = tu_volume(256 << 20, &sb);
	struct dev *d;
	ck_assert_int_eq(dev_faulty_wrap(tu_open(p), &d), 0);
	struct lunfs_mount_opts o = {.host = "h1", .linger_ms = 60000};
	struct lunfs_test_opts to = {.device = d};
	struct lunfs_vol *v;
	ck_assert_int_eq(lunfs_mount_test(NULL, &o, &to, &v, NULL), 0);
	struct lunfs_file *f;
	uint64_t ino = mkfile(v, 1, "y");
	ck_assert_int_eq(lunfs_open(v, ino, LUNFS_OPEN_EXCL, &f), 0);
	ck_assert_int_eq(lunfs_pwrite(f, src, 4096, 0), 4096);
	struct gc_job j[4];
	memset(j, 0, sizeof(j));
	pthread_t t[4];
	dev_faulty_freeze(d, 1);
	for (int i = 0; i < 4; i++) {
		gc_add(&j[i], f, src, (uint64_t)(i + 1) * MiB, MiB);
		ck_assert_int_eq(pthread_create(&t[i], NULL, gc_writer, &j[i]), 0);
	}
	usleep((sb.lease_ms + 500) * 1000); /* past the lease */
	dev_faulty_freeze(d, 0);
	for (int i = 0; i < 4; i++) {
		pthread_join(t[i], NULL);
		ck_assert_int_eq(j[i].res[0], -EFENCED);
	}
	lunfs_close(f);
	lunfs_abandon(v);
	struct lunfs_mount_opts o2 = {.host = "h1", .assume_dead = 1};
	ck_assert_int_eq(lunfs_mount(p, &o2, &v, NULL), 0);
	struct lunfs_stat st;
	ck_assert_int_eq(lunfs_getattr(v, ino, &st), 0);
	ck_assert_uint_eq(st.size, 4096);
	ck_assert_uint_eq(st.blocks, MiB / 512);
	unmount_fsck_remove(v, p);
	free(src);
	free(m);
}
END_TEST


static uint64_t flushes_of(struct lunfs_vol *v)
{
	struct dev_stats s;
	lunfs_dev_stats(v, &s);
	return s.flushes;
}

/* File t of 2 MiB of src's pattern, written and fsynced. */
static uint64_t two_mib_file(struct lunfs_vol *v, uint8_t *src)
{
	struct lunfs_file *f;
	uint64_t ino = mkfile(v, 1, "t");
	fill(src, 2 * MiB, 17);
	ck_assert_int_eq(lunfs_open(v, ino, LUNFS_OPEN_EXCL, &f), 0);
	ck_assert_int_eq(lunfs_pwrite(f, src, 2 * MiB, 0), 2 * MiB);
	ck_assert_int_eq(lunfs_fsync(f), 0);
	ck_assert_int_eq(lunfs_close(f), 0);
	return ino;
}

/* A truncate of ino (2 MiB of src) to a third of a MiB whose journal flush
 * fails (the faults are set): after a crash and a remount of p the file
 * has its old size and every byte (its tail was not zeroed before the
 * truncate was durable); fsck is clean. */
static void truncate_lost(struct lunfs_vol *v, const char *p, uint64_t ino, const uint8_t *src,
			  uint64_t fail_flush)
{
	struct lunfs_stat st;
	struct lunfs_file *f;
	uint8_t *r = malloc(2 * MiB);
	struct lunfs_setattr sa = {.size = MiB / 3};
	ck_assert_int_ne(lunfs_setattr(v, ino, LUNFS_SET_SIZE, &sa, &st), 0);
	ck_assert_uint_eq(flushes_of(v), fail_flush); /* it was that flush */
	lunfs_abandon(v);
	struct lunfs_mount_opts o2 = {.host = "h1", .assume_dead = 1};
	ck_assert_int_eq(lunfs_mount(p, &o2, &v, NULL), 0);
	ck_assert_int_eq(lunfs_getattr(v, ino, &st), 0);
	ck_assert_uint_eq(st.size, 2 * MiB);
	ck_assert_int_eq(lunfs_open(v, ino, LUNFS_OPEN_READ, &f), 0);
	ck_assert_int_eq(lunfs_pread(f, r, 2 * MiB, 0), 2 * MiB);
	ck_assert_msg(!memcmp(r, src, 2 * MiB), "the old size shows the cut block's tail zeroed");
	ck_assert_int_eq(lunfs_close(f), 0);
	ck_assert_int_eq(lunfs_unmount(v), 0);
	ck_assert_int_eq(tu_fsck(p), 0);
	free(r);
}

/* A truncate whose commit finds no room in the journal: the checkpoint it
 * needs flushes the device, and the zeroed tail of the cut block must not
 * be durable by then.  The commit's own flush fails (a power cut there):
 * the file keeps its old size and every byte. */
START_TEST(truncate_zeroes_with_its_commit)
{
	char *p;
	struct dev *d;
	struct lunfs_vol *v = mnt_faulty(&p, &d);
	uint8_t *src = malloc(2 * MiB);
	uint64_t ino = two_mib_file(v, src);
	lunfs_test_no_early_checkpoints(v); /* the seals must */
	/* Small commits (an xattr: one block, three in the log) until the log
	 * ran out of room twice: a seal without room costs two more flushes
	 * (its checkpoint).  The commits between the two say how many fit; one
	 * fewer after the second leaves room for three blocks, not the
	 * truncate's four. */
	int wraps = 0, between = 0;
	for (int i = 0; wraps < 2; i++) {
		ck_assert_int_lt(i, 2000);
		uint64_t f0 = flushes_of(v);
		char val[16];
		snprintf(val, sizeof(val), "%d", i);
		ck_assert_int_eq(lunfs_setxattr(v, ino, "user.x", val, strlen(val), 0), 0);
		uint64_t n = flushes_of(v) - f0;
		ck_assert_uint_ge(n, 1);
		if (n > 1)
			wraps++;
		else if (wraps == 1)
			between++;
	}
	for (int i = 0; i < between - 1; i++)
		ck_assert_int_eq(lunfs_setxattr(v, ino, "user.x", "y", 1, 0), 0);
	/* the truncate: checkpoint (2 flushes), then its commit's flush fails */
	struct dev_fault cfg = {.fail_flush = flushes_of(v) + 3};
	dev_faulty_set(d, &cfg);
	truncate_lost(v, p, ino, src, cfg.fail_flush);
	free(src);
	unlink(p);
	free(p);
}
END_TEST


/* A journal commit's device write runs without the volume mutex: while a
 * setxattr's commit waits for a frozen device, another thread's getattr
 * and lookup of cached metadata complete (under the old commit, which
 * held v->mu across the write and its flush, they waited for the device). */
struct cj_job {
	struct lunfs_vol *v;
	uint64_t ino;
	int res;
	_Atomic int done;
};

static void *cj_setxattr(void *a)
{
	struct cj_job *j = a;
	j->res = lunfs_setxattr(j->v, j->ino, "user.k2", "v2", 2, 0);
	j->done = 1;
	return NULL;
}

static void *cj_fail(void *a)
{
	struct cj_job *j = a;
	j->res = lunfs_test_fail_after_dirty(j->v, j->ino);
	j->done = 1;
	return NULL;
}

static void *cj_getattr(void *a)
{
	struct cj_job *j = a;
	struct lunfs_stat st;
	j->res = lunfs_getattr(j->v, j->ino, &st);
	if (!j->res)
		j->res = lunfs_lookup(j->v, 1, "x", &st);
	j->done = 1;
	return NULL;
}

START_TEST(commit_outside_volume_mutex)
{
	char *p;
	struct dev *d;
	struct lunfs_vol *v = mnt_faulty(&p, &d);
	uint64_t ino = mkfile(v, 1, "x");
	ck_assert_int_eq(lunfs_setxattr(v, ino, "user.k1", "v1", 2, 0), 0); /* all cached now */
	struct cj_job a = {.v = v, .ino = ino}, b = {.v = v, .ino = ino};
	struct dev_stats s0;
	pthread_t ta, tb;
	lunfs_dev_stats(v, &s0);
	dev_faulty_freeze(d, 1);
	ck_assert_int_eq(pthread_create(&ta, NULL, cj_setxattr, &a), 0);
	int writing = wait_dev_io(v, &s0, 0, 1); /* its journal write waits */
	ck_assert_int_eq(pthread_create(&tb, NULL, cj_getattr, &b), 0);
	for (int ms = 0; ms < 3000 && !b.done; ms += 10)
		usleep(10 * 1000);
	int b_done = b.done, a_done = a.done;
	dev_faulty_freeze(d, 0);
	pthread_join(ta, NULL);
	pthread_join(tb, NULL);
	ck_assert(writing);
	ck_assert(!a_done);  /* the commit waited for the device */
	ck_assert(b_done);   /* the getattr did not wait for the commit */
	ck_assert_int_eq(a.res, 0);
	ck_assert_int_eq(b.res, 0);
	char buf[8];
	ck_assert_int_eq(lunfs_getxattr(v, ino, "user.k2", buf, sizeof(buf)), 2);
	ck_assert_int_eq(lunfs_unmount(v), 0);
	v = mnt(p, "h1"); /* durable: it is there after a remount */
	ck_assert_int_eq(lunfs_getxattr(v, ino, "user.k2", buf, sizeof(buf)), 2);
	ck_assert_int_eq(lunfs_unmount(v), 0);
	unlink(p);
	free(p);
}
END_TEST

/* A punch hole frees a block while a data read of another block of the
 * file is in flight (the device frozen): the free waits for it (tx_drain)
 * with v->mu dropped.  A read of the punched block that comes meanwhile
 * finds the pointer still in the cached map blocks (the punch changes its
 * own copies until it commits); it must not put it into the open file's
 * cache, or once the punch is done the fast path would read the freed block
 * (here: the old data instead of zeros; in general, another file's). */
struct pr_job {
	struct lunfs_file *f;
	uint64_t off;
	char *buf;
	ssize_t res;
	_Atomic int done;
};

static void *pr_read(void *a)
{
	struct pr_job *j = a;
	j->res = lunfs_pread(j->f, j->buf, 4096, j->off);
	j->done = 1;
	return NULL;
}

static void *pr_punch(void *a)
{
	struct pr_job *j = a;
	j->res = lunfs_fallocate(j->f, LUNFS_FALLOC_PUNCH | LUNFS_FALLOC_KEEP_SIZE, j->off, MiB);
	j->done = 1;
	return NULL;
}

START_TEST(punch_never_recaches_freed_block)
{
	char *p;
	struct dev *d;
	struct lunfs_vol *v = mnt_faulty(&p, &d);
	uint64_t ino = mkfile(v, 1, "x");
	struct lunfs_file *f;
	ck_assert_int_eq(lunfs_open(v, ino, LUNFS_OPEN_EXCL, &f), 0);
	char *w = malloc(2 * MiB), *b0 = malloc(4096), *b1 = malloc(4096);
	memset(w, 0x5a, 2 * MiB);
	ck_assert_int_eq(lunfs_pwrite(f, w, 2 * MiB, 0), 2 * MiB);
	ck_assert_int_eq(lunfs_pread(f, b0, 4096, 0), 4096); /* both blocks cached */
	ck_assert_int_eq(lunfs_pread(f, b1, 4096, MiB), 4096);
	struct pr_job a = {.f = f, .off = 0, .buf = b0}, pu = {.f = f, .off = MiB},
		      c = {.f = f, .off = MiB, .buf = b1};
	struct dev_stats s0;
	pthread_t ta, tp, tc;
	lunfs_dev_stats(v, &s0);
	dev_faulty_freeze(d, 1);
	ck_assert_int_eq(pthread_create(&ta, NULL, pr_read, &a), 0);
	ck_assert(wait_dev_io(v, &s0, 1, 1)); /* a's read is at the device */
	ck_assert_int_eq(pthread_create(&tp, NULL, pr_punch, &pu), 0);
	usleep(300 * 1000); /* the punch waits in tx_drain for a's read */
	ck_assert(!pu.done);
	ck_assert_int_eq(pthread_create(&tc, NULL, pr_read, &c), 0);
	usleep(300 * 1000); /* c looked block 1 up and waits for the punch */
	dev_faulty_freeze(d, 0);
	pthread_join(ta, NULL);
	pthread_join(tp, NULL);
	pthread_join(tc, NULL);
	ck_assert_int_eq(a.res, 4096);
	ck_assert_int_eq(pu.res, 0);
	ck_assert_int_eq(c.res, 4096);
	/* after the punch, block 1 reads as zeros, however it is looked up */
	for (int i = 0; i < 2; i++) {
		memset(b1, 0x11, 4096);
		ck_assert_int_eq(lunfs_pread(f, b1, 4096, MiB), 4096);
		for (int k = 0; k < 4096; k++)
			ck_assert_msg(b1[k] == 0, "byte %d of the punched block: %#x", k, b1[k] & 0xff);
	}
	ck_assert_int_eq(lunfs_close(f), 0);
	ck_assert_int_eq(lunfs_unmount(v), 0);
	free(w);
	free(b0);
	free(b1);
	unlink(p);
	free(p);
}
END_TEST

/* A failed operation beside a commit in flight: it changed the same inode
 * block as a sealed, not yet durable setxattr, and its failure drops that
 * block from the cache.  A re-read must not lose the setxattr (the drop
 * waits until the commit in flight is durable and pending in the
 * journal), and the setxattr is there after a remount. */
static void *cj_getxattr(void *a)
{
	struct cj_job *j = a;
	char buf[8];
	j->res = lunfs_getxattr(j->v, j->ino, "user.k2", buf, sizeof(buf));
	j->done = 1;
	return NULL;
}

START_TEST(failed_op_beside_commit_in_flight)
{
	char *p;
	struct dev *d;
	struct lunfs_vol *v = mnt_faulty(&p, &d);
	uint64_t ino = mkfile(v, 1, "x");
	ck_assert_int_eq(lunfs_setxattr(v, ino, "user.k1", "v1", 2, 0), 0);
	struct cj_job a = {.v = v, .ino = ino}, c = {.v = v, .ino = ino};
	struct dev_stats s0;
	pthread_t ta, tc;
	lunfs_dev_stats(v, &s0);
	dev_faulty_freeze(d, 1);
	ck_assert_int_eq(pthread_create(&ta, NULL, cj_setxattr, &a), 0);
	ck_assert(wait_dev_io(v, &s0, 0, 1)); /* its journal write waits */
	/* the failure's drop waits for the commit in flight: in a thread */
	struct cj_job b = {.v = v, .ino = ino};
	pthread_t tb;
	ck_assert_int_eq(pthread_create(&tb, NULL, cj_fail, &b), 0);
	usleep(200 * 1000);
	ck_assert_int_eq(pthread_create(&tc, NULL, cj_getxattr, &c), 0);
	usleep(200 * 1000);
	dev_faulty_freeze(d, 0);
	pthread_join(ta, NULL);
	pthread_join(tb, NULL);
	pthread_join(tc, NULL);
	ck_assert_int_eq(a.res, 0);
	ck_assert_int_eq(b.res, -ENOSPC);
	ck_assert_int_eq(c.res, 2); /* the re-read after the drop sees it */
	char buf[8];
	ck_assert_int_eq(lunfs_getxattr(v, ino, "user.k2", buf, sizeof(buf)), 2);
	/* a later commit of the block keeps it */
	ck_assert_int_eq(lunfs_setxattr(v, ino, "user.k3", "v3", 2, 0), 0);
	ck_assert_int_eq(lunfs_unmount(v), 0);
	v = mnt(p, "h1");
	ck_assert_int_eq(lunfs_getxattr(v, ino, "user.k2", buf, sizeof(buf)), 2);
	ck_assert_int_eq(lunfs_getxattr(v, ino, "user.k3", buf, sizeof(buf)), 2);
	ck_assert_int_eq(lunfs_unmount(v), 0);
	unlink(p);
	free(p);
}
END_TEST

/* A metadata operation that must read a block it has no cached copy of,
 * or acquire a lock, does it without the volume mutex (a restartable
 * transaction: tx_run): with the device frozen under it, an operation of
 * the same host whose blocks are cached finishes meanwhile. */
struct mw_job {
	struct lunfs_vol *v;
	uint64_t ino;
	int mknod;
};

static int mw_stalled(void *a)
{
	struct mw_job *j = a;
	struct lunfs_stat st;
	return j->mknod ? lunfs_mknod(j->v, j->ino, "z", S_IFREG | 0644, 0, NULL, &st)
			: lunfs_getattr(j->v, j->ino, &st);
}

/* The getxattr of user.k2 of the inode *a (cached: 2). */
static int getxattr_k2(void *a)
{
	struct cj_job *j = a;
	char buf[8];
	return lunfs_getxattr(j->v, j->ino, "user.k2", buf, sizeof(buf));
}

/* With the device frozen, starts stalled(arg), waits until the device
 * counted reads (reads) or writes past s0 (it reached the device), starts
 * a cached getxattr of ino beside it, thaws after at most 1.5 s; returns
 * whether the getxattr finished while the other waited, and the stalled
 * call's result in *res. */
static int stall_round(struct lunfs_vol *v, struct dev *d, int reads, int (*stalled)(void *),
		       void *arg, uint64_t ino, int *res)
{
	struct cj_job cj = {.v = v, .ino = ino};
	struct tu_bg a, b;
	struct dev_stats s0;
	lunfs_dev_stats(v, &s0);
	dev_faulty_freeze(d, 1);
	tu_bg_start(&a, stalled, arg);
	int reached = wait_dev_io(v, &s0, reads, 1);
	usleep(100 * 1000);
	tu_bg_start(&b, getxattr_k2, &cj);
	int b_done = tu_bg_wait(&b, 1500), a_done = a.done;
	dev_faulty_freeze(d, 0);
	*res = tu_bg_join(&a);
	ck_assert_int_eq(tu_bg_join(&b), 2);
	ck_assert(reached);
	ck_assert(!a_done); /* it did wait for the device */
	return b_done;
}

START_TEST(metadata_waits_outside_volume_mutex)
{
	char *p;
	struct dev *d;
	struct lunfs_stat st;
	struct lunfs_vol *v = mnt_faulty(&p, &d);
	/* another host makes a directory and a file in it, then leaves: h1
	 * holds neither lock and has neither block cached */
	struct lunfs_vol *w = mnt(p, "h2");
	ck_assert_int_eq(lunfs_mkdir(w, 1, "d2", 0755, NULL, &st), 0);
	uint64_t d2 = st.ino, y = mkfile(w, d2, "y");
	ck_assert_int_eq(lunfs_unmount(w), 0);
	uint64_t x = mkfile(v, 1, "x");
	ck_assert_int_eq(lunfs_setxattr(v, x, "user.k2", "v2", 2, 0), 0); /* cached */
	/* a read of a block nobody cached */
	struct mw_job a = {.v = v, .ino = y}, m = {.v = v, .ino = d2, .mknod = 1};
	int res;
	ck_assert_msg(stall_round(v, d, 1, mw_stalled, &a, x, &res),
		      "a cached getxattr waited for a getattr's device read");
	ck_assert_int_eq(res, 0);
	/* a lock acquisition (the directory's, to create in it) */
	ck_assert_msg(stall_round(v, d, 1, mw_stalled, &m, x, &res),
		      "a cached getxattr waited for a lock acquisition");
	ck_assert_int_eq(res, 0);
	ck_assert_int_eq(lunfs_lookup(v, d2, "z", &st), 0);
	ck_assert_int_eq(lunfs_unmount(v), 0);
	unlink(p);
	free(p);
}
END_TEST

/* The async queue's lookup of a mapping the open file has not cached
 * (file_aio_map) reads the pointer block it needs without v->mu: with the
 * device frozen under that read, a getxattr of a cached inode completes. */
struct aq_job {
	struct lunfs_file *f;
	uint8_t *buf;
};

static int aq_read(void *arg)
{
	struct aq_job *j = arg;
	struct lunfs_ioq *q;
	struct lunfs_aio a = {.op = LUNFS_AIO_READ, .buf = j->buf, .len = 4096, .off = 128 * MiB};
	struct lunfs_aio *ap = &a, *out;
	int r = lunfs_ioq_create(j->f, 4, &q);
	if (r)
		return r;
	r = lunfs_ioq_submit(q, &ap, 1);
	if (r == 1)
		r = lunfs_ioq_reap(q, 1, &out, 1) == 1 ? (int)a.res : -EIO;
	lunfs_ioq_destroy(q);
	return r;
}

START_TEST(aio_lookup_outside_volume_mutex)
{
	char *p;
	struct dev *d;
	struct lunfs_vol *v = mnt_faulty(&p, &d);
	/* another host writes the file's block 128 (behind the single-indirect
	 * pointer block) and leaves: h1 has not cached that pointer block */
	struct lunfs_vol *w = mnt(p, "h2");
	struct lunfs_file *f;
	uint64_t y = mkfile(w, 1, "y");
	uint8_t *buf = dev_alloc(4096);
	fill(buf, 4096, 7);
	ck_assert_int_eq(lunfs_open(w, y, LUNFS_OPEN_EXCL, &f), 0);
	ck_assert_int_eq(lunfs_pwrite(f, buf, 4096, 128 * MiB), 4096);
	ck_assert_int_eq(lunfs_close(f), 0);
	ck_assert_int_eq(lunfs_unmount(w), 0);
	uint64_t x = mkfile(v, 1, "x");
	ck_assert_int_eq(lunfs_setxattr(v, x, "user.k2", "v2", 2, 0), 0); /* cached */
	ck_assert_int_eq(lunfs_open(v, y, LUNFS_OPEN_EXCL, &f), 0);
	struct aq_job j = {f, dev_alloc(4096)};
	int res;
	ck_assert_msg(stall_round(v, d, 1, aq_read, &j, x, &res),
		      "a cached getxattr waited for the async queue's map lookup");
	ck_assert_int_eq(res, 4096);
	ck_assert_int_eq(memcmp(j.buf, buf, 4096), 0);
	free(j.buf);
	free(buf);
	vm_disk_end(p, v, f);
}
END_TEST

/* What a warm host's creates do under the volume mutex (the device's
 * probe counts it): nothing.  The new inode's lock (a compare-and-write)
 * and its block (a read) are taken before the create changes anything, so
 * the restartable create gets them without v->mu.  (With the inode marked
 * used first, both came after the first change: 20 CAWs and 20 reads under
 * v->mu.) */
START_TEST(create_does_no_io_under_volume_mutex)
{
	struct lunfs_sb sb;
	struct lunfs_stat st;
	char *p = tu_volume(256 << 20, &sb);
	struct lunfs_vol *v = mnt(p, "h1");
	ck_assert_int_eq(lunfs_mkdir(v, 1, "d", 0755, NULL, &st), 0);
	uint64_t d = st.ino;
	mkfile(v, d, "warm");
	uint64_t a[5], b[5];
	lunfs_test_mu_io(v, a);
	char name[16];
	for (int i = 0; i < 20; i++) {
		snprintf(name, sizeof(name), "f%d", i);
		mkfile(v, d, name);
	}
	lunfs_test_mu_io(v, b);
	printf("create_does_no_io_under_volume_mutex: 20 creates: %llu reads, %llu writes, "
	       "%llu flushes, %llu CAWs under v->mu\n",
	       (unsigned long long)(b[0] - a[0]), (unsigned long long)(b[1] - a[1]),
	       (unsigned long long)(b[2] - a[2]), (unsigned long long)(b[3] - a[3]));
	ck_assert_uint_eq(b[0] - a[0], 0);
	ck_assert_uint_eq(b[3] - a[3], 0);
	unmount_fsck_remove(v, p);
}
END_TEST

/* Long operations commit in steps (tx_step), each step's journal write
 * without v->mu: a preallocation of 6 GiB, a truncate to 1 GiB and the
 * delete of the rest take several steps each (at most TX_STEP_UNITS units
 * a step), and make no device write or flush under v->mu.  Before, every
 * step wrote and flushed the journal under it (here the delete's first
 * step: 1 write and 1 flush; the others took steps only every 220 dirty
 * blocks, and ran under v->mu whole: integration test 69). */
START_TEST(long_ops_step_outside_volume_mutex)
{
	struct lunfs_sb sb;
	struct lunfs_stat st;
	struct lunfs_file *f;
	char *p = tu_volume(8ULL << 30, &sb);
	struct lunfs_vol *v = mnt(p, "h1");
	uint64_t ino = mkfile(v, 1, "big"), a[5], b[5];
	ck_assert_int_eq(lunfs_open(v, ino, LUNFS_OPEN_EXCL, &f), 0);
	struct dev_stats s0, s1;
	lunfs_dev_stats(v, &s0);
	lunfs_test_mu_io(v, a);
	ck_assert_int_eq(lunfs_fallocate(f, 0, 0, 6ULL << 30), 0);
	struct lunfs_setattr sa = {.size = 1ULL << 30};
	ck_assert_int_eq(lunfs_setattr(v, ino, LUNFS_SET_SIZE, &sa, &st), 0);
	ck_assert_uint_eq(st.size, 1ULL << 30);
	ck_assert_int_eq(lunfs_close(f), 0);
	ck_assert_int_eq(lunfs_unlink(v, 1, "big"), 0);
	lunfs_test_mu_io(v, b);
	lunfs_dev_stats(v, &s1);
	printf("long_ops_step_outside_volume_mutex: %llu flushes in all; under v->mu: %llu reads, "
	       "%llu writes, %llu flushes, %llu CAWs\n",
	       (unsigned long long)(s1.flushes - s0.flushes), (unsigned long long)(b[0] - a[0]),
	       (unsigned long long)(b[1] - a[1]), (unsigned long long)(b[2] - a[2]),
	       (unsigned long long)(b[3] - a[3]));
	ck_assert_uint_ge(s1.flushes - s0.flushes, 8); /* the steps' commits */
	ck_assert_uint_eq(b[1] - a[1], 0);
	ck_assert_uint_eq(b[2] - a[2], 0);
	unmount_fsck_remove(v, p);
}
END_TEST

/* A truncate that takes several steps (tx_step: each step a pass of at
 * most TX_STEP_UNITS units, ending in the middle of pointer blocks at two
 * levels) keeps the volume consistent at every step: a power cut after
 * each of its writes in turn, then a crash and a replay, and fsck is clean
 * (a pointer is cleared at every level in the transaction that frees its
 * block: with the parents' copies stored only at their own steps, a step
 * inside a child committed frees whose pointers were still on disk).  The
 * file has its old size or the new one; grown back, the cut part reads as
 * zeros (a truncate that may take steps is listed in the orphan directory,
 * and the mount finishes it: without that, the old data at 4000 MiB came
 * back after a cut between two steps). */
START_TEST(truncate_steps_survive_power_cuts)
{
	const uint64_t units = 5000, cut_to = 300;
	static char buf[4096] __attribute__((aligned(4096)));
	int done = 0;
	for (uint64_t k = 1; !done; k++) {
		ck_assert_uint_lt(k, 200);
		struct lunfs_sb sb;
		struct lunfs_stat st;
		struct lunfs_file *f;
		struct dev *d;
		char *p = tu_volume(6ULL << 30, &sb);
		ck_assert_int_eq(dev_faulty_wrap(tu_open(p), &d), 0);
		struct lunfs_mount_opts o = {.host = "h1", .linger_ms = 60000};
		struct lunfs_test_opts to = {.device = d};
		struct lunfs_vol *v;
		ck_assert_int_eq(lunfs_mount_test(NULL, &o, &to, &v, NULL), 0);
		uint64_t ino = mkfile(v, 1, "big");
		ck_assert_int_eq(lunfs_open(v, ino, LUNFS_OPEN_EXCL, &f), 0);
		memset(buf, 0xEE, sizeof(buf));
		ck_assert_int_eq(lunfs_pwrite(f, buf, sizeof(buf), 4000ULL * MiB), sizeof(buf));
		ck_assert_int_eq(lunfs_fallocate(f, 0, 0, units * MiB), 0);
		ck_assert_int_eq(lunfs_fsync(f), 0);
		struct dev_fault cut = {.cut_after = dev_faulty_writes(d) + k};
		dev_faulty_set(d, &cut);
		struct lunfs_setattr sa = {.size = cut_to * MiB};
		int r = lunfs_setattr(v, ino, LUNFS_SET_SIZE, &sa, &st);
		done = !dev_faulty_is_cut(d);
		if (done)
			ck_assert_int_eq(r, 0);
		lunfs_close(f);
		lunfs_abandon(v);
		struct lunfs_mount_opts o2 = {.host = "h1", .assume_dead = 1};
		ck_assert_int_eq(lunfs_mount(p, &o2, &v, NULL), 0);
		ck_assert_int_eq(lunfs_getattr(v, ino, &st), 0);
		ck_assert_msg(st.size == units * MiB || st.size == cut_to * MiB,
			      "cut after write %llu: size %llu", (unsigned long long)k,
			      (unsigned long long)st.size);
		/* grown back: the cut part reads as zeros (the mount finished
		 * the interrupted truncate), the old size keeps its data */
		int was_cut = st.size == cut_to * MiB;
		sa.size = units * MiB;
		ck_assert_int_eq(lunfs_setattr(v, ino, LUNFS_SET_SIZE, &sa, &st), 0);
		ck_assert_int_eq(lunfs_open(v, ino, LUNFS_OPEN_READ, &f), 0);
		ck_assert_int_eq(lunfs_pread(f, buf, sizeof(buf), 4000ULL * MiB), sizeof(buf));
		ck_assert_msg((buf[0] & 0xff) == (was_cut ? 0 : 0xEE),
			      "cut after write %llu: size %s, byte at 4000 MiB %#x", (unsigned long long)k,
			      was_cut ? "cut" : "old", buf[0] & 0xff);
		ck_assert_int_eq(lunfs_close(f), 0);
		ck_assert_int_eq(lunfs_unmount(v), 0);
		ck_assert_msg(tu_fsck(p) == 0, "cut after write %llu of the truncate: fsck",
			      (unsigned long long)k);
		if (done)
			printf("truncate_steps_survive_power_cuts: %llu writes, a cut after each\n",
			       (unsigned long long)(k - 1));
		unlink(p);
		free(p);
	}
}
END_TEST

/* An allocation that finds the volume full reads the superblock (a grow
 * on another host may have made room): the prefetch before the write's
 * or fallocate's transaction reads it without v->mu, and the allocation
 * under v->mu does not read it again.  A full volume, then a thin write
 * and a fallocate: -ENOSPC, and no read under v->mu (before: 2 reads). */
START_TEST(enospc_reads_superblock_outside_volume_mutex)
{
	struct lunfs_sb sb;
	struct lunfs_statfs sf;
	struct lunfs_file *f, *g;
	char *p = tu_volume(256 << 20, &sb);
	struct lunfs_vol *v = mnt(p, "h1");
	uint64_t a = mkfile(v, 1, "a"), b = mkfile(v, 1, "b"), x[5], y[5];
	ck_assert_int_eq(lunfs_open(v, a, LUNFS_OPEN_EXCL, &f), 0);
	ck_assert_int_eq(lunfs_open(v, b, LUNFS_OPEN_EXCL, &g), 0);
	ck_assert_int_eq(lunfs_statfs(v, &sf), 0);
	ck_assert_int_eq(lunfs_fallocate(f, 0, 0, sf.bfree * sf.bsize), 0);
	ck_assert_int_eq(lunfs_statfs(v, &sf), 0);
	ck_assert_uint_eq(sf.bfree, 0);
	char buf[4096] = {1};
	lunfs_test_mu_io(v, x);
	ck_assert_int_eq(lunfs_pwrite(g, buf, sizeof(buf), 0), -ENOSPC);
	ck_assert_int_eq(lunfs_fallocate(g, 0, 0, MiB), -ENOSPC);
	lunfs_test_mu_io(v, y);
	printf("enospc_reads_superblock_outside_volume_mutex: under v->mu: %llu reads\n",
	       (unsigned long long)(y[0] - x[0]));
	ck_assert_uint_eq(y[0] - x[0], 0);
	ck_assert_int_eq(lunfs_close(g), 0);
	ck_assert_int_eq(lunfs_close(f), 0);
	unmount_fsck_remove(v, p);
}
END_TEST

/* An open of a file this host holds no lock of: the lock's acquisition
 * and the compare-and-write that marks the record pinned by an open
 * (LK_HOLD_OPEN) both run in restarts without v->mu (tx_want_lock,
 * tx_want_open_flag): no read and no CAW under it.  (With the flag set by
 * of_pin under v->mu: a read and a CAW per open.) */
START_TEST(open_does_no_io_under_volume_mutex)
{
	struct lunfs_sb sb;
	char *p = tu_volume(256 << 20, &sb);
	struct lunfs_vol *w = mnt(p, "h2");
	uint64_t y = mkfile(w, 1, "y");
	ck_assert_int_eq(lunfs_unmount(w), 0);
	struct lunfs_vol *v = mnt(p, "h1");
	struct lunfs_file *f, *g;
	uint64_t a[5], b[5];
	lunfs_test_mu_io(v, a);
	ck_assert_int_eq(lunfs_open(v, y, LUNFS_OPEN_EXCL, &f), 0);
	lunfs_test_mu_io(v, b);
	printf("open_does_no_io_under_volume_mutex: %llu reads, %llu CAWs under v->mu\n",
	       (unsigned long long)(b[0] - a[0]), (unsigned long long)(b[3] - a[3]));
	ck_assert_uint_eq(b[0] - a[0], 0);
	ck_assert_uint_eq(b[3] - a[3], 0);
	/* the record says pinned by an open: another host's writable open
	 * fails at once */
	w = mnt(p, "h2");
	ck_assert_int_eq(lunfs_open(w, y, LUNFS_OPEN_RW, &g), -EBUSY);
	ck_assert_int_eq(lunfs_close(f), 0);
	ck_assert_int_eq(lunfs_open(w, y, LUNFS_OPEN_RW, &g), 0);
	ck_assert_int_eq(lunfs_close(g), 0);
	ck_assert_int_eq(lunfs_unmount(w), 0);
	ck_assert_int_eq(lunfs_unmount(v), 0);
	unlink(p);
	free(p);
}
END_TEST

/* The first write into a thin file on a fresh mount reserves its block
 * from a file cluster this host has not loaded: the cluster's lock (a CAW)
 * and header (a read) come from a restartable prefetch without v->mu
 * (alloc_prefetch), not from chunk_map under it.  So do a lazy and an
 * eager fallocate's. */
START_TEST(allocation_loads_clusters_outside_volume_mutex)
{
	struct lunfs_sb sb;
	char *p = tu_volume(256 << 20, &sb);
	struct lunfs_vol *v = mnt(p, "h1");
	struct lunfs_file *f;
	uint64_t x = mkfile(v, 1, "x");
	uint8_t *buf = dev_alloc(MiB);
	fill(buf, MiB, 5);
	ck_assert_int_eq(lunfs_open(v, x, LUNFS_OPEN_EXCL, &f), 0);
	uint64_t a[5], b[5];
	lunfs_test_mu_io(v, a);
	ck_assert_int_eq(lunfs_pwrite(f, buf, MiB, 0), MiB);
	ck_assert_int_eq(lunfs_pwrite(f, buf, MiB, 3 * MiB), MiB);
	lunfs_test_mu_io(v, b);
	printf("allocation_loads_clusters_outside_volume_mutex: thin writes: %llu reads, %llu CAWs "
	       "under v->mu\n", (unsigned long long)(b[0] - a[0]), (unsigned long long)(b[3] - a[3]));
	ck_assert_uint_eq(b[0] - a[0], 0);
	ck_assert_uint_eq(b[3] - a[3], 0);
	ck_assert_int_eq(lunfs_close(f), 0);
	ck_assert_int_eq(lunfs_unmount(v), 0);
	/* a fresh mount again: a lazy fallocate, then an eager one */
	v = mnt(p, "h1");
	ck_assert_int_eq(lunfs_open(v, x, LUNFS_OPEN_EXCL, &f), 0);
	lunfs_test_mu_io(v, a);
	ck_assert_int_eq(lunfs_fallocate(f, 0, 8 * MiB, 8 * MiB), 0);
	ck_assert_int_eq(lunfs_fallocate(f, LUNFS_FALLOC_ZERO, 16 * MiB, 8 * MiB), 0);
	lunfs_test_mu_io(v, b);
	printf("allocation_loads_clusters_outside_volume_mutex: fallocates: %llu reads, %llu CAWs, "
	       "%llu zeroings under v->mu\n", (unsigned long long)(b[0] - a[0]),
	       (unsigned long long)(b[3] - a[3]), (unsigned long long)(b[4] - a[4]));
	ck_assert_uint_eq(b[3] - a[3], 0);
	ck_assert_uint_eq(b[4] - a[4], 0);
	ck_assert_int_eq(lunfs_close(f), 0);
	ck_assert_int_eq(lunfs_unmount(v), 0);
	ck_assert_int_eq(tu_fsck(p), 0);
	free(buf);
	unlink(p);
	free(p);
}
END_TEST

/* An eager-zeroed fallocate writes its zeros without the volume mutex:
 * with the device frozen under the zeroing of a 16 MiB disk, a getxattr of
 * another file (cached) finishes meanwhile; afterwards the disk reads as
 * zeros, is fully allocated, and fsck is clean.  (The zeroing ran under
 * v->mu before: the whole host's metadata waited for it.) */
struct fz_job {
	struct lunfs_file *f;
	uint64_t len;
};

static int fz_alloc(void *a)
{
	struct fz_job *j = a;
	return lunfs_fallocate(j->f, LUNFS_FALLOC_ZERO, MiB, j->len - MiB);
}

START_TEST(eager_fallocate_zeroes_outside_volume_mutex)
{
	char *p;
	struct dev *d;
	struct lunfs_vol *v = mnt_faulty(&p, &d);
	struct lunfs_file *fx;
	struct lunfs_stat st;
	uint64_t x = mkfile(v, 1, "x"), y = mkfile(v, 1, "y");
	ck_assert_int_eq(lunfs_setxattr(v, y, "user.k2", "v2", 2, 0), 0); /* cached */
	ck_assert_int_eq(lunfs_open(v, x, LUNFS_OPEN_EXCL, &fx), 0);
	/* the first MiB: its cluster's header is cached and its lock held */
	ck_assert_int_eq(lunfs_fallocate(fx, LUNFS_FALLOC_ZERO, 0, MiB), 0);
	struct fz_job j = {fx, 16 * MiB};
	struct dev_stats s0, s;
	lunfs_dev_stats(v, &s0);
	dev_faulty_freeze(d, 1);
	struct tu_bg a, b;
	tu_bg_start(&a, fz_alloc, &j);
	int reached = 0;
	for (int ms = 0; ms < 5000 && !reached; ms += 10) {
		lunfs_dev_stats(v, &s);
		reached = s.zeroes > s0.zeroes;
		usleep(10 * 1000);
	}
	struct cj_job cj = {.v = v, .ino = y};
	tu_bg_start(&b, getxattr_k2, &cj);
	int b_done = tu_bg_wait(&b, 1500), a_done = a.done;
	dev_faulty_freeze(d, 0);
	ck_assert_int_eq(tu_bg_join(&a), 0);
	ck_assert_int_eq(tu_bg_join(&b), 2);
	ck_assert(reached);
	ck_assert(!a_done);
	ck_assert_msg(b_done, "a cached getxattr waited for an eager fallocate's zeroing");
	ck_assert_int_eq(lunfs_getattr(v, x, &st), 0);
	ck_assert_uint_eq(st.size, 16 * MiB);
	ck_assert_uint_eq(st.blocks, 16 * MiB / 512);
	uint8_t *buf = dev_alloc(MiB), *zero = calloc(1, MiB);
	for (uint64_t off = 0; off < 16 * MiB; off += MiB) {
		ck_assert_int_eq(lunfs_pread(fx, buf, MiB, off), MiB);
		ck_assert_int_eq(memcmp(buf, zero, MiB), 0);
	}
	free(buf);
	free(zero);
	ck_assert_int_eq(lunfs_close(fx), 0);
	ck_assert_int_eq(lunfs_unmount(v), 0);
	v = mnt(p, "h1");
	ck_assert_int_eq(lunfs_getattr(v, x, &st), 0);
	ck_assert_uint_eq(st.blocks, 16 * MiB / 512);
	unmount_fsck_remove(v, p);
}
END_TEST

/* A lock upgrade (shared to exclusive: a compare-and-write) runs without
 * the volume mutex: h1 opens y shared read-only, then sets an xattr of y;
 * with the device frozen under the upgrade, a getxattr of x (cached)
 * finishes meanwhile. */
static int setxattr_k3(void *a)
{
	struct cj_job *j = a;
	return lunfs_setxattr(j->v, j->ino, "user.k3", "v3", 2, 0);
}

START_TEST(lock_upgrade_outside_volume_mutex)
{
	char *p;
	struct dev *d;
	struct lunfs_vol *v = mnt_faulty(&p, &d);
	struct lunfs_vol *w = mnt(p, "h2");
	uint64_t y = mkfile(w, 1, "y"); /* h1 holds no lock of y */
	ck_assert_int_eq(lunfs_unmount(w), 0);
	uint64_t x = mkfile(v, 1, "x");
	ck_assert_int_eq(lunfs_setxattr(v, x, "user.k2", "v2", 2, 0), 0); /* cached */
	struct lunfs_file *f;
	ck_assert_int_eq(lunfs_open(v, y, LUNFS_OPEN_SHARED_RO, &f), 0); /* y shared */
	struct cj_job cy = {.v = v, .ino = y};
	int res;
	ck_assert_msg(stall_round(v, d, 1, setxattr_k3, &cy, x, &res),
		      "a cached getxattr waited for a lock upgrade's compare-and-write");
	ck_assert_int_eq(res, 0);
	char buf[8];
	ck_assert_int_eq(lunfs_getxattr(v, y, "user.k3", buf, sizeof(buf)), 2);
	ck_assert_int_eq(lunfs_close(f), 0);
	ck_assert_int_eq(lunfs_unmount(v), 0);
	unlink(p);
	free(p);
}
END_TEST

/* A busy host's seals leave the log's checkpoints to the linger thread:
 * the log wraps past live transactions (no checkpoint needed), and the
 * linger thread, woken when half the log is live, checkpoints without
 * v->mu before the seals run out of room.  1 MiB journal (255 log
 * blocks), 3000 setxattrs of 2-3 blocks each: the log wraps over 20
 * times.  With the old rule (a seal checkpoints before every wrap, under
 * v->mu) every wrap counts as a seal's checkpoint. */
START_TEST(seals_leave_checkpoints_to_linger)
{
	struct lunfs_sb sb;
	char *p = tu_volume(256 << 20, &sb);
	struct lunfs_vol *v = mnt(p, "h1");
	uint64_t ino[4];
	char name[16], val[32];
	for (int i = 0; i < 4; i++) {
		snprintf(name, sizeof(name), "f%d", i);
		ino[i] = mkfile(v, 1, name);
	}
	for (int k = 0; k < 3000; k++) {
		int n = snprintf(val, sizeof(val), "value %d", k);
		ck_assert_int_eq(lunfs_setxattr(v, ino[k % 4], "user.k", val, n, 0), 0);
	}
	struct jnl_counters c;
	lunfs_test_jnl_counters(v, &c);
	printf("fs: %llu wraps past a live tail, %llu seals that had to checkpoint\n",
	       (unsigned long long)c.wraps, (unsigned long long)c.seal_checkpoints);
	ck_assert_uint_ge(c.wraps, 10);
	ck_assert_msg(c.seal_checkpoints * 5 <= c.wraps,
		      "%llu of the seals checkpointed under v->mu",
		      (unsigned long long)c.seal_checkpoints);
	ck_assert_int_eq(lunfs_unmount(v), 0);
	v = mnt(p, "h1");
	for (int i = 0; i < 4; i++) {
		int n = snprintf(val, sizeof(val), "value %d", 2996 + i);
		char buf[32];
		ck_assert_int_eq(lunfs_getxattr(v, ino[i], "user.k", buf, sizeof(buf)), n);
		ck_assert_int_eq(memcmp(buf, val, n), 0);
	}
	ck_assert_int_eq(lunfs_unmount(v), 0);
	unlink(p);
	free(p);
}
END_TEST

/* The linger thread's device I/O (its checkpoint for visibility and before
 * it releases an idle lock, its poll of the superblock) runs without the
 * volume mutex: with the device frozen under it, a getxattr of a file this
 * host keeps open (its blocks cached) finishes meanwhile, and what was
 * committed is there after a remount. */
START_TEST(linger_checkpoint_outside_volume_mutex)
{
	struct lunfs_sb sb;
	struct dev *d;
	struct lunfs_vol *v;
	struct lunfs_file *f;
	char *p = tu_volume(256 << 20, &sb);
	ck_assert_int_eq(dev_faulty_wrap(tu_open(p), &d), 0);
	struct lunfs_mount_opts o = {.host = "h1", .linger_ms = 300};
	struct lunfs_test_opts to = {.device = d};
	ck_assert_int_eq(lunfs_mount_test(NULL, &o, &to, &v, NULL), 0);
	uint64_t y = mkfile(v, 1, "y");
	ck_assert_int_eq(lunfs_open(v, y, LUNFS_OPEN_EXCL, &f), 0); /* y's lock stays */
	ck_assert_int_eq(lunfs_setxattr(v, y, "user.k2", "v2", 2, 0), 0);
	uint64_t x = mkfile(v, 1, "x");
	ck_assert_int_eq(lunfs_setxattr(v, x, "user.k3", "v3", 2, 0), 0); /* pending homes */
	dev_faulty_freeze(d, 1);
	/* by then the linger thread waits for the device: in its checkpoint
	 * (the homes are 300 ms old), or in its poll of the superblock (an
	 * online grow), whichever came first */
	usleep(700 * 1000);
	struct cj_job cj = {.v = v, .ino = y};
	struct tu_bg b;
	tu_bg_start(&b, getxattr_k2, &cj);
	int b_done = tu_bg_wait(&b, 1500);
	dev_faulty_freeze(d, 0);
	ck_assert_int_eq(tu_bg_join(&b), 2);
	ck_assert_msg(b_done, "a cached getxattr waited for the linger thread's device I/O");
	ck_assert_int_eq(lunfs_close(f), 0);
	ck_assert_int_eq(lunfs_unmount(v), 0);
	v = mnt(p, "h1");
	char buf[8];
	ck_assert_int_eq(lunfs_getxattr(v, x, "user.k3", buf, sizeof(buf)), 2);
	ck_assert_int_eq(lunfs_getxattr(v, y, "user.k2", buf, sizeof(buf)), 2);
	ck_assert_int_eq(lunfs_unmount(v), 0);
	unlink(p);
	free(p);
}
END_TEST

/* A last close releases the file's lock (checkpoint, CAW) without the
 * volume mutex: with the device frozen under that checkpoint, a getxattr
 * of another open file (cached) finishes meanwhile. */
static int close_file(void *f)
{
	return lunfs_close(f);
}

START_TEST(last_close_releases_outside_volume_mutex)
{
	char *p;
	struct dev *d;
	struct lunfs_vol *v = mnt_faulty(&p, &d);
	struct lunfs_file *fx, *fy;
	uint64_t x = mkfile(v, 1, "x"), y = mkfile(v, 1, "y");
	ck_assert_int_eq(lunfs_open(v, x, LUNFS_OPEN_EXCL, &fx), 0);
	ck_assert_int_eq(lunfs_open(v, y, LUNFS_OPEN_EXCL, &fy), 0);
	ck_assert_int_eq(lunfs_setxattr(v, y, "user.k2", "v2", 2, 0), 0);
	ck_assert_int_eq(lunfs_setxattr(v, x, "user.k3", "v3", 2, 0), 0); /* homes pending */
	int res;
	/* the close's checkpoint writes the first home: it waits there */
	ck_assert_msg(stall_round(v, d, 0, close_file, fx, y, &res),
		      "a cached getxattr waited for a last close's release");
	ck_assert_int_eq(res, 0);
	ck_assert_int_eq(lunfs_close(fy), 0);
	ck_assert_int_eq(lunfs_unmount(v), 0);
	unlink(p);
	free(p);
}
END_TEST

/* A last close commits the times its writes left pending with the journal
 * write outside the volume mutex: with the device frozen under that write,
 * a getxattr of another open file (cached) finishes meanwhile; after a
 * remount the close's mtime is there. */
START_TEST(close_commits_outside_volume_mutex)
{
	char *p;
	struct dev *d;
	struct lunfs_vol *v = mnt_faulty(&p, &d);
	struct lunfs_file *fx, *fy;
	struct lunfs_stat st0, st;
	uint64_t x = mkfile(v, 1, "x"), y = mkfile(v, 1, "y");
	uint8_t *buf = dev_alloc(4096);
	fill(buf, 4096, 3);
	ck_assert_int_eq(lunfs_open(v, y, LUNFS_OPEN_EXCL, &fy), 0);
	ck_assert_int_eq(lunfs_setxattr(v, y, "user.k2", "v2", 2, 0), 0);
	ck_assert_int_eq(lunfs_open(v, x, LUNFS_OPEN_EXCL, &fx), 0);
	ck_assert_int_eq(lunfs_pwrite(fx, buf, 4096, 0), 4096); /* allocates */
	ck_assert_int_eq(lunfs_getattr(v, x, &st0), 0);
	usleep(20 * 1000);
	ck_assert_int_eq(lunfs_pwrite(fx, buf, 4096, 0), 4096); /* times pending */
	int res;
	/* the close's first device write is its journal write */
	ck_assert_msg(stall_round(v, d, 0, close_file, fx, y, &res),
		      "a cached getxattr waited for a last close's journal write");
	ck_assert_int_eq(res, 0);
	ck_assert_int_eq(lunfs_close(fy), 0);
	ck_assert_int_eq(lunfs_unmount(v), 0);
	v = mnt(p, "h1");
	ck_assert_int_eq(lunfs_getattr(v, x, &st), 0);
	ck_assert_msg(st.mtime.tv_sec * 1000000000LL + st.mtime.tv_nsec >
			      st0.mtime.tv_sec * 1000000000LL + st0.mtime.tv_nsec,
		      "the close did not commit the times");
	ck_assert_int_eq(lunfs_unmount(v), 0);
	free(buf);
	unlink(p);
	free(p);
}
END_TEST

/* A truncate's tail zeros are never durable before its journal record,
 * also when its seal must checkpoint first for too many pending homes
 * (that checkpoint runs before the zeroing): the flush after the zeroing
 * fails, and after a crash the file has its old size and every byte. */
START_TEST(truncate_zeroes_after_pending_checkpoint)
{
	char *p;
	struct dev *d;
	struct lunfs_vol *v = mnt_faulty(&p, &d);
	uint8_t *src = malloc(2 * MiB);
	uint64_t ino = two_mib_file(v, src);
	ck_assert_int_eq(lunfs_setxattr(v, ino, "user.x", "y", 1, 0), 0); /* a pending home */
	lunfs_test_set_pend_max(v, 0); /* the next seal checkpoints */
	/* the truncate: a checkpoint (2 flushes), then the zeroing, then the
	 * journal write's flush: the 3rd fails (a power cut there) */
	struct dev_fault cfg = {.fail_flush = flushes_of(v) + 3};
	dev_faulty_set(d, &cfg);
	truncate_lost(v, p, ino, src, cfg.fail_flush);
	free(src);
	unlink(p);
	free(p);
}
END_TEST


/* ---- an eager fallocate beside writes, truncates, a handoff, and
 * several hosts' thin writes (found by a review of the change) ---- */
struct slowz {
	_Atomic int on, zeros, ms;
};

static void slow_probe(void *a, int op)
{
	struct slowz *s = a;
	if (op != DEV_OP_ZERO)
		return;
	s->zeros++;
	if (s->on)
		usleep(s->ms * 1000);
}

static int wait_zeros(struct slowz *s, int n)
{
	for (int ms = 0; ms < 5000; ms++) {
		if (s->zeros >= n)
			return 1;
		usleep(1000);
	}
	return 0;
}

struct ez_job {
	struct lunfs_file *f;
	struct lunfs_vol *v;
	uint64_t ino, off, len;
	unsigned mode;
	const char *host;
	char buf[4096] __attribute__((aligned(4096)));
};

static int ez_falloc(void *a)
{
	struct ez_job *j = a;
	return lunfs_fallocate(j->f, j->mode, j->off, j->len);
}

static int ez_pwrite(void *a)
{
	struct ez_job *j = a;
	ssize_t r = lunfs_pwrite(j->f, j->buf, sizeof(j->buf), j->off);
	return r == (ssize_t)sizeof(j->buf) ? 0 : r < 0 ? (int)r : -1000;
}

static int ez_trunc(void *a)
{
	struct ez_job *j = a;
	struct lunfs_setattr sa = {.size = j->off};
	return lunfs_setattr(j->v, j->ino, LUNFS_SET_SIZE, &sa, NULL);
}

static int ez_handoff(void *a)
{
	struct ez_job *j = a;
	return lunfs_handoff(j->v, j->ino, j->host);
}

/* Two eager fallocates of one file through two handles: the second one's
 * of->zb0/zb1 replace the first one's, so a write into the first one's
 * to-be-zeroed block registers while that block is being zeroed. */
START_TEST(two_eager_fallocates_keep_writes)
{
	struct lunfs_sb sb;
	char *p = tu_volume(256 << 20, &sb);
	struct lunfs_vol *v = mnt(p, "h1");
	uint64_t x = mkfile(v, 1, "x");
	struct lunfs_file *f1, *f2, *f3;
	ck_assert_int_eq(lunfs_open(v, x, LUNFS_OPEN_RW, &f1), 0);
	ck_assert_int_eq(lunfs_open(v, x, LUNFS_OPEN_RW, &f2), 0);
	ck_assert_int_eq(lunfs_open(v, x, LUNFS_OPEN_RW, &f3), 0);
	ck_assert_int_eq(lunfs_fallocate(f1, 0, 0, 16 * MiB), 0);            /* TBZ */
	ck_assert_int_eq(lunfs_fallocate(f1, 0, 32 * MiB, 16 * MiB), 0);     /* TBZ */
	static struct slowz sz;
	sz.ms = 30;
	dev_set_probe(lunfs_device(v), slow_probe, &sz);
	sz.on = 1;
	static struct ez_job a, b, w;
	a = (struct ez_job){.f = f1, .mode = LUNFS_FALLOC_ZERO, .off = 0, .len = 16 * MiB};
	b = (struct ez_job){.f = f2, .mode = LUNFS_FALLOC_ZERO, .off = 32 * MiB, .len = 16 * MiB};
	w = (struct ez_job){.f = f3, .off = 12 * MiB};
	memset(w.buf, 0xAB, sizeof(w.buf));
	struct tu_bg ta, tb, tw;
	tu_bg_start(&ta, ez_falloc, &a);
	ck_assert(wait_zeros(&sz, 1));
	tu_bg_start(&tb, ez_falloc, &b);
	ck_assert(wait_zeros(&sz, 2));
	tu_bg_start(&tw, ez_pwrite, &w);
	int w_early = tu_bg_wait(&tw, 150);
	int ra = tu_bg_join(&ta), rb = tu_bg_join(&tb), rw = tu_bg_join(&tw);
	sz.on = 0;
	char rd[4096] __attribute__((aligned(4096)));
	ck_assert_int_eq(lunfs_pread(f3, rd, sizeof(rd), 12 * MiB), sizeof(rd));
	int same = !memcmp(rd, w.buf, sizeof(rd));
	printf("two_eager_fallocates_keep_writes: falloc A %d, falloc B %d, write %d (done while A zeroed: %d), "
	       "the write's data %s\n", ra, rb, rw, w_early, same ? "kept" : "ZEROED");
	ck_assert_int_eq(lunfs_close(f1), 0);
	ck_assert_int_eq(lunfs_close(f2), 0);
	ck_assert_int_eq(lunfs_close(f3), 0);
	ck_assert_int_eq(lunfs_unmount(v), 0);
	ck_assert_int_eq(tu_fsck(p), 0);
	ck_assert_int_eq(ra, 0);
	ck_assert_int_eq(rb, 0);
	ck_assert_msg(rw != 0 || same, "an acknowledged write was zeroed by an eager fallocate");
	unlink(p);
	free(p);
}
END_TEST

/* zbusy is cleared before fz_zero waits for the parked transaction (a
 * truncate of another file, draining for the zeroing): a write into a hole
 * of the chunk registers meanwhile, and the fallocate then maps that hole
 * too. */
START_TEST(eager_fallocate_beside_parked_truncate)
{
	struct lunfs_sb sb;
	char *p = tu_volume(256 << 20, &sb);
	struct lunfs_vol *v = mnt(p, "h1");
	static struct slowz sz;
	sz.ms = 25;
	dev_set_probe(lunfs_device(v), slow_probe, &sz);
	int bad = 0, runs = 12;
	for (int i = 0; i < runs; i++) {
		char nx[16], ny[16];
		snprintf(nx, sizeof(nx), "x%d", i);
		snprintf(ny, sizeof(ny), "y%d", i);
		uint64_t x = mkfile(v, 1, nx), y = mkfile(v, 1, ny);
		struct lunfs_file *fx, *fw, *fy;
		ck_assert_int_eq(lunfs_open(v, x, LUNFS_OPEN_RW, &fx), 0);
		ck_assert_int_eq(lunfs_open(v, x, LUNFS_OPEN_RW, &fw), 0);
		ck_assert_int_eq(lunfs_open(v, y, LUNFS_OPEN_RW, &fy), 0);
		static struct ez_job a, t, w;
		memset(w.buf, 0x5A, sizeof(w.buf));
		for (int k = 0; k < 4; k++)
			ck_assert_int_eq(lunfs_pwrite(fy, w.buf, sizeof(w.buf), k * MiB), sizeof(w.buf));
		a = (struct ez_job){.f = fx, .mode = LUNFS_FALLOC_ZERO, .off = 0, .len = 8 * MiB};
		t = (struct ez_job){.v = v, .ino = y, .off = MiB};
		w = (struct ez_job){.f = fw, .off = 5 * MiB};
		memset(w.buf, 0x5A, sizeof(w.buf));
		int z0 = sz.zeros;
		sz.on = 1;
		struct tu_bg ta, tt, tw;
		tu_bg_start(&ta, ez_falloc, &a);
		ck_assert(wait_zeros(&sz, z0 + 1));
		tu_bg_start(&tt, ez_trunc, &t);
		usleep(20 * 1000);
		tu_bg_start(&tw, ez_pwrite, &w);
		int ra = tu_bg_join(&ta), rt = tu_bg_join(&tt), rw = tu_bg_join(&tw);
		sz.on = 0;
		char rd[4096] __attribute__((aligned(4096)));
		ck_assert_int_eq(lunfs_pread(fw, rd, sizeof(rd), 5 * MiB), sizeof(rd));
		int same = !memcmp(rd, w.buf, sizeof(rd));
		if (ra || rt || rw || !same) {
			bad++;
			printf("eager_fallocate_beside_parked_truncate: run %d: falloc %d, truncate %d, write %d (%s), "
			       "data %s\n", i, ra, rt, rw, lunfs_strerror(rw), same ? "kept" : "lost");
		}
		lunfs_close(fx);
		lunfs_close(fw);
		lunfs_close(fy);
	}
	printf("eager_fallocate_beside_parked_truncate: %d of %d runs went wrong\n", bad, runs);
	ck_assert_int_eq(lunfs_unmount(v), 0);
	ck_assert_int_eq(tu_fsck(p), 0);
	ck_assert_int_eq(bad, 0);
	unlink(p);
	free(p);
}
END_TEST

/* A handoff while an eager fallocate zeroes: the handoff drains (parked),
 * then frees the held entry the fallocate's transaction still pins. */
START_TEST(handoff_during_eager_zeroing)
{
	struct lunfs_sb sb;
	char *p = tu_volume(256 << 20, &sb);
	struct lunfs_vol *v1 = mnt(p, "h1"), *v2 = mnt(p, "h2");
	uint64_t x = mkfile(v1, 1, "x");
	struct lunfs_file *f;
	ck_assert_int_eq(lunfs_open(v1, x, LUNFS_OPEN_RW, &f), 0);
	ck_assert_int_eq(lunfs_fallocate(f, LUNFS_FALLOC_ZERO, 0, MiB), 0);
	static struct slowz sz;
	sz.ms = 40;
	dev_set_probe(lunfs_device(v1), slow_probe, &sz);
	sz.on = 1;
	static struct ez_job a, h;
	a = (struct ez_job){.f = f, .mode = LUNFS_FALLOC_ZERO, .off = MiB, .len = 16 * MiB};
	h = (struct ez_job){.v = v1, .ino = x, .host = "h2"};
	struct tu_bg ta, th;
	tu_bg_start(&ta, ez_falloc, &a);
	ck_assert(wait_zeros(&sz, 1));
	tu_bg_start(&th, ez_handoff, &h);
	int ra = tu_bg_join(&ta), rh = tu_bg_join(&th);
	sz.on = 0;
	printf("handoff_during_eager_zeroing: fallocate %d (%s), handoff %d\n", ra, lunfs_strerror(ra), rh);
	/* the handoff waits for the fallocate (which pins the lock) */
	ck_assert_int_eq(ra, 0);
	ck_assert_int_eq(rh, 0);
	lunfs_close(f);
	ck_assert_int_eq(lunfs_unmount(v1), 0);
	ck_assert_int_eq(lunfs_unmount(v2), 0);
	unlink(p);
	free(p);
}
END_TEST


/* review: several hosts writing into holes of their own files, in turn */
START_TEST(hosts_thin_writes_keep_their_clusters)
{
	struct lunfs_sb sb;
	char *p = tu_image(8ull << 30);
	{
		struct dev *d = tu_open(p);
		struct lunfs_mkfs_opts o = {.max_hosts = 8, .jnl_size = 1 << 20, .lease_ms = 2400, .hb_ms = 200};
		char err[200];
		ck_assert_int_eq(lunfs_geom_compute(&o, dev_size(d), dev_lbs(d), &sb, err, sizeof(err)), 0);
		ck_assert_int_eq(lunfs_uuid_gen(sb.uuid), 0);
		sb.gen = 1;
		ck_assert_int_eq(lunfs_format(d, &sb), 0);
		dev_close(d);
	}
	enum { H = 4, N = 15 };
	const char *names[H] = {"ha", "hb", "hc", "hd"};
	struct lunfs_vol *v[H];
	struct lunfs_file *f[H];
	for (int i = 0; i < H; i++)
		v[i] = mnt(p, names[i]);
	for (int i = 0; i < H; i++) {
		char n[16];
		snprintf(n, sizeof(n), "f%d", i);
		uint64_t ino = mkfile(v[i], 1, n);
		ck_assert_int_eq(lunfs_open(v[i], ino, LUNFS_OPEN_EXCL, &f[i]), 0);
	}
	static char buf[4096] __attribute__((aligned(4096)));
	memset(buf, 1, sizeof(buf));
	struct dev_stats s0[H], s1[H];
	for (int i = 0; i < H; i++)
		lunfs_dev_stats(v[i], &s0[i]);
	uint64_t t0 = lunfs_now_ms(), worst = 0;
	for (int k = 0; k < N; k++)
		for (int i = 0; i < H; i++) {
			uint64_t a = lunfs_now_ms();
			ck_assert_int_eq(lunfs_pwrite(f[i], buf, sizeof(buf), (uint64_t)k * 2 * sb.file_bs),
					 sizeof(buf));
			if (lunfs_now_ms() - a > worst)
				worst = lunfs_now_ms() - a;
		}
	uint64_t ms = lunfs_now_ms() - t0, caws = 0;
	for (int i = 0; i < H; i++) {
		lunfs_dev_stats(v[i], &s1[i]);
		caws += s1[i].caws - s0[i].caws;
	}
	printf("hosts_thin_writes_keep_their_clusters: fc_count %llu, %d hosts x %d hole writes: %llu ms, worst %llu ms, %llu CAWs\n",
	       (unsigned long long)sb.fc_count, H, N, (unsigned long long)ms, (unsigned long long)worst,
	       (unsigned long long)caws);
	for (int i = 0; i < H; i++) {
		uint64_t mu[5];
		lunfs_test_mu_io(v[i], mu);
		printf("hosts_thin_writes_keep_their_clusters: host %d under v->mu: %llu reads, %llu CAWs\n", i,
		       (unsigned long long)mu[0], (unsigned long long)mu[3]);
	}
	for (int i = 0; i < H; i++) {
		ck_assert_int_eq(lunfs_close(f[i]), 0);
		ck_assert_int_eq(lunfs_unmount(v[i]), 0);
	}
	/* each host allocates from its own cluster: the prefetch must not
	 * take its neighbours' (then every write waits for a yield) */
	ck_assert_uint_lt(caws, 100);
	ck_assert_uint_lt(worst, 250);
	unlink(p);
	free(p);
}
END_TEST

/* Long operations in steps beside other operations on the same file
 * (from a review of tx_step): a slow-write probe holds a step in its
 * journal write while the others come. */
struct step_slow {
	_Atomic int on, writes, ms, read_ms;
};
static pthread_t step_only_tid;
static _Atomic int step_only_set;
static void step_probe(void *a, int op)
{
	struct step_slow *s = a;
	if (op == DEV_OP_READ && s->read_ms)
		usleep(s->read_ms * 1000);
	if (op != DEV_OP_WRITE)
		return;
	s->writes++;
	if (s->on && (!step_only_set || pthread_equal(pthread_self(), step_only_tid)))
		usleep(s->ms * 1000);
}


/* A stepped lazy fallocate of 3 GiB ends: a write past the end (into a
 * hole) and an eager fallocate of the file complete (with of->stepping
 * left set, both waited for ever). */
START_TEST(stepping_ends_with_long_op)
{
	struct lunfs_sb sb;
	char *p = tu_volume(8ULL << 30, &sb);
	struct lunfs_vol *v = mnt(p, "h1");
	uint64_t x = mkfile(v, 1, "x");
	struct lunfs_file *f;
	ck_assert_int_eq(lunfs_open(v, x, LUNFS_OPEN_RW, &f), 0);
	ck_assert_int_eq(lunfs_fallocate(f, 0, 0, 3ULL << 30), 0);
	int st = lunfs_test_stepping(f);
	static struct ez_job w;
	w = (struct ez_job){.f = f, .off = 4ULL << 30};
	memset(w.buf, 0xAB, sizeof(w.buf));
	struct tu_bg tw;
	tu_bg_start(&tw, ez_pwrite, &w);
	int done = tu_bg_wait(&tw, 3000);
	static struct ez_job e;
	e = (struct ez_job){.f = f, .mode = LUNFS_FALLOC_ZERO, .off = 5ULL << 30, .len = MiB};
	struct tu_bg te;
	tu_bg_start(&te, ez_falloc, &e);
	int edone = tu_bg_wait(&te, 3000);
	printf("stepping_ends_with_long_op: after a lazy fallocate of 3 GiB: stepping=%d; "
	       "a write past EOF done within 3 s: %d; an eager fallocate done within 3 s: %d\n",
	       st, done, edone);
	ck_assert_msg(done && edone, "a write or an eager fallocate waits for a long op that ended");
	ck_assert_int_eq(tu_bg_join(&tw), 0);
	ck_assert_int_eq(tu_bg_join(&te), 0);
	ck_assert_int_eq(lunfs_close(f), 0);
	unmount_fsck_remove(v, p);
}
END_TEST

/* Truncates j->ino to j->off. */
static int step_truncate(void *a)
{
	struct ez_job *j = a;
	struct lunfs_setattr sa = {.size = j->off};
	return lunfs_setattr(j->v, j->ino, LUNFS_SET_SIZE, &sa, NULL);
}

struct step_rd { struct lunfs_file *f; uint64_t ms; };
static int step_read(void *a)
{
	struct step_rd *j = a;
	static char b[4096] __attribute__((aligned(4096)));
	uint64_t t0 = lunfs_now_ms();
	ssize_t r = lunfs_pread(j->f, b, sizeof(b), 0);
	j->ms = lunfs_now_ms() - t0;
	return r == 4096 ? 0 : -1;
}

/* A punch of a file whose truncate is between steps waits for the truncate
 * before it drains (ino_lock_settled): no drain and no parked transaction
 * meanwhile, and a cached read of another file does not wait (with the
 * drain first, it waited for the whole truncate: 1112 ms). */
START_TEST(punch_beside_steps_holds_no_drain)
{
	struct lunfs_sb sb;
	char *p = tu_volume(8ULL << 30, &sb);
	struct lunfs_vol *v = mnt(p, "h1");
	uint64_t x = mkfile(v, 1, "x"), y = mkfile(v, 1, "y");
	struct lunfs_file *f1, *fy;
	ck_assert_int_eq(lunfs_open(v, x, LUNFS_OPEN_RW, &f1), 0);
	ck_assert_int_eq(lunfs_open(v, y, LUNFS_OPEN_RW, &fy), 0);
	static char wb[4096] __attribute__((aligned(4096)));
	memset(wb, 1, sizeof(wb));
	ck_assert_int_eq(lunfs_pwrite(fy, wb, sizeof(wb), 0), sizeof(wb));
	ck_assert_int_eq(lunfs_pread(fy, wb, sizeof(wb), 0), sizeof(wb)); /* cached */
	ck_assert_int_eq(lunfs_fallocate(f1, 0, 0, 6ULL << 30), 0);
	ck_assert_int_eq(lunfs_fsync(f1), 0);
	static struct step_slow sl;
	sl.ms = 400;
	dev_set_probe(lunfs_device(v), step_probe, &sl);
	/* a read of y alone, for reference */
	struct step_rd r0 = {.f = fy};
	struct tu_bg tr0;
	tu_bg_start(&tr0, step_read, &r0);
	tu_bg_join(&tr0);
	static struct ez_job t, pu;
	t = (struct ez_job){.v = v, .ino = x};
	pu = (struct ez_job){.f = f1, .mode = LUNFS_FALLOC_PUNCH | LUNFS_FALLOC_KEEP_SIZE,
			     .off = 5ULL << 30, .len = MiB};
	sl.on = 1;
	int w0 = sl.writes;
	uint64_t t0 = lunfs_now_ms();
	struct tu_bg tt, tp, tr;
	tu_bg_start(&tt, step_truncate, &t);
	for (int i = 0; i < 5000 && sl.writes == w0; i++)
		usleep(1000); /* the truncate's first step is in its journal write */
	tu_bg_start(&tp, ez_falloc, &pu);
	usleep(100 * 1000);
	unsigned dr, pk;
	lunfs_test_drain_state(v, &dr, &pk);
	struct step_rd r1 = {.f = fy};
	tu_bg_start(&tr, step_read, &r1);
	int rt = tu_bg_join(&tt);
	uint64_t tdone = lunfs_now_ms() - t0;
	int rp = tu_bg_join(&tp), rr = tu_bg_join(&tr);
	sl.on = 0;
	printf("punch_beside_steps_holds_no_drain: with the truncate between steps and the punch waiting: "
	       "v->draining=%u tx_parked=%u; truncate %d (%llu ms), punch %d; a cached 4 KiB read of "
	       "another file took %llu ms (alone: %llu ms)\n",
	       dr, pk, rt, (unsigned long long)tdone, rp, (unsigned long long)r1.ms,
	       (unsigned long long)r0.ms);
	ck_assert_int_eq(lunfs_close(f1), 0);
	ck_assert_int_eq(lunfs_close(fy), 0);
	unmount_fsck_remove(v, p);
	ck_assert_int_eq(rr, 0);
	ck_assert_msg(dr == 0 && pk == 0, "drain/park held while waiting for a stepping op");
}
END_TEST



/* A lazy fallocate of a file whose other fallocate is in steps waits for
 * the inode's lock, then for the writes into holes pending meanwhile
 * (ino_lock_settled), before it maps: with the wait for writes before the
 * lock's, a write registered during the lock's wait, the fallocate mapped
 * its hole, and the write's group commit failed (-EFSCORRUPTED). */
START_TEST(falloc_beside_steps_keeps_writes)
{
	struct lunfs_sb sb;
	char *p = tu_volume(8ULL << 30, &sb);
	struct lunfs_vol *v = mnt(p, "h1");
	static struct step_slow sl;
	sl.ms = 300;
	dev_set_probe(lunfs_device(v), step_probe, &sl);
	int bad = 0, runs = 2; /* one of each order */
	for (int i = 0; i < runs; i++) {
		char nx[16];
		snprintf(nx, sizeof(nx), "x%d", i);
		uint64_t x = mkfile(v, 1, nx);
		struct lunfs_file *f1, *f2, *f3;
		ck_assert_int_eq(lunfs_open(v, x, LUNFS_OPEN_RW, &f1), 0);
		ck_assert_int_eq(lunfs_open(v, x, LUNFS_OPEN_RW, &f2), 0);
		ck_assert_int_eq(lunfs_open(v, x, LUNFS_OPEN_RW, &f3), 0);
		static struct ez_job a, b, w;
		a = (struct ez_job){.f = f1, .mode = LUNFS_FALLOC_KEEP_SIZE, .off = 0, .len = 2100ULL * MiB};
		b = (struct ez_job){.f = f2, .mode = LUNFS_FALLOC_KEEP_SIZE, .off = 3000ULL * MiB, .len = MiB};
		w = (struct ez_job){.f = f3, .off = 3000ULL * MiB};
		memset(w.buf, 0xCD, sizeof(w.buf));
		sl.on = 1;
		struct tu_bg ta, tb, tw;
		tu_bg_start(&ta, ez_falloc, &a);
		for (int k = 0; k < 10000; k++) {
			if (lunfs_test_stepping(f1))
				break;
			usleep(1000);
		}
		if (i % 2) {
			tu_bg_start(&tw, ez_pwrite, &w);
			usleep(50 * 1000);
			tu_bg_start(&tb, ez_falloc, &b);
		} else {
			tu_bg_start(&tb, ez_falloc, &b);
			usleep(50 * 1000);
			tu_bg_start(&tw, ez_pwrite, &w);
		}
		int ra = tu_bg_join(&ta), rb = tu_bg_join(&tb), rw = tu_bg_join(&tw);
		sl.on = 0;
		printf("falloc_beside_steps_keeps_writes run %d: falloc A %d, falloc B %d, write %d\n", i, ra, rb, rw);
		bad += rw != 0;
			lunfs_close(f1);
		lunfs_close(f2);
		lunfs_close(f3);
		lunfs_unlink(v, 1, nx);
	}
	ck_assert_int_eq(lunfs_unmount(v), 0);
	unlink(p);
	free(p);
	ck_assert_msg(!bad, "%d of %d writes failed", bad, runs);
}
END_TEST


static int step_close(void *a)
{
	return lunfs_close((struct lunfs_file *)a);
}

/* A READ open of an unlinked file while its last close frees it in steps
 * waits for the close and then fails (-ENOENT: the inode is free) instead
 * of taking the open file that the close then frees (of->closing). */
START_TEST(read_open_beside_last_close_release)
{
	struct lunfs_sb sb;
	char *p = tu_volume(8ULL << 30, &sb);
	struct lunfs_vol *v = mnt(p, "h1");
	uint64_t x = mkfile(v, 1, "x");
	struct lunfs_file *f, *f2 = NULL;
	ck_assert_int_eq(lunfs_open(v, x, LUNFS_OPEN_RW, &f), 0);
	ck_assert_int_eq(lunfs_fallocate(f, 0, 0, 3ULL << 30), 0);
	ck_assert_int_eq(lunfs_unlink(v, 1, "x"), 0);
	static struct step_slow sl;
	sl.ms = 400;
	dev_set_probe(lunfs_device(v), step_probe, &sl);
	sl.on = 1;
	int w0 = sl.writes;
	struct tu_bg tc;
	tu_bg_start(&tc, step_close, f);
	for (int i = 0; i < 5000 && sl.writes == w0; i++)
		usleep(1000);
	usleep(50 * 1000);
	int ro = lunfs_open(v, x, LUNFS_OPEN_READ, &f2);
	int rc = tu_bg_join(&tc);
	sl.on = 0;
	int listed = ro == 0 && lunfs_test_file_listed(f2);
	printf("read_open_beside_last_close_release: close %d; READ open during its release: %d; "
	       "the new handle's ofile still in the table after the close: %d\n", rc, ro, listed);
	ck_assert_msg(ro != 0 || listed, "READ open got an ofile that last_close freed");
	if (ro == 0 && listed)
		lunfs_close(f2);
	unmount_fsck_remove(v, p);
}
END_TEST


/* step_truncate with only this thread's writes slowed. */
static int step_trunc_to(void *a)
{
	step_only_tid = pthread_self();
	step_only_set = 1;
	return step_truncate(a);
}

/* A handoff of a file whose truncate is between steps waits for the
 * truncate (vl_wait_acquired), and succeeds (it failed with -EBUSY: the
 * truncate pinned the lock too). */
START_TEST(handoff_waits_for_steps)
{
	struct lunfs_sb sb;
	char *p = tu_volume(8ULL << 30, &sb);
	struct lunfs_vol *a = mnt(p, "h1"), *b = mnt(p, "h2");
	uint64_t x = mkfile(a, 1, "x");
	struct lunfs_file *f;
	ck_assert_int_eq(lunfs_open(a, x, LUNFS_OPEN_RW, &f), 0);
	ck_assert_int_eq(lunfs_fallocate(f, 0, 0, 6ULL << 30), 0);
	ck_assert_int_eq(lunfs_fsync(f), 0);
	static struct step_slow sl;
	sl.ms = 300;
	dev_set_probe(lunfs_device(a), step_probe, &sl);
	static struct ez_job t;
	t = (struct ez_job){.v = a, .ino = x, .off = 0};
	sl.on = 1;
	int w0 = sl.writes;
	struct tu_bg tt;
	tu_bg_start(&tt, step_trunc_to, &t);
	for (int i = 0; i < 5000 && sl.writes == w0; i++)
		usleep(1000);
	usleep(50 * 1000);
	int rh = lunfs_handoff(a, x, "h2");
	int rt = tu_bg_join(&tt);
	sl.on = 0;
	printf("handoff_waits_for_steps: truncate %d; handoff during its steps: %d\n", rt, rh);
	lunfs_close(f);
	lunfs_unmount(b);
	lunfs_unmount(a);
	unlink(p);
	free(p);
	ck_assert_int_eq(rh, 0);
}
END_TEST

/* A truncate and a punch of one file, both pinned its lock and wait in
 * their drains for a read of another file in flight; the truncate goes
 * first and takes the inode over at its first step (tx_step), and the
 * punch, which pinned before that, must wait for the truncate's end before
 * it reads the inode (ino_lock_settled).  Without that, the punch read the
 * truncate's first step, freed blocks, and the truncate, going on from its
 * own copy, freed them again. */
START_TEST(truncate_beside_punch_of_one_file)
{
	for (int run = 0; run < 3; run++) {
		struct lunfs_sb sb;
		char *p = tu_volume(8ULL << 30, &sb);
		struct lunfs_vol *v = mnt(p, "h1");
		uint64_t x = mkfile(v, 1, "x"), y = mkfile(v, 1, "y");
		struct lunfs_file *f1, *f2, *fy;
		ck_assert_int_eq(lunfs_open(v, x, LUNFS_OPEN_RW, &f1), 0);
		ck_assert_int_eq(lunfs_open(v, x, LUNFS_OPEN_RW, &f2), 0);
		ck_assert_int_eq(lunfs_open(v, y, LUNFS_OPEN_RW, &fy), 0);
		static char wb[4096] __attribute__((aligned(4096)));
		memset(wb, 1, sizeof(wb));
		ck_assert_int_eq(lunfs_pwrite(fy, wb, sizeof(wb), 0), sizeof(wb));
		ck_assert_int_eq(lunfs_pread(fy, wb, sizeof(wb), 0), sizeof(wb));
		ck_assert_int_eq(lunfs_fallocate(f1, 0, 0, 6ULL << 30), 0);
		ck_assert_int_eq(lunfs_fsync(f1), 0);
		static struct step_slow sl;
		sl = (struct step_slow){.ms = 200};
		dev_set_probe(lunfs_device(v), step_probe, &sl);
		struct step_rd rd = {.f = fy};
		static struct ez_job t, pu;
		t = (struct ez_job){.v = v, .ino = x};
		pu = (struct ez_job){.f = f2, .mode = LUNFS_FALLOC_PUNCH | LUNFS_FALLOC_KEEP_SIZE,
				     .off = 5ULL << 30, .len = 1ULL << 30};
		struct tu_bg tr, tt, tp;
		sl.read_ms = 400; /* y's read stays in flight: both drains wait */
		tu_bg_start(&tr, step_read, &rd);
		usleep(50 * 1000);
		sl.read_ms = 0;
		sl.on = 1;
		tu_bg_start(&tt, step_truncate, &t);
		usleep(30 * 1000);
		tu_bg_start(&tp, ez_falloc, &pu);
		int rr = tu_bg_join(&tr), rt = tu_bg_join(&tt), rp = tu_bg_join(&tp);
		sl.on = 0;
		printf("truncate_beside_punch_of_one_file run %d: read %d, truncate %d, punch %d\n", run,
		       rr, rt, rp);
		ck_assert_int_eq(rt, 0);
		ck_assert_int_eq(rp, 0);
		ck_assert_int_eq(lunfs_close(f1), 0);
		ck_assert_int_eq(lunfs_close(f2), 0);
		ck_assert_int_eq(lunfs_close(fy), 0);
		unmount_fsck_remove(v, p);
	}
}
END_TEST

/* A delete of a file while its truncate, listed in the orphan directory
 * (a truncate that may take steps), runs: the delete finds the entry
 * there and keeps it (it failed with -EEXIST), the truncate's end leaves
 * it to the delete (the inode has no link any more), and the file is
 * freed; fsck is clean. */
static int step_unlink(void *a)
{
	struct ez_job *j = a;
	return lunfs_unlink(j->v, 1, "x");
}

START_TEST(unlink_beside_listed_truncate)
{
	struct lunfs_sb sb;
	struct lunfs_statfs s0, s1;
	char *p = tu_volume(8ULL << 30, &sb);
	struct lunfs_vol *v = mnt(p, "h1");
	uint64_t x = mkfile(v, 1, "x");
	struct lunfs_file *f;
	ck_assert_int_eq(lunfs_statfs(v, &s0), 0);
	ck_assert_int_eq(lunfs_open(v, x, LUNFS_OPEN_RW, &f), 0);
	ck_assert_int_eq(lunfs_fallocate(f, 0, 0, 6ULL << 30), 0);
	ck_assert_int_eq(lunfs_close(f), 0);
	static struct step_slow sl;
	sl = (struct step_slow){.ms = 200};
	dev_set_probe(lunfs_device(v), step_probe, &sl);
	static struct ez_job t, u;
	t = (struct ez_job){.v = v, .ino = x};
	u = (struct ez_job){.v = v};
	sl.on = 1;
	int w0 = sl.writes;
	struct tu_bg tt, tu;
	tu_bg_start(&tt, step_truncate, &t);
	for (int i = 0; i < 5000 && sl.writes < w0 + 2; i++)
		usleep(1000); /* listed, and the truncate's first step is writing */
	tu_bg_start(&tu, step_unlink, &u);
	int rt = tu_bg_join(&tt), ru = tu_bg_join(&tu);
	sl.on = 0;
	printf("unlink_beside_listed_truncate: truncate %d, unlink %d\n", rt, ru);
	ck_assert(rt == 0 || rt == -ENOENT); /* -ENOENT: the unlink came first */
	ck_assert_int_eq(ru, 0);
	struct lunfs_stat st;
	ck_assert_int_eq(lunfs_getattr(v, x, &st), -ENOENT);
	ck_assert_int_eq(lunfs_statfs(v, &s1), 0);
	ck_assert_uint_eq(s1.bfree, s0.bfree); /* every block came back */
	unmount_fsck_remove(v, p);
}
END_TEST

Suite *fs_suite(void)
{
	Suite *s = suite_create("fs");
	TCase *tc = tcase_create("core");
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, namespace_ops);
	tcase_add_test(tc, file_io);
	tcase_add_test(tc, thick_and_zeroing);
	tcase_add_test(tc, open_modes);
	tcase_add_test(tc, migration_open_modes);
	tcase_add_test(tc, crash_replay_and_orphans);
	tcase_add_test(tc, file_64t);
	tcase_add_test(tc, big_alloc_and_free);
	tcase_add_test(tc, online_grow);
	tcase_add_test(tc, many_xattrs);
	tcase_add_test(tc, io_statistics_published);
	tcase_add_test(tc, async_queue);
	tcase_add_test(tc, aio_engine);
	tcase_add_test(tc, event_loop_queue);
	tcase_add_test(tc, failed_tx_rereads_committed);
	tcase_add_test(tc, commit_outside_volume_mutex);
	tcase_add_test(tc, punch_never_recaches_freed_block);
	tcase_add_test(tc, metadata_waits_outside_volume_mutex);
	tcase_add_test(tc, aio_lookup_outside_volume_mutex);
	tcase_add_test(tc, linger_checkpoint_outside_volume_mutex);
	tcase_add_test(tc, seals_leave_checkpoints_to_linger);
	tcase_add_test(tc, lock_upgrade_outside_volume_mutex);
	tcase_add_test(tc, close_commits_outside_volume_mutex);
	tcase_add_test(tc, create_does_no_io_under_volume_mutex);
	tcase_add_test(tc, long_ops_step_outside_volume_mutex);
	tcase_add_test(tc, truncate_steps_survive_power_cuts);
	tcase_add_test(tc, enospc_reads_superblock_outside_volume_mutex);
	tcase_add_test(tc, stepping_ends_with_long_op);
	tcase_add_test(tc, punch_beside_steps_holds_no_drain);
	tcase_add_test(tc, falloc_beside_steps_keeps_writes);
	tcase_add_test(tc, read_open_beside_last_close_release);
	tcase_add_test(tc, handoff_waits_for_steps);
	tcase_add_test(tc, truncate_beside_punch_of_one_file);
	tcase_add_test(tc, unlink_beside_listed_truncate);
	tcase_add_test(tc, eager_fallocate_zeroes_outside_volume_mutex);
	tcase_add_test(tc, allocation_loads_clusters_outside_volume_mutex);
	tcase_add_test(tc, open_does_no_io_under_volume_mutex);
	tcase_add_test(tc, two_eager_fallocates_keep_writes);
	tcase_add_test(tc, eager_fallocate_beside_parked_truncate);
	tcase_add_test(tc, handoff_during_eager_zeroing);
	tcase_add_test(tc, hosts_thin_writes_keep_their_clusters);
	tcase_add_test(tc, last_close_releases_outside_volume_mutex);
	tcase_add_test(tc, failed_op_beside_commit_in_flight);
	tcase_add_test(tc, truncate_zeroes_after_pending_checkpoint);
	tcase_add_test(tc, group_commit_holes);
	tcase_add_test(tc, group_commit_batches);
	tcase_add_test(tc, group_commit_enospc);
	tcase_add_test(tc, group_commit_faults);
	tcase_add_test(tc, truncate_zeroes_with_its_commit);
	suite_add_tcase(s, tc);
	return s;
}
