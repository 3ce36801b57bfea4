/* Unit tests for the driver seam (core/driver.c, core/x509.c): the checks
 * on what a driver describes, the key helpers drivers use, the driver
 * table checks, and driver plugins that break the interface
 * (tests/plugins/bad_driver.c) next to the real OpenPGP plugin. What they
 * attack: descriptions with labels that are not text, ids out of range,
 * keys and certificates that disagree or do not parse, usages and
 * operations the key type cannot have; plugins with an identity that is
 * not theirs, a return value that is no error code, a model without a
 * token, a newer API, a missing function; and the probing order. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <tokenkit/log.h>

#include "driver.h"
#include "pgp_fixture.h"
#include "x509.h"

static char logbuf[32768];

static void
sink(void *ctx, int level, const char *msg)
{
	size_t n = strlen(logbuf);

	(void)ctx;
	(void)level;
	snprintf(logbuf + n, sizeof(logbuf) - n, "%s\n", msg);
}

static unsigned
count(const char *needle)
{
	unsigned n = 0;

	for (const char *p = logbuf; (p = strstr(p, needle)) != NULL; p++)
		n++;
	return n;
}

static uint8_t *
spki_of(EVP_PKEY *k, size_t *len)
{
	uint8_t *der = NULL;
	int n = i2d_PUBKEY(k, &der);

	assert_true(n > 0);
	*len = (size_t)n;
	return der;
}

static uint8_t *
cert_of(EVP_PKEY *k, EVP_PKEY *ca, size_t *len)
{
	X509 *x = X509_new();
	uint8_t *der = NULL;
	int n;

	X509_set_version(x, 2);
	ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
	X509_gmtime_adj(X509_getm_notBefore(x), 0);
	X509_gmtime_adj(X509_getm_notAfter(x), 3600);
	X509_NAME_add_entry_by_txt(X509_get_subject_name(x), "CN", MBSTRING_ASC,
	                           (const unsigned char *)"t", -1, -1, 0);
	X509_set_issuer_name(x, X509_get_subject_name(x));
	X509_set_pubkey(x, k);
	assert_true(X509_sign(x, ca, EVP_get_digestbyname("SHA256")) > 0 ||
	            X509_sign(x, ca, NULL) > 0);
	n = i2d_X509(x, &der);
	assert_true(n > 0);
	X509_free(x);
	*len = (size_t)n;
	return der;
}

static void
desc_init(tk_drv_key_desc_t *d, uint32_t ref)
{
	memset(d, 0, sizeof(*d));
	d->size = sizeof(*d);
	d->key_ref = ref;
	d->id[0] = (uint8_t)ref;
	d->id_len = 1;
	snprintf(d->key_label, sizeof(d->key_label), "key %u", (unsigned)ref);
}

static void
test_model_rules(void **state)
{
	EVP_PKEY *ec = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
	EVP_PKEY *ed = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
	EVP_PKEY *x = EVP_PKEY_Q_keygen(NULL, NULL, "X25519");
	size_t ecl, edl, xl, cl, edcl;
	uint8_t *ecs = spki_of(ec, &ecl), *eds = spki_of(ed, &edl), *xs = spki_of(x, &xl);
	uint8_t *cert = cert_of(ec, ec, &cl), *edcert = cert_of(ed, ed, &edcl);
	tk_drv_key_desc_t d;
	tk_drv_token_desc_t tok;
	tk_drv_model_t m;

	(void)state;
	tk_drv_model_init(&m, "test");
	/* a good one, then everything that breaks one rule */
	desc_init(&d, 1);
	d.key_present = true;
	d.spki = ecs;
	d.spki_len = ecl;
	d.usage = TK_USAGE_SIGN | TK_USAGE_DERIVE;
	d.cert = cert;
	d.cert_len = cl;
	assert_int_equal(tk_drv_model_add_key(&m, &d), TK_OK);
	assert_int_equal(m.nslots, 1);
	assert_int_equal(m.slots[0].key_type, TK_KEY_EC);
	assert_int_equal(m.slots[0].key_bits, 256);
	assert_int_equal(m.slots[0].ops, TK_OP_BIT(TK_OP_ECDSA) | TK_OP_BIT(TK_OP_ECDH));
	assert_int_equal(m.slots[0].cert_key_type, TK_KEY_EC);
	assert_int_equal(tk_drv_model_add_key(&m, &d), TK_ERR_EXISTS); /* same ref and id */
	d.key_ref = 2;
	assert_int_equal(tk_drv_model_add_key(&m, &d), TK_ERR_EXISTS); /* same id */
	desc_init(&d, 3);
	d.key_present = true;
	d.spki = eds;
	d.spki_len = edl;
	d.usage = TK_USAGE_SIGN;
	d.size = 8;
	assert_int_equal(tk_drv_model_add_key(&m, &d), TK_ERR_INVALID_ARG); /* unknown size */
	d.size = sizeof(d);
	d.id_len = 0;
	assert_int_equal(tk_drv_model_add_key(&m, &d), TK_ERR_INVALID_ARG);
	d.id_len = 17;
	assert_int_equal(tk_drv_model_add_key(&m, &d), TK_ERR_INVALID_ARG);
	d.id_len = 1;
	memset(d.key_label, 'a', sizeof(d.key_label)); /* no NUL */
	assert_int_equal(tk_drv_model_add_key(&m, &d), TK_ERR_INVALID_ARG);
	snprintf(d.key_label, sizeof(d.key_label), "bad \xC3 utf-8");
	assert_int_equal(tk_drv_model_add_key(&m, &d), TK_ERR_INVALID_ARG);
	snprintf(d.key_label, sizeof(d.key_label), "tab\there");
	assert_int_equal(tk_drv_model_add_key(&m, &d), TK_ERR_INVALID_ARG);
	snprintf(d.key_label, sizeof(d.key_label), "Schl\xC3\xBCssel");
	d.usage = TK_USAGE_DERIVE; /* Ed25519 does not derive */
	assert_int_equal(tk_drv_model_add_key(&m, &d), TK_ERR_INVALID_ARG);
	d.usage = TK_USAGE_SIGN;
	d.ops = TK_OP_BIT(TK_OP_ECDSA); /* not an Ed25519 operation */
	assert_int_equal(tk_drv_model_add_key(&m, &d), TK_ERR_INVALID_ARG);
	d.ops = 0;
	d.key_type = TK_KEY_EC; /* says EC, the key is Ed25519 */
	d.key_bits = 256;
	assert_int_equal(tk_drv_model_add_key(&m, &d), TK_ERR_INVALID_ARG);
	d.key_type = TK_KEY_NONE;
	d.spki_len = edl - 1; /* cut */
	assert_int_equal(tk_drv_model_add_key(&m, &d), TK_ERR_MALFORMED);
	d.spki_len = 0; /* pointer without length */
	assert_int_equal(tk_drv_model_add_key(&m, &d), TK_ERR_INVALID_ARG);
	d.spki_len = edl;
	d.cert = (const uint8_t *)"not a certificate";
	d.cert_len = 17;
	assert_int_equal(tk_drv_model_add_key(&m, &d), TK_ERR_MALFORMED);
	d.cert = edcert;
	d.cert_len = edcl;
	assert_int_equal(tk_drv_model_add_key(&m, &d), TK_OK);
	assert_int_equal(m.slots[1].key_bits, 255);
	assert_int_equal(m.slots[1].ops, TK_OP_BIT(TK_OP_EDDSA));
	/* X25519 agrees keys; a card that says how is believed within that */
	desc_init(&d, 4);
	d.key_present = true;
	d.spki = xs;
	d.spki_len = xl;
	d.usage = TK_USAGE_SIGN;
	assert_int_equal(tk_drv_model_add_key(&m, &d), TK_ERR_INVALID_ARG);
	d.usage = TK_USAGE_DERIVE;
	assert_int_equal(tk_drv_model_add_key(&m, &d), TK_OK);
	/* a key the card names without a public key: plausible sizes only */
	desc_init(&d, 5);
	d.key_present = true;
	d.key_type = TK_KEY_RSA;
	d.key_bits = 100;
	d.usage = TK_USAGE_DECRYPT;
	assert_int_equal(tk_drv_model_add_key(&m, &d), TK_ERR_INVALID_ARG);
	d.key_bits = 2048;
	d.ops = TK_OP_BIT(TK_OP_RSA_PKCS1_SIGN); /* outside the usage */
	assert_int_equal(tk_drv_model_add_key(&m, &d), TK_ERR_INVALID_ARG);
	d.ops = TK_OP_BIT(TK_OP_RSA_PKCS1_DECRYPT);
	assert_int_equal(tk_drv_model_add_key(&m, &d), TK_OK);
	/* nothing at all */
	desc_init(&d, 6);
	assert_int_equal(tk_drv_model_add_key(&m, &d), TK_ERR_INVALID_ARG);
	/* no more than TK_DRV_MAX_KEYS */
	for (uint32_t i = 10; m.nslots < TK_DRV_MAX_KEYS; i++) {
		desc_init(&d, i);
		d.key_present = true;
		d.key_type = TK_KEY_EC;
		d.key_bits = 256;
		assert_int_equal(tk_drv_model_add_key(&m, &d), TK_OK);
	}
	desc_init(&d, 200);
	d.key_present = true;
	d.key_type = TK_KEY_EC;
	d.key_bits = 256;
	assert_int_equal(tk_drv_model_add_key(&m, &d), TK_ERR_TOO_LONG);

	memset(&tok, 0, sizeof(tok));
	tok.size = sizeof(tok);
	snprintf(tok.label, sizeof(tok.label), "label");
	tok.pin_min_len = 4;
	tok.pin_max_len = 3;
	assert_int_equal(tk_drv_model_set_token(&m, &tok), TK_ERR_INVALID_ARG);
	tok.pin_max_len = 300;
	assert_int_equal(tk_drv_model_set_token(&m, &tok), TK_ERR_INVALID_ARG);
	tok.pin_max_len = 8;
	memset(tok.serial, 'x', sizeof(tok.serial));
	assert_int_equal(tk_drv_model_set_token(&m, &tok), TK_ERR_INVALID_ARG);
	tok.serial[0] = '\0';
	assert_int_equal(tk_drv_model_set_token(&m, &tok), TK_OK);
	assert_string_equal(m.label, "label");
	tk_drv_model_clear(&m);
	assert_int_equal(m.nslots, 0);
	OPENSSL_free(ecs);
	OPENSSL_free(eds);
	OPENSSL_free(xs);
	OPENSSL_free(cert);
	OPENSSL_free(edcert);
	EVP_PKEY_free(ec);
	EVP_PKEY_free(ed);
	EVP_PKEY_free(x);
}

