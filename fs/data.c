/* The data path: reads and writes of file data (mapped blocks outside
 * v->mu, writes into holes through the group commit of fs/fill.c), the
 * first block of a long symlink, SEEK_DATA/SEEK_HOLE, the async queue, and
 * the lookups of the completion-driven engine (fs/aio.c).
 *
 * Data blocks are never journaled, but ordering is kept: a block that a
 * write or fallocate exposes (a hole filled, a to-be-zeroed block written)
 * is written and zeroed, and flushed (tx->preflush), before the transaction
 * that points at it commits.  So a crash never shows stale data. */
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include "fs/internal.h"

/* Mapping lookups for one operation on an open file: the cache when the
 * open pins the inode lock, else the inode and its map (loaded once). */
struct fmap {
	struct txn *tx;
	struct ofile *of;
	struct lunfs_inode *in;
	int loaded;
};

/* Whether what a lookup read may enter the open file's cache: not while a
 * transaction frees file blocks (tx_drain waits with v->mu dropped).  That
 * transaction cleared the file's cache before it freed anything, but the
 * pointers it removes are in its own copies until it writes them back: a
 * lookup meanwhile still reads them from the cached blocks, and cached,
 * they would outlive the free (the fast path would reach a block another
 * file may own by then). */
static int may_cache(const struct fmap *m)
{
	return m->of->h && !__atomic_load_n(&m->tx->v->draining, __ATOMIC_SEQ_CST);
}

static int fmap_load(struct fmap *m)
{
	if (m->loaded)
		return 0;
	if (!m->in && !(m->in = malloc(sizeof(*m->in))))
		return -ENOMEM;
	int r = ino_read(m->tx, m->of->ino, LK_FREE, m->in);
	if (r)
		return r;
	m->loaded = 1;
	if (may_cache(m))
		of_set_size(m->of, m->in->size);
	return 0;
}

static int fmap_size(struct fmap *m, uint64_t *size)
{
	if (m->of->h && m->of->size_ok) {
		*size = m->of->size;
		return 0;
	}
	int r = fmap_load(m);
	if (r)
		return r;
	*size = m->in->size;
	return 0;
}

static int fmap_get(struct fmap *m, uint64_t lblk, uint64_t *ptr)
{
	struct ofile *of = m->of;
	VOL_HELD(m->tx->v); /* the cache changes under it (and of->mapmu) only */
	if (of->h && of->mapc && of->mapc[lblk % MAPC_SIZE].lblk1 == lblk + 1) {
		*ptr = of->mapc[lblk % MAPC_SIZE].ptr;
		return 0;
	}
	int r;
	if ((r = fmap_load(m)) || (r = bmap_get(m->tx, m->in, lblk, ptr)))
		return r;
	if (may_cache(m))
		of_set_map(of, lblk, *ptr);
	return 0;
}

static int aligned(struct lunfs_vol *v, uint64_t off, size_t len, const void *buf)
{
	uint32_t a = dev_lbs(v->d);
	return off % a == 0 && len % a == 0 && (uintptr_t)buf % a == 0;
}

/* Bounce buffers for unaligned data I/O (FUSE hands the daemon unaligned
 * buffers).  Each thread keeps one of BOUNCE_KEEP bytes for the next
 * request: a new 1 MiB buffer each time cost an mmap, 256 page faults with
 * the kernel's zeroing and dev_alloc's, and an munmap, a quarter of the
 * FUSE daemon's CPU in a 1 MiB write workload.  A longer request gets a
 * buffer of its own. */
#define BOUNCE_KEEP ((1u << 20) + 8192)

static pthread_key_t bounce_key;

static pthread_once_t bounce_once = PTHREAD_ONCE_INIT;

static __thread uint8_t *bounce_buf;

static void bounce_key_init(void)
{
	pthread_key_create(&bounce_key, free); /* frees it at the thread's exit */
}

static uint8_t *bounce_get(size_t len)
{
	if (len > BOUNCE_KEEP)
		return dev_alloc(len);
	if (!bounce_buf) {
		pthread_once(&bounce_once, bounce_key_init);
		if (!(bounce_buf = dev_alloc(BOUNCE_KEEP)))
			return NULL;
		pthread_setspecific(bounce_key, bounce_buf);
	}
	return bounce_buf;
}

static void bounce_put(uint8_t *b)
{
	if (b != bounce_buf)
		free(b);
}

static int read_range(struct lunfs_vol *v, uint64_t off, void *buf, size_t len)
{
	if (aligned(v, off, len, buf))
		return dev_read(v->d, off, buf, len);
	uint32_t a = dev_lbs(v->d);
	uint64_t a0 = off / a * a, a1 = (off + len + a - 1) / a * a;
	uint8_t *bb = bounce_get(a1 - a0);
	if (!bb)
		return -ENOMEM;
	int r = dev_read(v->d, a0, bb, a1 - a0);
	if (r)
		goto out;
	memcpy(buf, bb + (off - a0), len);
out:
	bounce_put(bb);
	return r;
}

