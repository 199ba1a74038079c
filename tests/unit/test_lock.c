/* Heartbeats, self-fencing and lock records, several "hosts" in one process
 * (each with its own device open, so OFD-lock CAW excludes between them). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "tests/unit/tu.h"
#include "lock/lk.h"
#include "util/clock.h"

struct vol {
	char *path;
	struct lunfs_sb sb;
	struct lk_params p;
};

static void vol_make(struct vol *v)
{
	v->path = tu_volume(64 << 20, &v->sb);
	v->p = lk_params_of(&v->sb);
}

static void vol_free(struct vol *v)
{
	unlink(v->path);
	free(v->path);
}

static struct hb_host *host(struct vol *v, const char *name, int id, struct dev **dp)
{
	struct hb_ident ident = {0};
	struct hb_host *h;
	snprintf(ident.name, sizeof(ident.name), "%s", name);
	ident.uuid[0] = id;
	ident.uuid[15] = 0x77;
	*dp = tu_open(v->path);
	int r = hb_claim(*dp, &v->p, &ident, &h, NULL);
	ck_assert_msg(r == 0, "hb_claim %s: %s", name, lunfs_strerror(r));
	return h;
}

START_TEST(heartbeat_claim_renew_release)
{
	struct vol v;
	struct dev *da, *db;
	vol_make(&v);
	struct hb_host *a = host(&v, "esx-a", 1, &da), *b = host(&v, "esx-b", 2, &db);
	ck_assert_uint_ne(hb_slot(a), hb_slot(b));
	struct lunfs_hb hb1, hb2;
	ck_assert_int_eq(hb_read(da, &v.p, hb_slot(a), &hb1), 0);
	ck_assert_uint_eq(hb1.state, HB_LIVE);
	ck_assert_str_eq(hb1.host_name, "esx-a");
	/* renewals move the counter (no timing asserted: storage may be slow) */
	uint64_t t0 = lunfs_now_ms();
	do {
		usleep(v.p.hb_ms * 1000);
		ck_assert_int_eq(hb_read(da, &v.p, hb_slot(a), &hb2), 0);
	} while (hb2.counter < hb1.counter + 2 && lunfs_now_ms() - t0 < 30000);
	ck_assert_uint_ge(hb2.counter, hb1.counter + 2);
	uint32_t sa = hb_slot(a);
	ck_assert_int_eq(hb_release(a), 0);
	ck_assert_int_eq(hb_read(db, &v.p, sa, &hb2), 0);
	ck_assert_uint_eq(hb2.state, HB_FREE);
	ck_assert_int_eq(hb_release(b), 0);
	dev_close(da);
	dev_close(db);
	vol_free(&v);
}
END_TEST

START_TEST(heartbeat_reclaim_after_crash)
{
	struct vol v;
	struct dev *da, *da2, *db;
	vol_make(&v);
	struct hb_host *a = host(&v, "esx-a", 1, &da);
	uint32_t slot = hb_slot(a);
	uint64_t gen = hb_mount_gen(a);
	/* the same identity cannot mount twice at once */
	struct hb_ident ident = {0};
	strcpy(ident.name, "esx-a");
	ident.uuid[0] = 1;
	ident.uuid[15] = 0x77;
	struct hb_host *x;
	db = tu_open(v.path);
	ck_assert_int_eq(hb_claim(db, &v.p, &ident, &x, NULL), -EEXIST);
	hb_abandon(a); /* crash: slot stays LIVE */
	uint32_t prev = 99;
	uint64_t t0 = lunfs_now_ms();
	da2 = tu_open(v.path);
	ck_assert_int_eq(hb_claim(da2, &v.p, &ident, &a, &prev), 0);
	ck_assert_uint_ge(lunfs_now_ms() - t0, v.p.lease_ms); /* waited out the lease */
	ck_assert_uint_eq(prev, HB_LIVE);
	ck_assert_uint_eq(hb_slot(a), slot);
	ck_assert_uint_eq(hb_mount_gen(a), gen + 1);
	ck_assert_int_eq(hb_recovered(a), 0); /* (its journal replayed) */
	ck_assert_int_eq(hb_release(a), 0);
	/* a mount that gives up before its replay leaves the slot REPLAYING:
	 * only a replay may free a crashed mount's slot */
	ck_assert_int_eq(hb_claim(da2, &v.p, &ident, &a, NULL), 0);
	hb_abandon(a); /* crash */
	ck_assert_int_eq(hb_claim_flags(da2, &v.p, &ident, HB_ASSUME_DEAD, &a, &prev), 0);
	ck_assert_uint_eq(prev, HB_LIVE);
	ck_assert_int_eq(hb_release(a), -EAGAIN);
	struct lunfs_hb hb;
	ck_assert_int_eq(hb_read(db, &v.p, slot, &hb), 0);
	ck_assert_uint_eq(hb.state, HB_REPLAYING);
	dev_close(da);
	dev_close(da2);
	dev_close(db);
	vol_free(&v);
}
END_TEST

