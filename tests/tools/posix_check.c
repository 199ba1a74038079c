/* posix_check DIR: POSIX behaviour of a mounted file system, checked for
 * real through the kernel.  Run as root on an empty directory of the mount;
 * some checks drop to uid/gid 1000 in a child.  Prints one line per check,
 * and "posix: N passed, N failed" at the end; exit 1 on any failure.
 * With --after-remount, checks only what an earlier run left behind. */
#include <dirent.h>
#include <stdint.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <time.h>
#include <unistd.h>

static int passed, failed;
static char D[4096];

#define CHECK(cond, ...)                                                                          \
	do {                                                                                      \
		if (cond) {                                                                       \
			passed++;                                                                 \
		} else {                                                                          \
			failed++;                                                                 \
			printf("FAIL %s:%d: ", __FILE__, __LINE__);                               \
			printf(__VA_ARGS__);                                                      \
			printf(" (errno %d %s)\n", errno, strerror(errno));                       \
		}                                                                                 \
	} while (0)

static char *P(const char *name)
{
	static char buf[8][4400];
	static int k;
	k = (k + 1) % 8;
	snprintf(buf[k], sizeof(buf[k]), "%s/%s", D, name);
	return buf[k];
}

static void put(const char *name, const char *data)
{
	int fd = open(P(name), O_CREAT | O_TRUNC | O_WRONLY, 0644);
	CHECK(fd >= 0, "create %s", name);
	CHECK(write(fd, data, strlen(data)) == (ssize_t)strlen(data), "write %s", name);
	close(fd);
}

static int get(const char *name, char *buf, size_t n)
{
	int fd = open(P(name), O_RDONLY);
	if (fd < 0)
		return -1;
	ssize_t r = read(fd, buf, n - 1);
	close(fd);
	buf[r < 0 ? 0 : r] = 0;
	return r;
}

static int ts_after(struct timespec a, struct timespec b) /* a >= b */
{
	return a.tv_sec > b.tv_sec || (a.tv_sec == b.tv_sec && a.tv_nsec >= b.tv_nsec);
}

static void t_files(void)
{
	char b[256];
	struct stat st;
	put("f", "hello");
	CHECK(get("f", b, sizeof(b)) == 5 && !strcmp(b, "hello"), "read back");
	int fd = open(P("f"), O_WRONLY | O_APPEND);
	CHECK(write(fd, " world", 6) == 6, "append");
	close(fd);
	CHECK(get("f", b, sizeof(b)) == 11 && !strcmp(b, "hello world"), "after append: %s", b);
	put("g", "a longer first version");
	put("g", "short");
	CHECK(get("g", b, sizeof(b)) == 5 && !strcmp(b, "short"), "open(O_TRUNC) then a shorter write: %s", b);
	CHECK(stat(P("g"), &st) == 0 && st.st_size == 5, "size after open(O_TRUNC): %lld", (long long)st.st_size);
	CHECK(unlink(P("g")) == 0, "unlink g");
	CHECK(truncate(P("f"), 4) == 0 && get("f", b, sizeof(b)) == 4 && !strcmp(b, "hell"), "truncate down");
	CHECK(truncate(P("f"), 8192) == 0 && stat(P("f"), &st) == 0 && st.st_size == 8192, "truncate up");
	fd = open(P("f"), O_RDONLY);
	CHECK(pread(fd, b, 10, 4) == 10 && b[0] == 0 && b[9] == 0, "extended part reads zeros");
	close(fd);
	fd = open(P("f"), O_RDWR);
	CHECK(fsync(fd) == 0 && fdatasync(fd) == 0, "fsync");
	close(fd);
	/* O_EXCL */
	CHECK(open(P("f"), O_CREAT | O_EXCL | O_WRONLY, 0644) < 0 && errno == EEXIST, "O_EXCL");
}

static void t_names(void)
{
	char name[300];
	memset(name, 'n', 255);
	name[255] = 0;
	int fd = open(P(name), O_CREAT | O_WRONLY, 0644);
	CHECK(fd >= 0, "255-byte name");
	close(fd);
	CHECK(unlink(P(name)) == 0, "unlink 255-byte name");
	name[255] = 'n';
	name[256] = 0;
	CHECK(open(P(name), O_CREAT | O_WRONLY, 0644) < 0 && errno == ENAMETOOLONG, "256 bytes: ENAMETOOLONG");
}

