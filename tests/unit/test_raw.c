/* Reads what mkfs.lunfs and a heartbeat claim wrote with raw pread at the
 * offsets docs/FORMAT.md gives, without the project's structs or decoders,
 * so a bug shared by encoder and decoder cannot hide. */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <xxhash.h>
#include "tests/unit/tu.h"
#include "lock/lk.h"

static uint64_t le(const uint8_t *p, int n)
{
	uint64_t v = 0;
	for (int i = n - 1; i >= 0; i--)
		v = v << 8 | p[i];
	return v;
}

static void raw_read(const char *path, uint64_t off, uint8_t *buf, size_t len)
{
	int fd = open(path, O_RDONLY);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(pread(fd, buf, len, off), (ssize_t)len);
	close(fd);
}

START_TEST(superblock_and_heartbeat_raw)
{
	char *p = tu_image(256 << 20);
	char cmd[512];
	const char *bin = getenv("LUNFS_BIN") ? getenv("LUNFS_BIN") : "build/bin";
	snprintf(cmd, sizeof(cmd),
		 "%s/mkfs.lunfs -q -L rawtest -N 8 -J 1M -b 256K --lease-ms 900 --heartbeat-ms 100 %s"
		 " >/dev/null", bin, p);
	ck_assert_int_eq(system(cmd), 0);

	uint8_t sb[4096], bk[4096];
	raw_read(p, 0, sb, 4096);
	ck_assert_int_eq(memcmp(sb + 8, "LNSB", 4), 0);                  /* magic */
	ck_assert_uint_eq(le(sb + 12, 2), 4);                            /* version */
	ck_assert_uint_eq(le(sb, 8), XXH3_64bits(sb + 8, 4096 - 8));     /* checksum */
	ck_assert_uint_eq(le(sb + 32, 8), 0);                            /* self */
	ck_assert_uint_eq(le(sb + 80, 8), 256 << 20);                    /* dev_size */
	ck_assert_uint_eq(le(sb + 88, 4), 512);                          /* sector_size */
	ck_assert_uint_eq(le(sb + 92, 4), 4096);                         /* meta_bs */
	ck_assert_uint_eq(le(sb + 96, 4), 256 << 10);                    /* file_bs */
	ck_assert_uint_eq(le(sb + 100, 4), 8);                           /* max_hosts */
	ck_assert_uint_eq(le(sb + 104, 4), 900);                         /* lease_ms */
	ck_assert_uint_eq(le(sb + 108, 4), 100);                         /* hb_ms */
	ck_assert_uint_eq(le(sb + 120, 8), 65536);                       /* hb_off */
	ck_assert_uint_eq(le(sb + 144, 8), 1 << 20);                     /* jnl_size */
	ck_assert_uint_eq(le(sb + 240, 8), 1);                           /* root_ino */
	ck_assert_str_eq((char *)sb + 264, "rawtest");                   /* label */
	uint64_t backup = le(sb + 256, 8);
	ck_assert_uint_eq(backup, (256 << 20) - 4096);
	raw_read(p, backup, bk, 4096);
	ck_assert_int_eq(memcmp(bk + 8, "LNSB", 4), 0);
	ck_assert_uint_eq(le(bk + 32, 8), backup);                       /* backup's self */
	ck_assert_uint_eq(le(bk + 48, 8), 1);                            /* owner 1 = backup */
	ck_assert_int_eq(memcmp(bk + 64, sb + 64, 4096 - 64), 0);        /* same body */
	/* root inode: slot (ino_off + 1 * 8192) + 4096 */
	uint8_t ino[4096];
	raw_read(p, le(sb + 200, 8) + 8192 + 4096, ino, 4096);
	ck_assert_int_eq(memcmp(ino + 8, "LNIN", 4), 0);
	ck_assert_uint_eq(le(ino + 64, 8), 1);                           /* ino */
	ck_assert_uint_eq(le(ino + 72, 4), 040755);                      /* mode */
	ck_assert_uint_eq(le(ino + 88, 4), 2);                           /* nlink */

	/* claim a heartbeat slot and read it raw */
	struct dev *d = tu_open(p);
	struct lk_params lp = {.hb_off = le(sb + 120, 8), .max_hosts = le(sb + 100, 4),
			       .lease_ms = 900, .hb_ms = 100, .fence_margin_ms = le(sb + 112, 4),
			       .jnl_off = le(sb + 136, 8), .jnl_size = le(sb + 144, 8)};
	memcpy(lp.uuid, sb + 16, 16);
	struct hb_ident id = {.name = "raw-host"};
	id.uuid[0] = 0xaa;
	struct hb_host *h;
	ck_assert_int_eq(hb_claim(d, &lp, &id, &h, NULL), 0);
	uint32_t slot = hb_slot(h);
	uint8_t hb[512];
	uint64_t off = lp.hb_off + slot * 4096ull;
	raw_read(p, off, hb, 512);
	ck_assert_int_eq(memcmp(hb + 8, "LNHB", 4), 0);
	ck_assert_uint_eq(le(hb, 8), XXH3_64bits(hb + 8, 512 - 8));
	ck_assert_int_eq(memcmp(hb + 16, sb + 16, 16), 0);               /* volume uuid */
	ck_assert_uint_eq(le(hb + 32, 8), off);                          /* self */
	ck_assert_uint_eq(le(hb + 64, 4), 1);                            /* state LIVE */
	ck_assert_uint_eq(le(hb + 68, 4), slot);
	ck_assert_uint_eq(le(hb + 72, 8), 1);                            /* mount_gen */
	ck_assert_uint_eq(hb[88], 0xaa);                                 /* host uuid */
	ck_assert_str_eq((char *)hb + 104, "raw-host");
	ck_assert_uint_eq(le(hb + 168, 8), lp.jnl_off + slot * lp.jnl_size); /* journal */
	uint64_t c1 = le(hb + 80, 8);
	for (int i = 0; i < 300 && le(hb + 80, 8) == c1; i++) {
		usleep(100 * 1000);
		raw_read(p, off, hb, 512);
	}
	ck_assert_uint_gt(le(hb + 80, 8), c1);                           /* counter moves */

	/* published I/O statistics: bytes 512..4095 of the slot's block */
	struct hb_pub *pub = calloc(1, sizeof(*pub));
	pub->has_stat = 1;
	pub->stat.mono_ms = 777;
	pub->stat.host.wr_ops = 5;
	pub->stat.host.wr_bytes = 5 * 65536;
	pub->stat.host.max_ns = 123456;
	pub->stat.nfiles = 2;
	pub->stat.files[0].ino = 42;
	pub->stat.files[0].io.rd_ops = 3;
	pub->stat.files[1].ino = 43;
	pub->stat.files[1].io.lk_wait_ns = 99;
	hb_publish(h, pub);
	uint8_t *st = malloc(3584);
	for (int i = 0; i < 300; i++) {
		raw_read(p, off + 512, st, 3584);
		if (!memcmp(st + 8, "LNST", 4))
			break;
		usleep(50 * 1000);
	}
	ck_assert_int_eq(memcmp(st + 8, "LNST", 4), 0);
	ck_assert_uint_eq(le(st, 8), XXH3_64bits(st + 8, 3584 - 8));     /* checksum */
	ck_assert_uint_eq(le(st + 32, 8), off + 512);                    /* self */
	ck_assert_uint_eq(le(st + 48, 8), slot);                         /* owner */
	ck_assert_uint_eq(le(st + 64, 8), 1);                            /* mount_gen */
	ck_assert_uint_eq(le(st + 72, 8), 777);                          /* mono_ms */
	ck_assert_uint_eq(le(st + 80, 4), 2);                            /* nfiles */
	ck_assert_uint_eq(le(st + 96 + 8, 8), 5);                        /* host wr_ops */
	ck_assert_uint_eq(le(st + 96 + 24, 8), 5 * 65536);               /* host wr_bytes */
	ck_assert_uint_eq(le(st + 96 + 48, 8), 123456);                  /* host max_ns */
	ck_assert_uint_eq(le(st + 176, 8), 42);                          /* files[0].ino */
	ck_assert_uint_eq(le(st + 176 + 8, 8), 3);                       /* its rd_ops */
	ck_assert_uint_eq(le(st + 176 + 88, 8), 43);                     /* files[1].ino */
	ck_assert_uint_eq(le(st + 176 + 88 + 8 + 72, 8), 99);            /* its lk_wait_ns */
	ck_assert(lunfs_is_zero(st + 176 + 2 * 88, 3584 - 176 - 2 * 88));
	free(st);
	free(pub);
	ck_assert_int_eq(hb_release(h), 0);
	raw_read(p, off, hb, 512);
	ck_assert_uint_eq(le(hb + 64, 4), 0);                            /* FREE */
	dev_close(d);
	unlink(p);
	free(p);
}
END_TEST

Suite *raw_suite(void)
{
	Suite *s = suite_create("raw");
	TCase *tc = tcase_create("core");
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, superblock_and_heartbeat_raw);
	suite_add_tcase(s, tc);
	return s;
}
