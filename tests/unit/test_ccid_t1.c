/* Unit tests for the T=1 block layer and protocol engine (ccid/t1.c) and
 * the T=0 case mapping (ccid/t0.c). The engine talks to a scripted card:
 * each step names the block the engine must send (built here with the
 * test's own LRC, ISO/IEC 7816-3 11.4.3) and the card's answer. The
 * scenarios follow the rules of ISO/IEC 7816-3:2006 11.6 (chaining 11.6.2,
 * error handling 11.6.3). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include <tokenkit/err.h>

#include "t0.h"
#include "t1.h"

/* A block: NAD 00, PCB, INF, LRC (XOR of everything before it). */
typedef struct {
	uint8_t b[TK_T1_MAX_BLOCK];
	size_t n;
} blk_t;

static blk_t
mk(uint8_t pcb, const uint8_t *inf, size_t len)
{
	blk_t k;
	uint8_t x = 0;

	k.b[0] = 0x00;
	k.b[1] = pcb;
	k.b[2] = (uint8_t)len;
	if (len > 0)
		memcpy(k.b + 3, inf, len);
	k.n = 3 + len;
	for (size_t i = 0; i < k.n; i++)
		x ^= k.b[i];
	k.b[k.n++] = x;
	return k;
}

struct step {
	blk_t expect; /* what the engine must send */
	uint8_t wtx;  /* with this multiplier */
	int rc;       /* the transport's result */
	blk_t reply;  /* the card's answer */
};

struct script {
	const struct step *steps;
	size_t n, i;
};

static int
xfer(void *ctx, const uint8_t *blk, size_t len, uint8_t wtx, uint8_t *rblk, size_t cap,
     size_t *rlen)
{
	struct script *s = ctx;
	const struct step *st;

	assert_true(s->i < s->n);
	st = &s->steps[s->i++];
	assert_int_equal(len, st->expect.n);
	assert_memory_equal(blk, st->expect.b, len);
	assert_int_equal(wtx, st->wtx);
	*rlen = 0;
	if (st->rc != TK_OK)
		return st->rc;
	assert_true(st->reply.n <= cap);
	memcpy(rblk, st->reply.b, st->reply.n);
	*rlen = st->reply.n;
	return TK_OK;
}

static const uint8_t sw9000[] = {0x90, 0x00};
static const uint8_t apdu5[] = {0x00, 0xA4, 0x04, 0x00, 0x00};

#define I(ns, m, p, n) mk(TK_T1_PCB_I(ns, m), p, n)
#define R(nr, e) mk(TK_T1_PCB_R(nr, e), NULL, 0)
#define S(t, resp, p, n) mk(TK_T1_PCB_S(t, resp), p, n)

static void
test_lrc_crc(void **state)
{
	(void)state;
	/* CRC-16 reflected 1021, init FFFF, no final XOR (the "MCRF4XX"
	 * parameters): the check value of "123456789" is 6F91. */
	assert_int_equal(tk_t1_crc((const uint8_t *)"123456789", 9), 0x6F91);
	assert_int_equal(tk_t1_lrc((const uint8_t[]){0x00, 0x40, 0x02, 0x90, 0x00}, 5), 0xD2);
}

