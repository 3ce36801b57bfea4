/* tokenkit-pkcs11 in broker mode: every C_* function as a call to
 * tokenkitd, with a deadline (remote.h).
 *
 * What the client keeps, and why (crash-only broker):
 *  - Connections: a small pool; a calling thread takes an idle one or
 *    opens one (connect, SO_PEERCRED check, hello). A call that fails on
 *    its connection (the broker died, a deadline passed, an answer that
 *    does not parse) closes that connection and answers CKR_DEVICE_ERROR;
 *    the next call connects again.
 *  - Epochs: the hello answer names the broker's instance and the serial
 *    of the state it keeps for this client. When either changes, the
 *    broker lost this client's sessions, logins and operations: the epoch
 *    goes up, and everything handed out under the old one is re-checked.
 *  - Slots: the application's slot IDs are ours, tied to the slot's
 *    description; after a restart they are matched again by description,
 *    so a slot ID never silently names another reader.
 *  - Sessions: ours, each tied to its broker session and to the identity
 *    of its token (label, model, serial). In a new epoch a session is
 *    opened again on the same token (not logged in, no operation active:
 *    the call that finds it so gets the code of a missing operation or
 *    login); a different or missing token ends it (CKR_SESSION_HANDLE_INVALID).
 *  - Object handles carry their epoch in the upper 32 bits: a handle from
 *    before a restart is invalid, never another object.
 *  - Pipelined operations: a C_SignInit (Verify, Encrypt, Decrypt, Digest)
 *    just like the last one that worked on the session (same mechanism and
 *    parameters, same key, no operation active as far as we know) answers
 *    CKR_OK at once; its request goes to the broker in one write with the
 *    session's next call (in the same epoch only), and both answers are
 *    read then: one round trip per signature instead of two.
 *    Such an init can fail only because something changed (a logout, the
 *    key or the token gone, the broker's connection): the next call of the
 *    operation then answers that error, in the codes PKCS#11 gives it
 *    (deferred_rv). Any other init waits for its answer. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <tokenkit/log.h>
#include <tokenkit/mem.h>

#include "bclient.h"
#include "bproto.h"
#include "bring.h"
#include "clock.h"
#include "env.h"
#include "p11.h"
#include "remote.h"

#define IDLE_MAX 8
#define WAIT_POLL_MS 100
#define IDENT_LEN 64 /* token label 32, model 16, serial 16 */

/* A connection to the broker, with what was read beyond its last answer. */
struct rconn {
	int fd;
	struct bp_rbuf rb;
};

enum { OP_SIGN, OP_VERIFY, OP_ENCRYPT, OP_DECRYPT, OP_DIGEST, OP_N };
/* each one's flag for C_SessionCancel */
static const CK_FLAGS op_flag[OP_N] = {[OP_SIGN] = CKF_SIGN,
                                       [OP_VERIFY] = CKF_VERIFY,
                                       [OP_ENCRYPT] = CKF_ENCRYPT,
                                       [OP_DECRYPT] = CKF_DECRYPT,
                                       [OP_DIGEST] = CKF_DIGEST};
enum { STEP_INIT, STEP_ONE, STEP_UPDATE, STEP_FINAL };

#define OP_PARAM_MAX 64

/* What we know of one kind of operation on a session. */
struct rop {
	bool active; /* may be active (when unsure: yes) */
	bool repeat; /* the last init worked: the same one may be pipelined */
	uint32_t epoch;
	CK_MECHANISM_TYPE mech;
	CK_ULONG plen;
	uint8_t param[OP_PARAM_MAX];
	CK_OBJECT_HANDLE key;
};

/* A pipelined init, not sent yet: its request, call id, operation and
 * the epoch its handles are of. */
struct rpend {
	uint8_t *buf;
	size_t len;
	uint64_t id;
	int op;
	uint32_t epoch;
};

struct rsess {
	CK_SESSION_HANDLE h, bh;
	CK_SLOT_ID slot; /* ours */
	CK_FLAGS flags;
	uint32_t epoch;
	uint8_t ident[IDENT_LEN];
	struct rop ops[OP_N];
	struct rpend pend; /* (it goes with the session's next call) */
};

struct rslot {
	CK_SLOT_ID cid, bid;
	char desc[64];
	uint32_t epoch; /* bid is valid in this epoch only */
};

static struct {
	pthread_mutex_t lock;
	bool initialized;
	pid_t pid;
	uint8_t client_id[BP_ID_LEN];
	bool have_instance;
	uint8_t instance[BP_ID_LEN];
	uint64_t client_serial;
	uint32_t epoch;
	struct rconn *idle[IDLE_MAX];
	size_t nidle;
	int timeout_ms;
	uint64_t next_call;
	struct rsess *sess;
	size_t nsess, sess_cap;
	CK_SESSION_HANDLE next_h;
	struct rslot *slots;
	size_t nslots, slots_cap;
	uint32_t slots_epoch; /* the epoch of the last full slot sync */
	bool no_shm;          /* a shared-memory area failed: sockets only */
} R = {.lock = PTHREAD_MUTEX_INITIALIZER};

/* --- the mode ----------------------------------------------------------- */

static pthread_once_t mode_once = PTHREAD_ONCE_INIT;
static bool mode_remote;
static bool mode_forced_off;

static int connect_broker(void);
static int choose_broker(void);

static void
mode_decide(void)
{
	int want = tk_p11_broker_wanted(), fd;

	if (mode_forced_off || tk_env_privileged())
		return; /* (a set-uid program keeps to its own process) */
	if (want != 0) {
		mode_remote = want > 0;
		return;
	}
	/* auto: a broker that answers (the user's, else the system's) */
	fd = choose_broker();
	if (fd >= 0) {
		close(fd);
		mode_remote = true;
	}
	tk_log_debug("pkcs11: %s mode", mode_remote ? "broker" : "embedded");
}

bool
tk_p11_remote_on(void)
{
	pthread_once(&mode_once, mode_decide);
	return mode_remote;
}

void
tk_p11_remote_disable(void)
{
	mode_forced_off = true;
	pthread_once(&mode_once, mode_decide);
}

/* --- connections -------------------------------------------------------- */

/* The socket of the broker this process uses: chosen by choose_broker
 * (at C_Initialize, and when the mode is decided), so that one process
 * never goes between two brokers. Under R.lock. */
static char broker_sock[sizeof(((struct sockaddr_un *)0)->sun_path)];

static int
connect_broker(void)
{
	char path[sizeof(broker_sock)];

	pthread_mutex_lock(&R.lock);
	memcpy(path, broker_sock, sizeof(path));
	pthread_mutex_unlock(&R.lock);
	if (path[0] == '\0' && tk_p11_broker_path(path, sizeof(path)) < 0)
		return -1;
	return tk_p11_broker_connect(path);
}

/* Connect to the user's broker, else the system's, and keep to the one
 * that answered (the user's when neither did). A connection, or -1. */
static int
choose_broker(void)
{
	char chosen[sizeof(broker_sock)];
	int fd = tk_p11_broker_choose(chosen, sizeof(chosen));

	pthread_mutex_lock(&R.lock);
	memcpy(broker_sock, chosen, sizeof(broker_sock));
	pthread_mutex_unlock(&R.lock);
	return fd;
}

static int64_t
deadline(void)
{
	return tk_now_ms() + R.timeout_ms;
}

/* The shared memory the broker passed with its hello's answer, as cn's
 * transport. One this process cannot map is not asked for again. */
static bool
attach(struct rconn *cn, uint64_t cap)
{
	if (cap <= UINT32_MAX && cn->rb.passed_fd >= 0)
		cn->rb.ring = bp_ring_attach(cn->rb.passed_fd, (uint32_t)cap);
	if (cn->rb.ring != NULL) {
		bp_ring_block_ms(cn->rb.ring, cn->rb.block_ms);
		return true;
	}
	tk_log_warn("pkcs11: the broker's shared memory for a connection: %s; "
	            "connections use the socket alone from now on",
	            cn->rb.passed_fd < 0 ? "not passed" : strerror(errno));
	pthread_mutex_lock(&R.lock);
	R.no_shm = true;
	pthread_mutex_unlock(&R.lock);
	return false;
}

/* Say hello on a new connection and follow the broker's instance. 0; -1;
 * -2: the broker's shared memory failed (a new connection does without). */
static int
hello(struct rconn *cn)
{
	struct bp_w w;
	struct bp_msg m;
	uint8_t *in = NULL;
	size_t len;
	const uint8_t *inst;
	uint64_t serial;
	int rc = -1;
	bool shm;
	uint64_t cap = 0;

	pthread_mutex_lock(&R.lock);
	shm = !R.no_shm && bp_shm_wanted();
	pthread_mutex_unlock(&R.lock);
	bp_w_init(&w);
	bp_put_b(&w, R.client_id, BP_ID_LEN);
	bp_put_u(&w, BP_FEAT_STILL | (shm ? BP_FEAT_SHM : 0));
	cn->rb.take_fd = shm;
	cn->rb.passed_fd = -1;
	rc = bp_call_sync(cn->fd, &cn->rb, BP_HELLO, 0, &w, deadline(), &m, &in);
	cn->rb.take_fd = false;
	if (rc < 0)
		goto out;
	rc = -1;
	if (m.rv == CKR_OK) {
		inst = bp_get_b(&m.body, &len, false, NULL);
		serial = bp_get_u(&m.body);
		(void)bp_get_u(&m.body); /* the broker's pid */
		if (m.body.i < m.body.n)
			cap = bp_get_u(&m.body);
		/* (the broker writes there now: this connection cannot fall
		 * back on its socket, the next one will not ask) */
		if (m.body.ok && len == BP_ID_LEN && cap > 0 && !attach(cn, cap)) {
			len = 0;
			rc = -2;
		}
		if (m.body.ok && len == BP_ID_LEN) {
			pthread_mutex_lock(&R.lock);
			if (!R.have_instance || memcmp(R.instance, inst, BP_ID_LEN) != 0 ||
			    R.client_serial != serial) {
				if (R.have_instance) {
					R.epoch++;
					tk_log_info("pkcs11: the broker's state for us is new "
					            "(restart): sessions are opened again");
				}
				memcpy(R.instance, inst, BP_ID_LEN);
				R.client_serial = serial;
				R.have_instance = true;
			}
			pthread_mutex_unlock(&R.lock);
			rc = 0;
		}
	}
	bp_msg_free(&m);
	free(in);
out:
	if (cn->rb.passed_fd >= 0)
		close(cn->rb.passed_fd);
	cn->rb.passed_fd = -1;
	return rc;
}

static void
conn_close(struct rconn *cn)
{
	if (cn == NULL)
		return;
	close(cn->fd);
	bp_rbuf_wipe(&cn->rb);
	free(cn);
}

/* A connection blocks in recv for at most 3/4 of a call's timeout
 * (bp_rbuf.block_ms): one system call per answer instead of poll and recv.
 * A socket that cannot be set so stays as it was (poll first). */
static int
blocking_reads(int fd)
{
	int ms, fl;
	struct timeval tv;

	pthread_mutex_lock(&R.lock);
	ms = R.timeout_ms * 3 / 4;
	pthread_mutex_unlock(&R.lock);
	tv.tv_sec = ms / 1000;
	tv.tv_usec = (ms % 1000) * 1000;
	fl = fcntl(fd, F_GETFL);
	if (ms <= 0 || fl < 0 || setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)) != 0 ||
	    fcntl(fd, F_SETFL, fl & ~O_NONBLOCK) != 0)
		return 0;
	return ms;
}

static struct rconn *
conn_get(void)
{
	struct rconn *cn = NULL;

	pthread_mutex_lock(&R.lock);
	if (R.nidle > 0)
		cn = R.idle[--R.nidle];
	pthread_mutex_unlock(&R.lock);
	if (cn != NULL)
		return cn;
	for (int tries = 0; tries < 2; tries++) {
		int rc;
		if ((cn = calloc(1, sizeof(*cn))) == NULL)
			return NULL;
		cn->fd = connect_broker();
		if (cn->fd < 0) {
			free(cn);
			return NULL;
		}
		cn->rb.block_ms = blocking_reads(cn->fd);
		cn->rb.spin_us = bp_spin_us();
		rc = hello(cn);
		if (rc == 0)
			return cn;
		conn_close(cn);
		if (rc != -2)
			break;
	}
	return NULL;
}

static void
conn_put(struct rconn *cn)
{
	pthread_mutex_lock(&R.lock);
	if (R.initialized && R.nidle < IDLE_MAX) {
		R.idle[R.nidle++] = cn;
		cn = NULL;
	}
	pthread_mutex_unlock(&R.lock);
	conn_close(cn);
}

static struct rsess *sess_find_locked(CK_SESSION_HANDLE h);
static uint32_t cur_epoch(void);

/* One call's connection and answer. */
struct rc {
	struct rconn *cn;
	CK_SESSION_HANDLE h; /* the session the call is about, or 0 */
	bool out_query;      /* the caller asked for a length only */
	struct rpend pend;   /* a pipelined init, to send first */
	struct bp_msg m;
	struct bp_r *r; /* the answer's results */
};

/* A connection for a call about session h (0: none), and the session's
 * pipelined init to send with it. */
