/* Several hosts on one volume, in one process: each lunfs_vol is its own
 * host (its own device open, heartbeat slot, journal and threads).  Peer
 * recovery, recovery taken over from a recoverer that died, lock handoff,
 * and multi-writer and shared read-only opens across hosts. */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "tests/unit/tu.h"
#include "fs/lunfs.h"
#include "fs/lunfs_test.h"
#include "format/format.h"
#include "lock/lk.h"
#include "util/clock.h"

#define MiB (1024 * 1024)

static struct lunfs_vol *host(const char *path, const char *name, uint32_t pause_ms)
{
	struct lunfs_mount_opts o = {.host = name, .linger_ms = 200};
	struct lunfs_test_opts t = {.recovery_pause_ms = pause_ms};
	struct lunfs_vol *v;
	const char *msg;
	int r = lunfs_mount_test(path, &o, &t, &v, &msg);
	ck_assert_msg(r == 0, "mount %s as %s: %s", path, name, msg ? msg : lunfs_strerror(r));
	return v;
}

/* The heartbeat slot of the host named name (any state), or -1. */
static int slot_of(const char *path, const struct lunfs_sb *sb, const char *name,
		   struct lunfs_hb *out)
{
	struct dev *d = tu_open(path);
	struct lk_params p = lk_params_of(sb);
	int found = -1;
	for (uint32_t s = 0; s < sb->max_hosts && found < 0; s++) {
		struct lunfs_hb hb;
		if (hb_read(d, &p, s, &hb) == 0 && hb.gen && !strcmp(hb.host_name, name)) {
			found = (int)s;
			*out = hb;
		}
	}
	dev_close(d);
	return found;
}

/* Polls an open in mode until it stops failing with EBUSY/ESTALE (locked)
 * or ENOENT (the inode is still only in its creator's journal: it shows
 * once checkpointed, or replayed by a recovery); returns the result and the
 * time it took. */
static int open_when_free(struct lunfs_vol *v, uint64_t ino, int mode, struct lunfs_file **f,
			  uint64_t *ms)
{
	uint64_t t0 = lunfs_now_ms();
	int r;
	while ((r = lunfs_open(v, ino, mode, f)) == -EBUSY || r == -ESTALE || r == -ENOENT) {
		if (lunfs_now_ms() - t0 > 30000)
			break;
		usleep(20000);
	}
	*ms = lunfs_now_ms() - t0;
	return r;
}

/* Unmounts the hosts (each must succeed) and removes the image. */
static void teardown(char *p, struct lunfs_vol *a, struct lunfs_vol *b, struct lunfs_vol *c)
{
	struct lunfs_vol *v[3] = {a, b, c};
	for (int i = 0; i < 3; i++)
		if (v[i])
			ck_assert_int_eq(lunfs_unmount(v[i]), 0);
	unlink(p);
	free(p);
}

static uint64_t create(struct lunfs_vol *v, uint64_t dir, const char *name)
{
	struct lunfs_stat st;
	int r = lunfs_mknod(v, dir, name, S_IFREG | 0644, 0, NULL, &st);
	ck_assert_msg(r == 0, "create %s: %s", name, lunfs_strerror(r));
	return st.ino;
}

/* A dies with a file open for writing and a committed, not checkpointed
 * create; B recovers it: the data A fsynced and the create are there, A's
 * slot is FREE, and B can open the file read-write. */
/* Online grow with a host that follows late: B lingers 60 s, so its own
 * periodic check sleeps, and it never calls statfs.  A follows (statfs),
 * fills the old space and writes a file whose last block is in the new
 * space.  B then opens that file: the block number beyond B's geometry
 * makes B re-read the superblock, and the read works; B also allocates
 * (from a cluster whose header A rewrote with the grown count). */
