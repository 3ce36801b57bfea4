/* tokenkit: the software token's key material: OpenSSL keys and the
 * PKCS#11 attributes that describe them (see core/soft.h). Every key is
 * made in the library's own OpenSSL context (core/ossl.h). */
#include <stdlib.h>
#include <string.h>

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/param_build.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>

#include <tokenkit/buf.h>
#include <tokenkit/err.h>
#include <tokenkit/mem.h>

#include "ossl.h"
#include "secmem.h"
#include "soft.h"

/* The curves a software token holds, with CKA_EC_PARAMS as stored. */
static const struct curve {
	const char *name; /* OpenSSL's group name */
	CK_KEY_TYPE kt;
	uint8_t oid[12];
	size_t oid_len;
	size_t field; /* bytes of a coordinate (Ed25519: of the key) */
} curves[] = {
        {"prime256v1",
         CKK_EC,
         {0x06, 0x08, 0x2A, 0x86, 0x48, 0xCE, 0x3D, 0x03, 0x01, 0x07},
         10,
         32},
        {"secp384r1", CKK_EC, {0x06, 0x05, 0x2B, 0x81, 0x04, 0x00, 0x22}, 7, 48},
        {"secp521r1", CKK_EC, {0x06, 0x05, 0x2B, 0x81, 0x04, 0x00, 0x23}, 7, 66},
        {"ED25519", CKK_EC_EDWARDS, {0x06, 0x03, 0x2B, 0x65, 0x70}, 5, 32},
};
#define NCURVES (sizeof(curves) / sizeof(curves[0]))

/* Other spellings of the Ed25519 parameters clients send: the curve's
 * name as a PrintableString (PKCS#11 3.0 2.3.10 allows it; OpenSC sends
 * it), and GnuPG's OID for Curve25519 in EdDSA use. */
static const uint8_t ed_name[] = {0x13, 0x0C, 'e', 'd', 'w', 'a', 'r',
                                  'd',  's',  '2', '5', '5', '1', '9'};
static const uint8_t ed_gnupg[] = {0x06, 0x09, 0x2B, 0x06, 0x01, 0x04,
                                   0x01, 0xDA, 0x47, 0x0F, 0x01};

static const struct curve *
curve_by_params(const uint8_t *p, size_t len, CK_KEY_TYPE kt)
{
	const struct curve *ed = &curves[NCURVES - 1];

	if (p == NULL)
		return NULL;
	if (kt == CKK_EC_EDWARDS && ((len == sizeof(ed_name) && memcmp(p, ed_name, len) == 0) ||
	                             (len == sizeof(ed_gnupg) && memcmp(p, ed_gnupg, len) == 0)))
		return ed;
	for (size_t i = 0; i < NCURVES; i++)
		if (curves[i].kt == kt && curves[i].oid_len == len &&
		    memcmp(curves[i].oid, p, len) == 0)
			return &curves[i];
	return NULL;
}

static const struct curve *
curve_of(const EVP_PKEY *pk)
{
	char group[64];

	if (EVP_PKEY_get_base_id(pk) == EVP_PKEY_ED25519)
		return &curves[NCURVES - 1];
	if (EVP_PKEY_get_base_id(pk) != EVP_PKEY_EC ||
	    EVP_PKEY_get_utf8_string_param(pk, OSSL_PKEY_PARAM_GROUP_NAME, group, sizeof(group),
	                                   NULL) != 1)
		return NULL;
	for (size_t i = 0; i < NCURVES; i++)
		if (strcmp(curves[i].name, group) == 0)
			return &curves[i];
	return NULL;
}

CK_KEY_TYPE
tk_soft_pkey_type(const EVP_PKEY *pk)
{
	const struct curve *c;

	if (pk == NULL)
		return CK_UNAVAILABLE_INFORMATION;
	if (EVP_PKEY_get_base_id(pk) == EVP_PKEY_RSA)
		return CKK_RSA;
	c = curve_of(pk);
	return c != NULL ? c->kt : CK_UNAVAILABLE_INFORMATION;
}

