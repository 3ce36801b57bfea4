/* tokenkit: the consent store's records and file names (private).
 *
 * One decision is one file in the store directory. Its name is the
 * lower-case hex SHA-256 of
 *   program NUL uid (decimal) NUL token_serial NUL key_id
 * (no trailing NUL), so a lookup opens one file and never lists the
 * directory, and every other name (the ".<name>.tmp-*" files of an
 * interrupted atomic write among them) is not a record.
 *
 * Its content is one CBOR map (RFC 8949) in the one encoding
 * tk_consent_rec_encode writes: definite lengths, shortest integers, text
 * keys in this order:
 *   "version" uint (1), "program" tstr, "uid" uint, "token_serial" tstr,
 *   "token_label" tstr, "key_id" tstr, "key_label" tstr,
 *   "decision" uint (1..3), "time_us" uint
 * The strings are the bytes the broker gave (an executable path need not
 * be UTF-8), without NUL. Decoding accepts exactly that encoding: it
 * decodes, checks the version first (another one: TK_ERR_NOT_SUPPORTED,
 * whatever else the map holds), then every field (types, limits, no
 * unknown, missing or repeated key; the checks tk_consent_put makes),
 * encodes the result again and compares it with the input byte for byte.
 * No checksum: the files are replaced atomically, and a file damaged
 * otherwise either fails these checks or is a valid decision. The store
 * also checks that a record's name is the hash of its own fields. */
#ifndef TK_CONSENT_PRIV_H
#define TK_CONSENT_PRIV_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <tokenkit/consent.h>

#define TK_CONSENT_VERSION 1
/* Larger files are not read (a record with every field full is < 5 KiB). */
#define TK_CONSENT_RECORD_MAX 16384
/* 64 hex digits + NUL */
#define TK_CONSENT_NAME_LEN 64

/* The checks tk_consent_put makes: every string NUL-terminated within its
 * field; program absolute; token_serial and key_id not empty; key_id
 * lower-case hex of whole bytes; decision ONCE, ALWAYS or DENY. */
bool tk_consent_rec_ok(const tk_consent_rec_t *rec);

/* The file name of a decision (see above) in out (TK_CONSENT_NAME_LEN + 1
 * bytes). Errors: TK_ERR_INVALID_ARG (a field tk_consent_rec_ok would
 * refuse), TK_ERR_CRYPTO. */
int tk_consent_file_name(const char *program, uint32_t uid, const char *token_serial,
                         const char *key_id, char out[TK_CONSENT_NAME_LEN + 1]);
/* True when name looks like a record's name: 64 lower-case hex digits. */
bool tk_consent_name_ok(const char *name);

/* rec as a record file (malloc'ed, *len bytes). Errors: TK_ERR_INVALID_ARG
 * (!tk_consent_rec_ok), TK_ERR_NO_MEMORY. */
int tk_consent_rec_encode(const tk_consent_rec_t *rec, uint8_t **out, size_t *len);
/* A record file's bytes into *rec (cleared first, and on error). Errors:
 * TK_ERR_TRUNCATED, TK_ERR_TOO_LONG (over TK_CONSENT_RECORD_MAX),
 * TK_ERR_MALFORMED, TK_ERR_NOT_SUPPORTED (another format version),
 * TK_ERR_NO_MEMORY. */
int tk_consent_rec_decode(const uint8_t *p, size_t len, tk_consent_rec_t *rec);

#endif
