/* tokenkit: registrations in memory and on disk (format in registry_priv.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cbor.h>

#include <tokenkit/buf.h>
#include <tokenkit/err.h>
#include <tokenkit/text.h>
#include <tokenkit/token.h>

#include "cborutil.h"
#include "ossl.h"
#include "registry_priv.h"

#define MAGIC_LEN 8
#define HEAD_LEN (MAGIC_LEN + 4)
#define DIGEST_LEN 32

static const uint8_t rec_magic[MAGIC_LEN] = {'T', 'K', 'R', 'E', 'G', 'R', 'E', 'C'};
static const uint8_t sid_magic[MAGIC_LEN] = {'T', 'K', 'R', 'E', 'G', 'S', 'I', 'D'};

uint64_t
tk_reg_now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

/* ---- names ------------------------------------------------------------------ */

static bool
id_ok(const char *s, size_t max, bool instance)
{
	size_t n = s != NULL ? strnlen(s, max + 1) : 0;

	if (n == 0 || n > max || (instance && s[0] == '.'))
		return false;
	for (size_t i = 0; i < n; i++) {
		char c = s[i];
		bool ok = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_';

		if (instance)
			ok = ok || (c >= 'A' && c <= 'Z') || c == '.' || c == '-' || c == ':';
		if (!ok)
			return false;
	}
	return true;
}

bool
tk_reg_provider_ok(const char *s)
{
	return id_ok(s, TK_REG_PROVIDER_MAX, false);
}

bool
tk_reg_instance_ok(const char *s)
{
	return id_ok(s, TK_REG_INSTANCE_MAX, true);
}

int
tk_reg_file_name(const char *provider, const char *instance, char *out, size_t cap)
{
	int n;

	if (cap > 0)
		out[0] = '\0';
	if (!tk_reg_provider_ok(provider) || !tk_reg_instance_ok(instance))
		return TK_ERR_INVALID_ARG;
	n = snprintf(out, cap, "%s@%s%s", provider, instance, TK_REG_SUFFIX);
	return n < 0 || (size_t)n >= cap ? TK_ERR_TOO_LONG : TK_OK;
}

bool
tk_reg_file_parse(const char *name, char *provider, char *instance)
{
	size_t n = strlen(name), sl = strlen(TK_REG_SUFFIX), pl;
	const char *at = strchr(name, '@');

	provider[0] = instance[0] = '\0';
	if (at == NULL || n <= sl || strcmp(name + n - sl, TK_REG_SUFFIX) != 0)
		return false;
	pl = (size_t)(at - name);
	if (pl == 0 || pl > TK_REG_PROVIDER_MAX || n - sl - pl - 1 > TK_REG_INSTANCE_MAX)
		return false;
	memcpy(provider, name, pl);
	provider[pl] = '\0';
	memcpy(instance, at + 1, n - sl - pl - 1);
	instance[n - sl - pl - 1] = '\0';
	if (!tk_reg_provider_ok(provider) || !tk_reg_instance_ok(instance)) {
		provider[0] = instance[0] = '\0';
		return false;
	}
	return true;
}

/* Text a person chose, shown as it is: printable UTF-8 that needs no
 * escape (tk_text_escape is the judge), no NUL. */
static bool
label_ok(const char *s, size_t len)
{
	return len <= TK_REG_LABEL_MAX && memchr(s, '\0', len) == NULL &&
	       tk_text_escape(s, len, TK_TEXT_PLAIN, NULL, 0) == len;
}

/* ---- the object ------------------------------------------------------------- */

int
tk_registration_new(const char *provider, const char *instance, tk_registration_t **out)
{
	tk_registration_t *r;

	if (out == NULL)
		return TK_ERR_INVALID_ARG;
	*out = NULL;
	if (!tk_reg_provider_ok(provider) || !tk_reg_instance_ok(instance))
		return TK_ERR_INVALID_ARG;
	if ((r = calloc(1, sizeof(*r))) == NULL)
		return TK_ERR_NO_MEMORY;
	snprintf(r->provider, sizeof(r->provider), "%s", provider);
	snprintf(r->instance, sizeof(r->instance), "%s", instance);
	*out = r;
	return TK_OK;
}

