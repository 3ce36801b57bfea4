/* Unit tests for the PIV provisioning parsers of the tool
 * (tools/tokenkit/piv_prov.c): the public key in a GENERATE ASYMMETRIC KEY
 * PAIR response (7F49 { 81 n, 82 e } or 7F49 { 86 point }), the key of a
 * slot's GET METADATA, the elements of a GENERAL AUTHENTICATE response, and
 * the slot names. Keys are made here with OpenSSL and encoded by hand from
 * SP 800-73-4 part 2, 3.3.2 (the template) so the parser is checked against
 * the standard, not against itself. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/pkcs12.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>

#include <tokenkit/err.h>

#include "piv_prov.h"

/* 7F49 { 86 04 X Y } for a fresh key on curve, in buf; returns the length. */
static size_t
ec_template(const char *curve, uint8_t *buf, EVP_PKEY **key)
{
	uint8_t pt[133];
	size_t len = 0, n = 0;

	*key = EVP_EC_gen(curve);
	assert_non_null(*key);
	assert_int_equal(EVP_PKEY_get_octet_string_param(*key, OSSL_PKEY_PARAM_ENCODED_PUBLIC_KEY,
	                                                 pt, sizeof(pt), &len),
	                 1);
	buf[n++] = 0x7F;
	buf[n++] = 0x49;
	if (len + 2 > 127)
		buf[n++] = 0x81;
	buf[n++] = (uint8_t)(len + 2);
	buf[n++] = 0x86;
	buf[n++] = (uint8_t)len;
	memcpy(buf + n, pt, len);
	return n + len;
}

static void
test_generate_ec(void **state)
{
	uint8_t buf[200];
	EVP_PKEY *key = NULL, *got = NULL;
	size_t n;

	(void)state;
	n = ec_template("P-256", buf, &key);
	assert_int_equal(piv_pubkey_from_generate(PIV_ALG_ECCP256, buf, n, &got), TK_OK);
	assert_int_equal(EVP_PKEY_eq(key, got), 1);
	EVP_PKEY_free(got);
	/* the wrong curve for the algorithm asked */
	assert_int_equal(piv_pubkey_from_generate(PIV_ALG_ECCP384, buf, n, &got), TK_ERR_MALFORMED);
	assert_null(got);
	/* truncated, another outer tag, trailing data */
	assert_int_not_equal(piv_pubkey_from_generate(PIV_ALG_ECCP256, buf, n - 1, &got), TK_OK);
	buf[1] = 0x48;
	assert_int_not_equal(piv_pubkey_from_generate(PIV_ALG_ECCP256, buf, n, &got), TK_OK);
	buf[1] = 0x49;
	buf[n] = 0x01;
	assert_int_not_equal(piv_pubkey_from_generate(PIV_ALG_ECCP256, buf, n + 1, &got), TK_OK);
	/* a point off the curve */
	buf[n - 1] ^= 1;
	assert_int_not_equal(piv_pubkey_from_generate(PIV_ALG_ECCP256, buf, n, &got), TK_OK);
	assert_null(got);
	EVP_PKEY_free(key);

	n = ec_template("P-384", buf, &key);
	assert_int_equal(piv_pubkey_from_generate(PIV_ALG_ECCP384, buf, n, &got), TK_OK);
	assert_int_equal(EVP_PKEY_eq(key, got), 1);
	EVP_PKEY_free(got);
	EVP_PKEY_free(key);
}

