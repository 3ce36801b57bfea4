/* tokenkit-pkcs11: the software token's objects (drivers/soft, core/soft.h).
 *
 * A card's objects are what its driver's model says (object.c builds their
 * attributes); a software token's are its store's: every object is a list
 * of PKCS#11 attributes kept by the object rules of drivers/soft
 * (soft_attrs.c), and the module shows each attribute as stored. The
 * secret parts (footnote 7: a private key's private exponent, primes ...,
 * an EC scalar, a secret key's value) are sealed in the store; they are
 * read from the token while the user is logged in, and only for an object
 * that lets them out (CKA_SENSITIVE false and CKA_EXTRACTABLE true); any
 * other read answers CKR_ATTRIBUTE_SENSITIVE.
 *
 * Writes (C_CreateObject, C_CopyObject, C_SetAttributeValue,
 * C_DestroyObject, C_GenerateKeyPair): the template goes through the same
 * rules (tk_obj_template, tk_obj_copy, tk_obj_set), then
 *  - a token object (CKA_TOKEN true): one tk_soft_write, compare-and-swap
 *    on the registration, so another process writing at the same time
 *    never loses its change or ours; the module's table is rebuilt from
 *    the new store at once (every other module hears of it through the
 *    registry's events, regslot.c), objects keeping their handles (by
 *    uid);
 *  - a session object (CKA_TOKEN false): in this module's memory, with its
 *    attribute list and, for a private key, its OpenSSL key; it goes with
 *    its session (tk_p11_session_objects_drop_locked).
 * Access (PKCS#11 3.0 5.7 and 2.5's session states): a token object needs
 * a read/write session (CKR_SESSION_READ_ONLY), a private one (CKA_PRIVATE
 * true) the user's login (CKR_USER_NOT_LOGGED_IN). Sealing a secret needs
 * the token's data key, which only the user's login opens: a public
 * private key (CKA_PRIVATE false) on the token also needs the user logged
 * in. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/rand.h>

#include <tokenkit/mem.h>

#include "driver.h"
#include "p11.h"
#include "secmem.h"
#include "soft.h"
#include "x509.h"

/* The secret attributes (TK_OBJ_ATTR_SECRET) an object may have. */
static const CK_ATTRIBUTE_TYPE secret_types[] = {
        CKA_VALUE,      CKA_PRIVATE_EXPONENT, CKA_PRIME_1,    CKA_PRIME_2,
        CKA_EXPONENT_1, CKA_EXPONENT_2,       CKA_COEFFICIENT};
#define NSECRET (sizeof(secret_types) / sizeof(secret_types[0]))

void
tk_p11_soft_attrs_free(struct tk_attrs *l)
{
	if (l == NULL)
		return;
	tk_attrs_clear(l);
	free(l);
}

static void
hex_of(const uint8_t *p, size_t n, char *out)
{
	for (size_t i = 0; i < n; i++)
		snprintf(out + 2 * i, 3, "%02x", p[i]);
}

/* o (soft, uid set, or a session object with priv) from the list l. */
static int
from_attrs(struct p11_object *o, const tk_attrs_t *l)
{
	bool reveal = tk_obj_revealable(l);
	const tk_attr_t *spki;
	CK_ULONG bits = 0;
	char uid[2 * TK_SOFT_UID_LEN + 1];
	int r = TK_OK;

	o->cls = tk_obj_class(l);
	o->visible_private = tk_attrs_bool(l, CKA_PRIVATE);
	o->always_auth = tk_attrs_bool(l, CKA_ALWAYS_AUTHENTICATE);
	for (size_t i = 0; i < l->n && r == TK_OK; i++) {
		const tk_attr_t *a = &l->a[i];
		bool secret = tk_obj_attr_kind(l, a->type) == TK_OBJ_ATTR_SECRET;

		r = tk_p11_attr_add(o, a->type, a->val, a->len, secret && !reveal);
	}
	/* the secret parts that are not in the list: sealed in the store, or
	 * in a session key */
	for (size_t i = 0; i < NSECRET && r == TK_OK; i++) {
		CK_ATTRIBUTE_TYPE t = secret_types[i];
		uint8_t *v = NULL;
		size_t vl = 0;

		if (tk_attrs_get(l, t) != NULL || tk_obj_attr_kind(l, t) != TK_OBJ_ATTR_SECRET)
			continue;
		if (o->priv != NULL && reveal &&
		    tk_soft_key_secret_attr(o->priv, t, &v, &vl) == TK_OK) {
			r = tk_p11_attr_add(o, t, v, vl, false);
			tk_freezero(v, vl);
			continue;
		}
		r = tk_p11_attr_add(o, t, NULL, 0, true);
		if (r == TK_OK)
			o->attrs[o->nattrs - 1].sealed = o->soft && reveal;
	}
	if (r == TK_OK && tk_attrs_get(l, CKA_UNIQUE_ID) == NULL) {
		uint8_t rnd[TK_SOFT_UID_LEN];

		/* a token object's uid is its store's; a session object lives in
		 * this process only: 128 random bits */
		if (!o->soft && RAND_bytes_ex(tk_p11_libctx(), rnd, sizeof(rnd), 0) != 1)
			return TK_ERR_CRYPTO;
		hex_of(o->soft ? o->uid : rnd, TK_SOFT_UID_LEN, uid);
		r = tk_p11_attr_add(o, CKA_UNIQUE_ID, uid, strlen(uid), false);
	}
	if (r != TK_OK)
		return r;
	if (o->cls != CKO_PUBLIC_KEY && o->cls != CKO_PRIVATE_KEY)
		return TK_OK;
	o->key_type = tk_soft_tk_key_type(tk_obj_key_type(l));
	spki = tk_attrs_get(l, CKA_PUBLIC_KEY_INFO);
	if (spki != NULL && spki->len > 0) {
		int kt;
		unsigned b = 0;

		if (tk_spki_info(spki->val, spki->len, &kt, &b) == TK_OK)
			o->key_bits = b;
	}
	if (o->key_bits == 0 && tk_attrs_ulong(l, CKA_MODULUS_BITS, &bits))
		o->key_bits = (unsigned)bits;
	if (o->cls == CKO_PRIVATE_KEY) {
		o->usage = (tk_attrs_bool(l, CKA_SIGN) ? TK_USAGE_SIGN : 0) |
		           (tk_attrs_bool(l, CKA_DECRYPT) ? TK_USAGE_DECRYPT : 0) |
		           (tk_attrs_bool(l, CKA_DERIVE) ? TK_USAGE_DERIVE : 0);
		o->ops = tk_drv_default_ops(o->key_type, o->usage);
	} else {
		o->usage = (tk_attrs_bool(l, CKA_VERIFY) ? TK_USAGE_SIGN : 0) |
		           (tk_attrs_bool(l, CKA_ENCRYPT) ? TK_USAGE_DECRYPT : 0);
	}
	return TK_OK;
}

