/* tokenkit: the reader backend interface (private).
 *
 * A backend (PC/SC; USB CCID readers over libusb and the in-process virtual
 * reader, both as plugins; test and fuzz readers) is a table of functions
 * over two kinds of object:
 *
 * - the backend itself (void *be): enumerates readers and waits for changes.
 *   Only the slot manager's monitor thread calls enumerate/wait_change;
 *   cancel may be called from any thread to cut a wait short.
 * - a connection (void *conn) to the card in one reader, made by connect.
 *   Only that reader's worker thread uses a connection. A connection is
 *   independent of every other connection and of the monitor (PC/SC: its own
 *   SCARDCONTEXT), so a call that never returns blocks nothing else.
 *
 * Calls may block (a stalled card blocks transmit forever); deadlines are
 * enforced by the slot manager, outside the blocked thread. Errors are
 * tk_err values; TK_ERR_NO_SERVICE from any call means "the service is gone,
 * make a new context and rediscover". */
#ifndef TK_READER_H
#define TK_READER_H

#include <tokenkit/common.h>
#include <tokenkit/card.h>

#define TK_READER_NAME_MAX 128
#define TK_READER_EXCHANGE_MAX 24
#define TK_READER_ATR_MAX 33

typedef struct tk_reader_desc {
	char name[TK_READER_NAME_MAX];
	bool card_present;
	bool card_mute; /* present but did not answer the reset */
	bool exclusive; /* another program holds it exclusively */
	uint8_t atr[TK_READER_ATR_MAX];
	size_t atr_len;
	uint32_t event_count; /* changes on each insertion/removal (0 if unknown) */
	/* What the backend knows of the reader itself (for tk_slot_info_t):
	 * how it carries APDUs (CCID: "extended APDU", "short APDU", "TPDU";
	 * "" unknown) and how many slots the physical reader has (0 unknown). */
	char exchange[TK_READER_EXCHANGE_MAX];
	uint8_t reader_slots;
} tk_reader_desc_t;

typedef struct tk_reader_caps {
	bool extended_apdu;
	size_t max_cmd, max_resp;
	bool pin_pad_verify, pin_pad_modify;
	bool can_control; /* SCardControl-like escape works */
} tk_reader_caps_t;

typedef struct tk_reader_ops {
	const char *name; /* "pcsc" */

	/* Create / destroy the backend. config is the backend's part of the
	 * reader spec (tk_slotmgr_opts_t.readers: after "NAME:"), or NULL.
	 * open may fail with TK_ERR_NO_SERVICE only if it cannot work at all;
	 * a daemon that is not running yet is reported by enumerate.
	 * TK_ERR_INVALID_ARG: a config the backend does not understand. */
	int (*open)(void **be, const char *config);
	void (*close)(void *be);

	/* List readers and their card state. *descs is malloc'd (free()).
	 * TK_ERR_NO_SERVICE: daemon unreachable; the backend makes a new
	 * context on the next call. */
	int (*enumerate)(void *be, tk_reader_desc_t **descs, size_t *count);
	/* Wait up to timeout_ms until the reader list or a card state differs
	 * from what the last enumerate returned. TK_OK: something changed;
	 * TK_ERR_TIMEOUT; TK_ERR_CANCELLED; TK_ERR_NO_SERVICE. */
	int (*wait_change)(void *be, int timeout_ms);
	/* Make a running or the next wait_change return TK_ERR_CANCELLED.
	 * Any thread. */
	void (*cancel)(void *be);

	/* Connect (power on) to the card in a reader, shared mode, any
	 * protocol. atr gets up to TK_READER_ATR_MAX bytes; *protocol 0 (T=0)
	 * or 1 (T=1). Errors: TK_ERR_NO_CARD, TK_ERR_UNRESPONSIVE, TK_ERR_SHARING,
	 * TK_ERR_NO_READER, TK_ERR_NO_SERVICE. */
	int (*connect)(void *be, const char *reader, void **conn, uint8_t *atr, size_t *atr_len,
	               int *protocol);
	/* Response includes SW1 SW2. A "success" shorter than 2 bytes is
	 * returned as TK_ERR_COMM. TK_ERR_CARD_RESET: someone reset the card;
	 * the caller reconnects (reset with cold == false, leave). */
	int (*transmit)(void *conn, const uint8_t *cmd, size_t cmd_len, uint8_t *resp,
	                size_t resp_cap, size_t *resp_len);
	int (*control)(void *conn, uint32_t code, const uint8_t *in, size_t in_len, uint8_t *out,
	               size_t out_cap, size_t *out_len);
	/* how: 0 = reconnect leaving the card as is (clears a "reset by
	 * someone else" condition), 1 = warm reset, 2 = cold reset (power
	 * cycle). Updates atr/protocol. */
	int (*reset)(void *conn, int how, uint8_t *atr, size_t *atr_len, int *protocol);
	int (*begin)(void *conn);
	int (*end)(void *conn);
	/* Card still there and connected? TK_OK, TK_ERR_CARD_REMOVED, TK_ERR_CARD_RESET... */
	int (*status)(void *conn);
	void (*caps)(void *conn, tk_reader_caps_t *caps);
	/* Disconnect and free; safe to call on a connection whose context died. */
	void (*disconnect)(void *conn);

	/* Optional members (NULL: the backend has none). */

	/* PIN entry on the reader's pad (caps.pin_pad_verify / _modify): the
	 * reader reads the PIN from its keys, puts it into req->apdu as req
	 * says and sends the command; resp gets the card's answer (SW
	 * included). Blocks while the user types (req->timeout_s). Errors:
	 * TK_ERR_NOT_SUPPORTED (no such pad function), TK_ERR_TIMEOUT (nobody
	 * typed), TK_ERR_CANCELLED (cancel pressed), transport errors. */
	int (*pinpad)(void *conn, const tk_card_pinpad_t *req, uint8_t *resp, size_t cap,
	              size_t *rlen);
	/* The recovery steps of the backend's own transport (enum
	 * tk_recovery_step: TK_STEP_CLEAR_HALT, TK_STEP_ABORT, TK_STEP_USB_RESET
	 * for USB readers), on the reader called name. fault_step says which
	 * step the last failure on that reader needs first (0: none of them,
	 * the card-level ladder is the cure); recover runs one step. Both are
	 * called from the reader's worker. recover errors: TK_ERR_NOT_SUPPORTED
	 * (not a step of this backend), TK_ERR_BUSY (the step would disturb
	 * another reader in use, e.g. a USB reset of a composite device),
	 * TK_ERR_NO_READER, transport errors. After a step that took the
	 * card's power (a USB reset), a reset(TK_READER_RECONNECT) on the
	 * reader's connection powers it again. */
	int (*fault_step)(void *be, const char *name);
	int (*recover)(void *be, const char *name, int step);
} tk_reader_ops_t;

