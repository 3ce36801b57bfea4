/* tokenkit: the software token's record (format in soft_int.h). */
#include <stdlib.h>
#include <string.h>

#include <tokenkit/buf.h>
#include <tokenkit/err.h>
#include <tokenkit/mem.h>

#include "soft_int.h"

static const uint8_t magic[6] = {'T', 'K', 'S', 'O', 'F', 'T'};

void
tk_soft_state_clear(struct soft_state *st)
{
	if (st == NULL)
		return;
	for (size_t i = 0; i < st->n; i++) {
		tk_attrs_clear(&st->objs[i].attrs);
		free(st->objs[i].sealed);
	}
	free(st->objs);
	tk_wipe(st, sizeof(*st));
}

int
tk_soft_state_dup(const struct soft_state *src, struct soft_state *dst)
{
	*dst = *src;
	dst->objs = NULL;
	dst->n = 0;
	if (src->n == 0)
		return TK_OK;
	if ((dst->objs = calloc(src->n, sizeof(*dst->objs))) == NULL)
		goto fail;
	for (size_t i = 0; i < src->n; i++) {
		const struct soft_obj *o = &src->objs[i];
		struct soft_obj *c = &dst->objs[i];

		memcpy(c->uid, o->uid, sizeof(c->uid));
		dst->n = i + 1;
		if (tk_attrs_dup(&o->attrs, &c->attrs) != TK_OK)
			goto fail;
		if (o->sealed != NULL) {
			if ((c->sealed = malloc(o->sealed_len)) == NULL)
				goto fail;
			memcpy(c->sealed, o->sealed, o->sealed_len);
			c->sealed_len = o->sealed_len;
		}
	}
	return TK_OK;
fail:
	tk_soft_state_clear(dst);
	return TK_ERR_NO_MEMORY;
}

struct soft_obj *
tk_soft_state_find(const struct soft_state *st, const uint8_t *uid)
{
	for (size_t i = 0; i < st->n; i++)
		if (memcmp(st->objs[i].uid, uid, TK_SOFT_UID_LEN) == 0)
			return &st->objs[i];
	return NULL;
}

/* ---- encoding ------------------------------------------------------------------------- */

static void
put_wrap(tk_wbuf_t *w, const struct soft_wrap *x)
{
	tk_wbuf_put_u8(w, x->present ? 1 : 0);
	if (!x->present)
		return;
	tk_wbuf_put_u8(w, x->log2n);
	tk_wbuf_put_u8(w, x->r);
	tk_wbuf_put_u8(w, x->p);
	tk_wbuf_put_bytes(w, x->salt, sizeof(x->salt));
	tk_wbuf_put_bytes(w, x->nonce, sizeof(x->nonce));
	tk_wbuf_put_bytes(w, x->ct, sizeof(x->ct));
	tk_wbuf_put_bytes(w, x->tag, sizeof(x->tag));
}

static void
put_u64(tk_wbuf_t *w, uint64_t v)
{
	tk_wbuf_put_u32be(w, (uint32_t)(v >> 32));
	tk_wbuf_put_u32be(w, (uint32_t)v);
}

static void
put_attr(tk_wbuf_t *w, const tk_attr_t *a)
{
	int form = tk_obj_attr_form(a->type);

	tk_wbuf_put_u32be(w, (uint32_t)a->type);
	if (form == TK_OBJ_FORM_BYTES) {
		tk_wbuf_put_u32be(w, (uint32_t)a->len);
		tk_wbuf_put_bytes(w, a->val, a->len);
		return;
	}
	/* CK_ULONG values: 8 bytes each, whatever the host's CK_ULONG */
	tk_wbuf_put_u32be(w, (uint32_t)(a->len / sizeof(CK_ULONG) * 8));
	for (size_t i = 0; i + sizeof(CK_ULONG) <= a->len; i += sizeof(CK_ULONG)) {
		CK_ULONG v;

		memcpy(&v, a->val + i, sizeof(v));
		put_u64(w, (uint64_t)v);
	}
}

static size_t
encoded_size(const struct soft_state *st)
{
	size_t n = sizeof(magic) + 4 +
	           2 * (1 + 3 + SOFT_SALT_LEN + SOFT_NONCE_LEN + SOFT_DEK_LEN + SOFT_TAG_LEN) + 2;

	for (size_t i = 0; i < st->n; i++) {
		n += TK_SOFT_UID_LEN + 2 + 4 + st->objs[i].sealed_len;
		for (size_t k = 0; k < st->objs[i].attrs.n; k++)
			n += 8 + st->objs[i].attrs.a[k].len * 2 + 8;
	}
	return n;
}

