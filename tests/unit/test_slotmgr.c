/* Unit tests for the slot manager: discovery, events, per-reader workers
 * and caller-side deadlines, over a fake reader backend that can stall,
 * lose its card and lose the "service". No pcscd needed. */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include <tokenkit/card.h>
#include <tokenkit/err.h>
#include <tokenkit/slot.h>

#include "slotmgr_priv.h"

/* ---- the fake backend ------------------------------------------------ */

/* per reader: transmit blocks until released; in_transmit: threads inside
 * transmit; connections made and closed */
#define FAKE_READER_FIELDS bool stall;
#define FAKE_FIELDS int in_transmit, connects, disconnects;
#include "fake_reader.h"

static int
f_connect(void *be, const char *reader, void **conn, uint8_t *atr, size_t *atr_len, int *proto)
{
	fconn_t *c;
	int i;

	*conn = NULL;
	pthread_mutex_lock(&fk.mtx);
	i = fake_find_locked(reader);
	if (i < 0 || !fk.r[i].card || fk.no_service) {
		pthread_mutex_unlock(&fk.mtx);
		return i < 0           ? TK_ERR_NO_READER
		       : fk.no_service ? TK_ERR_NO_SERVICE
		                       : TK_ERR_NO_CARD;
	}
	fk.connects++;
	pthread_mutex_unlock(&fk.mtx);
	c = calloc(1, sizeof(*c));
	c->idx = i;
	memcpy(atr, FAKE_ATR, FAKE_ATR_LEN);
	*atr_len = FAKE_ATR_LEN;
	*proto = 1;
	*conn = c;
	return TK_OK;
}

static int
f_transmit(void *conn, const uint8_t *cmd, size_t cmd_len, uint8_t *resp, size_t resp_cap,
           size_t *resp_len)
{
	fconn_t *c = conn;
	struct timespec dl;
	int r = TK_OK;

	*resp_len = 0;
	/* A stall lasts until released, bounded so a broken test cannot hang. */
	abstime(&dl, 30000);
	pthread_mutex_lock(&fk.mtx);
	fk.in_transmit++;
	pthread_cond_broadcast(&fk.cond);
	while (fk.r[c->idx].stall) {
		if (pthread_cond_timedwait(&fk.cond, &fk.mtx, &dl) == ETIMEDOUT)
			break;
	}
	fk.in_transmit--;
	if (fk.no_service)
		r = TK_ERR_NO_SERVICE;
	else if (!fk.r[c->idx].card)
		r = TK_ERR_CARD_REMOVED;
	pthread_mutex_unlock(&fk.mtx);
	if (r != TK_OK)
		return r;
	(void)cmd_len;
	return fake_answer(c, cmd, resp, resp_cap, resp_len);
}

static int
f_reset(void *conn, int how, uint8_t *atr, size_t *atr_len, int *proto)
{
	*atr_len = 0;
	*proto = 1;
	return TK_OK;
}

static int
f_status(void *conn)
{
	return TK_OK;
}

static void
f_caps(void *conn, tk_reader_caps_t *caps)
{
	memset(caps, 0, sizeof(*caps));
	caps->extended_apdu = true;
	caps->max_cmd = 65544;
	caps->max_resp = 65538;
}

static void
f_disconnect(void *conn)
{
	pthread_mutex_lock(&fk.mtx);
	fk.disconnects++;
	pthread_mutex_unlock(&fk.mtx);
	free(conn);
}

static void
fake_reset_all(void)
{
	pthread_mutex_lock(&fk.mtx);
	memset(fk.r, 0, sizeof(fk.r));
	fk.no_service = false;
	fk.cancelled = false;
	fk.connects = fk.disconnects = 0;
	fake_changed_locked();
	pthread_mutex_unlock(&fk.mtx);
}

static void
fake_reader(int i, const char *name, bool present, bool card)
{
	pthread_mutex_lock(&fk.mtx);
	snprintf(fk.r[i].name, sizeof(fk.r[i].name), "%s", name);
	if (fk.r[i].card != card)
		fk.r[i].events++;
	fk.r[i].present = present;
	fk.r[i].card = card;
	memcpy(fk.r[i].atr, FAKE_ATR, FAKE_ATR_LEN);
	fk.r[i].atr_len = FAKE_ATR_LEN;
	fake_changed_locked();
	pthread_mutex_unlock(&fk.mtx);
}

