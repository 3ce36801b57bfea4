/* tokenkit: the broker protocol's encoding (libcbor) and framing. */
#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <tokenkit/err.h>
#include <tokenkit/mem.h>

#include "bproto.h"
#include "cborutil.h"
#include "clock.h"

/* --- writing ------------------------------------------------------------ */

void
bp_w_init(struct bp_w *w)
{
	w->arr = cbor_new_indefinite_array();
	w->ok = w->arr != NULL;
}

void
bp_w_free(struct bp_w *w)
{
	if (w->arr != NULL)
		cbor_decref(&w->arr);
	w->ok = false;
}

static void
push(struct bp_w *w, cbor_item_t *it)
{
	if (it == NULL || !w->ok || !cbor_array_push(w->arr, it))
		w->ok = false;
	if (it != NULL)
		cbor_decref(&it); /* the array holds its own reference */
}

void
bp_put_u(struct bp_w *w, uint64_t v)
{
	push(w, tk_cbor_uint(v));
}

void
bp_put_b(struct bp_w *w, const void *p, size_t n)
{
	static const uint8_t none[1];

	push(w, cbor_build_bytestring(n > 0 ? p : none, n));
}

void
bp_put_null(struct bp_w *w)
{
	push(w, cbor_new_null());
}

void
bp_put_sub(struct bp_w *w, struct bp_w *sub)
{
	if (!sub->ok)
		w->ok = false;
	if (sub->arr != NULL && w->ok) {
		if (!cbor_array_push(w->arr, sub->arr))
			w->ok = false;
	}
	bp_w_free(sub);
}

/* Secrets (PINs) travel in byte strings: wipe every one before libcbor
 * frees it. */
static void
wipe_tree(cbor_item_t *it)
{
	if (cbor_isa_bytestring(it) && cbor_bytestring_is_definite(it) &&
	    cbor_bytestring_handle(it) != NULL) {
		tk_wipe(cbor_bytestring_handle(it), cbor_bytestring_length(it));
	} else if (cbor_isa_array(it)) {
		for (size_t i = 0; i < cbor_array_size(it); i++)
			wipe_tree(cbor_array_handle(it)[i]);
	}
}

static bool
encode(uint64_t a, uint64_t b, uint64_t c, struct bp_w *body, uint8_t **out, size_t *len)
{
	cbor_item_t *msg = cbor_new_definite_array(4);
	unsigned char *buf = NULL;
	size_t cap = 0, n;
	bool ok = msg != NULL && body->ok;

	*out = NULL;
	*len = 0;
	if (ok) {
		cbor_item_t *items[3] = {tk_cbor_uint(a), tk_cbor_uint(b), tk_cbor_uint(c)};
		for (size_t i = 0; i < 3; i++) {
			ok = ok && items[i] != NULL && cbor_array_push(msg, items[i]);
			if (items[i] != NULL)
				cbor_decref(&items[i]);
		}
		ok = ok && cbor_array_push(msg, body->arr);
	}
	bp_w_free(body);
	if (ok) {
		n = cbor_serialize_alloc(msg, &buf, &cap);
		ok = n > 0 && n <= BP_MAX_MSG;
	}
	if (msg != NULL) {
		wipe_tree(msg);
		cbor_decref(&msg);
	}
	if (!ok) {
		tk_freezero(buf, cap);
		return false;
	}
	/* the length prefix in front */
	*out = malloc(n + 4);
	if (*out == NULL) {
		tk_freezero(buf, cap);
		return false;
	}
	(*out)[0] = (uint8_t)(n >> 24);
	(*out)[1] = (uint8_t)(n >> 16);
	(*out)[2] = (uint8_t)(n >> 8);
	(*out)[3] = (uint8_t)n;
	memcpy(*out + 4, buf, n);
	tk_freezero(buf, cap);
	*len = n + 4;
	return true;
}

bool
bp_encode_request(uint32_t fn, uint64_t call_id, struct bp_w *body, uint8_t **out, size_t *len)
{
	return encode(BP_VERSION, fn, call_id, body, out, len);
}

bool
bp_encode_response(uint64_t call_id, uint64_t rv, struct bp_w *body, uint8_t **out, size_t *len)
{
	return encode(BP_VERSION, call_id, rv, body, out, len);
}

