/* tokenkit: the software token's store, logins and writes (see core/soft.h
 * for the design and soft_int.h for the record).
 *
 * Locking: one mutex per handle (mtx) guards everything in it: the record
 * as last read, its decoded state, the readers' snapshot, the DEK and the
 * decrypted keys. Every write is a read-modify-write of the registration
 * under mtx with the registry's compare-and-swap; a PIN check holds mtx
 * through scrypt (one login at a time per handle is no loss). Key
 * operations never take it: the module holds references to the EVP_PKEYs
 * (tk_soft_object_key) and computes with them directly. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/rand.h>

#include <tokenkit/err.h>
#include <tokenkit/log.h>
#include <tokenkit/mem.h>
#include <tokenkit/text.h>

#include "driver.h"
#include "ossl.h"
#include "provider.h"
#include "registry_priv.h"
#include "secmem.h"
#include "soft_int.h"
#include "x509.h"

#define WRITE_TRIES 16

/* ---- snapshots ------------------------------------------------------------------------ */

static void
snap_free(tk_soft_snap_t *sn)
{
	for (size_t i = 0; i < sn->n; i++)
		tk_attrs_clear(&sn->objs[i].attrs);
	free(sn->objs);
	free(sn);
}

void
tk_soft_snap_put(tk_soft_snap_t **sp)
{
	tk_soft_snap_t *sn;

	if (sp == NULL || (sn = *sp) == NULL)
		return;
	*sp = NULL;
	if (__atomic_sub_fetch(&sn->refs, 1, __ATOMIC_ACQ_REL) == 0)
		snap_free(sn);
}

static int
snap_build(const struct soft_state *st, uint64_t gen, tk_soft_snap_t **out)
{
	tk_soft_snap_t *sn = calloc(1, sizeof(*sn));

	*out = NULL;
	if (sn == NULL)
		return TK_ERR_NO_MEMORY;
	sn->refs = 1;
	sn->gen = gen;
	if (st->n > 0 && (sn->objs = calloc(st->n, sizeof(*sn->objs))) == NULL)
		goto fail;
	for (size_t i = 0; i < st->n; i++) {
		memcpy(sn->objs[i].uid, st->objs[i].uid, TK_SOFT_UID_LEN);
		sn->objs[i].sealed = st->objs[i].sealed != NULL;
		sn->n = i + 1;
		if (tk_attrs_dup(&st->objs[i].attrs, &sn->objs[i].attrs) != TK_OK)
			goto fail;
	}
	*out = sn;
	return TK_OK;
fail:
	snap_free(sn);
	return TK_ERR_NO_MEMORY;
}

tk_soft_snap_t *
tk_soft_snapshot(tk_soft_t *s)
{
	tk_soft_snap_t *sn;

	pthread_mutex_lock(&s->mtx);
	sn = s->snap;
	if (sn != NULL)
		__atomic_add_fetch(&sn->refs, 1, __ATOMIC_ACQ_REL);
	pthread_mutex_unlock(&s->mtx);
	return sn;
}

/* ---- the decrypted secrets ---------------------------------------------------------------- */

static void
key_clear(struct soft_key *k)
{
	EVP_PKEY_free(k->pk);
	tk_secmem_free(&k->val);
	memset(k, 0, sizeof(*k));
}

static void
keys_clear_locked(tk_soft_t *s)
{
	for (size_t i = 0; i < s->nkeys; i++)
		key_clear(&s->keys[i]);
	free(s->keys);
	s->keys = NULL;
	s->nkeys = 0;
}

static struct soft_key *
key_find_locked(tk_soft_t *s, const uint8_t *uid)
{
	for (size_t i = 0; i < s->nkeys; i++)
		if (memcmp(s->keys[i].uid, uid, TK_SOFT_UID_LEN) == 0)
			return &s->keys[i];
	return NULL;
}

/* Open o's sealed part with the DEK into a key entry. */
static int
key_open(const uint8_t *dek, const struct soft_obj *o, struct soft_key *k)
{
	void *pt = NULL;
	size_t len = 0;
	int r;

	memset(k, 0, sizeof(*k));
	memcpy(k->uid, o->uid, TK_SOFT_UID_LEN);
	if ((r = tk_soft_unseal(dek, o, &pt, &len)) != TK_OK)
		return r;
	if (tk_obj_class(&o->attrs) == CKO_PRIVATE_KEY) {
		r = tk_soft_key_from_pkcs8(pt, len, &k->pk);
		tk_secmem_free(&pt);
		return r;
	}
	k->val = pt;
	k->len = len;
	return TK_OK;
}

