/* lunfs: a model of the takeover protocol, checked with Spin (make model).
 * docs/MODEL.md explains the abstraction; the code is lock/hb.c, lock/lk.c,
 * fs/recover.c, fs/vol.c, journal/jnl.c, fsck/fsck.c, mkfs/mkfs.c.
 *
 * Time is not counted.  What the lease arithmetic (LOCKING.md section 4)
 * guarantees is modelled instead: a taker acts on host A only once it has
 * watched A's counter stand still for a lease, which is after A's own lease
 * check started to fail (a_lease becomes false for good: the guard fences
 * A).  A's lease may run out at any moment (a freeze, a suspend, a slow
 * flush): the process Expire.  Spin's interleavings put any other step
 * between any two steps of a process, which is a freeze of any length at
 * any step; a process that stops for good is a crash.
 *
 * Configurations (-D):
 *   WINDOW   a device write is "guard check; <anything>; the write lands"
 *            (the file backend's residual window); without it the check
 *            and the landing are one step (a barrier at the device).
 *   BARRIER  the takeover preempts A's PR key: the device refuses A's
 *            writes from then on (iSCSI persistent reservations).
 *   REMOUNT  the taker is A's own identity remounting (else a peer B).
 * Seeded bugs (each must make the check fail):
 *   NO_GUARD          A's writes skip the lease check.
 *   REMOUNT_NO_FENCE  the remount skips the fence step of the takeover.
 *   FSCK_NO_CLAIM     fsck writes without claiming the volume first.
 *   NO_BREAK          the CAW arbiter of the file backend cannot be broken
 *                     (and is shared by all blocks, as the OFD design was).
 *   DAMAGED_AS_FREE   a slot that does not decode is taken for FREE.
 */

#define FREE 0
#define LIVE 1
#define REPLAYING 2
#define EXCL 3
#define DAMAGED 4

/* A's heartbeat slot: state and mount generation */
byte sa = LIVE;
byte sa_gen = 1;
bool a_lease = true;    /* A's own lease check passes */
bool a_pre = false;     /* A's PR key was preempted (BARRIER) */
bool a_holds = false;   /* A believes it holds the lock record */
/* the lock record of a VM disk: holder 0 none, 1 A (gen 1), 2 the taker */
byte lk = 0;
byte lk_gen = 0;
byte hdr = 1;           /* A's journal header: owner generation, 0 sealed */
bool t_wrote = false;   /* the taker wrote (replay, data, header) */
bool t_holds = false;

/* fsck and a mounting host M (I5) */
byte sf = FREE;         /* fsck's slot */
byte sm = FREE;         /* M's slot */
bool f_writes = false;
bool m_mounted = false;

/* the CAW arbiter of the file backend: holder of the word of the lock
 * record's block, and of the taker's own heartbeat slot's block */
byte arb_lk = 0;
byte arb_hb = 0;
bool a_frozen_in_caw = false;

/* ---- invariants as monitors ---- */
/* I1: never two hosts that both believe they hold the exclusive lock and
 *     can still write */
#define I1 (!(a_holds && a_lease && !a_pre && t_holds))
/* I3: while the remounted slot is LIVE under generation 2, the journal
 *     header names generation 2 (or is sealed, 0) */
#define I3 (!(sa == LIVE && sa_gen == 2 && hdr != 2 && hdr != 0))
/* I5: fsck never writes while a host is mounted */
#define I5 (!(f_writes && m_mounted))

active proctype Monitor()
{
end:	atomic { !(I1 && I3 && I5) -> assert(I1 && I3 && I5) }
}

/* A device write of host A: the guard checks the lease right before the
 * submission; with WINDOW anything may happen before the write lands. */
#ifdef NO_GUARD
#define GUARD true
#else
#define GUARD a_lease
#endif
/* the device lands the write unless the PR barrier refuses it; I2: no write
 * of A lands after the taker wrote */
#define W_LOCK 0 /* the write half of the lock record's CAW */
#define W_DATA 1 /* a data write of the VM disk */
#define W_HDR 2  /* the journal header write of a checkpoint */
inline effect(what)
{
	if
	:: what == W_LOCK ->
		if
		:: lk == 0 -> lk = 1; lk_gen = 1; a_holds = true
		:: else -> skip /* miscompare */
		fi
	:: what == W_DATA -> skip
	:: what == W_HDR -> hdr = 1
	fi
}
#define LAND(what) if :: !a_pre -> assert(!t_wrote); effect(what) :: else -> skip fi
inline a_write(what)
{
#ifdef WINDOW
	ok = GUARD;
	/* <- a freeze here is the residual window */
	if
	:: ok -> atomic { LAND(what) }
	:: else -> skip /* fenced: refused before submission */
	fi
#else
	atomic {
		if
		:: GUARD -> LAND(what)
		:: else -> skip
		fi
	}
#endif
}

