/* Per-host redo journal: transactions, checkpoint, replay.  See jnl.h and
 * docs/FORMAT.md "Journal". */
#include <endian.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>
#include "journal/jnl.h"
#include "util/clock.h"

#define BS LUNFS_META_BS

struct jhdr {
	uint64_t seq, off, gen, mount_gen;
};

/* A committed block image whose home is not written yet. */
struct pend {
	uint64_t target;
	uint8_t *img;
	struct pend *next;
};
#define PEND_BUCKETS 1024
#define PEND_MAX 4096 /* checkpoint beyond this many (16 MiB of images) */

struct jnl {
	struct dev *d;
	struct jnl_geom g;
	struct hb_host *h;
	uint64_t log_base, log_size;  /* log area: after the header block */
	uint64_t head_seq, head_off;  /* where the next transaction goes */
	uint64_t tail_seq, tail_off;  /* as the header says */
	uint64_t hdr_gen;
	struct pend *pend[PEND_BUCKETS]; /* homes to write at the checkpoint */
	unsigned npend, pend_max;
	uint64_t pend_since_ms; /* when the oldest pending image was committed */
	/* The homes a checkpoint under way writes: taken out of pend at its
	 * start (pend then collects what becomes durable meanwhile); a re-read
	 * finds them here until they are home (jnl_pending_copy: pend first,
	 * it is newer).  Changed by the ckmu holder under mu. */
	struct pend *ckpend;
	/* Transactions from jnl_txn_make_room to the end of their journal
	 * write: the caller wrote data that must not be durable before them
	 * (a truncate's tail zeros), so a checkpoint (its flushes) waits. */
	unsigned zeroing;
	/* The write phase (jnl_txn_write) runs without the caller's lock, and
	 * a checkpoint may (jnl_checkpoint: ckmu, one at a time); mu orders
	 * them against the rest.  Under mu: pend and npend (the write phase
	 * adds what became durable), ckpend, broken, write_seq, head_seq and
	 * head_off (changed by a seal, under the caller's lock too), tail_seq
	 * and tail_off (changed by a checkpoint, under ckmu too).  A seal
	 * places its transaction where the live part of the log leaves room
	 * (place): it reads the tail under mu, so a checkpoint under way only
	 * makes it conservative (the tail it moves is still the old one). */
	pthread_mutex_t ckmu;
	pthread_mutex_t mu;
	pthread_cond_t cv;     /* write_seq moved */
	uint64_t write_seq;    /* the sealed transaction whose turn it is: those
				  from write_seq to head_seq - 1 are in flight */
	int broken; /* a commit's write or flush failed: whether it is on disk is
		       unknown, so no further transaction (the next mount's
		       replay decides) */
	struct jnl_counters ctr; /* under mu */
	int no_early;            /* test hook: jnl_room_low says no */
};

struct jnl_txn {
	struct jnl *j;
	int sealed;     /* jnl_txn_seal placed it at pos with seq */
	int preflush;   /* flush the device before the journal write */
	int zeroing;    /* counted in j->zeroing (jnl_txn_make_room) */
	uint64_t seq, pos;
	uint8_t *desc, *cm;
	unsigned n;
	uint64_t targets[JNL_MAX_BLOCKS];
	uint8_t *imgs; /* n * BS, aligned */
};

static int check_geom(struct dev *d, const struct jnl_geom *g)
{
	/* replay writes wherever the disk says: never without a check */
	if (!g->target_ok)
		return -EINVAL;
	if (g->off % BS || g->size % BS || g->size < 8 * BS || g->off + g->size > dev_size(d))
		return -EINVAL;
	return 0;
}

/* Reads and verifies the header.  All zero (as mkfs leaves it) means an empty
 * journal starting at sequence 1, owned by nobody. */
static int read_header(struct dev *d, const struct jnl_geom *g, struct jhdr *jh)
{
	struct lunfs_d_jhdr *hd = dev_alloc(BS);
	if (!hd)
		return -ENOMEM;
	int r = dev_read(d, g->off, hd, BS);
	if (r)
		goto out;
	if (lunfs_is_zero(hd, BS)) {
		*jh = (struct jhdr){.seq = 1};
		goto out;
	}
	r = lunfs_hdr_check(hd, BS, MAGIC_JHDR, g->uuid, g->off, NULL);
	if (r)
		goto out;
	jh->seq = le64toh(hd->tail_seq);
	jh->off = le64toh(hd->tail_off);
	jh->gen = le64toh(hd->h.gen);
	jh->mount_gen = le64toh(hd->mount_gen);
	if (jh->off % BS || jh->off >= g->size - BS || jh->seq == 0)
		r = -EFSCORRUPTED;
out:
	free(hd);
	return r;
}

