/* The DER walk of certificates and SubjectPublicKeyInfo (core/x509.c),
 * with OpenSSL as the judge: certificates made here with OpenSSL (RSA of
 * several sizes, P-256/384/521 with plain and compressed points, keys we do
 * not take, extensions, UTCTime and GeneralizedTime, long and
 * high-bit serials) must give exactly OpenSSL's subject, issuer, serial,
 * key info, dates, modulus, exponent, curve and point; and broken DER
 * (every truncation, trailing bytes, indefinite and non-minimal lengths,
 * negative or padded integers, bad bit strings, wrong point sizes, a
 * version 4) is refused. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <tokenkit/err.h>
#include <tokenkit/token.h>

#include "x509.h"

/* ---- certificates made with OpenSSL ---------------------------------------------- */

struct made {
	uint8_t *der;
	int len;
	EVP_PKEY *key;
};

static void
add_ext(X509 *x, int nid, const char *value)
{
	X509V3_CTX ctx;
	X509_EXTENSION *e;

	X509V3_set_ctx(&ctx, x, x, NULL, NULL, 0);
	e = X509V3_EXT_conf_nid(NULL, &ctx, nid, value);
	assert_non_null(e);
	assert_int_equal(X509_add_ext(x, e, -1), 1);
	X509_EXTENSION_free(e);
}

/* A self-signed certificate for key (or signed by signer when key cannot
 * sign). serial: hex; years: validity from now. */
static struct made
make(EVP_PKEY *key, EVP_PKEY *signer, const char *serial, long years, bool exts)
{
	struct made m = {NULL, 0, key};
	X509 *x = X509_new();
	X509_NAME *nm = X509_NAME_new();
	BIGNUM *bn = NULL;

	assert_int_equal(X509_set_version(x, exts ? 2 : 0), 1);
	assert_true(BN_hex2bn(&bn, serial) > 0);
	assert_non_null(BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(x)));
	BN_free(bn);
	X509_gmtime_adj(X509_getm_notBefore(x), 0);
	X509_gmtime_adj(X509_getm_notAfter(x), 86400L * 365 * years);
	X509_NAME_add_entry_by_txt(nm, "C", MBSTRING_ASC, (const unsigned char *)"DE", -1, -1, 0);
	X509_NAME_add_entry_by_txt(nm, "O", MBSTRING_UTF8, (const unsigned char *)"tökenkit", -1,
	                           -1, 0);
	/* a multi-valued RDN */
	X509_NAME_add_entry_by_txt(nm, "OU", MBSTRING_ASC, (const unsigned char *)"test", -1, -1,
	                           0);
	X509_NAME_add_entry_by_txt(nm, "CN", MBSTRING_ASC, (const unsigned char *)"x509", -1, -1,
	                           1);
	X509_set_subject_name(x, nm);
	X509_set_issuer_name(x, nm);
	X509_set_pubkey(x, key);
	if (exts) {
		add_ext(x, NID_basic_constraints, "critical,CA:FALSE");
		add_ext(x, NID_key_usage, "digitalSignature,keyAgreement");
		add_ext(x, NID_subject_alt_name, "DNS:x509.example,email:a@b.example");
		add_ext(x, NID_subject_key_identifier, "hash");
	}
	if (signer == NULL)
		signer = key;
	/* EdDSA hashes by itself */
	assert_true(X509_sign(x, signer,
	                      EVP_PKEY_get_base_id(signer) == EVP_PKEY_ED25519 ||
	                                      EVP_PKEY_get_base_id(signer) == EVP_PKEY_ED448
	                              ? NULL
	                              : EVP_sha256()) > 0);
	m.len = i2d_X509(x, &m.der);
	assert_true(m.len > 0);
	X509_NAME_free(nm);
	X509_free(x);
	return m;
}

static void
made_free(struct made *m)
{
	OPENSSL_free(m->der);
	EVP_PKEY_free(m->key);
}

static void
assert_der(const uint8_t *ours, size_t len, int n, uint8_t *der)
{
	assert_true(n > 0);
	assert_int_equal(len, (size_t)n);
	assert_memory_equal(ours, der, len);
	OPENSSL_free(der);
}

static void
assert_date(const char *ours, const ASN1_TIME *t)
{
	struct tm tm;
	char buf[48];

	assert_int_equal(ASN1_TIME_to_tm(t, &tm), 1);
	snprintf(buf, sizeof(buf), "%04d%02d%02d", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday);
	assert_string_equal(ours, buf);
}

