/* Unit tests for the virtual card's OpenPGP applet: driven with APDUs as
 * GnuPG drives a card, answers checked against the OpenPGP card
 * specification 3.4, cryptography checked independently with OpenSSL.
 * What they attack: PIN counting and blocking, access conditions, the
 * one-signature-per-VERIFY rule, key import templates that lie about
 * their lengths or keys, the KDF-DO's PIN replacement, certificate
 * occurrences, factory reset, and state files that are cut, repeated or
 * inconsistent. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <openssl/ec.h>
#include <openssl/rsa.h>

#include <tokenkit/mem.h>

#include "pgp_fixture.h"

static uint8_t buf[8192];
static size_t blen;

static uint16_t
cmd(struct pgx *f, uint8_t ins, uint8_t p1, uint8_t p2, const void *d, size_t n)
{
	blen = 0;
	return pgx_apdu(f, ins, p1, p2, d, n, buf, sizeof(buf), &blen);
}

static struct pgx *
card(void)
{
	struct pgx *f = pgx_new(TK_VCARD_APPLET_OPENPGP);

	assert_non_null(f);
	return f;
}

/* The value of tag inside 6E (or its 73) as the card answers GET DATA 6E. */
static bool
ard_find(struct pgx *f, uint32_t tag, tk_tlv_t *out)
{
	static uint8_t ard[1024];
	tk_tlv_t t, d;

	assert_int_equal(cmd(f, 0xCA, 0x00, 0x6E, NULL, 0), 0x9000);
	memcpy(ard, buf, blen);
	assert_int_equal(tk_ber_find(ard, blen, 0x6E, &t), TK_OK);
	if (tk_ber_find(t.value, t.len, tag, out) == TK_OK)
		return true;
	return tk_ber_find(t.value, t.len, 0x73, &d) == TK_OK &&
	       tk_ber_find(d.value, d.len, tag, out) == TK_OK;
}

static void
test_select_and_data(void **state)
{
	struct pgx *f = card();
	static const uint8_t piv[] = {0xA0, 0x00, 0x00, 0x03, 0x08};
	uint8_t atr[40];
	size_t atr_len;
	tk_tlv_t t;

	(void)state;
	assert_true(ard_find(f, 0x4F, &t));
	assert_int_equal(t.len, 16);
	assert_memory_equal(t.value, "\xD2\x76\x00\x01\x24\x01\x03\x04", 8);
	assert_true(ard_find(f, 0xC0, &t));
	assert_int_equal(t.len, 10);
	assert_true((t.value[0] & 0x20) != 0); /* key import */
	assert_true((t.value[0] & 0x01) != 0); /* KDF-DO */
	assert_true(ard_find(f, 0xC1, &t));
	assert_int_equal(t.len, sizeof(pgx_rsa2048));
	assert_memory_equal(t.value, pgx_rsa2048, t.len);
	assert_true(ard_find(f, 0xC4, &t));
	assert_int_equal(t.len, 7);
	assert_memory_equal(t.value, "\x00\x7F\x7F\x7F\x03\x00\x03", 7);
	/* C4 alone (GnuPG asks for it so) is the same */
	assert_int_equal(cmd(f, 0xCA, 0x00, 0xC4, NULL, 0), 0x9000);
	assert_int_equal(blen, 7);
	assert_memory_equal(buf, "\x00\x7F\x7F\x7F\x03\x00\x03", 7);
	assert_true(ard_find(f, 0xC5, &t));
	assert_int_equal(t.len, 60);
	assert_int_equal(cmd(f, 0xCA, 0x00, 0xF9, NULL, 0), 0x9000); /* KDF off */
	assert_int_equal(blen, 3);
	assert_memory_equal(buf, "\x81\x01\x00", 3);
	assert_int_equal(cmd(f, 0xCA, 0x5F, 0x52, NULL, 0), 0x9000);
	assert_int_equal(buf[0], 0x00);
	assert_int_equal(cmd(f, 0xCA, 0x7F, 0x74, NULL, 0), 0x6A88);       /* no such DO */
	assert_int_equal(cmd(f, 0x47, 0x81, 0x00, "\xB6\x00", 2), 0x6A88); /* no key yet */
	/* an OpenPGP-only card has no PIV application and its own ATR */
	assert_int_equal(cmd(f, 0xA4, 0x04, 0x00, piv, sizeof(piv)), 0x6A82);
	atr_len = tk_vcard_atr(f->vc, atr, sizeof(atr));
	assert_int_equal(atr_len, 20);
	assert_memory_equal(atr + 9, "\x00\x31\xC5\x73\xC0\x01\xC0\x05\x90\x00", 10);
	pgx_free(f);
}

