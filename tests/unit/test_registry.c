/* The registry: its record format (written here by hand from the format
 * description in core/registry_priv.h, with a CBOR writer of the test's
 * own, not by the code under test), the store's compare-and-swap writes,
 * tombstones and identity checks, and the watcher's events. */
#include <dirent.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include <openssl/evp.h>

#include <tokenkit/err.h>
#include <tokenkit/log.h>
#include <tokenkit/registry.h>
#include <tokenkit/token.h>

#include "registry_priv.h"

/* ---- a CBOR writer of the test's own ------------------------------------------ */

struct w {
	uint8_t b[8192];
	size_t n;
};

static void
head(struct w *w, unsigned major, uint64_t v)
{
	uint8_t m = (uint8_t)(major << 5);

	if (v < 24) {
		w->b[w->n++] = m | (uint8_t)v;
	} else if (v <= 0xff) {
		w->b[w->n++] = m | 24;
		w->b[w->n++] = (uint8_t)v;
	} else if (v <= 0xffff) {
		w->b[w->n++] = m | 25;
		w->b[w->n++] = (uint8_t)(v >> 8);
		w->b[w->n++] = (uint8_t)v;
	} else {
		w->b[w->n++] = m | 27;
		for (int s = 56; s >= 0; s -= 8)
			w->b[w->n++] = (uint8_t)(v >> s);
	}
}

static void
tstr(struct w *w, const char *s)
{
	head(w, 3, strlen(s));
	memcpy(w->b + w->n, s, strlen(s));
	w->n += strlen(s);
}

static void
bstr(struct w *w, const void *p, size_t n)
{
	head(w, 2, n);
	memcpy(w->b + w->n, p, n);
	w->n += n;
}

/* Variations of the hand-made record. */
enum {
	V_GOOD,
	V_WIDE_INT,    /* generation in two bytes instead of one */
	V_UNKNOWN_KEY, /* an eleventh key */
	V_KEY_ORDER,   /* "instance" before "provider" */
	V_NO_CONFIG,   /* a required key missing */
	V_BAD_LABEL,   /* a control character in the label */
	V_GEN_ZERO,    /* generation 0 */
	V_KEY_NO_HANDLE,
};

static void
body(struct w *w, int v)
{
	static const uint8_t cert[] = {0x30, 0x03, 0x02, 0x01, 0x01};

	head(w, 5, v == V_UNKNOWN_KEY ? 11 : v == V_NO_CONFIG ? 9 : 10);
	if (v == V_KEY_ORDER) {
		tstr(w, "instance");
		tstr(w, "a1");
		tstr(w, "provider");
		tstr(w, "soft");
	} else {
		tstr(w, "provider");
		tstr(w, "soft");
		tstr(w, "instance");
		tstr(w, "a1");
	}
	tstr(w, "generation");
	if (v == V_WIDE_INT) {
		w->b[w->n++] = 0x19;
		w->b[w->n++] = 0x00;
		w->b[w->n++] = 0x03;
	} else {
		head(w, 0, v == V_GEN_ZERO ? 0 : 3);
	}
	tstr(w, "created");
	head(w, 0, 1000);
	tstr(w, "updated");
	head(w, 0, 2000);
	tstr(w, "flags");
	head(w, 0, 0);
	tstr(w, "removed");
	w->b[w->n++] = 0xf4; /* false */
	tstr(w, "label");
	tstr(w, v == V_BAD_LABEL ? "L\x1b[2J" : "Label");
	tstr(w, "items");
	head(w, 4, 2);
	head(w, 5, 4);
	tstr(w, "kind");
	tstr(w, "cert");
	tstr(w, "id");
	bstr(w, "\x01", 1);
	tstr(w, "label");
	tstr(w, "c");
	tstr(w, "der");
	bstr(w, cert, sizeof(cert));
	head(w, 5, v == V_KEY_NO_HANDLE ? 7 : 8);
	tstr(w, "kind");
	tstr(w, "key");
	tstr(w, "id");
	bstr(w, "\x01", 1);
	tstr(w, "label");
	tstr(w, "k");
	tstr(w, "der");
	bstr(w, "", 0);
	tstr(w, "type");
	tstr(w, "ec");
	tstr(w, "bits");
	head(w, 0, 256);
	tstr(w, "usage");
	head(w, 0, TK_USAGE_SIGN);
	if (v != V_KEY_NO_HANDLE) {
		tstr(w, "handle");
		bstr(w, "k1", 2);
	}
	if (v != V_NO_CONFIG) {
		tstr(w, "config");
		bstr(w, "\xff", 1);
	}
	if (v == V_UNKNOWN_KEY) {
		tstr(w, "zzz");
		head(w, 0, 1);
	}
}

