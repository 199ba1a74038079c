/* pr_tool: exercises SCSI-3 persistent reservations through the dev layer,
 * the way fencing will use them.
 *
 *   pr_tool fence URL INIT_A INIT_B [OFFSET]
 *       Opens the LUN twice, as initiators A and B, and checks, one line per
 *       step: both register a key; A reserves Write Exclusive - Registrants
 *       Only; B (a registrant) may still write; A preempts B's key; now a
 *       write from B fails with -EFENCED (the device layer's word for
 *       RESERVATION CONFLICT on a PR-capable device) while a read from B still works, and
 *       A still writes; A unregisters, which drops the reservation, and B
 *       writes again.  OFFSET (default 1 MiB) is the block the writes use.
 *   pr_tool keys URL
 *       Prints the registered keys.
 *   pr_tool resv URL
 *       Prints the persistent reservation: "none", or "key 0x... type N"
 *       (PR IN READ RESERVATION, through libiscsi directly: the dev layer
 *       has no call for it).
 *   pr_tool hold-reserve URL SECONDS
 *       What the target sees of a host frozen inside a reserve-mode
 *       compare-and-write: a session of its own takes RESERVE(6), then
 *       stands still for SECONDS (answering nothing), then RELEASE(6)s and
 *       logs out.  Prints "reserved" once it holds the LU.
 *   pr_tool read URL OFFSET LENGTH
 *       Copies [OFFSET, OFFSET+LENGTH) of the LUN to stdout, raw (a
 *       read-only open, unregistered: works under a type 5 reservation).
 *   pr_tool preempt URL INIT_A INIT_B INIT_C [OFFSET]
 *       The PREEMPT a survivor's recovery issues, with a bystander: A, B and
 *       C register; A reserves type 5; B preempts A's key; now exactly B's
 *       and C's keys must be left, the reservation must be B's, A's write
 *       must fail with -EFENCED and C (a live bystander) must still write;
 *       then B and C unregister.  Run it on a LUN nobody uses.
 *   pr_tool stale URL INIT_X INIT_Y INIT_Z [OFFSET]
 *       A stale writer against a live cluster's Write Exclusive - Registrants
 *       Only reservation (someone else must hold it): X and Y register; X,
 *       a registrant, writes the block back unchanged; Y preempts X's key;
 *       now X's write of a new pattern fails with -EFENCED while its read
 *       still works; Z, a backup proxy that never registers, reads the
 *       block, finds it unchanged, and its own write is refused too; Y
 *       unregisters.  OFFSET (default 32 KiB, unused space in a lunfs
 *       volume) must be a block nobody else writes meanwhile.
 *
 * A PR registration belongs to an I_T nexus (initiator name + ISID), and
 * every dev_open() gets its own ISID, so the whole scenario runs in one
 * process.  Exit status: 0 every step passed, 1 usage, 2 a step failed.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <iscsi/iscsi.h>
#include <iscsi/scsi-lowlevel.h>
#include "dev/dev.h"

#define KEY_A 0xa11ce00000000001ull
#define KEY_B 0xb0b0000000000002ull
#define KEY_C 0xc0c0000000000003ull
#define KEY_X 0x5354414c45000001ull /* "STALE" */
#define KEY_Y 0x5354414c45000002ull

static int failures;
static int step;

/* Prints one result line: want is the expected return code. */
static void check(const char *what, int got, int want)
{
	step++;
	if (got == want) {
		printf("ok %d - %s\n", step, what);
		return;
	}
	const char *why = dev_last_error();
	printf("FAIL %d - %s: got %d (%s), want %d (%s)%s%s\n", step, what, got,
	       got ? lunfs_strerror(got) : "success", want, want ? lunfs_strerror(want) : "success",
	       *why ? ": " : "", why);
	failures++;
}

static int has_key(const uint64_t *k, int n, uint64_t key);

/* Checks that key is (want 1) or is not (want 0) registered. */
static void check_key(struct dev *d, const char *what, uint64_t key, int want)
{
	uint64_t k[64];
	int n = dev_pr_read_keys(d, k, 64);
	step++;
	if (n < 0) {
		printf("FAIL %d - %s: read keys: %s: %s\n", step, what, lunfs_strerror(n),
		       dev_last_error());
		failures++;
		return;
	}
	int got = has_key(k, n < 64 ? n : 64, key);
	printf("%s %d - %s: %d key(s):", got == want ? "ok" : "FAIL", step, what, n);
	for (int i = 0; i < n && i < 64; i++)
		printf(" 0x%016" PRIx64, k[i]);
	printf("\n");
	if (got != want)
		failures++;
}