static void
test_block_parse(void **state)
{
	/* I(1, no M), INF 90 00, LRC 00^40^02^90^00 = D2 */
	static const uint8_t ib[] = {0x00, 0x40, 0x02, 0x90, 0x00, 0xD2};
	/* R(N(R)=1, EDC error): PCB 91, LRC 91 */
	static const uint8_t rb[] = {0x00, 0x91, 0x00, 0x91};
	/* S(WTX request, 05): PCB C3, LRC C3^01^05 = C7 */
	static const uint8_t sb[] = {0x00, 0xC3, 0x01, 0x05, 0xC7};
	tk_t1_block_t k;
	uint8_t b[8], out[16];
	size_t n = 0;

	(void)state;
	assert_int_equal(tk_t1_block_parse(ib, sizeof(ib), false, &k), TK_OK);
	assert_int_equal(k.kind, TK_T1_I);
	assert_int_equal(k.ns, 1);
	assert_false(k.more);
	assert_int_equal(k.len, 2);
	assert_memory_equal(k.inf, sw9000, 2);
	assert_int_equal(tk_t1_block_parse(rb, sizeof(rb), false, &k), TK_OK);
	assert_int_equal(k.kind, TK_T1_R);
	assert_int_equal(k.nr, 1);
	assert_int_equal(k.rerr, TK_T1_R_EDC);
	assert_int_equal(tk_t1_block_parse(sb, sizeof(sb), false, &k), TK_OK);
	assert_int_equal(k.kind, TK_T1_S);
	assert_int_equal(k.stype, TK_T1_S_WTX);
	assert_false(k.sresponse);
	assert_int_equal(k.inf[0], 5);
	/* errors */
	assert_int_equal(tk_t1_block_parse(ib, 5, false, &k), TK_ERR_TRUNCATED);
	assert_int_equal(k.len, 0);
	memcpy(b, ib, sizeof(ib));
	b[5] ^= 1;
	assert_int_equal(tk_t1_block_parse(b, 6, false, &k), TK_ERR_BAD_CHECKSUM);
	b[5] ^= 1;
	b[6] = 0;
	assert_int_equal(tk_t1_block_parse(b, 7, false, &k), TK_ERR_MALFORMED);
	/* LEN FF is reserved */
	assert_int_equal(tk_t1_block_parse((const uint8_t[]){0, 0, 0xFF, 0xFF}, 4, false, &k),
	                 TK_ERR_MALFORMED);
	/* an R-block with information, an R-block with reserved bits */
	assert_int_equal(tk_t1_block_parse((const uint8_t[]){0, 0x80, 1, 0, 0x81}, 5, false, &k),
	                 TK_ERR_MALFORMED);
	assert_int_equal(tk_t1_block_parse((const uint8_t[]){0, 0x83, 0, 0x83}, 4, false, &k),
	                 TK_ERR_MALFORMED);
	/* S(IFS request, 00) and an unknown S-block */
	assert_int_equal(tk_t1_block_parse((const uint8_t[]){0, 0xC1, 1, 0, 0xC0}, 5, false, &k),
	                 TK_ERR_MALFORMED);
	assert_int_equal(tk_t1_block_parse((const uint8_t[]){0, 0xC5, 0, 0xC5}, 4, false, &k),
	                 TK_ERR_MALFORMED);
	/* build with CRC and parse back */
	assert_int_equal(tk_t1_block_build(0, 0x40, sw9000, 2, true, out, sizeof(out), &n), TK_OK);
	assert_int_equal(n, 7);
	assert_int_equal(out[5] << 8 | out[6], tk_t1_crc(out, 5));
	assert_int_equal(tk_t1_block_parse(out, n, true, &k), TK_OK);
	assert_int_equal(tk_t1_block_parse(out, n, false, &k), TK_ERR_MALFORMED);
	assert_int_equal(tk_t1_block_build(0, 0, out, 255, false, out, sizeof(out), &n),
	                 TK_ERR_INVALID_ARG);
}

static void
run(const struct step *steps, size_t n, tk_t1_t *t, const uint8_t *apdu, size_t len, uint8_t *resp,
    size_t cap, size_t *rlen, int want)
{
	struct script s = {steps, n, 0};

	assert_int_equal(tk_t1_transceive(t, xfer, &s, apdu, len, resp, cap, rlen), want);
	assert_int_equal(s.i, n); /* every step taken */
}

static void
test_simple(void **state)
{
	const struct step steps[] = {
	        {I(0, false, apdu5, 5), 1, TK_OK, I(0, false, sw9000, 2)},
	        {I(1, false, apdu5, 5), 1, TK_OK, I(1, false, sw9000, 2)},
	};
	uint8_t resp[16];
	size_t n = 0;
	tk_t1_t t;

	(void)state;
	tk_t1_init(&t, 254, false);
	run(steps, 1, &t, apdu5, 5, resp, sizeof(resp), &n, TK_OK);
	assert_int_equal(n, 2);
	assert_memory_equal(resp, sw9000, 2);
	/* both sequence numbers moved on */
	assert_int_equal(t.ns, 1);
	assert_int_equal(t.nr, 1);
	run(steps + 1, 1, &t, apdu5, 5, resp, sizeof(resp), &n, TK_OK);
	assert_int_equal(t.ns, 0);
	assert_int_equal(t.nr, 0);
}

