/* Unit tests for the bounded reader and writer (core/buf.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include <tokenkit/buf.h>
#include <tokenkit/err.h>

static const uint8_t data[] = {0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09};

static void
test_get_integers(void **state)
{
	tk_buf_t b;
	uint8_t u8;
	uint16_t u16;
	uint32_t u32;

	(void)state;
	tk_buf_init(&b, data, sizeof(data));
	assert_int_equal(tk_buf_left(&b), 9);
	assert_int_equal(tk_buf_get_u8(&b, &u8), TK_OK);
	assert_int_equal(u8, 0x01);
	assert_int_equal(tk_buf_get_u16be(&b, &u16), TK_OK);
	assert_int_equal(u16, 0x0203);
	assert_int_equal(tk_buf_get_u16le(&b, &u16), TK_OK);
	assert_int_equal(u16, 0x0504);
	assert_int_equal(tk_buf_get_u32le(&b, &u32), TK_OK);
	assert_int_equal(u32, 0x09080706);
	assert_int_equal(tk_buf_left(&b), 0);

	tk_buf_init(&b, data, sizeof(data));
	assert_int_equal(tk_buf_get_u24be(&b, &u32), TK_OK);
	assert_int_equal(u32, 0x010203);
	assert_int_equal(tk_buf_get_u32be(&b, &u32), TK_OK);
	assert_int_equal(u32, 0x04050607);
	assert_int_equal(b.pos, 7);
}

static void
test_bounds(void **state)
{
	tk_buf_t b;
	uint8_t u8 = 0xEE, out[4];
	uint16_t u16 = 0xEEEE;
	uint32_t u32 = 0xEEEEEEEE;
	const uint8_t *p = data;

	(void)state;
	tk_buf_init(&b, data, 3);
	assert_int_equal(tk_buf_get_u32be(&b, &u32), TK_ERR_TRUNCATED);
	assert_int_equal(u32, 0);   /* cleared */
	assert_int_equal(b.pos, 0); /* unchanged */
	assert_int_equal(tk_buf_get_u32le(&b, &u32), TK_ERR_TRUNCATED);
	assert_int_equal(tk_buf_get_u24be(&b, &u32), TK_OK);
	assert_int_equal(tk_buf_get_u8(&b, &u8), TK_ERR_TRUNCATED);
	assert_int_equal(u8, 0);
	assert_int_equal(tk_buf_get_u16be(&b, &u16), TK_ERR_TRUNCATED);
	assert_int_equal(u16, 0);
	assert_int_equal(tk_buf_peek_u8(&b, &u8), TK_ERR_TRUNCATED);
	assert_int_equal(tk_buf_skip(&b, 1), TK_ERR_TRUNCATED);
	assert_int_equal(tk_buf_skip(&b, 0), TK_OK);
	assert_int_equal(tk_buf_get_ptr(&b, &p, 1), TK_ERR_TRUNCATED);
	assert_null(p);

	tk_buf_init(&b, data, 3);
	memset(out, 0xEE, sizeof(out));
	assert_int_equal(tk_buf_get_bytes(&b, out, 4), TK_ERR_TRUNCATED);
	assert_memory_equal(out, "\0\0\0\0", 4);
	assert_int_equal(tk_buf_get_bytes(&b, out, 3), TK_OK);
	assert_memory_equal(out, data, 3);

	/* A huge n must not wrap around. */
	tk_buf_init(&b, data, sizeof(data));
	assert_int_equal(tk_buf_skip(&b, 2), TK_OK);
	assert_int_equal(tk_buf_skip(&b, SIZE_MAX), TK_ERR_TRUNCATED);
	assert_int_equal(tk_buf_get_ptr(&b, &p, SIZE_MAX - 1), TK_ERR_TRUNCATED);
	assert_int_equal(b.pos, 2);
	assert_int_equal(tk_buf_peek_u8(&b, &u8), TK_OK);
	assert_int_equal(u8, 0x03);
	assert_int_equal(b.pos, 2);

	/* NULL data is an empty buffer. */
	tk_buf_init(&b, NULL, 10);
	assert_int_equal(tk_buf_left(&b), 0);
	assert_int_equal(tk_buf_get_u8(&b, &u8), TK_ERR_TRUNCATED);
	assert_int_equal(tk_buf_get_ptr(&b, &p, 0), TK_OK);
	assert_int_equal(tk_buf_skip(&b, 0), TK_OK);
}

