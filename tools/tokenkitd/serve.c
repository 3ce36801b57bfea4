/* tokenkitd: connections, clients and the handler of every function.
 *
 * The broker runs the embedded module (one PKCS#11 application, as far as
 * the module knows) for every client. What PKCS#11 keeps per application
 * is therefore kept here, per client:
 *  - sessions: a client names only its own (else CKR_SESSION_HANDLE_INVALID);
 *    they are closed when its last connection goes.
 *  - logins: a client is logged in on a slot only after its own C_Login
 *    succeeded. While another client keeps the token logged in, this one
 *    sees its sessions public, does not find private objects and gets
 *    CKR_USER_NOT_LOGGED_IN for a private key. Its C_Login is verified on
 *    the card all the same (tk_p11_login_verify); its C_Logout ends the
 *    module's login only when no other client is logged in there.
 *  - slot events: each client's own view of the slots (C_WaitForSlotEvent).
 *  - consent given for one run.
 * Calls that use a card (key operations, login) wait in the card's queue,
 * served in arrival order, so every client gets its turn. */
#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <tokenkit/log.h>
#include <tokenkit/mem.h>

#include "bproto.h"
#include "bring.h"
#include "broker.h"
#include "clock.h"
#include "p11.h"

struct broker_conf g_conf; /* main.c fills it in before the first connection */

#define MAX_LOGINS 16
#define MAX_VIEWS 64
#define MAX_ONCE 32
#define MAX_REJECTED 32
#define ONCE_LEN 160 /* token serial "/" key id (hex) */

struct login {
	CK_SLOT_ID slot;
	CK_USER_TYPE user;
};

struct view {
	CK_SLOT_ID slot;
	CK_FLAGS flags; /* CKF_TOKEN_PRESENT of the slot, or ~0 once gone */
};

struct client {
	uint8_t id[BP_ID_LEN];
	pid_t pid;
	uid_t uid;
	char exe[PATH_MAX];
	uint64_t serial;
	int conns;
	CK_SESSION_HANDLE *sess;
	size_t nsess, sess_cap;
	struct login logins[MAX_LOGINS];
	size_t nlogins;
	struct view views[MAX_VIEWS];
	size_t nviews;
	char once[MAX_ONCE][ONCE_LEN];
	size_t nonce;
	/* sessions whose signing operation was refused by consent: C_SignInit
	 * answered CKR_OK (it may not answer CKR_FUNCTION_REJECTED), and their
	 * C_Sign / C_SignFinal answers CKR_FUNCTION_REJECTED at once */
	CK_SESSION_HANDLE rejected[MAX_REJECTED];
	size_t nrejected;
	struct client *next;
};

/* A thread waiting for its turn: woken alone when it comes (the others
 * sleep on), in the order of their tickets. */
struct waiter {
	uint64_t ticket;
	pthread_cond_t cv;
	struct waiter *next;
};

struct queue {
	CK_SLOT_ID slot;
	uint64_t next, serving;
	struct waiter *first, *last; /* (tickets ascending) */
	struct queue *link;
};

static struct {
	pthread_mutex_t lock; /* clients, queues */
	struct client *clients;
	struct queue *queues;
	uint64_t serial;
} S = {.lock = PTHREAD_MUTEX_INITIALIZER};

void
broker_serve_init(void)
{
}

/* --- clients ------------------------------------------------------------ */

static struct client *
client_get(const uint8_t id[BP_ID_LEN], pid_t pid, uid_t uid)
{
	struct client *c;
	char link[64];
	ssize_t n;

	pthread_mutex_lock(&S.lock);
	for (c = S.clients; c != NULL; c = c->next)
		if (c->pid == pid && c->uid == uid && memcmp(c->id, id, BP_ID_LEN) == 0)
			break;
	if (c == NULL && (c = calloc(1, sizeof(*c))) != NULL) {
		memcpy(c->id, id, BP_ID_LEN);
		c->pid = pid;
		c->uid = uid;
		c->serial = ++S.serial;
		snprintf(link, sizeof(link), "/proc/%ld/exe", (long)pid);
		n = readlink(link, c->exe, sizeof(c->exe) - 1);
		c->exe[n > 0 ? n : 0] = '\0';
		if (n <= 0)
			snprintf(c->exe, sizeof(c->exe), "(pid %ld)", (long)pid);
		c->next = S.clients;
		S.clients = c;
		tk_log_info("tokenkitd: client %s (pid %ld, uid %u)", c->exe, (long)pid,
		            (unsigned)uid);
	}
	if (c != NULL)
		c->conns++;
	pthread_mutex_unlock(&S.lock);
	return c;
}

static bool
owns_locked(const struct client *c, CK_SESSION_HANDLE h)
{
	for (size_t i = 0; i < c->nsess; i++)
		if (c->sess[i] == h)
			return true;
	return false;
}

static bool
owns(struct client *c, CK_SESSION_HANDLE h)
{
	bool r;

	pthread_mutex_lock(&S.lock);
	r = owns_locked(c, h);
	pthread_mutex_unlock(&S.lock);
	return r;
}

static struct login *
login_find_locked(struct client *c, CK_SLOT_ID slot)
{
	for (size_t i = 0; i < c->nlogins; i++)
		if (c->logins[i].slot == slot)
			return &c->logins[i];
	return NULL;
}

static void
login_drop_locked(struct client *c, CK_SLOT_ID slot)
{
	for (size_t i = 0; i < c->nlogins; i++)
		if (c->logins[i].slot == slot) {
			c->logins[i] = c->logins[--c->nlogins];
			return;
		}
}

/* Another client logged in on slot. */
static bool
others_logged_in_locked(const struct client *me, CK_SLOT_ID slot)
{
	for (struct client *c = S.clients; c != NULL; c = c->next)
		if (c != me)
			for (size_t i = 0; i < c->nlogins; i++)
				if (c->logins[i].slot == slot)
					return true;
	return false;
}

static CK_RV sess_slot(CK_SESSION_HANDLE h, CK_SLOT_ID *slot, CK_STATE *state);

static void
client_put(struct client *c)
{
	CK_SESSION_HANDLE *sess = NULL;
	CK_SLOT_ID logout[MAX_LOGINS];
	size_t n = 0, nlogout = 0;
	struct client **pp;

	pthread_mutex_lock(&S.lock);
	if (--c->conns > 0) {
		pthread_mutex_unlock(&S.lock);
		return;
	}
	for (pp = &S.clients; *pp != NULL; pp = &(*pp)->next)
		if (*pp == c) {
			*pp = c->next;
			break;
		}
	sess = c->sess;
	n = c->nsess;
	/* its login ends with it: the token is logged out unless another
	 * client is logged in there (the module would keep the login while
	 * anybody's sessions are open) */
	for (size_t k = 0; k < c->nlogins; k++)
		if (!others_logged_in_locked(c, c->logins[k].slot))
			logout[nlogout++] = c->logins[k].slot;
	c->nlogins = 0;
	pthread_mutex_unlock(&S.lock);
	for (size_t k = 0; k < nlogout; k++) {
		CK_SLOT_ID s;
		for (size_t i = 0; i < n; i++)
			if (sess_slot(sess[i], &s, NULL) == CKR_OK && s == logout[k]) {
				(void)C_Logout(sess[i]);
				break;
			}
	}
	/* its sessions end with it */
	for (size_t i = 0; i < n; i++)
		(void)C_CloseSession(sess[i]);
	tk_log_info("tokenkitd: client %s (pid %ld) gone, %zu session(s) closed", c->exe,
	            (long)c->pid, n);
	free(sess);
	tk_wipe(c, sizeof(*c));
	free(c);
}

