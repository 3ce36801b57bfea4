/* Unit tests for BER-TLV, SIMPLE-TLV and COMPACT-TLV (core/tlv.c). Expected
 * values are worked out by hand from ISO/IEC 7816-4 5.2 and X.690 8.1. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include <tokenkit/err.h>
#include <tokenkit/tlv.h>

static int
get1(const uint8_t *p, size_t n, tk_tlv_t *t, size_t *pos)
{
	tk_buf_t b;
	int r;

	tk_buf_init(&b, p, n);
	r = tk_ber_get(&b, t);
	*pos = b.pos;
	return r;
}

static void
test_ber_short(void **state)
{
	const uint8_t d[] = {0x53, 0x03, 0x01, 0x02, 0x03};
	tk_tlv_t t;
	size_t pos;

	(void)state;
	assert_int_equal(get1(d, sizeof(d), &t, &pos), TK_OK);
	assert_int_equal(t.tag, 0x53);
	assert_false(t.constructed);
	assert_int_equal(t.len, 3);
	assert_int_equal(t.hdr_len, 2);
	assert_ptr_equal(t.value, d + 2);
	assert_int_equal(pos, 5);
}

static void
test_ber_multibyte_tags(void **state)
{
	/* 5F C1 05: 5F has tag bits 11111, C1 continues, 05 ends. */
	const uint8_t piv[] = {0x5F, 0xC1, 0x05, 0x01, 0xAA};
	/* 7F 49: constructed (bit 6 of 7F), two bytes. */
	const uint8_t pub[] = {0x7F, 0x49, 0x03, 0x86, 0x01, 0x04};
	/* Four bytes: the largest we take. */
	const uint8_t four[] = {0x5F, 0x81, 0x82, 0x03, 0x00};
	/* Five bytes. */
	const uint8_t five[] = {0x5F, 0x81, 0x82, 0x83, 0x04, 0x00};
	/* First subsequent byte 80: tag number padded with a zero group. */
	const uint8_t padded[] = {0x1F, 0x80, 0x05, 0x00};
	/* EMV style two-byte tag with a small number. */
	const uint8_t emv[] = {0x9F, 0x02, 0x00};
	tk_tlv_t t;
	size_t pos;

	(void)state;
	assert_int_equal(get1(piv, sizeof(piv), &t, &pos), TK_OK);
	assert_int_equal(t.tag, 0x5FC105);
	assert_false(t.constructed);
	assert_int_equal(t.hdr_len, 4);
	assert_int_equal(t.len, 1);
	assert_int_equal(t.value[0], 0xAA);

	assert_int_equal(get1(pub, sizeof(pub), &t, &pos), TK_OK);
	assert_int_equal(t.tag, 0x7F49);
	assert_true(t.constructed);
	assert_int_equal(t.len, 3);
	assert_int_equal(t.hdr_len, 3);

	assert_int_equal(get1(four, sizeof(four), &t, &pos), TK_OK);
	assert_int_equal(t.tag, 0x5F818203);
	assert_int_equal(t.hdr_len, 5);
	assert_int_equal(t.len, 0);

	assert_int_equal(get1(five, sizeof(five), &t, &pos), TK_ERR_MALFORMED);
	assert_int_equal(pos, 0);
	assert_int_equal(t.tag, 0);
	assert_int_equal(get1(padded, sizeof(padded), &t, &pos), TK_ERR_MALFORMED);
	assert_int_equal(get1(emv, sizeof(emv), &t, &pos), TK_OK);
	assert_int_equal(t.tag, 0x9F02);
	assert_true(t.constructed == false);
}

