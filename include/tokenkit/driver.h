/* tokenkit: the card driver interface — for built-in drivers and driver
 * plugins alike.
 *
 * A driver turns a card into a model of a token: its label and serial, its
 * PIN lengths, and one key description per key slot it found (the slot's
 * certificate, the key's own public key where the card tells it, labels,
 * usage, PIN policy). The core builds the token's objects from the model and
 * pairs certificates with keys by SubjectPublicKeyInfo; drivers never pair.
 * The interface is small on purpose: probe, load, four PIN operations, one
 * key operation, free. Every driver call is made with the token's lock held,
 * so a driver's state needs no lock of its own.
 *
 * A driver plugin is a shared object driver-NAME.so (tokenkit/plugin.h)
 * whose descriptor has kind TK_PLUGIN_DRIVER and a tk_driver_t as table. It
 * is built against the installed headers only and links nothing of
 * tokenkit: every tokenkit function it calls comes through the host's
 * tk_drv_host_t (tk_plugin_host_t.driver), kept at init. Which plugins are
 * used, and in which order cards are probed: every driver-*.so found in the
 * plugin directories, sorted by name, after the built-in drivers (PIV);
 * $TOKENKIT_DRIVERS (names separated by ',', not read in set-uid or set-gid
 * processes) picks and orders them instead, e.g. "openpgp,piv" for a token
 * that carries both applications. The plugins are looked for once per
 * process, at the first token open.
 *
 * Stability. TK_DRIVER_API numbers this interface; each addition (a member
 * at the end of a struct below, a new function in a table) increases it,
 * nothing is ever removed or moved. Every struct that crosses the boundary
 * starts with its size as its creator was built: the reader uses only
 * members that size covers, and the host fills defaults for the rest. A
 * driver built for an API newer than the host's is refused. Provisioning
 * (key generation and import, certificate writing, PIN resets by the
 * security officer) will be added this way, as optional functions at the end
 * of tk_driver_t that a driver may leave NULL.
 *
 * What the host does not trust: everything a driver returns is checked
 * (identity strings, labels, lengths, certificates and public keys are
 * parsed by the host, key types and usages must agree with them, output
 * lengths must fit), and a plugin that returns nonsense is named in the log
 * and not used again in the process. A plugin runs inside the host's
 * process: a plugin that crashes takes the process with it, and one that
 * loops without calling the card stalls the token it was probing (its card
 * I/O through the host is bounded by deadlines; other readers go on). */
#ifndef TOKENKIT_DRIVER_H
#define TOKENKIT_DRIVER_H

#include <tokenkit/common.h>
#include <tokenkit/apdu.h>
#include <tokenkit/buf.h>
#include <tokenkit/card.h>
#include <tokenkit/err.h>
#include <tokenkit/log.h>
#include <tokenkit/tlv.h>
#include <tokenkit/token.h>

#define TK_DRIVER_API 4u

/* The token model a driver fills in load (opaque; through the host). */
typedef struct tk_drv_model tk_drv_model_t;
/* The public-object cache records of one card (opaque; through the host). */
typedef struct tk_cache tk_cache_t;

/* The token as a whole. Strings are NUL-terminated UTF-8 without control
 * characters. */
typedef struct tk_drv_token_desc {
	uint32_t size; /* sizeof(tk_drv_token_desc_t) as the driver was built */
	char label[33];
	char manufacturer[33];
	char model[17];
	char serial[17];
	uint32_t pin_min_len, pin_max_len; /* user PIN, bytes: 1 <= min <= max <= 255 */
} tk_drv_token_desc_t;

/* One key slot. The host copies everything; the driver keeps its buffers.
 * At least one of key_present and cert. */
typedef struct tk_drv_key_desc {
	uint32_t size;    /* sizeof(tk_drv_key_desc_t) as the driver was built */
	uint32_t key_ref; /* the driver's reference, unique on the token; key_op gets it back */
	uint8_t id[16];   /* CKA_ID of the key, 1..16 bytes */
	uint32_t id_len;
	char key_label[64];  /* private key label, e.g. "PIV AUTH key" */
	char pub_label[64];  /* public key label */
	char cert_label[64]; /* certificate label */
	const uint8_t *cert; /* X.509 certificate DER of the slot, or NULL */
	size_t cert_len;
	bool key_present;    /* the card holds a private key here */
	const uint8_t *spki; /* the key's own SubjectPublicKeyInfo DER, or NULL */
	size_t spki_len;
	/* The key's type and size (enum tk_key_type; RSA modulus bits, curve
	 * bits) when the card names them; TK_KEY_NONE to take them from spki or
	 * the certificate. Must agree with spki when both are given. */
	int key_type;
	unsigned key_bits;
	unsigned usage; /* TK_USAGE_*, within what the key type can do */
	/* The TK_OP_* the card performs with this key, as TK_OP_BIT(op); 0:
	 * the usual ones for the type (RSA: TK_OP_RSA_RAW; EC: TK_OP_ECDSA and
	 * TK_OP_ECDH as usage allows; Ed25519: TK_OP_EDDSA; X25519:
	 * TK_OP_ECDH). */
	unsigned ops;
	bool needs_login;         /* the card wants the user PIN before use */
	bool always_authenticate; /* ... right before every use */
	/* API 4. TK_DRV_CERT_* for cert (0 before API 4). */
	unsigned cert_flags;
} tk_drv_key_desc_t;

