/* lunfs on-disk format (LUNFS_VERSION): every structure, in one place.
 *
 * docs/FORMAT.md is the byte-level specification; this header must match it.
 * All integers are little-endian.  Every metadata block and record starts with
 * struct lunfs_hdr; its csum field is XXH3-64 (seed 0) over bytes
 * [8, record size) of the encoded record.  The d_ structs are the disk images
 * (packed, fixed width); the in-memory forms (no prefix) are converted only by
 * the encode and decode pairs in ondisk.c, which also verify.
 *
 * This header lives in format/, the codec layer above dev/ and below lock/:
 * lock/, journal/, fs/ and the tools all include it.  It defines data only.
 */
#ifndef LUNFS_ONDISK_H
#define LUNFS_ONDISK_H

#include <stddef.h>
#include <stdint.h>

#define LUNFS_VERSION 4
#define LUNFS_META_BS 4096u  /* metadata block size */
#define LUNFS_REC_SIZE 512u  /* heartbeat slot and lock record size */
#define LUNFS_SLOT_STRIDE 4096u /* bytes between heartbeat slots / lock blocks */
#define LUNFS_SB_OFF 0ull
#define LUNFS_MAX_HOSTS 4096u
#define LUNFS_MAX_HOLDERS 32u
#define LUNFS_NAME_MAX 255u
#define LUNFS_SYMLINK_MAX 4095u /* longest symlink target (PATH_MAX - 1, as ext4) */
#define LUNFS_LABEL_LEN 64u
#define LUNFS_HOSTNAME_LEN 64u
#define LUNFS_ORPHAN_INO 2u /* directory of inodes whose space is being freed */
/* incompat feature bits (superblock).  GROWN: the volume was grown online
 * (lunfs grow), so the header of the file cluster that was the last one
 * before a grow may still cover fewer entries than the geometry gives it;
 * the entries it does not cover are free (docs/FORMAT.md "Online grow"). */
#define LUNFS_INCOMPAT_GROWN 0x1u
/* XATTR_BLOCKS: inodes may chain xattr blocks (xattr_blk); mkfs sets it. */
#define LUNFS_INCOMPAT_XATTR_BLOCKS 0x2u
#define LUNFS_INCOMPAT_KNOWN (LUNFS_INCOMPAT_GROWN | LUNFS_INCOMPAT_XATTR_BLOCKS)

/* Magics (the 4 bytes at offset 8, read as a little-endian u32). */
#define LUNFS_MAGIC(a, b, c, d) ((uint32_t)(a) | (uint32_t)(b) << 8 | (uint32_t)(c) << 16 | (uint32_t)(d) << 24)
#define MAGIC_SB LUNFS_MAGIC('L', 'N', 'S', 'B')
#define MAGIC_HB LUNFS_MAGIC('L', 'N', 'H', 'B')
#define MAGIC_LOCK LUNFS_MAGIC('L', 'N', 'L', 'K')
#define MAGIC_JHDR LUNFS_MAGIC('L', 'N', 'J', 'H')
#define MAGIC_JDESC LUNFS_MAGIC('L', 'N', 'J', 'D')
#define MAGIC_JCOMMIT LUNFS_MAGIC('L', 'N', 'J', 'C')
#define MAGIC_RC LUNFS_MAGIC('L', 'N', 'R', 'C')
#define MAGIC_INODE LUNFS_MAGIC('L', 'N', 'I', 'N')
#define MAGIC_PTR LUNFS_MAGIC('L', 'N', 'P', 'B')
#define MAGIC_DIR LUNFS_MAGIC('L', 'N', 'D', 'B')
#define MAGIC_HBSTAT LUNFS_MAGIC('L', 'N', 'S', 'T')
#define MAGIC_XATTR LUNFS_MAGIC('L', 'N', 'X', 'A')


