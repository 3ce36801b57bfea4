/* Unit tests for vpcd message framing (tools/vcard/vpcd_frame.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <tokenkit/err.h>

#include "vpcd_frame.h"

static uint8_t rx[TK_VPCD_FRAME_MAX];

static const uint8_t select_piv[] = {0x00, 0x0A, 0x00, 0xA4, 0x04, 0x00,
                                     0x05, 0xA0, 0x00, 0x00, 0x03, 0x08};

/* Feed the whole stream in chunks of step bytes; collect the messages. */
static size_t
feed_all(tk_vpcd_dec_t *d, const uint8_t *s, size_t len, size_t step, size_t *lens,
         uint8_t firsts[], size_t max)
{
	size_t pos = 0, count = 0;

	while (pos < len) {
		size_t chunk = len - pos < step ? len - pos : step, used, mlen;
		const uint8_t *msg;

		assert_int_equal(tk_vpcd_dec_feed(d, s + pos, chunk, &used, &msg, &mlen), TK_OK);
		assert_true(used > 0 && used <= chunk);
		pos += used;
		if (msg == NULL) {
			assert_int_equal(used, chunk);
			continue;
		}
		assert_true(count < max);
		lens[count] = mlen;
		firsts[count] = mlen > 0 ? msg[0] : 0xEE;
		count++;
	}
	return count;
}

static void
test_split_across_chunks(void **state)
{
	/* power on, get ATR, SELECT, reset */
	uint8_t s[] = {0x00, 0x01, 0x01, 0x00, 0x01, 0x04, 0x00, 0x0A, 0x00, 0xA4, 0x04,
	               0x00, 0x05, 0xA0, 0x00, 0x00, 0x03, 0x08, 0x00, 0x01, 0x02};
	tk_vpcd_dec_t d;
	size_t lens[8];
	uint8_t firsts[8];

	(void)state;
	for (size_t step = 1; step <= sizeof(s); step++) {
		tk_vpcd_dec_init(&d, rx, sizeof(rx));
		assert_int_equal(feed_all(&d, s, sizeof(s), step, lens, firsts, 8), 4);
		assert_int_equal(lens[0], 1);
		assert_int_equal(firsts[0], 0x01);
		assert_int_equal(lens[1], 1);
		assert_int_equal(firsts[1], 0x04);
		assert_int_equal(lens[2], 10);
		assert_int_equal(firsts[2], 0x00);
		assert_int_equal(lens[3], 1);
		assert_int_equal(firsts[3], 0x02);
		assert_int_equal(tk_vpcd_dec_want(&d), TK_VPCD_HDR_LEN);
	}
}

static void
test_want_bounds_reads(void **state)
{
	tk_vpcd_dec_t d;
	const uint8_t *msg = (const uint8_t *)"x";
	size_t used = 99, mlen = 99;

	(void)state;
	tk_vpcd_dec_init(&d, rx, sizeof(rx));
	assert_int_equal(tk_vpcd_dec_want(&d), 2);
	assert_int_equal(tk_vpcd_dec_feed(&d, select_piv, 1, &used, &msg, &mlen), TK_OK);
	assert_int_equal(used, 1);
	assert_null(msg);
	assert_int_equal(mlen, 0);
	assert_int_equal(tk_vpcd_dec_want(&d), 1);
	assert_int_equal(tk_vpcd_dec_feed(&d, select_piv + 1, 1, &used, &msg, &mlen), TK_OK);
	assert_int_equal(tk_vpcd_dec_want(&d), 10);
	assert_int_equal(tk_vpcd_dec_feed(&d, select_piv + 2, 4, &used, &msg, &mlen), TK_OK);
	assert_int_equal(tk_vpcd_dec_want(&d), 6);
	/* Offered more than the message: only its end is taken. */
	{
		uint8_t more[8];

		memcpy(more, select_piv + 6, 6);
		more[6] = 0x00;
		more[7] = 0x01;
		assert_int_equal(tk_vpcd_dec_feed(&d, more, sizeof(more), &used, &msg, &mlen),
		                 TK_OK);
		assert_int_equal(used, 6);
	}
	assert_non_null(msg);
	assert_int_equal(mlen, 10);
	assert_memory_equal(msg, select_piv + 2, 10);
	assert_int_equal(tk_vpcd_dec_want(&d), 2);
	/* Reset wipes the message. */
	tk_vpcd_dec_reset(&d);
	assert_int_equal(rx[0], 0);
	assert_int_equal(rx[9], 0);
	assert_int_equal(tk_vpcd_dec_want(&d), 2);
}

static void
test_empty_and_control(void **state)
{
	const uint8_t s[] = {0x00, 0x00, 0x00, 0x01, 0x00};
	tk_vpcd_dec_t d;
	const uint8_t *msg;
	size_t used, mlen;

	(void)state;
	tk_vpcd_dec_init(&d, rx, sizeof(rx));
	/* A 0-length frame is a message of its own, with a pointer. */
	assert_int_equal(tk_vpcd_dec_feed(&d, s, sizeof(s), &used, &msg, &mlen), TK_OK);
	assert_int_equal(used, 2);
	assert_non_null(msg);
	assert_int_equal(mlen, 0);
	/* 1-byte control message: power off. */
	assert_int_equal(tk_vpcd_dec_feed(&d, s + 2, sizeof(s) - 2, &used, &msg, &mlen), TK_OK);
	assert_int_equal(used, 3);
	assert_non_null(msg);
	assert_int_equal(mlen, 1);
	assert_int_equal(msg[0], 0x00);
	/* Nothing to feed: nothing happens. */
	assert_int_equal(tk_vpcd_dec_feed(&d, NULL, 0, &used, &msg, &mlen), TK_OK);
	assert_int_equal(used, 0);
	assert_null(msg);
	assert_int_equal(tk_vpcd_dec_feed(&d, NULL, 1, &used, &msg, &mlen), TK_ERR_INVALID_ARG);

	/* Without a buffer only empty messages fit. */
	tk_vpcd_dec_init(&d, NULL, 100);
	assert_int_equal(tk_vpcd_dec_feed(&d, s, 2, &used, &msg, &mlen), TK_OK);
	assert_non_null(msg);
	assert_int_equal(mlen, 0);
	assert_int_equal(tk_vpcd_dec_feed(&d, s + 2, 3, &used, &msg, &mlen), TK_ERR_TOO_LONG);
}

