/* tokenkit: PIV key attestation — card encodings and chain verification.
 * See piv_attest.h. */
#include <string.h>

#include <openssl/asn1.h>
#include <openssl/core_names.h>
#include <openssl/objects.h>
#include <openssl/param_build.h>
#include <openssl/x509_vfy.h>

#include <tokenkit/err.h>
#include <tokenkit/tlv.h>

#include "piv_attest.h"

/* PIV algorithm identifiers (SP 800-78 and Yubico's). */
#define ALG_RSA1024 0x06
#define ALG_RSA2048 0x07
#define ALG_RSA3072 0x05
#define ALG_RSA4096 0x16
#define ALG_P256 0x11
#define ALG_P384 0x14
#define ALG_ED25519 0xE0
#define ALG_X25519 0xE1

int
tool_piv_object_cert(const uint8_t *obj, size_t len, const uint8_t **cert, size_t *cert_len)
{
	tk_tlv_t outer, c, info;
	int r;

	*cert = NULL;
	*cert_len = 0;
	if ((r = tk_ber_find(obj, len, 0x53, &outer)) != TK_OK)
		return r;
	if ((r = tk_ber_find(outer.value, outer.len, 0x70, &c)) != TK_OK)
		return r;
	/* 71 CertInfo: bit 0 set means gzip; the attestation certificate is
	 * never compressed on the cards we know, so do not inflate card data. */
	if (tk_ber_find(outer.value, outer.len, 0x71, &info) == TK_OK && info.len >= 1 &&
	    (info.value[0] & 0x01) != 0)
		return TK_ERR_NOT_SUPPORTED;
	if (c.len == 0)
		return TK_ERR_NOT_FOUND;
	*cert = c.value;
	*cert_len = c.len;
	return TK_OK;
}

int
tool_piv_metadata_parse(const uint8_t *p, size_t len, tool_piv_meta_t *m)
{
	tk_buf_t b;
	tk_tlv_t t;
	int r;

	memset(m, 0, sizeof(*m));
	tk_buf_init(&b, p, len);
	while ((r = tk_ber_get(&b, &t)) == TK_OK) {
		switch (t.tag) {
		case 0x01:
			if (t.len != 1)
				return TK_ERR_MALFORMED;
			m->alg = t.value[0];
			break;
		case 0x02:
			if (t.len != 2)
				return TK_ERR_MALFORMED;
			m->pin_policy = t.value[0];
			m->touch_policy = t.value[1];
			m->has_policy = true;
			break;
		case 0x03:
			if (t.len != 1)
				return TK_ERR_MALFORMED;
			m->origin = t.value[0];
			m->has_origin = true;
			break;
		case 0x04:
			m->pub = t.value;
			m->pub_len = t.len;
			break;
		default: /* 05 default value, 06 retries, later additions */
			break;
		}
	}
	return r == TK_ERR_NOT_FOUND ? TK_OK : r;
}

static int
pkey_fromdata(const char *type, OSSL_PARAM_BLD *bld, EVP_PKEY **out)
{
	OSSL_PARAM *params = NULL;
	EVP_PKEY_CTX *ctx = NULL;
	int r = TK_ERR_MALFORMED;

	if ((params = OSSL_PARAM_BLD_to_param(bld)) == NULL ||
	    (ctx = EVP_PKEY_CTX_new_from_name(NULL, type, NULL)) == NULL ||
	    EVP_PKEY_fromdata_init(ctx) != 1 ||
	    EVP_PKEY_fromdata(ctx, out, EVP_PKEY_PUBLIC_KEY, params) != 1)
		goto out;
	r = TK_OK;
out:
	EVP_PKEY_CTX_free(ctx);
	OSSL_PARAM_free(params);
	return r;
}

static int
pubkey_rsa(const uint8_t *p, size_t len, unsigned bits, EVP_PKEY **out)
{
	tk_tlv_t n, e;
	BIGNUM *bn = NULL, *be = NULL;
	OSSL_PARAM_BLD *bld = NULL;
	int r = TK_ERR_MALFORMED;

	if (tk_ber_find(p, len, 0x81, &n) != TK_OK || tk_ber_find(p, len, 0x82, &e) != TK_OK ||
	    n.len == 0 || n.len > 1024 || e.len == 0 || e.len > 8)
		return TK_ERR_MALFORMED;
	if ((bn = BN_bin2bn(n.value, (int)n.len, NULL)) == NULL ||
	    (be = BN_bin2bn(e.value, (int)e.len, NULL)) == NULL)
		goto out;
	if ((unsigned)BN_num_bits(bn) != bits) /* the card's algorithm says the size */
		goto out;
	if ((bld = OSSL_PARAM_BLD_new()) == NULL ||
	    OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_N, bn) != 1 ||
	    OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_E, be) != 1)
		goto out;
	r = pkey_fromdata("RSA", bld, out);
