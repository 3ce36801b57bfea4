/* The PIV driver on a reader with a PIN pad: the exact command template and
 * PIN format it hands to the reader for VERIFY and CHANGE REFERENCE DATA,
 * and how the card's and the reader's answers come back through
 * tk_token_login_pinpad / tk_token_change_pin_pad.
 *
 * The expected bytes are written from the specifications, not taken from
 * the program: SP 800-73-4 part 2, 3.2.1 (VERIFY: 00 20 00 80, Lc 08, the
 * PIN in ASCII padded with FF to 8 bytes) and 3.2.2 (CHANGE REFERENCE DATA:
 * 00 24 00 80 (PUK: 81), Lc 10, the old PIN's 8-byte block, then the new
 * one's); CCID 1.1, 6.1.11.7 / PC/SC part 10 (bmFormatString 82h: bytes,
 * position 0, left justified, ASCII; bmPINBlockString 08h: no length
 * field, an 8-byte block; bInsertionOffsetOld 0, bInsertionOffsetNew 8;
 * bConfirmPIN 03h: the current PIN is asked for and the new one confirmed;
 * PINs of 6 to 8 digits). The "reader" here answers with a scripted status
 * word or error instead of asking anybody. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "test_piv_fixture.h"

static const uint8_t verify_tpl[] = {0x00, 0x20, 0x00, 0x80, 0x08, 0xFF, 0xFF,
                                     0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF};
static const uint8_t change_tpl[] = {0x00, 0x24, 0x00, 0x80, 0x10, 0xFF, 0xFF,
                                     0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF,
                                     0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF};

/* What the reader was asked, and what it answers next. */
static struct {
	unsigned calls;
	tk_card_pinpad_t req;
	uint8_t apdu[300];
	int rc;      /* the reader's error, or TK_OK ... */
	uint16_t sw; /* ... and the card's status word */
} pad;

static int
pad_xmit(void *ctx, const uint8_t *cmd, size_t cmd_len, uint8_t *resp, size_t resp_cap,
         size_t *resp_len, int timeout_ms)
{
	(void)timeout_ms;
	return fx_xmit(ctx, cmd, cmd_len, resp, resp_cap, resp_len);
}

static int
pad_pinpad(void *ctx, const tk_card_pinpad_t *req, uint8_t *resp, size_t resp_cap, size_t *resp_len,
           int timeout_ms)
{
	(void)ctx;
	(void)timeout_ms;
	pad.calls++;
	pad.req = *req;
	assert_true(req->apdu_len <= sizeof(pad.apdu));
	memcpy(pad.apdu, req->apdu, req->apdu_len);
	pad.req.apdu = pad.apdu;
	*resp_len = 0;
	if (pad.rc != TK_OK)
		return pad.rc;
	assert_true(resp_cap >= 2);
	resp[0] = (uint8_t)(pad.sw >> 8);
	resp[1] = (uint8_t)pad.sw;
	*resp_len = 2;
	return TK_OK;
}

/* The card behind a reader whose pad verifies (and, if modify, changes). */
static tk_token_t *
open_pad(struct fx *f, bool modify)
{
	static const tk_card_backend_t be = {.transmit = pad_xmit, .pinpad = pad_pinpad};
	tk_card_caps_t caps = {.extended_apdu = true,
	                       .max_cmd = 65544,
	                       .max_resp = 65538,
	                       .pin_pad_verify = true,
	                       .pin_pad_modify = modify};
	uint8_t atr[40];
	size_t atr_len = tk_vcard_atr(f->vc, atr, sizeof(atr));

	tk_card_unref(&f->card);
	assert_int_equal(tk_card_new_backend("pinpad", atr, atr_len, &caps, &be, f, 0, &f->card),
	                 TK_OK);
	memset(&pad, 0, sizeof(pad));
	return fx_open(f, false, false);
}

static void
assert_format(int op)
{
	assert_int_equal(pad.req.op, op);
	assert_int_equal(pad.req.format, 0x82);
	assert_int_equal(pad.req.block, 0x08);
	assert_int_equal(pad.req.length_format, 0x00);
	assert_int_equal(pad.req.min_len, 6);
	assert_int_equal(pad.req.max_len, 8);
	assert_int_equal(pad.req.timeout_s, 30);
}

