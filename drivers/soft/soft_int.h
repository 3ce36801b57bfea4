/* tokenkit: the software token's internals (drivers/soft only).
 *
 * The token's state is the configuration of its registration, in this
 * format (all integers big-endian; the registry frames and checksums the
 * whole record):
 *   magic "TKSOFT" (6) | version u8 (1) | max_tries u8 | fails_user u8 |
 *   fails_so u8 | wrap (user) | wrap (SO) | count u16 | count × object
 *   wrap:   present u8 (0/1) [ log2n u8 | r u8 | p u8 | salt (16) |
 *           nonce (12) | sealed DEK (32) | tag (16) ]
 *   object: uid (16) | nattrs u16 | nattrs × { type u32 | len u32 | value }
 *           | sealed_len u32 | sealed (nonce (12) | ciphertext | tag (16))
 * Attributes are in strictly increasing type order; CK_ULONG values (and
 * arrays of them) are 8 bytes each; a sealed part's plaintext is a private
 * key's PKCS#8 PrivateKeyInfo, or the value (CKA_VALUE) of a secret key or
 * private data object. Decoding accepts exactly what encoding writes
 * (soft_rec.c; fuzz target fuzz_soft_record). */
#ifndef TK_SOFT_INT_H
#define TK_SOFT_INT_H

#include <pthread.h>

#include <openssl/x509.h>

#include "soft.h"

#define SOFT_VERSION 1
#define SOFT_SALT_LEN 16
#define SOFT_NONCE_LEN 12
#define SOFT_TAG_LEN 16
#define SOFT_DEK_LEN 32
#define SOFT_LOG2N_DEFAULT 15
#define SOFT_LOG2N_MIN 10 /* tests only go this low */
#define SOFT_LOG2N_MAX 20
#define SOFT_SCRYPT_R 8
#define SOFT_SCRYPT_P 1
#define SOFT_SEALED_MAX (16u * 1024u)

enum { SOFT_USER = 0, SOFT_SO = 1 };

struct soft_wrap {
	bool present;
	uint8_t log2n, r, p;
	uint8_t salt[SOFT_SALT_LEN];
	uint8_t nonce[SOFT_NONCE_LEN];
	uint8_t ct[SOFT_DEK_LEN];
	uint8_t tag[SOFT_TAG_LEN];
};

struct soft_obj {
	uint8_t uid[TK_SOFT_UID_LEN];
	tk_attrs_t attrs;
	uint8_t *sealed; /* NULL: none */
	size_t sealed_len;
};

struct soft_state {
	uint8_t max_tries;
	uint8_t fails[2]; /* SOFT_USER, SOFT_SO */
	struct soft_wrap wrap[2];
	struct soft_obj *objs;
	size_t n;
};

/* soft_rec.c */
void tk_soft_state_clear(struct soft_state *st);
/* Errors: TK_ERR_NO_MEMORY (dst cleared). */
int tk_soft_state_dup(const struct soft_state *src, struct soft_state *dst);
/* Errors: TK_ERR_TOO_LONG (over TK_REG_CONFIG_MAX), TK_ERR_NO_MEMORY. */
int tk_soft_state_encode(const struct soft_state *st, uint8_t **out, size_t *len);
/* Errors: TK_ERR_MALFORMED, TK_ERR_TRUNCATED, TK_ERR_NOT_SUPPORTED (another
 * version), TK_ERR_NO_MEMORY. */
int tk_soft_state_decode(const uint8_t *p, size_t len, struct soft_state *st);
struct soft_obj *tk_soft_state_find(const struct soft_state *st, const uint8_t *uid);

/* soft_pin.c: the DEK under a PIN, and objects' sealed parts under the DEK. */
/* A new wrap of dek under pin (fresh salt and nonce). */
int tk_soft_wrap(const uint8_t dek[SOFT_DEK_LEN], int role, const uint8_t *pin, size_t pin_len,
                 unsigned log2n, struct soft_wrap *w);
