/* tokenkit virtual card: the OpenPGP applet (OpenPGP card specification
 * 3.4), private.
 *
 * pgp_data.c   SELECT, GET DATA, PUT DATA, SELECT DATA, GET CHALLENGE,
 *              TERMINATE DF / ACTIVATE FILE, the data objects, algorithm
 *              attributes
 * pgp_auth.c   VERIFY, CHANGE REFERENCE DATA, RESET RETRY COUNTER
 * pgp_keys.c   GENERATE ASYMMETRIC KEY PAIR, key import (PUT DATA 3FFF),
 *              PSO:COMPUTE DIGITAL SIGNATURE, PSO:DECIPHER, INTERNAL
 *              AUTHENTICATE
 * pgp_state.c  the applet's records in the state file
 *
 * Keys: 0 signature (CRT B6, attributes C1, fingerprint C7, date CE), 1
 * decryption (B8, C2, C8, CF), 2 authentication (A4, C3, C9, D0). The
 * cardholder certificates (7F21) are chosen with SELECT DATA: occurrence 0
 * is the authentication key's, 1 the decryption key's, 2 the signature
 * key's. The card never hashes PINs: with a KDF-DO the host sends the hash,
 * and the card compares bytes. */
#ifndef TK_PGP_INT_H
#define TK_PGP_INT_H

#include "vcard_int.h"

#define PGP_NKEYS 3
#define PGP_KEY_SIG 0
#define PGP_KEY_DEC 1
#define PGP_KEY_AUT 2

#define PGP_PW_MAX 127
#define PGP_PW1_MIN 6
#define PGP_PW3_MIN 8
#define PGP_RC_MIN 8
#define PGP_TRIES 3
#define PGP_ATTR_MAX 12
#define PGP_CERT_MAX 4096
#define PGP_NAME_MAX 39
#define PGP_LANG_MAX 8
#define PGP_URL_MAX 255
#define PGP_LOGIN_MAX 254
#define PGP_KDF_MAX 110
#define PGP_SIG_COUNT_MAX 0xFFFFFFu
/* Largest message PSO:CDS / INTERNAL AUTHENTICATE sign with EdDSA. */
#define PGP_EDDSA_MAX 4096

/* SW of a command the terminated applet does not take. */
#define SW_TERMINATED 0x6285

enum pgp_alg {
	PGP_ALG_NONE = 0,
	PGP_ALG_RSA = 0x01,
	PGP_ALG_ECDH = 0x12,
	PGP_ALG_ECDSA = 0x13,
	PGP_ALG_EDDSA = 0x16,
};

/* Algorithm attributes (C1..C3) as the card understands them. */
struct pgp_attr {
	int alg;           /* enum pgp_alg */
	unsigned bits;     /* RSA modulus; curve field bits (255 for 25519) */
	uint8_t rsa_fmt;   /* RSA import format: 0 e,p,q; 1 +n; 2 CRT; 3 CRT+n */
	const char *group; /* OpenSSL key type or group: "P-256" ... "ED25519", "X25519" */
};

struct pgp_pw {
	uint8_t v[PGP_PW_MAX];
	uint8_t len; /* 0: not set (resetting code) */
	uint8_t tries;
};

struct pgp_key {
	uint8_t attr[PGP_ATTR_MAX];
	uint8_t attr_len;
	EVP_PKEY *pkey; /* NULL: no key */
	uint8_t origin; /* key information DE: 1 generated, 2 imported */
	uint8_t fpr[20], ca_fpr[20], date[4];
	uint8_t *cert; /* cardholder certificate, NULL: none */
	size_t cert_len;
};

