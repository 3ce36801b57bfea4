/* A fake reader backend (tk_reader_ops_t) for the slot manager and recovery
 * unit tests: readers that come and go by name, cards that are inserted and
 * removed, a "service" that can be lost, cancellable change waits.
 *
 * The parts every fake needs live here; each test adds its own per-reader and
 * global fields and its own card behaviour. Before including, a test may
 * define:
 *   FAKE_NR              number of reader positions (default 4)
 *   FAKE_READER_FIELDS   extra members of each fk.r[i]
 *   FAKE_FIELDS          extra members of fk
 * and it must define the calls that differ between tests: f_connect,
 * f_transmit, f_reset, f_status, f_caps, f_disconnect (prototypes below).
 * fk.mtx guards all of fk; a change that wait_change must report bumps
 * fk.version under it (fake_changed_locked). */
#ifndef TK_TEST_FAKE_READER_H
#define TK_TEST_FAKE_READER_H

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <tokenkit/err.h>

#include "reader.h"
#include "slot_wait.h"

#ifndef FAKE_NR
#define FAKE_NR 4
#endif
#ifndef FAKE_READER_FIELDS
#define FAKE_READER_FIELDS
#endif
#ifndef FAKE_FIELDS
#define FAKE_FIELDS
#endif

#define FAKE_ATR "\x3B\x80\x80\x01\x01"
#define FAKE_ATR_LEN 5

static struct fake {
	pthread_mutex_t mtx;
	pthread_cond_t cond; /* default clock: CLOCK_REALTIME (abstime) */
	struct {
		char name[64];
		bool present, card;
		uint8_t atr[8]; /* reported while card */
		size_t atr_len;
		uint32_t events;
		FAKE_READER_FIELDS
	} r[FAKE_NR];
	bool no_service;
	unsigned version, seen_version;
	bool cancelled;
	FAKE_FIELDS
} fk = {.mtx = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER};

typedef struct fconn {
	int idx;     /* position in fk.r */
	unsigned id; /* connection number, for tests that count them */
} fconn_t;

/* The calls each test implements. */
static int f_connect(void *be, const char *reader, void **conn, uint8_t *atr, size_t *atr_len,
                     int *proto);
static int f_transmit(void *conn, const uint8_t *cmd, size_t cmd_len, uint8_t *resp,
                      size_t resp_cap, size_t *resp_len);
static int f_reset(void *conn, int how, uint8_t *atr, size_t *atr_len, int *proto);
static int f_status(void *conn);
static void f_caps(void *conn, tk_reader_caps_t *caps);
static void f_disconnect(void *conn);

/* An absolute CLOCK_REALTIME deadline ms from now, for fk.cond. */
static inline void
abstime(struct timespec *ts, int ms)
{
	clock_gettime(CLOCK_REALTIME, ts);
	ts->tv_sec += ms / 1000;
	ts->tv_nsec += (long)(ms % 1000) * 1000000L;
	if (ts->tv_nsec >= 1000000000L) {
		ts->tv_sec++;
		ts->tv_nsec -= 1000000000L;
	}
}

/* With fk.mtx held: make wait_change report a change. */
static inline void
fake_changed_locked(void)
{
	fk.version++;
	pthread_cond_broadcast(&fk.cond);
}

/* With fk.mtx held: the position of the present reader called name, or -1. */
static inline int
fake_find_locked(const char *name)
{
	for (int i = 0; i < FAKE_NR; i++)
		if (fk.r[i].present && strcmp(fk.r[i].name, name) == 0)
			return i;
	return -1;
}

/* The fake card's answer to any command: INS, the reader position, 90 00. */
static inline int
fake_answer(const fconn_t *c, const uint8_t *cmd, uint8_t *resp, size_t resp_cap, size_t *resp_len)
{
	*resp_len = 0;
	if (resp_cap < 4)
		return TK_ERR_BUFFER_TOO_SMALL;
	resp[0] = cmd[1];
	resp[1] = (uint8_t)c->idx;
	resp[2] = 0x90;
	resp[3] = 0x00;
	*resp_len = 4;
	return TK_OK;
}

static inline int
f_open(void **be, const char *config)
{
	(void)config;
	*be = &fk;
	return TK_OK;
}

static inline void
f_close(void *be)
{
	(void)be;
}

static inline int
f_enumerate(void *be, tk_reader_desc_t **out, size_t *count)
{
	tk_reader_desc_t *d;
	size_t n = 0;

	(void)be;
	*out = NULL;
	*count = 0;
	pthread_mutex_lock(&fk.mtx);
	fk.seen_version = fk.version;
	if (fk.no_service) {
		pthread_mutex_unlock(&fk.mtx);
		return TK_ERR_NO_SERVICE;
	}
	d = calloc(FAKE_NR, sizeof(*d));
	if (d == NULL) {
		pthread_mutex_unlock(&fk.mtx);
		return TK_ERR_NO_MEMORY;
	}
	for (int i = 0; i < FAKE_NR; i++) {
		if (!fk.r[i].present)
			continue;
		snprintf(d[n].name, sizeof(d[n].name), "%s", fk.r[i].name);
		d[n].card_present = fk.r[i].card;
		d[n].event_count = fk.r[i].events;
		if (fk.r[i].card) {
			memcpy(d[n].atr, fk.r[i].atr, fk.r[i].atr_len);
			d[n].atr_len = fk.r[i].atr_len;
		}
		n++;
	}
	pthread_mutex_unlock(&fk.mtx);
	*out = d;
	*count = n;
	return TK_OK;
}

static inline int
f_wait(void *be, int timeout_ms)
{
	struct timespec dl;
	int r = TK_ERR_TIMEOUT;

	(void)be;
	abstime(&dl, timeout_ms);
	pthread_mutex_lock(&fk.mtx);
	for (;;) {
		if (fk.cancelled) {
			fk.cancelled = false;
			r = TK_ERR_CANCELLED;
			break;
		}
		if (fk.version != fk.seen_version) {
			r = fk.no_service ? TK_ERR_NO_SERVICE : TK_OK;
			break;
		}
		if (pthread_cond_timedwait(&fk.cond, &fk.mtx, &dl) == ETIMEDOUT)
			break;
	}
	pthread_mutex_unlock(&fk.mtx);
	return r;
}

static inline void
f_cancel(void *be)
{
	(void)be;
	pthread_mutex_lock(&fk.mtx);
	fk.cancelled = true;
	pthread_cond_broadcast(&fk.cond);
	pthread_mutex_unlock(&fk.mtx);
}

static inline int
f_control(void *conn, uint32_t code, const uint8_t *in, size_t in_len, uint8_t *out, size_t out_cap,
          size_t *out_len)
{
	(void)conn, (void)code, (void)in, (void)in_len, (void)out, (void)out_cap;
	*out_len = 0;
	return TK_ERR_NOT_SUPPORTED;
}

/* begin and end: no transactions to track */
static inline int
f_begin(void *conn)
{
	(void)conn;
	return TK_OK;
}

static const tk_reader_ops_t fake_ops = {
        .name = "fake",
        .open = f_open,
        .close = f_close,
        .enumerate = f_enumerate,
        .wait_change = f_wait,
        .cancel = f_cancel,
        .connect = f_connect,
        .transmit = f_transmit,
        .control = f_control,
        .reset = f_reset,
        .begin = f_begin,
        .end = f_begin,
        .status = f_status,
        .caps = f_caps,
        .disconnect = f_disconnect,
};

#endif
