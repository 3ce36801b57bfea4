/* tokenkit-pkcs11: C_DeriveKey with CKM_ECDH1_DERIVE (CKD_NULL), for EC
 * and X25519 keys.
 *
 * The card computes the shared secret (X coordinate); the result becomes a
 * session object (CKO_SECRET_KEY, CKK_GENERIC_SECRET unless the template
 * says otherwise), which is allowed on a write-protected token. CKA_VALUE_LEN
 * shorter than the secret keeps its leading bytes. The key is extractable
 * only when the template asks for it, and sensitive unless the template
 * says CKA_SENSITIVE=FALSE. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/rand.h>

#include <tokenkit/mem.h>

#include "p11.h"

struct derive_tpl {
	CK_KEY_TYPE key_type;
	CK_ULONG value_len; /* 0: whole secret */
	bool sensitive, sensitive_set;
	bool extractable;
	bool priv;
	bool enc, dec, sign, verify, wrap, unwrap, derive;
	const void *label, *id;
	size_t label_len, id_len;
};

static CK_RV
get_bool(const CK_ATTRIBUTE *a, bool *v)
{
	if (a->pValue == NULL || a->ulValueLen != sizeof(CK_BBOOL))
		return CKR_ATTRIBUTE_VALUE_INVALID;
	*v = *(const CK_BBOOL *)a->pValue != CK_FALSE;
	return CKR_OK;
}

static CK_RV
get_ulong(const CK_ATTRIBUTE *a, CK_ULONG *v)
{
	if (a->pValue == NULL || a->ulValueLen != sizeof(CK_ULONG))
		return CKR_ATTRIBUTE_VALUE_INVALID;
	memcpy(v, a->pValue, sizeof(*v));
	return CKR_OK;
}

static CK_RV
parse_template(const CK_ATTRIBUTE *tpl, CK_ULONG n, struct derive_tpl *d)
{
	CK_RV rv = CKR_OK;

	memset(d, 0, sizeof(*d));
	d->key_type = CKK_GENERIC_SECRET;
	d->priv = true;
	for (CK_ULONG i = 0; i < n && rv == CKR_OK; i++) {
		const CK_ATTRIBUTE *a = &tpl[i];
		CK_ULONG u = 0;
		bool b = false;

		switch (a->type) {
		case CKA_CLASS:
			rv = get_ulong(a, &u);
			if (rv == CKR_OK && u != CKO_SECRET_KEY)
				rv = CKR_TEMPLATE_INCONSISTENT;
			break;
		case CKA_KEY_TYPE:
			rv = get_ulong(a, &d->key_type);
			if (rv == CKR_OK && d->key_type != CKK_GENERIC_SECRET &&
			    d->key_type != CKK_AES)
				rv = CKR_TEMPLATE_INCONSISTENT;
			break;
		case CKA_VALUE_LEN:
			rv = get_ulong(a, &d->value_len);
			break;
		case CKA_TOKEN:
			rv = get_bool(a, &b);
			if (rv == CKR_OK && b)
				rv = CKR_TOKEN_WRITE_PROTECTED;
			break;
		case CKA_SENSITIVE:
			rv = get_bool(a, &d->sensitive);
			d->sensitive_set = true;
			break;
		case CKA_EXTRACTABLE:
			rv = get_bool(a, &d->extractable);
			break;
		case CKA_PRIVATE:
			rv = get_bool(a, &d->priv);
			break;
		case CKA_ENCRYPT:
			rv = get_bool(a, &d->enc);
			break;
		case CKA_DECRYPT:
			rv = get_bool(a, &d->dec);
			break;
		case CKA_SIGN:
			rv = get_bool(a, &d->sign);
			break;
		case CKA_VERIFY:
			rv = get_bool(a, &d->verify);
			break;
		case CKA_WRAP:
			rv = get_bool(a, &d->wrap);
			break;
		case CKA_UNWRAP:
			rv = get_bool(a, &d->unwrap);
			break;
		case CKA_DERIVE:
			rv = get_bool(a, &d->derive);
			break;
		case CKA_MODIFIABLE:
		case CKA_COPYABLE:
		case CKA_DESTROYABLE:
			rv = get_bool(a, &b);
			break;
		case CKA_LABEL:
			d->label = a->pValue;
			d->label_len = a->pValue != NULL ? a->ulValueLen : 0;
			break;
		case CKA_ID:
			d->id = a->pValue;
			d->id_len = a->pValue != NULL ? a->ulValueLen : 0;
			break;
		default:
			rv = CKR_ATTRIBUTE_TYPE_INVALID;
			break;
		}
	}
	if (rv != CKR_OK)
		return rv;
	if (!d->sensitive_set)
		d->sensitive = !d->extractable;
	if (d->key_type == CKK_AES && d->value_len != 16 && d->value_len != 24 &&
	    d->value_len != 32)
		return CKR_TEMPLATE_INCONSISTENT;
	return CKR_OK;
}

