/* tokenkit: per-reader workers, deadlines and slot-manager card sessions.
 *
 * Each reader has one worker thread that alone talks to its connection.
 * Callers queue a work item and wait for it on the item's condition
 * variable in their own thread, with their own deadline. When the deadline
 * passes while the worker is inside the backend, the caller gets
 * TK_ERR_TIMEOUT at once and the worker is abandoned: it is no longer the
 * slot's worker, and when (if ever) the backend call returns it drops the
 * late result, closes its connection and exits; only then (or when a card is
 * inserted again) does the slot get a new worker and connection. Work items
 * own their buffers and are reference-counted, so the late result never
 * touches a caller's memory. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <tokenkit/atr.h>
#include <tokenkit/err.h>
#include <tokenkit/log.h>
#include <tokenkit/mem.h>

#include "card_priv.h"
#include "slotmgr_priv.h"

/* Connect attempts after the card reports a reset while we connect. */
#define CONNECT_RESET_TRIES 3

static work_t *
work_new(int op, uint64_t card_seq, const uint8_t *cmd, size_t cmd_len, size_t resp_cap)
{
	work_t *it = calloc(1, sizeof(*it));

	if (it == NULL)
		return NULL;
	if (cmd_len > 0) {
		it->cmd = malloc(cmd_len);
		if (it->cmd == NULL)
			goto fail;
		memcpy(it->cmd, cmd, cmd_len);
		it->cmd_len = cmd_len;
	}
	if (resp_cap > 0) {
		it->resp = malloc(resp_cap);
		if (it->resp == NULL)
			goto fail;
		it->resp_cap = resp_cap;
	}
	it->op = op;
	it->card_seq = card_seq;
	atomic_init(&it->refs, 1);
	pthread_mutex_init(&it->mtx, NULL);
	tk_cond_init_monotonic(&it->cond);
	return it;
fail:
	free(it->cmd);
	free(it);
	return NULL;
}

static void
work_unref(work_t *it)
{
	if (it == NULL || atomic_fetch_sub(&it->refs, 1) != 1)
		return;
	pthread_mutex_destroy(&it->mtx);
	pthread_cond_destroy(&it->cond);
	/* Command and response may be secrets (VERIFY, key operations). */
	tk_freezero(it->cmd, it->cmd_len);
	tk_freezero(it->resp, it->resp_cap);
	free(it);
}

static void
work_complete(work_t *it, int result)
{
	pthread_mutex_lock(&it->mtx);
	it->result = result;
	it->done = true;
	pthread_cond_broadcast(&it->cond);
	pthread_mutex_unlock(&it->mtx);
}

static void
worker_unref(worker_t *w)
{
	tk_slotmgr_t *m;

	if (w == NULL || atomic_fetch_sub(&w->refs, 1) != 1)
		return;
	m = w->m;
	pthread_mutex_destroy(&w->mtx);
	pthread_cond_destroy(&w->cond);
	free(w);
	mgr_unref(m);
}

/* With w->mtx held: fail the queued work; with keep_posts, the monitor's
 * connects and disconnects (nobody waits for them) stay queued. */
static void
fail_queue_locked(worker_t *w, int err, bool keep_posts)
{
	work_t **pp = &w->head, *it;

	w->tail = NULL;
	while ((it = *pp) != NULL) {
		if (keep_posts && (it->op == W_CONNECT || it->op == W_DISCONNECT)) {
			w->tail = it;
			pp = &it->next;
			continue;
		}
		*pp = it->next;
		it->next = NULL;
		work_complete(it, err);
		work_unref(it);
	}
}

static bool
card_still_there(tk_slotmgr_t *m, worker_t *w, uint64_t card_seq)
{
	bool ok;

	/* card_seq 0 is no card: never "still there", even in an empty slot */
	pthread_mutex_lock(&m->mtx);
	ok = card_seq != 0 && w->slot->card_seq == card_seq && w->slot->present && !m->stopping;
	pthread_mutex_unlock(&m->mtx);
	return ok;
}

bool
worker_gone(worker_t *w)
{
	bool g;

	pthread_mutex_lock(&w->mtx);
	g = w->quit || w->abandoned;
	pthread_mutex_unlock(&w->mtx);
	return g;
}

bool
worker_card_there(worker_t *w, uint64_t card_seq)
{
	return card_still_there(w->m, w, card_seq);
}

void
worker_drop_conn(worker_t *w)
{
	/* Closing the connection ends its transactions, a carried one too. */
	pthread_mutex_lock(&w->mtx);
	w->held = false;
	pthread_mutex_unlock(&w->mtx);
	w->txn_depth = 0;
	if (w->conn != NULL) {
		worker_io_begin(w);
		w->slot->bk->ops->disconnect(w->conn);
		worker_io_end(w);
		w->conn = NULL;
	}
	w->conn_card_seq = 0;
}

/* set_state: a plain connect makes the slot valid (or mute); inside the
 * recovery ladder the probe decides. */
