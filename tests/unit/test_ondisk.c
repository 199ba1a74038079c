/* Encode/decode round trips and the verifiers' view of hostile bytes. */
#include <stdlib.h>
#include <string.h>
#include "tests/unit/tu.h"
#include "format/ondisk.h"
#include "format/format.h"

static const uint8_t U[16] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16};

static void make_sb(struct lunfs_sb *s, uint64_t size)
{
	struct lunfs_mkfs_opts o = {.max_hosts = 8, .jnl_size = 1 << 20};
	char err[200];
	ck_assert_int_eq(lunfs_geom_compute(&o, size, 512, s, err, sizeof(err)), 0);
	memcpy(s->uuid, U, 16);
}

START_TEST(sb_roundtrip)
{
	struct lunfs_sb s, t;
	uint8_t blk[4096];
	const char *why = NULL;
	make_sb(&s, 1ull << 30);
	strcpy(s.label, "vmstore");
	lunfs_sb_encode(&s, blk, 0);
	ck_assert_int_eq(lunfs_sb_decode(blk, &t, &why), 0);
	ck_assert_str_eq(t.label, "vmstore");
	ck_assert_uint_eq(t.file_blocks, s.file_blocks);
	ck_assert_uint_eq(t.jnl_off, s.jnl_off);
	ck_assert_int_eq(memcmp(t.uuid, U, 16), 0);
	lunfs_sb_encode(&s, blk, 1);
	ck_assert_int_eq(lunfs_sb_decode(blk, &t, &why), 0);
}
END_TEST

START_TEST(sb_rejects_damage)
{
	struct lunfs_sb s, t;
	uint8_t blk[4096];
	const char *why = NULL;
	make_sb(&s, 1ull << 30);
	/* every single-byte flip of the encoded superblock is caught */
	lunfs_sb_encode(&s, blk, 0);
	for (int i = 0; i < 4096; i += 7) {
		blk[i] ^= 0x5a;
		ck_assert_int_ne(lunfs_sb_decode(blk, &t, &why), 0);
		ck_assert_ptr_nonnull(why);
		blk[i] ^= 0x5a;
	}
	/* hostile geometry, correctly checksummed, is still rejected */
	struct lunfs_sb bad = s;
	bad.fc_count = 0xffffffffu;
	lunfs_sb_encode(&bad, blk, 0);
	ck_assert_int_eq(lunfs_sb_decode(blk, &t, &why), -EFSCORRUPTED);
	bad = s;
	bad.jnl_off = 0;
	lunfs_sb_encode(&bad, blk, 0);
	ck_assert_int_eq(lunfs_sb_decode(blk, &t, &why), -EFSCORRUPTED);
	bad = s;
	bad.file_blocks = ~0ull / 2;
	lunfs_sb_encode(&bad, blk, 0);
	ck_assert_int_eq(lunfs_sb_decode(blk, &t, &why), -EFSCORRUPTED);
	bad = s;
	bad.max_hosts = 100000;
	lunfs_sb_encode(&bad, blk, 0);
	ck_assert_int_eq(lunfs_sb_decode(blk, &t, &why), -EFSCORRUPTED);
	/* unknown version: its own error */
	lunfs_sb_encode(&s, blk, 0);
	((struct lunfs_d_sb *)blk)->h.version = 9;
	((struct lunfs_d_sb *)blk)->h.csum = lunfs_csum(blk, 4096);
	ck_assert_int_eq(lunfs_sb_decode(blk, &t, &why), -EPROTONOSUPPORT);
}
END_TEST

START_TEST(hb_lock_roundtrip)
{
	uint8_t rec[512];
	struct lunfs_hb hb = {.gen = 5, .state = HB_LIVE, .slot = 3, .mount_gen = 7, .counter = 99}, h2;
	strcpy(hb.host_name, "esx-01");
	lunfs_hb_encode(&hb, U, 65536 + 3 * 4096, rec);
	ck_assert_int_eq(lunfs_hb_decode(rec, U, 65536 + 3 * 4096, &h2, NULL), 0);
	ck_assert_str_eq(h2.host_name, "esx-01");
	ck_assert_uint_eq(h2.counter, 99);
	/* a record read from the wrong place is rejected */
	ck_assert_int_eq(lunfs_hb_decode(rec, U, 65536, &h2, NULL), -EFSCORRUPTED);
	/* all-zero = pristine free slot */
	memset(rec, 0, sizeof(rec));
	ck_assert_int_eq(lunfs_hb_decode(rec, U, 0, &h2, NULL), 0);
	ck_assert_uint_eq(h2.state, HB_FREE);

	struct lunfs_lock lk = {.gen = 4, .mode = LK_SHARED_RO, .nholders = 2, .object = 8192}, l2;
	lk.holders[0].slot = 1;
	lk.holders[0].mount_gen = 10;
	lk.holders[1].slot = 5;
	lk.holders[1].mount_gen = 11;
	lunfs_lock_encode(&lk, U, 4096, rec);
	ck_assert_int_eq(lunfs_lock_decode(rec, U, 4096, &l2, NULL), 0);
	ck_assert_uint_eq(l2.nholders, 2);
	ck_assert_uint_eq(l2.holders[1].mount_gen, 11);
	/* inconsistent mode/holders is corrupt even with a good checksum */
	lk.mode = LK_EXCLUSIVE;
	lunfs_lock_encode(&lk, U, 4096, rec);
	ck_assert_int_eq(lunfs_lock_decode(rec, U, 4096, &l2, NULL), -EFSCORRUPTED);
	lk.mode = 9;
	lunfs_lock_encode(&lk, U, 4096, rec);
	ck_assert_int_eq(lunfs_lock_decode(rec, U, 4096, &l2, NULL), -EFSCORRUPTED);
}
END_TEST