/* cert_flags. TK_DRV_CERT_UNPAIRED: cert is published on its own, under
 * this description's id, and never paired with a key, although it may
 * carry a key's SubjectPublicKeyInfo: a certificate about a key that is
 * not the key's own certificate (PIV attestation certificates: PKCS#11
 * clients pair by CKA_ID, and a browser would offer it as a client
 * certificate). Only without key_present; the id must be no key's. */
#define TK_DRV_CERT_UNPAIRED 0x1u

/* A key as key_op sees it (made by the host). */
typedef struct tk_drv_key {
	uint32_t size; /* sizeof(tk_drv_key_t) of the host */
	uint32_t key_ref;
	int key_type;
	unsigned key_bits;
	unsigned usage;
} tk_drv_key_t;

/* PIN state as the card reports it without spending a try (made by the
 * host, filled by the driver). */
typedef struct tk_drv_pin_status {
	uint32_t size;   /* sizeof(tk_drv_pin_status_t) of the host */
	int retries;     /* -1 unknown, else 0..255 */
	int max_retries; /* -1 unknown, else 0..255 */
	bool verified;   /* the card says the PIN is verified right now */
	bool locked;
} tk_drv_pin_status_t;

#define TK_DRV_LOAD_TRUST_CACHE 0x1u
/* API 4. The host loads again (flags 0) soon after this load, off its
 * caller's path: leave out what is not in cached and costs the card a
 * private-key operation or long seconds (PIV: a key's attestation), and do
 * not record it in fresh; the next load reads it. Drivers of older APIs
 * ignore it and read everything. */
#define TK_DRV_LOAD_DEFER_COSTLY 0x2u

typedef struct tk_driver {
	uint32_t api;     /* TK_DRIVER_API the driver was built with */
	uint32_t size;    /* sizeof(tk_driver_t) as the driver was built */
	const char *name; /* [a-z0-9_], 1..15 characters; a plugin's is its file's */
	/* Recognise the card and select the application. On success *state
	 * holds the driver's state (it borrows card) and identity the stable
	 * card identity, "NAME:..." in printable ASCII ("" when the card has
	 * none: no caching then). Errors: TK_ERR_NOT_SUPPORTED (not this
	 * driver's card), transport errors. */
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
	 * read from the card (but see TK_DRV_LOAD_DEFER_COSTLY). The caller
	 * revalidates later with flags 0. */
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
	/* Reset the user PIN with the security officer's secret (PIV: PUK;
	 * OpenPGP: the admin PIN). */
	int (*pin_unblock)(void *state, const uint8_t *puk, size_t puk_len, const uint8_t *new_pin,
	                   size_t new_len);
	/* One private-key operation (enum tk_key_op, one of the key's ops).
	 * *out_len <= out_cap. */
	int (*key_op)(void *state, const tk_drv_key_t *key, int op, const uint8_t *in,
	              size_t in_len, uint8_t *out, size_t out_cap, size_t *out_len);
	void (*free)(void *state);
	/* API 2 and later: optional functions, appended here. */
	/* API 2. Optional (NULL: none). Verify the PIN of user (TK_USER_USER,
	 * TK_USER_CONTEXT) typed on the reader's PIN pad: the driver builds the
	 * command template and the PIN format its card wants and hands them to
	 * the reader (built-in drivers: tk_card_pinpad; the host asks only when
	 * the reader has a pad). Errors as pin_verify, and TK_ERR_NOT_SUPPORTED
	 * (not for this user), TK_ERR_TIMEOUT (nobody typed), TK_ERR_CANCELLED
	 * (cancelled on the pad). */
	int (*pin_verify_pad)(void *state, int user, int *retries);
	/* API 3. Optional (NULL: none). Change the PIN of user (TK_USER_USER,
	 * TK_USER_SO) with the old and the new PIN typed on the reader's PIN
	 * pad (the reader asks for the new one twice when the template wants
	 * it confirmed); like pin_verify_pad, the driver builds the template
	 * and the host asks only when the reader's pad can modify. *retries
	 * gets the tries left of the old PIN when the card told them (else
	 * -1). Errors as pin_change, and TK_ERR_NOT_SUPPORTED, TK_ERR_TIMEOUT,
	 * TK_ERR_CANCELLED as pin_verify_pad. */
	int (*pin_change_pad)(void *state, int user, int *retries);
} tk_driver_t;

/* The host's services for drivers. Each member does what the public
 * function of the same name (tk_<member>) documents, in the host's own copy
 * of the core. Members past what size covers are not there. */