/* --- slots -------------------------------------------------------------- */

static CK_RV
sess_slot(CK_SESSION_HANDLE h, CK_SLOT_ID *slot, CK_STATE *state)
{
	CK_SESSION_INFO si;
	CK_RV rv = C_GetSessionInfo(h, &si);

	if (rv == CKR_OK) {
		*slot = si.slotID;
		if (state != NULL)
			*state = si.state;
	}
	return rv;
}

static bool
user_state(CK_STATE st)
{
	return st == CKS_RO_USER_FUNCTIONS || st == CKS_RW_USER_FUNCTIONS ||
	       st == CKS_RW_SO_FUNCTIONS;
}

/* The module is logged in on h's token by someone, and this client is not:
 * (and the login it thought it had is forgotten when the module has none). */
static bool
foreign_login(struct client *c, CK_SESSION_HANDLE h)
{
	CK_SLOT_ID slot;
	CK_STATE st;
	bool mine, foreign;

	if (sess_slot(h, &slot, &st) != CKR_OK)
		return false;
	pthread_mutex_lock(&S.lock);
	mine = login_find_locked(c, slot) != NULL;
	if (mine && !user_state(st))
		login_drop_locked(c, slot), mine = false; /* the card lost it */
	foreign = !mine && user_state(st);
	pthread_mutex_unlock(&S.lock);
	return foreign;
}

static bool
obj_private(CK_SESSION_HANDLE h, CK_OBJECT_HANDLE o)
{
	CK_BBOOL priv = CK_FALSE;
	CK_ATTRIBUTE a = {CKA_PRIVATE, &priv, sizeof(priv)};

	return C_GetAttributeValue(h, o, &a, 1) == CKR_OK && priv == CK_TRUE;
}

/* What this client may not see: a private object while the login is
 * another client's. */
static bool
hidden(struct client *c, CK_SESSION_HANDLE h, CK_OBJECT_HANDLE o)
{
	return foreign_login(c, h) && obj_private(h, o);
}

/* --- the card queue ----------------------------------------------------- */

static bool
hw_slot(CK_SLOT_ID slot)
{
	CK_SLOT_INFO si;

	return C_GetSlotInfo(slot, &si) == CKR_OK && (si.flags & CKF_HW_SLOT);
}

struct queue *
broker_queue_enter(CK_SLOT_ID slot)
{
	struct queue *q;
	uint64_t ticket;

	pthread_mutex_lock(&S.lock);
	for (q = S.queues; q != NULL && q->slot != slot; q = q->link)
		;
	if (q == NULL && (q = calloc(1, sizeof(*q))) != NULL) {
		q->slot = slot;
		q->link = S.queues;
		S.queues = q;
	}
	if (q != NULL && (ticket = q->next++) != q->serving) {
		struct waiter w = {.ticket = ticket};
		pthread_cond_init(&w.cv, NULL);
		if (q->last != NULL)
			q->last->next = &w;
		else
			q->first = &w;
		q->last = &w;
		while (q->serving != ticket)
			pthread_cond_wait(&w.cv, &S.lock);
		/* (the first: the turns come in ticket order) */
		q->first = w.next;
		if (q->first == NULL)
			q->last = NULL;
		pthread_cond_destroy(&w.cv);
	}
	pthread_mutex_unlock(&S.lock);
	return q;
}

static struct queue *
queue_enter(CK_SESSION_HANDLE h)
{
	CK_SLOT_ID slot;

	if (sess_slot(h, &slot, NULL) != CKR_OK || !hw_slot(slot))
		return NULL; /* a software token runs in parallel */
	return broker_queue_enter(slot);
}

void
broker_queue_leave(struct queue *q)
{
	if (q == NULL)
		return;
	pthread_mutex_lock(&S.lock);
	q->serving++;
	if (q->first != NULL && q->first->ticket == q->serving)
		pthread_cond_signal(&q->first->cv);
	pthread_mutex_unlock(&S.lock);
}

/* --- argument helpers --------------------------------------------------- */

/* An output buffer [present, capacity] -> a buffer of that size. */
struct outbuf {
	bool present;
	CK_ULONG cap, len;
	uint8_t *buf;
};

static bool
get_out(struct bp_r *r, struct outbuf *o)
{
	memset(o, 0, sizeof(*o));
	o->present = bp_get_u(r) != 0;
	o->cap = bp_get_u(r);
	if (!r->ok || o->cap > BP_MAX_BYTES)
		return false;
	o->len = o->cap;
	if (o->present && (o->buf = malloc(o->cap > 0 ? o->cap : 1)) == NULL)
		return false;
	return true;
}

static void
put_outbuf(struct bp_w *w, CK_RV rv, struct outbuf *o)
{
	if (rv == CKR_OK || rv == CKR_BUFFER_TOO_SMALL) {
		bp_put_u(w, o->len);
		if (rv == CKR_OK && o->present && o->len <= o->cap)
			bp_put_b(w, o->buf, o->len);
		else
			bp_put_null(w);
	}
	tk_freezero(o->buf, o->cap); /* decrypted data */
	o->buf = NULL;
}

/* --- consent ------------------------------------------------------------ */

void
broker_hex(const uint8_t *p, size_t n, char *out, size_t cap)
{
	static const char d[] = "0123456789abcdef";
	size_t i;

	for (i = 0; i < n && 2 * i + 2 < cap; i++) {
		out[2 * i] = d[p[i] >> 4];
		out[2 * i + 1] = d[p[i] & 15];
	}
	out[2 * i] = '\0';
}

void
broker_trim(char *dst, const CK_UTF8CHAR *src, size_t n)
{
	memcpy(dst, src, n);
	dst[n] = '\0';
	while (n > 0 && dst[n - 1] == ' ')
		dst[--n] = '\0';
}

/* Answers not written yet. A client sends a pipelined init and the call
 * after it in one write (remote.c); the init's answer waits for the call's,
 * and both go in one write: one wakeup of the client instead of two. */
struct wq {
	uint8_t *buf;
	size_t len;
	struct bp_rbuf *rb; /* the connection's (its ring, if any) */
};

#define WQ_MAX (64u * 1024u)

/* Queue the answer out (consumed) when more is to come, else write what is
 * queued and out, in one write when memory allows. 0, or -1: the
 * connection failed. */
static int
wq_put(int fd, struct wq *q, uint8_t *out, size_t len, bool more)
{
	int64_t dl = tk_now_ms() + BROKER_WRITE_MS;
	int rc = 0;

	if (q->buf != NULL) {
		uint8_t *both = malloc(q->len + len);

		if (both != NULL) {
			memcpy(both, q->buf, q->len);
			memcpy(both + q->len, out, len);
			tk_freezero(out, len);
			out = both;
			len += q->len;
		} else {
			rc = bp_send(fd, q->rb, q->buf, q->len, dl);
		}
		/* (answers may hold plaintext) */
		tk_freezero(q->buf, q->len);
		q->buf = NULL;
		q->len = 0;
	}
	if (rc == 0 && more && len <= WQ_MAX) {
		q->buf = out;
		q->len = len;
		return 0;
	}
	if (rc == 0)
		rc = bp_send(fd, q->rb, out, len, dl);
	tk_freezero(out, len);
	return rc;
}

/* A hello's answer: the rings' capacity when the client asks for shared
 * memory and an area could be made (rb then uses it: *memfd goes with the
 * answer), else 0. */
