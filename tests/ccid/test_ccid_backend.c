/* The CCID reader backend (ccid/backend.c) in the slot manager, through the
 * real libusb against the emulated reader (umockdev):
 * - readers per interface and slot, with their backend, exchange level and
 *   slot count; names and slot ids that survive an unplug and replug;
 * - card insertion and removal from the interrupt pipe (NotifySlotChange),
 *   a hardware error, plug and unplug from libusb's hotplug, as events;
 * - the recovery ladder's USB steps where the fault needs them, proven by
 *   the reader's counters: CLEAR_HALT for a halted pipe, ABORT for a wedged
 *   reader, a USB reset when ABORT is ignored too, and no USB reset of a
 *   composite device whose other interface is in use (that reader alone is
 *   quarantined); meanwhile the other interface or reader keeps its pace;
 * - the PIN pad: the token logs in with the PIN typed on the pad (the PIV
 *   driver's VERIFY through PC_to_RDR_Secure), wrong PIN, cancel, timeout;
 * - a reader another program holds is left alone and named once.
 * Deadlines are short (the backend's read_ms=400). */
#include <pthread.h>
#include <setjmp.h>
#include <stdatomic.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include <tokenkit/err.h>
#include <tokenkit/log.h>
#include <tokenkit/slot.h>
#include <tokenkit/token.h>

#include "backend.h"
#include "ccid.h"
#include "clock.h"
#include "emu_vcard.h"

#define SPEC "ccid:read_ms=400"

static ccid_emu_t *emu;
static unsigned serial_no;

/* One emulated device with virtual PIV cards in its slots. */
struct dev {
	ccid_emu_dev_t *d;
	ccid_emu_dev_cfg_t cfg;
	char serial[16];
	tk_vcard_t *vc[2][2];
};

static void
dev_add(struct dev *x, unsigned ifaces, unsigned slots, enum ccid_emu_level level, uint8_t pin)
{
	memset(x, 0, sizeof(*x));
	snprintf(x->serial, sizeof(x->serial), "B%04u", ++serial_no);
	x->cfg.vid = 0x04E6;
	x->cfg.pid = 0x5116;
	x->cfg.release = 0x0520;
	x->cfg.serial = x->serial;
	x->cfg.ninterfaces = ifaces;
	for (unsigned i = 0; i < ifaces; i++) {
		x->cfg.iface[i].level = level;
		x->cfg.iface[i].nslots = slots;
		x->cfg.iface[i].pin_support = pin;
	}
	x->d = ccid_emu_add(emu, &x->cfg);
	assert_non_null(x->d);
	for (unsigned i = 0; i < ifaces; i++)
		for (unsigned s = 0; s < slots; s++) {
			ccid_emu_card_t card;

			assert_int_equal(tk_vcard_open(NULL, &x->vc[i][s]), 0);
			card = emu_vcard(x->vc[i][s]);
			ccid_emu_insert(x->d, i, s, &card, false);
		}
}

static void
dev_free(struct dev *x)
{
	ccid_emu_unplug(x->d);
	for (unsigned i = 0; i < 2; i++)
		for (unsigned s = 0; s < 2; s++)
			tk_vcard_free(&x->vc[i][s]);
}

static void
sleep_ms(int ms)
{
	struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};

	nanosleep(&ts, NULL);
}

/* ---- events and log lines ------------------------------------------------ */

#define EV_MAX 512
static struct {
	pthread_mutex_t mtx;
	int n;
	struct {
		int type;
		uint32_t slot;
		char backend[16];
		char reader[128];
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
		         ev->backend ? ev->backend : "");
		snprintf(evs.e[evs.n].reader, sizeof(evs.e[0].reader), "%s",
		         ev->reader ? ev->reader : "");
		evs.n++;
	}
	pthread_mutex_unlock(&evs.mtx);
}

/* Events of type for a reader whose name holds sub. */
static int
events(int type, const char *sub)
{
	int k = 0;

	pthread_mutex_lock(&evs.mtx);
	for (int i = 0; i < evs.n; i++)
		k += evs.e[i].type == type && strstr(evs.e[i].reader, sub) != NULL &&
		     strcmp(evs.e[i].backend, "ccid") == 0;
	pthread_mutex_unlock(&evs.mtx);
	return k;
}

static struct {
	pthread_mutex_t mtx;
	char text[8192];
} logs = {.mtx = PTHREAD_MUTEX_INITIALIZER};

static bool verbose; /* $TK_TEST_VERBOSE: the log on stderr too */

static void
log_sink(void *ctx, int level, const char *msg)
{
	(void)ctx, (void)level;
	if (verbose)
		fprintf(stderr, "%.3f %s\n", (double)tk_now_us() / 1e6, msg);
	pthread_mutex_lock(&logs.mtx);
	if (strlen(logs.text) + strlen(msg) + 2 < sizeof(logs.text)) {
		strcat(logs.text, msg);
		strcat(logs.text, "\n");
	}
	pthread_mutex_unlock(&logs.mtx);
}

