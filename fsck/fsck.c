/* fsck.lunfs: check (and repair) a lunfs volume.
 *
 * Works in numbered phases, like xfs_repair.  Every problem found is an entry
 * of the problem table (code, phase, message); with -n nothing is written and
 * each fix is reported as "would ...".  Exit status follows fsck(8):
 * 0 clean, 1 errors corrected, 4 errors left uncorrected, 8 operational
 * error, 16 usage error.
 *
 * This version checks the superblock, heartbeat slots, journals (replaying
 * them with -y/-p), cluster headers and inodes.  Block maps, reference
 * counts, directories and link counts come with the core library. */
#include <getopt.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "fs/version.h"
#include "dev/dev.h"
#include "format/format.h"
#include "journal/jnl.h"
#include "lock/lk.h"
#include "fs/lunfs.h"
#include "fs/repair.h"
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

enum { FSCK_OK = 0, FSCK_FIXED = 1, FSCK_LEFT = 4, FSCK_OPERR = 8, FSCK_USAGE = 16 };

/* The problem table: one code per kind of damage. */
enum pcode {
	PR_SB_PRIMARY_BAD,
	PR_SB_BACKUP_BAD,
	PR_SB_BACKUP_DIFFERS,
	PR_HB_CORRUPT,
	PR_HB_STALE_LIVE,
	PR_JNL_HDR_BAD,
	PR_JNL_REPLAY,
	PR_JNL_BAD_TARGET,
	PR_JNL_TORN,
	PR_LOCK_CORRUPT,
	PR_STALE_LOCK,
	PR_RC_CORRUPT,
	PR_INODE_CORRUPT,
	PR_BAD_POINTER,
	PR_DUP_BLOCK,
	PR_PTR_BLOCK_BAD,
	PR_NBLOCKS_WRONG,
	PR_DIR_BLOCK_BAD,
	PR_LEAKED_BLOCK,
	PR_UNMARKED_BLOCK,
	PR_REFCOUNT_WRONG,
	PR_INODE_BITMAP,
	PR_DIRENT_BAD,
	PR_DIRENT_TYPE,
	PR_DIR_MULTI_PARENT,
	PR_PARENT_WRONG,
	PR_NLINK_WRONG,
	PR_ORPHAN_INODE,
	PR_XATTR_BLOCK_BAD,
	PR_COUNT
};

static const struct problem {
	const char *code;
	int phase;
	const char *msg;
	const char *fix;
} problems[PR_COUNT] = {
	[PR_SB_PRIMARY_BAD] = {"SB_PRIMARY_BAD", 1, "primary superblock is damaged", "rewrite it from the backup"},
	[PR_SB_BACKUP_BAD] = {"SB_BACKUP_BAD", 1, "backup superblock is damaged", "rewrite it from the primary"},
	[PR_SB_BACKUP_DIFFERS] = {"SB_BACKUP_DIFFERS", 1, "backup superblock differs from the primary", "rewrite it from the primary"},
	[PR_HB_CORRUPT] = {"HB_CORRUPT", 2, "heartbeat slot is damaged", "reset it to FREE"},
	[PR_HB_STALE_LIVE] = {"HB_STALE_LIVE", 2, "heartbeat slot is LIVE but its host is gone", "replay its journal and free it"},
	[PR_JNL_HDR_BAD] = {"JNL_HDR_BAD", 3, "journal header is damaged", "reset the journal"},
	[PR_JNL_REPLAY] = {"JNL_REPLAY", 3, "journal holds committed transactions", "replay them"},
	[PR_JNL_BAD_TARGET] = {"JNL_BAD_TARGET", 3, "journal transaction writes outside the metadata", "discard the journal"},
	[PR_JNL_TORN] = {"JNL_TORN", 3, "journal ends in a torn transaction", "discard it and seal the journal"},
	[PR_LOCK_CORRUPT] = {"LOCK_CORRUPT", 4, "lock record is damaged", "reset it to free"},
	[PR_STALE_LOCK] = {"STALE_LOCK", 4, "lock record names a host that is gone", "reset it to free"},
	[PR_RC_CORRUPT] = {"RC_CORRUPT", 4, "cluster header is damaged", "rebuild it from the block maps"},
	[PR_INODE_CORRUPT] = {"INODE_CORRUPT", 5, "inode is damaged", "clear it"},
	[PR_BAD_POINTER] = {"BAD_POINTER", 5, "block pointer is out of range", "clear it"},
	[PR_DUP_BLOCK] = {"DUP_BLOCK", 5, "block is claimed twice", "clear the second claim"},
	[PR_PTR_BLOCK_BAD] = {"PTR_BLOCK_BAD", 5, "pointer block is damaged", "clear the pointer to it"},
	[PR_NBLOCKS_WRONG] = {"NBLOCKS_WRONG", 5, "inode block count is wrong", "correct it"},
	[PR_DIR_BLOCK_BAD] = {"DIR_BLOCK_BAD", 5, "directory block is damaged", "empty it (its inodes are reconnected)"},
	[PR_LEAKED_BLOCK] = {"LEAKED_BLOCK", 6, "block marked in use but used by nothing", "free it"},
	[PR_UNMARKED_BLOCK] = {"UNMARKED_BLOCK", 6, "block in use but marked free", "mark it in use"},
	[PR_REFCOUNT_WRONG] = {"REFCOUNT_WRONG", 6, "block reference count is wrong", "correct it"},
	[PR_INODE_BITMAP] = {"INODE_BITMAP", 6, "inode group bitmap disagrees with the inode", "correct the bitmap"},
	[PR_DIRENT_BAD] = {"DIRENT_BAD", 7, "directory entry points to a free or invalid inode", "remove the entry"},
	[PR_DIRENT_TYPE] = {"DIRENT_TYPE", 7, "directory entry has the wrong type", "correct it"},
	[PR_DIR_MULTI_PARENT] = {"DIR_MULTI_PARENT", 7, "directory is linked from two places", "remove the extra entry"},
	[PR_PARENT_WRONG] = {"PARENT_WRONG", 7, "directory's parent field is wrong", "correct it"},
	[PR_NLINK_WRONG] = {"NLINK_WRONG", 7, "inode link count is wrong", "correct it"},
	[PR_XATTR_BLOCK_BAD] = {"XATTR_BLOCK_BAD", 5, "xattr block is damaged", "cut the chain before it (its xattrs are lost)"},
	[PR_ORPHAN_INODE] = {"ORPHAN_INODE", 7, "inode is in use but no directory names it", "reconnect it in /lost+found"},
};

