/* Unit tests for the PKCS#11 module's host-side codecs (pkcs11/codec.c,
 * pkcs11/util.c): EMSA-PSS encoding, PKCS#1 v1.5 and OAEP decoding, DER
 * helpers and tk_err → CKR conversion, checked against OpenSSL. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <openssl/evp.h>
#include <openssl/rsa.h>

/* The module's internals (tokenkit_p11_internal; they need no card). */
#include "p11.h"

static EVP_PKEY *rsa_key;

static int
setup(void **state)
{
	(void)state;
	rsa_key = EVP_RSA_gen(2048);
	return rsa_key != NULL ? 0 : -1;
}

static int
teardown(void **state)
{
	(void)state;
	EVP_PKEY_free(rsa_key);
	return 0;
}

/* The raw RSA private operation, as the card would do it. */
static void
raw_private(const uint8_t *in, uint8_t *out)
{
	EVP_PKEY_CTX *c = EVP_PKEY_CTX_new(rsa_key, NULL);
	size_t outl = 256;

	assert_non_null(c);
	assert_int_equal(EVP_PKEY_decrypt_init(c), 1);
	assert_int_equal(EVP_PKEY_CTX_set_rsa_padding(c, RSA_NO_PADDING), 1);
	assert_int_equal(EVP_PKEY_decrypt(c, out, &outl, in, 256), 1);
	assert_int_equal(outl, 256);
	EVP_PKEY_CTX_free(c);
}

static void
pss_case(const EVP_MD *md, const EVP_MD *mgf, size_t salt)
{
	uint8_t mhash[64], em[256], sig[256];
	size_t hlen = (size_t)EVP_MD_get_size(md);
	EVP_PKEY_CTX *c;

	memset(mhash, 0x5a, sizeof(mhash));
	assert_int_equal(tk_p11_pss_encode(md, mgf, mhash, hlen, salt, 2048, em, sizeof(em)),
	                 TK_OK);
	assert_int_equal(em[255], 0xbc);
	raw_private(em, sig);
	c = EVP_PKEY_CTX_new(rsa_key, NULL);
	assert_int_equal(EVP_PKEY_verify_init(c), 1);
	assert_int_equal(EVP_PKEY_CTX_set_rsa_padding(c, RSA_PKCS1_PSS_PADDING), 1);
	assert_int_equal(EVP_PKEY_CTX_set_signature_md(c, md), 1);
	assert_int_equal(EVP_PKEY_CTX_set_rsa_mgf1_md(c, mgf), 1);
	assert_int_equal(EVP_PKEY_CTX_set_rsa_pss_saltlen(c, (int)salt), 1);
	assert_int_equal(EVP_PKEY_verify(c, sig, sizeof(sig), mhash, hlen), 1);
	/* and a different hash does not verify */
	mhash[0] ^= 1;
	assert_int_not_equal(EVP_PKEY_verify(c, sig, sizeof(sig), mhash, hlen), 1);
	EVP_PKEY_CTX_free(c);
}

static void
test_pss_encode_verifies(void **state)
{
	(void)state;
	pss_case(EVP_sha256(), EVP_sha256(), 32);
	pss_case(EVP_sha384(), EVP_sha384(), 48);
	pss_case(EVP_sha512(), EVP_sha512(), 64);
	pss_case(EVP_sha1(), EVP_sha1(), 20);
	pss_case(EVP_sha256(), EVP_sha1(), 0);
	pss_case(EVP_sha224(), EVP_sha224(), 28);
}

static void
test_pss_encode_rejects(void **state)
{
	uint8_t mhash[64] = {0}, em[256];

	(void)state;
	/* salt too long for the modulus */
	assert_int_equal(
	        tk_p11_pss_encode(EVP_sha512(), EVP_sha512(), mhash, 64, 200, 2048, em, sizeof(em)),
	        TK_ERR_INVALID_ARG);
	/* hash length does not match the hash */
	assert_int_equal(
	        tk_p11_pss_encode(EVP_sha256(), EVP_sha256(), mhash, 20, 32, 2048, em, sizeof(em)),
	        TK_ERR_INVALID_ARG);
	/* output smaller than the modulus */
	assert_int_equal(
	        tk_p11_pss_encode(EVP_sha256(), EVP_sha256(), mhash, 32, 32, 2048, em, 100),
	        TK_ERR_INVALID_ARG);
}

