#include <pthread.h>
#include <stdint.h>
#include <time.h>
#include "util/clock.h"

/* CLOCK_BOOTTIME, not CLOCK_MONOTONIC: it keeps counting while the machine
 * is suspended (or a VM acting as a host is paused, where the guest kernel
 * accounts the pause as suspend), so a host that resumes after a lease sees
 * its lease as expired and fences itself before any write. */
uint64_t lunfs_now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_BOOTTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void lunfs_cond_init(pthread_cond_t *cv)
{
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(cv, &ca);
	pthread_condattr_destroy(&ca);
}

struct timespec lunfs_deadline(uint64_t ms)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	uint64_t ns = ts.tv_nsec + ms * 1000000;
	ts.tv_sec += ns / 1000000000;
	ts.tv_nsec = ns % 1000000000;
	return ts;
}