START_TEST(grow_late_follower)
{
	struct lunfs_sb sb;
	char *p = tu_volume(256 << 20, &sb);
	struct lunfs_mount_opts slow = {.host = "esx-b", .linger_ms = 60000};
	struct lunfs_vol *a = host(p, "esx-a", 0), *b, *g;
	const char *msg;
	ck_assert_int_eq(lunfs_mount(p, &slow, &b, &msg), 0);
	struct lunfs_statfs s0;
	ck_assert_int_eq(lunfs_statfs(a, &s0), 0);
	ck_assert_int_eq(truncate(p, 512 << 20), 0);
	g = host(p, "grower", 0);
	struct lunfs_grow_info gi;
	ck_assert_int_eq(lunfs_grow(g, 0, &gi, &msg), 0);
	ck_assert_int_eq(lunfs_unmount(g), 0);
	struct lunfs_statfs s1;
	ck_assert_int_eq(lunfs_statfs(a, &s1), 0); /* A follows */
	ck_assert_uint_eq(s1.blocks, gi.new_blocks - 1);
	uint64_t ino = create(a, 1, "vm.vmdk");
	struct lunfs_file *f;
	uint64_t ms, len = (s0.bfree + 20) * (uint64_t)MiB;
	ck_assert_int_eq(lunfs_open(a, ino, LUNFS_OPEN_RW, &f), 0);
	ck_assert_int_eq(lunfs_fallocate(f, 0, 0, len), 0);
	ck_assert_int_eq(lunfs_pwrite(f, "tail", 4, len - 4), 4);
	ck_assert_int_eq(lunfs_fsync(f), 0);
	ck_assert_int_eq(lunfs_close(f), 0);
	ck_assert_int_eq(open_when_free(b, ino, LUNFS_OPEN_RW, &f, &ms), 0);
	char rd[4];
	ck_assert_int_eq(lunfs_pread(f, rd, 4, len - 4), 4);
	ck_assert_int_eq(memcmp(rd, "tail", 4), 0);
	ck_assert_int_eq(lunfs_fallocate(f, 0, len, 8 * MiB), 0);
	ck_assert_int_eq(lunfs_close(f), 0);
	teardown(p, a, b, NULL);
}
END_TEST

START_TEST(peer_recovery)
{
	struct lunfs_sb sb;
	char *p = tu_volume(256 << 20, &sb);
	struct lunfs_vol *a = host(p, "esx-a", 0), *b = host(p, "esx-b", 0);
	struct lunfs_file *f, *g;
	uint64_t ino = create(a, 1, "vm.vmdk");
	ck_assert_int_eq(lunfs_open(a, ino, LUNFS_OPEN_RW, &f), 0);
	char buf[8192];
	memset(buf, 'a', sizeof(buf));
	ck_assert_int_eq(lunfs_pwrite(f, buf, sizeof(buf), 0), (ssize_t)sizeof(buf));
	ck_assert_int_eq(lunfs_fsync(f), 0);
	uint64_t ms;
	ck_assert_int_eq(open_when_free(b, ino, LUNFS_OPEN_READ, &g, &ms), 0);
	ck_assert_int_eq(lunfs_close(g), 0); /* shows within about a second */
	ck_assert_uint_lt(ms, 3000);
	ck_assert_int_eq(lunfs_open(b, ino, LUNFS_OPEN_RW, &g), -EBUSY);
	create(a, 1, "late"); /* committed to A's journal only */
	lunfs_abandon(a); /* power lost */
	free(f);
	ck_assert_int_eq(open_when_free(b, ino, LUNFS_OPEN_RW, &g, &ms), 0);
	/* never before the lease: A's last renewal is at most hb_ms old */
	ck_assert_uint_ge(ms, sb.lease_ms - 2 * sb.hb_ms);
	char rd[8192];
	ck_assert_int_eq(lunfs_pread(g, rd, sizeof(rd), 0), (ssize_t)sizeof(rd));
	ck_assert_int_eq(memcmp(rd, buf, sizeof(rd)), 0);
	ck_assert_int_eq(lunfs_pwrite(g, "b", 1, 0), 1);
	ck_assert_int_eq(lunfs_close(g), 0);
	struct lunfs_stat st;
	ck_assert_int_eq(lunfs_lookup(b, 1, "late", &st), 0); /* replayed by B */
	struct lunfs_hb hb;
	ck_assert_int_ge(slot_of(p, &sb, "esx-a", &hb), 0);
	ck_assert_uint_eq(hb.state, HB_FREE);
	/* A comes back at once: its slot is free, nothing to wait for */
	uint64_t t0 = lunfs_now_ms();
	a = host(p, "esx-a", 0);
	ck_assert_uint_lt(lunfs_now_ms() - t0, sb.lease_ms);
	ck_assert_int_eq(lunfs_lookup(a, 1, "late", &st), 0);
	teardown(p, a, b, NULL);
}
END_TEST