/* magic | version | reserved | body | SHA-256 */
static size_t
file_image(uint8_t *out, int variant, uint16_t version, bool good_digest)
{
	struct w w = {.n = 0};
	unsigned int dl = 0;
	size_t n = 0;

	body(&w, variant);
	memcpy(out, "TKREGREC", 8);
	n = 8;
	out[n++] = (uint8_t)(version >> 8);
	out[n++] = (uint8_t)version;
	out[n++] = 0;
	out[n++] = 0;
	memcpy(out + n, w.b, w.n);
	n += w.n;
	assert_int_equal(EVP_Digest(out, n, out + n, &dl, EVP_sha256(), NULL), 1);
	if (!good_digest)
		out[n] ^= 0x01;
	return n + dl;
}

static void
test_decode_by_hand(void **state)
{
	uint8_t img[8192], *again = NULL;
	size_t n = file_image(img, V_GOOD, 1, true), again_len = 0;
	tk_registration_t *r = NULL;
	tk_reg_item_t it;
	const uint8_t *cfg;
	size_t cfg_len;

	(void)state;
	assert_int_equal(tk_reg_decode(img, n, &r), TK_OK);
	assert_string_equal(tk_registration_provider(r), "soft");
	assert_string_equal(tk_registration_instance(r), "a1");
	assert_string_equal(tk_registration_label(r), "Label");
	assert_int_equal(tk_registration_generation(r), 3);
	assert_int_equal(tk_registration_created(r), 1000);
	assert_int_equal(tk_registration_updated(r), 2000);
	assert_false(tk_registration_removed(r));
	assert_int_equal(tk_registration_item_count(r), 2);
	assert_int_equal(tk_registration_item(r, 0, &it), TK_OK);
	assert_int_equal(it.kind, TK_REG_ITEM_CERT);
	assert_int_equal(it.der_len, 5);
	assert_int_equal(tk_registration_item(r, 1, &it), TK_OK);
	assert_int_equal(it.kind, TK_REG_ITEM_KEY);
	assert_int_equal(it.key_type, TK_KEY_EC);
	assert_int_equal(it.key_bits, 256);
	assert_int_equal(it.usage, TK_USAGE_SIGN);
	assert_int_equal(it.handle_len, 2);
	assert_memory_equal(it.handle, "k1", 2);
	assert_int_equal(tk_registration_item(r, 2, &it), TK_ERR_NOT_FOUND);
	tk_registration_config(r, &cfg, &cfg_len);
	assert_int_equal(cfg_len, 1);
	assert_int_equal(cfg[0], 0xff);
	/* and our encoder writes exactly these bytes */
	assert_int_equal(tk_reg_encode(r, &again, &again_len), TK_OK);
	assert_int_equal(again_len, n);
	assert_memory_equal(again, img, n);
	free(again);
	tk_registration_free(&r);
	assert_null(r);
}

