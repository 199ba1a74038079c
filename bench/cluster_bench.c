/* lunfs-cluster: several hosts on one volume.  Run by bench/run.sh (make
 * bench), each subcommand on a volume that run.sh has just made:
 *
 *   failover  Host B (a mount.lunfs daemon) stays mounted.  Each round, host A
 *             (another mount.lunfs daemon) mounts, a writer process opens a
 *             thin VM disk through A O_RDWR (O_DIRECT) and writes it (64 KiB
 *             sequential writes, fsync every 16); B's open(O_RDWR) of the
 *             disk must fail (EBUSY).  Then A's daemon gets SIGKILL, and the
 *             time from the kill(2) until B's open(O_RDWR) of the disk
 *             succeeds is measured, B retrying every -p ms.  B then writes
 *             and fsyncs 4 KiB through that open and closes it.  The writer
 *             is killed, A's dead mount point lazily unmounted (MNT_DETACH),
 *             and A mounts again for the next round.  B's log gives the
 *             journal replay figures of each recovery.
 *   creates   N hosts in this process (N lunfs_mount of the volume, host
 *             names bench-h1..N, one thread each), each creating files in
 *             its own directory at the same time for -t seconds: mknod,
 *             open LUNFS_OPEN_RW, pwrite of -s bytes at 0, close.  No FUSE.
 *             Also prints the device I/Os per file by step, and the same as
 *             a pattern of letters for "replay".
 *   fcreates  The same through N mount.lunfs daemons, one thread per mount
 *             doing open(O_CREAT|O_EXCL|O_WRONLY), write, close.
 *   replay    The baseline of creates: N threads replay a pattern of device
 *             I/Os per file (-P, from creates) on a plain file, O_DIRECT,
 *             the way the file backend does them.
 *   fill      Zeros into the holes of a volume's metadata regions (content
 *             unchanged), so that they are allocated as on a LUN.
 *   hbio      One idle host in this process: device I/Os over -t seconds,
 *             against the renewals counted in its heartbeat slot (read
 *             through a second device handle, which our counters do not
 *             see): CAWs per renewal, and the reads of the whole heartbeat
 *             region that follow each renewal (the scan that watches the
 *             peers).
 *
 * Output: "cluster NAME key=value ..." lines for run.sh; "cluster problem
 * ..." for a misbehaviour of lunfs.  SIGINT/SIGTERM stop the run; whatever
 * this program mounted is unmounted and every process it started is
 * stopped.  Exit status 0, or 1 on any error.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include "dev/dev.h"
#include "format/format.h"
#include "fs/lunfs.h"
#include "fs/lunfs_test.h" /* lunfs_dev_stats */
#include "lock/lk.h"
#include "bench/bench_util.h"

#define FUSE_SUPER_MAGIC 0x65735546
#define DISK_SIZE (256ull << 20)
#define WR_BS 65536u

static volatile sig_atomic_t g_stop;

static void on_signal(int sig)
{
	(void)sig;
	g_stop = 1;
}

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void sleep_ms(double ms)
{
	struct timespec ts = {(time_t)(ms / 1000), (long)((ms - (time_t)(ms / 1000) * 1000) * 1e6)};
	while (nanosleep(&ts, &ts) && errno == EINTR && !g_stop)
		;
}

#define problem(...) bench_problem("cluster", "lunfs-cluster", __VA_ARGS__)

static const char *ename(int e)
{
	switch (e) {
	case 0: return "ok";
	case EBUSY: return "EBUSY";
	case ESTALE: return "ESTALE";
	case EIO: return "EIO";
	case EAGAIN: return "EAGAIN";
	case ENOTCONN: return "ENOTCONN";
	case ENOENT: return "ENOENT";
	case ETIMEDOUT: return "ETIMEDOUT";
	default: return strerror(e);
	}
}

static int read_sb(const char *path, struct lunfs_sb *sb)
{
	struct dev *d;
	const char *why = NULL;
	if (dev_open(path, NULL, &d)) {
		fprintf(stderr, "lunfs-cluster: %s: %s\n", path, dev_last_error());
		return -1;
	}
	int r = lunfs_read_sb(d, sb, 0, NULL, &why);
	dev_close(d);
	if (r)
		fprintf(stderr, "lunfs-cluster: %s: superblock: %s\n", path,
			why ? why : lunfs_strerror(r));
	return r ? -1 : 0;
}

/* ---- processes and mounts we started (stopped whatever happens) ---- */

#define MAXD 16
static struct daemon {
	pid_t pid;
	char dir[512];
	int mounted; /* we saw it mounted and have not unmounted it */
} g_d[MAXD];
static pid_t g_writer;

static int is_fuse(const char *dir)
{
	struct statfs sf;
	return !statfs(dir, &sf) && sf.f_type == FUSE_SUPER_MAGIC;
}

/* Starts "mountd IMG DIR -f -o host=HOST" with stdout and stderr appended to
 * log, and waits until DIR is a FUSE mount.  Returns the slot in g_d or -1. */