/* Common header of every record and metadata block (64 bytes). */
struct lunfs_hdr {
	uint64_t csum;       /* XXH3-64 of bytes [8, size) */
	uint32_t magic;      /* MAGIC_* */
	uint16_t version;    /* LUNFS_VERSION */
	uint16_t flags;      /* per type; 0 unless stated */
	uint8_t uuid[16];    /* volume UUID */
	uint64_t self;       /* byte address of this record on the device */
	uint64_t gen;        /* generation: +1 on every rewrite */
	uint64_t owner;      /* owning object (inode number, cluster index, slot) */
	uint64_t reserved;
} __attribute__((packed));
_Static_assert(sizeof(struct lunfs_hdr) == 64, "hdr");

/* ---- superblock (one metadata block at 0, a backup in the last block) ---- */
struct lunfs_d_sb {
	struct lunfs_hdr h; /* owner = 0 primary, 1 backup */
	uint32_t incompat, ro_compat, compat, reserved0;
	uint64_t dev_size;     /* bytes the volume spans */
	uint32_t sector_size;  /* device logical block size at mkfs (512 or 4096) */
	uint32_t meta_bs;      /* LUNFS_META_BS */
	uint32_t file_bs;      /* file block size, power of two, >= 64 KiB */
	uint32_t max_hosts;    /* heartbeat slots = journals */
	uint32_t lease_ms;     /* a host silent this long is dead */
	uint32_t hb_ms;        /* renewal interval */
	uint32_t fence_margin_ms; /* a host fences itself at lease - margin */
	uint32_t reserved1;
	uint64_t hb_off;       /* heartbeat region: max_hosts * LUNFS_SLOT_STRIDE */
	uint64_t vlock_off;    /* volume lock block */
	uint64_t jnl_off;      /* journals: max_hosts * jnl_size */
	uint64_t jnl_size;     /* bytes per journal, multiple of meta_bs */
	uint64_t fc_off;       /* file-block cluster table, 8 KiB per cluster */
	uint32_t fc_count, fc_blocks;
	uint64_t mc_off;       /* meta-block cluster table, 8 KiB per cluster */
	uint32_t mc_count, mc_blocks;
	uint64_t ig_off;       /* inode group table, 8 KiB per group */
	uint32_t ig_count, ig_inodes;
	uint64_t ino_off;      /* inode area, 8 KiB per inode */
	uint64_t meta_off;     /* meta block area */
	uint64_t meta_blocks;
	uint64_t file_off;     /* file block area, aligned to file_bs */
	uint64_t file_blocks;
	uint64_t root_ino;
	uint64_t ctime;        /* mkfs time, seconds since the epoch (informational) */
	uint64_t backup_off;   /* the backup superblock */
	char label[LUNFS_LABEL_LEN];
	uint8_t pad[LUNFS_META_BS - 328];
} __attribute__((packed));
_Static_assert(offsetof(struct lunfs_d_sb, label) == 264, "sb label");
_Static_assert(sizeof(struct lunfs_d_sb) == LUNFS_META_BS, "sb");

struct lunfs_sb {
	uint8_t uuid[16];
	uint64_t gen;
	uint32_t incompat, ro_compat, compat;
	uint64_t dev_size;
	uint32_t sector_size, meta_bs, file_bs, max_hosts;
	uint32_t lease_ms, hb_ms, fence_margin_ms;
	uint64_t hb_off, vlock_off, jnl_off, jnl_size;
	uint64_t fc_off;
	uint32_t fc_count, fc_blocks;
	uint64_t mc_off;
	uint32_t mc_count, mc_blocks;
	uint64_t ig_off;
	uint32_t ig_count, ig_inodes;
	uint64_t ino_off, meta_off, meta_blocks, file_off, file_blocks;
	uint64_t root_ino, ctime, backup_off;
	char label[LUNFS_LABEL_LEN + 1];
};

/* ---- heartbeat slot (512-byte record at hb_off + slot * 4096) ---- */
/* HB_EXCLUSIVE (v3): fsck.lunfs -y or mkfs.lunfs holds the whole volume; no
 * host may mount while that slot's counter moves. */
