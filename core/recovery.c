/* tokenkit: the recovery ladder, per-reader supervision records and
 * diagnostics.
 *
 * The ladder runs in the reader's own worker thread, after the caller of
 * the failed transmit has its answer (only the retry of a read-only command
 * happens inside the caller's deadline, in worker.c). Each step is one or
 * two backend calls under a step deadline that the monitor thread watches
 * (rec_watchdog): a step that does not return in time gets the worker
 * abandoned and the reader quarantined until the call returns, then a fresh
 * worker continues from the reconnect. A step "works" when a harmless probe
 * (status, then GET RESPONSE, whose answer can be any status word) gets an
 * answer; the card's generation then increases, so drivers re-select and
 * the login state is known to be gone. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <tokenkit/err.h>
#include <tokenkit/log.h>

#include "slotmgr_priv.h"

#define BACKOFF_MIN_MS 250
#define BACKOFF_MAX_MS 8000
#define RESET_SETTLE_MS 500

const char *
tk_recovery_step_name(int step)
{
	switch (step) {
	case TK_STEP_NONE:
		return "none";
	case TK_STEP_RETRY:
		return "retry";
	case TK_STEP_RECONNECT:
		return "reconnect";
	case TK_STEP_WARM_RESET:
		return "warm-reset";
	case TK_STEP_COLD_RESET:
		return "cold-reset";
	case TK_STEP_CONTEXT:
		return "new-context";
	case TK_STEP_STUCK:
		return "wait-stuck";
	case TK_STEP_PROBE:
		return "quarantine-probe";
	case TK_STEP_CLEAR_HALT:
		return "clear-halt";
	case TK_STEP_ABORT:
		return "abort";
	case TK_STEP_USB_RESET:
		return "usb-reset";
	default:
		return "unknown";
	}
}

bool
tk_apdu_is_read_only(const uint8_t *cmd, size_t len)
{
	uint8_t cla, ins;

	if (cmd == NULL || len < 4)
		return false;
	cla = cmd[0];
	ins = cmd[1];
	/* Reader pseudo-APDUs and parts of a command chain are never repeated:
	 * a repeated chain link corrupts the chain. */
	if (cla == 0xFF || (cla & 0x10) != 0)
		return false;
	switch (ins) {
	case 0xA4: /* SELECT: by DF name (AID) only */
		return cmd[2] == 0x04;
	case 0xCA: /* GET DATA */
	case 0xCB:
	case 0xB0: /* READ BINARY */
	case 0xB1:
	case 0xB2: /* READ RECORD */
	case 0xC0: /* GET RESPONSE */
	case 0xFD: /* Yubico GET VERSION */
	case 0xF8: /* Yubico GET SERIAL */
	case 0xF7: /* Yubico GET METADATA */
		return true;
	case 0x20: /* VERIFY without data: asks for the retry counter */
		return len == 4;
	default:
		return false;
	}
}

static int64_t
wall_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void
rec_begin_locked(tk_slotmgr_t *m, slot_t *s, int fault, const char *what)
{
	(void)m;
	if (s->rec_open)
		return;
	memset(&s->rec, 0, sizeof(s->rec));
	s->rec.id = ++s->rec_ids;
	s->rec.start_us = tk_now_us();
	s->rec.wall_ms = wall_ms();
	s->rec.fault = fault;
	snprintf(s->rec.what, sizeof(s->rec.what), "%s", what != NULL ? what : "");
	s->rec_open = true;
}

void
rec_step_locked(slot_t *s, int step, int result, int64_t duration_us)
{
	tk_recovery_t *r = &s->rec;

	if (!s->rec_open)
		return;
	if (r->nsteps < TK_RECOVERY_MAX_STEPS) {
		r->steps[r->nsteps].step = step;
		r->steps[r->nsteps].result = result;
		r->steps[r->nsteps].duration_us = duration_us;
	}
	r->nsteps++;
}

