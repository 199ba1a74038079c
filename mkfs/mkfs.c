/* mkfs.lunfs: make a lunfs volume.
 *
 * A pipeline: parse options, open and probe the device, compute the geometry,
 * then (unless -n) write.  Exit status: 0 done, 1 error, 2 usage. */
#include <blkid/blkid.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>
#include "dev/dev.h"
#include "fs/version.h"
#include "format/format.h"
#include "util/parse.h"
#include "lock/lk.h"
#include <sys/random.h>

static void usage(FILE *f)
{
	fprintf(f,
		"usage: mkfs.lunfs [-L LABEL] [-b FILE_BLOCK_SIZE] [-N MAX_HOSTS] [-J JOURNAL_SIZE]\n"
		"                  [-I INODES] [--lease-ms N] [--heartbeat-ms N] [--max-size SIZE]\n"
		"                  [-n] [-f] [-q] DEVICE\n"
		"  DEVICE is an image file, a block device or iscsi://HOST[:PORT]/IQN/LUN\n"
		"  -b  file block size, power of two 64K..256M (default 1M)\n"
		"  -N  heartbeat slots = hosts that can mount at once, 1..4096 (default 64)\n"
		"  -J  journal size per host, >= 1M (default scales with the volume, 4M..64M)\n"
		"  -I  number of inodes (default one per MiB, 512..1048576)\n"
		"  --lease-ms      a host silent this long is declared dead (default 8000)\n"
		"  --heartbeat-ms  heartbeat renewal interval (default 1000)\n"
		"  --max-size      largest size lunfs grow may take the volume to (default 16\n"
		"                  times the size, at most 64T but never below the size)\n"
		"  -n  print the geometry, write nothing\n"
		"  -f  overwrite a device that holds a filesystem\n"
		"  -q  quiet: print nothing but errors\n"
		"  -h, --help     this help\n"
		"  -V, --version  the version\n");
}

/* Asks libblkid what the first and last MiB of the device look like.  Works
 * for every backend: the bytes are copied into a sparse memfd of the
 * device's size.  Returns a static description, or NULL when nothing is
 * recognised. */
static const char *probe_other_fs(struct dev *d)
{
	static char what[128];
	const char *ret = NULL;
	uint64_t size = dev_size(d), chunk = 1 << 20;
	if (size < chunk)
		chunk = size & ~(uint64_t)(dev_lbs(d) - 1);
	void *buf = dev_alloc(chunk);
	int fd = memfd_create("lunfs-probe", MFD_CLOEXEC);
	if (!buf || fd < 0 || ftruncate(fd, size) < 0)
		goto out;
	if (dev_read(d, 0, buf, chunk) || pwrite(fd, buf, chunk, 0) != (ssize_t)chunk)
		goto out;
	if (dev_read(d, size - chunk, buf, chunk) || pwrite(fd, buf, chunk, size - chunk) != (ssize_t)chunk)
		goto out;
	blkid_probe pr = blkid_new_probe();
	if (!pr || blkid_probe_set_device(pr, fd, 0, 0)) {
		if (pr)
			blkid_free_probe(pr);
		goto out;
	}
	blkid_probe_enable_superblocks(pr, 1);
	blkid_probe_set_superblocks_flags(pr, BLKID_SUBLKS_TYPE | BLKID_SUBLKS_LABEL);
	blkid_probe_enable_partitions(pr, 1);
	if (blkid_do_safeprobe(pr) == 0) {
		const char *type = NULL, *label = NULL;
		if (!blkid_probe_lookup_value(pr, "TYPE", &type, NULL)) {
			blkid_probe_lookup_value(pr, "LABEL", &label, NULL);
			snprintf(what, sizeof(what), "a filesystem of type %s%s%s%s", type,
				 label ? " (label \"" : "", label ? label : "", label ? "\")" : "");
			ret = what;
		} else if (!blkid_probe_lookup_value(pr, "PTTYPE", &type, NULL)) {
			snprintf(what, sizeof(what), "a %s partition table", type);
			ret = what;
		}
	}
	blkid_free_probe(pr);
out:
	if (fd >= 0)
		close(fd);
	free(buf);
	return ret;
}

