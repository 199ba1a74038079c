/* lunfs-bench: the raw benchmark's workloads through the lunfs library.
 *
 * Runs on a freshly made volume (mkfs.lunfs), as host "bench":
 *   1. Lock records, straight through lock/lk.h on the still unmounted
 *      volume: claim a heartbeat slot, then take and drop an inode lock
 *      (geom_ino_lock) many times, counting the device I/Os of each acquire
 *      and each release separately.
 *   2. Mount.  Thin first write: a new file is sized (holes only, as a thin
 *      VM disk) and written once with 1 MiB requests at QD8 through the
 *      async queue, then read back once.  Done in rounds, each on a new file
 *      (the previous one is unlinked), because one pass is short.
 *   3. Preallocated: a new file is fallocated eager-zeroed
 *      (LUNFS_FALLOC_ZERO) and opened exclusive; then, round-robin, 1 MiB
 *      sequential writes and reads at QD8 and 4 KiB random reads and writes
 *      at QD32, each for a fixed time.
 *      With -B, a baseline command (raw on another file) runs before each
 *      round, so that every lunfs run has a raw run moments before it.
 *   4. Creates: N empty files (mknod S_IFREG|0644) in a fresh directory,
 *      counting device I/Os per create; once right after the loop, and once
 *      more after the idle locks were released (lock releases and journal
 *      checkpoints come later, from the linger thread).
 *   5. Unmount.
 * Every 4 KiB sector written starts with its own file offset, and every read
 * checks it ("verify_errors").  Heartbeat renewals (one CAW each, then one
 * read of the whole heartbeat region) run in the background; the I/O counts
 * subtract them, by watching our slot's renewal counter through a second
 * device handle.
 *
 * When the library refuses a call that the benchmark can do another way
 * (fallocate or unlink of a large file failing with -E2BIG), a "lunfs
 * problem ..." line says so, and the benchmark goes on in smaller calls, so
 * that one fault does not hide every other number.
 *
 * Output: one line per measurement, "lunfs NAME key=value ...", for
 * bench/run.sh.  SIGINT/SIGTERM stop the workloads and still unmount.
 * Exit status 0, or 1 on any error.
 */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include "dev/dev.h"
#include "format/format.h"
#include "format/geom.h"
#include "fs/lunfs.h"
#include "fs/lunfs_test.h" /* lunfs_dev_stats */
#include "lock/lk.h"
#include "bench/bench_util.h"

#define SEQ_BS (1u << 20)
#define SEQ_QD 8u
#define RAND_BS 4096u
#define RAND_QD 32u
#define STAMP 0x6c756e667342ull /* as in raw.c: STAMP ^ offset per 4 KiB sector */

static volatile sig_atomic_t g_stop;

static void on_signal(int sig)
{
	(void)sig;
	g_stop = 1;
}

struct opts {
	const char *path;
	uint64_t size;      /* each test file */
	double secs;        /* sequential: seconds per run */
	double rand_secs;   /* random: seconds per run */
	unsigned reps;      /* runs of each timed workload */
	unsigned thin_rounds;
	uint64_t rand_ops;  /* 0: random runs last rand_secs */
	unsigned creates;
	unsigned lock_cycles;
	uint64_t seed;
	const char *host;
	const char *baseline; /* shell command run before each round-robin rep */
};

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

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
	}
	if (*end)
		return -1;
	*out = v;
	return 0;
}

static void sleep_ms(unsigned ms)
{
	struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000};
	while (nanosleep(&ts, &ts) && errno == EINTR && !g_stop)
		;
}

/* ---- device counters, less the heartbeat ---- */

/* A second handle on the device, to read our heartbeat slot without
 * counting on the volume's device. */
struct hbwatch {
	struct dev *d;
	struct lk_params p;
	uint32_t slot;
	int ok;
};

static void hbwatch_open(struct hbwatch *w, const char *path, const char *host)
{
	struct lunfs_sb sb;
	const char *why;
	memset(w, 0, sizeof(*w));
	if (dev_open(path, NULL, &w->d))
		return;
	if (lunfs_read_sb(w->d, &sb, 0, NULL, &why))
		return;
	w->p = lk_params_of(&sb);
	for (uint32_t s = 0; s < sb.max_hosts; s++) {
		struct lunfs_hb hb;
		if (!hb_read(w->d, &w->p, s, &hb) && hb.state == HB_LIVE &&
		    !strcmp(hb.host_name, host)) {
			w->slot = s;
			w->ok = 1;
			return;
		}
	}
}

/* Our renewal counter, or 0 when it cannot be read. */
static uint64_t hbwatch_counter(struct hbwatch *w)
{
	struct lunfs_hb hb;
	if (!w->ok || hb_read(w->d, &w->p, w->slot, &hb))
		return 0;
	return hb.counter;
}

