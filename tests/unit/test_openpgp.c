/* Unit tests for the OpenPGP card driver: its parsers (drivers/openpgp,
 * linked as tkdrv_openpgp with the core's host services) and, through the
 * core token API, the driver as the plugin this build made
 * (<build>/plugins/driver-openpgp.so) against the in-process virtual card.
 * Every key operation is checked with OpenSSL against the public keys the
 * card gave at generation. What they attack: data objects that lie about
 * their sizes or hold unknown algorithms, the wrong PW1 reference for a
 * key, a signature key whose PIN is good for one signature, cryptograms and
 * points of the wrong size, KDF-DO PIN hashing, certificates from the
 * three occurrences (one of another key), and the cache after a key
 * changed on the card. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <openssl/ec.h>
#include <openssl/rsa.h>

#include <tokenkit/log.h>
#include <tokenkit/mem.h>

#include "driver.h"
#include "openpgp.h"
#include "pgp_fixture.h"
#include "plugin.h"
#include "x509.h"

static const uint8_t pin[] = "123456";
/* PW1 for one operation of a key that wants it each time */
static const tk_key_auth_t op_auth = {.op_pin = pin, .op_pin_len = 6};
static const uint8_t admin[] = "12345678";

static int
group_setup(void **state)
{
	(void)state;
	pgx_plugin_path();
	unsetenv("TOKENKIT_DRIVERS");
	tk_drivers_rescan();
	return pgp_set_host(tk_plugin_host()->driver) == TK_OK ? 0 : -1;
}

/* ---- parsers ------------------------------------------------------------- */

static void
test_parse_algo(void **state)
{
	static const struct {
		const uint8_t *p;
		size_t n;
		int r, type;
		unsigned bits;
	} cases[] = {
	        {pgx_rsa2048, sizeof(pgx_rsa2048), TK_OK, TK_KEY_RSA, 2048},
	        {(const uint8_t *)"\x01\x10\x00\x00\x11", 5, TK_OK, TK_KEY_RSA, 4096},
	        {(const uint8_t *)"\x01\x08\x00\x00\x20\x00\x00", 7, TK_ERR_MALFORMED, 0, 0},
	        {(const uint8_t *)"\x01\x08", 2, TK_ERR_MALFORMED, 0, 0},
	        {(const uint8_t *)"\x01\x00\x10\x00\x20", 5, TK_ERR_NOT_SUPPORTED, 0, 0},
	        {pgx_ecdsa_p256, sizeof(pgx_ecdsa_p256), TK_OK, TK_KEY_EC, 256},
	        {pgx_ecdsa_p384, sizeof(pgx_ecdsa_p384), TK_OK, TK_KEY_EC, 384},
	        {pgx_ed25519, sizeof(pgx_ed25519), TK_OK, TK_KEY_ED25519, 255},
	        {pgx_x25519, sizeof(pgx_x25519), TK_OK, TK_KEY_X25519, 255},
	        /* with the import-format byte */
	        {(const uint8_t *)"\x13\x2A\x86\x48\xCE\x3D\x03\x01\x07\xFF", 10, TK_OK, TK_KEY_EC,
	         256},
	        /* EdDSA on a NIST curve, ECDSA on Curve25519, brainpool */
	        {(const uint8_t *)"\x16\x2A\x86\x48\xCE\x3D\x03\x01\x07", 9, TK_ERR_NOT_SUPPORTED,
	         0, 0},
	        {(const uint8_t *)"\x13\x2B\x06\x01\x04\x01\x97\x55\x01\x05\x01", 11,
	         TK_ERR_NOT_SUPPORTED, 0, 0},
	        {(const uint8_t *)"\x13\x2B\x24\x03\x03\x02\x08\x01\x01\x07", 10,
	         TK_ERR_NOT_SUPPORTED, 0, 0},
	        {(const uint8_t *)"\x13", 1, TK_ERR_MALFORMED, 0, 0},
	        {(const uint8_t *)"\x13\x00", 2, TK_ERR_MALFORMED, 0, 0},
	        {(const uint8_t *)"\x42", 1, TK_ERR_NOT_SUPPORTED, 0, 0},
	        {(const uint8_t *)"", 0, TK_ERR_MALFORMED, 0, 0},
	};
	pgp_algo_t a;

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		int r = pgp_parse_algo(cases[i].p, cases[i].n, &a);

		if (r != cases[i].r)
			fail_msg("case %zu: %s, want %s", i, tk_errname(r), tk_errname(cases[i].r));
		if (r == TK_OK) {
			assert_int_equal(a.key_type, cases[i].type);
			assert_int_equal(a.bits, cases[i].bits);
		}
	}
}

