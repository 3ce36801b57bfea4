/* tokenkit PIV driver: probe, SELECT, data objects, cache revalidation and
 * the token model. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <tokenkit/apdu.h>
#include <tokenkit/buf.h>
#include <tokenkit/err.h>
#include <tokenkit/hex.h>
#include <tokenkit/log.h>
#include <tokenkit/mem.h>
#include <tokenkit/tlv.h>

#include "piv.h"
#include "x509.h"

static const uint8_t piv_aid[] = {0xA0, 0x00, 0x00, 0x03, 0x08, 0x00, 0x00, 0x10, 0x00, 0x01, 0x00};

/* ---- slots ---------------------------------------------------------------- */

static const uint8_t main_slots[4] = {0x9A, 0x9C, 0x9D, 0x9E};

uint8_t
piv_slot_ref(size_t index)
{
	if (index < 4)
		return main_slots[index];
	if (index < 4 + PIV_NUM_RETIRED)
		return (uint8_t)(0x82 + (index - 4));
	return 0;
}

uint32_t
piv_slot_cert_tag(uint8_t ref)
{
	switch (ref) {
	case 0x9A:
		return PIV_TAG_CERT_9A;
	case 0x9C:
		return PIV_TAG_CERT_9C;
	case 0x9D:
		return PIV_TAG_CERT_9D;
	case 0x9E:
		return PIV_TAG_CERT_9E;
	default:
		if (ref >= 0x82 && ref <= 0x95)
			return PIV_TAG_CERT_RETIRED1 + (uint32_t)(ref - 0x82);
		return 0;
	}
}

/* CKA_ID: 9A→01, 9C→02, 9D→03, 9E→04, 82..95→05..18 (the mapping OpenSC and
 * existing scripts use). */
static uint8_t
slot_id(uint8_t ref)
{
	switch (ref) {
	case 0x9A:
		return 1;
	case 0x9C:
		return 2;
	case 0x9D:
		return 3;
	case 0x9E:
		return 4;
	default:
		return (uint8_t)(5 + (ref - 0x82));
	}
}

static void
slot_labels(uint8_t ref, tk_drv_key_desc_t *s)
{
	const char *k, *c;

	switch (ref) {
	case 0x9A:
		k = "PIV AUTH";
		c = "PIV Authentication";
		break;
	case 0x9C:
		k = "SIGN";
		c = "Digital Signature";
		break;
	case 0x9D:
		k = "KEY MAN";
		c = "Key Management";
		break;
	case 0x9E:
		k = "CARD AUTH";
		c = "Card Authentication";
		break;
	default:
		snprintf(s->key_label, sizeof(s->key_label), "Retired KEY MAN %u",
		         (unsigned)(ref - 0x81));
		snprintf(s->pub_label, sizeof(s->pub_label), "Retired KEY MAN %u pubkey",
		         (unsigned)(ref - 0x81));
		snprintf(s->cert_label, sizeof(s->cert_label), "Certificate for Retired Key %u",
		         (unsigned)(ref - 0x81));
		return;
	}
	snprintf(s->key_label, sizeof(s->key_label), "%s key", k);
	snprintf(s->pub_label, sizeof(s->pub_label), "%s pubkey", k);
	snprintf(s->cert_label, sizeof(s->cert_label), "Certificate for %s", c);
}

/* ---- parsers -------------------------------------------------------------- */

int
piv_parse_apt(const uint8_t *p, size_t n, piv_apt_t *apt)
{
	tk_tlv_t t, e;
	tk_buf_t b;
	int r;

	memset(apt, 0, sizeof(*apt));
	if (n == 0)
		return TK_OK; /* a card may answer SELECT with no data */
	if ((r = tk_ber_find(p, n, 0x61, &t)) != TK_OK)
		return r == TK_ERR_NOT_FOUND ? TK_ERR_MALFORMED : r;
	tk_buf_init(&b, t.value, t.len);
	while ((r = tk_ber_get(&b, &e)) == TK_OK) {
		if (e.tag == 0x50) {
			size_t l = e.len < sizeof(apt->label) - 1 ? e.len : sizeof(apt->label) - 1;

			for (size_t i = 0; i < l; i++) {
				uint8_t ch = e.value[i];

				apt->label[i] = (ch >= 0x20 && ch < 0x7F) ? (char)ch : '?';
			}
			apt->label[l] = '\0';
		} else if (e.tag == 0xAC) {
			tk_buf_t ab;
			tk_tlv_t a;

			tk_buf_init(&ab, e.value, e.len);
			while ((r = tk_ber_get(&ab, &a)) == TK_OK) {
				if (a.tag == 0x80 && a.len == 1 && apt->nalgs < sizeof(apt->algs))
					apt->algs[apt->nalgs++] = a.value[0];
			}
			if (r != TK_ERR_NOT_FOUND)
				return r;
		}
	}
	return r == TK_ERR_NOT_FOUND ? TK_OK : r;
}

/* The value of the 53 container of a data object. */
static int
container(const uint8_t *p, size_t n, uint32_t tag, tk_tlv_t *t)
{
	int r = tk_ber_find(p, n, tag, t);

	return r == TK_ERR_NOT_FOUND ? TK_ERR_MALFORMED : r;
}

static bool
all_zero(const uint8_t *p, size_t n)
{
	uint8_t acc = 0;

	for (size_t i = 0; i < n; i++)
		acc |= p[i];
	return acc == 0;
}

int
piv_parse_chuid(const uint8_t *p, size_t n, piv_chuid_t *c)
{
	tk_tlv_t t, e;
	tk_buf_t b;
	int r;

	memset(c, 0, sizeof(*c));
	if ((r = container(p, n, 0x53, &t)) != TK_OK)
		return r;
	tk_buf_init(&b, t.value, t.len);
	while ((r = tk_ber_get(&b, &e)) == TK_OK) {
		switch (e.tag) {
		case 0x30:
			if (e.len == sizeof(c->fascn)) {
				memcpy(c->fascn, e.value, e.len);
				c->has_fascn = !all_zero(e.value, e.len);
			}
			break;
		case 0x34:
			if (e.len == sizeof(c->guid)) {
				memcpy(c->guid, e.value, e.len);
				c->has_guid = !all_zero(e.value, e.len);
			}
			break;
		case 0x35:
			if (e.len == 8) {
				bool digits = true;

				for (size_t i = 0; i < 8; i++)
					digits = digits && e.value[i] >= '0' && e.value[i] <= '9';
				if (digits) {
					memcpy(c->expiry, e.value, 8);
					c->expiry[8] = '\0';
					c->has_expiry = true;
				}
			}
			break;
		default:
			break;
		}
	}
	return r == TK_ERR_NOT_FOUND ? TK_OK : r;
}