static void
test_spki_build(void **state)
{
	EVP_PKEY *ec = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-384");
	EVP_PKEY *x = EVP_PKEY_Q_keygen(NULL, NULL, "X25519");
	uint8_t pt[97], raw[32], *spki = NULL, *want;
	size_t pl = sizeof(pt), rl = sizeof(raw), sl = 0, wl;
	int kt;
	unsigned kb;

	(void)state;
	assert_int_equal(EVP_PKEY_get_octet_string_param(ec, OSSL_PKEY_PARAM_ENCODED_PUBLIC_KEY, pt,
	                                                 pl, &pl),
	                 1);
	assert_int_equal(tk_spki_build(TK_KEY_EC, 384, pt, pl, NULL, 0, &spki, &sl), TK_OK);
	want = spki_of(ec, &wl);
	assert_int_equal(sl, wl);
	assert_memory_equal(spki, want, wl);
	free(spki);
	OPENSSL_free(want);
	assert_int_equal(tk_spki_build(TK_KEY_EC, 256, pt, pl, NULL, 0, &spki, &sl),
	                 TK_ERR_MALFORMED);
	pt[pl - 1] ^= 1; /* off the curve */
	assert_int_equal(tk_spki_build(TK_KEY_EC, 384, pt, pl, NULL, 0, &spki, &sl),
	                 TK_ERR_MALFORMED);
	assert_null(spki);
	assert_int_equal(tk_spki_build(TK_KEY_EC, 224, pt, pl, NULL, 0, &spki, &sl),
	                 TK_ERR_NOT_SUPPORTED);
	assert_int_equal(EVP_PKEY_get_raw_public_key(x, raw, &rl), 1);
	assert_int_equal(tk_spki_build(TK_KEY_X25519, 255, raw, rl, NULL, 0, &spki, &sl), TK_OK);
	assert_int_equal(tk_spki_info(spki, sl, &kt, &kb), TK_OK);
	assert_int_equal(kt, TK_KEY_X25519);
	assert_int_equal(kb, 255);
	/* trailing bytes after the SPKI */
	spki = realloc(spki, sl + 1);
	spki[sl] = 0;
	assert_int_equal(tk_spki_info(spki, sl + 1, &kt, &kb), TK_ERR_MALFORMED);
	free(spki);
	assert_int_equal(tk_spki_build(TK_KEY_ED25519, 255, raw, 31, NULL, 0, &spki, &sl),
	                 TK_ERR_MALFORMED);
	/* RSA: even exponent, wrong size */
	memset(pt, 0xC5, sizeof(pt));
	assert_int_equal(tk_spki_build(TK_KEY_RSA, 0, pt, 96, (const uint8_t *)"\x01\x00\x00", 3,
	                               &spki, &sl),
	                 TK_ERR_MALFORMED);
	assert_int_equal(tk_spki_build(TK_KEY_RSA, 1024, pt, 96, (const uint8_t *)"\x01\x00\x01", 3,
	                               &spki, &sl),
	                 TK_ERR_MALFORMED);
	assert_int_equal(tk_spki_build(TK_KEY_RSA, 768, pt, 96, (const uint8_t *)"\x01\x00\x01", 3,
	                               &spki, &sl),
	                 TK_OK);
	free(spki);
	EVP_PKEY_free(ec);
	EVP_PKEY_free(x);
}

