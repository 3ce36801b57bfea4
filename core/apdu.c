/* tokenkit: command APDUs (ISO/IEC 7816-4, 5.1). */
#include <stdlib.h>
#include <string.h>

#include <tokenkit/apdu.h>
#include <tokenkit/buf.h>
#include <tokenkit/err.h>
#include <tokenkit/log.h>
#include <tokenkit/mem.h>

#define DEFAULT_CHUNK 255
#define DEFAULT_GET_RESPONSE 64
#define CLA_CHAINING 0x10
#define INS_GET_RESPONSE 0xC0

static int
encode(const tk_apdu_t *a, bool extended, tk_wbuf_t *w)
{
	if (a->lc > 65535 || a->le > 65536 || (a->data == NULL && a->lc > 0))
		return TK_ERR_INVALID_ARG;
	if (!extended && (a->lc > 255 || a->le > 256))
		return TK_ERR_INVALID_ARG;
	tk_wbuf_put_u8(w, a->cla);
	tk_wbuf_put_u8(w, a->ins);
	tk_wbuf_put_u8(w, a->p1);
	tk_wbuf_put_u8(w, a->p2);
	if (!extended) {
		if (a->lc > 0) {
			tk_wbuf_put_u8(w, (uint8_t)a->lc);
			tk_wbuf_put_bytes(w, a->data, a->lc);
		}
		if (a->le > 0)
			tk_wbuf_put_u8(w, (uint8_t)(a->le == 256 ? 0 : a->le));
		return tk_wbuf_error(w);
	}
	if (a->lc > 0) {
		tk_wbuf_put_u8(w, 0);
		tk_wbuf_put_u16be(w, (uint16_t)a->lc);
		tk_wbuf_put_bytes(w, a->data, a->lc);
	}
	if (a->le > 0) {
		/* Without Lc the extended Le carries its own leading 00. */
		if (a->lc == 0)
			tk_wbuf_put_u8(w, 0);
		tk_wbuf_put_u16be(w, (uint16_t)(a->le == 65536 ? 0 : a->le));
	}
	return tk_wbuf_error(w);
}

int
tk_apdu_encode(const tk_apdu_t *a, bool extended, uint8_t *out, size_t cap, size_t *out_len)
{
	tk_wbuf_t w;
	int r;

	if (out_len != NULL)
		*out_len = 0;
	if (a == NULL || out_len == NULL)
		return TK_ERR_INVALID_ARG;
	tk_wbuf_init(&w, out, cap);
	if ((r = encode(a, extended, &w)) != TK_OK)
		return r;
	*out_len = w.len;
	return TK_OK;
}

int
tk_apdu_decode(const uint8_t *cmd, size_t len, tk_apdu_t *a, bool *extended)
{
	tk_buf_t b;
	uint8_t c5, le8;
	uint16_t n16, le16;
	size_t rest;
	int r;

	memset(a, 0, sizeof(*a));
	if (extended != NULL)
		*extended = false;
	tk_buf_init(&b, cmd, len);
	if ((r = tk_buf_get_u8(&b, &a->cla)) != TK_OK ||
	    (r = tk_buf_get_u8(&b, &a->ins)) != TK_OK || (r = tk_buf_get_u8(&b, &a->p1)) != TK_OK ||
	    (r = tk_buf_get_u8(&b, &a->p2)) != TK_OK)
		goto fail;
	if (tk_buf_left(&b) == 0)
		return TK_OK; /* case 1 */
	(void)tk_buf_get_u8(&b, &c5);
	rest = tk_buf_left(&b);
	if (c5 != 0) {
		if (rest == 0) { /* case 2S */
			a->le = c5;
			return TK_OK;
		}
		if (rest < c5) {
			r = TK_ERR_TRUNCATED;
			goto fail;
		}
		if (rest > (size_t)c5 + 1) {
			r = TK_ERR_MALFORMED;
			goto fail;
		}
		a->lc = c5; /* case 3S or 4S */
		(void)tk_buf_get_ptr(&b, &a->data, a->lc);
		if (tk_buf_get_u8(&b, &le8) == TK_OK)
			a->le = le8 == 0 ? 256 : le8;
		return TK_OK;
	}
	if (rest == 0) { /* case 2S, Le = 00 */
		a->le = 256;
		return TK_OK;
	}
	/* C5 = 00 and more bytes follow: extended length. */
	if ((r = tk_buf_get_u16be(&b, &n16)) != TK_OK)
		goto fail;
	rest = tk_buf_left(&b);
	if (n16 == 0) {
		/* Case 2E with Le = 0000 (65536); nothing may follow. */
		if (rest != 0) {
			r = TK_ERR_MALFORMED;
			goto fail;
		}
		a->le = 65536;
		goto extended;
	}
	if (rest == 0) { /* case 2E */
		a->le = n16;
		goto extended;
	}
	if (rest < n16) {
		r = TK_ERR_TRUNCATED;
		goto fail;
	}
	if (rest != n16 && rest != (size_t)n16 + 2) {
		r = TK_ERR_MALFORMED;
		goto fail;
	}
	a->lc = n16; /* case 3E or 4E */
	(void)tk_buf_get_ptr(&b, &a->data, a->lc);
	if (tk_buf_get_u16be(&b, &le16) == TK_OK)
		a->le = le16 == 0 ? 65536 : le16;
extended:
	if (extended != NULL)
		*extended = true;
	return TK_OK;
fail:
	memset(a, 0, sizeof(*a));
	return r;
}

