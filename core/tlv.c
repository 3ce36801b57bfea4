/* tokenkit: BER-TLV, SIMPLE-TLV and COMPACT-TLV (ISO/IEC 7816-4, X.690). */
#include <string.h>

#include <tokenkit/err.h>
#include <tokenkit/tlv.h>

#define BER_MAX_TAG_BYTES 4
#define BER_MAX_LEN_BYTES 4

static bool
is_padding(uint8_t c)
{
	return c == 0x00 || c == 0xFF;
}

/* Tag and length fields, without touching the value. Does not skip padding. */
static int
ber_get_hdr(tk_buf_t *b, uint32_t *tag, bool *constructed, size_t *len)
{
	uint8_t c;
	uint32_t t;
	size_t n = 1;
	int r;

	*tag = 0;
	*constructed = false;
	*len = 0;
	if ((r = tk_buf_get_u8(b, &c)) != TK_OK)
		return r;
	t = c;
	*constructed = (c & 0x20) != 0;
	if ((c & 0x1F) == 0x1F) {
		/* Subsequent bytes: bit 8 set on all but the last. */
		do {
			if (n == BER_MAX_TAG_BYTES)
				return TK_ERR_MALFORMED;
			if ((r = tk_buf_get_u8(b, &c)) != TK_OK)
				return r;
			if (n == 1 && c == 0x80)
				return TK_ERR_MALFORMED; /* tag number padded with zeros */
			t = t << 8 | c;
			n++;
		} while (c & 0x80);
	}
	if ((r = tk_buf_get_u8(b, &c)) != TK_OK)
		return r;
	if (c < 0x80) {
		*len = c;
	} else if (c == 0x80 || c > 0x80 + BER_MAX_LEN_BYTES) {
		return TK_ERR_MALFORMED; /* indefinite, or more than 4 length bytes */
	} else {
		size_t l = 0;

		for (unsigned i = 0; i < (unsigned)(c - 0x80); i++) {
			uint8_t x;

			if ((r = tk_buf_get_u8(b, &x)) != TK_OK)
				return r;
			l = l << 8 | x;
		}
		*len = l;
	}
	*tag = t;
	return TK_OK;
}

int
tk_ber_get(tk_buf_t *b, tk_tlv_t *t)
{
	tk_buf_t tmp = *b;
	size_t start;
	uint8_t c;
	int r;

	memset(t, 0, sizeof(*t));
	while (tk_buf_peek_u8(&tmp, &c) == TK_OK && is_padding(c))
		(void)tk_buf_skip(&tmp, 1);
	if (tk_buf_left(&tmp) == 0) {
		*b = tmp; /* consume trailing padding */
		return TK_ERR_NOT_FOUND;
	}
	start = tmp.pos;
	if ((r = ber_get_hdr(&tmp, &t->tag, &t->constructed, &t->len)) != TK_OK)
		goto fail;
	t->hdr_len = tmp.pos - start;
	if ((r = tk_buf_get_ptr(&tmp, &t->value, t->len)) != TK_OK)
		goto fail;
	*b = tmp;
	return TK_OK;
fail:
	memset(t, 0, sizeof(*t));
	return r;
}

int
tk_ber_find(const uint8_t *p, size_t len, uint32_t tag, tk_tlv_t *t)
{
	tk_buf_t b;
	int r;

	memset(t, 0, sizeof(*t));
	tk_buf_init(&b, p, len);
	while ((r = tk_ber_get(&b, t)) == TK_OK) {
		if (t->tag == tag)
			return TK_OK;
	}
	memset(t, 0, sizeof(*t));
	return r;
}

static int
walk(const uint8_t *p, size_t len, unsigned depth, unsigned max_depth, tk_ber_walk_fn fn, void *ctx)
{
	tk_buf_t b;
	tk_tlv_t t;
	int r;

	tk_buf_init(&b, p, len);
	while ((r = tk_ber_get(&b, &t)) == TK_OK) {
		if (fn != NULL && (r = fn(ctx, &t, depth)) != 0)
			return r;
		if (!t.constructed)
			continue;
		if (depth >= max_depth)
			return TK_ERR_TOO_DEEP;
		if ((r = walk(t.value, t.len, depth + 1, max_depth, fn, ctx)) != TK_OK)
			return r;
	}
	return r == TK_ERR_NOT_FOUND ? TK_OK : r;
}

int
tk_ber_walk(const uint8_t *p, size_t len, unsigned max_depth, tk_ber_walk_fn fn, void *ctx)
{
	if (max_depth > TK_BER_DEPTH_LIMIT || (p == NULL && len > 0))
		return TK_ERR_INVALID_ARG;
	return walk(p, len, 0, max_depth, fn, ctx);
}

int
tk_ber_validate(const uint8_t *p, size_t len, unsigned max_depth)
{
	return tk_ber_walk(p, len, max_depth, NULL, NULL);
}

