/* Core token API over the PIV driver against the in-process virtual card:
 * objects, identities, PINs, key operations checked with OpenSSL, login
 * state across card resets, APDU economy, and the public-object cache. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <pthread.h>
#include <stdint.h>
#include <sys/stat.h>

#include <cmocka.h>

#include <openssl/ecdsa.h>
#include <openssl/rsa.h>

#include <tokenkit/log.h>

#include "test_piv_fixture.h"

static const uint8_t pin_ok[] = "123456";
static const uint8_t pin_bad[] = "654321";

static tk_token_t *
open_token(struct fx *f, bool cache)
{
	tk_token_t *t = fx_open(f, cache, false);

	assert_non_null(t);
	return t;
}

/* An open that takes a valid cache entry on trust (tk_token_revalidate
 * later). */
static tk_token_t *
open_deferred(struct fx *f)
{
	tk_token_t *t = fx_open(f, true, true);

	assert_non_null(t);
	return t;
}

/* What the design allows an open to send (PIV, this fixture's card: keys
 * and certificates in 9A 9C 9D 9E, no key history, Yubico commands).
 * Cold: SELECT, CHUID, serial (00 F8), discovery, key history, then per
 * main slot its certificate object, its metadata (00 F7) and the key's
 * attestation (00 F9: the keys were generated on the card), and the
 * attestation certificate (5FFF01). */
#define COLD_MAX (5u + 4u * 3u + 1u)
/* Warm with the full check: SELECT, CHUID, key history probe, one probe per
 * certificate object. */
#define WARM_CHECKED_MAX (3u + 4u)
/* Warm, deferred: SELECT and the CHUID that proves the card's identity. */
#define WARM_DEFERRED_MAX 2u

static void
card_restart(struct fx *f)
{
	tk_vcard_reset(f->vc);
	tk_card_bump_generation(f->card);
}

static void
assert_der_equal(const uint8_t *a, size_t al, const uint8_t *b, size_t bl)
{
	assert_non_null(a);
	assert_non_null(b);
	assert_int_equal(al, bl);
	assert_memory_equal(a, b, al);
}

static void
assert_spki_of(const tk_object_t *o, EVP_PKEY *k)
{
	uint8_t *der = NULL;
	int n = fx_spki(k, &der);

	assert_true(n > 0);
	assert_der_equal(o->der, o->der_len, der, (size_t)n);
	OPENSSL_free(der);
}

static EVP_PKEY *
cert_key(const tk_object_t *cert)
{
	const unsigned char *q = cert->der;
	X509 *x = d2i_X509(NULL, &q, (long)cert->der_len);
	EVP_PKEY *k;

	assert_non_null(x);
	k = X509_get_pubkey(x);
	X509_free(x);
	assert_non_null(k);
	return k;
}

/* ---- objects and identities ------------------------------------------------ */

static void
test_objects_and_identities(void **state)
{
	struct fx *f = *state;
	tk_token_t *t = open_token(f, false);
	const tk_object_t *objs, *o;
	tk_token_info_t info;
	char guid_hex[40];
	size_t n;

	assert_int_equal(tk_token_objects(t, &objs, &n), TK_OK);
	/* 4 private keys, 4 public keys, 4 certificates; 4 attestations and
	 * the device's attestation certificate (test_piv_attobj.c) */
	assert_int_equal(n, 12 + 5);

	/* 9A: P-256 identity, id 01 */
	o = fx_find(t, TK_OBJ_PRIVKEY, 0x01);
	assert_non_null(o);
	assert_string_equal(o->label, "PIV AUTH key");
	assert_int_equal(o->key_type, TK_KEY_EC);
	assert_int_equal(o->key_bits, 256);
	assert_int_equal(o->key_ref, 0x9A);
	assert_int_equal(o->usage, TK_USAGE_SIGN);
	assert_false(o->always_authenticate);
	assert_true(o->has_identity);
	assert_spki_of(o, f->pub[0]);
	o = fx_find(t, TK_OBJ_PUBKEY, 0x01);
	assert_non_null(o);
	assert_string_equal(o->label, "PIV AUTH pubkey");
	assert_spki_of(o, f->pub[0]);
	o = fx_find(t, TK_OBJ_CERT, 0x01);
	assert_non_null(o);
	assert_string_equal(o->label, "Certificate for PIV Authentication");
	assert_true(o->has_identity);
	assert_der_equal(o->der, o->der_len, f->cert[0], (size_t)f->cert_len[0]);

	/* 9C: RSA-2048, compressed certificate, always authenticate */
	o = fx_find(t, TK_OBJ_PRIVKEY, 0x02);
	assert_non_null(o);
	assert_string_equal(o->label, "SIGN key");
	assert_int_equal(o->key_type, TK_KEY_RSA);
	assert_int_equal(o->key_bits, 2048);
	assert_true(o->always_authenticate);
	assert_int_equal(o->usage, TK_USAGE_SIGN);
	assert_true(o->has_identity);
	o = fx_find(t, TK_OBJ_CERT, 0x02);
	assert_non_null(o);
	assert_string_equal(o->label, "Certificate for Digital Signature");
	assert_der_equal(o->der, o->der_len, f->cert[1], (size_t)f->cert_len[1]);

	/* 9D: key management, derive */
	o = fx_find(t, TK_OBJ_PRIVKEY, 0x03);
	assert_non_null(o);
	assert_string_equal(o->label, "KEY MAN key");
	assert_int_equal(o->usage, TK_USAGE_DERIVE);
	assert_true(o->has_identity);
	assert_non_null(fx_find(t, TK_OBJ_CERT, 0x03));

	/* 9E: the certificate is for another key: key without identity
	 * (id 04, its own public key from the card), certificate unpaired
	 * under 0x84 */
	o = fx_find(t, TK_OBJ_PRIVKEY, 0x04);
	assert_non_null(o);
	assert_string_equal(o->label, "CARD AUTH key");
	assert_int_equal(o->key_bits, 384);
	assert_false(o->has_identity);
	assert_spki_of(o, f->pub[3]);
	o = fx_find(t, TK_OBJ_PUBKEY, 0x04);
	assert_non_null(o);
	assert_false(o->has_identity);
	assert_spki_of(o, f->pub[3]);
	assert_null(fx_find(t, TK_OBJ_CERT, 0x04));
	o = fx_find(t, TK_OBJ_CERT, 0x84);
	assert_non_null(o);
	assert_false(o->has_identity);
	assert_string_equal(o->label, "Certificate for Card Authentication");
	assert_der_equal(o->der, o->der_len, f->cert[3], (size_t)f->cert_len[3]);

	/* handles are stable and resolve */
	for (size_t i = 0; i < n; i++)
		assert_ptr_equal(tk_token_object(t, objs[i].handle), &objs[i]);
	assert_null(tk_token_object(t, 0));
	assert_null(tk_token_object(t, (uint32_t)n + 1));

	/* identity from the CHUID GUID, read here independently */
	assert_int_equal(tk_token_info(t, &info), TK_OK);
	assert_string_equal(info.driver, "piv");
	{
		uint8_t sel[] = {0xA0, 0x00, 0x00, 0x03, 0x08},
		        tl[] = {0x5C, 0x03, 0x5F, 0xC1, 0x02};
		uint8_t resp[512];
		size_t rl = 0, i;

		assert_int_equal(
		        fx_apdu(f, 0, 0xA4, 0x04, 0, sel, sizeof(sel), resp, sizeof(resp), NULL),
		        0x9000);
		assert_int_equal(
		        fx_apdu(f, 0, 0xCB, 0x3F, 0xFF, tl, sizeof(tl), resp, sizeof(resp), &rl),
		        0x9000);
		for (i = 2; i + 18 <= rl; i++)
			if (resp[i] == 0x34 && resp[i + 1] == 0x10)
				break;
		assert_true(i + 18 <= rl);
		strcpy(guid_hex, "piv:");
		for (size_t k = 0; k < 16; k++)
			sprintf(guid_hex + 4 + 2 * k, "%02X", resp[i + 2 + k]);
	}
	assert_string_equal(info.identity, guid_hex);
	assert_true(strlen(info.serial) > 0);
	assert_false(info.logged_in);
	tk_token_free(&t);
	assert_null(t);
}

/* ---- PIN ------------------------------------------------------------------------- */

