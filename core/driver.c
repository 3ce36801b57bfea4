/* tokenkit: the core's side of the driver interface (see driver.h and
 * tokenkit/driver.h): the checked token model, the host services for
 * plugins, the driver list and the calls into drivers that check what the
 * drivers return.
 *
 * Nothing a driver hands back is taken on its word: a built-in driver is
 * tested code, a plugin is not ours, and both go through the same checks
 * (they cost a few comparisons per call next to an APDU). A driver that
 * breaks the interface is disabled for the process and named in the log. */
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <tokenkit/apdu.h>
#include <tokenkit/buf.h>
#include <tokenkit/err.h>
#include <tokenkit/hex.h>
#include <tokenkit/log.h>
#include <tokenkit/mem.h>
#include <tokenkit/tlv.h>

#include "driver.h"
#include "env.h"
#include "plugin.h"
#include "x509.h"

#define MAX_DRIVERS 16
#define DRIVER_NAME_MAX 15
#define MAX_CERT 65536
#define MAX_SPKI 4096

/* The first size of each struct (TK_DRIVER_API 1): what every driver and
 * host has. Frozen: later members are additions past these. */
#define DRIVER_V1_SIZE (offsetof(tk_driver_t, free) + sizeof(void (*)(void *)))
#define KEY_DESC_V1_SIZE (offsetof(tk_drv_key_desc_t, always_authenticate) + sizeof(bool))
#define TOKEN_DESC_V1_SIZE (offsetof(tk_drv_token_desc_t, pin_max_len) + sizeof(uint32_t))

struct tk_drv_entry {
	const tk_driver_t *drv;
	const char *path; /* the plugin's file; NULL for a built-in driver */
	atomic_bool disabled;
};

/* ---- log lines that name the driver --------------------------------------- */

static void drv_log(const tk_drv_entry_t *e, int level, const char *fmt, ...) TK_PRINTF(3, 4);

static void
drv_log(const tk_drv_entry_t *e, int level, const char *fmt, ...)
{
	char msg[512];
	va_list ap;

	if (!tk_log_enabled(level))
		return;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (e->path != NULL)
		tk_log(level, "driver '%s' (plugin %s): %s", e->drv->name, e->path, msg);
	else
		tk_log(level, "driver '%s': %s", e->drv->name, msg);
}

/* The driver broke the interface: it is not called again. */
static int
nonsense(const tk_drv_entry_t *e, const char *what)
{
	tk_drv_entry_t *w = (tk_drv_entry_t *)(uintptr_t)e;

	if (!atomic_exchange(&w->disabled, true))
		drv_log(e, TK_LOG_ERROR, "%s; disabled for this process", what);
	return TK_ERR_INTERNAL;
}

/* ---- checks on what drivers describe ---------------------------------------- */

/* NUL-terminated within cap, UTF-8, no control characters. */
static bool
text_ok(const char *s, size_t cap)
{
	const unsigned char *p = (const unsigned char *)s;
	size_t i = 0;

	while (i < cap && p[i] != 0) {
		unsigned c = p[i], more;

		if (c < 0x20 || c == 0x7F)
			return false;
		if (c < 0x80)
			more = 0;
		else if ((c & 0xE0) == 0xC0 && c >= 0xC2)
			more = 1;
		else if ((c & 0xF0) == 0xE0)
			more = 2;
		else if ((c & 0xF8) == 0xF0 && c <= 0xF4)
			more = 3;
		else
			return false;
		for (i++; more > 0; more--, i++)
			if (i >= cap || (p[i] & 0xC0) != 0x80)
				return false;
	}
	return i < cap;
}

static bool
name_ok(const char *n)
{
	size_t l = 0;

	if (n == NULL)
		return false;
	for (; n[l] != '\0' && l <= DRIVER_NAME_MAX; l++)
		if (!((n[l] >= 'a' && n[l] <= 'z') || (n[l] >= '0' && n[l] <= '9') || n[l] == '_'))
			return false;
	return l > 0 && l <= DRIVER_NAME_MAX;
}

/* "NAME:" and printable ASCII without spaces, or "". */
static bool
identity_ok(const char *driver, const char *id, size_t cap)
{
	size_t l = strnlen(id, cap), dl = strlen(driver);

	if (l == cap || l > TK_CACHE_MAX_IDENTITY)
		return false;
	if (l == 0)
		return true;
	if (l <= dl + 1 || strncmp(id, driver, dl) != 0 || id[dl] != ':')
		return false;
	for (size_t i = 0; i < l; i++)
		if (id[i] <= 0x20 || id[i] >= 0x7F)
			return false;
	return true;
}