static CK_RV
rc_begin(struct rc *c, CK_SESSION_HANDLE h)
{
	struct rsess *s;

	memset(c, 0, sizeof(*c));
	c->h = h;
	if (h != 0) {
		pthread_mutex_lock(&R.lock);
		s = sess_find_locked(h);
		if (s != NULL && s->pend.buf != NULL) {
			c->pend = s->pend;
			s->pend.buf = NULL;
		}
		pthread_mutex_unlock(&R.lock);
	}
	c->cn = conn_get();
	return c->cn == NULL ? CKR_DEVICE_ERROR : CKR_OK;
}

static void
pend_free(struct rpend *p)
{
	tk_freezero(p->buf, p->len);
	p->buf = NULL;
}

static void
rc_end(struct rc *c)
{
	struct rsess *s;

	bp_msg_free(&c->m);
	if (c->pend.buf != NULL) {
		/* the call never went: the init waits for the next one */
		pthread_mutex_lock(&R.lock);
		s = sess_find_locked(c->h);
		if (s != NULL && s->pend.buf == NULL) {
			s->pend = c->pend;
			c->pend.buf = NULL;
		}
		pthread_mutex_unlock(&R.lock);
		pend_free(&c->pend);
	}
	if (c->cn != NULL)
		conn_put(c->cn);
	c->cn = NULL;
}

static void
rc_broken(struct rc *c)
{
	conn_close(c->cn);
	c->cn = NULL;
}

/* The operation and step of a function (false: it has none). */
static bool
op_of(uint32_t fn, int *op, int *step)
{
	static const struct {
		uint32_t fn;
		int op, step;
	} t[] = {
	        {BP_C_SignInit, OP_SIGN, STEP_INIT},
	        {BP_C_Sign, OP_SIGN, STEP_ONE},
	        {BP_C_SignUpdate, OP_SIGN, STEP_UPDATE},
	        {BP_C_SignFinal, OP_SIGN, STEP_FINAL},
	        {BP_C_VerifyInit, OP_VERIFY, STEP_INIT},
	        {BP_C_Verify, OP_VERIFY, STEP_ONE},
	        {BP_C_VerifyUpdate, OP_VERIFY, STEP_UPDATE},
	        {BP_C_VerifyFinal, OP_VERIFY, STEP_FINAL},
	        {BP_C_EncryptInit, OP_ENCRYPT, STEP_INIT},
	        {BP_C_Encrypt, OP_ENCRYPT, STEP_ONE},
	        {BP_C_EncryptUpdate, OP_ENCRYPT, STEP_UPDATE},
	        {BP_C_EncryptFinal, OP_ENCRYPT, STEP_FINAL},
	        {BP_C_DecryptInit, OP_DECRYPT, STEP_INIT},
	        {BP_C_Decrypt, OP_DECRYPT, STEP_ONE},
	        {BP_C_DecryptUpdate, OP_DECRYPT, STEP_UPDATE},
	        {BP_C_DecryptFinal, OP_DECRYPT, STEP_FINAL},
	        {BP_C_DigestInit, OP_DIGEST, STEP_INIT},
	        {BP_C_Digest, OP_DIGEST, STEP_ONE},
	        {BP_C_DigestUpdate, OP_DIGEST, STEP_UPDATE},
	        {BP_C_DigestKey, OP_DIGEST, STEP_UPDATE},
	        {BP_C_DigestFinal, OP_DIGEST, STEP_FINAL},
	};

	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++)
		if (t[i].fn == fn) {
			*op = t[i].op;
			*step = t[i].step;
			return true;
		}
	return false;
}

/* A pipelined init's error, as the next call of its operation answers it:
 * in that function's codes (PKCS#11 3.0 section 5.2), else
 * CKR_FUNCTION_FAILED. */
static CK_RV
deferred_rv(int op, CK_RV rv)
{
	switch (rv) {
	case CKR_DEVICE_ERROR:
	case CKR_DEVICE_MEMORY:
	case CKR_DEVICE_REMOVED:
	case CKR_FUNCTION_CANCELED:
	case CKR_GENERAL_ERROR:
	case CKR_HOST_MEMORY:
	case CKR_SESSION_CLOSED:
	case CKR_SESSION_HANDLE_INVALID:
		return rv;
	case CKR_TOKEN_NOT_PRESENT:
		return CKR_DEVICE_REMOVED;
	case CKR_USER_NOT_LOGGED_IN:
		return op == OP_SIGN || op == OP_DECRYPT ? rv : CKR_FUNCTION_FAILED;
	default:
		return CKR_FUNCTION_FAILED;
	}
}

/* After a call of an operation's step: what we know of it. */
static void
op_step(struct rc *c, uint32_t fn, CK_RV rv)
{
	struct rsess *s;
	int op, step;
	bool ends;

	if (c->h == 0 || !op_of(fn, &op, &step) || step == STEP_INIT)
		return;
	if (step == STEP_UPDATE)
		ends = rv != CKR_OK && rv != CKR_BUFFER_TOO_SMALL;
	else
		ends = rv != CKR_BUFFER_TOO_SMALL && !(rv == CKR_OK && c->out_query);
	pthread_mutex_lock(&R.lock);
	s = sess_find_locked(c->h);
	if (s != NULL && ends)
		s->ops[op].active = false;
	if (s != NULL && rv == CKR_DEVICE_ERROR)
		s->ops[op].repeat = false; /* (the broker may keep it: ask next time) */
	pthread_mutex_unlock(&R.lock);
}

/* The answer to call id of fn into *m, past its "still working" answers
 * (each gives the call its timeout again, up to BP_STILL_MAX_MS after
 * t0). -1: none before *dl, or the connection failed or is not trusted. */
static int
rc_read(struct rc *c, uint32_t fn, uint64_t id, int64_t t0, int64_t *dl, struct bp_msg *m)
{
	uint8_t *in = NULL;
	size_t ilen = 0;
	const char *why;

	for (;;) {
		if (bp_read_msg(c->cn->fd, &c->cn->rb, &in, &ilen, *dl) < 0) {
			tk_log_warn("pkcs11: broker call %u: %s", fn,
			            errno == ETIMEDOUT ? "no answer before the deadline"
			                               : strerror(errno));
			return -1;
		}
		why = bp_decode(in, ilen, false, m);
		/* (its results point into the bytes: the message keeps them) */
		m->own = in;
		m->own_len = ilen;
		if (why != NULL || m->id != id) {
			tk_log_warn("pkcs11: broker answer to call %u: %s", fn,
			            why != NULL ? why : "wrong call id");
			bp_msg_free(m);
			return -1;
		}
		if (m->rv != BP_RV_STILL)
			return 0;
		bp_msg_free(m);
		*dl = tk_now_ms() + R.timeout_ms;
		if (*dl > t0 + BP_STILL_MAX_MS)
			*dl = t0 + BP_STILL_MAX_MS;
	}
}

/* Read the answer to the pipelined init before the call's own. Its error
 * ends that operation; *init_rv gets it. -1: the connection failed. */
static int
rc_settle(struct rc *c, uint32_t fn, int64_t t0, int64_t *dl, CK_RV *init_rv)
{
	struct bp_msg m;
	struct rsess *s;

	if (rc_read(c, fn, c->pend.id, t0, dl, &m) < 0)
		return -1;
	*init_rv = (CK_RV)m.rv;
	bp_msg_free(&m);
	if (*init_rv != CKR_OK) {
		tk_log_info("pkcs11: a pipelined operation start on session %lu failed "
		            "(0x%lx): its next call answers it",
		            (unsigned long)c->h, (unsigned long)*init_rv);
		pthread_mutex_lock(&R.lock);
		s = sess_find_locked(c->h);
		if (s != NULL) {
			s->ops[c->pend.op].active = false;
			s->ops[c->pend.op].repeat = false;
		}
		pthread_mutex_unlock(&R.lock);
	}
	return 0;
}

static uint64_t
next_id(void)
{
	uint64_t id;

	pthread_mutex_lock(&R.lock);
	id = ++R.next_call;
	pthread_mutex_unlock(&R.lock);
	return id;
}

/* Send fn with args (consumed), after the session's pipelined init (in
 * one write) when there is one of this epoch; c->pend.id says whether it
 * went. */
static CK_RV
rc_send(struct rc *c, uint32_t fn, struct bp_w *args, uint64_t *id, int64_t dl)
{
	uint8_t *buf = NULL, *both = NULL;
	size_t len = 0, off = 0;
	int r;

	if (c->cn == NULL) {
		bp_w_free(args);
		return CKR_DEVICE_ERROR;
	}
	*id = next_id();
	if (!bp_encode_request(fn, *id, args, &buf, &len))
		return CKR_HOST_MEMORY;
	if (c->pend.buf != NULL && c->pend.epoch == cur_epoch()) {
		off = c->pend.len;
		both = malloc(off + len);
		if (both == NULL) {
			tk_freezero(buf, len);
			return CKR_HOST_MEMORY;
		}
		memcpy(both, c->pend.buf, off);
		memcpy(both + off, buf, len);
		tk_freezero(buf, len);
		buf = both;
		len += off;
	} else if (c->pend.buf != NULL) {
		/* from before a broker restart: its session and key are not
		 * the ones the broker has now; the operation never started */
		c->pend.id = 0;
	}
	pend_free(&c->pend);
	/* (buf may hold a PIN or plaintext: wiped when freed) */
	r = bp_send(c->cn->fd, &c->cn->rb, buf, len, dl);
	tk_freezero(buf, len);
	if (r < 0) {
		tk_log_warn("pkcs11: broker call %u: %s", fn, strerror(errno));
		rc_broken(c);
		return CKR_DEVICE_ERROR;
	}
	return CKR_OK;
}

/* Send fn with args (consumed) and wait for the answer: its CK_RV, with
 * c->r at its results. A connection that fails is closed:
 * CKR_DEVICE_ERROR. */
static CK_RV
rc_call(struct rc *c, uint32_t fn, struct bp_w *args)
{
	uint64_t id;
	int64_t t0 = tk_now_ms(), dl = t0 + R.timeout_ms;
	CK_RV rv, init_rv = CKR_OK;
	int op = c->pend.op;
	bool settled = false;

	bp_msg_free(&c->m);
	c->r = NULL;
	rv = rc_send(c, fn, args, &id, dl);
	if (rv != CKR_OK)
		goto out;
	if (c->pend.id != 0) {
		if (rc_settle(c, fn, t0, &dl, &init_rv) < 0)
			goto broken;
		c->pend.id = 0;
		settled = true;
	}
	if (rc_read(c, fn, id, t0, &dl, &c->m) < 0)
		goto broken;
	c->r = &c->m.body;
	rv = (CK_RV)c->m.rv;
	/* the operation the pipelined init should have started did not
	 * start: its next call answers why (never what the broker said of
	 * an operation it does not have) */
	if (settled && init_rv != CKR_OK) {
		int fop, step;
		if (op_of(fn, &fop, &step) && fop == op && step != STEP_INIT) {
			rv = deferred_rv(op, init_rv);
			c->r = NULL;
		}
	}
	goto out;
broken:
	rc_broken(c);
	rv = CKR_DEVICE_ERROR;
out:
	op_step(c, fn, rv);
	return rv;
}

/* A call's answer did not have the results promised: the connection is
 * not trusted any more. */
static CK_RV
rc_bad(struct rc *c)
{
	tk_log_warn("pkcs11: a broker answer without its results");
	rc_broken(c);
	return CKR_DEVICE_ERROR;
}

/* --- slots -------------------------------------------------------------- */

static struct rslot *
slot_by_cid_locked(CK_SLOT_ID cid)
{
	for (size_t i = 0; i < R.nslots; i++)
		if (R.slots[i].cid == cid)
			return &R.slots[i];
	return NULL;
}

static CK_SLOT_ID
free_cid_locked(CK_SLOT_ID want)
{
	CK_SLOT_ID id = want;

	while (slot_by_cid_locked(id) != NULL)
		id = id < 0x7fffffffUL ? id + 1 : 1;
	return id;
}

