/* Unit tests for the recovery ladder (core/recovery.c), over a fake reader
 * backend whose faults are cured by one particular step: a retry, a
 * reconnect, a warm reset, a power cycle, a new context, or nothing until
 * the test says so (quarantine). Also: state-changing commands are never
 * repeated, callers get their answer by the deadline while the backend is
 * stuck, history and counters are kept, the recovery log is written, and a
 * card handle survives a service restart when the same card comes back.
 * A backend with transport steps (a USB reader: CLEAR_HALT, ABORT, USB
 * reset) gets the step its fault needs first, the next one when that one
 * fails, and a USB reset that would disturb another reader is not made. */
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
#include <unistd.h>

#include <cmocka.h>

#include <tokenkit/card.h>
#include <tokenkit/err.h>
#include <tokenkit/log.h>
#include <tokenkit/slot.h>

#include "recovery_log.h"
#include "slotmgr_priv.h"

/* ---- the fake backend ------------------------------------------------ */

#define NR 2

enum cure {
	CURE_NONE = 0,  /* no fault */
	CURE_COUNT,     /* the next `count` transmits fail */
	CURE_RECONNECT, /* fails until a reconnect (or a new connection) */
	CURE_WARM,      /* until a warm or cold reset */
	CURE_COLD,      /* "mute until power cycle" */
	CURE_CONTEXT,   /* connections made before the fault say NO_SERVICE */
	CURE_NEVER,     /* until the test clears it */
};

/* per reader: the fault and what cures it (CURE_CONTEXT: connections up to
 * fault_conn are dead), stalls, and what the reader saw (transmits by INS,
 * resets by kind, connects); globally: the last connection number and the
 * threads inside a stalled call */
#define FAKE_NR 2
#define FAKE_READER_FIELDS                                                                         \
	int cure, count, err;                                                                      \
	unsigned fault_conn;                                                                       \
	bool stall_transmit, stall_reset;                                                          \
	int ins_count[256];                                                                        \
	int resets[3];                                                                             \
	int connects;                                                                              \
	int usb_fault;  /* the transport step that cures it (0: none) */                           \
	bool usb_busy;  /* a USB reset would disturb another reader */                             \
	bool unpowered; /* after a USB reset, until a reconnect */                                 \
	int usb_steps[TK_STEP_COUNT];
#define FAKE_FIELDS                                                                                \
	unsigned next_conn;                                                                        \
	int stuck;
#include "fake_reader.h"

static int
f_connect(void *be, const char *reader, void **conn, uint8_t *atr, size_t *atr_len, int *proto)
{
	fconn_t *c;
	int i = -1;

	(void)be;
	*conn = NULL;
	pthread_mutex_lock(&fk.mtx);
	i = fake_find_locked(reader);
	if (fk.no_service || i < 0 || !fk.r[i].card) {
		int r = fk.no_service ? TK_ERR_NO_SERVICE
		        : i < 0       ? TK_ERR_NO_READER
		                      : TK_ERR_NO_CARD;

		pthread_mutex_unlock(&fk.mtx);
		return r;
	}
	c = calloc(1, sizeof(*c));
	c->idx = i;
	c->id = ++fk.next_conn;
	fk.r[i].connects++;
	if (fk.r[i].cure == CURE_RECONNECT)
		fk.r[i].cure = CURE_NONE;
	memcpy(atr, fk.r[i].atr, fk.r[i].atr_len);
	*atr_len = fk.r[i].atr_len;
	pthread_mutex_unlock(&fk.mtx);
	*proto = 1;
	*conn = c;
	return TK_OK;
}

/* With fk.mtx held: block while *flag, bounded so a broken test cannot hang. */
static void
stall_while(bool *flag)
{
	struct timespec dl;

	abstime(&dl, 30000);
	fk.stuck++;
	pthread_cond_broadcast(&fk.cond);
	while (*flag)
		if (pthread_cond_timedwait(&fk.cond, &fk.mtx, &dl) == ETIMEDOUT)
			break;
	fk.stuck--;
	pthread_cond_broadcast(&fk.cond);
}

static int
f_transmit(void *conn, const uint8_t *cmd, size_t cmd_len, uint8_t *resp, size_t resp_cap,
           size_t *resp_len)
{
	fconn_t *c = conn;
	int r = TK_OK;

	*resp_len = 0;
	(void)cmd_len;
	pthread_mutex_lock(&fk.mtx);
	stall_while(&fk.r[c->idx].stall_transmit);
	fk.r[c->idx].ins_count[cmd[1]]++;
	if (fk.no_service) {
		r = TK_ERR_NO_SERVICE;
	} else if (fk.r[c->idx].usb_fault != 0) {
		/* a halted pipe fails at once; a wedged reader after its timeout */
		r = fk.r[c->idx].usb_fault == TK_STEP_CLEAR_HALT ? TK_ERR_IO : TK_ERR_UNRESPONSIVE;
	} else if (fk.r[c->idx].unpowered) {
		r = TK_ERR_CARD_RESET;
	} else if (!fk.r[c->idx].card) {
		r = TK_ERR_CARD_REMOVED;
	} else {
		switch (fk.r[c->idx].cure) {
		case CURE_COUNT:
			if (fk.r[c->idx].count > 0) {
				fk.r[c->idx].count--;
				r = fk.r[c->idx].err;
			}
			break;
		case CURE_CONTEXT:
			if (c->id <= fk.r[c->idx].fault_conn)
				r = TK_ERR_NO_SERVICE;
			break;
		case CURE_RECONNECT:
		case CURE_WARM:
		case CURE_COLD:
		case CURE_NEVER:
			r = fk.r[c->idx].err;
			break;
		default:
			break;
		}
	}
	pthread_mutex_unlock(&fk.mtx);
	if (r != TK_OK)
		return r;
	return fake_answer(c, cmd, resp, resp_cap, resp_len);
}