static void
test_parse_ard(void **state)
{
	struct pgx *f = pgx_new(TK_VCARD_APPLET_OPENPGP);
	uint8_t ard[1024], mod[1024];
	size_t n = 0;
	pgp_ard_t a;

	(void)state;
	assert_non_null(f);
	assert_int_equal(pgx_generate(f, 2, pgx_ed25519, sizeof(pgx_ed25519)), 0);
	assert_int_equal(pgx_apdu(f, 0xCA, 0x00, 0x6E, NULL, 0, ard, sizeof(ard), &n), 0x9000);
	assert_int_equal(pgp_parse_ard(ard, n, &a), TK_OK);
	assert_int_equal(a.version, 0x0304);
	assert_int_equal(a.manufacturer, 0xFFFE);
	assert_true(a.ext_lc_le && a.chaining);
	assert_true(a.has_algo[0] && a.has_algo[2]);
	assert_int_equal(a.algo[2].key_type, TK_KEY_ED25519);
	assert_true(a.has_pw_status);
	assert_int_equal(a.pw_status[4], 3);
	assert_true(a.has_key_info);
	assert_int_equal(a.key_info[0], 0);
	assert_int_equal(a.key_info[2], 1);
	/* every cut is refused or parses to less, never read past */
	for (size_t cut = 0; cut < n; cut++)
		(void)pgp_parse_ard(ard, cut, &a);
	/* a fingerprint DO of the wrong size */
	memcpy(mod, ard, n);
	for (size_t i = 0; i + 1 < n; i++) {
		if (mod[i] == 0xC5 && mod[i + 1] == 60) {
			mod[i + 1] = 59;
			break;
		}
	}
	assert_int_equal(pgp_parse_ard(mod, n, &a), TK_ERR_MALFORMED);
	/* no AID: no identity */
	assert_int_equal(pgp_parse_ard((const uint8_t *)"\x6E\x03\xC4\x01\x00", 5, &a),
	                 TK_ERR_MALFORMED);
	assert_int_equal(pgp_parse_ard((const uint8_t *)"\x65\x00", 2, &a), TK_ERR_MALFORMED);
	pgx_free(f);
}

static void
test_parse_cardholder_kdf_pubkey(void **state)
{
	char name[40];
	pgp_kdf_t k;
	pgp_algo_t rsa = {PGP_ALGO_RSA, TK_KEY_RSA, 2048, 17},
	           ed = {PGP_ALGO_EDDSA, TK_KEY_ED25519, 255, 0};
	uint8_t *spki = NULL, tmpl[64];
	size_t sl = 0;
	int kt;
	unsigned kb;

	(void)state;
	assert_int_equal(pgp_parse_cardholder((const uint8_t *)"\x65\x0B\x5B\x09"
	                                                       "Doe<<Jane",
	                                      13, name, 40),
	                 TK_OK);
	assert_string_equal(name, "Jane Doe");
	assert_int_equal(
	        pgp_parse_cardholder((const uint8_t *)"\x65\x0B\x5B\x09Smith<A<B", 13, name, 40),
	        TK_OK);
	assert_string_equal(name, "Smith A B");
	assert_int_equal(pgp_parse_cardholder((const uint8_t *)"\x65\x00", 2, name, 40), TK_OK);
	assert_string_equal(name, "");
	assert_int_equal(pgp_parse_cardholder((const uint8_t *)"\x65\x05\x5B\x09"
	                                                       "Do",
	                                      7, name, 40),
	                 TK_ERR_TRUNCATED);
	assert_int_equal(pgp_parse_cardholder((const uint8_t *)"\x65\x0B\x5B\x09\x01\x02<<\x7F\xFF"
	                                                       "abc",
	                                      13, name, 5),
	                 TK_OK);
	assert_string_equal(name, "??ab"); /* cut to the buffer, never control bytes */

	assert_int_equal(pgp_parse_kdf((const uint8_t *)"\x81\x01\x00", 3, &k), TK_OK);
	assert_false(k.on);
	assert_int_equal(pgp_parse_kdf((const uint8_t *)"\x81\x01\x03", 3, &k), TK_ERR_MALFORMED);
	assert_int_equal(pgp_parse_kdf((const uint8_t *)"\x81\x01\x03\x82\x01\x08\x83\x04\x00\x01"
	                                                "\x00\x00\x84\x08\x01\x02\x03\x04\x05\x06"
	                                                "\x07\x08",
	                               22, &k),
	                 TK_OK);
	assert_true(k.on);
	assert_int_equal(k.count, 65536);
	assert_true(k.has_salt[0] && !k.has_salt[2]);
	/* a count that would make every PIN cost seconds */
	assert_int_equal(pgp_parse_kdf((const uint8_t *)"\x81\x01\x03\x82\x01\x08\x83\x04\x7F\x00"
	                                                "\x00\x00\x84\x08\x01\x02\x03\x04\x05\x06"
	                                                "\x07\x08",
	                               22, &k),
	                 TK_ERR_MALFORMED);

	/* Ed25519 template: 32 bytes, or 33 with the 40 prefix */
	memcpy(tmpl, "\x7F\x49\x22\x86\x20", 5);
	for (int i = 0; i < 32; i++)
		tmpl[5 + i] = (uint8_t)(i * 7 + 1);
	assert_int_equal(pgp_parse_pubkey(&ed, tmpl, 37, &spki, &sl), TK_OK);
	assert_int_equal(tk_spki_info(spki, sl, &kt, &kb), TK_OK);
	assert_int_equal(kt, TK_KEY_ED25519);
	free(spki);
	assert_int_equal(pgp_parse_pubkey(&ed, tmpl, 36, &spki, &sl), TK_ERR_TRUNCATED);
	assert_int_equal(pgp_parse_pubkey(&rsa, tmpl, 37, &spki, &sl), TK_ERR_MALFORMED);
	assert_null(spki);
}

