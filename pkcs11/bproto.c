/* tokenkit: the broker protocol's encoding (libcbor) and framing. */
#include <errno.h>
#include <poll.h>
#include <sched.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <tokenkit/err.h>
#include <tokenkit/mem.h>

#include "env.h"
#include "bproto.h"
#include "bring.h"
#include "clock.h"

/* --- writing ------------------------------------------------------------ */

/* The writer encodes straight into its buffer with libcbor's encoders: no
 * item tree to build, serialize and free for every call (that was most of
 * a call's cost on either side). The bytes are what cbor_serialize gave
 * for the tree: definite-length items, the argument lists as indefinite
 * arrays. */

void
bp_w_init(struct bp_w *w)
{
	*w = (struct bp_w){.ok = true};
}

void
bp_w_free(struct bp_w *w)
{
	/* (it may hold a PIN or plaintext) */
	tk_freezero(w->buf, w->cap);
	*w = (struct bp_w){.ok = false};
}

/* Room for need more bytes, or NULL (and the writer failed). A larger
 * buffer is a new one: the old one is wiped, never left to realloc. */
static uint8_t *
room(struct bp_w *w, size_t need)
{
	size_t cap;
	uint8_t *nb;

	if (!w->ok)
		return NULL;
	if (need > BP_MAX_MSG || w->len > BP_MAX_MSG - need) {
		w->ok = false;
		return NULL;
	}
	if (w->cap - w->len >= need)
		return w->buf + w->len;
	for (cap = w->cap > 0 ? w->cap : 64; cap - w->len < need;)
		cap *= 2;
	nb = malloc(cap);
	if (nb == NULL) {
		w->ok = false;
		return NULL;
	}
	if (w->len > 0)
		memcpy(nb, w->buf, w->len);
	tk_freezero(w->buf, w->cap);
	w->buf = nb;
	w->cap = cap;
	return w->buf + w->len;
}

/* Account for n bytes written by an encoder (0: it failed). */
static void
wrote(struct bp_w *w, size_t n)
{
	if (n == 0) {
		w->ok = false;
		return;
	}
	w->len += n;
	w->n++;
}

void
bp_put_u(struct bp_w *w, uint64_t v)
{
	uint8_t *p = room(w, 9);

	if (p != NULL)
		wrote(w, cbor_encode_uint(v, p, 9));
}

void
bp_put_b(struct bp_w *w, const void *src, size_t n)
{
	uint8_t *p = room(w, 9 + n);
	size_t h;

	if (p == NULL)
		return;
	h = cbor_encode_bytestring_start(n, p, 9);
	if (h > 0 && n > 0)
		memcpy(p + h, src, n);
	wrote(w, h > 0 ? h + n : 0);
}

void
bp_put_null(struct bp_w *w)
{
	uint8_t *p = room(w, 1);

	if (p != NULL)
		wrote(w, cbor_encode_null(p, 1));
}

void
bp_put_sub(struct bp_w *w, struct bp_w *sub)
{
	uint8_t *p;

	if (!sub->ok)
		w->ok = false;
	p = room(w, sub->len + 2);
	if (p != NULL && cbor_encode_indef_array_start(p, 1) == 1) {
		if (sub->len > 0)
			memcpy(p + 1, sub->buf, sub->len);
		wrote(w, cbor_encode_break(p + 1 + sub->len, 1) == 1 ? sub->len + 2 : 0);
	} else if (p != NULL) {
		w->ok = false;
	}
	bp_w_free(sub);
}

