/* PIV attestation certificates as token objects (drivers/piv/piv_attest.c)
 * on the virtual card of test_piv_fixture.h, whose four keys were
 * generated on the card. What it attacks: an attestation paired with the
 * key it names (same CKA_ID, or the key counted as an identity), an
 * attestation for another key than the slot's, one served after the slot's
 * key was replaced (from the cache, or in a deferred open after its
 * revalidation), an attestation object for an imported key, and opens that
 * ask the card again (each ATTEST is a signature on the card) for keys
 * whose attestation or refusal is already known. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "cache.h"
#include "test_piv_fixture.h"

static tk_token_t *
open_token(struct fx *f, bool deferred)
{
	tk_token_t *t = fx_open(f, true, deferred);

	assert_non_null(t);
	return t;
}

static X509 *
x509_of(const tk_object_t *o)
{
	const unsigned char *q = o->der;
	X509 *x = d2i_X509(NULL, &q, (long)o->der_len);

	assert_non_null(x);
	return x;
}

/* The object with the two-byte id a b. */
static const tk_object_t *
find_id2(tk_token_t *t, uint8_t a, uint8_t b)
{
	const tk_object_t *objs;
	size_t n;

	assert_int_equal(tk_token_objects(t, &objs, &n), TK_OK);
	for (size_t i = 0; i < n; i++)
		if (objs[i].id_len == 2 && objs[i].id[0] == a && objs[i].id[1] == b)
			return &objs[i];
	return NULL;
}

/* Slot ref's attestation: there, labelled, unpaired, for key, and signed by
 * the device's attestation certificate. */
static void
assert_attests(tk_token_t *t, uint8_t ref, EVP_PKEY *key)
{
	const tk_object_t *o = find_id2(t, 0xF9, ref), *dev = fx_find(t, TK_OBJ_CERT, 0xF9);
	char label[64];
	X509 *x, *d;

	assert_non_null(o);
	assert_non_null(dev);
	assert_int_equal(o->cls, TK_OBJ_CERT);
	snprintf(label, sizeof(label), "PIV Attestation %02X", ref);
	assert_string_equal(o->label, label);
	assert_false(o->has_identity);
	x = x509_of(o);
	d = x509_of(dev);
	assert_int_equal(EVP_PKEY_eq(X509_get0_pubkey(x), key), 1);
	assert_int_equal(X509_verify(x, X509_get0_pubkey(d)), 1);
	X509_free(x);
	X509_free(d);
}

/* No object with an attestation's id is a key, and the keys keep their own
 * certificates: 9A..9D identities, 9E's key (its certificate names another
 * key) none, although its attestation names it. */
static void
assert_never_paired(struct fx *f, tk_token_t *t)
{
	const tk_object_t *objs, *dev = fx_find(t, TK_OBJ_CERT, 0xF9);
	size_t n;

	assert_non_null(dev);
	assert_string_equal(dev->label, "PIV Attestation Device Certificate");
	assert_false(dev->has_identity);
	assert_int_equal(tk_token_objects(t, &objs, &n), TK_OK);
	for (size_t i = 0; i < n; i++) {
		if (objs[i].id[0] != 0xF9)
			continue;
		assert_int_equal(objs[i].cls, TK_OBJ_CERT);
		for (size_t k = 0; k < n; k++)
			assert_false(objs[k].cls != TK_OBJ_CERT &&
			             objs[k].id_len == objs[i].id_len &&
			             memcmp(objs[k].id, objs[i].id, objs[i].id_len) == 0);
	}
	for (uint8_t id = 1; id <= 3; id++) {
		assert_true(fx_find(t, TK_OBJ_PRIVKEY, id)->has_identity);
		assert_true(fx_find(t, TK_OBJ_CERT, id)->has_identity);
	}
	assert_false(fx_find(t, TK_OBJ_PRIVKEY, 0x04)->has_identity);
	assert_null(fx_find(t, TK_OBJ_CERT, 0x04));
	(void)f;
}

/* A new key in ref (generated: alg; imported: an EC P-256 key made here)
 * with a certificate for it: the way keys are replaced. */