static void
test_chaining(void **state)
{
	/* IFSC 4: ten bytes go as 4 + 4 + 2, each chained part answered by
	 * R(N(R) = next N(S)); the card then chains 61 62 | 90 00 and we
	 * ask for the rest with R(1). */
	static const uint8_t ten[10] = {0x80, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09};
	static const uint8_t ab[] = {0x61, 0x62};
	const struct step steps[] = {
	        {I(0, true, ten, 4), 1, TK_OK, R(1, 0)},
	        {I(1, true, ten + 4, 4), 1, TK_OK, R(0, 0)},
	        {I(0, false, ten + 8, 2), 1, TK_OK, I(0, true, ab, 2)},
	        {R(1, 0), 1, TK_OK, I(1, false, sw9000, 2)},
	};
	uint8_t resp[16];
	size_t n = 0;
	tk_t1_t t;

	(void)state;
	tk_t1_init(&t, 4, false);
	run(steps, 4, &t, ten, sizeof(ten), resp, sizeof(resp), &n, TK_OK);
	assert_int_equal(n, 4);
	assert_memory_equal(resp, "\x61\x62\x90\x00", 4);
	assert_int_equal(t.ns, 1);
	assert_int_equal(t.nr, 0);
	/* too small for the answer */
	tk_t1_init(&t, 4, false);
	run(steps, 3, &t, ten, sizeof(ten), resp, 1, &n, TK_ERR_BUFFER_TOO_SMALL);
}

static void
test_wtx_ifs(void **state)
{
	static const uint8_t three = 3, ifs = 0x20;
	const struct step steps[] = {
	        {I(0, false, apdu5, 5), 1, TK_OK, S(TK_T1_S_WTX, false, &three, 1)},
	        /* the answer to the WTX request waits 3 x BWT */
	        {S(TK_T1_S_WTX, true, &three, 1), 3, TK_OK, S(TK_T1_S_IFS, false, &ifs, 1)},
	        {S(TK_T1_S_IFS, true, &ifs, 1), 1, TK_OK, I(0, false, sw9000, 2)},
	};
	uint8_t resp[16];
	size_t n = 0;
	tk_t1_t t;

	(void)state;
	tk_t1_init(&t, 254, false);
	run(steps, 3, &t, apdu5, 5, resp, sizeof(resp), &n, TK_OK);
	assert_int_equal(t.ifsc, 0x20);
	assert_int_equal(t.wtx_requests, 1);
	assert_int_equal(t.ifs_requests, 1);
}

static void
test_errors_recovered(void **state)
{
	blk_t bad = I(0, false, sw9000, 2);
	struct step steps[] = {
	        /* an answer with a wrong LRC: R(N(R)=0, EDC error) */
	        {I(0, false, apdu5, 5), 1, TK_OK, bad},
	        /* the reader saw a parity error: R again */
	        {R(0, TK_T1_R_EDC), 1, TK_ERR_COMM, {{0}, 0}},
	        /* the card asks for our block again: R(N(R) = our N(S)) */
	        {R(0, TK_T1_R_EDC), 1, TK_OK, R(0, TK_T1_R_OTHER)},
	        {I(0, false, apdu5, 5), 1, TK_OK, I(0, false, sw9000, 2)},
	};
	uint8_t resp[16];
	size_t n = 0;
	tk_t1_t t;

	(void)state;
	bad.b[bad.n - 1] ^= 0xFF;
	steps[0].reply = bad;
	tk_t1_init(&t, 254, false);
	run(steps, 4, &t, apdu5, 5, resp, sizeof(resp), &n, TK_OK);
	assert_int_equal(n, 2);
	assert_int_equal(t.retransmits, 3);
	assert_int_equal(t.resynchs, 0);
}

