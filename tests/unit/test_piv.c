/* PIV driver parsers, fed with objects built here byte by byte (and keys
 * and signatures made with OpenSSL), plus edge cases of compression. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ecdsa.h>
#include <openssl/evp.h>
#include <openssl/x509.h>
#include <zlib.h>

#include <tokenkit/err.h>

#include "../../drivers/piv/piv.h"
#include "x509.h"

static void
test_apt(void **state)
{
	static const uint8_t apt[] = {0x61, 0x1F, 0x4F, 0x06, 0x00, 0x00, 0x10, 0x00, 0x01,
	                              0x00, 0x79, 0x07, 0x4F, 0x05, 0xA0, 0x00, 0x00, 0x03,
	                              0x08, 0x50, 0x04, 'T',  'e',  's',  't',  0xAC, 0x06,
	                              0x80, 0x01, 0x07, 0x80, 0x01, 0x11};
	piv_apt_t a;

	(void)state;
	assert_int_equal(piv_parse_apt(apt, sizeof(apt), &a), TK_OK);
	assert_string_equal(a.label, "Test");
	assert_int_equal(a.nalgs, 2);
	assert_int_equal(a.algs[0], 0x07);
	assert_int_equal(a.algs[1], 0x11);
	/* the last element is cut */
	assert_int_not_equal(piv_parse_apt(apt, sizeof(apt) - 1, &a), TK_OK);
	assert_int_equal(piv_parse_apt(NULL, 0, &a), TK_OK);
	assert_int_equal(piv_parse_apt((const uint8_t *)"\x62\x00", 2, &a), TK_ERR_MALFORMED);
}

/* The FASC-N of the SP 800-73 test cards: agency 9999, system 9999,
 * credential 999999. */
static const uint8_t test_fascn[25] = {0xD4, 0xE7, 0x39, 0xDA, 0x73, 0x9C, 0xED, 0x39, 0xCE,
                                       0x73, 0x9D, 0x83, 0x68, 0x58, 0x21, 0x08, 0x42, 0x10,
                                       0x84, 0x21, 0xC8, 0x42, 0x10, 0xC3, 0xEB};

static void
test_chuid(void **state)
{
	uint8_t o[128];
	size_t n = 0;
	piv_chuid_t c;
	char digits[15];

	(void)state;
	o[n++] = 0x53;
	o[n++] = 0;
	o[n++] = 0x30;
	o[n++] = 25;
	memcpy(o + n, test_fascn, 25);
	n += 25;
	o[n++] = 0x34;
	o[n++] = 16;
	for (int i = 0; i < 16; i++)
		o[n++] = (uint8_t)(0xA0 + i);
	o[n++] = 0x35;
	o[n++] = 8;
	memcpy(o + n, "20301231", 8);
	n += 8;
	memcpy(o + n, "\x3E\x00\xFE\x00", 4);
	n += 4;
	o[1] = (uint8_t)(n - 2);
	assert_int_equal(piv_parse_chuid(o, n, &c), TK_OK);
	assert_true(c.has_guid);
	assert_int_equal(c.guid[0], 0xA0);
	assert_int_equal(c.guid[15], 0xAF);
	assert_true(c.has_fascn);
	assert_memory_equal(c.fascn, test_fascn, 25);
	assert_true(c.has_expiry);
	assert_string_equal(c.expiry, "20301231");
	assert_int_equal(piv_fascn_digits(c.fascn, digits), TK_OK);
	assert_string_equal(digits, "99999999999999");

	/* an all-zero GUID is no GUID */
	memset(o + 2 + 27 + 2, 0, 16);
	assert_int_equal(piv_parse_chuid(o, n, &c), TK_OK);
	assert_false(c.has_guid);
	/* truncated */
	assert_int_not_equal(piv_parse_chuid(o, n - 5, &c), TK_OK);
	assert_int_equal(piv_parse_chuid((const uint8_t *)"\x54\x00", 2, &c), TK_ERR_MALFORMED);
	/* a FASC-N with bad parity */
	{
		uint8_t bad[25];

		memcpy(bad, test_fascn, 25);
		bad[1] ^= 0x20;
		assert_int_equal(piv_fascn_digits(bad, digits), TK_ERR_MALFORMED);
	}
}

