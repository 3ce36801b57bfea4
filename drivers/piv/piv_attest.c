/* tokenkit PIV driver: attestation certificates as token objects (Yubico's
 * ATTEST, 00 F9 slot 00, and the device's attestation certificate, object
 * 5FFF01).
 *
 * An attestation certificate carries the attested key's SPKI, so it is
 * described TK_DRV_CERT_UNPAIRED under an id of its own (F9 + slot; the
 * device certificate F9): pairing it with the slot's key would make it that
 * key's certificate, and PKCS#11 clients (which pair by CKA_ID) and
 * browsers would offer it as a client certificate.
 *
 * When they are read. Each ATTEST costs the card a signature (tens to
 * hundreds of milliseconds), so an attestation is asked once per key and
 * kept in the public-object cache with the SPKI of the key it was asked
 * for; the record holds as long as the slot's key (metadata, else its
 * certificate) is that key, with or without TK_DRV_LOAD_TRUST_CACHE, and is
 * compared in memory: a warm open sends nothing for it. A new key in the
 * slot is asked again; a refusal (an imported key: 6A80; no attestation
 * key: 6A88; no ATTEST: 6D00) is remembered the same way, so a card that
 * cannot attest pays once per key too. With TK_DRV_LOAD_DEFER_COSTLY (the
 * PKCS#11 module's opens) a key without a valid record is not asked: the
 * revalidation that follows the open asks, and its attestation appears
 * then, so the module's start-up never waits for the card's signatures
 * (measured with the YubiKey 5 profile: two cards with 2 and 4 generated
 * keys took 560 ms to the certificate list instead of 60, and the second
 * card's token missed the list: a 200 ms exchange counts as a stall
 * there). A lazy read (on first access) was not possible: whether the
 * object exists at all depends on the answer.
 * The device certificate, published with the attestations it issued, is
 * read again whenever a load asked for an attestation (it must be the one
 * that signed it), else taken from the cache.
 * Cards that are not Yubico's (no answer to 00 F8) are not asked. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <tokenkit/apdu.h>
#include <tokenkit/buf.h>
#include <tokenkit/err.h>
#include <tokenkit/log.h>

#include "piv.h"
#include "x509.h"

/* Largest attestation we take: an RSA-4096 key attested by an RSA-4096
 * attestation key is about 1.3 KB. */
#define ATT_MAX 8192

int
piv_parse_attest_record(const uint8_t *rec, size_t n, const uint8_t **spki, size_t *spki_len,
                        const uint8_t **att, size_t *att_len)
{
	tk_buf_t b;
	uint16_t sl;
	int r;

	*spki = *att = NULL;
	*spki_len = *att_len = 0;
	tk_buf_init(&b, rec, n);
	if ((r = tk_buf_get_u16be(&b, &sl)) != TK_OK || sl == 0 ||
	    (r = tk_buf_get_ptr(&b, spki, sl)) != TK_OK) {
		*spki = NULL;
		return r != TK_OK ? r : TK_ERR_MALFORMED;
	}
	*spki_len = sl;
	*att_len = tk_buf_left(&b);
	if (*att_len > 0 && tk_buf_get_ptr(&b, att, *att_len) != TK_OK)
		return TK_ERR_MALFORMED;
	return TK_OK;
}

static int
put_record(tk_cache_t *fresh, uint8_t ref, const uint8_t *spki, size_t spki_len, const uint8_t *att,
           size_t att_len)
{
	uint8_t *rec;
	size_t n = 2 + spki_len + att_len;
	int r;

	if (fresh == NULL)
		return TK_OK;
	if (spki_len > 0xFFFF)
		return TK_ERR_TOO_LONG;
	if ((rec = malloc(n)) == NULL)
		return TK_ERR_NO_MEMORY;
	rec[0] = (uint8_t)(spki_len >> 8);
	rec[1] = (uint8_t)spki_len;
	memcpy(rec + 2, spki, spki_len);
	if (att_len > 0)
		memcpy(rec + 2 + spki_len, att, att_len);
	r = tk_cache_put(fresh, PIV_REC_ATTEST(ref), rec, n);
	free(rec);
	return r;
}

/* ATTEST for slot ref: *att (malloc'd) on 9000, NULL when the card refused
 * (any other status word: nothing to publish). */
static int
ask_card(piv_t *p, uint8_t ref, uint8_t **att, size_t *att_len)
{
	tk_apdu_t a = {0x00, 0xF9, ref, 0x00, NULL, 0, 65536};
	uint8_t *buf;
	size_t n = 0;
	uint16_t sw = 0;
	int r;

	*att = NULL;
	*att_len = 0;
	if ((buf = malloc(ATT_MAX)) == NULL)
		return TK_ERR_NO_MEMORY;
	/* idempotent: a new attestation of the same key changes nothing */
	r = piv_cmd(p, &a, true, buf, ATT_MAX, &n, &sw);
	p->att_asked = true;
	if (r != TK_OK || sw != 0x9000 || n == 0) {
		if (r == TK_OK)
			tk_log_debug("piv: ATTEST %02X: SW %04X: no attestation", ref, sw);
		free(buf);
		return r;
	}
	*att = buf;
	*att_len = n;
	return TK_OK;
}

