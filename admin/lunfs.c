/* lunfs: the administrator's command.
 *
 *   lunfs info  DEVICE [--json]         geometry, label, UUID, leases, space
 *   lunfs hosts DEVICE [--json]         heartbeat slots and how alive they look
 *   lunfs locks DEVICE [PATH] [--json]  held locks: object, mode, holders
 *
 * Every command only reads, so it works while hosts have the volume
 * mounted.  Exit status: 0 done, 1 error, 2 usage. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include "dev.h"
#include "fs/format.h"
#include "fs/lunfs.h"
#include "lock/lk.h"

static int json;

static void usage(FILE *f)
{
	fprintf(f, "usage: lunfs info DEVICE [--json]\n"
		   "       lunfs hosts DEVICE [--json]\n"
		   "       lunfs locks DEVICE [PATH] [--json]\n"
		   "DEVICE is an image file, a block device or iscsi://HOST[:PORT]/IQN/LUN.\n"
		   "Every command only reads; it is safe while the volume is mounted.\n");
}

/* Prints s as a JSON string. */
static void jstr(const char *s)
{
	putchar('"');
	for (; *s; s++) {
		if (*s == '"' || *s == '\\')
			printf("\\%c", *s);
		else if ((unsigned char)*s < 0x20)
			printf("\\u%04x", *s);
		else
			putchar(*s);
	}
	putchar('"');
}

static struct lk_params params(const struct lunfs_sb *s)
{
	struct lk_params p = {.hb_off = s->hb_off, .max_hosts = s->max_hosts, .lease_ms = s->lease_ms,
			      .hb_ms = s->hb_ms, .fence_margin_ms = s->fence_margin_ms,
			      .jnl_off = s->jnl_off, .jnl_size = s->jnl_size};
	memcpy(p.uuid, s->uuid, 16);
	return p;
}

static int open_vol(const char *path, struct dev **d, struct lunfs_sb *sb)
{
	struct dev_opts o = {.readonly = 1};
	const char *why = NULL;
	int used_backup = 0;
	int r = dev_open(path, &o, d);
	if (r) {
		fprintf(stderr, "lunfs: cannot open %s\n", *dev_last_error() ? dev_last_error() : path);
		return r;
	}
	r = lunfs_read_sb(*d, sb, 1, &used_backup, &why);
	if (r) {
		fprintf(stderr, "lunfs: %s: %s\n", path, why ? why : lunfs_strerror(r));
		dev_close(*d);
		return r;
	}
	if (used_backup)
		fprintf(stderr, "lunfs: %s: primary superblock damaged, using the backup (run fsck.lunfs)\n", path);
	return 0;
}

/* Free file blocks and inodes from the cluster headers on disk. */
static void free_counts(struct dev *d, const struct lunfs_sb *s, uint64_t *fb, uint64_t *fi)
{
	uint8_t *blk = dev_alloc(LUNFS_META_BS);
	struct lunfs_rc *rc = malloc(sizeof(*rc));
	*fb = *fi = 0;
	for (uint64_t c = 0; blk && rc && c < s->fc_count; c++)
		if (!dev_read(d, geom_fc_hdr(s, c), blk, LUNFS_META_BS) &&
		    !lunfs_rc_decode(blk, s->uuid, geom_fc_hdr(s, c), RC_FILE, geom_fc_entries(s, c),
				     c * s->fc_blocks, rc, NULL))
			*fb += rc->nfree;
	for (uint64_t g = 0; blk && rc && g < s->ig_count; g++)
		if (!dev_read(d, geom_ig_hdr(s, g), blk, LUNFS_META_BS) &&
		    !lunfs_rc_decode(blk, s->uuid, geom_ig_hdr(s, g), RC_INODE, s->ig_inodes,
				     g * s->ig_inodes, rc, NULL))
			*fi += rc->nfree;
	free(blk);
	free(rc);
}

static int cmd_info(const char *path)
{
	struct dev *d;
	struct lunfs_sb s;
	if (open_vol(path, &d, &s))
		return 1;
	uint64_t fb, fi;
	free_counts(d, &s, &fb, &fi);
	char u[37];
	lunfs_uuid_str(s.uuid, u);
	uint64_t total = (s.file_blocks - 1) * s.file_bs, freeb = fb * s.file_bs;
	if (json) {
		printf("{\"device\":");
		jstr(path);
		printf(",\"label\":");
		jstr(s.label);
		printf(",\"uuid\":\"%s\",\"version\":%u,\"size\":%llu,\"sector_size\":%u,"
		       "\"file_block_size\":%u,\"file_blocks\":%llu,\"max_hosts\":%u,"
		       "\"journal_size\":%llu,\"lease_ms\":%u,\"heartbeat_ms\":%u,\"fence_margin_ms\":%u,"
		       "\"inodes\":%llu,\"inodes_free\":%llu,\"capacity\":%llu,\"used\":%llu,\"free\":%llu}\n",
		       u, LUNFS_VERSION, (unsigned long long)s.dev_size, s.sector_size, s.file_bs,
		       (unsigned long long)s.file_blocks, s.max_hosts, (unsigned long long)s.jnl_size,
		       s.lease_ms, s.hb_ms, s.fence_margin_ms, (unsigned long long)geom_ninodes(&s),
		       (unsigned long long)fi, (unsigned long long)total,
		       (unsigned long long)(total - freeb), (unsigned long long)freeb);
	} else {
		lunfs_print_geometry(&s, stdout);
		printf("capacity:        %llu bytes (%.2f GiB)\n", (unsigned long long)total, total / 1073741824.0);
		printf("used:            %llu bytes (%.2f GiB, %.1f%%)\n", (unsigned long long)(total - freeb),
		       (total - freeb) / 1073741824.0, total ? 100.0 * (total - freeb) / total : 0.0);
		printf("free:            %llu bytes (%.2f GiB)\n", (unsigned long long)freeb, freeb / 1073741824.0);
		printf("inodes free:     %llu of %llu\n", (unsigned long long)fi,
		       (unsigned long long)geom_ninodes(&s));
	}
	dev_close(d);
	return 0;
}

