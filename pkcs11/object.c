/* tokenkit-pkcs11: objects, attributes, C_FindObjects*, and the write
 * functions of a write-protected token.
 *
 * Every object's attributes are computed once, when the token is opened
 * (no card I/O; certificates and SubjectPublicKeyInfo are walked as DER by
 * core/x509.c, no OpenSSL decoding on a token's way to its first object
 * list), so C_GetAttributeValue and C_FindObjects are table look-ups. The
 * OpenSSL form of a public key is made on its first use (C_VerifyInit).
 *
 * Decisions:
 * - Private keys (CKA_PRIVATE TRUE) are visible only while the user is
 *   logged in, as the specification says. Clients pick identities by their
 *   certificates and public keys (public objects) and log in for the key;
 *   libp11 (OpenSSL) even depends on it: it logs in only when the private
 *   key is not found without login.
 * - Private keys also answer CKA_EC_POINT (EC) and CKA_MODULUS_BITS (RSA):
 *   public values that clients (libp11, pkcs11-tool) read from the private
 *   key object, although the specification lists them for public keys only.
 * - Session objects (derived secrets) are visible to every session of the
 *   token; CKA_PRIVATE ones only while the user is logged in. */
#include <stdlib.h>
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/sha.h>
#include <openssl/x509.h>

#include <tokenkit/mem.h>

#include "driver.h"
#include "p11.h"
#include "soft.h"
#include "x509.h"

/* --- building attribute tables ------------------------------------------ */

int
tk_p11_attr_add(struct p11_object *o, CK_ATTRIBUTE_TYPE type, const void *val, size_t len,
                bool sensitive)
{
	struct p11_attr *n = realloc(o->attrs, (o->nattrs + 1) * sizeof(*n));
	void *copy = NULL;

	if (n == NULL)
		return TK_ERR_NO_MEMORY;
	o->attrs = n;
	if (len > 0) {
		copy = malloc(len);
		if (copy == NULL)
			return TK_ERR_NO_MEMORY;
		memcpy(copy, val, len);
	}
	n[o->nattrs].type = type;
	n[o->nattrs].val = copy;
	n[o->nattrs].len = len;
	n[o->nattrs].sensitive = sensitive;
	n[o->nattrs].sealed = false;
	o->nattrs++;
	return TK_OK;
}

int
tk_p11_attr_add_bool(struct p11_object *o, CK_ATTRIBUTE_TYPE type, bool v)
{
	CK_BBOOL b = v ? CK_TRUE : CK_FALSE;

	return tk_p11_attr_add(o, type, &b, sizeof(b), false);
}

int
tk_p11_attr_add_ulong(struct p11_object *o, CK_ATTRIBUTE_TYPE type, CK_ULONG v)
{
	return tk_p11_attr_add(o, type, &v, sizeof(v), false);
}

void
tk_p11_object_clear(struct p11_object *o)
{
	if (o == NULL)
		return;
	for (size_t i = 0; i < o->nattrs; i++)
		tk_freezero(o->attrs[i].val, o->attrs[i].len);
	free(o->attrs);
	EVP_PKEY_free(o->pub);
	EVP_PKEY_free(o->priv);
	tk_p11_soft_attrs_free(o->list);
	memset(o, 0, sizeof(*o));
}

const struct p11_attr *
tk_p11_attr_find(const struct p11_object *o, CK_ATTRIBUTE_TYPE type)
{
	for (size_t i = 0; i < o->nattrs; i++)
		if (o->attrs[i].type == type)
			return &o->attrs[i];
	return NULL;
}

/* The namedCurve OIDs (DER) of a key whose public key the card did not
 * give: PIV has P-256 and P-384. */
static const uint8_t oid_p256[] = {0x06, 0x08, 0x2A, 0x86, 0x48, 0xCE, 0x3D, 0x03, 0x01, 0x07};
static const uint8_t oid_p384[] = {0x06, 0x05, 0x2B, 0x81, 0x04, 0x00, 0x22};

/* RFC 8410 object identifiers, DER: id-X25519 1.3.101.110 and id-Ed25519
 * 1.3.101.112. PKCS#11 3.0 (2.3.5, 2.3.7) allows them as CKA_EC_PARAMS of
 * Edwards and Montgomery keys besides the curve names. */
static const uint8_t oid_x25519[] = {0x06, 0x03, 0x2B, 0x65, 0x6E};
static const uint8_t oid_ed25519[] = {0x06, 0x03, 0x2B, 0x65, 0x70};

/* CKA_EC_PARAMS and CKA_EC_POINT (a DER OCTET STRING around the 32-byte
 * key) of an Ed25519 or X25519 key; pk NULL when there is no public key. */
static int
add_25519_parts(struct p11_object *o, bool priv, const tk_spki_t *pk)
{
	bool ed = o->key_type == TK_KEY_ED25519;
	uint8_t *der = NULL;
	size_t der_len = 0;
	int r;

	r = tk_p11_attr_add(o, CKA_EC_PARAMS, ed ? oid_ed25519 : oid_x25519,
	                    ed ? sizeof(oid_ed25519) : sizeof(oid_x25519), false);
	if (r == TK_OK && pk != NULL) {
		if (pk->point_len != 32)
			return TK_ERR_MALFORMED;
		r = tk_p11_der_octet_string(pk->point, pk->point_len, &der, &der_len);
		if (r == TK_OK)
			r = tk_p11_attr_add(o, CKA_EC_POINT, der, der_len, false);
		free(der);
	}
	if (r == TK_OK && priv)
		r = tk_p11_attr_add(o, CKA_VALUE, NULL, 0, true);
	return r;
}

/* Key material attributes from the public key (RSA modulus/exponent, EC
 * parameters/point); pk NULL when there is none to take them from. */