/* ---- the driver through the token API ---------------------------------------- */

static tk_token_t *
open_token(struct pgx *f, bool cache, bool defer)
{
	tk_token_opts_t o;
	tk_token_t *t = NULL;

	tk_token_opts_init(&o);
	o.cache_dir = cache ? f->dir : "";
	o.defer_revalidation = defer;
	assert_int_equal(tk_token_open(f->card, &o, &t), TK_OK);
	return t;
}

static const tk_object_t *
find(tk_token_t *t, int cls, uint8_t id)
{
	const tk_object_t *objs;
	size_t n;

	assert_int_equal(tk_token_objects(t, &objs, &n), TK_OK);
	for (size_t i = 0; i < n; i++)
		if (objs[i].cls == cls && objs[i].id_len == 1 && objs[i].id[0] == id)
			return &objs[i];
	return NULL;
}

static void
spki_is(const tk_object_t *o, EVP_PKEY *want)
{
	uint8_t *der = NULL;
	int n = i2d_PUBKEY(want, &der);

	assert_non_null(o->der);
	assert_int_equal(o->der_len, (size_t)n);
	assert_memory_equal(o->der, der, (size_t)n);
	OPENSSL_free(der);
}

static const uint8_t di[] = {0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65,
                             0x03, 0x04, 0x02, 0x01, 0x05, 0x00, 0x04, 0x20, 9,    9,    9,
                             9,    9,    9,    9,    9,    9,    9,    9,    9,    9,    9,
                             9,    9,    9,    9,    9,    9,    9,    9,    9,    9,    9,
                             9,    9,    9,    9,    9,    9,    9};