static void
test_generate_rsa(void **state)
{
	EVP_PKEY *key = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048), *got = NULL;
	BIGNUM *bn = NULL, *be = NULL;
	uint8_t buf[300 + 16];
	size_t n = 0;

	(void)state;
	assert_non_null(key);
	assert_int_equal(EVP_PKEY_get_bn_param(key, OSSL_PKEY_PARAM_RSA_N, &bn), 1);
	assert_int_equal(EVP_PKEY_get_bn_param(key, OSSL_PKEY_PARAM_RSA_E, &be), 1);
	/* 7F49 82 0109 { 81 82 0100 n, 82 03 e } */
	memcpy(buf, "\x7F\x49\x82\x01\x09\x81\x82\x01\x00", 9);
	n = 9;
	assert_int_equal(BN_bn2binpad(bn, buf + n, 256), 256);
	n += 256;
	buf[n++] = 0x82;
	buf[n++] = 0x03;
	assert_int_equal(BN_bn2binpad(be, buf + n, 3), 3);
	n += 3;
	assert_int_equal(n, 5 + 0x109);
	assert_int_equal(piv_pubkey_from_generate(PIV_ALG_RSA2048, buf, n, &got), TK_OK);
	assert_int_equal(EVP_PKEY_eq(key, got), 1);
	EVP_PKEY_free(got);
	/* an RSA template is not an EC key, a 2048-bit modulus no RSA-1024 or
	 * 4096 key, and an algorithm the tool does not make is refused */
	assert_int_not_equal(piv_pubkey_from_generate(PIV_ALG_ECCP256, buf, n, &got), TK_OK);
	assert_int_equal(piv_pubkey_from_generate(PIV_ALG_RSA1024, buf, n, &got), TK_ERR_MALFORMED);
	assert_int_equal(piv_pubkey_from_generate(PIV_ALG_RSA4096, buf, n, &got), TK_ERR_MALFORMED);
	assert_null(got);
	assert_int_equal(piv_pubkey_from_generate(PIV_ALG_AES128, buf, n, &got),
	                 TK_ERR_INVALID_ARG);
	/* without the exponent */
	buf[4] = 0x04;
	assert_int_not_equal(piv_pubkey_from_generate(PIV_ALG_RSA2048, buf, n - 5, &got), TK_OK);
	assert_null(got);
	BN_free(bn);
	BN_free(be);
	EVP_PKEY_free(key);
}

static void
test_metadata(void **state)
{
	uint8_t tmpl[200], meta[260];
	EVP_PKEY *key = NULL, *got = NULL;
	size_t n = ec_template("P-256", tmpl, &key), m = 0;
	uint8_t alg = 0;

	(void)state;
	/* 01 11, 02 02 01, 03 01 01, 04 <the 86 element> */
	memcpy(meta, "\x01\x01\x11\x02\x02\x02\x01\x03\x01\x01\x04", 11);
	m = 11;
	/* the template's value: 7F 49 43 | 86 41 04 X Y */
	meta[m++] = (uint8_t)(n - 3);
	memcpy(meta + m, tmpl + 3, n - 3);
	m += n - 3;
	assert_int_equal(piv_pubkey_from_metadata(meta, m, &alg, &got), TK_OK);
	assert_int_equal(alg, PIV_ALG_ECCP256);
	assert_int_equal(EVP_PKEY_eq(key, got), 1);
	EVP_PKEY_free(got);
	/* an algorithm the tool does not sign with */
	meta[2] = 0xE0;
	assert_int_equal(piv_pubkey_from_metadata(meta, m, &alg, &got), TK_ERR_NOT_SUPPORTED);
	/* no 04 */
	meta[2] = 0x11;
	assert_int_not_equal(piv_pubkey_from_metadata(meta, 8, &alg, &got), TK_OK);
	assert_null(got);
	EVP_PKEY_free(key);
}

static void
test_auth_response(void **state)
{
	static const uint8_t ok[] = {0x7C, 0x06, 0x82, 0x04, 1, 2, 3, 4};
	static const uint8_t witness[] = {0x7C, 0x0A, 0x80, 0x08, 1, 2, 3, 4, 5, 6, 7, 8};
	static const uint8_t twice[] = {0x7C, 0x06, 0x82, 0x01, 1, 0x82, 0x01, 2};
	static const uint8_t empty[] = {0x7C, 0x02, 0x82, 0x00};
	static const uint8_t trailing[] = {0x7C, 0x03, 0x82, 0x01, 9, 0x90};
	static const uint8_t overrun[] = {0x7C, 0x04, 0x82, 0x05, 1, 2};
	const uint8_t *v = NULL;
	size_t vl = 0;

	(void)state;
	assert_int_equal(piv_auth_response(ok, sizeof(ok), 0x82, &v, &vl), TK_OK);
	assert_ptr_equal(v, ok + 4);
	assert_int_equal(vl, 4);
	assert_int_equal(piv_auth_response(witness, sizeof(witness), 0x80, &v, &vl), TK_OK);
	assert_int_equal(vl, 8);
	assert_int_equal(piv_auth_response(witness, sizeof(witness), 0x82, &v, &vl),
	                 TK_ERR_MALFORMED);
	assert_null(v);
	assert_int_equal(piv_auth_response(twice, sizeof(twice), 0x82, &v, &vl), TK_ERR_MALFORMED);
	assert_int_equal(piv_auth_response(empty, sizeof(empty), 0x82, &v, &vl), TK_ERR_MALFORMED);
	assert_int_equal(piv_auth_response(trailing, sizeof(trailing), 0x82, &v, &vl),
	                 TK_ERR_MALFORMED);
	assert_int_equal(piv_auth_response(overrun, sizeof(overrun), 0x82, &v, &vl),
	                 TK_ERR_MALFORMED);
	assert_int_equal(piv_auth_response(ok, 0, 0x82, &v, &vl), TK_ERR_MALFORMED);
}

