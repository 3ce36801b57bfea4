/* Unit tests for the PKCS#11 module's certificate-to-attributes conversion
 * and the objects paired with it (tk_p11_object_build, pkcs11/object.c), and
 * for the ECDH peer-point parsing (tk_p11_ecdh_peer_point, pkcs11/derive.c).
 *
 * The certificates are made here with OpenSSL (RSA and EC keys, UTF-8 and
 * multi-valued names, a 20-byte and a negative serial, dates on both sides
 * of 2050); the expected attribute values are written out by hand or taken
 * from OpenSSL's own encoding of what the test put in, never from the module.
 * What they attack: names, serial or SPKI bytes that differ from the
 * certificate's, dates read wrong, a key type the card misreports, a
 * malformed certificate that leaves half an object behind, and peer points
 * of the wrong length, form or wrapping. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/sha.h>
#include <openssl/x509.h>

#include "p11.h"

struct cert {
	EVP_PKEY *key;
	X509 *x;
	uint8_t *der;
	size_t der_len;
	uint8_t *subject, *issuer, *spki; /* OpenSSL's DER of what went in */
	size_t subject_len, issuer_len, spki_len;
};

static void
cert_free(struct cert *c)
{
	EVP_PKEY_free(c->key);
	X509_free(c->x);
	OPENSSL_free(c->der);
	OPENSSL_free(c->subject);
	OPENSSL_free(c->issuer);
	OPENSSL_free(c->spki);
	memset(c, 0, sizeof(*c));
}

/* A certificate signed by its own key but naming another issuer (so the
 * subject and issuer attributes cannot stand in for each other); serial is
 * DER INTEGER content (two's complement, big-endian). */
static void
make_cert(struct cert *c, EVP_PKEY *key, X509_NAME *name, const uint8_t *serial, size_t serial_len,
          const char *not_before, const char *not_after)
{
	X509_NAME *issuer = X509_NAME_new();
	ASN1_INTEGER *sn;
	const uint8_t *p;
	uint8_t *der = NULL, enc[32];
	int len;

	memset(c, 0, sizeof(*c));
	c->key = key;
	c->x = X509_new();
	assert_non_null(c->x);
	assert_int_equal(X509_set_version(c->x, 2), 1);
	/* the serial from its DER form: 02 len content */
	assert_true(serial_len + 2 <= sizeof(enc));
	enc[0] = 0x02;
	enc[1] = (uint8_t)serial_len;
	memcpy(enc + 2, serial, serial_len);
	p = enc;
	sn = d2i_ASN1_INTEGER(NULL, &p, (long)serial_len + 2);
	assert_non_null(sn);
	assert_int_equal(X509_set_serialNumber(c->x, sn), 1);
	ASN1_INTEGER_free(sn);
	assert_int_equal(X509_set_subject_name(c->x, name), 1);
	assert_non_null(issuer);
	assert_int_equal(X509_NAME_add_entry_by_txt(issuer, "CN", MBSTRING_ASC,
	                                            (const unsigned char *)"tokenkit test CA", -1,
	                                            -1, 0),
	                 1);
	assert_int_equal(X509_set_issuer_name(c->x, issuer), 1);
	assert_int_equal(ASN1_TIME_set_string_X509(X509_getm_notBefore(c->x), not_before), 1);
	assert_int_equal(ASN1_TIME_set_string_X509(X509_getm_notAfter(c->x), not_after), 1);
	assert_int_equal(X509_set_pubkey(c->x, key), 1);
	assert_true(X509_sign(c->x, key, EVP_sha256()) > 0);
	len = i2d_X509(c->x, &der);
	assert_true(len > 0);
	c->der = der;
	c->der_len = (size_t)len;
	len = i2d_X509_NAME(name, &c->subject);
	assert_true(len > 0);
	c->subject_len = (size_t)len;
	len = i2d_X509_NAME(issuer, &c->issuer);
	assert_true(len > 0);
	c->issuer_len = (size_t)len;
	X509_NAME_free(issuer);
	len = i2d_PUBKEY(key, &c->spki);
	assert_true(len > 0);
	c->spki_len = (size_t)len;
}

