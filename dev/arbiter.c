/* The compare-and-write arbiter of the file backend.
 *
 * WHY.  CAW on an image file or block device is emulated: read, compare,
 * write, under exclusion among every process (and thread) of this machine
 * that has the device open.  The exclusion used to be an OFD byte-range
 * lock (F_OFD_SETLKW) plus a per-open mutex.  A process frozen inside it
 * (SIGSTOP, a debugger) held both forever: every other process waited
 * forever in F_OFD_SETLKW, and the mutex queued all of that process's
 * other CAWs (its own heartbeat renewals, its recovery of the frozen host)
 * behind the wait, so every survivor fenced itself.  A host frozen in the
 * CAW of its own heartbeat slot kept the slot locked, so nobody could
 * recover it.  The arbiter bounds every hold and never links two blocks.
 *
 * WHERE.  One file per device identity, $LUNFS_CAW_DIR or /dev/shm:
 *   lunfs-caw-b-<st_rdev>            a block device
 *   lunfs-caw-f-<st_dev>-<st_ino>    a regular image file
 * so every path, hard link or bind mount of one image meets in one arbiter
 * (a loop device over the image is another identity).  Created O_CREAT 0600
 * by the first opener and mapped MAP_SHARED by every open.  It holds no
 * state that outlives its opens: the last open to close removes it, and it
 * can be removed by hand whenever no process has the device open.
 *
 * LAYOUT.  Page 0: a header (magic, logical block size, a token counter).
 * From byte 4096: one 64-bit word per logical block, indexed directly by
 * offset / lbs, so two blocks never share a word (no hash, no collision: a
 * heartbeat renewal never waits behind a lock record).  The file is sparse
 * (ftruncate to 4096 + 8 * blocks; only touched pages take memory) and is
 * never shrunk; growing it (a bigger device under one identity) is done
 * under an OFD lock on byte GROW_BYTE, so two openers cannot shrink it
 * under each other.  Past the table, at LIVE_BASE + token, lie the liveness
 * bytes: never written, only OFD-locked (locks beyond EOF are allowed).
 *
 * PROTOCOL.  A word is 0 when free, else a holder value unique to one
 * acquisition: the open's token in the high 32 bits, a per-open counter in
 * the low 32.  Each open draws its token from the header counter and holds
 * an OFD write lock on its liveness byte for its whole life; the kernel
 * drops it when the process dies (whatever pid namespace it is in), so
 * F_OFD_GETLK on a token's byte tells whether that open still exists.
 *   acquire  CAS 0 -> mine; t_acq = the clock read right BEFORE the CAS
 *            that succeeded.  While the
 *            word is held, poll with backoff (20 us doubling to 1 ms).  A
 *            waiter that finds the holder's open dead (liveness byte
 *            unlocked) takes the word over at once (CAS old -> mine); one
 *            that has seen the SAME holder value for break_ms, measured
 *            from when it first loaded it, takes it over likewise.
 *   check    right before the write, after the read, the compare and the
 *            device write guard: every word still ours, and
 *            now - t_acq < break_ms / 2.  Else no write: -ETIMEDOUT.
 *   release  CAS mine -> 0 (failing means we were broken: fine).
 * Threads of one open are excluded like other processes: each acquisition
 * has its own value.
 *
 * BREAK ARITHMETIC.  Let T0 be the instant our CAS made the word ours.  We
 * read t_acq before the CAS, so t_acq <= T0.  A breaker first loads our
 * value after T0 and reads its clock after the load, so its t_seen >= T0,
 * and it breaks at t_brk >= t_seen + break_ms >= t_acq + break_ms.  Our
 * check passes only at t_chk < t_acq + break_ms / 2, so t_chk < t_brk -
 * break_ms / 2: a write whose check passed was at least break_ms / 2 ahead
 * of any break.  (Both ends use CLOCK_MONOTONIC of one machine.)  A dead
 * holder is broken at once, but a dead holder writes nothing more.
 *
 * RESIDUAL WINDOW.  A holder frozen for more than break_ms / 2 between its
 * final check and the pwrite syscall itself (a few instructions) still
 * writes when it resumes, possibly after a breaker's CAW.  That is the same
 * kind of window as the lease check of every plain write on the file
 * backend (docs/LOCKING.md, "Residual window on the file backend"); only
 * persistent reservations on iSCSI close it.  Once inside pwrite, a stop
 * takes effect only at the return to user space, after the O_DIRECT write.
 *
 * LIMITS.  Every process must see the same arbiter directory: two mount
 * namespaces with private /dev/shm are two arbiters and do not exclude
 * each other (file.c makes a process that cannot use the arbiter refuse
 * to mix with ones that do, see there).  A wrapped token counter (2^32
 * opens of one file) could make a stale word look live: it is then broken
 * after break_ms like a frozen one.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>
#include "dev/arbiter.h"

#define ARB_MAGIC 0x4c554e4641524231ull /* "LUNFARB1" */
#define HDR_BYTES 4096
#define HDR_WORDS (HDR_BYTES / 8)
#define LIVE_BASE (1ll << 62)        /* liveness byte of token t: LIVE_BASE + t */
#define LIVE_LEN (1ll << 32)         /* every token */
#define GROW_BYTE (LIVE_BASE - 1)
#define BACKOFF_MIN_NS 20000ull
#define BACKOFF_MAX_NS 1000000ull
#define LIVE_RECHECK_NS 10000000ull /* a holder may die while we wait */