/* Number of bytes of a well-formed tag, 0 if tag is not one. */
static size_t
tag_bytes(uint32_t tag)
{
	size_t n = 1;
	uint8_t first;

	while (n < 4 && (tag >> (8 * n)) != 0)
		n++;
	first = (uint8_t)(tag >> (8 * (n - 1)));
	if (is_padding(first))
		return 0;
	if (n == 1)
		return (first & 0x1F) == 0x1F ? 0 : 1;
	if ((first & 0x1F) != 0x1F || (uint8_t)(tag >> (8 * (n - 2))) == 0x80)
		return 0;
	/* Subsequent bytes: bit 8 set on all but the last. */
	for (size_t i = n - 1; i > 0; i--) {
		uint8_t c = (uint8_t)(tag >> (8 * (i - 1)));
		bool last = i == 1;

		if (((c & 0x80) != 0) == last)
			return 0;
	}
	return n;
}

static size_t
len_bytes(size_t len)
{
	if (len < 0x80)
		return 1;
	if (len <= 0xFF)
		return 2;
	if (len <= 0xFFFF)
		return 3;
	if (len <= 0xFFFFFF)
		return 4;
	if (len <= 0xFFFFFFFFu)
		return 5;
	return 0;
}

size_t
tk_ber_hdr_len(uint32_t tag, size_t len)
{
	size_t tn = tag_bytes(tag), ln = len_bytes(len);

	if (tn == 0 || ln == 0)
		return 0;
	return tn + ln;
}

int
tk_ber_put_hdr(tk_wbuf_t *w, uint32_t tag, size_t len)
{
	size_t tn = tag_bytes(tag), ln = len_bytes(len);

	if (tn == 0 || ln == 0)
		return TK_ERR_INVALID_ARG;
	for (size_t i = tn; i > 0; i--)
		tk_wbuf_put_u8(w, (uint8_t)(tag >> (8 * (i - 1))));
	if (ln > 1)
		tk_wbuf_put_u8(w, (uint8_t)(0x80 + ln - 1));
	for (size_t i = ln > 1 ? ln - 1 : 1; i > 0; i--)
		tk_wbuf_put_u8(w, (uint8_t)((uint64_t)len >> (8 * (i - 1))));
	return tk_wbuf_error(w);
}

int
tk_ber_put(tk_wbuf_t *w, uint32_t tag, const void *v, size_t len)
{
	int r;

	if (v == NULL && len > 0)
		return TK_ERR_INVALID_ARG;
	if ((r = tk_ber_put_hdr(w, tag, len)) != TK_OK)
		return r;
	return tk_wbuf_put_bytes(w, v, len);
}

int
tk_stlv_get(tk_buf_t *b, tk_tlv_t *t)
{
	tk_buf_t tmp = *b;
	uint8_t tag, l8;
	uint16_t l16;
	size_t len;
	int r;

	memset(t, 0, sizeof(*t));
	if ((r = tk_buf_get_u8(&tmp, &tag)) != TK_OK)
		return r;
	if (tag == 0x00 || tag == 0xFF)
		return TK_ERR_MALFORMED;
	if ((r = tk_buf_get_u8(&tmp, &l8)) != TK_OK)
		return r;
	if (l8 == 0xFF) {
		if ((r = tk_buf_get_u16be(&tmp, &l16)) != TK_OK)
			return r;
		len = l16;
	} else {
		len = l8;
	}
	t->hdr_len = tmp.pos - b->pos;
	if ((r = tk_buf_get_ptr(&tmp, &t->value, len)) != TK_OK) {
		memset(t, 0, sizeof(*t));
		return r;
	}
	t->tag = tag;
	t->len = len;
	*b = tmp;
	return TK_OK;
}

int
tk_stlv_put(tk_wbuf_t *w, uint8_t tag, const void *v, size_t len)
{
	if (tag == 0x00 || tag == 0xFF || len > 0xFFFF || (v == NULL && len > 0))
		return TK_ERR_INVALID_ARG;
	tk_wbuf_put_u8(w, tag);
	if (len < 0xFF) {
		tk_wbuf_put_u8(w, (uint8_t)len);
	} else {
		tk_wbuf_put_u8(w, 0xFF);
		tk_wbuf_put_u16be(w, (uint16_t)len);
	}
	tk_wbuf_put_bytes(w, v, len);
	return tk_wbuf_error(w);
}

int
tk_ctlv_get(tk_buf_t *b, tk_tlv_t *t)
{
	tk_buf_t tmp = *b;
	uint8_t c;
	int r;

	memset(t, 0, sizeof(*t));
	if ((r = tk_buf_get_u8(&tmp, &c)) != TK_OK)
		return r;
	if ((r = tk_buf_get_ptr(&tmp, &t->value, c & 0x0F)) != TK_OK) {
		memset(t, 0, sizeof(*t));
		return r;
	}
	t->tag = c >> 4;
	t->len = c & 0x0F;
	t->hdr_len = 1;
	*b = tmp;
	return TK_OK;
}