static void
test_login(void **state)
{
	struct fx *f = *state;
	tk_token_t *t;
	tk_token_info_t info;

	/* the open reads no PIN state; the counters are unknown until asked */
	fx_count_reset(f);
	t = open_token(f, false);
	assert_int_equal(fx_count_ins(f, 0x20), 0);
	assert_int_equal(tk_token_info(t, &info), TK_OK);
	assert_int_equal(info.pin_retries, -1);
	assert_int_equal(info.puk_retries, -1);
	/* a refused VERIFY tells the tries left for free */
	fx_count_reset(f);
	assert_int_equal(tk_token_login(t, TK_USER_USER, pin_bad, 6), TK_ERR_PIN_INCORRECT);
	assert_int_equal(f->count, 1);
	assert_int_equal(tk_token_info(t, &info), TK_OK);
	assert_int_equal(info.pin_retries, 2);
	assert_int_equal(tk_token_login(t, TK_USER_USER, pin_ok, 6), TK_OK);
	assert_int_equal(tk_token_logout(t), TK_OK);

	assert_int_equal(tk_token_refresh_pin(t), TK_OK);
	assert_int_equal(tk_token_info(t, &info), TK_OK);
	assert_int_equal(info.pin_retries, 3);
	assert_false(info.pin_locked);
	assert_int_equal(info.puk_retries, 3);

	/* reading the counter spent no try */
	assert_int_equal(tk_token_refresh_pin(t), TK_OK);
	assert_int_equal(tk_token_info(t, &info), TK_OK);
	assert_int_equal(info.pin_retries, 3);

	fx_count_reset(f);
	assert_int_equal(tk_token_login(t, TK_USER_USER, pin_bad, 6), TK_ERR_PIN_INCORRECT);
	assert_int_equal(f->count, 1); /* one VERIFY, never retried */
	assert_int_equal(fx_count_ins(f, 0x20), 1);
	assert_int_equal(tk_token_info(t, &info), TK_OK);
	assert_int_equal(info.pin_retries, 2);
	assert_false(info.logged_in);
	assert_int_equal(tk_token_refresh_pin(t), TK_OK);
	assert_int_equal(tk_token_info(t, &info), TK_OK);
	assert_int_equal(info.pin_retries, 2);

	assert_int_equal(tk_token_login(t, TK_USER_USER, pin_ok, 5), TK_ERR_INVALID_ARG);
	assert_int_equal(tk_token_login(t, TK_USER_USER, pin_ok, 6), TK_OK);
	assert_int_equal(tk_token_info(t, &info), TK_OK);
	assert_true(info.logged_in);

	/* change and change back; the PUK check (SO) and unblock */
	assert_int_equal(
	        tk_token_change_pin(t, TK_USER_USER, pin_ok, 6, (const uint8_t *)"11223344", 8),
	        TK_OK);
	assert_int_equal(tk_token_login(t, TK_USER_USER, pin_ok, 6), TK_ERR_PIN_INCORRECT);
	assert_int_equal(tk_token_login(t, TK_USER_USER, (const uint8_t *)"11223344", 8), TK_OK);
	assert_int_equal(tk_token_login(t, TK_USER_SO, (const uint8_t *)"87654321", 8),
	                 TK_ERR_PIN_INCORRECT);
	assert_int_equal(tk_token_login(t, TK_USER_SO, (const uint8_t *)"12345678", 8), TK_OK);
	for (int i = 0; i < 3; i++)
		(void)tk_token_login(t, TK_USER_USER, pin_bad, 6);
	assert_int_equal(tk_token_login(t, TK_USER_USER, pin_bad, 6), TK_ERR_PIN_LOCKED);
	assert_int_equal(tk_token_refresh_pin(t), TK_OK);
	assert_int_equal(tk_token_info(t, &info), TK_OK);
	assert_true(info.pin_locked);
	assert_int_equal(tk_token_unblock_pin(t, (const uint8_t *)"12345678", 8, pin_ok, 6), TK_OK);
	assert_int_equal(tk_token_refresh_pin(t), TK_OK);
	assert_int_equal(tk_token_info(t, &info), TK_OK);
	assert_false(info.pin_locked);
	assert_int_equal(info.pin_retries, 3);
	assert_int_equal(tk_token_login(t, TK_USER_USER, pin_ok, 6), TK_OK);

	assert_int_equal(tk_token_logout(t), TK_OK);
	assert_int_equal(tk_token_info(t, &info), TK_OK);
	assert_false(info.logged_in);
	tk_token_free(&t);
}

/* ---- key operations ------------------------------------------------------------ */

static void
sha256(const char *msg, uint8_t out[32])
{
	unsigned int l = 0;

	assert_int_equal(EVP_Digest(msg, strlen(msg), out, &l, EVP_sha256(), NULL), 1);
}

static void
verify_ecdsa(EVP_PKEY *k, const uint8_t *hash, size_t hl, const uint8_t *rs, size_t rsl)
{
	ECDSA_SIG *sig = ECDSA_SIG_new();
	unsigned char *der = NULL;
	EVP_PKEY_CTX *ctx;
	int dl;

	assert_int_equal(ECDSA_SIG_set0(sig, BN_bin2bn(rs, (int)rsl / 2, NULL),
	                                BN_bin2bn(rs + rsl / 2, (int)rsl / 2, NULL)),
	                 1);
	dl = i2d_ECDSA_SIG(sig, &der);
	assert_true(dl > 0);
	ctx = EVP_PKEY_CTX_new(k, NULL);
	assert_int_equal(EVP_PKEY_verify_init(ctx), 1);
	assert_int_equal(EVP_PKEY_verify(ctx, der, (size_t)dl, hash, hl), 1);
	EVP_PKEY_CTX_free(ctx);
	OPENSSL_free(der);
	ECDSA_SIG_free(sig);
}

static void
test_ecdsa_p256_one_apdu(void **state)
{
	struct fx *f = *state;
	tk_token_t *t = open_token(f, false);
	const tk_object_t *key = fx_find(t, TK_OBJ_PRIVKEY, 0x01);
	const tk_object_t *cert = fx_find(t, TK_OBJ_CERT, 0x01);
	uint8_t hash[32], sig[96];
	size_t sl = 0;
	EVP_PKEY *ck;

	assert_non_null(key);
	fx_count_reset(f);
	sha256("hello", hash);
	assert_int_equal(tk_token_key_op(t, key, TK_OP_ECDSA, hash, 32, sig, sizeof(sig), &sl),
	                 TK_ERR_SECURITY_STATUS);
	assert_int_equal(f->count, 0); /* refused without asking the card */
	assert_int_equal(tk_token_login(t, TK_USER_USER, pin_ok, 6), TK_OK);

	for (int i = 0; i < 3; i++) {
		fx_count_reset(f);
		assert_int_equal(
		        tk_token_key_op(t, key, TK_OP_ECDSA, hash, 32, sig, sizeof(sig), &sl),
		        TK_OK);
		/* logged in, applet selected: exactly one GENERAL AUTHENTICATE */
		assert_int_equal(f->count, 1);
		assert_int_equal(fx_count_ins(f, 0x87), 1);
		assert_int_equal(sl, 64);
		ck = cert_key(cert);
		verify_ecdsa(ck, hash, 32, sig, sl);
		EVP_PKEY_free(ck);
	}
	print_message("APDUs per P-256 signature (logged in): %u\n", f->count);

	/* a SHA-512 hash is truncated to the field size (FIPS 186-4) */
	{
		uint8_t h512[64];
		unsigned int l = 0;

		assert_int_equal(EVP_Digest("x", 1, h512, &l, EVP_sha512(), NULL), 1);
		assert_int_equal(
		        tk_token_key_op(t, key, TK_OP_ECDSA, h512, 64, sig, sizeof(sig), &sl),
		        TK_OK);
		ck = cert_key(cert);
		verify_ecdsa(ck, h512, 32, sig, sl);
		EVP_PKEY_free(ck);
	}
	/* wrong operation for the key */
	assert_int_equal(tk_token_key_op(t, key, TK_OP_RSA_RAW, hash, 32, sig, sizeof(sig), &sl),
	                 TK_ERR_INVALID_ARG);
	assert_int_equal(tk_token_key_op(t, key, TK_OP_ECDSA, hash, 32, sig, 10, &sl),
	                 TK_ERR_BUFFER_TOO_SMALL);
	tk_token_free(&t);
}

