/* USB-level faults of the emulated reader against the CCID layer, through
 * the real libusb: each fault is seen for what it is (tk_ccid_last_fault),
 * and the recovery primitive meant for it cures it, as the reader's
 * counters show (ABORT requests, CLEAR_HALTs, resets, power cycles). A
 * primitive meant for another fault does not. Deadlines are short here
 * (cfx_fast: 400 ms per transfer). */
#include <pthread.h>

#include "ccid_fixture.h"

static const uint8_t version[] = {0x00, 0xFD, 0x00, 0x00, 0x00};
static const uint8_t chuid[] = {0x00, 0xCB, 0x3F, 0xFF, 0x05, 0x5C, 0x03, 0x5F, 0xC1, 0x02, 0x00};
static const uint8_t select_piv[] = {0x00, 0xA4, 0x04, 0x00, 0x09, 0xA0, 0x00, 0x00,
                                     0x03, 0x08, 0x00, 0x00, 0x10, 0x00, 0x00};

static struct cfx x;
static uint8_t resp[70000];
static size_t rn;

static int
setup(void **state)
{
	ccid_emu_dev_cfg_t cfg = {0};

	(void)state;
	cfg.iface[0].level = EMU_EXT_APDU;
	cfx_start(&x, &cfg);
	assert_int_equal(cfx_power(&x, 0, 0), 1);
	return 0;
}

static int
teardown(void **state)
{
	(void)state;
	cfx_stop(&x);
	return 0;
}

static int
xmit(const uint8_t *cmd, size_t len)
{
	return tk_ccid_transmit(cfx_slot(&x, 0, 0), cmd, len, resp, sizeof(resp), &rn);
}

static void
works(void)
{
	assert_int_equal(xmit(select_piv, sizeof(select_piv)), TK_OK);
	assert_int_equal(rn, 78);
	assert_int_equal(resp[76], 0x90);
	assert_int_equal(tk_ccid_last_fault(x.d[0]), TK_CCID_FAULT_NONE);
}

static void
test_stall_out(void **state)
{
	ccid_emu_faults_t f = {.stall_out = true};

	(void)state;
	works();
	cfx_fault(&x, 0, &f);
	assert_int_equal(xmit(version, sizeof(version)), TK_ERR_IO);
	assert_int_equal(tk_ccid_last_fault(x.d[0]), TK_CCID_FAULT_STALL);
	/* it stays halted until cleared */
	assert_int_equal(xmit(version, sizeof(version)), TK_ERR_IO);
	assert_int_equal(cfx_counts(&x, 0).clear_halt_out, 0);
	assert_int_equal(tk_ccid_clear_halt(x.d[0]), TK_OK);
	assert_int_equal(cfx_counts(&x, 0).clear_halt_out, 1);
	assert_int_equal(cfx_counts(&x, 0).clear_halt_in, 1);
	assert_int_equal(cfx_stats(&x, 0).clear_halts, 1);
	works();
}

static void
test_stall_in(void **state)
{
	ccid_emu_faults_t f = {.stall_in = true};

	(void)state;
	cfx_fault(&x, 0, &f);
	assert_int_equal(xmit(version, sizeof(version)), TK_ERR_IO);
	assert_int_equal(tk_ccid_last_fault(x.d[0]), TK_CCID_FAULT_STALL);
	assert_int_equal(tk_ccid_clear_halt(x.d[0]), TK_OK);
	assert_int_equal(cfx_counts(&x, 0).clear_halt_in, 1);
	/* the reply queued behind the halt is gone (drained or discarded),
	 * the next command gets its own */
	works();
	assert_int_equal(xmit(chuid, sizeof(chuid)), TK_OK);
	assert_int_equal(resp[0], 0x53);
}

static void
test_no_answer(void **state)
{
	ccid_emu_faults_t f = {.mute = 1};

	(void)state;
	cfx_fault(&x, 0, &f);
	assert_int_equal(xmit(version, sizeof(version)), TK_ERR_TIMEOUT);
	assert_int_equal(tk_ccid_last_fault(x.d[0]), TK_CCID_FAULT_TIMEOUT);
	assert_int_equal(cfx_counts(&x, 0).mute_dropped, 1);
	/* one command lost; the reader answers the next */
	works();
}

