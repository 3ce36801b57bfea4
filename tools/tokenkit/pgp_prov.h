/* OpenPGP card provisioning helpers of the tokenkit tool (OpenPGP card
 * specification 3.4): parsing the data objects `tokenkit openpgp status`
 * shows (application related data 6E, cardholder data 65, security support
 * template 7A, KDF-DO F9), the algorithm attributes (C1..C3) and the public
 * key template 7F49; encoding algorithm attributes, the private key import
 * (extended header list 4D) and the OpenPGP v4 fingerprint (RFC 4880 12.2
 * over the public key packet, RFC 6637 for ECC) the card stores in C7..C9.
 *
 * The driver plugin (drivers/openpgp/pgp_parse.c) parses some of the same
 * objects, but it is reachable only through its driver host table, not
 * through the public API the CLI links: this is the tool's own copy, with
 * its own unit test and fuzz target. A static library (tktool_pgp);
 * public headers and OpenSSL only. */
#ifndef TK_TOOL_PGP_PROV_H
#define TK_TOOL_PGP_PROV_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <openssl/evp.h>

#include <tokenkit/buf.h>

/* OpenPGP public key algorithm ids (RFC 4880 9.1, RFC 6637) */
enum {
	PGP_ID_RSA = 0x01,
	PGP_ID_ECDH = 0x12,
	PGP_ID_ECDSA = 0x13,
	PGP_ID_EDDSA = 0x16,
};

/* The three keys: signature, decryption, authentication. */
enum { PGP_SIG = 0, PGP_DEC = 1, PGP_AUT = 2, PGP_NKEYS = 3 };

/* Curves the tool knows (index in the curve table). */
enum {
	PGP_CURVE_NONE = -1,
	PGP_CURVE_P256 = 0,
	PGP_CURVE_P384,
	PGP_CURVE_P521,
	PGP_CURVE_ED25519,
	PGP_CURVE_CV25519,
};

typedef struct pgp_attr {
	uint8_t id;      /* PGP_ID_*; 0: an algorithm the tool does not know */
	unsigned bits;   /* RSA modulus bits; the curve's field bits */
	unsigned ebits;  /* RSA public exponent bits */
	uint8_t rsa_fmt; /* RSA import format: 0 e,p,q; 1 + n; 2 CRT; 3 CRT + n */
	bool ec_pub;     /* ECC: the import carries the public key (last byte FF) */
	int curve;       /* PGP_CURVE_* */
	char name[16];   /* "rsa2048", "nistp256", "ed25519", "cv25519", ... */
} pgp_attr_t;

/* What `status` shows of the application related data (6E). */
typedef struct pgp_ard {
	uint8_t aid[16];
	size_t aid_len;
	uint8_t version[2];
	uint16_t manufacturer;
	uint32_t serial;
	bool have_caps;
	uint8_t caps[10];    /* extended capabilities C0 */
	bool have_pw_status; /* C4 */
	uint8_t pw_status[7];
	struct {
		uint8_t attr_raw[16];
		size_t attr_len;
		pgp_attr_t attr; /* id 0 when not parsed */
		uint8_t fpr[20];
		uint32_t created;
		uint8_t origin; /* DE: 0 none, 1 generated, 2 imported; 0xFF not told */
	} key[PGP_NKEYS];
} pgp_ard_t;

typedef struct pgp_cardholder {
	char name[40]; /* 5B, at most 39 bytes */
	char lang[9];  /* 5F2D */
	uint8_t sex;   /* 5F35 (ISO 5218 as an ASCII digit); 0 not told */
} pgp_cardholder_t;

/* Algorithm attributes (C1..C3). TK_ERR_MALFORMED: not attributes;
 * TK_OK with id 0: well formed, an algorithm the tool does not know. */
int pgp_attr_parse(const uint8_t *p, size_t n, pgp_attr_t *out);
/* The attributes for a named algorithm ("rsa2048" ... "cv25519") on key
 * `key`: ECDH for the decryption key, ECDSA/EdDSA for the other two. An RSA
 * key keeps cur's exponent size and import format when cur is RSA.
 * TK_ERR_INVALID_ARG: no such name, or one that does not fit the key. */
int pgp_attr_encode(const char *name, int key, const pgp_attr_t *cur, uint8_t *out, size_t cap,
                    size_t *len);

/* Application related data: the value of 6E (or 6E itself). */
int pgp_ard_parse(const uint8_t *p, size_t n, pgp_ard_t *out);
/* Cardholder related data: 65 or its value. */
int pgp_cardholder_parse(const uint8_t *p, size_t n, pgp_cardholder_t *out);
/* The digital signature counter 93 in the security support template 7A
 * (7A or its value). */
int pgp_sig_counter_parse(const uint8_t *p, size_t n, uint32_t *count);
/* KDF-DO (4.3.2): with one, the host sends a hash of each PIN instead of
 * the PIN. */
enum { PGP_KDF_NONE = 0, PGP_KDF_ITERSALTED_S2K = 3 };
enum { PGP_PW1 = 0, PGP_RC = 1, PGP_PW3 = 2 };
typedef struct pgp_kdf {
	uint8_t algo;   /* 81: PGP_KDF_*, or another value the tool does not know */
	uint8_t hash;   /* 82: 08 SHA-256, 0A SHA-512 */
	uint32_t count; /* 83: bytes hashed */
	uint8_t salt[3][8];
	bool have_salt[3]; /* 84 PW1, 85 RC, 86 PW3 */
} pgp_kdf_t;

/* KDF-DO (F9 or its value); an empty one is "no KDF". TK_ERR_MALFORMED
 * also for an S2K KDF-DO without its hash, count or PW1 salt. */
int pgp_kdf_parse(const uint8_t *p, size_t n, pgp_kdf_t *out);
/* What the card wants for PIN `pin` of kind `which` (PGP_PW1, PGP_RC,
 * PGP_PW3): the PIN itself without a KDF, else the iterated and salted S2K
 * hash (RFC 4880 3.7.1.3) with the KDF-DO's count and the PIN's salt (RC
 * and PW3 fall back to PW1's). out holds up to 127 bytes. */
int pgp_kdf_pin(const pgp_kdf_t *k, int which, const char *pin, size_t len, uint8_t *out,
                size_t cap, size_t *olen);

/* The public key in a GENERATE ASYMMETRIC KEY PAIR response (7F49 { 81 n,
 * 82 e } or 7F49 { 86 point }) for a key of attributes at. */
int pgp_pubkey_parse(const pgp_attr_t *at, const uint8_t *p, size_t n, EVP_PKEY **out);
/* Whether pk is a key of the algorithm at describes. */
bool pgp_key_fits(const pgp_attr_t *at, EVP_PKEY *pk);
/* The v4 fingerprint of pk as an OpenPGP key of attributes at created at
 * `created` (for ECDH with GnuPG's KDF parameters for the curve). */
int pgp_fingerprint(const pgp_attr_t *at, EVP_PKEY *pk, uint32_t created, uint8_t fpr[20]);
/* PUT DATA 3FFF (extended header list) importing private key pk into key
 * `key` of attributes at (RSA as at->rsa_fmt says). The result holds
 * private key material: the caller wipes it. */
int pgp_import_encode(const pgp_attr_t *at, int key, EVP_PKEY *pk, tk_wbuf_t *w);

#endif