/* Exchange state: one heap block for the command and the raw response, wiped
 * on release as commands may carry PINs and responses keys. */
struct xchg {
	tk_transmit_fn fn;
	void *ctx;
	uint8_t cmd[TK_APDU_MAX_EXT_CMD];
	size_t cmd_len;
	uint8_t raw[TK_APDU_MAX_RESP];
	size_t raw_len;
	size_t cmd_max, raw_max; /* bytes ever used, to wipe only those */
	bool secret;             /* the response to x->cmd carries a secret */
};

/* Send the encoded command in x->cmd; on success x->raw holds at least SW1 SW2. */
static int
xmit(struct xchg *x, uint16_t *sw)
{
	tk_buf_t b;
	int r;

	*sw = 0;
	x->raw_len = 0;
	tk_log_apdu(TK_LOG_TRACE, "apdu >", x->cmd, x->cmd_len, true);
	r = x->fn(x->ctx, x->cmd, x->cmd_len, x->raw, sizeof(x->raw), &x->raw_len);
	/* Remember how much of raw may hold card data (all of it when the
	 * transport failed or reported a bad length). */
	if (r != TK_OK || x->raw_len > sizeof(x->raw))
		x->raw_max = sizeof(x->raw);
	else if (x->raw_len > x->raw_max)
		x->raw_max = x->raw_len;
	if (r != TK_OK) {
		x->raw_len = 0;
		tk_log_debug("%s: transmit: %s", __func__, tk_strerror(r));
		return r;
	}
	if (x->raw_len < 2 || x->raw_len > sizeof(x->raw)) {
		tk_log_debug("%s: response of %zu bytes", __func__, x->raw_len);
		x->raw_len = 0;
		return TK_ERR_COMM;
	}
	tk_log_apdu_response(TK_LOG_TRACE, "apdu <", x->raw, x->raw_len, x->secret);
	tk_buf_init(&b, x->raw, x->raw_len);
	(void)tk_buf_skip(&b, x->raw_len - 2);
	return tk_buf_get_u16be(&b, sw);
}

static int
set_cmd(struct xchg *x, const tk_apdu_t *a, bool extended)
{
	int r = tk_apdu_encode(a, extended, x->cmd, sizeof(x->cmd), &x->cmd_len);

	if (x->cmd_len > x->cmd_max)
		x->cmd_max = x->cmd_len;
	/* a GET RESPONSE keeps the verdict of the command it continues */
	x->secret = tk_apdu_response_is_sensitive(x->cmd, x->cmd_len, x->secret);
	return r;
}

