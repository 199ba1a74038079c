/* Encode, decode and verify on-disk records (format v1).  Nothing else in
 * lunfs converts between the disk images and the in-memory structs. */
#include <endian.h>
#include <string.h>
#include <xxhash.h>
#include "util/lerrno.h"
#include "format/ondisk.h"

uint64_t lunfs_csum(const void *rec, size_t size)
{
	return XXH3_64bits((const char *)rec + 8, size - 8);
}

int lunfs_is_zero(const void *buf, size_t len)
{
	const unsigned char *p = buf;
	return len == 0 || (p[0] == 0 && !memcmp(p, p + 1, len - 1));
}

void lunfs_hdr_seal(void *rec, size_t size, uint32_t magic, const uint8_t uuid[16], uint64_t self,
		    uint64_t gen, uint64_t owner)
{
	struct lunfs_hdr *h = rec;
	h->magic = htole32(magic);
	h->version = htole16(LUNFS_VERSION);
	memcpy(h->uuid, uuid, 16);
	h->self = htole64(self);
	h->gen = htole64(gen);
	h->owner = htole64(owner);
	h->csum = htole64(lunfs_csum(rec, size));
}

int lunfs_hdr_check(const void *rec, size_t size, uint32_t magic, const uint8_t *uuid,
		    uint64_t self, const char **why)
{
	const struct lunfs_hdr *h = rec;
	const char *w = NULL;
	if (le32toh(h->magic) != magic)
		w = "bad magic";
	else if (le64toh(h->csum) != lunfs_csum(rec, size))
		w = "bad checksum";
	else if (le16toh(h->version) != LUNFS_VERSION)
		w = "unknown format version";
	else if (uuid && memcmp(h->uuid, uuid, 16))
		w = "belongs to another volume (UUID differs)";
	else if (le64toh(h->self) != self)
		w = "misplaced (address field differs from where it was read)";
	if (why)
		*why = w;
	return w ? -EFSCORRUPTED : 0;
}

/* ---- superblock ---- */

/* The geometry must describe regions that lie in order, inside the device,
 * without overlap.  A hostile image can claim anything, so every count is
 * bounded before it is multiplied. */
static const char *sb_geometry_error(const struct lunfs_sb *s)
{
	if (s->meta_bs != LUNFS_META_BS)
		return "unsupported metadata block size";
	if (s->sector_size != 512 && s->sector_size != 4096)
		return "bad sector size";
	if (s->file_bs < 65536 || s->file_bs > (256u << 20) || (s->file_bs & (s->file_bs - 1)))
		return "bad file block size";
	if (!s->max_hosts || s->max_hosts > LUNFS_MAX_HOSTS)
		return "bad host slot count";
	if (s->hb_ms < 50 || s->lease_ms < 3ull * s->hb_ms || s->fence_margin_ms >= s->lease_ms)
		return "bad lease parameters";
	if (s->jnl_size < (1u << 20) || s->jnl_size > (1ull << 34) || s->jnl_size % LUNFS_META_BS)
		return "bad journal size";
	if (!s->fc_count || !s->fc_blocks || s->fc_blocks > RC_MAX_ENTRIES || !s->mc_count ||
	    !s->mc_blocks || s->mc_blocks > RC_MAX_ENTRIES || !s->ig_count || !s->ig_inodes ||
	    s->ig_inodes > RC_MAX_ENTRIES)
		return "bad cluster geometry";
	if (s->fc_count > (1u << 26) || s->mc_count > (1u << 26) || s->ig_count > (1u << 26))
		return "bad cluster count";
	if ((uint64_t)s->fc_count * s->fc_blocks < s->file_blocks ||
	    (uint64_t)(s->fc_count - 1) * s->fc_blocks >= s->file_blocks)
		return "file cluster count does not match file block count";
	if ((uint64_t)s->mc_count * s->mc_blocks != s->meta_blocks)
		return "meta cluster count does not match meta block count";
	if (s->root_ino == 0 || s->root_ino >= (uint64_t)s->ig_count * s->ig_inodes)
		return "bad root inode number";
	if (s->dev_size < s->backup_off + LUNFS_META_BS)
		return "backup superblock beyond the end of the volume";
	/* Regions in order: each must start at or after the previous one's end. */
	struct {
		uint64_t off, len;
	} r[] = {
		{s->hb_off, (uint64_t)s->max_hosts * LUNFS_SLOT_STRIDE},
		{s->vlock_off, LUNFS_SLOT_STRIDE},
		{s->jnl_off, (uint64_t)s->max_hosts * s->jnl_size},
		{s->fc_off, (uint64_t)s->fc_count * 2 * LUNFS_META_BS},
		{s->mc_off, (uint64_t)s->mc_count * 2 * LUNFS_META_BS},
		{s->ig_off, (uint64_t)s->ig_count * 2 * LUNFS_META_BS},
		{s->ino_off, (uint64_t)s->ig_count * s->ig_inodes * 2 * LUNFS_META_BS},
		{s->meta_off, s->meta_blocks * LUNFS_META_BS},
		{s->file_off, s->file_blocks * s->file_bs},
		{s->backup_off, LUNFS_META_BS},
	};
	uint64_t end = LUNFS_META_BS;
	for (size_t i = 0; i < sizeof(r) / sizeof(r[0]); i++) {
		if (r[i].off % LUNFS_META_BS || r[i].off < end || r[i].len > s->dev_size ||
		    r[i].off > s->dev_size - r[i].len)
			return "regions overlap or lie outside the volume";
		end = r[i].off + r[i].len;
	}
	if (s->file_off % s->file_bs)
		return "file area not aligned to the file block size";
	return NULL;
}

