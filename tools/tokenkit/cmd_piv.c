/* tokenkit piv: provisioning a PIV card (SP 800-73-4, with Yubico's
 * extensions where the standard has none).
 *
 *   generate READER SLOT --algorithm A     GENERATE ASYMMETRIC KEY PAIR (47)
 *   certificate READER SLOT --self-sign S  the card signs a certificate for
 *                                          its key (GENERAL AUTHENTICATE)
 *   certificate READER SLOT --import F     a certificate from a file
 *   pin change|unblock READER, puk change READER
 *   set-mgmt-key READER --new-algorithm A  SET MANAGEMENT KEY (Yubico, FF)
 *
 * Writing needs the card's management key (9B): authenticated mutually by
 * GENERAL AUTHENTICATE, witness and challenge (SP 800-73-4 part 2, 3.2.4),
 * with the algorithm GET METADATA names (3DES when the card cannot say).
 * Secrets come from a file descriptor (one line each) or the terminal
 * without echo; on the command line only with an --insecure-... option.
 * The well-known default management key is used only when asked for with
 * --default-mgmt-key. Nothing is written before the management key and,
 * for signing, the PIN are accepted. */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/x509.h>

#include <tokenkit/card.h>
#include <tokenkit/err.h>
#include <tokenkit/hex.h>
#include <tokenkit/mem.h>
#include <tokenkit/tlv.h>
#include <tokenkit/token.h>

#include "cmd_piv.h"
#include "piv_attest.h"
#include "piv_prov.h"
#include "tool.h"

#define MGM_MAX 32

static const uint8_t piv_aid[] = {0xA0, 0x00, 0x00, 0x03, 0x08};
/* The factory management key of PIV cards and YubiKeys (public knowledge). */
static const uint8_t default_mgm[24] = {1, 2, 3, 4, 5, 6, 7, 8, 1, 2, 3, 4,
                                        5, 6, 7, 8, 1, 2, 3, 4, 5, 6, 7, 8};

int
usage_err(void)
{
	fprintf(stderr,
	        "usage: tokenkit piv generate READER SLOT --algorithm ALG [POLICY] [-o "
	        "PUBKEY.pem]\n"
	        "                    [MGMT]  (ALG: "
	        "rsa1024|rsa2048|rsa3072|rsa4096|eccp256|eccp384)\n"
	        "       tokenkit piv import READER SLOT KEYFILE [POLICY] [--no-certificate]\n"
	        "                    [--passphrase-fd N] [-o PUBKEY.pem] [MGMT]\n"
	        "       tokenkit piv certificate READER SLOT (--self-sign SUBJECT [--days N] [PIN] "
	        "|\n"
	        "                    --import CERT.pem) [MGMT]\n"
	        "       tokenkit piv certificate READER SLOT --csr SUBJECT [-o REQ.pem] [PIN]\n"
	        "       tokenkit piv pin change READER [PIN] [NEW-PIN]\n"
	        "       tokenkit piv pin|puk change READER --pad\n"
	        "       tokenkit piv pin unblock READER [PUK] [NEW-PIN]\n"
	        "       tokenkit piv puk change READER [PUK] [NEW-PUK]\n"
	        "       tokenkit piv set-mgmt-key READER --new-algorithm "
	        "3des|aes128|aes192|aes256\n"
	        "                    [--new-mgmt-key-fd N] [MGMT]\n"
	        "       tokenkit piv reset READER [--block] [--yes]\n"
	        "  every command: --json prints one JSON object (on success)\n"
	        "  POLICY: --pin-policy never|once|always, --touch-policy never|always|cached\n"
	        "  MGMT: --mgmt-key-fd N (hex, one line) or --default-mgmt-key; asked on the\n"
	        "        terminal otherwise\n"
	        "  PIN: --pin-fd N; NEW-PIN: --new-pin-fd N (or the next line of --pin-fd);\n"
	        "  PUK: --puk-fd N; NEW-PUK: --new-puk-fd N (or the next line of --puk-fd)\n"
	        "  --insecure-mgmt-key HEX, --insecure-new-mgmt-key HEX, --insecure-pin P,\n"
	        "  --insecure-new-pin P, --insecure-puk P, --insecure-new-puk P,\n"
	        "  --insecure-passphrase P put secrets on the command line, where every\n"
	        "  other user sees them\n");
	return TOOL_EXIT_USAGE;
}