static int
f_reset(void *conn, int how, uint8_t *atr, size_t *atr_len, int *proto)
{
	fconn_t *c = conn;
	int *cure;
	int r = TK_OK;

	pthread_mutex_lock(&fk.mtx);
	stall_while(&fk.r[c->idx].stall_reset);
	cure = &fk.r[c->idx].cure;
	fk.r[c->idx].resets[how]++;
	if (fk.no_service || (*cure == CURE_CONTEXT && c->id <= fk.r[c->idx].fault_conn))
		r = TK_ERR_NO_SERVICE;
	else if (!fk.r[c->idx].card)
		r = TK_ERR_NO_CARD;
	else if (fk.r[c->idx].usb_fault != 0)
		r = TK_ERR_UNRESPONSIVE; /* the reader does not answer */
	else
		fk.r[c->idx].unpowered = false; /* any reset powers the card */
	if (r == TK_OK &&
	    ((*cure == CURE_RECONNECT) || (*cure == CURE_WARM && how >= TK_READER_WARM_RESET) ||
	     (*cure == CURE_COLD && how == TK_READER_COLD_RESET)))
		*cure = CURE_NONE;
	memcpy(atr, fk.r[c->idx].atr, fk.r[c->idx].atr_len);
	*atr_len = fk.r[c->idx].atr_len;
	pthread_mutex_unlock(&fk.mtx);
	*proto = 1;
	return r;
}

static int
f_status(void *conn)
{
	fconn_t *c = conn;
	int r = TK_OK;

	pthread_mutex_lock(&fk.mtx);
	if (fk.no_service ||
	    (fk.r[c->idx].cure == CURE_CONTEXT && c->id <= fk.r[c->idx].fault_conn))
		r = TK_ERR_NO_SERVICE;
	else if (!fk.r[c->idx].card)
		r = TK_ERR_CARD_REMOVED;
	else if (fk.r[c->idx].usb_fault != 0)
		r = TK_ERR_IO;
	pthread_mutex_unlock(&fk.mtx);
	return r;
}

/* The transport steps of a USB reader. */
static int
f_fault_step(void *be, const char *name)
{
	int i, step = 0;

	(void)be;
	pthread_mutex_lock(&fk.mtx);
	i = fake_find_locked(name);
	if (i >= 0)
		/* a reader wedged until a USB reset looks like one an ABORT
		 * frees: both just stopped answering */
		step = fk.r[i].usb_fault == TK_STEP_USB_RESET ? TK_STEP_ABORT : fk.r[i].usb_fault;
	pthread_mutex_unlock(&fk.mtx);
	return step;
}

static int
f_recover(void *be, const char *name, int step)
{
	int i, r = TK_OK;

	(void)be;
	pthread_mutex_lock(&fk.mtx);
	i = fake_find_locked(name);
	if (i < 0) {
		pthread_mutex_unlock(&fk.mtx);
		return TK_ERR_NO_READER;
	}
	fk.r[i].usb_steps[step]++;
	if (step == TK_STEP_USB_RESET && fk.r[i].usb_busy) {
		r = TK_ERR_BUSY;
	} else if (step == fk.r[i].usb_fault) {
		fk.r[i].usb_fault = 0;
		if (step == TK_STEP_USB_RESET)
			fk.r[i].unpowered = true;
	} else if (step == TK_STEP_ABORT && fk.r[i].usb_fault == TK_STEP_USB_RESET) {
		r = TK_ERR_TIMEOUT; /* ignored the ABORT too */
	} else if (step == TK_STEP_USB_RESET) {
		fk.r[i].unpowered = true;
	}
	pthread_mutex_unlock(&fk.mtx);
	return r;
}

static void
f_caps(void *conn, tk_reader_caps_t *caps)
{
	(void)conn;
	memset(caps, 0, sizeof(*caps));
	caps->max_cmd = 261;
	caps->max_resp = 258;
}

static void
f_disconnect(void *conn)
{
	free(conn);
}

static void
fake_setup(void)
{
	pthread_mutex_lock(&fk.mtx);
	memset(fk.r, 0, sizeof(fk.r));
	fk.no_service = false;
	fk.cancelled = false;
	for (int i = 0; i < FAKE_NR; i++) {
		snprintf(fk.r[i].name, sizeof(fk.r[i].name), "Fake %c", 'A' + i);
		fk.r[i].present = fk.r[i].card = true;
		memcpy(fk.r[i].atr, FAKE_ATR, FAKE_ATR_LEN);
		fk.r[i].atr_len = FAKE_ATR_LEN;
		fk.r[i].events = 1;
	}
	fake_changed_locked();
	pthread_mutex_unlock(&fk.mtx);
}

static void
fake_fault(int i, int cure, int err, int count)
{
	pthread_mutex_lock(&fk.mtx);
	fk.r[i].cure = cure;
	fk.r[i].err = err;
	fk.r[i].count = count;
	fk.r[i].fault_conn = fk.next_conn;
	pthread_mutex_unlock(&fk.mtx);
}

static void
fake_set(bool *flag, bool v)
{
	pthread_mutex_lock(&fk.mtx);
	*flag = v;
	fake_changed_locked();
	pthread_mutex_unlock(&fk.mtx);
}

static int
fake_ins(int i, uint8_t ins)
{
	int n;

	pthread_mutex_lock(&fk.mtx);
	n = fk.r[i].ins_count[ins];
	pthread_mutex_unlock(&fk.mtx);
	return n;
}

static void
wait_stuck(int n)
{
	struct timespec dl;

	abstime(&dl, 5000);
	pthread_mutex_lock(&fk.mtx);
	while (fk.stuck < n)
		if (pthread_cond_timedwait(&fk.cond, &fk.mtx, &dl) == ETIMEDOUT)
			break;
	assert_true(fk.stuck >= n);
	pthread_mutex_unlock(&fk.mtx);
}

