/* The module's own interface (tokenkit/p11ext.h): the broker's tokens and
 * readers (BP_TOKENS, BP_READERS, bproto.h), for the tokenkit tool. When a broker answers, it
 * holds the readers (a direct-USB reader is claimed by one process), so the
 * tool asks it, through here, instead of opening them. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/un.h>
#include <unistd.h>

#include <tokenkit/err.h>
#include <tokenkit/log.h>
#include <tokenkit/mem.h>

#include "bclient.h"
#include "bproto.h"
#include "clock.h"
#include "env.h"
#include "tokens.h"

static void
text(const uint8_t *p, size_t n, char *out, size_t cap)
{
	if (n >= cap)
		n = cap - 1;
	if (n > 0)
		memcpy(out, p, n);
	out[n] = '\0';
	for (size_t i = 0; i < n; i++)
		if (out[i] == '\0')
			out[i] = '?';
}

static bool
get_text(struct bp_r *r, char *out, size_t cap)
{
	size_t n = 0;
	const uint8_t *p = bp_get_b(r, &n, false, NULL);

	if (p == NULL && n != 0)
		return false;
	text(p, n, out, cap);
	return r->ok;
}

static bool
get_object(struct bp_r *r, tk_object_t *o, uint8_t **der)
{
	struct bp_r s = bp_get_sub(r);
	const uint8_t *p;
	bool none = false;
	size_t n = 0;

	memset(o, 0, sizeof(*o));
	*der = NULL;
	o->handle = (uint32_t)bp_get_u(&s);
	o->cls = (int)bp_get_u(&s);
	p = bp_get_b(&s, &n, false, NULL);
	if (n > sizeof(o->id))
		return false;
	if (n > 0)
		memcpy(o->id, p, n);
	o->id_len = n;
	if (!get_text(&s, o->label, sizeof(o->label)))
		return false;
	o->key_type = (int)bp_get_u(&s);
	o->key_bits = (unsigned)bp_get_u(&s);
	o->has_identity = bp_get_u(&s) != 0;
	o->usage = (unsigned)bp_get_u(&s);
	o->always_authenticate = bp_get_u(&s) != 0;
	p = bp_get_b(&s, &n, true, &none);
	if (!s.ok || !bp_r_done(&s))
		return false;
	if (!none && n > 0) {
		if ((*der = malloc(n)) == NULL)
			return false;
		memcpy(*der, p, n);
		o->der = *der;
		o->der_len = n;
	}
	return true;
}

/* What a token's view holds of its own (tk_p11ext_token_t.priv): its
 * objects and their certificates' DER. */
struct owned {
	tk_object_t *objs;
	uint8_t *ders[];
};

/* Why the broker has no token for a reader, as the tool says it when it
 * opens the readers itself. */
static int
err_of(CK_RV rv)
{
	switch (rv) {
	case CKR_TOKEN_NOT_PRESENT:
		return TK_ERR_NO_CARD;
	case CKR_TOKEN_NOT_RECOGNIZED:
		return TK_ERR_NOT_SUPPORTED;
	case CKR_DEVICE_ERROR:
		return TK_ERR_UNRESPONSIVE;
	case CKR_SLOT_ID_INVALID:
		return TK_ERR_READER_GONE;
	default:
		return TK_ERR_IO;
	}
}

