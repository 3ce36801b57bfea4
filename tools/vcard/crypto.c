/* tokenkit virtual card: the key operations both applets use (OpenSSL 3).
 *
 * Keys are OpenSSL keys; each applet keeps its own idea of algorithm
 * identifiers (PIV algorithm bytes, OpenPGP algorithm attributes) and
 * calls these with the curve name or key size it means. */
#include <string.h>

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/params.h>
#include <openssl/param_build.h>
#include <openssl/rsa.h>

#include <tokenkit/err.h>
#include <tokenkit/mem.h>
#include <tokenkit/tlv.h>

#include "vcard_int.h"
#include "x509.h"

EVP_PKEY *
vc_fromdata(const char *type, OSSL_PARAM_BLD *bld, int selection)
{
	OSSL_PARAM *params = NULL;
	EVP_PKEY_CTX *ctx = NULL;
	EVP_PKEY *pkey = NULL;

	if ((params = OSSL_PARAM_BLD_to_param(bld)) == NULL ||
	    (ctx = EVP_PKEY_CTX_new_from_name(NULL, type, NULL)) == NULL ||
	    EVP_PKEY_fromdata_init(ctx) != 1 ||
	    EVP_PKEY_fromdata(ctx, &pkey, selection, params) != 1)
		pkey = NULL;
	EVP_PKEY_CTX_free(ctx);
	/* private values pushed from secure BIGNUMs live in the secure heap */
	OSSL_PARAM_free(params);
	return pkey;
}

static BIGNUM *
bn_of(const tk_buf_t *v, size_t max)
{
	BIGNUM *bn;

	if (v == NULL || v->len == 0 || v->len > max)
		return NULL;
	if ((bn = BN_secure_new()) == NULL)
		return NULL;
	if (BN_bin2bn(v->data, (int)v->len, bn) == NULL) {
		BN_clear_free(bn);
		return NULL;
	}
	BN_set_flags(bn, BN_FLG_CONSTTIME);
	return bn;
}

/* d, the CRT values, and the check that given CRT values belong to p, q. */
static int
rsa_private(BN_CTX *bctx, const BIGNUM *e, BIGNUM *p, BIGNUM *q, BIGNUM *d, BIGNUM *crt[3],
            const tk_buf_t *given, size_t half)
{
	BIGNUM *p1 = BN_new(), *q1 = BN_new(), *lcm = BN_new(), *g = BN_new(),
	       *chk = BN_secure_new();
	int r = TK_ERR_MALFORMED;

	if (p1 == NULL || q1 == NULL || lcm == NULL || g == NULL || chk == NULL) {
		r = TK_ERR_NO_MEMORY;
		goto out;
	}
	if (BN_sub(p1, p, BN_value_one()) != 1 || BN_sub(q1, q, BN_value_one()) != 1 ||
	    BN_gcd(g, p1, q1, bctx) != 1 || BN_mul(lcm, p1, q1, bctx) != 1 ||
	    BN_div(lcm, NULL, lcm, g, bctx) != 1 || BN_mod_inverse(d, e, lcm, bctx) == NULL)
		goto out;
	if (BN_mod(crt[0], d, p1, bctx) != 1 || BN_mod(crt[1], d, q1, bctx) != 1 ||
	    BN_mod_inverse(crt[2], q, p, bctx) == NULL)
		goto out;
	for (int i = 0; given != NULL && i < 3; i++) {
		if (given[i].len == 0 || given[i].len > half ||
		    BN_bin2bn(given[i].data, (int)given[i].len, chk) == NULL ||
		    BN_cmp(chk, crt[i]) != 0)
			goto out;
	}
	r = TK_OK;
out:
	BN_free(p1);
	BN_free(q1);
	BN_free(lcm);
	BN_free(g);
	BN_clear_free(chk);
	return r;
}

