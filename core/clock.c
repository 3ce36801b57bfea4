/* tokenkit: the monotonic clock (see clock.h). */
#include "clock.h"

int64_t
tk_now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

int64_t
tk_now_ms(void)
{
	return tk_now_us() / 1000;
}

void
tk_abstime_at_us(struct timespec *ts, int64_t at_us)
{
	if (at_us < 0)
		at_us = 0;
	ts->tv_sec = (time_t)(at_us / 1000000);
	ts->tv_nsec = (long)(at_us % 1000000) * 1000L;
}

void
tk_abstime_in_ms(struct timespec *ts, int64_t timeout_ms)
{
	tk_abstime_at_us(ts, tk_now_us() + (timeout_ms > 0 ? timeout_ms : 0) * 1000);
}

int
tk_cond_init_monotonic(pthread_cond_t *cond)
{
	pthread_condattr_t a;
	int r;

	pthread_condattr_init(&a);
	pthread_condattr_setclock(&a, CLOCK_MONOTONIC);
	r = pthread_cond_init(cond, &a);
	pthread_condattr_destroy(&a);
	return r;
}

int
tk_cond_wait_until_us(pthread_cond_t *cond, pthread_mutex_t *mtx, int64_t at_us)
{
	struct timespec ts;

	tk_abstime_at_us(&ts, at_us);
	return pthread_cond_timedwait(cond, mtx, &ts);
}
