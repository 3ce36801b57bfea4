/* tokenkit: the core token API on top of the card drivers.
 *
 * A token is built once, when opened: the driver reads (or revalidates from
 * the public-object cache) a model of the card, and this file turns it into
 * objects, pairing each certificate with the private key whose public key
 * equals the certificate's SubjectPublicKeyInfo.
 *
 * Login state belongs to one card generation: a reset (ours or anyone's)
 * bumps tk_card_generation(), which ends the login here and makes the
 * driver select its applet again before its next command.
 *
 * Locking: one mutex per token serialises its calls, card I/O included (the
 * card is one reader's anyway); nothing process-wide is held. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <tokenkit/err.h>
#include <tokenkit/log.h>
#include <tokenkit/mem.h>
#include <tokenkit/token.h>

#include "cache.h"
#include "driver.h"

static const tk_driver_t *const drivers[] = {
        &tk_piv_driver,
};

struct tk_token {
	pthread_mutex_t mtx;
	tk_card_t *card;
	const tk_driver_t *drv;
	void *ds;
	tk_drv_model_t model;
	tk_object_t *objs;
	size_t nobjs;
	tk_token_info_t info;
	bool logged_in, so_logged_in, context_ok;
	uint64_t login_gen, so_gen, context_gen;
};

/* ---- the driver model ------------------------------------------------------- */

void
tk_drv_model_clear(tk_drv_model_t *m)
{
	for (size_t i = 0; i < m->nslots; i++) {
		tk_drv_slot_t *s = &m->slots[i];

		free(s->cert);
		free(s->cert_spki);
		free(s->spki);
	}
	free(m->slots);
	memset(m, 0, sizeof(*m));
}

int
tk_drv_model_add_slot(tk_drv_model_t *m, tk_drv_slot_t **out)
{
	tk_drv_slot_t *ns;

	*out = NULL;
	if ((ns = realloc(m->slots, (m->nslots + 1) * sizeof(*ns))) == NULL)
		return TK_ERR_NO_MEMORY;
	m->slots = ns;
	memset(&ns[m->nslots], 0, sizeof(*ns));
	*out = &ns[m->nslots++];
	return TK_OK;
}

/* ---- objects and identities -------------------------------------------------- */

/* The public key of a slot's private key: the card's own word (metadata)
 * when it gave one, else the slot's certificate (all a plain PIV card
 * tells about its keys). */
static const uint8_t *
slot_pub(const tk_drv_slot_t *s, size_t *len)
{
	*len = 0;
	if (!s->key_present)
		return NULL;
	if (s->spki != NULL) {
		*len = s->spki_len;
		return s->spki;
	}
	if (s->cert_spki != NULL) {
		*len = s->cert_spki_len;
		return s->cert_spki;
	}
	return NULL;
}

static bool
same_der(const uint8_t *a, size_t al, const uint8_t *b, size_t bl)
{
	return a != NULL && b != NULL && al == bl && memcmp(a, b, al) == 0;
}

static tk_object_t *
add_obj(tk_token_t *t, int cls, const tk_drv_slot_t *s, const char *label)
{
	tk_object_t *o = &t->objs[t->nobjs];

	memset(o, 0, sizeof(*o));
	o->handle = (uint32_t)(++t->nobjs);
	o->cls = cls;
	memcpy(o->id, s->id, s->id_len);
	o->id_len = s->id_len;
	snprintf(o->label, sizeof(o->label), "%s", label);
	o->key_ref = s->key_ref;
	return o;
}

/* Objects in slot order: private key, public key, certificate. A
 * certificate takes the id of the key it matches (by SPKI, in any slot,
 * its own slot first). A certificate that matches no key is published
 * without identity under its slot's id with the top bit set (9A's stray
 * certificate: 0x81), so it can never be mistaken for a key's. */
