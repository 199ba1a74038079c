/* Geometry computation (mkfs) and address classification. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include "format/geom.h"
#include "util/lerrno.h"

#define KiB 1024ull
#define MiB (1024ull * KiB)

static uint64_t align_up(uint64_t v, uint64_t a)
{
	return (v + a - 1) / a * a;
}

static uint64_t clamp(uint64_t v, uint64_t lo, uint64_t hi)
{
	return v < lo ? lo : v > hi ? hi : v;
}

/* The checks that need no device: every value mkfs.lunfs was given is in
 * its range.  (compute() checks again, and the defaults it derives.) */
int lunfs_geom_check_opts(const struct lunfs_mkfs_opts *o, char *err, size_t errlen)
{
	uint32_t file_bs = o->file_bs ? o->file_bs : 1 * MiB;
	uint32_t hosts = o->max_hosts ? o->max_hosts : 64;
	uint32_t lease = o->lease_ms ? o->lease_ms : 8000;
	uint32_t hb = o->hb_ms ? o->hb_ms : 1000;
	const char *label = o->label ? o->label : "";

	if (file_bs < 64 * KiB || file_bs > 256 * MiB || (file_bs & (file_bs - 1))) {
		snprintf(err, errlen, "file block size %u: must be a power of two from 64K to 256M", file_bs);
		return -EINVAL;
	}
	if (hosts < 1 || hosts > LUNFS_MAX_HOSTS) {
		snprintf(err, errlen, "max hosts %u: must be 1 to %u", hosts, LUNFS_MAX_HOSTS);
		return -EINVAL;
	}
	if (hb < 50 || hb > 60000 || lease < 3 * hb || lease > 600000) {
		snprintf(err, errlen,
			 "lease %u ms / heartbeat %u ms: heartbeat must be 50..60000 ms and the "
			 "lease at least 3 heartbeats and at most 600000 ms", lease, hb);
		return -EINVAL;
	}
	if (strlen(label) > LUNFS_LABEL_LEN) {
		snprintf(err, errlen, "label longer than %u bytes", LUNFS_LABEL_LEN);
		return -EINVAL;
	}
	if (o->jnl_size && (o->jnl_size < 1 * MiB || o->jnl_size > 16ull * 1024 * MiB ||
			    o->jnl_size % LUNFS_META_BS)) {
		snprintf(err, errlen, "journal size %llu: must be a multiple of 4K from 1M to 16G",
			 (unsigned long long)o->jnl_size);
		return -EINVAL;
	}
	if (o->inodes && (o->inodes < 64 || o->inodes > (1ull << 24))) {
		snprintf(err, errlen, "inode count %llu: must be 64 to 16777216", (unsigned long long)o->inodes);
		return -EINVAL;
	}
	return 0;
}

static int compute(const struct lunfs_mkfs_opts *o, uint64_t dev_size, uint32_t lbs,
		   struct lunfs_sb *s, char *err, size_t errlen, int say_min)
{
	uint32_t file_bs = o->file_bs ? o->file_bs : 1 * MiB;
	uint32_t hosts = o->max_hosts ? o->max_hosts : 64;
	uint32_t lease = o->lease_ms ? o->lease_ms : 8000;
	uint32_t hb = o->hb_ms ? o->hb_ms : 1000;
	const char *label = o->label ? o->label : "";

	memset(s, 0, sizeof(*s));
	if (lbs != 512 && lbs != 4096) {
		snprintf(err, errlen, "device logical block size %u is not supported (512 or 4096)", lbs);
		return -EINVAL;
	}
	int r = lunfs_geom_check_opts(o, err, errlen);
	if (r)
		return r;
	uint64_t jnl = o->jnl_size ? o->jnl_size : align_up(clamp(dev_size / hosts / 64, 4 * MiB, 64 * MiB), 64 * KiB);
	if (jnl < 1 * MiB || jnl > 16ull * 1024 * MiB || jnl % LUNFS_META_BS) {
		snprintf(err, errlen, "journal size %llu: must be a multiple of 4K from 1M to 16G",
			 (unsigned long long)jnl);
		return -EINVAL;
	}
	uint64_t size = dev_size & ~(uint64_t)(LUNFS_META_BS - 1);
	/* One inode per MiB, as mke2fs's inode_ratio: a file holds at least one
	 * file block (1 MiB by default), so that is about as many files as the
	 * volume can take.  An inode costs 8 KiB (0.8 % of the space); above
	 * 2^20 (1 TiB) the count stays, which also bounds fsck's inode scan. */
	uint64_t ninodes = o->inodes ? o->inodes : clamp(size / LUNFS_INODE_RATIO, 512, 1u << 20);
	if (ninodes < 64 || ninodes > (1ull << 24)) {
		snprintf(err, errlen, "inode count %llu: must be 64 to 16777216", (unsigned long long)ninodes);
		return -EINVAL;
	}