static void
test_verify_counting(void **state)
{
	struct pgx *f = card();
	tk_tlv_t t;

	(void)state;
	assert_int_equal(cmd(f, 0x20, 0x00, 0x82, "654321", 6), 0x63C2);
	assert_int_equal(cmd(f, 0x20, 0x00, 0x82, NULL, 0), 0x63C2);
	assert_true(ard_find(f, 0xC4, &t));
	assert_int_equal(t.value[4], 2);
	assert_int_equal(cmd(f, 0x20, 0x00, 0x82, "1234567", 7), 0x63C1); /* longer: wrong */
	assert_int_equal(cmd(f, 0x20, 0x00, 0x82, "123456", 6), 0x9000);
	assert_true(ard_find(f, 0xC4, &t));
	assert_int_equal(t.value[4], 3); /* a right PIN resets the counter */
	assert_int_equal(cmd(f, 0x20, 0x00, 0x82, NULL, 0), 0x9000);
	assert_int_equal(cmd(f, 0x20, 0xFF, 0x82, NULL, 0), 0x9000); /* forget */
	assert_int_equal(cmd(f, 0x20, 0x00, 0x82, NULL, 0), 0x63C3);
	assert_int_equal(cmd(f, 0x20, 0x00, 0x84, "123456", 6), 0x6A86);
	/* the admin PIN blocks after three wrong tries; then nothing needs it */
	for (int i = 2; i >= 1; i--)
		assert_int_equal(cmd(f, 0x20, 0x00, 0x83, "00000000", 8), 0x63C0 | i);
	assert_int_equal(cmd(f, 0x20, 0x00, 0x83, "00000000", 8), 0x6983);
	assert_int_equal(cmd(f, 0x20, 0x00, 0x83, "12345678", 8), 0x6983);
	assert_int_equal(cmd(f, 0xDA, 0x00, 0x5B, "X", 1), 0x6982);
	assert_int_equal(cmd(f, 0x20, 0x00, 0x83, NULL, 0), 0x6983);
	pgx_free(f);
}

static void
test_put_data(void **state)
{
	struct pgx *f = card();
	tk_tlv_t t;

	(void)state;
	assert_int_equal(cmd(f, 0x20, 0xFF, 0x83, NULL, 0), 0x9000);
	assert_int_equal(cmd(f, 0xDA, 0x00, 0x5B, "Doe<<Jane", 9), 0x6982);
	assert_int_equal(pgx_verify(f, 0x83, "12345678"), 0);
	assert_int_equal(cmd(f, 0xDA, 0x00, 0x5B, "Doe<<Jane", 9), 0x9000);
	assert_int_equal(cmd(f, 0xDA, 0x5F, 0x2D, "en", 2), 0x9000);
	assert_int_equal(cmd(f, 0xCA, 0x00, 0x65, NULL, 0), 0x9000);
	assert_int_equal(tk_ber_find(buf, blen, 0x65, &t), TK_OK);
	assert_int_equal(tk_ber_find(t.value, t.len, 0x5B, &t), TK_OK);
	assert_int_equal(t.len, 9);
	assert_memory_equal(t.value, "Doe<<Jane", 9);
	/* too long, unknown, bad attribute */
	assert_int_equal(cmd(f, 0xDA, 0x00, 0x5B, "0123456789012345678901234567890123456789", 40),
	                 0x6700);
	assert_int_equal(cmd(f, 0xDA, 0x00, 0x77, "x", 1), 0x6A88);
	assert_int_equal(cmd(f, 0xDA, 0x00, 0xC1, "\x01\x08\x00", 3), 0x6A80);
	/* ECDH is the decryption key's, EdDSA a signing key's */
	assert_int_equal(cmd(f, 0xDA, 0x00, 0xC1, pgx_x25519, sizeof(pgx_x25519)), 0x6A80);
	assert_int_equal(cmd(f, 0xDA, 0x00, 0xC2, pgx_ed25519, sizeof(pgx_ed25519)), 0x6A80);
	assert_int_equal(cmd(f, 0xDA, 0x00, 0xC2, pgx_x25519, sizeof(pgx_x25519)), 0x9000);
	assert_true(ard_find(f, 0xC2, &t));
	assert_memory_equal(t.value, pgx_x25519, sizeof(pgx_x25519));
	/* PW1 valid for several signatures */
	assert_int_equal(cmd(f, 0xDA, 0x00, 0xC4, "\x01", 1), 0x9000);
	assert_true(ard_find(f, 0xC4, &t));
	assert_int_equal(t.value[0], 1);
	pgx_free(f);
}

static void
verify_rsa_pkcs1(EVP_PKEY *pub, const uint8_t *tbs, size_t n, const uint8_t *sig, size_t sl)
{
	EVP_PKEY_CTX *c = EVP_PKEY_CTX_new(pub, NULL);

	assert_non_null(c);
	assert_int_equal(EVP_PKEY_verify_init(c), 1);
	assert_int_equal(EVP_PKEY_CTX_set_rsa_padding(c, RSA_PKCS1_PADDING), 1);
	assert_int_equal(EVP_PKEY_verify(c, sig, sl, tbs, n), 1);
	EVP_PKEY_CTX_free(c);
}