/* Learn every slot of the broker (ids and descriptions) in this epoch. */
static CK_RV
slots_sync(struct rc *c)
{
	struct bp_w w;
	struct bp_r list;
	CK_SLOT_ID bids[BP_MAX_ITEMS];
	size_t n = 0;
	uint32_t epoch;
	CK_RV rv;

	pthread_mutex_lock(&R.lock);
	epoch = R.epoch;
	pthread_mutex_unlock(&R.lock);
	bp_w_init(&w);
	bp_put_u(&w, CK_FALSE);
	rv = rc_call(c, BP_C_GetSlotList, &w);
	if (rv != CKR_OK)
		return rv;
	list = bp_get_sub(c->r);
	while (list.ok && list.i < list.n && n < BP_MAX_ITEMS)
		bids[n++] = (CK_SLOT_ID)bp_get_u(&list);
	if (!list.ok)
		return rc_bad(c);
	for (size_t i = 0; i < n; i++) {
		char desc[64];
		const uint8_t *d;
		size_t dl;
		bool known = false;

		pthread_mutex_lock(&R.lock);
		for (size_t k = 0; k < R.nslots; k++)
			if (R.slots[k].bid == bids[i] && R.slots[k].epoch == epoch)
				known = true;
		pthread_mutex_unlock(&R.lock);
		if (known)
			continue;
		bp_w_init(&w);
		bp_put_u(&w, bids[i]);
		rv = rc_call(c, BP_C_GetSlotInfo, &w);
		if (rv == CKR_SLOT_ID_INVALID)
			continue; /* gone meanwhile */
		if (rv != CKR_OK)
			return rv;
		d = bp_get_b(c->r, &dl, false, NULL);
		if (!c->r->ok || dl < 64)
			return rc_bad(c);
		memcpy(desc, d, 64);
		pthread_mutex_lock(&R.lock);
		struct rslot *s = NULL;
		for (size_t k = 0; k < R.nslots && s == NULL; k++)
			if (memcmp(R.slots[k].desc, desc, 64) == 0)
				s = &R.slots[k];
		if (s == NULL) {
			if (R.nslots == R.slots_cap) {
				size_t cap = R.slots_cap ? R.slots_cap * 2 : 8;
				struct rslot *ns = realloc(R.slots, cap * sizeof(*ns));
				if (ns == NULL) {
					pthread_mutex_unlock(&R.lock);
					return CKR_HOST_MEMORY;
				}
				R.slots = ns;
				R.slots_cap = cap;
			}
			s = &R.slots[R.nslots++];
			memcpy(s->desc, desc, 64);
			s->cid = free_cid_locked(bids[i]);
		}
		s->bid = bids[i];
		s->epoch = epoch;
		pthread_mutex_unlock(&R.lock);
	}
	pthread_mutex_lock(&R.lock);
	if (R.epoch == epoch)
		R.slots_epoch = epoch;
	pthread_mutex_unlock(&R.lock);
	return CKR_OK;
}

static CK_RV
slot_bid(struct rc *c, CK_SLOT_ID cid, CK_SLOT_ID *bid)
{
	for (int pass = 0; pass < 2; pass++) {
		struct rslot *s;
		bool ok;

		pthread_mutex_lock(&R.lock);
		s = slot_by_cid_locked(cid);
		ok = s != NULL && s->epoch == R.epoch;
		if (ok)
			*bid = s->bid;
		pthread_mutex_unlock(&R.lock);
		if (ok)
			return CKR_OK;
		if (pass == 0) {
			CK_RV rv = slots_sync(c);
			if (rv != CKR_OK)
				return rv;
		}
	}
	return CKR_SLOT_ID_INVALID;
}

static CK_RV
slot_cid(struct rc *c, CK_SLOT_ID bid, CK_SLOT_ID *cid)
{
	for (int pass = 0; pass < 2; pass++) {
		bool ok = false;

		pthread_mutex_lock(&R.lock);
		for (size_t i = 0; i < R.nslots && !ok; i++)
			if (R.slots[i].bid == bid && R.slots[i].epoch == R.epoch) {
				*cid = R.slots[i].cid;
				ok = true;
			}
		pthread_mutex_unlock(&R.lock);
		if (ok)
			return CKR_OK;
		if (pass == 0) {
			CK_RV rv = slots_sync(c);
			if (rv != CKR_OK)
				return rv;
		}
	}
	return CKR_SLOT_ID_INVALID;
}

/* --- sessions and objects ----------------------------------------------- */

static struct rsess *
sess_find_locked(CK_SESSION_HANDLE h)
{
	for (size_t i = 0; i < R.nsess; i++)
		if (R.sess[i].h == h)
			return &R.sess[i];
	return NULL;
}

static void
sess_remove_locked(CK_SESSION_HANDLE h)
{
	for (size_t i = 0; i < R.nsess; i++)
		if (R.sess[i].h == h) {
			/* (an answer nobody will read: the connection goes) */
			pend_free(&R.sess[i].pend);
			R.sess[i] = R.sess[--R.nsess];
			return;
		}
}

static CK_RV
open_on(struct rc *c, CK_SLOT_ID bid, CK_FLAGS flags, CK_SESSION_HANDLE *bh,
        uint8_t ident[IDENT_LEN])
{
	struct bp_w w;
	const uint8_t *id;
	size_t len;
	CK_RV rv;

	bp_w_init(&w);
	bp_put_u(&w, bid);
	bp_put_u(&w, flags);
	rv = rc_call(c, BP_C_OpenSession, &w);
	if (rv != CKR_OK)
		return rv;
	*bh = (CK_SESSION_HANDLE)bp_get_u(c->r);
	id = bp_get_b(c->r, &len, false, NULL);
	if (!c->r->ok || len != IDENT_LEN)
		return rc_bad(c);
	memcpy(ident, id, IDENT_LEN);
	return CKR_OK;
}

/* The broker's handle of session h, opened again on its token in a new
 * epoch. */
static CK_RV
sess_bh(struct rc *c, CK_SESSION_HANDLE h, CK_SESSION_HANDLE *bh)
{
	struct rsess copy, *s;
	uint8_t ident[IDENT_LEN];
	CK_SLOT_ID bid;
	uint32_t epoch;
	CK_RV rv;

	pthread_mutex_lock(&R.lock);
	s = sess_find_locked(h);
	if (s == NULL) {
		pthread_mutex_unlock(&R.lock);
		return CKR_SESSION_HANDLE_INVALID;
	}
	copy = *s;
	epoch = R.epoch;
	pthread_mutex_unlock(&R.lock);
	if (copy.epoch == epoch) {
		*bh = copy.bh;
		return CKR_OK;
	}
	/* the broker lost it: the same token again, or the session ends */
	rv = slot_bid(c, copy.slot, &bid);
	if (rv == CKR_OK)
		rv = open_on(c, bid, copy.flags, bh, ident);
	if (rv == CKR_OK && memcmp(ident, copy.ident, IDENT_LEN) != 0) {
		struct bp_w w;
		bp_w_init(&w);
		bp_put_u(&w, *bh);
		(void)rc_call(c, BP_C_CloseSession, &w);
		rv = CKR_TOKEN_NOT_PRESENT;
	}
	pthread_mutex_lock(&R.lock);
	s = sess_find_locked(h);
	if (s != NULL && rv == CKR_OK) {
		s->bh = *bh;
		s->epoch = epoch;
	} else if (s != NULL && rv != CKR_DEVICE_ERROR && rv != CKR_HOST_MEMORY) {
		sess_remove_locked(h);
	}
	pthread_mutex_unlock(&R.lock);
	if (rv == CKR_OK)
		tk_log_info("pkcs11: session %lu is back on its token (not logged in)",
		            (unsigned long)h);
	if (rv == CKR_DEVICE_ERROR || rv == CKR_HOST_MEMORY)
		return rv;
	return rv == CKR_OK ? CKR_OK : CKR_SESSION_HANDLE_INVALID;
}

static uint32_t
cur_epoch(void)
{
	uint32_t e;

	pthread_mutex_lock(&R.lock);
	e = R.epoch;
	pthread_mutex_unlock(&R.lock);
	return e;
}

static bool
obj_bid(CK_OBJECT_HANDLE h, CK_OBJECT_HANDLE *bid)
{
	if ((uint32_t)(h >> 32) != cur_epoch())
		return false;
	*bid = h & 0xffffffffUL;
	return true;
}

static CK_OBJECT_HANDLE
obj_cid(CK_OBJECT_HANDLE bid, uint32_t epoch)
{
	return (CK_OBJECT_HANDLE)epoch << 32 | (bid & 0xffffffffUL);
}

/* --- encoding helpers --------------------------------------------------- */

/* Mechanism parameters go as values, never as the application's pointers. */

static bool
put_mech(struct bp_w *w, CK_MECHANISM_PTR m)
{
	struct bp_w p;

	if (m == NULL)
		return false;
	bp_w_init(&p);
	bp_put_u(&p, m->mechanism);
	if (m->pParameter == NULL || m->ulParameterLen == 0) {
		bp_put_u(&p, BP_MP_NONE);
		bp_put_u(&p, m->ulParameterLen);
	} else if (m->mechanism == CKM_RSA_PKCS_OAEP) {
		const CK_RSA_PKCS_OAEP_PARAMS *o = m->pParameter;
		if (m->ulParameterLen != sizeof(*o) ||
		    (o->pSourceData == NULL && o->ulSourceDataLen > 0) ||
		    o->ulSourceDataLen > BP_MAX_BYTES)
			goto bad;
		bp_put_u(&p, BP_MP_OAEP);
		bp_put_u(&p, o->hashAlg);
		bp_put_u(&p, o->mgf);
		bp_put_u(&p, o->source);
		bp_put_b(&p, o->pSourceData, o->ulSourceDataLen);
	} else if (m->mechanism == CKM_ECDH1_DERIVE || m->mechanism == CKM_ECDH1_COFACTOR_DERIVE) {
		const CK_ECDH1_DERIVE_PARAMS *e = m->pParameter;
		if (m->ulParameterLen != sizeof(*e) ||
		    (e->pSharedData == NULL && e->ulSharedDataLen > 0) ||
		    (e->pPublicData == NULL && e->ulPublicDataLen > 0) ||
		    e->ulSharedDataLen > BP_MAX_BYTES || e->ulPublicDataLen > BP_MAX_BYTES)
			goto bad;
		bp_put_u(&p, BP_MP_ECDH);
		bp_put_u(&p, e->kdf);
		bp_put_b(&p, e->pSharedData, e->ulSharedDataLen);
		bp_put_b(&p, e->pPublicData, e->ulPublicDataLen);
	} else if (m->mechanism == CKM_EDDSA) {
		const CK_EDDSA_PARAMS *e = m->pParameter;
		if (m->ulParameterLen != sizeof(*e) ||
		    (e->pContextData == NULL && e->ulContextDataLen > 0) ||
		    e->ulContextDataLen > 255)
			goto bad;
		bp_put_u(&p, BP_MP_EDDSA);
		bp_put_u(&p, e->phFlag);
		bp_put_b(&p, e->pContextData, e->ulContextDataLen);
	} else if (m->ulParameterLen == sizeof(CK_RSA_PKCS_PSS_PARAMS) &&
	           (m->mechanism == CKM_RSA_PKCS_PSS || m->mechanism == CKM_SHA1_RSA_PKCS_PSS ||
	            m->mechanism == CKM_SHA224_RSA_PKCS_PSS ||
	            m->mechanism == CKM_SHA256_RSA_PKCS_PSS ||
	            m->mechanism == CKM_SHA384_RSA_PKCS_PSS ||
	            m->mechanism == CKM_SHA512_RSA_PKCS_PSS)) {
		const CK_RSA_PKCS_PSS_PARAMS *s = m->pParameter;
		bp_put_u(&p, BP_MP_PSS);
		bp_put_u(&p, s->hashAlg);
		bp_put_u(&p, s->mgf);
		bp_put_u(&p, s->sLen);
	} else if (m->ulParameterLen <= 256) {
		/* parameters without pointers in them (or refused by the
		 * module as it would refuse them in the process) */
		bp_put_u(&p, BP_MP_RAW);
		bp_put_b(&p, m->pParameter, m->ulParameterLen);
	} else {
		goto bad;
	}
	bp_put_sub(w, &p);
	return true;
bad:
	bp_w_free(&p);
	return false;
}

/* An attribute whose value is a template (CKA_WRAP_TEMPLATE, ...): the
 * array attributes but CKA_ALLOWED_MECHANISMS (a vendor's type is just a
 * number: its bits mean nothing). The broker refuses their values. */
static bool
attr_has_pointers(CK_ATTRIBUTE_TYPE t)
{
	return t < CKA_VENDOR_DEFINED && (t & CKF_ARRAY_ATTRIBUTE) && t != CKA_ALLOWED_MECHANISMS;
}

/* A template of values (C_FindObjectsInit, C_CreateObject, ...). */
static CK_RV
put_template(struct bp_w *w, CK_ATTRIBUTE_PTR t, CK_ULONG n)
{
	struct bp_w a;

	if (n > BP_MAX_ITEMS)
		return CKR_ARGUMENTS_BAD;
	if (n > 0 && t == NULL)
		return CKR_ARGUMENTS_BAD;
	bp_w_init(&a);
	for (CK_ULONG i = 0; i < n; i++) {
		if (attr_has_pointers(t[i].type)) {
			bp_w_free(&a);
			return CKR_ATTRIBUTE_TYPE_INVALID;
		}
		if (t[i].ulValueLen > BP_MAX_BYTES ||
		    (t[i].pValue == NULL && t[i].ulValueLen > 0)) {
			bp_w_free(&a);
			return t[i].ulValueLen > BP_MAX_BYTES ? CKR_ATTRIBUTE_VALUE_INVALID
			                                      : CKR_ARGUMENTS_BAD;
		}
		bp_put_u(&a, t[i].type);
		bp_put_b(&a, t[i].pValue, t[i].ulValueLen);
	}
	bp_put_sub(w, &a);
	return CKR_OK;
}

/* An output buffer: [present, capacity]. */
static void
put_out(struct bp_w *w, const void *out, const CK_ULONG *len)
{
	bp_put_u(w, out != NULL);
	bp_put_u(w, out != NULL && len != NULL ? *len : 0);
}