static bool
bits_ok(int type, unsigned bits)
{
	switch (type) {
	case TK_KEY_RSA:
		return bits >= 512 && bits <= 8192;
	case TK_KEY_EC:
		return bits >= 160 && bits <= 571;
	case TK_KEY_ED25519:
	case TK_KEY_X25519:
		return bits == 255;
	default:
		return false;
	}
}

unsigned
tk_drv_usage_for(int type)
{
	switch (type) {
	case TK_KEY_RSA:
		return TK_USAGE_SIGN | TK_USAGE_DECRYPT;
	case TK_KEY_EC:
		return TK_USAGE_SIGN | TK_USAGE_DERIVE;
	case TK_KEY_ED25519:
		return TK_USAGE_SIGN;
	case TK_KEY_X25519:
		return TK_USAGE_DERIVE;
	default:
		return TK_USAGE_SIGN | TK_USAGE_DECRYPT | TK_USAGE_DERIVE;
	}
}

/* The usage an operation serves. */
static unsigned
op_usage(int op)
{
	switch (op) {
	case TK_OP_RSA_RAW:
		return TK_USAGE_SIGN | TK_USAGE_DECRYPT;
	case TK_OP_ECDSA:
	case TK_OP_EDDSA:
	case TK_OP_RSA_PKCS1_SIGN:
		return TK_USAGE_SIGN;
	case TK_OP_RSA_PKCS1_DECRYPT:
		return TK_USAGE_DECRYPT;
	case TK_OP_ECDH:
		return TK_USAGE_DERIVE;
	default:
		return 0;
	}
}

static unsigned
ops_for(int type)
{
	switch (type) {
	case TK_KEY_RSA:
		return TK_OP_BIT(TK_OP_RSA_RAW) | TK_OP_BIT(TK_OP_RSA_PKCS1_SIGN) |
		       TK_OP_BIT(TK_OP_RSA_PKCS1_DECRYPT);
	case TK_KEY_EC:
		return TK_OP_BIT(TK_OP_ECDSA) | TK_OP_BIT(TK_OP_ECDH);
	case TK_KEY_ED25519:
		return TK_OP_BIT(TK_OP_EDDSA);
	case TK_KEY_X25519:
		return TK_OP_BIT(TK_OP_ECDH);
	default:
		return 0;
	}
}

unsigned
tk_drv_default_ops(int type, unsigned usage)
{
	unsigned ops = 0;

	switch (type) {
	case TK_KEY_RSA:
		ops = TK_OP_BIT(TK_OP_RSA_RAW);
		break;
	case TK_KEY_EC:
		ops = TK_OP_BIT(TK_OP_ECDSA) | TK_OP_BIT(TK_OP_ECDH);
		break;
	case TK_KEY_ED25519:
		ops = TK_OP_BIT(TK_OP_EDDSA);
		break;
	case TK_KEY_X25519:
		ops = TK_OP_BIT(TK_OP_ECDH);
		break;
	default:
		return 0;
	}
	for (int op = TK_OP_RSA_RAW; op <= TK_OP_RSA_PKCS1_DECRYPT; op++)
		if ((op_usage(op) & usage) == 0)
			ops &= ~TK_OP_BIT(op);
	return ops;
}

/* ---- the model ---------------------------------------------------------------- */

void
tk_drv_model_init(tk_drv_model_t *m, const char *driver)
{
	memset(m, 0, sizeof(*m));
	m->driver = driver;
}

void
tk_drv_model_clear(tk_drv_model_t *m)
{
	const char *driver = m->driver;

	for (size_t i = 0; i < m->nslots; i++) {
		tk_drv_slot_t *s = &m->slots[i];

		free(s->cert);
		free(s->cert_spki);
		free(s->spki);
	}
	free(m->slots);
	tk_drv_model_init(m, driver);
}

static int
refuse(const tk_drv_model_t *m, int r, const char *what)
{
	tk_log_warn("driver '%s': %s", m->driver != NULL ? m->driver : "?", what);
	return r;
}