static int daemon_start(const char *mountd, const char *img, const char *dir, const char *host,
			const char *log)
{
	int k;
	for (k = 0; k < MAXD && g_d[k].pid; k++)
		;
	if (k == MAXD)
		return -1;
	mkdir(dir, 0755);
	if (is_fuse(dir)) {
		fprintf(stderr, "lunfs-cluster: %s is already a FUSE mount\n", dir);
		return -1;
	}
	char opt[128];
	snprintf(opt, sizeof(opt), "host=%s", host);
	fflush(stdout);
	fflush(stderr);
	pid_t pid = fork();
	if (pid < 0)
		return -1;
	if (pid == 0) {
		int fd = open(log, O_WRONLY | O_CREAT | O_APPEND, 0644);
		if (fd >= 0) {
			dup2(fd, 1);
			dup2(fd, 2);
			close(fd);
		}
		signal(SIGINT, SIG_DFL);
		signal(SIGTERM, SIG_DFL);
		execl(mountd, mountd, img, dir, "-f", "-o", opt, (char *)NULL);
		_exit(127);
	}
	g_d[k].pid = pid;
	snprintf(g_d[k].dir, sizeof(g_d[k].dir), "%s", dir);
	g_d[k].mounted = 0;
	double t0 = now();
	while (!g_stop && now() - t0 < 60) {
		int st;
		if (waitpid(pid, &st, WNOHANG) == pid) {
			fprintf(stderr, "lunfs-cluster: %s %s (host %s) exited (status %d); see %s\n",
				mountd, dir, host, st, log);
			g_d[k].pid = 0;
			return -1;
		}
		if (is_fuse(dir)) {
			g_d[k].mounted = 1;
			return k;
		}
		sleep_ms(10);
	}
	fprintf(stderr, "lunfs-cluster: %s did not mount within 60 s\n", dir);
	kill(pid, SIGKILL);
	waitpid(pid, NULL, 0);
	g_d[k].pid = 0;
	return -1;
}

/* Clean unmount: umount(2), then wait for the daemon to exit (up to 20 s);
 * if it does not, lazy unmount and SIGKILL.  Returns 0 when it went clean. */
static int daemon_stop(int k)
{
	struct daemon *d = &g_d[k];
	int clean = 1;
	if (!d->pid)
		return 0;
	if (d->mounted) {
		int r = -1;
		for (int i = 0; i < 20 && (r = umount2(d->dir, 0)) && errno == EBUSY; i++)
			sleep_ms(250);
		if (r) {
			fprintf(stderr, "lunfs-cluster: umount %s: %s; detaching\n", d->dir,
				strerror(errno));
			umount2(d->dir, MNT_DETACH);
			clean = 0;
		}
		d->mounted = 0;
	}
	double t0 = now();
	int st = 0;
	pid_t w;
	while ((w = waitpid(d->pid, &st, WNOHANG)) == 0 && now() - t0 < 20)
		sleep_ms(20);
	if (w != d->pid) {
		fprintf(stderr, "lunfs-cluster: daemon for %s did not exit; killing it\n", d->dir);
		kill(d->pid, SIGKILL);
		waitpid(d->pid, &st, 0);
		clean = 0;
	} else if (!WIFEXITED(st) || WEXITSTATUS(st)) {
		fprintf(stderr, "lunfs-cluster: daemon for %s exited with status %d\n", d->dir, st);
		clean = 0;
	}
	d->pid = 0;
	return clean ? 0 : -1;
}

/* The crash: SIGKILL, reaped; the mount point stays until detached. */
static void daemon_kill(int k)
{
	kill(g_d[k].pid, SIGKILL);
}

static void daemon_reap_killed(int k)
{
	struct daemon *d = &g_d[k];
	if (d->pid)
		waitpid(d->pid, NULL, 0);
	if (d->mounted && umount2(d->dir, MNT_DETACH))
		fprintf(stderr, "lunfs-cluster: umount -l %s: %s\n", d->dir, strerror(errno));
	d->mounted = 0;
	d->pid = 0;
}

static void stop_writer(void)
{
	if (g_writer > 0) {
		kill(g_writer, SIGKILL);
		waitpid(g_writer, NULL, 0);
	}
	g_writer = 0;
}

static void stop_all(void)
{
	stop_writer();
	for (int k = 0; k < MAXD; k++)
		if (g_d[k].pid)
			daemon_stop(k);
}

/* ---- failover ---- */

/* The writer: a VM writing its disk through host A.  Tells the parent on
 * fd ready once its first fsync went through, then writes until killed. */
static void writer_main(const char *path, int ready)
{
	signal(SIGINT, SIG_DFL);
	signal(SIGTERM, SIG_DFL);
	int fd = -1, direct = O_DIRECT;
	double t0 = now();
	while (fd < 0) {
		fd = open(path, O_RDWR | direct);
		if (fd < 0 && errno == EINVAL && direct) {
			direct = 0;
			continue;
		}
		/* The previous round's survivor may still linger on the lock. */
		if (fd < 0 && (errno != EBUSY || now() - t0 > 20)) {
			dprintf(ready, "E%d", errno);
			_exit(1);
		}
		if (fd < 0)
			sleep_ms(20);
	}
	void *buf;
	if (posix_memalign(&buf, 4096, WR_BS))
		_exit(1);
	memset(buf, 0x5a, WR_BS);
	uint64_t off = 0, n = 0;
	int told = 0;
	for (;;) {
		if (pwrite(fd, buf, WR_BS, (off_t)off) != WR_BS) {
			if (!told) {
				dprintf(ready, "E%d", errno);
				_exit(1);
			}
			sleep_ms(10); /* host A is gone: wait for the kill */
			continue;
		}
		off = (off + WR_BS) % DISK_SIZE;
		if (++n % 16 == 0) {
			if (fsync(fd) && !told) {
				dprintf(ready, "E%d", errno);
				_exit(1);
			}
			if (!told) {
				if (write(ready, "R", 1) != 1)
					_exit(1);
				told = 1;
			}
		}
	}
}

static int start_writer(const char *path)
{
	int p[2];
	if (pipe(p))
		return -1;
	fflush(stdout);
	fflush(stderr);
	pid_t pid = fork();
	if (pid < 0)
		return -1;
	if (pid == 0) {
		close(p[0]);
		writer_main(path, p[1]);
		_exit(0);
	}
	close(p[1]);
	g_writer = pid;
	char m[32] = "";
	ssize_t n = read(p[0], m, sizeof(m) - 1);
	close(p[0]);
	if (n == 1 && m[0] == 'R')
		return 0;
	m[n > 0 ? n : 0] = 0;
	fprintf(stderr, "lunfs-cluster: the writer on host A failed: %s\n",
		m[0] == 'E' ? strerror(atoi(m + 1)) : "no word");
	stop_writer();
	return -1;
}

