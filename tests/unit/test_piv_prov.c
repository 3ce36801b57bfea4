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

#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/evp.h>

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
	/* an RSA template is not an EC key, and an algorithm the tool does not make is refused */
	assert_int_not_equal(piv_pubkey_from_generate(PIV_ALG_ECCP256, buf, n, &got), TK_OK);
	assert_int_equal(piv_pubkey_from_generate(0x06, buf, n, &got), TK_ERR_INVALID_ARG);
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

int
main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_generate_ec), cmocka_unit_test(test_generate_rsa),
	        cmocka_unit_test(test_metadata),    cmocka_unit_test(test_auth_response),
	        cmocka_unit_test(test_slots),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
