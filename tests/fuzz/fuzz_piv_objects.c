/* Fuzz the PIV driver's parsers. The first byte picks the parser, the rest
 * is the object as a card would return it:
 *   0 application property template   4 key history
 *   1 CHUID (+ FASC-N digits)         5 Yubico metadata; the same bytes
 *                                       as an attestation cache record
 *   2 discovery object                6 ECDSA-Sig-Value → r||s
 *   3 certificate container (incl. gzip/zlib, then X.509 → SPKI)
 *   7 a whole card: the rest is a list of responses (u16be length +
 *     bytes), answered in order to whatever the driver sends while a token
 *     is opened, logged in and used */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <tokenkit/err.h>
#include <tokenkit/log.h>
#include <tokenkit/token.h>

#include "../../drivers/piv/piv.h"
#include "card_priv.h"
#include "x509.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct script {
	const uint8_t *p;
	size_t n;
};

static int
script_xmit(void *ctx, const uint8_t *cmd, size_t cmd_len, uint8_t *resp, size_t resp_cap,
            size_t *resp_len)
{
	struct script *s = ctx;
	size_t l;

	(void)cmd;
	(void)cmd_len;
	*resp_len = 0;
	if (s->n < 2)
		return TK_ERR_CARD_REMOVED;
	l = (size_t)s->p[0] << 8 | s->p[1];
	s->p += 2;
	s->n -= 2;
	if (l > s->n)
		l = s->n;
	if (l > resp_cap)
		l = resp_cap;
	memcpy(resp, s->p, l);
	s->p += l;
	s->n -= l;
	*resp_len = l;
	return TK_OK;
}

static void
whole_card(const uint8_t *data, size_t size)
{
	static const uint8_t atr[] = {0x3B, 0x80, 0x80, 0x01, 0x01};
	struct script s = {data, size};
	tk_token_opts_t o;
	tk_token_t *t = NULL;
	tk_card_t *card = NULL;
	const tk_object_t *objs;
	size_t n = 0, ol = 0;
	uint8_t in[512], out[512];

	if (tk_card_new_direct("fuzz", atr, sizeof(atr), script_xmit, &s, &card) != TK_OK)
		return;
	tk_token_opts_init(&o);
	o.cache_dir = "";
	o.refresh_pin_status = true;
	if (tk_token_open(card, &o, &t) == TK_OK) {
		(void)tk_token_login(t, TK_USER_USER, (const uint8_t *)"123456", 6);
		(void)tk_token_login(t, TK_USER_CONTEXT, (const uint8_t *)"123456", 6);
		if (tk_token_objects(t, &objs, &n) == TK_OK) {
			memset(in, 0x01, sizeof(in));
			in[0] = 0x04;
			for (size_t i = 0; i < n; i++) {
				if (objs[i].cls != TK_OBJ_PRIVKEY)
					continue;
				(void)tk_token_key_op(t, &objs[i], TK_OP_ECDSA, in, 32, out,
				                      sizeof(out), &ol);
				(void)tk_token_key_op(t, &objs[i], TK_OP_ECDH, in,
				                      1 + 2 * ((objs[i].key_bits + 7) / 8), out,
				                      sizeof(out), &ol);
				(void)tk_token_key_op(t, &objs[i], TK_OP_RSA_RAW, in,
				                      (objs[i].key_bits + 7) / 8, out, sizeof(out),
				                      &ol);
			}
		}
		(void)tk_token_logout(t);
		tk_token_free(&t);
	}
	tk_card_unref(&card);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const uint8_t *p;
	size_t n;

	tk_log_set_level(TK_LOG_NONE);
	if (size < 1)
		return 0;
	p = data + 1;
	n = size - 1;
	switch (data[0] & 0x07) {
	case 0: {
		piv_apt_t apt;

		(void)piv_parse_apt(p, n, &apt);
		break;
	}
	case 1: {
		piv_chuid_t c;
		char digits[15];

		if (piv_parse_chuid(p, n, &c) == TK_OK && c.has_fascn)
			(void)piv_fascn_digits(c.fascn, digits);
		break;
	}
	case 2: {
		piv_discovery_t d;

		(void)piv_parse_discovery(p, n, &d);
		break;
	}
	case 3: {
		uint8_t *cert = NULL, *spki = NULL;
		size_t cl = 0, sl = 0;
		int kt;
		unsigned kb;

		if (piv_parse_cert_object(p, n, &cert, &cl) == TK_OK && cert != NULL) {
			if (cl > PIV_MAX_CERT)
				abort();
			if (tk_x509_spki(cert, cl, &spki, &sl, &kt, &kb) == TK_OK) {
				int kt2;
				unsigned kb2;

				if (tk_spki_info(spki, sl, &kt2, &kb2) != TK_OK || kt2 != kt ||
				    kb2 != kb)
					abort();
			}
			free(spki);
		}
		free(cert);
		break;
	}
	case 4: {
		piv_key_history_t kh;

		if (piv_parse_key_history(p, n, &kh) == TK_OK &&
		    kh.on_card + kh.off_card > PIV_NUM_RETIRED)
			abort();
		break;
	}
	case 5: {
		piv_metadata_t md;
		const uint8_t *sp, *att;
		size_t sl, al;

		if (piv_parse_metadata(p, n, &md) == TK_OK)
			piv_metadata_clear(&md);
		/* the same bytes as an attestation cache record */
		if (piv_parse_attest_record(p, n, &sp, &sl, &att, &al) == TK_OK &&
		    (sp < p || sl == 0 || sp + sl > p + n || 2 + sl + al != n))
			abort();
		break;
	}
	case 6: {
		uint8_t out[132];
		size_t ol = 0;

		for (size_t field = 32; field <= 48; field += 16)
			if (tk_ecdsa_der_to_raw(p, n, field, out, sizeof(out), &ol) == TK_OK &&
			    ol != 2 * field)
				abort();
		break;
	}
	default:
		whole_card(p, n);
		break;
	}
	return 0;
}