/* ---- new keys ---------------------------------------------------------------------- */

#define RSA_GEN_MIN 2048
#define RSA_GEN_MAX 4096

int
tk_soft_key_generate(CK_KEY_TYPE kt, CK_ULONG bits, const uint8_t *e, size_t e_len,
                     const uint8_t *params, size_t params_len, EVP_PKEY **out)
{
	const struct curve *c = NULL;
	EVP_PKEY_CTX *ctx = NULL;
	BIGNUM *bn = NULL;
	int r = TK_ERR_CRYPTO;

	*out = NULL;
	if (kt == CKK_RSA) {
		if (bits < RSA_GEN_MIN || bits > RSA_GEN_MAX || (e != NULL && e_len > 8))
			return TK_ERR_ATTR_VALUE_INVALID;
		if (e != NULL && ((bn = BN_bin2bn(e, (int)e_len, NULL)) == NULL))
			return TK_ERR_NO_MEMORY;
		/* an even or tiny exponent makes no RSA key */
		if (bn != NULL && (!BN_is_odd(bn) || BN_get_word(bn) < 3)) {
			BN_free(bn);
			return TK_ERR_ATTR_VALUE_INVALID;
		}
		ctx = EVP_PKEY_CTX_new_from_name(tk_ossl_libctx(), "RSA", NULL);
		if (ctx != NULL && EVP_PKEY_keygen_init(ctx) == 1 &&
		    EVP_PKEY_CTX_set_rsa_keygen_bits(ctx, (int)bits) == 1 &&
		    (bn == NULL || EVP_PKEY_CTX_set1_rsa_keygen_pubexp(ctx, bn) == 1) &&
		    EVP_PKEY_generate(ctx, out) == 1)
			r = TK_OK;
		goto out;
	}
	if ((c = curve_by_params(params, params_len, kt)) == NULL)
		return TK_ERR_ATTR_VALUE_INVALID;
	if (c->kt == CKK_EC_EDWARDS) {
		ctx = EVP_PKEY_CTX_new_from_name(tk_ossl_libctx(), "ED25519", NULL);
		if (ctx != NULL && EVP_PKEY_keygen_init(ctx) == 1 &&
		    EVP_PKEY_generate(ctx, out) == 1)
			r = TK_OK;
	} else {
		ctx = EVP_PKEY_CTX_new_from_name(tk_ossl_libctx(), "EC", NULL);
		if (ctx != NULL && EVP_PKEY_keygen_init(ctx) == 1 &&
		    EVP_PKEY_CTX_set_group_name(ctx, c->name) == 1 &&
		    EVP_PKEY_generate(ctx, out) == 1)
			r = TK_OK;
	}
out:
	BN_free(bn);
	EVP_PKEY_CTX_free(ctx);
	if (r != TK_OK) {
		EVP_PKEY_free(*out);
		*out = NULL;
	}
	return r;
}

/* ---- to attributes ------------------------------------------------------------------ */

static int
set_bn(tk_attrs_t *l, CK_ATTRIBUTE_TYPE t, const EVP_PKEY *pk, const char *name, size_t pad)
{
	BIGNUM *bn = NULL;
	uint8_t *buf = NULL;
	size_t n;
	int r = TK_ERR_CRYPTO;

	if (EVP_PKEY_get_bn_param(pk, name, &bn) != 1)
		return TK_ERR_CRYPTO;
	n = (size_t)BN_num_bytes(bn);
	if (pad > n)
		n = pad;
	if ((buf = malloc(n > 0 ? n : 1)) == NULL) {
		r = TK_ERR_NO_MEMORY;
		goto out;
	}
	if (BN_bn2binpad(bn, buf, (int)n) != (int)n)
		goto out;
	r = tk_attrs_set(l, t, buf, n);
out:
	tk_freezero(buf, n);
	BN_clear_free(bn);
	return r;
}