static int
log_count(const char *sub)
{
	int k = 0;

	pthread_mutex_lock(&logs.mtx);
	for (const char *p = logs.text; (p = strstr(p, sub)) != NULL; p++)
		k++;
	pthread_mutex_unlock(&logs.mtx);
	return k;
}

/* ---- the manager ------------------------------------------------------------ */

/* The manager; recoveries go to the log file log ("": none). */
static tk_slotmgr_t *
mgr_start_log(const char *log)
{
	tk_slotmgr_opts_t o;
	tk_slotmgr_t *m = NULL;

	tk_slotmgr_opts_init(&o);
	o.readers = SPEC;
	o.transmit_timeout_ms = 3000;
	o.step_timeout_ms = 2500;
	o.backoff_min_ms = 100;
	o.backoff_max_ms = 400;
	o.recovery_log = log;
	assert_int_equal(tk_slotmgr_new(&o, &m), TK_OK);
	assert_int_equal(tk_slotmgr_wait_ready(m, 5000), TK_OK);
	return m;
}

static tk_slotmgr_t *
mgr_start(void)
{
	return mgr_start_log("");
}

/* The slot of the reader whose name holds both subs, in state (-1: any). */
static bool
wait_slot(tk_slotmgr_t *m, const char *sub, const char *sub2, int state, tk_slot_info_t *out)
{
	int64_t end = tk_now_ms() + 8000;

	do {
		tk_slot_info_t *in = NULL;
		size_t n = 0;
		bool ok = false;

		assert_int_equal(tk_slotmgr_list(m, &in, &n), TK_OK);
		for (size_t i = 0; i < n && !ok; i++) {
			ok = strstr(in[i].reader, sub) != NULL &&
			     strstr(in[i].reader, sub2) != NULL &&
			     (state < 0 || in[i].state == state);
			if (ok && out != NULL)
				*out = in[i];
		}
		free(in);
		if (ok)
			return true;
		sleep_ms(10);
	} while (tk_now_ms() < end);
	return false;
}

static tk_card_t *
card_of(tk_slotmgr_t *m, const char *serial, const char *where, uint32_t *id)
{
	tk_slot_info_t s;
	tk_card_t *c = NULL;

	assert_true(wait_slot(m, serial, where, TK_SLOT_VALID, &s));
	assert_int_equal(tk_slotmgr_card(m, s.slot_id, &c), TK_OK);
	if (id != NULL)
		*id = s.slot_id;
	return c;
}

static const uint8_t select_piv[] = {0x00, 0xA4, 0x04, 0x00, 0x09, 0xA0, 0x00, 0x00,
                                     0x03, 0x08, 0x00, 0x00, 0x10, 0x00, 0x00};

static int
xmit(tk_card_t *c)
{
	uint8_t resp[300];
	size_t n = 0;
	int r = tk_card_transmit(c, select_piv, sizeof(select_piv), resp, sizeof(resp), &n, 0);

	if (r == TK_OK && (n < 2 || resp[n - 2] != 0x90))
		r = TK_ERR_SW_UNKNOWN;
	return r;
}

/* How many recoveries of the slot have finished. */
static uint64_t
recoveries(tk_slotmgr_t *m, uint32_t id)
{
	tk_slot_diag_t *d = calloc(1, sizeof(*d));
	uint64_t n;

	assert_non_null(d);
	assert_int_equal(tk_slotmgr_diag(m, id, d), TK_OK);
	n = d->recoveries;
	free(d);
	return n;
}

/* Wait for the slot's n-th finished recovery; its record. */
static tk_recovery_t
recovery(tk_slotmgr_t *m, uint32_t id, uint64_t n)
{
	int64_t end = tk_now_ms() + 10000;
	tk_slot_diag_t *d = calloc(1, sizeof(*d));
	tk_recovery_t r;

	assert_non_null(d);
	for (;;) {
		assert_int_equal(tk_slotmgr_diag(m, id, d), TK_OK);
		if (d->recoveries >= n)
			break;
		if (tk_now_ms() > end)
			fail_msg("no recovery #%llu", (unsigned long long)n);
		sleep_ms(10);
	}
	r = d->history[d->nhistory - 1];
	free(d);
	return r;
}

static bool
has_step(const tk_recovery_t *r, int step)
{
	for (size_t i = 0; i < r->nsteps && i < TK_RECOVERY_MAX_STEPS; i++)
		if (r->steps[i].step == step)
			return true;
	return false;
}

/* ---- the other reader's pace while one is in trouble ------------------------ */

/* What a stalled neighbour looks like. The figure (the neighbour's pace
 * during the fault as a part of its pace before) is printed for
 * bench/ccid_neighbour.sh, where timing belongs: about 1 on a quiet
 * machine, 0.19 was seen with three sanitizer suites sharing two cores.
 * What is judged is an order of events that no load changes: while the
 * faulted interface sits in its first deadline wait (it has swallowed a
 * command, no ABORT has been asked for yet), the neighbour finishes
 * exchanges of its own. A neighbour serialised behind that wait (a lock
 * shared across the exchange) finishes at most the one it was in when the
 * wait began; the wait lasts most of a second, the neighbour's exchanges
 * take a few milliseconds (tens under load). */
