/* Unit tests for APDU encoding, decoding and the exchange loop (core/apdu.c).
 * Expected bytes follow ISO/IEC 7816-4 5.1 (cases 1-4, short and extended),
 * 5.1.1.1 (command chaining) and the 61xx / 6Cxx rules for GET RESPONSE. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <tokenkit/apdu.h>
#include <tokenkit/err.h>

static const uint8_t piv_aid[] = {0xA0, 0x00, 0x00, 0x03, 0x08};

static void
check_encode(const tk_apdu_t *a, bool ext, const uint8_t *want, size_t want_len)
{
	uint8_t out[TK_APDU_MAX_EXT_CMD];
	size_t n = 99;
	tk_apdu_t d;
	bool dext = !ext;

	assert_int_equal(tk_apdu_encode(a, ext, out, sizeof(out), &n), TK_OK);
	assert_int_equal(n, want_len);
	assert_memory_equal(out, want, want_len);
	/* And back. */
	assert_int_equal(tk_apdu_decode(out, n, &d, &dext), TK_OK);
	assert_int_equal(d.cla, a->cla);
	assert_int_equal(d.ins, a->ins);
	assert_int_equal(d.p1, a->p1);
	assert_int_equal(d.p2, a->p2);
	assert_int_equal(d.lc, a->lc);
	assert_int_equal(d.le, a->le);
	if (a->lc > 0)
		assert_memory_equal(d.data, a->data, a->lc);
	else
		assert_null(d.data);
	/* Case 1 looks the same in both forms. */
	assert_int_equal(dext, ext && (a->lc > 0 || a->le > 0));
}

static void
test_encode_short(void **state)
{
	tk_apdu_t a = {.cla = 0x00, .ins = 0xA4, .p1 = 0x04, .p2 = 0x00};

	(void)state;
	/* Case 1 */
	check_encode(&a, false, (const uint8_t *)"\x00\xA4\x04\x00", 4);
	check_encode(&a, true, (const uint8_t *)"\x00\xA4\x04\x00", 4);
	/* Case 2S: Ne 256 is Le 00, Ne 16 is Le 10 */
	a.le = 256;
	check_encode(&a, false, (const uint8_t *)"\x00\xA4\x04\x00\x00", 5);
	a.le = 16;
	check_encode(&a, false, (const uint8_t *)"\x00\xA4\x04\x00\x10", 5);
	/* Case 3S: SELECT the PIV application */
	a.le = 0;
	a.data = piv_aid;
	a.lc = sizeof(piv_aid);
	check_encode(&a, false, (const uint8_t *)"\x00\xA4\x04\x00\x05\xA0\x00\x00\x03\x08", 10);
	/* Case 4S */
	a.le = 256;
	check_encode(&a, false, (const uint8_t *)"\x00\xA4\x04\x00\x05\xA0\x00\x00\x03\x08\x00",
	             11);
}

static void
test_encode_extended(void **state)
{
	static uint8_t data[300], want[7 + 300 + 2];
	tk_apdu_t a = {.cla = 0x00, .ins = 0xB0, .p1 = 0x00, .p2 = 0x00};

	(void)state;
	/* Case 2E: Ne 65536 is 00 00 00, Ne 300 is 00 01 2C */
	a.le = 65536;
	check_encode(&a, true, (const uint8_t *)"\x00\xB0\x00\x00\x00\x00\x00", 7);
	a.le = 300;
	check_encode(&a, true, (const uint8_t *)"\x00\xB0\x00\x00\x00\x01\x2C", 7);
	/* Extended form asked for small values still uses it. */
	a.le = 5;
	check_encode(&a, true, (const uint8_t *)"\x00\xB0\x00\x00\x00\x00\x05", 7);

	/* Case 3E: Lc 300 is 00 01 2C */
	for (size_t i = 0; i < sizeof(data); i++)
		data[i] = (uint8_t)i;
	a.ins = 0xDB;
	a.p1 = 0x3F;
	a.p2 = 0xFF;
	a.le = 0;
	a.data = data;
	a.lc = 300;
	memcpy(want, "\x00\xDB\x3F\xFF\x00\x01\x2C", 7);
	memcpy(want + 7, data, 300);
	check_encode(&a, true, want, 307);
	/* Case 4E: Le after Lc is two bytes, 65536 is 00 00 */
	a.le = 65536;
	want[307] = 0x00;
	want[308] = 0x00;
	check_encode(&a, true, want, 309);
	a.le = 0x1234;
	want[307] = 0x12;
	want[308] = 0x34;
	check_encode(&a, true, want, 309);
	/* Case 3E with a small Lc: 00 00 05 */
	a.lc = 5;
	a.le = 0;
	memcpy(want, "\x00\xDB\x3F\xFF\x00\x00\x05", 7);
	check_encode(&a, true, want, 12);
}

