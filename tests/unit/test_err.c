/* Unit tests for error codes and their conversions (core/err.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include <PCSC/pcsclite.h>
#include <PCSC/winscard.h>

#include <tokenkit/err.h>

static const struct {
	int value;
	const char *name;
} all[] = {
#define E(name, value, msg) {value, #name},
        TK_ERR_LIST(E)
#undef E
};
#define NALL (sizeof(all) / sizeof(all[0]))

static void
test_messages_distinct(void **state)
{
	(void)state;
	for (size_t i = 0; i < NALL; i++) {
		const char *m = tk_strerror(all[i].value);

		assert_non_null(m);
		assert_string_not_equal(m, "unknown error");
		assert_string_equal(tk_errname(all[i].value), all[i].name);
		if (all[i].value != 0)
			assert_true(all[i].value < 0);
		for (size_t j = 0; j < i; j++) {
			assert_int_not_equal(all[i].value, all[j].value);
			assert_string_not_equal(m, tk_strerror(all[j].value));
		}
	}
	assert_string_equal(tk_strerror(0), "success");
	assert_string_equal(tk_strerror(-99999), "unknown error");
	assert_string_equal(tk_strerror(5), "unknown error");
	assert_string_equal(tk_errname(-99999), "TK_ERR_UNKNOWN");
	assert_string_equal(tk_errname(TK_ERR_TIMEOUT), "TK_ERR_TIMEOUT");
}

static void
test_from_sw(void **state)
{
	(void)state;
	assert_int_equal(tk_err_from_sw(0x9000), TK_OK);
	/* 63Cx: verification failed, x tries left. */
	assert_int_equal(tk_err_from_sw(0x63C2), TK_ERR_PIN_INCORRECT);
	assert_int_equal(tk_err_from_sw(0x63CF), TK_ERR_PIN_INCORRECT);
	assert_int_equal(tk_err_from_sw(0x6300), TK_ERR_PIN_INCORRECT);
	/* 6983: authentication method blocked. */
	assert_int_equal(tk_err_from_sw(0x6983), TK_ERR_PIN_LOCKED);
	assert_int_equal(tk_err_from_sw(0x6982), TK_ERR_SECURITY_STATUS);
	assert_int_equal(tk_err_from_sw(0x6A82), TK_ERR_FILE_NOT_FOUND);
	assert_int_equal(tk_err_from_sw(0x6A88), TK_ERR_REF_NOT_FOUND);
	assert_int_equal(tk_err_from_sw(0x6A80), TK_ERR_WRONG_DATA);
	assert_int_equal(tk_err_from_sw(0x6A86), TK_ERR_WRONG_P1P2);
	assert_int_equal(tk_err_from_sw(0x6B00), TK_ERR_WRONG_P1P2);
	assert_int_equal(tk_err_from_sw(0x6700), TK_ERR_WRONG_LENGTH);
	assert_int_equal(tk_err_from_sw(0x6985), TK_ERR_CONDITIONS);
	assert_int_equal(tk_err_from_sw(0x6A84), TK_ERR_NO_SPACE);
	assert_int_equal(tk_err_from_sw(0x6581), TK_ERR_MEMORY_FAILURE);
	assert_int_equal(tk_err_from_sw(0x6D00), TK_ERR_INS_NOT_SUPPORTED);
	assert_int_equal(tk_err_from_sw(0x6E00), TK_ERR_CLA_NOT_SUPPORTED);
	assert_int_equal(tk_err_from_sw(0x6A81), TK_ERR_FUNC_NOT_SUPPORTED);
	/* Not in the table, and near misses of masked entries. */
	assert_int_equal(tk_err_from_sw(0x6F00), TK_ERR_SW_UNKNOWN);
	assert_int_equal(tk_err_from_sw(0x63D2), TK_ERR_SW_UNKNOWN);
	assert_int_equal(tk_err_from_sw(0x9001), TK_ERR_SW_UNKNOWN);
	assert_int_equal(tk_err_from_sw(0x0000), TK_ERR_SW_UNKNOWN);
}

static void
test_from_pin_sw(void **state)
{
	int retries = 99;

	(void)state;
	assert_int_equal(tk_err_from_pin_sw(0x9000, &retries), TK_OK);
	assert_int_equal(retries, -1);
	assert_int_equal(tk_err_from_pin_sw(0x63C2, &retries), TK_ERR_PIN_INCORRECT);
	assert_int_equal(retries, 2);
	assert_int_equal(tk_err_from_pin_sw(0x63C0, &retries), TK_ERR_PIN_LOCKED);
	assert_int_equal(retries, 0);
	assert_int_equal(tk_err_from_pin_sw(0x6983, &retries), TK_ERR_PIN_LOCKED);
	assert_int_equal(retries, 0);
	assert_int_equal(tk_err_from_pin_sw(0x6982, &retries), TK_ERR_SECURITY_STATUS);
	assert_int_equal(retries, -1);
	assert_int_equal(tk_err_from_pin_sw(0x63D1, &retries), TK_ERR_SW_UNKNOWN);
	assert_int_equal(retries, -1);
}

static void
test_from_scard(void **state)
{
	(void)state;
	assert_int_equal(tk_err_from_scard(SCARD_S_SUCCESS), TK_OK);
	assert_int_equal(tk_err_from_scard(SCARD_E_TIMEOUT), TK_ERR_TIMEOUT);
	assert_int_equal(tk_err_from_scard(SCARD_E_NO_SERVICE), TK_ERR_NO_SERVICE);
	assert_int_equal(tk_err_from_scard(SCARD_W_REMOVED_CARD), TK_ERR_CARD_REMOVED);
	assert_int_equal(tk_err_from_scard(SCARD_W_RESET_CARD), TK_ERR_CARD_RESET);
	assert_int_equal(tk_err_from_scard(SCARD_E_NO_SMARTCARD), TK_ERR_NO_CARD);
	assert_int_equal(tk_err_from_scard(SCARD_E_SHARING_VIOLATION), TK_ERR_SHARING);
	assert_int_equal(tk_err_from_scard(SCARD_E_INSUFFICIENT_BUFFER), TK_ERR_BUFFER_TOO_SMALL);
	/* The same code held in a 32-bit int (sign-extended on the way to long). */
	assert_int_equal(tk_err_from_scard((long)(int32_t)0x8010000A), TK_ERR_TIMEOUT);
	assert_int_equal(tk_err_from_scard((long)(int32_t)0x80100069), TK_ERR_CARD_REMOVED);
	assert_int_equal(tk_err_from_scard(0x7FFFFFFF), TK_ERR_IO);
	assert_int_equal(tk_err_from_scard((long)(INT64_C(1) << 32)), TK_ERR_IO);
}

int
main(void)
{
	/* clang-format off */
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_messages_distinct),
		cmocka_unit_test(test_from_sw),
		cmocka_unit_test(test_from_pin_sw),
		cmocka_unit_test(test_from_scard),
	};
	/* clang-format on */

	return cmocka_run_group_tests(tests, NULL, NULL);
}