static void
test_resynch(void **state)
{
	blk_t junk = mk(0x00, NULL, 0);
	const struct step ok[] = {
	        {I(1, false, apdu5, 5), 1, TK_ERR_UNRESPONSIVE, {{0}, 0}},
	        {R(0, TK_T1_R_EDC), 1, TK_ERR_UNRESPONSIVE, {{0}, 0}},
	        {R(0, TK_T1_R_EDC), 1, TK_ERR_UNRESPONSIVE, {{0}, 0}},
	        {R(0, TK_T1_R_EDC), 1, TK_ERR_UNRESPONSIVE, {{0}, 0}},
	        /* three retries spent: resynchronise; the exchange is lost */
	        {S(TK_T1_S_RESYNCH, false, NULL, 0), 1, TK_OK, S(TK_T1_S_RESYNCH, true, NULL, 0)},
	};
	const struct step dead[] = {
	        {I(0, false, apdu5, 5), 1, TK_ERR_UNRESPONSIVE, {{0}, 0}},
	        {R(0, TK_T1_R_EDC), 1, TK_ERR_UNRESPONSIVE, {{0}, 0}},
	        {R(0, TK_T1_R_EDC), 1, TK_ERR_UNRESPONSIVE, {{0}, 0}},
	        {R(0, TK_T1_R_EDC), 1, TK_ERR_UNRESPONSIVE, {{0}, 0}},
	        {S(TK_T1_S_RESYNCH, false, NULL, 0), 1, TK_ERR_UNRESPONSIVE, {{0}, 0}},
	        {S(TK_T1_S_RESYNCH, false, NULL, 0), 1, TK_OK, junk},
	        {S(TK_T1_S_RESYNCH, false, NULL, 0), 1, TK_ERR_COMM, {{0}, 0}},
	};
	uint8_t resp[16];
	size_t n = 0;
	tk_t1_t t;

	(void)state;
	tk_t1_init(&t, 254, false);
	t.ns = 1; /* the numbers go back to 0 */
	run(ok, 5, &t, apdu5, 5, resp, sizeof(resp), &n, TK_ERR_COMM);
	assert_int_equal(t.ns, 0);
	assert_int_equal(t.nr, 0);
	assert_int_equal(t.resynchs, 1);
	tk_t1_init(&t, 254, false);
	run(dead, 7, &t, apdu5, 5, resp, sizeof(resp), &n, TK_ERR_UNRESPONSIVE);
	assert_int_equal(t.resynchs, 3);
}

static void
test_abort_and_transport(void **state)
{
	const struct step abort_steps[] = {
	        {I(0, false, apdu5, 5), 1, TK_OK, S(TK_T1_S_ABORT, false, NULL, 0)},
	        {S(TK_T1_S_ABORT, true, NULL, 0), 1, TK_OK, R(0, 0)},
	};
	const struct step usb[] = {
	        {I(0, false, apdu5, 5), 1, TK_ERR_TIMEOUT, {{0}, 0}},
	};
	uint8_t resp[16];
	size_t n = 0;
	tk_t1_t t;

	(void)state;
	tk_t1_init(&t, 254, false);
	run(abort_steps, 2, &t, apdu5, 5, resp, sizeof(resp), &n, TK_ERR_PROTOCOL);
	/* a USB timeout is not a bad block: it goes up as it is */
	tk_t1_init(&t, 254, false);
	run(usb, 1, &t, apdu5, 5, resp, sizeof(resp), &n, TK_ERR_TIMEOUT);
	assert_int_equal(t.retransmits, 0);
}

static void
test_ifsd(void **state)
{
	static const uint8_t fe = 0xFE;
	const struct step steps[] = {
	        {S(TK_T1_S_IFS, false, &fe, 1), 1, TK_OK, R(0, 0)},
	        {S(TK_T1_S_IFS, false, &fe, 1), 1, TK_OK, S(TK_T1_S_IFS, true, &fe, 1)},
	};
	struct script s = {steps, 2, 0};
	tk_t1_t t;

	(void)state;
	tk_t1_init(&t, 254, false);
	assert_int_equal(t.ifsd, 32);
	assert_int_equal(tk_t1_negotiate_ifsd(&t, xfer, &s, 254), TK_OK);
	assert_int_equal(t.ifsd, 254);
	assert_int_equal(s.i, 2);
	assert_int_equal(tk_t1_negotiate_ifsd(&t, xfer, &s, 255), TK_ERR_INVALID_ARG);
}

static void
test_continue(void **state)
{
	/* A PIN pad sent I(0) for us; the card answers I(0) 90 00. */
	blk_t first = I(0, false, sw9000, 2);
	blk_t again = R(0, TK_T1_R_OTHER);
	uint8_t pro[3], resp[8];
	size_t n = 0;
	tk_t1_t t;

	(void)state;
	tk_t1_init(&t, 254, false);
	tk_t1_prologue(&t, 13, pro);
	assert_memory_equal(pro, "\x00\x00\x0D", 3);
	assert_int_equal(tk_t1_continue(&t, xfer, NULL, first.b, first.n, resp, sizeof(resp), &n),
	                 TK_OK);
	assert_int_equal(n, 2);
	assert_int_equal(t.ns, 1);
	assert_int_equal(t.nr, 1);
	/* the card wants the pad's block again: we cannot (the PIN is in
	 * the reader) */
	again = R(1, TK_T1_R_OTHER);
	assert_int_equal(tk_t1_continue(&t, xfer, NULL, again.b, again.n, resp, sizeof(resp), &n),
	                 TK_ERR_COMM);
}

