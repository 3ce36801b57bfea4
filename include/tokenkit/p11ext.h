/* tokenkit: the PKCS#11 module's own interface, for programs that load
 * tokenkit-pkcs11.so and want what PKCS#11 does not carry: the tokenkit
 * tool lists the broker's tokens through it (PIN and PUK tries left, the
 * driver, each object's key size and usage, as `tokenkit tokens` shows
 * them for the readers it opens itself), and the broker's readers with
 * their counters (`tokenkit readers`, `tokenkit diag`).
 *
 * Reached the PKCS#11 3.0 way, without a symbol of its own:
 *
 *   CK_INTERFACE *i;
 *   C_GetInterface((CK_UTF8CHAR *)TK_P11EXT_NAME, &(CK_VERSION){1, 1}, &i, 0);
 *   const tk_p11ext_t *x = i->pFunctionList;
 *
 * (a vendor interface: PKCS#11 3.0 section 5.4 reserves "PKCS 11" and
 * leaves names that start with "Vendor " to vendors). Its functions need
 * no C_Initialize and are safe from any thread. */
#ifndef TOKENKIT_P11EXT_H
#define TOKENKIT_P11EXT_H

#include <stddef.h>
#include <stdint.h>

#include <tokenkit/slot.h>
#include <tokenkit/token.h>

#define TK_P11EXT_NAME "Vendor tokenkit"
#define TK_P11EXT_MAJOR 1
#define TK_P11EXT_MINOR 1

/* One reader as the broker sees it. */
typedef struct tk_p11ext_token {
	uint32_t slot_id; /* the broker's slot id (as `tokenkit readers` there) */
	char reader[128];
	int err; /* TK_OK: the token is open, info and objs hold it;
	          * else why not (TK_ERR_NO_CARD, TK_ERR_NOT_SUPPORTED:
	          * a card no driver takes, TK_ERR_UNRESPONSIVE,
	          * TK_ERR_READER_GONE, TK_ERR_IO) */
	tk_token_info_t info;
	const tk_object_t *objs; /* certificates with their DER (der, der_len) */
	size_t nobjs;
	void *priv; /* the module's: freed by tokens_free */
} tk_p11ext_token_t;

enum {
	TK_P11EXT_OK,
	TK_P11EXT_NO_BROKER,     /* none answers, TOKENKIT_BROKER=off, or
	                          * TOKENKIT_READERS names the readers for this
	                          * process: open the readers yourself */
	TK_P11EXT_BROKER_FAILED, /* one answered, then failed (logged) */
	TK_P11EXT_NO_READER,     /* no reader of the name asked for */
};

typedef struct tk_p11ext {
	/* First, as in every PKCS#11 interface: TK_P11EXT_MAJOR.MINOR. */
	struct {
		unsigned char major, minor;
	} version;
	/* The broker's tokens: every reader with a card, or only the one named
	 * (want: a reader name or part of one, as tk_slotmgr_find matches it;
	 * NULL: all). The call ends within the broker deadline
	 * ($TOKENKIT_BROKER_TIMEOUT_MS, as every call of the module's). A
	 * TK_P11EXT_* code; on TK_P11EXT_OK *out (free with tokens_free) and
	 * *count. */
	int (*tokens)(const char *want, tk_p11ext_token_t **out, size_t *count);
	void (*tokens_free)(tk_p11ext_token_t *v, size_t count);
	/* Added in 1.1: the broker's readers with their supervision counters,
	 * as tk_slotmgr_diag gives them there: every reader that is there, or
	 * only the one named (want as for tokens). The history is left empty
	 * (nhistory 0; every process, the broker too, appends its recoveries
	 * to the recovery log) and last_err_us 0. *out is malloc'd: free() it.
	 * Within the broker deadline; a TK_P11EXT_* code. */
	int (*readers)(const char *want, tk_slot_diag_t **out, size_t *count);
} tk_p11ext_t;

#endif