static void
wait_unstuck(void)
{
	struct timespec dl;

	abstime(&dl, 5000);
	pthread_mutex_lock(&fk.mtx);
	while (fk.stuck > 0)
		if (pthread_cond_timedwait(&fk.cond, &fk.mtx, &dl) == ETIMEDOUT)
			break;
	pthread_mutex_unlock(&fk.mtx);
}

/* ---- helpers ----------------------------------------------------------- */

static char log_path[256];
static const tk_reader_ops_t *start_ops = &fake_ops;

static tk_slotmgr_t *
start(int timeout_ms, int step_ms)
{
	tk_slotmgr_opts_t o;
	tk_slotmgr_t *m = NULL;

	fake_setup();
	tk_slotmgr_opts_init(&o);
	o.transmit_timeout_ms = timeout_ms;
	o.step_timeout_ms = step_ms;
	o.backoff_min_ms = 50;
	o.backoff_max_ms = 200;
	o.recovery_log = log_path;
	assert_int_equal(tk_slotmgr_new_with_ops(&o, start_ops, NULL, 50, &m), TK_OK);
	assert_int_equal(tk_slotmgr_wait_ready(m, 5000), TK_OK);
	return m;
}

/* Wait until the slot has at least n finished recoveries. */
static void
wait_recoveries(tk_slotmgr_t *m, uint32_t id, uint64_t n, tk_slot_diag_t *d)
{
	int64_t end = now_ms() + 5000;

	do {
		assert_int_equal(tk_slotmgr_diag(m, id, d), TK_OK);
		if (d->recoveries >= n)
			return;
		sleep_ms(5);
	} while (now_ms() < end);
	fail_msg("no recovery #%llu", (unsigned long long)n);
}

static tk_card_t *
card(tk_slotmgr_t *m, const char *name, uint32_t *id)
{
	tk_card_t *c = NULL;

	assert_int_equal(tk_slotmgr_find(m, name, id), TK_OK);
	assert_true(wait_state(m, *id, TK_SLOT_VALID, 5000));
	assert_int_equal(tk_slotmgr_card(m, *id, &c), TK_OK);
	return c;
}

static const uint8_t get_data[] = {0x00, 0xCB, 0x3F, 0xFF, 0x05, 0x5C,
                                   0x03, 0x5F, 0xC1, 0x02, 0x00};
static const uint8_t gen_auth[] = {0x00, 0x87, 0x07, 0x9A, 0x04, 0x7C, 0x02, 0x81, 0x00, 0x00};

static int
xmit(tk_card_t *c, const uint8_t *cmd, size_t len, int timeout_ms)
{
	uint8_t resp[16];
	size_t n = 0;

	return tk_card_transmit(c, cmd, len, resp, sizeof(resp), &n, timeout_ms);
}

static const tk_recovery_t *
last(const tk_slot_diag_t *d)
{
	assert_true(d->nhistory > 0);
	return &d->history[d->nhistory - 1];
}

/* ---- tests ------------------------------------------------------------- */

static void
test_read_only_table(void **state)
{
	static const struct {
		const char *hex;
		bool ro;
	} t[] = {
	        {"00A4040009A00000030800001000", true}, /* SELECT PIV by AID */
	        {"00A4000C023F00", false},              /* SELECT by file id */
	        {"00CB3FFF055C035FC10200", true},       /* GET DATA */
	        {"00CA7F6800", true},
	        {"00B0000000", true},
	        {"00B2010400", true},
	        {"00C0000000", true},
	        {"00FD000000", true}, /* Yubico GET VERSION */
	        {"00F8000000", true},
	        {"00F7009A00", true},
	        {"00200080", true},                    /* VERIFY status query */
	        {"002000800831323334FFFFFFFF", false}, /* VERIFY with a PIN */
	        {"002400800831323334FFFFFFFF", false}, /* CHANGE REFERENCE DATA */
	        {"002C0080", false},                   /* RESET RETRY COUNTER */
	        {"0047009A05AC03800111", false},       /* GENERATE */
	        {"00DB3FFF055C035FC102", false},       /* PUT DATA */
	        {"0087079A047C02810000", false},       /* GENERAL AUTHENTICATE */
	        {"00FE000000", false},                 /* IMPORT */
	        {"10CB3FFF055C035FC10200", false},     /* chained GET DATA */
	        {"FFCA000000", false},                 /* reader pseudo-APDU */
	        {"00CB", false},
	};
	uint8_t b[64];

	(void)state;
	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		size_t n = strlen(t[i].hex) / 2;

		for (size_t k = 0; k < n; k++)
			sscanf(t[i].hex + 2 * k, "%2hhx", &b[k]);
		if (tk_apdu_is_read_only(b, n) != t[i].ro)
			fail_msg("%s: expected %s", t[i].hex,
			         t[i].ro ? "read-only" : "state-changing");
	}
	assert_false(tk_apdu_is_read_only(NULL, 0));
}

static void
test_retry_cures_read_only(void **state)
{
	tk_slotmgr_t *m = start(2000, 1000);
	tk_slot_diag_t d;
	uint32_t id;
	tk_card_t *c = card(m, "Fake A", &id);
	uint64_t gen = tk_card_generation(c);

	(void)state;
	fake_fault(0, CURE_COUNT, TK_ERR_COMM, 1);
	assert_int_equal(xmit(c, get_data, sizeof(get_data), 1000), TK_OK);
	assert_int_equal(fake_ins(0, 0xCB), 2);
	wait_recoveries(m, id, 1, &d);
	assert_int_equal(last(&d)->cured_by, TK_STEP_RETRY);
	assert_int_equal(last(&d)->fault, TK_ERR_COMM);
	assert_int_equal(last(&d)->outcome, TK_OK);
	assert_int_equal(d.retried_ok, 1);
	assert_int_equal(d.step_ok[TK_STEP_RETRY], 1);
	assert_int_equal(d.err_comm, 1);
	assert_int_equal(d.info.state, TK_SLOT_VALID);
	/* A retry resets nothing. */
	assert_int_equal(tk_card_generation(c), gen);
	assert_true(d.lat_samples >= 1);
	tk_card_unref(&c);
	tk_slotmgr_free(&m);
}