int lunfs_sb_decode(const void *blk, struct lunfs_sb *s, const char **why)
{
	const struct lunfs_d_sb *d = blk;
	const char *w = NULL;
	int r;

	if (le32toh(d->h.magic) != MAGIC_SB) {
		if (why)
			*why = "no lunfs superblock (bad magic)";
		return -EFSCORRUPTED;
	}
	if (le64toh(d->h.csum) != lunfs_csum(blk, LUNFS_META_BS)) {
		if (why)
			*why = "superblock checksum mismatch";
		return -EFSCORRUPTED;
	}
	if (le16toh(d->h.version) != LUNFS_VERSION) {
		if (why)
			*why = "unknown lunfs format version";
		return -EPROTONOSUPPORT;
	}
	r = lunfs_hdr_check(blk, LUNFS_META_BS, MAGIC_SB, NULL, le64toh(d->h.self), &w);
	if (r) {
		if (why)
			*why = w;
		return r;
	}
	memset(s, 0, sizeof(*s));
	memcpy(s->uuid, d->h.uuid, 16);
	s->gen = le64toh(d->h.gen);
	s->incompat = le32toh(d->incompat);
	s->ro_compat = le32toh(d->ro_compat);
	s->compat = le32toh(d->compat);
	s->dev_size = le64toh(d->dev_size);
	s->sector_size = le32toh(d->sector_size);
	s->meta_bs = le32toh(d->meta_bs);
	s->file_bs = le32toh(d->file_bs);
	s->max_hosts = le32toh(d->max_hosts);
	s->lease_ms = le32toh(d->lease_ms);
	s->hb_ms = le32toh(d->hb_ms);
	s->fence_margin_ms = le32toh(d->fence_margin_ms);
	s->hb_off = le64toh(d->hb_off);
	s->vlock_off = le64toh(d->vlock_off);
	s->jnl_off = le64toh(d->jnl_off);
	s->jnl_size = le64toh(d->jnl_size);
	s->fc_off = le64toh(d->fc_off);
	s->fc_count = le32toh(d->fc_count);
	s->fc_blocks = le32toh(d->fc_blocks);
	s->mc_off = le64toh(d->mc_off);
	s->mc_count = le32toh(d->mc_count);
	s->mc_blocks = le32toh(d->mc_blocks);
	s->ig_off = le64toh(d->ig_off);
	s->ig_count = le32toh(d->ig_count);
	s->ig_inodes = le32toh(d->ig_inodes);
	s->ino_off = le64toh(d->ino_off);
	s->meta_off = le64toh(d->meta_off);
	s->meta_blocks = le64toh(d->meta_blocks);
	s->file_off = le64toh(d->file_off);
	s->file_blocks = le64toh(d->file_blocks);
	s->root_ino = le64toh(d->root_ino);
	s->ctime = le64toh(d->ctime);
	s->backup_off = le64toh(d->backup_off);
	memcpy(s->label, d->label, LUNFS_LABEL_LEN);
	s->label[LUNFS_LABEL_LEN] = 0;
	if (s->incompat & ~LUNFS_INCOMPAT_KNOWN) {
		if (why)
			*why = "volume uses features this version does not know";
		return -EPROTONOSUPPORT;
	}
	w = sb_geometry_error(s);
	if (!w && le64toh(d->h.self) != (le64toh(d->h.owner) ? s->backup_off : LUNFS_SB_OFF))
		w = "superblock copy is not where it says it is";
	if (w) {
		if (why)
			*why = w;
		return -EFSCORRUPTED;
	}
	return 0;
}