START_TEST(self_fence_on_stale_renewal)
{
	struct vol v;
	struct dev *da;
	vol_make(&v);
	struct hb_host *a = host(&v, "esx-a", 1, &da);
	hb_pause_renewal(a, 1);
	ck_assert_int_eq(hb_ok(a), 0);
	usleep((v.p.lease_ms - v.p.fence_margin_ms + 100) * 1000);
	ck_assert_int_eq(hb_ok(a), -EFENCED);
	ck_assert_ptr_nonnull(strstr(hb_fence_reason(a), "older than the lease"));
	struct lk_lock l;
	ck_assert_int_eq(lk_acquire(a, &l, geom_ino_lock(&v.sb, 3), 3, LK_EXCLUSIVE, LK_NOWAIT, 0),
			 -EFENCED);
	hb_pause_renewal(a, 0);
	usleep((2 * v.p.hb_ms + 100) * 1000);
	ck_assert_int_eq(hb_ok(a), -EFENCED); /* fencing is final */
	ck_assert_int_eq(hb_release(a), -EFENCED); /* and it writes nothing more */
	dev_close(da);
	vol_free(&v);
}
END_TEST

START_TEST(fence_on_slot_takeover)
{
	struct vol v;
	struct dev *da, *d2;
	vol_make(&v);
	struct hb_host *a = host(&v, "esx-a", 1, &da);
	/* a peer overwrites our slot (as recovery would): our next CAW miscompares */
	d2 = tu_open(v.path);
	struct lunfs_hb hb;
	ck_assert_int_eq(hb_read(d2, &v.p, hb_slot(a), &hb), 0);
	hb.state = HB_REPLAYING;
	hb.gen += 1000;
	uint8_t *rec = dev_alloc(512);
	lunfs_hb_encode(&hb, v.p.uuid, v.p.hb_off + hb_slot(a) * 4096ull, rec);
	uint64_t t0 = lunfs_now_ms();
	ck_assert_int_eq(dev_write(d2, v.p.hb_off + hb_slot(a) * 4096ull, rec, 512), 0);
	/* fenced by the renewal's miscompare, not by the lease timer */
	while (!hb_fence_reason(a) && lunfs_now_ms() - t0 < 10 * v.p.lease_ms)
		usleep(20 * 1000);
	ck_assert_int_eq(hb_ok(a), -EFENCED);
	ck_assert_ptr_nonnull(strstr(hb_fence_reason(a), "taken over"));
	hb_abandon(a);
	free(rec);
	dev_close(da);
	dev_close(d2);
	vol_free(&v);
}
END_TEST


/* The write guard sits in the device: once the lease is gone, every kind of
 * write through that device is refused before it is submitted, whoever
 * calls it (a data write, a zeroing, a CAW, an async batch), while reads
 * still work. */