static void
logout_locked(tk_soft_t *s)
{
	keys_clear_locked(s);
	if (s->dek != NULL) {
		void *d = s->dek;

		tk_secmem_free(&d);
		s->dek = NULL;
	}
}

/* The secrets of st's objects while logged in: those already open stay,
 * new ones are opened, gone ones dropped. A sealed part this DEK does not
 * open means the token was made anew under us (another DEK): logged out. */
static void
keys_sync_locked(tk_soft_t *s)
{
	struct soft_key *nk;
	size_t n = 0;
	int r = TK_OK;

	if (s->dek == NULL)
		return;
	if ((nk = calloc(s->st.n + 1, sizeof(*nk))) == NULL) {
		logout_locked(s);
		return;
	}
	for (size_t i = 0; i < s->st.n && r == TK_OK; i++) {
		const struct soft_obj *o = &s->st.objs[i];
		struct soft_key *old;

		if (o->sealed == NULL)
			continue;
		if ((old = key_find_locked(s, o->uid)) != NULL) {
			nk[n++] = *old;
			memset(old, 0, sizeof(*old));
			continue;
		}
		if ((r = key_open(s->dek, o, &nk[n])) == TK_OK)
			n++;
	}
	keys_clear_locked(s);
	s->keys = nk;
	s->nkeys = n;
	if (r != TK_OK) {
		tk_log_warn("soft: %s: a key does not open with the login's key (%s): logged out",
		            s->instance, tk_strerror(r));
		logout_locked(s);
	}
}

bool
tk_soft_user_logged_in(tk_soft_t *s)
{
	bool in;

	pthread_mutex_lock(&s->mtx);
	in = s->dek != NULL && s->role == SOFT_USER;
	pthread_mutex_unlock(&s->mtx);
	return in;
}

int
tk_soft_object_key(tk_soft_t *s, const uint8_t uid[TK_SOFT_UID_LEN], EVP_PKEY **out)
{
	struct soft_key *k;
	int r = TK_OK;

	*out = NULL;
	pthread_mutex_lock(&s->mtx);
	if (s->dek == NULL || s->role != SOFT_USER)
		r = TK_ERR_LOGIN_REQUIRED;
	else if ((k = key_find_locked(s, uid)) == NULL)
		r = TK_ERR_NOT_FOUND;
	else if (k->pk == NULL)
		r = TK_ERR_NOT_SUPPORTED;
	else if (EVP_PKEY_up_ref(k->pk) != 1)
		r = TK_ERR_NO_MEMORY;
	else
		*out = k->pk;
	pthread_mutex_unlock(&s->mtx);
	return r;
}

int
tk_soft_object_secret(tk_soft_t *s, const uint8_t uid[TK_SOFT_UID_LEN], void **val, size_t *len)
{
	struct soft_key *k;
	int r = TK_OK;

	*val = NULL;
	*len = 0;
	pthread_mutex_lock(&s->mtx);
	if (s->dek == NULL || s->role != SOFT_USER)
		r = TK_ERR_LOGIN_REQUIRED;
	else if ((k = key_find_locked(s, uid)) == NULL)
		r = TK_ERR_NOT_FOUND;
	else if (k->val == NULL)
		r = TK_ERR_NOT_SUPPORTED;
	else if ((r = tk_secmem_dup(k->val, k->len > 0 ? k->len : 1, val)) == TK_OK)
		*len = k->len;
	pthread_mutex_unlock(&s->mtx);
	return r;
}

/* ---- handles ---------------------------------------------------------------------------- */

/* Take rec and st (both the caller's no more) as the handle's current
 * state; the readers' snapshot follows. */
static int
install_locked(tk_soft_t *s, tk_registration_t **rec, struct soft_state *st)
{
	tk_soft_snap_t *sn = NULL;
	int r;

	if ((r = snap_build(st, tk_registration_generation(*rec), &sn)) != TK_OK) {
		tk_registration_free(rec);
		tk_soft_state_clear(st);
		return r;
	}
	tk_registration_free(&s->rec);
	s->rec = *rec;
	*rec = NULL;
	tk_soft_state_clear(&s->st);
	s->st = *st;
	memset(st, 0, sizeof(*st));
	snprintf(s->label, sizeof(s->label), "%s", tk_registration_label(s->rec));
	tk_soft_snap_put(&s->snap);
	s->snap = sn;
	keys_sync_locked(s);
	return TK_OK;
}

static int
decode_config(const tk_registration_t *reg, struct soft_state *st)
{
	const uint8_t *cfg = NULL;
	size_t len = 0;

	tk_registration_config(reg, &cfg, &len);
	return tk_soft_state_decode(cfg, len, st);
}