static void
test_garbage(void **state)
{
	ccid_emu_faults_t f = {.garbage = 1};

	(void)state;
	cfx_fault(&x, 0, &f);
	assert_int_equal(xmit(version, sizeof(version)), TK_ERR_COMM);
	assert_int_equal(tk_ccid_last_fault(x.d[0]), TK_CCID_FAULT_GARBAGE);
	assert_int_equal(cfx_stats(&x, 0).garbage, 1);
	works();
}

static void
test_wrong_sequence(void **state)
{
	ccid_emu_faults_t f = {.stale = 3};

	(void)state;
	/* a few late replies to earlier commands: skipped */
	cfx_fault(&x, 0, &f);
	works();
	assert_int_equal(cfx_counts(&x, 0).stale_sent, 3);
	assert_int_equal(cfx_stats(&x, 0).stale_frames, 3);
	/* more than the bound (16): given up */
	f.stale = 20;
	cfx_fault(&x, 0, &f);
	assert_int_equal(xmit(version, sizeof(version)), TK_ERR_COMM);
	assert_int_equal(tk_ccid_last_fault(x.d[0]), TK_CCID_FAULT_SEQUENCE);
	assert_int_equal(cfx_stats(&x, 0).stale_frames, 3 + 17);
	/* what is left in the pipe belongs to an old command */
	works();
}

static void
test_time_extensions(void **state)
{
	ccid_emu_faults_t f = {.time_ext = 5, .time_ext_ms = 30};
	tk_ccid_timeouts_t t;

	(void)state;
	/* What counts here is how many extensions were asked for and taken,
	 * not how soon the emulated reader sends them: the default waits (a
	 * whole-suite run on two loaded cores once kept a reply past the
	 * fixture's 400 ms, 2026-12-07) */
	tk_ccid_timeouts_default(&t);
	tk_ccid_set_timeouts(x.d[0], &t);
	cfx_fault(&x, 0, &f);
	works();
	assert_int_equal(cfx_stats(&x, 0).time_extensions, 5);
	assert_int_equal(cfx_counts(&x, 0).time_ext_sent, 5);
	/* beyond the bound */
	tk_ccid_timeouts_default(&t);
	t.read_ms = 400;
	t.max_time_ext = 2;
	tk_ccid_set_timeouts(x.d[0], &t);
	f.time_ext = 5;
	cfx_fault(&x, 0, &f);
	assert_int_equal(xmit(version, sizeof(version)), TK_ERR_TIMEOUT);
	assert_int_equal(cfx_stats(&x, 0).time_extensions, 5 + 3);
	tk_ccid_timeouts_default(&t); /* the extensions left, then the answer */
	tk_ccid_set_timeouts(x.d[0], &t);
	works();
}

static void
test_split_replies(void **state)
{
	ccid_emu_faults_t f = {.split = 7};

	(void)state;
	cfx_fault(&x, 0, &f);
	assert_int_equal(xmit(select_piv, sizeof(select_piv)), TK_OK);
	/* 10 + 78 bytes in pieces of 7: 13 transfers */
	assert_int_equal(rn, 78);
	assert_int_equal(cfx_stats(&x, 0).split_replies, 12);
	assert_int_equal(xmit(chuid, sizeof(chuid)), TK_OK);
	assert_int_equal(resp[rn - 2], 0x90);
}

static void
test_wedged_until_abort(void **state)
{
	ccid_emu_faults_t f = {.wedge_abort = true};

	(void)state;
	cfx_fault(&x, 0, &f);
	assert_int_equal(xmit(version, sizeof(version)), TK_ERR_TIMEOUT);
	/* CLEAR_HALT is not the cure for this one */
	assert_int_equal(tk_ccid_clear_halt(x.d[0]), TK_OK);
	assert_int_equal(xmit(version, sizeof(version)), TK_ERR_TIMEOUT);
	assert_int_equal(cfx_counts(&x, 0).abort_requests, 0);
	assert_int_equal(tk_ccid_abort(cfx_slot(&x, 0, 0)), TK_OK);
	assert_int_equal(cfx_counts(&x, 0).abort_requests, 1);
	assert_int_equal(cfx_counts(&x, 0).aborts_done, 1);
	assert_int_equal(cfx_counts(&x, 0).msgs[TK_CCID_PC_ABORT], 1);
	assert_int_equal(cfx_stats(&x, 0).aborts, 1);
	/* the card kept its power and state */
	works();
	assert_int_equal(cfx_counts(&x, 0).power_on, 1);
}