/* Writes len bytes at off.  fresh: the sectors around the range are part of
 * a block being exposed now, so they are zeros (not read back). */

/* Whatever came before a data write (locks, map lookups, a bounce copy) may
 * have stalled past our lease: the device's write guard checks it right
 * before the submission (LOCKING.md section 4). */
int write_range(struct lunfs_vol *v, uint64_t off, const void *buf, size_t len, int fresh)
{
	if (aligned(v, off, len, buf))
		return dev_write(v->d, off, buf, len);
	uint32_t a = dev_lbs(v->d);
	uint64_t a0 = off / a * a, a1 = (off + len + a - 1) / a * a;
	uint8_t *bb = bounce_get(a1 - a0);
	int r = 0;
	if (!bb)
		return -ENOMEM;
	if (fresh) {
		memset(bb, 0, off - a0);
		memset(bb + (off - a0) + len, 0, a1 - off - len);
	} else {
		/* read-modify-write of the partial sectors only */
		if (off != a0 && (r = dev_read(v->d, a0, bb, a)))
			goto out;
		if ((off + len) % a && (a1 - a > a0 || off == a0) &&
		    (r = dev_read(v->d, a1 - a, bb + (a1 - a - a0), a)))
			goto out;
	}
	memcpy(bb + (off - a0), buf, len);
	r = dev_write(v->d, a0, bb, a1 - a0);
out:
	bounce_put(bb);
	return r;
}

/* Exposes block blk: writes [boff, boff+len) of buf into it (buf NULL:
 * nothing) and zeroes the rest of the block. */
static int fill_block(struct lunfs_vol *v, uint64_t blk, uint64_t boff, const void *buf, size_t len)
{
	uint64_t base = geom_file_blk(&v->sb, blk), bs = v->sb.file_bs;
	uint32_t a = dev_lbs(v->d);
	int r = 0;
	if (!buf || !len)
		return dev_zero(v->d, base, bs);
	uint64_t w0 = boff / a * a, w1 = (boff + len + a - 1) / a * a;
	if ((r = write_range(v, base + boff, buf, len, 1)))
		return r;
	if (w0 && (r = dev_zero(v->d, base, w0)))
		return r;
	if (w1 < bs)
		r = dev_zero(v->d, base + w1, bs - w1);
	return r;
}

int file_put_first(struct txn *tx, struct lunfs_inode *in, const void *buf, size_t len)
{
	uint64_t blk;
	int r = blk_alloc(tx, RC_FILE, &blk);
	if (r)
		return r;
	in->nblocks++;
	if ((r = fill_block(tx->v, blk, 0, buf, len)))
		return r;
	tx->preflush = 1;
	return bmap_set(tx, in, 0, blk);
}

int file_get_first(struct txn *tx, struct lunfs_inode *in, void *buf, size_t len)
{
	uint64_t ptr;
	int r = bmap_get(tx, in, 0, &ptr);
	if (r)
		return r;
	if (!ptr || (ptr & PTR_TBZ) || (ptr & PTR_BLOCK_MASK) >= tx->v->sb.file_blocks)
		return -EFSCORRUPTED;
	return read_range(tx->v, geom_file_blk(&tx->v->sb, ptr & PTR_BLOCK_MASK), buf, len);
}

/* One piece of a data request: [off, off+len) of the file maps to device
 * address dev (0: a hole or a block still to be zeroed: reads as zeros). */
struct piece {
	uint64_t dev;
	size_t len;
};

#define MAX_PIECES 16

/* Looks up the pieces of [off, off+len) (v->mu held).  Returns how many (the
 * request may be cut short at MAX_PIECES: the caller loops), or -errno. */
static int map_pieces(struct fmap *fm, uint64_t off, size_t len, struct piece *p)
{
	VOL_HELD(fm->tx->v);
	struct lunfs_vol *v = fm->tx->v;
	uint64_t bs = v->sb.file_bs;
	int n = 0;
	for (size_t done = 0; done < len && n < MAX_PIECES; n++) {
		uint64_t pos = off + done, lblk = pos / bs, boff = pos % bs, ptr;
		size_t k = bs - boff < len - done ? bs - boff : len - done;
		int r = fmap_get(fm, lblk, &ptr);
		if (r)
			return r;
		uint64_t blk = ptr & PTR_BLOCK_MASK;
		if (ptr && blk >= v->sb.file_blocks)
			return -EFSCORRUPTED;
		p[n].dev = !ptr || (ptr & PTR_TBZ) ? 0 : geom_file_blk(&v->sb, blk) + boff;
		p[n].len = k;
		done += k;
	}
	return n;
}

