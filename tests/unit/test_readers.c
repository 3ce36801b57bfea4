/* Unit tests for several reader backends in one slot manager: the reader
 * spec ("pcsc+ccid?", configs that hold '+', ';' and ','), readers keyed by
 * (backend, name) with stable slot ids, each backend's service followed on
 * its own, events and slot info naming the backend, card I/O going to the
 * slot's own backend, a backend's first scan waiting for the ones before
 * it, optional backends, and the default spec. Two fake backends ("fa" and
 * "fb") each list readers whose cards answer with the backend's mark. */
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

#include "clock.h"
#include "slotmgr_priv.h"

/* ---- the spec ------------------------------------------------------------ */

static int
parse(const char *spec, tk_reader_spec_item_t *it, size_t *n)
{
	static char buf[256];

	snprintf(buf, sizeof(buf), "%s", spec);
	return tk_reader_spec_parse(buf, it, TK_READER_SPEC_MAX, n);
}

static void
test_spec(void **state)
{
	tk_reader_spec_item_t it[TK_READER_SPEC_MAX];
	size_t n = 99;

	(void)state;
	assert_int_equal(parse("pcsc", it, &n), TK_OK);
	assert_int_equal(n, 1);
	assert_string_equal(it[0].name, "pcsc");
	assert_null(it[0].config);
	assert_false(it[0].optional);

	assert_int_equal(parse("pcsc+ccid?", it, &n), TK_OK);
	assert_int_equal(n, 2);
	assert_string_equal(it[1].name, "ccid");
	assert_true(it[1].optional);
	assert_false(it[0].optional);

	/* the virtual reader's config keeps its ';' and ',', and a '+' that
	 * does not begin a backend (a path) */
	assert_int_equal(
	        parse("vcard:state=/t/a+b/c.state,latency=none;empty+pcsc+ccid:read_ms=400", it,
	              &n),
	        TK_OK);
	assert_int_equal(n, 3);
	assert_string_equal(it[0].name, "vcard");
	assert_string_equal(it[0].config, "state=/t/a+b/c.state,latency=none;empty");
	assert_string_equal(it[1].name, "pcsc");
	assert_null(it[1].config);
	assert_string_equal(it[2].config, "read_ms=400");
	/* ... a '+' followed by a name and ':' does begin one */
	assert_int_equal(parse("vcard:x+y:z", it, &n), TK_OK);
	assert_int_equal(n, 2);
	assert_string_equal(it[0].config, "x");
	assert_string_equal(it[1].name, "y");
	assert_int_equal(parse("ccid?:", it, &n), TK_OK);
	assert_true(it[0].optional);
	assert_string_equal(it[0].config, "");

	n = 99;
	assert_int_equal(parse("", it, &n), TK_ERR_INVALID_ARG);
	assert_int_equal(n, 0);
	assert_int_equal(parse("pcsc+pcsc", it, &n), TK_ERR_INVALID_ARG);
	assert_int_equal(parse("pcsc+pcsc?", it, &n), TK_ERR_INVALID_ARG);
	assert_int_equal(parse("PCSC", it, &n), TK_ERR_INVALID_ARG);
	assert_int_equal(parse("pcsc+", it, &n), TK_ERR_INVALID_ARG);
	assert_int_equal(parse("+pcsc", it, &n), TK_ERR_INVALID_ARG);
	assert_int_equal(parse("pcsc,ccid", it, &n), TK_ERR_INVALID_ARG);
	assert_int_equal(parse("pcsc;ccid", it, &n), TK_ERR_INVALID_ARG);
	assert_int_equal(parse("a+b+c+d+e", it, &n), TK_ERR_TOO_LONG);
	assert_int_equal(n, 0);
	assert_int_equal(parse("a+b+c+d", it, &n), TK_OK);
	assert_int_equal(n, 4);
	assert_int_equal(parse("abcdefghijabcdefghijabcdefghijabc", it, &n), TK_ERR_INVALID_ARG);
	assert_int_equal(parse("abcdefghijabcdefghijabcdefghijab", it, &n), TK_OK);
}