/* The new "recovered host ... replayed N transaction(s) in M ms" lines of
 * B's log since offset *pos. */
static void replay_figures(const char *log, long *pos, long *txns, long *ms)
{
	*txns = *ms = -1;
	FILE *f = fopen(log, "r");
	if (!f)
		return;
	fseek(f, *pos, SEEK_SET);
	char line[1024];
	while (fgets(line, sizeof(line), f)) {
		const char *p = strstr(line, "replayed ");
		long t, m;
		if (strstr(line, "recovered host") && p &&
		    sscanf(p, "replayed %ld transaction(s) in %ld ms", &t, &m) == 2)
			*txns = t, *ms = m;
	}
	*pos = ftell(f);
	fclose(f);
}

struct fo_opts {
	const char *img, *work, *mountd;
	unsigned rounds;
	double poll_ms, hold_ms;
};

static int cmd_failover(const struct fo_opts *o)
{
	struct lunfs_sb sb;
	if (read_sb(o->img, &sb))
		return 1;
	char adir[512], bdir[512], alog[512], blog[512], apath[600], bpath[600];
	snprintf(adir, sizeof(adir), "%s/host-a", o->work);
	snprintf(bdir, sizeof(bdir), "%s/host-b", o->work);
	snprintf(alog, sizeof(alog), "%s/host-a.log", o->work);
	snprintf(blog, sizeof(blog), "%s/host-b.log", o->work);
	snprintf(apath, sizeof(apath), "%s/vm-disk.img", adir);
	snprintf(bpath, sizeof(bpath), "%s/vm-disk.img", bdir);
	int rc = 1, kb = daemon_start(o->mountd, o->img, bdir, "bench-b", blog);
	if (kb < 0)
		return 1;
	long logpos = 0;
	unsigned done = 0;
	for (unsigned round = 1; round <= o->rounds && !g_stop; round++) {
		int ka = daemon_start(o->mountd, o->img, adir, "bench-a", alog);
		if (ka < 0)
			goto out;
		if (round == 1) {
			int fd = open(apath, O_RDWR | O_CREAT | O_EXCL, 0644);
			if (fd < 0 || ftruncate(fd, DISK_SIZE) || close(fd)) {
				fprintf(stderr, "lunfs-cluster: creating %s: %s\n", apath,
					strerror(errno));
				daemon_stop(ka);
				goto out;
			}
		}
		if (start_writer(apath)) {
			daemon_stop(ka);
			goto out;
		}
		sleep_ms(o->hold_ms); /* A writes, renews, and B watches it */
		/* While A lives, B must be refused. */
		int pre = 0, fd = open(bpath, O_RDWR);
		if (fd >= 0) {
			problem("failover round %u: host B opened the disk O_RDWR while host A "
				"had it open O_RDWR and was writing it", round);
			close(fd);
		} else {
			pre = errno;
		}
		/* The crash. */
		double t0 = now(), t1 = 0, worst = 0;
		daemon_kill(ka);
		unsigned polls = 0, busy = 0, stale = 0, other = 0;
		int last_other = 0;
		double limit = (sb.lease_ms * 4.0 + 20000) / 1000;
		fd = -1;
		while (!g_stop && now() - t0 < limit) {
			double a = now();
			fd = open(bpath, O_RDWR);
			double b = now();
			polls++;
			if (b - a > worst)
				worst = b - a;
			if (fd >= 0) {
				t1 = b;
				break;
			}
			if (errno == EBUSY)
				busy++;
			else if (errno == ESTALE)
				stale++;
			else
				other++, last_other = errno;
			sleep_ms(o->poll_ms);
		}
		int bw = -1;
		if (fd >= 0) {
			/* B takes the disk over: it must be able to write it. */
			char blk[4096];
			memset(blk, 0xb, sizeof(blk));
			bw = pwrite(fd, blk, sizeof(blk), 0) == (ssize_t)sizeof(blk) && !fsync(fd) ? 0
												 : errno;
			close(fd);
		}
		stop_writer();
		daemon_reap_killed(ka);
		if (g_stop)
			break;
		long txns, rms;
		sleep_ms(50); /* B's log line follows its recovery at once */
		replay_figures(blog, &logpos, &txns, &rms);
		if (t1 == 0) {
			problem("failover round %u: host B could not open the disk O_RDWR within "
				"%.0f s of the kill of host A (lease %u ms; %u tries: %u EBUSY, "
				"%u ESTALE, %u other, last %s)", round, limit, sb.lease_ms, polls,
				busy, stale, other, ename(last_other));
			goto out;
		}
		printf("cluster failover lease_ms=%u hb_ms=%u round=%u secs=%.3f polls=%u "
		       "ebusy=%u estale=%u other=%u other_errno=%s max_open_ms=%.1f "
		       "before_kill=%s b_write=%s replay_txns=%ld replay_ms=%ld\n",
		       sb.lease_ms, sb.hb_ms, round, t1 - t0, polls, busy, stale, other,
		       ename(last_other), worst * 1e3, ename(pre), bw ? ename(bw) : "ok", txns, rms);
		fflush(stdout);
		if (bw)
			problem("failover round %u: host B's write to the disk it took over "
				"failed: %s", round, ename(bw));
		done++;
	}
	rc = done == o->rounds ? 0 : 1;
out:
	stop_writer();
	for (int k = 0; k < MAXD; k++)
		if (k != kb && g_d[k].pid) {
			daemon_kill(k);
			daemon_reap_killed(k);
		}
	if (daemon_stop(kb))
		rc = 1;
	return rc;
}

/* ---- creates: N hosts in one process ---- */

struct worker {
	pthread_t thr;
	unsigned idx;
	struct lunfs_vol *v;
	const char *dir; /* fcreates: the mount point */
	unsigned wsize;
	double secs;
	uint64_t cap; /* stop after this many files (the volume's free blocks / hosts) */
	/* results */
	uint64_t files;
	double t0, t1, max_lat;
	int err;
	const char *err_op;
	struct dev_stats s0, s1;
	uint64_t ph[4][5]; /* per phase (mknod, open, pwrite, close): reads, writes, flushes,
			      caws, zeroes */
};

