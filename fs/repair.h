/* Repair entry points for fsck.lunfs (not for other callers). */
#ifndef LUNFS_REPAIR_H
#define LUNFS_REPAIR_H

#include "fs/lunfs.h"

/* Links inode ino into directory dir as name without checking its link
 * count first (fsck reconnects unreachable inodes): a file's nlink grows by
 * one, a directory gets dir as its parent.  Returns 0 or -errno. */
int lunfs_relink(struct lunfs_vol *v, uint64_t dir, const char *name, uint64_t ino);

#endif