#define BS_ LUNFS_META_BS

struct iinfo;
struct dent;
struct fsck {
	struct dev *d;
	struct lunfs_sb sb;
	int repair;  /* -y or -p */
	int verbose;
	int found, fixed;
	struct lunfs_hb *hb;      /* heartbeat slots after phase 3 */
	struct hb_host *me;       /* -y/-p: our EXCLUSIVE slot, renewed while we run */
	struct hb_watch *watch;   /* the other slots, watched for a lease */
	uint8_t *taken;           /* per slot: taken over in phase 2, freed after 3 */
	struct iinfo *ii;         /* per inode */
	uint16_t *fused, *mused;  /* references found per file / meta block */
	struct dent *dents;
	size_t ndents, cdents;
	uint64_t nreconnect;
};

static int write_blk_lbs(struct fsck *f, uint64_t off, const void *b)
{
	return dev_write(f->d, off, b, dev_lbs(f->d));
}

/* Reports problem p; returns 1 when the caller should fix it now. */
static int problem(struct fsck *f, enum pcode p, const char *fmt, ...)
{
	char what[256] = "";
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(what, sizeof(what), fmt, ap);
	va_end(ap);
	f->found++;
	printf("  [%s] %s%s%s%s: %s%s\n", problems[p].code, problems[p].msg, *what ? " (" : "", what,
	       *what ? ")" : "", f->repair ? "" : "would ", problems[p].fix);
	/* problems whose fix is "leave it" stay counted as left */
	return f->repair && strncmp(problems[p].fix, "leave", 5) != 0;
}

static void fixed(struct fsck *f, int r)
{
	if (r == 0)
		f->fixed++;
	else
		printf("  fix failed: %s\n", lunfs_strerror(r));
}

static int phase1(struct fsck *f)
{
	uint8_t *blk = dev_alloc(LUNFS_META_BS), *bk = dev_alloc(LUNFS_META_BS);
	const char *why = NULL;
	int used_backup = 0, r;
	printf("Phase 1 - superblock\n");
	r = lunfs_read_sb(f->d, &f->sb, 1, &used_backup, &why);
	if (r) {
		fprintf(stderr, "fsck.lunfs: %s: %s\n", dev_url(f->d), why ? why : lunfs_strerror(r));
		goto out;
	}
	if (used_backup) {
		if (problem(f, PR_SB_PRIMARY_BAD, "%s", why ? why : "unreadable")) {
			lunfs_sb_encode(&f->sb, blk, 0);
			int e = dev_write(f->d, LUNFS_SB_OFF, blk, LUNFS_META_BS);
			fixed(f, e ? e : dev_flush(f->d));
		}
		goto out;
	}
	struct lunfs_sb b;
	const char *bwhy = NULL;
	r = dev_read(f->d, f->sb.backup_off, bk, LUNFS_META_BS);
	if (r)
		goto out;
	int bad = lunfs_sb_decode(bk, &b, &bwhy);
	lunfs_sb_encode(&f->sb, blk, 1);
	if (bad || memcmp(blk, bk, LUNFS_META_BS)) {
		if (problem(f, bad ? PR_SB_BACKUP_BAD : PR_SB_BACKUP_DIFFERS, "%s", bad ? bwhy : "")) {
			int e = dev_write(f->d, f->sb.backup_off, blk, LUNFS_META_BS);
			fixed(f, e ? e : dev_flush(f->d));
		}
	}
out:
	free(blk);
	free(bk);
	return r;
}


/* Phase 2.  A slot whose heartbeat moves is a host that is mounted now:
 * fsck refuses to repair under it (with -y the claim found it, and nothing
 * was written).  A slot that stood still for a whole lease, or that does not
 * decode (it may be a live host's: it is watched the same way, by its raw
 * bytes), is a host that died: fsck takes it over by the one takeover path
 * (docs/LOCKING.md section 11): the slot goes REPLAYING by us, its PR key is
 * preempted, phase 3 replays its journal, and then the slot is freed. */
static int phase2(struct fsck *f, int *live_hosts)
{
	struct lk_params p = lk_params_of(&f->sb);
	int r = 0;
	printf("Phase 2 - heartbeat slots\n");
	if (!f->watch) { /* -n: watch without a claim (nothing is written) */
		if (!(f->watch = calloc(1, sizeof(*f->watch))))
			return -ENOMEM;
		if (f->verbose)
			printf("  watching the heartbeat slots for %u ms\n", p.lease_ms + p.hb_ms);
		if ((r = hb_watch(f->d, &p, UINT32_MAX, 0, p.lease_ms + p.hb_ms, f->watch)))
			return r;
	}
	struct hb_watch *w = f->watch;
	for (uint32_t s = 0; s < p.max_hosts && s < HB_WATCH_MAX; s++)
		if (w->slot[s].status == HB_W_ALIVE)
			printf("  host \"%s\" (slot %u) is alive: its heartbeat moves\n",
			       w->slot[s].hb.host_name, s);
	if (w->nalive) {
		*live_hosts = 1;
		return 0;
	}
	for (uint32_t s = 0; s < p.max_hosts && s < HB_WATCH_MAX; s++) {
		if (w->slot[s].status != HB_W_DEAD)
			continue;
		int bad = w->slot[s].damaged;
		if (!problem(f, bad ? PR_HB_CORRUPT : PR_HB_STALE_LIVE, "slot %u, host \"%s\"", s,
			     bad ? "?" : w->slot[s].hb.host_name))
			continue;
		struct lunfs_hb victim;
		if ((r = hb_take_over(f->me, s, 2 * p.lease_ms, &victim)))
			printf("  cannot take slot %u over: %s\n", s, lunfs_strerror(r));
		else
			f->taken[s] = 1;
		fixed(f, r);
		r = 0;
	}
	return r;
}

/* After phase 3 replayed their journals: the slots taken over are freed,
 * and phase 4 sees the slots as they are now. */
static int phase2_free(struct fsck *f)
{
	struct lk_params p = lk_params_of(&f->sb);
	for (uint32_t s = 0; f->taken && s < p.max_hosts; s++)
		if (f->taken[s]) {
			int r = hb_recover_end(f->me, s);
			if (r) {
				printf("  cannot free slot %u: %s\n", s, lunfs_strerror(r));
				return r;
			}
			f->taken[s] = 0;
		}
	for (uint32_t s = 0; s < p.max_hosts; s++)
		if (hb_read(f->d, &p, s, &f->hb[s]))
			memset(&f->hb[s], 0, sizeof(f->hb[s]));
	return 0;
}

