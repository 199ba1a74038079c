/* crashtest: power-cut the whole workload at every write.
 *
 *   crashtest IMAGE [MIN_POINTS]
 *
 * A workload (create, write+fsync, rename, unlink, mkdir, truncate,
 * fallocate, xattr, and writes from several threads at once whose holes are
 * filled by one group commit) runs on the faulty device, which cuts power
 * after write k: writes since the last flush are lost (all of them, or a
 * seeded random part).  For every k: mount the image (which replays the
 * journal), run `fsck.lunfs -n` (must be clean), and check every file
 * against a model of what the workload made durable.  The operation that
 * was running at the cut may have happened or not; its files may show
 * either state.  Prints the number of crash states checked.
 *
 *   crashtest --grow IMAGE [FSCK]
 *
 * The same for an online grow: a volume holding a file is enlarged (the
 * image grows) and `lunfs grow` (a mount of its own, lunfs_grow, unmount)
 * runs on the faulty device, cut after write k for every k, losing the
 * unflushed writes or keeping a seeded part of them.  After each: a mount
 * works, the volume has its old or its new size (and a mounted host
 * allocates past the old end when new), the file is intact, and fsck -n is
 * clean. */
#include <fcntl.h>
#include <pthread.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include "dev/dev.h"
#include "format/format.h"
#include "fs/lunfs.h"
#include "fs/lunfs_test.h"

#define NF 12
#define MAXLEN (1536 * 1024)
extern char **environ;

struct mfile {
	char path[48];
	int exists, certain; /* certain: contents were fsynced (or set by a sync op) */
	size_t size;
	uint8_t *data;
	char xv[16];
	int xlen;
};

struct model {
	struct mfile f[NF];
	int ndirs;
};

static void mf_copy(struct mfile *d, const struct mfile *s)
{
	uint8_t *keep = d->data;
	*d = *s;
	d->data = keep;
	memcpy(d->data, s->data, s->size);
}

static void pattern(uint8_t *b, size_t n, uint32_t seed)
{
	for (size_t i = 0; i < n; i++)
		b[i] = (uint8_t)((i + seed) * 2654435761u >> 11);
}

/* The op running at the cut: file a (and its state before and after). */
struct inflight {
	int active, a;
	struct mfile pre, post;
};

static const char *dirname_of(int k)
{
	static const char *d[] = {"/vms", "/vms/a", "/vms/b"};
	return d[k % 3];
}

static int walk(struct lunfs_vol *v, const char *path, uint64_t *ino, char *leaf)
{
	uint64_t cur = LUNFS_ROOT_INO;
	char tmp[64];
	snprintf(tmp, sizeof(tmp), "%s", path);
	char *save, *tok = strtok_r(tmp, "/", &save), *next;
	while (tok) {
		next = strtok_r(NULL, "/", &save);
		if (!next) {
			strcpy(leaf, tok);
			*ino = cur;
			return 0;
		}
		struct lunfs_stat st;
		int r = lunfs_lookup(v, cur, tok, &st);
		if (r)
			return r;
		cur = st.ino;
		tok = next;
	}
	return -EINVAL;
}

static int lookup_path(struct lunfs_vol *v, const char *path, struct lunfs_stat *st)
{
	uint64_t dir;
	char leaf[64];
	int r = walk(v, path, &dir, leaf);
	return r ? r : lunfs_lookup(v, dir, leaf, st);
}

/* Writes from several threads at once (the step j % 12 == 9): the file's
 * range cut into NPART pieces, each written by its own thread, and up to
 * two other files written into their second block (a hole, or a block to
 * be zeroed after a fallocate) at the same time.  The holes they fill are
 * committed together (fs/fill.c), and pieces in one block wait for each
 * other.  The threads' order is not fixed, so neither is the order of
 * their device writes: each run cuts power in a different place. */
#define NPART 6
#define NOTHER 2
struct part {
	struct lunfs_file *h;
	const uint8_t *buf;
	size_t len;
	uint64_t off;
	ssize_t res;
};

