/* Unit tests for hexadecimal text (core/hex.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include <tokenkit/err.h>
#include <tokenkit/hex.h>

static void
test_decode(void **state)
{
	uint8_t out[16];
	size_t n = 99;

	(void)state;
	assert_int_equal(tk_hex_decode("00a4040005A000000308", out, sizeof(out), &n), TK_OK);
	assert_int_equal(n, 10);
	assert_memory_equal(out, "\x00\xA4\x04\x00\x05\xA0\x00\x00\x03\x08", 10);
	/* Separators between byte pairs. */
	assert_int_equal(tk_hex_decode(" 3B:fd\t13\r\n00 ", out, sizeof(out), &n), TK_OK);
	assert_int_equal(n, 4);
	assert_memory_equal(out, "\x3B\xFD\x13\x00", 4);
	assert_int_equal(tk_hex_decode("", out, sizeof(out), &n), TK_OK);
	assert_int_equal(n, 0);
	assert_int_equal(tk_hex_decode("ff", out, 1, &n), TK_OK);
	assert_int_equal(out[0], 0xFF);
}

static void
test_decode_errors(void **state)
{
	uint8_t out[4];
	size_t n = 99;

	(void)state;
	assert_int_equal(tk_hex_decode("abc", out, sizeof(out), &n), TK_ERR_MALFORMED);
	assert_int_equal(n, 0);
	assert_int_equal(tk_hex_decode("a b", out, sizeof(out), &n), TK_ERR_MALFORMED);
	assert_int_equal(tk_hex_decode("0g", out, sizeof(out), &n), TK_ERR_MALFORMED);
	assert_int_equal(tk_hex_decode("0x12", out, sizeof(out), &n), TK_ERR_MALFORMED);
	assert_int_equal(tk_hex_decode("12-34", out, sizeof(out), &n), TK_ERR_MALFORMED);
	assert_int_equal(tk_hex_decode("0102030405", out, sizeof(out), &n),
	                 TK_ERR_BUFFER_TOO_SMALL);
	assert_int_equal(n, 0);
	assert_int_equal(tk_hex_decode("01", NULL, 0, &n), TK_ERR_BUFFER_TOO_SMALL);
}

static void
test_encode(void **state)
{
	const uint8_t d[] = {0x00, 0x7F, 0xA5, 0xFF};
	char out[3 * sizeof(d) + 1];

	(void)state;
	assert_string_equal(tk_hex_encode(d, sizeof(d), 0, out), "007FA5FF");
	assert_string_equal(tk_hex_encode(d, sizeof(d), ' ', out), "00 7F A5 FF");
	assert_string_equal(tk_hex_encode(d, sizeof(d), ':', out), "00:7F:A5:FF");
	assert_string_equal(tk_hex_encode(d, 0, ' ', out), "");
	assert_ptr_equal(tk_hex_encode(d, 1, ' ', out), out);
}

static void
test_roundtrip(void **state)
{
	uint8_t d[256], back[256];
	char text[3 * 256 + 1];
	size_t n;

	(void)state;
	for (size_t i = 0; i < sizeof(d); i++)
		d[i] = (uint8_t)i;
	tk_hex_encode(d, sizeof(d), ' ', text);
	assert_int_equal(strlen(text), 3 * 256 - 1);
	assert_int_equal(tk_hex_decode(text, back, sizeof(back), &n), TK_OK);
	assert_int_equal(n, 256);
	assert_memory_equal(d, back, 256);
}

int
main(void)
{
	/* clang-format off */
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_decode),
		cmocka_unit_test(test_decode_errors),
		cmocka_unit_test(test_encode),
		cmocka_unit_test(test_roundtrip),
	};
	/* clang-format on */

	return cmocka_run_group_tests(tests, NULL, NULL);
}