int
tk_soft_new(const tk_registration_t *reg, tk_soft_t **out)
{
	tk_registration_t *copy = NULL;
	struct soft_state st;
	tk_soft_t *s;
	int r;

	*out = NULL;
	if (strcmp(tk_registration_provider(reg), TK_SOFT_PROVIDER) != 0)
		return TK_ERR_NOT_SUPPORTED;
	if ((r = decode_config(reg, &st)) != TK_OK) {
		tk_log_warn("soft: %s: its record does not parse: %s",
		            tk_registration_instance(reg), tk_strerror(r));
		return TK_ERR_MALFORMED;
	}
	if ((s = calloc(1, sizeof(*s))) == NULL || pthread_mutex_init(&s->mtx, NULL) != 0) {
		free(s);
		tk_soft_state_clear(&st);
		return TK_ERR_NO_MEMORY;
	}
	snprintf(s->instance, sizeof(s->instance), "%s", tk_registration_instance(reg));
	r = tk_registration_dup(reg, &copy);
	if (r == TK_OK && tk_reg_store(reg) != NULL &&
	    (s->store = strdup(tk_reg_store(reg))) == NULL)
		r = TK_ERR_NO_MEMORY;
	if (r == TK_OK)
		r = tk_registration_dup(reg, &s->model);
	if (r == TK_OK) {
		pthread_mutex_lock(&s->mtx);
		r = install_locked(s, &copy, &st);
		pthread_mutex_unlock(&s->mtx);
	}
	if (r != TK_OK) {
		tk_registration_free(&copy);
		tk_soft_state_clear(&st);
		tk_soft_free(s);
		return r;
	}
	*out = s;
	return TK_OK;
}

void
tk_soft_free(tk_soft_t *s)
{
	if (s == NULL)
		return;
	logout_locked(s);
	tk_soft_snap_put(&s->snap);
	tk_soft_state_clear(&s->st);
	tk_registration_free(&s->rec);
	tk_registration_free(&s->model);
	tk_registry_free(&s->reg);
	free(s->store);
	pthread_mutex_destroy(&s->mtx);
	free(s);
}

static int
open_store_locked(tk_soft_t *s)
{
	tk_registry_opts_t o;

	if (s->reg != NULL)
		return TK_OK;
	tk_registry_opts_init(&o);
	o.path = s->store; /* NULL: the user's */
	o.flags = TK_REGISTRY_NO_CREATE;
	return tk_registry_open(&o, &s->reg);
}

int
tk_soft_refresh_locked(tk_soft_t *s)
{
	tk_registration_t *cur = NULL;
	struct soft_state st;
	int r;

	if ((r = open_store_locked(s)) != TK_OK)
		return r;
	r = tk_registry_get(s->reg, TK_SOFT_PROVIDER, s->instance, &cur);
	if (r == TK_ERR_STORE_CHANGED) {
		/* the store was replaced: the token as that store has it (or
		 * none), never the one we remember */
		tk_log_info("soft: %s: the registry store changed; reading the token again",
		            s->instance);
		if ((r = tk_registry_reopen(s->reg, NULL)) == TK_OK)
			r = tk_registry_get(s->reg, TK_SOFT_PROVIDER, s->instance, &cur);
	}
	if (r != TK_OK)
		return r;
	if (tk_registration_generation(cur) == tk_registration_generation(s->rec) &&
	    tk_registration_equal(cur, s->rec)) {
		tk_registration_free(&cur);
		return TK_OK;
	}
	if ((r = decode_config(cur, &st)) != TK_OK) {
		tk_log_warn("soft: %s: its record does not parse: %s", s->instance, tk_strerror(r));
		tk_registration_free(&cur);
		return TK_ERR_MALFORMED;
	}
	return install_locked(s, &cur, &st);
}

/* ---- writes -------------------------------------------------------------------------- */

/* A label the registry takes (printable UTF-8, at most TK_REG_LABEL_MAX
 * bytes), or "" for one it would not. */
static void
item_label(const tk_attrs_t *a, char *out, size_t cap)
{
	const tk_attr_t *l = tk_attrs_get(a, CKA_LABEL);

	out[0] = '\0';
	if (l == NULL || l->len == 0 || l->len >= cap || l->len > TK_REG_LABEL_MAX ||
	    memchr(l->val, '\0', l->len) != NULL ||
	    tk_text_escape((const char *)l->val, l->len, TK_TEXT_PLAIN, NULL, 0) != l->len)
		return;
	memcpy(out, l->val, l->len);
	out[l->len] = '\0';
}

/* An item's id: the object's CKA_ID when it has one no other object of its
 * kind shares, else its uid (item ids pair keys with certificates and
 * must not repeat within a kind). */