static int
do_connect(worker_t *w, uint64_t card_seq, bool set_state)
{
	tk_slotmgr_t *m = w->m;
	slot_t *s = w->slot;
	uint8_t atr[TK_READER_ATR_MAX];
	size_t atr_len = 0;
	int proto = -1, r;
	tk_reader_caps_t caps;

	worker_drop_conn(w);
	memset(&caps, 0, sizeof(caps));
	/* s->name never changes after the slot is created. */
	/* Not counted as busy (tk_slot_info_t.busy_ms): pcscd holds a connect
	 * while another application's transaction lasts, polling every 100 ms. */
	r = s->bk->ops->connect(s->bk->be, s->name, &w->conn, atr, &atr_len, &proto);
	for (int i = 0; i < CONNECT_RESET_TRIES && r == TK_ERR_CARD_RESET; i++) {
		/* another program reset the card while we connected (PC/SC: between
		 * SCardConnect and SCardStatus); connecting changed nothing on it:
		 * again, rather than call the card mute */
		tk_log_debug("slotmgr: %s: card reset while connecting; again", s->name);
		r = s->bk->ops->connect(s->bk->be, s->name, &w->conn, atr, &atr_len, &proto);
	}
	if (r == TK_OK)
		s->bk->ops->caps(w->conn, &caps);
	pthread_mutex_lock(&m->mtx);
	s->stats.connects++;
	if (s->card_seq != card_seq || s->worker != w || m->stopping) {
		if (r == TK_OK)
			r = TK_ERR_CARD_REMOVED; /* a different card by now */
		pthread_mutex_unlock(&m->mtx);
		worker_drop_conn(w);
		return r;
	}
	if (r == TK_OK) {
		w->conn_card_seq = card_seq;
		if (s->connected_seq == card_seq)
			s->gen++; /* reconnected to the same card: its state is gone */
		s->connected_seq = card_seq;
		memcpy(s->atr, atr, atr_len);
		s->atr_len = atr_len;
		s->protocol = proto;
		s->caps = caps;
		if (set_state && s->state != TK_SLOT_VALID)
			mgr_set_state_locked(m, s, TK_SLOT_VALID);
	} else {
		s->stats.connect_failures++;
		s->stats.last_err = r;
		s->stats.last_err_us = tk_now_us();
		tk_log_debug("slotmgr: %s: connect: %s", s->name, tk_strerror(r));
		if (set_state && r != TK_ERR_NO_CARD && r != TK_ERR_NO_SERVICE &&
		    r != TK_ERR_NO_READER && r != TK_ERR_CARD_REMOVED && s->state != TK_SLOT_MUTE)
			mgr_set_state_locked(m, s, TK_SLOT_MUTE);
	}
	pthread_cond_broadcast(&m->cond);
	pthread_mutex_unlock(&m->mtx);
	return r;
}

int
worker_connect(worker_t *w, uint64_t card_seq, bool set_state)
{
	return do_connect(w, card_seq, set_state);
}

static void
count_result(tk_slotmgr_t *m, slot_t *s, int op, int r)
{
	slot_stats_t *st = &s->stats;

	pthread_mutex_lock(&m->mtx);
	if (op == W_TRANSMIT)
		st->transmits++;
	if (r != TK_OK) {
		st->errors++;
		st->last_err = r;
		st->last_err_us = tk_now_us();
		switch (r) {
		case TK_ERR_COMM:
			st->err_comm++;
			break;
		case TK_ERR_CARD_REMOVED:
			st->err_removed++;
			break;
		case TK_ERR_CARD_RESET:
			st->err_reset++;
			s->gen++;
			break;
		case TK_ERR_NO_SERVICE:
			st->err_no_service++;
			break;
		default:
			st->err_other++;
			break;
		}
	} else if (op == W_RESET) {
		s->gen++;
	}
	pthread_mutex_unlock(&m->mtx);
}

/* Make sure the connection is to the card the work is meant for. */
static int
ensure_conn(worker_t *w, uint64_t card_seq)
{
	if (w->conn != NULL && (card_seq == 0 || w->conn_card_seq == card_seq))
		return TK_OK;
	if (card_seq == 0 || !card_still_there(w->m, w, card_seq))
		return TK_ERR_CARD_REMOVED;
	/* Lost the connection (service restart, failed reconnect): try again. */
	return do_connect(w, card_seq, true);
}

static int
transmit_once(worker_t *w, work_t *it)
{
	int64_t t0 = tk_now_us();
	int r;

	it->resp_len = 0;
	worker_io_begin(w);
	r = w->slot->bk->ops->transmit(w->conn, it->cmd, it->cmd_len, it->resp, it->resp_cap,
	                               &it->resp_len);
	worker_io_end(w);
	if (r == TK_OK && it->resp_len < 2)
		r = TK_ERR_COMM;
	/* An abandoned call's late answer is counted as a timeout, not as a
	 * latency sample. */
	if (r == TK_OK && !worker_gone(w)) {
		pthread_mutex_lock(&w->m->mtx);
		rec_latency_locked(w->slot, tk_now_us() - t0);
		pthread_mutex_unlock(&w->m->mtx);
	}
	return r;
}

/* Faults the recovery ladder answers. Removal, a reset by someone else and
 * sharing conflicts have their own handling. */
static bool
ladder_fault(int r)
{
	return r == TK_ERR_COMM || r == TK_ERR_UNRESPONSIVE || r == TK_ERR_PROTOCOL ||
	       r == TK_ERR_IO || r == TK_ERR_NO_SERVICE;
}

/* A transmit failed with a ladder fault: open a recovery, retry a
 * read-only command once (the only step the caller waits for), and leave
 * the rest of the ladder to run after the caller has its answer. */
