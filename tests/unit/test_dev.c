/* Device layer: file backend, async queue, CAW, faulty wrapper. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "tu.h"

START_TEST(file_rw_and_checks)
{
	char *p = tu_image(1 << 20);
	struct dev *d = tu_open(p);
	uint8_t *b = dev_alloc(8192), *c = dev_alloc(8192);
	ck_assert_uint_eq(dev_size(d), 1 << 20);
	ck_assert_uint_eq(dev_lbs(d), 512);
	ck_assert_str_eq(dev_backend(d), "file");
	memset(b, 0xab, 8192);
	ck_assert_int_eq(dev_write(d, 4096, b, 8192), 0);
	ck_assert_int_eq(dev_read(d, 4096, c, 8192), 0);
	ck_assert_int_eq(memcmp(b, c, 8192), 0);
	ck_assert_int_eq(dev_write(d, 100, b, 512), -EINVAL);   /* not block aligned */
	ck_assert_int_eq(dev_write(d, 0, b, 100), -EINVAL);
	ck_assert_int_eq(dev_read(d, (1 << 20) - 512, c, 1024), -ENOSPC); /* past the end */
	ck_assert_int_eq(dev_zero(d, 4096, 4096), 0);
	ck_assert_int_eq(dev_read(d, 4096, c, 8192), 0);
	ck_assert(lunfs_is_zero(c, 4096));
	ck_assert_int_eq(memcmp(c + 4096, b, 4096), 0);
	ck_assert_int_eq(dev_flush(d), 0);
	struct dev_stats st;
	dev_get_stats(d, &st);
	ck_assert_uint_eq(st.writes, 1);
	ck_assert_uint_eq(st.reads, 2);
	free(b);
	free(c);
	dev_close(d);
	unlink(p);
	free(p);
}
END_TEST

START_TEST(file_async_queue)
{
	char *p = tu_image(4 << 20);
	struct dev *d = tu_open(p);
	enum { N = 32 };
	struct dev_io io[N], *ptr[N], *done[N];
	struct iovec v[N][2];
	uint8_t *buf = dev_alloc(N * 8192);
	for (int i = 0; i < N; i++) {
		memset(buf + i * 8192, i + 1, 8192);
		v[i][0] = (struct iovec){buf + i * 8192, 4096};
		v[i][1] = (struct iovec){buf + i * 8192 + 4096, 4096};
		io[i] = (struct dev_io){.op = DEV_OP_WRITE, .off = (uint64_t)i * 8192, .iov = v[i], .iovcnt = 2};
		ptr[i] = &io[i];
	}
	ck_assert_int_eq(dev_submit(d, ptr, N), N);
	int got = 0;
	while (got < N) {
		int n = dev_reap(d, 1, done, N);
		ck_assert_int_gt(n, 0);
		for (int k = 0; k < n; k++)
			ck_assert_int_eq(done[k]->res, 8192);
		got += n;
	}
	memset(buf, 0, N * 8192);
	for (int i = 0; i < N; i++)
		io[i].op = DEV_OP_READ;
	ck_assert_int_eq(dev_submit(d, ptr, N), N);
	for (got = 0; got < N;)
		got += dev_reap(d, N - got, done, N);
	for (int i = 0; i < N; i++)
		ck_assert_uint_eq(buf[i * 8192 + 8191], i + 1);
	free(buf);
	dev_close(d);
	unlink(p);
	free(p);
}
END_TEST

START_TEST(file_caw)
{
	char *p = tu_image(1 << 20);
	struct dev *d = tu_open(p);
	uint8_t *a = dev_alloc(512), *b = dev_alloc(512), *cur = dev_alloc(512);
	memset(b, 7, 512);
	ck_assert_int_eq(dev_caw(d, 512, a, b, 512, cur), 0); /* zeros -> 7s */
	ck_assert_int_eq(dev_caw(d, 512, a, b, 512, cur), -EMISCOMPARE);
	ck_assert_int_eq(memcmp(cur, b, 512), 0); /* cur shows what is there */
	ck_assert_int_eq(dev_caw(d, 100, a, b, 512, cur), -EINVAL);
	free(a);
	free(b);
	free(cur);
	dev_close(d);
	unlink(p);
	free(p);
}
END_TEST

struct ctr_arg {
	const char *path;
	int n;
};

/* Increments a shared counter only through CAW, from its own device open. */
static void *ctr_thread(void *arg)
{
	struct ctr_arg *a = arg;
	struct dev *d;
	if (dev_open(a->path, NULL, &d))
		return (void *)1;
	uint64_t *cmp = dev_alloc(512), *nv = dev_alloc(512);
	dev_read(d, 0, cmp, 512);
	for (int i = 0; i < a->n;) {
		memcpy(nv, cmp, 512);
		nv[0]++;
		int r = dev_caw(d, 0, cmp, nv, 512, cmp);
		if (r == 0) {
			memcpy(cmp, nv, 512);
			i++;
		} else if (r != -EMISCOMPARE) {
			return (void *)2;
		}
	}
	free(cmp);
	free(nv);
	dev_close(d);
	return NULL;
}

