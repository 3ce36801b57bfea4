/* Parsers of PIV card data for `tokenkit piv` (see piv_prov.h). */
#include <limits.h>
#include <string.h>

#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/pkcs12.h>
#include <openssl/rsa.h>

#include <tokenkit/buf.h>
#include <tokenkit/err.h>
#include <tokenkit/mem.h>
#include <tokenkit/tlv.h>

#include "piv_attest.h"
#include "piv_prov.h"

uint32_t
piv_slot_object(uint8_t ref)
{
	switch (ref) {
	case 0x9A:
		return 0x5FC105;
	case 0x9C:
		return 0x5FC10A;
	case 0x9D:
		return 0x5FC10B;
	case 0x9E:
		return 0x5FC101;
	default: /* retired 82..95 */
		return ref >= 0x82 && ref <= 0x95 ? 0x5FC10Du + (ref - 0x82u) : 0;
	}
}

int
piv_parse_slot(const char *s, uint8_t *ref)
{
	unsigned v = 0;

	*ref = 0;
	if (strncmp(s, "0x", 2) == 0 || strncmp(s, "0X", 2) == 0)
		s += 2;
	if (strlen(s) != 2)
		return TK_ERR_INVALID_ARG;
	for (int i = 0; i < 2; i++) {
		char ch = s[i];
		unsigned d = ch >= '0' && ch <= '9'   ? (unsigned)(ch - '0')
		             : ch >= 'a' && ch <= 'f' ? (unsigned)(ch - 'a' + 10)
		             : ch >= 'A' && ch <= 'F' ? (unsigned)(ch - 'A' + 10)
		                                      : 16u;

		if (d > 15)
			return TK_ERR_INVALID_ARG;
		v = v * 16 + d;
	}
	if (piv_slot_object((uint8_t)v) == 0)
		return TK_ERR_INVALID_ARG;
	*ref = (uint8_t)v;
	return TK_OK;
}

int
piv_pubkey_from_generate(uint8_t alg, const uint8_t *p, size_t len, EVP_PKEY **out)
{
	tk_buf_t b;
	tk_tlv_t t;

	*out = NULL;
	if (piv_rsa_bits(alg) == 0 && alg != PIV_ALG_ECCP256 && alg != PIV_ALG_ECCP384)
		return TK_ERR_INVALID_ARG;
	tk_buf_init(&b, p, len);
	if (tk_ber_get(&b, &t) != TK_OK || t.tag != 0x7F49 || t.value == NULL)
		return TK_ERR_MALFORMED;
	/* nothing but padding after the template */
	if (tk_buf_left(&b) != 0 && tk_ber_get(&b, &(tk_tlv_t){0}) != TK_ERR_NOT_FOUND)
		return TK_ERR_MALFORMED;
	return tool_piv_pubkey(alg, t.value, t.len, out) == TK_OK ? TK_OK : TK_ERR_MALFORMED;
}

int
piv_pubkey_from_metadata(const uint8_t *p, size_t len, uint8_t *alg, EVP_PKEY **out)
{
	tool_piv_meta_t m;

	*alg = 0;
	*out = NULL;
	if (tool_piv_metadata_parse(p, len, &m) != TK_OK || m.alg == 0 || m.pub == NULL)
		return TK_ERR_MALFORMED;
	if (piv_rsa_bits(m.alg) == 0 && m.alg != PIV_ALG_ECCP256 && m.alg != PIV_ALG_ECCP384)
		return TK_ERR_NOT_SUPPORTED;
	*alg = m.alg;
	return tool_piv_pubkey(m.alg, m.pub, m.pub_len, out) == TK_OK ? TK_OK : TK_ERR_MALFORMED;
}

int
piv_auth_response(const uint8_t *p, size_t len, uint32_t tag, const uint8_t **v, size_t *vlen)
{
	tk_buf_t b, in;
	tk_tlv_t t, x;
	bool found = false;

	*v = NULL;
	*vlen = 0;
	tk_buf_init(&b, p, len);
	if (tk_ber_get(&b, &t) != TK_OK || t.tag != 0x7C || tk_buf_left(&b) != 0 || t.value == NULL)
		return TK_ERR_MALFORMED;
	tk_buf_init(&in, t.value, t.len);
	while (tk_buf_left(&in) > 0) {
		int r = tk_ber_get(&in, &x);

		if (r == TK_ERR_NOT_FOUND)
			break; /* trailing padding */
		if (r != TK_OK)
			return TK_ERR_MALFORMED;
		if (x.tag != tag)
			continue;
		if (found || x.len == 0)
			return TK_ERR_MALFORMED;
		found = true;
		*v = x.value;
		*vlen = x.len;
	}
	return found ? TK_OK : TK_ERR_MALFORMED;
}