static int
nop_probe(tk_card_t *c, void **s, char *id, size_t cap)
{
	(void)c;
	(void)s;
	(void)id;
	(void)cap;
	return TK_ERR_NOT_SUPPORTED;
}

/* A driver built for API 1 (its table ends before pin_verify_pad) loads
 * under this host, and the host never reads the member it does not have. */
static void
test_driver_api1(void **state)
{
	static tk_driver_t v1, v2;

	(void)state;
	memcpy(&v1, tk_builtin_drivers[0], sizeof(v1));
	v1.name = "apione";
	v1.api = 1;
	v1.size = (uint32_t)offsetof(tk_driver_t, pin_verify_pad);
	/* what follows the table in memory is not the driver's: poison it */
	v1.pin_verify_pad = (int (*)(void *, int, int *))(uintptr_t)1;
	assert_int_equal(tk_driver_check(&v1, "test"), TK_OK);
	assert_false(tk_drv_has_pinpad(tk_drv_entry_of(&v1)));
	/* the same table as API 2 with a pad function: offered */
	memcpy(&v2, tk_builtin_drivers[0], sizeof(v2));
	v2.name = "apitwo";
	assert_int_equal(tk_driver_check(&v2, "test"), TK_OK);
	assert_true(tk_drv_has_pinpad(tk_drv_entry_of(&v2)) == (v2.pin_verify_pad != NULL));
	assert_non_null(v2.pin_verify_pad); /* the PIV driver has one */
}