enum { HB_FREE = 0, HB_LIVE = 1, HB_REPLAYING = 2, HB_EXCLUSIVE = 3 };
struct lunfs_d_hb {
	struct lunfs_hdr h; /* owner = slot index; gen = renewal counter */
	uint32_t state;     /* HB_* */
	uint32_t slot;
	uint64_t mount_gen; /* +1 at every claim of the slot */
	uint64_t counter;   /* +1 at every renewal */
	uint8_t host_uuid[16];
	char host_name[LUNFS_HOSTNAME_LEN];
	uint64_t jnl_off, jnl_size;
	uint32_t replayer_slot; /* state REPLAYING: who replays */
	uint32_t reserved0;
	uint64_t replayer_gen;  /* ... and that host's mount_gen */
	uint64_t wall_ns;       /* writer's wall clock, for humans only */
	uint64_t pr_key;        /* iSCSI PR key this host registered, 0 none */
	uint64_t st_reads, st_writes, st_locks; /* published counters for lunfs top */
	uint64_t want_off;      /* lock record this host waits for, 0 none (v2) */
	uint64_t st_held;       /* lock records held now (v2) */
	uint8_t pad[LUNFS_REC_SIZE - 256];
} __attribute__((packed));
_Static_assert(offsetof(struct lunfs_d_hb, replayer_slot) == 184, "hb");
_Static_assert(sizeof(struct lunfs_d_hb) == LUNFS_REC_SIZE, "hb size");

struct lunfs_hb {
	uint64_t gen; /* header generation (every write) */
	uint32_t state, slot;
	uint64_t mount_gen, counter;
	uint8_t host_uuid[16];
	char host_name[LUNFS_HOSTNAME_LEN + 1];
	uint64_t jnl_off, jnl_size;
	uint32_t replayer_slot;
	uint64_t replayer_gen, wall_ns, pr_key;
	uint64_t st_reads, st_writes, st_locks;
	uint64_t want_off, st_held;
};

/* ---- published I/O statistics: bytes 512..4095 of a heartbeat slot's
 * block (v3, advisory, for lunfs top; readers that do not know it ignore
 * those bytes).  Latencies are in nanoseconds. ---- */
#define LUNFS_HBSTAT_OFF 512u
#define LUNFS_HBSTAT_SIZE (LUNFS_SLOT_STRIDE - LUNFS_HBSTAT_OFF)
#define LUNFS_HBSTAT_FILES 32u
struct lunfs_d_iostat {
	uint64_t rd_ops, wr_ops;     /* completed requests */
	uint64_t rd_bytes, wr_bytes;
	uint64_t rd_ns, wr_ns;       /* sum of their latencies */
	uint64_t max_ns;             /* longest one completed since the last publication */
	uint64_t inflight;           /* requests in flight when sampled */
	uint64_t lk_waits, lk_wait_ns; /* lock acquires that had to wait, and the time waited */
} __attribute__((packed));
_Static_assert(sizeof(struct lunfs_d_iostat) == 80, "iostat");
struct lunfs_d_hbstat_file {
	uint64_t ino;
	struct lunfs_d_iostat io;
} __attribute__((packed));
struct lunfs_d_hbstat {
	struct lunfs_hdr h; /* owner = slot; self = slot address + 512; gen = slot counter */
	uint64_t mount_gen; /* the mount that wrote it (= the slot's) */
	uint64_t mono_ms;   /* writer's CLOCK_BOOTTIME, ms, when sampled */
	uint32_t nfiles;    /* valid entries in files[] */
	uint32_t reserved0;
	uint64_t reserved1;
	struct lunfs_d_iostat host;  /* this mount's data I/O, all files */
	struct lunfs_d_hbstat_file files[LUNFS_HBSTAT_FILES]; /* busiest open files */
	uint8_t pad[LUNFS_HBSTAT_SIZE - 176 - 88 * LUNFS_HBSTAT_FILES];
} __attribute__((packed));
_Static_assert(offsetof(struct lunfs_d_hbstat, host) == 96, "hbstat host");
_Static_assert(offsetof(struct lunfs_d_hbstat, files) == 176, "hbstat files");
_Static_assert(sizeof(struct lunfs_d_hbstat) == LUNFS_HBSTAT_SIZE, "hbstat size");