static void ph_add(uint64_t *ph, const struct dev_stats *a, const struct dev_stats *b)
{
	ph[0] += b->reads - a->reads;
	ph[1] += b->writes - a->writes;
	ph[2] += b->flushes - a->flushes;
	ph[3] += b->caws - a->caws;
	ph[4] += b->zeroes - a->zeroes;
}

static pthread_barrier_t g_bar;
static const struct lunfs_cred cred = {0, 0};

static void *lib_worker(void *arg)
{
	struct worker *w = arg;
	struct lunfs_stat st;
	char name[64];
	void *buf = NULL;
	uint64_t dir = 0;
	if (posix_memalign(&buf, 4096, w->wsize ? w->wsize : 1))
		w->err = -ENOMEM, w->err_op = "alloc", buf = NULL;
	else
		memset(buf, 0x42, w->wsize);
	snprintf(name, sizeof(name), "h%u", w->idx + 1);
	if (!w->err && (w->err = lunfs_mkdir(w->v, LUNFS_ROOT_INO, name, S_IFDIR | 0755, &cred, &st)))
		w->err_op = "mkdir";
	dir = st.ino;
	pthread_barrier_wait(&g_bar);
	if (w->err)
		goto out;
	lunfs_dev_stats(w->v, &w->s0);
	w->t0 = now();
	double deadline = w->t0 + w->secs;
	while (!g_stop && w->files < w->cap) {
		double a = now();
		if (a >= deadline)
			break;
		struct lunfs_file *f;
		struct dev_stats x[5];
		snprintf(name, sizeof(name), "f%07llu", (unsigned long long)w->files);
		lunfs_dev_stats(w->v, &x[0]);
		if ((w->err = lunfs_mknod(w->v, dir, name, S_IFREG | 0644, 0, &cred, &st))) {
			w->err_op = "mknod";
			break;
		}
		lunfs_dev_stats(w->v, &x[1]);
		if ((w->err = lunfs_open(w->v, st.ino, LUNFS_OPEN_RW, &f))) {
			w->err_op = "open";
			break;
		}
		lunfs_dev_stats(w->v, &x[2]);
		ssize_t n = w->wsize ? lunfs_pwrite(f, buf, w->wsize, 0) : 0;
		lunfs_dev_stats(w->v, &x[3]);
		int c = lunfs_close(f);
		lunfs_dev_stats(w->v, &x[4]);
		for (int k = 0; k < 4; k++)
			ph_add(w->ph[k], &x[k], &x[k + 1]);
		if (n != (ssize_t)w->wsize) {
			w->err = n < 0 ? (int)n : -EIO;
			w->err_op = "pwrite";
			break;
		}
		if ((w->err = c)) {
			w->err_op = "close";
			break;
		}
		w->files++;
		double lat = now() - a;
		if (lat > w->max_lat)
			w->max_lat = lat;
	}
	w->t1 = now();
	lunfs_dev_stats(w->v, &w->s1);
out:
	free(buf);
	return NULL;
}

static void *fuse_worker(void *arg)
{
	struct worker *w = arg;
	char path[700];
	void *buf = NULL;
	if (posix_memalign(&buf, 4096, w->wsize ? w->wsize : 1))
		w->err = -ENOMEM, w->err_op = "alloc", buf = NULL;
	else
		memset(buf, 0x42, w->wsize);
	snprintf(path, sizeof(path), "%s/h%u", w->dir, w->idx + 1);
	if (!w->err && mkdir(path, 0755))
		w->err = -errno, w->err_op = "mkdir";
	pthread_barrier_wait(&g_bar);
	if (w->err)
		goto out;
	w->t0 = now();
	double deadline = w->t0 + w->secs;
	while (!g_stop && w->files < w->cap) {
		double a = now();
		if (a >= deadline)
			break;
		snprintf(path, sizeof(path), "%s/h%u/f%07llu", w->dir, w->idx + 1,
			 (unsigned long long)w->files);
		int fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0644);
		if (fd < 0) {
			w->err = -errno, w->err_op = "open(O_CREAT)";
			break;
		}
		ssize_t n = w->wsize ? write(fd, buf, w->wsize) : 0;
		int e = errno;
		if (close(fd) && n == (ssize_t)w->wsize) {
			w->err = -errno, w->err_op = "close";
			break;
		}
		if (n != (ssize_t)w->wsize) {
			w->err = n < 0 ? -e : -EIO, w->err_op = "write";
			break;
		}
		w->files++;
		double lat = now() - a;
		if (lat > w->max_lat)
			w->max_lat = lat;
	}
	w->t1 = now();
out:
	free(buf);
	return NULL;
}

/* The I/Os per file of each step (t[step][reads, writes, flushes, caws,
 * zeroes] over files) as a pattern for "replay", the baseline: per step,
 * the reads, the CAWs, then the writes with the flushes spread among them
 * (each after its share of the writes) and the zeroings right after the
 * step's first write (fill_block: the data, then the rest of the block). */
static const char *io_pattern(uint64_t t[4][5], uint64_t files)
{
	static char pat[256];
	size_t pl = 0;
#define EMIT(ch) do { if (pl < sizeof(pat) - 1) pat[pl++] = (ch); } while (0)
	for (int k = 0; k < 4; k++) {
		long n[5];
		for (int q = 0; q < 5; q++)
			n[q] = (long)((double)t[k][q] / files + 0.5);
		long nw = n[1], nf = n[2], done = 0;
		for (long i = 0; i < n[0]; i++)
			EMIT('r');
		for (long i = 0; i < n[3]; i++)
			EMIT('c');
		for (long j = 1; j <= (nf ? nf : 1); j++) {
			long upto = nf ? nw * j / nf : nw;
			for (; done < upto; done++) {
				EMIT('w');
				if (done == 0)
					for (long i = 0; i < n[4]; i++)
						EMIT('z');
			}
			if (nf)
				EMIT('f');
		}
		if (!nw)
			for (long i = 0; i < n[4]; i++)
				EMIT('z');
	}
#undef EMIT
	pat[pl] = 0;
	return pat;
}