int
tk_drv_model_set_token(tk_drv_model_t *m, const tk_drv_token_desc_t *d)
{
	tk_drv_token_desc_t t;

	if (m == NULL)
		return TK_ERR_INVALID_ARG;
	if (d == NULL || d->size < TOKEN_DESC_V1_SIZE)
		return refuse(m, TK_ERR_INVALID_ARG, "token description of unknown size");
	memset(&t, 0, sizeof(t));
	memcpy(&t, d, d->size < sizeof(t) ? d->size : sizeof(t));
	if (!text_ok(t.label, sizeof(t.label)) ||
	    !text_ok(t.manufacturer, sizeof(t.manufacturer)) ||
	    !text_ok(t.model, sizeof(t.model)) || !text_ok(t.serial, sizeof(t.serial)))
		return refuse(m, TK_ERR_INVALID_ARG, "token strings not NUL-terminated UTF-8 text");
	if (t.pin_min_len < 1 || t.pin_min_len > t.pin_max_len || t.pin_max_len > 255)
		return refuse(m, TK_ERR_INVALID_ARG, "PIN lengths out of range");
	memcpy(m->label, t.label, sizeof(m->label));
	memcpy(m->manufacturer, t.manufacturer, sizeof(m->manufacturer));
	memcpy(m->model, t.model, sizeof(m->model));
	memcpy(m->serial, t.serial, sizeof(m->serial));
	m->pin_min_len = t.pin_min_len;
	m->pin_max_len = t.pin_max_len;
	return TK_OK;
}

static int
dup_bytes(const uint8_t *p, size_t n, uint8_t **out)
{
	*out = NULL;
	if (n == 0)
		return TK_OK;
	if ((*out = malloc(n)) == NULL)
		return TK_ERR_NO_MEMORY;
	memcpy(*out, p, n);
	return TK_OK;
}

static void
slot_free(tk_drv_slot_t *s)
{
	free(s->cert);
	free(s->cert_spki);
	free(s->spki);
	memset(s, 0, sizeof(*s));
}

/* The description's key material, parsed by us: certificate, SPKI, and the
 * key's type and size as they agree. */
static int
key_material(const tk_drv_model_t *m, const tk_drv_key_desc_t *d, tk_drv_slot_t *s)
{
	int t = TK_KEY_NONE, r;
	unsigned b = 0;

	if ((d->cert == NULL) != (d->cert_len == 0) || d->cert_len > MAX_CERT)
		return refuse(m, TK_ERR_INVALID_ARG, "certificate pointer and length disagree");
	if ((d->spki == NULL) != (d->spki_len == 0) || d->spki_len > MAX_SPKI)
		return refuse(m, TK_ERR_INVALID_ARG, "public key pointer and length disagree");
	if (d->cert != NULL) {
		r = tk_x509_spki(d->cert, d->cert_len, &s->cert_spki, &s->cert_spki_len,
		                 &s->cert_key_type, &s->cert_key_bits);
		if (r != TK_OK)
			return refuse(m, r,
			              "a certificate that is no X.509 certificate we can use");
		if ((r = dup_bytes(d->cert, d->cert_len, &s->cert)) != TK_OK)
			return r;
		s->cert_len = d->cert_len;
	}
	if (d->spki != NULL) {
		if ((r = tk_spki_info(d->spki, d->spki_len, &t, &b)) != TK_OK)
			return refuse(m, r,
			              "a public key that is no SubjectPublicKeyInfo we can use");
		if ((r = dup_bytes(d->spki, d->spki_len, &s->spki)) != TK_OK)
			return r;
		s->spki_len = d->spki_len;
		if (d->key_type != TK_KEY_NONE && (d->key_type != t || d->key_bits != b))
			return refuse(m, TK_ERR_INVALID_ARG,
			              "key type or size disagrees with the key's public key");
	} else if (d->key_type != TK_KEY_NONE) {
		t = d->key_type;
		b = d->key_bits;
		if (!bits_ok(t, b))
			return refuse(m, TK_ERR_INVALID_ARG,
			              "unknown key type or implausible size");
	} else if (d->key_present && s->cert != NULL) {
		/* all the card tells of the key is its certificate */
		t = s->cert_key_type;
		b = s->cert_key_bits;
	}
	s->key_type = t;
	s->key_bits = b;
	return TK_OK;
}

/* tk_drv_model_add_key with the key's id given apart (id NULL: the
 * description's, 1..16 bytes; else 1..TK_OBJECT_ID_MAX bytes). */
