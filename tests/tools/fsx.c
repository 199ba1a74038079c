/* fsx: random file operations against a shadow copy, in the spirit of
 * fsx-linux.  Reads, writes, truncates, fallocates (allocate, keep-size,
 * punch holes) at random offsets, every read checked against the shadow.
 *
 *   fsx FILE [-N ops] [-S seed] [-d (O_DIRECT: aligned I/O)] [-l maxlen]
 *
 * On a miscompare it prints the seed, the op number and the first bad
 * offset, so the run can be replayed with -S.  Ends with "fsx: N ops, 0
 * miscompares" (exit 0) or exit 1. */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static uint64_t rs;
static uint64_t rnd(void)
{
	rs ^= rs << 13;
	rs ^= rs >> 7;
	rs ^= rs << 17;
	return rs;
}

int main(int argc, char **argv)
{
	long nops = 50000, maxlen = 1 << 20, flen = 16 << 20;
	unsigned long long seed = 1;
	int direct = 0, c;
	while ((c = getopt(argc, argv, "N:S:dl:")) != -1) {
		if (c == 'N')
			nops = atol(optarg);
		else if (c == 'S')
			seed = strtoull(optarg, NULL, 0);
		else if (c == 'd')
			direct = 1;
		else if (c == 'l')
			flen = atol(optarg);
		else
			return 2;
	}
	if (optind != argc - 1) {
		fprintf(stderr, "usage: fsx FILE [-N ops] [-S seed] [-d] [-l maxfilelen]\n");
		return 2;
	}
	const char *path = argv[optind];
	rs = seed * 0x9e3779b97f4a7c15ull + 1;
	int fd = open(path, O_CREAT | O_TRUNC | O_RDWR | (direct ? O_DIRECT : 0), 0644);
	if (fd < 0) {
		perror(path);
		return 1;
	}
	uint8_t *shadow = calloc(1, flen), *buf, *rb;
	if (posix_memalign((void **)&buf, 4096, maxlen) || posix_memalign((void **)&rb, 4096, maxlen))
		return 1;
	long size = 0, bad = 0;
	long align = direct ? 4096 : 1;
	for (long op = 1; op <= nops && !bad; op++) {
		int kind = rnd() % 100;
		long off = (rnd() % flen) / align * align;
		long len = (rnd() % (rnd() % 4 ? 65536 : maxlen)) / align * align + align;
		if (off + len > flen)
			len = (flen - off) / align * align;
		if (len <= 0)
			continue;
		if (kind < 40) { /* write */
			for (long i = 0; i < len; i++)
				buf[i] = (uint8_t)(rnd() >> 24);
			if (pwrite(fd, buf, len, off) != len) {
				printf("fsx: seed %llu op %ld: write %ld@%ld: %s\n", seed, op, len, off, strerror(errno));
				bad = 1;
				break;
			}
			memcpy(shadow + off, buf, len);
			if (off + len > size)
				size = off + len;
		} else if (kind < 80) { /* read */
			ssize_t want = off >= size ? 0 : (off + len > size ? size - off : len);
			if (direct && want % 4096) /* O_DIRECT reads of the tail: whole blocks */
				want = (want + 4095) / 4096 * 4096 > len ? len : (want + 4095) / 4096 * 4096;
			ssize_t n = pread(fd, rb, len, off);
			ssize_t expect = off >= size ? 0 : (off + len > size ? size - off : len);
			if (n != expect) {
				printf("fsx: seed %llu op %ld: read %ld@%ld returned %zd, want %zd (size %ld)\n", seed,
				       op, len, off, n, expect, size);
				bad = 1;
				break;
			}
			for (ssize_t i = 0; i < n; i++) {
				if (rb[i] != shadow[off + i]) {
					printf("fsx: seed %llu op %ld: miscompare at offset %ld (read %ld@%ld): %02x, want %02x\n",
					       seed, op, off + (long)i, len, off, rb[i], shadow[off + i]);
					bad = 1;
					break;
				}
			}
		} else if (kind < 88) { /* truncate */
			long ns = (rnd() % flen) / align * align;
			if (ftruncate(fd, ns)) {
				printf("fsx: seed %llu op %ld: truncate %ld: %s\n", seed, op, ns, strerror(errno));
				bad = 1;
				break;
			}
			if (ns < size)
				memset(shadow + ns, 0, size - ns);
			size = ns;
		} else if (kind < 94) { /* punch a hole */
			if (fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, off, len)) {
				printf("fsx: seed %llu op %ld: punch %ld@%ld: %s\n", seed, op, len, off, strerror(errno));
				bad = 1;
				break;
			}
			long end = off + len < size ? off + len : size;
			if (off < end)
				memset(shadow + off, 0, end - off);
		} else { /* allocate, sometimes keeping the size */
			int keep = rnd() % 2;
			if (fallocate(fd, keep ? FALLOC_FL_KEEP_SIZE : 0, off, len)) {
				printf("fsx: seed %llu op %ld: fallocate %ld@%ld: %s\n", seed, op, len, off, strerror(errno));
				bad = 1;
				break;
			}
			if (!keep && off + len > size)
				size = off + len;
		}
	}
	close(fd);
	printf("fsx: %ld ops, %ld miscompares (seed %llu%s)\n", bad ? 0 : nops, bad, seed, direct ? ", O_DIRECT" : "");
	return bad ? 1 : 0;
}