/* ---- the token's objects ---------------------------------------------------------- */

int
tk_p11_soft_objects_build(struct p11_token *t)
{
	tk_soft_t *sf = tk_soft_of(t->tk);
	tk_soft_snap_t *sn;

	if (sf == NULL || (sn = tk_soft_snapshot(sf)) == NULL)
		return TK_ERR_NOT_SUPPORTED;
	t->soft = true;
	t->soft_gen = sn->gen;
	t->objs = calloc(sn->n + 1, sizeof(*t->objs));
	if (t->objs == NULL) {
		tk_soft_snap_put(&sn);
		return TK_ERR_NO_MEMORY;
	}
	for (size_t i = 0; i < sn->n; i++) {
		struct p11_object *o = &t->objs[t->nobjs];

		o->soft = true;
		memcpy(o->uid, sn->objs[i].uid, TK_SOFT_UID_LEN);
		/* one object the module cannot show must not hide the others */
		if (from_attrs(o, &sn->objs[i].attrs) != TK_OK) {
			tk_p11_object_clear(o);
			continue;
		}
		t->nobjs++;
	}
	tk_soft_snap_put(&sn);
	return TK_OK;
}

bool
tk_p11_soft_stale(struct p11_token *t)
{
	tk_soft_t *sf = tk_soft_of(tk_p11_tk(t));
	tk_soft_snap_t *sn;
	uint64_t gen;
	bool stale;

	if (sf == NULL || (sn = tk_soft_snapshot(sf)) == NULL)
		return false;
	gen = sn->gen;
	tk_soft_snap_put(&sn);
	pthread_mutex_lock(&g_p11.lock);
	stale = t->soft_gen != gen;
	pthread_mutex_unlock(&g_p11.lock);
	return stale;
}

/* ---- key operations ---------------------------------------------------------------- */

bool
tk_p11_soft_key_take_locked(const struct p11_object *cur, struct p11_softkey *k)
{
	memset(k, 0, sizeof(*k));
	if (cur->priv != NULL && EVP_PKEY_up_ref(cur->priv) == 1) {
		k->pk = cur->priv;
		return true;
	}
	if (!cur->soft)
		return false;
	k->by_uid = true;
	memcpy(k->uid, cur->uid, TK_SOFT_UID_LEN);
	return true;
}

int
tk_p11_soft_key_op(tk_token_t *tk, struct p11_softkey *k, int op, const uint8_t *in, size_t in_len,
                   uint8_t *out, size_t out_cap, size_t *out_len)
{
	tk_soft_t *sf;
	int r = TK_OK;

	*out_len = 0;
	if (k->by_uid) {
		if ((sf = tk_soft_of(tk)) == NULL)
			r = TK_ERR_NOT_FOUND;
		else
			r = tk_soft_object_key(sf, k->uid, &k->pk);
		/* the store's login is gone: as a card's lost security status */
		if (r == TK_ERR_LOGIN_REQUIRED)
			r = TK_ERR_SECURITY_STATUS;
	}
	if (r == TK_OK)
		r = tk_soft_pkey_op(k->pk, op, in, in_len, out, out_cap, out_len);
	EVP_PKEY_free(k->pk);
	k->pk = NULL;
	return r;
}

/* ---- reading sealed values ------------------------------------------------------------ */

void
tk_p11_soft_reveal(struct p11_token *t, CK_OBJECT_HANDLE h, const CK_ATTRIBUTE *tpl, CK_ULONG n,
                   struct tk_attrs *out)
{
	uint8_t uid[TK_SOFT_UID_LEN];
	CK_OBJECT_CLASS cls = 0;
	bool want = false;
	struct p11_object *o;
	EVP_PKEY *pk = NULL;
	tk_soft_t *sf;

	memset(out, 0, sizeof(*out));
	if (tpl == NULL)
		return;
	pthread_mutex_lock(&g_p11.lock);
	o = tk_p11_object_find_locked(t, h);
	for (CK_ULONG i = 0; o != NULL && o->soft && i < n && !want; i++) {
		const struct p11_attr *a = tk_p11_attr_find(o, tpl[i].type);

		want = a != NULL && a->sealed;
	}
	if (want) {
		memcpy(uid, o->uid, sizeof(uid));
		cls = o->cls;
	}
	pthread_mutex_unlock(&g_p11.lock);
	if (!want || (sf = tk_soft_of(tk_p11_tk(t))) == NULL)
		return;
	if (cls == CKO_PRIVATE_KEY) {
		if (tk_soft_object_key(sf, uid, &pk) != TK_OK)
			return;
		for (CK_ULONG i = 0; i < n; i++) {
			uint8_t *v = NULL;
			size_t vl = 0;

			if (tk_soft_key_secret_attr(pk, tpl[i].type, &v, &vl) != TK_OK)
				continue;
			(void)tk_attrs_set(out, tpl[i].type, v, vl);
			tk_freezero(v, vl);
		}
		EVP_PKEY_free(pk);
	} else {
		void *v = NULL;
		size_t vl = 0;

		if (tk_soft_object_secret(sf, uid, &v, &vl) != TK_OK)
			return;
		(void)tk_attrs_set(out, CKA_VALUE, v, vl);
		tk_secmem_free(&v);
	}
}

