/* tokenkit-pkcs11.so: private definitions shared by the module's files.
 *
 * Locking: one module lock (g_p11.lock) guards the tables only — slots,
 * tokens, sessions, login state, session objects. It is never held across
 * card I/O: callers take a reference (session or token), drop the lock and
 * then call tk_token_*. Each session has its own op_lock, held for the
 * whole of a call on that session (so its operation state is consistent);
 * sessions on different tokens therefore run in parallel. The PINs of
 * operations (p11_op.ctx_pin) are under g_p11.pin_lock, always the last
 * lock taken, so that C_Logout on one session can wipe another's. */
#ifndef TK_P11_H
#define TK_P11_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <pkcs11-helper-1.0/pkcs11.h>

#include <openssl/evp.h>

#include <tokenkit/err.h>
#include <tokenkit/slot.h>
#include <tokenkit/token.h>

#include "clock.h"
#include "rv.h"
#include "threads.h"

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
#ifndef CKR_OPERATION_CANCEL_FAILED
#define CKR_OPERATION_CANCEL_FAILED 0x202UL
#endif

#define P11_EXPORT __attribute__((visibility("default")))

/* Library and token identification. */
#define P11_MANUFACTURER "tokenkit"
#define P11_LIBRARY_DESC "tokenkit PKCS#11 module"

/* Bounds. */
#define P11_PIN_MAX 64         /* longest PIN or PUK the module keeps */
#define P11_MAX_RAW_INPUT 1024 /* multi-part raw (unhashed) sign/decrypt accumulation */
/* Raw CKM_ECDSA: the input is a digest, truncated to the key's field (PKCS#11
 * 3.0 2.3.6 / FIPS 186-4 6.4); longer than the longest hash offered (SHA-512)
 * it is no digest: CKR_DATA_LEN_RANGE. */
#define P11_ECDSA_MAX_INPUT 64
/* CKM_EDDSA: the whole message goes to the card (TK_OP_EDDSA's bound). */
#define P11_EDDSA_MAX_INPUT 4096
#define P11_GETSLOTLIST_WAIT_MS 4000
/* The first reader enumeration (no APDU) is finished inside C_Initialize,
 * so every slot answers from the first call; a PC/SC daemon that does not
 * answer (pcsc-lite then waits without a timeout) costs C_Initialize and
 * the slot calls after it at most this much, counted from C_Initialize. */
#define P11_FIRST_SCAN_WAIT_MS 2000
/* A card whose token is being opened is waited for (C_GetSlotList,
 * C_GetTokenInfo, C_OpenSession, ...) while it makes progress; it makes none
 * when its reader has been inside one exchange with the card (APDU, reset,
 * status) for this long, or when the slot manager has been recovering it
 * for this long (README: "Waiting for tokens"). */
#define P11_STALL_MS 100
/* ... except by a call about that very slot (C_GetTokenInfo, C_OpenSession,
 * ... on it): the application asked for this card, and one slow exchange
 * (a loaded machine, a slow card or reader) is no wedge. Such a call waits
 * while a single exchange lasts less than this, even when an earlier call
 * found the card slow and showed the slot without its token; a recovery
 * after that (the slot manager's deadline passed) ends the wait at once. */
#define P11_STALL_SELF_MS 1000
#define P11_STALL_POLL_MS 10 /* how often a waiting call looks at the readers */
#define P11_FINALIZE_WAIT_MS 10000
#define P11_FINALIZE_OPEN_WAIT_MS 5000 /* token opens and revalidation at C_Finalize */
#define P11_OPEN_RETRY_MS 200          /* token open after a transient failure */
#define P11_OPEN_RETRIES_ODD 2         /* ... after a protocol or I/O error (slot.c) */
#define P11_DEFAULT_MAX_TRIES 3        /* PIV PIN/PUK tries when the card does not say */
/* A token whose card left its slot is kept this long (its sessions, object
 * handles and session objects) for the same card (by identity) to come back;
 * a different card in the slot ends it at once. */
#define P11_LOST_GRACE_MS 60000
#define P11_LOST_GRACE_MAX_MS 3600000 /* $TOKENKIT_P11_GRACE_MS: 0 .. this */
/* A token comes back at most this many times; after that its sessions end
 * and the card is a new token (with a new budget). Each return keeps the
 * earlier tk token and object table while calls and operations may still
 * point there (tk_p11_gc_take_locked frees them once none can). */