static void
test_max_length(void **state)
{
	size_t total = TK_VPCD_HDR_LEN + TK_VPCD_FRAME_MAX;
	uint8_t *s = malloc(total), hdr[TK_VPCD_HDR_LEN];
	tk_vpcd_dec_t d;
	const uint8_t *msg = NULL;
	size_t pos = 0, used, mlen = 0;

	(void)state;
	assert_non_null(s);
	assert_int_equal(tk_vpcd_frame_header(TK_VPCD_FRAME_MAX, s), TK_OK);
	assert_int_equal(s[0], 0xFF);
	assert_int_equal(s[1], 0xFF);
	for (size_t i = 0; i < TK_VPCD_FRAME_MAX; i++)
		s[TK_VPCD_HDR_LEN + i] = (uint8_t)(i * 13);
	tk_vpcd_dec_init(&d, rx, sizeof(rx));
	while (pos < total) {
		size_t chunk = tk_vpcd_dec_want(&d);

		assert_true(chunk > 0 && chunk <= total - pos);
		if (chunk > 4096)
			chunk = 4096;
		assert_int_equal(tk_vpcd_dec_feed(&d, s + pos, chunk, &used, &msg, &mlen), TK_OK);
		assert_int_equal(used, chunk);
		pos += used;
		assert_true(msg == NULL || pos == total);
	}
	assert_non_null(msg);
	assert_int_equal(mlen, TK_VPCD_FRAME_MAX);
	assert_memory_equal(msg, s + TK_VPCD_HDR_LEN, TK_VPCD_FRAME_MAX);

	/* The encoder stops at the same limit. */
	hdr[0] = hdr[1] = 0xAA;
	assert_int_equal(tk_vpcd_frame_header(TK_VPCD_FRAME_MAX + 1u, hdr), TK_ERR_TOO_LONG);
	assert_int_equal(hdr[0], 0);
	assert_int_equal(hdr[1], 0);
	assert_int_equal(tk_vpcd_frame_header(0, hdr), TK_OK);
	assert_memory_equal(hdr, "\x00\x00", 2);
	assert_int_equal(tk_vpcd_frame_header(261, hdr), TK_OK);
	assert_memory_equal(hdr, "\x01\x05", 2);
	free(s);
}

static void
test_garbage_and_small_buffer(void **state)
{
	/* A length the buffer cannot take: error after the header, sticky. */
	uint8_t small[8], s[16];
	tk_vpcd_dec_t d;
	const uint8_t *msg;
	size_t used, mlen;

	(void)state;
	memset(s, 0xA5, sizeof(s));
	tk_vpcd_dec_init(&d, small, sizeof(small));
	assert_int_equal(tk_vpcd_dec_feed(&d, s, sizeof(s), &used, &msg, &mlen), TK_ERR_TOO_LONG);
	assert_int_equal(used, 2);
	assert_null(msg);
	assert_int_equal(tk_vpcd_dec_want(&d), 0);
	assert_int_equal(tk_vpcd_dec_feed(&d, s + 2, 4, &used, &msg, &mlen), TK_ERR_TOO_LONG);
	assert_int_equal(used, 0);
	/* Reset starts over; a frame that fits exactly is fine. */
	tk_vpcd_dec_reset(&d);
	s[0] = 0x00;
	s[1] = 0x08;
	assert_int_equal(tk_vpcd_dec_feed(&d, s, 10, &used, &msg, &mlen), TK_OK);
	assert_int_equal(used, 10);
	assert_int_equal(mlen, 8);
	assert_memory_equal(msg, s + 2, 8);
	s[1] = 0x09;
	assert_int_equal(tk_vpcd_dec_feed(&d, s, 11, &used, &msg, &mlen), TK_ERR_TOO_LONG);

	/* Random bytes with a full buffer: every byte is taken, never too long. */
	{
		uint32_t x = 12345;
		size_t pos = 0, n = 0;
		static uint8_t junk[200000];

		for (size_t i = 0; i < sizeof(junk); i++) {
			x = x * 1103515245u + 12345u;
			junk[i] = (uint8_t)(x >> 16);
		}
		tk_vpcd_dec_init(&d, rx, sizeof(rx));
		while (pos < sizeof(junk)) {
			size_t chunk = sizeof(junk) - pos < 777 ? sizeof(junk) - pos : 777;

			assert_int_equal(
			        tk_vpcd_dec_feed(&d, junk + pos, chunk, &used, &msg, &mlen), TK_OK);
			pos += used;
			n += msg != NULL;
		}
		assert_true(n > 0);
	}
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_split_across_chunks),
	        cmocka_unit_test(test_want_bounds_reads),
	        cmocka_unit_test(test_empty_and_control),
	        cmocka_unit_test(test_max_length),
	        cmocka_unit_test(test_garbage_and_small_buffer),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
