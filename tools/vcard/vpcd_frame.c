/* tokenkit virtual card: vpcd message framing (see vpcd_frame.h). */
#include <string.h>

#include <tokenkit/buf.h>
#include <tokenkit/err.h>
#include <tokenkit/mem.h>

#include "vpcd_frame.h"

static size_t
min_size(size_t a, size_t b)
{
	return a < b ? a : b;
}

void
tk_vpcd_dec_init(tk_vpcd_dec_t *d, uint8_t *buf, size_t cap)
{
	memset(d, 0, sizeof(*d));
	d->buf = buf;
	d->cap = buf != NULL ? cap : 0;
}

void
tk_vpcd_dec_reset(tk_vpcd_dec_t *d)
{
	if (d->buf != NULL)
		tk_wipe(d->buf, d->have);
	tk_wipe(d->hdr, sizeof(d->hdr));
	d->hdr_len = 0;
	d->need = 0;
	d->have = 0;
	d->done = false;
	d->err = TK_OK;
}

size_t
tk_vpcd_dec_want(const tk_vpcd_dec_t *d)
{
	if (d->err != TK_OK)
		return 0;
	if (d->done)
		return TK_VPCD_HDR_LEN;
	if (d->hdr_len < TK_VPCD_HDR_LEN)
		return TK_VPCD_HDR_LEN - d->hdr_len;
	return d->need - d->have;
}

int
tk_vpcd_dec_feed(tk_vpcd_dec_t *d, const uint8_t *data, size_t len, size_t *used,
                 const uint8_t **msg, size_t *msg_len)
{
	tk_buf_t in, hb;
	uint16_t v;
	size_t n;
	int r = TK_OK;

	*used = 0;
	*msg = NULL;
	*msg_len = 0;
	if (data == NULL && len > 0)
		return TK_ERR_INVALID_ARG;
	if (d->err != TK_OK)
		return d->err;
	if (d->done)
		tk_vpcd_dec_reset(d);
	tk_buf_init(&in, data, len);
	if (d->hdr_len < TK_VPCD_HDR_LEN) {
		n = min_size(TK_VPCD_HDR_LEN - d->hdr_len, tk_buf_left(&in));
		if (n > 0)
			(void)tk_buf_get_bytes(&in, d->hdr + d->hdr_len, n);
		d->hdr_len += n;
		if (d->hdr_len < TK_VPCD_HDR_LEN)
			goto out;
		tk_buf_init(&hb, d->hdr, sizeof(d->hdr));
		(void)tk_buf_get_u16be(&hb, &v);
		if (v > d->cap) {
			d->err = TK_ERR_TOO_LONG;
			r = d->err;
			goto out;
		}
		d->need = v;
		d->have = 0;
	}
	n = min_size(d->need - d->have, tk_buf_left(&in));
	if (n > 0) {
		(void)tk_buf_get_bytes(&in, d->buf + d->have, n);
		d->have += n;
	}
	if (d->have == d->need) {
		d->done = true;
		/* an empty message still gets a non-NULL pointer */
		*msg = d->buf != NULL ? d->buf : d->hdr;
		*msg_len = d->have;
	}
out:
	*used = len - tk_buf_left(&in);
	return r;
}

int
tk_vpcd_frame_header(size_t len, uint8_t hdr[TK_VPCD_HDR_LEN])
{
	tk_wbuf_t w;

	memset(hdr, 0, TK_VPCD_HDR_LEN);
	if (len > TK_VPCD_FRAME_MAX)
		return TK_ERR_TOO_LONG;
	tk_wbuf_init(&w, hdr, TK_VPCD_HDR_LEN);
	return tk_wbuf_put_u16be(&w, (uint16_t)len);
}
