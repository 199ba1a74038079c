/* mkfs writer and superblock reader. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include "format/format.h"
#include "util/lerrno.h"

int lunfs_uuid_gen(uint8_t u[16])
{
	if (getrandom(u, 16, 0) != 16)
		return -EIO;
	u[6] = (u[6] & 0x0f) | 0x40; /* version 4 */
	u[8] = (u[8] & 0x3f) | 0x80; /* RFC 4122 variant */
	return 0;
}

void lunfs_uuid_str(const uint8_t u[16], char out[37])
{
	snprintf(out, 37, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x",
		 u[0], u[1], u[2], u[3], u[4], u[5], u[6], u[7], u[8], u[9], u[10], u[11], u[12],
		 u[13], u[14], u[15]);
}

static int write_rc(struct dev *d, const struct lunfs_sb *s, uint64_t hdr_off, uint64_t index,
		    uint32_t kind, uint32_t n, uint64_t first, const uint32_t *used, int nused,
		    void *blk)
{
	struct lunfs_rc rc;
	lunfs_rc_init(&rc, kind, n, first);
	for (int i = 0; i < nused; i++) {
		rc_set(&rc, used[i], 1);
		if (kind != RC_INODE)
			rc.refcnt[used[i]] = 1;
		rc.nfree--;
	}
	rc.gen = 1;
	lunfs_rc_encode(&rc, s->uuid, hdr_off, index, blk);
	return dev_write(d, hdr_off, blk, LUNFS_META_BS);
}

int lunfs_format(struct dev *d, const struct lunfs_sb *s)
{
	uint8_t *blk = dev_alloc(LUNFS_META_BS);
	uint64_t size = s->dev_size;
	int r;
	if (!blk)
		return -ENOMEM;
	/* 1. Wipe everything before the meta-block area (superblock, heartbeats,
	 * journals, cluster and inode tables: all-zero reads as "free") and the
	 * last MiB (old backup superblocks, other filesystems' tail signatures).
	 * Meta blocks need no wipe: a block is read only after it was
	 * allocated and written. */
	struct {
		uint64_t off, len;
	} z[] = {
		{0, s->meta_off},
		{size >= (1 << 20) ? size - (1 << 20) : 0, size >= (1 << 20) ? 1 << 20 : size},
	};
	for (size_t i = 0; i < sizeof(z) / sizeof(z[0]); i++)
		if ((r = dev_zero(d, z[i].off, z[i].len)))
			goto out;
	/* 2. The reserved entries: file block 0 and meta block 0 (pointer value
	 * 0 means a hole), inode 0, and the root directory. */
	const uint32_t zero[] = {0}, inos[] = {0, (uint32_t)s->root_ino, LUNFS_ORPHAN_INO};
	if ((r = write_rc(d, s, geom_fc_hdr(s, 0), 0, RC_FILE, geom_fc_entries(s, 0), 0, zero, 1, blk)))
		goto out;
	if ((r = write_rc(d, s, geom_mc_hdr(s, 0), 0, RC_META, s->mc_blocks, 0, zero, 1, blk)))
		goto out;
	uint32_t g = s->root_ino / s->ig_inodes;
	if (g != 0) {
		r = -EINVAL;
		goto out;
	}
	if ((r = write_rc(d, s, geom_ig_hdr(s, 0), 0, RC_INODE, s->ig_inodes, 0, inos, 3, blk)))
		goto out;
	struct lunfs_inode *root = calloc(1, sizeof(*root));
	if (!root) {
		r = -ENOMEM;
		goto out;
	}
	struct timespec now;
	clock_gettime(CLOCK_REALTIME, &now);
	root->gen = 1;
	root->ino = s->root_ino;
	root->mode = 040755;
	root->flags = INOF_MAPMETA;
	root->nlink = 2;
	root->igen = 1;
	root->parent = s->root_ino;
	root->atime = root->mtime = root->ctime = root->btime =
		(struct lunfs_time){now.tv_sec, (uint32_t)now.tv_nsec};
	lunfs_inode_encode(root, s->uuid, geom_ino_blk(s, s->root_ino), blk);
	if ((r = dev_write(d, geom_ino_blk(s, s->root_ino), blk, LUNFS_META_BS))) {
		free(root);
		goto out;
	}
	/* the orphan directory: not linked anywhere, found by its number */
	root->ino = LUNFS_ORPHAN_INO;
	root->mode = 040700;
	lunfs_inode_encode(root, s->uuid, geom_ino_blk(s, LUNFS_ORPHAN_INO), blk);
	free(root);
	if ((r = dev_write(d, geom_ino_blk(s, LUNFS_ORPHAN_INO), blk, LUNFS_META_BS)))
		goto out;
	/* 3. Backup superblock, flush, then the primary: until the primary
	 * lands, the device holds no volume that could mount half-made. */
	lunfs_sb_encode(s, blk, 1);
	if ((r = dev_write(d, s->backup_off, blk, LUNFS_META_BS)) || (r = dev_flush(d)))
		goto out;
	lunfs_sb_encode(s, blk, 0);
	if ((r = dev_write(d, LUNFS_SB_OFF, blk, LUNFS_META_BS)))
		goto out;
	r = dev_flush(d);
out:
	free(blk);
	return r;
}