static int has_key(const uint64_t *k, int n, uint64_t key)
{
	for (int i = 0; i < n; i++)
		if (k[i] == key)
			return 1;
	return 0;
}

static void check_keys(struct dev *d, const char *what, int want_a, int want_b)
{
	uint64_t k[16];
	int n = dev_pr_read_keys(d, k, 16);
	step++;
	if (n < 0) {
		printf("FAIL %d - %s: read keys: %s: %s\n", step, what, lunfs_strerror(n),
		       dev_last_error());
		failures++;
		return;
	}
	int m = n < 16 ? n : 16;
	int a = has_key(k, m, KEY_A), b = has_key(k, m, KEY_B);
	printf("%s %d - %s: %d key(s):", a == want_a && b == want_b && n == want_a + want_b
						? "ok" : "FAIL", step, what, n);
	for (int i = 0; i < m; i++)
		printf(" 0x%016" PRIx64, k[i]);
	printf("\n");
	if (a != want_a || b != want_b || n != want_a + want_b)
		failures++;
}

static int open_as(const char *url, const char *init, struct dev **d)
{
	struct dev_opts o = {.initiator = init};
	int r = dev_open(url, &o, d);
	if (r < 0)
		fprintf(stderr, "pr_tool: open %s as %s: %s: %s\n", url, init, lunfs_strerror(r),
			dev_last_error());
	return r;
}

static int fence(const char *url, const char *ia, const char *ib, uint64_t off)
{
	struct dev *a = NULL, *b = NULL;
	unsigned char *buf = NULL;
	int rc = 2;

	if (open_as(url, ia, &a) < 0 || open_as(url, ib, &b) < 0)
		goto out;
	if (!(dev_caps(a) & DEV_CAP_PR)) {
		fprintf(stderr, "pr_tool: %s: no persistent reservations (DEV_CAP_PR)\n", url);
		goto out;
	}
	uint32_t lbs = dev_lbs(a);
	if (off % lbs || off + lbs > dev_size(a)) {
		fprintf(stderr, "pr_tool: OFFSET %" PRIu64 " is not a block of the LUN\n", off);
		goto out;
	}
	buf = dev_alloc(lbs);
	if (!buf)
		goto out;
	memset(buf, 0x5a, lbs);

	check("A registers key A", dev_pr_register(a, KEY_A), 0);
	check("B registers key B", dev_pr_register(b, KEY_B), 0);
	check_keys(a, "both keys registered", 1, 1);
	check("A reserves type 5 (write exclusive, registrants only)",
	      dev_pr_reserve(a, KEY_A, DEV_PR_WRITE_EXCLUSIVE_REGS_ONLY), 0);
	check("B, a registrant, may write", dev_write(b, off, buf, lbs), 0);
	check("A preempts key B", dev_pr_preempt(a, KEY_A, KEY_B, DEV_PR_WRITE_EXCLUSIVE_REGS_ONLY),
	      0);
	check_keys(a, "only key A left", 1, 0);
	check("write from preempted B fails with -EFENCED (RESERVATION CONFLICT)", dev_write(b, off, buf, lbs),
	      -EFENCED);
	check("read from preempted B still works", dev_read(b, off, buf, lbs), 0);
	check("A, the holder, still writes", dev_write(a, off, buf, lbs), 0);
	check("A unregisters (drops the reservation)", dev_pr_unregister(a, KEY_A), 0);
	check_keys(b, "no keys left", 0, 0);
	check("B writes again once nobody reserves", dev_write(b, off, buf, lbs), 0);
	rc = failures ? 2 : 0;
	printf("%s: %d step(s), %d failure(s)\n", failures ? "FAIL" : "PASS", step, failures);
out:
	free(buf);
	dev_close(a);
	dev_close(b);
	return rc;
}

