/* Device layer: file backend, async queue, CAW, faulty wrapper. */
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include "tests/unit/tu.h"
#include "dev/faulty.h"

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

/* The thread queue (dev_tq_*): queued requests reach the device only at
 * dev_tq_run, in one batch; a write the guard refuses at that hand-over
 * completes with the guard's error and never reaches the device (the lease
 * ran out between queueing and submission: a stall); the watched
 * descriptor fires when it becomes readable. */
static int tq_guard_refuses;
static int tq_guard(void *arg)
{
	(void)arg;
	return tq_guard_refuses ? -EFENCED : 0;
}

static int tq_drain(struct dev_tq *q, struct dev_io **done, int want, int *fired)
{
	int got = 0, f;
	*fired = 0;
	for (int spins = 0; got < want && spins < 100; spins++) {
		int n = dev_tq_run(q, 1000, done + got, 16, &f);
		ck_assert_int_ge(n, 0);
		got += n;
		*fired |= f;
	}
	return got;
}

START_TEST(thread_queue)
{
	char *p = tu_image(4 << 20);
	struct dev *d = tu_open(p);
	struct dev_tq *q;
	ck_assert_int_eq(dev_tq_open(d, &q), 0);
	dev_set_guard(d, tq_guard, NULL);
	uint8_t *buf = dev_alloc(3 * 4096), *c = dev_alloc(4096);
	memset(buf, 0x11, 4096);
	memset(buf + 4096, 0x22, 4096);
	struct iovec v[3] = {{buf, 4096}, {buf + 4096, 4096}, {buf + 8192, 4096}};
	struct dev_io io[3] = {{.op = DEV_OP_WRITE, .off = 0, .iov = &v[0], .iovcnt = 1},
			       {.op = DEV_OP_WRITE, .off = 8192, .iov = &v[1], .iovcnt = 1},
			       {.op = DEV_OP_READ, .off = 0, .iov = &v[2], .iovcnt = 1}};
	struct dev_io *ptr[3] = {&io[0], &io[1], &io[2]}, *done[16];
	int fired;
	/* queued, not yet on the device */
	ck_assert_int_eq(dev_tq_submit(q, ptr, 1), 1);
	ck_assert_uint_eq(dev_tq_inflight(q), 1);
	ck_assert_int_eq(dev_read(d, 0, c, 4096), 0);
	ck_assert(lunfs_is_zero(c, 4096));
	ck_assert_int_eq(tq_drain(q, done, 1, &fired), 1);
	ck_assert_ptr_eq(done[0], &io[0]);
	ck_assert_int_eq(io[0].res, 4096);
	ck_assert_int_eq(dev_read(d, 0, c, 4096), 0);
	ck_assert_uint_eq(c[0], 0x11);
	/* the guard passes at queueing, refuses at the hand-over: the write
	 * completes with -EFENCED and the device keeps zeros; the read in the
	 * same batch too (a fenced host reads nothing more) */
	ck_assert_int_eq(dev_tq_submit(q, ptr + 1, 2), 2);
	tq_guard_refuses = 1;
	ck_assert_int_eq(tq_drain(q, done, 2, &fired), 2);
	ck_assert_int_eq(io[1].res, -EFENCED);
	ck_assert_int_eq(io[2].res, -EFENCED);
	ck_assert_int_eq(dev_read(d, 8192, c, 4096), 0);
	ck_assert(lunfs_is_zero(c, 4096));
	/* a batch of reads only is guarded as well */
	ck_assert_int_eq(dev_tq_submit(q, ptr + 2, 1), 1);
	ck_assert_int_eq(tq_drain(q, done, 1, &fired), 1);
	ck_assert_int_eq(io[2].res, -EFENCED);
	tq_guard_refuses = 0;
	ck_assert_int_eq(dev_tq_submit(q, ptr + 2, 1), 1);
	ck_assert_int_eq(tq_drain(q, done, 1, &fired), 1);
	ck_assert_int_eq(io[2].res, 4096);
	ck_assert_uint_eq(buf[8192], 0x11);
	tq_guard_refuses = 1;
	/* refused at queueing: nothing queued */
	ck_assert_int_eq(dev_tq_submit(q, ptr + 1, 1), -EFENCED);
	ck_assert_uint_eq(dev_tq_inflight(q), 0);
	tq_guard_refuses = 0;
	/* the watch: a pipe that becomes readable */
	int pfd[2];
	ck_assert_int_eq(pipe(pfd), 0);
	ck_assert_int_eq(dev_tq_watch(q, pfd[0]), 0);
	ck_assert_int_eq(dev_tq_run(q, 0, done, 16, &fired), 0);
	ck_assert_int_eq(fired, 0);
	ck_assert_int_eq(write(pfd[1], "x", 1), 1);
	ck_assert_int_eq(dev_tq_run(q, 1000, done, 16, &fired), 0);
	ck_assert_int_eq(fired, 1);
	/* a request past the end is refused at queueing */
	struct dev_io bad = {.op = DEV_OP_READ, .off = 4 << 20, .iov = &v[2], .iovcnt = 1};
	struct dev_io *bp = &bad;
	ck_assert_int_eq(dev_tq_submit(q, &bp, 1), -ENOSPC);
	dev_tq_close(q);
	close(pfd[0]);
	close(pfd[1]);
	free(buf);
	free(c);
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

/* ---- the CAW arbiter of the file backend (dev/arbiter.c) ---- */

static uint64_t ms_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000ull + ts.tv_nsec / 1000000;
}

