/* Small helpers shared by the tools. */
#ifndef LUNFS_UTIL_H
#define LUNFS_UTIL_H

#include <stdint.h>

/* Parses "123", "64K", "1M", "2G", "3T" (powers of 1024).  Returns 0 or
 * -EINVAL. */
int lunfs_parse_size(const char *s, uint64_t *out);
/* Parses a plain unsigned number within [lo, hi].  Returns 0 or -EINVAL. */
int lunfs_parse_u32(const char *s, uint32_t lo, uint32_t hi, uint32_t *out);

#endif
