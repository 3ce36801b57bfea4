/* tokenkit: software tokens, the public functions (include/tokenkit/soft.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/rand.h>

#include <tokenkit/err.h>
#include <tokenkit/hex.h>
#include <tokenkit/log.h>
#include <tokenkit/mem.h>
#include <tokenkit/text.h>

#include "ossl.h"
#include "registry_priv.h"
#include "secmem.h"
#include "soft_int.h"
#include "x509.h"

#define LABEL_MAX 32 /* a PKCS#11 token label */

void
tk_soft_create_opts_init(tk_soft_create_opts_t *o)
{
	if (o != NULL)
		memset(o, 0, sizeof(*o));
}

/* Lower-case hex of len (at most 32) bytes into out (2 * len + 1). */
static void
hex_lower(const uint8_t *p, size_t len, char *out)
{
	char buf[3 * 32 + 1];

	tk_hex_encode(p, len, 0, buf);
	for (size_t i = 0; i <= 2 * len; i++)
		out[i] = (char)(buf[i] >= 'A' && buf[i] <= 'F' ? buf[i] - 'A' + 'a' : buf[i]);
}

static int
open_user_store(tk_registry_t **reg, bool create)
{
	tk_registry_opts_t o;

	tk_registry_opts_init(&o);
	o.flags = create ? 0 : TK_REGISTRY_NO_CREATE;
	return tk_registry_open(&o, reg);
}

/* The software tokens of the store (registrations). */
static int
list_soft(tk_registry_t *reg, tk_registration_t ***out, size_t *n)
{
	tk_registration_t **all = NULL;
	size_t count = 0, k = 0;
	int r;

	*out = NULL;
	*n = 0;
	if ((r = tk_registry_list(reg, &all, &count)) != TK_OK)
		return r;
	for (size_t i = 0; i < count; i++) {
		if (strcmp(tk_registration_provider(all[i]), TK_SOFT_PROVIDER) == 0)
			all[k++] = all[i];
		else
			tk_registration_free(&all[i]);
	}
	*out = all;
	*n = k;
	return TK_OK;
}

static void
free_list(tk_registration_t **l, size_t n)
{
	for (size_t i = 0; i < n; i++)
		tk_registration_free(&l[i]);
	free(l);
}

int
tk_soft_create(const tk_soft_create_opts_t *o, char *instance, size_t cap)
{
	tk_registry_t *reg = NULL;
	tk_registration_t *r = NULL, **l = NULL;
	struct soft_state st;
	uint8_t rnd[8], *cfg = NULL;
	void *dek = NULL;
	size_t n = 0, cfg_len = 0, ll;
	unsigned log2n;
	uint64_t gen = 0;
	int res;

	if (instance != NULL && cap > 0)
		instance[0] = '\0';
	memset(&st, 0, sizeof(st));
	if (o == NULL || o->label == NULL || instance == NULL || cap < 2 * sizeof(rnd) + 1)
		return TK_ERR_INVALID_ARG;
	ll = strlen(o->label);
	log2n = o->kdf_log2n != 0 ? o->kdf_log2n : SOFT_LOG2N_DEFAULT;
	if (ll == 0 || ll > LABEL_MAX || o->pin == NULL || o->so_pin == NULL ||
	    o->pin_len < TK_SOFT_PIN_MIN || o->pin_len > TK_SOFT_PIN_MAX ||
	    o->so_pin_len < TK_SOFT_PIN_MIN || o->so_pin_len > TK_SOFT_PIN_MAX ||
	    o->max_tries > 100 || log2n < SOFT_LOG2N_MIN || log2n > SOFT_LOG2N_MAX)
		return TK_ERR_INVALID_ARG;
	if ((res = open_user_store(&reg, true)) != TK_OK)
		return res;
	/* one label, one token: `--token LABEL` must name one */
	if ((res = list_soft(reg, &l, &n)) != TK_OK)
		goto out;
	for (size_t i = 0; i < n; i++)
		if (strcmp(tk_registration_label(l[i]), o->label) == 0) {
			res = TK_ERR_EXISTS;
			goto out;
		}
	if (RAND_bytes_ex(tk_ossl_libctx(), rnd, sizeof(rnd), 0) != 1) {
		res = TK_ERR_CRYPTO;
		goto out;
	}
	hex_lower(rnd, sizeof(rnd), instance);
	if ((res = tk_secmem_alloc(SOFT_DEK_LEN, &dek)) != TK_OK)
		goto out;
	if (RAND_priv_bytes_ex(tk_ossl_libctx(), dek, SOFT_DEK_LEN, 0) != 1) {
		res = TK_ERR_CRYPTO;
		goto out;
	}
	st.max_tries = (uint8_t)(o->max_tries != 0 ? o->max_tries : TK_SOFT_TRIES_DEFAULT);
	if ((res = tk_soft_wrap(dek, SOFT_USER, o->pin, o->pin_len, log2n, &st.wrap[SOFT_USER])) !=
	            TK_OK ||
	    (res = tk_soft_wrap(dek, SOFT_SO, o->so_pin, o->so_pin_len, log2n,
	                        &st.wrap[SOFT_SO])) != TK_OK ||
	    (res = tk_soft_state_encode(&st, &cfg, &cfg_len)) != TK_OK)
		goto out;
	if ((res = tk_registration_new(TK_SOFT_PROVIDER, instance, &r)) != TK_OK ||
	    (res = tk_registration_set_label(r, o->label)) != TK_OK ||
	    (res = tk_registration_set_config(r, cfg, cfg_len)) != TK_OK)
		goto out;
	res = tk_registry_put(reg, r, 0, &gen);
out:
	if (res != TK_OK && instance != NULL && cap > 0)
		instance[0] = '\0';
	tk_secmem_free(&dek);
	tk_soft_state_clear(&st);
	tk_freezero(cfg, cfg_len);
	tk_registration_free(&r);
	free_list(l, n);
	tk_registry_free(&reg);
	return res;
}

