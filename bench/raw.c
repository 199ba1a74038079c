/* raw: the baseline for the lunfs benchmarks.
 *
 * Drives an image file (or block device) directly with io_uring and O_DIRECT,
 * with the same request sizes and queue depths that lunfs-bench uses through
 * the library, so that the ratio lunfs/raw shows what the filesystem costs.
 * It uses plain io_uring reads and writes (no registered buffers, no SQPOLL),
 * as the file backend of dev/ does.
 *
 * Workloads, in this order (-w picks a subset):
 *   seq_write_first  1 MiB writes at QD8, one pass over a region that was
 *                    just fallocated (on a fresh image file: unwritten
 *                    extents, so the host filesystem converts as it goes)
 *   seq_write        1 MiB writes at QD8 over the written region, wrapping
 *                    around it until the time is up
 *   seq_read         1 MiB reads at QD8, the same way
 *   rand_read        4 KiB reads at QD32, uniform over the region
 *   rand_write       4 KiB writes at QD32, uniform over the region
 * The region is fallocated and then fully written by the sequential passes
 * before the random workloads run.  Random offsets come from a fixed seed.
 *
 * Every 4 KiB sector written starts with its own offset (stamped), and every
 * read checks it: "verify_errors" counts sectors that came back wrong.
 *
 * With -r, the timed workloads run several times, round-robin.  With -U,
 * every request is submitted on its own (one io_uring_enter each) instead of
 * all the free slots at once: a diagnostic, to see what a queue that does not
 * batch its submissions costs on this machine.
 *
 * Output: one line per run, "raw WORKLOAD rep=N key=value ...", for
 * bench/run.sh to parse.  Exit status 0, or 1 on any I/O error.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <liburing.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define SEQ_BS (1u << 20)
#define SEQ_QD 8u
#define RAND_BS 4096u
#define RAND_QD 32u
#define STAMP 0x6c756e667342ull /* each 4 KiB sector starts with STAMP ^ its offset */