/* A driver built for API 2 (its table ends before pin_change_pad) loads
 * under this host and keeps its pad VERIFY; the host offers no pad change
 * and never reads the member it does not have. */
static void
test_driver_api2(void **state)
{
	static tk_driver_t v2, v3;
	int retries = 7;

	(void)state;
	memcpy(&v2, tk_builtin_drivers[0], sizeof(v2));
	v2.name = "apitwo";
	v2.api = 2;
	v2.size = (uint32_t)offsetof(tk_driver_t, pin_change_pad);
	/* what follows the table in memory is not the driver's: poison it */
	v2.pin_change_pad = (int (*)(void *, int, int *))(uintptr_t)1;
	assert_int_equal(tk_driver_check(&v2, "test"), TK_OK);
	assert_true(tk_drv_has_pinpad(tk_drv_entry_of(&v2)));
	assert_false(tk_drv_has_pinpad_change(tk_drv_entry_of(&v2)));
	/* the checked call says so without calling through the poison */
	assert_int_equal(tk_drv_pin_change_pad(tk_drv_entry_of(&v2), NULL, TK_USER_USER, &retries),
	                 TK_ERR_NOT_SUPPORTED);
	assert_int_equal(retries, -1);
	/* an API-3 size with api 2 is not read either: both must cover it */
	v2.size = sizeof(tk_driver_t);
	assert_false(tk_drv_has_pinpad_change(tk_drv_entry_of(&v2)));
	/* the same table as API 3: offered (the PIV driver has one) */
	memcpy(&v3, tk_builtin_drivers[0], sizeof(v3));
	v3.name = "apithree";
	assert_true(v3.api >= 3);
	assert_int_equal(tk_driver_check(&v3, "test"), TK_OK);
	assert_non_null(v3.pin_change_pad);
	assert_true(tk_drv_has_pinpad_change(tk_drv_entry_of(&v3)));
}

static void
test_driver_check(void **state)
{
	tk_driver_t d;

	(void)state;
	memcpy(&d, tk_builtin_drivers[0], sizeof(d));
	assert_int_equal(tk_driver_check(&d, "test"), TK_OK);
	d.api = 0;
	assert_int_equal(tk_driver_check(&d, "test"), TK_ERR_INVALID_ARG);
	d.api = TK_DRIVER_API + 1;
	assert_int_equal(tk_driver_check(&d, "test"), TK_ERR_INVALID_ARG);
	d.api = TK_DRIVER_API;
	d.size = 16;
	assert_int_equal(tk_driver_check(&d, "test"), TK_ERR_INVALID_ARG);
	d.size = sizeof(d);
	d.name = "Bad-Name";
	assert_int_equal(tk_driver_check(&d, "test"), TK_ERR_INVALID_ARG);
	d.name = "a_name_far_too_long";
	assert_int_equal(tk_driver_check(&d, "test"), TK_ERR_INVALID_ARG);
	d.name = "ok";
	d.probe = nop_probe;
	d.free = NULL;
	assert_int_equal(tk_driver_check(&d, "test"), TK_ERR_INVALID_ARG);
	assert_int_equal(tk_driver_check(NULL, "test"), TK_ERR_INVALID_ARG);
}