int
tk_soft_open(const char *token, tk_soft_t **out)
{
	tk_registry_t *reg = NULL;
	tk_registration_t **l = NULL;
	const tk_registration_t *hit = NULL;
	size_t n = 0;
	int r;

	if (out == NULL)
		return TK_ERR_INVALID_ARG;
	*out = NULL;
	if ((r = open_user_store(&reg, false)) != TK_OK)
		return r;
	if ((r = list_soft(reg, &l, &n)) != TK_OK)
		goto out;
	r = TK_ERR_NOT_FOUND;
	for (size_t i = 0; i < n; i++) {
		if (token != NULL && strcmp(tk_registration_instance(l[i]), token) != 0 &&
		    strcmp(tk_registration_label(l[i]), token) != 0)
			continue;
		if (hit != NULL) {
			r = TK_ERR_EXISTS; /* name one */
			goto out;
		}
		hit = l[i];
	}
	if (hit != NULL)
		r = tk_soft_new(hit, out);
out:
	free_list(l, n);
	tk_registry_free(&reg);
	return r;
}

void
tk_soft_close(tk_soft_t **sp)
{
	if (sp == NULL)
		return;
	tk_soft_free(*sp);
	*sp = NULL;
}

const char *
tk_soft_instance(const tk_soft_t *s)
{
	return s != NULL ? s->instance : NULL;
}

const char *
tk_soft_label(const tk_soft_t *s)
{
	return s != NULL ? s->label : NULL;
}

int
tk_soft_list(char ***instances, size_t *count)
{
	tk_registry_t *reg = NULL;
	tk_registration_t **l = NULL;
	size_t n = 0;
	char **out = NULL;
	int r;

	if (instances == NULL || count == NULL)
		return TK_ERR_INVALID_ARG;
	*instances = NULL;
	*count = 0;
	if ((r = open_user_store(&reg, false)) != TK_OK)
		return r == TK_ERR_NOT_FOUND ? TK_OK : r;
	if ((r = list_soft(reg, &l, &n)) == TK_OK && n > 0) {
		if ((out = calloc(n, sizeof(*out))) == NULL)
			r = TK_ERR_NO_MEMORY;
		for (size_t i = 0; r == TK_OK && i < n; i++)
			if ((out[i] = strdup(tk_registration_instance(l[i]))) == NULL)
				r = TK_ERR_NO_MEMORY;
		if (r != TK_OK) {
			for (size_t i = 0; out != NULL && i < n; i++)
				free(out[i]);
			free(out);
			out = NULL;
		}
	}
	if (r == TK_OK) {
		*instances = out;
		*count = out != NULL ? n : 0;
	}
	free_list(l, n);
	tk_registry_free(&reg);
	return r;
}