#define NEIGHBOUR_MIN_IN_WAIT 3

struct pacer {
	tk_card_t *card;
	ccid_emu_dev_t *watch; /* the faulted reader */
	unsigned watch_iface;
	atomic_bool stop;
	atomic_uint done, failed;
	atomic_uint in_wait; /* done while the faulted one waits on its deadline */
	pthread_t t;
};

/* The faulted interface has swallowed a command and no ABORT was asked for:
 * its exchange waits for its deadline. */
static bool
in_deadline_wait(struct pacer *p)
{
	ccid_emu_counts_t c;

	if (p->watch == NULL)
		return false;
	ccid_emu_counts(p->watch, p->watch_iface, &c);
	return c.mute_dropped >= 1 && c.abort_requests == 0;
}

static void *
pacer_main(void *arg)
{
	struct pacer *p = arg;

	while (!atomic_load(&p->stop)) {
		if (xmit(p->card) != TK_OK) {
			atomic_fetch_add(&p->failed, 1);
			continue;
		}
		atomic_fetch_add(&p->done, 1);
		if (in_deadline_wait(p))
			atomic_fetch_add(&p->in_wait, 1);
	}
	return NULL;
}

static unsigned
count_during(struct pacer *p, int ms)
{
	unsigned a = atomic_load(&p->done);

	sleep_ms(ms);
	return atomic_load(&p->done) - a;
}

/* ---- tests -------------------------------------------------------------------- */

static void
test_readers_and_events(void **state)
{
	struct dev a, b;
	tk_slotmgr_t *m;
	tk_slot_info_t s0, s1, t0, again;
	ccid_emu_card_t card;
	int sub;

	(void)state;
	dev_add(&a, 1, 2, EMU_TPDU, 0);
	dev_add(&b, 2, 1, EMU_SHORT_APDU, 0);
	m = mgr_start();
	evs.n = 0;
	sub = tk_slotmgr_subscribe(m, on_event, NULL, false);
	assert_true(sub > 0);
	/* a two-slot reader is two readers; a composite device's interfaces
	 * are readers of their own */
	assert_true(wait_slot(m, a.serial, "if0 slot0]", TK_SLOT_VALID, &s0));
	assert_true(wait_slot(m, a.serial, "if0 slot1]", TK_SLOT_VALID, &s1));
	assert_true(wait_slot(m, b.serial, "if1 slot0]", TK_SLOT_VALID, &t0));
	assert_true(wait_slot(m, b.serial, "if0 slot0]", TK_SLOT_VALID, NULL));
	assert_string_equal(s0.backend, "ccid");
	assert_string_equal(s0.exchange, "TPDU");
	assert_int_equal(s0.reader_slots, 2);
	assert_string_equal(t0.exchange, "short APDU");
	assert_int_equal(t0.reader_slots, 1);
	assert_int_equal(s0.protocol, 1);
	assert_false(s0.pin_pad);
	assert_non_null(strstr(s0.reader, "tokenkit Emulated CCID Reader ("));
	assert_int_not_equal(s0.slot_id, s1.slot_id);

	/* a card out and in again, on the interrupt pipe */
	ccid_emu_remove_card(a.d, 0, 1, true);
	assert_true(wait_slot(m, a.serial, "slot1]", TK_SLOT_EMPTY, NULL));
	card = emu_vcard(a.vc[0][1]);
	ccid_emu_insert(a.d, 0, 1, &card, true);
	assert_true(wait_slot(m, a.serial, "slot1]", TK_SLOT_VALID, &again));
	assert_int_equal(again.slot_id, s1.slot_id);
	/* the other slot never noticed */
	assert_true(wait_slot(m, a.serial, "slot0]", TK_SLOT_VALID, &again));
	assert_int_equal(again.card_seq, s0.card_seq);

	/* a hardware error (overcurrent): the card's session is gone, it
	 * comes back as a new insertion */
	ccid_emu_hw_error(a.d, 0, 0, 0x01);
	for (int i = 0; i < 500 && again.card_seq == s0.card_seq; i++) {
		sleep_ms(10);
		assert_true(wait_slot(m, a.serial, "slot0]", -1, &again));
	}
	assert_int_not_equal(again.card_seq, s0.card_seq);
	assert_true(wait_slot(m, a.serial, "slot0]", TK_SLOT_VALID, NULL));

	/* unplugged and plugged into the same port: same names, same ids */
	ccid_emu_unplug(a.d);
	assert_true(wait_slot(m, a.serial, "slot0]", TK_SLOT_ABSENT, NULL));
	assert_true(wait_slot(m, a.serial, "slot1]", TK_SLOT_ABSENT, NULL));
	assert_true(wait_slot(m, b.serial, "if1 slot0]", TK_SLOT_VALID, NULL));
	ccid_emu_replug(a.d);
	assert_true(wait_slot(m, a.serial, "slot0]", TK_SLOT_VALID, &again));
	assert_int_equal(again.slot_id, s0.slot_id);
	assert_true(wait_slot(m, a.serial, "slot1]", TK_SLOT_VALID, &again));
	assert_int_equal(again.slot_id, s1.slot_id);

	assert_int_equal(tk_slotmgr_sync(m, 3000), TK_OK);
	assert_true(events(TK_EVENT_CARD_REMOVED, "slot1]") >= 2);
	assert_true(events(TK_EVENT_CARD_INSERTED, "slot1]") >= 2);
	assert_true(events(TK_EVENT_CARD_REMOVED, "slot0]") >= 2); /* error, unplug */
	assert_int_equal(events(TK_EVENT_READER_REMOVED, a.serial), 2);
	assert_int_equal(events(TK_EVENT_READER_ADDED, a.serial), 2);
	assert_int_equal(events(TK_EVENT_READER_REMOVED, b.serial), 0);
	tk_slotmgr_unsubscribe(m, sub);
	tk_slotmgr_free(&m);
	dev_free(&a);
	dev_free(&b);
}