void lunfs_sb_encode(const struct lunfs_sb *s, void *blk, int backup)
{
	struct lunfs_d_sb *d = blk;
	memset(d, 0, sizeof(*d));
	d->incompat = htole32(s->incompat);
	d->ro_compat = htole32(s->ro_compat);
	d->compat = htole32(s->compat);
	d->dev_size = htole64(s->dev_size);
	d->sector_size = htole32(s->sector_size);
	d->meta_bs = htole32(s->meta_bs);
	d->file_bs = htole32(s->file_bs);
	d->max_hosts = htole32(s->max_hosts);
	d->lease_ms = htole32(s->lease_ms);
	d->hb_ms = htole32(s->hb_ms);
	d->fence_margin_ms = htole32(s->fence_margin_ms);
	d->hb_off = htole64(s->hb_off);
	d->vlock_off = htole64(s->vlock_off);
	d->jnl_off = htole64(s->jnl_off);
	d->jnl_size = htole64(s->jnl_size);
	d->fc_off = htole64(s->fc_off);
	d->fc_count = htole32(s->fc_count);
	d->fc_blocks = htole32(s->fc_blocks);
	d->mc_off = htole64(s->mc_off);
	d->mc_count = htole32(s->mc_count);
	d->mc_blocks = htole32(s->mc_blocks);
	d->ig_off = htole64(s->ig_off);
	d->ig_count = htole32(s->ig_count);
	d->ig_inodes = htole32(s->ig_inodes);
	d->ino_off = htole64(s->ino_off);
	d->meta_off = htole64(s->meta_off);
	d->meta_blocks = htole64(s->meta_blocks);
	d->file_off = htole64(s->file_off);
	d->file_blocks = htole64(s->file_blocks);
	d->root_ino = htole64(s->root_ino);
	d->ctime = htole64(s->ctime);
	d->backup_off = htole64(s->backup_off);
	memcpy(d->label, s->label, strnlen(s->label, LUNFS_LABEL_LEN));
	lunfs_hdr_seal(d, LUNFS_META_BS, MAGIC_SB, s->uuid, backup ? s->backup_off : LUNFS_SB_OFF,
		       s->gen, backup ? 1 : 0);
}

/* ---- heartbeat slot ---- */

int lunfs_hb_decode(const void *rec, const uint8_t uuid[16], uint64_t self, struct lunfs_hb *hb,
		    const char **why)
{
	const struct lunfs_d_hb *d = rec;
	memset(hb, 0, sizeof(*hb));
	if (lunfs_is_zero(rec, LUNFS_REC_SIZE))
		return 0;
	int r = lunfs_hdr_check(rec, LUNFS_REC_SIZE, MAGIC_HB, uuid, self, why);
	if (r)
		return r;
	hb->gen = le64toh(d->h.gen);
	hb->state = le32toh(d->state);
	hb->slot = le32toh(d->slot);
	hb->mount_gen = le64toh(d->mount_gen);
	hb->counter = le64toh(d->counter);
	memcpy(hb->host_uuid, d->host_uuid, 16);
	memcpy(hb->host_name, d->host_name, LUNFS_HOSTNAME_LEN);
	hb->host_name[LUNFS_HOSTNAME_LEN] = 0;
	hb->jnl_off = le64toh(d->jnl_off);
	hb->jnl_size = le64toh(d->jnl_size);
	hb->replayer_slot = le32toh(d->replayer_slot);
	hb->replayer_gen = le64toh(d->replayer_gen);
	hb->wall_ns = le64toh(d->wall_ns);
	hb->pr_key = le64toh(d->pr_key);
	hb->st_reads = le64toh(d->st_reads);
	hb->st_writes = le64toh(d->st_writes);
	hb->st_locks = le64toh(d->st_locks);
	hb->want_off = le64toh(d->want_off);
	hb->st_held = le64toh(d->st_held);
	if (hb->state > HB_EXCLUSIVE) {
		if (why)
			*why = "heartbeat slot has an unknown state";
		return -EFSCORRUPTED;
	}
	return 0;
}

void lunfs_hb_encode(const struct lunfs_hb *hb, const uint8_t uuid[16], uint64_t self, void *rec)
{
	struct lunfs_d_hb *d = rec;
	memset(d, 0, sizeof(*d));
	d->state = htole32(hb->state);
	d->slot = htole32(hb->slot);
	d->mount_gen = htole64(hb->mount_gen);
	d->counter = htole64(hb->counter);
	memcpy(d->host_uuid, hb->host_uuid, 16);
	memcpy(d->host_name, hb->host_name, strnlen(hb->host_name, LUNFS_HOSTNAME_LEN));
	d->jnl_off = htole64(hb->jnl_off);
	d->jnl_size = htole64(hb->jnl_size);
	d->replayer_slot = htole32(hb->replayer_slot);
	d->replayer_gen = htole64(hb->replayer_gen);
	d->wall_ns = htole64(hb->wall_ns);
	d->pr_key = htole64(hb->pr_key);
	d->st_reads = htole64(hb->st_reads);
	d->st_writes = htole64(hb->st_writes);
	d->st_locks = htole64(hb->st_locks);
	d->want_off = htole64(hb->want_off);
	d->st_held = htole64(hb->st_held);
	lunfs_hdr_seal(d, LUNFS_REC_SIZE, MAGIC_HB, uuid, self, hb->gen, hb->slot);
}

