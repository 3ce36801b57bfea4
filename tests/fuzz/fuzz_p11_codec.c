/* Fuzz target: the PKCS#11 module's decoders of data that come from the card
 * or the client — EME-PKCS1-v1_5 and EME-OAEP decoding of a raw RSA result,
 * and the DER OCTET STRING unwrapping used for CKA_EC_POINT / ECDH input.
 * Input: one selector byte, then the data. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

/* The module's internals (tokenkit_p11_internal). */
#include "p11.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	uint8_t out[1024];
	size_t out_len = 0;
	const uint8_t *p;
	uint8_t sel;

	if (size < 1)
		return 0;
	sel = data[0];
	data++;
	size--;
	if (size > sizeof(out))
		size = sizeof(out);
	switch (sel % 4) {
	case 0:
		if (tk_p11_pkcs1_type2_decode(data, size, out, &out_len) == TK_OK &&
		    out_len + 11 > size)
			abort(); /* at least 8 bytes of padding and 3 framing bytes */
		break;
	case 1:
	case 2: {
		const EVP_MD *md = sel % 4 == 1 ? EVP_sha1() : EVP_sha256();
		static const uint8_t label[] = "label";

		if (tk_p11_oaep_decode(md, md, sel & 0x80 ? label : NULL, sel & 0x80 ? 5 : 0, data,
		                       size, out, &out_len) == TK_OK &&
		    out_len + 2 * (size_t)EVP_MD_get_size(md) + 2 > size)
			abort();
		break;
	}
	case 3:
		p = tk_p11_der_unwrap_octet_string(data, size, &out_len);
		if (p != NULL) {
			uint8_t *again = NULL;
			size_t again_len = 0;

			if (p < data || p + out_len != data + size)
				abort();
			/* re-wrapping gives back a valid encoding of the same bytes */
			if (tk_p11_der_octet_string(p, out_len, &again, &again_len) == TK_OK) {
				size_t n2 = 0;
				const uint8_t *q =
				        tk_p11_der_unwrap_octet_string(again, again_len, &n2);

				if (q == NULL || n2 != out_len || memcmp(q, p, n2) != 0)
					abort();
				free(again);
			}
		}
		break;
	}
	return 0;
}