static int preempt(const char *url, const char *ia, const char *ib, const char *ic, uint64_t off)
{
	struct dev *a = NULL, *b = NULL, *c = NULL;
	unsigned char *buf = NULL;
	int rc = 2;

	if (open_as(url, ia, &a) < 0 || open_as(url, ib, &b) < 0 || open_as(url, ic, &c) < 0)
		goto out;
	if (!(dev_caps(a) & DEV_CAP_PR)) {
		fprintf(stderr, "pr_tool: %s: no persistent reservations (DEV_CAP_PR)\n", url);
		goto out;
	}
	uint32_t lbs = dev_lbs(a);
	if (off % lbs || off + lbs > dev_size(a) || !(buf = dev_alloc(lbs)))
		goto out;
	check("C reads the block", dev_read(c, off, buf, lbs), 0);
	check("A registers key A", dev_pr_register(a, KEY_A), 0);
	check("B registers key B", dev_pr_register(b, KEY_B), 0);
	check("C registers key C", dev_pr_register(c, KEY_C), 0);
	check("A reserves type 5", dev_pr_reserve(a, KEY_A, DEV_PR_WRITE_EXCLUSIVE_REGS_ONLY), 0);
	check("B preempts key A", dev_pr_preempt(b, KEY_B, KEY_A, DEV_PR_WRITE_EXCLUSIVE_REGS_ONLY),
	      0);
	check_key(c, "key A is gone", KEY_A, 0);
	check_key(c, "key B is still registered", KEY_B, 1);
	check_key(c, "key C (a bystander) is still registered", KEY_C, 1);
	check("write from preempted A fails with -EFENCED (RESERVATION CONFLICT)", dev_write(a, off, buf, lbs),
	      -EFENCED);
	check("C, a bystander, still writes", dev_write(c, off, buf, lbs), 0);
	check("B still writes", dev_write(b, off, buf, lbs), 0);
	check("C unregisters", dev_pr_unregister(c, KEY_C), 0);
	check("B unregisters (drops the reservation)", dev_pr_unregister(b, KEY_B), 0);
	check("A, unregistered, writes once nobody reserves", dev_write(a, off, buf, lbs), 0);
	rc = failures ? 2 : 0;
	printf("%s: %d step(s), %d failure(s)\n", failures ? "FAIL" : "PASS", step, failures);
out:
	free(buf);
	dev_close(a);
	dev_close(b);
	dev_close(c);
	return rc;
}

static int stale(const char *url, const char *ix, const char *iy, const char *iz, uint64_t off)
{
	struct dev *x = NULL, *y = NULL, *z = NULL;
	unsigned char *orig = NULL, *buf = NULL;
	int rc = 2;

	if (open_as(url, ix, &x) < 0 || open_as(url, iy, &y) < 0 || open_as(url, iz, &z) < 0)
		goto out;
	if (!(dev_caps(x) & DEV_CAP_PR)) {
		fprintf(stderr, "pr_tool: %s: no persistent reservations (DEV_CAP_PR)\n", url);
		goto out;
	}
	uint32_t lbs = dev_lbs(x);
	if (off % lbs || off + lbs > dev_size(x)) {
		fprintf(stderr, "pr_tool: OFFSET %" PRIu64 " is not a block of the LUN\n", off);
		goto out;
	}
	orig = dev_alloc(lbs);
	buf = dev_alloc(lbs);
	if (!orig || !buf)
		goto out;

	check("Z, never registered, reads the block", dev_read(z, off, orig, lbs), 0);
	check("Z, never registered, may not write (someone holds type 5)",
	      dev_write(z, off, orig, lbs), -EFENCED);
	check("X registers key X", dev_pr_register(x, KEY_X), 0);
	check("Y registers key Y", dev_pr_register(y, KEY_Y), 0);
	check("X, a registrant, writes the block back unchanged", dev_write(x, off, orig, lbs), 0);
	check("Y preempts key X", dev_pr_preempt(y, KEY_Y, KEY_X, DEV_PR_WRITE_EXCLUSIVE_REGS_ONLY),
	      0);
	check_key(z, "key X is gone", KEY_X, 0);
	memset(buf, 'X', lbs);
	check("stale write from preempted X fails with -EFENCED", dev_write(x, off, buf, lbs),
	      -EFENCED);
	check("read from preempted X still works", dev_read(x, off, buf, lbs), 0);
	check("Z, a backup proxy that never registers, still reads", dev_read(z, off, buf, lbs), 0);
	check("the stale write did not land (block unchanged)", memcmp(buf, orig, lbs) ? -EIO : 0, 0);
	check("Y unregisters", dev_pr_unregister(y, KEY_Y), 0);
	check_key(z, "key Y is gone", KEY_Y, 0);
	rc = failures ? 2 : 0;
	printf("%s: %d step(s), %d failure(s)\n", failures ? "FAIL" : "PASS", step, failures);
out:
	free(orig);
	free(buf);
	dev_close(x);
	dev_close(y);
	dev_close(z);
	return rc;
}