static void
verify_ecdsa_rs(EVP_PKEY *pub, const uint8_t *hash, size_t n, const uint8_t *rs, size_t fb)
{
	ECDSA_SIG *s = ECDSA_SIG_new();
	uint8_t *der = NULL;
	int dl;
	EVP_PKEY_CTX *c = EVP_PKEY_CTX_new(pub, NULL);

	ECDSA_SIG_set0(s, BN_bin2bn(rs, (int)fb, NULL), BN_bin2bn(rs + fb, (int)fb, NULL));
	dl = i2d_ECDSA_SIG(s, &der);
	assert_true(dl > 0);
	assert_int_equal(EVP_PKEY_verify_init(c), 1);
	assert_int_equal(EVP_PKEY_verify(c, der, (size_t)dl, hash, n), 1);
	EVP_PKEY_CTX_free(c);
	OPENSSL_free(der);
	ECDSA_SIG_free(s);
}

static void
verify_eddsa(EVP_PKEY *pub, const uint8_t *msg, size_t n, const uint8_t *sig, size_t sl)
{
	EVP_MD_CTX *m = EVP_MD_CTX_new();

	assert_int_equal(EVP_DigestVerifyInit(m, NULL, NULL, NULL, pub), 1);
	assert_int_equal(EVP_DigestVerify(m, sig, sl, msg, n), 1);
	EVP_MD_CTX_free(m);
}

static const uint8_t sha256_di[] = {
        0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04,
        0x02, 0x01, 0x05, 0x00, 0x04, 0x20, 1,    2,    3,    4,    5,    6,    7,
        8,    9,    10,   11,   12,   13,   14,   15,   16,   17,   18,   19,   20,
        21,   22,   23,   24,   25,   26,   27,   28,   29,   30,   31,   32};

static void
test_sign(void **state)
{
	struct pgx *f = card();
	tk_tlv_t t;

	(void)state;
	assert_int_equal(pgx_generate(f, 0, pgx_rsa2048, sizeof(pgx_rsa2048)), 0);
	assert_int_equal(pgx_generate(f, 2, pgx_ecdsa_p256, sizeof(pgx_ecdsa_p256)), 0);
	/* no PIN, no signature */
	assert_int_equal(cmd(f, 0x2A, 0x9E, 0x9A, sha256_di, sizeof(sha256_di)), 0x6982);
	assert_int_equal(pgx_verify(f, 0x81, "123456"), 0);
	assert_int_equal(cmd(f, 0x2A, 0x9E, 0x9A, sha256_di, sizeof(sha256_di)), 0x9000);
	assert_int_equal(blen, 256);
	verify_rsa_pkcs1(f->pub[0], sha256_di, sizeof(sha256_di), buf, blen);
	/* PW1 status 00: one signature per VERIFY */
	assert_int_equal(cmd(f, 0x2A, 0x9E, 0x9A, sha256_di, sizeof(sha256_di)), 0x6982);
	assert_int_equal(cmd(f, 0xCA, 0x00, 0x7A, NULL, 0), 0x9000);
	assert_int_equal(tk_ber_find(buf, blen, 0x7A, &t), TK_OK);
	assert_int_equal(tk_ber_find(t.value, t.len, 0x93, &t), TK_OK);
	assert_memory_equal(t.value, "\x00\x00\x01", 3);
	/* INTERNAL AUTHENTICATE with the P-256 key: r||s over the hash */
	assert_int_equal(cmd(f, 0x88, 0x00, 0x00, sha256_di + 19, 32), 0x6982);
	assert_int_equal(pgx_verify(f, 0x82, "123456"), 0);
	assert_int_equal(cmd(f, 0x88, 0x00, 0x00, sha256_di + 19, 32), 0x9000);
	assert_int_equal(blen, 64);
	verify_ecdsa_rs(f->pub[2], sha256_di + 19, 32, buf, 32);
	/* an RSA DigestInfo too long for PKCS#1 in the modulus */
	assert_int_equal(pgx_verify(f, 0x81, "123456"), 0);
	memset(buf, 1, 250);
	assert_int_equal(cmd(f, 0x2A, 0x9E, 0x9A, buf, 250), 0x6700);
	/* a new signature key starts the counter again */
	assert_int_equal(pgx_generate(f, 0, pgx_ed25519, sizeof(pgx_ed25519)), 0);
	assert_int_equal(pgx_verify(f, 0x81, "123456"), 0);
	assert_int_equal(cmd(f, 0x2A, 0x9E, 0x9A, "message", 7), 0x9000);
	assert_int_equal(blen, 64);
	verify_eddsa(f->pub[0], (const uint8_t *)"message", 7, buf, blen);
	assert_int_equal(cmd(f, 0xCA, 0x00, 0x93, NULL, 0), 0x9000);
	assert_memory_equal(buf, "\x00\x00\x01", 3);
	pgx_free(f);
}

/* The cipher DO around a peer point. */
static size_t
cipher_do(const uint8_t *pt, size_t n, uint8_t *out)
{
	size_t i = 0;

	out[i++] = 0xA6;
	out[i++] = (uint8_t)(n + 5);
	out[i++] = 0x7F;
	out[i++] = 0x49;
	out[i++] = (uint8_t)(n + 2);
	out[i++] = 0x86;
	out[i++] = (uint8_t)n;
	memcpy(out + i, pt, n);
	return i + n;
}