static void
item_id(const struct soft_state *st, const struct soft_obj *o, const uint8_t **id, size_t *len)
{
	const tk_attr_t *a = tk_attrs_get(&o->attrs, CKA_ID);
	CK_OBJECT_CLASS cls = tk_obj_class(&o->attrs);

	*id = o->uid;
	*len = TK_SOFT_UID_LEN;
	if (a == NULL || a->len == 0 || a->len > TK_REG_ID_MAX)
		return;
	for (size_t i = 0; i < st->n; i++) {
		const struct soft_obj *x = &st->objs[i];
		const tk_attr_t *b;

		if (x == o || tk_obj_class(&x->attrs) != cls)
			continue;
		b = tk_attrs_get(&x->attrs, CKA_ID);
		if (b != NULL && b->len == a->len && memcmp(b->val, a->val, a->len) == 0)
			return;
	}
	*id = a->val;
	*len = a->len;
}

int
tk_soft_tk_key_type(CK_KEY_TYPE kt)
{
	switch (kt) {
	case CKK_RSA:
		return TK_KEY_RSA;
	case CKK_EC:
		return TK_KEY_EC;
	case CKK_EC_EDWARDS:
		return TK_KEY_ED25519;
	default:
		return TK_KEY_NONE;
	}
}

/* A certificate the token model can read (tk_reg_model refuses a
 * registration with one it cannot). */
static bool
cert_readable(const uint8_t *der, size_t len)
{
	unsigned bits;
	tk_x509_t x;
	int kt;

	return tk_x509_parse(der, len, &x) == TK_OK &&
	       tk_spki_info(x.spki, x.spki_len, &kt, &bits) == TK_OK;
}

int
tk_soft_items(const struct soft_state *st, tk_registration_t *r)
{
	int res = TK_OK;

	tk_registration_clear_items(r);
	for (size_t i = 0; i < st->n && res == TK_OK; i++) {
		const struct soft_obj *o = &st->objs[i];
		CK_OBJECT_CLASS cls = tk_obj_class(&o->attrs);
		const tk_attr_t *der;
		char label[TK_REG_LABEL_MAX + 1];
		tk_reg_item_t it;
		int kt = TK_KEY_NONE;
		unsigned bits = 0;

		memset(&it, 0, sizeof(it));
		item_label(&o->attrs, label, sizeof(label));
		it.label = label;
		item_id(st, o, &it.id, &it.id_len);
		if (cls == CKO_CERTIFICATE) {
			der = tk_attrs_get(&o->attrs, CKA_VALUE);
			/* only what everyone can read (the token model parses it) */
			if (der == NULL || der->len == 0 || der->len > TK_REG_DER_MAX ||
			    !cert_readable(der->val, der->len))
				continue;
			it.kind = TK_REG_ITEM_CERT;
			it.der = der->val;
			it.der_len = der->len;
		} else if (cls == CKO_PRIVATE_KEY) {
			der = tk_attrs_get(&o->attrs, CKA_PUBLIC_KEY_INFO);
			if (der == NULL || der->len == 0 || der->len > TK_REG_DER_MAX ||
			    (kt = tk_soft_tk_key_type(tk_obj_key_type(&o->attrs))) == TK_KEY_NONE)
				continue;
			it.kind = TK_REG_ITEM_KEY;
			it.der = der->val;
			it.der_len = der->len;
			it.key_type = kt;
			if (tk_spki_info(der->val, der->len, &kt, &bits) != TK_OK ||
			    kt != it.key_type)
				continue;
			it.key_bits = bits;
			it.usage = (tk_attrs_bool(&o->attrs, CKA_SIGN) ? TK_USAGE_SIGN : 0) |
			           (tk_attrs_bool(&o->attrs, CKA_DECRYPT) ? TK_USAGE_DECRYPT : 0) |
			           (tk_attrs_bool(&o->attrs, CKA_DERIVE) ? TK_USAGE_DERIVE : 0);
			/* only what the key type serves (an Ed25519 key's CKA_DERIVE,
			 * which clients set on every EC-family key, is no ECDH) */
			it.usage &= tk_drv_usage_for(it.key_type);
			it.handle = o->uid;
			it.handle_len = TK_SOFT_UID_LEN;
		} else {
			continue;
		}
		res = tk_registration_add_item(r, &it);
	}
	return res;
}

/* Read the record, change its state with fn, write it back (compare-and-
 * swap; read again and redo on a conflict). mtx held. */
