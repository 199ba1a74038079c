/* lock/: heartbeat slots, liveness and on-disk lock records.
 *
 * The protocol, with host interleavings and the lease arithmetic, is in
 * docs/LOCKING.md.  In short: a host owns one heartbeat slot, claimed and
 * renewed with compare-and-write (CAW); every lock record names its holders
 * as (slot, mount generation), so one renewal keeps all of a host's locks
 * alive.  A host whose renewal miscompares, or whose last successful renewal
 * was submitted more than lease - margin ago, is fenced: hb_ok() fails and
 * it must not write again.
 *
 * Functions return 0 or a negative errno (-EFENCED, -EBUSY, -EFSCORRUPTED...).
 */
#ifndef LUNFS_LK_H
#define LUNFS_LK_H

#include <stdint.h>
#include "dev/dev.h"
#include "format/ondisk.h"

/* Where the heartbeat region is and how the leases run; from the superblock. */
struct lk_params {
	uint8_t uuid[16];
	uint64_t hb_off;
	uint32_t max_hosts;
	uint32_t lease_ms, hb_ms, fence_margin_ms;
	uint64_t jnl_off, jnl_size; /* journal of slot i at jnl_off + i * jnl_size */
};

struct hb_host;

/* The parameters a volume's superblock gives. */
struct lk_params lk_params_of(const struct lunfs_sb *sb);

/* Identity of this host. */
struct hb_ident {
	char name[LUNFS_HOSTNAME_LEN + 1];
	uint8_t uuid[16];
	uint64_t pr_key; /* iSCSI PR key registered before the claim, 0 none */
};

/* What a host publishes in its slot at every renewal (lunfs top). */
struct hb_pub {
	uint64_t reads, writes, locks, held; /* device I/Os, lock acquires, held now */
	int has_stat;                /* stat is set: publish it too */
	struct lunfs_hbstat stat;    /* data I/O statistics (gen, mount_gen: set by hb) */
};

/* Claims a heartbeat slot for this host and starts the renewal thread.
 * Prefers the slot this host UUID held before (so its journal is replayed),
 * else a FREE slot from a place derived from the UUID.  A slot that is LIVE
 * under our own UUID (a crashed earlier mount, or a second daemon with the
 * same identity) is taken only after its counter has stood still for a whole
 * lease, watched on our monotonic clock.  *prev_state receives the slot's
 * state before the claim (HB_LIVE means the last mount crashed).
 * Returns 0, -ENOSPC (no free slot), or another negative errno. */
int hb_claim(struct dev *d, const struct lk_params *p, const struct hb_ident *id,
	     struct hb_host **out, uint32_t *prev_state);
/* hb_claim with flags: HB_ASSUME_DEAD takes our own LIVE slot at once,
 * without watching it for a lease.  Only for a caller that knows the earlier
 * mount of this identity is gone (its process exited; tests). */
enum { HB_ASSUME_DEAD = 1, HB_CLAIM_EXCLUSIVE = 2 };
int hb_claim_flags(struct dev *d, const struct lk_params *p, const struct hb_ident *id,
		   unsigned flags, struct hb_host **out, uint32_t *prev_state);

/* Stops renewing and marks the slot FREE.  Frees h.  Returns 0 or -errno
 * (h is freed in every case).  A slot still REPLAYING by itself (our own
 * crashed mount, not replayed yet) is left as it is (-EAGAIN): only a
 * replay may free it. */
int hb_release(struct hb_host *h);

/* Stops the renewal thread and frees h without touching the disk: the slot
 * stays LIVE as after a crash (tests). */
void hb_abandon(struct hb_host *h);

/* 0 while this host may write; -EFENCED once it lost its heartbeat. */
int hb_ok(struct hb_host *h);

/* After a claim that found our own slot LIVE (a crashed earlier mount), the
 * slot is REPLAYING under the old mount generation: call this once our
 * journal is replayed to go LIVE under the new one (hb_mount_gen()).  A
 * no-op for a slot claimed FREE.  Returns 0 or -errno. */
int hb_recovered(struct hb_host *h);

/* Why this host fenced itself (a static string), or NULL while it is not. */
const char *hb_fence_reason(struct hb_host *h);
/* Fences this host now (why is logged once): no more writes, no more
 * renewals, as if the lease had run out.  Lock-free: any thread, under any
 * lock (the journal, when a commit's write fails). */
void hb_fence_self(struct hb_host *h, const char *why);

uint32_t hb_slot(const struct hb_host *h);
uint64_t hb_mount_gen(const struct hb_host *h);
struct dev *hb_dev(const struct hb_host *h);
const struct lk_params *hb_params(const struct hb_host *h);

/* Reads slot s.  Returns 0 or -errno / -EFSCORRUPTED. */
int hb_read(struct dev *d, const struct lk_params *p, uint32_t s, struct lunfs_hb *hb);

