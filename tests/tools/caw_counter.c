/* caw_counter: a shared counter kept only with dev_caw(), to test that
 * compare-and-write is atomic across processes and hosts.
 *
 *   caw_counter init URL OFFSET    write a block holding counter 0
 *   caw_counter run URL OFFSET N [--caw-mode auto|native|reserve] [--initiator IQN]
 *                   [--go-file PATH]
 *                                  add 1, N times, each by compare-and-write;
 *                                  with --go-file, open the device, report the
 *                                  CAW mode, then wait until PATH exists (so
 *                                  that slow logins do not serialise the runs)
 *   caw_counter get URL OFFSET     print the counter
 *
 * The counter is the 64-bit little-endian integer at byte 0 of the logical
 * block at OFFSET (bytes, a multiple of the block size).  run never writes
 * any other way: it compares against the block it last saw, and after a
 * miscompare takes the block the device returned as the next compare image.
 * If every CAW is atomic, P parallel runs of N end at exactly P*N.
 *
 * Exit status: 0 ok, 1 usage, 2 device error.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include "dev/dev.h"

static const char *prog = "caw_counter";

static void usage(void)
{
	fprintf(stderr,
		"usage: %s init URL OFFSET\n"
		"       %s run URL OFFSET N [--caw-mode auto|native|reserve] [--initiator IQN]\n"
		"                [--go-file PATH]\n"
		"       %s get URL OFFSET\n",
		prog, prog, prog);
	exit(1);
}

static int die(const char *what, int err)
{
	const char *why = dev_last_error();
	fprintf(stderr, "%s: %s: %s%s%s\n", prog, what, lunfs_strerror(err), *why ? ": " : "",
		why);
	return 2;
}

static uint64_t get_le64(const unsigned char *p)
{
	uint64_t v = 0;
	for (int i = 7; i >= 0; i--)
		v = v << 8 | p[i];
	return v;
}

static void put_le64(unsigned char *p, uint64_t v)
{
	for (int i = 0; i < 8; i++, v >>= 8)
		p[i] = (unsigned char)v;
}

static int parse_u64(const char *s, uint64_t *out)
{
	char *end;
	errno = 0;
	unsigned long long v = strtoull(s, &end, 0);
	if (errno || end == s || *end || *s == '-')
		return -1;
	*out = v;
	return 0;
}

static const char *caw_mode_name(unsigned caps)
{
	if (caps & DEV_CAP_CAW_NATIVE)
		return "native";
	if (caps & DEV_CAP_CAW_RESERVE)
		return "reserve";
	if (caps & DEV_CAP_CAW_OFD)
		return "ofd";
	return "none";
}

int main(int argc, char **argv)
{
	struct dev_opts opts = {0};
	struct dev *d = NULL;
	unsigned char *cmp = NULL, *data = NULL, *cur = NULL;
	uint64_t off, n = 0;
	const char *cmd, *url, *go_file = NULL;
	int r, rc = 2;

	if (argc < 4)
		usage();
	cmd = argv[1];
	url = argv[2];
	if (parse_u64(argv[3], &off)) {
		fprintf(stderr, "%s: bad OFFSET %s\n", prog, argv[3]);
		return 1;
	}
	if (!strcmp(cmd, "run")) {
		if (argc < 5 || parse_u64(argv[4], &n)) {
			fprintf(stderr, "%s: run needs a count N\n", prog);
			return 1;
		}
		for (int i = 5; i < argc; i++) {
			if (!strcmp(argv[i], "--caw-mode") && i + 1 < argc) {
				const char *m = argv[++i];
				if (!strcmp(m, "auto"))
					opts.caw_mode = DEV_CAW_AUTO;
				else if (!strcmp(m, "native"))
					opts.caw_mode = DEV_CAW_NATIVE;
				else if (!strcmp(m, "reserve"))
					opts.caw_mode = DEV_CAW_RESERVE;
				else {
					fprintf(stderr, "%s: bad --caw-mode %s\n", prog, m);
					return 1;
				}
			} else if (!strcmp(argv[i], "--initiator") && i + 1 < argc) {
				opts.initiator = argv[++i];
			} else if (!strcmp(argv[i], "--go-file") && i + 1 < argc) {
				go_file = argv[++i];
			} else {
				usage();
			}
		}
	} else if (strcmp(cmd, "init") && strcmp(cmd, "get")) {
		usage();
	} else if (argc != 4) {
		usage();
	}

	r = dev_open(url, &opts, &d);
	if (r < 0)
		return die(url, r);
	uint32_t lbs = dev_lbs(d);
	if (off % lbs || off + lbs > dev_size(d)) {
		fprintf(stderr, "%s: OFFSET %" PRIu64 " is not a block inside %s (block %u, size %" PRIu64 ")\n",
			prog, off, url, lbs, dev_size(d));
		goto out;
	}
	cmp = dev_alloc(lbs);
	data = dev_alloc(lbs);
	cur = dev_alloc(lbs);
	if (!cmp || !data || !cur) {
		rc = die("alloc", -ENOMEM);
		goto out;
	}

	if (!strcmp(cmd, "init")) {
		put_le64(cmp, 0);
		if ((r = dev_write(d, off, cmp, lbs)) < 0 || (r = dev_flush(d)) < 0) {
			rc = die("write", r);
			goto out;
		}
		printf("0\n");
		rc = 0;
		goto out;
	}
	if ((r = dev_read(d, off, cmp, lbs)) < 0) {
		rc = die("read", r);
		goto out;
	}
	if (!strcmp(cmd, "get")) {
		printf("%" PRIu64 "\n", get_le64(cmp));
		rc = 0;
		goto out;
	}

	fprintf(stderr, "%s: %s: backend %s, CAW mode %s, block %u\n", prog, url, dev_backend(d),
		caw_mode_name(dev_caps(d)), lbs);
	if (go_file) {
		time_t give_up = time(NULL) + 120;
		while (access(go_file, F_OK)) {
			if (time(NULL) > give_up) {
				fprintf(stderr, "%s: %s did not appear within 120 s\n", prog, go_file);
				goto out;
			}
			usleep(10000);
		}
		/* The compare image must be fresh, not from before the wait. */
		if ((r = dev_read(d, off, cmp, lbs)) < 0) {
			rc = die("read", r);
			goto out;
		}
	}
	uint64_t done = 0, misses = 0;
	while (done < n) {
		memcpy(data, cmp, lbs);
		put_le64(data, get_le64(cmp) + 1);
		r = dev_caw(d, off, cmp, data, lbs, cur);
		if (r == 0) {
			unsigned char *t = cmp;
			cmp = data;
			data = t;
			done++;
		} else if (r == -EMISCOMPARE) {
			/* Someone else got in first: cur is what is there now. */
			unsigned char *t = cmp;
			cmp = cur;
			cur = t;
			misses++;
		} else {
			rc = die("compare-and-write", r);
			goto out;
		}
	}
	if ((r = dev_flush(d)) < 0) {
		rc = die("flush", r);
		goto out;
	}
	fprintf(stderr, "%s: %" PRIu64 " increments, %" PRIu64 " miscompares, last value %" PRIu64 "\n",
		prog, done, misses, get_le64(cmp));
	rc = 0;
out:
	free(cmp);
	free(data);
	free(cur);
	dev_close(d);
	return rc;
}
