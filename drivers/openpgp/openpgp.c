/* tokenkit OpenPGP card driver: probe, SELECT, the token model and the
 * public-object cache.
 *
 * What an open costs: SELECT and the application related data (6E) prove
 * the card's identity (its AID carries manufacturer and serial) and hold
 * algorithms, fingerprints and PIN state. Cold, each key with a
 * fingerprint or key information is read (GENERATE ASYMMETRIC KEY PAIR
 * P1=81, which changes nothing), the cardholder data once, and the
 * cardholder certificates (SELECT DATA for the DEC and SIG ones on 3.x
 * cards). Warm, a public key is taken from the cache while the card's
 * fingerprint, date and algorithm of that key are still the cached ones;
 * with TK_DRV_LOAD_TRUST_CACHE and an unchanged 6E nothing else is read. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "openpgp.h"

static const uint8_t pgp_aid[6] = {0xD2, 0x76, 0x00, 0x01, 0x24, 0x01};
static const uint8_t crt_tags[PGP_NKEYS] = {0xB6, 0xB8, 0xA4};

const tk_drv_host_t *pgp_host;

int
pgp_set_host(const tk_drv_host_t *host)
{
	/* every member we call is in API 1 */
	if (host == NULL || host->api < 1 || host->size < sizeof(tk_drv_host_t))
		return TK_ERR_NOT_SUPPORTED;
	pgp_host = host;
	return TK_OK;
}

void
pgp_log(int level, const char *fmt, ...)
{
	char msg[256];
	va_list ap;

	if (pgp_host == NULL || !pgp_host->log_enabled(level))
		return;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	pgp_host->log(level, msg);
}

/* ---- card I/O ------------------------------------------------------------ */

int
pgp_cmd(pgp_t *p, const tk_apdu_t *a, bool idempotent, uint8_t *resp, size_t cap, size_t *resp_len,
        uint16_t *sw)
{
	int r = pgp_host->card_apdu(p->card, a, resp, cap, resp_len, sw);

	if (r == TK_ERR_CARD_RESET) {
		p->selected = false;
		if (!idempotent)
			return r;
		if ((r = pgp_select(p)) != TK_OK)
			return r;
		r = pgp_host->card_apdu(p->card, a, resp, cap, resp_len, sw);
	}
	if (r != TK_OK)
		pgp_log(TK_LOG_DEBUG, "openpgp: %02X %02X: %s", a->ins, a->p1,
		        pgp_host->strerror(r));
	return r;
}

int
pgp_select(pgp_t *p)
{
	tk_apdu_t a = {0x00, 0xA4, 0x04, 0x00, pgp_aid, sizeof(pgp_aid), 0};
	uint8_t resp[256];
	size_t n = 0;
	uint16_t sw = 0;
	int r;

	p->selected = false;
	for (int attempt = 0; attempt < 2; attempt++) {
		uint64_t gen = pgp_host->card_generation(p->card);

		r = pgp_host->card_apdu(p->card, &a, resp, sizeof(resp), &n, &sw);
		if (r == TK_ERR_CARD_RESET)
			continue; /* SELECT changes nothing: send again */
		if (r != TK_OK)
			return r;
		if (sw == 0x6285) {
			pgp_log(TK_LOG_WARN, "openpgp: the application is terminated "
			                     "(factory reset half done): not used");
			return TK_ERR_NOT_SUPPORTED;
		}
		if (sw != 0x9000) {
			pgp_log(TK_LOG_DEBUG, "openpgp: SELECT: SW %04X", sw);
			return sw == 0x6A82 || sw == 0x6D00 || sw == 0x6E00 || sw == 0x6A86
			               ? TK_ERR_NOT_SUPPORTED
			               : pgp_host->err_from_sw(sw);
		}
		p->selected = true;
		p->sel_gen = gen;
		return TK_OK;
	}
	return TK_ERR_CARD_RESET;
}

static int
ensure_selected(pgp_t *p)
{
	if (p->selected && p->sel_gen == pgp_host->card_generation(p->card))
		return TK_OK;
	return pgp_select(p);
}

int
pgp_begin(pgp_t *p)
{
	int r = pgp_host->card_begin(p->card);

	if (r == TK_ERR_CARD_RESET) {
		p->selected = false;
		r = pgp_host->card_begin(p->card);
	}
	if (r != TK_OK)
		return r;
	if ((r = ensure_selected(p)) != TK_OK)
		(void)pgp_host->card_end(p->card);
	return r;
}

