/* tokenkit openpgp: provisioning an OpenPGP card (specification 3.4), so
 * routine work needs no gpg --card-edit.
 *
 *   status READER [--json]                 application related data,
 *                                          cardholder data, PIN status,
 *                                          signature counter, KDF-DO; each
 *                                          stored fingerprint checked
 *                                          against the key the card holds
 *   generate READER KEY --algorithm A      PUT DATA C1..C3 when the
 *                                          attributes differ, GENERATE
 *                                          ASYMMETRIC KEY PAIR (47 80),
 *                                          fingerprint (C7..C9) and time
 *                                          (CE..D0) written
 *   import READER KEY KEYFILE              PUT DATA 3FFF (extended header
 *                                          list), fingerprint and time
 *   pin change|unblock|admin-change|reset-code READER
 *   set name|url|login|lang READER VALUE   PUT DATA with PW3
 *   reset READER [--yes]                   PW3 blocked if needed,
 *                                          TERMINATE DF, ACTIVATE FILE
 *
 * KEY is sig, dec or aut. Writing needs the admin PIN (PW3). Secrets come
 * from a file descriptor (one line each) or the terminal without echo; on
 * the command line only with an --insecure-... option. A card with a
 * KDF-DO gets the PINs hashed as it says (iterated and salted S2K). Parsing
 * of card data lives in pgp_prov.c (unit test, fuzz target). */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/err.h>
#include <openssl/bn.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/rand.h>

#include <tokenkit/card.h>
#include <tokenkit/err.h>
#include <tokenkit/mem.h>
#include <tokenkit/tlv.h>

#include "pgp_prov.h"
#include "tool.h"

#define RESP_CAP 4096
/* PW1 at least 6 characters, PW3 and the resetting code at least 8
 * (specification 3.4, 4.3) */
#define PW1_MIN 6
#define PW3_MIN 8
#define PW_MAX 127

static const uint8_t pgp_aid[] = {0xD2, 0x76, 0x00, 0x01, 0x24, 0x01};
static const char *const key_names[PGP_NKEYS] = {"sig", "dec", "aut"};
static const uint8_t key_crt[PGP_NKEYS] = {0xB6, 0xB8, 0xA4};

struct opts {
	const char *args[3];
	int nargs;
	const char *algorithm, *out;
	tool_cert_opts_t cert;
	bool json, yes, use_rc;
	tool_secret_t pin, new_pin, admin, new_admin, rc, new_rc, pass;
};

/* OpenPGP commands ask extended Le: a 4096-bit key or a long data object
 * in one response. */
#define PGP_LE 65536

struct pgp {
	tool_session_t s;
	bool terminated;
	pgp_kdf_t kdf; /* read by read_kdf() before a PIN is sent */
};

static int
usage_err(void)
{
	fprintf(stderr,
	        "usage: tokenkit openpgp status READER [--json]\n"
	        "       tokenkit openpgp generate READER sig|dec|aut --algorithm A [-o PUB.pem] "
	        "[--json]\n"
	        "                    [ADMIN-PIN]\n"
	        "       tokenkit openpgp import READER sig|dec|aut KEYFILE [--passphrase-fd N] "
	        "[ADMIN-PIN]\n"
	        "       tokenkit openpgp certificate READER sig|aut --self-sign SUBJECT [--days "
	        "N]\n"
	        "                    [-o CERT.pem] [PIN] [ADMIN-PIN]\n"
	        "       tokenkit openpgp certificate READER sig|dec|aut --import CERT.pem "
	        "[ADMIN-PIN]\n"
	        "       tokenkit openpgp certificate READER sig|aut --csr SUBJECT [-o REQ.pem] "
	        "[PIN]\n"
	        "       tokenkit openpgp pin change READER [PIN] [NEW-PIN]\n"
	        "       tokenkit openpgp pin unblock READER [ADMIN-PIN | --reset-code [RC]] "
	        "[NEW-PIN]\n"
	        "       tokenkit openpgp pin admin-change READER [ADMIN-PIN] [NEW-ADMIN-PIN]\n"
	        "       tokenkit openpgp pin reset-code READER [ADMIN-PIN] [NEW-RC]\n"
	        "       tokenkit openpgp set name|url|login|lang READER VALUE [ADMIN-PIN]\n"
	        "       tokenkit openpgp reset READER [--yes]\n"
	        "  A: rsa2048|rsa3072|rsa4096|nistp256|nistp384|ed25519 (sig, aut)|cv25519 "
	        "(dec)\n"
	        "  PIN: --pin-fd N; NEW-PIN: --new-pin-fd N (or the next line of --pin-fd)\n"
	        "  ADMIN-PIN: --admin-pin-fd N; NEW-ADMIN-PIN: --new-admin-pin-fd N (or the "
	        "next line)\n"
	        "  RC: --reset-code-fd N; NEW-RC: --new-reset-code-fd N\n"
	        "  --insecure-pin P, --insecure-new-pin P, --insecure-admin-pin P,\n"
	        "  --insecure-new-admin-pin P, --insecure-reset-code P, "
	        "--insecure-new-reset-code P,\n"
	        "  --insecure-passphrase P\n"
	        "  put secrets on the command line, where every other user sees them\n");
	return TOOL_EXIT_USAGE;
}

/* argv[first..]: arguments and options in any order. */
static int
parse(int argc, char **argv, int first, struct opts *o)
{
	const tool_secret_opt_t secrets[] = {
	        {"pin", &o->pin},         {"new-pin", &o->new_pin},
	        {"admin-pin", &o->admin}, {"new-admin-pin", &o->new_admin},
	        {"reset-code", &o->rc},   {"new-reset-code", &o->new_rc},
	        {"passphrase", &o->pass}};
	const size_t nsecrets = sizeof(secrets) / sizeof(secrets[0]);

	memset(o, 0, sizeof(*o));
	o->cert.days = 365;
	tool_secrets_init(secrets, nsecrets);
	for (int i = first; i < argc; i++) {
		const char *a = argv[i];
		const char *v = i + 1 < argc ? argv[i + 1] : NULL;
		bool used_v = true, bad = false;

		if (strcmp(a, "--json") == 0) {
			o->json = true;
			used_v = false;
		} else if (strcmp(a, "--yes") == 0) {
			o->yes = true;
			used_v = false;
		} else if (strcmp(a, "--reset-code") == 0) {
			o->use_rc = true;
			used_v = false;
		} else if (strcmp(a, "--algorithm") == 0 && v != NULL) {
			o->algorithm = v;
		} else if ((strcmp(a, "-o") == 0 || strcmp(a, "--output") == 0) && v != NULL) {
			o->out = v;
		} else if (tool_cert_opt(a, v, &o->cert, &bad)) {
			if (bad)
				return usage_err();
		} else if (tool_secret_opt(a, v, secrets, nsecrets)) {
			/* taken */
		} else if ((a[0] != '-' || a[1] == '\0') && o->nargs < 3) {
			o->args[o->nargs++] = a;
			used_v = false;
		} else {
			fprintf(stderr, "tokenkit openpgp: unknown or incomplete option '%s'\n",
			        tool_text(a));
			return usage_err();
		}
		if (used_v)
			i++;
	}
	if (o->rc.fd >= 0 || o->rc.insecure != NULL)
		o->use_rc = true;
	return TOOL_EXIT_OK;
}