bool
rec_finish_locked(tk_slotmgr_t *m, slot_t *s, int cured_by, int outcome, tk_recovery_t *copy)
{
	tk_recovery_t *r = &s->rec;

	if (!s->rec_open)
		return false;
	r->cured_by = cured_by;
	r->outcome = outcome;
	r->duration_us = tk_now_us() - r->start_us;
	s->hist[s->hist_next] = *r;
	s->hist_next = (s->hist_next + 1) % TK_SLOT_DIAG_HISTORY;
	if (s->hist_n < TK_SLOT_DIAG_HISTORY)
		s->hist_n++;
	s->stats.recoveries++;
	if (outcome != TK_OK)
		s->stats.recoveries_failed++;
	if (cured_by > TK_STEP_NONE && cured_by < TK_STEP_COUNT)
		s->stats.step_ok[cured_by]++;
	s->rec_open = false;
	ev_queue_locked(m, TK_EVENT_RECOVERY, s, s->state, 0);
	*copy = *r;
	return m->log_path != NULL;
}

void
rec_log(tk_slotmgr_t *m, const slot_t *s, const tk_recovery_t *r)
{
	tk_log_info("slotmgr: %s: recovery #%llu: %s after %lld ms (%s)", s->name,
	            (unsigned long long)r->id,
	            r->outcome == TK_OK ? tk_recovery_step_name(r->cured_by)
	                                : tk_strerror(r->outcome),
	            (long long)(r->duration_us / 1000), tk_strerror(r->fault));
	/* s->name never changes; m->log_path lives as long as m. */
	rec_log_append(m->log_path, s->name, r);
}

void
rec_finish(tk_slotmgr_t *m, slot_t *s, int cured_by, int outcome)
{
	tk_recovery_t copy;
	bool log;

	pthread_mutex_lock(&m->mtx);
	log = rec_finish_locked(m, s, cured_by, outcome, &copy);
	pthread_mutex_unlock(&m->mtx);
	if (log)
		rec_log(m, s, &copy);
}

void
rec_latency_locked(slot_t *s, int64_t us)
{
	if (us < 0)
		us = 0;
	if (us > UINT32_MAX)
		us = UINT32_MAX;
	s->lat[s->lat_next] = (uint32_t)us;
	s->lat_next = (s->lat_next + 1) % LAT_WINDOW;
	if (s->lat_n < LAT_WINDOW)
		s->lat_n++;
}

static int
cmp_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;

	return x < y ? -1 : x > y;
}

/* Nearest rank. */
static uint32_t
pct(const uint32_t *sorted, size_t n, unsigned p)
{
	size_t rank = (n * p + 99) / 100;

	return sorted[rank > 0 ? rank - 1 : 0];
}

void
rec_fill_diag_locked(const slot_t *s, tk_slot_diag_t *d)
{
	const slot_stats_t *st = &s->stats;
	uint32_t sorted[LAT_WINDOW];

	d->generation = s->gen;
	d->rebinds = s->rebinds;
	d->stuck = s->stuck != NULL;
	d->transmits = st->transmits;
	d->errors = st->errors;
	d->timeouts = st->timeouts;
	d->err_comm = st->err_comm;
	d->err_removed = st->err_removed;
	d->err_reset = st->err_reset;
	d->err_no_service = st->err_no_service;
	d->err_other = st->err_other;
	d->connects = st->connects;
	d->connect_failures = st->connect_failures;
	d->abandoned_workers = st->abandoned_workers;
	d->retried_ok = st->retried_ok;
	d->txn_begun = st->txn_begun;
	d->txn_carried = st->txn_carried;
	d->recoveries = st->recoveries;
	d->recoveries_failed = st->recoveries_failed;
	memcpy(d->step_ok, st->step_ok, sizeof(d->step_ok));
	d->last_err = st->last_err;
	d->last_err_us = st->last_err_us;
	if (s->lat_n > 0) {
		memcpy(sorted, s->lat, s->lat_n * sizeof(sorted[0]));
		qsort(sorted, s->lat_n, sizeof(sorted[0]), cmp_u32);
		d->lat_samples = (uint32_t)s->lat_n;
		d->lat_p50_us = pct(sorted, s->lat_n, 50);
		d->lat_p90_us = pct(sorted, s->lat_n, 90);
		d->lat_p99_us = pct(sorted, s->lat_n, 99);
		d->lat_max_us = sorted[s->lat_n - 1];
	}
	d->nhistory = s->hist_n;
	for (size_t i = 0; i < s->hist_n; i++) {
		size_t k = (s->hist_next + TK_SLOT_DIAG_HISTORY - s->hist_n + i) %
		           TK_SLOT_DIAG_HISTORY;

		d->history[i] = s->hist[k];
	}
}

