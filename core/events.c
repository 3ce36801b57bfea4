/* tokenkit: ordered event delivery for the slot manager.
 *
 * Events are queued (with their own copies of the reader name and ATR)
 * while the state they describe is changed, under the manager lock, so the
 * queue order is the order of the changes. One event thread delivers them
 * without any manager lock held. Subscribers only see events queued after
 * they subscribed; a replaying subscriber first gets targeted events that
 * describe the state at that moment. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <tokenkit/err.h>
#include <tokenkit/log.h>

#include "slotmgr_priv.h"

void
ev_init(tk_slotmgr_t *m)
{
	pthread_mutexattr_t a;

	pthread_mutex_init(&m->ev_mtx, NULL);
	tk_cond_init_monotonic(&m->ev_cond);
	tk_cond_init_monotonic(&m->ev_done);
	pthread_mutexattr_init(&a);
	pthread_mutexattr_settype(&a, PTHREAD_MUTEX_RECURSIVE);
	pthread_mutex_init(&m->sub_mtx, &a);
	pthread_mutexattr_destroy(&a);
	m->next_sub = 1;
}

void
ev_destroy(tk_slotmgr_t *m)
{
	evnode_t *n = m->ev_head;

	while (n != NULL) {
		evnode_t *next = n->next;
		free(n);
		n = next;
	}
	m->ev_head = m->ev_tail = NULL;
	free(m->subs);
	m->subs = NULL;
	m->nsubs = 0;
	pthread_mutex_destroy(&m->ev_mtx);
	pthread_cond_destroy(&m->ev_cond);
	pthread_cond_destroy(&m->ev_done);
	pthread_mutex_destroy(&m->sub_mtx);
}

static void
ev_push(tk_slotmgr_t *m, evnode_t *n)
{
	pthread_mutex_lock(&m->ev_mtx);
	n->ev.seq = ++m->ev_seq;
	if (m->ev_tail != NULL)
		m->ev_tail->next = n;
	else
		m->ev_head = n;
	m->ev_tail = n;
	pthread_cond_signal(&m->ev_cond);
	pthread_mutex_unlock(&m->ev_mtx);
}

void
ev_queue_locked(tk_slotmgr_t *m, int type, const slot_t *s, int old_state, int target)
{
	evnode_t *n = calloc(1, sizeof(*n));

	if (n == NULL) {
		tk_log_error("slotmgr: out of memory, event %s lost", tk_event_type_name(type));
		return;
	}
	n->ev.type = type;
	n->ev.time_us = tk_now_us();
	n->target = target;
	if (s != NULL) {
		snprintf(n->backend, sizeof(n->backend), "%s", s->bk->ops->name);
		snprintf(n->reader, sizeof(n->reader), "%s", s->name);
		n->ev.slot_id = s->id;
		n->ev.old_state = old_state;
		n->ev.state = s->state;
		n->ev.card_seq = s->card_seq;
		if ((type == TK_EVENT_CARD_INSERTED || type == TK_EVENT_STATE_CHANGED) &&
		    s->card_seq != 0 && s->atr_len > 0) {
			memcpy(n->atr, s->atr, s->atr_len);
			n->ev.atr_len = s->atr_len;
		}
	}
	tk_log_debug("slotmgr: event %s slot %u %s %s -> %s", tk_event_type_name(type),
	             n->ev.slot_id, n->reader, tk_slot_state_name(old_state),
	             tk_slot_state_name(n->ev.state));
	ev_push(m, n);
}

/* A service event of bk (target 0: everybody). */
static void
ev_queue_service_to(tk_slotmgr_t *m, const backend_t *bk, int type, int target)
{
	evnode_t *n = calloc(1, sizeof(*n));

	if (n == NULL) {
		tk_log_error("slotmgr: out of memory, event %s lost", tk_event_type_name(type));
		return;
	}
	n->ev.type = type;
	n->ev.time_us = tk_now_us();
	n->ev.old_state = n->ev.state = TK_SLOT_ABSENT;
	n->target = target;
	snprintf(n->backend, sizeof(n->backend), "%s", bk->ops->name);
	tk_log_debug("slotmgr: event %s (%s)", tk_event_type_name(type), n->backend);
	ev_push(m, n);
}

void
ev_queue_service(tk_slotmgr_t *m, const backend_t *bk, int type)
{
	ev_queue_service_to(m, bk, type, 0);
}

static void
deliver(tk_slotmgr_t *m, evnode_t *n)
{
	tk_event_t ev = n->ev;

	ev.reader = n->reader;
	ev.backend = n->backend;
	ev.atr = ev.atr_len > 0 ? n->atr : NULL;
	pthread_mutex_lock(&m->sub_mtx);
	/* Index loop: a callback may subscribe or unsubscribe (recursive lock),
	 * which may move the array; re-read it each round. */
	for (size_t i = 0; i < m->nsubs;) {
		sub_t s = m->subs[i];

		if (n->target != 0 ? s.id == n->target : ev.seq > s.from_seq)
			s.fn(s.ctx, &ev);
		/* Step on unless the callback removed this entry. */
		if (i < m->nsubs && m->subs[i].id == s.id)
			i++;
	}
	pthread_mutex_unlock(&m->sub_mtx);
}