static void hbwatch_close(struct hbwatch *w)
{
	if (w->d)
		dev_close(w->d);
	w->d = NULL;
}

struct snap {
	struct dev_stats st;
	uint64_t hb;
	uint64_t scan_bytes; /* one read of the whole heartbeat region follows each renewal */
};

static void snap_take(struct lunfs_vol *v, struct hbwatch *w, struct snap *s)
{
	/* Read the heartbeat first: a renewal racing with us is then counted
	 * in the I/O delta but not subtracted (we err on the side of more). */
	s->hb = hbwatch_counter(w);
	s->scan_bytes = (uint64_t)w->p.max_hosts * 4096;
	lunfs_dev_stats(v, &s->st);
}

struct delta {
	uint64_t reads, writes, flushes, caws, read_bytes, write_bytes, renewals;
};

static struct delta snap_delta(const struct snap *a, const struct snap *b)
{
	struct delta d = {
		.reads = b->st.reads - a->st.reads,
		.writes = b->st.writes - a->st.writes,
		.flushes = b->st.flushes - a->st.flushes,
		.caws = b->st.caws - a->st.caws,
		.read_bytes = b->st.read_bytes - a->st.read_bytes,
		.write_bytes = b->st.write_bytes - a->st.write_bytes,
	};
	if (a->hb && b->hb >= a->hb) {
		d.renewals = b->hb - a->hb;
		d.caws -= d.renewals <= d.caws ? d.renewals : d.caws;
		/* and the scan read after each renewal (bench/cluster_bench.c
		 * "hbio" measures both) */
		uint64_t sr = d.renewals <= d.reads ? d.renewals : d.reads;
		d.reads -= sr;
		d.read_bytes -= sr * a->scan_bytes <= d.read_bytes ? sr * a->scan_bytes : d.read_bytes;
	}
	return d;
}

static uint64_t delta_ios(const struct delta *d)
{
	return d->reads + d->writes + d->flushes + d->caws;
}

/* ---- the I/O engine over lunfs_ioq ---- */

struct job {
	const char *name;
	unsigned rep;
	int write, random;
	unsigned bs, qd;
	uint64_t size;
	uint64_t max_ops;
	double max_secs;
	uint64_t seed;
	/* results */
	uint64_t ops, bytes, bad;
	double secs;
	struct delta io;
};

/* Runs j through q (depth >= j->qd).  Returns 0 or -errno. */
static int run_job(struct lunfs_vol *v, struct hbwatch *w, struct lunfs_ioq *q, struct job *j)
{
	struct lunfs_aio *a = calloc(j->qd, sizeof(*a));
	struct lunfs_aio **pend = calloc(j->qd, sizeof(*pend)), **done = calloc(j->qd, sizeof(*done));
	unsigned *freel = calloc(j->qd, sizeof(*freel));
	uint64_t s = j->seed, nblk = j->size / j->bs, next = 0, issued = 0;
	unsigned npend = 0, nfree = 0, inflight = 0;
	int ret = 0, stopping = 0;
	struct snap s0, s1;

	if (!a || !pend || !done || !freel) {
		ret = -ENOMEM;
		goto out;
	}
	for (unsigned i = 0; i < j->qd; i++) {
		if (!(a[i].buf = dev_alloc(j->bs))) {
			ret = -ENOMEM;
			goto out;
		}
		uint64_t *p = a[i].buf;
		for (size_t k = 0; k < j->bs / 8; k++)
			p[k] = rnd(&s) | 1;
		a[i].priv = (void *)(uintptr_t)i;
		freel[nfree++] = i;
	}
	snap_take(v, w, &s0);
	double t0 = now(), deadline = t0 + j->max_secs;
	for (;;) {
		while (!stopping && nfree) {
			if (g_stop || issued >= j->max_ops || (issued % 64 == 0 && now() >= deadline)) {
				stopping = 1;
				break;
			}
			struct lunfs_aio *io = &a[freel[--nfree]];
			uint64_t blk = j->random ? rnd(&s) % nblk : next++ % nblk;
			io->op = j->write ? LUNFS_AIO_WRITE : LUNFS_AIO_READ;
			io->len = j->bs;
			io->off = blk * j->bs;
			io->res = 0;
			if (j->write)
				for (unsigned k = 0; k < j->bs; k += 4096)
					*(uint64_t *)((char *)io->buf + k) = STAMP ^ (io->off + k);
			pend[npend++] = io;
			issued++;
		}
		if (npend) {
			int n = lunfs_ioq_submit(q, pend, npend);
			if (n < 0) {
				ret = n;
				fprintf(stderr, "lunfs-bench: %s: lunfs_ioq_submit: %s\n", j->name,
					lunfs_strerror(n));
				/* give the unsubmitted requests back and drain */
				while (npend)
					freel[nfree++] = (unsigned)(uintptr_t)pend[--npend]->priv;
				stopping = 1;
			} else {
				inflight += n;
				memmove(pend, pend + n, (npend - n) * sizeof(*pend));
				npend -= n;
				if (!n && !inflight) {
					ret = -EAGAIN;
					fprintf(stderr, "lunfs-bench: %s: the queue accepts nothing "
						"with nothing in flight\n", j->name);
					while (npend)
						freel[nfree++] = (unsigned)(uintptr_t)pend[--npend]->priv;
					stopping = 1;
				}
			}
		}
		if (!inflight) {
			if (stopping)
				break;
			continue;
		}
		int got = lunfs_ioq_reap(q, 1, done, j->qd);
		if (got < 0) {
			fprintf(stderr, "lunfs-bench: %s: lunfs_ioq_reap: %s\n", j->name,
				lunfs_strerror(got));
			ret = got;
			break; /* what is in flight is drained by lunfs_ioq_destroy */
		}
		for (int i = 0; i < got; i++) {
			struct lunfs_aio *io = done[i];
			if (io->res != (ssize_t)io->len) {
				if (!ret) {
					fprintf(stderr, "lunfs-bench: %s: %s of %zu at %llu: %s\n",
						j->name, j->write ? "write" : "read", io->len,
						(unsigned long long)io->off,
						io->res < 0 ? lunfs_strerror((int)io->res) : "short");
					ret = io->res < 0 ? (int)io->res : -EIO;
				}
				stopping = 1;
			} else if (!j->write) {
				for (unsigned k = 0; k < j->bs; k += 4096)
					j->bad += *(uint64_t *)((char *)io->buf + k) != (STAMP ^ (io->off + k));
			}
			if (io->res > 0)
				j->bytes += (uint64_t)io->res;
			j->ops++;
			inflight--;
			freel[nfree++] = (unsigned)(uintptr_t)io->priv;
		}
	}
	j->secs = now() - t0;
	snap_take(v, w, &s1);
	j->io = snap_delta(&s0, &s1);
	if (inflight) /* lunfs_ioq_destroy will wait: keep the buffers */
		a = NULL;
out:
	if (a)
		for (unsigned i = 0; i < j->qd; i++)
			free(a[i].buf);
	free(a);
	free(pend);
	free(done);
	free(freel);
	return ret;
}

