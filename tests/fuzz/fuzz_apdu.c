/* Fuzz target: command APDU decoding and the exchange loop (core/apdu.c).
 *
 * 1. The whole input is decoded as a command APDU; one that decodes must
 *    encode back to the same bytes (the encoding is unambiguous).
 * 2. The input also drives tk_apdu_exchange(): a 12-byte header chooses the
 *    options and the command, and the rest is a script of responses, each a
 *    length byte followed by that many bytes (length FF: a transport error),
 *    returned by a fake transmit function in turn. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <tokenkit/apdu.h>
#include <tokenkit/buf.h>
#include <tokenkit/err.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void
decode_roundtrip(const uint8_t *data, size_t size)
{
	static uint8_t enc[TK_APDU_MAX_EXT_CMD];
	tk_apdu_t a, b;
	bool ext;
	size_t n;

	if (tk_apdu_decode(data, size, &a, &ext) != TK_OK)
		return;
	if (a.lc > 65535 || a.le > 65536 ||
	    (a.lc > 0 && (a.data < data || a.data + a.lc > data + size)))
		abort();
	if (tk_apdu_encode(&a, ext, enc, sizeof(enc), &n) != TK_OK || n != size ||
	    memcmp(enc, data, size) != 0)
		abort();
	if (tk_apdu_decode(enc, n, &b, NULL) != TK_OK || b.lc != a.lc || b.le != a.le)
		abort();
}

struct script {
	tk_buf_t b;
	unsigned calls;
};

static int
fake_xmit(void *ctx, const uint8_t *cmd, size_t cmd_len, uint8_t *resp, size_t cap,
          size_t *resp_len)
{
	struct script *s = ctx;
	tk_apdu_t a;
	uint8_t n;

	*resp_len = 0;
	s->calls++;
	/* Everything the exchange sends must be a well-formed APDU. */
	if (tk_apdu_decode(cmd, cmd_len, &a, NULL) != TK_OK)
		abort();
	if (tk_buf_get_u8(&s->b, &n) != TK_OK)
		return TK_ERR_COMM;
	if (n == 0xFF)
		return TK_ERR_TIMEOUT;
	if (n > tk_buf_left(&s->b))
		n = (uint8_t)tk_buf_left(&s->b);
	if (n > cap)
		return TK_ERR_BUFFER_TOO_SMALL;
	if (tk_buf_get_bytes(&s->b, resp, n) != TK_OK)
		abort();
	*resp_len = n;
	return TK_OK;
}

static void
exchange(const uint8_t *data, size_t size)
{
	static uint8_t cmd_data[1024], resp[4096];
	struct script s = {{0}, 0};
	tk_buf_t h;
	tk_apdu_opts_t o = {0};
	tk_apdu_t a = {0};
	uint8_t flags = 0, chunk = 0, gr = 0, cap8 = 0;
	uint16_t lc = 0, le = 0;
	size_t cap, len = 0;
	uint16_t sw = 0;
	int r;

	tk_buf_init(&h, data, size);
	if (tk_buf_get_u8(&h, &flags) != TK_OK || tk_buf_get_u8(&h, &chunk) != TK_OK ||
	    tk_buf_get_u8(&h, &gr) != TK_OK || tk_buf_get_u8(&h, &cap8) != TK_OK ||
	    tk_buf_get_u8(&h, &a.cla) != TK_OK || tk_buf_get_u8(&h, &a.ins) != TK_OK ||
	    tk_buf_get_u8(&h, &a.p1) != TK_OK || tk_buf_get_u8(&h, &a.p2) != TK_OK ||
	    tk_buf_get_u16be(&h, &lc) != TK_OK || tk_buf_get_u16be(&h, &le) != TK_OK)
		return;
	o.extended = flags & 1;
	o.max_chunk = chunk;
	o.max_get_response = gr % 80;
	a.lc = lc % sizeof(cmd_data);
	a.le = flags & 2 ? (o.extended ? 65536 : 256) : le;
	for (size_t i = 0; i < a.lc; i++)
		cmd_data[i] = (uint8_t)i;
	a.data = a.lc > 0 ? cmd_data : NULL;
	cap = (size_t)cap8 * 16;
	s.b = h;
	r = tk_apdu_exchange(fake_xmit, &s, &o, &a, resp, cap, &len, &sw);
	if (r == TK_OK && len > cap)
		abort();
	if (r != TK_OK && len != 0)
		abort();
	/* Bounded: chaining parts + one resend + 1 + max GET RESPONSE rounds. */
	if (s.calls > a.lc + 2 + (o.max_get_response ? o.max_get_response : 64) + 1)
		abort();
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size > TK_APDU_MAX_EXT_CMD)
		return 0;
	decode_roundtrip(data, size);
	exchange(data, size);
	return 0;
}