#define P11_MAX_RETURNS 32
/* After a communication error, how long to look whether the card was
 * removed (then the call answers CKR_DEVICE_REMOVED, not CKR_DEVICE_ERROR):
 * pcscd notices a removal within one 400 ms poll. */
#define P11_REMOVAL_SETTLE_MS 600
/* Per-APDU deadline: $TOKENKIT_TIMEOUT_MS, within these bounds (else the
 * default, TK_CARD_DEFAULT_TIMEOUT_MS). */
#define P11_TIMEOUT_MIN_MS 100
#define P11_TIMEOUT_MAX_MS 600000

/* --- objects ------------------------------------------------------------ */

struct p11_attr {
	CK_ATTRIBUTE_TYPE type;
	void *val;
	CK_ULONG len;
	bool sensitive;
	/* A software token's secret part (softobj.c) that the object lets out
	 * (CKA_SENSITIVE false, CKA_EXTRACTABLE true): not in val, read from
	 * the token while the user is logged in (else CKR_ATTRIBUTE_SENSITIVE). */
	bool sealed;
};

struct p11_object {
	CK_OBJECT_HANDLE handle;
	CK_OBJECT_CLASS cls;
	const tk_object_t *tko;  /* token objects; NULL for session objects */
	CK_SESSION_HANDLE owner; /* session objects: creating session */
	struct p11_attr *attrs;
	size_t nattrs;
	int key_type; /* enum tk_key_type (TK_KEY_NONE for others) */
	unsigned key_bits;
	unsigned usage; /* TK_USAGE_* */
	unsigned ops;   /* private keys: what the card does with them (tk_token_key_ops) */
	bool always_auth;
	EVP_PKEY *pub;        /* public key for host-side work: tk_p11_object_pub */
	bool visible_private; /* CKA_PRIVATE true */
	/* A software token's object (softobj.c): its uid in the token's store;
	 * its attributes are the stored ones. */
	bool soft;
	uint8_t uid[16];
	/* Session objects made from a template (softobj.c): their attributes
	 * as the object rules keep them (a secret key's value included), and a
	 * private key's OpenSSL key. NULL for others. */
	struct tk_attrs *list;
	EVP_PKEY *priv;
};

/* --- tokens ------------------------------------------------------------- */

struct p11_objset {
	struct p11_object *objs;
	size_t nobjs;
	struct p11_objset *next;
};

struct p11_token {
	int refs; /* module lock */
	tk_token_t *tk;
	CK_SLOT_ID slot;
	uint64_t card_seq;
	bool removed; /* card gone for good: sessions answer CKR_DEVICE_REMOVED once */
	/* Card gone, token kept (the slot's lost token) for the same card to
	 * come back within P11_LOST_GRACE_MS: its sessions answer
	 * CKR_DEVICE_REMOVED (card taken out) or CKR_DEVICE_ERROR (reader or
	 * PC/SC service gone) meanwhile, and survive the card's return. */
	bool detached;
	bool reader_lost;     /* detached because the reader (or the service) went */
	int64_t detached_at;  /* ms, monotonic */
	tk_token_t **old_tks; /* tk tokens of earlier insertions (resurrections): calls may
	                       * still use them; freed when none can (tk_p11_gc_take_locked) */
	size_t nold_tks;
	unsigned returns;     /* how often the card came back (P11_MAX_RETURNS) */
	tk_token_info_t info; /* at open (C_GetTokenInfo asks tk_token_info afresh) */

	struct p11_object *objs; /* token objects (swapped, never changed in place, under the
	                          * module lock when revalidation found changes) */
	size_t nobjs;
	struct p11_objset *retired; /* earlier object tables: operations may still point there
	                             * (freed like old_tks) */
	struct p11_object **sobjs;  /* session objects (module lock) */
	size_t nsobjs, sobjs_cap;

	/* A software token (drivers/soft): objects from its store's snapshot
	 * of generation soft_gen, writable (softobj.c). */
	bool soft;
	uint64_t soft_gen;

	/* What the keys support (for the mechanism list). */
	bool rsa_sign, rsa_decrypt, ec_sign, ec_derive;
	unsigned rsa_min, rsa_max, ec_min, ec_max;