static void report_job(const char *name, const struct job *j)
{
	printf("lunfs %s rep=%u bs=%u qd=%u ops=%llu bytes=%llu secs=%.3f MBps=%.1f iops=%.0f "
	       "verify_errors=%llu dev_reads=%llu dev_writes=%llu dev_flushes=%llu dev_caws=%llu "
	       "dev_read_MB=%.1f dev_write_MB=%.1f hb_renewals=%llu\n",
	       name, j->rep, j->bs, j->qd, (unsigned long long)j->ops, (unsigned long long)j->bytes,
	       j->secs, j->secs > 0 ? j->bytes / j->secs / 1e6 : 0,
	       j->secs > 0 ? j->ops / j->secs : 0, (unsigned long long)j->bad,
	       (unsigned long long)j->io.reads, (unsigned long long)j->io.writes,
	       (unsigned long long)j->io.flushes, (unsigned long long)j->io.caws,
	       j->io.read_bytes / 1e6, j->io.write_bytes / 1e6,
	       (unsigned long long)j->io.renewals);
	fflush(stdout);
}

static int check_job(const struct job *j, int r)
{
	if (r)
		return r;
	if (j->bad) {
		fprintf(stderr, "lunfs-bench: %s: %llu sectors read back wrong\n", j->name,
			(unsigned long long)j->bad);
		return -EIO;
	}
	return 0;
}

#define problem(...) bench_problem("lunfs", "lunfs-bench", __VA_ARGS__)

/* Bytes the image file really holds (allocated in the host filesystem). */
static double image_alloc_mb(const char *path)
{
	struct stat st;
	return stat(path, &st) ? -1 : st.st_blocks * 512.0 / 1e6;
}

/* ---- 1. lock records on the unmounted volume ---- */