static void
test_discovery(void **state)
{
	uint8_t o[] = {0x7E, 0x12, 0x4F, 0x0B, 0xA0, 0x00, 0x00, 0x03, 0x08, 0x00,
	               0x00, 0x10, 0x00, 0x01, 0x00, 0x5F, 0x2F, 0x02, 0x40, 0x00};
	piv_discovery_t d;

	(void)state;
	assert_int_equal(piv_parse_discovery(o, sizeof(o), &d), TK_OK);
	assert_true(d.present);
	assert_false(d.global_pin_primary);
	o[18] = 0x60;
	o[19] = 0x20;
	assert_int_equal(piv_parse_discovery(o, sizeof(o), &d), TK_OK);
	assert_true(d.global_pin_ok);
	assert_true(d.global_pin_primary);
	o[19] = 0x10;
	assert_int_equal(piv_parse_discovery(o, sizeof(o), &d), TK_OK);
	assert_true(d.global_pin_ok);
	assert_false(d.global_pin_primary);
	o[17] = 0x01; /* policy of one byte */
	o[1] = 0x11;
	assert_int_equal(piv_parse_discovery(o, sizeof(o) - 1, &d), TK_ERR_MALFORMED);
}

static void
test_key_history(void **state)
{
	uint8_t o[] = {0x53, 0x0A, 0xC1, 0x01, 0x02, 0xC2, 0x01, 0x01, 0xF3, 0x00, 0xFE, 0x00};
	piv_key_history_t kh;

	(void)state;
	assert_int_equal(piv_parse_key_history(o, sizeof(o), &kh), TK_OK);
	assert_true(kh.present);
	assert_int_equal(kh.on_card, 2);
	assert_int_equal(kh.off_card, 1);
	o[4] = 20; /* 20 + 1 > 20 retired slots */
	assert_int_equal(piv_parse_key_history(o, sizeof(o), &kh), TK_ERR_MALFORMED);
	assert_false(kh.present);
	assert_int_not_equal(piv_parse_key_history(o, 7, &kh), TK_OK);
}

static size_t
container(uint8_t *out, const uint8_t *body, size_t bl, uint8_t info)
{
	size_t n = 0, inner = 4 + bl + 3 + 2;

	out[n++] = 0x53;
	out[n++] = 0x82;
	out[n++] = (uint8_t)(inner >> 8);
	out[n++] = (uint8_t)inner;
	out[n++] = 0x70;
	out[n++] = 0x82;
	out[n++] = (uint8_t)(bl >> 8);
	out[n++] = (uint8_t)bl;
	memcpy(out + n, body, bl);
	n += bl;
	out[n++] = 0x71;
	out[n++] = 0x01;
	out[n++] = info;
	out[n++] = 0xFE;
	out[n++] = 0x00;
	return n;
}

static size_t
deflate_buf(const uint8_t *in, size_t n, uint8_t *out, size_t cap, int window)
{
	z_stream zs;

	memset(&zs, 0, sizeof(zs));
	assert_int_equal(deflateInit2(&zs, 9, Z_DEFLATED, window, 8, Z_DEFAULT_STRATEGY), Z_OK);
	zs.next_in = (Bytef *)(uintptr_t)in;
	zs.avail_in = (uInt)n;
	zs.next_out = out;
	zs.avail_out = (uInt)cap;
	assert_int_equal(deflate(&zs, Z_FINISH), Z_STREAM_END);
	deflateEnd(&zs);
	return zs.total_out;
}

