/* Unit tests for card sessions (core/card.c) in direct and backend mode. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include <tokenkit/card.h>
#include <tokenkit/err.h>

#include "card_priv.h"

/* A scripted card: answers each command with the next scripted response
 * (or a transport error) and records what it was sent. */
typedef struct script {
	struct {
		int err;
		uint8_t resp[300];
		size_t len;
	} step[8];
	size_t nsteps, next;
	uint8_t sent[8][300];
	size_t sent_len[8];
	int calls;
} script_t;

static int
script_fn(void *ctx, const uint8_t *cmd, size_t cmd_len, uint8_t *resp, size_t resp_cap,
          size_t *resp_len)
{
	script_t *s = ctx;
	size_t i;

	*resp_len = 0;
	if (s->next >= s->nsteps)
		return TK_ERR_INTERNAL;
	i = s->next++;
	s->calls++;
	if (cmd_len <= sizeof(s->sent[i])) {
		memcpy(s->sent[i], cmd, cmd_len);
		s->sent_len[i] = cmd_len;
	}
	if (s->step[i].err != TK_OK)
		return s->step[i].err;
	if (s->step[i].len > resp_cap)
		return TK_ERR_BUFFER_TOO_SMALL;
	memcpy(resp, s->step[i].resp, s->step[i].len);
	*resp_len = s->step[i].len;
	return TK_OK;
}

static void
add_step(script_t *s, int err, const char *bytes, size_t len)
{
	s->step[s->nsteps].err = err;
	memcpy(s->step[s->nsteps].resp, bytes, len);
	s->step[s->nsteps].len = len;
	s->nsteps++;
}

static const uint8_t atr[] = {0x3B, 0x88, 0x80, 0x01, 0x00, 0x00, 0x00,
                              0x00, 0x00, 0x00, 0x00, 0x00, 0x09};
static const uint8_t select_cmd[] = {0x00, 0xA4, 0x04, 0x00, 0x05, 0xA0, 0x00, 0x00, 0x03, 0x08};

static void
test_direct_new_and_accessors(void **state)
{
	script_t s = {0};
	tk_card_t *c = (tk_card_t *)1, *c2;
	tk_card_caps_t caps;
	const uint8_t *a;
	size_t alen;

	(void)state;
	assert_int_equal(tk_card_new_direct("r", atr, sizeof(atr), NULL, &s, &c),
	                 TK_ERR_INVALID_ARG);
	assert_null(c);
	assert_int_equal(tk_card_new_direct(NULL, atr, sizeof(atr), script_fn, &s, &c),
	                 TK_ERR_INVALID_ARG);
	{
		uint8_t big[34] = {0};
		assert_int_equal(tk_card_new_direct("r", big, sizeof(big), script_fn, &s, &c),
		                 TK_ERR_INVALID_ARG);
	}
	assert_int_equal(tk_card_new_direct("Virtual 00", atr, sizeof(atr), script_fn, &s, &c),
	                 TK_OK);
	assert_string_equal(tk_card_reader_name(c), "Virtual 00");
	a = tk_card_atr(c, &alen);
	assert_int_equal(alen, sizeof(atr));
	assert_memory_equal(a, atr, sizeof(atr));
	tk_card_caps(c, &caps);
	assert_true(caps.extended_apdu);
	assert_int_equal(caps.max_cmd, 65544);
	assert_true(tk_card_present(c));
	assert_int_equal(tk_card_generation(c), 0);
	assert_int_equal(tk_card_reset(c, false), TK_ERR_NOT_SUPPORTED);

	c2 = tk_card_ref(c);
	assert_ptr_equal(c2, c);
	tk_card_unref(&c2);
	assert_null(c2);
	assert_string_equal(tk_card_reader_name(c), "Virtual 00"); /* still alive */
	tk_card_unref(&c);
	assert_null(c);
	tk_card_unref(&c); /* NULL is fine */
	assert_null(tk_card_ref(NULL));
}