/* ---- writes ---------------------------------------------------------------------------- */

static CK_RV
write_ckr(int r)
{
	switch (r) {
	case TK_ERR_TOO_LONG: /* the token is full */
		return CKR_DEVICE_MEMORY;
	case TK_ERR_NOT_FOUND: /* another program removed the object meanwhile */
		return CKR_OBJECT_HANDLE_INVALID;
	case TK_ERR_NOT_SUPPORTED:
		return CKR_ATTRIBUTE_VALUE_INVALID;
	default:
		return tk_err_to_ckr(r);
	}
}

/* The object rules' login flags of the session's token. */
static unsigned
rule_flags(struct p11_session *s)
{
	unsigned f;

	pthread_mutex_lock(&g_p11.lock);
	f = s->tok->login == (int)CKU_SO ? TK_OBJ_SO : 0;
	pthread_mutex_unlock(&g_p11.lock);
	return f;
}

/* May the session make or change an object with these attributes? */
static CK_RV
may_write(struct p11_session *s, const tk_attrs_t *l)
{
	bool user;

	pthread_mutex_lock(&g_p11.lock);
	user = s->tok->login == (int)CKU_USER;
	pthread_mutex_unlock(&g_p11.lock);
	if (tk_attrs_bool(l, CKA_TOKEN) && !(s->flags & CKF_RW_SESSION))
		return CKR_SESSION_READ_ONLY;
	if (tk_attrs_bool(l, CKA_PRIVATE) && !user)
		return CKR_USER_NOT_LOGGED_IN;
	return CKR_OK;
}

/* The token's table after our own write: at once, not when the registry's
 * event comes (the caller's next call must see its object). */
static CK_RV
follow(struct p11_session *s)
{
	int r = tk_p11_objects_rebuild(s->tok);

	return r == TK_OK || r == TK_ERR_CANCELLED ? CKR_OK : write_ckr(r);
}

/* The handle of the token object with this uid (0: none). */
static CK_OBJECT_HANDLE
handle_of(struct p11_token *t, const uint8_t *uid)
{
	CK_OBJECT_HANDLE h = 0;

	pthread_mutex_lock(&g_p11.lock);
	for (size_t i = 0; i < t->nobjs && h == 0; i++)
		if (t->objs[i].soft && memcmp(t->objs[i].uid, uid, TK_SOFT_UID_LEN) == 0)
			h = t->objs[i].handle;
	pthread_mutex_unlock(&g_p11.lock);
	return h;
}

/* A new session object from l (taken) and its key (taken: a private key
 * for operations, a public key for C_Verify). */
static CK_RV
session_add(struct p11_session *s, tk_attrs_t *l, EVP_PKEY **key, CK_OBJECT_HANDLE *h)
{
	struct p11_object *o = calloc(1, sizeof(*o));
	CK_RV rv = CKR_HOST_MEMORY;

	if (o == NULL || (o->list = calloc(1, sizeof(*o->list))) == NULL)
		goto fail;
	*o->list = *l;
	memset(l, 0, sizeof(*l));
	o->owner = s->h;
	if (tk_obj_class(o->list) == CKO_PRIVATE_KEY)
		o->priv = *key;
	else
		o->pub = *key;
	*key = NULL;
	if (from_attrs(o, o->list) != TK_OK)
		goto fail;
	pthread_mutex_lock(&g_p11.lock);
	if (tk_p11_session_object_add_locked(s->tok, o) == TK_OK) {
		*h = o->handle;
		o = NULL;
		rv = CKR_OK;
	}
	pthread_mutex_unlock(&g_p11.lock);
fail:
	if (o != NULL) {
		tk_p11_object_clear(o);
		free(o);
	}
	return rv;
}

/* New token objects: one write. */
static CK_RV
token_add(struct p11_session *s, tk_soft_change_t *ch, size_t n, CK_OBJECT_HANDLE **h)
{
	tk_soft_t *sf = tk_soft_of(tk_p11_tk(s->tok));
	CK_RV rv;
	int r;

	if (sf == NULL)
		return CKR_TOKEN_WRITE_PROTECTED;
	r = tk_soft_write(sf, ch, &n, NULL, NULL);
	if (r != TK_OK)
		return write_ckr(r);
	if ((rv = follow(s)) != CKR_OK)
		return rv;
	for (size_t i = 0; i < n; i++)
		if ((*h[i] = handle_of(s->tok, ch[i].uid)) == 0)
			return CKR_GENERAL_ERROR;
	return CKR_OK;
}

/* Store (token) or keep (session) the object l with its material. */
static CK_RV
add_object(struct p11_session *s, tk_attrs_t *l, EVP_PKEY **key, const void *secret,
           size_t secret_len, CK_OBJECT_HANDLE *h)
{
	tk_soft_change_t ch;
	CK_OBJECT_HANDLE *hp = h;

	if (!tk_attrs_bool(l, CKA_TOKEN))
		return session_add(s, l, key, h);
	memset(&ch, 0, sizeof(ch));
	ch.op = TK_SOFT_ADD;
	ch.attrs = l;
	ch.key = tk_obj_class(l) == CKO_PRIVATE_KEY ? *key : NULL;
	ch.secret = secret;
	ch.secret_len = secret_len;
	return token_add(s, &ch, 1, &hp);
}