EVP_PKEY *
vc_rsa_import(unsigned bits, const tk_buf_t *ev, const tk_buf_t *pv, const tk_buf_t *qv,
              const tk_buf_t *crt)
{
	static const char *names[3] = {OSSL_PKEY_PARAM_RSA_EXPONENT1, OSSL_PKEY_PARAM_RSA_EXPONENT2,
	                               OSSL_PKEY_PARAM_RSA_COEFFICIENT1};
	size_t half = bits / 16;
	BN_CTX *bctx = BN_CTX_new();
	BIGNUM *p = bn_of(pv, half), *q = bn_of(qv, half), *n = BN_new(), *e = BN_new(),
	       *d = BN_secure_new(), *c[3] = {BN_secure_new(), BN_secure_new(), BN_secure_new()};
	OSSL_PARAM_BLD *bld = NULL;
	EVP_PKEY *pkey = NULL;

	if (bctx == NULL || p == NULL || q == NULL || n == NULL || e == NULL || d == NULL ||
	    c[0] == NULL || c[1] == NULL || c[2] == NULL)
		goto out;
	if (ev == NULL
	            ? BN_set_word(e, 65537) != 1
	            : (ev->len == 0 || ev->len > 4 || BN_bin2bn(ev->data, (int)ev->len, e) == NULL))
		goto out;
	if (!BN_is_odd(e) || BN_is_one(e) || BN_is_one(p) || BN_is_one(q) || BN_cmp(p, q) == 0)
		goto out;
	if (BN_mul(n, p, q, bctx) != 1 || BN_num_bits(n) != (int)bits)
		goto out;
	if (rsa_private(bctx, e, p, q, d, c, crt, half) != TK_OK)
		goto out;
	if ((bld = OSSL_PARAM_BLD_new()) == NULL ||
	    OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_N, n) != 1 ||
	    OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_E, e) != 1 ||
	    OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_D, d) != 1 ||
	    OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_FACTOR1, p) != 1 ||
	    OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_FACTOR2, q) != 1)
		goto out;
	for (int i = 0; i < 3; i++)
		if (OSSL_PARAM_BLD_push_BN(bld, names[i], c[i]) != 1)
			goto out;
	pkey = vc_fromdata("RSA", bld, EVP_PKEY_KEYPAIR);
out:
	OSSL_PARAM_BLD_free(bld);
	BN_clear_free(p);
	BN_clear_free(q);
	BN_free(n);
	BN_free(e);
	BN_clear_free(d);
	for (int i = 0; i < 3; i++)
		BN_clear_free(c[i]);
	BN_CTX_free(bctx);
	return pkey;
}

EVP_PKEY *
vc_ec_import(const char *group, const tk_buf_t *sv)
{
	int nid = OBJ_sn2nid(group);
	EC_GROUP *grp = NULL;
	EC_POINT *pt = NULL;
	BIGNUM *s = NULL;
	BN_CTX *bctx = NULL;
	OSSL_PARAM_BLD *bld = NULL;
	EVP_PKEY *pkey = NULL;
	uint8_t pub[133];
	size_t plen, fb;

	if (nid == NID_undef)
		nid = EC_curve_nist2nid(group);
	if ((grp = EC_GROUP_new_by_curve_name(nid)) == NULL)
		return NULL;
	fb = ((size_t)EC_GROUP_get_degree(grp) + 7) / 8;
	if (sv->len != fb || (bctx = BN_CTX_new()) == NULL ||
	    (s = BN_bin2bn(sv->data, (int)sv->len, BN_secure_new())) == NULL ||
	    (pt = EC_POINT_new(grp)) == NULL)
		goto out;
	if (BN_is_zero(s) || BN_cmp(s, EC_GROUP_get0_order(grp)) >= 0)
		goto out;
	if (EC_POINT_mul(grp, pt, s, NULL, NULL, bctx) != 1 ||
	    (plen = EC_POINT_point2oct(grp, pt, POINT_CONVERSION_UNCOMPRESSED, pub, sizeof(pub),
	                               bctx)) == 0)
		goto out;
	if ((bld = OSSL_PARAM_BLD_new()) == NULL ||
	    OSSL_PARAM_BLD_push_utf8_string(bld, OSSL_PKEY_PARAM_GROUP_NAME, group, 0) != 1 ||
	    OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_PRIV_KEY, s) != 1 ||
	    OSSL_PARAM_BLD_push_octet_string(bld, OSSL_PKEY_PARAM_PUB_KEY, pub, plen) != 1)
		goto out;
	pkey = vc_fromdata("EC", bld, EVP_PKEY_KEYPAIR);
out:
	OSSL_PARAM_BLD_free(bld);
	BN_clear_free(s);
	EC_POINT_free(pt);
	EC_GROUP_free(grp);
	BN_CTX_free(bctx);
	return pkey;
}

int
vc_ecdsa_sign(EVP_PKEY *pkey, size_t fb, const uint8_t *in, size_t in_len, uint8_t *sig,
              size_t *sig_len)
{
	size_t n = in_len > fb ? fb : in_len;
	EVP_PKEY_CTX *ctx;
	int r = TK_ERR_CRYPTO;

	if ((ctx = EVP_PKEY_CTX_new_from_pkey(NULL, pkey, NULL)) == NULL)
		return TK_ERR_NO_MEMORY;
	if (EVP_PKEY_sign_init(ctx) == 1 && EVP_PKEY_sign(ctx, sig, sig_len, in, n) == 1)
		r = TK_OK;
	EVP_PKEY_CTX_free(ctx);
	return r;
}