int
tk_soft_state_encode(const struct soft_state *st, uint8_t **out, size_t *len)
{
	size_t cap = encoded_size(st);
	uint8_t *buf;
	tk_wbuf_t w;

	*out = NULL;
	*len = 0;
	if (st->n > TK_SOFT_OBJECTS_MAX)
		return TK_ERR_TOO_LONG;
	if ((buf = malloc(cap)) == NULL)
		return TK_ERR_NO_MEMORY;
	tk_wbuf_init(&w, buf, cap);
	tk_wbuf_put_bytes(&w, magic, sizeof(magic));
	tk_wbuf_put_u8(&w, SOFT_VERSION);
	tk_wbuf_put_u8(&w, st->max_tries);
	tk_wbuf_put_u8(&w, st->fails[SOFT_USER]);
	tk_wbuf_put_u8(&w, st->fails[SOFT_SO]);
	put_wrap(&w, &st->wrap[SOFT_USER]);
	put_wrap(&w, &st->wrap[SOFT_SO]);
	tk_wbuf_put_u16be(&w, (uint16_t)st->n);
	for (size_t i = 0; i < st->n; i++) {
		const struct soft_obj *o = &st->objs[i];

		tk_wbuf_put_bytes(&w, o->uid, sizeof(o->uid));
		tk_wbuf_put_u16be(&w, (uint16_t)o->attrs.n);
		for (size_t k = 0; k < o->attrs.n; k++)
			put_attr(&w, &o->attrs.a[k]);
		tk_wbuf_put_u32be(&w, (uint32_t)o->sealed_len);
		tk_wbuf_put_bytes(&w, o->sealed, o->sealed_len);
	}
	if (tk_wbuf_error(&w) != TK_OK) {
		tk_freezero(buf, cap);
		return TK_ERR_INTERNAL;
	}
	if (w.len > TK_REG_CONFIG_MAX) {
		tk_freezero(buf, cap);
		return TK_ERR_TOO_LONG;
	}
	*out = buf;
	*len = w.len;
	return TK_OK;
}

/* ---- decoding ------------------------------------------------------------------------ */

static int
get_wrap(tk_buf_t *b, struct soft_wrap *x)
{
	uint8_t present;
	int r;

	memset(x, 0, sizeof(*x));
	if ((r = tk_buf_get_u8(b, &present)) != TK_OK)
		return r;
	if (present > 1)
		return TK_ERR_MALFORMED;
	if (present == 0)
		return TK_OK;
	x->present = true;
	if ((r = tk_buf_get_u8(b, &x->log2n)) != TK_OK || (r = tk_buf_get_u8(b, &x->r)) != TK_OK ||
	    (r = tk_buf_get_u8(b, &x->p)) != TK_OK ||
	    (r = tk_buf_get_bytes(b, x->salt, sizeof(x->salt))) != TK_OK ||
	    (r = tk_buf_get_bytes(b, x->nonce, sizeof(x->nonce))) != TK_OK ||
	    (r = tk_buf_get_bytes(b, x->ct, sizeof(x->ct))) != TK_OK ||
	    (r = tk_buf_get_bytes(b, x->tag, sizeof(x->tag))) != TK_OK)
		return r;
	/* parameters scrypt takes in bounded time and memory */
	if (x->log2n < SOFT_LOG2N_MIN || x->log2n > SOFT_LOG2N_MAX || x->r == 0 || x->r > 16 ||
	    x->p == 0 || x->p > 4)
		return TK_ERR_MALFORMED;
	return TK_OK;
}

static int
get_attr(tk_buf_t *b, tk_attrs_t *l)
{
	uint32_t type, len;
	const uint8_t *p;
	int form, r;

	if ((r = tk_buf_get_u32be(b, &type)) != TK_OK || (r = tk_buf_get_u32be(b, &len)) != TK_OK)
		return r;
	if (len > TK_SOFT_ATTR_MAX)
		return TK_ERR_MALFORMED;
	if ((r = tk_buf_get_ptr(b, &p, len)) != TK_OK)
		return r;
	/* strictly increasing: no attribute twice, one order only */
	if (l->n > 0 && l->a[l->n - 1].type >= type)
		return TK_ERR_MALFORMED;
	form = tk_obj_attr_form(type);
	if (form == TK_OBJ_FORM_BYTES)
		return tk_attrs_set(l, type, p, len);
	if (len % 8 != 0 || (form == TK_OBJ_FORM_ULONG && len != 8))
		return TK_ERR_MALFORMED;
	{
		size_t n = len / 8;
		CK_ULONG *v = malloc(n > 0 ? n * sizeof(*v) : 1);
		tk_buf_t vb;

		if (v == NULL)
			return TK_ERR_NO_MEMORY;
		tk_buf_init(&vb, p, len);
		for (size_t i = 0; i < n; i++) {
			uint32_t hi = 0, lo = 0;

			(void)tk_buf_get_u32be(&vb, &hi);
			(void)tk_buf_get_u32be(&vb, &lo);
			if (sizeof(CK_ULONG) < 8 && hi != 0) {
				free(v);
				return TK_ERR_MALFORMED;
			}
			v[i] = (CK_ULONG)(((uint64_t)hi << 32) | lo);
		}
		r = tk_attrs_set(l, type, v, n * sizeof(*v));
		free(v);
	}
	return r;
}