static void
describe(tk_drv_key_desc_t *d, uint32_t key_ref, const uint8_t *id, size_t id_len,
         const char *label, const uint8_t *cert, size_t cert_len)
{
	memset(d, 0, sizeof(*d));
	d->size = sizeof(*d);
	d->key_ref = key_ref;
	memcpy(d->id, id, id_len);
	d->id_len = (uint32_t)id_len;
	snprintf(d->cert_label, sizeof(d->cert_label), "%s", label);
	d->cert = cert;
	d->cert_len = cert_len;
	d->cert_flags = TK_DRV_CERT_UNPAIRED;
}

int
piv_attest_slot(piv_t *p, uint8_t ref, const uint8_t *spki, size_t spki_len,
                const tk_cache_t *cached, tk_cache_t *fresh, tk_drv_model_t *m)
{
	const uint8_t *rec, *rspki = NULL, *ratt = NULL;
	size_t rec_len, rspki_len = 0, ratt_len = 0, att_len = 0, aspki_len = 0;
	uint8_t *asked = NULL, *aspki = NULL, id[2] = {0xF9, ref};
	const uint8_t *att = NULL;
	bool have = false;
	tk_drv_key_desc_t d;
	char label[64];
	int r, kt;
	unsigned kb;

	if (!p->yubico || spki == NULL || spki_len == 0)
		return TK_OK;
	if (tk_cache_get(cached, PIV_REC_ATTEST(ref), &rec, &rec_len) == TK_OK &&
	    piv_parse_attest_record(rec, rec_len, &rspki, &rspki_len, &ratt, &ratt_len) == TK_OK &&
	    rspki_len == spki_len && memcmp(rspki, spki, spki_len) == 0) {
		have = true;
		att = ratt;
		att_len = ratt_len;
	}
	if (!have && p->att_defer)
		return TK_OK; /* the next load asks, off the caller's path */
	if (!have) {
		if ((r = ask_card(p, ref, &asked, &att_len)) != TK_OK)
			goto out;
		att = asked;
	}
	if ((r = put_record(fresh, ref, spki, spki_len, att, att_len)) != TK_OK)
		goto out;
	if (att == NULL)
		goto out;
	/* an attestation of another key than the slot's (a card without
	 * metadata whose slot certificate names another key) is not this
	 * slot's: kept, never published */
	if (tk_x509_spki(att, att_len, &aspki, &aspki_len, &kt, &kb) != TK_OK ||
	    aspki_len != spki_len || memcmp(aspki, spki, spki_len) != 0) {
		tk_log_info("piv: the attestation of slot %02X is not for the slot's key; "
		            "not published",
		            ref);
		goto out;
	}
	snprintf(label, sizeof(label), "PIV Attestation %02X", ref);
	describe(&d, 0xF900u | ref, id, sizeof(id), label, att, att_len);
	r = tk_drv_model_add_key(m, &d);
	if (r == TK_OK) {
		p->att_published++;
	} else if (r == TK_ERR_MALFORMED || r == TK_ERR_NOT_SUPPORTED) {
		tk_log_warn("piv: attestation of slot %02X unusable: %s", ref, tk_strerror(r));
		r = TK_OK;
	}
out:
	free(aspki);
	free(asked);
	return r;
}

int
piv_attest_device(piv_t *p, const tk_cache_t *cached, tk_cache_t *fresh, tk_drv_model_t *m)
{
	static const uint8_t id[1] = {0xF9};
	const uint8_t *cd;
	size_t cl, len = 0, cert_len = 0;
	uint8_t *obj = NULL, *cert = NULL;
	bool absent = true;
	tk_drv_key_desc_t d;
	int r;

	/* It vouches for the attestations: without one (no keys, only
	 * imported keys, a card that cannot attest) it is neither read nor
	 * published, and an empty card stays an empty token. */
	if (!p->yubico || p->att_published == 0)
		return TK_OK;
	if (!p->att_asked && tk_cache_get(cached, PIV_TAG_ATTEST_CERT, &cd, &cl) == TK_OK) {
		absent = cl == 0;
		if (cl > 0 && (obj = malloc(cl)) == NULL)
			return TK_ERR_NO_MEMORY;
		if (cl > 0)
			memcpy(obj, cd, cl);
		len = cl;
	} else if ((r = piv_read_object(p, PIV_TAG_ATTEST_CERT, &obj, &len, &absent)) != TK_OK) {
		return r;
	}
	if (fresh != NULL && (r = tk_cache_put(fresh, PIV_TAG_ATTEST_CERT, obj, len)) != TK_OK)
		goto out;
	r = TK_OK;
	if (absent || obj == NULL)
		goto out;
	if (piv_parse_cert_object(obj, len, &cert, &cert_len) != TK_OK || cert == NULL) {
		tk_log_info("piv: the attestation certificate object 5FFF01 holds no certificate");
		goto out;
	}
	describe(&d, 0xF9, id, sizeof(id), "PIV Attestation Device Certificate", cert, cert_len);
	r = tk_drv_model_add_key(m, &d);
	if (r == TK_ERR_MALFORMED || r == TK_ERR_NOT_SUPPORTED) {
		tk_log_warn("piv: the device attestation certificate is unusable: %s",
		            tk_strerror(r));
		r = TK_OK;
	}
out:
	free(cert);
	free(obj);
	return r;
}