static void
test_ber_long_lengths(void **state)
{
	uint8_t d[4 + 300];
	const uint8_t l83[] = {0x53, 0x83, 0x00, 0x00, 0x02, 0xAA, 0xBB};
	const uint8_t l84[] = {0x53, 0x84, 0x00, 0x00, 0x00, 0x01, 0xCC};
	const uint8_t indef[] = {0x30, 0x80, 0x00, 0x00};
	const uint8_t l85[] = {0x53, 0x85, 0x00, 0x00, 0x00, 0x00, 0x01, 0xCC};
	tk_tlv_t t;
	size_t pos;

	(void)state;
	memset(d, 0x11, sizeof(d));
	/* 81 80: 128 bytes. */
	d[0] = 0x7F;
	d[1] = 0x49;
	d[2] = 0x81;
	d[3] = 0x80;
	assert_int_equal(get1(d, 4 + 128, &t, &pos), TK_OK);
	assert_int_equal(t.len, 128);
	assert_int_equal(t.hdr_len, 4);
	assert_int_equal(pos, 132);
	/* 82 01 00: 256 bytes. */
	d[0] = 0x53;
	d[1] = 0x82;
	d[2] = 0x01;
	d[3] = 0x00;
	assert_int_equal(get1(d, 4 + 256, &t, &pos), TK_OK);
	assert_int_equal(t.len, 256);
	assert_int_equal(t.hdr_len, 4);
	/* One byte short. */
	assert_int_equal(get1(d, 4 + 255, &t, &pos), TK_ERR_TRUNCATED);
	assert_int_equal(pos, 0);
	assert_null(t.value);

	assert_int_equal(get1(l83, sizeof(l83), &t, &pos), TK_OK);
	assert_int_equal(t.len, 2);
	assert_int_equal(t.hdr_len, 5);
	assert_int_equal(t.value[1], 0xBB);
	assert_int_equal(get1(l84, sizeof(l84), &t, &pos), TK_OK);
	assert_int_equal(t.len, 1);
	assert_int_equal(t.hdr_len, 6);
	assert_int_equal(get1(indef, sizeof(indef), &t, &pos), TK_ERR_MALFORMED);
	assert_int_equal(get1(l85, sizeof(l85), &t, &pos), TK_ERR_MALFORMED);
}

static void
test_ber_truncated(void **state)
{
	const uint8_t a[] = {0x5F};
	const uint8_t b[] = {0x5F, 0xC1};
	const uint8_t c[] = {0x53};
	const uint8_t d[] = {0x53, 0x82, 0x01};
	const uint8_t e[] = {0x53, 0x05, 0x01, 0x02};
	const uint8_t huge[] = {0x53, 0x84, 0xFF, 0xFF, 0xFF, 0xFF, 0x00};
	tk_tlv_t t;
	size_t pos;

	(void)state;
	assert_int_equal(get1(a, sizeof(a), &t, &pos), TK_ERR_TRUNCATED);
	assert_int_equal(get1(b, sizeof(b), &t, &pos), TK_ERR_TRUNCATED);
	assert_int_equal(get1(c, sizeof(c), &t, &pos), TK_ERR_TRUNCATED);
	assert_int_equal(get1(d, sizeof(d), &t, &pos), TK_ERR_TRUNCATED);
	assert_int_equal(get1(e, sizeof(e), &t, &pos), TK_ERR_TRUNCATED);
	assert_int_equal(pos, 0);
	assert_int_equal(get1(huge, sizeof(huge), &t, &pos), TK_ERR_TRUNCATED);
	assert_int_equal(get1(NULL, 0, &t, &pos), TK_ERR_NOT_FOUND);
}

static void
test_ber_padding(void **state)
{
	const uint8_t d[] = {0x00, 0xFF, 0x53, 0x01, 0xAA, 0x00, 0xFF, 0x4F, 0x00, 0x00, 0x00};
	tk_buf_t b;
	tk_tlv_t t;

	(void)state;
	tk_buf_init(&b, d, sizeof(d));
	assert_int_equal(tk_ber_get(&b, &t), TK_OK);
	assert_int_equal(t.tag, 0x53);
	assert_ptr_equal(t.value, d + 4);
	assert_int_equal(b.pos, 5);
	assert_int_equal(tk_ber_get(&b, &t), TK_OK);
	assert_int_equal(t.tag, 0x4F);
	assert_int_equal(t.len, 0);
	assert_int_equal(b.pos, 9);
	assert_int_equal(tk_ber_get(&b, &t), TK_ERR_NOT_FOUND);
	assert_int_equal(tk_buf_left(&b), 0);
}