static void
test_slots(void **state)
{
	uint8_t ref = 0;

	(void)state;
	assert_int_equal(piv_parse_slot("9a", &ref), TK_OK);
	assert_int_equal(ref, 0x9A);
	assert_int_equal(piv_parse_slot("0x9E", &ref), TK_OK);
	assert_int_equal(ref, 0x9E);
	assert_int_equal(piv_parse_slot("95", &ref), TK_OK);
	assert_int_equal(piv_slot_object(0x95), 0x5FC120);
	assert_int_equal(piv_slot_object(0x9C), 0x5FC10A);
	assert_int_equal(piv_parse_slot("9b", &ref), TK_ERR_INVALID_ARG); /* management key */
	assert_int_equal(ref, 0);
	assert_int_equal(piv_parse_slot("9", &ref), TK_ERR_INVALID_ARG);
	assert_int_equal(piv_parse_slot("9g", &ref), TK_ERR_INVALID_ARG);
	assert_int_equal(piv_parse_slot("+9a", &ref), TK_ERR_INVALID_ARG);
	assert_int_equal(piv_parse_slot("f9", &ref), TK_ERR_INVALID_ARG);
}

/* ---- IMPORT ASYMMETRIC KEY data ---------------------------------------------------------- */

/* The next TLV of the import data, read by hand (one-byte tags, BER
 * lengths up to 82): the encoding Yubico documents, not our parser. */
static const uint8_t *
next_el(const uint8_t **p, const uint8_t *end, uint8_t *tag, size_t *len)
{
	const uint8_t *q = *p, *v;

	assert_true(end - q >= 2);
	*tag = q[0];
	if (q[1] < 0x80) {
		*len = q[1];
		v = q + 2;
	} else if (q[1] == 0x81) {
		*len = q[2];
		v = q + 3;
	} else {
		assert_int_equal(q[1], 0x82);
		*len = (size_t)q[2] << 8 | q[3];
		v = q + 4;
	}
	assert_true(v + *len <= end);
	*p = v + *len;
	return v;
}

static BIGNUM *
param(EVP_PKEY *k, const char *name)
{
	BIGNUM *bn = NULL;

	assert_int_equal(EVP_PKEY_get_bn_param(k, name, &bn), 1);
	return bn;
}

static void
test_import_rsa(void **state)
{
	static const unsigned sizes[] = {1024, 2048};
	static const uint8_t algs[] = {PIV_ALG_RSA1024, PIV_ALG_RSA2048};
	uint8_t buf[1400], tag, alg = 0;
	size_t n = 0, len = 0;

	(void)state;
	for (size_t s = 0; s < 2; s++) {
		EVP_PKEY *k = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)sizes[s]);
		BIGNUM *el[5], *n_ = param(k, OSSL_PKEY_PARAM_RSA_N), *t = BN_new();
		BN_CTX *bc = BN_CTX_new();
		const uint8_t *p = buf, *end, *v;

		assert_int_equal(piv_key_alg(k, &alg), TK_OK);
		assert_int_equal(alg, algs[s]);
		assert_int_equal(
		        piv_import_data(k, PIV_PIN_ALWAYS, PIV_TOUCH_CACHED, buf, sizeof(buf), &n),
		        TK_OK);
		end = buf + n;
		/* 01 p, 02 q, 03 dP, 04 dQ, 05 qInv, each half the modulus long */
		for (uint8_t i = 0; i < 5; i++) {
			v = next_el(&p, end, &tag, &len);
			assert_int_equal(tag, i + 1);
			assert_int_equal(len, sizes[s] / 16);
			el[i] = BN_bin2bn(v, (int)len, NULL);
		}
		v = next_el(&p, end, &tag, &len);
		assert_int_equal(tag, 0xAA);
		assert_int_equal(len, 1);
		assert_int_equal(v[0], 3);
		v = next_el(&p, end, &tag, &len);
		assert_int_equal(tag, 0xAB);
		assert_int_equal(len, 1);
		assert_int_equal(v[0], 3);
		assert_ptr_equal(p, end);
		/* p q = n, qInv q = 1 mod p, dP = d mod (p - 1) checked through e dP = 1 */
		assert_int_equal(BN_mul(t, el[0], el[1], bc), 1);
		assert_int_equal(BN_cmp(t, n_), 0);
		assert_int_equal(BN_mod_mul(t, el[4], el[1], el[0], bc), 1);
		assert_true(BN_is_one(t));
		BN_sub_word(el[0], 1);
		BN_set_word(t, 65537);
		assert_int_equal(BN_mod_mul(t, t, el[2], el[0], bc), 1);
		assert_true(BN_is_one(t));
		/* no policy elements when none is asked */
		assert_int_equal(piv_import_data(k, 0, 0, buf, sizeof(buf), &len), TK_OK);
		assert_int_equal(len, n - 6);
		/* too small a buffer: refused and left without key material */
		assert_int_not_equal(piv_import_data(k, 0, 0, buf, n / 2, &len), TK_OK);
		assert_int_equal(len, 0);
		for (size_t i = 0; i < n / 2; i++)
			assert_int_equal(buf[i], 0);
		for (int i = 0; i < 5; i++)
			BN_free(el[i]);
		BN_free(n_);
		BN_free(t);
		BN_CTX_free(bc);
		EVP_PKEY_free(k);
	}
}

