/* tokenkit: the software token (drivers/soft) as the PKCS#11 module and the
 * library's own functions see it (private; the tool uses
 * <tokenkit/soft.h>).
 *
 * A software token is a registration of the built-in provider "soft" in the
 * user's registry store. Its whole state is the registration's opaque
 * configuration (drivers/soft/soft_rec.c has the format): PIN material and
 * counters, and every token object as a list of PKCS#11 attributes with its
 * secret part (a private key's PKCS#8, a secret key's or private data
 * object's value) sealed with AES-256-GCM under the token's data key. The
 * registration's items (certificates, and key references whose provider
 * handle is the key object's uid) are a projection of those objects, for
 * everyone who reads registrations without knowing the provider.
 *
 * Why the registration and not a file of our own beside the store: one
 * record is one atomic write, so a PKCS#12 import (key, certificate and
 * chain), a PIN change and a wrong-PIN count each land whole or not at all;
 * the registry's compare-and-swap makes two processes writing the same
 * token take turns instead of losing each other's objects (the loser reads
 * again and re-applies its change); and every module that watches the
 * store hears of every change through the registry's events with no
 * second channel to keep in step. The price: a change rewrites the whole
 * record (fsync included), and a token holds at most TK_REG_CONFIG_MAX
 * bytes of objects (about thirty RSA-4096 identities with chains).
 *
 * PINs (soft_pin.c): the token's data key (DEK, 32 random bytes) is what
 * the PINs protect: wrapped (AES-256-GCM) under a key derived from the user
 * PIN with scrypt, and again under one from the SO PIN; the parameters
 * (N, r, p, salt) are stored with each wrap, the PIN never. A PIN change
 * rewrites one small wrap, never the objects. The wrong-PIN counters are in
 * the same record: a login first writes "one more failed try" (durably,
 * before scrypt even starts), then checks, then writes the counter back to
 * zero on success; killing the process in between leaves the try counted.
 * At the configured number of failed tries the PIN is locked; the SO PIN
 * unlocks the user PIN (C_InitPIN, `tokenkit soft init-pin`).
 *
 * While the user is logged in the DEK is in secret memory (core/secmem.h)
 * and every private key is an OpenSSL key (EVP_PKEY, decrypted from its
 * PKCS#8 in secret memory, OpenSSL keeping its own copy, which it clears
 * when the key is freed); logout frees all of them. Key operations then
 * touch no file, no record and no lock of the store: the module holds a
 * reference to the EVP_PKEY. */
#ifndef TK_SOFT_H
#define TK_SOFT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <pkcs11-helper-1.0/pkcs11.h>

#include <openssl/evp.h>

#include <tokenkit/registry.h>
#include <tokenkit/soft.h>
#include <tokenkit/token.h>

/* PKCS#11 3.0 names the packaged header does not carry. */
#ifndef CKA_UNIQUE_ID
#define CKA_UNIQUE_ID 0x4UL
#endif
#ifndef CKA_NAME_HASH_ALGORITHM
#define CKA_NAME_HASH_ALGORITHM 0x8cUL
#endif
#ifndef CKA_PUBLIC_KEY_INFO
#define CKA_PUBLIC_KEY_INFO 0x129UL
#endif
#ifndef CKA_COPYABLE
#define CKA_COPYABLE 0x171UL
#endif
#ifndef CKA_DESTROYABLE
#define CKA_DESTROYABLE 0x172UL
#endif
#ifndef CKA_DERIVE_TEMPLATE
#define CKA_DERIVE_TEMPLATE (CKF_ARRAY_ATTRIBUTE | 0x213UL)
#endif

#define TK_SOFT_PROVIDER "soft"
#define TK_SOFT_UID_LEN 16
#define TK_SOFT_OBJECTS_MAX 256
#define TK_SOFT_ATTR_MAX (64u * 1024u) /* one attribute value */

/* ---- attribute lists ---------------------------------------------------------- */

/* One attribute. CK_ULONG values are kept as the host's CK_ULONG (the
 * record stores them as 64-bit big-endian). */
typedef struct tk_attr {
	CK_ATTRIBUTE_TYPE type;
	uint8_t *val; /* malloc'd; NULL when len is 0 */
	size_t len;
} tk_attr_t;

