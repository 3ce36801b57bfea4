/* tokenkit: software tokens.
 *
 * A software token holds keys, certificates and other PKCS#11 objects in
 * the user's registry store (registry.h), encrypted at rest under its PINs,
 * and every PKCS#11 application that loads tokenkit-pkcs11.so sees it as a
 * writable token. These functions are what `tokenkit soft` is made of:
 * create a token, import a PKCS#12 file, list, export and delete.
 *
 * PINs: the user PIN guards the keys (they are decrypted only with it);
 * the SO PIN resets the user PIN. Both are counted: after max_tries wrong
 * ones in a row the PIN is locked (TK_ERR_PIN_LOCKED). A function that needs
 * the user PIN and has none (tk_soft_login was not called or failed)
 * answers TK_ERR_LOGIN_REQUIRED ("token locked, needs the user PIN") at once.
 *
 * Thread safety: a tk_soft_t is used by one thread at a time. Two handles
 * (also in two processes) on one token are safe: each write lands whole,
 * after the other's, never over it. */
#ifndef TOKENKIT_SOFT_H
#define TOKENKIT_SOFT_H

#include <tokenkit/common.h>

typedef struct tk_soft tk_soft_t;

#define TK_SOFT_PIN_MIN 4
#define TK_SOFT_PIN_MAX 64
#define TK_SOFT_TRIES_DEFAULT 10

typedef struct tk_soft_create_opts {
	const char *label;  /* UTF-8, 1..32 bytes (the PKCS#11 token label) */
	const uint8_t *pin; /* user PIN, TK_SOFT_PIN_MIN..TK_SOFT_PIN_MAX bytes */
	size_t pin_len;
	const uint8_t *so_pin; /* SO PIN, same bounds */
	size_t so_pin_len;
	unsigned max_tries; /* wrong PINs before the lock; 0: TK_SOFT_TRIES_DEFAULT */
	unsigned kdf_log2n; /* scrypt cost (log2 N); 0: the default (15: 32 MiB, ~0.1 s) */
} tk_soft_create_opts_t;
TK_EXPORT void tk_soft_create_opts_init(tk_soft_create_opts_t *o);

/* Create and register a new, empty token in the user's store. instance
 * (TK_REG_INSTANCE_MAX + 1 bytes) receives its instance id (random).
 * Errors: TK_ERR_INVALID_ARG (label, PIN lengths), TK_ERR_EXISTS (a
 * software token with this label exists), the registry's (tk_registry_open,
 * tk_registry_put). */
TK_EXPORT int tk_soft_create(const tk_soft_create_opts_t *o, char *instance, size_t cap);

/* One software token of the user's store, by instance id or label (NULL:
 * the only one there is). Errors: TK_ERR_NOT_FOUND (none), TK_ERR_EXISTS
 * (NULL given and several exist: name one), the registry's. */
TK_EXPORT int tk_soft_open(const char *token, tk_soft_t **out);
TK_EXPORT void tk_soft_close(tk_soft_t **sp);
TK_EXPORT const char *tk_soft_instance(const tk_soft_t *s);
TK_EXPORT const char *tk_soft_label(const tk_soft_t *s);

/* The software tokens of the user's store: their instance ids, malloc'd
 * (free each and the array). Errors: the registry's. */
TK_EXPORT int tk_soft_list(char ***instances, size_t *count);

typedef struct tk_soft_pin_info {
	unsigned tries_left, max_tries;
	bool locked;
	bool so_locked;
	unsigned so_tries_left;
} tk_soft_pin_info_t;
TK_EXPORT int tk_soft_pin_info(tk_soft_t *s, tk_soft_pin_info_t *info);

/* Log in with the user PIN (the wrong-PIN count is written before the PIN
 * is checked). Errors: TK_ERR_PIN_INCORRECT (*tries_left, may be NULL,
 * says how many remain), TK_ERR_PIN_LOCKED, the registry's. */
TK_EXPORT int tk_soft_login(tk_soft_t *s, const uint8_t *pin, size_t pin_len, unsigned *tries_left);
/* Change the user PIN (old one checked as by tk_soft_login). */
TK_EXPORT int tk_soft_change_pin(tk_soft_t *s, const uint8_t *old_pin, size_t old_len,
                                 const uint8_t *new_pin, size_t new_len);