struct lunfs_iostat {
	uint64_t rd_ops, wr_ops, rd_bytes, wr_bytes, rd_ns, wr_ns, max_ns, inflight;
	uint64_t lk_waits, lk_wait_ns;
};
struct lunfs_hbstat {
	uint64_t gen, mount_gen, mono_ms;
	uint32_t nfiles, unused; /* (no padding: the struct is compared whole) */
	struct lunfs_iostat host;
	struct {
		uint64_t ino;
		struct lunfs_iostat io;
	} files[LUNFS_HBSTAT_FILES];
};

/* ---- lock record (512 bytes at the start of a 4 KiB lock block) ---- */
enum { LK_FREE = 0, LK_EXCLUSIVE = 1, LK_SHARED_RO = 2, LK_MULTI_WRITER = 3 };
/* Holder flags: LK_HOLD_OPEN marks a hold pinned by an open file, which will
 * not be let go soon; a hold without it is only lingering (metadata cache)
 * and is released within the holder's linger time. */
enum { LK_HOLD_OPEN = 1 };
struct lunfs_d_holder {
	uint16_t slot;
	uint16_t flags;
	uint64_t mount_gen;
} __attribute__((packed));
struct lunfs_d_lock {
	struct lunfs_hdr h; /* gen = lock generation; owner = object address */
	uint32_t mode;      /* LK_* */
	uint32_t nholders;
	uint64_t object;    /* byte address of the object the lock guards */
	uint64_t wall_ns;   /* when taken, for humans only */
	uint64_t reserved;
	struct lunfs_d_holder holders[LUNFS_MAX_HOLDERS];
	uint8_t pad[LUNFS_REC_SIZE - 96 - 12 * LUNFS_MAX_HOLDERS];
} __attribute__((packed));
_Static_assert(offsetof(struct lunfs_d_lock, holders) == 96, "lock");
_Static_assert(sizeof(struct lunfs_d_lock) == LUNFS_REC_SIZE, "lock size");

struct lunfs_lock {
	uint64_t gen, owner, object, wall_ns;
	uint32_t mode, nholders;
	struct {
		uint16_t slot;
		uint16_t flags; /* LK_HOLD_* */
		uint64_t mount_gen;
	} holders[LUNFS_MAX_HOLDERS];
};

/* ---- journal ---- */
struct lunfs_d_jhdr {
	struct lunfs_hdr h; /* owner = slot */
	uint64_t tail_seq;  /* sequence number of the oldest live transaction */
	uint64_t tail_off;  /* its offset from the start of the log area */
	uint64_t mount_gen; /* writer's mount generation */
	uint8_t pad[LUNFS_META_BS - 88];
} __attribute__((packed));
_Static_assert(sizeof(struct lunfs_d_jhdr) == LUNFS_META_BS, "jhdr");

#define JNL_MAX_BLOCKS 500u
struct lunfs_d_jdesc {
	struct lunfs_hdr h; /* gen = seq, owner = slot */
	uint64_t seq;
	uint32_t nblocks;
	uint32_t reserved0;
	uint64_t mount_gen;
	uint64_t reserved1;
	uint64_t targets[JNL_MAX_BLOCKS]; /* byte address of each image's home */
} __attribute__((packed));
_Static_assert(offsetof(struct lunfs_d_jdesc, targets) == 96, "jdesc");
_Static_assert(sizeof(struct lunfs_d_jdesc) == LUNFS_META_BS, "jdesc size");

struct lunfs_d_jcommit {
	struct lunfs_hdr h; /* gen = seq, owner = slot */
	uint64_t seq;
	uint32_t nblocks;
	uint32_t reserved0;
	uint64_t txn_hash;  /* XXH3-64 over descriptor + images, as written */
	uint8_t pad[LUNFS_META_BS - 88];
} __attribute__((packed));
_Static_assert(sizeof(struct lunfs_d_jcommit) == LUNFS_META_BS, "jcommit");

