/* tokenkit: the slot manager — backends, readers, slots, hotplug, service
 * loss.
 *
 * Each backend has one monitor thread that enumerates its readers, waits
 * for changes in bounded steps (so it notices a stop or a dead daemon in
 * time), and turns the differences into slot state changes and events. A
 * reader is (backend, name): two backends never share a slot, and a slot
 * keeps its backend and id for the manager's life. Card I/O happens in the
 * per-reader workers (worker.c); events are delivered by events.c. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <tokenkit/err.h>
#include <tokenkit/log.h>

#include "clock.h"
#include "env.h"
#include "slotmgr_priv.h"

#define MONITOR_POLL_MS 1000
#define SERVICE_RETRY_MS 250
#define STOP_GRACE_MS 1000
/* How long a backend's first scan waits for the backends before it in the
 * spec: a pcscd started on demand by the PC/SC backend's first call takes
 * its USB readers while it starts; the CCID backend must not claim them
 * first. */
#define ORDER_WAIT_MS 3000
#define SPEC_MAX 1024

const char *
tk_slot_state_name(int state)
{
	switch (state) {
	case TK_SLOT_ABSENT:
		return "absent";
	case TK_SLOT_EMPTY:
		return "empty";
	case TK_SLOT_PROBING:
		return "probing";
	case TK_SLOT_MUTE:
		return "mute";
	case TK_SLOT_VALID:
		return "valid";
	case TK_SLOT_RECOVERING:
		return "recovering";
	case TK_SLOT_QUARANTINED:
		return "quarantined";
	default:
		return "unknown";
	}
}

void
tk_slotmgr_opts_init(tk_slotmgr_opts_t *o)
{
	if (o == NULL)
		return;
	memset(o, 0, sizeof(*o));
	o->transmit_timeout_ms = TK_CARD_DEFAULT_TIMEOUT_MS;
}

void
mgr_ref(tk_slotmgr_t *m)
{
	atomic_fetch_add(&m->refs, 1);
}

void
mgr_unref(tk_slotmgr_t *m)
{
	if (m == NULL || atomic_fetch_sub(&m->refs, 1) != 1)
		return;
	for (size_t i = 0; i < m->nslots; i++)
		free(m->slots[i]);
	free(m->slots);
	/* Only detached entries are left (their threads hold no reference now). */
	tk_threads_free(&m->threads);
	free(m->log_path);
	ev_destroy(m);
	pthread_mutex_destroy(&m->mtx);
	pthread_cond_destroy(&m->cond);
	free(m);
}

void
mgr_set_state_locked(tk_slotmgr_t *m, slot_t *s, int state)
{
	int old = s->state;

	if (old == state)
		return;
	s->state = state;
	ev_queue_locked(m, TK_EVENT_STATE_CHANGED, s, old, 0);
	pthread_cond_broadcast(&m->cond);
}

slot_t *
mgr_slot_locked(tk_slotmgr_t *m, uint32_t id)
{
	for (size_t i = 0; i < m->nslots; i++)
		if (m->slots[i]->id == id)
			return m->slots[i];
	return NULL;
}

static slot_t *
slot_by_name_locked(tk_slotmgr_t *m, const backend_t *bk, const char *name)
{
	for (size_t i = 0; i < m->nslots; i++)
		if (m->slots[i]->bk == bk && strcmp(m->slots[i]->name, name) == 0)
			return m->slots[i];
	return NULL;
}

static slot_t *
slot_create_locked(tk_slotmgr_t *m, backend_t *bk, const char *name)
{
	slot_t **ns, *s;

	s = calloc(1, sizeof(*s));
	if (s == NULL)
		return NULL;
	ns = realloc(m->slots, (m->nslots + 1) * sizeof(*ns));
	if (ns == NULL) {
		free(s);
		return NULL;
	}
	m->slots = ns;
	s->id = m->next_id++;
	s->bk = bk;
	snprintf(s->name, sizeof(s->name), "%s", name);
	s->state = TK_SLOT_ABSENT;
	s->protocol = -1;
	m->slots[m->nslots++] = s;
	return s;
}

static void
card_gone_locked(tk_slotmgr_t *m, slot_t *s)
{
	int old = s->state;

	if (s->card_seq == 0)
		return;
	s->state = s->present ? TK_SLOT_EMPTY : TK_SLOT_ABSENT;
	ev_queue_locked(m, TK_EVENT_CARD_REMOVED, s, old, 0);
	s->card_seq = 0;
	s->atr_len = 0;
	s->protocol = -1;
	worker_post_locked(s, W_DISCONNECT, 0);
	pthread_cond_broadcast(&m->cond);
}

