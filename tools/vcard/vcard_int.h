/* tokenkit virtual card (PIV and OpenPGP applets): private state shared by
 * the card's files.
 *
 * card.c      dispatch, command and response chaining, SELECT, vendor
 * pgp_*.c     the OpenPGP applet (pgp_int.h)
 * crypto.c    key operations both applets use
 * piv_data.c  data objects (GET DATA, PUT DATA, defaults)
 * piv_auth.c  PIN, PUK, management key
 * piv_keys.c  key slots: generate, import, key operations, metadata
 * attest.c    attestation CA and ATTEST
 * state.c     the state file
 * latency.c   timing profiles
 * tlv.c       small BER-TLV helpers over tk_buf / tk_wbuf */
#ifndef TK_VCARD_INT_H
#define TK_VCARD_INT_H

#include <openssl/evp.h>
#include <openssl/param_build.h>

#include <tokenkit/apdu.h>
#include <tokenkit/buf.h>

#include "vcard.h"

/* Status words. */
#define SW_OK 0x9000
#define SW_WRONG_LENGTH 0x6700
#define SW_SECURITY 0x6982
#define SW_AUTH_BLOCKED 0x6983
#define SW_CONDITIONS 0x6985
#define SW_LAST_CHAIN_EXPECTED 0x6883
#define SW_CLA_NOT_SUPPORTED 0x6E00
#define SW_INS_NOT_SUPPORTED 0x6D00
#define SW_WRONG_DATA 0x6A80
#define SW_FUNC_NOT_SUPPORTED 0x6A81
#define SW_NOT_FOUND 0x6A82
#define SW_NO_SPACE 0x6A84
#define SW_WRONG_P1P2 0x6A86
#define SW_REF_NOT_FOUND 0x6A88
#define SW_MEMORY_FAILURE 0x6581
#define SW_NO_PRECISE 0x6F00
#define SW_RETRIES(n) ((uint16_t)(0x63C0u | ((n)&0x0Fu)))

/* PIV algorithm identifiers (SP 800-78-4) and Yubico's additions. */
#define ALG_3DES 0x03
#define ALG_RSA3072 0x05
#define ALG_RSA1024 0x06
#define ALG_RSA2048 0x07
#define ALG_AES128 0x08
#define ALG_AES192 0x0A
#define ALG_AES256 0x0C
#define ALG_ECCP256 0x11
#define ALG_ECCP384 0x14
#define ALG_RSA4096 0x16
#define ALG_PIN 0xFF

/* Key references. */
#define REF_PIN 0x80
#define REF_PUK 0x81
#define REF_MGMT 0x9B
#define REF_ATTEST 0xF9

/* Yubico PIN and touch policies (GENERATE / IMPORT tags AA, AB). */
#define PIN_POLICY_DEFAULT 0
#define PIN_POLICY_NEVER 1
#define PIN_POLICY_ONCE 2
#define PIN_POLICY_ALWAYS 3
#define TOUCH_POLICY_DEFAULT 0
#define TOUCH_POLICY_NEVER 1

#define ORIGIN_GENERATED 1
#define ORIGIN_IMPORTED 2

/* 9A, 9C, 9D, 9E, retired 82..95, attestation F9. */
#define VC_NSLOTS 25
#define VC_SLOT_NONE (-1)

#define VC_PIN_LEN 8
#define VC_DEFAULT_TRIES 3
#define VC_MAX_TRIES 15
/* Largest data object and largest chained command we accept. */
#define VC_MAX_OBJECT 16384
#define VC_MAX_CHAIN (VC_MAX_OBJECT + 64)
/* Response buffer: every response the card builds fits here. */
#define VC_RESP_CAP (VC_MAX_OBJECT + 64)
#define VC_MAX_OBJECTS 64
/* The state file: at most this big, in a directory of the user's that
 * nobody else may write to (fsutil.h; a home directory that is 0755 is
 * fine: the file itself is 0600). */
#define VC_STATE_MAX (16u * 1024 * 1024)
#define VC_STATE_DIR_FLAGS TK_FS_DIR_READABLE

struct vc_key {
	uint8_t alg; /* 0: empty */
	uint8_t pin_policy;
	uint8_t touch_policy;
	uint8_t origin;
	EVP_PKEY *pkey;
};

struct vc_obj {
	uint32_t tag;
	uint8_t *data;
	size_t len;
};

/* The volatile authentication steps of the management key. */
enum vc_mgm_step {
	MGM_NONE = 0,
	MGM_WITNESS,   /* we sent an encrypted witness (80) */
	MGM_CHALLENGE, /* we sent a plain challenge (81) */
};