static int
add_key(tk_drv_model_t *m, const tk_drv_key_desc_t *d, const uint8_t *id, size_t id_len)
{
	tk_drv_key_desc_t k;
	tk_drv_slot_t s, *ns;
	int r;

	if (m == NULL)
		return TK_ERR_INVALID_ARG;
	if (d == NULL || d->size < KEY_DESC_V1_SIZE)
		return refuse(m, TK_ERR_INVALID_ARG, "key description of unknown size");
	memset(&k, 0, sizeof(k));
	memcpy(&k, d, d->size < sizeof(k) ? d->size : sizeof(k));
	if (m->nslots >= TK_DRV_MAX_KEYS)
		return refuse(m, TK_ERR_TOO_LONG, "too many keys");
	if (id == NULL) {
		if (k.id_len < 1 || k.id_len > sizeof(k.id))
			return refuse(m, TK_ERR_INVALID_ARG, "key id of 0 or more than 16 bytes");
		id = k.id;
		id_len = k.id_len;
	} else if (id_len < 1 || id_len > sizeof(s.id)) {
		return refuse(m, TK_ERR_INVALID_ARG,
		              "key id of 0 or more than TK_OBJECT_ID_MAX bytes");
	}
	if (!text_ok(k.key_label, sizeof(k.key_label)) ||
	    !text_ok(k.pub_label, sizeof(k.pub_label)) ||
	    !text_ok(k.cert_label, sizeof(k.cert_label)))
		return refuse(m, TK_ERR_INVALID_ARG, "labels not NUL-terminated UTF-8 text");
	if (!k.key_present && k.cert == NULL)
		return refuse(m, TK_ERR_INVALID_ARG, "a key slot with neither key nor certificate");
	if ((k.cert_flags & ~TK_DRV_CERT_UNPAIRED) != 0)
		return refuse(m, TK_ERR_INVALID_ARG, "unknown certificate flags");
	/* an unpaired certificate stands alone: with a key beside it, the
	 * key's own certificate would have nowhere to go */
	if ((k.cert_flags & TK_DRV_CERT_UNPAIRED) != 0 && (k.key_present || k.cert == NULL))
		return refuse(m, TK_ERR_INVALID_ARG,
		              "an unpaired certificate with a key, or without a certificate");
	for (size_t i = 0; i < m->nslots; i++) {
		const tk_drv_slot_t *o = &m->slots[i];

		if (o->key_ref == k.key_ref ||
		    (o->id_len == id_len && memcmp(o->id, id, id_len) == 0))
			return refuse(m, TK_ERR_EXISTS, "key reference or id used twice");
	}
	memset(&s, 0, sizeof(s));
	if ((r = key_material(m, &k, &s)) != TK_OK)
		goto fail;
	if ((k.usage & ~tk_drv_usage_for(TK_KEY_NONE)) != 0 ||
	    (s.key_type != TK_KEY_NONE && (k.usage & ~tk_drv_usage_for(s.key_type)) != 0)) {
		r = refuse(m, TK_ERR_INVALID_ARG, "usage the key type cannot serve");
		goto fail;
	}
	if (k.ops == 0) {
		s.ops = tk_drv_default_ops(s.key_type, k.usage);
	} else if ((k.ops & ~ops_for(s.key_type)) != 0) {
		r = refuse(m, TK_ERR_INVALID_ARG, "operations the key type does not have");
		goto fail;
	} else {
		s.ops = k.ops;
		for (int op = TK_OP_RSA_RAW; op <= TK_OP_RSA_PKCS1_DECRYPT; op++) {
			if ((s.ops & TK_OP_BIT(op)) != 0 && (op_usage(op) & k.usage) == 0) {
				r = refuse(m, TK_ERR_INVALID_ARG, "an operation outside the usage");
				goto fail;
			}
		}
	}
	s.key_ref = k.key_ref;
	memcpy(s.id, id, id_len);
	s.id_len = id_len;
	memcpy(s.key_label, k.key_label, sizeof(s.key_label));
	memcpy(s.pub_label, k.pub_label, sizeof(s.pub_label));
	memcpy(s.cert_label, k.cert_label, sizeof(s.cert_label));
	s.key_present = k.key_present;
	s.usage = k.usage;
	s.needs_login = k.needs_login;
	s.always_authenticate = k.always_authenticate;
	s.cert_unpaired = (k.cert_flags & TK_DRV_CERT_UNPAIRED) != 0;
	if ((ns = realloc(m->slots, (m->nslots + 1) * sizeof(*ns))) == NULL) {
		r = TK_ERR_NO_MEMORY;
		goto fail;
	}
	m->slots = ns;
	ns[m->nslots++] = s;
	return TK_OK;
fail:
	slot_free(&s);
	return r;
}

int
tk_drv_model_add_key(tk_drv_model_t *m, const tk_drv_key_desc_t *d)
{
	return add_key(m, d, NULL, 0);
}

