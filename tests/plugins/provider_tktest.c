/* A provider for tests only (never shipped): provider id "tktest", built as
 * the plugin test-plugins/provider-tktest.so.
 *
 * Its registrations carry the certificates themselves; a key item's
 * provider handle is the absolute path of a PEM private key file (a
 * test-only file: the keys of a real provider never sit unprotected on
 * disk). The user PIN is "1234"; every key needs it. Key operations load
 * the key file and compute with OpenSSL: the raw RSA private operation, and
 * ECDSA of a hash (r || s). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>

#include <tokenkit/err.h>
#include <tokenkit/log.h>
#include <tokenkit/mem.h>

#include "plugin.h"
#include "provider.h"

#define TEST_PIN "1234"

struct tktest {
	tk_registration_t *reg;
};

static int
tt_open(const tk_registration_t *reg, void **state, tk_drv_model_t *m)
{
	struct tktest *st;
	int r;

	*state = NULL;
	if ((r = tk_reg_model(reg, m)) != TK_OK)
		return r;
	if ((st = calloc(1, sizeof(*st))) == NULL ||
	    (r = tk_registration_dup(reg, &st->reg)) != TK_OK) {
		free(st);
		tk_drv_model_clear(m);
		return TK_ERR_NO_MEMORY;
	}
	*state = st;
	return TK_OK;
}

static int
tt_update(void *state, const tk_registration_t *reg, tk_drv_model_t *m)
{
	struct tktest *st = state;
	tk_registration_t *copy = NULL;
	int r;

	if ((r = tk_reg_model(reg, m)) != TK_OK)
		return r;
	if ((r = tk_registration_dup(reg, &copy)) != TK_OK) {
		tk_drv_model_clear(m);
		return r;
	}
	tk_registration_free(&st->reg);
	st->reg = copy;
	return TK_OK;
}

static int
tt_pin_verify(void *state, int user, const uint8_t *pin, size_t pin_len, int *retries)
{
	(void)state;
	*retries = -1;
	if (pin == NULL)
		return TK_OK; /* logout */
	if (user == TK_USER_SO)
		return TK_ERR_NOT_SUPPORTED;
	return pin_len == strlen(TEST_PIN) && tk_memeq_ct(pin, TEST_PIN, pin_len)
	               ? TK_OK
	               : TK_ERR_PIN_INCORRECT;
}

static int
tt_pin_status(void *state, int user, tk_drv_pin_status_t *st)
{
	(void)state;
	(void)user;
	st->retries = 3;
	st->max_retries = 3;
	st->verified = false;
	st->locked = false;
	return TK_OK;
}

static int
tt_pin_change(void *state, int user, const uint8_t *o, size_t ol, const uint8_t *n, size_t nl)
{
	return TK_ERR_NOT_SUPPORTED;
}

static int
tt_pin_unblock(void *state, const uint8_t *puk, size_t pl, const uint8_t *n, size_t nl)
{
	return TK_ERR_NOT_SUPPORTED;
}

static EVP_PKEY *
load_key(const struct tktest *st, uint32_t key_ref)
{
	char path[512];
	tk_reg_item_t it;
	EVP_PKEY *k;
	FILE *f;

	if (tk_registration_item(st->reg, key_ref, &it) != TK_OK || it.kind != TK_REG_ITEM_KEY ||
	    it.handle_len >= sizeof(path))
		return NULL;
	memcpy(path, it.handle, it.handle_len);
	path[it.handle_len] = '\0';
	if ((f = fopen(path, "r")) == NULL)
		return NULL;
	k = PEM_read_PrivateKey(f, NULL, NULL, NULL);
	fclose(f);
	return k;
}

static int
tt_key_op(void *state, const tk_drv_key_t *slot, int op, const uint8_t *in, size_t in_len,
          uint8_t *out, size_t out_cap, size_t *out_len)
{
	EVP_PKEY *k = load_key(state, slot->key_ref);
	EVP_PKEY_CTX *c = NULL;
	ECDSA_SIG *sig = NULL;
	uint8_t der[256];
	const uint8_t *q = der;
	size_t n = sizeof(der), fl;
	int r = TK_ERR_CRYPTO;

	*out_len = 0;
	if (k == NULL)
		return TK_ERR_NOT_FOUND;
	if ((c = EVP_PKEY_CTX_new(k, NULL)) == NULL)
		goto out;
	if (op == TK_OP_RSA_RAW && EVP_PKEY_get_base_id(k) == EVP_PKEY_RSA) {
		n = out_cap;
		if (EVP_PKEY_decrypt_init(c) == 1 &&
		    EVP_PKEY_CTX_set_rsa_padding(c, RSA_NO_PADDING) == 1 &&
		    EVP_PKEY_decrypt(c, out, &n, in, in_len) == 1) {
			*out_len = n;
			r = TK_OK;
		}
	} else if (op == TK_OP_ECDSA && EVP_PKEY_get_base_id(k) == EVP_PKEY_EC) {
		fl = ((size_t)EVP_PKEY_get_bits(k) + 7) / 8;
		if (out_cap < 2 * fl) {
			r = TK_ERR_BUFFER_TOO_SMALL;
		} else if (EVP_PKEY_sign_init(c) == 1 &&
		           EVP_PKEY_sign(c, der, &n, in, in_len) == 1 &&
		           (sig = d2i_ECDSA_SIG(NULL, &q, (long)n)) != NULL &&
		           BN_bn2binpad(ECDSA_SIG_get0_r(sig), out, (int)fl) == (int)fl &&
		           BN_bn2binpad(ECDSA_SIG_get0_s(sig), out + fl, (int)fl) == (int)fl) {
			*out_len = 2 * fl;
			r = TK_OK;
		}
	} else {
		r = TK_ERR_NOT_SUPPORTED;
	}
out:
	ECDSA_SIG_free(sig);
	EVP_PKEY_CTX_free(c);
	EVP_PKEY_free(k);
	return r;
}

static void
tt_free(void *state)
{
	struct tktest *st = state;

	if (st == NULL)
		return;
	tk_registration_free(&st->reg);
	free(st);
}

static const tk_driver_t tktest_ops = {
        .api = TK_DRIVER_API,
        .size = sizeof(tk_driver_t),
        .name = "tktest",
        .pin_verify = tt_pin_verify,
        .pin_status = tt_pin_status,
        .pin_change = tt_pin_change,
        .pin_unblock = tt_pin_unblock,
        .key_op = tt_key_op,
        .free = tt_free,
};

const tk_provider_t tk_provider_tktest = {
        .id = "tktest",
        .open = tt_open,
        .update = tt_update,
        .ops = &tktest_ops,
};

#ifdef TK_TKTEST_PLUGIN
static const tk_plugin_desc_t tktest_plugin = {
        .abi = TK_PLUGIN_ABI,
        .size = sizeof(tk_plugin_desc_t),
        .kind = TK_PLUGIN_PROVIDER,
        .name = "tktest",
        .init = tk_plugin_guest_init,
        .table = &tk_provider_tktest,
};

const tk_plugin_desc_t *tokenkit_plugin_v1(void);

TK_PLUGIN_EXPORT const tk_plugin_desc_t *
tokenkit_plugin_v1(void)
{
	return &tktest_plugin;
}
#endif
