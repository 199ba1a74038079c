/* iSCSI backend of the device layer, over libiscsi.
 *
 * URL: iscsi://[USER[%PASSWORD]@]HOST[:PORT]/TARGET-IQN/LUN, parsed by
 * libiscsi's iscsi_parse_full_url().  One iSCSI session (one TCP connection)
 * per open device.  Every call runs one SCSI command at a time under
 * iscsi_dev.lock: it builds the command with a libiscsi *_task() function and
 * drives the event loop (poll + iscsi_service) until the command completes.
 * dev_submit/dev_reap use the generic synchronous emulation.
 *
 * Failure policy.  libiscsi's automatic reconnect is switched off on purpose:
 * it silently re-sends the commands that were in flight on the dead
 * connection, and on a shared disk that is wrong.  A re-sent COMPARE AND
 * WRITE compares against its own first execution and reports a miscompare;
 * a re-sent write may land after another host took the block over; a SCSI-2
 * reservation does not survive into the new session.  So a command caught by
 * a connection failure or a timeout fails with -EIO and the session is torn
 * down; the next command logs in again, with the same initiator name and the
 * same ISID, hence the same initiator port.  A target that follows SPC keeps
 * our PR registration across that; stock tgt does not (it ties registrations
 * to the session), so there writes after a reconnect fail with -EACCES until
 * the host registers again -- which is the safe way to fail: never
 * re-register behind the caller's back, that would undo a fence.  Only
 * commands without side effects (reads, inquiries, PR IN) are retried once on
 * the new session.
 *
 * SCSI status -> errno:
 *   GOOD, CONDITION MET, RECOVERED ERROR   0
 *   CHECK CONDITION / UNIT ATTENTION       retried, up to UA_RETRIES times
 *   CHECK CONDITION / MISCOMPARE           -EMISCOMPARE
 *   CHECK CONDITION / ILLEGAL REQUEST      -EOPNOTSUPP (invalid opcode), else -EINVAL
 *   CHECK CONDITION / DATA PROTECT         -EROFS
 *   RESERVATION CONFLICT                   -EACCES ("fenced"; see conflict_wait)
 *   BUSY, TASK SET FULL                    retried with backoff, then -EBUSY
 *   anything else, transport failure       -EIO
 *
 * Compare-and-write comes in two flavours (dev_opts.caw_mode):
 *   native   SCSI COMPARE AND WRITE (0x89): the target compares and writes
 *            atomically.  Used when the target has it.
 *   reserve  RESERVE(6), READ, compare, WRITE, RELEASE(6).  The SCSI-2
 *            reservation shuts every other I_T nexus out of the whole LU for
 *            the few round trips of the sequence.  Every host must use this
 *            mode (or native CAW, which a reservation also excludes) for the
 *            exclusion to mean anything.
 * In AUTO mode open() finds out which one works.  If REPORT SUPPORTED
 * OPERATION CODES says COMPARE AND WRITE is not supported, reserve it is;
 * otherwise a harmless CAW of block 0 with its own contents decides, because
 * stock tgt lists the opcode and then rejects the command.
 */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>
#include <iscsi/iscsi.h>
#include <iscsi/scsi-lowlevel.h>
#include "dev/dev_impl.h"
#include "util/log.h"

/* Seconds before a command or a login is given up (then the session is
 * dropped and the call fails with -EIO). */
#define IO_TIMEOUT_S 30
/* A fresh session, a PR preemption or a LUN reset each raise one UNIT
 * ATTENTION; more than this in a row means something is wrong. */
#define UA_RETRIES 8
#define BUSY_RETRIES 40
/* How long a reserve-mode compare-and-write waits for RESERVE(6). */
#define RESERVE_WAIT_MS 30000
/* How long a read or write waits out a peer's SCSI-2 reservation. */
#define CONFLICT_WAIT_MS 10000
/* Reserve-mode compare-and-write holds RESERVE(6) for one READ and one WRITE:
 * well under a millisecond.  A holder that finds more than RESERVE_HOLD_MS
 * gone between its RESERVE and its WRITE (it was frozen, or starved) does
 * not write: it releases and starts again.  A peer that has been shut out by
 * a SCSI-2 reservation for RESERVE_BREAK_MS without a break takes that
 * holder for frozen or dead and breaks the reservation with a LOGICAL UNIT
 * RESET, as VMFS does with SCSI-2 reservations: otherwise one frozen host
 * would stall every other host's heartbeat until they all fenced.  The
 * holder's check makes the break safe: it can no longer be inside the
 * window in which it would write.  (A freeze between that check and the
 * WRITE reaching the target, microseconds, is the one residual case.) */
#define RESERVE_HOLD_MS 150
#define RESERVE_BREAK_MS 1000
/* Largest single READ/WRITE when the target sets no limit. */
#define MAX_XFER_BYTES (8u << 20)

enum cmd_op {
	OP_TUR,
	OP_INQUIRY,
	OP_RCAP16,
	OP_RSOC,
	OP_READ,
	OP_WRITE,
	OP_CAW,
	OP_SYNC16,
	OP_SYNC10,
	OP_WSAME16,
	OP_RESERVE6,
	OP_RELEASE6,
	OP_PR_IN,
	OP_PR_OUT,
};

static const char *const op_names[] = {
	[OP_TUR] = "TEST UNIT READY",
	[OP_INQUIRY] = "INQUIRY",
	[OP_RCAP16] = "READ CAPACITY(16)",
	[OP_RSOC] = "REPORT SUPPORTED OPCODES",
	[OP_READ] = "READ(16)",
	[OP_WRITE] = "WRITE(16)",
	[OP_CAW] = "COMPARE AND WRITE",
	[OP_SYNC16] = "SYNCHRONIZE CACHE(16)",
	[OP_SYNC10] = "SYNCHRONIZE CACHE(10)",
	[OP_WSAME16] = "WRITE SAME(16)",
	[OP_RESERVE6] = "RESERVE(6)",
	[OP_RELEASE6] = "RELEASE(6)",
	[OP_PR_IN] = "PERSISTENT RESERVE IN",
	[OP_PR_OUT] = "PERSISTENT RESERVE OUT",
};

/* One SCSI command as exec() runs it. */
struct cmd {
	enum cmd_op op;
	uint64_t lba;
	uint32_t len;     /* data bytes (READ/WRITE/CAW), or allocation length */
	uint32_t nblocks; /* WRITE SAME */
	struct scsi_iovec *iov;
	int niov;
	unsigned char *buf; /* WRITE SAME: one block */
	int sa;             /* PR service action, RSOC opcode, INQUIRY page */
	int type;           /* PR type */
	struct scsi_persistent_reserve_out_basic *pr;
	/* Non-zero: the session generation this command must run in; fail with
	 * -EIO instead of running it in a new session (a SCSI-2 reservation is
	 * held and would be gone).  Also keeps the lock held while backing off,
	 * and never waits out a RESERVATION CONFLICT (we hold the LU). */
	unsigned gen;
	/* Re-run once on a new session after a transport failure. */
	int idempotent;
};

