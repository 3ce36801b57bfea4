/* Fuzz target: vpcd message framing (tools/vcard/vpcd_frame.c).
 *
 * Input: a capacity byte, a chunking byte, then the byte stream vpcd would
 * send. The stream is fed to the decoder in chunks of varying size (some
 * empty), or, when the chunking byte is odd, in reads limited by
 * tk_vpcd_dec_want() as tokenkit-vcard does. Every message the decoder
 * yields must equal what a one-shot tk_buf parse of the stream finds, a
 * frame longer than the buffer must stop the decoder exactly after its
 * header, and each message's header must be what the encoder writes. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <tokenkit/buf.h>
#include <tokenkit/err.h>

#include "vpcd_frame.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const size_t caps[8] = {TK_VPCD_FRAME_MAX, 0, 1, 2, 5, 261, 4096, 65534};

/* The next frame of the stream by a plain tk_buf parse: 1 with a complete
 * frame, 0 at the end (or inside a partial frame), -1 for a frame longer
 * than cap (*off then ends after its header). */
static int
ref_next(tk_buf_t *b, size_t cap, const uint8_t **p, size_t *len, size_t *off)
{
	uint16_t v;

	*p = NULL;
	*len = 0;
	if (tk_buf_get_u16be(b, &v) != TK_OK)
		return 0;
	*off = b->pos;
	if (v > cap)
		return -1;
	if (tk_buf_get_ptr(b, p, v) != TK_OK)
		return 0;
	*len = v;
	*off = b->pos;
	return 1;
}

static void
check_header(const uint8_t *frame_hdr, size_t len)
{
	uint8_t hdr[TK_VPCD_HDR_LEN];

	if (tk_vpcd_frame_header(len, hdr) != TK_OK || memcmp(hdr, frame_hdr, sizeof(hdr)) != 0)
		abort();
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const uint8_t *stream, *msg, *want_p;
	size_t cap, slen, pos = 0, used, mlen, want_len, ref_off = 0;
	uint8_t *buf = NULL, hdr[TK_VPCD_HDR_LEN];
	uint32_t seed;
	bool limited, stopped = false;
	tk_vpcd_dec_t d;
	tk_buf_t ref;
	int r, expect;

	if (size < 2 || size > 3 * 65536)
		return 0;
	cap = caps[data[0] & 7];
	if ((data[0] & 0x80) != 0 && cap > 16)
		cap -= data[0] >> 3 & 0x0F; /* just below a boundary */
	limited = (data[1] & 1) != 0;
	seed = data[1] | 0x100u;
	stream = data + 2;
	slen = size - 2;
	/* exactly cap bytes, so ASan sees any write past it */
	if (cap > 0 && (buf = malloc(cap)) == NULL)
		return 0;
	tk_vpcd_dec_init(&d, buf, cap);
	tk_buf_init(&ref, stream, slen);
	expect = ref_next(&ref, cap, &want_p, &want_len, &ref_off);

	for (unsigned guard = 0; guard < 4 * 65536 + 16; guard++) {
		size_t chunk, w = tk_vpcd_dec_want(&d);

		if (limited) {
			chunk = w;
		} else {
			seed = seed * 1103515245u + 12345u;
			chunk = (seed >> 16) % 9 == 0 ? 0 : (seed >> 16) % 700;
			if ((seed >> 8 & 0xFF) == 0)
				chunk = 70000; /* now and then, everything */
		}
		if (chunk > slen - pos)
			chunk = slen - pos;
		r = tk_vpcd_dec_feed(&d, stream + pos, chunk, &used, &msg, &mlen);
		if (used > chunk || (limited && used != chunk && r == TK_OK))
			abort();
		pos += used;
		if (r == TK_ERR_TOO_LONG) {
			/* stopped exactly after the header the reference rejects */
			if (expect != -1 || pos != ref_off || msg != NULL || mlen != 0 ||
			    tk_vpcd_dec_want(&d) != 0)
				abort();
			/* sticky until reset */
			if (tk_vpcd_dec_feed(&d, stream + pos, slen - pos, &used, &msg, &mlen) !=
			            TK_ERR_TOO_LONG ||
			    used != 0 || msg != NULL)
				abort();
			stopped = true;
			break;
		}
		if (r != TK_OK)
			abort();
		if (msg != NULL) {
			if (expect != 1 || mlen != want_len || pos != ref_off || mlen > cap ||
			    (mlen > 0 && memcmp(msg, want_p, mlen) != 0))
				abort();
			check_header(stream + ref_off - mlen - TK_VPCD_HDR_LEN, mlen);
			if (tk_vpcd_dec_want(&d) != TK_VPCD_HDR_LEN)
				abort();
			expect = ref_next(&ref, cap, &want_p, &want_len, &ref_off);
		} else if (used != chunk || mlen != 0 || tk_vpcd_dec_want(&d) == 0) {
			abort(); /* without a message, a chunk is consumed whole */
		}
		if (pos == slen && (chunk == 0 || limited))
			break;
	}
	/* Unless stopped by a long frame, the whole stream was taken and the
	 * reference finds no further frame (at most a partial one). */
	if (!stopped && (pos != slen || expect != 0))
		abort();
	tk_vpcd_dec_reset(&d);
	if (tk_vpcd_dec_want(&d) != TK_VPCD_HDR_LEN || d.have != 0 || d.hdr_len != 0)
		abort();
	if (tk_vpcd_frame_header(TK_VPCD_FRAME_MAX + 1u + (size % 3), hdr) != TK_ERR_TOO_LONG ||
	    hdr[0] != 0 || hdr[1] != 0)
		abort();
	free(buf);
	return 0;
}