/* The fast lookup of the data path: the pieces of [off, off+len) from the
 * open file's cache alone, under its map lock (of->mapmu), without v->mu,
 * no transaction, no I/O.  The caller is registered as a data I/O first
 * (io_enter_fast), so a block seen mapped here is not freed before its
 * io_exit: a free that starts later waits for it (tx_drain), one under way
 * made the registration fail.  A write marks the times.  Returns the
 * number of pieces, all mapped (the caller does the I/O, then io_exit), or
 * 0, not registered: something is not cached or not mapped, or lies past
 * the size, or blocks are being freed; the caller goes the slow way. */
static int map_cached(struct lunfs_file *f, uint64_t off, size_t len, int write, struct piece *p)
{
	struct lunfs_vol *v = f->v;
	struct ofile *of = f->of;
	uint64_t bs = v->sb.file_bs;
	int n = 0;
	if (!len || off + len < off || io_enter_fast(v))
		return 0;
	pthread_mutex_lock(&of->mapmu);
	if (!of->h || of->handed_off || !of->size_ok || !of->mapc || off + len > of->size)
		goto out;
	for (size_t done = 0; done < len; n++) {
		uint64_t pos = off + done, lblk = pos / bs, boff = pos % bs;
		size_t k = bs - boff < len - done ? bs - boff : len - done;
		const struct mapc *c = &of->mapc[lblk % MAPC_SIZE];
		if (n == MAX_PIECES || c->lblk1 != lblk + 1 || !c->ptr || (c->ptr & PTR_FLAGS_MASK) ||
		    (c->ptr & PTR_BLOCK_MASK) >= v->sb.file_blocks) {
			n = 0;
			goto out;
		}
		p[n] = (struct piece){geom_file_blk(&v->sb, c->ptr & PTR_BLOCK_MASK) + boff, k};
		done += k;
	}
	if (write) {
		ino_now(&of->mtime);
		of->times_dirty = 1;
	}
out:
	pthread_mutex_unlock(&of->mapmu);
	if (!n)
		io_exit(v);
	return n;
}

/* file_pread's lookup under v->mu (fm's transaction): the pieces of the
 * request from off + done, the request cut to the size (*len) on the
 * first round.  Returns their number (0: nothing left to read), registered
 * as data I/O unless *again is set (io_enter waited for blocks being freed:
 * look again), or -errno. */
static int pread_map(struct fmap *fm, uint64_t off, size_t *len, size_t done, struct piece *p,
		     int *again)
{
	uint64_t size;
	int n = 0, r = fmap_size(fm, &size);
	if (r)
		return r;
	if (done == 0)
		*len = off >= size ? 0 : *len > size - off ? size - off : *len;
	if (done < *len && (n = map_pieces(fm, off + done, *len - done, p)) < 0)
		return n;
	/* A mapped block's contents belong to this file while we hold
	 * its map; the read itself needs no metadata lock, only that
	 * the block is not freed meanwhile (io_enter).  Never registered
	 * by a run that will start over (tx_retry). */
	*again = n && !fm->tx->need.kind && io_enter(fm->tx->v);
	return n;
}

/* pread_map as one run of a restartable transaction (its map blocks read
 * without v->mu: tx_retry). */
static int pread_map_in(struct txn *tx, struct ofile *of, uint64_t off, size_t *len, size_t done,
			struct piece *p, int *again)
{
	struct fmap fm = {tx, of, NULL, 0};
	int n = pread_map(&fm, off, len, done, p, again);
	free(fm.in);
	return n;
}

ssize_t file_pread(struct lunfs_file *f, void *buf, size_t len, uint64_t off)
{
	struct lunfs_vol *v = f->v;
	struct piece p[MAX_PIECES];
	size_t done = 0;
	/* A fenced host's mappings may point at blocks other hosts have since
	 * freed and reused: it reads nothing more. */
	int r = lunfs_fenced(v);
	if (r)
		return r;
	int n = map_cached(f, off, len, 0, p);
	if (n) {
		for (int i = 0; i < n && !r; i++) {
			r = read_range(v, p[i].dev, (char *)buf + done, p[i].len);
			done += p[i].len;
		}
		io_exit(v);
		return r ? r : (ssize_t)len;
	}
	while (!r) {
		struct txn tx;
		/* the inode is loaded (and allocated) only when the open file's
		 * cache cannot answer: reads of cached mappings do no allocation
		 * and no metadata I/O */
		int again = 0;
		TX_RUN(v, &tx, n, pread_map_in(&tx, f->of, off, &len, done, p, &again));
		r = n < 0 ? n : 0;
		tx_end(&tx, r);
		if (again)
			continue; /* blocks were freed meanwhile: look again */
		if (r || !n)
			break;
		for (int i = 0; i < n && !r; i++) {
			if (!p[i].dev)
				memset((char *)buf + done, 0, p[i].len);
			else
				r = read_range(v, p[i].dev, (char *)buf + done, p[i].len);
			done += p[i].len;
		}
		io_exit(v);
	}
	return r ? r : (ssize_t)len;
}

