/* Unit tests for the PIV attestation parser and verifier
 * (tools/tokenkit/attest/piv_attest.c). Certificates are made here with
 * OpenSSL: a root, a device (attestation key) certificate under it, and
 * attestations with the Yubico extensions encoded by hand from Yubico's
 * description (firmware: 3 raw bytes; serial: DER INTEGER; policy: 2 bytes).
 * Forgeries: another issuer name, another signing key, another root, an
 * expired attestation, duplicated or malformed extensions. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <tokenkit/err.h>

#include "piv_attest.h"

static EVP_PKEY *
ec_key(void)
{
	EVP_PKEY *k = EVP_EC_gen("P-256");

	assert_non_null(k);
	return k;
}

static void
add_ext(X509 *x, const char *oid, const uint8_t *v, size_t len)
{
	ASN1_OBJECT *obj = OBJ_txt2obj(oid, 1);
	ASN1_OCTET_STRING *os = ASN1_OCTET_STRING_new();
	X509_EXTENSION *e;

	assert_non_null(obj);
	assert_int_equal(ASN1_OCTET_STRING_set(os, v, (int)len), 1);
	e = X509_EXTENSION_create_by_OBJ(NULL, obj, 0, os);
	assert_non_null(e);
	assert_int_equal(X509_add_ext(x, e, -1), 1);
	X509_EXTENSION_free(e);
	ASN1_OCTET_STRING_free(os);
	ASN1_OBJECT_free(obj);
}

/* A certificate for key named subject, issued under issuer_name by
 * issuer_key; ca adds basicConstraints CA:TRUE; days < 0 makes it expired. */
static X509 *
mkcert(EVP_PKEY *key, const char *subject, const char *issuer_name, EVP_PKEY *issuer_key, bool ca,
       long days)
{
	X509 *x = X509_new();
	X509_NAME *s = X509_NAME_new(), *i = X509_NAME_new();

	assert_non_null(x);
	X509_set_version(x, 2);
	ASN1_INTEGER_set(X509_get_serialNumber(x), 7);
	X509_NAME_add_entry_by_txt(s, "CN", MBSTRING_UTF8, (const unsigned char *)subject, -1, -1,
	                           0);
	X509_NAME_add_entry_by_txt(i, "CN", MBSTRING_UTF8, (const unsigned char *)issuer_name, -1,
	                           -1, 0);
	X509_set_subject_name(x, s);
	X509_set_issuer_name(x, i);
	X509_set_pubkey(x, key);
	if (days < 0) {
		X509_gmtime_adj(X509_getm_notBefore(x), days * 2 * 86400);
		X509_gmtime_adj(X509_getm_notAfter(x), days * 86400);
	} else {
		X509_gmtime_adj(X509_getm_notBefore(x), -60);
		X509_gmtime_adj(X509_getm_notAfter(x), days * 86400);
	}
	if (ca) {
		X509_EXTENSION *e =
		        X509V3_EXT_conf_nid(NULL, NULL, NID_basic_constraints, "critical,CA:TRUE");

		X509_add_ext(x, e, -1);
		X509_EXTENSION_free(e);
	}
	X509_NAME_free(s);
	X509_NAME_free(i);
	return x;
}

static void
sign(X509 *x, EVP_PKEY *k)
{
	assert_true(X509_sign(x, k, EVP_sha256()) > 0);
}

struct pki {
	EVP_PKEY *root_key, *dev_key, *slot_key, *other_key;
	X509 *root, *dev;
};

static int
setup(void **state)
{
	struct pki *p = calloc(1, sizeof(*p));

	p->root_key = ec_key();
	p->dev_key = ec_key();
	p->slot_key = ec_key();
	p->other_key = ec_key();
	p->root = mkcert(p->root_key, "Root", "Root", p->root_key, true, 3650);
	sign(p->root, p->root_key);
	p->dev = mkcert(p->dev_key, "Device", "Root", p->root_key, true, 3650);
	sign(p->dev, p->root_key);
	*state = p;
	return 0;
}

