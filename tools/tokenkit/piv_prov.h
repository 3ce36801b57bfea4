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
	PIV_ALG_RSA3072 = 0x05, /* Yubico, firmware 5.7 */
	PIV_ALG_RSA1024 = 0x06,
	PIV_ALG_RSA2048 = 0x07,
	PIV_ALG_AES128 = 0x08,
	PIV_ALG_AES192 = 0x0A,
	PIV_ALG_AES256 = 0x0C,
	PIV_ALG_ECCP256 = 0x11,
	PIV_ALG_ECCP384 = 0x14,
	PIV_ALG_RSA4096 = 0x16, /* Yubico, firmware 5.7 */
};

/* Yubico's key policies (tags AA and AB of GENERATE and IMPORT; 0 leaves
 * the slot's default). */
enum {
	PIV_PIN_NEVER = 1,
	PIV_PIN_ONCE = 2,
	PIV_PIN_ALWAYS = 3,
	PIV_TOUCH_NEVER = 1,
	PIV_TOUCH_ALWAYS = 2,
	PIV_TOUCH_CACHED = 3,
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

/* "never|once|always" (PIN) and "never|always|cached" (touch). */
int piv_pin_policy_parse(const char *s, uint8_t *v);
int piv_touch_policy_parse(const char *s, uint8_t *v);

/* The PIV algorithm of a key: RSA 1024, 2048, 3072, 4096 with public
 * exponent 65537 (what YubiKeys take), P-256, P-384;
 * TK_ERR_NOT_SUPPORTED for any other. */
int piv_key_alg(EVP_PKEY *pk, uint8_t *alg);
/* RSA modulus bits of a PIV algorithm (0 for another). */
unsigned piv_rsa_bits(uint8_t alg);

/* The data of Yubico's IMPORT ASYMMETRIC KEY (00 FE alg slot) for the
 * private key pk: 01 p, 02 q, 03 dP, 04 dQ, 05 qInv, each left-padded to
 * half the modulus, or 06 the EC scalar padded to the field size; then AA
 * pin_policy and AB touch_policy unless 0. out holds the private key:
 * the caller wipes it. */
int piv_import_data(EVP_PKEY *pk, uint8_t pin_policy, uint8_t touch_policy, uint8_t *out,
                    size_t cap, size_t *len);

/* Asked for a file's passphrase (only when the file is encrypted): up to
 * cap - 1 bytes into buf, *len set. */
typedef int (*piv_pass_fn)(void *ctx, char *buf, size_t cap, size_t *len);
/* A private key from file data: PEM (PKCS#8, encrypted or not, or the
 * traditional RSA / EC forms, encrypted or not) or PKCS#12 (DER), whose
 * certificate, when it has one for this key, goes to *cert (NULL
 * otherwise). TK_ERR_PIN_INCORRECT: the passphrase did not decrypt it;
 * TK_ERR_MALFORMED: no key in the data. */
int piv_load_key_mem(const uint8_t *p, size_t len, piv_pass_fn ask, void *ctx, EVP_PKEY **key,
                     X509 **cert);

#endif