static size_t
encrypt(int padding, const EVP_MD *md, const uint8_t *label, size_t label_len, const uint8_t *msg,
        size_t len, uint8_t *ct)
{
	EVP_PKEY_CTX *c = EVP_PKEY_CTX_new(rsa_key, NULL);
	size_t outl = 256;

	assert_int_equal(EVP_PKEY_encrypt_init(c), 1);
	assert_int_equal(EVP_PKEY_CTX_set_rsa_padding(c, padding), 1);
	if (padding == RSA_PKCS1_OAEP_PADDING) {
		assert_int_equal(EVP_PKEY_CTX_set_rsa_oaep_md(c, md), 1);
		assert_int_equal(EVP_PKEY_CTX_set_rsa_mgf1_md(c, md), 1);
		if (label_len > 0) {
			uint8_t *l = OPENSSL_memdup(label, label_len);

			assert_int_equal(EVP_PKEY_CTX_set0_rsa_oaep_label(c, l, (int)label_len), 1);
		}
	}
	assert_int_equal(EVP_PKEY_encrypt(c, ct, &outl, msg, len), 1);
	EVP_PKEY_CTX_free(c);
	return outl;
}

static void
test_pkcs1_decode(void **state)
{
	uint8_t ct[256], em[256], out[256];
	const uint8_t msg[] = "a secret of some length";
	size_t n = 0;

	(void)state;
	assert_int_equal(encrypt(RSA_PKCS1_PADDING, NULL, NULL, 0, msg, sizeof(msg), ct), 256);
	raw_private(ct, em);
	assert_int_equal(tk_p11_pkcs1_type2_decode(em, sizeof(em), out, &n), TK_OK);
	assert_int_equal(n, sizeof(msg));
	assert_memory_equal(out, msg, sizeof(msg));

	/* wrong block type, missing separator, short padding */
	em[1] = 0x01;
	assert_int_equal(tk_p11_pkcs1_type2_decode(em, sizeof(em), out, &n), TK_ERR_MALFORMED);
	memset(em, 0x22, sizeof(em));
	em[0] = 0;
	em[1] = 2;
	assert_int_equal(tk_p11_pkcs1_type2_decode(em, sizeof(em), out, &n), TK_ERR_MALFORMED);
	em[5] = 0;
	assert_int_equal(tk_p11_pkcs1_type2_decode(em, sizeof(em), out, &n), TK_ERR_MALFORMED);
	em[5] = 0x22;
	em[10] = 0; /* exactly 8 bytes of padding: valid */
	assert_int_equal(tk_p11_pkcs1_type2_decode(em, sizeof(em), out, &n), TK_OK);
	assert_int_equal(n, 256 - 11);
	em[255] = 0; /* empty message after the separator at 10 is still the first zero */
	assert_int_equal(tk_p11_pkcs1_type2_decode(em, sizeof(em), out, &n), TK_OK);
}

static void
oaep_case(const EVP_MD *md, const uint8_t *label, size_t label_len)
{
	uint8_t ct[256], em[256], out[256];
	const uint8_t msg[] = "0123456789abcdef0123456789abcdef";
	size_t n = 0;

	encrypt(RSA_PKCS1_OAEP_PADDING, md, label, label_len, msg, sizeof(msg), ct);
	raw_private(ct, em);
	assert_int_equal(tk_p11_oaep_decode(md, md, label, label_len, em, sizeof(em), out, &n),
	                 TK_OK);
	assert_int_equal(n, sizeof(msg));
	assert_memory_equal(out, msg, sizeof(msg));
	/* a different label must fail */
	assert_int_equal(
	        tk_p11_oaep_decode(md, md, (const uint8_t *)"x", 1, em, sizeof(em), out, &n),
	        TK_ERR_MALFORMED);
	/* a different hash must fail */
	assert_int_not_equal(tk_p11_oaep_decode(md == EVP_sha1() ? EVP_sha256() : EVP_sha1(),
	                                        md == EVP_sha1() ? EVP_sha256() : EVP_sha1(), label,
	                                        label_len, em, sizeof(em), out, &n),
	                     TK_OK);
	/* corrupt leading byte */
	em[0] = 1;
	assert_int_equal(tk_p11_oaep_decode(md, md, label, label_len, em, sizeof(em), out, &n),
	                 TK_ERR_MALFORMED);
}