static void
ecdh_check(struct pgx *f, const char *type, const char *group)
{
	EVP_PKEY *peer = group != NULL ? EVP_PKEY_Q_keygen(NULL, NULL, type, group)
	                               : EVP_PKEY_Q_keygen(NULL, NULL, type);
	uint8_t pt[133], cdo[160], want[66];
	size_t pl = sizeof(pt), wl = sizeof(want), cl;
	EVP_PKEY_CTX *c = EVP_PKEY_CTX_new(peer, NULL);

	if (group != NULL)
		assert_int_equal(EVP_PKEY_get_octet_string_param(
		                         peer, OSSL_PKEY_PARAM_ENCODED_PUBLIC_KEY, pt, pl, &pl),
		                 1);
	else
		assert_int_equal(EVP_PKEY_get_raw_public_key(peer, pt, &pl), 1);
	assert_int_equal(EVP_PKEY_derive_init(c), 1);
	assert_int_equal(EVP_PKEY_derive_set_peer(c, f->pub[1]), 1);
	assert_int_equal(EVP_PKEY_derive(c, want, &wl), 1);
	cl = cipher_do(pt, pl, cdo);
	assert_int_equal(cmd(f, 0x2A, 0x80, 0x86, cdo, cl), 0x9000);
	assert_int_equal(blen, wl);
	assert_memory_equal(buf, want, wl);
	/* a point of the wrong size */
	cl = cipher_do(pt, pl - 1, cdo);
	assert_int_equal(cmd(f, 0x2A, 0x80, 0x86, cdo, cl), 0x6A80);
	EVP_PKEY_CTX_free(c);
	EVP_PKEY_free(peer);
}

static void
test_decipher(void **state)
{
	struct pgx *f = card();
	uint8_t ct[512], in[520];
	size_t cl = sizeof(ct);
	EVP_PKEY_CTX *c;

	(void)state;
	assert_int_equal(pgx_generate(f, 1, pgx_rsa2048, sizeof(pgx_rsa2048)), 0);
	c = EVP_PKEY_CTX_new(f->pub[1], NULL);
	assert_int_equal(EVP_PKEY_encrypt_init(c), 1);
	assert_int_equal(EVP_PKEY_CTX_set_rsa_padding(c, RSA_PKCS1_PADDING), 1);
	assert_int_equal(EVP_PKEY_encrypt(c, ct, &cl, (const uint8_t *)"session key", 11), 1);
	EVP_PKEY_CTX_free(c);
	in[0] = 0x00;
	memcpy(in + 1, ct, cl);
	assert_int_equal(cmd(f, 0x2A, 0x80, 0x86, in, cl + 1), 0x6982);
	assert_int_equal(pgx_verify(f, 0x82, "123456"), 0);
	/* the 81 reference does not open the decryption key */
	assert_int_equal(cmd(f, 0x2A, 0x80, 0x86, in, cl + 1), 0x9000);
	assert_int_equal(blen, 11);
	assert_memory_equal(buf, "session key", 11);
	assert_int_equal(cmd(f, 0x2A, 0x80, 0x86, in + 1, cl), 0x6A80); /* no indicator */

	assert_int_equal(pgx_verify(f, 0x83, "12345678"), 0);
	assert_int_equal(pgx_generate(f, 1, pgx_ecdh_p256, sizeof(pgx_ecdh_p256)), 0);
	ecdh_check(f, "EC", "P-256");
	assert_int_equal(pgx_generate(f, 1, pgx_x25519, sizeof(pgx_x25519)), 0);
	ecdh_check(f, "X25519", NULL);
	pgx_free(f);
}

/* 4D { CRT, 7F48 { tags and lengths }, 5F48 { values } } (short lengths). */
static size_t
import_tmpl(uint8_t crt, const uint8_t *tags, const uint8_t *const *vals, const size_t *lens,
            size_t n, uint8_t *out)
{
	uint8_t hl[64], data[2048];
	size_t h = 0, d = 0, o = 0, inner;

	for (size_t i = 0; i < n; i++) {
		hl[h++] = tags[i];
		if (lens[i] > 127)
			hl[h++] = lens[i] > 255 ? 0x82 : 0x81;
		if (lens[i] > 255)
			hl[h++] = (uint8_t)(lens[i] >> 8);
		hl[h++] = (uint8_t)lens[i];
		memcpy(data + d, vals[i], lens[i]);
		d += lens[i];
	}
	inner = 2 + 3 + h + 3 + 2 + d;
	out[o++] = 0x4D;
	out[o++] = 0x82;
	out[o++] = (uint8_t)(inner >> 8);
	out[o++] = (uint8_t)inner;
	out[o++] = crt;
	out[o++] = 0x00;
	out[o++] = 0x7F;
	out[o++] = 0x48;
	out[o++] = (uint8_t)h;
	memcpy(out + o, hl, h);
	o += h;
	out[o++] = 0x5F;
	out[o++] = 0x48;
	out[o++] = 0x82;
	out[o++] = (uint8_t)(d >> 8);
	out[o++] = (uint8_t)d;
	memcpy(out + o, data, d);
	return o + d;
}

static size_t
bn_param(EVP_PKEY *k, const char *name, uint8_t *out)
{
	BIGNUM *bn = NULL;
	int n;

	assert_int_equal(EVP_PKEY_get_bn_param(k, name, &bn), 1);
	n = BN_bn2bin(bn, out);
	BN_clear_free(bn);
	return (size_t)n;
}