struct cr_opts {
	const char *img, *work, *mountd;
	unsigned hosts, wsize, rep;
	double secs;
	int fuse;
};

static int cmd_creates(const struct cr_opts *o)
{
	struct worker w[MAXD];
	int rc = 1, started = 0;
	unsigned nm = 0;
	memset(w, 0, sizeof(w));
	if (!o->hosts || o->hosts > MAXD)
		return 1;
	double tm = now();
	for (; nm < o->hosts && !g_stop; nm++) {
		char host[32];
		w[nm].idx = nm;
		w[nm].wsize = o->wsize;
		w[nm].secs = o->secs;
		snprintf(host, sizeof(host), "bench-h%u", nm + 1);
		if (o->fuse) {
			static char dirs[MAXD][512];
			char log[512];
			snprintf(dirs[nm], sizeof(dirs[nm]), "%s/fc-%u", o->work, nm + 1);
			snprintf(log, sizeof(log), "%s/fc-%u.log", o->work, nm + 1);
			if (daemon_start(o->mountd, o->img, dirs[nm], host, log) < 0)
				goto out;
			w[nm].dir = dirs[nm];
		} else {
			struct lunfs_mount_opts mo = {.host = host};
			const char *msg = NULL;
			int r = lunfs_mount(o->img, &mo, &w[nm].v, &msg);
			if (r) {
				fprintf(stderr, "lunfs-cluster: mount as %s: %s\n", host,
					msg ? msg : lunfs_strerror(r));
				goto out;
			}
		}
	}
	if (g_stop)
		goto out;
	tm = now() - tm;
	/* Every file takes a file block: leave a tenth of the free ones. */
	uint64_t bfree = 0;
	if (o->fuse) {
		struct statfs sf;
		if (!statfs(w[0].dir, &sf))
			bfree = sf.f_bavail;
	} else {
		struct lunfs_statfs sf;
		if (!lunfs_statfs(w[0].v, &sf))
			bfree = sf.bfree;
	}
	for (unsigned i = 0; i < o->hosts; i++)
		w[i].cap = bfree ? bfree * 9 / 10 / o->hosts : UINT64_MAX;
	pthread_barrier_init(&g_bar, NULL, o->hosts);
	unsigned nt = 0;
	for (; nt < o->hosts; nt++)
		if (pthread_create(&w[nt].thr, NULL, o->fuse ? fuse_worker : lib_worker, &w[nt])) {
			/* the barrier would never open: give up at once */
			fprintf(stderr, "lunfs-cluster: pthread_create failed\n");
			exit(1);
		}
	for (unsigned i = 0; i < nt; i++)
		pthread_join(w[i].thr, NULL);
	pthread_barrier_destroy(&g_bar);
	started = 1;
out:;
	double tu = now();
	int uerr = 0;
	for (unsigned i = 0; i < nm; i++) {
		if (o->fuse)
			continue;
		int e = lunfs_unmount(w[i].v);
		if (e && !uerr) {
			uerr = e;
			problem("creates: unmount of host bench-h%u failed: %s", i + 1,
				lunfs_strerror(e));
		}
	}
	if (o->fuse)
		for (int k = 0; k < MAXD; k++)
			if (g_d[k].pid && daemon_stop(k))
				uerr = -EIO;
	tu = now() - tu;
	if (!started || g_stop)
		return 1;
	/* total: every file over the span from the first start to the last end */
	double first = 1e300, last = 0, minf = 1e300, maxf = 0, maxlat = 0;
	uint64_t files = 0, ios = 0, flushes = 0;
	char per[256] = "";
	int errs = 0;
	for (unsigned i = 0; i < o->hosts; i++) {
		if (w[i].err) {
			errs++;
			problem("creates (%s, %u hosts): host bench-h%u: %s failed after %llu "
				"files: %s", o->fuse ? "FUSE" : "library", o->hosts, i + 1,
				w[i].err_op, (unsigned long long)w[i].files, lunfs_strerror(w[i].err));
		}
		if (!w[i].t0)
			continue;
		double r = w[i].files / (w[i].t1 - w[i].t0);
		if (w[i].t0 < first)
			first = w[i].t0;
		if (w[i].t1 > last)
			last = w[i].t1;
		if (r < minf)
			minf = r;
		if (r > maxf)
			maxf = r;
		if (w[i].max_lat > maxlat)
			maxlat = w[i].max_lat;
		files += w[i].files;
		ios += (w[i].s1.reads - w[i].s0.reads) + (w[i].s1.writes - w[i].s0.writes) +
		       (w[i].s1.flushes - w[i].s0.flushes) + (w[i].s1.caws - w[i].s0.caws) +
		       (w[i].s1.zeroes - w[i].s0.zeroes);
		flushes += w[i].s1.flushes - w[i].s0.flushes;
		snprintf(per + strlen(per), sizeof(per) - strlen(per), "%s%.0f", i ? "," : "", r);
	}
	double span = last - first;
	char iopf[32] = "-", fpf[32] = "-";
	if (!o->fuse && files) {
		snprintf(iopf, sizeof(iopf), "%.2f", (double)ios / files);
		snprintf(fpf, sizeof(fpf), "%.2f", (double)flushes / files);
	}
	int capped = 0;
	for (unsigned i = 0; i < o->hosts; i++)
		capped += w[i].files >= w[i].cap;
	printf("cluster %s hosts=%u rep=%u secs=%.3f files=%llu files_per_s=%.1f capped=%d "
	       "per_host=%s min_host=%.1f max_host=%.1f max_lat_ms=%.1f io_per_file=%s "
	       "flushes_per_file=%s wsize=%u errors=%d mount_secs=%.3f unmount_secs=%.3f\n",
	       o->fuse ? "fcreates" : "creates", o->hosts, o->rep, span, (unsigned long long)files,
	       span > 0 ? files / span : 0, capped, per, minf, maxf, maxlat * 1e3, iopf, fpf,
	       o->wsize, errs, tm, tu);
	if (!o->fuse && files) {
		/* device I/Os per file in each step (the rest of the total: the
		 * background threads between the steps) */
		static const char *pn[4] = {"mknod", "open", "pwrite", "close"};
		uint64_t t[4][5] = {{0}};
		for (unsigned i = 0; i < o->hosts; i++)
			for (int k = 0; k < 4; k++)
				for (int q = 0; q < 5; q++)
					t[k][q] += w[i].ph[k][q];
		printf("cluster creates_io hosts=%u rep=%u", o->hosts, o->rep);
		for (int k = 0; k < 4; k++)
			printf(" %s=%.2f/%.2f/%.2f/%.2f/%.2f", pn[k], (double)t[k][0] / files,
			       (double)t[k][1] / files, (double)t[k][2] / files,
			       (double)t[k][3] / files, (double)t[k][4] / files);
		printf(" pattern=%s (reads/writes/flushes/caws/zeroes per file)\n",
		       io_pattern(t, files));
	}
	fflush(stdout);
	rc = errs || uerr ? 1 : 0;
	return rc;
}

