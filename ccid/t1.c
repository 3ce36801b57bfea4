/* tokenkit CCID: the T=1 block protocol (ISO/IEC 7816-3:2006, 11). */
#include <string.h>

#include <tokenkit/buf.h>
#include <tokenkit/err.h>
#include <tokenkit/log.h>
#include <tokenkit/mem.h>

#include "t1.h"

uint8_t
tk_t1_lrc(const uint8_t *p, size_t len)
{
	uint8_t x = 0;

	for (size_t i = 0; i < len; i++)
		x ^= p[i];
	return x;
}

uint16_t
tk_t1_crc(const uint8_t *p, size_t len)
{
	uint16_t v = 0xFFFF;

	for (size_t i = 0; i < len; i++) {
		v ^= p[i];
		for (int bit = 0; bit < 8; bit++)
			v = (v & 1) ? (uint16_t)((v >> 1) ^ 0x8408) : (uint16_t)(v >> 1);
	}
	return v;
}

int
tk_t1_block_parse(const uint8_t *blk, size_t len, bool crc, tk_t1_block_t *out)
{
	tk_t1_block_t k;
	tk_buf_t b;
	uint8_t n = 0, lrc = 0;
	uint16_t sum = 0;
	size_t edc = crc ? 2 : 1;

	if (out != NULL)
		memset(out, 0, sizeof(*out));
	if (blk == NULL || out == NULL)
		return TK_ERR_INVALID_ARG;
	memset(&k, 0, sizeof(k));
	tk_buf_init(&b, blk, len);
	if (tk_buf_get_u8(&b, &k.nad) != TK_OK || tk_buf_get_u8(&b, &k.pcb) != TK_OK ||
	    tk_buf_get_u8(&b, &n) != TK_OK)
		return TK_ERR_TRUNCATED;
	if (n == 0xFF)
		return TK_ERR_MALFORMED;
	if (tk_buf_get_ptr(&b, &k.inf, n) != TK_OK)
		return TK_ERR_TRUNCATED;
	k.len = n;
	if (crc) {
		if (tk_buf_get_u16be(&b, &sum) != TK_OK)
			return TK_ERR_TRUNCATED;
	} else if (tk_buf_get_u8(&b, &lrc) != TK_OK) {
		return TK_ERR_TRUNCATED;
	}
	if (tk_buf_left(&b) != 0)
		return TK_ERR_MALFORMED;
	if (crc ? tk_t1_crc(blk, TK_T1_PROLOGUE + k.len) != sum
	        : tk_t1_lrc(blk, TK_T1_PROLOGUE + k.len + edc) != 0)
		return TK_ERR_BAD_CHECKSUM;
	if ((k.pcb & 0x80) == 0) {
		k.kind = TK_T1_I;
		k.ns = (k.pcb >> 6) & 1;
		k.more = (k.pcb & 0x20) != 0;
		/* bits 5-1 are reserved; cards leave them 0, and we accept
		 * what a lenient reader would */
	} else if ((k.pcb & 0xC0) == 0x80) {
		k.kind = TK_T1_R;
		k.nr = (k.pcb >> 4) & 1;
		k.rerr = k.pcb & 0x0F;
		if ((k.pcb & 0x20) != 0 || k.rerr > TK_T1_R_OTHER || k.len != 0)
			return TK_ERR_MALFORMED;
	} else {
		k.kind = TK_T1_S;
		k.sresponse = (k.pcb & 0x20) != 0;
		k.stype = k.pcb & 0x1F;
		switch (k.stype) {
		case TK_T1_S_RESYNCH:
		case TK_T1_S_ABORT:
			if (k.len != 0)
				return TK_ERR_MALFORMED;
			break;
		case TK_T1_S_IFS:
			if (k.len != 1 || k.inf[0] == 0x00 || k.inf[0] == 0xFF)
				return TK_ERR_MALFORMED;
			break;
		case TK_T1_S_WTX:
			if (k.len != 1)
				return TK_ERR_MALFORMED;
			break;
		default:
			return TK_ERR_MALFORMED;
		}
	}
	*out = k;
	return TK_OK;
}

int
tk_t1_block_build(uint8_t nad, uint8_t pcb, const uint8_t *inf, size_t len, bool crc, uint8_t *out,
                  size_t cap, size_t *out_len)
{
	tk_wbuf_t w;
	int r;

	if (out_len != NULL)
		*out_len = 0;
	if (out == NULL || out_len == NULL || len > TK_T1_MAX_INF || (inf == NULL && len > 0))
		return TK_ERR_INVALID_ARG;
	tk_wbuf_init(&w, out, cap);
	tk_wbuf_put_u8(&w, nad);
	tk_wbuf_put_u8(&w, pcb);
	tk_wbuf_put_u8(&w, (uint8_t)len);
	if (len > 0)
		tk_wbuf_put_bytes(&w, inf, len);
	if ((r = tk_wbuf_error(&w)) != TK_OK)
		return r;
	if (crc)
		tk_wbuf_put_u16be(&w, tk_t1_crc(out, w.len));
	else
		tk_wbuf_put_u8(&w, tk_t1_lrc(out, w.len));
	if ((r = tk_wbuf_error(&w)) != TK_OK)
		return r;
	*out_len = w.len;
	return TK_OK;
}