static void
assert_bn(const EVP_PKEY *k, const char *name, const uint8_t *p, size_t n)
{
	BIGNUM *bn = NULL;
	uint8_t buf[1024];

	assert_int_equal(EVP_PKEY_get_bn_param(k, name, &bn), 1);
	assert_int_equal((size_t)BN_num_bytes(bn), n);
	BN_bn2bin(bn, buf);
	assert_memory_equal(buf, p, n);
	BN_free(bn);
}

/* Every field against OpenSSL's reading of the same certificate. */
static void
assert_like_openssl(const struct made *m, int want_type)
{
	const unsigned char *q = m->der;
	X509 *c = d2i_X509(NULL, &q, m->len);
	tk_x509_t x;
	tk_spki_t s;
	uint8_t *out = NULL, *copy = NULL;
	size_t cl = 0;
	int n, kt = -1;
	unsigned kb = 0;

	assert_non_null(c);
	assert_int_equal(tk_x509_parse(m->der, (size_t)m->len, &x), TK_OK);
	n = i2d_X509_NAME(X509_get_subject_name(c), &out);
	assert_der(x.subject, x.subject_len, n, out);
	out = NULL;
	n = i2d_X509_NAME(X509_get_issuer_name(c), &out);
	assert_der(x.issuer, x.issuer_len, n, out);
	out = NULL;
	n = i2d_ASN1_INTEGER(X509_get0_serialNumber(c), &out);
	assert_der(x.serial, x.serial_len, n, out);
	out = NULL;
	n = i2d_X509_PUBKEY(X509_get_X509_PUBKEY(c), &out);
	assert_der(x.spki, x.spki_len, n, out);
	assert_date(x.not_before, X509_get0_notBefore(c));
	assert_date(x.not_after, X509_get0_notAfter(c));

	if (want_type == TK_KEY_NONE) {
		assert_int_equal(tk_spki_parse(x.spki, x.spki_len, &s), TK_ERR_NOT_SUPPORTED);
		assert_int_equal(tk_x509_spki(m->der, (size_t)m->len, &copy, &cl, &kt, &kb),
		                 TK_ERR_NOT_SUPPORTED);
		assert_null(copy);
		X509_free(c);
		return;
	}
	assert_int_equal(tk_spki_parse(x.spki, x.spki_len, &s), TK_OK);
	assert_int_equal(s.key_type, want_type);
	if (want_type == TK_KEY_ED25519 || want_type == TK_KEY_X25519) {
		/* RFC 8410: the OID alone, and the 32-byte key as it is */
		static const uint8_t ed[] = {0x06, 0x03, 0x2B, 0x65, 0x70};
		static const uint8_t xo[] = {0x06, 0x03, 0x2B, 0x65, 0x6E};
		uint8_t pub[32];
		size_t pl = sizeof(pub);

		assert_int_equal(s.bits, 255);
		assert_int_equal(s.curve_len, 5);
		assert_memory_equal(s.curve, want_type == TK_KEY_ED25519 ? ed : xo, 5);
		assert_int_equal(EVP_PKEY_get_raw_public_key(m->key, pub, &pl), 1);
		assert_int_equal(s.point_len, 32);
		assert_memory_equal(s.point, pub, 32);
		assert_null(s.n);
		X509_free(c);
		return;
	}
	assert_int_equal(s.bits, (unsigned)EVP_PKEY_get_bits(m->key));
	if (want_type == TK_KEY_RSA) {
		assert_bn(m->key, OSSL_PKEY_PARAM_RSA_N, s.n, s.n_len);
		assert_bn(m->key, OSSL_PKEY_PARAM_RSA_E, s.e, s.e_len);
		assert_null(s.curve);
	} else {
		uint8_t pt[200], *oid = NULL;
		size_t pl = 0;
		char group[64];
		int ol;

		const unsigned char *raw = NULL;
		int rl = 0;

		/* the point as the certificate has it (compressed or not) */
		assert_int_equal(
		        X509_PUBKEY_get0_param(NULL, &raw, &rl, NULL, X509_get_X509_PUBKEY(c)), 1);
		assert_int_equal(s.point_len, (size_t)rl);
		assert_memory_equal(s.point, raw, s.point_len);
		/* and it is the key's point */
		assert_int_equal(EVP_PKEY_get_octet_string_param(X509_get0_pubkey(c),
		                                                 OSSL_PKEY_PARAM_ENCODED_PUBLIC_KEY,
		                                                 pt, sizeof(pt), &pl),
		                 1);
		assert_int_equal(s.point[0] == 0x04 ? s.point_len : 2 * s.point_len - 1, pl);
		assert_memory_equal(s.point + 1, pt + 1, s.point_len - 1);
		assert_int_equal(EVP_PKEY_get_utf8_string_param(m->key, OSSL_PKEY_PARAM_GROUP_NAME,
		                                                group, sizeof(group), NULL),
		                 1);
		ol = i2d_ASN1_OBJECT(OBJ_nid2obj(OBJ_sn2nid(group)), &oid);
		assert_der(s.curve, s.curve_len, ol, oid);
		assert_null(s.n);
	}
	X509_free(c);
	/* the token layer's view: a copy of the key info, type and size */
	assert_int_equal(tk_x509_spki(m->der, (size_t)m->len, &copy, &cl, &kt, &kb), TK_OK);
	assert_int_equal(cl, x.spki_len);
	assert_memory_equal(copy, x.spki, cl);
	assert_int_equal(kt, want_type);
	assert_int_equal(kb, s.bits);
	free(copy);
	assert_int_equal(tk_spki_info(x.spki, x.spki_len, &kt, &kb), TK_OK);
	assert_int_equal(kt, want_type);
}