static void
test_rsa_context_login(void **state)
{
	static const uint8_t di[] = {0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01,
	                             0x65, 0x03, 0x04, 0x02, 0x01, 0x05, 0x00, 0x04, 0x20};
	struct fx *f = *state;
	tk_token_t *t = fx_tx_reader(f) == TK_OK ? open_token(f, false) : NULL;
	const tk_object_t *key = fx_find(t, TK_OBJ_PRIVKEY, 0x02);
	const tk_object_t *cert = fx_find(t, TK_OBJ_CERT, 0x02);
	uint8_t block[256], sig[256], hash[32];
	size_t sl = 0;
	EVP_PKEY *ck;
	EVP_PKEY_CTX *ctx;
	tk_token_info_t info;
	const tk_key_auth_t op_auth = {pin_ok, 6, NULL, 0};
	const tk_key_auth_t kept_auth = {NULL, 0, pin_ok, 6};
	const tk_key_auth_t bad_auth = {pin_bad, 6, NULL, 0};

	assert_non_null(key);
	/* EMSA-PKCS1-v1_5 block for SHA-256, built here */
	sha256("rsa message", hash);
	memset(block, 0xFF, sizeof(block));
	block[0] = 0x00;
	block[1] = 0x01;
	block[256 - 32 - sizeof(di) - 1] = 0x00;
	memcpy(block + 256 - 32 - sizeof(di), di, sizeof(di));
	memcpy(block + 256 - 32, hash, 32);

	assert_int_equal(tk_token_login(t, TK_USER_USER, pin_ok, 6), TK_OK);
	fx_count_reset(f);
	/* 9C wants the PIN right before each signature */
	assert_int_equal(tk_token_key_op(t, key, TK_OP_RSA_RAW, block, 256, sig, sizeof(sig), &sl),
	                 TK_ERR_SECURITY_STATUS);
	assert_int_equal(f->count, 0);
	/* a context login allows nothing by itself: the PIN goes with the
	 * operation it was given for, nobody else's (issue 8 §3) */
	assert_int_equal(tk_token_login(t, TK_USER_CONTEXT, pin_ok, 6), TK_OK);
	fx_count_reset(f);
	assert_int_equal(tk_token_key_op(t, key, TK_OP_RSA_RAW, block, 256, sig, sizeof(sig), &sl),
	                 TK_ERR_SECURITY_STATUS);
	assert_int_equal(f->count, 0);
	fx_count_reset(f);
	assert_int_equal(tk_token_key_op_auth(t, key, TK_OP_RSA_RAW, &op_auth, block, 256, sig,
	                                      sizeof(sig), &sl),
	                 TK_OK);
	assert_int_equal(sl, 256);
	/* VERIFY, then the operation, in one card transaction and nothing between */
	assert_int_equal(f->count, 2);
	assert_int_equal(f->ins[0], 0x20);
	assert_int_equal(f->ins[1], 0x87);
	assert_int_not_equal(f->tx[0], 0);
	assert_int_equal(f->tx[0], f->tx[1]);
	print_message("APDUs per RSA-2048 signature with its own PIN: %u\n", f->count);
	ck = cert_key(cert);
	ctx = EVP_PKEY_CTX_new(ck, NULL);
	assert_int_equal(EVP_PKEY_verify_init(ctx), 1);
	assert_int_equal(EVP_PKEY_CTX_set_rsa_padding(ctx, RSA_PKCS1_PADDING), 1);
	assert_int_equal(EVP_PKEY_CTX_set_signature_md(ctx, EVP_sha256()), 1);
	assert_int_equal(EVP_PKEY_verify(ctx, sig, sl, hash, 32), 1);
	EVP_PKEY_CTX_free(ctx);
	EVP_PKEY_free(ck);
	/* nothing of the PIN stays with the token */
	assert_int_equal(tk_token_key_op(t, key, TK_OP_RSA_RAW, block, 256, sig, sizeof(sig), &sl),
	                 TK_ERR_SECURITY_STATUS);
	assert_int_equal(tk_token_key_op(t, key, TK_OP_RSA_RAW, block, 255, sig, sizeof(sig), &sl),
	                 TK_ERR_SECURITY_STATUS);
	assert_int_equal(tk_token_key_op_auth(t, key, TK_OP_RSA_RAW, &op_auth, block, 255, sig,
	                                      sizeof(sig), &sl),
	                 TK_ERR_INVALID_ARG);
	/* a kept user PIN never serves a PIN-always key */
	assert_int_equal(tk_token_key_op_auth(t, key, TK_OP_RSA_RAW, &kept_auth, block, 256, sig,
	                                      sizeof(sig), &sl),
	                 TK_ERR_SECURITY_STATUS);
	/* a wrong PIN for the operation: refused, and the card's login is gone with it */
	fx_count_reset(f);
	assert_int_equal(tk_token_key_op_auth(t, key, TK_OP_RSA_RAW, &bad_auth, block, 256, sig,
	                                      sizeof(sig), &sl),
	                 TK_ERR_PIN_INCORRECT);
	assert_int_equal(fx_count_ins(f, 0x87), 0);
	assert_int_equal(tk_token_info(t, &info), TK_OK);
	assert_false(info.logged_in);
	assert_int_equal(info.pin_retries, 2);
	tk_token_free(&t);
}

static void
test_ecdh_and_p384(void **state)
{
	struct fx *f = *state;
	tk_token_t *t = open_token(f, false);
	const tk_object_t *dkey = fx_find(t, TK_OBJ_PRIVKEY, 0x03);
	const tk_object_t *ckey = fx_find(t, TK_OBJ_PRIVKEY, 0x04);
	EVP_PKEY *peer = fx_soft_key("P-256");
	uint8_t point[65], z[32], got[48], hash[48], sig[96];
	size_t pl = 0, zl = sizeof(z), gl = 0, sl = 0;
	EVP_PKEY_CTX *ctx;
	unsigned int hl = 0;

	assert_non_null(dkey);
	assert_non_null(ckey);
	assert_int_equal(EVP_PKEY_get_octet_string_param(peer, OSSL_PKEY_PARAM_ENCODED_PUBLIC_KEY,
	                                                 point, sizeof(point), &pl),
	                 1);
	assert_int_equal(pl, 65);
	ctx = EVP_PKEY_CTX_new(peer, NULL);
	assert_int_equal(EVP_PKEY_derive_init(ctx), 1);
	assert_int_equal(EVP_PKEY_derive_set_peer(ctx, f->pub[2]), 1);
	assert_int_equal(EVP_PKEY_derive(ctx, z, &zl), 1);
	EVP_PKEY_CTX_free(ctx);

	assert_int_equal(tk_token_login(t, TK_USER_USER, pin_ok, 6), TK_OK);
	assert_int_equal(tk_token_key_op(t, dkey, TK_OP_ECDSA, point, 32, got, sizeof(got), &gl),
	                 TK_ERR_INVALID_ARG); /* 9D does not sign */
	assert_int_equal(tk_token_key_op(t, dkey, TK_OP_ECDH, point, 64, got, sizeof(got), &gl),
	                 TK_ERR_INVALID_ARG);
	assert_int_equal(tk_token_key_op(t, dkey, TK_OP_ECDH, point, 65, got, sizeof(got), &gl),
	                 TK_OK);
	assert_int_equal(gl, zl);
	assert_memory_equal(got, z, zl);

	/* 9E: P-384, PIN policy never; verified against the card's key */
	assert_int_equal(tk_token_logout(t), TK_OK);
	assert_int_equal(EVP_Digest("p384", 4, hash, &hl, EVP_sha384(), NULL), 1);
	assert_int_equal(tk_token_key_op(t, ckey, TK_OP_ECDSA, hash, 48, sig, sizeof(sig), &sl),
	                 TK_OK);
	assert_int_equal(sl, 96);
	verify_ecdsa(f->pub[3], hash, 48, sig, sl);
	EVP_PKEY_free(peer);
	tk_token_free(&t);
}

/* ---- resets ------------------------------------------------------------------------ */

static void
test_reset_drops_login(void **state)
{
	struct fx *f = *state;
	tk_token_t *t = open_token(f, false);
	const tk_object_t *key = fx_find(t, TK_OBJ_PRIVKEY, 0x01);
	uint8_t hash[32], sig[64];
	tk_token_info_t info;
	size_t sl = 0;

	sha256("reset", hash);
	assert_int_equal(tk_token_login(t, TK_USER_USER, pin_ok, 6), TK_OK);
	assert_int_equal(tk_token_key_op(t, key, TK_OP_ECDSA, hash, 32, sig, sizeof(sig), &sl),
	                 TK_OK);

	tk_vcard_reset(f->vc);
	tk_card_bump_generation(f->card);
	assert_int_equal(tk_token_info(t, &info), TK_OK);
	assert_false(info.logged_in);
	fx_count_reset(f);
	assert_int_equal(tk_token_key_op(t, key, TK_OP_ECDSA, hash, 32, sig, sizeof(sig), &sl),
	                 TK_ERR_SECURITY_STATUS);
	assert_int_equal(f->count, 0);

	fx_count_reset(f);
	assert_int_equal(tk_token_login(t, TK_USER_USER, pin_ok, 6), TK_OK);
	/* the applet is selected again first, then VERIFY */
	assert_int_equal(f->count, 2);
	assert_int_equal(f->ins[0], 0xA4);
	assert_int_equal(f->ins[1], 0x20);
	fx_count_reset(f);
	assert_int_equal(tk_token_key_op(t, key, TK_OP_ECDSA, hash, 32, sig, sizeof(sig), &sl),
	                 TK_OK);
	assert_int_equal(f->count, 1);

	/* a reset the token did not hear about: the card refuses, the token
	 * learns it is logged out */
	tk_vcard_reset(f->vc);
	assert_int_equal(tk_token_key_op(t, key, TK_OP_ECDSA, hash, 32, sig, sizeof(sig), &sl) ==
	                         TK_OK,
	                 false);
	assert_int_equal(tk_token_info(t, &info), TK_OK);
	assert_false(info.logged_in);
	tk_token_free(&t);
}

/* Another program resets the card just before our VERIFY: the command is
 * refused before it reaches the card (TK_ERR_CARD_RESET), so the PIV
 * driver selects the applet again and sends it once more; no try is
 * spent twice (before: C_Login failed with CKR_DEVICE_ERROR, seen with six
 * processes and another program resetting in test_p11_login). */
static void
test_reset_before_verify(void **state)
{
	struct fx *f = *state;
	tk_token_t *t = open_token(f, false);
	tk_token_info_t info;

	fx_count_reset(f);
	f->reset_pending = true;
	assert_int_equal(tk_token_login(t, TK_USER_USER, pin_ok, 6), TK_OK);
	assert_int_equal(f->count, 2); /* SELECT, VERIFY */
	assert_int_equal(f->ins[0], 0xA4);
	assert_int_equal(f->ins[1], 0x20);
	assert_int_equal(tk_token_info(t, &info), TK_OK);
	assert_true(info.logged_in);

	/* a wrong PIN behind a reset costs one try, not two */
	assert_int_equal(tk_token_logout(t), TK_OK);
	f->reset_pending = true;
	assert_int_equal(tk_token_login(t, TK_USER_USER, pin_bad, 6), TK_ERR_PIN_INCORRECT);
	assert_int_equal(tk_token_info(t, &info), TK_OK);
	assert_int_equal(info.pin_retries, 2);
	assert_int_equal(tk_token_login(t, TK_USER_USER, pin_ok, 6), TK_OK);
	tk_token_free(&t);
}