typedef struct tk_drv_host {
	uint32_t size; /* sizeof(tk_drv_host_t) of the host */
	uint32_t api;  /* TK_DRIVER_API of the host */

	/* log (tokenkit/log.h): a whole line, without a newline */
	bool (*log_enabled)(int level);
	void (*log)(int level, const char *msg);

	/* card session (tokenkit/card.h) */
	int (*card_apdu)(tk_card_t *c, const tk_apdu_t *apdu, uint8_t *resp, size_t resp_cap,
	                 size_t *resp_len, uint16_t *sw);
	int (*card_transmit)(tk_card_t *c, const uint8_t *cmd, size_t cmd_len, uint8_t *resp,
	                     size_t resp_cap, size_t *resp_len, int timeout_ms);
	int (*card_begin)(tk_card_t *c);
	int (*card_end)(tk_card_t *c);
	uint64_t (*card_generation)(const tk_card_t *c);
	const uint8_t *(*card_atr)(const tk_card_t *c, size_t *len);
	void (*card_caps)(const tk_card_t *c, tk_card_caps_t *caps);

	/* the token model: copy and check what the driver describes.
	 * Errors: TK_ERR_INVALID_ARG (a description that breaks a rule above;
	 * logged with the rule), TK_ERR_MALFORMED (a certificate or public
	 * key the host cannot parse), TK_ERR_EXISTS (key_ref or id taken),
	 * TK_ERR_TOO_LONG (too many keys), TK_ERR_NO_MEMORY. */
	int (*model_set_token)(tk_drv_model_t *m, const tk_drv_token_desc_t *d);
	int (*model_add_key)(tk_drv_model_t *m, const tk_drv_key_desc_t *d);

	/* public-object cache records: a 32-bit key chosen by the driver and
	 * bytes (public data only). get borrows until the next put. */
	int (*cache_get)(const tk_cache_t *c, uint32_t key, const uint8_t **data, size_t *len);
	int (*cache_put)(tk_cache_t *c, uint32_t key, const uint8_t *data, size_t len);

	/* keys: SubjectPublicKeyInfo DER (released with free()) from a
	 * certificate, or from raw public values: RSA a = modulus, b =
	 * exponent; EC a = the point (04 X Y), bits 256/384/521 choose the
	 * curve; Ed25519 and X25519 a = the 32-byte key. And the type and size
	 * of an SPKI. Errors: TK_ERR_MALFORMED, TK_ERR_NOT_SUPPORTED,
	 * TK_ERR_NO_MEMORY. */
	int (*x509_spki)(const uint8_t *cert, size_t cert_len, uint8_t **spki, size_t *spki_len,
	                 int *key_type, unsigned *key_bits);
	int (*spki_info)(const uint8_t *spki, size_t spki_len, int *key_type, unsigned *key_bits);
	int (*spki_build)(int key_type, unsigned bits, const uint8_t *a, size_t a_len,
	                  const uint8_t *b, size_t b_len, uint8_t **spki, size_t *spki_len);

	/* wire data (tokenkit/buf.h, tokenkit/tlv.h, tokenkit/apdu.h) */
	void (*buf_init)(tk_buf_t *b, const void *data, size_t len);
	size_t (*buf_left)(const tk_buf_t *b);
	int (*buf_get_u8)(tk_buf_t *b, uint8_t *v);
	int (*buf_get_u16be)(tk_buf_t *b, uint16_t *v);
	int (*buf_get_u32be)(tk_buf_t *b, uint32_t *v);
	int (*buf_get_bytes)(tk_buf_t *b, void *out, size_t n);
	int (*buf_get_ptr)(tk_buf_t *b, const uint8_t **p, size_t n);
	int (*buf_get_sub)(tk_buf_t *b, tk_buf_t *sub, size_t n);
	void (*wbuf_init)(tk_wbuf_t *w, void *data, size_t cap);
	int (*wbuf_put_u8)(tk_wbuf_t *w, uint8_t v);
	int (*wbuf_put_u16be)(tk_wbuf_t *w, uint16_t v);
	int (*wbuf_put_u32be)(tk_wbuf_t *w, uint32_t v);
	int (*wbuf_put_bytes)(tk_wbuf_t *w, const void *p, size_t n);
	int (*wbuf_error)(const tk_wbuf_t *w);
	int (*ber_get)(tk_buf_t *b, tk_tlv_t *t);
	int (*ber_find)(const uint8_t *p, size_t len, uint32_t tag, tk_tlv_t *t);
	size_t (*ber_hdr_len)(uint32_t tag, size_t len);
	int (*ber_put_hdr)(tk_wbuf_t *w, uint32_t tag, size_t len);
	int (*ber_put)(tk_wbuf_t *w, uint32_t tag, const void *v, size_t len);
	int (*apdu_encode)(const tk_apdu_t *a, bool extended, uint8_t *out, size_t cap,
	                   size_t *out_len);

	/* secrets and errors (tokenkit/mem.h, tokenkit/err.h, tokenkit/hex.h) */
	void (*wipe)(void *p, size_t n);
	void (*freezero)(void *p, size_t n);
	bool (*memeq_ct)(const void *a, const void *b, size_t n);
	const char *(*strerror)(int err);
	int (*err_from_sw)(uint16_t sw);
	char *(*hex_encode)(const uint8_t *p, size_t len, char sep, char *out);
	int (*err_from_pin_sw)(uint16_t sw, int *retries);
} tk_drv_host_t;

#endif