/* ---- replay: the creates' device I/Os without lunfs (their baseline) ---- */

/* N threads, each repeating PATTERN (one letter per device I/O of one file
 * created and written: r read, w write, f flush, c compare-and-write, z
 * zeroing) on one plain file opened O_DIRECT, as lunfs's file backend does
 * its I/O: 4 KiB pread/pwrite, fdatasync, a CAW as an OFD write lock on the
 * block + pread + pwrite + unlock, and a zeroing as a punched hole.  Each
 * thread has a 4 GiB region of its own:
 *   - its CAW block, and 256 metadata blocks written before the clock runs,
 *     which its writes overwrite in turn and its reads read back (the run.sh
 *     volume is filled, so lunfs's metadata writes overwrite too);
 *   - a write followed by a zeroing is a file's first data: 4 KiB into a
 *     fresh 1 MiB segment, then the rest of the segment punched, as lunfs
 *     exposes a new file block (fill_block in fs/file.c).  That costs the
 *     host filesystem one extent change per file, as lunfs's punch of a
 *     written block does.
 * The rate of whole patterns is the most files/s this storage allows if
 * lunfs cost nothing but its I/Os, done one at a time. */
struct rp_worker {
	pthread_t thr;
	int fd;
	unsigned idx;
	double secs;
	const char *pat;
	uint64_t n;
	double t0, t1;
	int err;
};

#define RP_META 256 /* metadata blocks per thread */
#define RP_SEG (1 << 20)

static int rp_caw(int fd, off_t off, void *buf)
{
	struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = off, .l_len = 4096};
	while (fcntl(fd, F_OFD_SETLKW, &fl) < 0)
		if (errno != EINTR)
			return -1;
	int r = pread(fd, buf, 4096, off) == 4096 && pwrite(fd, buf, 4096, off) == 4096 ? 0 : -1;
	int e = errno;
	fl.l_type = F_UNLCK;
	fcntl(fd, F_OFD_SETLK, &fl);
	errno = e;
	return r;
}

static void *replay_worker(void *arg)
{
	struct rp_worker *w = arg;
	void *buf, *rbuf;
	off_t base = (off_t)w->idx << 32, meta = base + 4096, next = meta, last = meta;
	off_t data0 = base + RP_SEG, data = data0, end = base + (1ll << 32);
	if (posix_memalign(&buf, 4096, 4096) || posix_memalign(&rbuf, 4096, 4096)) {
		w->err = ENOMEM;
		pthread_barrier_wait(&g_bar);
		return NULL;
	}
	memset(buf, 0x17, 4096);
	/* the CAW block and the metadata blocks exist before the clock runs */
	for (off_t o = base; o < meta + RP_META * 4096 && !w->err; o += 4096)
		if (pwrite(w->fd, buf, 4096, o) != 4096)
			w->err = errno ? errno : EIO;
	if (!w->err && fdatasync(w->fd))
		w->err = errno;
	pthread_barrier_wait(&g_bar);
	w->t0 = now();
	double deadline = w->t0 + w->secs;
	while (!w->err && !g_stop && now() < deadline) {
		for (const char *p = w->pat; *p && !w->err; p++) {
			int ok = 1;
			switch (*p) {
			case 'r': ok = pread(w->fd, rbuf, 4096, last) == 4096; break;
			case 'w':
				if (p[1] == 'z') { /* a new file block's data */
					ok = pwrite(w->fd, buf, 4096, data) == 4096;
					break;
				}
				ok = pwrite(w->fd, buf, 4096, next) == 4096;
				last = next;
				next += 4096;
				if (next >= meta + RP_META * 4096)
					next = meta;
				break;
			case 'z':
				ok = !fallocate(w->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
						data + 4096, RP_SEG - 4096);
				data += RP_SEG;
				if (data >= end)
					data = data0;
				break;
			case 'f': ok = !fdatasync(w->fd); break;
			case 'c': ok = !rp_caw(w->fd, base, rbuf); break;
			}
			if (!ok)
				w->err = errno ? errno : EIO;
		}
		if (!w->err)
			w->n++;
	}
	w->t1 = now();
	free(buf);
	free(rbuf);
	return NULL;
}