CK_RV
tk_p11_ecdh_peer_point(const uint8_t *data, size_t len, size_t field_bytes, const uint8_t **point,
                       size_t *point_len)
{
	const uint8_t *pub = data;
	size_t pub_len = len;

	*point = NULL;
	*point_len = 0;
	if (data == NULL || len == 0)
		return CKR_MECHANISM_PARAM_INVALID;
	/* the raw point, or (as many clients send) a DER OCTET STRING around it */
	if (pub_len != 1 + 2 * field_bytes) {
		pub = tk_p11_der_unwrap_octet_string(data, len, &pub_len);
		if (pub == NULL)
			pub_len = 0;
	}
	if (pub_len != 1 + 2 * field_bytes || pub[0] != 0x04)
		return CKR_MECHANISM_PARAM_INVALID;
	*point = pub;
	*point_len = pub_len;
	return CKR_OK;
}

CK_RV
tk_p11_x25519_peer(const uint8_t *data, size_t len, const uint8_t **pub, size_t *pub_len)
{
	const uint8_t *p = data;
	size_t n = len;

	*pub = NULL;
	*pub_len = 0;
	if (data == NULL || len == 0)
		return CKR_MECHANISM_PARAM_INVALID;
	if (n != 32 && (p = tk_p11_der_unwrap_octet_string(data, len, &n)) == NULL)
		return CKR_MECHANISM_PARAM_INVALID;
	if (n != 32)
		return CKR_MECHANISM_PARAM_INVALID;
	*pub = p;
	*pub_len = n;
	return CKR_OK;
}

