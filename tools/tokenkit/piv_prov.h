/* PIV provisioning helpers of the tokenkit tool that read card data: the
 * public key a card returns from GENERATE ASYMMETRIC KEY PAIR (template
 * 7F49 holding 81 modulus / 82 exponent, or 86 EC point) or from Yubico's
 * GET METADATA (tag 04, the same elements without 7F49), and the
 * signature in a GENERAL AUTHENTICATE response (7C { 82 ... }). A static
 * library (tktool_piv) shared by the CLI, the unit test and the fuzz
 * target; public headers and OpenSSL only. */
#ifndef TK_TOOL_PIV_PROV_H
#define TK_TOOL_PIV_PROV_H

#include <stddef.h>
#include <stdint.h>

#include <openssl/evp.h>
#include <openssl/x509.h>

/* PIV algorithm identifiers (SP 800-78-4 table 6-2) */
enum {
	PIV_ALG_3DES = 0x03,
	PIV_ALG_RSA2048 = 0x07,
	PIV_ALG_AES128 = 0x08,
	PIV_ALG_AES192 = 0x0A,
	PIV_ALG_AES256 = 0x0C,
	PIV_ALG_ECCP256 = 0x11,
	PIV_ALG_ECCP384 = 0x14,
};

/* The object holding key slot ref's certificate (SP 800-73-4 part 1,
 * table 3 and the retired slots 82..95); 0 for a slot without one. */
uint32_t piv_slot_object(uint8_t ref);
/* "9a", "0x9A", ...: a key slot with a certificate object. */
int piv_parse_slot(const char *s, uint8_t *ref);

/* The public key (RSA-2048, P-256, P-384: alg) in a GENERATE response:
 * one 7F49 template, its elements as tool_piv_pubkey reads them. */
int piv_pubkey_from_generate(uint8_t alg, const uint8_t *p, size_t len, EVP_PKEY **out);
/* The algorithm (01) and public key (04) in a slot's GET METADATA
 * response; TK_ERR_NOT_SUPPORTED for another algorithm than those three. */
int piv_pubkey_from_metadata(const uint8_t *p, size_t len, uint8_t *alg, EVP_PKEY **out);
/* The 82 element of a GENERAL AUTHENTICATE response 7C { 82 ... }: a
 * pointer into p. */
int piv_auth_response(const uint8_t *p, size_t len, uint32_t tag, const uint8_t **v, size_t *vlen);

/* A certificate from a file, PEM or DER; NULL when there is none. */
X509 *piv_load_cert(const char *path);

#endif