static void
assert_attr(const struct p11_object *o, CK_ATTRIBUTE_TYPE type, const void *val, size_t len)
{
	const struct p11_attr *a = tk_p11_attr_find(o, type);

	if (a == NULL)
		fail_msg("attribute 0x%lx missing", (unsigned long)type);
	assert_int_equal(a->len, len);
	if (len > 0)
		assert_memory_equal(a->val, val, len);
}

static void
init_token(struct p11_token *t, struct p11_object *objs)
{
	memset(t, 0, sizeof(*t));
	snprintf(t->info.serial, sizeof(t->info.serial), "0123456789");
	t->objs = objs;
}

/* Certificate, public key and private key of one identity (CKA_ID 01). */
static void
init_objects(tk_object_t *k, const struct cert *c, int key_type, unsigned bits)
{
	memset(k, 0, 3 * sizeof(*k));
	for (int i = 0; i < 3; i++) {
		k[i].handle = (uint32_t)i + 1;
		k[i].id[0] = 1;
		k[i].id_len = 1;
		k[i].key_type = key_type;
		k[i].key_bits = bits;
		k[i].has_identity = true;
		k[i].key_ref = 0x9A;
	}
	k[0].cls = TK_OBJ_CERT;
	k[0].der = c->der;
	k[0].der_len = c->der_len;
	k[1].cls = TK_OBJ_PUBKEY;
	k[2].cls = TK_OBJ_PRIVKEY;
	k[2].usage = TK_USAGE_SIGN | TK_USAGE_DERIVE;
}

/* Builds all three into t; the certificate's attributes are checked. */
static void
build_and_check_cert(struct p11_token *t, struct p11_object *objs, const tk_object_t *k,
                     const struct cert *c)
{
	uint8_t sha1[SHA_DIGEST_LENGTH];

	for (int i = 0; i < 3; i++) {
		assert_int_equal(tk_p11_object_build(t, &k[i], &objs[i]), TK_OK);
		t->nobjs++;
	}
	assert_int_equal(objs[0].cls, CKO_CERTIFICATE);
	assert_attr(&objs[0], CKA_VALUE, c->der, c->der_len);
	assert_attr(&objs[0], CKA_SUBJECT, c->subject, c->subject_len);
	assert_attr(&objs[0], CKA_ISSUER, c->issuer, c->issuer_len);
	assert_attr(&objs[0], CKA_PUBLIC_KEY_INFO, c->spki, c->spki_len);
	SHA1(c->der, c->der_len, sha1);
	assert_attr(&objs[0], CKA_CHECK_VALUE, sha1, 3);
	/* the keys take the certificate's subject and SPKI; their OpenSSL
	 * form (made on first use) is the certificate's key */
	for (int i = 1; i < 3; i++) {
		assert_non_null(tk_p11_object_pub(&objs[i]));
		assert_int_equal(EVP_PKEY_eq(tk_p11_object_pub(&objs[i]), c->key), 1);
		assert_attr(&objs[i], CKA_SUBJECT, c->subject, c->subject_len);
		assert_attr(&objs[i], CKA_PUBLIC_KEY_INFO, c->spki, c->spki_len);
		assert_attr(&objs[i], CKA_ID, "\x01", 1);
	}
}

static void
clear_all(struct p11_token *t)
{
	for (size_t i = 0; i < t->nobjs; i++)
		tk_p11_object_clear(&t->objs[i]);
	t->nobjs = 0;
}

