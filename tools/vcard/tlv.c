/* tokenkit virtual card: BER-TLV access in the card's terms.
 *
 * Thin adapters over tokenkit/tlv.h: the card's handlers work with tk_buf
 * sub-buffers for values and ignore encoder errors until the end (the
 * tk_wbuf error is sticky and checked once by the dispatcher). */
#include <tokenkit/err.h>
#include <tokenkit/tlv.h>

#include "vcard_int.h"

int
vc_tlv_get(tk_buf_t *b, uint32_t *tag, tk_buf_t *val)
{
	tk_tlv_t t;
	int r;

	*tag = 0;
	tk_buf_init(val, NULL, 0);
	if ((r = tk_ber_get(b, &t)) != TK_OK)
		return r;
	*tag = t.tag;
	tk_buf_init(val, t.value, t.len);
	return TK_OK;
}

int
vc_tlv_find(const uint8_t *p, size_t n, uint32_t tag, tk_buf_t *val)
{
	tk_tlv_t t;
	int r;

	tk_buf_init(val, NULL, 0);
	if ((r = tk_ber_find(p, n, tag, &t)) != TK_OK)
		return r;
	tk_buf_init(val, t.value, t.len);
	return TK_OK;
}

size_t
vc_tlv_hdr_len(uint32_t tag, size_t len)
{
	return tk_ber_hdr_len(tag, len);
}

void
vc_tlv_put_hdr(tk_wbuf_t *w, uint32_t tag, size_t len)
{
	(void)tk_ber_put_hdr(w, tag, len);
	if (tk_ber_hdr_len(tag, len) == 0) /* make the buffer report it */
		(void)tk_wbuf_reserve(w, SIZE_MAX);
}

void
vc_tlv_put(tk_wbuf_t *w, uint32_t tag, const void *v, size_t len)
{
	vc_tlv_put_hdr(w, tag, len);
	if (len > 0)
		(void)tk_wbuf_put_bytes(w, v, len);
}
