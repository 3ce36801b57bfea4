/* Fuzz the PIV attestation parsers (tools/tokenkit/attest/piv_attest.c):
 * the first byte picks what the rest is: 0 a PIV certificate object
 * (53 { 70 71 FE }), 1 a GET METADATA response and its public key, 2 an
 * attestation certificate's Yubico extensions. Whatever is returned must lie
 * inside the input; a metadata key that parses must be one OpenSSL can
 * encode back. */
#include <stdint.h>
#include <stdlib.h>

#include <openssl/x509.h>

#include <tokenkit/err.h>

#include "piv_attest.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void
check_inside(const uint8_t *p, size_t n, const uint8_t *base, size_t size)
{
	if (n > 0 && (p < base || p + n > base + size))
		abort();
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const uint8_t *p = data + 1, *c = NULL;
	size_t n = size - 1, cl = 0;

	if (size < 1)
		return 0;
	switch (data[0] % 3) {
	case 0:
		if (tool_piv_object_cert(p, n, &c, &cl) == TK_OK)
			check_inside(c, cl, p, n);
		break;
	case 1: {
		tool_piv_meta_t m;

		if (tool_piv_metadata_parse(p, n, &m) != TK_OK || m.pub == NULL)
			break;
		check_inside(m.pub, m.pub_len, p, n);
		for (int alg = 0; alg < 256; alg++) {
			EVP_PKEY *k = NULL;

			if (tool_piv_pubkey((uint8_t)alg, m.pub, m.pub_len, &k) == TK_OK) {
				if (k == NULL || i2d_PUBKEY(k, NULL) <= 0)
					abort();
			}
			EVP_PKEY_free(k);
		}
		break;
	}
	default: {
		const unsigned char *q = p;
		X509 *x = d2i_X509(NULL, &q, (long)n);
		tool_attest_info_t info;

		if (x != NULL)
			(void)tool_attest_info(x, &info);
		X509_free(x);
		break;
	}
	}
	return 0;
}
