/* tokenkit: the on-disk public-object cache (private).
 *
 * One file per card identity under the cache directory, holding records
 * (a 32-bit key chosen by the driver, and bytes): the public objects the
 * driver built the token from. Only public data: certificates, public keys,
 * public card data objects, label and serial. Never PINs, never private keys.
 *
 * File format, all integers big-endian:
 *   magic "TKCACHE1" (8) | version u16 (1) | reserved u16 (0)
 *   identity_len u16 | identity bytes
 *   count u32 | count × { key u32 | len u32 | bytes }
 *   SHA-256 over everything before it (32)
 * A file that fails any check (magic, version, lengths, a foreign identity,
 * checksum, trailing bytes) is ignored with a warning. Files are written
 * atomically: temporary file, fsync, rename, fsync of the directory; mode
 * 0600 in a 0700 directory.
 *
 * Why this is not the registry's record of a card token (include/tokenkit/
 * registry.h), although both hold a card's public objects:
 *  - Lifetime. The cache is disposable: the card is the truth, every entry
 *    is revalidated against it at insertion, and losing it (a user wiping
 *    $XDG_CACHE_HOME, "" as cache_dir, a set-uid program) costs APDUs, never
 *    correctness. A registration is a provider's durable word that nobody
 *    else can re-create; kept in the cache directory, a wipe would be exactly
 *    the silent loss the registry exists to prevent, and a card cache moved
 *    into $XDG_STATE_HOME would make disposable data something users must not
 *    delete.
 *  - Writers. Every process that opens the card writes its entry, and the
 *    last writer is right because each wrote what the card said; under the
 *    registry's compare-and-swap these concurrent opens would turn into
 *    conflicts to resolve, for nothing.
 *  - Content. The entry holds the driver's raw records (CHUID, key history,
 *    certificate containers, metadata) keyed for the driver's cheap probes;
 *    a registration holds items (certificate DER, key references).
 * So a card token's registration (TK_REG_FLAG_CARD: the module leaves it to
 * the reader that holds the card) carries its items, written through the
 * registry's one writer path, and this cache stays what it is. That record
 * is written when the card is first seen and when its items change
 * (tk_token_register, core/token.c). */
#ifndef TK_CACHE_H
#define TK_CACHE_H

#include <tokenkit/common.h>

typedef struct tk_cache tk_cache_t;

#define TK_CACHE_VERSION 1
#define TK_CACHE_MAX_RECORDS 1024
#define TK_CACHE_MAX_RECORD (1u << 20)
#define TK_CACHE_MAX_FILE (8u << 20)
#define TK_CACHE_MAX_IDENTITY 64

/* Errors: TK_ERR_INVALID_ARG (identity longer than TK_CACHE_MAX_IDENTITY),
 * TK_ERR_NO_MEMORY. */
int tk_cache_new(const char *identity, tk_cache_t **out);
void tk_cache_free(tk_cache_t **cp);
const char *tk_cache_identity(const tk_cache_t *c);

/* Set (replace) a record. Errors: TK_ERR_TOO_LONG, TK_ERR_NO_MEMORY. */
int tk_cache_put(tk_cache_t *c, uint32_t key, const uint8_t *data, size_t len);
/* Borrow a record (valid until the next put/del). Errors: TK_ERR_NOT_FOUND. */
int tk_cache_get(const tk_cache_t *c, uint32_t key, const uint8_t **data, size_t *len);
void tk_cache_del(tk_cache_t *c, uint32_t key);
size_t tk_cache_count(const tk_cache_t *c);
/* Same identity and the same records (order ignored). */
bool tk_cache_equal(const tk_cache_t *a, const tk_cache_t *b);

/* Serialise / parse the file format. Decoding reads only through tk_buf
 * getters. Errors (decode): TK_ERR_MALFORMED (magic, version, limits,
 * duplicate key, trailing data), TK_ERR_TRUNCATED, TK_ERR_BAD_CHECKSUM,
 * TK_ERR_NO_MEMORY. */
int tk_cache_encode(const tk_cache_t *c, uint8_t **out, size_t *out_len);
int tk_cache_decode(const uint8_t *p, size_t len, tk_cache_t **out);

/* The cache directory: opt when not NULL ("" disables caching:
 * TK_ERR_NOT_SUPPORTED), else $XDG_CACHE_HOME/tokenkit, else
 * $HOME/.cache/tokenkit. Errors: TK_ERR_NOT_SUPPORTED, TK_ERR_NOT_FOUND (no
 * home), TK_ERR_TOO_LONG. */
int tk_cache_dir(const char *opt, char *out, size_t cap);
/* Path of the file for identity (non-portable characters become '_'). */
int tk_cache_path(const char *dir, const char *identity, char *out, size_t cap);

/* Load the file for identity. Errors: TK_ERR_NOT_FOUND (no file), and for
 * a file that is corrupt or belongs to another identity the decode error
 * (logged as a warning; callers go on without a cache). */
int tk_cache_load(const char *dir, const char *identity, tk_cache_t **out);
/* Write c atomically (creates dir 0700). Errors: TK_ERR_IO, TK_ERR_NO_MEMORY. */
int tk_cache_store(const char *dir, const tk_cache_t *c);
/* Remove the file for identity (absent is fine). */
int tk_cache_remove(const char *dir, const char *identity);

#endif
