/* tokenkit: consent records and their file names (format in consent_priv.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cbor.h>

#include <tokenkit/err.h>

#include "cborutil.h"
#include "consent_priv.h"
#include "ossl.h"

#define DIGEST_LEN 32

/* ---- fields ------------------------------------------------------------------- */

/* s is NUL-terminated within cap bytes (and not empty unless may_be_empty). */
static bool
str_ok(const char *s, size_t cap, bool may_be_empty)
{
	size_t n = strnlen(s, cap);

	return n < cap && (may_be_empty || n > 0);
}

static bool
key_id_ok(const char *s)
{
	size_t n;

	if (!str_ok(s, TK_CONSENT_KEY_MAX + 1, false))
		return false;
	n = strlen(s);
	if (n % 2 != 0)
		return false;
	for (size_t i = 0; i < n; i++)
		if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
			return false;
	return true;
}

/* The fields that name a decision (program, uid, serial, key id). */
static bool
name_fields_ok(const char *program, const char *token_serial, const char *key_id)
{
	return program != NULL && token_serial != NULL && key_id != NULL &&
	       str_ok(program, TK_CONSENT_PROGRAM_MAX + 1, false) && program[0] == '/' &&
	       str_ok(token_serial, TK_CONSENT_TOKEN_MAX + 1, false) && key_id_ok(key_id);
}

bool
tk_consent_rec_ok(const tk_consent_rec_t *rec)
{
	return rec != NULL && name_fields_ok(rec->program, rec->token_serial, rec->key_id) &&
	       str_ok(rec->token_label, sizeof(rec->token_label), true) &&
	       str_ok(rec->key_label, sizeof(rec->key_label), true) &&
	       (rec->decision == TK_CONSENT_ONCE || rec->decision == TK_CONSENT_ALWAYS ||
	        rec->decision == TK_CONSENT_DENY);
}

bool
tk_consent_name_ok(const char *name)
{
	size_t i;

	for (i = 0; name[i] != '\0' && i < TK_CONSENT_NAME_LEN; i++)
		if (!((name[i] >= '0' && name[i] <= '9') || (name[i] >= 'a' && name[i] <= 'f')))
			return false;
	return i == TK_CONSENT_NAME_LEN && name[i] == '\0';
}

int
tk_consent_file_name(const char *program, uint32_t uid, const char *token_serial,
                     const char *key_id, char out[TK_CONSENT_NAME_LEN + 1])
{
	static const char hexd[] = "0123456789abcdef";
	/* program NUL uid NUL serial NUL key_id */
	char buf[TK_CONSENT_PROGRAM_MAX + 1 + 10 + 1 + TK_CONSENT_TOKEN_MAX + 1 +
	         TK_CONSENT_KEY_MAX + 1];
	uint8_t digest[DIGEST_LEN];
	size_t n = 0, l;

	out[0] = '\0';
	if (!name_fields_ok(program, token_serial, key_id))
		return TK_ERR_INVALID_ARG;
	l = strlen(program);
	memcpy(buf + n, program, l + 1);
	n += l + 1;
	n += (size_t)snprintf(buf + n, sizeof(buf) - n, "%u", (unsigned)uid) + 1;
	l = strlen(token_serial);
	memcpy(buf + n, token_serial, l + 1);
	n += l + 1;
	l = strlen(key_id);
	memcpy(buf + n, key_id, l);
	n += l;
	if (tk_ossl_sha256(buf, n, digest) != TK_OK)
		return TK_ERR_CRYPTO;
	for (size_t i = 0; i < DIGEST_LEN; i++) {
		out[2 * i] = hexd[digest[i] >> 4];
		out[2 * i + 1] = hexd[digest[i] & 15];
	}
	out[TK_CONSENT_NAME_LEN] = '\0';
	return TK_OK;
}

/* ---- CBOR ------------------------------------------------------------------------- */

enum {
	F_VERSION,
	F_PROGRAM,
	F_UID,
	F_SERIAL,
	F_TLABEL,
	F_KEY_ID,
	F_KLABEL,
	F_DECISION,
	F_TIME,
	F_N
};
static const char *const field_keys[F_N] = {"version",      "program",     "uid",
                                            "token_serial", "token_label", "key_id",
                                            "key_label",    "decision",    "time_us"};

