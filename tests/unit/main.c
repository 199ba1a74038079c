/* Unit test runner (Check). */
#include <stdio.h>
#include <stdlib.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>
#include <sys/wait.h>
#include "tests/unit/tu.h"
#include "format/format.h"

/* Every image of one run lives in one directory that main() removes at the
 * end, so a failing test (whose forked child exits at the failed assertion)
 * leaves nothing behind. */
char *tu_image(uint64_t size)
{
	const char *dir = getenv("LUNFS_UNIT_DIR");
	char *p = malloc(strlen(dir ? dir : "/tmp") + 32);
	sprintf(p, "%s/img-XXXXXX", dir ? dir : "/tmp");
	int fd = mkstemp(p);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(ftruncate(fd, size), 0);
	close(fd);
	return p;
}

struct dev *tu_open(const char *path)
{
	struct dev *d;
	int r = dev_open(path, NULL, &d);
	ck_assert_msg(r == 0, "dev_open %s: %s", path, lunfs_strerror(r));
	return d;
}

char *tu_volume(uint64_t size, struct lunfs_sb *sb)
{
	char *p = tu_image(size);
	struct dev *d = tu_open(p);
	struct lunfs_mkfs_opts o = {.max_hosts = 8, .jnl_size = 1 << 20, .lease_ms = 2400, .hb_ms = 200};
	char err[200];
	ck_assert_int_eq(lunfs_geom_compute(&o, dev_size(d), dev_lbs(d), sb, err, sizeof(err)), 0);
	ck_assert_int_eq(lunfs_uuid_gen(sb->uuid), 0);
	sb->gen = 1;
	ck_assert_int_eq(lunfs_format(d, sb), 0);
	dev_close(d);
	return p;
}

int tu_fsck(const char *path)
{
	const char *fsck = getenv("LUNFS_FSCK") ? getenv("LUNFS_FSCK") : "build/bin/fsck.lunfs";
	char cmd[512];
	ck_assert_msg(access(fsck, X_OK) == 0, "%s is missing (make all)", fsck);
	snprintf(cmd, sizeof(cmd), "'%s' -n '%s' >/dev/null 2>&1", fsck, path);
	int st = system(cmd);
	return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static void *bg_run(void *a)
{
	struct tu_bg *b = a;
	b->res = b->fn(b->arg);
	b->done = 1;
	return NULL;
}

void tu_bg_start(struct tu_bg *b, int (*fn)(void *), void *arg)
{
	b->fn = fn;
	b->arg = arg;
	b->res = 0;
	b->done = 0;
	ck_assert_int_eq(pthread_create(&b->t, NULL, bg_run, b), 0);
}

int tu_bg_wait(struct tu_bg *b, int ms)
{
	for (int t = 0; t < ms && !b->done; t += 10)
		usleep(10 * 1000);
	return b->done;
}

int tu_bg_join(struct tu_bg *b)
{
	pthread_join(b->t, NULL);
	return b->res;
}

int main(void)
{
	char dir[] = "/tmp/lunfs-unit.XXXXXX";
	if (!mkdtemp(dir)) {
		perror("mkdtemp");
		return EXIT_FAILURE;
	}
	setenv("LUNFS_UNIT_DIR", dir, 1);
	SRunner *sr = srunner_create(ondisk_suite());
	srunner_add_suite(sr, dev_suite());
	srunner_add_suite(sr, lock_suite());
	srunner_add_suite(sr, journal_suite());
	srunner_add_suite(sr, raw_suite());
	srunner_add_suite(sr, fs_suite());
	srunner_add_suite(sr, cluster_suite());
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	char cmd[128];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s' /dev/shm/lunfs-unit-64t.img", dir);
	if (system(cmd))
		fprintf(stderr, "could not remove %s\n", dir);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
