/* Unit tests for logging and APDU redaction (core/log.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include <tokenkit/log.h>

struct sink {
	int calls;
	int level;
	char last[1100];
	char all[8192];
};

static void
sink_fn(void *ctx, int level, const char *msg)
{
	struct sink *s = ctx;
	size_t n = strlen(s->all);

	s->calls++;
	s->level = level;
	snprintf(s->last, sizeof(s->last), "%s", msg);
	snprintf(s->all + n, sizeof(s->all) - n, "%s\n", msg);
}

static int
setup(void **state)
{
	static struct sink s;

	memset(&s, 0, sizeof(s));
	tk_log_set_sink(sink_fn, &s);
	tk_log_set_level(TK_LOG_DEBUG);
	*state = &s;
	return 0;
}

static int
teardown(void **state)
{
	(void)state;
	tk_log_set_sink(NULL, NULL);
	tk_log_set_level(TK_LOG_WARN);
	return 0;
}

static void
test_sink_and_levels(void **state)
{
	struct sink *s = *state;

	tk_log_error("boom %d", 42);
	assert_int_equal(s->calls, 1);
	assert_int_equal(s->level, TK_LOG_ERROR);
	assert_string_equal(s->last, "boom 42");
	tk_log_debug("x=%s", "y");
	assert_int_equal(s->calls, 2);
	assert_string_equal(s->last, "x=y");
	/* Above the level: dropped. */
	tk_log_trace("hidden");
	assert_int_equal(s->calls, 2);
	assert_false(tk_log_enabled(TK_LOG_TRACE));
	assert_true(tk_log_enabled(TK_LOG_DEBUG));
	assert_false(tk_log_enabled(TK_LOG_NONE));
	tk_log_set_level(TK_LOG_NONE);
	tk_log_error("quiet");
	assert_int_equal(s->calls, 2);
	assert_int_equal(tk_log_get_level(), TK_LOG_NONE);
	/* Long messages are cut, not overflowed. */
	tk_log_set_level(TK_LOG_INFO);
	{
		char big[2000];

		memset(big, 'a', sizeof(big) - 1);
		big[sizeof(big) - 1] = '\0';
		tk_log_info("%s", big);
		assert_int_equal(strlen(s->last), 1023);
	}
}

static void
test_level_parse(void **state)
{
	(void)state;
	assert_int_equal(tk_log_level_parse("error"), TK_LOG_ERROR);
	assert_int_equal(tk_log_level_parse("WARN"), TK_LOG_WARN);
	assert_int_equal(tk_log_level_parse("warning"), TK_LOG_WARN);
	assert_int_equal(tk_log_level_parse("info"), TK_LOG_INFO);
	assert_int_equal(tk_log_level_parse("Debug"), TK_LOG_DEBUG);
	assert_int_equal(tk_log_level_parse("trace"), TK_LOG_TRACE);
	assert_int_equal(tk_log_level_parse("none"), TK_LOG_NONE);
	assert_int_equal(tk_log_level_parse("verbose"), -1);
	assert_int_equal(tk_log_level_parse(""), -1);
	assert_int_equal(tk_log_level_parse(NULL), -1);
}

static void
test_apdu_plain(void **state)
{
	struct sink *s = *state;
	const uint8_t sel[] = {0x00, 0xA4, 0x04, 0x00, 0x05, 0xA0, 0x00, 0x00, 0x03, 0x08};
	uint8_t big[100];

	tk_log_apdu(TK_LOG_DEBUG, ">", sel, sizeof(sel), true);
	assert_string_equal(s->last, "> 00 A4 04 00 05 A0 00 00 03 08");
	tk_log_apdu(TK_LOG_DEBUG, "<", (const uint8_t *)"\x90\x00", 2, false);
	assert_string_equal(s->last, "< 90 00");
	memset(big, 0xAB, sizeof(big));
	tk_log_apdu(TK_LOG_DEBUG, "<", big, sizeof(big), false);
	assert_non_null(strstr(s->last, "... (100 bytes)"));
	/* Not shown above the level. */
	s->calls = 0;
	tk_log_apdu(TK_LOG_TRACE, ">", sel, sizeof(sel), true);
	assert_int_equal(s->calls, 0);
}