static int cmd_replay(const char *path, unsigned nthr, double secs, unsigned rep, const char *pat)
{
	struct rp_worker w[MAXD];
	memset(w, 0, sizeof(w));
	if (!pat || !*pat || strspn(pat, "rwfcz") != strlen(pat)) {
		fprintf(stderr, "lunfs-cluster: replay: -P wants a pattern of r, w, f, c, z\n");
		return 2;
	}
	int fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_DIRECT, 0644);
	if (fd < 0) {
		fprintf(stderr, "lunfs-cluster: %s: %s\n", path, strerror(errno));
		return 1;
	}
	pthread_barrier_init(&g_bar, NULL, nthr);
	for (unsigned i = 0; i < nthr; i++) {
		w[i] = (struct rp_worker){.fd = fd, .idx = i, .secs = secs, .pat = pat};
		if (pthread_create(&w[i].thr, NULL, replay_worker, &w[i]))
			exit(1);
	}
	double first = 1e300, last = 0;
	uint64_t n = 0;
	int err = 0;
	for (unsigned i = 0; i < nthr; i++) {
		pthread_join(w[i].thr, NULL);
		n += w[i].n;
		if (w[i].t0 && w[i].t0 < first)
			first = w[i].t0;
		if (w[i].t1 > last)
			last = w[i].t1;
		if (w[i].err)
			err = w[i].err;
	}
	pthread_barrier_destroy(&g_bar);
	close(fd);
	unlink(path);
	if (err) {
		fprintf(stderr, "lunfs-cluster: replay: %s\n", strerror(err));
		return 1;
	}
	size_t k = strlen(pat);
	printf("cluster replay threads=%u rep=%u secs=%.3f patterns=%llu per_s=%.1f "
	       "ios_per_pattern=%zu pattern=%s\n", nthr, rep, last - first, (unsigned long long)n,
	       n / (last - first), k, pat);
	fflush(stdout);
	return 0;
}

/* ---- fill: zeros into every hole of a volume's metadata regions ---- */

/* The content does not change (a hole reads as zeros), but afterwards every
 * metadata block (heartbeats, locks, journals, inodes, ...: everything in
 * front of the file-block region) is allocated in the host filesystem, as
 * every block of a LUN is: lunfs's first write of a metadata block then
 * costs what a LUN write costs, not a host filesystem allocation (mkfs.lunfs
 * punches its metadata regions).  The file-block region stays sparse. */
static int cmd_fill(const char *path)
{
	struct lunfs_sb sb;
	if (read_sb(path, &sb))
		return 1;
	int fd = open(path, O_RDWR | O_DIRECT);
	void *z = NULL;
	if (fd < 0 || posix_memalign(&z, 4096, 1 << 20)) {
		fprintf(stderr, "lunfs-cluster: fill %s: %s\n", path, strerror(errno));
		if (fd >= 0)
			close(fd);
		return 1;
	}
	memset(z, 0, 1 << 20);
	double t0 = now();
	off_t off = 0, size = (off_t)sb.file_off;
	uint64_t filled = 0;
	int rc = 0;
	while (off < size && !g_stop) {
		off_t hole = lseek(fd, off, SEEK_HOLE);
		if (hole < 0 || hole >= size)
			break;
		off_t data = lseek(fd, hole, SEEK_DATA);
		if (data < 0 || data > size)
			data = size;
		for (off_t o = hole; o < data;) {
			size_t n = data - o < (1 << 20) ? (size_t)(data - o) : (1 << 20);
			if (pwrite(fd, z, n, o) != (ssize_t)n) {
				errno = errno ? errno : EIO;
				fprintf(stderr, "lunfs-cluster: fill %s: %s\n", path, strerror(errno));
				rc = 1;
				goto out;
			}
			o += n;
			filled += n;
		}
		off = data;
	}
	if (fdatasync(fd))
		rc = 1;
	printf("cluster fill MB=%.1f of_MB=%.1f secs=%.3f\n", filled / 1e6, size / 1e6,
	       now() - t0);
	fflush(stdout);
out:
	free(z);
	close(fd);
	return rc;
}

/* ---- hbio: an idle host's heartbeat I/O ---- */

static int cmd_hbio(const char *img, double secs)
{
	struct lunfs_sb sb;
	if (read_sb(img, &sb))
		return 1;
	struct lunfs_mount_opts mo = {.host = "bench-idle"};
	struct lunfs_vol *v;
	const char *msg = NULL;
	int r = lunfs_mount(img, &mo, &v, &msg);
	if (r) {
		fprintf(stderr, "lunfs-cluster: mount: %s\n", msg ? msg : lunfs_strerror(r));
		return 1;
	}
	/* Our slot's counter, through a second handle. */
	struct dev *d = NULL;
	struct lk_params p = lk_params_of(&sb);
	uint32_t slot = UINT32_MAX;
	if (!dev_open(img, NULL, &d))
		for (uint32_t s = 0; s < sb.max_hosts; s++) {
			struct lunfs_hb hb;
			if (!hb_read(d, &p, s, &hb) && hb.state == HB_LIVE &&
			    !strcmp(hb.host_name, "bench-idle"))
				slot = s;
		}
	int rc = 1;
	if (slot == UINT32_MAX) {
		fprintf(stderr, "lunfs-cluster: hbio: cannot find our heartbeat slot\n");
		goto out;
	}
	sleep_ms(sb.hb_ms * 1.5); /* past the mount's own I/O */
	struct lunfs_hb h0, h1;
	struct dev_stats s0, s1;
	/* Take each snapshot right after a renewal and its scan read (an idle
	 * host does no other I/O), so that no renewal is half in; the slot's
	 * counter, read through our second handle, checks the count. */
	for (int k = 0; k < 2 && !g_stop; k++) {
		struct lunfs_hb *h = k ? &h1 : &h0;
		struct dev_stats *st = k ? &s1 : &s0, x;
		if (k)
			sleep_ms(secs * 1e3 - sb.hb_ms / 2.0);
		lunfs_dev_stats(v, &x);
		double t0 = now();
		do {
			sleep_ms(1);
			lunfs_dev_stats(v, st);
		} while ((st->caws == x.caws || st->reads == x.reads) &&
			 now() - t0 < 3.0 * sb.hb_ms / 1000);
		if (hb_read(d, &p, slot, h))
			goto out;
	}
	if (g_stop)
		goto out;
	uint64_t n = h1.counter - h0.counter;
	uint64_t reads = s1.reads - s0.reads, rb = s1.read_bytes - s0.read_bytes;
	printf("cluster hbio lease_ms=%u hb_ms=%u max_hosts=%u renewals=%llu caws=%llu "
	       "reads=%llu read_bytes=%llu writes=%llu flushes=%llu miscompares=%llu "
	       "caws_per_renewal=%.2f reads_per_renewal=%.2f bytes_per_read=%.0f "
	       "scan_bytes=%u ios_per_s=%.2f\n",
	       sb.lease_ms, sb.hb_ms, sb.max_hosts, (unsigned long long)n,
	       (unsigned long long)(s1.caws - s0.caws), (unsigned long long)reads,
	       (unsigned long long)rb, (unsigned long long)(s1.writes - s0.writes),
	       (unsigned long long)(s1.flushes - s0.flushes),
	       (unsigned long long)(s1.miscompares - s0.miscompares),
	       n ? (double)(s1.caws - s0.caws) / n : 0, n ? (double)reads / n : 0,
	       reads ? (double)rb / reads : 0, sb.max_hosts * 4096,
	       n ? (double)(s1.caws - s0.caws + reads + s1.writes - s0.writes + s1.flushes -
			    s0.flushes) / n * 1000.0 / sb.hb_ms : 0);
	fflush(stdout);
	rc = n ? 0 : 1;
out:
	if (d)
		dev_close(d);
	int e = lunfs_unmount(v);
	if (e) {
		fprintf(stderr, "lunfs-cluster: unmount: %s\n", lunfs_strerror(e));
		rc = 1;
	}
	return rc;
}