/* A DER OCTET STRING around p (CKA_EC_POINT). */
static int
set_octet_string(tk_attrs_t *l, CK_ATTRIBUTE_TYPE t, const uint8_t *p, size_t n)
{
	uint8_t buf[4 + 160];
	size_t h = 0;

	if (n > sizeof(buf) - 4)
		return TK_ERR_TOO_LONG;
	buf[h++] = 0x04;
	if (n >= 0x80)
		buf[h++] = 0x81;
	buf[h++] = (uint8_t)n;
	memcpy(buf + h, p, n);
	return tk_attrs_set(l, t, buf, h + n);
}

int
tk_soft_key_attrs(EVP_PKEY *pk, bool priv, tk_attrs_t *l)
{
	CK_KEY_TYPE kt = tk_soft_pkey_type(pk);
	const struct curve *c;
	uint8_t pt[160], *der = NULL;
	size_t pl = sizeof(pt);
	int n, r;

	if (kt == CK_UNAVAILABLE_INFORMATION)
		return TK_ERR_NOT_SUPPORTED;
	if ((r = tk_attrs_set_ulong(l, CKA_KEY_TYPE, kt)) != TK_OK)
		return r;
	if (kt == CKK_RSA) {
		r = set_bn(l, CKA_MODULUS, pk, OSSL_PKEY_PARAM_RSA_N, 0);
		if (r == TK_OK)
			r = set_bn(l, CKA_PUBLIC_EXPONENT, pk, OSSL_PKEY_PARAM_RSA_E, 0);
		if (r == TK_OK)
			r = tk_attrs_set_ulong(l, CKA_MODULUS_BITS,
			                       (CK_ULONG)EVP_PKEY_get_bits(pk));
	} else {
		c = curve_of(pk);
		r = tk_attrs_set(l, CKA_EC_PARAMS, c->oid, c->oid_len);
		if (r == TK_OK && kt == CKK_EC_EDWARDS &&
		    EVP_PKEY_get_raw_public_key(pk, pt, &pl) != 1)
			r = TK_ERR_CRYPTO;
		if (r == TK_OK && kt == CKK_EC &&
		    EVP_PKEY_get_octet_string_param(pk, OSSL_PKEY_PARAM_ENCODED_PUBLIC_KEY, pt,
		                                    sizeof(pt), &pl) != 1)
			r = TK_ERR_CRYPTO;
		if (r == TK_OK)
			r = set_octet_string(l, CKA_EC_POINT, pt, pl);
	}
	if (r != TK_OK)
		return r;
	(void)priv; /* the same public attributes: a private key's are its extras */
	if ((n = i2d_PUBKEY(pk, &der)) <= 0)
		return TK_ERR_CRYPTO;
	r = tk_attrs_set(l, CKA_PUBLIC_KEY_INFO, der, (size_t)n);
	OPENSSL_free(der);
	return r;
}

/* ---- from attributes ---------------------------------------------------------------- */

static const tk_attr_t *
need(const tk_attrs_t *l, CK_ATTRIBUTE_TYPE t)
{
	const tk_attr_t *a = tk_attrs_get(l, t);

	return a != NULL && a->len > 0 ? a : NULL;
}

static int
push_bn(OSSL_PARAM_BLD *b, const char *name, const tk_attr_t *a, BIGNUM **keep)
{
	*keep = BN_bin2bn(a->val, (int)a->len, NULL);
	if (*keep == NULL)
		return TK_ERR_NO_MEMORY;
	BN_set_flags(*keep, BN_FLG_CONSTTIME);
	return OSSL_PARAM_BLD_push_BN(b, name, *keep) == 1 ? TK_OK : TK_ERR_NO_MEMORY;
}

static int
fromdata(const char *alg, OSSL_PARAM_BLD *b, bool priv, EVP_PKEY **out)
{
	OSSL_PARAM *params = OSSL_PARAM_BLD_to_param(b);
	EVP_PKEY_CTX *c = EVP_PKEY_CTX_new_from_name(tk_ossl_libctx(), alg, NULL);
	int r = TK_ERR_ATTR_VALUE_INVALID;

	*out = NULL;
	if (params == NULL || c == NULL) {
		r = TK_ERR_NO_MEMORY;
		goto out;
	}
	if (EVP_PKEY_fromdata_init(c) != 1 ||
	    EVP_PKEY_fromdata(c, out, priv ? EVP_PKEY_KEYPAIR : EVP_PKEY_PUBLIC_KEY, params) != 1)
		goto out;
	r = TK_OK;
out:
	OSSL_PARAM_free(params);
	EVP_PKEY_CTX_free(c);
	return r;
}