/* lunfs_seek_hole_data under tx: the offset in *pos, or -errno */
static int seek_in(struct txn *tx, struct ofile *of, uint64_t off, int whence, int64_t *pos)
{
	uint64_t bs = tx->v->sb.file_bs, size = 0;
	struct fmap fm = {tx, of, NULL, 0};
	int r = fmap_size(&fm, &size);
	if (r || (r = off >= size ? -ENXIO : 0))
		goto out;
	/* no data block from off on: ENXIO; no hole: the end of the file */
	r = whence == LUNFS_SEEK_DATA ? -ENXIO : 0;
	*pos = size;
	for (uint64_t lblk = off / bs; lblk * bs < size; lblk++) {
		uint64_t ptr;
		int e = fmap_get(&fm, lblk, &ptr);
		if (e) {
			r = e;
			break;
		}
		if ((ptr && !(ptr & PTR_TBZ)) == (whence == LUNFS_SEEK_DATA)) {
			*pos = lblk * bs > off ? lblk * bs : off;
			r = 0;
			break;
		}
	}
out:
	free(fm.in);
	return r;
}

int64_t lunfs_seek_hole_data(struct lunfs_file *f, uint64_t off, int whence)
{
	struct txn tx;
	int64_t pos = 0;
	int r;
	if (whence != LUNFS_SEEK_DATA && whence != LUNFS_SEEK_HOLE)
		return -EINVAL;
	TX_RUN(f->v, &tx, r, seek_in(&tx, f->of, off, whence, &pos));
	tx_end(&tx, r);
	return r ? r : pos;
}

/* pwrite_mapped's lookup when the open file's cache alone cannot answer:
 * under v->mu, loading what is missing into the cache (map_write_in, a
 * restartable transaction: a map block not cached is read without v->mu).
 * Returns the number of pieces, registered as data I/O (io_enter), -EAGAIN
 * when the slow path must decide, or -errno. */
static int map_write_in(struct txn *tx, struct lunfs_file *f, uint64_t off, size_t len,
			struct piece *p)
{
	struct lunfs_vol *v = tx->v;
	int r = 0, n = 0;
	struct fmap fm = {tx, f->of, NULL, 0};
	uint64_t size;
	/* the size from the open file's cache (loaded once under the pinned
	 * lock): a write past it changes the inode, the slow path's job */
	if (!f->of->h || (r = fmap_size(&fm, &size)) || off + len > size) {
		r = r ? r : -EAGAIN;
		goto out;
	}
	if ((r = of_handed_off(f->of)))
		goto out;
	if ((n = map_pieces(&fm, off, len, p)) < 0) {
		r = n;
		goto out;
	}
	size_t mapped = 0;
	for (int i = 0; i < n && p[i].dev; i++)
		mapped += p[i].len;
	if (mapped != len) {
		r = -EAGAIN;
		goto out;
	}
	if (tx->need.kind) {
		r = -ERESTART_TX; /* a run that starts over registers nothing */
		goto out;
	}
	if ((r = io_enter(v)))
		goto out; /* -EAGAIN: blocks were freed meanwhile: the slow path looks again */
	struct lunfs_time now;
	ino_now(&now);
	of_touch(f->of, &now);
out:
	free(fm.in);
	return r ? r : n;
}

static int map_write_locked(struct lunfs_file *f, uint64_t off, size_t len, struct piece *p)
{
	struct txn tx;
	int r;
	TX_RUN(f->v, &tx, r, map_write_in(&tx, f, off, len, p));
	tx_end(&tx, 0);
	return r;
}

/* The fast path of lunfs_pwrite: every piece of the request is an allocated
 * block inside the file's size, so nothing but the times changes and the
 * device writes run outside v->mu (the lookup too, when the open file's
 * cache answers: map_cached).  Returns the bytes written, -EAGAIN when the
 * slow path must decide (a hole, a block to be zeroed, past the end), or
 * -errno. */