static int
update_locked(tk_soft_t *s, int (*fn)(tk_soft_t *s, struct soft_state *st, void *arg), void *arg)
{
	int r = TK_ERR_CONFLICT;

	for (int attempt = 0; attempt < WRITE_TRIES && r == TK_ERR_CONFLICT; attempt++) {
		tk_registration_t *next = NULL;
		struct soft_state st;
		uint8_t *cfg = NULL;
		size_t len = 0;
		uint64_t gen = 0;

		if ((r = tk_soft_refresh_locked(s)) != TK_OK)
			return r;
		if ((r = tk_soft_state_dup(&s->st, &st)) != TK_OK)
			return r;
		if ((r = fn(s, &st, arg)) == TK_OK &&
		    (r = tk_soft_state_encode(&st, &cfg, &len)) == TK_OK &&
		    (r = tk_registration_dup(s->rec, &next)) == TK_OK &&
		    (r = tk_registration_set_config(next, cfg, len)) == TK_OK)
			r = tk_soft_items(&st, next);
		if (r == TK_OK) {
			r = tk_registry_put(s->reg, next, tk_registration_generation(s->rec), &gen);
			if (r == TK_OK)
				r = tk_reg_set_store(next, tk_registry_path(s->reg));
			if (r == TK_OK)
				r = install_locked(s, &next, &st);
		}
		tk_freezero(cfg, len);
		tk_registration_free(&next);
		tk_soft_state_clear(&st);
		if (r == TK_ERR_CONFLICT)
			tk_log_debug("soft: %s: another writer came first; again", s->instance);
	}
	return r;
}

struct write_arg {
	tk_soft_change_t *ch;
	size_t *n;
	int (*check)(const tk_soft_snap_t *objs, void *arg);
	void *arg;
};

static int
apply_add(tk_soft_t *s, struct soft_state *st, tk_soft_change_t *c)
{
	struct soft_obj *no, *o;
	void *p8 = NULL;
	size_t p8_len = 0;
	int r;

	if (st->n >= TK_SOFT_OBJECTS_MAX)
		return TK_ERR_TOO_LONG;
	if ((c->key != NULL || c->secret != NULL) && (s->dek == NULL || s->role != SOFT_USER))
		return TK_ERR_LOGIN_REQUIRED;
	if ((no = realloc(st->objs, (st->n + 1) * sizeof(*no))) == NULL)
		return TK_ERR_NO_MEMORY;
	st->objs = no;
	o = &st->objs[st->n];
	memset(o, 0, sizeof(*o));
	do {
		if (RAND_bytes_ex(tk_ossl_libctx(), c->uid, TK_SOFT_UID_LEN, 0) != 1)
			return TK_ERR_CRYPTO;
	} while (tk_soft_state_find(st, c->uid) != NULL);
	memcpy(o->uid, c->uid, TK_SOFT_UID_LEN);
	st->n++;
	if ((r = tk_attrs_dup(c->attrs, &o->attrs)) != TK_OK)
		return r;
	if (c->key != NULL) {
		if ((r = tk_soft_key_to_pkcs8(c->key, &p8, &p8_len)) != TK_OK)
			return r;
		r = tk_soft_seal(s->dek, o, p8, p8_len, &o->sealed, &o->sealed_len);
		tk_secmem_free(&p8);
	} else if (c->secret != NULL) {
		r = tk_soft_seal(s->dek, o, c->secret, c->secret_len, &o->sealed, &o->sealed_len);
	}
	return r;
}

static int
apply_changes(tk_soft_t *s, struct soft_state *st, void *argp)
{
	struct write_arg *a = argp;
	tk_soft_snap_t *now = NULL;
	int r = TK_OK;

	if (a->check != NULL) {
		if ((r = snap_build(st, tk_registration_generation(s->rec), &now)) != TK_OK)
			return r;
		r = a->check(now, a->arg);
		tk_soft_snap_put(&now);
		if (r != TK_OK)
			return r;
	}
	for (size_t i = 0; i < *a->n && r == TK_OK; i++) {
		tk_soft_change_t *c = &a->ch[i];
		struct soft_obj *o;

		switch (c->op) {
		case TK_SOFT_ADD:
			r = apply_add(s, st, c);
			break;
		case TK_SOFT_SET_ATTRS:
			if ((o = tk_soft_state_find(st, c->uid)) == NULL) {
				r = TK_ERR_NOT_FOUND;
				break;
			}
			tk_attrs_clear(&o->attrs);
			r = tk_attrs_dup(c->attrs, &o->attrs);
			break;
		case TK_SOFT_REMOVE:
			if ((o = tk_soft_state_find(st, c->uid)) == NULL) {
				r = TK_ERR_NOT_FOUND;
				break;
			}
			tk_attrs_clear(&o->attrs);
			free(o->sealed);
			memmove(o, o + 1, (size_t)(st->objs + st->n - o - 1) * sizeof(*o));
			st->n--;
			break;
		default:
			r = TK_ERR_INVALID_ARG;
		}
	}
	return r;
}