static void
test_encode_errors(void **state)
{
	uint8_t out[16], big[300];
	size_t n;
	tk_apdu_t a = {.cla = 0x00, .ins = 0xDB, .data = big};

	(void)state;
	a.lc = 256;
	assert_int_equal(tk_apdu_encode(&a, false, out, sizeof(out), &n), TK_ERR_INVALID_ARG);
	a.lc = 65536;
	assert_int_equal(tk_apdu_encode(&a, true, out, sizeof(out), &n), TK_ERR_INVALID_ARG);
	a.lc = 0;
	a.le = 257;
	assert_int_equal(tk_apdu_encode(&a, false, out, sizeof(out), &n), TK_ERR_INVALID_ARG);
	a.le = 65537;
	assert_int_equal(tk_apdu_encode(&a, true, out, sizeof(out), &n), TK_ERR_INVALID_ARG);
	a.le = 0;
	a.lc = 3;
	a.data = NULL;
	assert_int_equal(tk_apdu_encode(&a, false, out, sizeof(out), &n), TK_ERR_INVALID_ARG);
	a.data = big;
	a.lc = 12;
	assert_int_equal(tk_apdu_encode(&a, false, out, sizeof(out), &n), TK_ERR_BUFFER_TOO_SMALL);
	assert_int_equal(n, 0);
	a.lc = 11; /* 4 + 1 + 11 = 16 fits exactly */
	assert_int_equal(tk_apdu_encode(&a, false, out, sizeof(out), &n), TK_OK);
	assert_int_equal(n, 16);
}

static void
check_decode_err(const char *bytes, size_t len, int want)
{
	tk_apdu_t a;
	bool ext = true;

	assert_int_equal(tk_apdu_decode((const uint8_t *)bytes, len, &a, &ext), want);
	assert_int_equal(a.lc, 0);
	assert_null(a.data);
	assert_false(ext);
}

static void
test_decode_malformed(void **state)
{
	(void)state;
	check_decode_err("", 0, TK_ERR_TRUNCATED);
	check_decode_err("\x00\xA4\x04", 3, TK_ERR_TRUNCATED);
	/* Lc 5 with 2 data bytes */
	check_decode_err("\x00\xA4\x04\x00\x05\xA0\x00", 7, TK_ERR_TRUNCATED);
	/* Lc 2, data, then two bytes where at most one Le may be */
	check_decode_err("\x00\xA4\x04\x00\x02\xAA\xBB\xCC\xDD", 9, TK_ERR_MALFORMED);
	/* C5 = 00 then one byte: neither 2S nor extended */
	check_decode_err("\x00\xB0\x00\x00\x00\x01", 6, TK_ERR_TRUNCATED);
	/* Extended Le 0000 followed by a byte */
	check_decode_err("\x00\xB0\x00\x00\x00\x00\x00\x01", 8, TK_ERR_MALFORMED);
	/* Extended Lc 3 followed by 4 bytes (Le would need 2) */
	check_decode_err("\x00\xD6\x00\x00\x00\x00\x03\xAA\xBB\xCC\xDD", 11, TK_ERR_MALFORMED);
	/* Extended Lc 3 followed by 6 bytes */
	check_decode_err("\x00\xD6\x00\x00\x00\x00\x03\xAA\xBB\xCC\xDD\xEE\xFF", 13,
	                 TK_ERR_MALFORMED);
	/* Extended Lc 5 with one data byte */
	check_decode_err("\x00\xD6\x00\x00\x00\x00\x05\xAA", 8, TK_ERR_TRUNCATED);
}

