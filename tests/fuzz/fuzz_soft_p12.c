/* Fuzz the software token's PKCS#12 reading (drivers/soft/soft_p12.c): the
 * DER and the PKCS#7/SafeContents structures are OpenSSL's to decode; the
 * walk over the bags (keys, certificates, nested SafeContents, the pairing
 * of the key with its certificate) is ours. The seeds are files made by
 * `openssl pkcs12 -export` with the password "pass" (default AES/PBKDF2,
 * -legacy, -nomac, a chain), so mutations that keep the MAC failing still
 * walk the MAC-less seed's bags. */
#include <stdint.h>
#include <stdlib.h>

#include <openssl/evp.h>
#include <openssl/x509.h>

#include <tokenkit/err.h>

#include "../../drivers/soft/soft_int.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	EVP_PKEY *key = NULL;
	X509 *cert = NULL;
	STACK_OF(X509) *chain = NULL;
	int r = tk_soft_p12_parse(data, size, "pass", &key, &cert, &chain);

	/* a success has a key and its certificate; a failure nothing */
	if (r == TK_OK && (key == NULL || cert == NULL || chain == NULL ||
	                   EVP_PKEY_eq(X509_get0_pubkey(cert), key) != 1))
		abort();
	if (r != TK_OK && (key != NULL || cert != NULL || chain != NULL))
		abort();
	EVP_PKEY_free(key);
	X509_free(cert);
	sk_X509_pop_free(chain, X509_free);
	return 0;
}