static int bench_locks(const struct opts *o)
{
	struct dev *d = NULL;
	struct hb_host *h = NULL;
	struct lunfs_sb sb;
	struct lk_params p = {0};
	struct hb_ident id = {0};
	const char *why = "";
	int r;

	if ((r = dev_open(o->path, NULL, &d))) {
		fprintf(stderr, "lunfs-bench: locks: open %s: %s\n", o->path, dev_last_error());
		return r;
	}
	if ((r = lunfs_read_sb(d, &sb, 0, NULL, &why))) {
		fprintf(stderr, "lunfs-bench: locks: superblock: %s\n", why ? why : lunfs_strerror(r));
		goto out;
	}
	p = lk_params_of(&sb);
	snprintf(id.name, sizeof(id.name), "%s-locks", o->host);
	memcpy(id.uuid, "lunfs-bench-lock", 16);
	if ((r = hb_claim(d, &p, &id, &h, NULL))) {
		fprintf(stderr, "lunfs-bench: locks: hb_claim: %s\n", lunfs_strerror(r));
		goto out;
	}
	/* An inode in the middle of the table: never used on a fresh volume. */
	uint64_t ino = geom_ninodes(&sb) / 2, off = geom_ino_lock(&sb, ino);
	struct dev_stats a, b, c;
	struct delta acq = {0}, rel = {0}, first = {0};
	double tacq = 0, trel = 0;
	unsigned n = 0;
	struct lk_lock *l = malloc(sizeof(*l));
	if (!l) {
		r = -ENOMEM;
		goto out;
	}
	/* Renewals would add CAWs to our counters: hold them off while we
	 * count.  A burst lasts far less than lease - margin. */
	for (; n < o->lock_cycles && !g_stop; n++) {
		hb_pause_renewal(h, 1);
		dev_get_stats(d, &a);
		double t0 = now();
		r = lk_acquire(h, l, off, geom_ino_blk(&sb, ino), LK_EXCLUSIVE, LK_NOWAIT, 0);
		double t1 = now();
		dev_get_stats(d, &b);
		if (r) {
			hb_pause_renewal(h, 0);
			fprintf(stderr, "lunfs-bench: locks: lk_acquire: %s\n", lunfs_strerror(r));
			break;
		}
		r = lk_release(h, l);
		double t2 = now();
		dev_get_stats(d, &c);
		hb_pause_renewal(h, 0);
		if (r) {
			fprintf(stderr, "lunfs-bench: locks: lk_release: %s\n", lunfs_strerror(r));
			break;
		}
		struct delta da = {b.reads - a.reads, b.writes - a.writes, b.flushes - a.flushes,
				   b.caws - a.caws, 0, 0, 0};
		struct delta dr = {c.reads - b.reads, c.writes - b.writes, c.flushes - b.flushes,
				   c.caws - b.caws, 0, 0, 0};
		if (n == 0)
			first = da;
		acq.reads += da.reads, acq.writes += da.writes, acq.flushes += da.flushes,
			acq.caws += da.caws;
		rel.reads += dr.reads, rel.writes += dr.writes, rel.flushes += dr.flushes,
			rel.caws += dr.caws;
		tacq += t1 - t0;
		trel += t2 - t1;
	}
	free(l);
	if (n) {
		printf("lunfs lock_acquire n=%u io_per_op=%.2f reads=%.2f writes=%.2f flushes=%.2f "
		       "caws=%.2f first_io=%llu us_per_op=%.1f\n",
		       n, (double)delta_ios(&acq) / n, (double)acq.reads / n, (double)acq.writes / n,
		       (double)acq.flushes / n, (double)acq.caws / n,
		       (unsigned long long)delta_ios(&first), tacq / n * 1e6);
		printf("lunfs lock_release n=%u io_per_op=%.2f reads=%.2f writes=%.2f flushes=%.2f "
		       "caws=%.2f us_per_op=%.1f\n",
		       n, (double)delta_ios(&rel) / n, (double)rel.reads / n, (double)rel.writes / n,
		       (double)rel.flushes / n, (double)rel.caws / n, trel / n * 1e6);
		fflush(stdout);
	}
out:
	if (h) {
		int e = hb_release(h);
		if (e && !r) {
			fprintf(stderr, "lunfs-bench: locks: hb_release: %s\n", lunfs_strerror(e));
			r = e;
		}
	}
	dev_close(d);
	return r;
}

/* ---- 2. thin first write ---- */

static const struct lunfs_cred cred = {0, 0};

static int new_file(struct lunfs_vol *v, uint64_t dir, const char *name, uint64_t *ino)
{
	struct lunfs_stat st;
	int r = lunfs_mknod(v, dir, name, S_IFREG | 0644, 0, &cred, &st);
	if (r) {
		fprintf(stderr, "lunfs-bench: mknod %s: %s\n", name, lunfs_strerror(r));
		return r;
	}
	/* lookup must find what mknod made */
	struct lunfs_stat st2;
	if ((r = lunfs_lookup(v, dir, name, &st2))) {
		fprintf(stderr, "lunfs-bench: lookup %s after mknod: %s\n", name, lunfs_strerror(r));
		return r;
	}
	if (st2.ino != st.ino) {
		fprintf(stderr, "lunfs-bench: lookup %s gives inode %llu, mknod made %llu\n", name,
			(unsigned long long)st2.ino, (unsigned long long)st.ino);
		return -EIO;
	}
	*ino = st.ino;
	return 0;
}