static int
teardown(void **state)
{
	struct pki *p = *state;

	X509_free(p->root);
	X509_free(p->dev);
	EVP_PKEY_free(p->root_key);
	EVP_PKEY_free(p->dev_key);
	EVP_PKEY_free(p->slot_key);
	EVP_PKEY_free(p->other_key);
	free(p);
	return 0;
}

/* An attestation of the slot key, as a YubiKey issues it. */
static X509 *
attestation(struct pki *p, const char *issuer, EVP_PKEY *signer, long days)
{
	X509 *x = mkcert(p->slot_key, "YubiKey PIV Attestation 9a", issuer, signer, false, days);

	add_ext(x, TOOL_OID_YK_FIRMWARE, (const uint8_t *)"\x05\x07\x02", 3);
	add_ext(x, TOOL_OID_YK_SERIAL, (const uint8_t *)"\x02\x04\x01\x02\x03\x04", 6);
	add_ext(x, TOOL_OID_YK_POLICY, (const uint8_t *)"\x03\x02", 2);
	sign(x, signer);
	return x;
}

static void
test_verify_good(void **state)
{
	struct pki *p = *state;
	X509 *att = attestation(p, "Device", p->dev_key, 30);
	const char *why = "x";

	assert_int_equal(tool_attest_verify(att, p->dev, p->root, &why), TK_OK);
	assert_null(why);
	/* no root: the device certificate is the anchor */
	assert_int_equal(tool_attest_verify(att, p->dev, NULL, &why), TK_OK);
	X509_free(att);
}

static void
test_verify_forgeries(void **state)
{
	struct pki *p = *state;
	EVP_PKEY *twin_key = ec_key();
	X509 *wrong_issuer = attestation(p, "Another Device", p->dev_key, 30);
	X509 *wrong_signer = attestation(p, "Device", p->other_key, 30);
	X509 *expired = attestation(p, "Device", p->dev_key, -1);
	X509 *good = attestation(p, "Device", p->dev_key, 30);
	/* a root with the right name and another key */
	X509 *twin = mkcert(twin_key, "Root", "Root", twin_key, true, 3650);
	const char *why = NULL;

	sign(twin, twin_key);
	assert_int_not_equal(tool_attest_verify(wrong_issuer, p->dev, p->root, &why), TK_OK);
	assert_non_null(strstr(why, "issuer"));
	assert_int_not_equal(tool_attest_verify(wrong_signer, p->dev, p->root, &why), TK_OK);
	assert_non_null(strstr(why, "not signed"));
	/* also when no root is given: the signature is checked all the same */
	assert_int_not_equal(tool_attest_verify(wrong_signer, p->dev, NULL, &why), TK_OK);
	assert_int_not_equal(tool_attest_verify(expired, p->dev, p->root, &why), TK_OK);
	assert_int_not_equal(tool_attest_verify(good, p->dev, twin, &why), TK_OK);
	/* the device certificate is no root: the chain must end at a self-signed one */
	assert_int_not_equal(tool_attest_verify(good, p->dev, p->dev, &why), TK_OK);
	/* a device certificate not issued by a CA cannot issue */
	{
		X509 *leafdev = mkcert(p->dev_key, "Device", "Root", p->root_key, false, 3650);

		sign(leafdev, p->root_key);
		assert_int_not_equal(tool_attest_verify(good, leafdev, p->root, &why), TK_OK);
		X509_free(leafdev);
	}
	X509_free(twin);
	X509_free(good);
	X509_free(expired);
	X509_free(wrong_signer);
	X509_free(wrong_issuer);
	EVP_PKEY_free(twin_key);
}

