/* The open-file table: the inodes open on this host (struct ofile, one per
 * inode, shared by its handles), their cached size and block map, the times
 * writes left pending, and the wait for writes into holes still pending on
 * an inode.  In memory only, under v->mu, and what the data path's fast
 * lookup reads also under each file's map lock (of->mapmu): the bottom of
 * fs/ (the layers are in docs/CODING.md). */
#include <stdlib.h>
#include <string.h>
#include "fs/internal.h"

struct ofile *of_find(struct lunfs_vol *v, uint64_t ino)
{
	VOL_HELD(v);
	for (struct ofile *of = v->ofiles; of; of = of->next)
		if (of->ino == ino)
			return of;
	return NULL;
}

void of_overlay(struct ofile *of, struct lunfs_stat *st)
{
	pthread_mutex_lock(&of->mapmu);
	if (of->times_dirty)
		st->mtime = st->ctime = (struct timespec){of->mtime.sec, of->mtime.nsec};
	pthread_mutex_unlock(&of->mapmu);
}

static int time_le(const struct lunfs_time *a, const struct lunfs_time *b)
{
	return a->sec < b->sec || (a->sec == b->sec && a->nsec <= b->nsec);
}

void of_clear_times(struct ofile *of, const struct lunfs_time *upto)
{
	pthread_mutex_lock(&of->mapmu);
	if (!upto || time_le(&of->mtime, upto))
		of->times_dirty = 0;
	pthread_mutex_unlock(&of->mapmu);
}

void of_restore_times(struct ofile *of, const struct lunfs_time *t)
{
	pthread_mutex_lock(&of->mapmu);
	if (!of->times_dirty) {
		of->mtime = *t;
		of->times_dirty = 1;
	}
	pthread_mutex_unlock(&of->mapmu);
}

void of_touch(struct ofile *of, const struct lunfs_time *now)
{
	pthread_mutex_lock(&of->mapmu);
	of->mtime = *now;
	of->times_dirty = 1;
	pthread_mutex_unlock(&of->mapmu);
}

int of_times_dirty(struct ofile *of)
{
	pthread_mutex_lock(&of->mapmu);
	int dirty = of->times_dirty;
	pthread_mutex_unlock(&of->mapmu);
	return dirty;
}

int of_take_times(struct ofile *of, struct lunfs_time *t)
{
	pthread_mutex_lock(&of->mapmu);
	int dirty = of->times_dirty;
	*t = of->mtime;
	of->times_dirty = 0;
	pthread_mutex_unlock(&of->mapmu);
	return dirty;
}

void of_invalidate(struct lunfs_vol *v, uint64_t ino)
{
	VOL_HELD(v);
	for (struct ofile *of = v->ofiles; of; of = of->next) {
		if (ino && of->ino != ino)
			continue;
		pthread_mutex_lock(&of->mapmu);
		of->size_ok = 0;
		if (of->mapc)
			memset(of->mapc, 0, MAPC_SIZE * sizeof(*of->mapc));
		pthread_mutex_unlock(&of->mapmu);
	}
}

void of_forget(struct lunfs_vol *v, uint64_t ino, uint64_t lblk)
{
	VOL_HELD(v);
	struct ofile *of = of_find(v, ino);
	if (!of)
		return;
	pthread_mutex_lock(&of->mapmu);
	if (of->mapc && of->mapc[lblk % MAPC_SIZE].lblk1 == lblk + 1)
		of->mapc[lblk % MAPC_SIZE].lblk1 = 0;
	pthread_mutex_unlock(&of->mapmu);
}

void of_set_map(struct ofile *of, uint64_t lblk, uint64_t ptr)
{
	pthread_mutex_lock(&of->mapmu);
	if (of->mapc || (of->mapc = calloc(MAPC_SIZE, sizeof(*of->mapc)))) {
		of->mapc[lblk % MAPC_SIZE] = (struct mapc){lblk + 1, ptr};
	}
	pthread_mutex_unlock(&of->mapmu);
}

void of_set_size(struct ofile *of, uint64_t size)
{
	pthread_mutex_lock(&of->mapmu);
	of->size = size;
	of->size_ok = 1;
	pthread_mutex_unlock(&of->mapmu);
}

void of_set_hold(struct ofile *of, struct held *h, int handed_off)
{
	pthread_mutex_lock(&of->mapmu);
	of->h = h;
	of->handed_off = handed_off;
	pthread_mutex_unlock(&of->mapmu);
}

/* -ESTALE once the file's lock was handed to another host. */
int of_handed_off(const struct ofile *of)
{
	return of->handed_off ? -ESTALE : 0;
}

uint64_t lunfs_file_ino(const struct lunfs_file *f)
{
	return f->of->ino;
}

/* Overlays what an open file on this host has not committed yet (its
 * times) on st, if ino is open here.  v->mu held. */
void of_overlay_stat(struct lunfs_vol *v, struct lunfs_stat *st)
{
	VOL_HELD(v);
	struct ofile *of = of_find(v, st->ino);
	if (of)
		of_overlay(of, st);
}

void gw_wait_ino(struct lunfs_vol *v, uint64_t ino)
{
	VOL_HELD(v);
	VOL_HELD(v);
	for (;;) {
		int busy = 0;
		for (struct gwrite *g = v->gw; g && !busy; g = g->next)
			busy = g->of->ino == ino;
		if (!busy)
			return;
		pthread_cond_wait(&v->gw_cv, &v->mu);
	}
}
