/* tokenkit tokens / objects through tokenkitd (BP_TOKENS, pkcs11/bproto.h):
 * when a broker answers, it holds the readers (a direct-USB reader is
 * claimed by one process), so the tool asks it instead of opening them. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/un.h>
#include <unistd.h>

#include <tokenkit/log.h>

#include "bclient.h"
#include "bproto.h"
#include "clock.h"
#include "env.h"
#include "tokens_view.h"
#include "tool.h"

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

static bool
get_slot(struct bp_r *r, struct tokens_view *v)
{
	struct bp_r s = bp_get_sub(r), list;
	tk_token_info_t *ti = &v->info;
	uint64_t u;

	v->slot_id = (uint32_t)bp_get_u(&s);
	if (!get_text(&s, v->reader, sizeof(v->reader)))
		return false;
	v->rv = (unsigned long)bp_get_u(&s);
	if (v->rv != CKR_OK)
		return s.ok && bp_r_done(&s);
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
		v->owned = calloc(list.n, sizeof(*v->owned));
		v->ders = calloc(list.n, sizeof(*v->ders));
		if (v->owned == NULL || v->ders == NULL)
			return false;
	}
	v->objs = v->owned;
	for (size_t i = 0; i < list.n; i++) {
		if (!get_object(&list, &v->owned[i], &v->ders[i]))
			return false;
		v->nobjs = i + 1;
	}
	return bp_r_done(&list);
}

void
tokens_views_free(struct tokens_view *v, size_t n)
{
	for (size_t i = 0; v != NULL && i < n; i++) {
		for (size_t j = 0; j < v[i].nobjs; j++)
			free(v[i].ders[j]);
		free(v[i].ders);
		free(v[i].owned);
	}
	free(v);
}

/* The answer to BP_TOKENS: TOKENS_OK (*out, *count), TOKENS_NO_READER, or
 * TOKENS_BROKER_FAILED (an error, or an answer that does not parse). */
static int
parse_answer(struct bp_msg *m, struct tokens_view **out, size_t *count)
{
	struct bp_r list = m->body;
	struct tokens_view *v = NULL;
	size_t n = 0;
	int rc = TOKENS_BROKER_FAILED;

	*out = NULL;
	*count = 0;
	if (m->rv == CKR_SLOT_ID_INVALID)
		return TOKENS_NO_READER;
	if (m->rv != CKR_OK || list.n > BP_MAX_ITEMS)
		return TOKENS_BROKER_FAILED;
	if (list.n > 0 && (v = calloc(list.n, sizeof(*v))) == NULL)
		return TOKENS_BROKER_FAILED;
	while (n < list.n) {
		/* (a view that fails half-way is freed with the others) */
		if (!get_slot(&list, &v[n++]))
			goto out;
	}
	if (bp_r_done(&list)) {
		*out = v;
		*count = n;
		v = NULL;
		rc = TOKENS_OK;
	}
out:
	tokens_views_free(v, n);
	return rc;
}

int
tokens_parse_answer(const uint8_t *p, size_t len, struct tokens_view **out, size_t *count)
{
	struct bp_msg m;
	int rc;

	*out = NULL;
	*count = 0;
	if (bp_decode(p, len, false, &m) != NULL) {
		bp_msg_free(&m);
		return TOKENS_BROKER_FAILED;
	}
	rc = parse_answer(&m, out, count);
	bp_msg_free(&m);
	return rc;
}

const char *
tokens_view_error(const struct tokens_view *v, int *exit_code)
{
	*exit_code = TOOL_EXIT_ERROR;
	switch (v->rv) {
	case CKR_TOKEN_NOT_PRESENT:
		*exit_code = TOOL_EXIT_NO_CARD;
		return "no card";
	case CKR_TOKEN_NOT_RECOGNIZED:
		*exit_code = TOOL_EXIT_NO_CARD;
		return "card not supported";
	case CKR_DEVICE_ERROR:
		return "the card or reader did not answer";
	case CKR_SLOT_ID_INVALID:
		*exit_code = TOOL_EXIT_NO_READER;
		return "reader gone";
	default:
		return "the broker could not open the token";
	}
}

int
tokens_from_broker(const char *want, struct tokens_view **out, size_t *count)
{
	char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
	int wanted = tk_p11_broker_wanted(), fd, rc = TOKENS_BROKER_FAILED;
	int64_t dl;
	struct bp_rbuf rb = {0};
	struct bp_w w;
	struct bp_msg m;
	uint8_t id[BP_ID_LEN], *in = NULL;

	*out = NULL;
	*count = 0;
	errno = 0;
	/* readers named for this run (TOKENKIT_READERS) are opened here */
	if (wanted < 0 || (wanted == 0 && tk_env("TOKENKIT_READERS") != NULL))
		return TOKENS_NO_BROKER;
	if ((fd = tk_p11_broker_choose(path, sizeof(path))) < 0) {
		if (wanted == 0)
			return TOKENS_NO_BROKER;
		tk_log_warn("TOKENKIT_BROKER=on, and no broker answers at %s",
		            path[0] != '\0' ? path : "its socket (the path is too long)");
		return TOKENS_BROKER_FAILED;
	}
	/* (as the module's calls: whatever the broker or its cards do) */
	dl = tk_now_ms() + tk_p11_broker_timeout_ms();
	if (getrandom(id, sizeof(id), 0) != (ssize_t)sizeof(id))
		goto out;
	bp_w_init(&w);
	bp_put_b(&w, id, sizeof(id));
	bp_put_u(&w, 0);
	if (bp_call_sync(fd, &rb, BP_HELLO, 0, &w, dl, &m, &in) < 0)
		goto out;
	rc = m.rv == CKR_OK ? TOKENS_OK : TOKENS_BROKER_FAILED;
	bp_msg_free(&m);
	free(in);
	in = NULL;
	if (rc != TOKENS_OK)
		goto out;
	rc = TOKENS_BROKER_FAILED;
	bp_w_init(&w);
	if (want != NULL)
		bp_put_b(&w, want, strlen(want));
	else
		bp_put_null(&w);
	if (bp_call_sync(fd, &rb, BP_TOKENS, 1, &w, dl, &m, &in) < 0)
		goto out;
	rc = parse_answer(&m, out, count);
	bp_msg_free(&m);
out:
	if (rc == TOKENS_BROKER_FAILED)
		tk_log_warn("the broker at %s did not answer: %s", path,
		            errno != 0 ? strerror(errno) : "a bad answer");
	free(in);
	bp_rbuf_wipe(&rb);
	close(fd);
	return rc;
}