static void
test_state_changing_never_retried(void **state)
{
	tk_slotmgr_t *m = start(2000, 1000);
	tk_slot_diag_t d;
	uint32_t id;
	tk_card_t *c = card(m, "Fake A", &id);
	uint64_t gen = tk_card_generation(c);

	(void)state;
	fake_fault(0, CURE_COUNT, TK_ERR_COMM, 1);
	assert_int_equal(xmit(c, gen_auth, sizeof(gen_auth), 1000), TK_ERR_COMM);
	assert_int_equal(fake_ins(0, 0x87), 1);
	/* The ladder still runs (the card may be in any state): reconnect. */
	wait_recoveries(m, id, 1, &d);
	assert_int_equal(last(&d)->cured_by, TK_STEP_RECONNECT);
	assert_int_equal(last(&d)->steps[0].step, TK_STEP_RECONNECT);
	assert_int_equal(fake_ins(0, 0x87), 1);
	assert_true(tk_card_generation(c) > gen);
	assert_int_equal(d.retried_ok, 0);
	assert_int_equal(xmit(c, gen_auth, sizeof(gen_auth), 1000), TK_OK);
	tk_card_unref(&c);
	tk_slotmgr_free(&m);
}

/* A read-only command whose retry fails too: the caller gets the error, the
 * ladder goes on to the step that cures this fault. */
static void
ladder_case(int cure, int err, int want_step, size_t want_steps)
{
	tk_slotmgr_t *m = start(2000, 1000);
	tk_slot_diag_t d;
	uint32_t id, idb;
	tk_card_t *c = card(m, "Fake A", &id), *cb = card(m, "Fake B", &idb);
	uint64_t gen = tk_card_generation(c);
	const tk_recovery_t *r;
	int64_t t0;

	fake_fault(0, cure, err, 0);
	t0 = now_ms();
	assert_int_equal(xmit(c, get_data, sizeof(get_data), 1000), err);
	assert_true(now_ms() - t0 < 1000 + 1000);
	wait_recoveries(m, id, 1, &d);
	r = last(&d);
	assert_int_equal(r->outcome, TK_OK);
	assert_int_equal(r->cured_by, want_step);
	assert_int_equal(r->fault, err);
	assert_int_equal(r->nsteps, want_steps);
	assert_int_equal(r->steps[want_steps - 1].step, want_step);
	assert_int_equal(r->steps[want_steps - 1].result, TK_OK);
	for (size_t i = 0; i + 1 < want_steps; i++)
		assert_int_not_equal(r->steps[i].result, TK_OK);
	assert_int_equal(d.step_ok[want_step], 1);
	assert_true(wait_state(m, id, TK_SLOT_VALID, 2000));
	assert_true(tk_card_generation(c) > gen);
	/* The same handle works again; the other reader never noticed. */
	assert_int_equal(xmit(c, get_data, sizeof(get_data), 1000), TK_OK);
	assert_int_equal(xmit(cb, get_data, sizeof(get_data), 1000), TK_OK);
	assert_int_equal(tk_slotmgr_diag(m, idb, &d), TK_OK);
	assert_int_equal(d.recoveries, 0);
	tk_card_unref(&c);
	tk_card_unref(&cb);
	tk_slotmgr_free(&m);
}

static void
test_cured_by_reconnect(void **state)
{
	(void)state;
	/* retry, reconnect */
	ladder_case(CURE_RECONNECT, TK_ERR_COMM, TK_STEP_RECONNECT, 2);
}

static void
test_cured_by_warm_reset(void **state)
{
	(void)state;
	ladder_case(CURE_WARM, TK_ERR_UNRESPONSIVE, TK_STEP_WARM_RESET, 3);
	assert_int_equal(fk.r[0].resets[TK_READER_COLD_RESET], 0);
}

static void
test_cured_by_cold_reset(void **state)
{
	(void)state;
	/* Mute until power cycle: the ladder reaches the cold reset. */
	ladder_case(CURE_COLD, TK_ERR_COMM, TK_STEP_COLD_RESET, 4);
	assert_int_equal(fk.r[0].resets[TK_READER_COLD_RESET], 1);
}

static void
test_cured_by_new_context(void **state)
{
	(void)state;
	/* NO_SERVICE on this connection only (not a read-only retry: the
	 * context is dead): straight to the new context. */
	ladder_case(CURE_CONTEXT, TK_ERR_NO_SERVICE, TK_STEP_CONTEXT, 1);
}

static void
test_quarantine_and_backoff(void **state)
{
	tk_slotmgr_t *m = start(2000, 1000);
	tk_slot_diag_t d;
	uint32_t id, idb;
	tk_card_t *c = card(m, "Fake A", &id), *cb = card(m, "Fake B", &idb);
	int64_t t0;

	(void)state;
	fake_fault(0, CURE_NEVER, TK_ERR_COMM, 0);
	assert_int_equal(xmit(c, gen_auth, sizeof(gen_auth), 1000), TK_ERR_COMM);
	assert_true(wait_state(m, id, TK_SLOT_QUARANTINED, 5000));
	/* Quarantined: an answer at once; B unaffected. */
	t0 = now_ms();
	assert_int_equal(xmit(c, get_data, sizeof(get_data), 3000), TK_ERR_QUARANTINED);
	assert_true(now_ms() - t0 < 1000);
	assert_int_equal(xmit(cb, get_data, sizeof(get_data), 1000), TK_OK);
	sleep_ms(600); /* back-off 50, 100, 200, 200...: a few probes */
	assert_int_equal(tk_slotmgr_diag(m, id, &d), TK_OK);
	assert_int_equal(d.recoveries, 0); /* still open */
	assert_int_equal(d.info.state, TK_SLOT_QUARANTINED);

	fake_fault(0, CURE_NONE, 0, 0);
	assert_true(wait_state(m, id, TK_SLOT_VALID, 5000));
	wait_recoveries(m, id, 1, &d);
	assert_int_equal(last(&d)->cured_by, TK_STEP_PROBE);
	assert_true(last(&d)->probes >= 2);
	assert_true(last(&d)->nsteps >= 4 + 2);
	assert_int_equal(d.step_ok[TK_STEP_PROBE], 1);
	assert_int_equal(xmit(c, gen_auth, sizeof(gen_auth), 1000), TK_OK);
	tk_card_unref(&c);
	tk_card_unref(&cb);
	tk_slotmgr_free(&m);
}