/* ---- published I/O statistics ---- */

/* Both forms are ten u64 fields in the same order. */
static void iostat_get(const struct lunfs_d_iostat *d, struct lunfs_iostat *s)
{
	uint64_t v[10];
	_Static_assert(sizeof(*s) == sizeof(v) && sizeof(*d) == sizeof(v), "iostat fields");
	memcpy(v, d, sizeof(v));
	for (size_t i = 0; i < 10; i++)
		v[i] = le64toh(v[i]);
	memcpy(s, v, sizeof(v));
}

static void iostat_put(const struct lunfs_iostat *s, struct lunfs_d_iostat *d)
{
	uint64_t v[10];
	memcpy(v, s, sizeof(v));
	for (size_t i = 0; i < 10; i++)
		v[i] = htole64(v[i]);
	memcpy(d, v, sizeof(v));
}

int lunfs_hbstat_decode(const void *rec, const uint8_t uuid[16], uint64_t self,
			struct lunfs_hbstat *st, const char **why)
{
	const struct lunfs_d_hbstat *d = rec;
	memset(st, 0, sizeof(*st));
	if (lunfs_is_zero(rec, LUNFS_HBSTAT_SIZE))
		return 0;
	int r = lunfs_hdr_check(rec, LUNFS_HBSTAT_SIZE, MAGIC_HBSTAT, uuid, self, why);
	if (r)
		return r;
	if (le32toh(d->nfiles) > LUNFS_HBSTAT_FILES) {
		if (why)
			*why = "statistics list more files than fit";
		return -EFSCORRUPTED;
	}
	st->gen = le64toh(d->h.gen);
	st->mount_gen = le64toh(d->mount_gen);
	st->mono_ms = le64toh(d->mono_ms);
	st->nfiles = le32toh(d->nfiles);
	iostat_get(&d->host, &st->host);
	for (uint32_t i = 0; i < st->nfiles; i++) {
		st->files[i].ino = le64toh(d->files[i].ino);
		iostat_get(&d->files[i].io, &st->files[i].io);
	}
	return 0;
}

void lunfs_hbstat_encode(const struct lunfs_hbstat *st, const uint8_t uuid[16], uint64_t self,
			 uint32_t slot, void *rec)
{
	struct lunfs_d_hbstat *d = rec;
	uint32_t n = st->nfiles < LUNFS_HBSTAT_FILES ? st->nfiles : LUNFS_HBSTAT_FILES;
	memset(d, 0, sizeof(*d));
	d->mount_gen = htole64(st->mount_gen);
	d->mono_ms = htole64(st->mono_ms);
	d->nfiles = htole32(n);
	iostat_put(&st->host, &d->host);
	for (uint32_t i = 0; i < n; i++) {
		d->files[i].ino = htole64(st->files[i].ino);
		iostat_put(&st->files[i].io, &d->files[i].io);
	}
	lunfs_hdr_seal(d, LUNFS_HBSTAT_SIZE, MAGIC_HBSTAT, uuid, self, st->gen, slot);
}

/* ---- lock record ---- */

int lunfs_lock_decode(const void *rec, const uint8_t uuid[16], uint64_t self,
		      struct lunfs_lock *lk, const char **why)
{
	const struct lunfs_d_lock *d = rec;
	memset(lk, 0, sizeof(*lk));
	if (lunfs_is_zero(rec, LUNFS_REC_SIZE))
		return 0;
	int r = lunfs_hdr_check(rec, LUNFS_REC_SIZE, MAGIC_LOCK, uuid, self, why);
	if (r)
		return r;
	lk->gen = le64toh(d->h.gen);
	lk->owner = le64toh(d->h.owner);
	lk->mode = le32toh(d->mode);
	lk->nholders = le32toh(d->nholders);
	lk->object = le64toh(d->object);
	lk->wall_ns = le64toh(d->wall_ns);
	const char *w = NULL;
	if (lk->mode > LK_MULTI_WRITER)
		w = "lock record has an unknown mode";
	else if (lk->nholders > LUNFS_MAX_HOLDERS)
		w = "lock record has too many holders";
	else if ((lk->mode == LK_FREE) != (lk->nholders == 0) ||
		 (lk->mode == LK_EXCLUSIVE && lk->nholders != 1))
		w = "lock record mode and holder count disagree";
	if (w) {
		if (why)
			*why = w;
		return -EFSCORRUPTED;
	}
	for (uint32_t i = 0; i < lk->nholders; i++) {
		lk->holders[i].slot = le16toh(d->holders[i].slot);
		lk->holders[i].flags = le16toh(d->holders[i].flags);
		lk->holders[i].mount_gen = le64toh(d->holders[i].mount_gen);
	}
	return 0;
}

