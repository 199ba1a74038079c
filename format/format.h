/* Writing a fresh volume (mkfs) and reading the superblock back. */
#ifndef LUNFS_FORMAT_H
#define LUNFS_FORMAT_H

#include "dev/dev.h"
#include "format/geom.h"

/* Fills uuid with a random (version 4) UUID.  Returns 0 or -errno. */
int lunfs_uuid_gen(uint8_t uuid[16]);
void lunfs_uuid_str(const uint8_t uuid[16], char out[37]);

/* Writes a new volume with geometry sb (uuid and ctime filled by the caller)
 * to d.  Metadata regions are zeroed (cheaply: punch hole, BLKZEROOUT) and
 * only the few initialised structures are written; clusters and inodes stay
 * all-zero, which reads as free.  The primary superblock goes last.
 * Returns 0 or -errno. */
int lunfs_format(struct dev *d, const struct lunfs_sb *sb);

/* Reads the primary superblock, or, when it is damaged or unreadable and
 * fallback is set, the backup.  *used_backup says which one was used.
 * Returns 0, -EFSCORRUPTED / -EPROTONOSUPPORT with *why set, or -errno. */
int lunfs_read_sb(struct dev *d, struct lunfs_sb *sb, int fallback, int *used_backup,
		  const char **why);

/* Prints the geometry, one "key: value" per line. */
void lunfs_print_geometry(const struct lunfs_sb *sb, void *file);

#endif
