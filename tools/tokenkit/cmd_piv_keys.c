/* tokenkit piv import and reset: a private key from a file into a slot
 * (Yubico's IMPORT ASYMMETRIC KEY, INS FE), and the card back to its
 * factory state (Yubico's RESET, INS FB). The helpers are cmd_piv.c's. */
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/x509.h>

#include <tokenkit/err.h>
#include <tokenkit/mem.h>
#include <tokenkit/tlv.h>

#include "cmd_piv.h"
#include "piv_attest.h"
#include "piv_prov.h"
#include "tool.h"

/* ---- import ----------------------------------------------------------------------------- */

#define IMPORT_CAP 1400 /* RSA-4096: five 256-byte elements and their headers */

/* The card's firmware version (Yubico GET VERSION); 0.0.0 when it has none. */
static void
card_version(tool_session_t *p, uint8_t v[3])
{
	uint8_t resp[RESP_CAP];
	size_t n = 0;
	uint16_t sw = 0;

	memset(v, 0, 3);
	if (tool_xfer(p, 0xFD, 0x00, 0x00, NULL, 0, resp, RESP_CAP, &n, &sw) == TK_OK &&
	    sw == 0x9000 && n == 3)
		memcpy(v, resp, 3);
}

/* Does a card of firmware ver know the policies o asks for? A message and
 * an exit code when not. */
static int
policies_supported(tool_session_t *p, const struct opts *o, const uint8_t ver[3])
{
	unsigned v = ver[0] * 100u + ver[1];

	/* Yubico's policies came with YubiKey 4, the cached touch with 4.3 */
	if ((o->pin_policy != 0 || o->touch_policy != 0) && v < 400) {
		fprintf(stderr,
		        "tokenkit %s: %s: PIN and touch policies need a YubiKey 4 or later (this "
		        "card: %u.%u.%u)\n",
		        p->cmd, tool_text(tk_card_reader_name(p->c)), ver[0], ver[1], ver[2]);
		return TOOL_EXIT_ERROR;
	}
	if (o->touch_policy == PIV_TOUCH_CACHED && v < 403) {
		fprintf(stderr,
		        "tokenkit %s: %s: the cached touch policy needs firmware 4.3 or later\n",
		        p->cmd, tool_text(tk_card_reader_name(p->c)));
		return TOOL_EXIT_ERROR;
	}
	return TOOL_EXIT_OK;
}

/* Does a card of firmware ver know the key algorithm alg (PIV_ALG_*)? A
 * message and an exit code when not. */
static int
alg_supported(tool_session_t *p, uint8_t alg, const uint8_t ver[3])
{
	/* YubiKeys take RSA-3072 and 4096 from firmware 5.7 on */
	if ((alg == PIV_ALG_RSA3072 || alg == PIV_ALG_RSA4096) && ver[0] * 100 + ver[1] < 507) {
		fprintf(stderr,
		        "tokenkit %s: %s: RSA-%u needs a YubiKey with firmware 5.7 or later (this "
		        "card: %u.%u.%u)\n",
		        p->cmd, tool_text(tk_card_reader_name(p->c)), piv_rsa_bits(alg), ver[0],
		        ver[1], ver[2]);
		return TOOL_EXIT_ERROR;
	}
	return TOOL_EXIT_OK;
}

int
piv_open_for_key(tool_session_t *p, const char *cmd, const struct opts *o, uint8_t alg)
{
	uint8_t ver[3];
	int rc;

	if ((rc = piv_open(p, cmd, o->args[0])) != TOOL_EXIT_OK)
		return rc;
	card_version(p, ver);
	if ((rc = alg_supported(p, alg, ver)) != TOOL_EXIT_OK ||
	    (rc = policies_supported(p, o, ver)) != TOOL_EXIT_OK)
		return rc;
	return mgm_auth(p, o);
}

/* A whole (small) file; the caller wipes and frees it: it holds a private key. */
int
piv_import(const struct opts *o)
{
	tool_session_t p = {0};
	EVP_PKEY *key = NULL;
	X509 *cert = NULL;
	uint8_t ref = 0, alg = 0, *data = NULL;
	size_t dl = 0;
	uint16_t sw = 0;
	int rc, r;

	if (o->nargs != 3 || piv_parse_slot(o->args[1], &ref) != TK_OK)
		return usage_err();
	if ((rc = tool_load_keyfile("piv import", o->args[2], &o->pass, &key, &cert)) !=
	    TOOL_EXIT_OK)
		goto out;
	rc = TOOL_EXIT_ERROR;
	if (piv_key_alg(key, &alg) != TK_OK) {
		fprintf(stderr, "tokenkit piv import: the key is neither RSA 1024, 2048, 3072 or "
		                "4096 (e = 65537) nor EC P-256 or P-384\n");
		goto out;
	}
	if ((data = malloc(IMPORT_CAP)) == NULL ||
	    piv_import_data(key, o->pin_policy, o->touch_policy, data, IMPORT_CAP, &dl) != TK_OK) {
		fprintf(stderr, "tokenkit piv import: cannot encode the key\n");
		goto out;
	}
	if ((rc = piv_open_for_key(&p, "piv import", o, alg)) != TOOL_EXIT_OK)
		goto out;
	r = tool_xfer(&p, 0xFE, alg, ref, data, dl, NULL, 0, NULL, &sw);
	tk_freezero(data, IMPORT_CAP);
	data = NULL;
	if (r != TK_OK) {
		rc = tool_card_err(&p, "import", r);
		goto out;
	}
	if (sw != 0x9000) {
		rc = tool_sw_err(&p, "import (IMPORT ASYMMETRIC KEY)", sw);
		goto out;
	}
	fprintf(stderr, "tokenkit piv import: slot %02X: %s key imported\n", ref,
	        tool_piv_alg_name(alg));
	if (cert != NULL && !o->no_cert) {
		if ((rc = put_cert(&p, ref, cert)) != TOOL_EXIT_OK)
			goto out;
		fprintf(stderr,
		        "tokenkit piv import: slot %02X: its certificate written (object %06X)\n",
		        ref, piv_slot_object(ref));
	}
	rc = tool_output_pem(p.cmd, o->out, o->json, "public key", key, NULL, NULL);
	if (rc == TOOL_EXIT_OK && o->json) {
		pj_begin(&p);
		pj_slot(&p, ref);
		pj_pem("public_key", key, NULL, NULL);
		pj_bool("certificate_written", cert != NULL && !o->no_cert);
		pj_end();
	}
out:
	if (data != NULL)
		tk_freezero(data, IMPORT_CAP);
	EVP_PKEY_free(key);
	X509_free(cert);
	tool_session_close(&p);
	return rc;
}