static void
card_new_locked(tk_slotmgr_t *m, slot_t *s, const tk_reader_desc_t *d)
{
	int old = s->state;

	if (s->lost_seq != 0 && d->atr_len == s->lost_atr_len &&
	    memcmp(d->atr, s->lost_atr, d->atr_len) == 0 && !d->card_mute) {
		/* The card it had before the service went away, by reader and
		 * ATR: its handles are re-bound to the new connection, one
		 * generation on (re-select; the login is gone). The token
		 * layer checks the card's identity beyond the ATR. */
		s->card_seq = s->lost_seq;
		s->rebinds++;
		s->gen++;
		tk_log_info("slotmgr: %s: same card back after the service restart; re-bound",
		            s->name);
	} else {
		s->card_seq = ++m->next_card_seq;
	}
	s->lost_seq = 0;
	memcpy(s->atr, d->atr, d->atr_len);
	s->atr_len = d->atr_len;
	s->protocol = -1;
	s->state = d->card_mute ? TK_SLOT_MUTE : TK_SLOT_PROBING;
	ev_queue_locked(m, TK_EVENT_CARD_INSERTED, s, old, 0);
	if (d->card_mute)
		return;
	/* A new card gets a usable worker even if an old one is still stuck
	 * (removing the card usually releases it anyway). */
	if (worker_start_locked(m, s) != TK_OK) {
		mgr_set_state_locked(m, s, TK_SLOT_MUTE);
		return;
	}
	worker_post_locked(s, W_CONNECT, s->card_seq);
}

static void
reader_gone_locked(tk_slotmgr_t *m, slot_t *s)
{
	int old;

	if (!s->present)
		return;
	s->present = false;
	card_gone_locked(m, s);
	worker_stop_locked(m, s, TK_ERR_READER_GONE);
	old = s->state;
	s->state = TK_SLOT_ABSENT;
	ev_queue_locked(m, TK_EVENT_READER_REMOVED, s, old, 0);
}

static void
reconcile_locked(backend_t *bk, const tk_reader_desc_t *d, size_t n)
{
	tk_slotmgr_t *m = bk->m;

	for (size_t i = 0; i < n; i++) {
		slot_t *s = slot_by_name_locked(m, bk, d[i].name);
		bool replaced;

		if (s == NULL)
			s = slot_create_locked(m, bk, d[i].name);
		if (s == NULL) {
			tk_log_error("slotmgr: out of memory for reader %s", d[i].name);
			continue;
		}
		memcpy(s->exchange, d[i].exchange, sizeof(s->exchange));
		s->exchange[sizeof(s->exchange) - 1] = '\0';
		s->reader_slots = d[i].reader_slots;
		if (!s->present) {
			s->present = true;
			s->state = TK_SLOT_EMPTY;
			s->card_seq = 0;
			ev_queue_locked(m, TK_EVENT_READER_ADDED, s, TK_SLOT_ABSENT, 0);
			if (worker_start_locked(m, s) != TK_OK)
				tk_log_error("slotmgr: %s: no worker", s->name);
		} else if (s->worker == NULL && s->stuck == NULL && s->card_seq == 0) {
			(void)worker_start_locked(m, s);
		}
		/* Present both times but a different insertion in between. */
		replaced = s->card_seq != 0 && d[i].card_present && d[i].event_count != 0 &&
		           s->event_count != 0 && d[i].event_count != s->event_count;
		if (s->card_seq != 0 && (!d[i].card_present || replaced))
			card_gone_locked(m, s);
		if (s->card_seq == 0 && d[i].card_present)
			card_new_locked(m, s, &d[i]);
		s->event_count = d[i].event_count;
	}
	for (size_t j = 0; j < m->nslots; j++) {
		slot_t *s = m->slots[j];
		bool found = false;

		if (s->bk != bk)
			continue;
		for (size_t i = 0; i < n && !found; i++)
			found = strcmp(s->name, d[i].name) == 0;
		if (!found)
			reader_gone_locked(m, s);
	}
}

/* With m->mtx held: m->ready when every backend finished its first scan;
 * ready_err TK_OK when one of them works, else the first one's error. */
