/* Unit tests for logging and APDU redaction (core/log.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

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
	tk_log_apdu_response(TK_LOG_DEBUG, "<", (const uint8_t *)"\x90\x00", 2, false);
	assert_string_equal(s->last, "< 90 00");
	memset(big, 0xAB, sizeof(big));
	tk_log_apdu_response(TK_LOG_DEBUG, "<", big, sizeof(big), false);
	assert_non_null(strstr(s->last, "... (100 bytes)"));
	/* A response without its command: only the status word. */
	tk_log_apdu(TK_LOG_DEBUG, "<", big, sizeof(big), false);
	assert_string_equal(s->last, "< <redacted 98 bytes> AB AB");
	tk_log_apdu(TK_LOG_DEBUG, "<", (const uint8_t *)"\x90\x00", 2, false);
	assert_string_equal(s->last, "< 90 00");
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

/* Responses whose data is a secret (core/log.c explains each choice). */
static void
test_apdu_response_redacted(void **state)
{
	struct sink *s = *state;
	/* GENERAL AUTHENTICATE, RSA-2048 in 9D: a ciphertext to decrypt */
	const uint8_t ga_dec[] = {0x00, 0x87, 0x07, 0x9D, 0x08, 0x7C, 0x06,
	                          0x82, 0x00, 0x81, 0x02, 0xAA, 0xBB};
	/* GENERAL AUTHENTICATE, P-256 in 82: ECDH with a peer point (cut) */
	const uint8_t ga_ecdh[] = {0x00, 0x87, 0x11, 0x82, 0x06, 0x7C,
	                           0x04, 0x85, 0x02, 0x04, 0x01};
	/* the card's answer: 7C 22 82 20 <shared secret 5A 5A ...> 90 00 */
	uint8_t ga_resp[4 + 32 + 2] = {0x7C, 0x22, 0x82, 0x20};
	const uint8_t gr[] = {0x00, 0xC0, 0x00, 0x00, 0x20};
	const uint8_t pso_dec[] = {0x00, 0x2A, 0x80, 0x86, 0x02, 0x00, 0x01};
	const uint8_t int_auth[] = {0x00, 0x88, 0x00, 0x00, 0x02, 0x01, 0x02};
	/* GET DATA of the PIV printed information (YubiKey's PIN-protected
	 * management key lives there) and of a certificate */
	const uint8_t gd_printed[] = {0x00, 0xCB, 0x3F, 0xFF, 0x05, 0x5C, 0x03, 0x5F, 0xC1, 0x09};
	const uint8_t gd_printed_ext[] = {0x00, 0xCB, 0x3F, 0xFF, 0x00, 0x00, 0x05,
	                                  0x5C, 0x03, 0x5F, 0xC1, 0x09, 0x00, 0x00};
	const uint8_t gd_cert[] = {0x00, 0xCB, 0x3F, 0xFF, 0x05, 0x5C, 0x03, 0x5F, 0xC1, 0x05};
	const uint8_t gd_pgp_private[] = {0x00, 0xCA, 0x01, 0x03, 0x00};
	const uint8_t gd_pgp_name[] = {0x00, 0xCA, 0x00, 0x5B, 0x00};
	const uint8_t sel[] = {0x00, 0xA4, 0x04, 0x00, 0x05, 0xA0, 0x00, 0x00, 0x03, 0x08};
	const uint8_t gen[] = {0x00, 0x47, 0x00, 0x9A, 0x05, 0xAC, 0x03, 0x80, 0x01, 0x11};

	memset(ga_resp + 4, 0x5A, 32);
	ga_resp[sizeof(ga_resp) - 2] = 0x90;
	ga_resp[sizeof(ga_resp) - 1] = 0x00;

	assert_true(tk_apdu_response_is_sensitive(ga_dec, sizeof(ga_dec), false));
	assert_true(tk_apdu_response_is_sensitive(ga_ecdh, sizeof(ga_ecdh), false));
	assert_true(tk_apdu_response_is_sensitive(pso_dec, sizeof(pso_dec), false));
	assert_true(tk_apdu_response_is_sensitive(int_auth, sizeof(int_auth), false));
	assert_true(tk_apdu_response_is_sensitive(gd_printed, sizeof(gd_printed), false));
	assert_true(tk_apdu_response_is_sensitive(gd_printed_ext, sizeof(gd_printed_ext), false));
	assert_true(tk_apdu_response_is_sensitive(gd_pgp_private, sizeof(gd_pgp_private), false));
	/* GET RESPONSE continues whatever came before */
	assert_true(tk_apdu_response_is_sensitive(gr, sizeof(gr), true));
	assert_false(tk_apdu_response_is_sensitive(gr, sizeof(gr), false));
	/* a command too short to judge counts as secret */
	assert_true(tk_apdu_response_is_sensitive(NULL, 0, false));
	assert_true(tk_apdu_response_is_sensitive(gr, 3, false));
	/* public answers */
	assert_false(tk_apdu_response_is_sensitive(gd_cert, sizeof(gd_cert), true));
	assert_false(tk_apdu_response_is_sensitive(gd_pgp_name, sizeof(gd_pgp_name), true));
	assert_false(tk_apdu_response_is_sensitive(sel, sizeof(sel), true));
	assert_false(tk_apdu_response_is_sensitive(gen, sizeof(gen), false));
	/* the command itself is no secret: a ciphertext, a peer point */
	assert_false(tk_apdu_is_sensitive(ga_dec, sizeof(ga_dec)));

	s->all[0] = '\0';
	tk_log_apdu_response(TK_LOG_DEBUG, "<", ga_resp, sizeof(ga_resp),
	                     tk_apdu_response_is_sensitive(ga_ecdh, sizeof(ga_ecdh), false));
	assert_string_equal(s->last, "< <redacted 36 bytes> 90 00");
	tk_log_apdu_response(TK_LOG_DEBUG, "<", ga_resp + 4, 32,
	                     tk_apdu_response_is_sensitive(gr, sizeof(gr), true));
	assert_string_equal(s->last, "< <redacted 30 bytes> 5A 5A");
	/* the status word alone is shown as it is */
	tk_log_apdu_response(TK_LOG_DEBUG, "<", ga_resp + sizeof(ga_resp) - 2, 2, true);
	assert_string_equal(s->last, "< 90 00");
	assert_null(strstr(s->all, "5A 5A 5A"));
	/* public data is shown */
	tk_log_apdu_response(TK_LOG_DEBUG, "<", ga_resp, sizeof(ga_resp), false);
	assert_non_null(strstr(s->last, "7C 22 82 20 5A 5A"));
}

