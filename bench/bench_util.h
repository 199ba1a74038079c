/* Shared by the benchmark programs. */
#ifndef LUNFS_BENCH_UTIL_H
#define LUNFS_BENCH_UTIL_H

#include <stdarg.h>
#include <stdio.h>

/* A library misbehaviour that does not stop the benchmark: a line
 * "<kind> problem MSG" on stdout, for the report, and "<prog>: MSG" on
 * stderr. */
static inline void __attribute__((format(printf, 3, 4)))
bench_problem(const char *kind, const char *prog, const char *fmt, ...)
{
	char msg[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	printf("%s problem %s\n", kind, msg);
	fflush(stdout);
	fprintf(stderr, "%s: %s\n", prog, msg);
}

#endif