int
tk_soft_write(tk_soft_t *s, tk_soft_change_t *ch, size_t *n,
              int (*check)(const tk_soft_snap_t *objs, void *arg), void *arg)
{
	struct write_arg a = {ch, n, check, arg};
	int r;

	if (s == NULL || n == NULL || (ch == NULL && *n > 0))
		return TK_ERR_INVALID_ARG;
	pthread_mutex_lock(&s->mtx);
	r = update_locked(s, apply_changes, &a);
	pthread_mutex_unlock(&s->mtx);
	if (r != TK_OK && r != TK_ERR_NOT_FOUND && r != TK_ERR_LOGIN_REQUIRED)
		tk_log_info("soft: %s: write not done: %s", s->instance, tk_strerror(r));
	return r;
}

/* ---- PINs -------------------------------------------------------------------------------- */

struct pin_step {
	int role;
	bool count; /* one more failed try (before the check) */
	bool locked;
	/* after a good check: the counter back to zero, and a new wrap */
	const struct soft_wrap *new_wrap;
	int new_role;
};

static int
pin_step(tk_soft_t *s, struct soft_state *st, void *argp)
{
	struct pin_step *p = argp;

	(void)s;
	if (p->count) {
		if (st->fails[p->role] >= st->max_tries) {
			p->locked = true;
			return TK_ERR_PIN_LOCKED;
		}
		st->fails[p->role]++;
		return TK_OK;
	}
	st->fails[p->role] = 0;
	if (p->new_wrap != NULL) {
		st->wrap[p->new_role] = *p->new_wrap;
		if (p->new_role == SOFT_USER)
			st->fails[SOFT_USER] = 0; /* a new user PIN starts afresh */
	}
	return TK_OK;
}

/* Check pin for role: the failed try counted (written) first, then scrypt.
 * On success dek (secret memory, SOFT_DEK_LEN) holds the DEK and, with
 * reset, the counter is back to zero (else the caller's next write does
 * that, with what it changes). mtx held. */
static int
pin_check_locked(tk_soft_t *s, int role, const uint8_t *pin, size_t len, uint8_t *dek, bool reset,
                 int *tries_left)
{
	struct pin_step step = {role, true, false, NULL, 0};
	int r;

	if (tries_left != NULL)
		*tries_left = -1;
	if (len < TK_SOFT_PIN_MIN || len > TK_SOFT_PIN_MAX)
		return TK_ERR_PIN_INCORRECT;
	r = update_locked(s, pin_step, &step);
	if (r != TK_OK) {
		if (step.locked && tries_left != NULL)
			*tries_left = 0;
		return r;
	}
	r = tk_soft_unwrap(&s->st.wrap[role], role, pin, len, dek);
	if (r == TK_ERR_PIN_INCORRECT) {
		int left = (int)s->st.max_tries - (int)s->st.fails[role];

		if (tries_left != NULL)
			*tries_left = left;
		tk_log_info("soft: %s: wrong %s PIN; %d tries left", s->instance,
		            role == SOFT_SO ? "SO" : "user", left);
		return left <= 0 ? TK_ERR_PIN_LOCKED : TK_ERR_PIN_INCORRECT;
	}
	if (r != TK_OK || !reset)
		return r;
	step.count = false;
	if ((r = update_locked(s, pin_step, &step)) != TK_OK)
		tk_log_warn("soft: %s: the PIN was right but its try counter stays counted: %s",
		            s->instance, tk_strerror(r));
	if (tries_left != NULL)
		*tries_left = (int)s->st.max_tries - (int)s->st.fails[role];
	return TK_OK;
}

int
tk_soft_pin_login(tk_soft_t *s, int role, const uint8_t *pin, size_t len, int *tries_left)
{
	void *dek = NULL;
	int r;

	if ((r = tk_secmem_alloc(SOFT_DEK_LEN, &dek)) != TK_OK)
		return r;
	pthread_mutex_lock(&s->mtx);
	r = pin_check_locked(s, role, pin, len, dek, true, tries_left);
	if (r == TK_OK) {
		logout_locked(s);
		s->dek = dek;
		s->role = role;
		dek = NULL;
		keys_sync_locked(s);
		if (s->dek == NULL)
			r = TK_ERR_CRYPTO;
	}
	pthread_mutex_unlock(&s->mtx);
	tk_secmem_free(&dek);
	return r;
}

void
tk_soft_pin_logout(tk_soft_t *s)
{
	pthread_mutex_lock(&s->mtx);
	logout_locked(s);
	pthread_mutex_unlock(&s->mtx);
}