/* The default sink (stderr) turns control characters and invalid UTF-8
 * in a message (a reader name, a label) into visible escapes, one line. */
static void
test_stderr_escaped(void **state)
{
	char path[] = "/tmp/tk-test-log-XXXXXX", buf[512];
	int fd = mkstemp(path), saved;
	ssize_t n;

	(void)state;
	assert_true(fd >= 0);
	saved = dup(2);
	assert_true(saved >= 0);
	assert_int_equal(dup2(fd, 2), 2);
	tk_log_set_sink(NULL, NULL);
	tk_log_warn("reader %s", "Evil\x1b[2J\x1b]0;pwned\x07\nforged line\xff\xc2\x9b");
	fflush(stderr);
	assert_int_equal(dup2(saved, 2), 2);
	close(saved);
	n = pread(fd, buf, sizeof(buf) - 1, 0);
	close(fd);
	unlink(path);
	assert_true(n > 0);
	buf[n] = '\0';
	assert_string_equal(buf, "tokenkit: warn: reader Evil\\x1B[2J\\x1B]0;pwned\\x07\\nforged "
	                         "line\\xFF\\u009B\n");
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
		cmocka_unit_test_setup_teardown(test_apdu_response_redacted, setup, teardown),
		cmocka_unit_test_setup_teardown(test_stderr_escaped, setup, teardown),
	};
	/* clang-format on */

	return cmocka_run_group_tests(tests, NULL, NULL);
}
