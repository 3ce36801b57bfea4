/* tokenkit virtual card: vpcd message framing.
 *
 * Every vpcd message, in both directions, is a big-endian uint16 length and
 * that many bytes (VPCD.md): length 1 is a control byte, longer is an APDU,
 * 0 is legal on the wire but means nothing. This module only frames; it does
 * no I/O and never looks inside a message.
 *
 * The decoder is fed whatever the socket returned, in chunks of any size,
 * and yields one complete message at a time. It holds at most one message,
 * in a buffer the caller provides; a frame longer than that buffer is an
 * error, never an overflow. A reader that must not take bytes of the next
 * message before it has answered the current one (tokenkit-vcard) asks
 * tk_vpcd_dec_want() how many bytes end the current message and reads no
 * more than that. */
#ifndef TK_VCARD_VPCD_FRAME_H
#define TK_VCARD_VPCD_FRAME_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define TK_VPCD_HDR_LEN 2
#define TK_VPCD_FRAME_MAX 65535u

typedef struct tk_vpcd_dec {
	uint8_t *buf; /* payload of the current message, cap bytes */
	size_t cap;
	uint8_t hdr[TK_VPCD_HDR_LEN];
	size_t hdr_len; /* header bytes so far */
	size_t need;    /* payload length, once the header is complete */
	size_t have;    /* payload bytes so far */
	bool done;      /* buf holds a complete message, yielded by feed */
	int err;        /* sticky: a frame longer than cap */
} tk_vpcd_dec_t;

/* Start a decoder on buf (cap bytes; TK_VPCD_FRAME_MAX takes every frame;
 * buf NULL means cap 0: only empty messages fit). buf stays the caller's;
 * the decoder wipes what it held on reset. */
void tk_vpcd_dec_init(tk_vpcd_dec_t *d, uint8_t *buf, size_t cap);

/* Wipe the message held (partial or complete) and wait for a new header:
 * after a message is handled, and when the connection is dropped. */
void tk_vpcd_dec_reset(tk_vpcd_dec_t *d);

/* How many bytes to read next without passing the end of the current
 * message: the rest of the header while it is incomplete, then the rest of
 * the payload (a whole header again after a complete message). >= 1; 0
 * after an error. */
size_t tk_vpcd_dec_want(const tk_vpcd_dec_t *d);

/* Consume bytes of data (len may be 0) up to the end of one message.
 * *used: bytes consumed (the rest belongs to later messages). When a message
 * completes, *msg points at its payload in the decoder's buffer (non-NULL,
 * even for an empty message) and *msg_len is its length; it stays valid
 * until the next feed or reset. Otherwise *msg is NULL and *msg_len 0.
 * A call after a complete message starts the next one (the previous payload
 * is wiped first).
 * Errors: TK_ERR_INVALID_ARG (NULL data with len > 0); TK_ERR_TOO_LONG, the
 * header announces more than cap bytes (sticky until reset; nothing after
 * the header is consumed). */
int tk_vpcd_dec_feed(tk_vpcd_dec_t *d, const uint8_t *data, size_t len, size_t *used,
                     const uint8_t **msg, size_t *msg_len);

/* Write the header of a frame of len payload bytes.
 * Errors: TK_ERR_TOO_LONG (len > TK_VPCD_FRAME_MAX). */
int tk_vpcd_frame_header(size_t len, uint8_t hdr[TK_VPCD_HDR_LEN]);

#endif