enum { H_MAGIC = 0, H_LBS = 1, H_TOKEN = 2 };

uint64_t arb_now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + ts.tv_nsec;
}

static void sleep_ns(uint64_t ns)
{
	struct timespec ts = {ns / 1000000000ull, ns % 1000000000ull};
	nanosleep(&ts, NULL);
}

static int ofd(int fd, int cmd, short type, off_t start, off_t len)
{
	struct flock fl = {.l_type = type, .l_whence = SEEK_SET, .l_start = start, .l_len = len};
	int r;
	do
		r = fcntl(fd, cmd, &fl);
	while (r < 0 && errno == EINTR);
	return r < 0 ? -errno : 0;
}

/* 1 when some open holds token tok's liveness byte (or we cannot tell). */
static int token_alive(struct arb *a, uint32_t tok)
{
	struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = LIVE_BASE + tok, .l_len = 1};
	if (fcntl(a->fd, F_OFD_GETLK, &fl) < 0)
		return 1;
	return fl.l_type != F_UNLCK;
}

/* Grows the file to at least len bytes; never shrinks it.  The grow lock is
 * taken by polling with a deadline: a frozen opener delays only openers. */
static int grow(int fd, off_t len)
{
	struct stat st;
	uint64_t end = arb_now_ns() + 5000000000ull;
	int r;
	if (fstat(fd, &st) < 0)
		return -errno;
	if (st.st_size >= len)
		return 0;
	while ((r = ofd(fd, F_OFD_SETLK, F_WRLCK, GROW_BYTE, 1)) == -EAGAIN) {
		if (arb_now_ns() > end)
			return -ETIMEDOUT;
		sleep_ns(BACKOFF_MAX_NS);
	}
	if (r)
		return r;
	if (fstat(fd, &st) < 0)
		r = -errno;
	else if (st.st_size < len && ftruncate(fd, len) < 0)
		r = -errno;
	ofd(fd, F_OFD_SETLK, F_UNLCK, GROW_BYTE, 1);
	return r;
}

/* One attempt: open, grow, map, check the header, draw a token, lock its
 * byte, and make sure the path still names the file we locked in (a last
 * closer may have removed it meanwhile).  -EAGAIN: try again. */