static int
key_parse(const char *s)
{
	for (int k = 0; s != NULL && k < PGP_NKEYS; k++)
		if (strcmp(s, key_names[k]) == 0)
			return k;
	return -1;
}

/* ---- the card --------------------------------------------------------------------------- */

/* Take the card in READER, in a transaction, with the OpenPGP application
 * selected. A terminated application (6285) is an error unless the
 * command is reset. */
static int
pgp_open(struct pgp *p, const char *cmd, const char *reader, bool allow_terminated)
{
	uint16_t sw = 0;
	int rc;

	if ((rc = tool_session_open(&p->s, cmd, reader, pgp_aid, sizeof(pgp_aid), PGP_LE, &sw)) !=
	    TOOL_EXIT_OK)
		return rc;
	if (sw == 0x6285 && allow_terminated) {
		p->terminated = true;
		return TOOL_EXIT_OK;
	}
	if (sw == 0x6285) {
		fprintf(stderr,
		        "tokenkit %s: %s: the OpenPGP application is terminated (`tokenkit openpgp "
		        "reset` brings it back to its factory state)\n",
		        cmd, tool_text(tk_card_reader_name(p->s.c)));
		return TOOL_EXIT_ERROR;
	}
	if (sw != 0x9000) {
		fprintf(stderr, "tokenkit %s: %s: the card has no OpenPGP application\n", cmd,
		        tool_text(tk_card_reader_name(p->s.c)));
		return TOOL_EXIT_ERROR;
	}
	return TOOL_EXIT_OK;
}

/* GET DATA of tag; *sw tells whether the card has it. */
static int
get_data(struct pgp *p, uint16_t tag, uint8_t *buf, size_t cap, size_t *n, uint16_t *sw)
{
	int r = tool_xfer(&p->s, 0xCA, (uint8_t)(tag >> 8), (uint8_t)tag, NULL, 0, buf, cap, n, sw);

	return r != TK_OK ? tool_card_err(&p->s, "GET DATA", r) : TOOL_EXIT_OK;
}

static int
read_ard(struct pgp *p, pgp_ard_t *ard)
{
	uint8_t buf[RESP_CAP];
	size_t n = 0;
	uint16_t sw = 0;
	int rc;

	if ((rc = get_data(p, 0x6E, buf, sizeof(buf), &n, &sw)) != TOOL_EXIT_OK)
		return rc;
	if (sw != 0x9000)
		return tool_sw_err(&p->s, "application related data", sw);
	if (pgp_ard_parse(buf, n, ard) != TK_OK) {
		fprintf(stderr, "tokenkit %s: malformed application related data\n", p->s.cmd);
		return TOOL_EXIT_ERROR;
	}
	return TOOL_EXIT_OK;
}

/* The KDF-DO into p->kdf (none when the card has no such object). */
static int
read_kdf(struct pgp *p)
{
	uint8_t buf[256];
	size_t n = 0;
	uint16_t sw = 0;
	int rc;

	memset(&p->kdf, 0, sizeof(p->kdf));
	if ((rc = get_data(p, 0xF9, buf, sizeof(buf), &n, &sw)) != TOOL_EXIT_OK)
		return rc;
	if (sw == 0x9000 && pgp_kdf_parse(buf, n, &p->kdf) != TK_OK) {
		fprintf(stderr, "tokenkit %s: malformed KDF-DO\n", p->s.cmd);
		return TOOL_EXIT_ERROR;
	}
	return TOOL_EXIT_OK;
}

/* What goes to the card for a PIN: the PIN, or its hash when the card has
 * a KDF-DO. A KDF the tool does not know is refused before anything is
 * sent (a PIN in the wrong form would count as a wrong try). */
static int
pin_bytes(struct pgp *p, int which, const char *pin, size_t len, uint8_t *out, size_t *olen)
{
	int r = pgp_kdf_pin(&p->kdf, which, pin, len, out, PW_MAX, olen);

	if (r == TK_ERR_NOT_SUPPORTED) {
		fprintf(stderr,
		        "tokenkit %s: the card's KDF-DO names a KDF tokenkit does not know; "
		        "nothing was sent\n",
		        p->s.cmd);
		return TOOL_EXIT_ERROR;
	}
	if (r != TK_OK) {
		fprintf(stderr, "tokenkit %s: cannot hash the PIN: %s\n", p->s.cmd, tk_strerror(r));
		return TOOL_EXIT_ERROR;
	}
	return TOOL_EXIT_OK;
}

/* The admin PIN, read before the card is taken: no transaction is held
 * while a user types. */
static int
read_admin(const struct opts *o, char *pin, size_t *pl)
{
	return tool_read_secret(
	        &(tool_ask_t){"openpgp", "admin PIN", "--admin-pin-fd", PW3_MIN, PW_MAX}, &o->admin,
	        pin, TOOL_SECRET_CAP, pl);
}

/* VERIFY PW3. */
static int
verify_admin(struct pgp *p, const char *pin, size_t pl)
{
	uint8_t v[PW_MAX];
	size_t vl = 0;
	uint16_t sw = 0;
	int rc, r;

	if ((rc = read_kdf(p)) != TOOL_EXIT_OK ||
	    (rc = pin_bytes(p, PGP_PW3, pin, pl, v, &vl)) != TOOL_EXIT_OK)
		return rc;
	r = tool_xfer(&p->s, 0x20, 0x00, 0x83, v, vl, NULL, 0, NULL, &sw);
	tk_wipe(v, sizeof(v));
	if (r != TK_OK)
		return tool_card_err(&p->s, "VERIFY", r);
	if ((rc = tool_pin_sw(&p->s, "admin PIN", sw)) != TOOL_EXIT_OK)
		fprintf(stderr, "tokenkit %s: nothing was changed\n", p->s.cmd);
	return rc;
}

/* PUT DATA of tag (one answer of 9000, or a message). */
static int
put_data(struct pgp *p, uint16_t tag, const uint8_t *v, size_t len, const char *what)
{
	return tool_xfer_ok(&p->s, what, 0xDA, (uint8_t)(tag >> 8), (uint8_t)tag, v, len);
}

static void
fpr_text(const uint8_t fpr[20], char out[41])
{
	(void)tool_hex(fpr, 20, out, 41);
}

static bool
all_zero(const uint8_t *p, size_t n)
{
	uint8_t acc = 0;

	for (size_t i = 0; i < n; i++)
		acc |= p[i];
	return acc == 0;
}

/* ---- status ----------------------------------------------------------------------------- */

/* What the card holds in key k, checked against its stored fingerprint. */
struct key_check {
	bool have_key;  /* the card gave a public key */
	bool fpr_match; /* and the stored fingerprint is that key's */
};

static void
check_key(struct pgp *p, const pgp_ard_t *ard, int k, struct key_check *kc)
{
	uint8_t buf[RESP_CAP], crt[2] = {key_crt[k], 0x00}, fpr[20];
	size_t n = 0;
	uint16_t sw = 0;
	EVP_PKEY *pk = NULL;

	memset(kc, 0, sizeof(*kc));
	/* 47 81: read the public key, no PIN needed */
	if (tool_xfer(&p->s, 0x47, 0x81, 0x00, crt, sizeof(crt), buf, sizeof(buf), &n, &sw) !=
	            TK_OK ||
	    sw != 0x9000 || pgp_pubkey_parse(&ard->key[k].attr, buf, n, &pk) != TK_OK)
		return;
	kc->have_key = true;
	kc->fpr_match = pgp_fingerprint(&ard->key[k].attr, pk, ard->key[k].created, fpr) == TK_OK &&
	                memcmp(fpr, ard->key[k].fpr, 20) == 0;
	EVP_PKEY_free(pk);
}

