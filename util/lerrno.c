#include <stdarg.h>
#include <stdio.h>
#include <syslog.h>
#include <string.h>
#include "util/lerrno.h"

const char *lunfs_strerror(int err)
{
	if (err < 0)
		err = -err;
	switch (err) {
	case EMISCOMPARE:
		return "compare-and-write miscompare";
	case EFSCORRUPTED:
		return "filesystem metadata is corrupt";
	case EFENCED:
		return "host is fenced (heartbeat lost)";
	default:
		return strerror(err);
	}
}

int lunfs_sys_errno(int err)
{
	switch (-err) {
	case EMISCOMPARE:
		return -EAGAIN;
	case EFSCORRUPTED:
		return -EUCLEAN;
	case EFENCED:
		return -EIO;
	default:
		return err;
	}
}

static void (*log_fn)(int prio, const char *msg);

void lunfs_log_set(void (*fn)(int prio, const char *msg))
{
	log_fn = fn;
}

void lunfs_log(int prio, const char *fmt, ...)
{
	char msg[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (log_fn) {
		log_fn(prio, msg);
		return;
	}
	syslog(prio, "%s", msg);
	if (prio <= LOG_ERR)
		fprintf(stderr, "%s\n", msg);
}