/* Another program selects another application of the card between our
 * operations (a YubiKey's OpenPGP): the PIV driver selects PIV again and
 * sends the command once more; the PIN went with the switch, and the token
 * says so. A PIN given with the operation is verified after the SELECT. */
static void
test_other_application(void **state)
{
	static const uint8_t other_aid[] = {0xD2, 0x76, 0x00, 0x01, 0x24, 0x01};
	struct fx *f = *state;
	tk_token_t *t = fx_tx_reader(f) == TK_OK ? open_token(f, false) : NULL;
	const tk_object_t *key = fx_find(t, TK_OBJ_PRIVKEY, 0x01);
	const tk_object_t *key9c = fx_find(t, TK_OBJ_PRIVKEY, 0x02);
	const tk_key_auth_t op_auth = {pin_ok, 6, NULL, 0};
	uint8_t hash[32], sig[256], block[256];
	tk_token_info_t info;
	size_t sl = 0;

	assert_non_null(key);
	assert_non_null(key9c);
	sha256("other application", hash);
	assert_int_equal(tk_token_login(t, TK_USER_USER, pin_ok, 6), TK_OK);
	assert_int_equal(
	        fx_apdu(f, 0, 0xA4, 0x04, 0x00, other_aid, sizeof(other_aid), NULL, 0, NULL),
	        0x9000);
	fx_count_reset(f);
	assert_int_equal(tk_token_key_op(t, key, TK_OP_ECDSA, hash, 32, sig, sizeof(sig), &sl),
	                 TK_ERR_SECURITY_STATUS);
	/* GENERAL AUTHENTICATE (6D00), SELECT, GENERAL AUTHENTICATE again (6982) */
	assert_int_equal(f->count, 3);
	assert_int_equal(f->ins[0], 0x87);
	assert_int_equal(f->ins[1], 0xA4);
	assert_int_equal(f->ins[2], 0x87);
	assert_int_equal(tk_token_info(t, &info), TK_OK);
	assert_false(info.logged_in);
	assert_int_equal(tk_token_login(t, TK_USER_USER, pin_ok, 6), TK_OK);
	assert_int_equal(tk_token_key_op(t, key, TK_OP_ECDSA, hash, 32, sig, sizeof(sig), &sl),
	                 TK_OK);

	/* the PIN-always key: VERIFY (6D00), SELECT, VERIFY, operation: one
	 * transaction, and the signature is made */
	assert_int_equal(
	        fx_apdu(f, 0, 0xA4, 0x04, 0x00, other_aid, sizeof(other_aid), NULL, 0, NULL),
	        0x9000);
	memset(block, 0x5A, sizeof(block));
	block[0] = 0x00;
	fx_count_reset(f);
	assert_int_equal(tk_token_key_op_auth(t, key9c, TK_OP_RSA_RAW, &op_auth, block, 256, sig,
	                                      sizeof(sig), &sl),
	                 TK_OK);
	assert_int_equal(f->count, 4);
	assert_int_equal(f->ins[0], 0x20);
	assert_int_equal(f->ins[1], 0xA4);
	assert_int_equal(f->ins[2], 0x20);
	assert_int_equal(f->ins[3], 0x87);
	assert_int_not_equal(f->tx[0], 0);
	assert_int_equal(f->tx[3], f->tx[0]);
	tk_token_free(&t);
}

/* A PIN kept by the caller (opt-in) is verified again, with the operation,
 * when the card lost the login; only while the card's counter shows no
 * failed try, so that a PIN changed elsewhere costs one try in all. */
static void
test_kept_pin(void **state)
{
	static const uint8_t new_pin[] = "11223344";
	struct fx *f = *state;
	tk_token_t *t = fx_tx_reader(f) == TK_OK ? open_token(f, false) : NULL;
	const tk_object_t *key = fx_find(t, TK_OBJ_PRIVKEY, 0x01);
	const tk_key_auth_t kept = {NULL, 0, pin_ok, 6};
	const tk_key_auth_t kept_new = {NULL, 0, new_pin, 8};
	uint8_t hash[32], sig[64];
	tk_token_info_t info;
	size_t sl = 0;

	assert_non_null(key);
	sha256("kept", hash);
	assert_int_equal(tk_token_login(t, TK_USER_USER, pin_ok, 6), TK_OK);
	/* logged in: the kept PIN is not sent */
	fx_count_reset(f);
	assert_int_equal(
	        tk_token_key_op_auth(t, key, TK_OP_ECDSA, &kept, hash, 32, sig, sizeof(sig), &sl),
	        TK_OK);
	assert_int_equal(f->count, 1);
	/* another program logs out (VERIFY P1=FF) */
	assert_int_equal(fx_apdu(f, 0, 0x20, 0xFF, 0x80, NULL, 0, NULL, 0, NULL), 0x9000);
	fx_count_reset(f);
	assert_int_equal(
	        tk_token_key_op_auth(t, key, TK_OP_ECDSA, &kept, hash, 32, sig, sizeof(sig), &sl),
	        TK_OK);
	/* the refused operation; then empty VERIFY, VERIFY, operation, in one transaction */
	assert_int_equal(f->count, 4);
	assert_int_equal(f->ins[0], 0x87);
	assert_int_equal(f->ins[1], 0x20);
	assert_int_equal(f->ins[2], 0x20);
	assert_int_equal(f->ins[3], 0x87);
	assert_int_not_equal(f->tx[0], f->tx[1]);
	assert_int_equal(f->tx[1], f->tx[3]);
	assert_int_equal(tk_token_info(t, &info), TK_OK);
	assert_true(info.logged_in);
	/* a reset: the token knows the login is gone; the kept PIN goes first */
	tk_vcard_reset(f->vc);
	tk_card_bump_generation(f->card);
	fx_count_reset(f);
	assert_int_equal(
	        tk_token_key_op_auth(t, key, TK_OP_ECDSA, &kept, hash, 32, sig, sizeof(sig), &sl),
	        TK_OK);
	assert_int_equal(fx_count_ins(f, 0x87), 1);
	/* the PIN is changed elsewhere: the old one costs one try, once */
	assert_int_equal(tk_token_change_pin(t, TK_USER_USER, pin_ok, 6, new_pin, 8), TK_OK);
	assert_int_equal(fx_apdu(f, 0, 0x20, 0xFF, 0x80, NULL, 0, NULL, 0, NULL), 0x9000);
	assert_int_equal(
	        tk_token_key_op_auth(t, key, TK_OP_ECDSA, &kept, hash, 32, sig, sizeof(sig), &sl),
	        TK_ERR_PIN_INCORRECT);
	fx_count_reset(f);
	assert_int_equal(
	        tk_token_key_op_auth(t, key, TK_OP_ECDSA, &kept, hash, 32, sig, sizeof(sig), &sl),
	        TK_ERR_SECURITY_STATUS);
	/* only the empty VERIFY that reads the counter: no PIN sent */
	assert_int_equal(f->count, 1);
	assert_int_equal(f->ins[0], 0x20);
	assert_int_equal(tk_token_info(t, &info), TK_OK);
	assert_false(info.logged_in);
	assert_int_equal(info.pin_retries, 2);
	/* another program logs in (its own VERIFY): the card's login is back,
	 * and a kept PIN is not sent */
	assert_int_equal(fx_apdu(f, 0, 0x20, 0x00, 0x80, new_pin, 8, NULL, 0, NULL), 0x9000);
	fx_count_reset(f);
	assert_int_equal(tk_token_key_op_auth(t, key, TK_OP_ECDSA, &kept_new, hash, 32, sig,
	                                      sizeof(sig), &sl),
	                 TK_OK);
	assert_int_equal(f->count, 2);
	assert_int_equal(f->ins[0], 0x20);
	assert_int_equal(f->ins[1], 0x87);
	tk_token_free(&t);
}

/* ---- cache ---------------------------------------------------------------------------- */

static void
assert_same_objects(tk_token_t *a, tk_token_t *b)
{
	const tk_object_t *oa, *ob;
	size_t na, nb;

	assert_int_equal(tk_token_objects(a, &oa, &na), TK_OK);
	assert_int_equal(tk_token_objects(b, &ob, &nb), TK_OK);
	assert_int_equal(na, nb);
	for (size_t i = 0; i < na; i++) {
		assert_int_equal(oa[i].cls, ob[i].cls);
		assert_int_equal(oa[i].id_len, ob[i].id_len);
		assert_memory_equal(oa[i].id, ob[i].id, oa[i].id_len);
		assert_string_equal(oa[i].label, ob[i].label);
		assert_int_equal(oa[i].key_type, ob[i].key_type);
		assert_int_equal(oa[i].key_bits, ob[i].key_bits);
		assert_int_equal(oa[i].usage, ob[i].usage);
		assert_int_equal(oa[i].always_authenticate, ob[i].always_authenticate);
		assert_int_equal(oa[i].has_identity, ob[i].has_identity);
		if (oa[i].cls == TK_OBJ_CERT && oa[i].id_len == 2 && oa[i].id[0] == 0xF9) {
			/* each ATTEST issues a new certificate (serial,
			 * signature): the same key, other bytes */
			EVP_PKEY *ka = cert_key(&oa[i]), *kb = cert_key(&ob[i]);

			assert_int_equal(EVP_PKEY_eq(ka, kb), 1);
			EVP_PKEY_free(ka);
			EVP_PKEY_free(kb);
			continue;
		}
		assert_int_equal(oa[i].der_len, ob[i].der_len);
		if (oa[i].der_len > 0)
			assert_memory_equal(oa[i].der, ob[i].der, oa[i].der_len);
	}
}