static void
test_import_ec(void **state)
{
	uint8_t buf[128], tag, alg = 0;
	size_t n = 0, len = 0;
	const uint8_t *p, *v;
	EVP_PKEY *k = NULL;
	BIGNUM *d = NULL, *got = NULL;
	int tries = 0;

	(void)state;
	/* a P-256 key whose scalar is shorter than 32 bytes: it must be padded */
	do {
		EVP_PKEY_free(k);
		BN_free(d);
		k = EVP_EC_gen("P-256");
		d = param(k, OSSL_PKEY_PARAM_PRIV_KEY);
	} while (BN_num_bytes(d) == 32 && ++tries < 20000);
	assert_true(BN_num_bytes(d) < 32);
	assert_int_equal(piv_key_alg(k, &alg), TK_OK);
	assert_int_equal(alg, PIV_ALG_ECCP256);
	assert_int_equal(piv_import_data(k, PIV_PIN_NEVER, 0, buf, sizeof(buf), &n), TK_OK);
	p = buf;
	v = next_el(&p, buf + n, &tag, &len);
	assert_int_equal(tag, 0x06);
	assert_int_equal(len, 32);
	assert_int_equal(v[0], 0);
	got = BN_bin2bn(v, 32, NULL);
	assert_int_equal(BN_cmp(got, d), 0);
	v = next_el(&p, buf + n, &tag, &len);
	assert_int_equal(tag, 0xAA);
	assert_int_equal(v[0], 1);
	assert_ptr_equal(p, buf + n);
	BN_free(got);
	BN_free(d);
	EVP_PKEY_free(k);

	k = EVP_EC_gen("P-384");
	assert_int_equal(piv_import_data(k, 0, PIV_TOUCH_ALWAYS, buf, sizeof(buf), &n), TK_OK);
	assert_int_equal(n, 2 + 48 + 3);
	assert_memory_equal(buf, "\x06\x30", 2);
	assert_memory_equal(buf + 50, "\xAB\x01\x02", 3);
	EVP_PKEY_free(k);

	/* what a PIV card cannot hold */
	k = EVP_EC_gen("P-521");
	assert_int_equal(piv_key_alg(k, &alg), TK_ERR_NOT_SUPPORTED);
	assert_int_equal(piv_import_data(k, 0, 0, buf, sizeof(buf), &n), TK_ERR_NOT_SUPPORTED);
	EVP_PKEY_free(k);
	k = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
	assert_int_equal(piv_key_alg(k, &alg), TK_ERR_NOT_SUPPORTED);
	EVP_PKEY_free(k);
	{
		EVP_PKEY_CTX *c = EVP_PKEY_CTX_new_from_name(NULL, "RSA", NULL);
		BIGNUM *e3 = BN_new();

		BN_set_word(e3, 3);
		assert_int_equal(EVP_PKEY_keygen_init(c), 1);
		assert_int_equal(EVP_PKEY_CTX_set_rsa_keygen_bits(c, 2048), 1);
		assert_int_equal(EVP_PKEY_CTX_set1_rsa_keygen_pubexp(c, e3), 1);
		k = NULL;
		assert_int_equal(EVP_PKEY_keygen(c, &k), 1);
		assert_int_equal(piv_key_alg(k, &alg), TK_ERR_NOT_SUPPORTED); /* e = 3 */
		EVP_PKEY_free(k);
		EVP_PKEY_CTX_free(c);
		BN_free(e3);
	}
}