static int write_header(struct dev *d, const struct jnl_geom *g, const struct jhdr *jh)
{
	struct lunfs_d_jhdr *hd = dev_alloc(BS);
	if (!hd)
		return -ENOMEM;
	hd->tail_seq = htole64(jh->seq);
	hd->tail_off = htole64(jh->off);
	hd->mount_gen = htole64(jh->mount_gen);
	lunfs_hdr_seal(hd, BS, MAGIC_JHDR, g->uuid, g->off, jh->gen, g->slot);
	int r = dev_write(d, g->off, hd, BS);
	free(hd);
	return r;
}

int jnl_reset(struct dev *d, const struct jnl_geom *g, uint64_t seq)
{
	int r = check_geom(d, g);
	if (r)
		return r;
	/* wipe the log too: transactions past a damaged one may carry higher
	 * sequence numbers and must never be replayed */
	if ((r = dev_zero(d, g->off + BS, g->size - BS)))
		return r;
	struct jhdr jh = {.seq = seq ? seq : 1, .gen = 1};
	if ((r = write_header(d, g, &jh)))
		return r;
	return dev_flush(d);
}

/* Reads the transaction with sequence seq at log offset pos into *buf
 * (descriptor, images, commit; allocated).  Returns its block count, or
 * -ENOENT when what is there is not that transaction (the normal end of the
 * log, or a torn write), or -EFSCORRUPTED when a complete transaction names a
 * home replay may not write. */
static int read_txn(struct dev *d, const struct jnl_geom *g, uint64_t base, uint64_t lsize,
		    uint64_t pos, uint64_t seq, uint64_t mount_gen, uint8_t **buf, const char **why,
		    int *torn)
{
	uint8_t *desc = dev_alloc(BS), *all = NULL;
	int r = -ENOENT;
	*buf = NULL;
	if (!desc)
		return -ENOMEM;
	if (pos + 2 * BS > lsize)
		goto out;
	if ((r = dev_read(d, base + pos, desc, BS)))
		goto out;
	r = -ENOENT;
	struct lunfs_d_jdesc *ds = (void *)desc;
	if (lunfs_hdr_check(desc, BS, MAGIC_JDESC, g->uuid, base + pos, NULL) ||
	    le64toh(ds->seq) != seq)
		goto out;
	if (le64toh(ds->mount_gen) != mount_gen) {
		*why = "transaction from another mount (a fenced host's late write)";
		goto out;
	}
	/* From here on the descriptor is ours: a failure is a torn transaction. */
	*torn = 1;
	uint32_t n = le32toh(ds->nblocks);
	if (n == 0 || n > JNL_MAX_BLOCKS || pos + (uint64_t)(n + 2) * BS > lsize) {
		*why = "descriptor with an impossible block count";
		goto out;
	}
	all = dev_alloc((size_t)(n + 2) * BS);
	if (!all) {
		r = -ENOMEM;
		goto out;
	}
	memcpy(all, desc, BS);
	if ((r = dev_read(d, base + pos + BS, all + BS, (size_t)(n + 1) * BS)))
		goto out;
	r = -ENOENT;
	struct lunfs_d_jcommit *cm = (void *)(all + (size_t)(n + 1) * BS);
	uint64_t cpos = base + pos + (uint64_t)(n + 1) * BS;
	if (lunfs_hdr_check(cm, BS, MAGIC_JCOMMIT, g->uuid, cpos, NULL) || le64toh(cm->seq) != seq ||
	    le32toh(cm->nblocks) != n) {
		*why = "transaction without a valid commit record (torn or never committed)";
		goto out;
	}
	if (le64toh(cm->txn_hash) != XXH3_64bits(all, (size_t)(n + 1) * BS)) {
		*why = "transaction checksum mismatch";
		goto out;
	}
	for (uint32_t i = 0; i < n; i++) {
		uint64_t t = le64toh(ds->targets[i]);
		if (t % BS || t + BS > dev_size(d) || g->target_ok(g->arg, t)) {
			*why = "committed transaction names a block outside the metadata areas";
			r = -EFSCORRUPTED;
			goto out;
		}
	}
	*buf = all;
	all = NULL;
	*torn = 0;
	r = n;
out:
	free(desc);
	free(all);
	return r;
}