static void
cache_file(struct fx *f, tk_token_t *t, char *path, size_t cap)
{
	tk_token_info_t info;
	char name[80];

	assert_int_equal(tk_token_info(t, &info), TK_OK);
	snprintf(name, sizeof(name), "%s", info.identity);
	for (char *p = name; *p; p++)
		if (*p == ':')
			*p = '_';
	snprintf(path, cap, "%s/%s.cache", f->dir, name);
}

static void
test_cache_warm_open(void **state)
{
	struct fx *f = *state;
	tk_token_t *cold, *warm, *nocache;
	unsigned n_cold, n_warm, n_none;
	size_t b_cold, b_warm;
	char path[512];
	struct stat st;

	fx_count_reset(f);
	nocache = open_token(f, false);
	n_none = f->count;

	fx_count_reset(f);
	cold = open_token(f, true);
	n_cold = f->count;
	b_cold = f->bytes;
	/* the cold open reads no PIN state and asks for no version */
	assert_int_equal(fx_count_ins(f, 0x20), 0);
	assert_int_equal(fx_count_ins(f, 0xFD), 0);
	assert_int_equal(fx_count_ins(f, 0xC0), 0); /* extended reader: one APDU per object */
	cache_file(f, cold, path, sizeof(path));
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0600);
	assert_int_equal(stat(f->dir, &st), 0);

	tk_vcard_reset(f->vc);
	tk_card_bump_generation(f->card);
	fx_count_reset(f);
	warm = open_token(f, true);
	n_warm = f->count;
	b_warm = f->bytes;
	print_message("open: no cache %u APDUs; cold %u APDUs / %zu bytes; warm (checked) %u "
	              "APDUs / %zu bytes\n",
	              n_none, n_cold, b_cold, n_warm, b_warm);
	assert_int_equal(n_none, n_cold);
	assert_true(n_cold <= COLD_MAX);
	assert_true(n_warm <= WARM_CHECKED_MAX);
	assert_true(b_warm * 4 < b_cold);
	/* no GENERAL AUTHENTICATE, no metadata, no vendor commands when warm */
	assert_int_equal(fx_count_ins(f, 0xF7), 0);
	assert_int_equal(fx_count_ins(f, 0xFD), 0);
	assert_int_equal(fx_count_ins(f, 0xF8), 0);
	assert_same_objects(cold, warm);
	assert_same_objects(nocache, warm);

	/* deferred: the identity check only, then the cached objects */
	tk_token_free(&nocache);
	card_restart(f);
	fx_count_reset(f);
	nocache = open_deferred(f);
	print_message("open: warm (deferred) %u APDUs / %zu bytes\n", f->count, f->bytes);
	assert_true(f->count <= WARM_DEFERRED_MAX);
	assert_int_equal(fx_count_ins(f, 0xA4) + fx_count_ins(f, 0xCB), f->count);
	assert_same_objects(cold, nocache);
	{
		bool changed = true;

		fx_count_reset(f);
		assert_int_equal(tk_token_revalidate(nocache, &changed), TK_OK);
		assert_false(changed);
		print_message("revalidate (nothing changed): %u APDUs\n", f->count);
		/* key history and one probe per certificate object */
		assert_true(f->count <= WARM_CHECKED_MAX - 2);
		assert_same_objects(cold, nocache);
	}

	/* and the warm token works */
	{
		const tk_object_t *key = fx_find(warm, TK_OBJ_PRIVKEY, 0x01);
		uint8_t hash[32], sig[64];
		size_t sl;
		EVP_PKEY *ck = cert_key(fx_find(warm, TK_OBJ_CERT, 0x01));

		sha256("warm", hash);
		assert_int_equal(tk_token_login(warm, TK_USER_USER, pin_ok, 6), TK_OK);
		assert_int_equal(
		        tk_token_key_op(warm, key, TK_OP_ECDSA, hash, 32, sig, sizeof(sig), &sl),
		        TK_OK);
		verify_ecdsa(ck, hash, 32, sig, sl);
		EVP_PKEY_free(ck);
	}
	tk_token_free(&cold);
	tk_token_free(&warm);
	tk_token_free(&nocache);
}

static void
test_cache_mismatch(void **state)
{
	struct fx *f = *state;
	tk_token_t *t1, *t2, *t3;
	uint8_t *newcert = NULL;
	const tk_object_t *o;
	unsigned n_cold, n_changed, n_warm;
	int nl;

	fx_count_reset(f);
	t1 = open_token(f, true);
	n_cold = f->count;

	/* re-issue 9D's certificate (same key, new serial) behind our back */
	assert_int_equal(fx_select(f), 0);
	assert_int_equal(fx_mgm_auth(f), 0);
	nl = fx_make_cert(f, f->pub[2], "re-issued", &newcert);
	assert_true(nl > 0);
	assert_int_equal(fx_put_cert(f, fx_tags[2], newcert, (size_t)nl, false), 0);
	tk_vcard_reset(f->vc);
	tk_card_bump_generation(f->card);

	fx_count_reset(f);
	t2 = open_token(f, true);
	n_changed = f->count;
	o = fx_find(t2, TK_OBJ_CERT, 0x03);
	assert_non_null(o);
	assert_der_equal(o->der, o->der_len, newcert, (size_t)nl);
	assert_true(o->has_identity);
	/* the unchanged slots still came from the cache */
	o = fx_find(t2, TK_OBJ_CERT, 0x01);
	assert_der_equal(o->der, o->der_len, f->cert[0], (size_t)f->cert_len[0]);

	/* the cache now holds the new certificate */
	tk_vcard_reset(f->vc);
	tk_card_bump_generation(f->card);
	fx_count_reset(f);
	t3 = open_token(f, true);
	n_warm = f->count;
	o = fx_find(t3, TK_OBJ_CERT, 0x03);
	assert_der_equal(o->der, o->der_len, newcert, (size_t)nl);
	assert_same_objects(t2, t3);
	print_message("cache: cold %u, after one certificate changed %u, warm %u APDUs\n", n_cold,
	              n_changed, n_warm);
	assert_true(n_warm < n_changed);
	OPENSSL_free(newcert);
	tk_token_free(&t1);
	tk_token_free(&t2);
	tk_token_free(&t3);
}

/* A deferred open publishes the cached objects; the revalidation that
 * follows finds the certificate replaced behind our back, re-reads it,
 * keeps the handles of everything else and rewrites the cache entry. */
static void
test_revalidate_replaced_cert(void **state)
{
	struct fx *f = *state;
	tk_token_t *t1, *t2, *t3;
	const tk_object_t *objs, *o, *stale_cert, *stale_key, *nobjs;
	uint32_t handles[32];
	uint8_t *newcert = NULL, hash[32], sig[64];
	size_t n, nn, sl = 0;
	bool changed = false;
	int nl;

	t1 = open_token(f, true);
	nl = fx_make_cert(f, f->pub[2], "re-issued", &newcert);
	assert_true(nl > 0);
	assert_int_equal(fx_select(f), 0);
	assert_int_equal(fx_mgm_auth(f), 0);
	assert_int_equal(fx_put_cert(f, fx_tags[2], newcert, (size_t)nl, false), 0);
	card_restart(f);

	fx_count_reset(f);
	t2 = open_deferred(f);
	assert_true(f->count <= WARM_DEFERRED_MAX);
	/* published from the cache as it was: the old certificate */
	assert_same_objects(t1, t2);
	assert_int_equal(tk_token_objects(t2, &objs, &n), TK_OK);
	assert_true(n <= 32);
	for (size_t i = 0; i < n; i++)
		handles[i] = objs[i].handle;
	stale_cert = fx_find(t2, TK_OBJ_CERT, 0x03);
	stale_key = fx_find(t2, TK_OBJ_PRIVKEY, 0x01);
	assert_non_null(stale_cert);
	assert_non_null(stale_key);
	assert_der_equal(stale_cert->der, stale_cert->der_len, f->cert[2], (size_t)f->cert_len[2]);

	fx_count_reset(f);
	assert_int_equal(tk_token_revalidate(t2, &changed), TK_OK);
	print_message("revalidate (one certificate replaced): %u APDUs\n", f->count);
	assert_true(changed);
	/* the probes, plus the certificate and its key's metadata read again */
	assert_true(f->count <= WARM_CHECKED_MAX - 2 + 2);
	o = fx_find(t2, TK_OBJ_CERT, 0x03);
	assert_non_null(o);
	assert_der_equal(o->der, o->der_len, newcert, (size_t)nl);
	assert_true(o->has_identity);
	/* a new handle for the new certificate; the old one resolves no more */
	for (size_t i = 0; i < n; i++)
		assert_int_not_equal(o->handle, handles[i]);
	assert_null(tk_token_object(t2, stale_cert->handle));
	/* everything else kept its handle */
	assert_int_equal(tk_token_objects(t2, &nobjs, &nn), TK_OK);
	assert_int_equal(nn, n);
	for (size_t i = 0; i < nn; i++) {
		const tk_object_t *old = NULL;

		for (size_t k = 0; k < n; k++)
			if (objs[k].handle == nobjs[i].handle)
				old = &objs[k];
		if (&nobjs[i] == o) {
			assert_null(old);
			continue;
		}
		assert_non_null(old);
		assert_int_equal(old->cls, nobjs[i].cls);
		assert_memory_equal(old->id, nobjs[i].id, old->id_len);
		assert_der_equal(old->der, old->der_len, nobjs[i].der, nobjs[i].der_len);
		assert_ptr_equal(tk_token_object(t2, nobjs[i].handle), &nobjs[i]);
	}
	/* pointers handed out before stay readable (the old list) */
	assert_der_equal(stale_cert->der, stale_cert->der_len, f->cert[2], (size_t)f->cert_len[2]);
	/* and an unchanged key from the old list still works */
	sha256("after revalidate", hash);
	assert_int_equal(tk_token_login(t2, TK_USER_USER, pin_ok, 6), TK_OK);
	assert_int_equal(
	        tk_token_key_op(t2, stale_key, TK_OP_ECDSA, hash, 32, sig, sizeof(sig), &sl),
	        TK_OK);
	verify_ecdsa(f->pub[0], hash, 32, sig, sl);

	/* the cache entry was rewritten: the next deferred open is right at once */
	card_restart(f);
	fx_count_reset(f);
	t3 = open_deferred(f);
	assert_true(f->count <= WARM_DEFERRED_MAX);
	o = fx_find(t3, TK_OBJ_CERT, 0x03);
	assert_non_null(o);
	assert_der_equal(o->der, o->der_len, newcert, (size_t)nl);
	assert_int_equal(tk_token_revalidate(t3, &changed), TK_OK);
	assert_false(changed);
	assert_same_objects(t2, t3);
	OPENSSL_free(newcert);
	tk_token_free(&t1);
	tk_token_free(&t2);
	tk_token_free(&t3);
}