static void *part_write(void *arg)
{
	struct part *p = arg;
	p->res = lunfs_pwrite(p->h, p->buf, p->len, p->off);
	return NULL;
}

/* Runs the n writes at once; returns 0 or the first error. */
static int run_parts(struct part *pt, int n)
{
	pthread_t t[NPART + NOTHER];
	int started[NPART + NOTHER], r = 0;
	for (int i = 0; i < n; i++) {
		started[i] = !pthread_create(&t[i], NULL, part_write, &pt[i]);
		if (!started[i])
			part_write(&pt[i]);
	}
	for (int i = 0; i < n; i++) {
		if (started[i])
			pthread_join(t[i], NULL);
		if (!r && pt[i].res != (ssize_t)pt[i].len)
			r = pt[i].res < 0 ? (int)pt[i].res : -EIO;
	}
	return r;
}

/* The concurrent write of step j: [off, off + len) of buf into h, and the
 * other files' writes. */
static int write_together(struct lunfs_vol *v, struct model *m, int i, int j, struct lunfs_file *h,
			  const uint8_t *buf, size_t len, uint64_t off)
{
	struct part pt[NPART + NOTHER];
	struct lunfs_file *oh[NOTHER] = {NULL};
	struct mfile *of[NOTHER] = {NULL};
	uint8_t *obuf = malloc(MAXLEN);
	size_t at = 0;
	int n = 0, r = 0;
	for (int k = 0; k < NPART; k++) {
		size_t l = k == NPART - 1 ? len - at : len / NPART + (k % 2) * 333;
		pt[n++] = (struct part){h, buf + at, l, off + at, 0};
		at += l;
	}
	pattern(obuf, MAXLEN, j + 7);
	for (int k = 0; k < NOTHER && !r; k++) {
		struct mfile *g = &m->f[(i + 1 + k) % NF];
		struct lunfs_stat st;
		uint64_t goff = g->size > 1048576 ? g->size : 1048576;
		if (!g->exists || goff + 4096 > MAXLEN)
			continue;
		size_t glen = MAXLEN - goff < 200000 ? MAXLEN - goff : 200000;
		if ((r = lookup_path(v, g->path, &st)) ||
		    (r = lunfs_open(v, st.ino, LUNFS_OPEN_EXCL, &oh[k])))
			break;
		of[k] = g;
		g->certain = 0; /* any contents until its fsync */
		pt[n++] = (struct part){oh[k], obuf, glen, goff, 0};
	}
	if (!r)
		r = run_parts(pt, n);
	for (int k = 0; k < NOTHER; k++) {
		if (!oh[k])
			continue;
		struct part *q = &pt[n - NOTHER + k];
		for (int x = NPART; x < n; x++)
			if (pt[x].h == oh[k])
				q = &pt[x];
		if (!r)
			r = lunfs_fsync(oh[k]);
		int e = lunfs_close(oh[k]);
		if (!r && !(r = e)) {
			struct mfile *g = of[k];
			if (q->off > g->size)
				memset(g->data + g->size, 0, q->off - g->size);
			memcpy(g->data + q->off, q->buf, q->len);
			g->size = q->off + q->len;
			g->certain = 1;
		}
	}
	free(obuf);
	return r;
}

/* One step of the workload.  Returns 0, or the error that stopped it.
 * m is updated as each sub-step becomes durable. */