/* [BP_VERSION-or-head items a, b, c, [body...]] behind its length. */
static bool
encode(uint64_t a, uint64_t b, uint64_t c, struct bp_w *body, uint8_t **out, size_t *len)
{
	const uint64_t head[3] = {a, b, c};
	size_t cap, n = 0, k;
	uint8_t *buf, *p;
	bool ok = body->ok;

	*out = NULL;
	*len = 0;
	cap = 4 + 1 + 3 * 9 + 1 + body->len + 1;
	buf = ok ? malloc(cap) : NULL;
	if (buf != NULL) {
		p = buf + 4;
		ok = (k = cbor_encode_array_start(4, p, 1)) == 1;
		n += k;
		for (size_t i = 0; ok && i < 3; i++) {
			ok = (k = cbor_encode_uint(head[i], p + n, 9)) > 0;
			n += k;
		}
		ok = ok && cbor_encode_indef_array_start(p + n, 1) == 1;
		n += 1;
		if (ok && body->len > 0)
			memcpy(p + n, body->buf, body->len);
		n += body->len;
		ok = ok && cbor_encode_break(p + n, 1) == 1;
		n += 1;
		ok = ok && n <= BP_MAX_MSG;
	}
	bp_w_free(body);
	if (buf == NULL || !ok) {
		tk_freezero(buf, cap);
		return false;
	}
	buf[0] = (uint8_t)(n >> 24);
	buf[1] = (uint8_t)(n >> 16);
	buf[2] = (uint8_t)(n >> 8);
	buf[3] = (uint8_t)n;
	*out = buf;
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

bool
bp_fn_has_session(uint32_t fn)
{
	switch (fn) {
	case BP_C_GetSlotList:
	case BP_C_GetSlotInfo:
	case BP_C_GetTokenInfo:
	case BP_C_GetMechanismList:
	case BP_C_GetMechanismInfo:
	case BP_C_OpenSession:
	case BP_C_WaitForSlotEvent:
	case BP_TOKENS:
	case BP_READERS:
	case BP_CARD_OPEN:
	case BP_CARD_IO:
	case BP_READER_RESET:
	case BP_HELLO:
		return false;
	default:
		return true;
	}
}

/* --- reading ------------------------------------------------------------ */

/* The readers walk the message's bytes in place with libcbor's streaming
 * decoder, one head at a time: nothing is allocated or copied, and byte
 * strings point into the message. bp_decode checks the whole message first
 * (unsigned integers, definite byte strings, null and arrays only, nested
 * at most BP_MAX_DEPTH deep with at most BP_MAX_ITEMS items each), so the
 * readers take apart only what is well formed. */

#define BP_MAX_DEPTH 8

enum kind { K_OTHER, K_UINT, K_BYTES, K_NULL, K_ARRAY, K_INDEF, K_BREAK };

struct head {
	enum kind kind;
	uint64_t v;          /* the integer; a byte string's or an array's length */
	const uint8_t *data; /* a byte string's bytes */
	bool truncated;      /* (read_head failed) the bytes end inside it */
};

static void
h_uint(void *c, uint64_t v)
{
	((struct head *)c)->kind = K_UINT;
	((struct head *)c)->v = v;
}

static void
h_u8(void *c, uint8_t v)
{
	h_uint(c, v);
}

static void
h_u16(void *c, uint16_t v)
{
	h_uint(c, v);
}

static void
h_u32(void *c, uint32_t v)
{
	h_uint(c, v);
}

static void
h_bytes(void *c, cbor_data data, size_t len)
{
	((struct head *)c)->kind = K_BYTES;
	((struct head *)c)->data = data;
	((struct head *)c)->v = len;
}

static void
h_null(void *c)
{
	((struct head *)c)->kind = K_NULL;
}

static void
h_array(void *c, size_t n)
{
	((struct head *)c)->kind = K_ARRAY;
	((struct head *)c)->v = n;
}

static void
h_indef(void *c)
{
	((struct head *)c)->kind = K_INDEF;
}

static void
h_break(void *c)
{
	((struct head *)c)->kind = K_BREAK;
}

/* One head at p[*pos..end): its kind (K_OTHER for anything we do not
 * send), *pos past it (and past a byte string's bytes). false: truncated
 * or not CBOR. */
static bool
read_head(const uint8_t *p, size_t *pos, size_t end, struct head *h)
{
	static const struct cbor_callbacks cb = {
	        .uint8 = h_u8,
	        .uint16 = h_u16,
	        .uint32 = h_u32,
	        .uint64 = h_uint,
	        .negint8 = cbor_null_negint8_callback,
	        .negint16 = cbor_null_negint16_callback,
	        .negint32 = cbor_null_negint32_callback,
	        .negint64 = cbor_null_negint64_callback,
	        .byte_string_start = cbor_null_byte_string_start_callback,
	        .byte_string = h_bytes,
	        .string = cbor_null_string_callback,
	        .string_start = cbor_null_string_start_callback,
	        .indef_array_start = h_indef,
	        .array_start = h_array,
	        .indef_map_start = cbor_null_indef_map_start_callback,
	        .map_start = cbor_null_map_start_callback,
	        .tag = cbor_null_tag_callback,
	        .float2 = cbor_null_float2_callback,
	        .float4 = cbor_null_float4_callback,
	        .float8 = cbor_null_float8_callback,
	        .undefined = cbor_null_undefined_callback,
	        .null = h_null,
	        .boolean = cbor_null_boolean_callback,
	        .indef_break = h_break,
	};
	struct cbor_decoder_result r;

	*h = (struct head){.kind = K_OTHER};
	if (*pos >= end) {
		h->truncated = true;
		return false;
	}
	r = cbor_stream_decode(p + *pos, end - *pos, &cb, h);
	if (r.status != CBOR_DECODER_FINISHED || r.read == 0 || r.read > end - *pos) {
		h->truncated = r.status == CBOR_DECODER_NEDATA;
		return false;
	}
	*pos += r.read;
	return true;
}

static const char *
head_error(const struct head *h)
{
	return h->truncated ? "truncated, or a count or length past the end" : "not one CBOR item";
}

/* Check the array whose head was just read (h, ending at *pos) down to
 * its end: *pos past it, *n its items, *items_end where its items end (at
 * an indefinite one's break). NULL, or what is wrong. */
static const char *
check_array(const uint8_t *p, size_t *pos, size_t end, const struct head *h, int depth, size_t *n,
            size_t *items_end)
{
	bool indef = h->kind == K_INDEF;
	size_t count = 0;

	if (depth > BP_MAX_DEPTH)
		return "nested too deep";
	if (!indef && h->v > BP_MAX_ITEMS)
		return "too many items";
	for (;;) {
		struct head it;
		size_t at = *pos;

		if (!indef && count == h->v)
			break;
		if (!read_head(p, pos, end, &it))
			return head_error(&it);
		if (indef && it.kind == K_BREAK) {
			*n = count;
			*items_end = at;
			return NULL;
		}
		if (++count > BP_MAX_ITEMS)
			return "too many items";
		switch (it.kind) {
		case K_UINT:
		case K_BYTES:
		case K_NULL:
			break;
		case K_ARRAY:
		case K_INDEF: {
			size_t sn, se;
			const char *why = check_array(p, pos, end, &it, depth + 1, &sn, &se);
			if (why != NULL)
				return why;
			break;
		}
		default:
			return "an item of a kind the protocol does not use";
		}
	}
	*n = count;
	*items_end = *pos;
	return NULL;
}

/* The next item's head (the reader moves past it), or false (r fails). */
static bool
next(struct bp_r *r, struct head *h)
{
	if (!r->ok || r->i >= r->n || !read_head(r->p, &r->pos, r->end, h)) {
		r->ok = false;
		return false;
	}
	r->i++;
	return true;
}
uint64_t
bp_get_u(struct bp_r *r)
{
	struct head h;

	if (!next(r, &h))
		return 0;
	if (h.kind != K_UINT) {
		r->ok = false;
		return 0;
	}
	return h.v;
}

uint8_t *
bp_get_b(struct bp_r *r, size_t *len, bool nullable, bool *is_null)
{
	struct head h;

	*len = 0;
	if (is_null != NULL)
		*is_null = false;
	if (!next(r, &h))
		return NULL;
	if (nullable && h.kind == K_NULL) {
		if (is_null != NULL)
			*is_null = true;
		return NULL;
	}
	if (h.kind != K_BYTES || h.v > BP_MAX_BYTES) {
		r->ok = false;
		return NULL;
	}
	*len = (size_t)h.v;
	/* (the message's own bytes: the caller's buffer, writable) */
	return (uint8_t *)(uintptr_t)h.data;
}

bool
bp_get_null(struct bp_r *r)
{
	struct bp_r peek = *r;
	struct head h;

	if (!next(&peek, &h) || h.kind != K_NULL)
		return false;
	*r = peek;
	return true;
}

struct bp_r
bp_get_sub(struct bp_r *r)
{
	struct bp_r sub = {0};
	struct head h;
	size_t start, n, items_end;

	if (!next(r, &h) || (h.kind != K_ARRAY && h.kind != K_INDEF)) {
		r->ok = false;
		return sub;
	}
	start = r->pos;
	if (check_array(r->p, &r->pos, r->end, &h, 0, &n, &items_end) != NULL) {
		r->ok = false;
		return sub;
	}
	sub = (struct bp_r){.p = r->p, .pos = start, .end = items_end, .n = n, .ok = true};
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
	struct head h, hd[3];
	size_t pos = 0, n, items_end, body;
	const char *why;

	memset(m, 0, sizeof(*m));
	if (len == 0 || len > BP_MAX_MSG)
		return "message size";
	if (!read_head(p, &pos, len, &h))
		return head_error(&h);
	if (h.kind == K_BREAK)
		return "not one CBOR item";
	if (h.kind != K_ARRAY || h.v != 4)
		return "not a 4-item array";
	for (int i = 0; i < 3; i++) {
		if (!read_head(p, &pos, len, &hd[i]))
			return head_error(&hd[i]);
		if (hd[i].kind != K_UINT)
			return "header items not unsigned";
	}
	if (hd[0].v != BP_VERSION)
		return "protocol version";
	if (!read_head(p, &pos, len, &h))
		return head_error(&h);
	if (h.kind != K_ARRAY && h.kind != K_INDEF)
		return "body not an array";
	body = pos;
	why = check_array(p, &pos, len, &h, 1, &n, &items_end);
	if (why != NULL)
		return why;
	if (pos != len)
		return "bytes after the message";
	if (request) {
		if (hd[1].v >= BP_FN_COUNT && hd[1].v != BP_HELLO && hd[1].v != BP_TOKENS &&
		    hd[1].v != BP_READERS && hd[1].v != BP_CARD_OPEN && hd[1].v != BP_CARD_IO &&
		    hd[1].v != BP_READER_RESET)
			return "unknown function";
		m->head = (uint32_t)hd[1].v;
		m->id = hd[2].v;
	} else {
		m->id = hd[1].v;
		m->rv = hd[2].v;
	}
	m->body = (struct bp_r){.p = p, .pos = body, .end = items_end, .n = n, .ok = true};
	return NULL;
}

void
bp_msg_free(struct bp_msg *m)
{
	tk_freezero(m->own, m->own_len);
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

/* All of buf, with the descriptor pass (>= 0) going with its first bytes. */
static int
write_msg(int fd, const uint8_t *buf, size_t len, int pass, int64_t deadline)
{
	union {
		struct cmsghdr h;
		uint8_t b[CMSG_SPACE(sizeof(int))];
	} ctl;
	struct iovec iov;
	struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1};
	struct cmsghdr *cm;

	if (pass >= 0) {
		memset(&ctl, 0, sizeof(ctl));
		mh.msg_control = ctl.b;
		mh.msg_controllen = sizeof(ctl.b);
		cm = CMSG_FIRSTHDR(&mh);
		cm->cmsg_level = SOL_SOCKET;
		cm->cmsg_type = SCM_RIGHTS;
		cm->cmsg_len = CMSG_LEN(sizeof(int));
		memcpy(CMSG_DATA(cm), &pass, sizeof(int));
	}
	while (len > 0) {
		ssize_t n;
		iov = (struct iovec){.iov_base = (void *)(uintptr_t)buf, .iov_len = len};
		n = sendmsg(fd, &mh, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (n > 0) {
			buf += n;
			len -= (size_t)n;
			mh.msg_control = NULL; /* (it went) */
			mh.msg_controllen = 0;
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

int
bp_write_all(int fd, const uint8_t *buf, size_t len, int64_t deadline)
{
	return write_msg(fd, buf, len, -1, deadline);
}

int
bp_write_fd(int fd, const uint8_t *buf, size_t len, int pass, int64_t deadline)
{
	return write_msg(fd, buf, len, pass, deadline);
}

int
bp_send(int fd, struct bp_rbuf *rb, const uint8_t *buf, size_t len, int64_t deadline)
{
	if (rb != NULL && rb->ring != NULL)
		return bp_ring_write(rb->ring, fd, buf, len, deadline, rb->spin_us);
	return bp_write_all(fd, buf, len, deadline);
}

/* recv, keeping a descriptor passed with the bytes when rb asks for one */
static ssize_t
sock_recv(int fd, struct bp_rbuf *rb, uint8_t *buf, size_t len, int flags)
{
	union {
		struct cmsghdr h;
		uint8_t b[CMSG_SPACE(4 * sizeof(int))];
	} ctl;
	struct iovec iov = {.iov_base = buf, .iov_len = len};
	struct msghdr mh = {.msg_iov = &iov,
	                    .msg_iovlen = 1,
	                    .msg_control = ctl.b,
	                    .msg_controllen = sizeof(ctl.b)};
	ssize_t n;

	if (!rb->take_fd)
		return recv(fd, buf, len, flags);
	n = recvmsg(fd, &mh, flags | MSG_CMSG_CLOEXEC);
	if (n < 0)
		return n;
	for (struct cmsghdr *cm = CMSG_FIRSTHDR(&mh); cm != NULL; cm = CMSG_NXTHDR(&mh, cm)) {
		size_t nfd;
		if (cm->cmsg_level != SOL_SOCKET || cm->cmsg_type != SCM_RIGHTS)
			continue;
		nfd = (cm->cmsg_len - CMSG_LEN(0)) / sizeof(int);
		for (size_t i = 0; i < nfd; i++) {
			int got;
			memcpy(&got, CMSG_DATA(cm) + i * sizeof(int), sizeof(int));
			if (rb->passed_fd < 0)
				rb->passed_fd = got; /* the first; no more are asked for */
			else
				close(got);
		}
	}
	return n;
}

static int
read_full(int fd, struct bp_rbuf *rb, uint8_t *buf, size_t len, int64_t deadline)
{
	while (len > 0) {
		ssize_t n;
		if (rb->ring != NULL) {
			n = bp_ring_read(rb->ring, fd, buf, len, deadline, rb->spin_us);
			if (n < 0)
				return -1;
			buf += n;
			len -= (size_t)n;
			continue;
		}
		n = sock_recv(fd, rb, buf, len, MSG_DONTWAIT);
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

int
bp_spin_us(void)
{
	const char *v = tk_env("TOKENKIT_BROKER_SPIN_US");
	char *end;
	long us;

	if (v == NULL || *v == '\0')
		return BP_SPIN_US;
	us = strtol(v, &end, 10);
	return *end == '\0' && us >= 0 && us <= BP_SPIN_MAX_US ? (int)us : BP_SPIN_US;
}

bool
bp_shm_wanted(void)
{
	const char *v = tk_env("TOKENKIT_BROKER_SHM");

	return v == NULL || (strcmp(v, "off") != 0 && strcmp(v, "0") != 0);
}

void
bp_rbuf_wipe(struct bp_rbuf *rb)
{
	bp_ring_free(rb->ring);
	tk_wipe(rb, sizeof(*rb));
}

bool
bp_rbuf_ready(const struct bp_rbuf *rb)
{
	const uint8_t *p = rb->b + rb->off;
	size_t have = rb->len - rb->off, n;

	if (have < 4)
		return false;
	n = (size_t)p[0] << 24 | (size_t)p[1] << 16 | (size_t)p[2] << 8 | p[3];
	return n <= have - 4;
}

int
bp_read_msg(int fd, struct bp_rbuf *rb, uint8_t **out, size_t *len, int64_t deadline)
{
	size_t n, take;
	ssize_t got;
	int64_t spin_end;

	*out = NULL;
	*len = 0;
	if (rb->off > 0) { /* what is left to the front */
		memmove(rb->b, rb->b + rb->off, rb->len - rb->off);
		rb->len -= rb->off;
		tk_wipe(rb->b + rb->len, rb->off);
		rb->off = 0;
	}
	spin_end = 0;
	if (rb->spin_us > 0) { /* never past the deadline */
		spin_end = tk_now_us() + rb->spin_us;
		if (deadline >= 0 && spin_end > deadline * 1000)
			spin_end = deadline * 1000;
	}
	while (rb->len < 4) {
		/* First, for spin_us, reads that do not wait. Then the broker,
		 * without a deadline on a blocking socket, just reads. A
		 * client waits in recv when the socket's own timeout ends
		 * before the deadline, else in poll up to the deadline and
		 * then reads. */
		int flags = 0;
		bool spinning;

		if (rb->ring != NULL) { /* (it spins and waits itself) */
			got = bp_ring_read(rb->ring, fd, rb->b + rb->len, sizeof(rb->b) - rb->len,
			                   deadline, rb->spin_us);
			if (got < 0)
				return -1;
			rb->len += (size_t)got;
			continue;
		}
		spinning = spin_end != 0 && tk_now_us() < spin_end;
		if (spinning) {
			flags = MSG_DONTWAIT;
		} else if (deadline >= 0 &&
		           (rb->block_ms <= 0 || deadline - tk_now_ms() < rb->block_ms)) {
			if (wait_fd(fd, POLLIN, deadline) < 0)
				return -1;
			flags = MSG_DONTWAIT;
		}
		got = sock_recv(fd, rb, rb->b + rb->len, sizeof(rb->b) - rb->len, flags);
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
		if (spinning) /* the CPU to whoever else wants it, if anyone */
			sched_yield();
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
	if (take < n && read_full(fd, rb, *out + take, n - take, deadline) < 0) {
		tk_freezero(*out, n);
		*out = NULL;
		return -1;
	}
	*len = n;
	return 0;
}