static void
test_direct_transmit(void **state)
{
	script_t s = {0};
	tk_card_t *c = NULL;
	uint8_t resp[64];
	size_t n = 99;

	(void)state;
	add_step(&s, TK_OK, "\x61\x10\x90\x00", 4);
	add_step(&s, TK_OK, "\x90", 1);   /* too short */
	add_step(&s, TK_ERR_COMM, "", 0); /* transport error passes through */
	add_step(&s, TK_OK, "\x01\x02\x03\x90\x00", 5);
	assert_int_equal(tk_card_new_direct("r", atr, sizeof(atr), script_fn, &s, &c), TK_OK);

	assert_int_equal(
	        tk_card_transmit(c, select_cmd, sizeof(select_cmd), resp, sizeof(resp), &n, 0),
	        TK_OK);
	assert_int_equal(n, 4);
	assert_memory_equal(resp, "\x61\x10\x90\x00", 4);
	assert_int_equal(s.sent_len[0], sizeof(select_cmd));
	assert_memory_equal(s.sent[0], select_cmd, sizeof(select_cmd));

	assert_int_equal(
	        tk_card_transmit(c, select_cmd, sizeof(select_cmd), resp, sizeof(resp), &n, 0),
	        TK_ERR_COMM);
	assert_int_equal(n, 0);
	assert_int_equal(
	        tk_card_transmit(c, select_cmd, sizeof(select_cmd), resp, sizeof(resp), &n, 0),
	        TK_ERR_COMM);
	/* A small response buffer is the backend's to refuse. */
	assert_int_equal(tk_card_transmit(c, select_cmd, sizeof(select_cmd), resp, 3, &n, 0),
	                 TK_ERR_BUFFER_TOO_SMALL);
	/* Arguments. */
	assert_int_equal(tk_card_transmit(c, select_cmd, 3, resp, sizeof(resp), &n, 0),
	                 TK_ERR_INVALID_ARG);
	assert_int_equal(tk_card_transmit(c, NULL, 4, resp, sizeof(resp), &n, 0),
	                 TK_ERR_INVALID_ARG);
	assert_int_equal(
	        tk_card_transmit(c, select_cmd, sizeof(select_cmd), resp, sizeof(resp), NULL, 0),
	        TK_ERR_INVALID_ARG);
	assert_int_equal(
	        tk_card_transmit(NULL, select_cmd, sizeof(select_cmd), resp, sizeof(resp), &n, 0),
	        TK_ERR_INVALID_ARG);
	assert_int_equal(s.calls, 4);
	tk_card_unref(&c);
}

static void
test_direct_reset_and_removal(void **state)
{
	script_t s = {0};
	tk_card_t *c = NULL;
	uint8_t resp[64];
	size_t n;

	(void)state;
	add_step(&s, TK_ERR_CARD_RESET, "", 0);
	add_step(&s, TK_OK, "\x90\x00", 2);
	add_step(&s, TK_ERR_CARD_REMOVED, "", 0);
	assert_int_equal(tk_card_new_direct("r", NULL, 0, script_fn, &s, &c), TK_OK);
	assert_int_equal(tk_card_generation(c), 0);
	assert_int_equal(
	        tk_card_transmit(c, select_cmd, sizeof(select_cmd), resp, sizeof(resp), &n, 0),
	        TK_ERR_CARD_RESET);
	assert_int_equal(tk_card_generation(c), 1);
	/* The next call goes through. */
	assert_int_equal(
	        tk_card_transmit(c, select_cmd, sizeof(select_cmd), resp, sizeof(resp), &n, 0),
	        TK_OK);
	assert_int_equal(tk_card_generation(c), 1);
	tk_card_bump_generation(c);
	assert_int_equal(tk_card_generation(c), 2);

	assert_int_equal(
	        tk_card_transmit(c, select_cmd, sizeof(select_cmd), resp, sizeof(resp), &n, 0),
	        TK_ERR_CARD_REMOVED);
	assert_false(tk_card_present(c));
	/* Removed is final: no further call reaches the card. */
	assert_int_equal(
	        tk_card_transmit(c, select_cmd, sizeof(select_cmd), resp, sizeof(resp), &n, 0),
	        TK_ERR_CARD_REMOVED);
	assert_int_equal(tk_card_begin(c), TK_ERR_CARD_REMOVED);
	assert_int_equal(s.calls, 3);
	tk_card_unref(&c);

	/* tk_card_set_removed does the same from the owner's side. */
	memset(&s, 0, sizeof(s));
	add_step(&s, TK_OK, "\x90\x00", 2);
	assert_int_equal(tk_card_new_direct("r", NULL, 0, script_fn, &s, &c), TK_OK);
	tk_card_set_removed(c);
	assert_false(tk_card_present(c));
	assert_int_equal(
	        tk_card_transmit(c, select_cmd, sizeof(select_cmd), resp, sizeof(resp), &n, 0),
	        TK_ERR_CARD_REMOVED);
	assert_int_equal(s.calls, 0);
	tk_card_unref(&c);
}

/* A backend that counts transactions and resets. */
typedef struct fake_be {
	int begins, ends, resets, released;
	bool cold;
	int timeout_seen;
	uint64_t gen;
	bool present;
} fake_be_t;

static int
fb_transmit(void *ctx, const uint8_t *cmd, size_t cmd_len, uint8_t *resp, size_t resp_cap,
            size_t *resp_len, int timeout_ms)
{
	fake_be_t *f = ctx;

	f->timeout_seen = timeout_ms;
	resp[0] = 0x90;
	resp[1] = 0x00;
	*resp_len = 2;
	return TK_OK;
}

static int
fb_begin(void *ctx, int timeout_ms)
{
	((fake_be_t *)ctx)->begins++;
	return TK_OK;
}