static const char *
origin_text(uint8_t o)
{
	switch (o) {
	case 0:
		return "no key";
	case 1:
		return "generated on the card";
	case 2:
		return "imported";
	case 0xFF:
		return "not told";
	default:
		return "unknown";
	}
}

static const char *
manufacturer_text(uint16_t m)
{
	/* 0xFF00..0xFFFE are for test cards (specification 4.2.1) */
	if (m >= 0xFF00 && m != 0xFFFF)
		return "test card";
	return m == 0x0006 ? "Yubico" : m == 0x0005 ? "ZeitControl" : "unknown";
}

static const char *
sex_text(uint8_t s)
{
	return s == '1' ? "male" : s == '2' ? "female" : s == '9' ? "not announced" : "unknown";
}

static void
time_text(uint32_t t, char *buf, size_t cap)
{
	time_t tt = (time_t)t;
	struct tm tm;

	if (t == 0 || gmtime_r(&tt, &tm) == NULL)
		snprintf(buf, cap, "-");
	else
		strftime(buf, cap, "%Y-%m-%d %H:%M:%S UTC", &tm);
}

/* A string data object (URL 5F50, login 5E), NUL-terminated in buf. */
static void
get_string(struct pgp *p, uint16_t tag, char *buf, size_t cap)
{
	uint8_t v[RESP_CAP];
	size_t n = 0;
	uint16_t sw = 0;

	buf[0] = '\0';
	if (get_data(p, tag, v, sizeof(v), &n, &sw) == TOOL_EXIT_OK && sw == 0x9000 && n < cap) {
		memcpy(buf, v, n);
		buf[n] = '\0';
	}
}

struct status {
	pgp_ard_t ard;
	pgp_cardholder_t ch;
	char url[256], login[256];
	uint32_t counter;
	bool have_counter;
	pgp_kdf_t kdf;
	struct key_check kc[PGP_NKEYS];
};

static void
print_status_text(struct pgp *p, const struct status *s)
{
	const pgp_ard_t *a = &s->ard;
	char hex[64], t[64];

	printf("reader: %s\n", tool_text(tk_card_reader_name(p->s.c)));
	printf("application id: %s\n", tool_hex(a->aid, a->aid_len, hex, sizeof(hex)));
	printf("version: %u.%u\n", a->version[0], a->version[1]);
	printf("manufacturer: %04X (%s)\n", a->manufacturer, manufacturer_text(a->manufacturer));
	printf("serial number: %08X\n", (unsigned)a->serial);
	printf("name: %s\n", tool_text(s->ch.name));
	printf("language: %s\n", tool_text(s->ch.lang));
	printf("sex: %s\n", sex_text(s->ch.sex));
	printf("url: %s\n", tool_text(s->url));
	printf("login: %s\n", tool_text(s->login));
	if (a->have_pw_status) {
		printf("signature PIN: %s\n", a->pw_status[0] ? "valid for several signatures"
		                                              : "asked for every signature");
		printf("PIN retries: PW1 %u, RC %u, PW3 %u\n", a->pw_status[4], a->pw_status[5],
		       a->pw_status[6]);
	}
	if (s->have_counter)
		printf("signature counter: %u\n", (unsigned)s->counter);
	if (s->kdf.algo == PGP_KDF_NONE)
		printf("KDF: none\n");
	else if (s->kdf.algo == PGP_KDF_ITERSALTED_S2K)
		printf("KDF: iterated and salted S2K, %s, %u bytes\n",
		       s->kdf.hash == 0x08   ? "SHA-256"
		       : s->kdf.hash == 0x0A ? "SHA-512"
		                             : "unknown hash",
		       (unsigned)s->kdf.count);
	else
		printf("KDF: unknown (%02X)\n", s->kdf.algo);
	for (int k = 0; k < PGP_NKEYS; k++) {
		fpr_text(a->key[k].fpr, hex);
		time_text(a->key[k].created, t, sizeof(t));
		printf("%s key: %s", key_names[k],
		       a->key[k].attr.id != 0 ? a->key[k].attr.name : "unknown algorithm");
		if (!s->kc[k].have_key && all_zero(a->key[k].fpr, 20)) {
			printf(", no key\n");
			continue;
		}
		printf(", fingerprint %s, created %s, %s, %s\n", hex, t,
		       origin_text(a->key[k].origin),
		       !s->kc[k].have_key   ? "no public key on the card"
		       : s->kc[k].fpr_match ? "fingerprint matches the key"
		                            : "fingerprint DOES NOT match the key");
	}
}

static void
print_status_json(struct pgp *p, const struct status *s)
{
	const pgp_ard_t *a = &s->ard;
	char hex[64];

	printf("{\"reader\":");
	tool_json_str(stdout, tk_card_reader_name(p->s.c));
	printf(",\"aid\":\"%s\",\"version\":\"%u.%u\",\"manufacturer\":%u,"
	       "\"manufacturer_name\":\"%s\",\"serial\":\"%08X\",\"name\":",
	       tool_hex(a->aid, a->aid_len, hex, sizeof(hex)), a->version[0], a->version[1],
	       a->manufacturer, manufacturer_text(a->manufacturer), (unsigned)a->serial);
	tool_json_str(stdout, s->ch.name);
	printf(",\"language\":");
	tool_json_str(stdout, s->ch.lang);
	printf(",\"sex\":\"%s\",\"url\":", sex_text(s->ch.sex));
	tool_json_str(stdout, s->url);
	printf(",\"login\":");
	tool_json_str(stdout, s->login);
	if (a->have_pw_status)
		printf(",\"pw1_multiple_signatures\":%s,\"retries\":{\"pw1\":%u,\"rc\":%u,"
		       "\"pw3\":%u}",
		       a->pw_status[0] ? "true" : "false", a->pw_status[4], a->pw_status[5],
		       a->pw_status[6]);
	if (s->have_counter)
		printf(",\"signature_counter\":%u", (unsigned)s->counter);
	printf(",\"kdf\":%s,\"keys\":{", s->kdf.algo != PGP_KDF_NONE ? "true" : "false");
	for (int k = 0; k < PGP_NKEYS; k++) {
		fpr_text(a->key[k].fpr, hex);
		printf("%s\"%s\":{\"algorithm\":\"%s\",\"fingerprint\":\"%s\",\"created\":%u,"
		       "\"origin\":\"%s\",\"public_key\":%s,\"fingerprint_matches\":%s}",
		       k > 0 ? "," : "", key_names[k],
		       a->key[k].attr.id != 0 ? a->key[k].attr.name : "unknown",
		       all_zero(a->key[k].fpr, 20) ? "" : hex, (unsigned)a->key[k].created,
		       origin_text(a->key[k].origin), s->kc[k].have_key ? "true" : "false",
		       s->kc[k].fpr_match ? "true" : "false");
	}
	printf("}}\n");
}