static void report_alloc(struct lunfs_vol *v, const char *what, uint64_t ino, const char *path)
{
	struct lunfs_stat st;
	int r = lunfs_getattr(v, ino, &st);
	if (r)
		printf("lunfs %s getattr_error=%d\n", what, r);
	else
		printf("lunfs %s size=%llu blocks_MB=%.1f flags=%u image_alloc_MB=%.1f\n", what,
		       (unsigned long long)st.size, st.blocks * 512.0 / 1e6, st.flags,
		       image_alloc_mb(path));
	fflush(stdout);
}

/* fallocate(mode) of [0, size) in one call; when the library refuses a range
 * that large (-E2BIG), note it and go on in smaller calls (halving down to
 * 1 MiB), so that the rest of the benchmark still runs.  *chunk receives
 * the call size that worked.  Returns 0 or -errno. */
static int falloc_chunked(struct lunfs_file *f, unsigned mode, uint64_t size, uint64_t *chunk)
{
	uint64_t step = *chunk, off = 0;
	int r;
	while (off < size) {
		uint64_t len = size - off < step ? size - off : step;
		r = lunfs_fallocate(f, mode, off, len);
		if (r == -E2BIG && len > SEQ_BS) {
			if (step == *chunk)
				problem("fallocate(mode %u) of %llu bytes at %llu failed: %s (%d); "
					"going on in smaller calls", mode, (unsigned long long)len,
					(unsigned long long)off, lunfs_strerror(r), r);
			step = len / 2 / SEQ_BS * SEQ_BS;
			continue;
		}
		if (r)
			return r;
		off += len;
	}
	if (step != *chunk)
		problem("fallocate(mode %u) worked in calls of %llu bytes", mode,
			(unsigned long long)step);
	*chunk = step;
	return 0;
}

/* Unlinks a written file.  When the library refuses (-E2BIG: too much to
 * free at once), note it, punch the file in smaller calls and try again.
 * Returns 0 or -errno (reported). */
static int remove_file(struct lunfs_vol *v, const char *name, uint64_t ino, uint64_t size)
{
	struct lunfs_statfs sf0, sf1;
	int have_sf = !lunfs_statfs(v, &sf0);
	int r = lunfs_unlink(v, LUNFS_ROOT_INO, name);
	if (r != -E2BIG) {
		if (r)
			problem("unlink of a written %llu-byte file failed: %s (%d)",
				(unsigned long long)size, lunfs_strerror(r), r);
		return r;
	}
	problem("unlink of a written %llu-byte file failed: %s (%d); punching it first",
		(unsigned long long)size, lunfs_strerror(r), r);
	struct lunfs_file *f;
	struct lunfs_stat st = {0};
	if ((r = lunfs_lookup(v, LUNFS_ROOT_INO, name, &st)) || st.ino != ino) {
		/* Describe what the failed unlink left behind. */
		struct lunfs_stat ist;
		int gr = lunfs_getattr(v, ino, &ist);
		char what[160] = "";
		if (!gr)
			snprintf(what, sizeof(what), "nlink %u, %llu MB allocated", ist.nlink,
				 (unsigned long long)(ist.blocks * 512 / 1000000));
		else
			snprintf(what, sizeof(what), "%s", lunfs_strerror(gr));
		problem("after the failed unlink the name is gone (lookup: %s) but inode %llu "
			"remains: getattr gives %s; free file blocks %lld -> %lld",
			r ? lunfs_strerror(r) : "another inode", (unsigned long long)ino, what,
			have_sf ? (long long)sf0.bfree : -1LL,
			have_sf && !lunfs_statfs(v, &sf1) ? (long long)sf1.bfree : -1LL);
		return r ? r : -EIO;
	}
	if ((r = lunfs_open(v, ino, LUNFS_OPEN_EXCL, &f))) {
		problem("after the failed unlink, open gives %s (%d)", lunfs_strerror(r), r);
		return r;
	}
	uint64_t chunk = size;
	r = falloc_chunked(f, LUNFS_FALLOC_PUNCH | LUNFS_FALLOC_KEEP_SIZE, size, &chunk);
	if (r)
		problem("punching the file failed: %s (%d)", lunfs_strerror(r), r);
	int e = lunfs_close(f);
	if (!r && e)
		problem("close after punching failed: %s (%d)", lunfs_strerror(e), e);
	if (!r && !(r = e) && (r = lunfs_unlink(v, LUNFS_ROOT_INO, name)))
		problem("unlink after punching failed: %s (%d)", lunfs_strerror(r), r);
	return r;
}