static void
update_ready_locked(tk_slotmgr_t *m)
{
	bool all = true;
	int err = TK_ERR_NO_SERVICE;

	for (size_t i = 0; i < m->nbackends; i++) {
		const backend_t *bk = &m->backends[i];

		all = all && bk->ready;
		if (bk->ready && bk->ready_err == TK_OK)
			err = TK_OK;
		else if (i == 0 && bk->ready && err != TK_OK)
			err = bk->ready_err;
	}
	if (all && (!m->ready || m->ready_err != err)) {
		m->ready = true;
		m->ready_err = err;
	}
	pthread_cond_broadcast(&m->cond);
}

static void
set_backend_ready_locked(backend_t *bk, int err)
{
	if (bk->ready && bk->ready_err == err)
		return;
	bk->ready = true;
	bk->ready_err = err;
	update_ready_locked(bk->m);
}

static void
service_lost_locked(backend_t *bk)
{
	tk_slotmgr_t *m = bk->m;

	if (bk->service_up) {
		tk_log_warn("slotmgr: reader service lost (%s)", bk->ops->name);
		bk->service_up = false;
		for (size_t i = 0; i < m->nslots; i++) {
			slot_t *s = m->slots[i];

			if (s->bk != bk)
				continue;
			/* Remember the card, to re-bind it if it comes back. */
			if (s->present && s->card_seq != 0) {
				s->lost_seq = s->card_seq;
				memcpy(s->lost_atr, s->atr, s->atr_len);
				s->lost_atr_len = s->atr_len;
			}
			reader_gone_locked(m, s);
		}
		ev_queue_service(m, bk, TK_EVENT_SERVICE_LOST);
		bk->service_down_reported = true;
	} else if (!bk->service_down_reported) {
		bk->service_down_reported = true;
	}
	if (!bk->ready)
		set_backend_ready_locked(bk, TK_ERR_NO_SERVICE);
}

/* Sleep on m->cond until stop or timeout; returns true when stopping. */
static bool
monitor_sleep(tk_slotmgr_t *m, int ms)
{
	struct timespec dl;
	bool stop;

	tk_abstime_in_ms(&dl, ms);
	pthread_mutex_lock(&m->mtx);
	while (!m->stopping) {
		if (pthread_cond_timedwait(&m->cond, &m->mtx, &dl) == ETIMEDOUT)
			break;
	}
	stop = m->stopping;
	pthread_mutex_unlock(&m->mtx);
	return stop;
}

static bool
stopping(tk_slotmgr_t *m)
{
	bool s;

	pthread_mutex_lock(&m->mtx);
	s = m->stopping;
	pthread_mutex_unlock(&m->mtx);
	return s;
}

/* The monitor's last touch of the manager. When tk_slotmgr_free gave up
 * waiting for it (it was inside a backend call that did not return: a
 * PC/SC daemon that does not answer blocks pcsc-lite without a timeout),
 * the backend is still in use here until now, so the monitor closes it. */
static void
monitor_exit(backend_t *bk)
{
	tk_slotmgr_t *m = bk->m;
	bool close_be;

	pthread_mutex_lock(&m->mtx);
	bk->monitor_done = true;
	close_be = bk->monitor_detached;
	pthread_cond_broadcast(&m->cond);
	pthread_mutex_unlock(&m->mtx);
	if (close_be) {
		tk_log_info("slotmgr: the reader service (%s) answered at last; monitor gone",
		            bk->ops->name);
		bk->ops->close(bk->be);
		bk->be = NULL;
	}
	mgr_unref(m);
}

/* Before its first scan: the backends before this one have finished theirs
 * (bounded by ORDER_WAIT_MS). */
static void
wait_previous(backend_t *bk)
{
	tk_slotmgr_t *m = bk->m;
	int64_t end = tk_now_us() + (int64_t)ORDER_WAIT_MS * 1000;

	pthread_mutex_lock(&m->mtx);
	for (;;) {
		bool all = true;

		for (unsigned i = 0; i < bk->idx; i++)
			all = all && m->backends[i].ready;
		if (all || m->stopping || tk_now_us() >= end)
			break;
		tk_cond_wait_until_us(&m->cond, &m->mtx, end);
	}
	pthread_mutex_unlock(&m->mtx);
}