static int
openpgp_status(const struct opts *o)
{
	struct pgp p = {0};
	struct status *s = calloc(1, sizeof(*s));
	uint8_t buf[RESP_CAP];
	size_t n = 0;
	uint16_t sw = 0;
	int rc;

	if (s == NULL)
		return TOOL_EXIT_ERROR;
	if (o->nargs != 1) {
		rc = usage_err();
		goto out;
	}
	if ((rc = pgp_open(&p, "openpgp status", o->args[0], false)) != TOOL_EXIT_OK ||
	    (rc = read_ard(&p, &s->ard)) != TOOL_EXIT_OK)
		goto out;
	if ((rc = get_data(&p, 0x65, buf, sizeof(buf), &n, &sw)) != TOOL_EXIT_OK)
		goto out;
	if (sw == 0x9000 && pgp_cardholder_parse(buf, n, &s->ch) != TK_OK)
		fprintf(stderr, "tokenkit openpgp status: malformed cardholder data\n");
	get_string(&p, 0x5F50, s->url, sizeof(s->url));
	get_string(&p, 0x5E, s->login, sizeof(s->login));
	if ((rc = get_data(&p, 0x7A, buf, sizeof(buf), &n, &sw)) != TOOL_EXIT_OK)
		goto out;
	s->have_counter = sw == 0x9000 && pgp_sig_counter_parse(buf, n, &s->counter) == TK_OK;
	if ((rc = read_kdf(&p)) != TOOL_EXIT_OK)
		goto out;
	s->kdf = p.kdf;
	for (int k = 0; k < PGP_NKEYS; k++)
		check_key(&p, &s->ard, k, &s->kc[k]);
	if (o->json)
		print_status_json(&p, s);
	else
		print_status_text(&p, s);
	rc = TOOL_EXIT_OK;
out:
	free(s);
	tool_session_close(&p.s);
	return rc;
}

/* ---- generate, import ------------------------------------------------------------------- */

/* Make key k's attributes those of `alg` (PUT DATA C1..C3 when they
 * differ); *at: the attributes in force afterwards. */
static int
set_attributes(struct pgp *p, const pgp_ard_t *ard, int k, const char *alg, pgp_attr_t *at)
{
	const pgp_attr_t *cur = &ard->key[k].attr;
	uint8_t enc[16];
	size_t len = 0;
	int rc;

	if (pgp_attr_encode(alg, k, cur, enc, sizeof(enc), &len) != TK_OK) {
		fprintf(stderr, "tokenkit %s: %s is not an algorithm for the %s key\n", p->s.cmd,
		        tool_text(alg), key_names[k]);
		return TOOL_EXIT_USAGE;
	}
	if (pgp_attr_parse(enc, len, at) != TK_OK || at->id == 0)
		return TOOL_EXIT_ERROR;
	if (cur->id == at->id && strcmp(cur->name, at->name) == 0) {
		*at = *cur; /* the card's own import format stays */
		return TOOL_EXIT_OK;
	}
	if ((rc = put_data(p, (uint16_t)(0xC1 + k), enc, len, "algorithm attributes")) !=
	    TOOL_EXIT_OK) {
		fprintf(stderr, "tokenkit %s: the card does not take %s for the %s key\n", p->s.cmd,
		        at->name, key_names[k]);
		return rc;
	}
	return TOOL_EXIT_OK;
}

/* Fingerprint (C7..C9) and creation time (CE..D0) of key k. */
static int
write_fpr_time(struct pgp *p, int k, const pgp_attr_t *at, EVP_PKEY *pk, uint8_t fpr[20])
{
	uint32_t now = (uint32_t)time(NULL);
	uint8_t t[4] = {(uint8_t)(now >> 24), (uint8_t)(now >> 16), (uint8_t)(now >> 8),
	                (uint8_t)now};
	int rc;

	if (pgp_fingerprint(at, pk, now, fpr) != TK_OK) {
		fprintf(stderr, "tokenkit %s: cannot compute the fingerprint\n", p->s.cmd);
		return TOOL_EXIT_ERROR;
	}
	if ((rc = put_data(p, (uint16_t)(0xC7 + k), fpr, 20, "fingerprint")) != TOOL_EXIT_OK)
		return rc;
	return put_data(p, (uint16_t)(0xCE + k), t, sizeof(t), "generation time");
}

/* --json: the result as one object, the public key PEM inside. */
static void
print_key_json(int k, const pgp_attr_t *at, const uint8_t fpr[20], EVP_PKEY *pk)
{
	char hex[41], *pem = tool_pem_string(pk, NULL, NULL);

	fpr_text(fpr, hex);
	printf("{\"key\":\"%s\",\"algorithm\":\"%s\",\"fingerprint\":\"%s\",\"public_key\":",
	       key_names[k], at->name, hex);
	if (pem != NULL)
		tool_json_str(stdout, pem);
	else
		printf("null");
	printf("}\n");
	free(pem);
}

static int
openpgp_generate(const struct opts *o)
{
	struct pgp p = {0};
	struct tool_progress *pr = NULL;
	pgp_ard_t ard;
	pgp_attr_t at;
	uint8_t *resp = NULL, fpr[20], enc[16], crt[2] = {0, 0x00};
	char what[96], hex[41], adm[TOOL_SECRET_CAP];
	size_t n = 0, al = 0;
	uint16_t sw = 0;
	EVP_PKEY *pk = NULL;
	int k = o->nargs == 2 ? key_parse(o->args[1]) : -1, rc, r;

	if (k < 0 || o->algorithm == NULL)
		return usage_err();
	crt[0] = key_crt[k];
	/* the name first: a typo must not cost an admin PIN try */
	if (pgp_attr_encode(o->algorithm, k, NULL, enc, sizeof(enc), &n) != TK_OK) {
		fprintf(stderr,
		        "tokenkit openpgp generate: %s is not an algorithm for the %s key\n",
		        tool_text(o->algorithm), key_names[k]);
		return TOOL_EXIT_USAGE;
	}
	if ((rc = read_admin(o, adm, &al)) != TOOL_EXIT_OK ||
	    (rc = pgp_open(&p, "openpgp generate", o->args[0], false)) != TOOL_EXIT_OK ||
	    (rc = read_ard(&p, &ard)) != TOOL_EXIT_OK ||
	    (rc = verify_admin(&p, adm, al)) != TOOL_EXIT_OK ||
	    (rc = set_attributes(&p, &ard, k, o->algorithm, &at)) != TOOL_EXIT_OK)
		goto out;
	if ((resp = malloc(RESP_CAP)) == NULL) {
		rc = tool_card_err(&p.s, "generate", TK_ERR_NO_MEMORY);
		goto out;
	}
	snprintf(what, sizeof(what), "tokenkit openpgp generate: %s key, %s, on the card",
	         key_names[k], at.name);
	pr = tool_progress_start(what, o->json);
	/* GENERATE ASYMMETRIC KEY PAIR: 47 80 with the key's CRT */
	r = tool_xfer_slow(&p.s, 0x47, 0x80, 0x00, crt, sizeof(crt), resp, RESP_CAP, &n, &sw);
	tool_progress_stop(&pr);
	if ((rc = tool_card_result(&p.s, "generate", r, sw)) != TOOL_EXIT_OK)
		goto out;
	if ((r = pgp_pubkey_parse(&at, resp, n, &pk)) != TK_OK) {
		fprintf(stderr,
		        "tokenkit openpgp generate: the card's public key is malformed (%s)\n",
		        tk_strerror(r));
		rc = TOOL_EXIT_ERROR;
		goto out;
	}
	if ((rc = write_fpr_time(&p, k, &at, pk, fpr)) != TOOL_EXIT_OK)
		goto out;
	fpr_text(fpr, hex);
	if (o->json)
		print_key_json(k, &at, fpr, pk);
	else
		fprintf(stderr, "tokenkit openpgp generate: %s key: %s, fingerprint %s\n",
		        key_names[k], at.name, hex);
	/* the PEM: to -o's file, else (without --json) to stdout */
	rc = tool_output_pem(p.s.cmd, o->out, o->json, "public key", pk, NULL, NULL);
out:
	tk_wipe(adm, sizeof(adm));
	EVP_PKEY_free(pk);
	free(resp);
	tool_session_close(&p.s);
	return rc;
}