CK_RV
tk_p11_soft_create(struct p11_session *s, const CK_ATTRIBUTE *tpl, CK_ULONG n,
                   CK_OBJECT_HANDLE *out)
{
	tk_attrs_t l = {NULL, 0};
	EVP_PKEY *key = NULL;
	void *secret = NULL;
	size_t secret_len = 0;
	CK_RV rv;
	int r;

	r = tk_obj_template(TK_OBJ_CREATE, tpl, n, NULL, 0, rule_flags(s), &l);
	if (r != TK_OK)
		return write_ckr(r);
	if ((rv = may_write(s, &l)) != CKR_OK)
		goto out;
	if ((r = tk_soft_obj_material(&l, &key, &secret, &secret_len)) != TK_OK) {
		rv = write_ckr(r);
		goto out;
	}
	/* a session secret key keeps its value in its list (module memory) */
	if (secret != NULL && !tk_attrs_bool(&l, CKA_TOKEN) &&
	    tk_attrs_set(&l, CKA_VALUE, secret, secret_len) != TK_OK) {
		rv = CKR_HOST_MEMORY;
		goto out;
	}
	rv = add_object(s, &l, &key, secret, secret_len, out);
out:
	EVP_PKEY_free(key);
	tk_secmem_free(&secret);
	tk_attrs_clear(&l);
	return rv;
}

/* What an object is, taken under the module lock: its attribute list
 * (a copy) and what it needs to be copied or changed. */
struct cur {
	bool found, soft;
	uint8_t uid[TK_SOFT_UID_LEN];
	tk_attrs_t attrs;
	EVP_PKEY *priv;
};

static void
cur_clear(struct cur *c)
{
	tk_attrs_clear(&c->attrs);
	EVP_PKEY_free(c->priv);
	memset(c, 0, sizeof(*c));
}

/* Object h as the session sees it. Errors: CKR_OBJECT_HANDLE_INVALID (none,
 * or not visible; an object of a card, or a derived secret, is found with
 * no list: c->found false, CKR_OK). */
static CK_RV
cur_get(struct p11_session *s, CK_OBJECT_HANDLE h, struct cur *c)
{
	struct p11_object *o;
	tk_soft_snap_t *sn = NULL;
	tk_soft_t *sf;
	CK_RV rv = CKR_OK;

	memset(c, 0, sizeof(*c));
	pthread_mutex_lock(&g_p11.lock);
	o = tk_p11_object_find_locked(s->tok, h);
	if (o == NULL || !tk_p11_object_visible(s->tok, o, s->h)) {
		rv = CKR_OBJECT_HANDLE_INVALID;
	} else if (o->soft) {
		c->found = c->soft = true;
		memcpy(c->uid, o->uid, sizeof(c->uid));
	} else if (o->list != NULL) {
		c->found = true;
		if (tk_attrs_dup(o->list, &c->attrs) != TK_OK)
			rv = CKR_HOST_MEMORY;
		if (o->priv != NULL && EVP_PKEY_up_ref(o->priv) == 1)
			c->priv = o->priv;
	}
	pthread_mutex_unlock(&g_p11.lock);
	if (rv != CKR_OK || !c->soft)
		return rv;
	/* a token object: its stored attributes */
	if ((sf = tk_soft_of(tk_p11_tk(s->tok))) == NULL || (sn = tk_soft_snapshot(sf)) == NULL)
		return CKR_OBJECT_HANDLE_INVALID;
	rv = CKR_OBJECT_HANDLE_INVALID;
	for (size_t i = 0; i < sn->n; i++)
		if (memcmp(sn->objs[i].uid, c->uid, TK_SOFT_UID_LEN) == 0)
			rv = tk_attrs_dup(&sn->objs[i].attrs, &c->attrs) == TK_OK ? CKR_OK
			                                                          : CKR_HOST_MEMORY;
	tk_soft_snap_put(&sn);
	return rv;
}

CK_RV
tk_p11_soft_destroy(struct p11_session *s, CK_OBJECT_HANDLE h)
{
	tk_soft_change_t ch;
	size_t n = 1;
	struct cur c;
	tk_soft_t *sf;
	CK_RV rv = cur_get(s, h, &c);
	int r;

	if (rv != CKR_OK)
		goto out;
	if (c.found && !tk_attrs_bool(&c.attrs, CKA_DESTROYABLE)) {
		rv = CKR_ACTION_PROHIBITED;
		goto out;
	}
	if (!c.soft) {
		rv = CKR_OBJECT_HANDLE_INVALID;
		pthread_mutex_lock(&g_p11.lock);
		for (size_t i = 0; i < s->tok->nsobjs; i++) {
			if (s->tok->sobjs[i]->handle != h)
				continue;
			tk_p11_object_retire_locked(s->tok, s->tok->sobjs[i]);
			memmove(&s->tok->sobjs[i], &s->tok->sobjs[i + 1],
			        (s->tok->nsobjs - i - 1) * sizeof(s->tok->sobjs[0]));
			s->tok->nsobjs--;
			rv = CKR_OK;
			break;
		}
		pthread_mutex_unlock(&g_p11.lock);
		goto out;
	}
	if ((rv = may_write(s, &c.attrs)) != CKR_OK)
		goto out;
	memset(&ch, 0, sizeof(ch));
	ch.op = TK_SOFT_REMOVE;
	memcpy(ch.uid, c.uid, TK_SOFT_UID_LEN);
	sf = tk_soft_of(tk_p11_tk(s->tok));
	r = sf != NULL ? tk_soft_write(sf, &ch, &n, NULL, NULL) : TK_ERR_NOT_FOUND;
	rv = r == TK_OK ? follow(s) : write_ckr(r);
out:
	cur_clear(&c);
	return rv;
}

struct set_arg {
	const uint8_t *uid;
	const CK_ATTRIBUTE *tpl;
	CK_ULONG n;
	unsigned flags;
	tk_attrs_t next;
	tk_soft_change_t *ch;
};

/* Under the write: the change on the object as it is now (another
 * program may have changed it since we looked). */