static int try_open(struct arb *a, uint64_t nblk, uint32_t lbs)
{
	struct stat st, st2;
	int r;
	a->fd = open(a->path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (a->fd < 0)
		return -errno;
	if (fstat(a->fd, &st) < 0) {
		r = -errno;
		goto fail;
	}
	/* someone else's file would let them steer our exclusion */
	if (!S_ISREG(st.st_mode) || st.st_uid != geteuid()) {
		r = -EPERM;
		goto fail;
	}
	a->nblk = nblk;
	a->map_len = ((HDR_BYTES + nblk * 8) + 4095) & ~(size_t)4095;
	if ((r = grow(a->fd, a->map_len)))
		goto fail;
	a->map = mmap(NULL, a->map_len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_NORESERVE, a->fd, 0);
	if (a->map == MAP_FAILED) {
		a->map = NULL;
		r = -errno;
		goto fail;
	}
	uint64_t v = 0;
	if (!atomic_compare_exchange_strong(&a->map[H_MAGIC], &v, ARB_MAGIC) && v != ARB_MAGIC) {
		r = -EPROTO;
		goto fail;
	}
	v = 0;
	if (!atomic_compare_exchange_strong(&a->map[H_LBS], &v, lbs) && v != lbs) {
		r = -EPROTO;
		goto fail;
	}
	do
		a->token = (uint32_t)(atomic_fetch_add(&a->map[H_TOKEN], 1) + 1);
	while (!a->token);
	/* EAGAIN: a live open has this token (the counter wrapped) or a last
	 * closer is removing the file */
	if ((r = ofd(a->fd, F_OFD_SETLK, F_WRLCK, LIVE_BASE + a->token, 1)))
		goto fail;
	if (stat(a->path, &st2) < 0 || st2.st_dev != st.st_dev || st2.st_ino != st.st_ino) {
		r = -EAGAIN;
		goto fail;
	}
	return 0;
fail:
	if (a->map)
		munmap((void *)a->map, a->map_len);
	a->map = NULL;
	close(a->fd);
	a->fd = -1;
	return r;
}

int arb_open(struct arb *a, const char *dir, const struct stat *img, uint64_t nblk, uint32_t lbs)
{
	char name[96];
	int r = -EAGAIN;
	memset(a, 0, sizeof(*a));
	a->fd = -1;
	if (!dir)
		dir = getenv("LUNFS_CAW_DIR");
	if (!dir || !*dir)
		dir = "/dev/shm";
	if (S_ISBLK(img->st_mode))
		snprintf(name, sizeof(name), "lunfs-caw-b-%jx", (uintmax_t)img->st_rdev);
	else
		snprintf(name, sizeof(name), "lunfs-caw-f-%jx-%jx", (uintmax_t)img->st_dev,
			 (uintmax_t)img->st_ino);
	if (asprintf(&a->path, "%s/%s", dir, name) < 0) {
		a->path = NULL;
		return -ENOMEM;
	}
	for (int i = 0; i < 100 && r == -EAGAIN; i++) {
		if (i)
			sleep_ns(BACKOFF_MAX_NS);
		r = try_open(a, nblk, lbs);
	}
	if (r) {
		free(a->path);
		a->path = NULL;
	}
	return r;
}

void arb_close(struct arb *a)
{
	struct stat st, st2;
	if (a->fd < 0)
		return;
	munmap((void *)a->map, a->map_len);
	ofd(a->fd, F_OFD_SETLK, F_UNLCK, LIVE_BASE + a->token, 1);
	/* The last open removes the file: no liveness byte is held by anyone.
	 * An opener that got the fd before the unlink finds the path changed
	 * after locking its byte and starts over (try_open). */
	if (!ofd(a->fd, F_OFD_SETLK, F_WRLCK, LIVE_BASE, LIVE_LEN)) {
		if (!fstat(a->fd, &st) && !stat(a->path, &st2) && st.st_dev == st2.st_dev &&
		    st.st_ino == st2.st_ino)
			unlink(a->path);
	}
	close(a->fd);
	a->fd = -1;
	free(a->path);
	a->path = NULL;
}

static _Atomic uint64_t *word(struct arb *a, uint64_t blk)
{
	return &a->map[HDR_WORDS + blk];
}

/* Waits for block blk's word and makes it mine.  Returns the clock read
 * right before the CAS that did it (<= the instant the word became mine). */
static uint64_t take(struct arb *a, uint64_t blk, uint64_t mine, uint32_t break_ms, int *broke)
{
	_Atomic uint64_t *w = word(a, blk);
	uint64_t seen = 0, t_seen = 0, t_live = 0, backoff = BACKOFF_MIN_NS;
	for (;;) {
		uint64_t cur = 0, t_cas = arb_now_ns();
		if (atomic_compare_exchange_strong(w, &cur, mine))
			return t_cas;
		uint64_t now = arb_now_ns(); /* after the load: t_seen >= its acquisition */
		if (cur != seen) {
			seen = cur;
			t_seen = now;
			t_live = now;
			backoff = BACKOFF_MIN_NS;
		}
		int dead = 0;
		if (now >= t_live) {
			uint32_t tok = (uint32_t)(cur >> 32);
			dead = tok != a->token && !token_alive(a, tok);
			t_live = now + LIVE_RECHECK_NS;
		}
		if (dead || now - t_seen >= (uint64_t)break_ms * 1000000ull) {
			t_cas = arb_now_ns();
			if (atomic_compare_exchange_strong(w, &cur, mine)) {
				*broke = 1;
				return t_cas;
			}
			continue; /* it changed hands meanwhile: start over with the new holder */
		}
		sleep_ns(backoff);
		backoff = backoff * 2 > BACKOFF_MAX_NS ? BACKOFF_MAX_NS : backoff * 2;
	}
}

int arb_acquire(struct arb *a, uint64_t blk, uint64_t n, uint32_t break_ms, struct arb_hold *h)
{
	uint32_t seq;
	do
		seq = atomic_fetch_add(&a->seq, 1) + 1;
	while (!seq);
	h->blk = blk;
	h->nblk = n;
	h->word = (uint64_t)a->token << 32 | seq;
	h->broke = 0;
	/* Ascending order.  t_acq is read before the CAS that took the first
	 * word (see BREAK ARITHMETIC), so it is <= the instant any of our words
	 * became ours; waiting for a later block counts against our hold. */
	for (uint64_t i = 0; i < n; i++) {
		uint64_t t = take(a, blk + i, h->word, break_ms, &h->broke);
		if (!i)
			h->t_acq_ns = t;
	}
	return 0;
}

int arb_check(struct arb *a, const struct arb_hold *h, uint32_t break_ms)
{
	for (uint64_t i = 0; i < h->nblk; i++)
		if (atomic_load(word(a, h->blk + i)) != h->word)
			return -ETIMEDOUT; /* broken: somebody thought us frozen */
	if (arb_now_ns() - h->t_acq_ns >= (uint64_t)break_ms * 1000000ull / 2)
		return -ETIMEDOUT; /* too close to a break to write safely */
	return 0;
}

void arb_release(struct arb *a, const struct arb_hold *h)
{
	for (uint64_t i = 0; i < h->nblk; i++) {
		uint64_t mine = h->word;
		atomic_compare_exchange_strong(word(a, h->blk + i), &mine, 0);
	}
}
