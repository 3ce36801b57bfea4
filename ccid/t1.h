/* tokenkit CCID: the T=1 block protocol (ISO/IEC 7816-3:2006, 11), for
 * readers at the TPDU level.
 *
 * The block layer (parse/build, LRC and CRC) is pure. The protocol engine
 * sends and receives blocks through a callback, so it knows nothing of USB:
 * the CCID layer passes a function that wraps a block in PC_to_RDR_XfrBlock.
 * Every loop is bounded: at most TK_T1_MAX_ERRORS consecutive bad blocks
 * before a resynchronisation, TK_T1_MAX_RESYNCH tries at that, and a block
 * budget that grows with the sizes being exchanged. */
#ifndef TK_CCID_T1_H
#define TK_CCID_T1_H

#include <tokenkit/common.h>

#define TK_T1_MAX_INF 254
#define TK_T1_PROLOGUE 3
#define TK_T1_MAX_BLOCK (TK_T1_PROLOGUE + TK_T1_MAX_INF + 2)
#define TK_T1_MAX_ERRORS 3  /* retransmissions before a resynchronisation */
#define TK_T1_MAX_RESYNCH 3 /* S(RESYNCH) tries before giving up */
#define TK_T1_MAX_WTX 255   /* consecutive waiting time extensions */

enum tk_t1_kind { TK_T1_I = 0, TK_T1_R = 1, TK_T1_S = 2 };

/* S-block types (PCB bits 5-1) */
#define TK_T1_S_RESYNCH 0x00
#define TK_T1_S_IFS 0x01
#define TK_T1_S_ABORT 0x02
#define TK_T1_S_WTX 0x03

/* R-block error codes (PCB bits 4-1) */
#define TK_T1_R_OK 0x00
#define TK_T1_R_EDC 0x01   /* EDC or parity error */
#define TK_T1_R_OTHER 0x02 /* other error */

/* PCB builders */
#define TK_T1_PCB_I(ns, more) ((uint8_t)(((ns)&1) << 6 | ((more) ? 0x20 : 0)))
#define TK_T1_PCB_R(nr, err) ((uint8_t)(0x80 | ((nr)&1) << 4 | ((err)&0x0F)))
#define TK_T1_PCB_S(type, response) ((uint8_t)(0xC0 | ((response) ? 0x20 : 0) | ((type)&0x1F)))

typedef struct tk_t1_block {
	uint8_t nad;
	uint8_t pcb;
	enum tk_t1_kind kind;
	uint8_t ns;     /* I: N(S) */
	bool more;      /* I: M bit */
	uint8_t nr;     /* R: N(R) */
	uint8_t rerr;   /* R: error code */
	uint8_t stype;  /* S: type */
	bool sresponse; /* S: response (else request) */
	const uint8_t *inf;
	size_t len;
} tk_t1_block_t;

/* The epilogue: LRC (XOR of every byte) or CRC (ISO/IEC 3309, as T=1 cards
 * and readers compute it: reflected, initial value FFFF, sent high byte
 * first). */
uint8_t tk_t1_lrc(const uint8_t *p, size_t len);
uint16_t tk_t1_crc(const uint8_t *p, size_t len);

/* Parse a received block. inf points into blk. Errors: TK_ERR_INVALID_ARG,
 * TK_ERR_TRUNCATED (shorter than prologue + LEN + epilogue),
 * TK_ERR_MALFORMED (bytes after the epilogue, LEN FF, an R-block with
 * information or reserved bits, an unknown S-block, an S(IFS)/S(WTX) without
 * its one byte or an IFS of 0 or FF), TK_ERR_BAD_CHECKSUM. */
int tk_t1_block_parse(const uint8_t *blk, size_t len, bool crc, tk_t1_block_t *out);
/* Build a block. Errors: TK_ERR_INVALID_ARG (len above 254),
 * TK_ERR_BUFFER_TOO_SMALL. */
int tk_t1_block_build(uint8_t nad, uint8_t pcb, const uint8_t *inf, size_t len, bool crc,
                      uint8_t *out, size_t cap, size_t *out_len);

/* Send blk (wtx: the waiting time multiplier the card asked for, 1
 * otherwise) and receive the card's answer. A transport error that means
 * "no valid block arrived" (the reader saw a parity error, the card was
 * mute: TK_ERR_COMM, TK_ERR_UNRESPONSIVE) lets the engine recover; any
 * other error ends the exchange. */
typedef int (*tk_t1_xfer_fn)(void *ctx, const uint8_t *blk, size_t len, uint8_t wtx, uint8_t *rblk,
                             size_t cap, size_t *rlen);

typedef struct tk_t1 {
	uint8_t ns; /* N(S) of our next I-block */
	uint8_t nr; /* N(S) we expect in the card's next I-block */
	size_t ifsc;
	size_t ifsd;
	bool crc;
	uint8_t nad;
	/* Counters for diagnostics and tests. */
	unsigned retransmits;
	unsigned resynchs;
	unsigned wtx_requests;
	unsigned ifs_requests;
} tk_t1_t;

/* Start over after a reset: sequence numbers 0, IFSC from the ATR (clamped
 * to 1..254), IFSD 32 until negotiated, EDC as the ATR says. */
void tk_t1_init(tk_t1_t *t, size_t ifsc, bool crc);

/* Exchange an APDU: chain it in I-blocks of at most IFSC bytes, take the
 * card's chained answer, answer S(WTX) and S(IFS) requests, recover from
 * bad blocks (R-blocks, then S(RESYNCH)). Errors: TK_ERR_INVALID_ARG,
 * TK_ERR_BUFFER_TOO_SMALL (answer larger than cap), TK_ERR_COMM (the
 * exchange was lost but the link was resynchronised: the APDU may be sent
 * again), TK_ERR_UNRESPONSIVE (no resynchronisation: the card needs a
 * reset), TK_ERR_PROTOCOL (the card aborted the chain, or its blocks make
 * no sense within the budget), transport errors. */
int tk_t1_transceive(tk_t1_t *t, tk_t1_xfer_fn xfer, void *ctx, const uint8_t *apdu, size_t len,
                     uint8_t *resp, size_t cap, size_t *rlen);

/* Continue an exchange whose first I-block someone else sent (the PIN pad
 * of a TPDU reader builds it from our prologue, 6.1.11): first is the
 * card's answer to it. The block cannot be sent again, so a request to
 * repeat it fails with TK_ERR_COMM. Errors as tk_t1_transceive. */
int tk_t1_continue(tk_t1_t *t, tk_t1_xfer_fn xfer, void *ctx, const uint8_t *first,
                   size_t first_len, uint8_t *resp, size_t cap, size_t *rlen);
/* The prologue of the single I-block of len bytes that would be sent next
 * (for the PIN pad), without changing the state. */
void tk_t1_prologue(const tk_t1_t *t, size_t len, uint8_t out[TK_T1_PROLOGUE]);

/* Tell the card our IFSD with S(IFS request) (11.4.2). Errors:
 * TK_ERR_INVALID_ARG (ifsd not 1..254), TK_ERR_PROTOCOL (no matching
 * S(IFS response) within the retries), transport errors. */
int tk_t1_negotiate_ifsd(tk_t1_t *t, tk_t1_xfer_fn xfer, void *ctx, size_t ifsd);

/* S(RESYNCH request) until answered (at most TK_T1_MAX_RESYNCH tries);
 * sequence numbers restart at 0. Errors: TK_ERR_UNRESPONSIVE, transport
 * errors. */
int tk_t1_resynch(tk_t1_t *t, tk_t1_xfer_fn xfer, void *ctx);

#endif