static int
set_check(const tk_soft_snap_t *sn, void *argp)
{
	struct set_arg *a = argp;

	tk_attrs_clear(&a->next);
	for (size_t i = 0; i < sn->n; i++) {
		int r;

		if (memcmp(sn->objs[i].uid, a->uid, TK_SOFT_UID_LEN) != 0)
			continue;
		if ((r = tk_obj_set(&sn->objs[i].attrs, a->tpl, a->n, a->flags, &a->next)) != TK_OK)
			return r;
		a->ch->attrs = &a->next;
		return TK_OK;
	}
	return TK_ERR_NOT_FOUND;
}

CK_RV
tk_p11_soft_set(struct p11_session *s, CK_OBJECT_HANDLE h, const CK_ATTRIBUTE *tpl, CK_ULONG n)
{
	tk_attrs_t next = {NULL, 0};
	struct set_arg a;
	tk_soft_change_t ch;
	size_t nch = 1;
	struct cur c;
	tk_soft_t *sf;
	CK_RV rv = cur_get(s, h, &c);
	int r;

	memset(&a, 0, sizeof(a));
	if (rv != CKR_OK)
		goto out;
	if (!c.found) {
		rv = CKR_ACTION_PROHIBITED; /* a card's object, a derived secret: CKA_MODIFIABLE
		                               false */
		goto out;
	}
	if ((rv = may_write(s, &c.attrs)) != CKR_OK)
		goto out;
	if ((r = tk_obj_set(&c.attrs, tpl, n, rule_flags(s), &next)) != TK_OK) {
		rv = write_ckr(r);
		goto out;
	}
	if (!c.soft) {
		struct p11_object tmp;

		/* a session object: its new attributes built aside, then swapped */
		memset(&tmp, 0, sizeof(tmp));
		tmp.priv = c.priv;
		r = from_attrs(&tmp, &next);
		tmp.priv = NULL;
		rv = CKR_HOST_MEMORY;
		pthread_mutex_lock(&g_p11.lock);
		struct p11_object *o = tk_p11_object_find_locked(s->tok, h);
		if (r == TK_OK && o != NULL && o->list != NULL) {
			struct p11_attr *oa = o->attrs;
			size_t on = o->nattrs;

			o->attrs = tmp.attrs;
			o->nattrs = tmp.nattrs;
			tmp.attrs = oa;
			tmp.nattrs = on;
			tk_attrs_clear(o->list);
			*o->list = next;
			memset(&next, 0, sizeof(next));
			o->usage = tmp.usage;
			o->ops = tmp.ops;
			rv = CKR_OK;
		} else if (r == TK_OK) {
			rv = CKR_OBJECT_HANDLE_INVALID;
		}
		pthread_mutex_unlock(&g_p11.lock);
		tk_p11_object_clear(&tmp);
		goto out;
	}
	memset(&ch, 0, sizeof(ch));
	ch.op = TK_SOFT_SET_ATTRS;
	memcpy(ch.uid, c.uid, TK_SOFT_UID_LEN);
	a.uid = c.uid;
	a.tpl = tpl;
	a.n = n;
	a.flags = rule_flags(s);
	a.ch = &ch;
	sf = tk_soft_of(tk_p11_tk(s->tok));
	r = sf != NULL ? tk_soft_write(sf, &ch, &nch, set_check, &a) : TK_ERR_NOT_FOUND;
	rv = r == TK_OK ? follow(s) : write_ckr(r);
out:
	tk_attrs_clear(&a.next);
	tk_attrs_clear(&next);
	cur_clear(&c);
	return rv;
}

/* The secret of the object c for a copy: a private key's OpenSSL key, a
 * secret key's value. */
static int
cur_material(struct p11_session *s, struct cur *c, EVP_PKEY **key, void **val, size_t *len)
{
	tk_soft_t *sf;
	const tk_attr_t *v;
	CK_OBJECT_CLASS cls = tk_obj_class(&c->attrs);

	*key = NULL;
	*val = NULL;
	*len = 0;
	if (cls != CKO_PRIVATE_KEY && cls != CKO_SECRET_KEY)
		return TK_OK;
	if (!c->soft) {
		if (cls == CKO_PRIVATE_KEY) {
			if (c->priv == NULL || EVP_PKEY_up_ref(c->priv) != 1)
				return TK_ERR_NOT_FOUND;
			*key = c->priv;
			return TK_OK;
		}
		if ((v = tk_attrs_get(&c->attrs, CKA_VALUE)) == NULL || v->len == 0)
			return TK_ERR_NOT_FOUND;
		if (tk_secmem_dup(v->val, v->len, val) != TK_OK)
			return TK_ERR_NO_MEMORY;
		*len = v->len;
		return TK_OK;
	}
	if ((sf = tk_soft_of(tk_p11_tk(s->tok))) == NULL)
		return TK_ERR_NOT_FOUND;
	return cls == CKO_PRIVATE_KEY ? tk_soft_object_key(sf, c->uid, key)
	                              : tk_soft_object_secret(sf, c->uid, val, len);
}