static void
fake_stall(int i, bool stall)
{
	pthread_mutex_lock(&fk.mtx);
	fk.r[i].stall = stall;
	pthread_cond_broadcast(&fk.cond);
	pthread_mutex_unlock(&fk.mtx);
}

static void
fake_service(bool up)
{
	pthread_mutex_lock(&fk.mtx);
	fk.no_service = !up;
	fake_changed_locked();
	pthread_mutex_unlock(&fk.mtx);
}

/* ---- event recorder -------------------------------------------------- */

#define MAX_EV 256

typedef struct rec {
	pthread_mutex_t mtx;
	pthread_cond_t cond;
	struct {
		int type, state, old_state;
		uint32_t slot;
		uint64_t seq, card_seq;
		char reader[64];
		size_t atr_len;
	} ev[MAX_EV];
	size_t n;
	bool in_callback_list_ok;
	tk_slotmgr_t *m;
} rec_t;

static void
rec_fn(void *ctx, const tk_event_t *ev)
{
	rec_t *r = ctx;
	tk_slot_info_t *infos = NULL;
	size_t cnt = 0;

	/* Calling back into the manager from a callback must work. */
	if (r->m != NULL && tk_slotmgr_list(r->m, &infos, &cnt) == TK_OK)
		r->in_callback_list_ok = true;
	free(infos);
	pthread_mutex_lock(&r->mtx);
	if (r->n < MAX_EV) {
		r->ev[r->n].type = ev->type;
		r->ev[r->n].state = ev->state;
		r->ev[r->n].old_state = ev->old_state;
		r->ev[r->n].slot = ev->slot_id;
		r->ev[r->n].seq = ev->seq;
		r->ev[r->n].card_seq = ev->card_seq;
		r->ev[r->n].atr_len = ev->atr_len;
		snprintf(r->ev[r->n].reader, sizeof(r->ev[r->n].reader), "%s",
		         ev->reader != NULL ? ev->reader : "");
		r->n++;
	}
	pthread_cond_broadcast(&r->cond);
	pthread_mutex_unlock(&r->mtx);
}

static void
rec_init(rec_t *r)
{
	memset(r, 0, sizeof(*r));
	pthread_mutex_init(&r->mtx, NULL);
	pthread_cond_init(&r->cond, NULL);
}

static void
rec_destroy(rec_t *r)
{
	pthread_mutex_destroy(&r->mtx);
	pthread_cond_destroy(&r->cond);
}

/* Wait (bounded) for an event of type (and state, unless -1) on slot
 * (unless 0) at index >= *from; returns its index or -1. */
static long
rec_wait(rec_t *r, size_t from, int type, int state, uint32_t slot, int ms)
{
	struct timespec dl;
	long found = -1;

	clock_gettime(CLOCK_REALTIME, &dl);
	dl.tv_sec += ms / 1000;
	dl.tv_nsec += (long)(ms % 1000) * 1000000L;
	if (dl.tv_nsec >= 1000000000L) {
		dl.tv_sec++;
		dl.tv_nsec -= 1000000000L;
	}
	pthread_mutex_lock(&r->mtx);
	for (;;) {
		for (size_t i = from; i < r->n; i++) {
			if (r->ev[i].type == type && (state < 0 || r->ev[i].state == state) &&
			    (slot == 0 || r->ev[i].slot == slot)) {
				found = (long)i;
				break;
			}
		}
		if (found >= 0)
			break;
		if (pthread_cond_timedwait(&r->cond, &r->mtx, &dl) == ETIMEDOUT)
			break;
	}
	pthread_mutex_unlock(&r->mtx);
	return found;
}

static size_t
rec_count(rec_t *r)
{
	size_t n;

	pthread_mutex_lock(&r->mtx);
	n = r->n;
	pthread_mutex_unlock(&r->mtx);
	return n;
}

static tk_slotmgr_t *
start_mgr(rec_t *r, int timeout_ms)
{
	tk_slotmgr_opts_t o;
	tk_slotmgr_t *m = NULL;

	tk_slotmgr_opts_init(&o);
	o.transmit_timeout_ms = timeout_ms;
	o.recovery_log = ""; /* no log lines from unit tests */
	assert_int_equal(tk_slotmgr_new_with_ops(&o, &fake_ops, NULL, 100, &m), TK_OK);
	assert_non_null(m);
	if (r != NULL) {
		r->m = m;
		assert_true(tk_slotmgr_subscribe(m, rec_fn, r, true) > 0);
	}
	assert_int_equal(tk_slotmgr_wait_ready(m, 5000), TK_OK);
	return m;
}