static bool
get_slot(struct bp_r *r, tk_p11ext_token_t *v)
{
	struct bp_r s = bp_get_sub(r), list;
	tk_token_info_t *ti = &v->info;
	struct owned *own = NULL;
	uint64_t u;
	CK_RV rv;

	v->slot_id = (uint32_t)bp_get_u(&s);
	if (!get_text(&s, v->reader, sizeof(v->reader)))
		return false;
	rv = (CK_RV)bp_get_u(&s);
	if (rv != CKR_OK) {
		v->err = err_of(rv);
		return s.ok && bp_r_done(&s);
	}
	if (!get_text(&s, ti->driver, sizeof(ti->driver)) ||
	    !get_text(&s, ti->label, sizeof(ti->label)) ||
	    !get_text(&s, ti->serial, sizeof(ti->serial)))
		return false;
	u = bp_get_u(&s);
	ti->pin_retries = u > 0 && u < 1000 ? (int)u - 1 : -1;
	ti->pin_locked = bp_get_u(&s) != 0;
	u = bp_get_u(&s);
	ti->puk_retries = u > 0 && u < 1000 ? (int)u - 1 : -1;
	ti->puk_locked = bp_get_u(&s) != 0;
	list = bp_get_sub(&s);
	if (!s.ok || !bp_r_done(&s) || !list.ok)
		return false;
	if (list.n > 0) {
		if ((v->priv = own = calloc(1, sizeof(*own) + list.n * sizeof(own->ders[0]))) ==
		            NULL ||
		    (own->objs = calloc(list.n, sizeof(*own->objs))) == NULL)
			return false;
		v->objs = own->objs;
	}
	for (size_t i = 0; i < list.n; i++) {
		if (!get_object(&list, &own->objs[i], &own->ders[i]))
			return false;
		v->nobjs = i + 1;
	}
	return bp_r_done(&list);
}

static void
tokens_free(tk_p11ext_token_t *v, size_t n)
{
	for (size_t i = 0; v != NULL && i < n; i++) {
		struct owned *own = v[i].priv;

		if (own == NULL)
			continue;
		for (size_t j = 0; j < v[i].nobjs; j++)
			free(own->ders[j]);
		free(own->objs);
		free(own);
	}
	free(v);
}

/* The answer to BP_TOKENS: TK_P11EXT_OK (*out, *count),
 * TK_P11EXT_NO_READER, or TK_P11EXT_BROKER_FAILED (an error, or an answer
 * that does not parse). */
static int
parse_answer(struct bp_msg *m, void *outp, size_t *count)
{
	tk_p11ext_token_t **out = outp;
	struct bp_r list = m->body;
	tk_p11ext_token_t *v = NULL;
	size_t n = 0;
	int rc = TK_P11EXT_BROKER_FAILED;

	*out = NULL;
	*count = 0;
	if (m->rv == CKR_SLOT_ID_INVALID)
		return TK_P11EXT_NO_READER;
	if (m->rv != CKR_OK || list.n > BP_MAX_ITEMS)
		return TK_P11EXT_BROKER_FAILED;
	if (list.n > 0 && (v = calloc(list.n, sizeof(*v))) == NULL)
		return TK_P11EXT_BROKER_FAILED;
	while (n < list.n) {
		/* (a view that fails half-way is freed with the others) */
		if (!get_slot(&list, &v[n++]))
			goto out;
	}
	if (bp_r_done(&list)) {
		*out = v;
		*count = n;
		v = NULL;
		rc = TK_P11EXT_OK;
	}
out:
	tokens_free(v, n);
	return rc;
}

/* A parser of an answer's message: TK_P11EXT_* (*out, *count). */
typedef int parse_fn(struct bp_msg *m, void *out, size_t *count);

/* An answer's bytes, parsed by parse. */
static int
decode_parsed(const uint8_t *p, size_t len, parse_fn *parse, void *out, size_t *count)
{
	struct bp_msg m;
	int rc = TK_P11EXT_BROKER_FAILED;

	*count = 0;
	if (bp_decode(p, len, false, &m) == NULL)
		rc = parse(&m, out, count);
	bp_msg_free(&m);
	return rc;
}

int
tk_p11_tokens_parse(const uint8_t *p, size_t len, tk_p11ext_token_t **out, size_t *count)
{
	*out = NULL;
	return decode_parsed(p, len, parse_answer, out, count);
}

static void
broker_failed(const char *path, const char *why)
{
	tk_log_warn("the broker at %s did not answer: %s", path,
	            why != NULL  ? why
	            : errno != 0 ? strerror(errno)
	                         : "a bad answer");
}

