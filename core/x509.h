/* tokenkit: certificates and public keys, the helpers every driver needs
 * (private; drivers reach them directly when built in, through
 * tk_drv_host_t when plugins). OpenSSL does the parsing. */
#ifndef TK_X509_H
#define TK_X509_H

#include <tokenkit/common.h>

/* SubjectPublicKeyInfo DER of a certificate, with its key type and size.
 * *spki is malloc'd. Errors: TK_ERR_MALFORMED, TK_ERR_NOT_SUPPORTED (a key
 * type tokenkit does not know), TK_ERR_NO_MEMORY. */
int tk_x509_spki(const uint8_t *cert, size_t cert_len, uint8_t **spki, size_t *spki_len,
                 int *key_type, unsigned *key_bits);
/* Key type and size of a SubjectPublicKeyInfo DER (whole input, nothing
 * after it). Errors: TK_ERR_MALFORMED, TK_ERR_NOT_SUPPORTED. */
int tk_spki_info(const uint8_t *spki, size_t spki_len, int *key_type, unsigned *key_bits);
/* SubjectPublicKeyInfo DER from raw public values (*spki malloc'd):
 *  TK_KEY_RSA      a = modulus, b = public exponent (big-endian); the
 *                  modulus must have bits bits when bits != 0
 *  TK_KEY_EC       a = uncompressed point 04||X||Y on the curve of bits
 *                  (256, 384, 521), checked to lie on it
 *  TK_KEY_ED25519,
 *  TK_KEY_X25519   a = the 32-byte public key
 * Errors: TK_ERR_MALFORMED, TK_ERR_NOT_SUPPORTED, TK_ERR_NO_MEMORY. */
int tk_spki_build(int key_type, unsigned bits, const uint8_t *a, size_t a_len, const uint8_t *b,
                  size_t b_len, uint8_t **spki, size_t *spki_len);

/* An ECDSA-Sig-Value (DER) as r||s, each left-padded to field bytes (at
 * most 66). Errors: TK_ERR_MALFORMED (not exactly one SEQUENCE of two
 * positive INTEGERs that fit), TK_ERR_INVALID_ARG, TK_ERR_BUFFER_TOO_SMALL. */
int tk_ecdsa_der_to_raw(const uint8_t *der, size_t der_len, size_t field, uint8_t *out,
                        size_t out_cap, size_t *out_len);

#endif