static void
test_rsa_cert_utf8_names(void **state)
{
	/* a 20-byte serial whose top bit is set: DER puts a 00 in front */
	static const uint8_t serial[] = {0x00, 0x80, 0x11, 0x22, 0x33, 0x44, 0x55,
	                                 0x66, 0x77, 0x88, 0x99, 0xAA, 0xBB, 0xCC,
	                                 0xDD, 0xEE, 0xFF, 0x01, 0x02, 0x03};
	static const uint8_t serial_der[] = {0x02, 0x14, 0x00, 0x80, 0x11, 0x22, 0x33, 0x44,
	                                     0x55, 0x66, 0x77, 0x88, 0x99, 0xAA, 0xBB, 0xCC,
	                                     0xDD, 0xEE, 0xFF, 0x01, 0x02, 0x03};
	static const uint8_t e_65537[] = {0x01, 0x00, 0x01};
	static const CK_DATE start = {{'1', '9', '5', '0'}, {'0', '6'}, {'1', '5'}};
	static const CK_DATE end = {{'2', '1', '0', '0'}, {'0', '1'}, {'3', '1'}};
	X509_NAME *name = X509_NAME_new();
	struct p11_object objs[3];
	struct p11_token t;
	tk_object_t k[3];
	struct cert c;
	BIGNUM *n = NULL;
	uint8_t nbuf[256];
	CK_BBOOL yes = CK_TRUE;

	(void)state;
	assert_non_null(name);
	assert_int_equal(X509_NAME_add_entry_by_txt(name, "C", MBSTRING_UTF8,
	                                            (const unsigned char *)"DE", -1, -1, 0),
	                 1);
	assert_int_equal(X509_NAME_add_entry_by_txt(name, "O", MBSTRING_UTF8,
	                                            (const unsigned char *)"Gr\xc3\xbc\xc3\x9f"
	                                                                   "e \xe2\x9c\x93",
	                                            -1, -1, 0),
	                 1);
	assert_int_equal(X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8,
	                                            (const unsigned char *)"Zo\xc3\xab, \"q\"", -1,
	                                            -1, 0),
	                 1);
	make_cert(&c, EVP_RSA_gen(2048), name, serial, sizeof(serial), "19500615000000Z",
	          "21000131235959Z");
	X509_NAME_free(name);
	init_token(&t, objs);
	init_objects(k, &c, TK_KEY_RSA, 2048);
	build_and_check_cert(&t, objs, k, &c);
	assert_attr(&objs[0], CKA_SERIAL_NUMBER, serial_der, sizeof(serial_der));
	/* 1950 is a UTCTime, 2100 a GeneralizedTime */
	assert_attr(&objs[0], CKA_START_DATE, &start, sizeof(start));
	assert_attr(&objs[0], CKA_END_DATE, &end, sizeof(end));
	/* the modulus as the key has it, the exponent 65537 */
	assert_int_equal(EVP_PKEY_get_bn_param(c.key, OSSL_PKEY_PARAM_RSA_N, &n), 1);
	assert_int_equal(BN_bn2bin(n, nbuf), 256);
	BN_free(n);
	for (int i = 1; i < 3; i++) {
		assert_attr(&objs[i], CKA_MODULUS, nbuf, 256);
		assert_attr(&objs[i], CKA_PUBLIC_EXPONENT, e_65537, sizeof(e_65537));
	}
	assert_attr(&objs[2], CKA_SENSITIVE, &yes, sizeof(yes));
	assert_int_equal(objs[2].key_bits, 2048);
	clear_all(&t);
	cert_free(&c);
}