static void
test_oaep_decode(void **state)
{
	(void)state;
	oaep_case(EVP_sha1(), NULL, 0);
	oaep_case(EVP_sha256(), (const uint8_t *)"label", 5);
	oaep_case(EVP_sha384(), NULL, 0);
	oaep_case(EVP_sha512(), (const uint8_t *)"L", 1);
}

static void
test_der_octet_string(void **state)
{
	uint8_t in[300], *der = NULL;
	size_t len = 0, inner = 0;
	const uint8_t *p;

	(void)state;
	memset(in, 0xAB, sizeof(in));
	assert_int_equal(tk_p11_der_octet_string(in, 65, &der, &len), TK_OK);
	assert_int_equal(len, 67);
	assert_int_equal(der[0], 0x04);
	assert_int_equal(der[1], 65);
	p = tk_p11_der_unwrap_octet_string(der, len, &inner);
	assert_ptr_equal(p, der + 2);
	assert_int_equal(inner, 65);
	/* trailing garbage or truncation is not an OCTET STRING */
	assert_null(tk_p11_der_unwrap_octet_string(der, len - 1, &inner));
	free(der);
	assert_int_equal(tk_p11_der_octet_string(in, 200, &der, &len), TK_OK);
	assert_int_equal(der[1], 0x81);
	assert_int_equal(len, 203);
	free(der);
	assert_int_equal(tk_p11_der_octet_string(in, 300, &der, &len), TK_OK);
	assert_int_equal(der[1], 0x82);
	assert_int_equal(len, 304);
	p = tk_p11_der_unwrap_octet_string(der, len, &inner);
	assert_non_null(p);
	assert_int_equal(inner, 300);
	free(der);
	/* a raw EC point is not mistaken for DER */
	in[0] = 0x04;
	assert_null(tk_p11_der_unwrap_octet_string(in, 65, &inner));
}

static void
test_err_to_ckr(void **state)
{
	(void)state;
	assert_int_equal(tk_err_to_ckr(TK_OK), CKR_OK);
	assert_int_equal(tk_err_to_ckr(TK_ERR_PIN_INCORRECT), CKR_PIN_INCORRECT);
	assert_int_equal(tk_err_to_ckr(TK_ERR_PIN_LOCKED), CKR_PIN_LOCKED);
	assert_int_equal(tk_err_to_ckr(TK_ERR_AUTH_METHOD_BLOCKED), CKR_PIN_LOCKED);
	assert_int_equal(tk_err_to_ckr(TK_ERR_SECURITY_STATUS), CKR_USER_NOT_LOGGED_IN);
	assert_int_equal(tk_err_to_ckr(TK_ERR_CARD_REMOVED), CKR_DEVICE_REMOVED);
	assert_int_equal(tk_err_to_ckr(TK_ERR_NO_CARD), CKR_TOKEN_NOT_PRESENT);
	assert_int_equal(tk_err_to_ckr(TK_ERR_TIMEOUT), CKR_DEVICE_ERROR);
	assert_int_equal(tk_err_to_ckr(TK_ERR_COMM), CKR_DEVICE_ERROR);
	assert_int_equal(tk_err_to_ckr(TK_ERR_UNRESPONSIVE), CKR_DEVICE_ERROR);
	/* the reader (or the PC/SC service) went: the card may come back with it */
	assert_int_equal(tk_err_to_ckr(TK_ERR_READER_GONE), CKR_DEVICE_ERROR);
	assert_int_equal(tk_err_to_ckr(TK_ERR_NO_READER), CKR_DEVICE_REMOVED);
	assert_int_equal(tk_err_to_ckr(TK_ERR_NO_MEMORY), CKR_HOST_MEMORY);
	assert_int_equal(tk_err_to_ckr(TK_ERR_BUFFER_TOO_SMALL), CKR_BUFFER_TOO_SMALL);
	assert_int_equal(tk_err_to_ckr(-99999), CKR_GENERAL_ERROR);
}