/* Its answer: [length, bytes or null]. */
static CK_RV
get_out(struct rc *c, CK_RV rv, CK_BYTE_PTR out, CK_ULONG_PTR len)
{
	const uint8_t *p;
	size_t n;
	uint64_t l;
	bool null;

	if (rv != CKR_OK && rv != CKR_BUFFER_TOO_SMALL)
		return rv;
	l = bp_get_u(c->r);
	p = bp_get_b(c->r, &n, true, &null);
	if (!c->r->ok)
		return rc_bad(c);
	*len = (CK_ULONG)l;
	if (rv == CKR_OK && out != NULL) {
		if (null || n != l)
			return rc_bad(c);
		memcpy(out, p, n);
	}
	return rv;
}

/* --- generic calls by shape --------------------------------------------- */

#define CHECK_INIT()                                                                               \
	do {                                                                                       \
		if (!initialized())                                                                \
			return CKR_CRYPTOKI_NOT_INITIALIZED;                                       \
	} while (0)

static bool
initialized(void)
{
	bool ok;

	/* (no getpid(): atfork_child leaves a forked child uninitialised;
	 * see tk_p11_check_init_locked) */
	pthread_mutex_lock(&R.lock);
	ok = R.initialized;
	pthread_mutex_unlock(&R.lock);
	return ok;
}

/* Start a call about an ID of ours (a session, a slot): the connection,
 * and the body with the broker's ID (xlate) first. */
static CK_RV
begin_with(struct rc *c, struct bp_w *w, CK_ULONG id,
           CK_RV (*xlate)(struct rc *, CK_ULONG, CK_ULONG *))
{
	CK_ULONG bid;
	CK_RV rv;

	if (!initialized())
		return CKR_CRYPTOKI_NOT_INITIALIZED;
	rv = rc_begin(c, xlate == sess_bh ? id : 0);
	if (rv != CKR_OK)
		return rv;
	rv = xlate(c, id, &bid);
	if (rv != CKR_OK) {
		rc_end(c);
		return rv;
	}
	bp_w_init(w);
	bp_put_u(w, bid);
	return CKR_OK;
}

static CK_RV
sess_begin(struct rc *c, struct bp_w *w, CK_SESSION_HANDLE h)
{
	return begin_with(c, w, h, sess_bh);
}

static CK_RV
call_s(uint32_t fn, CK_SESSION_HANDLE h)
{
	struct rc c;
	struct bp_w w;
	CK_RV rv = sess_begin(&c, &w, h);

	if (rv != CKR_OK)
		return rv;
	rv = rc_call(&c, fn, &w);
	rc_end(&c);
	return rv;
}

/* The init is the one that last worked on the session, and no operation
 * of its kind is active: it may be pipelined. Never a decryption's: the
 * broker's consent refuses one at C_DecryptInit
 * (CKR_KEY_FUNCTION_NOT_PERMITTED), and C_Decrypt has no code to carry
 * that refusal (a signature's is kept for C_Sign: CKR_FUNCTION_REJECTED). */
static bool
op_repeats(CK_SESSION_HANDLE h, int op, const CK_MECHANISM *m, CK_OBJECT_HANDLE key)
{
	struct rsess *s;
	struct rop *o;
	bool same = false;

	if (op == OP_DECRYPT)
		return false;
	pthread_mutex_lock(&R.lock);
	s = sess_find_locked(h);
	if (s != NULL) {
		o = &s->ops[op];
		same = o->repeat && !o->active && s->pend.buf == NULL && o->epoch == R.epoch &&
		       s->epoch == R.epoch && o->mech == m->mechanism && o->key == key &&
		       o->plen == (m->pParameter != NULL ? m->ulParameterLen : 0) &&
		       (o->plen == 0 || memcmp(o->param, m->pParameter, o->plen) == 0);
	}
	pthread_mutex_unlock(&R.lock);
	return same;
}

/* After an init that waited for its answer. */
static void
op_started(CK_SESSION_HANDLE h, int op, const CK_MECHANISM *m, CK_OBJECT_HANDLE key, CK_RV rv)
{
	struct rsess *s;
	struct rop *o;
	CK_ULONG plen = m->pParameter != NULL ? m->ulParameterLen : 0;

	pthread_mutex_lock(&R.lock);
	s = sess_find_locked(h);
	if (s != NULL) {
		o = &s->ops[op];
		/* (CKR_OPERATION_ACTIVE: one is, still) */
		o->active = rv == CKR_OK || rv == CKR_OPERATION_ACTIVE;
		o->repeat = rv == CKR_OK && plen <= OP_PARAM_MAX;
		o->epoch = R.epoch;
		o->mech = m->mechanism;
		o->key = key;
		o->plen = plen;
		if (o->repeat && plen > 0)
			memcpy(o->param, m->pParameter, plen);
	}
	pthread_mutex_unlock(&R.lock);
}

/* session, mechanism, object (the *Init functions) */
static CK_RV
call_s_m_o(uint32_t fn, CK_SESSION_HANDLE h, CK_MECHANISM_PTR m, CK_OBJECT_HANDLE key,
           bool with_key)
{
	struct rc c;
	struct bp_w w;
	CK_OBJECT_HANDLE bkey = 0;
	struct rsess *s;
	uint64_t id;
	int op, step;
	CK_RV rv;

	if (m == NULL)
		return initialized() ? CKR_ARGUMENTS_BAD : CKR_CRYPTOKI_NOT_INITIALIZED;
	rv = sess_begin(&c, &w, h);
	if (rv != CKR_OK)
		return rv;
	if (with_key && !obj_bid(key, &bkey)) {
		bp_w_free(&w);
		rc_end(&c);
		return CKR_KEY_HANDLE_INVALID;
	}
	if (!put_mech(&w, m)) {
		bp_w_free(&w);
		rc_end(&c);
		return CKR_MECHANISM_PARAM_INVALID;
	}
	if (with_key)
		bp_put_u(&w, bkey);
	if (op_of(fn, &op, &step) && c.pend.buf == NULL && op_repeats(h, op, m, key)) {
		uint8_t *buf;
		size_t len;
		id = next_id();
		if (!bp_encode_request(fn, id, &w, &buf, &len)) {
			rc_end(&c);
			return CKR_HOST_MEMORY;
		}
		rv = CKR_SESSION_HANDLE_INVALID; /* (unless it is still there) */
		pthread_mutex_lock(&R.lock);
		s = sess_find_locked(h);
		if (s != NULL && s->pend.buf == NULL) {
			/* (its handles are of the session's epoch) */
			s->pend = (struct rpend){buf, len, id, op, s->epoch};
			s->ops[op].active = true;
			buf = NULL;
			rv = CKR_OK;
		}
		pthread_mutex_unlock(&R.lock);
		tk_freezero(buf, len);
		rc_end(&c);
		return rv;
	}
	rv = rc_call(&c, fn, &w);
	if (op_of(fn, &op, &step))
		op_started(h, op, m, key, rv);
	rc_end(&c);
	return rv;
}

/* A step of an operation refused here (its arguments, a length the
 * protocol does not carry) ends that operation in the broker as well, as
 * any error but CKR_BUFFER_TOO_SMALL ends it embedded (PKCS#11 3.0 section
 * 5.2): C_SessionCancel of it there. Answers rv, or the session's own error
 * (an invalid or closed session comes first, as embedded). */
static CK_RV
refused_here(uint32_t fn, CK_SESSION_HANDLE h, CK_RV rv)
{
	int op, step;
	CK_RV crv;

	if (!initialized())
		return CKR_CRYPTOKI_NOT_INITIALIZED;
	if (!op_of(fn, &op, &step) || step == STEP_INIT)
		return rv;
	crv = tk_p11r_C_SessionCancel(h, op_flag[op]);
	return crv == CKR_SESSION_HANDLE_INVALID || crv == CKR_SESSION_CLOSED ? crv : rv;
}

/* session, input, output buffer */
static CK_RV
call_s_in_out(uint32_t fn, CK_SESSION_HANDLE h, const void *in, CK_ULONG in_len, CK_BYTE_PTR out,
              CK_ULONG_PTR out_len)
{
	struct rc c;
	struct bp_w w;
	CK_RV rv;

	if (!initialized())
		return CKR_CRYPTOKI_NOT_INITIALIZED;
	if ((in == NULL && in_len > 0) || out_len == NULL)
		return refused_here(fn, h, CKR_ARGUMENTS_BAD);
	if (in_len > BP_MAX_BYTES)
		return refused_here(fn, h, CKR_DATA_LEN_RANGE);
	rv = sess_begin(&c, &w, h);
	if (rv != CKR_OK)
		return rv;
	bp_put_b(&w, in, in_len);
	put_out(&w, out, out_len);
	c.out_query = out == NULL;
	rv = get_out(&c, rc_call(&c, fn, &w), out, out_len);
	rc_end(&c);
	return rv;
}

/* session, input */
static CK_RV
call_s_in(uint32_t fn, CK_SESSION_HANDLE h, const void *in, CK_ULONG in_len)
{
	struct rc c;
	struct bp_w w;
	CK_RV rv;

	if (!initialized())
		return CKR_CRYPTOKI_NOT_INITIALIZED;
	if (in == NULL && in_len > 0)
		return refused_here(fn, h, CKR_ARGUMENTS_BAD);
	if (in_len > BP_MAX_BYTES)
		return refused_here(fn, h, CKR_DATA_LEN_RANGE);
	rv = sess_begin(&c, &w, h);
	if (rv != CKR_OK)
		return rv;
	bp_put_b(&w, in, in_len);
	rv = rc_call(&c, fn, &w);
	rc_end(&c);
	return rv;
}

/* session, output buffer */
static CK_RV
call_s_out(uint32_t fn, CK_SESSION_HANDLE h, CK_BYTE_PTR out, CK_ULONG_PTR out_len)
{
	struct rc c;
	struct bp_w w;
	CK_RV rv;

	if (!initialized())
		return CKR_CRYPTOKI_NOT_INITIALIZED;
	if (out_len == NULL)
		return refused_here(fn, h, CKR_ARGUMENTS_BAD);
	rv = sess_begin(&c, &w, h);
	if (rv != CKR_OK)
		return rv;
	put_out(&w, out, out_len);
	c.out_query = out == NULL;
	rv = get_out(&c, rc_call(&c, fn, &w), out, out_len);
	rc_end(&c);
	return rv;
}

/* --- general purpose ---------------------------------------------------- */

static void
atfork_child(void)
{
	/* the parent's connections and sessions are not the child's */
	R.initialized = false;
	R.nidle = 0;
	R.nsess = 0;
	pthread_mutex_init(&R.lock, NULL);
}

static pthread_once_t atfork_once = PTHREAD_ONCE_INIT;

static void
atfork_register(void)
{
	pthread_atfork(NULL, NULL, atfork_child);
}

CK_RV
tk_p11r_C_Initialize(CK_VOID_PTR init_args)
{
	CK_C_INITIALIZE_ARGS *a = init_args;
	int cbs;

	if (a != NULL) {
		if (a->pReserved != NULL)
			return CKR_ARGUMENTS_BAD;
		cbs = (a->CreateMutex != NULL) + (a->DestroyMutex != NULL) +
		      (a->LockMutex != NULL) + (a->UnlockMutex != NULL);
		if (cbs != 0 && cbs != 4)
			return CKR_ARGUMENTS_BAD;
	}
	pthread_once(&atfork_once, atfork_register);
	pthread_mutex_lock(&R.lock);
	if (R.initialized && R.pid == getpid()) {
		pthread_mutex_unlock(&R.lock);
		return CKR_CRYPTOKI_ALREADY_INITIALIZED;
	}
	if (getrandom(R.client_id, sizeof(R.client_id), 0) != sizeof(R.client_id)) {
		pthread_mutex_unlock(&R.lock);
		return CKR_FUNCTION_FAILED;
	}
	R.initialized = true;
	R.pid = getpid();
	R.have_instance = false;
	R.epoch = 1;
	R.nidle = 0;
	R.nsess = 0;
	R.nslots = 0;
	R.next_h = 1;
	R.timeout_ms = tk_p11_broker_timeout_ms();
	pthread_mutex_unlock(&R.lock);
	/* choose the broker (the user's, else the system's) and say hello
	 * now: the first call then finds the broker's slots */
	struct rc c;
	int fd = choose_broker();
	if (fd >= 0)
		close(fd);
	if (rc_begin(&c, 0) == CKR_OK)
		rc_end(&c);
	else
		tk_log_warn("pkcs11: broker mode, but no broker answers yet");
	return CKR_OK;
}

CK_RV
tk_p11r_C_Finalize(CK_VOID_PTR reserved)
{
	if (reserved != NULL)
		return CKR_ARGUMENTS_BAD;
	pthread_mutex_lock(&R.lock);
	if (!R.initialized || R.pid != getpid()) {
		pthread_mutex_unlock(&R.lock);
		return CKR_CRYPTOKI_NOT_INITIALIZED;
	}
	R.initialized = false;
	/* closing the connections ends our sessions in the broker */
	for (size_t i = 0; i < R.nidle; i++)
		conn_close(R.idle[i]);
	R.nidle = 0;
	for (size_t i = 0; i < R.nsess; i++)
		pend_free(&R.sess[i].pend);
	free(R.sess);
	R.sess = NULL;
	R.nsess = R.sess_cap = 0;
	free(R.slots);
	R.slots = NULL;
	R.nslots = R.slots_cap = 0;
	pthread_mutex_unlock(&R.lock);
	return CKR_OK;
}