struct tk_vcard {
	char *path;  /* NULL: in memory */
	int lock_fd; /* flock()ed <path>.lock, -1: none */

	/* persistent state */
	uint8_t pin[VC_PIN_LEN], puk[VC_PIN_LEN];
	uint8_t pin_tries, pin_max, puk_tries, puk_max;
	uint8_t mgm_alg, mgm_touch;
	uint8_t mgm_key[32];
	size_t mgm_len;
	uint32_t serial;
	struct vc_obj objs[VC_MAX_OBJECTS];
	size_t nobjs;
	struct vc_key keys[VC_NSLOTS];

	unsigned applets;   /* TK_VCARD_APPLET_*: what SELECT can reach */
	struct vc_pgp *pgp; /* the OpenPGP applet's state, NULL without it */

	/* volatile state */
	int app;        /* the selected applet: VC_APP_* */
	bool pin_ok;    /* PIN verified in this session */
	bool pin_fresh; /* ... and not yet consumed by a PIN-always key */
	bool mgm_ok;
	enum vc_mgm_step mgm_step;
	uint8_t mgm_step_alg;
	uint8_t mgm_nonce[16];
	size_t mgm_nonce_len;

	/* command chaining */
	uint8_t *chain;
	size_t chain_len;
	bool chaining;
	uint8_t chain_ins, chain_p1, chain_p2;

	/* response chaining: the rest of the last response */
	uint8_t *pend;
	size_t pend_len, pend_off;

	uint8_t *rbuf; /* VC_RESP_CAP, built responses */

	bool dirty;     /* persistent state changed: save before answering */
	bool fuzz_fast; /* refuse RSA key generation (fuzzers) */

	uint16_t no_ext_sw; /* option no-extended: SW for extended APDUs (0: off) */
	uint8_t fw[3];      /* option firmware: GET VERSION, attestation (5.4.3) */
	int latency_profile;
	uint32_t part_latency_us; /* per-part time of the current chained read */
	uint64_t apdus;
};

enum vc_app {
	VC_APP_NONE = 0,
	VC_APP_PIV = 1,
	VC_APP_PGP = 2,
};

/* Handlers: the response data go to out, the return value is the SW. */
typedef uint16_t (*vc_handler_fn)(tk_vcard_t *c, const tk_apdu_t *a, tk_wbuf_t *out);

/* card.c */
int vc_slot_index(uint8_t ref);
uint8_t vc_slot_ref(int index);
void vc_clear_session(tk_vcard_t *c);
int vc_random(void *p, size_t n);

/* piv_data.c */
uint16_t vc_get_data(tk_vcard_t *c, const tk_apdu_t *a, tk_wbuf_t *out);
uint16_t vc_put_data(tk_vcard_t *c, const tk_apdu_t *a, tk_wbuf_t *out);
int vc_obj_set(tk_vcard_t *c, uint32_t tag, const uint8_t *data, size_t len);
const struct vc_obj *vc_obj_find(const tk_vcard_t *c, uint32_t tag);
void vc_obj_clear(tk_vcard_t *c);
bool vc_obj_tag_valid(uint32_t tag);
int vc_obj_defaults(tk_vcard_t *c);
/* Size of the object as GET DATA returns it (0: absent). */
size_t vc_obj_wire_len(const tk_vcard_t *c, uint32_t tag);
int vc_parse_tag_list(const uint8_t *p, size_t n, uint32_t *tag);

/* piv_auth.c */
uint16_t vc_verify(tk_vcard_t *c, const tk_apdu_t *a, tk_wbuf_t *out);
uint16_t vc_change_ref(tk_vcard_t *c, const tk_apdu_t *a, tk_wbuf_t *out);
uint16_t vc_reset_retry(tk_vcard_t *c, const tk_apdu_t *a, tk_wbuf_t *out);
uint16_t vc_mgm_auth(tk_vcard_t *c, const tk_apdu_t *a, tk_wbuf_t *out);
uint16_t vc_set_mgm_key(tk_vcard_t *c, const tk_apdu_t *a, tk_wbuf_t *out);
uint16_t vc_set_pin_retries(tk_vcard_t *c, const tk_apdu_t *a, tk_wbuf_t *out);
void vc_auth_defaults(tk_vcard_t *c);
size_t vc_mgm_key_len(uint8_t alg);
bool vc_auth_is_default(const tk_vcard_t *c, uint8_t ref);