static void
test_import(void **state)
{
	struct pgx *f = card();
	EVP_PKEY *rsa = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048);
	EVP_PKEY *ec = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
	EVP_PKEY *x = EVP_PKEY_Q_keygen(NULL, NULL, "X25519");
	uint8_t e[8], p[256], q[256], dp[256], dq[256], qi[256], tmpl[2600], d[66], pt[65], raw[32],
	        be[32];
	const uint8_t *v[6];
	size_t l[6], n, dl, pl = sizeof(pt), rl = sizeof(raw);
	static const uint8_t rsa_tags[6] = {0x91, 0x92, 0x93, 0x94, 0x95, 0x96};
	tk_tlv_t t, mod;

	(void)state;
	/* RSA, standard format with the CRT values */
	l[0] = bn_param(rsa, OSSL_PKEY_PARAM_RSA_E, e);
	l[1] = bn_param(rsa, OSSL_PKEY_PARAM_RSA_FACTOR1, p);
	l[2] = bn_param(rsa, OSSL_PKEY_PARAM_RSA_FACTOR2, q);
	l[3] = bn_param(rsa, OSSL_PKEY_PARAM_RSA_COEFFICIENT1, qi);
	l[4] = bn_param(rsa, OSSL_PKEY_PARAM_RSA_EXPONENT1, dp);
	l[5] = bn_param(rsa, OSSL_PKEY_PARAM_RSA_EXPONENT2, dq);
	v[0] = e, v[1] = p, v[2] = q, v[3] = qi, v[4] = dp, v[5] = dq;
	n = import_tmpl(0xB6, rsa_tags, v, l, 6, tmpl);
	assert_int_equal(cmd(f, 0x20, 0xFF, 0x83, NULL, 0), 0x9000);
	assert_int_equal(cmd(f, 0xDB, 0x3F, 0xFF, tmpl, n), 0x6982);
	assert_int_equal(pgx_verify(f, 0x83, "12345678"), 0);
	/* CRT values of another key: refused */
	v[4] = dq, v[5] = dp;
	l[4] = bn_param(rsa, OSSL_PKEY_PARAM_RSA_EXPONENT2, dq);
	l[5] = bn_param(rsa, OSSL_PKEY_PARAM_RSA_EXPONENT1, dp);
	n = import_tmpl(0xB6, rsa_tags, v, l, 6, tmpl);
	assert_int_equal(cmd(f, 0xDB, 0x3F, 0xFF, tmpl, n), 0x6A80);
	v[4] = dp, v[5] = dq;
	l[4] = bn_param(rsa, OSSL_PKEY_PARAM_RSA_EXPONENT1, dp);
	l[5] = bn_param(rsa, OSSL_PKEY_PARAM_RSA_EXPONENT2, dq);
	n = import_tmpl(0xB6, rsa_tags, v, l, 6, tmpl);
	/* a header list that promises more than the data holds */
	tmpl[10]++;
	assert_int_equal(cmd(f, 0xDB, 0x3F, 0xFF, tmpl, n), 0x6A80);
	tmpl[10]--;
	assert_int_equal(cmd(f, 0xDB, 0x3F, 0xFF, tmpl, n), 0x9000);
	assert_int_equal(cmd(f, 0x47, 0x81, 0x00, "\xB6\x00", 2), 0x9000);
	assert_int_equal(tk_ber_find(buf, blen, 0x7F49, &t), TK_OK);
	assert_int_equal(tk_ber_find(t.value, t.len, 0x81, &mod), TK_OK);
	n = bn_param(rsa, OSSL_PKEY_PARAM_RSA_N, tmpl);
	assert_int_equal(mod.len, n);
	assert_memory_equal(mod.value, tmpl, n);
	assert_int_equal(pgx_verify(f, 0x81, "123456"), 0);
	assert_int_equal(cmd(f, 0x2A, 0x9E, 0x9A, sha256_di, sizeof(sha256_di)), 0x9000);
	verify_rsa_pkcs1(rsa, sha256_di, sizeof(sha256_di), buf, blen);

	/* P-256 with its public key (99): a wrong public key is refused */
	assert_int_equal(pgx_put(f, 0xC3, pgx_ecdsa_p256, sizeof(pgx_ecdsa_p256)), 0);
	dl = bn_param(ec, OSSL_PKEY_PARAM_PRIV_KEY, d);
	assert_int_equal(EVP_PKEY_get_octet_string_param(ec, OSSL_PKEY_PARAM_ENCODED_PUBLIC_KEY, pt,
	                                                 pl, &pl),
	                 1);
	{
		static const uint8_t tags[2] = {0x92, 0x99};

		v[0] = d, v[1] = pt, l[0] = dl, l[1] = pl;
		pt[10] ^= 1;
		n = import_tmpl(0xA4, tags, v, l, 2, tmpl);
		assert_int_equal(cmd(f, 0xDB, 0x3F, 0xFF, tmpl, n), 0x6A80);
		pt[10] ^= 1;
		n = import_tmpl(0xA4, tags, v, l, 2, tmpl);
		assert_int_equal(cmd(f, 0xDB, 0x3F, 0xFF, tmpl, n), 0x9000);
		/* the same tag twice */
		v[1] = d, l[1] = dl;
		n = import_tmpl(0xA4, (const uint8_t *)"\x92\x92", v, l, 2, tmpl);
		assert_int_equal(cmd(f, 0xDB, 0x3F, 0xFF, tmpl, n), 0x6A80);
	}
	assert_int_equal(pgx_verify(f, 0x82, "123456"), 0);
	assert_int_equal(cmd(f, 0x88, 0x00, 0x00, sha256_di + 19, 32), 0x9000);
	verify_ecdsa_rs(ec, sha256_di + 19, 32, buf, 32);

	/* X25519: OpenPGP sends the scalar big-endian */
	assert_int_equal(pgx_put(f, 0xC2, pgx_x25519, sizeof(pgx_x25519)), 0);
	assert_int_equal(EVP_PKEY_get_raw_private_key(x, raw, &rl), 1);
	for (size_t i = 0; i < 32; i++)
		be[i] = raw[31 - i];
	v[0] = be, l[0] = 32;
	n = import_tmpl(0xB8, (const uint8_t *)"\x92", v, l, 1, tmpl);
	assert_int_equal(cmd(f, 0xDB, 0x3F, 0xFF, tmpl, n), 0x9000);
	EVP_PKEY_free(f->pub[1]);
	rl = sizeof(raw);
	assert_int_equal(EVP_PKEY_get_raw_public_key(x, raw, &rl), 1);
	f->pub[1] = EVP_PKEY_new_raw_public_key(EVP_PKEY_X25519, NULL, raw, rl);
	ecdh_check(f, "X25519", NULL);
	tk_wipe(be, sizeof(be));
	EVP_PKEY_free(rsa);
	EVP_PKEY_free(ec);
	EVP_PKEY_free(x);
	pgx_free(f);
}

