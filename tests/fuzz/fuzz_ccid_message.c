/* Fuzz target: the CCID message codec (ccid/message.c): replies and their
 * status, commands, interrupt messages, protocol data structures and the
 * PIN-pad structures. The first byte picks the parser (and a slot count or
 * protocol number); the rest is the message. What parses must encode back
 * to the same bytes. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <tokenkit/err.h>

#include "descriptor.h"
#include "message.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static uint8_t out[TK_CCID_HDR_LEN + 70000];

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	uint8_t sel;
	size_t n = 0, want = 0;

	if (size < 1)
		return 0;
	sel = data[0];
	data++;
	size--;
	switch (sel % 6) {
	case 0: {
		tk_ccid_reply_t r;

		if (tk_ccid_reply_size(data, size, TK_CCID_MAX_MSG_LEN, &want) == TK_OK &&
		    (want < TK_CCID_HDR_LEN || want > TK_CCID_MAX_MSG_LEN))
			abort();
		if (tk_ccid_reply_parse(data, size, &r) != TK_OK)
			break;
		if (r.len + TK_CCID_HDR_LEN != size || want != size)
			abort();
		(void)tk_ccid_reply_err(&r);
		(void)tk_ccid_error_name(r.error);
		(void)tk_ccid_msg_name(r.type);
		if (tk_ccid_reply_encode(&r, out, sizeof(out), &n) != TK_OK || n != size ||
		    memcmp(out, data, size) != 0)
			abort();
		break;
	}
	case 1: {
		tk_ccid_cmd_t c;

		if (tk_ccid_cmd_parse(data, size, &c) != TK_OK)
			break;
		if (tk_ccid_cmd_encode(&c, out, sizeof(out), &n) != TK_OK || n != size ||
		    memcmp(out, data, size) != 0)
			abort();
		break;
	}
	case 2: {
		tk_ccid_intr_t ev;
		unsigned nslots = 1 + (sel >> 3) % TK_CCID_MAX_SLOTS;

		if (tk_ccid_intr_parse(data, size, nslots, &ev) == TK_OK &&
		    ((ev.present | ev.changed) >> nslots) != 0)
			abort();
		break;
	}
	case 3: {
		tk_ccid_params_t p;

		if (tk_ccid_params_parse((uint8_t)((sel >> 3) & 3), data, size, &p) != TK_OK)
			break;
		if (tk_ccid_params_encode(&p, out, sizeof(out), &n) != TK_OK || n != size ||
		    memcmp(out, data, size) != 0)
			abort();
		break;
	}
	case 4: {
		tk_ccid_pin_op_t op;

		if (tk_ccid_pin_parse(data, size, &op) != TK_OK)
			break;
		if (op.apdu_len < 4 || op.apdu + op.apdu_len != data + size)
			abort();
		/* what encodes must parse back the same */
		if (op.apdu_len <= 261 && tk_ccid_pin_encode(&op, out, sizeof(out), &n) == TK_OK &&
		    (n != size || memcmp(out, data, size) != 0))
			abort();
		break;
	}
	default: {
		/* reassembly: a reply split at every point is still one reply */
		size_t cut = size ? (size_t)(sel >> 3) % size : 0;

		if (tk_ccid_reply_size(data, cut, 271, &want) == TK_OK && cut < TK_CCID_HDR_LEN)
			abort();
		break;
	}
	}
	return 0;
}