/* argv[0] "piv", argv[1] the subcommand, argv[first..] the rest. */
static int
parse(int argc, char **argv, int first, struct opts *o)
{
	const tool_secret_opt_t secrets[] = {{"mgmt-key", &o->mgm},   {"new-mgmt-key", &o->new_mgm},
	                                     {"pin", &o->pin},        {"new-pin", &o->new_pin},
	                                     {"puk", &o->puk},        {"new-puk", &o->new_puk},
	                                     {"passphrase", &o->pass}};
	const size_t nsecrets = sizeof(secrets) / sizeof(secrets[0]);

	memset(o, 0, sizeof(*o));
	tool_secrets_init(secrets, nsecrets);
	o->cert.days = 365;
	for (int i = first; i < argc; i++) {
		const char *a = argv[i];
		const char *v = i + 1 < argc ? argv[i + 1] : NULL;
		bool used_v = true, bad = false;

		if (strcmp(a, "--default-mgmt-key") == 0) {
			o->default_mgm = true;
			used_v = false;
		} else if (strcmp(a, "--no-certificate") == 0) {
			o->no_cert = true;
			used_v = false;
		} else if (strcmp(a, "--json") == 0) {
			o->json = true;
			used_v = false;
		} else if (strcmp(a, "--yes") == 0) {
			o->yes = true;
			used_v = false;
		} else if (strcmp(a, "--block") == 0) {
			o->block = true;
			used_v = false;
		} else if (strcmp(a, "--pin-policy") == 0 && v != NULL) {
			if (piv_pin_policy_parse(v, &o->pin_policy) != TK_OK)
				return usage_err();
		} else if (strcmp(a, "--touch-policy") == 0 && v != NULL) {
			if (piv_touch_policy_parse(v, &o->touch_policy) != TK_OK)
				return usage_err();
		} else if (strcmp(a, "--pad") == 0) {
			o->pad = true;
			used_v = false;
		} else if (strcmp(a, "--algorithm") == 0 && v != NULL) {
			o->algorithm = v;
		} else if (strcmp(a, "--new-algorithm") == 0 && v != NULL) {
			o->new_algorithm = v;
		} else if ((strcmp(a, "-o") == 0 || strcmp(a, "--output") == 0) && v != NULL) {
			o->out = v;
		} else if (tool_cert_opt(a, v, &o->cert, &bad)) {
			if (bad)
				return usage_err();
		} else if (tool_secret_opt(a, v, secrets, nsecrets)) {
			/* taken */
		} else if (a[0] != '-' && o->nargs < 3) {
			o->args[o->nargs++] = a;
			used_v = false;
		} else {
			fprintf(stderr, "tokenkit piv: unknown or incomplete option '%s'\n",
			        tool_text(a));
			return usage_err();
		}
		if (used_v)
			i++;
	}
	return TOOL_EXIT_OK;
}

/* ---- secrets ---------------------------------------------------------------------------- */

int
read_secret(const char *what, const tool_secret_t *s, char *buf, size_t cap, size_t *len,
            const char *fdopt)
{
	return tool_read_secret(&(tool_ask_t){"piv", what, fdopt, 0, 0}, s, buf, cap, len);
}

/* PIV PINs and PUKs: 6 to 8 characters, padded with FF to 8 bytes. */
static int
pin_block(const char *what, const char *s, size_t len, uint8_t out[8])
{
	memset(out, 0xFF, 8);
	if (len < 6 || len > 8) {
		fprintf(stderr, "tokenkit piv: a %s has 6 to 8 characters\n", what);
		return TOOL_EXIT_USAGE;
	}
	memcpy(out, s, len);
	return TOOL_EXIT_OK;
}

static size_t
mgm_key_len(uint8_t alg)
{
	switch (alg) {
	case PIV_ALG_3DES:
	case PIV_ALG_AES192:
		return 24;
	case PIV_ALG_AES128:
		return 16;
	case PIV_ALG_AES256:
		return 32;
	default:
		return 0;
	}
}

static int
mgm_alg_parse(const char *s, uint8_t *alg)
{
	static const struct {
		const char *name;
		uint8_t alg;
	} t[] = {{"3des", PIV_ALG_3DES},
	         {"aes128", PIV_ALG_AES128},
	         {"aes192", PIV_ALG_AES192},
	         {"aes256", PIV_ALG_AES256}};

	*alg = 0;
	for (size_t i = 0; s != NULL && i < sizeof(t) / sizeof(t[0]); i++)
		if (strcmp(s, t[i].name) == 0) {
			*alg = t[i].alg;
			return TK_OK;
		}
	return TK_ERR_INVALID_ARG;
}

/* A management key given as hex; a new one is asked twice on a terminal
 * (a typo would lock the card's administration away). */
static int
read_mgm_key(const char *what, const tool_secret_t *s, const char *fdopt, bool is_new, uint8_t *key,
             size_t *klen)
{
	const tool_ask_t ask = {"piv", what, fdopt, 0, 0};
	char hex[TOOL_SECRET_CAP];
	size_t hl = 0;
	int rc, r;

	*klen = 0;
	rc = is_new ? tool_read_new_secret(&ask, s, NULL, hex, sizeof(hex), &hl)
	            : tool_read_secret(&ask, s, hex, sizeof(hex), &hl);
	if (rc != TOOL_EXIT_OK) {
		tk_wipe(hex, sizeof(hex));
		return rc;
	}
	r = tk_hex_decode(hex, key, MGM_MAX, klen);
	tk_wipe(hex, sizeof(hex));
	if (r != TK_OK || (*klen != 16 && *klen != 24 && *klen != 32)) {
		tk_wipe(key, MGM_MAX);
		*klen = 0;
		fprintf(stderr, "tokenkit piv: the %s must be 32, 48 or 64 hex digits\n", what);
		return TOOL_EXIT_USAGE;
	}
	return TOOL_EXIT_OK;
}

/* ---- the card --------------------------------------------------------------------------- */