static int
add_public_parts(struct p11_object *o, bool priv, const tk_spki_t *pk)
{
	int r;

	if (o->key_type == TK_KEY_RSA) {
		if (pk != NULL) {
			r = tk_p11_attr_add(o, CKA_MODULUS, pk->n, pk->n_len, false);
			if (r == TK_OK)
				r = tk_p11_attr_add(o, CKA_PUBLIC_EXPONENT, pk->e, pk->e_len,
				                    false);
			if (r != TK_OK)
				return r;
		}
		r = tk_p11_attr_add_ulong(o, CKA_MODULUS_BITS, o->key_bits);
		if (r != TK_OK || !priv)
			return r;
		static const CK_ATTRIBUTE_TYPE secret[] = {CKA_PRIVATE_EXPONENT, CKA_PRIME_1,
		                                           CKA_PRIME_2,          CKA_EXPONENT_1,
		                                           CKA_EXPONENT_2,       CKA_COEFFICIENT};
		for (size_t i = 0; i < sizeof(secret) / sizeof(secret[0]) && r == TK_OK; i++)
			r = tk_p11_attr_add(o, secret[i], NULL, 0, true);
		return r;
	}
	if (o->key_type == TK_KEY_EC) {
		if (pk != NULL)
			r = tk_p11_attr_add(o, CKA_EC_PARAMS, pk->curve, pk->curve_len, false);
		else if (o->key_bits == 384)
			r = tk_p11_attr_add(o, CKA_EC_PARAMS, oid_p384, sizeof(oid_p384), false);
		else
			r = tk_p11_attr_add(o, CKA_EC_PARAMS, oid_p256, sizeof(oid_p256), false);
		if (r != TK_OK)
			return r;
		if (pk != NULL) {
			uint8_t *der = NULL, pt[1 + 2 * 66];
			const uint8_t *point = pk->point;
			size_t derlen = 0, ptlen = pk->point_len;
			EVP_PKEY *k;

			/* a compressed point (rare in certificates; never from PIV
			 * metadata) is given uncompressed, as clients expect; a
			 * key OpenSSL cannot read goes without its point */
			if (point[0] != 0x04) {
				if ((k = tk_p11_object_pub(o)) == NULL ||
				    EVP_PKEY_get_octet_string_param(
				            k, OSSL_PKEY_PARAM_ENCODED_PUBLIC_KEY, pt, sizeof(pt),
				            &ptlen) != 1)
					ptlen = 0;
				point = pt;
			}
			r = ptlen == 0 ? TK_OK
			               : tk_p11_der_octet_string(point, ptlen, &der, &derlen);
			if (r == TK_OK && ptlen != 0)
				r = tk_p11_attr_add(o, CKA_EC_POINT, der, derlen, false);
			free(der);
			if (r != TK_OK)
				return r;
		}
		if (priv)
			r = tk_p11_attr_add(o, CKA_VALUE, NULL, 0, true);
		return r;
	}
	if (o->key_type == TK_KEY_ED25519 || o->key_type == TK_KEY_X25519)
		return add_25519_parts(o, priv, pk);
	return TK_OK;
}

static CK_KEY_TYPE
ckk_of(int key_type)
{
	switch (key_type) {
	case TK_KEY_RSA:
		return CKK_RSA;
	case TK_KEY_ED25519:
		return CKK_EC_EDWARDS;
	case TK_KEY_X25519:
		return CKK_EC_MONTGOMERY;
	default:
		return CKK_EC;
	}
}

/* A certificate's time (YYYYMMDD, or "" when it has none we can show). */
static void
date_of(const char *t, CK_DATE *d, bool *ok)
{
	*ok = t[0] != '\0';
	if (!*ok)
		return;
	memcpy(d->year, t, 4);
	memcpy(d->month, t + 4, 2);
	memcpy(d->day, t + 6, 2);
}

/* CKA_UNIQUE_ID: the same for the same object of the same card in every
 * session and process, different for every other object. Built from stable
 * facts only (never a handle): the card's identity (PIV GUID, else its
 * serial), the object's class, key reference and CKA_ID, hashed so that the
 * value is short printable text (32 hex digits of SHA-256). */
static int
unique_id(const struct p11_token *t, const struct p11_object *o, const tk_object_t *k, char *uid,
          size_t cap)
{
	static const char domain[] = "tokenkit CKA_UNIQUE_ID v1";
	const char *card = t->info.identity[0] ? t->info.identity : t->info.serial;
	uint8_t facts[9], h[EVP_MAX_MD_SIZE];
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	unsigned int hl = 0;
	int r = TK_ERR_CRYPTO;

	if (ctx == NULL)
		return TK_ERR_NO_MEMORY;
	facts[0] = (uint8_t)(o->cls >> 24);
	facts[1] = (uint8_t)(o->cls >> 16);
	facts[2] = (uint8_t)(o->cls >> 8);
	facts[3] = (uint8_t)o->cls;
	facts[4] = (uint8_t)(k->key_ref >> 24);
	facts[5] = (uint8_t)(k->key_ref >> 16);
	facts[6] = (uint8_t)(k->key_ref >> 8);
	facts[7] = (uint8_t)k->key_ref;
	facts[8] = (uint8_t)k->id_len;
	/* the NUL after each string keeps the fields apart */
	if (EVP_DigestInit_ex(ctx, tk_p11_md_from_mech(CKM_SHA256), NULL) != 1 ||
	    EVP_DigestUpdate(ctx, domain, sizeof(domain)) != 1 ||
	    EVP_DigestUpdate(ctx, card, strlen(card) + 1) != 1 ||
	    EVP_DigestUpdate(ctx, facts, sizeof(facts)) != 1 ||
	    EVP_DigestUpdate(ctx, k->id, k->id_len) != 1 || EVP_DigestFinal_ex(ctx, h, &hl) != 1 ||
	    hl < 16 || cap < 33)
		goto out;
	for (size_t i = 0; i < 16; i++)
		snprintf(uid + 2 * i, 3, "%02x", h[i]);
	r = TK_OK;
out:
	EVP_MD_CTX_free(ctx);
	return r;
}

static int
add_common(struct p11_object *o, const struct p11_token *t, const tk_object_t *k, bool priv)
{
	char uid[33];
	int r;

	r = unique_id(t, o, k, uid, sizeof(uid));
	if (r == TK_OK)
		r = tk_p11_attr_add_ulong(o, CKA_CLASS, o->cls);
	if (r == TK_OK)
		r = tk_p11_attr_add_bool(o, CKA_TOKEN, true);
	if (r == TK_OK)
		r = tk_p11_attr_add_bool(o, CKA_PRIVATE, priv);
	if (r == TK_OK)
		r = tk_p11_attr_add_bool(o, CKA_MODIFIABLE, false);
	if (r == TK_OK)
		r = tk_p11_attr_add_bool(o, CKA_COPYABLE, false);
	if (r == TK_OK)
		r = tk_p11_attr_add_bool(o, CKA_DESTROYABLE, false);
	if (r == TK_OK)
		r = tk_p11_attr_add(o, CKA_LABEL, k->label, strnlen(k->label, sizeof(k->label)),
		                    false);
	if (r == TK_OK)
		r = tk_p11_attr_add(o, CKA_UNIQUE_ID, uid, strlen(uid), false);
	if (r == TK_OK)
		r = tk_p11_attr_add(o, CKA_ID, k->id, k->id_len, false);
	return r;
}