static int
rsa_from_attrs(const tk_attrs_t *l, bool priv, EVP_PKEY **out)
{
	static const struct {
		CK_ATTRIBUTE_TYPE t;
		const char *name;
	} parts[] = {
	        {CKA_MODULUS, OSSL_PKEY_PARAM_RSA_N},
	        {CKA_PUBLIC_EXPONENT, OSSL_PKEY_PARAM_RSA_E},
	        {CKA_PRIVATE_EXPONENT, OSSL_PKEY_PARAM_RSA_D},
	        {CKA_PRIME_1, OSSL_PKEY_PARAM_RSA_FACTOR1},
	        {CKA_PRIME_2, OSSL_PKEY_PARAM_RSA_FACTOR2},
	        {CKA_EXPONENT_1, OSSL_PKEY_PARAM_RSA_EXPONENT1},
	        {CKA_EXPONENT_2, OSSL_PKEY_PARAM_RSA_EXPONENT2},
	        {CKA_COEFFICIENT, OSSL_PKEY_PARAM_RSA_COEFFICIENT1},
	};
	size_t nparts = priv ? 8 : 2;
	BIGNUM *bn[8] = {NULL};
	OSSL_PARAM_BLD *b = OSSL_PARAM_BLD_new();
	EVP_PKEY_CTX *chk = NULL;
	int r = TK_OK;

	if (b == NULL)
		return TK_ERR_NO_MEMORY;
	for (size_t i = 0; i < nparts && r == TK_OK; i++) {
		const tk_attr_t *a = need(l, parts[i].t);

		/* a private key in its CRT form whole: what OpenSSL computes with
		 * (and blinds with e) */
		r = a == NULL ? TK_ERR_TEMPLATE_INCOMPLETE : push_bn(b, parts[i].name, a, &bn[i]);
	}
	if (r == TK_OK)
		r = fromdata("RSA", b, priv, out);
	if (r == TK_OK && (EVP_PKEY_get_bits(*out) < 1024 || EVP_PKEY_get_bits(*out) > 8192))
		r = TK_ERR_ATTR_VALUE_INVALID;
	/* the parts make one key (n = pq, de = 1 mod lambda ...) */
	if (r == TK_OK && priv &&
	    ((chk = EVP_PKEY_CTX_new_from_pkey(tk_ossl_libctx(), *out, NULL)) == NULL ||
	     EVP_PKEY_pairwise_check(chk) != 1))
		r = TK_ERR_ATTR_VALUE_INVALID;
	if (r != TK_OK) {
		EVP_PKEY_free(*out);
		*out = NULL;
	}
	EVP_PKEY_CTX_free(chk);
	for (size_t i = 0; i < 8; i++)
		BN_clear_free(bn[i]);
	OSSL_PARAM_BLD_free(b);
	return r;
}

/* The point of CKA_EC_POINT: a DER OCTET STRING around it, as PKCS#11 has
 * it, or (as some clients send) the bare point; want is the bare size. */
static const uint8_t *
ec_point(const tk_attr_t *a, size_t want, size_t *len)
{
	const uint8_t *p = a->val;

	*len = 0;
	if (a->len == want) {
		*len = want;
		return p;
	}
	if (want < 0x80 && a->len == want + 2 && p[0] == 0x04 && p[1] == want) {
		*len = want;
		return p + 2;
	}
	if (want >= 0x80 && want <= 0xFF && a->len == want + 3 && p[0] == 0x04 && p[1] == 0x81 &&
	    p[2] == want) {
		*len = want;
		return p + 3;
	}
	return NULL;
}