struct iscsi_dev {
	struct dev dev; /* must be first */
	char portal[MAX_STRING_SIZE + 1];
	char target[MAX_STRING_SIZE + 1];
	char user[MAX_STRING_SIZE + 1], passwd[MAX_STRING_SIZE + 1];
	char tuser[MAX_STRING_SIZE + 1], tpasswd[MAX_STRING_SIZE + 1];
	char *initiator;
	int lun;
	uint32_t isid; /* random part of the ISID, the same for every login */
	uint32_t max_xfer;   /* bytes per READ/WRITE, multiple of lbs */
	uint32_t max_caw;    /* blocks per native COMPARE AND WRITE */
	uint64_t max_ws;     /* blocks per WRITE SAME, 0 = no limit */

	pthread_mutex_t lock; /* protects everything below */
	struct iscsi_context *iscsi; /* NULL after a failure, until the next login */
	unsigned gen;        /* bumped at every login */
	int use_sync10;      /* SYNCHRONIZE CACHE(16) was rejected */
	uint64_t pr_key;     /* key registered through this handle, 0 = none */
	unsigned pr_gen;     /* session generation pr_key was registered in */
	int caw_mode;        /* enum dev_caw_mode asked for at open */
	int caw_undecided;   /* CAW method still to be found (see choose_caw) */
	uint64_t rnd;        /* backoff jitter */
	unsigned char *scratch; /* reserve-mode CAW read buffer */
	size_t scratch_len;
	uint64_t last_break;  /* when we last broke a stale SCSI-2 reservation */
};

#define S(d) ((struct iscsi_dev *)(d))

/* Internal exec() result: retry the command. */
#define RETRY_UA 1
#define RETRY_BUSY 2

static uint64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static uint32_t jitter(struct iscsi_dev *s, uint32_t max)
{
	s->rnd ^= s->rnd << 13;
	s->rnd ^= s->rnd >> 7;
	s->rnd ^= s->rnd << 17;
	return max ? (uint32_t)(s->rnd % max) : 0;
}

static uint64_t get_be(const unsigned char *p, int n)
{
	uint64_t v = 0;
	for (int i = 0; i < n; i++)
		v = v << 8 | p[i];
	return v;
}

/* ---- the event loop ---------------------------------------------------- */

struct wait {
	int done;
	int status;
	/* libiscsi's error text when the callback ran: later failures in the
	 * same iscsi_service() call overwrite the useful one. */
	char err[200];
};

/* Copies libiscsi's (sometimes multi-line) error text as one line. */
static void one_line(char *dst, size_t len, const char *src)
{
	size_t n = 0;
	for (; src && *src && n + 1 < len; src++) {
		if (*src == '\n' || *src == '\r') {
			if (n && dst[n - 1] != ' ' && src[1])
				dst[n++] = ' ';
		} else {
			dst[n++] = *src;
		}
	}
	while (n && dst[n - 1] == ' ')
		n--;
	dst[n] = 0;
}

static void wait_cb(struct iscsi_context *iscsi, int status, void *command_data,
		    void *private_data)
{
	struct wait *w = private_data;
	(void)command_data;
	w->status = status;
	w->done = 1;
	if (status != SCSI_STATUS_GOOD && !w->err[0])
		one_line(w->err, sizeof(w->err), iscsi_get_error(iscsi));
}

/* Runs ctx's event loop until w completes.  Returns 0 when it did, or a
 * negative errno when the connection failed or nothing happened for
 * IO_TIMEOUT_S (libiscsi's own timeout should have fired first); the caller
 * must then drop the session, which completes w as cancelled. */
static int drive(struct iscsi_context *ctx, struct wait *w)
{
	uint64_t deadline = now_ms() + (IO_TIMEOUT_S + 5) * 1000ull;

	while (!w->done) {
		struct pollfd p = {.fd = iscsi_get_fd(ctx), .events = iscsi_which_events(ctx)};
		int n;

		if (p.fd < 0)
			return -ENOTCONN;
		n = poll(&p, 1, 250);
		if (n < 0 && errno != EINTR)
			return -errno;
		/* With revents 0 this still runs libiscsi's timeout scan. */
		if (iscsi_service(ctx, n > 0 ? p.revents : 0) < 0)
			return -EIO;
		if (!w->done && now_ms() > deadline)
			return -ETIMEDOUT;
	}
	return 0;
}

/* ---- sessions ---------------------------------------------------------- */

static void sess_drop(struct iscsi_dev *s)
{
	if (s->iscsi) {
		/* Cancels whatever is queued: each callback runs now, with
		 * SCSI_STATUS_CANCELLED, while its waiter is still on the stack. */
		iscsi_destroy_context(s->iscsi);
		s->iscsi = NULL;
	}
}

/* True when the idle connection is still up.  A target that closed it
 * (after an idle timeout, a restart, a NOP-In we never answered) leaves EOF
 * or an error in the socket; catch that before sending a command into it,
 * so the command goes to a fresh session instead of failing. */
static int sess_alive(struct iscsi_dev *s)
{
	struct pollfd p = {.fd = iscsi_get_fd(s->iscsi), .events = POLLIN};
	char c;
	ssize_t n;

	if (p.fd < 0)
		return 0;
	if (poll(&p, 1, 0) <= 0)
		return 1;
	if (p.revents & (POLLERR | POLLHUP | POLLNVAL))
		return 0;
	if (!(p.revents & POLLIN))
		return 1;
	n = recv(p.fd, &c, 1, MSG_PEEK | MSG_DONTWAIT);
	if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR))
		return 0;
	/* A NOP-In or an asynchronous message: let libiscsi answer it. */
	return iscsi_service(s->iscsi, POLLIN) == 0;
}

static const char *sense_text(const struct scsi_task *t, char *buf, size_t len)
{
	const char *k = scsi_sense_key_str(t->sense.key);
	const char *a = scsi_sense_ascq_str(t->sense.ascq);
	snprintf(buf, len, "%s (0x%x), %s (0x%04x)", k ? k : "sense key", t->sense.key,
		 a ? a : "ASC/ASCQ", t->sense.ascq);
	return buf;
}

/* Logs in a new session into s->iscsi.  Returns 0 or a negative errno, with
 * dev_set_error() telling why. */