void
pgp_end(pgp_t *p)
{
	(void)pgp_host->card_end(p->card);
}

/* A read command whose whole answer we want, into a malloc'd buffer. */
static int
read_whole(pgp_t *p, const tk_apdu_t *a, uint8_t **data, size_t *len, bool *absent)
{
	uint8_t *buf;
	size_t n = 0;
	uint16_t sw = 0;
	int r;

	*data = NULL;
	*len = 0;
	*absent = false;
	if ((buf = malloc(PGP_MAX_OBJECT)) == NULL)
		return TK_ERR_NO_MEMORY;
	if ((r = pgp_cmd(p, a, true, buf, PGP_MAX_OBJECT, &n, &sw)) != TK_OK) {
		free(buf);
		return r;
	}
	if (sw == 0x6A88 || sw == 0x6A82 || sw == 0x6A80) {
		free(buf);
		*absent = true;
		return TK_OK;
	}
	if (sw != 0x9000) {
		free(buf);
		pgp_log(TK_LOG_DEBUG, "openpgp: %02X %02X%02X: SW %04X", a->ins, a->p1, a->p2, sw);
		r = pgp_host->err_from_sw(sw);
		return r != TK_OK ? r : TK_ERR_SW_UNKNOWN;
	}
	*data = buf;
	*len = n;
	return TK_OK;
}

int
pgp_get_data(pgp_t *p, uint16_t tag, uint8_t **data, size_t *len, bool *absent)
{
	tk_apdu_t a = {0x00, 0xCA, (uint8_t)(tag >> 8), (uint8_t)tag, NULL, 0, 65536};

	return read_whole(p, &a, data, len, absent);
}

/* 00 47 81 00 {CRT}: the public key of key k (*absent: no key there). */
static int
read_pubkey(pgp_t *p, int k, uint8_t **data, size_t *len, bool *absent)
{
	uint8_t crt[2] = {crt_tags[k], 0x00};
	tk_apdu_t a = {0x00, 0x47, 0x81, 0x00, crt, sizeof(crt), 65536};

	return read_whole(p, &a, data, len, absent);
}

/* SELECT DATA: the cardholder certificate of occurrence occ for the next
 * GET DATA 7F21 (3.x cards). */
static int
select_cert(pgp_t *p, uint8_t occ)
{
	static const uint8_t sel[] = {0x60, 0x04, 0x5C, 0x02, 0x7F, 0x21};
	tk_apdu_t a = {0x00, 0xA5, occ, 0x04, sel, sizeof(sel), 0};
	uint8_t resp[16];
	size_t n = 0;
	uint16_t sw = 0;
	int r;

	if ((r = pgp_cmd(p, &a, true, resp, sizeof(resp), &n, &sw)) != TK_OK)
		return r;
	return sw == 0x9000 ? TK_OK : TK_ERR_NOT_SUPPORTED;
}

/* ---- the model ---------------------------------------------------------------- */

static const char *
manufacturer_name(uint16_t m)
{
	switch (m) {
	case 0x0005:
		return "ZeitControl";
	case 0x0006:
		return "Yubico";
	case 0xF517:
		return "FSIJ";
	default:
		return (m & 0xFF00) == 0xFF00 ? "OpenPGP card (unmanaged)" : "OpenPGP card";
	}
}

static void
key_labels(int k, tk_drv_key_desc_t *d)
{
	static const char *const names[PGP_NKEYS] = {"signature", "decryption", "authentication"};

	snprintf(d->key_label, sizeof(d->key_label), "OpenPGP %s key", names[k]);
	snprintf(d->pub_label, sizeof(d->pub_label), "OpenPGP %s public key", names[k]);
	snprintf(d->cert_label, sizeof(d->cert_label), "Certificate for OpenPGP %s key", names[k]);
}

/* What the key of slot k does, as the card does it. */
static void
key_use(const pgp_ard_t *ard, int k, tk_drv_key_desc_t *d)
{
	int t = ard->algo[k].key_type;

	d->needs_login = true;
	if (k == PGP_KEY_DEC) {
		d->usage = t == TK_KEY_RSA ? TK_USAGE_DECRYPT : TK_USAGE_DERIVE;
		d->ops = t == TK_KEY_RSA ? TK_OP_BIT(TK_OP_RSA_PKCS1_DECRYPT)
		                         : TK_OP_BIT(TK_OP_ECDH);
		return;
	}
	d->usage = TK_USAGE_SIGN;
	d->ops = t == TK_KEY_RSA  ? TK_OP_BIT(TK_OP_RSA_PKCS1_SIGN)
	         : t == TK_KEY_EC ? TK_OP_BIT(TK_OP_ECDSA)
	                          : TK_OP_BIT(TK_OP_EDDSA);
	/* C4 byte 1 = 00: PW1 (81) is good for one signature only */
	d->always_authenticate = k == PGP_KEY_SIG && ard->has_pw_status && ard->pw_status[0] == 0;
}