/* The header of the file cluster that was the last before an online grow
 * covers fewer entries than the grown geometry: the rest are free.  Only
 * for file clusters, only smaller, and only when consistent in itself. */
START_TEST(rc_grown_header)
{
	uint8_t blk[4096];
	struct lunfs_rc rc, r2;
	lunfs_rc_init(&rc, RC_FILE, 36, 15 * 64);
	rc_set(&rc, 35, 1);
	rc.refcnt[35] = 1;
	rc.nfree--;
	lunfs_rc_encode(&rc, U, 8192, 15, blk);
	ck_assert_int_eq(lunfs_rc_decode(blk, U, 8192, RC_FILE, 64, 15 * 64, &r2, NULL), 0);
	ck_assert_uint_eq(r2.nentries, 64);
	ck_assert_uint_eq(r2.nfree, 63);
	ck_assert(rc_test(&r2, 35));
	/* larger than the geometry (a host that did not follow yet): corrupt */
	ck_assert_int_eq(lunfs_rc_decode(blk, U, 8192, RC_FILE, 30, 15 * 64, &r2, NULL), -EFSCORRUPTED);
	ck_assert_int_eq(lunfs_rc_decode(blk, U, 8192, RC_FILE, 64, 14 * 64, &r2, NULL), -EFSCORRUPTED);
	lunfs_rc_init(&rc, RC_META, 36, 0);
	lunfs_rc_encode(&rc, U, 8192, 0, blk);
	ck_assert_int_eq(lunfs_rc_decode(blk, U, 8192, RC_META, 64, 0, &r2, NULL), -EFSCORRUPTED);
	lunfs_rc_init(&rc, RC_FILE, 36, 0);
	rc.nfree = 30; /* disagrees with its own bitmap */
	lunfs_rc_encode(&rc, U, 8192, 0, blk);
	ck_assert_int_eq(lunfs_rc_decode(blk, U, 8192, RC_FILE, 64, 0, &r2, NULL), -EFSCORRUPTED);
}
END_TEST

START_TEST(rc_inode_roundtrip)
{
	uint8_t blk[4096];
	struct lunfs_rc rc, r2;
	lunfs_rc_init(&rc, RC_FILE, 100, 200);
	rc_set(&rc, 3, 1);
	rc.refcnt[3] = 2;
	rc.nfree--;
	lunfs_rc_encode(&rc, U, 8192, 2, blk);
	ck_assert_int_eq(lunfs_rc_decode(blk, U, 8192, RC_FILE, 100, 200, &r2, NULL), 0);
	ck_assert(rc_test(&r2, 3));
	ck_assert_uint_eq(r2.refcnt[3], 2);
	ck_assert_int_eq(lunfs_rc_decode(blk, U, 8192, RC_META, 100, 200, &r2, NULL), -EFSCORRUPTED);
	rc.nfree = 100; /* disagrees with the bitmap */
	lunfs_rc_encode(&rc, U, 8192, 2, blk);
	ck_assert_int_eq(lunfs_rc_decode(blk, U, 8192, RC_FILE, 100, 200, &r2, NULL), -EFSCORRUPTED);

	struct lunfs_inode *in = calloc(1, sizeof(*in)), *i2 = calloc(1, sizeof(*i2));
	in->ino = 42;
	in->mode = 0100644;
	in->size = 64ull << 40;
	in->direct[0] = 17 | PTR_TBZ;
	in->mtime.sec = 1700000000;
	in->mtime.nsec = 123456789;
	lunfs_inode_encode(in, U, 12288, blk);
	ck_assert_int_eq(lunfs_inode_decode(blk, U, 12288, 42, i2, NULL), 0);
	ck_assert_uint_eq(i2->size, 64ull << 40);
	ck_assert_uint_eq(i2->direct[0], 17 | PTR_TBZ);
	ck_assert_uint_eq(i2->mtime.nsec, 123456789);
	ck_assert_int_eq(lunfs_inode_decode(blk, U, 12288, 43, i2, NULL), -EFSCORRUPTED);
	free(in);
	free(i2);
}
END_TEST