/* ---- the ladder (worker thread) -------------------------------------- */

static int
step_timeout_ms(const tk_slotmgr_t *m)
{
	return m->opts.step_timeout_ms > 0 ? m->opts.step_timeout_ms : m->opts.transmit_timeout_ms;
}

static void
guard_begin(worker_t *w)
{
	pthread_mutex_lock(&w->mtx);
	w->step_deadline_us = tk_now_us() + (int64_t)step_timeout_ms(w->m) * 1000;
	pthread_mutex_unlock(&w->mtx);
}

/* True when the worker was abandoned (or told to quit) meanwhile. */
static bool
guard_end(worker_t *w)
{
	bool gone;

	pthread_mutex_lock(&w->mtx);
	w->step_deadline_us = 0;
	gone = w->quit || w->abandoned;
	pthread_mutex_unlock(&w->mtx);
	return gone;
}

static int
probe(worker_t *w)
{
	static const uint8_t get_response[] = {0x00, 0xC0, 0x00, 0x00, 0x00};
	const tk_reader_ops_t *ops = w->slot->bk->ops;
	uint8_t resp[258];
	size_t n = 0;
	int r;

	if (w->conn == NULL)
		return TK_ERR_COMM;
	worker_io_begin(w);
	r = ops->status(w->conn);
	if (r == TK_OK)
		r = ops->transmit(w->conn, get_response, sizeof(get_response), resp, sizeof(resp),
		                  &n);
	worker_io_end(w);
	if (r == TK_OK && n < 2)
		r = TK_ERR_COMM;
	return r;
}

static int
do_reset(worker_t *w, int how)
{
	tk_slotmgr_t *m = w->m;
	uint8_t atr[TK_READER_ATR_MAX];
	size_t alen = 0;
	int proto = -1, r;

	worker_io_begin(w);
	r = w->slot->bk->ops->reset(w->conn, how, atr, &alen, &proto);
	worker_io_end(w);
	if (r == TK_OK && alen > 0 && alen <= TK_READER_ATR_MAX) {
		pthread_mutex_lock(&m->mtx);
		if (w->slot->worker == w) {
			memcpy(w->slot->atr, atr, alen);
			w->slot->atr_len = alen;
			w->slot->protocol = proto;
		}
		pthread_mutex_unlock(&m->mtx);
	}
	return r;
}

static bool
transport_step(int step)
{
	return step == TK_STEP_CLEAR_HALT || step == TK_STEP_ABORT || step == TK_STEP_USB_RESET;
}

/* A step of the backend's own transport (USB), then a connection to probe
 * with: the one there (its card kept its power), a new one, or the old
 * one powered again after a USB reset. */
static int
transport(worker_t *w, int step, uint64_t seq)
{
	const backend_t *bk = w->slot->bk;
	int r;

	worker_io_begin(w);
	r = bk->ops->recover(bk->be, w->slot->name, step);
	worker_io_end(w);
	if (r != TK_OK || worker_gone(w))
		return r;
	if (w->conn == NULL)
		return worker_connect(w, seq, false);
	if (step == TK_STEP_USB_RESET)
		return do_reset(w, TK_READER_RECONNECT);
	return TK_OK;
}