static ssize_t pwrite_mapped(struct lunfs_file *f, const void *buf, size_t len, uint64_t off)
{
	struct lunfs_vol *v = f->v;
	struct piece p[MAX_PIECES];
	size_t done = 0;
	int r = 0;
	/* a partial sector is read, changed and written back: one at a time */
	uint32_t lbs = dev_lbs(v->d);
	int rmw = off % lbs || len % lbs; /* an unaligned buffer is only copied */
	if (rmw)
		pthread_mutex_lock(&f->mu);
	int n = map_cached(f, off, len, 1, p);
	if (!n && (n = map_write_locked(f, off, len, p)) < 0) {
		r = n;
		goto out;
	}
	for (int i = 0; i < n && !r; i++) {
		r = write_range(v, p[i].dev, (const char *)buf + done, p[i].len, 0);
		done += p[i].len;
	}
	io_exit(v);
out:
	if (rmw)
		pthread_mutex_unlock(&f->mu);
	return r ? r : (ssize_t)len;
}

/* One piece of a write that changes metadata: [boff, boff + len) of file
 * block lblk from src, written in place at dev, or into a block being
 * exposed (fill >= 0: g->fill[fill]). */
struct wpiece {
	uint64_t dev, boff;
	size_t len;
	const char *src;
	int fill;
};

/* Registers the chunk as a pending write g (not once the open is handed
 * off: -errno, g never registered) and looks it up: every hole it
 * touches gets a reserved block, every to-be-zeroed block a fill, and the
 * mapped pieces are to be written in place.  v->mu held (tx).  Returns 0
 * with *np pieces (g is WRITING), 1 when the chunk turned out to change no
 * metadata (mapped and inside the size, since pwrite_mapped looked: a plain
 * overwrite; g is gone), or -errno (g is gone, nothing reserved). */
static int chunk_map(struct txn *tx, struct lunfs_file *f, struct gwrite *g, const char *buf,
		     size_t len, uint64_t off, struct wpiece *p, int *np)
{
	struct lunfs_vol *v = tx->v;
	struct ofile *of = f->of;
	VOL_HELD(v);
	uint64_t bs = v->sb.file_bs, size;
	struct fmap fm = {tx, of, NULL, 0};
	int r, n = 0;
	if ((r = of_handed_off(of)))
		return r;
	g->of = of;
	g->lblk0 = off / bs;
	g->lblk1 = (off + len - 1) / bs + 1;
	g->end = off + len;
	gw_add(v, g); /* from here, nothing else changes this range's map */
	/* the inode lock first (the open's, pinned: no wait), so that a
	 * cluster lock taken below never waits with v->mu dropped for another
	 * host */
	if ((r = tx_lock(tx, geom_ino_lock(&v->sb, of->ino), geom_ino_blk(&v->sb, of->ino),
			 LK_EXCLUSIVE)) ||
	    (r = fmap_size(&fm, &size)))
		goto out;
	for (size_t done = 0; done < len; n++) {
		uint64_t pos = off + done, lblk = pos / bs, boff = pos % bs, ptr, blk;
		size_t k = bs - boff < len - done ? bs - boff : len - done;
		if ((r = fmap_get(&fm, lblk, &ptr)))
			goto out;
		blk = ptr & PTR_BLOCK_MASK;
		if (ptr && blk >= v->sb.file_blocks) {
			r = -EFSCORRUPTED;
			goto out;
		}
		p[n] = (struct wpiece){0, boff, k, buf + done, -1};
		if (ptr && !(ptr & PTR_TBZ)) {
			p[n].dev = geom_file_blk(&v->sb, blk) + boff;
		} else {
			if (!ptr && (r = blk_reserve(tx, &blk)))
				goto out;
			g->fill[g->nfill] = (struct gfill){lblk, blk, ptr};
			p[n].fill = g->nfill++;
		}
		done += k;
	}
	*np = n;
	if (!g->nfill && off + len <= size) {
		struct lunfs_time now;
		ino_now(&now);
		of_touch(of, &now);
		r = 1;
	}
out:
	if (r) {
		gw_drop(v, g, r);
	} else {
		g->state = GW_WRITING;
		pthread_cond_broadcast(&v->gw_cv); /* its range is down to its fills */
	}
	free(fm.in);
	return r;
}

/* A write into holes, to-be-zeroed blocks or past the end, of at most
 * GW_BLOCKS file blocks.  Under v->mu: reserve and register (chunk_map);
 * outside it: write the data, the blocks being exposed whole (the rest
 * zeroed); then wait for the group commit that makes the new pointers and
 * the size durable (fill.c).  Returns 0 or -errno. */
