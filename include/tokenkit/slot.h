/* tokenkit: the slot manager.
 *
 * Owns every reader of its backends (PC/SC; USB CCID readers over libusb;
 * the in-process virtual reader), several at once, each followed by its own
 * monitor thread. It runs one worker thread per reader, follows hotplug and
 * delivers ordered events to subscribers. No lock is held across card I/O
 * except the reader's own worker; a reader that hangs stalls only its own
 * queue. */
#ifndef TOKENKIT_SLOT_H
#define TOKENKIT_SLOT_H

#include <tokenkit/common.h>
#include <tokenkit/card.h>

typedef struct tk_slotmgr tk_slotmgr_t;

/* Reader (slot) states. */
enum tk_slot_state {
	TK_SLOT_ABSENT = 0,  /* reader gone */
	TK_SLOT_EMPTY,       /* reader present, no card */
	TK_SLOT_PROBING,     /* card present, being connected */
	TK_SLOT_MUTE,        /* card present but does not answer */
	TK_SLOT_VALID,       /* card connected and answering */
	TK_SLOT_RECOVERING,  /* recovery ladder running */
	TK_SLOT_QUARANTINED, /* gave up for now; re-probed with back-off */
};
TK_EXPORT const char *tk_slot_state_name(int state);

enum tk_event_type {
	TK_EVENT_READER_ADDED = 1,
	TK_EVENT_READER_REMOVED,
	TK_EVENT_CARD_INSERTED,
	TK_EVENT_CARD_REMOVED,
	TK_EVENT_STATE_CHANGED,
	TK_EVENT_SERVICE_LOST,     /* a backend's service (the PC/SC daemon) went away */
	TK_EVENT_SERVICE_RESTORED, /* and came back (tk_event_t.backend says which) */
	TK_EVENT_RECOVERY,         /* a recovery finished on slot_id (details: tk_slotmgr_diag);
	                              state is the slot's state after it */
};
TK_EXPORT const char *tk_event_type_name(int type);

typedef struct tk_event {
	int type;           /* enum tk_event_type */
	uint64_t seq;       /* increases by one per event, per manager */
	uint32_t slot_id;   /* stable for the manager's life: a reader that comes back by name gets
	                       its old id */
	const char *reader; /* reader name (valid during the callback) */
	int old_state, state; /* enum tk_slot_state */
	uint64_t card_seq;    /* identifies one insertion; 0 when no card */
	const uint8_t *atr;   /* for CARD_INSERTED / STATE_CHANGED to VALID */
	size_t atr_len;
	int64_t time_us; /* CLOCK_MONOTONIC */
	/* The backend of the reader (or of the service): "pcsc", "ccid",
	 * "vcard"; valid during the callback. Added in 0.1. */
	const char *backend;
} tk_event_t;

/* Called in order, from the manager's event thread (never from a reader
 * worker and never with a manager lock held, so it may call back into the
 * manager). */
typedef void (*tk_event_fn)(void *ctx, const tk_event_t *ev);

