/* lunfs: the administrator's command.
 *
 *   lunfs info  DEVICE [--json]         geometry, label, UUID, leases, space
 *   lunfs hosts DEVICE [--json]         heartbeat slots: live, dead, replaying, free
 *   lunfs top DEVICE [-d SECONDS] [-n N] [--json]
 *                                       live view: heartbeat age, locks, I/O rates
 *   lunfs locks DEVICE [PATH] [--json]  held locks: object, mode, holders
 *
 *   lunfs grow DEVICE [-s SIZE]         online grow into an enlarged image or LUN
 *
 *   lunfs ha register DISK -- COMMAND...  HA restart: register a VM disk,
 *   lunfs ha unregister|start DISK        forget it, arm it again,
 *   lunfs ha list MOUNT [--json]          list the registered disks,
 *   lunfs ha agent MOUNT [--host NAME] [--poll-ms MS]
 *                                       the agent that restarts a dead host's VMs
 *
 * Every command but grow and ha only reads; all of them work while hosts have the
 * volume mounted.  Exit status: 0 done, 1 error, 2 usage. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <time.h>
#include <unistd.h>
#include <getopt.h>
#include <dirent.h>
#include <ftw.h>
#include <sys/wait.h>
#include <limits.h>
#include "dev/dev.h"
#include "fs/version.h"
#include "format/format.h"
#include "fs/lunfs.h"
#include "util/parse.h"
#include "lock/lk.h"
#include "util/clock.h"

static int json;

static void usage(FILE *f)
{
	fprintf(f, "usage: lunfs info DEVICE [--json]\n"
		   "       lunfs hosts DEVICE [--json]\n"
		   "       lunfs top DEVICE [-d SECONDS] [-n ITERATIONS] [--json]\n"
		   "       lunfs locks DEVICE [PATH] [--json]\n"
		   "       lunfs handoff FILE HOST\n"
		   "       lunfs grow DEVICE [-s SIZE]\n"
		   "       lunfs ha register DISK -- COMMAND [ARG...]\n"
		   "       lunfs ha unregister|start DISK, lunfs ha list MOUNT [--json]\n"
		   "       lunfs ha agent MOUNT [--host NAME] [--poll-ms MS]\n"
		   "       lunfs -h|--help, lunfs -V|--version\n"
		   "DEVICE is an image file, a block device or iscsi://HOST[:PORT]/IQN/LUN, or a lunfs\n"
		   "mount point (its device is used); lunfs locks also takes a path in a mount.\n"
		   "info, hosts, top and locks only read; they are safe while the volume is mounted.\n"
		   "handoff passes the exclusive lock of FILE, open read-write on the host whose\n"
		   "lunfs mount FILE is in, to the live host HOST (live migration).\n"
		   "grow makes the volume span its enlarged device (or SIZE bytes, K/M/G/T) while\n"
		   "hosts have it mounted; it takes a heartbeat slot of its own for a moment.\n"
		   "ha registers VM disks ({mount}, {disk}, {host} in COMMAND are filled in by the\n"
		   "agent); the agent, one per host, restarts the VMs of a dead host on a survivor.\n");
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

/* ---- watching the heartbeat region ----
 *
 * Liveness is observed on our monotonic clock, the way peers observe it
 * (docs/LOCKING.md section 3): a slot "moves" when its state, mount
 * generation or counter changes between two of our reads.  The wall clock a
 * host writes into its slot is its own; it is shown for humans only and is
 * never compared with ours. */
struct watch {
	struct dev *d;
	const struct lunfs_sb *s;
	uint8_t *region;       /* max_hosts * LUNFS_SLOT_STRIDE bytes, as read */
	struct lunfs_hb *hb;   /* decoded slots (valid where !bad) */
	uint8_t *bad;          /* slot does not decode */
	uint8_t *moved;        /* slot moved since the watch began */
	uint64_t *changed_ms;  /* our clock: last change, or the first read */
	uint64_t *before_ms;   /* the read before that change: it moved after it */
	uint64_t start_ms;     /* first read */
	uint64_t read_ms;      /* last read */
	int nreads;
};

static void watch_free(struct watch *w)
{
	free(w->region);
	free(w->hb);
	free(w->bad);
	free(w->moved);
	free(w->changed_ms);
	free(w->before_ms);
}

static int watch_init(struct watch *w, struct dev *d, const struct lunfs_sb *s)
{
	memset(w, 0, sizeof(*w));
	w->d = d;
	w->s = s;
	w->region = dev_alloc((size_t)s->max_hosts * LUNFS_SLOT_STRIDE);
	w->hb = calloc(s->max_hosts, sizeof(*w->hb));
	w->bad = calloc(s->max_hosts, 1);
	w->moved = calloc(s->max_hosts, 1);
	w->changed_ms = calloc(s->max_hosts, sizeof(*w->changed_ms));
	w->before_ms = calloc(s->max_hosts, sizeof(*w->before_ms));
	if (!w->region || !w->hb || !w->bad || !w->moved || !w->changed_ms || !w->before_ms) {
		watch_free(w);
		fprintf(stderr, "lunfs: out of memory\n");
		return -1;
	}
	return 0;
}

/* Reads the whole heartbeat region once and notes which slots moved. */
static int watch_read(struct watch *w, const char *path)
{
	const struct lunfs_sb *s = w->s;
	int r = dev_read(w->d, s->hb_off, w->region, (size_t)s->max_hosts * LUNFS_SLOT_STRIDE);
	if (r) {
		fprintf(stderr, "lunfs: %s: cannot read the heartbeat region: %s\n", path,
			lunfs_strerror(r));
		return r;
	}
	uint64_t now = lunfs_now_ms();
	for (uint32_t i = 0; i < s->max_hosts; i++) {
		struct lunfs_hb hb;
		int bad = lunfs_hb_decode(w->region + (size_t)i * LUNFS_SLOT_STRIDE, s->uuid,
					  geom_hb(s, i), &hb, NULL) != 0;
		if (bad)
			memset(&hb, 0, sizeof(hb));
		if (!w->nreads) {
			w->changed_ms[i] = w->before_ms[i] = now;
		} else if (bad != w->bad[i] || hb.state != w->hb[i].state ||
			   hb.mount_gen != w->hb[i].mount_gen || hb.counter != w->hb[i].counter) {
			w->changed_ms[i] = now;
			w->before_ms[i] = w->read_ms;
			w->moved[i] = 1;
		}
		w->bad[i] = bad;
		w->hb[i] = hb;
	}
	if (!w->nreads++)
		w->start_ms = now;
	w->read_ms = now;
	return 0;
}

/* ms the slot's counter has stood still at our last read. */
static uint64_t still_ms(const struct watch *w, uint32_t i)
{
	return w->read_ms - w->changed_ms[i];
}

/* Sleeps ms milliseconds, or less when a signal arrives. */
static void nap_ms(uint64_t ms)
{
	struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000};
	nanosleep(&ts, NULL);
}

/* State of a slot as the watch sees it: free; live (LIVE, and we saw its
 * counter move within live_ms); silent (LIVE, but not seen moving lately,
 * and not yet still for a whole lease); dead (LIVE and still for at least a
 * lease on our clock); replaying; damaged. */
static const char *watch_state(const struct watch *w, uint32_t i, uint64_t live_ms)
{
	if (w->bad[i])
		return "damaged";
	if (w->hb[i].state == HB_FREE)
		return "free";
	if (w->hb[i].state == HB_REPLAYING)
		return "replaying";
	if (w->hb[i].state != HB_LIVE)
		return "damaged";
	uint64_t still = still_ms(w, i);
	if (still >= w->s->lease_ms)
		return "dead";
	/* live only once we saw it move: a slot that has not moved since we
	 * began to watch may belong to a host that died a moment ago */
	return w->moved[i] && still < live_ms ? "live" : "silent";
}

static int shown(const struct watch *w, uint32_t i)
{
	/* every slot ever used: a FREE slot keeps the last owner's name and
	 * mount generation; an all-zero one was never claimed */
	return w->bad[i] || w->hb[i].state != HB_FREE || w->hb[i].mount_gen != 0;
}

/* "by HOST slot N", with what the watch knows about the replayer. */
static void replayer_desc(const struct watch *w, uint32_t i, char *buf, size_t n)
{
	const struct lunfs_hb *h = &w->hb[i];
	uint32_t r = h->replayer_slot;
	if (r >= w->s->max_hosts) {
		snprintf(buf, n, "by slot %u, which does not exist", r);
		return;
	}
	if (r == i) {
		snprintf(buf, n, "by %s slot %u, its own journal after a crash", h->host_name, r);
		return;
	}
	const struct lunfs_hb *rh = &w->hb[r];
	const char *name = w->bad[r] ? "?" : rh->host_name;
	const char *note = "";
	if (w->bad[r])
		note = ", its slot is damaged";
	else if (rh->state == HB_FREE || rh->mount_gen != h->replayer_gen)
		note = ", which is gone";
	else if (rh->state == HB_LIVE && still_ms(w, r) >= w->s->lease_ms)
		note = ", which is dead";
	snprintf(buf, n, "by %s slot %u%s", *name ? name : "?", r, note);
}

static void pr_key_str(uint64_t key, char *buf, size_t n)
{
	if (key)
		snprintf(buf, n, "0x%016llx", (unsigned long long)key);
	else
		snprintf(buf, n, "-");
}

/* Opens the volume and starts a watch of its heartbeats.  Returns 0, or 1
 * after printing why. */
static int watch_open(const char *path, struct dev **d, struct lunfs_sb *s, struct watch *w)
{
	if (open_vol(path, d, s))
		return 1;
	if (watch_init(w, *d, s)) {
		dev_close(*d);
		return 1;
	}
	return 0;
}

/* ---- lunfs hosts ---- */

