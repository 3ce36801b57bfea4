/* tokenkit: tokens, objects and identities — the core token API.
 *
 * A driver (PIV first) turns the card in a tk_card_t into a tk_token_t: a
 * label, a serial, PIN state and objects (certificates, public keys, private
 * keys). An identity is a certificate plus the private key whose public key
 * matches its SubjectPublicKeyInfo; all objects of one identity share one id
 * (CKA_ID). The PKCS#11 module and the tool are both built on this API and
 * never talk to a driver or a reader directly.
 *
 * Thread safety: every function may be called from any thread; operations
 * on one token are serialised by the token (card I/O is per reader anyway),
 * operations on different tokens run in parallel. */
#ifndef TOKENKIT_TOKEN_H
#define TOKENKIT_TOKEN_H

#include <tokenkit/common.h>
#include <tokenkit/card.h>
#include <tokenkit/registry.h>

typedef struct tk_token tk_token_t;

enum tk_obj_class {
	TK_OBJ_CERT = 1,
	TK_OBJ_PUBKEY = 2,
	TK_OBJ_PRIVKEY = 3,
	TK_OBJ_DATA = 4,
};

enum tk_key_type {
	TK_KEY_NONE = 0,
	TK_KEY_RSA = 1,
	TK_KEY_EC = 2,      /* NIST P-256, P-384, P-521 (key_bits says which) */
	TK_KEY_ED25519 = 3, /* EdDSA over edwards25519 (RFC 8032), key_bits 255 */
	TK_KEY_X25519 = 4,  /* ECDH over curve25519 (RFC 7748), key_bits 255 */
};

/* Longest object id (CKA_ID): 20-byte SHA-1 ids are common, and the
 * registry's items take up to 64 (TK_REG_ID_MAX). It was 16: tk_object_t's
 * size and layout changed with it, so a program built against the older
 * header must be rebuilt (libtokenkit is still at SOVERSION 0). */
#define TK_OBJECT_ID_MAX 64

/* Key usage flags (private keys). */
#define TK_USAGE_SIGN 0x01u
#define TK_USAGE_DECRYPT 0x02u
#define TK_USAGE_DERIVE 0x04u

typedef struct tk_object {
	uint32_t handle;              /* stable for the token's life, > 0 */
	int cls;                      /* enum tk_obj_class */
	uint8_t id[TK_OBJECT_ID_MAX]; /* CKA_ID: PIV 9A→01, 9C→02, 9D→03, 9E→04, 82..95→05.. */
	size_t id_len;
	char label[64];     /* NUL-terminated UTF-8 */
	int key_type;       /* enum tk_key_type (keys and certificates) */
	unsigned key_bits;  /* RSA modulus bits, EC field bits, 255 for Ed25519 / X25519 */
	const uint8_t *der; /* certificate DER (CERT), SubjectPublicKeyInfo DER (keys; may be NULL
	                       for a private key whose public key is unknown) */
	size_t der_len;
	unsigned usage;           /* TK_USAGE_* (private keys) */
	bool always_authenticate; /* PIN needed right before each use (PIV 9C) */
	bool has_identity;        /* certificate and private key are paired */
	uint32_t key_ref;         /* driver key reference (PIV key slot 0x9A...) */
} tk_object_t;

enum tk_user {
	TK_USER_SO = 0,      /* PIV: PUK */
	TK_USER_USER = 1,    /* PIV: PIN (80, or global PIN 00 where the card says so) */
	TK_USER_CONTEXT = 2, /* re-authentication for an always-authenticate key */
};

typedef struct tk_token_info {
	char driver[16]; /* "piv" */
	char label[33];
	char manufacturer[33];
	char model[17];
	char serial[17];     /* printable serial (PIV: from CHUID GUID / card serial) */
	char identity[65];   /* stable card identity for caches and slot matching */
	int pin_retries;     /* -1 unknown */
	int pin_max_retries; /* -1 unknown */
	bool pin_locked;
	int puk_retries; /* -1 unknown */
	bool puk_locked;
	size_t pin_min_len, pin_max_len;
	bool logged_in; /* TK_USER_USER login valid for the current card generation */
	bool so_logged_in;
	/* The user PIN can be typed on the reader's PIN pad
	 * (tk_token_login_pinpad): the reader has one and the driver knows
	 * the card's PIN format. Added in 0.1. */
	bool protected_auth_path;
} tk_token_info_t;