/* A connection of its own to the broker, after its hello, within the
 * broker deadline: the socket, or -1 with *rc TK_P11EXT_NO_BROKER or
 * TK_P11EXT_BROKER_FAILED (logged). path gets the socket's path. */
static int
broker_connect(struct bp_rbuf *rb, char *path, size_t cap, int *rc)
{
	int wanted = tk_p11_broker_wanted(), fd;
	int64_t dl;
	struct bp_w w;
	struct bp_msg m;
	uint8_t id[BP_ID_LEN], *in = NULL;
	const char *why = NULL;

	*rc = TK_P11EXT_NO_BROKER;
	errno = 0;
	/* readers named for this run (TOKENKIT_READERS) are opened here */
	if (wanted < 0 || (wanted == 0 && tk_env("TOKENKIT_READERS") != NULL))
		return -1;
	if ((fd = tk_p11_broker_choose(path, cap)) < 0) {
		if (wanted == 0)
			return -1;
		tk_log_warn("TOKENKIT_BROKER=on, and no broker answers at %s",
		            path[0] != '\0' ? path : "its socket (the path is too long)");
		*rc = TK_P11EXT_BROKER_FAILED;
		return -1;
	}
	*rc = TK_P11EXT_BROKER_FAILED;
	dl = tk_now_ms() + tk_p11_broker_timeout_ms();
	if (getrandom(id, sizeof(id), 0) != (ssize_t)sizeof(id))
		goto out;
	bp_w_init(&w);
	bp_put_b(&w, id, sizeof(id));
	bp_put_u(&w, BP_FEAT_STILL); /* (a card's consent may wait on a person) */
	if (bp_call_sync(fd, rb, BP_HELLO, 0, &w, dl, &m, &in) < 0)
		goto out;
	why = m.rv != CKR_OK ? "its hello failed" : NULL;
	bp_msg_free(&m);
	if (why == NULL)
		*rc = TK_P11EXT_OK;
out:
	free(in);
	if (*rc == TK_P11EXT_OK)
		return fd;
	broker_failed(path, why);
	close(fd);
	return -1;
}

/* fn with [want or null, and *more when more is not NULL] on a connection
 * of broker_connect's, within the broker deadline and wait_ms more (as the
 * module's calls: whatever the broker or its cards do); the answer parsed
 * by parse into *out, *count. A TK_P11EXT_* code (TK_P11EXT_BROKER_FAILED
 * logged). */
static int
ask(uint32_t fn, const char *want, const uint64_t *more, int wait_ms, parse_fn *parse, void *out,
    size_t *count)
{
	char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
	int fd, rc;
	int64_t dl = tk_now_ms() + tk_p11_broker_timeout_ms() + wait_ms;
	struct bp_rbuf rb = {0};
	struct bp_w w;
	struct bp_msg m;
	uint8_t *in = NULL;
	const char *why = NULL;

	*count = 0;
	if ((fd = broker_connect(&rb, path, sizeof(path), &rc)) < 0)
		return rc;
	rc = TK_P11EXT_BROKER_FAILED;
	bp_w_init(&w);
	if (want != NULL)
		bp_put_b(&w, want, strlen(want));
	else
		bp_put_null(&w);
	if (more != NULL)
		bp_put_u(&w, *more);
	if (bp_call_sync(fd, &rb, fn, 1, &w, dl, &m, &in) == 0) {
		rc = parse(&m, out, count);
		if (rc == TK_P11EXT_BROKER_FAILED)
			why = m.rv != CKR_OK ? "an error" : "an answer that does not parse";
		bp_msg_free(&m);
	}
	if (rc == TK_P11EXT_BROKER_FAILED)
		broker_failed(path, why);
	free(in);
	bp_rbuf_wipe(&rb);
	close(fd);
	return rc;
}

static int
tokens(const char *want, tk_p11ext_token_t **out, size_t *count)
{
	*out = NULL;
	return ask(BP_TOKENS, want, NULL, 0, parse_answer, out, count);
}

/* --- BP_READERS ----------------------------------------------------------- */