/* Writes the n block images of the transaction in buf (descriptor first)
 * in place, each after a lease check when the journal has a guard. */
static int apply_txn(struct dev *d, const struct jnl_geom *g, const uint8_t *buf, int n)
{
	const struct lunfs_d_jdesc *ds = (const void *)buf;
	for (int i = 0; i < n; i++) {
		int r = g->guard ? hb_ok(g->guard) : 0;
		if (r || (r = dev_write(d, le64toh(ds->targets[i]), buf + (size_t)(i + 1) * BS, BS)))
			return r;
	}
	return 0;
}

/* The end of a replay that applied: makes the images durable, then
 * retires them with the header nh. */
static int retire(struct dev *d, const struct jnl_geom *g, const struct jhdr *nh)
{
	int r = dev_flush(d);
	if (r)
		return r;
	if (g->guard && (r = hb_ok(g->guard)))
		return r;
	if ((r = write_header(d, g, nh)))
		return r;
	return dev_flush(d);
}

/* The one replay.  With apply, the header is rewritten at the end for the
 * new owner (0 seals the journal; jnl_open passes its own mount_gen). */
static int replay(struct dev *d, const struct jnl_geom *g, int apply, uint64_t new_owner,
		  struct jnl_replay_stats *st, struct jhdr *out)
{
	struct jhdr jh;
	uint64_t seq, pos;
	uint64_t base = g->off + BS, lsize = g->size - BS;
	struct jnl_replay_stats local;
	int r = check_geom(d, g);

	if (!st)
		st = &local;
	memset(st, 0, sizeof(*st));
	if (r)
		return r;
	if ((r = read_header(d, g, &jh))) {
		st->stop = "journal header is damaged";
		return r;
	}
	seq = jh.seq;
	pos = jh.off;
	/* Pass 1, scan and apply in sequence order.  A transaction that did not
	 * fit before the end of the log area starts at offset 0 instead. */
	st->stop = "end of log";
	for (;;) {
		uint8_t *buf;
		const char *why = "end of log";
		int torn = 0, torn0 = 0;
		int n = read_txn(d, g, base, lsize, pos, seq, jh.mount_gen, &buf, &why, &torn);
		if (n == -ENOENT && pos != 0) {
			const char *why0 = why;
			n = read_txn(d, g, base, lsize, 0, seq, jh.mount_gen, &buf, &why0, &torn0);
			if (n >= 0 || n == -EFSCORRUPTED || torn0) {
				pos = 0;
				why = why0;
				torn = torn0;
			}
		}
		if (n == -ENOENT) {
			st->stop = why;
			st->torn = torn;
			break;
		}
		if (n < 0) {
			st->stop = n == -EFSCORRUPTED ? why : "I/O error";
			r = n;
			break;
		}
		r = apply ? apply_txn(d, g, buf, n) : 0;
		free(buf);
		if (r) {
			st->stop = "I/O error while applying";
			break;
		}
		st->txns++;
		st->blocks += n;
		seq++;
		pos += (uint64_t)(n + 2) * BS;
	}
	st->next_seq = seq;
	st->next_off = pos;
	/* Pass 2: make the applied images durable, then retire them and seal
	 * the journal (owner 0: no writer's transactions count any more). */
	if (!r && apply) {
		struct jhdr nh = {.seq = seq, .off = pos >= lsize ? 0 : pos, .gen = jh.gen + 1,
				  .mount_gen = new_owner};
		r = retire(d, g, &nh);
		if (out)
			*out = nh;
	}
	return r;
}

int jnl_replay(struct dev *d, const struct jnl_geom *g, int apply, struct jnl_replay_stats *st)
{
	return replay(d, g, apply, 0, st, NULL);
}