/* ---- reset ------------------------------------------------------------------------------ */

/* The wrong value for blocking: the empty PIN / PUK padded with FF (a real
 * one has 6 to 8 characters), what Yubico's own tools send to block. */
static const uint8_t empty16[16] = {0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF,
                                    0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF};

/* Block the PIN (VERIFY) or the PUK (RESET RETRY COUNTER: PUK, new PIN)
 * with wrong values until the card says blocked; bounded (a YubiKey allows
 * at most 255 tries). */
static int
block_ref(tool_session_t *p, uint8_t ref)
{
	const char *what = ref == 0x80 ? "PIN" : "PUK";
	uint16_t sw = 0;
	int r;

	for (int i = 0; i < 256; i++) {
		r = ref == 0x80 ? tool_xfer(p, 0x20, 0x00, 0x80, empty16, 8, NULL, 0, NULL, &sw)
		                : tool_xfer(p, 0x2C, 0x00, 0x80, empty16, 16, NULL, 0, NULL, &sw);
		if (r != TK_OK)
			return tool_card_err(p, what, r);
		if (sw == 0x6983 || sw == 0x63C0)
			return TOOL_EXIT_OK;
		if ((sw & 0xFFF0) != 0x63C0) {
			fprintf(stderr, "tokenkit piv reset: could not block the %s (%04X)\n", what,
			        sw);
			return TOOL_EXIT_ERROR;
		}
	}
	fprintf(stderr, "tokenkit piv reset: the %s is not blocked after 256 wrong tries\n", what);
	return TOOL_EXIT_ERROR;
}

int
piv_reset(const struct opts *o)
{
	tool_session_t p = {0};
	uint16_t sw = 0;
	int rc, r;

	if (o->nargs != 1)
		return usage_err();
	if ((rc = tool_confirm_cmd("piv reset", o->yes,
	                           "Reset the PIV application of the card in '%s'? Every key and "
	                           "certificate is erased, PIN, PUK and management key are back to "
	                           "the factory ones%s.",
	                           tool_text(o->args[0]),
	                           o->block ? "; the PIN and the PUK are blocked first" : "")) !=
	    TOOL_EXIT_OK)
		return rc;
	if ((rc = piv_open(&p, "piv reset", o->args[0])) != TOOL_EXIT_OK)
		goto out;
	if (o->block && ((rc = block_ref(&p, 0x80)) != TOOL_EXIT_OK ||
	                 (rc = block_ref(&p, 0x81)) != TOOL_EXIT_OK))
		goto out;
	if ((r = tool_xfer(&p, 0xFB, 0x00, 0x00, NULL, 0, NULL, 0, NULL, &sw)) != TK_OK) {
		rc = tool_card_err(&p, "reset", r);
		goto out;
	}
	if (sw == 0x6985) {
		int pin = tries_left(&p, 0x80), puk = tries_left(&p, 0x81);

		fprintf(stderr,
		        "tokenkit piv reset: %s: the card resets only when the PIN and the PUK are "
		        "both blocked (PIN: %d, PUK: %d tries left; -1: unknown); --block blocks "
		        "them first\n",
		        tool_text(tk_card_reader_name(p.c)), pin, puk);
		rc = TOOL_EXIT_ERROR;
		goto out;
	}
	if (sw != 0x9000) {
		rc = tool_sw_err(&p, "reset", sw);
		goto out;
	}
	fprintf(stderr, "tokenkit piv reset: done: PIN 123456, PUK 12345678, the default "
	                "management key; no keys, no certificates\n");
	if (o->json) {
		pj_begin(&p);
		pj_bool("reset", true);
		pj_int("pin_retries_left", tries_left(&p, 0x80));
		pj_int("puk_retries_left", tries_left(&p, 0x81));
		pj_end();
	}
	rc = TOOL_EXIT_OK;
out:
	tool_session_close(&p);
	return rc;
}