static void
test_change_and_reset(void **state)
{
	struct pgx *f = card();

	(void)state;
	assert_int_equal(cmd(f, 0x24, 0x00, 0x81, "123456abcdef", 12), 0x9000);
	assert_int_equal(cmd(f, 0x20, 0x00, 0x82, "123456", 6), 0x63C2);
	assert_int_equal(pgx_verify(f, 0x82, "abcdef"), 0);
	assert_int_equal(cmd(f, 0x24, 0x00, 0x81, "abcdef12345", 11), 0x6700); /* new too short */
	/* resetting code: set by the admin, then it unblocks PW1 */
	assert_int_equal(cmd(f, 0x2C, 0x00, 0x81, "rcrcrcrc654321", 14), 0x6982); /* none yet */
	assert_int_equal(pgx_put(f, 0xD3, (const uint8_t *)"rcrcrcrc", 8), 0);
	for (int i = 0; i < 3; i++)
		(void)cmd(f, 0x20, 0x00, 0x82, "000000", 6);
	assert_int_equal(cmd(f, 0x20, 0x00, 0x82, "abcdef", 6), 0x6983);
	assert_int_equal(cmd(f, 0x2C, 0x00, 0x81, "rcrcrcrX654321", 14), 0x63C2);
	assert_int_equal(cmd(f, 0x2C, 0x00, 0x81, "rcrcrcrc654321", 14), 0x9000);
	assert_int_equal(pgx_verify(f, 0x82, "654321"), 0);
	/* after PW3: P1 02 with the new PW1 alone */
	assert_int_equal(cmd(f, 0x2C, 0x02, 0x81, "112233", 6), 0x9000);
	assert_int_equal(pgx_verify(f, 0x81, "112233"), 0);
	assert_int_equal(cmd(f, 0x20, 0xFF, 0x83, NULL, 0), 0x9000);
	assert_int_equal(cmd(f, 0x2C, 0x02, 0x81, "445566", 6), 0x6982);
	pgx_free(f);
}

/* RFC 4880 iterated and salted S2K, SHA-256: the whole repeated stream in
 * one buffer (a different construction from the driver's). */
static void
s2k(const uint8_t salt[8], const char *pin, uint32_t count, uint8_t out[32])
{
	size_t pl = strlen(pin), unit = 8 + pl, total = count < unit ? unit : count;
	uint8_t *stream = malloc(total);
	unsigned int ol = 32;

	assert_non_null(stream);
	for (size_t i = 0; i < total; i++)
		stream[i] = i % unit < 8 ? salt[i % unit] : (uint8_t)pin[i % unit - 8];
	assert_int_equal(EVP_Digest(stream, total, out, &ol, EVP_sha256(), NULL), 1);
	free(stream);
}

static size_t
kdf_do(const uint8_t salt[8], uint32_t count, uint8_t *out)
{
	size_t o = 0;

	memcpy(out, "\x81\x01\x03\x82\x01\x08\x83\x04", 8);
	o = 8;
	out[o++] = (uint8_t)(count >> 24);
	out[o++] = (uint8_t)(count >> 16);
	out[o++] = (uint8_t)(count >> 8);
	out[o++] = (uint8_t)count;
	out[o++] = 0x84;
	out[o++] = 8;
	memcpy(out + o, salt, 8);
	o += 8;
	out[o++] = 0x87;
	out[o++] = 32;
	s2k(salt, "123456", count, out + o);
	o += 32;
	out[o++] = 0x88;
	out[o++] = 32;
	s2k(salt, "12345678", count, out + o);
	return o + 32;
}