static void
test_ber_find(void **state)
{
	/* 4F 02 A0 00 | 79 03 (4F 01 AA) | 53 00 */
	const uint8_t d[] = {0x4F, 0x02, 0xA0, 0x00, 0x79, 0x03, 0x4F, 0x01, 0xAA, 0x53, 0x00};
	const uint8_t bad[] = {0x4F, 0x01, 0xA0, 0x53, 0x05};
	tk_tlv_t t;

	(void)state;
	assert_int_equal(tk_ber_find(d, sizeof(d), 0x53, &t), TK_OK);
	assert_ptr_equal(t.value, d + 11);
	assert_int_equal(t.len, 0);
	assert_int_equal(tk_ber_find(d, sizeof(d), 0x4F, &t), TK_OK);
	assert_ptr_equal(t.value, d + 2);
	assert_int_equal(t.len, 2);
	assert_int_equal(tk_ber_find(d, sizeof(d), 0x79, &t), TK_OK);
	assert_true(t.constructed);
	/* Only the top level is searched. */
	assert_int_equal(tk_ber_find(d + 4, 5, 0x4F, &t), TK_ERR_NOT_FOUND);
	assert_int_equal(tk_ber_find(d, sizeof(d), 0x99, &t), TK_ERR_NOT_FOUND);
	assert_int_equal(t.tag, 0);
	assert_int_equal(tk_ber_find(bad, sizeof(bad), 0x4F, &t), TK_OK);
	assert_int_equal(tk_ber_find(bad, sizeof(bad), 0x53, &t), TK_ERR_TRUNCATED);
}

struct rec {
	uint32_t tag[16];
	unsigned depth[16];
	size_t n;
};

static int
record(void *ctx, const tk_tlv_t *t, unsigned depth)
{
	struct rec *r = ctx;

	if (r->n < 16) {
		r->tag[r->n] = t->tag;
		r->depth[r->n] = depth;
	}
	r->n++;
	return 0;
}

static int
stop_at_53(void *ctx, const tk_tlv_t *t, unsigned depth)
{
	(void)ctx;
	(void)depth;
	return t->tag == 0x53 ? 42 : 0;
}

static void
test_ber_validate_walk(void **state)
{
	/* 7F49 { 81 01 AA, 82 01 BB } */
	const uint8_t pub[] = {0x7F, 0x49, 0x06, 0x81, 0x01, 0xAA, 0x82, 0x01, 0xBB};
	/* 70 { 61 { 4F 00 } 00 } 53 00 (with padding inside 70) */
	const uint8_t nest[] = {0x70, 0x05, 0x61, 0x02, 0x4F, 0x00, 0x00, 0x53, 0x00};
	/* 70 claims 3 bytes; the inner 53 claims 5. */
	const uint8_t bad[] = {0x70, 0x03, 0x53, 0x05, 0xAA};
	uint8_t deep[80];
	struct rec rec = {0};

	(void)state;
	assert_int_equal(tk_ber_validate(pub, sizeof(pub), 1), TK_OK);
	assert_int_equal(tk_ber_validate(pub, sizeof(pub), 0), TK_ERR_TOO_DEEP);
	assert_int_equal(tk_ber_validate(nest, sizeof(nest), 2), TK_OK);
	assert_int_equal(tk_ber_validate(nest, sizeof(nest), 1), TK_ERR_TOO_DEEP);
	assert_int_equal(tk_ber_validate(bad, sizeof(bad), 4), TK_ERR_TRUNCATED);
	assert_int_equal(tk_ber_validate(pub, sizeof(pub), TK_BER_DEPTH_LIMIT + 1),
	                 TK_ERR_INVALID_ARG);
	assert_int_equal(tk_ber_validate(NULL, 0, 1), TK_OK);

	/* 40 nested constructed objects (30 xx 30 xx ...): too deep at the limit. */
	for (size_t i = 0; i < 40; i++) {
		deep[2 * i] = 0x30;
		deep[2 * i + 1] = (uint8_t)(2 * (39 - i));
	}
	assert_int_equal(tk_ber_validate(deep, 80, TK_BER_DEPTH_LIMIT), TK_ERR_TOO_DEEP);
	assert_int_equal(tk_ber_validate(deep + 2 * 10, 60, 30), TK_OK);
	assert_int_equal(tk_ber_validate(deep + 2 * 10, 60, 29), TK_ERR_TOO_DEEP);

	assert_int_equal(tk_ber_walk(nest, sizeof(nest), 2, record, &rec), TK_OK);
	assert_int_equal(rec.n, 4);
	assert_int_equal(rec.tag[0], 0x70);
	assert_int_equal(rec.depth[0], 0);
	assert_int_equal(rec.tag[1], 0x61);
	assert_int_equal(rec.depth[1], 1);
	assert_int_equal(rec.tag[2], 0x4F);
	assert_int_equal(rec.depth[2], 2);
	assert_int_equal(rec.tag[3], 0x53);
	assert_int_equal(rec.depth[3], 0);
	assert_int_equal(tk_ber_walk(nest, sizeof(nest), 2, stop_at_53, NULL), 42);
}

