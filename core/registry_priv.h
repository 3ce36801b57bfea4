/* tokenkit: the registry's records and files (private).
 *
 * A registration is one file, "<provider>@<instance>.reg", in the store
 * directory; the store's identity is the file "store-id". Both are framed
 * the same way, all integers big-endian:
 *   magic (8) | version u16 (1) | reserved u16 (0) | body | SHA-256 (32)
 * with the SHA-256 over everything before it. The magic is "TKREGREC" for a
 * registration and "TKREGSID" for the identity; the body is one CBOR map
 * (RFC 8949) in the one encoding tk_reg_encode writes: definite lengths,
 * shortest integers, text keys in a fixed order. Decoding accepts exactly
 * that: it decodes, checks every field (types, limits, required keys, no
 * unknown or repeated key), encodes the result again and compares it with
 * the input byte for byte. A file that fails any check is skipped by the
 * caller with a warning naming it.
 *
 * The registration map:
 *   "provider" tstr, "instance" tstr, "generation" uint (>= 1),
 *   "created" uint, "updated" uint (µs since the epoch), "flags" uint,
 *   "removed" bool, "label" tstr,
 *   "items" [ { "kind" "cert"|"key", "id" bstr, "label" tstr, "der" bstr,
 *               keys only: "type" "rsa"|"ec"|"ed25519", "bits" uint, "usage" uint,
 *               "handle" bstr } ... ],
 *   "config" bstr
 * The identity map: "id" bstr (16 random bytes), "created" uint. */
#ifndef TK_REGISTRY_PRIV_H
#define TK_REGISTRY_PRIV_H

#include <tokenkit/registry.h>

#define TK_REG_VERSION 1
#define TK_REG_ID_LEN 16
#define TK_REG_SUFFIX ".reg"
#define TK_REG_STORE_ID "store-id"
/* provider + '@' + instance + ".reg" + NUL */
#define TK_REG_NAME_MAX (TK_REG_PROVIDER_MAX + 1 + TK_REG_INSTANCE_MAX + 4 + 1)

struct tk_reg_item_rec {
	int kind;
	uint8_t id[TK_REG_ID_MAX];
	size_t id_len;
	char *label;
	uint8_t *der;
	size_t der_len;
	int key_type;
	unsigned key_bits;
	unsigned usage;
	uint8_t *handle;
	size_t handle_len;
};

struct tk_registration {
	char provider[TK_REG_PROVIDER_MAX + 1];
	char instance[TK_REG_INSTANCE_MAX + 1];
	char label[TK_REG_LABEL_MAX + 1];
	unsigned flags;
	uint64_t gen, created, updated;
	bool removed;
	struct tk_reg_item_rec *items;
	size_t nitems;
	uint8_t *config;
	size_t config_len;
	/* The store directory a registration was read from (NULL: not read
	 * from a store); not part of the record: a provider that writes back
	 * knows where to (tk_registry_open with this path). */
	char *store;
};

typedef struct tk_reg_store_id {
	uint8_t id[TK_REG_ID_LEN];
	uint64_t created;
} tk_reg_store_id_t;

/* The store a registration was read from (see above); set copies. Errors:
 * TK_ERR_NO_MEMORY. */
int tk_reg_set_store(tk_registration_t *r, const char *path);
const char *tk_reg_store(const tk_registration_t *r);

bool tk_reg_provider_ok(const char *s);
bool tk_reg_instance_ok(const char *s);
/* "<provider>@<instance>.reg". Errors: TK_ERR_INVALID_ARG. */
int tk_reg_file_name(const char *provider, const char *instance, char *out, size_t cap);
/* The reverse; false for any other name (temporary files, store-id). */
bool tk_reg_file_parse(const char *name, char *provider, char *instance);

/* Serialise r (its generation and timestamps as they are). Errors:
 * TK_ERR_TOO_LONG (over TK_REG_RECORD_MAX), TK_ERR_NO_MEMORY. */
int tk_reg_encode(const tk_registration_t *r, uint8_t **out, size_t *len);
/* Parse a registration file. Errors: TK_ERR_TRUNCATED, TK_ERR_MALFORMED,
 * TK_ERR_BAD_CHECKSUM, TK_ERR_NOT_SUPPORTED (another version),
 * TK_ERR_TOO_LONG, TK_ERR_NO_MEMORY. */
int tk_reg_decode(const uint8_t *p, size_t len, tk_registration_t **out);
int tk_reg_store_id_encode(const tk_reg_store_id_t *id, uint8_t **out, size_t *len);
int tk_reg_store_id_decode(const uint8_t *p, size_t len, tk_reg_store_id_t *id);

/* µs since the epoch (CLOCK_REALTIME): timestamps only, never intervals. */
uint64_t tk_reg_now_us(void);

#endif