int
tk_soft_pin_info(tk_soft_t *s, tk_soft_pin_info_t *info)
{
	int left, max, r;

	if (info != NULL)
		memset(info, 0, sizeof(*info));
	if (s == NULL || info == NULL)
		return TK_ERR_INVALID_ARG;
	pthread_mutex_lock(&s->mtx);
	r = tk_soft_refresh_locked(s);
	pthread_mutex_unlock(&s->mtx);
	if (r != TK_OK)
		return r;
	tk_soft_pin_tries(s, SOFT_USER, &left, &max);
	info->tries_left = left > 0 ? (unsigned)left : 0;
	info->max_tries = (unsigned)max;
	info->locked = left <= 0;
	tk_soft_pin_tries(s, SOFT_SO, &left, &max);
	info->so_tries_left = left > 0 ? (unsigned)left : 0;
	info->so_locked = left <= 0;
	return TK_OK;
}

int
tk_soft_login(tk_soft_t *s, const uint8_t *pin, size_t pin_len, unsigned *tries_left)
{
	int left = -1, r;

	if (tries_left != NULL)
		*tries_left = 0;
	if (s == NULL || pin == NULL)
		return TK_ERR_INVALID_ARG;
	r = tk_soft_pin_login(s, SOFT_USER, pin, pin_len, &left);
	if (tries_left != NULL && left > 0)
		*tries_left = (unsigned)left;
	return r;
}

int
tk_soft_change_pin(tk_soft_t *s, const uint8_t *old_pin, size_t old_len, const uint8_t *new_pin,
                   size_t new_len)
{
	if (s == NULL || old_pin == NULL || new_pin == NULL)
		return TK_ERR_INVALID_ARG;
	return tk_soft_pin_change(s, SOFT_USER, old_pin, old_len, new_pin, new_len);
}

int
tk_soft_init_pin(tk_soft_t *s, const uint8_t *so_pin, size_t so_len, const uint8_t *new_pin,
                 size_t new_len)
{
	if (s == NULL || so_pin == NULL || new_pin == NULL)
		return TK_ERR_INVALID_ARG;
	return tk_soft_pin_reset(s, so_pin, so_len, new_pin, new_len);
}

/* ---- objects ------------------------------------------------------------------------- */

static int
soft_class(CK_OBJECT_CLASS c)
{
	switch (c) {
	case CKO_CERTIFICATE:
		return TK_SOFT_CERT;
	case CKO_PUBLIC_KEY:
		return TK_SOFT_PUBKEY;
	case CKO_PRIVATE_KEY:
		return TK_SOFT_PRIVKEY;
	case CKO_SECRET_KEY:
		return TK_SOFT_SECRET;
	default:
		return TK_SOFT_DATA;
	}
}

static int
key_type_of(CK_KEY_TYPE kt)
{
	return kt == CKK_RSA          ? TK_KEY_RSA
	       : kt == CKK_EC         ? TK_KEY_EC
	       : kt == CKK_EC_EDWARDS ? TK_KEY_ED25519
	                              : TK_KEY_NONE;
}

/* The public key (SPKI DER) of an object: a key's own, a certificate's. */
static const uint8_t *
spki_of(const tk_soft_obj_t *o, size_t *len)
{
	const tk_attr_t *a = tk_attrs_get(&o->attrs, CKA_PUBLIC_KEY_INFO);

	*len = 0;
	if (a == NULL || a->len == 0)
		return NULL;
	*len = a->len;
	return a->val;
}