int
vc_ecdsa_sign_rs(EVP_PKEY *pkey, size_t fb, const uint8_t *in, size_t in_len, uint8_t *rs)
{
	uint8_t der[160];
	size_t der_len = sizeof(der), n = 0;
	int rv;

	if ((rv = vc_ecdsa_sign(pkey, fb, in, in_len, der, &der_len)) != TK_OK)
		return rv;
	return tk_ecdsa_der_to_raw(der, der_len, fb, rs, 2 * fb, &n) == TK_OK ? TK_OK
	                                                                      : TK_ERR_CRYPTO;
}

/* The peer's public key in the form of our key's type. */
static EVP_PKEY *
peer_key(EVP_PKEY *ours, const uint8_t *peer, size_t peer_len)
{
	OSSL_PARAM_BLD *bld = NULL;
	EVP_PKEY *k = NULL;
	char group[32];
	size_t gl = 0;

	if (EVP_PKEY_get_base_id(ours) == EVP_PKEY_X25519)
		return peer_len == 32 ? EVP_PKEY_new_raw_public_key(EVP_PKEY_X25519, NULL, peer, 32)
		                      : NULL;
	if (EVP_PKEY_get_base_id(ours) != EVP_PKEY_EC || peer_len == 0 || peer[0] != 0x04 ||
	    EVP_PKEY_get_utf8_string_param(ours, OSSL_PKEY_PARAM_GROUP_NAME, group, sizeof(group),
	                                   &gl) != 1)
		return NULL;
	if ((bld = OSSL_PARAM_BLD_new()) != NULL &&
	    OSSL_PARAM_BLD_push_utf8_string(bld, OSSL_PKEY_PARAM_GROUP_NAME, group, 0) == 1 &&
	    OSSL_PARAM_BLD_push_octet_string(bld, OSSL_PKEY_PARAM_PUB_KEY, peer, peer_len) == 1)
		k = vc_fromdata("EC", bld, EVP_PKEY_PUBLIC_KEY);
	OSSL_PARAM_BLD_free(bld);
	return k;
}

int
vc_ecdh(EVP_PKEY *pkey, const uint8_t *peer, size_t peer_len, uint8_t *res, size_t *res_len)
{
	EVP_PKEY *pk = peer_key(pkey, peer, peer_len);
	EVP_PKEY_CTX *ctx = NULL;
	int r = TK_ERR_INVALID_ARG;

	if (pk == NULL)
		return TK_ERR_INVALID_ARG;
	if ((ctx = EVP_PKEY_CTX_new_from_pkey(NULL, pkey, NULL)) != NULL &&
	    EVP_PKEY_derive_init(ctx) == 1 && EVP_PKEY_derive_set_peer_ex(ctx, pk, 1) == 1 &&
	    EVP_PKEY_derive(ctx, res, res_len) == 1)
		r = TK_OK;
	EVP_PKEY_CTX_free(ctx);
	EVP_PKEY_free(pk);
	return r;
}

int
vc_rsa_sign_pkcs1(EVP_PKEY *pkey, const uint8_t *in, size_t in_len, uint8_t *out, size_t *out_len)
{
	EVP_PKEY_CTX *ctx;
	int ok;

	if ((ctx = EVP_PKEY_CTX_new_from_pkey(NULL, pkey, NULL)) == NULL)
		return TK_ERR_NO_MEMORY;
	/* block type 1 over the given bytes: no digest set */
	ok = EVP_PKEY_sign_init(ctx) == 1 &&
	     EVP_PKEY_CTX_set_rsa_padding(ctx, RSA_PKCS1_PADDING) == 1 &&
	     EVP_PKEY_sign(ctx, out, out_len, in, in_len) == 1;
	EVP_PKEY_CTX_free(ctx);
	return ok ? TK_OK : TK_ERR_CRYPTO;
}

int
vc_rsa_decrypt(EVP_PKEY *pkey, int padding, const uint8_t *in, size_t in_len, uint8_t *out,
               size_t *out_len)
{
	EVP_PKEY_CTX *ctx;
	int ok;

	if ((ctx = EVP_PKEY_CTX_new_from_pkey(NULL, pkey, NULL)) == NULL)
		return TK_ERR_NO_MEMORY;
	ok = EVP_PKEY_decrypt_init(ctx) == 1 && EVP_PKEY_CTX_set_rsa_padding(ctx, padding) == 1 &&
	     EVP_PKEY_decrypt(ctx, out, out_len, in, in_len) == 1;
	EVP_PKEY_CTX_free(ctx);
	return ok ? TK_OK : TK_ERR_CRYPTO;
}