CK_RV
tk_p11r_C_GetInfo(CK_INFO_PTR info)
{
	CHECK_INIT();
	if (info == NULL)
		return CKR_ARGUMENTS_BAD;
	memset(info, 0, sizeof(*info));
	info->cryptokiVersion.major = 3;
	info->cryptokiVersion.minor = 0;
	tk_p11_pad(info->manufacturerID, sizeof(info->manufacturerID), P11_MANUFACTURER);
	tk_p11_pad(info->libraryDescription, sizeof(info->libraryDescription),
	           P11_LIBRARY_DESC " (broker)");
	info->libraryVersion.major = TK_P11_VERSION_MAJOR;
	info->libraryVersion.minor = TK_P11_VERSION_MINOR;
	return CKR_OK;
}

CK_RV
tk_p11r_C_GetFunctionList(CK_FUNCTION_LIST_PTR_PTR function_list)
{
	return tk_p11_C_GetFunctionList(function_list);
}

CK_RV
tk_p11r_C_GetInterfaceList(CK_INTERFACE_PTR interfaces_list, CK_ULONG_PTR count)
{
	return tk_p11_C_GetInterfaceList(interfaces_list, count);
}

CK_RV
tk_p11r_C_GetInterface(CK_BYTE_PTR interface_name, CK_VERSION_PTR version,
                       CK_INTERFACE_PTR_PTR interface_ptr, CK_FLAGS flags)
{
	return tk_p11_C_GetInterface(interface_name, version, interface_ptr, flags);
}

/* --- slots and tokens --------------------------------------------------- */

CK_RV
tk_p11r_C_GetSlotList(CK_BBOOL token_present, CK_SLOT_ID_PTR slot_list, CK_ULONG_PTR count)
{
	CK_SLOT_ID ids[BP_MAX_ITEMS];
	size_t n = 0;
	struct bp_w w;
	struct bp_r list;
	struct rc c;
	CK_RV rv;

	CHECK_INIT();
	if (count == NULL)
		return CKR_ARGUMENTS_BAD;
	if (rc_begin(&c, 0) != CKR_OK) {
		/* no broker: no slots (until it is back) */
		n = 0;
		goto answer;
	}
	rv = slots_sync(&c);
	if (rv == CKR_OK) {
		bp_w_init(&w);
		bp_put_u(&w, token_present ? CK_TRUE : CK_FALSE);
		rv = rc_call(&c, BP_C_GetSlotList, &w);
	}
	if (rv == CKR_OK) {
		CK_SLOT_ID bids[BP_MAX_ITEMS];
		size_t nb = 0;
		list = bp_get_sub(c.r);
		while (list.ok && list.i < list.n && nb < BP_MAX_ITEMS)
			bids[nb++] = (CK_SLOT_ID)bp_get_u(&list);
		if (!list.ok)
			rv = rc_bad(&c);
		for (size_t i = 0; rv == CKR_OK && i < nb; i++) {
			CK_SLOT_ID cid;
			if (slot_cid(&c, bids[i], &cid) == CKR_OK)
				ids[n++] = cid;
		}
	}
	rc_end(&c);
	if (rv != CKR_OK && rv != CKR_DEVICE_ERROR)
		return rv;
answer:
	if (slot_list == NULL) {
		*count = n;
		return CKR_OK;
	}
	if (*count < n) {
		*count = n;
		return CKR_BUFFER_TOO_SMALL;
	}
	memcpy(slot_list, ids, n * sizeof(CK_SLOT_ID));
	*count = n;
	return CKR_OK;
}

/* slot calls: [bid, ...] */
static CK_RV
slot_begin(struct rc *c, struct bp_w *w, CK_SLOT_ID cid)
{
	return begin_with(c, w, cid, slot_bid);
}

/* A struct answered as its bytes (the same process layout on both ends:
 * the broker is on this machine, built from the same header). */
static CK_RV
get_struct(struct rc *c, CK_RV rv, void *out, size_t size)
{
	const uint8_t *p;
	size_t n;

	if (rv != CKR_OK)
		return rv;
	p = bp_get_b(c->r, &n, false, NULL);
	if (!c->r->ok || n != size)
		return rc_bad(c);
	memcpy(out, p, size);
	return CKR_OK;
}

CK_RV
tk_p11r_C_GetSlotInfo(CK_SLOT_ID slot_id, CK_SLOT_INFO_PTR info)
{
	struct rc c;
	struct bp_w w;
	CK_RV rv;

	if (info == NULL)
		return initialized() ? CKR_ARGUMENTS_BAD : CKR_CRYPTOKI_NOT_INITIALIZED;
	rv = slot_begin(&c, &w, slot_id);
	if (rv != CKR_OK)
		return rv;
	rv = get_struct(&c, rc_call(&c, BP_C_GetSlotInfo, &w), info, sizeof(*info));
	rc_end(&c);
	return rv;
}

CK_RV
tk_p11r_C_GetTokenInfo(CK_SLOT_ID slot_id, CK_TOKEN_INFO_PTR info)
{
	struct rc c;
	struct bp_w w;
	CK_RV rv;

	if (info == NULL)
		return initialized() ? CKR_ARGUMENTS_BAD : CKR_CRYPTOKI_NOT_INITIALIZED;
	rv = slot_begin(&c, &w, slot_id);
	if (rv != CKR_OK)
		return rv;
	rv = get_struct(&c, rc_call(&c, BP_C_GetTokenInfo, &w), info, sizeof(*info));
	rc_end(&c);
	return rv;
}

CK_RV
tk_p11r_C_GetMechanismList(CK_SLOT_ID slot_id, CK_MECHANISM_TYPE_PTR mechanism_list,
                           CK_ULONG_PTR count)
{
	struct rc c;
	struct bp_w w;
	struct bp_r list;
	CK_RV rv;
	size_t n = 0;
	CK_MECHANISM_TYPE mechs[BP_MAX_ITEMS];

	if (count == NULL)
		return initialized() ? CKR_ARGUMENTS_BAD : CKR_CRYPTOKI_NOT_INITIALIZED;
	rv = slot_begin(&c, &w, slot_id);
	if (rv != CKR_OK)
		return rv;
	rv = rc_call(&c, BP_C_GetMechanismList, &w);
	if (rv == CKR_OK) {
		list = bp_get_sub(c.r);
		while (list.ok && list.i < list.n && n < BP_MAX_ITEMS)
			mechs[n++] = bp_get_u(&list);
		if (!list.ok)
			rv = rc_bad(&c);
	}
	rc_end(&c);
	if (rv != CKR_OK)
		return rv;
	if (mechanism_list == NULL) {
		*count = n;
		return CKR_OK;
	}
	if (*count < n) {
		*count = n;
		return CKR_BUFFER_TOO_SMALL;
	}
	memcpy(mechanism_list, mechs, n * sizeof(*mechs));
	*count = n;
	return CKR_OK;
}

CK_RV
tk_p11r_C_GetMechanismInfo(CK_SLOT_ID slot_id, CK_MECHANISM_TYPE type, CK_MECHANISM_INFO_PTR info)
{
	struct rc c;
	struct bp_w w;
	CK_RV rv;

	if (info == NULL)
		return initialized() ? CKR_ARGUMENTS_BAD : CKR_CRYPTOKI_NOT_INITIALIZED;
	rv = slot_begin(&c, &w, slot_id);
	if (rv != CKR_OK)
		return rv;
	bp_put_u(&w, type);
	rv = get_struct(&c, rc_call(&c, BP_C_GetMechanismInfo, &w), info, sizeof(*info));
	rc_end(&c);
	return rv;
}

CK_RV
tk_p11r_C_WaitForSlotEvent(CK_FLAGS flags, CK_SLOT_ID_PTR slot, CK_VOID_PTR reserved)
{
	uint32_t epoch0 = cur_epoch();

	CHECK_INIT();
	if (slot == NULL || reserved != NULL)
		return CKR_ARGUMENTS_BAD;
	/* The broker keeps each client's view of the slots and answers at
	 * once; a blocking wait asks again every WAIT_POLL_MS (and ends with
	 * C_Finalize). */
	for (;;) {
		struct rc c;
		struct bp_w w;
		CK_RV rv = rc_begin(&c, 0);

		if (rv == CKR_OK) {
			bp_w_init(&w);
			rv = rc_call(&c, BP_C_WaitForSlotEvent, &w);
			if (rv == CKR_OK) {
				CK_SLOT_ID bid = bp_get_u(c.r);
				if (!c.r->ok)
					rv = rc_bad(&c);
				else
					rv = slot_cid(&c, bid, slot);
			}
			rc_end(&c);
			if (rv == CKR_OK)
				return CKR_OK;
		}
		if (cur_epoch() != epoch0) {
			/* the broker came back: every slot may have changed */
			pthread_mutex_lock(&R.lock);
			bool any = R.nslots > 0;
			if (any)
				*slot = R.slots[0].cid;
			pthread_mutex_unlock(&R.lock);
			if (any)
				return CKR_OK;
		}
		if (flags & CKF_DONT_BLOCK)
			return CKR_NO_EVENT;
		struct timespec ts = {0, WAIT_POLL_MS * 1000000L};
		nanosleep(&ts, NULL);
		if (!initialized())
			return CKR_CRYPTOKI_NOT_INITIALIZED;
	}
}

CK_RV
tk_p11r_C_InitToken(CK_SLOT_ID slot_id, CK_BYTE_PTR pin, CK_ULONG pin_len, CK_BYTE_PTR label)
{
	(void)slot_id;
	(void)pin;
	(void)pin_len;
	(void)label;
	CHECK_INIT();
	return CKR_FUNCTION_NOT_SUPPORTED;
}

/* --- sessions ----------------------------------------------------------- */

CK_RV
tk_p11r_C_OpenSession(CK_SLOT_ID slot_id, CK_FLAGS flags, CK_VOID_PTR application, CK_NOTIFY notify,
                      CK_SESSION_HANDLE_PTR session)
{
	struct rc c;
	struct bp_w w;
	uint8_t ident[IDENT_LEN];
	CK_SESSION_HANDLE bh;
	CK_SLOT_ID bid;
	uint32_t epoch;
	CK_RV rv;

	(void)application;
	(void)notify; /* (no callbacks: the module never calls the application) */
	CHECK_INIT();
	if (session == NULL)
		return CKR_ARGUMENTS_BAD;
	if (!(flags & CKF_SERIAL_SESSION))
		return CKR_SESSION_PARALLEL_NOT_SUPPORTED;
	rv = rc_begin(&c, 0);
	if (rv != CKR_OK)
		return rv;
	epoch = cur_epoch();
	rv = slot_bid(&c, slot_id, &bid);
	if (rv == CKR_OK)
		rv = open_on(&c, bid, flags, &bh, ident);
	if (rv == CKR_OK) {
		pthread_mutex_lock(&R.lock);
		if (R.nsess == R.sess_cap) {
			size_t cap = R.sess_cap ? R.sess_cap * 2 : 16;
			struct rsess *ns = realloc(R.sess, cap * sizeof(*ns));
			if (ns == NULL)
				rv = CKR_HOST_MEMORY;
			else {
				R.sess = ns;
				R.sess_cap = cap;
			}
		}
		if (rv == CKR_OK) {
			struct rsess *s = &R.sess[R.nsess++];
			memset(s, 0, sizeof(*s));
			s->h = R.next_h++;
			s->bh = bh;
			s->slot = slot_id;
			s->flags = flags;
			s->epoch = epoch;
			memcpy(s->ident, ident, IDENT_LEN);
			*session = s->h;
		}
		pthread_mutex_unlock(&R.lock);
		if (rv != CKR_OK) {
			bp_w_init(&w);
			bp_put_u(&w, bh);
			(void)rc_call(&c, BP_C_CloseSession, &w);
		}
	}
	rc_end(&c);
	return rv;
}

CK_RV
tk_p11r_C_CloseSession(CK_SESSION_HANDLE session)
{
	CK_RV rv = call_s(BP_C_CloseSession, session);

	/* gone in the broker or not: the application is done with it */
	if (rv == CKR_OK || rv == CKR_SESSION_HANDLE_INVALID || rv == CKR_DEVICE_ERROR ||
	    rv == CKR_SESSION_CLOSED) {
		pthread_mutex_lock(&R.lock);
		bool had = sess_find_locked(session) != NULL;
		sess_remove_locked(session);
		pthread_mutex_unlock(&R.lock);
		if (had)
			rv = CKR_OK;
	}
	return rv;
}

CK_RV
tk_p11r_C_CloseAllSessions(CK_SLOT_ID slot_id)
{
	CK_SESSION_HANDLE hs[256];
	size_t n = 0;
	bool known;

	CHECK_INIT();
	pthread_mutex_lock(&R.lock);
	known = slot_by_cid_locked(slot_id) != NULL;
	for (size_t i = 0; i < R.nsess && n < 256; i++)
		if (R.sess[i].slot == slot_id)
			hs[n++] = R.sess[i].h;
	pthread_mutex_unlock(&R.lock);
	if (!known)
		return CKR_SLOT_ID_INVALID;
	for (size_t i = 0; i < n; i++)
		(void)tk_p11r_C_CloseSession(hs[i]);
	return CKR_OK;
}

