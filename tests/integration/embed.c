/* A program that embeds the installed library the way a VMM would: only
 * <lunfs.h>, built with `pkg-config --cflags --libs lunfs` (test 47).
 * EMBED VOLUME mounts VOLUME read-only and prints its file block size and
 * block count. */
#include <lunfs.h>
#include <stdio.h>

int main(int argc, char **argv)
{
	struct lunfs_mount_opts o = {.readonly = 1, .dev = {.caw_mode = LUNFS_CAW_AUTO}};
	struct lunfs_vol *v;
	struct lunfs_statfs st;
	const char *msg = NULL;
	int err = argc == 2 ? lunfs_mount(argv[1], &o, &v, &msg) : -EINVAL;
	if (err) {
		fprintf(stderr, "embed: %s\n", msg ? msg : lunfs_strerror(err));
		return 1;
	}
	err = lunfs_statfs(v, &st);
	if (!err)
		printf("bsize %llu blocks %llu\n", (unsigned long long)st.bsize,
		       (unsigned long long)st.blocks);
	int uerr = lunfs_unmount(v);
	return err || uerr;
}