typedef struct tk_slotmgr_opts {
	int transmit_timeout_ms; /* default deadline per APDU (0: TK_CARD_DEFAULT_TIMEOUT_MS) */
	/* Where readers come from: NULL means $TOKENKIT_READERS (ignored in
	 * set-uid programs), else default_readers, else "pcsc". A spec is one
	 * backend or several joined by "+" ("pcsc+ccid"), each NAME[?][:CONFIG];
	 * "?" marks one that is left out quietly when its plugin is missing or
	 * it cannot start. The backends, one monitor thread each:
	 *   "pcsc"            readers of the PC/SC daemon (pcsc-lite)
	 *   "ccid"            USB CCID readers driven directly over libusb, from
	 *                     the reader plugin reader-ccid.so (<libdir>/tokenkit/
	 *                     plugins, or $TOKENKIT_PLUGIN_PATH). It claims the
	 *                     USB interface of each free reader for as long as
	 *                     the manager lives (no other program can use the
	 *                     reader meanwhile); a reader another program holds
	 *                     (pcscd, scdaemon) is left to it, not listed, and
	 *                     named once in a warning: with "pcsc+ccid" pcscd's
	 *                     readers appear through PC/SC. Scanned after the
	 *                     backends before it in the spec (so a pcscd started
	 *                     on demand takes its readers first).
	 *   "vcard:CARD[;CARD...]"  in-process virtual readers, one virtual PIV
	 *                     card each, with fault injection (no pcscd), from
	 *                     the reader plugin reader-vcard.so (found through
	 *                     $TOKENKIT_PLUGIN_PATH, ignored in set-uid programs,
	 *                     or <libdir>/tokenkit/plugins); CARD is
	 *                     comma-separated key=value: state=PATH (the card's
	 *                     state file; none: a fresh in-memory card),
	 *                     control=PATH (UNIX socket taking the fault specs of
	 *                     tokenkit-vcard), latency=none|yubikey5, bwt=MS (how
	 *                     long the reader waits for a mute card; 1000),
	 *                     empty (a reader with no card)
	 * An unknown spec, or a backend plugin that is missing or refused, makes
	 * tk_slotmgr_new fail with TK_ERR_INVALID_ARG (the reason is logged),
	 * unless the backend is marked "?". */
	const char *readers;
	/* Recovery (0: defaults). A quarantined reader is re-probed after
	 * backoff_min_ms, doubling up to backoff_max_ms (250 / 8000). One
	 * recovery step (reconnect, reset, probe) that takes longer than
	 * step_timeout_ms abandons the reader's worker and quarantines the
	 * reader until the call returns (default: transmit_timeout_ms). */
	int backoff_min_ms, backoff_max_ms;
	int step_timeout_ms;
	/* Finished recoveries are appended as JSON lines to this file; NULL:
	 * $TOKENKIT_RECOVERY_LOG, else the per-user default
	 * (tk_recovery_log_default_path); "": no log. */
	const char *recovery_log;
	/* The spec used when readers is NULL and $TOKENKIT_READERS is not set
	 * (NULL: "pcsc"). The tokenkit CLI passes "pcsc+ccid?"; the PKCS#11
	 * module keeps "pcsc" (README, "Reader backends"). Added in 0.1. */
	const char *default_readers;
	/* Carried transactions (0, the default: off). When > 0, an END that
	 * closes the only open transaction of a reader's connection leaves the
	 * reader's transaction (SCardBeginTransaction) open for up to 2 ms, and
	 * a BEGIN in this process within that time takes it over without a
	 * round trip to the reader's service; past the 2 ms the reader's
	 * worker ends it. One transaction is carried so for at most
	 * txn_carry_ms from its real beginning; the END after that ends it.
	 * For a process that alone uses its cards and serialises that use
	 * itself (tokenkitd --carry-transactions): while it keeps a card busy,
	 * another process gets the card only when it is left alone for longer
	 * (pcsc-lite looks for a free card every 100 ms). Added in 0.2. */
	int txn_carry_ms;
} tk_slotmgr_opts_t;
TK_EXPORT void tk_slotmgr_opts_init(tk_slotmgr_opts_t *o);

/* Create and start a manager. It discovers readers in the background; call
 * tk_slotmgr_wait_ready() to wait for the first full scan. Errors:
 * TK_ERR_NO_MEMORY. A missing PC/SC daemon is not an error: the manager
 * keeps trying and reports TK_EVENT_SERVICE_RESTORED when it appears. */
TK_EXPORT int tk_slotmgr_new(const tk_slotmgr_opts_t *opts, tk_slotmgr_t **out);
/* Stop all workers (abandoning any stuck in the backend) and free. */
TK_EXPORT void tk_slotmgr_free(tk_slotmgr_t **mp);
/* For a process on its way out: every call waiting for a card of this
 * manager (an APDU queued or under way, a transaction, a reset, a card
 * being connected) returns TK_ERR_CANCELLED now, and every later one at
 * once. The workers finish what is inside the reader driver by its own
 * deadline; nobody waits for it. Irreversible; tk_slotmgr_free still
 * frees. Added in 0.1. */
TK_EXPORT void tk_slotmgr_cancel(tk_slotmgr_t *m);
/* Wait until the first enumeration finished (or timeout). Returns TK_OK,
 * TK_ERR_TIMEOUT or TK_ERR_NO_SERVICE (daemon not reachable). */