static void *
monitor_main(void *arg)
{
	backend_t *bk = arg;
	tk_slotmgr_t *m = bk->m;

	wait_previous(bk);
	while (!stopping(m)) {
		tk_reader_desc_t *d = NULL;
		size_t n = 0;
		int r;

		r = bk->ops->enumerate(bk->be, &d, &n);
		if (r != TK_OK) {
			pthread_mutex_lock(&m->mtx);
			if (r == TK_ERR_NO_SERVICE)
				service_lost_locked(bk);
			else
				tk_log_debug("slotmgr: %s: enumerate: %s", bk->ops->name,
				             tk_strerror(r));
			pthread_mutex_unlock(&m->mtx);
			if (monitor_sleep(m, SERVICE_RETRY_MS))
				break;
			continue;
		}
		pthread_mutex_lock(&m->mtx);
		if (!bk->service_up) {
			bk->service_up = true;
			if (bk->service_down_reported) {
				tk_log_info("slotmgr: reader service (%s) available again",
				            bk->ops->name);
				ev_queue_service(m, bk, TK_EVENT_SERVICE_RESTORED);
				bk->service_down_reported = false;
			}
		}
		if (!m->stopping)
			reconcile_locked(bk, d, n);
		set_backend_ready_locked(bk, TK_OK);
		pthread_cond_broadcast(&m->cond);
		pthread_mutex_unlock(&m->mtx);
		free(d);

		rec_watchdog(m);
		worker_reap(m); /* workers that left since (a card or reader went) */
		r = bk->ops->wait_change(bk->be, m->poll_ms);
		rec_watchdog(m);
		if (r == TK_ERR_NO_SERVICE) {
			pthread_mutex_lock(&m->mtx);
			service_lost_locked(bk);
			pthread_mutex_unlock(&m->mtx);
		} else if (r != TK_OK && r != TK_ERR_TIMEOUT && r != TK_ERR_CANCELLED) {
			tk_log_debug("slotmgr: %s: wait: %s", bk->ops->name, tk_strerror(r));
			if (monitor_sleep(m, SERVICE_RETRY_MS))
				break;
		}
	}
	monitor_exit(bk);
	return NULL;
}

static void
backend_open_failed(const tk_reader_ops_t *ops, bool optional, int r)
{
	if (optional)
		tk_log_info("slotmgr: reader backend '%s' left out: %s", ops->name, tk_strerror(r));
	else
		tk_log_warn("slotmgr: reader backend '%s' cannot start: %s; going on without it",
		            ops->name, tk_strerror(r));
}

int
tk_slotmgr_new_multi(const tk_slotmgr_opts_t *opts, const tk_reader_ops_t *const *ops,
                     const char *const *configs, const bool *optional, size_t n, int poll_ms,
                     tk_slotmgr_t **out)
{
	tk_slotmgr_t *m;
	int r = TK_ERR_INVALID_ARG, first_err = TK_OK;

	if (out != NULL)
		*out = NULL;
	if (out == NULL || ops == NULL || n == 0 || n > TK_READER_SPEC_MAX)
		return TK_ERR_INVALID_ARG;
	m = calloc(1, sizeof(*m));
	if (m == NULL)
		return TK_ERR_NO_MEMORY;
	if (opts != NULL)
		m->opts = *opts;
	else
		tk_slotmgr_opts_init(&m->opts);
	if (m->opts.transmit_timeout_ms <= 0)
		m->opts.transmit_timeout_ms = TK_CARD_DEFAULT_TIMEOUT_MS;
	m->log_path = rec_log_resolve(m->opts.recovery_log);
	m->opts.recovery_log = NULL; /* the caller's strings are not kept */
	m->opts.readers = NULL;
	m->opts.default_readers = NULL;
	m->poll_ms = poll_ms > 0 ? poll_ms : MONITOR_POLL_MS;
	m->next_id = 1;
	atomic_init(&m->refs, 1);
	pthread_mutex_init(&m->mtx, NULL);
	tk_cond_init_monotonic(&m->cond);
	ev_init(m);
	for (size_t i = 0; i < n; i++) {
		backend_t *bk = &m->backends[m->nbackends];

		if (ops[i] == NULL) {
			r = TK_ERR_INVALID_ARG;
			goto fail;
		}
		r = ops[i]->open(&bk->be, configs != NULL ? configs[i] : NULL);
		if (r == TK_ERR_INVALID_ARG)
			goto fail; /* a config the backend does not understand */
		if (r != TK_OK) {
			backend_open_failed(ops[i], optional != NULL && optional[i], r);
			if (first_err == TK_OK)
				first_err = r;
			continue;
		}
		bk->m = m;
		bk->idx = (unsigned)m->nbackends;
		bk->ops = ops[i];
		m->nbackends++;
	}
	if (m->nbackends == 0) {
		r = first_err;
		goto fail;
	}
	if (pthread_create(&m->ev_thread, NULL, ev_thread_main, m) != 0) {
		r = TK_ERR_NO_MEMORY;
		goto fail;
	}
	m->ev_started = true;
	for (size_t i = 0; i < m->nbackends; i++) {
		backend_t *bk = &m->backends[i];

		mgr_ref(m); /* the monitor's: it may outlive tk_slotmgr_free (monitor_exit) */
		if (pthread_create(&bk->monitor, NULL, monitor_main, bk) != 0) {
			atomic_fetch_sub(&m->refs, 1);
			r = TK_ERR_NO_MEMORY;
			goto fail;
		}
		bk->monitor_started = true;
	}
	*out = m;
	return TK_OK;
fail:
	tk_slotmgr_free(&m);
	return r;
}

