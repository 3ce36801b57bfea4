/* tokenkit: the slot manager.
 *
 * Owns every reader of its backends (PC/SC now; CCID and the in-process
 * virtual reader later), runs one worker thread per reader, follows hotplug
 * and delivers ordered events to subscribers. No lock is held across card
 * I/O except the reader's own worker; a reader that hangs stalls only its
 * own queue. */
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
	TK_EVENT_SERVICE_LOST,     /* PC/SC daemon went away */
	TK_EVENT_SERVICE_RESTORED, /* and came back */
};
TK_EXPORT const char *tk_event_type_name(int type);

typedef struct tk_event {
	int type;             /* enum tk_event_type */
	uint64_t seq;         /* increases by one per event, per manager */
	uint32_t slot_id;     /* stable for the manager's life: a reader that comes back by name gets its old id */
	const char *reader;   /* reader name (valid during the callback) */
	int old_state, state; /* enum tk_slot_state */
	uint64_t card_seq;    /* identifies one insertion; 0 when no card */
	const uint8_t *atr;   /* for CARD_INSERTED / STATE_CHANGED to VALID */
	size_t atr_len;
	int64_t time_us;      /* CLOCK_MONOTONIC */
} tk_event_t;

/* Called in order, from the manager's event thread (never from a reader
 * worker and never with a manager lock held, so it may call back into the
 * manager). */
typedef void (*tk_event_fn)(void *ctx, const tk_event_t *ev);

typedef struct tk_slotmgr_opts {
	int transmit_timeout_ms; /* default deadline per APDU (0: TK_CARD_DEFAULT_TIMEOUT_MS) */
	bool pcsc;               /* use the PC/SC backend (default true via tk_slotmgr_opts_init) */
} tk_slotmgr_opts_t;
TK_EXPORT void tk_slotmgr_opts_init(tk_slotmgr_opts_t *o);

/* Create and start a manager. It discovers readers in the background; call
 * tk_slotmgr_wait_ready() to wait for the first full scan. Errors:
 * TK_ERR_NO_MEMORY. A missing PC/SC daemon is not an error: the manager
 * keeps trying and reports TK_EVENT_SERVICE_RESTORED when it appears. */
TK_EXPORT int tk_slotmgr_new(const tk_slotmgr_opts_t *opts, tk_slotmgr_t **out);
/* Stop all workers (abandoning any stuck in the backend) and free. */
TK_EXPORT void tk_slotmgr_free(tk_slotmgr_t **mp);
/* Wait until the first enumeration finished (or timeout). Returns TK_OK,
 * TK_ERR_TIMEOUT or TK_ERR_NO_SERVICE (daemon not reachable). */
TK_EXPORT int tk_slotmgr_wait_ready(tk_slotmgr_t *m, int timeout_ms);

/* Subscribe; returns a subscription id > 0 (or a tk_err). When replay is
 * true the callback first receives READER_ADDED / CARD_INSERTED events for
 * the current state. */
/* A callback must not call tk_slotmgr_free. tk_slotmgr_unsubscribe waits
 * for a callback running in another thread, so none runs after it returns. */
TK_EXPORT int tk_slotmgr_subscribe(tk_slotmgr_t *m, tk_event_fn fn, void *ctx, bool replay);
TK_EXPORT void tk_slotmgr_unsubscribe(tk_slotmgr_t *m, int id);

typedef struct tk_slot_info {
	uint32_t slot_id;
	char reader[128];
	int state;            /* enum tk_slot_state */
	uint64_t card_seq;
	uint8_t atr[33];
	size_t atr_len;
	int protocol;         /* 0 = T=0, 1 = T=1, -1 = none */
	uint64_t transmits;   /* APDUs sent on this reader */
	uint64_t errors;      /* failed transmits */
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

#endif