/* B starts recovering dead A and dies while A's slot is REPLAYING by B;
 * C takes the recovery over, then recovers B too. */
START_TEST(recovery_taken_over)
{
	struct lunfs_sb sb;
	char *p = tu_volume(256 << 20, &sb);
	struct lunfs_vol *a = host(p, "esx-a", 0), *b = host(p, "esx-b", 60000);
	struct lunfs_file *f, *g;
	uint64_t ino = create(a, 1, "vm.vmdk");
	ck_assert_int_eq(lunfs_open(a, ino, LUNFS_OPEN_RW, &f), 0);
	ck_assert_int_eq(lunfs_pwrite(f, "durable", 7, 0), 7);
	ck_assert_int_eq(lunfs_fsync(f), 0);
	lunfs_abandon(a);
	free(f);
	struct lunfs_hb hb;
	int sa = slot_of(p, &sb, "esx-a", &hb), sbh;
	ck_assert_int_ge(sa, 0);
	uint64_t t0 = lunfs_now_ms();
	while (hb.state != HB_REPLAYING && lunfs_now_ms() - t0 < 20000) {
		usleep(50000);
		slot_of(p, &sb, "esx-a", &hb);
	}
	ck_assert_uint_eq(hb.state, HB_REPLAYING);
	struct lunfs_hb hbb;
	sbh = slot_of(p, &sb, "esx-b", &hbb);
	ck_assert_uint_eq(hb.replayer_slot, (uint32_t)sbh);
	lunfs_abandon(b); /* dies in the middle of the recovery */
	struct lunfs_vol *c = host(p, "esx-c", 0);
	uint64_t ms;
	ck_assert_int_eq(open_when_free(c, ino, LUNFS_OPEN_RW, &g, &ms), 0);
	char rd[7];
	ck_assert_int_eq(lunfs_pread(g, rd, 7, 0), 7);
	ck_assert_int_eq(memcmp(rd, "durable", 7), 0);
	ck_assert_int_eq(lunfs_close(g), 0);
	slot_of(p, &sb, "esx-a", &hb);
	ck_assert_uint_eq(hb.state, HB_FREE);
	t0 = lunfs_now_ms();
	while (slot_of(p, &sb, "esx-b", &hbb) >= 0 && hbb.state != HB_FREE &&
	       lunfs_now_ms() - t0 < 20000)
		usleep(50000);
	ck_assert_uint_eq(hbb.state, HB_FREE);
	teardown(p, c, NULL, NULL);
}
END_TEST

/* A passes its open disk to B: A's writes stop, C cannot slip in, B
 * adopts the lock at its open and sees A's last write. */
