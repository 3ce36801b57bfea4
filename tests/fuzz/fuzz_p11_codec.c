/* Fuzz target: the PKCS#11 module's decoders of data that come from the card
 * or the client — EME-PKCS1-v1_5 and EME-OAEP decoding of a raw RSA result,
 * and the DER OCTET STRING unwrapping used for CKA_EC_POINT / ECDH input.
 * Input: one selector byte, then the data. With bit 6 of the selector set
 * the data is a message that OpenSSL pads with EME-OAEP first (random bytes
 * almost never decode, so the decoder's success path needs a real
 * encoding): it must decode to the message, and again after one byte of the
 * encoding is changed (the next data byte picks which) it must not crash. */
/* RSA_padding_add_PKCS1_OAEP_mgf1: deprecated, but the one call that pads
 * without a key */
#define OPENSSL_SUPPRESS_DEPRECATED
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/rsa.h>

/* The module's internals (tokenkit_p11_internal). */
#include "p11.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int
oaep_round_trip(uint8_t sel, const uint8_t *data, size_t size)
{
	static const uint8_t label[] = "label";
	const EVP_MD *md = sel & 1 ? EVP_sha1() : EVP_sha256();
	size_t k = 256, hlen = (size_t)EVP_MD_get_size(md), max = k - 2 * hlen - 2, n = 0;
	const uint8_t *l = sel & 0x80 ? label : NULL;
	size_t ll = sel & 0x80 ? 5 : 0;
	uint8_t em[256], out[256];
	size_t at;

	at = size > 0 ? data[0] % k : 0;
	if (size > max)
		size = max;
	if (RSA_padding_add_PKCS1_OAEP_mgf1(em, (int)k, data, (int)size, l, (int)ll, md, md) != 1)
		return 0;
	if (tk_p11_oaep_decode(md, md, l, ll, em, k, out, &n) != TK_OK || n != size ||
	    (size > 0 && memcmp(out, data, size) != 0))
		abort();
	em[at] ^= 0x5A;
	if (tk_p11_oaep_decode(md, md, l, ll, em, k, out, &n) == TK_OK && n > max)
		abort();
	return 0;
}

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
	if (sel & 0x40)
		return oaep_round_trip(sel, data, size);
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