static int sess_login(struct iscsi_dev *s)
{
	struct iscsi_context *ctx = iscsi_create_context(s->initiator);
	struct wait w = {0};
	const char *dbg = getenv("LUNFS_ISCSI_DEBUG");
	int r;

	if (!ctx) {
		dev_set_error("iscsi: cannot create a libiscsi context (out of memory?)");
		return -ENOMEM;
	}
	if (dbg && *dbg) {
		iscsi_set_log_level(ctx, atoi(dbg));
		iscsi_set_log_fn(ctx, iscsi_log_to_stderr);
	}
	/* The ISID names our initiator port together with the IQN.  Keep it
	 * across logins: the target reinstates the old session, and one that
	 * follows SPC keeps our PR registration (see the top of the file).
	 * libiscsi's default comes from an unseeded rand(): the same ISID in
	 * every process. */
	iscsi_set_isid_random(ctx, s->isid, 0);
	iscsi_set_targetname(ctx, s->target);
	iscsi_set_session_type(ctx, ISCSI_SESSION_NORMAL);
	iscsi_set_header_digest(ctx, ISCSI_HEADER_DIGEST_NONE_CRC32C);
	if (s->user[0])
		iscsi_set_initiator_username_pwd(ctx, s->user, s->passwd);
	if (s->tuser[0])
		iscsi_set_target_username_pwd(ctx, s->tuser, s->tpasswd);
	iscsi_set_noautoreconnect(ctx, 1);
	iscsi_set_timeout(ctx, IO_TIMEOUT_S);

	if (iscsi_full_connect_async(ctx, s->portal, s->lun, wait_cb, &w) != 0) {
		one_line(w.err, sizeof(w.err), iscsi_get_error(ctx));
		dev_set_error("iscsi: cannot connect to %s: %s", s->portal, w.err);
		r = -ECONNREFUSED;
		goto fail;
	}
	r = drive(ctx, &w);
	if (!r && w.status == SCSI_STATUS_GOOD) {
		s->iscsi = ctx;
		s->gen++;
		return 0;
	}
	if (!w.err[0])
		one_line(w.err, sizeof(w.err), iscsi_get_error(ctx));
	if (r == -ETIMEDOUT) {
		dev_set_error("iscsi: login to %s at %s timed out", s->target, s->portal);
		r = -ETIMEDOUT;
	} else if (iscsi_is_logged_in(ctx)) {
		/* Logged in, but libiscsi's TEST UNIT READY of the LUN failed.
		 * Ask again to say why. */
		struct wait w2 = {0};
		struct scsi_task *t = iscsi_testunitready_task(ctx, s->lun, wait_cb, &w2);
		char sb[160] = "no answer";
		if (t && !drive(ctx, &w2) && w2.status == SCSI_STATUS_CHECK_CONDITION)
			sense_text(t, sb, sizeof(sb));
		else if (t && w2.done)
			snprintf(sb, sizeof(sb), "status 0x%x", w2.status);
		iscsi_destroy_context(ctx);
		scsi_free_scsi_task(t);
		dev_set_error("iscsi: %s at %s: LUN %d not usable (no such LUN?): %s", s->target,
			      s->portal, s->lun, sb);
		return -ENXIO;
	} else if (strstr(w.err, "log in")) {
		/* The target answered and said no: unknown target name, ACL,
		 * CHAP. */
		dev_set_error("iscsi: login to %s at %s refused: %s", s->target, s->portal, w.err);
		r = strstr(w.err, "not found") ? -ENOENT : -EPERM;
	} else {
		dev_set_error("iscsi: cannot connect to %s: %s", s->portal, w.err);
		r = -ECONNREFUSED;
	}
fail:
	iscsi_destroy_context(ctx);
	return r;
}

/* Makes sure there is a live session.  gen != 0: only the session of that
 * generation will do. */
static int sess_get(struct iscsi_dev *s, unsigned gen)
{
	if (s->iscsi && !sess_alive(s))
		sess_drop(s);
	if (s->iscsi)
		return gen && gen != s->gen ? -EIO : 0;
	if (gen) {
		dev_set_error("iscsi: session to %s lost while holding RESERVE(6)", s->target);
		return -EIO;
	}
	int r = sess_login(s);
	return r < 0 ? -EIO : 0;
}

/* ---- commands ---------------------------------------------------------- */

static struct scsi_task *issue(struct iscsi_dev *s, struct cmd *c, struct wait *w)
{
	struct iscsi_context *x = s->iscsi;
	int lun = s->lun, lbs = (int)s->dev.lbs;

	switch (c->op) {
	case OP_TUR:
		return iscsi_testunitready_task(x, lun, wait_cb, w);
	case OP_INQUIRY:
		return iscsi_inquiry_task(x, lun, 1, c->sa, c->len, wait_cb, w);
	case OP_RCAP16:
		return iscsi_readcapacity16_task(x, lun, wait_cb, w);
	case OP_RSOC:
		return iscsi_report_supported_opcodes_task(x, lun, 0, SCSI_REPORT_SUPPORTING_OPCODE,
							   c->sa, 0, c->len, wait_cb, w);
	case OP_READ:
		return iscsi_read16_iov_task(x, lun, c->lba, c->len, lbs, 0, 0, 0, 0, 0, wait_cb, w,
					     c->iov, c->niov);
	case OP_WRITE:
		return iscsi_write16_iov_task(x, lun, c->lba, NULL, c->len, lbs, 0, 0, 0, 0, 0,
					      wait_cb, w, c->iov, c->niov);
	case OP_CAW:
		return iscsi_compareandwrite_iov_task(x, lun, c->lba, NULL, c->len, lbs, 0, 0, 0, 0,
						      0, wait_cb, w, c->iov, c->niov);
	case OP_SYNC16:
		return iscsi_synchronizecache16_task(x, lun, 0, 0, 0, 0, wait_cb, w);
	case OP_SYNC10:
		return iscsi_synchronizecache10_task(x, lun, 0, 0, 0, 0, wait_cb, w);
	case OP_WSAME16:
		return iscsi_writesame16_task(x, lun, c->lba, c->buf, s->dev.lbs, c->nblocks, 0, 0,
					      0, 0, wait_cb, w);
	case OP_RESERVE6:
		return iscsi_reserve6_task(x, lun, wait_cb, w);
	case OP_RELEASE6:
		return iscsi_release6_task(x, lun, wait_cb, w);
	case OP_PR_IN:
		return iscsi_persistent_reserve_in_task(x, lun, c->sa, (uint16_t)c->len, wait_cb, w);
	case OP_PR_OUT:
		return iscsi_persistent_reserve_out_task(x, lun, c->sa, 0, c->type, c->pr, wait_cb,
							 w);
	}
	abort();
}

/* Maps a completed command to 0, a negative errno or RETRY_*.  Sets the
 * error text for failures. */
static int status_errno(const struct cmd *c, const struct scsi_task *t, int status)
{
	const char *op = op_names[c->op];
	char sb[160];

	switch (status) {
	case SCSI_STATUS_GOOD:
	case SCSI_STATUS_CONDITION_MET:
		break;
	case SCSI_STATUS_RESERVATION_CONFLICT:
		dev_set_error("iscsi: %s: RESERVATION CONFLICT", op);
		return -EACCES;
	case SCSI_STATUS_BUSY:
	case SCSI_STATUS_TASK_SET_FULL:
		dev_set_error("iscsi: %s: target busy (status 0x%x)", op, status);
		return RETRY_BUSY;
	case SCSI_STATUS_CHECK_CONDITION:
		sense_text(t, sb, sizeof(sb));
		switch (t->sense.key) {
		case SCSI_SENSE_RECOVERED_ERROR:
			goto good;
		case SCSI_SENSE_UNIT_ATTENTION:
			dev_set_error("iscsi: %s: too many UNIT ATTENTIONs: %s", op, sb);
			return RETRY_UA;
		case SCSI_SENSE_MISCOMPARE:
			dev_set_error("iscsi: %s: miscompare", op);
			return -EMISCOMPARE;
		case SCSI_SENSE_ILLEGAL_REQUEST:
			dev_set_error("iscsi: %s rejected: %s", op, sb);
			return t->sense.ascq == SCSI_SENSE_ASCQ_INVALID_OPERATION_CODE ? -EOPNOTSUPP
										      : -EINVAL;
		case SCSI_SENSE_DATA_PROTECTION:
			dev_set_error("iscsi: %s: LUN is write-protected: %s", op, sb);
			return -EROFS;
		default:
			dev_set_error("iscsi: %s failed: %s", op, sb);
			return -EIO;
		}
	default:
		dev_set_error("iscsi: %s failed with SCSI status 0x%x", op, status);
		return -EIO;
	}
good:
	/* A data transfer that moved less than asked is an error; for the
	 * commands with an allocation length a short reply is normal. */
	if ((c->op == OP_READ || c->op == OP_WRITE || c->op == OP_CAW) &&
	    t->residual_status != SCSI_RESIDUAL_NO_RESIDUAL && t->residual) {
		dev_set_error("iscsi: %s: short transfer (residual %zu of %u bytes)", op,
			      t->residual, c->len);
		return -EIO;
	}
	return 0;
}