/* A set of attributes, at most one per type, sorted by type. */
typedef struct tk_attrs {
	tk_attr_t *a;
	size_t n;
} tk_attrs_t;

void tk_attrs_clear(tk_attrs_t *l); /* values wiped */
const tk_attr_t *tk_attrs_get(const tk_attrs_t *l, CK_ATTRIBUTE_TYPE t);
/* Set (add or replace). Errors: TK_ERR_NO_MEMORY. */
int tk_attrs_set(tk_attrs_t *l, CK_ATTRIBUTE_TYPE t, const void *v, size_t len);
int tk_attrs_set_bool(tk_attrs_t *l, CK_ATTRIBUTE_TYPE t, bool v);
int tk_attrs_set_ulong(tk_attrs_t *l, CK_ATTRIBUTE_TYPE t, CK_ULONG v);
void tk_attrs_del(tk_attrs_t *l, CK_ATTRIBUTE_TYPE t);
/* A CK_BBOOL attribute's value (false when absent or malformed). */
bool tk_attrs_bool(const tk_attrs_t *l, CK_ATTRIBUTE_TYPE t);
/* A CK_ULONG attribute's value; false when absent or malformed. */
bool tk_attrs_ulong(const tk_attrs_t *l, CK_ATTRIBUTE_TYPE t, CK_ULONG *v);
/* Errors: TK_ERR_NO_MEMORY (dst cleared). */
int tk_attrs_dup(const tk_attrs_t *src, tk_attrs_t *dst);
/* Same types and values. */
bool tk_attrs_equal(const tk_attrs_t *a, const tk_attrs_t *b);

/* ---- the object rules (drivers/soft/soft_attrs.c) ----------------------------- *
 *
 * PKCS#11 3.0 section 4's tables for the objects a software token holds:
 * data objects, X.509 certificates, RSA, EC (P-256/384/521) and Ed25519
 * public and private keys, AES and generic secret keys. For each class and
 * key type, which attributes exist, which must or must not be given by
 * each creating function, which are sensitive (footnote 7), which may be
 * changed and how (footnotes 8, 10, 11, 12), and the token's defaults.
 *
 * Answers (as tk_err, converted to CKR_* by the module): an attribute that
 * does not belong to the object's class and key type, or that this token
 * does not support (CKA_WRAP_TEMPLATE and the other attribute arrays;
 * vendor attributes): TK_ERR_ATTR_TYPE_INVALID, never ignored. A value of
 * the wrong size or form: TK_ERR_ATTR_VALUE_INVALID. An attribute given
 * that the function must not be given (footnotes 2, 4, 6), or a change to
 * one that cannot change: TK_ERR_ATTR_READ_ONLY. Missing what the function
 * needs (footnotes 1, 3, 5): TK_ERR_TEMPLATE_INCOMPLETE. The same
 * attribute twice with different values, a class or key type other than
 * the function's: TK_ERR_TEMPLATE_INCONSISTENT. */

enum tk_obj_how {
	TK_OBJ_CREATE = 1, /* C_CreateObject */
	TK_OBJ_GENERATE,   /* C_GenerateKey, C_GenerateKeyPair */
	TK_OBJ_UNWRAP,     /* C_UnwrapKey */
	TK_OBJ_DERIVE,     /* C_DeriveKey */
};

/* Flags of the caller's login, for CKA_TRUSTED (only the SO sets it). */
#define TK_OBJ_SO 0x1u

/* The attributes of a new object: tpl checked and taken, fixed (what the
 * function contributes: CKA_CLASS and CKA_KEY_TYPE of a generated key,
 * CKA_VALUE_LEN of a derived secret ...; it wins over the template only
 * where the template agrees: else TK_ERR_TEMPLATE_INCONSISTENT) added,
 * defaults filled in, and the attributes the token derives set: CKA_LOCAL,
 * CKA_KEY_GEN_MECHANISM (mech, or CK_UNAVAILABLE_INFORMATION),
 * CKA_ALWAYS_SENSITIVE and CKA_NEVER_EXTRACTABLE (from CKA_SENSITIVE and
 * CKA_EXTRACTABLE for generated keys, false for created and unwrapped
 * ones, whose value was outside the token; a derived key's are the
 * caller's to set). The key material (RSA
 * modulus ...) is the caller's to check and complete (soft_key.c).
 * Errors: see above; TK_ERR_NO_MEMORY. */