static int
get_obj(tk_buf_t *b, struct soft_obj *o)
{
	uint16_t nattrs;
	uint32_t sl;
	const uint8_t *p;
	int r;

	if ((r = tk_buf_get_bytes(b, o->uid, sizeof(o->uid))) != TK_OK ||
	    (r = tk_buf_get_u16be(b, &nattrs)) != TK_OK)
		return r;
	for (uint16_t i = 0; i < nattrs; i++)
		if ((r = get_attr(b, &o->attrs)) != TK_OK)
			return r;
	if ((r = tk_buf_get_u32be(b, &sl)) != TK_OK)
		return r;
	if (sl != 0 && (sl < SOFT_NONCE_LEN + SOFT_TAG_LEN || sl > SOFT_SEALED_MAX))
		return TK_ERR_MALFORMED;
	if ((r = tk_buf_get_ptr(b, &p, sl)) != TK_OK)
		return r;
	if (sl > 0) {
		if ((o->sealed = malloc(sl)) == NULL)
			return TK_ERR_NO_MEMORY;
		memcpy(o->sealed, p, sl);
		o->sealed_len = sl;
	}
	/* an object: a class, and no secret attribute in the clear */
	if (tk_obj_class(&o->attrs) == CK_UNAVAILABLE_INFORMATION)
		return TK_ERR_MALFORMED;
	for (size_t i = 0; i < o->attrs.n; i++)
		if (tk_obj_attr_kind(&o->attrs, o->attrs.a[i].type) == TK_OBJ_ATTR_SECRET)
			return TK_ERR_MALFORMED;
	return TK_OK;
}

int
tk_soft_state_decode(const uint8_t *p, size_t len, struct soft_state *st)
{
	uint8_t m[sizeof(magic)], version;
	uint16_t n;
	tk_buf_t b;
	int r;

	memset(st, 0, sizeof(*st));
	tk_buf_init(&b, p, len);
	if ((r = tk_buf_get_bytes(&b, m, sizeof(m))) != TK_OK ||
	    (r = tk_buf_get_u8(&b, &version)) != TK_OK)
		goto fail;
	if (memcmp(m, magic, sizeof(m)) != 0) {
		r = TK_ERR_MALFORMED;
		goto fail;
	}
	if (version != SOFT_VERSION) {
		r = TK_ERR_NOT_SUPPORTED;
		goto fail;
	}
	if ((r = tk_buf_get_u8(&b, &st->max_tries)) != TK_OK ||
	    (r = tk_buf_get_u8(&b, &st->fails[SOFT_USER])) != TK_OK ||
	    (r = tk_buf_get_u8(&b, &st->fails[SOFT_SO])) != TK_OK ||
	    (r = get_wrap(&b, &st->wrap[SOFT_USER])) != TK_OK ||
	    (r = get_wrap(&b, &st->wrap[SOFT_SO])) != TK_OK ||
	    (r = tk_buf_get_u16be(&b, &n)) != TK_OK)
		goto fail;
	if (st->max_tries == 0 || st->fails[SOFT_USER] > st->max_tries ||
	    st->fails[SOFT_SO] > st->max_tries || !st->wrap[SOFT_SO].present ||
	    n > TK_SOFT_OBJECTS_MAX) {
		r = TK_ERR_MALFORMED;
		goto fail;
	}
	if (n > 0 && (st->objs = calloc(n, sizeof(*st->objs))) == NULL) {
		r = TK_ERR_NO_MEMORY;
		goto fail;
	}
	for (uint16_t i = 0; i < n; i++) {
		st->n = (size_t)i + 1;
		if ((r = get_obj(&b, &st->objs[i])) != TK_OK)
			goto fail;
		if (tk_soft_state_find(st, st->objs[i].uid) != &st->objs[i]) {
			r = TK_ERR_MALFORMED; /* one uid twice */
			goto fail;
		}
	}
	if (tk_buf_left(&b) != 0) {
		r = TK_ERR_MALFORMED;
		goto fail;
	}
	return TK_OK;
fail:
	tk_soft_state_clear(st);
	return r;
}
