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
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>

#include <tokenkit/card.h>
#include <tokenkit/err.h>
#include <tokenkit/hex.h>
#include <tokenkit/mem.h>
#include <tokenkit/tlv.h>

#include "piv_prov.h"
#include "tool.h"

#define RESP_CAP 4096
#define MGM_MAX 32
#define SECRET_CAP 160

static const uint8_t piv_aid[] = {0xA0, 0x00, 0x00, 0x03, 0x08};
/* The factory management key of PIV cards and YubiKeys (public knowledge). */
static const uint8_t default_mgm[24] = {1, 2, 3, 4, 5, 6, 7, 8, 1, 2, 3, 4,
                                        5, 6, 7, 8, 1, 2, 3, 4, 5, 6, 7, 8};

/* A secret's sources: the command line (forced), a descriptor, the terminal. */
struct secret_src {
	const char *insecure;
	int fd;
};

struct opts {
	const char *args[3];
	int nargs;
	const char *algorithm, *out, *self_sign, *import, *new_algorithm;
	unsigned days;
	bool default_mgm;
	struct secret_src mgm, new_mgm, pin, new_pin, puk, new_puk;
};

struct piv {
	const char *cmd; /* "piv generate", for messages */
	tk_slotmgr_t *m;
	tk_card_t *c;
	bool in_tx;
};

static int
usage_err(void)
{
	fprintf(stderr,
	        "usage: tokenkit piv generate READER SLOT --algorithm rsa2048|eccp256|eccp384\n"
	        "                    [-o PUBKEY.pem] [MGMT]\n"
	        "       tokenkit piv certificate READER SLOT (--self-sign SUBJECT [--days N] [PIN] "
	        "|\n"
	        "                    --import CERT.pem) [MGMT]\n"
	        "       tokenkit piv pin change READER [PIN] [NEW-PIN]\n"
	        "       tokenkit piv pin unblock READER [PUK] [NEW-PIN]\n"
	        "       tokenkit piv puk change READER [PUK] [NEW-PUK]\n"
	        "       tokenkit piv set-mgmt-key READER --new-algorithm "
	        "3des|aes128|aes192|aes256\n"
	        "                    [--new-mgmt-key-fd N] [MGMT]\n"
	        "  MGMT: --mgmt-key-fd N (hex, one line) or --default-mgmt-key; asked on the\n"
	        "        terminal otherwise\n"
	        "  PIN: --pin-fd N; NEW-PIN: --new-pin-fd N (or the next line of --pin-fd);\n"
	        "  PUK: --puk-fd N; NEW-PUK: --new-puk-fd N (or the next line of --puk-fd)\n"
	        "  --insecure-mgmt-key HEX, --insecure-new-mgmt-key HEX, --insecure-pin P,\n"
	        "  --insecure-new-pin P, --insecure-puk P, --insecure-new-puk P put secrets on\n"
	        "  the command line, where every other user sees them\n");
	return TOOL_EXIT_USAGE;
}

static bool
fd_opt(const char *a, const char *v, const char *want, struct secret_src *s)
{
	return strcmp(a, want) == 0 && v != NULL && tool_parse_fd(v, &s->fd);
}