/* Watches every slot, re-reading the region every hb_ms / 2, until every
 * LIVE slot has moved, or for at most lease_ms + hb_ms: a LIVE slot that
 * stood still for a whole lease is dead. */
static int cmd_hosts(const char *path)
{
	struct dev *d;
	struct lunfs_sb s;
	struct watch w;
	if (watch_open(path, &d, &s, &w))
		return 1;
	int rc = 1;
	uint64_t step = s.hb_ms / 2 ? s.hb_ms / 2 : 1, limit = (uint64_t)s.lease_ms + s.hb_ms;
	if (watch_read(&w, path))
		goto out;
	for (;;) {
		int waiting = 0;
		for (uint32_t i = 0; i < s.max_hosts && !waiting; i++)
			waiting = !w.bad[i] && w.hb[i].state == HB_LIVE && !w.moved[i];
		uint64_t watched = lunfs_now_ms() - w.start_ms;
		if (!waiting || watched >= limit)
			break;
		nap_ms(limit - watched < step ? limit - watched : step);
		if (watch_read(&w, path))
			goto out;
	}
	uint64_t watched = w.read_ms - w.start_ms;
	struct timespec now;
	clock_gettime(CLOCK_REALTIME, &now);
	uint64_t now_ns = now.tv_sec * 1000000000ull + now.tv_nsec;
	int n = 0;
	if (json) {
		printf("{\"device\":");
		jstr(path);
		printf(",\"label\":");
		jstr(s.label);
		printf(",\"watched_ms\":%llu,\"lease_ms\":%u,\"heartbeat_ms\":%u,\"slots\":[",
		       (unsigned long long)watched, s.lease_ms, s.hb_ms);
	} else {
		printf("%-5s %-9s %-20s %-9s %-9s %-18s %s\n", "SLOT", "STATE", "HOST", "MOUNT-GEN",
		       "COUNTER", "PR-KEY", "HEARTBEAT");
	}
	for (uint32_t i = 0; i < s.max_hosts; i++) {
		if (!shown(&w, i))
			continue;
		const struct lunfs_hb *h = &w.hb[i];
		/* a LIVE slot that did not move was watched for lease + hb */
		const char *st = watch_state(&w, i, UINT64_MAX);
		uint64_t still = still_ms(&w, i);
		double age = h->wall_ns && now_ns > h->wall_ns ? (now_ns - h->wall_ns) / 1e9 : 0;
		char detail[256], rep[160] = "", key[24];
		pr_key_str(h->pr_key, key, sizeof(key));
		if (!strcmp(st, "damaged"))
			snprintf(detail, sizeof(detail), "slot does not decode (run fsck.lunfs)");
		else if (!strcmp(st, "replaying")) {
			replayer_desc(&w, i, rep, sizeof(rep));
			snprintf(detail, sizeof(detail), "replaying (%s)", rep);
		} else if (!strcmp(st, "free"))
			snprintf(detail, sizeof(detail), "-");
		else if (w.moved[i])
			snprintf(detail, sizeof(detail), "counter moved within the last %llu ms",
				 (unsigned long long)(w.read_ms - w.before_ms[i]));
		else
			snprintf(detail, sizeof(detail),
				 "counter stood still for %llu ms (lease %u ms); last write %.1f s ago by its clock",
				 (unsigned long long)still, s.lease_ms, age);
		const char *name = w.bad[i] ? "" : h->host_name;
		if (json) {
			printf("%s{\"slot\":%u,\"state\":\"%s\",\"host\":", n ? "," : "", i, st);
			jstr(name);
			printf(",\"mount_gen\":%llu,\"counter\":%llu,\"moving\":%s,\"still_ms\":%llu,"
			       "\"dead\":%s,\"pr_key\":",
			       (unsigned long long)h->mount_gen, (unsigned long long)h->counter,
			       w.moved[i] ? "true" : "false", (unsigned long long)still,
			       strcmp(st, "dead") ? "false" : "true");
			if (h->pr_key)
				printf("\"%s\"", key);
			else
				printf("null");
			printf(",\"replayer\":");
			if (!strcmp(st, "replaying")) {
				uint32_t r = h->replayer_slot;
				printf("{\"slot\":%u,\"host\":", r);
				jstr(r < s.max_hosts && !w.bad[r] ? w.hb[r].host_name : "");
				printf(",\"mount_gen\":%llu}", (unsigned long long)h->replayer_gen);
			} else {
				printf("null");
			}
			printf(",\"detail\":");
			jstr(detail);
			printf(",\"last_write_age_s\":%.1f}", age);
		} else {
			printf("%-5u %-9s %-20s %-9llu %-9llu %-18s %s\n", i, st, w.bad[i] ? "?" : name,
			       (unsigned long long)h->mount_gen, (unsigned long long)h->counter, key,
			       detail);
		}
		n++;
	}
	if (json)
		printf("]}\n");
	else if (!n)
		printf("(no host has mounted this volume)\n");
	rc = 0;
out:
	watch_free(&w);
	dev_close(d);
	return rc;
}

/* ---- lunfs top ---- */

static volatile sig_atomic_t stop_top;
static void on_stop(int sig)
{
	(void)sig;
	stop_top = 1;
}

/* Rates of one slot, from the counters it publishes. */
struct rates {
	int have_base, have_rate;
	uint64_t mount_gen, counter, wall_ns, our_ms;
	uint64_t reads, writes, locks;
	double rd, wr, lk; /* per second */
};

static void rates_update(struct rates *rt, const struct lunfs_hb *h, uint64_t now, uint64_t still,
			 uint32_t hb_ms)
{
	if (!rt->have_base || rt->mount_gen != h->mount_gen || h->st_reads < rt->reads ||
	    h->st_writes < rt->writes || h->st_locks < rt->locks) {
		/* first sight, or a new mount (its counters start again) */
		*rt = (struct rates){.have_base = 1, .mount_gen = h->mount_gen, .counter = h->counter,
				     .wall_ns = h->wall_ns, .our_ms = now, .reads = h->st_reads,
				     .writes = h->st_writes, .locks = h->st_locks};
		return;
	}
	if (h->counter == rt->counter) {
		/* nothing new published: keep the last rates while the host
		 * renews on time, else it does nothing we can see */
		if (still > 2ull * hb_ms)
			rt->rd = rt->wr = rt->lk = 0;
		return;
	}
	/* The counters accrued between the writer's two renewals: divide by
	 * the time between them on the writer's own clock (a difference of one
	 * clock, never compared with ours), unless that looks wrong (clock
	 * stepped), then by the time between our two reads. */
	double ours = (double)(now - rt->our_ms), dt = ours;
	if (h->wall_ns > rt->wall_ns) {
		double theirs = (h->wall_ns - rt->wall_ns) / 1e6;
		if (theirs <= 2 * ours + 2.0 * hb_ms)
			dt = theirs;
	}
	if (dt < 1)
		dt = 1;
	rt->rd = (h->st_reads - rt->reads) * 1000.0 / dt;
	rt->wr = (h->st_writes - rt->writes) * 1000.0 / dt;
	rt->lk = (h->st_locks - rt->locks) * 1000.0 / dt;
	rt->have_rate = 1;
	rt->counter = h->counter;
	rt->wall_ns = h->wall_ns;
	rt->our_ms = now;
	rt->reads = h->st_reads;
	rt->writes = h->st_writes;
	rt->locks = h->st_locks;
}

/* Names the object whose lock record is at off ("inode 321"). */
static void lock_object(const struct lunfs_sb *s, uint64_t off, char *buf, size_t n)
{
	if (off == s->vlock_off)
		snprintf(buf, n, "volume");
	else if (off >= s->fc_off && off < geom_fc_lock(s, s->fc_count) && (off - s->fc_off) % TBL_ENTRY == 0)
		snprintf(buf, n, "file-cluster %llu", (unsigned long long)((off - s->fc_off) / TBL_ENTRY));
	else if (off >= s->mc_off && off < geom_mc_lock(s, s->mc_count) && (off - s->mc_off) % TBL_ENTRY == 0)
		snprintf(buf, n, "meta-cluster %llu", (unsigned long long)((off - s->mc_off) / TBL_ENTRY));
	else if (off >= s->ig_off && off < geom_ig_lock(s, s->ig_count) && (off - s->ig_off) % TBL_ENTRY == 0)
		snprintf(buf, n, "inode-group %llu", (unsigned long long)((off - s->ig_off) / TBL_ENTRY));
	else if (off >= s->ino_off && off < geom_ino_lock(s, geom_ninodes(s)) &&
		 (off - s->ino_off) % TBL_ENTRY == 0)
		snprintf(buf, n, "inode %llu", (unsigned long long)((off - s->ino_off) / TBL_ENTRY));
	else
		snprintf(buf, n, "offset %llu", (unsigned long long)off);
}

static void fmt_rate(char *buf, size_t n, const struct rates *rt, double v)
{
	if (rt->have_rate)
		snprintf(buf, n, "%.1f", v);
	else
		snprintf(buf, n, "-");
}

static void jrate(const char *key, const struct rates *rt, double v)
{
	if (rt->have_rate)
		printf(",\"%s\":%.1f", key, v);
	else
		printf(",\"%s\":null", key);
}

/* ---- lunfs top: data I/O per host and per open file ----
 * Each host publishes its data I/O counters and those of its busiest open
 * files after its heartbeat record (docs/FORMAT.md, "Published I/O
 * statistics").  Rates come from two publications, over the time between
 * them on the writer's own clock. */

struct iorate {
	int have;
	double rd, wr, rmb, wmb;       /* per second */
	double lat, rlat, wlat, max;   /* ms */
	double qd, aqd;                /* in flight at the sample; average (Little's law) */
	double lkw, lkw_ms;            /* lock waits per second, ms per wait */
};