/* Take the card in READER, in a transaction, with PIV selected. */
int
piv_open(tool_session_t *p, const char *cmd, const char *reader)
{
	uint16_t sw = 0;
	int rc;

	if ((rc = tool_session_open(p, cmd, reader, piv_aid, sizeof(piv_aid), PIV_LE, &sw)) !=
	    TOOL_EXIT_OK)
		return rc;
	if (sw != 0x9000) {
		fprintf(stderr, "tokenkit %s: %s: the card has no PIV application\n", cmd,
		        tool_text(tk_card_reader_name(p->c)));
		return TOOL_EXIT_ERROR;
	}
	return TOOL_EXIT_OK;
}

static const EVP_CIPHER *
mgm_cipher(uint8_t alg)
{
	switch (alg) {
	case PIV_ALG_3DES:
		return EVP_des_ede3_ecb();
	case PIV_ALG_AES128:
		return EVP_aes_128_ecb();
	case PIV_ALG_AES192:
		return EVP_aes_192_ecb();
	case PIV_ALG_AES256:
		return EVP_aes_256_ecb();
	default:
		return NULL;
	}
}

/* One block through the management key's cipher. */
static int
mgm_block(uint8_t alg, const uint8_t *key, bool enc, const uint8_t *in, uint8_t *out, size_t bl)
{
	const EVP_CIPHER *ciph = mgm_cipher(alg);
	EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
	int n1 = 0, n2 = 0, r = TK_ERR_CRYPTO;

	if (ctx == NULL || ciph == NULL)
		goto out;
	if (EVP_CipherInit_ex(ctx, ciph, NULL, key, NULL, enc ? 1 : 0) == 1 &&
	    EVP_CIPHER_CTX_set_padding(ctx, 0) == 1 &&
	    EVP_CipherUpdate(ctx, out, &n1, in, (int)bl) == 1 &&
	    EVP_CipherFinal_ex(ctx, out + n1, &n2) == 1 && (size_t)(n1 + n2) == bl)
		r = TK_OK;
out:
	EVP_CIPHER_CTX_free(ctx);
	ERR_clear_error();
	return r;
}

/* The management key's algorithm: GET METADATA (YubiKey 5.3+), else 3DES. */
static int
mgm_card_alg(tool_session_t *p, uint8_t *alg)
{
	uint8_t resp[RESP_CAP];
	size_t n = 0;
	uint16_t sw = 0;
	tk_tlv_t t;
	int r;

	*alg = PIV_ALG_3DES;
	if ((r = tool_xfer(p, 0xF7, 0x00, 0x9B, NULL, 0, resp, RESP_CAP, &n, &sw)) != TK_OK)
		return r;
	if (sw == 0x9000 && tk_ber_find(resp, n, 0x01, &t) == TK_OK && t.len == 1 &&
	    mgm_key_len(t.value[0]) != 0)
		*alg = t.value[0];
	return TK_OK;
}

/* Mutual authentication with the management key (witness, then our
 * challenge, which the card must answer with the same key). */
int
mgm_auth(tool_session_t *p, const struct opts *o)
{
	uint8_t key[MGM_MAX], w[16], ch[16], expect[16], cmd[64], resp[RESP_CAP], alg = 0;
	const uint8_t *v = NULL;
	size_t klen = 0, bl, n = 0, vlen = 0;
	uint16_t sw = 0;
	tk_wbuf_t wb;
	int rc = TOOL_EXIT_ERROR, r;

	if ((r = mgm_card_alg(p, &alg)) != TK_OK)
		return tool_card_err(p, "management key metadata", r);
	if (o->default_mgm) {
		memcpy(key, default_mgm, sizeof(default_mgm));
		klen = sizeof(default_mgm);
		fprintf(stderr,
		        "tokenkit %s: using the well-known DEFAULT management key (anyone "
		        "can; change it with `tokenkit piv set-mgmt-key`)\n",
		        p->cmd);
	} else if ((rc = read_mgm_key("management key", &o->mgm, "--mgmt-key-fd", false, key,
	                              &klen)) != TOOL_EXIT_OK) {
		goto out;
	}
	rc = TOOL_EXIT_ERROR;
	if (klen != mgm_key_len(alg)) {
		fprintf(stderr, "tokenkit %s: the card's management key is %zu bytes, not %zu\n",
		        p->cmd, mgm_key_len(alg), klen);
		goto out;
	}
	bl = alg == PIV_ALG_3DES ? 8 : 16;
	/* 7C { 80 00 }: ask for a witness */
	if ((r = tool_xfer(p, 0x87, alg, 0x9B, (const uint8_t *)"\x7C\x02\x80\x00", 4, resp,
	                   RESP_CAP, &n, &sw)) != TK_OK) {
		rc = tool_card_err(p, "management key", r);
		goto out;
	}
	if (sw != 0x9000) {
		rc = tool_sw_err(p, "management key witness", sw);
		goto out;
	}
	if (piv_auth_response(resp, n, 0x80, &v, &vlen) != TK_OK || vlen != bl ||
	    mgm_block(alg, key, false, v, w, bl) != TK_OK || RAND_bytes(ch, (int)bl) != 1 ||
	    mgm_block(alg, key, true, ch, expect, bl) != TK_OK) {
		fprintf(stderr, "tokenkit %s: malformed management key witness\n", p->cmd);
		goto out;
	}
	tk_wbuf_init(&wb, cmd, sizeof(cmd));
	tk_ber_put_hdr(&wb, 0x7C, 2 * (2 + bl) + 2);
	tk_ber_put(&wb, 0x80, w, bl);
	tk_ber_put(&wb, 0x81, ch, bl);
	tk_ber_put(&wb, 0x82, NULL, 0);
	if ((r = tk_wbuf_error(&wb)) != TK_OK ||
	    (r = tool_xfer(p, 0x87, alg, 0x9B, cmd, wb.len, resp, RESP_CAP, &n, &sw)) != TK_OK) {
		rc = tool_card_err(p, "management key", r);
		goto out;
	}
	if (sw == 0x6982 || sw == 0x6A80 || sw == 0x6985) {
		fprintf(stderr,
		        "tokenkit %s: %s: wrong management key (the card refused it, %04X); "
		        "nothing was changed\n",
		        p->cmd, tool_text(tk_card_reader_name(p->c)), sw);
		goto out;
	}
	if (sw != 0x9000) {
		rc = tool_sw_err(p, "management key", sw);
		goto out;
	}
	if (piv_auth_response(resp, n, 0x82, &v, &vlen) != TK_OK || vlen != bl ||
	    !tk_memeq_ct(v, expect, bl)) {
		fprintf(stderr,
		        "tokenkit %s: the card did not prove it holds the management key; "
		        "nothing was changed\n",
		        p->cmd);
		goto out;
	}
	rc = TOOL_EXIT_OK;
out:
	tk_wipe(key, sizeof(key));
	tk_wipe(w, sizeof(w));
	tk_wipe(expect, sizeof(expect));
	return rc;
}