static void
test_ec_cert_multivalued_rdn(void **state)
{
	static const uint8_t serial[] = {0xFF, 0x7F}; /* -129 */
	static const uint8_t serial_der[] = {0x02, 0x02, 0xFF, 0x7F};
	/* OID 1.2.840.10045.3.1.7 (P-256) */
	static const uint8_t p256[] = {0x06, 0x08, 0x2A, 0x86, 0x48, 0xCE, 0x3D, 0x03, 0x01, 0x07};
	X509_NAME *name = X509_NAME_new();
	struct p11_object objs[3];
	struct p11_token t;
	tk_object_t k[3];
	struct cert c;
	uint8_t pt[65], wrapped[67];
	size_t ptlen = 0;

	(void)state;
	assert_non_null(name);
	/* CN=a+UID=b: two values in one RDN (set = 1 joins the previous) */
	assert_int_equal(X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
	                                            (const unsigned char *)"a", -1, -1, 0),
	                 1);
	assert_int_equal(X509_NAME_add_entry_by_txt(name, "UID", MBSTRING_ASC,
	                                            (const unsigned char *)"b", -1, -1, 1),
	                 1);
	assert_int_equal(X509_NAME_add_entry_by_txt(name, "DC", MBSTRING_ASC,
	                                            (const unsigned char *)"example", -1, -1, 0),
	                 1);
	make_cert(&c, EVP_EC_gen("P-256"), name, serial, sizeof(serial), "20240101000000Z",
	          "20340101000000Z");
	X509_NAME_free(name);
	init_token(&t, objs);
	init_objects(k, &c, TK_KEY_EC, 0); /* the card does not say the size */
	build_and_check_cert(&t, objs, k, &c);
	assert_attr(&objs[0], CKA_SERIAL_NUMBER, serial_der, sizeof(serial_der));
	assert_int_equal(EVP_PKEY_get_octet_string_param(c.key, OSSL_PKEY_PARAM_ENCODED_PUBLIC_KEY,
	                                                 pt, sizeof(pt), &ptlen),
	                 1);
	assert_int_equal(ptlen, 65);
	wrapped[0] = 0x04;
	wrapped[1] = 65;
	memcpy(wrapped + 2, pt, 65);
	for (int i = 1; i < 3; i++) {
		assert_attr(&objs[i], CKA_EC_PARAMS, p256, sizeof(p256));
		assert_attr(&objs[i], CKA_EC_POINT, wrapped, sizeof(wrapped));
		assert_int_equal(objs[i].key_bits, 256); /* from the SPKI */
	}
	clear_all(&t);
	cert_free(&c);
}

/* The card says RSA, the certificate holds an EC key: the keys stay, without
 * the values that cannot be had (never a wrong modulus). */
static void
test_key_type_mismatch(void **state)
{
	static const uint8_t serial[] = {0x01};
	X509_NAME *name = X509_NAME_new();
	struct p11_object objs[3];
	struct p11_token t;
	tk_object_t k[3];
	struct cert c;
	CK_ULONG bits = 2048;

	(void)state;
	assert_int_equal(X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
	                                            (const unsigned char *)"mismatch", -1, -1, 0),
	                 1);
	make_cert(&c, EVP_EC_gen("P-384"), name, serial, sizeof(serial), "20240101000000Z",
	          "20250101000000Z");
	X509_NAME_free(name);
	init_token(&t, objs);
	init_objects(k, &c, TK_KEY_RSA, 2048);
	build_and_check_cert(&t, objs, k, &c);
	for (int i = 1; i < 3; i++) {
		assert_null(tk_p11_attr_find(&objs[i], CKA_MODULUS));
		assert_null(tk_p11_attr_find(&objs[i], CKA_PUBLIC_EXPONENT));
		assert_attr(&objs[i], CKA_MODULUS_BITS, &bits, sizeof(bits));
	}
	clear_all(&t);
	cert_free(&c);
}

/* Truncated, empty or garbage bytes: an error and nothing left behind. */
static void
test_malformed_cert(void **state)
{
	static const uint8_t serial[] = {0x05};
	static const uint8_t garbage[] = {0x30, 0x82, 0xFF, 0xFF, 0x30, 0x03, 0x02, 0x01, 0x01};
	X509_NAME *name = X509_NAME_new();
	struct p11_object o;
	struct p11_token t;
	tk_object_t k[3];
	struct cert c;
	const size_t cuts[] = {0, 1, 4, 100};

	(void)state;
	assert_int_equal(X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
	                                            (const unsigned char *)"cut", -1, -1, 0),
	                 1);
	make_cert(&c, EVP_EC_gen("P-256"), name, serial, sizeof(serial), "20240101000000Z",
	          "20250101000000Z");
	X509_NAME_free(name);
	init_token(&t, &o);
	init_objects(k, &c, TK_KEY_EC, 256);
	for (size_t i = 0; i < sizeof(cuts) / sizeof(cuts[0]); i++) {
		k[0].der_len = cuts[i];
		memset(&o, 0x5A, sizeof(o));
		assert_int_equal(tk_p11_object_build(&t, &k[0], &o), TK_ERR_MALFORMED);
		assert_int_equal(o.nattrs, 0);
		assert_null(o.attrs);
		assert_null(o.pub);
	}
	k[0].der = garbage;
	k[0].der_len = sizeof(garbage);
	assert_int_equal(tk_p11_object_build(&t, &k[0], &o), TK_ERR_MALFORMED);
	assert_int_equal(o.nattrs, 0);
	/* a data object is not published */
	k[0].cls = TK_OBJ_DATA;
	assert_int_equal(tk_p11_object_build(&t, &k[0], &o), TK_ERR_NOT_SUPPORTED);
	cert_free(&c);
}

