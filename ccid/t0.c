/* tokenkit CCID: T=0 at the TPDU level. The GET RESPONSE and wrong-Le
 * loops are core's (tk_apdu_exchange); this file only maps the cases. */
#include <string.h>

#include <tokenkit/apdu.h>
#include <tokenkit/err.h>
#include <tokenkit/mem.h>

#include "t0.h"

struct t0ctx {
	tk_transmit_fn xfer;
	void *ctx;
};

/* A case 1 command is four bytes as an APDU but five as a TPDU (P3 = 00). */
static int
t0_send(void *c, const uint8_t *cmd, size_t cmd_len, uint8_t *resp, size_t cap, size_t *rlen)
{
	struct t0ctx *t = c;
	uint8_t hdr[5];

	if (cmd_len == 4) {
		memcpy(hdr, cmd, 4);
		hdr[4] = 0x00;
		return t->xfer(t->ctx, hdr, sizeof(hdr), resp, cap, rlen);
	}
	return t->xfer(t->ctx, cmd, cmd_len, resp, cap, rlen);
}

int
tk_t0_transceive(tk_transmit_fn xfer, void *ctx, const uint8_t *apdu, size_t len, uint8_t *resp,
                 size_t cap, size_t *rlen)
{
	struct t0ctx t = {xfer, ctx};
	tk_apdu_opts_t opts;
	tk_apdu_t a;
	bool extended = false;
	size_t n = 0;
	uint16_t sw = 0;
	int r;

	if (rlen != NULL)
		*rlen = 0;
	if (xfer == NULL || apdu == NULL || resp == NULL || rlen == NULL || cap < 2)
		return TK_ERR_INVALID_ARG;
	if ((r = tk_apdu_decode(apdu, len, &a, &extended)) != TK_OK)
		return r;
	if (extended)
		return TK_ERR_NOT_SUPPORTED;
	/* Case 4: the TPDU carries no Le; the card announces its data with
	 * 61xx and GET RESPONSE fetches it. */
	if (a.lc > 0)
		a.le = 0;
	memset(&opts, 0, sizeof(opts));
	r = tk_apdu_exchange(t0_send, &t, &opts, &a, resp, cap - 2, &n, &sw);
	if (r != TK_OK)
		return r;
	resp[n] = (uint8_t)(sw >> 8);
	resp[n + 1] = (uint8_t)sw;
	*rlen = n + 2;
	return TK_OK;
}