static int
fb_end(void *ctx, int timeout_ms)
{
	((fake_be_t *)ctx)->ends++;
	return TK_OK;
}

static int
fb_reset(void *ctx, bool cold, int timeout_ms)
{
	fake_be_t *f = ctx;

	f->resets++;
	f->cold = cold;
	return TK_OK;
}

static bool
fb_present(void *ctx)
{
	return ((fake_be_t *)ctx)->present;
}

static uint64_t
fb_generation(void *ctx)
{
	return ((fake_be_t *)ctx)->gen;
}

static void
fb_release(void *ctx)
{
	((fake_be_t *)ctx)->released++;
}

static const tk_card_backend_t fake_backend = {
        .transmit = fb_transmit,
        .begin = fb_begin,
        .end = fb_end,
        .reset = fb_reset,
        .present = fb_present,
        .generation = fb_generation,
        .release = fb_release,
};

static void
test_backend_transactions_reset(void **state)
{
	fake_be_t f = {.present = true};
	tk_card_t *c = NULL, *c2;
	tk_card_caps_t caps;
	uint8_t resp[8];
	size_t n;

	(void)state;
	assert_int_equal(
	        tk_card_new_backend("r", atr, sizeof(atr), NULL, &fake_backend, &f, 1234, &c),
	        TK_OK);
	tk_card_caps(c, &caps);
	assert_false(caps.extended_apdu);
	assert_int_equal(caps.max_cmd, 261);

	assert_int_equal(tk_card_end(c), TK_ERR_STATE);
	assert_int_equal(tk_card_begin(c), TK_OK);
	assert_int_equal(tk_card_begin(c), TK_OK);
	assert_int_equal(f.begins, 1);
	assert_int_equal(tk_card_end(c), TK_OK);
	assert_int_equal(f.ends, 0);
	assert_int_equal(tk_card_end(c), TK_OK);
	assert_int_equal(f.ends, 1);
	assert_int_equal(tk_card_end(c), TK_ERR_STATE);

	/* Default and explicit deadlines reach the backend. */
	assert_int_equal(
	        tk_card_transmit(c, select_cmd, sizeof(select_cmd), resp, sizeof(resp), &n, 0),
	        TK_OK);
	assert_int_equal(f.timeout_seen, 1234);
	assert_int_equal(
	        tk_card_transmit(c, select_cmd, sizeof(select_cmd), resp, sizeof(resp), &n, 77),
	        TK_OK);
	assert_int_equal(f.timeout_seen, 77);
	/* Commands longer than the reader takes are refused before sending. */
	{
		uint8_t big[300] = {0};
		assert_int_equal(tk_card_transmit(c, big, sizeof(big), resp, sizeof(resp), &n, 0),
		                 TK_ERR_TOO_LONG);
	}

	assert_int_equal(tk_card_reset(c, true), TK_OK);
	assert_int_equal(f.resets, 1);
	assert_true(f.cold);
	assert_int_equal(tk_card_generation(c), 1);
	f.gen = 5; /* reconnects seen by the backend add up */
	assert_int_equal(tk_card_generation(c), 6);

	f.present = false;
	assert_false(tk_card_present(c));
	assert_int_equal(
	        tk_card_transmit(c, select_cmd, sizeof(select_cmd), resp, sizeof(resp), &n, 0),
	        TK_ERR_CARD_REMOVED);

	c2 = tk_card_ref(c);
	tk_card_unref(&c);
	assert_int_equal(f.released, 0);
	tk_card_unref(&c2);
	assert_int_equal(f.released, 1);
}

static void
test_apdu_get_response(void **state)
{
	script_t s = {0};
	tk_card_t *c = NULL;
	tk_apdu_t a = {.cla = 0x00, .ins = 0xCB, .p1 = 0x3F, .p2 = 0xFF, .le = 256};
	uint8_t resp[64];
	size_t n = 0;
	uint16_t sw = 0;

	(void)state;
	add_step(&s, TK_OK, "\x01\x02\x61\x03", 4);
	add_step(&s, TK_OK, "\x03\x04\x05\x90\x00", 5);
	assert_int_equal(tk_card_new_direct("r", NULL, 0, script_fn, &s, &c), TK_OK);
	assert_int_equal(tk_card_apdu(c, &a, resp, sizeof(resp), &n, &sw), TK_OK);
	assert_int_equal(sw, 0x9000);
	assert_int_equal(n, 5);
	assert_memory_equal(resp, "\x01\x02\x03\x04\x05", 5);
	assert_int_equal(s.calls, 2);
	assert_int_equal(s.sent[1][1], 0xC0); /* GET RESPONSE */
	tk_card_unref(&c);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_direct_new_and_accessors),
	        cmocka_unit_test(test_direct_transmit),
	        cmocka_unit_test(test_direct_reset_and_removal),
	        cmocka_unit_test(test_backend_transactions_reset),
	        cmocka_unit_test(test_apdu_get_response),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