static void t_dirs(void)
{
	struct stat st, st2;
	CHECK(mkdir(P("d1"), 0755) == 0 && mkdir(P("d2"), 0755) == 0, "mkdir");
	CHECK(stat(P("d1"), &st) == 0 && st.st_nlink == 2, "new dir nlink 2");
	CHECK(mkdir(P("d1/sub"), 0755) == 0 && stat(P("d1"), &st) == 0 && st.st_nlink == 3, "subdir nlink");
	put("d1/sub/x", "x");
	CHECK(rmdir(P("d1/sub")) < 0 && errno == ENOTEMPTY, "rmdir ENOTEMPTY");
	CHECK(unlink(P("d1/sub/x")) == 0 && rmdir(P("d1/sub")) == 0, "rmdir empty");
	CHECK(stat(P("d1"), &st) == 0 && st.st_nlink == 2, "nlink after rmdir");
	/* rename across directories, onto an existing file */
	put("d1/a", "A");
	put("d2/b", "B");
	CHECK(rename(P("d1/a"), P("d2/b")) == 0, "rename onto existing");
	char buf[8];
	CHECK(get("d2/b", buf, sizeof(buf)) == 1 && buf[0] == 'A', "replaced content");
	CHECK(access(P("d1/a"), F_OK) < 0 && errno == ENOENT, "source gone");
	CHECK(mkdir(P("d1/m"), 0755) == 0 && rename(P("d1/m"), P("d2/m")) == 0, "move directory");
	CHECK(stat(P("d1"), &st) == 0 && st.st_nlink == 2 && stat(P("d2"), &st2) == 0 && st2.st_nlink == 3,
	      "nlink after directory move");
	CHECK(rename(P("d2"), P("d2/m/in")) < 0 && errno == EINVAL, "rename into own subtree");
	/* readdir during changes: every entry present before and after is seen once */
	for (int i = 0; i < 60; i++) {
		char n[32];
		snprintf(n, sizeof(n), "d1/e%02d", i);
		put(n, "e");
	}
	DIR *dir = opendir(P("d1"));
	int seen[60] = {0}, k = 0;
	struct dirent *de;
	while ((de = readdir(dir))) {
		int i;
		if (sscanf(de->d_name, "e%d", &i) == 1 && i >= 0 && i < 60)
			seen[i]++;
		if (k++ == 10) { /* change the directory in the middle */
			unlink(P("d1/e59"));
			put("d1/new", "n");
		}
	}
	closedir(dir);
	int ok = 1;
	for (int i = 0; i < 59; i++)
		ok &= seen[i] == 1;
	CHECK(ok, "readdir during changes sees each stable entry once");
}

/* A symlink target of n bytes: path components, so it is a real path. */
static void long_target(char *t, size_t n)
{
	for (size_t i = 0; i < n; i++)
		t[i] = i % 16 == 15 ? '/' : 'a' + i % 26;
	t[n] = 0;
}

/* Targets up to PATH_MAX - 1 bytes, as on ext4: inline (<= 1024 bytes)
 * and in a file block.  "longsym" is kept for the check after a remount. */
static void t_long_symlinks(void)
{
	static const size_t lens[] = {1024, 1025, 2048, 4095};
	char t[4097], b[4097];
	struct stat st;
	for (size_t i = 0; i < sizeof(lens) / sizeof(lens[0]); i++) {
		char name[32];
		snprintf(name, sizeof(name), "sym%zu", lens[i]);
		long_target(t, lens[i]);
		CHECK(symlink(t, P(name)) == 0, "symlink of %zu bytes", lens[i]);
		CHECK(readlink(P(name), b, sizeof(b)) == (ssize_t)lens[i] && !memcmp(b, t, lens[i]),
		      "readlink of %zu bytes", lens[i]);
		CHECK(lstat(P(name), &st) == 0 && S_ISLNK(st.st_mode) && st.st_size == (off_t)lens[i],
		      "lstat size of a %zu-byte symlink: %lld", lens[i], (long long)st.st_size);
		CHECK(unlink(P(name)) == 0, "unlink %zu-byte symlink", lens[i]);
	}
	long_target(t, 4096);
	CHECK(symlink(t, P("sym4096")) < 0 && errno == ENAMETOOLONG, "symlink of 4096 bytes: ENAMETOOLONG");
	long_target(t, 4095);
	CHECK(symlink(t, P("longsym")) == 0, "symlink kept for the remount");
}