static int
transmit_failed(worker_t *w, work_t *it, int r)
{
	tk_slotmgr_t *m = w->m;
	slot_t *s = w->slot;
	int64_t t0;
	int r2;

	pthread_mutex_lock(&m->mtx);
	rec_begin_locked(m, s, r, "transmit");
	/* Recovering from now on, before the caller has its answer: a caller
	 * that then sees the reader valid again with the same card knows the
	 * recovery is over and the card still there. */
	if (s->worker == w && s->state == TK_SLOT_VALID)
		mgr_set_state_locked(m, s, TK_SLOT_RECOVERING);
	pthread_mutex_unlock(&m->mtx);
	tk_log_warn("slotmgr: %s: transmit: %s; recovering", s->name, tk_strerror(r));
	w->need_recovery_seq = w->conn_card_seq;
	if (r == TK_ERR_NO_SERVICE) {
		w->need_recovery = TK_STEP_CONTEXT;
		return r;
	}
	w->need_recovery = TK_STEP_RECONNECT;
	if (!tk_apdu_is_read_only(it->cmd, it->cmd_len))
		return r;
	count_result(m, s, W_TRANSMIT, r); /* the first attempt */
	t0 = tk_now_us();
	r2 = transmit_once(w, it);
	if (worker_gone(w))
		return r2;
	pthread_mutex_lock(&m->mtx);
	rec_step_locked(s, TK_STEP_RETRY, r2, tk_now_us() - t0);
	if (r2 == TK_OK)
		s->stats.retried_ok++;
	pthread_mutex_unlock(&m->mtx);
	if (r2 == TK_OK) {
		tk_recovery_t copy;
		bool log;

		w->need_recovery = 0;
		pthread_mutex_lock(&m->mtx);
		if (s->worker == w && s->state == TK_SLOT_RECOVERING)
			mgr_set_state_locked(m, s, TK_SLOT_VALID);
		log = rec_finish_locked(m, s, TK_STEP_RETRY, TK_OK, &copy);
		pthread_mutex_unlock(&m->mtx);
		if (log)
			rec_log(m, s, &copy);
	}
	return r2;
}

/* PIN entry on the pad. Not counted as busy (tk_slot_info_t.busy_ms): a
 * person is typing. Never repeated: a reader that fails here gets the
 * ladder afterwards, like after a failed state-changing command. */
static int
pinpad_once(worker_t *w, work_t *it)
{
	const tk_reader_ops_t *ops = w->slot->bk->ops;
	int r;

	it->resp_len = 0;
	if (ops->pinpad == NULL)
		return TK_ERR_NOT_SUPPORTED;
	it->pinpad.apdu = it->cmd;
	it->pinpad.apdu_len = it->cmd_len;
	r = ops->pinpad(w->conn, &it->pinpad, it->resp, it->resp_cap, &it->resp_len);
	if (r == TK_OK && it->resp_len < 2)
		r = TK_ERR_COMM;
	if (r != TK_OK && !worker_gone(w) && ladder_fault(r)) {
		tk_slotmgr_t *m = w->m;
		slot_t *s = w->slot;

		pthread_mutex_lock(&m->mtx);
		rec_begin_locked(m, s, r, "pinpad");
		if (s->worker == w && s->state == TK_SLOT_VALID)
			mgr_set_state_locked(m, s, TK_SLOT_RECOVERING);
		pthread_mutex_unlock(&m->mtx);
		tk_log_warn("slotmgr: %s: PIN pad: %s; recovering", s->name, tk_strerror(r));
		w->need_recovery = r == TK_ERR_NO_SERVICE ? TK_STEP_CONTEXT : TK_STEP_RECONNECT;
		w->need_recovery_seq = w->conn_card_seq;
	}
	return r;
}

/* Carried transactions (opts.txn_carry_ms).
 *
 * A process that serialises its own use of a card (tokenkitd: one queue
 * per card, served in turn) ends one caller's transaction and begins the
 * next one's back to back: two round trips to the reader's service that
 * change nothing, as no other process could take the card in the
 * microseconds between (pcsc-lite looks for a waiting transaction every
 * 100 ms). So the END of the only open transaction may be carried: the
 * transaction stays open, nobody's, for CARRY_LINGER_US; a BEGIN for the
 * same card in that time takes it over (worker_claim_carried_locked does
 * so without waking the worker), and after it the worker ends it. One
 * transaction is carried so for at most txn_carry_ms from its real
 * beginning: the END after that ends it. Anything else done to the
 * connection (a reset, a recovery, a connect) ends a carried transaction
 * first; closing the connection ends it too (worker_drop_conn). */
#define CARRY_LINGER_US 2000

/* The backend's END of the outermost open transaction (worker thread). */
static int
txn_end_now(worker_t *w)
{
	int r;

	worker_io_begin(w);
	r = w->slot->bk->ops->end(w->conn);
	worker_io_end(w);
	if (w->txn_depth > 0)
		w->txn_depth--;
	return r;
}

/* Whether a transaction was carried; it is nobody's to carry any more. */
static bool
take_carried(worker_t *w)
{
	bool held;

	pthread_mutex_lock(&w->mtx);
	held = w->held;
	w->held = false;
	pthread_mutex_unlock(&w->mtx);
	return held;
}

/* End a carried transaction, if there is one (worker thread). A service
 * or card that went away meanwhile closes the connection, as after any
 * call (execute). */
static void
release_carried(worker_t *w)
{
	int r;

	if (!take_carried(w) || w->conn == NULL)
		return;
	r = txn_end_now(w);
	if (r == TK_ERR_NO_SERVICE || r == TK_ERR_CARD_REMOVED || r == TK_ERR_NO_READER)
		worker_drop_conn(w);
}

static void
count_txn(worker_t *w, bool carried)
{
	pthread_mutex_lock(&w->m->mtx);
	if (carried)
		w->slot->stats.txn_carried++;
	else
		w->slot->stats.txn_begun++;
	pthread_mutex_unlock(&w->m->mtx);
}