/* argv[0] "piv", argv[1] the subcommand, argv[first..] the rest. */
static int
parse(int argc, char **argv, int first, struct opts *o)
{
	memset(o, 0, sizeof(*o));
	o->mgm.fd = o->new_mgm.fd = o->pin.fd = o->new_pin.fd = o->puk.fd = o->new_puk.fd = -1;
	o->days = 365;
	for (int i = first; i < argc; i++) {
		const char *a = argv[i];
		const char *v = i + 1 < argc ? argv[i + 1] : NULL;
		bool used_v = true;

		if (strcmp(a, "--default-mgmt-key") == 0) {
			o->default_mgm = true;
			used_v = false;
		} else if (strcmp(a, "--algorithm") == 0 && v != NULL) {
			o->algorithm = v;
		} else if (strcmp(a, "--new-algorithm") == 0 && v != NULL) {
			o->new_algorithm = v;
		} else if ((strcmp(a, "-o") == 0 || strcmp(a, "--output") == 0) && v != NULL) {
			o->out = v;
		} else if (strcmp(a, "--self-sign") == 0 && v != NULL) {
			o->self_sign = v;
		} else if (strcmp(a, "--import") == 0 && v != NULL) {
			o->import = v;
		} else if (strcmp(a, "--days") == 0 && v != NULL) {
			if (!tool_parse_uint(v, 36500, &o->days) || o->days == 0)
				return usage_err();
		} else if (fd_opt(a, v, "--mgmt-key-fd", &o->mgm) ||
		           fd_opt(a, v, "--new-mgmt-key-fd", &o->new_mgm) ||
		           fd_opt(a, v, "--pin-fd", &o->pin) ||
		           fd_opt(a, v, "--new-pin-fd", &o->new_pin) ||
		           fd_opt(a, v, "--puk-fd", &o->puk) ||
		           fd_opt(a, v, "--new-puk-fd", &o->new_puk)) {
			/* taken */
		} else if (strcmp(a, "--insecure-mgmt-key") == 0 && v != NULL) {
			o->mgm.insecure = v;
		} else if (strcmp(a, "--insecure-new-mgmt-key") == 0 && v != NULL) {
			o->new_mgm.insecure = v;
		} else if (strcmp(a, "--insecure-pin") == 0 && v != NULL) {
			o->pin.insecure = v;
		} else if (strcmp(a, "--insecure-new-pin") == 0 && v != NULL) {
			o->new_pin.insecure = v;
		} else if (strcmp(a, "--insecure-puk") == 0 && v != NULL) {
			o->puk.insecure = v;
		} else if (strcmp(a, "--insecure-new-puk") == 0 && v != NULL) {
			o->new_puk.insecure = v;
		} else if (a[0] != '-' && o->nargs < 3) {
			o->args[o->nargs++] = a;
			used_v = false;
		} else {
			fprintf(stderr, "tokenkit piv: unknown or incomplete option '%s'\n", a);
			return usage_err();
		}
		if (used_v)
			i++;
	}
	return TOOL_EXIT_OK;
}

/* ---- secrets ---------------------------------------------------------------------------- */

/* Read a secret; a message and an exit code when there is none. */
static int
read_secret(const char *what, const struct secret_src *s, char *buf, size_t cap, size_t *len,
            const char *fdopt)
{
	int r = tool_get_secret(what, s->insecure, s->fd, buf, cap, len);

	if (r == TK_ERR_LOGIN_REQUIRED) {
		fprintf(stderr,
		        "tokenkit piv: the %s is needed and there is no terminal to ask on "
		        "(give it with %s N)\n",
		        what, fdopt);
		return TOOL_EXIT_LOCKED;
	}
	if (r != TK_OK) {
		fprintf(stderr, "tokenkit piv: cannot read the %s: %s\n", what, tk_strerror(r));
		return TOOL_EXIT_ERROR;
	}
	return TOOL_EXIT_OK;
}

/* A new secret: from its own source, else the next line of the old one's
 * descriptor, else the terminal twice (the two must agree). */