/* The algorithm name of a private key from a file; NULL for one the card
 * cannot hold. */
static const char *
key_alg(EVP_PKEY *pk)
{
	BIGNUM *e = NULL;
	int bits = EVP_PKEY_get_bits(pk);
	bool f4;

	switch (EVP_PKEY_get_base_id(pk)) {
	case EVP_PKEY_RSA:
		f4 = EVP_PKEY_get_bn_param(pk, "e", &e) == 1 && BN_is_word(e, 65537);
		BN_free(e);
		if (!f4)
			return NULL;
		return bits == 2048   ? "rsa2048"
		       : bits == 3072 ? "rsa3072"
		       : bits == 4096 ? "rsa4096"
		                      : NULL;
	case EVP_PKEY_EC:
		return bits == 256 ? "nistp256" : bits == 384 ? "nistp384" : NULL;
	case EVP_PKEY_ED25519:
		return "ed25519";
	case EVP_PKEY_X25519:
		return "cv25519";
	default:
		return NULL;
	}
}

static int
openpgp_import(const struct opts *o)
{
	struct pgp p = {0};
	pgp_ard_t ard;
	pgp_attr_t at;
	uint8_t *buf = NULL, fpr[20], enc[16];
	size_t el = 0;
	const size_t cap = 8192;
	const char *alg;
	char hex[41], adm[TOOL_SECRET_CAP];
	size_t al = 0;
	EVP_PKEY *pk = NULL;
	tk_wbuf_t w;
	int k = o->nargs == 3 ? key_parse(o->args[1]) : -1, rc, r;

	if (k < 0)
		return usage_err();
	if ((rc = tool_load_keyfile("openpgp import", o->args[2], &o->pass, &pk, NULL)) !=
	    TOOL_EXIT_OK)
		return rc;
	if ((alg = key_alg(pk)) == NULL) {
		fprintf(stderr,
		        "tokenkit openpgp import: %s: not a key an OpenPGP card holds (RSA "
		        "2048/3072/4096 with e=65537, P-256, P-384, Ed25519, X25519)\n",
		        tool_text(o->args[2]));
		rc = TOOL_EXIT_ERROR;
		goto out;
	}
	if (pgp_attr_encode(alg, k, NULL, enc, sizeof(enc), &el) != TK_OK) {
		fprintf(stderr, "tokenkit openpgp import: a %s key cannot be the %s key\n", alg,
		        key_names[k]);
		rc = TOOL_EXIT_USAGE;
		goto out;
	}
	if ((rc = read_admin(o, adm, &al)) != TOOL_EXIT_OK ||
	    (rc = pgp_open(&p, "openpgp import", o->args[0], false)) != TOOL_EXIT_OK ||
	    (rc = read_ard(&p, &ard)) != TOOL_EXIT_OK ||
	    (rc = verify_admin(&p, adm, al)) != TOOL_EXIT_OK ||
	    (rc = set_attributes(&p, &ard, k, alg, &at)) != TOOL_EXIT_OK)
		goto out;
	rc = TOOL_EXIT_ERROR;
	if ((buf = malloc(cap)) == NULL)
		goto out;
	tk_wbuf_init(&w, buf, cap);
	if ((r = pgp_import_encode(&at, k, pk, &w)) != TK_OK) {
		fprintf(stderr, "tokenkit openpgp import: cannot encode the key: %s\n",
		        tk_strerror(r));
		goto out;
	}
	if ((rc = tool_xfer_ok(&p.s, "import", 0xDB, 0x3F, 0xFF, buf, w.len)) != TOOL_EXIT_OK)
		goto out;
	if ((rc = write_fpr_time(&p, k, &at, pk, fpr)) != TOOL_EXIT_OK)
		goto out;
	fpr_text(fpr, hex);
	fprintf(stderr, "tokenkit openpgp import: %s key: %s, fingerprint %s\n", key_names[k],
	        at.name, hex);
out:
	tk_wipe(adm, sizeof(adm));
	tk_freezero(buf, cap);
	EVP_PKEY_free(pk);
	tool_session_close(&p.s);
	return rc;
}

/* ---- certificates ----------------------------------------------------------------------- */

/* The cardholder certificate DO 7F21 of key k: SELECT DATA picks the
 * occurrence on 3.x cards (0 AUT, 1 DEC, 2 SIG: specification 3.4, 7.2.5);
 * older cards have one, the AUT key's. */
static int
select_cert(struct pgp *p, const pgp_ard_t *ard, int k)
{
	static const uint8_t occurrence[PGP_NKEYS] = {2, 1, 0};
	static const uint8_t sel[] = {0x60, 0x04, 0x5C, 0x02, 0x7F, 0x21};

	if (ard->version[0] < 3) {
		if (k == PGP_AUT)
			return TOOL_EXIT_OK;
		fprintf(stderr,
		        "tokenkit %s: an OpenPGP card of version %u.%u keeps a certificate for the "
		        "aut key only\n",
		        p->s.cmd, ard->version[0], ard->version[1]);
		return TOOL_EXIT_ERROR;
	}
	return tool_xfer_ok(&p->s, "SELECT DATA", 0xA5, occurrence[k], 0x04, sel, sizeof(sel));
}

/* The card signs for tool_card_signed with key k: VERIFY PW1 (81 for the
 * sig key's PSO:COMPUTE DIGITAL SIGNATURE, 82 for the aut key's INTERNAL
 * AUTHENTICATE), then the command with a DigestInfo (RSA; the card pads),
 * the hash (ECDSA; the card answers r || s) or the bytes (EdDSA). */
struct pgp_signer {
	struct pgp *p;
	int k;
	const char *pin;
	size_t pin_len;
	EVP_PKEY *pk;
};

static int
digest_info(const EVP_MD *md, const uint8_t *tbs, size_t tbs_len, uint8_t *out, size_t *len)
{
	/* DigestInfo prefixes (RFC 8017, 9.2 note 1) */
	static const uint8_t di256[] = {0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01,
	                                0x65, 0x03, 0x04, 0x02, 0x01, 0x05, 0x00, 0x04, 0x20};
	static const uint8_t di384[] = {0x30, 0x41, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01,
	                                0x65, 0x03, 0x04, 0x02, 0x02, 0x05, 0x00, 0x04, 0x30};
	const bool is384 = EVP_MD_get_size(md) == 48;
	const uint8_t *pre = is384 ? di384 : di256;
	const size_t pl = is384 ? sizeof(di384) : sizeof(di256);
	unsigned hl = 0;

	if (EVP_Digest(tbs, tbs_len, out + pl, &hl, md, NULL) != 1)
		return TOOL_EXIT_ERROR;
	memcpy(out, pre, pl);
	*len = pl + hl;
	return TOOL_EXIT_OK;
}

