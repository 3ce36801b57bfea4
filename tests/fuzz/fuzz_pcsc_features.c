/* Fuzz target: the PC/SC part 10 feature list a reader driver answers
 * (core/pinpad.c, tk_pcsc_features_parse). A list it accepts gives codes
 * that are not 0, and parsing is all or nothing. */
#include <stdint.h>
#include <stdlib.h>

#include <tokenkit/err.h>

#include "pinpad.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	tk_pcsc_features_t f;
	size_t set = 0, tlvs = 0;
	int r;

	r = tk_pcsc_features_parse(data, size, &f);
	for (size_t i = 0; i < TK_PCSC_FEATURE_MAX; i++)
		set += f.code[i] != 0;
	if (r != TK_OK) {
		if (set != 0 || (r != TK_ERR_TRUNCATED && r != TK_ERR_MALFORMED))
			abort();
		return 0;
	}
	if (size % 6 != 0)
		abort();
	for (size_t i = 0; i < size; i += 6)
		tlvs += data[i] < TK_PCSC_FEATURE_MAX;
	if (set != tlvs)
		abort();
	return 0;
}