int
tk_drv_model_add_key_id(tk_drv_model_t *m, const tk_drv_key_desc_t *d, const uint8_t *id,
                        size_t id_len)
{
	return id == NULL ? TK_ERR_INVALID_ARG : add_key(m, d, id, id_len);
}

/* ---- the host's services ------------------------------------------------------- */

static void
host_log_line(int level, const char *msg)
{
	tk_log(level, "%s", msg);
}

static int
host_cache_get(const tk_cache_t *c, uint32_t key, const uint8_t **data, size_t *len)
{
	return tk_cache_get(c, key, data, len);
}

static int
host_cache_put(tk_cache_t *c, uint32_t key, const uint8_t *data, size_t len)
{
	return tk_cache_put(c, key, data, len);
}

const tk_drv_host_t tk_drv_host = {
        .size = sizeof(tk_drv_host_t),
        .api = TK_DRIVER_API,
        .log_enabled = tk_log_enabled,
        .log = host_log_line,
        .card_apdu = tk_card_apdu,
        .card_transmit = tk_card_transmit,
        .card_begin = tk_card_begin,
        .card_end = tk_card_end,
        .card_generation = tk_card_generation,
        .card_atr = tk_card_atr,
        .card_caps = tk_card_caps,
        .model_set_token = tk_drv_model_set_token,
        .model_add_key = tk_drv_model_add_key,
        .cache_get = host_cache_get,
        .cache_put = host_cache_put,
        .x509_spki = tk_x509_spki,
        .spki_info = tk_spki_info,
        .spki_build = tk_spki_build,
        .buf_init = tk_buf_init,
        .buf_left = tk_buf_left,
        .buf_get_u8 = tk_buf_get_u8,
        .buf_get_u16be = tk_buf_get_u16be,
        .buf_get_u32be = tk_buf_get_u32be,
        .buf_get_bytes = tk_buf_get_bytes,
        .buf_get_ptr = tk_buf_get_ptr,
        .buf_get_sub = tk_buf_get_sub,
        .wbuf_init = tk_wbuf_init,
        .wbuf_put_u8 = tk_wbuf_put_u8,
        .wbuf_put_u16be = tk_wbuf_put_u16be,
        .wbuf_put_u32be = tk_wbuf_put_u32be,
        .wbuf_put_bytes = tk_wbuf_put_bytes,
        .wbuf_error = tk_wbuf_error,
        .ber_get = tk_ber_get,
        .ber_find = tk_ber_find,
        .ber_hdr_len = tk_ber_hdr_len,
        .ber_put_hdr = tk_ber_put_hdr,
        .ber_put = tk_ber_put,
        .apdu_encode = tk_apdu_encode,
        .wipe = tk_wipe,
        .freezero = tk_freezero,
        .memeq_ct = tk_memeq_ct,
        .strerror = tk_strerror,
        .err_from_sw = tk_err_from_sw,
        .hex_encode = tk_hex_encode,
        .err_from_pin_sw = tk_err_from_pin_sw,
};

/* ---- the driver list ------------------------------------------------------------- */

int
tk_driver_check(const tk_driver_t *d, const char *what)
{
	const char *why = NULL;

	if (d == NULL)
		why = "no driver table";
	else if (d->api == 0 || d->api > TK_DRIVER_API)
		why = "built for another driver API";
	else if (d->size < DRIVER_V1_SIZE)
		why = "driver table too small for its API";
	else if (!name_ok(d->name))
		why = "driver name not [a-z0-9_], 1..15 characters";
	else if (d->probe == NULL || d->load == NULL || d->pin_verify == NULL ||
	         d->pin_status == NULL || d->pin_change == NULL || d->pin_unblock == NULL ||
	         d->key_op == NULL || d->free == NULL)
		why = "driver table incomplete";
	if (why == NULL)
		return TK_OK;
	if (d != NULL && d->api > TK_DRIVER_API)
		tk_log_warn("driver: %s refused: built for driver API %u, this tokenkit has %u",
		            what, (unsigned)d->api, TK_DRIVER_API);
	else
		tk_log_warn("driver: %s refused: %s", what, why);
	return TK_ERR_INVALID_ARG;
}

static pthread_mutex_t list_lock = PTHREAD_MUTEX_INITIALIZER;
/* entries live as long as the process: drivers, and token providers' operations */
static tk_drv_entry_t pool[2 * MAX_DRIVERS];
static size_t npool;
static const tk_drv_entry_t *order[MAX_DRIVERS];
static size_t norder;
static bool listed;