static EVP_PKEY *
ec_key(const char *curve, bool compressed)
{
	EVP_PKEY *k = EVP_PKEY_Q_keygen(NULL, NULL, "EC", curve);

	assert_non_null(k);
	if (compressed)
		assert_int_equal(
		        EVP_PKEY_set_utf8_string_param(
		                k, OSSL_PKEY_PARAM_EC_POINT_CONVERSION_FORMAT, "compressed"),
		        1);
	return k;
}

static void
test_like_openssl(void **state)
{
	struct {
		EVP_PKEY *key;
		int type;
		const char *serial;
		long years;
		bool exts;
	} cases[] = {
	        {EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048), TK_KEY_RSA, "01", 1, true},
	        /* odd size; a 20-byte serial with the top bit set (a 00 in front) */
	        {EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)1031), TK_KEY_RSA,
	         "80112233445566778899AABBCCDDEEFF00112233", 2, false},
	        {ec_key("P-256", false), TK_KEY_EC, "7F", 1, true},
	        /* GeneralizedTime from 2050 on */
	        {ec_key("P-384", false), TK_KEY_EC, "00FF", 40, true},
	        {ec_key("P-521", false), TK_KEY_EC, "1234", 1, false},
	        {ec_key("P-256", true), TK_KEY_EC, "42", 1, true},
	        {ec_key("P-384", true), TK_KEY_EC, "43", 1, false},
	        /* OpenPGP cards hold Ed25519 and X25519 keys */
	        {EVP_PKEY_Q_keygen(NULL, NULL, "ED25519"), TK_KEY_ED25519, "44", 1, true},
	        {EVP_PKEY_Q_keygen(NULL, NULL, "X25519"), TK_KEY_X25519, "46", 1, false},
	        /* a key no card here holds: the certificate reads, its key does not */
	        {ec_key("secp256k1", false), TK_KEY_NONE, "45", 1, false},
	        {EVP_PKEY_Q_keygen(NULL, NULL, "ED448"), TK_KEY_NONE, "46", 1, false},
	};

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		EVP_PKEY *signer;
		struct made m;

		assert_non_null(cases[i].key);
		/* an X25519 key cannot sign its own certificate: an Ed25519 key does */
		signer = EVP_PKEY_get_base_id(cases[i].key) == EVP_PKEY_X25519
		                 ? EVP_PKEY_Q_keygen(NULL, NULL, "ED25519")
		                 : NULL;
		m = make(cases[i].key, signer, cases[i].serial, cases[i].years, cases[i].exts);
		EVP_PKEY_free(signer);
		assert_like_openssl(&m, cases[i].type);
		made_free(&m);
	}
}

/* ---- broken DER ------------------------------------------------------------------- */

static struct made
p256_cert(void)
{
	return make(ec_key("P-256", false), NULL, "0101", 1, true);
}