/* Increments the counter in block 0 through CAW n times; counts successes.
 * A CAW that gave up waiting for the exclusion (-ETIMEDOUT: bounded by the
 * break time, by design; it wrote nothing) is counted apart: on a loaded
 * machine a thread of the OFD mode, which polls the lock with no queue, can
 * lose to the other open's threads for that long. */
struct inc_arg {
	struct dev *d;
	int n;
	int ok;
	int timeouts;
	int err;
};

static void *inc_thread(void *arg)
{
	struct inc_arg *a = arg;
	uint64_t *cmp = dev_alloc(512), *nv = dev_alloc(512);
	int e = dev_read(a->d, 0, cmp, 512);
	if (e)
		a->err = e;
	for (int i = 0; i < a->n && !a->err; i++) {
		memcpy(nv, cmp, 512);
		nv[0]++;
		int r = dev_caw(a->d, 0, cmp, nv, 512, cmp);
		if (r == 0) {
			memcpy(cmp, nv, 512);
			a->ok++;
		} else if (r == -ETIMEDOUT) {
			a->timeouts++;
		} else if (r != -EMISCOMPARE) {
			a->err = r;
		}
	}
	free(cmp);
	free(nv);
	return NULL;
}

/* Two dev_open()s of one image, two threads on each (threads of one open
 * exclude each other through the arbiter too, with no mutex): the count on
 * disk is exactly the number of CAWs that succeeded.  _i = 1: OFD mode. */
START_TEST(caw_count_equals_successes)
{
	if (_i)
		setenv("LUNFS_CAW_DIR", "/nonexistent/lunfs", 1);
	char *p = tu_image(1 << 20);
	struct dev *d[2] = {tu_open(p), tu_open(p)};
	ck_assert_int_eq(!!(dev_caps(d[0]) & DEV_CAP_CAW_ARB), !_i);
	pthread_t t[4];
	struct inc_arg a[4];
	for (int i = 0; i < 4; i++) {
		a[i] = (struct inc_arg){.d = d[i % 2], .n = 400};
		pthread_create(&t[i], NULL, inc_thread, &a[i]);
	}
	int ok = 0, timeouts = 0;
	for (int i = 0; i < 4; i++) {
		pthread_join(t[i], NULL);
		ck_assert_int_eq(a[i].err, 0);
		ok += a[i].ok;
		timeouts += a[i].timeouts;
	}
	ck_assert_int_lt(timeouts, 400); /* a rare wait that gave up, not the rule */
	uint64_t *v = dev_alloc(512);
	ck_assert_int_eq(dev_read(d[0], 0, v, 512), 0);
	ck_assert_uint_eq(v[0], ok);
	ck_assert_int_gt(ok, 400);
	free(v);
	dev_close(d[0]);
	dev_close(d[1]);
	unlink(p);
	free(p);
}
END_TEST

/* The stall hook: a CAW of stall_dev stops inside its critical section
 * until stall_go is set. */
static struct dev *stall_dev;
static atomic_int stall_in, stall_go;

static void stall_here(struct dev *d, uint64_t off)
{
	(void)off;
	if (d != stall_dev)
		return;
	stall_in = 1;
	while (!stall_go)
		usleep(1000);
}

struct holder_arg {
	struct dev *d;
	int r;
};

static void *holder_thread(void *arg)
{
	struct holder_arg *h = arg;
	uint8_t *z = dev_alloc(512), *mine = dev_alloc(512);
	memset(mine, 'H', 512);
	h->r = dev_caw(h->d, 0, z, mine, 512, NULL);
	free(z);
	free(mine);
	return NULL;
}