/* -y/-p: the volume is claimed on disk before anything is written (an
 * EXCLUSIVE heartbeat slot, renewed while fsck runs, so no host mounts
 * meanwhile) and every other slot is watched for a lease.  Returns 0, 1 when
 * a host is alive (nothing else was written), or -errno. */
static int claim_volume(struct fsck *f)
{
	struct lunfs_sb sb;
	const char *why = NULL;
	int used_backup, r = lunfs_read_sb(f->d, &sb, 1, &used_backup, &why);
	if (r)
		return 0; /* phase 1 reports it; nothing to claim without geometry */
	struct lk_params p = lk_params_of(&sb);
	struct hb_ident id = {0};
	char host[48] = "";
	gethostname(host, sizeof(host) - 1);
	snprintf(id.name, sizeof(id.name), "fsck.lunfs@%s", host);
	if (getrandom(id.uuid, sizeof(id.uuid), 0) != sizeof(id.uuid))
		return -EIO;
	if (!(f->watch = calloc(1, sizeof(*f->watch))) || !(f->taken = calloc(p.max_hosts, 1)))
		return -ENOMEM;
	if ((r = hb_pr_register(f->d, &id.pr_key)))
		return r;
	printf("Claiming the volume (watching the heartbeat slots for %u ms)\n",
	       p.lease_ms + p.hb_ms);
	r = hb_claim_exclusive(f->d, &p, &id, &f->me, f->watch);
	if (r == -EBUSY) {
		for (uint32_t s = 0; s < p.max_hosts && s < HB_WATCH_MAX; s++)
			if (f->watch->slot[s].status == HB_W_ALIVE)
				printf("  host \"%s\" (slot %u) is alive: its heartbeat moves\n",
				       f->watch->slot[s].hb.host_name, s);
		hb_pr_unregister(f->d, id.pr_key);
		return 1;
	}
	if (r)
		hb_pr_unregister(f->d, id.pr_key);
	return r;
}

/* Gives the volume back: our slot FREE, our PR key unregistered. */
static void release_volume(struct fsck *f)
{
	if (!f->me)
		return;
	uint64_t key = hb_pr_key(f->me);
	int r = hb_release(f->me);
	if (r)
		fprintf(stderr, "fsck.lunfs: cannot free its heartbeat slot: %s\n", lunfs_strerror(r));
	hb_pr_unregister(f->d, key);
	f->me = NULL;
}

static int target_ok(void *arg, uint64_t t)
{
	return geom_is_journaled(arg, t);
}

static int phase3(struct fsck *f)
{
	printf("Phase 3 - journals\n");
	for (uint32_t s = 0; s < f->sb.max_hosts; s++) {
		struct jnl_geom g = {.slot = s, .off = geom_jnl(&f->sb, s), .size = f->sb.jnl_size,
				     .target_ok = target_ok, .arg = &f->sb};
		memcpy(g.uuid, f->sb.uuid, 16);
		struct jnl_replay_stats st;
		int r = jnl_replay(f->d, &g, 0, &st);
		if (r == -EFSCORRUPTED) {
			enum pcode pc = st.txns || strcmp(st.stop, "journal header is damaged") ? PR_JNL_BAD_TARGET : PR_JNL_HDR_BAD;
			if (problem(f, pc, "slot %u: %s", s, st.stop))
				fixed(f, jnl_reset(f->d, &g, st.next_seq + 1));
			continue;
		}
		if (r)
			return r;
		if (st.torn && problem(f, PR_JNL_TORN, "slot %u: %s", s, st.stop)) {
			/* replay (of what is committed) seals the journal: the torn
			 * transaction's mount no longer owns it */
			int e = jnl_replay(f->d, &g, 1, &st);
			fixed(f, e);
			continue;
		}
		if (!st.txns)
			continue;
		if (problem(f, PR_JNL_REPLAY, "slot %u: %llu transaction(s), %llu block(s)", s,
			    (unsigned long long)st.txns, (unsigned long long)st.blocks))
			fixed(f, jnl_replay(f->d, &g, 1, &st));
	}
	return 0;
}

/* ---- phases 4 to 7: the metadata behind the superblock ---- */

struct iinfo {
	uint32_t mode, nlink, flags;
	uint32_t links;     /* entries naming it (not counting the orphan dir) */
	uint32_t subdirs;   /* directories naming it as parent */
	uint64_t parent;    /* as the inode says */
	uint64_t found_parent;
	uint8_t used, in_orphans, reconnect;
};

struct dent {
	uint64_t dir, ino, blk; /* blk: byte address of the directory block */
	uint32_t off, type, idx;
	char *name;
};

static int write_blk(struct fsck *f, uint64_t addr, const void *blk)
{
	int r = dev_write(f->d, addr, blk, BS_);
	if (r)
		printf("  write at %llu failed: %s\n", (unsigned long long)addr, lunfs_strerror(r));
	return r;
}

/* Checks one lock record (phase 4).  Every holder must be a LIVE mount. */
static void check_lock(struct fsck *f, uint64_t off, const char *what, uint64_t id)
{
	uint32_t lbs = dev_lbs(f->d);
	uint8_t *b = dev_alloc(lbs);
	struct lunfs_lock lk;
	const char *why;
	if (!b || dev_read(f->d, off, b, lbs)) {
		free(b);
		return;
	}
	int bad = lunfs_lock_decode(b, f->sb.uuid, off, &lk, &why);
	if (bad) {
		if (problem(f, PR_LOCK_CORRUPT, "%s %llu: %s", what, (unsigned long long)id, why)) {
			memset(b, 0, lbs);
			fixed(f, write_blk_lbs(f, off, b));
		}
	} else if (lk.mode != LK_FREE) {
		int stale = 0;
		for (uint32_t i = 0; i < lk.nholders; i++) {
			uint32_t s = lk.holders[i].slot;
			if (s >= f->sb.max_hosts || f->hb[s].state != HB_LIVE ||
			    f->hb[s].mount_gen != lk.holders[i].mount_gen)
				stale = 1;
		}
		if (stale && problem(f, PR_STALE_LOCK, "%s %llu, %s, holder slot %u", what,
				     (unsigned long long)id, lk_mode_name(lk.mode), lk.holders[0].slot)) {
			struct lunfs_lock nl = lk;
			nl.mode = LK_FREE;
			nl.nholders = 0;
			nl.gen++;
			memset(b, 0, lbs);
			lunfs_lock_encode(&nl, f->sb.uuid, off, b);
			fixed(f, write_blk_lbs(f, off, b));
		}
	}
	free(b);
}