/* ---- policies --------------------------------------------------------------------------- */

static int
name_lookup(const char *s, const char *const names[3], uint8_t *v)
{
	*v = 0;
	for (uint8_t i = 0; s != NULL && i < 3; i++)
		if (strcmp(s, names[i]) == 0) {
			*v = (uint8_t)(i + 1);
			return TK_OK;
		}
	return TK_ERR_INVALID_ARG;
}

int
piv_pin_policy_parse(const char *s, uint8_t *v)
{
	static const char *const names[3] = {"never", "once", "always"};

	return name_lookup(s, names, v);
}

int
piv_touch_policy_parse(const char *s, uint8_t *v)
{
	static const char *const names[3] = {"never", "always", "cached"};

	return name_lookup(s, names, v);
}

/* ---- private key import ------------------------------------------------------------------ */

unsigned
piv_rsa_bits(uint8_t alg)
{
	switch (alg) {
	case PIV_ALG_RSA1024:
		return 1024;
	case PIV_ALG_RSA2048:
		return 2048;
	case PIV_ALG_RSA3072:
		return 3072;
	case PIV_ALG_RSA4096:
		return 4096;
	default:
		return 0;
	}
}

int
piv_key_alg(EVP_PKEY *pk, uint8_t *alg)
{
	char group[32] = "";
	BIGNUM *e = NULL;
	bool f4;

	*alg = 0;
	if (pk == NULL)
		return TK_ERR_INVALID_ARG;
	if (EVP_PKEY_is_a(pk, "RSA")) {
		/* the cards compute with e = 65537 only */
		if (EVP_PKEY_get_bn_param(pk, OSSL_PKEY_PARAM_RSA_E, &e) != 1)
			goto fail;
		f4 = BN_is_word(e, RSA_F4);
		BN_free(e);
		switch (f4 ? EVP_PKEY_get_bits(pk) : 0) {
		case 1024:
			*alg = PIV_ALG_RSA1024;
			break;
		case 2048:
			*alg = PIV_ALG_RSA2048;
			break;
		case 3072:
			*alg = PIV_ALG_RSA3072;
			break;
		case 4096:
			*alg = PIV_ALG_RSA4096;
			break;
		default:
			break;
		}
	} else if (EVP_PKEY_is_a(pk, "EC") &&
	           EVP_PKEY_get_utf8_string_param(pk, OSSL_PKEY_PARAM_GROUP_NAME, group,
	                                          sizeof(group), NULL) == 1) {
		*alg = strcmp(group, "prime256v1") == 0  ? PIV_ALG_ECCP256
		       : strcmp(group, "secp384r1") == 0 ? PIV_ALG_ECCP384
		                                         : 0;
	}
	ERR_clear_error();
	return *alg != 0 ? TK_OK : TK_ERR_NOT_SUPPORTED;
fail:
	ERR_clear_error();
	return TK_ERR_NOT_SUPPORTED;
}

/* One private element, left-padded to width bytes. */
static int
put_secret_bn(tk_wbuf_t *w, uint32_t tag, EVP_PKEY *pk, const char *param, size_t width)
{
	uint8_t tmp[512];
	BIGNUM *bn = NULL;
	int r = TK_ERR_CRYPTO;

	if (width > sizeof(tmp) || EVP_PKEY_get_bn_param(pk, param, &bn) != 1)
		goto out;
	if (BN_bn2binpad(bn, tmp, (int)width) != (int)width)
		goto out;
	tk_ber_put(w, tag, tmp, width);
	r = tk_wbuf_error(w);
out:
	BN_clear_free(bn);
	tk_wipe(tmp, sizeof(tmp));
	ERR_clear_error();
	return r;
}