static void
test_change_template(void **state)
{
	struct fx *f = fx_new(false);
	tk_token_info_t ti;
	tk_token_t *t;
	uint8_t puk_tpl[sizeof(change_tpl)];

	(void)state;
	assert_non_null(f);
	t = open_pad(f, true);
	assert_non_null(t);
	assert_int_equal(tk_token_info(t, &ti), TK_OK);
	assert_true(ti.protected_auth_path);

	/* the user PIN */
	pad.sw = 0x9000;
	assert_int_equal(tk_token_change_pin_pad(t, TK_USER_USER), TK_OK);
	assert_int_equal(pad.calls, 1);
	assert_format(TK_PINPAD_MODIFY);
	assert_int_equal(pad.req.apdu_len, sizeof(change_tpl));
	assert_memory_equal(pad.apdu, change_tpl, sizeof(change_tpl));
	assert_int_equal(pad.req.offset_old, 0);
	assert_int_equal(pad.req.offset_new, 8);
	assert_int_equal(pad.req.confirm, 0x03);

	/* the PUK: the same with reference 81 */
	memcpy(puk_tpl, change_tpl, sizeof(puk_tpl));
	puk_tpl[3] = 0x81;
	assert_int_equal(tk_token_change_pin_pad(t, TK_USER_SO), TK_OK);
	assert_int_equal(pad.calls, 2);
	assert_memory_equal(pad.apdu, puk_tpl, sizeof(puk_tpl));

	/* VERIFY on the pad for comparison: one 8-byte block, no confirmation */
	assert_int_equal(tk_token_login_pinpad(t, TK_USER_USER), TK_OK);
	assert_int_equal(pad.calls, 3);
	assert_format(TK_PINPAD_VERIFY);
	assert_int_equal(pad.req.apdu_len, sizeof(verify_tpl));
	assert_memory_equal(pad.apdu, verify_tpl, sizeof(verify_tpl));

	/* no other user; nothing reaches the reader */
	assert_int_equal(tk_token_change_pin_pad(t, TK_USER_CONTEXT), TK_ERR_INVALID_ARG);
	assert_int_equal(tk_token_change_pin_pad(NULL, TK_USER_USER), TK_ERR_INVALID_ARG);
	assert_int_equal(pad.calls, 3);
	tk_token_free(&t);
	fx_free(f);
}

/* The card's answers (63Cx, 6983) and the reader's (cancel, timeout). */
static void
test_change_answers(void **state)
{
	struct fx *f = fx_new(false);
	tk_token_info_t ti;
	tk_token_t *t;

	(void)state;
	assert_non_null(f);
	t = open_pad(f, true);
	assert_non_null(t);

	/* a wrong old PIN: a try spent, the count told */
	pad.sw = 0x63C1;
	assert_int_equal(tk_token_change_pin_pad(t, TK_USER_USER), TK_ERR_PIN_INCORRECT);
	assert_int_equal(tk_token_info(t, &ti), TK_OK);
	assert_int_equal(ti.pin_retries, 1);
	assert_false(ti.pin_locked);
	/* blocked */
	pad.sw = 0x6983;
	assert_int_equal(tk_token_change_pin_pad(t, TK_USER_USER), TK_ERR_PIN_LOCKED);
	assert_int_equal(tk_token_info(t, &ti), TK_OK);
	assert_true(ti.pin_locked);
	/* the reader's answers stay what they are */
	pad.rc = TK_ERR_CANCELLED;
	assert_int_equal(tk_token_change_pin_pad(t, TK_USER_USER), TK_ERR_CANCELLED);
	pad.rc = TK_ERR_TIMEOUT;
	assert_int_equal(tk_token_change_pin_pad(t, TK_USER_USER), TK_ERR_TIMEOUT);
	assert_int_equal(pad.calls, 4);
	tk_token_free(&t);
	fx_free(f);
}

/* A pad that verifies only: no change offered, nothing sent. */
static void
test_change_verify_only_pad(void **state)
{
	struct fx *f = fx_new(false);
	tk_token_info_t ti;
	tk_token_t *t;

	(void)state;
	assert_non_null(f);
	t = open_pad(f, false);
	assert_non_null(t);
	assert_int_equal(tk_token_info(t, &ti), TK_OK);
	assert_true(ti.protected_auth_path); /* VERIFY on the pad still works */
	assert_int_equal(tk_token_change_pin_pad(t, TK_USER_USER), TK_ERR_NOT_SUPPORTED);
	assert_int_equal(pad.calls, 0);
	tk_token_free(&t);
	fx_free(f);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_change_template),
	        cmocka_unit_test(test_change_answers),
	        cmocka_unit_test(test_change_verify_only_pad),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