static void
test_decode_cases(void **state)
{
	tk_apdu_t a;
	bool ext;

	(void)state;
	/* 2S with Le 00 */
	assert_int_equal(tk_apdu_decode((const uint8_t *)"\x00\xCA\x7F\x68\x00", 5, &a, &ext),
	                 TK_OK);
	assert_int_equal(a.le, 256);
	assert_int_equal(a.lc, 0);
	assert_false(ext);
	/* 4S with Le 00: 00 CB 3F FF 03 5C 01 7E 00 */
	assert_int_equal(tk_apdu_decode((const uint8_t *)"\x00\xCB\x3F\xFF\x03\x5C\x01\x7E\x00", 9,
	                                &a, NULL),
	                 TK_OK);
	assert_int_equal(a.ins, 0xCB);
	assert_int_equal(a.lc, 3);
	assert_int_equal(a.data[2], 0x7E);
	assert_int_equal(a.le, 256);
	/* 2E */
	assert_int_equal(
	        tk_apdu_decode((const uint8_t *)"\x00\xB0\x00\x00\x00\x10\x00", 7, &a, &ext),
	        TK_OK);
	assert_int_equal(a.le, 4096);
	assert_true(ext);
}

/* ---- scripted transmit -------------------------------------------------- */

typedef struct step {
	const uint8_t *cmd; /* expected command */
	size_t cmd_len;
	const uint8_t *resp;
	size_t resp_len;
	int err;
} step_t;

typedef struct script {
	const step_t *steps;
	size_t n, next;
	int mismatch; /* 1 + index of the first unexpected command, 0 if none */
} script_t;

static int
fake_xmit(void *ctx, const uint8_t *cmd, size_t cmd_len, uint8_t *resp, size_t cap,
          size_t *resp_len)
{
	script_t *s = ctx;
	const step_t *st;

	*resp_len = 0;
	if (s->next >= s->n) {
		if (s->mismatch == 0)
			s->mismatch = (int)s->next + 1;
		return TK_ERR_INTERNAL;
	}
	st = &s->steps[s->next++];
	if ((cmd_len != st->cmd_len || memcmp(cmd, st->cmd, cmd_len) != 0) && s->mismatch == 0)
		s->mismatch = (int)s->next;
	if (st->err != TK_OK)
		return st->err;
	if (st->resp_len > cap)
		return TK_ERR_BUFFER_TOO_SMALL;
	if (st->resp_len > 0)
		memcpy(resp, st->resp, st->resp_len);
	*resp_len = st->resp_len;
	return TK_OK;
}

#define B(s) (const uint8_t *)(s), sizeof(s) - 1

static void
run(const step_t *steps, size_t n, const tk_apdu_opts_t *opts, const tk_apdu_t *a, size_t cap,
    int want_r, uint16_t want_sw, const uint8_t *want, size_t want_len)
{
	script_t s = {steps, n, 0, 0};
	uint8_t *resp = malloc(cap > 0 ? cap : 1);
	size_t len = 12345;
	uint16_t sw = 1;

	assert_non_null(resp);
	assert_int_equal(tk_apdu_exchange(fake_xmit, &s, opts, a, resp, cap, &len, &sw), want_r);
	assert_int_equal(s.mismatch, 0);
	assert_int_equal(s.next, n);
	assert_int_equal(sw, want_sw);
	assert_int_equal(len, want_len);
	if (want_len > 0)
		assert_memory_equal(resp, want, want_len);
	free(resp);
}