START_TEST(handoff)
{
	struct lunfs_sb sb;
	char *p = tu_volume(256 << 20, &sb);
	struct lunfs_vol *a = host(p, "esx-a", 0), *b = host(p, "esx-b", 0), *c = host(p, "esx-c", 0);
	struct lunfs_file *f, *g, *h;
	uint64_t ino = create(a, 1, "vm.vmdk");
	ck_assert_int_eq(lunfs_open(a, ino, LUNFS_OPEN_RW, &f), 0);
	ck_assert_int_eq(lunfs_pwrite(f, "before", 6, 0), 6);
	ck_assert_int_eq(lunfs_handoff(a, ino, "nobody"), -ENOENT);
	ck_assert_int_eq(lunfs_handoff(a, ino, "esx-a"), -EINVAL);
	ck_assert_int_eq(lunfs_handoff(a, 1, "esx-b"), -ENOLCK);
	ck_assert_int_eq(lunfs_handoff(a, ino, "esx-b"), 0);
	ck_assert_int_eq(lunfs_pwrite(f, "after", 5, 0), -ESTALE);
	ck_assert_int_eq(lunfs_fsync(f), -ESTALE);
	char rd[6];
	ck_assert_int_eq(lunfs_pread(f, rd, 6, 0), 6); /* reads still work */
	ck_assert_int_eq(lunfs_open(c, ino, LUNFS_OPEN_RW, &h), -EBUSY);
	ck_assert_int_eq(lunfs_open(c, ino, LUNFS_OPEN_SHARED_RO, &h), -EBUSY);
	ck_assert_int_eq(lunfs_open(b, ino, LUNFS_OPEN_RW, &g), 0);
	ck_assert_int_eq(lunfs_pread(g, rd, 6, 0), 6);
	ck_assert_int_eq(memcmp(rd, "before", 6), 0);
	ck_assert_int_eq(lunfs_pwrite(g, "B", 1, 0), 1);
	ck_assert_int_eq(lunfs_close(f), 0); /* A's close does not touch B's lock */
	ck_assert_int_eq(lunfs_open(c, ino, LUNFS_OPEN_RW, &h), -EBUSY);
	ck_assert_int_eq(lunfs_close(g), 0);
	uint64_t ms;
	ck_assert_int_eq(open_when_free(c, ino, LUNFS_OPEN_RW, &h, &ms), 0);
	ck_assert_int_eq(lunfs_pread(h, rd, 6, 0), 6);
	ck_assert_int_eq(memcmp(rd, "Before", 6), 0);
	ck_assert_int_eq(lunfs_close(h), 0);
	teardown(p, a, b, c);
}
END_TEST

/* Multi-writer on a preallocated disk from two hosts at once; shared
 * read-only from three hosts at once; each excludes the other modes. */
START_TEST(modes_across_hosts)
{
	struct lunfs_sb sb;
	char *p = tu_volume(256 << 20, &sb);
	struct lunfs_vol *a = host(p, "esx-a", 0), *b = host(p, "esx-b", 0),
			 *c = host(p, "esx-c", 0);
	struct lunfs_file *fa, *fb, *fc;
	uint64_t ino = create(a, 1, "shared.vmdk");
	ck_assert_int_eq(lunfs_open(a, ino, LUNFS_OPEN_RW, &fa), 0);
	ck_assert_int_eq(lunfs_fallocate(fa, LUNFS_FALLOC_ZERO, 0, 4 * MiB), 0);
	ck_assert_int_eq(lunfs_close(fa), 0);
	ck_assert_int_eq(lunfs_open(a, ino, LUNFS_OPEN_MULTI, &fa), 0);
	uint64_t ms;
	ck_assert_int_eq(open_when_free(b, ino, LUNFS_OPEN_MULTI, &fb, &ms), 0);
	ck_assert_int_eq(lunfs_open(c, ino, LUNFS_OPEN_RW, &fc), -EBUSY);
	ck_assert_int_eq(lunfs_open(c, ino, LUNFS_OPEN_SHARED_RO, &fc), -EBUSY);
	ck_assert_int_eq(lunfs_pwrite(fa, "from-a", 6, 0), 6);
	ck_assert_int_eq(lunfs_pwrite(fb, "from-b", 6, 3 * MiB), 6);
	ck_assert_int_eq(lunfs_pwrite(fb, "grow", 4, 4 * MiB), -EPERM);
	char rd[6];
	ck_assert_int_eq(lunfs_pread(fb, rd, 6, 0), 6);
	ck_assert_int_eq(memcmp(rd, "from-a", 6), 0);
	ck_assert_int_eq(lunfs_pread(fa, rd, 6, 3 * MiB), 6);
	ck_assert_int_eq(memcmp(rd, "from-b", 6), 0);
	ck_assert_int_eq(lunfs_close(fa), 0);
	ck_assert_int_eq(lunfs_close(fb), 0);
	ck_assert_int_eq(open_when_free(a, ino, LUNFS_OPEN_SHARED_RO, &fa, &ms), 0);
	ck_assert_int_eq(open_when_free(b, ino, LUNFS_OPEN_SHARED_RO, &fb, &ms), 0);
	ck_assert_int_eq(open_when_free(c, ino, LUNFS_OPEN_SHARED_RO, &fc, &ms), 0);
	struct lunfs_file *x;
	ck_assert_int_eq(lunfs_open(c, ino, LUNFS_OPEN_RW, &x), -EBUSY);
	ck_assert_int_eq(lunfs_pread(fc, rd, 6, 3 * MiB), 6);
	ck_assert_int_eq(memcmp(rd, "from-b", 6), 0);
	ck_assert_int_eq(lunfs_close(fa), 0);
	ck_assert_int_eq(lunfs_close(fb), 0);
	ck_assert_int_eq(lunfs_close(fc), 0);
	teardown(p, a, b, c);
}
END_TEST