struct slotio {
	int have, stale;
	struct lunfs_hbstat cur;
	uint64_t changed_ms;           /* our clock: last new publication */
	struct iorate host, file[LUNFS_HBSTAT_FILES];
};

static double per_op(uint64_t ns, uint64_t ops)
{
	return ops ? ns / 1e6 / ops : 0;
}

static void iorate_of(struct iorate *r, const struct lunfs_iostat *a, const struct lunfs_iostat *b,
		      double dt_ms)
{
	if (b->rd_ops < a->rd_ops || b->wr_ops < a->wr_ops || b->lk_waits < a->lk_waits) {
		r->have = 0; /* a different open of the same inode */
		return;
	}
	double s = dt_ms / 1000;
	uint64_t rd = b->rd_ops - a->rd_ops, wr = b->wr_ops - a->wr_ops;
	uint64_t rns = b->rd_ns - a->rd_ns, wns = b->wr_ns - a->wr_ns, lk = b->lk_waits - a->lk_waits;
	*r = (struct iorate){.have = 1, .rd = rd / s, .wr = wr / s,
			     .rmb = (b->rd_bytes - a->rd_bytes) / 1048576.0 / s,
			     .wmb = (b->wr_bytes - a->wr_bytes) / 1048576.0 / s,
			     .lat = per_op(rns + wns, rd + wr), .rlat = per_op(rns, rd),
			     .wlat = per_op(wns, wr), .max = b->max_ns / 1e6, .qd = (double)b->inflight,
			     .aqd = (rns + wns) / 1e6 / dt_ms, .lkw = lk / s,
			     .lkw_ms = per_op(b->lk_wait_ns - a->lk_wait_ns, lk)};
}

static void slotio_update(struct slotio *io, const struct watch *w, uint32_t i, uint64_t now)
{
	const struct lunfs_sb *s = w->s;
	struct lunfs_hbstat st;
	if (w->bad[i] || w->hb[i].state != HB_LIVE) {
		io->have = 0;
		return;
	}
	if (lunfs_hbstat_decode(w->region + (size_t)i * LUNFS_SLOT_STRIDE + LUNFS_HBSTAT_OFF, s->uuid,
				geom_hb(s, i) + LUNFS_HBSTAT_OFF, &st, NULL))
		return; /* caught half-written: keep the last one */
	if (!st.mono_ms || st.mount_gen != w->hb[i].mount_gen) {
		io->have = 0; /* nothing published by this mount (yet) */
		return;
	}
	if (!io->have || st.mount_gen != io->cur.mount_gen || st.mono_ms < io->cur.mono_ms) {
		*io = (struct slotio){.have = 1, .cur = st, .changed_ms = now};
		return;
	}
	if (st.mono_ms == io->cur.mono_ms) {
		/* An idle host stops writing its statistics once they stood
		 * still twice: nothing new for a while means no I/O. */
		if (now - io->changed_ms > 2ull * s->hb_ms + 250 && !io->stale) {
			io->stale = 1;
			io->host = (struct iorate){.have = io->host.have, .qd = (double)io->cur.host.inflight};
			for (uint32_t k = 0; k < io->cur.nfiles; k++)
				io->file[k] = (struct iorate){.have = io->file[k].have,
							      .qd = (double)io->cur.files[k].io.inflight};
		}
		return;
	}
	double dt = (double)(st.mono_ms - io->cur.mono_ms);
	iorate_of(&io->host, &io->cur.host, &st.host, dt);
	for (uint32_t k = 0; k < st.nfiles; k++) {
		io->file[k].have = 0;
		for (uint32_t j = 0; j < io->cur.nfiles; j++)
			if (io->cur.files[j].ino == st.files[k].ino)
				iorate_of(&io->file[k], &io->cur.files[j].io, &st.files[k].io, dt);
	}
	io->cur = st;
	io->changed_ms = now;
	io->stale = 0;
}

/* Inode numbers to paths, found by walking the tree through a read-only
 * mount (it takes no slot and writes nothing). */
struct pathmap {
	const char *dev;
	struct lunfs_vol *v;
	int failed;
	uint64_t walked_ms;
	size_t n, cap;
	struct {
		uint64_t ino;
		char *path;
	} *e;
};

static const char *path_find(const struct pathmap *pm, uint64_t ino)
{
	for (size_t k = 0; k < pm->n; k++)
		if (pm->e[k].ino == ino)
			return pm->e[k].path;
	return NULL;
}

struct walk {
	struct pathmap *pm;
	const uint64_t *want;
	size_t nwant, visited;
	char **queue;      /* directories to read: "path\0" with the ino before it */
	uint64_t *qino;
	size_t qn, qcap;
	const char *dir;
};

static void path_add(struct pathmap *pm, uint64_t ino, const char *path)
{
	if (path_find(pm, ino))
		return;
	if (pm->n == pm->cap) {
		size_t cap = pm->cap ? 2 * pm->cap : 16;
		void *ne = realloc(pm->e, cap * sizeof(*pm->e));
		if (!ne)
			return;
		pm->e = ne;
		pm->cap = cap;
	}
	char *p = strdup(path);
	if (p) {
		pm->e[pm->n].ino = ino;
		pm->e[pm->n++].path = p;
	}
}

static int walk_entry(void *arg, const char *name, uint64_t ino, uint32_t type, uint64_t next)
{
	struct walk *wk = arg;
	(void)next;
	if (!strcmp(name, ".") || !strcmp(name, ".."))
		return 0;
	if (++wk->visited > 200000)
		return 1; /* a huge tree: give up on the rest */
	char path[PATH_MAX];
	snprintf(path, sizeof(path), "%s/%s", strcmp(wk->dir, "/") ? wk->dir : "", name);
	for (size_t k = 0; k < wk->nwant; k++)
		if (wk->want[k] == ino)
			path_add(wk->pm, ino, path);
	if (type == 4 /* DT_DIR */ && wk->qn < 100000) {
		if (wk->qn == wk->qcap) {
			size_t cap = wk->qcap ? 2 * wk->qcap : 64;
			char **q = realloc(wk->queue, cap * sizeof(*q));
			uint64_t *qi = q ? realloc(wk->qino, cap * sizeof(*qi)) : NULL;
			if (q)
				wk->queue = q;
			if (!qi)
				return 1;
			wk->qino = qi;
			wk->qcap = cap;
		}
		wk->qino[wk->qn] = ino;
		wk->queue[wk->qn++] = strdup(path);
	}
	return 0;
}

/* Finds the paths of the inodes in want that have none yet (at most one
 * walk every 5 s). */
static void path_resolve(struct pathmap *pm, const uint64_t *want, size_t nwant)
{
	size_t missing = 0;
	for (size_t k = 0; k < nwant; k++)
		missing += !path_find(pm, want[k]);
	uint64_t now = lunfs_now_ms();
	if (!missing || pm->failed || (pm->walked_ms && now - pm->walked_ms < 5000))
		return;
	pm->walked_ms = now;
	if (!pm->v) {
		struct lunfs_mount_opts o = {.readonly = 1};
		if (lunfs_mount(pm->dev, &o, &pm->v, NULL)) {
			pm->failed = 1;
			return;
		}
	}
	struct walk wk = {.pm = pm, .want = want, .nwant = nwant};
	char *dir = strdup("/");
	uint64_t ino = LUNFS_ROOT_INO;
	for (size_t head = 0; dir; head++) {
		wk.dir = dir;
		lunfs_readdir(pm->v, ino, 0, walk_entry, &wk);
		free(dir);
		dir = NULL;
		if (head < wk.qn) {
			dir = wk.queue[head];
			ino = wk.qino[head];
			wk.queue[head] = NULL;
		}
	}
	for (size_t k = 0; k < wk.qn; k++)
		free(wk.queue[k]);
	free(wk.queue);
	free(wk.qino);
}

static void pathmap_free(struct pathmap *pm)
{
	if (pm->v)
		lunfs_unmount(pm->v);
	for (size_t k = 0; k < pm->n; k++)
		free(pm->e[k].path);
	free(pm->e);
}

static void jnum(const char *key, int have, double v)
{
	if (have)
		printf(",\"%s\":%.3f", key, v);
	else
		printf(",\"%s\":null", key);
}

static void json_io(const struct iorate *r, const struct lunfs_iostat *c)
{
	printf("\"reads\":%llu,\"writes\":%llu,\"read_bytes\":%llu,\"write_bytes\":%llu,"
	       "\"in_flight\":%llu,\"lock_waits\":%llu",
	       (unsigned long long)c->rd_ops, (unsigned long long)c->wr_ops,
	       (unsigned long long)c->rd_bytes, (unsigned long long)c->wr_bytes,
	       (unsigned long long)c->inflight, (unsigned long long)c->lk_waits);
	jnum("reads_per_s", r->have, r->rd);
	jnum("writes_per_s", r->have, r->wr);
	jnum("iops", r->have, r->rd + r->wr);
	jnum("read_mb_per_s", r->have, r->rmb);
	jnum("write_mb_per_s", r->have, r->wmb);
	jnum("avg_lat_ms", r->have, r->lat);
	jnum("read_lat_ms", r->have, r->rlat);
	jnum("write_lat_ms", r->have, r->wlat);
	jnum("max_lat_ms", r->have, r->max);
	jnum("queue_depth", r->have, r->qd);
	jnum("avg_queue_depth", r->have, r->aqd);
	jnum("lock_waits_per_s", r->have, r->lkw);
	jnum("lock_wait_ms", r->have, r->lkw_ms);
}

static void slotio_json(const struct slotio *io, const struct pathmap *pm)
{
	if (!io->have) {
		printf(",\"io\":null,\"disks\":[]");
		return;
	}
	printf(",\"io\":{");
	json_io(&io->host, &io->cur.host);
	printf("},\"disks\":[");
	for (uint32_t k = 0; k < io->cur.nfiles; k++) {
		const char *p = path_find(pm, io->cur.files[k].ino);
		printf("%s{\"ino\":%llu,\"path\":", k ? "," : "",
		       (unsigned long long)io->cur.files[k].ino);
		if (p)
			jstr(p);
		else
			printf("null");
		printf(",");
		json_io(&io->file[k], &io->cur.files[k].io);
		printf("}");
	}
	printf("]");
}