static void
shm_offer(struct bp_w *w, struct bp_rbuf *rb, uint64_t feats, int *memfd)
{
	struct bp_ring *ring = NULL;

	if ((feats & BP_FEAT_SHM) != 0 && rb->ring == NULL && bp_shm_wanted() &&
	    (ring = bp_ring_new(memfd)) == NULL)
		tk_log_warn("tokenkitd: no shared memory for a connection (%s): its socket "
		            "carries its messages",
		            strerror(errno));
	bp_put_u(w, ring != NULL ? bp_ring_cap(ring) : 0);
	rb->ring = ring;
}

/* The call this connection's thread is answering, for the "still working"
 * answers sent from inside it while it waits on a person (bproto.h). */
static _Thread_local struct {
	int fd;
	uint64_t id;
	bool still; /* the client takes them */
	struct wq *q;
} t_call = {-1, 0, false, NULL};

static void
still_working(void)
{
	struct bp_w w;
	uint8_t *out = NULL;
	size_t len = 0;

	if (!t_call.still || t_call.fd < 0)
		return;
	bp_w_init(&w);
	/* after the answers queued before it; (a client that does not read
	 * it fails the real answer's write) */
	if (bp_encode_response(t_call.id, BP_RV_STILL, &w, &out, &len))
		(void)wq_put(t_call.fd, t_call.q, out, len, false);
}

/* Before a private key is used: this program's consent. */
static CK_RV
consent(struct client *c, CK_SESSION_HANDLE h, CK_OBJECT_HANDLE key)
{
	CK_OBJECT_CLASS cls = 0;
	uint8_t id[64], label[65];
	CK_ATTRIBUTE a[3] = {{CKA_CLASS, &cls, sizeof(cls)},
	                     {CKA_ID, id, sizeof(id)},
	                     {CKA_LABEL, label, sizeof(label) - 1}};
	CK_TOKEN_INFO ti;
	CK_SLOT_ID slot;
	char serial[17], tlabel[33], idhex[129], once[ONCE_LEN];
	struct consent_key k;
	bool allowed_once = false;
	CK_RV rv;

	if (!g_conf.consent)
		return CKR_OK;
	if (C_GetAttributeValue(h, key, &a[0], 1) != CKR_OK || cls != CKO_PRIVATE_KEY)
		return CKR_OK; /* the module answers for a bad handle */
	if (C_GetAttributeValue(h, key, &a[1], 1) != CKR_OK)
		a[1].ulValueLen = 0;
	if (C_GetAttributeValue(h, key, &a[2], 1) != CKR_OK)
		a[2].ulValueLen = 0;
	label[a[2].ulValueLen < sizeof(label) ? a[2].ulValueLen : 0] = '\0';
	if (sess_slot(h, &slot, NULL) != CKR_OK || C_GetTokenInfo(slot, &ti) != CKR_OK)
		return CKR_OK;
	broker_trim(serial, ti.serialNumber, sizeof(ti.serialNumber));
	broker_trim(tlabel, ti.label, sizeof(ti.label));
	broker_hex(id, a[1].ulValueLen, idhex, sizeof(idhex));
	snprintf(once, sizeof(once), "%s/%s", serial, idhex);
	pthread_mutex_lock(&S.lock);
	for (size_t i = 0; i < c->nonce; i++)
		if (strcmp(c->once[i], once) == 0)
			allowed_once = true;
	pthread_mutex_unlock(&S.lock);
	if (allowed_once)
		return CKR_OK;
	k = (struct consent_key){.exe = c->exe,
	                         .uid = c->uid,
	                         .pid = c->pid,
	                         .token_serial = serial,
	                         .token_label = tlabel,
	                         .key_id = idhex,
	                         .key_label = (const char *)label,
	                         .still = still_working};
	rv = broker_consent_check(&k, &allowed_once);
	if (rv == CKR_OK && allowed_once) {
		pthread_mutex_lock(&S.lock);
		if (c->nonce < MAX_ONCE)
			snprintf(c->once[c->nonce++], ONCE_LEN, "%s", once);
		pthread_mutex_unlock(&S.lock);
	}
	return rv;
}

/* --- slot events -------------------------------------------------------- */

/* This client's next slot event, from its own view of the slots. */
static CK_RV
slot_event(struct client *c, CK_SLOT_ID *out)
{
	CK_SLOT_ID ids[MAX_VIEWS];
	CK_ULONG n = MAX_VIEWS;
	CK_SLOT_INFO si;
	CK_RV rv = C_GetSlotList(CK_FALSE, ids, &n);

	if (rv != CKR_OK)
		return rv;
	pthread_mutex_lock(&S.lock);
	/* a slot that changed, or a new one */
	for (CK_ULONG i = 0; i < n; i++) {
		struct view *v = NULL;
		CK_FLAGS f;
		pthread_mutex_unlock(&S.lock);
		f = C_GetSlotInfo(ids[i], &si) == CKR_OK ? si.flags & CKF_TOKEN_PRESENT : ~0UL;
		pthread_mutex_lock(&S.lock);
		for (size_t k = 0; k < c->nviews; k++)
			if (c->views[k].slot == ids[i])
				v = &c->views[k];
		if (v == NULL && c->nviews < MAX_VIEWS) {
			v = &c->views[c->nviews++];
			v->slot = ids[i];
			v->flags = f;
			/* new since the client came: an event */
			pthread_mutex_unlock(&S.lock);
			*out = ids[i];
			return CKR_OK;
		}
		if (v != NULL && v->flags != f) {
			v->flags = f;
			pthread_mutex_unlock(&S.lock);
			*out = ids[i];
			return CKR_OK;
		}
	}
	pthread_mutex_unlock(&S.lock);
	return CKR_NO_EVENT;
}

/* The slots as the client first sees them (no events for them). */
static void
views_init(struct client *c)
{
	CK_SLOT_ID ids[MAX_VIEWS];
	CK_ULONG n = MAX_VIEWS;
	CK_SLOT_INFO si;

	if (C_GetSlotList(CK_FALSE, ids, &n) != CKR_OK)
		return;
	for (CK_ULONG i = 0; i < n && i < MAX_VIEWS; i++) {
		CK_FLAGS f =
		        C_GetSlotInfo(ids[i], &si) == CKR_OK ? si.flags & CKF_TOKEN_PRESENT : ~0UL;
		pthread_mutex_lock(&S.lock);
		bool have = false;
		for (size_t k = 0; k < c->nviews; k++)
			have = have || c->views[k].slot == ids[i];
		if (!have && c->nviews < MAX_VIEWS)
			c->views[c->nviews++] = (struct view){ids[i], f};
		pthread_mutex_unlock(&S.lock);
	}
}

/* --- consent refusals of signing operations ------------------------------ */

static bool
rejected_take(struct client *c, CK_SESSION_HANDLE h, bool take)
{
	bool found = false;

	pthread_mutex_lock(&S.lock);
	for (size_t i = 0; i < c->nrejected && !found; i++)
		if (c->rejected[i] == h) {
			found = true;
			if (take)
				c->rejected[i] = c->rejected[--c->nrejected];
		}
	pthread_mutex_unlock(&S.lock);
	return found;
}

static CK_RV
rejected_add(struct client *c, CK_SESSION_HANDLE h)
{
	CK_RV rv = CKR_OK;

	pthread_mutex_lock(&S.lock);
	if (c->nrejected < MAX_REJECTED)
		c->rejected[c->nrejected++] = h;
	else
		rv = CKR_HOST_MEMORY;
	pthread_mutex_unlock(&S.lock);
	return rv;
}

/* --- attribute values ---------------------------------------------------- */