static void
test_exchange_simple(void **state)
{
	tk_apdu_t a = {0x00, 0xA4, 0x04, 0x00, piv_aid, 5, 256};
	const step_t st[] = {
	        {B("\x00\xA4\x04\x00\x05\xA0\x00\x00\x03\x08\x00"), B("\x61\x11\x4F\x90\x00"), 0},
	};

	(void)state;
	run(st, 1, NULL, &a, 64, TK_OK, 0x9000, (const uint8_t *)"\x61\x11\x4F", 3);
	/* Non-9000 is not an error here. */
	const step_t st2[] = {
	        {B("\x00\xA4\x04\x00\x05\xA0\x00\x00\x03\x08\x00"), B("\x6A\x82"), 0},
	};
	run(st2, 1, NULL, &a, 64, TK_OK, 0x6A82, NULL, 0);
}

static void
test_exchange_get_response(void **state)
{
	tk_apdu_t a = {0x00, 0xCB, 0x3F, 0xFF, (const uint8_t *)"\x5C\x01\x7E", 3, 256};
	const step_t st[] = {
	        {B("\x00\xCB\x3F\xFF\x03\x5C\x01\x7E\x00"), B("\x53\x02\x61\x04"), 0},
	        {B("\x00\xC0\x00\x00\x04"), B("\xAA\xBB\xCC\xDD\x61\x00"), 0},
	        {B("\x00\xC0\x00\x00\x00"), B("\x01\x02\x90\x00"), 0},
	};
	/* Logical channel 1 in CLA: GET RESPONSE goes on channel 1 too. */
	tk_apdu_t b = {0x01, 0xCA, 0x00, 0x6E, NULL, 0, 256};
	const step_t st2[] = {
	        {B("\x01\xCA\x00\x6E\x00"), B("\x61\x01"), 0},
	        {B("\x01\xC0\x00\x00\x01"), B("\x77\x90\x00"), 0},
	};

	(void)state;
	run(st, 3, NULL, &a, 64, TK_OK, 0x9000, (const uint8_t *)"\x53\x02\xAA\xBB\xCC\xDD\x01\x02",
	    8);
	run(st2, 2, NULL, &b, 64, TK_OK, 0x9000, (const uint8_t *)"\x77", 1);
	/* Further interindustry class 45 is channel 9 (4 + 5); proprietary
	 * class 80 gets an interindustry GET RESPONSE on the basic channel. */
	b.cla = 0x45;
	const step_t st3[] = {
	        {B("\x45\xCA\x00\x6E\x00"), B("\x61\x01"), 0},
	        {B("\x45\xC0\x00\x00\x01"), B("\x77\x90\x00"), 0},
	};
	run(st3, 2, NULL, &b, 64, TK_OK, 0x9000, (const uint8_t *)"\x77", 1);
	b.cla = 0x80;
	const step_t st4[] = {
	        {B("\x80\xCA\x00\x6E\x00"), B("\x61\x01"), 0},
	        {B("\x00\xC0\x00\x00\x01"), B("\x77\x90\x00"), 0},
	};
	run(st4, 2, NULL, &b, 64, TK_OK, 0x9000, (const uint8_t *)"\x77", 1);
}

static void
test_exchange_get_response_bound(void **state)
{
	tk_apdu_t a = {0x00, 0xB0, 0x00, 0x00, NULL, 0, 256};
	tk_apdu_opts_t o = {.max_get_response = 2};
	const step_t st[] = {
	        {B("\x00\xB0\x00\x00\x00"), B("\x01\x61\x01"), 0},
	        {B("\x00\xC0\x00\x00\x01"), B("\x02\x61\x01"), 0},
	        {B("\x00\xC0\x00\x00\x01"), B("\x03\x61\x01"), 0},
	};
	step_t many[66];

	(void)state;
	run(st, 3, &o, &a, 64, TK_ERR_PROTOCOL, 0x6101, NULL, 0);
	/* Default bound 64: the first command plus 64 GET RESPONSE, all 61 01. */
	many[0] = st[0];
	for (size_t i = 1; i < 66; i++)
		many[i] = st[1];
	run(many, 65, NULL, &a, 256, TK_ERR_PROTOCOL, 0x6101, NULL, 0);
	/* 64 rounds are allowed: the 65th answer ends with 9000. */
	many[64].resp = (const uint8_t *)"\x09\x90\x00";
	many[64].resp_len = 3;
	{
		uint8_t want[65];

		for (size_t i = 0; i < 65; i++)
			want[i] = (uint8_t)(i == 0 ? 1 : i == 64 ? 9 : 2);
		run(many, 65, NULL, &a, 256, TK_OK, 0x9000, want, 65);
	}
}