static const char *
names(void)
{
	static char out[256];
	const tk_drv_entry_t *const *l = NULL;
	size_t n = 0;

	out[0] = '\0';
	assert_int_equal(tk_drivers_list(&l, &n), TK_OK);
	for (size_t i = 0; i < n; i++)
		snprintf(out + strlen(out), sizeof(out) - strlen(out), "%s%s", i ? "," : "",
		         tk_drv_entry_name(l[i]));
	return out;
}

static tk_token_t *
open_ok(struct pgx *f)
{
	tk_token_opts_t o;
	tk_token_t *t = NULL;
	tk_token_info_t info;

	tk_token_opts_init(&o);
	o.cache_dir = "";
	assert_int_equal(tk_token_open(f->card, &o, &t), TK_OK);
	assert_int_equal(tk_token_info(t, &info), TK_OK);
	assert_string_equal(info.driver, "openpgp");
	return t;
}

static void
test_bad_plugins(void **state)
{
	struct pgx *f = pgx_new(TK_VCARD_APPLET_OPENPGP);
	char path[512];
	tk_token_t *t;

	(void)state;
	assert_non_null(f);
	assert_int_equal(pgx_generate(f, 2, pgx_ed25519, sizeof(pgx_ed25519)), 0);
	pgx_reset(f);
	snprintf(path, sizeof(path), "%s/test-plugins:%s/plugins", TK_TEST_BUILD_DIR,
	         TK_TEST_BUILD_DIR);
	setenv("TOKENKIT_PLUGIN_PATH", path, 1);
	unsetenv("TOKENKIT_DRIVERS");
	tk_log_set_sink(sink, NULL);
	tk_log_set_level(TK_LOG_WARN);
	logbuf[0] = '\0';

	/* all found, sorted, after the built-in driver; the two that cannot be
	 * used are refused at load, saying why */
	tk_drivers_rescan();
	assert_string_equal(names(), "piv,badcode,badid,badmodel,openpgp");
	assert_true(count("built for driver API 5, this tokenkit has 4") == 1);
	assert_true(count("driver-incomplete.so refused: driver table incomplete") == 1);

	/* each bad one returns nonsense once, is named, disabled, and the card
	 * reaches the OpenPGP driver all the same */
	t = open_ok(f);
	tk_token_free(&t);
	assert_int_equal(count("probe returned 12345, no tokenkit error code"), 1);
	assert_int_equal(count("driver 'badid' (plugin "), 1);
	assert_true(count("test-plugins/driver-badid.so): probe gave a card identity") == 1);
	assert_int_equal(count("driver 'badmodel'"), 2); /* its key refused, then the load */
	assert_int_equal(count("load described no token"), 1);
	assert_int_equal(count("disabled for this process"), 3);
	assert_int_equal(count("badid probe called"), 1);
	/* not called again */
	t = open_ok(f);
	tk_token_free(&t);
	assert_int_equal(count("badid probe called"), 1);
	assert_int_equal(count("badcode probe called"), 1);
	assert_int_equal(count("disabled for this process"), 3);

	/* TOKENKIT_DRIVERS picks and orders; unknown names are said */
	setenv("TOKENKIT_DRIVERS", "openpgp, piv,nosuch", 1);
	tk_drivers_rescan();
	assert_string_equal(names(), "openpgp,piv");
	assert_true(count("no usable driver plugin 'nosuch'") == 1 ||
	            count("driver-nosuch.so") >= 1);
	unsetenv("TOKENKIT_DRIVERS");
	tk_drivers_rescan();
	tk_log_set_sink(NULL, NULL);
	pgx_free(f);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_model_rules),  cmocka_unit_test(test_spki_build),
	        cmocka_unit_test(test_driver_check), cmocka_unit_test(test_driver_api1),
	        cmocka_unit_test(test_driver_api2),  cmocka_unit_test(test_bad_plugins),
	};

	tk_log_set_level(TK_LOG_NONE);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