/* A C_GetAttributeValue whose buffers add up to more than one answer can
 * carry (a client may offer up to BP_MAX_BYTES for each of hundreds of
 * attributes: hundreds of MiB) is asked for its values' sizes first, and
 * each buffer is made no larger than its value. What is held is then
 * bounded by the values themselves, at most an answer's worth. */
#define ATTR_BUDGET BP_MAX_MSG
/* Fetches after a fresh size query when a value changed in between (only
 * another session's C_SetAttributeValue can do that). */
#define ATTR_TRIES 3

static void
attrs_free(CK_ATTRIBUTE *t, CK_ULONG n)
{
	for (CK_ULONG i = 0; i < n; i++) {
		free(t[i].pValue); /* (values a client may read: not secret here) */
		t[i].pValue = NULL;
	}
}

/* Give t[i] a buffer of give[i] bytes, none for CK_UNAVAILABLE_INFORMATION
 * (a length query). */
static CK_RV
attrs_alloc(CK_ATTRIBUTE *t, const CK_ULONG *give, CK_ULONG n)
{
	for (CK_ULONG i = 0; i < n; i++) {
		t[i].pValue = NULL;
		t[i].ulValueLen = 0;
		if (give[i] == CK_UNAVAILABLE_INFORMATION)
			continue;
		t[i].ulValueLen = give[i];
		if ((t[i].pValue = malloc(give[i] ? give[i] : 1)) == NULL) {
			attrs_free(t, n);
			return CKR_HOST_MEMORY;
		}
	}
	return CKR_OK;
}

/* C_GetAttributeValue with the buffers a client offered, want[i] bytes for
 * t[i] (CK_UNAVAILABLE_INFORMATION: its length only); give[] is scratch.
 * On return t[i].pValue holds the values (attrs_free). */
static CK_RV
get_attrs(CK_SESSION_HANDLE h, CK_OBJECT_HANDLE obj, CK_ATTRIBUTE *t, const CK_ULONG *want,
          CK_ULONG *give, CK_ULONG n)
{
	uint64_t total = 0;
	CK_RV rv;

	for (CK_ULONG i = 0; i < n; i++)
		total += want[i] == CK_UNAVAILABLE_INFORMATION ? 0 : want[i];
	if (total <= ATTR_BUDGET) {
		if ((rv = attrs_alloc(t, want, n)) != CKR_OK)
			return rv;
		return C_GetAttributeValue(h, obj, t, n);
	}
	for (int tries = 0; tries < ATTR_TRIES; tries++) {
		bool changed = false, small[BP_MAX_ITEMS];

		/* the sizes; then a buffer as large as its value. A buffer the
		 * client offered that its value does not fit gets none: its
		 * length is read again, and the answer for it is
		 * CK_UNAVAILABLE_INFORMATION with CKR_BUFFER_TOO_SMALL (so
		 * too-small buffers never count against what an answer
		 * carries) */
		for (CK_ULONG i = 0; i < n; i++) {
			t[i].pValue = NULL;
			t[i].ulValueLen = 0;
		}
		rv = C_GetAttributeValue(h, obj, t, n);
		if (rv != CKR_OK && rv != CKR_ATTRIBUTE_SENSITIVE &&
		    rv != CKR_ATTRIBUTE_TYPE_INVALID)
			return rv;
		total = 0;
		for (CK_ULONG i = 0; i < n; i++) {
			give[i] = want[i];
			small[i] = want[i] != CK_UNAVAILABLE_INFORMATION &&
			           t[i].ulValueLen != CK_UNAVAILABLE_INFORMATION &&
			           t[i].ulValueLen > want[i];
			if (small[i])
				give[i] = CK_UNAVAILABLE_INFORMATION;
			else if (want[i] != CK_UNAVAILABLE_INFORMATION &&
			         (t[i].ulValueLen == CK_UNAVAILABLE_INFORMATION ||
			          t[i].ulValueLen < want[i]))
				give[i] = t[i].ulValueLen;
			total += give[i] == CK_UNAVAILABLE_INFORMATION ? 0 : give[i];
		}
		if (total > ATTR_BUDGET)
			return CKR_HOST_MEMORY; /* no answer could carry these values */
		if ((rv = attrs_alloc(t, give, n)) != CKR_OK)
			return rv;
		rv = C_GetAttributeValue(h, obj, t, n);
		/* A value that changed since its size was read: unreadable then
		 * and readable now (no buffer was given), or larger now than the
		 * buffer given while the client's was larger still. */
		for (CK_ULONG i = 0; i < n; i++) {
			if (small[i]) {
				/* (shrunk to fit, or unreadable, since: read
				 * again) */
				if (t[i].ulValueLen == CK_UNAVAILABLE_INFORMATION ||
				    t[i].ulValueLen <= want[i])
					changed = true;
				t[i].ulValueLen = CK_UNAVAILABLE_INFORMATION;
				if (rv == CKR_OK)
					rv = CKR_BUFFER_TOO_SMALL;
				continue;
			}
			if (give[i] == want[i])
				continue;
			if (give[i] == CK_UNAVAILABLE_INFORMATION
			            ? t[i].ulValueLen != CK_UNAVAILABLE_INFORMATION
			            : t[i].ulValueLen == CK_UNAVAILABLE_INFORMATION &&
			                      rv == CKR_BUFFER_TOO_SMALL)
				changed = true;
		}
		if (!changed)
			return rv;
		attrs_free(t, n);
	}
	return CKR_FUNCTION_FAILED; /* the values change faster than they are read */
}

/* --- the handlers ------------------------------------------------------- */

/* One request: its arguments in r, its results into w; the CK_RV. false
 * from *bad: the arguments did not parse (the connection closes). */
