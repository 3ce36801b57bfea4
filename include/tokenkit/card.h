/* tokenkit: card sessions — what drivers use to talk to a card.
 *
 * A tk_card_t is a connection to the card currently in one reader, owned by
 * that reader's worker in the slot manager. Every call is submitted to the
 * worker and waited for with a deadline enforced by the caller's thread, so a
 * card or daemon that never answers costs the caller at most its deadline
 * (plus 100 ms), never a hang. Drivers never see PC/SC or libusb. */
#ifndef TOKENKIT_CARD_H
#define TOKENKIT_CARD_H

#include <tokenkit/common.h>
#include <tokenkit/apdu.h>

typedef struct tk_card tk_card_t;

/* Default deadline for one APDU exchange, milliseconds. */
#define TK_CARD_DEFAULT_TIMEOUT_MS 5000

/* Take and drop references; tk_card_unref accepts NULL and sets *cp = NULL.
 * A reference keeps the handle valid after the card is gone; calls on it
 * then fail with TK_ERR_CARD_REMOVED. */
TK_EXPORT tk_card_t *tk_card_ref(tk_card_t *c);
TK_EXPORT void tk_card_unref(tk_card_t **cp);

/* Send one raw command APDU and receive the raw response (data + SW1 SW2).
 * timeout_ms <= 0 means TK_CARD_DEFAULT_TIMEOUT_MS.
 * Errors: TK_ERR_TIMEOUT (deadline passed; the reader goes to recovery),
 * TK_ERR_CARD_REMOVED, TK_ERR_CARD_RESET (card was reset by someone else:
 * this command did not reach the card; re-select and log in again, the next
 * call goes through), TK_ERR_COMM
 * (response shorter than 2 bytes, or transport failure), TK_ERR_NO_SERVICE,
 * TK_ERR_BUFFER_TOO_SMALL; over the slot manager also TK_ERR_QUARANTINED
 * (the reader is being recovered or re-probed; answered at once),
 * TK_ERR_UNRESPONSIVE (a call ahead of this one is stuck) and
 * TK_ERR_READER_GONE (reader or PC/SC service away; the same card may come
 * back and the handle then works again, see tk_card_rebinds). After a
 * failed transmit the reader recovers by itself; a read-only command
 * (tk_apdu_is_read_only) may have been retried once transparently, a
 * state-changing one never. */
TK_EXPORT int tk_card_transmit(tk_card_t *c, const uint8_t *cmd, size_t cmd_len, uint8_t *resp,
                               size_t resp_cap, size_t *resp_len, int timeout_ms);

/* Exchange a structured APDU with command chaining, GET RESPONSE (61xx) and
 * wrong-Le (6Cxx) handling, using extended length only when both the reader
 * and the card allow it. resp receives the data (without SW); *sw the final
 * status word. A status word other than 9000 is not an error here: callers
 * decide (tk_err_from_sw()). */
TK_EXPORT int tk_card_apdu(tk_card_t *c, const tk_apdu_t *apdu, uint8_t *resp, size_t resp_cap,
                           size_t *resp_len, uint16_t *sw);

/* tk_card_apdu in short APDUs (command chaining, GET RESPONSE) whatever
 * the reader and the card announce: a driver asks with it whether a card
 * that failed an extended APDU parses the short form. Errors as
 * tk_card_apdu. */
TK_EXPORT int tk_card_apdu_short(tk_card_t *c, const tk_apdu_t *apdu, uint8_t *resp,
                                 size_t resp_cap, size_t *resp_len, uint16_t *sw);

/* From now on tk_card_apdu on this handle uses short APDUs only, and
 * tk_card_caps reports extended_apdu false: for a card whose ATR announces
 * extended Lc/Le but that parses only short APDUs. It lasts as long as the
 * handle (the card insertion); a reset does not teach a card new tricks. */
TK_EXPORT void tk_card_use_short_apdus(tk_card_t *c);

/* Exclusive access for a sequence of APDUs (PC/SC transaction). Nested
 * begin/end pairs count. Errors as tk_card_transmit. */
TK_EXPORT int tk_card_begin(tk_card_t *c);
TK_EXPORT int tk_card_end(tk_card_t *c);

/* Reset the card: warm (cold == false) or a power cycle (cold). The
 * generation increases, so every driver re-selects its application.
 * Errors as tk_card_transmit, and TK_ERR_NOT_SUPPORTED where the reader
 * cannot reset. */
TK_EXPORT int tk_card_reset(tk_card_t *c, bool cold);

/* The ATR of the card at connect time. */
TK_EXPORT const uint8_t *tk_card_atr(const tk_card_t *c, size_t *len);
/* The reader's name. */
TK_EXPORT const char *tk_card_reader_name(const tk_card_t *c);
/* Increases each time the card was reset or reconnected (by us or anyone
 * else): drivers compare it to know the applet must be selected again and
 * the login state is gone. */
TK_EXPORT uint64_t tk_card_generation(const tk_card_t *c);
/* True while this card is still in its reader. */
TK_EXPORT bool tk_card_present(const tk_card_t *c);

/* The card insertion this handle belongs to (tk_event_t.card_seq; 0 for
 * cards outside a slot manager). It stays the same when the same card
 * (same reader, same ATR) is taken back after a PC/SC service restart; the
 * generation then increases, like after a reset. */