/* SIG RSA-2048, DEC P-256 (ECDH), AUT Ed25519. */
static void
test_token_keys(void **state)
{
	struct pgx *f = pgx_new(TK_VCARD_APPLET_OPENPGP);
	const tk_object_t *sig, *dec, *aut;
	uint8_t out[512], pt[65], want[32];
	size_t ol = 0, pl = sizeof(pt), wl = sizeof(want);
	tk_token_info_t info;
	EVP_PKEY *peer;
	EVP_PKEY_CTX *c;
	EVP_MD_CTX *m;
	tk_token_t *t;

	(void)state;
	assert_non_null(f);
	assert_int_equal(pgx_generate(f, 0, pgx_rsa2048, sizeof(pgx_rsa2048)), 0);
	assert_int_equal(pgx_generate(f, 1, pgx_ecdh_p256, sizeof(pgx_ecdh_p256)), 0);
	assert_int_equal(pgx_generate(f, 2, pgx_ed25519, sizeof(pgx_ed25519)), 0);
	assert_int_equal(pgx_put(f, 0x5B, (const uint8_t *)"Doe<<Jane", 9), 0);
	pgx_reset(f);
	t = open_token(f, false, false);
	assert_int_equal(tk_token_info(t, &info), TK_OK);
	assert_string_equal(info.driver, "openpgp");
	assert_string_equal(info.label, "OpenPGP Jane Doe");
	assert_int_equal(strlen(info.serial), 8);
	assert_int_equal(strncmp(info.identity, "openpgp:D2760001240103", 22), 0);
	assert_int_equal(info.pin_min_len, 6);
	assert_int_equal(info.pin_max_len, 127);

	sig = find(t, TK_OBJ_PRIVKEY, 1);
	dec = find(t, TK_OBJ_PRIVKEY, 2);
	aut = find(t, TK_OBJ_PRIVKEY, 3);
	assert_non_null(sig);
	assert_non_null(dec);
	assert_non_null(aut);
	assert_string_equal(sig->label, "OpenPGP signature key");
	assert_string_equal(dec->label, "OpenPGP decryption key");
	assert_string_equal(aut->label, "OpenPGP authentication key");
	assert_int_equal(sig->key_type, TK_KEY_RSA);
	assert_int_equal(dec->key_type, TK_KEY_EC);
	assert_int_equal(aut->key_type, TK_KEY_ED25519);
	spki_is(sig, f->pub[0]);
	spki_is(dec, f->pub[1]);
	spki_is(aut, f->pub[2]);
	spki_is(find(t, TK_OBJ_PUBKEY, 3), f->pub[2]);
	assert_true(sig->always_authenticate); /* C4: PW1 for one signature */
	assert_false(aut->always_authenticate);
	assert_int_equal(sig->usage, TK_USAGE_SIGN);
	assert_int_equal(dec->usage, TK_USAGE_DERIVE);
	assert_int_equal(tk_token_key_ops(t, sig), TK_OP_BIT(TK_OP_RSA_PKCS1_SIGN));
	assert_int_equal(tk_token_key_ops(t, aut), TK_OP_BIT(TK_OP_EDDSA));
	assert_null(find(t, TK_OBJ_CERT, 1));

	/* no raw RSA on an OpenPGP card */
	assert_int_equal(tk_token_key_op(t, sig, TK_OP_RSA_RAW, out, 256, out, sizeof(out), &ol),
	                 TK_ERR_INVALID_ARG);
	assert_int_equal(tk_token_key_op(t, aut, TK_OP_EDDSA, (const uint8_t *)"m", 1, out,
	                                 sizeof(out), &ol),
	                 TK_ERR_SECURITY_STATUS);
	assert_int_equal(tk_token_login(t, TK_USER_USER, pin, 6), TK_OK);
	/* EdDSA with the authentication key (INTERNAL AUTHENTICATE) */
	assert_int_equal(tk_token_key_op(t, aut, TK_OP_EDDSA, (const uint8_t *)"message", 7, out,
	                                 sizeof(out), &ol),
	                 TK_OK);
	assert_int_equal(ol, 64);
	m = EVP_MD_CTX_new();
	assert_int_equal(EVP_DigestVerifyInit(m, NULL, NULL, NULL, f->pub[2]), 1);
	assert_int_equal(EVP_DigestVerify(m, out, ol, (const uint8_t *)"message", 7), 1);
	EVP_MD_CTX_free(m);
	/* ECDH with the decryption key */
	peer = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
	assert_int_equal(EVP_PKEY_get_octet_string_param(peer, OSSL_PKEY_PARAM_ENCODED_PUBLIC_KEY,
	                                                 pt, pl, &pl),
	                 1);
	assert_int_equal(tk_token_key_op(t, dec, TK_OP_ECDH, pt, pl, out, sizeof(out), &ol), TK_OK);
	c = EVP_PKEY_CTX_new(peer, NULL);
	assert_int_equal(EVP_PKEY_derive_init(c), 1);
	assert_int_equal(EVP_PKEY_derive_set_peer(c, f->pub[1]), 1);
	assert_int_equal(EVP_PKEY_derive(c, want, &wl), 1);
	EVP_PKEY_CTX_free(c);
	EVP_PKEY_free(peer);
	assert_int_equal(ol, wl);
	assert_memory_equal(out, want, wl);
	assert_int_equal(tk_token_key_op(t, dec, TK_OP_ECDH, pt, pl - 1, out, sizeof(out), &ol),
	                 TK_ERR_INVALID_ARG);
	/* the signature key wants PW1 (81) right before each signature */
	assert_int_equal(tk_token_key_op(t, sig, TK_OP_RSA_PKCS1_SIGN, di, sizeof(di), out,
	                                 sizeof(out), &ol),
	                 TK_ERR_SECURITY_STATUS);
	/* a context login allows nothing by itself: the PIN goes with the
	 * operation (VERIFY 81 and the signature in one transaction) */
	assert_int_equal(tk_token_login(t, TK_USER_CONTEXT, pin, 6), TK_OK);
	assert_int_equal(tk_token_key_op(t, sig, TK_OP_RSA_PKCS1_SIGN, di, sizeof(di), out,
	                                 sizeof(out), &ol),
	                 TK_ERR_SECURITY_STATUS);
	assert_int_equal(tk_token_key_op_auth(t, sig, TK_OP_RSA_PKCS1_SIGN, &op_auth, di,
	                                      sizeof(di), out, sizeof(out), &ol),
	                 TK_OK);
	assert_int_equal(ol, 256);
	c = EVP_PKEY_CTX_new(f->pub[0], NULL);
	assert_int_equal(EVP_PKEY_verify_init(c), 1);
	assert_int_equal(EVP_PKEY_CTX_set_rsa_padding(c, RSA_PKCS1_PADDING), 1);
	assert_int_equal(EVP_PKEY_verify(c, out, ol, di, sizeof(di)), 1);
	EVP_PKEY_CTX_free(c);
	assert_int_equal(tk_token_key_op(t, sig, TK_OP_RSA_PKCS1_SIGN, di, sizeof(di), out,
	                                 sizeof(out), &ol),
	                 TK_ERR_SECURITY_STATUS);
	/* logout: the card forgets (VERIFY P1=FF) */
	assert_int_equal(tk_token_logout(t), TK_OK);
	assert_int_equal(pgx_apdu(f, 0x20, 0x00, 0x82, NULL, 0, NULL, 0, NULL), 0x63C3);
	tk_token_free(&t);
	pgx_free(f);
}

