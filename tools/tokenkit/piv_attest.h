/* tokenkit: PIV key attestation (Yubico's ATTEST) — parsing what the card
 * returns and verifying it with OpenSSL.
 *
 * A YubiKey signs, for a key generated on the card, an X.509 certificate
 * (the attestation) with its attestation key (slot F9), whose certificate is
 * object 5FFF01 and is itself issued by the maker's root. This file knows
 * the card's encodings (PIV data objects, GET METADATA, the Yubico
 * extensions) and the verification rules; the command (cmd_attest.c) only
 * talks to the card and prints. Public API of libtokenkit only (tk_buf,
 * tk_ber), so the CLI, the unit test and the fuzz target share it. */
#ifndef TK_TOOL_PIV_ATTEST_H
#define TK_TOOL_PIV_ATTEST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <openssl/evp.h>
#include <openssl/x509.h>

/* Yubico's attestation extensions (developers.yubico.com, PIV attestation). */
#define TOOL_OID_YK_FIRMWARE "1.3.6.1.4.1.41482.3.3"
#define TOOL_OID_YK_SERIAL "1.3.6.1.4.1.41482.3.7"
#define TOOL_OID_YK_POLICY "1.3.6.1.4.1.41482.3.8"
#define TOOL_OID_YK_FORM_FACTOR "1.3.6.1.4.1.41482.3.9"

/* What an attestation certificate states about its key. */
typedef struct tool_attest_info {
	bool has_firmware, has_serial, has_policy, has_form_factor;
	uint8_t firmware[3]; /* major, minor, patch */
	uint64_t serial;
	uint8_t pin_policy;   /* 1 never, 2 once, 3 always (4, 5: match once/always) */
	uint8_t touch_policy; /* 1 never, 2 always, 3 cached */
	uint8_t form_factor;
} tool_attest_info_t;

/* What GET METADATA (00 F7 00 slot) says about a key slot. */
typedef struct tool_piv_meta {
	uint8_t alg; /* 0 when the card did not say */
	bool has_policy, has_origin;
	uint8_t pin_policy, touch_policy;
	uint8_t origin;     /* 1 generated on the card, 2 imported */
	const uint8_t *pub; /* contents of tag 04 (81 n 82 e, or 86 point), or NULL */
	size_t pub_len;
} tool_piv_meta_t;

/* The X.509 DER in a PIV certificate object (GET DATA response 53 { 70
 * cert, 71 info, FE }); *cert points into obj. TK_ERR_NOT_FOUND without a
 * certificate; TK_ERR_NOT_SUPPORTED when 71 says it is compressed. */
int tool_piv_object_cert(const uint8_t *obj, size_t len, const uint8_t **cert, size_t *cert_len);

/* Parse a GET METADATA response; m points into p. */
int tool_piv_metadata_parse(const uint8_t *p, size_t len, tool_piv_meta_t *m);

/* The public key of a GET METADATA 04 template for algorithm alg (RSA 81/82,
 * P-256/P-384 86 uncompressed point, Ed25519/X25519 86 raw key). */
int tool_piv_pubkey(uint8_t alg, const uint8_t *p, size_t len, EVP_PKEY **out);

/* The Yubico extensions of an attestation certificate (each optional;
 * a present one that does not parse is TK_ERR_MALFORMED). */
int tool_attest_info(X509 *x, tool_attest_info_t *info);

/* Verify the attestation att: issued by the device's attestation certificate
 * dev (object 5FFF01; signature, names, validity), and dev up to root when
 * root is given. Without root, dev is the trust anchor: the chain then
 * proves only that the card holding dev's key made the attestation. On
 * failure *why says what failed (static text, or OpenSSL's reason). */
int tool_attest_verify(X509 *att, X509 *dev, X509 *root, const char **why);

/* Names for the policy and origin bytes ("?" for unknown values). */
const char *tool_pin_policy_name(uint8_t v);
const char *tool_touch_policy_name(uint8_t v);
const char *tool_piv_alg_name(uint8_t alg);

#endif