static void
test_exchange_wrong_le(void **state)
{
	tk_apdu_t a = {0x00, 0xB0, 0x00, 0x00, NULL, 0, 256};
	const step_t st[] = {
	        {B("\x00\xB0\x00\x00\x00"), B("\x6C\x03"), 0},
	        {B("\x00\xB0\x00\x00\x03"), B("\x0A\x0B\x0C\x90\x00"), 0},
	};
	/* A second 6Cxx is not followed again. */
	const step_t st2[] = {
	        {B("\x00\xB0\x00\x00\x00"), B("\x6C\x03"), 0},
	        {B("\x00\xB0\x00\x00\x03"), B("\x6C\x02"), 0},
	};
	/* 6C00 means Le 256 (00); then 61xx still works. */
	tk_apdu_t b = {0x00, 0xB0, 0x00, 0x00, NULL, 0, 16};
	const step_t st3[] = {
	        {B("\x00\xB0\x00\x00\x10"), B("\x6C\x00"), 0},
	        {B("\x00\xB0\x00\x00\x00"), B("\x01\x61\x02"), 0},
	        {B("\x00\xC0\x00\x00\x02"), B("\x02\x03\x90\x00"), 0},
	};

	(void)state;
	run(st, 2, NULL, &a, 64, TK_OK, 0x9000, (const uint8_t *)"\x0A\x0B\x0C", 3);
	run(st2, 2, NULL, &a, 64, TK_OK, 0x6C02, NULL, 0);
	run(st3, 3, NULL, &b, 64, TK_OK, 0x9000, (const uint8_t *)"\x01\x02\x03", 3);
}

static void
test_exchange_chaining(void **state)
{
	static uint8_t data[600], c1[5 + 255], c2[5 + 255], c3[5 + 90];
	tk_apdu_t a = {0x00, 0xDB, 0x3F, 0xFF, data, 600, 0};
	step_t st[3];
	tk_apdu_opts_t o = {.max_chunk = 100};
	static uint8_t d1[5 + 100], d2[5 + 100], d3[5 + 50 + 1];
	step_t st2[3];

	(void)state;
	for (size_t i = 0; i < sizeof(data); i++)
		data[i] = (uint8_t)(i * 7);
	memcpy(c1, "\x10\xDB\x3F\xFF\xFF", 5);
	memcpy(c1 + 5, data, 255);
	memcpy(c2, "\x10\xDB\x3F\xFF\xFF", 5);
	memcpy(c2 + 5, data + 255, 255);
	memcpy(c3, "\x00\xDB\x3F\xFF\x5A", 5);
	memcpy(c3 + 5, data + 510, 90);
	st[0] = (step_t){c1, sizeof(c1), (const uint8_t *)"\x90\x00", 2, 0};
	st[1] = (step_t){c2, sizeof(c2), (const uint8_t *)"\x90\x00", 2, 0};
	st[2] = (step_t){c3, sizeof(c3), (const uint8_t *)"\x90\x00", 2, 0};
	run(st, 3, NULL, &a, 16, TK_OK, 0x9000, NULL, 0);

	/* An error on an intermediate part stops the chain. */
	st[1].resp = (const uint8_t *)"\x6A\x80";
	run(st, 2, NULL, &a, 16, TK_OK, 0x6A80, NULL, 0);

	/* Chunk size 100, 250 bytes, Le on the last part only. */
	a.lc = 250;
	a.le = 256;
	memcpy(d1, "\x10\xDB\x3F\xFF\x64", 5);
	memcpy(d1 + 5, data, 100);
	memcpy(d2, "\x10\xDB\x3F\xFF\x64", 5);
	memcpy(d2 + 5, data + 100, 100);
	memcpy(d3, "\x00\xDB\x3F\xFF\x32", 5);
	memcpy(d3 + 5, data + 200, 50);
	d3[55] = 0x00;
	st2[0] = (step_t){d1, sizeof(d1), (const uint8_t *)"\x90\x00", 2, 0};
	st2[1] = (step_t){d2, sizeof(d2), (const uint8_t *)"\x90\x00", 2, 0};
	st2[2] = (step_t){d3, sizeof(d3), (const uint8_t *)"\xEE\x90\x00", 3, 0};
	run(st2, 3, &o, &a, 16, TK_OK, 0x9000, (const uint8_t *)"\xEE", 1);
}