/* r || s from the card as a DER ECDSA-Sig-Value. */
static int
ecdsa_der(const uint8_t *rs, size_t n, uint8_t **sig, size_t *sig_len)
{
	ECDSA_SIG *es = ECDSA_SIG_new();
	BIGNUM *r = BN_bin2bn(rs, (int)(n / 2), NULL),
	       *s = BN_bin2bn(rs + n / 2, (int)(n / 2), NULL);
	unsigned char *der = NULL;
	int len = -1;

	if (es != NULL && r != NULL && s != NULL && n % 2 == 0 && ECDSA_SIG_set0(es, r, s) == 1) {
		r = s = NULL; /* es owns them */
		len = i2d_ECDSA_SIG(es, &der);
	}
	BN_free(r);
	BN_free(s);
	ECDSA_SIG_free(es);
	if (len <= 0)
		return TOOL_EXIT_ERROR;
	*sig = malloc((size_t)len);
	if (*sig != NULL)
		memcpy(*sig, der, (size_t)len);
	*sig_len = (size_t)len;
	OPENSSL_free(der);
	return *sig != NULL ? TOOL_EXIT_OK : TOOL_EXIT_ERROR;
}

static int
pgp_sign_cb(void *ctx, const EVP_MD *md, const uint8_t *tbs, size_t tbs_len, uint8_t **sig,
            size_t *sig_len)
{
	struct pgp_signer *ps = ctx;
	struct pgp *p = ps->p;
	const bool aut = ps->k == PGP_AUT;
	uint8_t v[PW_MAX], in[128], *resp = NULL;
	const uint8_t *data = in;
	size_t vl = 0, il = 0, n = 0;
	uint16_t sw = 0;
	unsigned hl = 0;
	int rc, r;

	*sig = NULL;
	*sig_len = 0;
	if ((rc = read_kdf(p)) != TOOL_EXIT_OK ||
	    (rc = pin_bytes(p, PGP_PW1, ps->pin, ps->pin_len, v, &vl)) != TOOL_EXIT_OK)
		return rc;
	r = tool_xfer(&p->s, 0x20, 0x00, aut ? 0x82 : 0x81, v, vl, NULL, 0, NULL, &sw);
	tk_wipe(v, sizeof(v));
	if (r != TK_OK)
		return tool_card_err(&p->s, "VERIFY", r);
	if ((rc = tool_pin_sw(&p->s, "PIN", sw)) != TOOL_EXIT_OK)
		return rc;
	rc = TOOL_EXIT_ERROR;
	if (md == NULL) { /* EdDSA: the card signs the bytes */
		data = tbs;
		il = tbs_len;
	} else if (EVP_PKEY_get_base_id(ps->pk) == EVP_PKEY_RSA) {
		if (digest_info(md, tbs, tbs_len, in, &il) != TOOL_EXIT_OK)
			goto out;
	} else if (EVP_Digest(tbs, tbs_len, in, &hl, md, NULL) == 1) {
		il = hl;
	} else {
		goto out;
	}
	if ((resp = malloc(RESP_CAP)) == NULL)
		goto out;
	r = aut ? tool_xfer(&p->s, 0x88, 0x00, 0x00, data, il, resp, RESP_CAP, &n, &sw)
	        : tool_xfer(&p->s, 0x2A, 0x9E, 0x9A, data, il, resp, RESP_CAP, &n, &sw);
	if ((rc = tool_card_result(&p->s, "sign", r, sw)) != TOOL_EXIT_OK)
		goto out;
	rc = TOOL_EXIT_ERROR;
	if (md != NULL && EVP_PKEY_get_base_id(ps->pk) == EVP_PKEY_EC) {
		rc = ecdsa_der(resp, n, sig, sig_len);
	} else if ((*sig = malloc(n)) != NULL) {
		memcpy(*sig, resp, n);
		*sig_len = n;
		rc = TOOL_EXIT_OK;
	}
	if (rc != TOOL_EXIT_OK)
		fprintf(stderr, "tokenkit %s: malformed signature from the card\n", p->s.cmd);
out:
	free(resp);
	ERR_clear_error();
	return rc;
}

/* certificate --self-sign | --csr: key k's public key (47 81) and a
 * certificate or request signed by the card. */
static int
card_signed(struct pgp *p, const struct opts *o, const pgp_ard_t *ard, int k, X509 **x,
            X509_REQ **req)
{
	uint8_t buf[RESP_CAP], crt[2] = {key_crt[k], 0x00};
	char pin[TOOL_SECRET_CAP];
	size_t n = 0, pl = 0;
	uint16_t sw = 0;
	struct pgp_signer ps = {p, k, pin, 0, NULL};
	tool_card_signer_t s = {NULL, pgp_sign_cb, &ps};
	int rc, r;

	if ((r = tool_xfer(&p->s, 0x47, 0x81, 0x00, crt, sizeof(crt), buf, sizeof(buf), &n, &sw)) !=
	    TK_OK)
		return tool_card_err(&p->s, "read public key", r);
	if (sw != 0x9000 || pgp_pubkey_parse(&ard->key[k].attr, buf, n, &s.pk) != TK_OK) {
		fprintf(stderr, "tokenkit %s: the card holds no %s key it can show (%04X)\n",
		        p->s.cmd, key_names[k], sw);
		return TOOL_EXIT_ERROR;
	}
	ps.pk = s.pk;
	rc = tool_read_secret(&(tool_ask_t){"openpgp", "PIN", "--pin-fd", PW1_MIN, PW_MAX}, &o->pin,
	                      pin, sizeof(pin), &pl);
	ps.pin_len = pl;
	if (rc == TOOL_EXIT_OK)
		rc = tool_card_signed(p->s.cmd, &s, req != NULL ? o->cert.csr : o->cert.self_sign,
		                      o->cert.days, x, req);
	tk_wipe(pin, sizeof(pin));
	EVP_PKEY_free(s.pk);
	return rc;
}