static int
build_cert(struct p11_object *o, const struct p11_token *t, const tk_object_t *k)
{
	uint8_t check[SHA_DIGEST_LENGTH];
	unsigned int check_len = 0;
	tk_x509_t x;
	CK_DATE d;
	bool ok;
	int r;

	if (tk_x509_parse(k->der, k->der_len, &x) != TK_OK)
		return TK_ERR_MALFORMED;
	r = add_common(o, t, k, false);
	if (r == TK_OK)
		r = tk_p11_attr_add_ulong(o, CKA_CERTIFICATE_TYPE, CKC_X_509);
	if (r == TK_OK)
		r = tk_p11_attr_add_bool(o, CKA_TRUSTED, false);
	if (r == TK_OK)
		r = tk_p11_attr_add_ulong(o, CKA_CERTIFICATE_CATEGORY, k->has_identity ? 1 : 0);
	/* the module's own SHA-1, fetched once (an implicit fetch per call
	 * costs more than the hash) */
	if (r == TK_OK && EVP_Digest(k->der, k->der_len, check, &check_len,
	                             tk_p11_md_from_mech(CKM_SHA_1), NULL) != 1)
		r = TK_ERR_CRYPTO;
	if (r == TK_OK)
		r = tk_p11_attr_add(o, CKA_CHECK_VALUE, check, 3, false);
	date_of(x.not_before, &d, &ok);
	if (r == TK_OK)
		r = tk_p11_attr_add(o, CKA_START_DATE, &d, ok ? sizeof(d) : 0, false);
	date_of(x.not_after, &d, &ok);
	if (r == TK_OK)
		r = tk_p11_attr_add(o, CKA_END_DATE, &d, ok ? sizeof(d) : 0, false);
	if (r == TK_OK)
		r = tk_p11_attr_add(o, CKA_SUBJECT, x.subject, x.subject_len, false);
	if (r == TK_OK)
		r = tk_p11_attr_add(o, CKA_ISSUER, x.issuer, x.issuer_len, false);
	if (r == TK_OK)
		r = tk_p11_attr_add(o, CKA_SERIAL_NUMBER, x.serial, x.serial_len, false);
	if (r == TK_OK)
		r = tk_p11_attr_add(o, CKA_PUBLIC_KEY_INFO, x.spki, x.spki_len, false);
	if (r == TK_OK)
		r = tk_p11_attr_add(o, CKA_VALUE, k->der, k->der_len, false);
	if (r == TK_OK)
		r = tk_p11_attr_add(o, CKA_URL, NULL, 0, false);
	if (r == TK_OK)
		r = tk_p11_attr_add(o, CKA_HASH_OF_SUBJECT_PUBLIC_KEY, NULL, 0, false);
	if (r == TK_OK)
		r = tk_p11_attr_add(o, CKA_HASH_OF_ISSUER_PUBLIC_KEY, NULL, 0, false);
	if (r == TK_OK)
		r = tk_p11_attr_add_ulong(o, CKA_JAVA_MIDP_SECURITY_DOMAIN, 0);
	if (r == TK_OK)
		r = tk_p11_attr_add_ulong(o, CKA_NAME_HASH_ALGORITHM, CKM_SHA_1);
	return r;
}

/* The DER subject of the certificate with the same CKA_ID, or empty. */
static const struct p11_attr *
subject_for(const struct p11_token *t, const tk_object_t *k)
{
	for (size_t i = 0; i < t->nobjs; i++) {
		const struct p11_object *c = &t->objs[i];

		if (c->cls != CKO_CERTIFICATE || c->tko == NULL || c->tko->id_len != k->id_len ||
		    memcmp(c->tko->id, k->id, k->id_len) != 0)
			continue;
		return tk_p11_attr_find(c, CKA_SUBJECT);
	}
	return NULL;
}

/* Grow [*min, *max] to include bits (0 means "no key yet"). */
static void
widen(unsigned *min, unsigned *max, unsigned bits)
{
	if (*min == 0 || bits < *min)
		*min = bits;
	if (bits > *max)
		*max = bits;
}

/* SubjectPublicKeyInfo DER for a key: its own, else from the public key
 * object or paired certificate with the same CKA_ID. */
static const uint8_t *
spki_for(const struct p11_token *t, const tk_object_t *k, size_t *len)
{
	*len = 0;
	if (k->der != NULL) {
		*len = k->der_len;
		return k->der;
	}
	for (size_t i = 0; i < t->nobjs; i++) {
		const struct p11_object *c = &t->objs[i];
		const struct p11_attr *a;

		if (c->tko == NULL || c->tko->id_len != k->id_len ||
		    memcmp(c->tko->id, k->id, k->id_len) != 0)
			continue;
		if (c->cls == CKO_PUBLIC_KEY && c->tko->der != NULL) {
			*len = c->tko->der_len;
			return c->tko->der;
		}
		if (c->cls == CKO_CERTIFICATE && k->has_identity &&
		    (a = tk_p11_attr_find(c, CKA_PUBLIC_KEY_INFO)) != NULL) {
			*len = a->len;
			return a->val;
		}
	}
	return NULL;
}