static void
test_decode_rejects(void **state)
{
	static const struct {
		int variant;
		uint16_t version;
		bool digest;
		int want;
	} cases[] = {
	        {V_GOOD, 2, true, TK_ERR_NOT_SUPPORTED},
	        {V_GOOD, 1, false, TK_ERR_BAD_CHECKSUM},
	        {V_WIDE_INT, 1, true, TK_ERR_MALFORMED},
	        {V_UNKNOWN_KEY, 1, true, TK_ERR_MALFORMED},
	        {V_KEY_ORDER, 1, true, TK_ERR_MALFORMED},
	        {V_NO_CONFIG, 1, true, TK_ERR_MALFORMED},
	        {V_BAD_LABEL, 1, true, TK_ERR_MALFORMED},
	        {V_GEN_ZERO, 1, true, TK_ERR_MALFORMED},
	        {V_KEY_NO_HANDLE, 1, true, TK_ERR_MALFORMED},
	};
	uint8_t img[8192];
	tk_registration_t *r = NULL;
	size_t n;
	uint8_t *big;

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		n = file_image(img, cases[i].variant, cases[i].version, cases[i].digest);
		print_message("case %zu\n", i);
		assert_int_equal(tk_reg_decode(img, n, &r), cases[i].want);
		assert_null(r);
	}
	/* cut anywhere: never accepted */
	n = file_image(img, V_GOOD, 1, true);
	for (size_t cut = 0; cut < n; cut++)
		assert_int_not_equal(tk_reg_decode(img, cut, &r), TK_OK);
	/* bad magic */
	img[0] = 'X';
	assert_int_equal(tk_reg_decode(img, n, &r), TK_ERR_MALFORMED);
	/* oversized */
	big = calloc(1, TK_REG_RECORD_MAX + 1);
	assert_non_null(big);
	assert_int_equal(tk_reg_decode(big, TK_REG_RECORD_MAX + 1, &r), TK_ERR_TOO_LONG);
	free(big);
}

static void
test_names(void **state)
{
	char p[TK_REG_PROVIDER_MAX + 1], i[TK_REG_INSTANCE_MAX + 1], name[TK_REG_NAME_MAX];
	tk_registration_t *r = NULL;

	(void)state;
	assert_int_equal(tk_registration_new("Soft", "a", &r), TK_ERR_INVALID_ARG);
	assert_int_equal(tk_registration_new("soft", "../x", &r), TK_ERR_INVALID_ARG);
	assert_int_equal(tk_registration_new("soft", ".hidden", &r), TK_ERR_INVALID_ARG);
	assert_int_equal(tk_registration_new("soft", "a/b", &r), TK_ERR_INVALID_ARG);
	assert_int_equal(tk_registration_new("so@ft", "a", &r), TK_ERR_INVALID_ARG);
	assert_int_equal(tk_registration_new("", "a", &r), TK_ERR_INVALID_ARG);
	assert_null(r);
	assert_int_equal(tk_reg_file_name("soft", "set.o-ken:1", name, sizeof(name)), TK_OK);
	assert_string_equal(name, "soft@set.o-ken:1.reg");
	assert_true(tk_reg_file_parse(name, p, i));
	assert_string_equal(p, "soft");
	assert_string_equal(i, "set.o-ken:1");
	assert_false(tk_reg_file_parse(".soft@a.reg.tmp-0123", p, i));
	assert_false(tk_reg_file_parse("store-id", p, i));
	assert_false(tk_reg_file_parse("soft@.reg", p, i));
	assert_int_equal(tk_registration_new("soft", "a", &r), TK_OK);
	assert_int_equal(tk_registration_set_label(r, "bad\nlabel"), TK_ERR_INVALID_ARG);
	assert_int_equal(tk_registration_set_label(r, "Gr\xc3\xbc\xc3\x9f"), TK_OK);
	assert_int_equal(tk_registration_set_label(r, "\xff"), TK_ERR_INVALID_ARG);
	tk_registration_free(&r);
}

/* ---- stores -------------------------------------------------------------------- */

struct fx {
	char dir[256];
	char store[300];
};

static int
setup(void **state)
{
	struct fx *f = calloc(1, sizeof(*f));

	snprintf(f->dir, sizeof(f->dir), "/tmp/tk-registry-XXXXXX");
	assert_non_null(mkdtemp(f->dir));
	snprintf(f->store, sizeof(f->store), "%s/state/tokenkit/registry", f->dir);
	*state = f;
	return 0;
}

static int
teardown(void **state)
{
	struct fx *f = *state;
	char cmd[400];

	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", f->dir);
	assert_int_equal(system(cmd), 0);
	free(f);
	return 0;
}

static tk_registry_t *
open_store(struct fx *f)
{
	tk_registry_opts_t o;
	tk_registry_t *reg = NULL;

	tk_registry_opts_init(&o);
	o.path = f->store;
	assert_int_equal(tk_registry_open(&o, &reg), TK_OK);
	return reg;
}