/* One fault on one reader: the ladder, and what the reader saw. */
static tk_recovery_t
ladder(const ccid_emu_faults_t *f, struct dev *x, unsigned iface, tk_slotmgr_t *m,
       ccid_emu_counts_t *seen)
{
	char where[16];
	tk_recovery_t r;
	uint64_t done;
	uint32_t id;
	tk_card_t *c;

	snprintf(where, sizeof(where), "if%u slot0]", iface);
	c = card_of(m, x->serial, where, &id);
	assert_int_equal(xmit(c), TK_OK);
	/* the recovery this fault causes: a loaded machine may have had the
	 * slot recover from a late answer before (seen: a reconnect counted
	 * as the cure of the ABORT case) */
	done = recoveries(m, id);
	ccid_emu_reset_counts(x->d, iface);
	ccid_emu_set_faults(x->d, iface, f);
	assert_int_not_equal(xmit(c), TK_OK);
	r = recovery(m, id, done + 1);
	assert_int_equal(r.outcome, TK_OK);
	/* the same handle works once the recovery is over */
	assert_true(wait_slot(m, x->serial, where, TK_SLOT_VALID, NULL));
	assert_int_equal(xmit(c), TK_OK);
	ccid_emu_counts(x->d, iface, seen);
	tk_card_unref(&c);
	return r;
}

static void
test_ladder_clear_halt(void **state)
{
	ccid_emu_faults_t f = {.stall_out = true};
	ccid_emu_counts_t c;
	tk_recovery_t r;
	struct dev x;
	tk_slotmgr_t *m;

	(void)state;
	dev_add(&x, 1, 1, EMU_EXT_APDU, 0);
	m = mgr_start();
	r = ladder(&f, &x, 0, m, &c);
	assert_int_equal(r.cured_by, TK_STEP_CLEAR_HALT);
	assert_true(c.clear_halt_out >= 1);
	assert_int_equal(c.abort_requests, 0);
	assert_int_equal(c.resets, 0);
	assert_int_equal(c.power_off, 0); /* the card kept its power */
	assert_false(has_step(&r, TK_STEP_COLD_RESET));
	tk_slotmgr_free(&m);
	dev_free(&x);
}

static void
test_ladder_abort(void **state)
{
	ccid_emu_faults_t f = {.wedge_abort = true};
	ccid_emu_counts_t c;
	tk_recovery_t r;
	struct dev x;
	tk_slotmgr_t *m;

	(void)state;
	dev_add(&x, 1, 1, EMU_TPDU, 0);
	m = mgr_start();
	r = ladder(&f, &x, 0, m, &c);
	assert_int_equal(r.cured_by, TK_STEP_ABORT);
	assert_int_equal(c.abort_requests, 1);
	assert_int_equal(c.aborts_done, 1);
	assert_int_equal(c.resets, 0);
	assert_int_equal(c.power_off, 0);
	assert_false(has_step(&r, TK_STEP_RECONNECT));
	tk_slotmgr_free(&m);
	dev_free(&x);
}

/* What `tokenkit diag` shows of it, from another process: the recovery
 * log names the USB-level steps (ABORT, then the USB reset that cured it). */