static const uint8_t cmd_ping[] = {0x00, 0xCA, 0x00, 0x00, 0x00};

static void
get_valid_card(tk_slotmgr_t *m, rec_t *r, const char *name, uint32_t *id, tk_card_t **card)
{
	(void)r;
	assert_int_equal(tk_slotmgr_find(m, name, id), TK_OK);
	assert_true(wait_state(m, *id, TK_SLOT_VALID, 5000));
	assert_int_equal(tk_slotmgr_card(m, *id, card), TK_OK);
}

/* ---- tests ------------------------------------------------------------ */

static void
test_discovery_and_events(void **state)
{
	rec_t r;
	tk_slotmgr_t *m;
	tk_slot_info_t *infos = NULL;
	size_t n = 0;
	uint32_t id_a = 0, id_b = 0, id;
	long i_add, i_ins, i_valid;

	(void)state;
	fake_reset_all();
	rec_init(&r);
	m = start_mgr(&r, 2000); /* no readers yet: every change is an event */
	fake_reader(0, "Fake Reader A 00", true, true);
	fake_reader(1, "Fake Reader B 01", true, false);
	assert_true(rec_wait(&r, 0, TK_EVENT_STATE_CHANGED, TK_SLOT_VALID, 0, 5000) >= 0);
	for (int k = 0; k < 500 && tk_slotmgr_find(m, "B 01", &id) != TK_OK; k++) {
		struct timespec ts = {0, 10 * 1000000L};
		nanosleep(&ts, NULL);
	}

	assert_int_equal(tk_slotmgr_find(m, "Fake Reader A 00", &id_a), TK_OK);
	assert_int_equal(tk_slotmgr_find(m, "B 01", &id_b), TK_OK); /* substring */
	assert_int_not_equal(id_a, id_b);
	assert_int_equal(tk_slotmgr_find(m, "Fake Reader", &id), TK_ERR_NO_READER); /* ambiguous */
	assert_int_equal(tk_slotmgr_find(m, "Nope", &id), TK_ERR_NO_READER);

	i_add = rec_wait(&r, 0, TK_EVENT_READER_ADDED, -1, id_a, 5000);
	i_ins = rec_wait(&r, 0, TK_EVENT_CARD_INSERTED, -1, id_a, 5000);
	i_valid = rec_wait(&r, 0, TK_EVENT_STATE_CHANGED, TK_SLOT_VALID, id_a, 5000);
	assert_true(i_add >= 0 && i_ins > i_add && i_valid > i_ins);
	assert_int_equal(r.ev[i_ins].atr_len, 5);
	assert_true(rec_wait(&r, 0, TK_EVENT_READER_ADDED, -1, id_b, 5000) >= 0);
	/* Sequence numbers strictly increase in delivery order. */
	for (size_t k = 1; k < rec_count(&r); k++)
		assert_true(r.ev[k].seq > r.ev[k - 1].seq);
	assert_true(r.in_callback_list_ok);

	assert_int_equal(tk_slotmgr_list(m, &infos, &n), TK_OK);
	assert_int_equal(n, 2);
	for (size_t k = 0; k < n; k++) {
		if (infos[k].slot_id == id_a) {
			assert_int_equal(infos[k].state, TK_SLOT_VALID);
			assert_int_equal(infos[k].atr_len, 5);
			assert_int_equal(infos[k].protocol, 1);
		} else {
			assert_int_equal(infos[k].state, TK_SLOT_EMPTY);
		}
	}
	free(infos);
	{
		tk_card_t *c = NULL;
		assert_int_equal(tk_slotmgr_card(m, id_b, &c), TK_ERR_NO_CARD);
		assert_null(c);
		assert_int_equal(tk_slotmgr_card(m, 999, &c), TK_ERR_NO_READER);
	}

	/* Reader goes and comes back by name: same id. */
	fake_reader(1, "Fake Reader B 01", false, false);
	assert_true(rec_wait(&r, 0, TK_EVENT_READER_REMOVED, -1, id_b, 5000) >= 0);
	assert_int_equal(tk_slotmgr_find(m, "Fake Reader B 01", &id), TK_ERR_NO_READER);
	fake_reader(1, "Fake Reader B 01", true, true);
	assert_true(rec_wait(&r, 0, TK_EVENT_CARD_INSERTED, -1, id_b, 5000) >= 0);
	assert_int_equal(tk_slotmgr_find(m, "Fake Reader B 01", &id), TK_OK);
	assert_int_equal(id, id_b);

	tk_slotmgr_free(&m);
	assert_null(m);
	rec_destroy(&r);
}