static int pwrite_chunk(struct lunfs_file *f, const char *buf, size_t len, uint64_t off)
{
	struct lunfs_vol *v = f->v;
	uint64_t bs = v->sb.file_bs;
	struct wpiece p[GW_BLOCKS];
	struct txn tx;
	int n = 0, r;
	struct gwrite *g = calloc(1, sizeof(*g));
	if (!g)
		return -ENOMEM;
	lunfs_cond_init(&g->cv); /* gw_gather's timed wait: CLOCK_MONOTONIC */
	uint32_t lbs = dev_lbs(v->d);
	int rmw = off % lbs || len % lbs; /* as in pwrite_mapped */
	if (rmw)
		pthread_mutex_lock(&f->mu);
	/* the clusters its holes' blocks may come from, locked and read
	 * without v->mu (chunk_map reserves under it) */
	int polled = alloc_prefetch(v, RC_FILE, (off + len - 1) / bs - off / bs + 1);
again:
	tx_begin(v, &tx);
	tx.grow_polled = polled;
	gw_wait_ready(v, f->of, off / bs, (off + len - 1) / bs + 1);
	r = chunk_map(&tx, f, g, buf, len, off, p, &n);
	int inplace = 0;
	for (int i = 0; r >= 0 && i < n; i++)
		inplace |= p[i].fill < 0;
	/* the blocks written in place are not freed meanwhile; if io_enter
	 * had to wait for a transaction that freed blocks, the pieces may be
	 * stale: give everything back (reservations are in memory only) and
	 * map again */
	if (r >= 0 && inplace && io_enter(v)) {
		if (r == 0)
			gw_drop(v, g, -EAGAIN);
		tx_end(&tx, 0);
		pthread_cond_destroy(&g->cv);
		memset(g, 0, sizeof(*g));
		lunfs_cond_init(&g->cv);
		n = 0;
		goto again;
	}
	tx_end(&tx, r < 0 ? r : 0);
	int registered = r == 0;
	if (r < 0)
		inplace = n = 0;
	r = r < 0 ? r : 0;
	for (int i = 0; !r && i < n; i++) {
		if (p[i].fill < 0)
			r = write_range(v, p[i].dev, p[i].src, p[i].len, 0);
		else
			r = fill_block(v, g->fill[p[i].fill].blk, p[i].boff, p[i].src, p[i].len);
	}
	if (inplace)
		io_exit(v);
	if (rmw)
		pthread_mutex_unlock(&f->mu);
	if (registered)
		r = gw_finish(v, g, r);
	pthread_cond_destroy(&g->cv);
	free(g);
	return r;
}

ssize_t file_pwrite(struct lunfs_file *f, const void *buf, size_t len, uint64_t off)
{
	struct lunfs_vol *v = f->v;
	uint64_t bs = v->sb.file_bs;
	int r;
	if (!mode_writable(f->mode))
		return -EBADF;
	if ((r = vol_check_writable(v)) || (r = of_handed_off(f->of)))
		return r;
	if (off + len < off || off + len > bmap_max_units() * bs)
		return -EFBIG;
	if (!len)
		return 0;
	ssize_t fast = pwrite_mapped(f, buf, len, off);
	if (fast != -EAGAIN)
		return fast;
	/* a hole, a block to be zeroed, or growth: metadata changes, which
	 * multi-writer files never take */
	if (f->mode == LUNFS_OPEN_MULTI)
		return -EPERM;
	size_t done = 0;
	while (done < len) {
		uint64_t pos = off + done, stop = (pos / bs + GW_BLOCKS) * bs;
		size_t n = stop - pos < len - done ? stop - pos : len - done;
		if ((r = pwrite_chunk(f, (const char *)buf + done, n, pos)))
			return done ? (ssize_t)done : r;
		done += n;
	}
	return len;
}

/* The public data path: the work is here, the counting is iostat.c's. */
static ssize_t counted(struct lunfs_file *f, int write, void *buf, size_t len, uint64_t off)
{
	uint64_t t0 = ios_begin(f->v, f->of);
	struct iostat *outer = ios_serve(f->of ? &f->of->io : NULL);
	ssize_t r = write ? file_pwrite(f, buf, len, off) : file_pread(f, buf, len, off);
	ios_serve(outer);
	ios_end(f->v, f->of, write, r, t0);
	return r;
}

ssize_t lunfs_pread(struct lunfs_file *f, void *buf, size_t len, uint64_t off)
{
	return counted(f, 0, buf, len, off);
}

ssize_t lunfs_pwrite(struct lunfs_file *f, const void *buf, size_t len, uint64_t off)
{
	return counted(f, 1, (void *)buf, len, off);
}

struct areq {
	struct lunfs_aio *a;
	int pending;
	int64_t err;
	struct dev_io io[2];
	struct iovec iov[2];
	struct areq *next;
};

struct lunfs_ioq {
	struct lunfs_file *f;
	unsigned depth, inflight;
	struct areq *reqs, *free;
	struct lunfs_aio **done;
	unsigned ndone;
};