int
tk_consent_rec_encode(const tk_consent_rec_t *rec, uint8_t **out, size_t *len)
{
	unsigned char *buf = NULL;
	size_t cap = 0, n;
	cbor_item_t *m;
	bool ok;

	*out = NULL;
	*len = 0;
	if (!tk_consent_rec_ok(rec))
		return TK_ERR_INVALID_ARG;
	if ((m = cbor_new_definite_map(F_N)) == NULL)
		return TK_ERR_NO_MEMORY;
	ok = tk_cbor_map_put(m, field_keys[F_VERSION], tk_cbor_uint(TK_CONSENT_VERSION));
	ok = ok && tk_cbor_map_put(m, field_keys[F_PROGRAM], cbor_build_string(rec->program));
	ok = ok && tk_cbor_map_put(m, field_keys[F_UID], tk_cbor_uint(rec->uid));
	ok = ok && tk_cbor_map_put(m, field_keys[F_SERIAL], cbor_build_string(rec->token_serial));
	ok = ok && tk_cbor_map_put(m, field_keys[F_TLABEL], cbor_build_string(rec->token_label));
	ok = ok && tk_cbor_map_put(m, field_keys[F_KEY_ID], cbor_build_string(rec->key_id));
	ok = ok && tk_cbor_map_put(m, field_keys[F_KLABEL], cbor_build_string(rec->key_label));
	ok = ok &&
	     tk_cbor_map_put(m, field_keys[F_DECISION], tk_cbor_uint((uint64_t)rec->decision));
	ok = ok && tk_cbor_map_put(m, field_keys[F_TIME], tk_cbor_uint(rec->time_us));
	n = ok ? cbor_serialize_alloc(m, &buf, &cap) : 0;
	cbor_decref(&m);
	if (n == 0) {
		free(buf);
		return TK_ERR_NO_MEMORY;
	}
	*out = buf;
	*len = n;
	return TK_OK;
}

/* Index of key in field_keys, or -1. */
static int
key_index(const cbor_item_t *k)
{
	char buf[16];

	if (!tk_cbor_text(k, buf, sizeof(buf), NULL))
		return -1;
	for (int i = 0; i < F_N; i++)
		if (strcmp(buf, field_keys[i]) == 0)
			return i;
	return -1;
}

/* The map's version, before anything else is judged: a later format may
 * have other keys. */
static int
check_version(const cbor_item_t *m)
{
	struct cbor_pair *pairs = cbor_map_handle(m);
	uint64_t v;

	for (size_t i = 0; i < cbor_map_size(m); i++) {
		if (key_index(pairs[i].key) != F_VERSION)
			continue;
		if (!tk_cbor_get_uint(pairs[i].value, UINT64_MAX, &v))
			return TK_ERR_MALFORMED;
		return v == TK_CONSENT_VERSION ? TK_OK : TK_ERR_NOT_SUPPORTED;
	}
	return TK_ERR_MALFORMED;
}

static int
parse(const cbor_item_t *m, tk_consent_rec_t *rec)
{
	const cbor_item_t *v[F_N] = {NULL};
	struct cbor_pair *pairs = cbor_map_handle(m);
	uint64_t u;
	int r;

	if ((r = check_version(m)) != TK_OK)
		return r;
	for (size_t i = 0; i < cbor_map_size(m); i++) {
		int k = key_index(pairs[i].key);

		if (k < 0 || v[k] != NULL)
			return TK_ERR_MALFORMED;
		v[k] = pairs[i].value;
	}
	for (int k = 0; k < F_N; k++)
		if (v[k] == NULL)
			return TK_ERR_MALFORMED;
	if (!tk_cbor_text(v[F_PROGRAM], rec->program, sizeof(rec->program), NULL) ||
	    !tk_cbor_text(v[F_SERIAL], rec->token_serial, sizeof(rec->token_serial), NULL) ||
	    !tk_cbor_text(v[F_TLABEL], rec->token_label, sizeof(rec->token_label), NULL) ||
	    !tk_cbor_text(v[F_KEY_ID], rec->key_id, sizeof(rec->key_id), NULL) ||
	    !tk_cbor_text(v[F_KLABEL], rec->key_label, sizeof(rec->key_label), NULL) ||
	    !tk_cbor_get_uint(v[F_TIME], UINT64_MAX, &rec->time_us))
		return TK_ERR_MALFORMED;
	if (!tk_cbor_get_uint(v[F_UID], UINT32_MAX, &u))
		return TK_ERR_MALFORMED;
	rec->uid = (uint32_t)u;
	if (!tk_cbor_get_uint(v[F_DECISION], TK_CONSENT_DENY, &u))
		return TK_ERR_MALFORMED;
	rec->decision = (int)u;
	/* the writer's own checks decide what a valid record is */
	return tk_consent_rec_ok(rec) ? TK_OK : TK_ERR_MALFORMED;
}

int
tk_consent_rec_decode(const uint8_t *p, size_t len, tk_consent_rec_t *rec)
{
	cbor_item_t *m;
	uint8_t *again = NULL;
	size_t again_len = 0;
	int r;

	if (rec == NULL)
		return TK_ERR_INVALID_ARG;
	memset(rec, 0, sizeof(*rec));
	if (p == NULL || len == 0)
		return TK_ERR_TRUNCATED;
	if (len > TK_CONSENT_RECORD_MAX)
		return TK_ERR_TOO_LONG;
	if ((r = tk_cbor_load(p, len, &m)) != TK_OK)
		return r;
	if (!cbor_isa_map(m) || !cbor_map_is_definite(m))
		r = TK_ERR_MALFORMED;
	else
		r = parse(m, rec);
	cbor_decref(&m);
	/* One encoding only: what we would write, byte for byte (no other key
	 * order, integer width, indefinite length or tag). */
	if (r == TK_OK && (r = tk_consent_rec_encode(rec, &again, &again_len)) == TK_OK &&
	    (again_len != len || memcmp(again, p, len) != 0))
		r = TK_ERR_MALFORMED;
	free(again);
	if (r != TK_OK)
		memset(rec, 0, sizeof(*rec));
	return r;
}