static void
item_clear(struct tk_reg_item_rec *it)
{
	free(it->label);
	free(it->der);
	free(it->handle);
	memset(it, 0, sizeof(*it));
}

void
tk_registration_clear_items(tk_registration_t *r)
{
	if (r == NULL)
		return;
	for (size_t i = 0; i < r->nitems; i++)
		item_clear(&r->items[i]);
	free(r->items);
	r->items = NULL;
	r->nitems = 0;
}

void
tk_registration_free(tk_registration_t **rp)
{
	tk_registration_t *r;

	if (rp == NULL || (r = *rp) == NULL)
		return;
	tk_registration_clear_items(r);
	free(r->config);
	free(r->store);
	free(r);
	*rp = NULL;
}

int
tk_registration_set_label(tk_registration_t *r, const char *label)
{
	size_t n;

	if (r == NULL || label == NULL)
		return TK_ERR_INVALID_ARG;
	n = strnlen(label, TK_REG_LABEL_MAX + 1);
	if (!label_ok(label, n))
		return TK_ERR_INVALID_ARG;
	memcpy(r->label, label, n);
	r->label[n] = '\0';
	return TK_OK;
}

void
tk_registration_set_flags(tk_registration_t *r, unsigned flags)
{
	if (r != NULL)
		r->flags = flags;
}

static uint8_t *
dup_bytes(const uint8_t *p, size_t n)
{
	uint8_t *c = malloc(n + 1); /* +1: never malloc(0) */

	if (c != NULL && n > 0)
		memcpy(c, p, n);
	return c;
}

int
tk_registration_set_config(tk_registration_t *r, const uint8_t *config, size_t len)
{
	uint8_t *c;

	if (r == NULL || (config == NULL && len > 0))
		return TK_ERR_INVALID_ARG;
	if (len > TK_REG_CONFIG_MAX)
		return TK_ERR_TOO_LONG;
	if ((c = dup_bytes(config, len)) == NULL)
		return TK_ERR_NO_MEMORY;
	free(r->config);
	r->config = c;
	r->config_len = len;
	return TK_OK;
}

static bool
item_ok(const tk_reg_item_t *it)
{
	size_t ll = it->label != NULL ? strnlen(it->label, TK_REG_LABEL_MAX + 1) : 0;

	if (it->id == NULL || it->id_len == 0 || it->id_len > TK_REG_ID_MAX ||
	    !label_ok(it->label != NULL ? it->label : "", ll) || it->der_len > TK_REG_DER_MAX ||
	    (it->der == NULL && it->der_len > 0))
		return false;
	if (it->kind == TK_REG_ITEM_CERT)
		return it->der_len > 0 && it->key_type == TK_KEY_NONE && it->key_bits == 0 &&
		       it->usage == 0 && it->handle_len == 0;
	if (it->kind != TK_REG_ITEM_KEY)
		return false;
	return (it->key_type == TK_KEY_RSA || it->key_type == TK_KEY_EC ||
	        it->key_type == TK_KEY_ED25519) &&
	       it->handle != NULL && it->handle_len > 0 && it->handle_len <= TK_REG_HANDLE_MAX &&
	       (it->usage & ~(unsigned)(TK_USAGE_SIGN | TK_USAGE_DECRYPT | TK_USAGE_DERIVE)) == 0;
}