static void fmt_num(char *buf, size_t n, int have, double v)
{
	if (have)
		snprintf(buf, n, v < 100 ? "%.2f" : "%.1f", v);
	else
		snprintf(buf, n, "-");
}

static void text_io(const char *host, const char *disk, const struct iorate *r, const char *eol)
{
	char c[9][24];
	double vals[9] = {r->rd, r->wr, r->rmb, r->wmb, r->lat, r->max, r->aqd, r->lkw, r->lkw_ms};
	for (int k = 0; k < 9; k++)
		fmt_num(c[k], sizeof(c[k]), r->have, vals[k]);
	printf("%-16s %-30s %8s %8s %8s %8s %7s %7s %5s %7s %7s%s", host, disk, c[0], c[1], c[2], c[3],
	       c[4], c[5], c[6], c[7], c[8], eol);
}

/* The disk view: one line per host (all its files), then one per open
 * file it publishes. */
static void slotio_text(const struct watch *w, const struct slotio *io, const struct pathmap *pm,
			const char *eol)
{
	const struct lunfs_sb *s = w->s;
	printf("%s%-16s %-30s %8s %8s %8s %8s %7s %7s %5s %7s %7s%s", eol, "HOST", "DISK", "READS/s",
	       "WRITES/s", "MBREAD/s", "MBWRTN/s", "LAT-ms", "MAX-ms", "QUED", "LKWT/s", "LKWT-ms",
	       eol);
	for (uint32_t i = 0; i < s->max_hosts; i++) {
		if (!io[i].have)
			continue;
		const char *host = w->hb[i].host_name;
		text_io(host, "(all files)", &io[i].host, eol);
		for (uint32_t k = 0; k < io[i].cur.nfiles; k++) {
			char disk[PATH_MAX + 32];
			const char *p = path_find(pm, io[i].cur.files[k].ino);
			if (p)
				snprintf(disk, sizeof(disk), "%s", p);
			else
				snprintf(disk, sizeof(disk), "inode %llu",
					 (unsigned long long)io[i].cur.files[k].ino);
			text_io(host, disk, &io[i].file[k], eol);
		}
	}
}

/* Prints one refresh.  screen: clear and redraw in place (a terminal). */
static void top_print(const char *path, const struct watch *w, struct rates *rt,
		      const struct slotio *io, const struct pathmap *pm, uint64_t live_ms, int iter,
		      int screen)
{
	const struct lunfs_sb *s = w->s;
	struct timespec now;
	clock_gettime(CLOCK_REALTIME, &now);
	struct tm tm;
	localtime_r(&now.tv_sec, &tm);
	char hhmmss[16], iso[40];
	strftime(hhmmss, sizeof(hhmmss), "%H:%M:%S", &tm);
	strftime(iso, sizeof(iso), "%Y-%m-%dT%H:%M:%S%z", &tm);
	int nlive = 0, nsilent = 0, ndead = 0, nrep = 0, nbad = 0, nhosts = 0;
	for (uint32_t i = 0; i < s->max_hosts; i++) {
		const char *st = watch_state(w, i, live_ms);
		if (!strcmp(st, "free"))
			continue;
		nhosts++;
		nlive += !strcmp(st, "live");
		nsilent += !strcmp(st, "silent");
		ndead += !strcmp(st, "dead");
		nrep += !strcmp(st, "replaying");
		nbad += !strcmp(st, "damaged");
	}
	int rows = 0;
	if (screen) {
		struct winsize ws;
		if (!ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) && ws.ws_row > 4)
			rows = ws.ws_row - 3; /* header, column names, "more" */
		printf("\033[H");
	}
	const char *eol = screen ? "\033[K\n" : "\n";
	if (json) {
		printf("{\"device\":");
		jstr(path);
		printf(",\"label\":");
		jstr(s->label);
		printf(",\"time\":\"%s\",\"unix_ms\":%llu,\"iteration\":%d,\"lease_ms\":%u,"
		       "\"heartbeat_ms\":%u,\"hosts\":%d,\"live\":%d,\"silent\":%d,\"dead\":%d,"
		       "\"replaying\":%d,\"damaged\":%d,\"slots\":[",
		       iso, (unsigned long long)now.tv_sec * 1000 + now.tv_nsec / 1000000, iter,
		       s->lease_ms, s->hb_ms, nhosts, nlive, nsilent, ndead, nrep, nbad);
	} else {
		printf("lunfs top - %s  %s  hosts: %d (%d live, %d silent, %d dead, %d replaying%s)  "
		       "lease %u ms, heartbeat %u ms%s",
		       *s->label ? s->label : "(no label)", hhmmss, nhosts, nlive, nsilent, ndead, nrep,
		       nbad ? ", some damaged" : "", s->lease_ms, s->hb_ms, eol);
		printf("%4s %-16s %-9s %7s %5s %5s %8s %9s %9s  %s%s", "SLOT", "HOST", "STATE",
		       "HB-AGE", "MGEN", "HELD", "LOCKS/s", "READS/s", "WRITES/s", "WAIT", eol);
	}
	int n = 0, left = 0;
	for (uint32_t i = 0; i < s->max_hosts; i++) {
		const char *st = watch_state(w, i, live_ms);
		if (!strcmp(st, "free"))
			continue;
		const struct lunfs_hb *h = &w->hb[i];
		const char *name = w->bad[i] ? "?" : h->host_name;
		uint64_t age = still_ms(w, i);
		char want[64] = "-";
		if (!w->bad[i] && h->want_off)
			lock_object(s, h->want_off, want, sizeof(want));
		if (json) {
			printf("%s{\"slot\":%u,\"host\":", n ? "," : "", i);
			jstr(w->bad[i] ? "" : name);
			printf(",\"state\":\"%s\",\"hb_age_ms\":%llu,\"hb_age_known\":%s,\"mount_gen\":%llu,"
			       "\"counter\":%llu,\"held\":%llu,\"reads\":%llu,\"writes\":%llu,\"locks\":%llu",
			       st, (unsigned long long)age, w->moved[i] ? "true" : "false",
			       (unsigned long long)h->mount_gen, (unsigned long long)h->counter,
			       (unsigned long long)h->st_held, (unsigned long long)h->st_reads,
			       (unsigned long long)h->st_writes, (unsigned long long)h->st_locks);
			jrate("locks_per_s", &rt[i], rt[i].lk);
			jrate("reads_per_s", &rt[i], rt[i].rd);
			jrate("writes_per_s", &rt[i], rt[i].wr);
			printf(",\"waiting\":%s,\"want_off\":%llu,\"want\":", h->want_off ? "true" : "false",
			       (unsigned long long)h->want_off);
			if (h->want_off)
				jstr(want);
			else
				printf("null");
			if (h->state == HB_REPLAYING && !w->bad[i])
				printf(",\"replayer_slot\":%u", h->replayer_slot);
			slotio_json(&io[i], pm);
			printf("}");
		} else if (!rows || n < rows) {
			char ag[24], lk[24], rd[24], wr[24];
			snprintf(ag, sizeof(ag), "%s%llu", w->moved[i] ? "" : ">",
				 (unsigned long long)age);
			fmt_rate(lk, sizeof(lk), &rt[i], rt[i].lk);
			fmt_rate(rd, sizeof(rd), &rt[i], rt[i].rd);
			fmt_rate(wr, sizeof(wr), &rt[i], rt[i].wr);
			printf("%4u %-16s %-9s %7s %5llu %5llu %8s %9s %9s  %s%s", i, name, st, ag,
			       (unsigned long long)h->mount_gen, (unsigned long long)h->st_held, lk, rd,
			       wr, want, eol);
		} else {
			left++;
		}
		n++;
	}
	if (json)
		printf("]}\n");
	else if (!n)
		printf("(no host has the volume mounted)%s", eol);
	if (left)
		printf("... %d more%s", left, eol);
	if (!json && n)
		slotio_text(w, io, pm, eol);
	if (screen)
		printf("\033[J");
	else if (!json)
		printf("\n");
	fflush(stdout);
}

/* Paths for the files the hosts publish. */
static void top_resolve(const struct watch *w, const struct slotio *io, struct pathmap *pm)
{
	uint64_t want[256];
	size_t n = 0;
	for (uint32_t i = 0; i < w->s->max_hosts; i++)
		for (uint32_t k = 0; io[i].have && k < io[i].cur.nfiles && n < 256; k++)
			want[n++] = io[i].cur.files[k].ino;
	path_resolve(pm, want, n);
}

/* A live view of the hosts, refreshed every delay_ms: one line per
 * non-free slot.  iters 0: until interrupted. */
