/* Fuzz target: the PKCS#11 module's parsing of the peer's public point for
 * CKM_ECDH1_DERIVE (tk_p11_ecdh_peer_point, pkcs11/derive.c): the raw
 * uncompressed point, or a DER OCTET STRING around it, for a key of a given
 * field size.
 * Input: one byte choosing the field size (P-256, P-384, P-521 or a small
 * odd one), then the client's bytes. A point it accepts lies inside the
 * input, is uncompressed (04 X Y) and has exactly 1 + 2 * field bytes. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "p11.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const size_t field[] = {32, 48, 66, 3};
	const uint8_t *pt = (const uint8_t *)1;
	size_t fb, len = 1;
	uint8_t *copy;
	CK_RV rv;

	if (size < 1)
		return 0;
	fb = field[data[0] % 4];
	/* an exact-size copy, so ASan sees any read past the client's bytes */
	copy = malloc(size - 1 > 0 ? size - 1 : 1);
	if (copy == NULL)
		return 0;
	memcpy(copy, data + 1, size - 1);
	rv = tk_p11_ecdh_peer_point(copy, size - 1, fb, &pt, &len);
	if (rv == CKR_OK) {
		if (pt < copy || pt + len > copy + size - 1 || len != 1 + 2 * fb || pt[0] != 0x04)
			abort();
		/* the raw form is taken as it is */
		if (size - 1 == 1 + 2 * fb && pt != copy)
			abort();
	} else if (rv != CKR_MECHANISM_PARAM_INVALID || pt != NULL || len != 0) {
		abort();
	}
	free(copy);
	return 0;
}
