/* A program built with nothing but `cc libso.c $(pkg-config --cflags --libs
 * lunfs)` against an installed lunfs (test 71): it links the shared
 * liblunfs.so.  LIBSO VOLUME HOST mounts VOLUME read-write as HOST, creates
 * /libso.txt, writes a line into it, syncs, reads it back through a second
 * open and prints it, then unmounts. */
#include <lunfs.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

static const char line[] = "written through liblunfs.so\n";

static int run(struct lunfs_vol *v)
{
	struct lunfs_cred c = {0, 0};
	struct lunfs_stat st;
	struct lunfs_file *f;
	char buf[64] = {0};
	int r = lunfs_mknod(v, LUNFS_ROOT_INO, "libso.txt", S_IFREG | 0644, 0, &c, &st);
	if (r)
		return r;
	if ((r = lunfs_open(v, st.ino, LUNFS_OPEN_EXCL, &f)))
		return r;
	ssize_t n = lunfs_pwrite(f, line, sizeof(line) - 1, 0);
	r = n < 0 ? (int)n : lunfs_fsync(f);
	int e = lunfs_close(f);
	if (r || (r = e))
		return r;
	if ((r = lunfs_lookup(v, LUNFS_ROOT_INO, "libso.txt", &st)) ||
	    (r = lunfs_open(v, st.ino, LUNFS_OPEN_READ, &f)))
		return r;
	n = lunfs_pread(f, buf, sizeof(buf) - 1, 0);
	e = lunfs_close(f);
	if (n < 0)
		return (int)n;
	if (e)
		return e;
	if (strcmp(buf, line))
		return -EIO;
	fputs(buf, stdout);
	return 0;
}

int main(int argc, char **argv)
{
	struct lunfs_mount_opts o = {.host = argc == 3 ? argv[2] : NULL};
	struct lunfs_vol *v;
	const char *msg = NULL;
	int r = argc == 3 ? lunfs_mount(argv[1], &o, &v, &msg) : -EINVAL;
	if (r) {
		fprintf(stderr, "libso: %s\n", msg ? msg : lunfs_strerror(r));
		return 1;
	}
	r = run(v);
	if (r)
		fprintf(stderr, "libso: %s\n", lunfs_strerror(r));
	int e = lunfs_unmount(v);
	if (e)
		fprintf(stderr, "libso: unmount: %s\n", lunfs_strerror(e));
	return r || e;
}