/* A's lease runs out (A froze, was suspended, or its flush hung): its
 * guard fails from then on. */
active proctype Expire()
{
	a_lease = false
}

/* Host A (mount generation 1): takes the lock record with a CAW through the
 * arbiter (lock, read+compare, guard, write, unlock), writes its VM disk
 * and checkpoints its journal header. */
active proctype A()
{
	bool ok;
	/* CAW of the lock record, emulated */
	atomic { arb_lk == 0 -> arb_lk = 1 }
	a_frozen_in_caw = true; /* it may stop here for ever */
	if
	:: true -> skip
	:: true -> goto frozen_for_good /* crash (or a freeze that never ends) inside the CAW */
	fi;
	a_frozen_in_caw = false;
	if
	:: arb_lk != 1 -> goto done /* broken meanwhile: the arbiter check refuses the write */
	:: else -> skip
	fi;
	a_write(W_LOCK);
	atomic { if :: arb_lk == 1 -> arb_lk = 0 :: else -> skip fi }
	if
	:: a_holds ->
		a_write(W_DATA);
		a_write(W_HDR)
	:: else -> skip
	fi;
done:
	skip;
frozen_for_good:
	skip
}

/* The taker: a peer B, or A's identity remounting (REMOUNT).  It acts only
 * on what a lease of silence shows (A's lease is gone), through the one
 * takeover path: slot to REPLAYING, fence, replay (seal), free (or LIVE
 * under the next generation, header first), then it takes the lock. */
active proctype Taker()
{
	/* its own heartbeat renewal: a CAW of its own slot, through the
	 * arbiter of that block; a frozen A must never keep it from renewing */
#ifdef NO_BREAK
	/* one exclusion for every block (the OFD lock + per-device mutex) */
	atomic { arb_lk == 0 -> arb_lk = 2 };
	arb_lk = 0;
#else
	atomic { arb_hb == 0 -> arb_hb = 2 };
	arb_hb = 0;
#endif
	/* 1. decide: A's counter stood still for a lease */
#ifdef DAMAGED_AS_FREE
	/* a damaged slot decoded as FREE: no watch, no takeover */
	skip;
#else
	!a_lease;
#endif
	/* 2. take the slot (CAW from the watched image) */
	atomic { sa == LIVE && sa_gen == 1 -> sa = REPLAYING };
	/* 3. fence */
#ifdef BARRIER
#if defined(REMOUNT) && defined(REMOUNT_NO_FENCE)
	skip;
#else
	a_pre = true;
#endif
#endif
	/* 4. replay and seal the journal */
	t_wrote = true;
	hdr = 0;
	/* 5. free, or LIVE under the next generation (remount) */
#ifdef REMOUNT
	hdr = 2;
	sa_gen = 2;
	sa = LIVE;
#else
	sa = FREE;
#endif
	/* the lock record: a holder whose slot is not LIVE at its generation is
	 * GONE; a CAW through the arbiter, which it may break once the holder
	 * held it too long (A froze inside its CAW) */
	if
	:: atomic { arb_lk == 0 -> arb_lk = 2 }
#ifndef NO_BREAK
	:: atomic { arb_lk == 1 && a_frozen_in_caw -> arb_lk = 2 } /* break */
#endif
	fi;
	if
	:: lk == 0 || (lk == 1 && !(sa == LIVE && sa_gen == lk_gen)) ->
		lk = 2;
		t_holds = true
	:: else -> skip
	fi;
	arb_lk = 0;
	/* its own writes to the VM disk */
	t_wrote = true
}

/* fsck -y: claims the volume (an EXCLUSIVE slot), then watches the others:
 * a live host makes it give the slot back and refuse; else it writes. */
active proctype Fsck()
{
#ifdef FSCK_NO_CLAIM
	f_writes = true;
	f_writes = false
#else
	sf = EXCL;
	if
	:: sm == LIVE -> sf = FREE          /* a live host: refuse, nothing written */
	:: else -> f_writes = true; f_writes = false; sf = FREE
	fi
#endif
}

/* A host M mounting at the same time: claims its slot, then refuses while
 * an EXCLUSIVE slot is alive. */
active proctype Mount()
{
	sm = LIVE;
	if
	:: sf == EXCL -> sm = FREE          /* held by fsck: refuse */
	:: else -> m_mounted = true; m_mounted = false; sm = FREE
	fi
}