/* piv_keys.c */
uint16_t vc_generate(tk_vcard_t *c, const tk_apdu_t *a, tk_wbuf_t *out);
uint16_t vc_import(tk_vcard_t *c, const tk_apdu_t *a, tk_wbuf_t *out);
uint16_t vc_key_auth(tk_vcard_t *c, const tk_apdu_t *a, tk_wbuf_t *out);
uint16_t vc_metadata(tk_vcard_t *c, const tk_apdu_t *a, tk_wbuf_t *out);
bool vc_alg_is_rsa(uint8_t alg);
bool vc_alg_is_ec(uint8_t alg);
unsigned vc_alg_bits(uint8_t alg);
/* Algorithm id of a key, 0 when it is not one the card supports. */
uint8_t vc_pkey_alg(EVP_PKEY *pkey);
int vc_pubkey_put(tk_wbuf_t *w, EVP_PKEY *pkey, uint8_t alg);
int vc_keygen(uint8_t alg, EVP_PKEY **out);
void vc_key_clear(struct vc_key *k);

/* crypto.c: key operations both applets use */
EVP_PKEY *vc_fromdata(const char *type, OSSL_PARAM_BLD *bld, int selection);
/* RSA from its primes (and public exponent: NULL for 65537) with a modulus
 * of exactly bits; crt (dP, dQ, qInv; may be NULL) must belong to them. */
EVP_PKEY *vc_rsa_import(unsigned bits, const tk_buf_t *e, const tk_buf_t *p, const tk_buf_t *q,
                        const tk_buf_t *crt);
/* EC from its private scalar (field length, in (0, order)) on group. */
EVP_PKEY *vc_ec_import(const char *group, const tk_buf_t *s);
/* ECDSA over the first fb bytes of in: DER, or r||s (2 fb bytes). */
int vc_ecdsa_sign(EVP_PKEY *pkey, size_t fb, const uint8_t *in, size_t in_len, uint8_t *sig,
                  size_t *sig_len);
int vc_ecdsa_sign_rs(EVP_PKEY *pkey, size_t fb, const uint8_t *in, size_t in_len, uint8_t *rs);
/* ECDH with the peer's public key in our key's form: EC 04||X||Y, X25519
 * 32 bytes. Errors: TK_ERR_INVALID_ARG (no such peer key). */
int vc_ecdh(EVP_PKEY *pkey, const uint8_t *peer, size_t peer_len, uint8_t *res, size_t *res_len);
/* PKCS#1 v1.5 block type 1 signature over in as given. */
int vc_rsa_sign_pkcs1(EVP_PKEY *pkey, const uint8_t *in, size_t in_len, uint8_t *out,
                      size_t *out_len);
int vc_rsa_decrypt(EVP_PKEY *pkey, int padding, const uint8_t *in, size_t in_len, uint8_t *out,
                   size_t *out_len);

/* attest.c */
int vc_attest_create(tk_vcard_t *c);
uint16_t vc_attest(tk_vcard_t *c, const tk_apdu_t *a, tk_wbuf_t *out);

/* state.c */
int vc_state_save(tk_vcard_t *c);
int vc_state_encode(const tk_vcard_t *c, uint8_t **out, size_t *out_len);
int vc_state_decode(tk_vcard_t *c, const uint8_t *p, size_t n);

/* latency.c */
int vc_latency_parse(const char *profile);
void vc_latency_note(tk_vcard_t *c, const tk_apdu_t *a, bool ext);

/* tlv.c: BER-TLV with 1..3-byte tags and lengths up to 3 bytes. */
int vc_tlv_get(tk_buf_t *b, uint32_t *tag, tk_buf_t *val);
/* Find the first element with tag at the top level of p/n. */
int vc_tlv_find(const uint8_t *p, size_t n, uint32_t tag, tk_buf_t *val);
void vc_tlv_put_hdr(tk_wbuf_t *w, uint32_t tag, size_t len);
void vc_tlv_put(tk_wbuf_t *w, uint32_t tag, const void *v, size_t len);
size_t vc_tlv_hdr_len(uint32_t tag, size_t len);

/* Internal hooks for tests and fuzzers. */
void tk_vcard_test_set_auth(tk_vcard_t *c, bool pin, bool mgm);
void tk_vcard_test_fuzz_mode(tk_vcard_t *c, bool on);
/* The OpenPGP applet's PW1 (81 and 82) and PW3 verified or not. */
void tk_vcard_test_set_pgp_auth(tk_vcard_t *c, bool pw1, bool pw3);
int tk_vcard_test_clone(const tk_vcard_t *src, tk_vcard_t **out);

#endif