static int step(struct lunfs_vol *v, struct model *m, int j, struct inflight *fl, uint8_t *buf)
{
	int i = (j * 5 + j / NF) % NF, r = 0;
	struct mfile *f = &m->f[i];
	struct lunfs_stat st;
	struct lunfs_file *h;
	uint64_t dir;
	char leaf[64];
	fl->active = 1;
	fl->a = i;
	mf_copy(&fl->pre, f);
	mf_copy(&fl->post, f);
	struct mfile *p = &fl->post;
	if (j < 3) { /* directories first */
		if ((r = walk(v, dirname_of(j), &dir, leaf)))
			return r;
		fl->active = 0;
		return lunfs_mkdir(v, dir, leaf, 0755, NULL, &st);
	}
	switch (j % 6) {
	case 0: /* create or overwrite, write, fsync */
	case 3: {
		size_t len = (size_t)(j * 7919) % MAXLEN + 1;
		uint64_t off = (j % 3) * 4096 + (j % 2) * 100;
		if (!f->exists) {
			snprintf(f->path, sizeof(f->path), "%s/f%d-%d", dirname_of(j), i, j);
			if ((r = walk(v, f->path, &dir, leaf)))
				return r;
			mf_copy(&fl->pre, f); /* pre: does not exist at path */
			fl->pre.exists = 0;
			mf_copy(p, f); /* post: exists, empty */
			p->exists = 1;
			p->certain = 1;
			p->size = 0;
			p->xlen = 0;
			if ((r = lunfs_mknod(v, dir, leaf, S_IFREG | 0644, 0, NULL, &st)))
				return r;
			mf_copy(f, p);
			mf_copy(&fl->pre, f);
		} else if ((r = lookup_path(v, f->path, &st))) {
			return r;
		}
		if (off + len > MAXLEN)
			len = MAXLEN - off;
		pattern(buf, len, j);
		mf_copy(p, f);
		if (off > p->size)
			memset(p->data + p->size, 0, off - p->size);
		memcpy(p->data + off, buf, len);
		if (off + len > p->size)
			p->size = off + len;
		/* from the first byte written until fsync returns, the contents
		 * are whatever part of the write landed */
		f->certain = 0;
		mf_copy(&fl->pre, f);
		p->certain = 0;
		if ((r = lunfs_open(v, st.ino, LUNFS_OPEN_EXCL, &h)))
			return r;
		if (j % 12 == 9 && len >= NPART * 1024) {
			r = write_together(v, m, i, j, h, buf, len, off);
		} else {
			ssize_t w = lunfs_pwrite(h, buf, len, off);
			r = w < 0 ? (int)w : 0;
		}
		if (!r)
			r = lunfs_fsync(h);
		int e = lunfs_close(h);
		if (r || (r = e))
			return r;
		mf_copy(f, p);
		f->certain = 1;
		break;
	}
	case 1: /* rename into another directory */
		if (!f->exists)
			break;
		snprintf(p->path, sizeof(p->path), "%s/r%d-%d", dirname_of(j + 1), i, j);
		{
			uint64_t od, nd;
			char ol[64], nl[64];
			if ((r = walk(v, f->path, &od, ol)) || (r = walk(v, p->path, &nd, nl)))
				return r;
			if ((r = lunfs_rename(v, od, ol, nd, nl, 0)))
				return r;
		}
		mf_copy(f, p);
		break;
	case 2: /* truncate down, or unlink every fourth time */
		if (!f->exists)
			break;
		if (j % 4 == 2) {
			p->exists = 0;
			if ((r = walk(v, f->path, &dir, leaf)) || (r = lunfs_unlink(v, dir, leaf)))
				return r;
		} else {
			struct lunfs_setattr sa = {.size = f->size / 3};
			p->size = sa.size;
			if ((r = lookup_path(v, f->path, &st)) ||
			    (r = lunfs_setattr(v, st.ino, LUNFS_SET_SIZE, &sa, &st)))
				return r;
		}
		mf_copy(f, p);
		break;
	case 4: /* fallocate: grows the file with zeros (lazy, or eager: zeroed
		 * with the volume mutex dropped, then mapped) */
		if (!f->exists || f->size + 1048576 > MAXLEN)
			break;
		memset(p->data + p->size, 0, 1048576);
		p->size += 1048576;
		if ((r = lookup_path(v, f->path, &st)) || (r = lunfs_open(v, st.ino, LUNFS_OPEN_EXCL, &h)))
			return r;
		r = lunfs_fallocate(h, (f->size >> 20) & 1 ? LUNFS_FALLOC_ZERO : 0, f->size, 1048576);
		int e = lunfs_close(h);
		if (r || (r = e))
			return r;
		mf_copy(f, p);
		break;
	case 5: /* xattr */
		if (!f->exists)
			break;
		p->xlen = snprintf(p->xv, sizeof(p->xv), "v%d", j);
		if ((r = lookup_path(v, f->path, &st)) ||
		    (r = lunfs_setxattr(v, st.ino, "user.k", p->xv, p->xlen, 0)))
			return r;
		mf_copy(f, p);
		break;
	}
	fl->active = 0;
	return 0;
}