static void usage(FILE *f)
{
	fprintf(f,
		"usage: lunfs-cluster failover [-r ROUNDS] [-p POLL_MS] [-H HOLD_MS] -m MOUNT_LUNFS\n"
		"                              -w DIR IMAGE\n"
		"       lunfs-cluster creates  [-n HOSTS] [-t SECONDS] [-s WRITE_BYTES] [-r REP] IMAGE\n"
		"       lunfs-cluster fcreates [-n HOSTS] [-t SECONDS] [-s WRITE_BYTES] [-r REP]\n"
		"                              -m MOUNT_LUNFS -w DIR IMAGE\n"
		"       lunfs-cluster hbio     [-t SECONDS] IMAGE\n"
		"       lunfs-cluster fill     IMAGE   (zeros into the holes of the metadata regions)\n"
		"       lunfs-cluster replay   [-n THREADS] [-t SECONDS] [-r REP] -P PATTERN FILE\n"
		"           (the creates' baseline: PATTERN of r/w/f/c/z device I/Os per file)\n"
		"  IMAGE: an absolute path to a freshly made lunfs volume\n"
		"  -m  the mount.lunfs binary;  -w  a directory for the mount points and logs\n");
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		usage(stderr);
		return 2;
	}
	const char *cmd = argv[1];
	struct fo_opts fo = {.rounds = 5, .poll_ms = 25, .hold_ms = 1000};
	struct cr_opts cr = {.hosts = 1, .wsize = 4096, .secs = 3, .rep = 1};
	double secs = 0;
	const char *mountd = NULL, *work = NULL, *pattern = NULL;
	int c;
	optind = 2;
	while ((c = getopt(argc, argv, "r:p:H:m:w:n:t:s:P:h")) != -1) {
		switch (c) {
		case 'r': fo.rounds = cr.rep = atoi(optarg); break;
		case 'p': fo.poll_ms = atof(optarg); break;
		case 'H': fo.hold_ms = atof(optarg); break;
		case 'm': mountd = optarg; break;
		case 'w': work = optarg; break;
		case 'n': cr.hosts = atoi(optarg); break;
		case 't': secs = atof(optarg); break;
		case 's': cr.wsize = atoi(optarg); break;
		case 'P': pattern = optarg; break;
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return 2;
		}
	}
	if (optind != argc - 1 || argv[optind][0] != '/') {
		usage(stderr);
		return 2;
	}
	const char *img = argv[optind];

	struct sigaction sa = {.sa_handler = on_signal};
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGHUP, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);

	int rc;
	if (!strcmp(cmd, "failover")) {
		if (!mountd || !work || !fo.rounds) {
			usage(stderr);
			return 2;
		}
		fo.img = img, fo.work = work, fo.mountd = mountd;
		rc = cmd_failover(&fo);
	} else if (!strcmp(cmd, "creates") || !strcmp(cmd, "fcreates")) {
		cr.fuse = cmd[0] == 'f';
		if (cr.fuse && (!mountd || !work)) {
			usage(stderr);
			return 2;
		}
		if (secs > 0)
			cr.secs = secs;
		if (cr.hosts < 1 || cr.hosts > MAXD || cr.wsize > (1u << 20)) {
			usage(stderr);
			return 2;
		}
		cr.img = img, cr.work = work, cr.mountd = mountd;
		rc = cmd_creates(&cr);
	} else if (!strcmp(cmd, "replay")) {
		if (cr.hosts < 1 || cr.hosts > MAXD) {
			usage(stderr);
			return 2;
		}
		rc = cmd_replay(img, cr.hosts, secs > 0 ? secs : 2, cr.rep, pattern);
	} else if (!strcmp(cmd, "fill")) {
		rc = cmd_fill(img);
	} else if (!strcmp(cmd, "hbio")) {
		rc = cmd_hbio(img, secs > 0 ? secs : 5);
	} else {
		usage(stderr);
		return 2;
	}
	stop_all();
	if (g_stop) {
		fprintf(stderr, "lunfs-cluster: interrupted\n");
		rc = 1;
	}
	return rc;
}