void lunfs_lock_encode(const struct lunfs_lock *lk, const uint8_t uuid[16], uint64_t self,
		       void *rec)
{
	struct lunfs_d_lock *d = rec;
	memset(d, 0, sizeof(*d));
	d->mode = htole32(lk->mode);
	d->nholders = htole32(lk->nholders);
	d->object = htole64(lk->object);
	d->wall_ns = htole64(lk->wall_ns);
	for (uint32_t i = 0; i < lk->nholders && i < LUNFS_MAX_HOLDERS; i++) {
		d->holders[i].slot = htole16(lk->holders[i].slot);
		d->holders[i].flags = htole16(lk->holders[i].flags);
		d->holders[i].mount_gen = htole64(lk->holders[i].mount_gen);
	}
	lunfs_hdr_seal(d, LUNFS_REC_SIZE, MAGIC_LOCK, uuid, self, lk->gen, lk->owner);
}

/* ---- resource cluster header ---- */

void lunfs_rc_init(struct lunfs_rc *rc, uint32_t kind, uint32_t nentries, uint64_t first)
{
	memset(rc, 0, sizeof(*rc));
	rc->kind = kind;
	rc->nentries = nentries;
	rc->nfree = nentries;
	rc->first = first;
}

int lunfs_rc_decode(const void *blk, const uint8_t uuid[16], uint64_t self, uint32_t kind,
		    uint32_t nentries, uint64_t first, struct lunfs_rc *rc, const char **why)
{
	const struct lunfs_d_rc *d = blk;
	const char *w = NULL;
	if (lunfs_is_zero(blk, LUNFS_META_BS)) {
		lunfs_rc_init(rc, kind, nentries, first);
		return 0;
	}
	int r = lunfs_hdr_check(blk, LUNFS_META_BS, MAGIC_RC, uuid, self, why);
	if (r)
		return r;
	memset(rc, 0, sizeof(*rc));
	rc->gen = le64toh(d->h.gen);
	rc->kind = le32toh(d->kind);
	rc->nentries = le32toh(d->nentries);
	rc->nfree = le32toh(d->nfree);
	rc->affinity = le32toh(d->affinity);
	rc->first = le64toh(d->first);
	memcpy(rc->bitmap, d->bitmap, sizeof(rc->bitmap));
	for (uint32_t i = 0; i < RC_MAX_ENTRIES; i++)
		rc->refcnt[i] = le16toh(d->refcnt[i]);
	uint32_t used = 0;
	for (uint32_t i = 0; i < RC_MAX_ENTRIES; i++) {
		if (rc_test(rc, i) && i >= nentries)
			w = "cluster bitmap marks entries past its end";
		used += rc_test(rc, i);
	}
	/* A file cluster that was the last one before an online grow keeps
	 * its shorter count until its next rewrite: the entries past it are
	 * free (docs/FORMAT.md "Online grow").  Its own bitmap and free count
	 * are checked against its own count first. */
	int grown = kind == RC_FILE && rc->kind == kind && rc->nentries < nentries &&
		    rc->first == first && rc->nfree == rc->nentries - used;
	for (uint32_t i = rc->nentries; grown && i < RC_MAX_ENTRIES; i++)
		grown = !rc_test(rc, i);
	if (grown) {
		rc->nfree += nentries - rc->nentries;
		rc->nentries = nentries;
	}
	if (rc->kind != kind)
		w = "cluster header of the wrong kind";
	else if (rc->nentries != nentries || rc->first != first)
		w = "cluster header does not match the geometry";
	else if (rc->nfree != nentries - used)
		w = "cluster free count disagrees with its bitmap";
	if (w) {
		if (why)
			*why = w;
		return -EFSCORRUPTED;
	}
	return 0;
}

void lunfs_rc_encode(const struct lunfs_rc *rc, const uint8_t uuid[16], uint64_t self,
		     uint64_t index, void *blk)
{
	struct lunfs_d_rc *d = blk;
	memset(d, 0, sizeof(*d));
	d->kind = htole32(rc->kind);
	d->nentries = htole32(rc->nentries);
	d->nfree = htole32(rc->nfree);
	d->affinity = htole32(rc->affinity);
	d->first = htole64(rc->first);
	memcpy(d->bitmap, rc->bitmap, sizeof(d->bitmap));
	for (uint32_t i = 0; i < RC_MAX_ENTRIES; i++)
		d->refcnt[i] = htole16(rc->refcnt[i]);
	lunfs_hdr_seal(d, LUNFS_META_BS, MAGIC_RC, uuid, self, rc->gen, index);
}

/* ---- inode ---- */

static void time_dec(struct lunfs_time *t, const struct lunfs_d_time *d)
{
	t->sec = (int64_t)le64toh(d->sec);
	t->nsec = le32toh(d->nsec);
}