int jnl_open(struct dev *d, const struct jnl_geom *g, struct hb_host *h, struct jnl **out,
	     struct jnl_replay_stats *st)
{
	struct jnl_replay_stats local;
	struct jnl_geom gg = *g;
	struct jhdr jh;
	if (!st)
		st = &local;
	if (!gg.mount_gen && h)
		gg.mount_gen = hb_mount_gen(h);
	if (!gg.mount_gen)
		return -EINVAL; /* 0 is "nobody": a sealed journal's owner */
	/* replay, then take the journal over: from here on only our
	 * transactions count (one header write does both) */
	int r = replay(d, &gg, 1, gg.mount_gen, st, &jh);
	if (r)
		return r;
	struct jnl *j = calloc(1, sizeof(*j));
	if (!j)
		return -ENOMEM;
	j->d = d;
	j->g = gg;
	j->h = h;
	j->pend_max = PEND_MAX;
	j->log_base = gg.off + BS;
	j->log_size = gg.size - BS;
	j->tail_seq = j->head_seq = jh.seq;
	j->tail_off = j->head_off = jh.off;
	j->hdr_gen = jh.gen;
	j->write_seq = jh.seq;
	pthread_mutex_init(&j->ckmu, NULL);
	pthread_mutex_init(&j->mu, NULL);
	pthread_cond_init(&j->cv, NULL);
	*out = j;
	return 0;
}

uint64_t jnl_next_seq(const struct jnl *j)
{
	return j->head_seq;
}

static void pend_list_free(struct pend *p)
{
	while (p) {
		struct pend *n = p->next;
		free(p->img);
		free(p);
		p = n;
	}
}

static struct pend *pend_find(struct pend *p, uint64_t target)
{
	for (; p; p = p->next)
		if (p->target == target)
			return p;
	return NULL;
}

static void pend_free(struct jnl *j)
{
	for (unsigned b = 0; b < PEND_BUCKETS; b++) {
		pend_list_free(j->pend[b]);
		j->pend[b] = NULL;
	}
	j->npend = 0;
}

/* Keeps the newest image of target until the checkpoint. */
static int pend_add(struct jnl *j, uint64_t target, const uint8_t *img)
{
	unsigned b = (target / BS) % PEND_BUCKETS;
	for (struct pend *p = j->pend[b]; p; p = p->next) {
		if (p->target == target) {
			memcpy(p->img, img, BS);
			return 0;
		}
	}
	struct pend *p = calloc(1, sizeof(*p));
	if (!p || !(p->img = dev_alloc(BS))) {
		free(p);
		return -ENOMEM;
	}
	p->target = target;
	memcpy(p->img, img, BS);
	p->next = j->pend[b];
	j->pend[b] = p;
	if (!j->npend++)
		j->pend_since_ms = lunfs_now_ms();
	return 0;
}

int jnl_pending_copy(struct jnl *j, uint64_t target, void *buf)
{
	pthread_mutex_lock(&j->mu);
	const struct pend *p = pend_find(j->pend[(target / BS) % PEND_BUCKETS], target);
	if (!p)
		p = pend_find(j->ckpend, target); /* older: a checkpoint writes it home */
	if (p)
		memcpy(buf, p->img, BS);
	pthread_mutex_unlock(&j->mu);
	return p != NULL;
}

uint64_t jnl_pending_age_ms(struct jnl *j)
{
	pthread_mutex_lock(&j->mu);
	uint64_t age = j->npend ? lunfs_now_ms() - j->pend_since_ms : 0;
	pthread_mutex_unlock(&j->mu);
	return age;
}

int jnl_wait_written_upto(struct jnl *j, uint64_t seq)
{
	pthread_mutex_lock(&j->mu);
	while (j->write_seq < seq && !j->broken)
		pthread_cond_wait(&j->cv, &j->mu);
	int r = j->broken;
	pthread_mutex_unlock(&j->mu);
	return r;
}

int jnl_wait_written(struct jnl *j)
{
	pthread_mutex_lock(&j->mu);
	while (j->write_seq != j->head_seq) /* head_seq: stable under the caller's lock */
		pthread_cond_wait(&j->cv, &j->mu);
	int r = j->broken;
	pthread_mutex_unlock(&j->mu);
	return r;
}

/* Takes every pending home out of pend into ckpend.  mu held. */
static void pend_detach(struct jnl *j)
{
	for (unsigned b = 0; b < PEND_BUCKETS; b++) {
		while (j->pend[b]) {
			struct pend *p = j->pend[b];
			j->pend[b] = p->next;
			p->next = j->ckpend;
			j->ckpend = p;
		}
	}
	j->npend = 0;
}

/* A checkpoint failed: its homes are pending again, but where pend has a
 * newer image of a block.  mu held. */