out:
	OSSL_PARAM_BLD_free(bld);
	BN_free(bn);
	BN_free(be);
	return r;
}

static int
pubkey_ec(const uint8_t *p, size_t len, const char *group, size_t coord, EVP_PKEY **out)
{
	tk_tlv_t pt;
	OSSL_PARAM_BLD *bld = NULL;
	EVP_PKEY_CTX *ctx = NULL;
	int r = TK_ERR_MALFORMED;

	if (tk_ber_find(p, len, 0x86, &pt) != TK_OK || pt.len != 1 + 2 * coord ||
	    pt.value[0] != 0x04)
		return TK_ERR_MALFORMED;
	if ((bld = OSSL_PARAM_BLD_new()) == NULL ||
	    OSSL_PARAM_BLD_push_utf8_string(bld, OSSL_PKEY_PARAM_GROUP_NAME, group, 0) != 1 ||
	    OSSL_PARAM_BLD_push_octet_string(bld, OSSL_PKEY_PARAM_PUB_KEY, pt.value, pt.len) != 1)
		goto out;
	if ((r = pkey_fromdata("EC", bld, out)) != TK_OK)
		goto out;
	/* fromdata does not check that the point is on the curve */
	r = TK_ERR_MALFORMED;
	if ((ctx = EVP_PKEY_CTX_new_from_pkey(NULL, *out, NULL)) == NULL ||
	    EVP_PKEY_public_check(ctx) != 1) {
		EVP_PKEY_free(*out);
		*out = NULL;
		goto out;
	}
	r = TK_OK;
out:
	EVP_PKEY_CTX_free(ctx);
	OSSL_PARAM_BLD_free(bld);
	return r;
}

static int
pubkey_raw(const uint8_t *p, size_t len, int type, EVP_PKEY **out)
{
	tk_tlv_t pt;

	if (tk_ber_find(p, len, 0x86, &pt) != TK_OK || pt.len != 32)
		return TK_ERR_MALFORMED;
	*out = EVP_PKEY_new_raw_public_key(type, NULL, pt.value, pt.len);
	return *out != NULL ? TK_OK : TK_ERR_MALFORMED;
}

int
tool_piv_pubkey(uint8_t alg, const uint8_t *p, size_t len, EVP_PKEY **out)
{
	*out = NULL;
	switch (alg) {
	case ALG_RSA1024:
		return pubkey_rsa(p, len, 1024, out);
	case ALG_RSA2048:
		return pubkey_rsa(p, len, 2048, out);
	case ALG_RSA3072:
		return pubkey_rsa(p, len, 3072, out);
	case ALG_RSA4096:
		return pubkey_rsa(p, len, 4096, out);
	case ALG_P256:
		return pubkey_ec(p, len, "P-256", 32, out);
	case ALG_P384:
		return pubkey_ec(p, len, "P-384", 48, out);
	case ALG_ED25519:
		return pubkey_raw(p, len, EVP_PKEY_ED25519, out);
	case ALG_X25519:
		return pubkey_raw(p, len, EVP_PKEY_X25519, out);
	default:
		return TK_ERR_NOT_SUPPORTED;
	}
}

/* The extnValue contents of the extension with oid, or NULL. More than one
 * such extension is malformed (*dup). */
static const ASN1_OCTET_STRING *
ext_value(X509 *x, const char *oid, bool *dup)
{
	ASN1_OBJECT *obj = OBJ_txt2obj(oid, 1);
	int i, j;

	*dup = false;
	if (obj == NULL)
		return NULL;
	i = X509_get_ext_by_OBJ(x, obj, -1);
	j = i >= 0 ? X509_get_ext_by_OBJ(x, obj, i) : -1;
	ASN1_OBJECT_free(obj);
	if (i < 0)
		return NULL;
	if (j >= 0) {
		*dup = true;
		return NULL;
	}
	return X509_EXTENSION_get_data(X509_get_ext(x, i));
}