/* Reads all of a file; returns 1 if it could. */
static int read_all(const char *path)
{
	char b[65536];
	int fd = open(path, O_RDONLY);
	ssize_t n;
	if (fd < 0)
		return 0;
	while ((n = read(fd, b, sizeof(b))) > 0)
		;
	close(fd);
	return n == 0;
}

/* After a remount: what the first run left is still there. */
static void t_after_remount(void)
{
	char t[4097], b[4097];
	struct stat st;
	long_target(t, 4095);
	CHECK(readlink(P("longsym"), b, sizeof(b)) == 4095 && !memcmp(b, t, 4095),
	      "4095-byte symlink after a remount");
	CHECK(lstat(P("longsym"), &st) == 0 && st.st_size == 4095, "its size after a remount");
	/* noatime: a read leaves the access time alone */
	struct timespec t2[2] = {{1000, 0}, {0, UTIME_OMIT}};
	CHECK(utimensat(AT_FDCWD, P("zr"), t2, 0) == 0 && read_all(P("zr")) && stat(P("zr"), &st) == 0 &&
	      st.st_atim.tv_sec == 1000, "a read does not change atime (%lld)", (long long)st.st_atim.tv_sec);
}

/* An open file or directory that rename replaces lives until its last
 * close, like one unlinked while open. */
static void t_replaced_while_open(void)
{
	struct stat st;
	char b[16];
	put("rv", "victim");
	put("rs", "source");
	int fd = open(P("rv"), O_RDONLY);
	CHECK(fd >= 0 && rename(P("rs"), P("rv")) == 0, "rename over an open file");
	CHECK(fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && st.st_nlink == 0 && st.st_size == 6,
	      "fstat of the replaced file (nlink %lu)", (unsigned long)st.st_nlink);
	CHECK(pread(fd, b, 6, 0) == 6 && !memcmp(b, "victim", 6), "read of the replaced file");
	close(fd);
	CHECK(get("rv", b, sizeof(b)) == 6 && !strcmp(b, "source"), "the new file under the name");
	CHECK(mkdir(P("rdv"), 0755) == 0 && mkdir(P("rds"), 0755) == 0, "two directories");
	fd = open(P("rdv"), O_RDONLY | O_DIRECTORY);
	CHECK(fd >= 0 && rename(P("rds"), P("rdv")) == 0, "rename over an open directory");
	CHECK(fstat(fd, &st) == 0 && S_ISDIR(st.st_mode), "fstat of the replaced directory");
	DIR *dir = fdopendir(fd);
	int n = 0;
	while (dir && readdir(dir))
		n++;
	CHECK(dir && n <= 2, "readdir of the replaced directory: %d entries", n);
	if (dir)
		closedir(dir);
	fd = open(P("rdv"), O_RDONLY | O_DIRECTORY);
	CHECK(fd >= 0 && rmdir(P("rdv")) == 0 && fstat(fd, &st) == 0 && S_ISDIR(st.st_mode),
	      "fstat of a directory removed while open");
	close(fd);
}