CK_RV
tk_p11r_C_GetSessionInfo(CK_SESSION_HANDLE session, CK_SESSION_INFO_PTR info)
{
	struct rc c;
	struct bp_w w;
	CK_SLOT_ID slot = 0;
	CK_RV rv;

	if (info == NULL)
		return initialized() ? CKR_ARGUMENTS_BAD : CKR_CRYPTOKI_NOT_INITIALIZED;
	rv = sess_begin(&c, &w, session);
	if (rv != CKR_OK)
		return rv;
	rv = get_struct(&c, rc_call(&c, BP_C_GetSessionInfo, &w), info, sizeof(*info));
	rc_end(&c);
	pthread_mutex_lock(&R.lock);
	struct rsess *s = sess_find_locked(session);
	if (s != NULL)
		slot = s->slot;
	pthread_mutex_unlock(&R.lock);
	if (rv == CKR_OK)
		info->slotID = slot; /* ours, not the broker's */
	return rv;
}

CK_RV
tk_p11r_C_GetOperationState(CK_SESSION_HANDLE session, CK_BYTE_PTR operation_state,
                            CK_ULONG_PTR operation_state_len)
{
	(void)session;
	(void)operation_state;
	(void)operation_state_len;
	CHECK_INIT();
	return CKR_FUNCTION_NOT_SUPPORTED;
}

CK_RV
tk_p11r_C_SetOperationState(CK_SESSION_HANDLE session, CK_BYTE_PTR operation_state,
                            CK_ULONG operation_state_len, CK_OBJECT_HANDLE encryption_key,
                            CK_OBJECT_HANDLE authentication_key)
{
	(void)session;
	(void)operation_state;
	(void)operation_state_len;
	(void)encryption_key;
	(void)authentication_key;
	CHECK_INIT();
	return CKR_FUNCTION_NOT_SUPPORTED;
}

static CK_RV
login(uint32_t fn, CK_SESSION_HANDLE session, CK_USER_TYPE user, CK_BYTE_PTR pin, CK_ULONG len)
{
	struct rc c;
	struct bp_w w;
	CK_RV rv;

	if (pin == NULL && len > 0)
		return initialized() ? CKR_ARGUMENTS_BAD : CKR_CRYPTOKI_NOT_INITIALIZED;
	if (len > P11_PIN_MAX)
		return initialized() ? CKR_PIN_INCORRECT : CKR_CRYPTOKI_NOT_INITIALIZED;
	rv = sess_begin(&c, &w, session);
	if (rv != CKR_OK)
		return rv;
	bp_put_u(&w, user);
	if (pin == NULL)
		bp_put_null(&w); /* protected authentication path */
	else
		bp_put_b(&w, pin, len);
	rv = rc_call(&c, fn, &w);
	rc_end(&c);
	/* (the PIN was in the request buffer, freed by rc_call: wiped there) */
	return rv;
}

CK_RV
tk_p11r_C_Login(CK_SESSION_HANDLE session, CK_USER_TYPE user_type, CK_BYTE_PTR pin,
                CK_ULONG pin_len)
{
	return login(BP_C_Login, session, user_type, pin, pin_len);
}

CK_RV
tk_p11r_C_LoginUser(CK_SESSION_HANDLE session, CK_USER_TYPE user_type, CK_BYTE_PTR pin,
                    CK_ULONG pin_len, CK_BYTE_PTR username, CK_ULONG username_len)
{
	/* no token of ours has user names (as in the embedded module) */
	(void)username;
	(void)username_len;
	return login(BP_C_Login, session, user_type, pin, pin_len);
}

CK_RV
tk_p11r_C_Logout(CK_SESSION_HANDLE session)
{
	return call_s(BP_C_Logout, session);
}

CK_RV
tk_p11r_C_InitPIN(CK_SESSION_HANDLE session, CK_BYTE_PTR pin, CK_ULONG pin_len)
{
	if (pin == NULL && pin_len > 0)
		return initialized() ? CKR_ARGUMENTS_BAD : CKR_CRYPTOKI_NOT_INITIALIZED;
	return call_s_in(BP_C_InitPIN, session, pin, pin_len);
}

CK_RV
tk_p11r_C_SetPIN(CK_SESSION_HANDLE session, CK_BYTE_PTR old_pin, CK_ULONG old_len,
                 CK_BYTE_PTR new_pin, CK_ULONG new_len)
{
	struct rc c;
	struct bp_w w;
	CK_RV rv;

	if ((old_pin == NULL && old_len > 0) || (new_pin == NULL && new_len > 0))
		return initialized() ? CKR_ARGUMENTS_BAD : CKR_CRYPTOKI_NOT_INITIALIZED;
	if (old_len > P11_PIN_MAX || new_len > P11_PIN_MAX)
		return initialized() ? CKR_PIN_LEN_RANGE : CKR_CRYPTOKI_NOT_INITIALIZED;
	rv = sess_begin(&c, &w, session);
	if (rv != CKR_OK)
		return rv;
	bp_put_b(&w, old_pin, old_len);
	bp_put_b(&w, new_pin, new_len);
	rv = rc_call(&c, BP_C_SetPIN, &w);
	rc_end(&c);
	return rv;
}

/* --- objects ------------------------------------------------------------ */

/* Send fn (its arguments in w) and read the object handle it answers into
 * *out: a handle of epoch, the one its arguments' handles were of. */
static CK_RV
rc_call_handle(struct rc *c, uint32_t fn, struct bp_w *w, uint32_t epoch, CK_OBJECT_HANDLE_PTR out)
{
	CK_RV rv = rc_call(c, fn, w);

	if (rv == CKR_OK) {
		CK_OBJECT_HANDLE bh = bp_get_u(c->r);
		if (!c->r->ok)
			rv = rc_bad(c);
		else
			*out = obj_cid(bh, epoch);
	}
	return rv;
}

static CK_RV
call_template_out_handle(uint32_t fn, CK_SESSION_HANDLE session, CK_ATTRIBUTE_PTR t, CK_ULONG n,
                         CK_OBJECT_HANDLE_PTR out)
{
	struct rc c;
	struct bp_w w;
	uint32_t epoch;
	CK_RV rv;

	if (out == NULL)
		return initialized() ? CKR_ARGUMENTS_BAD : CKR_CRYPTOKI_NOT_INITIALIZED;
	rv = sess_begin(&c, &w, session);
	if (rv != CKR_OK)
		return rv;
	epoch = cur_epoch();
	rv = put_template(&w, t, n);
	if (rv != CKR_OK) {
		bp_w_free(&w);
		rc_end(&c);
		return rv;
	}
	rv = rc_call_handle(&c, fn, &w, epoch, out);
	rc_end(&c);
	return rv;
}

CK_RV
tk_p11r_C_CreateObject(CK_SESSION_HANDLE session, CK_ATTRIBUTE_PTR templ, CK_ULONG count,
                       CK_OBJECT_HANDLE_PTR object)
{
	return call_template_out_handle(BP_C_CreateObject, session, templ, count, object);
}

/* session, object: [bh, object] */
static CK_RV
obj_begin(struct rc *c, struct bp_w *w, CK_SESSION_HANDLE session, CK_OBJECT_HANDLE object)
{
	CK_OBJECT_HANDLE bo;
	CK_RV rv = sess_begin(c, w, session);

	if (rv != CKR_OK)
		return rv;
	if (!obj_bid(object, &bo)) {
		bp_w_free(w);
		rc_end(c);
		return CKR_OBJECT_HANDLE_INVALID;
	}
	bp_put_u(w, bo);
	return CKR_OK;
}

CK_RV
tk_p11r_C_CopyObject(CK_SESSION_HANDLE session, CK_OBJECT_HANDLE object, CK_ATTRIBUTE_PTR templ,
                     CK_ULONG count, CK_OBJECT_HANDLE_PTR new_object)
{
	struct rc c;
	struct bp_w w;
	uint32_t epoch;
	CK_RV rv;

	if (new_object == NULL)
		return initialized() ? CKR_ARGUMENTS_BAD : CKR_CRYPTOKI_NOT_INITIALIZED;
	rv = obj_begin(&c, &w, session, object);
	if (rv != CKR_OK)
		return rv;
	epoch = cur_epoch();
	rv = put_template(&w, templ, count);
	if (rv != CKR_OK) {
		bp_w_free(&w);
		rc_end(&c);
		return rv;
	}
	rv = rc_call_handle(&c, BP_C_CopyObject, &w, epoch, new_object);
	rc_end(&c);
	return rv;
}

CK_RV
tk_p11r_C_DestroyObject(CK_SESSION_HANDLE session, CK_OBJECT_HANDLE object)
{
	struct rc c;
	struct bp_w w;
	CK_RV rv = obj_begin(&c, &w, session, object);

	if (rv != CKR_OK)
		return rv;
	rv = rc_call(&c, BP_C_DestroyObject, &w);
	rc_end(&c);
	return rv;
}

CK_RV
tk_p11r_C_GetObjectSize(CK_SESSION_HANDLE session, CK_OBJECT_HANDLE object, CK_ULONG_PTR size)
{
	struct rc c;
	struct bp_w w;
	CK_RV rv;

	if (size == NULL)
		return initialized() ? CKR_ARGUMENTS_BAD : CKR_CRYPTOKI_NOT_INITIALIZED;
	rv = obj_begin(&c, &w, session, object);
	if (rv != CKR_OK)
		return rv;
	rv = rc_call(&c, BP_C_GetObjectSize, &w);
	if (rv == CKR_OK) {
		*size = bp_get_u(c.r);
		if (!c.r->ok)
			rv = rc_bad(&c);
	}
	rc_end(&c);
	return rv;
}

CK_RV
tk_p11r_C_GetAttributeValue(CK_SESSION_HANDLE session, CK_OBJECT_HANDLE object,
                            CK_ATTRIBUTE_PTR templ, CK_ULONG count)
{
	struct rc c;
	struct bp_w w, a;
	struct bp_r res;
	CK_RV rv;

	if ((templ == NULL && count > 0) || count > BP_MAX_ITEMS)
		return initialized() ? CKR_ARGUMENTS_BAD : CKR_CRYPTOKI_NOT_INITIALIZED;
	rv = obj_begin(&c, &w, session, object);
	if (rv != CKR_OK)
		return rv;
	bp_w_init(&a);
	for (CK_ULONG i = 0; i < count; i++) {
		/* a template inside an attribute holds pointers: its length
		 * only; a buffer larger than a value can travel: as large as
		 * one can (a larger value is CKR_BUFFER_TOO_SMALL) */
		bp_put_u(&a, templ[i].type);
		if (templ[i].pValue == NULL || attr_has_pointers(templ[i].type))
			bp_put_null(&a);
		else
			bp_put_u(&a, templ[i].ulValueLen < BP_MAX_BYTES ? templ[i].ulValueLen
			                                                : BP_MAX_BYTES);
	}
	bp_put_sub(&w, &a);
	rv = rc_call(&c, BP_C_GetAttributeValue, &w);
	if (rv == CKR_OK || rv == CKR_ATTRIBUTE_SENSITIVE || rv == CKR_ATTRIBUTE_TYPE_INVALID ||
	    rv == CKR_BUFFER_TOO_SMALL) {
		res = bp_get_sub(c.r);
		if (res.n != 2 * count)
			res.ok = false;
		for (CK_ULONG i = 0; res.ok && i < count; i++) {
			uint64_t len = bp_get_u(&res);
			size_t n;
			bool null;
			const uint8_t *p = bp_get_b(&res, &n, true, &null);
			if (!res.ok)
				break;
			if (templ[i].pValue != NULL && !null && len == n &&
			    n <= templ[i].ulValueLen)
				memcpy(templ[i].pValue, p, n);
			else if (templ[i].pValue != NULL && !null)
				res.ok = false;
			else if (templ[i].pValue != NULL && null &&
			         !attr_has_pointers(templ[i].type) &&
			         (CK_ULONG)len != CK_UNAVAILABLE_INFORMATION)
				res.ok = false; /* a value said to be there but not sent */
			if (templ[i].pValue != NULL && attr_has_pointers(templ[i].type) &&
			    (CK_ULONG)len != CK_UNAVAILABLE_INFORMATION) {
				len = CK_UNAVAILABLE_INFORMATION; /* (not carried) */
				if (rv == CKR_OK)
					rv = CKR_ATTRIBUTE_TYPE_INVALID;
			}
			templ[i].ulValueLen = (CK_ULONG)len;
		}
		if (!res.ok)
			rv = rc_bad(&c);
	}
	rc_end(&c);
	return rv;
}

CK_RV
tk_p11r_C_SetAttributeValue(CK_SESSION_HANDLE session, CK_OBJECT_HANDLE object,
                            CK_ATTRIBUTE_PTR templ, CK_ULONG count)
{
	struct rc c;
	struct bp_w w;
	CK_RV rv = obj_begin(&c, &w, session, object);

	if (rv != CKR_OK)
		return rv;
	rv = put_template(&w, templ, count);
	if (rv != CKR_OK) {
		bp_w_free(&w);
		rc_end(&c);
		return rv;
	}
	rv = rc_call(&c, BP_C_SetAttributeValue, &w);
	rc_end(&c);
	return rv;
}