static int
build_key(struct p11_object *o, struct p11_token *t, const tk_object_t *k, bool priv)
{
	CK_MECHANISM_TYPE allowed[32];
	const struct p11_attr *subj;
	const uint8_t *spki;
	size_t spki_len = 0, nallowed = 0;
	tk_spki_t pk;
	bool have_pk;
	int r;

	spki = spki_for(t, k, &spki_len);
	/* key material from a public key of the object's own kind only */
	have_pk = spki != NULL && tk_spki_parse(spki, spki_len, &pk) == TK_OK &&
	          pk.key_type == k->key_type;
	if (have_pk && o->key_bits == 0)
		o->key_bits = pk.bits;
	r = add_common(o, t, k, priv);
	if (r == TK_OK)
		r = tk_p11_attr_add_ulong(o, CKA_KEY_TYPE, ckk_of(k->key_type));
	if (r == TK_OK)
		r = tk_p11_attr_add(o, CKA_START_DATE, NULL, 0, false);
	if (r == TK_OK)
		r = tk_p11_attr_add(o, CKA_END_DATE, NULL, 0, false);
	if (r == TK_OK)
		r = tk_p11_attr_add_bool(o, CKA_LOCAL, false);
	if (r == TK_OK)
		r = tk_p11_attr_add_ulong(o, CKA_KEY_GEN_MECHANISM, CK_UNAVAILABLE_INFORMATION);
	if (r == TK_OK)
		r = tk_p11_mech_allowed_for_key(o, allowed, sizeof(allowed) / sizeof(allowed[0]),
		                                &nallowed) == CKR_OK
		            ? TK_OK
		            : TK_ERR_INTERNAL;
	if (r == TK_OK)
		r = tk_p11_attr_add(o, CKA_ALLOWED_MECHANISMS, allowed,
		                    nallowed * sizeof(allowed[0]), false);
	subj = subject_for(t, k);
	if (r == TK_OK)
		r = tk_p11_attr_add(o, CKA_SUBJECT, subj ? subj->val : NULL, subj ? subj->len : 0,
		                    false);
	if (r == TK_OK && spki != NULL)
		r = tk_p11_attr_add(o, CKA_PUBLIC_KEY_INFO, spki, spki_len, false);
	else if (r == TK_OK)
		r = tk_p11_attr_add(o, CKA_PUBLIC_KEY_INFO, NULL, 0, false);
	if (r != TK_OK)
		return r;
	if (priv) {
		bool rsa = k->key_type == TK_KEY_RSA;

		r = tk_p11_attr_add_bool(o, CKA_SENSITIVE, true);
		if (r == TK_OK)
			r = tk_p11_attr_add_bool(o, CKA_DECRYPT,
			                         rsa && (k->usage & TK_USAGE_DECRYPT));
		if (r == TK_OK)
			r = tk_p11_attr_add_bool(o, CKA_SIGN, (k->usage & TK_USAGE_SIGN) != 0);
		if (r == TK_OK)
			r = tk_p11_attr_add_bool(o, CKA_SIGN_RECOVER, false);
		if (r == TK_OK)
			r = tk_p11_attr_add_bool(o, CKA_UNWRAP, false);
		if (r == TK_OK)
			r = tk_p11_attr_add_bool(o, CKA_DERIVE,
			                         !rsa && (k->usage & TK_USAGE_DERIVE) != 0);
		if (r == TK_OK)
			r = tk_p11_attr_add_bool(o, CKA_EXTRACTABLE, false);
		if (r == TK_OK)
			r = tk_p11_attr_add_bool(o, CKA_ALWAYS_SENSITIVE, true);
		if (r == TK_OK)
			r = tk_p11_attr_add_bool(o, CKA_NEVER_EXTRACTABLE, true);
		if (r == TK_OK)
			r = tk_p11_attr_add_bool(o, CKA_WRAP_WITH_TRUSTED, false);
		if (r == TK_OK)
			r = tk_p11_attr_add_bool(o, CKA_ALWAYS_AUTHENTICATE,
			                         k->always_authenticate);
	} else {
		bool rsa = k->key_type == TK_KEY_RSA;

		r = tk_p11_attr_add_bool(o, CKA_ENCRYPT, rsa);
		if (r == TK_OK)
			r = tk_p11_attr_add_bool(o, CKA_VERIFY, k->key_type != TK_KEY_X25519);
		if (r == TK_OK)
			r = tk_p11_attr_add_bool(o, CKA_VERIFY_RECOVER, false);
		if (r == TK_OK)
			r = tk_p11_attr_add_bool(o, CKA_WRAP, false);
		if (r == TK_OK)
			r = tk_p11_attr_add_bool(o, CKA_DERIVE, false);
		if (r == TK_OK)
			r = tk_p11_attr_add_bool(o, CKA_TRUSTED, false);
	}
	if (r != TK_OK)
		return r;
	/* without a public key it could parse, the key stays usable without its
	 * public values: never dropped */
	return add_public_parts(o, priv, have_pk ? &pk : NULL);
}

static void
note_key(struct p11_token *t, const struct p11_object *o)
{
	unsigned bits = o->key_bits;

	if (o->cls != CKO_PRIVATE_KEY || bits == 0)
		return;
	if (o->key_type == TK_KEY_RSA) {
		if (o->usage & TK_USAGE_SIGN)
			t->rsa_sign = true;
		if (o->usage & TK_USAGE_DECRYPT)
			t->rsa_decrypt = true;
		if (o->usage & (TK_USAGE_SIGN | TK_USAGE_DECRYPT))
			widen(&t->rsa_min, &t->rsa_max, bits);
	} else if (o->key_type == TK_KEY_EC) {
		if (o->usage & TK_USAGE_SIGN)
			t->ec_sign = true;
		if (o->usage & TK_USAGE_DERIVE)
			t->ec_derive = true;
		if (o->usage & (TK_USAGE_SIGN | TK_USAGE_DERIVE))
			widen(&t->ec_min, &t->ec_max, bits);
	}
}

int
tk_p11_object_build(struct p11_token *t, const tk_object_t *k, struct p11_object *o)
{
	int r;

	memset(o, 0, sizeof(*o));
	o->handle = 0; /* numbered when published (tk_p11_objects_number_locked) */
	o->tko = k;
	o->key_type = k->key_type;
	o->key_bits = k->key_bits;
	o->usage = k->usage;
	o->always_auth = k->always_authenticate;
	/* keys built without a core token behind them (tests and fuzz targets
	 * build them from bare tk_object_t) offer what keys of their type do */
	if (k->cls == TK_OBJ_PRIVKEY)
		o->ops = t->tk != NULL ? tk_token_key_ops(t->tk, k)
		                       : tk_drv_default_ops(k->key_type, k->usage);
	switch (k->cls) {
	case TK_OBJ_CERT:
		o->cls = CKO_CERTIFICATE;
		r = build_cert(o, t, k);
		break;
	case TK_OBJ_PUBKEY:
		o->cls = CKO_PUBLIC_KEY;
		r = build_key(o, t, k, false);
		break;
	case TK_OBJ_PRIVKEY:
		o->cls = CKO_PRIVATE_KEY;
		r = build_key(o, t, k, true);
		break;
	default:
		return TK_ERR_NOT_SUPPORTED; /* data objects are not published yet */
	}
	if (r != TK_OK) {
		tk_p11_object_clear(o);
		return r;
	}
	if (o->key_bits == 0 && o->pub != NULL)
		o->key_bits = (unsigned)EVP_PKEY_get_bits(o->pub);
	return TK_OK;
}

int
tk_p11_objects_build(struct p11_token *t)
{
	const tk_object_t *objs = NULL;
	size_t n = 0;
	int r;

	/* a software token's objects are its store's (softobj.c) */
	if (t->tk != NULL && tk_soft_of(t->tk) != NULL)
		return tk_p11_soft_objects_build(t);
	r = tk_token_objects(t->tk, &objs, &n);
	if (r != TK_OK)
		return r;
	t->objs = calloc(n > 0 ? n : 1, sizeof(*t->objs));
	if (t->objs == NULL)
		return TK_ERR_NO_MEMORY;
	/* certificates first: keys take their CKA_SUBJECT from them */
	for (int pass = 0; pass < 2; pass++) {
		for (size_t i = 0; i < n; i++) {
			const tk_object_t *k = &objs[i];

			if ((pass == 0) != (k->cls == TK_OBJ_CERT))
				continue;
			/* one bad object must not hide the others */
			if (tk_p11_object_build(t, k, &t->objs[t->nobjs]) != TK_OK)
				continue;
			note_key(t, &t->objs[t->nobjs]);
			t->nobjs++;
		}
	}
	return TK_OK;
}

/* The same object of the same card: what decides that an object keeps its
 * handle across a revalidation or the card's return. */