static int
txn_begin(worker_t *w)
{
	int r;

	/* (a carried transaction is this card's: it is conn's, and conn is
	 * card_seq's, ensure_conn) */
	if (take_carried(w)) {
		count_txn(w, true);
		return TK_OK;
	}
	/* Not counted as busy either: this waits for another application's
	 * transaction (pcsc-lite retries every 100 ms), not for the card. */
	r = w->slot->bk->ops->begin(w->conn);
	if (r == TK_OK) {
		if (w->txn_depth++ == 0)
			w->txn_since_us = tk_now_us();
		count_txn(w, false);
	}
	return r;
}

static int
txn_end(worker_t *w)
{
	int carry_ms = w->m->opts.txn_carry_ms;
	int64_t now = tk_now_us();
	bool held;

	pthread_mutex_lock(&w->mtx);
	held = w->held;
	if (!held && carry_ms > 0 && w->txn_depth == 1 && w->conn_card_seq != 0 &&
	    now - w->txn_since_us < (int64_t)carry_ms * 1000) {
		w->held = true;
		w->held_seq = w->conn_card_seq;
		w->held_until_us = now + CARRY_LINGER_US;
		pthread_mutex_unlock(&w->mtx);
		return TK_OK;
	}
	w->held = false;
	pthread_mutex_unlock(&w->mtx);
	/* (held: an END nobody began; it ends the carried one) */
	return txn_end_now(w);
}

bool
worker_claim_carried_locked(slot_t *s, uint64_t card_seq)
{
	worker_t *w = s->worker;
	bool ok = false;

	if (w == NULL)
		return false;
	pthread_mutex_lock(&w->mtx);
	if (w->held && w->held_seq == card_seq && w->head == NULL && !w->quit && !w->abandoned) {
		w->held = false;
		ok = true;
		s->stats.txn_carried++;
	}
	pthread_mutex_unlock(&w->mtx);
	return ok;
}

static int
execute(worker_t *w, work_t *it)
{
	const tk_reader_ops_t *ops = w->slot->bk->ops;
	int r;

	switch (it->op) {
	case W_CONNECT:
		return do_connect(w, it->card_seq, true);
	case W_DISCONNECT:
		worker_drop_conn(w);
		return TK_OK;
	case W_RECOVER:
		release_carried(w);
		return rec_ladder(w, it->how, it->card_seq);
	default:
		break;
	}
	r = ensure_conn(w, it->card_seq);
	if (r != TK_OK)
		return r;
	switch (it->op) {
	case W_TRANSMIT:
		r = transmit_once(w, it);
		if (worker_gone(w) || !ladder_fault(r))
			break;
		r = transmit_failed(w, it, r);
		break;
	case W_PINPAD:
		r = pinpad_once(w, it);
		break;
	case W_BEGIN:
		r = txn_begin(w);
		break;
	case W_END:
		r = txn_end(w);
		break;
	case W_RESET: {
		uint8_t atr[TK_READER_ATR_MAX];
		size_t alen = 0;
		int proto = -1;

		release_carried(w);

		/* a reconnect waits for pcscd's lock, not for the card (above) */
		if (it->how != TK_READER_RECONNECT)
			worker_io_begin(w);
		r = ops->reset(w->conn, it->how, atr, &alen, &proto);
		if (it->how != TK_READER_RECONNECT)
			worker_io_end(w);
		break;
	}
	default:
		r = TK_ERR_INTERNAL;
		break;
	}
	if (r == TK_ERR_CARD_RESET) {
		/* Someone else reset the card: reconnect (leave) so the next
		 * call goes through; the caller re-selects. */
		uint8_t atr[TK_READER_ATR_MAX];
		size_t alen = 0;
		int proto = -1, r2;

		/* Not counted as busy: like a connect, pcscd holds a reconnect
		 * while another application's transaction lasts (100 ms polls);
		 * nothing waits for the card here. */
		r2 = ops->reset(w->conn, TK_READER_RECONNECT, atr, &alen, &proto);
		if (r2 != TK_OK)
			worker_drop_conn(w);
	} else if (r == TK_ERR_NO_SERVICE || r == TK_ERR_CARD_REMOVED || r == TK_ERR_NO_READER) {
		worker_drop_conn(w);
	}
	count_result(w->m, w->slot, it->op, r);
	return r;
}

static void
worker_exited(tk_slotmgr_t *m, worker_t *w)
{
	slot_t *s = w->slot;
	bool finish = false;

	pthread_mutex_lock(&m->mtx);
	if (s->stuck == w) {
		s->stuck = NULL;
		tk_log_info("slotmgr: %s: stuck call returned; recovering", s->name);
		rec_step_locked(s, TK_STEP_STUCK, TK_OK, tk_now_us() - s->stuck_since_us);
		if (s->worker == NULL && s->present && s->card_seq != 0 && !m->stopping &&
		    worker_start_locked(m, s) == TK_OK) {
			/* The ladder goes on from the reconnect in a fresh worker. */
			mgr_set_state_locked(m, s, TK_SLOT_RECOVERING);
			worker_post_recover_locked(s, TK_STEP_RECONNECT, s->card_seq);
		} else {
			finish = true;
		}
	}
	m->live_workers--;
	pthread_cond_broadcast(&m->cond);
	pthread_mutex_unlock(&m->mtx);
	if (finish)
		rec_finish(m, s, TK_STEP_NONE, TK_ERR_CARD_REMOVED);
}

/* The thread's last touch of its entry: after this it only drops its
 * references and returns, so a join does not wait long. */
static void
worker_done(tk_slotmgr_t *m, worker_t *w)
{
	pthread_mutex_lock(&m->mtx);
	w->thr->done = true;
	w->thr->arg = NULL;
	pthread_cond_broadcast(&m->cond);
	pthread_mutex_unlock(&m->mtx);
}

