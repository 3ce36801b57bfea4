/* tokenkit: bounded reading and writing of wire data.
 *
 * Every parser of card, reader, USB or file data reads through a tk_buf and
 * every encoder writes through a tk_wbuf. Getters check bounds before they
 * touch memory, clear their output first, and on failure leave the cursor
 * where it was. A tk_wbuf error is sticky: after the first overflow every put
 * fails and tk_wbuf_error() reports it, so encoders can check once at the end. */
#ifndef TOKENKIT_BUF_H
#define TOKENKIT_BUF_H

#include <tokenkit/common.h>

typedef struct tk_buf {
	const uint8_t *data;
	size_t len;
	size_t pos;
} tk_buf_t;

TK_EXPORT void tk_buf_init(tk_buf_t *b, const void *data, size_t len);
TK_EXPORT size_t tk_buf_left(const tk_buf_t *b);
/* Errors: TK_ERR_TRUNCATED when fewer than the needed bytes are left. */
TK_EXPORT int tk_buf_get_u8(tk_buf_t *b, uint8_t *v);
TK_EXPORT int tk_buf_get_u16be(tk_buf_t *b, uint16_t *v);
TK_EXPORT int tk_buf_get_u24be(tk_buf_t *b, uint32_t *v);
TK_EXPORT int tk_buf_get_u32be(tk_buf_t *b, uint32_t *v);
TK_EXPORT int tk_buf_get_u16le(tk_buf_t *b, uint16_t *v);
TK_EXPORT int tk_buf_get_u32le(tk_buf_t *b, uint32_t *v);
TK_EXPORT int tk_buf_get_bytes(tk_buf_t *b, void *out, size_t n);
/* Borrow n bytes in place (*p points into the buffer). */
TK_EXPORT int tk_buf_get_ptr(tk_buf_t *b, const uint8_t **p, size_t n);
/* Split off the next n bytes as a sub-buffer. */
TK_EXPORT int tk_buf_get_sub(tk_buf_t *b, tk_buf_t *sub, size_t n);
TK_EXPORT int tk_buf_skip(tk_buf_t *b, size_t n);
TK_EXPORT int tk_buf_peek_u8(const tk_buf_t *b, uint8_t *v);

typedef struct tk_wbuf {
	uint8_t *data;
	size_t cap;
	size_t len;
	int err;
} tk_wbuf_t;

TK_EXPORT void tk_wbuf_init(tk_wbuf_t *w, void *data, size_t cap);
/* Each returns TK_OK or TK_ERR_BUFFER_TOO_SMALL (sticky). */
TK_EXPORT int tk_wbuf_put_u8(tk_wbuf_t *w, uint8_t v);
TK_EXPORT int tk_wbuf_put_u16be(tk_wbuf_t *w, uint16_t v);
TK_EXPORT int tk_wbuf_put_u32be(tk_wbuf_t *w, uint32_t v);
TK_EXPORT int tk_wbuf_put_u16le(tk_wbuf_t *w, uint16_t v);
TK_EXPORT int tk_wbuf_put_u32le(tk_wbuf_t *w, uint32_t v);
TK_EXPORT int tk_wbuf_put_bytes(tk_wbuf_t *w, const void *p, size_t n);
/* Reserve n bytes and return a pointer to them (NULL on overflow). */
TK_EXPORT uint8_t *tk_wbuf_reserve(tk_wbuf_t *w, size_t n);
TK_EXPORT int tk_wbuf_error(const tk_wbuf_t *w);

#endif