static void
test_kdf(void **state)
{
	static const uint8_t salt[8] = {1, 2, 3, 4, 5, 6, 7, 8};
	struct pgx *f = card();
	uint8_t kdf[120], h[32];
	size_t n = kdf_do(salt, 65536, kdf);

	(void)state;
	assert_int_equal(n, 90);
	assert_int_equal(cmd(f, 0xDA, 0x00, 0xF9, kdf, n - 1), 0x6A80); /* cut short */
	assert_int_equal(cmd(f, 0xDA, 0x00, 0xF9, kdf, n), 0x9000);
	assert_int_equal(cmd(f, 0xCA, 0x00, 0xF9, NULL, 0), 0x9000);
	assert_int_equal(blen, n);
	assert_memory_equal(buf, kdf, n);
	/* the PINs are their hashes now: the plain PIN is wrong */
	assert_int_equal(cmd(f, 0x20, 0x00, 0x82, "123456", 6), 0x63C2);
	s2k(salt, "123456", 65536, h);
	assert_int_equal(cmd(f, 0x20, 0x00, 0x82, h, 32), 0x9000);
	s2k(salt, "12345678", 65536, h);
	assert_int_equal(cmd(f, 0x20, 0x00, 0x83, h, 32), 0x9000);
	/* KDF off again: back to the default PINs */
	assert_int_equal(cmd(f, 0xDA, 0x00, 0xF9, "\x81\x01\x00", 3), 0x9000);
	assert_int_equal(pgx_verify(f, 0x82, "123456"), 0);
	pgx_free(f);
}

static void
test_certificates(void **state)
{
	static const uint8_t sel_bad[] = {0x60, 0x04, 0x5C, 0x02, 0x7F, 0x22};
	static const uint8_t sel[] = {0x60, 0x04, 0x5C, 0x02, 0x7F, 0x21};
	struct pgx *f = card();
	char c[3][8] = {"SIGcert", "DECcert", "AUTcert"};

	(void)state;
	for (int k = 0; k < 3; k++)
		assert_int_equal(pgx_put_cert(f, k, (const uint8_t *)c[k], 7), 0);
	for (int occ = 0; occ < 3; occ++) {
		assert_int_equal(cmd(f, 0xA5, (uint8_t)occ, 0x04, sel, sizeof(sel)), 0x9000);
		assert_int_equal(cmd(f, 0xCA, 0x7F, 0x21, NULL, 0), 0x9000);
		assert_int_equal(blen, 7);
		assert_memory_equal(buf, c[2 - occ], 7); /* 0 AUT, 1 DEC, 2 SIG */
	}
	assert_int_equal(cmd(f, 0xA5, 0x03, 0x04, sel, sizeof(sel)), 0x6A86);
	assert_int_equal(cmd(f, 0xA5, 0x00, 0x04, sel_bad, sizeof(sel_bad)), 0x6A80);
	/* a reset selects the AUT certificate again */
	tk_vcard_reset(f->vc);
	assert_int_equal(pgx_select(f), 0);
	assert_int_equal(cmd(f, 0xCA, 0x7F, 0x21, NULL, 0), 0x9000);
	assert_memory_equal(buf, "AUTcert", 7);
	pgx_free(f);
}

static void
test_terminate_activate(void **state)
{
	struct pgx *f = card();

	(void)state;
	assert_int_equal(pgx_generate(f, 0, pgx_ed25519, sizeof(pgx_ed25519)), 0);
	assert_int_equal(cmd(f, 0x24, 0x00, 0x83, "12345678abcdefgh", 16), 0x9000);
	assert_int_equal(cmd(f, 0xE6, 0x00, 0x00, NULL, 0), 0x6982);
	assert_int_equal(pgx_verify(f, 0x83, "abcdefgh"), 0);
	assert_int_equal(cmd(f, 0xE6, 0x00, 0x00, NULL, 0), 0x9000);
	assert_int_equal(cmd(f, 0xA4, 0x04, 0x00, pgx_aid, PGX_AID_LEN), 0x6285);
	assert_int_equal(cmd(f, 0xCA, 0x00, 0x6E, NULL, 0), 0x6285);
	assert_int_equal(cmd(f, 0x44, 0x00, 0x00, NULL, 0), 0x9000);
	assert_int_equal(pgx_select(f), 0);
	assert_int_equal(cmd(f, 0x47, 0x81, 0x00, "\xB6\x00", 2), 0x6A88); /* key gone */
	assert_int_equal(pgx_verify(f, 0x83, "12345678"), 0);              /* default PIN */
	/* without the admin PIN, a blocked one will do */
	assert_int_equal(cmd(f, 0x20, 0xFF, 0x83, NULL, 0), 0x9000);
	for (int i = 0; i < 3; i++)
		(void)cmd(f, 0x20, 0x00, 0x83, "00000000", 8);
	assert_int_equal(cmd(f, 0xE6, 0x00, 0x00, NULL, 0), 0x9000);
	pgx_free(f);
}