/* --- reading ------------------------------------------------------------ */

/* An array's item without a new reference (cbor_array_get takes one). */
#define arr_at(a, i) (cbor_array_handle(a)[i])

static cbor_item_t *
next(struct bp_r *r)
{
	if (!r->ok || r->i >= r->n) {
		r->ok = false;
		return NULL;
	}
	return arr_at(r->arr, r->i++);
}

/* (libcbor's cbor_is_null asserts on a float: ask in order) */
static bool
item_null(const cbor_item_t *it)
{
	return cbor_isa_float_ctrl(it) && cbor_float_get_width(it) == CBOR_FLOAT_0 &&
	       cbor_is_null(it);
}

static bool
is_uint(const cbor_item_t *it)
{
	return cbor_isa_uint(it);
}

uint64_t
bp_get_u(struct bp_r *r)
{
	cbor_item_t *it = next(r);

	if (it == NULL || !is_uint(it)) {
		r->ok = false;
		return 0;
	}
	return cbor_get_int(it);
}

uint8_t *
bp_get_b(struct bp_r *r, size_t *len, bool nullable, bool *is_null)
{
	cbor_item_t *it = next(r);

	*len = 0;
	if (is_null != NULL)
		*is_null = false;
	if (it == NULL)
		return NULL;
	if (nullable && item_null(it)) {
		if (is_null != NULL)
			*is_null = true;
		return NULL;
	}
	if (!cbor_isa_bytestring(it) || !cbor_bytestring_is_definite(it) ||
	    cbor_bytestring_length(it) > BP_MAX_BYTES) {
		r->ok = false;
		return NULL;
	}
	*len = cbor_bytestring_length(it);
	return cbor_bytestring_handle(it);
}

bool
bp_get_null(struct bp_r *r)
{
	if (!r->ok || r->i >= r->n)
		return false;
	if (!item_null(arr_at(r->arr, r->i)))
		return false;
	r->i++;
	return true;
}

struct bp_r
bp_get_sub(struct bp_r *r)
{
	struct bp_r sub = {0};
	cbor_item_t *it = next(r);

	if (it == NULL || !cbor_isa_array(it) || cbor_array_size(it) > BP_MAX_ITEMS) {
		r->ok = false;
		return sub;
	}
	sub.arr = it;
	sub.n = cbor_array_size(it);
	sub.ok = true;
	return sub;
}

bool
bp_r_done(const struct bp_r *r)
{
	return r->ok && r->i == r->n;
}

const char *
bp_decode(const uint8_t *p, size_t len, bool request, struct bp_msg *m)
{
	cbor_item_t **items;

	memset(m, 0, sizeof(*m));
	if (len == 0 || len > BP_MAX_MSG)
		return "message size";
	switch (tk_cbor_load(p, len, &m->root)) {
	case TK_OK:
		break;
	case TK_ERR_TRUNCATED:
		return "truncated, or a count or length past the end";
	default:
		return "not one CBOR item";
	}
	if (!cbor_isa_array(m->root) || cbor_array_size(m->root) != 4)
		return "not a 4-item array";
	items = cbor_array_handle(m->root);
	if (!is_uint(items[0]) || !is_uint(items[1]) || !is_uint(items[2]))
		return "header items not unsigned";
	if (cbor_get_int(items[0]) != BP_VERSION)
		return "protocol version";
	if (!cbor_isa_array(items[3]) || cbor_array_size(items[3]) > BP_MAX_ITEMS)
		return "body not an array";
	if (request) {
		uint64_t fn = cbor_get_int(items[1]);
		if (fn >= BP_FN_COUNT && fn != BP_HELLO)
			return "unknown function";
		m->head = (uint32_t)fn;
		m->id = cbor_get_int(items[2]);
	} else {
		m->id = cbor_get_int(items[1]);
		m->rv = cbor_get_int(items[2]);
	}
	m->body.arr = items[3];
	m->body.n = cbor_array_size(items[3]);
	m->body.ok = true;
	return NULL;
}