static int bench_thin(struct lunfs_vol *v, struct hbwatch *w, const struct opts *o)
{
	int r = 0;
	for (unsigned round = 1; round <= o->thin_rounds && !g_stop; round++) {
		char name[32];
		uint64_t ino;
		struct lunfs_file *f = NULL;
		struct lunfs_ioq *q = NULL;
		snprintf(name, sizeof(name), "thin%u.img", round);
		if ((r = new_file(v, LUNFS_ROOT_INO, name, &ino)))
			return r;
		if ((r = lunfs_open(v, ino, LUNFS_OPEN_EXCL, &f))) {
			fprintf(stderr, "lunfs-bench: open %s: %s\n", name, lunfs_strerror(r));
			return r;
		}
		/* A thin VM disk: its size is set, and all of it is a hole. */
		struct lunfs_setattr sa = {.size = o->size};
		struct lunfs_stat st;
		if ((r = lunfs_setattr(v, ino, LUNFS_SET_SIZE, &sa, &st))) {
			fprintf(stderr, "lunfs-bench: truncate %s: %s\n", name, lunfs_strerror(r));
			goto done;
		}
		if ((r = lunfs_ioq_create(f, SEQ_QD, &q))) {
			fprintf(stderr, "lunfs-bench: lunfs_ioq_create: %s\n", lunfs_strerror(r));
			goto done;
		}
		struct job j = {.name = "seq_write_thin", .rep = round, .write = 1, .bs = SEQ_BS,
				.qd = SEQ_QD, .size = o->size, .max_ops = o->size / SEQ_BS,
				.max_secs = 1e9, .seed = o->seed + round};
		r = check_job(&j, run_job(v, w, q, &j));
		if (r)
			goto done;
		report_job(j.name, &j);
		struct job rj = {.name = "seq_read_thin", .rep = round, .bs = SEQ_BS, .qd = SEQ_QD,
				 .size = o->size, .max_ops = o->size / SEQ_BS, .max_secs = 1e9,
				 .seed = o->seed + round};
		r = check_job(&rj, run_job(v, w, q, &rj));
		if (r)
			goto done;
		report_job(rj.name, &rj);
		report_alloc(v, "thin_after_write", ino, o->path);
	done:
		if (q)
			lunfs_ioq_destroy(q);
		int e = lunfs_close(f);
		if (e && !r) {
			fprintf(stderr, "lunfs-bench: close %s: %s\n", name, lunfs_strerror(e));
			r = e;
		}
		if (r)
			return r;
		/* Free the space for the next round (the volume holds about
		 * four test files).  The last one stays. */
		if (round < o->thin_rounds && (r = remove_file(v, name, ino, o->size))) {
			/* The measurements so far stand; no more rounds. */
			return 0;
		}
	}
	return r;
}

/* ---- 3. eager-zeroed preallocated file ---- */

/* Runs the baseline command (-B: raw on another file of the same host
 * filesystem), while the volume sits idle.  Pairing each of our runs with a
 * raw run moments before keeps the host storage's drift, which is large on a
 * VM, out of the ratios.  The command sees the run number in
 * $LUNFS_BENCH_REP.  Returns 0 or -EIO. */
static int run_baseline(const struct opts *o, unsigned rep_no)
{
	if (!o->baseline)
		return 0;
	char rep[16];
	snprintf(rep, sizeof(rep), "%u", rep_no);
	setenv("LUNFS_BENCH_REP", rep, 1); /* the command may vary its seed */
	fflush(stdout);
	int st = system(o->baseline);
	if (g_stop)
		return 0;
	if (st == -1 || !WIFEXITED(st) || WEXITSTATUS(st)) {
		fprintf(stderr, "lunfs-bench: baseline command failed (status %d): %s\n", st,
			o->baseline);
		return -EIO;
	}
	return 0;
}