static EVP_PKEY *
replace_key(struct fx *f, uint8_t ref, uint32_t tag, bool import)
{
	uint8_t *cert = NULL;
	EVP_PKEY *k;
	int cl;

	assert_int_equal(fx_select(f), 0);
	assert_int_equal(fx_mgm_auth(f), 0);
	if (import) {
		uint8_t data[2 + 32];
		BIGNUM *d = NULL;

		k = fx_soft_key("P-256");
		assert_non_null(k);
		assert_int_equal(EVP_PKEY_get_bn_param(k, OSSL_PKEY_PARAM_PRIV_KEY, &d), 1);
		data[0] = 0x06;
		data[1] = 32;
		assert_int_equal(BN_bn2binpad(d, data + 2, 32), 32);
		BN_clear_free(d);
		assert_int_equal(fx_apdu(f, 0, 0xFE, 0x11, ref, data, sizeof(data), NULL, 0, NULL),
		                 0x9000);
	} else {
		k = fx_generate(f, ref, 0x11);
		assert_non_null(k);
	}
	cl = fx_make_cert(f, k, "replaced", &cert);
	assert_true(cl > 0);
	assert_int_equal(fx_put_cert(f, tag, cert, (size_t)cl, false), 0);
	OPENSSL_free(cert);
	tk_vcard_reset(f->vc);
	tk_card_bump_generation(f->card);
	fx_count_reset(f);
	return k;
}

/* Cold: one ATTEST per key and the device certificate; warm: nothing more
 * than before attestations existed, the same attestations. */
static void
test_cold_and_warm(void **state)
{
	struct fx *f = *state;
	tk_token_t *t;
	const tk_object_t *o;
	uint8_t *der;
	size_t len;

	t = open_token(f, false);
	assert_int_equal(fx_count_ins(f, 0xF9), 4);
	for (size_t i = 0; i < 4; i++)
		assert_attests(t, fx_slots[i], f->pub[i]);
	assert_never_paired(f, t);
	o = find_id2(t, 0xF9, 0x9A);
	len = o->der_len;
	der = malloc(len);
	memcpy(der, o->der, len);
	tk_token_free(&t);

	tk_vcard_reset(f->vc);
	tk_card_bump_generation(f->card);
	fx_count_reset(f);
	t = open_token(f, false);
	print_message("warm open (checked) with attestations: %u APDUs\n", f->count);
	/* SELECT, CHUID, key history probe, four certificate probes */
	assert_int_equal(f->count, 3 + 4);
	o = find_id2(t, 0xF9, 0x9A);
	assert_non_null(o);
	assert_int_equal(o->der_len, len);
	assert_memory_equal(o->der, der, len); /* the cached one, not a new ATTEST */
	assert_never_paired(f, t);
	tk_token_free(&t);

	tk_vcard_reset(f->vc);
	tk_card_bump_generation(f->card);
	fx_count_reset(f);
	t = open_token(f, true);
	assert_int_equal(f->count, 2); /* SELECT, CHUID */
	assert_attests(t, 0x9A, f->pub[0]);
	tk_token_free(&t);
	free(der);
}

/* Keys replaced: 9A generated anew (its attestation asked again, for the
 * new key), 9D imported (no attestation; the refusal remembered), 9C and
 * 9E unchanged (not asked). */
static void
test_replaced_keys(void **state)
{
	struct fx *f = *state;
	EVP_PKEY *k9a, *k9d;
	tk_token_t *t;

	t = open_token(f, false);
	tk_token_free(&t);
	k9d = replace_key(f, 0x9D, fx_tags[2], true);
	k9a = replace_key(f, 0x9A, fx_tags[0], false);
	t = open_token(f, false);
	assert_int_equal(fx_count_ins(f, 0xF9), 2);
	assert_attests(t, 0x9A, k9a);
	assert_attests(t, 0x9C, f->pub[1]);
	assert_attests(t, 0x9E, f->pub[3]);
	assert_null(find_id2(t, 0xF9, 0x9D));
	assert_true(fx_find(t, TK_OBJ_PRIVKEY, 0x03)->has_identity); /* the imported key */
	assert_never_paired(f, t);
	tk_token_free(&t);

	tk_vcard_reset(f->vc);
	tk_card_bump_generation(f->card);
	fx_count_reset(f);
	t = open_token(f, false);
	assert_int_equal(fx_count_ins(f, 0xF9), 0);
	assert_null(find_id2(t, 0xF9, 0x9D));
	assert_attests(t, 0x9A, k9a);
	tk_token_free(&t);
	EVP_PKEY_free(k9a);
	EVP_PKEY_free(k9d);
}

/* A deferred open (the PKCS#11 module's) asks the card for no signature:
 * cold, it publishes no attestation; its revalidation asks and adds them,
 * the other objects keeping their handles. */