static void *
worker_main(void *arg)
{
	worker_t *w = arg;
	tk_slotmgr_t *m = w->m;

	for (;;) {
		work_t *it;
		int r;

		pthread_mutex_lock(&w->mtx);
		while (w->head == NULL && !w->quit && !w->abandoned) {
			if (!w->held) {
				pthread_cond_wait(&w->cond, &w->mtx);
			} else if (tk_cond_wait_until_us(&w->cond, &w->mtx, w->held_until_us) ==
			                   ETIMEDOUT &&
			           w->held && w->head == NULL) {
				/* nobody took the carried transaction over */
				pthread_mutex_unlock(&w->mtx);
				release_carried(w);
				pthread_mutex_lock(&w->mtx);
			}
		}
		if (w->quit || w->abandoned) {
			fail_queue_locked(w, w->quit ? w->quit_err : TK_ERR_UNRESPONSIVE, false);
			pthread_mutex_unlock(&w->mtx);
			break;
		}
		it = w->head;
		w->head = it->next;
		if (w->head == NULL)
			w->tail = NULL;
		it->next = NULL;
		w->current = it;
		pthread_mutex_unlock(&w->mtx);

		r = execute(w, it);

		pthread_mutex_lock(&w->mtx);
		w->current = NULL;
		pthread_mutex_unlock(&w->mtx);
		work_complete(it, r);
		work_unref(it);
		while (w->need_recovery != 0) {
			/* The caller has its answer; recover (or stay in
			 * quarantine) before the next item, for the card that
			 * failed: when it was removed meanwhile, the ladder or
			 * the quarantine ends its recovery as removed. */
			int step = w->need_recovery;
			uint64_t seq = w->need_recovery_seq;

			w->need_recovery = 0;
			w->need_recovery_seq = 0;
			release_carried(w);
			if (!worker_gone(w))
				(void)rec_ladder(w, step, seq);
		}
	}
	worker_drop_conn(w);
	worker_exited(m, w);
	worker_done(m, w);
	worker_unref(w);
	return NULL;
}

int
worker_start_locked(tk_slotmgr_t *m, slot_t *s)
{
	worker_t *w;
	tk_thread_t *thr;
	int e;

	if (s->worker != NULL)
		return TK_OK;
	w = calloc(1, sizeof(*w));
	thr = calloc(1, sizeof(*thr));
	if (w == NULL || thr == NULL) {
		free(w);
		free(thr);
		return TK_ERR_NO_MEMORY;
	}
	atomic_init(&w->refs, 2); /* the slot's and the thread's */
	atomic_init(&w->io_since_us, 0);
	w->m = m;
	w->slot = s;
	w->thr = thr;
	thr->arg = w;
	pthread_mutex_init(&w->mtx, NULL);
	tk_cond_init_monotonic(&w->cond);
	mgr_ref(m);
	/* Joinable: tk_slotmgr_free joins every worker that left; only one
	 * stuck in the backend is detached there. The thread cannot mark its
	 * entry done before we return (that takes m->mtx, held here). */
	e = pthread_create(&thr->t, NULL, worker_main, w);
	if (e != 0) {
		tk_log_error("slotmgr: %s: cannot start worker: %s", s->name, strerror(e));
		pthread_mutex_destroy(&w->mtx);
		pthread_cond_destroy(&w->cond);
		free(w);
		free(thr);
		/* Not the last reference: the caller holds m->mtx, m is alive. */
		atomic_fetch_sub(&m->refs, 1);
		return TK_ERR_NO_MEMORY;
	}
	thr->next = m->threads;
	m->threads = thr;
	m->live_workers++;
	s->worker = w;
	return TK_OK;
}

void
worker_reap(tk_slotmgr_t *m)
{
	tk_thread_t *done;

	pthread_mutex_lock(&m->mtx);
	done = tk_threads_take_locked(&m->threads, false);
	pthread_mutex_unlock(&m->mtx);
	(void)tk_threads_join(done);
}

/* With m->mtx held: a worker still running that is not abandoned, i.e. busy
 * with an ordinary call (bounded by its deadline) rather than stuck. */
static bool
busy_workers_locked(tk_slotmgr_t *m, bool *any)
{
	bool busy = false;

	*any = false;
	for (tk_thread_t *t = m->threads; t != NULL; t = t->next) {
		worker_t *w = t->arg;

		if (t->done || t->detached)
			continue;
		*any = true;
		pthread_mutex_lock(&w->mtx);
		busy = busy || !w->abandoned;
		pthread_mutex_unlock(&w->mtx);
	}
	return busy;
}

void
worker_join_all(tk_slotmgr_t *m, int grace_ms, int busy_ms)
{
	int64_t start = tk_now_us(), left_ms;
	tk_thread_t *done;
	int stuck = 0;
	bool any, busy;

	pthread_mutex_lock(&m->mtx);
	/* Workers that were told to quit finish their current backend call
	 * (bounded by its deadline); abandoned ones are stuck and get only
	 * the grace period. */
	for (;;) {
		struct timespec dl;

		busy = busy_workers_locked(m, &any);
		left_ms = (busy ? busy_ms : grace_ms) - (tk_now_us() - start) / 1000;
		if (!any || left_ms <= 0)
			break;
		tk_abstime_in_ms(&dl, (int)(left_ms < 100 ? left_ms : 100));
		pthread_cond_timedwait(&m->cond, &m->mtx, &dl);
	}
	done = tk_threads_take_locked(&m->threads, false);
	for (tk_thread_t *t = m->threads; t != NULL; t = t->next) {
		if (t->done || t->detached)
			continue;
		/* It holds a manager reference: whatever it touches when the
		 * backend returns stays allocated until then. */
		pthread_detach(t->t);
		t->detached = true;
		stuck++;
	}
	pthread_mutex_unlock(&m->mtx);
	if (stuck > 0)
		tk_log_warn("slotmgr: %d reader worker(s) stuck in the backend, abandoned", stuck);
	(void)tk_threads_join(done);
}