/* ---- two fake backends ------------------------------------------------------- */

#define NRD 2

typedef struct fake_be {
	const char *name;
	char mark; /* the cards' answer: the backend they are in */
	pthread_mutex_t mtx;
	pthread_cond_t cond; /* CLOCK_MONOTONIC */
	struct {
		char name[32];
		bool present, card;
		uint32_t events;
	} r[NRD];
	bool no_service, cancelled;
	unsigned version, seen;
	int enumerates;
	int first_delay_ms; /* the first enumerate takes this long */
	int64_t first_start_us, first_end_us;
	int transmits;
} fake_be_t;

static fake_be_t fa = {.name = "fa", .mark = 'A'}, fb = {.name = "fb", .mark = 'B'};

typedef struct fconn {
	fake_be_t *b;
	int idx;
} fconn_t;

static void
changed_locked(fake_be_t *b)
{
	b->version++;
	pthread_cond_broadcast(&b->cond);
}

static int
f_enumerate(void *be, tk_reader_desc_t **out, size_t *count)
{
	fake_be_t *b = be;
	tk_reader_desc_t *d;
	size_t n = 0;
	int delay;

	*out = NULL;
	*count = 0;
	pthread_mutex_lock(&b->mtx);
	delay = b->enumerates++ == 0 ? b->first_delay_ms : 0;
	if (delay > 0)
		b->first_start_us = tk_now_us();
	pthread_mutex_unlock(&b->mtx);
	if (delay > 0) {
		struct timespec ts = {delay / 1000, (long)(delay % 1000) * 1000000L};

		nanosleep(&ts, NULL);
	}
	pthread_mutex_lock(&b->mtx);
	if (b->first_end_us == 0)
		b->first_end_us = tk_now_us();
	b->seen = b->version;
	if (b->no_service) {
		pthread_mutex_unlock(&b->mtx);
		return TK_ERR_NO_SERVICE;
	}
	d = calloc(NRD, sizeof(*d));
	for (int i = 0; i < NRD; i++) {
		if (!b->r[i].present)
			continue;
		snprintf(d[n].name, sizeof(d[n].name), "%s", b->r[i].name);
		d[n].card_present = b->r[i].card;
		d[n].event_count = b->r[i].events;
		snprintf(d[n].exchange, sizeof(d[n].exchange), "kind %c", b->mark);
		d[n].reader_slots = (uint8_t)(NRD + (b->mark - 'A'));
		n++;
	}
	pthread_mutex_unlock(&b->mtx);
	*out = d;
	*count = n;
	return TK_OK;
}

static int
f_wait(void *be, int timeout_ms)
{
	fake_be_t *b = be;
	int64_t end = tk_now_us() + (int64_t)timeout_ms * 1000;
	int r = TK_ERR_TIMEOUT;

	pthread_mutex_lock(&b->mtx);
	for (;;) {
		if (b->cancelled) {
			b->cancelled = false;
			r = TK_ERR_CANCELLED;
			break;
		}
		if (b->version != b->seen) {
			r = b->no_service ? TK_ERR_NO_SERVICE : TK_OK;
			break;
		}
		if (tk_now_us() >= end)
			break;
		tk_cond_wait_until_us(&b->cond, &b->mtx, end);
	}
	pthread_mutex_unlock(&b->mtx);
	return r;
}

static void
f_cancel(void *be)
{
	fake_be_t *b = be;

	pthread_mutex_lock(&b->mtx);
	b->cancelled = true;
	pthread_cond_broadcast(&b->cond);
	pthread_mutex_unlock(&b->mtx);
}

static int
f_find_locked(fake_be_t *b, const char *name)
{
	for (int i = 0; i < NRD; i++)
		if (b->r[i].present && strcmp(b->r[i].name, name) == 0)
			return i;
	return -1;
}