/* Liveness of a lock holder, observed (never compared across clocks). */
enum hb_peer { PEER_GONE = 0, PEER_ALIVE = 1, PEER_DEAD = 2 };
/* PEER_GONE: the slot is FREE or holds another mount generation, so the
 * holder's locks are void.  PEER_ALIVE: its counter moved within the last
 * lease on our clock (or we have not watched it for a whole lease yet).
 * PEER_DEAD: LIVE but its counter stood still for a whole lease: it needs
 * recovery before its locks may be taken.  Returns the state or -errno. */
int hb_peer(struct hb_host *h, uint32_t slot, uint64_t mount_gen);

/* Sets the counters the next renewals publish.  The statistics go into
 * the slot's block after the record (LUNFS_HBSTAT_OFF): within the
 * renewal's CAW image when the logical block covers them, else by one
 * plain (lease-guarded) write after the renewal, skipped while nothing
 * changes.  The max_ns of two publications between renewals merge. */
void hb_publish(struct hb_host *h, const struct hb_pub *pub);

/* Publishes that this host waits for the lock record at off (0: no more),
 * at once: a holder that only lingers on it lets go when it sees that. */
void hb_set_want(struct hb_host *h, uint64_t off);
/* Withdraws the want for off, if it is still the one published (another
 * thread of this host may have announced its own since). */
void hb_clear_want(struct hb_host *h, uint64_t off);

/* Non-zero when, at the last scan, another live host waited for off. */
int hb_wanted(struct hb_host *h, uint64_t off);

/* Finds the LIVE slot of the host named name (fresh read).  Returns 0 with
 * *slot and *mount_gen, or -ENOENT. */
int hb_find_live(struct hb_host *h, const char *name, uint32_t *slot, uint64_t *mount_gen);

/* Peer recovery (docs/LOCKING.md section 11).  The renewal thread reads the
 * whole heartbeat region after every renewal, so every peer is watched all
 * the time.  hb_needs_recovery() fills slots with up to max slots that need
 * a survivor: LIVE (or REPLAYING by itself) with a counter that stood still
 * for a lease, or REPLAYING by a host that is gone or dead.  Returns the
 * count. */
int hb_needs_recovery(struct hb_host *h, uint32_t *slots, int max);
/* Re-reads slot s, decides again, and CAWs it to REPLAYING by us, keeping
 * the dead mount's generation.  *victim receives the slot as it was (name,
 * mount_gen, pr_key).  Returns 0, -EAGAIN (not ours to recover: alive,
 * already taken, or another survivor won), or -errno. */
int hb_recover_begin(struct hb_host *h, uint32_t s, struct lunfs_hb *victim);
/* After the replay: CAWs slot s from our REPLAYING image to FREE.  Returns
 * 0, -EAGAIN (someone took the recovery over), or -errno. */
int hb_recover_end(struct hb_host *h, uint32_t s);

/* The liveness watch (one implementation for mount, fsck, mkfs and the
 * CLI): reads the heartbeat region every hb_ms/2 for up to ms and classifies
 * every slot but self that is not FREE, or does not decode (a damaged slot
 * may be a live host's), and whose state is in the mask states (bits
 * 1 << HB_*; 0: every state): ALIVE once its bytes change, DEAD when they
 * stood still the whole time.  Returns early when every watched slot moved.
 * Returns 0 or -errno. */
#define HB_WATCH_MAX 4096
enum { HB_W_IGNORED = 0, HB_W_DEAD = 1, HB_W_ALIVE = 2 };
struct hb_watch {
	int nwatched, nalive;
	struct {
		int status, damaged;
		struct lunfs_hb hb; /* decoded (zeroed when damaged) */
	} slot[HB_WATCH_MAX];
};
int hb_watch(struct dev *d, const struct lk_params *p, uint32_t self, unsigned states,
	     uint32_t ms, struct hb_watch *w);

/* fsck.lunfs -y and mkfs.lunfs take the whole volume: claims a slot as
 * EXCLUSIVE (renewed like any host's) and then watches every other slot
 * for a lease.  Returns 0 with *out when no other host is alive (w says
 * which slots are dead: the caller takes each over with hb_recover_begin,
 * hb_fence_victim, its replay and hb_recover_end), or -EBUSY (w names the
 * live ones; our slot is freed again), or -errno. */
int hb_claim_exclusive(struct dev *d, const struct lk_params *p, const struct hb_ident *id,
		       struct hb_host **out, struct hb_watch *w);

/* A mount, right after its claim and before any other write: returns 1 (and
 * the holder's name in who) when fsck or mkfs holds the volume (an
 * EXCLUSIVE slot whose heartbeat moves within a lease), 0 when none does
 * (returns at once when no slot is EXCLUSIVE), or -errno. */
int hb_exclusive_alive(struct hb_host *h, char *who, size_t wlen);

/* Step 2 of every takeover on a device with persistent reservations:
 * PREEMPTs the victim's key with ours, so the target refuses whatever the
 * victim still sends, and checks that the key is gone.  0 when done (or
 * nothing to do: no PR, no key), -EBUSY when the key is still registered,
 * -EACCES when we were preempted ourselves, or -errno. */