int
tk_registration_add_item(tk_registration_t *r, const tk_reg_item_t *it)
{
	struct tk_reg_item_rec *ni, rec;

	if (r == NULL || it == NULL || !item_ok(it))
		return TK_ERR_INVALID_ARG;
	if (r->nitems >= TK_REG_ITEMS_MAX)
		return TK_ERR_TOO_LONG;
	memset(&rec, 0, sizeof(rec));
	rec.kind = it->kind;
	memcpy(rec.id, it->id, it->id_len);
	rec.id_len = it->id_len;
	rec.label = strdup(it->label != NULL ? it->label : "");
	rec.der = dup_bytes(it->der, it->der_len);
	rec.der_len = it->der_len;
	rec.key_type = it->key_type;
	rec.key_bits = it->key_bits;
	rec.usage = it->usage;
	rec.handle = dup_bytes(it->handle, it->handle_len);
	rec.handle_len = it->handle_len;
	ni = realloc(r->items, (r->nitems + 1) * sizeof(*ni));
	if (rec.label == NULL || rec.der == NULL || rec.handle == NULL || ni == NULL) {
		if (ni != NULL)
			r->items = ni;
		item_clear(&rec);
		return TK_ERR_NO_MEMORY;
	}
	r->items = ni;
	r->items[r->nitems++] = rec;
	return TK_OK;
}

int
tk_reg_set_store(tk_registration_t *r, const char *path)
{
	char *copy = NULL;

	if (path != NULL && (copy = strdup(path)) == NULL)
		return TK_ERR_NO_MEMORY;
	free(r->store);
	r->store = copy;
	return TK_OK;
}

const char *
tk_reg_store(const tk_registration_t *r)
{
	return r != NULL ? r->store : NULL;
}

int
tk_registration_dup(const tk_registration_t *r, tk_registration_t **out)
{
	tk_registration_t *c = NULL;
	tk_reg_item_t it;
	int res;

	if (out == NULL || r == NULL)
		return TK_ERR_INVALID_ARG;
	*out = NULL;
	if ((res = tk_registration_new(r->provider, r->instance, &c)) != TK_OK)
		return res;
	memcpy(c->label, r->label, sizeof(c->label));
	c->flags = r->flags;
	c->gen = r->gen;
	c->created = r->created;
	c->updated = r->updated;
	c->removed = r->removed;
	res = tk_reg_set_store(c, r->store);
	if (res == TK_OK)
		res = tk_registration_set_config(c, r->config, r->config_len);
	for (size_t i = 0; res == TK_OK && i < r->nitems; i++) {
		(void)tk_registration_item(r, i, &it);
		res = tk_registration_add_item(c, &it);
	}
	if (res != TK_OK) {
		tk_registration_free(&c);
		return res;
	}
	*out = c;
	return TK_OK;
}

const char *
tk_registration_provider(const tk_registration_t *r)
{
	return r != NULL ? r->provider : "";
}

const char *
tk_registration_instance(const tk_registration_t *r)
{
	return r != NULL ? r->instance : "";
}

const char *
tk_registration_label(const tk_registration_t *r)
{
	return r != NULL ? r->label : "";
}

unsigned
tk_registration_flags(const tk_registration_t *r)
{
	return r != NULL ? r->flags : 0;
}

uint64_t
tk_registration_generation(const tk_registration_t *r)
{
	return r != NULL ? r->gen : 0;
}

uint64_t
tk_registration_created(const tk_registration_t *r)
{
	return r != NULL ? r->created : 0;
}

uint64_t
tk_registration_updated(const tk_registration_t *r)
{
	return r != NULL ? r->updated : 0;
}

bool
tk_registration_removed(const tk_registration_t *r)
{
	return r != NULL && r->removed;
}

size_t
tk_registration_item_count(const tk_registration_t *r)
{
	return r != NULL ? r->nitems : 0;
}

int
tk_registration_item(const tk_registration_t *r, size_t i, tk_reg_item_t *item)
{
	const struct tk_reg_item_rec *it;

	if (item != NULL)
		memset(item, 0, sizeof(*item));
	if (r == NULL || item == NULL || i >= r->nitems)
		return TK_ERR_NOT_FOUND;
	it = &r->items[i];
	item->kind = it->kind;
	item->id = it->id;
	item->id_len = it->id_len;
	item->label = it->label;
	item->der = it->der;
	item->der_len = it->der_len;
	item->key_type = it->key_type;
	item->key_bits = it->key_bits;
	item->usage = it->usage;
	item->handle = it->handle_len > 0 ? it->handle : NULL;
	item->handle_len = it->handle_len;
	return TK_OK;
}