CK_RV
tk_p11r_C_FindObjectsInit(CK_SESSION_HANDLE session, CK_ATTRIBUTE_PTR templ, CK_ULONG count)
{
	struct rc c;
	struct bp_w w;
	CK_RV rv = sess_begin(&c, &w, session);

	if (rv != CKR_OK)
		return rv;
	rv = put_template(&w, templ, count);
	if (rv != CKR_OK) {
		bp_w_free(&w);
		rc_end(&c);
		return rv;
	}
	rv = rc_call(&c, BP_C_FindObjectsInit, &w);
	rc_end(&c);
	return rv;
}

CK_RV
tk_p11r_C_FindObjects(CK_SESSION_HANDLE session, CK_OBJECT_HANDLE_PTR object,
                      CK_ULONG max_object_count, CK_ULONG_PTR object_count)
{
	struct rc c;
	struct bp_w w;
	struct bp_r list;
	uint32_t epoch;
	CK_RV rv;

	if ((object == NULL && max_object_count > 0) || object_count == NULL)
		return initialized() ? CKR_ARGUMENTS_BAD : CKR_CRYPTOKI_NOT_INITIALIZED;
	rv = sess_begin(&c, &w, session);
	if (rv != CKR_OK)
		return rv;
	epoch = cur_epoch();
	bp_put_u(&w, max_object_count > BP_MAX_ITEMS ? BP_MAX_ITEMS : max_object_count);
	rv = rc_call(&c, BP_C_FindObjects, &w);
	if (rv == CKR_OK) {
		size_t n = 0;
		list = bp_get_sub(c.r);
		while (list.ok && list.i < list.n && n < max_object_count)
			object[n++] = obj_cid(bp_get_u(&list), epoch);
		if (!bp_r_done(&list))
			rv = rc_bad(&c);
		*object_count = n;
	}
	rc_end(&c);
	return rv;
}

CK_RV
tk_p11r_C_FindObjectsFinal(CK_SESSION_HANDLE session)
{
	return call_s(BP_C_FindObjectsFinal, session);
}

/* --- cryptographic functions -------------------------------------------- */

CK_RV
tk_p11r_C_EncryptInit(CK_SESSION_HANDLE session, CK_MECHANISM_PTR mechanism, CK_OBJECT_HANDLE key)
{
	return call_s_m_o(BP_C_EncryptInit, session, mechanism, key, true);
}

CK_RV
tk_p11r_C_Encrypt(CK_SESSION_HANDLE session, CK_BYTE_PTR data, CK_ULONG data_len,
                  CK_BYTE_PTR encrypted_data, CK_ULONG_PTR encrypted_data_len)
{
	return call_s_in_out(BP_C_Encrypt, session, data, data_len, encrypted_data,
	                     encrypted_data_len);
}

CK_RV
tk_p11r_C_EncryptUpdate(CK_SESSION_HANDLE session, CK_BYTE_PTR part, CK_ULONG part_len,
                        CK_BYTE_PTR encrypted_part, CK_ULONG_PTR encrypted_part_len)
{
	return call_s_in_out(BP_C_EncryptUpdate, session, part, part_len, encrypted_part,
	                     encrypted_part_len);
}

CK_RV
tk_p11r_C_EncryptFinal(CK_SESSION_HANDLE session, CK_BYTE_PTR last_encrypted_part,
                       CK_ULONG_PTR last_encrypted_part_len)
{
	return call_s_out(BP_C_EncryptFinal, session, last_encrypted_part, last_encrypted_part_len);
}

CK_RV
tk_p11r_C_DecryptInit(CK_SESSION_HANDLE session, CK_MECHANISM_PTR mechanism, CK_OBJECT_HANDLE key)
{
	return call_s_m_o(BP_C_DecryptInit, session, mechanism, key, true);
}

CK_RV
tk_p11r_C_Decrypt(CK_SESSION_HANDLE session, CK_BYTE_PTR encrypted_data,
                  CK_ULONG encrypted_data_len, CK_BYTE_PTR data, CK_ULONG_PTR data_len)
{
	return call_s_in_out(BP_C_Decrypt, session, encrypted_data, encrypted_data_len, data,
	                     data_len);
}

CK_RV
tk_p11r_C_DecryptUpdate(CK_SESSION_HANDLE session, CK_BYTE_PTR encrypted_part,
                        CK_ULONG encrypted_part_len, CK_BYTE_PTR part, CK_ULONG_PTR part_len)
{
	return call_s_in_out(BP_C_DecryptUpdate, session, encrypted_part, encrypted_part_len, part,
	                     part_len);
}

CK_RV
tk_p11r_C_DecryptFinal(CK_SESSION_HANDLE session, CK_BYTE_PTR last_part, CK_ULONG_PTR last_part_len)
{
	return call_s_out(BP_C_DecryptFinal, session, last_part, last_part_len);
}

CK_RV
tk_p11r_C_DigestInit(CK_SESSION_HANDLE session, CK_MECHANISM_PTR mechanism)
{
	return call_s_m_o(BP_C_DigestInit, session, mechanism, 0, false);
}

CK_RV
tk_p11r_C_Digest(CK_SESSION_HANDLE session, CK_BYTE_PTR data, CK_ULONG data_len, CK_BYTE_PTR digest,
                 CK_ULONG_PTR digest_len)
{
	return call_s_in_out(BP_C_Digest, session, data, data_len, digest, digest_len);
}

CK_RV
tk_p11r_C_DigestUpdate(CK_SESSION_HANDLE session, CK_BYTE_PTR part, CK_ULONG part_len)
{
	return call_s_in(BP_C_DigestUpdate, session, part, part_len);
}

CK_RV
tk_p11r_C_DigestKey(CK_SESSION_HANDLE session, CK_OBJECT_HANDLE key)
{
	struct rc c;
	struct bp_w w;
	CK_RV rv = obj_begin(&c, &w, session, key);

	if (rv == CKR_OBJECT_HANDLE_INVALID)
		return CKR_KEY_HANDLE_INVALID;
	if (rv != CKR_OK)
		return rv;
	rv = rc_call(&c, BP_C_DigestKey, &w);
	rc_end(&c);
	return rv;
}

CK_RV
tk_p11r_C_DigestFinal(CK_SESSION_HANDLE session, CK_BYTE_PTR digest, CK_ULONG_PTR digest_len)
{
	return call_s_out(BP_C_DigestFinal, session, digest, digest_len);
}

CK_RV
tk_p11r_C_SignInit(CK_SESSION_HANDLE session, CK_MECHANISM_PTR mechanism, CK_OBJECT_HANDLE key)
{
	return call_s_m_o(BP_C_SignInit, session, mechanism, key, true);
}

CK_RV
tk_p11r_C_Sign(CK_SESSION_HANDLE session, CK_BYTE_PTR data, CK_ULONG data_len,
               CK_BYTE_PTR signature, CK_ULONG_PTR signature_len)
{
	return call_s_in_out(BP_C_Sign, session, data, data_len, signature, signature_len);
}

CK_RV
tk_p11r_C_SignUpdate(CK_SESSION_HANDLE session, CK_BYTE_PTR part, CK_ULONG part_len)
{
	return call_s_in(BP_C_SignUpdate, session, part, part_len);
}

CK_RV
tk_p11r_C_SignFinal(CK_SESSION_HANDLE session, CK_BYTE_PTR signature, CK_ULONG_PTR signature_len)
{
	return call_s_out(BP_C_SignFinal, session, signature, signature_len);
}

CK_RV
tk_p11r_C_SignRecoverInit(CK_SESSION_HANDLE session, CK_MECHANISM_PTR mechanism,
                          CK_OBJECT_HANDLE key)
{
	(void)session;
	(void)mechanism;
	(void)key;
	CHECK_INIT();
	return CKR_FUNCTION_NOT_SUPPORTED;
}

CK_RV
tk_p11r_C_SignRecover(CK_SESSION_HANDLE session, CK_BYTE_PTR data, CK_ULONG data_len,
                      CK_BYTE_PTR signature, CK_ULONG_PTR signature_len)
{
	(void)session;
	(void)data;
	(void)data_len;
	(void)signature;
	(void)signature_len;
	CHECK_INIT();
	return CKR_FUNCTION_NOT_SUPPORTED;
}

CK_RV
tk_p11r_C_VerifyInit(CK_SESSION_HANDLE session, CK_MECHANISM_PTR mechanism, CK_OBJECT_HANDLE key)
{
	return call_s_m_o(BP_C_VerifyInit, session, mechanism, key, true);
}

CK_RV
tk_p11r_C_Verify(CK_SESSION_HANDLE session, CK_BYTE_PTR data, CK_ULONG data_len,
                 CK_BYTE_PTR signature, CK_ULONG signature_len)
{
	struct rc c;
	struct bp_w w;
	CK_RV rv;

	if ((data == NULL && data_len > 0) || (signature == NULL && signature_len > 0))
		return refused_here(BP_C_Verify, session, CKR_ARGUMENTS_BAD);
	if (data_len > BP_MAX_BYTES)
		return refused_here(BP_C_Verify, session, CKR_DATA_LEN_RANGE);
	if (signature_len > BP_MAX_BYTES)
		return refused_here(BP_C_Verify, session, CKR_SIGNATURE_LEN_RANGE);
	rv = sess_begin(&c, &w, session);
	if (rv != CKR_OK)
		return rv;
	bp_put_b(&w, data, data_len);
	bp_put_b(&w, signature, signature_len);
	rv = rc_call(&c, BP_C_Verify, &w);
	rc_end(&c);
	return rv;
}

CK_RV
tk_p11r_C_VerifyUpdate(CK_SESSION_HANDLE session, CK_BYTE_PTR part, CK_ULONG part_len)
{
	return call_s_in(BP_C_VerifyUpdate, session, part, part_len);
}

CK_RV
tk_p11r_C_VerifyFinal(CK_SESSION_HANDLE session, CK_BYTE_PTR signature, CK_ULONG signature_len)
{
	if (signature_len > BP_MAX_BYTES)
		return refused_here(BP_C_VerifyFinal, session, CKR_SIGNATURE_LEN_RANGE);
	return call_s_in(BP_C_VerifyFinal, session, signature, signature_len);
}

CK_RV
tk_p11r_C_WrapKey(CK_SESSION_HANDLE session, CK_MECHANISM_PTR mechanism,
                  CK_OBJECT_HANDLE wrapping_key, CK_OBJECT_HANDLE key, CK_BYTE_PTR wrapped_key,
                  CK_ULONG_PTR wrapped_key_len)
{
	struct rc c;
	struct bp_w w;
	CK_OBJECT_HANDLE bwrapping, bkey;
	CK_RV rv = sess_begin(&c, &w, session);

	if (rv != CKR_OK)
		return rv;
	if (mechanism == NULL || wrapped_key_len == NULL)
		rv = CKR_ARGUMENTS_BAD;
	else if (!obj_bid(wrapping_key, &bwrapping))
		rv = CKR_WRAPPING_KEY_HANDLE_INVALID;
	else if (!obj_bid(key, &bkey))
		rv = CKR_KEY_HANDLE_INVALID;
	else if (!put_mech(&w, mechanism))
		rv = CKR_MECHANISM_PARAM_INVALID;
	if (rv != CKR_OK) {
		bp_w_free(&w);
		rc_end(&c);
		return rv;
	}
	bp_put_u(&w, bwrapping);
	bp_put_u(&w, bkey);
	put_out(&w, wrapped_key, wrapped_key_len);
	c.out_query = wrapped_key == NULL;
	rv = get_out(&c, rc_call(&c, BP_C_WrapKey, &w), wrapped_key, wrapped_key_len);
	rc_end(&c);
	return rv;
}

CK_RV
tk_p11r_C_UnwrapKey(CK_SESSION_HANDLE session, CK_MECHANISM_PTR mechanism,
                    CK_OBJECT_HANDLE unwrapping_key, CK_BYTE_PTR wrapped_key,
                    CK_ULONG wrapped_key_len, CK_ATTRIBUTE_PTR templ, CK_ULONG attribute_count,
                    CK_OBJECT_HANDLE_PTR key)
{
	struct rc c;
	struct bp_w w;
	CK_OBJECT_HANDLE bunwrapping;
	uint32_t epoch;
	CK_RV rv = sess_begin(&c, &w, session);

	if (rv != CKR_OK)
		return rv;
	epoch = cur_epoch();
	if (mechanism == NULL || key == NULL || (wrapped_key == NULL && wrapped_key_len > 0))
		rv = CKR_ARGUMENTS_BAD;
	else if (wrapped_key_len > BP_MAX_BYTES)
		rv = CKR_WRAPPED_KEY_LEN_RANGE;
	else if (!obj_bid(unwrapping_key, &bunwrapping))
		rv = CKR_UNWRAPPING_KEY_HANDLE_INVALID;
	else if (!put_mech(&w, mechanism))
		rv = CKR_MECHANISM_PARAM_INVALID;
	if (rv == CKR_OK) {
		bp_put_u(&w, bunwrapping);
		bp_put_b(&w, wrapped_key, wrapped_key_len);
		rv = put_template(&w, templ, attribute_count);
	}
	if (rv != CKR_OK) {
		bp_w_free(&w);
		rc_end(&c);
		return rv;
	}
	rv = rc_call_handle(&c, BP_C_UnwrapKey, &w, epoch, key);
	rc_end(&c);
	return rv;
}