int
tool_attest_info(X509 *x, tool_attest_info_t *info)
{
	const ASN1_OCTET_STRING *v;
	bool dup = false;

	memset(info, 0, sizeof(*info));
	/* firmware: three raw bytes, major minor patch */
	if ((v = ext_value(x, TOOL_OID_YK_FIRMWARE, &dup)) != NULL) {
		if (ASN1_STRING_length(v) != 3)
			return TK_ERR_MALFORMED;
		memcpy(info->firmware, ASN1_STRING_get0_data(v), 3);
		info->has_firmware = true;
	}
	if (dup)
		return TK_ERR_MALFORMED;
	/* serial: a DER INTEGER */
	if ((v = ext_value(x, TOOL_OID_YK_SERIAL, &dup)) != NULL) {
		const unsigned char *p = ASN1_STRING_get0_data(v);
		long n = ASN1_STRING_length(v);
		ASN1_INTEGER *ai = d2i_ASN1_INTEGER(NULL, &p, n);
		int ok = ai != NULL && p == ASN1_STRING_get0_data(v) + n &&
		         ASN1_INTEGER_get_uint64(&info->serial, ai) == 1;

		ASN1_INTEGER_free(ai);
		if (!ok)
			return TK_ERR_MALFORMED;
		info->has_serial = true;
	}
	if (dup)
		return TK_ERR_MALFORMED;
	/* policy: PIN policy byte, touch policy byte */
	if ((v = ext_value(x, TOOL_OID_YK_POLICY, &dup)) != NULL) {
		if (ASN1_STRING_length(v) != 2)
			return TK_ERR_MALFORMED;
		info->pin_policy = ASN1_STRING_get0_data(v)[0];
		info->touch_policy = ASN1_STRING_get0_data(v)[1];
		info->has_policy = true;
	}
	if (dup)
		return TK_ERR_MALFORMED;
	if ((v = ext_value(x, TOOL_OID_YK_FORM_FACTOR, &dup)) != NULL) {
		if (ASN1_STRING_length(v) != 1)
			return TK_ERR_MALFORMED;
		info->form_factor = ASN1_STRING_get0_data(v)[0];
		info->has_form_factor = true;
	}
	return dup ? TK_ERR_MALFORMED : TK_OK;
}

int
tool_attest_verify(X509 *att, X509 *dev, X509 *root, const char **why)
{
	X509_STORE *store = NULL;
	X509_STORE_CTX *ctx = NULL;
	STACK_OF(X509) *untrusted = NULL;
	EVP_PKEY *dk;
	int r = TK_ERR_CRYPTO, vr;

	*why = "cannot set up the verification (out of memory)";
	/* Checked on their own first, so the message names the link that broke
	 * rather than OpenSSL's generic "unable to get local issuer". */
	if (X509_NAME_cmp(X509_get_issuer_name(att), X509_get_subject_name(dev)) != 0) {
		*why = "the attestation's issuer is not the device's attestation certificate";
		return TK_ERR_CRYPTO;
	}
	if ((dk = X509_get0_pubkey(dev)) == NULL || X509_verify(att, dk) != 1) {
		*why = "the attestation is not signed by the device's attestation key";
		return TK_ERR_CRYPTO;
	}
	if ((store = X509_STORE_new()) == NULL || (ctx = X509_STORE_CTX_new()) == NULL ||
	    (untrusted = sk_X509_new_null()) == NULL)
		goto out;
	if (root != NULL) {
		if (X509_STORE_add_cert(store, root) != 1 || sk_X509_push(untrusted, dev) <= 0)
			goto out;
	} else {
		/* the device's certificate is the anchor; it is not self-signed */
		if (X509_STORE_add_cert(store, dev) != 1)
			goto out;
		X509_STORE_set_flags(store, X509_V_FLAG_PARTIAL_CHAIN);
	}
	if (X509_STORE_CTX_init(ctx, store, att, untrusted) != 1)
		goto out;
	vr = X509_verify_cert(ctx);
	if (vr != 1) {
		*why = X509_verify_cert_error_string(X509_STORE_CTX_get_error(ctx));
		goto out;
	}
	*why = NULL;
	r = TK_OK;
out:
	sk_X509_free(untrusted);
	X509_STORE_CTX_free(ctx);
	X509_STORE_free(store);
	return r;
}

const char *
tool_pin_policy_name(uint8_t v)
{
	static const char *const names[] = {"default", "never",      "once",
	                                    "always",  "match-once", "match-always"};

	return v < sizeof(names) / sizeof(names[0]) ? names[v] : "?";
}

const char *
tool_touch_policy_name(uint8_t v)
{
	static const char *const names[] = {"default", "never", "always", "cached"};

	return v < sizeof(names) / sizeof(names[0]) ? names[v] : "?";
}

const char *
tool_piv_alg_name(uint8_t alg)
{
	switch (alg) {
	case ALG_RSA1024:
		return "RSA-1024";
	case ALG_RSA2048:
		return "RSA-2048";
	case ALG_RSA3072:
		return "RSA-3072";
	case ALG_RSA4096:
		return "RSA-4096";
	case ALG_P256:
		return "ECC P-256";
	case ALG_P384:
		return "ECC P-384";
	case ALG_ED25519:
		return "Ed25519";
	case ALG_X25519:
		return "X25519";
	default:
		return "?";
	}
}