TK_EXPORT int tk_slotmgr_wait_ready(tk_slotmgr_t *m, int timeout_ms);

/* Whether the manager's backend called name ("pcsc", "ccid", ...) works:
 * TK_OK (its last scan went through), TK_ERR_NO_SERVICE (its service is
 * not reachable: pcscd not running), TK_ERR_TIMEOUT (its first scan is not
 * over), TK_ERR_NOT_FOUND (not one of this manager's backends: not in the
 * spec, or left out). tk_slotmgr_wait_ready is TK_OK as soon as one
 * backend works; this tells which. Added in 0.1. */
TK_EXPORT int tk_slotmgr_backend_status(tk_slotmgr_t *m, const char *name);

/* Subscribe; returns a subscription id > 0 (or a tk_err). When replay is
 * true the callback first receives READER_ADDED / CARD_INSERTED events for
 * the current state. */
/* A callback must not call tk_slotmgr_free. tk_slotmgr_unsubscribe waits
 * for a callback running in another thread, so none runs after it returns. */
TK_EXPORT int tk_slotmgr_subscribe(tk_slotmgr_t *m, tk_event_fn fn, void *ctx, bool replay);
TK_EXPORT void tk_slotmgr_unsubscribe(tk_slotmgr_t *m, int id);

/* Wait until every event queued before this call has been delivered: the
 * callbacks of every subscriber have returned for it. With it a subscriber
 * knows its own state has caught up with tk_slotmgr_list() taken before.
 * Not from inside a callback. Errors: TK_ERR_TIMEOUT, TK_ERR_INVALID_ARG. */
TK_EXPORT int tk_slotmgr_sync(tk_slotmgr_t *m, int timeout_ms);

typedef struct tk_slot_info {
	uint32_t slot_id;
	char reader[128];
	int state; /* enum tk_slot_state */
	uint64_t card_seq;
	uint8_t atr[33];
	size_t atr_len;
	int protocol;       /* 0 = T=0, 1 = T=1, -1 = none */
	uint64_t transmits; /* APDUs sent on this reader */
	uint64_t errors;    /* failed transmits */
	/* How long the reader has been inside its current exchange with the
	 * card (APDU, reset, status, disconnect), in ms; 0 while it is in none.
	 * A card that answers keeps this near its round-trip time; one that
	 * does not answer makes it grow until the deadline. Connecting and
	 * starting a transaction are not counted: PC/SC holds both while
	 * another application's transaction lasts. */
	uint32_t busy_ms;
	/* Added in 0.1 with the several backends: */
	char backend[16];      /* "pcsc", "ccid", "vcard" */
	char exchange[24];     /* how the reader carries APDUs, where the backend
	                          knows it (CCID: "extended APDU", "short APDU",
	                          "TPDU"); "" */
	uint32_t reader_slots; /* slots of the physical reader (0: unknown) */
	bool pin_pad;          /* the reader verifies PINs on its own pad (known
	                          once the card is connected) */
} tk_slot_info_t;

/* Snapshot of all known slots (present readers first). *infos is
 * malloc'd; free() it. */
TK_EXPORT int tk_slotmgr_list(tk_slotmgr_t *m, tk_slot_info_t **infos, size_t *count);
/* Find a slot by reader name (exact, else unique prefix or substring). Errors: TK_ERR_NO_READER. */
TK_EXPORT int tk_slotmgr_find(tk_slotmgr_t *m, const char *name, uint32_t *slot_id);
TK_EXPORT int tk_slotmgr_info(tk_slotmgr_t *m, uint32_t slot_id, tk_slot_info_t *info);

/* A card session on the card now in slot_id (take with tk_card_unref).
 * Errors: TK_ERR_NO_READER, TK_ERR_NO_CARD, TK_ERR_UNRESPONSIVE,
 * TK_ERR_QUARANTINED, TK_ERR_TIMEOUT. */
TK_EXPORT int tk_slotmgr_card(tk_slotmgr_t *m, uint32_t slot_id, tk_card_t **card);

