/* dev/ for tests only: the faulty wrapper (dev/faulty.c) and the file
 * backend's stall hook.  Not installed; the unit tests, tests/tools and the
 * fuzz harness include it (fs/lunfs_test.h does). */
#ifndef LUNFS_DEV_FAULTY_H
#define LUNFS_DEV_FAULTY_H

#include "dev/dev.h"

/* The faulty wrapper.  dev_faulty_wrap takes ownership of inner. */
struct dev_fault {
	uint64_t fail_io;    /* fail the Nth I/O (1-based, all kinds) with -EIO; 0 = never */
	uint64_t cut_after;  /* power cut right after write N (1-based): writes since
				the last flush are lost, later I/O gets -EIO; 0 = never */
	uint64_t tear_write; /* write N lands only its first half (rounded to blocks) */
	uint64_t cut_keep_seed; /* at the cut, keep a random (seeded) part of the
				   unflushed writes instead of none; 0 = lose them all */
	uint64_t fail_flush; /* fail the Nth flush (1-based, counting every flush
				since the wrap) with -EIO, writing nothing of what
				it would have made durable; 0 = never */
};
int dev_faulty_wrap(struct dev *inner, struct dev **out);
void dev_faulty_set(struct dev *d, const struct dev_fault *f);
/* Number of writes (including CAWs) seen so far. */
uint64_t dev_faulty_writes(const struct dev *d);
/* Non-zero once the power cut happened. */
int dev_faulty_is_cut(const struct dev *d);
/* Freeze: every I/O blocks until unfrozen (for fencing tests). */
void dev_faulty_freeze(struct dev *d, int frozen);

/* Tests only: when set, the file backend calls it inside the critical
 * section of an emulated CAW, after the compare and before the write guard
 * and the arbiter's last check (a stand-in for a stall or a freeze there). */
extern void (*dev_file_caw_stall)(struct dev *d, uint64_t off);

#endif
