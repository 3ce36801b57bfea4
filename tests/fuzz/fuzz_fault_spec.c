/* Fuzz target: fault specs of the virtual card (tools/vcard/fault.c), the
 * lines its control socket takes. Two specs are applied in turn; a refused
 * spec must leave the state exactly as it was (same description), and the
 * state must then drive APDU and power events without misbehaving. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <tokenkit/err.h>

#include "fault.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void
apply(tk_fault_t *f, const char *spec)
{
	char before[128], after[128], err[160];

	tk_fault_describe(f, before, sizeof(before));
	if (tk_fault_apply(f, spec, err, sizeof(err)) != TK_OK) {
		tk_fault_describe(f, after, sizeof(after));
		if (strcmp(before, after) != 0 || err[0] == '\0')
			abort();
	}
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	tk_fault_t *f = NULL;
	char *text, *second;
	uint32_t delay;
	uint8_t buf[40];

	if (size > 4096 || tk_fault_new(&f) != TK_OK)
		return 0;
	text = malloc(size + 1);
	if (text == NULL)
		goto out;
	memcpy(text, data, size);
	text[size] = '\0';
	second = strchr(text, '\n'); /* one control line, then another */
	if (second != NULL)
		*second++ = '\0';
	apply(f, text);
	if (second != NULL)
		apply(f, second);
	for (int i = 0; i < 4; i++) {
		switch (tk_fault_on_apdu(f, &delay)) {
		case TK_FAULT_GARBAGE:
			if (tk_fault_garbage(buf, sizeof(buf)) < 2)
				abort();
			break;
		case TK_FAULT_HOLD:
		case TK_FAULT_MUTE:
			if (!tk_fault_holding(f))
				abort();
			if (tk_fault_release_ready(f))
				tk_fault_released(f);
			break;
		default:
			break;
		}
		if (i == 2 && tk_fault_on_power(f, (size & 1) != 0) && tk_fault_holding(f))
			abort(); /* a dropped APDU is no longer held */
	}
	(void)tk_fault_present(f);
	(void)tk_fault_away_ms(f);
out:
	free(text);
	tk_fault_free(&f);
	return 0;
}