/* SIG P-384, DEC RSA-2048 (decryption), AUT RSA with PW1 good for several
 * signatures; certificates in all three occurrences, one of another key. */
static void
test_token_decrypt_certs(void **state)
{
	struct pgx *f = pgx_new(TK_VCARD_APPLET_OPENPGP);
	EVP_PKEY *stray = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
	const tk_object_t *sig, *dec, *cert;
	uint8_t *der[3] = {NULL}, ct[256], out[256], h[48];
	size_t cl = sizeof(ct), ol = 0;
	EVP_PKEY_CTX *c;
	tk_token_t *t;
	int dl[3];

	(void)state;
	assert_non_null(f);
	assert_int_equal(pgx_generate(f, 0, pgx_ecdsa_p384, sizeof(pgx_ecdsa_p384)), 0);
	assert_int_equal(pgx_generate(f, 1, pgx_rsa2048, sizeof(pgx_rsa2048)), 0);
	assert_int_equal(pgx_put(f, 0xC4, (const uint8_t *)"\x01", 1), 0);
	dl[0] = pgx_make_cert(f, f->pub[0], "sig", &der[0]);
	dl[1] = pgx_make_cert(f, f->pub[1], "dec", &der[1]);
	dl[2] = pgx_make_cert(f, stray, "aut", &der[2]);
	for (int k = 0; k < 3; k++) {
		assert_true(dl[k] > 0);
		assert_int_equal(pgx_put_cert(f, k, der[k], (size_t)dl[k]), 0);
	}
	pgx_reset(f);
	t = open_token(f, false, false);
	sig = find(t, TK_OBJ_PRIVKEY, 1);
	dec = find(t, TK_OBJ_PRIVKEY, 2);
	assert_non_null(sig);
	assert_false(sig->always_authenticate); /* C4 01 */
	assert_true(sig->has_identity);
	assert_true(dec->has_identity);
	cert = find(t, TK_OBJ_CERT, 1);
	assert_non_null(cert);
	assert_int_equal(cert->der_len, (size_t)dl[0]);
	assert_memory_equal(cert->der, der[0], (size_t)dl[0]);
	assert_string_equal(cert->label, "Certificate for OpenPGP signature key");
	assert_non_null(find(t, TK_OBJ_CERT, 2));
	/* the AUT slot holds no key but a certificate of another one */
	assert_null(find(t, TK_OBJ_PRIVKEY, 3));
	cert = find(t, TK_OBJ_CERT, 0x83);
	assert_non_null(cert);
	assert_false(cert->has_identity);

	/* with PW1 for several signatures a user login is enough for both */
	assert_int_equal(tk_token_login(t, TK_USER_USER, pin, 6), TK_OK);
	memset(h, 0x5A, sizeof(h));
	assert_int_equal(tk_token_key_op(t, sig, TK_OP_ECDSA, h, sizeof(h), out, sizeof(out), &ol),
	                 TK_OK);
	assert_int_equal(ol, 96);
	assert_int_equal(tk_token_key_op(t, sig, TK_OP_ECDSA, h, sizeof(h), out, sizeof(out), &ol),
	                 TK_OK);
	c = EVP_PKEY_CTX_new(f->pub[1], NULL);
	assert_int_equal(EVP_PKEY_encrypt_init(c), 1);
	assert_int_equal(EVP_PKEY_CTX_set_rsa_padding(c, RSA_PKCS1_PADDING), 1);
	assert_int_equal(EVP_PKEY_encrypt(c, ct, &cl, (const uint8_t *)"a secret", 8), 1);
	EVP_PKEY_CTX_free(c);
	assert_int_equal(
	        tk_token_key_op(t, dec, TK_OP_RSA_PKCS1_DECRYPT, ct, cl, out, sizeof(out), &ol),
	        TK_OK);
	assert_int_equal(ol, 8);
	assert_memory_equal(out, "a secret", 8);
	ct[10] ^= 0x40;
	assert_int_not_equal(
	        tk_token_key_op(t, dec, TK_OP_RSA_PKCS1_DECRYPT, ct, cl, out, sizeof(out), &ol),
	        TK_OK);
	tk_token_free(&t);
	for (int k = 0; k < 3; k++)
		OPENSSL_free(der[k]);
	EVP_PKEY_free(stray);
	pgx_free(f);
}