START_TEST(guard_refuses_every_write_after_lease)
{
	struct vol v;
	struct dev *da;
	vol_make(&v);
	struct hb_host *a = host(&v, "esx-a", 1, &da);
	uint64_t off = v.sb.file_off;
	uint8_t *buf = dev_alloc(4096), *cmp = dev_alloc(4096);
	ck_assert_int_eq(dev_write(da, off, buf, 4096), 0);
	hb_pause_renewal(a, 1);
	usleep((v.p.lease_ms - v.p.fence_margin_ms + 100) * 1000);
	/* no hb_ok() call first: the device itself refuses */
	ck_assert_int_eq(dev_write(da, off, buf, 4096), -EFENCED);
	ck_assert_int_eq(dev_zero(da, off, 4096), -EFENCED);
	ck_assert_int_eq(dev_caw(da, off, cmp, buf, 512, NULL), -EFENCED);
	struct iovec iv = {buf, 4096};
	struct dev_io io = {.op = DEV_OP_WRITE, .off = off, .iov = &iv, .iovcnt = 1}, *ios[1] = {&io};
	ck_assert_int_eq(dev_submit(da, ios, 1), -EFENCED);
	ck_assert_int_eq(dev_read(da, off, buf, 4096), 0);
	ck_assert_ptr_nonnull(strstr(hb_fence_reason(a), "older than the lease"));
	ck_assert_int_eq(hb_release(a), -EFENCED);
	/* released: the device has no guard any more */
	ck_assert_int_eq(dev_write(da, off, buf, 4096), 0);
	free(buf);
	free(cmp);
	dev_close(da);
	vol_free(&v);
}
END_TEST

/* A host that resumes after a suspend longer than its lease fences itself
 * before any write: the lease clock is CLOCK_BOOTTIME, which counts the
 * suspend.  The suspend is simulated by moving the clock the host reads (a
 * test hook); its renewal thread does not get to run first, as after a real
 * resume where the writer may win the race. */
START_TEST(suspend_longer_than_lease_fences)
{
	struct timespec bt;
	clock_gettime(CLOCK_BOOTTIME, &bt);
	uint64_t now = lunfs_now_ms(), b = (uint64_t)bt.tv_sec * 1000 + bt.tv_nsec / 1000000;
	ck_assert_uint_le(now - b, 50); /* the lease clock is the boot-time clock */
	struct vol v;
	struct dev *da;
	vol_make(&v);
	struct hb_host *a = host(&v, "esx-a", 1, &da);
	uint8_t *buf = dev_alloc(4096);
	ck_assert_int_eq(dev_write(da, v.sb.file_off, buf, 4096), 0);
	hb_pause_renewal(a, 1);
	hb_test_clock_jump(a, v.p.lease_ms); /* "suspended" for a whole lease */
	ck_assert_int_eq(dev_write(da, v.sb.file_off, buf, 4096), -EFENCED);
	ck_assert_int_eq(hb_ok(a), -EFENCED);
	hb_pause_renewal(a, 0);
	usleep((2 * v.p.hb_ms + 100) * 1000);
	ck_assert_int_eq(hb_ok(a), -EFENCED); /* a renewal after it does not undo it */
	ck_assert_int_eq(hb_release(a), -EFENCED);
	/* a short pause (below lease - margin) does not fence */
	dev_close(da);
	struct hb_host *b2 = host(&v, "esx-b", 2, &da);
	hb_test_clock_jump(b2, v.p.fence_margin_ms / 2);
	ck_assert_int_eq(dev_write(da, v.sb.file_off, buf, 4096), 0);
	ck_assert_int_eq(hb_release(b2), 0);
	free(buf);
	dev_close(da);
	vol_free(&v);
}
END_TEST

/* fsck -y and mkfs claim the volume: an EXCLUSIVE claim fails while a host
 * is alive, and a host that claims after it sees it and must refuse. */
