/* tokenkit: the private interface between the core token API and card drivers.
 *
 * A driver turns a card into a model of a token: its identity, label and
 * serial, and one entry per key slot it found (the slot's certificate, the
 * key's own public key where the card tells it, labels, usage and PIN
 * policy). token.c builds the public objects from the model and pairs
 * certificates with keys by SubjectPublicKeyInfo; drivers never pair.
 *
 * The interface is small on purpose (STYLE.md 15): probe, load, four PIN
 * operations, one key operation, free. No control call. Every driver call
 * is made with the token's lock held, so a driver state needs no lock. */
#ifndef TK_DRIVER_H
#define TK_DRIVER_H

#include <tokenkit/card.h>
#include <tokenkit/token.h>

#include "cache.h"
#include "x509.h"

/* One key slot as the driver found it. Buffers are malloc'd and owned by
 * the model (tk_drv_model_clear frees them). */
typedef struct tk_drv_slot {
	uint32_t key_ref; /* driver key reference (PIV 0x9A ...) */
	uint8_t id[16];   /* CKA_ID of this slot's key */
	size_t id_len;
	char key_label[64];  /* private key label ("PIV AUTH key") */
	char pub_label[64];  /* public key label ("PIV AUTH pubkey") */
	char cert_label[64]; /* certificate label */

	uint8_t *cert; /* certificate DER, NULL when the slot has none */
	size_t cert_len;
	uint8_t *cert_spki; /* the certificate's SubjectPublicKeyInfo DER */
	size_t cert_spki_len;
	int cert_key_type; /* enum tk_key_type of the certificate's key */
	unsigned cert_key_bits;

	bool key_present; /* the card holds a private key in this slot */
	uint8_t *spki;    /* the key's own public key (card metadata), or NULL */
	size_t spki_len;
	int key_type; /* enum tk_key_type; TK_KEY_NONE when unknown */
	unsigned key_bits;
	unsigned usage;           /* TK_USAGE_* */
	bool needs_login;         /* the card wants the user PIN before use */
	bool always_authenticate; /* ... right before every use */
} tk_drv_slot_t;

typedef struct tk_drv_model {
	char label[33];
	char manufacturer[33];
	char model[17];
	char serial[17];
	size_t pin_min_len, pin_max_len;
	tk_drv_slot_t *slots;
	size_t nslots;
} tk_drv_model_t;

void tk_drv_model_clear(tk_drv_model_t *m);
/* Append a zeroed slot; *out points into m->slots until the next add.
 * Errors: TK_ERR_NO_MEMORY. */
int tk_drv_model_add_slot(tk_drv_model_t *m, tk_drv_slot_t **out);

/* PIN state as the card reports it without spending a try. */
typedef struct tk_drv_pin_status {
	int retries;     /* -1 unknown */
	int max_retries; /* -1 unknown */
	bool verified;   /* the card says the PIN is verified right now */
	bool locked;
} tk_drv_pin_status_t;

#define TK_DRV_LOAD_TRUST_CACHE 0x1u

typedef struct tk_driver {
	const char *name;
	/* Recognise the card and select the application. On success *state
	 * holds the driver's state (it borrows card) and identity the stable
	 * card identity ("" when the card has none: no caching then).
	 * Errors: TK_ERR_NOT_SUPPORTED (not this driver's card), transport
	 * errors. */
	int (*probe)(tk_card_t *card, void **state, char *identity, size_t identity_cap);
	/* Read the token model. cached (may be NULL) holds what an earlier
	 * load stored for this identity: the driver revalidates it cheaply
	 * against the card and uses what still holds. fresh (may be NULL)
	 * receives every public record the model was built from, to be
	 * stored. Only public data may go into fresh. flags: TK_DRV_LOAD_*.
	 * With TK_DRV_LOAD_TRUST_CACHE the driver takes every cached record
	 * as it is, without a probe, provided what probe read to prove the
	 * card's identity still equals its cached copy (else it checks every
	 * record as without the flag); records missing from the cache are
	 * read from the card. The caller revalidates later with flags 0. */
	int (*load)(void *state, const tk_cache_t *cached, tk_cache_t *fresh, unsigned flags,
	            tk_drv_model_t *m);
	/* user is enum tk_user (TK_USER_CONTEXT verifies the user PIN again).
	 * pin NULL: drop the card's verified state (logout), best effort.
	 * *retries gets the tries left when the card told them (else -1).
	 * The PIN buffers are the caller's; drivers wipe their own copies.
	 * Errors: TK_ERR_PIN_INCORRECT, TK_ERR_PIN_LOCKED, TK_ERR_INVALID_ARG,
	 * TK_ERR_NOT_SUPPORTED, transport errors. Never retried. */
	int (*pin_verify)(void *state, int user, const uint8_t *pin, size_t pin_len, int *retries);
	int (*pin_status)(void *state, int user, tk_drv_pin_status_t *st);
	int (*pin_change)(void *state, int user, const uint8_t *old_pin, size_t old_len,
	                  const uint8_t *new_pin, size_t new_len);
	int (*pin_unblock)(void *state, const uint8_t *puk, size_t puk_len, const uint8_t *new_pin,
	                   size_t new_len);
	/* One private-key operation (enum tk_key_op) with the key of slot. */
	int (*key_op)(void *state, const tk_drv_slot_t *slot, int op, const uint8_t *in,
	              size_t in_len, uint8_t *out, size_t out_cap, size_t *out_len);
	void (*free)(void *state);
	/* Optional (NULL: none). Verify the PIN of user (TK_USER_USER,
	 * TK_USER_CONTEXT) typed on the reader's PIN pad (tk_card_pinpad):
	 * the driver builds the command template and the PIN format its card
	 * wants. Errors as pin_verify, and TK_ERR_NOT_SUPPORTED (no pad, or
	 * not for this user), TK_ERR_TIMEOUT (nobody typed), TK_ERR_CANCELLED
	 * (cancelled on the pad). */
	int (*pin_verify_pad)(void *state, int user, int *retries);
} tk_driver_t;

/* The drivers, in probing order. */
extern const tk_driver_t tk_piv_driver;

#endif