/* The driver hashes PINs as the card's KDF-DO says. */
static void
test_kdf_pins(void **state)
{
	static const uint8_t salt[8] = {8, 7, 6, 5, 4, 3, 2, 1};
	struct pgx *f = pgx_new(TK_VCARD_APPLET_OPENPGP);
	pgp_kdf_t kdf = {.on = true, .hash = 0x08, .count = 1024};
	uint8_t d[96], h1[64], h3[64];
	size_t n = 0, l1, l3;
	tk_token_t *t;

	(void)state;
	assert_non_null(f);
	/* the initial hashes from the driver's own S2K; the card then accepts
	 * exactly those bytes, which test_vcard_openpgp checks against an
	 * independent S2K */
	memcpy(kdf.salt[0], salt, 8);
	kdf.has_salt[0] = true;
	assert_int_equal(pgp_pin_bytes(&kdf, 0, pin, 6, h1, &l1), TK_OK);
	assert_int_equal(pgp_pin_bytes(&kdf, 2, admin, 8, h3, &l3), TK_OK);
	assert_int_equal(l1, 32);
	memcpy(d, "\x81\x01\x03\x82\x01\x08\x83\x04\x00\x00\x04\x00\x84\x08", 14);
	n = 14;
	memcpy(d + n, salt, 8);
	n += 8;
	d[n++] = 0x87;
	d[n++] = 32;
	memcpy(d + n, h1, 32);
	n += 32;
	d[n++] = 0x88;
	d[n++] = 32;
	memcpy(d + n, h3, 32);
	n += 32;
	assert_int_equal(pgx_generate(f, 2, pgx_ed25519, sizeof(pgx_ed25519)), 0);
	assert_int_equal(pgx_put(f, 0xF9, d, n), 0);
	pgx_reset(f);
	t = open_token(f, false, false);
	assert_int_equal(tk_token_login(t, TK_USER_USER, (const uint8_t *)"654321", 6),
	                 TK_ERR_PIN_INCORRECT);
	assert_int_equal(tk_token_login(t, TK_USER_USER, pin, 6), TK_OK);
	assert_int_equal(tk_token_login(t, TK_USER_SO, admin, 8), TK_OK);
	/* the new PIN goes to the card hashed too */
	assert_int_equal(
	        tk_token_change_pin(t, TK_USER_USER, pin, 6, (const uint8_t *)"abcdefg", 7), TK_OK);
	assert_int_equal(tk_token_login(t, TK_USER_USER, (const uint8_t *)"abcdefg", 7), TK_OK);
	assert_int_equal(
	        pgx_apdu(f, 0x20, 0x00, 0x82, (const uint8_t *)"abcdefg", 7, NULL, 0, NULL),
	        0x63C2);
	tk_token_free(&t);
	pgx_free(f);
}