static tk_registration_t *
make_reg(const char *instance, const char *label, const char *cert)
{
	tk_registration_t *r = NULL;
	tk_reg_item_t it;

	assert_int_equal(tk_registration_new("test", instance, &r), TK_OK);
	assert_int_equal(tk_registration_set_label(r, label), TK_OK);
	memset(&it, 0, sizeof(it));
	it.kind = TK_REG_ITEM_CERT;
	it.id = (const uint8_t *)"\x01";
	it.id_len = 1;
	it.label = "cert";
	it.der = (const uint8_t *)cert;
	it.der_len = strlen(cert);
	assert_int_equal(tk_registration_add_item(r, &it), TK_OK);
	memset(&it, 0, sizeof(it));
	it.kind = TK_REG_ITEM_KEY;
	it.id = (const uint8_t *)"\x01";
	it.id_len = 1;
	it.label = "key";
	it.key_type = TK_KEY_EC;
	it.key_bits = 256;
	it.usage = TK_USAGE_SIGN;
	it.handle = (const uint8_t *)"h";
	it.handle_len = 1;
	assert_int_equal(tk_registration_add_item(r, &it), TK_OK);
	return r;
}

static void cmd(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static void
cmd(const char *fmt, ...)
{
	char buf[1024];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	assert_int_equal(system(buf), 0);
}

static void
test_store_cas(void **state)
{
	struct fx *f = *state;
	tk_registry_t *reg = open_store(f), *other = open_store(f);
	tk_registration_t *r = make_reg("setoken", "Token", "C1"), *got = NULL, *r2;
	uint64_t gen = 99;
	struct stat st;
	char path[400];

	/* private: 0700 directories, 0600 files */
	assert_int_equal(stat(f->store, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0700);
	snprintf(path, sizeof(path), "%s/state/tokenkit", f->dir);
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0700);

	assert_int_equal(tk_registry_get(reg, "test", "setoken", &got), TK_ERR_NOT_FOUND);
	assert_int_equal(tk_registry_put(reg, r, 0, &gen), TK_OK);
	assert_int_equal(gen, 1);
	assert_int_equal(tk_registration_generation(r), 1);
	snprintf(path, sizeof(path), "%s/test@setoken.reg", f->store);
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0600);

	/* create again: the record exists */
	assert_int_equal(tk_registry_put(other, r, 0, &gen), TK_ERR_CONFLICT);
	assert_int_equal(gen, 1);

	/* two writers based on generation 1: one wins, the other is told */
	r2 = make_reg("setoken", "Token", "C2");
	assert_int_equal(tk_registry_put(reg, r2, 1, &gen), TK_OK);
	assert_int_equal(gen, 2);
	assert_int_equal(tk_registry_put(other, r, 1, &gen), TK_ERR_CONFLICT);
	assert_int_equal(gen, 2);
	assert_int_equal(tk_registration_generation(r), 1); /* unchanged on failure */
	assert_int_equal(tk_registry_get(other, "test", "setoken", &got), TK_OK);
	assert_true(tk_registration_equal(got, r2));
	assert_int_equal(tk_registration_generation(got), 2);
	assert_int_equal(tk_registration_created(got), tk_registration_created(r));
	tk_registration_free(&got);

	/* remove: a tombstone with the next generation */
	assert_int_equal(tk_registry_remove(other, "test", "setoken", 1, &gen), TK_ERR_CONFLICT);
	assert_int_equal(tk_registry_remove(other, "test", "setoken", 2, &gen), TK_OK);
	assert_int_equal(gen, 3);
	assert_int_equal(tk_registry_get(reg, "test", "setoken", &got), TK_ERR_NOT_FOUND);
	assert_int_equal(tk_registry_remove(reg, "test", "setoken", TK_REG_GEN_ANY, &gen),
	                 TK_ERR_NOT_FOUND);
	/* a stale writer holding generation 2 cannot write over the removal */
	assert_int_equal(tk_registry_put(reg, r2, 2, &gen), TK_ERR_CONFLICT);
	assert_int_equal(gen, 0);
	/* created again: the generations go on */
	assert_int_equal(tk_registry_put(reg, r2, 0, &gen), TK_OK);
	assert_int_equal(gen, 4);

	tk_registration_free(&r);
	tk_registration_free(&r2);
	tk_registry_free(&reg);
	tk_registry_free(&other);
	assert_null(reg);
}