/* One step and its probe, under the step deadline. */
static int
run_step(worker_t *w, int step, uint64_t seq, bool *abandoned)
{
	int r = TK_OK;

	guard_begin(w);
	switch (step) {
	case TK_STEP_CLEAR_HALT:
	case TK_STEP_ABORT:
	case TK_STEP_USB_RESET:
		r = transport(w, step, seq);
		break;
	case TK_STEP_RECONNECT:
		if (w->conn == NULL)
			r = worker_connect(w, seq, false);
		else
			r = do_reset(w, TK_READER_RECONNECT);
		break;
	case TK_STEP_WARM_RESET:
	case TK_STEP_COLD_RESET:
		if (w->conn == NULL)
			r = worker_connect(w, seq, false);
		if (r == TK_OK)
			r = do_reset(w, step == TK_STEP_COLD_RESET ? TK_READER_COLD_RESET
			                                           : TK_READER_WARM_RESET);
		break;
	case TK_STEP_CONTEXT:
		/* Each PC/SC connection has its own context: a new connection
		 * is a new context. */
		worker_drop_conn(w);
		r = worker_connect(w, seq, false);
		break;
	case TK_STEP_PROBE:
		worker_drop_conn(w);
		r = worker_connect(w, seq, false);
		if (r == TK_OK && probe(w) != TK_OK && !worker_gone(w))
			r = do_reset(w, TK_READER_COLD_RESET);
		break;
	default:
		r = TK_ERR_INTERNAL;
		break;
	}
	if (r == TK_OK && !worker_gone(w))
		r = probe(w);
	*abandoned = guard_end(w);
	/* Keep the connection for the next step unless its context is dead. */
	if (r == TK_ERR_NO_SERVICE && !*abandoned)
		worker_drop_conn(w);
	return r;
}

/* The step worked: the card is usable again, one generation on. */
static void
cured(worker_t *w, uint64_t seq, int step)
{
	tk_slotmgr_t *m = w->m;
	slot_t *s = w->slot;

	tk_recovery_t copy;
	bool log;

	/* one critical section: whoever sees the slot valid again also sees
	 * the recovery that made it so (tk_slotmgr_diag, the history) */
	pthread_mutex_lock(&m->mtx);
	if (s->worker == w && s->card_seq == seq) {
		s->gen++;
		w->conn_card_seq = seq;
		if (s->state != TK_SLOT_VALID)
			mgr_set_state_locked(m, s, TK_SLOT_VALID);
	}
	log = rec_finish_locked(m, s, step, TK_OK, &copy);
	pthread_mutex_unlock(&m->mtx);
	if (log)
		rec_log(m, s, &copy);
}

/* Sleep up to ms on the worker's queue; true when something needs the
 * worker (work queued, quit, abandoned). */
static bool
backoff_sleep(worker_t *w, int ms)
{
	struct timespec dl;
	bool woken;

	tk_abstime_in_ms(&dl, ms);
	pthread_mutex_lock(&w->mtx);
	while (w->head == NULL && !w->quit && !w->abandoned) {
		if (pthread_cond_timedwait(&w->cond, &w->mtx, &dl) != 0)
			break;
	}
	woken = w->head != NULL || w->quit || w->abandoned;
	pthread_mutex_unlock(&w->mtx);
	return woken;
}

