/* Unit tests for the virtual card's fault-injection state (tools/vcard/fault.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include <tokenkit/err.h>

#include "fault.h"

static tk_fault_t *
fault(const char *spec)
{
	tk_fault_t *f = NULL;
	char err[128];

	assert_int_equal(tk_fault_new(&f), TK_OK);
	if (spec != NULL)
		assert_int_equal(tk_fault_apply(f, spec, err, sizeof(err)), TK_OK);
	return f;
}

static void
test_default_passes(void **state)
{
	tk_fault_t *f = fault(NULL);
	uint32_t delay = 99;

	assert_true(tk_fault_present(f));
	assert_int_equal(tk_fault_on_apdu(f, &delay), TK_FAULT_PASS);
	assert_int_equal(delay, 0);
	tk_fault_free(&f);
	assert_null(f);
	tk_fault_free(&f); /* NULL is fine */
}

static void
test_delay_and_count(void **state)
{
	tk_fault_t *f = fault("delay=250 count=2");
	uint32_t delay = 0;

	assert_int_equal(tk_fault_on_apdu(f, &delay), TK_FAULT_PASS);
	assert_int_equal(delay, 250);
	assert_int_equal(tk_fault_on_apdu(f, &delay), TK_FAULT_PASS);
	assert_int_equal(delay, 250);
	/* count exhausted: back to normal */
	assert_int_equal(tk_fault_on_apdu(f, &delay), TK_FAULT_PASS);
	assert_int_equal(delay, 0);
	tk_fault_free(&f);
}

static void
test_answers(void **state)
{
	static const struct {
		const char *spec;
		enum tk_fault_action action;
	} cases[] = {
	        {"garbage", TK_FAULT_GARBAGE}, {"short", TK_FAULT_SHORT}, {"empty", TK_FAULT_EMPTY},
	        {"close=10", TK_FAULT_CLOSE},  {"stall", TK_FAULT_HOLD},
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		tk_fault_t *f = fault(cases[i].spec);
		uint32_t delay;

		assert_int_equal(tk_fault_on_apdu(f, &delay), cases[i].action);
		tk_fault_free(&f);
	}
}

static void
test_close_away_time(void **state)
{
	tk_fault_t *f = fault("close=10");
	uint32_t delay;

	assert_int_equal(tk_fault_on_apdu(f, &delay), TK_FAULT_CLOSE);
	assert_int_equal(tk_fault_away_ms(f), 10);
	tk_fault_free(&f);
}

static void
test_stall_release(void **state)
{
	tk_fault_t *f = fault("stall");
	uint32_t delay;
	char err[64];

	assert_int_equal(tk_fault_on_apdu(f, &delay), TK_FAULT_HOLD);
	assert_true(tk_fault_holding(f));
	assert_false(tk_fault_release_ready(f));
	assert_int_equal(tk_fault_apply(f, "none", err, sizeof(err)), TK_OK);
	assert_true(tk_fault_release_ready(f));
	tk_fault_released(f);
	assert_false(tk_fault_holding(f));
	assert_int_equal(tk_fault_on_apdu(f, &delay), TK_FAULT_PASS);
	tk_fault_free(&f);
}

static void
test_mute_until_power(void **state)
{
	tk_fault_t *f = fault("mute");
	uint32_t delay;

	assert_int_equal(tk_fault_on_apdu(f, &delay), TK_FAULT_MUTE);
	/* the held APDU is dropped by the power cycle, which ends the fault */
	assert_true(tk_fault_on_power(f, false));
	assert_int_equal(tk_fault_on_apdu(f, &delay), TK_FAULT_PASS);
	tk_fault_free(&f);
}

static void
test_mute_cold_needs_power_cycle(void **state)
{
	tk_fault_t *f = fault("mute=cold");
	char err[64];
	uint32_t delay;

	assert_int_equal(tk_fault_on_apdu(f, &delay), TK_FAULT_MUTE);
	/* a warm reset does not wake it: the next APDU is held too */
	assert_false(tk_fault_on_power(f, false));
	assert_true(tk_fault_holding(f));
	assert_int_equal(tk_fault_on_apdu(f, &delay), TK_FAULT_MUTE);
	assert_true(tk_fault_on_power(f, true));
	assert_false(tk_fault_holding(f));
	assert_int_equal(tk_fault_on_apdu(f, &delay), TK_FAULT_PASS);
	/* "mute" takes no other value */
	assert_int_equal(tk_fault_apply(f, "mute=warm", err, sizeof(err)), TK_ERR_INVALID_ARG);
	assert_int_equal(tk_fault_on_apdu(f, &delay), TK_FAULT_PASS);
	tk_fault_free(&f);
}

static void
test_remove_insert(void **state)
{
	tk_fault_t *f = fault("remove");
	char err[64];

	assert_false(tk_fault_present(f));
	assert_int_equal(tk_fault_apply(f, "insert", err, sizeof(err)), TK_OK);
	assert_true(tk_fault_present(f));
	assert_int_equal(tk_fault_apply(f, "remove", err, sizeof(err)), TK_OK);
	assert_int_equal(tk_fault_apply(f, "none", err, sizeof(err)), TK_OK);
	assert_true(tk_fault_present(f));
	tk_fault_free(&f);
}

static void
test_bad_specs_leave_state(void **state)
{
	static const char *const bad[] = {
	        "bogus",  "delay=", "delay=abc", "count=-1", "delay=99999999999999999999",
	        "close=x"};
	tk_fault_t *f = fault("delay=5");

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		char err[128] = "";
		uint32_t delay = 0;

		assert_int_equal(tk_fault_apply(f, bad[i], err, sizeof(err)), TK_ERR_INVALID_ARG);
		assert_true(err[0] != '\0');
		/* the earlier fault is still in force */
		assert_int_equal(tk_fault_on_apdu(f, &delay), TK_FAULT_PASS);
		assert_int_equal(delay, 5);
	}
	tk_fault_free(&f);
}

static void
test_garbage_bytes(void **state)
{
	uint8_t buf[64];

	for (int i = 0; i < 50; i++) {
		size_t n = tk_fault_garbage(buf, sizeof(buf));

		assert_true(n >= 2 && n <= sizeof(buf));
	}
	assert_int_equal(tk_fault_garbage(buf, 2), 2);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_default_passes),
	        cmocka_unit_test(test_delay_and_count),
	        cmocka_unit_test(test_answers),
	        cmocka_unit_test(test_close_away_time),
	        cmocka_unit_test(test_stall_release),
	        cmocka_unit_test(test_mute_until_power),
	        cmocka_unit_test(test_mute_cold_needs_power_cycle),
	        cmocka_unit_test(test_remove_insert),
	        cmocka_unit_test(test_bad_specs_leave_state),
	        cmocka_unit_test(test_garbage_bytes),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