static void
test_exchange_extended(void **state)
{
	static uint8_t data[600], cmd[7 + 600 + 2];
	tk_apdu_t a = {0x00, 0xDB, 0x3F, 0xFF, data, 600, 65536};
	tk_apdu_opts_t o = {.extended = true};
	step_t st[1];
	/* Short reads still use short form when extended is allowed. */
	tk_apdu_t b = {0x00, 0xB0, 0x00, 0x00, NULL, 0, 256};
	const step_t st2[] = {{B("\x00\xB0\x00\x00\x00"), B("\x90\x00"), 0}};
	/* Without extended length, Ne 65536 is asked as 256 (Le 00). */
	tk_apdu_t c = {0x00, 0xB0, 0x00, 0x00, NULL, 0, 65536};
	const step_t st3[] = {{B("\x00\xB0\x00\x00\x00"), B("\x90\x00"), 0}};
	/* With it, Ne 1000 goes out as 00 03 E8. */
	tk_apdu_t d = {0x00, 0xB0, 0x00, 0x00, NULL, 0, 1000};
	const step_t st4[] = {{B("\x00\xB0\x00\x00\x00\x03\xE8"), B("\x90\x00"), 0}};

	(void)state;
	memset(data, 0xA5, sizeof(data));
	memcpy(cmd, "\x00\xDB\x3F\xFF\x00\x02\x58", 7);
	memcpy(cmd + 7, data, 600);
	cmd[607] = 0;
	cmd[608] = 0;
	st[0] = (step_t){cmd, sizeof(cmd), (const uint8_t *)"\x90\x00", 2, 0};
	run(st, 1, &o, &a, 16, TK_OK, 0x9000, NULL, 0);
	run(st2, 1, &o, &b, 16, TK_OK, 0x9000, NULL, 0);
	run(st3, 1, NULL, &c, 16, TK_OK, 0x9000, NULL, 0);
	run(st4, 1, &o, &d, 16, TK_OK, 0x9000, NULL, 0);
}