void
tk_registration_config(const tk_registration_t *r, const uint8_t **config, size_t *len)
{
	*config = r != NULL && r->config_len > 0 ? r->config : NULL;
	*len = r != NULL ? r->config_len : 0;
}

static bool
bytes_eq(const uint8_t *a, size_t al, const uint8_t *b, size_t bl)
{
	return al == bl && (al == 0 || memcmp(a, b, al) == 0);
}

bool
tk_registration_equal(const tk_registration_t *a, const tk_registration_t *b)
{
	if (a == NULL || b == NULL)
		return a == b;
	if (strcmp(a->provider, b->provider) != 0 || strcmp(a->instance, b->instance) != 0 ||
	    strcmp(a->label, b->label) != 0 || a->flags != b->flags || a->removed != b->removed ||
	    a->nitems != b->nitems || !bytes_eq(a->config, a->config_len, b->config, b->config_len))
		return false;
	for (size_t i = 0; i < a->nitems; i++) {
		const struct tk_reg_item_rec *x = &a->items[i], *y = &b->items[i];

		if (x->kind != y->kind || !bytes_eq(x->id, x->id_len, y->id, y->id_len) ||
		    strcmp(x->label, y->label) != 0 ||
		    !bytes_eq(x->der, x->der_len, y->der, y->der_len) ||
		    x->key_type != y->key_type || x->key_bits != y->key_bits ||
		    x->usage != y->usage ||
		    !bytes_eq(x->handle, x->handle_len, y->handle, y->handle_len))
			return false;
	}
	return true;
}

/* ---- CBOR ----------------------------------------------------------------------- */

static cbor_item_t *
build_bytes(const uint8_t *p, size_t n)
{
	static const uint8_t none[1];

	return cbor_build_bytestring(n > 0 ? p : none, n);
}

static const char *
key_type_name(int kt)
{
	return kt == TK_KEY_RSA       ? "rsa"
	       : kt == TK_KEY_EC      ? "ec"
	       : kt == TK_KEY_ED25519 ? "ed25519"
	                              : "";
}

static cbor_item_t *
build_item(const struct tk_reg_item_rec *it)
{
	bool key = it->kind == TK_REG_ITEM_KEY;
	cbor_item_t *m = cbor_new_definite_map(key ? 8 : 4);
	bool ok = m != NULL;

	ok = ok && tk_cbor_map_put(m, "kind", cbor_build_string(key ? "key" : "cert"));
	ok = ok && tk_cbor_map_put(m, "id", build_bytes(it->id, it->id_len));
	ok = ok && tk_cbor_map_put(m, "label", cbor_build_string(it->label));
	ok = ok && tk_cbor_map_put(m, "der", build_bytes(it->der, it->der_len));
	if (key) {
		ok = ok &&
		     tk_cbor_map_put(m, "type", cbor_build_string(key_type_name(it->key_type)));
		ok = ok && tk_cbor_map_put(m, "bits", tk_cbor_uint(it->key_bits));
		ok = ok && tk_cbor_map_put(m, "usage", tk_cbor_uint(it->usage));
		ok = ok && tk_cbor_map_put(m, "handle", build_bytes(it->handle, it->handle_len));
	}
	if (!ok && m != NULL)
		cbor_decref(&m);
	return m;
}

static cbor_item_t *
build_rec(const tk_registration_t *r)
{
	cbor_item_t *m = cbor_new_definite_map(10), *items = NULL;
	bool ok = m != NULL && (items = cbor_new_definite_array(r->nitems)) != NULL;

	ok = ok && tk_cbor_map_put(m, "provider", cbor_build_string(r->provider));
	ok = ok && tk_cbor_map_put(m, "instance", cbor_build_string(r->instance));
	ok = ok && tk_cbor_map_put(m, "generation", tk_cbor_uint(r->gen));
	ok = ok && tk_cbor_map_put(m, "created", tk_cbor_uint(r->created));
	ok = ok && tk_cbor_map_put(m, "updated", tk_cbor_uint(r->updated));
	ok = ok && tk_cbor_map_put(m, "flags", tk_cbor_uint(r->flags));
	ok = ok && tk_cbor_map_put(m, "removed", cbor_build_bool(r->removed));
	ok = ok && tk_cbor_map_put(m, "label", cbor_build_string(r->label));
	for (size_t i = 0; ok && i < r->nitems; i++) {
		cbor_item_t *it = build_item(&r->items[i]);

		ok = it != NULL && cbor_array_push(items, it);
		if (it != NULL)
			cbor_decref(&it);
	}
	if (ok) {
		ok = tk_cbor_map_put(m, "items", items);
		items = NULL; /* put took it */
	}
	ok = ok && tk_cbor_map_put(m, "config", build_bytes(r->config, r->config_len));
	if (items != NULL)
		cbor_decref(&items);
	if (!ok && m != NULL)
		cbor_decref(&m);
	return m;
}

