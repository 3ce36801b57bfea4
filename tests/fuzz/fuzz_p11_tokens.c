/* Fuzz target: the module's parsers of the broker's BP_TOKENS,
 * BP_READERS, BP_CARD_OPEN, BP_CARD_IO and BP_READER_RESET answers
 * (pkcs11/tokens.c), what the tool reads from a broker through the module;
 * each input goes to all five. A parsed view's strings are terminated and its certificates lie in
 * memory of its own; a card's answer fits the buffer given; nothing may
 * crash, leak or read out of bounds. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <tokenkit/err.h>

#include "tokens.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	tk_p11ext_token_t *v = NULL;
	tk_slot_diag_t *r = NULL;
	tk_p11ext_card_info_t info;
	uint8_t resp[64];
	tk_recovery_t rec;
	int err;
	size_t n = 0, sum = 0;

	if (tk_p11_card_open_parse(data, size, &info) == TK_P11EXT_OK)
		sum += strlen(info.reader) + info.atr_len + (info.atr_len > 0 ? info.atr[0] : 0);
	if (tk_p11_card_io_parse(data, size, resp, sizeof(resp), &n) == TK_OK && n > 0)
		sum += resp[n - 1];
	if (tk_p11_reset_parse(data, size, &err, &rec) == TK_P11EXT_OK)
		sum += strlen(rec.what) + rec.nsteps + (size_t)rec.steps[0].step;
	n = 0;

	if (tk_p11_readers_parse(data, size, &r, &n) == TK_P11EXT_OK) {
		for (size_t i = 0; i < n; i++)
			sum += strlen(r[i].info.reader) + strlen(r[i].info.backend) +
			       strlen(r[i].info.exchange) +
			       (r[i].info.atr_len > 0 ? r[i].info.atr[r[i].info.atr_len - 1] : 0);
		free(r);
	}
	if (tk_p11_tokens_parse(data, size, &v, &n) != TK_P11EXT_OK)
		return sum == (size_t)-1;
	for (size_t i = 0; i < n; i++) {
		sum += strlen(v[i].reader) + strlen(v[i].info.label) + strlen(v[i].info.serial);
		for (size_t j = 0; j < v[i].nobjs; j++) {
			const tk_object_t *o = &v[i].objs[j];

			sum += strlen(o->label) + o->id_len;
			if (o->der_len > 0)
				sum += o->der[0] + o->der[o->der_len - 1];
		}
	}
	tk_p11_ext.tokens_free(v, n);
	return sum == (size_t)-1;
}