/* The card goes away while quarantined: the recovery ends, the slot empties,
 * a new card works at once. */
static void
test_quarantine_ends_on_removal(void **state)
{
	tk_slotmgr_t *m = start(2000, 1000);
	tk_slot_diag_t d;
	uint32_t id;
	tk_card_t *c = card(m, "Fake A", &id);

	(void)state;
	fake_fault(0, CURE_NEVER, TK_ERR_COMM, 0);
	assert_int_equal(xmit(c, gen_auth, sizeof(gen_auth), 1000), TK_ERR_COMM);
	assert_true(wait_state(m, id, TK_SLOT_QUARANTINED, 5000));
	pthread_mutex_lock(&fk.mtx);
	fk.r[0].card = false;
	fk.r[0].cure = CURE_NONE;
	fk.version++;
	pthread_cond_broadcast(&fk.cond);
	pthread_mutex_unlock(&fk.mtx);
	assert_true(wait_state(m, id, TK_SLOT_EMPTY, 5000));
	wait_recoveries(m, id, 1, &d);
	assert_int_equal(last(&d)->outcome, TK_ERR_CARD_REMOVED);
	assert_int_equal(xmit(c, gen_auth, sizeof(gen_auth), 1000), TK_ERR_CARD_REMOVED);
	tk_card_unref(&c);
	pthread_mutex_lock(&fk.mtx);
	fk.r[0].card = true;
	fk.r[0].events++;
	fk.version++;
	pthread_cond_broadcast(&fk.cond);
	pthread_mutex_unlock(&fk.mtx);
	c = card(m, "Fake A", &id);
	assert_int_equal(xmit(c, gen_auth, sizeof(gen_auth), 1000), TK_OK);
	tk_card_unref(&c);
	tk_slotmgr_free(&m);
}

/* The card changes just as its reader enters quarantine: the worker has
 * set the slot quarantined and logs "recovery failed; quarantined" before it
 * starts the quarantine's probes. The sink below makes the change right
 * there, in the worker's thread, and returns once the manager has seen it
 * (its CARD_REMOVED event; CARD_INSERTED for a replaced card): the window
 * that a loaded machine opens by chance, opened every time. */
static struct {
	pthread_mutex_t mtx;
	pthread_cond_t cond; /* default clock: CLOCK_REALTIME (abstime) */
	bool armed, replace;
	int want;  /* the event that shows the manager saw the change */
	bool seen; /* it came */
	bool done; /* the sink made the change and saw the event */
} qw = {.mtx = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER};

static void
qw_event(void *ctx, const tk_event_t *ev)
{
	(void)ctx;
	pthread_mutex_lock(&qw.mtx);
	if (ev->type == qw.want && strcmp(ev->reader, "Fake A") == 0) {
		qw.seen = true;
		pthread_cond_broadcast(&qw.cond);
	}
	pthread_mutex_unlock(&qw.mtx);
}

static void
qw_sink(void *ctx, int level, const char *msg)
{
	static const char *const names[] = {"none", "error", "warn", "info", "debug", "trace"};
	struct timespec dl;
	bool act;

	(void)ctx;
	fprintf(stderr, "tokenkit: %s: %s\n", names[level >= 0 && level <= 5 ? level : 5], msg);
	pthread_mutex_lock(&qw.mtx);
	act = qw.armed && strstr(msg, "Fake A: recovery failed; quarantined") != NULL;
	qw.armed = qw.armed && !act;
	pthread_mutex_unlock(&qw.mtx);
	if (!act)
		return;
	pthread_mutex_lock(&fk.mtx);
	fk.r[0].cure = CURE_NONE;
	if (qw.replace)
		fk.r[0].events++; /* another card (same ATR) */
	else
		fk.r[0].card = false;
	fake_changed_locked();
	pthread_mutex_unlock(&fk.mtx);
	/* Bounded: the log lock is held here, so nothing that the manager
	 * needs for the event may log (the test runs at warn level). */
	abstime(&dl, 5000);
	pthread_mutex_lock(&qw.mtx);
	while (!qw.seen)
		if (pthread_cond_timedwait(&qw.cond, &qw.mtx, &dl) == ETIMEDOUT)
			break;
	qw.done = qw.seen;
	pthread_mutex_unlock(&qw.mtx);
}

/* The recovery is the failed card's: it ends as removed (not cured by a
 * probe of the next card), and the next card is connected and works. */