static int
verify_pin(tool_session_t *p, const struct opts *o)
{
	char pin[TOOL_SECRET_CAP];
	uint8_t blk[8];
	size_t pl = 0;
	uint16_t sw = 0;
	int rc, r;

	if ((rc = read_secret("PIN", &o->pin, pin, sizeof(pin), &pl, "--pin-fd")) != TOOL_EXIT_OK)
		goto out;
	if ((rc = pin_block("PIN", pin, pl, blk)) != TOOL_EXIT_OK)
		goto out;
	if ((r = tool_xfer(p, 0x20, 0x00, 0x80, blk, 8, NULL, 0, NULL, &sw)) != TK_OK)
		rc = tool_card_err(p, "VERIFY", r);
	else
		rc = tool_pin_sw(p, "PIN", sw);
out:
	tk_wipe(pin, sizeof(pin));
	tk_wipe(blk, sizeof(blk));
	return rc;
}

/* ---- generate --------------------------------------------------------------------------- */

static int
key_alg_parse(const char *s, uint8_t *alg)
{
	*alg = s == NULL                   ? 0
	       : strcmp(s, "rsa1024") == 0 ? PIV_ALG_RSA1024
	       : strcmp(s, "rsa2048") == 0 ? PIV_ALG_RSA2048
	       : strcmp(s, "rsa3072") == 0 ? PIV_ALG_RSA3072
	       : strcmp(s, "rsa4096") == 0 ? PIV_ALG_RSA4096
	       : strcmp(s, "eccp256") == 0 ? PIV_ALG_ECCP256
	       : strcmp(s, "eccp384") == 0 ? PIV_ALG_ECCP384
	                                   : 0;
	return *alg != 0 ? TK_OK : TK_ERR_INVALID_ARG;
}

/* What the card made for slot ref, a public key or a request: PEM to -o's
 * file (and said so) or, without --json, standard output; with --json the
 * object. */
static int
piv_output(tool_session_t *p, const struct opts *o, uint8_t ref, const char *what, EVP_PKEY *pk,
           X509_REQ *req)
{
	int rc = tool_output_pem(p->cmd, o->out, o->json, what, pk, NULL, req);

	if (rc != TOOL_EXIT_OK)
		return rc;
	if (o->out != NULL)
		fprintf(stderr, "tokenkit %s: slot %02X: %s written to %s\n", p->cmd, ref, what,
		        tool_text(o->out));
	if (o->json) {
		pj_begin(p);
		pj_slot(p, ref);
		pj_pem(pk != NULL ? "public_key" : "request", pk, NULL, req);
		pj_end();
	}
	return TOOL_EXIT_OK;
}

static int
piv_generate(const struct opts *o)
{
	tool_session_t p = {0};
	struct tool_progress *pr = NULL;
	uint8_t alg = 0, ref = 0, cmd[11] = {0xAC, 0x03, 0x80, 0x01, 0};
	size_t cl = 5;
	uint8_t *resp = NULL;
	size_t n = 0;
	uint16_t sw = 0;
	EVP_PKEY *pk = NULL;
	int rc, r;

	if (o->nargs != 2 || piv_parse_slot(o->args[1], &ref) != TK_OK ||
	    key_alg_parse(o->algorithm, &alg) != TK_OK)
		return usage_err();
	cmd[4] = alg;
	/* Yubico's policies (AA, AB) inside the template */
	if (o->pin_policy != 0) {
		cmd[cl++] = 0xAA;
		cmd[cl++] = 0x01;
		cmd[cl++] = o->pin_policy;
	}
	if (o->touch_policy != 0) {
		cmd[cl++] = 0xAB;
		cmd[cl++] = 0x01;
		cmd[cl++] = o->touch_policy;
	}
	cmd[1] = (uint8_t)(cl - 2);
	if ((rc = piv_open_for_key(&p, "piv generate", o, alg)) != TOOL_EXIT_OK)
		goto out;
	if ((resp = malloc(RESP_CAP)) == NULL) {
		rc = tool_card_err(&p, "generate", TK_ERR_NO_MEMORY);
		goto out;
	}
	/* on-card RSA generation takes tens of seconds: show it is alive */
	if (piv_rsa_bits(alg) != 0)
		pr = tool_progress_start("tokenkit piv generate: generating an RSA key on the card",
		                         o->json);
	r = tool_xfer_slow(&p, 0x47, 0x00, ref, cmd, cl, resp, RESP_CAP, &n, &sw);
	tool_progress_stop(&pr);
	if ((rc = tool_card_result(&p, "generate", r, sw)) != TOOL_EXIT_OK)
		goto out;
	if ((r = piv_pubkey_from_generate(alg, resp, n, &pk)) != TK_OK) {
		fprintf(stderr, "tokenkit piv generate: the card's public key is malformed (%s)\n",
		        tk_strerror(r));
		rc = TOOL_EXIT_ERROR;
		goto out;
	}
	rc = piv_output(&p, o, ref, "public key", pk, NULL);
out:
	EVP_PKEY_free(pk);
	free(resp);
	tool_session_close(&p);
	return rc;
}