/* ---- resource cluster header (second 4 KiB of an 8 KiB table entry) ---- */
enum { RC_FILE = 1, RC_META = 2, RC_INODE = 3 };
#define RC_MAX_ENTRIES 1024u
struct lunfs_d_rc {
	struct lunfs_hdr h; /* owner = cluster index */
	uint32_t kind;      /* RC_* */
	uint32_t nentries;  /* blocks or inodes covered */
	uint32_t nfree;
	uint32_t affinity;  /* slot that last allocated here (hint) */
	uint64_t first;     /* first block number or inode number covered */
	uint64_t reserved;
	uint8_t bitmap[RC_MAX_ENTRIES / 8];  /* bit i set: entry i in use */
	uint16_t refcnt[RC_MAX_ENTRIES];     /* references (file and meta blocks) */
	uint8_t pad[LUNFS_META_BS - 96 - RC_MAX_ENTRIES / 8 - 2 * RC_MAX_ENTRIES];
} __attribute__((packed));
_Static_assert(offsetof(struct lunfs_d_rc, bitmap) == 96, "rc");
_Static_assert(offsetof(struct lunfs_d_rc, refcnt) == 224, "rc refcnt");
_Static_assert(sizeof(struct lunfs_d_rc) == LUNFS_META_BS, "rc size");

/* ---- inode (second 4 KiB of an 8 KiB inode slot) ---- */
#define INO_NDIRECT 128u
#define INO_NINDIRECT 4u /* single, double, triple; the fourth slot holds xattr_blk */
#define INO_XATTR_BLK 3u /* indirect[3] on disk: first xattr block (INCOMPAT_XATTR_BLOCKS) */
#define INO_NSNAPS 16u
#define INO_INLINE_OFF 1392u
#define INO_INLINE_LEN 1024u
#define INO_XATTR_OFF 2416u
#define INO_XATTR_LEN (LUNFS_META_BS - INO_XATTR_OFF)
enum {
	INOF_THICK = 1u << 0,    /* preallocated */
	INOF_EZT = 1u << 1,      /* eager-zeroed thick */
	INOF_SNAPSHOT = 1u << 2, /* read-only snapshot inode */
	INOF_INLINE = 1u << 3,   /* data lives in the inline area */
	INOF_MAPMETA = 1u << 4,  /* the map addresses meta blocks (directories) */
};
struct lunfs_d_time {
	uint64_t sec;
	uint32_t nsec;
	uint32_t reserved;
} __attribute__((packed));
struct lunfs_d_inode {
	struct lunfs_hdr h; /* owner = ino */
	uint64_t ino;
	uint32_t mode;      /* POSIX type and permission bits; 0 = free */
	uint32_t flags;     /* INOF_* */
	uint32_t uid, gid, nlink, igen;
	uint64_t size;
	uint64_t nblocks;   /* map units allocated */
	struct lunfs_d_time atime, mtime, ctime, btime;
	uint64_t rdev;
	uint64_t parent;    /* directory: its parent; snapshot: the live file */
	uint64_t snap_id;   /* snapshot: its id; live file: the next id to give */
	uint32_t nsnaps;
	uint32_t xattr_len;
	uint64_t snaps[INO_NSNAPS];      /* snapshot inodes, oldest first */
	uint64_t indirect[INO_NINDIRECT];
	uint64_t direct[INO_NDIRECT];
	uint8_t inline_data[INO_INLINE_LEN];
	uint8_t xattrs[INO_XATTR_LEN];
} __attribute__((packed));
_Static_assert(offsetof(struct lunfs_d_inode, snaps) == 208, "ino snaps");
_Static_assert(offsetof(struct lunfs_d_inode, direct) == 368, "ino direct");
_Static_assert(offsetof(struct lunfs_d_inode, inline_data) == INO_INLINE_OFF, "ino inline");
_Static_assert(offsetof(struct lunfs_d_inode, xattrs) == INO_XATTR_OFF, "ino xattr");
_Static_assert(sizeof(struct lunfs_d_inode) == LUNFS_META_BS, "inode");