static void
test_cert_object(void **state)
{
	uint8_t cert[1500], z[4096], obj[8192], *out = NULL;
	size_t zl, ol, outl = 0;

	(void)state;
	for (size_t i = 0; i < sizeof(cert); i++)
		cert[i] = (uint8_t)(i * 7 + (i >> 3));

	ol = container(obj, cert, sizeof(cert), 0x00);
	assert_int_equal(piv_parse_cert_object(obj, ol, &out, &outl), TK_OK);
	assert_int_equal(outl, sizeof(cert));
	assert_memory_equal(out, cert, outl);
	free(out);

	/* gzip, as the specification says, and zlib, as some issuers write */
	zl = deflate_buf(cert, sizeof(cert), z, sizeof(z), 15 + 16);
	ol = container(obj, z, zl, 0x01);
	assert_int_equal(piv_parse_cert_object(obj, ol, &out, &outl), TK_OK);
	assert_int_equal(outl, sizeof(cert));
	assert_memory_equal(out, cert, outl);
	free(out);
	zl = deflate_buf(cert, sizeof(cert), z, sizeof(z), 15);
	ol = container(obj, z, zl, 0x01);
	assert_int_equal(piv_parse_cert_object(obj, ol, &out, &outl), TK_OK);
	assert_memory_equal(out, cert, outl);
	free(out);

	/* compressed flag on data that is not compressed */
	ol = container(obj, cert, sizeof(cert), 0x01);
	assert_int_equal(piv_parse_cert_object(obj, ol, &out, &outl), TK_ERR_MALFORMED);
	assert_null(out);
	/* truncated stream */
	zl = deflate_buf(cert, sizeof(cert), z, sizeof(z), 15 + 16);
	ol = container(obj, z, zl / 2, 0x01);
	assert_int_equal(piv_parse_cert_object(obj, ol, &out, &outl), TK_ERR_MALFORMED);

	/* a bomb: 1 MiB of zeros in a few hundred bytes */
	{
		uint8_t *zeros = calloc(1, 1 << 20);

		assert_non_null(zeros);
		zl = deflate_buf(zeros, 1 << 20, z, sizeof(z), 15 + 16);
		free(zeros);
		assert_true(zl < 2048);
		ol = container(obj, z, zl, 0x01);
		assert_int_equal(piv_parse_cert_object(obj, ol, &out, &outl), TK_ERR_TOO_LONG);
		assert_null(out);
		assert_int_equal(outl, 0);
	}
	/* exactly at the bound is fine, one more byte is not */
	{
		uint8_t *big = calloc(1, PIV_MAX_CERT + 1);

		assert_non_null(big);
		zl = deflate_buf(big, PIV_MAX_CERT, z, sizeof(z), 15 + 16);
		assert_int_equal(piv_inflate(z, zl, PIV_MAX_CERT, &out, &outl), TK_OK);
		assert_int_equal(outl, PIV_MAX_CERT);
		free(out);
		zl = deflate_buf(big, PIV_MAX_CERT + 1, z, sizeof(z), 15 + 16);
		assert_int_equal(piv_inflate(z, zl, PIV_MAX_CERT, &out, &outl), TK_ERR_TOO_LONG);
		free(big);
	}

	/* empty container: no certificate, no error */
	assert_int_equal(piv_parse_cert_object((const uint8_t *)"\x53\x00", 2, &out, &outl), TK_OK);
	assert_null(out);
	/* lengths that run past the end */
	ol = container(obj, cert, sizeof(cert), 0x00);
	assert_int_not_equal(piv_parse_cert_object(obj, ol - 10, &out, &outl), TK_OK);
	assert_null(out);
}

/* The attestation cache record: u16 length and SPKI of the attested key,
 * then the attestation (none: the card refused). Pointers stay inside the
 * record; no SPKI, or one longer than the record, is malformed. */
