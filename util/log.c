#include <stdarg.h>
#include <stdio.h>
#include <syslog.h>
#include "util/log.h"

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
