/* tokenkit: TLV data objects of ISO/IEC 7816-4 (BER-TLV, SIMPLE-TLV,
 * COMPACT-TLV).
 *
 * BER-TLV here is the subset of ITU-T X.690 that smart cards use:
 *  - tags of 1 to 4 bytes, kept as their raw bytes big-endian in a uint32_t
 *    (0x53, 0x7F49, 0x5FC105). A first subsequent byte of 0x80 (a padded tag
 *    number) is rejected; two-byte tags with a small number (EMV's 0x9F02)
 *    are accepted, as cards use them.
 *  - definite lengths only: short form 0x00..0x7F, long form 0x81..0x84
 *    followed by 1..4 bytes. 0x80 (indefinite) and 0x85.. are rejected.
 *    Long forms that could have been shorter are accepted.
 *
 * Padding: ISO/IEC 7816-4 (5.2.2) allows '00' and 'FF' bytes without meaning
 * before, between and after BER-TLV data objects, and makes '00' and 'FF'
 * invalid as the first byte of a tag. tk_ber_get() therefore skips them
 * wherever it expects a tag (top level and inside constructed values), and
 * never anywhere else. (A card may declare 'FF' a valid first tag byte in
 * its data coding byte; no card we target does, so this is not optional.)
 * SIMPLE-TLV and COMPACT-TLV have no padding. */
#ifndef TOKENKIT_TLV_H
#define TOKENKIT_TLV_H

#include <tokenkit/common.h>
#include <tokenkit/buf.h>

typedef struct tk_tlv {
	uint32_t tag;         /* raw tag bytes, big-endian */
	bool constructed;     /* BER: bit 6 of the first tag byte */
	const uint8_t *value; /* points into the parsed buffer */
	size_t len;           /* length of value */
	size_t hdr_len;       /* bytes of tag + length fields */
} tk_tlv_t;

/* Deepest nesting tk_ber_validate()/tk_ber_walk() accept as max_depth. */
#define TK_BER_DEPTH_LIMIT 32

/* Read the next BER-TLV object from b, skipping '00'/'FF' padding first.
 * Errors: TK_ERR_NOT_FOUND (nothing but padding, or nothing, is left; the
 * padding is consumed), TK_ERR_MALFORMED (tag longer than 4 bytes, padded tag
 * number, indefinite or over-long length field), TK_ERR_TRUNCATED (the tag,
 * length or value runs past the end). On error *t is cleared and b->pos is
 * unchanged. */
TK_EXPORT int tk_ber_get(tk_buf_t *b, tk_tlv_t *t);

/* Find the first top-level object with tag in p[0..len). Errors:
 * TK_ERR_NOT_FOUND, or the tk_ber_get() error that stopped the scan first. */
TK_EXPORT int tk_ber_find(const uint8_t *p, size_t len, uint32_t tag, tk_tlv_t *t);

/* Called for each object in document order; depth 0 is the top level.
 * A non-zero return stops the walk and is returned by tk_ber_walk(). */
typedef int (*tk_ber_walk_fn)(void *ctx, const tk_tlv_t *t, unsigned depth);

/* Walk every object of p[0..len), descending into constructed ones. At most
 * max_depth constructed objects may enclose one another (0: only primitive
 * objects at the top level). fn may be NULL. Errors: TK_ERR_TOO_DEEP,
 * TK_ERR_INVALID_ARG (max_depth > TK_BER_DEPTH_LIMIT), the errors of
 * tk_ber_get() except TK_ERR_NOT_FOUND, or fn's return value. */
TK_EXPORT int tk_ber_walk(const uint8_t *p, size_t len, unsigned max_depth, tk_ber_walk_fn fn,
                          void *ctx);
/* tk_ber_walk() without a callback: TK_OK when p[0..len) is well formed. */
TK_EXPORT int tk_ber_validate(const uint8_t *p, size_t len, unsigned max_depth);

/* Size of the tag and length fields for an object; 0 when tag is not a valid
 * 1..4 byte tag or len does not fit 4 length bytes. */
TK_EXPORT size_t tk_ber_hdr_len(uint32_t tag, size_t len);
/* Write tag and length (shortest length form). Errors: TK_ERR_INVALID_ARG
 * (invalid tag, len > 0xFFFFFFFF), TK_ERR_BUFFER_TOO_SMALL (sticky in w). */
TK_EXPORT int tk_ber_put_hdr(tk_wbuf_t *w, uint32_t tag, size_t len);
/* Write a whole object. v may be NULL when len is 0. Errors as above. */
TK_EXPORT int tk_ber_put(tk_wbuf_t *w, uint32_t tag, const void *v, size_t len);

/* SIMPLE-TLV: tag one byte '01'..'FE'; length one byte '00'..'FE', or 'FF'
 * followed by two bytes big-endian. t->constructed is always false.
 * Errors: TK_ERR_MALFORMED (tag '00' or 'FF'), TK_ERR_TRUNCATED. */
TK_EXPORT int tk_stlv_get(tk_buf_t *b, tk_tlv_t *t);
/* Errors: TK_ERR_INVALID_ARG (tag 0 or > 0xFE, len > 65535),
 * TK_ERR_BUFFER_TOO_SMALL. */
TK_EXPORT int tk_stlv_put(tk_wbuf_t *w, uint8_t tag, const void *v, size_t len);

/* COMPACT-TLV (ATR historical bytes): one byte, tag in the high nibble and
 * length 0..15 in the low nibble. t->tag is the nibble (0x0..0xF); compact
 * tag 'x' stands for BER-TLV tag '4x'. Errors: TK_ERR_TRUNCATED. */
TK_EXPORT int tk_ctlv_get(tk_buf_t *b, tk_tlv_t *t);

#endif