static void
test_transmit_and_removal(void **state)
{
	rec_t r;
	tk_slotmgr_t *m;
	tk_card_t *c = NULL;
	tk_slot_info_t info;
	uint8_t resp[16];
	size_t n = 0;
	uint32_t id;
	size_t mark;

	(void)state;
	fake_reset_all();
	fake_reader(0, "Fake A", true, true);
	rec_init(&r);
	m = start_mgr(&r, 2000);
	get_valid_card(m, &r, "Fake A", &id, &c);
	assert_string_equal(tk_card_reader_name(c), "Fake A");
	assert_true(tk_card_present(c));

	assert_int_equal(tk_card_transmit(c, cmd_ping, sizeof(cmd_ping), resp, sizeof(resp), &n, 0),
	                 TK_OK);
	assert_int_equal(n, 4);
	assert_memory_equal(resp, "\xCA\x00\x90\x00", 4);
	/* Caller's buffer too small for the response. */
	assert_int_equal(tk_card_transmit(c, cmd_ping, sizeof(cmd_ping), resp, 3, &n, 0),
	                 TK_ERR_BUFFER_TOO_SMALL);
	assert_int_equal(tk_slotmgr_info(m, id, &info), TK_OK);
	assert_int_equal(info.transmits, 2);

	mark = rec_count(&r);
	fake_reader(0, "Fake A", true, false);
	assert_true(rec_wait(&r, mark, TK_EVENT_CARD_REMOVED, -1, id, 5000) >= 0);
	assert_false(tk_card_present(c));
	assert_int_equal(tk_card_transmit(c, cmd_ping, sizeof(cmd_ping), resp, sizeof(resp), &n, 0),
	                 TK_ERR_CARD_REMOVED);

	/* A new insertion is a new card: the old handle stays dead. */
	tk_card_unref(&c);
	fake_reader(0, "Fake A", true, true);
	assert_true(wait_state(m, id, TK_SLOT_VALID, 5000));
	assert_int_equal(tk_slotmgr_card(m, id, &c), TK_OK);
	assert_int_equal(tk_card_transmit(c, cmd_ping, sizeof(cmd_ping), resp, sizeof(resp), &n, 0),
	                 TK_OK);
	/* The card handle outlives the manager and fails cleanly. */
	tk_slotmgr_free(&m);
	assert_int_not_equal(
	        tk_card_transmit(c, cmd_ping, sizeof(cmd_ping), resp, sizeof(resp), &n, 0), TK_OK);
	tk_card_unref(&c);
	rec_destroy(&r);
}

typedef struct xmit_arg {
	tk_card_t *card;
	int timeout_ms;
	int result;
	int64_t elapsed_ms;
} xmit_arg_t;

static void *
xmit_thread(void *p)
{
	xmit_arg_t *a = p;
	uint8_t resp[16];
	size_t n;
	int64_t t0 = now_ms();

	a->result = tk_card_transmit(a->card, cmd_ping, sizeof(cmd_ping), resp, sizeof(resp), &n,
	                             a->timeout_ms);
	a->elapsed_ms = now_ms() - t0;
	return NULL;
}

static void
wait_in_transmit(int count)
{
	struct timespec dl;

	abstime(&dl, 5000);
	pthread_mutex_lock(&fk.mtx);
	while (fk.in_transmit < count)
		if (pthread_cond_timedwait(&fk.cond, &fk.mtx, &dl) == ETIMEDOUT)
			break;
	assert_true(fk.in_transmit >= count);
	pthread_mutex_unlock(&fk.mtx);
}

/* n (0 or 1) calls timed out in slot id's reader, each abandoning its
 * worker, and the reader is quarantined if n is 1. */