struct vc_pgp {
	/* persistent */
	struct pgp_pw pw1, pw3, rc;
	uint8_t pw1_multi; /* C4 byte 1: 01 PW1 valid for several PSO:CDS */
	struct pgp_key keys[PGP_NKEYS];
	uint8_t name[PGP_NAME_MAX], name_len;
	uint8_t lang[PGP_LANG_MAX], lang_len;
	uint8_t sex;
	uint8_t url[PGP_URL_MAX], url_len;
	uint8_t login[PGP_LOGIN_MAX], login_len;
	uint32_t sig_count;
	uint8_t kdf[PGP_KDF_MAX], kdf_len;
	bool terminated;

	/* volatile */
	bool pw1_81, pw1_82, pw3_ok;
	uint8_t cert_occ;
};

/* pgp_data.c */
int vc_pgp_new(struct vc_pgp **out);
void vc_pgp_free(struct vc_pgp **pp);
int vc_pgp_clone(const struct vc_pgp *src, struct vc_pgp **out);
void vc_pgp_clear_session(struct vc_pgp *p);
/* Factory state (keys, PINs, data objects); the applet stays. */
void vc_pgp_factory(struct vc_pgp *p);
bool vc_pgp_aid_match(const uint8_t *aid, size_t len);
uint16_t vc_pgp_select(tk_vcard_t *c, const tk_apdu_t *a, tk_wbuf_t *out);
/* The handler of an instruction while the applet is selected (NULL:
 * 6D00). */
vc_handler_fn vc_pgp_handler(uint8_t ins);
/* Parse algorithm attributes for key keyno. Errors: TK_ERR_MALFORMED,
 * TK_ERR_NOT_SUPPORTED (well formed, but no algorithm this card has, or
 * not for this key). */
int vc_pgp_attr_parse(const uint8_t *p, size_t n, int keyno, struct pgp_attr *out);
void vc_pgp_key_clear(struct pgp_key *k);

/* pgp_auth.c */
uint16_t vc_pgp_verify(tk_vcard_t *c, const tk_apdu_t *a, tk_wbuf_t *out);
uint16_t vc_pgp_change_ref(tk_vcard_t *c, const tk_apdu_t *a, tk_wbuf_t *out);
uint16_t vc_pgp_reset_retry(tk_vcard_t *c, const tk_apdu_t *a, tk_wbuf_t *out);
void vc_pgp_pw_set(struct pgp_pw *pw, const uint8_t *v, size_t len);
/* PUT DATA F9: a KDF-DO (81 01 00, or ITERSALTED_S2K with its salts and
 * initial hashes). Errors: TK_ERR_MALFORMED. */
int vc_pgp_kdf_put(struct vc_pgp *p, const uint8_t *v, size_t n);

/* pgp_keys.c */
uint16_t vc_pgp_generate(tk_vcard_t *c, const tk_apdu_t *a, tk_wbuf_t *out);
uint16_t vc_pgp_import(tk_vcard_t *c, const tk_apdu_t *a, tk_wbuf_t *out);
uint16_t vc_pgp_pso(tk_vcard_t *c, const tk_apdu_t *a, tk_wbuf_t *out);
uint16_t vc_pgp_internal_auth(tk_vcard_t *c, const tk_apdu_t *a, tk_wbuf_t *out);
/* The key number of a control reference template tag (B6, B8, A4), -1. */
int vc_pgp_crt_key(uint32_t tag);
/* Whether pkey is a key of the algorithm attr describes. */
bool vc_pgp_key_fits(EVP_PKEY *pkey, const struct pgp_attr *attr);

/* pgp_state.c: records 0x20.. of the state file (state.c) */
int vc_pgp_state_encode(const struct vc_pgp *p, tk_wbuf_t *w);
size_t vc_pgp_state_size(const struct vc_pgp *p);
/* One record; TK_ERR_MALFORMED for anything that is not one of ours or
 * repeats one. */
int vc_pgp_state_record(struct vc_pgp *p, uint8_t type, tk_buf_t *v, unsigned *seen);
/* After the last record: everything required was there. */
int vc_pgp_state_check(const struct vc_pgp *p, unsigned seen);
bool vc_pgp_state_type(uint8_t type);

#endif