/* Sleeps us microseconds; lets other threads use the device meanwhile,
 * unless a SCSI-2 reservation sequence is under way (gen != 0). */
static void backoff_sleep(struct iscsi_dev *s, unsigned gen, unsigned us)
{
	if (!gen)
		pthread_mutex_unlock(&s->lock);
	usleep(us);
	if (!gen)
		pthread_mutex_lock(&s->lock);
}

static int exec(struct iscsi_dev *s, struct cmd *c, struct scsi_task **out);

static int read_keys_locked(struct iscsi_dev *s, uint64_t *keys, int max);

/* Does a SCSI-3 persistent reservation keep this I_T nexus from doing op?
 * 1 yes, 0 no, or a negative errno. */
static int pr_blocks_us(struct iscsi_dev *s, enum cmd_op op)
{
	struct cmd c = {.op = OP_PR_IN, .sa = SCSI_PERSISTENT_RESERVE_READ_RESERVATION,
			.len = 24, .idempotent = 1};
	struct scsi_task *t;
	uint64_t holder, key;
	int type, reads = op != OP_WRITE && op != OP_CAW && op != OP_WSAME16 && op != OP_SYNC16 &&
			  op != OP_SYNC10;
	int r = exec(s, &c, &t);

	if (r < 0)
		return r;
	/* Trust our registration only in the session that made it (see the
	 * top of the file); failing closed is right for a fence. */
	key = s->pr_gen == s->gen ? s->pr_key : 0;
	/* PRGENERATION(4) ADDITIONAL LENGTH(4), then, when there is a
	 * reservation, KEY(8) obsolete(4) reserved(1) SCOPE|TYPE(1) ... */
	if (t->datain.size < 22 || get_be(t->datain.data + 4, 4) < 16) {
		scsi_free_scsi_task(t);
		return 0;
	}
	holder = get_be(t->datain.data + 8, 8);
	type = t->datain.data[21] & 0xf;
	scsi_free_scsi_task(t);

	switch (type) {
	case SCSI_PERSISTENT_RESERVE_TYPE_WRITE_EXCLUSIVE:
		return !reads && (!key || holder != key);
	case SCSI_PERSISTENT_RESERVE_TYPE_EXCLUSIVE_ACCESS:
		return !key || holder != key;
	case SCSI_PERSISTENT_RESERVE_TYPE_WRITE_EXCLUSIVE_REGISTRANTS_ONLY:
	case SCSI_PERSISTENT_RESERVE_TYPE_WRITE_EXCLUSIVE_ALL_REGISTRANTS:
		if (reads)
			return 0;
		/* fall through */
	case SCSI_PERSISTENT_RESERVE_TYPE_EXCLUSIVE_ACCESS_REGISTRANTS_ONLY:
	case SCSI_PERSISTENT_RESERVE_TYPE_EXCLUSIVE_ACCESS_ALL_REGISTRANTS: {
		uint64_t keys[64];
		int n = key ? read_keys_locked(s, keys, 64) : 0;
		if (n < 0)
			return n;
		for (int i = 0; i < n && i < 64; i++)
			if (keys[i] == key)
				return 0;
		return 1;
	}
	default:
		return 1;
	}
}

/* We have been shut out by a SCSI-2 reservation since start (ms): past
 * RESERVE_BREAK_MS, break it with a LOGICAL UNIT RESET (see
 * RESERVE_HOLD_MS).  At most once per RESERVE_BREAK_MS from this handle. */
static void break_stale_reserve(struct iscsi_dev *s, uint64_t start)
{
	uint64_t now = now_ms();
	if (now - start < RESERVE_BREAK_MS || now - s->last_break < RESERVE_BREAK_MS || !s->iscsi)
		return;
	s->last_break = now;
	int r = iscsi_task_mgmt_lun_reset_sync(s->iscsi, s->lun);
	lunfs_log(LOG_WARNING,
		  "lunfs: iscsi %s: shut out by a SCSI-2 reservation for %llu ms: its holder "
		  "is frozen or dead; LOGICAL UNIT RESET to break it%s",
		  s->target, (unsigned long long)(now - start), r ? " (failed)" : "");
}

/* A command got RESERVATION CONFLICT.  With the RESERVE(6) emulation of
 * compare-and-write a peer holds the whole LU for a few round trips, and
 * every other I_T nexus gets RESERVATION CONFLICT for nearly any command
 * meanwhile -- the same status a fenced host gets from a persistent
 * reservation.  Tell them apart by reading the persistent reservation: if it
 * shuts us out (we are not, or no longer, registered), the conflict is for
 * good: return 0, the caller reports -EACCES.  Otherwise (no PR, we are a
 * registrant, or PR IN itself is refused because of the SCSI-2 reservation)
 * it is a peer's short critical section: back off and return 1 to retry, for
 * up to CONFLICT_WAIT_MS.  A fenced host thus learns it at once, at the cost
 * of one PR IN.  (The holder of a type 5 PR can see such a conflict too:
 * stock tgt grants RESERVE(6) to a preempted initiator, whose compare-and-
 * write then fails at its WRITE.)
 * Commands whose conflicts mean something else are not retried: the
 * reservation commands themselves, and anything inside our own RESERVE(6). */
static int conflict_wait(struct iscsi_dev *s, const struct cmd *c, uint64_t start, unsigned *us)
{
	if (c->gen || c->op == OP_PR_IN || c->op == OP_PR_OUT || c->op == OP_RESERVE6 ||
	    c->op == OP_RELEASE6)
		return 0;
	if (now_ms() - start > CONFLICT_WAIT_MS)
		return 0;
	int blocked = pr_blocks_us(s, c->op);
	if (blocked == 1 || (blocked < 0 && blocked != -EACCES))
		return 0;
	break_stale_reserve(s, start);
	backoff_sleep(s, c->gen, *us + jitter(s, *us));
	if (*us < 20000)
		*us *= 2;
	return 1;
}

