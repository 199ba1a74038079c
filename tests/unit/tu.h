/* Shared helpers for the unit tests. */
#ifndef LUNFS_TU_H
#define LUNFS_TU_H

#include <check.h>
#include <pthread.h>
#include <stdint.h>
#include "dev/dev.h"
#include "format/geom.h"

/* Creates a sparse temp image of size bytes; returns its malloc'd path. */
char *tu_image(uint64_t size);
/* Opens path with the file backend, failing the test on error. */
struct dev *tu_open(const char *path);
/* Makes a small volume (8 hosts, 1 MiB journals, short leases) on a new
 * image; fills *sb. Returns the path. */
char *tu_volume(uint64_t size, struct lunfs_sb *sb);

/* Runs fsck.lunfs -n (build/bin/fsck.lunfs, or $LUNFS_FSCK) on path;
 * returns its exit status (0: clean). */
int tu_fsck(const char *path);

/* A call run on a thread of its own: for the tests that stall one thread
 * (a frozen device) and look at what the others do meanwhile. */
struct tu_bg {
	int (*fn)(void *arg);
	void *arg;
	int res;
	_Atomic int done;
	pthread_t t;
};
/* Starts fn(arg) on a new thread. */
void tu_bg_start(struct tu_bg *b, int (*fn)(void *), void *arg);
/* Waits up to ms for it to return; returns whether it did. */
int tu_bg_wait(struct tu_bg *b, int ms);
/* Waits for it to return (joins the thread); returns its result. */
int tu_bg_join(struct tu_bg *b);

Suite *ondisk_suite(void);
Suite *dev_suite(void);
Suite *lock_suite(void);
Suite *journal_suite(void);
Suite *raw_suite(void);
Suite *fs_suite(void);
Suite *cluster_suite(void);

#endif