static int phase4(struct fsck *f)
{
	const struct lunfs_sb *s = &f->sb;
	uint8_t *blk = dev_alloc(BS_);
	struct lunfs_rc *rc = malloc(sizeof(*rc));
	const char *why;
	int r = 0;
	printf("Phase 4 - cluster headers and lock records\n");
	if (!blk || !rc) {
		r = -ENOMEM;
		goto out;
	}
	check_lock(f, s->vlock_off, "volume lock", 0);
	for (int kind = RC_FILE; kind <= RC_INODE && !r; kind++) {
		uint64_t n = kind == RC_FILE ? s->fc_count : kind == RC_META ? s->mc_count : s->ig_count;
		const char *what = kind == RC_FILE ? "file cluster" : kind == RC_META ? "meta cluster" : "inode group";
		for (uint64_t c = 0; c < n && !r; c++) {
			uint64_t lock = kind == RC_FILE ? geom_fc_lock(s, c) : kind == RC_META ? geom_mc_lock(s, c) : geom_ig_lock(s, c);
			uint32_t ents = kind == RC_FILE ? geom_fc_entries(s, c) : kind == RC_META ? s->mc_blocks : s->ig_inodes;
			uint32_t per = kind == RC_FILE ? s->fc_blocks : kind == RC_META ? s->mc_blocks : s->ig_inodes;
			check_lock(f, lock, what, c);
			if ((r = dev_read(f->d, lock + BS_, blk, BS_)))
				break;
			if (lunfs_rc_decode(blk, s->uuid, lock + BS_, kind, ents, c * per, rc, &why)) {
				/* phase 6 rebuilds it from what the inodes use */
				problem(f, PR_RC_CORRUPT, "%s %llu: %s", what, (unsigned long long)c, why);
			}
		}
	}
out:
	free(blk);
	free(rc);
	return r;
}

/* ---- phase 5 ---- */

static uint16_t *usemap(struct fsck *f, int kind)
{
	return kind == RC_META ? f->mused : f->fused;
}

static uint64_t poolsize(struct fsck *f, int kind)
{
	return kind == RC_META ? f->sb.meta_blocks : f->sb.file_blocks;
}

/* Accounts pointer *p to a unit of kind; clears it when it is bad or a
 * second claim.  Returns 1 when it changed *p. */
static int claim(struct fsck *f, uint64_t ino, int kind, uint64_t *p, const char *what)
{
	uint64_t b = *p & PTR_BLOCK_MASK;
	if (!*p)
		return 0;
	if ((*p & ~(PTR_BLOCK_MASK | PTR_FLAGS_MASK)) || b == 0 || b >= poolsize(f, kind)) {
		if (problem(f, PR_BAD_POINTER, "inode %llu, %s pointer %#llx", (unsigned long long)ino,
			    what, (unsigned long long)*p)) {
			*p = 0;
			f->fixed++;
			return 1;
		}
		return 0;
	}
	uint16_t *u = usemap(f, kind);
	if (u[b] && !(*p & PTR_SHARED)) {
		if (problem(f, PR_DUP_BLOCK, "inode %llu, %s block %llu", (unsigned long long)ino,
			    kind == RC_META ? "meta" : "file", (unsigned long long)b)) {
			*p = 0;
			f->fixed++;
			return 1;
		}
		return 0;
	}
	if (u[b] < 0xffff)
		u[b]++;
	return 0;
}

struct walk {
	struct fsck *f;
	struct lunfs_inode *in;
	uint64_t units;
	uint64_t *dirmap;   /* directory: meta block of each logical block */
	uint64_t ndirmap;
};

static void dirmap_set(struct walk *w, uint64_t lblk, uint64_t blk)
{
	if (!(w->in->flags & INOF_MAPMETA) || lblk >= (1u << 20))
		return;
	if (lblk >= w->ndirmap) {
		uint64_t n = lblk + 64;
		uint64_t *m = realloc(w->dirmap, n * sizeof(*m));
		if (!m)
			return;
		memset(m + w->ndirmap, 0, (n - w->ndirmap) * sizeof(*m));
		w->dirmap = m;
		w->ndirmap = n;
	}
	w->dirmap[lblk] = blk;
}

static const uint64_t SPAN[4] = {1, PTRS_PER_BLOCK, (uint64_t)PTRS_PER_BLOCK * PTRS_PER_BLOCK,
				 (uint64_t)PTRS_PER_BLOCK * PTRS_PER_BLOCK * PTRS_PER_BLOCK};

/* Walks pointer block *pp (level lvl, mapping units from base).  Returns 1
 * when *pp was changed (cleared). */
static int walk_ptr(struct walk *w, uint64_t *pp, uint32_t lvl, uint64_t base)
{
	struct fsck *f = w->f;
	uint64_t ino = w->in->ino;
	uint64_t b = *pp & PTR_BLOCK_MASK;
	/* A second claim of a pointer block is not walked again: -y clears the
	 * pointer, and -n must not walk it either, or a block whose 500
	 * pointers all name one lower block is walked 500^2 times and reports
	 * 500^3 duplicates (fuzz: tests/fuzz/regress/). */
	int again = *pp && !(*pp & PTR_SHARED) && b && b < f->sb.meta_blocks && f->mused[b];
	if (claim(f, ino, RC_META, pp, "pointer-block"))
		return 1;
	if (!*pp || again)
		return 0;
	uint64_t addr = geom_meta_blk(&f->sb, *pp & PTR_BLOCK_MASK);
	uint8_t *blk = dev_alloc(BS_);
	struct lunfs_ptrblk *p = malloc(sizeof(*p));
	const char *why = "unreadable";
	int changed = 0, ret = 0;
	int kind = (w->in->flags & INOF_MAPMETA) ? RC_META : RC_FILE;
	if (!blk || !p)
		goto out;
	uint64_t limit = lvl == 1 ? poolsize(f, kind) : f->sb.meta_blocks;
	if (dev_read(f->d, addr, blk, BS_) ||
	    lunfs_ptr_decode(blk, f->sb.uuid, addr, ino, lvl, limit, p, &why)) {
		if (problem(f, PR_PTR_BLOCK_BAD, "inode %llu, level %u at meta block %llu: %s",
			    (unsigned long long)ino, lvl, (unsigned long long)(*pp & PTR_BLOCK_MASK), why)) {
			usemap(f, RC_META)[*pp & PTR_BLOCK_MASK]--;
			*pp = 0;
			f->fixed++;
			ret = 1;
		}
		goto out;
	}
	for (uint32_t i = 0; i < PTRS_PER_BLOCK; i++) {
		if (!p->ptrs[i])
			continue;
		uint64_t lo = base + i * SPAN[lvl - 1];
		if (lvl == 1) {
			changed |= claim(f, ino, kind, &p->ptrs[i], "data");
			if (p->ptrs[i]) {
				w->units++;
				dirmap_set(w, lo, p->ptrs[i] & PTR_BLOCK_MASK);
			}
		} else {
			changed |= walk_ptr(w, &p->ptrs[i], lvl - 1, lo);
		}
	}
	if (changed && f->repair) {
		p->gen++;
		lunfs_ptr_encode(p, f->sb.uuid, addr, blk);
		write_blk(f, addr, blk);
	}
out:
	free(blk);
	free(p);
	return ret;
}