int
piv_import_data(EVP_PKEY *pk, uint8_t pin_policy, uint8_t touch_policy, uint8_t *out, size_t cap,
                size_t *len)
{
	static const char *const rsa[5] = {OSSL_PKEY_PARAM_RSA_FACTOR1, OSSL_PKEY_PARAM_RSA_FACTOR2,
	                                   OSSL_PKEY_PARAM_RSA_EXPONENT1,
	                                   OSSL_PKEY_PARAM_RSA_EXPONENT2,
	                                   OSSL_PKEY_PARAM_RSA_COEFFICIENT1};
	uint8_t alg = 0;
	tk_wbuf_t w;
	int r;

	*len = 0;
	if ((r = piv_key_alg(pk, &alg)) != TK_OK)
		return r;
	if (pin_policy > PIV_PIN_ALWAYS || touch_policy > PIV_TOUCH_CACHED)
		return TK_ERR_INVALID_ARG;
	tk_wbuf_init(&w, out, cap);
	if (piv_rsa_bits(alg) != 0) {
		for (uint32_t i = 0; i < 5; i++)
			if ((r = put_secret_bn(&w, i + 1, pk, rsa[i], piv_rsa_bits(alg) / 16)) !=
			    TK_OK)
				goto fail;
	} else if ((r = put_secret_bn(&w, 0x06, pk, OSSL_PKEY_PARAM_PRIV_KEY,
	                              alg == PIV_ALG_ECCP256 ? 32 : 48)) != TK_OK) {
		goto fail;
	}
	if (pin_policy != 0)
		tk_ber_put(&w, 0xAA, &pin_policy, 1);
	if (touch_policy != 0)
		tk_ber_put(&w, 0xAB, &touch_policy, 1);
	if ((r = tk_wbuf_error(&w)) != TK_OK)
		goto fail;
	*len = w.len;
	return TK_OK;
fail:
	tk_wipe(out, cap);
	return r;
}

struct pass_ctx {
	piv_pass_fn ask;
	void *ctx;
	bool asked, failed;
};

/* OpenSSL's PEM passphrase callback over ours. */
static int
pem_pass(char *buf, int size, int rwflag, void *u)
{
	struct pass_ctx *pc = u;
	size_t n = 0;

	(void)rwflag;
	pc->asked = true;
	if (pc->ask == NULL || size <= 1 || pc->ask(pc->ctx, buf, (size_t)size, &n) != TK_OK ||
	    n >= (size_t)size) {
		pc->failed = true;
		return -1;
	}
	return (int)n;
}

/* The key and certificate of a PKCS#12 file: the MAC checked with the
 * empty password first (files exported without one), else the one asked. */
static int
load_p12(PKCS12 *p12, struct pass_ctx *pc, EVP_PKEY **key, X509 **cert)
{
	char pass[256];
	size_t n = 0;
	int r = TK_ERR_PIN_INCORRECT;

	if (PKCS12_verify_mac(p12, "", 0) == 1 || PKCS12_verify_mac(p12, NULL, 0) == 1) {
		pass[0] = '\0';
	} else {
		pc->asked = true;
		if (pc->ask == NULL || pc->ask(pc->ctx, pass, sizeof(pass), &n) != TK_OK ||
		    n >= sizeof(pass)) {
			r = TK_ERR_CANCELLED;
			goto out;
		}
		pass[n] = '\0';
		if (PKCS12_verify_mac(p12, pass, (int)n) != 1)
			goto out;
	}
	r = PKCS12_parse(p12, pass, key, cert, NULL) == 1 && *key != NULL ? TK_OK
	                                                                  : TK_ERR_MALFORMED;
out:
	tk_wipe(pass, sizeof(pass));
	return r;
}

int
piv_load_key_mem(const uint8_t *p, size_t len, piv_pass_fn ask, void *ctx, EVP_PKEY **key,
                 X509 **cert)
{
	struct pass_ctx pc = {ask, ctx, false, false};
	BIO *b = NULL;
	PKCS12 *p12 = NULL;
	int r = TK_ERR_MALFORMED;

	*key = NULL;
	*cert = NULL;
	if (len > INT_MAX || (b = BIO_new_mem_buf(p, (int)len)) == NULL)
		return TK_ERR_NO_MEMORY;
	if ((*key = PEM_read_bio_PrivateKey(b, NULL, pem_pass, &pc)) != NULL) {
		r = TK_OK;
		goto out;
	}
	if (pc.asked) { /* an encrypted PEM key that did not decrypt */
		r = pc.failed ? TK_ERR_CANCELLED : TK_ERR_PIN_INCORRECT;
		goto out;
	}
	BIO_free(b);
	if ((b = BIO_new_mem_buf(p, (int)len)) == NULL) {
		r = TK_ERR_NO_MEMORY;
		goto out;
	}
	if ((p12 = d2i_PKCS12_bio(b, NULL)) == NULL)
		goto out;
	r = load_p12(p12, &pc, key, cert);
	/* a certificate for another key is none */
	if (r == TK_OK && *cert != NULL && X509_check_private_key(*cert, *key) != 1) {
		X509_free(*cert);
		*cert = NULL;
	}
out:
	if (r != TK_OK) {
		EVP_PKEY_free(*key);
		X509_free(*cert);
		*key = NULL;
		*cert = NULL;
	}
	PKCS12_free(p12);
	BIO_free(b);
	ERR_clear_error();
	return r;
}