static void
test_ecdh_peer_point(void **state)
{
	uint8_t raw[133], der[136], buf[140];
	const uint8_t *pt = NULL;
	size_t len = 0;

	(void)state;
	/* P-256: the raw uncompressed point is taken as it is */
	raw[0] = 0x04;
	for (size_t i = 1; i < sizeof(raw); i++)
		raw[i] = (uint8_t)i;
	assert_int_equal(tk_p11_ecdh_peer_point(raw, 65, 32, &pt, &len), CKR_OK);
	assert_ptr_equal(pt, raw);
	assert_int_equal(len, 65);
	/* ... and in a DER OCTET STRING (04 41 ...) */
	der[0] = 0x04;
	der[1] = 65;
	memcpy(der + 2, raw, 65);
	assert_int_equal(tk_p11_ecdh_peer_point(der, 67, 32, &pt, &len), CKR_OK);
	assert_ptr_equal(pt, der + 2);
	assert_int_equal(len, 65);
	/* P-521: 133 bytes need the long form (04 81 85 ...) */
	der[1] = 0x81;
	der[2] = 133;
	memcpy(der + 3, raw, 133);
	assert_int_equal(tk_p11_ecdh_peer_point(der, 136, 66, &pt, &len), CKR_OK);
	assert_ptr_equal(pt, der + 3);
	assert_int_equal(len, 133);
	/* the wrong field size, in both forms */
	assert_int_equal(tk_p11_ecdh_peer_point(der, 136, 48, &pt, &len),
	                 CKR_MECHANISM_PARAM_INVALID);
	assert_null(pt);
	assert_int_equal(len, 0);
	assert_int_equal(tk_p11_ecdh_peer_point(raw, 97, 32, &pt, &len),
	                 CKR_MECHANISM_PARAM_INVALID);
	/* a compressed point (02 X) or another prefix */
	memcpy(buf, raw, 65);
	buf[0] = 0x02;
	assert_int_equal(tk_p11_ecdh_peer_point(buf, 33, 32, &pt, &len),
	                 CKR_MECHANISM_PARAM_INVALID);
	assert_int_equal(tk_p11_ecdh_peer_point(buf, 65, 32, &pt, &len),
	                 CKR_MECHANISM_PARAM_INVALID);
	/* DER: trailing byte, a length past the end, a point not 04 */
	buf[0] = 0x04;
	buf[1] = 65;
	memcpy(buf + 2, raw, 65);
	buf[67] = 0x00;
	assert_int_equal(tk_p11_ecdh_peer_point(buf, 68, 32, &pt, &len),
	                 CKR_MECHANISM_PARAM_INVALID);
	buf[1] = 66;
	assert_int_equal(tk_p11_ecdh_peer_point(buf, 67, 32, &pt, &len),
	                 CKR_MECHANISM_PARAM_INVALID);
	buf[1] = 65;
	buf[2] = 0x03;
	assert_int_equal(tk_p11_ecdh_peer_point(buf, 67, 32, &pt, &len),
	                 CKR_MECHANISM_PARAM_INVALID);
	/* nothing at all */
	assert_int_equal(tk_p11_ecdh_peer_point(raw, 0, 32, &pt, &len),
	                 CKR_MECHANISM_PARAM_INVALID);
	assert_int_equal(tk_p11_ecdh_peer_point(NULL, 65, 32, &pt, &len),
	                 CKR_MECHANISM_PARAM_INVALID);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_rsa_cert_utf8_names),
	        cmocka_unit_test(test_ec_cert_multivalued_rdn),
	        cmocka_unit_test(test_key_type_mismatch),
	        cmocka_unit_test(test_malformed_cert),
	        cmocka_unit_test(test_ecdh_peer_point),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