int
tk_slotmgr_new_with_ops(const tk_slotmgr_opts_t *opts, const tk_reader_ops_t *ops,
                        const char *config, int poll_ms, tk_slotmgr_t **out)
{
	return tk_slotmgr_new_multi(opts, &ops, &config, NULL, 1, poll_ms, out);
}

int
tk_slotmgr_new(const tk_slotmgr_opts_t *opts, tk_slotmgr_t **out)
{
	const char *spec = opts != NULL ? opts->readers : NULL;
	const tk_reader_ops_t *ops[TK_READER_SPEC_MAX];
	const char *configs[TK_READER_SPEC_MAX];
	bool optional[TK_READER_SPEC_MAX];
	tk_reader_spec_item_t items[TK_READER_SPEC_MAX];
	char buf[SPEC_MAX];
	size_t n = 0, k = 0;
	int r;

	if (out != NULL)
		*out = NULL;
	if (out == NULL)
		return TK_ERR_INVALID_ARG;
	if (spec == NULL)
		spec = tk_env("TOKENKIT_READERS");
	if ((spec == NULL || *spec == '\0') && opts != NULL)
		spec = opts->default_readers;
	if (spec == NULL || *spec == '\0')
		spec = "pcsc";
	if (strlen(spec) >= sizeof(buf)) {
		tk_log_error("slotmgr: reader spec too long (%zu bytes)", strlen(spec));
		return TK_ERR_INVALID_ARG;
	}
	memcpy(buf, spec, strlen(spec) + 1);
	r = tk_reader_spec_parse(buf, items, TK_READER_SPEC_MAX, &n);
	if (r != TK_OK) {
		tk_log_error("slotmgr: reader spec '%s' not usable: %s (want one or more of pcsc, "
		             "ccid, vcard:... joined by '+')",
		             spec, tk_strerror(r));
		return TK_ERR_INVALID_ARG;
	}
	for (size_t i = 0; i < n; i++) {
		/* An unknown backend or a plugin that does not load fails loudly
		 * (the reason is logged) rather than falling back to PC/SC,
		 * unless it was asked for with "?". */
		r = tk_reader_backend_find(items[i].name, strlen(items[i].name), &ops[k]);
		if (r != TK_OK && items[i].optional) {
			tk_log_info("slotmgr: optional reader backend '%s' not available",
			            items[i].name);
			continue;
		}
		if (r != TK_OK) {
			tk_log_error(
			        "slotmgr: reader spec '%s' not usable (want pcsc, ccid with the "
			        "USB reader plugin, or vcard:... with the virtual reader plugin)",
			        spec);
			return TK_ERR_INVALID_ARG;
		}
		configs[k] = items[i].config;
		optional[k] = items[i].optional;
		k++;
	}
	if (k == 0) {
		tk_log_error("slotmgr: reader spec '%s': no backend available", spec);
		return TK_ERR_INVALID_ARG;
	}
	return tk_slotmgr_new_multi(opts, ops, configs, optional, k, 0, out);
}

/* Stop the monitors: cancel their waits and join them, or, when one is
 * stuck in its backend (pcsc-lite waits for a daemon that does not answer
 * without any timeout), detach it. The bound is one wait_change (a cancel
 * that arrives just before the wait begins is not seen by it) plus
 * STOP_GRACE_MS, for all of them together. */
static void
monitors_join(tk_slotmgr_t *m)
{
	int64_t end = tk_now_us() + (int64_t)(m->poll_ms + STOP_GRACE_MS) * 1000;

	for (size_t i = 0; i < m->nbackends; i++)
		if (m->backends[i].monitor_started)
			m->backends[i].ops->cancel(m->backends[i].be);
	for (size_t i = 0; i < m->nbackends; i++) {
		backend_t *bk = &m->backends[i];
		bool done;

		if (!bk->monitor_started)
			continue;
		pthread_mutex_lock(&m->mtx);
		while (!bk->monitor_done && tk_now_us() < end)
			tk_cond_wait_until_us(&m->cond, &m->mtx, end);
		done = bk->monitor_done;
		if (!done) {
			pthread_detach(bk->monitor);
			bk->monitor_detached = true;
		}
		pthread_mutex_unlock(&m->mtx);
		if (done)
			pthread_join(bk->monitor, NULL);
		else
			tk_log_warn("slotmgr: the reader service (%s) does not answer; its monitor "
			            "is left behind",
			            bk->ops->name);
	}
}