int tk_obj_template(int how, const CK_ATTRIBUTE *tpl, CK_ULONG n, const tk_attrs_t *fixed,
                    CK_MECHANISM_TYPE mech, unsigned flags, tk_attrs_t *out);
/* C_CopyObject: a copy of src with the template's changes (only
 * attributes that may change, CKA_TOKEN, CKA_PRIVATE and CKA_MODIFIABLE
 * besides). Errors: TK_ERR_ACTION_PROHIBITED (CKA_COPYABLE false), see
 * above. */
int tk_obj_copy(const tk_attrs_t *src, const CK_ATTRIBUTE *tpl, CK_ULONG n, unsigned flags,
                tk_attrs_t *out);
/* C_SetAttributeValue: cur with the template's changes. Errors:
 * TK_ERR_ACTION_PROHIBITED (CKA_MODIFIABLE false), see above. */
int tk_obj_set(const tk_attrs_t *cur, const CK_ATTRIBUTE *tpl, CK_ULONG n, unsigned flags,
               tk_attrs_t *out);

enum tk_obj_attr_kind {
	TK_OBJ_ATTR_NONE = 0, /* not an attribute of this object */
	TK_OBJ_ATTR_PLAIN,    /* stored with the object */
	TK_OBJ_ATTR_SECRET,   /* footnote 7: part of the key's secret, stored sealed;
	                       * revealed only when tk_obj_revealable */
	TK_OBJ_ATTR_DERIVED,  /* read-only extras clients read from private keys
	                       * (CKA_MODULUS_BITS, CKA_EC_POINT): stored */
};
/* What attribute t is for an object with these attributes (its class and
 * key type). */
int tk_obj_attr_kind(const tk_attrs_t *obj, CK_ATTRIBUTE_TYPE t);
/* CKA_SENSITIVE false and CKA_EXTRACTABLE true (footnote 7). */
bool tk_obj_revealable(const tk_attrs_t *obj);
/* The object's class, key type (CK_UNAVAILABLE_INFORMATION when none). */
CK_OBJECT_CLASS tk_obj_class(const tk_attrs_t *obj);
CK_KEY_TYPE tk_obj_key_type(const tk_attrs_t *obj);
/* The form of an attribute's value: the record stores CK_ULONG values
 * (one, or an array) as 8 bytes big-endian each. */
enum tk_obj_form { TK_OBJ_FORM_BYTES = 0, TK_OBJ_FORM_ULONG, TK_OBJ_FORM_ULONGS };
int tk_obj_attr_form(CK_ATTRIBUTE_TYPE t);

/* ---- key material (drivers/soft/soft_key.c) --------------------------------------- */

/* The token model's key type (enum tk_key_type) of a CKK_* key type, or
 * TK_KEY_NONE. */
int tk_soft_tk_key_type(CK_KEY_TYPE kt);
/* The key type (CKK_*) of an OpenSSL key, or CK_UNAVAILABLE_INFORMATION. */
CK_KEY_TYPE tk_soft_pkey_type(const EVP_PKEY *pk);
/* Set the public attributes of pk on l: CKA_KEY_TYPE, then RSA
 * CKA_MODULUS, CKA_PUBLIC_EXPONENT, CKA_MODULUS_BITS (public key; on a
 * private key as a derived extra), or EC / Edwards CKA_EC_PARAMS and
 * CKA_EC_POINT (a DER OCTET STRING: on a private key, a derived extra),
 * and CKA_PUBLIC_KEY_INFO. Errors: TK_ERR_NOT_SUPPORTED (another kind of
 * key, another curve), TK_ERR_CRYPTO, TK_ERR_NO_MEMORY. */
int tk_soft_key_attrs(EVP_PKEY *pk, bool priv, tk_attrs_t *l);
/* The key an object's attributes hold (C_CreateObject of a key: its
 * components, checked against each other). priv: a private key from its
 * secret components (RSA: all of the CRT form). Errors:
 * TK_ERR_TEMPLATE_INCOMPLETE, TK_ERR_ATTR_VALUE_INVALID (components that
 * do not make a key, a curve not supported), TK_ERR_NO_MEMORY. */