static int
f_connect(void *be, const char *reader, void **conn, uint8_t *atr, size_t *atr_len, int *proto)
{
	fake_be_t *b = be;
	fconn_t *c;
	int i;

	*conn = NULL;
	pthread_mutex_lock(&b->mtx);
	i = f_find_locked(b, reader);
	if (i < 0 || !b->r[i].card || b->no_service) {
		pthread_mutex_unlock(&b->mtx);
		return b->no_service ? TK_ERR_NO_SERVICE
		       : i < 0       ? TK_ERR_NO_READER
		                     : TK_ERR_NO_CARD;
	}
	pthread_mutex_unlock(&b->mtx);
	c = calloc(1, sizeof(*c));
	c->b = b;
	c->idx = i;
	memcpy(atr, "\x3B\x80\x80\x01\x01", 5);
	*atr_len = 5;
	*proto = 1;
	*conn = c;
	return TK_OK;
}

static int
f_transmit(void *conn, const uint8_t *cmd, size_t cmd_len, uint8_t *resp, size_t resp_cap,
           size_t *resp_len)
{
	fconn_t *c = conn;

	(void)cmd, (void)cmd_len, (void)resp_cap;
	pthread_mutex_lock(&c->b->mtx);
	c->b->transmits++;
	pthread_mutex_unlock(&c->b->mtx);
	resp[0] = (uint8_t)c->b->mark;
	resp[1] = (uint8_t)c->idx;
	resp[2] = 0x90;
	resp[3] = 0x00;
	*resp_len = 4;
	return TK_OK;
}

static int
f_reset(void *conn, int how, uint8_t *atr, size_t *atr_len, int *proto)
{
	(void)conn, (void)how;
	memcpy(atr, "\x3B\x80\x80\x01\x01", 5);
	*atr_len = 5;
	*proto = 1;
	return TK_OK;
}

static int
f_ok(void *conn)
{
	(void)conn;
	return TK_OK;
}

static void
f_caps(void *conn, tk_reader_caps_t *caps)
{
	fconn_t *c = conn;

	memset(caps, 0, sizeof(*caps));
	caps->max_cmd = 261;
	caps->max_resp = 258;
	caps->pin_pad_verify = c->b->mark == 'B';
}

static void
f_disconnect(void *conn)
{
	free(conn);
}

static int
fa_open(void **be, const char *config)
{
	*be = &fa;
	return config != NULL && strcmp(config, "bad") == 0 ? TK_ERR_INVALID_ARG : TK_OK;
}

static int
fb_open(void **be, const char *config)
{
	(void)config;
	*be = &fb;
	return TK_OK;
}

static int
fc_open(void **be, const char *config)
{
	(void)config;
	*be = NULL;
	return TK_ERR_NO_SERVICE; /* e.g. no USB stack */
}

static void
f_close(void *be)
{
	(void)be;
}

#define FAKE_OPS(id, name_, open_fn)                                                               \
	static const tk_reader_ops_t id = {                                                        \
	        .name = name_,                                                                     \
	        .open = open_fn,                                                                   \
	        .close = f_close,                                                                  \
	        .enumerate = f_enumerate,                                                          \
	        .wait_change = f_wait,                                                             \
	        .cancel = f_cancel,                                                                \
	        .connect = f_connect,                                                              \
	        .transmit = f_transmit,                                                            \
	        .reset = f_reset,                                                                  \
	        .begin = f_ok,                                                                     \
	        .end = f_ok,                                                                       \
	        .status = f_ok,                                                                    \
	        .caps = f_caps,                                                                    \
	        .disconnect = f_disconnect,                                                        \
	}
FAKE_OPS(fa_ops, "fa", fa_open);
FAKE_OPS(fb_ops, "fb", fb_open);
FAKE_OPS(fc_ops, "fc", fc_open);

