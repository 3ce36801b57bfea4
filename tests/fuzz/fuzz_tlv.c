/* Fuzz target: BER-TLV, SIMPLE-TLV and COMPACT-TLV parsing (core/tlv.c).
 * Every top-level BER-TLV object that parses is re-encoded and parsed again;
 * tag, length and value must survive the round trip. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <tokenkit/err.h>
#include <tokenkit/tlv.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int
count(void *ctx, const tk_tlv_t *t, unsigned depth)
{
	size_t *n = ctx;

	if (depth > TK_BER_DEPTH_LIMIT || t->len > 65536 + 16)
		abort();
	(*n)++;
	return 0;
}

static void
roundtrip(const tk_tlv_t *t)
{
	static uint8_t enc[16 + 65536];
	tk_wbuf_t w;
	tk_buf_t b;
	tk_tlv_t u;

	tk_wbuf_init(&w, enc, sizeof(enc));
	if (tk_ber_put(&w, t->tag, t->value, t->len) != TK_OK)
		abort(); /* anything we parse we must be able to write */
	if (w.len != tk_ber_hdr_len(t->tag, t->len) + t->len)
		abort();
	tk_buf_init(&b, enc, w.len);
	if (tk_ber_get(&b, &u) != TK_OK || u.tag != t->tag || u.len != t->len ||
	    u.constructed != t->constructed || tk_buf_left(&b) != 0 ||
	    (t->len > 0 && memcmp(u.value, t->value, t->len) != 0))
		abort();
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	tk_buf_t b;
	tk_tlv_t t;
	size_t n = 0;
	uint32_t tag = 0;
	int r;

	if (size > 65536)
		return 0;
	tk_buf_init(&b, data, size);
	while ((r = tk_ber_get(&b, &t)) == TK_OK) {
		if (t.value < data || t.value + t.len > data + size || t.hdr_len > 9)
			abort();
		if (tag == 0)
			tag = t.tag;
		roundtrip(&t);
	}
	if (r != TK_ERR_NOT_FOUND && (t.tag != 0 || t.value != NULL))
		abort(); /* failure clears the output */

	for (unsigned d = 0; d <= 4; d++)
		(void)tk_ber_validate(data, size, d);
	(void)tk_ber_walk(data, size, TK_BER_DEPTH_LIMIT, count, &n);
	if (tag != 0 && tk_ber_find(data, size, tag, &t) != TK_OK)
		abort(); /* the first object is always found */
	(void)tk_ber_find(data, size, 0x5FC105, &t);

	tk_buf_init(&b, data, size);
	while (tk_stlv_get(&b, &t) == TK_OK)
		if (t.value + t.len > data + size)
			abort();
	tk_buf_init(&b, data, size);
	while (tk_ctlv_get(&b, &t) == TK_OK)
		if (t.len > 15)
			abort();
	return 0;
}