static int bench_prealloc(struct lunfs_vol *v, struct hbwatch *w, const struct opts *o)
{
	uint64_t ino;
	struct lunfs_file *f = NULL;
	struct lunfs_ioq *q = NULL;
	int r;
	if ((r = new_file(v, LUNFS_ROOT_INO, "ezt.img", &ino)))
		return r;
	if ((r = lunfs_open(v, ino, LUNFS_OPEN_EXCL, &f))) {
		fprintf(stderr, "lunfs-bench: open ezt.img: %s\n", lunfs_strerror(r));
		return r;
	}
	struct snap s0, s1;
	uint64_t chunk = o->size;
	snap_take(v, w, &s0);
	double t0 = now();
	r = falloc_chunked(f, LUNFS_FALLOC_ZERO, o->size, &chunk);
	double t = now() - t0;
	snap_take(v, w, &s1);
	if (r) {
		fprintf(stderr, "lunfs-bench: fallocate ZERO %llu: %s\n",
			(unsigned long long)o->size, lunfs_strerror(r));
		goto out;
	}
	struct delta d = snap_delta(&s0, &s1);
	printf("lunfs fallocate_zero bytes=%llu chunk=%llu secs=%.3f MBps=%.1f dev_reads=%llu "
	       "dev_writes=%llu dev_flushes=%llu dev_caws=%llu dev_write_MB=%.1f hb_renewals=%llu\n",
	       (unsigned long long)o->size, (unsigned long long)chunk, t, o->size / t / 1e6,
	       (unsigned long long)d.reads, (unsigned long long)d.writes,
	       (unsigned long long)d.flushes, (unsigned long long)d.caws, d.write_bytes / 1e6,
	       (unsigned long long)d.renewals);
	report_alloc(v, "ezt_after_fallocate", ino, o->path);
	if ((r = lunfs_ioq_create(f, RAND_QD, &q))) {
		fprintf(stderr, "lunfs-bench: lunfs_ioq_create: %s\n", lunfs_strerror(r));
		goto out;
	}
	static const struct {
		const char *name;
		int write, random;
	} wl[] = {
		{"seq_write", 1, 0}, {"seq_read", 0, 0}, {"rand_read", 0, 1}, {"rand_write", 1, 1},
	};
	/* Round-robin, as raw does.  The first seq_write stamps every sector,
	 * so every later read can be checked. */
	for (unsigned rep = 1; rep <= o->reps && !g_stop; rep++) {
		if ((r = run_baseline(o, rep)))
			goto out;
		for (size_t i = 0; i < sizeof(wl) / sizeof(wl[0]) && !g_stop; i++) {
			struct job j = {.name = wl[i].name, .rep = rep, .write = wl[i].write,
					.random = wl[i].random, .size = o->size,
					.max_ops = UINT64_MAX, .max_secs = o->secs,
					.seed = o->seed + i + 100 * rep};
			if (wl[i].random) {
				j.bs = RAND_BS;
				j.qd = RAND_QD;
				j.max_secs = o->rand_secs;
				if (o->rand_ops) {
					j.max_ops = o->rand_ops;
					j.max_secs = 1e9;
				}
			} else {
				j.bs = SEQ_BS;
				j.qd = SEQ_QD;
				if (rep == 1 && i == 0) /* at least one whole pass */
					j.max_secs = 1e9, j.max_ops = o->size / SEQ_BS;
			}
			if ((r = check_job(&j, run_job(v, w, q, &j))))
				goto out;
			report_job(j.name, &j);
		}
	}
	report_alloc(v, "ezt_after_io", ino, o->path);
out:
	if (q)
		lunfs_ioq_destroy(q);
	int e = lunfs_close(f);
	if (e && !r) {
		fprintf(stderr, "lunfs-bench: close ezt.img: %s\n", lunfs_strerror(e));
		r = e;
	}
	return r;
}

/* ---- 4. creates ---- */

static int bench_creates(struct lunfs_vol *v, struct hbwatch *w, const struct opts *o,
			 unsigned settle_ms)
{
	struct lunfs_stat st;
	int r;
	sleep_ms(settle_ms); /* let the earlier work's idle locks go */
	if ((r = lunfs_mkdir(v, LUNFS_ROOT_INO, "creates", S_IFDIR | 0755, &cred, &st))) {
		fprintf(stderr, "lunfs-bench: mkdir creates: %s\n", lunfs_strerror(r));
		return r;
	}
	uint64_t dir = st.ino;
	sleep_ms(settle_ms); /* and the mkdir's: the first create takes them again */
	struct snap s0, s1, s2;
	snap_take(v, w, &s0);
	double t0 = now();
	unsigned n = 0;
	for (; n < o->creates && !g_stop; n++) {
		char name[32];
		snprintf(name, sizeof(name), "f%04u", n);
		if ((r = lunfs_mknod(v, dir, name, S_IFREG | 0644, 0, &cred, &st))) {
			fprintf(stderr, "lunfs-bench: mknod creates/%s: %s\n", name, lunfs_strerror(r));
			break;
		}
	}
	double t = now() - t0;
	snap_take(v, w, &s1);
	sleep_ms(settle_ms);
	snap_take(v, w, &s2);
	if (!n)
		return r;
	struct delta d1 = snap_delta(&s0, &s1), d2 = snap_delta(&s0, &s2);
	printf("lunfs create n=%u io_per_op=%.2f reads=%.2f writes=%.2f flushes=%.2f caws=%.2f "
	       "settled_io_per_op=%.2f settled_reads=%.2f settled_writes=%.2f "
	       "settled_flushes=%.2f settled_caws=%.2f us_per_op=%.1f hb_renewals=%llu\n",
	       n, (double)delta_ios(&d1) / n, (double)d1.reads / n, (double)d1.writes / n,
	       (double)d1.flushes / n, (double)d1.caws / n, (double)delta_ios(&d2) / n,
	       (double)d2.reads / n, (double)d2.writes / n, (double)d2.flushes / n,
	       (double)d2.caws / n, t / n * 1e6, (unsigned long long)d2.renewals);
	fflush(stdout);
	/* the directory must list them all */
	struct lunfs_stat dst;
	if (!r && !lunfs_getattr(v, dir, &dst) && dst.nlink != 2)
		printf("lunfs create_dir_nlink=%u\n", dst.nlink);
	return r;
}