static int walk_map(struct walk *w)
{
	struct lunfs_inode *in = w->in;
	int kind = (in->flags & INOF_MAPMETA) ? RC_META : RC_FILE;
	int changed = 0;
	if (in->flags & INOF_INLINE)
		return 0;
	for (uint32_t i = 0; i < INO_NDIRECT; i++) {
		changed |= claim(w->f, in->ino, kind, &in->direct[i], "data");
		if (in->direct[i]) {
			w->units++;
			dirmap_set(w, i, in->direct[i] & PTR_BLOCK_MASK);
		}
	}
	uint64_t base = INO_NDIRECT;
	for (uint32_t l = 1; l <= 3; l++) {
		changed |= walk_ptr(w, &in->indirect[l - 1], l, base);
		base += SPAN[l];
	}
	return changed;
}

/* The xattr blocks of in, in chain order: each is claimed as a meta block.
 * A bad or second claim, a block that does not decode, or one past
 * XATTR_MAX_BLOCKS ends the chain at the pointer to it (in the inode or in
 * the block before, which is rewritten).  Returns 1 when in changed. */
static int walk_xattrs(struct fsck *f, struct lunfs_inode *in)
{
	const struct lunfs_sb *s = &f->sb;
	uint8_t *blk = dev_alloc(BS_);
	struct lunfs_xblk *x = malloc(sizeof(*x)), *px = malloc(sizeof(*px));
	uint64_t *pp = &in->xattr_blk, prev_addr = 0;
	int changed = 0;
	for (unsigned n = 0; *pp && blk && x && px; n++) {
		uint64_t old = *pp, b = old & PTR_BLOCK_MASK, addr = geom_meta_blk(s, b);
		const char *why = "unreadable";
		int cut = 0, stop = 0;
		if (n == XATTR_MAX_BLOCKS || (old & ~PTR_BLOCK_MASK)) {
			why = n == XATTR_MAX_BLOCKS ? "chain too long" : "flags on an xattr pointer";
			cut = problem(f, PR_XATTR_BLOCK_BAD, "inode %llu, meta block %llu: %s",
				      (unsigned long long)in->ino, (unsigned long long)b, why);
			stop = 1;
		} else if (claim(f, in->ino, RC_META, pp, "xattr-block")) {
			stop = 1; /* claim cleared it */
		} else if (b == 0 || b >= s->meta_blocks || f->mused[b] > 1) {
			stop = 1; /* bad or twice claimed, and not repaired (-n) */
		} else if (dev_read(f->d, addr, blk, BS_) ||
			   lunfs_xblk_decode(blk, s->uuid, addr, in->ino, s->meta_blocks, x, &why)) {
			cut = problem(f, PR_XATTR_BLOCK_BAD, "inode %llu, meta block %llu: %s",
				      (unsigned long long)in->ino, (unsigned long long)b, why);
			if (cut)
				f->mused[b]--;
			stop = 1;
		}
		if (cut) {
			*pp = 0;
			f->fixed++;
		}
		if (*pp != old && pp != &in->xattr_blk) { /* the block before points on */
			px->gen++;
			lunfs_xblk_encode(px, s->uuid, prev_addr, blk);
			write_blk(f, prev_addr, blk);
		}
		changed |= *pp != old && pp == &in->xattr_blk;
		if (stop)
			break;
		struct lunfs_xblk *t = px;
		px = x;
		x = t;
		prev_addr = addr;
		pp = &px->next;
	}
	free(blk);
	free(x);
	free(px);
	return changed;
}

static void add_dent(struct fsck *f, const struct dent *d)
{
	if (f->ndents == f->cdents) {
		f->cdents = f->cdents ? 2 * f->cdents : 256;
		f->dents = realloc(f->dents, f->cdents * sizeof(*f->dents));
	}
	f->dents[f->ndents++] = *d;
}

/* Reads the directory blocks of dir, records its entries. */
static void scan_dir(struct fsck *f, struct walk *w)
{
	uint8_t *blk = dev_alloc(BS_);
	const char *why;
	uint64_t n = w->in->size / BS_;
	for (uint64_t idx = 0; idx < n && idx < w->ndirmap && blk; idx++) {
		if (!w->dirmap[idx])
			continue;
		uint64_t addr = geom_meta_blk(&f->sb, w->dirmap[idx]);
		if (dev_read(f->d, addr, blk, BS_) ||
		    lunfs_dir_check(blk, f->sb.uuid, addr, w->in->ino, idx, &why)) {
			if (problem(f, PR_DIR_BLOCK_BAD, "directory %llu block %llu: %s",
				    (unsigned long long)w->in->ino, (unsigned long long)idx, why)) {
				lunfs_dir_init(blk);
				lunfs_dir_seal(blk, f->sb.uuid, addr, 1, w->in->ino, idx);
				fixed(f, write_blk(f, addr, blk));
			}
			continue;
		}
		for (uint32_t off = DIR_FIRST; off < BS_;) {
			struct lunfs_dirent_info e;
			lunfs_dirent_get(blk, off, &e);
			if (e.ino) {
				struct dent d = {w->in->ino, e.ino, addr, off, e.type, (uint32_t)idx,
						 strndup(e.name, e.name_len)};
				add_dent(f, &d);
			}
			off += e.rec_len;
		}
	}
	free(blk);
}