static void
test_diag_shows_usb_steps(void **state)
{
	ccid_emu_faults_t f = {.wedge_reset = true};
	const char *build = getenv("TK_BUILD"), *tmp = getenv("TMPDIR");
	char log[512], cmd[2048], line[512], out[8192] = "";
	ccid_emu_counts_t c;
	tk_recovery_t r;
	struct dev x;
	tk_slotmgr_t *m;
	size_t used = 0;
	FILE *p;

	(void)state;
	if (build == NULL)
		skip();
	snprintf(log, sizeof(log), "%s/diag-%d.jsonl", tmp != NULL ? tmp : "/tmp", (int)getpid());
	unlink(log);
	dev_add(&x, 1, 1, EMU_TPDU, 0);
	m = mgr_start_log(log);
	r = ladder(&f, &x, 0, m, &c);
	assert_int_equal(r.cured_by, TK_STEP_USB_RESET);
	tk_slotmgr_free(&m);
	/* another process: no pcscd, the emulated reader through the ccid
	 * backend (umockdev's preload is inherited) */
	snprintf(cmd, sizeof(cmd),
	         "TOKENKIT_RECOVERY_LOG='%s' PCSCLITE_CSOCK_NAME=/nonexistent "
	         "TOKENKIT_READERS=ccid TOKENKIT_PLUGIN_PATH='%s/plugins' "
	         "timeout 30 '%s/tokenkit' diag 2>&1",
	         log, build, build);
	assert_non_null(p = popen(cmd, "r"));
	while (fgets(line, sizeof(line), p) != NULL && used + strlen(line) < sizeof(out)) {
		memcpy(out + used, line, strlen(line) + 1);
		used += strlen(line);
	}
	pclose(p);
	unlink(log);
	dev_free(&x);
	if (verbose)
		print_message("%s", out);
	/* the cure and the step before it, by their names in the log */
	if (strstr(out, "usb-reset ok") == NULL || strstr(out, "abort") == NULL ||
	    strstr(out, "cured by usb-reset") == NULL)
		fail_msg("tokenkit diag does not show the USB steps:\n%s", out);
}

/* Wedged until a USB reset, next to another reader (a device of its own)
 * that is used all along: the reset is made, the other reader keeps its
 * pace. */
static void
test_ladder_usb_reset(void **state)
{
	ccid_emu_faults_t f = {.wedge_reset = true};
	ccid_emu_counts_t c, cb;
	static struct pacer p; /* (a check that fails while it runs leaves this frame) */
	unsigned before, during;
	int64_t t0, t1;
	tk_recovery_t r;
	struct dev x, y;
	tk_slotmgr_t *m;
	double ratio;

	(void)state;
	memset(&p, 0, sizeof(p));
	dev_add(&x, 1, 1, EMU_EXT_APDU, 0);
	dev_add(&y, 1, 1, EMU_EXT_APDU, 0);
	m = mgr_start();
	p.card = card_of(m, y.serial, "slot0]", NULL);
	p.watch = x.d;
	assert_int_equal(pthread_create(&p.t, NULL, pacer_main, &p), 0);
	before = count_during(&p, 1500);
	ccid_emu_reset_counts(y.d, 0);
	t0 = tk_now_us();
	during = atomic_load(&p.done);
	r = ladder(&f, &x, 0, m, &c);
	during = atomic_load(&p.done) - during;
	t1 = tk_now_us();
	/* stopped before the checks of what it saw */
	atomic_store(&p.stop, true);
	pthread_join(p.t, NULL);
	ratio = before > 0 ? (double)during / ((double)(t1 - t0) / 1.5e6) / before : 0;
	print_message("the other reader: %u APDUs in 1.5 s before, %u in the %.2f s of the "
	              "fault and its recovery (ratio %.2f), %u during the first deadline wait\n",
	              before, during, (double)(t1 - t0) / 1e6, ratio, atomic_load(&p.in_wait));
	assert_true(before > 0);
	assert_true(atomic_load(&p.in_wait) >= NEIGHBOUR_MIN_IN_WAIT);
	assert_int_equal(r.cured_by, TK_STEP_USB_RESET);
	assert_true(has_step(&r, TK_STEP_ABORT));
	assert_int_equal(c.abort_requests, 1);
	assert_int_equal(c.aborts_done, 0);
	assert_int_equal(c.resets, 1);
	ccid_emu_counts(y.d, 0, &cb);
	assert_int_equal(cb.resets, 0);
	assert_int_equal(atomic_load(&p.failed), 0);
	tk_card_unref(&p.card);
	tk_slotmgr_free(&m);
	dev_free(&x);
	dev_free(&y);
}

/* A composite device whose interface 0 is wedged until a USB reset while
 * interface 1 is in use: no reset (it would power-cycle interface 1's
 * card), interface 0's reader alone is quarantined, and interface 1 keeps
 * its pace meanwhile. */