/* ---- certificate ------------------------------------------------------------------------ */

/* PUT DATA of the slot's certificate object: 53 { 70 cert, 71 00, FE }. */
int
put_cert(tool_session_t *p, uint8_t ref, X509 *x)
{
	uint32_t obj = piv_slot_object(ref);
	uint8_t id[3] = {(uint8_t)(obj >> 16), (uint8_t)(obj >> 8), (uint8_t)obj};
	unsigned char *der = NULL;
	uint8_t *buf = NULL;
	size_t inner, cap;
	uint16_t sw = 0;
	tk_wbuf_t w;
	int dl = i2d_X509(x, &der), rc = TOOL_EXIT_ERROR, r;

	if (dl <= 0) {
		fprintf(stderr, "tokenkit %s: cannot encode the certificate\n", p->cmd);
		goto out;
	}
	inner = tk_ber_hdr_len(0x70, (size_t)dl) + (size_t)dl + 3 + 2;
	cap = 5 + tk_ber_hdr_len(0x53, inner) + inner;
	if ((buf = malloc(cap)) == NULL)
		goto out;
	tk_wbuf_init(&w, buf, cap);
	tk_ber_put(&w, 0x5C, id, 3);
	tk_ber_put_hdr(&w, 0x53, inner);
	tk_ber_put(&w, 0x70, der, (size_t)dl);
	tk_ber_put(&w, 0x71, "\x00", 1);
	tk_ber_put(&w, 0xFE, NULL, 0);
	if ((r = tk_wbuf_error(&w)) != TK_OK ||
	    (r = tool_xfer(p, 0xDB, 0x3F, 0xFF, buf, w.len, NULL, 0, NULL, &sw)) != TK_OK) {
		rc = tool_card_err(p, "PUT DATA", r);
		goto out;
	}
	if (sw != 0x9000) {
		rc = tool_sw_err(p, "PUT DATA (certificate)", sw);
		goto out;
	}
	rc = TOOL_EXIT_OK;
out:
	OPENSSL_free(der);
	free(buf);
	return rc;
}

/* The card signs digest (of md) with the key in ref: GENERAL AUTHENTICATE
 * 7C { 82 00, 81 input }, input the hash (EC) or the PKCS#1 v1.5 block
 * (RSA, raw on the card). sig: DER ECDSA-Sig-Value or the RSA signature. */
static int
card_sign(tool_session_t *p, uint8_t alg, uint8_t ref, const EVP_MD *md, const uint8_t *tbs,
          size_t tbs_len, uint8_t **sig, size_t *sig_len)
{
	/* DigestInfo prefixes for SHA-256 (RFC 8017, 9.2 note 1) */
	static const uint8_t di256[] = {0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01,
	                                0x65, 0x03, 0x04, 0x02, 0x01, 0x05, 0x00, 0x04, 0x20};
	uint8_t h[64], in[512], cmd[600], *resp = NULL;
	const uint8_t *v = NULL;
	unsigned hl = 0;
	size_t inl, n = 0, vlen = 0;
	uint16_t sw = 0;
	tk_wbuf_t w;
	int rc = TOOL_EXIT_ERROR, r;

	*sig = NULL;
	*sig_len = 0;
	if (EVP_Digest(tbs, tbs_len, h, &hl, md, NULL) != 1)
		goto out;
	if (piv_rsa_bits(alg) != 0) {
		inl = piv_rsa_bits(alg) / 8;
		memset(in, 0xFF, inl);
		in[0] = 0x00;
		in[1] = 0x01;
		in[inl - sizeof(di256) - hl - 1] = 0x00;
		memcpy(in + inl - sizeof(di256) - hl, di256, sizeof(di256));
		memcpy(in + inl - hl, h, hl);
	} else {
		inl = hl;
		memcpy(in, h, hl);
	}
	tk_wbuf_init(&w, cmd, sizeof(cmd));
	tk_ber_put_hdr(&w, 0x7C, 2 + tk_ber_hdr_len(0x81, inl) + inl);
	tk_ber_put(&w, 0x82, NULL, 0);
	tk_ber_put(&w, 0x81, in, inl);
	if ((resp = malloc(RESP_CAP)) == NULL || tk_wbuf_error(&w) != TK_OK)
		goto out;
	r = tool_xfer(p, 0x87, alg, ref, cmd, w.len, resp, RESP_CAP, &n, &sw);
	if ((rc = tool_card_result(p, "sign", r, sw)) != TOOL_EXIT_OK)
		goto out;
	rc = TOOL_EXIT_ERROR;
	if (piv_auth_response(resp, n, 0x82, &v, &vlen) != TK_OK || (*sig = malloc(vlen)) == NULL) {
		fprintf(stderr, "tokenkit %s: malformed signature from the card\n", p->cmd);
		goto out;
	}
	memcpy(*sig, v, vlen);
	*sig_len = vlen;
	rc = TOOL_EXIT_OK;
out:
	free(resp);
	ERR_clear_error();
	return rc;
}