static int phase5(struct fsck *f)
{
	const struct lunfs_sb *s = &f->sb;
	size_t chunk = (size_t)s->ig_inodes * 2 * BS_;
	uint8_t *buf = dev_alloc(chunk);
	struct lunfs_inode *in = malloc(sizeof(*in));
	const char *why;
	int r = 0;
	printf("Phase 5 - inodes and block maps\n");
	if (!buf || !in) {
		r = -ENOMEM;
		goto out;
	}
	for (uint64_t g = 0; g < s->ig_count && !r; g++) {
		uint64_t first = g * s->ig_inodes;
		if ((r = dev_read(f->d, geom_ino_lock(s, first), buf, chunk)))
			break;
		for (uint32_t i = 0; i < s->ig_inodes; i++) {
			uint64_t ino = first + i, addr = geom_ino_blk(s, ino);
			uint8_t *ib = buf + (size_t)i * 2 * BS_ + BS_;
			if (ino == 0)
				continue;
			check_lock(f, geom_ino_lock(s, ino), "inode", ino);
			if (lunfs_inode_decode(ib, s->uuid, addr, ino, in, &why)) {
				if (problem(f, PR_INODE_CORRUPT, "inode %llu: %s", (unsigned long long)ino, why)) {
					memset(in, 0, sizeof(*in));
					in->ino = ino;
					in->gen = lunfs_hdr_gen(ib) + 1;
					lunfs_inode_encode(in, s->uuid, addr, ib);
					fixed(f, write_blk(f, addr, ib));
				}
				continue;
			}
			if (!in->mode)
				continue;
			struct iinfo *ii = &f->ii[ino];
			ii->used = 1;
			ii->mode = in->mode;
			ii->nlink = in->nlink;
			ii->flags = in->flags;
			ii->parent = in->parent;
			struct walk w = {f, in, 0, NULL, 0};
			int changed = walk_map(&w);
			changed |= walk_xattrs(f, in);
			if (w.units != in->nblocks &&
			    problem(f, PR_NBLOCKS_WRONG, "inode %llu: %llu, counted %llu", (unsigned long long)ino,
				    (unsigned long long)in->nblocks, (unsigned long long)w.units)) {
				in->nblocks = w.units;
				changed = 1;
				f->fixed++;
			}
			if (changed && f->repair) {
				in->gen++;
				lunfs_inode_encode(in, s->uuid, addr, ib);
				write_blk(f, addr, ib);
			}
			if (S_ISDIR(in->mode))
				scan_dir(f, &w);
			free(w.dirmap);
		}
	}
out:
	free(buf);
	free(in);
	return r;
}

/* ---- phase 6 ---- */

static int cluster_fix(struct fsck *f, int kind, uint64_t c)
{
	const struct lunfs_sb *s = &f->sb;
	uint64_t lock = kind == RC_FILE ? geom_fc_lock(s, c) : kind == RC_META ? geom_mc_lock(s, c) : geom_ig_lock(s, c);
	uint32_t ents = kind == RC_FILE ? geom_fc_entries(s, c) : kind == RC_META ? s->mc_blocks : s->ig_inodes;
	uint32_t per = kind == RC_FILE ? s->fc_blocks : kind == RC_META ? s->mc_blocks : s->ig_inodes;
	const char *what = kind == RC_FILE ? "file" : kind == RC_META ? "meta" : "inode";
	uint8_t *blk = dev_alloc(BS_);
	struct lunfs_rc *rc = malloc(sizeof(*rc)), *want = malloc(sizeof(*want));
	int r = 0, bad = 0, rebuild = 0; /* bad: problems reported here, to fix */
	if (!blk || !rc || !want) {
		r = -ENOMEM;
		goto out;
	}
	if ((r = dev_read(f->d, lock + BS_, blk, BS_)))
		goto out;
	if (lunfs_rc_decode(blk, s->uuid, lock + BS_, kind, ents, c * per, rc, NULL)) {
		rebuild = 1;
		lunfs_rc_init(rc, kind, ents, c * per);
		rc->gen = lunfs_hdr_gen(blk);
	}
	lunfs_rc_init(want, kind, ents, c * per);
	want->gen = rc->gen + 1;
	want->affinity = rc->affinity;
	for (uint32_t i = 0; i < ents; i++) {
		uint64_t n = c * per + i;
		uint32_t use;
		if (kind == RC_INODE)
			use = n == 0 || f->ii[n].used;
		else
			use = n == 0 ? 1 : usemap(f, kind)[n];
		if (use) {
			rc_set(want, i, 1);
			want->nfree--;
			if (kind != RC_INODE)
				want->refcnt[i] = use;
		}
		if (rebuild)
			continue;
		int on = rc_test(rc, i);
		if (kind == RC_INODE) {
			if (on != (int)use)
				bad += problem(f, PR_INODE_BITMAP, "inode %llu is %s but marked %s",
					       (unsigned long long)n, use ? "in use" : "free", on ? "used" : "free");
		} else if (!use && on) {
			bad += problem(f, PR_LEAKED_BLOCK, "%s block %llu", what, (unsigned long long)n);
		} else if (use && !on) {
			bad += problem(f, PR_UNMARKED_BLOCK, "%s block %llu", what, (unsigned long long)n);
		} else if (use && rc->refcnt[i] != use) {
			bad += problem(f, PR_REFCOUNT_WRONG, "%s block %llu: %u, used %u", what,
				       (unsigned long long)n, rc->refcnt[i], use);
		}
	}
	if ((bad || rebuild) && f->repair) {
		lunfs_rc_encode(want, s->uuid, lock + BS_, c, blk);
		if (!write_blk(f, lock + BS_, blk))
			f->fixed += bad + rebuild; /* rebuild: the RC_CORRUPT of phase 4 */
	}
out:
	free(blk);
	free(rc);
	free(want);
	return r;
}

static int phase6(struct fsck *f)
{
	const struct lunfs_sb *s = &f->sb;
	int r = 0;
	printf("Phase 6 - cluster bitmaps and reference counts\n");
	for (uint64_t c = 0; c < s->fc_count && !r; c++)
		r = cluster_fix(f, RC_FILE, c);
	for (uint64_t c = 0; c < s->mc_count && !r; c++)
		r = cluster_fix(f, RC_META, c);
	for (uint64_t g = 0; g < s->ig_count && !r; g++)
		r = cluster_fix(f, RC_INODE, g);
	return r;
}

/* ---- phase 7 ---- */

