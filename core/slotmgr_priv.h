/* tokenkit: slot manager internals, shared by slotmgr.c (manager, backends
 * and their monitors, public API), worker.c (per-reader workers, deadlines,
 * card sessions), recovery.c (the ladder) and events.c (ordered event
 * delivery).
 *
 * Locks, in the only order they may nest:
 *   sub_mtx (recursive; held while callbacks run)
 *     → m->mtx (slots, workers' registration, states)
 *       → w->mtx (one worker's queue)      → ev_mtx (event queue)
 *   item->mtx is taken alone.
 * No lock is held across a backend call except inside the worker thread,
 * which holds none while it calls the backend.
 *
 * Lifetimes: slots live as long as the manager (stable ids). Workers, work
 * items and the manager itself are reference-counted, because a worker that
 * is stuck inside the backend is abandoned and may return (and touch them)
 * long after its caller, its slot's current worker or even tk_slotmgr_free
 * have moved on. */
#ifndef TK_SLOTMGR_PRIV_H
#define TK_SLOTMGR_PRIV_H

#include <pthread.h>
#include <stdatomic.h>

#include <tokenkit/slot.h>

#include "clock.h"
#include "reader.h"
#include "threads.h"

enum work_op {
	W_CONNECT = 1,
	W_DISCONNECT,
	W_TRANSMIT,
	W_BEGIN,
	W_END,
	W_RESET,
	W_RECOVER, /* run the recovery ladder from step `how` (enum tk_recovery_step) */
	W_PINPAD,  /* PIN entry on the pad: cmd is the template, pinpad the rest */
};

typedef struct work {
	atomic_int refs;
	int op;
	uint64_t card_seq; /* the card this is meant for (0: whatever is there) */
	int how;           /* W_RESET: TK_READER_* */
	uint8_t *cmd;      /* owned copies: a late result never touches a */
	size_t cmd_len;    /* caller's memory */
	uint8_t *resp;
	size_t resp_cap, resp_len;
	tk_card_pinpad_t pinpad; /* W_PINPAD (its apdu points at cmd) */
	pthread_mutex_t mtx;
	pthread_cond_t cond;
	bool done;
	bool abandoned; /* caller gave up waiting */
	bool cancelled; /* tk_slotmgr_cancel: the caller returns now */
	int result;
	struct work *next;
} work_t;

typedef struct slot slot_t;

/* One reader backend of a manager, with its own monitor thread. Its
 * readers' slots point at it (a slot keeps its backend for life), and the
 * workers of those slots call its ops. Lives as long as the manager. */
typedef struct backend {
	struct tk_slotmgr *m;
	unsigned idx; /* position in m->backends: the order of the spec */
	const tk_reader_ops_t *ops;
	void *be;
	/* The rest under m->mtx. */
	bool ready; /* the first enumeration finished (or the service is down) */
	int ready_err;
	bool service_up, service_down_reported;
	pthread_t monitor;
	bool monitor_started;
	/* The monitor left its loop; detached: tk_slotmgr_free gave up
	 * waiting for it (a PC/SC daemon that does not answer), so the
	 * monitor closes the backend and drops its manager reference when it
	 * returns. */
	bool monitor_done, monitor_detached;
} backend_t;

/* Worker threads are tk_thread_t entries in m->threads (arg: the worker,
 * while !done), under m->mtx: joined once done (by the monitor, or by
 * tk_slotmgr_free), or detached there when still stuck in the backend
 * (then freed with the manager). */

typedef struct worker {
	atomic_int refs;
	struct tk_slotmgr *m; /* holds a manager reference */
	slot_t *slot;
	tk_thread_t *thr; /* its entry in m->threads */
	pthread_mutex_t mtx;
	pthread_cond_t cond;
	work_t *head, *tail;
	work_t *current; /* being executed (outside mtx) */
	bool quit;
	bool abandoned; /* stuck in the backend; exit when it returns */
	int quit_err;   /* what queued work gets on quit */
	/* Worker thread only: */
	void *conn;
	uint64_t conn_card_seq;
	int need_recovery; /* first ladder step to run after the current item, 0: none */
	/* The card that recovery is for: the one the failed call went to, not
	 * whatever card the slot has when the ladder starts (the monitor may
	 * have seen it removed, or another one inserted, meanwhile). */
	uint64_t need_recovery_seq;
	/* When the worker entered its current call into the backend (connect,
	 * APDU, reset, ...), 0 while it is not in one: read by other threads
	 * for tk_slot_info_t.busy_ms (a card that is not making progress). */
	atomic_llong io_since_us;
	/* Under mtx: while a recovery step is inside the backend, when it must
	 * have returned (0: not in a step); the monitor abandons the worker
	 * past it. */
	int64_t step_deadline_us;
	/* A carried transaction (opts.txn_carry_ms; worker.c, "Carried
	 * transactions"). Worker thread only: how many transactions the
	 * backend has open on conn (BEGINs it took, not yet ended), and when
	 * the outermost began. Under mtx: the open one is nobody's (its END
	 * was carried) on card held_seq, until held_until_us. */
	int txn_depth;
	int64_t txn_since_us;
	bool held;
	uint64_t held_seq;
	int64_t held_until_us;
} worker_t;