int lunfs_ioq_create(struct lunfs_file *f, unsigned depth, struct lunfs_ioq **out)
{
	struct lunfs_vol *v = f->v;
	if (!depth || depth > 128)
		return -EINVAL;
	struct lunfs_ioq *q = calloc(1, sizeof(*q));
	if (!q)
		return -ENOMEM;
	q->reqs = calloc(depth, sizeof(*q->reqs));
	q->done = calloc(depth, sizeof(*q->done));
	if (!q->reqs || !q->done) {
		free(q->reqs);
		free(q->done);
		free(q);
		return -ENOMEM;
	}
	pthread_mutex_lock(&v->mu);
	if (v->ioq_busy) {
		pthread_mutex_unlock(&v->mu);
		free(q->reqs);
		free(q->done);
		free(q);
		return -EBUSY;
	}
	v->ioq_busy = 1;
	pthread_mutex_unlock(&v->mu);
	for (unsigned i = 0; i < depth; i++) {
		q->reqs[i].next = q->free;
		q->free = &q->reqs[i];
	}
	q->f = f;
	q->depth = depth;
	*out = q;
	return 0;
}

/* The device request of a's piece [done, done + len), at boff in the file
 * block ptr points to. */
static void aio_req(const struct lunfs_aio *a, struct dev_io *io, struct iovec *iov,
		    uint64_t dev, size_t done, size_t len, void *priv)
{
	*iov = (struct iovec){(char *)a->buf + done, len};
	*io = (struct dev_io){.op = a->op == LUNFS_AIO_READ ? DEV_OP_READ : DEV_OP_WRITE,
			      .off = dev, .iov = iov, .iovcnt = 1, .priv = priv};
}

/* Registers a's requests as data I/O (a write changes the times), or
 * returns -EAGAIN: io_enter waited for blocks being freed, so what was
 * looked up may be stale.  v->mu held. */
static int aio_enter(struct lunfs_vol *v, struct ofile *of, const struct lunfs_aio *a)
{
	VOL_HELD(v);
	int r = io_enter(v);
	if (r)
		return r;
	if (a->op == LUNFS_AIO_WRITE) {
		struct lunfs_time now;
		ino_now(&now);
		of_touch(of, &now);
	}
	return 0;
}

/* file_aio_map's lookup as one run of a restartable transaction: the map
 * blocks it misses are read without v->mu (tx_retry), and only the run that
 * will not start over registers the requests as data I/O.  Returns the
 * number of device requests, or 0. */
static int aio_map_in(struct txn *tx, struct lunfs_file *f, struct lunfs_aio *a,
		      struct dev_io io[2], struct iovec iov[2], void *priv)
{
	struct lunfs_vol *v = tx->v;
	uint64_t bs = v->sb.file_bs, size;
	struct fmap fm = {tx, f->of, NULL, 0};
	int n = 0;
	if (fmap_size(&fm, &size) || a->off + a->len > size)
		goto out;
	for (size_t done = 0; done < a->len; n++) {
		uint64_t pos = a->off + done, boff = pos % bs, ptr;
		size_t len = bs - boff < a->len - done ? bs - boff : a->len - done;
		if (fmap_get(&fm, pos / bs, &ptr) || !ptr || (ptr & PTR_FLAGS_MASK) ||
		    (ptr & PTR_BLOCK_MASK) >= v->sb.file_blocks) {
			n = 0;
			goto out;
		}
		aio_req(a, &io[n], &iov[n], geom_file_blk(&v->sb, ptr & PTR_BLOCK_MASK) + boff, done,
			len, priv);
		done += len;
	}
	if (tx->need.kind || aio_enter(v, f->of, a))
		n = 0; /* a run that starts over, or blocks freed meanwhile */
out:
	free(fm.in);
	return n;
}

/* Fills io/iov for a: from the open file's cache alone (map_cached), else
 * (unless cached_only) by a restartable lookup.  Returns the number of
 * device requests, or 0: the slow path decides. */
int file_aio_map(struct lunfs_file *f, struct lunfs_aio *a, struct dev_io io[2],
		 struct iovec iov[2], void *priv, int cached_only)
{
	struct lunfs_vol *v = f->v;
	uint64_t bs = v->sb.file_bs;
	struct txn tx;
	int n = 0;
	if (!aligned(v, a->off, a->len, a->buf) || !a->len || lunfs_fenced(v) ||
	    (a->op == LUNFS_AIO_WRITE && (!mode_writable(f->mode) || !f->of->h)) ||
	    (a->off % bs) + a->len > 2 * bs)
		return 0; /* the slow path decides (and refuses a write it must) */
	struct piece p[MAX_PIECES];
	if ((n = map_cached(f, a->off, a->len, a->op == LUNFS_AIO_WRITE, p))) {
		for (int i = 0, done = 0; i < n; done += p[i].len, i++)
			aio_req(a, &io[i], &iov[i], p[i].dev, done, p[i].len, priv);
		return n;
	}
	if (cached_only)
		return 0;
	TX_RUN(v, &tx, n, aio_map_in(&tx, f, a, io, iov, priv));
	tx_end(&tx, 0);
	return n;
}