static bool
get_reader(struct bp_r *r, tk_slot_diag_t *d)
{
	struct bp_r f = bp_get_sub(r), steps;
	tk_slot_info_t *s = &d->info;
	const uint8_t *atr;
	size_t n = 0;
	uint64_t state, proto, err;

	memset(d, 0, sizeof(*d));
	s->slot_id = (uint32_t)bp_get_u(&f);
	if (!get_text(&f, s->reader, sizeof(s->reader)))
		return false;
	state = bp_get_u(&f);
	s->card_seq = bp_get_u(&f);
	atr = bp_get_b(&f, &n, false, NULL);
	proto = bp_get_u(&f);
	if (!f.ok || n > sizeof(s->atr) || state > TK_SLOT_QUARANTINED || proto > 2)
		return false;
	s->state = (int)state;
	if (n > 0)
		memcpy(s->atr, atr, n);
	s->atr_len = n;
	s->protocol = (int)proto - 1;
	s->busy_ms = (uint32_t)bp_get_u(&f);
	if (!get_text(&f, s->backend, sizeof(s->backend)) ||
	    !get_text(&f, s->exchange, sizeof(s->exchange)))
		return false;
	s->reader_slots = (uint32_t)bp_get_u(&f);
	s->pin_pad = bp_get_u(&f) != 0;
	d->generation = bp_get_u(&f);
	d->rebinds = bp_get_u(&f);
	d->stuck = bp_get_u(&f) != 0;
	s->transmits = d->transmits = bp_get_u(&f);
	s->errors = d->errors = bp_get_u(&f);
	d->timeouts = bp_get_u(&f);
	d->err_comm = bp_get_u(&f);
	d->err_removed = bp_get_u(&f);
	d->err_reset = bp_get_u(&f);
	d->err_no_service = bp_get_u(&f);
	d->err_other = bp_get_u(&f);
	d->connects = bp_get_u(&f);
	d->connect_failures = bp_get_u(&f);
	d->abandoned_workers = bp_get_u(&f);
	d->retried_ok = bp_get_u(&f);
	d->recoveries = bp_get_u(&f);
	d->recoveries_failed = bp_get_u(&f);
	/* (a broker that knows more steps than we do: the ones we know) */
	steps = bp_get_sub(&f);
	for (size_t i = 0; steps.ok && i < steps.n; i++) {
		uint64_t v = bp_get_u(&steps);
		if (i < TK_STEP_COUNT)
			d->step_ok[i] = v;
	}
	if (!steps.ok || !bp_r_done(&steps))
		return false;
	err = bp_get_u(&f);
	if (err > 100000)
		return false;
	d->last_err = -(int)err;
	d->lat_samples = (uint32_t)bp_get_u(&f);
	d->lat_p50_us = (uint32_t)bp_get_u(&f);
	d->lat_p90_us = (uint32_t)bp_get_u(&f);
	d->lat_p99_us = (uint32_t)bp_get_u(&f);
	d->lat_max_us = (uint32_t)bp_get_u(&f);
	if (f.ok && f.i < f.n) { /* a broker of 0.2 on: its transactions */
		d->txn_begun = bp_get_u(&f);
		d->txn_carried = bp_get_u(&f);
	}
	return f.ok && bp_r_done(&f);
}

/* The answer to BP_READERS: TK_P11EXT_OK (*out, *count),
 * TK_P11EXT_NO_READER, or TK_P11EXT_BROKER_FAILED (an error, or an answer
 * that does not parse). */
