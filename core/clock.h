/* tokenkit: the monotonic clock (private).
 *
 * Every deadline in tokenkit is CLOCK_MONOTONIC: wall-clock jumps (NTP, a
 * suspended laptop's clock set on resume) must not make a wait end early or
 * never. Condition variables that wait for deadlines are created with
 * tk_cond_init_monotonic so that pthread_cond_timedwait takes the same
 * clock. */
#ifndef TK_CLOCK_H
#define TK_CLOCK_H

#include <pthread.h>
#include <stdint.h>
#include <time.h>

/* Now, CLOCK_MONOTONIC. */
int64_t tk_now_us(void);
int64_t tk_now_ms(void);

/* The absolute CLOCK_MONOTONIC time at_us (from tk_now_us) as a timespec. */
void tk_abstime_at_us(struct timespec *ts, int64_t at_us);
/* Now + timeout_ms (negative counts as 0), as a timespec. */
void tk_abstime_in_ms(struct timespec *ts, int64_t timeout_ms);

/* A condition variable whose timed waits use CLOCK_MONOTONIC. */
int tk_cond_init_monotonic(pthread_cond_t *cond);
/* Wait on cond until signalled or the monotonic time at_us: the
 * pthread_cond_timedwait result (0 or ETIMEDOUT). */
int tk_cond_wait_until_us(pthread_cond_t *cond, pthread_mutex_t *mtx, int64_t at_us);

#endif