static void
test_store_bad_records_skipped(void **state)
{
	struct fx *f = *state;
	tk_registry_t *reg = open_store(f);
	tk_registration_t *r = make_reg("good", "Good", "C1"), **list = NULL;
	uint8_t img[8192];
	size_t n = 0, len;
	uint64_t gen;
	char path[400];
	FILE *fp;

	assert_int_equal(tk_registry_put(reg, r, 0, &gen), TK_OK);
	/* a foreign version, a corrupt one, a truncated one, one that claims
	 * another name, an oversized one */
	len = file_image(img, V_GOOD, 7, true);
	snprintf(path, sizeof(path), "%s/soft@future.reg", f->store);
	fp = fopen(path, "w");
	fwrite(img, 1, len, fp);
	fclose(fp);
	len = file_image(img, V_GOOD, 1, false);
	snprintf(path, sizeof(path), "%s/soft@corrupt.reg", f->store);
	fp = fopen(path, "w");
	fwrite(img, 1, len, fp);
	fclose(fp);
	len = file_image(img, V_GOOD, 1, true);
	snprintf(path, sizeof(path), "%s/soft@torn.reg", f->store);
	fp = fopen(path, "w");
	fwrite(img, 1, len / 2, fp);
	fclose(fp);
	snprintf(path, sizeof(path), "%s/soft@other.reg", f->store);
	fp = fopen(path, "w");
	fwrite(img, 1, len, fp); /* holds soft@a1 */
	fclose(fp);
	snprintf(path, sizeof(path), "%s/soft@huge.reg", f->store);
	fp = fopen(path, "w");
	assert_int_equal(fseek(fp, TK_REG_RECORD_MAX + 10, SEEK_SET), 0);
	fputc(0, fp);
	fclose(fp);
	chmod(path, 0600);

	assert_int_equal(tk_registry_list(reg, &list, &n), TK_OK);
	assert_int_equal(n, 1);
	assert_string_equal(tk_registration_instance(list[0]), "good");
	tk_registry_list_free(&list, n);
	assert_null(list);
	/* the good one is still writable, and an unreadable record counts as
	 * absent for a writer (which replaces it) */
	tk_registration_free(&r);
	r = make_reg("good", "Good", "C2");
	assert_int_equal(tk_registry_put(reg, r, 1, &gen), TK_OK);
	tk_registration_free(&r);
	assert_int_equal(tk_registration_new("soft", "corrupt", &r), TK_OK);
	assert_int_equal(tk_registry_put(reg, r, 0, &gen), TK_OK);
	assert_int_equal(gen, 1);
	tk_registration_free(&r);
	tk_registry_free(&reg);
}

static void
test_store_changed(void **state)
{
	struct fx *f = *state;
	tk_registry_t *reg = open_store(f), *fresh;
	tk_registration_t *r = make_reg("setoken", "Token", "C1"), *got = NULL;
	uint64_t gen;
	bool changed = false;
	char id1[33], id2[33];

	assert_int_equal(tk_registry_put(reg, r, 0, &gen), TK_OK);
	tk_registry_identity(reg, id1, NULL);

	/* replaced: moved away, a new store in its place */
	cmd("mv '%s' '%s.old'", f->store, f->store);
	fresh = open_store(f);
	tk_registry_free(&fresh);
	assert_int_equal(tk_registry_get(reg, "test", "setoken", &got), TK_ERR_STORE_CHANGED);
	assert_int_equal(tk_registry_put(reg, r, 1, &gen), TK_ERR_STORE_CHANGED);
	/* sticky: even once the old store is back */
	cmd("rm -rf '%s' && mv '%s.old' '%s'", f->store, f->store, f->store);
	assert_int_equal(tk_registry_check(reg), TK_ERR_STORE_CHANGED);
	assert_int_equal(tk_registry_reopen(reg, &changed), TK_OK);
	assert_false(changed); /* the same store (moved back) */
	assert_int_equal(tk_registry_get(reg, "test", "setoken", &got), TK_OK);
	tk_registration_free(&got);

	/* restored from a backup: same identity, copied over */
	cmd("cp -a '%s' '%s.bak'", f->store, f->store);
	assert_int_equal(tk_registry_put(reg, r, 1, &gen), TK_OK);
	assert_int_equal(gen, 2);
	cmd("rm -rf '%s' && cp -a '%s.bak' '%s'", f->store, f->store, f->store);
	assert_int_equal(tk_registry_put(reg, r, 2, &gen), TK_ERR_STORE_CHANGED);
	assert_int_equal(tk_registry_reopen(reg, &changed), TK_OK);
	assert_false(changed);
	/* what the store says now is generation 1: the write based on 2 is refused */
	assert_int_equal(tk_registry_put(reg, r, 2, &gen), TK_ERR_CONFLICT);
	assert_int_equal(gen, 1);

	/* wiped: gone, then made again by whoever opens it next */
	cmd("rm -rf '%s'", f->store);
	assert_int_equal(tk_registry_list(reg, &(tk_registration_t **){NULL}, &(size_t){0}),
	                 TK_ERR_STORE_CHANGED);
	assert_int_equal(tk_registry_reopen(reg, &changed), TK_OK);
	assert_true(changed);
	tk_registry_identity(reg, id2, NULL);
	assert_string_not_equal(id1, id2);
	assert_int_equal(tk_registry_get(reg, "test", "setoken", &got), TK_ERR_NOT_FOUND);
	assert_int_equal(tk_registry_put(reg, r, 0, &gen), TK_OK);
	assert_int_equal(gen, 1);

	tk_registration_free(&r);
	tk_registry_free(&reg);
}