static int
parse_readers(struct bp_msg *m, void *outp, size_t *count)
{
	tk_slot_diag_t **out = outp;
	struct bp_r list = m->body;
	tk_slot_diag_t *v = NULL;

	*out = NULL;
	*count = 0;
	if (m->rv == CKR_SLOT_ID_INVALID)
		return TK_P11EXT_NO_READER;
	if (m->rv != CKR_OK || !list.ok || list.n > BP_MAX_ITEMS)
		return TK_P11EXT_BROKER_FAILED;
	if (list.n > 0 && (v = calloc(list.n, sizeof(*v))) == NULL)
		return TK_P11EXT_BROKER_FAILED;
	for (size_t i = 0; i < list.n; i++)
		if (!get_reader(&list, &v[i])) {
			free(v);
			return TK_P11EXT_BROKER_FAILED;
		}
	if (!bp_r_done(&list)) {
		free(v);
		return TK_P11EXT_BROKER_FAILED;
	}
	*out = v;
	*count = list.n;
	return TK_P11EXT_OK;
}

int
tk_p11_readers_parse(const uint8_t *p, size_t len, tk_slot_diag_t **out, size_t *count)
{
	*out = NULL;
	return decode_parsed(p, len, parse_readers, out, count);
}

static int
readers(const char *want, tk_slot_diag_t **out, size_t *count)
{
	*out = NULL;
	return ask(BP_READERS, want, NULL, 0, parse_readers, out, count);
}

static int
neg_err(uint64_t v)
{
	/* (an error the broker names that this module does not know is
	 * still an error) */
	return v == 0 ? TK_OK : v < 10000 ? -(int)v : TK_ERR_IO;
}

/* --- BP_READER_RESET --------------------------------------------------------- */

/* The answer to BP_READER_RESET: TK_P11EXT_OK (the outcome and the record
 * into *(struct reset_out *)), TK_P11EXT_NO_READER or
 * TK_P11EXT_BROKER_FAILED. */
struct reset_out {
	int *err;
	tk_recovery_t *rec;
};

static int
parse_reset(struct bp_msg *m, void *outp, size_t *count)
{
	struct reset_out *o = outp;
	struct bp_r r = m->body, steps;
	tk_recovery_t *rec = o->rec;
	uint64_t v;

	*count = 0;
	memset(rec, 0, sizeof(*rec));
	*o->err = TK_ERR_IO;
	if (m->rv == CKR_SLOT_ID_INVALID)
		return TK_P11EXT_NO_READER;
	if (m->rv != CKR_OK || r.n != 11)
		return TK_P11EXT_BROKER_FAILED;
	*o->err = neg_err(bp_get_u(&r));
	rec->id = bp_get_u(&r);
	rec->wall_ms = (int64_t)(bp_get_u(&r) & INT64_MAX);
	rec->fault = neg_err(bp_get_u(&r));
	if (!get_text(&r, rec->what, sizeof(rec->what)))
		return TK_P11EXT_BROKER_FAILED;
	steps = bp_get_sub(&r);
	if (steps.n > TK_RECOVERY_MAX_STEPS)
		return TK_P11EXT_BROKER_FAILED;
	for (size_t i = 0; i < steps.n; i++) {
		struct bp_r one = bp_get_sub(&steps);

		v = bp_get_u(&one);
		rec->steps[i].step = v < TK_STEP_COUNT ? (int)v : TK_STEP_NONE;
		rec->steps[i].result = neg_err(bp_get_u(&one));
		rec->steps[i].duration_us = (int64_t)(bp_get_u(&one) & INT64_MAX);
		if (!bp_r_done(&one) || v >= TK_STEP_COUNT)
			return TK_P11EXT_BROKER_FAILED;
	}
	rec->nsteps = bp_get_u(&r);
	v = bp_get_u(&r);
	rec->cured_by = v < TK_STEP_COUNT ? (int)v : TK_STEP_NONE;
	rec->outcome = neg_err(bp_get_u(&r));
	rec->duration_us = (int64_t)(bp_get_u(&r) & INT64_MAX);
	rec->probes = (uint32_t)bp_get_u(&r);
	if (!bp_r_done(&steps) || !bp_r_done(&r) || v >= TK_STEP_COUNT || rec->nsteps < steps.n ||
	    rec->nsteps > 1000000) {
		memset(rec, 0, sizeof(*rec));
		return TK_P11EXT_BROKER_FAILED;
	}
	*count = 1;
	return TK_P11EXT_OK;
}