int
piv_parse_discovery(const uint8_t *p, size_t n, piv_discovery_t *d)
{
	tk_tlv_t t, pol;
	int r;

	memset(d, 0, sizeof(*d));
	if ((r = container(p, n, PIV_TAG_DISCOVERY, &t)) != TK_OK)
		return r;
	d->present = true;
	r = tk_ber_find(t.value, t.len, 0x5F2F, &pol);
	if (r == TK_ERR_NOT_FOUND)
		return TK_OK;
	if (r != TK_OK)
		return r;
	if (pol.len != 2)
		return TK_ERR_MALFORMED;
	/* First byte: 0x40 PIV PIN satisfies access rules, 0x20 the global
	 * PIN does. Second byte: 0x10 PIV PIN primary, 0x20 global PIN primary. */
	d->global_pin_ok = (pol.value[0] & 0x20) != 0;
	d->global_pin_primary = d->global_pin_ok && pol.value[1] == 0x20;
	return TK_OK;
}

int
piv_parse_key_history(const uint8_t *p, size_t n, piv_key_history_t *kh)
{
	tk_tlv_t t, e;
	tk_buf_t b;
	int r;

	memset(kh, 0, sizeof(*kh));
	if ((r = container(p, n, 0x53, &t)) != TK_OK)
		return r;
	tk_buf_init(&b, t.value, t.len);
	while ((r = tk_ber_get(&b, &e)) == TK_OK) {
		if ((e.tag == 0xC1 || e.tag == 0xC2) && e.len == 1) {
			if (e.tag == 0xC1)
				kh->on_card = e.value[0];
			else
				kh->off_card = e.value[0];
		} else if (e.tag == 0xC1 || e.tag == 0xC2) {
			return TK_ERR_MALFORMED;
		}
	}
	if (r != TK_ERR_NOT_FOUND)
		return r;
	if (kh->on_card > PIV_NUM_RETIRED || kh->off_card > PIV_NUM_RETIRED ||
	    kh->on_card + kh->off_card > PIV_NUM_RETIRED)
		return TK_ERR_MALFORMED;
	kh->present = true;
	return TK_OK;
}

/* FASC-N: 40 characters of 5 bits (4 data bits least significant first, then
 * odd parity). Characters 1-4 agency code, 6-9 system code, 11-16 credential
 * number (0 is the start sentinel, 5 and 10 field separators). */
int
piv_fascn_digits(const uint8_t fascn[25], char out[15])
{
	static const unsigned pos[14] = {1, 2, 3, 4, 6, 7, 8, 9, 11, 12, 13, 14, 15, 16};

	out[0] = '\0';
	for (size_t i = 0; i < 14; i++) {
		unsigned bit = pos[i] * 5, v = 0, ones = 0;

		for (unsigned k = 0; k < 5; k++) {
			unsigned bi = bit + k;
			unsigned b = (fascn[bi / 8] >> (7 - bi % 8)) & 1u;

			ones += b;
			if (k < 4)
				v |= b << k;
		}
		if (v > 9 || (ones & 1u) == 0) {
			out[0] = '\0';
			return TK_ERR_MALFORMED;
		}
		out[i] = (char)('0' + v);
	}
	out[14] = '\0';
	return TK_OK;
}

/* ---- card I/O ------------------------------------------------------------- */

/* The card answered a PIV command as if another application were selected
 * (another program selected one between our transactions; with it went the
 * PIN state). Only for PIV's own instructions, which a PIV application
 * always knows: "instruction / class not supported"; for VERIFY and GENERAL
 * AUTHENTICATE, which name no file, also the file, parameter and reference
 * errors another application gives them. An error status means the command
 * did nothing, so it may be sent again once the applet is selected; where
 * PIV itself answered so, the second answer is the same and stands. */
static bool
other_application(const tk_apdu_t *a, uint16_t sw)
{
	switch (a->ins) {
	case 0x20: /* VERIFY */
	case 0x87: /* GENERAL AUTHENTICATE */
		if (sw == 0x6A82 || sw == 0x6A86 || sw == 0x6A88 || sw == 0x6B00)
			return true;
		break;
	case 0x24: /* CHANGE REFERENCE DATA */
	case 0x2C: /* RESET RETRY COUNTER */
	case 0xCB: /* GET DATA */
		break;
	default:
		return false;
	}
	return sw == 0x6D00 || sw == 0x6E00;
}

static int
card_apdu(piv_t *p, bool short_form, const tk_apdu_t *a, uint8_t *resp, size_t cap,
          size_t *resp_len, uint16_t *sw)
{
	if (short_form)
		return tk_card_apdu_short(p->card, a, resp, cap, resp_len, sw);
	return tk_card_apdu(p->card, a, resp, cap, resp_len, sw);
}

/* piv_cmd, in short APDUs when short_form. */
static int
exchange(piv_t *p, const tk_apdu_t *a, bool idempotent, bool short_form, uint8_t *resp, size_t cap,
         size_t *resp_len, uint16_t *sw)
{
	int r = card_apdu(p, short_form, a, resp, cap, resp_len, sw);

	if (r == TK_ERR_CARD_RESET) {
		p->selected = false;
		if (!idempotent)
			return r;
		if ((r = piv_ensure_selected(p)) != TK_OK)
			return r;
		r = card_apdu(p, short_form, a, resp, cap, resp_len, sw);
	} else if (r == TK_OK && other_application(a, *sw)) {
		tk_log_debug("piv: %02X: SW %04X: another application is selected; selecting PIV "
		             "again",
		             a->ins, *sw);
		r = piv_select(p);
		if (r == TK_ERR_NOT_SUPPORTED)
			return TK_OK; /* no PIV to select: the first answer stands */
		if (r != TK_OK)
			return r;
		r = card_apdu(p, short_form, a, resp, cap, resp_len, sw);
		if (r == TK_ERR_CARD_RESET)
			p->selected = false;
	}
	/* Every buffer given here holds the largest answer the command can
	 * have (GET DATA: PIV_MAX_OBJECT): a longer one is the card's fault
	 * (garbage), not the caller's buffer. */
	if (r == TK_ERR_BUFFER_TOO_SMALL)
		r = TK_ERR_MALFORMED;
	if (r != TK_OK)
		tk_log_debug("piv: %02X %02X: %s", a->ins, a->p1, tk_strerror(r));
	return r;
}