/* mkfs -f over a lunfs volume: the one takeover path, without the replay
 * (the volume is about to be replaced).  Claims the volume on disk (an
 * EXCLUSIVE heartbeat slot: no host mounts meanwhile), watches every other
 * slot for a lease, and refuses while any host is alive: -f never overrides
 * a live host.  Dead hosts are fenced (REPLAYING by us, their PR keys
 * preempted).  Then both superblocks are wiped, so nobody can start a mount
 * of the old volume, and our slot is left as it is for the format to
 * overwrite.  Returns 0, or 1 after printing why. */
static int take_volume(struct dev *d, const char *path, const struct lunfs_sb *old)
{
	struct lk_params p = lk_params_of(old);
	struct hb_ident id = {0};
	struct hb_watch *w = calloc(1, sizeof(*w));
	struct hb_host *h = NULL;
	char host[48] = "";
	int r;
	if (!w)
		return 1;
	gethostname(host, sizeof(host) - 1);
	snprintf(id.name, sizeof(id.name), "mkfs.lunfs@%s", host);
	if (getrandom(id.uuid, sizeof(id.uuid), 0) != sizeof(id.uuid) ||
	    hb_pr_register(d, &id.pr_key)) {
		fprintf(stderr, "mkfs.lunfs: %s: cannot register with the device\n", path);
		free(w);
		return 1;
	}
	r = hb_claim_exclusive(d, &p, &id, &h, w);
	for (uint32_t s = 0; r == -EBUSY && s < p.max_hosts && s < HB_WATCH_MAX; s++)
		if (w->slot[s].status == HB_W_ALIVE) {
			fprintf(stderr, "mkfs.lunfs: %s is mounted by host \"%s\" (slot %u, its heartbeat "
					"moves); unmount it everywhere first (-f does not override a live host)\n",
				path, w->slot[s].hb.host_name, s);
			break;
		}
	if (r && r != -EBUSY)
		fprintf(stderr, "mkfs.lunfs: %s: cannot claim the volume: %s\n", path, lunfs_strerror(r));
	for (uint32_t s = 0; !r && s < p.max_hosts && s < HB_WATCH_MAX; s++) {
		if (w->slot[s].status != HB_W_DEAD)
			continue;
		struct lunfs_hb victim;
		r = hb_take_over(h, s, 2 * p.lease_ms, &victim);
		if (r)
			fprintf(stderr, "mkfs.lunfs: %s: cannot take over slot %u: %s\n", path, s,
				lunfs_strerror(r));
	}
	if (!r) {
		uint8_t *z = dev_alloc(LUNFS_META_BS);
		r = z ? 0 : -ENOMEM;
		if (!r && !(r = dev_write(d, LUNFS_SB_OFF, z, LUNFS_META_BS)))
			r = dev_write(d, old->backup_off, z, LUNFS_META_BS);
		if (!r)
			r = dev_flush(d);
		free(z);
		if (r)
			fprintf(stderr, "mkfs.lunfs: %s: cannot wipe the old superblocks: %s\n", path,
				lunfs_strerror(r));
	}
	if (h && !r)
		hb_abandon(h); /* the format overwrites our slot */
	else if (h)
		hb_release(h);
	/* our key goes (it holds the reservation now, or nobody does): the
	 * format writes unregistered, and leaves no key behind */
	hb_pr_unregister(d, id.pr_key);
	free(w);
	return r ? 1 : 0;
}

/* On a thin image file, the metadata regions (superblocks, heartbeat slots,
 * journals, cluster tables, inodes, meta blocks) get their space on the
 * host filesystem now, so that no metadata write ever needs new space
 * there: when it fills up, data writes fail with ENOSPC, but rm (a journal
 * transaction, then checkpoints in place) still works.  File blocks stay
 * thin.  A volume whose metadata does not fit is left sparse, with a
 * warning. */
