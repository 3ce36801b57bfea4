/* tokenkit: building public keys and converting ECDSA signatures for drivers
 * (see x509.h). OpenSSL does the work here (a point is checked to lie on its
 * curve); reading certificates and SubjectPublicKeyInfo is the DER walk of
 * x509.c. */
#include <stdlib.h>
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/param_build.h>
#include <openssl/x509.h>

#include <tokenkit/buf.h>
#include <tokenkit/err.h>
#include <tokenkit/tlv.h>
#include <tokenkit/token.h>

#include "x509.h"

#define RSA_MAX_MODULUS 1024 /* bytes: 8192 bits */
#define RSA_MAX_EXPONENT 8

static int
pkey_to_spki(EVP_PKEY *k, uint8_t **spki, size_t *spki_len)
{
	unsigned char *der = NULL;
	int n = i2d_PUBKEY(k, &der);

	if (n <= 0)
		return TK_ERR_CRYPTO;
	if ((*spki = malloc((size_t)n)) == NULL) {
		OPENSSL_free(der);
		return TK_ERR_NO_MEMORY;
	}
	memcpy(*spki, der, (size_t)n);
	*spki_len = (size_t)n;
	OPENSSL_free(der);
	return TK_OK;
}

static const char *
nist_group(unsigned bits)
{
	switch (bits) {
	case 256:
		return "prime256v1";
	case 384:
		return "secp384r1";
	case 521:
		return "secp521r1";
	default:
		return NULL;
	}
}

/* The OSSL_PARAMs of the public key and the key type's name. */
static int
push_params(OSSL_PARAM_BLD *bld, int key_type, unsigned bits, const uint8_t *a, size_t a_len,
            const uint8_t *b, size_t b_len, BIGNUM **bn_n, BIGNUM **bn_e, const char **type)
{
	const char *group;

	switch (key_type) {
	case TK_KEY_RSA:
		if (a_len == 0 || a_len > RSA_MAX_MODULUS || b == NULL || b_len == 0 ||
		    b_len > RSA_MAX_EXPONENT)
			return TK_ERR_MALFORMED;
		*bn_n = BN_bin2bn(a, (int)a_len, NULL);
		*bn_e = BN_bin2bn(b, (int)b_len, NULL);
		if (*bn_n == NULL || *bn_e == NULL)
			return TK_ERR_NO_MEMORY;
		if ((bits != 0 && (unsigned)BN_num_bits(*bn_n) != bits) ||
		    BN_num_bits(*bn_n) < 512 || !BN_is_odd(*bn_e) || BN_is_one(*bn_e))
			return TK_ERR_MALFORMED;
		if (!OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_N, *bn_n) ||
		    !OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_E, *bn_e))
			return TK_ERR_NO_MEMORY;
		*type = "RSA";
		return TK_OK;
	case TK_KEY_EC:
		if ((group = nist_group(bits)) == NULL)
			return TK_ERR_NOT_SUPPORTED;
		if (a_len != 1 + 2 * ((bits + 7) / 8) || a[0] != 0x04)
			return TK_ERR_MALFORMED;
		if (!OSSL_PARAM_BLD_push_utf8_string(bld, OSSL_PKEY_PARAM_GROUP_NAME, group, 0) ||
		    !OSSL_PARAM_BLD_push_octet_string(bld, OSSL_PKEY_PARAM_PUB_KEY, a, a_len))
			return TK_ERR_NO_MEMORY;
		*type = "EC";
		return TK_OK;
	case TK_KEY_ED25519:
	case TK_KEY_X25519:
		if (a_len != 32)
			return TK_ERR_MALFORMED;
		if (!OSSL_PARAM_BLD_push_octet_string(bld, OSSL_PKEY_PARAM_PUB_KEY, a, a_len))
			return TK_ERR_NO_MEMORY;
		*type = key_type == TK_KEY_ED25519 ? "ED25519" : "X25519";
		return TK_OK;
	default:
		return TK_ERR_NOT_SUPPORTED;
	}
}

