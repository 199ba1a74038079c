/* lunfs error codes.
 *
 * Every lunfs function returns 0 (or a count) on success and a negative
 * errno on failure.  Besides the system errnos we use three of our own,
 * chosen above the kernel's range so they never collide with one.
 * fs/lunfs.h, which stands alone, repeats the codes and the two functions;
 * fs/internal.h includes both, so they cannot drift apart.
 */
#ifndef LUNFS_LERRNO_H
#define LUNFS_LERRNO_H

#include <errno.h>

#define LUNFS_ERRBASE 4000
/* Compare-and-write found other bytes than expected. */
#define EMISCOMPARE (LUNFS_ERRBASE + 1)
/* On-disk metadata failed a check (magic, checksum, address, range). */
#define EFSCORRUPTED (LUNFS_ERRBASE + 2)
/* This host lost its heartbeat and must not write any more. */
#define EFENCED (LUNFS_ERRBASE + 3)

/* Like strerror(), but knows the lunfs codes.  Takes a positive or negative
 * code.  Returns a static string. */
const char *lunfs_strerror(int err);

/* Maps a lunfs code to the nearest system errno (for FUSE replies and exit
 * codes).  Takes and returns a negative code. */
int lunfs_sys_errno(int err);

#endif
