/* tokenkit: the token-registration registry.
 *
 * Token providers (the software token, external drivers, provisioning
 * tools) register token instances here: provider id, instance id, label,
 * the items offered (certificates, and key references with type, size,
 * capabilities and a provider handle), opaque provider configuration and
 * timestamps. Card tokens register themselves when first seen. Every
 * running PKCS#11 module publishes what is registered as slots.
 *
 * The store, not a process's memory, is the truth: one file per
 * registration in a private directory, written atomically (temporary file,
 * fsync, rename, fsync of the directory), so a crash at any instant leaves
 * the old record or the new one. Two stores:
 *  - the user's: $XDG_STATE_HOME/tokenkit/registry (default
 *    ~/.local/state/tokenkit/registry), 0700, files 0600, refused when it
 *    is not a private directory of the effective uid. Not used at all in a
 *    set-uid or set-gid process (TK_ERR_NOT_SUPPORTED).
 *  - the system's: /var/lib/tokenkit/registry ($TOKENKIT_SYSTEM_REGISTRY
 *    outside set-uid programs), for system-wide tokens: owned by root, not
 *    writable by others, read by everyone, written only by root.
 *
 * What a handle promises (the failure this exists to prevent: a provider's
 * long-lived handle that silently does nothing after the store behind it
 * changed):
 *  - Every record has a generation (1, 2, ...). Writes are compare-and-swap
 *    on it: the writer names the generation it based its change on; a
 *    mismatch is TK_ERR_CONFLICT with the current generation. Nothing is
 *    merged silently, nothing is lost silently. A successful write returns
 *    the generation it committed; there is no success without one.
 *  - The store has an identity (a random id and its creation time, in its
 *    own file). A handle remembers the identity it opened and checks it on
 *    every operation (one stat and a compare). Once the store was replaced,
 *    restored from a backup or wiped, every operation on the handle fails
 *    with TK_ERR_STORE_CHANGED until the caller acknowledges it with
 *    tk_registry_reopen() (and re-reads what it relied on). A write that
 *    might have gone to the store being replaced also fails with it: a
 *    write returns success only when the store was the same before and
 *    after it.
 *  - Removal leaves a tombstone (a record marked removed, with the next
 *    generation), so a registration removed and created again never reuses
 *    a generation a stale writer may still hold.
 *  - Watchers (inotify underneath) receive add/change/remove events in
 *    order, and an explicit resync event whenever they may have missed
 *    something (queue overflow, the store replaced, wiped or back): after
 *    it come the events that bring the watcher's view to the store's.
 *    A watcher never goes silent after a discontinuity; it logs when it
 *    re-reads the store.
 *
 * Records that are corrupt, truncated, of a foreign version or oversized
 * are skipped with a warning naming the file; the rest keeps working.
 *
 * Thread safety: a handle, a watcher or a registration is used by one
 * thread at a time; different handles are independent (also across
 * processes: writers of one store serialise on a lock of its directory). */
#ifndef TOKENKIT_REGISTRY_H
#define TOKENKIT_REGISTRY_H

#include <tokenkit/common.h>

typedef struct tk_registry tk_registry_t;
typedef struct tk_registration tk_registration_t;
typedef struct tk_registry_watch tk_registry_watch_t;

/* Limits (a record over them is refused when written, skipped when read). */
#define TK_REG_PROVIDER_MAX 32 /* provider id: [a-z0-9_], 1..32 */
#define TK_REG_INSTANCE_MAX 64 /* instance id: [A-Za-z0-9._:-], 1..64, not starting with '.' */
#define TK_REG_LABEL_MAX 64    /* UTF-8 bytes */
#define TK_REG_ID_MAX 64       /* item id (CKA_ID) bytes */
#define TK_REG_ITEMS_MAX 64
#define TK_REG_DER_MAX (64u * 1024u)     /* a certificate or SubjectPublicKeyInfo */
#define TK_REG_HANDLE_MAX 256            /* a key's provider handle */
#define TK_REG_CONFIG_MAX (256u * 1024u) /* opaque provider configuration */
#define TK_REG_RECORD_MAX (1024u * 1024u)