static void
test_composite_quarantine(void **state)
{
	ccid_emu_faults_t f = {.wedge_reset = true}, none = {0};
	ccid_emu_counts_t c0, c1;
	static struct pacer p; /* (a check that fails while it runs leaves this frame) */
	unsigned before, during;
	tk_slot_info_t s;
	tk_slot_diag_t *d;
	const tk_recovery_t *last;
	struct dev x;
	tk_slotmgr_t *m;
	tk_card_t *c;
	uint64_t done;
	uint32_t id;
	double ratio;

	(void)state;
	memset(&p, 0, sizeof(p));
	dev_add(&x, 2, 1, EMU_EXT_APDU, 0);
	m = mgr_start();
	p.card = card_of(m, x.serial, "if1 slot0]", NULL);
	p.watch = x.d;
	p.watch_iface = 0;
	c = card_of(m, x.serial, "if0 slot0]", &id);
	assert_int_equal(pthread_create(&p.t, NULL, pacer_main, &p), 0);
	before = count_during(&p, 2000);
	done = recoveries(m, id);
	ccid_emu_reset_counts(x.d, 0);
	ccid_emu_reset_counts(x.d, 1);
	ccid_emu_set_faults(x.d, 0, &f);
	assert_int_not_equal(xmit(c), TK_OK);
	/* interface 1's pace while interface 0 is recovered and re-probed */
	during = count_during(&p, 2000);
	assert_true(wait_slot(m, x.serial, "if0 slot0]", TK_SLOT_QUARANTINED, &s));
	/* stopped before the checks of what it saw */
	atomic_store(&p.stop, true);
	pthread_join(p.t, NULL);
	assert_int_equal(xmit(c), TK_ERR_QUARANTINED);
	ccid_emu_counts(x.d, 0, &c0);
	ccid_emu_counts(x.d, 1, &c1);
	assert_true(c0.abort_requests >= 1);
	assert_int_equal(c0.resets, 0);
	assert_int_equal(c1.resets, 0);
	assert_true(log_count("no USB reset") >= 1);
	assert_int_equal(atomic_load(&p.failed), 0);
	ratio = before > 0 ? (double)during / before : 0;
	print_message("interface 1: %u APDUs in 2 s before, %u during the fault (ratio %.2f), "
	              "%u during interface 0's first deadline wait\n",
	              before, during, ratio, atomic_load(&p.in_wait));
	assert_true(before > 0);
	assert_true(atomic_load(&p.in_wait) >= NEIGHBOUR_MIN_IN_WAIT);
	/* the fault cleared (a replug would do it): the re-probes cure it */
	ccid_emu_set_faults(x.d, 0, &none);
	assert_true(wait_slot(m, x.serial, "if0 slot0]", TK_SLOT_VALID, NULL));
	d = calloc(1, sizeof(*d));
	assert_int_equal(tk_slotmgr_diag(m, id, d), TK_OK);
	/* seen valid: the recovery that made it so is in the history (the
	 * fault's, the last one: a loaded machine may have had one before) */
	assert_true(d->nhistory >= 1 && d->recoveries > done);
	last = &d->history[d->nhistory - 1];
	assert_int_equal(last->cured_by, TK_STEP_PROBE);
	assert_true(has_step(last, TK_STEP_USB_RESET));
	assert_false(has_step(last, TK_STEP_CONTEXT));
	free(d);
	tk_card_unref(&c);
	tk_card_unref(&p.card);
	tk_slotmgr_free(&m);
	dev_free(&x);
}

static void
test_pinpad_login(void **state)
{
	tk_token_opts_t o;
	tk_token_info_t ti;
	tk_token_t *t = NULL;
	struct dev x, y;
	tk_slotmgr_t *m;
	tk_card_t *c;
	uint8_t apdu[64];
	size_t n;

	(void)state;
	dev_add(&x, 1, 1, EMU_EXT_APDU, TK_CCID_PIN_VERIFY | TK_CCID_PIN_MODIFY);
	dev_add(&y, 1, 1, EMU_EXT_APDU, 0);
	m = mgr_start();
	tk_token_opts_init(&o);
	o.cache_dir = "";

	/* a reader without a pad: no protected authentication path */
	c = card_of(m, y.serial, "slot0]", NULL);
	assert_int_equal(tk_token_open(c, &o, &t), TK_OK);
	assert_int_equal(tk_token_info(t, &ti), TK_OK);
	assert_false(ti.protected_auth_path);
	assert_int_equal(tk_token_login_pinpad(t, TK_USER_USER), TK_ERR_NOT_SUPPORTED);
	tk_token_free(&t);
	tk_card_unref(&c);

	c = card_of(m, x.serial, "slot0]", NULL);
	assert_int_equal(tk_token_open(c, &o, &t), TK_OK);
	assert_int_equal(tk_token_info(t, &ti), TK_OK);
	assert_true(ti.protected_auth_path);
	assert_false(ti.logged_in);
	/* a wrong PIN typed: a try spent, the counter told */
	ccid_emu_pin_input(x.d, 0, EMU_PIN_ENTER, "654321", NULL);
	assert_int_equal(tk_token_login_pinpad(t, TK_USER_USER), TK_ERR_PIN_INCORRECT);
	assert_int_equal(tk_token_info(t, &ti), TK_OK);
	assert_int_equal(ti.pin_retries, 2);
	/* cancel, nobody typing: the user's answers, no try spent */
	ccid_emu_pin_input(x.d, 0, EMU_PIN_CANCEL, NULL, NULL);
	assert_int_equal(tk_token_login_pinpad(t, TK_USER_USER), TK_ERR_CANCELLED);
	ccid_emu_pin_input(x.d, 0, EMU_PIN_TIMEOUT, NULL, NULL);
	assert_int_equal(tk_token_login_pinpad(t, TK_USER_USER), TK_ERR_TIMEOUT);
	assert_int_equal(tk_token_info(t, &ti), TK_OK);
	assert_false(ti.logged_in);
	assert_int_equal(ti.pin_retries, 2);
	/* the right one */
	ccid_emu_pin_input(x.d, 0, EMU_PIN_ENTER, "123456", NULL);
	assert_int_equal(tk_token_login_pinpad(t, TK_USER_USER), TK_OK);
	assert_int_equal(tk_token_info(t, &ti), TK_OK);
	assert_true(ti.logged_in);
	/* the counter is back at its maximum (asked after a logout) */
	assert_int_equal(tk_token_logout(t), TK_OK);
	assert_int_equal(tk_token_refresh_pin(t), TK_OK);
	assert_int_equal(tk_token_info(t, &ti), TK_OK);
	assert_int_equal(ti.pin_retries, 3);
	/* what reached the card: PIV VERIFY, the PIN in ASCII padded with FF */
	n = ccid_emu_last_pin_apdu(x.d, 0, apdu, sizeof(apdu));
	assert_int_equal(n, 13);
	assert_memory_equal(apdu,
	                    "\x00\x20\x00\x80\x08"
	                    "123456\xFF\xFF",
	                    13);
	/* the PUK has no VERIFY in PIV */
	assert_int_equal(tk_token_login_pinpad(t, TK_USER_SO), TK_ERR_INVALID_ARG);
	tk_token_free(&t);
	tk_card_unref(&c);
	tk_slotmgr_free(&m);
	dev_free(&x);
	dev_free(&y);
}