void
bp_msg_free(struct bp_msg *m)
{
	if (m->root != NULL) {
		wipe_tree(m->root);
		cbor_decref(&m->root);
	}
	memset(m, 0, sizeof(*m));
}

/* --- PKCS#11 values (the broker's side) --------------------------------- */

bool
bp_get_mech(struct bp_r *r, CK_MECHANISM *m, union bp_mparam *p)
{
	struct bp_r s = bp_get_sub(r);
	uint8_t *b, *b2;
	size_t n, n2;

	memset(m, 0, sizeof(*m));
	memset(p, 0, sizeof(*p));
	m->mechanism = bp_get_u(&s);
	switch (bp_get_u(&s)) {
	case BP_MP_NONE:
		m->ulParameterLen = bp_get_u(&s); /* (a length with no pointer) */
		m->pParameter = NULL;
		break;
	case BP_MP_RAW:
		b = bp_get_b(&s, &n, false, NULL);
		if (n > sizeof(p->raw))
			return false;
		if (b != NULL)
			memcpy(p->raw, b, n);
		m->pParameter = p->raw;
		m->ulParameterLen = n;
		/* these carry pointers: never as raw bytes */
		if (m->mechanism == CKM_RSA_PKCS_OAEP || m->mechanism == CKM_ECDH1_DERIVE ||
		    m->mechanism == CKM_ECDH1_COFACTOR_DERIVE || m->mechanism == CKM_EDDSA)
			return false;
		break;
	case BP_MP_PSS:
		p->pss.hashAlg = bp_get_u(&s);
		p->pss.mgf = bp_get_u(&s);
		p->pss.sLen = bp_get_u(&s);
		m->pParameter = &p->pss;
		m->ulParameterLen = sizeof(p->pss);
		break;
	case BP_MP_OAEP:
		p->oaep.hashAlg = bp_get_u(&s);
		p->oaep.mgf = bp_get_u(&s);
		p->oaep.source = bp_get_u(&s);
		b = bp_get_b(&s, &n, false, NULL);
		p->oaep.pSourceData = n > 0 ? (void *)b : NULL;
		p->oaep.ulSourceDataLen = n;
		m->pParameter = &p->oaep;
		m->ulParameterLen = sizeof(p->oaep);
		break;
	case BP_MP_ECDH:
		p->ecdh.kdf = bp_get_u(&s);
		b = bp_get_b(&s, &n, false, NULL);
		b2 = bp_get_b(&s, &n2, false, NULL);
		p->ecdh.pSharedData = n > 0 ? (void *)b : NULL;
		p->ecdh.ulSharedDataLen = n;
		p->ecdh.pPublicData = n2 > 0 ? (void *)b2 : NULL;
		p->ecdh.ulPublicDataLen = n2;
		m->pParameter = &p->ecdh;
		m->ulParameterLen = sizeof(p->ecdh);
		break;
	case BP_MP_EDDSA:
		p->eddsa.phFlag = (unsigned char)bp_get_u(&s);
		b = bp_get_b(&s, &n, false, NULL);
		p->eddsa.pContextData = n > 0 ? (void *)b : NULL;
		p->eddsa.ulContextDataLen = n;
		m->pParameter = &p->eddsa;
		m->ulParameterLen = sizeof(p->eddsa);
		break;
	default:
		return false;
	}
	return bp_r_done(&s);
}

/* A template of values (pointing into the message). */
bool
bp_get_template(struct bp_r *r, CK_ATTRIBUTE **out, CK_ULONG *count)
{
	struct bp_r s = bp_get_sub(r);
	CK_ATTRIBUTE *t;
	size_t n = s.n / 2;

	*out = NULL;
	*count = 0;
	if (!s.ok || s.n % 2 != 0)
		return false;
	t = calloc(n > 0 ? n : 1, sizeof(*t));
	if (t == NULL)
		return false;
	for (size_t i = 0; i < n; i++) {
		size_t len;
		t[i].type = bp_get_u(&s);
		t[i].pValue = (void *)bp_get_b(&s, &len, false, NULL);
		t[i].ulValueLen = len;
		if (len == 0)
			t[i].pValue = NULL;
		if ((t[i].type & CKF_ARRAY_ATTRIBUTE) && t[i].type != CKA_ALLOWED_MECHANISMS)
			s.ok = false; /* templates of templates carry pointers */
	}
	if (!bp_r_done(&s)) {
		free(t);
		return false;
	}
	*out = t;
	*count = n;
	return true;
}