typedef struct tk_token_opts {
	const char
	        *cache_dir; /* NULL: $XDG_CACHE_HOME/tokenkit or ~/.cache/tokenkit; "" disables */
	bool refresh_pin_status; /* query PIN and PUK retry counters while opening (PIV: an
	                          * empty VERIFY, plus 00 F7 00 81 on Yubico cards). Costs
	                          * APDUs on the start-up path; prefer tk_token_refresh_pin
	                          * when the counters are wanted */
	bool defer_revalidation; /* take a cache entry on trust once the card proved its
	                          * identity; the caller runs tk_token_revalidate later,
	                          * which also reads what costs the card seconds and is
	                          * not cached yet (PIV attestations) */
} tk_token_opts_t;
/* Defaults: cache_dir NULL (the user's cache directory), refresh_pin_status
 * false, defer_revalidation false (the full check before open returns). */
TK_EXPORT void tk_token_opts_init(tk_token_opts_t *o);

/* Probe the card with every driver and build a token. Reads the objects
 * (from the public-object cache when it is still valid for this card).
 *
 * Cost on the card (PIV). Every open selects the applet and reads the
 * CHUID, which proves the card's identity (GUID; the Yubico serial, 00 F8,
 * when the CHUID has no GUID) and names the cache entry:
 *  - cold (no cache entry, or a corrupt or foreign one: ignored with a
 *    warning): discovery object, key history, the certificate object of
 *    9A 9C 9D 9E and of the retired slots the key history announces (none
 *    without a key history), the metadata of each of those key slots on
 *    cards that have it, and the serial (00 F8) once. One GET DATA per
 *    object where the reader takes extended length.
 *  - warm, defer_revalidation false: one cheap probe per cached object
 *    (key history, each certificate: the first bytes only); an object that
 *    changed is read again and the cache entry rewritten.
 *  - warm, defer_revalidation true: nothing more (2 APDUs in all) when the
 *    CHUID equals the cached one; the cached objects are published as they
 *    are and may be stale until tk_token_revalidate. A CHUID that differs
 *    makes the open check every object as above.
 * PIN counters are not read unless refresh_pin_status asks for it.
 * Errors: TK_ERR_NOT_SUPPORTED (no driver recognises the card), transport
 * errors from the card. */
TK_EXPORT int tk_token_open(tk_card_t *card, const tk_token_opts_t *opts, tk_token_t **out);

/* Check the token's objects against the card with the cheap probes (PIV:
 * key history and the first bytes of each certificate object; about one
 * APDU per key slot) and re-read what changed. Meant to run in the
 * background right after an open with defer_revalidation; safe at any time
 * and from any thread (it holds the token's lock for its card I/O).
 * *changed is true when the object list changed. Then: the cache entry is
 * rewritten; objects that did not change keep their handles (and their
 * contents); a changed or new object gets a handle never used before on
 * this token; a removed object's handle no longer resolves
 * (tk_token_object() returns NULL; tk_token_key_op with it fails with
 * TK_ERR_INVALID_ARG). Arrays and object pointers returned earlier stay
 * readable until tk_token_free but describe the old list: call
 * tk_token_objects again. When nothing changed, nothing moves. Not seen by
 * the probes (PIV): a key generated or replaced in a slot whose certificate
 * object stayed the same (its metadata is asked again only with a changed
 * certificate object).
 * Errors: TK_ERR_INVALID_ARG, transport errors (the token is left as it
 * was), TK_ERR_NO_MEMORY. */
TK_EXPORT int tk_token_revalidate(tk_token_t *t, bool *changed);
TK_EXPORT void tk_token_free(tk_token_t **tp);

/* Fills info; pin counters are those last seen: -1 until tk_token_refresh_pin
 * or a PIN command told them (a refused VERIFY's 63Cx gives the tries left;
 * a successful one resets them to the maximum where that is known). */
TK_EXPORT int tk_token_info(tk_token_t *t, tk_token_info_t *info);
/* Ask the card for the PIN and PUK retry counters without spending a try. */
TK_EXPORT int tk_token_refresh_pin(tk_token_t *t);
/* The objects; the array stays valid until tk_token_free (after a
 * tk_token_revalidate that reported a change it describes the old list). */
TK_EXPORT int tk_token_objects(tk_token_t *t, const tk_object_t **objs, size_t *count);
TK_EXPORT const tk_object_t *tk_token_object(tk_token_t *t, uint32_t handle);