int lunfs_read_sb(struct dev *d, struct lunfs_sb *sb, int fallback, int *used_backup,
		  const char **why)
{
	uint8_t *blk = dev_alloc(LUNFS_META_BS);
	const char *w = NULL, *w2 = NULL;
	int r;
	if (!blk)
		return -ENOMEM;
	if (used_backup)
		*used_backup = 0;
	if (dev_size(d) < 2 * LUNFS_META_BS) {
		w = "device too small to hold a lunfs volume";
		r = -EFSCORRUPTED;
		goto out;
	}
	r = dev_read(d, LUNFS_SB_OFF, blk, LUNFS_META_BS);
	if (r)
		w = "cannot read the primary superblock";
	else
		r = lunfs_sb_decode(blk, sb, &w);
	if (r == 0 && sb->dev_size > dev_size(d)) {
		w = "device is smaller than the volume (truncated?)";
		r = -EFSCORRUPTED;
	}
	/* A newer format is not damage: never fall back to an older backup. */
	if (r == 0 || !fallback || r == -EPROTONOSUPPORT)
		goto out;
	/* The backup sits in the last 4 KiB of the volume, which is the device's
	 * end as long as the device did not grow. */
	uint64_t boff = (dev_size(d) & ~(uint64_t)(LUNFS_META_BS - 1)) - LUNFS_META_BS;
	int r2 = dev_read(d, boff, blk, LUNFS_META_BS);
	if (!r2)
		r2 = lunfs_sb_decode(blk, sb, &w2);
	if (r2 == 0 && sb->backup_off != boff) {
		r2 = -EFSCORRUPTED;
		w2 = "backup superblock is misplaced";
	}
	if (r2 == 0 && sb->dev_size > dev_size(d)) {
		r2 = -EFSCORRUPTED;
		w2 = "device is smaller than the volume (truncated?)";
	}
	if (r2 == 0) {
		r = 0;
		if (used_backup)
			*used_backup = 1;
	}
out:
	if (why)
		*why = w;
	free(blk);
	return r;
}

void lunfs_print_geometry(const struct lunfs_sb *s, void *fp)
{
	FILE *f = fp;
	char u[37];
	lunfs_uuid_str(s->uuid, u);
	fprintf(f, "uuid:            %s\n", u);
	fprintf(f, "label:           %s\n", s->label);
	fprintf(f, "format version:  %u\n", LUNFS_VERSION);
	fprintf(f, "volume size:     %llu bytes (%.2f GiB)\n", (unsigned long long)s->dev_size,
		s->dev_size / 1073741824.0);
	fprintf(f, "sector size:     %u\n", s->sector_size);
	fprintf(f, "file block size: %u\n", s->file_bs);
	fprintf(f, "file blocks:     %llu in %u clusters of %u\n", (unsigned long long)s->file_blocks,
		s->fc_count, s->fc_blocks);
	fprintf(f, "meta blocks:     %llu in %u clusters of %u\n", (unsigned long long)s->meta_blocks,
		s->mc_count, s->mc_blocks);
	fprintf(f, "inodes:          %llu in %u groups of %u\n",
		(unsigned long long)geom_ninodes(s), s->ig_count, s->ig_inodes);
	fprintf(f, "max hosts:       %u\n", s->max_hosts);
	fprintf(f, "journal size:    %llu bytes per host\n", (unsigned long long)s->jnl_size);
	fprintf(f, "lease:           %u ms (heartbeat %u ms, self-fence margin %u ms)\n", s->lease_ms,
		s->hb_ms, s->fence_margin_ms);
	fprintf(f, "grow room:       %llu file clusters (lunfs grow up to %llu bytes)\n",
		(unsigned long long)((s->mc_off - s->fc_off) / TBL_ENTRY),
		(unsigned long long)(s->file_off +
				     (s->mc_off - s->fc_off) / TBL_ENTRY * s->fc_blocks * s->file_bs +
				     LUNFS_META_BS));
	fprintf(f, "regions:         heartbeat@%llu vlock@%llu journal@%llu fc@%llu mc@%llu ig@%llu "
		   "inodes@%llu meta@%llu file@%llu backup-sb@%llu\n",
		(unsigned long long)s->hb_off, (unsigned long long)s->vlock_off,
		(unsigned long long)s->jnl_off, (unsigned long long)s->fc_off,
		(unsigned long long)s->mc_off, (unsigned long long)s->ig_off,
		(unsigned long long)s->ino_off, (unsigned long long)s->meta_off,
		(unsigned long long)s->file_off, (unsigned long long)s->backup_off);
}
