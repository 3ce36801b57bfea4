/* Fuzz the registry's file parsers: a registration record and the store's
 * identity file (the first input byte chooses; the rest is the file). Both
 * end with a SHA-256 over everything before it, which a mutated input
 * almost never matches: the harness recomputes it, so the CBOR parser and
 * the field checks behind it get the mutations (the check itself is covered
 * by tests/unit/test_registry.c). What decodes must encode back to the same
 * bytes (there is one encoding) and decode to an equal registration. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include <tokenkit/err.h>

#include "registry_priv.h"

#define DIGEST_LEN 32

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void
record(const uint8_t *in, size_t size)
{
	tk_registration_t *r = NULL, *r2 = NULL;
	uint8_t *enc = NULL;
	size_t el = 0;

	if (tk_reg_decode(in, size, &r) != TK_OK)
		return;
	if (tk_reg_encode(r, &enc, &el) != TK_OK || el != size || memcmp(enc, in, size) != 0)
		abort();
	if (tk_reg_decode(enc, el, &r2) != TK_OK || !tk_registration_equal(r, r2) ||
	    tk_registration_generation(r) != tk_registration_generation(r2))
		abort();
	free(enc);
	tk_registration_free(&r);
	tk_registration_free(&r2);
}

static void
store_id(const uint8_t *in, size_t size)
{
	tk_reg_store_id_t id, id2;
	uint8_t *enc = NULL;
	size_t el = 0;

	if (tk_reg_store_id_decode(in, size, &id) != TK_OK)
		return;
	if (tk_reg_store_id_encode(&id, &enc, &el) != TK_OK || el != size ||
	    memcmp(enc, in, size) != 0)
		abort();
	if (tk_reg_store_id_decode(enc, el, &id2) != TK_OK || memcmp(&id, &id2, sizeof(id)) != 0)
		abort();
	free(enc);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	uint8_t *in;

	if (size < 1 || size > TK_REG_RECORD_MAX + 1)
		return 0;
	in = malloc(size);
	if (in == NULL)
		return 0;
	memcpy(in, data + 1, size - 1);
	size--;
	if (size >= DIGEST_LEN && EVP_Digest(in, size - DIGEST_LEN, in + size - DIGEST_LEN, NULL,
	                                     EVP_sha256(), NULL) != 1)
		abort();
	if (data[0] & 1)
		store_id(in, size);
	else
		record(in, size);
	free(in);
	return 0;
}
