/* tokenkit: what a new object of the software token is made of, beyond
 * its template (see core/soft.h): a certificate's value checked and the
 * attributes it implies, a key's material checked, taken out of the
 * attribute list and described by its public attributes, a secret key's
 * value checked with its length and check value. C_CreateObject, key
 * generation, unwrapping, derivation and the PKCS#12 import all go
 * through here. */
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include <tokenkit/err.h>
#include <tokenkit/mem.h>

#include "ossl.h"
#include "secmem.h"
#include "soft.h"
#include "x509.h"

#define GENERIC_SECRET_MAX 1024

/* A value the token computes: set when absent or empty; one given must be
 * the same. */
static int
derived(tk_attrs_t *l, CK_ATTRIBUTE_TYPE t, const void *v, size_t len, int mismatch)
{
	const tk_attr_t *a = tk_attrs_get(l, t);

	if (a != NULL && a->len > 0 && (a->len != len || memcmp(a->val, v, len) != 0))
		return mismatch;
	return tk_attrs_set(l, t, v, len);
}

static int
digest3(const char *md, const uint8_t *p, size_t n, uint8_t out[3])
{
	EVP_MD *m = EVP_MD_fetch(tk_ossl_libctx(), md, NULL);
	uint8_t h[EVP_MAX_MD_SIZE];
	unsigned int hl = 0;
	int r = TK_ERR_CRYPTO;

	if (m != NULL && EVP_Digest(p, n, h, &hl, m, NULL) == 1 && hl >= 3) {
		memcpy(out, h, 3);
		r = TK_OK;
	}
	EVP_MD_free(m);
	return r;
}

/* CKA_CHECK_VALUE of an AES key: the first three bytes of the ECB
 * encryption of a zero block (PKCS#11 3.0 2.9.1). */
static int
aes_check(const uint8_t *key, size_t len, uint8_t out[3])
{
	static const char *const names[] = {"AES-128-ECB", "AES-192-ECB", "AES-256-ECB"};
	EVP_CIPHER *c = EVP_CIPHER_fetch(tk_ossl_libctx(), names[(len - 16) / 8], NULL);
	EVP_CIPHER_CTX *x = EVP_CIPHER_CTX_new();
	uint8_t zero[16] = {0}, blk[32];
	int n = 0, r = TK_ERR_CRYPTO;

	if (c != NULL && x != NULL && EVP_EncryptInit_ex2(x, c, key, NULL, NULL) == 1 &&
	    EVP_CIPHER_CTX_set_padding(x, 0) == 1 &&
	    EVP_EncryptUpdate(x, blk, &n, zero, sizeof(zero)) == 1 && n == 16) {
		memcpy(out, blk, 3);
		r = TK_OK;
	}
	tk_wipe(blk, sizeof(blk));
	EVP_CIPHER_CTX_free(x);
	EVP_CIPHER_free(c);
	return r;
}

int
tk_soft_secret_attrs(CK_KEY_TYPE kt, const uint8_t *val, size_t len, tk_attrs_t *l)
{
	uint8_t check[3];
	CK_ULONG want;
	int r;

	if (kt == CKK_AES ? (len != 16 && len != 24 && len != 32)
	                  : (len == 0 || len > GENERIC_SECRET_MAX))
		return TK_ERR_ATTR_VALUE_INVALID;
	/* a length given (generation, derivation) must be this one */
	if (tk_attrs_ulong(l, CKA_VALUE_LEN, &want) && want != len)
		return TK_ERR_TEMPLATE_INCONSISTENT;
	if ((r = tk_attrs_set_ulong(l, CKA_VALUE_LEN, len)) != TK_OK)
		return r;
	r = kt == CKK_AES ? aes_check(val, len, check) : digest3("SHA1", val, len, check);
	if (r == TK_OK)
		r = derived(l, CKA_CHECK_VALUE, check, sizeof(check), TK_ERR_ATTR_VALUE_INVALID);
	tk_wipe(check, sizeof(check));
	return r;
}

/* A date of the certificate's validity (YYYYMMDD) as CKA_START_DATE /
 * CKA_END_DATE, unless the template gave one. */
static int
date_attr(tk_attrs_t *l, CK_ATTRIBUTE_TYPE t, const char *ymd)
{
	const tk_attr_t *a = tk_attrs_get(l, t);
	CK_DATE d;

	if (ymd[0] == '\0' || (a != NULL && a->len > 0))
		return TK_OK;
	memcpy(d.year, ymd, 4);
	memcpy(d.month, ymd + 4, 2);
	memcpy(d.day, ymd + 6, 2);
	return tk_attrs_set(l, t, &d, sizeof(d));
}