void
tk_slotmgr_free(tk_slotmgr_t **mp)
{
	tk_slotmgr_t *m;
	int step_ms;

	if (mp == NULL || *mp == NULL)
		return;
	m = *mp;
	*mp = NULL;
	pthread_mutex_lock(&m->mtx);
	m->stopping = true;
	pthread_cond_broadcast(&m->cond);
	pthread_mutex_unlock(&m->mtx);
	monitors_join(m);
	pthread_mutex_lock(&m->mtx);
	for (size_t i = 0; i < m->nslots; i++)
		worker_stop_locked(m, m->slots[i], TK_ERR_READER_GONE);
	pthread_mutex_unlock(&m->mtx);
	/* Nothing of ours runs after this returns, except a worker stuck in
	 * the backend: it is detached and frees its share (and maybe the
	 * manager) whenever the call returns. A worker busy with an ordinary
	 * call gets that call's deadline. */
	step_ms =
	        m->opts.step_timeout_ms > 0 ? m->opts.step_timeout_ms : m->opts.transmit_timeout_ms;
	worker_join_all(m, STOP_GRACE_MS, step_ms > STOP_GRACE_MS ? step_ms : STOP_GRACE_MS);
	if (m->ev_started) {
		pthread_mutex_lock(&m->ev_mtx);
		m->ev_stop = true;
		pthread_cond_broadcast(&m->ev_cond);
		pthread_mutex_unlock(&m->ev_mtx);
		pthread_join(m->ev_thread, NULL);
	}
	/* (a detached monitor closes its backend itself once it returns; a
	 * worker stuck in a backend keeps the manager, not the backend: the
	 * backends' close must cope with connections still out, as PC/SC's
	 * do: each connection has its own context) */
	for (size_t i = 0; i < m->nbackends; i++) {
		backend_t *bk = &m->backends[i];

		if (!bk->monitor_detached && bk->be != NULL) {
			bk->ops->close(bk->be);
			bk->be = NULL;
		}
	}
	mgr_unref(m);
}

void
tk_slotmgr_cancel(tk_slotmgr_t *m)
{
	if (m == NULL)
		return;
	pthread_mutex_lock(&m->mtx);
	m->cancelled = true;
	for (size_t i = 0; i < m->nslots; i++) {
		if (m->slots[i]->worker != NULL)
			worker_cancel_waits_locked(m->slots[i]->worker);
	}
	/* tk_slotmgr_card waits for a card being connected */
	pthread_cond_broadcast(&m->cond);
	pthread_mutex_unlock(&m->mtx);
}

int
tk_slotmgr_wait_ready(tk_slotmgr_t *m, int timeout_ms)
{
	struct timespec dl;
	int r;

	if (m == NULL)
		return TK_ERR_INVALID_ARG;
	tk_abstime_in_ms(&dl, timeout_ms > 0 ? timeout_ms : 0);
	pthread_mutex_lock(&m->mtx);
	while (!m->ready) {
		if (pthread_cond_timedwait(&m->cond, &m->mtx, &dl) == ETIMEDOUT)
			break;
	}
	r = m->ready ? m->ready_err : TK_ERR_TIMEOUT;
	pthread_mutex_unlock(&m->mtx);
	return r;
}

int
tk_slotmgr_backend_status(tk_slotmgr_t *m, const char *name)
{
	int r = TK_ERR_NOT_FOUND;

	if (m == NULL || name == NULL)
		return TK_ERR_INVALID_ARG;
	pthread_mutex_lock(&m->mtx);
	for (size_t i = 0; i < m->nbackends; i++) {
		const backend_t *bk = &m->backends[i];

		if (strcmp(bk->ops->name, name) != 0)
			continue;
		r = bk->service_up ? TK_OK : bk->ready ? TK_ERR_NO_SERVICE : TK_ERR_TIMEOUT;
		break;
	}
	pthread_mutex_unlock(&m->mtx);
	return r;
}