/* magic | version | reserved | CBOR of item | SHA-256 */
static int
frame(const uint8_t magic[MAGIC_LEN], cbor_item_t *item, size_t max, uint8_t **out, size_t *len)
{
	unsigned char *body = NULL;
	size_t body_cap = 0, body_len, total;
	uint8_t *p = NULL;
	tk_wbuf_t w;
	int r;

	if (item == NULL)
		return TK_ERR_NO_MEMORY;
	body_len = cbor_serialize_alloc(item, &body, &body_cap);
	if (body_len == 0) {
		free(body);
		return TK_ERR_NO_MEMORY;
	}
	total = HEAD_LEN + body_len + DIGEST_LEN;
	if (total > max) {
		r = TK_ERR_TOO_LONG;
		goto out;
	}
	if ((p = malloc(total)) == NULL) {
		r = TK_ERR_NO_MEMORY;
		goto out;
	}
	tk_wbuf_init(&w, p, total);
	tk_wbuf_put_bytes(&w, magic, MAGIC_LEN);
	tk_wbuf_put_u16be(&w, TK_REG_VERSION);
	tk_wbuf_put_u16be(&w, 0);
	tk_wbuf_put_bytes(&w, body, body_len);
	if ((r = tk_wbuf_error(&w)) != TK_OK || (r = tk_ossl_sha256(p, w.len, p + w.len)) != TK_OK)
		goto out;
	*out = p;
	*len = total;
	p = NULL;
out:
	free(p);
	free(body);
	return r;
}

int
tk_reg_encode(const tk_registration_t *r, uint8_t **out, size_t *len)
{
	cbor_item_t *m;
	int res;

	*out = NULL;
	*len = 0;
	if (r == NULL)
		return TK_ERR_INVALID_ARG;
	m = build_rec(r);
	res = frame(rec_magic, m, TK_REG_RECORD_MAX, out, len);
	if (m != NULL)
		cbor_decref(&m);
	return res;
}

/* Check the frame, give the body. */
static int
unframe(const uint8_t magic[MAGIC_LEN], const uint8_t *p, size_t len, size_t max,
        const uint8_t **body, size_t *body_len)
{
	uint8_t m[MAGIC_LEN], digest[DIGEST_LEN];
	uint16_t version, reserved;
	const uint8_t *stored;
	tk_buf_t b;
	int r;

	*body = NULL;
	*body_len = 0;
	if (p == NULL || len < HEAD_LEN + DIGEST_LEN)
		return TK_ERR_TRUNCATED;
	if (len > max)
		return TK_ERR_TOO_LONG;
	tk_buf_init(&b, p, len);
	if ((r = tk_buf_get_bytes(&b, m, MAGIC_LEN)) != TK_OK ||
	    (r = tk_buf_get_u16be(&b, &version)) != TK_OK ||
	    (r = tk_buf_get_u16be(&b, &reserved)) != TK_OK)
		return r;
	if (memcmp(m, magic, MAGIC_LEN) != 0)
		return TK_ERR_MALFORMED;
	if (version != TK_REG_VERSION)
		return TK_ERR_NOT_SUPPORTED; /* a foreign version: not ours to read */
	if (reserved != 0)
		return TK_ERR_MALFORMED;
	if ((r = tk_buf_get_ptr(&b, body, len - HEAD_LEN - DIGEST_LEN)) != TK_OK ||
	    (r = tk_buf_get_ptr(&b, &stored, DIGEST_LEN)) != TK_OK)
		return r;
	if ((r = tk_ossl_sha256(p, len - DIGEST_LEN, digest)) != TK_OK)
		return r;
	if (memcmp(digest, stored, DIGEST_LEN) != 0) {
		*body = NULL;
		return TK_ERR_BAD_CHECKSUM;
	}
	*body_len = len - HEAD_LEN - DIGEST_LEN;
	return TK_OK;
}