CK_RV
tk_p11_soft_copy(struct p11_session *s, CK_OBJECT_HANDLE h, const CK_ATTRIBUTE *tpl, CK_ULONG n,
                 CK_OBJECT_HANDLE *out)
{
	tk_attrs_t next = {NULL, 0};
	EVP_PKEY *key = NULL;
	void *val = NULL;
	size_t len = 0;
	struct cur c;
	CK_RV rv = cur_get(s, h, &c);
	int r;

	if (rv != CKR_OK)
		goto out;
	if (!c.found) {
		rv = CKR_ACTION_PROHIBITED; /* CKA_COPYABLE false */
		goto out;
	}
	if ((r = tk_obj_copy(&c.attrs, tpl, n, rule_flags(s), &next)) != TK_OK) {
		rv = write_ckr(r);
		goto out;
	}
	if ((rv = may_write(s, &next)) != CKR_OK)
		goto out;
	if ((r = cur_material(s, &c, &key, &val, &len)) != TK_OK) {
		rv = r == TK_ERR_LOGIN_REQUIRED ? CKR_USER_NOT_LOGGED_IN : write_ckr(r);
		goto out;
	}
	/* a secret key's value: in a session key's list, never in the store's */
	if (tk_obj_class(&next) == CKO_SECRET_KEY) {
		tk_attrs_del(&next, CKA_VALUE);
		if (val != NULL && !tk_attrs_bool(&next, CKA_TOKEN) &&
		    tk_attrs_set(&next, CKA_VALUE, val, len) != TK_OK) {
			rv = CKR_HOST_MEMORY;
			goto out;
		}
	}
	/* a session public key: its OpenSSL key for C_Verify */
	if (tk_obj_class(&next) == CKO_PUBLIC_KEY && !tk_attrs_bool(&next, CKA_TOKEN))
		(void)tk_soft_key_from_attrs(&next, false, &key);
	rv = add_object(s, &next, &key, val, len, out);
out:
	EVP_PKEY_free(key);
	tk_secmem_free(&val);
	tk_attrs_clear(&next);
	cur_clear(&c);
	return rv;
}

/* ---- key pairs ----------------------------------------------------------------------- */

CK_RV
tk_p11_soft_generate_pair(struct p11_session *s, const CK_MECHANISM *m, const CK_ATTRIBUTE *pubt,
                          CK_ULONG npub, const CK_ATTRIBUTE *privt, CK_ULONG npriv,
                          CK_OBJECT_HANDLE *hpub, CK_OBJECT_HANDLE *hpriv)
{
	tk_attrs_t fixed = {NULL, 0}, pub = {NULL, 0}, priv = {NULL, 0};
	const tk_attr_t *e, *params;
	tk_soft_change_t ch[2];
	CK_OBJECT_HANDLE *hs[2];
	CK_ULONG bits = 0;
	CK_KEY_TYPE kt;
	EVP_PKEY *pk = NULL, *pk2 = NULL;
	unsigned flags = rule_flags(s);
	size_t nch = 0;
	CK_RV rv;
	int r;

	switch (m->mechanism) {
	case CKM_RSA_PKCS_KEY_PAIR_GEN:
		kt = CKK_RSA;
		break;
	case CKM_EC_KEY_PAIR_GEN:
		kt = CKK_EC;
		break;
	case CKM_EC_EDWARDS_KEY_PAIR_GEN:
		kt = CKK_EC_EDWARDS;
		break;
	default:
		return CKR_MECHANISM_INVALID;
	}
	if (m->pParameter != NULL || m->ulParameterLen != 0)
		return CKR_MECHANISM_PARAM_INVALID;
	r = tk_attrs_set_ulong(&fixed, CKA_CLASS, CKO_PUBLIC_KEY);
	if (r == TK_OK)
		r = tk_attrs_set_ulong(&fixed, CKA_KEY_TYPE, kt);
	if (r == TK_OK)
		r = tk_obj_template(TK_OBJ_GENERATE, pubt, npub, &fixed, m->mechanism, flags, &pub);
	if (r == TK_OK)
		r = tk_attrs_set_ulong(&fixed, CKA_CLASS, CKO_PRIVATE_KEY);
	if (r == TK_OK)
		r = tk_obj_template(TK_OBJ_GENERATE, privt, npriv, &fixed, m->mechanism, flags,
		                    &priv);
	if (r != TK_OK) {
		rv = write_ckr(r);
		goto out;
	}
	if ((rv = may_write(s, &pub)) != CKR_OK || (rv = may_write(s, &priv)) != CKR_OK)
		goto out;
	e = tk_attrs_get(&pub, CKA_PUBLIC_EXPONENT);
	params = tk_attrs_get(&pub, CKA_EC_PARAMS);
	(void)tk_attrs_ulong(&pub, CKA_MODULUS_BITS, &bits);
	r = tk_soft_key_generate(kt, bits, e != NULL ? e->val : NULL, e != NULL ? e->len : 0,
	                         params != NULL ? params->val : NULL,
	                         params != NULL ? params->len : 0, &pk);
	/* the private key's CKA_EC_PARAMS: the public key's (as given) */
	if (r == TK_OK && params != NULL)
		r = tk_attrs_set(&priv, CKA_EC_PARAMS, params->val, params->len);
	if (r == TK_OK)
		r = tk_soft_key_describe(pk, false, &pub);
	if (r == TK_OK)
		r = tk_soft_key_describe(pk, true, &priv);
	if (r != TK_OK) {
		rv = write_ckr(r);
		goto out;
	}
	/* the token's in one write, both or neither; session ones in memory */
	memset(ch, 0, sizeof(ch));
	if (tk_attrs_bool(&pub, CKA_TOKEN)) {
		ch[nch].op = TK_SOFT_ADD;
		ch[nch].attrs = &pub;
		hs[nch++] = hpub;
	}
	if (tk_attrs_bool(&priv, CKA_TOKEN)) {
		ch[nch].op = TK_SOFT_ADD;
		ch[nch].attrs = &priv;
		ch[nch].key = pk;
		hs[nch++] = hpriv;
	}
	if (nch > 0 && (rv = token_add(s, ch, nch, hs)) != CKR_OK)
		goto out;
	if (!tk_attrs_bool(&pub, CKA_TOKEN)) {
		/* the public half: a key of its own for C_Verify */
		if (tk_soft_key_from_attrs(&pub, false, &pk2) != TK_OK) {
			rv = CKR_FUNCTION_FAILED;
			goto out;
		}
		if ((rv = session_add(s, &pub, &pk2, hpub)) != CKR_OK)
			goto out;
	}
	if (!tk_attrs_bool(&priv, CKA_TOKEN))
		rv = session_add(s, &priv, &pk, hpriv);
out:
	EVP_PKEY_free(pk);
	EVP_PKEY_free(pk2);
	tk_attrs_clear(&fixed);
	tk_attrs_clear(&pub);
	tk_attrs_clear(&priv);
	return rv;
}