void
worker_stop_locked(tk_slotmgr_t *m, slot_t *s, int err)
{
	worker_t *w = s->worker;

	(void)m;
	if (w == NULL)
		return;
	s->worker = NULL;
	pthread_mutex_lock(&w->mtx);
	w->quit = true;
	w->quit_err = err;
	pthread_cond_signal(&w->cond);
	pthread_mutex_unlock(&w->mtx);
	worker_unref(w); /* the thread still holds one: never the last here */
}

static void
enqueue(worker_t *w, work_t *it)
{
	atomic_fetch_add(&it->refs, 1); /* the queue's */
	if (w->tail != NULL)
		w->tail->next = it;
	else
		w->head = it;
	w->tail = it;
	pthread_cond_signal(&w->cond);
}

static void
post_locked(slot_t *s, int op, int how, uint64_t card_seq)
{
	worker_t *w = s->worker;
	work_t *it;

	if (w == NULL)
		return;
	it = work_new(op, card_seq, NULL, 0, 0);
	if (it == NULL) {
		tk_log_error("slotmgr: %s: out of memory", s->name);
		return;
	}
	it->how = how;
	pthread_mutex_lock(&w->mtx);
	if (!w->quit && !w->abandoned)
		enqueue(w, it);
	pthread_mutex_unlock(&w->mtx);
	work_unref(it);
}

void
worker_post_locked(slot_t *s, int op, uint64_t card_seq)
{
	post_locked(s, op, 0, card_seq);
}

void
worker_post_recover_locked(slot_t *s, int step, uint64_t card_seq)
{
	post_locked(s, W_RECOVER, step, card_seq);
}

void
worker_abandon_locked(tk_slotmgr_t *m, slot_t *s, worker_t *w, int fault, const char *what)
{
	if (s->worker != w)
		return;
	s->worker = NULL;
	s->stuck = w;
	s->stuck_since_us = tk_now_us();
	s->stats.abandoned_workers++;
	tk_log_warn("slotmgr: %s: stuck in the reader driver (%s); worker abandoned, reader "
	            "quarantined until the call returns",
	            s->name, what);
	rec_begin_locked(m, s, fault, what);
	if (s->state != TK_SLOT_QUARANTINED)
		mgr_set_state_locked(m, s, TK_SLOT_QUARANTINED);
	pthread_mutex_lock(&w->mtx);
	w->abandoned = true;
	w->step_deadline_us = 0;
	/* Whoever queued behind the stuck call learns now, not at its own
	 * deadline. */
	fail_queue_locked(w, TK_ERR_UNRESPONSIVE, false);
	pthread_cond_broadcast(&w->cond);
	pthread_mutex_unlock(&w->mtx);
	worker_unref(w); /* the slot's reference; the thread's remains */
}

void
worker_fail_queue(worker_t *w, int err)
{
	pthread_mutex_lock(&w->mtx);
	fail_queue_locked(w, err, true);
	pthread_mutex_unlock(&w->mtx);
}

void
worker_cancel_waits_locked(worker_t *w)
{
	work_t *cur;

	pthread_mutex_lock(&w->mtx);
	fail_queue_locked(w, TK_ERR_CANCELLED, true);
	cur = w->current;
	if (cur != NULL) {
		pthread_mutex_lock(&cur->mtx);
		cur->cancelled = true;
		pthread_cond_broadcast(&cur->cond);
		pthread_mutex_unlock(&cur->mtx);
	}
	pthread_mutex_unlock(&w->mtx);
}

/* The caller's deadline passed. If the worker is inside the backend with
 * this very item, it is stuck: abandon it. If the item is still queued
 * behind other work, just take it out. */
static void
handle_timeout(tk_slotmgr_t *m, slot_t *s, worker_t *w, work_t *it)
{
	bool stuck = false, queued = false;

	pthread_mutex_lock(&w->mtx);
	if (w->current == it) {
		/* A forced recovery that takes long is watched by the step
		 * deadlines (rec_watchdog), not by its caller's patience. */
		stuck = it->op != W_RECOVER;
	} else {
		work_t **pp = &w->head;

		w->tail = NULL;
		while (*pp != NULL) {
			if (*pp == it) {
				*pp = it->next;
				queued = true;
				continue;
			}
			w->tail = *pp;
			pp = &(*pp)->next;
		}
	}
	pthread_mutex_unlock(&w->mtx);
	if (queued)
		work_unref(it);

	pthread_mutex_lock(&m->mtx);
	s->stats.timeouts++;
	s->stats.last_err = TK_ERR_TIMEOUT;
	s->stats.last_err_us = tk_now_us();
	if (stuck && s->worker == w)
		worker_abandon_locked(m, s, w, TK_ERR_TIMEOUT, "deadline");
	pthread_mutex_unlock(&m->mtx);
}

/* May work for card card_seq be queued on s now? (m->mtx held) */
static int
admissible_locked(tk_slotmgr_t *m, slot_t *s, uint64_t card_seq, int op)
{
	if (m->cancelled)
		return TK_ERR_CANCELLED;
	if (m->stopping || !s->present)
		return TK_ERR_READER_GONE;
	if (s->card_seq != card_seq)
		return TK_ERR_CARD_REMOVED;
	if (s->state == TK_SLOT_QUARANTINED && op != W_RECOVER)
		return TK_ERR_QUARANTINED;
	if (s->worker == NULL)
		return TK_ERR_UNRESPONSIVE;
	return TK_OK;
}