/* Submits the collected device requests in one call; on failure each of
 * their requests goes the slow (synchronous) way. */
static void flush_batch(struct lunfs_ioq *q, struct dev_io **batch, unsigned *nb,
			struct areq **rqs, unsigned *nr)
{
	struct lunfs_vol *v = q->f->v;
	int writes = 0;
	for (unsigned k = 0; k < *nb; k++)
		writes |= batch[k]->op == DEV_OP_WRITE;
	/* a fenced host goes the slow way, which refuses the writes */
	if (*nb && (!writes || !hb_ok(v->hb)) && dev_submit(v->d, batch, *nb) == (int)*nb) {
		q->inflight += *nr;
	} else {
		for (unsigned k = 0; k < *nr; k++) {
			struct lunfs_aio *a = rqs[k]->a;
			io_exit(v); /* file_aio_map entered it */
			a->res = a->op == LUNFS_AIO_READ ? lunfs_pread(q->f, a->buf, a->len, a->off)
							 : lunfs_pwrite(q->f, a->buf, a->len, a->off);
			q->done[q->ndone++] = a;
			rqs[k]->next = q->free;
			q->free = rqs[k];
		}
	}
	*nb = *nr = 0;
}

int lunfs_ioq_submit(struct lunfs_ioq *q, struct lunfs_aio **ios, unsigned n)
{
	struct lunfs_vol *v = q->f->v;
	struct dev_io *batch[64];
	struct areq *rqs[32];
	unsigned i, nb = 0, nr = 0;
	for (i = 0; i < n; i++) {
		if (!q->free || q->inflight + q->ndone + nr >= q->depth)
			break;
		struct areq *rq = q->free;
		struct lunfs_aio *a = ios[i];
		rq->a = a;
		rq->err = 0;
		if (a->op == LUNFS_AIO_WRITE && vol_check_writable(v)) {
			a->res = vol_check_writable(v);
			q->done[q->ndone++] = a;
			continue;
		}
		int nd = file_aio_map(q->f, a, rq->io, rq->iov, rq, 0);
		if (nd) {
			rq->pending = nd;
			q->free = rq->next;
			for (int k = 0; k < nd; k++)
				batch[nb++] = &rq->io[k];
			rqs[nr++] = rq;
			if (nr == 32)
				flush_batch(q, batch, &nb, rqs, &nr);
			continue;
		}
		flush_batch(q, batch, &nb, rqs, &nr); /* keep the order of writes */
		a->res = a->op == LUNFS_AIO_READ ? lunfs_pread(q->f, a->buf, a->len, a->off)
						 : lunfs_pwrite(q->f, a->buf, a->len, a->off);
		q->done[q->ndone++] = a;
	}
	flush_batch(q, batch, &nb, rqs, &nr);
	return i;
}

int lunfs_ioq_reap(struct lunfs_ioq *q, unsigned min, struct lunfs_aio **out, unsigned max)
{
	struct lunfs_vol *v = q->f->v;
	unsigned got = 0;
	while (got < max && q->ndone)
		out[got++] = q->done[--q->ndone];
	while (got < max && q->inflight && (got < min || 1)) {
		struct dev_io *d[64];
		unsigned want = got < min ? 1 : 0;
		int n = dev_reap(v->d, want, d, 64);
		if (n < 0)
			return got ? (int)got : n;
		if (n == 0)
			break;
		for (int k = 0; k < n; k++) {
			struct areq *rq = d[k]->priv;
			if (d[k]->res < 0)
				rq->err = d[k]->res;
			if (--rq->pending)
				continue;
			rq->a->res = rq->err ? rq->err : (ssize_t)rq->a->len;
			io_exit(v);
			q->inflight--;
			rq->next = q->free;
			q->free = rq;
			if (got < max)
				out[got++] = rq->a;
			else
				q->done[q->ndone++] = rq->a;
		}
	}
	return got;
}

void lunfs_ioq_destroy(struct lunfs_ioq *q)
{
	struct lunfs_aio *sink[64];
	while (q->inflight)
		if (lunfs_ioq_reap(q, 1, sink, 64) <= 0)
			break;
	pthread_mutex_lock(&q->f->v->mu);
	q->f->v->ioq_busy = 0;
	pthread_mutex_unlock(&q->f->v->mu);
	free(q->reqs);
	free(q->done);
	free(q);
}