static void pend_reattach(struct jnl *j)
{
	while (j->ckpend) {
		struct pend *p = j->ckpend;
		unsigned b = (p->target / BS) % PEND_BUCKETS;
		j->ckpend = p->next;
		p->next = NULL;
		if (pend_find(j->pend[b], p->target)) {
			pend_list_free(p);
			continue;
		}
		p->next = j->pend[b];
		j->pend[b] = p;
		if (!j->npend++)
			j->pend_since_ms = lunfs_now_ms();
	}
}

/* The checkpoint proper, ckmu and mu held (mu is dropped): up to the
 * transaction sealed last when it starts (seq, head: where the next one
 * goes).  Seals and journal writes go on meanwhile; what they add stays
 * pending and live, behind the new tail.  A seal meanwhile places its
 * transaction against the old tail (place), so none overwrites what this
 * checkpoint has not retired yet; if the transaction seq itself went to 0
 * (it did not fit at head), the header's tail_off still names head, and
 * replay, finding nothing there, looks for seq at 0 (FORMAT.md). */
static int checkpoint(struct jnl *j)
{
	int r;
	/* every transaction sealed before now durable (or failed): pend then
	 * holds all of them, and the tail may move past them.  A broken
	 * journal is not checkpointed: the locks stay held (a release needs a
	 * checkpoint), and whoever replays it next settles what is on disk */
	uint64_t seq = j->head_seq, head = j->head_off;
	while (j->write_seq < seq)
		pthread_cond_wait(&j->cv, &j->mu);
	r = j->broken;
	if (r || (j->tail_seq == seq && !j->npend)) {
		pthread_mutex_unlock(&j->mu);
		return r;
	}
	pend_detach(j);
	pthread_mutex_unlock(&j->mu);
	if (j->h && (r = hb_ok(j->h)))
		goto fail;
	/* the homes, then a flush, then the tail may move past them */
	for (struct pend *p = j->ckpend; p; p = p->next) {
		if (j->h && (r = hb_ok(j->h)))
			goto fail;
		if ((r = dev_write(j->d, p->target, p->img, BS)))
			goto fail;
	}
	if ((r = dev_flush(j->d)))
		goto fail;
	pthread_mutex_lock(&j->mu);
	pend_list_free(j->ckpend);
	j->ckpend = NULL;
	pthread_mutex_unlock(&j->mu);
	/* a transaction that ended exactly at the end of the log leaves the
	 * head there; the next one starts at 0 (commit wraps after this) */
	uint64_t tail = head >= j->log_size ? 0 : head;
	struct jhdr jh = {.seq = seq, .off = tail, .gen = ++j->hdr_gen,
			  .mount_gen = j->g.mount_gen};
	if ((r = write_header(j->d, &j->g, &jh)))
		return r;
	if ((r = dev_flush(j->d)))
		return r;
	pthread_mutex_lock(&j->mu);
	j->tail_seq = seq;
	j->tail_off = tail;
	pthread_mutex_unlock(&j->mu);
	return 0;
fail:
	pthread_mutex_lock(&j->mu);
	pend_reattach(j);
	pthread_mutex_unlock(&j->mu);
	return r;
}

/* A checkpoint once no transaction but the caller's (own_zeroing: it is
 * counted in j->zeroing) waits to be written after its zeroing.  It never
 * waits for zeroing while it holds ckmu: the transaction it would wait for
 * may itself need ckmu (its seal's checkpoint). */
static int checkpoint_for(struct jnl *j, unsigned own_zeroing)
{
	for (;;) {
		pthread_mutex_lock(&j->mu);
		while (j->zeroing > own_zeroing)
			pthread_cond_wait(&j->cv, &j->mu);
		pthread_mutex_unlock(&j->mu);
		pthread_mutex_lock(&j->ckmu);
		pthread_mutex_lock(&j->mu);
		if (j->zeroing <= own_zeroing)
			break;
		pthread_mutex_unlock(&j->mu);
		pthread_mutex_unlock(&j->ckmu);
	}
	int r = checkpoint(j);
	pthread_mutex_unlock(&j->ckmu);
	return r;
}

int jnl_checkpoint(struct jnl *j)
{
	return checkpoint_for(j, 0);
}

static void jnl_free(struct jnl *j)
{
	pend_free(j);
	pend_list_free(j->ckpend);
	pthread_mutex_destroy(&j->ckmu);
	pthread_mutex_destroy(&j->mu);
	pthread_cond_destroy(&j->cv);
	free(j);
}