CK_RV
tk_p11r_C_GenerateKey(CK_SESSION_HANDLE session, CK_MECHANISM_PTR mechanism, CK_ATTRIBUTE_PTR templ,
                      CK_ULONG count, CK_OBJECT_HANDLE_PTR key)
{
	struct rc c;
	struct bp_w w;
	uint32_t epoch;
	CK_RV rv = sess_begin(&c, &w, session);

	if (rv != CKR_OK)
		return rv;
	if (mechanism == NULL || key == NULL) {
		bp_w_free(&w);
		rc_end(&c);
		return CKR_ARGUMENTS_BAD;
	}
	epoch = cur_epoch();
	if (!put_mech(&w, mechanism))
		rv = CKR_MECHANISM_PARAM_INVALID;
	if (rv == CKR_OK)
		rv = put_template(&w, templ, count);
	if (rv != CKR_OK) {
		bp_w_free(&w);
		rc_end(&c);
		return rv;
	}
	rv = rc_call_handle(&c, BP_C_GenerateKey, &w, epoch, key);
	rc_end(&c);
	return rv;
}

CK_RV
tk_p11r_C_GenerateKeyPair(CK_SESSION_HANDLE session, CK_MECHANISM_PTR mechanism,
                          CK_ATTRIBUTE_PTR public_key_template, CK_ULONG public_key_attribute_count,
                          CK_ATTRIBUTE_PTR private_key_template,
                          CK_ULONG private_key_attribute_count, CK_OBJECT_HANDLE_PTR public_key,
                          CK_OBJECT_HANDLE_PTR private_key)
{
	struct rc c;
	struct bp_w w;
	uint32_t epoch;
	CK_RV rv;

	if (mechanism == NULL || public_key == NULL || private_key == NULL)
		return initialized() ? CKR_ARGUMENTS_BAD : CKR_CRYPTOKI_NOT_INITIALIZED;
	rv = sess_begin(&c, &w, session);
	if (rv != CKR_OK)
		return rv;
	epoch = cur_epoch();
	if (!put_mech(&w, mechanism))
		rv = CKR_MECHANISM_PARAM_INVALID;
	if (rv == CKR_OK)
		rv = put_template(&w, public_key_template, public_key_attribute_count);
	if (rv == CKR_OK)
		rv = put_template(&w, private_key_template, private_key_attribute_count);
	if (rv != CKR_OK) {
		bp_w_free(&w);
		rc_end(&c);
		return rv;
	}
	rv = rc_call(&c, BP_C_GenerateKeyPair, &w);
	if (rv == CKR_OK) {
		CK_OBJECT_HANDLE pub = bp_get_u(c.r), priv = bp_get_u(c.r);
		if (!c.r->ok) {
			rv = rc_bad(&c);
		} else {
			*public_key = obj_cid(pub, epoch);
			*private_key = obj_cid(priv, epoch);
		}
	}
	rc_end(&c);
	return rv;
}

CK_RV
tk_p11r_C_DeriveKey(CK_SESSION_HANDLE session, CK_MECHANISM_PTR mechanism,
                    CK_OBJECT_HANDLE base_key, CK_ATTRIBUTE_PTR templ, CK_ULONG attribute_count,
                    CK_OBJECT_HANDLE_PTR key)
{
	struct rc c;
	struct bp_w w;
	CK_OBJECT_HANDLE bbase;
	uint32_t epoch;
	CK_RV rv;

	if (mechanism == NULL || key == NULL)
		return initialized() ? CKR_ARGUMENTS_BAD : CKR_CRYPTOKI_NOT_INITIALIZED;
	rv = sess_begin(&c, &w, session);
	if (rv != CKR_OK)
		return rv;
	epoch = cur_epoch();
	if (!obj_bid(base_key, &bbase))
		rv = CKR_KEY_HANDLE_INVALID;
	else if (!put_mech(&w, mechanism))
		rv = CKR_MECHANISM_PARAM_INVALID;
	if (rv == CKR_OK) {
		bp_put_u(&w, bbase);
		rv = put_template(&w, templ, attribute_count);
	}
	if (rv != CKR_OK) {
		bp_w_free(&w);
		rc_end(&c);
		return rv;
	}
	rv = rc_call_handle(&c, BP_C_DeriveKey, &w, epoch, key);
	rc_end(&c);
	return rv;
}

CK_RV
tk_p11r_C_SeedRandom(CK_SESSION_HANDLE session, CK_BYTE_PTR seed, CK_ULONG seed_len)
{
	return call_s_in(BP_C_SeedRandom, session, seed, seed_len);
}

CK_RV
tk_p11r_C_GenerateRandom(CK_SESSION_HANDLE session, CK_BYTE_PTR random_data, CK_ULONG random_len)
{
	CK_ULONG len = random_len;

	if (random_data == NULL && random_len > 0)
		return initialized() ? CKR_ARGUMENTS_BAD : CKR_CRYPTOKI_NOT_INITIALIZED;
	if (random_len > BP_MAX_BYTES)
		return initialized() ? CKR_DATA_LEN_RANGE : CKR_CRYPTOKI_NOT_INITIALIZED;
	return call_s_out(BP_C_GenerateRandom, session, random_data, &len);
}

CK_RV
tk_p11r_C_GetFunctionStatus(CK_SESSION_HANDLE session)
{
	return call_s(BP_C_GetFunctionStatus, session);
}

CK_RV
tk_p11r_C_CancelFunction(CK_SESSION_HANDLE session)
{
	return call_s(BP_C_CancelFunction, session);
}

CK_RV
tk_p11r_C_SessionCancel(CK_SESSION_HANDLE session, CK_FLAGS flags)
{
	struct rc c;
	struct bp_w w;
	CK_RV rv = sess_begin(&c, &w, session);

	if (rv != CKR_OK)
		return rv;
	bp_put_u(&w, flags);
	rv = rc_call(&c, BP_C_SessionCancel, &w);
	rc_end(&c);
	if (rv == CKR_OK) { /* what it ended is not active any more */
		struct rsess *s;
		pthread_mutex_lock(&R.lock);
		if ((s = sess_find_locked(session)) != NULL)
			for (int op = 0; op < OP_N; op++)
				if (flags & op_flag[op])
					s->ops[op].active = false;
		pthread_mutex_unlock(&R.lock);
	}
	return rv;
}

/* --- what broker mode does not carry ------------------------------------ */

/* Dual-function updates, key wrapping and the message-based functions:
 * the embedded module does not offer them either (its stubs answer
 * CKR_FUNCTION_NOT_SUPPORTED). */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-parameter"
#define P11R_UNSUPPORTED(name, params)                                                             \
	CK_RV tk_p11r_##name params                                                                \
	{                                                                                          \
		CHECK_INIT();                                                                      \
		return CKR_FUNCTION_NOT_SUPPORTED;                                                 \
	}
P11R_UNSUPPORTED(C_DigestEncryptUpdate,
                 (CK_SESSION_HANDLE session, CK_BYTE_PTR part, CK_ULONG part_len,
                  CK_BYTE_PTR encrypted_part, CK_ULONG_PTR encrypted_part_len))
P11R_UNSUPPORTED(C_DecryptDigestUpdate,
                 (CK_SESSION_HANDLE session, CK_BYTE_PTR encrypted_part,
                  CK_ULONG encrypted_part_len, CK_BYTE_PTR part, CK_ULONG_PTR part_len))
P11R_UNSUPPORTED(C_SignEncryptUpdate,
                 (CK_SESSION_HANDLE session, CK_BYTE_PTR part, CK_ULONG part_len,
                  CK_BYTE_PTR encrypted_part, CK_ULONG_PTR encrypted_part_len))
P11R_UNSUPPORTED(C_DecryptVerifyUpdate,
                 (CK_SESSION_HANDLE session, CK_BYTE_PTR encrypted_part,
                  CK_ULONG encrypted_part_len, CK_BYTE_PTR part, CK_ULONG_PTR part_len))
P11R_UNSUPPORTED(C_VerifyRecoverInit,
                 (CK_SESSION_HANDLE session, CK_MECHANISM_PTR mechanism, CK_OBJECT_HANDLE key))
P11R_UNSUPPORTED(C_VerifyRecover, (CK_SESSION_HANDLE session, CK_BYTE_PTR signature,
                                   CK_ULONG signature_len, CK_BYTE_PTR data, CK_ULONG_PTR data_len))
P11R_UNSUPPORTED(C_MessageEncryptInit,
                 (CK_SESSION_HANDLE session, CK_MECHANISM_PTR mechanism, CK_OBJECT_HANDLE key))
P11R_UNSUPPORTED(C_EncryptMessage,
                 (CK_SESSION_HANDLE session, CK_VOID_PTR parameter, CK_ULONG parameter_len,
                  CK_BYTE_PTR associated_data, CK_ULONG associated_data_len, CK_BYTE_PTR plaintext,
                  CK_ULONG plaintext_len, CK_BYTE_PTR ciphertext, CK_ULONG_PTR ciphertext_len))
P11R_UNSUPPORTED(C_EncryptMessageBegin,
                 (CK_SESSION_HANDLE session, CK_VOID_PTR parameter, CK_ULONG parameter_len,
                  CK_BYTE_PTR associated_data, CK_ULONG associated_data_len))
P11R_UNSUPPORTED(C_EncryptMessageNext,
                 (CK_SESSION_HANDLE session, CK_VOID_PTR parameter, CK_ULONG parameter_len,
                  CK_BYTE_PTR plaintext_part, CK_ULONG plaintext_part_len,
                  CK_BYTE_PTR ciphertext_part, CK_ULONG_PTR ciphertext_part_len, CK_FLAGS flags))
P11R_UNSUPPORTED(C_MessageEncryptFinal, (CK_SESSION_HANDLE session))
P11R_UNSUPPORTED(C_MessageDecryptInit,
                 (CK_SESSION_HANDLE session, CK_MECHANISM_PTR mechanism, CK_OBJECT_HANDLE key))
P11R_UNSUPPORTED(C_DecryptMessage,
                 (CK_SESSION_HANDLE session, CK_VOID_PTR parameter, CK_ULONG parameter_len,
                  CK_BYTE_PTR associated_data, CK_ULONG associated_data_len, CK_BYTE_PTR ciphertext,
                  CK_ULONG ciphertext_len, CK_BYTE_PTR plaintext, CK_ULONG_PTR plaintext_len))
P11R_UNSUPPORTED(C_DecryptMessageBegin,
                 (CK_SESSION_HANDLE session, CK_VOID_PTR parameter, CK_ULONG parameter_len,
                  CK_BYTE_PTR associated_data, CK_ULONG associated_data_len))
P11R_UNSUPPORTED(C_DecryptMessageNext,
                 (CK_SESSION_HANDLE session, CK_VOID_PTR parameter, CK_ULONG parameter_len,
                  CK_BYTE_PTR ciphertext_part, CK_ULONG ciphertext_part_len,
                  CK_BYTE_PTR plaintext_part, CK_ULONG_PTR plaintext_part_len, CK_FLAGS flags))
P11R_UNSUPPORTED(C_MessageDecryptFinal, (CK_SESSION_HANDLE session))
P11R_UNSUPPORTED(C_MessageSignInit,
                 (CK_SESSION_HANDLE session, CK_MECHANISM_PTR mechanism, CK_OBJECT_HANDLE key))
P11R_UNSUPPORTED(C_SignMessage, (CK_SESSION_HANDLE session, CK_VOID_PTR parameter,
                                 CK_ULONG parameter_len, CK_BYTE_PTR data, CK_ULONG data_len,
                                 CK_BYTE_PTR signature, CK_ULONG_PTR signature_len))
P11R_UNSUPPORTED(C_SignMessageBegin,
                 (CK_SESSION_HANDLE session, CK_VOID_PTR parameter, CK_ULONG parameter_len))
P11R_UNSUPPORTED(C_SignMessageNext, (CK_SESSION_HANDLE session, CK_VOID_PTR parameter,
                                     CK_ULONG parameter_len, CK_BYTE_PTR data, CK_ULONG data_len,
                                     CK_BYTE_PTR signature, CK_ULONG_PTR signature_len))
P11R_UNSUPPORTED(C_MessageSignFinal, (CK_SESSION_HANDLE session))
P11R_UNSUPPORTED(C_MessageVerifyInit,
                 (CK_SESSION_HANDLE session, CK_MECHANISM_PTR mechanism, CK_OBJECT_HANDLE key))
P11R_UNSUPPORTED(C_VerifyMessage, (CK_SESSION_HANDLE session, CK_VOID_PTR parameter,
                                   CK_ULONG parameter_len, CK_BYTE_PTR data, CK_ULONG data_len,
                                   CK_BYTE_PTR signature, CK_ULONG signature_len))
P11R_UNSUPPORTED(C_VerifyMessageBegin,
                 (CK_SESSION_HANDLE session, CK_VOID_PTR parameter, CK_ULONG parameter_len))
P11R_UNSUPPORTED(C_VerifyMessageNext, (CK_SESSION_HANDLE session, CK_VOID_PTR parameter,
                                       CK_ULONG parameter_len, CK_BYTE_PTR data, CK_ULONG data_len,
                                       CK_BYTE_PTR signature, CK_ULONG signature_len))
P11R_UNSUPPORTED(C_MessageVerifyFinal, (CK_SESSION_HANDLE session))
#pragma GCC diagnostic pop