static bool
same_object(const struct p11_object *a, const struct p11_object *b)
{
	const tk_object_t *x = a->tko, *y = b->tko;

	/* a software token's object: by its uid in the store (its attributes
	 * may have changed: C_SetAttributeValue keeps the handle) */
	if (a->soft || b->soft)
		return a->soft && b->soft && a->cls == b->cls &&
		       memcmp(a->uid, b->uid, sizeof(a->uid)) == 0;
	if (x == NULL || y == NULL || a->cls != b->cls || x->key_ref != y->key_ref ||
	    x->key_type != y->key_type || x->id_len != y->id_len || x->der_len != y->der_len)
		return false;
	if (x->id_len > 0 && memcmp(x->id, y->id, x->id_len) != 0)
		return false;
	return x->der_len == 0 ||
	       (x->der != NULL && y->der != NULL && memcmp(x->der, y->der, x->der_len) == 0);
}

/* Object handles are module-wide: an object that was in prev (the same
 * object of the same card) keeps its handle; any other gets a number never
 * used before in this process, so a handle kept from another card never
 * names an object of this one. */
void
tk_p11_objects_number_locked(struct p11_object *objs, size_t n, const struct p11_object *prev,
                             size_t nprev)
{
	if (g_p11.next_obj == 0)
		g_p11.next_obj = 1;
	for (size_t i = 0; i < n; i++) {
		CK_OBJECT_HANDLE h = 0;

		for (size_t j = 0; j < nprev && h == 0; j++) {
			bool taken = false;

			if (!same_object(&objs[i], &prev[j]))
				continue;
			for (size_t k = 0; k < i && !taken; k++)
				taken = objs[k].handle == prev[j].handle;
			if (!taken)
				h = prev[j].handle;
		}
		objs[i].handle = h != 0 ? h : g_p11.next_obj++;
	}
}

/* After tk_token_revalidate reported a change: build the new table aside
 * (no lock, no I/O), then swap it in under the module lock. The old table
 * is kept until the token goes: operations and C_FindObjects results may
 * still refer to it (unchanged objects keep their handles). */
int
tk_p11_objects_rebuild(struct p11_token *t)
{
	struct p11_token tmp;
	struct p11_objset *old;
	int r;

	memset(&tmp, 0, sizeof(tmp));
	tmp.tk = tk_p11_tk(t);
	pthread_mutex_lock(&g_p11.lock);
	tmp.info = t->info;
	pthread_mutex_unlock(&g_p11.lock);
	r = tk_p11_objects_build(&tmp);
	old = calloc(1, sizeof(*old));
	if (r != TK_OK || old == NULL)
		goto fail;
	pthread_mutex_lock(&g_p11.lock);
	if (t->tk != tmp.tk) {
		/* the card came back meanwhile: its token was rebuilt from then */
		pthread_mutex_unlock(&g_p11.lock);
		r = TK_ERR_CANCELLED;
		goto fail;
	}
	if (t->soft && tmp.soft_gen < t->soft_gen) {
		/* a newer state of the store is in already (our own write and
		 * the registry's event for it race) */
		pthread_mutex_unlock(&g_p11.lock);
		r = TK_OK;
		goto fail;
	}
	tk_p11_objects_number_locked(tmp.objs, tmp.nobjs, t->objs, t->nobjs);
	old->objs = t->objs;
	old->nobjs = t->nobjs;
	old->next = t->retired;
	t->retired = old;
	g_p11.gc_wanted = true;
	t->objs = tmp.objs;
	t->nobjs = tmp.nobjs;
	t->soft_gen = tmp.soft_gen;
	t->rsa_sign = tmp.rsa_sign;
	t->rsa_decrypt = tmp.rsa_decrypt;
	t->ec_sign = tmp.ec_sign;
	t->ec_derive = tmp.ec_derive;
	t->rsa_min = tmp.rsa_min;
	t->rsa_max = tmp.rsa_max;
	t->ec_min = tmp.ec_min;
	t->ec_max = tmp.ec_max;
	pthread_mutex_unlock(&g_p11.lock);
	return TK_OK;
fail:
	for (size_t i = 0; i < tmp.nobjs; i++)
		tk_p11_object_clear(&tmp.objs[i]);
	free(tmp.objs);
	free(old);
	return r != TK_OK ? r : old == NULL ? TK_ERR_NO_MEMORY : TK_OK;
}

/* --- the OpenSSL form of a public key --------------------------------------- */

EVP_PKEY *
tk_p11_object_pub(const struct p11_object *o)
{
	struct p11_object *mo = (struct p11_object *)(uintptr_t)o;
	const struct p11_attr *a;
	const uint8_t *p;
	EVP_PKEY *pk = __atomic_load_n(&mo->pub, __ATOMIC_ACQUIRE), *none = NULL;

	if (pk != NULL || (o->tko == NULL && !o->soft) || o->cls == CKO_CERTIFICATE)
		return pk;
	if ((a = tk_p11_attr_find(o, CKA_PUBLIC_KEY_INFO)) == NULL || a->len == 0)
		return NULL;
	p = a->val;
	if ((pk = d2i_PUBKEY_ex(NULL, &p, (long)a->len, tk_p11_libctx(), NULL)) == NULL)
		return NULL;
	/* two sessions may get here at once: the first one's key stays */
	if (!__atomic_compare_exchange_n(&mo->pub, &none, pk, false, __ATOMIC_ACQ_REL,
	                                 __ATOMIC_ACQUIRE)) {
		EVP_PKEY_free(pk);
		pk = none;
	}
	return pk;
}

/* --- lookup and visibility ---------------------------------------------- */

bool
tk_p11_object_visible(const struct p11_token *t, const struct p11_object *o, CK_SESSION_HANDLE h)
{
	if (o->tko != NULL)
		return o->cls != CKO_PRIVATE_KEY || t->login == (int)CKU_USER;
	return !o->visible_private || t->login == (int)CKU_USER;
}

struct p11_object *
tk_p11_object_find_locked(struct p11_token *t, CK_OBJECT_HANDLE h)
{
	for (size_t i = 0; i < t->nobjs; i++)
		if (t->objs[i].handle == h)
			return &t->objs[i];
	for (size_t i = 0; i < t->nsobjs; i++)
		if (t->sobjs[i]->handle == h)
			return t->sobjs[i];
	return NULL;
}

int
tk_p11_session_object_add_locked(struct p11_token *t, struct p11_object *o)
{
	if (t->nsobjs == t->sobjs_cap) {
		size_t cap = t->sobjs_cap ? t->sobjs_cap * 2 : 8;
		struct p11_object **n = realloc(t->sobjs, cap * sizeof(*n));

		if (n == NULL)
			return TK_ERR_NO_MEMORY;
		t->sobjs = n;
		t->sobjs_cap = cap;
	}
	o->handle = g_p11.next_sobj++;
	t->sobjs[t->nsobjs++] = o;
	return TK_OK;
}

/* A session object that goes (destroyed, or its session closed): an
 * operation of another session may have been set up with it (p11_op.obj),
 * so it is freed with the earlier object tables, once no operation is
 * (tk_p11_gc_take_locked). */
