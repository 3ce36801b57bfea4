/* The provider seam (core/provider.c, token.c): a registration turned into a
 * token by a provider registered in this process. What it attacks: item
 * ids of every length the registry takes (20-byte SHA-1 ids are what most
 * key stores use; the token model once held 16 bytes), the pairing of
 * a key with its certificate by public key whatever the ids' length, and
 * certificates a model marks unpaired (TK_DRV_CERT_UNPAIRED: attestations,
 * which carry the key's public key) that must pair with no key. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <openssl/evp.h>
#include <openssl/x509.h>

#include <tokenkit/err.h>
#include <tokenkit/registry.h>
#include <tokenkit/token.h>

#include "provider.h"

static int
t_open(const tk_registration_t *reg, void **state, tk_drv_model_t *m)
{
	*state = NULL;
	return tk_reg_model(reg, m);
}

static int
t_update(void *state, const tk_registration_t *reg, tk_drv_model_t *m)
{
	(void)state;
	return tk_reg_model(reg, m);
}

static int
t_pin_verify(void *state, int user, const uint8_t *pin, size_t pin_len, int *retries)
{
	(void)state;
	(void)user;
	(void)pin;
	(void)pin_len;
	*retries = -1;
	return TK_OK;
}

static int
t_pin_status(void *state, int user, tk_drv_pin_status_t *st)
{
	(void)state;
	(void)user;
	st->retries = st->max_retries = -1; /* st's size is the host's */
	return TK_OK;
}

static int
t_key_op(void *state, const tk_drv_key_t *slot, int op, const uint8_t *in, size_t in_len,
         uint8_t *out, size_t out_cap, size_t *out_len)
{
	(void)state;
	(void)slot;
	(void)op;
	(void)in;
	(void)in_len;
	(void)out;
	(void)out_cap;
	*out_len = 0;
	return TK_ERR_NOT_SUPPORTED;
}

static int
t_pin_change(void *state, int user, const uint8_t *o, size_t ol, const uint8_t *n, size_t nl)
{
	(void)state;
	(void)user;
	(void)o;
	(void)ol;
	(void)n;
	(void)nl;
	return TK_ERR_NOT_SUPPORTED;
}

static int
t_pin_unblock(void *state, const uint8_t *puk, size_t pl, const uint8_t *n, size_t nl)
{
	(void)state;
	(void)puk;
	(void)pl;
	(void)n;
	(void)nl;
	return TK_ERR_NOT_SUPPORTED;
}

static void
t_free(void *state)
{
	(void)state;
}

static const tk_driver_t t_ops = {
        .api = TK_DRIVER_API,
        .size = sizeof(tk_driver_t),
        .name = "idlen",
        .pin_verify = t_pin_verify,
        .pin_status = t_pin_status,
        .pin_change = t_pin_change,
        .pin_unblock = t_pin_unblock,
        .key_op = t_key_op,
        .free = t_free,
};

static const tk_provider_t t_provider = {
        .id = "idlen",
        .open = t_open,
        .update = t_update,
        .ops = &t_ops,
};

/* A self-signed certificate (DER) and the key's SubjectPublicKeyInfo. */
static void
make_identity(uint8_t **cert, size_t *cert_len, uint8_t **spki, size_t *spki_len)
{
	EVP_PKEY *k = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
	X509 *x = X509_new();
	X509_NAME *nm = X509_NAME_new();
	unsigned char *p = NULL;
	int n;

	assert_non_null(k);
	assert_non_null(x);
	X509_set_version(x, 2);
	ASN1_INTEGER_set(X509_get_serialNumber(x), 7);
	X509_NAME_add_entry_by_txt(nm, "CN", MBSTRING_ASC, (const unsigned char *)"idlen", -1, -1,
	                           0);
	X509_set_subject_name(x, nm);
	X509_set_issuer_name(x, nm);
	X509_gmtime_adj(X509_getm_notBefore(x), 0);
	X509_gmtime_adj(X509_getm_notAfter(x), 86400);
	X509_set_pubkey(x, k);
	assert_true(X509_sign(x, k, EVP_sha256()) > 0);
	n = i2d_X509(x, &p);
	assert_true(n > 0);
	*cert = malloc((size_t)n);
	memcpy(*cert, p, (size_t)n);
	*cert_len = (size_t)n;
	OPENSSL_free(p);
	p = NULL;
	n = i2d_PUBKEY(k, &p);
	assert_true(n > 0);
	*spki = malloc((size_t)n);
	memcpy(*spki, p, (size_t)n);
	*spki_len = (size_t)n;
	OPENSSL_free(p);
	X509_NAME_free(nm);
	X509_free(x);
	EVP_PKEY_free(k);
}