/* A holder stopped inside the critical section of block 0 (after its read
 * and compare, before its write): a CAW of another block from another open
 * completes at once; a CAW of block 0 waits the break time, then takes it
 * over; the stopped holder, resumed, does not write and gets -ETIMEDOUT.
 * _i = 0: the holder is another open; 1: a thread of the same open. */
START_TEST(caw_breaks_stopped_holder)
{
	const uint32_t brk = 600;
	char *p = tu_image(1 << 20);
	struct dev *dh = tu_open(p), *d = _i ? dh : tu_open(p);
	uint8_t *z = dev_alloc(512), *b = dev_alloc(512), *cur = dev_alloc(512);
	dev_set_caw_break_ms(dh, brk);
	dev_set_caw_break_ms(d, brk);
	stall_dev = dh;
	stall_in = stall_go = 0;
	dev_file_caw_stall = stall_here;
	pthread_t t;
	struct holder_arg h = {.d = dh, .r = 1};
	pthread_create(&t, NULL, holder_thread, &h);
	while (!stall_in)
		usleep(1000);
	if (_i)
		stall_dev = NULL; /* our own CAWs below must not stop */
	else
		dev_file_caw_stall = NULL;
	memset(b, 'B', 512);
	uint64_t t0 = ms_now();
	ck_assert_int_eq(dev_caw(d, 8 * 512, z, b, 512, NULL), 0); /* another block */
	uint64_t other = ms_now() - t0;
	t0 = ms_now();
	ck_assert_int_eq(dev_caw(d, 0, z, b, 512, cur), 0); /* the held block */
	uint64_t same = ms_now() - t0;
	stall_go = 1;
	pthread_join(t, NULL);
	dev_file_caw_stall = NULL;
	fprintf(stderr, "caw_breaks_stopped_holder(%s): other block %llu ms, held block %llu ms "
		"(break %u ms), resumed holder: %s\n", _i ? "same open" : "two opens",
		(unsigned long long)other, (unsigned long long)same, brk, lunfs_strerror(h.r));
	ck_assert_uint_lt(other, 100);
	ck_assert_uint_ge(same, brk - 50);
	ck_assert_uint_lt(same, brk + 400);
	ck_assert_int_eq(h.r, -ETIMEDOUT);
	ck_assert_int_eq(dev_read(d, 0, cur, 512), 0);
	ck_assert_int_eq(memcmp(cur, b, 512), 0); /* the breaker's, not 'H' */
	free(z);
	free(b);
	free(cur);
	if (!_i)
		dev_close(d);
	dev_close(dh);
	unlink(p);
	free(p);
}
END_TEST

/* OFD mode (no /dev/shm): a stopped holder cannot be broken, but a CAW of
 * its block gives up after the break time with -ETIMEDOUT, and one of
 * another block does not wait at all. */
START_TEST(caw_ofd_mode_bounded)
{
	const uint32_t brk = 400;
	setenv("LUNFS_CAW_DIR", "/nonexistent/lunfs", 1);
	char *p = tu_image(1 << 20);
	struct dev *dh = tu_open(p), *d = tu_open(p);
	uint8_t *z = dev_alloc(512), *b = dev_alloc(512);
	ck_assert_uint_eq(dev_caps(d) & DEV_CAP_CAW_ARB, 0);
	dev_set_caw_break_ms(d, brk);
	stall_dev = dh;
	stall_in = stall_go = 0;
	dev_file_caw_stall = stall_here;
	pthread_t t;
	struct holder_arg h = {.d = dh, .r = 1};
	pthread_create(&t, NULL, holder_thread, &h);
	while (!stall_in)
		usleep(1000);
	memset(b, 'B', 512);
	uint64_t t0 = ms_now();
	ck_assert_int_eq(dev_caw(d, 8 * 512, z, b, 512, NULL), 0);
	uint64_t other = ms_now() - t0;
	t0 = ms_now();
	ck_assert_int_eq(dev_caw(d, 0, z, b, 512, NULL), -ETIMEDOUT);
	uint64_t same = ms_now() - t0;
	fprintf(stderr, "caw_ofd_mode_bounded: other block %llu ms, held block gave up after %llu ms\n",
		(unsigned long long)other, (unsigned long long)same);
	ck_assert_uint_lt(other, 100);
	ck_assert_uint_ge(same, brk - 50);
	ck_assert_uint_lt(same, brk + 400);
	stall_go = 1;
	pthread_join(t, NULL);
	dev_file_caw_stall = NULL;
	ck_assert_int_eq(h.r, 0); /* never broken: its write lands */
	free(z);
	free(b);
	dev_close(d);
	dev_close(dh);
	unlink(p);
	free(p);
}
END_TEST

