/* pr_tool: exercises SCSI-3 persistent reservations through the dev layer,
 * the way fencing will use them.
 *
 *   pr_tool fence URL INIT_A INIT_B [OFFSET]
 *       Opens the LUN twice, as initiators A and B, and checks, one line per
 *       step: both register a key; A reserves Write Exclusive - Registrants
 *       Only; B (a registrant) may still write; A preempts B's key; now a
 *       write from B fails with -EACCES while a read from B still works, and
 *       A still writes; A unregisters, which drops the reservation, and B
 *       writes again.  OFFSET (default 1 MiB) is the block the writes use.
 *   pr_tool keys URL
 *       Prints the registered keys.
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
#include "dev.h"

#define KEY_A 0xa11ce00000000001ull
#define KEY_B 0xb0b0000000000002ull

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
	check("write from preempted B fails with -EACCES", dev_write(b, off, buf, lbs), -EACCES);
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
	fprintf(stderr, "usage: pr_tool fence URL INIT_A INIT_B [OFFSET]\n"
			"       pr_tool keys URL\n");
	return 1;
}