static int
submit(tk_slotmgr_t *m, slot_t *s, uint64_t card_seq, int op, int how, const tk_card_pinpad_t *pad,
       const uint8_t *cmd, size_t cmd_len, uint8_t *resp, size_t resp_cap, size_t *resp_len,
       int timeout_ms)
{
	worker_t *w = NULL;
	work_t *it = NULL;
	struct timespec dl;
	bool cancelled;
	int r = TK_OK;

	if (resp_len != NULL)
		*resp_len = 0;
	if (timeout_ms <= 0)
		timeout_ms = m->opts.transmit_timeout_ms;
	tk_abstime_in_ms(&dl, timeout_ms);
	it = work_new(op, card_seq, cmd, cmd_len, resp_cap);
	if (it == NULL)
		return TK_ERR_NO_MEMORY;
	it->how = how;
	if (pad != NULL)
		it->pinpad = *pad; /* its apdu is set to the item's copy when it runs */

	pthread_mutex_lock(&m->mtx);
	r = admissible_locked(m, s, card_seq, op);
	if (r == TK_OK && op == W_END && s->rec_open) {
		/* The recovery under way reconnects or resets the card, which
		 * ends every transaction: the caller of a failed operation
		 * need not wait behind the ladder for its END. */
		pthread_mutex_unlock(&m->mtx);
		goto out;
	}
	if (r == TK_OK) {
		w = s->worker;
		atomic_fetch_add(&w->refs, 1);
		pthread_mutex_lock(&w->mtx);
		if (w->quit || w->abandoned)
			r = TK_ERR_UNRESPONSIVE;
		else
			enqueue(w, it);
		pthread_mutex_unlock(&w->mtx);
	}
	pthread_mutex_unlock(&m->mtx);
	if (r != TK_OK)
		goto out;

	pthread_mutex_lock(&it->mtx);
	while (!it->done && !it->cancelled) {
		if (pthread_cond_timedwait(&it->cond, &it->mtx, &dl) == ETIMEDOUT)
			break;
	}
	if (!it->done)
		it->abandoned = true;
	cancelled = it->cancelled;
	pthread_mutex_unlock(&it->mtx);
	/* (cancelled: the worker is not stuck, it just has nobody waiting) */
	if (it->abandoned && !cancelled)
		handle_timeout(m, s, w, it);

	pthread_mutex_lock(&it->mtx);
	if (!it->done) {
		r = it->cancelled ? TK_ERR_CANCELLED : TK_ERR_TIMEOUT;
	} else {
		r = it->result;
		if (r == TK_OK && resp != NULL) {
			if (it->resp_len > resp_cap)
				r = TK_ERR_BUFFER_TOO_SMALL;
			else {
				memcpy(resp, it->resp, it->resp_len);
				*resp_len = it->resp_len;
			}
		}
	}
	pthread_mutex_unlock(&it->mtx);
out:
	if (w != NULL)
		worker_unref(w);
	work_unref(it);
	return r;
}

/* Card sessions over the slot manager. */
typedef struct mcard {
	tk_slotmgr_t *m; /* reference */
	slot_t *s;
	uint64_t card_seq;
	uint64_t gen_base;
	uint64_t rebind_base;
} mcard_t;

static uint64_t
mc_rebinds_now(mcard_t *c)
{
	uint64_t n;

	pthread_mutex_lock(&c->m->mtx);
	n = c->s->rebinds;
	pthread_mutex_unlock(&c->m->mtx);
	return n;
}

/* "Card removed" seen while the reader itself went away (service restart,
 * unplug) is not final: the same card may be re-bound when the reader is
 * back, and TK_ERR_CARD_REMOVED would mark the handle dead for good. */
static int
mc_result(mcard_t *c, uint64_t rebinds0, int r)
{
	if (r != TK_ERR_CARD_REMOVED)
		return r;
	pthread_mutex_lock(&c->m->mtx);
	if (!c->s->present || c->s->lost_seq == c->card_seq || c->s->rebinds != rebinds0)
		r = TK_ERR_READER_GONE;
	pthread_mutex_unlock(&c->m->mtx);
	return r;
}

static int
mc_transmit(void *ctx, const uint8_t *cmd, size_t cmd_len, uint8_t *resp, size_t resp_cap,
            size_t *resp_len, int timeout_ms)
{
	mcard_t *c = ctx;
	uint64_t rb = mc_rebinds_now(c);

	return mc_result(c, rb,
	                 submit(c->m, c->s, c->card_seq, W_TRANSMIT, 0, NULL, cmd, cmd_len, resp,
	                        resp_cap, resp_len, timeout_ms));
}

static int
mc_pinpad(void *ctx, const tk_card_pinpad_t *req, uint8_t *resp, size_t resp_cap, size_t *resp_len,
          int timeout_ms)
{
	mcard_t *c = ctx;
	uint64_t rb = mc_rebinds_now(c);

	return mc_result(c, rb,
	                 submit(c->m, c->s, c->card_seq, W_PINPAD, 0, req, req->apdu, req->apdu_len,
	                        resp, resp_cap, resp_len, timeout_ms));
}