/* ---- block pointers ---- */
#define PTR_BLOCK_MASK ((1ull << 48) - 1)
#define PTR_TBZ (1ull << 63)    /* allocated, reads as zeros until written */
#define PTR_SHARED (1ull << 62) /* may be shared with a snapshot: copy before write */
#define PTR_FLAGS_MASK (PTR_TBZ | PTR_SHARED)
#define PTRS_PER_BLOCK 500u
struct lunfs_d_ptr {
	struct lunfs_hdr h; /* owner = ino */
	uint32_t level;     /* 1 = points at data, n = points at level n-1 */
	uint32_t reserved0;
	uint64_t start;     /* first logical unit this block maps */
	uint64_t reserved1[2];
	uint64_t ptrs[PTRS_PER_BLOCK];
} __attribute__((packed));
_Static_assert(offsetof(struct lunfs_d_ptr, ptrs) == 96, "ptr");
_Static_assert(sizeof(struct lunfs_d_ptr) == LUNFS_META_BS, "ptr size");

/* ---- directory block ---- */
#define DIR_FIRST 96u
struct lunfs_d_dirent {
	uint64_t ino;      /* 0 = free space */
	uint16_t rec_len;  /* to the next entry, multiple of 8 */
	uint8_t name_len;
	uint8_t type;      /* DT_* of <dirent.h> */
	char name[];
} __attribute__((packed));
#define DIRENT_HDR 12u
struct lunfs_d_dir {
	struct lunfs_hdr h; /* owner = directory ino */
	uint64_t index;     /* logical block index in the directory */
	uint8_t reserved[24];
	uint8_t entries[LUNFS_META_BS - DIR_FIRST];
} __attribute__((packed));
_Static_assert(sizeof(struct lunfs_d_dir) == LUNFS_META_BS, "dir");

/* ---- helpers (ondisk.c) ---- */
uint64_t lunfs_csum(const void *rec, size_t size);
/* Fills the header (magic, version, uuid, self, gen, owner) and stamps the
 * checksum over [8, size).  Call after the body is complete. */
void lunfs_hdr_seal(void *rec, size_t size, uint32_t magic, const uint8_t uuid[16], uint64_t self,
		    uint64_t gen, uint64_t owner);
/* Verifies a record read from disk.  Returns 0, or -EFSCORRUPTED with a
 * reason in *why (static string) when why is not NULL.  uuid may be NULL
 * (superblock before the UUID is known). */
int lunfs_hdr_check(const void *rec, size_t size, uint32_t magic, const uint8_t *uuid,
		    uint64_t self, const char **why);
int lunfs_is_zero(const void *buf, size_t len);

/* Superblock: decode verifies everything, including geometry consistency.
 * Returns 0, -EFSCORRUPTED (bad magic, checksum or geometry; *why says which)
 * or -EPROTONOSUPPORT (unknown version). */
int lunfs_sb_decode(const void *blk, struct lunfs_sb *sb, const char **why);
void lunfs_sb_encode(const struct lunfs_sb *sb, void *blk, int backup);

/* Heartbeat slot and lock record: an all-zero record decodes as pristine
 * (FREE, generation 0). */
int lunfs_hb_decode(const void *rec, const uint8_t uuid[16], uint64_t self, struct lunfs_hb *hb,
		    const char **why);
void lunfs_hb_encode(const struct lunfs_hb *hb, const uint8_t uuid[16], uint64_t self, void *rec);
/* Published statistics (LUNFS_HBSTAT_SIZE bytes at slot + 512); self is
 * that address.  All-zero decodes as nothing published (0).  Returns 0 or
 * -EFSCORRUPTED. */