int
piv_cmd(piv_t *p, const tk_apdu_t *a, bool idempotent, uint8_t *resp, size_t cap, size_t *resp_len,
        uint16_t *sw)
{
	return exchange(p, a, idempotent, false, resp, cap, resp_len, sw);
}

int
piv_select(piv_t *p)
{
	tk_apdu_t a = {0x00, 0xA4, 0x04, 0x00, piv_aid, sizeof(piv_aid), 256};
	uint8_t resp[512];
	size_t n = 0;
	uint16_t sw = 0;
	int r;

	p->selected = false;
	for (int attempt = 0; attempt < 2; attempt++) {
		uint64_t gen = tk_card_generation(p->card);

		r = tk_card_apdu(p->card, &a, resp, sizeof(resp), &n, &sw);
		if (r == TK_ERR_CARD_RESET)
			continue; /* SELECT changes nothing on the card: send again */
		if (r != TK_OK)
			return r;
		if (sw != 0x9000) {
			tk_log_debug("piv: SELECT: SW %04X", sw);
			return sw == 0x6A82 || sw == 0x6D00 || sw == 0x6E00 ? TK_ERR_NOT_SUPPORTED
			                                                    : tk_err_from_sw(sw);
		}
		if ((r = piv_parse_apt(resp, n, &p->apt)) != TK_OK) {
			tk_log_debug("piv: application property template: %s", tk_strerror(r));
			return TK_ERR_NOT_SUPPORTED;
		}
		p->selected = true;
		p->sel_gen = gen;
		return TK_OK;
	}
	return TK_ERR_CARD_RESET;
}

int
piv_ensure_selected(piv_t *p)
{
	if (p->selected && p->sel_gen == tk_card_generation(p->card))
		return TK_OK;
	return piv_select(p);
}

int
piv_begin(piv_t *p)
{
	int r = tk_card_begin(p->card);

	/* Taking the transaction changed nothing on the card: again, a few
	 * times (another program may reset the card more than once while we
	 * wait for it). */
	for (int i = 0; i < PIV_BEGIN_TRIES && r == TK_ERR_CARD_RESET; i++) {
		p->selected = false;
		r = tk_card_begin(p->card);
	}
	if (r != TK_OK)
		return r;
	if ((r = piv_ensure_selected(p)) != TK_OK)
		(void)tk_card_end(p->card);
	return r;
}

void
piv_end(piv_t *p)
{
	(void)tk_card_end(p->card);
}

/* ---- short APDUs for cards that misreport extended length ------------------ */

/* Does this card's exchange use extended length now? */
static bool
extended_in_use(const piv_t *p)
{
	tk_card_caps_t caps;

	tk_card_caps(p->card, &caps);
	return caps.extended_apdu;
}

/* The card answered an extended APDU with nonsense and the same command in
 * short form correctly: short APDUs for this card from now on. */
static void
use_short(piv_t *p, uint16_t sw, const char *what)
{
	tk_card_use_short_apdus(p->card);
	p->short_apdus = true;
	p->ext_unproven = false;
	tk_log_warn("piv: %s: the card's ATR announces extended length, but it answered an "
	            "extended APDU with %s (SW %04X) and the short one correctly; using short "
	            "APDUs with chaining for this card",
	            tk_card_reader_name(p->card), what, sw);
}

/* GET DATA of a whole object in the card's APDU form (short_form: short
 * whatever the caps say). *sw is the card's answer; *data (malloc'd) holds
 * the object when it is 9000. */
static int
get_data(piv_t *p, uint32_t tag, bool short_form, uint8_t **data, size_t *len, uint16_t *sw)
{
	uint8_t cmd[5];
	tk_apdu_t a = {0x00, 0xCB, 0x3F, 0xFF, cmd, 0, 65536};
	tk_wbuf_t w;
	uint8_t *buf, *shrunk;
	size_t n = 0;
	int r;

	*data = NULL;
	*len = 0;
	*sw = 0;
	tk_wbuf_init(&w, cmd, sizeof(cmd));
	tk_wbuf_put_u8(&w, 0x5C);
	if (tag <= 0xFF) {
		tk_wbuf_put_u8(&w, 1);
		tk_wbuf_put_u8(&w, (uint8_t)tag);
	} else {
		tk_wbuf_put_u8(&w, 3);
		tk_wbuf_put_u8(&w, (uint8_t)(tag >> 16));
		tk_wbuf_put_u16be(&w, (uint16_t)tag);
	}
	a.lc = w.len;
	if ((buf = malloc(PIV_MAX_OBJECT)) == NULL)
		return TK_ERR_NO_MEMORY;
	r = exchange(p, &a, true, short_form, buf, PIV_MAX_OBJECT, &n, sw);
	if (r != TK_OK || *sw != 0x9000) {
		free(buf);
		return r;
	}
	/* Objects are kept (the CHUID for as long as the token lives): give
	 * back what the largest possible object needed. */
	shrunk = realloc(buf, n > 0 ? n : 1);
	*data = shrunk != NULL ? shrunk : buf;
	*len = n;
	return TK_OK;
}

static bool
sw_absent(uint16_t sw)
{
	/* absent, or not readable without a PIN: not a public object */
	return sw == 0x6A82 || sw == 0x6A80 || sw == 0x6982;
}

/* GET DATA of a whole object. *data is malloc'd (NULL with *absent when
 * the card does not have it). A wrong length (6700) for a GET DATA that
 * has no length to get wrong under extended length is asked again in
 * short form: a card that then answers is one that does not parse
 * extended APDUs although its ATR says it does (use_short). */