static void
quarantine_entry_change(bool replace)
{
	tk_slotmgr_t *m = start(2000, 1000);
	tk_slot_diag_t d;
	uint32_t id;
	tk_card_t *c = card(m, "Fake A", &id);
	int level = tk_log_get_level(), sub;
	bool done;

	pthread_mutex_lock(&qw.mtx);
	qw.armed = true;
	qw.replace = replace;
	qw.want = replace ? TK_EVENT_CARD_INSERTED : TK_EVENT_CARD_REMOVED;
	qw.seen = qw.done = false;
	pthread_mutex_unlock(&qw.mtx);
	sub = tk_slotmgr_subscribe(m, qw_event, NULL, false);
	assert_true(sub > 0);
	tk_log_set_level(TK_LOG_WARN);
	tk_log_set_sink(qw_sink, NULL);
	fake_fault(0, CURE_NEVER, TK_ERR_COMM, 0);
	assert_int_equal(xmit(c, gen_auth, sizeof(gen_auth), 1000), TK_ERR_COMM);
	wait_recoveries(m, id, 1, &d);
	tk_log_set_sink(NULL, NULL);
	tk_log_set_level(level);
	pthread_mutex_lock(&qw.mtx);
	done = qw.done;
	pthread_mutex_unlock(&qw.mtx);
	assert_true(done); /* the change was made inside the window */
	assert_int_equal(d.recoveries, 1);
	assert_int_equal(last(&d)->outcome, TK_ERR_CARD_REMOVED);
	assert_int_equal(last(&d)->cured_by, TK_STEP_NONE);
	assert_int_equal(xmit(c, gen_auth, sizeof(gen_auth), 1000), TK_ERR_CARD_REMOVED);
	tk_card_unref(&c);
	if (!replace) {
		assert_true(wait_state(m, id, TK_SLOT_EMPTY, 5000));
		pthread_mutex_lock(&fk.mtx);
		fk.r[0].card = true;
		fk.r[0].events++;
		fake_changed_locked();
		pthread_mutex_unlock(&fk.mtx);
	}
	c = card(m, "Fake A", &id);
	assert_int_equal(xmit(c, gen_auth, sizeof(gen_auth), 1000), TK_OK);
	assert_int_equal(tk_slotmgr_diag(m, id, &d), TK_OK);
	assert_int_equal(d.recoveries, 1);
	tk_card_unref(&c);
	tk_slotmgr_unsubscribe(m, sub);
	tk_slotmgr_free(&m);
}

static void
test_removal_entering_quarantine(void **state)
{
	(void)state;
	quarantine_entry_change(false);
}

static void
test_replaced_entering_quarantine(void **state)
{
	(void)state;
	quarantine_entry_change(true);
}

/* A recovery step that never returns: the watchdog abandons the worker and
 * quarantines the reader; callers get answers by their deadline; when the
 * call returns the ladder goes on and the reader is valid again. */
static void
test_stuck_step_deadlines(void **state)
{
	tk_slotmgr_t *m = start(2000, 300);
	tk_slot_diag_t d;
	uint32_t id, idb;
	tk_card_t *c = card(m, "Fake A", &id), *cb = card(m, "Fake B", &idb);
	int64_t t0;

	(void)state;
	fake_set(&fk.r[0].stall_reset, true);
	fake_fault(0, CURE_WARM, TK_ERR_COMM, 0);
	assert_int_equal(xmit(c, gen_auth, sizeof(gen_auth), 1000), TK_ERR_COMM);
	wait_stuck(1); /* reconnect (a reset with "leave") is stuck */
	assert_true(wait_state(m, id, TK_SLOT_QUARANTINED, 300 + 2000));
	for (int k = 0; k < 5; k++) {
		t0 = now_ms();
		int r = xmit(c, get_data, sizeof(get_data), 200);
		assert_true(r == TK_ERR_QUARANTINED || r == TK_ERR_UNRESPONSIVE);
		assert_true(now_ms() - t0 < 200 + 1000);
		assert_int_equal(xmit(cb, get_data, sizeof(get_data), 1000), TK_OK);
	}
	assert_int_equal(tk_slotmgr_diag(m, id, &d), TK_OK);
	assert_true(d.stuck);
	assert_int_equal(d.abandoned_workers, 1);
	assert_int_equal(tk_slotmgr_reset(m, id, false, 500, NULL), TK_ERR_UNRESPONSIVE);

	fake_set(&fk.r[0].stall_reset, false);
	assert_true(wait_state(m, id, TK_SLOT_VALID, 5000));
	wait_recoveries(m, id, 1, &d);
	assert_int_equal(last(&d)->outcome, TK_OK);
	{
		bool saw_stuck = false;

		for (size_t i = 0; i < last(&d)->nsteps && i < TK_RECOVERY_MAX_STEPS; i++)
			saw_stuck |= last(&d)->steps[i].step == TK_STEP_STUCK;
		assert_true(saw_stuck);
	}
	assert_false(d.stuck);
	assert_int_equal(xmit(c, get_data, sizeof(get_data), 1000), TK_OK);
	tk_card_unref(&c);
	tk_card_unref(&cb);
	tk_slotmgr_free(&m);
	wait_unstuck();
}

/* A transmit that never returns: the caller's deadline, then quarantine
 * until it returns. */
static void
test_stuck_transmit_deadline(void **state)
{
	tk_slotmgr_t *m = start(2000, 1000);
	tk_slot_diag_t d;
	uint32_t id;
	tk_card_t *c = card(m, "Fake A", &id);
	int64_t t0;

	(void)state;
	fake_set(&fk.r[0].stall_transmit, true);
	t0 = now_ms();
	assert_int_equal(xmit(c, gen_auth, sizeof(gen_auth), 150), TK_ERR_TIMEOUT);
	assert_true(now_ms() - t0 < 150 + 1000);
	assert_true(wait_state(m, id, TK_SLOT_QUARANTINED, 2000));
	fake_set(&fk.r[0].stall_transmit, false);
	assert_true(wait_state(m, id, TK_SLOT_VALID, 5000));
	wait_recoveries(m, id, 1, &d);
	assert_int_equal(last(&d)->fault, TK_ERR_TIMEOUT);
	assert_string_equal(last(&d)->what, "deadline");
	assert_int_equal(last(&d)->steps[0].step, TK_STEP_STUCK);
	assert_int_equal(last(&d)->cured_by, TK_STEP_RECONNECT);
	assert_int_equal(d.timeouts, 1);
	/* GENERAL AUTHENTICATE went out once, and was not repeated. */
	assert_int_equal(fake_ins(0, 0x87), 1);
	tk_card_unref(&c);
	tk_slotmgr_free(&m);
}