int jnl_close(struct jnl *j)
{
	int r = jnl_checkpoint(j);
	jnl_free(j);
	return r;
}

void jnl_abandon(struct jnl *j)
{
	jnl_wait_written(j); /* nobody may still be writing into j */
	jnl_free(j);
}

int jnl_txn_begin(struct jnl *j, struct jnl_txn **out)
{
	struct jnl_txn *t = calloc(1, sizeof(*t));
	if (!t)
		return -ENOMEM;
	t->j = j;
	*out = t;
	return 0;
}

unsigned jnl_txn_count(const struct jnl_txn *t)
{
	return t->n;
}

int jnl_txn_add(struct jnl_txn *t, uint64_t target, const void *blk)
{
	if (target % BS)
		return -EINVAL;
	for (unsigned i = 0; i < t->n; i++) {
		if (t->targets[i] == target) {
			memcpy(t->imgs + (size_t)i * BS, blk, BS);
			return 0;
		}
	}
	if (t->n == JNL_MAX_BLOCKS)
		return -E2BIG;
	/* grow in steps of 16 blocks */
	if (t->n % 16 == 0) {
		uint8_t *ni = dev_alloc((size_t)(t->n + 16) * BS);
		if (!ni)
			return -ENOMEM;
		if (t->imgs)
			memcpy(ni, t->imgs, (size_t)t->n * BS);
		free(t->imgs);
		t->imgs = ni;
	}
	t->targets[t->n] = target;
	memcpy(t->imgs + (size_t)t->n * BS, blk, BS);
	t->n++;
	return 0;
}

void jnl_txn_abort(struct jnl_txn *t)
{
	if (!t)
		return;
	if (t->zeroing) {
		struct jnl *j = t->j;
		pthread_mutex_lock(&j->mu);
		j->zeroing--;
		pthread_cond_broadcast(&j->cv);
		pthread_mutex_unlock(&j->mu);
	}
	free(t->desc);
	free(t->cm);
	free(t->imgs);
	free(t);
}

/* Where a transaction of need bytes goes now (mu held): at the head, or at
 * 0 when it does not fit before the end of the log and [0, need) holds no
 * live transaction.  The live part runs from the tail to the head, and may
 * wrap: [tail_off, head_off) while head_off > tail_off, else [tail_off, L)
 * and [0, head_off).  (The transaction tail_seq may lie at 0 rather than at
 * tail_off, where the header puts it, if it did not fit there.  If the log
 * was empty then, the seal moved tail_off to 0; if not, the placement at 0
 * needed need <= tail_off, so head_off <= tail_off from then on, and the
 * check below keeps every new one below tail_off.)  Returns 0, or -ENOSPC
 * when only a checkpoint (which moves the tail to the head) makes room. */
static int place(const struct jnl *j, uint64_t need, uint64_t *pos)
{
	uint64_t h = j->head_off, t = j->tail_off;
	if (j->tail_seq == j->head_seq) { /* nothing live */
		*pos = h + need <= j->log_size ? h : 0;
		return 0;
	}
	if (h > t) {
		if (h + need <= j->log_size) {
			*pos = h;
			return 0;
		}
		if (need <= t) {
			*pos = 0;
			return 0;
		}
		return -ENOSPC;
	}
	if (h + need <= t) {
		*pos = h;
		return 0;
	}
	return -ENOSPC;
}

static int place_locked(struct jnl *j, uint64_t need, uint64_t *pos)
{
	pthread_mutex_lock(&j->mu);
	int r = place(j, need, pos);
	pthread_mutex_unlock(&j->mu);
	return r;
}

int jnl_room_low(struct jnl *j)
{
	pthread_mutex_lock(&j->mu);
	uint64_t used = j->tail_seq == j->head_seq ? 0 :
			j->head_off > j->tail_off ? j->head_off - j->tail_off :
			j->log_size - j->tail_off + j->head_off;
	int low = !j->broken && !j->no_early && (used > j->log_size / 2 || j->npend > j->pend_max / 2);
	pthread_mutex_unlock(&j->mu);
	return low;
}

void jnl_get_counters(struct jnl *j, struct jnl_counters *c)
{
	pthread_mutex_lock(&j->mu);
	*c = j->ctr;
	pthread_mutex_unlock(&j->mu);
}