static int
load_cbor(const uint8_t *body, size_t len, cbor_item_t **out)
{
	int r = tk_cbor_load(body, len, out);

	if (r == TK_OK && (!cbor_isa_map(*out) || !cbor_map_is_definite(*out))) {
		cbor_decref(out);
		r = TK_ERR_MALFORMED;
	}
	return r;
}

static bool
get_bytes(const cbor_item_t *it, size_t max, const uint8_t **p, size_t *n)
{
	if (!cbor_isa_bytestring(it) || !cbor_bytestring_is_definite(it))
		return false;
	*n = cbor_bytestring_length(it);
	*p = cbor_bytestring_handle(it);
	return *n <= max;
}

/* Index of key in names (n of them), or -1. */
static int
key_index(const cbor_item_t *k, const char *const *names, int n)
{
	char buf[16];

	if (!tk_cbor_text(k, buf, sizeof(buf), NULL))
		return -1;
	for (int i = 0; i < n; i++)
		if (strcmp(buf, names[i]) == 0)
			return i;
	return -1;
}

enum { I_KIND, I_ID, I_LABEL, I_DER, I_TYPE, I_BITS, I_USAGE, I_HANDLE, I_N };
static const char *const item_keys[I_N] = {"kind", "id",   "label", "der",
                                           "type", "bits", "usage", "handle"};

static int
parse_item(const cbor_item_t *m, tk_registration_t *r)
{
	const cbor_item_t *v[I_N] = {NULL};
	struct cbor_pair *pairs;
	char kind[8], type[8], label[TK_REG_LABEL_MAX + 1];
	tk_reg_item_t it;
	uint64_t u;
	size_t n, ll;
	bool ok;

	if (!cbor_isa_map(m) || !cbor_map_is_definite(m))
		return TK_ERR_MALFORMED;
	n = cbor_map_size(m);
	pairs = cbor_map_handle(m);
	for (size_t i = 0; i < n; i++) {
		int k = key_index(pairs[i].key, item_keys, I_N);

		if (k < 0 || v[k] != NULL)
			return TK_ERR_MALFORMED;
		v[k] = pairs[i].value;
	}
	memset(&it, 0, sizeof(it));
	ok = v[I_KIND] != NULL && tk_cbor_text(v[I_KIND], kind, sizeof(kind), NULL) &&
	     v[I_ID] != NULL && get_bytes(v[I_ID], TK_REG_ID_MAX, &it.id, &it.id_len) &&
	     v[I_LABEL] != NULL && tk_cbor_text(v[I_LABEL], label, sizeof(label), &ll) &&
	     label_ok(label, ll) && v[I_DER] != NULL &&
	     get_bytes(v[I_DER], TK_REG_DER_MAX, &it.der, &it.der_len);
	if (!ok)
		return TK_ERR_MALFORMED;
	it.label = label;
	if (strcmp(kind, "cert") == 0) {
		it.kind = TK_REG_ITEM_CERT;
		ok = v[I_TYPE] == NULL && v[I_BITS] == NULL && v[I_USAGE] == NULL &&
		     v[I_HANDLE] == NULL;
	} else if (strcmp(kind, "key") == 0) {
		it.kind = TK_REG_ITEM_KEY;
		ok = v[I_TYPE] != NULL && tk_cbor_text(v[I_TYPE], type, sizeof(type), NULL) &&
		     v[I_HANDLE] != NULL &&
		     get_bytes(v[I_HANDLE], TK_REG_HANDLE_MAX, &it.handle, &it.handle_len) &&
		     v[I_BITS] != NULL && tk_cbor_get_uint(v[I_BITS], 65536, &u);
		it.key_bits = ok ? (unsigned)u : 0;
		ok = ok && v[I_USAGE] != NULL && tk_cbor_get_uint(v[I_USAGE], 0xff, &u);
		it.usage = ok ? (unsigned)u : 0;
		it.key_type = !ok                            ? TK_KEY_NONE
		              : strcmp(type, "rsa") == 0     ? TK_KEY_RSA
		              : strcmp(type, "ec") == 0      ? TK_KEY_EC
		              : strcmp(type, "ed25519") == 0 ? TK_KEY_ED25519
		                                             : TK_KEY_NONE;
	} else {
		ok = false;
	}
	/* the writer's own checks decide what a valid item is */
	if (!ok || !item_ok(&it))
		return TK_ERR_MALFORMED;
	return tk_registration_add_item(r, &it);
}