static bool
all_zero(const uint8_t *p, size_t n)
{
	uint8_t acc = 0;

	for (size_t i = 0; i < n; i++)
		acc |= p[i];
	return acc == 0;
}

/* Is there a key in slot k? Key information (DE) says so on 3.3 and later
 * cards; older ones only have the fingerprint the host wrote. */
static bool
key_there(const pgp_ard_t *ard, int k)
{
	if (ard->has_key_info)
		return ard->key_info[k] != 0;
	return ard->has_fpr && !all_zero(ard->fpr[k], 20);
}

/* The public-key record: algorithm attributes id/bits, fingerprint, date,
 * then the template as the card gave it. Valid while the first three still
 * hold. */
#define PK_HDR (1 + 2 + 20 + 4)

static void
pk_hdr(const pgp_ard_t *ard, int k, uint8_t hdr[PK_HDR])
{
	hdr[0] = ard->algo[k].id;
	hdr[1] = (uint8_t)(ard->algo[k].bits >> 8);
	hdr[2] = (uint8_t)ard->algo[k].bits;
	memcpy(hdr + 3, ard->fpr[k], 20);
	memcpy(hdr + 23, ard->date[k], 4);
}

static int
load_pubkey(pgp_t *p, int k, const tk_cache_t *cached, bool trust, tk_cache_t *fresh,
            uint8_t **spki, size_t *spki_len)
{
	const tk_drv_host_t *h = pgp_host;
	uint8_t hdr[PK_HDR], *tmpl = NULL, *rec = NULL;
	const uint8_t *cd;
	size_t cl, tl = 0;
	bool absent = false;
	int r;

	*spki = NULL;
	*spki_len = 0;
	pk_hdr(&p->ard, k, hdr);
	/* without a fingerprint and date nothing tells a new key from the
	 * cached one: such a record is taken on trust only */
	if (h->cache_get(cached, PGP_REC_PUBKEY(k), &cd, &cl) == TK_OK && cl > PK_HDR &&
	    memcmp(cd, hdr, PK_HDR) == 0 && (trust || !all_zero(hdr + 3, 24))) {
		r = pgp_parse_pubkey(&p->ard.algo[k], cd + PK_HDR, cl - PK_HDR, spki, spki_len);
		if (r == TK_OK)
			return fresh != NULL ? h->cache_put(fresh, PGP_REC_PUBKEY(k), cd, cl)
			                     : TK_OK;
	}
	if ((r = read_pubkey(p, k, &tmpl, &tl, &absent)) != TK_OK || absent)
		goto out;
	if ((r = pgp_parse_pubkey(&p->ard.algo[k], tmpl, tl, spki, spki_len)) != TK_OK) {
		pgp_log(TK_LOG_WARN, "openpgp: public key %d: %s", k + 1, h->strerror(r));
		r = TK_OK; /* published without it */
		goto out;
	}
	if (fresh != NULL) {
		if ((rec = malloc(PK_HDR + tl)) == NULL) {
			r = TK_ERR_NO_MEMORY;
			goto out;
		}
		memcpy(rec, hdr, PK_HDR);
		memcpy(rec + PK_HDR, tmpl, tl);
		r = h->cache_put(fresh, PGP_REC_PUBKEY(k), rec, PK_HDR + tl);
	}
out:
	free(rec);
	free(tmpl);
	if (r != TK_OK) {
		free(*spki);
		*spki = NULL;
		*spki_len = 0;
	}
	return r;
}

/* An object from the cache (trust) or the card; the result goes to fresh.
 * read: how to read it. */
static int
get_record(pgp_t *p, uint32_t key, const tk_cache_t *cached, bool trust, tk_cache_t *fresh,
           int (*read)(pgp_t *, int, uint8_t **, size_t *, bool *), int arg, uint8_t **data,
           size_t *len)
{
	const tk_drv_host_t *h = pgp_host;
	const uint8_t *cd;
	size_t cl;
	bool absent = false;
	int r;

	*data = NULL;
	*len = 0;
	if (trust && h->cache_get(cached, key, &cd, &cl) == TK_OK) {
		if (cl > 0) {
			if ((*data = malloc(cl)) == NULL)
				return TK_ERR_NO_MEMORY;
			memcpy(*data, cd, cl);
			*len = cl;
		}
	} else if ((r = read(p, arg, data, len, &absent)) != TK_OK) {
		return r;
	}
	return fresh != NULL ? h->cache_put(fresh, key, *data, *len) : TK_OK;
}