static void
test_ber_encode(void **state)
{
	uint8_t out[400], v[300];
	tk_wbuf_t w;
	tk_buf_t b;
	tk_tlv_t t;

	(void)state;
	assert_int_equal(tk_ber_hdr_len(0x53, 0), 2);
	assert_int_equal(tk_ber_hdr_len(0x53, 127), 2);
	assert_int_equal(tk_ber_hdr_len(0x53, 128), 3);
	assert_int_equal(tk_ber_hdr_len(0x5FC105, 255), 5);
	assert_int_equal(tk_ber_hdr_len(0x5FC105, 256), 6);
	assert_int_equal(tk_ber_hdr_len(0x7F49, 65536), 6);
	assert_int_equal(tk_ber_hdr_len(0x53, 0x1000000), 6);
	/* Invalid tags: 1F alone announces more bytes, 5F85 ends on a byte with
	 * bit 8 set, 7F 80 .. is padded, 53 01 has a single-byte first byte. */
	assert_int_equal(tk_ber_hdr_len(0x1F, 1), 0);
	assert_int_equal(tk_ber_hdr_len(0x5F85, 1), 0);
	assert_int_equal(tk_ber_hdr_len(0x7F8001, 1), 0);
	assert_int_equal(tk_ber_hdr_len(0x5301, 1), 0);
	assert_int_equal(tk_ber_hdr_len(0, 1), 0);
	assert_int_equal(tk_ber_hdr_len(0xFF, 1), 0);

	tk_wbuf_init(&w, out, sizeof(out));
	assert_int_equal(tk_ber_put(&w, 0x5FC105, "\x01\x02\x03", 3), TK_OK);
	assert_int_equal(w.len, 7);
	assert_memory_equal(out, "\x5F\xC1\x05\x03\x01\x02\x03", 7);

	memset(v, 0x5A, sizeof(v));
	tk_wbuf_init(&w, out, sizeof(out));
	assert_int_equal(tk_ber_put(&w, 0x7F49, v, 200), TK_OK);
	assert_memory_equal(out, "\x7F\x49\x81\xC8", 4);
	assert_int_equal(w.len, 204);
	tk_buf_init(&b, out, w.len);
	assert_int_equal(tk_ber_get(&b, &t), TK_OK);
	assert_int_equal(t.tag, 0x7F49);
	assert_int_equal(t.len, 200);

	tk_wbuf_init(&w, out, sizeof(out));
	assert_int_equal(tk_ber_put(&w, 0x53, v, 300), TK_OK);
	assert_memory_equal(out, "\x53\x82\x01\x2C", 4);
	assert_int_equal(tk_ber_put_hdr(&w, 0x1F, 1), TK_ERR_INVALID_ARG);

	/* Too small: sticky error. */
	tk_wbuf_init(&w, out, 3);
	assert_int_equal(tk_ber_put(&w, 0x53, v, 2), TK_ERR_BUFFER_TOO_SMALL);
	assert_int_equal(tk_wbuf_error(&w), TK_ERR_BUFFER_TOO_SMALL);
	assert_int_equal(tk_ber_put(&w, 0x53, NULL, 0), TK_ERR_BUFFER_TOO_SMALL);
}