void
tk_p11_object_retire_locked(struct p11_token *t, struct p11_object *o)
{
	struct p11_objset *set = calloc(1, sizeof(*set));

	if (set == NULL)
		return; /* leaked rather than freed under an operation */
	set->objs = o;
	set->nobjs = 1;
	set->next = t->retired;
	t->retired = set;
	g_p11.gc_wanted = true;
}

static void
session_object_remove_at_locked(struct p11_token *t, size_t i)
{
	struct p11_object *o = t->sobjs[i];

	memmove(&t->sobjs[i], &t->sobjs[i + 1], (t->nsobjs - i - 1) * sizeof(t->sobjs[0]));
	t->nsobjs--;
	tk_p11_object_retire_locked(t, o);
}

void
tk_p11_session_objects_drop_locked(struct p11_token *t, CK_SESSION_HANDLE owner)
{
	size_t i = 0;

	while (i < t->nsobjs) {
		if (t->sobjs[i]->owner == owner)
			session_object_remove_at_locked(t, i);
		else
			i++;
	}
}

/* --- C_GetAttributeValue, C_GetObjectSize ------------------------------- */

CK_RV
tk_p11_C_GetAttributeValue(CK_SESSION_HANDLE hSession, CK_OBJECT_HANDLE hObject,
                           CK_ATTRIBUTE_PTR pTemplate, CK_ULONG ulCount)
{
	struct p11_session *s;
	struct p11_object *o;
	tk_attrs_t revealed = {NULL, 0};
	bool sensitive = false, invalid = false, small = false;
	CK_RV rv = tk_p11_session_get(hSession, &s);

	if (rv != CKR_OK)
		return rv;
	if (pTemplate == NULL && ulCount > 0) {
		rv = CKR_ARGUMENTS_BAD;
		goto out;
	}
	/* a software token's secret parts that the object lets out: read from
	 * the token first, without the module lock */
	if (s->tok->soft)
		tk_p11_soft_reveal(s->tok, hObject, pTemplate, ulCount, &revealed);
	pthread_mutex_lock(&g_p11.lock);
	o = tk_p11_object_find_locked(s->tok, hObject);
	if (o == NULL || !tk_p11_object_visible(s->tok, o, hSession)) {
		pthread_mutex_unlock(&g_p11.lock);
		rv = CKR_OBJECT_HANDLE_INVALID;
		goto out;
	}
	for (CK_ULONG i = 0; i < ulCount; i++) {
		CK_ATTRIBUTE *a = &pTemplate[i];
		const struct p11_attr *v = tk_p11_attr_find(o, a->type);
		const tk_attr_t *rv_ =
		        v != NULL && v->sealed ? tk_attrs_get(&revealed, a->type) : NULL;

		if (v == NULL) {
			a->ulValueLen = CK_UNAVAILABLE_INFORMATION;
			invalid = true;
		} else if (rv_ != NULL) {
			if (a->pValue != NULL && a->ulValueLen < rv_->len) {
				a->ulValueLen = CK_UNAVAILABLE_INFORMATION;
				small = true;
			} else {
				if (a->pValue != NULL && rv_->len > 0)
					memcpy(a->pValue, rv_->val, rv_->len);
				a->ulValueLen = rv_->len;
			}
		} else if (v->sensitive) {
			a->ulValueLen = CK_UNAVAILABLE_INFORMATION;
			sensitive = true;
		} else if (a->pValue == NULL) {
			a->ulValueLen = v->len;
		} else if (a->ulValueLen < v->len) {
			a->ulValueLen = CK_UNAVAILABLE_INFORMATION;
			small = true;
		} else {
			if (v->len > 0)
				memcpy(a->pValue, v->val, v->len);
			a->ulValueLen = v->len;
		}
	}
	pthread_mutex_unlock(&g_p11.lock);
	if (sensitive)
		rv = CKR_ATTRIBUTE_SENSITIVE;
	else if (invalid)
		rv = CKR_ATTRIBUTE_TYPE_INVALID;
	else if (small)
		rv = CKR_BUFFER_TOO_SMALL;
out:
	tk_attrs_clear(&revealed);
	tk_p11_session_put(s, rv);
	return rv;
}

CK_RV
tk_p11_C_GetObjectSize(CK_SESSION_HANDLE hSession, CK_OBJECT_HANDLE hObject, CK_ULONG_PTR pulSize)
{
	struct p11_session *s;
	struct p11_object *o;
	CK_RV rv = tk_p11_session_get(hSession, &s);

	if (rv != CKR_OK)
		return rv;
	if (pulSize == NULL) {
		rv = CKR_ARGUMENTS_BAD;
		goto out;
	}
	pthread_mutex_lock(&g_p11.lock);
	o = tk_p11_object_find_locked(s->tok, hObject);
	if (o == NULL || !tk_p11_object_visible(s->tok, o, hSession)) {
		rv = CKR_OBJECT_HANDLE_INVALID;
	} else {
		*pulSize = 0;
		for (size_t i = 0; i < o->nattrs; i++)
			*pulSize += o->attrs[i].len;
	}
	pthread_mutex_unlock(&g_p11.lock);
out:
	tk_p11_session_put(s, rv);
	return rv;
}

/* --- C_FindObjects* ------------------------------------------------------ */

static bool
matches(const struct p11_object *o, const CK_ATTRIBUTE *tpl, CK_ULONG n)
{
	for (CK_ULONG i = 0; i < n; i++) {
		const struct p11_attr *v = tk_p11_attr_find(o, tpl[i].type);

		if (v == NULL || v->sensitive || v->len != tpl[i].ulValueLen)
			return false;
		if (v->len > 0 &&
		    (tpl[i].pValue == NULL || memcmp(v->val, tpl[i].pValue, v->len) != 0))
			return false;
	}
	return true;
}

CK_RV
tk_p11_C_FindObjectsInit(CK_SESSION_HANDLE hSession, CK_ATTRIBUTE_PTR pTemplate, CK_ULONG ulCount)
{
	struct p11_session *s;
	struct p11_token *t;
	CK_OBJECT_HANDLE *hs;
	size_t n = 0;
	CK_RV rv = tk_p11_session_get(hSession, &s);

	if (rv != CKR_OK)
		return rv;
	t = s->tok;
	if (pTemplate == NULL && ulCount > 0) {
		rv = CKR_ARGUMENTS_BAD;
		goto out;
	}
	if (s->find.active) {
		rv = CKR_OPERATION_ACTIVE;
		goto out;
	}
	pthread_mutex_lock(&g_p11.lock);
	hs = malloc((t->nobjs + t->nsobjs + 1) * sizeof(*hs));
	if (hs == NULL) {
		pthread_mutex_unlock(&g_p11.lock);
		rv = CKR_HOST_MEMORY;
		goto out;
	}
	for (size_t i = 0; i < t->nobjs; i++)
		if (tk_p11_object_visible(t, &t->objs[i], hSession) &&
		    matches(&t->objs[i], pTemplate, ulCount))
			hs[n++] = t->objs[i].handle;
	for (size_t i = 0; i < t->nsobjs; i++)
		if (tk_p11_object_visible(t, t->sobjs[i], hSession) &&
		    matches(t->sobjs[i], pTemplate, ulCount))
			hs[n++] = t->sobjs[i]->handle;
	pthread_mutex_unlock(&g_p11.lock);
	s->find.handles = hs;
	s->find.count = n;
	s->find.pos = 0;
	s->find.active = true;
out:
	tk_p11_session_put(s, rv);
	return rv;
}

