/* Unit tests for the in-process virtual reader (tools/vcard/vreader.c)
 * under the real slot manager and recovery ladder: reader specs, a card that
 * answers, and the faults a real pcscd with vpcd cannot produce: a mute card
 * cured by a warm reset, a "mute until power cycle" card cured only by the
 * cold reset, an empty answer, a card gone mid-APDU that comes back, a
 * stalled card released later, a card reset by "another program", and a
 * manager freed while a worker is held inside the reader (no thread left).
 * The backend is registered directly (tk_reader_backend_register), as a
 * program that links the virtual card may; processes get it as a plugin. */
#include <dirent.h>
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
#include <tokenkit/slot.h>

#include "../proc_count.h"
#include "control.h"
#include "slot_wait.h"
#include "vreader.h"

static char dir[64], ctl[2][128], spec[512];

static int
setup(void **state)
{
	/* The backend linked in (tkvcard), not the plugin: this program
	 * tests the reader, test_plugin.c the loader. */
	if (tk_reader_backend_register(&tk_reader_vcard_ops) != TK_OK)
		return -1;
	snprintf(dir, sizeof(dir), "/tmp/tk-vreader-XXXXXX");
	assert_non_null(mkdtemp(dir));
	for (int i = 0; i < 2; i++)
		snprintf(ctl[i], sizeof(ctl[i]), "%s/ctl%d", dir, i);
	/* reader 0: the faulty card (state on disk); reader 1: a healthy one */
	snprintf(spec, sizeof(spec), "vcard:state=%s/a.state,control=%s,bwt=200;control=%s", dir,
	         ctl[0], ctl[1]);
	return 0;
}

static int
teardown(void **state)
{
	char p[200];

	/* the card's state file and the lock file beside it */
	snprintf(p, sizeof(p), "%s/a.state", dir);
	unlink(p);
	snprintf(p, sizeof(p), "%s/a.state.lock", dir);
	unlink(p);
	rmdir(dir);
	return 0;
}

static void
control(int i, const char *cmd)
{
	char reply[256];

	assert_int_equal(tk_vc_control_send(ctl[i], cmd, reply, sizeof(reply)), 0);
}

static tk_slotmgr_t *
start(const char *readers)
{
	tk_slotmgr_opts_t o;
	tk_slotmgr_t *m = NULL;

	tk_slotmgr_opts_init(&o);
	o.readers = readers;
	o.transmit_timeout_ms = 1500;
	o.backoff_min_ms = 50;
	o.backoff_max_ms = 200;
	o.recovery_log = "";
	assert_int_equal(tk_slotmgr_new(&o, &m), TK_OK);
	assert_int_equal(tk_slotmgr_wait_ready(m, 5000), TK_OK);
	return m;
}

static tk_card_t *
card(tk_slotmgr_t *m, int reader, uint32_t *id)
{
	char name[64];
	tk_card_t *c = NULL;

	snprintf(name, sizeof(name), "tokenkit virtual reader %d", reader);
	assert_int_equal(tk_slotmgr_find(m, name, id), TK_OK);
	assert_true(wait_state(m, *id, TK_SLOT_VALID, 5000));
	assert_int_equal(tk_slotmgr_card(m, *id, &c), TK_OK);
	return c;
}

/* SELECT the PIV application: read-only, answered 9000 by a working card. */
static const uint8_t select_piv[] = {0x00, 0xA4, 0x04, 0x00, 0x09, 0xA0, 0x00, 0x00,
                                     0x03, 0x08, 0x00, 0x00, 0x10, 0x00, 0x00};
/* GET DATA CHUID with VERIFY-free access, also read-only */
static const uint8_t get_chuid[] = {0x00, 0xCB, 0x3F, 0xFF, 0x05, 0x5C,
                                    0x03, 0x5F, 0xC1, 0x02, 0x00};
/* GENERAL AUTHENTICATE: changes state on a card, never repeated */
static const uint8_t gen_auth[] = {0x00, 0x87, 0x07, 0x9A, 0x04, 0x7C, 0x02, 0x81, 0x00, 0x00};

static int
xmit(tk_card_t *c, const uint8_t *cmd, size_t len, uint16_t *sw)
{
	uint8_t resp[4096];
	size_t n = 0;
	int r = tk_card_transmit(c, cmd, len, resp, sizeof(resp), &n, 0);

	*sw = r == TK_OK && n >= 2 ? (uint16_t)(resp[n - 2] << 8 | resp[n - 1]) : 0;
	return r;
}

/* The card works (again): a fresh session SELECTs PIV with 9000. */
static void
assert_works(tk_slotmgr_t *m, int reader)
{
	uint32_t id;
	uint16_t sw;
	tk_card_t *c = card(m, reader, &id);

	assert_int_equal(xmit(c, select_piv, sizeof(select_piv), &sw), TK_OK);
	assert_int_equal(sw, 0x9000);
	tk_card_unref(&c);
}