static void
test_stlv(void **state)
{
	uint8_t d[4 + 256], out[300];
	const uint8_t s[] = {0x01, 0x03, 0xAA, 0xBB, 0xCC};
	const uint8_t tag0[] = {0x00, 0x00};
	const uint8_t tagff[] = {0xFF, 0x00};
	const uint8_t shortlen[] = {0x02, 0xFF, 0x01};
	tk_buf_t b;
	tk_tlv_t t;
	tk_wbuf_t w;

	(void)state;
	tk_buf_init(&b, s, sizeof(s));
	assert_int_equal(tk_stlv_get(&b, &t), TK_OK);
	assert_int_equal(t.tag, 1);
	assert_int_equal(t.len, 3);
	assert_int_equal(t.hdr_len, 2);
	assert_int_equal(t.value[2], 0xCC);
	assert_int_equal(tk_buf_left(&b), 0);

	memset(d, 0x77, sizeof(d));
	d[0] = 0x02;
	d[1] = 0xFF;
	d[2] = 0x01;
	d[3] = 0x00;
	tk_buf_init(&b, d, sizeof(d));
	assert_int_equal(tk_stlv_get(&b, &t), TK_OK);
	assert_int_equal(t.len, 256);
	assert_int_equal(t.hdr_len, 4);
	tk_buf_init(&b, d, sizeof(d) - 1);
	assert_int_equal(tk_stlv_get(&b, &t), TK_ERR_TRUNCATED);
	assert_int_equal(b.pos, 0);

	tk_buf_init(&b, tag0, sizeof(tag0));
	assert_int_equal(tk_stlv_get(&b, &t), TK_ERR_MALFORMED);
	tk_buf_init(&b, tagff, sizeof(tagff));
	assert_int_equal(tk_stlv_get(&b, &t), TK_ERR_MALFORMED);
	tk_buf_init(&b, shortlen, sizeof(shortlen));
	assert_int_equal(tk_stlv_get(&b, &t), TK_ERR_TRUNCATED);

	tk_wbuf_init(&w, out, sizeof(out));
	assert_int_equal(tk_stlv_put(&w, 0x80, d, 254), TK_OK);
	assert_int_equal(w.len, 256);
	assert_memory_equal(out, "\x80\xFE", 2);
	tk_wbuf_init(&w, out, sizeof(out));
	assert_int_equal(tk_stlv_put(&w, 0x80, d, 255), TK_OK);
	assert_int_equal(w.len, 259);
	assert_memory_equal(out, "\x80\xFF\x00\xFF", 4);
	assert_int_equal(tk_stlv_put(&w, 0x00, d, 1), TK_ERR_INVALID_ARG);
	assert_int_equal(tk_stlv_put(&w, 0xFF, d, 1), TK_ERR_INVALID_ARG);
	assert_int_equal(tk_stlv_put(&w, 0x01, d, 65536), TK_ERR_INVALID_ARG);
}

static void
test_ctlv(void **state)
{
	const uint8_t d[] = {0x73, 0xC0, 0x21, 0xC0, 0x80, 0x52, 0x01};
	tk_buf_t b;
	tk_tlv_t t;

	(void)state;
	tk_buf_init(&b, d, sizeof(d));
	assert_int_equal(tk_ctlv_get(&b, &t), TK_OK);
	assert_int_equal(t.tag, 7);
	assert_int_equal(t.len, 3);
	assert_ptr_equal(t.value, d + 1);
	assert_int_equal(tk_ctlv_get(&b, &t), TK_OK);
	assert_int_equal(t.tag, 8);
	assert_int_equal(t.len, 0);
	/* 52: tag 5, two bytes, only one left. */
	assert_int_equal(tk_ctlv_get(&b, &t), TK_ERR_TRUNCATED);
	assert_int_equal(b.pos, 5);
}

int
main(void)
{
	/* clang-format off */
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_ber_short),
		cmocka_unit_test(test_ber_multibyte_tags),
		cmocka_unit_test(test_ber_long_lengths),
		cmocka_unit_test(test_ber_truncated),
		cmocka_unit_test(test_ber_padding),
		cmocka_unit_test(test_ber_find),
		cmocka_unit_test(test_ber_validate_walk),
		cmocka_unit_test(test_ber_encode),
		cmocka_unit_test(test_stlv),
		cmocka_unit_test(test_ctlv),
	};
	/* clang-format on */

	return cmocka_run_group_tests(tests, NULL, NULL);
}