int
tk_p11_reset_parse(const uint8_t *p, size_t len, int *err, tk_recovery_t *rec)
{
	struct reset_out o = {err, rec};
	size_t n;

	return decode_parsed(p, len, parse_reset, &o, &n);
}

/* (a forced recovery runs the whole ladder: the broker waits up to four
 * transmit deadlines) */
#define RESET_WAIT_MS (4 * TK_CARD_DEFAULT_TIMEOUT_MS)

static int
reader_reset(const char *want, bool cold, int *err, tk_recovery_t *rec)
{
	struct reset_out o = {err, rec};
	uint64_t c = cold;
	size_t n;

	memset(rec, 0, sizeof(*rec));
	*err = TK_ERR_IO;
	if (want == NULL)
		return TK_P11EXT_NO_READER;
	return ask(BP_READER_RESET, want, &c, RESET_WAIT_MS, parse_reset, &o, &n);
}

/* --- BP_CARD_OPEN, BP_CARD_IO ------------------------------------------------ */

struct tk_p11ext_card {
	int fd; /* -1 after the broker failed */
	uint64_t next_id;
	char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
	struct bp_rbuf rb;
};

/* A BP_CARD_OPEN answer: TK_P11EXT_OK (*info), TK_P11EXT_NO_READER,
 * TK_P11EXT_REFUSED or TK_P11EXT_BROKER_FAILED. */
static int
parse_card_open(struct bp_msg *m, void *outp, size_t *count)
{
	tk_p11ext_card_info_t *info = outp;
	struct bp_r r = m->body;
	const uint8_t *atr;
	uint64_t proto;

	*count = 0;
	memset(info, 0, sizeof(*info));
	info->protocol = -1;
	if (m->rv == CKR_SLOT_ID_INVALID)
		return TK_P11EXT_NO_READER;
	if (m->rv == CKR_FUNCTION_REJECTED)
		return TK_P11EXT_REFUSED;
	if (m->rv != CKR_OK || r.n == 0)
		return TK_P11EXT_BROKER_FAILED;
	info->err = neg_err(bp_get_u(&r));
	if (info->err != TK_OK)
		return bp_r_done(&r) ? TK_P11EXT_OK : TK_P11EXT_BROKER_FAILED;
	info->slot_id = (uint32_t)bp_get_u(&r);
	if (!get_text(&r, info->reader, sizeof(info->reader)))
		return TK_P11EXT_BROKER_FAILED;
	atr = bp_get_b(&r, &info->atr_len, false, NULL);
	proto = bp_get_u(&r);
	info->caps.extended_apdu = bp_get_u(&r) != 0;
	info->caps.max_cmd = bp_get_u(&r);
	info->caps.max_resp = bp_get_u(&r);
	info->caps.pin_pad_verify = bp_get_u(&r) != 0;
	info->caps.pin_pad_modify = bp_get_u(&r) != 0;
	if (!bp_r_done(&r) || info->atr_len > sizeof(info->atr) || proto > 2 ||
	    info->caps.max_cmd < 5 || info->caps.max_resp < 2 ||
	    info->caps.max_cmd > BP_MAX_BYTES || info->caps.max_resp > BP_MAX_BYTES) {
		memset(info, 0, sizeof(*info));
		return TK_P11EXT_BROKER_FAILED;
	}
	memcpy(info->atr, atr, info->atr_len);
	info->protocol = (int)proto - 1;
	*count = 1;
	return TK_P11EXT_OK;
}

int
tk_p11_card_open_parse(const uint8_t *p, size_t len, tk_p11ext_card_info_t *info)
{
	size_t n;

	return decode_parsed(p, len, parse_card_open, info, &n);
}

/* A BP_CARD_IO answer: the card's tk_err (the answer into resp), or
 * TK_ERR_NO_SERVICE when it does not parse. *src: where the answer lay in
 * the message (for the caller to wipe), or NULL. */