int
piv_read_object(piv_t *p, uint32_t tag, uint8_t **data, size_t *len, bool *absent)
{
	uint16_t sw = 0, sw2 = 0;
	int r;

	*absent = false;
	r = get_data(p, tag, false, data, len, &sw);
	if (r == TK_OK && sw == 0x6700 && extended_in_use(p)) {
		r = get_data(p, tag, true, data, len, &sw2);
		if (r == TK_OK && sw2 != 0x6700)
			use_short(p, sw, "wrong length");
		sw = sw2;
	}
	if (r != TK_OK)
		return r;
	if (sw_absent(sw)) {
		*absent = true;
		return TK_OK;
	}
	if (sw != 0x9000) {
		tk_log_debug("piv: GET DATA %06X: SW %04X", (unsigned)tag, sw);
		return tk_err_from_sw(sw);
	}
	return TK_OK;
}

/* Take a CHUID read at probe time (or again in short form). */
static void
set_chuid(piv_t *p, uint8_t *raw, size_t len, bool absent)
{
	free(p->chuid_raw);
	p->chuid_raw = raw;
	p->chuid_len = len;
	p->chuid_absent = absent;
	memset(&p->chuid, 0, sizeof(p->chuid));
	if (raw != NULL && piv_parse_chuid(raw, len, &p->chuid) != TK_OK) {
		tk_log_warn("piv: %s: malformed CHUID ignored", tk_card_reader_name(p->card));
		memset(&p->chuid, 0, sizeof(p->chuid));
	}
}

/* The CHUID in short form, after its extended read came back absent (6A82)
 * or malformed. A well-formed CHUID now means the card misread the
 * extended command: it is taken, and the card uses short APDUs. */
static int
chuid_short_check(piv_t *p, uint16_t ext_sw)
{
	piv_chuid_t c;
	uint8_t *raw = NULL;
	size_t len = 0;
	uint16_t sw = 0;
	int r;

	if ((r = get_data(p, PIV_TAG_CHUID, true, &raw, &len, &sw)) != TK_OK)
		return r;
	if (sw != 0x9000 || piv_parse_chuid(raw, len, &c) != TK_OK) {
		free(raw);
		return TK_OK; /* no better in short form: the extended answer stands */
	}
	use_short(p, ext_sw, ext_sw == 0x9000 ? "a malformed CHUID" : "\"no such object\"");
	set_chuid(p, raw, len, false);
	return TK_OK;
}

/* Before the objects are read, when the CHUID was absent under extended
 * length (ext_unproven): a card remembered as short-only (cache record)
 * switches and proves its identity with the CHUID in short form; a card
 * without a cache entry is asked in short form now (one APDU, cold opens
 * only). A card with a cache entry that does not say "short" was honest
 * before: its CHUID is absent indeed (a card whose every object came back
 * absent is asked after all, see piv_load). */
static int
settle_apdu_form(piv_t *p, const tk_cache_t *cached, bool *asked)
{
	const uint8_t *cd;
	uint8_t *raw = NULL;
	size_t cl, len = 0;
	uint16_t sw = 0;
	int r;

	*asked = false;
	if (!p->ext_unproven || p->short_apdus)
		return TK_OK;
	if (tk_cache_get(cached, PIV_REC_APDU, &cd, &cl) == TK_OK && cl == 1 &&
	    cd[0] == PIV_APDU_SHORT) {
		tk_card_use_short_apdus(p->card);
		p->short_apdus = true;
		p->ext_unproven = false;
		tk_log_info("piv: %s: short APDUs for this card (it does not parse extended "
		            "ones; remembered)",
		            tk_card_reader_name(p->card));
		if ((r = get_data(p, PIV_TAG_CHUID, false, &raw, &len, &sw)) != TK_OK)
			return r;
		if (sw != 0x9000 && !sw_absent(sw))
			return tk_err_from_sw(sw);
		set_chuid(p, raw, len, raw == NULL);
		return TK_OK;
	}
	if (cached != NULL)
		return TK_OK;
	*asked = true;
	return chuid_short_check(p, 0x6A82);
}

/* Cheap revalidation of a cached object: GET DATA with a short Le returns
 * the first PIV_PROBE_LE bytes and, when more follow, 61xx telling how many
 * (00: 256 or more). The cached copy must start with the same bytes and have
 * the announced length. One APDU and at most PIV_PROBE_LE bytes per object.
 * *same is false when the card's object differs (or we cannot tell). */
static int
probe_object(piv_t *p, uint32_t tag, const uint8_t *cached, size_t cached_len, bool *same)
{
	uint8_t cmd[16], resp[PIV_PROBE_LE + 2];
	tk_apdu_t a = {0x00, 0xCB, 0x3F, 0xFF, NULL, 0, PIV_PROBE_LE};
	uint8_t tl[5];
	tk_wbuf_t w;
	size_t cl = 0, n = 0, d;
	uint16_t sw;
	int r;

	*same = false;
	tk_wbuf_init(&w, tl, sizeof(tl));
	tk_wbuf_put_u8(&w, 0x5C);
	tk_wbuf_put_u8(&w, tag <= 0xFF ? 1 : 3);
	if (tag <= 0xFF) {
		tk_wbuf_put_u8(&w, (uint8_t)tag);
	} else {
		tk_wbuf_put_u8(&w, (uint8_t)(tag >> 16));
		tk_wbuf_put_u16be(&w, (uint16_t)tag);
	}
	a.data = tl;
	a.lc = w.len;
	if ((r = tk_apdu_encode(&a, false, cmd, sizeof(cmd), &cl)) != TK_OK)
		return r;
	r = tk_card_transmit(p->card, cmd, cl, resp, sizeof(resp), &n, 0);
	if (r == TK_ERR_CARD_RESET) {
		p->selected = false;
		if ((r = piv_ensure_selected(p)) != TK_OK)
			return r;
		r = tk_card_transmit(p->card, cmd, cl, resp, sizeof(resp), &n, 0);
	}
	if (r != TK_OK)
		return r;
	d = n - 2;
	sw = (uint16_t)(resp[d] << 8 | resp[d + 1]);
	if (sw == 0x6A82) {
		*same = cached_len == 0;
		return TK_OK;
	}
	if (cached_len == 0 || d == 0 || d > cached_len || memcmp(resp, cached, d) != 0)
		return TK_OK;
	if (sw == 0x9000) {
		*same = d == cached_len;
	} else if ((sw & 0xFF00) == 0x6100) {
		size_t rest = cached_len - d;

		*same = rest > 0 && (rest > 0xFF ? (sw & 0xFF) == 0 : (sw & 0xFF) == rest);
	}
	return TK_OK;
}