	s->sector_size = lbs;
	s->meta_bs = LUNFS_META_BS;
	s->file_bs = file_bs;
	s->max_hosts = hosts;
	s->lease_ms = lease;
	s->hb_ms = hb;
	s->fence_margin_ms = lease / 4;
	s->jnl_size = jnl;
	snprintf(s->label, sizeof(s->label), "%s", label);
	s->incompat = LUNFS_INCOMPAT_XATTR_BLOCKS;

	s->hb_off = 64 * KiB;
	s->vlock_off = s->hb_off + (uint64_t)hosts * LUNFS_SLOT_STRIDE;
	s->jnl_off = align_up(s->vlock_off + LUNFS_SLOT_STRIDE, 64 * KiB);

	/* Inode groups: small groups on small volumes so hosts still spread. */
	s->ig_inodes = ninodes <= 16384 ? 64 : 256;
	s->ig_count = (ninodes + s->ig_inodes - 1) / s->ig_inodes;
	/* Meta blocks: 1/256 of the volume, at least 8 MiB. */
	uint64_t meta = clamp(size / 256, 8 * MiB, 1ull << 40) / LUNFS_META_BS;
	s->mc_blocks = clamp(meta / 16 / 64 * 64, 64, RC_MAX_ENTRIES);
	s->mc_count = (meta + s->mc_blocks - 1) / s->mc_blocks;
	s->meta_blocks = (uint64_t)s->mc_count * s->mc_blocks;
	/* File blocks: clusters small enough that every host gets a couple. */
	uint64_t fb_est = size / file_bs;
	s->fc_blocks = clamp(fb_est / (2 * hosts) / 8 * 8, 8, RC_MAX_ENTRIES);
	/* The file-cluster table keeps room for an online grow (lunfs grow) up
	 * to grow_to: 8 KiB per cluster, 1/8192 of the space it may add with
	 * the default 64-block clusters.  The rest of the layout does not move
	 * when the volume grows; the meta-cluster table follows the room. */
	uint64_t grow_to = o->max_size ? o->max_size
				       : clamp(size * LUNFS_GROW_FACTOR, size,
					       size > LUNFS_GROW_DEFAULT_MAX ? size : LUNFS_GROW_DEFAULT_MAX);
	if (grow_to < size) {
		snprintf(err, errlen, "max size %llu: below the device size %llu",
			 (unsigned long long)grow_to, (unsigned long long)size);
		return -EINVAL;
	}
	uint64_t fc_est = grow_to / file_bs / s->fc_blocks + 1;
	if (fc_est > (1ull << 26)) {
		snprintf(err, errlen, "max size %llu: more than 2^26 file clusters",
			 (unsigned long long)grow_to);
		return -EINVAL;
	}

	s->fc_off = align_up(s->jnl_off + (uint64_t)hosts * jnl, 64 * KiB);
	s->mc_off = s->fc_off + fc_est * TBL_ENTRY;
	s->ig_off = s->mc_off + (uint64_t)s->mc_count * TBL_ENTRY;
	s->ino_off = s->ig_off + (uint64_t)s->ig_count * TBL_ENTRY;
	s->meta_off = align_up(s->ino_off + (uint64_t)s->ig_count * s->ig_inodes * TBL_ENTRY, 64 * KiB);
	s->file_off = align_up(s->meta_off + s->meta_blocks * LUNFS_META_BS, file_bs);
	s->backup_off = size - LUNFS_META_BS;
	s->dev_size = size;
	s->root_ino = 1;
	if (size < s->file_off + (uint64_t)LUNFS_MIN_FILE_BLOCKS * file_bs + LUNFS_META_BS) {
		uint64_t min = say_min ? lunfs_geom_min_size(o, lbs) : 0;
		snprintf(err, errlen,
			 "device too small: %llu bytes; with these options lunfs needs at least %llu bytes (%llu MiB)",
			 (unsigned long long)dev_size, (unsigned long long)min,
			 (unsigned long long)(min / MiB));
		return -ENOSPC;
	}
	s->file_blocks = (s->backup_off - s->file_off) / file_bs;
	s->fc_count = (s->file_blocks + s->fc_blocks - 1) / s->fc_blocks;
	return 0;
}

