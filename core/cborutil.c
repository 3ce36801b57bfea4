/* tokenkit: the CBOR helpers every codec shares (cborutil.h). */
#include <string.h>

#include <tokenkit/err.h>

#include "cborutil.h"

struct walk {
	size_t left; /* bytes after the current item's header start */
	bool bad;
};

static void
collection(void *ctx, size_t n, size_t per_item)
{
	struct walk *w = ctx;

	/* every item takes at least one byte, after a header of at least one */
	if (w->left == 0 || n > (w->left - 1) / per_item)
		w->bad = true;
}

static void
array_start(void *ctx, size_t n)
{
	collection(ctx, n, 1);
}

static void
map_start(void *ctx, size_t n)
{
	collection(ctx, n, 2);
}

static void
chunk(void *ctx, cbor_data data, uint64_t len)
{
	struct walk *w = ctx;

	(void)data;
	if (len > w->left)
		w->bad = true;
}

int
tk_cbor_check(const uint8_t *p, size_t len)
{
	struct cbor_callbacks cb = cbor_empty_callbacks;
	struct walk w = {0};
	size_t pos = 0;

	cb.array_start = array_start;
	cb.map_start = map_start;
	cb.byte_string = chunk;
	cb.string = chunk;
	while (pos < len) {
		struct cbor_decoder_result r;

		w.left = len - pos;
		r = cbor_stream_decode(p + pos, len - pos, &cb, &w);
		if (w.bad) /* (it claims more than there is) */
			return TK_CBOR_TRUNCATED;
		if (r.status == CBOR_DECODER_NEDATA)
			return TK_CBOR_TRUNCATED;
		if (r.status != CBOR_DECODER_FINISHED || r.read == 0)
			return TK_CBOR_INSANE;
		pos += r.read;
	}
	return TK_CBOR_SANE;
}

int
tk_cbor_load(const uint8_t *p, size_t len, cbor_item_t **out)
{
	struct cbor_load_result res;

	*out = NULL;
	switch (tk_cbor_check(p, len)) { /* before cbor_load allocates for a claim */
	case TK_CBOR_SANE:
		break;
	case TK_CBOR_TRUNCATED:
		return TK_ERR_TRUNCATED;
	default:
		return TK_ERR_MALFORMED;
	}
	*out = cbor_load(p, len, &res);
	if (*out == NULL)
		return res.error.code == CBOR_ERR_NOTENOUGHDATA ? TK_ERR_TRUNCATED
		       : res.error.code == CBOR_ERR_MEMERROR    ? TK_ERR_NO_MEMORY
		                                                : TK_ERR_MALFORMED;
	if (res.read != len) {
		cbor_decref(out);
		return TK_ERR_MALFORMED;
	}
	return TK_OK;
}

cbor_item_t *
tk_cbor_uint(uint64_t v)
{
	if (v <= UINT8_MAX)
		return cbor_build_uint8((uint8_t)v);
	if (v <= UINT16_MAX)
		return cbor_build_uint16((uint16_t)v);
	if (v <= UINT32_MAX)
		return cbor_build_uint32((uint32_t)v);
	return cbor_build_uint64(v);
}

bool
tk_cbor_map_put(cbor_item_t *map, const char *key, cbor_item_t *val)
{
	cbor_item_t *k = cbor_build_string(key);
	bool ok = k != NULL && val != NULL &&
	          cbor_map_add(map, (struct cbor_pair){.key = k, .value = val});

	if (k != NULL)
		cbor_decref(&k);
	if (val != NULL)
		cbor_decref(&val);
	return ok;
}

bool
tk_cbor_text(const cbor_item_t *it, char *out, size_t cap, size_t *len)
{
	size_t n;

	if (!cbor_isa_string(it) || !cbor_string_is_definite(it))
		return false;
	n = cbor_string_length(it);
	if (n >= cap || (n > 0 && memchr(cbor_string_handle(it), '\0', n) != NULL))
		return false;
	if (n > 0)
		memcpy(out, cbor_string_handle(it), n);
	out[n] = '\0';
	if (len != NULL)
		*len = n;
	return true;
}

bool
tk_cbor_get_uint(const cbor_item_t *it, uint64_t max, uint64_t *v)
{
	if (!cbor_isa_uint(it))
		return false;
	*v = cbor_get_int(it);
	return *v <= max;
}