static CK_RV
handle(struct client *c, uint32_t fn, struct bp_r *r, struct bp_w *w, bool *bad)
{
	CK_SESSION_HANDLE h = 0;
	CK_MECHANISM mech;
	union bp_mparam mp;
	CK_ATTRIBUTE *t = NULL, *t2 = NULL;
	CK_ULONG n = 0, n2 = 0;
	struct outbuf o;
	struct queue *q = NULL;
	uint8_t *in, *in2;
	size_t in_len, in2_len;
	CK_RV rv = CKR_FUNCTION_NOT_SUPPORTED;

	*bad = false;
	/* every session function names the session first */
	if (bp_fn_has_session(fn)) {
		h = bp_get_u(r);
		if (!r->ok)
			goto bad;
		if (!owns(c, h))
			return CKR_SESSION_HANDLE_INVALID;
	}

	switch (fn) {
	case BP_C_GetSlotList: {
		CK_SLOT_ID ids[BP_MAX_ITEMS];
		CK_ULONG cnt = BP_MAX_ITEMS;
		struct bp_w l;
		CK_BBOOL present = bp_get_u(r) ? CK_TRUE : CK_FALSE;
		if (!bp_r_done(r))
			goto bad;
		rv = C_GetSlotList(present, ids, &cnt);
		if (rv == CKR_OK) {
			bp_w_init(&l);
			for (CK_ULONG i = 0; i < cnt; i++)
				bp_put_u(&l, ids[i]);
			bp_put_sub(w, &l);
		}
		return rv;
	}
	case BP_C_GetSlotInfo: {
		CK_SLOT_INFO si;
		CK_SLOT_ID s = bp_get_u(r);
		if (!bp_r_done(r))
			goto bad;
		rv = C_GetSlotInfo(s, &si);
		if (rv == CKR_OK)
			bp_put_b(w, &si, sizeof(si));
		return rv;
	}
	case BP_C_GetTokenInfo: {
		CK_TOKEN_INFO ti;
		CK_SLOT_ID s = bp_get_u(r);
		if (!bp_r_done(r))
			goto bad;
		rv = C_GetTokenInfo(s, &ti);
		if (rv == CKR_OK)
			bp_put_b(w, &ti, sizeof(ti));
		return rv;
	}
	case BP_C_GetMechanismList: {
		CK_MECHANISM_TYPE m[BP_MAX_ITEMS];
		CK_ULONG cnt = BP_MAX_ITEMS;
		struct bp_w l;
		CK_SLOT_ID s = bp_get_u(r);
		if (!bp_r_done(r))
			goto bad;
		rv = C_GetMechanismList(s, m, &cnt);
		if (rv == CKR_OK) {
			bp_w_init(&l);
			for (CK_ULONG i = 0; i < cnt; i++)
				bp_put_u(&l, m[i]);
			bp_put_sub(w, &l);
		}
		return rv;
	}
	case BP_C_GetMechanismInfo: {
		CK_MECHANISM_INFO mi;
		CK_SLOT_ID s = bp_get_u(r);
		CK_MECHANISM_TYPE type = bp_get_u(r);
		if (!bp_r_done(r))
			goto bad;
		rv = C_GetMechanismInfo(s, type, &mi);
		if (rv == CKR_OK)
			bp_put_b(w, &mi, sizeof(mi));
		return rv;
	}
	case BP_C_WaitForSlotEvent: {
		CK_SLOT_ID s;
		if (!bp_r_done(r))
			goto bad;
		rv = slot_event(c, &s);
		if (rv == CKR_OK)
			bp_put_u(w, s);
		return rv;
	}
	case BP_C_OpenSession: {
		CK_SLOT_ID s = bp_get_u(r);
		CK_FLAGS flags = bp_get_u(r);
		CK_TOKEN_INFO ti;
		uint8_t ident[64];
		if (!bp_r_done(r))
			goto bad;
		rv = C_GetTokenInfo(s, &ti);
		if (rv == CKR_OK)
			rv = C_OpenSession(s, flags, NULL, NULL, &h);
		if (rv != CKR_OK)
			return rv;
		pthread_mutex_lock(&S.lock);
		if (c->nsess == c->sess_cap) {
			size_t cap = c->sess_cap ? c->sess_cap * 2 : 8;
			CK_SESSION_HANDLE *ns = realloc(c->sess, cap * sizeof(*ns));
			if (ns != NULL) {
				c->sess = ns;
				c->sess_cap = cap;
			}
		}
		if (c->nsess < c->sess_cap)
			c->sess[c->nsess++] = h;
		else
			rv = CKR_HOST_MEMORY;
		pthread_mutex_unlock(&S.lock);
		if (rv != CKR_OK) {
			(void)C_CloseSession(h);
			return rv;
		}
		memcpy(ident, ti.label, 32);
		memcpy(ident + 32, ti.model, 16);
		memcpy(ident + 48, ti.serialNumber, 16);
		bp_put_u(w, h);
		bp_put_b(w, ident, sizeof(ident));
		return CKR_OK;
	}
	case BP_C_CloseSession:
		if (!bp_r_done(r))
			goto bad;
		rv = C_CloseSession(h);
		(void)rejected_take(c, h, true);
		pthread_mutex_lock(&S.lock);
		for (size_t i = 0; i < c->nsess; i++)
			if (c->sess[i] == h) {
				c->sess[i] = c->sess[--c->nsess];
				break;
			}
		pthread_mutex_unlock(&S.lock);
		return rv;
	case BP_C_GetSessionInfo: {
		CK_SESSION_INFO si;
		if (!bp_r_done(r))
			goto bad;
		rv = C_GetSessionInfo(h, &si);
		if (rv == CKR_OK && foreign_login(c, h))
			si.state = (si.flags & CKF_RW_SESSION) ? CKS_RW_PUBLIC_SESSION
			                                       : CKS_RO_PUBLIC_SESSION;
		if (rv == CKR_OK)
			bp_put_b(w, &si, sizeof(si));
		return rv;
	}
	case BP_C_Login: {
		CK_USER_TYPE user = bp_get_u(r);
		CK_SLOT_ID slot;
		bool pad = bp_get_null(r);
		in = pad ? NULL : bp_get_b(r, &in_len, false, NULL);
		if (pad)
			in_len = 0;
		if (!bp_r_done(r))
			goto bad;
		if (user == CKU_CONTEXT_SPECIFIC) {
			q = queue_enter(h);
			rv = C_Login(h, user, (CK_UTF8CHAR_PTR)in, in_len);
			broker_queue_leave(q);
			return rv;
		}
		if (sess_slot(h, &slot, NULL) != CKR_OK)
			return C_Login(h, user, (CK_UTF8CHAR_PTR)in, in_len);
		(void)foreign_login(c, h); /* forget a login the card lost */
		pthread_mutex_lock(&S.lock);
		struct login *l = login_find_locked(c, slot);
		pthread_mutex_unlock(&S.lock);
		if (l != NULL)
			return l->user == user ? CKR_USER_ALREADY_LOGGED_IN
			                       : CKR_USER_ANOTHER_ALREADY_LOGGED_IN;
		q = queue_enter(h);
		rv = C_Login(h, user, (CK_UTF8CHAR_PTR)in, in_len);
		if (rv == CKR_USER_ALREADY_LOGGED_IN && user == CKU_USER)
			/* another client's login: this client's PIN is checked
			 * on the card all the same, and that login stays */
			rv = tk_p11_login_verify(h, (CK_UTF8CHAR_PTR)in, in_len);
		else if (rv == CKR_USER_ALREADY_LOGGED_IN)
			rv = CKR_USER_ANOTHER_ALREADY_LOGGED_IN; /* (another client is SO) */
		broker_queue_leave(q);
		if (rv == CKR_OK) {
			pthread_mutex_lock(&S.lock);
			if (c->nlogins < MAX_LOGINS)
				c->logins[c->nlogins++] = (struct login){slot, user};
			pthread_mutex_unlock(&S.lock);
		}
		return rv;
	}
	case BP_C_Logout: {
		CK_SLOT_ID slot;
		bool mine, others;
		if (!bp_r_done(r))
			goto bad;
		rv = sess_slot(h, &slot, NULL);
		if (rv != CKR_OK)
			return rv;
		(void)foreign_login(c, h);
		pthread_mutex_lock(&S.lock);
		mine = login_find_locked(c, slot) != NULL;
		login_drop_locked(c, slot);
		others = others_logged_in_locked(c, slot);
		pthread_mutex_unlock(&S.lock);
		if (!mine)
			return CKR_USER_NOT_LOGGED_IN;
		return others ? CKR_OK : C_Logout(h);
	}
	case BP_C_InitPIN:
		in = bp_get_b(r, &in_len, false, NULL);
		if (!bp_r_done(r))
			goto bad;
		q = queue_enter(h);
		rv = C_InitPIN(h, (CK_UTF8CHAR_PTR)in, in_len);
		broker_queue_leave(q);
		return rv;
	case BP_C_SetPIN:
		in = bp_get_b(r, &in_len, false, NULL);
		in2 = bp_get_b(r, &in2_len, false, NULL);
		if (!bp_r_done(r))
			goto bad;
		q = queue_enter(h);
		rv = C_SetPIN(h, (CK_UTF8CHAR_PTR)in, in_len, (CK_UTF8CHAR_PTR)in2, in2_len);
		broker_queue_leave(q);
		return rv;
	case BP_C_CreateObject: {
		CK_OBJECT_HANDLE obj;
		if (!bp_get_template(r, &t, &n) || !bp_r_done(r))
			goto bad;
		rv = C_CreateObject(h, t, n, &obj);
		if (rv == CKR_OK)
			bp_put_u(w, obj);
		break;
	}
	case BP_C_DestroyObject:
	case BP_C_GetObjectSize: {
		CK_OBJECT_HANDLE obj = bp_get_u(r);
		CK_ULONG size;
		if (!bp_r_done(r))
			goto bad;
		if (hidden(c, h, obj))
			return CKR_OBJECT_HANDLE_INVALID;
		if (fn == BP_C_DestroyObject)
			return C_DestroyObject(h, obj);
		rv = C_GetObjectSize(h, obj, &size);
		if (rv == CKR_OK)
			bp_put_u(w, size);
		return rv;
	}
	case BP_C_GetAttributeValue: {
		CK_OBJECT_HANDLE obj = bp_get_u(r);
		struct bp_r s = bp_get_sub(r);
		struct bp_w l;
		size_t cnt = s.n / 2;
		CK_ULONG *want;
		if (!s.ok || s.n % 2 != 0 || !bp_r_done(r))
			goto bad;
		t = calloc(cnt > 0 ? cnt : 1, sizeof(*t));
		/* the lengths offered, then scratch for get_attrs */
		want = calloc(cnt > 0 ? 2 * cnt : 1, sizeof(*want));
		if (t == NULL || want == NULL) {
			free(t);
			free(want);
			return CKR_HOST_MEMORY;
		}
		for (size_t i = 0; i < cnt; i++) {
			t[i].type = bp_get_u(&s);
			want[i] = CK_UNAVAILABLE_INFORMATION;
			if (!bp_get_null(&s)) {
				want[i] = bp_get_u(&s);
				/* (a template's length only: its values hold
				 * pointers; a vendor's type is a number, its
				 * bits mean nothing) */
				if (want[i] > BP_MAX_BYTES || (t[i].type < CKA_VENDOR_DEFINED &&
				                               (t[i].type & CKF_ARRAY_ATTRIBUTE) &&
				                               t[i].type != CKA_ALLOWED_MECHANISMS))
					s.ok = false;
			}
		}
		n = cnt;
		if (!bp_r_done(&s)) {
			free(t);
			free(want);
			t = NULL;
			goto bad;
		}
		rv = hidden(c, h, obj) ? CKR_OBJECT_HANDLE_INVALID
		                       : get_attrs(h, obj, t, want, want + cnt, n);
		free(want);
		if (rv == CKR_OK || rv == CKR_ATTRIBUTE_SENSITIVE ||
		    rv == CKR_ATTRIBUTE_TYPE_INVALID || rv == CKR_BUFFER_TOO_SMALL) {
			bp_w_init(&l);
			for (size_t i = 0; i < n; i++) {
				bp_put_u(&l, t[i].ulValueLen);
				if (t[i].pValue != NULL &&
				    t[i].ulValueLen != CK_UNAVAILABLE_INFORMATION)
					bp_put_b(&l, t[i].pValue, t[i].ulValueLen);
				else
					bp_put_null(&l);
			}
			bp_put_sub(w, &l);
		}
		attrs_free(t, n);
		free(t);
		return rv;
	}
	case BP_C_SetAttributeValue: {
		CK_OBJECT_HANDLE obj = bp_get_u(r);
		if (!bp_get_template(r, &t, &n) || !bp_r_done(r))
			goto bad;
		rv = hidden(c, h, obj) ? CKR_OBJECT_HANDLE_INVALID
		                       : C_SetAttributeValue(h, obj, t, n);
		break;
	}
	case BP_C_FindObjectsInit:
		if (!bp_get_template(r, &t, &n) || !bp_r_done(r))
			goto bad;
		rv = C_FindObjectsInit(h, t, n);
		break;
	case BP_C_FindObjects: {
		CK_ULONG max = bp_get_u(r), got = 0;
		CK_OBJECT_HANDLE objs[BP_MAX_ITEMS];
		struct bp_w l;
		bool foreign;
		if (!bp_r_done(r) || max > BP_MAX_ITEMS)
			goto bad;
		foreign = foreign_login(c, h);
		bp_w_init(&l);
		/* a private object another client's login shows is left out */
		do {
			rv = C_FindObjects(h, objs, max, &got);
			for (CK_ULONG i = 0; rv == CKR_OK && i < got; i++)
				if (!foreign || !obj_private(h, objs[i]))
					bp_put_u(&l, objs[i]);
		} while (rv == CKR_OK && foreign && got > 0 && l.n == 0);
		if (rv == CKR_OK)
			bp_put_sub(w, &l);
		else
			bp_w_free(&l);
		return rv;
	}
	case BP_C_FindObjectsFinal:
		if (!bp_r_done(r))
			goto bad;
		return C_FindObjectsFinal(h);
	case BP_C_SignInit:
	case BP_C_VerifyInit:
	case BP_C_EncryptInit:
	case BP_C_DecryptInit: {
		CK_OBJECT_HANDLE key;
		if (!bp_get_mech(r, &mech, &mp))
			goto bad;
		key = bp_get_u(r);
		if (!bp_r_done(r))
			goto bad;
		if (fn == BP_C_SignInit && rejected_take(c, h, false))
			return CKR_OPERATION_ACTIVE;
		if ((fn == BP_C_SignInit || fn == BP_C_DecryptInit)) {
			if (hidden(c, h, key))
				return CKR_USER_NOT_LOGGED_IN;
			/* refused: signing answers at C_Sign/C_SignFinal (the
			 * codes PKCS#11 gives each function), decryption here */
			if (consent(c, h, key) != CKR_OK)
				return fn == BP_C_SignInit ? rejected_add(c, h)
				                           : CKR_KEY_FUNCTION_NOT_PERMITTED;
		}
		switch (fn) {
		case BP_C_SignInit:
			return C_SignInit(h, &mech, key);
		case BP_C_VerifyInit:
			return C_VerifyInit(h, &mech, key);
		case BP_C_EncryptInit:
			return C_EncryptInit(h, &mech, key);
		default:
			return C_DecryptInit(h, &mech, key);
		}
	}
	case BP_C_DigestInit:
		if (!bp_get_mech(r, &mech, &mp) || !bp_r_done(r))
			goto bad;
		return C_DigestInit(h, &mech);
	case BP_C_Sign:
	case BP_C_Decrypt:
	case BP_C_Encrypt:
	case BP_C_Digest:
	case BP_C_EncryptUpdate:
	case BP_C_DecryptUpdate:
		in = bp_get_b(r, &in_len, false, NULL);
		if (!get_out(r, &o) || !bp_r_done(r)) {
			free(o.buf);
			goto bad;
		}
		if (fn == BP_C_Sign && rejected_take(c, h, true)) {
			free(o.buf);
			return CKR_FUNCTION_REJECTED;
		}
		if (fn == BP_C_Sign || fn == BP_C_Decrypt)
			q = queue_enter(h);
		switch (fn) {
		case BP_C_Sign:
			rv = C_Sign(h, (CK_BYTE_PTR)in, in_len, o.buf, &o.len);
			break;
		case BP_C_Decrypt:
			rv = C_Decrypt(h, (CK_BYTE_PTR)in, in_len, o.buf, &o.len);
			break;
		case BP_C_Encrypt:
			rv = C_Encrypt(h, (CK_BYTE_PTR)in, in_len, o.buf, &o.len);
			break;
		case BP_C_Digest:
			rv = C_Digest(h, (CK_BYTE_PTR)in, in_len, o.buf, &o.len);
			break;
		case BP_C_EncryptUpdate:
			rv = C_EncryptUpdate(h, (CK_BYTE_PTR)in, in_len, o.buf, &o.len);
			break;
		default:
			rv = C_DecryptUpdate(h, (CK_BYTE_PTR)in, in_len, o.buf, &o.len);
		}
		broker_queue_leave(q);
		put_outbuf(w, rv, &o);
		return rv;
	case BP_C_SignFinal:
	case BP_C_DecryptFinal:
	case BP_C_EncryptFinal:
	case BP_C_DigestFinal:
	case BP_C_GenerateRandom:
		if (!get_out(r, &o) || !bp_r_done(r)) {
			free(o.buf);
			goto bad;
		}
		if (fn == BP_C_SignFinal && rejected_take(c, h, true)) {
			free(o.buf);
			return CKR_FUNCTION_REJECTED;
		}
		if (fn == BP_C_SignFinal || fn == BP_C_DecryptFinal)
			q = queue_enter(h);
		switch (fn) {
		case BP_C_SignFinal:
			rv = C_SignFinal(h, o.buf, &o.len);
			break;
		case BP_C_DecryptFinal:
			rv = C_DecryptFinal(h, o.buf, &o.len);
			break;
		case BP_C_EncryptFinal:
			rv = C_EncryptFinal(h, o.buf, &o.len);
			break;
		case BP_C_DigestFinal:
			rv = C_DigestFinal(h, o.buf, &o.len);
			break;
		default:
			rv = o.present ? C_GenerateRandom(h, o.buf, o.cap) : CKR_ARGUMENTS_BAD;
		}
		broker_queue_leave(q);
		put_outbuf(w, rv, &o);
		return rv;
	case BP_C_SignUpdate:
	case BP_C_VerifyUpdate:
	case BP_C_DigestUpdate:
	case BP_C_SeedRandom:
	case BP_C_VerifyFinal:
	case BP_C_InitToken:
		in = bp_get_b(r, &in_len, false, NULL);
		if (!bp_r_done(r))
			goto bad;
		switch (fn) {
		case BP_C_SignUpdate:
			if (rejected_take(c, h, false))
				return CKR_OK; /* (refused at C_SignFinal) */
			return C_SignUpdate(h, (CK_BYTE_PTR)in, in_len);
		case BP_C_VerifyUpdate:
			return C_VerifyUpdate(h, (CK_BYTE_PTR)in, in_len);
		case BP_C_DigestUpdate:
			return C_DigestUpdate(h, (CK_BYTE_PTR)in, in_len);
		case BP_C_SeedRandom:
			return C_SeedRandom(h, (CK_BYTE_PTR)in, in_len);
		case BP_C_VerifyFinal:
			return C_VerifyFinal(h, (CK_BYTE_PTR)in, in_len);
		default:
			return CKR_FUNCTION_NOT_SUPPORTED;
		}
	case BP_C_Verify:
		in = bp_get_b(r, &in_len, false, NULL);
		in2 = bp_get_b(r, &in2_len, false, NULL);
		if (!bp_r_done(r))
			goto bad;
		return C_Verify(h, (CK_BYTE_PTR)in, in_len, (CK_BYTE_PTR)in2, in2_len);
	case BP_C_DigestKey: {
		CK_OBJECT_HANDLE key = bp_get_u(r);
		if (!bp_r_done(r))
			goto bad;
		return hidden(c, h, key) ? CKR_KEY_HANDLE_INVALID : C_DigestKey(h, key);
	}
	case BP_C_GenerateKeyPair: {
		CK_OBJECT_HANDLE pub, priv;
		if (!bp_get_mech(r, &mech, &mp) || !bp_get_template(r, &t, &n) ||
		    !bp_get_template(r, &t2, &n2) || !bp_r_done(r))
			goto bad;
		q = queue_enter(h);
		rv = C_GenerateKeyPair(h, &mech, t, n, t2, n2, &pub, &priv);
		broker_queue_leave(q);
		if (rv == CKR_OK) {
			bp_put_u(w, pub);
			bp_put_u(w, priv);
		}
		break;
	}
	case BP_C_CopyObject: {
		CK_OBJECT_HANDLE obj = bp_get_u(r), copy;
		if (!bp_get_template(r, &t, &n) || !bp_r_done(r))
			goto bad;
		if (hidden(c, h, obj)) {
			rv = CKR_OBJECT_HANDLE_INVALID;
			break;
		}
		rv = C_CopyObject(h, obj, t, n, &copy);
		if (rv == CKR_OK)
			bp_put_u(w, copy);
		break;
	}
	case BP_C_WrapKey: {
		CK_OBJECT_HANDLE wrapping, key;
		if (!bp_get_mech(r, &mech, &mp))
			goto bad;
		wrapping = bp_get_u(r);
		key = bp_get_u(r);
		if (!get_out(r, &o) || !bp_r_done(r)) {
			free(o.buf);
			goto bad;
		}
		if (hidden(c, h, wrapping))
			rv = CKR_WRAPPING_KEY_HANDLE_INVALID;
		else if (hidden(c, h, key))
			rv = CKR_KEY_HANDLE_INVALID;
		else if (consent(c, h, wrapping) != CKR_OK || consent(c, h, key) != CKR_OK)
			rv = CKR_FUNCTION_CANCELED; /* (C_WrapKey has no CKR_FUNCTION_REJECTED) */
		else {
			q = queue_enter(h);
			rv = C_WrapKey(h, &mech, wrapping, key, o.buf, &o.len);
			broker_queue_leave(q);
		}
		put_outbuf(w, rv, &o);
		return rv;
	}
	case BP_C_UnwrapKey: {
		CK_OBJECT_HANDLE unwrapping, key;
		if (!bp_get_mech(r, &mech, &mp))
			goto bad;
		unwrapping = bp_get_u(r);
		in = bp_get_b(r, &in_len, false, NULL);
		if (!bp_get_template(r, &t, &n) || !bp_r_done(r))
			goto bad;
		if (hidden(c, h, unwrapping)) {
			rv = CKR_UNWRAPPING_KEY_HANDLE_INVALID;
			break;
		}
		if (consent(c, h, unwrapping) != CKR_OK) {
			rv = CKR_FUNCTION_CANCELED; /* (C_UnwrapKey has no CKR_FUNCTION_REJECTED) */
			break;
		}
		q = queue_enter(h);
		rv = C_UnwrapKey(h, &mech, unwrapping, (CK_BYTE_PTR)in, in_len, t, n, &key);
		broker_queue_leave(q);
		if (rv == CKR_OK)
			bp_put_u(w, key);
		break;
	}
	case BP_C_GenerateKey: {
		CK_OBJECT_HANDLE key;
		if (!bp_get_mech(r, &mech, &mp) || !bp_get_template(r, &t, &n) || !bp_r_done(r))
			goto bad;
		q = queue_enter(h);
		rv = C_GenerateKey(h, &mech, t, n, &key);
		broker_queue_leave(q);
		if (rv == CKR_OK)
			bp_put_u(w, key);
		break;
	}
	case BP_C_DeriveKey: {
		CK_OBJECT_HANDLE base, key;
		if (!bp_get_mech(r, &mech, &mp))
			goto bad;
		base = bp_get_u(r);
		if (!bp_get_template(r, &t, &n) || !bp_r_done(r))
			goto bad;
		if (hidden(c, h, base)) {
			rv = CKR_USER_NOT_LOGGED_IN;
			break;
		}
		if (consent(c, h, base) != CKR_OK) {
			rv = CKR_FUNCTION_CANCELED; /* (C_DeriveKey has no CKR_FUNCTION_REJECTED) */
			break;
		}
		q = queue_enter(h);
		rv = C_DeriveKey(h, &mech, base, t, n, &key);
		broker_queue_leave(q);
		if (rv == CKR_OK)
			bp_put_u(w, key);
		break;
	}
	case BP_C_GetFunctionStatus:
		return bp_r_done(r) ? C_GetFunctionStatus(h) : (*bad = true, CKR_OK);
	case BP_C_CancelFunction:
		return bp_r_done(r) ? C_CancelFunction(h) : (*bad = true, CKR_OK);
	case BP_C_SessionCancel: {
		CK_FLAGS flags = bp_get_u(r);
		if (!bp_r_done(r))
			goto bad;
		return C_SessionCancel(h, flags);
	}
	default:
		return CKR_FUNCTION_NOT_SUPPORTED;
	}
	free(t);
	free(t2);
	return rv;
bad:
	free(t);
	free(t2);
	*bad = true;
	return CKR_OK;
}