static void
test_pins(void **state)
{
	struct pgx *f = pgx_new(TK_VCARD_APPLET_OPENPGP);
	tk_token_info_t info;
	tk_token_t *t;

	(void)state;
	assert_non_null(f);
	assert_int_equal(pgx_generate(f, 2, pgx_ed25519, sizeof(pgx_ed25519)), 0);
	pgx_reset(f);
	t = open_token(f, false, false);
	for (int i = 2; i >= 1; i--)
		assert_int_equal(tk_token_login(t, TK_USER_USER, (const uint8_t *)"000000", 6),
		                 TK_ERR_PIN_INCORRECT);
	assert_int_equal(tk_token_refresh_pin(t), TK_OK);
	assert_int_equal(tk_token_info(t, &info), TK_OK);
	assert_int_equal(info.pin_retries, 1);
	assert_int_equal(info.puk_retries, 3);
	assert_int_equal(tk_token_login(t, TK_USER_USER, (const uint8_t *)"000000", 6),
	                 TK_ERR_PIN_LOCKED);
	/* the admin PIN unblocks */
	assert_int_equal(tk_token_unblock_pin(t, (const uint8_t *)"1234567X", 8,
	                                      (const uint8_t *)"999999", 6),
	                 TK_ERR_PIN_INCORRECT);
	assert_int_equal(tk_token_unblock_pin(t, admin, 8, (const uint8_t *)"999999", 6), TK_OK);
	assert_int_equal(tk_token_login(t, TK_USER_USER, (const uint8_t *)"999999", 6), TK_OK);
	assert_int_equal(
	        tk_token_change_pin(t, TK_USER_SO, admin, 8, (const uint8_t *)"87654321", 8),
	        TK_OK);
	assert_int_equal(tk_token_login(t, TK_USER_SO, (const uint8_t *)"87654321", 8), TK_OK);
	tk_token_free(&t);
	pgx_free(f);
}

/* Warm open: SELECT and 6E prove the card and the cache holds the rest
 * (PGX_TRACE=1 in the environment lists the APDUs);
 * a key generated meanwhile is seen by the revalidation. */
static void
test_cache(void **state)
{
	struct pgx *f = pgx_new(TK_VCARD_APPLET_OPENPGP);
	const tk_object_t *o;
	tk_token_t *t;
	unsigned cold;
	bool changed = false;

	(void)state;
	assert_non_null(f);
	assert_int_equal(pgx_generate(f, 0, pgx_ecdsa_p256, sizeof(pgx_ecdsa_p256)), 0);
	assert_int_equal(pgx_generate(f, 2, pgx_ed25519, sizeof(pgx_ed25519)), 0);
	pgx_reset(f);
	t = open_token(f, true, false);
	cold = f->count;
	tk_token_free(&t);
	pgx_count_reset(f);
	t = open_token(f, true, true);
	/* the PIV driver's SELECT (refused), then SELECT and 6E: no more */
	assert_int_equal(f->count, 3u);
	assert_true(cold > f->count);
	spki_is(find(t, TK_OBJ_PRIVKEY, 1), f->pub[0]);
	assert_int_equal(tk_token_revalidate(t, &changed), TK_OK);
	assert_false(changed);
	/* a new decryption key, behind the token's back */
	assert_int_equal(pgx_select(f), 0);
	assert_int_equal(pgx_verify(f, 0x83, "12345678"), 0);
	assert_int_equal(pgx_generate(f, 1, pgx_x25519, sizeof(pgx_x25519)), 0);
	assert_int_equal(pgx_generate(f, 0, pgx_ecdsa_p256, sizeof(pgx_ecdsa_p256)), 0);
	assert_int_equal(tk_token_revalidate(t, &changed), TK_OK);
	assert_true(changed);
	o = find(t, TK_OBJ_PRIVKEY, 2);
	assert_non_null(o);
	assert_int_equal(o->key_type, TK_KEY_X25519);
	spki_is(o, f->pub[1]);
	spki_is(find(t, TK_OBJ_PRIVKEY, 1), f->pub[0]); /* the replaced key, not the cached */
	tk_token_free(&t);
	pgx_free(f);
}

static int
be_xmit(void *ctx, const uint8_t *cmd, size_t cmd_len, uint8_t *resp, size_t resp_cap,
        size_t *resp_len, int timeout_ms)
{
	(void)timeout_ms;
	return pgx_xmit(ctx, cmd, cmd_len, resp, resp_cap, resp_len);
}

/* RSA-3072 behind a reader that takes short APDUs only: a 385-byte
 * cryptogram goes by command chaining, 384-byte answers by GET RESPONSE. */