/* An object from the cache when the card still has it unchanged, else from
 * the card. The result goes to fresh in both cases. *changed says whether
 * the cached copy was not used. trust: take the cached copy without asking
 * the card (the caller revalidates later, off the critical path). */
static int
get_object(piv_t *p, uint32_t tag, const tk_cache_t *cached, bool trust, tk_cache_t *fresh,
           uint8_t **data, size_t *len, bool *absent, bool *changed)
{
	const uint8_t *cd;
	size_t cl;
	bool same = false;
	int r;

	*data = NULL;
	*len = 0;
	*absent = false;
	*changed = true;
	if (tk_cache_get(cached, tag, &cd, &cl) == TK_OK) {
		if (trust)
			same = true;
		else if ((r = probe_object(p, tag, cd, cl, &same)) != TK_OK)
			return r;
		if (same) {
			*changed = false;
			*absent = cl == 0;
			if (cl > 0) {
				if ((*data = malloc(cl)) == NULL)
					return TK_ERR_NO_MEMORY;
				memcpy(*data, cd, cl);
				*len = cl;
			}
		} else {
			tk_log_info(
			        "piv: cached object %06X no longer matches the card; re-reading",
			        (unsigned)tag);
		}
	}
	if (*changed && (r = piv_read_object(p, tag, data, len, absent)) != TK_OK)
		return r;
	if (fresh != NULL && (r = tk_cache_put(fresh, tag, *data, *len)) != TK_OK)
		return r;
	return TK_OK;
}

/* A Yubico command with no data (00 FD version, 00 F8 serial). */
static int
vendor_get(piv_t *p, uint8_t ins, uint8_t *out, size_t want, bool *ok)
{
	tk_apdu_t a = {0x00, ins, 0x00, 0x00, NULL, 0, 256};
	uint8_t resp[64];
	size_t n = 0;
	uint16_t sw = 0;
	int r;

	*ok = false;
	if ((r = piv_cmd(p, &a, true, resp, sizeof(resp), &n, &sw)) != TK_OK)
		return r;
	if (sw == 0x9000 && n == want) {
		memcpy(out, resp, want);
		*ok = true;
	}
	return TK_OK;
}

/* The answer to 00 F8: a Yubico card and its serial, or neither. */
static void
set_serial(piv_t *p, bool ok, const uint8_t sbuf[4])
{
	p->vendor_known = 1;
	p->yubico = ok;
	p->has_serial = ok;
	if (ok)
		p->serial = (uint32_t)sbuf[0] << 24 | (uint32_t)sbuf[1] << 16 |
		            (uint32_t)sbuf[2] << 8 | sbuf[3];
}

/* Serial (Yubico), from the cache or the card. Record layout: flags (1:
 * yubico, 2: serial, 4: metadata known, 8: metadata supported), version[3]
 * (kept zero: we no longer ask for it), serial u32. The version command
 * (00 FD) is not sent: whether the card has the metadata command is learnt
 * from its first answer to it (6D00), which costs nothing extra. The
 * serial (00 F8) is asked once per card (then cached) because it is the
 * serial printed on the token and the one users know it by. */
static int
load_vendor(piv_t *p, const tk_cache_t *cached)
{
	uint8_t sbuf[4];
	const uint8_t *cd;
	size_t cl;
	bool ok;
	int r;

	if (tk_cache_get(cached, PIV_REC_VENDOR, &cd, &cl) == TK_OK && cl == 8) {
		tk_buf_t b;
		uint8_t flags;

		tk_buf_init(&b, cd, cl);
		(void)tk_buf_get_u8(&b, &flags);
		(void)tk_buf_get_bytes(&b, p->version, 3);
		(void)tk_buf_get_u32be(&b, &p->serial);
		p->yubico = flags & 1;
		p->has_serial = flags & 2;
		if (flags & 4)
			p->meta_supported = (flags & 8) ? 1 : 0;
		p->vendor_known = 1;
	} else if (p->vendor_known != 1) {
		if ((r = vendor_get(p, 0xF8, sbuf, 4, &ok)) != TK_OK)
			return r;
		set_serial(p, ok, sbuf);
	}
	return TK_OK;
}

/* Stored after the slots were read: by then the card has told whether it
 * has the metadata command. */
static int
store_vendor(const piv_t *p, tk_cache_t *fresh)
{
	uint8_t rec[8];
	tk_wbuf_t w;

	if (fresh == NULL)
		return TK_OK;
	tk_wbuf_init(&w, rec, sizeof(rec));
	tk_wbuf_put_u8(&w, (uint8_t)((p->yubico ? 1 : 0) | (p->has_serial ? 2 : 0) |
	                             (p->meta_supported >= 0 ? 4 : 0) |
	                             (p->meta_supported == 1 ? 8 : 0)));
	tk_wbuf_put_bytes(&w, p->version, 3);
	tk_wbuf_put_u32be(&w, p->serial);
	return tk_cache_put(fresh, PIV_REC_VENDOR, rec, w.len);
}

/* Yubico metadata of a key slot (00 F7 00 ref). 6D00 means the card has no
 * metadata command at all (remembered); 6A82 means this slot holds no key.
 * *found is false when the card gave no answer we could use. */
static int
query_metadata(piv_t *p, uint8_t ref, piv_metadata_t *md, bool *found, bool *no_key)
{
	tk_apdu_t a = {0x00, 0xF7, 0x00, ref, NULL, 0, 65536}; /* RSA moduli pass 256 */
	uint8_t resp[1024];
	size_t n = 0;
	uint16_t sw = 0;
	int r;

	memset(md, 0, sizeof(*md));
	*found = false;
	*no_key = false;
	if (p->meta_supported == 0)
		return TK_OK;
	if ((r = piv_cmd(p, &a, true, resp, sizeof(resp), &n, &sw)) != TK_OK)
		return r;
	if (sw == 0x6D00 || sw == 0x6E00) {
		p->meta_supported = 0;
		return TK_OK;
	}
	if (sw == 0x6A82 || sw == 0x6A88) {
		p->meta_supported = 1;
		*no_key = true;
		return TK_OK;
	}
	if (sw != 0x9000)
		return TK_OK;
	p->meta_supported = 1;
	if ((r = piv_parse_metadata(resp, n, md)) != TK_OK) {
		tk_log_debug("piv: metadata of %02X: %s", ref, tk_strerror(r));
		piv_metadata_clear(md);
		return TK_OK;
	}
	*found = true;
	return TK_OK;
}

