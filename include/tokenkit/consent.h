/* tokenkit: per-program consent for private-key use.
 *
 * The broker (tokenkitd) asks before a program uses a private key for the
 * first time, and keeps the answer here: one decision per program
 * (executable path and uid), token (serial number) and key (CKA_ID). The
 * CLI lists and forgets decisions (`tokenkit consent list|reset`), so no
 * "deny" is ever permanent.
 *
 * The store is a private directory beside the token registry:
 * $XDG_STATE_HOME/tokenkit/consent (default
 * ~/.local/state/tokenkit/consent), 0700, one file per decision, 0600,
 * written atomically (a crash leaves the old decision or the new one). A
 * file that does not parse is skipped with a warning naming it. Not used at
 * all in a set-uid or set-gid process (TK_ERR_NOT_SUPPORTED).
 *
 * Thread safety: a handle is used by one thread at a time; handles are
 * independent (also across processes). */
#ifndef TOKENKIT_CONSENT_H
#define TOKENKIT_CONSENT_H

#include <tokenkit/common.h>

typedef struct tk_consent tk_consent_t;

enum tk_consent_decision {
	TK_CONSENT_NONE = 0,   /* never asked (tk_consent_get: TK_ERR_NOT_FOUND) */
	TK_CONSENT_ONCE = 1,   /* allowed for one program run; kept for the list only */
	TK_CONSENT_ALWAYS = 2, /* allowed from now on */
	TK_CONSENT_DENY = 3,   /* refused from now on (until reset) */
};

/* Field limits (bytes, without the terminating NUL). */
#define TK_CONSENT_PROGRAM_MAX 4095
#define TK_CONSENT_TOKEN_MAX 64 /* serial number or label */
#define TK_CONSENT_KEY_MAX 128  /* key id (CKA_ID) as lower-case hex */

typedef struct tk_consent_rec {
	char program[TK_CONSENT_PROGRAM_MAX + 1]; /* absolute executable path */
	uint32_t uid;
	char token_serial[TK_CONSENT_TOKEN_MAX + 1];
	char token_label[TK_CONSENT_TOKEN_MAX + 1];
	char key_id[TK_CONSENT_KEY_MAX + 1]; /* hex */
	char key_label[TK_CONSENT_TOKEN_MAX + 1];
	int decision;     /* enum tk_consent_decision */
	uint64_t time_us; /* when decided, microseconds since the epoch */
} tk_consent_rec_t;

/* "once", "always", "deny" ("none" for TK_CONSENT_NONE, "?" otherwise). */
TK_EXPORT const char *tk_consent_decision_name(int decision);

/* Open the store at dir (NULL: the default above), creating it when
 * missing. Errors: TK_ERR_NOT_SUPPORTED (set-uid/set-gid), TK_ERR_NOT_FOUND
 * (no home directory), TK_ERR_UNSAFE (not a private directory of ours),
 * TK_ERR_TOO_LONG, TK_ERR_IO, TK_ERR_NO_MEMORY. */
TK_EXPORT int tk_consent_open(const char *dir, tk_consent_t **out);
TK_EXPORT void tk_consent_free(tk_consent_t **cp);
TK_EXPORT const char *tk_consent_path(const tk_consent_t *c);

/* The decision for (program, uid, token serial, key id), in *rec (cleared
 * on error). program is absolute, token_serial not empty, key_id lower-case
 * hex. Errors: TK_ERR_NOT_FOUND (none), TK_ERR_INVALID_ARG, TK_ERR_MALFORMED
 * or TK_ERR_TRUNCATED (a record that does not parse: logged),
 * TK_ERR_NOT_SUPPORTED (a record of another format version: logged),
 * TK_ERR_TOO_LONG / TK_ERR_UNSAFE (not a record file of ours: logged),
 * TK_ERR_IO. Whatever the error, there is no decision to follow: ask. */
TK_EXPORT int tk_consent_get(tk_consent_t *c, const char *program, uint32_t uid,
                             const char *token_serial, const char *key_id, tk_consent_rec_t *rec);

/* Store rec (replacing the decision for the same program, uid, token serial
 * and key id); rec->time_us 0 means now. Every string must end (NUL) within
 * its field; the labels may be empty. Errors: TK_ERR_INVALID_ARG (empty or
 * over-long fields, a program path that is not absolute, a key id that is
 * not lower-case hex of whole bytes, an unknown decision), TK_ERR_DISK_FULL,
 * TK_ERR_UNSAFE (a directory in the record's place), TK_ERR_IO. */
TK_EXPORT int tk_consent_put(tk_consent_t *c, const tk_consent_rec_t *rec);

/* Every decision, oldest first (*recs NULL when there is none). Records
 * that do not parse are skipped with a warning naming the file. Free with
 * tk_consent_list_free. Errors: TK_ERR_INVALID_ARG, TK_ERR_IO,
 * TK_ERR_NO_MEMORY. */
TK_EXPORT int tk_consent_list(tk_consent_t *c, tk_consent_rec_t **recs, size_t *count);
TK_EXPORT void tk_consent_list_free(tk_consent_rec_t **recs);

/* Forget the decisions of program (exactly that path; NULL: every program)
 * on token (equal to its serial number or to its label; NULL: every
 * token); *removed (may be NULL) counts them. A reset of everything (both
 * NULL) also removes the record files that do not parse (not counted).
 * Errors: TK_ERR_INVALID_ARG, TK_ERR_IO, TK_ERR_NO_MEMORY. */
TK_EXPORT int tk_consent_reset(tk_consent_t *c, const char *program, const char *token,
                               size_t *removed);

#endif