static void
test_rsa3072_short_reader(void **state)
{
	static const tk_card_backend_t be = {.transmit = be_xmit};
	struct pgx *f = pgx_new(TK_VCARD_APPLET_OPENPGP);
	tk_card_caps_t caps = {.extended_apdu = false, .max_cmd = 261, .max_resp = 258};
	const tk_object_t *sig, *dec;
	uint8_t atr[40], out[384], ct[384];
	size_t atr_len, ol = 0, cl = sizeof(ct);
	EVP_PKEY_CTX *c;
	tk_token_t *t;

	(void)state;
	assert_non_null(f);
	assert_int_equal(pgx_generate(f, 0, pgx_rsa3072, sizeof(pgx_rsa3072)), 0);
	assert_int_equal(pgx_generate(f, 1, pgx_rsa3072, sizeof(pgx_rsa3072)), 0);
	assert_int_equal(pgx_put(f, 0xC4, (const uint8_t *)"\x01", 1), 0);
	atr_len = tk_vcard_atr(f->vc, atr, sizeof(atr));
	tk_card_unref(&f->card);
	assert_int_equal(tk_card_new_backend("short", atr, atr_len, &caps, &be, f, 0, &f->card),
	                 TK_OK);
	pgx_reset(f);
	t = open_token(f, false, false);
	sig = find(t, TK_OBJ_PRIVKEY, 1);
	dec = find(t, TK_OBJ_PRIVKEY, 2);
	assert_non_null(sig);
	assert_non_null(dec);
	assert_int_equal(sig->key_bits, 3072);
	spki_is(sig, f->pub[0]);
	assert_int_equal(tk_token_login(t, TK_USER_USER, pin, 6), TK_OK);
	assert_int_equal(tk_token_key_op(t, sig, TK_OP_RSA_PKCS1_SIGN, di, sizeof(di), out,
	                                 sizeof(out), &ol),
	                 TK_OK);
	assert_int_equal(ol, 384);
	c = EVP_PKEY_CTX_new(f->pub[0], NULL);
	assert_int_equal(EVP_PKEY_verify_init(c), 1);
	assert_int_equal(EVP_PKEY_CTX_set_rsa_padding(c, RSA_PKCS1_PADDING), 1);
	assert_int_equal(EVP_PKEY_verify(c, out, ol, di, sizeof(di)), 1);
	EVP_PKEY_CTX_free(c);
	c = EVP_PKEY_CTX_new(f->pub[1], NULL);
	assert_int_equal(EVP_PKEY_encrypt_init(c), 1);
	assert_int_equal(EVP_PKEY_CTX_set_rsa_padding(c, RSA_PKCS1_PADDING), 1);
	assert_int_equal(EVP_PKEY_encrypt(c, ct, &cl, (const uint8_t *)"through chaining", 16), 1);
	EVP_PKEY_CTX_free(c);
	assert_int_equal(cl, 384);
	assert_int_equal(
	        tk_token_key_op(t, dec, TK_OP_RSA_PKCS1_DECRYPT, ct, cl, out, sizeof(out), &ol),
	        TK_OK);
	assert_int_equal(ol, 16);
	assert_memory_equal(out, "through chaining", 16);
	tk_token_free(&t);
	pgx_free(f);
}

/* A card with both applets is the first driver's: PIV by default,
 * OpenPGP when TOKENKIT_DRIVERS says so. */
static void
test_driver_order(void **state)
{
	struct pgx *f = pgx_new(TK_VCARD_APPLET_PIV | TK_VCARD_APPLET_OPENPGP);
	tk_token_info_t info;
	tk_token_t *t;

	(void)state;
	assert_non_null(f);
	pgx_reset(f);
	t = open_token(f, false, false);
	assert_int_equal(tk_token_info(t, &info), TK_OK);
	assert_string_equal(info.driver, "piv");
	tk_token_free(&t);
	setenv("TOKENKIT_DRIVERS", "openpgp,piv", 1);
	tk_drivers_rescan();
	t = open_token(f, false, false);
	assert_int_equal(tk_token_info(t, &info), TK_OK);
	assert_string_equal(info.driver, "openpgp");
	tk_token_free(&t);
	setenv("TOKENKIT_DRIVERS", "piv", 1);
	tk_drivers_rescan();
	tk_vcard_free(&f->vc);
	assert_int_equal(tk_vcard_open_applets(NULL, TK_VCARD_APPLET_OPENPGP, &f->vc), TK_OK);
	tk_card_bump_generation(f->card);
	t = (void *)1;
	assert_int_equal(tk_token_open(f->card, NULL, &t), TK_ERR_NOT_SUPPORTED);
	assert_null(t);
	unsetenv("TOKENKIT_DRIVERS");
	tk_drivers_rescan();
	pgx_free(f);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_parse_algo),
	        cmocka_unit_test(test_parse_ard),
	        cmocka_unit_test(test_parse_cardholder_kdf_pubkey),
	        cmocka_unit_test(test_token_keys),
	        cmocka_unit_test(test_token_decrypt_certs),
	        cmocka_unit_test(test_kdf_pins),
	        cmocka_unit_test(test_pins),
	        cmocka_unit_test(test_cache),
	        cmocka_unit_test(test_rsa3072_short_reader),
	        cmocka_unit_test(test_driver_order),
	};

	tk_log_set_level(TK_LOG_WARN);
	return cmocka_run_group_tests(tests, group_setup, NULL);
}