static void t_links(void)
{
	struct stat st, st2;
	put("l1", "data");
	CHECK(stat(P("l1"), &st) == 0, "stat");
	struct timespec ts = {0, 20 * 1000000};
	nanosleep(&ts, NULL);
	CHECK(link(P("l1"), P("l2")) == 0, "link");
	CHECK(stat(P("l1"), &st2) == 0 && st2.st_nlink == 2, "nlink 2 after link");
	CHECK(ts_after(st2.st_ctim, st.st_ctim) && memcmp(&st2.st_ctim, &st.st_ctim, sizeof(st.st_ctim)),
	      "ctime changes at link");
	nanosleep(&ts, NULL);
	CHECK(rename(P("l2"), P("l3")) == 0 && stat(P("l3"), &st) == 0 && st.st_nlink == 2, "rename keeps nlink");
	CHECK(ts_after(st.st_ctim, st2.st_ctim) && memcmp(&st2.st_ctim, &st.st_ctim, sizeof(st.st_ctim)),
	      "ctime changes at rename");
	CHECK(unlink(P("l3")) == 0 && stat(P("l1"), &st) == 0 && st.st_nlink == 1, "nlink 1 after unlink");
	CHECK(symlink("l1", P("sym")) == 0, "symlink");
	char b[64] = {0};
	CHECK(readlink(P("sym"), b, sizeof(b)) == 2 && !strcmp(b, "l1"), "readlink");
	CHECK(get("sym", b, sizeof(b)) == 4 && !strcmp(b, "data"), "read through symlink");
	CHECK(lstat(P("sym"), &st) == 0 && S_ISLNK(st.st_mode), "lstat symlink");
	t_long_symlinks();
	/* unlink while open: the file lives until the last close */
	put("u", "still here");
	int fd = open(P("u"), O_RDWR);
	CHECK(unlink(P("u")) == 0 && access(P("u"), F_OK) < 0, "unlink open file");
	CHECK(pread(fd, b, 10, 0) == 10 && !memcmp(b, "still here", 10), "read after unlink");
	CHECK(pwrite(fd, "X", 1, 0) == 1 && fstat(fd, &st) == 0 && st.st_nlink == 0, "write after unlink");
	close(fd);
	t_replaced_while_open();
	CHECK(mkfifo(P("fifo"), 0644) == 0 && stat(P("fifo"), &st) == 0 && S_ISFIFO(st.st_mode), "mkfifo");
	CHECK(mknod(P("cdev"), S_IFCHR | 0644, makedev(1, 3)) == 0 && stat(P("cdev"), &st) == 0 &&
	      S_ISCHR(st.st_mode) && st.st_rdev == makedev(1, 3), "mknod char device");
}

static void t_attrs(void)
{
	struct stat st;
	put("a", "attr");
	CHECK(chmod(P("a"), 0600) == 0 && stat(P("a"), &st) == 0 && (st.st_mode & 07777) == 0600, "chmod");
	CHECK(chown(P("a"), 1234, 5678) == 0 && stat(P("a"), &st) == 0 && st.st_uid == 1234 && st.st_gid == 5678,
	      "chown");
	struct timespec t[2] = {{1000, 111}, {2000, 222}};
	CHECK(utimensat(AT_FDCWD, P("a"), t, 0) == 0 && stat(P("a"), &st) == 0 && st.st_atim.tv_sec == 1000 &&
	      st.st_atim.tv_nsec == 111 && st.st_mtim.tv_sec == 2000 && st.st_mtim.tv_nsec == 222,
	      "utimes with nanoseconds");
	struct timespec o[2] = {{0, UTIME_OMIT}, {0, UTIME_NOW}};
	CHECK(utimensat(AT_FDCWD, P("a"), o, 0) == 0 && stat(P("a"), &st) == 0 && st.st_atim.tv_sec == 1000 &&
	      st.st_mtim.tv_sec > 1000000, "UTIME_OMIT keeps atime, UTIME_NOW sets mtime");
	/* xattrs as libvirt and QEMU use them */
	CHECK(setxattr(P("a"), "user.libvirt.owner", "qemu", 4, 0) == 0, "setxattr");
	char v[64];
	CHECK(getxattr(P("a"), "user.libvirt.owner", v, sizeof(v)) == 4 && !memcmp(v, "qemu", 4), "getxattr");
	CHECK(setxattr(P("a"), "user.libvirt.owner", "x", 1, XATTR_CREATE) < 0 && errno == EEXIST, "XATTR_CREATE");
	CHECK(listxattr(P("a"), v, sizeof(v)) == 19, "listxattr");
	CHECK(removexattr(P("a"), "user.libvirt.owner") == 0 &&
	      getxattr(P("a"), "user.libvirt.owner", v, sizeof(v)) < 0 && errno == ENODATA, "removexattr");
	struct statvfs sv;
	CHECK(statvfs(D, &sv) == 0 && sv.f_blocks > 0 && sv.f_bfree <= sv.f_blocks && sv.f_namemax == 255, "statfs");
}

/* Ownership, the setgid rule, permission checks and suid clearing, as a
 * user: the kernel checks (default_permissions), lunfs stores. */