static int
quarantine(worker_t *w, uint64_t seq)
{
	tk_slotmgr_t *m = w->m;
	int lo = m->opts.backoff_min_ms > 0 ? m->opts.backoff_min_ms : BACKOFF_MIN_MS;
	int hi = m->opts.backoff_max_ms > 0 ? m->opts.backoff_max_ms : BACKOFF_MAX_MS;
	int wait = lo;

	if (hi < lo)
		hi = lo;
	for (uint32_t n = 0;; n++) {
		bool abandoned;
		int64_t t0;
		int r;

		if (backoff_sleep(w, wait)) {
			if (worker_gone(w)) {
				bool ab;

				pthread_mutex_lock(&w->mtx);
				ab = w->abandoned;
				pthread_mutex_unlock(&w->mtx);
				if (!ab)
					rec_finish(m, w->slot, TK_STEP_NONE, TK_ERR_READER_GONE);
				return TK_ERR_QUARANTINED;
			}
			/* Work arrived: a forced recovery, or the card changed. */
			rec_finish(m, w->slot, TK_STEP_NONE,
			           worker_card_there(w, seq) ? TK_ERR_QUARANTINED
			                                     : TK_ERR_CARD_REMOVED);
			return TK_ERR_QUARANTINED;
		}
		if (!worker_card_there(w, seq)) {
			rec_finish(m, w->slot, TK_STEP_NONE, TK_ERR_CARD_REMOVED);
			return TK_ERR_CARD_REMOVED;
		}
		t0 = tk_now_us();
		r = run_step(w, TK_STEP_PROBE, seq, &abandoned);
		if (abandoned)
			return TK_ERR_UNRESPONSIVE; /* the record goes on in the next worker */
		pthread_mutex_lock(&m->mtx);
		w->slot->rec.probes = n + 1;
		rec_step_locked(w->slot, TK_STEP_PROBE, r, tk_now_us() - t0);
		pthread_mutex_unlock(&m->mtx);
		if (r == TK_OK) {
			cured(w, seq, TK_STEP_PROBE);
			return TK_OK;
		}
		tk_log_debug("slotmgr: %s: quarantine probe %u: %s", w->slot->name, n + 1,
		             tk_strerror(r));
		wait = wait > hi / 2 ? hi : wait * 2;
	}
}

/* Where an automatic ladder (from the reconnect) starts: at the step the
 * backend says its transport's fault needs (a halted pipe is not cured by
 * a reconnect, and a wedged reader makes every card-level step wait for
 * its timeout). */
static int
first_step(worker_t *w, int first)
{
	const backend_t *bk = w->slot->bk;
	int hint;

	if (first != TK_STEP_RECONNECT || bk->ops->fault_step == NULL || bk->ops->recover == NULL)
		return first;
	hint = bk->ops->fault_step(bk->be, w->slot->name);
	if (!transport_step(hint))
		return first;
	tk_log_info("slotmgr: %s: the reader's transport needs %s first", w->slot->name,
	            tk_recovery_step_name(hint));
	return hint;
}

/* Is step one this reader's backend has? Transport steps are the USB
 * backends'; a new context is PC/SC's cure (a backend with transport
 * steps has deeper ones of its own). */
static bool
has_step(const backend_t *bk, int step)
{
	if (transport_step(step))
		return bk->ops->recover != NULL;
	if (step == TK_STEP_CONTEXT)
		return bk->ops->recover == NULL;
	return true;
}