	/* Login state, shared by every session of the token (module lock). */
	int login;             /* -1: none; CKU_USER; CKU_SO */
	uint64_t login_serial; /* bumped at every change of login (module lock) */
	void *so_pin;          /* PUK kept for C_InitPIN/C_SetPIN while SO is logged in (secmem,
	                        * P11_PIN_MAX bytes) */
	size_t so_pin_len;
	/* Opt-in ($TOKENKIT_P11_PIN_CACHE=1): the user PIN while CKU_USER is
	 * logged in, verified again with an operation when the card lost the
	 * login (never for PIN-always keys). Secret memory (core/secmem.h),
	 * wiped when the login ends in any way (tk_p11_login_set_locked). */
	void *user_pin;
	size_t user_pin_len;
	/* A user PIN was refused since the last successful user login
	 * (CKF_USER_PIN_COUNT_LOW as PKCS#11 defines it, also for a PIN refused
	 * before it reached the card; module lock). */
	bool user_pin_refused;
};

/* --- sessions ----------------------------------------------------------- */

enum p11_op_kind {
	P11_OP_NONE = 0,
	P11_OP_SIGN,
	P11_OP_VERIFY,
	P11_OP_DECRYPT,
	P11_OP_DIGEST,
	P11_OP_ENCRYPT, /* a software token's public keys (encrypt.c) */
};

struct p11_op {
	int kind; /* enum p11_op_kind */
	CK_MECHANISM_TYPE mech;
	CK_OBJECT_HANDLE key;
	const struct p11_object *obj; /* token object (immutable while the token lives) */
	const EVP_MD *md;             /* hash of a hashing mechanism, or NULL */
	EVP_MD_CTX *mdctx;            /* multi-part hashing */
	bool multi;                   /* C_*Update was called */
	uint8_t *buf;                 /* raw accumulation, bounded */
	size_t buf_len, buf_cap;
	/* PSS / OAEP parameters */
	const EVP_MD *pss_md, *mgf_md;
	size_t salt_len;
	uint8_t *label;
	size_t label_len;
	/* decrypt: result kept across a CKR_BUFFER_TOO_SMALL retry */
	uint8_t *result;
	size_t result_len;
	bool have_result;
	/* The PIN given for this operation with C_Login(CKU_CONTEXT_SPECIFIC),
	 * for a PIN-always key: verified on the card at C_Login, then taken by
	 * the key operation and verified again right before it, in the same
	 * card transaction. Nobody else's operation can use it. Secret memory
	 * (core/secmem.h), g_p11.pin_lock; wiped when the operation ends in
	 * any way (tk_p11_op_reset), at C_Logout and in a fork child. */
	void *ctx_pin;
	size_t ctx_pin_len;
};

struct p11_find {
	bool active;
	CK_OBJECT_HANDLE *handles;
	size_t count, pos;
};

struct p11_session {
	CK_SESSION_HANDLE h;
	CK_SLOT_ID slot;
	struct p11_token *tok; /* reference */
	CK_FLAGS flags;
	int refs; /* module lock */
	bool closed;
	/* module lock: a call was refused while the token was away (reader
	 * or service lost): the session's operations end at its next call, as
	 * the refused call would have ended its own (PKCS#11: a C_Sign that
	 * fails ends the signing operation) */
	bool ops_lost;
	pthread_mutex_t op_lock;
	struct p11_find find;
	struct p11_op sign, verify, decrypt;
	struct p11_op digest;  /* C_Digest*: its own state, beside sign/verify/decrypt */
	struct p11_op encrypt; /* C_Encrypt* (encrypt.c) */
};

/* --- slots -------------------------------------------------------------- */

struct p11_slot {
	CK_SLOT_ID id; /* the slot manager's stable slot id */
	char reader[128];
	bool present;            /* reader present */
	int state;               /* enum tk_slot_state */
	uint64_t card_seq;       /* current card, 0 when none */
	struct p11_token *token; /* reference, NULL when no (recognised) token */
	struct p11_token *lost;  /* reference: the token of the card that left, kept for
	                          * P11_LOST_GRACE_MS or until another card is published */
	uint64_t opened_seq;     /* card_seq for which an open was started */
	bool opening;            /* an open is running */
	int64_t retry_at;        /* after a transient failure: not before (ms, monotonic) */
	/* The card being opened made no progress (P11_STALL_MS) once: until
	 * its token is published or the card leaves, the slot shows no token
	 * and nobody waits for it. */
	uint64_t stalled_seq;
	/* The card being opened was first seen recovering at this time
	 * (monotonic ms; 0: not recovering): a recovery after a quick fault
	 * is waited for like one exchange (slot_stalled_locked). */
	int64_t recovering_at;
	uint64_t recovering_seq; /* ... the card_seq it was seen for */
	uint64_t odd_fails_seq;  /* card_seq whose opens failed odd_fails times with a */
	int odd_fails;           /* protocol or I/O error (transient()) */
	unsigned view;           /* SLOT_VIEW_*: what C_GetSlotInfo showed at the last change */
	bool event;              /* pending for C_WaitForSlotEvent */
	bool registry;           /* a registered token's slot (regslot.c), not a reader's */
};