static void
test_policies(void **state)
{
	uint8_t v = 9;

	(void)state;
	assert_int_equal(piv_pin_policy_parse("never", &v), TK_OK);
	assert_int_equal(v, 1);
	assert_int_equal(piv_pin_policy_parse("once", &v), TK_OK);
	assert_int_equal(v, 2);
	assert_int_equal(piv_pin_policy_parse("always", &v), TK_OK);
	assert_int_equal(v, 3);
	assert_int_equal(piv_pin_policy_parse("cached", &v), TK_ERR_INVALID_ARG);
	assert_int_equal(v, 0);
	assert_int_equal(piv_touch_policy_parse("never", &v), TK_OK);
	assert_int_equal(v, 1);
	assert_int_equal(piv_touch_policy_parse("always", &v), TK_OK);
	assert_int_equal(v, 2);
	assert_int_equal(piv_touch_policy_parse("cached", &v), TK_OK);
	assert_int_equal(v, 3);
	assert_int_equal(piv_touch_policy_parse("once", &v), TK_ERR_INVALID_ARG);
	assert_int_equal(piv_touch_policy_parse("", &v), TK_ERR_INVALID_ARG);
}

/* ---- key files ---------------------------------------------------------------------------- */

struct asker {
	const char *pass;
	int calls;
};

static int
ask(void *ctx, char *buf, size_t cap, size_t *len)
{
	struct asker *a = ctx;

	a->calls++;
	*len = strlen(a->pass);
	assert_true(*len < cap);
	memcpy(buf, a->pass, *len + 1);
	return TK_OK;
}

/* What a BIO holds, as a malloc'd buffer. */
static uint8_t *
bio_data(BIO *b, size_t *len)
{
	char *p = NULL;
	long n = BIO_get_mem_data(b, &p);
	uint8_t *out = malloc((size_t)n + 1);

	assert_non_null(out);
	memcpy(out, p, (size_t)n);
	out[n] = 0; /* for strstr */
	*len = (size_t)n;
	BIO_free(b);
	return out;
}

static void
expect_key(const uint8_t *d, size_t n, const char *pass, int calls, EVP_PKEY *want, X509 *wantc)
{
	struct asker a = {pass, 0};
	EVP_PKEY *k = NULL;
	X509 *x = NULL;

	assert_int_equal(piv_load_key_mem(d, n, ask, &a, &k, &x), TK_OK);
	assert_int_equal(a.calls, calls);
	assert_int_equal(EVP_PKEY_eq(k, want), 1);
	if (wantc == NULL)
		assert_null(x);
	else
		assert_int_equal(X509_cmp(x, wantc), 0);
	EVP_PKEY_free(k);
	X509_free(x);
}

static X509 *
cert_for(EVP_PKEY *k)
{
	X509 *x = X509_new();

	X509_set_version(x, 2);
	ASN1_INTEGER_set(X509_get_serialNumber(x), 7);
	X509_NAME_add_entry_by_txt(X509_get_subject_name(x), "CN", MBSTRING_ASC,
	                           (const unsigned char *)"t", -1, -1, 0);
	X509_set_issuer_name(x, X509_get_subject_name(x));
	X509_gmtime_adj(X509_getm_notBefore(x), 0);
	X509_gmtime_adj(X509_getm_notAfter(x), 3600);
	X509_set_pubkey(x, k);
	assert_true(X509_sign(x, k, EVP_sha256()) > 0);
	return x;
}