/* Errors: TK_ERR_PIN_INCORRECT, TK_ERR_PIN_LOCKED, TK_ERR_INVALID_ARG (bad
 * PIN length), transport errors. Never retried automatically. A user PIN
 * the card refuses also ends the user's login (the card forgets it).
 * TK_USER_CONTEXT verifies the user PIN again (to check a PIN meant for
 * one operation of an always_authenticate key); it allows nothing by
 * itself: that operation takes its PIN with it (tk_token_key_op_auth).
 * TK_USER_SO (PIV): PIV has no
 * VERIFY for the PUK; the driver checks it with CHANGE REFERENCE DATA from
 * the PUK to itself, so a wrong PUK costs a try, like any login. A login
 * lasts while tk_card_generation() stays the same (a card reset ends it).
 * tk_token_logout also asks the card to forget the PIN (PIV: VERIFY with
 * P1 = FF) and always succeeds locally. */
TK_EXPORT int tk_token_login(tk_token_t *t, int user, const uint8_t *pin, size_t pin_len);
/* tk_token_login with the PIN typed on the reader's PIN pad
 * (tk_token_info_t.protected_auth_path): it never passes through the host.
 * Waits while the user types (the pad's own timeout, 30 s). user:
 * TK_USER_USER or TK_USER_CONTEXT. Errors as tk_token_login, and
 * TK_ERR_NOT_SUPPORTED (no PIN pad for this token, or not for this user),
 * TK_ERR_TIMEOUT (nobody typed), TK_ERR_CANCELLED (cancelled on the pad). */
TK_EXPORT int tk_token_login_pinpad(tk_token_t *t, int user);
TK_EXPORT int tk_token_logout(tk_token_t *t);
TK_EXPORT int tk_token_change_pin(tk_token_t *t, int user, const uint8_t *old_pin, size_t old_len,
                                  const uint8_t *new_pin, size_t new_len);
/* tk_token_change_pin with both PINs typed on the reader's PIN pad
 * (the reader asks for the old PIN, then the new one twice): they never
 * pass through the host. Waits while the user types (the pad's own
 * timeout, 30 s per entry). user: TK_USER_USER or TK_USER_SO (PIV: the
 * PUK). Errors: TK_ERR_PIN_INCORRECT (the old PIN is wrong: a try is
 * spent, tk_token_info tells how many are left), TK_ERR_PIN_LOCKED,
 * TK_ERR_INVALID_ARG, TK_ERR_NOT_SUPPORTED (no PIN pad that can change
 * PINs for this token, or not for this user), TK_ERR_TIMEOUT (nobody
 * typed), TK_ERR_CANCELLED (cancelled on the pad, or the two entries of
 * the new PIN differed on a reader that ends the entry for that),
 * transport errors. Never retried automatically. A login stays as it
 * was. */
TK_EXPORT int tk_token_change_pin_pad(tk_token_t *t, int user);
/* Reset the user PIN with the PUK (PKCS#11 C_InitPIN after SO login). */
TK_EXPORT int tk_token_unblock_pin(tk_token_t *t, const uint8_t *puk, size_t puk_len,
                                   const uint8_t *new_pin, size_t new_len);

/* Private-key operations on the card. Which ones a key offers:
 * tk_token_key_ops().
 * TK_OP_RSA_RAW: in is a full modulus-length block (already padded),
 *   out gets the raw RSA private operation result (modulus length).
 * TK_OP_ECDSA: in is a hash (truncated/padded by the driver to the field
 *   size), out gets r||s (2 × field bytes).
 * TK_OP_ECDH: in is the peer public point (EC: uncompressed 04||X||Y;
 *   X25519: the 32-byte u-coordinate), out gets the shared secret (EC: the
 *   X coordinate; X25519: 32 bytes).
 * TK_OP_EDDSA: in is the message (PureEdDSA, at most 4096 bytes), out gets
 *   the 64-byte signature R||S.
 * TK_OP_RSA_PKCS1_SIGN: in is what PKCS#1 v1.5 signs (a DigestInfo, or any
 *   data up to the modulus length - 11); the card pads it (block type 1)
 *   and out gets the signature (modulus length). For cards that do not
 *   offer the raw operation (OpenPGP).
 * TK_OP_RSA_PKCS1_DECRYPT: in is the ciphertext (modulus length); the card
 *   removes the PKCS#1 v1.5 padding and out gets the plaintext.
 * Errors: TK_ERR_SECURITY_STATUS (not logged in, or the card says its login
 * is gone: someone logged out, reset the card or selected another
 * application; an always_authenticate key without its operation's PIN.
 * Decided without an APDU where the token knows), TK_ERR_INVALID_ARG
 * (operation not in the key's usage, wrong input length),
 * TK_ERR_BUFFER_TOO_SMALL, transport errors. On a logged-in token whose
 * card was not reset the operation is one command exchange (PIV: GENERAL
 * AUTHENTICATE, plus chaining). tk_token_key_op never uses a PIN: an
 * always_authenticate key answers TK_ERR_SECURITY_STATUS there. */
