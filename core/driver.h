/* tokenkit: the core's side of the driver interface (private).
 *
 * The interface itself is public (tokenkit/driver.h): built-in drivers and
 * driver plugins implement the same tk_driver_t and describe tokens through
 * the same checked model functions. This header holds what only the core
 * sees: the model as the token layer reads it, the driver list (the
 * built-in drivers of drivers/drivers.c, then the plugins) and the calls
 * into a driver that check what it returns. */
#ifndef TK_DRIVER_H
#define TK_DRIVER_H

#include <tokenkit/card.h>
#include <tokenkit/driver.h>
#include <tokenkit/token.h>

#include "cache.h"
#include "x509.h"

/* Most keys one token may describe. */
#define TK_DRV_MAX_KEYS 64

/* One key slot as the driver described it, checked and copied. */
typedef struct tk_drv_slot {
	uint32_t key_ref;             /* driver key reference (PIV 0x9A ...) */
	uint8_t id[TK_OBJECT_ID_MAX]; /* CKA_ID of this slot's key */
	size_t id_len;
	char key_label[64];
	char pub_label[64];
	char cert_label[64];

	uint8_t *cert; /* certificate DER, NULL when the slot has none */
	size_t cert_len;
	uint8_t *cert_spki; /* the certificate's SubjectPublicKeyInfo DER */
	size_t cert_spki_len;
	int cert_key_type; /* enum tk_key_type of the certificate's key */
	unsigned cert_key_bits;

	bool key_present;
	uint8_t *spki; /* the key's own public key (card data), or NULL */
	size_t spki_len;
	int key_type; /* enum tk_key_type; TK_KEY_NONE when unknown */
	unsigned key_bits;
	unsigned usage; /* TK_USAGE_* */
	unsigned ops;   /* TK_OP_BIT(TK_OP_*) */
	bool needs_login;
	bool always_authenticate;
	bool cert_unpaired; /* TK_DRV_CERT_UNPAIRED: cert published alone, never paired */
} tk_drv_slot_t;

struct tk_drv_model {
	char label[33];
	char manufacturer[33];
	char model[17];
	char serial[17];
	size_t pin_min_len, pin_max_len;
	tk_drv_slot_t *slots;
	size_t nslots;
	const char *driver; /* name of the driver filling it, for log lines */
};

void tk_drv_model_init(tk_drv_model_t *m, const char *driver);
void tk_drv_model_clear(tk_drv_model_t *m);
/* The model functions of tk_drv_host_t (tokenkit/driver.h). */
int tk_drv_model_set_token(tk_drv_model_t *m, const tk_drv_token_desc_t *d);
int tk_drv_model_add_key(tk_drv_model_t *m, const tk_drv_key_desc_t *d);
/* The same with an id of 1..TK_OBJECT_ID_MAX bytes (d's id is not used):
 * for token providers, whose items may have longer ids (20-byte SHA-1 ids
 * are common) than the driver interface's 16. */
int tk_drv_model_add_key_id(tk_drv_model_t *m, const tk_drv_key_desc_t *d, const uint8_t *id,
                            size_t id_len);

/* The usages (TK_USAGE_*) a key of this type can serve (all for
 * TK_KEY_NONE). */
unsigned tk_drv_usage_for(int key_type);
/* The operations (TK_OP_BIT) a key of this type and usage offers when its
 * driver does not say. */
unsigned tk_drv_default_ops(int key_type, unsigned usage);

/* The host's services for drivers; plugins get it at init. */
extern const tk_drv_host_t tk_drv_host;

/* The built-in drivers (drivers/drivers.c), in probing order, NULL-ended. */
extern const tk_driver_t *const tk_builtin_drivers[];

/* A driver as the token layer uses it. */
typedef struct tk_drv_entry tk_drv_entry_t;

/* The drivers to probe, in order: built-ins, then plugins by name, or as
 * $TOKENKIT_DRIVERS says (tokenkit/driver.h). Built once per process, at the
 * first call. Errors: TK_ERR_NO_MEMORY. */
int tk_drivers_list(const tk_drv_entry_t *const **out, size_t *n);
/* Tests: forget the list so that the next tk_drivers_list looks again
 * (plugins stay loaded). */
void tk_drivers_rescan(void);
const char *tk_drv_entry_name(const tk_drv_entry_t *e);
/* The entry of a driver table that is not probed (a token provider's
 * operations, provider.h), made once; NULL when there is no room. */
const tk_drv_entry_t *tk_drv_entry_of(const tk_driver_t *d);
/* False once the driver returned nonsense (it is then never called
 * again in this process, except free for the states it handed out). */
bool tk_drv_entry_usable(const tk_drv_entry_t *e);

/* The driver calls, with what the driver returns checked: a built-in
 * driver or plugin that breaks the interface gets TK_ERR_INTERNAL for the
 * call, is logged by name (and path, for a plugin) and is disabled. */
int tk_drv_probe(const tk_drv_entry_t *e, tk_card_t *card, void **state, char *identity,
                 size_t identity_cap);
int tk_drv_load(const tk_drv_entry_t *e, void *state, const tk_cache_t *cached, tk_cache_t *fresh,
                unsigned flags, tk_drv_model_t *m);
int tk_drv_pin_verify(const tk_drv_entry_t *e, void *state, int user, const uint8_t *pin,
                      size_t pin_len, int *retries);
int tk_drv_pin_status(const tk_drv_entry_t *e, void *state, int user, tk_drv_pin_status_t *st);
int tk_drv_pin_change(const tk_drv_entry_t *e, void *state, int user, const uint8_t *old_pin,
                      size_t old_len, const uint8_t *new_pin, size_t new_len);
int tk_drv_pin_unblock(const tk_drv_entry_t *e, void *state, const uint8_t *puk, size_t puk_len,
                       const uint8_t *new_pin, size_t new_len);
int tk_drv_key_op(const tk_drv_entry_t *e, void *state, const tk_drv_slot_t *slot, int op,
                  const uint8_t *in, size_t in_len, uint8_t *out, size_t out_cap, size_t *out_len);
void tk_drv_free(const tk_drv_entry_t *e, void *state);
/* The driver can verify a PIN typed on the reader's PIN pad (API 2
 * pin_verify_pad), and that call, checked. */
bool tk_drv_has_pinpad(const tk_drv_entry_t *e);
int tk_drv_pin_verify_pad(const tk_drv_entry_t *e, void *state, int user, int *retries);
/* The driver can change a PIN typed on the reader's PIN pad (API 3
 * pin_change_pad), and that call, checked. */
bool tk_drv_has_pinpad_change(const tk_drv_entry_t *e);
int tk_drv_pin_change_pad(const tk_drv_entry_t *e, void *state, int user, int *retries);

/* Check a driver table (complete, API not newer than ours, sane name).
 * Errors: TK_ERR_INVALID_ARG (logged with the reason). */
int tk_driver_check(const tk_driver_t *d, const char *what);

#endif
