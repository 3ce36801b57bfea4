/* Cards whose ATR announces extended length but that parse short APDUs
 * only (issue 8 §5): the virtual card's no-extended option, the PIV
 * driver's fallback to short APDUs (command chaining, GET RESPONSE), the
 * cache record that remembers it per card, the warnings that keep an empty
 * or nameless token from going unnoticed, the APDU counts of an honest card
 * (unchanged), and the in-process reader that carries short APDUs only.
 *
 * Before the fallback such a card gave a token with no objects and no word
 * (test_misreport_*: no certificate found). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <openssl/rsa.h>

#include <tokenkit/atr.h>
#include <tokenkit/log.h>
#include <tokenkit/slot.h>

#include "cache.h"
#include "reader.h"
#include "test_piv_fixture.h"
#include "vreader.h"

#define REC_APDU 0x02000002u /* drivers/piv/piv.h PIV_REC_APDU */
#define REC_META(slot) (0x01000000u | (uint32_t)(slot))

static const uint8_t pin_ok[] = "123456";
/* GET DATA CHUID, short (Le 00) and extended (Le 0000) */
static const uint8_t gd_short[] = {0x00, 0xCB, 0x3F, 0xFF, 0x05, 0x5C,
                                   0x03, 0x5F, 0xC1, 0x02, 0x00};
static const uint8_t gd_ext[] = {0x00, 0xCB, 0x3F, 0xFF, 0x00, 0x00, 0x05,
                                 0x5C, 0x03, 0x5F, 0xC1, 0x02, 0x00, 0x00};

/* ---- warnings ------------------------------------------------------------------- */

static char warned[4096];

static void
keep_warnings(void *ctx, int level, const char *msg)
{
	size_t l = strlen(warned);

	(void)ctx;
	if (level == TK_LOG_WARN && l + strlen(msg) + 2 < sizeof(warned)) {
		strcat(warned, msg);
		strcat(warned, "\n");
	}
}

static int
setup(void **state)
{
	struct fx *f = fx_new(true);

	if (f == NULL)
		return -1;
	warned[0] = '\0';
	tk_log_set_sink(keep_warnings, NULL);
	*state = f;
	return 0;
}

static int
teardown(void **state)
{
	tk_log_set_sink(NULL, NULL);
	fx_free(*state);
	return 0;
}

/* ---- helpers ---------------------------------------------------------------------- */

static tk_token_t *
open_token(struct fx *f, bool deferred)
{
	tk_token_t *t = fx_open(f, true, deferred);

	assert_non_null(t);
	return t;
}

/* The same card taken out and put back: a new card handle (what the slot
 * manager gives for a new insertion), the card itself reset. */
static void
reinsert(struct fx *f)
{
	uint8_t atr[40];
	size_t atr_len;

	tk_card_unref(&f->card);
	tk_vcard_reset(f->vc);
	atr_len = tk_vcard_atr(f->vc, atr, sizeof(atr));
	assert_int_equal(tk_card_new_direct("virtual", atr, atr_len, fx_xmit, f, &f->card), TK_OK);
	fx_count_reset(f);
}

static size_t
count_class(tk_token_t *t, int cls)
{
	const tk_object_t *objs;
	size_t n, k = 0;

	assert_int_equal(tk_token_objects(t, &objs, &n), TK_OK);
	for (size_t i = 0; i < n; i++)
		k += objs[i].cls == cls && objs[i].id[0] != 0xF9;
	return k;
}

/* Attestation certificates (ids F9 and F9 + slot). */
static size_t
count_attest(tk_token_t *t)
{
	const tk_object_t *objs;
	size_t n, k = 0;

	assert_int_equal(tk_token_objects(t, &objs, &n), TK_OK);
	for (size_t i = 0; i < n; i++)
		k += objs[i].cls == TK_OBJ_CERT && objs[i].id[0] == 0xF9;
	return k;
}

static bool
card_extended(const struct fx *f)
{
	tk_card_caps_t caps;

	tk_card_caps(f->card, &caps);
	return caps.extended_apdu;
}

/* The card's whole object set: four certificates, three of them with
 * their key (9E's certificate names another key), and the attestations of
 * the four keys (generated on the card) with the device certificate. */
static void
assert_full_token(tk_token_t *t)
{
	assert_int_equal(count_class(t, TK_OBJ_CERT), 4);
	assert_int_equal(count_class(t, TK_OBJ_PRIVKEY), 4);
	assert_int_equal(count_attest(t), 4 + 1);
}

/* RSA-2048 with 9C: a 256-byte input, so over short APDUs a chained
 * command; the signature is checked with the card's public key. */