#define NSTEPS 150

static int workload(struct lunfs_vol *v, struct model *m, struct inflight *fl)
{
	uint8_t *buf = malloc(MAXLEN);
	int r = 0;
	for (int j = 0; j < NSTEPS && !r; j++)
		r = step(v, m, j, fl, buf);
	free(buf);
	return r;
}

/* Does the volume show file state s?  Returns 1 if so. */
static int dbg(const char *what, const struct mfile *s, long a, long b)
{
	if (getenv("CRASHTEST_DEBUG"))
		fprintf(stderr, "  %s: %s: %ld vs %ld (exists %d certain %d)\n", s->path, what, a, b,
			s->exists, s->certain);
	return 0;
}

static int shows(struct lunfs_vol *v, const struct mfile *s, uint8_t *buf)
{
	struct lunfs_stat st;
	int r = lookup_path(v, s->path, &st);
	if (!s->exists)
		return r == -ENOENT || dbg("exists, should not", s, r, 0);
	if (r)
		return dbg("lookup", s, r, 0);
	if (!s->certain)
		return 1; /* written but not synced: any contents */
	if (st.size != s->size)
		return dbg("size", s, st.size, s->size);
	struct lunfs_file *h;
	if (lunfs_open(v, st.ino, LUNFS_OPEN_READ, &h))
		return 0;
	ssize_t n = lunfs_pread(h, buf, s->size + 1, 0);
	lunfs_close(h);
	if (n != (ssize_t)s->size)
		return dbg("read", s, n, s->size);
	for (size_t i = 0; i < s->size; i++)
		if (buf[i] != s->data[i])
			return dbg("byte differs at", s, i, s->size);
	char xv[16];
	int xl = lunfs_getxattr(v, st.ino, "user.k", xv, sizeof(xv));
	if (s->xlen ? (xl != s->xlen || memcmp(xv, s->xv, xl)) : xl != -ENODATA)
		return dbg("xattr", s, xl, s->xlen);
	return 1;
}