@@WATCH@@
/* Path to inode number through a read-only mount (takes no slot). */
static int resolve(const char *dev, const char *path, uint64_t *ino)
{
	struct lunfs_mount_opts o = {.readonly = 1};
	struct lunfs_vol *v;
	const char *msg;
	int r = lunfs_mount(dev, &o, &v, &msg);
	if (r) {
		fprintf(stderr, "lunfs: %s: %s\n", dev, msg ? msg : lunfs_strerror(r));
		return r;
	}
	char *copy = strdup(path), *save, *tok;
	uint64_t cur = LUNFS_ROOT_INO;
	for (tok = strtok_r(copy, "/", &save); tok && !r; tok = strtok_r(NULL, "/", &save)) {
		struct lunfs_stat st;
		r = lunfs_lookup(v, cur, tok, &st);
		cur = st.ino;
	}
	free(copy);
	lunfs_unmount(v);
	if (r)
		fprintf(stderr, "lunfs: %s: %s\n", path, lunfs_strerror(r));
	*ino = cur;
	return r;
}

struct lock_scan {
	struct dev *d;
	const struct lunfs_sb *s;
	struct lunfs_hb *hb;
	int n;
};

static void show_lock(struct lock_scan *ls, uint64_t off, const char *kind, uint64_t id)
{
	uint32_t lbs = dev_lbs(ls->d);
	uint8_t *b = dev_alloc(lbs);
	struct lunfs_lock lk;
	if (!b || dev_read(ls->d, off, b, lbs) || lunfs_lock_decode(b, ls->s->uuid, off, &lk, NULL) ||
	    lk.mode == LK_FREE) {
		free(b);
		return;
	}
	free(b);
	if (json) {
		printf("%s{\"object\":\"%s\",\"id\":%llu,\"mode\":\"%s\",\"generation\":%llu,\"holders\":[",
		       ls->n ? "," : "", kind, (unsigned long long)id, lk_mode_name(lk.mode),
		       (unsigned long long)lk.gen);
	} else {
		printf("%-12s %-10llu %-13s ", kind, (unsigned long long)id, lk_mode_name(lk.mode));
	}
	for (uint32_t i = 0; i < lk.nholders; i++) {
		uint32_t sl = lk.holders[i].slot;
		const struct lunfs_hb *h = sl < ls->s->max_hosts ? &ls->hb[sl] : NULL;
		int current = h && h->state == HB_LIVE && h->mount_gen == lk.holders[i].mount_gen;
		const char *name = h && h->state != 0xffffffffu ? h->host_name : "?";
		if (json) {
			printf("%s{\"slot\":%u,\"host\":", i ? "," : "", sl);
			jstr(name);
			printf(",\"mount_gen\":%llu,\"open\":%s,\"stale\":%s}",
			       (unsigned long long)lk.holders[i].mount_gen,
			       (lk.holders[i].flags & LK_HOLD_OPEN) ? "true" : "false", current ? "false" : "true");
		} else {
			printf("%s%s(slot %u%s%s)", i ? ", " : "", name, sl,
			       (lk.holders[i].flags & LK_HOLD_OPEN) ? ", open" : "",
			       current ? "" : ", stale");
		}
	}
	if (json)
		printf("]}");
	else
		printf("\n");
	ls->n++;
}

static int cmd_locks(const char *path, const char *fpath)
{
	struct dev *d;
	struct lunfs_sb s;
	uint64_t only = 0;
	if (fpath && resolve(path, fpath, &only))
		return 1;
	if (open_vol(path, &d, &s))
		return 1;
	struct lk_params p = params(&s);
	struct lunfs_hb *hb = calloc(s.max_hosts, sizeof(*hb));
	for (uint32_t i = 0; i < s.max_hosts; i++)
		if (hb_read(d, &p, i, &hb[i]))
			memset(&hb[i], 0xff, sizeof(hb[i]));
	struct lock_scan ls = {d, &s, hb, 0};
	if (json)
		printf("{\"device\":\"%s\",\"locks\":[", path);
	else
		printf("%-12s %-10s %-13s %s\n", "OBJECT", "ID", "MODE", "HOLDERS");
	if (only) {
		show_lock(&ls, geom_ino_lock(&s, only), "inode", only);
	} else {
		show_lock(&ls, s.vlock_off, "volume", 0);
		for (uint64_t c = 0; c < s.fc_count; c++)
			show_lock(&ls, geom_fc_lock(&s, c), "file-cluster", c);
		for (uint64_t c = 0; c < s.mc_count; c++)
			show_lock(&ls, geom_mc_lock(&s, c), "meta-cluster", c);
		for (uint64_t g = 0; g < s.ig_count; g++)
			show_lock(&ls, geom_ig_lock(&s, g), "inode-group", g);
		for (uint64_t i = 1; i < geom_ninodes(&s); i++)
			show_lock(&ls, geom_ino_lock(&s, i), "inode", i);
	}
	if (json)
		printf("]}\n");
	else if (!ls.n)
		printf("(no locks held)\n");
	free(hb);
	dev_close(d);
	return 0;
}

@@MAIN@@