static const tk_recovery_t *
wait_recovery(tk_slotmgr_t *m, uint32_t id, uint64_t n, tk_slot_diag_t *d)
{
	int64_t end = now_ms() + 10000;

	do {
		assert_int_equal(tk_slotmgr_diag(m, id, d), TK_OK);
		if (d->recoveries + d->recoveries_failed >= n && d->nhistory > 0 &&
		    d->info.state == TK_SLOT_VALID)
			return &d->history[d->nhistory - 1];
		sleep_ms(10);
	} while (now_ms() < end);
	fail_msg("no finished recovery #%llu", (unsigned long long)n);
	return NULL;
}

static bool
tried(const tk_recovery_t *r, int step, int result)
{
	for (size_t i = 0; i < r->nsteps && i < TK_RECOVERY_MAX_STEPS; i++) {
		if (r->steps[i].step == step && r->steps[i].result == result)
			return true;
	}
	return false;
}

/* ---- tests --------------------------------------------------------------- */

static void
test_specs(void **state)
{
	static const char *const bad[] = {
	        "vcard:bogus",   "vcard:bwt=0",     "vcard:bwt=x",  "vcard:latency=warp",
	        "vcard:state=",  "vcard:;control=", "pcsc:options", "vcardx",
	        "vcard:empty=1", "nonsense",
	};
	tk_slotmgr_opts_t o;
	tk_slotmgr_t *m = NULL;
	tk_slot_info_t *infos = NULL;
	size_t n = 0;

	tk_slotmgr_opts_init(&o);
	o.recovery_log = "";
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		o.readers = bad[i];
		assert_int_equal(tk_slotmgr_new(&o, &m), TK_ERR_INVALID_ARG);
		assert_null(m);
	}
	/* "vcard" alone: one reader with a fresh card; "empty": no card */
	m = start("vcard:empty;latency=yubikey5");
	assert_int_equal(tk_slotmgr_list(m, &infos, &n), TK_OK);
	assert_int_equal(n, 2);
	assert_string_equal(infos[0].reader, "tokenkit virtual reader 0");
	assert_int_equal(infos[0].state, TK_SLOT_EMPTY);
	assert_string_equal(infos[1].reader, "tokenkit virtual reader 1");
	free(infos);
	assert_works(m, 1);
	tk_slotmgr_free(&m);
	m = start("vcard");
	assert_works(m, 0);
	tk_slotmgr_free(&m);
}

static void
test_mute_cured_by_warm_reset(void **state)
{
	tk_slotmgr_t *m = start(spec);
	tk_slot_diag_t d;
	const tk_recovery_t *rec;
	uint32_t id;
	uint16_t sw;
	tk_card_t *c = card(m, 0, &id);
	int r;

	control(0, "mute");
	r = xmit(c, select_piv, sizeof(select_piv), &sw);
	assert_true(r == TK_ERR_UNRESPONSIVE || r == TK_ERR_COMM);
	rec = wait_recovery(m, id, 1, &d);
	assert_int_equal(rec->outcome, TK_OK);
	assert_int_equal(rec->cured_by, TK_STEP_WARM_RESET);
	assert_true(tried(rec, TK_STEP_RECONNECT, TK_ERR_UNRESPONSIVE));
	/* the old session learns about the reset, then works */
	r = xmit(c, select_piv, sizeof(select_piv), &sw);
	if (r == TK_ERR_CARD_RESET)
		r = xmit(c, select_piv, sizeof(select_piv), &sw);
	assert_int_equal(r, TK_OK);
	assert_int_equal(sw, 0x9000);
	tk_card_unref(&c);
	tk_slotmgr_free(&m);
}

static void
test_mute_until_power_cycle(void **state)
{
	tk_slotmgr_t *m = start(spec);
	tk_slot_diag_t d;
	const tk_recovery_t *rec;
	uint32_t id, id1;
	uint16_t sw;
	tk_card_t *c = card(m, 0, &id), *b = card(m, 1, &id1);
	int r;

	assert_int_equal(xmit(c, select_piv, sizeof(select_piv), &sw), TK_OK);
	control(0, "mute=cold");
	/* a state-changing command: no retry, the caller gets the error */
	r = xmit(c, gen_auth, sizeof(gen_auth), &sw);
	assert_true(r == TK_ERR_UNRESPONSIVE || r == TK_ERR_COMM);
	/* the other reader is not touched by any of this */
	assert_int_equal(xmit(b, select_piv, sizeof(select_piv), &sw), TK_OK);
	assert_int_equal(sw, 0x9000);
	rec = wait_recovery(m, id, 1, &d);
	assert_int_equal(rec->outcome, TK_OK);
	assert_int_equal(rec->cured_by, TK_STEP_COLD_RESET);
	assert_true(tried(rec, TK_STEP_WARM_RESET, TK_ERR_UNRESPONSIVE));
	assert_int_equal(d.step_ok[TK_STEP_COLD_RESET], 1);
	tk_card_unref(&c);
	assert_works(m, 0);
	tk_card_unref(&b);
	tk_slotmgr_free(&m);
}