static void
test_sub(void **state)
{
	tk_buf_t b, sub;
	uint16_t v;

	(void)state;
	tk_buf_init(&b, data, sizeof(data));
	assert_int_equal(tk_buf_skip(&b, 1), TK_OK);
	assert_int_equal(tk_buf_get_sub(&b, &sub, 4), TK_OK);
	assert_int_equal(tk_buf_left(&sub), 4);
	assert_int_equal(b.pos, 5);
	assert_int_equal(tk_buf_get_u16be(&sub, &v), TK_OK);
	assert_int_equal(v, 0x0203);
	assert_int_equal(tk_buf_get_u16be(&sub, &v), TK_OK);
	assert_int_equal(v, 0x0405);
	/* The sub-buffer stops at its own end even though b goes on. */
	assert_int_equal(tk_buf_get_u16be(&sub, &v), TK_ERR_TRUNCATED);
	assert_int_equal(tk_buf_get_sub(&b, &sub, 5), TK_ERR_TRUNCATED);
	assert_int_equal(tk_buf_left(&sub), 0);
	assert_int_equal(b.pos, 5);
}

static void
test_wbuf(void **state)
{
	uint8_t out[8];
	tk_wbuf_t w;
	uint8_t *p;

	(void)state;
	memset(out, 0, sizeof(out));
	tk_wbuf_init(&w, out, sizeof(out));
	assert_int_equal(tk_wbuf_put_u8(&w, 0xAB), TK_OK);
	assert_int_equal(tk_wbuf_put_u16be(&w, 0x1234), TK_OK);
	assert_int_equal(tk_wbuf_put_u16le(&w, 0x1234), TK_OK);
	assert_int_equal(tk_wbuf_put_bytes(&w, "\xC0\xDE", 2), TK_OK);
	assert_int_equal(w.len, 7);
	assert_memory_equal(out, "\xAB\x12\x34\x34\x12\xC0\xDE", 7);
	/* 4 bytes do not fit in the 1 left: nothing is written, error is sticky. */
	assert_int_equal(tk_wbuf_put_u32be(&w, 0xFFFFFFFF), TK_ERR_BUFFER_TOO_SMALL);
	assert_int_equal(out[7], 0);
	assert_int_equal(w.len, 7);
	assert_int_equal(tk_wbuf_error(&w), TK_ERR_BUFFER_TOO_SMALL);
	/* Even a put that would fit now fails. */
	assert_int_equal(tk_wbuf_put_u8(&w, 0x01), TK_ERR_BUFFER_TOO_SMALL);
	assert_int_equal(out[7], 0);
	assert_null(tk_wbuf_reserve(&w, 0));
	assert_int_equal(w.len, 7);

	tk_wbuf_init(&w, out, sizeof(out));
	assert_int_equal(tk_wbuf_put_u32be(&w, 0x01020304), TK_OK);
	assert_int_equal(tk_wbuf_put_u32le(&w, 0x01020304), TK_OK);
	assert_memory_equal(out, "\x01\x02\x03\x04\x04\x03\x02\x01", 8);
	assert_int_equal(tk_wbuf_put_bytes(&w, NULL, 0), TK_OK);
	assert_int_equal(tk_wbuf_error(&w), TK_OK);

	tk_wbuf_init(&w, out, sizeof(out));
	p = tk_wbuf_reserve(&w, 8);
	assert_ptr_equal(p, out);
	assert_null(tk_wbuf_reserve(&w, 1));
	assert_int_equal(tk_wbuf_error(&w), TK_ERR_BUFFER_TOO_SMALL);
	/* SIZE_MAX must not wrap. */
	tk_wbuf_init(&w, out, sizeof(out));
	assert_int_equal(tk_wbuf_put_u8(&w, 1), TK_OK);
	assert_null(tk_wbuf_reserve(&w, SIZE_MAX));
	assert_int_equal(w.len, 1);

	/* A NULL buffer has no room. */
	tk_wbuf_init(&w, NULL, 100);
	assert_int_equal(w.cap, 0);
	assert_int_equal(tk_wbuf_put_bytes(&w, NULL, 0), TK_OK);
	assert_int_equal(tk_wbuf_put_u8(&w, 1), TK_ERR_BUFFER_TOO_SMALL);
}

int
main(void)
{
	/* clang-format off */
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_get_integers),
		cmocka_unit_test(test_bounds),
		cmocka_unit_test(test_sub),
		cmocka_unit_test(test_wbuf),
	};
	/* clang-format on */

	return cmocka_run_group_tests(tests, NULL, NULL);
}