static void
test_exchange_extended_chunked(void **state)
{
	/* A reader that takes extended APDUs of at most 300 data bytes: 600
	 * bytes go as two extended parts, Le (00 00 = 65536) on the last. */
	static uint8_t data[600], c1[7 + 300], c2[7 + 300 + 2];
	tk_apdu_t a = {0x00, 0xDB, 0x3F, 0xFF, data, 600, 65536};
	tk_apdu_opts_t o = {.extended = true, .max_chunk = 300};
	step_t st[2];

	(void)state;
	for (size_t i = 0; i < sizeof(data); i++)
		data[i] = (uint8_t)(i ^ 0x5A);
	memcpy(c1, "\x10\xDB\x3F\xFF\x00\x01\x2C", 7);
	memcpy(c1 + 7, data, 300);
	memcpy(c2, "\x00\xDB\x3F\xFF\x00\x01\x2C", 7);
	memcpy(c2 + 7, data + 300, 300);
	c2[307] = 0x00;
	c2[308] = 0x00;
	st[0] = (step_t){c1, sizeof(c1), (const uint8_t *)"\x90\x00", 2, 0};
	st[1] = (step_t){c2, sizeof(c2), (const uint8_t *)"\x42\x90\x00", 3, 0};
	run(st, 2, &o, &a, 16, TK_OK, 0x9000, (const uint8_t *)"\x42", 1);
	/* A last part of at most 255 bytes and Ne 256 goes in short form. */
	a.lc = 400;
	a.le = 256;
	memcpy(c2, "\x00\xDB\x3F\xFF\x64", 5);
	memcpy(c2 + 5, data + 300, 100);
	c2[105] = 0x00;
	st[1] = (step_t){c2, 106, (const uint8_t *)"\x90\x00", 2, 0};
	run(st, 2, &o, &a, 16, TK_OK, 0x9000, NULL, 0);
}

static void
test_exchange_errors(void **state)
{
	tk_apdu_t a = {0x00, 0xB0, 0x00, 0x00, NULL, 0, 256};
	const step_t shortr[] = {{B("\x00\xB0\x00\x00\x00"), B("\x90"), 0}};
	const step_t empty[] = {{B("\x00\xB0\x00\x00\x00"), NULL, 0, 0}};
	const step_t timeout[] = {{B("\x00\xB0\x00\x00\x00"), NULL, 0, TK_ERR_TIMEOUT}};
	const step_t big[] = {{B("\x00\xB0\x00\x00\x00"), B("\x01\x02\x03\x04\x05\x90\x00"), 0}};
	const step_t big2[] = {
	        {B("\x00\xB0\x00\x00\x00"), B("\x01\x02\x03\x61\x02"), 0},
	        {B("\x00\xC0\x00\x00\x02"), B("\x04\x05\x90\x00"), 0},
	};
	size_t len;
	uint16_t sw;

	(void)state;
	run(shortr, 1, NULL, &a, 16, TK_ERR_COMM, 0, NULL, 0);
	run(empty, 1, NULL, &a, 16, TK_ERR_COMM, 0, NULL, 0);
	run(timeout, 1, NULL, &a, 16, TK_ERR_TIMEOUT, 0, NULL, 0);
	run(big, 1, NULL, &a, 4, TK_ERR_BUFFER_TOO_SMALL, 0x9000, NULL, 0);
	run(big, 1, NULL, &a, 5, TK_OK, 0x9000, (const uint8_t *)"\x01\x02\x03\x04\x05", 5);
	run(big2, 2, NULL, &a, 4, TK_ERR_BUFFER_TOO_SMALL, 0x9000, NULL, 0);
	/* Arguments */
	assert_int_equal(tk_apdu_exchange(NULL, NULL, NULL, &a, NULL, 0, &len, &sw),
	                 TK_ERR_INVALID_ARG);
	a.lc = 3;
	assert_int_equal(tk_apdu_exchange(fake_xmit, NULL, NULL, &a, NULL, 0, &len, &sw),
	                 TK_ERR_INVALID_ARG);
}

int
main(void)
{
	/* clang-format off */
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_encode_short),
		cmocka_unit_test(test_encode_extended),
		cmocka_unit_test(test_encode_errors),
		cmocka_unit_test(test_decode_malformed),
		cmocka_unit_test(test_decode_cases),
		cmocka_unit_test(test_exchange_simple),
		cmocka_unit_test(test_exchange_get_response),
		cmocka_unit_test(test_exchange_get_response_bound),
		cmocka_unit_test(test_exchange_wrong_le),
		cmocka_unit_test(test_exchange_chaining),
		cmocka_unit_test(test_exchange_extended),
		cmocka_unit_test(test_exchange_extended_chunked),
		cmocka_unit_test(test_exchange_errors),
	};
	/* clang-format on */

	return cmocka_run_group_tests(tests, NULL, NULL);
}