/* Set a new user PIN with the SO PIN (unlocks a locked user PIN). Errors:
 * TK_ERR_PIN_INCORRECT / TK_ERR_PIN_LOCKED (the SO PIN's). */
TK_EXPORT int tk_soft_init_pin(tk_soft_t *s, const uint8_t *so_pin, size_t so_len,
                               const uint8_t *new_pin, size_t new_len);

/* ---- objects ------------------------------------------------------------------- */

enum tk_soft_obj_class {
	TK_SOFT_CERT = 1,
	TK_SOFT_PUBKEY = 2,
	TK_SOFT_PRIVKEY = 3,
	TK_SOFT_SECRET = 4,
	TK_SOFT_DATA = 5,
};

typedef struct tk_soft_object {
	int cls;        /* enum tk_soft_obj_class */
	char label[65]; /* NUL-terminated, as stored (cut at 64 bytes) */
	uint8_t id[64]; /* CKA_ID */
	size_t id_len;
	int key_type; /* enum tk_key_type (certificates: their key's) */
	unsigned key_bits;
	bool has_identity; /* a certificate whose key is on the token, and that key */
	char uid[33];      /* hex: names the object for tk_soft_delete */
} tk_soft_object_t;

/* The token's objects (private ones only after tk_soft_login): a
 * malloc'd array. Errors: TK_ERR_NO_MEMORY. */
TK_EXPORT int tk_soft_objects(tk_soft_t *s, tk_soft_object_t **objs, size_t *count);

/* A certificate's DER (malloc'd), chosen by uid, CKA_ID (hex) or label.
 * Errors: TK_ERR_NOT_FOUND, TK_ERR_EXISTS (the name fits several). */
TK_EXPORT int tk_soft_export_cert(tk_soft_t *s, const char *which, uint8_t **der, size_t *len);

/* Delete an object by uid, or an identity (its key, public key and
 * certificate) by CKA_ID (hex) or label: one write. Private objects need
 * tk_soft_login. Errors: TK_ERR_NOT_FOUND, TK_ERR_EXISTS (ambiguous),
 * TK_ERR_LOGIN_REQUIRED, the registry's. */
TK_EXPORT int tk_soft_delete(tk_soft_t *s, const char *which, size_t *deleted);

/* Import a PKCS#12 file (its key, certificate and chain) in one write.
 * The key must be the certificate's; the CKA_ID of key, public key and
 * certificate is the SHA-1 of the public key (20 bytes), the label the
 * file's friendly name, else the certificate's subject CN. An identity
 * whose key is already on the token is not imported again
 * (TK_ERR_EXISTS) unless replace is set (then the old one goes in the same
 * write). Chain certificates already there are kept, not doubled.
 * Errors: TK_ERR_LOGIN_REQUIRED, TK_ERR_PIN_INCORRECT (the file's
 * password), TK_ERR_MALFORMED (not PKCS#12), TK_ERR_NOT_SUPPORTED (an
 * algorithm or key type this token or OpenSSL does not take),
 * TK_ERR_NOT_FOUND (a key without its certificate, or no key),
 * TK_ERR_TEMPLATE_INCONSISTENT (a certificate that is not the key's),
 * TK_ERR_EXISTS, the write's. Nothing is imported unless everything is.
 * The file is read and checked, and a duplicate refused, before the login
 * is asked for: a caller may try first and log in (tk_soft_login, which
 * writes its try counter) only on TK_ERR_LOGIN_REQUIRED, so that a bad
 * file writes nothing at all. */
typedef struct tk_soft_import_opts {
	const char *password; /* the file's password (NULL: none) */
	const char *label;    /* NULL: from the file */
	bool replace;
	bool extractable; /* the key may later be wrapped out (C_WrapKey) */
} tk_soft_import_opts_t;
typedef struct tk_soft_import_result {
	char label[65];
	uint8_t id[20];
	size_t id_len;
	int key_type;
	unsigned key_bits;
	size_t chain; /* chain certificates added */
	bool replaced;
} tk_soft_import_result_t;
TK_EXPORT int tk_soft_import_p12(tk_soft_t *s, const uint8_t *p12, size_t len,
                                 const tk_soft_import_opts_t *o, tk_soft_import_result_t *res);

/* Remove the token (its registration: objects and all). Needs no PIN: the
 * user owns the store. Errors: the registry's. */
TK_EXPORT int tk_soft_destroy_token(tk_soft_t *s);

#endif