static void time_enc(struct lunfs_d_time *d, const struct lunfs_time *t)
{
	d->sec = htole64((uint64_t)t->sec);
	d->nsec = htole32(t->nsec);
	d->reserved = 0;
}

int lunfs_inode_decode(const void *blk, const uint8_t uuid[16], uint64_t self, uint64_t ino,
		       struct lunfs_inode *in, const char **why)
{
	const struct lunfs_d_inode *d = blk;
	const char *w = NULL;
	memset(in, 0, sizeof(*in));
	in->ino = ino;
	if (lunfs_is_zero(blk, LUNFS_META_BS))
		return 0;
	int r = lunfs_hdr_check(blk, LUNFS_META_BS, MAGIC_INODE, uuid, self, why);
	if (r)
		return r;
	in->gen = le64toh(d->h.gen);
	in->ino = le64toh(d->ino);
	in->mode = le32toh(d->mode);
	in->flags = le32toh(d->flags);
	in->uid = le32toh(d->uid);
	in->gid = le32toh(d->gid);
	in->nlink = le32toh(d->nlink);
	in->igen = le32toh(d->igen);
	in->size = le64toh(d->size);
	in->nblocks = le64toh(d->nblocks);
	time_dec(&in->atime, &d->atime);
	time_dec(&in->mtime, &d->mtime);
	time_dec(&in->ctime, &d->ctime);
	time_dec(&in->btime, &d->btime);
	in->rdev = le64toh(d->rdev);
	in->parent = le64toh(d->parent);
	in->snap_id = le64toh(d->snap_id);
	in->nsnaps = le32toh(d->nsnaps);
	in->xattr_len = le32toh(d->xattr_len);
	for (unsigned i = 0; i < INO_NSNAPS; i++)
		in->snaps[i] = le64toh(d->snaps[i]);
	for (unsigned i = 0; i < INO_NINDIRECT; i++)
		in->indirect[i] = i == INO_XATTR_BLK ? 0 : le64toh(d->indirect[i]);
	in->xattr_blk = le64toh(d->indirect[INO_XATTR_BLK]);
	for (unsigned i = 0; i < INO_NDIRECT; i++)
		in->direct[i] = le64toh(d->direct[i]);
	memcpy(in->inline_data, d->inline_data, INO_INLINE_LEN);
	memcpy(in->xattrs, d->xattrs, INO_XATTR_LEN);
	if (in->ino != ino || le64toh(d->h.owner) != ino)
		w = "inode number differs from its slot";
	else if (in->nsnaps > INO_NSNAPS)
		w = "inode snapshot list too long";
	else if (in->xattr_len > INO_XATTR_LEN)
		w = "inode xattr area overflows";
	else if ((in->flags & INOF_INLINE) && in->size > INO_INLINE_LEN)
		w = "inline inode larger than its inline area";
	else if (in->flags & ~(uint32_t)(INOF_THICK | INOF_EZT | INOF_SNAPSHOT | INOF_INLINE | INOF_MAPMETA))
		w = "inode has unknown flags";
	else if (lunfs_xattr_check(in->xattrs, in->xattr_len, INO_XATTR_LEN))
		w = "inode xattr area is malformed";
	if (w) {
		if (why)
			*why = w;
		return -EFSCORRUPTED;
	}
	return 0;
}

void lunfs_inode_encode(const struct lunfs_inode *in, const uint8_t uuid[16], uint64_t self,
			void *blk)
{
	struct lunfs_d_inode *d = blk;
	memset(d, 0, sizeof(*d));
	d->ino = htole64(in->ino);
	d->mode = htole32(in->mode);
	d->flags = htole32(in->flags);
	d->uid = htole32(in->uid);
	d->gid = htole32(in->gid);
	d->nlink = htole32(in->nlink);
	d->igen = htole32(in->igen);
	d->size = htole64(in->size);
	d->nblocks = htole64(in->nblocks);
	time_enc(&d->atime, &in->atime);
	time_enc(&d->mtime, &in->mtime);
	time_enc(&d->ctime, &in->ctime);
	time_enc(&d->btime, &in->btime);
	d->rdev = htole64(in->rdev);
	d->parent = htole64(in->parent);
	d->snap_id = htole64(in->snap_id);
	d->nsnaps = htole32(in->nsnaps);
	d->xattr_len = htole32(in->xattr_len);
	for (unsigned i = 0; i < INO_NSNAPS; i++)
		d->snaps[i] = htole64(in->snaps[i]);
	for (unsigned i = 0; i < INO_NINDIRECT; i++)
		d->indirect[i] = htole64(i == INO_XATTR_BLK ? in->xattr_blk : in->indirect[i]);
	for (unsigned i = 0; i < INO_NDIRECT; i++)
		d->direct[i] = htole64(in->direct[i]);
	memcpy(d->inline_data, in->inline_data, INO_INLINE_LEN);
	memcpy(d->xattrs, in->xattrs, INO_XATTR_LEN);
	lunfs_hdr_seal(d, LUNFS_META_BS, MAGIC_INODE, uuid, self, in->gen, in->ino);
}