/* Runs c to completion: (re)connects, retries UNIT ATTENTION and BUSY.
 * Returns 0 or a negative errno.  With out != NULL and success, *out gets
 * the task (for its data-in); the caller frees it with scsi_free_scsi_task. */
static int exec(struct iscsi_dev *s, struct cmd *c, struct scsi_task **out)
{
	int ua = 0, busy = 0, relogins = 0;
	unsigned us = 200;
	uint64_t start = now_ms();

	for (;;) {
		struct wait w = {0};
		struct scsi_task *t;
		int r = sess_get(s, c->gen);
		if (r < 0)
			return r;
		/* every WRITE, COMPARE AND WRITE and WRITE SAME, and each retry of
		 * one after a wait, rechecks the lease right before it is sent */
		if ((c->op == OP_WRITE || c->op == OP_CAW || c->op == OP_WSAME16) &&
		    (r = dev_guard(&s->dev)))
			return r;
		t = issue(s, c, &w);
		if (!t) {
			one_line(w.err, sizeof(w.err), iscsi_get_error(s->iscsi));
			dev_set_error("iscsi: cannot queue %s: %s", op_names[c->op], w.err);
			sess_drop(s);
			return -EIO;
		}
		r = drive(s->iscsi, &w);
		if (r < 0 && !w.err[0])
			one_line(w.err, sizeof(w.err), iscsi_get_error(s->iscsi));
		if (r < 0) /* the command may still have completed in that round */
			sess_drop(s);
		if (!w.done || w.status == SCSI_STATUS_CANCELLED || w.status == SCSI_STATUS_ERROR ||
		    w.status == SCSI_STATUS_TIMEOUT) {
			const char *why = w.status == SCSI_STATUS_TIMEOUT || r == -ETIMEDOUT
						  ? "timed out"
						  : "connection lost";
			if (!w.err[0] && s->iscsi)
				one_line(w.err, sizeof(w.err), iscsi_get_error(s->iscsi));
			dev_set_error("iscsi: %s: %s (%s)", op_names[c->op], why, w.err);
			sess_drop(s);
			scsi_free_scsi_task(t);
			if (c->idempotent && !c->gen && relogins++ == 0)
				continue;
			return -EIO;
		}
		r = status_errno(c, t, w.status);
		if (r == 0 && out) {
			*out = t;
			return 0;
		}
		scsi_free_scsi_task(t);
		if (r == RETRY_UA) {
			if (++ua > UA_RETRIES)
				return -EIO;
			continue;
		}
		if (r == RETRY_BUSY) {
			if (++busy > BUSY_RETRIES)
				return -EBUSY;
			backoff_sleep(s, c->gen, us + jitter(s, us));
			if (us < 100000)
				us *= 2;
			continue;
		}
		if (r == -EACCES) {
			if (conflict_wait(s, c, start, &us))
				continue;
			dev_set_error("iscsi: %s: RESERVATION CONFLICT", op_names[c->op]);
		}
		return r;
	}
}

/* ---- dev_ops ----------------------------------------------------------- */

/* Reads or writes [off, off+len) from/to iov, in commands of at most
 * s->max_xfer bytes. */
static int do_rw(struct iscsi_dev *s, int op, uint64_t off, const struct iovec *iov, int iovcnt,
		 unsigned gen)
{
	struct scsi_iovec small[16], *v = small;
	size_t total = dev_iov_len(iov, iovcnt), ioff = 0;
	int i = 0, r = 0;

	if (iovcnt > 16 && !(v = malloc(iovcnt * sizeof(*v))))
		return -ENOMEM;
	while (total && !r) {
		uint32_t n = total < s->max_xfer ? (uint32_t)total : s->max_xfer;
		uint32_t left = n;
		int nv = 0;

		/* libiscsi adjusts the entries while it transfers, so it gets
		 * its own copies; each chunk takes at most one slice of every
		 * caller's iovec. */
		while (left) {
			size_t take;
			while (ioff == iov[i].iov_len) {
				i++;
				ioff = 0;
			}
			take = iov[i].iov_len - ioff < left ? iov[i].iov_len - ioff : left;
			v[nv].iov_base = (char *)iov[i].iov_base + ioff;
			v[nv].iov_len = take;
			nv++;
			ioff += take;
			left -= take;
		}
		struct cmd c = {.op = op == DEV_OP_READ ? OP_READ : OP_WRITE,
				.lba = off / s->dev.lbs,
				.len = n,
				.iov = v,
				.niov = nv,
				.gen = gen,
				.idempotent = op == DEV_OP_READ};
		r = exec(s, &c, NULL);
		off += n;
		total -= n;
	}
	if (v != small)
		free(v);
	return r;
}

static int iscsi_rw(struct dev *d, int op, uint64_t off, const struct iovec *iov, int iovcnt)
{
	struct iscsi_dev *s = S(d);
	pthread_mutex_lock(&s->lock);
	int r = do_rw(s, op, off, iov, iovcnt, 0);
	pthread_mutex_unlock(&s->lock);
	return r;
}

static int iscsi_flush(struct dev *d)
{
	struct iscsi_dev *s = S(d);
	int r;

	pthread_mutex_lock(&s->lock);
	struct cmd c = {.op = s->use_sync10 ? OP_SYNC10 : OP_SYNC16, .idempotent = 1};
	r = exec(s, &c, NULL);
	if (r == -EOPNOTSUPP && c.op == OP_SYNC16) {
		s->use_sync10 = 1;
		c.op = OP_SYNC10;
		r = exec(s, &c, NULL);
	}
	pthread_mutex_unlock(&s->lock);
	return r;
}

static int read_blocks(struct iscsi_dev *s, uint64_t off, void *buf, size_t len, unsigned gen)
{
	struct iovec v = {buf, len};
	return do_rw(s, DEV_OP_READ, off, &v, 1, gen);
}

static int caw_native(struct iscsi_dev *s, uint64_t off, const void *cmp, const void *data,
		      size_t len, void *cur)
{
	struct scsi_iovec v[2] = {{(void *)cmp, len}, {(void *)data, len}};
	struct cmd c = {.op = OP_CAW, .lba = off / s->dev.lbs, .len = 2 * len, .iov = v, .niov = 2};
	int r;

	if (len / s->dev.lbs > s->max_caw) {
		dev_set_error("iscsi: COMPARE AND WRITE of %zu blocks, target allows %u",
			      len / s->dev.lbs, s->max_caw);
		return -EINVAL;
	}
	r = exec(s, &c, NULL);
	if (r == -EMISCOMPARE && cur) {
		/* Not atomic with the compare: best effort, as dev.h says. */
		int r2 = read_blocks(s, off, cur, len, 0);
		if (r2 < 0)
			return r2;
	}
	return r;
}

/* Takes RESERVE(6), waiting with backoff while another initiator holds it.
 * Returns 0 (the reservation belongs to the current session, s->gen) or a
 * negative errno. */