static void
test_store_refused(void **state)
{
	struct fx *f = *state;
	tk_registry_opts_t o;
	tk_registry_t *reg = open_store(f);

	tk_registry_free(&reg);
	/* a store others may write is not ours */
	assert_int_equal(chmod(f->store, 0777), 0);
	tk_registry_opts_init(&o);
	o.path = f->store;
	assert_int_equal(tk_registry_open(&o, &reg), TK_ERR_UNSAFE);
	assert_int_equal(chmod(f->store, 0700), 0);
	/* a missing store with NO_CREATE */
	o.flags = TK_REGISTRY_NO_CREATE;
	cmd("rm -rf '%s'", f->store);
	assert_int_equal(tk_registry_open(&o, &reg), TK_ERR_NOT_FOUND);
	assert_null(reg);
}

/* ---- watchers ---------------------------------------------------------------------------- */

static tk_registry_event_t *
next_event(tk_registry_watch_t *w)
{
	tk_registry_event_t *ev = NULL;

	assert_int_equal(tk_registry_watch_next(w, 5000, &ev), TK_OK);
	print_message("event %s %s/%s gen %llu %s\n", tk_registry_event_name(ev->type),
	              ev->reg ? tk_registration_provider(ev->reg) : "-",
	              ev->reg ? tk_registration_instance(ev->reg) : "-",
	              ev->reg ? (unsigned long long)tk_registration_generation(ev->reg) : 0ULL,
	              ev->reason ? ev->reason : "");
	return ev;
}

static void
expect(tk_registry_watch_t *w, int type, const char *instance, uint64_t gen)
{
	tk_registry_event_t *ev = next_event(w);

	assert_int_equal(ev->type, type);
	if (instance != NULL) {
		assert_non_null(ev->reg);
		assert_string_equal(tk_registration_instance(ev->reg), instance);
		if (gen != 0)
			assert_int_equal(tk_registration_generation(ev->reg), gen);
	}
	tk_registry_event_free(&ev);
}

static void
expect_none(tk_registry_watch_t *w)
{
	tk_registry_event_t *ev = NULL;

	assert_int_equal(tk_registry_watch_next(w, 50, &ev), TK_ERR_TIMEOUT);
	assert_null(ev);
}