/* Card state written, read back: same data objects, same keys. */
static void
test_state_roundtrip(void **state)
{
	struct pgx *f = card();
	uint8_t *st = NULL, ard[1024], *bad;
	size_t sl = 0, al;
	tk_vcard_t *c2 = NULL;

	(void)state;
	assert_int_equal(pgx_generate(f, 0, pgx_rsa2048, sizeof(pgx_rsa2048)), 0);
	assert_int_equal(pgx_generate(f, 1, pgx_x25519, sizeof(pgx_x25519)), 0);
	assert_int_equal(pgx_put(f, 0x5B, (const uint8_t *)"Doe<<J", 6), 0);
	assert_int_equal(pgx_put(f, 0xD3, (const uint8_t *)"rcrcrcrc", 8), 0);
	assert_int_equal(pgx_put_cert(f, 2, (const uint8_t *)"cert", 4), 0);
	assert_int_equal(cmd(f, 0xCA, 0x00, 0x6E, NULL, 0), 0x9000);
	memcpy(ard, buf, blen);
	al = blen;
	assert_int_equal(tk_vcard_save_mem(f->vc, &st, &sl), TK_OK);
	assert_int_equal(tk_vcard_load_mem(st, sl, &c2), TK_OK);
	tk_vcard_free(&f->vc);
	f->vc = c2;
	assert_int_equal(pgx_select(f), 0);
	assert_int_equal(cmd(f, 0xCA, 0x00, 0x6E, NULL, 0), 0x9000);
	assert_int_equal(blen, al);
	assert_memory_equal(buf, ard, al);
	assert_int_equal(pgx_verify(f, 0x81, "123456"), 0);
	assert_int_equal(cmd(f, 0x2A, 0x9E, 0x9A, sha256_di, sizeof(sha256_di)), 0x9000);
	verify_rsa_pkcs1(f->pub[0], sha256_di, sizeof(sha256_di), buf, blen);

	/* every cut of the file is refused, and so is the file without its
	 * applets record (OpenPGP records on a PIV card) */
	for (size_t cut = 8; cut < sl; cut += 97)
		assert_int_equal(tk_vcard_load_mem(st, cut, &c2), TK_ERR_MALFORMED);
	bad = malloc(sl);
	memcpy(bad, st, sl);
	for (size_t i = 8; i + 5 < sl; i++) {
		if (bad[i] == 0x07 && bad[i + 1] == 0 && bad[i + 2] == 0 && bad[i + 3] == 0 &&
		    bad[i + 4] == 1 && bad[i + 5] == TK_VCARD_APPLET_OPENPGP) {
			bad[i + 5] = TK_VCARD_APPLET_PIV;
			break;
		}
	}
	assert_int_equal(tk_vcard_load_mem(bad, sl, &c2), TK_ERR_MALFORMED);
	tk_freezero(bad, sl);
	tk_freezero(st, sl);
	pgx_free(f);
}

static void
test_both_applets(void **state)
{
	static const uint8_t piv[] = {0xA0, 0x00, 0x00, 0x03, 0x08, 0x00,
	                              0x00, 0x10, 0x00, 0x01, 0x00};
	struct pgx *f = pgx_new(TK_VCARD_APPLET_PIV | TK_VCARD_APPLET_OPENPGP);
	char path[128];
	tk_vcard_t *c2 = NULL;

	(void)state;
	assert_non_null(f);
	assert_int_equal(pgx_verify(f, 0x82, "123456"), 0);
	assert_int_equal(cmd(f, 0xA4, 0x04, 0x00, piv, sizeof(piv)), 0x9000);
	assert_int_equal(cmd(f, 0xCB, 0x3F, 0xFF, "\x5C\x03\x5F\xC1\x02", 5), 0x9000);
	/* another application selected: the OpenPGP PIN state is gone */
	assert_int_equal(pgx_select(f), 0);
	assert_int_equal(cmd(f, 0x20, 0x00, 0x82, NULL, 0), 0x63C3);
	/* a state file keeps its applets */
	snprintf(path, sizeof(path), "%s/card.state", f->dir);
	assert_int_equal(tk_vcard_open_applets(path, TK_VCARD_APPLET_OPENPGP, &c2), TK_OK);
	tk_vcard_free(&c2);
	assert_int_equal(tk_vcard_open_applets(path, TK_VCARD_APPLET_PIV, &c2), TK_ERR_CONFLICT);
	assert_int_equal(tk_vcard_open(path, &c2), TK_OK);
	tk_vcard_free(&c2);
	pgx_free(f);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_select_and_data),  cmocka_unit_test(test_verify_counting),
	        cmocka_unit_test(test_put_data),         cmocka_unit_test(test_sign),
	        cmocka_unit_test(test_decipher),         cmocka_unit_test(test_import),
	        cmocka_unit_test(test_change_and_reset), cmocka_unit_test(test_kdf),
	        cmocka_unit_test(test_certificates),     cmocka_unit_test(test_terminate_activate),
	        cmocka_unit_test(test_state_roundtrip),  cmocka_unit_test(test_both_applets),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