/* Cache record of a slot's metadata: empty = no key; else alg, pin policy,
 * SPKI (possibly empty). Only public data. */
static int
meta_to_record(tk_cache_t *fresh, uint8_t ref, const piv_metadata_t *md, bool no_key)
{
	uint8_t *rec;
	size_t n;
	int r;

	if (fresh == NULL)
		return TK_OK;
	if (no_key)
		return tk_cache_put(fresh, PIV_REC_META(ref), NULL, 0);
	n = 2 + md->spki_len;
	if ((rec = malloc(n)) == NULL)
		return TK_ERR_NO_MEMORY;
	rec[0] = md->alg;
	rec[1] = md->pin_policy;
	if (md->spki_len > 0)
		memcpy(rec + 2, md->spki, md->spki_len);
	r = tk_cache_put(fresh, PIV_REC_META(ref), rec, n);
	free(rec);
	return r;
}

static int
meta_from_record(const uint8_t *rec, size_t n, piv_metadata_t *md, bool *no_key)
{
	memset(md, 0, sizeof(*md));
	*no_key = n == 0;
	if (n == 0)
		return TK_OK;
	if (n < 2)
		return TK_ERR_MALFORMED;
	md->alg = rec[0];
	md->has_alg = rec[0] != 0;
	md->pin_policy = rec[1];
	md->has_policy = true;
	if (n > 2) {
		if ((md->spki = malloc(n - 2)) == NULL)
			return TK_ERR_NO_MEMORY;
		memcpy(md->spki, rec + 2, n - 2);
		md->spki_len = n - 2;
	}
	return TK_OK;
}

/* ---- the model -------------------------------------------------------------- */

static void
default_policy(uint8_t ref, tk_drv_key_desc_t *s)
{
	/* SP 800-73-4: card authentication needs no PIN; digital signature
	 * needs it right before each use; the others once per session. */
	s->needs_login = ref != 0x9E;
	s->always_authenticate = ref == 0x9C;
}

static unsigned
slot_usage(uint8_t ref, int key_type)
{
	if (key_type != TK_KEY_RSA && key_type != TK_KEY_EC && key_type != TK_KEY_NONE)
		return 0; /* no PIV algorithm: published, never used */
	switch (ref) {
	case 0x9A:
		return TK_USAGE_SIGN | (key_type == TK_KEY_RSA ? TK_USAGE_DECRYPT : 0);
	case 0x9C:
		return TK_USAGE_SIGN;
	case 0x9E:
		return TK_USAGE_SIGN;
	default: /* 9D and retired key management keys */
		return key_type == TK_KEY_EC ? TK_USAGE_DERIVE : TK_USAGE_DECRYPT;
	}
}

/* The key type of a certificate's key (TK_KEY_NONE when unusable). */
static int
cert_key_type(const uint8_t *cert, size_t cert_len)
{
	uint8_t *spki = NULL;
	size_t spki_len = 0;
	unsigned bits;
	int type = TK_KEY_NONE;

	if (cert != NULL && tk_x509_spki(cert, cert_len, &spki, &spki_len, &type, &bits) != TK_OK)
		type = TK_KEY_NONE;
	free(spki);
	return type;
}

/* One key slot: its certificate object (when read_cert; a retired key
 * whose certificate is off the card has none to read) and, on cards that
 * have it, the metadata of its key (Yubico 00 F7): the key's own public key
 * (pairing by SPKI must not trust a certificate that names another key) and
 * its PIN policy. Metadata is public and cached with the certificate it was
 * asked with; a changed certificate object means it is asked again. */
