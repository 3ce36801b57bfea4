/* tokenkit: the on-disk public-object cache (format in cache.h). */
#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <tokenkit/buf.h>
#include <tokenkit/err.h>
#include <tokenkit/log.h>
#include <tokenkit/mem.h>

#include "cache.h"
#include "env.h"
#include "fsutil.h"
#include "ossl.h"

static const uint8_t cache_magic[8] = {'T', 'K', 'C', 'A', 'C', 'H', 'E', '1'};
#define DIGEST_LEN 32

struct rec {
	uint32_t key;
	uint8_t *data;
	size_t len;
};

struct tk_cache {
	char identity[TK_CACHE_MAX_IDENTITY + 1];
	struct rec *recs;
	size_t n, cap;
};

int
tk_cache_new(const char *identity, tk_cache_t **out)
{
	tk_cache_t *c;

	*out = NULL;
	if (identity == NULL || strlen(identity) > TK_CACHE_MAX_IDENTITY)
		return TK_ERR_INVALID_ARG;
	if ((c = calloc(1, sizeof(*c))) == NULL)
		return TK_ERR_NO_MEMORY;
	memcpy(c->identity, identity, strlen(identity) + 1);
	*out = c;
	return TK_OK;
}

void
tk_cache_free(tk_cache_t **cp)
{
	tk_cache_t *c;

	if (cp == NULL || (c = *cp) == NULL)
		return;
	for (size_t i = 0; i < c->n; i++)
		free(c->recs[i].data);
	free(c->recs);
	free(c);
	*cp = NULL;
}

const char *
tk_cache_identity(const tk_cache_t *c)
{
	return c->identity;
}

static struct rec *
find(const tk_cache_t *c, uint32_t key)
{
	for (size_t i = 0; i < c->n; i++)
		if (c->recs[i].key == key)
			return &c->recs[i];
	return NULL;
}

int
tk_cache_put(tk_cache_t *c, uint32_t key, const uint8_t *data, size_t len)
{
	struct rec *r;
	uint8_t *copy;

	if (len > TK_CACHE_MAX_RECORD)
		return TK_ERR_TOO_LONG;
	if ((r = find(c, key)) == NULL && c->n >= TK_CACHE_MAX_RECORDS)
		return TK_ERR_TOO_LONG;
	/* +1: malloc(0) may return NULL */
	if ((copy = malloc(len + 1)) == NULL)
		return TK_ERR_NO_MEMORY;
	if (len > 0)
		memcpy(copy, data, len);
	if (r == NULL) {
		if (c->n == c->cap) {
			size_t ncap = c->cap ? c->cap * 2 : 16;
			struct rec *nr = realloc(c->recs, ncap * sizeof(*nr));

			if (nr == NULL) {
				free(copy);
				return TK_ERR_NO_MEMORY;
			}
			c->recs = nr;
			c->cap = ncap;
		}
		r = &c->recs[c->n++];
		r->key = key;
	} else {
		free(r->data);
	}
	r->data = copy;
	r->len = len;
	return TK_OK;
}

int
tk_cache_get(const tk_cache_t *c, uint32_t key, const uint8_t **data, size_t *len)
{
	const struct rec *r;

	*data = NULL;
	*len = 0;
	if (c == NULL || (r = find(c, key)) == NULL)
		return TK_ERR_NOT_FOUND;
	*data = r->data;
	*len = r->len;
	return TK_OK;
}

void
tk_cache_del(tk_cache_t *c, uint32_t key)
{
	struct rec *r = find(c, key);

	if (r == NULL)
		return;
	free(r->data);
	*r = c->recs[--c->n];
}

size_t
tk_cache_count(const tk_cache_t *c)
{
	return c != NULL ? c->n : 0;
}

bool
tk_cache_equal(const tk_cache_t *a, const tk_cache_t *b)
{
	if (a == NULL || b == NULL)
		return a == b;
	if (strcmp(a->identity, b->identity) != 0 || a->n != b->n)
		return false;
	for (size_t i = 0; i < a->n; i++) {
		const struct rec *r = find(b, a->recs[i].key);

		if (r == NULL || r->len != a->recs[i].len ||
		    (r->len > 0 && memcmp(r->data, a->recs[i].data, r->len) != 0))
			return false;
	}
	return true;
}