static void
describe(const tk_soft_snap_t *sn, const tk_soft_obj_t *o, tk_soft_object_t *d)
{
	const tk_attr_t *a;
	const uint8_t *spki;
	size_t sl;

	memset(d, 0, sizeof(*d));
	d->cls = soft_class(tk_obj_class(&o->attrs));
	if ((a = tk_attrs_get(&o->attrs, CKA_LABEL)) != NULL) {
		size_t n = a->len < sizeof(d->label) - 1 ? a->len : sizeof(d->label) - 1;

		memcpy(d->label, a->val, n);
	}
	if ((a = tk_attrs_get(&o->attrs, CKA_ID)) != NULL && a->len <= sizeof(d->id)) {
		memcpy(d->id, a->val, a->len);
		d->id_len = a->len;
	}
	hex_lower(o->uid, TK_SOFT_UID_LEN, d->uid);
	d->key_type = key_type_of(tk_obj_key_type(&o->attrs));
	if ((spki = spki_of(o, &sl)) != NULL) {
		int kt;

		(void)tk_spki_info(spki, sl, &kt, &d->key_bits);
		if (d->cls == TK_SOFT_CERT)
			d->key_type = kt;
	}
	/* an identity: a certificate and a private key with one public key */
	for (size_t i = 0; spki != NULL && i < sn->n && !d->has_identity; i++) {
		const tk_soft_obj_t *x = &sn->objs[i];
		CK_OBJECT_CLASS want = d->cls == TK_SOFT_CERT ? CKO_PRIVATE_KEY : CKO_CERTIFICATE;
		const uint8_t *xs;
		size_t xl;

		if ((d->cls != TK_SOFT_CERT && d->cls != TK_SOFT_PRIVKEY) ||
		    tk_obj_class(&x->attrs) != want)
			continue;
		xs = spki_of(x, &xl);
		d->has_identity = xs != NULL && xl == sl && memcmp(xs, spki, sl) == 0;
	}
}

int
tk_soft_objects(tk_soft_t *s, tk_soft_object_t **objs, size_t *count)
{
	tk_soft_snap_t *sn;
	bool in;
	size_t k = 0;
	int r;

	if (objs != NULL)
		*objs = NULL;
	if (count != NULL)
		*count = 0;
	if (s == NULL || objs == NULL || count == NULL)
		return TK_ERR_INVALID_ARG;
	pthread_mutex_lock(&s->mtx);
	r = tk_soft_refresh_locked(s);
	pthread_mutex_unlock(&s->mtx);
	if (r != TK_OK)
		return r;
	in = tk_soft_user_logged_in(s);
	sn = tk_soft_snapshot(s);
	if ((*objs = calloc(sn->n + 1, sizeof(**objs))) == NULL) {
		tk_soft_snap_put(&sn);
		return TK_ERR_NO_MEMORY;
	}
	for (size_t i = 0; i < sn->n; i++) {
		if (tk_attrs_bool(&sn->objs[i].attrs, CKA_PRIVATE) && !in)
			continue;
		describe(sn, &sn->objs[i], &(*objs)[k++]);
	}
	*count = k;
	tk_soft_snap_put(&sn);
	return TK_OK;
}

/* Does o answer to which: its uid (hex), CKA_ID (hex) or label? */
static bool
named(const tk_soft_obj_t *o, const char *which, bool *by_uid)
{
	uint8_t bin[TK_OBJECT_ID_MAX];
	size_t n = 0;
	const tk_attr_t *a;

	*by_uid = false;
	if (tk_hex_decode(which, bin, sizeof(bin), &n) == TK_OK) {
		if (n == TK_SOFT_UID_LEN && memcmp(bin, o->uid, n) == 0) {
			*by_uid = true;
			return true;
		}
		a = tk_attrs_get(&o->attrs, CKA_ID);
		if (a != NULL && a->len == n && n > 0 && memcmp(a->val, bin, n) == 0)
			return true;
	}
	a = tk_attrs_get(&o->attrs, CKA_LABEL);
	return a != NULL && a->len == strlen(which) && memcmp(a->val, which, a->len) == 0;
}