static int
read_cardholder(pgp_t *p, int unused, uint8_t **data, size_t *len, bool *absent)
{
	(void)unused;
	return pgp_get_data(p, 0x65, data, len, absent);
}

/* Certificate occurrences: 0 AUT, 1 DEC, 2 SIG (3.x); older cards have
 * the AUT one only. */
static int
read_cert(pgp_t *p, int k, uint8_t **data, size_t *len, bool *absent)
{
	uint8_t occ = (uint8_t)(PGP_KEY_AUT - k);
	int r;

	*data = NULL;
	*len = 0;
	*absent = true;
	if (occ != 0 && p->ard.version < 0x0300)
		return TK_OK;
	if (occ != 0 && select_cert(p, occ) != TK_OK)
		return TK_OK; /* no SELECT DATA: no such certificate */
	r = pgp_get_data(p, 0x7F21, data, len, absent);
	if (occ != 0)
		(void)select_cert(p, 0); /* leave the card as others expect it */
	return r;
}

static int
load_key(pgp_t *p, int k, const tk_cache_t *cached, bool trust, tk_cache_t *fresh,
         tk_drv_model_t *m)
{
	const tk_drv_host_t *h = pgp_host;
	uint8_t *spki = NULL, *cert = NULL;
	size_t spki_len = 0, cert_len = 0;
	tk_drv_key_desc_t d;
	int r;

	if ((r = get_record(p, PGP_REC_CERT(k), cached, trust, fresh, read_cert, k, &cert,
	                    &cert_len)) != TK_OK)
		goto out;
	if (cert_len > PGP_MAX_CERT) {
		free(cert);
		cert = NULL;
		cert_len = 0;
	}
	memset(&d, 0, sizeof(d));
	d.size = sizeof(d);
	d.key_ref = (uint32_t)k + 1;
	d.id[0] = (uint8_t)(k + 1);
	d.id_len = 1;
	key_labels(k, &d);
	if (p->ard.has_algo[k] && key_there(&p->ard, k)) {
		if ((r = load_pubkey(p, k, cached, trust, fresh, &spki, &spki_len)) != TK_OK)
			goto out;
		d.key_present = true;
		d.key_type = p->ard.algo[k].key_type;
		d.key_bits = p->ard.algo[k].bits;
		d.spki = spki;
		d.spki_len = spki_len;
		key_use(&p->ard, k, &d);
	}
	if (cert_len > 0) {
		d.cert = cert;
		d.cert_len = cert_len;
	}
	if (!d.key_present && d.cert == NULL)
		goto out;
	r = h->model_add_key(m, &d);
	if (r != TK_OK && r != TK_ERR_NO_MEMORY && d.cert != NULL) {
		/* a certificate we cannot use must not hide the key */
		pgp_log(TK_LOG_WARN, "openpgp: certificate of key %d unusable: %s", k + 1,
		        h->strerror(r));
		d.cert = NULL;
		d.cert_len = 0;
		r = d.key_present ? h->model_add_key(m, &d) : TK_OK;
	}
out:
	free(spki);
	free(cert);
	return r;
}

static int
read_ard(pgp_t *p)
{
	uint8_t *raw = NULL;
	size_t len = 0;
	bool absent = false;
	pgp_ard_t ard;
	int r;

	if ((r = pgp_get_data(p, 0x6E, &raw, &len, &absent)) != TK_OK)
		return r;
	if (absent || (r = pgp_parse_ard(raw, len, &ard)) != TK_OK) {
		pgp_log(TK_LOG_DEBUG, "openpgp: application related data: %s",
		        absent ? "absent" : pgp_host->strerror(r));
		free(raw);
		return TK_ERR_NOT_SUPPORTED;
	}
	free(p->ard_raw);
	p->ard_raw = raw;
	p->ard_len = len;
	p->ard = ard;
	p->kdf_known = false; /* read again at the next PIN */
	return TK_OK;
}