/* The entry of d (made once). Called with list_lock held. */
static tk_drv_entry_t *
entry_for(const tk_driver_t *d, const char *path)
{
	for (size_t i = 0; i < npool; i++)
		if (pool[i].drv == d)
			return &pool[i];
	if (npool == sizeof(pool) / sizeof(pool[0]))
		return NULL;
	pool[npool].drv = d;
	pool[npool].path = path;
	atomic_init(&pool[npool].disabled, false);
	return &pool[npool++];
}

static void
add_order(const tk_drv_entry_t *e)
{
	for (size_t i = 0; i < norder; i++)
		if (order[i] == e)
			return;
	if (norder < MAX_DRIVERS)
		order[norder++] = e;
}

static const tk_driver_t *
builtin(const char *name)
{
	for (size_t i = 0; tk_builtin_drivers[i] != NULL; i++)
		if (strcmp(tk_builtin_drivers[i]->name, name) == 0)
			return tk_builtin_drivers[i];
	return NULL;
}

/* Load the driver plugin called name and add it. */
static void
add_plugin(const char *name)
{
	const tk_plugin_desc_t *desc = NULL;
	const tk_driver_t *d;
	char what[128];
	tk_drv_entry_t *e;

	if (tk_plugin_load(TK_PLUGIN_DRIVER, name, &desc) != TK_OK)
		return;
	d = desc->table;
	snprintf(what, sizeof(what), "plugin %s", tk_plugin_path(desc));
	if (tk_driver_check(d, what) != TK_OK)
		return;
	if (strcmp(d->name, name) != 0) {
		tk_log_warn("driver: %s refused: its driver is called '%s', its file '%s'", what,
		            d->name, name);
		return;
	}
	if (builtin(name) != NULL) {
		tk_log_warn("driver: %s refused: '%s' is a built-in driver", what, name);
		return;
	}
	if ((e = entry_for(d, tk_plugin_path(desc))) != NULL)
		add_order(e);
}

static void
add_named(const char *name)
{
	const tk_driver_t *d = builtin(name);
	tk_drv_entry_t *e;

	if (d != NULL) {
		if ((e = entry_for(d, NULL)) != NULL)
			add_order(e);
		return;
	}
	if (name_ok(name))
		add_plugin(name);
	else
		tk_log_warn("driver: '%s' in TOKENKIT_DRIVERS is no driver name", name);
}

/* Called with list_lock held. */
static void
build_list(void)
{
	char names[MAX_DRIVERS][TK_PLUGIN_NAME_MAX + 1];
	const char *env = tk_env("TOKENKIT_DRIVERS");
	size_t n = 0;

	norder = 0;
	if (env != NULL && env[0] != '\0') {
		char *copy = strdup(env), *save = NULL;

		for (char *t = copy != NULL ? strtok_r(copy, ", ", &save) : NULL; t != NULL;
		     t = strtok_r(NULL, ", ", &save))
			add_named(t);
		free(copy);
		if (norder == 0)
			tk_log_error("driver: TOKENKIT_DRIVERS='%s' names no usable driver", env);
		return;
	}
	for (size_t i = 0; tk_builtin_drivers[i] != NULL; i++)
		add_named(tk_builtin_drivers[i]->name);
	if (tk_plugin_list(TK_PLUGIN_DRIVER, names, MAX_DRIVERS, &n) != TK_OK)
		return;
	for (size_t i = 0; i < n; i++)
		add_plugin(names[i]);
}

int
tk_drivers_list(const tk_drv_entry_t *const **out, size_t *n)
{
	pthread_mutex_lock(&list_lock);
	if (!listed) {
		build_list();
		listed = true;
		for (size_t i = 0; i < norder; i++)
			tk_log_debug("driver: %zu. %s%s%s", i + 1, order[i]->drv->name,
			             order[i]->path != NULL ? " from " : " (built in)",
			             order[i]->path != NULL ? order[i]->path : "");
	}
	*out = order;
	*n = norder;
	pthread_mutex_unlock(&list_lock);
	return TK_OK;
}

void
tk_drivers_rescan(void)
{
	pthread_mutex_lock(&list_lock);
	listed = false;
	pthread_mutex_unlock(&list_lock);
}

const tk_drv_entry_t *
tk_drv_entry_of(const tk_driver_t *d)
{
	const tk_drv_entry_t *e;

	pthread_mutex_lock(&list_lock);
	e = entry_for(d, NULL);
	pthread_mutex_unlock(&list_lock);
	return e;
}