/* PIN change on the pad through the direct backend (PC_to_RDR_Secure,
 * PIN modification): the reader asks for the old PIN, the new one and its
 * confirmation; afterwards only the new PIN opens the card. A wrong old
 * PIN costs a try; a confirmation that differs, cancel and timeout change
 * nothing; a pad that verifies only is not asked. */
static void
test_pinpad_change(void **state)
{
	static const uint8_t pin_new[] = "87654321", pin_old[] = "123456";
	tk_token_opts_t o;
	tk_token_info_t ti;
	tk_token_t *t = NULL;
	ccid_emu_counts_t cn;
	struct dev x, y;
	tk_slotmgr_t *m;
	tk_card_t *c;
	uint8_t apdu[64];
	size_t n;

	(void)state;
	dev_add(&x, 1, 1, EMU_EXT_APDU, TK_CCID_PIN_VERIFY | TK_CCID_PIN_MODIFY);
	dev_add(&y, 1, 1, EMU_EXT_APDU, TK_CCID_PIN_VERIFY);
	m = mgr_start();
	tk_token_opts_init(&o);
	o.cache_dir = "";

	/* a pad that verifies only: no Secure sent for a change */
	c = card_of(m, y.serial, "slot0]", NULL);
	assert_int_equal(tk_token_open(c, &o, &t), TK_OK);
	assert_int_equal(tk_token_info(t, &ti), TK_OK);
	assert_true(ti.protected_auth_path);
	ccid_emu_pin_input(y.d, 0, EMU_PIN_ENTER, "123456", "87654321");
	assert_int_equal(tk_token_change_pin_pad(t, TK_USER_USER), TK_ERR_NOT_SUPPORTED);
	ccid_emu_counts(y.d, 0, &cn);
	assert_int_equal(cn.msgs[TK_CCID_PC_SECURE], 0);
	tk_token_free(&t);
	tk_card_unref(&c);

	c = card_of(m, x.serial, "slot0]", NULL);
	assert_int_equal(tk_token_open(c, &o, &t), TK_OK);
	/* 123456 -> 87654321 */
	ccid_emu_pin_input(x.d, 0, EMU_PIN_ENTER, "123456", "87654321");
	assert_int_equal(tk_token_change_pin_pad(t, TK_USER_USER), TK_OK);
	n = ccid_emu_last_pin_apdu(x.d, 0, apdu, sizeof(apdu));
	assert_int_equal(n, 21);
	assert_memory_equal(apdu,
	                    "\x00\x24\x00\x80\x10"
	                    "123456\xFF\xFF"
	                    "87654321",
	                    21);
	ccid_emu_counts(x.d, 0, &cn);
	assert_int_equal(cn.modify_secure, 1);
	assert_int_equal(cn.pin_entries, 3); /* old, new, new again */
	/* only the new PIN opens the card (typed: no pad involved) */
	assert_int_equal(tk_token_login(t, TK_USER_USER, pin_old, 6), TK_ERR_PIN_INCORRECT);
	assert_int_equal(tk_token_info(t, &ti), TK_OK);
	assert_int_equal(ti.pin_retries, 2);
	assert_int_equal(tk_token_login(t, TK_USER_USER, pin_new, 8), TK_OK);
	assert_int_equal(tk_token_logout(t), TK_OK);
	/* a wrong old PIN on the pad: a try spent, the count told */
	ccid_emu_pin_input(x.d, 0, EMU_PIN_ENTER, "111111", "22222222");
	assert_int_equal(tk_token_change_pin_pad(t, TK_USER_USER), TK_ERR_PIN_INCORRECT);
	assert_int_equal(tk_token_info(t, &ti), TK_OK);
	assert_int_equal(ti.pin_retries, 2);
	/* the confirmation differs, cancel, nobody typing: nothing changes */
	ccid_emu_pin_input(x.d, 0, EMU_PIN_ENTER, "87654321", "22222222");
	ccid_emu_pin_confirm(x.d, 0, "22222223");
	assert_int_equal(tk_token_change_pin_pad(t, TK_USER_USER), TK_ERR_CANCELLED);
	ccid_emu_pin_input(x.d, 0, EMU_PIN_CANCEL, NULL, NULL);
	assert_int_equal(tk_token_change_pin_pad(t, TK_USER_USER), TK_ERR_CANCELLED);
	ccid_emu_pin_input(x.d, 0, EMU_PIN_TIMEOUT, NULL, NULL);
	assert_int_equal(tk_token_change_pin_pad(t, TK_USER_USER), TK_ERR_TIMEOUT);
	assert_int_equal(tk_token_refresh_pin(t), TK_OK);
	assert_int_equal(tk_token_info(t, &ti), TK_OK);
	assert_int_equal(ti.pin_retries, 2);
	/* the new PIN on the pad logs in */
	ccid_emu_pin_input(x.d, 0, EMU_PIN_ENTER, "87654321", NULL);
	assert_int_equal(tk_token_login_pinpad(t, TK_USER_USER), TK_OK);
	tk_token_free(&t);
	tk_card_unref(&c);
	tk_slotmgr_free(&m);
	dev_free(&x);
	dev_free(&y);
}