TK_EXPORT uint64_t tk_card_seq(const tk_card_t *c);
/* How many times this handle was re-bound to a new connection after a
 * service restart. The token layer checks the card's identity (GUID,
 * serial) when this changes. */
TK_EXPORT uint64_t tk_card_rebinds(const tk_card_t *c);

/* Reader capabilities for this card. */
typedef struct tk_card_caps {
	bool extended_apdu; /* reader and card both accept extended length (and
	                     * the card was not found to misreport it) */
	size_t max_cmd;     /* largest command APDU the reader takes */
	size_t max_resp;    /* largest response APDU the reader returns */
	/* The reader has a PIN pad that can verify (modify) a PIN for this
	 * card (tk_card_pinpad). Added in 0.1 with the CCID backend. */
	bool pin_pad_verify, pin_pad_modify;
} tk_card_caps_t;
TK_EXPORT void tk_card_caps(const tk_card_t *c, tk_card_caps_t *caps);

/* PIN entry on the reader's PIN pad: the reader reads the PIN from its own
 * keys, writes it into the command template apdu as described below, and
 * sends the command to the card; the PIN never passes through the host.
 * The fields are those of USB CCID 1.1 6.1.11 (PC_to_RDR_Secure) and of
 * PC/SC part 10 (PIN_VERIFY_STRUCTURE, PIN_MODIFY_STRUCTURE). */
enum tk_pinpad_op {
	TK_PINPAD_VERIFY = 0,
	TK_PINPAD_MODIFY = 1,
};
typedef struct tk_card_pinpad {
	int op;                /* enum tk_pinpad_op */
	uint8_t timeout_s;     /* how long the reader waits for the user (0: its default) */
	uint8_t format;        /* bmFormatString: units, PIN position, justification, type */
	uint8_t block;         /* bmPINBlockString: length field size, PIN block size */
	uint8_t length_format; /* bmPINLengthFormat */
	uint8_t min_len;       /* digits, at least */
	uint8_t max_len;       /* digits, at most */
	uint8_t offset_old;    /* modify: where the old PIN goes (bInsertionOffsetOld) */
	uint8_t offset_new;    /* modify: where the new PIN goes (bInsertionOffsetNew) */
	uint8_t confirm;       /* modify: bConfirmPIN */
	const uint8_t *apdu;   /* the command, PIN bytes pre-filled with their padding */
	size_t apdu_len;       /* 5 .. 261 */
} tk_card_pinpad_t;

/* Send req's command with the PIN typed on the reader's pad; resp gets the
 * card's raw answer (data + SW1 SW2). The call waits for the user (up to
 * req->timeout_s, 30 s when 0) on top of the usual deadline. Errors:
 * TK_ERR_NOT_SUPPORTED (no PIN pad, or not this function), TK_ERR_TIMEOUT
 * (nobody typed in time), TK_ERR_CANCELLED (the user cancelled on the
 * pad), TK_ERR_INVALID_ARG, and the errors of tk_card_transmit. Never
 * repeated by the recovery ladder. */
TK_EXPORT int tk_card_pinpad(tk_card_t *c, const tk_card_pinpad_t *req, uint8_t *resp,
                             size_t resp_cap, size_t *resp_len);

/* A card over a transport of the caller's own, outside any slot manager
 * (the tokenkit tool's cards held by the broker, reached through the
 * module's own interface). Every function gets the caller's deadline
 * (milliseconds, > 0) and must return by then: the card front waits in
 * the function itself. transmit returns the raw response (SW1 SW2
 * included) and tk_card_transmit's errors; begin and end bracket a
 * transaction (called for the outermost tk_card_begin / tk_card_end
 * only); reset: tk_card_reset; present: tk_card_present. Members other
 * than transmit may be NULL (TK_ERR_NOT_SUPPORTED, "present"). release is
 * called once, when the last reference goes (not when tk_card_new_io
 * fails). Added in 0.2. */
typedef struct tk_card_io {
	int (*transmit)(void *ctx, const uint8_t *cmd, size_t cmd_len, uint8_t *resp,
	                size_t resp_cap, size_t *resp_len, int timeout_ms);
	int (*begin)(void *ctx, int timeout_ms);
	int (*end)(void *ctx, int timeout_ms);
	int (*reset)(void *ctx, bool cold, int timeout_ms);
	bool (*present)(void *ctx);
	void (*release)(void *ctx);
	/* PIN entry on the reader's pad (tk_card_pinpad; caps say which);
	 * timeout_ms covers the user's typing. NULL: no pad. */
	int (*pinpad)(void *ctx, const tk_card_pinpad_t *req, uint8_t *resp, size_t resp_cap,
	              size_t *resp_len, int timeout_ms);
} tk_card_io_t;

/* Make a card over io (ctx its argument) for the reader called reader,
 * with the card's ATR (atr_len <= 33) and the reader's caps (NULL: short
 * APDUs). Errors: TK_ERR_INVALID_ARG, TK_ERR_NO_MEMORY. */
TK_EXPORT int tk_card_new_io(const char *reader, const uint8_t *atr, size_t atr_len,
                             const tk_card_caps_t *caps, const tk_card_io_t *io, void *ctx,
                             tk_card_t **out);

#endif