enum {
	R_PROVIDER,
	R_INSTANCE,
	R_GEN,
	R_CREATED,
	R_UPDATED,
	R_FLAGS,
	R_REMOVED,
	R_LABEL,
	R_ITEMS,
	R_CONFIG,
	R_N
};
static const char *const rec_keys[R_N] = {"provider", "instance", "generation", "created",
                                          "updated",  "flags",    "removed",    "label",
                                          "items",    "config"};

static int
parse_rec(const cbor_item_t *m, tk_registration_t **out)
{
	const cbor_item_t *v[R_N] = {NULL};
	char provider[TK_REG_PROVIDER_MAX + 1], instance[TK_REG_INSTANCE_MAX + 1];
	const uint8_t *config;
	size_t n, ll, config_len;
	struct cbor_pair *pairs;
	tk_registration_t *r = NULL;
	uint64_t u;
	int res = TK_ERR_MALFORMED;

	n = cbor_map_size(m);
	pairs = cbor_map_handle(m);
	for (size_t i = 0; i < n; i++) {
		int k = key_index(pairs[i].key, rec_keys, R_N);

		if (k < 0 || v[k] != NULL)
			return TK_ERR_MALFORMED;
		v[k] = pairs[i].value;
	}
	for (int k = 0; k < R_N; k++)
		if (v[k] == NULL)
			return TK_ERR_MALFORMED;
	if (!tk_cbor_text(v[R_PROVIDER], provider, sizeof(provider), NULL) ||
	    !tk_cbor_text(v[R_INSTANCE], instance, sizeof(instance), NULL))
		return TK_ERR_MALFORMED;
	if ((res = tk_registration_new(provider, instance, &r)) != TK_OK)
		return res == TK_ERR_NO_MEMORY ? res : TK_ERR_MALFORMED;
	res = TK_ERR_MALFORMED;
	if (!tk_cbor_get_uint(v[R_GEN], UINT64_MAX - 1, &r->gen) || r->gen == 0 ||
	    !tk_cbor_get_uint(v[R_CREATED], UINT64_MAX, &r->created) ||
	    !tk_cbor_get_uint(v[R_UPDATED], UINT64_MAX, &r->updated) ||
	    !tk_cbor_get_uint(v[R_FLAGS], TK_REG_FLAG_CARD, &u) || !cbor_is_bool(v[R_REMOVED]) ||
	    !tk_cbor_text(v[R_LABEL], r->label, sizeof(r->label), &ll) || !label_ok(r->label, ll) ||
	    !cbor_isa_array(v[R_ITEMS]) || !cbor_array_is_definite(v[R_ITEMS]) ||
	    cbor_array_size(v[R_ITEMS]) > TK_REG_ITEMS_MAX ||
	    !get_bytes(v[R_CONFIG], TK_REG_CONFIG_MAX, &config, &config_len))
		goto fail;
	r->flags = (unsigned)u;
	r->removed = cbor_get_bool(v[R_REMOVED]);
	for (size_t i = 0; i < cbor_array_size(v[R_ITEMS]); i++)
		if ((res = parse_item(cbor_array_handle(v[R_ITEMS])[i], r)) != TK_OK)
			goto fail;
	if ((res = tk_registration_set_config(r, config, config_len)) != TK_OK)
		goto fail;
	*out = r;
	return TK_OK;
fail:
	tk_registration_free(&r);
	return res;
}