static void usage(FILE *f)
{
	fprintf(f,
		"usage: lunfs-bench [-s SIZE] [-t SECONDS] [-T SECONDS] [-r REPS] [-R ROUNDS]\n"
		"                   [-n RAND_OPS] [-N CREATES] [-L LOCK_CYCLES] [-S SEED] [-H HOST]\n"
		"                   [-B COMMAND] IMAGE\n"
		"  IMAGE is a freshly made lunfs volume (mkfs.lunfs)\n"
		"  -s  size of each test file, a multiple of 1M (default 1G)\n"
		"  -t  seconds per sequential run (default 4)\n"
		"  -T  seconds per random run (default: as -t)\n"
		"  -r  runs of each timed workload, round-robin (default 1)\n"
		"  -R  thin first-write rounds, each on a new file (default 1)\n"
		"  -n  random runs do this many ops instead of running -T seconds\n"
		"  -N  files to create (default 200)\n"
		"  -L  lock acquire/release cycles (default 100)\n"
		"  -S  PRNG seed (default 1)\n"
		"  -H  host name to mount as (default bench)\n"
		"  -B  shell command to run before each round-robin run (the paired baseline)\n");
}

int main(int argc, char **argv)
{
	struct opts o = {.size = 1ull << 30, .secs = 4, .reps = 1, .thin_rounds = 1,
			 .creates = 200, .lock_cycles = 100, .seed = 1, .host = "bench"};
	int c;
	while ((c = getopt(argc, argv, "s:t:T:r:R:n:N:L:S:H:B:h")) != -1) {
		switch (c) {
		case 's':
			if (parse_size(optarg, &o.size) || !o.size || o.size % SEQ_BS)
				goto bad;
			break;
		case 't':
			if ((o.secs = atof(optarg)) <= 0)
				goto bad;
			break;
		case 'T':
			if ((o.rand_secs = atof(optarg)) <= 0)
				goto bad;
			break;
		case 'r':
			if ((o.reps = atoi(optarg)) < 1 || o.reps > 100)
				goto bad;
			break;
		case 'R':
			if ((o.thin_rounds = atoi(optarg)) < 1 || o.thin_rounds > 100)
				goto bad;
			break;
		case 'n':
			if (parse_size(optarg, &o.rand_ops))
				goto bad;
			break;
		case 'N':
			o.creates = atoi(optarg);
			break;
		case 'L':
			o.lock_cycles = atoi(optarg);
			break;
		case 'S':
			o.seed = strtoull(optarg, NULL, 0);
			break;
		case 'H':
			o.host = optarg;
			break;
		case 'B':
			o.baseline = optarg;
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

	struct sigaction sa = {.sa_handler = on_signal};
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);

	int r = 0, e;
	if (o.lock_cycles && (r = bench_locks(&o)))
		return 1;

	struct lunfs_mount_opts mo = {.host = o.host};
	struct lunfs_vol *v = NULL;
	const char *msg = NULL;
	double t0 = now();
	if ((r = lunfs_mount(o.path, &mo, &v, &msg))) {
		fprintf(stderr, "lunfs-bench: mount %s: %s\n", o.path, msg ? msg : lunfs_strerror(r));
		return 1;
	}
	printf("lunfs mount secs=%.3f\n", now() - t0);
	struct hbwatch w;
	hbwatch_open(&w, o.path, o.host);
	if (!w.ok)
		fprintf(stderr, "lunfs-bench: warning: cannot find our heartbeat slot; I/O counts "
				"include heartbeat renewals\n");
	/* Idle locks go after linger_ms, checked every linger_ms/2: wait for
	 * two lingers and a bit. */
	unsigned settle_ms = 2 * 500 + 200;

	if ((r = bench_thin(v, &w, &o)))
		goto out;
	if (!g_stop && (r = bench_prealloc(v, &w, &o)))
		goto out;
	if (!g_stop && o.creates && (r = bench_creates(v, &w, &o, settle_ms)))
		goto out;
out:
	hbwatch_close(&w);
	t0 = now();
	if ((e = lunfs_unmount(v))) {
		fprintf(stderr, "lunfs-bench: unmount: %s\n", lunfs_strerror(e));
		if (!r)
			r = e;
	} else {
		printf("lunfs unmount secs=%.3f\n", now() - t0);
	}
	if (g_stop && !r) {
		fprintf(stderr, "lunfs-bench: interrupted\n");
		r = -EINTR;
	}
	return r ? 1 : 0;
bad:
	fprintf(stderr, "lunfs-bench: bad usage (-h for help)\n");
	return 2;
}