static int
mc_begin(void *ctx, int timeout_ms)
{
	mcard_t *c = ctx;
	uint64_t rb = mc_rebinds_now(c);
	bool claimed;

	/* A transaction carried for this card is taken over here, without a
	 * round trip through the worker (opts are fixed from the start). */
	if (c->m->opts.txn_carry_ms > 0) {
		pthread_mutex_lock(&c->m->mtx);
		claimed = admissible_locked(c->m, c->s, c->card_seq, W_BEGIN) == TK_OK &&
		          !c->s->rec_open && worker_claim_carried_locked(c->s, c->card_seq);
		pthread_mutex_unlock(&c->m->mtx);
		if (claimed)
			return TK_OK;
	}
	return mc_result(c, rb,
	                 submit(c->m, c->s, c->card_seq, W_BEGIN, 0, NULL, NULL, 0, NULL, 0, NULL,
	                        timeout_ms));
}

/* The END of a transaction is queued, not waited for: what comes after it
 * on this card runs after it anyway, and nobody acts on its answer (the
 * daemon ends the transaction of a handle that reconnects or goes). Waiting
 * cost every transaction a round trip through the worker and the daemon,
 * on the path of a token open to its first object list among others. A
 * recovery under way ends every transaction by itself (submit). */
static int
mc_end(void *ctx, int timeout_ms)
{
	mcard_t *c = ctx;
	uint64_t rb = mc_rebinds_now(c);
	int r;

	(void)timeout_ms;
	pthread_mutex_lock(&c->m->mtx);
	r = admissible_locked(c->m, c->s, c->card_seq, W_END);
	if (r == TK_OK && !c->s->rec_open)
		post_locked(c->s, W_END, 0, c->card_seq);
	pthread_mutex_unlock(&c->m->mtx);
	return mc_result(c, rb, r);
}

static int
mc_reset(void *ctx, bool cold, int timeout_ms)
{
	mcard_t *c = ctx;
	uint64_t rb = mc_rebinds_now(c);

	return mc_result(c, rb,
	                 submit(c->m, c->s, c->card_seq, W_RESET,
	                        cold ? TK_READER_COLD_RESET : TK_READER_WARM_RESET, NULL, NULL, 0,
	                        NULL, 0, NULL, timeout_ms));
}

static bool
mc_present(void *ctx)
{
	mcard_t *c = ctx;
	bool p;

	pthread_mutex_lock(&c->m->mtx);
	p = c->s->present && c->s->card_seq == c->card_seq && !c->m->stopping;
	pthread_mutex_unlock(&c->m->mtx);
	return p;
}

static uint64_t
mc_generation(void *ctx)
{
	mcard_t *c = ctx;
	uint64_t g;

	pthread_mutex_lock(&c->m->mtx);
	g = c->s->gen - c->gen_base;
	pthread_mutex_unlock(&c->m->mtx);
	return g;
}

static uint64_t
mc_card_seq(void *ctx)
{
	return ((mcard_t *)ctx)->card_seq;
}

static uint64_t
mc_rebinds(void *ctx)
{
	mcard_t *c = ctx;
	uint64_t n;

	pthread_mutex_lock(&c->m->mtx);
	n = c->s->rebinds - c->rebind_base;
	pthread_mutex_unlock(&c->m->mtx);
	return n;
}

int
worker_force_recovery(tk_slotmgr_t *m, slot_t *s, uint64_t card_seq, int step, int timeout_ms)
{
	return submit(m, s, card_seq, W_RECOVER, step, NULL, NULL, 0, NULL, 0, NULL, timeout_ms);
}

static void
mc_release(void *ctx)
{
	mcard_t *c = ctx;

	mgr_unref(c->m);
	free(c);
}

int
card_new_for_slot_locked(tk_slotmgr_t *m, slot_t *s, tk_card_t **out)
{
	static const tk_card_backend_t be = {
	        .transmit = mc_transmit,
	        .begin = mc_begin,
	        .end = mc_end,
	        .reset = mc_reset,
	        .present = mc_present,
	        .generation = mc_generation,
	        .card_seq = mc_card_seq,
	        .rebinds = mc_rebinds,
	        .release = mc_release,
	        .pinpad = mc_pinpad,
	};
	tk_card_caps_t caps;
	mcard_t *c;
	int r;

	*out = NULL;
	c = calloc(1, sizeof(*c));
	if (c == NULL)
		return TK_ERR_NO_MEMORY;
	c->m = m;
	c->s = s;
	c->card_seq = s->card_seq;
	c->gen_base = s->gen;
	c->rebind_base = s->rebinds;
	memset(&caps, 0, sizeof(caps));
	caps.extended_apdu = s->caps.extended_apdu;
	/* Extended length only when the reader AND the card allow it (ISO 7816-4
	 * 5.1: a card announces it in the card capabilities of its historical
	 * bytes). Many cards, PIV cards among them, say nothing there; short
	 * APDUs with command chaining and GET RESPONSE work on every card, so
	 * silence means short. */
	if (caps.extended_apdu) {
		tk_atr_t atr;

		if (s->atr_len == 0 || tk_atr_parse(s->atr, s->atr_len, &atr) != TK_OK ||
		    !tk_atr_extended_length(&atr))
			caps.extended_apdu = false;
	}
	caps.pin_pad_verify = s->caps.pin_pad_verify;
	caps.pin_pad_modify = s->caps.pin_pad_modify;
	caps.max_cmd = s->caps.max_cmd != 0 ? s->caps.max_cmd : 261;
	caps.max_resp = s->caps.max_resp != 0 ? s->caps.max_resp : 258;
	r = tk_card_new_backend(s->name, s->atr, s->atr_len, &caps, &be, c,
	                        m->opts.transmit_timeout_ms, out);
	if (r != TK_OK) {
		free(c);
		return r;
	}
	mgr_ref(m);
	return TK_OK;
}
