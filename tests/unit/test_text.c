/* Unit tests for tk_text_escape (core/text.c): terminal and JSON escaping
 * of text from readers, cards and files. Expected strings are written from
 * the rules in text.h. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include <tokenkit/text.h>

static const char *
esc(const char *s, size_t len, int mode)
{
	static char out[512];

	tk_text_escape(s, len, mode, out, sizeof(out));
	return out;
}

#define PLAIN(lit) esc(lit, sizeof(lit) - 1, TK_TEXT_PLAIN)
#define JSON(lit) esc(lit, sizeof(lit) - 1, TK_TEXT_JSON)

static void
test_plain(void **state)
{
	(void)state;
	assert_string_equal(PLAIN("Yubico YubiKey OTP+FIDO+CCID 00 00"),
	                    "Yubico YubiKey OTP+FIDO+CCID 00 00");
	/* ANSI: clear screen, set the window title, ring the bell */
	assert_string_equal(PLAIN("a\x1b[2J\x1b]0;t\x07z"), "a\\x1B[2J\\x1B]0;t\\x07z");
	assert_string_equal(PLAIN("l1\nl2\r\tend"), "l1\\nl2\\r\\tend");
	assert_string_equal(PLAIN("back\\slash \"q\""), "back\\\\slash \"q\"");
	assert_string_equal(PLAIN("del\x7f"), "del\\x7F");
	assert_string_equal(PLAIN("nul\0x"), "nul\\x00x");
	/* valid UTF-8 passes: é, €, 𝄞 */
	assert_string_equal(PLAIN("caf\xc3\xa9 \xe2\x82\xac \xf0\x9d\x84\x9e"),
	                    "caf\xc3\xa9 \xe2\x82\xac \xf0\x9d\x84\x9e");
	/* C1 CSI (U+009B), RIGHT-TO-LEFT OVERRIDE, LINE SEPARATOR */
	assert_string_equal(PLAIN("\xc2\x9b"
	                          "2J"),
	                    "\\u009B2J");
	assert_string_equal(PLAIN("abc\xe2\x80\xaetxt.exe"), "abc\\u202Etxt.exe");
	assert_string_equal(PLAIN("a\xe2\x80\xa8"
	                          "b"),
	                    "a\\u2028b");
	/* invalid: a lone continuation byte, overlong '/', a surrogate, a
	 * sequence cut short, above U+10FFFF, 0xFF */
	assert_string_equal(PLAIN("\x80"), "\\x80");
	assert_string_equal(PLAIN("\xc0\xaf"), "\\xC0\\xAF");
	assert_string_equal(PLAIN("\xed\xa0\x80"), "\\xED\\xA0\\x80");
	assert_string_equal(PLAIN("\xe2\x82"), "\\xE2\\x82");
	assert_string_equal(PLAIN("\xf4\x90\x80\x80"), "\\xF4\\x90\\x80\\x80");
	assert_string_equal(PLAIN("\xff"), "\\xFF");
}

static void
test_json(void **state)
{
	(void)state;
	assert_string_equal(JSON("say \"hi\"\\"), "say \\\"hi\\\"\\\\");
	assert_string_equal(JSON("\b\f\n\r\t"), "\\b\\f\\n\\r\\t");
	assert_string_equal(JSON("\x1b[31m\x01\x7f"), "\\u001b[31m\\u0001\\u007f");
	assert_string_equal(JSON("nul\0"), "nul\\u0000");
	assert_string_equal(JSON("caf\xc3\xa9"), "caf\xc3\xa9");
	assert_string_equal(JSON("\xc2\x85\xe2\x80\xae"), "\\u0085\\u202e");
	/* bytes that are not UTF-8 cannot be kept in JSON text */
	assert_string_equal(JSON("a\xff"
	                         "b\xc3"),
	                    "a\\ufffdb\\ufffd");
	assert_string_equal(JSON("/"), "/");
}

static void
test_lengths(void **state)
{
	char out[8];
	size_t n;

	(void)state;
	/* like snprintf: the needed length, whatever fits */
	assert_int_equal(tk_text_escape("abc", 3, TK_TEXT_PLAIN, NULL, 0), 3);
	assert_int_equal(tk_text_escape("\x1b", 1, TK_TEXT_PLAIN, NULL, 0), 4);
	assert_int_equal(tk_text_escape("\x1b", 1, TK_TEXT_JSON, NULL, 0), 6);
	n = tk_text_escape("abcdefghij", 10, TK_TEXT_PLAIN, out, sizeof(out));
	assert_int_equal(n, 10);
	assert_string_equal(out, "abcdefg");
	/* an escape that does not fit is left out whole, and nothing after it */
	n = tk_text_escape("abcde\x1b"
	                   "f",
	                   7, TK_TEXT_PLAIN, out, sizeof(out));
	assert_int_equal(n, 10);
	assert_string_equal(out, "abcde");
	n = tk_text_escape("ab\xe2\x82\xac", 5, TK_TEXT_PLAIN, out, 5);
	assert_int_equal(n, 5);
	assert_string_equal(out, "ab");
	assert_int_equal(tk_text_escape(NULL, 5, TK_TEXT_PLAIN, out, sizeof(out)), 0);
	assert_string_equal(out, "");
	/* exact fit */
	n = tk_text_escape("abcdefg", 7, TK_TEXT_PLAIN, out, sizeof(out));
	assert_int_equal(n, 7);
	assert_string_equal(out, "abcdefg");
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_plain),
	        cmocka_unit_test(test_json),
	        cmocka_unit_test(test_lengths),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