/* A plain libiscsi session of its own (the dev layer has no call for what
 * resv and hold-reserve do).  Returns 0 with *c and *u set, or -1. */
static int login(const char *url, const char *init, struct iscsi_context **c,
		 struct iscsi_url **u)
{
	*c = iscsi_create_context(init);
	*u = *c ? iscsi_parse_full_url(*c, url) : NULL;
	if (!*u) {
		fprintf(stderr, "pr_tool: bad URL %s: %s\n", url, *c ? iscsi_get_error(*c) : "no memory");
		return -1;
	}
	iscsi_set_session_type(*c, ISCSI_SESSION_NORMAL);
	iscsi_set_header_digest(*c, ISCSI_HEADER_DIGEST_NONE_CRC32C);
	iscsi_set_targetname(*c, (*u)->target);
	if (iscsi_full_connect_sync(*c, (*u)->portal, (*u)->lun)) {
		fprintf(stderr, "pr_tool: login to %s: %s\n", url, iscsi_get_error(*c));
		return -1;
	}
	return 0;
}

static int hold_reserve(const char *url, unsigned secs)
{
	struct iscsi_context *c;
	struct iscsi_url *u;
	struct scsi_task *t = NULL;
	int rc = 2;

	if (login(url, "iqn.2026-11.org.lunfs:pr-tool-hold", &c, &u))
		goto out;
	for (int tries = 0; tries < 8; tries++) { /* unit attentions of a new nexus */
		if (t)
			scsi_free_scsi_task(t);
		t = iscsi_reserve6_sync(c, u->lun);
		if (!t || t->status != SCSI_STATUS_CHECK_CONDITION ||
		    t->sense.key != SCSI_SENSE_UNIT_ATTENTION)
			break;
	}
	if (!t || t->status != SCSI_STATUS_GOOD) {
		fprintf(stderr, "pr_tool: RESERVE(6): %s\n", iscsi_get_error(c));
		goto out;
	}
	printf("reserved\n");
	fflush(stdout);
	sleep(secs);
	scsi_free_scsi_task(t);
	t = iscsi_release6_sync(c, u->lun);
	if (!t || t->status != SCSI_STATUS_GOOD) {
		fprintf(stderr, "pr_tool: RELEASE(6): %s\n", iscsi_get_error(c));
		goto out;
	}
	printf("released\n");
	rc = 0;
	iscsi_logout_sync(c);
out:
	if (t)
		scsi_free_scsi_task(t);
	if (u)
		iscsi_destroy_url(u);
	if (c)
		iscsi_destroy_context(c);
	return rc;
}

/* PR IN READ RESERVATION on a session of its own. */
static int resv(const char *url)
{
	struct iscsi_context *c;
	struct iscsi_url *u;
	struct scsi_task *t = NULL;
	int rc = 2;

	if (login(url, "iqn.2026-11.org.lunfs:pr-tool-resv", &c, &u))
		goto out;
	for (int tries = 0; tries < 8; tries++) { /* unit attentions of a new nexus */
		t = iscsi_persistent_reserve_in_sync(c, u->lun, SCSI_PERSISTENT_RESERVE_READ_RESERVATION,
						     64);
		if (t && t->status == SCSI_STATUS_CHECK_CONDITION &&
		    t->sense.key == SCSI_SENSE_UNIT_ATTENTION) {
			scsi_free_scsi_task(t);
			t = NULL;
			continue;
		}
		break;
	}
	if (!t || t->status != SCSI_STATUS_GOOD) {
		fprintf(stderr, "pr_tool: PR IN READ RESERVATION: %s\n", iscsi_get_error(c));
		goto out;
	}
	struct scsi_persistent_reserve_in_read_reservation *r = scsi_datain_unmarshall(t);
	if (!r) {
		fprintf(stderr, "pr_tool: PR IN READ RESERVATION: cannot parse the reply\n");
		goto out;
	}
	if (r->reserved)
		printf("key 0x%016" PRIx64 " type %d\n", r->reservation_key, r->pr_type);
	else
		printf("none\n");
	rc = 0;
	iscsi_logout_sync(c);
out:
	if (t)
		scsi_free_scsi_task(t);
	if (u)
		iscsi_destroy_url(u);
	if (c)
		iscsi_destroy_context(c);
	return rc;
}

