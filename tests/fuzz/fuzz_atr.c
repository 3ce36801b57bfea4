/* Fuzz target: ATR parsing and description (core/atr.c). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <tokenkit/atr.h>
#include <tokenkit/err.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static char text[8192];
	tk_atr_t a;
	int r;

	r = tk_atr_parse(data, size, &a);
	if (r != TK_OK) {
		if (a.len != 0 || a.levels != 0)
			abort(); /* output cleared on failure */
		return 0;
	}
	if (a.len != size || a.hist_len > 15 || a.levels > TK_ATR_MAX_LEVELS)
		abort();
	if (tk_atr_describe(&a, text, sizeof(text)) != TK_OK || strlen(text) >= sizeof(text))
		abort();
	/* Every cut-off size still terminates the text. */
	for (size_t cap = 1; cap < 64; cap += 7) {
		r = tk_atr_describe(&a, text, cap);
		if ((r != TK_OK && r != TK_ERR_BUFFER_TOO_SMALL) || strlen(text) >= cap)
			abort();
	}
	(void)tk_atr_extended_length(&a);
	(void)tk_atr_command_chaining(&a);
	return 0;
}