/* The slot's key: from GET METADATA. */
static int
slot_pubkey(tool_session_t *p, uint8_t ref, uint8_t *alg, EVP_PKEY **pk)
{
	uint8_t *resp = malloc(RESP_CAP);
	size_t n = 0;
	uint16_t sw = 0;
	int rc = TOOL_EXIT_ERROR, r;

	*pk = NULL;
	*alg = 0;
	if (resp == NULL)
		return tool_card_err(p, "metadata", TK_ERR_NO_MEMORY);
	if ((r = tool_xfer(p, 0xF7, 0x00, ref, NULL, 0, resp, RESP_CAP, &n, &sw)) != TK_OK) {
		rc = tool_card_err(p, "metadata", r);
		goto out;
	}
	if (sw != 0x9000) {
		fprintf(stderr,
		        "tokenkit %s: slot %02X: the card does not tell its public key "
		        "(GET METADATA: %04X); the slot may be empty\n",
		        p->cmd, ref, sw);
		goto out;
	}
	if (piv_pubkey_from_metadata(resp, n, alg, pk) != TK_OK) {
		fprintf(stderr, "tokenkit %s: slot %02X: malformed key metadata\n", p->cmd, ref);
		goto out;
	}
	rc = TOOL_EXIT_OK;
out:
	free(resp);
	return rc;
}

/* The card signs for tool_card_signed: VERIFY with the PIN, then
 * GENERAL AUTHENTICATE. */
struct piv_signer {
	tool_session_t *p;
	const struct opts *o;
	uint8_t alg, ref;
};

static int
piv_sign_cb(void *ctx, const EVP_MD *md, const uint8_t *tbs, size_t tbs_len, uint8_t **sig,
            size_t *sig_len)
{
	struct piv_signer *ps = ctx;
	int rc = verify_pin(ps->p, ps->o);

	if (rc != TOOL_EXIT_OK)
		return rc;
	return card_sign(ps->p, ps->alg, ps->ref, md, tbs, tbs_len, sig, sig_len);
}

/* A self-signed certificate (--self-sign) or a PKCS#10 request (--csr) for
 * the slot's key (its public key from GET METADATA), signed by the card. */
static int
card_signed(tool_session_t *p, const struct opts *o, uint8_t ref, X509 **xout, X509_REQ **rout)
{
	struct piv_signer ps = {p, o, 0, ref};
	tool_card_signer_t s = {NULL, piv_sign_cb, &ps};
	int rc;

	if ((rc = slot_pubkey(p, ref, &ps.alg, &s.pk)) != TOOL_EXIT_OK)
		return rc;
	rc = tool_card_signed(p->cmd, &s, rout != NULL ? o->cert.csr : o->cert.self_sign,
	                      o->cert.days, xout, rout);
	EVP_PKEY_free(s.pk);
	return rc;
}

/* certificate --csr: nothing is written to the card, so no management key. */
static int
piv_csr(const struct opts *o, uint8_t ref)
{
	tool_session_t p = {0};
	X509_REQ *req = NULL;
	int rc;

	if ((rc = piv_open(&p, "piv certificate", o->args[0])) != TOOL_EXIT_OK)
		goto out;
	if ((rc = card_signed(&p, o, ref, NULL, &req)) != TOOL_EXIT_OK)
		goto out;
	rc = piv_output(&p, o, ref, "request", NULL, req);
out:
	X509_REQ_free(req);
	tool_session_close(&p);
	return rc;
}

