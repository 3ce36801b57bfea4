/* tokenkit: ISO 7816-4 command APDUs.
 *
 * Encoding of cases 1-4 in short and extended form, command chaining, and
 * the exchange loop that handles 61xx (GET RESPONSE) and 6Cxx (resend with
 * the corrected Le) over any transmit function. */
#ifndef TOKENKIT_APDU_H
#define TOKENKIT_APDU_H

#include <tokenkit/common.h>

typedef struct tk_apdu {
	uint8_t cla, ins, p1, p2;
	const uint8_t *data; /* command data (Nc bytes), may be NULL if lc == 0 */
	size_t lc;           /* Nc: 0 .. 65535 */
	size_t le;           /* Ne: 0 = no Le field; 256 (short) / 65536 (extended) = "all" */
} tk_apdu_t;

/* Largest APDU sizes we ever build or accept. */
#define TK_APDU_MAX_SHORT_CMD (5 + 255 + 1)
#define TK_APDU_MAX_EXT_CMD (7 + 65535 + 2)
#define TK_APDU_MAX_RESP (65536 + 2)

/* Encode a single APDU. extended selects the extended-length form (needed
 * when lc > 255 or le > 256). Errors: TK_ERR_INVALID_ARG (lc > 65535,
 * le > 65536, or lc/le too large for short form when !extended),
 * TK_ERR_BUFFER_TOO_SMALL. */
TK_EXPORT int tk_apdu_encode(const tk_apdu_t *a, bool extended, uint8_t *out, size_t cap,
                             size_t *out_len);

/* Decode a raw command APDU (the virtual card, logs and fuzzers use this).
 * a->data points into cmd. Errors: TK_ERR_MALFORMED, TK_ERR_TRUNCATED. */
TK_EXPORT int tk_apdu_decode(const uint8_t *cmd, size_t len, tk_apdu_t *a, bool *extended);

/* Transmit one raw APDU; the response includes SW1 SW2. Returns a tk_err. */
typedef int (*tk_transmit_fn)(void *ctx, const uint8_t *cmd, size_t cmd_len, uint8_t *resp,
                              size_t resp_cap, size_t *resp_len);

/* Exchange options. */
typedef struct tk_apdu_opts {
	bool extended;             /* extended length allowed by reader and card */
	size_t max_chunk;          /* command chaining part size; without extended
	                            * length 0 means 255 (and more is cut to 255); with
	                            * it, 0 means no chaining (send up to 65535 at once) */
	unsigned max_get_response; /* bound on 61xx rounds (0: 64) */
} tk_apdu_opts_t;

/* Send a, chaining the data when it does not fit one APDU (CLA | 0x10 on all
 * but the last, which alone carries Le), follow 61xx with GET RESPONSE
 * (00 C0 00 00 xx on the command's logical channel, bounded) and 6Cxx with
 * one resend using Le = xx. The short form is used whenever it suffices;
 * without extended length an Ne above 256 is asked as 256 and the card
 * announces the rest with 61xx. opts may be NULL (all defaults).
 *
 * The response data of all parts is concatenated into resp; *sw gets the
 * final status word. A status word other than 9000 is not an error here; on
 * a chained part it ends the exchange and is returned in *sw. On error
 * *resp_len is 0 and *sw holds the last status word seen (0 if none).
 * Errors: TK_ERR_INVALID_ARG, TK_ERR_NO_MEMORY, transport errors from fn,
 * TK_ERR_COMM (response shorter than 2 bytes), TK_ERR_BUFFER_TOO_SMALL
 * (response larger than resp_cap), TK_ERR_PROTOCOL (GET RESPONSE loop
 * exceeded its bound). */
TK_EXPORT int tk_apdu_exchange(tk_transmit_fn fn, void *ctx, const tk_apdu_opts_t *opts,
                               const tk_apdu_t *a, uint8_t *resp, size_t resp_cap, size_t *resp_len,
                               uint16_t *sw);

#endif