static int raw_read(const char *url, uint64_t off, uint64_t len)
{
	struct dev *d;
	struct dev_opts o = {.initiator = "iqn.2026-11.org.lunfs:pr-tool-read", .readonly = 1};
	int r = dev_open(url, &o, &d);
	if (r < 0) {
		fprintf(stderr, "pr_tool: open %s: %s: %s\n", url, lunfs_strerror(r), dev_last_error());
		return 2;
	}
	uint32_t lbs = dev_lbs(d);
	if (off % lbs || len % lbs || off > dev_size(d) || len > dev_size(d) - off) {
		fprintf(stderr, "pr_tool: [%" PRIu64 ", +%" PRIu64 ") is not whole blocks of the LUN\n",
			off, len);
		dev_close(d);
		return 1;
	}
	size_t chunk = 4u << 20;
	unsigned char *buf = dev_alloc(chunk);
	int rc = buf ? 0 : 2;
	while (!rc && len) {
		size_t n = len < chunk ? (size_t)len : chunk;
		if ((r = dev_read(d, off, buf, n)) < 0) {
			fprintf(stderr, "pr_tool: read at %" PRIu64 ": %s: %s\n", off, lunfs_strerror(r),
				dev_last_error());
			rc = 2;
		} else if (fwrite(buf, 1, n, stdout) != n) {
			rc = 2;
		}
		off += n;
		len -= n;
	}
	if (fflush(stdout))
		rc = 2;
	free(buf);
	dev_close(d);
	return rc;
}

static int num(const char *s, uint64_t *v)
{
	char *end;
	*v = strtoull(s, &end, 0);
	if (*end || end == s) {
		fprintf(stderr, "pr_tool: bad number %s\n", s);
		return -1;
	}
	return 0;
}

static int keys(const char *url)
{
	struct dev *d;
	uint64_t k[64];
	int n = open_as(url, "iqn.2026-11.org.lunfs:pr-tool", &d);
	if (n < 0)
		return 2;
	n = dev_pr_read_keys(d, k, 64);
	if (n < 0) {
		fprintf(stderr, "pr_tool: read keys: %s: %s\n", lunfs_strerror(n), dev_last_error());
		dev_close(d);
		return 2;
	}
	printf("%d key(s)\n", n);
	for (int i = 0; i < n && i < 64; i++)
		printf("0x%016" PRIx64 "\n", k[i]);
	dev_close(d);
	return 0;
}

int main(int argc, char **argv)
{
	if (argc >= 5 && argc <= 6 && !strcmp(argv[1], "fence")) {
		uint64_t off = 1 << 20;
		if (argc == 6) {
			char *end;
			off = strtoull(argv[5], &end, 0);
			if (*end || end == argv[5]) {
				fprintf(stderr, "pr_tool: bad OFFSET %s\n", argv[5]);
				return 1;
			}
		}
		return fence(argv[2], argv[3], argv[4], off);
	}
	if (argc == 3 && !strcmp(argv[1], "keys"))
		return keys(argv[2]);
	if (argc == 3 && !strcmp(argv[1], "resv"))
		return resv(argv[2]);
	if (argc == 4 && !strcmp(argv[1], "hold-reserve")) {
		uint64_t secs;
		if (num(argv[3], &secs))
			return 1;
		return hold_reserve(argv[2], (unsigned)secs);
	}
	if (argc == 5 && !strcmp(argv[1], "read")) {
		uint64_t off, len;
		if (num(argv[3], &off) || num(argv[4], &len))
			return 1;
		return raw_read(argv[2], off, len);
	}
	if (argc >= 6 && argc <= 7 && !strcmp(argv[1], "preempt")) {
		uint64_t off = 32768;
		if (argc == 7 && num(argv[6], &off))
			return 1;
		return preempt(argv[2], argv[3], argv[4], argv[5], off);
	}
	if (argc >= 6 && argc <= 7 && !strcmp(argv[1], "stale")) {
		uint64_t off = 32768;
		if (argc == 7 && num(argv[6], &off))
			return 1;
		return stale(argv[2], argv[3], argv[4], argv[5], off);
	}
	fprintf(stderr, "usage: pr_tool fence URL INIT_A INIT_B [OFFSET]\n"
			"       pr_tool keys URL\n"
			"       pr_tool resv URL\n"
			"       pr_tool hold-reserve URL SECONDS\n"
			"       pr_tool read URL OFFSET LENGTH\n"
			"       pr_tool preempt URL INIT_A INIT_B INIT_C [OFFSET]\n"
			"       pr_tool stale URL INIT_X INIT_Y INIT_Z [OFFSET]\n");
	return 1;
}