START_TEST(caw_no_lost_update_threads)
{
	char *p = tu_image(1 << 20);
	pthread_t t[4];
	struct ctr_arg a = {p, 500};
	for (int i = 0; i < 4; i++)
		pthread_create(&t[i], NULL, ctr_thread, &a);
	for (int i = 0; i < 4; i++) {
		void *rv;
		pthread_join(t[i], &rv);
		ck_assert_ptr_null(rv);
	}
	struct dev *d = tu_open(p);
	uint64_t *v = dev_alloc(512);
	ck_assert_int_eq(dev_read(d, 0, v, 512), 0);
	ck_assert_uint_eq(v[0], 2000);
	free(v);
	dev_close(d);
	unlink(p);
	free(p);
}
END_TEST

START_TEST(faulty_power_cut)
{
	char *p = tu_image(1 << 20);
	struct dev *f;
	uint8_t *b = dev_alloc(4096), *c = dev_alloc(4096);
	ck_assert_int_eq(dev_faulty_wrap(tu_open(p), &f), 0);
	struct dev_fault cfg = {.cut_after = 3};
	dev_faulty_set(f, &cfg);
	memset(b, 1, 4096);
	ck_assert_int_eq(dev_write(f, 0, b, 4096), 0);       /* write 1 */
	ck_assert_int_eq(dev_flush(f), 0);                   /* durable */
	memset(b, 2, 4096);
	ck_assert_int_eq(dev_write(f, 4096, b, 4096), 0);    /* write 2: cached */
	ck_assert_int_eq(dev_read(f, 4096, c, 4096), 0);     /* reads see the cache */
	ck_assert_uint_eq(c[0], 2);
	ck_assert_int_eq(dev_write(f, 8192, b, 4096), 0);    /* write 3: then the cut */
	ck_assert(dev_faulty_is_cut(f));
	ck_assert_int_eq(dev_read(f, 0, c, 4096), -EIO);     /* dead after the cut */
	ck_assert_int_eq(dev_write(f, 0, b, 4096), -EIO);
	dev_close(f);
	struct dev *d = tu_open(p);
	ck_assert_int_eq(dev_read(d, 0, c, 4096), 0);
	ck_assert_uint_eq(c[0], 1);                          /* flushed write kept */
	ck_assert_int_eq(dev_read(d, 4096, c, 4096), 0);
	ck_assert(lunfs_is_zero(c, 4096));                   /* unflushed writes lost */
	ck_assert_int_eq(dev_read(d, 8192, c, 4096), 0);
	ck_assert(lunfs_is_zero(c, 4096));
	dev_close(d);
	free(b);
	free(c);
	unlink(p);
	free(p);
}
END_TEST

START_TEST(faulty_fail_and_tear)
{
	char *p = tu_image(1 << 20);
	struct dev *f;
	uint8_t *b = dev_alloc(8192), *c = dev_alloc(8192);
	ck_assert_int_eq(dev_faulty_wrap(tu_open(p), &f), 0);
	struct dev_fault cfg = {.fail_io = 2, .tear_write = 2};
	dev_faulty_set(f, &cfg);
	memset(b, 3, 8192);
	ck_assert_int_eq(dev_write(f, 0, b, 4096), 0);  /* io 1 */
	ck_assert_int_eq(dev_read(f, 0, c, 4096), -EIO); /* io 2 fails */
	ck_assert_int_eq(dev_write(f, 0, b, 8192), 0);  /* write 2: torn to its first half */
	ck_assert_int_eq(dev_flush(f), 0);
	dev_close(f);
	struct dev *d = tu_open(p);
	ck_assert_int_eq(dev_read(d, 0, c, 8192), 0);
	ck_assert_uint_eq(c[4095], 3);
	ck_assert_uint_eq(c[4096], 0);
	dev_close(d);
	free(b);
	free(c);
	unlink(p);
	free(p);
}
END_TEST

START_TEST(open_errors)
{
	struct dev *d;
	ck_assert_int_eq(dev_open("/nonexistent/x.img", NULL, &d), -ENOENT);
	ck_assert_ptr_nonnull(strstr(dev_last_error(), "nonexistent"));
	ck_assert_int_eq(dev_open("nbd://x/y", NULL, &d), -EINVAL);
	ck_assert_int_lt(dev_open("/dev/null", NULL, &d), 0);
	ck_assert_int_ne(dev_last_error()[0], 0);
	ck_assert_int_lt(dev_open("iscsi://", NULL, &d), 0);
	ck_assert_int_lt(dev_open("iscsi://127.0.0.1:1/iqn.x/0", NULL, &d), 0);
}
END_TEST

Suite *dev_suite(void)
{
	Suite *s = suite_create("dev");
	TCase *tc = tcase_create("core");
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, file_rw_and_checks);
	tcase_add_test(tc, file_async_queue);
	tcase_add_test(tc, file_caw);
	tcase_add_test(tc, caw_no_lost_update_threads);
	tcase_add_test(tc, faulty_power_cut);
	tcase_add_test(tc, faulty_fail_and_tear);
	tcase_add_test(tc, open_errors);
	suite_add_tcase(s, tc);
	return s;
}