int tk_soft_key_from_attrs(const tk_attrs_t *l, bool priv, EVP_PKEY **out);
/* One secret component (TK_OBJ_ATTR_SECRET) of a private key, malloc'd
 * (free with tk_freezero). Errors: TK_ERR_NOT_FOUND, TK_ERR_CRYPTO. */
int tk_soft_key_secret_attr(EVP_PKEY *pk, CK_ATTRIBUTE_TYPE t, uint8_t **val, size_t *len);
/* PKCS#8 PrivateKeyInfo of pk in secret memory (tk_secmem_free), and the
 * key from one. Errors: TK_ERR_CRYPTO, TK_ERR_MALFORMED, TK_ERR_NO_MEMORY. */
int tk_soft_key_to_pkcs8(EVP_PKEY *pk, void **der, size_t *len);
int tk_soft_key_from_pkcs8(const uint8_t *der, size_t len, EVP_PKEY **out);
/* A new key pair (C_GenerateKeyPair): RSA of bits bits (2048 to 4096)
 * with public exponent e (big-endian; NULL: 65537), or an EC or Edwards key
 * on the curve CKA_EC_PARAMS params names (P-256, P-384, P-521, Ed25519).
 * Errors: TK_ERR_ATTR_VALUE_INVALID (a size, exponent or curve this token
 * does not hold), TK_ERR_CRYPTO, TK_ERR_NO_MEMORY. */
int tk_soft_key_generate(CK_KEY_TYPE kt, CK_ULONG bits, const uint8_t *e, size_t e_len,
                         const uint8_t *params, size_t params_len, EVP_PKEY **out);
/* One private-key operation (enum tk_key_op, as token.h describes them)
 * with pk. Errors: TK_ERR_INVALID_ARG (an operation the key has not, a
 * point not on the curve), TK_ERR_BUFFER_TOO_SMALL, TK_ERR_CRYPTO. */
int tk_soft_pkey_op(EVP_PKEY *pk, int op, const uint8_t *in, size_t in_len, uint8_t *out,
                    size_t out_cap, size_t *out_len);
/* An ECDSA-Sig-Value (DER) as r || s, each field bytes. Errors:
 * TK_ERR_CRYPTO. */
int tk_soft_ecdsa_to_rs(const uint8_t *der, size_t der_len, size_t field, uint8_t *out);

/* ---- a new object's material (drivers/soft/soft_obj.c) ------------------------------ *
 *
 * After tk_obj_template. */

/* C_CreateObject: check what the attributes hold and take it out where it
 * is secret. A certificate: its value an X.509 certificate (not one by
 * URL), CKA_CHECK_VALUE, CKA_PUBLIC_KEY_INFO and the validity dates set
 * from it. A public or private key: *key the OpenSSL key its components
 * make, the secret ones removed from l, its public attributes set
 * (tk_soft_key_describe). A secret key: *secret its value (secret memory),
 * removed from l (tk_soft_secret_attrs). A data object: as it is. Errors:
 * TK_ERR_ATTR_VALUE_INVALID, TK_ERR_TEMPLATE_INCOMPLETE,
 * TK_ERR_TEMPLATE_INCONSISTENT (a given CKA_PUBLIC_KEY_INFO,
 * CKA_VALUE_LEN ... that is not the object's), TK_ERR_NO_MEMORY. */
int tk_soft_obj_material(tk_attrs_t *l, EVP_PKEY **key, void **secret, size_t *secret_len);
/* The public attributes of key pk on an object l of its class: the key's
 * values in their one encoding (CKA_EC_PARAMS kept when l has another
 * spelling of the same curve), CKA_PUBLIC_KEY_INFO (one given must be
 * this one), a private key's extras. Errors: TK_ERR_TEMPLATE_INCONSISTENT
 * (CKA_KEY_TYPE not pk's), those of tk_soft_key_attrs. */
int tk_soft_key_describe(EVP_PKEY *pk, bool priv, tk_attrs_t *l);
/* CKA_VALUE_LEN and CKA_CHECK_VALUE of a secret key of type kt with this
 * value (AES: 16, 24 or 32 bytes). Errors: TK_ERR_ATTR_VALUE_INVALID (a
 * length the type does not have), TK_ERR_TEMPLATE_INCONSISTENT (another
 * CKA_VALUE_LEN given). */