static int
build_secret(struct p11_object *o, const struct derive_tpl *d, const uint8_t *val, size_t len)
{
	bool hidden = d->sensitive || !d->extractable;
	uint8_t rnd[16];
	char uid[2 * sizeof(rnd) + 1];
	int r;

	o->cls = CKO_SECRET_KEY;
	o->visible_private = d->priv;
	/* CKA_UNIQUE_ID of a session object: it lives only in this process,
	 * so 128 random bits make it unique (never the handle) */
	if (RAND_bytes_ex(tk_p11_libctx(), rnd, sizeof(rnd), 0) != 1)
		return TK_ERR_CRYPTO;
	for (size_t i = 0; i < sizeof(rnd); i++)
		snprintf(uid + 2 * i, 3, "%02x", rnd[i]);
	r = tk_p11_attr_add_ulong(o, CKA_CLASS, CKO_SECRET_KEY);
	if (r == TK_OK)
		r = tk_p11_attr_add(o, CKA_UNIQUE_ID, uid, strlen(uid), false);
	if (r == TK_OK)
		r = tk_p11_attr_add_ulong(o, CKA_KEY_TYPE, d->key_type);
	if (r == TK_OK)
		r = tk_p11_attr_add_bool(o, CKA_TOKEN, false);
	if (r == TK_OK)
		r = tk_p11_attr_add_bool(o, CKA_PRIVATE, d->priv);
	if (r == TK_OK)
		r = tk_p11_attr_add_bool(o, CKA_MODIFIABLE, false);
	if (r == TK_OK)
		r = tk_p11_attr_add_bool(o, CKA_COPYABLE, false);
	if (r == TK_OK)
		r = tk_p11_attr_add_bool(o, CKA_DESTROYABLE, true);
	if (r == TK_OK)
		r = tk_p11_attr_add(o, CKA_LABEL, d->label, d->label_len, false);
	if (r == TK_OK)
		r = tk_p11_attr_add(o, CKA_ID, d->id, d->id_len, false);
	if (r == TK_OK)
		r = tk_p11_attr_add(o, CKA_START_DATE, NULL, 0, false);
	if (r == TK_OK)
		r = tk_p11_attr_add(o, CKA_END_DATE, NULL, 0, false);
	if (r == TK_OK)
		r = tk_p11_attr_add_bool(o, CKA_LOCAL, false);
	if (r == TK_OK)
		r = tk_p11_attr_add_ulong(o, CKA_KEY_GEN_MECHANISM, CK_UNAVAILABLE_INFORMATION);
	if (r == TK_OK)
		r = tk_p11_attr_add_bool(o, CKA_SENSITIVE, d->sensitive);
	if (r == TK_OK)
		r = tk_p11_attr_add_bool(o, CKA_EXTRACTABLE, d->extractable);
	if (r == TK_OK)
		r = tk_p11_attr_add_bool(o, CKA_ALWAYS_SENSITIVE, d->sensitive);
	if (r == TK_OK)
		r = tk_p11_attr_add_bool(o, CKA_NEVER_EXTRACTABLE, !d->extractable);
	if (r == TK_OK)
		r = tk_p11_attr_add_bool(o, CKA_ENCRYPT, d->enc);
	if (r == TK_OK)
		r = tk_p11_attr_add_bool(o, CKA_DECRYPT, d->dec);
	if (r == TK_OK)
		r = tk_p11_attr_add_bool(o, CKA_SIGN, d->sign);
	if (r == TK_OK)
		r = tk_p11_attr_add_bool(o, CKA_VERIFY, d->verify);
	if (r == TK_OK)
		r = tk_p11_attr_add_bool(o, CKA_WRAP, d->wrap);
	if (r == TK_OK)
		r = tk_p11_attr_add_bool(o, CKA_UNWRAP, d->unwrap);
	if (r == TK_OK)
		r = tk_p11_attr_add_bool(o, CKA_DERIVE, d->derive);
	if (r == TK_OK)
		r = tk_p11_attr_add_ulong(o, CKA_VALUE_LEN, len);
	if (r == TK_OK)
		r = tk_p11_attr_add(o, CKA_VALUE, val, len, hidden);
	return r;
}