/* ---- secret keys ---------------------------------------------------------------------- */

#define GENERIC_GEN_MAX 512 /* bytes of a generated generic secret */

CK_RV
tk_p11_soft_generate(struct p11_session *s, const CK_MECHANISM *m, const CK_ATTRIBUTE *tpl,
                     CK_ULONG n, CK_OBJECT_HANDLE *h)
{
	tk_attrs_t fixed = {NULL, 0}, l = {NULL, 0};
	EVP_PKEY *none = NULL;
	CK_KEY_TYPE kt;
	CK_ULONG len = 0;
	void *val = NULL;
	CK_RV rv;
	int r;

	if (m->mechanism == CKM_AES_KEY_GEN)
		kt = CKK_AES;
	else if (m->mechanism == CKM_GENERIC_SECRET_KEY_GEN)
		kt = CKK_GENERIC_SECRET;
	else
		return CKR_MECHANISM_INVALID;
	if (m->pParameter != NULL || m->ulParameterLen != 0)
		return CKR_MECHANISM_PARAM_INVALID;
	r = tk_attrs_set_ulong(&fixed, CKA_CLASS, CKO_SECRET_KEY);
	if (r == TK_OK)
		r = tk_attrs_set_ulong(&fixed, CKA_KEY_TYPE, kt);
	if (r == TK_OK)
		r = tk_obj_template(TK_OBJ_GENERATE, tpl, n, &fixed, m->mechanism, rule_flags(s),
		                    &l);
	if (r != TK_OK) {
		rv = write_ckr(r);
		goto out;
	}
	if ((rv = may_write(s, &l)) != CKR_OK)
		goto out;
	/* CKA_VALUE_LEN is required (footnote 3): the rules said so */
	(void)tk_attrs_ulong(&l, CKA_VALUE_LEN, &len);
	if (len == 0 || len > GENERIC_GEN_MAX) {
		rv = CKR_ATTRIBUTE_VALUE_INVALID;
		goto out;
	}
	if (tk_secmem_alloc(len, &val) != TK_OK) {
		rv = CKR_HOST_MEMORY;
		goto out;
	}
	if (RAND_priv_bytes_ex(tk_p11_libctx(), val, len, 0) != 1) {
		rv = CKR_FUNCTION_FAILED;
		goto out;
	}
	if ((r = tk_soft_secret_attrs(kt, val, len, &l)) != TK_OK) {
		rv = write_ckr(r);
		goto out;
	}
	if (!tk_attrs_bool(&l, CKA_TOKEN) && tk_attrs_set(&l, CKA_VALUE, val, len) != TK_OK) {
		rv = CKR_HOST_MEMORY;
		goto out;
	}
	rv = add_object(s, &l, &none, val, len, h);
out:
	tk_secmem_free(&val);
	tk_attrs_clear(&fixed);
	tk_attrs_clear(&l);
	return rv;
}

/* ---- wrapping private keys (CKM_AES_KEY_WRAP_PAD, RFC 5649) ------------------------------ */

/* The AES key h for wrapping (need: CKA_WRAP or CKA_UNWRAP) as a cipher
 * and its value. */
static CK_RV
wrapping_key(struct p11_session *s, CK_OBJECT_HANDLE h, CK_ATTRIBUTE_TYPE need, void **val,
             size_t *len, CK_RV invalid, CK_RV inconsistent)
{
	struct cur c;
	EVP_PKEY *none = NULL;
	CK_RV rv = cur_get(s, h, &c);
	int r;

	*val = NULL;
	*len = 0;
	if (rv != CKR_OK || !c.found) {
		rv = invalid;
		goto out;
	}
	if (tk_obj_class(&c.attrs) != CKO_SECRET_KEY || tk_obj_key_type(&c.attrs) != CKK_AES) {
		rv = inconsistent;
		goto out;
	}
	/* a key without CKA_WRAP (CKA_UNWRAP): no wrapping key (C_WrapKey has
	 * no CKR_KEY_FUNCTION_NOT_PERMITTED) */
	if (!tk_attrs_bool(&c.attrs, need)) {
		rv = inconsistent;
		goto out;
	}
	r = cur_material(s, &c, &none, val, len);
	EVP_PKEY_free(none);
	rv = r == TK_OK ? CKR_OK : r == TK_ERR_LOGIN_REQUIRED ? CKR_USER_NOT_LOGGED_IN : invalid;
out:
	cur_clear(&c);
	return rv;
}

static const char *
kw_cipher(size_t len)
{
	return len == 16 ? "AES-128-WRAP-PAD" : len == 24 ? "AES-192-WRAP-PAD" : "AES-256-WRAP-PAD";
}

/* RFC 5649 key wrap (enc) or unwrap of in under kek. */
static int
kw(bool enc, const void *kek, size_t kek_len, const uint8_t *in, size_t in_len, uint8_t *out,
   size_t *out_len)
{
	EVP_CIPHER *c = EVP_CIPHER_fetch(tk_p11_libctx(), kw_cipher(kek_len), NULL);
	EVP_CIPHER_CTX *x = EVP_CIPHER_CTX_new();
	int n = 0, m = 0, r = TK_ERR_CRYPTO;

	if (c != NULL && x != NULL && EVP_CipherInit_ex2(x, c, kek, NULL, enc ? 1 : 0, NULL) == 1 &&
	    EVP_CipherUpdate(x, out, &n, in, (int)in_len) == 1 &&
	    EVP_CipherFinal_ex(x, out + n, &m) == 1) {
		*out_len = (size_t)n + (size_t)m;
		r = TK_OK;
	}
	EVP_CIPHER_CTX_free(x);
	EVP_CIPHER_free(c);
	return r;
}