static void
assert_stuck(tk_slotmgr_t *m, uint32_t id, uint64_t n)
{
	tk_slot_info_t info;
	slot_stats_t st;

	assert_int_equal(tk_slotmgr_info(m, id, &info), TK_OK);
	assert_int_equal(info.state == TK_SLOT_QUARANTINED, n > 0);
	tk_slotmgr_get_stats(m, id, &st);
	assert_int_equal(st.timeouts, n);
	assert_int_equal(st.abandoned_workers, n);
}

static void
test_stall_deadline_and_recovery(void **state)
{
	rec_t r;
	tk_slotmgr_t *m;
	tk_card_t *ca = NULL, *cb = NULL;
	uint8_t resp[16];
	size_t n;
	uint32_t ida, idb;
	int64_t t0, dt;
	uint64_t gen0;

	(void)state;
	fake_reset_all();
	fake_reader(0, "Fake A", true, true);
	fake_reader(1, "Fake B", true, true);
	rec_init(&r);
	m = start_mgr(&r, 2000);
	get_valid_card(m, &r, "Fake A", &ida, &ca);
	get_valid_card(m, &r, "Fake B", &idb, &cb);
	gen0 = tk_card_generation(ca);

	fake_stall(0, true);
	t0 = now_ms();
	assert_int_equal(
	        tk_card_transmit(ca, cmd_ping, sizeof(cmd_ping), resp, sizeof(resp), &n, 50),
	        TK_ERR_TIMEOUT); /* the worker is now stuck */
	dt = now_ms() - t0;
	assert_true(dt >= 40);
	assert_true(dt < 50 + 1000); /* did not hang */
	wait_in_transmit(1);
	/* While A is stuck (quarantined until the call returns): A answers at
	 * once, B keeps working. */
	t0 = now_ms();
	assert_int_equal(
	        tk_card_transmit(ca, cmd_ping, sizeof(cmd_ping), resp, sizeof(resp), &n, 5000),
	        TK_ERR_QUARANTINED);
	assert_true(now_ms() - t0 < 1000);
	for (int k = 0; k < 20; k++) {
		assert_int_equal(tk_card_transmit(cb, cmd_ping, sizeof(cmd_ping), resp,
		                                  sizeof(resp), &n, 1000),
		                 TK_OK);
		assert_int_equal(resp[1], 1);
	}
	assert_stuck(m, ida, 1);

	/* The stuck call returns: the late result is dropped, the slot
	 * reconnects and the same card handle works again, one generation on. */
	fake_stall(0, false);
	assert_true(wait_state(m, ida, TK_SLOT_VALID, 5000));
	assert_int_equal(
	        tk_card_transmit(ca, cmd_ping, sizeof(cmd_ping), resp, sizeof(resp), &n, 1000),
	        TK_OK);
	assert_true(tk_card_generation(ca) > gen0);

	tk_card_unref(&ca);
	tk_card_unref(&cb);
	tk_slotmgr_free(&m);
	rec_destroy(&r);
}

/* One reader "Fake A" with a valid card, stalled, and a first transmit
 * (deadline timeout_ms) inside it in thread *th. */
static tk_slotmgr_t *
stall_first(rec_t *r, uint32_t *ida, tk_card_t **ca, xmit_arg_t *first, int timeout_ms,
            pthread_t *th)
{
	tk_slotmgr_t *m;

	fake_reset_all();
	fake_reader(0, "Fake A", true, true);
	rec_init(r);
	m = start_mgr(r, 2000);
	get_valid_card(m, r, "Fake A", ida, ca);
	fake_stall(0, true);
	first->card = *ca;
	first->timeout_ms = timeout_ms;
	assert_int_equal(pthread_create(th, NULL, xmit_thread, first), 0);
	wait_in_transmit(1);
	return m;
}