/* The public point of an EC private key: d × G. */
static int
ec_public_of(const struct curve *c, const BIGNUM *d, uint8_t *pt, size_t cap, size_t *pl)
{
	EC_GROUP *g = EC_GROUP_new_by_curve_name_ex(tk_ossl_libctx(), NULL, OBJ_sn2nid(c->name));
	EC_POINT *p = NULL;
	int r = TK_ERR_ATTR_VALUE_INVALID;

	*pl = 0;
	if (g == NULL || (p = EC_POINT_new(g)) == NULL) {
		r = TK_ERR_NO_MEMORY;
		goto out;
	}
	if (BN_is_zero(d) || BN_cmp(d, EC_GROUP_get0_order(g)) >= 0)
		goto out;
	if (EC_POINT_mul(g, p, d, NULL, NULL, NULL) != 1 ||
	    (*pl = EC_POINT_point2oct(g, p, POINT_CONVERSION_UNCOMPRESSED, pt, cap, NULL)) == 0)
		goto out;
	r = TK_OK;
out:
	EC_POINT_free(p);
	EC_GROUP_free(g);
	return r;
}

static int
ec_from_attrs(const tk_attrs_t *l, CK_KEY_TYPE kt, bool priv, EVP_PKEY **out)
{
	const tk_attr_t *params = need(l, CKA_EC_PARAMS), *a;
	const struct curve *c;
	OSSL_PARAM_BLD *b = NULL;
	BIGNUM *d = NULL;
	uint8_t pt[1 + 2 * 66];
	const uint8_t *point;
	size_t pl;
	int r;

	*out = NULL;
	if (params == NULL)
		return TK_ERR_TEMPLATE_INCOMPLETE;
	if ((c = curve_by_params(params->val, params->len, kt)) == NULL)
		return TK_ERR_ATTR_VALUE_INVALID;
	if (kt == CKK_EC_EDWARDS) {
		if (priv) {
			a = need(l, CKA_VALUE);
			if (a == NULL)
				return TK_ERR_TEMPLATE_INCOMPLETE;
			if (a->len != c->field)
				return TK_ERR_ATTR_VALUE_INVALID;
			*out = EVP_PKEY_new_raw_private_key_ex(tk_ossl_libctx(), "ED25519", NULL,
			                                       a->val, a->len);
		} else {
			if ((a = need(l, CKA_EC_POINT)) == NULL)
				return TK_ERR_TEMPLATE_INCOMPLETE;
			if ((point = ec_point(a, c->field, &pl)) == NULL)
				return TK_ERR_ATTR_VALUE_INVALID;
			*out = EVP_PKEY_new_raw_public_key_ex(tk_ossl_libctx(), "ED25519", NULL,
			                                      point, pl);
		}
		return *out != NULL ? TK_OK : TK_ERR_ATTR_VALUE_INVALID;
	}
	if ((b = OSSL_PARAM_BLD_new()) == NULL ||
	    OSSL_PARAM_BLD_push_utf8_string(b, OSSL_PKEY_PARAM_GROUP_NAME, c->name, 0) != 1) {
		r = TK_ERR_NO_MEMORY;
		goto out;
	}
	if (priv) {
		if ((a = need(l, CKA_VALUE)) == NULL) {
			r = TK_ERR_TEMPLATE_INCOMPLETE;
			goto out;
		}
		if (a->len > c->field) {
			r = TK_ERR_ATTR_VALUE_INVALID;
			goto out;
		}
		if ((r = push_bn(b, OSSL_PKEY_PARAM_PRIV_KEY, a, &d)) != TK_OK ||
		    (r = ec_public_of(c, d, pt, sizeof(pt), &pl)) != TK_OK)
			goto out;
		point = pt;
	} else {
		if ((a = need(l, CKA_EC_POINT)) == NULL) {
			r = TK_ERR_TEMPLATE_INCOMPLETE;
			goto out;
		}
		if ((point = ec_point(a, 1 + 2 * c->field, &pl)) == NULL || point[0] != 0x04) {
			r = TK_ERR_ATTR_VALUE_INVALID;
			goto out;
		}
	}
	if (OSSL_PARAM_BLD_push_octet_string(b, OSSL_PKEY_PARAM_PUB_KEY, point, pl) != 1) {
		r = TK_ERR_NO_MEMORY;
		goto out;
	}
	/* OpenSSL checks the point is on the curve */
	r = fromdata("EC", b, priv, out);
out:
	BN_clear_free(d);
	OSSL_PARAM_BLD_free(b);
	return r;
}