int
tk_apdu_exchange(tk_transmit_fn fn, void *ctx, const tk_apdu_opts_t *opts, const tk_apdu_t *a,
                 uint8_t *resp, size_t resp_cap, size_t *resp_len, uint16_t *sw)
{
	struct xchg *x = NULL;
	tk_apdu_t cur;
	tk_wbuf_t out;
	bool ext_ok = opts != NULL && opts->extended, ext, resent = false;
	size_t chunk = opts != NULL ? opts->max_chunk : 0;
	unsigned max_gr = opts != NULL && opts->max_get_response > 0 ? opts->max_get_response
	                                                             : DEFAULT_GET_RESPONSE;
	unsigned rounds = 0;
	uint16_t s = 0;
	int r;

	if (resp_len != NULL)
		*resp_len = 0;
	if (sw != NULL)
		*sw = 0;
	if (fn == NULL || a == NULL || resp_len == NULL || sw == NULL ||
	    (resp == NULL && resp_cap > 0) || a->lc > 65535 || a->le > 65536 ||
	    (a->data == NULL && a->lc > 0))
		return TK_ERR_INVALID_ARG;
	/* Not calloc: clearing 128 KiB for every APDU cost more than the
	 * rest of the exchange; only what was used is wiped at the end. */
	if ((x = malloc(sizeof(*x))) == NULL)
		return TK_ERR_NO_MEMORY;
	x->fn = fn;
	x->ctx = ctx;
	x->cmd_len = x->raw_len = 0;
	x->cmd_max = x->raw_max = 0;
	tk_wbuf_init(&out, resp, resp_cap);
	/* Short APDUs: parts of at most 255 bytes. Extended: all at once unless
	 * the caller limits the part size (a reader with a smaller buffer). */
	if (!ext_ok)
		chunk = chunk == 0 || chunk > 255 ? DEFAULT_CHUNK : chunk;
	else
		chunk = chunk == 0 || chunk > 65535 ? 65535 : chunk;

	cur = *a;
	/* Short form whenever it suffices; without extended length, ask for
	 * 256 bytes and let the card announce the rest with 61xx. */
	if (!ext_ok && cur.le > 256)
		cur.le = 256;

	/* Command chaining: every part but the last has CLA | 0x10 and no Le. */
	while (cur.lc > chunk) {
		tk_apdu_t part = cur;

		part.cla |= CLA_CHAINING;
		part.lc = chunk;
		part.le = 0;
		if ((r = set_cmd(x, &part, chunk > 255)) != TK_OK || (r = xmit(x, &s)) != TK_OK)
			goto fail;
		if (s != 0x9000) {
			tk_log_debug("%s: chained part: SW %04X", __func__, s);
			goto done;
		}
		cur.data += chunk;
		cur.lc -= chunk;
	}
	ext = ext_ok && (cur.lc > 255 || cur.le > 256);
	if ((r = set_cmd(x, &cur, ext)) != TK_OK)
		goto fail;
	for (;;) {
		uint8_t sw1, sw2;

		if ((r = xmit(x, &s)) != TK_OK)
			goto fail;
		sw1 = (uint8_t)(s >> 8);
		sw2 = (uint8_t)s;
		if (sw1 == 0x6C && !resent) {
			/* Wrong Le: resend the same command once with Le = SW2. */
			resent = true;
			cur.le = sw2 == 0 ? 256 : sw2;
			if ((r = set_cmd(x, &cur, ext && cur.lc > 255)) != TK_OK)
				goto fail;
			continue;
		}
		if (tk_wbuf_put_bytes(&out, x->raw, x->raw_len - 2) != TK_OK) {
			r = TK_ERR_BUFFER_TOO_SMALL;
			goto fail;
		}
		if (sw1 != 0x61)
			break;
		if (rounds++ >= max_gr) {
			tk_log_debug("%s: more than %u GET RESPONSE rounds", __func__, max_gr);
			r = TK_ERR_PROTOCOL;
			goto fail;
		}
		/* GET RESPONSE on the same logical channel, without the
		 * chaining and secure messaging bits. */
		memset(&cur, 0, sizeof(cur));
		if ((a->cla & 0xE0) == 0)
			cur.cla = a->cla & 0x03; /* first interindustry: channels 0-3 */
		else if ((a->cla & 0xC0) == 0x40)
			cur.cla = 0x40 | (a->cla & 0x0F); /* further: channels 4-19 */
		else
			cur.cla = 0x00;
		cur.ins = INS_GET_RESPONSE;
		cur.le = sw2 == 0 ? 256 : sw2;
		ext = false;
		resent = false;
		if ((r = set_cmd(x, &cur, false)) != TK_OK)
			goto fail;
	}
done:
	*resp_len = out.len;
	*sw = s;
	r = TK_OK;
	goto out;
fail:
	*sw = s;
	*resp_len = 0;
out:
	/* Commands may carry PINs and responses keys. */
	tk_wipe(x->cmd, x->cmd_max);
	tk_wipe(x->raw, x->raw_max);
	free(x);
	return r;
}
