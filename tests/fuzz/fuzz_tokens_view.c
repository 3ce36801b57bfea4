/* Fuzz target: the tokenkit tool's parser of the broker's BP_TOKENS answer
 * (tools/tokenkit/tokens_broker.c), what the tool reads from a broker. A
 * parsed view's strings are terminated and its certificates lie in memory
 * of its own; nothing may crash, leak or read out of bounds. */
#include <stdint.h>
#include <string.h>

#include "tokens_view.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct tokens_view *v = NULL;
	size_t n = 0, sum = 0;

	if (tokens_parse_answer(data, size, &v, &n) != TOKENS_OK)
		return 0;
	for (size_t i = 0; i < n; i++) {
		sum += strlen(v[i].reader) + strlen(v[i].info.label) + strlen(v[i].info.serial);
		for (size_t j = 0; j < v[i].nobjs; j++) {
			const tk_object_t *o = &v[i].objs[j];

			sum += strlen(o->label) + o->id_len;
			if (o->der_len > 0)
				sum += o->der[0] + o->der[o->der_len - 1];
		}
	}
	tokens_views_free(v, n);
	return sum == (size_t)-1;
}
