/* Fuzz the public-object cache file parser. The file ends with a SHA-256
 * over everything before it, which a mutated input almost never matches: the
 * harness recomputes it, so the parser behind the check (identity, record
 * count, records) gets the mutations. The check itself is covered by
 * tests/unit/test_cache.c (a file with a wrong checksum is refused). What
 * decodes must encode back to the same bytes and decode to an equal cache. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include <tokenkit/err.h>

#include "cache.h"

#define DIGEST_LEN 32

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	tk_cache_t *c = NULL, *c2 = NULL;
	uint8_t *in, *enc = NULL;
	size_t el = 0;

	if (size > TK_CACHE_MAX_FILE)
		return 0;
	in = malloc(size > 0 ? size : 1);
	if (in == NULL)
		return 0;
	memcpy(in, data, size);
	if (size >= DIGEST_LEN && EVP_Digest(in, size - DIGEST_LEN, in + size - DIGEST_LEN, NULL,
	                                     EVP_sha256(), NULL) != 1)
		abort();
	if (tk_cache_decode(in, size, &c) != TK_OK)
		goto out;
	if (tk_cache_encode(c, &enc, &el) != TK_OK)
		abort();
	if (el != size || memcmp(enc, in, size) != 0)
		abort();
	if (tk_cache_decode(enc, el, &c2) != TK_OK || !tk_cache_equal(c, c2))
		abort();
out:
	free(enc);
	tk_cache_free(&c);
	tk_cache_free(&c2);
	free(in);
	return 0;
}