void
tk_t1_init(tk_t1_t *t, size_t ifsc, bool crc)
{
	if (t == NULL)
		return;
	memset(t, 0, sizeof(*t));
	if (ifsc < 1)
		ifsc = 1;
	if (ifsc > TK_T1_MAX_INF)
		ifsc = TK_T1_MAX_INF;
	t->ifsc = ifsc;
	t->ifsd = 32;
	t->crc = crc;
}

void
tk_t1_prologue(const tk_t1_t *t, size_t len, uint8_t out[TK_T1_PROLOGUE])
{
	out[0] = t->nad;
	out[1] = TK_T1_PCB_I(t->ns, false);
	out[2] = (uint8_t)(len > TK_T1_MAX_INF ? TK_T1_MAX_INF : len);
}

/* One exchange's working state. */
struct x {
	tk_t1_t *t;
	tk_t1_xfer_fn xfer;
	void *ctx;
	const uint8_t *apdu;
	size_t len;
	size_t off, chunk;             /* our I-block being sent: apdu[off .. off+chunk) */
	bool sending;                  /* our chain is not acknowledged yet */
	bool can_resend;               /* our I-block can be sent again (not a PIN pad's) */
	uint8_t iblk[TK_T1_MAX_BLOCK]; /* our last I-block */
	size_t iblk_len;
	uint8_t last[TK_T1_MAX_BLOCK]; /* what goes out next */
	size_t last_len;
	uint8_t rblk[TK_T1_MAX_BLOCK + 16];
	size_t rlen;
	uint8_t wtx;
	unsigned errors, wtx_run;
	uint8_t *resp;
	size_t cap, got;
};

static int
build(struct x *x, uint8_t pcb, const uint8_t *inf, size_t len, uint8_t *out, size_t *out_len)
{
	return tk_t1_block_build(x->t->nad, pcb, inf, len, x->t->crc, out, TK_T1_MAX_BLOCK,
	                         out_len);
}

static int
next_iblock(struct x *x)
{
	size_t left = x->len - x->off;
	bool more;
	int r;

	x->chunk = left > x->t->ifsc ? x->t->ifsc : left;
	more = x->off + x->chunk < x->len;
	if ((r = build(x, TK_T1_PCB_I(x->t->ns, more), x->apdu + x->off, x->chunk, x->iblk,
	               &x->iblk_len)) != TK_OK)
		return r;
	memcpy(x->last, x->iblk, x->iblk_len);
	x->last_len = x->iblk_len;
	return TK_OK;
}

int
tk_t1_resynch(tk_t1_t *t, tk_t1_xfer_fn xfer, void *ctx)
{
	uint8_t blk[TK_T1_MAX_BLOCK], rblk[TK_T1_MAX_BLOCK + 16];
	size_t blen = 0, rlen = 0;
	tk_t1_block_t k;
	int r;

	if (t == NULL || xfer == NULL)
		return TK_ERR_INVALID_ARG;
	if ((r = tk_t1_block_build(t->nad, TK_T1_PCB_S(TK_T1_S_RESYNCH, false), NULL, 0, t->crc,
	                           blk, sizeof(blk), &blen)) != TK_OK)
		return r;
	for (int i = 0; i < TK_T1_MAX_RESYNCH; i++) {
		t->resynchs++;
		r = xfer(ctx, blk, blen, 1, rblk, sizeof(rblk), &rlen);
		if (r != TK_OK && r != TK_ERR_COMM && r != TK_ERR_UNRESPONSIVE)
			return r;
		if (r == TK_OK && tk_t1_block_parse(rblk, rlen, t->crc, &k) == TK_OK &&
		    k.kind == TK_T1_S && k.sresponse && k.stype == TK_T1_S_RESYNCH) {
			t->ns = 0;
			t->nr = 0;
			return TK_OK;
		}
	}
	tk_log_debug("t1: no answer to S(RESYNCH)");
	return TK_ERR_UNRESPONSIVE;
}

/* A block that was lost or made no sense: ask again with an R-block, or
 * resynchronise after too many. Returns TK_OK to go on. */