/* --- the module --------------------------------------------------------- */

/* A token-open thread (slot.c), joined by the next open thread or by
 * C_Finalize once done (module lock). */
struct p11_module {
	pthread_mutex_t lock;
	pthread_mutex_t pin_lock; /* p11_op.ctx_pin of every session; taken last */
	pthread_cond_t cond;      /* slot events, open completion, finalize */
	bool initialized;
	bool finalizing;
	pid_t pid;
	tk_slotmgr_t *mgr;
	int sub_id;
	/* The slot table holds the first reader enumeration (or it was given
	 * up at scan_end, ms): before, slot calls wait for it; changes after
	 * it are slot events. */
	bool scanned;
	int64_t scan_end;

	struct p11_slot *slots;
	size_t nslots, slots_cap;

	struct p11_session **sessions;
	size_t nsessions, sessions_cap;
	CK_SESSION_HANDLE next_session;
	CK_OBJECT_HANDLE next_sobj;
	CK_OBJECT_HANDLE next_obj; /* token objects: module-wide, never reused in the process */
	int timeout_ms;            /* per-APDU deadline given to the slot manager */
	int grace_ms;              /* how long a lost token waits for its card */
	bool pin_cache;            /* $TOKENKIT_P11_PIN_CACHE=1: keep the user PIN (opt-in) */

	int openers;          /* token-open threads running */
	tk_thread_t *threads; /* token-open threads not joined yet */
	int waiters;          /* threads in C_WaitForSlotEvent */
	int calls;            /* calls holding a session or token reference */
	uint64_t gen;         /* increases with every C_Initialize */
	bool gc_wanted;       /* a token has old_tks or retired tables to free */
};

extern struct p11_module g_p11;
extern const char *tk_p11_default_readers; /* module.c */
/* Set by tokenkitd --system before C_Initialize: the module serves every
 * user, so it publishes no user's registered tokens (software tokens),
 * only the system registry's (module.c; regslot.c). */
extern bool tk_p11_system_broker;
extern int tk_p11_txn_carry_ms; /* module.c */

/* The implementation of each C_* function, in the file of its concept;
 * rv.c exports C_* itself and keeps the answer to the codes the
 * specification allows that function (rv.h). */
#define P11_DECLARE_IMPL(name, params, args) CK_RV tk_p11_##name params;
P11_RV_FUNCTIONS(P11_DECLARE_IMPL)
#undef P11_DECLARE_IMPL

/* module.c */
CK_RV tk_p11_check_init_locked(void);
CK_RV tk_p11_enter(void);

/* util.c */
CK_RV tk_err_to_ckr(int err);
int tk_p11_timeout_from_env(void);
int tk_p11_grace_from_env(void);
bool tk_p11_pin_cache_from_env(void);
void tk_p11_pad(CK_UTF8CHAR *dst, size_t cap, const char *src);
CK_RV tk_p11_copy_out(const void *src, size_t len, CK_BYTE_PTR out, CK_ULONG_PTR out_len);
int tk_p11_der_octet_string(const uint8_t *in, size_t in_len, uint8_t **out, size_t *out_len);
const uint8_t *tk_p11_der_unwrap_octet_string(const uint8_t *in, size_t in_len, size_t *out_len);
OSSL_LIB_CTX *tk_p11_libctx(void);
void tk_p11_crypto_forget(void);
const EVP_MD *tk_p11_md_from_mech(CK_MECHANISM_TYPE hash_mech);
const EVP_MD *tk_p11_md_for_digest(CK_MECHANISM_TYPE mech);
const EVP_MD *tk_p11_md_from_mgf(CK_RSA_PKCS_MGF_TYPE mgf);
int tk_p11_mgf1(const EVP_MD *md, const uint8_t *seed, size_t seed_len, uint8_t *mask,
                size_t mask_len);