/* tk_registry_remove / tk_registry_put: whatever the current generation. */
#define TK_REG_GEN_ANY UINT64_MAX

/* ---- registrations ---------------------------------------------------------- */

enum tk_reg_item_kind {
	TK_REG_ITEM_CERT = 1, /* der: the certificate */
	TK_REG_ITEM_KEY = 2,  /* der: its SubjectPublicKeyInfo (may be empty); handle */
};

/* Registration flags. */
/* A card token (registered by tokenkit when it first saw the card):
 * published by the reader that holds the card, never by the registry. */
#define TK_REG_FLAG_CARD 0x1u

/* One item. Input (copied by tk_registration_add_item) and output
 * (tk_registration_item: the pointers borrow the registration's memory). A
 * key and the certificate of one identity share one id. */
typedef struct tk_reg_item {
	int kind; /* enum tk_reg_item_kind */
	const uint8_t *id;
	size_t id_len; /* 1..TK_REG_ID_MAX */
	const char *label;
	const uint8_t *der;
	size_t der_len;
	int key_type;      /* keys: enum tk_key_type (token.h); TK_KEY_NONE for certificates */
	unsigned key_bits; /* keys */
	unsigned usage;    /* keys: TK_USAGE_SIGN | TK_USAGE_DECRYPT | TK_USAGE_DERIVE */
	const uint8_t *handle;
	size_t handle_len; /* keys: the provider's reference to the key, 1..TK_REG_HANDLE_MAX */
} tk_reg_item_t;

/* A new, empty registration (generation 0: not stored yet). Errors:
 * TK_ERR_INVALID_ARG (an id outside the rules above), TK_ERR_NO_MEMORY. */
TK_EXPORT int tk_registration_new(const char *provider, const char *instance,
                                  tk_registration_t **out);
TK_EXPORT void tk_registration_free(tk_registration_t **rp);
/* A deep copy. Errors: TK_ERR_NO_MEMORY. */
TK_EXPORT int tk_registration_dup(const tk_registration_t *r, tk_registration_t **out);

/* Errors: TK_ERR_INVALID_ARG (not UTF-8, control characters, too long). */
TK_EXPORT int tk_registration_set_label(tk_registration_t *r, const char *label);
TK_EXPORT void tk_registration_set_flags(tk_registration_t *r, unsigned flags);
/* Errors: TK_ERR_TOO_LONG, TK_ERR_NO_MEMORY. */
TK_EXPORT int tk_registration_set_config(tk_registration_t *r, const uint8_t *config, size_t len);
/* Errors: TK_ERR_INVALID_ARG (kind, id, lengths, a key without handle or
 * type), TK_ERR_TOO_LONG (more than TK_REG_ITEMS_MAX), TK_ERR_NO_MEMORY. */
TK_EXPORT int tk_registration_add_item(tk_registration_t *r, const tk_reg_item_t *item);
TK_EXPORT void tk_registration_clear_items(tk_registration_t *r);

TK_EXPORT const char *tk_registration_provider(const tk_registration_t *r);
TK_EXPORT const char *tk_registration_instance(const tk_registration_t *r);
TK_EXPORT const char *tk_registration_label(const tk_registration_t *r);
TK_EXPORT unsigned tk_registration_flags(const tk_registration_t *r);
/* The generation this copy was read or written with (0: never stored). */
TK_EXPORT uint64_t tk_registration_generation(const tk_registration_t *r);
/* Microseconds since the epoch (0: never stored). */
TK_EXPORT uint64_t tk_registration_created(const tk_registration_t *r);
TK_EXPORT uint64_t tk_registration_updated(const tk_registration_t *r);
/* A tombstone: the registration was removed (tk_registry_list and
 * tk_registry_get never return one; a watcher's remove event carries it). */