static void
test_deferred_cold(void **state)
{
	struct fx *f = *state;
	const tk_object_t *objs;
	uint32_t h9a;
	bool changed = false;
	tk_token_t *t;
	size_t n;

	t = open_token(f, true);
	assert_int_equal(fx_count_ins(f, 0xF9), 0);
	assert_null(find_id2(t, 0xF9, 0x9A));
	assert_null(fx_find(t, TK_OBJ_CERT, 0xF9));
	assert_int_equal(tk_token_objects(t, &objs, &n), TK_OK);
	assert_int_equal(n, 12);
	h9a = fx_find(t, TK_OBJ_CERT, 0x01)->handle;
	assert_int_equal(tk_token_revalidate(t, &changed), TK_OK);
	assert_true(changed);
	assert_int_equal(fx_count_ins(f, 0xF9), 4);
	for (size_t i = 0; i < 4; i++)
		assert_attests(t, fx_slots[i], f->pub[i]);
	assert_never_paired(f, t);
	assert_int_equal(fx_find(t, TK_OBJ_CERT, 0x01)->handle, h9a);
	tk_token_free(&t);

	/* stored: the next deferred open has them from the cache */
	tk_vcard_reset(f->vc);
	tk_card_bump_generation(f->card);
	fx_count_reset(f);
	t = open_token(f, true);
	assert_int_equal(f->count, 2);
	assert_attests(t, 0x9A, f->pub[0]);
	tk_token_free(&t);
}

/* A deferred open publishes the cache as it is; its revalidation finds the
 * new key and replaces the attestation, which then names the new key. */
static void
test_deferred_revalidation(void **state)
{
	struct fx *f = *state;
	bool changed = false;
	EVP_PKEY *k;
	tk_token_t *t;

	t = open_token(f, false);
	tk_token_free(&t);
	k = replace_key(f, 0x9A, fx_tags[0], false);
	t = open_token(f, true);
	assert_int_equal(fx_count_ins(f, 0xF9), 0);
	assert_int_equal(tk_token_revalidate(t, &changed), TK_OK);
	assert_true(changed);
	assert_int_equal(fx_count_ins(f, 0xF9), 1);
	assert_attests(t, 0x9A, k);
	assert_never_paired(f, t);
	tk_token_free(&t);
	EVP_PKEY_free(k);
}

/* A cache record that names the slot's key but holds an attestation of
 * another key (a bad card, or a bad cache file): kept out of the token. */
static void
test_record_for_another_key(void **state)
{
	struct fx *f = *state;
	tk_token_t *t;
	tk_cache_t *c = NULL;
	const uint8_t *r9a, *r9c;
	size_t l9a, l9c, s9a, s9c, n;
	uint8_t *rec;
	tk_token_info_t ti;

	t = open_token(f, false);
	assert_int_equal(tk_token_info(t, &ti), TK_OK);
	assert_int_equal(tk_cache_load(f->dir, ti.identity, &c), TK_OK);
	tk_token_free(&t);
	/* 9A's record: 9A's SPKI, then 9C's attestation */
	assert_int_equal(tk_cache_get(c, 0x0300009Au, &r9a, &l9a), TK_OK);
	s9a = (size_t)r9a[0] << 8 | r9a[1];
	n = 2 + s9a;
	assert_int_equal(tk_cache_get(c, 0x0300009Cu, &r9c, &l9c), TK_OK);
	s9c = (size_t)r9c[0] << 8 | r9c[1];
	assert_true(l9c > 2 + s9c);
	rec = malloc(n + l9c - 2 - s9c);
	assert_int_equal(tk_cache_get(c, 0x0300009Au, &r9a, &l9a), TK_OK);
	memcpy(rec, r9a, n);
	assert_int_equal(tk_cache_get(c, 0x0300009Cu, &r9c, &l9c), TK_OK);
	memcpy(rec + n, r9c + 2 + s9c, l9c - 2 - s9c);
	n += l9c - 2 - s9c;
	assert_int_equal(tk_cache_put(c, 0x0300009Au, rec, n), TK_OK);
	assert_int_equal(tk_cache_store(f->dir, c), TK_OK);
	tk_cache_free(&c);
	free(rec);

	tk_vcard_reset(f->vc);
	tk_card_bump_generation(f->card);
	t = open_token(f, true);
	assert_null(find_id2(t, 0xF9, 0x9A));
	assert_attests(t, 0x9C, f->pub[1]);
	tk_token_free(&t);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test_setup_teardown(test_cold_and_warm, fx_setup, fx_teardown),
	        cmocka_unit_test_setup_teardown(test_replaced_keys, fx_setup, fx_teardown),
	        cmocka_unit_test_setup_teardown(test_deferred_cold, fx_setup, fx_teardown),
	        cmocka_unit_test_setup_teardown(test_deferred_revalidation, fx_setup, fx_teardown),
	        cmocka_unit_test_setup_teardown(test_record_for_another_key, fx_setup, fx_teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
