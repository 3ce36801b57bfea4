/* tokenkit PIV driver (NIST SP 800-73-4), private.
 *
 * piv.c        probe, SELECT, data objects, the public-object cache, the model
 * piv_cert.c   certificate containers (incl. compression), public keys, metadata
 * piv_pin.c    VERIFY, retry counters, CHANGE REFERENCE DATA, RESET RETRY COUNTER
 * piv_crypto.c GENERAL AUTHENTICATE: RSA, ECDSA, ECDH
 * piv_attest.c attestation certificates (Yubico ATTEST, 5FFF01) as objects
 *
 * The parsers (piv_parse_*) take the bytes a card returned and never trust
 * a length; each has a fuzz target (tests/fuzz/fuzz_piv_objects.c). */
#ifndef TK_PIV_H
#define TK_PIV_H

#include <tokenkit/card.h>

#include "driver.h"

/* Object tags (SP 800-73-4 part 1, table 3). */
#define PIV_TAG_DISCOVERY 0x7Eu
#define PIV_TAG_CHUID 0x5FC102u
#define PIV_TAG_KEY_HISTORY 0x5FC10Cu
#define PIV_TAG_CERT_9A 0x5FC105u
#define PIV_TAG_CERT_9C 0x5FC10Au
#define PIV_TAG_CERT_9D 0x5FC10Bu
#define PIV_TAG_CERT_9E 0x5FC101u
#define PIV_TAG_CERT_RETIRED1 0x5FC10Du /* 82; 95 is 5FC120 */
#define PIV_TAG_ATTEST_CERT 0x5FFF01u   /* Yubico: the attestation key's certificate */

/* Algorithm identifiers (SP 800-78-4 and Yubico's RSA 3072/4096). */
#define PIV_ALG_RSA1024 0x06
#define PIV_ALG_RSA2048 0x07
#define PIV_ALG_RSA3072 0x05
#define PIV_ALG_RSA4096 0x16
#define PIV_ALG_P256 0x11
#define PIV_ALG_P384 0x14

#define PIV_REF_GLOBAL_PIN 0x00
#define PIV_REF_PIN 0x80
#define PIV_REF_PUK 0x81

#define PIV_PIN_MIN 6
#define PIV_PIN_MAX 8
/* how long a PIN pad waits for the user */
#define PIV_PINPAD_TIMEOUT_S 30
/* Largest data object we read, and largest certificate we inflate. */
#define PIV_MAX_OBJECT 65536
#define PIV_MAX_CERT 32768
/* Le of the cheap cache probe: the first bytes of an object. */
#define PIV_PROBE_LE 0x40

#define PIV_NUM_RETIRED 20
/* Transaction attempts after the card reports a reset at its start. */
#define PIV_BEGIN_TRIES 3

/* Yubico PIN policies (metadata tag 02, first byte). */
#define PIV_PIN_POLICY_DEFAULT 0
#define PIV_PIN_POLICY_NEVER 1
#define PIV_PIN_POLICY_ONCE 2
#define PIV_PIN_POLICY_ALWAYS 3

/* Cache record keys besides object tags (which are < 0x01000000). */
#define PIV_REC_META(slot) (0x01000000u | (uint32_t)(slot))
#define PIV_REC_VENDOR 0x02000001u
/* How the card takes APDUs: one byte, PIV_APDU_SHORT (its ATR announces
 * extended length but it parses short APDUs only). Absent: as announced. */
#define PIV_REC_APDU 0x02000002u
#define PIV_APDU_SHORT 0x01
/* A slot's attestation (piv_attest.c): u16 length and SPKI of the key it
 * was asked for, then the attestation DER (none: the card refused). */
#define PIV_REC_ATTEST(slot) (0x03000000u | (uint32_t)(slot))

typedef struct piv_apt {
	char label[33];   /* application label (tag 50), may be empty */
	uint8_t algs[16]; /* announced algorithms (AC/80) */
	size_t nalgs;
} piv_apt_t;

typedef struct piv_chuid {
	bool has_fascn, has_guid, has_expiry;
	uint8_t fascn[25];
	uint8_t guid[16];
	char expiry[9]; /* YYYYMMDD */
} piv_chuid_t;

typedef struct piv_discovery {
	bool present;
	bool global_pin_ok;      /* the global PIN satisfies PIV access rules */
	bool global_pin_primary; /* ... and is the primary PIN */
} piv_discovery_t;

typedef struct piv_key_history {
	bool present;
	unsigned on_card, off_card;
} piv_key_history_t;

typedef struct piv_metadata {
	bool has_alg, has_policy;
	uint8_t alg;
	uint8_t pin_policy, touch_policy;
	uint8_t *spki; /* public key as SPKI DER (malloc'd), or NULL */
	size_t spki_len;
	bool has_retries;
	int retries_total, retries_left;
} piv_metadata_t;

typedef struct piv {
	tk_card_t *card;
	bool selected;
	uint64_t sel_gen;
	piv_apt_t apt;
	uint8_t *chuid_raw; /* the CHUID as read at probe time */
	size_t chuid_len;
	bool chuid_absent;
	/* Extended length: the card parses short APDUs only although its ATR
	 * announces extended ones (found out, or remembered in the cache), and
	 * "the CHUID was absent under extended length": either the card has
	 * none or it misread the command; load settles which. */
	bool short_apdus;
	bool ext_unproven;
	piv_chuid_t chuid;
	piv_discovery_t disc;
	/* Yubico extensions: -1 unknown, 0 no, 1 yes */
	int vendor_known;
	bool yubico;
	uint8_t version[3];
	bool has_serial;
	uint32_t serial;
	int meta_supported;
	bool att_asked;         /* this load sent ATTEST (piv_attest.c) */
	unsigned att_published; /* ... and published this many attestations */
	bool att_defer;         /* TK_DRV_LOAD_DEFER_COSTLY: ask for none */
} piv_t;