/* Per-reader counters (tk_slotmgr_diag). */
typedef struct slot_stats {
	uint64_t transmits, errors, timeouts;
	uint64_t err_comm, err_removed, err_reset, err_no_service, err_other;
	uint64_t connects, connect_failures, abandoned_workers;
	int last_err;
	int64_t last_err_us;
	uint64_t retried_ok, recoveries, recoveries_failed;
	uint64_t step_ok[TK_STEP_COUNT];
	uint64_t txn_begun, txn_carried;
} slot_stats_t;

#define LAT_WINDOW 1024

struct slot {
	uint32_t id;
	backend_t *bk; /* a reader is (backend, name) */
	char name[TK_READER_NAME_MAX];
	char exchange[TK_READER_EXCHANGE_MAX];
	uint8_t reader_slots;
	bool present;
	int state;
	uint64_t card_seq;
	uint32_t event_count;
	uint8_t atr[TK_READER_ATR_MAX];
	size_t atr_len;
	int protocol;
	tk_reader_caps_t caps;
	uint64_t gen;           /* resets and reconnects seen on this reader */
	uint64_t connected_seq; /* card_seq of the last successful connect */
	worker_t *worker;       /* live worker (holds a reference) or NULL */
	worker_t *stuck; /* abandoned worker still in the backend (no reference; cleared by it) */
	int64_t stuck_since_us;
	slot_stats_t stats;
	/* recovery (recovery.c), under m->mtx */
	bool rec_open;
	tk_recovery_t rec; /* the one in progress */
	uint64_t rec_ids;
	tk_recovery_t hist[TK_SLOT_DIAG_HISTORY]; /* ring */
	size_t hist_n, hist_next;
	uint32_t lat[LAT_WINDOW]; /* APDU round trips, us (ring) */
	size_t lat_n, lat_next;
	/* the card this slot had when the PC/SC service went away: the same
	 * ATR coming back into this reader takes the old card_seq (re-bind) */
	uint64_t lost_seq;
	uint8_t lost_atr[TK_READER_ATR_MAX];
	size_t lost_atr_len;
	uint64_t rebinds;
};

typedef struct sub {
	int id;
	tk_event_fn fn;
	void *ctx;
	uint64_t from_seq; /* broadcast events with seq <= from_seq are not for it */
} sub_t;

typedef struct evnode {
	tk_event_t ev;
	char reader[TK_READER_NAME_MAX];
	uint8_t atr[TK_READER_ATR_MAX];
	char backend[TK_READER_BACKEND_NAME_MAX + 1];
	int target; /* subscription id, 0 = everybody */
	struct evnode *next;
} evnode_t;

struct tk_slotmgr {
	atomic_int refs;
	tk_slotmgr_opts_t opts;
	backend_t backends[TK_READER_SPEC_MAX];
	size_t nbackends;
	int poll_ms; /* bound of one wait_change */

	pthread_mutex_t mtx;
	pthread_cond_t cond; /* ready, state changes, stop, worker exits */
	slot_t **slots;
	size_t nslots;
	uint32_t next_id;
	uint64_t next_card_seq;
	bool ready; /* every backend is ready */
	int ready_err;
	bool stopping;
	bool cancelled; /* tk_slotmgr_cancel */
	int live_workers;
	tk_thread_t *threads; /* every worker thread not joined yet */
	char *log_path;       /* recovery log, NULL: none */

	/* events */
	pthread_mutex_t ev_mtx;
	pthread_cond_t ev_cond;
	evnode_t *ev_head, *ev_tail;
	uint64_t ev_seq;
	uint64_t ev_done_seq;   /* the last event whose callbacks returned (ev_mtx) */
	pthread_cond_t ev_done; /* ev_done_seq moved (tk_slotmgr_sync) */
	bool ev_stop;
	pthread_t ev_thread;
	bool ev_started;
	pthread_mutex_t sub_mtx; /* recursive */
	sub_t *subs;
	size_t nsubs;
	int next_sub;
};

/* Around each call into the backend on a worker's connection. */
static inline void
worker_io_begin(worker_t *w)
{
	atomic_store(&w->io_since_us, tk_now_us());
}

static inline void
worker_io_end(worker_t *w)
{
	atomic_store(&w->io_since_us, 0);
}

/* slotmgr.c */
/* A manager over ops; config is handed to ops->open. */
int tk_slotmgr_new_with_ops(const tk_slotmgr_opts_t *opts, const tk_reader_ops_t *ops,
                            const char *config, int poll_ms, tk_slotmgr_t **out);
/* A manager over n backends (the order of a spec: a backend's first scan
 * waits, bounded, for those before it). configs[i] may be NULL. A backend
 * whose open fails is left out (logged; at info level when optional[i]),
 * unless none is left: then open's error. */