int lunfs_hbstat_decode(const void *rec, const uint8_t uuid[16], uint64_t self,
			struct lunfs_hbstat *st, const char **why);
void lunfs_hbstat_encode(const struct lunfs_hbstat *st, const uint8_t uuid[16], uint64_t self,
			 uint32_t slot, void *rec);
int lunfs_lock_decode(const void *rec, const uint8_t uuid[16], uint64_t self,
		      struct lunfs_lock *lk, const char **why);
void lunfs_lock_encode(const struct lunfs_lock *lk, const uint8_t uuid[16], uint64_t self,
		       void *rec);


/* Resource cluster header.  An all-zero block is a cluster mkfs never
 * initialised: every entry free.  Decode checks kind, count and that nfree
 * matches the bitmap. */
struct lunfs_rc {
	uint64_t gen;
	uint32_t kind, nentries, nfree, affinity;
	uint64_t first;
	uint8_t bitmap[RC_MAX_ENTRIES / 8];
	uint16_t refcnt[RC_MAX_ENTRIES];
};
void lunfs_rc_init(struct lunfs_rc *rc, uint32_t kind, uint32_t nentries, uint64_t first);
int lunfs_rc_decode(const void *blk, const uint8_t uuid[16], uint64_t self, uint32_t kind,
		    uint32_t nentries, uint64_t first, struct lunfs_rc *rc, const char **why);
void lunfs_rc_encode(const struct lunfs_rc *rc, const uint8_t uuid[16], uint64_t self,
		     uint64_t index, void *blk);
static inline int rc_test(const struct lunfs_rc *rc, uint32_t i)
{
	return rc->bitmap[i / 8] >> (i % 8) & 1;
}
static inline void rc_set(struct lunfs_rc *rc, uint32_t i, int on)
{
	if (on)
		rc->bitmap[i / 8] |= 1u << (i % 8);
	else
		rc->bitmap[i / 8] &= ~(1u << (i % 8));
}

struct lunfs_time {
	int64_t sec;
	uint32_t nsec;
};
struct lunfs_inode {
	uint64_t gen, ino;
	uint32_t mode, flags, uid, gid, nlink, igen;
	uint64_t size, nblocks;
	struct lunfs_time atime, mtime, ctime, btime;
	uint64_t rdev, parent, snap_id;
	uint32_t nsnaps, xattr_len;
	uint64_t snaps[INO_NSNAPS];
	uint64_t indirect[INO_NINDIRECT]; /* [3] is always 0 here: see xattr_blk */
	uint64_t xattr_blk;  /* meta block of the first xattr block, 0 none */
	uint64_t direct[INO_NDIRECT];
	uint8_t inline_data[INO_INLINE_LEN];
	uint8_t xattrs[INO_XATTR_LEN];
};
/* An all-zero block decodes as a free inode (mode 0).  Returns 0 or
 * -EFSCORRUPTED. */
int lunfs_inode_decode(const void *blk, const uint8_t uuid[16], uint64_t self, uint64_t ino,
		       struct lunfs_inode *in, const char **why);
void lunfs_inode_encode(const struct lunfs_inode *in, const uint8_t uuid[16], uint64_t self,
			void *blk);

/* Pointer block. */
struct lunfs_ptrblk {
	uint64_t gen, owner, start;
	uint32_t level;
	uint64_t ptrs[PTRS_PER_BLOCK];
};
/* Checks owner, level, and that every pointer has only known flags and a
 * block number below nblocks.  Returns 0 or -EFSCORRUPTED. */
int lunfs_ptr_decode(const void *blk, const uint8_t uuid[16], uint64_t self, uint64_t owner,
		     uint32_t level, uint64_t nblocks, struct lunfs_ptrblk *p, const char **why);
void lunfs_ptr_encode(const struct lunfs_ptrblk *p, const uint8_t uuid[16], uint64_t self,
		      void *blk);