/* --- the wire ----------------------------------------------------------- */

static int
wait_fd(int fd, short events, int64_t deadline)
{
	struct pollfd pfd = {.fd = fd, .events = events};
	int timeout, n;

	for (;;) {
		timeout = -1;
		if (deadline >= 0) {
			int64_t left = deadline - tk_now_ms();
			/* (past the deadline, what is there already still counts) */
			timeout = left <= 0 ? 0 : left > 60000 ? 60000 : (int)left;
		}
		n = poll(&pfd, 1, timeout);
		if (n > 0)
			return 0;
		if (n < 0 && errno != EINTR)
			return -1;
		if (n == 0 && timeout == 0) {
			errno = ETIMEDOUT;
			return -1;
		}
	}
}

int
bp_write_all(int fd, const uint8_t *buf, size_t len, int64_t deadline)
{
	while (len > 0) {
		ssize_t n = send(fd, buf, len, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (n > 0) {
			buf += n;
			len -= (size_t)n;
			continue;
		}
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
			if (wait_fd(fd, POLLOUT, deadline) < 0)
				return -1;
			continue;
		}
		if (n == 0)
			errno = EPIPE;
		return -1;
	}
	return 0;
}

static int
read_full(int fd, uint8_t *buf, size_t len, int64_t deadline)
{
	while (len > 0) {
		ssize_t n = recv(fd, buf, len, MSG_DONTWAIT);
		if (n > 0) {
			buf += n;
			len -= (size_t)n;
			continue;
		}
		if (n == 0) {
			errno = ECONNRESET;
			return -1;
		}
		if (errno == EINTR)
			continue;
		if (errno != EAGAIN && errno != EWOULDBLOCK)
			return -1;
		if (wait_fd(fd, POLLIN, deadline) < 0)
			return -1;
	}
	return 0;
}

void
bp_rbuf_wipe(struct bp_rbuf *rb)
{
	tk_wipe(rb, sizeof(*rb));
}

int
bp_read_msg(int fd, struct bp_rbuf *rb, uint8_t **out, size_t *len, int64_t deadline)
{
	size_t n, take;
	ssize_t got;

	*out = NULL;
	*len = 0;
	if (rb->off > 0) { /* what is left to the front */
		memmove(rb->b, rb->b + rb->off, rb->len - rb->off);
		rb->len -= rb->off;
		tk_wipe(rb->b + rb->len, rb->off);
		rb->off = 0;
	}
	while (rb->len < 4) {
		/* a client waits for its answer first (it is rarely there
		 * already: one poll and one recv); the broker, without a
		 * deadline on a blocking socket, just reads */
		if (deadline >= 0 && wait_fd(fd, POLLIN, deadline) < 0)
			return -1;
		got = recv(fd, rb->b + rb->len, sizeof(rb->b) - rb->len,
		           deadline < 0 ? 0 : MSG_DONTWAIT);
		if (got > 0) {
			rb->len += (size_t)got;
			continue;
		}
		if (got == 0) {
			errno = ECONNRESET;
			return -1;
		}
		if (errno != EINTR && errno != EAGAIN && errno != EWOULDBLOCK)
			return -1;
	}
	n = (size_t)rb->b[0] << 24 | (size_t)rb->b[1] << 16 | (size_t)rb->b[2] << 8 | rb->b[3];
	if (n == 0 || n > BP_MAX_MSG) {
		errno = EMSGSIZE;
		return -1;
	}
	*out = malloc(n);
	if (*out == NULL)
		return -1;
	take = rb->len - 4 < n ? rb->len - 4 : n;
	memcpy(*out, rb->b + 4, take);
	tk_wipe(rb->b, 4 + take);
	rb->off = 4 + take;
	if (rb->off == rb->len)
		rb->off = rb->len = 0;
	if (take < n && read_full(fd, *out + take, n - take, deadline) < 0) {
		tk_freezero(*out, n);
		*out = NULL;
		return -1;
	}
	*len = n;
	return 0;
}