int
tk_cache_encode(const tk_cache_t *c, uint8_t **out, size_t *out_len)
{
	size_t idl = strlen(c->identity), total = 8 + 2 + 2 + 2 + idl + 4 + DIGEST_LEN;
	tk_wbuf_t w;
	uint8_t *p;
	int r;

	*out = NULL;
	*out_len = 0;
	for (size_t i = 0; i < c->n; i++)
		total += 8 + c->recs[i].len;
	if ((p = malloc(total)) == NULL)
		return TK_ERR_NO_MEMORY;
	tk_wbuf_init(&w, p, total);
	tk_wbuf_put_bytes(&w, cache_magic, sizeof(cache_magic));
	tk_wbuf_put_u16be(&w, TK_CACHE_VERSION);
	tk_wbuf_put_u16be(&w, 0);
	tk_wbuf_put_u16be(&w, (uint16_t)idl);
	tk_wbuf_put_bytes(&w, c->identity, idl);
	tk_wbuf_put_u32be(&w, (uint32_t)c->n);
	for (size_t i = 0; i < c->n; i++) {
		tk_wbuf_put_u32be(&w, c->recs[i].key);
		tk_wbuf_put_u32be(&w, (uint32_t)c->recs[i].len);
		tk_wbuf_put_bytes(&w, c->recs[i].data, c->recs[i].len);
	}
	if ((r = tk_wbuf_error(&w)) != TK_OK || w.len + DIGEST_LEN != total) {
		free(p);
		return r != TK_OK ? r : TK_ERR_INTERNAL;
	}
	if ((r = tk_ossl_sha256(p, w.len, p + w.len)) != TK_OK) {
		free(p);
		return r;
	}
	*out = p;
	*out_len = total;
	return TK_OK;
}

int
tk_cache_decode(const uint8_t *p, size_t len, tk_cache_t **out)
{
	uint8_t magic[8], digest[DIGEST_LEN];
	char identity[TK_CACHE_MAX_IDENTITY + 1];
	const uint8_t *stored, *rec;
	uint16_t version, reserved, idl;
	uint32_t count, key, rlen;
	tk_cache_t *c = NULL;
	tk_buf_t b, body;
	int r;

	*out = NULL;
	if (p == NULL || len < DIGEST_LEN)
		return TK_ERR_TRUNCATED;
	if (len > TK_CACHE_MAX_FILE)
		return TK_ERR_TOO_LONG;
	tk_buf_init(&b, p, len);
	if ((r = tk_buf_get_sub(&b, &body, len - DIGEST_LEN)) != TK_OK ||
	    (r = tk_buf_get_ptr(&b, &stored, DIGEST_LEN)) != TK_OK)
		return r;
	if ((r = tk_buf_get_bytes(&body, magic, sizeof(magic))) != TK_OK)
		return r;
	if (memcmp(magic, cache_magic, sizeof(magic)) != 0)
		return TK_ERR_MALFORMED;
	if ((r = tk_buf_get_u16be(&body, &version)) != TK_OK ||
	    (r = tk_buf_get_u16be(&body, &reserved)) != TK_OK)
		return r;
	if (version != TK_CACHE_VERSION || reserved != 0)
		return TK_ERR_MALFORMED;
	/* The checksum covers the rest; check it before trusting any length. */
	if ((r = tk_ossl_sha256(p, len - DIGEST_LEN, digest)) != TK_OK)
		return r;
	if (memcmp(digest, stored, DIGEST_LEN) != 0)
		return TK_ERR_BAD_CHECKSUM;
	if ((r = tk_buf_get_u16be(&body, &idl)) != TK_OK)
		return r;
	if (idl > TK_CACHE_MAX_IDENTITY)
		return TK_ERR_MALFORMED;
	if ((r = tk_buf_get_bytes(&body, identity, idl)) != TK_OK)
		return r;
	identity[idl] = '\0';
	if (memchr(identity, '\0', idl) != NULL)
		return TK_ERR_MALFORMED;
	if ((r = tk_buf_get_u32be(&body, &count)) != TK_OK)
		return r;
	if (count > TK_CACHE_MAX_RECORDS)
		return TK_ERR_MALFORMED;
	if ((r = tk_cache_new(identity, &c)) != TK_OK)
		return r;
	for (uint32_t i = 0; i < count; i++) {
		if ((r = tk_buf_get_u32be(&body, &key)) != TK_OK ||
		    (r = tk_buf_get_u32be(&body, &rlen)) != TK_OK)
			goto fail;
		if (rlen > TK_CACHE_MAX_RECORD) {
			r = TK_ERR_MALFORMED;
			goto fail;
		}
		if ((r = tk_buf_get_ptr(&body, &rec, rlen)) != TK_OK)
			goto fail;
		if (find(c, key) != NULL) {
			r = TK_ERR_MALFORMED;
			goto fail;
		}
		if ((r = tk_cache_put(c, key, rec, rlen)) != TK_OK)
			goto fail;
	}
	if (tk_buf_left(&body) != 0) {
		r = TK_ERR_MALFORMED;
		goto fail;
	}
	*out = c;
	return TK_OK;
fail:
	tk_cache_free(&c);
	return r;
}

int
tk_cache_dir(const char *opt, char *out, size_t cap)
{
	const char *base;
	int n;

	if (cap > 0)
		out[0] = '\0';
	/* Not in a set-uid program, even one that names a directory. */
	if (!tk_env_files_allowed())
		return TK_ERR_NOT_SUPPORTED;
	if (opt != NULL) {
		if (opt[0] == '\0')
			return TK_ERR_NOT_SUPPORTED;
		n = snprintf(out, cap, "%s", opt);
	} else if ((base = tk_env("XDG_CACHE_HOME")) != NULL && base[0] == '/') {
		n = snprintf(out, cap, "%s/tokenkit", base);
	} else if ((base = tk_env("HOME")) != NULL && base[0] == '/') {
		n = snprintf(out, cap, "%s/.cache/tokenkit", base);
	} else {
		return TK_ERR_NOT_FOUND;
	}
	if (n < 0 || (size_t)n >= cap) {
		if (cap > 0)
			out[0] = '\0';
		return TK_ERR_TOO_LONG;
	}
	return TK_OK;
}