static int
build_objects(tk_token_t *t)
{
	const tk_drv_model_t *m = &t->model;
	size_t cap = 3 * m->nslots + 1;
	int *paired_with;

	if ((t->objs = calloc(cap, sizeof(*t->objs))) == NULL)
		return TK_ERR_NO_MEMORY;
	if ((paired_with = calloc(m->nslots + 1, sizeof(*paired_with))) == NULL)
		return TK_ERR_NO_MEMORY;
	for (size_t i = 0; i < m->nslots; i++) {
		const tk_drv_slot_t *c = &m->slots[i];

		paired_with[i] = -1;
		if (c->cert == NULL)
			continue;
		for (size_t pass = 0; pass < 2 && paired_with[i] < 0; pass++) {
			for (size_t k = 0; k < m->nslots; k++) {
				const uint8_t *pub;
				size_t pl;

				if ((pass == 0) != (k == i))
					continue;
				pub = slot_pub(&m->slots[k], &pl);
				if (same_der(pub, pl, c->cert_spki, c->cert_spki_len)) {
					paired_with[i] = (int)k;
					break;
				}
			}
		}
	}
	for (size_t i = 0; i < m->nslots; i++) {
		const tk_drv_slot_t *s = &m->slots[i];
		const uint8_t *pub;
		size_t pl;
		bool has_identity = false;
		tk_object_t *o;

		for (size_t j = 0; j < m->nslots; j++)
			has_identity = has_identity || paired_with[j] == (int)i;
		pub = slot_pub(s, &pl);
		if (s->key_present && s->key_type != TK_KEY_NONE) {
			o = add_obj(t, TK_OBJ_PRIVKEY, s, s->key_label);
			o->key_type = s->key_type;
			o->key_bits = s->key_bits;
			o->der = pub;
			o->der_len = pl;
			o->usage = s->usage;
			o->always_authenticate = s->always_authenticate;
			o->has_identity = has_identity;
			if (pub != NULL) {
				o = add_obj(t, TK_OBJ_PUBKEY, s, s->pub_label);
				o->key_type = s->key_type;
				o->key_bits = s->key_bits;
				o->der = pub;
				o->der_len = pl;
				o->usage = s->usage;
				o->has_identity = has_identity;
			}
		}
		if (s->cert != NULL) {
			o = add_obj(t, TK_OBJ_CERT, s, s->cert_label);
			o->key_type = s->cert_key_type;
			o->key_bits = s->cert_key_bits;
			o->der = s->cert;
			o->der_len = s->cert_len;
			if (paired_with[i] >= 0) {
				const tk_drv_slot_t *k = &m->slots[paired_with[i]];

				memcpy(o->id, k->id, k->id_len);
				o->id_len = k->id_len;
				o->has_identity = true;
			} else {
				o->id[0] |= 0x80;
				tk_log_info("token: certificate of slot %02X matches no key on the "
				            "card",
				            (unsigned)s->key_ref);
			}
		}
	}
	free(paired_with);
	return TK_OK;
}

/* ---- life cycle ---------------------------------------------------------------- */

void
tk_token_opts_init(tk_token_opts_t *o)
{
	if (o == NULL)
		return;
	memset(o, 0, sizeof(*o));
	o->cache_dir = NULL;
	o->refresh_pin_status = false;
}

static void
copy_str(char *dst, size_t cap, const char *src)
{
	snprintf(dst, cap, "%s", src);
}

static int
refresh_pin_locked(tk_token_t *t)
{
	tk_drv_pin_status_t st;
	int r;

	if ((r = t->drv->pin_status(t->ds, TK_USER_USER, &st)) != TK_OK)
		return r;
	t->info.pin_retries = st.retries;
	if (st.max_retries >= 0)
		t->info.pin_max_retries = st.max_retries;
	t->info.pin_locked = st.locked;
	if ((r = t->drv->pin_status(t->ds, TK_USER_SO, &st)) != TK_OK)
		return r;
	t->info.puk_retries = st.retries;
	t->info.puk_locked = st.locked;
	return TK_OK;
}