CK_RV
tk_p11_soft_wrap(struct p11_session *s, const CK_MECHANISM *m, CK_OBJECT_HANDLE hw,
                 CK_OBJECT_HANDLE hk, CK_BYTE *out, CK_ULONG *out_len)
{
	void *kek = NULL, *p8 = NULL;
	size_t kek_len = 0, p8_len = 0, need, got = 0;
	EVP_PKEY *pk = NULL;
	uint8_t *buf = NULL;
	struct cur c;
	CK_RV rv;

	memset(&c, 0, sizeof(c));
	if (m->mechanism != CKM_AES_KEY_WRAP_PAD)
		return CKR_MECHANISM_INVALID;
	if (m->pParameter != NULL || m->ulParameterLen != 0)
		return CKR_MECHANISM_PARAM_INVALID;
	if ((rv = wrapping_key(s, hw, CKA_WRAP, &kek, &kek_len, CKR_WRAPPING_KEY_HANDLE_INVALID,
	                       CKR_WRAPPING_KEY_TYPE_INCONSISTENT)) != CKR_OK)
		goto out;
	if ((rv = cur_get(s, hk, &c)) != CKR_OK || !c.found) {
		rv = CKR_KEY_HANDLE_INVALID;
		goto out;
	}
	/* private keys only, and only what may leave the token (4.9) */
	if (tk_obj_class(&c.attrs) != CKO_PRIVATE_KEY) {
		rv = CKR_KEY_NOT_WRAPPABLE;
		goto out;
	}
	if (!tk_attrs_bool(&c.attrs, CKA_EXTRACTABLE)) {
		rv = CKR_KEY_UNEXTRACTABLE;
		goto out;
	}
	if (tk_attrs_bool(&c.attrs, CKA_WRAP_WITH_TRUSTED)) {
		rv = CKR_KEY_NOT_WRAPPABLE; /* no trusted keys here */
		goto out;
	}
	if (cur_material(s, &c, &pk, &p8, &p8_len) != TK_OK || pk == NULL ||
	    tk_soft_key_to_pkcs8(pk, &p8, &p8_len) != TK_OK) {
		rv = CKR_USER_NOT_LOGGED_IN;
		goto out;
	}
	need = (p8_len + 7) / 8 * 8 + 8;
	if (out == NULL) {
		*out_len = need;
		goto out;
	}
	if (*out_len < need) {
		*out_len = need;
		rv = CKR_BUFFER_TOO_SMALL;
		goto out;
	}
	if ((buf = malloc(need + 16)) == NULL) {
		rv = CKR_HOST_MEMORY;
		goto out;
	}
	if (kw(true, kek, kek_len, p8, p8_len, buf, &got) != TK_OK || got > *out_len) {
		rv = CKR_FUNCTION_FAILED;
		goto out;
	}
	memcpy(out, buf, got);
	*out_len = got;
out:
	free(buf);
	EVP_PKEY_free(pk);
	tk_secmem_free(&p8);
	tk_secmem_free(&kek);
	cur_clear(&c);
	return rv;
}

CK_RV
tk_p11_soft_unwrap(struct p11_session *s, const CK_MECHANISM *m, CK_OBJECT_HANDLE hu,
                   const CK_BYTE *in, CK_ULONG in_len, const CK_ATTRIBUTE *tpl, CK_ULONG n,
                   CK_OBJECT_HANDLE *h)
{
	void *kek = NULL, *p8 = NULL;
	size_t kek_len = 0, p8_len = 0;
	tk_attrs_t l = {NULL, 0};
	EVP_PKEY *pk = NULL;
	CK_RV rv;
	int r;

	if (m->mechanism != CKM_AES_KEY_WRAP_PAD)
		return CKR_MECHANISM_INVALID;
	if (m->pParameter != NULL || m->ulParameterLen != 0)
		return CKR_MECHANISM_PARAM_INVALID;
	if ((rv = wrapping_key(s, hu, CKA_UNWRAP, &kek, &kek_len, CKR_UNWRAPPING_KEY_HANDLE_INVALID,
	                       CKR_UNWRAPPING_KEY_TYPE_INCONSISTENT)) != CKR_OK)
		goto out;
	/* the template first: class and key type given (footnote 5) */
	if ((r = tk_obj_template(TK_OBJ_UNWRAP, tpl, n, NULL, 0, rule_flags(s), &l)) != TK_OK) {
		rv = write_ckr(r);
		goto out;
	}
	if (tk_obj_class(&l) != CKO_PRIVATE_KEY) {
		rv = CKR_TEMPLATE_INCONSISTENT;
		goto out;
	}
	if ((rv = may_write(s, &l)) != CKR_OK)
		goto out;
	if (in_len < 16 || in_len > 16384 || in_len % 8 != 0) {
		rv = CKR_WRAPPED_KEY_LEN_RANGE;
		goto out;
	}
	if (tk_secmem_alloc(in_len, &p8) != TK_OK) {
		rv = CKR_HOST_MEMORY;
		goto out;
	}
	if (kw(false, kek, kek_len, in, in_len, p8, &p8_len) != TK_OK ||
	    tk_soft_key_from_pkcs8(p8, p8_len, &pk) != TK_OK) {
		rv = CKR_WRAPPED_KEY_INVALID;
		goto out;
	}
	/* the key is what the template says (its type), its public values
	 * the key's own */
	if ((r = tk_soft_key_describe(pk, true, &l)) != TK_OK) {
		rv = r == TK_ERR_TEMPLATE_INCONSISTENT ? CKR_TEMPLATE_INCONSISTENT
		                                       : CKR_WRAPPED_KEY_INVALID;
		goto out;
	}
	rv = add_object(s, &l, &pk, NULL, 0, h);
out:
	EVP_PKEY_free(pk);
	tk_secmem_free(&p8);
	tk_secmem_free(&kek);
	tk_attrs_clear(&l);
	return rv;
}