int
tk_soft_key_from_attrs(const tk_attrs_t *l, bool priv, EVP_PKEY **out)
{
	CK_KEY_TYPE kt = tk_obj_key_type(l);

	*out = NULL;
	switch (kt) {
	case CKK_RSA:
		return rsa_from_attrs(l, priv, out);
	case CKK_EC:
	case CKK_EC_EDWARDS:
		return ec_from_attrs(l, kt, priv, out);
	default:
		return TK_ERR_ATTR_VALUE_INVALID;
	}
}

/* ---- secret parts ------------------------------------------------------------------ */

int
tk_soft_key_secret_attr(EVP_PKEY *pk, CK_ATTRIBUTE_TYPE t, uint8_t **val, size_t *len)
{
	static const struct {
		CK_ATTRIBUTE_TYPE t;
		const char *name;
	} rsa[] = {
	        {CKA_PRIVATE_EXPONENT, OSSL_PKEY_PARAM_RSA_D},
	        {CKA_PRIME_1, OSSL_PKEY_PARAM_RSA_FACTOR1},
	        {CKA_PRIME_2, OSSL_PKEY_PARAM_RSA_FACTOR2},
	        {CKA_EXPONENT_1, OSSL_PKEY_PARAM_RSA_EXPONENT1},
	        {CKA_EXPONENT_2, OSSL_PKEY_PARAM_RSA_EXPONENT2},
	        {CKA_COEFFICIENT, OSSL_PKEY_PARAM_RSA_COEFFICIENT1},
	};
	CK_KEY_TYPE kt = tk_soft_pkey_type(pk);
	const struct curve *c;
	tk_attrs_t tmp = {NULL, 0};
	const char *name = NULL;
	size_t pad = 0;
	int r;

	*val = NULL;
	*len = 0;
	if (kt == CKK_RSA) {
		for (size_t i = 0; i < sizeof(rsa) / sizeof(rsa[0]); i++)
			if (rsa[i].t == t)
				name = rsa[i].name;
	} else if (t == CKA_VALUE && kt == CKK_EC) {
		name = OSSL_PKEY_PARAM_PRIV_KEY;
		pad = curve_of(pk)->field;
	} else if (t == CKA_VALUE && kt == CKK_EC_EDWARDS) {
		uint8_t raw[32];
		size_t rl = sizeof(raw);

		c = curve_of(pk);
		if (EVP_PKEY_get_raw_private_key(pk, raw, &rl) != 1 || rl != c->field)
			return TK_ERR_CRYPTO;
		if ((*val = malloc(rl)) == NULL) {
			tk_wipe(raw, sizeof(raw));
			return TK_ERR_NO_MEMORY;
		}
		memcpy(*val, raw, rl);
		*len = rl;
		tk_wipe(raw, sizeof(raw));
		return TK_OK;
	}
	if (name == NULL)
		return TK_ERR_NOT_FOUND;
	if ((r = set_bn(&tmp, t, pk, name, pad)) != TK_OK)
		return r;
	/* taken out of the list whole */
	*val = tmp.a[0].val;
	*len = tmp.a[0].len;
	free(tmp.a);
	return TK_OK;
}

int
tk_soft_key_to_pkcs8(EVP_PKEY *pk, void **der, size_t *len)
{
	PKCS8_PRIV_KEY_INFO *p8 = EVP_PKEY2PKCS8(pk);
	unsigned char *buf = NULL;
	int n, r;

	*der = NULL;
	*len = 0;
	if (p8 == NULL)
		return TK_ERR_CRYPTO;
	n = i2d_PKCS8_PRIV_KEY_INFO(p8, &buf);
	PKCS8_PRIV_KEY_INFO_free(p8);
	if (n <= 0)
		return TK_ERR_CRYPTO;
	r = tk_secmem_dup(buf, (size_t)n, der);
	if (r == TK_OK)
		*len = (size_t)n;
	OPENSSL_clear_free(buf, (size_t)n);
	return r;
}