/* The checkpoint a seal (or make_room) cannot avoid, counted. */
static int seal_checkpoint(struct jnl *j, unsigned own_zeroing)
{
	pthread_mutex_lock(&j->mu);
	j->ctr.seal_checkpoints++;
	pthread_mutex_unlock(&j->mu);
	return checkpoint_for(j, own_zeroing);
}

static int too_many_pending(struct jnl *j)
{
	pthread_mutex_lock(&j->mu);
	int r = j->npend > j->pend_max;
	pthread_mutex_unlock(&j->mu);
	return r;
}

int jnl_txn_make_room(struct jnl_txn *t)
{
	struct jnl *j = t->j;
	uint64_t need = (uint64_t)(t->n + 2) * BS;
	/* no checkpoint of another thread's starts until t is written (they
	 * wait for zeroing to come down: jnl_txn_abort) */
	pthread_mutex_lock(&j->mu);
	j->zeroing++;
	t->zeroing = 1;
	pthread_mutex_unlock(&j->mu);
	/* nothing sealed before t may flush between the caller's late writes
	 * and t's own journal write */
	int r = jnl_wait_written(j);
	if (r)
		return r;
	/* ... nor the seal's checkpoint for too many pending homes, nor its
	 * wrap (done here, before the caller's writes: the seal's then finds
	 * nothing to write) */
	uint64_t pos;
	if (too_many_pending(j) && (r = seal_checkpoint(j, 1)))
		return r;
	if (need > j->log_size)
		return -E2BIG;
	if (place_locked(j, need, &pos) && (r = seal_checkpoint(j, 1)))
		return r;
	/* ... nor a checkpoint that was already under way: wait it out */
	pthread_mutex_lock(&j->ckmu);
	pthread_mutex_unlock(&j->ckmu);
	return 0;
}

int jnl_txn_seal(struct jnl_txn *t)
{
	struct jnl *j = t->j;
	uint64_t need = (uint64_t)(t->n + 2) * BS;
	int r;
	if (t->sealed)
		return -EINVAL;
	pthread_mutex_lock(&j->mu);
	r = j->broken;
	pthread_mutex_unlock(&j->mu);
	if (r || t->n == 0)
		return r;
	if (need > j->log_size)
		return -E2BIG;
	/* too many homes pending: write them before this one adds more (not
	 * after jnl_txn_make_room: it did, before the caller's zeroing) */
	if (!t->zeroing && too_many_pending(j) && (r = seal_checkpoint(j, 0)))
		return r;
	/* Room: after the head, or from 0 when it does not fit before the end
	 * and the live part leaves [0, need) free (place); only when neither,
	 * a checkpoint first.  The fs layer's linger thread checkpoints when
	 * half the log is live (jnl_room_low), without the caller's lock, so
	 * that a seal rarely has to. */
	uint64_t pos;
	if (place_locked(j, need, &pos)) {
		if ((r = seal_checkpoint(j, t->zeroing)))
			return r;
		/* under the caller's lock no other seal came: the log is empty */
		if (place_locked(j, need, &pos))
			return -ENOSPC;
	}
	pthread_mutex_lock(&j->mu);
	if (pos == 0 && j->head_off != 0 && j->tail_seq != j->head_seq)
		j->ctr.wraps++; /* live transactions stay at the end of the log */
	pthread_mutex_unlock(&j->mu);
	if (j->h && (r = hb_ok(j->h)))
		return r;
	t->desc = dev_alloc(BS);
	t->cm = dev_alloc(BS);
	XXH3_state_t *xs = XXH3_createState();
	if (!t->desc || !t->cm || !xs) {
		XXH3_freeState(xs);
		return -ENOMEM;
	}
	uint64_t seq = j->head_seq;
	struct lunfs_d_jdesc *ds = (void *)t->desc;
	ds->seq = htole64(seq);
	ds->nblocks = htole32(t->n);
	ds->mount_gen = htole64(j->g.mount_gen);
	for (unsigned i = 0; i < t->n; i++)
		ds->targets[i] = htole64(t->targets[i]);
	lunfs_hdr_seal(ds, BS, MAGIC_JDESC, j->g.uuid, j->log_base + pos, seq, j->g.slot);
	XXH3_64bits_reset(xs);
	XXH3_64bits_update(xs, t->desc, BS);
	XXH3_64bits_update(xs, t->imgs, (size_t)t->n * BS);
	struct lunfs_d_jcommit *c = (void *)t->cm;
	c->seq = htole64(seq);
	c->nblocks = htole32(t->n);
	c->txn_hash = htole64(XXH3_64bits_digest(xs));
	XXH3_freeState(xs);
	uint64_t cpos = j->log_base + pos + (uint64_t)(t->n + 1) * BS;
	lunfs_hdr_seal(c, BS, MAGIC_JCOMMIT, j->g.uuid, cpos, seq, j->g.slot);
	/* the room is ours: the next transaction goes after it */
	t->seq = seq;
	t->pos = pos;
	t->sealed = 1;
	pthread_mutex_lock(&j->mu); /* the waiters and a checkpoint read them under it */
	/* An empty log whose transaction goes to 0 (it did not fit at the
	 * tail): the live part starts at 0 now, whatever the header says
	 * (replay, finding nothing at tail_off, looks at 0), so that the
	 * next ones stay below the end of this one and never reach it */
	if (j->tail_seq == j->head_seq && pos == 0)
		j->tail_off = 0;
	j->head_seq++;
	j->head_off = pos + need;
	pthread_mutex_unlock(&j->mu);
	return 0;
}