static int reserve_lu(struct iscsi_dev *s)
{
	uint64_t start = now_ms(), next_pr_check = start;
	unsigned us = 100;

	for (;;) {
		struct cmd c = {.op = OP_RESERVE6};
		int r = exec(s, &c, NULL);
		if (r != -EACCES)
			return r;
		/* If a persistent reservation refuses our writes, the WRITE
		 * would fail anyway: say so now instead of waiting.  (Stock
		 * tgt grants RESERVE(6) under a PR; a strict SPC-3 target
		 * may refuse it while any key is registered.) */
		if (now_ms() >= next_pr_check) {
			if (pr_blocks_us(s, OP_WRITE) == 1) {
				dev_set_error("iscsi: RESERVE(6): a persistent reservation "
					      "refuses our writes");
				return -EACCES;
			}
			next_pr_check = now_ms() + 1000;
		}
		if (now_ms() - start > RESERVE_WAIT_MS) {
			/* A peer died holding it on a target that does not
			 * notice, or the target refuses SCSI-2 reservations
			 * while SCSI-3 keys are registered. */
			dev_set_error("iscsi: RESERVE(6) still refused after %d s "
				      "(held by another initiator, or SCSI-3 PR in use)",
				      RESERVE_WAIT_MS / 1000);
			return -EBUSY;
		}
		break_stale_reserve(s, start);
		backoff_sleep(s, 0, us + jitter(s, us));
		if (us < 10000)
			us = us * 3 / 2;
	}
}

static int caw_reserve(struct iscsi_dev *s, uint64_t off, const void *cmp, const void *data,
		       size_t len, void *cur)
{
	unsigned gen, rounds = 0;
	int r, r2;

	if (s->scratch_len < len) {
		void *p = realloc(s->scratch, len);
		if (!p)
			return -ENOMEM;
		s->scratch = p;
		s->scratch_len = len;
	}
again:
	r = reserve_lu(s);
	if (r < 0)
		return r;
	uint64_t t_res = now_ms();
	/* From here on every command must run in this very session: a new
	 * one would not hold the reservation. */
	gen = s->gen;
	r = read_blocks(s, off, s->scratch, len, gen);
	if (r == 0 && memcmp(s->scratch, cmp, len)) {
		if (cur)
			memcpy(cur, s->scratch, len);
		r = -EMISCOMPARE;
	} else if (r == 0 && now_ms() - t_res > RESERVE_HOLD_MS) {
		/* we may have been frozen: a peer may have broken our
		 * reservation; never write on a compare that old */
		r = 1;
	} else if (r == 0) {
		struct iovec v = {(void *)data, len};
		r = do_rw(s, DEV_OP_WRITE, off, &v, 1, gen);
	}
	if (!s->iscsi || s->gen != gen)
		return r < 0 ? r : -EIO; /* the target dropped the reservation with the session */
	struct cmd c = {.op = OP_RELEASE6, .gen = gen};
	r2 = exec(s, &c, NULL);
	if (r2 < 0) {
		/* Never leave the LU reserved: ending the session releases it. */
		sess_drop(s);
	}
	if (r == 1 && ++rounds < 20)
		goto again;
	return r == 1 ? -EBUSY : r;
}

static int choose_caw(struct iscsi_dev *s, int mode, int readonly);

static int iscsi_caw(struct dev *d, uint64_t off, const void *cmp, const void *data, size_t len,
		     void *cur)
{
	struct iscsi_dev *s = S(d);
	int r;

	pthread_mutex_lock(&s->lock);
	if (s->caw_undecided && (r = choose_caw(s, s->caw_mode, 0)) < 0)
		goto out;
	if (d->caps & DEV_CAP_CAW_NATIVE) {
		r = caw_native(s, off, cmp, data, len, cur);
	} else if (d->caps & DEV_CAP_CAW_RESERVE) {
		r = caw_reserve(s, off, cmp, data, len, cur);
	} else {
		dev_set_error("iscsi: %s: cannot tell how to compare-and-write: a persistent "
			      "reservation refuses our writes (register first)", s->target);
		r = -EACCES;
	}
out:
	pthread_mutex_unlock(&s->lock);
	return r;
}

/* Zeroes [*off, *off + *len) with WRITE SAME, s->lock held, advancing *off
 * and *len as it goes.  Returns 0, -EOPNOTSUPP when the target cannot (the
 * rest is left to plain writes), or -errno. */
static int wsame_zero(struct iscsi_dev *s, uint64_t *off, uint64_t *len)
{
	struct dev *d = &s->dev;
	if (!(d->caps & DEV_CAP_ZERO))
		return -EOPNOTSUPP;
	unsigned char *blk = calloc(1, d->lbs);
	if (!blk)
		return -ENOMEM;
	int r = 0;
	while (*len) {
		uint64_t n = *len / d->lbs;
		uint64_t lim = s->max_ws ? s->max_ws : 65536;
		if (n > lim)
			n = lim;
		struct cmd c = {.op = OP_WSAME16, .lba = *off / d->lbs, .nblocks = (uint32_t)n,
				.buf = blk};
		r = exec(s, &c, NULL);
		if (r == -EOPNOTSUPP || r == -EINVAL) {
			/* The target advertised WRITE SAME but will not do it. */
			d->caps &= ~DEV_CAP_ZERO;
			r = -EOPNOTSUPP;
		}
		if (r < 0)
			break;
		*off += n * d->lbs;
		*len -= n * d->lbs;
	}
	free(blk);
	return r;
}

static int iscsi_zero(struct dev *d, uint64_t off, uint64_t len)
{
	struct iscsi_dev *s = S(d);
	pthread_mutex_lock(&s->lock);
	int r = wsame_zero(s, &off, &len);
	pthread_mutex_unlock(&s->lock);
	/* Plain writes through iscsi_rw, which takes the lock itself. */
	return r == -EOPNOTSUPP ? dev_generic_zero(d, off, len) : r;
}

static int pr_out(struct dev *d, int sa, int type, uint64_t key, uint64_t sakey)
{
	struct iscsi_dev *s = S(d);
	struct scsi_persistent_reserve_out_basic p = {.reservation_key = key,
						      .service_action_reservation_key = sakey};
	struct cmd c = {.op = OP_PR_OUT, .sa = sa, .type = type, .pr = &p};
	pthread_mutex_lock(&s->lock);
	int r = exec(s, &c, NULL);
	if (r == 0 && (sa == SCSI_PERSISTENT_RESERVE_REGISTER_AND_IGNORE_EXISTING_KEY ||
		       sa == SCSI_PERSISTENT_RESERVE_REGISTER)) {
		s->pr_key = sakey;
		s->pr_gen = s->gen;
	}
	pthread_mutex_unlock(&s->lock);
	return r;
}

static int iscsi_pr_register(struct dev *d, uint64_t key)
{
	if (!key) {
		dev_set_error("iscsi: PR key 0 means unregistered");
		return -EINVAL;
	}
	return pr_out(d, SCSI_PERSISTENT_RESERVE_REGISTER_AND_IGNORE_EXISTING_KEY, 0, 0, key);
}

static int iscsi_pr_unregister(struct dev *d, uint64_t key)
{
	return pr_out(d, SCSI_PERSISTENT_RESERVE_REGISTER, 0, key, 0);
}