static void
test_forced_reset_and_log(void **state)
{
	tk_slotmgr_t *m;
	tk_recovery_t rec;
	tk_slot_diag_t d;
	uint32_t id;
	tk_card_t *c;
	uint64_t gen;
	FILE *f;
	char line[TK_RECOVERY_LOG_LINE_MAX];
	int lines = 0, cold = 0;

	(void)state;
	unlink(log_path);
	m = start(2000, 1000);
	c = card(m, "Fake A", &id);
	gen = tk_card_generation(c);
	assert_int_equal(tk_slotmgr_reset(m, id, false, 0, &rec), TK_OK);
	assert_int_equal(rec.cured_by, TK_STEP_WARM_RESET);
	assert_string_equal(rec.what, "forced");
	assert_int_equal(tk_slotmgr_reset(m, id, true, 0, &rec), TK_OK);
	assert_int_equal(rec.cured_by, TK_STEP_COLD_RESET);
	assert_int_equal(fk.r[0].resets[TK_READER_COLD_RESET], 1);
	assert_true(tk_card_generation(c) >= gen + 2);
	assert_int_equal(xmit(c, get_data, sizeof(get_data), 1000), TK_OK);
	assert_int_equal(tk_slotmgr_diag(m, id, &d), TK_OK);
	assert_int_equal(d.nhistory, 2);
	assert_int_equal(d.recoveries, 2);
	tk_card_unref(&c);
	tk_slotmgr_free(&m);

	f = fopen(log_path, "r");
	assert_non_null(f);
	while (fgets(line, sizeof(line), f) != NULL) {
		tk_recovery_log_entry_t e;

		assert_int_equal(tk_recovery_log_parse_line(line, strlen(line), &e), TK_OK);
		assert_string_equal(e.reader, "Fake A");
		assert_int_equal(e.pid, getpid());
		assert_int_equal(e.rec.outcome, TK_OK);
		cold += e.rec.cured_by == TK_STEP_COLD_RESET;
		lines++;
	}
	fclose(f);
	assert_int_equal(lines, 2);
	assert_int_equal(cold, 1);
	unlink(log_path);
}

/* History is bounded; the newest records are kept. */
static void
test_history_bounded(void **state)
{
	tk_slotmgr_t *m = start(2000, 1000);
	tk_slot_diag_t d;
	uint32_t id;
	tk_card_t *c = card(m, "Fake A", &id);

	(void)state;
	for (int i = 0; i < TK_SLOT_DIAG_HISTORY + 3; i++)
		assert_int_equal(tk_slotmgr_reset(m, id, false, 0, NULL), TK_OK);
	assert_int_equal(tk_slotmgr_diag(m, id, &d), TK_OK);
	assert_int_equal(d.nhistory, TK_SLOT_DIAG_HISTORY);
	assert_int_equal(d.recoveries, TK_SLOT_DIAG_HISTORY + 3);
	assert_int_equal(d.history[TK_SLOT_DIAG_HISTORY - 1].id, TK_SLOT_DIAG_HISTORY + 3);
	assert_int_equal(d.history[0].id, 4);
	tk_card_unref(&c);
	tk_slotmgr_free(&m);
}

/* After a service restart the same card (reader, ATR) is taken back: the old
 * handle works, one generation on, and says it was re-bound; a different
 * card makes old handles fail with CARD_REMOVED. */
static void
test_service_restart_rebind(void **state)
{
	tk_slotmgr_t *m = start(2000, 1000);
	uint32_t id, idb, id2;
	tk_card_t *c = card(m, "Fake A", &id), *cb = card(m, "Fake B", &idb), *c2;
	uint64_t gen = tk_card_generation(c), seq = tk_card_seq(c);
	int r;

	(void)state;
	assert_true(seq != 0);
	fake_set(&fk.no_service, true);
	assert_true(wait_state(m, id, TK_SLOT_ABSENT, 5000));
	r = xmit(c, get_data, sizeof(get_data), 500);
	assert_true(r == TK_ERR_READER_GONE || r == TK_ERR_NO_SERVICE);
	assert_false(tk_card_present(c));
	/* B's card is swapped for another while the service is down. */
	memcpy(fk.r[1].atr, "\x3B\x80\x80\x01\x02", 5);
	fake_set(&fk.no_service, false);
	assert_true(wait_state(m, id, TK_SLOT_VALID, 5000));
	assert_int_equal(tk_slotmgr_find(m, "Fake A", &id2), TK_OK);
	assert_int_equal(id2, id);
	assert_true(tk_card_present(c));
	assert_int_equal(tk_card_seq(c), seq);
	assert_int_equal(tk_card_rebinds(c), 1);
	assert_true(tk_card_generation(c) > gen);
	assert_int_equal(xmit(c, get_data, sizeof(get_data), 1000), TK_OK);

	assert_true(wait_state(m, idb, TK_SLOT_VALID, 5000));
	assert_int_equal(xmit(cb, get_data, sizeof(get_data), 1000), TK_ERR_CARD_REMOVED);
	assert_int_equal(tk_card_rebinds(cb), 0);
	assert_int_equal(tk_slotmgr_card(m, idb, &c2), TK_OK);
	assert_int_equal(xmit(c2, get_data, sizeof(get_data), 1000), TK_OK);
	tk_card_unref(&c2);
	tk_card_unref(&c);
	tk_card_unref(&cb);
	tk_slotmgr_free(&m);
}

static int
setup_all(void **state)
{
	(void)state;
	snprintf(log_path, sizeof(log_path), "/tmp/tk-test-recovery-%d/recovery.jsonl",
	         (int)getpid());
	return 0;
}

/* ---- transport steps (USB readers) -------------------------------------- */

static tk_reader_ops_t usb_ops;

/* Reader A of a USB backend fails with a transport fault that `cure`
 * cures (busy: a USB reset would disturb another reader). The record's
 * steps are the retry of the read-only command, then want[] (and, when
 * the ladder ends in quarantine, the re-probes until the test cures the
 * fault); never a card-level reset or a new context. */