static void
fake_reset(fake_be_t *b)
{
	pthread_mutex_lock(&b->mtx);
	memset(b->r, 0, sizeof(b->r));
	for (int i = 0; i < NRD; i++) {
		/* the same reader names in both backends */
		snprintf(b->r[i].name, sizeof(b->r[i].name), "Reader %d", i);
		b->r[i].present = true;
		b->r[i].card = i == 0;
		b->r[i].events = 1;
	}
	b->no_service = b->cancelled = false;
	b->enumerates = 0;
	b->first_delay_ms = 0;
	b->first_start_us = b->first_end_us = 0;
	b->transmits = 0;
	changed_locked(b);
	pthread_mutex_unlock(&b->mtx);
}

static void
fake_set(fake_be_t *b, int i, bool present, bool card)
{
	pthread_mutex_lock(&b->mtx);
	b->r[i].present = present;
	if (card && !b->r[i].card)
		b->r[i].events++;
	b->r[i].card = card;
	changed_locked(b);
	pthread_mutex_unlock(&b->mtx);
}

static void
fake_service(fake_be_t *b, bool up)
{
	pthread_mutex_lock(&b->mtx);
	b->no_service = !up;
	changed_locked(b);
	pthread_mutex_unlock(&b->mtx);
}

/* ---- events ---------------------------------------------------------------- */

#define EV_MAX 256
static struct {
	pthread_mutex_t mtx;
	int n;
	struct {
		int type;
		uint32_t slot;
		char backend[16];
		char reader[32];
	} e[EV_MAX];
} evs = {.mtx = PTHREAD_MUTEX_INITIALIZER};

static void
on_event(void *ctx, const tk_event_t *ev)
{
	(void)ctx;
	pthread_mutex_lock(&evs.mtx);
	if (evs.n < EV_MAX) {
		evs.e[evs.n].type = ev->type;
		evs.e[evs.n].slot = ev->slot_id;
		snprintf(evs.e[evs.n].backend, sizeof(evs.e[0].backend), "%s",
		         ev->backend != NULL ? ev->backend : "(null)");
		snprintf(evs.e[evs.n].reader, sizeof(evs.e[0].reader), "%s",
		         ev->reader != NULL ? ev->reader : "");
		evs.n++;
	}
	pthread_mutex_unlock(&evs.mtx);
}

static int
count_events(int type, const char *backend)
{
	int k = 0;

	pthread_mutex_lock(&evs.mtx);
	for (int i = 0; i < evs.n; i++)
		k += evs.e[i].type == type && strcmp(evs.e[i].backend, backend) == 0;
	pthread_mutex_unlock(&evs.mtx);
	return k;
}

/* ---- helpers ------------------------------------------------------------------- */

static void
sleep_ms(int ms)
{
	struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};

	nanosleep(&ts, NULL);
}

/* The slot of (backend, reader) in a listing, or NULL. */
static const tk_slot_info_t *
find(const tk_slot_info_t *in, size_t n, const char *backend, const char *reader)
{
	for (size_t i = 0; i < n; i++)
		if (strcmp(in[i].backend, backend) == 0 && strcmp(in[i].reader, reader) == 0)
			return &in[i];
	return NULL;
}

/* Wait until (backend, reader) is in the given state. */
static bool
wait_slot(tk_slotmgr_t *m, const char *backend, const char *reader, int state, uint32_t *id)
{
	int64_t end = tk_now_us() + 5000000;

	do {
		tk_slot_info_t *in = NULL;
		size_t n = 0;
		const tk_slot_info_t *s;
		bool ok;

		assert_int_equal(tk_slotmgr_list(m, &in, &n), TK_OK);
		s = find(in, n, backend, reader);
		ok = s != NULL && s->state == state;
		if (ok && id != NULL)
			*id = s->slot_id;
		free(in);
		if (ok)
			return true;
		sleep_ms(5);
	} while (tk_now_us() < end);
	return false;
}