/* --- connections -------------------------------------------------------- */

struct conn {
	int fd;
	pid_t pid;
	uid_t uid;
};

static void
drop(struct conn *cn, const char *why)
{
	tk_log_warn("tokenkitd: connection from pid %ld closed: %s", (long)cn->pid, why);
}

static void *
conn_main(void *arg)
{
	struct conn cn = *(struct conn *)arg;
	struct client *c = NULL;
	uint8_t *in, *out;
	size_t in_len, out_len;
	struct bp_msg m;
	struct bp_rbuf rb = {0};
	struct wq q = {NULL, 0, &rb};
	int memfd = -1;
	struct raw_card *raw = NULL;
	const char *why;

	free(arg);
	t_call.q = &q;
	rb.spin_us = bp_spin_us();
	for (;;) {
		struct bp_w w;
		CK_RV rv;
		bool bad = false;

		/* a held card's next command comes in time, or the card is
		 * let go (cards.c) */
		if (bp_read_msg(cn.fd, &rb, &in, &in_len,
		                broker_card_held(raw) ? tk_now_ms() + BROKER_CARD_IDLE_MS : -1) <
		    0) {
			if (errno == EMSGSIZE)
				drop(&cn, "oversize message");
			else if (errno == ETIMEDOUT)
				drop(&cn, "held a card transaction without a command for "
				          "60 s");
			break;
		}
		why = bp_decode(in, in_len, true, &m);
		if (why != NULL) {
			drop(&cn, why);
			bp_msg_free(&m);
			tk_freezero(in, in_len);
			break;
		}
		bp_w_init(&w);
		if (m.head == BP_HELLO) {
			size_t n;
			const uint8_t *id = bp_get_b(&m.body, &n, false, NULL);
			uint64_t feats = m.body.i < m.body.n ? bp_get_u(&m.body) : 0;
			t_call.still = (feats & BP_FEAT_STILL) != 0;
			if (c != NULL || !bp_r_done(&m.body) || n != BP_ID_LEN) {
				bad = true;
			} else if ((c = client_get(id, cn.pid, cn.uid)) != NULL) {
				if (c->nviews == 0)
					views_init(c);
				bp_put_b(&w, g_conf.instance, sizeof(g_conf.instance));
				bp_put_u(&w, c->serial);
				bp_put_u(&w, (uint64_t)getpid());
				shm_offer(&w, &rb, feats, &memfd);
			}
			rv = c != NULL ? CKR_OK : CKR_HOST_MEMORY;
			if (c == NULL)
				bp_put_null(&w);
		} else if (c == NULL) {
			bad = true;
			rv = CKR_OK;
		} else if (m.head == BP_TOKENS) {
			rv = broker_tokens(&m.body, &w, &bad);
		} else if (m.head == BP_READERS) {
			rv = broker_readers(&m.body, &w, &bad);
		} else if (m.head == BP_READER_RESET) {
			rv = broker_reader_reset(&m.body, &w, &bad);
		} else if (m.head == BP_CARD_OPEN) {
			struct consent_key who = {.exe = c->exe,
			                          .uid = c->uid,
			                          .pid = cn.pid,
			                          .still = still_working};
			t_call.fd = cn.fd;
			t_call.id = m.id;
			rv = broker_card_open(&raw, &who, &m.body, &w, &bad);
			t_call.fd = -1;
		} else if (m.head == BP_CARD_IO) {
			rv = broker_card_io(raw, &m.body, &w, &bad);
		} else if (raw != NULL) {
			/* (its thread may hold the card's queue turn: a call
			 * that waits for one would wait for itself) */
			drop(&cn, "a card session's connection carries nothing else");
			bp_w_free(&w);
			bp_msg_free(&m);
			tk_freezero(in, in_len);
			break;
		} else {
			t_call.fd = cn.fd;
			t_call.id = m.id;
			rv = handle(c, m.head, &m.body, &w, &bad);
			t_call.fd = -1;
		}
		if (bad) {
			drop(&cn, c == NULL ? "no hello first" : "arguments do not parse");
			bp_w_free(&w);
			bp_msg_free(&m);
			tk_freezero(in, in_len);
			break;
		}
		if (!bp_encode_response(m.id, rv, &w, &out, &out_len)) {
			bp_w_init(&w);
			(void)bp_encode_response(m.id, CKR_HOST_MEMORY, &w, &out, &out_len);
			if (memfd >= 0) { /* (an answer without the area's capacity) */
				close(memfd);
				memfd = -1;
				bp_ring_free(rb.ring);
				rb.ring = NULL;
			}
		}
		bp_msg_free(&m);
		tk_freezero(in, in_len);
		if (memfd >= 0 && out != NULL) {
			/* the hello's answer, the first, with the area: the
			 * client's next bytes come through it */
			int r = bp_write_fd(cn.fd, out, out_len, memfd,
			                    tk_now_ms() + BROKER_WRITE_MS);
			close(memfd);
			memfd = -1;
			tk_freezero(out, out_len);
			if (r < 0)
				break;
			continue;
		}
		if (out == NULL || wq_put(cn.fd, &q, out, out_len, bp_rbuf_ready(&rb)) < 0)
			break;
	}
	broker_card_close(&raw);
	if (memfd >= 0)
		close(memfd);
	close(cn.fd);
	tk_freezero(q.buf, q.len);
	t_call.q = NULL;
	bp_rbuf_wipe(&rb);
	if (c != NULL)
		client_put(c);
	return NULL;
}

void
broker_serve_conn(int fd)
{
	struct ucred cred;
	socklen_t cl = sizeof(cred);
	struct conn *cn;
	pthread_attr_t attr;
	pthread_t th;

	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &cl) != 0) {
		close(fd);
		return;
	}
	if (!g_conf.system && cred.uid != g_conf.uid) {
		tk_log_warn("tokenkitd: refused a client of uid %u (pid %ld): this broker serves "
		            "uid %u only",
		            (unsigned)cred.uid, (long)cred.pid, (unsigned)g_conf.uid);
		close(fd);
		return;
	}
	cn = malloc(sizeof(*cn));
	if (cn == NULL) {
		close(fd);
		return;
	}
	*cn = (struct conn){.fd = fd, .pid = cred.pid, .uid = cred.uid};
	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	if (pthread_create(&th, &attr, conn_main, cn) != 0) {
		close(fd);
		free(cn);
	}
	pthread_attr_destroy(&attr);
}