static int
pgp_load(void *state, const tk_cache_t *cached, tk_cache_t *fresh, unsigned flags,
         tk_drv_model_t *m)
{
	const tk_drv_host_t *h = pgp_host;
	pgp_t *p = state;
	tk_drv_token_desc_t tok;
	uint8_t *ch = NULL;
	size_t ch_len = 0;
	const uint8_t *cd;
	size_t cl;
	bool trust = false;
	char name[40];
	int r;

	if ((r = pgp_begin(p)) != TK_OK)
		return r;
	/* probe read 6E for this card just now; a revalidation reads it again */
	if (!p->ard_fresh && (r = read_ard(p)) != TK_OK)
		goto out;
	p->ard_fresh = false;
	if ((flags & TK_DRV_LOAD_TRUST_CACHE) != 0) {
		trust = h->cache_get(cached, PGP_REC_ARD, &cd, &cl) == TK_OK && cl == p->ard_len &&
		        memcmp(cd, p->ard_raw, cl) == 0;
		if (!trust)
			pgp_log(TK_LOG_INFO, "openpgp: the card's data differ from the cached "
			                     "copy; checking every cached object");
	}
	if (fresh != NULL &&
	    (r = h->cache_put(fresh, PGP_REC_ARD, p->ard_raw, p->ard_len)) != TK_OK)
		goto out;
	if ((r = get_record(p, PGP_REC_CARDHOLDER, cached, trust, fresh, read_cardholder, 0, &ch,
	                    &ch_len)) != TK_OK)
		goto out;
	for (int k = 0; k < PGP_NKEYS; k++)
		if ((r = load_key(p, k, cached, trust, fresh, m)) != TK_OK)
			goto out;

	memset(&tok, 0, sizeof(tok));
	tok.size = sizeof(tok);
	snprintf(tok.serial, sizeof(tok.serial), "%08X", (unsigned)p->ard.serial);
	if (ch == NULL || pgp_parse_cardholder(ch, ch_len, name, sizeof(name)) != TK_OK)
		name[0] = '\0';
	if (name[0] != '\0')
		snprintf(tok.label, sizeof(tok.label), "OpenPGP %.24s", name);
	else
		snprintf(tok.label, sizeof(tok.label), "OpenPGP card %s", tok.serial);
	snprintf(tok.manufacturer, sizeof(tok.manufacturer), "%s",
	         manufacturer_name(p->ard.manufacturer));
	snprintf(tok.model, sizeof(tok.model), "OpenPGP %u.%u", (unsigned)(p->ard.version >> 8),
	         (unsigned)(p->ard.version & 0xFF));
	tok.pin_min_len = PGP_PW1_MIN;
	tok.pin_max_len = p->ard.has_pw_status && (p->ard.pw_status[1] & 0x7F) >= PGP_PW1_MIN
	                          ? p->ard.pw_status[1] & 0x7F
	                          : PGP_PW_MAX;
	r = h->model_set_token(m, &tok);
out:
	free(ch);
	pgp_end(p);
	return r;
}

static void
pgp_free(void *state)
{
	pgp_t *p = state;

	if (p == NULL)
		return;
	free(p->ard_raw);
	pgp_host->wipe(&p->kdf, sizeof(p->kdf));
	free(p);
}

/* SELECT, then the application related data: the AID in it (with
 * manufacturer and serial) is the card's identity, "openpgp:" + AID hex. */
static int
pgp_probe(tk_card_t *card, void **state, char *identity, size_t identity_cap)
{
	char hex[3 * 16 + 1];
	pgp_t *p;
	int r;

	*state = NULL;
	if (identity_cap > 0)
		identity[0] = '\0';
	if ((p = calloc(1, sizeof(*p))) == NULL)
		return TK_ERR_NO_MEMORY;
	p->card = card;
	if ((r = pgp_begin(p)) != TK_OK) {
		free(p);
		return r;
	}
	r = read_ard(p);
	p->ard_fresh = r == TK_OK;
	pgp_end(p);
	if (r != TK_OK) {
		pgp_free(p);
		return r;
	}
	pgp_host->hex_encode(p->ard.aid, sizeof(p->ard.aid), 0, hex);
	snprintf(identity, identity_cap, "openpgp:%s", hex);
	*state = p;
	return TK_OK;
}

const tk_driver_t pgp_driver = {
        .api = TK_DRIVER_API,
        .size = sizeof(tk_driver_t),
        .name = "openpgp",
        .probe = pgp_probe,
        .load = pgp_load,
        .pin_verify = pgp_pin_verify,
        .pin_status = pgp_pin_status,
        .pin_change = pgp_pin_change,
        .pin_unblock = pgp_pin_unblock,
        .key_op = pgp_key_op,
        .free = pgp_free,
};
