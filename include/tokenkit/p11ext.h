/* tokenkit: the PKCS#11 module's own interface, for programs that load
 * tokenkit-pkcs11.so and want what PKCS#11 does not carry: the tokenkit
 * tool lists the broker's tokens through it (PIN and PUK tries left, the
 * driver, each object's key size and usage, as `tokenkit tokens` shows
 * them for the readers it opens itself), the broker's readers with their
 * counters (`tokenkit readers`, `tokenkit diag`), sends its provisioning
 * commands to a card the broker holds (`tokenkit piv`, `openpgp`, `apdu`,
 * `attest`) and has it reset a reader (`tokenkit reset`).
 *
 * Reached the PKCS#11 3.0 way, without a symbol of its own:
 *
 *   CK_INTERFACE *i;
 *   C_GetInterface((CK_UTF8CHAR *)TK_P11EXT_NAME, &(CK_VERSION){1, 2}, &i, 0);
 *   const tk_p11ext_t *x = i->pFunctionList;
 *
 * (a vendor interface: PKCS#11 3.0 section 5.4 reserves "PKCS 11" and
 * leaves names that start with "Vendor " to vendors). Its functions need
 * no C_Initialize and are safe from any thread. */
#ifndef TOKENKIT_P11EXT_H
#define TOKENKIT_P11EXT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <tokenkit/card.h>
#include <tokenkit/slot.h>
#include <tokenkit/token.h>

#define TK_P11EXT_NAME "Vendor tokenkit"
#define TK_P11EXT_MAJOR 1
#define TK_P11EXT_MINOR 2

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
	TK_P11EXT_REFUSED,       /* (1.2) the broker's consent refused this program
	                          * the card (card_open; `tokenkit consent`) */
};

/* A card the broker holds, opened for the caller's own commands (1.2). */
typedef struct tk_p11ext_card tk_p11ext_card_t;
typedef struct tk_p11ext_card_info {
	uint32_t slot_id; /* the broker's */
	char reader[128];
	int err; /* TK_OK: open; else why not (TK_ERR_NO_CARD, TK_ERR_UNRESPONSIVE,
	          * TK_ERR_QUARANTINED, TK_ERR_TIMEOUT) */
	uint8_t atr[33];
	size_t atr_len;
	int protocol; /* 0 = T=0, 1 = T=1, -1 = unknown */
	tk_card_caps_t caps;
} tk_p11ext_card_info_t;

/* card_io's operations */
enum {
	TK_P11EXT_CARD_TRANSMIT = 1,
	TK_P11EXT_CARD_BEGIN,
	TK_P11EXT_CARD_END,
	TK_P11EXT_CARD_RESET_WARM,
	TK_P11EXT_CARD_RESET_COLD,
	TK_P11EXT_CARD_STATUS,
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
	/* Added in 1.2: the card in the broker's reader want (as for tokens),
	 * on a connection of its own, for commands the caller sends itself.
	 * A TK_P11EXT_* code; on TK_P11EXT_OK, info says what was found: when
	 * info->err is TK_OK, *out is the card (close with card_close), else
	 * *out is NULL. Within the broker deadline. */
	int (*card_open)(const char *want, tk_p11ext_card_t **out, tk_p11ext_card_info_t *info);
	/* One operation on it (TK_P11EXT_CARD_*): TRANSMIT sends cmd and puts
	 * the card's raw answer (SW1 SW2 included) into resp; BEGIN and END
	 * bracket a transaction (no other program's command comes in
	 * between; the broker lets it go when the next operation does not
	 * come within 60 s); RESET_* reset the card; STATUS: is it still
	 * there. A tk_err, as tk_card_transmit's; TK_ERR_NO_SERVICE when the
	 * broker did not answer (the card is then closed for good: open it
	 * again). Ends within timeout_ms (> 0) and the broker deadline. */
	int (*card_io)(tk_p11ext_card_t *c, int op, const uint8_t *cmd, size_t cmd_len,
	               uint8_t *resp, size_t resp_cap, size_t *resp_len, int timeout_ms);
	void (*card_close)(tk_p11ext_card_t *c);
	/* A forced recovery of the broker's reader want (as for tokens): a
	 * warm reset, or a power cycle (cold), as tk_slotmgr_reset runs it
	 * there. A TK_P11EXT_* code; on TK_P11EXT_OK *err is its outcome and
	 * *rec its record (start_us 0: the broker's clock). Within the broker
	 * deadline and the recovery's own (up to four transmit deadlines). */
	int (*reader_reset)(const char *want, bool cold, int *err, tk_recovery_t *rec);
	/* PIN entry on the pad of the reader the card is in (the card's
	 * info->caps say which entries it has), as tk_card_pinpad: the
	 * card's answer into resp. A tk_err as card_io's; ends within
	 * timeout_ms (the user's typing included) and the broker deadline. */
	int (*card_pinpad)(tk_p11ext_card_t *c, const tk_card_pinpad_t *req, uint8_t *resp,
	                   size_t resp_cap, size_t *resp_len, int timeout_ms);
} tk_p11ext_t;

#endif