static tk_slotmgr_t *
start_two(void)
{
	const tk_reader_ops_t *ops[] = {&fa_ops, &fb_ops};
	tk_slotmgr_opts_t o;
	tk_slotmgr_t *m = NULL;

	fake_reset(&fa);
	fake_reset(&fb);
	tk_slotmgr_opts_init(&o);
	o.recovery_log = "";
	assert_int_equal(tk_slotmgr_new_multi(&o, ops, NULL, NULL, 2, 50, &m), TK_OK);
	assert_int_equal(tk_slotmgr_wait_ready(m, 5000), TK_OK);
	return m;
}

/* ---- tests ------------------------------------------------------------------------ */

static void
test_two_backends(void **state)
{
	static const uint8_t cmd[] = {0x00, 0xCA, 0x00, 0x00, 0x00};
	tk_slotmgr_t *m = start_two();
	tk_slot_info_t *in = NULL, info;
	const tk_slot_info_t *a0, *b0, *a1, *b1;
	uint32_t ida, idb, idb1;
	tk_card_t *c = NULL;
	uint8_t resp[16];
	size_t n = 0;
	int sub;

	(void)state;
	evs.n = 0;
	sub = tk_slotmgr_subscribe(m, on_event, NULL, true);
	assert_true(sub > 0);
	assert_true(wait_slot(m, "fa", "Reader 0", TK_SLOT_VALID, &ida));
	assert_true(wait_slot(m, "fb", "Reader 0", TK_SLOT_VALID, &idb));
	assert_int_equal(tk_slotmgr_list(m, &in, &n), TK_OK);
	assert_int_equal(n, 4);
	a0 = find(in, n, "fa", "Reader 0");
	b0 = find(in, n, "fb", "Reader 0");
	a1 = find(in, n, "fa", "Reader 1");
	b1 = find(in, n, "fb", "Reader 1");
	assert_non_null(a0);
	assert_non_null(b0);
	assert_non_null(a1);
	assert_non_null(b1);
	/* one slot per (backend, reader), whatever the names */
	assert_int_not_equal(a0->slot_id, b0->slot_id);
	assert_int_not_equal(a1->slot_id, b1->slot_id);
	assert_string_equal(a0->exchange, "kind A");
	assert_string_equal(b1->exchange, "kind B");
	assert_int_equal(a0->reader_slots, 2);
	assert_int_equal(b0->reader_slots, 3);
	assert_false(a0->pin_pad);
	assert_true(b0->pin_pad);
	assert_false(b1->pin_pad); /* no card connected there */
	idb1 = b1->slot_id;
	free(in);

	/* each slot's card is in its own backend */
	assert_int_equal(tk_slotmgr_card(m, idb, &c), TK_OK);
	assert_int_equal(tk_card_transmit(c, cmd, sizeof(cmd), resp, sizeof(resp), &n, 0), TK_OK);
	assert_int_equal(resp[0], 'B');
	tk_card_unref(&c);
	assert_int_equal(tk_slotmgr_card(m, ida, &c), TK_OK);
	assert_int_equal(tk_card_transmit(c, cmd, sizeof(cmd), resp, sizeof(resp), &n, 0), TK_OK);
	assert_int_equal(resp[0], 'A');
	tk_card_unref(&c);

	/* a reader of fb goes and comes back: only fb's slot moves, and it
	 * gets its old id */
	fake_set(&fb, 1, false, false);
	assert_true(wait_slot(m, "fb", "Reader 1", TK_SLOT_ABSENT, NULL));
	assert_true(wait_slot(m, "fa", "Reader 1", TK_SLOT_EMPTY, NULL));
	fake_set(&fb, 1, true, true);
	assert_true(wait_slot(m, "fb", "Reader 1", TK_SLOT_VALID, &idb1));
	assert_int_equal(tk_slotmgr_info(m, idb1, &info), TK_OK);
	assert_string_equal(info.backend, "fb");
	assert_int_equal(tk_slotmgr_sync(m, 2000), TK_OK);
	assert_int_equal(count_events(TK_EVENT_READER_REMOVED, "fb"), 1);
	assert_int_equal(count_events(TK_EVENT_READER_REMOVED, "fa"), 0);
	assert_true(count_events(TK_EVENT_CARD_INSERTED, "fb") >= 2);
	assert_int_equal(count_events(TK_EVENT_READER_ADDED, "fa"), 2);

	/* fa's service goes: fa's readers go, fb's stay; the events say whose */
	fake_service(&fa, false);
	assert_true(wait_slot(m, "fa", "Reader 0", TK_SLOT_ABSENT, NULL));
	assert_true(wait_slot(m, "fb", "Reader 0", TK_SLOT_VALID, NULL));
	assert_int_equal(tk_slotmgr_card(m, idb, &c), TK_OK);
	assert_int_equal(tk_card_transmit(c, cmd, sizeof(cmd), resp, sizeof(resp), &n, 0), TK_OK);
	tk_card_unref(&c);
	fake_service(&fa, true);
	assert_true(wait_slot(m, "fa", "Reader 0", TK_SLOT_VALID, &idb1));
	assert_int_equal(idb1, ida);
	assert_int_equal(tk_slotmgr_sync(m, 2000), TK_OK);
	assert_int_equal(count_events(TK_EVENT_SERVICE_LOST, "fa"), 1);
	assert_int_equal(count_events(TK_EVENT_SERVICE_RESTORED, "fa"), 1);
	assert_int_equal(count_events(TK_EVENT_SERVICE_LOST, "fb"), 0);
	tk_slotmgr_unsubscribe(m, sub);
	tk_slotmgr_free(&m);
}