static void
test_wedged_until_reset(void **state)
{
	ccid_emu_faults_t f = {.wedge_reset = true};
	uint8_t atr[40];
	size_t n;
	int proto;

	(void)state;
	cfx_fault(&x, 0, &f);
	assert_int_equal(xmit(version, sizeof(version)), TK_ERR_TIMEOUT);
	/* ABORT is ignored too */
	assert_int_equal(tk_ccid_abort(cfx_slot(&x, 0, 0)), TK_ERR_TIMEOUT);
	assert_int_equal(cfx_counts(&x, 0).abort_requests, 1);
	assert_int_equal(cfx_counts(&x, 0).aborts_done, 0);
	assert_int_equal(tk_ccid_reset_device(x.d[0]), TK_OK);
	assert_int_equal(cfx_counts(&x, 0).resets, 1);
	assert_int_equal(cfx_stats(&x, 0).resets, 1);
	/* a USB reset takes the card's power */
	assert_int_equal(xmit(version, sizeof(version)), TK_ERR_STATE);
	assert_int_equal(tk_ccid_power_on(cfx_slot(&x, 0, 0), atr, sizeof(atr), &n, &proto), TK_OK);
	works();
}

static void
test_mute_card_power_cycle(void **state)
{
	ccid_emu_faults_t f = {.mute_card = true};
	uint8_t atr[40];
	size_t n;
	int proto;

	(void)state;
	cfx_fault(&x, 0, &f);
	assert_int_equal(xmit(version, sizeof(version)), TK_ERR_UNRESPONSIVE);
	/* the reader is fine: ABORT changes nothing */
	assert_int_equal(tk_ccid_abort(cfx_slot(&x, 0, 0)), TK_OK);
	assert_int_equal(xmit(version, sizeof(version)), TK_ERR_UNRESPONSIVE);
	assert_int_equal(tk_ccid_power_cycle(cfx_slot(&x, 0, 0), atr, sizeof(atr), &n, &proto),
	                 TK_OK);
	assert_int_equal(cfx_counts(&x, 0).power_off, 1);
	assert_int_equal(cfx_counts(&x, 0).power_on, 2);
	works();
}

static void
test_hardware_error(void **state)
{
	tk_ccid_intr_t ev;

	(void)state;
	assert_int_equal(tk_ccid_wait_event(x.d[0], 50, &ev), TK_ERR_TIMEOUT);
	ccid_emu_hw_error(x.dev, 0, 0, 0x01);
	assert_int_equal(tk_ccid_wait_event(x.d[0], 2000, &ev), TK_OK);
	assert_int_equal(ev.type, TK_CCID_RDR_HARDWARE_ERROR);
	assert_int_equal(ev.slot, 0);
	assert_int_equal(ev.code, 0x01);
}

static void
test_card_change(void **state)
{
	tk_ccid_slot_state_t st;
	ccid_emu_card_t card = emu_vcard(x.vc[0][0]);
	tk_ccid_intr_t ev;
	uint8_t atr[40];
	size_t n;
	int proto;

	(void)state;
	ccid_emu_remove_card(x.dev, 0, 0, true);
	assert_int_equal(tk_ccid_wait_event(x.d[0], 2000, &ev), TK_OK);
	assert_int_equal(ev.type, TK_CCID_RDR_NOTIFY_SLOT_CHANGE);
	assert_int_equal(ev.present, 0);
	assert_int_equal(ev.changed, 1);
	assert_int_equal(xmit(version, sizeof(version)), TK_ERR_NO_CARD);
	assert_int_equal(tk_ccid_slot_status(cfx_slot(&x, 0, 0), &st), TK_OK);
	assert_false(st.present);
	assert_int_equal(tk_ccid_power_on(cfx_slot(&x, 0, 0), atr, sizeof(atr), &n, &proto),
	                 TK_ERR_NO_CARD);
	ccid_emu_insert(x.dev, 0, 0, &card, true);
	assert_int_equal(tk_ccid_wait_event(x.d[0], 2000, &ev), TK_OK);
	assert_int_equal(ev.present, 1);
	assert_int_equal(ev.changed, 1);
	assert_int_equal(tk_ccid_slot_status(cfx_slot(&x, 0, 0), &st), TK_OK);
	assert_true(st.present);
	assert_false(st.active);
	assert_int_equal(cfx_power(&x, 0, 0), 1);
	works();
}