static int
card_io_answer(const struct bp_msg *m, uint8_t *resp, size_t cap, size_t *resp_len,
               const uint8_t **src)
{
	struct bp_r r = m->body;
	const uint8_t *b;
	bool none = false;
	size_t n = 0;
	int e;

	*resp_len = 0;
	*src = NULL;
	if (m->rv != CKR_OK || r.n != 2)
		return TK_ERR_NO_SERVICE;
	e = neg_err(bp_get_u(&r));
	b = bp_get_b(&r, &n, true, &none);
	/* an answer where there is none, or one too big, is the broker's
	 * fault */
	if (!bp_r_done(&r) || (e == TK_OK && !none && n > cap) || (e != TK_OK && !none))
		return TK_ERR_NO_SERVICE;
	if (!none && n > 0) {
		memcpy(resp, b, n);
		*resp_len = n;
		*src = b;
	}
	return e;
}

int
tk_p11_card_io_parse(const uint8_t *p, size_t len, uint8_t *resp, size_t cap, size_t *resp_len)
{
	struct bp_msg m;
	const uint8_t *src;
	int e = TK_ERR_NO_SERVICE;

	*resp_len = 0;
	if (bp_decode(p, len, false, &m) == NULL)
		e = card_io_answer(&m, resp, cap, resp_len, &src);
	bp_msg_free(&m);
	return e;
}

static void
card_close(tk_p11ext_card_t *c)
{
	if (c == NULL)
		return;
	if (c->fd >= 0)
		close(c->fd);
	bp_rbuf_wipe(&c->rb);
	free(c);
}

static int
card_open(const char *want, tk_p11ext_card_t **out, tk_p11ext_card_info_t *info)
{
	tk_p11ext_card_t *c;
	int64_t dl = tk_now_ms() + tk_p11_broker_timeout_ms();
	struct bp_w w;
	struct bp_msg m;
	uint8_t *in = NULL;
	size_t n;
	int rc;

	*out = NULL;
	memset(info, 0, sizeof(*info));
	if (want == NULL || (c = calloc(1, sizeof(*c))) == NULL)
		return TK_P11EXT_BROKER_FAILED;
	if ((c->fd = broker_connect(&c->rb, c->path, sizeof(c->path), &rc)) < 0) {
		card_close(c);
		return rc;
	}
	rc = TK_P11EXT_BROKER_FAILED;
	c->next_id = 1;
	bp_w_init(&w);
	bp_put_b(&w, want, strlen(want));
	if (bp_call_sync(c->fd, &c->rb, BP_CARD_OPEN, c->next_id++, &w, dl, &m, &in) == 0) {
		rc = parse_card_open(&m, info, &n);
		bp_msg_free(&m);
	}
	free(in);
	if (rc == TK_P11EXT_BROKER_FAILED)
		broker_failed(c->path, NULL);
	if (rc == TK_P11EXT_OK && info->err == TK_OK)
		*out = c;
	else
		card_close(c);
	return rc;
}

/* One BP_CARD_IO: op with cmd (or none), the pad's request for
 * BP_CARD_PINPAD. */
static int card_call(tk_p11ext_card_t *c, int op, const uint8_t *cmd, size_t cmd_len,
                     const tk_card_pinpad_t *pad, uint8_t *resp, size_t resp_cap, size_t *resp_len,
                     int timeout_ms);

static int
card_io(tk_p11ext_card_t *c, int op, const uint8_t *cmd, size_t cmd_len, uint8_t *resp,
        size_t resp_cap, size_t *resp_len, int timeout_ms)
{
	if (op == BP_CARD_PINPAD)
		return TK_ERR_INVALID_ARG; /* (card_pinpad) */
	return card_call(c, op, cmd, cmd_len, NULL, resp, resp_cap, resp_len, timeout_ms);
}

static int
card_pinpad(tk_p11ext_card_t *c, const tk_card_pinpad_t *req, uint8_t *resp, size_t resp_cap,
            size_t *resp_len, int timeout_ms)
{
	if (req == NULL || req->apdu == NULL)
		return TK_ERR_INVALID_ARG;
	return card_call(c, BP_CARD_PINPAD, req->apdu, req->apdu_len, req, resp, resp_cap, resp_len,
	                 timeout_ms);
}

