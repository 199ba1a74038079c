/* faulty backend: wraps another device to inject failures in tests.
 *
 * It models a volatile write cache: a write goes into an in-memory overlay
 * and reaches the inner device only at the next flush.  A power cut after
 * write N throws the overlay away (optionally keeping a seeded random subset
 * of it, to model reordering in the cache) and fails every later I/O.  Reads
 * see the overlay, as a real cache would.  CAW is done here, under a mutex,
 * against the overlay: the wrapper is for single-process tests.
 */
#include <stdlib.h>
#include <string.h>
#include "dev/dev_impl.h"
#include "dev/faulty.h"

struct pend {
	uint64_t off;
	size_t len;
	char *data;
};

struct faulty_dev {
	struct dev d;
	struct dev *in;
	pthread_mutex_t lock; /* protects everything below */
	pthread_cond_t thaw;
	struct dev_fault cfg;
	uint64_t nio, nwrites, nflush;
	int cut, frozen;
	struct pend *p;
	size_t np, pcap;
};

static struct faulty_dev *FY(struct dev *d)
{
	return (struct faulty_dev *)d;
}

/* Counts one I/O and says whether it must fail.  Called with the lock held. */
static int enter_io(struct faulty_dev *f)
{
	while (f->frozen)
		pthread_cond_wait(&f->thaw, &f->lock);
	if (f->cut)
		return -EIO;
	f->nio++;
	if (f->cfg.fail_io && f->nio == f->cfg.fail_io)
		return -EIO;
	return 0;
}

static int overlay_add(struct faulty_dev *f, uint64_t off, const struct iovec *iov, int iovcnt,
		       size_t len)
{
	if (f->np == f->pcap) {
		size_t cap = f->pcap ? f->pcap * 2 : 64;
		struct pend *np = realloc(f->p, cap * sizeof(*np));
		if (!np)
			return -ENOMEM;
		f->p = np;
		f->pcap = cap;
	}
	char *buf = malloc(len ? len : 1);
	if (!buf)
		return -ENOMEM;
	size_t at = 0;
	for (int i = 0; i < iovcnt && at < len; i++) {
		size_t n = iov[i].iov_len < len - at ? iov[i].iov_len : len - at;
		memcpy(buf + at, iov[i].iov_base, n);
		at += n;
	}
	f->p[f->np++] = (struct pend){off, len, buf};
	return 0;
}

static void overlay_drop(struct faulty_dev *f, uint64_t seed)
{
	size_t keep = 0;
	int some = seed != 0;
	for (size_t i = 0; i < f->np; i++) {
		/* splitmix64 step: the same seed keeps the same writes */
		seed += 0x9e3779b97f4a7c15ull;
		uint64_t z = seed;
		z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
		z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
		z ^= z >> 31;
		if (some && (z & 1)) {
			f->p[keep++] = f->p[i];
			continue;
		}
		free(f->p[i].data);
	}
	f->np = keep;
}

/* Writes the overlay through to the inner device.  Lock held. */
static int overlay_apply(struct faulty_dev *f)
{
	int r = 0;
	size_t i;
	for (i = 0; i < f->np && !r; i++) {
		struct iovec v = {f->p[i].data, f->p[i].len};
		void *al = dev_alloc(v.iov_len);
		if (!al) {
			r = -ENOMEM;
			break;
		}
		memcpy(al, v.iov_base, v.iov_len);
		v.iov_base = al;
		r = f->in->ops->rw(f->in, DEV_OP_WRITE, f->p[i].off, &v, 1);
		free(al);
	}
	for (size_t j = 0; j < f->np; j++)
		free(f->p[j].data);
	f->np = 0;
	return r;
}

static int read_through(struct faulty_dev *f, uint64_t off, const struct iovec *iov, int iovcnt)
{
	int r = f->in->ops->rw(f->in, DEV_OP_READ, off, iov, iovcnt);
	if (r)
		return r;
	size_t len = dev_iov_len(iov, iovcnt);
	for (size_t i = 0; i < f->np; i++) {
		struct pend *p = &f->p[i];
		uint64_t lo = p->off > off ? p->off : off;
		uint64_t hi = p->off + p->len < off + len ? p->off + p->len : off + len;
		if (lo >= hi)
			continue;
		/* copy p->data[lo-p->off .. hi-p->off) into the iovecs at lo-off */
		size_t pos = 0;
		for (int k = 0; k < iovcnt; k++) {
			uint64_t vlo = off + pos, vhi = vlo + iov[k].iov_len;
			uint64_t a = lo > vlo ? lo : vlo, b = hi < vhi ? hi : vhi;
			if (a < b)
				memcpy((char *)iov[k].iov_base + (a - vlo), p->data + (a - p->off), b - a);
			pos += iov[k].iov_len;
		}
	}
	return 0;
}