static int cmd_top(const char *path, uint64_t delay_ms, long iters)
{
	struct dev *d;
	struct lunfs_sb s;
	struct watch w;
	if (watch_open(path, &d, &s, &w))
		return 1;
	struct rates *rt = calloc(s.max_hosts, sizeof(*rt));
	struct slotio *io = calloc(s.max_hosts, sizeof(*io));
	struct pathmap pm = {.dev = path};
	int rc = 1, screen = !json && !iters && isatty(STDOUT_FILENO);
	if (!rt || !io) {
		fprintf(stderr, "lunfs: out of memory\n");
		goto out;
	}
	struct sigaction sa = {.sa_handler = on_stop}; /* no SA_RESTART: sleeps end */
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGHUP, &sa, NULL);
	/* poll the heartbeats more often than they renew, so a heartbeat's
	 * age is known to within a quarter of a heartbeat */
	uint64_t poll = s.hb_ms / 4;
	poll = poll < 25 ? 25 : poll > 250 ? 250 : poll;
	/* a LIVE slot that moved within two heartbeats (and a poll) is live */
	uint64_t live_ms = 2ull * s.hb_ms + poll;
	/* the first refresh waits, if it has to, until every LIVE slot moved
	 * or was watched long enough to call it silent */
	uint64_t first_min = live_ms < s.lease_ms ? live_ms : s.lease_ms;
	if (watch_read(&w, path))
		goto out;
	for (uint32_t i = 0; i < s.max_hosts; i++) {
		if (!w.bad[i] && w.hb[i].state == HB_LIVE)
			rates_update(&rt[i], &w.hb[i], w.read_ms, 0, s.hb_ms);
		slotio_update(&io[i], &w, i, w.read_ms);
	}
	if (screen)
		printf("\033[H\033[2J");
	uint64_t next = w.start_ms + delay_ms;
	for (int iter = 1; !stop_top && (!iters || iter <= iters); iter++) {
		for (;;) {
			uint64_t now = lunfs_now_ms();
			int due = now >= next;
			if (due && iter == 1) {
				for (uint32_t i = 0; i < s.max_hosts && due; i++)
					due = w.bad[i] || w.hb[i].state != HB_LIVE || w.moved[i] ||
					      now - w.start_ms >= first_min;
			}
			if (due || stop_top)
				break;
			uint64_t nap = next > now && next - now < poll ? next - now : poll;
			nap_ms(nap);
			if (stop_top)
				break;
			if (watch_read(&w, path))
				goto out;
		}
		if (stop_top)
			break;
		if (lunfs_now_ms() - w.read_ms > poll / 2 && watch_read(&w, path))
			goto out;
		for (uint32_t i = 0; i < s.max_hosts; i++) {
			/* a REPLAYING slot is written by its replayer: no rates */
			if (w.bad[i] || w.hb[i].state != HB_LIVE)
				rt[i].have_base = rt[i].have_rate = 0;
			else
				rates_update(&rt[i], &w.hb[i], w.read_ms, still_ms(&w, i), s.hb_ms);
			slotio_update(&io[i], &w, i, w.read_ms);
		}
		top_resolve(&w, io, &pm);
		top_print(path, &w, rt, io, &pm, live_ms, iter, screen);
		uint64_t now = lunfs_now_ms();
		next += delay_ms;
		if (next < now) /* we fell behind (slow device): do not catch up */
			next = now + delay_ms;
	}
	rc = 0;
out:
	fflush(stdout);
	free(rt);
	free(io);
	pathmap_free(&pm);
	watch_free(&w);
	dev_close(d);
	return rc;
}

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
	struct lk_params p = lk_params_of(&s);
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

/* lunfs handoff FILE HOST: flushes FILE's dirty pages, then asks the
 * daemon of the mount FILE lives in to hand its lock over (a setxattr the
 * daemon takes as an order, LUNFS_HANDOFF_XATTR). */
/* Non-zero when fd is on a lunfs FUSE mount (its device number names a
 * "fuse.lunfs" line of /proc/self/mountinfo). */
static int on_lunfs(int fd)
{
	struct stat st;
	char line[4096];
	int found = 0;
	FILE *f = fopen("/proc/self/mountinfo", "r");
	if (!f || fstat(fd, &st)) {
		if (f)
			fclose(f);
		return 0;
	}
	while (!found && fgets(line, sizeof(line), f)) {
		unsigned maj, min;
		char *sep = strstr(line, " - ");
		if (sscanf(line, "%*u %*u %u:%u", &maj, &min) == 2 && sep &&
		    maj == major(st.st_dev) && min == minor(st.st_dev))
			found = !strncmp(sep + 3, "fuse.lunfs ", 11);
	}
	fclose(f);
	return found;
}

static int cmd_handoff(const char *file, const char *host)
{
	int fd = open(file, O_RDONLY);
	if (fd < 0) {
		fprintf(stderr, "lunfs: %s: %s\n", file, strerror(errno));
		return 1;
	}
	if (!on_lunfs(fd)) {
		fprintf(stderr, "lunfs: %s: not a file in a lunfs mount\n", file);
		close(fd);
		return 1;
	}
	if (fsync(fd)) {
		fprintf(stderr, "lunfs: %s: flushing before the handoff: %s\n", file, strerror(errno));
		close(fd);
		return 1;
	}
	if (fsetxattr(fd, LUNFS_HANDOFF_XATTR, host, strlen(host), 0)) {
		int e = errno;
		const char *why = e == ENOENT	 ? "no live host of that name is mounted"
				  : e == ENOLCK	 ? "the file is not open read-write on this host"
				  : e == EINVAL	 ? "that is this host"
				  : e == ENOTSUP ? "not a file in a lunfs mount"
						 : strerror(e);
		fprintf(stderr, "lunfs: handoff of %s to %s: %s\n", file, host, why);
		close(fd);
		return 1;
	}
	close(fd);
	printf("%s: handed over to host %s\n", file, host);
	return 0;
}

/* Online grow: a mount of its own (heartbeat slot "lunfs-grow@HOST"), so
 * every write it makes is lease-guarded, then lunfs_grow. */
static int cmd_grow(const char *path, uint64_t size)
{
	char host[LUNFS_HOSTNAME_LEN + 1] = "lunfs-grow@", hn[LUNFS_HOSTNAME_LEN] = "";
	struct lunfs_mount_opts mo = {.host = host};
	struct lunfs_grow_info gi;
	struct lunfs_vol *v;
	const char *msg = NULL;
	gethostname(hn, sizeof(hn) - 1);
	strncat(host, hn, LUNFS_HOSTNAME_LEN - strlen(host));
	int r = lunfs_mount(path, &mo, &v, &msg);
	if (r) {
		fprintf(stderr, "lunfs: grow %s: %s\n", path, msg ? msg : lunfs_strerror(r));
		return 1;
	}
	r = lunfs_grow(v, size, &gi, &msg);
	int r2 = lunfs_unmount(v);
	if (r == -EFBIG) {
		fprintf(stderr, "lunfs: grow %s: %s: at most %llu bytes (mkfs.lunfs --max-size sets the room)\n",
			path, msg, (unsigned long long)gi.max_size);
		return 1;
	}
	if (r) {
		fprintf(stderr, "lunfs: grow %s: %s\n", path, msg ? msg : lunfs_strerror(r));
		return 1;
	}
	if (json)
		printf("{\"old_size\":%llu,\"new_size\":%llu,\"old_file_blocks\":%llu,"
		       "\"new_file_blocks\":%llu}\n",
		       (unsigned long long)gi.old_size, (unsigned long long)gi.new_size,
		       (unsigned long long)gi.old_blocks, (unsigned long long)gi.new_blocks);
	else
		printf("%s: grown from %llu to %llu bytes (%llu to %llu file blocks)\n", path,
		       (unsigned long long)gi.old_size, (unsigned long long)gi.new_size,
		       (unsigned long long)gi.old_blocks, (unsigned long long)gi.new_blocks);
	if (r2)
		fprintf(stderr, "lunfs: grow %s: grown, but the unmount after it failed: %s\n", path,
			lunfs_strerror(r2));
	return 0;
}

/* mountinfo escapes space, tab, newline and backslash as \ooo */
static void unescape_octal(char *s)
{
	char *d = s;
	for (; *s; s++, d++) {
		if (s[0] == '\\' && s[1] >= '0' && s[1] <= '3' && s[2] >= '0' && s[2] <= '7' &&
		    s[3] >= '0' && s[3] <= '7') {
			*d = (char)((s[1] - '0') * 64 + (s[2] - '0') * 8 + (s[3] - '0'));
			s += 3;
		} else {
			*d = *s;
		}
	}
	*d = 0;
}

static int usage_error(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fputs("lunfs: ", stderr);
	vfprintf(stderr, fmt, ap);
	fputs(" (-h for help)\n", stderr);
	va_end(ap);
	return 2;
}

/* DEVICE may be given as a lunfs mount point, or a path in one: the
 * mount's device (its source in mountinfo) is read, and a path below the
 * mount point becomes the PATH in the volume (for locks).  Returns 0 and
 * fills dev/path (malloc'd), or 1 when arg is in no lunfs mount. */
static int mount_of(const char *arg, char **dev, char **path)
{
	char *real = realpath(arg, NULL), *line = NULL;
	size_t cap = 0, best = 0;
	FILE *m = fopen("/proc/self/mountinfo", "r");
	*dev = *path = NULL;
	if (!real || !m)
		goto out;
	while (getline(&line, &cap, m) > 0) {
		/* ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTS [OPTIONAL...] - TYPE SOURCE SUPER-OPTS */
		char mp[4096], type[64], src[4096];
		const char *dash = strstr(line, " - ");
		if (!dash || sscanf(line, "%*s %*s %*s %*s %4095s", mp) != 1 ||
		    sscanf(dash + 3, "%63s %4095s", type, src) != 2 || strcmp(type, "fuse.lunfs"))
			continue;
		unescape_octal(mp);
		unescape_octal(src);
		size_t n = strlen(mp);
		if (n < best || strncmp(real, mp, n) || (real[n] && real[n] != '/' && n > 1))
			continue;
		best = n;
		free(*dev);
		free(*path);
		*dev = strdup(src);
		*path = strdup(real[n] ? real + (n > 1 ? n : 0) : "/");
	}
out:
	free(line);
	free(real);
	if (m)
		fclose(m);
	return *dev ? 0 : 1;
}