static int
card_call(tk_p11ext_card_t *c, int op, const uint8_t *cmd, size_t cmd_len,
          const tk_card_pinpad_t *pad, uint8_t *resp, size_t resp_cap, size_t *resp_len,
          int timeout_ms)
{
	int64_t dl = tk_now_ms() + timeout_ms + tk_p11_broker_timeout_ms();
	size_t dummy;
	struct bp_w w;
	struct bp_msg m;
	const uint8_t *src;
	uint8_t *in = NULL;
	int e;

	if (resp_len == NULL)
		resp_len = &dummy;
	*resp_len = 0;
	bool sends = op == TK_P11EXT_CARD_TRANSMIT || op == BP_CARD_PINPAD;

	if (c == NULL || op < TK_P11EXT_CARD_TRANSMIT || op > BP_CARD_PINPAD || timeout_ms <= 0 ||
	    (sends && (cmd == NULL || resp == NULL)))
		return TK_ERR_INVALID_ARG;
	if (c->fd < 0)
		return TK_ERR_NO_SERVICE;
	if (resp_cap > BP_MAX_BYTES)
		resp_cap = BP_MAX_BYTES;
	bp_w_init(&w);
	bp_put_u(&w, (uint64_t)op);
	if (sends)
		bp_put_b(&w, cmd, cmd_len);
	else
		bp_put_null(&w);
	bp_put_u(&w, sends ? resp_cap : 0);
	bp_put_u(&w, (uint64_t)timeout_ms);
	if (op == BP_CARD_PINPAD) {
		struct bp_w p;
		const uint8_t v[10] = {(uint8_t)pad->op, pad->timeout_s,     pad->format,
		                       pad->block,       pad->length_format, pad->min_len,
		                       pad->max_len,     pad->offset_old,    pad->offset_new,
		                       pad->confirm};

		bp_w_init(&p);
		for (size_t i = 0; i < sizeof(v); i++)
			bp_put_u(&p, v[i]);
		bp_put_sub(&w, &p);
	}
	if (bp_call_sync(c->fd, &c->rb, BP_CARD_IO, c->next_id++, &w, dl, &m, &in) < 0) {
		e = errno == ETIMEDOUT ? TK_ERR_TIMEOUT : TK_ERR_NO_SERVICE;
		broker_failed(c->path, NULL);
		close(c->fd); /* (a late answer would answer the next call) */
		c->fd = -1;
		return e;
	}
	e = card_io_answer(&m, resp, resp_cap, resp_len, &src);
	/* (a card's answer may be a secret: what it decrypted, a protected
	 * management key) */
	if (src != NULL)
		tk_wipe(in + (src - (const uint8_t *)in), *resp_len);
	bp_msg_free(&m);
	free(in);
	if (e == TK_ERR_NO_SERVICE) {
		broker_failed(c->path, "an answer that does not parse");
		close(c->fd);
		c->fd = -1;
	}
	return e;
}

tk_p11ext_t tk_p11_ext = {
        .version = {TK_P11EXT_MAJOR, TK_P11EXT_MINOR},
        .tokens = tokens,
        .tokens_free = tokens_free,
        .readers = readers,
        .card_open = card_open,
        .card_io = card_io,
        .card_close = card_close,
        .reader_reset = reader_reset,
        .card_pinpad = card_pinpad,
};

/* For programs built against 1.1 and 1.0 (C_GetInterface matches versions
 * exactly): the same functions, without the ones added since. */
tk_p11ext_t tk_p11_ext_1_1 = {
        .version = {1, 1},
        .tokens = tokens,
        .tokens_free = tokens_free,
        .readers = readers,
};

tk_p11ext_t tk_p11_ext_1_0 = {
        .version = {1, 0},
        .tokens = tokens,
        .tokens_free = tokens_free,
};