int
tk_spki_build(int key_type, unsigned bits, const uint8_t *a, size_t a_len, const uint8_t *b,
              size_t b_len, uint8_t **spki, size_t *spki_len)
{
	OSSL_PARAM_BLD *bld = NULL;
	OSSL_PARAM *params = NULL;
	EVP_PKEY_CTX *ctx = NULL;
	EVP_PKEY *k = NULL;
	BIGNUM *bn_n = NULL, *bn_e = NULL;
	const char *type = NULL;
	int r;

	if (spki != NULL)
		*spki = NULL;
	if (spki_len != NULL)
		*spki_len = 0;
	if (spki == NULL || spki_len == NULL || a == NULL)
		return TK_ERR_INVALID_ARG;
	if ((bld = OSSL_PARAM_BLD_new()) == NULL)
		return TK_ERR_NO_MEMORY;
	r = push_params(bld, key_type, bits, a, a_len, b, b_len, &bn_n, &bn_e, &type);
	if (r != TK_OK)
		goto out;
	if ((ctx = EVP_PKEY_CTX_new_from_name(NULL, type, NULL)) == NULL ||
	    (params = OSSL_PARAM_BLD_to_param(bld)) == NULL) {
		r = TK_ERR_NO_MEMORY;
		goto out;
	}
	if (EVP_PKEY_fromdata_init(ctx) != 1 ||
	    EVP_PKEY_fromdata(ctx, &k, EVP_PKEY_PUBLIC_KEY, params) != 1) {
		r = TK_ERR_MALFORMED;
		goto out;
	}
	if (key_type == TK_KEY_EC) {
		/* fromdata does not check that the point is on the curve */
		EVP_PKEY_CTX *vc = EVP_PKEY_CTX_new_from_pkey(NULL, k, NULL);
		int ok = vc != NULL && EVP_PKEY_public_check(vc) == 1;

		EVP_PKEY_CTX_free(vc);
		if (!ok) {
			r = TK_ERR_MALFORMED;
			goto out;
		}
	}
	r = pkey_to_spki(k, spki, spki_len);
out:
	EVP_PKEY_free(k);
	EVP_PKEY_CTX_free(ctx);
	OSSL_PARAM_free(params);
	OSSL_PARAM_BLD_free(bld);
	BN_free(bn_n);
	BN_free(bn_e);
	return r;
}

/* An INTEGER of an ECDSA-Sig-Value into field bytes, big-endian. */
static int
put_int(const tk_tlv_t *t, size_t field, uint8_t *out)
{
	const uint8_t *v = t->value;
	size_t n = t->len;

	if (t->tag != 0x02 || n == 0 || (v[0] & 0x80) != 0)
		return TK_ERR_MALFORMED; /* r and s are positive */
	while (n > 1 && v[0] == 0) {
		v++;
		n--;
	}
	if (n > field)
		return TK_ERR_MALFORMED;
	memset(out, 0, field - n);
	memcpy(out + field - n, v, n);
	return TK_OK;
}

int
tk_ecdsa_der_to_raw(const uint8_t *der, size_t der_len, size_t field, uint8_t *out, size_t out_cap,
                    size_t *out_len)
{
	tk_tlv_t seq, r_t, s_t, extra;
	tk_buf_t b, in;
	int r;

	*out_len = 0;
	if (field == 0 || field > 66)
		return TK_ERR_INVALID_ARG;
	if (out_cap < 2 * field)
		return TK_ERR_BUFFER_TOO_SMALL;
	tk_buf_init(&b, der, der_len);
	if ((r = tk_ber_get(&b, &seq)) != TK_OK)
		return r == TK_ERR_NOT_FOUND ? TK_ERR_MALFORMED : r;
	if (seq.tag != 0x30 || tk_buf_left(&b) != 0)
		return TK_ERR_MALFORMED;
	tk_buf_init(&in, seq.value, seq.len);
	if (tk_ber_get(&in, &r_t) != TK_OK || tk_ber_get(&in, &s_t) != TK_OK ||
	    tk_ber_get(&in, &extra) != TK_ERR_NOT_FOUND)
		return TK_ERR_MALFORMED;
	if ((r = put_int(&r_t, field, out)) != TK_OK ||
	    (r = put_int(&s_t, field, out + field)) != TK_OK) {
		memset(out, 0, 2 * field);
		return r;
	}
	*out_len = 2 * field;
	return TK_OK;
}