START_TEST(exclusive_claim_and_live_hosts)
{
	struct vol v;
	struct dev *da, *dx;
	vol_make(&v);
	struct hb_host *a = host(&v, "esx-a", 1, &da), *x;
	struct hb_ident id = {.name = "fsck.lunfs@test"};
	id.uuid[0] = 9;
	struct hb_watch *w = calloc(1, sizeof(*w));
	dx = tu_open(v.path);
	uint64_t t0 = lunfs_now_ms();
	ck_assert_int_eq(hb_claim_exclusive(dx, &v.p, &id, &x, w), -EBUSY);
	ck_assert_uint_lt(lunfs_now_ms() - t0, v.p.lease_ms); /* a moving heartbeat shows soon */
	ck_assert_int_eq(w->slot[hb_slot(a)].status, HB_W_ALIVE);
	ck_assert_int_eq(hb_release(a), 0);
	/* nobody alive: the claim holds the volume */
	ck_assert_int_eq(hb_claim_exclusive(dx, &v.p, &id, &x, w), 0);
	ck_assert_int_eq(w->nalive, 0);
	struct lunfs_hb hb;
	ck_assert_int_eq(hb_read(da, &v.p, hb_slot(x), &hb), 0);
	ck_assert_uint_eq(hb.state, HB_EXCLUSIVE);
	dev_close(da);
	a = host(&v, "esx-a", 1, &da);
	char who[80] = "";
	ck_assert_int_eq(hb_exclusive_alive(a, who, sizeof(who)), 1);
	ck_assert_str_eq(who, "fsck.lunfs@test");
	ck_assert_int_eq(hb_release(x), 0);
	ck_assert_int_eq(hb_exclusive_alive(a, who, sizeof(who)), 0);
	ck_assert_int_eq(hb_release(a), 0);
	free(w);
	dev_close(da);
	dev_close(dx);
	vol_free(&v);
}
END_TEST

START_TEST(lock_modes)
{
	struct vol v;
	struct dev *da, *db, *dc;
	vol_make(&v);
	struct hb_host *a = host(&v, "a", 1, &da), *b = host(&v, "b", 2, &db), *c = host(&v, "c", 3, &dc);
	uint64_t off = geom_ino_lock(&v.sb, 9), obj = geom_ino_blk(&v.sb, 9);
	struct lk_lock la, lb, lc;
	struct lunfs_lock rec;

	ck_assert_int_eq(lk_acquire(a, &la, off, obj, LK_EXCLUSIVE, LK_NOWAIT, 0), 0);
	ck_assert_int_eq(lk_acquire(a, &la, off, obj, LK_EXCLUSIVE, LK_NOWAIT, 0), -EALREADY);
	ck_assert_int_eq(lk_acquire(b, &lb, off, obj, LK_EXCLUSIVE, LK_NOWAIT, 0), -EBUSY);
	ck_assert_uint_eq(lb.rec.holders[0].slot, hb_slot(a)); /* who holds it */
	ck_assert_int_eq(lk_acquire(b, &lb, off, obj, LK_SHARED_RO, LK_NOWAIT, 0), -EBUSY);
	ck_assert_int_eq(lk_read(da, v.p.uuid, off, &rec), 0);
	uint64_t g1 = rec.gen;
	ck_assert_uint_eq(rec.mode, LK_EXCLUSIVE);
	ck_assert_uint_eq(rec.object, obj);
	ck_assert_int_eq(lk_release(a, &la), 0);
	ck_assert_int_eq(lk_read(da, v.p.uuid, off, &rec), 0);
	ck_assert_uint_eq(rec.mode, LK_FREE);
	ck_assert_uint_eq(rec.gen, g1 + 1);

	/* shared read-only: many at once, no writer */
	ck_assert_int_eq(lk_acquire(a, &la, off, obj, LK_SHARED_RO, LK_NOWAIT, 0), 0);
	ck_assert_int_eq(lk_acquire(b, &lb, off, obj, LK_SHARED_RO, LK_NOWAIT, 0), 0);
	ck_assert_int_eq(lk_acquire(c, &lc, off, obj, LK_EXCLUSIVE, LK_NOWAIT, 0), -EBUSY);
	ck_assert_int_eq(lk_acquire(c, &lc, off, obj, LK_MULTI_WRITER, LK_NOWAIT, 0), -EBUSY);
	ck_assert_int_eq(lk_read(da, v.p.uuid, off, &rec), 0);
	ck_assert_uint_eq(rec.nholders, 2);
	ck_assert_int_eq(lk_release(a, &la), 0);
	ck_assert_int_eq(lk_release(b, &lb), 0);

	/* multi-writer: several writers, excludes exclusive and read-only */
	ck_assert_int_eq(lk_acquire(a, &la, off, obj, LK_MULTI_WRITER, LK_NOWAIT, 0), 0);
	ck_assert_int_eq(lk_acquire(b, &lb, off, obj, LK_MULTI_WRITER, LK_NOWAIT, 0), 0);
	ck_assert_int_eq(lk_acquire(c, &lc, off, obj, LK_SHARED_RO, LK_NOWAIT, 0), -EBUSY);
	ck_assert_int_eq(lk_release(b, &lb), 0);
	ck_assert_int_eq(lk_release(a, &la), 0);

	/* waiting: c gets the lock once a lets go */
	ck_assert_int_eq(lk_acquire(a, &la, off, obj, LK_EXCLUSIVE, LK_NOWAIT, 0), 0);
	ck_assert_int_eq(lk_acquire(c, &lc, off, obj, LK_EXCLUSIVE, LK_WAIT, 150), -EBUSY);
	ck_assert_int_eq(lk_release(a, &la), 0);
	ck_assert_int_eq(lk_acquire(c, &lc, off, obj, LK_EXCLUSIVE, LK_WAIT, 1000), 0);
	ck_assert_int_eq(lk_release(c, &lc), 0);

	hb_release(a);
	hb_release(b);
	hb_release(c);
	dev_close(da);
	dev_close(db);
	dev_close(dc);
	vol_free(&v);
}
END_TEST