static int
cert_material(tk_attrs_t *l)
{
	const tk_attr_t *v = tk_attrs_get(l, CKA_VALUE), *url = tk_attrs_get(l, CKA_URL);
	uint8_t check[3];
	tk_x509_t x;
	int r;

	/* certificates by value only (one only by URL would need fetching) */
	if (v == NULL || v->len == 0)
		return TK_ERR_TEMPLATE_INCOMPLETE;
	if (url != NULL && url->len > 0)
		return TK_ERR_ATTR_VALUE_INVALID;
	/* (x points into CKA_VALUE's own buffer, which nothing below moves) */
	if (tk_x509_parse(v->val, v->len, &x) != TK_OK)
		return TK_ERR_ATTR_VALUE_INVALID;
	if ((r = digest3("SHA1", v->val, v->len, check)) != TK_OK)
		return r;
	r = derived(l, CKA_CHECK_VALUE, check, sizeof(check), TK_ERR_ATTR_VALUE_INVALID);
	if (r == TK_OK)
		r = derived(l, CKA_PUBLIC_KEY_INFO, x.spki, x.spki_len,
		            TK_ERR_TEMPLATE_INCONSISTENT);
	if (r == TK_OK)
		r = date_attr(l, CKA_START_DATE, x.not_before);
	if (r == TK_OK)
		r = date_attr(l, CKA_END_DATE, x.not_after);
	return r;
}

int
tk_soft_key_describe(EVP_PKEY *pk, bool priv, tk_attrs_t *l)
{
	tk_attrs_t mine = {NULL, 0};
	int r;

	if (tk_soft_pkey_type(pk) != tk_obj_key_type(l))
		return TK_ERR_TEMPLATE_INCONSISTENT;
	if ((r = tk_soft_key_attrs(pk, priv, &mine)) != TK_OK)
		goto out;
	for (size_t i = 0; i < mine.n && r == TK_OK; i++) {
		const tk_attr_t *m = &mine.a[i];

		switch (m->type) {
		case CKA_PUBLIC_KEY_INFO:
			r = derived(l, m->type, m->val, m->len, TK_ERR_TEMPLATE_INCONSISTENT);
			break;
		case CKA_EC_PARAMS:
			/* another spelling of the same curve stays as given */
			if (tk_attrs_get(l, m->type) == NULL)
				r = tk_attrs_set(l, m->type, m->val, m->len);
			break;
		default:
			/* the key's own public values, in their one encoding */
			r = tk_attrs_set(l, m->type, m->val, m->len);
			break;
		}
	}
out:
	tk_attrs_clear(&mine);
	return r;
}

int
tk_soft_obj_material(tk_attrs_t *l, EVP_PKEY **key, void **secret, size_t *secret_len)
{
	CK_OBJECT_CLASS cls = tk_obj_class(l);
	const tk_attr_t *v;
	size_t i;
	int r;

	*key = NULL;
	*secret = NULL;
	*secret_len = 0;
	switch (cls) {
	case CKO_CERTIFICATE:
		return cert_material(l);
	case CKO_PUBLIC_KEY:
	case CKO_PRIVATE_KEY:
		if ((r = tk_soft_key_from_attrs(l, cls == CKO_PRIVATE_KEY, key)) != TK_OK)
			return r;
		/* the secret parts live in the key from now on */
		for (i = 0; i < l->n;) {
			if (tk_obj_attr_kind(l, l->a[i].type) == TK_OBJ_ATTR_SECRET)
				tk_attrs_del(l, l->a[i].type);
			else
				i++;
		}
		r = tk_soft_key_describe(*key, cls == CKO_PRIVATE_KEY, l);
		break;
	case CKO_SECRET_KEY:
		v = tk_attrs_get(l, CKA_VALUE);
		if (v == NULL || v->len == 0)
			return TK_ERR_TEMPLATE_INCOMPLETE;
		if ((r = tk_secmem_dup(v->val, v->len, secret)) != TK_OK)
			return r;
		*secret_len = v->len;
		tk_attrs_del(l, CKA_VALUE);
		r = tk_soft_secret_attrs(tk_obj_key_type(l), *secret, *secret_len, l);
		break;
	default:
		return TK_OK; /* data objects: as given */
	}
	if (r != TK_OK) {
		EVP_PKEY_free(*key);
		*key = NULL;
		tk_secmem_free(secret);
		*secret_len = 0;
	}
	return r;
}
