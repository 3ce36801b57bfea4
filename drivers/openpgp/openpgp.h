/* tokenkit OpenPGP card driver (OpenPGP card specification 3.4), private.
 *
 * Built as the driver plugin driver-openpgp.so against the installed
 * headers only: every tokenkit function comes through the host's services
 * (pgp_host, set at init), never from a tokenkit library.
 *
 * openpgp.c    probe, SELECT, the token model, the public-object cache
 * pgp_parse.c  the card's data objects: application related data (6E),
 *              algorithm attributes, PW status, cardholder data, KDF-DO,
 *              public key templates
 * pgp_pin.c    VERIFY (PW1 as 81 and 82, PW3 as 83), KDF, CHANGE
 *              REFERENCE DATA, RESET RETRY COUNTER
 * pgp_crypto.c PSO:COMPUTE DIGITAL SIGNATURE, INTERNAL AUTHENTICATE,
 *              PSO:DECIPHER
 * plugin.c     the plugin's entry point
 *
 * The parsers (pgp_parse_*) take the bytes a card returned and trust no
 * length; each has a fuzz target (tests/fuzz/fuzz_openpgp_do.c). */
#ifndef TK_OPENPGP_H
#define TK_OPENPGP_H

#include <tokenkit/driver.h>
#include <tokenkit/err.h>
#include <tokenkit/log.h>

#define PGP_NKEYS 3
#define PGP_KEY_SIG 0 /* PSO:CDS, PW1 as 81 */
#define PGP_KEY_DEC 1 /* PSO:DECIPHER, PW1 as 82 */
#define PGP_KEY_AUT 2 /* INTERNAL AUTHENTICATE, PW1 as 82 */

#define PGP_PW1_MIN 6
#define PGP_PW3_MIN 8
#define PGP_PW_MAX 127
/* Largest object we read (a cardholder certificate, with room). */
#define PGP_MAX_OBJECT 8192
#define PGP_MAX_CERT 4096

/* OpenPGP public-key algorithm ids in algorithm attributes. */
#define PGP_ALGO_RSA 0x01
#define PGP_ALGO_ECDH 0x12
#define PGP_ALGO_ECDSA 0x13
#define PGP_ALGO_EDDSA 0x16

/* Cache records: the application related data, the cardholder data, and
 * per key its public key (with what it was read for) and certificate. */
#define PGP_REC_ARD 0x6Eu
#define PGP_REC_CARDHOLDER 0x65u
#define PGP_REC_PUBKEY(k) (0x100u + (uint32_t)(k))
#define PGP_REC_CERT(k) (0x200u + (uint32_t)(k))

/* Algorithm attributes (C1, C2, C3). */
typedef struct pgp_algo {
	uint8_t id;     /* PGP_ALGO_* */
	int key_type;   /* enum tk_key_type */
	unsigned bits;  /* RSA modulus bits, curve bits (255 for 25519) */
	unsigned ebits; /* RSA public exponent bits */
} pgp_algo_t;

/* Application related data (6E) and what it holds. */
typedef struct pgp_ard {
	uint8_t aid[16];
	uint16_t version; /* 0x0304 */
	uint16_t manufacturer;
	uint32_t serial;
	bool ext_lc_le, chaining; /* from the historical bytes */
	bool has_ext_caps;
	uint8_t ext_caps[10];
	bool has_algo[PGP_NKEYS];
	pgp_algo_t algo[PGP_NKEYS];
	bool has_pw_status;
	uint8_t pw_status[7]; /* C4 */
	bool has_fpr, has_dates, has_key_info;
	uint8_t fpr[PGP_NKEYS][20];
	uint8_t date[PGP_NKEYS][4];
	uint8_t key_info[PGP_NKEYS]; /* DE: 0 none, 1 generated, 2 imported */
} pgp_ard_t;

/* KDF-DO (F9). */
typedef struct pgp_kdf {
	bool on;            /* KDF_ITERSALTED_S2K */
	uint8_t hash;       /* 0x08 SHA-256, 0x0A SHA-512 */
	uint32_t count;     /* bytes hashed */
	uint8_t salt[3][8]; /* PW1, resetting code, PW3 */
	bool has_salt[3];
} pgp_kdf_t;

typedef struct pgp {
	tk_card_t *card;
	bool selected;
	uint64_t sel_gen;
	uint8_t *ard_raw; /* 6E as read last */
	bool ard_fresh;   /* ... by probe, for the load that follows */
	size_t ard_len;
	pgp_ard_t ard;
	bool kdf_known;
	pgp_kdf_t kdf;
} pgp_t;

/* The host's services (plugin.c sets them; tests and fuzz targets call
 * pgp_set_host with the core's own). */
extern const tk_drv_host_t *pgp_host;
int pgp_set_host(const tk_drv_host_t *host);
void pgp_log(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

extern const tk_driver_t pgp_driver;

/* openpgp.c */
int pgp_select(pgp_t *p);
int pgp_begin(pgp_t *p);
void pgp_end(pgp_t *p);
/* One command (chaining and 61xx handled). idempotent: after a card reset
 * select again and resend; never for commands that change state or need
 * a PIN. */
int pgp_cmd(pgp_t *p, const tk_apdu_t *a, bool idempotent, uint8_t *resp, size_t cap,
            size_t *resp_len, uint16_t *sw);
/* GET DATA of a whole object into a malloc'd buffer (*absent when the
 * card answers 6A88 / 6A82). */
int pgp_get_data(pgp_t *p, uint16_t tag, uint8_t **data, size_t *len, bool *absent);

/* pgp_parse.c */
int pgp_parse_ard(const uint8_t *p, size_t n, pgp_ard_t *ard);
int pgp_parse_algo(const uint8_t *p, size_t n, pgp_algo_t *algo);
/* "Surname<<Given<Names" of 5B in 65 (or 5B alone) as "Given Names
 * Surname", printable ASCII, at most cap-1 bytes. */
int pgp_parse_cardholder(const uint8_t *p, size_t n, char *name, size_t cap);
int pgp_parse_kdf(const uint8_t *p, size_t n, pgp_kdf_t *kdf);
/* The SubjectPublicKeyInfo DER (malloc'd) of a public key template
 * (7F49 { 81 n, 82 e } or 7F49 { 86 point }) for a key of algo. */
int pgp_parse_pubkey(const pgp_algo_t *algo, const uint8_t *p, size_t n, uint8_t **spki,
                     size_t *spki_len);

/* pgp_pin.c */
int pgp_pin_verify(void *state, int user, const uint8_t *pin, size_t pin_len, int *retries);
int pgp_pin_status(void *state, int user, tk_drv_pin_status_t *st);
int pgp_pin_change(void *state, int user, const uint8_t *old_pin, size_t old_len,
                   const uint8_t *new_pin, size_t new_len);
int pgp_pin_unblock(void *state, const uint8_t *puk, size_t puk_len, const uint8_t *new_pin,
                    size_t new_len);
/* The bytes the card wants for a PIN: the PIN, or its KDF hash (which: 0
 * PW1, 1 resetting code, 2 PW3). out holds 64 bytes. */
int pgp_pin_bytes(const pgp_kdf_t *kdf, int which, const uint8_t *pin, size_t len, uint8_t *out,
                  size_t *out_len);

/* pgp_crypto.c */
int pgp_key_op(void *state, const tk_drv_key_t *key, int op, const uint8_t *in, size_t in_len,
               uint8_t *out, size_t out_cap, size_t *out_len);

#endif