/* ---- lunfs ha: restart a dead host's VMs on a survivor ----
 *
 * A VM disk is registered by two xattrs on the disk file, written through a
 * mount (docs/ADMIN.md, "HA restart"; docs/LOCKING.md section 16):
 *   HA_CMD    the command that starts the VM, its arguments NUL-separated;
 *             {mount}, {disk} and {host} in an argument become the agent's
 *             mount point, the disk's path in it and the agent's host name
 *   HA_OWNER  "HOST SLOT GEN": the mount (heartbeat slot and mount
 *             generation) of the host whose agent runs it; absent: start it
 *             anywhere; "stopped" or "failed ...": its VM exited, leave it.
 * One agent per host (lunfs ha agent MOUNT) polls the registered disks.  A
 * disk whose owner's mount is gone (its slot FREE, or claimed again with
 * another generation: recovered) is restarted by the agent that wins its
 * read-write open: lunfs grants that open to one host only, and only once
 * the old owner's locks were freed by its recovery.  The agent keeps its
 * descriptor until the VM has the disk open (the lock is the host's, so
 * QEMU's own read-write open beside it succeeds), then closes it. */
#define HA_CMD "user.lunfs.ha.cmd"
#define HA_OWNER "user.lunfs.ha.owner"
#define HA_CMD_MAX 4000

static volatile sig_atomic_t stop_agent;
static void on_agent_stop(int sig)
{
	(void)sig;
	stop_agent = 1;
}

/* The agent's log line: a wall-clock stamp (as the daemon's log), then
 * the message. */
static void ha_log(const char *fmt, ...)
{
	struct timespec ts;
	struct tm tm;
	char stamp[40];
	va_list ap;
	clock_gettime(CLOCK_REALTIME, &ts);
	localtime_r(&ts.tv_sec, &tm);
	size_t n = strftime(stamp, sizeof(stamp), "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(stamp + n, sizeof(stamp) - n, ".%03ld", ts.tv_nsec / 1000000);
	printf("%s lunfs ha: ", stamp);
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	putchar('\n');
	fflush(stdout);
}

/* Reads xattr name of path into buf (NUL-terminated); returns its length,
 * or -errno (-ENODATA: not set). */
static int ha_get(const char *path, const char *name, char *buf, size_t size)
{
	ssize_t n = getxattr(path, name, buf, size - 1);
	if (n < 0)
		return -errno;
	buf[n] = 0;
	return (int)n;
}

/* Opens path and checks that it is a regular file in a lunfs mount; -1
 * after printing why. */
static int ha_open_disk(const char *path)
{
	struct stat st;
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		fprintf(stderr, "lunfs: %s: %s\n", path, strerror(errno));
		return -1;
	}
	if (fstat(fd, &st) || !S_ISREG(st.st_mode) || !on_lunfs(fd)) {
		fprintf(stderr, "lunfs: %s: not a file in a lunfs mount\n", path);
		close(fd);
		return -1;
	}
	return fd;
}

static int ha_register(const char *disk, int argc, char **argv)
{
	char val[HA_CMD_MAX];
	size_t len = 0;
	for (int i = 0; i < argc; i++) {
		size_t n = strlen(argv[i]) + 1;
		if (len + n > sizeof(val))
			return usage_error("ha register: the command is longer than %d bytes", HA_CMD_MAX);
		memcpy(val + len, argv[i], n);
		len += n;
	}
	int fd = ha_open_disk(disk);
	if (fd < 0)
		return 1;
	int rc = 1;
	if (fsetxattr(fd, HA_CMD, val, len, 0)) {
		fprintf(stderr, "lunfs: ha register %s: %s\n", disk,
			errno == EBUSY ? "the disk is open read-write on another host; register it there"
				       : strerror(errno));
		goto out;
	}
	printf("%s: registered; an agent starts it where the disk is free\n", disk);
	rc = 0;
out:
	close(fd);
	return rc;
}

/* unregister: both xattrs go; start: the owner goes (a stopped or failed
 * VM is started again by the agent that wins its disk). */
static int ha_unset(const char *disk, int all)
{
	int fd = ha_open_disk(disk);
	if (fd < 0)
		return 1;
	int rc = 1;
	if (fremovexattr(fd, HA_OWNER) && errno != ENODATA) {
		fprintf(stderr, "lunfs: ha %s %s: %s\n", all ? "unregister" : "start", disk,
			errno == EBUSY ? "the disk is open read-write on another host" : strerror(errno));
		goto out;
	}
	if (all && fremovexattr(fd, HA_CMD) && errno != ENODATA) {
		fprintf(stderr, "lunfs: ha unregister %s: %s\n", disk, strerror(errno));
		goto out;
	}
	printf("%s: %s\n", disk, all ? "unregistered (a running VM goes on)" : "to be started by an agent");
	rc = 0;
out:
	close(fd);
	return rc;
}

/* The registered disks under a mount, found by a walk (nftw has no
 * argument for its callback). */
static struct {
	char **path;
	size_t n, cap;
} ha_found;

static int ha_walk_one(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
	(void)ftw;
	char c;
	if (type != FTW_F || !S_ISREG(st->st_mode))
		return 0;
	if (getxattr(path, HA_CMD, &c, 0) < 0)
		return 0;
	if (ha_found.n == ha_found.cap) {
		size_t cap = ha_found.cap ? 2 * ha_found.cap : 16;
		char **p = realloc(ha_found.path, cap * sizeof(*p));
		if (!p)
			return -1;
		ha_found.path = p;
		ha_found.cap = cap;
	}
	if (!(ha_found.path[ha_found.n] = strdup(path)))
		return -1;
	ha_found.n++;
	return 0;
}

static void ha_found_free(void)
{
	for (size_t i = 0; i < ha_found.n; i++)
		free(ha_found.path[i]);
	ha_found.n = 0;
}

/* Fills ha_found with the registered disks under mnt; 0 or -1. */
static int ha_walk(const char *mnt)
{
	ha_found_free();
	return nftw(mnt, ha_walk_one, 16, FTW_PHYS | FTW_MOUNT) ? -1 : 0;
}

/* Prints a NUL-separated command as words; quoted where needed. */
static void ha_print_cmd(const char *cmd, int len)
{
	for (int i = 0; i < len; i += (int)strlen(cmd + i) + 1) {
		const char *a = cmd + i;
		int plain = *a && !a[strcspn(a, " \t\n'\"\\$`*?;&|<>()")];
		if (json)
			jstr(a);
		else if (plain)
			fputs(a, stdout);
		else {
			putchar('\'');
			for (; *a; a++) {
				if (*a == '\'')
					fputs("'\\''", stdout);
				else
					putchar(*a);
			}
			putchar('\'');
		}
		if (i + (int)strlen(cmd + i) + 1 < len)
			putchar(json ? ',' : ' ');
	}
}

static int ha_list(const char *mnt)
{
	char *real = realpath(mnt, NULL);
	char *dev = NULL, *sub = NULL;
	if (!real || mount_of(real, &dev, &sub)) {
		fprintf(stderr, "lunfs: %s: not a lunfs mount\n", mnt);
		free(real);
		return 1;
	}
	int rc = 1;
	if (ha_walk(real)) {
		fprintf(stderr, "lunfs: ha list %s: %s\n", mnt, strerror(errno));
		goto out;
	}
	if (json)
		printf("{\"mount\":");
	if (json)
		jstr(real);
	if (json)
		printf(",\"disks\":[");
	else
		printf("%-32s %-28s %s\n", "DISK", "OWNER", "COMMAND");
	for (size_t i = 0; i < ha_found.n; i++) {
		char cmd[HA_CMD_MAX + 1], owner[256];
		const char *p = ha_found.path[i] + strlen(real);
		int n = ha_get(ha_found.path[i], HA_CMD, cmd, sizeof(cmd));
		if (n < 0)
			continue;
		if (ha_get(ha_found.path[i], HA_OWNER, owner, sizeof(owner)) < 0)
			strcpy(owner, "");
		if (json) {
			printf("%s{\"disk\":", i ? "," : "");
			jstr(*p ? p : "/");
			printf(",\"owner\":");
			jstr(owner);
			printf(",\"command\":[");
			ha_print_cmd(cmd, n);
			printf("]}");
		} else {
			printf("%-32s %-28s ", p, *owner ? owner : "(not started)");
			ha_print_cmd(cmd, n);
			putchar('\n');
		}
	}
	if (json)
		printf("]}\n");
	rc = 0;
out:
	ha_found_free();
	free(real);
	free(dev);
	free(sub);
	return rc;
}

/* The PID of a process of this host, other than us, that has path open
 * for writing, or 0. */
static pid_t ha_local_writer(const char *path)
{
	DIR *proc = opendir("/proc");
	struct dirent *e;
	pid_t found = 0;
	if (!proc)
		return 0;
	while (!found && (e = readdir(proc))) {
		char dir[64], link[PATH_MAX], fdinfo[320], line[128];
		pid_t pid = (pid_t)atoi(e->d_name);
		if (pid <= 0 || pid == getpid())
			continue;
		snprintf(dir, sizeof(dir), "/proc/%d/fd", pid);
		DIR *fds = opendir(dir);
		struct dirent *f;
		while (fds && !found && (f = readdir(fds))) {
			char fdpath[320];
			snprintf(fdpath, sizeof(fdpath), "%s/%s", dir, f->d_name);
			ssize_t n = readlink(fdpath, link, sizeof(link) - 1);
			if (n < 0)
				continue;
			link[n] = 0;
			if (strcmp(link, path))
				continue;
			snprintf(fdinfo, sizeof(fdinfo), "/proc/%d/fdinfo/%s", pid, f->d_name);
			FILE *fi = fopen(fdinfo, "r");
			unsigned flags = 0;
			while (fi && fgets(line, sizeof(line), fi))
				if (sscanf(line, "flags: %o", &flags) == 1)
					break;
			if (fi)
				fclose(fi);
			if ((flags & O_ACCMODE) != O_RDONLY)
				found = pid;
		}
		if (fds)
			closedir(fds);
	}
	closedir(proc);
	return found;
}