static int
piv_certificate(const struct opts *o)
{
	tool_session_t p = {0};
	X509 *x = NULL;
	uint8_t ref = 0;
	int rc;

	if (o->nargs != 2 || piv_parse_slot(o->args[1], &ref) != TK_OK ||
	    (o->cert.self_sign != NULL) + (o->cert.import != NULL) + (o->cert.csr != NULL) != 1)
		return usage_err();
	if (o->cert.csr != NULL)
		return piv_csr(o, ref);
	if (o->cert.import != NULL && (x = tool_load_cert(o->cert.import)) == NULL) {
		fprintf(stderr,
		        "tokenkit piv certificate: cannot read a certificate (PEM or DER) "
		        "from %s\n",
		        tool_text(o->cert.import));
		return TOOL_EXIT_ERROR;
	}
	if ((rc = piv_open(&p, "piv certificate", o->args[0])) != TOOL_EXIT_OK)
		goto out;
	if ((rc = mgm_auth(&p, o)) != TOOL_EXIT_OK)
		goto out;
	if (o->cert.self_sign != NULL && (rc = card_signed(&p, o, ref, &x, NULL)) != TOOL_EXIT_OK)
		goto out;
	if ((rc = put_cert(&p, ref, x)) != TOOL_EXIT_OK)
		goto out;
	fprintf(stderr, "tokenkit piv certificate: slot %02X: certificate written (object %06X)\n",
	        ref, piv_slot_object(ref));
	/* a copy of the certificate only where -o says */
	if (o->out != NULL)
		rc = tool_output_pem(p.cmd, o->out, true, "certificate", NULL, x, NULL);
	if (rc == TOOL_EXIT_OK && o->json) {
		char obj[8];

		snprintf(obj, sizeof(obj), "%06X", piv_slot_object(ref));
		pj_begin(&p);
		pj_slot(&p, ref);
		pj_str("object", obj);
		pj_pem("certificate", NULL, x, NULL);
		pj_end();
	}
out:
	X509_free(x);
	tool_session_close(&p);
	return rc;
}

/* ---- PIN, PUK, management key ------------------------------------------------------------ */

/* CHANGE REFERENCE DATA with the old and the new PIN (PUK) typed on the
 * reader's PIN pad (tk_token_change_pin_pad): they never reach this
 * program. */
static int
piv_pad_change(const struct opts *o, const char *cmd, uint8_t ref)
{
	const char *what = ref == 0x81 ? "PUK" : "PIN";
	tk_token_opts_t to;
	tk_token_info_t ti;
	tk_slotmgr_t *m = NULL;
	tk_card_t *c = NULL;
	tk_token_t *t = NULL;
	int rc, r;

	if (o->nargs != 1 || o->pin.insecure != NULL || o->pin.fd >= 0 ||
	    o->new_pin.insecure != NULL || o->new_pin.fd >= 0 || o->puk.insecure != NULL ||
	    o->puk.fd >= 0 || o->new_puk.insecure != NULL || o->new_puk.fd >= 0)
		return usage_err();
	if ((rc = tool_open_card(cmd, o->args[0], &m, &c)) != TOOL_EXIT_OK)
		goto out;
	tk_token_opts_init(&to);
	if ((r = tk_token_open(c, &to, &t)) != TK_OK) {
		fprintf(stderr, "tokenkit %s: %s: %s\n", cmd, tool_text(tk_card_reader_name(c)),
		        tk_strerror(r));
		rc = tool_exit_code(r);
		goto out;
	}
	fprintf(stderr,
	        "tokenkit %s: type the %s, then the new %s twice, on the reader's PIN pad\n", cmd,
	        what, what);
	r = tk_token_change_pin_pad(t, ref == 0x81 ? TK_USER_SO : TK_USER_USER);
	if (r == TK_OK) {
		fprintf(stderr, "tokenkit %s: done\n", cmd);
		rc = TOOL_EXIT_OK;
		if (o->json) {
			tool_session_t jp = {.cmd = cmd, .c = c, .le = PIV_LE};

			pj_begin(&jp);
			pj_str("reference", what);
			pj_int("retries_left", tk_token_info(t, &ti) != TK_OK ? -1
			                       : ref == 0x81                  ? ti.puk_retries
			                                                      : ti.pin_retries);
			pj_end();
		}
	} else if (r == TK_ERR_PIN_INCORRECT && tk_token_info(t, &ti) == TK_OK &&
	           (ref == 0x81 ? ti.puk_retries : ti.pin_retries) >= 0) {
		fprintf(stderr, "tokenkit %s: wrong %s (%d tries left)\n", cmd, what,
		        ref == 0x81 ? ti.puk_retries : ti.pin_retries);
		rc = tool_exit_code(r);
	} else {
		fprintf(stderr, "tokenkit %s: %s: %s%s\n", cmd, tool_text(tk_card_reader_name(c)),
		        tk_strerror(r),
		        r == TK_ERR_NOT_SUPPORTED ? " (no PIN pad that can change PINs)" : "");
		rc = tool_exit_code(r);
	}
out:
	tk_token_free(&t);
	tk_card_unref(&c);
	tk_slotmgr_free(&m);
	return rc;
}

