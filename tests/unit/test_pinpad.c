/* Unit tests for the PC/SC part 10 codec (core/pinpad.c): the feature list
 * a driver answers to CM_IOCTL_GET_FEATURE_REQUEST, and the PIN structures
 * compared field by field with pcsc-lite's own packed PIN_VERIFY_STRUCTURE
 * and PIN_MODIFY_STRUCTURE (the layout libccid reads). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include <PCSC/reader.h>

#include <tokenkit/err.h>

#include "pinpad.h"

static const uint8_t verify_apdu[] = {0x00, 0x20, 0x00, 0x80, 0x08, 0xFF, 0xFF,
                                      0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF};

static void
test_features(void **state)
{
	/* what libccid lists for a reader with a PIN pad (tags 06, 07, 0A,
	 * 12, 13 and 01 among others) */
	static const uint8_t list[] = {0x06, 0x04, 0x42, 0x33, 0x00, 0x06, 0x07, 0x04, 0x42,
	                               0x33, 0x00, 0x07, 0x0A, 0x04, 0x42, 0x33, 0x00, 0x0A,
	                               0x12, 0x04, 0x42, 0x33, 0x00, 0x12, 0x13, 0x04, 0x42,
	                               0x00, 0x00, 0x01, 0x33, 0x04, 0x42, 0x00, 0x00, 0x33};
	tk_pcsc_features_t f;
	uint8_t bad[sizeof(list)];

	(void)state;
	assert_int_equal(tk_pcsc_features_parse(list, sizeof(list), &f), TK_OK);
	assert_int_equal(f.code[TK_PCSC_FEATURE_VERIFY_PIN_DIRECT], 0x42330006);
	assert_int_equal(f.code[TK_PCSC_FEATURE_MODIFY_PIN_DIRECT], 0x42330007);
	assert_int_equal(f.code[0x0A], 0x4233000A);
	assert_int_equal(f.code[0x13], 0x42000001);
	assert_int_equal(f.code[TK_PCSC_FEATURE_VERIFY_PIN_START], 0);
	/* none: a reader without features */
	assert_int_equal(tk_pcsc_features_parse(NULL, 0, &f), TK_OK);
	assert_int_equal(f.code[TK_PCSC_FEATURE_VERIFY_PIN_DIRECT], 0);
	/* cut short: nothing of it is believed */
	assert_int_equal(tk_pcsc_features_parse(list, sizeof(list) - 1, &f), TK_ERR_TRUNCATED);
	assert_int_equal(f.code[TK_PCSC_FEATURE_VERIFY_PIN_DIRECT], 0);
	assert_int_equal(tk_pcsc_features_parse(list, 1, &f), TK_ERR_TRUNCATED);
	/* a length other than 4 */
	memcpy(bad, list, sizeof(list));
	bad[1] = 0x05;
	assert_int_equal(tk_pcsc_features_parse(bad, sizeof(bad), &f), TK_ERR_MALFORMED);
	/* a tag twice, a code of 0 */
	memcpy(bad, list, sizeof(list));
	bad[6] = 0x06;
	assert_int_equal(tk_pcsc_features_parse(bad, sizeof(bad), &f), TK_ERR_MALFORMED);
	memcpy(bad, list, sizeof(list));
	memset(bad + 2, 0, 4);
	assert_int_equal(tk_pcsc_features_parse(bad, sizeof(bad), &f), TK_ERR_MALFORMED);
	assert_int_equal(tk_pcsc_features_parse(list, sizeof(list), NULL), TK_ERR_INVALID_ARG);
}

static void
test_verify_structure(void **state)
{
	tk_card_pinpad_t req = {.op = TK_PINPAD_VERIFY,
	                        .timeout_s = 30,
	                        .format = 0x82,
	                        .block = 0x08,
	                        .length_format = 0x00,
	                        .min_len = 6,
	                        .max_len = 8,
	                        .apdu = verify_apdu,
	                        .apdu_len = sizeof(verify_apdu)};
	uint8_t want[sizeof(PIN_VERIFY_STRUCTURE) + sizeof(verify_apdu)], got[400];
	PIN_VERIFY_STRUCTURE *v = (PIN_VERIFY_STRUCTURE *)want;
	size_t n = 0;

	(void)state;
	memset(want, 0, sizeof(want));
	v->bTimerOut = 30;
	v->bTimerOut2 = 30;
	v->bmFormatString = 0x82;
	v->bmPINBlockString = 0x08;
	v->bmPINLengthFormat = 0x00;
	v->wPINMaxExtraDigit = 0x0608;
	v->bEntryValidationCondition = 0x02;
	v->bNumberMessage = 0x01;
	v->wLangId = 0x0409;
	v->bMsgIndex = 0;
	v->ulDataLength = sizeof(verify_apdu);
	memcpy(v->abData, verify_apdu, sizeof(verify_apdu));
	assert_int_equal(tk_pcsc_pin_encode(&req, got, sizeof(got), &n), TK_OK);
	assert_int_equal(n, sizeof(want));
	assert_memory_equal(got, want, n);
	/* no room */
	assert_int_equal(tk_pcsc_pin_encode(&req, got, n - 1, &n), TK_ERR_BUFFER_TOO_SMALL);
	assert_int_equal(n, 0);
	req.apdu_len = 4;
	assert_int_equal(tk_pcsc_pin_encode(&req, got, sizeof(got), &n), TK_ERR_INVALID_ARG);
	req.apdu_len = sizeof(verify_apdu);
	req.op = 7;
	assert_int_equal(tk_pcsc_pin_encode(&req, got, sizeof(got), &n), TK_ERR_INVALID_ARG);
}

static void
test_modify_structure(void **state)
{
	static const uint8_t change[] = {0x00, 0x24, 0x00, 0x80, 0x10, 0xFF, 0xFF, 0xFF,
	                                 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF,
	                                 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF};
	tk_card_pinpad_t req = {.op = TK_PINPAD_MODIFY,
	                        .timeout_s = 0,
	                        .format = 0x82,
	                        .block = 0x08,
	                        .min_len = 6,
	                        .max_len = 8,
	                        .offset_old = 0,
	                        .offset_new = 8,
	                        .confirm = 0x01,
	                        .apdu = change,
	                        .apdu_len = sizeof(change)};
	uint8_t want[sizeof(PIN_MODIFY_STRUCTURE) + sizeof(change)], got[400];
	PIN_MODIFY_STRUCTURE *v = (PIN_MODIFY_STRUCTURE *)want;
	size_t n = 0;

	(void)state;
	memset(want, 0, sizeof(want));
	v->bmFormatString = 0x82;
	v->bmPINBlockString = 0x08;
	v->bInsertionOffsetOld = 0;
	v->bInsertionOffsetNew = 8;
	v->wPINMaxExtraDigit = 0x0608;
	v->bConfirmPIN = 0x01;
	v->bEntryValidationCondition = 0x02;
	v->bNumberMessage = 0x03;
	v->wLangId = 0x0409;
	v->bMsgIndex1 = 0;
	v->bMsgIndex2 = 1;
	v->bMsgIndex3 = 2;
	v->ulDataLength = sizeof(change);
	memcpy(v->abData, change, sizeof(change));
	assert_int_equal(tk_pcsc_pin_encode(&req, got, sizeof(got), &n), TK_OK);
	assert_int_equal(n, sizeof(want));
	assert_memory_equal(got, want, n);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_features),
	        cmocka_unit_test(test_verify_structure),
	        cmocka_unit_test(test_modify_structure),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