/* Random bytes over live A's heartbeat slot while A holds a file open: A
 * fences itself (its renewal miscompares), the slot never decodes again,
 * and yet B recovers it (by its index, after its raw bytes stood still for
 * a lease): B gets A's file and can create in /, and the slot is FREE under
 * a generation no earlier mount had. */
START_TEST(damaged_slot_recovered)
{
	struct lunfs_sb sb;
	char *p = tu_volume(256 << 20, &sb);
	struct lunfs_vol *a = host(p, "esx-a", 0), *b = host(p, "esx-b", 0);
	struct lunfs_file *f, *g;
	uint64_t ino = create(a, 1, "vm.vmdk");
	ck_assert_int_eq(lunfs_open(a, ino, LUNFS_OPEN_RW, &f), 0);
	ck_assert_int_eq(lunfs_pwrite(f, "aaaa", 4, 0), 4);
	ck_assert_int_eq(lunfs_fsync(f), 0);
	struct lunfs_hb hb;
	int s = slot_of(p, &sb, "esx-a", &hb);
	ck_assert_int_ge(s, 0);
	uint64_t old_gen = hb.mount_gen;
	char junk[512];
	for (size_t i = 0; i < sizeof(junk); i++)
		junk[i] = (char)(i * 131 + 7);
	int fd = open(p, O_WRONLY);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(pwrite(fd, junk, sizeof(junk), (off_t)geom_hb(&sb, s)), (ssize_t)sizeof(junk));
	close(fd);
	uint64_t ms;
	ck_assert_int_eq(open_when_free(b, ino, LUNFS_OPEN_RW, &g, &ms), 0);
	ck_assert_uint_ge(ms, sb.lease_ms - 2 * sb.hb_ms); /* never before a lease */
	char rd[4];
	ck_assert_int_eq(lunfs_pread(g, rd, 4, 0), 4);
	ck_assert_int_eq(memcmp(rd, "aaaa", 4), 0);
	ck_assert_int_eq(lunfs_close(g), 0);
	create(b, 1, "after"); /* the root's lock is free too */
	/* A: fenced, its writes fail */
	ck_assert_int_lt(lunfs_pwrite(f, "x", 1, 0), 0);
	struct dev *d = tu_open(p);
	struct lk_params lp = lk_params_of(&sb);
	/* the recovery frees the locks, then the slot: B's open may come
	 * between the two */
	for (int t = 0; t < 200; t++) {
		ck_assert_int_eq(hb_read(d, &lp, s, &hb), 0);
		if (hb.state == HB_FREE)
			break;
		usleep(10 * 1000);
	}
	ck_assert_uint_eq(hb.state, HB_FREE);
	ck_assert_uint_gt(hb.mount_gen, old_gen);
	dev_close(d);
	free(f);
	lunfs_abandon(a);
	a = host(p, "esx-a", 0); /* A rejoins under a new generation */
	struct lunfs_stat st;
	uint64_t t0 = lunfs_now_ms();
	int r;
	while ((r = lunfs_lookup(a, 1, "after", &st)) == -ENOENT && lunfs_now_ms() - t0 < 5000)
		usleep(50000); /* shows once B checkpoints it */
	ck_assert_int_eq(r, 0);
	teardown(p, a, b, NULL);
}
END_TEST

Suite *cluster_suite(void)
{
	Suite *s = suite_create("cluster");
	TCase *tc = tcase_create("core");
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, peer_recovery);
	tcase_add_test(tc, recovery_taken_over);
	tcase_add_test(tc, handoff);
	tcase_add_test(tc, modes_across_hosts);
	tcase_add_test(tc, damaged_slot_recovered);
	tcase_add_test(tc, grow_late_follower);
	suite_add_tcase(s, tc);
	return s;
}