/* slot.c */
void tk_p11_slots_start(void);
/* Wait (until g_p11.scan_end) for the first reader enumeration to be in
 * the slot table; C_Initialize and the slot calls. Without the module lock. */
void tk_p11_slots_first_scan(void);
void tk_p11_slots_clear_locked(void);
/* C_Finalize, after the manager is gone: wait (bounded) for the token-open
 * threads and join them; one still running then is detached (not expected:
 * their card I/O fails fast without the manager). Without the module lock. */
void tk_p11_slots_join(int timeout_ms);
/* Background work that may use OpenSSL runs between these; false: the
 * process is exiting, skip the work (module.c, "process exit"). */
bool tk_p11_bg_enter(void);
void tk_p11_bg_leave(void);
bool tk_p11_token_unref_locked(struct p11_token *t); /* true: call tk_p11_token_free unlocked */
void tk_p11_token_free(struct p11_token *t);
/* When a call or a token open ends: the earlier tk tokens and object tables
 * that nothing can use any more (no call in flight, no token being opened,
 * no operation set up on the token), moved into a token shell for
 * tk_p11_token_free (unlocked), or NULL. */
struct p11_token *tk_p11_gc_take_locked(void);
struct p11_slot *tk_p11_slot_find_locked(CK_SLOT_ID id);
CK_RV tk_p11_slot_token(CK_SLOT_ID id, struct p11_token **out);
void tk_p11_token_put(struct p11_token *t);
tk_token_t *tk_p11_tk(struct p11_token *t);
/* Bring the token's objects up to date with its card (tk_token_revalidate;
 * objects that did not change keep their handles), read the PIN counters
 * and record the card in the user's registry (tk_token_register): after
 * the token was opened, and after another program's commands went to its
 * card through the broker (tools/tokenkitd/cards.c). Card I/O under the
 * token's lock; nothing held on the way in. */
void tk_p11_token_recheck(struct p11_token *t);
void tk_p11_login_set_locked(struct p11_token *t, int login);
void tk_p11_login_sync(struct p11_token *t);
void tk_p11_slot_event_locked(CK_SLOT_ID id);
bool tk_p11_lost_expired_locked(const struct p11_token *t);
bool tk_p11_token_forget_locked(struct p11_token *t); /* true: call tk_p11_token_free unlocked */
/* pop: the operation whose C_Login(CKU_CONTEXT_SPECIFIC) PIN goes with a
 * PIN-always key (taken, used once), or NULL. */
CK_RV tk_p11_key_op(struct p11_session *s, struct p11_op *pop, const struct p11_object *key, int op,
                    const uint8_t *in, size_t in_len, uint8_t *out, size_t out_cap,
                    size_t *out_len);

/* The slot table's entry for id (made, sorted in, when missing; reader:
 * the slot description), and the slot's event when what C_GetSlotInfo
 * shows changed (after the first scan). For regslot.c. */
struct p11_slot *tk_p11_slot_add_locked(CK_SLOT_ID id, const char *reader);
void tk_p11_slot_changed_locked(struct p11_slot *s);

/* regslot.c: registered tokens as slots (ids from P11_REGSLOT_BASE on).
 * start: at C_Initialize, before the first scan (the registrations there
 * are slots from the first call, without events); stop: at C_Finalize,
 * before the slot table is cleared; forget: in a fork child. */
#define P11_REGSLOT_BASE 0x40000000UL
void tk_p11_regslots_start(void);
void tk_p11_regslots_stop(void);
void tk_p11_regslots_forget(void);

/* session.c */
CK_RV tk_p11_login_verify(CK_SESSION_HANDLE h, CK_UTF8CHAR_PTR pin, CK_ULONG len);
CK_RV tk_p11_session_get(CK_SESSION_HANDLE h, struct p11_session **out);
void tk_p11_session_put(struct p11_session *s, CK_RV rv);
void tk_p11_sessions_close_slot_locked(CK_SLOT_ID slot);
void tk_p11_sessions_clear_locked(void);
void tk_p11_op_reset(struct p11_op *op);
void tk_p11_op_pin_set(struct p11_op *op, void *pin, size_t len);
void tk_p11_op_pin_take(struct p11_op *op, void **pin, size_t *len);
void tk_p11_ops_pins_drop_locked(const struct p11_token *t);