static void
test_attest_record(void **state)
{
	static const uint8_t rec[] = {0x00, 0x03, 0xA1, 0xA2, 0xA3, 0x30, 0x01, 0x00};
	const uint8_t *sp, *att;
	size_t sl, al;

	(void)state;
	assert_int_equal(piv_parse_attest_record(rec, sizeof(rec), &sp, &sl, &att, &al), TK_OK);
	assert_ptr_equal(sp, rec + 2);
	assert_int_equal(sl, 3);
	assert_ptr_equal(att, rec + 5);
	assert_int_equal(al, 3);
	/* a refusal: the SPKI alone */
	assert_int_equal(piv_parse_attest_record(rec, 5, &sp, &sl, &att, &al), TK_OK);
	assert_int_equal(sl, 3);
	assert_null(att);
	assert_int_equal(al, 0);
	/* the SPKI cut short, no SPKI, no length */
	assert_int_not_equal(piv_parse_attest_record(rec, 4, &sp, &sl, &att, &al), TK_OK);
	assert_null(sp);
	assert_int_equal(sl, 0);
	assert_int_not_equal(
	        piv_parse_attest_record((const uint8_t *)"\x00\x00\x30", 3, &sp, &sl, &att, &al),
	        TK_OK);
	assert_int_not_equal(piv_parse_attest_record(rec, 1, &sp, &sl, &att, &al), TK_OK);
	assert_int_not_equal(piv_parse_attest_record(NULL, 0, &sp, &sl, &att, &al), TK_OK);
}

static void
test_metadata(void **state)
{
	EVP_PKEY *k = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
	uint8_t point[65], md[128], *want = NULL;
	size_t pl = 0, n = 0;
	int wl;
	piv_metadata_t m;

	(void)state;
	assert_int_equal(EVP_PKEY_get_octet_string_param(k, OSSL_PKEY_PARAM_ENCODED_PUBLIC_KEY,
	                                                 point, sizeof(point), &pl),
	                 1);
	memcpy(md + n, "\x01\x01\x11\x02\x02\x03\x01\x03\x01\x01\x04\x43\x86\x41", 14);
	n += 14;
	memcpy(md + n, point, 65);
	n += 65;
	assert_int_equal(piv_parse_metadata(md, n, &m), TK_OK);
	assert_int_equal(m.alg, 0x11);
	assert_int_equal(m.pin_policy, 3);
	assert_int_equal(m.touch_policy, 1);
	wl = i2d_PUBKEY(k, &want);
	assert_true(wl > 0);
	assert_int_equal(m.spki_len, (size_t)wl);
	assert_memory_equal(m.spki, want, (size_t)wl);
	piv_metadata_clear(&m);
	assert_null(m.spki);

	/* a point that is not on the curve */
	md[14 + 40] ^= 0x01;
	assert_int_equal(piv_parse_metadata(md, n, &m), TK_ERR_MALFORMED);
	/* public key without algorithm */
	assert_int_equal(piv_parse_metadata(md + 3, n - 3, &m), TK_ERR_MALFORMED);
	/* PIN retries */
	assert_int_equal(piv_parse_metadata((const uint8_t *)"\x01\x01\xFF\x06\x02\x05\x02", 7, &m),
	                 TK_OK);
	assert_true(m.has_retries);
	assert_int_equal(m.retries_total, 5);
	assert_int_equal(m.retries_left, 2);
	OPENSSL_free(want);
	EVP_PKEY_free(k);
}