static void
test_watch_events(void **state)
{
	struct fx *f = *state;
	tk_registry_t *reg = open_store(f);
	tk_registration_t *a = make_reg("a", "A", "C1"), *b = make_reg("b", "B", "C1");
	tk_registry_watch_t *w = NULL;
	uint64_t gen;

	assert_int_equal(tk_registry_put(reg, a, 0, &gen), TK_OK);
	assert_int_equal(tk_registry_watch_new(reg, &w), TK_OK);
	assert_true(tk_registry_watch_fd(w) >= 0);
	expect(w, TK_REGISTRY_ADDED, "a", 1); /* what was there */
	expect_none(w);
	assert_int_equal(tk_registry_put(reg, b, 0, &gen), TK_OK);
	expect(w, TK_REGISTRY_ADDED, "b", 1);
	tk_registration_free(&a);
	a = make_reg("a", "A", "C2");
	assert_int_equal(tk_registry_put(reg, a, 1, &gen), TK_OK);
	expect(w, TK_REGISTRY_CHANGED, "a", 2);
	assert_int_equal(tk_registry_remove(reg, "test", "b", 1, &gen), TK_OK);
	expect(w, TK_REGISTRY_REMOVED, "b", 2);
	/* a record turned unreadable is removed from the view (and logged) */
	cmd("printf garbage > '%s/test@a.reg'", f->store);
	expect(w, TK_REGISTRY_REMOVED, "a", 2);
	/* temporary files of writers are nothing */
	cmd("touch '%s/.test@a.reg.tmp-0000000000000000'", f->store);
	expect_none(w);

	tk_registration_free(&a);
	tk_registration_free(&b);
	tk_registry_watch_free(&w);
	assert_null(w);
	tk_registry_free(&reg);
}

static void
test_watch_store_replaced_wiped_back(void **state)
{
	struct fx *f = *state;
	tk_registry_t *reg = open_store(f), *other;
	tk_registration_t *a = make_reg("a", "A", "C1"), *b = make_reg("b", "B", "C1");
	tk_registry_watch_t *w = NULL;
	uint64_t gen;

	assert_int_equal(tk_registry_put(reg, a, 0, &gen), TK_OK);
	assert_int_equal(tk_registry_watch_new(reg, &w), TK_OK);
	expect(w, TK_REGISTRY_ADDED, "a", 1);

	/* replaced by another store holding b only */
	cmd("mv '%s' '%s.old'", f->store, f->store);
	other = open_store(f);
	assert_int_equal(tk_registry_put(other, b, 0, &gen), TK_OK);
	expect(w, TK_REGISTRY_RESYNC, NULL, 0);
	expect(w, TK_REGISTRY_REMOVED, "a", 1);
	expect(w, TK_REGISTRY_ADDED, "b", 1);
	expect_none(w);

	/* wiped: everything goes, and the watcher says so */
	cmd("rm -rf '%s'", f->store);
	expect(w, TK_REGISTRY_RESYNC, NULL, 0);
	expect(w, TK_REGISTRY_REMOVED, "b", 1);
	expect_none(w);

	/* back (the old one restored) */
	cmd("mv '%s.old' '%s'", f->store, f->store);
	expect(w, TK_REGISTRY_RESYNC, NULL, 0);
	expect(w, TK_REGISTRY_ADDED, "a", 1);
	expect_none(w);

	tk_registration_free(&a);
	tk_registration_free(&b);
	tk_registry_watch_free(&w);
	tk_registry_free(&reg);
	tk_registry_free(&other);
}

/* More notifications than inotify queues: the watcher resyncs, and a
 * change made meanwhile is in what follows. */
static void
test_watch_overflow(void **state)
{
	struct fx *f = *state;
	tk_registry_t *reg = open_store(f);
	tk_registration_t *a = make_reg("a", "A", "C1");
	tk_registry_watch_t *w = NULL;
	tk_registry_event_t *ev = NULL;
	unsigned long max = 16384;
	char path[400];
	uint64_t gen;
	FILE *fp;

	fp = fopen("/proc/sys/fs/inotify/max_queued_events", "r");
	if (fp != NULL) {
		if (fscanf(fp, "%lu", &max) != 1)
			max = 16384;
		fclose(fp);
	}
	assert_int_equal(tk_registry_watch_new(reg, &w), TK_OK);
	/* each file: IN_CREATE and IN_CLOSE_WRITE */
	for (unsigned long i = 0; i < max / 2 + 16; i++) {
		int fd;

		snprintf(path, sizeof(path), "%s/.noise-%lu", f->store, i);
		fd = open(path, O_CREAT | O_WRONLY, 0600);
		assert_true(fd >= 0);
		close(fd);
		unlink(path);
	}
	assert_int_equal(tk_registry_put(reg, a, 0, &gen), TK_OK);
	ev = next_event(w);
	assert_int_equal(ev->type, TK_REGISTRY_RESYNC);
	assert_non_null(strstr(ev->reason, "overflow"));
	tk_registry_event_free(&ev);
	expect(w, TK_REGISTRY_ADDED, "a", 1);
	expect_none(w);

	tk_registration_free(&a);
	tk_registry_watch_free(&w);
	tk_registry_free(&reg);
}