/* With m->mtx held. */
static void
fill_info(const slot_t *s, tk_slot_info_t *info)
{
	worker_t *w;
	int64_t since;

	memset(info, 0, sizeof(*info));
	info->slot_id = s->id;
	snprintf(info->reader, sizeof(info->reader), "%s", s->name);
	info->state = s->state;
	info->card_seq = s->card_seq;
	if (s->card_seq != 0) {
		memcpy(info->atr, s->atr, s->atr_len);
		info->atr_len = s->atr_len;
	}
	info->protocol = s->state == TK_SLOT_VALID ? s->protocol : -1;
	info->transmits = s->stats.transmits;
	info->errors = s->stats.errors;
	snprintf(info->backend, sizeof(info->backend), "%s", s->bk->ops->name);
	snprintf(info->exchange, sizeof(info->exchange), "%s", s->exchange);
	info->reader_slots = s->reader_slots;
	info->pin_pad =
	        s->card_seq != 0 && s->connected_seq == s->card_seq && s->caps.pin_pad_verify;
	/* A stuck (abandoned) worker is still alive while s->stuck is set:
	 * it clears that under m->mtx, held here, before it goes. */
	w = s->worker != NULL ? s->worker : s->stuck;
	since = w != NULL ? atomic_load(&w->io_since_us) : 0;
	if (since > 0) {
		int64_t ms = (tk_now_us() - since) / 1000;

		info->busy_ms = ms <= 0 ? 0 : ms > UINT32_MAX ? UINT32_MAX : (uint32_t)ms;
	}
}

int
tk_slotmgr_list(tk_slotmgr_t *m, tk_slot_info_t **infos, size_t *count)
{
	tk_slot_info_t *a;
	size_t k = 0;

	if (infos != NULL)
		*infos = NULL;
	if (count != NULL)
		*count = 0;
	if (m == NULL || infos == NULL || count == NULL)
		return TK_ERR_INVALID_ARG;
	pthread_mutex_lock(&m->mtx);
	a = calloc(m->nslots + 1, sizeof(*a));
	if (a == NULL) {
		pthread_mutex_unlock(&m->mtx);
		return TK_ERR_NO_MEMORY;
	}
	for (int pass = 0; pass < 2; pass++)
		for (size_t i = 0; i < m->nslots; i++)
			if (m->slots[i]->present == (pass == 0))
				fill_info(m->slots[i], &a[k++]);
	pthread_mutex_unlock(&m->mtx);
	*infos = a;
	*count = k;
	return TK_OK;
}

int
tk_slotmgr_find(tk_slotmgr_t *m, const char *name, uint32_t *slot_id)
{
	const slot_t *hit = NULL;
	int r = TK_ERR_NO_READER;

	if (slot_id != NULL)
		*slot_id = 0;
	if (m == NULL || name == NULL || slot_id == NULL)
		return TK_ERR_INVALID_ARG;
	pthread_mutex_lock(&m->mtx);
	/* Exact name, then a unique prefix, then a unique substring. */
	for (int pass = 0; pass < 3 && hit == NULL; pass++) {
		size_t matches = 0;
		const slot_t *cand = NULL;

		for (size_t i = 0; i < m->nslots; i++) {
			const slot_t *s = m->slots[i];
			bool ok;

			if (!s->present)
				continue;
			if (pass == 0)
				ok = strcmp(s->name, name) == 0;
			else if (pass == 1)
				ok = strncmp(s->name, name, strlen(name)) == 0;
			else
				ok = strstr(s->name, name) != NULL;
			if (ok) {
				matches++;
				cand = s;
			}
		}
		if (matches == 1)
			hit = cand;
		else if (matches > 1)
			break; /* ambiguous */
	}
	if (hit != NULL) {
		*slot_id = hit->id;
		r = TK_OK;
	}
	pthread_mutex_unlock(&m->mtx);
	return r;
}

int
tk_slotmgr_info(tk_slotmgr_t *m, uint32_t slot_id, tk_slot_info_t *info)
{
	slot_t *s;
	int r = TK_OK;

	if (info != NULL)
		memset(info, 0, sizeof(*info));
	if (m == NULL || info == NULL)
		return TK_ERR_INVALID_ARG;
	pthread_mutex_lock(&m->mtx);
	s = mgr_slot_locked(m, slot_id);
	if (s == NULL)
		r = TK_ERR_NO_READER;
	else
		fill_info(s, info);
	pthread_mutex_unlock(&m->mtx);
	return r;
}

void
tk_slotmgr_get_stats(tk_slotmgr_t *m, uint32_t slot_id, slot_stats_t *st)
{
	slot_t *s;

	memset(st, 0, sizeof(*st));
	pthread_mutex_lock(&m->mtx);
	s = mgr_slot_locked(m, slot_id);
	if (s != NULL)
		*st = s->stats;
	pthread_mutex_unlock(&m->mtx);
}