static int iscsi_pr_reserve(struct dev *d, uint64_t key, int type)
{
	return pr_out(d, SCSI_PERSISTENT_RESERVE_RESERVE, type, key, 0);
}

static int iscsi_pr_preempt(struct dev *d, uint64_t key, uint64_t victim, int type)
{
	return pr_out(d, SCSI_PERSISTENT_RESERVE_PREEMPT, type, key, victim);
}

/* PR IN READ KEYS.  Returns the number of registered keys (the target's
 * count, which may exceed what fitted) or a negative errno. */
static int read_keys_locked(struct iscsi_dev *s, uint64_t *keys, int max)
{
	uint32_t alloc = 8 + 8 * (uint32_t)(max > 0 ? max : 0);
	struct scsi_task *t;
	int r;

	if (alloc < 64)
		alloc = 64;
	if (alloc > 65528)
		alloc = 65528;
	struct cmd c = {.op = OP_PR_IN, .sa = SCSI_PERSISTENT_RESERVE_READ_KEYS, .len = alloc,
			.idempotent = 1};
	r = exec(s, &c, &t);
	if (r < 0)
		return r;
	if (t->datain.size < 8) {
		dev_set_error("iscsi: PR IN READ KEYS: short reply (%d bytes)", t->datain.size);
		scsi_free_scsi_task(t);
		return -EIO;
	}
	uint64_t listed = get_be(t->datain.data + 4, 4) / 8;
	uint64_t have = (uint64_t)(t->datain.size - 8) / 8;
	for (uint64_t i = 0; i < have && i < listed && (int)i < max; i++)
		keys[i] = get_be(t->datain.data + 8 + 8 * i, 8);
	scsi_free_scsi_task(t);
	return listed > 0x7fffffff ? 0x7fffffff : (int)listed;
}

static int iscsi_pr_read_keys(struct dev *d, uint64_t *keys, int max)
{
	struct iscsi_dev *s = S(d);
	pthread_mutex_lock(&s->lock);
	int r = read_keys_locked(s, keys, max);
	pthread_mutex_unlock(&s->lock);
	return r;
}

static void iscsi_close(struct dev *d)
{
	struct iscsi_dev *s = S(d);

	if (s->iscsi && sess_alive(s)) {
		struct wait w = {0};
		if (iscsi_logout_async(s->iscsi, wait_cb, &w) == 0)
			drive(s->iscsi, &w);
	}
	sess_drop(s);
	pthread_mutex_destroy(&s->lock);
	free(s->scratch);
	free(s->initiator);
	free(s);
}

static int iscsi_size(struct dev *d, uint64_t *size);

static const struct dev_ops iscsi_ops = {
	.name = "iscsi",
	.close = iscsi_close,
	.rw = iscsi_rw,
	.flush = iscsi_flush,
	.caw = iscsi_caw,
	.zero = iscsi_zero,
	.submit = dev_sync_submit,
	.reap = dev_sync_reap,
	.pr_register = iscsi_pr_register,
	.pr_unregister = iscsi_pr_unregister,
	.pr_reserve = iscsi_pr_reserve,
	.pr_preempt = iscsi_pr_preempt,
	.pr_read_keys = iscsi_pr_read_keys,
	.size = iscsi_size,
};

/* ---- open -------------------------------------------------------------- */

static int parse_url(struct iscsi_dev *s, const char *url)
{
	struct iscsi_context *ctx = iscsi_create_context(s->initiator);
	struct iscsi_url *u;

	if (!ctx) {
		dev_set_error("iscsi: cannot create a libiscsi context (out of memory?)");
		return -ENOMEM;
	}
	u = iscsi_parse_full_url(ctx, url);
	if (!u) {
		char e[200];
		one_line(e, sizeof(e), iscsi_get_error(ctx));
		dev_set_error("iscsi: bad URL %s (want iscsi://HOST[:PORT]/TARGET-IQN/LUN): %s", url, e);
		iscsi_destroy_context(ctx);
		return -EINVAL;
	}
	memcpy(s->portal, u->portal, sizeof(s->portal));
	memcpy(s->target, u->target, sizeof(s->target));
	memcpy(s->user, u->user, sizeof(s->user));
	memcpy(s->passwd, u->passwd, sizeof(s->passwd));
	memcpy(s->tuser, u->target_user, sizeof(s->tuser));
	memcpy(s->tpasswd, u->target_passwd, sizeof(s->tpasswd));
	s->lun = u->lun;
	iscsi_destroy_url(u);
	iscsi_destroy_context(ctx);
	if (!s->portal[0] || !s->target[0]) {
		dev_set_error("iscsi: bad URL %s (want iscsi://HOST[:PORT]/TARGET-IQN/LUN)", url);
		return -EINVAL;
	}
	return 0;
}

/* READ CAPACITY(16) into *size and *lbs.  s->lock held. */
static int capacity(struct iscsi_dev *s, uint64_t *size, uint32_t *lbsp)
{
	struct cmd c = {.op = OP_RCAP16, .idempotent = 1};
	struct scsi_task *t;
	int r = exec(s, &c, &t);

	if (r < 0) {
		char msg[256];
		const char *e = dev_last_error();
		snprintf(msg, sizeof(msg), "%s", strncmp(e, "iscsi: ", 7) ? e : e + 7);
		dev_set_error("iscsi: %s LUN %d (not a disk?): %s", s->target, s->lun, msg);
		return r;
	}
	if (t->datain.size < 12) {
		dev_set_error("iscsi: %s: READ CAPACITY(16) returned %d bytes", s->target,
			      t->datain.size);
		scsi_free_scsi_task(t);
		return -EIO;
	}
	uint64_t last = get_be(t->datain.data, 8);
	uint32_t lbs = (uint32_t)get_be(t->datain.data + 8, 4);
	scsi_free_scsi_task(t);
	if (lbs < 512 || lbs > 65536 || (lbs & (lbs - 1)) || last == UINT64_MAX ||
	    last + 1 > UINT64_MAX / lbs) {
		dev_set_error("iscsi: %s: odd capacity (last LBA %llu, block size %u)", s->target,
			      (unsigned long long)last, lbs);
		return -EIO;
	}
	*lbsp = lbs;
	*size = (last + 1) * lbs;
	return 0;
}

static int read_capacity(struct iscsi_dev *s)
{
	return capacity(s, &s->dev.size, &s->dev.lbs);
}

/* dev_refresh_size: the LUN may have been enlarged on the target. */
static int iscsi_size(struct dev *d, uint64_t *size)
{
	struct iscsi_dev *s = S(d);
	uint32_t lbs;
	pthread_mutex_lock(&s->lock);
	int r = capacity(s, size, &lbs);
	pthread_mutex_unlock(&s->lock);
	return r ? r : lbs == d->lbs ? 0 : -EIO;
}