/* Rewrites one entry of a directory block: remove it (ino 0) or set its type. */
static int dent_edit(struct fsck *f, const struct dent *d, int remove, uint32_t type)
{
	uint8_t *blk = dev_alloc(BS_);
	int r;
	if (!blk)
		return -ENOMEM;
	if ((r = dev_read(f->d, d->blk, blk, BS_)))
		goto out;
	/* Phase 5 recorded the entry, but the block may have changed since:
	 * another fix can have emptied it (a block claimed by two directories)
	 * or rewritten it as a pointer block.  Offsets and lengths read from
	 * it are only safe while it is still a valid block of this directory
	 * with the same entry at d->off (fuzz: tests/fuzz/regress/). */
	if (lunfs_dir_check(blk, f->sb.uuid, d->blk, d->dir, d->idx, NULL)) {
		r = -ESTALE;
		goto out;
	}
	struct lunfs_dirent_info e;
	uint32_t prev = 0, off;
	for (off = DIR_FIRST; off < d->off;) {
		struct lunfs_dirent_info p;
		lunfs_dirent_get(blk, off, &p);
		prev = off;
		off += p.rec_len;
	}
	lunfs_dirent_get(blk, d->off, &e);
	if (off != d->off || e.ino != d->ino) {
		r = -ESTALE;
		goto out;
	}
	if (remove) {
		/* fold into the previous entry, as the library does */
		if (prev) {
			struct lunfs_dirent_info p;
			char keep[256];
			lunfs_dirent_get(blk, prev, &p);
			/* a free entry's name_len is not checked and may run
			 * past the block: only a live entry keeps its name */
			if (p.ino)
				memcpy(keep, p.name, p.name_len);
			lunfs_dirent_put(blk, prev, p.ino, p.rec_len + e.rec_len, p.type, keep,
					 p.ino ? p.name_len : 0);
		} else {
			lunfs_dirent_put(blk, d->off, 0, e.rec_len, 0, NULL, 0);
		}
	} else {
		char keep[256];
		memcpy(keep, e.name, e.name_len);
		lunfs_dirent_put(blk, d->off, e.ino, e.rec_len, type, keep, e.name_len);
	}
	lunfs_dir_seal(blk, f->sb.uuid, d->blk, lunfs_hdr_gen(blk) + 1, d->dir, d->idx);
	r = write_blk(f, d->blk, blk);
out:
	free(blk);
	return r;
}

/* Rewrites the nlink (and for directories the parent) of an inode. */
static int inode_set_links(struct fsck *f, uint64_t ino, uint32_t nlink, uint64_t parent)
{
	uint64_t addr = geom_ino_blk(&f->sb, ino);
	uint8_t *blk = dev_alloc(BS_);
	struct lunfs_inode *in = malloc(sizeof(*in));
	int r = -ENOMEM;
	if (blk && in && !(r = dev_read(f->d, addr, blk, BS_)) &&
	    !(r = lunfs_inode_decode(blk, f->sb.uuid, addr, ino, in, NULL))) {
		in->nlink = nlink;
		in->parent = parent;
		in->gen++;
		lunfs_inode_encode(in, f->sb.uuid, addr, blk);
		r = write_blk(f, addr, blk);
	}
	free(blk);
	free(in);
	return r;
}

static int phase7(struct fsck *f)
{
	const struct lunfs_sb *s = &f->sb;
	uint64_t nino = geom_ninodes(s);
	printf("Phase 7 - directories, link counts and orphans\n");
	for (size_t k = 0; k < f->ndents; k++) {
		struct dent *d = &f->dents[k];
		struct iinfo *t = d->ino < nino ? &f->ii[d->ino] : NULL;
		if (!t || !t->used || d->ino == LUNFS_ORPHAN_INO || d->ino == s->root_ino) {
			if (problem(f, PR_DIRENT_BAD, "\"%s\" in directory %llu -> inode %llu", d->name,
				    (unsigned long long)d->dir, (unsigned long long)d->ino))
				fixed(f, dent_edit(f, d, 1, 0));
			continue;
		}
		if (d->dir == LUNFS_ORPHAN_INO) {
			t->in_orphans = 1;
			continue;
		}
		uint32_t type = (t->mode >> 12) & 15;
		if (d->type != type && problem(f, PR_DIRENT_TYPE, "\"%s\" in directory %llu", d->name,
					       (unsigned long long)d->dir))
			fixed(f, dent_edit(f, d, 0, type));
		if (S_ISDIR(t->mode)) {
			if (t->found_parent) {
				if (problem(f, PR_DIR_MULTI_PARENT, "\"%s\" in directory %llu -> directory %llu",
					    d->name, (unsigned long long)d->dir, (unsigned long long)d->ino))
					fixed(f, dent_edit(f, d, 1, 0));
				continue;
			}
			t->found_parent = d->dir;
			f->ii[d->dir].subdirs++;
		}
		t->links++;
	}
	/* link counts, parents, orphans */
	for (uint64_t ino = 1; ino < nino; ino++) {
		struct iinfo *t = &f->ii[ino];
		if (!t->used)
			continue;
		int special = ino == s->root_ino || ino == LUNFS_ORPHAN_INO;
		int isdir = S_ISDIR(t->mode);
		uint64_t parent = isdir ? (special ? s->root_ino : t->found_parent) : t->parent;
		if (!special && !t->links && !t->in_orphans) {
			if (problem(f, PR_ORPHAN_INODE, "inode %llu (%s)", (unsigned long long)ino,
				    isdir ? "directory" : "file")) {
				t->reconnect = 1;
				f->nreconnect++;
			}
			parent = isdir ? s->root_ino : t->parent; /* set when reconnected */
		}
		uint32_t want = isdir ? 2 + t->subdirs : t->links;
		if (t->in_orphans && !t->links)
			want = isdir ? t->nlink : 0; /* being freed: mount finishes it */
		if (t->nlink != want && problem(f, PR_NLINK_WRONG, "inode %llu: %u, counted %u",
						 (unsigned long long)ino, t->nlink, want))
			fixed(f, inode_set_links(f, ino, want, parent));
		else if (isdir && t->parent != parent && !t->reconnect &&
			 problem(f, PR_PARENT_WRONG, "directory %llu: %llu, named in %llu",
				 (unsigned long long)ino, (unsigned long long)t->parent,
				 (unsigned long long)parent))
			fixed(f, inode_set_links(f, ino, t->nlink, parent));
	}
	return 0;
}

/* Reconnects the orphans found in phase 7 under /lost+found, through the
 * library (so the new entries are journaled like any other change). */