const char *
tk_drv_entry_name(const tk_drv_entry_t *e)
{
	return e->drv->name;
}

bool
tk_drv_entry_usable(const tk_drv_entry_t *e)
{
	return !atomic_load(&((tk_drv_entry_t *)(uintptr_t)e)->disabled);
}

/* ---- checked calls -------------------------------------------------------------- */

/* A tk_err a driver may return: one of ours, and never "success" dressed
 * up as something else. */
static bool
err_known(int r)
{
	return r == TK_OK || (r < 0 && strcmp(tk_errname(r), "TK_ERR_UNKNOWN") != 0);
}

static int
checked(const tk_drv_entry_t *e, const char *call, int r)
{
	char what[64];

	if (err_known(r))
		return r;
	snprintf(what, sizeof(what), "%s returned %d, no tokenkit error code", call, r);
	return nonsense(e, what);
}

int
tk_drv_probe(const tk_drv_entry_t *e, tk_card_t *card, void **state, char *identity,
             size_t identity_cap)
{
	int r;

	*state = NULL;
	identity[0] = '\0';
	if (!tk_drv_entry_usable(e))
		return TK_ERR_NOT_SUPPORTED;
	if (e->path != NULL)
		drv_log(e, TK_LOG_DEBUG, "probing");
	r = checked(e, "probe", e->drv->probe(card, state, identity, identity_cap));
	if (r != TK_OK) {
		if (*state != NULL)
			drv_log(e, TK_LOG_WARN, "probe failed but handed out a state (leaked)");
		*state = NULL;
		identity[0] = '\0';
		return r;
	}
	if (!identity_ok(e->drv->name, identity, identity_cap)) {
		e->drv->free(*state);
		*state = NULL;
		identity[0] = '\0';
		return nonsense(e, "probe gave a card identity that is not \"NAME:\" and printable "
		                   "ASCII of at most 64 characters");
	}
	return TK_OK;
}

int
tk_drv_load(const tk_drv_entry_t *e, void *state, const tk_cache_t *cached, tk_cache_t *fresh,
            unsigned flags, tk_drv_model_t *m)
{
	int r;

	if (!tk_drv_entry_usable(e))
		return TK_ERR_INTERNAL;
	r = checked(e, "load", e->drv->load(state, cached, fresh, flags, m));
	if (r == TK_OK && m->pin_max_len == 0) {
		tk_drv_model_clear(m);
		return nonsense(e, "load described no token (no PIN lengths)");
	}
	if (r != TK_OK)
		tk_drv_model_clear(m);
	return r;
}

static bool
retries_ok(int v)
{
	return v >= -1 && v <= 255;
}

int
tk_drv_pin_verify(const tk_drv_entry_t *e, void *state, int user, const uint8_t *pin,
                  size_t pin_len, int *retries)
{
	int r;

	*retries = -1;
	if (!tk_drv_entry_usable(e))
		return TK_ERR_INTERNAL;
	r = checked(e, "pin_verify", e->drv->pin_verify(state, user, pin, pin_len, retries));
	if (!retries_ok(*retries)) {
		*retries = -1;
		return nonsense(e, "pin_verify gave a retry counter out of range");
	}
	return r;
}

int
tk_drv_pin_status(const tk_drv_entry_t *e, void *state, int user, tk_drv_pin_status_t *st)
{
	int r;

	memset(st, 0, sizeof(*st));
	st->size = sizeof(*st);
	st->retries = st->max_retries = -1;
	if (!tk_drv_entry_usable(e))
		return TK_ERR_INTERNAL;
	r = checked(e, "pin_status", e->drv->pin_status(state, user, st));
	if (st->size != sizeof(*st) || !retries_ok(st->retries) || !retries_ok(st->max_retries)) {
		memset(st, 0, sizeof(*st));
		st->size = sizeof(*st);
		st->retries = st->max_retries = -1;
		return nonsense(e, "pin_status gave counters out of range");
	}
	return r;
}

int
tk_drv_pin_change(const tk_drv_entry_t *e, void *state, int user, const uint8_t *old_pin,
                  size_t old_len, const uint8_t *new_pin, size_t new_len)
{
	if (!tk_drv_entry_usable(e))
		return TK_ERR_INTERNAL;
	return checked(e, "pin_change",
	               e->drv->pin_change(state, user, old_pin, old_len, new_pin, new_len));
}