/* Take every free file descriptor (a process at its RLIMIT_NOFILE): opening
 * a record fails with EMFILE. Returns how many were taken into fds. */
static size_t
exhaust_fds(int *fds, size_t cap)
{
	size_t n = 0;
	int fd;

	while (n < cap && (fd = open("/dev/null", O_RDONLY | O_CLOEXEC)) >= 0)
		fds[n++] = fd;
	assert_true(n < cap); /* ended by EMFILE, not by the array */
	return n;
}

/* A record that cannot be read for a passing reason (here: no file
 * descriptor left, EMFILE) is not a record that went away: the watcher
 * keeps its last state, and reads it again by itself once it can (no new
 * notification comes). A bad record is still removed. */
static void
test_watch_transient_read_error(void **state)
{
	struct fx *f = *state;
	tk_registry_t *reg = open_store(f);
	tk_registration_t *a = make_reg("a", "A", "C1");
	tk_registry_watch_t *w = NULL;
	tk_registry_event_t *ev = NULL;
	struct rlimit old, low;
	int fds[256];
	size_t n;
	uint64_t gen;

	assert_int_equal(tk_registry_put(reg, a, 0, &gen), TK_OK);
	assert_int_equal(tk_registry_watch_new(reg, &w), TK_OK);
	expect(w, TK_REGISTRY_ADDED, "a", 1);
	tk_registration_free(&a);
	a = make_reg("a", "A", "C2");
	assert_int_equal(tk_registry_put(reg, a, 1, &gen), TK_OK);

	assert_int_equal(getrlimit(RLIMIT_NOFILE, &old), 0);
	low = old;
	low.rlim_cur = 64;
	assert_int_equal(setrlimit(RLIMIT_NOFILE, &low), 0);
	n = exhaust_fds(fds, sizeof(fds) / sizeof(fds[0]));
	/* the notification of the write comes, the record cannot be opened:
	 * no event (the old code reported "removed" here) */
	assert_int_equal(tk_registry_watch_next(w, 600, &ev), TK_ERR_TIMEOUT);
	assert_null(ev);
	for (size_t i = 0; i < n; i++)
		close(fds[i]);
	assert_int_equal(setrlimit(RLIMIT_NOFILE, &old), 0);
	/* read again without another notification: the change, not a re-add */
	expect(w, TK_REGISTRY_CHANGED, "a", 2);
	expect_none(w);

	/* a symbolic link put in the record's place is no record: removed */
	cmd("ln -s /dev/null '%s/.link' && mv -T '%s/.link' '%s/test@a.reg'", f->store, f->store,
	    f->store);
	expect(w, TK_REGISTRY_REMOVED, "a", 2);
	expect_none(w);

	tk_registration_free(&a);
	tk_registry_watch_free(&w);
	tk_registry_free(&reg);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_decode_by_hand),
	        cmocka_unit_test(test_decode_rejects),
	        cmocka_unit_test(test_names),
	        cmocka_unit_test_setup_teardown(test_store_cas, setup, teardown),
	        cmocka_unit_test_setup_teardown(test_store_bad_records_skipped, setup, teardown),
	        cmocka_unit_test_setup_teardown(test_store_changed, setup, teardown),
	        cmocka_unit_test_setup_teardown(test_store_refused, setup, teardown),
	        cmocka_unit_test_setup_teardown(test_watch_events, setup, teardown),
	        cmocka_unit_test_setup_teardown(test_watch_store_replaced_wiped_back, setup,
	                                        teardown),
	        cmocka_unit_test_setup_teardown(test_watch_overflow, setup, teardown),
	        cmocka_unit_test_setup_teardown(test_watch_transient_read_error, setup, teardown),
	};

	tk_log_set_level(TK_LOG_WARN);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