/* One write (or the write half of a CAW).  Lock held, enter_io() done. */
static int write_locked(struct faulty_dev *f, uint64_t off, const struct iovec *iov, int iovcnt)
{
	size_t len = dev_iov_len(iov, iovcnt);
	int r;
	f->nwrites++;
	if (f->cfg.tear_write == f->nwrites) {
		size_t half = len / 2;
		half -= half % f->d.lbs;
		len = half;
	}
	r = overlay_add(f, off, iov, iovcnt, len);
	if (!r && f->cfg.cut_after && f->nwrites >= f->cfg.cut_after) {
		f->cut = 1;
		overlay_drop(f, f->cfg.cut_keep_seed);
	}
	return r;
}

static int faulty_rw(struct dev *d, int op, uint64_t off, const struct iovec *iov, int iovcnt)
{
	struct faulty_dev *f = FY(d);
	pthread_mutex_lock(&f->lock);
	int r = enter_io(f);
	if (r)
		goto out;
	/* again: the freeze was a stall before the last check */
	if (op == DEV_OP_WRITE && (r = dev_guard(d)))
		goto out;
	r = op == DEV_OP_READ ? read_through(f, off, iov, iovcnt) : write_locked(f, off, iov, iovcnt);
out:
	pthread_mutex_unlock(&f->lock);
	return r;
}

static int faulty_flush(struct dev *d)
{
	struct faulty_dev *f = FY(d);
	pthread_mutex_lock(&f->lock);
	int r = enter_io(f);
	if (!r && ++f->nflush == f->cfg.fail_flush)
		r = -EIO;
	if (r || (r = overlay_apply(f)))
		goto out;
	r = f->in->ops->flush(f->in);
out:
	pthread_mutex_unlock(&f->lock);
	return r;
}

static int faulty_caw(struct dev *d, uint64_t off, const void *cmp, const void *data, size_t len,
		      void *cur)
{
	struct faulty_dev *f = FY(d);
	void *buf = dev_alloc(len);
	if (!buf)
		return -ENOMEM;
	pthread_mutex_lock(&f->lock);
	struct iovec v = {buf, len}, w = {(void *)data, len};
	int r = enter_io(f);
	if (r || (r = read_through(f, off, &v, 1)))
		goto out;
	if (memcmp(buf, cmp, len)) {
		if (cur)
			memcpy(cur, buf, len);
		r = -EMISCOMPARE;
		goto out;
	}
	if ((r = dev_guard(d)))
		goto out;
	r = write_locked(f, off, &w, 1);
out:
	pthread_mutex_unlock(&f->lock);
	free(buf);
	return r;
}

static void faulty_close(struct dev *d)
{
	struct faulty_dev *f = FY(d);
	overlay_drop(f, 0);
	free(f->p);
	dev_close(f->in);
	pthread_mutex_destroy(&f->lock);
	pthread_cond_destroy(&f->thaw);
	free(f);
}

static int faulty_size(struct dev *d, uint64_t *size)
{
	struct faulty_dev *f = FY(d);
	int r = dev_refresh_size(f->in);
	*size = dev_size(f->in);
	return r;
}

static const struct dev_ops faulty_ops = {
	.name = "faulty",
	.close = faulty_close,
	.rw = faulty_rw,
	.flush = faulty_flush,
	.caw = faulty_caw,
	.size = faulty_size,
	.submit = dev_sync_submit,
	.reap = dev_sync_reap,
};

int dev_faulty_wrap(struct dev *inner, struct dev **out)
{
	struct faulty_dev *f = calloc(1, sizeof(*f));
	if (!f)
		return -ENOMEM;
	f->in = inner;
	f->d.ops = &faulty_ops;
	f->d.size = inner->size;
	f->d.lbs = inner->lbs;
	f->d.caps = (inner->caps & ~(DEV_CAP_ZERO | DEV_CAP_PR | DEV_CAP_ASYNC_MT)) | DEV_CAP_FAULTY;
	f->d.readonly = inner->readonly;
	f->d.url = malloc(strlen(inner->url ? inner->url : "") + 8);
	if (f->d.url)
		strcpy(stpcpy(f->d.url, "faulty:"), inner->url ? inner->url : "");
	pthread_mutex_init(&f->lock, NULL);
	pthread_cond_init(&f->thaw, NULL);
	*out = &f->d;
	return 0;
}

void dev_faulty_set(struct dev *d, const struct dev_fault *cfg)
{
	struct faulty_dev *f = FY(d);
	pthread_mutex_lock(&f->lock);
	f->cfg = *cfg;
	pthread_mutex_unlock(&f->lock);
}

uint64_t dev_faulty_writes(const struct dev *d)
{
	return ((const struct faulty_dev *)d)->nwrites;
}

int dev_faulty_is_cut(const struct dev *d)
{
	return ((const struct faulty_dev *)d)->cut;
}

void dev_faulty_freeze(struct dev *d, int frozen)
{
	struct faulty_dev *f = FY(d);
	pthread_mutex_lock(&f->lock);
	f->frozen = frozen;
	if (!frozen)
		pthread_cond_broadcast(&f->thaw);
	pthread_mutex_unlock(&f->lock);
}