/* piv.c */
int piv_select(piv_t *p);
/* Make sure the applet is selected for the card's current generation. */
int piv_ensure_selected(piv_t *p);
/* Take the card (transaction) and make sure the applet is selected; every
 * driver entry point brackets its commands with piv_begin/piv_end. */
int piv_begin(piv_t *p);
void piv_end(piv_t *p);
/* Exchange one command (chaining and 61xx handled). When idempotent, a
 * card reset reported by the transport leads to one re-select and resend;
 * commands that change card state are never resent after a reset. A PIV
 * instruction the card answers as if another application were selected
 * (another program selected one: 6D00, 6E00; for VERIFY and GENERAL
 * AUTHENTICATE also 6A82 6A86 6A88 6B00 — error answers, so the command did
 * nothing) leads to one SELECT of PIV and one resend. */
int piv_cmd(piv_t *p, const tk_apdu_t *a, bool idempotent, uint8_t *resp, size_t cap,
            size_t *resp_len, uint16_t *sw);
/* GET DATA of a whole object; *data malloc'd, NULL with *absent when the
 * card has none (or it needs a PIN). */
int piv_read_object(piv_t *p, uint32_t tag, uint8_t **data, size_t *len, bool *absent);
int piv_parse_apt(const uint8_t *p, size_t n, piv_apt_t *apt);
int piv_parse_chuid(const uint8_t *p, size_t n, piv_chuid_t *c);
int piv_parse_discovery(const uint8_t *p, size_t n, piv_discovery_t *d);
int piv_parse_key_history(const uint8_t *p, size_t n, piv_key_history_t *kh);
/* FASC-N → agency code, system code and credential number as 14 digits. */
int piv_fascn_digits(const uint8_t fascn[25], char out[15]);
uint8_t piv_slot_ref(size_t index); /* 0..23 → 9A 9C 9D 9E 82..95 */
uint32_t piv_slot_cert_tag(uint8_t ref);

/* piv_cert.c */
/* The certificate from a certificate container (53 { 70, 71, FE }),
 * inflated when certinfo says so. *cert is malloc'd; NULL and TK_OK when
 * the container is empty. Errors: TK_ERR_MALFORMED, TK_ERR_TRUNCATED,
 * TK_ERR_TOO_LONG (inflates past PIV_MAX_CERT), TK_ERR_NO_MEMORY. */
int piv_parse_cert_object(const uint8_t *p, size_t n, uint8_t **cert, size_t *cert_len);
/* Inflate gzip or zlib data, at most max bytes of output. */
int piv_inflate(const uint8_t *in, size_t in_len, size_t max, uint8_t **out, size_t *out_len);
/* Parse a Yubico metadata response (00 F7). Errors: TK_ERR_MALFORMED, TK_ERR_TRUNCATED,
 * TK_ERR_NO_MEMORY. */
int piv_parse_metadata(const uint8_t *p, size_t n, piv_metadata_t *md);
void piv_metadata_clear(piv_metadata_t *md);
/* SPKI DER from a public-key template (tag 04/7F49 content: 81/82 or 86). */
int piv_pubkey_to_spki(uint8_t alg, const uint8_t *p, size_t n, uint8_t **spki, size_t *spki_len);
int piv_alg_info(uint8_t alg, int *key_type, unsigned *bits);
uint8_t piv_alg_for(int key_type, unsigned bits);

/* piv_pin.c */
int piv_pin_verify(void *state, int user, const uint8_t *pin, size_t pin_len, int *retries);
int piv_pin_verify_pad(void *state, int user, int *retries);
int piv_pin_change_pad(void *state, int user, int *retries);
int piv_pin_status(void *state, int user, tk_drv_pin_status_t *st);
int piv_pin_change(void *state, int user, const uint8_t *old_pin, size_t old_len,
                   const uint8_t *new_pin, size_t new_len);
int piv_pin_unblock(void *state, const uint8_t *puk, size_t puk_len, const uint8_t *new_pin,
                    size_t new_len);

/* piv_crypto.c */
int piv_key_op(void *state, const tk_drv_key_t *slot, int op, const uint8_t *in, size_t in_len,
               uint8_t *out, size_t out_cap, size_t *out_len);

/* piv_attest.c */
/* The attestation of the key in slot ref, whose SubjectPublicKeyInfo is
 * spki: from cached while it was asked for this key, else from the card
 * (ATTEST); recorded in fresh and added to m as an unpaired certificate
 * when the card gave one. Yubico cards only. Errors: transport errors,
 * TK_ERR_NO_MEMORY. */
int piv_attest_slot(piv_t *p, uint8_t ref, const uint8_t *spki, size_t spki_len,
                    const tk_cache_t *cached, tk_cache_t *fresh, tk_drv_model_t *m);
/* The device's attestation certificate (5FFF01), after the slots and only
 * when an attestation was published: read again when this load asked for
 * one, else from cached. */
int piv_attest_device(piv_t *p, const tk_cache_t *cached, tk_cache_t *fresh, tk_drv_model_t *m);
/* A PIV_REC_ATTEST record; pointers into rec. Errors: TK_ERR_MALFORMED,
 * TK_ERR_TRUNCATED. */
int piv_parse_attest_record(const uint8_t *rec, size_t n, const uint8_t **spki, size_t *spki_len,
                            const uint8_t **att, size_t *att_len);

#endif