static void
test_queued_behind_stall(void **state)
{
	rec_t r;
	tk_slotmgr_t *m;
	tk_card_t *ca = NULL;
	uint32_t ida;
	pthread_t th;
	xmit_arg_t first = {0}, second = {0};

	(void)state;
	m = stall_first(&r, &ida, &ca, &first, 300, &th);
	/* Queued behind the stuck call with a long deadline: released when the
	 * first caller's deadline abandons the worker, not after 10 s. */
	second.card = ca;
	second.timeout_ms = 10000;
	xmit_thread(&second);
	pthread_join(th, NULL);
	assert_int_equal(first.result, TK_ERR_TIMEOUT);
	assert_true(first.elapsed_ms < 300 + 1000);
	assert_int_equal(second.result, TK_ERR_UNRESPONSIVE);
	assert_true(second.elapsed_ms < 300 + 1000);

	/* Free the manager while its worker is still stuck; release the stall
	 * afterwards: the abandoned worker must clean up without touching freed
	 * memory (ASan build). */
	tk_card_unref(&ca);
	tk_slotmgr_free(&m);
	fake_stall(0, false);
	{
		struct timespec dl;
		abstime(&dl, 5000);
		pthread_mutex_lock(&fk.mtx);
		while (fk.in_transmit > 0)
			if (pthread_cond_timedwait(&fk.cond, &fk.mtx, &dl) == ETIMEDOUT)
				break;
		pthread_mutex_unlock(&fk.mtx);
	}
	/* Let the detached worker finish its exit path. */
	{
		struct timespec ts = {0, 200 * 1000000L};
		nanosleep(&ts, NULL);
	}
	rec_destroy(&r);
}

/* tk_slotmgr_cancel (a process on its way out): the call inside a stalled
 * reader and the one queued behind it return TK_ERR_CANCELLED at once,
 * not at their 10 s deadlines; the reader is not quarantined for it (no
 * timeout was counted); later calls and tk_slotmgr_card are refused. */
static void
test_cancel(void **state)
{
	rec_t r;
	tk_slotmgr_t *m;
	tk_card_t *ca = NULL, *c2 = NULL;
	uint32_t ida;
	pthread_t th;
	xmit_arg_t first = {0}, second = {0}, later = {0};

	(void)state;
	m = stall_first(&r, &ida, &ca, &first, 10000, &th);
	second.card = ca;
	second.timeout_ms = 10000;
	{
		pthread_t th2;

		assert_int_equal(pthread_create(&th2, NULL, xmit_thread, &second), 0);
		/* (let it queue behind the stalled call) */
		nanosleep(&(struct timespec){0, 100 * 1000000L}, NULL);
		tk_slotmgr_cancel(m);
		pthread_join(th2, NULL);
	}
	pthread_join(th, NULL);
	assert_int_equal(first.result, TK_ERR_CANCELLED);
	assert_int_equal(second.result, TK_ERR_CANCELLED);
	/* "did not wait for the deadline" bounds, far below it */
	assert_true(first.elapsed_ms < 5000);
	assert_true(second.elapsed_ms < 5000);

	later.card = ca;
	later.timeout_ms = 10000;
	xmit_thread(&later);
	assert_int_equal(later.result, TK_ERR_CANCELLED);
	assert_int_equal(tk_slotmgr_card(m, ida, &c2), TK_ERR_CANCELLED);
	assert_null(c2);
	assert_stuck(m, ida, 0);

	/* the worker is still in the stalled call: freeing waits for it to
	 * return (released here), as after any call */
	fake_stall(0, false);
	tk_card_unref(&ca);
	tk_slotmgr_free(&m);
	rec_destroy(&r);
}

static void
test_service_lost_and_restored(void **state)
{
	rec_t r;
	tk_slotmgr_t *m;
	tk_card_t *c = NULL;
	uint8_t resp[16];
	size_t n, mark;
	uint32_t id, id2;

	(void)state;
	fake_reset_all();
	fake_reader(0, "Fake A", true, true);
	rec_init(&r);
	m = start_mgr(&r, 2000);
	get_valid_card(m, &r, "Fake A", &id, &c);

	mark = rec_count(&r);
	fake_service(false);
	assert_true(rec_wait(&r, mark, TK_EVENT_SERVICE_LOST, -1, 0, 5000) >= 0);
	assert_true(rec_wait(&r, mark, TK_EVENT_READER_REMOVED, -1, id, 5000) >= 0);
	assert_int_not_equal(
	        tk_card_transmit(c, cmd_ping, sizeof(cmd_ping), resp, sizeof(resp), &n, 500),
	        TK_OK);
	tk_card_unref(&c);

	fake_service(true);
	assert_true(rec_wait(&r, mark, TK_EVENT_SERVICE_RESTORED, -1, 0, 5000) >= 0);
	assert_true(wait_state(m, id, TK_SLOT_VALID, 5000));
	assert_int_equal(tk_slotmgr_find(m, "Fake A", &id2), TK_OK);
	assert_int_equal(id2, id);
	assert_int_equal(tk_slotmgr_card(m, id, &c), TK_OK);
	assert_int_equal(
	        tk_card_transmit(c, cmd_ping, sizeof(cmd_ping), resp, sizeof(resp), &n, 1000),
	        TK_OK);
	tk_card_unref(&c);
	tk_slotmgr_free(&m);
	rec_destroy(&r);
}