int
rec_ladder(worker_t *w, int first, uint64_t seq)
{
	static const int ladder[] = {TK_STEP_RECONNECT,  TK_STEP_WARM_RESET, TK_STEP_COLD_RESET,
	                             TK_STEP_CLEAR_HALT, TK_STEP_ABORT,      TK_STEP_USB_RESET,
	                             TK_STEP_CONTEXT};
	tk_slotmgr_t *m = w->m;
	slot_t *s = w->slot;
	size_t i = 0;
	bool ours;

	if (first == TK_STEP_PROBE)
		return quarantine(w, seq);
	first = first_step(w, first);
	while (i < sizeof(ladder) / sizeof(ladder[0]) && ladder[i] != first)
		i++;
	pthread_mutex_lock(&m->mtx);
	ours = s->worker == w && s->card_seq == seq && seq != 0 && !m->stopping;
	if (ours) {
		rec_begin_locked(m, s, TK_OK,
		                 first == TK_STEP_COLD_RESET ? "forced-cold" : "forced");
		if (s->state != TK_SLOT_RECOVERING)
			mgr_set_state_locked(m, s, TK_SLOT_RECOVERING);
	}
	pthread_mutex_unlock(&m->mtx);
	if (!ours) {
		rec_finish(m, s, TK_STEP_NONE, TK_ERR_CARD_REMOVED);
		return seq == 0 ? TK_ERR_NO_CARD : TK_ERR_CARD_REMOVED;
	}
	for (; i < sizeof(ladder) / sizeof(ladder[0]); i++) {
		bool abandoned;
		int64_t t0 = tk_now_us();
		int r;

		if (worker_gone(w)) {
			rec_finish(m, s, TK_STEP_NONE, TK_ERR_READER_GONE);
			return TK_ERR_READER_GONE;
		}
		if ((ladder[i] == TK_STEP_WARM_RESET || ladder[i] == TK_STEP_COLD_RESET) &&
		    s->bk->ops->recover == NULL) {
			/* A card that died mid-APDU is reported removed only at the
			 * daemon's next presence poll; a reset sent before that
			 * reaches a reader without a card, and pcscd 1.9.9 + vpcd
			 * then report the reader empty even after the card is
			 * back. Give the removal time to show (a queued
			 * disconnect cuts this short). A USB reader (a backend
			 * with transport steps) reports a removal on its
			 * interrupt pipe at once. */
			(void)backoff_sleep(w, RESET_SETTLE_MS);
			if (worker_gone(w)) {
				rec_finish(m, s, TK_STEP_NONE, TK_ERR_READER_GONE);
				return TK_ERR_READER_GONE;
			}
		}
		if (!worker_card_there(w, seq)) {
			rec_finish(m, s, TK_STEP_NONE, TK_ERR_CARD_REMOVED);
			return TK_ERR_CARD_REMOVED;
		}
		if (!has_step(s->bk, ladder[i]))
			continue;
		r = run_step(w, ladder[i], seq, &abandoned);
		if (abandoned) {
			bool ab;

			pthread_mutex_lock(&w->mtx);
			ab = w->abandoned;
			pthread_mutex_unlock(&w->mtx);
			if (!ab) /* told to quit: the reader went away */
				rec_finish(m, s, TK_STEP_NONE, TK_ERR_READER_GONE);
			return TK_ERR_UNRESPONSIVE;
		}
		if (r == TK_ERR_NOT_SUPPORTED && transport_step(ladder[i]))
			continue; /* not a step this reader has */
		pthread_mutex_lock(&m->mtx);
		rec_step_locked(s, ladder[i], r, tk_now_us() - t0);
		pthread_mutex_unlock(&m->mtx);
		tk_log_info("slotmgr: %s: recovery step %s: %s", s->name,
		            tk_recovery_step_name(ladder[i]), tk_strerror(r));
		if (r == TK_OK) {
			cured(w, seq, ladder[i]);
			return TK_OK;
		}
		if (r == TK_ERR_CARD_REMOVED || r == TK_ERR_NO_CARD || r == TK_ERR_NO_READER) {
			rec_finish(m, s, TK_STEP_NONE, TK_ERR_CARD_REMOVED);
			return TK_ERR_CARD_REMOVED;
		}
	}
	/* Nothing worked: quarantine, re-probe with back-off after the
	 * caller (if any) has its answer. */
	pthread_mutex_lock(&m->mtx);
	if (s->worker == w && s->card_seq == seq && s->state != TK_SLOT_QUARANTINED)
		mgr_set_state_locked(m, s, TK_SLOT_QUARANTINED);
	pthread_mutex_unlock(&m->mtx);
	tk_log_warn("slotmgr: %s: recovery failed; quarantined", s->name);
	worker_fail_queue(w, TK_ERR_QUARANTINED);
	w->need_recovery = TK_STEP_PROBE;
	w->need_recovery_seq = seq;
	return TK_ERR_QUARANTINED;
}

void
rec_watchdog(tk_slotmgr_t *m)
{
	int64_t now = tk_now_us();

	pthread_mutex_lock(&m->mtx);
	for (size_t i = 0; i < m->nslots; i++) {
		slot_t *s = m->slots[i];
		worker_t *w = s->worker;
		int64_t dl;

		if (w == NULL)
			continue;
		pthread_mutex_lock(&w->mtx);
		dl = w->step_deadline_us;
		pthread_mutex_unlock(&w->mtx);
		if (dl != 0 && now > dl)
			worker_abandon_locked(m, s, w, TK_ERR_UNRESPONSIVE, "recovery step");
	}
	pthread_mutex_unlock(&m->mtx);
}