int
tk_soft_key_from_pkcs8(const uint8_t *der, size_t len, EVP_PKEY **out)
{
	const unsigned char *q = der;
	PKCS8_PRIV_KEY_INFO *p8;

	*out = NULL;
	if (len == 0 || len > (size_t)INT32_MAX)
		return TK_ERR_MALFORMED;
	p8 = d2i_PKCS8_PRIV_KEY_INFO(NULL, &q, (long)len);
	if (p8 == NULL || q != der + len) {
		PKCS8_PRIV_KEY_INFO_free(p8);
		return TK_ERR_MALFORMED;
	}
	*out = EVP_PKCS82PKEY_ex(p8, tk_ossl_libctx(), NULL);
	PKCS8_PRIV_KEY_INFO_free(p8);
	if (*out == NULL)
		return TK_ERR_MALFORMED;
	if (tk_soft_pkey_type(*out) == CK_UNAVAILABLE_INFORMATION) {
		EVP_PKEY_free(*out);
		*out = NULL;
		return TK_ERR_NOT_SUPPORTED;
	}
	return TK_OK;
}

/* ---- private-key operations ---------------------------------------------------------- */

/* One DER INTEGER of an ECDSA-Sig-Value into out (field bytes, padded). */
static int
der_int(tk_buf_t *b, uint8_t *out, size_t field)
{
	uint8_t tag, len;
	const uint8_t *p;

	if (tk_buf_get_u8(b, &tag) != TK_OK || tag != 0x02 || tk_buf_get_u8(b, &len) != TK_OK ||
	    len == 0 || len > 0x7F || tk_buf_get_ptr(b, &p, len) != TK_OK)
		return TK_ERR_CRYPTO;
	while (len > 0 && p[0] == 0x00) {
		p++;
		len--;
	}
	if (len > field)
		return TK_ERR_CRYPTO;
	memset(out, 0, field - len);
	memcpy(out + field - len, p, len);
	return TK_OK;
}

int
tk_soft_ecdsa_to_rs(const uint8_t *der, size_t der_len, size_t field, uint8_t *out)
{
	tk_buf_t b, seq;
	uint8_t tag, len, l2;

	tk_buf_init(&b, der, der_len);
	if (tk_buf_get_u8(&b, &tag) != TK_OK || tag != 0x30 || tk_buf_get_u8(&b, &len) != TK_OK)
		return TK_ERR_CRYPTO;
	if (len == 0x81) { /* P-521: over 127 bytes */
		if (tk_buf_get_u8(&b, &l2) != TK_OK)
			return TK_ERR_CRYPTO;
		len = l2;
	} else if (len > 0x7F) {
		return TK_ERR_CRYPTO;
	}
	if (tk_buf_get_sub(&b, &seq, len) != TK_OK || tk_buf_left(&b) != 0 ||
	    der_int(&seq, out, field) != TK_OK || der_int(&seq, out + field, field) != TK_OK ||
	    tk_buf_left(&seq) != 0)
		return TK_ERR_CRYPTO;
	return TK_OK;
}