static void
assert_rsa_signs(struct fx *f, tk_token_t *t)
{
	const tk_object_t *key = fx_find(t, TK_OBJ_PRIVKEY, 0x02);
	uint8_t block[256], sig[256], plain[256];
	size_t sl = 0, pl = sizeof(plain);
	EVP_PKEY_CTX *ctx;

	assert_non_null(key);
	memset(block, 0x5A, sizeof(block));
	block[0] = 0x00;
	tk_key_auth_t auth = {.op_pin = pin_ok, .op_pin_len = 6};

	assert_int_equal(tk_token_key_op_auth(t, key, TK_OP_RSA_RAW, &auth, block, 256, sig,
	                                      sizeof(sig), &sl),
	                 TK_OK);
	ctx = EVP_PKEY_CTX_new(f->pub[1], NULL);
	assert_int_equal(EVP_PKEY_verify_recover_init(ctx), 1);
	assert_int_equal(EVP_PKEY_CTX_set_rsa_padding(ctx, RSA_NO_PADDING), 1);
	assert_int_equal(EVP_PKEY_verify_recover(ctx, plain, &pl, sig, sl), 1);
	assert_int_equal(pl, 256);
	assert_memory_equal(plain, block, 256);
	EVP_PKEY_CTX_free(ctx);
}

static tk_cache_t *
load_cache(struct fx *f, tk_token_t *t)
{
	tk_token_info_t ti;
	tk_cache_t *c = NULL;

	assert_int_equal(tk_token_info(t, &ti), TK_OK);
	assert_int_equal(tk_cache_load(f->dir, ti.identity, &c), TK_OK);
	return c;
}

/* ---- the virtual card's option ------------------------------------------------- */

static uint16_t
raw_sw(tk_vcard_t *vc, const uint8_t *cmd, size_t len)
{
	uint8_t resp[512];
	size_t n = tk_vcard_process(vc, cmd, len, resp, sizeof(resp));

	assert_true(n >= 2);
	return (uint16_t)(resp[n - 2] << 8 | resp[n - 1]);
}

static void
test_vcard_option(void **state)
{
	struct fx *f = *state;
	static const uint8_t select[] = {0x00, 0xA4, 0x04, 0x00, 0x05, 0xA0,
	                                 0x00, 0x00, 0x03, 0x08, 0x00};
	uint8_t atr[40];
	size_t atr_len = tk_vcard_atr(f->vc, atr, sizeof(atr));
	tk_atr_t a;

	/* the ATR announces extended length whatever the option */
	assert_int_equal(tk_vcard_set_option(f->vc, "no-extended=6700"), TK_OK);
	atr_len = tk_vcard_atr(f->vc, atr, sizeof(atr));
	assert_int_equal(tk_atr_parse(atr, atr_len, &a), TK_OK);
	assert_true(tk_atr_extended_length(&a));

	assert_int_equal(raw_sw(f->vc, select, sizeof(select)), 0x9000);
	assert_int_equal(raw_sw(f->vc, gd_ext, sizeof(gd_ext)), 0x6700);
	assert_int_equal(raw_sw(f->vc, gd_short, sizeof(gd_short)), 0x9000);
	assert_int_equal(tk_vcard_set_option(f->vc, "no-extended=6a82"), TK_OK);
	assert_int_equal(raw_sw(f->vc, gd_ext, sizeof(gd_ext)), 0x6A82);
	assert_int_equal(raw_sw(f->vc, gd_short, sizeof(gd_short)), 0x9000);
	assert_int_equal(tk_vcard_set_option(f->vc, "no-extended=off"), TK_OK);
	assert_int_equal(raw_sw(f->vc, gd_ext, sizeof(gd_ext)), 0x9000);

	assert_int_equal(tk_vcard_set_option(f->vc, "no-extended=6D00"), TK_ERR_INVALID_ARG);
	assert_int_equal(tk_vcard_set_option(f->vc, "no-extended"), TK_ERR_NOT_FOUND);
	assert_int_equal(tk_vcard_set_option(f->vc, "bogus=1"), TK_ERR_NOT_FOUND);
}

/* ---- the driver ------------------------------------------------------------------ */

/* 6700 to the extended CHUID read: asked again in short form at once. */
static void
test_misreport_6700(void **state)
{
	struct fx *f = *state;
	tk_token_t *t;
	tk_cache_t *c;
	const uint8_t *rec;
	size_t rl;

	assert_int_equal(tk_vcard_set_option(f->vc, "no-extended=6700"), TK_OK);
	t = open_token(f, false);
	assert_full_token(t);
	assert_false(card_extended(f));
	assert_non_null(strstr(warned, "virtual"));
	assert_non_null(strstr(warned, "short APDUs"));
	c = load_cache(f, t);
	assert_int_equal(tk_cache_get(c, REC_APDU, &rec, &rl), TK_OK);
	assert_int_equal(rl, 1);
	tk_cache_free(&c);
	assert_rsa_signs(f, t);
	tk_token_free(&t);

	/* warm: SELECT, the CHUID (6700), the CHUID in short form */
	reinsert(f);
	t = open_token(f, true);
	print_message("misreporting card (6700), warm open: %u APDUs\n", f->count);
	assert_int_equal(f->count, 3);
	assert_full_token(t);
	assert_false(card_extended(f));
	assert_rsa_signs(f, t);
	tk_token_free(&t);
}