/* Block Limits VPD page: transfer, CAW and WRITE SAME limits.  Optional. */
static void block_limits(struct iscsi_dev *s)
{
	struct cmd c = {.op = OP_INQUIRY, .sa = SCSI_INQUIRY_PAGECODE_BLOCK_LIMITS, .len = 64,
			.idempotent = 1};
	struct scsi_task *t;
	uint64_t xfer = 0;

	s->max_caw = 255; /* the CDB's NUMBER OF LOGICAL BLOCKS is one byte */
	if (exec(s, &c, &t) == 0) {
		const unsigned char *p = t->datain.data;
		int n = t->datain.size;
		if (n >= 16 && p[1] == 0xb0) {
			if (p[5])
				s->max_caw = p[5];
			xfer = get_be(p + 8, 4);
		}
		if (n >= 44 && p[1] == 0xb0)
			s->max_ws = get_be(p + 36, 8);
		scsi_free_scsi_task(t);
	}
	xfer *= s->dev.lbs;
	s->max_xfer = MAX_XFER_BYTES;
	if (xfer && xfer < s->max_xfer)
		s->max_xfer = (uint32_t)xfer;
	if (s->max_xfer < s->dev.lbs)
		s->max_xfer = s->dev.lbs;
	s->max_xfer -= s->max_xfer % s->dev.lbs;
}

/* REPORT SUPPORTED OPERATION CODES for one opcode: 1 supported, 0 not, -1
 * the target cannot tell. */
static int opcode_supported(struct iscsi_dev *s, int opcode)
{
	struct cmd c = {.op = OP_RSOC, .sa = opcode, .len = 64, .idempotent = 1};
	struct scsi_task *t;
	int r = exec(s, &c, &t);

	if (r < 0)
		return -1;
	if (t->datain.size >= 2) {
		int support = t->datain.data[1] & 7;
		r = support == 3 || support == 5 ? 1 : support == 1 ? 0 : -1;
	} else {
		r = -1;
	}
	scsi_free_scsi_task(t);
	return r;
}

/* Does COMPARE AND WRITE work?  Tries it: compares block 0 with what it
 * just read there and writes the same bytes back.  If a peer changed the
 * block in between, the compare fails and nothing is written.  Returns 1 yes,
 * 0 no, -EAGAIN when writes are refused for now (a persistent reservation
 * shuts us out until we register), or another negative errno. */
static int probe_caw(struct iscsi_dev *s)
{
	uint32_t lbs = s->dev.lbs;
	unsigned char *buf = malloc(lbs);
	struct scsi_iovec v[2] = {{buf, lbs}, {buf, lbs}};
	struct cmd c = {.op = OP_CAW, .len = 2 * lbs, .iov = v, .niov = 2};
	int r;

	if (!buf)
		return -ENOMEM;
	/* exec() already waited out a peer's RESERVE(6); a conflict left is a
	 * persistent reservation. */
	r = read_blocks(s, 0, buf, lbs, 0);
	if (r == 0)
		r = exec(s, &c, NULL);
	free(buf);
	if (r == 0 || r == -EMISCOMPARE)
		return 1;
	if (r == -EOPNOTSUPP || r == -EINVAL)
		return 0;
	return r == -EACCES ? -EAGAIN : r;
}

/* Sets DEV_CAP_CAW_NATIVE or DEV_CAP_CAW_RESERVE for caw_mode mode, or
 * leaves both clear with s->caw_undecided set when that cannot be found out
 * now: on a read-only open (no test write) of a target that does not report
 * its opcodes, or while a persistent reservation refuses our writes (a host
 * joining a fenced cluster opens the LUN before it registers).  Then the
 * first compare-and-write decides.  Returns 0 or a negative errno. */
static int choose_caw(struct iscsi_dev *s, int mode, int readonly)
{
	int native;

	s->caw_mode = mode;
	s->caw_undecided = 0;
	if (mode == DEV_CAW_RESERVE) {
		s->dev.caps |= DEV_CAP_CAW_RESERVE;
		return 0;
	}
	if (mode != DEV_CAW_AUTO && mode != DEV_CAW_NATIVE) {
		dev_set_error("iscsi: unknown caw_mode %d", mode);
		return -EINVAL;
	}
	native = opcode_supported(s, SCSI_OPCODE_COMPARE_AND_WRITE);
	if (native != 0 && !readonly) {
		/* A "supported" from RSOC is not taken on trust: stock tgt
		 * lists COMPARE AND WRITE and then rejects it. */
		native = probe_caw(s);
		if (native == -EAGAIN) {
			s->caw_undecided = 1;
			return 0;
		}
		if (native < 0) {
			char msg[256];
			snprintf(msg, sizeof(msg), "%s", dev_last_error());
			dev_set_error("iscsi: %s: cannot test COMPARE AND WRITE: %s", s->target, msg);
			return native;
		}
	} else if (native < 0) {
		s->caw_undecided = 1;
		return 0;
	}
	if (native == 1) {
		s->dev.caps |= DEV_CAP_CAW_NATIVE;
		return 0;
	}
	if (mode == DEV_CAW_NATIVE) {
		dev_set_error("iscsi: %s has no COMPARE AND WRITE (caw_mode native)", s->target);
		return -EOPNOTSUPP;
	}
	s->dev.caps |= DEV_CAP_CAW_RESERVE;
	return 0;
}

int dev_iscsi_open(const char *url, const struct dev_opts *o, struct dev **out)
{
	struct iscsi_dev *s = calloc(1, sizeof(*s));
	uint64_t seed = 0;
	int r;

	if (!s) {
		dev_set_error("iscsi: out of memory");
		return -ENOMEM;
	}
	pthread_mutex_init(&s->lock, NULL);
	s->dev.ops = &iscsi_ops;
	s->dev.lbs = 512; /* until READ CAPACITY says */
	if (o->initiator && *o->initiator)
		s->initiator = strdup(o->initiator);
	else if (asprintf(&s->initiator, "iqn.2026-11.org.lunfs:init-%ld", (long)getpid()) < 0)
		s->initiator = NULL;
	if (!s->initiator) {
		dev_set_error("iscsi: out of memory");
		r = -ENOMEM;
		goto fail;
	}
	if (getrandom(&seed, sizeof(seed), 0) != sizeof(seed))
		seed = (uint64_t)getpid() << 32 ^ (uint64_t)time(NULL) ^ (uintptr_t)s;
	s->rnd = seed | 1;
	s->isid = (uint32_t)(seed >> 32) & 0xffffff;

	r = parse_url(s, url);
	if (r < 0)
		goto fail;
	pthread_mutex_lock(&s->lock);
	r = sess_login(s);
	if (r == 0)
		r = read_capacity(s);
	if (r == 0) {
		block_limits(s);
		/* PR IN works: the target speaks SCSI-3 persistent reservations. */
		uint64_t k;
		if (!o->no_pr && read_keys_locked(s, &k, 1) >= 0)
			s->dev.caps |= DEV_CAP_PR;
		if (opcode_supported(s, SCSI_OPCODE_WRITE_SAME16) == 1)
			s->dev.caps |= DEV_CAP_ZERO;
		r = choose_caw(s, o->caw_mode, o->readonly);
	}
	pthread_mutex_unlock(&s->lock);
	if (r < 0)
		goto fail;
	dev_set_error("%s", "");
	*out = &s->dev;
	return 0;
fail:
	iscsi_close(&s->dev);
	return r;
}
