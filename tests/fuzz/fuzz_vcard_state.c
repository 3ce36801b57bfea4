/* Fuzz the virtual card's state-file parser.
 *
 * Whatever the bytes, tk_vcard_load_mem() returns an error or a card; a
 * card it accepts must serialise to bytes that load again and serialise to
 * the same bytes, and must answer a few commands. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <tokenkit/apdu.h>
#include <tokenkit/err.h>
#include <tokenkit/log.h>
#include <tokenkit/mem.h>

#include "vcard.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static uint8_t resp[TK_APDU_MAX_RESP];

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const uint8_t cmds[][12] = {
	        {0x00, 0xA4, 0x04, 0x00, 0x05, 0xA0, 0x00, 0x00, 0x03, 0x08},
	        {0x00, 0xCB, 0x3F, 0xFF, 0x05, 0x5C, 0x03, 0x5F, 0xC1, 0x02, 0x00},
	        {0x00, 0x20, 0x00, 0x80, 0x00},
	        {0x00, 0xF7, 0x00, 0x9A, 0x00},
	        {0x00, 0xF7, 0x00, 0x9B, 0x00},
	        {0x00, 0xF9, 0x9A, 0x00, 0x00},
	};
	static const size_t lens[] = {10, 11, 5, 5, 5, 5};
	tk_vcard_t *c = NULL, *c2 = NULL;
	uint8_t *out = NULL, *out2 = NULL;
	size_t out_len = 0, out2_len = 0;

	tk_log_set_level(TK_LOG_NONE);
	if (tk_vcard_load_mem(data, size, &c) != TK_OK) {
		if (c != NULL)
			abort();
		return 0;
	}
	if (tk_vcard_save_mem(c, &out, &out_len) != TK_OK)
		abort();
	if (tk_vcard_load_mem(out, out_len, &c2) != TK_OK)
		abort();
	if (tk_vcard_save_mem(c2, &out2, &out2_len) != TK_OK)
		abort();
	/* serialising is deterministic: objects keep their order, keys go by slot */
	if (out_len != out2_len || memcmp(out, out2, out_len) != 0)
		abort();
	for (size_t i = 0; i < sizeof(lens) / sizeof(lens[0]); i++) {
		size_t n = tk_vcard_process(c, cmds[i], lens[i], resp, sizeof(resp));

		if (n < 2)
			abort();
	}
	tk_freezero(out, out_len);
	tk_freezero(out2, out2_len);
	tk_vcard_free(&c);
	tk_vcard_free(&c2);
	return 0;
}
