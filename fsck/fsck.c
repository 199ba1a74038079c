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
#include "dev.h"
#include "fs/format.h"
#include "journal/jnl.h"
#include "lock/lk.h"

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
	PR_RC_CORRUPT,
	PR_INODE_CORRUPT,
	PR_INODE_BITMAP,
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
	[PR_RC_CORRUPT] = {"RC_CORRUPT", 4, "cluster header is damaged", "leave it (repair comes with block-map checks)"},
	[PR_INODE_CORRUPT] = {"INODE_CORRUPT", 4, "inode is damaged", "leave it (repair comes with block-map checks)"},
	[PR_INODE_BITMAP] = {"INODE_BITMAP", 4, "inode group bitmap disagrees with the inode", "leave it (repair comes with block-map checks)"},
};

struct fsck {
	struct dev *d;
	struct lunfs_sb sb;
	int repair;  /* -y or -p */
	int verbose;
	int found, fixed;
};

/* Reports problem p; returns 1 when the caller should fix it now. */
static int problem(struct fsck *f, enum pcode p, const char *fmt, ...)
{
	char what[256] = "";
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(what, sizeof(what), fmt, ap);
	va_end(ap);
	f->found++;
	printf("  [%s] %s%s%s: %s %s\n", problems[p].code, problems[p].msg, *what ? " (" : "", *what ? what : "",
	       f->repair ? "" : "would", problems[p].fix);
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

static struct lk_params params_of(const struct lunfs_sb *s)
{
	struct lk_params p = {.hb_off = s->hb_off, .max_hosts = s->max_hosts, .lease_ms = s->lease_ms,
			      .hb_ms = s->hb_ms, .fence_margin_ms = s->fence_margin_ms,
			      .jnl_off = s->jnl_off, .jnl_size = s->jnl_size};
	memcpy(p.uuid, s->uuid, 16);
	return p;
}

/* Phase 2.  A LIVE slot whose counter moves is a host that is mounted now:
 * fsck refuses to repair under it.  A LIVE slot that stands still for a whole
 * lease is a host that died: its journal is replayed in phase 3. */
static int phase2(struct fsck *f, int *live_hosts)
{
	struct lk_params p = params_of(&f->sb);
	struct lunfs_hb *first = calloc(p.max_hosts, sizeof(*first));
	int *state = calloc(p.max_hosts, sizeof(int)), nlive = 0, r = 0;
	printf("Phase 2 - heartbeat slots\n");
	if (!first || !state) {
		r = -ENOMEM;
		goto out;
	}
	for (uint32_t s = 0; s < p.max_hosts; s++) {
		state[s] = hb_read(f->d, &p, s, &first[s]);
		if (state[s] == -EFSCORRUPTED) {
			if (problem(f, PR_HB_CORRUPT, "slot %u", s)) {
				uint8_t *z = dev_alloc(LUNFS_SLOT_STRIDE);
				fixed(f, dev_write(f->d, geom_hb(&f->sb, s), z, LUNFS_SLOT_STRIDE));
				free(z);
			}
		} else if (state[s]) {
			r = state[s];
			goto out;
		} else if (first[s].state != HB_FREE) {
			nlive++;
		}
	}
	if (nlive) {
		/* watch the non-free slots for one lease (plus a heartbeat) */
		if (f->verbose)
			printf("  watching %d non-free slot(s) for %u ms\n", nlive, p.lease_ms + p.hb_ms);
		uint64_t t0 = lk_now_ms();
		int moving = 0;
		while (lk_now_ms() - t0 < p.lease_ms + p.hb_ms && !moving) {
			for (uint32_t s = 0; s < p.max_hosts && !moving; s++) {
				struct lunfs_hb now;
				if (state[s] || first[s].state == HB_FREE || hb_read(f->d, &p, s, &now))
					continue;
				if (now.counter != first[s].counter || now.mount_gen != first[s].mount_gen) {
					printf("  host \"%s\" (slot %u) is alive: its heartbeat moves\n",
					       now.host_name, s);
					moving = 1;
				}
			}
			if (!moving && lk_now_ms() - t0 < p.lease_ms + p.hb_ms) {
				struct timespec ts = {0, 100 * 1000000};
				nanosleep(&ts, NULL);
			}
		}
		if (moving) {
			*live_hosts = 1;
			goto out;
		}
		for (uint32_t s = 0; s < p.max_hosts; s++) {
			if (state[s] || first[s].state == HB_FREE)
				continue;
			if (problem(f, PR_HB_STALE_LIVE, "slot %u, host \"%s\"", s, first[s].host_name)) {
				/* phase 3 replays every journal; freeing the slot
				 * afterwards is safe because fsck holds the volume */
				struct lunfs_hb nb = first[s];
				uint8_t *rec = dev_alloc(LUNFS_SLOT_STRIDE);
				nb.state = HB_FREE;
				nb.gen++;
				lunfs_hb_encode(&nb, p.uuid, geom_hb(&f->sb, s), rec);
				fixed(f, dev_write(f->d, geom_hb(&f->sb, s), rec, dev_lbs(f->d)));
				free(rec);
			}
		}
	}
out:
	free(first);
	free(state);
	return r;
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
		if (!st.txns)
			continue;
		if (problem(f, PR_JNL_REPLAY, "slot %u: %llu transaction(s), %llu block(s)", s,
			    (unsigned long long)st.txns, (unsigned long long)st.blocks))
			fixed(f, jnl_replay(f->d, &g, 1, &st));
	}
	return 0;
}