static void
test_no_service_at_start(void **state)
{
	tk_slotmgr_opts_t o;
	tk_slotmgr_t *m = NULL;

	(void)state;
	fake_reset_all();
	fake_service(false);
	tk_slotmgr_opts_init(&o);
	assert_int_equal(tk_slotmgr_new_with_ops(&o, &fake_ops, NULL, 100, &m), TK_OK);
	assert_int_equal(tk_slotmgr_wait_ready(m, 5000), TK_ERR_NO_SERVICE);
	fake_service(true);
	tk_slotmgr_free(&m);
}

static void
test_replay_and_unsubscribe(void **state)
{
	rec_t r1, r2;
	tk_slotmgr_t *m;
	uint32_t id;
	int sub;
	size_t before;

	(void)state;
	fake_reset_all();
	fake_reader(0, "Fake A", true, true);
	rec_init(&r1);
	rec_init(&r2);
	m = start_mgr(&r1, 2000);
	assert_int_equal(tk_slotmgr_find(m, "Fake A", &id), TK_OK);
	assert_true(wait_state(m, id, TK_SLOT_VALID, 5000));

	sub = tk_slotmgr_subscribe(m, rec_fn, &r2, true);
	assert_true(sub > 0);
	assert_true(rec_wait(&r2, 0, TK_EVENT_READER_ADDED, -1, id, 5000) == 0);
	assert_true(rec_wait(&r2, 0, TK_EVENT_CARD_INSERTED, -1, id, 5000) == 1);
	tk_slotmgr_unsubscribe(m, sub);
	before = rec_count(&r2);
	fake_reader(0, "Fake A", true, false);
	assert_true(rec_wait(&r1, 0, TK_EVENT_CARD_REMOVED, -1, id, 5000) >= 0);
	assert_int_equal(rec_count(&r2), before);
	assert_int_equal(tk_slotmgr_subscribe(m, NULL, NULL, false), TK_ERR_INVALID_ARG);
	tk_slotmgr_free(&m);
	rec_destroy(&r1);
	rec_destroy(&r2);
}

/* tk_slot_info_t.busy_ms: how long the reader has been inside one exchange
 * with the card; 0 when idle, growing while the card does not answer (also
 * for a worker abandoned in the backend), other readers unaffected. */
struct bg_transmit {
	tk_card_t *card;
	int result;
};

static void *
bg_transmit_main(void *arg)
{
	struct bg_transmit *b = arg;
	uint8_t resp[16];
	size_t n;

	b->result =
	        tk_card_transmit(b->card, cmd_ping, sizeof(cmd_ping), resp, sizeof(resp), &n, 3000);
	return NULL;
}

static uint32_t
busy_ms(tk_slotmgr_t *m, uint32_t id)
{
	tk_slot_info_t info;

	assert_int_equal(tk_slotmgr_info(m, id, &info), TK_OK);
	return info.busy_ms;
}