/* The file name for identity: non-portable characters become '_'. */
static int
cache_name(const char *identity, char *out, size_t cap)
{
	char name[TK_CACHE_MAX_IDENTITY + 1];
	size_t l = strlen(identity);
	int n;

	if (l == 0 || l > TK_CACHE_MAX_IDENTITY)
		return TK_ERR_INVALID_ARG;
	for (size_t i = 0; i <= l; i++) {
		char ch = identity[i];
		bool ok = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
		          (ch >= '0' && ch <= '9') || ch == '-' || ch == '_' || ch == '\0';

		name[i] = ok ? ch : '_';
	}
	n = snprintf(out, cap, "%s.cache", name);
	if (n < 0 || (size_t)n >= cap)
		return TK_ERR_TOO_LONG;
	return TK_OK;
}

int
tk_cache_path(const char *dir, const char *identity, char *out, size_t cap)
{
	char name[TK_CACHE_MAX_IDENTITY + 8];
	int n, r;

	if ((r = cache_name(identity, name, sizeof(name))) != TK_OK)
		return r;
	n = snprintf(out, cap, "%s/%s", dir, name);
	if (n < 0 || (size_t)n >= cap)
		return TK_ERR_TOO_LONG;
	return TK_OK;
}

/* A cache directory (or file) that is not ours and private is refused:
 * another user could read what we cache or plant a card's certificates.
 * Said once per process, as a warning. */
static void
refused(const char *dir, const char *what, int r)
{
	static atomic_bool warned;

	if (r == TK_ERR_UNSAFE && !atomic_exchange(&warned, true))
		tk_log_warn("cache: %s%s%s refused (not a private directory or file of uid %u); "
		            "no disk cache",
		            dir, what != NULL ? "/" : "", what != NULL ? what : "",
		            (unsigned)geteuid());
}

int
tk_cache_load(const char *dir, const char *identity, tk_cache_t **out)
{
	char name[TK_CACHE_MAX_IDENTITY + 8];
	uint8_t *data = NULL;
	size_t len = 0;
	int dfd = -1, r;

	*out = NULL;
	if ((r = cache_name(identity, name, sizeof(name))) != TK_OK)
		return r;
	if ((r = tk_fs_dir_open(dir, 0, &dfd)) != TK_OK) {
		refused(dir, NULL, r);
		return r == TK_ERR_UNSAFE ? r : TK_ERR_NOT_FOUND;
	}
	r = tk_fs_read(dfd, name, TK_CACHE_MAX_FILE, &data, &len);
	tk_fs_close(&dfd);
	if (r == TK_ERR_NOT_FOUND)
		return r;
	if (r == TK_OK)
		r = tk_cache_decode(data, len, out);
	free(data);
	if (r == TK_OK && strcmp(tk_cache_identity(*out), identity) != 0) {
		tk_cache_free(out);
		r = TK_ERR_MALFORMED;
	}
	if (r != TK_OK)
		tk_log_warn("cache: ignoring %s/%s: %s", dir, name, tk_strerror(r));
	return r;
}

int
tk_cache_store(const char *dir, const tk_cache_t *c)
{
	char name[TK_CACHE_MAX_IDENTITY + 8];
	uint8_t *data = NULL;
	size_t len = 0;
	int dfd = -1, r;

	if ((r = cache_name(c->identity, name, sizeof(name))) != TK_OK)
		return r;
	if ((r = tk_fs_dir_open(dir, TK_FS_DIR_CREATE, &dfd)) != TK_OK) {
		refused(dir, NULL, r);
		goto out;
	}
	if ((r = tk_cache_encode(c, &data, &len)) != TK_OK)
		goto out;
	r = tk_fs_write_atomic(dfd, name, data, len);
	refused(dir, name, r);
out:
	tk_fs_close(&dfd);
	free(data);
	if (r != TK_OK && r != TK_ERR_UNSAFE)
		tk_log_warn("cache: cannot write %s/%s: %s", dir, name, tk_strerror(r));
	return r;
}

int
tk_cache_remove(const char *dir, const char *identity)
{
	char name[TK_CACHE_MAX_IDENTITY + 8];
	int dfd = -1, r;

	if ((r = cache_name(identity, name, sizeof(name))) != TK_OK)
		return r;
	if ((r = tk_fs_dir_open(dir, 0, &dfd)) != TK_OK)
		return r == TK_ERR_NOT_FOUND ? TK_OK : r;
	if (unlinkat(dfd, name, 0) != 0 && errno != ENOENT)
		r = TK_ERR_IO;
	tk_fs_close(&dfd);
	return r;
}