/* CHANGE REFERENCE DATA (24) or RESET RETRY COUNTER (2C): old || new. */
static int
piv_ref_change(const struct opts *o, const char *cmd, uint8_t ins, uint8_t ref)
{
	const bool puk_old = ins == 0x2C || ref == 0x81;
	const char *old_what = puk_old ? "PUK" : "PIN";
	const char *new_what = ref == 0x81 ? "new PUK" : "new PIN";
	const tool_secret_t *olds = puk_old ? &o->puk : &o->pin;
	const tool_secret_t *news = ref == 0x81 ? &o->new_puk : &o->new_pin;
	const tool_ask_t new_ask = {"piv", new_what, ref == 0x81 ? "--new-puk-fd" : "--new-pin-fd",
	                            0, 0};
	tool_secret_t next = *olds;
	char old[TOOL_SECRET_CAP], nw[TOOL_SECRET_CAP];
	uint8_t data[16];
	size_t ol = 0, nl = 0;
	uint16_t sw = 0;
	tool_session_t p = {0};
	int rc, r;

	if (o->pad && ins == 0x24)
		return piv_pad_change(o, cmd, ref);
	if (o->nargs != 1 || o->pad)
		return usage_err();
	next.insecure = NULL; /* the new one never reuses the old one's command-line value */
	if ((rc = read_secret(old_what, olds, old, sizeof(old), &ol,
	                      puk_old ? "--puk-fd" : "--pin-fd")) != TOOL_EXIT_OK ||
	    (rc = pin_block(old_what, old, ol, data)) != TOOL_EXIT_OK)
		goto out;
	if ((rc = tool_read_new_secret(&new_ask, news, &next, nw, sizeof(nw), &nl)) !=
	            TOOL_EXIT_OK ||
	    (rc = pin_block(new_what, nw, nl, data + 8)) != TOOL_EXIT_OK)
		goto out;
	if ((rc = piv_open(&p, cmd, o->args[0])) != TOOL_EXIT_OK)
		goto out;
	if ((r = tool_xfer(&p, ins, 0x00, ref, data, sizeof(data), NULL, 0, NULL, &sw)) != TK_OK) {
		rc = tool_card_err(&p, old_what, r);
		goto out;
	}
	if ((rc = tool_pin_sw(&p, old_what, sw)) == TOOL_EXIT_OK)
		fprintf(stderr, "tokenkit %s: done\n", cmd);
	if (rc == TOOL_EXIT_OK && o->json) {
		pj_begin(&p);
		pj_str("reference", ref == 0x81 ? "PUK" : "PIN");
		pj_int("retries_left", tries_left(&p, ref));
		pj_end();
	}
out:
	tk_wipe(old, sizeof(old));
	tk_wipe(nw, sizeof(nw));
	tk_wipe(data, sizeof(data));
	tool_session_close(&p);
	return rc;
}

static int
piv_set_mgm(const struct opts *o)
{
	tool_session_t p = {0};
	uint8_t key[MGM_MAX], data[3 + MGM_MAX], alg = 0;
	size_t kl = 0;
	int rc;

	if (o->nargs != 1 || mgm_alg_parse(o->new_algorithm, &alg) != TK_OK)
		return usage_err();
	if ((rc = read_mgm_key("new management key", &o->new_mgm, "--new-mgmt-key-fd", true, key,
	                       &kl)) != TOOL_EXIT_OK)
		return rc;
	if (kl != mgm_key_len(alg)) {
		fprintf(stderr, "tokenkit piv set-mgmt-key: a %s key has %zu bytes, not %zu\n",
		        o->new_algorithm, mgm_key_len(alg), kl);
		rc = TOOL_EXIT_USAGE;
		goto out;
	}
	if ((rc = piv_open(&p, "piv set-mgmt-key", o->args[0])) != TOOL_EXIT_OK)
		goto out;
	if ((rc = mgm_auth(&p, o)) != TOOL_EXIT_OK)
		goto out;
	data[0] = alg;
	data[1] = 0x9B;
	data[2] = (uint8_t)kl;
	memcpy(data + 3, key, kl);
	if ((rc = tool_xfer_ok(&p, "set management key", 0xFF, 0xFF, 0xFF, data, 3 + kl)) !=
	    TOOL_EXIT_OK)
		goto out;
	fprintf(stderr, "tokenkit piv set-mgmt-key: the management key is now a new %s key\n",
	        o->new_algorithm);
	if (o->json) {
		pj_begin(&p);
		pj_str("algorithm", o->new_algorithm);
		pj_end();
	}
out:
	tk_wipe(key, sizeof(key));
	tk_wipe(data, sizeof(data));
	tool_session_close(&p);
	return rc;
}

static int
cmd_piv(int argc, char **argv)
{
	struct opts o;
	const char *sub = argc > 1 ? argv[1] : "";
	const char *what = argc > 2 ? argv[2] : "";
	int rc;

	if (strcmp(sub, "pin") == 0 || strcmp(sub, "puk") == 0) {
		if ((rc = parse(argc, argv, 3, &o)) != TOOL_EXIT_OK)
			return rc;
		if (strcmp(sub, "pin") == 0 && strcmp(what, "change") == 0)
			return piv_ref_change(&o, "piv pin change", 0x24, 0x80);
		if (strcmp(sub, "pin") == 0 && strcmp(what, "unblock") == 0)
			return piv_ref_change(&o, "piv pin unblock", 0x2C, 0x80);
		if (strcmp(sub, "puk") == 0 && strcmp(what, "change") == 0)
			return piv_ref_change(&o, "piv puk change", 0x24, 0x81);
		return usage_err();
	}
	if ((rc = parse(argc, argv, 2, &o)) != TOOL_EXIT_OK)
		return rc;
	if (strcmp(sub, "generate") == 0)
		return piv_generate(&o);
	if (strcmp(sub, "certificate") == 0)
		return piv_certificate(&o);
	if (strcmp(sub, "import") == 0)
		return piv_import(&o);
	if (strcmp(sub, "reset") == 0)
		return piv_reset(&o);
	if (strcmp(sub, "set-mgmt-key") == 0)
		return piv_set_mgm(&o);
	return usage_err();
}

TOOL_COMMAND(piv, "piv",
             "generate|import|certificate|pin|puk|set-mgmt-key|reset READER ... [--json]",
             "provision a PIV card: keys, certificates, PIN, PUK, management key", cmd_piv)