CK_RV
tk_p11_C_DeriveKey(CK_SESSION_HANDLE hSession, CK_MECHANISM_PTR pMechanism,
                   CK_OBJECT_HANDLE hBaseKey, CK_ATTRIBUTE_PTR pTemplate, CK_ULONG ulAttributeCount,
                   CK_OBJECT_HANDLE_PTR phKey)
{
	struct p11_session *s;
	struct p11_object *key, *o = NULL;
	const CK_ECDH1_DERIVE_PARAMS *p;
	struct derive_tpl d;
	const uint8_t *pub;
	uint8_t secret[80];
	size_t pub_len, fb, got = 0;
	CK_RV rv = tk_p11_session_get(hSession, &s);

	if (rv != CKR_OK)
		return rv;
	if (pMechanism == NULL || phKey == NULL || (pTemplate == NULL && ulAttributeCount > 0)) {
		rv = CKR_ARGUMENTS_BAD;
		goto out;
	}
	if (pMechanism->mechanism != CKM_ECDH1_DERIVE) {
		rv = CKR_MECHANISM_INVALID;
		goto out;
	}
	p = pMechanism->pParameter;
	if (p == NULL || pMechanism->ulParameterLen != sizeof(*p) || p->kdf != CKD_NULL ||
	    p->ulSharedDataLen != 0 || p->pPublicData == NULL || p->ulPublicDataLen == 0) {
		rv = CKR_MECHANISM_PARAM_INVALID;
		goto out;
	}
	pthread_mutex_lock(&g_p11.lock);
	key = tk_p11_object_find_locked(s->tok, hBaseKey);
	if (key != NULL && !tk_p11_object_visible(s->tok, key, hSession)) {
		/* a private key of the token, hidden only until the user logs in
		 * (again, after a card reset or the card's return) */
		if ((key->tko != NULL || key->soft) && key->cls == CKO_PRIVATE_KEY)
			rv = CKR_USER_NOT_LOGGED_IN;
		key = NULL;
	}
	pthread_mutex_unlock(&g_p11.lock);
	if (rv != CKR_OK)
		goto out;
	if (key == NULL || key->cls == CKO_CERTIFICATE) {
		rv = CKR_KEY_HANDLE_INVALID;
		goto out;
	}
	if ((key->tko == NULL && !key->soft && key->priv == NULL) ||
	    (key->key_type != TK_KEY_EC && key->key_type != TK_KEY_X25519)) {
		rv = CKR_KEY_TYPE_INCONSISTENT;
		goto out;
	}
	if (key->cls != CKO_PRIVATE_KEY || !(key->usage & TK_USAGE_DERIVE)) {
		rv = CKR_KEY_TYPE_INCONSISTENT; /* KEY_FUNCTION_NOT_PERMITTED is no C_DeriveKey
		                                   answer */
		goto out;
	}
	rv = parse_template(pTemplate, ulAttributeCount, &d);
	if (rv != CKR_OK)
		goto out;
	fb = (key->key_bits + 7) / 8;
	if (key->key_type == TK_KEY_X25519)
		rv = tk_p11_x25519_peer(p->pPublicData, p->ulPublicDataLen, &pub, &pub_len);
	else
		rv = tk_p11_ecdh_peer_point(p->pPublicData, p->ulPublicDataLen, fb, &pub, &pub_len);
	if (rv == CKR_OK && fb > sizeof(secret))
		rv = CKR_MECHANISM_PARAM_INVALID;
	if (rv != CKR_OK)
		goto out;
	if (d.value_len > fb) {
		rv = CKR_TEMPLATE_INCONSISTENT;
		goto out;
	}
	rv = tk_p11_key_op(s, NULL, key, TK_OP_ECDH, pub, pub_len, secret, sizeof(secret), &got);
	if (rv != CKR_OK)
		goto out;
	if (got == 0 || got > sizeof(secret) || (d.value_len > 0 && d.value_len > got)) {
		rv = CKR_DEVICE_ERROR;
		goto out;
	}
	o = calloc(1, sizeof(*o));
	if (o == NULL) {
		rv = CKR_HOST_MEMORY;
		goto out;
	}
	o->owner = hSession;
	if (build_secret(o, &d, secret, d.value_len > 0 ? d.value_len : got) != TK_OK) {
		rv = CKR_HOST_MEMORY;
		goto out;
	}
	pthread_mutex_lock(&g_p11.lock);
	if (tk_p11_session_object_add_locked(s->tok, o) == TK_OK) {
		*phKey = o->handle;
		o = NULL;
	} else {
		rv = CKR_HOST_MEMORY;
	}
	pthread_mutex_unlock(&g_p11.lock);
out:
	tk_wipe(secret, sizeof(secret));
	if (o != NULL) {
		tk_p11_object_clear(o);
		free(o);
	}
	tk_p11_session_put(s, rv);
	return rv;
}