static void
test_ecdsa_der(void **state)
{
	EVP_PKEY *k = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-384");
	uint8_t hash[48] = {1, 2, 3}, der[160], raw[96], want[96];
	size_t dl = sizeof(der), rl = 0;
	const unsigned char *q;
	const BIGNUM *r, *s;
	EVP_PKEY_CTX *ctx;
	ECDSA_SIG *sig;

	(void)state;
	/* many signatures, so that short and high-bit r/s both occur */
	for (int i = 0; i < 40; i++) {
		hash[5] = (uint8_t)i;
		dl = sizeof(der);
		ctx = EVP_PKEY_CTX_new(k, NULL);
		assert_int_equal(EVP_PKEY_sign_init(ctx), 1);
		assert_int_equal(EVP_PKEY_sign(ctx, der, &dl, hash, sizeof(hash)), 1);
		EVP_PKEY_CTX_free(ctx);
		q = der;
		sig = d2i_ECDSA_SIG(NULL, &q, (long)dl);
		assert_non_null(sig);
		ECDSA_SIG_get0(sig, &r, &s);
		assert_int_equal(BN_bn2binpad(r, want, 48), 48);
		assert_int_equal(BN_bn2binpad(s, want + 48, 48), 48);
		ECDSA_SIG_free(sig);
		assert_int_equal(tk_ecdsa_der_to_raw(der, dl, 48, raw, sizeof(raw), &rl), TK_OK);
		assert_int_equal(rl, 96);
		assert_memory_equal(raw, want, 96);
	}
	assert_int_equal(tk_ecdsa_der_to_raw(der, dl, 48, raw, 95, &rl), TK_ERR_BUFFER_TOO_SMALL);
	assert_int_equal(tk_ecdsa_der_to_raw(der, dl - 1, 48, raw, sizeof(raw), &rl) == TK_OK,
	                 false);
	assert_int_equal(tk_ecdsa_der_to_raw(der, dl, 32, raw, sizeof(raw), &rl) == TK_OK, false);
	/* negative integer */
	assert_int_equal(tk_ecdsa_der_to_raw((const uint8_t *)"\x30\x06\x02\x01\x80\x02\x01\x01", 8,
	                                     32, raw, sizeof(raw), &rl),
	                 TK_ERR_MALFORMED);
	assert_int_equal(tk_ecdsa_der_to_raw((const uint8_t *)"\x30\x06\x02\x01\x05\x02\x01\x01", 8,
	                                     32, raw, sizeof(raw), &rl),
	                 TK_OK);
	assert_int_equal(raw[31], 5);
	assert_int_equal(raw[63], 1);
	assert_int_equal(raw[0], 0);
	EVP_PKEY_free(k);
}

static void
test_slots(void **state)
{
	(void)state;
	assert_int_equal(piv_slot_ref(0), 0x9A);
	assert_int_equal(piv_slot_ref(3), 0x9E);
	assert_int_equal(piv_slot_ref(4), 0x82);
	assert_int_equal(piv_slot_ref(23), 0x95);
	assert_int_equal(piv_slot_ref(24), 0);
	assert_int_equal(piv_slot_cert_tag(0x9A), 0x5FC105);
	assert_int_equal(piv_slot_cert_tag(0x9C), 0x5FC10A);
	assert_int_equal(piv_slot_cert_tag(0x9D), 0x5FC10B);
	assert_int_equal(piv_slot_cert_tag(0x9E), 0x5FC101);
	assert_int_equal(piv_slot_cert_tag(0x82), 0x5FC10D);
	assert_int_equal(piv_slot_cert_tag(0x95), 0x5FC120);
	assert_int_equal(piv_slot_cert_tag(0x9B), 0);
	assert_int_equal(piv_alg_for(TK_KEY_RSA, 3072), 0x05);
	assert_int_equal(piv_alg_for(TK_KEY_RSA, 4096), 0x16);
	assert_int_equal(piv_alg_for(TK_KEY_EC, 384), 0x14);
	assert_int_equal(piv_alg_for(TK_KEY_EC, 521), 0);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_apt),           cmocka_unit_test(test_chuid),
	        cmocka_unit_test(test_discovery),     cmocka_unit_test(test_key_history),
	        cmocka_unit_test(test_cert_object),   cmocka_unit_test(test_metadata),
	        cmocka_unit_test(test_ecdsa_der),     cmocka_unit_test(test_slots),
	        cmocka_unit_test(test_attest_record),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