uint64_t lunfs_hdr_gen(const void *rec)
{
	return le64toh(((const struct lunfs_hdr *)rec)->gen);
}

/* ---- pointer block ---- */

int lunfs_ptr_decode(const void *blk, const uint8_t uuid[16], uint64_t self, uint64_t owner,
		     uint32_t level, uint64_t nblocks, struct lunfs_ptrblk *p, const char **why)
{
	const struct lunfs_d_ptr *d = blk;
	const char *w = NULL;
	int r = lunfs_hdr_check(blk, LUNFS_META_BS, MAGIC_PTR, uuid, self, why);
	if (r)
		return r;
	p->gen = le64toh(d->h.gen);
	p->owner = le64toh(d->h.owner);
	p->level = le32toh(d->level);
	p->start = le64toh(d->start);
	if (p->owner != owner)
		w = "pointer block belongs to another inode";
	else if (p->level != level)
		w = "pointer block has the wrong level";
	for (uint32_t i = 0; i < PTRS_PER_BLOCK && !w; i++) {
		uint64_t v = le64toh(d->ptrs[i]);
		p->ptrs[i] = v;
		if ((v & ~(PTR_BLOCK_MASK | PTR_FLAGS_MASK)) || (v && (v & PTR_BLOCK_MASK) >= nblocks) ||
		    (v && !(v & PTR_BLOCK_MASK)))
			w = "pointer block holds an impossible pointer";
	}
	if (w) {
		if (why)
			*why = w;
		return -EFSCORRUPTED;
	}
	return 0;
}

void lunfs_ptr_encode(const struct lunfs_ptrblk *p, const uint8_t uuid[16], uint64_t self,
		      void *blk)
{
	struct lunfs_d_ptr *d = blk;
	memset(d, 0, sizeof(*d));
	d->level = htole32(p->level);
	d->start = htole64(p->start);
	for (uint32_t i = 0; i < PTRS_PER_BLOCK; i++)
		d->ptrs[i] = htole64(p->ptrs[i]);
	lunfs_hdr_seal(d, LUNFS_META_BS, MAGIC_PTR, uuid, self, p->gen, p->owner);
}

/* ---- directory block ---- */

void lunfs_dirent_get(const void *blk, uint32_t off, struct lunfs_dirent_info *e)
{
	const uint8_t *b = (const uint8_t *)blk + off;
	const struct lunfs_d_dirent *de = (const void *)b;
	e->off = off;
	e->ino = le64toh(de->ino);
	e->rec_len = le16toh(de->rec_len);
	e->name_len = de->name_len;
	e->type = de->type;
	e->name = (const char *)b + DIRENT_HDR;
}

void lunfs_dirent_put(void *blk, uint32_t off, uint64_t ino, uint32_t rec_len, uint32_t type,
		      const char *name, uint32_t name_len)
{
	uint8_t *b = (uint8_t *)blk + off;
	struct lunfs_d_dirent *de = (void *)b;
	de->ino = htole64(ino);
	de->rec_len = htole16(rec_len);
	de->name_len = name_len;
	de->type = type;
	if (name && name_len)
		memmove(b + DIRENT_HDR, name, name_len);
	/* the unused tail of the entry is zero, so images are deterministic */
	memset(b + DIRENT_HDR + name_len, 0, rec_len - DIRENT_HDR - name_len);
}

void lunfs_dir_init(void *blk)
{
	memset(blk, 0, LUNFS_META_BS);
	lunfs_dirent_put(blk, DIR_FIRST, 0, LUNFS_META_BS - DIR_FIRST, 0, NULL, 0);
}

int lunfs_dir_check(const void *blk, const uint8_t uuid[16], uint64_t self, uint64_t owner,
		    uint64_t index, const char **why)
{
	const struct lunfs_d_dir *d = blk;
	const char *w = NULL;
	int r = lunfs_hdr_check(blk, LUNFS_META_BS, MAGIC_DIR, uuid, self, why);
	if (r)
		return r;
	if (le64toh(d->h.owner) != owner)
		w = "directory block belongs to another inode";
	else if (le64toh(d->index) != index)
		w = "directory block has the wrong index";
	for (uint32_t off = DIR_FIRST; off < LUNFS_META_BS && !w;) {
		struct lunfs_dirent_info e;
		if (off + DIRENT_HDR > LUNFS_META_BS) {
			w = "directory entry crosses the block end";
			break;
		}
		lunfs_dirent_get(blk, off, &e);
		if (e.rec_len < DIRENT_HDR || e.rec_len % 8 || off + e.rec_len > LUNFS_META_BS ||
		    (e.ino && dirent_size(e.name_len) > e.rec_len) || (e.ino && e.name_len == 0)) {
			w = "directory entry has a bad length";
			break;
		}
		for (uint32_t i = 0; e.ino && i < e.name_len && !w; i++)
			if (e.name[i] == '/' || e.name[i] == 0)
				w = "directory entry name contains '/' or NUL";
		if (e.ino && e.type > 15)
			w = "directory entry has a bad type";
		off += e.rec_len;
	}
	if (w) {
		if (why)
			*why = w;
		return -EFSCORRUPTED;
	}
	return 0;
}