static void
test_busy_ms(void **state)
{
	struct bg_transmit b = {.result = -1};
	tk_slotmgr_t *m;
	tk_card_t *ca = NULL, *cb = NULL;
	uint8_t resp[16];
	size_t n;
	uint32_t ida, idb;
	pthread_t t;

	(void)state;
	fake_reset_all();
	fake_reader(0, "Fake A", true, true);
	fake_reader(1, "Fake B", true, true);
	m = start_mgr(NULL, 2000);
	get_valid_card(m, NULL, "Fake A", &ida, &ca);
	get_valid_card(m, NULL, "Fake B", &idb, &cb);
	assert_int_equal(busy_ms(m, ida), 0);

	/* a card that does not answer, within the caller's deadline */
	fake_stall(0, true);
	b.card = ca;
	assert_int_equal(pthread_create(&t, NULL, bg_transmit_main, &b), 0);
	wait_in_transmit(1);
	sleep_ms(150);
	assert_true(busy_ms(m, ida) >= 140);
	assert_true(busy_ms(m, ida) < 3000);
	assert_int_equal(
	        tk_card_transmit(cb, cmd_ping, sizeof(cmd_ping), resp, sizeof(resp), &n, 1000),
	        TK_OK);
	assert_int_equal(busy_ms(m, idb), 0);
	fake_stall(0, false);
	pthread_join(t, NULL);
	assert_int_equal(b.result, TK_OK);
	assert_int_equal(busy_ms(m, ida), 0);

	/* past the deadline: the worker is abandoned inside the backend and
	 * the reader stays busy until the call returns */
	fake_stall(0, true);
	assert_int_equal(
	        tk_card_transmit(ca, cmd_ping, sizeof(cmd_ping), resp, sizeof(resp), &n, 50),
	        TK_ERR_TIMEOUT);
	wait_in_transmit(1);
	sleep_ms(150);
	assert_true(busy_ms(m, ida) >= 140);
	fake_stall(0, false);
	assert_true(wait_state(m, ida, TK_SLOT_VALID, 5000));
	assert_int_equal(busy_ms(m, ida), 0);

	tk_card_unref(&ca);
	tk_card_unref(&cb);
	tk_slotmgr_free(&m);
}

/* tk_slotmgr_sync returns once every event queued before it went through
 * the subscribers' callbacks, however slow they are; or at its deadline. */
static void
slow_fn(void *ctx, const tk_event_t *ev)
{
	sleep_ms(200);
	rec_fn(ctx, ev);
}

static void
test_sync(void **state)
{
	rec_t r;
	tk_slotmgr_t *m;
	uint32_t id;

	(void)state;
	fake_reset_all();
	fake_reader(0, "Fake A", true, true);
	rec_init(&r);
	m = start_mgr(NULL, 2000);
	assert_true(tk_slotmgr_subscribe(m, slow_fn, &r, true) > 0);
	assert_int_equal(tk_slotmgr_find(m, "Fake A", &id), TK_OK);
	/* the replayed READER_ADDED and CARD_INSERTED take 200 ms each */
	assert_int_equal(tk_slotmgr_sync(m, 5000), TK_OK);
	assert_true(rec_count(&r) >= 2);

	/* the manager has seen the removal (its state says so): the event is
	 * queued, and delivered when sync returns */
	fake_reader(0, "Fake A", true, false);
	assert_true(wait_state(m, id, TK_SLOT_EMPTY, 5000));
	assert_int_equal(tk_slotmgr_sync(m, 5000), TK_OK);
	assert_true(rec_wait(&r, 0, TK_EVENT_CARD_REMOVED, -1, id, 0) >= 0);

	/* a deadline shorter than the callback */
	fake_reader(0, "Fake A", true, true);
	for (int64_t end = now_ms() + 5000; now_ms() < end; sleep_ms(2)) {
		tk_slot_info_t info;

		if (tk_slotmgr_info(m, id, &info) == TK_OK && info.card_seq != 0)
			break;
	}
	assert_int_equal(tk_slotmgr_sync(m, 20), TK_ERR_TIMEOUT);
	assert_int_equal(tk_slotmgr_sync(m, 5000), TK_OK);
	assert_int_equal(tk_slotmgr_sync(NULL, 10), TK_ERR_INVALID_ARG);

	tk_slotmgr_free(&m);
	rec_destroy(&r);
}

static void
test_names(void **state)
{
	(void)state;
	assert_string_equal(tk_slot_state_name(TK_SLOT_VALID), "valid");
	assert_string_equal(tk_slot_state_name(TK_SLOT_QUARANTINED), "quarantined");
	assert_string_equal(tk_slot_state_name(99), "unknown");
	assert_string_equal(tk_event_type_name(TK_EVENT_CARD_INSERTED), "card-inserted");
	assert_string_equal(tk_event_type_name(0), "unknown");
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_names),
	        cmocka_unit_test(test_discovery_and_events),
	        cmocka_unit_test(test_transmit_and_removal),
	        cmocka_unit_test(test_stall_deadline_and_recovery),
	        cmocka_unit_test(test_queued_behind_stall),
	        cmocka_unit_test(test_cancel),
	        cmocka_unit_test(test_service_lost_and_restored),
	        cmocka_unit_test(test_no_service_at_start),
	        cmocka_unit_test(test_replay_and_unsubscribe),
	        cmocka_unit_test(test_busy_ms),
	        cmocka_unit_test(test_sync),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