static void
test_first_scan_order(void **state)
{
	const tk_reader_ops_t *ops[] = {&fa_ops, &fb_ops};
	tk_slotmgr_t *m = NULL;
	tk_slotmgr_opts_t o;

	(void)state;
	fake_reset(&fa);
	fake_reset(&fb);
	fa.first_delay_ms = 300; /* a pcscd that starts on demand */
	tk_slotmgr_opts_init(&o);
	o.recovery_log = "";
	assert_int_equal(tk_slotmgr_new_multi(&o, ops, NULL, NULL, 2, 50, &m), TK_OK);
	assert_int_equal(tk_slotmgr_wait_ready(m, 5000), TK_OK);
	/* fb scanned only once fa's first scan was over */
	pthread_mutex_lock(&fb.mtx);
	assert_true(fb.first_end_us >= fa.first_end_us);
	pthread_mutex_unlock(&fb.mtx);
	assert_true(fa.first_end_us - fa.first_start_us >= 300000);
	tk_slotmgr_free(&m);
}

static void
test_spec_and_defaults(void **state)
{
	tk_slotmgr_opts_t o;
	tk_slotmgr_t *m = NULL;
	tk_slot_info_t *in = NULL;
	size_t n = 0;

	(void)state;
	assert_int_equal(tk_reader_backend_register(&fa_ops), TK_OK);
	assert_int_equal(tk_reader_backend_register(&fb_ops), TK_OK);
	assert_int_equal(tk_reader_backend_register(&fc_ops), TK_OK);
	fake_reset(&fa);
	fake_reset(&fb);
	tk_slotmgr_opts_init(&o);
	o.recovery_log = "";

	o.readers = "fa+fb";
	assert_int_equal(tk_slotmgr_new(&o, &m), TK_OK);
	assert_int_equal(tk_slotmgr_wait_ready(m, 5000), TK_OK);
	assert_true(wait_slot(m, "fb", "Reader 0", TK_SLOT_VALID, NULL));
	assert_true(wait_slot(m, "fa", "Reader 0", TK_SLOT_VALID, NULL));
	tk_slotmgr_free(&m);

	/* an optional backend that does not exist is left out */
	o.readers = "fa+nosuchbackend?";
	assert_int_equal(tk_slotmgr_new(&o, &m), TK_OK);
	assert_int_equal(tk_slotmgr_wait_ready(m, 5000), TK_OK);
	assert_int_equal(tk_slotmgr_list(m, &in, &n), TK_OK);
	assert_int_equal(n, 2);
	assert_string_equal(in[0].backend, "fa");
	free(in);
	tk_slotmgr_free(&m);
	/* ... named without '?', it fails loudly */
	o.readers = "fa+nosuchbackend";
	assert_int_equal(tk_slotmgr_new(&o, &m), TK_ERR_INVALID_ARG);
	assert_null(m);
	/* a config the backend refuses fails too */
	o.readers = "fa:bad+fb";
	assert_int_equal(tk_slotmgr_new(&o, &m), TK_ERR_INVALID_ARG);
	/* a backend that cannot start (no service at all) is left out... */
	o.readers = "fc+fb";
	assert_int_equal(tk_slotmgr_new(&o, &m), TK_OK);
	assert_int_equal(tk_slotmgr_wait_ready(m, 5000), TK_OK);
	assert_true(wait_slot(m, "fb", "Reader 0", TK_SLOT_VALID, NULL));
	tk_slotmgr_free(&m);
	/* ... unless it was the only one */
	o.readers = "fc";
	assert_int_equal(tk_slotmgr_new(&o, &m), TK_ERR_NO_SERVICE);

	/* no spec, no $TOKENKIT_READERS: the caller's default */
	o.readers = NULL;
	o.default_readers = "fb";
	assert_int_equal(tk_slotmgr_new(&o, &m), TK_OK);
	assert_int_equal(tk_slotmgr_wait_ready(m, 5000), TK_OK);
	assert_true(wait_slot(m, "fb", "Reader 0", TK_SLOT_VALID, NULL));
	assert_int_equal(tk_slotmgr_list(m, &in, &n), TK_OK);
	assert_int_equal(n, 2);
	free(in);
	tk_slotmgr_free(&m);
}