static int
bad_block(struct x *x, uint8_t rerr)
{
	int r;

	if (++x->errors > TK_T1_MAX_ERRORS) {
		/* The exchange is lost either way; a resynchronised link
		 * lets the caller send the APDU again. */
		r = tk_t1_resynch(x->t, x->xfer, x->ctx);
		return r == TK_OK ? TK_ERR_COMM : r;
	}
	x->t->retransmits++;
	return build(x, TK_T1_PCB_R(x->t->nr, rerr), NULL, 0, x->last, &x->last_len);
}

/* Our I-block was not received: send it again. */
static int
resend_iblock(struct x *x)
{
	if (!x->can_resend)
		return TK_ERR_COMM;
	if (++x->errors > TK_T1_MAX_ERRORS) {
		int r = tk_t1_resynch(x->t, x->xfer, x->ctx);

		return r == TK_OK ? TK_ERR_COMM : r;
	}
	x->t->retransmits++;
	memcpy(x->last, x->iblk, x->iblk_len);
	x->last_len = x->iblk_len;
	return TK_OK;
}

/* Handle one received block; *done when the answer is complete. */
static int
on_block(struct x *x, const tk_t1_block_t *k, bool *done)
{
	tk_t1_t *t = x->t;
	uint8_t v;

	switch (k->kind) {
	case TK_T1_S:
		if (k->sresponse)
			return bad_block(x, TK_T1_R_OTHER);
		x->errors = 0;
		switch (k->stype) {
		case TK_T1_S_WTX:
			if (++x->wtx_run > TK_T1_MAX_WTX)
				return TK_ERR_TIMEOUT;
			t->wtx_requests++;
			v = k->inf[0];
			x->wtx = v == 0 ? 1 : v;
			return build(x, TK_T1_PCB_S(TK_T1_S_WTX, true), &v, 1, x->last,
			             &x->last_len);
		case TK_T1_S_IFS:
			t->ifs_requests++;
			v = k->inf[0];
			t->ifsc = v > TK_T1_MAX_INF ? TK_T1_MAX_INF : v;
			return build(x, TK_T1_PCB_S(TK_T1_S_IFS, true), &v, 1, x->last,
			             &x->last_len);
		case TK_T1_S_ABORT:
			/* The card gives up its chain (or ours): answer,
			 * and the exchange has failed. */
			(void)build(x, TK_T1_PCB_S(TK_T1_S_ABORT, true), NULL, 0, x->last,
			            &x->last_len);
			(void)x->xfer(x->ctx, x->last, x->last_len, 1, x->rblk, sizeof(x->rblk),
			              &x->rlen);
			return TK_ERR_PROTOCOL;
		default:
			/* a card never asks for a resynchronisation */
			return bad_block(x, TK_T1_R_OTHER);
		}
	case TK_T1_R:
		if (x->sending && k->nr != t->ns && x->off + x->chunk < x->len) {
			/* acknowledges our chained block: send the next */
			t->ns ^= 1;
			x->off += x->chunk;
			x->errors = 0;
			return next_iblock(x);
		}
		if (x->sending && k->nr == t->ns)
			return resend_iblock(x);
		return bad_block(x, TK_T1_R_OTHER);
	case TK_T1_I:
		if (x->sending && x->off + x->chunk < x->len)
			return bad_block(x, TK_T1_R_OTHER); /* we expected an R-block */
		if (k->ns != t->nr)
			return bad_block(x, TK_T1_R_OTHER);
		if (x->sending) {
			/* the card's I-block acknowledges our last one */
			t->ns ^= 1;
			x->sending = false;
		}
		if (k->len > x->cap - x->got)
			return TK_ERR_BUFFER_TOO_SMALL;
		if (k->len > 0)
			memcpy(x->resp + x->got, k->inf, k->len);
		x->got += k->len;
		t->nr ^= 1;
		x->errors = 0;
		if (!k->more) {
			*done = true;
			return TK_OK;
		}
		return build(x, TK_T1_PCB_R(t->nr, TK_T1_R_OK), NULL, 0, x->last, &x->last_len);
	}
	return TK_ERR_INTERNAL;
}

/* Run the exchange from x->last (to be sent) or, when first != NULL, from
 * a block already received. */