static void
open_with_id(size_t id_len)
{
	uint8_t id[TK_REG_ID_MAX], handle[1] = {1}, *cert, *spki;
	size_t cert_len, spki_len, n = 0, seen = 0;
	tk_registration_t *reg = NULL;
	const tk_object_t *objs = NULL;
	tk_token_t *t = NULL;
	tk_reg_item_t it;

	for (size_t i = 0; i < id_len; i++)
		id[i] = (uint8_t)(0xA0 + i);
	make_identity(&cert, &cert_len, &spki, &spki_len);
	assert_int_equal(tk_registration_new("idlen", "one", &reg), TK_OK);
	memset(&it, 0, sizeof(it));
	it.kind = TK_REG_ITEM_CERT;
	it.id = id;
	it.id_len = id_len;
	it.label = "cert";
	it.der = cert;
	it.der_len = cert_len;
	assert_int_equal(tk_registration_add_item(reg, &it), TK_OK);
	memset(&it, 0, sizeof(it));
	it.kind = TK_REG_ITEM_KEY;
	it.id = id;
	it.id_len = id_len;
	it.label = "key";
	it.der = spki;
	it.der_len = spki_len;
	it.key_type = TK_KEY_EC;
	it.key_bits = 256;
	it.usage = TK_USAGE_SIGN;
	it.handle = handle;
	it.handle_len = sizeof(handle);
	assert_int_equal(tk_registration_add_item(reg, &it), TK_OK);

	assert_int_equal(tk_token_open_registration(reg, &t), TK_OK);
	assert_int_equal(tk_token_objects(t, &objs, &n), TK_OK);
	/* private key, public key, certificate: one identity, one id */
	assert_int_equal(n, 3);
	for (size_t i = 0; i < n; i++) {
		assert_int_equal(objs[i].id_len, id_len);
		assert_memory_equal(objs[i].id, id, id_len);
		assert_true(objs[i].has_identity);
		seen |= 1u << objs[i].cls;
	}
	assert_int_equal(seen,
	                 (1u << TK_OBJ_CERT) | (1u << TK_OBJ_PUBKEY) | (1u << TK_OBJ_PRIVKEY));
	tk_token_free(&t);
	tk_registration_free(&reg);
	free(cert);
	free(spki);
}

/* ---- unpaired certificates ----------------------------------------------- */

static uint8_t *k_cert, *k_spki, *l_cert, *l_spki;
static size_t k_cert_len, k_spki_len, l_cert_len, l_spki_len;

static void
u_desc(tk_drv_key_desc_t *d, uint32_t ref, const uint8_t *id, uint32_t id_len)
{
	memset(d, 0, sizeof(*d));
	d->size = sizeof(*d);
	d->key_ref = ref;
	memcpy(d->id, id, id_len);
	d->id_len = id_len;
	snprintf(d->key_label, sizeof(d->key_label), "key %u", (unsigned)ref);
	snprintf(d->cert_label, sizeof(d->cert_label), "cert %u", (unsigned)ref);
}

/* Key K with its certificate (id 01), an attestation-like certificate for
 * K (unpaired, id F9 01); key L without a certificate (id 02), and an
 * unpaired certificate for L (id F9 02); each unpaired certificate comes
 * before the key it names, so that slot order cannot decide. */
static int
u_open(const tk_registration_t *reg, void **state, tk_drv_model_t *m)
{
	const struct {
		uint32_t ref;
		uint8_t id[2];
		uint32_t id_len;
		const uint8_t *cert, *spki;
		size_t cert_len, spki_len;
		unsigned cert_flags;
	} slots[] = {
	        {10, {0xF9, 0x01}, 2, k_cert, NULL, k_cert_len, 0, TK_DRV_CERT_UNPAIRED},
	        {1, {0x01}, 1, k_cert, k_spki, k_cert_len, k_spki_len, 0},
	        {20, {0xF9, 0x02}, 2, l_cert, NULL, l_cert_len, 0, TK_DRV_CERT_UNPAIRED},
	        {2, {0x02}, 1, NULL, l_spki, 0, l_spki_len, 0},
	};
	tk_drv_token_desc_t tok;
	tk_drv_key_desc_t d;
	int r;

	(void)reg;
	*state = NULL;
	memset(&tok, 0, sizeof(tok));
	tok.size = sizeof(tok);
	snprintf(tok.label, sizeof(tok.label), "unpaired");
	tok.pin_min_len = 4;
	tok.pin_max_len = 8;
	if ((r = tk_drv_model_set_token(m, &tok)) != TK_OK)
		return r;
	for (size_t i = 0; i < sizeof(slots) / sizeof(slots[0]); i++) {
		u_desc(&d, slots[i].ref, slots[i].id, slots[i].id_len);
		d.cert = slots[i].cert;
		d.cert_len = slots[i].cert_len;
		d.cert_flags = slots[i].cert_flags;
		d.key_present = slots[i].spki != NULL;
		d.spki = slots[i].spki;
		d.spki_len = slots[i].spki_len;
		d.usage = d.key_present ? TK_USAGE_SIGN : 0;
		if ((r = tk_drv_model_add_key(m, &d)) != TK_OK)
			return r;
	}
	return TK_OK;
}