static void
test_ready_when_one_works(void **state)
{
	const tk_reader_ops_t *ops[] = {&fa_ops, &fb_ops};
	tk_slotmgr_opts_t o;
	tk_slotmgr_t *m = NULL;

	(void)state;
	fake_reset(&fa);
	fake_reset(&fb);
	fake_service(&fa, false);
	tk_slotmgr_opts_init(&o);
	o.recovery_log = "";
	assert_int_equal(tk_slotmgr_new_multi(&o, ops, NULL, NULL, 2, 50, &m), TK_OK);
	/* fa's daemon is not there, fb works: the manager works */
	assert_int_equal(tk_slotmgr_wait_ready(m, 5000), TK_OK);
	tk_slotmgr_free(&m);
	/* neither: no service */
	fake_service(&fb, false);
	assert_int_equal(tk_slotmgr_new_multi(&o, ops, NULL, NULL, 2, 50, &m), TK_OK);
	assert_int_equal(tk_slotmgr_wait_ready(m, 5000), TK_ERR_NO_SERVICE);
	tk_slotmgr_free(&m);
}

static int
setup_all(void **state)
{
	(void)state;
	for (int i = 0; i < 2; i++) {
		fake_be_t *b = i == 0 ? &fa : &fb;

		pthread_mutex_init(&b->mtx, NULL);
		tk_cond_init_monotonic(&b->cond);
	}
	return 0;
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_spec),
	        cmocka_unit_test(test_two_backends),
	        cmocka_unit_test(test_first_scan_order),
	        cmocka_unit_test(test_spec_and_defaults),
	        cmocka_unit_test(test_ready_when_one_works),
	};

	return cmocka_run_group_tests(tests, setup_all, NULL);
}
