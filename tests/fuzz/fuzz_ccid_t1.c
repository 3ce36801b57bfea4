/* Fuzz target: the T=1 block parser and protocol engine (ccid/t1.c), and
 * the T=0 mapping (ccid/t0.c). The input is a card: after a selector byte,
 * a sequence of length-prefixed answers (one byte of length, then the
 * block) that the engine gets back, in order, for whatever it sends. The
 * engine must finish (every loop is bounded) and never write past its
 * buffers. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <tokenkit/err.h>

#include "t0.h"
#include "t1.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct card {
	const uint8_t *p;
	size_t left;
	unsigned calls;
};

static int
next(struct card *c, uint8_t *out, size_t cap, size_t *len)
{
	size_t n;

	*len = 0;
	if (c->left < 1 || ++c->calls > 20000)
		return TK_ERR_TIMEOUT;
	n = c->p[0];
	c->p++;
	c->left--;
	if (n == 0xFF)
		return TK_ERR_UNRESPONSIVE; /* the reader's "card mute" */
	if (n > c->left)
		n = c->left;
	if (n > cap)
		return TK_ERR_COMM;
	memcpy(out, c->p, n);
	c->p += n;
	c->left -= n;
	*len = n;
	return TK_OK;
}

static int
t1_xfer(void *ctx, const uint8_t *blk, size_t len, uint8_t wtx, uint8_t *rblk, size_t cap,
        size_t *rlen)
{
	tk_t1_block_t k;

	/* what the engine sends is always a well-formed block */
	if (tk_t1_block_parse(blk, len, false, &k) != TK_OK || wtx == 0)
		abort();
	return next(ctx, rblk, cap, rlen);
}

static int
t0_xfer(void *ctx, const uint8_t *cmd, size_t len, uint8_t *resp, size_t cap, size_t *rlen)
{
	if (len < 5)
		abort(); /* a TPDU always has P3 */
	return next(ctx, resp, cap, rlen);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static uint8_t apdu[600], resp[1024];
	struct card c;
	tk_t1_block_t k;
	tk_t1_t t;
	size_t n = 0, len;
	uint8_t sel;

	if (size < 1)
		return 0;
	sel = data[0];
	c.p = data + 1;
	c.left = size - 1;
	c.calls = 0;
	(void)tk_t1_block_parse(c.p, c.left, (sel & 1) != 0, &k);
	len = 5 + (size_t)(sel >> 1) * 4;
	memset(apdu, 0x5A, sizeof(apdu));
	apdu[0] = 0x00;
	apdu[1] = 0xDA;
	apdu[4] = (uint8_t)(len - 5 > 255 ? 255 : len - 5);
	if (sel & 2) {
		if (tk_t0_transceive(t0_xfer, &c, apdu, 5 + apdu[4], resp, sizeof(resp), &n) ==
		            TK_OK &&
		    (n < 2 || n > sizeof(resp)))
			abort();
		return 0;
	}
	tk_t1_init(&t, 1 + (sel >> 3) % 254, false);
	if (sel & 4)
		(void)tk_t1_negotiate_ifsd(&t, t1_xfer, &c, 254);
	if (tk_t1_transceive(&t, t1_xfer, &c, apdu, len, resp, sizeof(resp), &n) == TK_OK &&
	    n > sizeof(resp))
		abort();
	if (t.ifsc < 1 || t.ifsc > TK_T1_MAX_INF || t.ns > 1 || t.nr > 1)
		abort();
	return 0;
}
