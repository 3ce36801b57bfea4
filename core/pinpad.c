/* tokenkit: PC/SC part 10 feature list and PIN structures (pinpad.h). */
#include <string.h>

#include <tokenkit/buf.h>
#include <tokenkit/err.h>

#include "pinpad.h"

int
tk_pcsc_features_parse(const uint8_t *p, size_t len, tk_pcsc_features_t *out)
{
	tk_buf_t b;

	if (out != NULL)
		memset(out, 0, sizeof(*out));
	if (out == NULL || (p == NULL && len > 0))
		return TK_ERR_INVALID_ARG;
	tk_buf_init(&b, p, len);
	while (tk_buf_left(&b) > 0) {
		uint8_t tag, n;
		uint32_t code;

		if (tk_buf_get_u8(&b, &tag) != TK_OK || tk_buf_get_u8(&b, &n) != TK_OK)
			goto truncated;
		if (n != 4)
			goto malformed;
		if (tk_buf_get_u32be(&b, &code) != TK_OK)
			goto truncated;
		if (code == 0)
			goto malformed;
		if (tag >= TK_PCSC_FEATURE_MAX)
			continue;
		if (out->code[tag] != 0)
			goto malformed;
		out->code[tag] = code;
	}
	return TK_OK;
truncated:
	memset(out, 0, sizeof(*out));
	return TK_ERR_TRUNCATED;
malformed:
	memset(out, 0, sizeof(*out));
	return TK_ERR_MALFORMED;
}

int
tk_pcsc_pin_encode(const tk_card_pinpad_t *req, uint8_t *out, size_t cap, size_t *out_len)
{
	/* the PC/SC timer: the user's time, 0 lets the reader choose */
	uint8_t timeout;
	tk_wbuf_t w;
	int r;

	if (out_len != NULL)
		*out_len = 0;
	if (req == NULL || out == NULL || out_len == NULL || req->apdu == NULL ||
	    req->apdu_len < 5 || req->apdu_len > 261 ||
	    (req->op != TK_PINPAD_VERIFY && req->op != TK_PINPAD_MODIFY))
		return TK_ERR_INVALID_ARG;
	timeout = req->timeout_s;
	tk_wbuf_init(&w, out, cap);
	tk_wbuf_put_u8(&w, timeout); /* bTimerOut */
	tk_wbuf_put_u8(&w, timeout); /* bTimerOut2 */
	tk_wbuf_put_u8(&w, req->format);
	tk_wbuf_put_u8(&w, req->block);
	tk_wbuf_put_u8(&w, req->length_format);
	if (req->op == TK_PINPAD_MODIFY) {
		tk_wbuf_put_u8(&w, req->offset_old);
		tk_wbuf_put_u8(&w, req->offset_new);
	}
	/* wPINMaxExtraDigit: minimum in the high byte, maximum in the low */
	tk_wbuf_put_u16le(&w, (uint16_t)(req->min_len << 8 | req->max_len));
	if (req->op == TK_PINPAD_MODIFY)
		tk_wbuf_put_u8(&w, req->confirm);
	tk_wbuf_put_u8(&w, 0x02); /* bEntryValidationCondition: the OK key */
	if (req->op == TK_PINPAD_MODIFY) {
		tk_wbuf_put_u8(&w, 0x03);      /* bNumberMessage */
		tk_wbuf_put_u16le(&w, 0x0409); /* wLangId */
		tk_wbuf_put_u8(&w, 0x00);      /* bMsgIndex1 */
		tk_wbuf_put_u8(&w, 0x01);      /* bMsgIndex2 */
		tk_wbuf_put_u8(&w, 0x02);      /* bMsgIndex3 */
	} else {
		tk_wbuf_put_u8(&w, 0x01);
		tk_wbuf_put_u16le(&w, 0x0409);
		tk_wbuf_put_u8(&w, 0x00); /* bMsgIndex */
	}
	/* bTeoPrologue: the driver fills it for T=1 */
	tk_wbuf_put_u8(&w, 0);
	tk_wbuf_put_u8(&w, 0);
	tk_wbuf_put_u8(&w, 0);
	tk_wbuf_put_u32le(&w, (uint32_t)req->apdu_len); /* ulDataLength */
	tk_wbuf_put_bytes(&w, req->apdu, req->apdu_len);
	if ((r = tk_wbuf_error(&w)) != TK_OK)
		return r;
	*out_len = w.len;
	return TK_OK;
}