START_TEST(geometry_limits)
{
	struct lunfs_sb s;
	char err[256];
	struct lunfs_mkfs_opts o = {0};
	/* 64 TiB with defaults */
	ck_assert_int_eq(lunfs_geom_compute(&o, 64ull << 40, 512, &s, err, sizeof(err)), 0);
	ck_assert_uint_ge(s.file_blocks * s.file_bs, 60ull << 40);
	ck_assert_uint_eq((uint64_t)s.ig_count * s.ig_inodes, 1u << 20); /* the cap */
	/* default inodes: one per MiB, within 512 .. 2^20 */
	ck_assert_int_eq(lunfs_geom_compute(&o, 8ull << 30, 512, &s, err, sizeof(err)), 0);
	ck_assert_uint_eq((uint64_t)s.ig_count * s.ig_inodes, 8192);
	ck_assert_int_eq(lunfs_geom_compute(&o, 300 << 20, 512, &s, err, sizeof(err)), 0);
	ck_assert_uint_eq((uint64_t)s.ig_count * s.ig_inodes, 512);
	o.inodes = 100000; /* -I: rounded up to whole groups */
	ck_assert_int_eq(lunfs_geom_compute(&o, 8ull << 30, 512, &s, err, sizeof(err)), 0);
	ck_assert_uint_eq((uint64_t)s.ig_count * s.ig_inodes, 100096);
	o.inodes = 0;
	/* too small: message names the minimum */
	ck_assert_int_eq(lunfs_geom_compute(&o, 100 << 20, 512, &s, err, sizeof(err)), -ENOSPC);
	ck_assert_ptr_nonnull(strstr(err, "at least"));
	uint64_t min = lunfs_geom_min_size(&o, 512);
	ck_assert_int_eq(lunfs_geom_compute(&o, min, 512, &s, err, sizeof(err)), 0);
	ck_assert_int_ne(lunfs_geom_compute(&o, min - (1 << 20), 512, &s, err, sizeof(err)), 0);
	/* 1024 hosts fit */
	o.max_hosts = 1024;
	o.jnl_size = 1 << 20;
	ck_assert_int_eq(lunfs_geom_compute(&o, 4ull << 30, 512, &s, err, sizeof(err)), 0);
	o.file_bs = 3 << 20;
	ck_assert_int_eq(lunfs_geom_compute(&o, 4ull << 30, 512, &s, err, sizeof(err)), -EINVAL);
	o.file_bs = 0;
	o.lease_ms = 1000;
	o.hb_ms = 1000;
	ck_assert_int_eq(lunfs_geom_compute(&o, 4ull << 30, 512, &s, err, sizeof(err)), -EINVAL);
}
END_TEST

START_TEST(journaled_addresses)
{
	struct lunfs_sb s;
	make_sb(&s, 1ull << 30);
	ck_assert_int_eq(geom_is_journaled(&s, geom_ino_blk(&s, 5)), 0);
	ck_assert_int_ne(geom_is_journaled(&s, geom_ino_lock(&s, 5)), 0);
	ck_assert_int_eq(geom_is_journaled(&s, geom_fc_hdr(&s, 0)), 0);
	ck_assert_int_ne(geom_is_journaled(&s, geom_fc_lock(&s, 0)), 0);
	ck_assert_int_eq(geom_is_journaled(&s, geom_meta_blk(&s, 7)), 0);
	ck_assert_int_ne(geom_is_journaled(&s, 0), 0);
	ck_assert_int_ne(geom_is_journaled(&s, s.hb_off), 0);
	ck_assert_int_ne(geom_is_journaled(&s, s.jnl_off), 0);
	ck_assert_int_ne(geom_is_journaled(&s, s.file_off), 0);
	ck_assert_int_ne(geom_is_journaled(&s, s.backup_off), 0);
}
END_TEST

Suite *ondisk_suite(void)
{
	Suite *s = suite_create("ondisk");
	TCase *tc = tcase_create("core");
	tcase_add_test(tc, sb_roundtrip);
	tcase_add_test(tc, sb_rejects_damage);
	tcase_add_test(tc, hb_lock_roundtrip);
	tcase_add_test(tc, rc_inode_roundtrip);
	tcase_add_test(tc, rc_grown_header);
	tcase_add_test(tc, geometry_limits);
	tcase_add_test(tc, journaled_addresses);
	suite_add_tcase(s, tc);
	return s;
}