static int
u_update(void *state, const tk_registration_t *reg, tk_drv_model_t *m)
{
	return u_open(reg, &state, m);
}

static const tk_provider_t u_provider = {
        .id = "unpaired",
        .open = u_open,
        .update = u_update,
        .ops = &t_ops,
};

static const tk_object_t *
u_find(const tk_object_t *objs, size_t n, int cls, uint32_t ref)
{
	for (size_t i = 0; i < n; i++)
		if (objs[i].cls == cls && objs[i].key_ref == ref)
			return &objs[i];
	return NULL;
}

static void
test_unpaired_certs(void **state)
{
	static const uint8_t f901[] = {0xF9, 0x01}, f902[] = {0xF9, 0x02};
	tk_registration_t *reg = NULL;
	const tk_object_t *objs = NULL, *o;
	tk_token_t *t = NULL;
	tk_drv_model_t m;
	tk_drv_key_desc_t d;
	size_t n = 0;

	(void)state;
	make_identity(&k_cert, &k_cert_len, &k_spki, &k_spki_len);
	make_identity(&l_cert, &l_cert_len, &l_spki, &l_spki_len);
	assert_int_equal(tk_provider_register(&u_provider), TK_OK);
	assert_int_equal(tk_registration_new("unpaired", "one", &reg), TK_OK);
	assert_int_equal(tk_token_open_registration(reg, &t), TK_OK);
	assert_int_equal(tk_token_objects(t, &objs, &n), TK_OK);
	/* K: key, public key, its certificate; L: key, public key; two
	 * unpaired certificates */
	assert_int_equal(n, 7);

	/* K keeps its own certificate, under its id; the unpaired one for
	 * the same key stays apart, under its own id */
	o = u_find(objs, n, TK_OBJ_CERT, 1);
	assert_non_null(o);
	assert_true(o->has_identity);
	assert_int_equal(o->id_len, 1);
	assert_int_equal(o->id[0], 0x01);
	o = u_find(objs, n, TK_OBJ_CERT, 10);
	assert_non_null(o);
	assert_false(o->has_identity);
	assert_int_equal(o->id_len, 2);
	assert_memory_equal(o->id, f901, 2);
	assert_string_equal(o->label, "cert 10");
	assert_true(u_find(objs, n, TK_OBJ_PRIVKEY, 1)->has_identity);

	/* L has no certificate of its own: the unpaired one does not become
	 * it, and L is no identity */
	o = u_find(objs, n, TK_OBJ_PRIVKEY, 2);
	assert_non_null(o);
	assert_false(o->has_identity);
	assert_int_equal(o->id[0], 0x02);
	o = u_find(objs, n, TK_OBJ_CERT, 20);
	assert_non_null(o);
	assert_false(o->has_identity);
	assert_int_equal(o->id_len, 2);
	assert_memory_equal(o->id, f902, 2); /* not marked as a stray (0x80) */
	assert_null(u_find(objs, n, TK_OBJ_CERT, 2));
	tk_token_free(&t);
	tk_registration_free(&reg);

	/* the model refuses an unpaired certificate with a key, one without
	 * a certificate, and flags it does not know */
	tk_drv_model_init(&m, "test");
	u_desc(&d, 30, (const uint8_t[]){0x30}, 1);
	d.cert = k_cert;
	d.cert_len = k_cert_len;
	d.cert_flags = TK_DRV_CERT_UNPAIRED;
	d.key_present = true;
	d.spki = k_spki;
	d.spki_len = k_spki_len;
	assert_int_equal(tk_drv_model_add_key(&m, &d), TK_ERR_INVALID_ARG);
	d.key_present = false;
	d.spki = NULL;
	d.spki_len = 0;
	d.cert_flags = 0x2;
	assert_int_equal(tk_drv_model_add_key(&m, &d), TK_ERR_INVALID_ARG);
	/* an older driver's description (size before cert_flags): paired */
	d.cert_flags = TK_DRV_CERT_UNPAIRED;
	d.size = (uint32_t)offsetof(tk_drv_key_desc_t, cert_flags);
	assert_int_equal(tk_drv_model_add_key(&m, &d), TK_OK);
	assert_false(m.slots[0].cert_unpaired);
	tk_drv_model_clear(&m);
	free(k_cert);
	free(k_spki);
	free(l_cert);
	free(l_spki);
}

static void
test_item_ids(void **state)
{
	(void)state;
	assert_int_equal(tk_provider_register(&t_provider), TK_OK);
	open_with_id(1);
	open_with_id(16);
	open_with_id(20); /* SHA-1 */
	open_with_id(TK_REG_ID_MAX);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_item_ids),
	        cmocka_unit_test(test_unpaired_certs),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