void lunfs_dir_seal(void *blk, const uint8_t uuid[16], uint64_t self, uint64_t gen,
		    uint64_t owner, uint64_t index)
{
	struct lunfs_d_dir *d = blk;
	d->index = htole64(index);
	memset(d->reserved, 0, sizeof(d->reserved));
	lunfs_hdr_seal(d, LUNFS_META_BS, MAGIC_DIR, uuid, self, gen, owner);
}

/* ---- xattr area ---- */

int lunfs_xattr_next(const uint8_t *a, uint32_t len, uint32_t *pos, struct lunfs_xattr_info *x)
{
	uint32_t p = *pos;
	if (p + XATTR_HDR > len)
		return 0;
	x->off = p;
	x->name_len = a[p];
	x->value_len = a[p + 2] | (uint32_t)a[p + 3] << 8;
	x->name = (const char *)a + p + XATTR_HDR;
	x->value = a + p + XATTR_HDR + x->name_len;
	if (x->name_len == 0 || p + XATTR_HDR + x->name_len + x->value_len > len)
		return 0;
	*pos = p + XATTR_HDR + x->name_len + x->value_len;
	return 1;
}

int lunfs_xattr_check(const uint8_t *a, uint32_t len, uint32_t cap)
{
	uint32_t pos = 0;
	struct lunfs_xattr_info x;
	if (len > cap)
		return -EFSCORRUPTED;
	while (lunfs_xattr_next(a, len, &pos, &x))
		;
	return pos == len ? 0 : -EFSCORRUPTED;
}

void lunfs_xattr_del(uint8_t *a, uint32_t *len, uint32_t off)
{
	uint32_t pos = off;
	struct lunfs_xattr_info x;
	if (!lunfs_xattr_next(a, *len, &pos, &x))
		return;
	memmove(a + off, a + pos, *len - pos);
	*len -= pos - off;
	memset(a + *len, 0, pos - off);
}

int lunfs_xattr_add(uint8_t *a, uint32_t *len, uint32_t cap, const char *name,
		    uint32_t name_len, const void *val, uint32_t val_len)
{
	if (name_len == 0 || name_len > 255 || val_len > 0xffff)
		return -EINVAL;
	if (*len + XATTR_HDR + name_len + val_len > cap)
		return -ENOSPC;
	uint8_t *p = a + *len;
	p[0] = name_len;
	p[1] = 0;
	p[2] = val_len & 0xff;
	p[3] = val_len >> 8;
	memcpy(p + XATTR_HDR, name, name_len);
	memcpy(p + XATTR_HDR + name_len, val, val_len);
	*len += XATTR_HDR + name_len + val_len;
	return 0;
}

/* ---- xattr block ---- */

int lunfs_xblk_decode(const void *blk, const uint8_t uuid[16], uint64_t self, uint64_t owner,
		      uint64_t nblocks, struct lunfs_xblk *x, const char **why)
{
	const struct lunfs_d_xblk *d = blk;
	const char *w = NULL;
	int r = lunfs_hdr_check(blk, LUNFS_META_BS, MAGIC_XATTR, uuid, self, why);
	if (r)
		return r;
	x->gen = le64toh(d->h.gen);
	x->owner = le64toh(d->h.owner);
	x->next = le64toh(d->next);
	x->len = le32toh(d->len);
	memcpy(x->entries, d->entries, XBLK_AREA);
	if (x->owner != owner)
		w = "xattr block belongs to another inode";
	else if (x->next >= nblocks)
		w = "xattr block's next pointer is out of range";
	else if (lunfs_xattr_check(x->entries, x->len, XBLK_AREA))
		w = "xattr block entries are malformed";
	if (w) {
		if (why)
			*why = w;
		return -EFSCORRUPTED;
	}
	return 0;
}

void lunfs_xblk_encode(const struct lunfs_xblk *x, const uint8_t uuid[16], uint64_t self,
		       void *blk)
{
	struct lunfs_d_xblk *d = blk;
	memset(d, 0, sizeof(*d));
	d->next = htole64(x->next);
	d->len = htole32(x->len);
	memcpy(d->entries, x->entries, XBLK_AREA);
	lunfs_hdr_seal(d, LUNFS_META_BS, MAGIC_XATTR, uuid, self, x->gen, x->owner);
}