/* ---- Recovery and diagnostics ----------------------------------------
 * When a transmit fails (communication error, no answer by the deadline,
 * service gone) the reader's worker runs the recovery ladder for that
 * reader only, stopping at the first step after which a harmless probe
 * works: retry once (read-only commands only, see tk_apdu_is_read_only)
 * -> reconnect -> warm reset -> cold reset -> (USB readers) CLEAR_HALT ->
 * CCID ABORT -> USB device reset -> new PC/SC context -> quarantine with
 * back-off re-probes. A USB reader says which step its fault needs (a
 * halted endpoint: CLEAR_HALT; a reader that stopped answering: ABORT),
 * and the ladder starts there; a USB reset that would reset another
 * interface of the same device while that one is in use is not made (the
 * wedged interface's reader is quarantined alone). After any step but the
 * retry the card's generation increases (re-select; login state is gone).
 * A worker stuck inside the backend is abandoned and the reader
 * quarantined until the call returns; then the ladder continues. */
enum tk_recovery_step {
	TK_STEP_NONE = 0,
	TK_STEP_RETRY,     /* the failed read-only command, once more */
	TK_STEP_RECONNECT, /* reconnect, leaving the card as is */
	TK_STEP_WARM_RESET,
	TK_STEP_COLD_RESET, /* power cycle */
	TK_STEP_CONTEXT,    /* new PC/SC context and connection */
	TK_STEP_STUCK,      /* waited for a call stuck in the backend to return */
	TK_STEP_PROBE,      /* a back-off re-probe while quarantined */
	/* USB readers (added in 0.1): */
	TK_STEP_CLEAR_HALT, /* CLEAR_FEATURE(ENDPOINT_HALT) on the reader's pipes */
	TK_STEP_ABORT,      /* CCID ABORT of the command the reader is stuck in */
	TK_STEP_USB_RESET,  /* USB port reset of the device (power-cycles its cards) */
	TK_STEP_COUNT
};
TK_EXPORT const char *tk_recovery_step_name(int step);

/* True when the command APDU changes nothing on the card, so repeating it
 * is harmless: SELECT by AID, GET DATA (CA/CB), READ BINARY, READ RECORD,
 * GET RESPONSE, Yubico GET VERSION / GET SERIAL / GET METADATA, VERIFY
 * without data (status query). */
TK_EXPORT bool tk_apdu_is_read_only(const uint8_t *cmd, size_t len);

#define TK_RECOVERY_MAX_STEPS 12
#define TK_SLOT_DIAG_HISTORY 32

typedef struct tk_recovery_step_rec {
	int step;   /* enum tk_recovery_step */
	int result; /* TK_OK: the step and its probe worked */
	int64_t duration_us;
} tk_recovery_step_rec_t;

typedef struct tk_recovery {
	uint64_t id;      /* per slot, from 1 */
	int64_t start_us; /* CLOCK_MONOTONIC */
	int64_t wall_ms;  /* CLOCK_REALTIME, ms since the epoch */
	int fault;        /* the tk_err that started it */
	char what[32];    /* "transmit", "deadline", "forced", "forced-cold" */
	size_t nsteps;    /* steps[] beyond TK_RECOVERY_MAX_STEPS are counted here only */
	tk_recovery_step_rec_t steps[TK_RECOVERY_MAX_STEPS];
	int cured_by; /* the step that worked, TK_STEP_NONE if none */
	int outcome;  /* TK_OK, or why it ended (card removed, reader gone...) */
	int64_t duration_us;
	uint32_t probes; /* re-probes while quarantined */
} tk_recovery_t;