int
tk_drv_pin_unblock(const tk_drv_entry_t *e, void *state, const uint8_t *puk, size_t puk_len,
                   const uint8_t *new_pin, size_t new_len)
{
	if (!tk_drv_entry_usable(e))
		return TK_ERR_INTERNAL;
	return checked(e, "pin_unblock",
	               e->drv->pin_unblock(state, puk, puk_len, new_pin, new_len));
}

/* The table has room for the optional member that ends at end (offsetof +
 * size), added in API api: a table built for an older API ends before it,
 * and what follows it in memory is not the driver's. */
static bool
covers(const tk_driver_t *d, uint32_t api, size_t end)
{
	return d->api >= api && d->size >= end;
}

bool
tk_drv_has_pinpad(const tk_drv_entry_t *e)
{
	const tk_driver_t *d = e->drv;

	return covers(d, 2, offsetof(tk_driver_t, pin_verify_pad) + sizeof(d->pin_verify_pad)) &&
	       d->pin_verify_pad != NULL;
}

bool
tk_drv_has_pinpad_change(const tk_drv_entry_t *e)
{
	const tk_driver_t *d = e->drv;

	return covers(d, 3, offsetof(tk_driver_t, pin_change_pad) + sizeof(d->pin_change_pad)) &&
	       d->pin_change_pad != NULL;
}

/* pin_verify_pad or pin_change_pad (change), checked. */
static int
pad_call(const tk_drv_entry_t *e, bool change, void *state, int user, int *retries)
{
	const char *name = change ? "pin_change_pad" : "pin_verify_pad";
	int r;

	*retries = -1;
	if (!tk_drv_entry_usable(e))
		return TK_ERR_INTERNAL;
	if (change ? !tk_drv_has_pinpad_change(e) : !tk_drv_has_pinpad(e))
		return TK_ERR_NOT_SUPPORTED;
	r = checked(
	        e, name,
	        (change ? e->drv->pin_change_pad : e->drv->pin_verify_pad)(state, user, retries));
	if (!retries_ok(*retries)) {
		*retries = -1;
		return nonsense(e, change ? "pin_change_pad gave a retry counter out of range"
		                          : "pin_verify_pad gave a retry counter out of range");
	}
	return r;
}

int
tk_drv_pin_verify_pad(const tk_drv_entry_t *e, void *state, int user, int *retries)
{
	return pad_call(e, false, state, user, retries);
}

int
tk_drv_pin_change_pad(const tk_drv_entry_t *e, void *state, int user, int *retries)
{
	return pad_call(e, true, state, user, retries);
}

/* The output length an operation must give (0: any up to max). */
static size_t
op_out_len(const tk_drv_slot_t *s, int op, size_t *max)
{
	size_t k = (s->key_bits + 7) / 8;

	*max = k;
	switch (op) {
	case TK_OP_RSA_RAW:
	case TK_OP_RSA_PKCS1_SIGN:
		return k;
	case TK_OP_RSA_PKCS1_DECRYPT:
		*max = k > 11 ? k - 11 : 0;
		return 0;
	case TK_OP_ECDSA:
		return 2 * k;
	case TK_OP_ECDH:
		return s->key_type == TK_KEY_X25519 ? 32 : k;
	case TK_OP_EDDSA:
		return 64;
	default:
		return 0;
	}
}

int
tk_drv_key_op(const tk_drv_entry_t *e, void *state, const tk_drv_slot_t *slot, int op,
              const uint8_t *in, size_t in_len, uint8_t *out, size_t out_cap, size_t *out_len)
{
	tk_drv_key_t key;
	size_t want, max;
	int r;

	*out_len = 0;
	if (!tk_drv_entry_usable(e))
		return TK_ERR_INTERNAL;
	memset(&key, 0, sizeof(key));
	key.size = sizeof(key);
	key.key_ref = slot->key_ref;
	key.key_type = slot->key_type;
	key.key_bits = slot->key_bits;
	key.usage = slot->usage;
	r = checked(e, "key_op",
	            e->drv->key_op(state, &key, op, in, in_len, out, out_cap, out_len));
	if (r != TK_OK) {
		*out_len = 0;
		return r;
	}
	want = op_out_len(slot, op, &max);
	if (*out_len > out_cap || (want != 0 && *out_len != want) ||
	    (want == 0 && *out_len > max)) {
		tk_wipe(out, out_cap);
		*out_len = 0;
		return nonsense(e, "key_op gave a result of the wrong length");
	}
	return TK_OK;
}

void
tk_drv_free(const tk_drv_entry_t *e, void *state)
{
	e->drv->free(state);
}