static int
ecdh(EVP_PKEY *pk, const uint8_t *point, size_t point_len, uint8_t *out, size_t cap,
     size_t *out_len)
{
	const struct curve *c = curve_of(pk);
	OSSL_PARAM_BLD *b = NULL;
	EVP_PKEY *peer = NULL;
	EVP_PKEY_CTX *ctx = NULL;
	size_t n = cap;
	int r = TK_ERR_INVALID_ARG;

	if (c == NULL || c->kt != CKK_EC || point_len != 1 + 2 * c->field || point[0] != 0x04)
		return TK_ERR_INVALID_ARG;
	if ((b = OSSL_PARAM_BLD_new()) == NULL ||
	    OSSL_PARAM_BLD_push_utf8_string(b, OSSL_PKEY_PARAM_GROUP_NAME, c->name, 0) != 1 ||
	    OSSL_PARAM_BLD_push_octet_string(b, OSSL_PKEY_PARAM_PUB_KEY, point, point_len) != 1) {
		r = TK_ERR_NO_MEMORY;
		goto out;
	}
	if (fromdata("EC", b, false, &peer) != TK_OK)
		goto out; /* not a point of the curve */
	r = TK_ERR_CRYPTO;
	if ((ctx = EVP_PKEY_CTX_new_from_pkey(tk_ossl_libctx(), pk, NULL)) == NULL ||
	    EVP_PKEY_derive_init(ctx) != 1 || EVP_PKEY_derive_set_peer(ctx, peer) != 1 ||
	    EVP_PKEY_derive(ctx, out, &n) != 1)
		goto out;
	*out_len = n;
	r = TK_OK;
out:
	EVP_PKEY_CTX_free(ctx);
	EVP_PKEY_free(peer);
	OSSL_PARAM_BLD_free(b);
	return r;
}

int
tk_soft_pkey_op(EVP_PKEY *pk, int op, const uint8_t *in, size_t in_len, uint8_t *out,
                size_t out_cap, size_t *out_len)
{
	CK_KEY_TYPE kt = tk_soft_pkey_type(pk);
	EVP_PKEY_CTX *c = NULL;
	EVP_MD_CTX *mc = NULL;
	uint8_t der[160];
	size_t n, field;
	int r = TK_ERR_CRYPTO;

	*out_len = 0;
	switch (op) {
	case TK_OP_RSA_RAW:
		n = out_cap;
		if (kt != CKK_RSA)
			return TK_ERR_INVALID_ARG;
		if ((size_t)EVP_PKEY_get_size(pk) > out_cap)
			return TK_ERR_BUFFER_TOO_SMALL;
		if ((c = EVP_PKEY_CTX_new_from_pkey(tk_ossl_libctx(), pk, NULL)) != NULL &&
		    EVP_PKEY_decrypt_init(c) == 1 &&
		    EVP_PKEY_CTX_set_rsa_padding(c, RSA_NO_PADDING) == 1 &&
		    EVP_PKEY_decrypt(c, out, &n, in, in_len) == 1) {
			*out_len = n;
			r = TK_OK;
		}
		break;
	case TK_OP_ECDSA:
		if (kt != CKK_EC)
			return TK_ERR_INVALID_ARG;
		field = curve_of(pk)->field;
		if (out_cap < 2 * field)
			return TK_ERR_BUFFER_TOO_SMALL;
		n = sizeof(der);
		if ((c = EVP_PKEY_CTX_new_from_pkey(tk_ossl_libctx(), pk, NULL)) != NULL &&
		    EVP_PKEY_sign_init(c) == 1 && EVP_PKEY_sign(c, der, &n, in, in_len) == 1 &&
		    tk_soft_ecdsa_to_rs(der, n, field, out) == TK_OK) {
			*out_len = 2 * field;
			r = TK_OK;
		}
		break;
	case TK_OP_EDDSA:
		if (kt != CKK_EC_EDWARDS)
			return TK_ERR_INVALID_ARG;
		if (out_cap < 64)
			return TK_ERR_BUFFER_TOO_SMALL;
		n = out_cap;
		if ((mc = EVP_MD_CTX_new()) != NULL &&
		    EVP_DigestSignInit_ex(mc, NULL, NULL, tk_ossl_libctx(), NULL, pk, NULL) == 1 &&
		    EVP_DigestSign(mc, out, &n, in, in_len) == 1) {
			*out_len = n;
			r = TK_OK;
		}
		break;
	case TK_OP_ECDH:
		return ecdh(pk, in, in_len, out, out_cap, out_len);
	default:
		return TK_ERR_INVALID_ARG;
	}
	EVP_MD_CTX_free(mc);
	EVP_PKEY_CTX_free(c);
	return r;
}
