/* tokenkit: bounded reader and writer for wire data. */
#include <string.h>

#include <tokenkit/buf.h>
#include <tokenkit/err.h>

void
tk_buf_init(tk_buf_t *b, const void *data, size_t len)
{
	b->data = data;
	b->len = data != NULL ? len : 0;
	b->pos = 0;
}

size_t
tk_buf_left(const tk_buf_t *b)
{
	return b->len - b->pos;
}

int
tk_buf_get_ptr(tk_buf_t *b, const uint8_t **p, size_t n)
{
	*p = NULL;
	if (tk_buf_left(b) < n)
		return TK_ERR_TRUNCATED;
	if (b->data == NULL)
		return TK_OK; /* empty buffer, n == 0: NULL + 0 is undefined in C */
	*p = b->data + b->pos;
	b->pos += n;
	return TK_OK;
}

int
tk_buf_get_bytes(tk_buf_t *b, void *out, size_t n)
{
	const uint8_t *p;
	int r;

	if (n > 0)
		memset(out, 0, n);
	if ((r = tk_buf_get_ptr(b, &p, n)) != TK_OK)
		return r;
	if (n > 0)
		memcpy(out, p, n);
	return TK_OK;
}

int
tk_buf_get_sub(tk_buf_t *b, tk_buf_t *sub, size_t n)
{
	const uint8_t *p;
	int r;

	tk_buf_init(sub, NULL, 0);
	if ((r = tk_buf_get_ptr(b, &p, n)) != TK_OK)
		return r;
	tk_buf_init(sub, p, n);
	return TK_OK;
}

int
tk_buf_skip(tk_buf_t *b, size_t n)
{
	const uint8_t *p;

	return tk_buf_get_ptr(b, &p, n);
}

int
tk_buf_peek_u8(const tk_buf_t *b, uint8_t *v)
{
	*v = 0;
	if (tk_buf_left(b) < 1)
		return TK_ERR_TRUNCATED;
	*v = b->data[b->pos];
	return TK_OK;
}

static int
get_be(tk_buf_t *b, size_t n, uint32_t *v)
{
	const uint8_t *p;
	int r;

	*v = 0;
	if ((r = tk_buf_get_ptr(b, &p, n)) != TK_OK)
		return r;
	for (size_t i = 0; i < n; i++)
		*v = (*v << 8) | p[i];
	return TK_OK;
}

static int
get_le(tk_buf_t *b, size_t n, uint32_t *v)
{
	const uint8_t *p;
	int r;

	*v = 0;
	if ((r = tk_buf_get_ptr(b, &p, n)) != TK_OK)
		return r;
	for (size_t i = n; i > 0; i--)
		*v = (*v << 8) | p[i - 1];
	return TK_OK;
}

int
tk_buf_get_u8(tk_buf_t *b, uint8_t *v)
{
	uint32_t x;
	int r = get_be(b, 1, &x);

	*v = (uint8_t)x;
	return r;
}

int
tk_buf_get_u16be(tk_buf_t *b, uint16_t *v)
{
	uint32_t x;
	int r = get_be(b, 2, &x);

	*v = (uint16_t)x;
	return r;
}

int
tk_buf_get_u24be(tk_buf_t *b, uint32_t *v)
{
	return get_be(b, 3, v);
}

int
tk_buf_get_u32be(tk_buf_t *b, uint32_t *v)
{
	return get_be(b, 4, v);
}

int
tk_buf_get_u16le(tk_buf_t *b, uint16_t *v)
{
	uint32_t x;
	int r = get_le(b, 2, &x);

	*v = (uint16_t)x;
	return r;
}

int
tk_buf_get_u32le(tk_buf_t *b, uint32_t *v)
{
	return get_le(b, 4, v);
}

void
tk_wbuf_init(tk_wbuf_t *w, void *data, size_t cap)
{
	w->data = data;
	w->cap = data != NULL ? cap : 0;
	w->len = 0;
	w->err = TK_OK;
}

uint8_t *
tk_wbuf_reserve(tk_wbuf_t *w, size_t n)
{
	uint8_t *p;

	if (w->err != TK_OK || w->cap - w->len < n) {
		w->err = TK_ERR_BUFFER_TOO_SMALL;
		return NULL;
	}
	if (w->data == NULL)
		return NULL; /* no buffer, n == 0: nothing to point at, not an error */
	p = w->data + w->len;
	w->len += n;
	return p;
}

int
tk_wbuf_put_bytes(tk_wbuf_t *w, const void *src, size_t n)
{
	uint8_t *p = tk_wbuf_reserve(w, n);

	if (p == NULL)
		return w->err;
	if (n > 0)
		memcpy(p, src, n);
	return TK_OK;
}

static int
put_be(tk_wbuf_t *w, uint32_t v, size_t n)
{
	uint8_t *p = tk_wbuf_reserve(w, n);

	if (p == NULL)
		return w->err;
	for (size_t i = n; i > 0; i--, v >>= 8)
		p[i - 1] = (uint8_t)v;
	return TK_OK;
}

static int
put_le(tk_wbuf_t *w, uint32_t v, size_t n)
{
	uint8_t *p = tk_wbuf_reserve(w, n);

	if (p == NULL)
		return w->err;
	for (size_t i = 0; i < n; i++, v >>= 8)
		p[i] = (uint8_t)v;
	return TK_OK;
}

int
tk_wbuf_put_u8(tk_wbuf_t *w, uint8_t v)
{
	return put_be(w, v, 1);
}

int
tk_wbuf_put_u16be(tk_wbuf_t *w, uint16_t v)
{
	return put_be(w, v, 2);
}

int
tk_wbuf_put_u32be(tk_wbuf_t *w, uint32_t v)
{
	return put_be(w, v, 4);
}

int
tk_wbuf_put_u16le(tk_wbuf_t *w, uint16_t v)
{
	return put_le(w, v, 2);
}

int
tk_wbuf_put_u32le(tk_wbuf_t *w, uint32_t v)
{
	return put_le(w, v, 4);
}

int
tk_wbuf_error(const tk_wbuf_t *w)
{
	return w->err;
}