/* Directory block: entries are read and written in place through these. */
struct lunfs_dirent_info {
	uint64_t ino;
	uint32_t off, rec_len, name_len, type;
	const char *name; /* points into the block; not NUL-terminated */
};
/* Verifies header, owner, index and the entry chain (every rec_len a
 * multiple of 8 that fits, names without '/' or NUL).  Returns 0 or
 * -EFSCORRUPTED. */
int lunfs_dir_check(const void *blk, const uint8_t uuid[16], uint64_t self, uint64_t owner,
		    uint64_t index, const char **why);
/* An empty block: one free entry spanning the whole entry area. */
void lunfs_dir_init(void *blk);
/* Entry at byte offset off of a checked block. */
void lunfs_dirent_get(const void *blk, uint32_t off, struct lunfs_dirent_info *e);
void lunfs_dirent_put(void *blk, uint32_t off, uint64_t ino, uint32_t rec_len, uint32_t type,
		      const char *name, uint32_t name_len);
void lunfs_dir_seal(void *blk, const uint8_t uuid[16], uint64_t self, uint64_t gen,
		    uint64_t owner, uint64_t index);
uint64_t lunfs_hdr_gen(const void *rec);
static inline uint32_t dirent_size(uint32_t name_len)
{
	return (DIRENT_HDR + name_len + 7) & ~7u;
}

/* Xattr block: a meta block holding more of an inode's xattrs, in the
 * inode's xattr area format; the blocks of an inode form a chain from the
 * inode's xattr_blk. */
#define XBLK_FIRST 96u
#define XBLK_AREA (LUNFS_META_BS - XBLK_FIRST) /* 4000 bytes of entries */
#define XATTR_MAX_BLOCKS 16u                   /* longest chain */
struct lunfs_d_xblk {
	struct lunfs_hdr h; /* owner = ino; gen +1 on every rewrite */
	uint64_t next;      /* meta block of the next xattr block, 0 = last */
	uint32_t len;       /* bytes of entries in use */
	uint32_t reserved0;
	uint8_t reserved[16];
	uint8_t entries[XBLK_AREA];
} __attribute__((packed));
_Static_assert(offsetof(struct lunfs_d_xblk, entries) == XBLK_FIRST, "xblk entries");
_Static_assert(sizeof(struct lunfs_d_xblk) == LUNFS_META_BS, "xblk size");
struct lunfs_xblk {
	uint64_t gen, owner, next;
	uint32_t len;
	uint8_t entries[XBLK_AREA];
};
/* Checks header, owner, next < nblocks (meta blocks) and the entries.
 * Returns 0 or -EFSCORRUPTED. */
int lunfs_xblk_decode(const void *blk, const uint8_t uuid[16], uint64_t self, uint64_t owner,
		      uint64_t nblocks, struct lunfs_xblk *x, const char **why);
void lunfs_xblk_encode(const struct lunfs_xblk *x, const uint8_t uuid[16], uint64_t self,
		       void *blk);

/* Inode xattr area: packed entries {u8 name_len, u8 0, le16 value_len, name,
 * value}, xattr_len bytes in all.  An xattr block's entries have the same
 * format; cap is the size of the area (INO_XATTR_LEN or XBLK_AREA). */
#define XATTR_HDR 4u
struct lunfs_xattr_info {
	uint32_t off, name_len, value_len;
	const char *name;
	const uint8_t *value;
};
/* Entry at *pos (advancing it); returns 1, or 0 at the end. */
int lunfs_xattr_next(const uint8_t *area, uint32_t len, uint32_t *pos, struct lunfs_xattr_info *x);
/* Verifies the chain: entries fit exactly in len <= cap, names non-empty. */
int lunfs_xattr_check(const uint8_t *area, uint32_t len, uint32_t cap);
/* Removes the entry at off. */
void lunfs_xattr_del(uint8_t *area, uint32_t *len, uint32_t off);
/* Appends an entry; -ENOSPC if it does not fit in cap. */
int lunfs_xattr_add(uint8_t *area, uint32_t *len, uint32_t cap, const char *name,
		    uint32_t name_len, const void *val, uint32_t val_len);

#endif