static void
test_claimed_elsewhere(void **state)
{
	libusb_context *other = NULL;
	tk_ccid_found_t *f = NULL;
	tk_ccid_dev_t *held = NULL;
	struct dev x, y;
	tk_slotmgr_t *m;
	unsigned bus, devnum;
	size_t n = 0;
	int before;

	(void)state;
	dev_add(&x, 1, 1, EMU_EXT_APDU, 0);
	dev_add(&y, 1, 1, EMU_EXT_APDU, 0);
	/* another program (here another libusb context) holds x */
	assert_int_equal(libusb_init(&other), 0);
	ccid_emu_address(x.d, &bus, &devnum);
	for (int tries = 0; tries < 100 && held == NULL; tries++) {
		assert_int_equal(tk_ccid_scan(other, &f, &n), TK_OK);
		for (size_t i = 0; i < n; i++)
			if (f[i].bus == bus && f[i].addr == devnum)
				assert_int_equal(tk_ccid_open(other, &f[i], &held), TK_OK);
		free(f);
		f = NULL;
		if (held == NULL)
			sleep_ms(20);
	}
	assert_non_null(held);
	before = log_count("is in use by");
	m = mgr_start();
	assert_true(wait_slot(m, y.serial, "slot0]", TK_SLOT_VALID, NULL));
	/* x is not listed, and said so once, by name */
	{
		tk_slot_info_t *in = NULL;

		assert_int_equal(tk_slotmgr_list(m, &in, &n), TK_OK);
		for (size_t i = 0; i < n; i++)
			assert_null(strstr(in[i].reader, x.serial));
		free(in);
	}
	sleep_ms(1500); /* a few more scans */
	assert_int_equal(log_count("is in use by") - before, 1);
	assert_true(log_count(x.serial) >= 1);
	{
		ccid_emu_counts_t c;

		ccid_emu_counts(x.d, 0, &c);
		assert_int_equal(c.claims, 1); /* the other program's only */
	}
	tk_slotmgr_free(&m);
	tk_ccid_close(&held);
	libusb_exit(other);
	dev_free(&x);
	dev_free(&y);
}

int
main(int argc, char **argv)
{
	/* clang-format off */
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_readers_and_events),
		cmocka_unit_test(test_ladder_clear_halt),
		cmocka_unit_test(test_ladder_abort),
		cmocka_unit_test(test_ladder_usb_reset),
		cmocka_unit_test(test_composite_quarantine),
		cmocka_unit_test(test_pinpad_login),
		cmocka_unit_test(test_pinpad_change),
		cmocka_unit_test(test_claimed_elsewhere),
		/* last: the emulator keeps the claims of a process that has exited
		 * (as seen with pcscd), which would keep later tests from the readers */
		cmocka_unit_test(test_diag_shows_usb_steps),
	};
	/* clang-format on */
	int r;

	ccid_emu_reexec(argc, argv);
	emu = ccid_emu_new();
	if (emu == NULL)
		return 1;
	verbose = getenv("TK_TEST_VERBOSE") != NULL;
	tk_log_set_sink(log_sink, NULL);
	tk_log_set_level(verbose ? TK_LOG_TRACE : TK_LOG_INFO);
	assert_int_equal(tk_reader_backend_register(&tk_reader_ccid_ops), TK_OK);
	r = cmocka_run_group_tests(tests, NULL, NULL);
	ccid_emu_free(&emu);
	return r;
}