static void reserve_metadata(struct dev *d, const char *path, const struct lunfs_sb *s, int quiet)
{
	uint64_t len = s->file_off;
	int r = dev_reserve(d, 0, len);
	if (!r)
		r = dev_reserve(d, s->backup_off, LUNFS_META_BS);
	if (r == -EOPNOTSUPP)
		return; /* a block device or LUN: nothing to reserve on our side */
	if (r == -ENOSPC)
		fprintf(stderr, "mkfs.lunfs: warning: the storage under %s has no room for the "
			"metadata (%llu MiB): left sparse, so when it fills up even rm can fail\n",
			path, (unsigned long long)(len >> 20));
	else if (r)
		fprintf(stderr, "mkfs.lunfs: warning: cannot allocate the metadata on the storage "
			"under %s: %s\n", path, lunfs_strerror(r));
	else if (!quiet)
		printf("metadata:        %llu MiB allocated on the storage under %s\n",
		       (unsigned long long)(len >> 20), path);
}

int main(int argc, char **argv)
{
	struct lunfs_mkfs_opts o = {0};
	int dry = 0, force = 0, quiet = 0, c;
	uint64_t v;
	enum { OPT_LEASE = 256, OPT_HB, OPT_MAXSIZE };
	static const struct option lopts[] = {
		{"lease-ms", required_argument, 0, OPT_LEASE},
		{"heartbeat-ms", required_argument, 0, OPT_HB},
		{"max-size", required_argument, 0, OPT_MAXSIZE},
		{"help", no_argument, 0, 'h'},
		{"version", no_argument, 0, 'V'},
		{0, 0, 0, 0},
	};

	opterr = 0; /* one line of our own, naming the option */
	while ((c = getopt_long(argc, argv, ":L:b:N:J:I:nfqhV", lopts, NULL)) != -1) {
		switch (c) {
		case 'L':
			o.label = optarg;
			break;
		case 'b':
			if (lunfs_parse_size(optarg, &v) || v > 0xffffffffu) {
				fprintf(stderr, "mkfs.lunfs: bad file block size '%s'\n", optarg);
				return 2;
			}
			o.file_bs = v;
			break;
		case 'N':
			if (lunfs_parse_u32(optarg, 1, LUNFS_MAX_HOSTS, &o.max_hosts)) {
				fprintf(stderr, "mkfs.lunfs: bad host count '%s' (1..%u)\n", optarg, LUNFS_MAX_HOSTS);
				return 2;
			}
			break;
		case 'J':
			if (lunfs_parse_size(optarg, &o.jnl_size) || !o.jnl_size) {
				fprintf(stderr, "mkfs.lunfs: bad journal size '%s'\n", optarg);
				return 2;
			}
			break;
		case 'I':
			if (lunfs_parse_size(optarg, &o.inodes) || !o.inodes) {
				fprintf(stderr, "mkfs.lunfs: bad inode count '%s'\n", optarg);
				return 2;
			}
			break;
		case OPT_LEASE:
			if (lunfs_parse_u32(optarg, 1, 600000, &o.lease_ms)) {
				fprintf(stderr, "mkfs.lunfs: bad lease '%s' (ms)\n", optarg);
				return 2;
			}
			break;
		case OPT_HB:
			if (lunfs_parse_u32(optarg, 1, 60000, &o.hb_ms)) {
				fprintf(stderr, "mkfs.lunfs: bad heartbeat interval '%s' (ms)\n", optarg);
				return 2;
			}
			break;
		case OPT_MAXSIZE:
			if (lunfs_parse_size(optarg, &o.max_size) || !o.max_size) {
				fprintf(stderr, "mkfs.lunfs: bad maximum size '%s'\n", optarg);
				return 2;
			}
			break;
		case 'n':
			dry = 1;
			break;
		case 'f':
			force = 1;
			break;
		case 'q':
			quiet = 1;
			break;
		case 'h':
			usage(stdout);
			return 0;
		case 'V':
			printf("mkfs.lunfs (lunfs) %s\n", LUNFS_RELEASE);
			return 0;
		case ':':
			fprintf(stderr, "mkfs.lunfs: option %s needs a value (-h for help)\n", argv[optind - 1]);
			return 2;
		default:
			fprintf(stderr, "mkfs.lunfs: unknown option %s; usage: mkfs.lunfs [options] DEVICE "
				"(-h for help)\n", argv[optind - 1]);
			return 2;
		}
	}
	if (optind != argc - 1) {
		fprintf(stderr, "mkfs.lunfs: usage: mkfs.lunfs [options] DEVICE (-h for help)\n");
		return 2;
	}
	const char *path = argv[optind];
	struct lunfs_sb sb;
	char err[256];
	/* an option out of its range is a usage error, like one that does not parse */
	if (lunfs_geom_check_opts(&o, err, sizeof(err))) {
		fprintf(stderr, "mkfs.lunfs: %s\n", err);
		return 2;
	}
	struct dev_opts dopts = {.readonly = dry};
	struct dev *d;
	int r = dev_open(path, &dopts, &d);
	if (r) {
		if (*dev_last_error())
			fprintf(stderr, "mkfs.lunfs: cannot open %s\n", dev_last_error());
		else
			fprintf(stderr, "mkfs.lunfs: cannot open %s: %s\n", path, lunfs_strerror(r));
		return 1;
	}
	r = lunfs_geom_compute(&o, dev_size(d), dev_lbs(d), &sb, err, sizeof(err));
	if (r) {
		fprintf(stderr, "mkfs.lunfs: %s: %s\n", path, err);
		dev_close(d);
		return 1;
	}
	if (lunfs_uuid_gen(sb.uuid)) {
		fprintf(stderr, "mkfs.lunfs: cannot get random bytes for the UUID\n");
		dev_close(d);
		return 1;
	}
	sb.ctime = time(NULL);
	sb.gen = 1;
	if (!dry && !force) {
		struct lunfs_sb old;
		int used_backup;
		const char *other;
		int or = lunfs_read_sb(d, &old, 1, &used_backup, NULL);
		if (or == -EPROTONOSUPPORT) {
			fprintf(stderr, "mkfs.lunfs: %s holds a lunfs volume of a newer format; use -f to overwrite it\n", path);
			dev_close(d);
			return 1;
		}
		if (or == 0) {
			char u[37];
			lunfs_uuid_str(old.uuid, u);
			fprintf(stderr,
				"mkfs.lunfs: %s already holds a lunfs volume (label \"%s\", uuid %s); "
				"use -f to overwrite it\n", path, old.label, u);
			dev_close(d);
			return 1;
		}
		if ((other = probe_other_fs(d))) {
			fprintf(stderr, "mkfs.lunfs: %s holds %s; use -f to overwrite it\n", path, other);
			dev_close(d);
			return 1;
		}
	}
	if (!quiet || dry)
		lunfs_print_geometry(&sb, stdout);
	if (dry) {
		printf("(dry run: nothing written)\n");
		dev_close(d);
		return 0;
	}
	struct lunfs_sb old;
	int used_backup;
	if (lunfs_read_sb(d, &old, 1, &used_backup, NULL) == 0 && take_volume(d, path, &old)) {
		dev_close(d);
		return 1;
	}
	r = lunfs_format(d, &sb);
	if (!r)
		reserve_metadata(d, path, &sb, quiet);
	dev_close(d);
	if (r) {
		fprintf(stderr, "mkfs.lunfs: writing %s failed: %s\n", path, lunfs_strerror(r));
		return 1;
	}
	if (!quiet)
		printf("lunfs volume created on %s\n", path);
	return 0;
}