static int
run(struct x *x, const uint8_t *first, size_t first_len, size_t *rlen)
{
	/* Every useful block moves at least one byte; allow three tries for
	 * each, plus the waiting time extensions (bounded on their own). */
	size_t budget = 3 * (x->len + x->cap + 8) + TK_T1_MAX_WTX;
	tk_t1_block_t k;
	bool done = false;
	int r;

	for (size_t i = 0; i < budget; i++) {
		if (first != NULL) {
			memcpy(x->rblk, first, first_len);
			x->rlen = first_len;
			first = NULL;
			r = TK_OK;
		} else {
			uint8_t wtx = x->wtx;

			x->wtx = 1;
			r = x->xfer(x->ctx, x->last, x->last_len, wtx, x->rblk, sizeof(x->rblk),
			            &x->rlen);
		}
		if (r == TK_ERR_COMM || r == TK_ERR_UNRESPONSIVE) {
			r = bad_block(x, TK_T1_R_EDC);
		} else if (r != TK_OK) {
			goto out;
		} else {
			r = tk_t1_block_parse(x->rblk, x->rlen, x->t->crc, &k);
			if (r == TK_OK) {
				if (k.kind != TK_T1_S || k.stype != TK_T1_S_WTX)
					x->wtx_run = 0;
				r = on_block(x, &k, &done);
			} else {
				r = bad_block(x, r == TK_ERR_BAD_CHECKSUM ? TK_T1_R_EDC
				                                          : TK_T1_R_OTHER);
			}
		}
		if (r != TK_OK || done)
			goto out;
	}
	tk_log_debug("t1: exchange did not finish within %zu blocks", budget);
	r = TK_ERR_PROTOCOL;
out:
	if (r == TK_OK)
		*rlen = x->got;
	else
		tk_wipe(x->resp, x->got);
	tk_wipe(x->iblk, sizeof(x->iblk));
	tk_wipe(x->last, sizeof(x->last));
	tk_wipe(x->rblk, sizeof(x->rblk));
	return r;
}

static void
x_init(struct x *x, tk_t1_t *t, tk_t1_xfer_fn xfer, void *ctx, uint8_t *resp, size_t cap)
{
	memset(x, 0, sizeof(*x));
	x->t = t;
	x->xfer = xfer;
	x->ctx = ctx;
	x->resp = resp;
	x->cap = cap;
	x->sending = true;
	x->wtx = 1;
}

int
tk_t1_transceive(tk_t1_t *t, tk_t1_xfer_fn xfer, void *ctx, const uint8_t *apdu, size_t len,
                 uint8_t *resp, size_t cap, size_t *rlen)
{
	struct x x;
	int r;

	if (rlen != NULL)
		*rlen = 0;
	if (t == NULL || xfer == NULL || apdu == NULL || len == 0 || resp == NULL || rlen == NULL ||
	    t->ifsc == 0)
		return TK_ERR_INVALID_ARG;
	x_init(&x, t, xfer, ctx, resp, cap);
	x.apdu = apdu;
	x.len = len;
	x.can_resend = true;
	if ((r = next_iblock(&x)) != TK_OK)
		return r;
	return run(&x, NULL, 0, rlen);
}

int
tk_t1_continue(tk_t1_t *t, tk_t1_xfer_fn xfer, void *ctx, const uint8_t *first, size_t first_len,
               uint8_t *resp, size_t cap, size_t *rlen)
{
	struct x x;

	if (rlen != NULL)
		*rlen = 0;
	if (t == NULL || xfer == NULL || first == NULL || resp == NULL || rlen == NULL ||
	    first_len > TK_T1_MAX_BLOCK)
		return TK_ERR_INVALID_ARG;
	x_init(&x, t, xfer, ctx, resp, cap);
	/* Our (the reader's) single I-block: nothing left to chain. */
	x.len = 1;
	x.chunk = 1;
	return run(&x, first, first_len, rlen);
}

int
tk_t1_negotiate_ifsd(tk_t1_t *t, tk_t1_xfer_fn xfer, void *ctx, size_t ifsd)
{
	uint8_t blk[TK_T1_MAX_BLOCK], rblk[TK_T1_MAX_BLOCK + 16], v;
	size_t blen = 0, rlen = 0;
	tk_t1_block_t k;
	int r;

	if (t == NULL || xfer == NULL || ifsd < 1 || ifsd > TK_T1_MAX_INF)
		return TK_ERR_INVALID_ARG;
	v = (uint8_t)ifsd;
	if ((r = tk_t1_block_build(t->nad, TK_T1_PCB_S(TK_T1_S_IFS, false), &v, 1, t->crc, blk,
	                           sizeof(blk), &blen)) != TK_OK)
		return r;
	for (int i = 0; i <= TK_T1_MAX_ERRORS; i++) {
		r = xfer(ctx, blk, blen, 1, rblk, sizeof(rblk), &rlen);
		if (r != TK_OK && r != TK_ERR_COMM && r != TK_ERR_UNRESPONSIVE)
			return r;
		if (r == TK_OK && tk_t1_block_parse(rblk, rlen, t->crc, &k) == TK_OK &&
		    k.kind == TK_T1_S && k.sresponse && k.stype == TK_T1_S_IFS && k.inf[0] == v) {
			t->ifsd = ifsd;
			return TK_OK;
		}
		t->retransmits++;
	}
	tk_log_debug("t1: no S(IFS response) for IFSD %zu", ifsd);
	return TK_ERR_PROTOCOL;
}