static void
test_truncated_and_trailing(void **state)
{
	struct made m = p256_cert();
	uint8_t *buf = malloc((size_t)m.len + 1);
	tk_x509_t x;

	(void)state;
	assert_non_null(buf);
	for (int n = 0; n < m.len; n++) {
		memcpy(buf, m.der, (size_t)n);
		assert_int_not_equal(tk_x509_parse(buf, (size_t)n, &x), TK_OK);
		assert_null(x.subject); /* cleared on failure */
	}
	memcpy(buf, m.der, (size_t)m.len);
	buf[m.len] = 0x00;
	assert_int_equal(tk_x509_parse(buf, (size_t)m.len + 1, &x), TK_ERR_MALFORMED);
	assert_int_equal(tk_x509_parse(buf, (size_t)m.len, &x), TK_OK);
	free(buf);
	made_free(&m);
}

/* Offset of the first occurrence of pat in p (the test's own certificates
 * have each pattern once where it is used). */
static size_t
find(const uint8_t *p, size_t n, const uint8_t *pat, size_t pn)
{
	for (size_t i = 0; i + pn <= n; i++)
		if (memcmp(p + i, pat, pn) == 0)
			return i;
	fail_msg("pattern not found");
	return 0;
}

static void
test_broken_certificates(void **state)
{
	struct made m = p256_cert();
	size_t n = (size_t)m.len, at;
	uint8_t *b = malloc(n + 8);
	tk_x509_t x;
	static const uint8_t version[] = {0xA0, 0x03, 0x02, 0x01, 0x02};
	static const uint8_t serial[] = {0x02, 0x02, 0x01, 0x01};
	static const uint8_t utc[] = {0x17, 0x0D};

	(void)state;
	assert_non_null(b);
	/* version 4 does not exist */
	memcpy(b, m.der, n);
	b[find(b, n, version, sizeof(version)) + 4] = 0x03;
	assert_int_equal(tk_x509_parse(b, n, &x), TK_ERR_MALFORMED);
	/* a serial padded with a zero byte (02 02 00 01 for 1) */
	memcpy(b, m.der, n);
	at = find(b, n, serial, sizeof(serial));
	b[at + 2] = 0x00;
	assert_int_equal(tk_x509_parse(b, n, &x), TK_ERR_MALFORMED);
	/* an indefinite length on the outer SEQUENCE */
	memcpy(b, m.der, n);
	b[1] = 0x80;
	assert_int_not_equal(tk_x509_parse(b, n, &x), TK_OK);
	/* a long length form where the short one does: 17 0D -> 17 81 0D */
	at = find(m.der, n, utc, sizeof(utc));
	memcpy(b, m.der, at + 1);
	b[at + 1] = 0x81;
	memcpy(b + at + 2, m.der + at + 1, n - at - 1);
	assert_int_not_equal(tk_x509_parse(b, n + 1, &x), TK_OK);
	/* a time that is no moment (month 13): the certificate reads, no date */
	memcpy(b, m.der, n);
	b[at + 4] = '1';
	b[at + 5] = '3';
	assert_int_equal(tk_x509_parse(b, n, &x), TK_OK);
	assert_string_equal(x.not_before, "");
	assert_string_not_equal(x.not_after, "");
	/* the signature's unused-bits count above 7: after the TBSCertificate
	 * (30 82 hi lo at 4) and the algorithm (30 0A: ecdsa-with-SHA256) */
	memcpy(b, m.der, n);
	assert_int_equal(b[4], 0x30);
	assert_int_equal(b[5], 0x82);
	at = 8 + ((size_t)b[6] << 8 | b[7]);
	assert_int_equal(b[at], 0x30);
	assert_int_equal(b[at + 1], 0x0A);
	at += 12;
	assert_int_equal(b[at], 0x03);
	assert_int_equal(b[at + 2], 0x00);
	b[at + 2] = 0x08;
	assert_int_equal(tk_x509_parse(b, n, &x), TK_ERR_MALFORMED);
	free(b);
	made_free(&m);
}