static int
openpgp_certificate(const struct opts *o)
{
	struct pgp p = {0};
	pgp_ard_t ard;
	X509 *x = NULL;
	X509_REQ *req = NULL;
	unsigned char *der = NULL;
	char adm[TOOL_SECRET_CAP];
	size_t al = 0;
	int k = o->nargs == 2 ? key_parse(o->args[1]) : -1, dl, rc;

	if (k < 0 ||
	    (o->cert.self_sign != NULL) + (o->cert.import != NULL) + (o->cert.csr != NULL) != 1)
		return usage_err();
	if (k == PGP_DEC && o->cert.import == NULL) {
		fprintf(stderr, "tokenkit openpgp certificate: the dec key cannot sign: give its "
		                "certificate with --import\n");
		return TOOL_EXIT_USAGE;
	}
	if (o->cert.import != NULL && (x = tool_load_cert(o->cert.import)) == NULL) {
		fprintf(stderr,
		        "tokenkit openpgp certificate: cannot read a certificate (PEM or DER) from "
		        "%s\n",
		        tool_text(o->cert.import));
		return TOOL_EXIT_ERROR;
	}
	/* the admin PIN first, unless only a request is made (nothing is written) */
	if (o->cert.csr == NULL && (rc = read_admin(o, adm, &al)) != TOOL_EXIT_OK)
		goto out;
	if ((rc = pgp_open(&p, "openpgp certificate", o->args[0], false)) != TOOL_EXIT_OK ||
	    (rc = read_ard(&p, &ard)) != TOOL_EXIT_OK)
		goto out;
	if (o->cert.csr != NULL) {
		if ((rc = card_signed(&p, o, &ard, k, NULL, &req)) == TOOL_EXIT_OK)
			rc = tool_output_pem(p.s.cmd, o->out, false, "request", NULL, NULL, req);
		goto out;
	}
	if (o->cert.self_sign != NULL &&
	    (rc = card_signed(&p, o, &ard, k, &x, NULL)) != TOOL_EXIT_OK)
		goto out;
	rc = TOOL_EXIT_ERROR;
	if ((dl = i2d_X509(x, &der)) <= 0)
		goto out;
	if ((rc = verify_admin(&p, adm, al)) != TOOL_EXIT_OK ||
	    (rc = select_cert(&p, &ard, k)) != TOOL_EXIT_OK ||
	    (rc = put_data(&p, 0x7F21, der, (size_t)dl, "certificate")) != TOOL_EXIT_OK)
		goto out;
	fprintf(stderr, "tokenkit openpgp certificate: %s key: certificate written\n",
	        key_names[k]);
	if (o->out != NULL)
		rc = tool_output_pem(p.s.cmd, o->out, true, "certificate", NULL, x, NULL);
out:
	tk_wipe(adm, sizeof(adm));
	OPENSSL_free(der);
	X509_free(x);
	X509_REQ_free(req);
	tool_session_close(&p.s);
	return rc;
}

/* ---- PINs ------------------------------------------------------------------------------- */

/* CHANGE REFERENCE DATA / RESET RETRY COUNTER: old || new in one command
 * (each hashed when the card has a KDF-DO; no old one: ow < 0). */
static int
send_old_new(struct pgp *p, uint8_t ins, uint8_t p1, uint8_t p2, int ow, const char *old, size_t ol,
             int nwhich, const char *nw, size_t nl, const char *what)
{
	uint8_t data[2 * PW_MAX];
	size_t dl = 0, l2 = 0;
	uint16_t sw = 0;
	int rc, r;

	if ((ow >= 0 && (rc = pin_bytes(p, ow, old, ol, data, &dl)) != TOOL_EXIT_OK) ||
	    (rc = pin_bytes(p, nwhich, nw, nl, data + dl, &l2)) != TOOL_EXIT_OK)
		goto out;
	r = tool_xfer(&p->s, ins, p1, p2, data, dl + l2, NULL, 0, NULL, &sw);
	rc = r != TK_OK ? tool_card_err(&p->s, what, r) : tool_pin_sw(&p->s, what, sw);
out:
	tk_wipe(data, sizeof(data));
	return rc;
}

/* The secrets of a PIN command: old (the PIN, admin PIN or resetting code
 * it proves) and the new one, read before the card is taken. */
static int
pin_secrets(const struct opts *o, const char *sub, char *old, size_t *ol, char *nw, size_t *nl)
{
	const tool_secret_t *olds = &o->admin, *news = &o->new_pin;
	const char *ow = "admin PIN", *ofd = "--admin-pin-fd", *nwhat = "new PIN";
	const char *nfd = "--new-pin-fd";
	size_t omin = PW3_MIN, nmin = PW1_MIN;
	tool_secret_t next;
	int rc;

	if (strcmp(sub, "change") == 0) {
		olds = &o->pin;
		ow = "PIN";
		ofd = "--pin-fd";
		omin = PW1_MIN;
	} else if (strcmp(sub, "admin-change") == 0) {
		news = &o->new_admin;
		nwhat = "new admin PIN";
		nfd = "--new-admin-pin-fd";
		nmin = PW3_MIN;
	} else if (strcmp(sub, "unblock") == 0 && o->use_rc) {
		olds = &o->rc;
		ow = "resetting code";
		ofd = "--reset-code-fd";
	} else if (strcmp(sub, "reset-code") == 0) {
		news = &o->new_rc;
		nwhat = "new resetting code";
		nfd = "--new-reset-code-fd";
		nmin = PW3_MIN;
	}
	/* the new one never reuses the old one's command-line value */
	next = *olds;
	next.insecure = NULL;
	if ((rc = tool_read_secret(&(tool_ask_t){"openpgp", ow, ofd, omin, PW_MAX}, olds, old,
	                           TOOL_SECRET_CAP, ol)) != TOOL_EXIT_OK)
		return rc;
	return tool_read_new_secret(&(tool_ask_t){"openpgp", nwhat, nfd, nmin, PW_MAX}, news, &next,
	                            nw, TOOL_SECRET_CAP, nl);
}

static int
openpgp_pin(const struct opts *o, const char *sub)
{
	struct pgp p = {0};
	char old[TOOL_SECRET_CAP], nw[TOOL_SECRET_CAP], cmd[64];
	size_t ol = 0, nl = 0;
	int rc;

	if (o->nargs != 1 || (strcmp(sub, "change") != 0 && strcmp(sub, "admin-change") != 0 &&
	                      strcmp(sub, "unblock") != 0 && strcmp(sub, "reset-code") != 0))
		return usage_err();
	snprintf(cmd, sizeof(cmd), "openpgp pin %s", sub);
	if ((rc = pin_secrets(o, sub, old, &ol, nw, &nl)) != TOOL_EXIT_OK ||
	    (rc = pgp_open(&p, cmd, o->args[0], false)) != TOOL_EXIT_OK ||
	    (rc = read_kdf(&p)) != TOOL_EXIT_OK)
		goto out;
	if (strcmp(sub, "change") == 0) {
		rc = send_old_new(&p, 0x24, 0x00, 0x81, PGP_PW1, old, ol, PGP_PW1, nw, nl, "PIN");
	} else if (strcmp(sub, "admin-change") == 0) {
		rc = send_old_new(&p, 0x24, 0x00, 0x83, PGP_PW3, old, ol, PGP_PW3, nw, nl,
		                  "admin PIN");
	} else if (strcmp(sub, "unblock") == 0 && o->use_rc) {
		/* RESET RETRY COUNTER P1 00: resetting code || new PIN */
		rc = send_old_new(&p, 0x2C, 0x00, 0x81, PGP_RC, old, ol, PGP_PW1, nw, nl,
		                  "resetting code");
	} else if (strcmp(sub, "unblock") == 0) {
		/* RESET RETRY COUNTER P1 02 after PW3: the new PIN alone */
		if ((rc = verify_admin(&p, old, ol)) == TOOL_EXIT_OK)
			rc = send_old_new(&p, 0x2C, 0x02, 0x81, -1, "", 0, PGP_PW1, nw, nl,
			                  "new PIN");
	} else {
		/* PUT DATA D3 with PW3: the resetting code */
		uint8_t v[PW_MAX];
		size_t vl = 0;

		if ((rc = verify_admin(&p, old, ol)) == TOOL_EXIT_OK &&
		    (rc = pin_bytes(&p, PGP_RC, nw, nl, v, &vl)) == TOOL_EXIT_OK)
			rc = put_data(&p, 0xD3, v, vl, "resetting code");
		tk_wipe(v, sizeof(v));
	}
	if (rc == TOOL_EXIT_OK)
		fprintf(stderr, "tokenkit %s: done\n", cmd);
out:
	tk_wipe(old, sizeof(old));
	tk_wipe(nw, sizeof(nw));
	tool_session_close(&p.s);
	return rc;
}