int
tk_token_open(tk_card_t *card, const tk_token_opts_t *opts, tk_token_t **out)
{
	tk_token_opts_t defaults;
	tk_cache_t *cached = NULL, *fresh = NULL;
	char identity[TK_CACHE_MAX_IDENTITY + 1] = "", dir[4096];
	bool use_cache = false;
	tk_token_t *t;
	int r = TK_ERR_NOT_SUPPORTED;

	if (out == NULL)
		return TK_ERR_INVALID_ARG;
	*out = NULL;
	if (card == NULL)
		return TK_ERR_INVALID_ARG;
	if (opts == NULL) {
		tk_token_opts_init(&defaults);
		opts = &defaults;
	}
	if ((t = calloc(1, sizeof(*t))) == NULL)
		return TK_ERR_NO_MEMORY;
	if (pthread_mutex_init(&t->mtx, NULL) != 0) {
		free(t);
		return TK_ERR_NO_MEMORY;
	}
	t->card = tk_card_ref(card);
	for (size_t i = 0; i < sizeof(drivers) / sizeof(drivers[0]); i++) {
		r = drivers[i]->probe(card, &t->ds, identity, sizeof(identity));
		if (r == TK_OK) {
			t->drv = drivers[i];
			break;
		}
		if (r != TK_ERR_NOT_SUPPORTED)
			goto fail;
	}
	if (t->drv == NULL)
		goto fail;

	if (identity[0] != '\0' && tk_cache_dir(opts->cache_dir, dir, sizeof(dir)) == TK_OK) {
		use_cache = true;
		(void)tk_cache_load(dir, identity, &cached); /* absent or bad: no cache */
		if ((r = tk_cache_new(identity, &fresh)) != TK_OK)
			goto fail;
	}
	if ((r = t->drv->load(t->ds, cached, fresh, &t->model)) != TK_OK)
		goto fail;
	if (use_cache && !tk_cache_equal(cached, fresh))
		(void)tk_cache_store(dir, fresh); /* a cache we cannot write is no error */
	if ((r = build_objects(t)) != TK_OK)
		goto fail;

	copy_str(t->info.driver, sizeof(t->info.driver), t->drv->name);
	copy_str(t->info.label, sizeof(t->info.label), t->model.label);
	copy_str(t->info.manufacturer, sizeof(t->info.manufacturer), t->model.manufacturer);
	copy_str(t->info.model, sizeof(t->info.model), t->model.model);
	copy_str(t->info.serial, sizeof(t->info.serial), t->model.serial);
	copy_str(t->info.identity, sizeof(t->info.identity), identity);
	t->info.pin_retries = t->info.pin_max_retries = t->info.puk_retries = -1;
	t->info.pin_min_len = t->model.pin_min_len;
	t->info.pin_max_len = t->model.pin_max_len;
	if (opts->refresh_pin_status && (r = refresh_pin_locked(t)) != TK_OK)
		goto fail;
	tk_cache_free(&cached);
	tk_cache_free(&fresh);
	*out = t;
	return TK_OK;
fail:
	tk_cache_free(&cached);
	tk_cache_free(&fresh);
	tk_token_free(&t);
	return r;
}

void
tk_token_free(tk_token_t **tp)
{
	tk_token_t *t;

	if (tp == NULL || (t = *tp) == NULL)
		return;
	if (t->drv != NULL)
		t->drv->free(t->ds);
	tk_drv_model_clear(&t->model);
	free(t->objs);
	tk_card_unref(&t->card);
	pthread_mutex_destroy(&t->mtx);
	free(t);
	*tp = NULL;
}

/* ---- state ------------------------------------------------------------------------ */

/* Drop login state that belongs to an earlier card generation. */
static void
check_generation(tk_token_t *t)
{
	uint64_t g = tk_card_generation(t->card);

	if (t->logged_in && t->login_gen != g)
		t->logged_in = false;
	if (t->so_logged_in && t->so_gen != g)
		t->so_logged_in = false;
	if (t->context_ok && t->context_gen != g)
		t->context_ok = false;
}