static unsigned
log2n_of(const struct soft_state *st, int role)
{
	return st->wrap[role].present ? st->wrap[role].log2n : SOFT_LOG2N_DEFAULT;
}

/* Open the DEK with check_role's PIN and wrap it for new_role under
 * new_pin (at new_role's KDF cost), in the one write that also resets
 * check_role's counter: a PIN change (same role) or the SO's reset of the
 * user PIN. */
static int
rewrap(tk_soft_t *s, int check_role, const uint8_t *pin, size_t pin_len, int new_role,
       const uint8_t *new_pin, size_t new_len)
{
	struct soft_wrap w;
	void *dek = NULL;
	int r;

	if (new_len < TK_SOFT_PIN_MIN || new_len > TK_SOFT_PIN_MAX)
		return TK_ERR_INVALID_ARG;
	if ((r = tk_secmem_alloc(SOFT_DEK_LEN, &dek)) != TK_OK)
		return r;
	pthread_mutex_lock(&s->mtx);
	r = pin_check_locked(s, check_role, pin, pin_len, dek, false, NULL);
	if (r == TK_OK)
		r = tk_soft_wrap(dek, new_role, new_pin, new_len, log2n_of(&s->st, new_role), &w);
	if (r == TK_OK) {
		struct pin_step step = {check_role, false, false, &w, new_role};

		r = update_locked(s, pin_step, &step);
	}
	pthread_mutex_unlock(&s->mtx);
	tk_wipe(&w, sizeof(w));
	tk_secmem_free(&dek);
	return r;
}

int
tk_soft_pin_change(tk_soft_t *s, int role, const uint8_t *old_pin, size_t old_len,
                   const uint8_t *new_pin, size_t new_len)
{
	return rewrap(s, role, old_pin, old_len, role, new_pin, new_len);
}

int
tk_soft_pin_reset(tk_soft_t *s, const uint8_t *so_pin, size_t so_len, const uint8_t *new_pin,
                  size_t new_len)
{
	return rewrap(s, SOFT_SO, so_pin, so_len, SOFT_USER, new_pin, new_len);
}

int
tk_soft_pin_tries(tk_soft_t *s, int role, int *left, int *max)
{
	pthread_mutex_lock(&s->mtx);
	*max = s->st.max_tries;
	*left = (int)s->st.max_tries - (int)s->st.fails[role];
	pthread_mutex_unlock(&s->mtx);
	return TK_OK;
}

/* ---- the provider ------------------------------------------------------------------------ */

tk_soft_t *
tk_soft_of(tk_token_t *t)
{
	return tk_token_provider_state(t, &tk_soft_provider);
}

/* The token model of reg: tk_reg_model's, with the store's limits. The
 * PKCS#11 module shows a software token's objects from its store
 * (pkcs11/softobj.c), whatever PKCS#11 clients wrote there; when the items
 * make no model (an id longer than the model takes, a certificate it
 * cannot read ...), the token is still a token: one without key slots,
 * never none. */
static int
soft_model(const tk_registration_t *reg, tk_drv_model_t *m)
{
	tk_registration_t *bare = NULL;
	int r = tk_reg_model(reg, m);

	if (r != TK_OK && r != TK_ERR_NO_MEMORY) {
		tk_log_info("soft: %s: its objects make no key slots (%s); the token has none",
		            tk_registration_instance(reg), tk_strerror(r));
		r = tk_registration_dup(reg, &bare);
		if (r == TK_OK) {
			tk_registration_clear_items(bare);
			r = tk_reg_model(bare, m);
		}
		tk_registration_free(&bare);
	}
	if (r != TK_OK)
		return r;
	m->pin_min_len = TK_SOFT_PIN_MIN;
	m->pin_max_len = TK_SOFT_PIN_MAX;
	snprintf(m->model, sizeof(m->model), "software token");
	snprintf(m->manufacturer, sizeof(m->manufacturer), "tokenkit");
	return TK_OK;
}

static int
prov_open(const tk_registration_t *reg, void **state, tk_drv_model_t *m)
{
	tk_soft_t *s = NULL;
	int r;

	*state = NULL;
	if ((r = tk_soft_new(reg, &s)) != TK_OK)
		return r;
	if ((r = soft_model(reg, m)) != TK_OK) {
		tk_soft_free(s);
		return r;
	}
	*state = s;
	return TK_OK;
}