/* 6A82 to the extended CHUID read: no CHUID, or a misread command? */
static void
test_misreport_6a82(void **state)
{
	struct fx *f = *state;
	tk_token_t *t;
	tk_token_info_t ti;
	bool changed = true;

	assert_int_equal(tk_vcard_set_option(f->vc, "no-extended=6a82"), TK_OK);
	t = open_token(f, false);
	assert_full_token(t);
	assert_false(card_extended(f));
	assert_non_null(strstr(warned, "short APDUs"));
	assert_int_equal(tk_token_info(t, &ti), TK_OK);
	assert_string_not_equal(ti.serial, "");
	tk_token_free(&t);

	/* warm: the cache remembers; the card switches before it proves its
	 * identity with the CHUID in short form (SELECT, CHUID 6A82, serial,
	 * CHUID), and before any key operation */
	reinsert(f);
	warned[0] = '\0';
	t = open_token(f, true);
	print_message("misreporting card (6A82), warm open: %u APDUs\n", f->count);
	assert_int_equal(f->count, 4);
	assert_false(card_extended(f));
	assert_full_token(t);
	assert_int_equal(tk_token_revalidate(t, &changed), TK_OK);
	assert_false(changed);
	assert_rsa_signs(f, t);
	assert_null(strstr(warned, "no CHUID"));
	tk_token_free(&t);
}

/* A cache entry written before the check (every object absent, no record):
 * an empty model under extended length makes the driver ask in short form
 * after all, and read the card again. */
static void
test_misreport_old_cache(void **state)
{
	struct fx *f = *state;
	tk_token_t *t;
	tk_cache_t *c;

	assert_int_equal(tk_vcard_set_option(f->vc, "no-extended=6a82"), TK_OK);
	t = open_token(f, false);
	c = load_cache(f, t);
	tk_token_free(&t);
	tk_cache_del(c, REC_APDU);
	tk_cache_del(c, 0x5FC102);
	for (size_t i = 0; i < 4; i++) {
		assert_int_equal(tk_cache_put(c, fx_tags[i], NULL, 0), TK_OK);
		assert_int_equal(tk_cache_put(c, REC_META(fx_slots[i]), NULL, 0), TK_OK);
	}
	assert_int_equal(tk_cache_store(f->dir, c), TK_OK);
	tk_cache_free(&c);

	reinsert(f);
	t = open_token(f, true);
	assert_false(card_extended(f));
	assert_full_token(t);
	assert_rsa_signs(f, t);
	tk_token_free(&t);
}

/* An honest card pays nothing: the same APDUs as before, no record. */
static void
test_honest_card(void **state)
{
	struct fx *f = *state;
	tk_token_t *t;
	tk_cache_t *c;
	const uint8_t *rec;
	size_t rl;

	t = open_token(f, false);
	print_message("honest card, cold open: %u APDUs\n", f->count);
	/* SELECT, CHUID, serial, discovery, key history, 4 x (certificate,
	 * metadata, ATTEST), the attestation certificate 5FFF01 */
	assert_int_equal(f->count, 5 + 4 * 3 + 1);
	assert_true(card_extended(f));
	c = load_cache(f, t);
	assert_int_equal(tk_cache_get(c, REC_APDU, &rec, &rl), TK_ERR_NOT_FOUND);
	tk_cache_free(&c);
	tk_token_free(&t);
	reinsert(f);
	t = open_token(f, true);
	assert_int_equal(f->count, 2); /* SELECT, CHUID */
	assert_full_token(t);
	assert_string_equal(warned, "");
	tk_token_free(&t);
}

/* PUT DATA of an empty CHUID container deletes it (the card's own rule). */
static void
delete_chuid(struct fx *f)
{
	static const uint8_t del[] = {0x5C, 0x03, 0x5F, 0xC1, 0x02, 0x53, 0x00};

	assert_int_equal(fx_select(f), 0);
	assert_int_equal(fx_mgm_auth(f), 0);
	assert_int_equal(fx_apdu(f, 0, 0xDB, 0x3F, 0xFF, del, sizeof(del), NULL, 0, NULL), 0x9000);
	tk_vcard_reset(f->vc);
	tk_card_bump_generation(f->card);
	fx_count_reset(f);
}

/* No CHUID (an honest card): a warning naming the reader, one short GET
 * DATA on the cold open only, none when warm. */