static int
load_slot(piv_t *p, uint8_t ref, bool read_cert, const tk_cache_t *cached, bool trust,
          tk_cache_t *fresh, tk_drv_model_t *m)
{
	uint8_t *obj = NULL, *cert = NULL;
	size_t obj_len = 0, cert_len = 0;
	bool absent = true, changed = true, found = false, no_key = false;
	piv_metadata_t md;
	const uint8_t *rec;
	size_t rec_len;
	tk_drv_key_desc_t d;
	int r;

	memset(&md, 0, sizeof(md));
	if (!read_cert) {
		/* nothing on the card says whether this metadata went stale */
		changed = !trust;
	} else {
		r = get_object(p, piv_slot_cert_tag(ref), cached, trust, fresh, &obj, &obj_len,
		               &absent, &changed);
		if (r != TK_OK)
			goto out;
		if (!absent &&
		    (r = piv_parse_cert_object(obj, obj_len, &cert, &cert_len)) != TK_OK) {
			tk_log_warn("piv: certificate object of slot %02X: %s", ref,
			            tk_strerror(r));
			cert = NULL;
		}
	}
	/* Metadata from the cache only while the slot's certificate object is
	 * unchanged; a re-issued slot is asked again. */
	if (!changed && tk_cache_get(cached, PIV_REC_META(ref), &rec, &rec_len) == TK_OK) {
		if ((r = meta_from_record(rec, rec_len, &md, &no_key)) != TK_OK)
			goto out;
		found = !no_key;
	} else if ((r = query_metadata(p, ref, &md, &found, &no_key)) != TK_OK) {
		goto out;
	}
	if ((found || no_key) && (r = meta_to_record(fresh, ref, &md, no_key)) != TK_OK)
		goto out;
	if (cert == NULL && !found)
		goto out; /* nothing in this slot that we can publish */

	memset(&d, 0, sizeof(d));
	d.size = sizeof(d);
	d.key_ref = ref;
	d.id[0] = slot_id(ref);
	d.id_len = 1;
	slot_labels(ref, &d);
	default_policy(ref, &d);
	if (cert != NULL) {
		d.cert = cert;
		d.cert_len = cert_len;
	}
	if (found) {
		d.key_present = true;
		if (md.has_alg)
			(void)piv_alg_info(md.alg, &d.key_type, &d.key_bits);
		d.spki = md.spki;
		d.spki_len = md.spki_len;
		if (md.has_policy && md.pin_policy != PIV_PIN_POLICY_DEFAULT) {
			d.needs_login = md.pin_policy != PIV_PIN_POLICY_NEVER;
			d.always_authenticate = md.pin_policy == PIV_PIN_POLICY_ALWAYS;
		}
	} else if (!no_key && cert != NULL) {
		/* No metadata: the certificate is all we know of the key (the
		 * model takes its type from there). */
		d.key_present = true;
	}
	d.usage = slot_usage(ref, d.key_type != TK_KEY_NONE ? d.key_type
	                                                    : cert_key_type(cert, cert_len));
	r = tk_drv_model_add_key(m, &d);
	if ((r == TK_ERR_MALFORMED || r == TK_ERR_NOT_SUPPORTED) && d.cert != NULL) {
		/* a certificate we cannot use must not hide the key */
		tk_log_warn("piv: certificate of slot %02X unusable; published without it", ref);
		d.cert = NULL;
		d.cert_len = 0;
		if (!d.key_present) {
			r = TK_OK;
			goto out;
		}
		r = tk_drv_model_add_key(m, &d);
	}
	if (r != TK_OK)
		goto out;
	/* the key's attestation, for the public key the model pairs by */
	if (d.key_present && found && md.spki != NULL) {
		r = piv_attest_slot(p, ref, md.spki, md.spki_len, cached, fresh, m);
	} else if (d.key_present && d.cert != NULL) {
		uint8_t *cs = NULL;
		size_t csl = 0;
		unsigned kb;
		int kt;

		if (tk_x509_spki(d.cert, d.cert_len, &cs, &csl, &kt, &kb) == TK_OK)
			r = piv_attest_slot(p, ref, cs, csl, cached, fresh, m);
		free(cs);
	}
out:
	piv_metadata_clear(&md);
	free(obj);
	free(cert);
	return r;
}

/* Copy with truncation. */
static void
set_str(char *dst, size_t cap, const char *src)
{
	size_t l = strlen(src);

	if (cap == 0)
		return;
	if (l >= cap)
		l = cap - 1;
	memcpy(dst, src, l);
	dst[l] = '\0';
}

/* Is the cached CHUID the one the card gave at probe time? The GUID chose
 * the cache entry; a CHUID that differs otherwise (re-personalised card,
 * new expiry) means nothing in the entry is taken on trust. */
static bool
chuid_matches(const piv_t *p, const tk_cache_t *cached)
{
	const uint8_t *cd;
	size_t cl;

	if (p->chuid_absent) /* identity from the Yubico serial: no CHUID either way */
		return tk_cache_get(cached, PIV_TAG_CHUID, &cd, &cl) == TK_ERR_NOT_FOUND;
	if (tk_cache_get(cached, PIV_TAG_CHUID, &cd, &cl) != TK_OK)
		return false;
	return cl == p->chuid_len && memcmp(cd, p->chuid_raw, cl) == 0;
}

/* SP 800-73-4 part 1, 3.3.2: the key history object tells how many retired
 * keys there are (keysWithOnCardCerts, then keysWithOffCardCerts, in the
 * first retired slots); without it the card has none, so none of the 20
 * retired slots is looked at. */
static int
load_model(piv_t *p, const tk_cache_t *cached, tk_cache_t *fresh, unsigned flags, tk_drv_model_t *m)
{
	uint8_t *obj = NULL;
	size_t len = 0, nretired = 0, ncerts = 0;
	bool absent, changed, trust = false;
	piv_key_history_t kh;
	tk_drv_token_desc_t tok;
	char hex[64];
	int r;

	if (cached != NULL && (flags & TK_DRV_LOAD_TRUST_CACHE) != 0) {
		trust = chuid_matches(p, cached);
		if (!trust)
			tk_log_info("piv: the card's CHUID differs from the cached one; "
			            "checking every cached object");
	}
	if (fresh != NULL && !p->chuid_absent &&
	    (r = tk_cache_put(fresh, PIV_TAG_CHUID, p->chuid_raw, p->chuid_len)) != TK_OK)
		goto out;
	if ((r = load_vendor(p, cached)) != TK_OK)
		goto out;

	/* The discovery object is fixed at personalisation: from the cache
	 * when we have it, without a probe. */
	{
		const uint8_t *cd;
		size_t cl;

		if (tk_cache_get(cached, PIV_TAG_DISCOVERY, &cd, &cl) == TK_OK) {
			if (cl > 0 && (obj = malloc(cl)) != NULL) {
				memcpy(obj, cd, cl);
				len = cl;
			}
			absent = cl == 0;
			if (fresh != NULL &&
			    (r = tk_cache_put(fresh, PIV_TAG_DISCOVERY, cd, cl)) != TK_OK)
				goto out;
		} else if ((r = get_object(p, PIV_TAG_DISCOVERY, NULL, false, fresh, &obj, &len,
		                           &absent, &changed)) != TK_OK) {
			goto out;
		}
	}
	if (obj != NULL && piv_parse_discovery(obj, len, &p->disc) != TK_OK)
		memset(&p->disc, 0, sizeof(p->disc));
	free(obj);
	obj = NULL;

	r = get_object(p, PIV_TAG_KEY_HISTORY, cached, trust, fresh, &obj, &len, &absent, &changed);
	if (r != TK_OK)
		goto out;
	if (obj != NULL && piv_parse_key_history(obj, len, &kh) == TK_OK) {
		nretired = kh.on_card + kh.off_card;
		ncerts = kh.on_card;
	}
	free(obj);
	obj = NULL;

	p->att_asked = false;
	p->att_published = 0;
	p->att_defer = (flags & TK_DRV_LOAD_DEFER_COSTLY) != 0;
	for (size_t i = 0; i < 4 + nretired; i++) {
		r = load_slot(p, piv_slot_ref(i), i < 4 || (i - 4) < ncerts, cached, trust, fresh,
		              m);
		if (r != TK_OK)
			goto out;
	}
	if ((r = piv_attest_device(p, cached, fresh, m)) != TK_OK)
		goto out;

	if ((r = store_vendor(p, fresh)) != TK_OK)
		goto out;

	/* Identity strings for the token. */
	memset(&tok, 0, sizeof(tok));
	tok.size = sizeof(tok);
	if (p->has_serial) {
		snprintf(tok.serial, sizeof(tok.serial), "%u", (unsigned)p->serial);
	} else if (p->chuid.has_guid) {
		tk_hex_encode(p->chuid.guid, 8, 0, hex);
		set_str(tok.serial, sizeof(tok.serial), hex);
	} else if (p->chuid.has_fascn && piv_fascn_digits(p->chuid.fascn, hex) == TK_OK) {
		set_str(tok.serial, sizeof(tok.serial), hex);
	}
	snprintf(tok.label, sizeof(tok.label), "PIV %s", tok.serial[0] ? tok.serial : "card");
	set_str(tok.manufacturer, sizeof(tok.manufacturer), p->yubico ? "Yubico" : "PIV");
	set_str(tok.model, sizeof(tok.model), p->apt.label[0] ? p->apt.label : "PIV");
	tok.pin_min_len = PIV_PIN_MIN;
	tok.pin_max_len = PIV_PIN_MAX;
	r = tk_drv_model_set_token(m, &tok);
out:
	free(obj);
	return r;
}