void jnl_txn_preflush(struct jnl_txn *t)
{
	t->preflush = 1;
}

int jnl_txn_write(struct jnl_txn *t)
{
	struct jnl *j = t->j;
	int r;
	if (!t->sealed) {
		jnl_txn_abort(t);
		return 0; /* nothing to write (empty, or the seal failed and the
			     caller reported that) */
	}
	/* one writer at a time, in sequence order: a transaction is reported
	 * durable only when every one sealed before it is, since it may build
	 * on them (replay stops at the first gap) */
	pthread_mutex_lock(&j->mu);
	while (j->write_seq != t->seq)
		pthread_cond_wait(&j->cv, &j->mu);
	r = j->broken;
	pthread_mutex_unlock(&j->mu);
	/* the turn is ours: no other thread writes the log meanwhile */
	if (!r && j->h)
		r = hb_ok(j->h);
	if (!r && t->preflush)
		r = dev_flush(j->d); /* data a new pointer exposes, before it */
	struct iovec v[3] = {{t->desc, BS}, {t->imgs, (size_t)t->n * BS}, {t->cm, BS}};
	if (!r && !(r = dev_writev(j->d, j->log_base + t->pos, v, 3)))
		r = dev_flush(j->d);
	pthread_mutex_lock(&j->mu);
	if (r) {
		/* on disk or not, we cannot tell; and every transaction sealed
		 * after this one (its room is reserved behind ours) would leave
		 * a gap: stop here (the callers' caches are dropped; a replay at
		 * the next mount settles it) */
		if (!j->broken)
			j->broken = r;
		/* no further commit can succeed: this host stops writing (its
		 * heartbeat stops, the write guard refuses), so that a survivor,
		 * or this host's next mount, replays the journal and frees its
		 * locks */
		if (j->h)
			hb_fence_self(j->h, "a journal write or its flush failed");
	} else {
		/* Durable from here: replay would redo it.  The homes are
		 * written at the checkpoint (lock release, log wrap, unmount),
		 * once per block however many transactions touched it. */
		for (unsigned i = 0; i < t->n; i++) {
			if (!pend_add(j, t->targets[i], t->imgs + (size_t)i * BS) || j->broken)
				continue;
			/* a home not remembered (no memory): only a replay
			 * brings it home (written here, it could race an older
			 * image a checkpoint writes without our lock) */
			j->broken = -ENOMEM;
			if (j->h)
				hb_fence_self(j->h, "out of memory for a journal home");
		}
	}
	j->write_seq++;
	pthread_cond_broadcast(&j->cv);
	pthread_mutex_unlock(&j->mu);
	jnl_txn_abort(t);
	return r; /* the contract: durable is success, whatever follows */
}

int jnl_txn_commit(struct jnl_txn *t)
{
	int r = jnl_txn_seal(t);
	if (r) {
		jnl_txn_abort(t);
		return r;
	}
	return jnl_txn_write(t);
}

void jnl_test_no_early_checkpoints(struct jnl *j)
{
	pthread_mutex_lock(&j->mu);
	j->no_early = 1;
	pthread_mutex_unlock(&j->mu);
}

void jnl_test_set_pend_max(struct jnl *j, unsigned n)
{
	j->pend_max = n;
}