/* This host's identity: the name given, else the host= option of the
 * daemon serving mnt (its PID from PID xattr of the root), else the
 * daemon's default (/etc/machine-id). */
static int ha_host_of(const char *mnt, char *host, size_t size)
{
	char pid[24], path[64], *args = NULL;
	size_t cap = 0;
	ssize_t n = getxattr(mnt, "trusted.lunfs.daemon_pid", pid, sizeof(pid) - 1);
	FILE *f = NULL;
	*host = 0;
	if (n > 0) {
		pid[n] = 0;
		snprintf(path, sizeof(path), "/proc/%s/cmdline", pid);
		f = fopen(path, "r");
	}
	while (f && getdelim(&args, &cap, 0, f) > 0) {
		for (char *save, *o = strtok_r(args, ",", &save); o; o = strtok_r(NULL, ",", &save))
			if (!strncmp(o, "host=", 5))
				snprintf(host, size, "%s", o + 5);
	}
	if (f)
		fclose(f);
	free(args);
	if (!*host && (f = fopen("/etc/machine-id", "r"))) {
		if (fgets(host, (int)size, f))
			host[strcspn(host, "\n")] = 0;
		fclose(f);
	}
	return *host ? 0 : -1;
}

struct ha_me {
	const char *host;
	int live;          /* this host has a LIVE slot */
	uint32_t slot;
	uint64_t gen;
	char owner[256];   /* "HOST SLOT GEN", when live */
};

/* Parses an owner "HOST SLOT GEN"; 0, or -1 (stopped, failed, garbage). */
static int ha_owner_parse(const char *s, char *host, size_t size, uint32_t *slot, uint64_t *gen)
{
	unsigned sl;
	unsigned long long g;
	int at = 0;
	if (sscanf(s, "%*s%n %u %llu", &at, &sl, &g) != 2 || (size_t)at >= size)
		return -1;
	memcpy(host, s, at);
	host[at] = 0;
	*slot = sl;
	*gen = g;
	return 0;
}

/* Non-zero when the owner's mount still holds its slot (LIVE, the same
 * generation and name): it is not dead, or not yet recovered. */
static int ha_owner_alive(const struct watch *w, const char *owner)
{
	char host[LUNFS_HOSTNAME_LEN + 1];
	uint32_t slot;
	uint64_t gen;
	if (ha_owner_parse(owner, host, sizeof(host), &slot, &gen))
		return 0;
	return slot < w->s->max_hosts && !w->bad[slot] && w->hb[slot].state == HB_LIVE &&
	       w->hb[slot].mount_gen == gen && !strcmp(w->hb[slot].host_name, host);
}

/* The agent's VMs: QEMU (or the command) it started, by disk. */
struct ha_child {
	pid_t pid;
	char *disk;
};

/* Starts disk's command (fd: the agent's read-write open of it, which
 * keeps the lock on this host), waits up to 60 s for a process of this
 * host to open the disk for writing, then lets fd go. */
static pid_t ha_launch(const char *mnt, const struct ha_me *me, const char *disk, const char *cmd,
		       int len)
{
	char *argv[256];
	int argc = 0;
	for (int i = 0; i < len && argc < 255; i += (int)strlen(cmd + i) + 1) {
		const char *a = cmd + i;
		char *out = NULL;
		size_t cap = 0;
		FILE *m = open_memstream(&out, &cap);
		if (!m)
			return -1;
		while (*a) {
			static const char *const key[] = {"{mount}", "{disk}", "{host}"};
			const char *val[] = {mnt, disk, me->host};
			size_t k = 0;
			while (k < 3 && strncmp(a, key[k], strlen(key[k])))
				k++;
			if (k < 3) {
				fputs(val[k], m);
				a += strlen(key[k]);
			} else {
				fputc(*a++, m);
			}
		}
		fclose(m);
		argv[argc++] = out;
	}
	argv[argc] = NULL;
	pid_t pid = argc ? fork() : -1;
	if (pid == 0) {
		setsid(); /* not in the agent's session: the agent may stop, the VM goes on */
		execvp(argv[0], argv);
		fprintf(stderr, "lunfs ha: %s: %s\n", argv[0], strerror(errno));
		_exit(127);
	}
	for (int i = 0; i < argc; i++)
		free(argv[i]);
	return pid;
}

/* Waits (60 s at most) until a process of this host has disk open for
 * writing, or pid exited; 0 when it has. */
static int ha_wait_open(const char *disk, pid_t pid)
{
	for (int i = 0; i < 3000; i++) {
		if (ha_local_writer(disk))
			return 0;
		siginfo_t si = {0};
		/* exited? (WNOWAIT: ha_reap still gets its status) */
		if (waitid(P_PID, (id_t)pid, &si, WEXITED | WNOHANG | WNOWAIT) || si.si_pid == pid)
			return -1;
		nap_ms(20);
	}
	return -1;
}

static void ha_set_owner(const char *disk, const char *owner)
{
	if (setxattr(disk, HA_OWNER, owner, strlen(owner), 0))
		ha_log("%s: cannot record the owner '%s': %s", disk, owner, strerror(errno));
}

static void ha_reap(const struct ha_me *me, struct ha_child *kids, size_t nkids);

static int ha_parked(const char *owner)
{
	return !strcmp(owner, "stopped") || !strncmp(owner, "failed", 6);
}

static void ha_kill(const char *disk, pid_t writer, const char *why)
{
	kill(writer, SIGKILL);
	ha_log("%s: %s: killed PID %d here, which still had it open read-write", disk, why, (int)writer);
}

/* One look at one registered disk (see the comment at HA_CMD). */
static void ha_check(const char *mnt, const struct watch *w, const struct ha_me *me, const char *disk,
		     struct ha_child *kids, size_t nkids)
{
	char cmd[HA_CMD_MAX + 1], owner[256], why[300];
	int len = ha_get(disk, HA_CMD, cmd, sizeof(cmd));
	if (len <= 0)
		return;
	int r = ha_get(disk, HA_OWNER, owner, sizeof(owner));
	if (r == -ENODATA)
		*owner = 0;
	else if (r < 0)
		return;
	if (me->live && !strcmp(owner, me->owner))
		return;
	pid_t writer = ha_local_writer(disk);
	int elsewhere = *owner && ha_owner_alive(w, owner);
	if (!writer && (elsewhere || ha_parked(owner)))
		return; /* runs on another host's mount, or was stopped */
	if (!me->live) {
		/* no slot here (fenced, rejoining): a writer here cannot hold
		 * the lock; the owner's mount does */
		if (writer && elsewhere) {
			snprintf(why, sizeof(why), "runs on %s", owner);
			ha_kill(disk, writer, why);
		}
		return;
	}
	/* The read-write open elects one host: lunfs grants it to one host
	 * at a time, and to nobody while a dead owner's locks wait for its
	 * recovery.  With a writer here it tells whether the writer's lock
	 * is this host's (adopt it: a VM started by hand, or migrated here)
	 * or not (the writer lost it: this host was frozen past its lease
	 * and fenced, and the VM runs elsewhere now). */
	/* O_NONBLOCK: no open wait (mount.lunfs's open_wait_ms): a loser must
	 * not get the lock a moment later, once the winner's VM let it go */
	int fd = open(disk, O_RDWR | O_CLOEXEC | O_NONBLOCK);
	if (fd < 0) {
		if (errno == EBUSY && writer)
			ha_kill(disk, writer, "the lock is another host's");
		return;
	}
	/* the lock is this host's now: no other host changes the owner */
	r = ha_get(disk, HA_OWNER, owner, sizeof(owner));
	if (r == -ENODATA)
		*owner = 0;
	else if (r < 0)
		goto out;
	if (writer) {
		ha_set_owner(disk, me->owner);
		ha_log("%s: adopted PID %d here, which has it open read-write (owner was %s)", disk,
		       (int)writer, *owner ? owner : "none");
		goto out;
	}
	if ((*owner && ha_owner_alive(w, owner)) || ha_parked(owner))
		goto out;
	if (*owner)
		snprintf(why, sizeof(why), "its owner %s is gone (recovered)", owner);
	else
		snprintf(why, sizeof(why), "never started");
	ha_set_owner(disk, me->owner);
	pid_t pid = ha_launch(mnt, me, disk, cmd, len);
	if (pid < 0) {
		ha_log("%s: %s; cannot start its command: %s", disk, why, strerror(errno));
		ha_set_owner(disk, "failed to start");
		goto out;
	}
	ha_log("%s: %s; started PID %d as %s", disk, why, (int)pid, me->owner);
	for (size_t i = 0; i < nkids; i++)
		if (!kids[i].pid) {
			kids[i].pid = pid;
			kids[i].disk = strdup(disk);
			break;
		}
	if (ha_wait_open(disk, pid)) {
		ha_log("%s: PID %d did not open it read-write", disk, (int)pid);
		ha_reap(me, kids, nkids); /* marked failed while the lock is still ours */
	} else
		ha_log("%s: PID %d has it open; the agent lets its own open go", disk, (int)pid);
out:
	close(fd);
}

/* Reaps the VMs the agent started: one that exits while this host still
 * owns its disk is marked stopped (exit 0: the guest powered off) or
 * failed, and not restarted. */