int
tk_reg_decode(const uint8_t *p, size_t len, tk_registration_t **out)
{
	const uint8_t *body;
	uint8_t *again = NULL;
	size_t body_len, again_len = 0;
	cbor_item_t *m = NULL;
	tk_registration_t *r = NULL;
	int res;

	if (out == NULL)
		return TK_ERR_INVALID_ARG;
	*out = NULL;
	if ((res = unframe(rec_magic, p, len, TK_REG_RECORD_MAX, &body, &body_len)) != TK_OK)
		return res;
	if ((res = load_cbor(body, body_len, &m)) != TK_OK)
		return res;
	res = parse_rec(m, &r);
	cbor_decref(&m);
	if (res != TK_OK)
		return res;
	/* One encoding only: what we would write, byte for byte (no other key
	 * order, integer width, indefinite length or tag). */
	if ((res = tk_reg_encode(r, &again, &again_len)) != TK_OK)
		goto fail;
	if (again_len != len || memcmp(again, p, len) != 0) {
		res = TK_ERR_MALFORMED;
		goto fail;
	}
	free(again);
	*out = r;
	return TK_OK;
fail:
	free(again);
	tk_registration_free(&r);
	return res;
}

/* ---- the store's identity ------------------------------------------------------------ */

int
tk_reg_store_id_encode(const tk_reg_store_id_t *id, uint8_t **out, size_t *len)
{
	cbor_item_t *m = cbor_new_definite_map(2);
	bool ok = m != NULL;
	int res;

	*out = NULL;
	*len = 0;
	ok = ok && tk_cbor_map_put(m, "id", build_bytes(id->id, TK_REG_ID_LEN));
	ok = ok && tk_cbor_map_put(m, "created", tk_cbor_uint(id->created));
	res = ok ? frame(sid_magic, m, 4096, out, len) : TK_ERR_NO_MEMORY;
	if (m != NULL)
		cbor_decref(&m);
	return res;
}

int
tk_reg_store_id_decode(const uint8_t *p, size_t len, tk_reg_store_id_t *id)
{
	static const char *const keys[2] = {"id", "created"};
	const cbor_item_t *v[2] = {NULL};
	const uint8_t *body, *idp = NULL;
	uint8_t *again = NULL;
	size_t body_len, idl = 0, again_len = 0;
	struct cbor_pair *pairs;
	cbor_item_t *m = NULL;
	tk_reg_store_id_t got;
	int res;

	memset(id, 0, sizeof(*id));
	if ((res = unframe(sid_magic, p, len, 4096, &body, &body_len)) != TK_OK)
		return res;
	if ((res = load_cbor(body, body_len, &m)) != TK_OK)
		return res;
	res = TK_ERR_MALFORMED;
	pairs = cbor_map_handle(m);
	for (size_t i = 0; i < cbor_map_size(m); i++) {
		int k = key_index(pairs[i].key, keys, 2);

		if (k < 0 || v[k] != NULL)
			goto out;
		v[k] = pairs[i].value;
	}
	memset(&got, 0, sizeof(got));
	if (v[0] == NULL || v[1] == NULL || !get_bytes(v[0], TK_REG_ID_LEN, &idp, &idl) ||
	    idl != TK_REG_ID_LEN || !tk_cbor_get_uint(v[1], UINT64_MAX, &got.created))
		goto out;
	memcpy(got.id, idp, TK_REG_ID_LEN);
	if ((res = tk_reg_store_id_encode(&got, &again, &again_len)) != TK_OK)
		goto out;
	if (again_len != len || memcmp(again, p, len) != 0) {
		res = TK_ERR_MALFORMED;
		goto out;
	}
	*id = got;
	res = TK_OK;
out:
	free(again);
	cbor_decref(&m);
	return res;
}