static void
test_load_key(void **state)
{
	EVP_PKEY *ec = EVP_EC_gen("P-256"),
	         *rsa = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)1024);
	EVP_PKEY *other = EVP_EC_gen("P-256"), *k = NULL;
	X509 *x = cert_for(ec), *xo = cert_for(other), *got = NULL;
	struct asker wrong = {"nope", 0};
	uint8_t *d;
	size_t n = 0;
	BIO *b;
	PKCS12 *p12;

	(void)state;
	/* PKCS#8, plain: no passphrase asked */
	b = BIO_new(BIO_s_mem());
	assert_int_equal(PEM_write_bio_PKCS8PrivateKey(b, ec, NULL, NULL, 0, NULL, NULL), 1);
	d = bio_data(b, &n);
	expect_key(d, n, "unused", 0, ec, NULL);
	free(d);
	/* traditional RSA ("BEGIN RSA PRIVATE KEY") */
	b = BIO_new(BIO_s_mem());
	assert_int_equal(PEM_write_bio_PrivateKey_traditional(b, rsa, NULL, NULL, 0, NULL, NULL),
	                 1);
	d = bio_data(b, &n);
	assert_non_null(strstr((char *)d, "BEGIN RSA PRIVATE KEY"));
	expect_key(d, n, "unused", 0, rsa, NULL);
	free(d);
	/* traditional, encrypted (Proc-Type header) */
	b = BIO_new(BIO_s_mem());
	assert_int_equal(PEM_write_bio_PrivateKey_traditional(b, ec, EVP_aes_128_cbc(),
	                                                      (unsigned char *)"secret1", 7, NULL,
	                                                      NULL),
	                 1);
	d = bio_data(b, &n);
	expect_key(d, n, "secret1", 1, ec, NULL);
	free(d);
	/* PKCS#8, encrypted: the right passphrase, a wrong one */
	b = BIO_new(BIO_s_mem());
	assert_int_equal(PEM_write_bio_PKCS8PrivateKey(b, rsa, EVP_aes_256_cbc(), "pass phrase", 11,
	                                               NULL, NULL),
	                 1);
	d = bio_data(b, &n);
	assert_non_null(strstr((char *)d, "ENCRYPTED PRIVATE KEY"));
	expect_key(d, n, "pass phrase", 1, rsa, NULL);
	assert_int_equal(piv_load_key_mem(d, n, ask, &wrong, &k, &got), TK_ERR_PIN_INCORRECT);
	assert_null(k);
	assert_int_equal(wrong.calls, 1);
	free(d);
	/* PKCS#12 with its certificate: with a password, without one */
	p12 = PKCS12_create("p12pass", "name", ec, x, NULL, 0, 0, 0, 0, 0);
	assert_non_null(p12);
	b = BIO_new(BIO_s_mem());
	assert_int_equal(i2d_PKCS12_bio(b, p12), 1);
	PKCS12_free(p12);
	d = bio_data(b, &n);
	expect_key(d, n, "p12pass", 1, ec, x);
	wrong.calls = 0;
	assert_int_equal(piv_load_key_mem(d, n, ask, &wrong, &k, &got), TK_ERR_PIN_INCORRECT);
	assert_null(k);
	assert_null(got);
	free(d);
	p12 = PKCS12_create("", "name", rsa, NULL, NULL, 0, 0, 0, 0, 0);
	assert_non_null(p12);
	b = BIO_new(BIO_s_mem());
	assert_int_equal(i2d_PKCS12_bio(b, p12), 1);
	PKCS12_free(p12);
	d = bio_data(b, &n);
	expect_key(d, n, "unused", 0, rsa, NULL);
	free(d);
	/* a PKCS#12 file with a certificate and no key */
	p12 = PKCS12_create("", "name", NULL, xo, NULL, 0, 0, 0, 0, 0);
	assert_non_null(p12);
	b = BIO_new(BIO_s_mem());
	assert_int_equal(i2d_PKCS12_bio(b, p12), 1);
	PKCS12_free(p12);
	d = bio_data(b, &n);
	assert_int_equal(piv_load_key_mem(d, n, ask, &wrong, &k, &got), TK_ERR_MALFORMED);
	assert_null(got);
	free(d);
	/* no key at all: a certificate, garbage, nothing */
	b = BIO_new(BIO_s_mem());
	PEM_write_bio_X509(b, x);
	d = bio_data(b, &n);
	assert_int_equal(piv_load_key_mem(d, n, ask, &wrong, &k, &got), TK_ERR_MALFORMED);
	free(d);
	assert_int_equal(piv_load_key_mem((const uint8_t *)"garbage", 7, ask, &wrong, &k, &got),
	                 TK_ERR_MALFORMED);
	assert_int_equal(piv_load_key_mem((const uint8_t *)"", 0, ask, &wrong, &k, &got),
	                 TK_ERR_MALFORMED);
	assert_null(k);
	assert_null(got);
	X509_free(x);
	X509_free(xo);
	EVP_PKEY_free(ec);
	EVP_PKEY_free(rsa);
	EVP_PKEY_free(other);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_generate_ec), cmocka_unit_test(test_generate_rsa),
	        cmocka_unit_test(test_metadata),    cmocka_unit_test(test_auth_response),
	        cmocka_unit_test(test_slots),       cmocka_unit_test(test_import_rsa),
	        cmocka_unit_test(test_import_ec),   cmocka_unit_test(test_policies),
	        cmocka_unit_test(test_load_key),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