int lunfs_geom_compute(const struct lunfs_mkfs_opts *o, uint64_t dev_size, uint32_t lbs,
		       struct lunfs_sb *s, char *err, size_t errlen)
{
	return compute(o, dev_size, lbs, s, err, errlen, 1);
}

uint64_t lunfs_geom_min_size(const struct lunfs_mkfs_opts *o, uint32_t lbs)
{
	struct lunfs_sb s;
	char e[8];
	uint64_t lo = 1, hi = 1ull << 26; /* in MiB: up to 64 TiB */
	struct lunfs_mkfs_opts oo = *o;
	/* Defaults that scale with the size must not move under the search. */
	if (compute(&oo, hi * MiB, lbs, &s, e, sizeof(e), 0))
		return 0;
	while (lo < hi) {
		uint64_t mid = (lo + hi) / 2;
		if (compute(&oo, mid * MiB, lbs, &s, e, sizeof(e), 0) == 0)
			hi = mid;
		else
			lo = mid + 1;
	}
	return lo * MiB;
}

int lunfs_geom_grow(const struct lunfs_sb *s, uint64_t dev_size, struct lunfs_sb *n,
		    uint64_t *max_size)
{
	uint64_t room = (s->mc_off - s->fc_off) / TBL_ENTRY; /* file-cluster table entries */
	uint64_t size = dev_size & ~(uint64_t)(LUNFS_META_BS - 1);
	if (room > (1ull << 26))
		room = 1ull << 26;
	*max_size = s->file_off + room * s->fc_blocks * s->file_bs + LUNFS_META_BS;
	*n = *s;
	if (size < s->dev_size)
		return -EINVAL;
	n->dev_size = size;
	n->backup_off = size - LUNFS_META_BS;
	n->file_blocks = (n->backup_off - s->file_off) / s->file_bs;
	if (n->file_blocks <= s->file_blocks)
		return -EALREADY;
	n->fc_count = (n->file_blocks + s->fc_blocks - 1) / s->fc_blocks;
	if (n->fc_count > room)
		return -EFBIG;
	n->gen = s->gen + 1;
	n->incompat |= LUNFS_INCOMPAT_GROWN;
	return 0;
}

int lunfs_geom_is_grow(const struct lunfs_sb *s, const struct lunfs_sb *n)
{
	return !memcmp(s->uuid, n->uuid, 16) && n->gen > s->gen && n->dev_size >= s->dev_size &&
	       n->file_blocks >= s->file_blocks && n->fc_count >= s->fc_count &&
	       n->backup_off == n->dev_size - LUNFS_META_BS && s->sector_size == n->sector_size &&
	       s->file_bs == n->file_bs && s->max_hosts == n->max_hosts &&
	       s->lease_ms == n->lease_ms && s->hb_ms == n->hb_ms &&
	       s->fence_margin_ms == n->fence_margin_ms && s->hb_off == n->hb_off &&
	       s->vlock_off == n->vlock_off && s->jnl_off == n->jnl_off &&
	       s->jnl_size == n->jnl_size && s->fc_off == n->fc_off &&
	       s->fc_blocks == n->fc_blocks && s->mc_off == n->mc_off &&
	       s->mc_count == n->mc_count && s->mc_blocks == n->mc_blocks &&
	       s->ig_off == n->ig_off && s->ig_count == n->ig_count &&
	       s->ig_inodes == n->ig_inodes && s->ino_off == n->ino_off &&
	       s->meta_off == n->meta_off && s->meta_blocks == n->meta_blocks &&
	       s->file_off == n->file_off && s->root_ino == n->root_ino;
}

/* addr is in [base, base + n * TBL_ENTRY) and is the body (second) block. */
static int in_table(uint64_t addr, uint64_t base, uint64_t n)
{
	return addr >= base && addr - base < n * TBL_ENTRY && (addr - base) % TBL_ENTRY == LUNFS_META_BS;
}

int geom_is_journaled(const struct lunfs_sb *s, uint64_t addr)
{
	if (addr % LUNFS_META_BS)
		return -EFSCORRUPTED;
	if (in_table(addr, s->fc_off, s->fc_count) || in_table(addr, s->mc_off, s->mc_count) ||
	    in_table(addr, s->ig_off, s->ig_count) || in_table(addr, s->ino_off, geom_ninodes(s)))
		return 0;
	if (addr >= s->meta_off && addr - s->meta_off < s->meta_blocks * LUNFS_META_BS)
		return 0;
	return -EFSCORRUPTED;
}