static int
read_new_secret(const char *what, const struct secret_src *s, const struct secret_src *old,
                char *buf, size_t cap, size_t *len, const char *fdopt)
{
	char again[SECRET_CAP], prompt[64];
	size_t al = 0;
	int rc;

	if (s->insecure != NULL || s->fd >= 0)
		return read_secret(what, s, buf, cap, len, fdopt);
	if (old->fd >= 0 && old->insecure == NULL)
		return read_secret(what, old, buf, cap, len, fdopt);
	if ((rc = read_secret(what, s, buf, cap, len, fdopt)) != TOOL_EXIT_OK)
		return rc;
	snprintf(prompt, sizeof(prompt), "%s again", what);
	rc = read_secret(prompt, s, again, sizeof(again), &al, fdopt);
	if (rc == TOOL_EXIT_OK && (al != *len || !tk_memeq_ct(again, buf, al))) {
		fprintf(stderr, "tokenkit piv: the two %ss differ\n", what);
		rc = TOOL_EXIT_ERROR;
	}
	tk_wipe(again, sizeof(again));
	return rc;
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
read_mgm_key(const char *what, const struct secret_src *s, const char *fdopt, bool is_new,
             uint8_t *key, size_t *klen)
{
	const struct secret_src none = {NULL, -1};
	char hex[SECRET_CAP];
	size_t hl = 0;
	int rc, r;

	*klen = 0;
	rc = is_new ? read_new_secret(what, s, &none, hex, sizeof(hex), &hl, fdopt)
	            : read_secret(what, s, hex, sizeof(hex), &hl, fdopt);
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

static int
xfer(struct piv *p, uint8_t ins, uint8_t p1, uint8_t p2, const uint8_t *data, size_t lc,
     uint8_t *resp, size_t *n, uint16_t *sw)
{
	tk_apdu_t a = {0};
	size_t dummy = 0;

	*sw = 0;
	a.ins = ins;
	a.p1 = p1;
	a.p2 = p2;
	a.data = data;
	a.lc = lc;
	a.le = resp != NULL ? 256 : 0;
	if (n == NULL)
		n = &dummy;
	*n = 0;
	return tk_card_apdu(p->c, &a, resp, resp != NULL ? RESP_CAP : 0, n, sw);
}

static int
card_err(struct piv *p, const char *what, int r)
{
	fprintf(stderr, "tokenkit %s: %s: %s: %s\n", p->cmd, tool_text(tk_card_reader_name(p->c)),
	        what, tk_strerror(r));
	return tool_exit_code(r);
}

static int
sw_err(struct piv *p, const char *what, uint16_t sw)
{
	fprintf(stderr, "tokenkit %s: %s: %s: the card answered %04X (%s)\n", p->cmd,
	        tool_text(tk_card_reader_name(p->c)), what, sw, tk_strerror(tk_err_from_sw(sw)));
	return TOOL_EXIT_ERROR;
}

/* Take the card in READER, in a transaction, with PIV selected. */
static int
piv_open(struct piv *p, const char *cmd, const char *reader)
{
	uint8_t *resp = NULL;
	uint16_t sw = 0;
	int rc, r;

	p->cmd = cmd;
	if ((rc = tool_open_card(cmd, reader, &p->m, &p->c)) != TOOL_EXIT_OK)
		return rc;
	if ((r = tk_card_begin(p->c)) != TK_OK)
		return card_err(p, "begin transaction", r);
	p->in_tx = true;
	if ((resp = malloc(RESP_CAP)) == NULL)
		return card_err(p, "select", TK_ERR_NO_MEMORY);
	r = xfer(p, 0xA4, 0x04, 0x00, piv_aid, sizeof(piv_aid), resp, NULL, &sw);
	free(resp);
	if (r != TK_OK)
		return card_err(p, "select", r);
	if (sw != 0x9000) {
		fprintf(stderr, "tokenkit %s: %s: the card has no PIV application\n", cmd,
		        tool_text(tk_card_reader_name(p->c)));
		return TOOL_EXIT_ERROR;
	}
	return TOOL_EXIT_OK;
}

static void
piv_close(struct piv *p)
{
	if (p->in_tx)
		(void)tk_card_end(p->c);
	tk_card_unref(&p->c);
	tk_slotmgr_free(&p->m);
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
mgm_card_alg(struct piv *p, uint8_t *alg)
{
	uint8_t resp[RESP_CAP];
	size_t n = 0;
	uint16_t sw = 0;
	tk_tlv_t t;
	int r;

	*alg = PIV_ALG_3DES;
	if ((r = xfer(p, 0xF7, 0x00, 0x9B, NULL, 0, resp, &n, &sw)) != TK_OK)
		return r;
	if (sw == 0x9000 && tk_ber_find(resp, n, 0x01, &t) == TK_OK && t.len == 1 &&
	    mgm_key_len(t.value[0]) != 0)
		*alg = t.value[0];
	return TK_OK;
}

/* Mutual authentication with the management key (witness, then our
 * challenge, which the card must answer with the same key). */
static int
mgm_auth(struct piv *p, const struct opts *o)
{
	uint8_t key[MGM_MAX], w[16], ch[16], expect[16], cmd[64], resp[RESP_CAP], alg = 0;
	const uint8_t *v = NULL;
	size_t klen = 0, bl, n = 0, vlen = 0;
	uint16_t sw = 0;
	tk_wbuf_t wb;
	int rc = TOOL_EXIT_ERROR, r;

	if ((r = mgm_card_alg(p, &alg)) != TK_OK)
		return card_err(p, "management key metadata", r);
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
	if ((r = xfer(p, 0x87, alg, 0x9B, (const uint8_t *)"\x7C\x02\x80\x00", 4, resp, &n, &sw)) !=
	    TK_OK) {
		rc = card_err(p, "management key", r);
		goto out;
	}
	if (sw != 0x9000) {
		rc = sw_err(p, "management key witness", sw);
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
	    (r = xfer(p, 0x87, alg, 0x9B, cmd, wb.len, resp, &n, &sw)) != TK_OK) {
		rc = card_err(p, "management key", r);
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
		rc = sw_err(p, "management key", sw);
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

/* Report a PIN/PUK status word. */
static int
pin_sw(struct piv *p, const char *what, uint16_t sw)
{
	if ((sw & 0xFFF0) == 0x63C0) {
		fprintf(stderr, "tokenkit %s: wrong %s (%u tries left)\n", p->cmd, what, sw & 0xFu);
		return TOOL_EXIT_ERROR;
	}
	if (sw == 0x6983) {
		fprintf(stderr, "tokenkit %s: the %s is blocked\n", p->cmd, what);
		return TOOL_EXIT_ERROR;
	}
	return sw == 0x9000 ? TOOL_EXIT_OK : sw_err(p, what, sw);
}

static int
verify_pin(struct piv *p, const struct opts *o)
{
	char pin[SECRET_CAP];
	uint8_t blk[8];
	size_t pl = 0;
	uint16_t sw = 0;
	int rc, r;

	if ((rc = read_secret("PIN", &o->pin, pin, sizeof(pin), &pl, "--pin-fd")) != TOOL_EXIT_OK)
		goto out;
	if ((rc = pin_block("PIN", pin, pl, blk)) != TOOL_EXIT_OK)
		goto out;
	if ((r = xfer(p, 0x20, 0x00, 0x80, blk, 8, NULL, NULL, &sw)) != TK_OK)
		rc = card_err(p, "VERIFY", r);
	else
		rc = pin_sw(p, "PIN", sw);
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
	       : strcmp(s, "rsa2048") == 0 ? PIV_ALG_RSA2048
	       : strcmp(s, "eccp256") == 0 ? PIV_ALG_ECCP256
	       : strcmp(s, "eccp384") == 0 ? PIV_ALG_ECCP384
	                                   : 0;
	return *alg != 0 ? TK_OK : TK_ERR_INVALID_ARG;
}

static int
write_pem(const char *path, EVP_PKEY *pk, X509 *x)
{
	BIO *b = path != NULL ? BIO_new_file(path, "w") : BIO_new_fp(stdout, BIO_NOCLOSE);
	int ok;

	if (b == NULL)
		return TK_ERR_IO;
	ok = pk != NULL ? PEM_write_bio_PUBKEY(b, pk) : PEM_write_bio_X509(b, x);
	ok = BIO_free(b) == 1 && ok == 1;
	ERR_clear_error();
	return ok ? TK_OK : TK_ERR_IO;
}

static int
piv_generate(const struct opts *o)
{
	struct piv p = {0};
	uint8_t alg = 0, ref = 0, cmd[5] = {0xAC, 0x03, 0x80, 0x01, 0};
	uint8_t *resp = NULL;
	size_t n = 0;
	uint16_t sw = 0;
	EVP_PKEY *pk = NULL;
	int rc, r;

	if (o->nargs != 2 || piv_parse_slot(o->args[1], &ref) != TK_OK ||
	    key_alg_parse(o->algorithm, &alg) != TK_OK)
		return usage_err();
	cmd[4] = alg;
	if ((rc = piv_open(&p, "piv generate", o->args[0])) != TOOL_EXIT_OK)
		goto out;
	if ((rc = mgm_auth(&p, o)) != TOOL_EXIT_OK)
		goto out;
	if (alg == PIV_ALG_RSA2048 && isatty(2))
		fprintf(stderr, "tokenkit piv generate: generating an RSA key on the card "
		                "(this may take a minute)...\n");
	if ((resp = malloc(RESP_CAP)) == NULL) {
		rc = card_err(&p, "generate", TK_ERR_NO_MEMORY);
		goto out;
	}
	if ((r = xfer(&p, 0x47, 0x00, ref, cmd, sizeof(cmd), resp, &n, &sw)) != TK_OK) {
		rc = card_err(&p, "generate", r);
		goto out;
	}
	if (sw != 0x9000) {
		rc = sw_err(&p, "generate", sw);
		goto out;
	}
	if ((r = piv_pubkey_from_generate(alg, resp, n, &pk)) != TK_OK) {
		fprintf(stderr, "tokenkit piv generate: the card's public key is malformed (%s)\n",
		        tk_strerror(r));
		rc = TOOL_EXIT_ERROR;
		goto out;
	}
	if (write_pem(o->out, pk, NULL) != TK_OK) {
		fprintf(stderr, "tokenkit piv generate: cannot write %s\n",
		        o->out != NULL ? tool_text(o->out) : "the public key");
		rc = TOOL_EXIT_ERROR;
		goto out;
	}
	if (o->out != NULL)
		fprintf(stderr, "tokenkit piv generate: slot %02X: public key written to %s\n", ref,
		        tool_text(o->out));
	rc = TOOL_EXIT_OK;
out:
	EVP_PKEY_free(pk);
	free(resp);
	piv_close(&p);
	return rc;
}

/* ---- certificate ------------------------------------------------------------------------ */

/* PUT DATA of the slot's certificate object: 53 { 70 cert, 71 00, FE }. */
static int
put_cert(struct piv *p, uint8_t ref, X509 *x)
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
	    (r = xfer(p, 0xDB, 0x3F, 0xFF, buf, w.len, NULL, NULL, &sw)) != TK_OK) {
		rc = card_err(p, "PUT DATA", r);
		goto out;
	}
	if (sw != 0x9000) {
		rc = sw_err(p, "PUT DATA (certificate)", sw);
		goto out;
	}
	rc = TOOL_EXIT_OK;
out:
	OPENSSL_free(der);
	free(buf);
	return rc;
}

/* "/CN=name/O=org" (openssl's -subj form; the leading slash optional). */
static X509_NAME *
parse_subject(const char *s)
{
	X509_NAME *n = X509_NAME_new();
	char *copy = strdup(s), *save = NULL, *tok;
	int count = 0;

	if (n == NULL || copy == NULL)
		goto fail;
	for (tok = strtok_r(copy, "/", &save); tok != NULL; tok = strtok_r(NULL, "/", &save)) {
		char *eq = strchr(tok, '=');

		if (eq == NULL || eq == tok || eq[1] == '\0')
			goto fail;
		*eq = '\0';
		if (X509_NAME_add_entry_by_txt(n, tok, MBSTRING_UTF8, (unsigned char *)eq + 1, -1,
		                               -1, 0) != 1)
			goto fail;
		count++;
	}
	if (count == 0)
		goto fail;
	free(copy);
	return n;
fail:
	free(copy);
	X509_NAME_free(n);
	ERR_clear_error();
	return NULL;
}

/* The card signs digest (of md) with the key in ref: GENERAL AUTHENTICATE
 * 7C { 82 00, 81 input }, input the hash (EC) or the PKCS#1 v1.5 block
 * (RSA, raw on the card). sig: DER ECDSA-Sig-Value or the RSA signature. */
static int
card_sign(struct piv *p, uint8_t alg, uint8_t ref, const EVP_MD *md, const uint8_t *tbs,
          size_t tbs_len, uint8_t **sig, size_t *sig_len)
{
	/* DigestInfo prefixes for SHA-256 (RFC 8017, 9.2 note 1) */
	static const uint8_t di256[] = {0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01,
	                                0x65, 0x03, 0x04, 0x02, 0x01, 0x05, 0x00, 0x04, 0x20};
	uint8_t h[64], in[256], cmd[300], *resp = NULL;
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
	if (alg == PIV_ALG_RSA2048) {
		inl = 256;
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
	if ((r = xfer(p, 0x87, alg, ref, cmd, w.len, resp, &n, &sw)) != TK_OK) {
		rc = card_err(p, "sign", r);
		goto out;
	}
	if (sw != 0x9000) {
		rc = sw_err(p, "sign", sw);
		goto out;
	}
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
slot_pubkey(struct piv *p, uint8_t ref, uint8_t *alg, EVP_PKEY **pk)
{
	uint8_t *resp = malloc(RESP_CAP);
	size_t n = 0;
	uint16_t sw = 0;
	int rc = TOOL_EXIT_ERROR, r;

	*pk = NULL;
	*alg = 0;
	if (resp == NULL)
		return card_err(p, "metadata", TK_ERR_NO_MEMORY);
	if ((r = xfer(p, 0xF7, 0x00, ref, NULL, 0, resp, &n, &sw)) != TK_OK) {
		rc = card_err(p, "metadata", r);
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

/* A throwaway key of the slot key's type: X509_sign with it fills both
 * signature algorithm fields the way OpenSSL encodes them. */
static EVP_PKEY *
like_key(uint8_t alg)
{
	return alg == PIV_ALG_RSA2048   ? EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048)
	       : alg == PIV_ALG_ECCP256 ? EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256")
	                                : EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-384");
}

/* Certificate = SEQUENCE { tbs, algorithm, BIT STRING signature }. */
static X509 *
assemble(const uint8_t *tbs, size_t tl, const uint8_t *alg, size_t al, const uint8_t *sig,
         size_t sl)
{
	size_t bits = tk_ber_hdr_len(0x03, sl + 1) + sl + 1, body = tl + al + bits;
	size_t cap = tk_ber_hdr_len(0x30, body) + body;
	uint8_t *buf = malloc(cap);
	const unsigned char *q;
	X509 *x = NULL;
	tk_wbuf_t w;

	if (buf == NULL)
		return NULL;
	tk_wbuf_init(&w, buf, cap);
	tk_ber_put_hdr(&w, 0x30, body);
	tk_wbuf_put_bytes(&w, tbs, tl);
	tk_wbuf_put_bytes(&w, alg, al);
	tk_ber_put_hdr(&w, 0x03, sl + 1);
	tk_wbuf_put_u8(&w, 0x00);
	tk_wbuf_put_bytes(&w, sig, sl);
	q = buf;
	if (tk_wbuf_error(&w) == TK_OK)
		x = d2i_X509(NULL, &q, (long)w.len);
	free(buf);
	return x;
}

static int
self_sign(struct piv *p, const struct opts *o, uint8_t ref, X509 **out)
{
	X509 *x = X509_new(), *done = NULL;
	X509_NAME *name = parse_subject(o->self_sign);
	EVP_PKEY *pk = NULL, *tmp = NULL;
	const EVP_MD *md = NULL;
	const X509_ALGOR *sa = NULL;
	const ASN1_BIT_STRING *unused = NULL;
	unsigned char *tbs = NULL, *algder = NULL;
	uint8_t *sig = NULL, alg = 0, serial[16];
	size_t sl = 0;
	int tl, al, rc = TOOL_EXIT_ERROR;
	BIGNUM *bn = NULL;

	*out = NULL;
	if (name == NULL) {
		fprintf(stderr, "tokenkit %s: bad subject '%s' (write /CN=name/O=org)\n", p->cmd,
		        tool_text(o->self_sign));
		rc = TOOL_EXIT_USAGE;
		goto out;
	}
	if ((rc = slot_pubkey(p, ref, &alg, &pk)) != TOOL_EXIT_OK)
		goto out;
	rc = TOOL_EXIT_ERROR;
	md = alg == PIV_ALG_ECCP384 ? EVP_sha384() : EVP_sha256();
	if (x == NULL || RAND_bytes(serial, sizeof(serial)) != 1)
		goto crypto;
	serial[0] &= 0x7F; /* positive */
	serial[0] |= 0x40; /* and 16 bytes long */
	if ((bn = BN_bin2bn(serial, sizeof(serial), NULL)) == NULL ||
	    BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(x)) == NULL ||
	    X509_set_version(x, 2) != 1 || X509_set_subject_name(x, name) != 1 ||
	    X509_set_issuer_name(x, name) != 1 ||
	    X509_gmtime_adj(X509_getm_notBefore(x), 0) == NULL ||
	    X509_time_adj_ex(X509_getm_notAfter(x), (int)o->days, 0, NULL) == NULL ||
	    X509_set_pubkey(x, pk) != 1 || (tmp = like_key(alg)) == NULL ||
	    X509_sign(x, tmp, md) <= 0)
		goto crypto;
	if ((tl = i2d_re_X509_tbs(x, &tbs)) <= 0)
		goto crypto;
	X509_get0_signature(&unused, &sa, x);
	if ((al = i2d_X509_ALGOR(sa, &algder)) <= 0)
		goto crypto;
	if ((rc = verify_pin(p, o)) != TOOL_EXIT_OK)
		goto out;
	if ((rc = card_sign(p, alg, ref, md, tbs, (size_t)tl, &sig, &sl)) != TOOL_EXIT_OK)
		goto out;
	rc = TOOL_EXIT_ERROR;
	done = assemble(tbs, (size_t)tl, algder, (size_t)al, sig, sl);
	/* the card's signature must verify with the slot's public key */
	if (done == NULL || X509_verify(done, pk) != 1) {
		fprintf(stderr,
		        "tokenkit %s: the card's signature does not verify with the "
		        "slot's public key\n",
		        p->cmd);
		X509_free(done);
		done = NULL;
		goto out;
	}
	*out = done;
	rc = TOOL_EXIT_OK;
	goto out;
crypto:
	fprintf(stderr, "tokenkit %s: cannot build the certificate (OpenSSL)\n", p->cmd);
out:
	ERR_clear_error();
	BN_free(bn);
	OPENSSL_free(tbs);
	OPENSSL_free(algder);
	free(sig);
	EVP_PKEY_free(pk);
	EVP_PKEY_free(tmp);
	X509_NAME_free(name);
	X509_free(x);
	return rc;
}

static int
piv_certificate(const struct opts *o)
{
	struct piv p = {0};
	X509 *x = NULL;
	uint8_t ref = 0;
	int rc;

	if (o->nargs != 2 || piv_parse_slot(o->args[1], &ref) != TK_OK ||
	    (o->self_sign == NULL) == (o->import == NULL))
		return usage_err();
	if (o->import != NULL && (x = piv_load_cert(o->import)) == NULL) {
		fprintf(stderr,
		        "tokenkit piv certificate: cannot read a certificate (PEM or DER) "
		        "from %s\n",
		        tool_text(o->import));
		return TOOL_EXIT_ERROR;
	}
	if ((rc = piv_open(&p, "piv certificate", o->args[0])) != TOOL_EXIT_OK)
		goto out;
	if ((rc = mgm_auth(&p, o)) != TOOL_EXIT_OK)
		goto out;
	if (o->self_sign != NULL && (rc = self_sign(&p, o, ref, &x)) != TOOL_EXIT_OK)
		goto out;
	if ((rc = put_cert(&p, ref, x)) != TOOL_EXIT_OK)
		goto out;
	fprintf(stderr, "tokenkit piv certificate: slot %02X: certificate written (object %06X)\n",
	        ref, piv_slot_object(ref));
	if (o->out != NULL && write_pem(o->out, NULL, x) != TK_OK) {
		fprintf(stderr, "tokenkit piv certificate: cannot write %s\n", tool_text(o->out));
		rc = TOOL_EXIT_ERROR;
	}
out:
	X509_free(x);
	piv_close(&p);
	return rc;
}

/* ---- PIN, PUK, management key ------------------------------------------------------------ */

/* CHANGE REFERENCE DATA (24) or RESET RETRY COUNTER (2C): old || new. */
static int
piv_ref_change(const struct opts *o, const char *cmd, uint8_t ins, uint8_t ref)
{
	const bool puk_old = ins == 0x2C || ref == 0x81;
	const char *old_what = puk_old ? "PUK" : "PIN";
	const char *new_what = ref == 0x81 ? "new PUK" : "new PIN";
	const struct secret_src *olds = puk_old ? &o->puk : &o->pin;
	const struct secret_src *news = ref == 0x81 ? &o->new_puk : &o->new_pin;
	struct secret_src next = *olds;
	char old[SECRET_CAP], nw[SECRET_CAP];
	uint8_t data[16];
	size_t ol = 0, nl = 0;
	uint16_t sw = 0;
	struct piv p = {0};
	int rc, r;

	if (o->nargs != 1)
		return usage_err();
	next.insecure = NULL; /* the new one never reuses the old one's command-line value */
	if ((rc = read_secret(old_what, olds, old, sizeof(old), &ol,
	                      puk_old ? "--puk-fd" : "--pin-fd")) != TOOL_EXIT_OK ||
	    (rc = pin_block(old_what, old, ol, data)) != TOOL_EXIT_OK)
		goto out;
	if ((rc = read_new_secret(new_what, news, &next, nw, sizeof(nw), &nl,
	                          ref == 0x81 ? "--new-puk-fd" : "--new-pin-fd")) != TOOL_EXIT_OK ||
	    (rc = pin_block(new_what, nw, nl, data + 8)) != TOOL_EXIT_OK)
		goto out;
	if ((rc = piv_open(&p, cmd, o->args[0])) != TOOL_EXIT_OK)
		goto out;
	if ((r = xfer(&p, ins, 0x00, ref, data, sizeof(data), NULL, NULL, &sw)) != TK_OK) {
		rc = card_err(&p, old_what, r);
		goto out;
	}
	if ((rc = pin_sw(&p, old_what, sw)) == TOOL_EXIT_OK)
		fprintf(stderr, "tokenkit %s: done\n", cmd);
out:
	tk_wipe(old, sizeof(old));
	tk_wipe(nw, sizeof(nw));
	tk_wipe(data, sizeof(data));
	piv_close(&p);
	return rc;
}

static int
piv_set_mgm(const struct opts *o)
{
	struct piv p = {0};
	uint8_t key[MGM_MAX], data[3 + MGM_MAX], alg = 0;
	size_t kl = 0;
	uint16_t sw = 0;
	int rc, r;

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
	if ((r = xfer(&p, 0xFF, 0xFF, 0xFF, data, 3 + kl, NULL, NULL, &sw)) != TK_OK) {
		rc = card_err(&p, "set management key", r);
		goto out;
	}
	if (sw != 0x9000) {
		rc = sw_err(&p, "set management key", sw);
		goto out;
	}
	fprintf(stderr, "tokenkit piv set-mgmt-key: the management key is now a new %s key\n",
	        o->new_algorithm);
out:
	tk_wipe(key, sizeof(key));
	tk_wipe(data, sizeof(data));
	piv_close(&p);
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
	if (strcmp(sub, "set-mgmt-key") == 0)
		return piv_set_mgm(&o);
	return usage_err();
}

TOOL_COMMAND(piv, "piv", "generate|certificate|pin|puk|set-mgmt-key READER ...",
             "provision a PIV card: keys, certificates, PIN, PUK, management key", cmd_piv)