static int
piv_load(void *state, const tk_cache_t *cached, tk_cache_t *fresh, unsigned flags,
         tk_drv_model_t *m)
{
	static const uint8_t short_rec[1] = {PIV_APDU_SHORT};
	piv_t *p = state;
	const char *reader = tk_card_reader_name(p->card);
	bool asked = false;
	int r;

	if ((r = piv_begin(p)) != TK_OK)
		return r;
	if ((r = settle_apdu_form(p, cached, &asked)) != TK_OK)
		goto out;
	r = load_model(p, cached, fresh, flags, m);
	if (r == TK_OK && m->nslots == 0 && p->ext_unproven && !asked) {
		/* Nothing at all under extended length, not even the CHUID: a
		 * misreading card whose cache entry predates the check. */
		if ((r = chuid_short_check(p, 0x6A82)) != TK_OK)
			goto out;
		if (p->short_apdus) {
			tk_drv_model_clear(m);
			p->meta_supported = -1;
			r = load_model(p, NULL, fresh, 0, m);
		}
	}
	if (r != TK_OK)
		goto out;
	if (fresh != NULL && p->short_apdus &&
	    (r = tk_cache_put(fresh, PIV_REC_APDU, short_rec, sizeof(short_rec))) != TK_OK)
		goto out;
	/* Never an empty or nameless token without a word (SP 800-73-4: the
	 * CHUID is mandatory). */
	if (p->chuid_absent)
		tk_log_warn("piv: %s: the card has no CHUID (mandatory in PIV)%s", reader,
		            m->serial[0] != '\0' ? "" : " and no serial");
	if (m->nslots == 0)
		tk_log_warn("piv: %s: no certificate or key could be read: the token is empty",
		            reader);
out:
	piv_end(p);
	return r;
}

static void
piv_free(void *state)
{
	piv_t *p = state;

	if (p == NULL)
		return;
	free(p->chuid_raw);
	free(p);
}

/* SELECT, then the CHUID for the card's identity: "piv:" + GUID hex, else
 * "piv:yk:" + the Yubico serial, else "piv:fascn:" + FASC-N hex. */
static int
piv_probe(tk_card_t *card, void **state, char *identity, size_t identity_cap)
{
	piv_t *p;
	uint8_t sbuf[4], *raw = NULL;
	size_t len = 0;
	char hex[64];
	bool ok, absent = false;
	int r;

	*state = NULL;
	if (identity_cap > 0)
		identity[0] = '\0';
	if ((p = calloc(1, sizeof(*p))) == NULL)
		return TK_ERR_NO_MEMORY;
	p->card = card;
	p->meta_supported = -1;
	p->vendor_known = -1;
	if ((r = piv_begin(p)) != TK_OK) {
		free(p);
		return r;
	}
	if ((r = piv_read_object(p, PIV_TAG_CHUID, &raw, &len, &absent)) != TK_OK)
		goto fail;
	if (raw != NULL && extended_in_use(p) && piv_parse_chuid(raw, len, &p->chuid) != TK_OK) {
		/* a malformed answer under extended length: the short form? */
		if ((r = chuid_short_check(p, 0x9000)) != TK_OK) {
			free(raw);
			goto fail;
		}
		if (p->short_apdus)
			free(raw);
		else
			set_chuid(p, raw, len, false);
	} else {
		set_chuid(p, raw, len, absent);
		/* none under extended length: none, or a misread command */
		p->ext_unproven = absent && extended_in_use(p);
	}
	if (p->chuid.has_guid) {
		tk_hex_encode(p->chuid.guid, 16, 0, hex);
		snprintf(identity, identity_cap, "piv:%s", hex);
	} else {
		if ((r = vendor_get(p, 0xF8, sbuf, 4, &ok)) != TK_OK)
			goto fail;
		set_serial(p, ok, sbuf); /* not asked again by load */
		if (ok) {
			snprintf(identity, identity_cap, "piv:yk:%u", (unsigned)p->serial);
		} else if (p->chuid.has_fascn) {
			char fh[51];

			tk_hex_encode(p->chuid.fascn, 25, 0, fh);
			snprintf(identity, identity_cap, "piv:fascn:%s", fh);
		}
	}
	piv_end(p);
	*state = p;
	return TK_OK;
fail:
	piv_end(p);
	piv_free(p);
	return r;
}

const tk_driver_t tk_piv_driver = {
        .api = TK_DRIVER_API,
        .size = sizeof(tk_driver_t),
        .name = "piv",
        .probe = piv_probe,
        .load = piv_load,
        .pin_verify = piv_pin_verify,
        .pin_status = piv_pin_status,
        .pin_change = piv_pin_change,
        .pin_unblock = piv_pin_unblock,
        .key_op = piv_key_op,
        .free = piv_free,
        .pin_verify_pad = piv_pin_verify_pad,
        .pin_change_pad = piv_pin_change_pad,
};
