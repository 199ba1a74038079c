/* The clock every lease and timeout is measured on. */
#ifndef LUNFS_CLOCK_H
#define LUNFS_CLOCK_H

#include <pthread.h>
#include <stdint.h>
#include <time.h>

/* Monotonic clock in milliseconds. */
uint64_t lunfs_now_ms(void);

/* A condition variable timed on the monotonic clock, and the absolute
 * deadline ms from now for pthread_cond_timedwait on it. */
void lunfs_cond_init(pthread_cond_t *cv);
struct timespec lunfs_deadline(uint64_t ms);

#endif