/* The cache entry is chosen by the card's identity (CHUID GUID): another
 * card never gets this card's objects, and a card whose CHUID changed (same
 * GUID, re-personalised) is checked object by object even when deferred. */
static void
test_cache_identity(void **state)
{
	static const uint8_t tl[] = {0x5C, 0x03, 0x5F, 0xC1, 0x02};
	struct fx *f = *state, *g;
	tk_token_t *t1, *t2, *t3;
	tk_token_opts_t o;
	uint8_t chuid[256], cmd[300];
	size_t cl = 0;
	unsigned n_cold_g;

	t1 = open_token(f, true);
	/* a second card, same cache directory */
	g = fx_new(true);
	assert_non_null(g);
	fx_opts(g, &o, true);
	o.cache_dir = f->dir;
	o.defer_revalidation = true;
	fx_count_reset(g);
	assert_int_equal(tk_token_open(g->card, &o, &t2), TK_OK);
	n_cold_g = g->count;
	print_message("another card, deferred open with a foreign cache: %u APDUs\n", n_cold_g);
	assert_true(n_cold_g > WARM_DEFERRED_MAX); /* read from the card */
	assert_der_equal(fx_find(t2, TK_OBJ_CERT, 0x01)->der,
	                 fx_find(t2, TK_OBJ_CERT, 0x01)->der_len, g->cert[0],
	                 (size_t)g->cert_len[0]);
	tk_token_free(&t2);

	/* same GUID, new expiry date in the CHUID */
	assert_int_equal(fx_select(f), 0);
	assert_int_equal(fx_apdu(f, 0, 0xCB, 0x3F, 0xFF, tl, sizeof(tl), chuid, sizeof(chuid), &cl),
	                 0x9000);
	{
		size_t i;

		for (i = 0; i + 10 <= cl; i++)
			if (chuid[i] == 0x35 && chuid[i + 1] == 0x08)
				break;
		assert_true(i + 10 <= cl);
		memcpy(chuid + i + 2, "20401231", 8);
	}
	memcpy(cmd, tl, sizeof(tl));
	memcpy(cmd + sizeof(tl), chuid, cl);
	assert_int_equal(fx_mgm_auth(f), 0);
	assert_int_equal(fx_apdu(f, 0, 0xDB, 0x3F, 0xFF, cmd, sizeof(tl) + cl, NULL, 0, NULL),
	                 0x9000);
	card_restart(f);
	fx_count_reset(f);
	t2 = open_deferred(f);
	print_message("changed CHUID, deferred open: %u APDUs\n", f->count);
	assert_true(f->count > WARM_DEFERRED_MAX); /* the objects were probed */
	assert_true(f->count <= WARM_CHECKED_MAX);
	assert_same_objects(t1, t2);
	/* the entry now holds the new CHUID: trusted again */
	card_restart(f);
	fx_count_reset(f);
	t3 = open_deferred(f);
	assert_true(f->count <= WARM_DEFERRED_MAX);
	assert_same_objects(t1, t3);
	tk_token_free(&t1);
	tk_token_free(&t2);
	tk_token_free(&t3);
	fx_free(g);
}

/* A card without a CHUID is known by its Yubico serial (00 F8): the warm
 * deferred open proves the identity with that instead and trusts the cache
 * just the same. */
static void
test_cache_identity_serial(void **state)
{
	static const uint8_t del[] = {0x5C, 0x03, 0x5F, 0xC1, 0x02, 0x53, 0x00};
	struct fx *f = *state;
	tk_token_t *t1, *t2;
	tk_token_info_t info;

	assert_int_equal(fx_select(f), 0);
	assert_int_equal(fx_mgm_auth(f), 0);
	assert_int_equal(fx_apdu(f, 0, 0xDB, 0x3F, 0xFF, del, sizeof(del), NULL, 0, NULL), 0x9000);
	card_restart(f);
	t1 = open_token(f, true);
	assert_int_equal(tk_token_info(t1, &info), TK_OK);
	assert_memory_equal(info.identity, "piv:yk:", 7);
	card_restart(f);
	fx_count_reset(f);
	t2 = open_deferred(f);
	print_message("warm deferred open without a CHUID: %u APDUs\n", f->count);
	/* SELECT, the CHUID's absence, the serial */
	assert_true(f->count <= WARM_DEFERRED_MAX + 1);
	assert_int_equal(fx_count_ins(f, 0xF8), 1);
	assert_same_objects(t1, t2);
	tk_token_free(&t1);
	tk_token_free(&t2);
}

static int warnings;

static void
count_warn(void *ctx, int level, const char *msg)
{
	(void)ctx;
	(void)msg;
	if (level == TK_LOG_WARN)
		warnings++;
}

static void
test_cache_corrupt_ignored(void **state)
{
	struct fx *f = *state;
	tk_token_t *t1, *t2, *t3;
	char path[512];
	unsigned n_cold, n_bad, n_warm;
	bool changed = false;
	FILE *fp;
	long sz;
	int ch;

	fx_count_reset(f);
	t1 = open_token(f, true);
	n_cold = f->count;
	cache_file(f, t1, path, sizeof(path));

	/* flip one byte in the middle */
	fp = fopen(path, "r+b");
	assert_non_null(fp);
	assert_int_equal(fseek(fp, 0, SEEK_END), 0);
	sz = ftell(fp);
	assert_int_equal(fseek(fp, sz / 2, SEEK_SET), 0);
	ch = fgetc(fp);
	assert_int_equal(fseek(fp, sz / 2, SEEK_SET), 0);
	fputc(ch ^ 0x01, fp);
	fclose(fp);

	warnings = 0;
	tk_log_set_sink(count_warn, NULL);
	tk_vcard_reset(f->vc);
	tk_card_bump_generation(f->card);
	fx_count_reset(f);
	t2 = open_token(f, true);
	n_bad = f->count;
	tk_log_set_sink(NULL, NULL);
	assert_int_equal(warnings, 1);
	assert_int_equal(n_bad, n_cold); /* read like a cold open */
	assert_same_objects(t1, t2);

	/* rewritten, good again */
	tk_vcard_reset(f->vc);
	tk_card_bump_generation(f->card);
	fx_count_reset(f);
	t3 = open_token(f, true);
	n_warm = f->count;
	assert_true(n_warm < n_cold);
	assert_same_objects(t1, t3);

	/* truncated file, deferred open: nothing is taken on trust from it */
	assert_int_equal(truncate(path, sz - 40), 0);
	tk_token_free(&t3);
	warnings = 0;
	tk_log_set_sink(count_warn, NULL);
	fx_count_reset(f);
	t3 = open_deferred(f);
	tk_log_set_sink(NULL, NULL);
	assert_int_equal(warnings, 1);
	/* a cold read but for the card's signatures: the attestations (four
	 * ATTEST, then the device certificate) come with the revalidation */
	assert_int_equal(f->count, n_cold - 4 - 1);
	assert_int_equal(fx_count_ins(f, 0xF9), 0);
	assert_int_equal(tk_token_revalidate(t3, &changed), TK_OK);
	assert_true(changed);
	assert_same_objects(t1, t3);
	/* and rewritten by that cold read */
	tk_token_free(&t3);
	card_restart(f);
	fx_count_reset(f);
	t3 = open_deferred(f);
	assert_true(f->count <= WARM_DEFERRED_MAX);
	assert_same_objects(t1, t3);
	tk_token_free(&t1);
	tk_token_free(&t2);
	tk_token_free(&t3);
}

/* ---- retired slots and key history ---------------------------------------- */