static int phase4(struct fsck *f)
{
	const struct lunfs_sb *s = &f->sb;
	uint8_t *blk = dev_alloc(LUNFS_META_BS);
	struct lunfs_rc *rc = malloc(sizeof(*rc));
	struct lunfs_inode *in = malloc(sizeof(*in));
	const char *why;
	int r = 0;
	uint64_t used_inodes = 0;
	printf("Phase 4 - cluster headers and inodes\n");
	if (!blk || !rc || !in) {
		r = -ENOMEM;
		goto out;
	}
	for (uint64_t c = 0; c < s->fc_count && !r; c++) {
		if ((r = dev_read(f->d, geom_fc_hdr(s, c), blk, LUNFS_META_BS)))
			break;
		if (lunfs_rc_decode(blk, s->uuid, geom_fc_hdr(s, c), RC_FILE, geom_fc_entries(s, c),
				    c * s->fc_blocks, rc, &why))
			problem(f, PR_RC_CORRUPT, "file cluster %llu: %s", (unsigned long long)c, why);
	}
	for (uint64_t c = 0; c < s->mc_count && !r; c++) {
		if ((r = dev_read(f->d, geom_mc_hdr(s, c), blk, LUNFS_META_BS)))
			break;
		if (lunfs_rc_decode(blk, s->uuid, geom_mc_hdr(s, c), RC_META, s->mc_blocks,
				    c * s->mc_blocks, rc, &why))
			problem(f, PR_RC_CORRUPT, "meta cluster %llu: %s", (unsigned long long)c, why);
	}
	for (uint64_t g = 0; g < s->ig_count && !r; g++) {
		if ((r = dev_read(f->d, geom_ig_hdr(s, g), blk, LUNFS_META_BS)))
			break;
		int bad = lunfs_rc_decode(blk, s->uuid, geom_ig_hdr(s, g), RC_INODE, s->ig_inodes,
					  g * s->ig_inodes, rc, &why);
		if (bad)
			problem(f, PR_RC_CORRUPT, "inode group %llu: %s", (unsigned long long)g, why);
		for (uint32_t i = 0; i < s->ig_inodes && !r; i++) {
			uint64_t ino = g * s->ig_inodes + i;
			if (ino == 0)
				continue;
			if ((r = dev_read(f->d, geom_ino_blk(s, ino), blk, LUNFS_META_BS)))
				break;
			if (lunfs_inode_decode(blk, s->uuid, geom_ino_blk(s, ino), ino, in, &why)) {
				problem(f, PR_INODE_CORRUPT, "inode %llu: %s", (unsigned long long)ino, why);
				continue;
			}
			used_inodes += in->mode != 0;
			if (!bad && (in->mode != 0) != rc_test(rc, i))
				problem(f, PR_INODE_BITMAP, "inode %llu is %s but marked %s",
					(unsigned long long)ino, in->mode ? "in use" : "free",
					rc_test(rc, i) ? "used" : "free");
		}
	}
	if (f->verbose)
		printf("  %llu inodes in use\n", (unsigned long long)used_inodes);
out:
	free(blk);
	free(rc);
	free(in);
	return r;
}

static void usage(FILE *o)
{
	fprintf(o, "usage: fsck.lunfs [-n | -y | -p] [-f] [-v] DEVICE\n"
		   "  -n  check only, change nothing (default when no -y/-p)\n"
		   "  -y  repair everything it can\n"
		   "  -p  repair what is safe without questions (same as -y here)\n"
		   "  -f  check even if the volume seems clean\n"
		   "  -v  verbose\n"
		   "exit: 0 clean, 1 corrected, 4 errors left, 8 operational error, 16 usage\n");
}

int main(int argc, char **argv)
{
	struct fsck f = {0};
	int c, nflag = 0;
	while ((c = getopt(argc, argv, "nypfvh")) != -1) {
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
		default:
			fprintf(stderr, "fsck.lunfs: usage: fsck.lunfs [-n | -y | -p] [-f] [-v] DEVICE (-h for help)\n");
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
	if ((r = phase1(&f)))
		goto operr;
	if ((r = phase2(&f, &live)))
		goto operr;
	if (live) {
		fprintf(stderr, "fsck.lunfs: %s is mounted by a live host; %s\n", path,
			f.repair ? "refusing to repair" : "checking a live volume can report false problems");
		if (f.repair) {
			dev_close(f.d);
			return FSCK_OPERR;
		}
	}
	if ((r = phase3(&f)) || (r = phase4(&f)))
		goto operr;
	dev_close(f.d);
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
	dev_close(f.d);
	return FSCK_OPERR;
}