/* Many small xattrs on one file, as ext4 with a 4 KiB block holds a few
 * hundred and xfstests (generic/020) expects 1000 of a FUSE filesystem;
 * a value of a few KiB.  --after-remount reads them back. */
static void t_many_xattrs(void)
{
	char name[64], v[64];
	static char list[65536];
	int n = 0, ok = 1;
	put("xa", "x");
	for (int i = 0; i < 1000 && ok; i++) {
		snprintf(name, sizeof(name), "user.attribute_%03d", i);
		snprintf(v, sizeof(v), "value_%03d", i);
		ok = setxattr(P("xa"), name, v, strlen(v), XATTR_CREATE) == 0;
		n += ok;
	}
	CHECK(n == 1000, "1000 xattrs on one file (%d set)", n);
	CHECK(listxattr(P("xa"), list, sizeof(list)) == 1000 * 19, "listxattr of 1000 names");
	CHECK(getxattr(P("xa"), "user.attribute_777", v, sizeof(v)) == 9 && !memcmp(v, "value_777", 9),
	      "getxattr among 1000");
	static char big[3000];
	memset(big, 'z', sizeof(big));
	CHECK(setxattr(P("xa"), "user.big", big, sizeof(big), 0) == 0 &&
	      getxattr(P("xa"), "user.big", list, sizeof(list)) == (ssize_t)sizeof(big), "a 3000-byte xattr value");
	for (int i = 0; i < 1000; i += 2) {
		snprintf(name, sizeof(name), "user.attribute_%03d", i);
		removexattr(P("xa"), name);
	}
	CHECK(listxattr(P("xa"), list, sizeof(list)) == 500 * 19 + 9, "500 removed");
}

static void t_many_xattrs_after(void)
{
	char v[64];
	static char list[65536];
	CHECK(listxattr(P("xa"), list, sizeof(list)) == 500 * 19 + 9, "xattrs kept over a remount");
	CHECK(getxattr(P("xa"), "user.attribute_999", v, sizeof(v)) == 9 && !memcmp(v, "value_999", 9),
	      "an xattr from a block read back after the remount");
	CHECK(unlink(P("xa")) == 0, "unlink the file with 500 xattrs");
}

static void t_users(void)
{
	struct stat st;
	CHECK(mkdir(P("sg"), 0777) == 0 && chown(P("sg"), 0, 4321) == 0 && chmod(P("sg"), 02777) == 0,
	      "setgid directory");
	CHECK(mkdir(P("priv"), 0700) == 0, "private directory");
	put("suid", "#!/bin/sh\n");
	CHECK(chown(P("suid"), 1000, 1000) == 0 && chmod(P("suid"), 06755) == 0, "setuid file");
	pid_t pid = fork();
	if (pid == 0) {
		int bad = 0;
		if (setgid(1000) || setuid(1000))
			_exit(99);
		int fd = open(P("sg/mine"), O_CREAT | O_WRONLY, 0644);
		struct stat s;
		if (fd < 0 || fstat(fd, &s) || s.st_uid != 1000 || s.st_gid != 4321)
			bad |= 1; /* owner is the caller, group from the setgid dir */
		close(fd);
		if (mkdir(P("sg/sub"), 0755) || stat(P("sg/sub"), &s) || !(s.st_mode & S_ISGID))
			bad |= 2; /* subdirectories inherit setgid */
		if (open(P("priv/x"), O_CREAT | O_WRONLY, 0644) >= 0 || errno != EACCES)
			bad |= 4; /* permission checks */
		fd = open(P("suid"), O_WRONLY | O_APPEND);
		if (fd < 0 || write(fd, "echo\n", 5) != 5)
			bad |= 8;
		close(fd);
		_exit(bad);
	}
	int status;
	waitpid(pid, &status, 0);
	int bad = WIFEXITED(status) ? WEXITSTATUS(status) : 255;
	CHECK(!(bad & 1), "new file: caller's uid, setgid directory's gid");
	CHECK(!(bad & 2), "new subdirectory inherits setgid");
	CHECK(!(bad & 4), "EACCES in a directory without permission");
	CHECK(!(bad & 8), "owner can write its setuid file");
	CHECK(stat(P("suid"), &st) == 0 && !(st.st_mode & (S_ISUID | S_ISGID)), "setuid/setgid cleared by write");
	CHECK(chmod(P("suid"), 06755) == 0 && chown(P("suid"), 1001, 1001) == 0 && stat(P("suid"), &st) == 0 &&
	      !(st.st_mode & S_ISUID), "setuid cleared by chown");
}