int
tk_token_info(tk_token_t *t, tk_token_info_t *info)
{
	if (info != NULL)
		memset(info, 0, sizeof(*info));
	if (t == NULL || info == NULL)
		return TK_ERR_INVALID_ARG;
	pthread_mutex_lock(&t->mtx);
	check_generation(t);
	*info = t->info;
	info->logged_in = t->logged_in;
	info->so_logged_in = t->so_logged_in;
	pthread_mutex_unlock(&t->mtx);
	return TK_OK;
}

int
tk_token_refresh_pin(tk_token_t *t)
{
	int r;

	if (t == NULL)
		return TK_ERR_INVALID_ARG;
	pthread_mutex_lock(&t->mtx);
	r = refresh_pin_locked(t);
	pthread_mutex_unlock(&t->mtx);
	return r;
}

int
tk_token_objects(tk_token_t *t, const tk_object_t **objs, size_t *count)
{
	if (objs != NULL)
		*objs = NULL;
	if (count != NULL)
		*count = 0;
	if (t == NULL || objs == NULL || count == NULL)
		return TK_ERR_INVALID_ARG;
	/* built once at open and never changed: no lock needed */
	*objs = t->objs;
	*count = t->nobjs;
	return TK_OK;
}

const tk_object_t *
tk_token_object(tk_token_t *t, uint32_t handle)
{
	if (t == NULL || handle == 0 || handle > t->nobjs)
		return NULL;
	return &t->objs[handle - 1];
}

/* ---- PINs ------------------------------------------------------------------------- */

static void
note_retries(tk_token_t *t, int user, int r, int retries)
{
	if (r != TK_OK && r != TK_ERR_PIN_INCORRECT && r != TK_ERR_PIN_LOCKED)
		return;
	if (user == TK_USER_SO) {
		t->info.puk_retries = r == TK_OK ? t->info.puk_retries : retries;
		t->info.puk_locked = r == TK_ERR_PIN_LOCKED;
	} else {
		t->info.pin_retries = r == TK_OK ? t->info.pin_max_retries : retries;
		t->info.pin_locked = r == TK_ERR_PIN_LOCKED;
	}
}

int
tk_token_login(tk_token_t *t, int user, const uint8_t *pin, size_t pin_len)
{
	int r, retries = -1;
	uint64_t g;

	if (t == NULL || pin == NULL)
		return TK_ERR_INVALID_ARG;
	if (user != TK_USER_SO && user != TK_USER_USER && user != TK_USER_CONTEXT)
		return TK_ERR_INVALID_ARG;
	if (pin_len < t->info.pin_min_len || pin_len > t->info.pin_max_len)
		return TK_ERR_INVALID_ARG;
	pthread_mutex_lock(&t->mtx);
	check_generation(t);
	r = t->drv->pin_verify(t->ds, user, pin, pin_len, &retries);
	note_retries(t, user, r, retries);
	g = tk_card_generation(t->card);
	if (r == TK_OK) {
		if (user == TK_USER_SO) {
			t->so_logged_in = true;
			t->so_gen = g;
		} else {
			t->logged_in = true;
			t->login_gen = g;
		}
		if (user == TK_USER_CONTEXT) {
			t->context_ok = true;
			t->context_gen = g;
		}
	} else if (user == TK_USER_CONTEXT) {
		t->context_ok = false;
	}
	pthread_mutex_unlock(&t->mtx);
	return r;
}

int
tk_token_logout(tk_token_t *t)
{
	int retries, r = TK_OK;

	if (t == NULL)
		return TK_ERR_INVALID_ARG;
	pthread_mutex_lock(&t->mtx);
	check_generation(t);
	if (t->logged_in)
		r = t->drv->pin_verify(t->ds, TK_USER_USER, NULL, 0, &retries);
	t->logged_in = t->so_logged_in = t->context_ok = false;
	pthread_mutex_unlock(&t->mtx);
	/* the token is logged out here whatever the card said */
	if (r != TK_OK)
		tk_log_debug("token: logout: %s", tk_strerror(r));
	return TK_OK;
}

