/* Fuzz target: the reader spec (core/readers.c, tk_reader_spec_parse) of
 * $TOKENKIT_READERS. Every item it accepts has a valid backend name, names
 * are unique, and a config lies inside the parsed text. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <tokenkit/err.h>

#include "reader.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	tk_reader_spec_item_t it[TK_READER_SPEC_MAX];
	char *spec;
	size_t n = 99;
	int r;

	if (size > 4096)
		return 0;
	spec = malloc(size + 1);
	if (spec == NULL)
		return 0;
	memcpy(spec, data, size);
	spec[size] = '\0';
	r = tk_reader_spec_parse(spec, it, TK_READER_SPEC_MAX, &n);
	if (r != TK_OK) {
		if (n != 0 || (r != TK_ERR_INVALID_ARG && r != TK_ERR_TOO_LONG))
			abort();
		goto out;
	}
	if (n == 0 || n > TK_READER_SPEC_MAX)
		abort();
	for (size_t i = 0; i < n; i++) {
		size_t len = strlen(it[i].name);

		if (len == 0 || len > TK_READER_BACKEND_NAME_MAX ||
		    strspn(it[i].name, "abcdefghijklmnopqrstuvwxyz0123456789_") != len)
			abort();
		for (size_t j = 0; j < i; j++)
			if (strcmp(it[i].name, it[j].name) == 0)
				abort();
		if (it[i].config != NULL &&
		    (it[i].config < spec || it[i].config + strlen(it[i].config) > spec + size))
			abort();
	}
out:
	free(spec);
	return 0;
}
