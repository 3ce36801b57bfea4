/* The provider seam (core/provider.c, token.c): a registration turned into a
 * token by a provider registered in this process. What it attacks: item
 * ids of every length the registry takes (20-byte SHA-1 ids are what most
 * key stores use; the token model once held 16 bytes), and the pairing of
 * a key with its certificate by public key whatever the ids' length. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
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
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