int
tk_token_change_pin(tk_token_t *t, int user, const uint8_t *old_pin, size_t old_len,
                    const uint8_t *new_pin, size_t new_len)
{
	int r;

	if (t == NULL || old_pin == NULL || new_pin == NULL ||
	    (user != TK_USER_USER && user != TK_USER_SO))
		return TK_ERR_INVALID_ARG;
	pthread_mutex_lock(&t->mtx);
	r = t->drv->pin_change(t->ds, user, old_pin, old_len, new_pin, new_len);
	pthread_mutex_unlock(&t->mtx);
	return r;
}

int
tk_token_unblock_pin(tk_token_t *t, const uint8_t *puk, size_t puk_len, const uint8_t *new_pin,
                     size_t new_len)
{
	int r;

	if (t == NULL || puk == NULL || new_pin == NULL)
		return TK_ERR_INVALID_ARG;
	pthread_mutex_lock(&t->mtx);
	r = t->drv->pin_unblock(t->ds, puk, puk_len, new_pin, new_len);
	if (r == TK_OK) {
		t->info.pin_locked = false;
		t->info.pin_retries = t->info.pin_max_retries;
	}
	pthread_mutex_unlock(&t->mtx);
	return r;
}

/* ---- keys ---------------------------------------------------------------------------- */

static const tk_drv_slot_t *
key_slot(const tk_token_t *t, const tk_object_t *key)
{
	if (key < t->objs || key >= t->objs + t->nobjs || key->cls != TK_OBJ_PRIVKEY)
		return NULL;
	for (size_t i = 0; i < t->model.nslots; i++)
		if (t->model.slots[i].key_ref == key->key_ref)
			return &t->model.slots[i];
	return NULL;
}

int
tk_token_key_op(tk_token_t *t, const tk_object_t *key, int op, const uint8_t *in, size_t in_len,
                uint8_t *out, size_t out_cap, size_t *out_len)
{
	const tk_drv_slot_t *s;
	unsigned need;
	int r;

	if (out_len != NULL)
		*out_len = 0;
	if (t == NULL || key == NULL || in == NULL || out == NULL || out_len == NULL)
		return TK_ERR_INVALID_ARG;
	if ((s = key_slot(t, key)) == NULL)
		return TK_ERR_INVALID_ARG;
	need = op == TK_OP_ECDSA     ? TK_USAGE_SIGN
	       : op == TK_OP_ECDH    ? TK_USAGE_DERIVE
	       : op == TK_OP_RSA_RAW ? (TK_USAGE_SIGN | TK_USAGE_DECRYPT)
	                             : 0;
	if (need == 0 || (s->usage & need) == 0)
		return TK_ERR_INVALID_ARG;
	pthread_mutex_lock(&t->mtx);
	check_generation(t);
	/* Refused here, without an APDU, when the card would refuse too. */
	if ((s->needs_login && !t->logged_in) || (s->always_authenticate && !t->context_ok)) {
		r = TK_ERR_SECURITY_STATUS;
		goto out;
	}
	r = t->drv->key_op(t->ds, s, op, in, in_len, out, out_cap, out_len);
	if (r == TK_ERR_SECURITY_STATUS || r == TK_ERR_CARD_RESET)
		check_generation(t);
	if (r == TK_ERR_SECURITY_STATUS && !s->always_authenticate)
		t->logged_in = false; /* the card forgot the PIN (someone reset it) */
out:
	/* a context login is good for one operation */
	if (s->always_authenticate)
		t->context_ok = false;
	pthread_mutex_unlock(&t->mtx);
	return r;
}

bool
tk_token_present(tk_token_t *t)
{
	return t != NULL && tk_card_present(t->card);
}

tk_card_t *
tk_token_card(tk_token_t *t)
{
	return t != NULL ? t->card : NULL;
}