static void
test_no_chuid(void **state)
{
	struct fx *f = *state;
	tk_token_t *t;

	delete_chuid(f);
	t = open_token(f, false);
	assert_full_token(t);
	assert_true(card_extended(f));
	assert_non_null(strstr(warned, "virtual: the card has no CHUID"));
	tk_token_free(&t);
	reinsert(f);
	warned[0] = '\0';
	t = open_token(f, true);
	assert_int_equal(f->count, 3); /* SELECT, CHUID, serial */
	assert_true(card_extended(f));
	assert_non_null(strstr(warned, "no CHUID"));
	tk_token_free(&t);
}

/* A card with nothing on it: a token, and a warning that it is empty. */
static void
test_empty_card_warns(void **state)
{
	struct fx *f = fx_new(false);
	tk_token_t *t;

	(void)state;
	assert_non_null(f);
	t = open_token(f, false);
	assert_int_equal(count_class(t, TK_OBJ_CERT), 0);
	assert_non_null(strstr(warned, "virtual: no certificate or key could be read"));
	tk_token_free(&t);
	fx_free(f);
}

/* ---- the in-process reader that carries short APDUs only ------------------------ */

static tk_card_t *
vreader_card(tk_slotmgr_t **m, const char *spec)
{
	tk_slotmgr_opts_t o;
	tk_slot_info_t *infos = NULL;
	tk_card_t *card = NULL;
	size_t n = 0;

	tk_slotmgr_opts_init(&o);
	o.readers = spec;
	o.recovery_log = "";
	assert_int_equal(tk_slotmgr_new(&o, m), TK_OK);
	assert_int_equal(tk_slotmgr_wait_ready(*m, 5000), TK_OK);
	/* the card turns valid once its reader connected it (bounded) */
	for (int i = 0; i < 500 && card == NULL; i++) {
		assert_int_equal(tk_slotmgr_list(*m, &infos, &n), TK_OK);
		if (n == 1 && infos[0].state == TK_SLOT_VALID)
			assert_int_equal(tk_slotmgr_card(*m, infos[0].slot_id, &card), TK_OK);
		free(infos);
		if (card == NULL)
			usleep(10000);
	}
	assert_non_null(card);
	return card;
}

static void
test_vreader_short_apdu(void **state)
{
	tk_slotmgr_t *m = NULL;
	tk_card_t *card;
	tk_card_caps_t caps;
	tk_token_t *t = NULL;
	tk_token_opts_t o;
	uint8_t resp[300];
	size_t n = 0;

	(void)state;
	card = vreader_card(&m, "vcard:short-apdu");
	tk_card_caps(card, &caps);
	assert_false(caps.extended_apdu);
	assert_int_equal(caps.max_cmd, 261);
	assert_int_equal(tk_card_transmit(card, gd_ext, sizeof(gd_ext), resp, sizeof(resp), &n, 0),
	                 TK_ERR_TOO_LONG);
	tk_token_opts_init(&o);
	o.cache_dir = "";
	assert_int_equal(tk_token_open(card, &o, &t), TK_OK);
	tk_token_free(&t);
	tk_card_unref(&card);
	tk_slotmgr_free(&m);

	/* and a misreporting card behind the in-process reader */
	card = vreader_card(&m, "vcard:no-extended=6700");
	tk_card_caps(card, &caps);
	assert_true(caps.extended_apdu);
	assert_int_equal(tk_token_open(card, &o, &t), TK_OK);
	tk_card_caps(card, &caps);
	assert_false(caps.extended_apdu);
	tk_token_free(&t);
	tk_card_unref(&card);
	tk_slotmgr_free(&m);
	assert_int_equal(
	        tk_slotmgr_new(&(tk_slotmgr_opts_t){.readers = "vcard:no-extended=6D00"}, &m),
	        TK_ERR_INVALID_ARG);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test_setup_teardown(test_vcard_option, setup, teardown),
	        cmocka_unit_test_setup_teardown(test_misreport_6700, setup, teardown),
	        cmocka_unit_test_setup_teardown(test_misreport_6a82, setup, teardown),
	        cmocka_unit_test_setup_teardown(test_misreport_old_cache, setup, teardown),
	        cmocka_unit_test_setup_teardown(test_honest_card, setup, teardown),
	        cmocka_unit_test_setup_teardown(test_no_chuid, setup, teardown),
	        cmocka_unit_test_setup_teardown(test_empty_card_warns, setup, teardown),
	        cmocka_unit_test(test_vreader_short_apdu),
	};

	/* the in-process reader, without its plugin */
	if (tk_reader_backend_register(&tk_reader_vcard_ops) != TK_OK)
		return 1;
	return cmocka_run_group_tests(tests, NULL, NULL);
}