TK_EXPORT bool tk_registration_removed(const tk_registration_t *r);
TK_EXPORT size_t tk_registration_item_count(const tk_registration_t *r);
/* Errors: TK_ERR_NOT_FOUND (i out of range). */
TK_EXPORT int tk_registration_item(const tk_registration_t *r, size_t i, tk_reg_item_t *item);
TK_EXPORT void tk_registration_config(const tk_registration_t *r, const uint8_t **config,
                                      size_t *len);
/* Same provider, instance, label, flags, items and configuration
 * (generation and timestamps aside). */
TK_EXPORT bool tk_registration_equal(const tk_registration_t *a, const tk_registration_t *b);

/* ---- stores ------------------------------------------------------------------- */

#define TK_REGISTRY_SYSTEM 0x1u    /* the system store (read-only unless euid 0) */
#define TK_REGISTRY_NO_CREATE 0x2u /* do not create a missing store (TK_ERR_NOT_FOUND) */

typedef struct tk_registry_opts {
	const char *path; /* the store directory; NULL: the user's (or, with
	                   * TK_REGISTRY_SYSTEM, the system's) default */
	unsigned flags;   /* TK_REGISTRY_* */
} tk_registry_opts_t;
TK_EXPORT void tk_registry_opts_init(tk_registry_opts_t *o);

/* Open a store (opts NULL: the user's), creating it when missing (its
 * directories 0700 and its identity) unless TK_REGISTRY_NO_CREATE or
 * TK_REGISTRY_SYSTEM. Errors: TK_ERR_NOT_SUPPORTED (the user's store in a
 * set-uid or set-gid process), TK_ERR_NOT_FOUND (no store and not created;
 * no home directory), TK_ERR_UNSAFE (the directory or its identity file is
 * not private / not ours: logged as a warning), TK_ERR_MALFORMED (an
 * identity file that does not parse), TK_ERR_IO, TK_ERR_DISK_FULL,
 * TK_ERR_NO_MEMORY. */
TK_EXPORT int tk_registry_open(const tk_registry_opts_t *opts, tk_registry_t **out);
TK_EXPORT void tk_registry_free(tk_registry_t **rp);
TK_EXPORT const char *tk_registry_path(const tk_registry_t *reg);
/* The identity the handle holds: 32 lower-case hex digits (id, 33 bytes)
 * and the store's creation time (µs since the epoch). */
TK_EXPORT void tk_registry_identity(const tk_registry_t *reg, char id[33], uint64_t *created);
/* Check the store is still the one the handle opened. TK_OK, or
 * TK_ERR_STORE_CHANGED (sticky until tk_registry_reopen). */
TK_EXPORT int tk_registry_check(tk_registry_t *reg);
/* After TK_ERR_STORE_CHANGED: take the store now at the path (created
 * again when wiped, unless TK_REGISTRY_NO_CREATE). *changed (may be NULL)
 * says whether its identity differs from the one held before. The caller
 * must re-read what it relied on: generations read before mean nothing in
 * another store. Errors: those of tk_registry_open. */
TK_EXPORT int tk_registry_reopen(tk_registry_t *reg, bool *changed);

/* One registration (never a tombstone). Errors: TK_ERR_NOT_FOUND (none, or
 * removed), TK_ERR_STORE_CHANGED, TK_ERR_INVALID_ARG, TK_ERR_MALFORMED /
 * TK_ERR_BAD_CHECKSUM / TK_ERR_TRUNCATED / TK_ERR_TOO_LONG /
 * TK_ERR_NOT_SUPPORTED (a record that does not parse or is of a foreign
 * version: logged as a warning naming the file), TK_ERR_UNSAFE, TK_ERR_IO. */
TK_EXPORT int tk_registry_get(tk_registry_t *reg, const char *provider, const char *instance,
                              tk_registration_t **out);
/* Every registration (tombstones and bad records left out, the latter with
 * a warning), sorted by provider and instance. Free with
 * tk_registry_list_free. Errors: TK_ERR_STORE_CHANGED, TK_ERR_IO,
 * TK_ERR_NO_MEMORY. */