static void t_direct(void)
{
	void *buf;
	if (posix_memalign(&buf, 4096, 1 << 20))
		return;
	memset(buf, 0x5a, 1 << 20);
	int fd = open(P("direct"), O_CREAT | O_RDWR | O_DIRECT, 0644);
	CHECK(fd >= 0, "open O_DIRECT");
	CHECK(pwrite(fd, buf, 1 << 20, 0) == 1 << 20, "O_DIRECT write 1 MiB");
	CHECK(pwrite(fd, buf, 4096, 3 << 20) == 4096, "O_DIRECT write 4 KiB past a hole");
	memset(buf, 0, 1 << 20);
	CHECK(pread(fd, buf, 1 << 20, 0) == 1 << 20 && ((unsigned char *)buf)[12345] == 0x5a, "O_DIRECT read");
	CHECK(pread(fd, buf, 4096, 2 << 20) == 4096 && ((unsigned char *)buf)[100] == 0, "O_DIRECT read of a hole");
	close(fd);
	free(buf);
}

/* Every byte of [off, off+len) of fd is c. */
static int all_are(int fd, off_t off, size_t len, int c)
{
	static char b[1 << 16];
	while (len) {
		size_t n = len < sizeof(b) ? len : sizeof(b);
		if (pread(fd, b, n, off) != (ssize_t)n)
			return 0;
		for (size_t i = 0; i < n; i++)
			if (b[i] != (char)c)
				return 0;
		off += n;
		len -= n;
	}
	return 1;
}

static int fill(int fd, off_t off, size_t len, int c)
{
	char *b = malloc(len);
	memset(b, c, len);
	int ok = pwrite(fd, b, len, off) == (ssize_t)len;
	free(b);
	return ok;
}

/* The fallocate modes QEMU and qemu-img use on a raw image: allocate
 * (preallocation=falloc), KEEP_SIZE, PUNCH_HOLE|KEEP_SIZE (discard) and
 * ZERO_RANGE with and without KEEP_SIZE (write-zeroes).  Ranges cross
 * file blocks and start and end inside them.  "zr" is kept for the check
 * after a remount. */
static void t_fallocate(void)
{
	const off_t M = 1 << 20;
	struct stat st, st2;
	int fd = open(P("zr"), O_CREAT | O_RDWR, 0644);
	CHECK(fd >= 0, "create zr");
	CHECK(fallocate(fd, 0, 0, 3 * M) == 0 && fstat(fd, &st) == 0 && st.st_size == 3 * M &&
	      st.st_blocks >= 3 * M / 512, "fallocate: size %lld, blocks %lld", (long long)st.st_size,
	      (long long)st.st_blocks);
	CHECK(all_are(fd, 0, 3 * M, 0), "fallocated range reads zeros");
	CHECK(fallocate(fd, FALLOC_FL_KEEP_SIZE, 3 * M, M) == 0 && fstat(fd, &st2) == 0 &&
	      st2.st_size == 3 * M && st2.st_blocks > st.st_blocks, "fallocate KEEP_SIZE");
	CHECK(fill(fd, 0, 3 * M, 'a'), "write 3 MiB");
	CHECK(fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 100, 2 * M) == 0, "punch hole");
	CHECK(all_are(fd, 0, 100, 'a') && all_are(fd, 100, 2 * M, 0) && all_are(fd, 100 + 2 * M, M - 100, 'a'),
	      "punched range reads zeros, the rest is kept");
	CHECK(fill(fd, 0, 3 * M, 'b'), "rewrite 3 MiB");
	CHECK(fstat(fd, &st) == 0, "fstat");
	errno = 0;
	CHECK(fallocate(fd, FALLOC_FL_ZERO_RANGE, 1000, M + M / 2 + 7) == 0, "zero range");
	CHECK(all_are(fd, 0, 1000, 'b') && all_are(fd, 1000, M + M / 2 + 7, 0) &&
	      all_are(fd, 1000 + M + M / 2 + 7, 3 * M - (1000 + M + M / 2 + 7), 'b'),
	      "zeroed range reads zeros, the rest is kept");
	CHECK(fstat(fd, &st2) == 0 && st2.st_size == 3 * M && st2.st_blocks >= st.st_blocks,
	      "zero range keeps size and allocation: %lld, %lld blocks", (long long)st2.st_size,
	      (long long)st2.st_blocks);
	CHECK(pwrite(fd, "x", 1, M + 5) == 1 && all_are(fd, M, 5, 0) && all_are(fd, M + 5, 1, 'x') &&
	      all_are(fd, M + 6, 100, 0), "a write into a zeroed block");
	CHECK(fallocate(fd, FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE, 3 * M - 10, 2 * M) == 0 &&
	      fstat(fd, &st) == 0 && st.st_size == 3 * M && all_are(fd, 3 * M - 10, 10, 0) &&
	      all_are(fd, 3 * M - 20, 10, 'b'), "zero range KEEP_SIZE past the end");
	CHECK(fallocate(fd, FALLOC_FL_ZERO_RANGE, 3 * M - 10, 2 * M) == 0 && fstat(fd, &st) == 0 &&
	      st.st_size == 5 * M - 10 && all_are(fd, 3 * M - 10, 2 * M, 0), "zero range extends: size %lld",
	      (long long)st.st_size);
	CHECK(fsync(fd) == 0, "fsync");
	close(fd);
}