struct opts {
	const char *path;
	uint64_t off;      /* start of the region in the file */
	uint64_t size;     /* region length */
	double secs;       /* sequential: seconds per run */
	double rand_secs;  /* random: seconds per run */
	unsigned reps;     /* runs of each workload */
	uint64_t rand_ops; /* 0: random workloads run for secs */
	uint64_t seed;
	const char *which;
	int unbatched;
};

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* splitmix64: small, fast and fully determined by its seed. */
static uint64_t rnd(uint64_t *s)
{
	uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

static int parse_size(const char *s, uint64_t *out)
{
	char *end;
	errno = 0;
	unsigned long long v = strtoull(s, &end, 10);
	if (errno || end == s)
		return -1;
	switch (*end) {
	case 'K': case 'k': v <<= 10; end++; break;
	case 'M': case 'm': v <<= 20; end++; break;
	case 'G': case 'g': v <<= 30; end++; break;
	case 'T': case 't': v <<= 40; end++; break;
	}
	if (*end)
		return -1;
	*out = v;
	return 0;
}

struct job {
	int fd;
	int write;
	unsigned bs, qd;
	int random;
	uint64_t off, size;     /* region */
	uint64_t max_ops;       /* stop after this many */
	double max_secs;        /* or after this long */
	uint64_t seed;
	int unbatched;          /* one io_uring_submit() per request */
	/* results */
	uint64_t ops, bytes, bad;
	double secs;
};

/* Runs one workload on ring r.  Returns 0 or -errno (a failed or short
 * transfer). */
static int run_job(struct io_uring *r, struct job *j)
{
	void **bufs = calloc(j->qd, sizeof(*bufs));
	uint64_t *boff = calloc(j->qd, sizeof(*boff));
	int ret = 0;
	if (!bufs || !boff) {
		free(bufs);
		free(boff);
		return -ENOMEM;
	}
	uint64_t s = j->seed;
	for (unsigned i = 0; i < j->qd; i++) {
		if (posix_memalign(&bufs[i], 4096, j->bs)) {
			ret = -ENOMEM;
			goto out;
		}
		/* Non-zero, incompressible payload. */
		uint64_t *p = bufs[i];
		for (size_t k = 0; k < j->bs / 8; k++)
			p[k] = rnd(&s) | 1;
	}
	uint64_t nblk = j->size / j->bs, next = 0, issued = 0, done = 0;
	unsigned inflight = 0, free_top = j->qd;
	unsigned *freel = calloc(j->qd, sizeof(*freel));
	if (!freel) {
		ret = -ENOMEM;
		goto out;
	}
	for (unsigned i = 0; i < j->qd; i++)
		freel[i] = i;
	double t0 = now(), deadline = t0 + j->max_secs;
	int stopping = 0;
	while (!stopping || inflight) {
		while (!stopping && inflight < j->qd) {
			if (issued >= j->max_ops || (issued % 64 == 0 && now() >= deadline)) {
				stopping = 1;
				break;
			}
			uint64_t blk = j->random ? rnd(&s) % nblk : next++ % nblk;
			unsigned b = freel[--free_top];
			struct io_uring_sqe *sqe = io_uring_get_sqe(r);
			if (!sqe) {
				free_top++;
				break;
			}
			uint64_t off = j->off + blk * j->bs;
			boff[b] = off;
			if (j->write) {
				for (unsigned k = 0; k < j->bs; k += 4096)
					*(uint64_t *)((char *)bufs[b] + k) = STAMP ^ (off + k);
				io_uring_prep_write(sqe, j->fd, bufs[b], j->bs, off);
			} else {
				io_uring_prep_read(sqe, j->fd, bufs[b], j->bs, off);
			}
			io_uring_sqe_set_data64(sqe, b);
			if (j->unbatched) {
				int sr = io_uring_submit(r);
				if (sr < 0) {
					ret = sr;
					stopping = 1;
				}
			}
			inflight++;
			issued++;
		}
		int sr = io_uring_submit(r);
		if (sr < 0) {
			ret = sr;
			stopping = 1;
		}
		if (!inflight)
			break;
		struct io_uring_cqe *cqe;
		int wr = io_uring_wait_cqe(r, &cqe);
		if (wr < 0) {
			ret = wr;
			break;
		}
		do {
			if (cqe->res != (int)j->bs && !ret) {
				ret = cqe->res < 0 ? cqe->res : -EIO;
				stopping = 1;
			}
			unsigned b = (unsigned)io_uring_cqe_get_data64(cqe);
			if (!j->write && cqe->res == (int)j->bs)
				for (unsigned k = 0; k < j->bs; k += 4096)
					j->bad += *(uint64_t *)((char *)bufs[b] + k) != (STAMP ^ (boff[b] + k));
			freel[free_top++] = b;
			io_uring_cqe_seen(r, cqe);
			inflight--;
			done++;
		} while (io_uring_peek_cqe(r, &cqe) == 0);
	}
	j->secs = now() - t0;
	j->ops = done;
	j->bytes = done * j->bs;
	free(freel);
out:
	for (unsigned i = 0; i < j->qd; i++)
		free(bufs[i]);
	free(bufs);
	free(boff);
	return ret;
}

static int wanted(const struct opts *o, const char *name)
{
	if (!o->which)
		return 1;
	size_t n = strlen(name);
	for (const char *p = o->which; (p = strstr(p, name)); p += n)
		if ((p == o->which || p[-1] == ',') && (p[n] == ',' || p[n] == 0))
			return 1;
	return 0;
}

static void report(const char *name, unsigned rep, const struct job *j)
{
	printf("raw %s rep=%u bs=%u qd=%u ops=%llu bytes=%llu secs=%.3f MBps=%.1f iops=%.0f "
	       "verify_errors=%llu\n",
	       name, rep, j->bs, j->qd, (unsigned long long)j->ops, (unsigned long long)j->bytes, j->secs,
	       j->bytes / j->secs / 1e6, j->ops / j->secs, (unsigned long long)j->bad);
	fflush(stdout);
}

static void usage(FILE *f)
{
	fprintf(f,
		"usage: raw [-o OFFSET] [-s SIZE] [-t SECONDS] [-T SECONDS] [-r REPS] [-n RAND_OPS]\n"
		"           [-S SEED] [-w LIST] [-U] FILE\n"
		"  -o  start of the region in FILE (default 0)\n"
		"  -s  region size, a multiple of 1M (default 1G)\n"
		"  -t  seconds per sequential run (default 10; seq_write_first is one pass)\n"
		"  -T  seconds per random run (default: as -t)\n"
		"  -r  runs of each workload, round-robin (default 1)\n"
		"  -n  random workloads do this many ops instead of running -t seconds\n"
		"  -S  PRNG seed (default 1)\n"
		"  -w  comma list of seq_write_first,seq_write,seq_read,rand_read,rand_write\n"
		"  -U  unbatched: one io_uring_submit() per request (names get _unbatched)\n");
}

int main(int argc, char **argv)
{
	struct opts o = {.size = 1ull << 30, .secs = 10, .rand_secs = 0, .reps = 1, .seed = 1};
	int c;
	while ((c = getopt(argc, argv, "o:s:t:T:r:n:S:w:Uh")) != -1) {
		switch (c) {
		case 'o':
			if (parse_size(optarg, &o.off) || o.off % SEQ_BS)
				goto bad;
			break;
		case 's':
			if (parse_size(optarg, &o.size) || !o.size || o.size % SEQ_BS)
				goto bad;
			break;
		case 't':
			o.secs = atof(optarg);
			if (o.secs <= 0)
				goto bad;
			break;
		case 'T':
			o.rand_secs = atof(optarg);
			if (o.rand_secs <= 0)
				goto bad;
			break;
		case 'r':
			o.reps = atoi(optarg);
			if (o.reps < 1 || o.reps > 100)
				goto bad;
			break;
		case 'n':
			if (parse_size(optarg, &o.rand_ops))
				goto bad;
			break;
		case 'S':
			o.seed = strtoull(optarg, NULL, 0);
			break;
		case 'w':
			o.which = optarg;
			break;
		case 'U':
			o.unbatched = 1;
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			goto bad;
		}
	}
	if (optind != argc - 1)
		goto bad;
	if (!o.rand_secs)
		o.rand_secs = o.secs;
	o.path = argv[optind];

	int fd = open(o.path, O_RDWR | O_CREAT | O_DIRECT | O_CLOEXEC, 0644);
	if (fd < 0) {
		fprintf(stderr, "raw: %s: %s\n", o.path, strerror(errno));
		return 1;
	}
	struct io_uring ring;
	int r = io_uring_queue_init(64, &ring, 0);
	if (r < 0) {
		fprintf(stderr, "raw: io_uring_queue_init: %s\n", strerror(-r));
		close(fd);
		return 1;
	}
	/* The random workloads need a region that is allocated and written. */
	if (fallocate(fd, 0, o.off, o.size) < 0) {
		fprintf(stderr, "raw: fallocate %s: %s\n", o.path, strerror(errno));
		r = -errno;
		goto out;
	}
	struct {
		const char *name;
		int write, random;
	} wl[] = {
		{"seq_write_first", 1, 0}, {"seq_write", 1, 0}, {"seq_read", 0, 0},
		{"rand_read", 0, 1}, {"rand_write", 1, 1},
	};
	/* Repetitions go round-robin over the workloads, so that a drift of
	 * the host's storage hits them all alike.  The first write is done
	 * once, before everything else. */
	for (unsigned rep = 0; rep < o.reps; rep++) {
		for (size_t i = rep ? 1 : 0; i < sizeof(wl) / sizeof(wl[0]); i++) {
			if (!wanted(&o, wl[i].name))
				continue;
			struct job j = {.fd = fd, .write = wl[i].write, .random = wl[i].random,
					.off = o.off, .size = o.size, .seed = o.seed + i + 100 * rep,
					.max_ops = UINT64_MAX, .max_secs = o.secs,
					.unbatched = o.unbatched};
			if (wl[i].random) {
				j.bs = RAND_BS;
				j.qd = RAND_QD;
				j.max_secs = o.rand_secs;
				if (o.rand_ops) {
					j.max_ops = o.rand_ops;
					j.max_secs = 1e9;
				}
			} else {
				j.bs = SEQ_BS;
				j.qd = SEQ_QD;
				/* A first write is one pass; the others wrap around
				 * the region for the whole time: one pass of 1 GiB
				 * takes under a second and is too noisy to compare. */
				if (i == 0)
					j.max_ops = o.size / SEQ_BS;
			}
			if ((r = run_job(&ring, &j))) {
				fprintf(stderr, "raw: %s: %s\n", wl[i].name, strerror(-r));
				goto out;
			}
			char name[64];
			snprintf(name, sizeof(name), "%s%s", wl[i].name, o.unbatched ? "_unbatched" : "");
			report(name, i ? rep + 1 : 1, &j);
			if (j.bad) {
				fprintf(stderr, "raw: %s: %llu sectors read back wrong\n", wl[i].name,
					(unsigned long long)j.bad);
				r = -EIO;
				goto out;
			}
		}
	}
out:
	io_uring_queue_exit(&ring);
	close(fd);
	return r ? 1 : 0;
bad:
	fprintf(stderr, "raw: bad usage (-h for help)\n");
	return 2;
}