static void
test_info(void **state)
{
	struct pki *p = *state;
	X509 *att = attestation(p, "Device", p->dev_key, 30);
	tool_attest_info_t info;

	assert_int_equal(tool_attest_info(att, &info), TK_OK);
	assert_true(info.has_firmware && info.has_serial && info.has_policy);
	assert_false(info.has_form_factor);
	assert_memory_equal(info.firmware, "\x05\x07\x02", 3);
	assert_int_equal(info.serial, 0x01020304);
	assert_int_equal(info.pin_policy, 3);
	assert_int_equal(info.touch_policy, 2);
	assert_string_equal(tool_pin_policy_name(info.pin_policy), "always");
	assert_string_equal(tool_touch_policy_name(info.touch_policy), "always");
	assert_string_equal(tool_touch_policy_name(3), "cached");
	assert_string_equal(tool_pin_policy_name(9), "?");
	X509_free(att);
}

static void
test_info_malformed(void **state)
{
	struct pki *p = *state;
	tool_attest_info_t info;
	struct {
		const char *oid;
		const char *v;
		size_t len;
	} bad[] = {
	        {TOOL_OID_YK_FIRMWARE, "\x05\x07", 2},
	        {TOOL_OID_YK_SERIAL, "\x04\x01\x00", 3},     /* not an INTEGER */
	        {TOOL_OID_YK_SERIAL, "\x02\x01\x05\x00", 4}, /* trailing byte */
	        {TOOL_OID_YK_SERIAL, "\x02\x01\xFF", 3},     /* negative */
	        {TOOL_OID_YK_POLICY, "\x01", 1},
	        {TOOL_OID_YK_FORM_FACTOR, "", 0},
	};

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		X509 *x = mkcert(p->slot_key, "a", "Device", p->dev_key, false, 30);

		add_ext(x, bad[i].oid, (const uint8_t *)bad[i].v, bad[i].len);
		sign(x, p->dev_key);
		assert_int_equal(tool_attest_info(x, &info), TK_ERR_MALFORMED);
		X509_free(x);
	}
	/* the same extension twice */
	{
		X509 *x = attestation(p, "Device", p->dev_key, 30);

		add_ext(x, TOOL_OID_YK_POLICY, (const uint8_t *)"\x01\x01", 2);
		assert_int_equal(tool_attest_info(x, &info), TK_ERR_MALFORMED);
		X509_free(x);
	}
}

static void
test_object_cert(void **state)
{
	(void)state;
	const uint8_t obj[] = {0x53, 0x0A, 0x70, 0x03, 0x30, 0x01,
	                       0x00, 0x71, 0x01, 0x00, 0xFE, 0x00};
	const uint8_t gz[] = {0x53, 0x08, 0x70, 0x03, 0x30, 0x01, 0x00, 0x71, 0x01, 0x01};
	const uint8_t nocert[] = {0x53, 0x03, 0x71, 0x01, 0x00};
	const uint8_t trunc[] = {0x53, 0x0A, 0x70, 0x03, 0x30};
	const uint8_t *c = (const uint8_t *)"x";
	size_t n = 9;

	assert_int_equal(tool_piv_object_cert(obj, sizeof(obj), &c, &n), TK_OK);
	assert_ptr_equal(c, obj + 4);
	assert_int_equal(n, 3);
	assert_int_equal(tool_piv_object_cert(gz, sizeof(gz), &c, &n), TK_ERR_NOT_SUPPORTED);
	assert_int_equal(tool_piv_object_cert(nocert, sizeof(nocert), &c, &n), TK_ERR_NOT_FOUND);
	assert_null(c);
	assert_int_not_equal(tool_piv_object_cert(trunc, sizeof(trunc), &c, &n), TK_OK);
	assert_int_equal(n, 0);
}

/* GET METADATA of a P-256 slot built from the slot key's point; the parsed
 * public key equals it, and a changed point does not parse or differs. */