static void
test_retired_slots(void **state)
{
	static const uint8_t kh[] = {0x5C, 0x03, 0x5F, 0xC1, 0x0C, 0x53, 0x06,
	                             0xC1, 0x01, 0x01, 0xC2, 0x01, 0x01};
	struct fx *f = *state;
	EVP_PKEY *k82, *k83;
	uint8_t *c82 = NULL;
	const tk_object_t *o;
	tk_token_t *t0, *t1, *t2, *t3;
	unsigned n_nokh, n_kh, n_warm;
	int cl;

	assert_int_equal(fx_select(f), 0);
	assert_int_equal(fx_mgm_auth(f), 0);
	k82 = fx_generate(f, 0x82, 0x11);
	k83 = fx_generate(f, 0x83, 0x14);
	assert_non_null(k82);
	assert_non_null(k83);
	cl = fx_make_cert(f, k82, "retired one", &c82);
	assert_true(cl > 0);
	assert_int_equal(fx_put_cert(f, 0x5FC10D, c82, (size_t)cl, false), 0);
	card_restart(f);

	/* SP 800-73-4: no key history object, no retired keys. None of the 20
	 * retired slots is asked about: the open costs what a card without
	 * retired keys costs, and they are not published. */
	fx_count_reset(f);
	t0 = open_token(f, false);
	n_nokh = f->count;
	assert_true(n_nokh <= COLD_MAX);
	assert_true(fx_count_ins(f, 0xF7) <= 4); /* 9A 9C 9D 9E only */
	/* CHUID, discovery, history, 4 certs, the attestation certificate */
	assert_true(fx_count_ins(f, 0xCB) <= 3 + 4 + 1);
	assert_null(fx_find(t0, TK_OBJ_PRIVKEY, 0x05));
	assert_null(fx_find(t0, TK_OBJ_CERT, 0x05));
	assert_null(fx_find(t0, TK_OBJ_PRIVKEY, 0x06));

	/* with a key history (1 on-card, 1 off-card): 82 with its certificate,
	 * 83 by its metadata; nothing beyond */
	assert_int_equal(fx_select(f), 0);
	assert_int_equal(fx_mgm_auth(f), 0);
	assert_int_equal(fx_apdu(f, 0, 0xDB, 0x3F, 0xFF, kh, sizeof(kh), NULL, 0, NULL), 0x9000);
	card_restart(f);
	fx_count_reset(f);
	t1 = open_token(f, true);
	n_kh = f->count;
	/* + 82's certificate, metadata and attestation, + 83's metadata and
	 * attestation */
	assert_true(n_kh <= COLD_MAX + 5);
	assert_true(fx_count_ins(f, 0xF7) <= 4 + 2);
	o = fx_find(t1, TK_OBJ_PRIVKEY, 0x05);
	assert_non_null(o);
	assert_string_equal(o->label, "Retired KEY MAN 1");
	assert_int_equal(o->key_ref, 0x82);
	assert_int_equal(o->usage, TK_USAGE_DERIVE);
	assert_true(o->has_identity);
	assert_spki_of(o, k82);
	o = fx_find(t1, TK_OBJ_CERT, 0x05);
	assert_non_null(o);
	assert_string_equal(o->label, "Certificate for Retired Key 1");
	assert_der_equal(o->der, o->der_len, c82, (size_t)cl);
	/* a key without a certificate: private and public key, no identity */
	o = fx_find(t1, TK_OBJ_PRIVKEY, 0x06);
	assert_non_null(o);
	assert_string_equal(o->label, "Retired KEY MAN 2");
	assert_int_equal(o->key_bits, 384);
	assert_false(o->has_identity);
	assert_spki_of(o, k83);
	o = fx_find(t1, TK_OBJ_PUBKEY, 0x06);
	assert_non_null(o);
	assert_spki_of(o, k83);
	assert_null(fx_find(t1, TK_OBJ_CERT, 0x06));
	assert_null(fx_find(t1, TK_OBJ_PRIVKEY, 0x07));

	card_restart(f);
	fx_count_reset(f);
	t2 = open_token(f, true);
	n_warm = f->count;
	assert_same_objects(t1, t2);
	card_restart(f);
	fx_count_reset(f);
	t3 = open_deferred(f);
	assert_true(f->count <= WARM_DEFERRED_MAX);
	assert_same_objects(t1, t3);
	print_message("retired 82+83: without key history %u APDUs, with it %u, warm %u, "
	              "deferred %u\n",
	              n_nokh, n_kh, n_warm, f->count);
	assert_true(n_warm < n_kh);
	EVP_PKEY_free(k82);
	EVP_PKEY_free(k83);
	OPENSSL_free(c82);
	tk_token_free(&t0);
	tk_token_free(&t1);
	tk_token_free(&t2);
	tk_token_free(&t3);
}

/* ---- other cards and readers ------------------------------------------------ */

/* A PIV card without the Yubico commands: keys are known only through their
 * certificates, so 9E's stray certificate cannot be told apart (it pairs,
 * as on any plain PIV card); metadata is asked once, then never again. */
static void
test_plain_piv_card(void **state)
{
	struct fx *f = *state;
	tk_token_t *t, *t2;
	const tk_object_t *o;
	const tk_object_t *objs;
	tk_token_info_t info;
	size_t n;

	f->no_vendor = true;
	fx_count_reset(f);
	t = open_token(f, false);
	/* metadata asked once (6D00: remembered), the serial once, no version */
	assert_int_equal(fx_count_ins(f, 0xF7), 1);
	assert_int_equal(fx_count_ins(f, 0xFD), 0);
	assert_int_equal(fx_count_ins(f, 0xF8), 1);
	assert_true(f->count <= COLD_MAX - 3);
	assert_int_equal(tk_token_objects(t, &objs, &n), TK_OK);
	assert_int_equal(n, 12);
	o = fx_find(t, TK_OBJ_PRIVKEY, 0x01);
	assert_non_null(o);
	assert_true(o->has_identity);
	assert_spki_of(o, f->pub[0]);
	o = fx_find(t, TK_OBJ_PRIVKEY, 0x02);
	assert_non_null(o);
	assert_int_equal(o->key_bits, 2048);
	assert_true(o->always_authenticate); /* the slot's default policy */
	o = fx_find(t, TK_OBJ_PRIVKEY, 0x04);
	assert_non_null(o);
	assert_spki_of(o, f->stray); /* all the card says: the certificate's key */
	/* serial from the CHUID GUID: the first 8 bytes in hex */
	assert_int_equal(tk_token_info(t, &info), TK_OK);
	assert_int_equal(strlen(info.serial), 16);
	assert_memory_equal(info.serial, info.identity + 4, 16);

	/* cached and warm: no vendor command at all */
	tk_token_free(&t);
	t = open_token(f, true);
	fx_count_reset(f);
	t2 = open_token(f, true);
	assert_int_equal(fx_count_ins(f, 0xF7) + fx_count_ins(f, 0xFD) + fx_count_ins(f, 0xF8), 0);
	assert_same_objects(t, t2);
	tk_token_free(&t);
	tk_token_free(&t2);
}

/* Behind a reader without extended length: the RSA-2048 input is chained,
 * the result comes back with 61xx, and the signature is still right. */
static void
test_short_apdu_reader(void **state)
{
	struct fx *f = *state;
	tk_token_t *t;
	const tk_object_t *key;
	uint8_t block[256], sig[256];
	size_t sl = 0;
	EVP_PKEY_CTX *ctx;
	uint8_t plain[256];
	size_t pl = sizeof(plain);
	const tk_key_auth_t op_auth = {pin_ok, 6, NULL, 0};

	assert_int_equal(fx_short_reader(f), TK_OK);
	fx_count_reset(f);
	t = open_token(f, false);
	/* each object asked for once; a long one continues with GET RESPONSE,
	 * each of which but the last carries a full 256 bytes */
	print_message("cold open over a short-APDU reader: %u APDUs (%u GET RESPONSE)\n", f->count,
	              fx_count_ins(f, 0xC0));
	assert_true(fx_count_ins(f, 0xCB) <= 3 + 4 + 1);
	assert_true(fx_count_ins(f, 0xC0) <= f->bytes / 256);
	assert_true(f->count <= COLD_MAX + f->bytes / 256);
	key = fx_find(t, TK_OBJ_PRIVKEY, 0x02);
	assert_non_null(key);
	/* a raw block below the modulus; its RSA public operation must give it back */
	memset(block, 0x5A, sizeof(block));
	block[0] = 0x00;
	fx_count_reset(f);
	assert_int_equal(tk_token_key_op_auth(t, key, TK_OP_RSA_RAW, &op_auth, block, 256, sig,
	                                      sizeof(sig), &sl),
	                 TK_OK);
	print_message("RSA-2048 over a short-APDU reader: %u APDUs (VERIFY first)\n", f->count);
	assert_true(f->count >= 4); /* VERIFY, chained command + GET RESPONSE */
	assert_int_equal(f->ins[0], 0x20);
	assert_int_equal(fx_count_ins(f, 0x87), 2);
	assert_int_equal(fx_count_ins(f, 0xC0), f->count - 3);
	ctx = EVP_PKEY_CTX_new(f->pub[1], NULL);
	assert_int_equal(EVP_PKEY_verify_recover_init(ctx), 1);
	assert_int_equal(EVP_PKEY_CTX_set_rsa_padding(ctx, RSA_NO_PADDING), 1);
	assert_int_equal(EVP_PKEY_verify_recover(ctx, plain, &pl, sig, sl), 1);
	assert_int_equal(pl, 256);
	assert_memory_equal(plain, block, 256);
	EVP_PKEY_CTX_free(ctx);
	tk_token_free(&t);
}

/* ---- threads ------------------------------------------------------------------ */

struct signer {
	tk_token_t *t;
	const tk_object_t *key;
	EVP_PKEY *pub;
	int ok;
};

