/* Volume geometry: computed by mkfs from its options and the device, stored
 * in the superblock, and turned into byte addresses here (nowhere else). */
#ifndef LUNFS_GEOM_H
#define LUNFS_GEOM_H

#include <stddef.h>
#include <stdint.h>
#include "format/ondisk.h"

/* mkfs options.  Zero means the default for every field. */
struct lunfs_mkfs_opts {
	const char *label;  /* default "" */
	uint32_t file_bs;   /* default 1 MiB; a power of two, 64 KiB .. 256 MiB */
	uint32_t max_hosts; /* default 64; 1 .. 4096 */
	uint64_t jnl_size;  /* default size/max_hosts/64 within 4 .. 64 MiB; min 1 MiB */
	uint32_t lease_ms;  /* default 8000 */
	uint32_t hb_ms;     /* default 1000; lease must be >= 3 heartbeats */
	uint64_t inodes;    /* default size/LUNFS_INODE_RATIO within 512 .. 2^20;
			       64 .. 2^24 */
	uint64_t max_size;  /* largest size an online grow may reach (room kept in
			       the file-cluster table); default LUNFS_GROW_FACTOR
			       times the size, at most LUNFS_GROW_DEFAULT_MAX (but
			       never below the size); >= the size */
};

#define LUNFS_GROW_FACTOR 16u
#define LUNFS_GROW_DEFAULT_MAX (64ull << 40) /* 64 TiB */

#define LUNFS_MIN_FILE_BLOCKS 16u
#define LUNFS_INODE_RATIO (1024u * 1024u) /* bytes of volume per default inode */

/* Computes the geometry for a device of dev_size bytes with logical block
 * size lbs.  Returns 0, -EINVAL (bad option) or -ENOSPC (device too small),
 * with a one-line message in err. */
/* Checks the ranges of the options alone (no device): 0, or -EINVAL with
 * a message in err. */
int lunfs_geom_check_opts(const struct lunfs_mkfs_opts *o, char *err, size_t errlen);
int lunfs_geom_compute(const struct lunfs_mkfs_opts *o, uint64_t dev_size, uint32_t lbs,
		       struct lunfs_sb *sb, char *err, size_t errlen);
/* The geometry of volume s grown online to dev_size bytes (lunfs grow):
 * only dev_size, backup_off, file_blocks and fc_count change (new file
 * clusters at the end of the file-cluster table), gen + 1, and the
 * LUNFS_INCOMPAT_GROWN bit is set.  *max_size receives the largest size
 * the file-cluster table has room for.  Returns 0 with *n, -EALREADY when
 * dev_size adds no file block, -EINVAL when it is below the volume's size,
 * or -EFBIG when it is above *max_size. */
int lunfs_geom_grow(const struct lunfs_sb *s, uint64_t dev_size, struct lunfs_sb *n,
		    uint64_t *max_size);
/* 1 when n is s grown online (every field but those lunfs_geom_grow
 * changes is equal, and nothing shrank), else 0. */
int lunfs_geom_is_grow(const struct lunfs_sb *s, const struct lunfs_sb *n);
/* Smallest device size (bytes, a multiple of 1 MiB) these options fit, or 0. */
uint64_t lunfs_geom_min_size(const struct lunfs_mkfs_opts *o, uint32_t lbs);

#define TBL_ENTRY (2ull * LUNFS_META_BS) /* lock block + body block */

static inline uint64_t geom_fc_lock(const struct lunfs_sb *s, uint64_t c) { return s->fc_off + c * TBL_ENTRY; }
static inline uint64_t geom_fc_hdr(const struct lunfs_sb *s, uint64_t c) { return geom_fc_lock(s, c) + LUNFS_META_BS; }
static inline uint64_t geom_mc_lock(const struct lunfs_sb *s, uint64_t c) { return s->mc_off + c * TBL_ENTRY; }
static inline uint64_t geom_mc_hdr(const struct lunfs_sb *s, uint64_t c) { return geom_mc_lock(s, c) + LUNFS_META_BS; }
static inline uint64_t geom_ig_lock(const struct lunfs_sb *s, uint64_t g) { return s->ig_off + g * TBL_ENTRY; }
static inline uint64_t geom_ig_hdr(const struct lunfs_sb *s, uint64_t g) { return geom_ig_lock(s, g) + LUNFS_META_BS; }
static inline uint64_t geom_ino_lock(const struct lunfs_sb *s, uint64_t ino) { return s->ino_off + ino * TBL_ENTRY; }
static inline uint64_t geom_ino_blk(const struct lunfs_sb *s, uint64_t ino) { return geom_ino_lock(s, ino) + LUNFS_META_BS; }
static inline uint64_t geom_meta_blk(const struct lunfs_sb *s, uint64_t b) { return s->meta_off + b * LUNFS_META_BS; }
static inline uint64_t geom_file_blk(const struct lunfs_sb *s, uint64_t b) { return s->file_off + b * s->file_bs; }
static inline uint64_t geom_hb(const struct lunfs_sb *s, uint32_t slot) { return s->hb_off + (uint64_t)slot * LUNFS_SLOT_STRIDE; }
static inline uint64_t geom_jnl(const struct lunfs_sb *s, uint32_t slot) { return s->jnl_off + (uint64_t)slot * s->jnl_size; }
static inline uint64_t geom_ninodes(const struct lunfs_sb *s) { return (uint64_t)s->ig_count * s->ig_inodes; }
/* Entries in file cluster c (the last one may be short). */
static inline uint32_t geom_fc_entries(const struct lunfs_sb *s, uint64_t c)
{
	uint64_t left = s->file_blocks - c * s->fc_blocks;
	return left < s->fc_blocks ? (uint32_t)left : s->fc_blocks;
}

/* Returns 0 when addr is a 4 KiB metadata block that the journal may carry
 * (a cluster or inode-group header, an inode, a meta block), else
 * -EFSCORRUPTED.  Lock blocks, heartbeats, journals and the superblock are
 * never journaled. */
int geom_is_journaled(const struct lunfs_sb *s, uint64_t addr);

#endif