START_TEST(lock_of_gone_and_dead_hosts)
{
	struct vol v;
	struct dev *da, *db, *dc;
	vol_make(&v);
	struct hb_host *a = host(&v, "a", 1, &da), *b = host(&v, "b", 2, &db);
	uint64_t off = geom_ino_lock(&v.sb, 4), obj = geom_ino_blk(&v.sb, 4);
	struct lk_lock la, lb;
	/* a unmounts without releasing: its slot is FREE, so the hold is void */
	ck_assert_int_eq(lk_acquire(a, &la, off, obj, LK_EXCLUSIVE, LK_NOWAIT, 0), 0);
	ck_assert_int_eq(hb_release(a), 0);
	ck_assert_int_eq(lk_acquire(b, &lb, off, obj, LK_EXCLUSIVE, LK_NOWAIT, 0), 0);
	/* b crashes holding it: c sees it alive, then dead after a whole lease */
	hb_abandon(b);
	struct hb_host *c = host(&v, "c", 3, &dc);
	struct lk_lock lc;
	ck_assert_int_eq(lk_acquire(c, &lc, off, obj, LK_EXCLUSIVE, LK_NOWAIT, 0), -EBUSY);
	uint64_t t0 = lunfs_now_ms();
	ck_assert_int_eq(lk_acquire(c, &lc, off, obj, LK_EXCLUSIVE, LK_WAIT, 5000), -ESTALE);
	ck_assert_uint_ge(lunfs_now_ms() - t0, v.p.lease_ms / 2);
	hb_release(c);
	dev_close(da);
	dev_close(db);
	dev_close(dc);
	vol_free(&v);
}
END_TEST

Suite *lock_suite(void)
{
	Suite *s = suite_create("lock");
	TCase *tc = tcase_create("core");
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, heartbeat_claim_renew_release);
	tcase_add_test(tc, heartbeat_reclaim_after_crash);
	tcase_add_test(tc, self_fence_on_stale_renewal);
	tcase_add_test(tc, fence_on_slot_takeover);
	tcase_add_test(tc, guard_refuses_every_write_after_lease);
	tcase_add_test(tc, suspend_longer_than_lease_fences);
	tcase_add_test(tc, exclusive_claim_and_live_hosts);
	tcase_add_test(tc, lock_modes);
	tcase_add_test(tc, lock_of_gone_and_dead_hosts);
	suite_add_tcase(s, tc);
	return s;
}