int tk_slotmgr_new_multi(const tk_slotmgr_opts_t *opts, const tk_reader_ops_t *const *ops,
                         const char *const *configs, const bool *optional, size_t n, int poll_ms,
                         tk_slotmgr_t **out);
void tk_slotmgr_get_stats(tk_slotmgr_t *m, uint32_t slot_id, slot_stats_t *st);
void mgr_ref(tk_slotmgr_t *m);
void mgr_unref(tk_slotmgr_t *m);
/* With m->mtx held: change a slot's state and queue the event. */
void mgr_set_state_locked(tk_slotmgr_t *m, slot_t *s, int state);
slot_t *mgr_slot_locked(tk_slotmgr_t *m, uint32_t id);

/* worker.c (all with m->mtx held unless said otherwise) */
int worker_start_locked(tk_slotmgr_t *m, slot_t *s);
/* Join the worker threads that are done (takes m->mtx; joins outside it). */
void worker_reap(tk_slotmgr_t *m);
/* tk_slotmgr_free, after the workers were told to stop: wait for them
 * (bounded: a stuck one is left behind, detached) and join them. */
void worker_join_all(tk_slotmgr_t *m, int grace_ms, int busy_ms);
void worker_stop_locked(tk_slotmgr_t *m, slot_t *s, int err);
/* Queue work nobody waits for (CONNECT, DISCONNECT). */
void worker_post_locked(slot_t *s, int op, uint64_t card_seq);
int card_new_for_slot_locked(tk_slotmgr_t *m, slot_t *s, tk_card_t **out);

/* worker.c, continued */
/* Post a W_RECOVER from step (no waiter). */
void worker_post_recover_locked(slot_t *s, int step, uint64_t card_seq);
/* The slot's worker is stuck in the backend: take it off the slot, fail its
 * queue and quarantine the reader until the call returns. */
void worker_abandon_locked(tk_slotmgr_t *m, slot_t *s, worker_t *w, int fault, const char *what);
/* The worker entering quarantine: fail the work queued by the card's users;
 * the monitor's connects and disconnects stay queued (a removal must still
 * end the quarantine, a new card must still be connected). */
void worker_fail_queue(worker_t *w, int err);
/* tk_slotmgr_cancel: the work callers wait for ends with TK_ERR_CANCELLED,
 * queued or under way (the worker finishes that one unwatched). */
void worker_cancel_waits_locked(worker_t *w);
/* tk_slotmgr_reset: a W_RECOVER from step that the caller waits for. */
int worker_force_recovery(tk_slotmgr_t *m, slot_t *s, uint64_t card_seq, int step, int timeout_ms);
/* Worker thread only. */
int worker_connect(worker_t *w, uint64_t card_seq, bool set_state);
void worker_drop_conn(worker_t *w);
/* A BEGIN for card_seq on s takes over the transaction carried for it, if
 * there is one (m->mtx held): true when it did. */
bool worker_claim_carried_locked(slot_t *s, uint64_t card_seq);
bool worker_gone(worker_t *w);
bool worker_card_there(worker_t *w, uint64_t card_seq);

/* recovery.c */
/* Open a recovery record unless one is open (with m->mtx held). */
void rec_begin_locked(tk_slotmgr_t *m, slot_t *s, int fault, const char *what);
void rec_step_locked(slot_t *s, int step, int result, int64_t duration_us);
/* Close the open record: history, counters, TK_EVENT_RECOVERY, log line.
 * Takes m->mtx itself. */
void rec_finish(tk_slotmgr_t *m, slot_t *s, int cured_by, int outcome);
/* The same with m->mtx held (in the critical section that makes the slot
 * valid again, so that nobody sees it valid without the record); true when
 * *copy is to be passed to rec_log once m->mtx is released. */
bool rec_finish_locked(tk_slotmgr_t *m, slot_t *s, int cured_by, int outcome, tk_recovery_t *copy);
void rec_log(tk_slotmgr_t *m, const slot_t *s, const tk_recovery_t *r);
/* Run the ladder from first_step in the worker thread; returns the outcome. */
int rec_ladder(worker_t *w, int first_step, uint64_t card_seq);
/* Monitor: abandon workers whose recovery step overran its deadline. */
void rec_watchdog(tk_slotmgr_t *m);
void rec_latency_locked(slot_t *s, int64_t us);
void rec_fill_diag_locked(const slot_t *s, tk_slot_diag_t *d);
/* The recovery log (recovery_log.c). */
char *rec_log_resolve(const char *opt);
void rec_log_append(const char *path, const char *reader, const tk_recovery_t *r);

/* events.c */
void ev_queue_locked(tk_slotmgr_t *m, int type, const slot_t *s, int old_state, int target);
void ev_queue_service(tk_slotmgr_t *m, const backend_t *bk, int type);
void *ev_thread_main(void *arg);
void ev_init(tk_slotmgr_t *m);
void ev_destroy(tk_slotmgr_t *m);

#endif