/* SEEK_DATA / SEEK_HOLE find a thin file's holes (qemu-img map, cp --sparse). */
static void t_seek_holes(void)
{
	const off_t M = 1 << 20;
	int fd = open(P("thin"), O_CREAT | O_RDWR | O_TRUNC, 0644);
	CHECK(fd >= 0, "create thin");
	CHECK(ftruncate(fd, 8 * M) == 0, "ftruncate 8 MiB");
	CHECK(pwrite(fd, "d", 1, 2 * M + 7) == 1 && pwrite(fd, "e", 1, 5 * M) == 1, "two writes");
	CHECK(lseek(fd, 0, SEEK_DATA) == 2 * M, "SEEK_DATA from 0: %lld", (long long)lseek(fd, 0, SEEK_DATA));
	CHECK(lseek(fd, 2 * M + 9, SEEK_DATA) == 2 * M + 9, "SEEK_DATA inside data");
	CHECK(lseek(fd, 2 * M, SEEK_HOLE) == 3 * M, "SEEK_HOLE after the data: %lld",
	      (long long)lseek(fd, 2 * M, SEEK_HOLE));
	CHECK(lseek(fd, 3 * M, SEEK_DATA) == 5 * M, "SEEK_DATA to the second block");
	CHECK(lseek(fd, 0, SEEK_HOLE) == 0, "SEEK_HOLE at a hole");
	CHECK(lseek(fd, 5 * M, SEEK_HOLE) == 6 * M, "SEEK_HOLE after the second block");
	errno = 0;
	CHECK(lseek(fd, 6 * M, SEEK_DATA) < 0 && errno == ENXIO, "SEEK_DATA past the last data: ENXIO");
	errno = 0;
	CHECK(lseek(fd, 8 * M, SEEK_HOLE) < 0 && errno == ENXIO, "SEEK_HOLE at the end: ENXIO");
	CHECK(fallocate(fd, FALLOC_FL_KEEP_SIZE, 6 * M, M) == 0 && lseek(fd, 6 * M, SEEK_HOLE) == 6 * M,
	      "a block allocated but never written is a hole (it reads as zeros)");
	close(fd);
}

/* POSIX ACLs are refused visibly (never stored and ignored), and file
 * handles work (name_to_handle_at / open_by_handle_at: an NFS export). */
