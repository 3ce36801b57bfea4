/* Fuzz the PIV provisioning parsers (tools/tokenkit/piv_prov.c): the first
 * byte picks what the rest is: 0..2 a GENERATE response for RSA-2048,
 * P-256 or P-384, 3 a slot's GET METADATA response, 4 a GENERAL
 * AUTHENTICATE response (7C), 5 a key file (PEM or PKCS#12, passphrase
 * "fuzz"). What is returned must lie inside the input; a key that parses
 * must be one OpenSSL can encode back, and a key file's key one that
 * either encodes for IMPORT or is refused as not a PIV key. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/x509.h>

#include <tokenkit/err.h>

#include "piv_prov.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int
pass(void *ctx, char *buf, size_t cap, size_t *len)
{
	(void)ctx;
	if (cap < 5)
		return TK_ERR_BUFFER_TOO_SMALL;
	memcpy(buf, "fuzz", 5);
	*len = 4;
	return TK_OK;
}

static void
check_keyfile(const uint8_t *p, size_t n)
{
	EVP_PKEY *k = NULL;
	X509 *x = NULL;
	uint8_t buf[1400];
	size_t bl = 0;
	int r;

	if (piv_load_key_mem(p, n, pass, NULL, &k, &x) != TK_OK) {
		if (k != NULL || x != NULL)
			abort();
		return;
	}
	r = piv_import_data(k, 0, 0, buf, sizeof(buf), &bl);
	if (r != TK_OK && r != TK_ERR_NOT_SUPPORTED)
		abort();
	X509_free(x);
	EVP_PKEY_free(k);
}

static void
check_key(EVP_PKEY *k)
{
	unsigned char *der = NULL;

	if (k == NULL)
		return;
	if (i2d_PUBKEY(k, &der) <= 0)
		abort();
	OPENSSL_free(der);
	EVP_PKEY_free(k);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const uint8_t algs[] = {PIV_ALG_RSA2048, PIV_ALG_ECCP256, PIV_ALG_ECCP384};
	const uint8_t *p = data + 1, *v = NULL;
	size_t n = size - 1, vl = 0;
	EVP_PKEY *k = NULL;
	uint8_t alg = 0;

	if (size < 1)
		return 0;
	switch (data[0] % 6) {
	case 0:
	case 1:
	case 2:
		if (piv_pubkey_from_generate(algs[data[0] % 5], p, n, &k) == TK_OK)
			check_key(k);
		else if (k != NULL)
			abort();
		break;
	case 3:
		if (piv_pubkey_from_metadata(p, n, &alg, &k) == TK_OK)
			check_key(k);
		else if (k != NULL)
			abort();
		break;
	case 5:
		check_keyfile(p, n);
		break;
	default:
		if (piv_auth_response(p, n, 0x82, &v, &vl) == TK_OK &&
		    (vl == 0 || v < p || v + vl > p + n))
			abort();
		break;
	}
	return 0;
}