static void
usb_case(int cure, bool busy, const int *want, size_t nwant, bool quarantined)
{
	tk_slotmgr_t *m;
	tk_slot_diag_t d;
	uint32_t id, idb;
	tk_card_t *c, *cb;
	const tk_recovery_t *r;

	usb_ops = fake_ops;
	usb_ops.name = "fakeusb";
	usb_ops.fault_step = f_fault_step;
	usb_ops.recover = f_recover;
	start_ops = &usb_ops;
	m = start(2000, 1000);
	start_ops = &fake_ops;
	c = card(m, "Fake A", &id);
	cb = card(m, "Fake B", &idb);
	pthread_mutex_lock(&fk.mtx);
	fk.r[0].usb_fault = cure;
	fk.r[0].usb_busy = busy;
	pthread_mutex_unlock(&fk.mtx);
	assert_int_not_equal(xmit(c, get_data, sizeof(get_data), 1000), TK_OK);
	if (quarantined) {
		assert_true(wait_state(m, id, TK_SLOT_QUARANTINED, 5000));
		/* reader B goes on meanwhile */
		assert_int_equal(xmit(cb, get_data, sizeof(get_data), 1000), TK_OK);
		pthread_mutex_lock(&fk.mtx);
		fk.r[0].usb_fault = 0;
		fk.r[0].usb_busy = false;
		pthread_mutex_unlock(&fk.mtx);
	}
	wait_recoveries(m, id, 1, &d);
	r = last(&d);
	assert_int_equal(r->outcome, TK_OK);
	assert_true(r->nsteps >= 1 + nwant);
	assert_int_equal(r->steps[0].step, TK_STEP_RETRY);
	for (size_t i = 0; i < nwant; i++)
		assert_int_equal(r->steps[1 + i].step, want[i]);
	for (size_t i = 0; i < r->nsteps && i < TK_RECOVERY_MAX_STEPS; i++) {
		assert_int_not_equal(r->steps[i].step, TK_STEP_CONTEXT);
		assert_int_not_equal(r->steps[i].step, TK_STEP_WARM_RESET);
	}
	if (quarantined) {
		assert_int_equal(r->steps[nwant].result, TK_ERR_BUSY);
		assert_int_equal(r->cured_by, TK_STEP_PROBE);
	} else {
		assert_int_equal(r->nsteps, 1 + nwant);
		assert_int_equal(r->cured_by, want[nwant - 1]);
		assert_int_equal(d.step_ok[want[nwant - 1]], 1);
		assert_int_equal(fk.r[0].resets[TK_READER_COLD_RESET], 0);
	}
	assert_true(wait_state(m, id, TK_SLOT_VALID, 2000));
	assert_int_equal(xmit(c, get_data, sizeof(get_data), 1000), TK_OK);
	pthread_mutex_lock(&fk.mtx);
	/* nothing happened to reader B */
	for (int k = 0; k < TK_STEP_COUNT; k++)
		assert_int_equal(fk.r[1].usb_steps[k], 0);
	pthread_mutex_unlock(&fk.mtx);
	assert_int_equal(xmit(cb, get_data, sizeof(get_data), 1000), TK_OK);
	assert_int_equal(tk_slotmgr_diag(m, idb, &d), TK_OK);
	assert_int_equal(d.recoveries, 0);
	tk_card_unref(&c);
	tk_card_unref(&cb);
	tk_slotmgr_free(&m);
}

static void
test_usb_stall_clear_halt(void **state)
{
	static const int want[] = {TK_STEP_CLEAR_HALT};

	(void)state;
	usb_case(TK_STEP_CLEAR_HALT, false, want, 1, false);
}

static void
test_usb_wedged_abort(void **state)
{
	static const int want[] = {TK_STEP_ABORT};

	(void)state;
	usb_case(TK_STEP_ABORT, false, want, 1, false);
}

static void
test_usb_wedged_reset(void **state)
{
	static const int want[] = {TK_STEP_ABORT, TK_STEP_USB_RESET};

	(void)state;
	usb_case(TK_STEP_USB_RESET, false, want, 2, false);
	/* the card lost its power with the reset: powered again by the
	 * reconnect that followed */
	assert_true(fk.r[0].resets[TK_READER_RECONNECT] >= 1);
}

static void
test_usb_reset_would_disturb(void **state)
{
	static const int want[] = {TK_STEP_ABORT, TK_STEP_USB_RESET};

	(void)state;
	/* another interface of the device is in use: no reset, the wedged
	 * reader alone is quarantined (and no new PC/SC-style context) */
	usb_case(TK_STEP_USB_RESET, true, want, 2, true);
}

static int
teardown_all(void **state)
{
	char dir[256];

	(void)state;
	unlink(log_path);
	snprintf(dir, sizeof(dir), "/tmp/tk-test-recovery-%d", (int)getpid());
	rmdir(dir);
	return 0;
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_read_only_table),
	        cmocka_unit_test(test_retry_cures_read_only),
	        cmocka_unit_test(test_state_changing_never_retried),
	        cmocka_unit_test(test_cured_by_reconnect),
	        cmocka_unit_test(test_cured_by_warm_reset),
	        cmocka_unit_test(test_cured_by_cold_reset),
	        cmocka_unit_test(test_cured_by_new_context),
	        cmocka_unit_test(test_quarantine_and_backoff),
	        cmocka_unit_test(test_quarantine_ends_on_removal),
	        cmocka_unit_test(test_removal_entering_quarantine),
	        cmocka_unit_test(test_replaced_entering_quarantine),
	        cmocka_unit_test(test_stuck_step_deadlines),
	        cmocka_unit_test(test_stuck_transmit_deadline),
	        cmocka_unit_test(test_forced_reset_and_log),
	        cmocka_unit_test(test_history_bounded),
	        cmocka_unit_test(test_service_restart_rebind),
	        cmocka_unit_test(test_usb_stall_clear_halt),
	        cmocka_unit_test(test_usb_wedged_abort),
	        cmocka_unit_test(test_usb_wedged_reset),
	        cmocka_unit_test(test_usb_reset_would_disturb),
	};

	return cmocka_run_group_tests(tests, setup_all, teardown_all);
}