static void
test_empty_answer(void **state)
{
	tk_slotmgr_t *m = start(spec);
	tk_slot_diag_t d;
	uint32_t id;
	uint16_t sw;
	tk_card_t *c = card(m, 0, &id);

	/* one empty answer to a read-only command: retried transparently */
	assert_int_equal(xmit(c, select_piv, sizeof(select_piv), &sw), TK_OK);
	control(0, "empty count=1");
	assert_int_equal(xmit(c, get_chuid, sizeof(get_chuid), &sw), TK_OK);
	assert_int_equal(sw, 0x9000);
	assert_int_equal(tk_slotmgr_diag(m, id, &d), TK_OK);
	assert_int_equal(d.retried_ok, 1);
	/* to a state-changing one: an error, then the card works again */
	control(0, "empty count=1");
	assert_int_equal(xmit(c, gen_auth, sizeof(gen_auth), &sw), TK_ERR_COMM);
	(void)wait_recovery(m, id, 1, &d);
	tk_card_unref(&c);
	assert_works(m, 0);
	tk_slotmgr_free(&m);
}

static void
test_card_gone_mid_apdu(void **state)
{
	tk_slotmgr_t *m = start(spec);
	tk_slot_info_t before, after;
	uint32_t id;
	uint16_t sw;
	tk_card_t *c = card(m, 0, &id);
	int64_t end;

	assert_int_equal(tk_slotmgr_info(m, id, &before), TK_OK);
	control(0, "close=300 count=1");
	assert_int_equal(xmit(c, gen_auth, sizeof(gen_auth), &sw), TK_ERR_CARD_REMOVED);
	assert_false(tk_card_present(c));
	tk_card_unref(&c);
	/* back after 300 ms: a new insertion */
	end = now_ms() + 5000;
	while (tk_slotmgr_info(m, id, &after) == TK_OK &&
	       (after.card_seq == before.card_seq || after.state != TK_SLOT_VALID) &&
	       now_ms() < end)
		sleep_ms(10);
	assert_true(after.card_seq > before.card_seq);
	assert_works(m, 0);
	control(0, "remove");
	assert_true(wait_state(m, id, TK_SLOT_EMPTY, 5000));
	control(0, "insert");
	assert_works(m, 0);
	tk_slotmgr_free(&m);
}

static void
test_stall_released(void **state)
{
	tk_slotmgr_t *m = start(spec);
	tk_slot_diag_t d;
	uint32_t id, id1;
	uint16_t sw;
	tk_card_t *c = card(m, 0, &id), *b = card(m, 1, &id1);
	int r;

	control(0, "stall");
	/* the caller gets its answer by the deadline (1.5 s); the worker is
	 * held inside the reader and abandoned */
	r = xmit(c, gen_auth, sizeof(gen_auth), &sw);
	assert_true(r == TK_ERR_UNRESPONSIVE || r == TK_ERR_TIMEOUT);
	assert_int_equal(xmit(b, select_piv, sizeof(select_piv), &sw), TK_OK);
	assert_int_equal(tk_slotmgr_diag(m, id, &d), TK_OK);
	assert_true(d.stuck);
	assert_int_equal(d.info.state, TK_SLOT_QUARANTINED);
	control(0, "none"); /* the held APDU is answered, the worker returns */
	(void)wait_recovery(m, id, 1, &d);
	assert_false(d.stuck);
	tk_card_unref(&c);
	assert_works(m, 0);
	tk_card_unref(&b);
	tk_slotmgr_free(&m);
}

static void
test_reset_by_another_program(void **state)
{
	tk_slotmgr_t *m = start(spec);
	uint32_t id;
	uint16_t sw;
	tk_card_t *c = card(m, 0, &id);
	uint64_t gen = tk_card_generation(c);

	assert_int_equal(xmit(c, select_piv, sizeof(select_piv), &sw), TK_OK);
	control(0, "reset");
	assert_int_equal(xmit(c, select_piv, sizeof(select_piv), &sw), TK_ERR_CARD_RESET);
	assert_true(tk_card_generation(c) > gen);
	assert_int_equal(xmit(c, select_piv, sizeof(select_piv), &sw), TK_OK);
	assert_int_equal(sw, 0x9000);
	tk_card_unref(&c);
	tk_slotmgr_free(&m);
}

static void
test_free_while_held(void **state)
{
	int t0 = tk_test_threads();
	tk_slotmgr_t *m = start(spec);
	uint32_t id;
	uint16_t sw;
	tk_card_t *c = card(m, 0, &id);
	int64_t end;

	control(0, "stall");
	(void)xmit(c, gen_auth, sizeof(gen_auth), &sw);
	tk_card_unref(&c);
	/* closing the backend releases the held transmit: no thread is left */
	tk_slotmgr_free(&m);
	end = now_ms() + 5000;
	while (tk_test_threads() != t0 && now_ms() < end)
		sleep_ms(10);
	assert_int_equal(tk_test_threads(), t0);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_specs),
	        cmocka_unit_test(test_mute_cured_by_warm_reset),
	        cmocka_unit_test(test_mute_until_power_cycle),
	        cmocka_unit_test(test_empty_answer),
	        cmocka_unit_test(test_card_gone_mid_apdu),
	        cmocka_unit_test(test_stall_released),
	        cmocka_unit_test(test_reset_by_another_program),
	        cmocka_unit_test(test_free_while_held),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