enum tk_key_op {
	TK_OP_RSA_RAW = 1,
	TK_OP_ECDSA = 2,
	TK_OP_ECDH = 3,
	TK_OP_EDDSA = 4,
	TK_OP_RSA_PKCS1_SIGN = 5,
	TK_OP_RSA_PKCS1_DECRYPT = 6,
};
#define TK_OP_BIT(op) (1u << (op))
/* The operations the card performs with a private key: a set of
 * TK_OP_BIT(TK_OP_*); 0 for anything that is not a current private key of
 * t. */
TK_EXPORT unsigned tk_token_key_ops(tk_token_t *t, const tk_object_t *key);
TK_EXPORT int tk_token_key_op(tk_token_t *t, const tk_object_t *key, int op, const uint8_t *in,
                              size_t in_len, uint8_t *out, size_t out_cap, size_t *out_len);

/* The PINs a key operation may use (tk_token_key_op_auth). Both stay the
 * caller's; the token keeps no copy. */
typedef struct tk_key_auth {
	/* The PIN given for this one operation of an always_authenticate key
	 * (PKCS#11 C_Login with CKU_CONTEXT_SPECIFIC): verified right before
	 * the operation, in the same card transaction, so that no other
	 * session or program can use it or come in between. Ignored for
	 * other keys. */
	const uint8_t *op_pin;
	size_t op_pin_len;
	/* A user PIN the caller keeps while its user is logged in (opt-in):
	 * for a key that is not always_authenticate, verified again, in the
	 * operation's card transaction, when the token is not logged in any
	 * more or the card says its login is gone. Sent only while the card's
	 * counter shows no failed try (the maximum, or at least 3 where the
	 * card does not tell it; an empty VERIFY asks, no try spent), so that
	 * a PIN changed elsewhere costs at most one try. Never used for an
	 * always_authenticate key. NULL: none. */
	const uint8_t *user_pin;
	size_t user_pin_len;
} tk_key_auth_t;

/* tk_token_key_op with PINs (auth may be NULL). Errors as tk_token_key_op,
 * and TK_ERR_PIN_INCORRECT / TK_ERR_PIN_LOCKED when the card refused a PIN
 * of auth (its login is gone with it: the caller must not send that PIN
 * again). Costs one VERIFY more than tk_token_key_op where a PIN is used
 * (a kept PIN: one empty VERIFY more). */
TK_EXPORT int tk_token_key_op_auth(tk_token_t *t, const tk_object_t *key, int op,
                                   const tk_key_auth_t *auth, const uint8_t *in, size_t in_len,
                                   uint8_t *out, size_t out_cap, size_t *out_len);

/* Record a card token in the registry (include/tokenkit/registry.h): a
 * registration flagged TK_REG_FLAG_CARD, provider the driver ("piv"),
 * instance the card's identity (tk_token_info_t.identity), the token's
 * label, one item per certificate and private key (public key, type, size,
 * usages; the driver's key reference as the handle). Written only when the
 * store's record differs (compare-and-swap; a concurrent writer of the same
 * card is retried), so a known card costs one read. The PKCS#11 module and
 * the tool call this for every card token they open. store NULL: the
 * user's store, unless TOKENKIT_REGISTER_CARDS is "0" (then nothing, TK_OK).
 * *written (may be NULL) says whether a record was written. Errors:
 * TK_ERR_NOT_SUPPORTED (a registered token, a card without identity; the
 * user's store in a set-uid process), TK_ERR_CONFLICT (a registration of
 * that name that is not a card's: left alone, with a warning; or other
 * writers kept winning), those of tk_registry_open, tk_registry_get and
 * tk_registry_put. */
TK_EXPORT int tk_token_register(tk_token_t *t, tk_registry_t *store, bool *written);

/* True while the token's card is still the card in the reader. */
TK_EXPORT bool tk_token_present(tk_token_t *t);
TK_EXPORT tk_card_t *tk_token_card(tk_token_t *t);

#endif
