/* tokenkit CCID: T=0 at the TPDU level (ISO/IEC 7816-3:2006, 10;
 * ISO/IEC 7816-4:2020, 12.1.2 for the mapping of APDUs to TPDUs).
 *
 * A TPDU-level reader handles the procedure bytes of each TPDU itself (INS
 * and its complement: send data / one byte; 60: NULL, wait): the host sends
 * CLA INS P1 P2 P3 [data] and gets the response data and SW1 SW2. What is
 * left to the host is the APDU-to-TPDU mapping: case 1 carries P3 = 00,
 * case 3 and 4 carry Lc as P3 and no Le, and the answer to case 4 (61xx)
 * and to a wrong Le in case 2 (6Cxx) are completed with GET RESPONSE and a
 * resend. Extended APDUs do not exist in T=0. */
#ifndef TK_CCID_T0_H
#define TK_CCID_T0_H

#include <tokenkit/apdu.h>
#include <tokenkit/common.h>

/* Exchange a short command APDU with a T=0 card through xfer (which sends
 * one TPDU and returns data + SW1 SW2). resp gets data + SW1 SW2 as the
 * card would have answered the APDU at the APDU level. Errors:
 * TK_ERR_INVALID_ARG, TK_ERR_NOT_SUPPORTED (extended APDU),
 * TK_ERR_MALFORMED / TK_ERR_TRUNCATED (not an APDU), TK_ERR_BUFFER_TOO_SMALL,
 * TK_ERR_PROTOCOL (GET RESPONSE without end), transport errors. */
int tk_t0_transceive(tk_transmit_fn xfer, void *ctx, const uint8_t *apdu, size_t len, uint8_t *resp,
                     size_t cap, size_t *rlen);

#endif