CK_RV
tk_p11_C_FindObjects(CK_SESSION_HANDLE hSession, CK_OBJECT_HANDLE_PTR phObject,
                     CK_ULONG ulMaxObjectCount, CK_ULONG_PTR pulObjectCount)
{
	struct p11_session *s;
	CK_ULONG n = 0;
	CK_RV rv = tk_p11_session_get(hSession, &s);

	if (rv != CKR_OK)
		return rv;
	if (!s->find.active) {
		rv = CKR_OPERATION_NOT_INITIALIZED;
		goto out;
	}
	if (pulObjectCount == NULL || (phObject == NULL && ulMaxObjectCount > 0)) {
		rv = CKR_ARGUMENTS_BAD;
		goto out;
	}
	while (n < ulMaxObjectCount && s->find.pos < s->find.count)
		phObject[n++] = s->find.handles[s->find.pos++];
	*pulObjectCount = n;
out:
	tk_p11_session_put(s, rv);
	return rv;
}

CK_RV
tk_p11_C_FindObjectsFinal(CK_SESSION_HANDLE hSession)
{
	struct p11_session *s;
	CK_RV rv = tk_p11_session_get(hSession, &s);

	if (rv != CKR_OK)
		return rv;
	if (!s->find.active) {
		rv = CKR_OPERATION_NOT_INITIALIZED;
		goto out;
	}
	free(s->find.handles);
	memset(&s->find, 0, sizeof(s->find));
out:
	tk_p11_session_put(s, rv);
	return rv;
}

/* C_SessionCancel (PKCS#11 3.0 section 5.6): the session's operations that
 * the flags name end, as an error in them would end them; a search ends as
 * C_FindObjectsFinal ends it. Operations the module has none of (message
 * based, recover, key generation, wrapping) have nothing to end. Broker
 * mode uses it too: an argument the client refuses ends the operation in
 * the broker as well. */
CK_RV
tk_p11_C_SessionCancel(CK_SESSION_HANDLE hSession, CK_FLAGS flags)
{
	struct p11_session *s;
	CK_RV rv = tk_p11_session_get(hSession, &s);

	if (rv != CKR_OK)
		return rv;
	if (flags & CKF_SIGN)
		tk_p11_op_reset(&s->sign);
	if (flags & CKF_VERIFY)
		tk_p11_op_reset(&s->verify);
	if (flags & CKF_ENCRYPT)
		tk_p11_op_reset(&s->encrypt);
	if (flags & CKF_DECRYPT)
		tk_p11_op_reset(&s->decrypt);
	if (flags & CKF_DIGEST)
		tk_p11_op_reset(&s->digest);
	if (flags & CKF_FIND_OBJECTS) {
		free(s->find.handles);
		memset(&s->find, 0, sizeof(s->find));
	}
	tk_p11_session_put(s, rv);
	return rv;
}

/* --- writing: the token is write-protected ------------------------------- */

static bool
template_wants_token(const CK_ATTRIBUTE *tpl, CK_ULONG n)
{
	for (CK_ULONG i = 0; tpl != NULL && i < n; i++)
		if (tpl[i].type == CKA_TOKEN && tpl[i].pValue != NULL &&
		    tpl[i].ulValueLen == sizeof(CK_BBOOL) && *(CK_BBOOL *)tpl[i].pValue)
			return true;
	return false;
}

CK_RV
tk_p11_C_CreateObject(CK_SESSION_HANDLE hSession, CK_ATTRIBUTE_PTR pTemplate, CK_ULONG ulCount,
                      CK_OBJECT_HANDLE_PTR phObject)
{
	struct p11_session *s;
	CK_RV rv = tk_p11_session_get(hSession, &s);

	if (rv != CKR_OK)
		return rv;
	if ((pTemplate == NULL && ulCount > 0) || phObject == NULL)
		rv = CKR_ARGUMENTS_BAD;
	else if (s->tok->soft)
		rv = tk_p11_soft_create(s, pTemplate, ulCount, phObject);
	else if (template_wants_token(pTemplate, ulCount))
		rv = CKR_TOKEN_WRITE_PROTECTED;
	else
		rv = CKR_FUNCTION_NOT_SUPPORTED; /* no session objects from outside */
	tk_p11_session_put(s, rv);
	return rv;
}

CK_RV
tk_p11_C_CopyObject(CK_SESSION_HANDLE hSession, CK_OBJECT_HANDLE hObject,
                    CK_ATTRIBUTE_PTR pTemplate, CK_ULONG ulCount, CK_OBJECT_HANDLE_PTR phNewObject)
{
	struct p11_session *s;
	bool found;
	CK_RV rv = tk_p11_session_get(hSession, &s);

	if (rv != CKR_OK)
		return rv;
	pthread_mutex_lock(&g_p11.lock);
	found = tk_p11_object_find_locked(s->tok, hObject) != NULL;
	pthread_mutex_unlock(&g_p11.lock);
	if (!found)
		rv = CKR_OBJECT_HANDLE_INVALID;
	else if ((pTemplate == NULL && ulCount > 0) || phNewObject == NULL)
		rv = CKR_ARGUMENTS_BAD;
	else if (s->tok->soft)
		rv = tk_p11_soft_copy(s, hObject, pTemplate, ulCount, phNewObject);
	else if (template_wants_token(pTemplate, ulCount))
		rv = CKR_TOKEN_WRITE_PROTECTED;
	else
		rv = CKR_ACTION_PROHIBITED; /* CKA_COPYABLE is FALSE */
	tk_p11_session_put(s, rv);
	return rv;
}