/* Events flow on their own pipe while APDUs go back and forth. */
struct waiter {
	tk_ccid_intr_t ev;
	int r;
};

static void *
wait_thread(void *arg)
{
	struct waiter *w = arg;

	w->r = tk_ccid_wait_event(x.d[0], 5000, &w->ev);
	return NULL;
}

static void
test_events_while_busy(void **state)
{
	struct waiter w = {.r = -1};
	pthread_t th;

	(void)state;
	assert_int_equal(pthread_create(&th, NULL, wait_thread, &w), 0);
	for (int i = 0; i < 20; i++) {
		works();
		if (i == 10)
			ccid_emu_hw_error(x.dev, 0, 0, 0x01);
	}
	assert_int_equal(pthread_join(th, NULL), 0);
	assert_int_equal(w.r, TK_OK);
	assert_int_equal(w.ev.type, TK_CCID_RDR_HARDWARE_ERROR);
}

static void
test_unplug_replug(void **state)
{
	unsigned bus, old, now;
	tk_ccid_intr_t ev;

	(void)state;
	ccid_emu_address(x.dev, &bus, &old);
	assert_int_equal(tk_ccid_info(x.d[0])->addr, old);
	ccid_emu_unplug(x.dev);
	assert_int_equal(xmit(version, sizeof(version)), TK_ERR_READER_GONE);
	assert_int_equal(tk_ccid_last_fault(x.d[0]), TK_CCID_FAULT_GONE);
	assert_int_equal(tk_ccid_wait_event(x.d[0], 200, &ev), TK_ERR_READER_GONE);
	/* not back yet: reopen gives up at its deadline */
	assert_int_equal(tk_ccid_reopen(x.d[0], 300), TK_ERR_READER_GONE);
	ccid_emu_replug(x.dev);
	ccid_emu_address(x.dev, &bus, &now);
	assert_int_not_equal(now, old);
	assert_int_equal(tk_ccid_reopen(x.d[0], 5000), TK_OK);
	assert_int_equal(tk_ccid_info(x.d[0])->addr, now);
	assert_int_equal(cfx_stats(&x, 0).reopens, 2);
	/* the slot starts unpowered */
	assert_int_equal(xmit(version, sizeof(version)), TK_ERR_STATE);
	assert_int_equal(cfx_power(&x, 0, 0), 1);
	works();
}

int
main(int argc, char **argv)
{
	/* clang-format off */
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_stall_out, setup, teardown),
		cmocka_unit_test_setup_teardown(test_stall_in, setup, teardown),
		cmocka_unit_test_setup_teardown(test_no_answer, setup, teardown),
		cmocka_unit_test_setup_teardown(test_garbage, setup, teardown),
		cmocka_unit_test_setup_teardown(test_wrong_sequence, setup, teardown),
		cmocka_unit_test_setup_teardown(test_time_extensions, setup, teardown),
		cmocka_unit_test_setup_teardown(test_split_replies, setup, teardown),
		cmocka_unit_test_setup_teardown(test_wedged_until_abort, setup, teardown),
		cmocka_unit_test_setup_teardown(test_wedged_until_reset, setup, teardown),
		cmocka_unit_test_setup_teardown(test_mute_card_power_cycle, setup, teardown),
		cmocka_unit_test_setup_teardown(test_hardware_error, setup, teardown),
		cmocka_unit_test_setup_teardown(test_card_change, setup, teardown),
		cmocka_unit_test_setup_teardown(test_events_while_busy, setup, teardown),
		cmocka_unit_test_setup_teardown(test_unplug_replug, setup, teardown),
	};
	/* clang-format on */
	int r;

	cfx_main(argc, argv);
	r = cmocka_run_group_tests(tests, NULL, NULL);
	cfx_main_end();
	return r;
}