static int reconnect(struct fsck *f, const char *path)
{
	struct lunfs_mount_opts o = {.host = "fsck.lunfs"};
	struct lunfs_vol *v;
	struct lunfs_stat st;
	const char *msg;
	int r = lunfs_mount(path, &o, &v, &msg);
	if (r) {
		printf("  cannot mount to reconnect orphans: %s\n", msg ? msg : lunfs_strerror(r));
		return r;
	}
	r = lunfs_lookup(v, f->sb.root_ino, "lost+found", &st);
	if (r == -ENOENT)
		r = lunfs_mkdir(v, f->sb.root_ino, "lost+found", 0700, NULL, &st);
	for (uint64_t ino = 1; !r && ino < geom_ninodes(&f->sb); ino++) {
		if (!f->ii[ino].reconnect)
			continue;
		char name[32];
		snprintf(name, sizeof(name), "#%llu", (unsigned long long)ino);
		r = lunfs_relink(v, st.ino, name, ino);
		if (!r)
			f->fixed++;
		else
			printf("  reconnecting inode %llu failed: %s\n", (unsigned long long)ino, lunfs_strerror(r));
	}
	int e = lunfs_unmount(v);
	return r ? r : e;
}

static void fsck_free(struct fsck *f)
{
	for (size_t k = 0; k < f->ndents; k++)
		free(f->dents[k].name);
	free(f->dents);
	free(f->ii);
	free(f->fused);
	free(f->mused);
	free(f->hb);
	free(f->watch);
	free(f->taken);
	f->watch = NULL;
	f->taken = NULL;
	f->dents = NULL;
	f->ndents = 0;
	f->ii = NULL;
	f->fused = f->mused = NULL;
	f->hb = NULL;
}

static void usage(FILE *o)
{
	fprintf(o, "usage: fsck.lunfs [-n | -y | -p] [-f] [-v] DEVICE\n"
		   "  -n  check only, change nothing (default when no -y/-p)\n"
		   "  -y  repair everything it can\n"
		   "  -p  repair what is safe without questions (same as -y here)\n"
		   "  -f  check even if the volume seems clean\n"
		   "  -v  verbose\n"
		   "  -h, --help     this help\n"
		   "  -V, --version  the version\n"
		   "exit: 0 clean, 1 corrected, 4 errors left, 8 operational error, 16 usage\n");
}

int main(int argc, char **argv)
{
	struct fsck f = {0};
	int c, nflag = 0;
	setvbuf(stdout, NULL, _IOLBF, 0); /* phases show as they run, also into a pipe */
	static const struct option lopts[] = {
		{"help", no_argument, 0, 'h'},
		{"version", no_argument, 0, 'V'},
		{0, 0, 0, 0},
	};
	opterr = 0; /* one line of our own, naming the option */
	while ((c = getopt_long(argc, argv, "nypfvhV", lopts, NULL)) != -1) {
		switch (c) {
		case 'n':
			nflag = 1;
			break;
		case 'y':
		case 'p':
			f.repair = 1;
			break;
		case 'f':
			break;
		case 'v':
			f.verbose = 1;
			break;
		case 'h':
			usage(stdout);
			return FSCK_OK;
		case 'V':
			printf("fsck.lunfs (lunfs) %s\n", LUNFS_RELEASE);
			return FSCK_OK;
		default:
			fprintf(stderr, "fsck.lunfs: unknown option %s; usage: fsck.lunfs [-n | -y | -p] [-f] [-v] "
				"DEVICE (-h for help)\n", argv[optind - 1]);
			return FSCK_USAGE;
		}
	}
	if (optind != argc - 1 || (nflag && f.repair)) {
		fprintf(stderr, "fsck.lunfs: usage: %s (-h for help)\n",
			nflag && f.repair ? "-n excludes -y and -p" : "fsck.lunfs [-n | -y | -p] [-f] [-v] DEVICE");
		return FSCK_USAGE;
	}
	const char *path = argv[optind];
	struct dev_opts o = {.readonly = !f.repair};
	int r = dev_open(path, &o, &f.d);
	if (r) {
		if (*dev_last_error())
			fprintf(stderr, "fsck.lunfs: cannot open %s\n", dev_last_error());
		else
			fprintf(stderr, "fsck.lunfs: cannot open %s: %s\n", path, lunfs_strerror(r));
		return FSCK_OPERR;
	}
	int live = 0;
	if (f.repair && (r = claim_volume(&f))) {
		if (r > 0)
			fprintf(stderr, "fsck.lunfs: %s is mounted by a live host; refusing to repair "
					"(nothing was written)\n", path);
		else
			fprintf(stderr, "fsck.lunfs: %s: cannot claim the volume: %s\n", path,
				lunfs_strerror(r));
		dev_close(f.d);
		fsck_free(&f);
		return FSCK_OPERR;
	}
	if ((r = phase1(&f)))
		goto operr;
	if (!(f.hb = calloc(f.sb.max_hosts, sizeof(*f.hb)))) {
		r = -ENOMEM;
		goto operr;
	}
	if ((r = phase2(&f, &live)))
		goto operr;
	if (live) {
		fprintf(stderr, "fsck.lunfs: %s is mounted by a live host; %s\n", path,
			f.repair ? "refusing to repair" : "checking a live volume can report false problems");
		if (f.repair) {
			release_volume(&f);
			dev_close(f.d);
			fsck_free(&f);
			return FSCK_OPERR;
		}
	}
	uint64_t nino = geom_ninodes(&f.sb);
	f.ii = calloc(nino, sizeof(*f.ii));
	f.fused = calloc(f.sb.file_blocks, sizeof(uint16_t));
	f.mused = calloc(f.sb.meta_blocks, sizeof(uint16_t));
	if (!f.ii || !f.fused || !f.mused) {
		r = -ENOMEM;
		goto operr;
	}
	if ((r = phase3(&f)) || (r = phase2_free(&f)) || (r = phase4(&f)) || (r = phase5(&f)) || (r = phase6(&f)) ||
	    (r = phase7(&f)))
		goto operr;
	if (f.repair && (r = dev_flush(f.d)))
		goto operr;
	release_volume(&f);
	dev_close(f.d);
	f.d = NULL;
	if (f.repair && f.nreconnect && (r = reconnect(&f, path)))
		printf("  reconnecting orphans failed: %s\n", lunfs_strerror(r));
	fsck_free(&f);
	int left = f.found - f.fixed;
	if (!f.found)
		printf("%s: clean\n", path);
	else
		printf("%s: %d problem(s) found, %d fixed%s\n", path, f.found, f.fixed,
		       f.repair ? "" : " (-n: nothing written)");
	return left ? FSCK_LEFT : f.fixed ? FSCK_FIXED : FSCK_OK;
operr:
	if (r != -EFSCORRUPTED && r != -EPROTONOSUPPORT)
		fprintf(stderr, "fsck.lunfs: %s: %s\n", path, lunfs_strerror(r));
	release_volume(&f);
	dev_close(f.d);
	fsck_free(&f);
	return FSCK_OPERR;
}