int hb_fence_victim(struct hb_host *h, uint64_t victim_key);
/* victim_key of a damaged slot (hb_recover_begin): its key is unknown, so
 * every registered key that no decodable slot publishes is preempted. */
#define HB_KEY_UNKNOWN UINT64_MAX

/* Registers a new random persistent-reservation key ("LN" in its top bytes)
 * on a device with PR and makes sure a Write Exclusive - Registrants Only
 * reservation exists; *key = 0 on a device without PR.  Before any claim:
 * a host publishes its key in its slot.  Returns 0 or -errno. */
int hb_pr_register(struct dev *d, uint64_t *key);
void hb_pr_unregister(struct dev *d, uint64_t key);
/* The key this host published (0 none). */
uint64_t hb_pr_key(const struct hb_host *h);

/* Step 2 for a slot just taken (hb_recover_begin): fences the victim's key
 * and, for a slot that was REPLAYING by another host (that recovery stalled
 * or its host died), that replayer's key too, since its replay writes may
 * still be in flight.  Returns as hb_fence_victim. */
int hb_fence_taken(struct hb_host *h, const struct lunfs_hb *victim);

/* Steps 1 and 2 of the takeover for fsck and mkfs, which watched the slot
 * dead (hb_claim_exclusive): hb_recover_begin, retried for up to wait_ms
 * while our own watch has not yet seen it stand still for a lease, then
 * hb_fence_taken.  Returns 0 with *victim, or -errno. */
int hb_take_over(struct hb_host *h, uint32_t s, uint32_t wait_ms, struct lunfs_hb *victim);

/* After a claim of our own crashed slot: the PR key that mount registered
 * (to be fenced before our replay), else 0. */
uint64_t hb_prev_pr_key(const struct hb_host *h);

/* Test hook: moves the clock this host measures its lease on by ms (a
 * suspend of that long, as CLOCK_BOOTTIME would show it). */
void hb_test_clock_jump(struct hb_host *h, int64_t ms);

/* Test hook: renewals stop (as if the host froze) while set. */
void hb_pause_renewal(struct hb_host *h, int paused);

/* ---- lock records ---- */
struct lk_lock {
	uint64_t off;     /* byte address of the lock block */
	int mode;         /* LK_* held by us, LK_FREE when not held */
	struct lunfs_lock rec; /* last image we wrote or read */
	int pinned;            /* after -EBUSY: a live conflicting holder has an open pin */
	uint8_t img[4096];     /* its raw block (dev_lbs bytes used) */
};

enum { LK_NOWAIT = 0, LK_WAIT = 1 };

/* Takes the lock at byte address off for the object at address object, in
 * mode LK_EXCLUSIVE, LK_SHARED_RO or LK_MULTI_WRITER.  Holders that are GONE
 * are dropped.  A live holder in a conflicting mode gives -EBUSY at once with
 * LK_NOWAIT, or retries with backoff up to timeout_ms with LK_WAIT.  A DEAD
 * holder gives -ESTALE (its host must be recovered first).  On -EBUSY or
 * -ESTALE, l->rec holds the record that blocked us.  Returns 0 or -errno. */
int lk_acquire(struct hb_host *h, struct lk_lock *l, uint64_t off, uint64_t object, int mode,
	       int wait, uint32_t timeout_ms);

/* lk_acquire with holder flags (LK_HOLD_OPEN).  Asking again for a mode we
 * hold with other flags, or for another mode when we are the only holder,
 * rewrites our entry (upgrade, downgrade, pin, unpin).  A conflicting live
 * holder that has LK_HOLD_OPEN gives -EBUSY at once even with LK_WAIT. */
int lk_acquire_flags(struct hb_host *h, struct lk_lock *l, uint64_t off, uint64_t object,
		     int mode, unsigned hflags, int wait, uint32_t timeout_ms);

/* Drops our hold (the record becomes FREE when we were the last holder).
 * Returns 0 or -errno. */
int lk_release(struct hb_host *h, struct lk_lock *l);

/* Hands our hold over to the mount (slot, mount_gen) with holder flags, in
 * one CAW that replaces our entry: the record is never FREE in between, so
 * no third host can take it (lock handoff for live migration).  Returns 0,
 * -ESTALE when we no longer held it, or -errno. */
int lk_transfer(struct hb_host *h, struct lk_lock *l, uint32_t slot, uint64_t mount_gen,
		unsigned flags);

/* Reads the lock record at off.  Returns 0 or -errno / -EFSCORRUPTED. */
int lk_read(struct dev *d, const uint8_t uuid[16], uint64_t off, struct lunfs_lock *rec);

/* Removes from the lock record at off every holder that names slot with a
 * mount generation below below_gen (earlier mounts of that slot, which
 * crashed or were recovered).  cur is the record's current image (lbs
 * bytes), as read.  Returns 1 if it rewrote the record, 0 if nothing named
 * them, or -errno. */
int lk_purge(struct hb_host *h, uint64_t off, const void *cur, uint32_t slot, uint64_t below_gen);

const char *lk_mode_name(int mode);
const char *hb_state_name(int state);

#endif