static void
test_apdu_redacted(void **state)
{
	struct sink *s = *state;
	/* VERIFY PIV PIN "123456" padded with FF */
	const uint8_t verify[] = {0x00, 0x20, 0x00, 0x80, 0x08, 0x31, 0x32,
	                          0x33, 0x34, 0x35, 0x36, 0xFF, 0xFF};
	/* CHANGE REFERENCE DATA: old PIN 123456, new PIN 654321 */
	const uint8_t change[] = {0x00, 0x24, 0x00, 0x80, 0x10, 0x31, 0x32, 0x33, 0x34, 0x35, 0x36,
	                          0xFF, 0xFF, 0x36, 0x35, 0x34, 0x33, 0x32, 0x31, 0xFF, 0xFF};
	/* RESET RETRY COUNTER: PUK 12345678, new PIN 654321 */
	const uint8_t reset[] = {0x00, 0x2C, 0x00, 0x80, 0x10, 0x31, 0x32, 0x33, 0x34, 0x35, 0x36,
	                         0x37, 0x38, 0x36, 0x35, 0x34, 0x33, 0x32, 0x31, 0xFF, 0xFF};
	/* VERIFY with odd INS: the PIN "123456" inside a BER-TLV object 81 06 */
	const uint8_t verify_odd[] = {0x00, 0x21, 0x00, 0x80, 0x08, 0x81, 0x06,
	                              0x31, 0x32, 0x33, 0x34, 0x35, 0x36};
	/* Chained VERIFY part (CLA 10) */
	const uint8_t chained[] = {0x10, 0x20, 0x00, 0x80, 0x04, 0x31, 0x32, 0x33, 0x34};

	assert_true(tk_apdu_is_sensitive(verify, sizeof(verify)));
	assert_true(tk_apdu_is_sensitive(change, sizeof(change)));
	assert_true(tk_apdu_is_sensitive(reset, sizeof(reset)));
	assert_true(tk_apdu_is_sensitive(verify_odd, sizeof(verify_odd)));
	assert_false(tk_apdu_is_sensitive((const uint8_t *)"\x00\xA4\x04\x00", 4));
	assert_false(tk_apdu_is_sensitive(NULL, 0));
	assert_false(tk_apdu_is_sensitive(verify, 3));

	tk_log_apdu(TK_LOG_DEBUG, ">", verify, sizeof(verify), true);
	assert_string_equal(s->last, "> 00 20 00 80 <redacted 9 bytes>");
	tk_log_apdu(TK_LOG_DEBUG, ">", change, sizeof(change), true);
	assert_string_equal(s->last, "> 00 24 00 80 <redacted 17 bytes>");
	tk_log_apdu(TK_LOG_DEBUG, ">", reset, sizeof(reset), true);
	assert_string_equal(s->last, "> 00 2C 00 80 <redacted 17 bytes>");
	tk_log_apdu(TK_LOG_DEBUG, ">", verify_odd, sizeof(verify_odd), true);
	assert_string_equal(s->last, "> 00 21 00 80 <redacted 9 bytes>");
	tk_log_apdu(TK_LOG_DEBUG, ">", chained, sizeof(chained), true);
	assert_string_equal(s->last, "> 10 20 00 80 <redacted 5 bytes>");
	/* No PIN digit ever reached the sink, in hex or as text. */
	assert_int_equal(s->calls, 5);
	assert_null(strstr(s->all, "31"));
	assert_null(strstr(s->all, "36 35"));
	assert_null(strstr(s->all, "FF"));
	assert_null(strstr(s->all, "123"));
}

int
main(void)
{
	/* clang-format off */
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_sink_and_levels, setup, teardown),
		cmocka_unit_test_setup_teardown(test_level_parse, setup, teardown),
		cmocka_unit_test_setup_teardown(test_apdu_plain, setup, teardown),
		cmocka_unit_test_setup_teardown(test_apdu_redacted, setup, teardown),
	};
	/* clang-format on */

	return cmocka_run_group_tests(tests, NULL, NULL);
}
