/* The library's log.  fs/lunfs.h repeats lunfs_log_set (see util/lerrno.h). */
#ifndef LUNFS_LOG_H
#define LUNFS_LOG_H

/* Log messages of the library (recovery, fencing, cleanup).  By default
 * they go to syslog, and those of priority LOG_ERR or worse to stderr too.
 * A program that keeps its own log (the FUSE daemon's log=FILE) sets fn. */
void lunfs_log(int prio, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void lunfs_log_set(void (*fn)(int prio, const char *msg));

#endif