/* object.c */
int tk_p11_objects_build(struct p11_token *t);
/* One PKCS#11 object from one token object k (certificate, public or
 * private key): its attributes from the certificate's DER (names, serial,
 * dates, SPKI through OpenSSL), or for keys from their SPKI, else from the
 * public key or certificate with the same CKA_ID among t->objs[0..nobjs).
 * o is overwritten. Errors (o is then cleared): TK_ERR_MALFORMED (a
 * certificate OpenSSL cannot read), TK_ERR_NOT_SUPPORTED (a data object),
 * TK_ERR_NO_MEMORY, TK_ERR_CRYPTO. */
int tk_p11_object_build(struct p11_token *t, const tk_object_t *k, struct p11_object *o);
int tk_p11_objects_rebuild(struct p11_token *t);
void tk_p11_objects_number_locked(struct p11_object *objs, size_t n, const struct p11_object *prev,
                                  size_t nprev);
void tk_p11_object_clear(struct p11_object *o);
struct p11_object *tk_p11_object_find_locked(struct p11_token *t, CK_OBJECT_HANDLE h);
const struct p11_attr *tk_p11_attr_find(const struct p11_object *o, CK_ATTRIBUTE_TYPE type);
/* A token key object's public key as an OpenSSL key (host-side C_Verify),
 * made from its CKA_PUBLIC_KEY_INFO on first use and kept with the object;
 * any thread. NULL: none (a certificate, a session object, no public key). */
EVP_PKEY *tk_p11_object_pub(const struct p11_object *o);
int tk_p11_attr_add(struct p11_object *o, CK_ATTRIBUTE_TYPE type, const void *val, size_t len,
                    bool sensitive);
int tk_p11_attr_add_bool(struct p11_object *o, CK_ATTRIBUTE_TYPE type, bool v);
int tk_p11_attr_add_ulong(struct p11_object *o, CK_ATTRIBUTE_TYPE type, CK_ULONG v);
bool tk_p11_object_visible(const struct p11_token *t, const struct p11_object *o,
                           CK_SESSION_HANDLE h);
int tk_p11_session_object_add_locked(struct p11_token *t, struct p11_object *o);
void tk_p11_object_retire_locked(struct p11_token *t, struct p11_object *o);
void tk_p11_session_objects_drop_locked(struct p11_token *t, CK_SESSION_HANDLE owner);

/* softobj.c: the software token's objects and writes. */
/* t->objs from the token's store (t->tk is a software token's). */
int tk_p11_soft_objects_build(struct p11_token *t);
/* The store has objects newer than t's table. */
bool tk_p11_soft_stale(struct p11_token *t);
/* A key operation with a software token's private key, or a session
 * private key: the key is taken under the module lock (true: cur is one),
 * then used without it (tk_p11_soft_key_op frees what was taken). */
struct p11_softkey {
	EVP_PKEY *pk;
	bool by_uid;
	uint8_t uid[16];
};
bool tk_p11_soft_key_take_locked(const struct p11_object *cur, struct p11_softkey *k);
int tk_p11_soft_key_op(tk_token_t *tk, struct p11_softkey *k, int op, const uint8_t *in,
                       size_t in_len, uint8_t *out, size_t out_cap, size_t *out_len);
/* The sealed values (p11_attr.sealed) of object h that tpl asks for, while
 * the user is logged in (else none); out cleared first. */
void tk_p11_soft_reveal(struct p11_token *t, CK_OBJECT_HANDLE h, const CK_ATTRIBUTE *tpl,
                        CK_ULONG n, struct tk_attrs *out);
void tk_p11_soft_attrs_free(struct tk_attrs *l);
CK_RV tk_p11_soft_create(struct p11_session *s, const CK_ATTRIBUTE *tpl, CK_ULONG n,
                         CK_OBJECT_HANDLE *out);
CK_RV tk_p11_soft_copy(struct p11_session *s, CK_OBJECT_HANDLE h, const CK_ATTRIBUTE *tpl,
                       CK_ULONG n, CK_OBJECT_HANDLE *out);
CK_RV tk_p11_soft_destroy(struct p11_session *s, CK_OBJECT_HANDLE h);
CK_RV tk_p11_soft_set(struct p11_session *s, CK_OBJECT_HANDLE h, const CK_ATTRIBUTE *tpl,
                      CK_ULONG n);