int tk_soft_secret_attrs(CK_KEY_TYPE kt, const uint8_t *val, size_t len, tk_attrs_t *l);

/* ---- the token's store (drivers/soft/soft_store.c) --------------------------------- */

/* One token object as stored: its uid (random, for the token's life), its
 * attributes (no TK_OBJ_ATTR_SECRET ones: those are in the sealed part),
 * and whether it has a sealed part. */
typedef struct tk_soft_obj {
	uint8_t uid[TK_SOFT_UID_LEN];
	tk_attrs_t attrs;
	bool sealed;
} tk_soft_obj_t;

/* What the token's objects were at one generation of its registration:
 * immutable, shared, counted. */
typedef struct tk_soft_snap {
	uint64_t gen;
	tk_soft_obj_t *objs;
	size_t n;
	int refs; /* atomic */
} tk_soft_snap_t;

/* The software token behind t, or NULL (another provider, a card). */
tk_soft_t *tk_soft_of(tk_token_t *t);
/* The current objects (a reference: tk_soft_snap_put). */
tk_soft_snap_t *tk_soft_snapshot(tk_soft_t *s);
void tk_soft_snap_put(tk_soft_snap_t **sp);
/* True while the user is logged in (the DEK is held). */
bool tk_soft_user_logged_in(tk_soft_t *s);

/* An object's sealed part, while the user is logged in: a private key as
 * an OpenSSL key (a reference: EVP_PKEY_free), a secret value in secret
 * memory (tk_secmem_free). Errors: TK_ERR_LOGIN_REQUIRED, TK_ERR_NOT_FOUND,
 * TK_ERR_NOT_SUPPORTED (no sealed part of that kind), TK_ERR_NO_MEMORY. */
int tk_soft_object_key(tk_soft_t *s, const uint8_t uid[TK_SOFT_UID_LEN], EVP_PKEY **out);
int tk_soft_object_secret(tk_soft_t *s, const uint8_t uid[TK_SOFT_UID_LEN], void **val,
                          size_t *len);

/* One change of a write: add an object (uid filled in), replace an
 * object's attributes (its sealed part stays), or remove one. */
enum tk_soft_change_op { TK_SOFT_ADD = 1, TK_SOFT_SET_ATTRS, TK_SOFT_REMOVE };
typedef struct tk_soft_change {
	int op;
	uint8_t uid[TK_SOFT_UID_LEN]; /* SET_ATTRS, REMOVE: which; ADD: the new uid */
	const tk_attrs_t *attrs;      /* ADD, SET_ATTRS: no TK_OBJ_ATTR_SECRET ones */
	EVP_PKEY *key;                /* ADD: a private key's secret (or NULL) */
	const uint8_t *secret;        /* ADD: a secret value to seal (or NULL) */
	size_t secret_len;
} tk_soft_change_t;

/* Apply the *n changes ch in one atomic write of the registration
 * (compare-and-swap on the generation it read; on a conflict the record is
 * read again and the changes applied anew, at most 16 times). check (may
 * be NULL) is called with the objects as they are right before each
 * attempt: it may refuse the write (its error is returned) or choose the
 * changes (fill ch and *n) from what it sees. Adding a sealed part needs the
 * user's login. On success the token's objects are the new ones at once
 * (tk_soft_snapshot). Errors: TK_ERR_LOGIN_REQUIRED, TK_ERR_NOT_FOUND (a
 * uid that is not there), TK_ERR_TOO_LONG (the token is full:
 * TK_REG_CONFIG_MAX, TK_SOFT_OBJECTS_MAX or TK_REG_ITEMS_MAX),
 * TK_ERR_CONFLICT (16 conflicts in a row), TK_ERR_STORE_CHANGED,
 * TK_ERR_DISK_FULL, TK_ERR_IO, TK_ERR_NO_MEMORY, check's. */
int tk_soft_write(tk_soft_t *s, tk_soft_change_t *ch, size_t *n,
                  int (*check)(const tk_soft_snap_t *objs, void *arg), void *arg);

/* The provider (core/provider.c's built-in table). */
struct tk_provider;
extern const struct tk_provider tk_soft_provider;

#endif
