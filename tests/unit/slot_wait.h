/* Small waits shared by the slot-manager unit tests (test_slotmgr.c,
 * test_recovery.c, test_vreader.c): a monotonic clock in ms, a sleep, and
 * a bounded poll for a slot state. Header-only so each test stays one
 * program. */
#ifndef TK_TEST_SLOT_WAIT_H
#define TK_TEST_SLOT_WAIT_H

#include <stdbool.h>
#include <stdint.h>
#include <time.h>

#include <tokenkit/err.h>
#include <tokenkit/slot.h>

static inline int64_t
now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static inline void
sleep_ms(int ms)
{
	struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};

	nanosleep(&ts, NULL);
}

/* Poll (bounded by ms) until the slot reaches state want. */
static inline bool
wait_state(tk_slotmgr_t *m, uint32_t id, int want, int ms)
{
	int64_t end = now_ms() + ms;
	tk_slot_info_t info;

	do {
		if (tk_slotmgr_info(m, id, &info) == TK_OK && info.state == want)
			return true;
		sleep_ms(5);
	} while (now_ms() < end);
	return false;
}

#endif