static void ha_reap(const struct ha_me *me, struct ha_child *kids, size_t nkids)
{
	int st;
	pid_t pid;
	while ((pid = waitpid(-1, &st, WNOHANG)) > 0) {
		for (size_t i = 0; i < nkids; i++) {
			if (kids[i].pid != pid)
				continue;
			char owner[256], mark[64];
			int mine = me->live && ha_get(kids[i].disk, HA_OWNER, owner, sizeof(owner)) > 0 &&
				   !strcmp(owner, me->owner);
			if (WIFEXITED(st) && !WEXITSTATUS(st))
				snprintf(mark, sizeof(mark), "stopped");
			else if (WIFEXITED(st))
				snprintf(mark, sizeof(mark), "failed (exit %d on %s)", WEXITSTATUS(st), me->host);
			else
				snprintf(mark, sizeof(mark), "failed (signal %d on %s)", WTERMSIG(st), me->host);
			if (mine)
				ha_set_owner(kids[i].disk, mark);
			ha_log("%s: PID %d ended: %s%s", kids[i].disk, (int)pid, mark,
			       mine ? "" : " (the disk is not this host's any more)");
			free(kids[i].disk);
			kids[i].pid = 0;
			kids[i].disk = NULL;
		}
	}
}

static int ha_agent(const char *mnt, const char *host_arg, uint64_t poll_ms)
{
	char host[LUNFS_HOSTNAME_LEN + 1];
	struct ha_child kids[256] = {{0}};
	char *real = realpath(mnt, NULL), *dev = NULL, *sub = NULL;
	struct dev *d = NULL;
	struct lunfs_sb s;
	struct watch w;
	int rc = 1, watching = 0;
	if (!real || mount_of(real, &dev, &sub) || strcmp(sub, "/")) {
		fprintf(stderr, "lunfs: %s: not a lunfs mount point\n", mnt);
		goto out;
	}
	if (host_arg)
		snprintf(host, sizeof(host), "%s", host_arg);
	else if (ha_host_of(real, host, sizeof(host))) {
		fprintf(stderr, "lunfs: %s: cannot tell this host's name; give --host\n", mnt);
		goto out;
	}
	if (watch_open(dev, &d, &s, &w))
		goto out;
	watching = 1;
	signal(SIGTERM, on_agent_stop);
	signal(SIGINT, on_agent_stop);
	ha_log("agent for %s (%s) as host %s, every %llu ms", real, dev, host, (unsigned long long)poll_ms);
	char was[sizeof(((struct ha_me){0}).owner)] = ""; /* the mount last logged */
	int logged = 0;
	while (!stop_agent) {
		struct ha_me me = {.host = host};
		if (watch_read(&w, dev))
			goto next;
		for (uint32_t i = 0; i < s.max_hosts && !me.live; i++)
			if (!w.bad[i] && w.hb[i].state == HB_LIVE && !strcmp(w.hb[i].host_name, host)) {
				me.live = 1;
				me.slot = i;
				me.gen = w.hb[i].mount_gen;
			}
		if (me.live)
			snprintf(me.owner, sizeof(me.owner), "%s %u %llu", host, me.slot,
				 (unsigned long long)me.gen);
		if (strcmp(me.owner, was) || !logged)
			ha_log(me.live ? "this host's mount: %s" : "this host has no live slot%s",
			       me.live ? me.owner : "");
		snprintf(was, sizeof(was), "%s", me.owner);
		logged = 1;
		ha_reap(&me, kids, sizeof(kids) / sizeof(kids[0]));
		if (ha_walk(real))
			goto next;
		for (size_t i = 0; i < ha_found.n && !stop_agent; i++)
			ha_check(real, &w, &me, ha_found.path[i], kids, sizeof(kids) / sizeof(kids[0]));
	next:
		nap_ms(poll_ms);
	}
	ha_log("agent stops; the VMs it started go on");
	rc = 0;
out:
	ha_found_free();
	free(ha_found.path);
	for (size_t i = 0; i < sizeof(kids) / sizeof(kids[0]); i++)
		free(kids[i].disk);
	if (watching) {
		watch_free(&w);
		dev_close(d);
	}
	free(real);
	free(dev);
	free(sub);
	return rc;
}

/* lunfs ha SUBCOMMAND ...: its own arguments (a command line follows --). */
static int cmd_ha(int argc, char **argv)
{
	const char *host = NULL;
	uint64_t poll_ms = 500;
	if (argc < 2)
		return usage_error("usage: lunfs ha register|unregister|start|list|agent ...");
	const char *sub = argv[1];
	if (!strcmp(sub, "register")) {
		if (argc < 5 || strcmp(argv[3], "--"))
			return usage_error("usage: lunfs ha register DISK -- COMMAND [ARG...]");
		return ha_register(argv[2], argc - 4, argv + 4);
	}
	if ((!strcmp(sub, "unregister") || !strcmp(sub, "start")) && argc == 3)
		return ha_unset(argv[2], !strcmp(sub, "unregister"));
	if (!strcmp(sub, "list") && (argc == 3 || (argc == 4 && !strcmp(argv[3], "--json")))) {
		json = argc == 4;
		return ha_list(argv[2]);
	}
	if (!strcmp(sub, "agent") && argc >= 3) {
		for (int i = 3; i < argc; i++) {
			if (!strcmp(argv[i], "--host") && i + 1 < argc) {
				host = argv[++i];
			} else if (!strcmp(argv[i], "--poll-ms") && i + 1 < argc) {
				char *end;
				errno = 0;
				long n = strtol(argv[++i], &end, 10);
				if (end == argv[i] || *end || errno || n < 10 || n > 60000)
					return usage_error("--poll-ms %s: 10 to 60000", argv[i]);
				poll_ms = (uint64_t)n;
			} else {
				return usage_error("ha agent: unknown argument %s", argv[i]);
			}
		}
		if (host && (!*host || strlen(host) > LUNFS_HOSTNAME_LEN))
			return usage_error("--host: the host name is 1 to %u bytes", LUNFS_HOSTNAME_LEN);
		return ha_agent(argv[2], host, poll_ms);
	}
	return usage_error("usage: lunfs ha register DISK -- COMMAND..., lunfs ha unregister|start DISK, "
			   "lunfs ha list MOUNT [--json], lunfs ha agent MOUNT [--host NAME] [--poll-ms MS]");
}

int main(int argc, char **argv)
{
	const char *args[4];
	const char *delay_arg = NULL, *iters_arg = NULL, *size_arg = NULL;
	int na = 0, c;
	static const struct option lopts[] = {
		{"json", no_argument, 0, 'j'},
		{"size", required_argument, 0, 's'},
		{"help", no_argument, 0, 'h'},
		{"version", no_argument, 0, 'V'},
		{0, 0, 0, 0},
	};
	if (argc >= 2 && !strcmp(argv[1], "ha"))
		return cmd_ha(argc - 1, argv + 1);
	opterr = 0; /* our own one-line messages */
	while ((c = getopt_long(argc, argv, ":d:n:s:hV", lopts, NULL)) != -1) {
		switch (c) {
		case 'j':
			json = 1;
			break;
		case 'd':
			delay_arg = optarg;
			break;
		case 'n':
			iters_arg = optarg;
			break;
		case 's':
			size_arg = optarg;
			break;
		case 'h':
			usage(stdout);
			return 0;
		case 'V':
			printf("lunfs (lunfs) %s\n", LUNFS_RELEASE);
			return 0;
		case ':':
			return usage_error("option -%c needs a value", optopt);
		default:
			return usage_error("unknown option %s", argv[optind - 1]);
		}
	}
	for (int i = optind; i < argc; i++) {
		if (na == 4)
			return usage_error("too many arguments");
		args[na++] = argv[i];
	}
	/* a mount point (or a path in one) for DEVICE: the mount's device */
	char *mdev = NULL, *mpath = NULL;
	if (na >= 2 && strcmp(args[0], "handoff") && !mount_of(args[1], &mdev, &mpath)) {
		args[1] = mdev;
		if (!strcmp(args[0], "locks") && na == 2 && strcmp(mpath, "/"))
			args[na++] = mpath;
	}
	int top = na >= 1 && !strcmp(args[0], "top");
	if ((delay_arg || iters_arg) && !top)
		return usage_error("options -d and -n are for lunfs top only");
	if (size_arg && (na < 1 || strcmp(args[0], "grow")))
		return usage_error("option -s is for lunfs grow only");
	if (na == 2 && !strcmp(args[0], "grow")) {
		uint64_t size = 0;
		if (size_arg && (lunfs_parse_size(size_arg, &size) || !size))
			return usage_error("-s %s: the size is bytes, with K, M, G or T", size_arg);
		return cmd_grow(args[1], size);
	}
	if (na == 2 && !strcmp(args[0], "info"))
		return cmd_info(args[1]);
	if (na == 2 && !strcmp(args[0], "hosts"))
		return cmd_hosts(args[1]);
	if (na >= 2 && na <= 3 && !strcmp(args[0], "locks"))
		return cmd_locks(args[1], na == 3 ? args[2] : NULL);
	if (na == 3 && !strcmp(args[0], "handoff")) {
		if (!*args[2] || strlen(args[2]) > LUNFS_HOSTNAME_LEN)
			return usage_error("handoff: the host name is 1 to %u bytes", LUNFS_HOSTNAME_LEN);
		return cmd_handoff(args[1], args[2]);
	}
	if (top && na == 2) {
		uint64_t delay_ms = 1000;
		long iters = 0;
		if (delay_arg) {
			char *end;
			double sec = strtod(delay_arg, &end);
			if (end == delay_arg || *end || !(sec >= 0.1 && sec <= 86400))
				return usage_error("-d %s: the delay is seconds, 0.1 to 86400", delay_arg);
			delay_ms = (uint64_t)(sec * 1000 + 0.5);
		}
		if (iters_arg) {
			char *end;
			errno = 0;
			long n = strtol(iters_arg, &end, 10);
			if (end == iters_arg || *end || errno || n < 1 || n > 1000000000)
				return usage_error("-n %s: the iteration count is 1 or more", iters_arg);
			iters = n;
		}
		return cmd_top(args[1], delay_ms, iters);
	}
	return usage_error("usage: lunfs info|hosts|top|locks DEVICE [PATH] [-d SECONDS] [-n N] [--json], "
			   "lunfs grow DEVICE [-s SIZE], or lunfs handoff FILE HOST");
}