/* ---- cardholder data ---------------------------------------------------------------------- */

static int
openpgp_set(const struct opts *o, const char *what)
{
	static const struct {
		const char *name;
		uint16_t tag;
		size_t min, max;
	} dos[] = {
	        {"name", 0x5B, 0, 39}, /* ISO 7816-6, "Surname<<Given" */
	        {"url", 0x5F50, 0, 255},
	        {"login", 0x5E, 0, 254},
	        {"lang", 0x5F2D, 2, 8}, /* ISO 639-1 pairs, by preference */
	};
	struct pgp p = {0};
	const char *v = o->nargs == 2 ? o->args[1] : NULL;
	size_t len = v != NULL ? strlen(v) : 0, al = 0;
	char cmd[64], adm[TOOL_SECRET_CAP];
	int rc;

	for (size_t i = 0; v != NULL && i < sizeof(dos) / sizeof(dos[0]); i++) {
		if (strcmp(what, dos[i].name) != 0)
			continue;
		if (len < dos[i].min || len > dos[i].max ||
		    (dos[i].tag == 0x5F2D && len % 2 != 0)) {
			fprintf(stderr, "tokenkit openpgp set %s: %zu to %zu bytes%s\n", what,
			        dos[i].min, dos[i].max,
			        dos[i].tag == 0x5F2D ? ", two-letter codes (\"de\", \"enfr\")"
			                             : "");
			return TOOL_EXIT_USAGE;
		}
		snprintf(cmd, sizeof(cmd), "openpgp set %s", what);
		if ((rc = read_admin(o, adm, &al)) == TOOL_EXIT_OK &&
		    (rc = pgp_open(&p, cmd, o->args[0], false)) == TOOL_EXIT_OK &&
		    (rc = verify_admin(&p, adm, al)) == TOOL_EXIT_OK)
			rc = put_data(&p, dos[i].tag, (const uint8_t *)v, len, what);
		tk_wipe(adm, sizeof(adm));
		tool_session_close(&p.s);
		return rc;
	}
	return usage_err();
}

/* ---- factory reset ------------------------------------------------------------------------ */

/* TERMINATE DF needs PW3 verified or blocked (specification 7.2.16): we
 * block it with wrong PINs, as many as it has tries. A random "wrong" PIN
 * that happens to be right verifies PW3, which does as well. */
static int
block_pw3(struct pgp *p)
{
	uint8_t bogus[PW3_MIN];
	unsigned tries;
	uint16_t sw = 0;
	pgp_ard_t ard;
	int rc, r;

	if ((rc = read_ard(p, &ard)) != TOOL_EXIT_OK)
		return rc;
	if (!ard.have_pw_status) {
		fprintf(stderr, "tokenkit %s: the card does not tell its PIN status\n", p->s.cmd);
		return TOOL_EXIT_ERROR;
	}
	tries = ard.pw_status[6];
	/* bounded: a card counts down at most 15 (63Cx) */
	for (unsigned i = 0; i < tries && i < 16; i++) {
		if (RAND_bytes(bogus, sizeof(bogus)) != 1)
			return TOOL_EXIT_ERROR;
		if ((r = tool_xfer(&p->s, 0x20, 0x00, 0x83, bogus, sizeof(bogus), NULL, 0, NULL,
		                   &sw)) != TK_OK)
			return tool_card_err(&p->s, "VERIFY", r);
		if (sw == 0x6983 || sw == 0x9000)
			break;
	}
	return TOOL_EXIT_OK;
}

static int
openpgp_reset(const struct opts *o)
{
	struct pgp p = {0};
	uint16_t sw = 0;
	uint8_t resp[256];
	size_t n = 0;
	int rc, r;

	if (o->nargs != 1)
		return usage_err();
	if ((rc = tool_confirm_cmd("openpgp reset", o->yes,
	                           "Reset the OpenPGP application of the card in '%s'? Every key, "
	                           "PIN and data object is erased.",
	                           tool_text(o->args[0]))) != TOOL_EXIT_OK)
		return rc;
	if ((rc = pgp_open(&p, "openpgp reset", o->args[0], true)) != TOOL_EXIT_OK)
		goto out;
	if (!p.terminated) {
		if ((rc = block_pw3(&p)) != TOOL_EXIT_OK)
			goto out;
		if ((rc = tool_xfer_ok(&p.s, "TERMINATE DF", 0xE6, 0x00, 0x00, NULL, 0)) !=
		    TOOL_EXIT_OK)
			goto out;
	}
	if ((rc = tool_xfer_ok(&p.s, "ACTIVATE FILE", 0x44, 0x00, 0x00, NULL, 0)) != TOOL_EXIT_OK)
		goto out;
	/* the application answers again */
	if ((r = tool_xfer(&p.s, 0xA4, 0x04, 0x00, pgp_aid, sizeof(pgp_aid), resp, sizeof(resp), &n,
	                   &sw)) != TK_OK) {
		rc = tool_card_err(&p.s, "select", r);
		goto out;
	}
	if (sw != 0x9000) {
		rc = tool_sw_err(&p.s, "select after ACTIVATE FILE", sw);
		goto out;
	}
	fprintf(stderr,
	        "tokenkit openpgp reset: the OpenPGP application is in its factory state (PINs "
	        "as the card's maker set them, usually 123456 and 12345678)\n");
	rc = TOOL_EXIT_OK;
out:
	tool_session_close(&p.s);
	return rc;
}

static int
cmd_openpgp(int argc, char **argv)
{
	struct opts o;
	const char *sub = argc > 1 ? argv[1] : "";
	const char *what = argc > 2 ? argv[2] : "";
	int rc;

	if (strcmp(sub, "pin") == 0 || strcmp(sub, "set") == 0) {
		if ((rc = parse(argc, argv, 3, &o)) != TOOL_EXIT_OK)
			return rc;
		return sub[0] == 'p' ? openpgp_pin(&o, what) : openpgp_set(&o, what);
	}
	if ((rc = parse(argc, argv, 2, &o)) != TOOL_EXIT_OK)
		return rc;
	if (strcmp(sub, "status") == 0)
		return openpgp_status(&o);
	if (strcmp(sub, "generate") == 0)
		return openpgp_generate(&o);
	if (strcmp(sub, "import") == 0)
		return openpgp_import(&o);
	if (strcmp(sub, "reset") == 0)
		return openpgp_reset(&o);
	if (strcmp(sub, "certificate") == 0)
		return openpgp_certificate(&o);
	return usage_err();
}

TOOL_COMMAND(openpgp, "openpgp", "status|generate|import|certificate|pin|set|reset READER ...",
             "provision an OpenPGP card: keys, certificates, PINs, cardholder data, factory "
             "reset",
             cmd_openpgp)
