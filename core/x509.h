/* tokenkit: the fields of X.509 certificates and SubjectPublicKeyInfo that
 * tokens publish, found by walking the DER (private).
 *
 * Why not OpenSSL here: OpenSSL 3.0 decodes the public key of every
 * certificate it parses through its provider decoders, 0.1-0.2 ms of CPU
 * and a round of lock traffic per key, and a token open parsed each
 * certificate twice (driver, module) and each public key once more: most of
 * a warm start's time. The walk takes microseconds and copies nothing: the
 * fields point into the DER given.
 *
 * What is checked: the DER framing of Certificate, TBSCertificate (version,
 * serialNumber, signature, issuer and subject Names down to their
 * attributes, validity, subjectPublicKeyInfo, unique ids, extensions down
 * to extnID, critical and extnValue), signatureAlgorithm and signature:
 * definite, minimal lengths inside their parents, one-byte tags where X.509
 * has them, minimal INTEGERs, nothing trailing. Not checked: signatures,
 * that an EC point lies on its curve, what extensions and attribute values
 * say. Public keys: rsaEncryption, id-ecPublicKey on P-256, P-384 or
 * P-521 (named), and id-Ed25519; any other is TK_ERR_NOT_SUPPORTED. */
#ifndef TK_X509_H
#define TK_X509_H

#include <tokenkit/common.h>

typedef struct tk_x509 {
	const uint8_t *serial; /* serialNumber: the whole INTEGER (tag, length, value) */
	size_t serial_len;
	const uint8_t *issuer; /* the whole Name */
	size_t issuer_len;
	const uint8_t *subject;
	size_t subject_len;
	const uint8_t *spki; /* the whole SubjectPublicKeyInfo */
	size_t spki_len;
	char not_before[9]; /* YYYYMMDD (UTC), "" when the time is not RFC 5280's form */
	char not_after[9];
} tk_x509_t;

typedef struct tk_spki {
	int key_type; /* enum tk_key_type: TK_KEY_RSA, TK_KEY_EC or TK_KEY_ED25519 */
	unsigned bits;
	/* RSA: modulus and public exponent, unsigned big-endian, no leading zero */
	const uint8_t *n, *e;
	size_t n_len, e_len;
	/* EC: the namedCurve OBJECT IDENTIFIER (tag, length, value: what
	 * CKA_EC_PARAMS holds) and the point as encoded (04 || X || Y, or
	 * compressed). Ed25519: the algorithm's OBJECT IDENTIFIER and the
	 * 32-byte public key. */
	const uint8_t *curve, *point;
	size_t curve_len, point_len;
} tk_spki_t;

/* Parse a certificate (exactly len bytes). Errors: TK_ERR_MALFORMED,
 * TK_ERR_TRUNCATED, TK_ERR_INVALID_ARG (NULL). The public key is not
 * looked at: tk_spki_parse(out->spki, out->spki_len). */
int tk_x509_parse(const uint8_t *der, size_t len, tk_x509_t *out);

/* Parse a SubjectPublicKeyInfo (exactly len bytes). Errors:
 * TK_ERR_MALFORMED, TK_ERR_TRUNCATED, TK_ERR_NOT_SUPPORTED (another
 * algorithm or curve), TK_ERR_INVALID_ARG. */
int tk_spki_parse(const uint8_t *der, size_t len, tk_spki_t *out);

/* SubjectPublicKeyInfo of a certificate (a malloc'd copy), with its key
 * type and size. Errors: TK_ERR_MALFORMED (also for a truncated
 * certificate), TK_ERR_NOT_SUPPORTED (a key of another kind),
 * TK_ERR_NO_MEMORY. */
int tk_x509_spki(const uint8_t *cert, size_t cert_len, uint8_t **spki, size_t *spki_len,
                 int *key_type, unsigned *key_bits);
/* Key type and size of a SubjectPublicKeyInfo. Errors: TK_ERR_MALFORMED,
 * TK_ERR_NOT_SUPPORTED. */
int tk_spki_info(const uint8_t *spki, size_t spki_len, int *key_type, unsigned *key_bits);

#endif