/* The DEK (into dek, secret memory of SOFT_DEK_LEN) from w and pin.
 * Errors: TK_ERR_PIN_INCORRECT, TK_ERR_CRYPTO, TK_ERR_NO_MEMORY. */
int tk_soft_unwrap(const struct soft_wrap *w, int role, const uint8_t *pin, size_t pin_len,
                   uint8_t dek[SOFT_DEK_LEN]);
/* Seal plaintext for object (uid, class, key type); the result malloc'd. */
int tk_soft_seal(const uint8_t dek[SOFT_DEK_LEN], const struct soft_obj *o, const uint8_t *pt,
                 size_t pt_len, uint8_t **out, size_t *out_len);
/* The plaintext in secret memory (tk_secmem_free). Errors:
 * TK_ERR_BAD_CHECKSUM (not sealed with this DEK for this object),
 * TK_ERR_MALFORMED, TK_ERR_NO_MEMORY. */
int tk_soft_unseal(const uint8_t dek[SOFT_DEK_LEN], const struct soft_obj *o, void **pt,
                   size_t *pt_len);

/* soft_p12.c: a PKCS#12 file's key, the key's certificate (paired by public
 * key) and the other certificates (the caller frees all three; all NULL on
 * error). Errors as tk_soft_import_p12's for the file (fuzz_soft_p12). */
int tk_soft_p12_parse(const uint8_t *der, size_t len, const char *password, EVP_PKEY **key,
                      X509 **cert, STACK_OF(X509) * *chain);

/* soft_store.c */
/* One decrypted secret while logged in. */
struct soft_key {
	uint8_t uid[TK_SOFT_UID_LEN];
	EVP_PKEY *pk; /* private keys */
	void *val;    /* secret values (secret memory) */
	size_t len;
};

struct tk_soft {
	pthread_mutex_t mtx;
	char instance[TK_REG_INSTANCE_MAX + 1];
	char label[TK_REG_LABEL_MAX + 1];
	char *store;
	tk_registry_t *reg;     /* opened at the first write */
	tk_registration_t *rec; /* as last read or written */
	struct soft_state st;   /* rec's configuration */
	tk_soft_snap_t *snap;   /* st's objects for readers */
	/* what the token model was built from (key references index its items) */
	tk_registration_t *model;
	/* login: the DEK (secret memory) and the secrets it opened */
	uint8_t *dek;
	int role; /* SOFT_USER or SOFT_SO, while dek is held */
	struct soft_key *keys;
	size_t nkeys;
};

/* A handle on the registration reg (copied). Errors: TK_ERR_MALFORMED (its
 * configuration), TK_ERR_NO_MEMORY. */
int tk_soft_new(const tk_registration_t *reg, tk_soft_t **out);
void tk_soft_free(tk_soft_t *s);
/* Read the registration again from the store (another process may have
 * written). Errors: the registry's, TK_ERR_MALFORMED. mtx held. */
int tk_soft_refresh_locked(tk_soft_t *s);
/* PIN functions (role SOFT_USER or SOFT_SO); mtx taken inside.
 * *tries_left (may be NULL) after a refusal. */
int tk_soft_pin_login(tk_soft_t *s, int role, const uint8_t *pin, size_t len, int *tries_left);
void tk_soft_pin_logout(tk_soft_t *s);
int tk_soft_pin_change(tk_soft_t *s, int role, const uint8_t *old_pin, size_t old_len,
                       const uint8_t *new_pin, size_t new_len);
int tk_soft_pin_reset(tk_soft_t *s, const uint8_t *so_pin, size_t so_len, const uint8_t *new_pin,
                      size_t new_len);
/* The state's tries left for role. */
int tk_soft_pin_tries(tk_soft_t *s, int role, int *left, int *max);
/* Registration items from st's objects (for the registry's readers). */
int tk_soft_items(const struct soft_state *st, tk_registration_t *r);

#endif