static void *
sign_loop(void *arg)
{
	struct signer *s = arg;
	uint8_t hash[32], sig[64];
	size_t sl = 0;

	for (int i = 0; i < 25; i++) {
		char msg[32];
		ECDSA_SIG *es;
		unsigned char *der = NULL;
		EVP_PKEY_CTX *ctx;
		int dl;

		snprintf(msg, sizeof(msg), "m%d-%p", i, (void *)s);
		sha256(msg, hash);
		if (tk_token_key_op(s->t, s->key, TK_OP_ECDSA, hash, 32, sig, sizeof(sig), &sl) !=
		    TK_OK)
			continue;
		es = ECDSA_SIG_new();
		ECDSA_SIG_set0(es, BN_bin2bn(sig, 32, NULL), BN_bin2bn(sig + 32, 32, NULL));
		dl = i2d_ECDSA_SIG(es, &der);
		ctx = EVP_PKEY_CTX_new(s->pub, NULL);
		if (dl > 0 && EVP_PKEY_verify_init(ctx) == 1 &&
		    EVP_PKEY_verify(ctx, der, (size_t)dl, hash, 32) == 1)
			s->ok++;
		EVP_PKEY_CTX_free(ctx);
		OPENSSL_free(der);
		ECDSA_SIG_free(es);
	}
	return NULL;
}

/* Calls from several threads on one token are serialised by the token:
 * the card (which is not thread-safe here) sees one exchange at a time. */
static void
test_threads(void **state)
{
	struct fx *f = *state;
	tk_token_t *t = open_token(f, false);
	struct signer s[4];
	pthread_t th[4];

	assert_int_equal(tk_token_login(t, TK_USER_USER, pin_ok, 6), TK_OK);
	for (int i = 0; i < 4; i++) {
		s[i] = (struct signer){t, fx_find(t, TK_OBJ_PRIVKEY, 0x01), f->pub[0], 0};
		assert_int_equal(pthread_create(&th[i], NULL, sign_loop, &s[i]), 0);
	}
	/* revalidations and readers interleave with the signatures */
	for (int i = 0; i < 10; i++) {
		tk_token_info_t info;
		bool changed = true;

		assert_int_equal(tk_token_revalidate(t, &changed), TK_OK);
		assert_false(changed);
		assert_int_equal(tk_token_info(t, &info), TK_OK);
		assert_non_null(fx_find(t, TK_OBJ_CERT, 0x01));
	}
	for (int i = 0; i < 4; i++) {
		assert_int_equal(pthread_join(th[i], NULL), 0);
		assert_int_equal(s[i].ok, 25);
	}
	tk_token_free(&t);
}

/* tk_token_register: the card's record in a registry store (the rules the
 * integration test test_card_register.sh cannot reach): written once, not
 * again while the card is the same, updated when it changed, and a
 * registration of that name that is not a card's is left alone. */
static void
test_register_card(void **state)
{
	struct fx *f = *state;
	tk_registry_opts_t ro;
	tk_registry_t *reg = NULL;
	tk_registration_t *rec = NULL, *other = NULL;
	tk_token_info_t ti;
	tk_reg_item_t it;
	tk_token_t *t;
	char path[300];
	uint64_t gen = 0;
	bool written = true, key9a = false;

	snprintf(path, sizeof(path), "%s/registry", f->dir);
	tk_registry_opts_init(&ro);
	ro.path = path;
	assert_int_equal(tk_registry_open(&ro, &reg), TK_OK);
	t = open_token(f, false);
	assert_int_equal(tk_token_info(t, &ti), TK_OK);

	assert_int_equal(tk_token_register(t, reg, &written), TK_OK);
	assert_true(written);
	assert_int_equal(tk_registry_get(reg, "piv", ti.identity, &rec), TK_OK);
	assert_true(tk_registration_flags(rec) & TK_REG_FLAG_CARD);
	assert_string_equal(tk_registration_label(rec), ti.label);
	assert_int_equal(tk_registration_generation(rec), 1);
	/* the fixture's 9A key (EC P-256) with its certificate, by one id */
	for (size_t i = 0; i < tk_registration_item_count(rec); i++) {
		assert_int_equal(tk_registration_item(rec, i, &it), TK_OK);
		if (it.kind == TK_REG_ITEM_KEY && it.handle_len == 1 && it.handle[0] == 0x9A) {
			key9a = true;
			assert_int_equal(it.key_type, TK_KEY_EC);
			assert_int_equal(it.key_bits, 256);
			assert_true(it.usage & TK_USAGE_SIGN);
		}
		if (it.kind == TK_REG_ITEM_CERT && it.id_len == 1 && it.id[0] == 0x01)
			assert_der_equal(it.der, it.der_len, f->cert[0], (size_t)f->cert_len[0]);
	}
	assert_true(key9a);
	tk_registration_free(&rec);

	/* the same card again: nothing written */
	assert_int_equal(tk_token_register(t, reg, &written), TK_OK);
	assert_false(written);

	/* a record that differs (here: another label) is brought back to the card's */
	assert_int_equal(tk_registry_get(reg, "piv", ti.identity, &rec), TK_OK);
	assert_int_equal(tk_registration_set_label(rec, "renamed"), TK_OK);
	assert_int_equal(tk_registry_put(reg, rec, 1, &gen), TK_OK);
	tk_registration_free(&rec);
	assert_int_equal(tk_token_register(t, reg, &written), TK_OK);
	assert_true(written);
	assert_int_equal(tk_registry_get(reg, "piv", ti.identity, &rec), TK_OK);
	assert_string_equal(tk_registration_label(rec), ti.label);
	assert_int_equal(tk_registration_generation(rec), 3);
	tk_registration_free(&rec);

	/* a provider's registration of that name (not a card's): left alone */
	assert_int_equal(tk_registry_remove(reg, "piv", ti.identity, TK_REG_GEN_ANY, &gen), TK_OK);
	assert_int_equal(tk_registration_new("piv", ti.identity, &other), TK_OK);
	assert_int_equal(tk_registration_set_label(other, "not a card"), TK_OK);
	assert_int_equal(tk_registry_put(reg, other, 0, &gen), TK_OK);
	assert_int_equal(tk_token_register(t, reg, &written), TK_ERR_CONFLICT);
	assert_false(written);
	assert_int_equal(tk_registry_get(reg, "piv", ti.identity, &rec), TK_OK);
	assert_string_equal(tk_registration_label(rec), "not a card");
	assert_int_equal(tk_registration_generation(rec), gen);
	tk_registration_free(&rec);
	tk_registration_free(&other);

	assert_int_equal(tk_token_register(NULL, reg, &written), TK_ERR_INVALID_ARG);
	tk_token_free(&t);
	tk_registry_free(&reg);
}

static void
test_not_piv(void **state)
{
	struct fx *f = fx_new(false);
	tk_token_t *t = NULL;
	tk_token_opts_t o;

	(void)state;
	assert_non_null(f);
	/* a card that is gone is no token */
	fx_opts(f, &o, false);
	tk_card_set_removed(f->card);
	assert_int_not_equal(tk_token_open(f->card, &o, &t), TK_OK);
	assert_null(t);
	assert_int_equal(tk_token_open(NULL, &o, &t), TK_ERR_INVALID_ARG);
	fx_free(f);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test_setup_teardown(test_objects_and_identities, fx_setup, fx_teardown),
	        cmocka_unit_test_setup_teardown(test_login, fx_setup, fx_teardown),
	        cmocka_unit_test_setup_teardown(test_ecdsa_p256_one_apdu, fx_setup, fx_teardown),
	        cmocka_unit_test_setup_teardown(test_rsa_context_login, fx_setup, fx_teardown),
	        cmocka_unit_test_setup_teardown(test_ecdh_and_p384, fx_setup, fx_teardown),
	        cmocka_unit_test_setup_teardown(test_reset_drops_login, fx_setup, fx_teardown),
	        cmocka_unit_test_setup_teardown(test_reset_before_verify, fx_setup, fx_teardown),
	        cmocka_unit_test_setup_teardown(test_other_application, fx_setup, fx_teardown),
	        cmocka_unit_test_setup_teardown(test_kept_pin, fx_setup, fx_teardown),
	        cmocka_unit_test_setup_teardown(test_cache_warm_open, fx_setup, fx_teardown),
	        cmocka_unit_test_setup_teardown(test_cache_mismatch, fx_setup, fx_teardown),
	        cmocka_unit_test_setup_teardown(test_revalidate_replaced_cert, fx_setup,
	                                        fx_teardown),
	        cmocka_unit_test_setup_teardown(test_cache_identity, fx_setup, fx_teardown),
	        cmocka_unit_test_setup_teardown(test_cache_identity_serial, fx_setup, fx_teardown),
	        cmocka_unit_test_setup_teardown(test_cache_corrupt_ignored, fx_setup, fx_teardown),
	        cmocka_unit_test_setup_teardown(test_retired_slots, fx_setup, fx_teardown),
	        cmocka_unit_test_setup_teardown(test_plain_piv_card, fx_setup, fx_teardown),
	        cmocka_unit_test_setup_teardown(test_short_apdu_reader, fx_setup, fx_teardown),
	        cmocka_unit_test_setup_teardown(test_threads, fx_setup, fx_teardown),
	        cmocka_unit_test_setup_teardown(test_register_card, fx_setup, fx_teardown),
	        cmocka_unit_test(test_not_piv),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