/* A process killed (SIGKILL) inside the critical section of block 0: the
 * next CAW of block 0 takes its word over at once (its liveness byte is
 * gone), not after the break time. */
static int kill_pipe[2];

static void stall_forever(struct dev *d, uint64_t off)
{
	(void)d;
	(void)off;
	ssize_t n = write(kill_pipe[1], "x", 1);
	(void)n;
	for (;;)
		pause();
}

START_TEST(caw_takes_over_dead_holder)
{
	char *p = tu_image(1 << 20);
	uint8_t *z = dev_alloc(512), *b = dev_alloc(512);
	char c;
	ck_assert_int_eq(pipe(kill_pipe), 0);
	pid_t pid = fork();
	ck_assert_int_ge(pid, 0);
	if (!pid) {
		struct dev *dc;
		if (dev_open(p, NULL, &dc))
			_exit(2);
		dev_file_caw_stall = stall_forever;
		memset(b, 'K', 512);
		dev_caw(dc, 0, z, b, 512, NULL);
		_exit(3);
	}
	ck_assert_int_eq(read(kill_pipe[0], &c, 1), 1);
	kill(pid, SIGKILL);
	int st;
	ck_assert_int_eq(waitpid(pid, &st, 0), pid);
	ck_assert(WIFSIGNALED(st));
	struct dev *d = tu_open(p);
	ck_assert_int_ne(dev_caps(d) & DEV_CAP_CAW_ARB, 0);
	memset(b, 'B', 512);
	uint64_t t0 = ms_now();
	ck_assert_int_eq(dev_caw(d, 0, z, b, 512, NULL), 0); /* default break: 2000 ms */
	uint64_t took = ms_now() - t0;
	fprintf(stderr, "caw_takes_over_dead_holder: took over in %llu ms\n", (unsigned long long)took);
	ck_assert_uint_lt(took, 200);
	free(z);
	free(b);
	dev_close(d);
	unlink(p);
	free(p);
}
END_TEST

/* The two modes never mix on one image: an open that cannot use the
 * arbiter fails while another open uses it; one that could joins the OFD
 * mode of an earlier open.  The arbiter file goes away with the last open. */
START_TEST(caw_modes_do_not_mix)
{
	char *p = tu_image(1 << 20), shm[64];
	struct dev *a, *b;
	struct stat st;
	ck_assert_int_eq(stat(p, &st), 0);
	snprintf(shm, sizeof(shm), "/dev/shm/lunfs-caw-f-%jx-%jx", (uintmax_t)st.st_dev, (uintmax_t)st.st_ino);
	a = tu_open(p);
	ck_assert_int_ne(dev_caps(a) & DEV_CAP_CAW_ARB, 0);
	ck_assert_int_eq(access(shm, F_OK), 0);
	setenv("LUNFS_CAW_DIR", "/nonexistent/lunfs", 1);
	ck_assert_int_eq(dev_open(p, NULL, &b), -EBUSY);
	ck_assert_ptr_nonnull(strstr(dev_last_error(), "arbiter"));
	dev_close(a);
	ck_assert_int_ne(access(shm, F_OK), 0); /* the last open removed it */
	a = tu_open(p); /* OFD mode */
	unsetenv("LUNFS_CAW_DIR");
	b = tu_open(p); /* could use the arbiter, joins the OFD mode */
	ck_assert_uint_eq(dev_caps(a) & DEV_CAP_CAW_ARB, 0);
	ck_assert_uint_eq(dev_caps(b) & DEV_CAP_CAW_ARB, 0);
	dev_close(a);
	dev_close(b);
	unlink(p);
	free(p);
}
END_TEST

Suite *dev_suite(void)
{
	Suite *s = suite_create("dev");
	TCase *tc = tcase_create("core");
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, file_rw_and_checks);
	tcase_add_test(tc, file_async_queue);
	tcase_add_test(tc, thread_queue);
	tcase_add_test(tc, file_caw);
	tcase_add_test(tc, caw_no_lost_update_threads);
	tcase_add_test(tc, faulty_power_cut);
	tcase_add_test(tc, faulty_fail_and_tear);
	tcase_add_test(tc, open_errors);
	suite_add_tcase(s, tc);
	tc = tcase_create("caw_arbiter");
	tcase_set_timeout(tc, 60);
	tcase_add_loop_test(tc, caw_count_equals_successes, 0, 2);
	tcase_add_loop_test(tc, caw_breaks_stopped_holder, 0, 2);
	tcase_add_test(tc, caw_ofd_mode_bounded);
	tcase_add_test(tc, caw_takes_over_dead_holder);
	tcase_add_test(tc, caw_modes_do_not_mix);
	suite_add_tcase(s, tc);
	return s;
}