/* $TOKENKIT_TIMEOUT_MS: the module's per-APDU deadline. */
static void
test_timeout_from_env(void **state)
{
	(void)state;
	assert_int_equal(unsetenv("TOKENKIT_TIMEOUT_MS"), 0);
	assert_int_equal(tk_p11_timeout_from_env(), 0);
	setenv("TOKENKIT_TIMEOUT_MS", "2500", 1);
	assert_int_equal(tk_p11_timeout_from_env(), 2500);
	setenv("TOKENKIT_TIMEOUT_MS", "100", 1);
	assert_int_equal(tk_p11_timeout_from_env(), 100);
	setenv("TOKENKIT_TIMEOUT_MS", "600000", 1);
	assert_int_equal(tk_p11_timeout_from_env(), 600000);
	/* out of range or not a number: the default */
	setenv("TOKENKIT_TIMEOUT_MS", "99", 1);
	assert_int_equal(tk_p11_timeout_from_env(), 0);
	setenv("TOKENKIT_TIMEOUT_MS", "600001", 1);
	assert_int_equal(tk_p11_timeout_from_env(), 0);
	setenv("TOKENKIT_TIMEOUT_MS", "-5000", 1);
	assert_int_equal(tk_p11_timeout_from_env(), 0);
	setenv("TOKENKIT_TIMEOUT_MS", "5000ms", 1);
	assert_int_equal(tk_p11_timeout_from_env(), 0);
	setenv("TOKENKIT_TIMEOUT_MS", "", 1);
	assert_int_equal(tk_p11_timeout_from_env(), 0);
	setenv("TOKENKIT_TIMEOUT_MS", "99999999999999999999", 1);
	assert_int_equal(tk_p11_timeout_from_env(), 0);
	unsetenv("TOKENKIT_TIMEOUT_MS");
}

/* $TOKENKIT_P11_GRACE_MS: how long a lost token waits for its card. */
static void
test_grace_from_env(void **state)
{
	(void)state;
	unsetenv("TOKENKIT_P11_GRACE_MS");
	assert_int_equal(tk_p11_grace_from_env(), P11_LOST_GRACE_MS);
	setenv("TOKENKIT_P11_GRACE_MS", "0", 1);
	assert_int_equal(tk_p11_grace_from_env(), 0);
	setenv("TOKENKIT_P11_GRACE_MS", "1500", 1);
	assert_int_equal(tk_p11_grace_from_env(), 1500);
	setenv("TOKENKIT_P11_GRACE_MS", "3600001", 1);
	assert_int_equal(tk_p11_grace_from_env(), P11_LOST_GRACE_MS);
	setenv("TOKENKIT_P11_GRACE_MS", "-1", 1);
	assert_int_equal(tk_p11_grace_from_env(), P11_LOST_GRACE_MS);
	setenv("TOKENKIT_P11_GRACE_MS", "x", 1);
	assert_int_equal(tk_p11_grace_from_env(), P11_LOST_GRACE_MS);
	unsetenv("TOKENKIT_P11_GRACE_MS");
}

static void
test_pad(void **state)
{
	CK_UTF8CHAR buf[8];

	(void)state;
	tk_p11_pad(buf, sizeof(buf), "ab");
	assert_memory_equal(buf, "ab      ", 8);
	tk_p11_pad(buf, sizeof(buf), "0123456789");
	assert_memory_equal(buf, "01234567", 8);
	/* never cut a UTF-8 sequence: "abcdefg" + U+00E9 (2 bytes) */
	tk_p11_pad(buf, sizeof(buf), "abcdefg\xc3\xa9");
	assert_memory_equal(buf, "abcdefg ", 8);
	tk_p11_pad(buf, sizeof(buf), NULL);
	assert_memory_equal(buf, "        ", 8);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_pss_encode_verifies),
	        cmocka_unit_test(test_pss_encode_rejects),
	        cmocka_unit_test(test_pkcs1_decode),
	        cmocka_unit_test(test_oaep_decode),
	        cmocka_unit_test(test_der_octet_string),
	        cmocka_unit_test(test_err_to_ckr),
	        cmocka_unit_test(test_timeout_from_env),
	        cmocka_unit_test(test_grace_from_env),
	        cmocka_unit_test(test_pad),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