int
tk_soft_export_cert(tk_soft_t *s, const char *which, uint8_t **der, size_t *len)
{
	const tk_attr_t *v = NULL;
	tk_soft_snap_t *sn;
	bool by_uid;
	int r = TK_OK;

	if (der != NULL)
		*der = NULL;
	if (len != NULL)
		*len = 0;
	if (s == NULL || which == NULL || der == NULL || len == NULL)
		return TK_ERR_INVALID_ARG;
	pthread_mutex_lock(&s->mtx);
	r = tk_soft_refresh_locked(s);
	pthread_mutex_unlock(&s->mtx);
	if (r != TK_OK)
		return r;
	sn = tk_soft_snapshot(s);
	for (size_t i = 0; i < sn->n && r == TK_OK; i++) {
		const tk_soft_obj_t *o = &sn->objs[i];

		if (tk_obj_class(&o->attrs) != CKO_CERTIFICATE || !named(o, which, &by_uid))
			continue;
		if (v != NULL)
			r = TK_ERR_EXISTS;
		v = tk_attrs_get(&o->attrs, CKA_VALUE);
	}
	if (r == TK_OK && (v == NULL || v->len == 0))
		r = TK_ERR_NOT_FOUND;
	if (r == TK_OK && (*der = malloc(v->len)) == NULL)
		r = TK_ERR_NO_MEMORY;
	if (r == TK_OK) {
		memcpy(*der, v->val, v->len);
		*len = v->len;
	}
	tk_soft_snap_put(&sn);
	return r;
}

struct del_arg {
	const char *which;
	tk_soft_change_t ch[TK_SOFT_OBJECTS_MAX];
	size_t n;
	bool logged_in;
};

/* Under the write's lock, on the objects as they are: what which names.
 * An identity's key, public key and certificate go together (one CKA_ID,
 * or one public key); a uid names one object. */
static int
pick_deleted(const tk_soft_snap_t *sn, void *argp)
{
	struct del_arg *a = argp;
	const tk_attr_t *id = NULL;
	const uint8_t *spki = NULL;
	size_t sl = 0;
	bool by_uid, one = false;

	a->n = 0;
	for (size_t i = 0; i < sn->n; i++) {
		const tk_soft_obj_t *o = &sn->objs[i];

		if (!named(o, a->which, &by_uid))
			continue;
		if (tk_attrs_bool(&o->attrs, CKA_PRIVATE) && !a->logged_in)
			return TK_ERR_LOGIN_REQUIRED;
		if (by_uid) {
			a->ch[0].op = TK_SOFT_REMOVE;
			memcpy(a->ch[0].uid, o->uid, TK_SOFT_UID_LEN);
			a->n = 1;
			return TK_OK;
		}
		if (one) {
			const tk_attr_t *oid = tk_attrs_get(&o->attrs, CKA_ID);
			size_t ol;
			const uint8_t *os = spki_of(o, &ol);

			/* the same identity (CKA_ID or public key), else ambiguous */
			if (!((oid != NULL && id != NULL && oid->len == id->len && oid->len > 0 &&
			       memcmp(oid->val, id->val, id->len) == 0) ||
			      (os != NULL && spki != NULL && ol == sl &&
			       memcmp(os, spki, sl) == 0)))
				return TK_ERR_EXISTS;
		} else {
			one = true;
			id = tk_attrs_get(&o->attrs, CKA_ID);
			spki = spki_of(o, &sl);
		}
		a->ch[a->n].op = TK_SOFT_REMOVE;
		memcpy(a->ch[a->n].uid, o->uid, TK_SOFT_UID_LEN);
		a->n++;
	}
	return a->n > 0 ? TK_OK : TK_ERR_NOT_FOUND;
}

int
tk_soft_delete(tk_soft_t *s, const char *which, size_t *deleted)
{
	struct del_arg *a;
	int r;

	if (deleted != NULL)
		*deleted = 0;
	if (s == NULL || which == NULL || which[0] == '\0')
		return TK_ERR_INVALID_ARG;
	if ((a = calloc(1, sizeof(*a))) == NULL)
		return TK_ERR_NO_MEMORY;
	a->which = which;
	a->logged_in = tk_soft_user_logged_in(s);
	/* the changes are chosen in check, on the record being written */
	r = tk_soft_write(s, a->ch, &a->n, pick_deleted, a);
	if (r == TK_OK && deleted != NULL)
		*deleted = a->n;
	free(a);
	return r;
}

int
tk_soft_destroy_token(tk_soft_t *s)
{
	uint64_t gen = 0;
	int r;

	if (s == NULL)
		return TK_ERR_INVALID_ARG;
	pthread_mutex_lock(&s->mtx);
	r = tk_soft_refresh_locked(s);
	if (r == TK_OK)
		r = tk_registry_remove(s->reg, TK_SOFT_PROVIDER, s->instance,
		                       tk_registration_generation(s->rec), &gen);
	pthread_mutex_unlock(&s->mtx);
	return r;
}