typedef struct tk_slot_diag {
	tk_slot_info_t info;
	uint64_t generation; /* resets and reconnects seen on this reader */
	uint64_t rebinds;    /* cards taken back after a PC/SC service restart */
	bool stuck;          /* a worker is still inside the backend */
	uint64_t transmits, errors, timeouts;
	uint64_t err_comm, err_removed, err_reset, err_no_service, err_other;
	uint64_t connects, connect_failures, abandoned_workers;
	uint64_t retried_ok; /* read-only commands that went through on the retry */
	uint64_t recoveries, recoveries_failed;
	uint64_t step_ok[TK_STEP_COUNT]; /* how often each step was the one that worked */
	/* Transactions: begun at the reader's service, and BEGINs that took
	 * over a carried one (tk_slotmgr_opts_t.txn_carry_ms). Added in 0.2. */
	uint64_t txn_begun, txn_carried;
	int last_err;
	int64_t last_err_us; /* CLOCK_MONOTONIC, 0 if never */
	/* APDU round trips over the last (up to) 1024 transmits, microseconds */
	uint32_t lat_samples;
	uint32_t lat_p50_us, lat_p90_us, lat_p99_us, lat_max_us;
	size_t nhistory; /* oldest first */
	tk_recovery_t history[TK_SLOT_DIAG_HISTORY];
} tk_slot_diag_t;

/* Snapshot of one slot's supervision data. Errors: TK_ERR_NO_READER. */
TK_EXPORT int tk_slotmgr_diag(tk_slotmgr_t *m, uint32_t slot_id, tk_slot_diag_t *diag);

/* Force a recovery of the card in slot_id: the ladder from the warm (or
 * cold) reset on. Waits up to timeout_ms (<= 0: the transmit timeout
 * times four) and copies the record into *rec (may be NULL). Returns its
 * outcome. Errors: TK_ERR_NO_READER, TK_ERR_NO_CARD, TK_ERR_UNRESPONSIVE
 * (a call is still stuck in the backend), TK_ERR_TIMEOUT, and the
 * outcome's error. */
TK_EXPORT int tk_slotmgr_reset(tk_slotmgr_t *m, uint32_t slot_id, bool cold, int timeout_ms,
                               tk_recovery_t *rec);

/* The per-user recovery log: $XDG_RUNTIME_DIR/tokenkit/recovery.jsonl, else
 * /tmp/tokenkit-<uid>/recovery.jsonl; $TOKENKIT_RECOVERY_LOG overrides it
 * ("" disables: returns TK_ERR_NOT_FOUND). Errors: TK_ERR_BUFFER_TOO_SMALL. */
TK_EXPORT int tk_recovery_log_path(char *buf, size_t cap);

/* One line of the recovery log, as tk_recovery_log_parse_line reads it. */
typedef struct tk_recovery_log_entry {
	int64_t pid;
	char prog[64];
	char reader[128];
	tk_recovery_t rec; /* start_us is 0 (another process's clock) */
} tk_recovery_log_entry_t;

/* Parse one line of the recovery log (no newline needed; bytes need not be
 * NUL-terminated). Unknown keys are skipped; missing ones stay zero. The
 * strings are copied as found (they may hold any byte but NUL: escape them
 * before printing). Errors: TK_ERR_MALFORMED (not one JSON object of the
 * expected shape), TK_ERR_TOO_DEEP, TK_ERR_TOO_LONG. */
TK_EXPORT int tk_recovery_log_parse_line(const char *line, size_t len, tk_recovery_log_entry_t *e);

/* Read the recovery log at path (its rotated part first) with the writer's
 * checks (a private directory of ours, regular files, bounded sizes) and
 * hand each parsed line to fn, oldest first; *bad counts lines that do not
 * parse (too long, cut short, malformed) and files that were refused. A
 * refused directory is read at its fallback, where the writer writes then;
 * used (ucap bytes) receives the path actually read. fn returns TK_OK to go
 * on. Errors: TK_ERR_NOT_FOUND (no log yet), TK_ERR_UNSAFE,
 * TK_ERR_NOT_SUPPORTED (set-uid process), TK_ERR_INVALID_ARG,
 * TK_ERR_TOO_LONG, fn's error. */
typedef int (*tk_recovery_log_fn)(void *ctx, const tk_recovery_log_entry_t *e);
TK_EXPORT int tk_recovery_log_read(const char *path, tk_recovery_log_fn fn, void *ctx, size_t *bad,
                                   char *used, size_t ucap);

/* The socket the PC/SC client library talks to ($PCSCLITE_CSOCK_NAME, else
 * pcsc-lite's default), for messages such as "pcscd is not reachable at
 * ...". Never NULL. */
TK_EXPORT const char *tk_pcsc_socket_path(void);

#endif
