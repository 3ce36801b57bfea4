/* Fuzz the public-object cache file parser. What decodes must encode back
 * to the same bytes and decode to an equal cache. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <tokenkit/err.h>

#include "cache.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	tk_cache_t *c = NULL, *c2 = NULL;
	uint8_t *enc = NULL;
	size_t el = 0;

	if (tk_cache_decode(data, size, &c) != TK_OK)
		return 0;
	if (tk_cache_encode(c, &enc, &el) != TK_OK)
		abort();
	if (el != size || memcmp(enc, data, size) != 0)
		abort();
	if (tk_cache_decode(enc, el, &c2) != TK_OK || !tk_cache_equal(c, c2))
		abort();
	free(enc);
	tk_cache_free(&c);
	tk_cache_free(&c2);
	return 0;
}