/* --- T=0 --------------------------------------------------------------------- */

struct t0step {
	const uint8_t *tpdu;
	size_t len;
	const uint8_t *resp;
	size_t rlen;
};

struct t0script {
	const struct t0step *steps;
	size_t n, i;
};

static int
t0_xfer(void *ctx, const uint8_t *cmd, size_t len, uint8_t *resp, size_t cap, size_t *rlen)
{
	struct t0script *s = ctx;
	const struct t0step *st;

	assert_true(s->i < s->n);
	st = &s->steps[s->i++];
	assert_int_equal(len, st->len);
	assert_memory_equal(cmd, st->tpdu, len);
	assert_true(st->rlen <= cap);
	memcpy(resp, st->resp, st->rlen);
	*rlen = st->rlen;
	return TK_OK;
}

static void
test_t0(void **state)
{
	/* case 1: P3 = 00 is added */
	static const uint8_t c1[] = {0x00, 0x70, 0x00, 0x00};
	static const uint8_t c1t[] = {0x00, 0x70, 0x00, 0x00, 0x00};
	/* case 2 with a wrong Le: 6C 03, then the same with P3 = 03 */
	static const uint8_t c2[] = {0x00, 0xCA, 0x01, 0x02, 0x10};
	static const uint8_t c2b[] = {0x00, 0xCA, 0x01, 0x02, 0x03};
	static const uint8_t r6c[] = {0x6C, 0x03};
	static const uint8_t r3[] = {0xAA, 0xBB, 0xCC, 0x90, 0x00};
	/* case 4: Le is not sent; 61 02 asks for GET RESPONSE with Le 02 */
	static const uint8_t c4[] = {0x00, 0xA4, 0x04, 0x00, 0x02, 0x3F, 0x00, 0x00};
	static const uint8_t c4t[] = {0x00, 0xA4, 0x04, 0x00, 0x02, 0x3F, 0x00};
	static const uint8_t r61[] = {0x61, 0x02};
	static const uint8_t gr[] = {0x00, 0xC0, 0x00, 0x00, 0x02};
	static const uint8_t r2[] = {0x11, 0x22, 0x90, 0x00};
	/* extended: not in T=0 */
	static const uint8_t ext[] = {0x00, 0xB0, 0x00, 0x00, 0x00, 0x01, 0x00};
	const struct t0step steps[] = {
	        {c1t, 5, sw9000, 2}, {c2, 5, r6c, 2}, {c2b, 5, r3, 5},
	        {c4t, 7, r61, 2},    {gr, 5, r2, 4},
	};
	struct t0script s = {steps, 5, 0};
	uint8_t resp[32];
	size_t n = 0;

	(void)state;
	assert_int_equal(tk_t0_transceive(t0_xfer, &s, c1, sizeof(c1), resp, sizeof(resp), &n),
	                 TK_OK);
	assert_int_equal(n, 2);
	assert_int_equal(tk_t0_transceive(t0_xfer, &s, c2, sizeof(c2), resp, sizeof(resp), &n),
	                 TK_OK);
	assert_int_equal(n, 5);
	assert_memory_equal(resp, r3, 5);
	assert_int_equal(tk_t0_transceive(t0_xfer, &s, c4, sizeof(c4), resp, sizeof(resp), &n),
	                 TK_OK);
	assert_int_equal(n, 4);
	assert_memory_equal(resp, r2, 4);
	assert_int_equal(s.i, 5);
	assert_int_equal(tk_t0_transceive(t0_xfer, &s, ext, sizeof(ext), resp, sizeof(resp), &n),
	                 TK_ERR_NOT_SUPPORTED);
	assert_int_equal(s.i, 5);
}

int
main(void)
{
	/* clang-format off */
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_lrc_crc),
		cmocka_unit_test(test_block_parse),
		cmocka_unit_test(test_simple),
		cmocka_unit_test(test_chaining),
		cmocka_unit_test(test_wtx_ifs),
		cmocka_unit_test(test_errors_recovered),
		cmocka_unit_test(test_resynch),
		cmocka_unit_test(test_abort_and_transport),
		cmocka_unit_test(test_ifsd),
		cmocka_unit_test(test_continue),
		cmocka_unit_test(test_t0),
	};
	/* clang-format on */

	return cmocka_run_group_tests(tests, NULL, NULL);
}
