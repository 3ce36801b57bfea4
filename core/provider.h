/* tokenkit: token providers — the seam between a registration and a token
 * (private).
 *
 * A card token comes from a card driver (driver.h); a registered token
 * comes from a provider: the software token (drivers/soft, next), an
 * external driver, a test's. A provider is keyed by the provider id of the
 * registrations it serves. It turns a registration into the same token
 * model a card driver builds (driver.h: key slots with certificate, public
 * key, usage and PIN policy), so the core token API (tk_token_*: objects,
 * identities paired by SubjectPublicKeyInfo, PINs, key operations) and the
 * PKCS#11 module work on it unchanged; its PIN and key operations are a
 * tk_driver_t's (tokenkit/driver.h: api, size, and every PIN function,
 * key_op and free; probe and load are not used: there is no card). The
 * model is built through the same checked functions a card driver's is
 * (tk_drv_model_set_token, tk_drv_model_add_key), and the operations are
 * called through the same checks.
 *
 * Where providers come from, in this order: the built-in table (the
 * software token, drivers/soft: "soft"), those registered in this process
 * (tk_provider_register: tests, embedders), and plugins (plugin.h:
 * TK_PLUGIN_PROVIDER, file "provider-<id>.so", the descriptor's table a
 * const tk_provider_t *).
 *
 * Every call is made with the token's lock held (as for card drivers), so
 * the provider's state needs no lock of its own for these calls. The
 * registration passed in is the caller's: a provider copies what it keeps.
 *
 * What the software token will need beyond this (writable objects:
 * C_CreateObject, C_DestroyObject, C_GenerateKeyPair) is an addition at
 * the end of tk_provider_t, with the provider writing its new items back
 * to the registry (tk_registry_put with the generation it holds) and every
 * module seeing them through the registry's events (update). */
#ifndef TK_PROVIDER_H
#define TK_PROVIDER_H

#include <tokenkit/registry.h>
#include <tokenkit/token.h>

#include "driver.h"

typedef struct tk_provider {
	const char *id; /* provider id: [a-z0-9_], at most 32 */
	/* A token model for reg (tk_reg_model builds the usual one from the
	 * items: one key slot per item id, a key and the certificate with its
	 * id together; a provider may then change what it knows better, such
	 * as needs_login) and the provider's state for this token. Errors:
	 * TK_ERR_NOT_SUPPORTED (a registration this provider cannot serve),
	 * TK_ERR_MALFORMED (its configuration), TK_ERR_NO_MEMORY. */
	int (*open)(const tk_registration_t *reg, void **state, tk_drv_model_t *m);
	/* A newer generation of the same registration (same provider and
	 * instance): the new model; state stays the token's. Errors as open;
	 * on error the token keeps its model. */
	int (*update)(void *state, const tk_registration_t *reg, tk_drv_model_t *m);
	/* pin_verify, pin_status, pin_change, pin_unblock, key_op and free, as
	 * for a card driver; key_op's key is one of the model's (key_ref:
	 * the index of the key's item in the registration). */
	const tk_driver_t *ops;
} tk_provider_t;

/* Make p known in this process (p stays the caller's, for the life of the
 * process). Errors: TK_ERR_INVALID_ARG, TK_ERR_EXISTS (another provider with
 * this id), TK_ERR_NO_MEMORY (more than 16). */
int tk_provider_register(const tk_provider_t *p);
/* The provider for id (see above for where it is looked for). Errors:
 * TK_ERR_NOT_FOUND (none; logged once per id). */
int tk_provider_find(const char *id, const tk_provider_t **out);

/* The model every provider starts from: for each distinct item id (in
 * the order of first appearance) one key slot with the certificate of that
 * id (its SubjectPublicKeyInfo, key type and size from the certificate) and
 * the key of that id (key_present, type, size, usage, its own
 * SubjectPublicKeyInfo when the item has one; key_ref: the key item's
 * index); labels from the items; model label from the registration, serial
 * from the instance id (cut to 16 characters); needs_login true; PIN
 * lengths 4..64. Errors: TK_ERR_MALFORMED (a certificate OpenSSL cannot
 * read, two certificates or two keys with one id), TK_ERR_NO_MEMORY. */
int tk_reg_model(const tk_registration_t *reg, tk_drv_model_t *m);

/* token.c: a token for a registration (through its provider), and its
 * update to a newer generation of the registration: the objects that did
 * not change keep their handles, the login stays (as after
 * tk_token_revalidate: *changed says whether the object list changed).
 * Errors: TK_ERR_NOT_FOUND (no provider), the provider's. */
int tk_token_open_registration(const tk_registration_t *reg, tk_token_t **out);
int tk_token_update_registration(tk_token_t *t, const tk_registration_t *reg, bool *changed);
/* The state p keeps for registered token t, or NULL when t is not p's. */
void *tk_token_provider_state(tk_token_t *t, const tk_provider_t *p);

#endif