CK_RV tk_p11_soft_generate(struct p11_session *s, const CK_MECHANISM *m, const CK_ATTRIBUTE *tpl,
                           CK_ULONG n, CK_OBJECT_HANDLE *h);
CK_RV tk_p11_soft_wrap(struct p11_session *s, const CK_MECHANISM *m, CK_OBJECT_HANDLE hw,
                       CK_OBJECT_HANDLE hk, CK_BYTE *out, CK_ULONG *out_len);
CK_RV tk_p11_soft_unwrap(struct p11_session *s, const CK_MECHANISM *m, CK_OBJECT_HANDLE hu,
                         const CK_BYTE *in, CK_ULONG in_len, const CK_ATTRIBUTE *tpl, CK_ULONG n,
                         CK_OBJECT_HANDLE *h);
CK_RV tk_p11_soft_generate_pair(struct p11_session *s, const CK_MECHANISM *m,
                                const CK_ATTRIBUTE *pub, CK_ULONG npub, const CK_ATTRIBUTE *priv,
                                CK_ULONG npriv, CK_OBJECT_HANDLE *hpub, CK_OBJECT_HANDLE *hpriv);

/* mech.c */
#define KT(key_type) (1u << (key_type))
struct p11_mech {
	CK_MECHANISM_TYPE type;
	unsigned key_types;     /* KT(TK_KEY_*) it works with; 0 for digests */
	CK_FLAGS flags;         /* CKF_SIGN, CKF_DECRYPT, ... (without CKF_HW) */
	CK_MECHANISM_TYPE hash; /* CKM_SHA* for hashing mechanisms, else 0 */
	bool pss, raw;
};
const struct p11_mech *tk_p11_mech_lookup(CK_MECHANISM_TYPE type);
/* The card operations (TK_OP_BIT) any one of which carries out function fn
 * (CKF_SIGN, CKF_DECRYPT, CKF_DERIVE) of m. */
unsigned tk_p11_mech_ops(const struct p11_mech *m, CK_FLAGS fn);
size_t tk_p11_mech_list(const struct p11_token *t, CK_MECHANISM_TYPE *out, size_t cap);
CK_RV tk_p11_mech_allowed_for_key(const struct p11_object *key, CK_MECHANISM_TYPE *out, size_t cap,
                                  size_t *count);

/* codec.c */
int tk_p11_pss_encode(const EVP_MD *md, const EVP_MD *mgf, const uint8_t *mhash, size_t hlen,
                      size_t salt_len, unsigned mod_bits, uint8_t *em, size_t em_len);
int tk_p11_pkcs1_type2_decode(const uint8_t *em, size_t k, uint8_t *out, size_t *out_len);
int tk_p11_oaep_decode(const EVP_MD *md, const EVP_MD *mgf, const uint8_t *label, size_t label_len,
                       const uint8_t *em, size_t k, uint8_t *out, size_t *out_len);

/* derive.c: the peer's public point of CKM_ECDH1_DERIVE for a key whose
 * field is field_bytes long: the raw uncompressed point (04 X Y) or, as many
 * clients send it, a DER OCTET STRING around one. *point points into data.
 * CKR_MECHANISM_PARAM_INVALID for anything else. */
CK_RV tk_p11_ecdh_peer_point(const uint8_t *data, size_t len, size_t field_bytes,
                             const uint8_t **point, size_t *point_len);
/* The same for an X25519 key: the 32-byte u-coordinate, raw or in a DER
 * OCTET STRING (RFC 7748; PKCS#11 3.0 2.3.7). */
CK_RV tk_p11_x25519_peer(const uint8_t *data, size_t len, const uint8_t **pub, size_t *pub_len);

/* sign.c / verify.c / decrypt.c / derive.c */
CK_RV tk_p11_op_init(struct p11_session *s, struct p11_op *op, int kind, CK_MECHANISM_PTR m,
                     CK_OBJECT_HANDLE hkey);
CK_RV tk_p11_op_update(struct p11_op *op, const uint8_t *part, size_t len);
CK_RV tk_p11_op_input(struct p11_op *op, const uint8_t *data, size_t len, bool single,
                      uint8_t *hash, const uint8_t **in, size_t *in_len);
#endif