static void
test_broken_keys(void **state)
{
	/* RSA SPKI around a modulus and exponent of our own */
	uint8_t rsa[] = {0x30, 0x1C, 0x30, 0x0D, 0x06, 0x09, 0x2A, 0x86, 0x48, 0x86,
	                 0xF7, 0x0D, 0x01, 0x01, 0x01, 0x05, 0x00, 0x03, 0x0B, 0x00,
	                 0x30, 0x08, 0x02, 0x03, 0x00, 0xC3, 0x55, 0x02, 0x01, 0x03};
	/* EC P-256 SPKI header; the point follows */
	uint8_t ec[27 + 64] = {0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2A, 0x86, 0x48,
	                       0xCE, 0x3D, 0x02, 0x01, 0x06, 0x08, 0x2A, 0x86, 0x48,
	                       0xCE, 0x3D, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00, 0x04};
	tk_spki_t s;

	(void)state;
	assert_int_equal(tk_spki_parse(rsa, sizeof(rsa), &s), TK_OK);
	assert_int_equal(s.key_type, TK_KEY_RSA);
	assert_int_equal(s.bits, 16);
	assert_int_equal(s.n_len, 2);
	assert_int_equal(s.e_len, 1);
	/* negative modulus */
	rsa[24] = 0xC3;
	rsa[25] = 0x55;
	rsa[26] = 0x55;
	assert_int_equal(tk_spki_parse(rsa, sizeof(rsa), &s), TK_ERR_MALFORMED);
	rsa[24] = 0x00;
	rsa[25] = 0xC3;
	/* unused bits in the key's BIT STRING */
	rsa[19] = 0x01;
	assert_int_equal(tk_spki_parse(rsa, sizeof(rsa), &s), TK_ERR_MALFORMED);
	rsa[19] = 0x00;
	/* parameters other than NULL */
	rsa[15] = 0x04;
	assert_int_equal(tk_spki_parse(rsa, sizeof(rsa), &s), TK_ERR_MALFORMED);
	rsa[15] = 0x05;
	assert_int_equal(tk_spki_parse(rsa, sizeof(rsa), &s), TK_OK);

	memset(ec + 27, 0x11, 64);
	assert_int_equal(tk_spki_parse(ec, sizeof(ec), &s), TK_OK);
	assert_int_equal(s.bits, 256);
	assert_int_equal(s.point_len, 65);
	assert_int_equal(s.curve_len, 10);
	/* a point of the wrong size for the curve */
	ec[1] = 0x58;
	ec[24] = 0x41;
	assert_int_equal(tk_spki_parse(ec, sizeof(ec) - 1, &s), TK_ERR_MALFORMED);
	ec[1] = 0x59;
	ec[24] = 0x42;
	/* a curve not in the table */
	ec[22] = 0x08;
	assert_int_equal(tk_spki_parse(ec, sizeof(ec), &s), TK_ERR_NOT_SUPPORTED);
	assert_null(s.point);
	assert_int_equal(tk_spki_parse(NULL, 0, &s), TK_ERR_INVALID_ARG);
	assert_int_equal(tk_spki_parse(ec, 0, &s), TK_ERR_TRUNCATED);

	/* Ed25519 (RFC 8410): 32 bytes of key, no parameters */
	uint8_t ed[12 + 32] = {0x30, 0x2A, 0x30, 0x05, 0x06, 0x03,
	                       0x2B, 0x65, 0x70, 0x03, 0x21, 0x00};
	uint8_t ed_params[14 + 32] = {0x30, 0x2C, 0x30, 0x07, 0x06, 0x03, 0x2B,
	                              0x65, 0x70, 0x05, 0x00, 0x03, 0x21, 0x00};

	memset(ed + 12, 0x22, 32);
	assert_int_equal(tk_spki_parse(ed, sizeof(ed), &s), TK_OK);
	assert_int_equal(s.key_type, TK_KEY_ED25519);
	assert_int_equal(s.bits, 255);
	assert_int_equal(s.point_len, 32);
	assert_ptr_equal(s.point, ed + 12);
	/* a key of another length */
	ed[1] = 0x29;
	ed[10] = 0x20;
	assert_int_equal(tk_spki_parse(ed, sizeof(ed) - 1, &s), TK_ERR_MALFORMED);
	/* parameters (RFC 8410 3: absent) */
	memset(ed_params + 14, 0x22, 32);
	assert_int_equal(tk_spki_parse(ed_params, sizeof(ed_params), &s), TK_ERR_MALFORMED);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_like_openssl),
	        cmocka_unit_test(test_truncated_and_trailing),
	        cmocka_unit_test(test_broken_certificates),
	        cmocka_unit_test(test_broken_keys),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