int
tk_slotmgr_card(tk_slotmgr_t *m, uint32_t slot_id, tk_card_t **card)
{
	struct timespec dl;
	slot_t *s;
	uint64_t seq;
	int r = TK_OK;

	if (card != NULL)
		*card = NULL;
	if (m == NULL || card == NULL)
		return TK_ERR_INVALID_ARG;
	tk_abstime_in_ms(&dl, m->opts.transmit_timeout_ms);
	pthread_mutex_lock(&m->mtx);
	s = mgr_slot_locked(m, slot_id);
	if (s == NULL || !s->present || m->stopping) {
		r = TK_ERR_NO_READER;
		goto out;
	}
	seq = s->card_seq;
	/* A card being connected is worth waiting for, within the deadline. */
	while (s->card_seq != 0 && s->card_seq == seq &&
	       (s->state == TK_SLOT_PROBING || s->state == TK_SLOT_RECOVERING) && !m->stopping &&
	       !m->cancelled) {
		if (pthread_cond_timedwait(&m->cond, &m->mtx, &dl) == ETIMEDOUT)
			break;
	}
	if (m->cancelled)
		r = TK_ERR_CANCELLED;
	else if (!s->present || m->stopping)
		r = TK_ERR_NO_READER;
	else if (s->card_seq == 0)
		r = TK_ERR_NO_CARD;
	else if (s->state == TK_SLOT_PROBING || s->state == TK_SLOT_RECOVERING)
		r = TK_ERR_TIMEOUT;
	else if (s->state == TK_SLOT_QUARANTINED)
		r = TK_ERR_QUARANTINED;
	else if (s->state != TK_SLOT_VALID)
		r = TK_ERR_UNRESPONSIVE;
	else
		r = card_new_for_slot_locked(m, s, card);
out:
	pthread_mutex_unlock(&m->mtx);
	return r;
}

int
tk_slotmgr_diag(tk_slotmgr_t *m, uint32_t slot_id, tk_slot_diag_t *diag)
{
	slot_t *s;
	int r = TK_OK;

	if (diag != NULL)
		memset(diag, 0, sizeof(*diag));
	if (m == NULL || diag == NULL)
		return TK_ERR_INVALID_ARG;
	pthread_mutex_lock(&m->mtx);
	s = mgr_slot_locked(m, slot_id);
	if (s == NULL) {
		r = TK_ERR_NO_READER;
	} else {
		fill_info(s, &diag->info);
		rec_fill_diag_locked(s, diag);
	}
	pthread_mutex_unlock(&m->mtx);
	return r;
}

int
tk_slotmgr_reset(tk_slotmgr_t *m, uint32_t slot_id, bool cold, int timeout_ms, tk_recovery_t *rec)
{
	slot_t *s;
	uint64_t seq = 0, last_id = 0;
	int r = TK_OK;

	if (rec != NULL)
		memset(rec, 0, sizeof(*rec));
	if (m == NULL)
		return TK_ERR_INVALID_ARG;
	if (timeout_ms <= 0)
		timeout_ms = m->opts.transmit_timeout_ms * 4;
	pthread_mutex_lock(&m->mtx);
	s = mgr_slot_locked(m, slot_id);
	if (s == NULL || !s->present || m->stopping)
		r = TK_ERR_NO_READER;
	else if (s->card_seq == 0)
		r = TK_ERR_NO_CARD;
	else if (s->stuck != NULL && s->worker == NULL)
		r = TK_ERR_UNRESPONSIVE;
	if (r == TK_OK) {
		seq = s->card_seq;
		last_id = s->rec_ids;
	}
	pthread_mutex_unlock(&m->mtx);
	if (r != TK_OK)
		return r;
	r = worker_force_recovery(m, s, seq, cold ? TK_STEP_COLD_RESET : TK_STEP_WARM_RESET,
	                          timeout_ms);
	if (rec != NULL) {
		pthread_mutex_lock(&m->mtx);
		/* The newest finished record that started after our call. */
		for (size_t i = 0; i < s->hist_n; i++) {
			size_t k = (s->hist_next + TK_SLOT_DIAG_HISTORY - 1 - i) %
			           TK_SLOT_DIAG_HISTORY;

			if (s->hist[k].id > last_id) {
				*rec = s->hist[k];
				break;
			}
		}
		pthread_mutex_unlock(&m->mtx);
	}
	return r;
}