static int
prov_update(void *state, const tk_registration_t *reg, tk_drv_model_t *m)
{
	tk_soft_t *s = state;
	tk_registration_t *copy = NULL, *model = NULL;
	struct soft_state st;
	int r;

	if ((r = soft_model(reg, m)) != TK_OK)
		return r;
	if ((r = tk_registration_dup(reg, &model)) != TK_OK)
		goto fail;
	pthread_mutex_lock(&s->mtx);
	tk_registration_free(&s->model);
	s->model = model;
	/* our own writes are installed already. An event older than what we
	 * hold (the one for a write of ours, heard after a later write of
	 * ours) must not take the token back: the store says what is now (and
	 * notices a store replaced, whose generations start again) */
	if (tk_registration_generation(reg) < tk_registration_generation(s->rec)) {
		r = tk_soft_refresh_locked(s);
	} else if (tk_registration_generation(reg) != tk_registration_generation(s->rec) ||
	           !tk_registration_equal(reg, s->rec)) {
		r = decode_config(reg, &st);
		if (r == TK_OK && (r = tk_registration_dup(reg, &copy)) == TK_OK)
			r = install_locked(s, &copy, &st);
		else if (r == TK_OK)
			tk_soft_state_clear(&st);
	}
	pthread_mutex_unlock(&s->mtx);
	if (r == TK_OK)
		return TK_OK;
fail:
	tk_drv_model_clear(m);
	return r;
}

static int
prov_pin_verify(void *state, int user, const uint8_t *pin, size_t pin_len, int *retries)
{
	tk_soft_t *s = state;

	*retries = -1;
	if (pin == NULL) {
		tk_soft_pin_logout(s);
		return TK_OK;
	}
	if (user == TK_USER_CONTEXT) {
		/* no PIN-always keys here: a check of the user PIN like any */
		user = TK_USER_USER;
	}
	return tk_soft_pin_login(s, user == TK_USER_SO ? SOFT_SO : SOFT_USER, pin, pin_len,
	                         retries);
}

static int
prov_pin_status(void *state, int user, tk_drv_pin_status_t *st)
{
	tk_soft_t *s = state;
	int role = user == TK_USER_SO ? SOFT_SO : SOFT_USER;

	/* st comes from the host with its size set: only the fields */
	tk_soft_pin_tries(s, role, &st->retries, &st->max_retries);
	st->locked = st->retries <= 0;
	pthread_mutex_lock(&s->mtx);
	st->verified = s->dek != NULL && s->role == role;
	pthread_mutex_unlock(&s->mtx);
	return TK_OK;
}

static int
prov_pin_change(void *state, int user, const uint8_t *old_pin, size_t old_len,
                const uint8_t *new_pin, size_t new_len)
{
	return tk_soft_pin_change(state, user == TK_USER_SO ? SOFT_SO : SOFT_USER, old_pin, old_len,
	                          new_pin, new_len);
}

static int
prov_pin_unblock(void *state, const uint8_t *puk, size_t puk_len, const uint8_t *new_pin,
                 size_t new_len)
{
	return tk_soft_pin_reset(state, puk, puk_len, new_pin, new_len);
}

static int
prov_key_op(void *state, const tk_drv_key_t *slot, int op, const uint8_t *in, size_t in_len,
            uint8_t *out, size_t out_cap, size_t *out_len)
{
	tk_soft_t *s = state;
	uint8_t uid[TK_SOFT_UID_LEN];
	tk_reg_item_t it;
	EVP_PKEY *pk = NULL;
	int r;

	*out_len = 0;
	pthread_mutex_lock(&s->mtx);
	r = tk_registration_item(s->model, slot->key_ref, &it);
	if (r == TK_OK && (it.kind != TK_REG_ITEM_KEY || it.handle_len != TK_SOFT_UID_LEN))
		r = TK_ERR_NOT_FOUND;
	if (r == TK_OK)
		memcpy(uid, it.handle, sizeof(uid));
	pthread_mutex_unlock(&s->mtx);
	if (r != TK_OK)
		return r;
	if ((r = tk_soft_object_key(s, uid, &pk)) != TK_OK)
		return r == TK_ERR_LOGIN_REQUIRED ? TK_ERR_SECURITY_STATUS : r;
	r = tk_soft_pkey_op(pk, op, in, in_len, out, out_cap, out_len);
	EVP_PKEY_free(pk);
	return r;
}

static void
prov_free(void *state)
{
	tk_soft_free(state);
}

static const tk_driver_t soft_ops = {
        .api = TK_DRIVER_API,
        .size = sizeof(tk_driver_t),
        .name = TK_SOFT_PROVIDER,
        .pin_verify = prov_pin_verify,
        .pin_status = prov_pin_status,
        .pin_change = prov_pin_change,
        .pin_unblock = prov_pin_unblock,
        .key_op = prov_key_op,
        .free = prov_free,
};

const tk_provider_t tk_soft_provider = {
        .id = TK_SOFT_PROVIDER,
        .open = prov_open,
        .update = prov_update,
        .ops = &soft_ops,
};