static void
test_metadata(void **state)
{
	struct pki *p = *state;
	uint8_t pt[65], resp[128];
	size_t ptlen = 0, n = 0;
	tool_piv_meta_t m;
	EVP_PKEY *k = NULL;

	assert_int_equal(EVP_PKEY_get_octet_string_param(p->slot_key, "encoded-pub-key", pt,
	                                                 sizeof(pt), &ptlen),
	                 1);
	assert_int_equal(ptlen, 65);
	memcpy(resp + n, "\x01\x01\x11\x02\x02\x02\x01\x03\x01\x01\x04\x43\x86\x41", 14);
	n += 14;
	memcpy(resp + n, pt, 65);
	n += 65;
	assert_int_equal(tool_piv_metadata_parse(resp, n, &m), TK_OK);
	assert_int_equal(m.alg, 0x11);
	assert_true(m.has_policy && m.has_origin);
	assert_int_equal(m.pin_policy, 2);
	assert_int_equal(m.touch_policy, 1);
	assert_int_equal(m.origin, 1);
	assert_int_equal(m.pub_len, 67);
	assert_int_equal(tool_piv_pubkey(m.alg, m.pub, m.pub_len, &k), TK_OK);
	assert_int_equal(EVP_PKEY_eq(k, p->slot_key), 1);
	EVP_PKEY_free(k);
	assert_int_equal(EVP_PKEY_eq(p->other_key, p->slot_key), 0);
	/* wrong algorithm for the point's size, off-curve point, unknown algorithm */
	assert_int_not_equal(tool_piv_pubkey(0x14, m.pub, m.pub_len, &k), TK_OK);
	assert_null(k);
	resp[14 + 64] ^= 1;
	assert_int_not_equal(tool_piv_pubkey(0x11, m.pub, m.pub_len, &k), TK_OK);
	assert_null(k);
	assert_int_equal(tool_piv_pubkey(0x99, m.pub, m.pub_len, &k), TK_ERR_NOT_SUPPORTED);
	/* a policy field of the wrong length */
	assert_int_equal(tool_piv_metadata_parse((const uint8_t *)"\x02\x01\x01", 3, &m),
	                 TK_ERR_MALFORMED);
	/* truncated */
	assert_int_not_equal(tool_piv_metadata_parse(resp, 20, &m), TK_OK);
}

static void
test_pubkey_rsa(void **state)
{
	(void)state;
	EVP_PKEY *rsa = EVP_RSA_gen(1024), *k = NULL;
	BIGNUM *bn = NULL;
	uint8_t nb[128], tmpl[160];
	size_t t = 0;

	assert_non_null(rsa);
	assert_int_equal(EVP_PKEY_get_bn_param(rsa, "n", &bn), 1);
	assert_int_equal(BN_bn2binpad(bn, nb, sizeof(nb)), 128);
	tmpl[t++] = 0x81;
	tmpl[t++] = 0x81;
	tmpl[t++] = 0x80;
	memcpy(tmpl + t, nb, 128);
	t += 128;
	memcpy(tmpl + t, "\x82\x03\x01\x00\x01", 5);
	t += 5;
	assert_int_equal(tool_piv_pubkey(0x06, tmpl, t, &k), TK_OK);
	assert_int_equal(EVP_PKEY_eq(k, rsa), 1);
	EVP_PKEY_free(k);
	/* the algorithm says 2048 bits: a 1024-bit modulus is refused */
	assert_int_not_equal(tool_piv_pubkey(0x07, tmpl, t, &k), TK_OK);
	/* no exponent */
	assert_int_not_equal(tool_piv_pubkey(0x06, tmpl, t - 5, &k), TK_OK);
	BN_free(bn);
	EVP_PKEY_free(rsa);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_verify_good), cmocka_unit_test(test_verify_forgeries),
	        cmocka_unit_test(test_info),        cmocka_unit_test(test_info_malformed),
	        cmocka_unit_test(test_object_cert), cmocka_unit_test(test_metadata),
	        cmocka_unit_test(test_pubkey_rsa),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