enum { TK_READER_RECONNECT = 0, TK_READER_WARM_RESET = 1, TK_READER_COLD_RESET = 2 };

/* The PC/SC backend (core/pcsc.c). */
extern const tk_reader_ops_t tk_reader_pcsc_ops;

/* The backend table (core/readers.c): "pcsc" is built in; backends added
 * with tk_reader_backend_register come next; any other name is looked up
 * as a reader plugin (plugin.h: reader-NAME.so): "ccid", USB CCID readers
 * over libusb (ccid/backend.c), and "vcard", the in-process virtual reader
 * (tools/vcard). */

/* Find the backend called name (name_len bytes; need not be terminated).
 * Errors: TK_ERR_NOT_FOUND (logged: where a plugin was looked for and what
 * to set), TK_ERR_INVALID_ARG (a plugin whose table lacks a function). */
int tk_reader_backend_find(const char *name, size_t name_len, const tk_reader_ops_t **out);
/* Add a backend without a plugin (tests and tools that link one, e.g. the
 * virtual reader's unit tests). Registering the same table again is fine.
 * Errors: TK_ERR_EXISTS (another table has that name), TK_ERR_NO_MEMORY
 * (table full), TK_ERR_INVALID_ARG. */
int tk_reader_backend_register(const tk_reader_ops_t *ops);

/* ---- reader specs (tk_slotmgr_opts_t.readers, $TOKENKIT_READERS) ---------
 *   SPEC := ITEM ( "+" ITEM )*
 *   ITEM := NAME [ "?" ] [ ":" CONFIG ]      NAME := [a-z0-9_]{1,32}
 * "+" separates backends (";" and "," belong to the configs, e.g. the
 * virtual reader's). A "+" inside a CONFIG ends it only where a NAME (and
 * "?") follows and then ":", "+" or the end, so a path holding "+" stays
 * whole. "?" marks a backend as optional: one whose plugin is missing or
 * that cannot start (no USB stack) is left out with a line at info level,
 * where a backend named without it makes the manager fail (its plugin is
 * missing or refused) or is left out with a warning (cannot start). */
#define TK_READER_SPEC_MAX 4
#define TK_READER_BACKEND_NAME_MAX 32

typedef struct tk_reader_spec_item {
	char name[TK_READER_BACKEND_NAME_MAX + 1];
	bool optional;
	const char *config; /* NULL: none; points into the parsed string */
} tk_reader_spec_item_t;

/* Split spec (modified in place: separators become NULs) into up to max
 * items. Errors: TK_ERR_INVALID_ARG (empty, a bad name, the same backend
 * twice), TK_ERR_TOO_LONG (more than max items). *n is 0 on error. */
int tk_reader_spec_parse(char *spec, tk_reader_spec_item_t *items, size_t max, size_t *n);

#endif