CK_RV
tk_p11_C_DestroyObject(CK_SESSION_HANDLE hSession, CK_OBJECT_HANDLE hObject)
{
	struct p11_session *s;
	struct p11_token *t;
	CK_RV rv = tk_p11_session_get(hSession, &s);

	if (rv != CKR_OK)
		return rv;
	t = s->tok;
	if (t->soft) {
		rv = tk_p11_soft_destroy(s, hObject);
		goto out;
	}
	rv = CKR_OBJECT_HANDLE_INVALID;
	pthread_mutex_lock(&g_p11.lock);
	for (size_t i = 0; i < t->nsobjs; i++) {
		if (t->sobjs[i]->handle == hObject) {
			if (tk_p11_object_visible(t, t->sobjs[i], hSession)) {
				session_object_remove_at_locked(t, i);
				rv = CKR_OK;
			}
			break;
		}
	}
	if (rv != CKR_OK && tk_p11_object_find_locked(t, hObject) != NULL)
		rv = CKR_TOKEN_WRITE_PROTECTED;
	pthread_mutex_unlock(&g_p11.lock);
out:
	tk_p11_session_put(s, rv);
	return rv;
}

CK_RV
tk_p11_C_SetAttributeValue(CK_SESSION_HANDLE hSession, CK_OBJECT_HANDLE hObject,
                           CK_ATTRIBUTE_PTR pTemplate, CK_ULONG ulCount)
{
	struct p11_session *s;
	struct p11_object *o;
	CK_RV rv = tk_p11_session_get(hSession, &s);

	if (rv != CKR_OK)
		return rv;
	if (s->tok->soft) {
		rv = pTemplate == NULL && ulCount > 0
		             ? CKR_ARGUMENTS_BAD
		             : tk_p11_soft_set(s, hObject, pTemplate, ulCount);
		tk_p11_session_put(s, rv);
		return rv;
	}
	pthread_mutex_lock(&g_p11.lock);
	o = tk_p11_object_find_locked(s->tok, hObject);
	if (o == NULL || !tk_p11_object_visible(s->tok, o, hSession))
		rv = CKR_OBJECT_HANDLE_INVALID;
	else if (pTemplate == NULL && ulCount > 0)
		rv = CKR_ARGUMENTS_BAD;
	else if (o->tko != NULL)
		rv = CKR_TOKEN_WRITE_PROTECTED;
	else
		rv = CKR_ACTION_PROHIBITED; /* CKA_MODIFIABLE is FALSE */
	pthread_mutex_unlock(&g_p11.lock);
	tk_p11_session_put(s, rv);
	return rv;
}

CK_RV
tk_p11_C_GenerateKey(CK_SESSION_HANDLE hSession, CK_MECHANISM_PTR pMechanism,
                     CK_ATTRIBUTE_PTR pTemplate, CK_ULONG ulCount, CK_OBJECT_HANDLE_PTR phKey)
{
	struct p11_session *s;
	CK_RV rv = tk_p11_session_get(hSession, &s);

	if (rv != CKR_OK)
		return rv;
	if (pMechanism == NULL || phKey == NULL || (pTemplate == NULL && ulCount > 0))
		rv = CKR_ARGUMENTS_BAD;
	else if (s->tok->soft)
		rv = tk_p11_soft_generate(s, pMechanism, pTemplate, ulCount, phKey);
	else if (template_wants_token(pTemplate, ulCount))
		rv = CKR_TOKEN_WRITE_PROTECTED;
	else
		rv = CKR_MECHANISM_INVALID;
	tk_p11_session_put(s, rv);
	return rv;
}

/* Wrapping: a software token's extractable private keys under its AES
 * keys (softobj.c); a card's keys never leave it. */
CK_RV
tk_p11_C_WrapKey(CK_SESSION_HANDLE hSession, CK_MECHANISM_PTR pMechanism,
                 CK_OBJECT_HANDLE hWrappingKey, CK_OBJECT_HANDLE hKey, CK_BYTE_PTR pWrappedKey,
                 CK_ULONG_PTR pulWrappedKeyLen)
{
	struct p11_session *s;
	CK_RV rv = tk_p11_session_get(hSession, &s);

	if (rv != CKR_OK)
		return rv;
	if (pMechanism == NULL || pulWrappedKeyLen == NULL)
		rv = CKR_ARGUMENTS_BAD;
	else if (!s->tok->soft)
		rv = CKR_FUNCTION_NOT_SUPPORTED;
	else
		rv = tk_p11_soft_wrap(s, pMechanism, hWrappingKey, hKey, pWrappedKey,
		                      pulWrappedKeyLen);
	tk_p11_session_put(s, rv);
	return rv;
}

CK_RV
tk_p11_C_UnwrapKey(CK_SESSION_HANDLE hSession, CK_MECHANISM_PTR pMechanism,
                   CK_OBJECT_HANDLE hUnwrappingKey, CK_BYTE_PTR pWrappedKey,
                   CK_ULONG ulWrappedKeyLen, CK_ATTRIBUTE_PTR pTemplate, CK_ULONG ulAttributeCount,
                   CK_OBJECT_HANDLE_PTR phKey)
{
	struct p11_session *s;
	CK_RV rv = tk_p11_session_get(hSession, &s);

	if (rv != CKR_OK)
		return rv;
	if (pMechanism == NULL || phKey == NULL || pWrappedKey == NULL ||
	    (pTemplate == NULL && ulAttributeCount > 0))
		rv = CKR_ARGUMENTS_BAD;
	else if (!s->tok->soft)
		rv = CKR_FUNCTION_NOT_SUPPORTED;
	else
		rv = tk_p11_soft_unwrap(s, pMechanism, hUnwrappingKey, pWrappedKey, ulWrappedKeyLen,
		                        pTemplate, ulAttributeCount, phKey);
	tk_p11_session_put(s, rv);
	return rv;
}

CK_RV
tk_p11_C_GenerateKeyPair(CK_SESSION_HANDLE hSession, CK_MECHANISM_PTR pMechanism,
                         CK_ATTRIBUTE_PTR pPublicKeyTemplate, CK_ULONG ulPublicKeyAttributeCount,
                         CK_ATTRIBUTE_PTR pPrivateKeyTemplate, CK_ULONG ulPrivateKeyAttributeCount,
                         CK_OBJECT_HANDLE_PTR phPublicKey, CK_OBJECT_HANDLE_PTR phPrivateKey)
{
	struct p11_session *s;
	CK_RV rv = tk_p11_session_get(hSession, &s);

	if (rv != CKR_OK)
		return rv;
	if (pMechanism == NULL || phPublicKey == NULL || phPrivateKey == NULL ||
	    (pPublicKeyTemplate == NULL && ulPublicKeyAttributeCount > 0) ||
	    (pPrivateKeyTemplate == NULL && ulPrivateKeyAttributeCount > 0))
		rv = CKR_ARGUMENTS_BAD;
	else if (s->tok->soft)
		rv = tk_p11_soft_generate_pair(
		        s, pMechanism, pPublicKeyTemplate, ulPublicKeyAttributeCount,
		        pPrivateKeyTemplate, ulPrivateKeyAttributeCount, phPublicKey, phPrivateKey);
	else
		rv = CKR_TOKEN_WRITE_PROTECTED; /* keys live on the card only */
	tk_p11_session_put(s, rv);
	return rv;
}