static void t_acl_and_handles(void)
{
	put("acl", "acl-data");
	/* a minimal access ACL (the xattr format: version 2, then entries of
	 * tag, perm, id): user::rw-, group::r--, other::r-- */
	unsigned char acl[4 + 3 * 8] = {2, 0, 0, 0,
					1, 0, 6, 0, 0xff, 0xff, 0xff, 0xff,
					4, 0, 4, 0, 0xff, 0xff, 0xff, 0xff,
					0x20, 0, 4, 0, 0xff, 0xff, 0xff, 0xff};
	errno = 0;
	CHECK(setxattr(P("acl"), "system.posix_acl_access", acl, sizeof(acl), 0) < 0 &&
	      (errno == EOPNOTSUPP || errno == ENOTSUP), "a POSIX ACL is refused (EOPNOTSUPP)");
	char buf[64];
	CHECK(getxattr(P("acl"), "system.posix_acl_access", buf, sizeof(buf)) < 0, "no ACL is stored");
	struct file_handle *fh = malloc(sizeof(*fh) + MAX_HANDLE_SZ);
	int mnt_id, mfd = open(D, O_RDONLY | O_DIRECTORY);
	fh->handle_bytes = MAX_HANDLE_SZ;
	CHECK(name_to_handle_at(AT_FDCWD, P("acl"), fh, &mnt_id, 0) == 0, "name_to_handle_at");
	int fd = open_by_handle_at(mfd, fh, O_RDONLY);
	CHECK(fd >= 0, "open_by_handle_at");
	if (fd >= 0) {
		ssize_t n = read(fd, buf, sizeof(buf));
		CHECK(n == 8 && !memcmp(buf, "acl-data", 8), "read through the handle");
		close(fd);
	}
	close(mfd);
	free(fh);
}

/* The fallocate results are durable. */
static void t_fallocate_after(void)
{
	const off_t M = 1 << 20;
	struct stat st;
	int fd = open(P("zr"), O_RDONLY);
	CHECK(fd >= 0 && fstat(fd, &st) == 0 && st.st_size == 5 * M - 10, "zr after a remount");
	CHECK(all_are(fd, 0, 1000, 'b') && all_are(fd, 1000, M + 5 - 1000, 0) && all_are(fd, M + 5, 1, 'x') &&
	      all_are(fd, M + 6, M / 2 + 1001, 0) && all_are(fd, M + M / 2 + 1007, 3 * M - 10 - (M + M / 2 + 1007), 'b') &&
	      all_are(fd, 3 * M - 10, 2 * M, 0), "zr's content after a remount");
	close(fd);
}

static void t_enospc(void)
{
	struct statvfs sv;
	if (statvfs(D, &sv))
		return;
	/* fill the volume, expect ENOSPC, free it, write again */
	int fd = open(P("fill"), O_CREAT | O_WRONLY, 0644);
	char *b = malloc(1 << 20);
	memset(b, 1, 1 << 20);
	int got = 0;
	for (uint64_t i = 0; i < sv.f_blocks + 8; i++) {
		if (write(fd, b, 1 << 20) < 0) {
			got = errno;
			break;
		}
	}
	close(fd);
	CHECK(got == ENOSPC, "ENOSPC when full (got %d)", got);
	CHECK(unlink(P("fill")) == 0, "delete the filler");
	struct statvfs sv2;
	CHECK(statvfs(D, &sv2) == 0 && sv2.f_bfree >= sv.f_bfree, "space returns (%llu >= %llu)",
	      (unsigned long long)sv2.f_bfree, (unsigned long long)sv.f_bfree);
	fd = open(P("after"), O_CREAT | O_WRONLY, 0644);
	CHECK(fd >= 0 && write(fd, b, 1 << 20) == 1 << 20, "write after freeing");
	close(fd);
	free(b);
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		fprintf(stderr, "usage: posix_check DIR [--enospc | --after-remount]\n");
		return 2;
	}
	snprintf(D, sizeof(D), "%s", argv[1]);
	umask(022);
	if (argc > 2 && !strcmp(argv[2], "--after-remount")) {
		t_after_remount();
		t_fallocate_after();
		t_many_xattrs_after();
		printf("posix: %d passed, %d failed\n", passed, failed);
		return failed ? 1 : 0;
	}
	t_files();
	t_names();
	t_dirs();
	t_links();
	t_attrs();
	t_many_xattrs();
	t_users();
	t_direct();
	t_fallocate();
	t_seek_holes();
	t_acl_and_handles();
	if (argc > 2 && !strcmp(argv[2], "--enospc"))
		t_enospc();
	printf("posix: %d passed, %d failed\n", passed, failed);
	return failed ? 1 : 0;
}