TK_EXPORT int tk_registry_list(tk_registry_t *reg, tk_registration_t ***out, size_t *count);
TK_EXPORT void tk_registry_list_free(tk_registration_t ***list, size_t count);

/* Write r (its provider and instance name the record) if the record's
 * current generation is expected: 0 when it must not exist (or was
 * removed), TK_REG_GEN_ANY for whatever is there. On success *gen is the
 * committed generation (the current + 1; the tombstone's + 1 for a record
 * created again) and r's generation and timestamps are updated; created
 * is kept from the record being replaced.
 * Errors (r unchanged):
 *  - TK_ERR_CONFLICT: another writer got there first; *gen is the current
 *    generation (0: none). Re-read, redo the change, write again.
 *  - TK_ERR_STORE_CHANGED: the store is not the one the handle opened (or
 *    changed during the write); nothing is promised about this write.
 *  - TK_ERR_DISK_FULL: nothing written; the old record stands.
 *  - TK_ERR_NOT_SUPPORTED: the system store, not root.
 *  - TK_ERR_BUSY: another writer held the store's lock for 2 s.
 *  - TK_ERR_INVALID_ARG, TK_ERR_TOO_LONG (over TK_REG_RECORD_MAX),
 *    TK_ERR_UNSAFE, TK_ERR_IO, TK_ERR_NO_MEMORY. */
TK_EXPORT int tk_registry_put(tk_registry_t *reg, tk_registration_t *r, uint64_t expected,
                              uint64_t *gen);
/* Remove (a tombstone with the next generation, returned in *gen) if the
 * current generation is expected (TK_REG_GEN_ANY: any). Errors as
 * tk_registry_put, and TK_ERR_NOT_FOUND (no such registration, or removed
 * already). */
TK_EXPORT int tk_registry_remove(tk_registry_t *reg, const char *provider, const char *instance,
                                 uint64_t expected, uint64_t *gen);

/* ---- watching ------------------------------------------------------------------- */

enum tk_registry_event_type {
	TK_REGISTRY_ADDED = 1,   /* reg: the registration */
	TK_REGISTRY_CHANGED = 2, /* reg: its new state (another generation or content) */
	TK_REGISTRY_REMOVED = 3, /* reg: the tombstone, or the last state seen when the record
	                          * went away or became unreadable */
	/* The watcher may have missed changes (reason says which): what follows
	 * (added/changed/removed) brings its view to the store's. reg NULL. */
	TK_REGISTRY_RESYNC = 4,
};

typedef struct tk_registry_event {
	int type; /* enum tk_registry_event_type */
	tk_registration_t *reg;
	const char *reason; /* TK_REGISTRY_RESYNC: "inotify queue overflow", "store replaced",
	                     * "store wiped", "store back", ...; else NULL */
} tk_registry_event_t;

/* A watcher on the store reg names (it keeps a handle of its own on the same
 * path and flags; reg may be freed afterwards). Its first events are one
 * TK_REGISTRY_ADDED per registration already there. Errors: those of
 * tk_registry_open, TK_ERR_IO (inotify). */
TK_EXPORT int tk_registry_watch_new(const tk_registry_t *reg, tk_registry_watch_t **out);
TK_EXPORT void tk_registry_watch_free(tk_registry_watch_t **wp);
/* A descriptor that becomes readable when tk_registry_watch_next may have
 * news (poll it with others); the watcher also revalidates the store once
 * a second from tk_registry_watch_next, so call that at least that often. */
TK_EXPORT int tk_registry_watch_fd(const tk_registry_watch_t *w);
/* The next event, waiting at most timeout_ms (0: do not wait). Free it with
 * tk_registry_event_free. Errors: TK_ERR_TIMEOUT (nothing yet),
 * TK_ERR_NO_MEMORY, TK_ERR_IO. */
TK_EXPORT int tk_registry_watch_next(tk_registry_watch_t *w, int timeout_ms,
                                     tk_registry_event_t **ev);
TK_EXPORT void tk_registry_event_free(tk_registry_event_t **evp);
TK_EXPORT const char *tk_registry_event_name(int type);

#endif