void *
ev_thread_main(void *arg)
{
	tk_slotmgr_t *m = arg;

	pthread_mutex_lock(&m->ev_mtx);
	for (;;) {
		evnode_t *n;

		while (m->ev_head == NULL && !m->ev_stop)
			pthread_cond_wait(&m->ev_cond, &m->ev_mtx);
		if (m->ev_stop)
			break;
		n = m->ev_head;
		m->ev_head = n->next;
		if (m->ev_head == NULL)
			m->ev_tail = NULL;
		pthread_mutex_unlock(&m->ev_mtx);
		deliver(m, n);
		pthread_mutex_lock(&m->ev_mtx);
		m->ev_done_seq = n->ev.seq;
		pthread_cond_broadcast(&m->ev_done);
		free(n);
	}
	/* Nothing is delivered from now on: nobody waits for it. */
	m->ev_done_seq = UINT64_MAX;
	pthread_cond_broadcast(&m->ev_done);
	pthread_mutex_unlock(&m->ev_mtx);
	return NULL;
}

int
tk_slotmgr_sync(tk_slotmgr_t *m, int timeout_ms)
{
	int64_t end_us;
	uint64_t want;
	int r = TK_OK;

	if (m == NULL)
		return TK_ERR_INVALID_ARG;
	end_us = tk_now_us() + (int64_t)(timeout_ms > 0 ? timeout_ms : 0) * 1000;
	pthread_mutex_lock(&m->ev_mtx);
	want = m->ev_seq;
	while (m->ev_done_seq < want && m->ev_started) {
		if (tk_now_us() >= end_us) {
			r = TK_ERR_TIMEOUT;
			break;
		}
		tk_cond_wait_until_us(&m->ev_done, &m->ev_mtx, end_us);
	}
	pthread_mutex_unlock(&m->ev_mtx);
	return r;
}

int
tk_slotmgr_subscribe(tk_slotmgr_t *m, tk_event_fn fn, void *ctx, bool replay)
{
	sub_t *ns;
	int id;

	if (m == NULL || fn == NULL)
		return TK_ERR_INVALID_ARG;
	pthread_mutex_lock(&m->sub_mtx);
	ns = realloc(m->subs, (m->nsubs + 1) * sizeof(*ns));
	if (ns == NULL) {
		pthread_mutex_unlock(&m->sub_mtx);
		return TK_ERR_NO_MEMORY;
	}
	m->subs = ns;
	id = m->next_sub++;
	pthread_mutex_lock(&m->mtx);
	pthread_mutex_lock(&m->ev_mtx);
	ns[m->nsubs].id = id;
	ns[m->nsubs].fn = fn;
	ns[m->nsubs].ctx = ctx;
	ns[m->nsubs].from_seq = m->ev_seq;
	m->nsubs++;
	pthread_mutex_unlock(&m->ev_mtx);
	if (replay) {
		for (size_t i = 0; i < m->nbackends; i++) {
			const backend_t *bk = &m->backends[i];

			if (bk->service_up && bk->service_down_reported)
				ev_queue_service_to(m, bk, TK_EVENT_SERVICE_RESTORED, id);
		}
		for (size_t i = 0; i < m->nslots; i++) {
			slot_t *s = m->slots[i];

			if (!s->present)
				continue;
			ev_queue_locked(m, TK_EVENT_READER_ADDED, s, TK_SLOT_ABSENT, id);
			if (s->card_seq != 0)
				ev_queue_locked(m, TK_EVENT_CARD_INSERTED, s, TK_SLOT_EMPTY, id);
		}
	}
	pthread_mutex_unlock(&m->mtx);
	pthread_mutex_unlock(&m->sub_mtx);
	return id;
}

void
tk_slotmgr_unsubscribe(tk_slotmgr_t *m, int id)
{
	if (m == NULL)
		return;
	/* Waits for a callback running in the event thread (unless called
	 * from it), so none runs after this returns. */
	pthread_mutex_lock(&m->sub_mtx);
	for (size_t i = 0; i < m->nsubs; i++) {
		if (m->subs[i].id == id) {
			memmove(&m->subs[i], &m->subs[i + 1],
			        (m->nsubs - i - 1) * sizeof(m->subs[0]));
			m->nsubs--;
			break;
		}
	}
	pthread_mutex_unlock(&m->sub_mtx);
}

const char *
tk_event_type_name(int type)
{
	switch (type) {
	case TK_EVENT_READER_ADDED:
		return "reader-added";
	case TK_EVENT_READER_REMOVED:
		return "reader-removed";
	case TK_EVENT_CARD_INSERTED:
		return "card-inserted";
	case TK_EVENT_CARD_REMOVED:
		return "card-removed";
	case TK_EVENT_STATE_CHANGED:
		return "state-changed";
	case TK_EVENT_SERVICE_LOST:
		return "service-lost";
	case TK_EVENT_SERVICE_RESTORED:
		return "service-restored";
	case TK_EVENT_RECOVERY:
		return "recovery";
	default:
		return "unknown";
	}
}