static int run_fsck(const char *fsck, const char *img)
{
	pid_t pid;
	char *argv[] = {(char *)fsck, "-n", (char *)img, NULL};
	posix_spawn_file_actions_t fa;
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
	if (posix_spawn(&pid, fsck, &fa, NULL, argv, environ))
		return -1;
	posix_spawn_file_actions_destroy(&fa);
	int st;
	waitpid(pid, &st, 0);
	return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* The end of every crash state: unmount, then fsck -n must be clean.
 * Returns 1 (and says why) when either fails. */
static int unmount_fsck(struct lunfs_vol *v, const char *fsck, const char *img, const char *what,
			uint64_t k, uint64_t seed)
{
	int r = lunfs_unmount(v), bad = 0;
	if (r) {
		fprintf(stderr, "%scut after write %llu: unmount: %s\n", what, (unsigned long long)k,
			lunfs_strerror(r));
		bad = 1;
	}
	if ((r = run_fsck(fsck, img)) != 0) {
		fprintf(stderr, "%scut after write %llu (seed %llu): fsck.lunfs -n exit %d\n", what,
			(unsigned long long)k, (unsigned long long)seed, r);
		bad = 1;
	}
	return bad;
}

static void model_init(struct model *m)
{
	memset(m, 0, sizeof(*m));
	for (int i = 0; i < NF; i++)
		m->f[i].data = malloc(MAXLEN + 4096);
}

static void model_free(struct model *m)
{
	for (int i = 0; i < NF; i++)
		free(m->f[i].data);
}

static int fresh(const char *img)
{
	struct dev *d;
	struct lunfs_sb sb;
	char err[200];
	struct lunfs_mkfs_opts o = {.max_hosts = 4, .jnl_size = 1 << 20, .lease_ms = 2400, .hb_ms = 200};
	int r = dev_open(img, NULL, &d);
	if (r)
		return r;
	if (!(r = lunfs_geom_compute(&o, dev_size(d), dev_lbs(d), &sb, err, sizeof(err)))) {
		lunfs_uuid_gen(sb.uuid);
		r = lunfs_format(d, &sb);
	}
	dev_close(d);
	return r;
}

/* One crash state: cut after write k (seed: keep part of the cache). */
static int one(const char *img, const char *fsck, uint64_t k, uint64_t seed, uint64_t *writes)
{
	struct model m;
	struct inflight fl;
	struct dev *d, *f;
	struct lunfs_vol *v;
	const char *msg;
	int r, bad = 0;
	model_init(&m);
	memset(&fl, 0, sizeof(fl));
	fl.pre.data = malloc(MAXLEN + 4096);
	fl.post.data = malloc(MAXLEN + 4096);
	if ((r = fresh(img)) || (r = dev_open(img, NULL, &d)) || (r = dev_faulty_wrap(d, &f))) {
		fprintf(stderr, "crashtest: setup: %s\n", lunfs_strerror(r));
		exit(2);
	}
	struct dev_fault cfg = {.cut_after = k, .cut_keep_seed = seed};
	dev_faulty_set(f, &cfg);
	struct lunfs_mount_opts mo = {.host = "crash", .assume_dead = 1};
	struct lunfs_test_opts t = {.device = f};
	if ((r = lunfs_mount_test(NULL, &mo, &t, &v, &msg)) == 0) {
		r = workload(v, &m, &fl);
		if (writes)
			*writes = dev_faulty_writes(f);
		if (!r && !k)
			r = lunfs_unmount(v);
		else
			lunfs_abandon(v);
	}
	if (!k) {
		if (r) {
			fprintf(stderr, "crashtest: the workload fails without a cut: %s\n", lunfs_strerror(r));
			bad = 1;
		}
		goto out;
	}
	/* the next mount replays */
	struct lunfs_mount_opts mo2 = {.host = "crash", .assume_dead = 1};
	if ((r = lunfs_mount(img, &mo2, &v, &msg))) {
		fprintf(stderr, "cut after write %llu: mount failed: %s\n", (unsigned long long)k,
			msg ? msg : lunfs_strerror(r));
		bad = 1;
		goto out;
	}
	uint8_t *buf = malloc(MAXLEN + 8192);
	for (int i = 0; i < NF; i++) {
		struct mfile *s = &m.f[i];
		int ok;
		if (fl.active && fl.a == i)
			ok = shows(v, &fl.pre, buf) || shows(v, &fl.post, buf);
		else
			ok = !s->path[0] || shows(v, s, buf);
		if (!ok) {
			fprintf(stderr, "cut after write %llu (seed %llu): file %d (%s) does not hold its durable state\n",
				(unsigned long long)k, (unsigned long long)seed, i, s->path);
			bad = 1;
		}
	}
	free(buf);
	bad |= unmount_fsck(v, fsck, img, "", k, seed);
out:
	model_free(&m);
	free(fl.pre.data);
	free(fl.post.data);
	return bad;
}

/* ---- online grow ---- */

#define GROW_OLD (64ull << 20)
#define GROW_NEW (160ull << 20)
static long grow_states[2]; /* crash states that showed the old / the new size */

static int grow_one(const char *img, const char *fsck, uint64_t k, uint64_t seed, uint64_t *writes)
{
	struct lunfs_mount_opts live = {.host = "live", .assume_dead = 1};
	struct lunfs_mount_opts gro = {.host = "grower", .assume_dead = 1};
	struct lunfs_vol *v;
	struct lunfs_file *fh;
	struct lunfs_stat st;
	struct lunfs_statfs sf;
	struct lunfs_grow_info gi;
	struct dev *d, *f;
	const char *msg;
	static uint8_t data[1 << 20], back[1 << 20];
	static uint64_t old_blocks, new_blocks; /* statfs blocks before and after (k = 0) */
	int r, bad = 0, fd = open(img, O_CREAT | O_WRONLY, 0644);
	if (fd >= 0)
		close(fd);
	pattern(data, sizeof(data), 77);
	/* the volume before the grow: one file, then the image grows */
	if (truncate(img, 0) || truncate(img, GROW_OLD) || (r = fresh(img)) ||
	    (r = lunfs_mount(img, &live, &v, &msg)) ||
	    (r = lunfs_mknod(v, 1, "keep", S_IFREG | 0644, 0, NULL, &st)) ||
	    (r = lunfs_open(v, st.ino, LUNFS_OPEN_EXCL, &fh)) ||
	    lunfs_pwrite(fh, data, sizeof(data), 0) != (ssize_t)sizeof(data) ||
	    (r = lunfs_close(fh)) || (r = lunfs_statfs(v, &sf)) || (r = lunfs_unmount(v)) ||
	    truncate(img, GROW_NEW)) {
		fprintf(stderr, "crashtest --grow: setup failed\n");
		exit(2);
	}
	old_blocks = sf.blocks;
	if ((r = dev_open(img, NULL, &d)) || (r = dev_faulty_wrap(d, &f)))
		exit(2);
	struct dev_fault cfg = {.cut_after = k, .cut_keep_seed = seed};
	dev_faulty_set(f, &cfg);
	struct lunfs_test_opts gt = {.device = f};
	if ((r = lunfs_mount_test(NULL, &gro, &gt, &v, &msg)) == 0) {
		r = lunfs_grow(v, 0, &gi, &msg);
		if (writes)
			*writes = dev_faulty_writes(f);
		if (!k) {
			new_blocks = gi.new_blocks - 1;
			r = r ? r : lunfs_unmount(v);
			if (r)
				fprintf(stderr, "crashtest --grow: fails without a cut: %s\n",
					msg ? msg : lunfs_strerror(r));
			return r != 0;
		}
		if (dev_faulty_is_cut(f))
			lunfs_abandon(v);
		else
			lunfs_unmount(v);
	} else if (!k) {
		return 1;
	}
	/* the grower's slot is taken over by the same identity (a rerun of
	 * lunfs grow; a peer's recovery would do the same after a lease) */
	if ((r = lunfs_mount(img, &gro, &v, &msg))) {
		fprintf(stderr, "grow cut after write %llu: mount failed: %s\n", (unsigned long long)k,
			msg ? msg : lunfs_strerror(r));
		return 1;
	}
	uint64_t bs = 1 << 20;
	if ((r = lunfs_statfs(v, &sf)) || (sf.blocks != old_blocks && sf.blocks != new_blocks)) {
		fprintf(stderr, "grow cut after write %llu (seed %llu): %llu file blocks: neither size\n",
			(unsigned long long)k, (unsigned long long)seed, (unsigned long long)sf.blocks);
		bad = 1;
	}
	int grown = sf.blocks == new_blocks;
	grow_states[grown]++;
	if ((r = lunfs_lookup(v, 1, "keep", &st)) || (r = lunfs_open(v, st.ino, LUNFS_OPEN_EXCL, &fh)) ||
	    lunfs_pread(fh, back, sizeof(back), 0) != (ssize_t)sizeof(back) || memcmp(data, back, sizeof(back))) {
		fprintf(stderr, "grow cut after write %llu (seed %llu): the file is not intact\n",
			(unsigned long long)k, (unsigned long long)seed);
		bad = 1;
	} else {
		/* a grown volume takes more than the old one held */
		uint64_t want = grown ? (old_blocks + 8) * bs : 0;
		if (want && (r = lunfs_fallocate(fh, 0, bs, want))) {
			fprintf(stderr, "grow cut after write %llu (seed %llu): no room past the old end: %s\n",
				(unsigned long long)k, (unsigned long long)seed, lunfs_strerror(r));
			bad = 1;
		}
		lunfs_close(fh);
	}
	bad |= unmount_fsck(v, fsck, img, "grow ", k, seed);
	return bad;
}

static int grow_main(const char *img, const char *fsck)
{
	uint64_t total = 0;
	long points = 0, failed = 0;
	if (grow_one(img, fsck, 0, 0, &total) || total == 0)
		return 1;
	printf("crashtest --grow: the grower does %llu writes\n", (unsigned long long)total);
	for (uint64_t seed = 0; seed < 3; seed++)
		for (uint64_t k = 1; k <= total; k++, points++)
			failed += grow_one(img, fsck, k, seed ? seed * 7919 + k : 0, NULL);
	printf("crashtest --grow: %ld crash states checked (%ld old size, %ld new size), %ld failed\n",
	       points, grow_states[0], grow_states[1], failed);
	return failed ? 1 : 0;
}

int main(int argc, char **argv)
{
	if (argc >= 3 && !strcmp(argv[1], "--grow"))
		return grow_main(argv[2], argc > 3 ? argv[3] : "build/bin/fsck.lunfs");
	if (argc < 2) {
		fprintf(stderr, "usage: crashtest IMAGE [MIN_POINTS] [FSCK]\n");
		return 2;
	}
	const char *img = argv[1];
	if (argc == 5 && !strcmp(argv[2], "--one")) /* debug: one cut, image kept */
		return one(img, "build/bin/fsck.lunfs", strtoull(argv[3], NULL, 0),
			   strtoull(argv[4], NULL, 0), NULL);
	long minpts = argc > 2 ? atol(argv[2]) : 2000;
	const char *fsck = argc > 3 ? argv[3] : "build/bin/fsck.lunfs";
	uint64_t total = 0;
	if (one(img, fsck, 0, 0, &total) || total == 0)
		return 1;
	printf("crashtest: the workload does %llu writes\n", (unsigned long long)total);
	/* cut points: every write without a cache, then every write with a
	 * random part of the cache kept, until there are enough */
	long points = 0, failed = 0;
	int workers = 2;
	char wimg[2][256];
	for (int w = 0; w < workers; w++) {
		snprintf(wimg[w], sizeof(wimg[w]), "%s.w%d", img, w);
		char cmd[600];
		snprintf(cmd, sizeof(cmd), "cp --sparse=always '%s' '%s'", img, wimg[w]);
		if (system(cmd))
			return 2;
	}
	for (uint64_t seed = 0; points < minpts || seed == 0; seed++) {
		pid_t pid[2];
		for (int w = 0; w < workers; w++) {
			if ((pid[w] = fork()) == 0) {
				int bad = 0;
				for (uint64_t k = 1 + w; k <= total; k += workers)
					bad += one(wimg[w], fsck, k, seed ? seed * 7919 + k : 0, NULL);
				_exit(bad > 250 ? 250 : bad);
			}
		}
		for (int w = 0; w < workers; w++) {
			int st;
			waitpid(pid[w], &st, 0);
			failed += WIFEXITED(st) ? WEXITSTATUS(st) : 1;
		}
		points += total;
	}
	for (int w = 0; w < workers; w++)
		unlink(wimg[w]);
	printf("crashtest: %ld crash states checked, %ld failed\n", points, failed);
	return failed ? 1 : 0;
}
