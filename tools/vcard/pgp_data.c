/* tokenkit virtual card, OpenPGP applet: selection, data objects and
 * algorithm attributes (OpenPGP card specification 3.4, chapters 4 and 7).
 *
 * Data objects are built from the applet's state when asked for, never
 * stored as bytes: GET DATA of a constructed object (6E, 65, 7A) and of its
 * parts give the same values by construction. */
#include <stdlib.h>
#include <string.h>

#include <openssl/rand.h>

#include <tokenkit/err.h>
#include <tokenkit/mem.h>

#include "pgp_int.h"

/* RID D2 76 00 01 24, application 01 (OpenPGP). */
static const uint8_t pgp_aid_prefix[6] = {0xD2, 0x76, 0x00, 0x01, 0x24, 0x01};
static const uint8_t pgp_version[2] = {0x03, 0x04};
/* 0xFF00..0xFFFE: manufacturer ids for test cards. */
static const uint8_t pgp_manufacturer[2] = {0xFF, 0xFE};
static const uint8_t historical[] = {0x00, 0x31, 0xC5, 0x73, 0xC0, 0x01, 0xC0, 0x05, 0x90, 0x00};
/* GET CHALLENGE, key import, PW status changeable, algorithm attributes
 * changeable, KDF-DO; no SM; GET CHALLENGE up to 256; certificates up to
 * PGP_CERT_MAX; special DOs up to 255; no PIN block 2; no MSE. */
static const uint8_t ext_caps[10] = {0x75, 0x00, 0x01, 0x00, PGP_CERT_MAX >> 8, PGP_CERT_MAX & 0xFF,
                                     0x00, 0xFF, 0x00, 0x00};
/* Extended length information: commands and responses up to 4096 bytes. */
static const uint8_t ext_len[] = {0x02, 0x02, 0x10, 0x00, 0x02, 0x02, 0x10, 0x00};

static const uint8_t default_attr[] = {PGP_ALG_RSA, 0x08, 0x00, 0x00, 0x20, 0x00};

/* Curves by OID (without the DER tag and length, as attributes hold them). */
static const struct {
	uint8_t oid[10];
	uint8_t len;
	const char *group;
	unsigned bits;
	bool nist;
} curves[] = {
        {{0x2A, 0x86, 0x48, 0xCE, 0x3D, 0x03, 0x01, 0x07}, 8, "P-256", 256, true},
        {{0x2B, 0x81, 0x04, 0x00, 0x22}, 5, "P-384", 384, true},
        {{0x2B, 0x81, 0x04, 0x00, 0x23}, 5, "P-521", 521, true},
        {{0x2B, 0x06, 0x01, 0x04, 0x01, 0xDA, 0x47, 0x0F, 0x01}, 9, "ED25519", 255, false},
        {{0x2B, 0x06, 0x01, 0x04, 0x01, 0x97, 0x55, 0x01, 0x05, 0x01}, 10, "X25519", 255, false},
};

/* ---- life cycle ------------------------------------------------------------ */

void
vc_pgp_key_clear(struct pgp_key *k)
{
	EVP_PKEY_free(k->pkey);
	k->pkey = NULL;
	k->origin = 0;
	memset(k->fpr, 0, sizeof(k->fpr));
	memset(k->date, 0, sizeof(k->date));
}

void
vc_pgp_clear_session(struct vc_pgp *p)
{
	p->pw1_81 = p->pw1_82 = p->pw3_ok = false;
	p->cert_occ = 0;
}

void
vc_pgp_factory(struct vc_pgp *p)
{
	for (int i = 0; i < PGP_NKEYS; i++) {
		struct pgp_key *k = &p->keys[i];

		vc_pgp_key_clear(k);
		tk_freezero(k->cert, k->cert_len);
		memset(k, 0, sizeof(*k));
		memcpy(k->attr, default_attr, sizeof(default_attr));
		k->attr_len = sizeof(default_attr);
	}
	vc_pgp_pw_set(&p->pw1, (const uint8_t *)"123456", 6);
	vc_pgp_pw_set(&p->pw3, (const uint8_t *)"12345678", 8);
	vc_pgp_pw_set(&p->rc, NULL, 0);
	p->pw1_multi = 0;
	p->name_len = p->lang_len = p->url_len = p->login_len = p->kdf_len = 0;
	p->sex = 0x39; /* "not announced" (ISO 5218 digit 9) */
	p->sig_count = 0;
	p->terminated = false;
	vc_pgp_clear_session(p);
}

int
vc_pgp_new(struct vc_pgp **out)
{
	if ((*out = calloc(1, sizeof(**out))) == NULL)
		return TK_ERR_NO_MEMORY;
	vc_pgp_factory(*out);
	return TK_OK;
}

void
vc_pgp_free(struct vc_pgp **pp)
{
	struct vc_pgp *p;

	if (pp == NULL || (p = *pp) == NULL)
		return;
	for (int i = 0; i < PGP_NKEYS; i++) {
		vc_pgp_key_clear(&p->keys[i]);
		tk_freezero(p->keys[i].cert, p->keys[i].cert_len);
	}
	tk_freezero(p, sizeof(*p));
	*pp = NULL;
}

int
vc_pgp_clone(const struct vc_pgp *src, struct vc_pgp **out)
{
	struct vc_pgp *p;

	*out = NULL;
	if ((p = malloc(sizeof(*p))) == NULL)
		return TK_ERR_NO_MEMORY;
	memcpy(p, src, sizeof(*p));
	for (int i = 0; i < PGP_NKEYS; i++) {
		p->keys[i].cert = NULL;
		p->keys[i].pkey = NULL;
	}
	for (int i = 0; i < PGP_NKEYS; i++) {
		const struct pgp_key *k = &src->keys[i];

		/* keys are immutable once made: share them */
		if (k->pkey != NULL && EVP_PKEY_up_ref(k->pkey) == 1)
			p->keys[i].pkey = k->pkey;
		if (k->cert != NULL && (p->keys[i].cert = malloc(k->cert_len)) != NULL)
			memcpy(p->keys[i].cert, k->cert, k->cert_len);
		if ((k->pkey != NULL && p->keys[i].pkey == NULL) ||
		    (k->cert != NULL && p->keys[i].cert == NULL)) {
			vc_pgp_free(&p);
			return TK_ERR_NO_MEMORY;
		}
	}
	*out = p;
	return TK_OK;
}

/* ---- algorithm attributes ----------------------------------------------------- */

int
vc_pgp_attr_parse(const uint8_t *p, size_t n, int keyno, struct pgp_attr *out)
{
	tk_buf_t b;
	uint8_t alg, fmt = 0;
	uint16_t nbits, ebits;
	size_t oid_len;

	memset(out, 0, sizeof(*out));
	tk_buf_init(&b, p, n);
	if (tk_buf_get_u8(&b, &alg) != TK_OK)
		return TK_ERR_MALFORMED;
	if (alg == PGP_ALG_RSA) {
		if (tk_buf_get_u16be(&b, &nbits) != TK_OK || tk_buf_get_u16be(&b, &ebits) != TK_OK)
			return TK_ERR_MALFORMED;
		if (tk_buf_left(&b) > 0 && tk_buf_get_u8(&b, &fmt) != TK_OK)
			return TK_ERR_MALFORMED;
		if (tk_buf_left(&b) != 0 || fmt > 3)
			return TK_ERR_MALFORMED;
		if ((nbits != 2048 && nbits != 3072 && nbits != 4096) || ebits < 17 || ebits > 32)
			return TK_ERR_NOT_SUPPORTED;
		out->alg = PGP_ALG_RSA;
		out->bits = nbits;
		out->rsa_fmt = fmt;
		out->group = "RSA";
		return TK_OK;
	}
	if (alg != PGP_ALG_ECDH && alg != PGP_ALG_ECDSA && alg != PGP_ALG_EDDSA)
		return TK_ERR_NOT_SUPPORTED;
	oid_len = tk_buf_left(&b);
	/* an optional last byte 00 / FF: import format (FF: with public key) */
	if (oid_len > 0 && (p[n - 1] == 0x00 || p[n - 1] == 0xFF))
		oid_len--;
	if (oid_len == 0)
		return TK_ERR_MALFORMED;
	for (size_t i = 0; i < sizeof(curves) / sizeof(curves[0]); i++) {
		if (curves[i].len != oid_len || memcmp(curves[i].oid, p + 1, oid_len) != 0)
			continue;
		/* ECDH only decrypts; EdDSA is Ed25519; Curve25519 only agrees */
		if ((alg == PGP_ALG_ECDH) != (keyno == PGP_KEY_DEC))
			return TK_ERR_NOT_SUPPORTED;
		if ((alg == PGP_ALG_EDDSA) != (strcmp(curves[i].group, "ED25519") == 0))
			return TK_ERR_NOT_SUPPORTED;
		if (strcmp(curves[i].group, "X25519") == 0 && alg != PGP_ALG_ECDH)
			return TK_ERR_NOT_SUPPORTED;
		out->alg = alg;
		out->bits = curves[i].bits;
		out->group = curves[i].group;
		return TK_OK;
	}
	return TK_ERR_NOT_SUPPORTED;
}

/* ---- selection -------------------------------------------------------------- */

bool
vc_pgp_aid_match(const uint8_t *aid, size_t len)
{
	return aid != NULL && len >= sizeof(pgp_aid_prefix) && len <= 16 &&
	       memcmp(aid, pgp_aid_prefix, sizeof(pgp_aid_prefix)) == 0;
}

uint16_t
vc_pgp_select(tk_vcard_t *c, const tk_apdu_t *a, tk_wbuf_t *out)
{
	(void)a;
	(void)out;
	/* the applet answers no FCI; a terminated one says so (ACTIVATE next) */
	return c->pgp->terminated ? SW_TERMINATED : SW_OK;
}

/* ---- data objects -------------------------------------------------------------- */

static void
put_aid(const tk_vcard_t *c, tk_wbuf_t *w)
{
	tk_wbuf_put_bytes(w, pgp_aid_prefix, sizeof(pgp_aid_prefix));
	tk_wbuf_put_bytes(w, pgp_version, sizeof(pgp_version));
	tk_wbuf_put_bytes(w, pgp_manufacturer, sizeof(pgp_manufacturer));
	tk_wbuf_put_u32be(w, c->serial);
	tk_wbuf_put_u16be(w, 0);
}

static void
put_pw_status(const struct vc_pgp *p, tk_wbuf_t *w)
{
	tk_wbuf_put_u8(w, p->pw1_multi);
	tk_wbuf_put_u8(w, PGP_PW_MAX);
	tk_wbuf_put_u8(w, PGP_PW_MAX);
	tk_wbuf_put_u8(w, PGP_PW_MAX);
	tk_wbuf_put_u8(w, p->pw1.tries);
	tk_wbuf_put_u8(w, p->rc.len > 0 ? p->rc.tries : 0);
	tk_wbuf_put_u8(w, p->pw3.tries);
}

/* The value of a simple data object (the ones 6E, 65 and 7A hold, and
 * those GET DATA reaches alone). TK_ERR_NOT_FOUND: not one. */
static int
simple_do(const tk_vcard_t *c, uint32_t tag, tk_wbuf_t *w)
{
	const struct vc_pgp *p = c->pgp;
	uint8_t key_info[6];

	switch (tag) {
	case 0x4F:
		put_aid(c, w);
		break;
	case 0x5F52:
		tk_wbuf_put_bytes(w, historical, sizeof(historical));
		break;
	case 0x7F66:
		tk_wbuf_put_bytes(w, ext_len, sizeof(ext_len));
		break;
	case 0xC0:
		tk_wbuf_put_bytes(w, ext_caps, sizeof(ext_caps));
		break;
	case 0xC1:
	case 0xC2:
	case 0xC3:
		tk_wbuf_put_bytes(w, p->keys[tag - 0xC1].attr, p->keys[tag - 0xC1].attr_len);
		break;
	case 0xC4:
		put_pw_status(p, w);
		break;
	case 0xC5:
	case 0xC6:
		for (int i = 0; i < PGP_NKEYS; i++)
			tk_wbuf_put_bytes(w, tag == 0xC5 ? p->keys[i].fpr : p->keys[i].ca_fpr, 20);
		break;
	case 0xCD:
		for (int i = 0; i < PGP_NKEYS; i++)
			tk_wbuf_put_bytes(w, p->keys[i].date, 4);
		break;
	case 0xDE:
		for (int i = 0; i < PGP_NKEYS; i++) {
			key_info[2 * i] = (uint8_t)(i + 1);
			key_info[2 * i + 1] = p->keys[i].pkey != NULL ? p->keys[i].origin : 0;
		}
		tk_wbuf_put_bytes(w, key_info, sizeof(key_info));
		break;
	case 0x5B:
		tk_wbuf_put_bytes(w, p->name, p->name_len);
		break;
	case 0x5F2D:
		tk_wbuf_put_bytes(w, p->lang, p->lang_len);
		break;
	case 0x5F35:
		tk_wbuf_put_u8(w, p->sex);
		break;
	case 0x93:
		tk_wbuf_put_u8(w, (uint8_t)(p->sig_count >> 16));
		tk_wbuf_put_u16be(w, (uint16_t)p->sig_count);
		break;
	case 0x5E:
		tk_wbuf_put_bytes(w, p->login, p->login_len);
		break;
	case 0x5F50:
		tk_wbuf_put_bytes(w, p->url, p->url_len);
		break;
	case 0xF9:
		/* no KDF-DO written: "no KDF" */
		if (p->kdf_len == 0)
			tk_wbuf_put_bytes(w, "\x81\x01\x00", 3);
		else
			tk_wbuf_put_bytes(w, p->kdf, p->kdf_len);
		break;
	default:
		return TK_ERR_NOT_FOUND;
	}
	return TK_OK;
}

/* tag { value of each of tags } */
static void
constructed(const tk_vcard_t *c, uint32_t tag, const uint32_t *tags, size_t n, tk_wbuf_t *w)
{
	uint8_t inner[1024], val[256];
	tk_wbuf_t iw, vw;

	tk_wbuf_init(&iw, inner, sizeof(inner));
	for (size_t i = 0; i < n; i++) {
		tk_wbuf_init(&vw, val, sizeof(val));
		(void)simple_do(c, tags[i], &vw);
		vc_tlv_put(&iw, tags[i], val, vw.len);
	}
	if (tk_wbuf_error(&iw) != TK_OK)
		(void)tk_wbuf_reserve(w, SIZE_MAX); /* make the buffer report it */
	vc_tlv_put(w, tag, inner, iw.len);
}

static void
app_related(const tk_vcard_t *c, tk_wbuf_t *w)
{
	static const uint32_t outer[] = {0x4F, 0x5F52, 0x7F66};
	static const uint32_t disc[] = {0xC0, 0xC1, 0xC2, 0xC3, 0xC4, 0xC5, 0xC6, 0xCD, 0xDE};
	uint8_t inner[1024], d[512];
	tk_wbuf_t iw, dw;

	tk_wbuf_init(&dw, d, sizeof(d));
	constructed(c, 0x73, disc, sizeof(disc) / sizeof(disc[0]), &dw);
	tk_wbuf_init(&iw, inner, sizeof(inner));
	for (size_t i = 0; i < sizeof(outer) / sizeof(outer[0]); i++) {
		uint8_t val[32];
		tk_wbuf_t vw;

		tk_wbuf_init(&vw, val, sizeof(val));
		(void)simple_do(c, outer[i], &vw);
		vc_tlv_put(&iw, outer[i], val, vw.len);
	}
	tk_wbuf_put_bytes(&iw, d, dw.len);
	if (tk_wbuf_error(&iw) != TK_OK || tk_wbuf_error(&dw) != TK_OK)
		(void)tk_wbuf_reserve(w, SIZE_MAX);
	vc_tlv_put(w, 0x6E, inner, iw.len);
}

/* The certificate SELECT DATA chose: occurrence 0 AUT, 1 DEC, 2 SIG. */
static struct pgp_key *
cert_key(struct vc_pgp *p)
{
	return &p->keys[PGP_KEY_AUT - p->cert_occ];
}

static uint16_t
get_data(tk_vcard_t *c, const tk_apdu_t *a, tk_wbuf_t *out)
{
	static const uint32_t cardholder[] = {0x5B, 0x5F2D, 0x5F35};
	static const uint32_t security[] = {0x93};
	uint32_t tag = (uint32_t)a->p1 << 8 | a->p2;
	struct pgp_key *k;

	if (a->lc != 0)
		return SW_WRONG_LENGTH;
	switch (tag) {
	case 0x6E:
		app_related(c, out);
		return SW_OK;
	case 0x65:
		constructed(c, 0x65, cardholder, 3, out);
		return SW_OK;
	case 0x7A:
		constructed(c, 0x7A, security, 1, out);
		return SW_OK;
	case 0x7F21:
		k = cert_key(c->pgp);
		if (k->cert != NULL)
			tk_wbuf_put_bytes(out, k->cert, k->cert_len);
		return SW_OK;
	default:
		return simple_do(c, tag, out) == TK_OK ? SW_OK : SW_REF_NOT_FOUND;
	}
}

/* SELECT DATA (00 A5 occurrence 04): 60 { 5C 02 7F 21 } picks a cardholder
 * certificate for GET DATA / PUT DATA 7F21. */
static uint16_t
select_data(tk_vcard_t *c, const tk_apdu_t *a, tk_wbuf_t *out)
{
	tk_buf_t v, tl;
	uint32_t tag;
	uint8_t hi, lo;

	(void)out;
	if (a->p2 != 0x04 || a->p1 > 2)
		return SW_WRONG_P1P2;
	if (vc_tlv_find(a->data, a->lc, 0x60, &v) != TK_OK)
		return SW_WRONG_DATA;
	if (vc_tlv_get(&v, &tag, &tl) != TK_OK || tag != 0x5C || tk_buf_left(&v) != 0 ||
	    tk_buf_get_u8(&tl, &hi) != TK_OK || tk_buf_get_u8(&tl, &lo) != TK_OK ||
	    tk_buf_left(&tl) != 0 || hi != 0x7F || lo != 0x21)
		return SW_WRONG_DATA;
	c->pgp->cert_occ = a->p1;
	return SW_OK;
}

static bool
fits(size_t len, size_t max)
{
	return len <= max;
}

/* PUT DATA (00 DA): every object needs the admin PIN. */
static uint16_t
put_data(tk_vcard_t *c, const tk_apdu_t *a, tk_wbuf_t *out)
{
	struct vc_pgp *p = c->pgp;
	uint32_t tag = (uint32_t)a->p1 << 8 | a->p2;
	/* an empty object: no data pointer to copy from (memcpy wants one) */
	const uint8_t *d = a->data != NULL ? a->data : (const uint8_t *)"";
	size_t n = a->lc;
	struct pgp_attr at;
	struct pgp_key *k;

	(void)out;
	if (!p->pw3_ok)
		return SW_SECURITY;
	switch (tag) {
	case 0x5B:
		if (!fits(n, PGP_NAME_MAX))
			return SW_WRONG_LENGTH;
		memcpy(p->name, d, n);
		p->name_len = (uint8_t)n;
		break;
	case 0x5F2D:
		if (!fits(n, PGP_LANG_MAX))
			return SW_WRONG_LENGTH;
		memcpy(p->lang, d, n);
		p->lang_len = (uint8_t)n;
		break;
	case 0x5F35:
		if (n != 1)
			return SW_WRONG_LENGTH;
		p->sex = d[0];
		break;
	case 0x5F50:
		if (!fits(n, PGP_URL_MAX))
			return SW_WRONG_LENGTH;
		memcpy(p->url, d, n);
		p->url_len = (uint8_t)n;
		break;
	case 0x5E:
		if (!fits(n, PGP_LOGIN_MAX))
			return SW_WRONG_LENGTH;
		memcpy(p->login, d, n);
		p->login_len = (uint8_t)n;
		break;
	case 0xC1:
	case 0xC2:
	case 0xC3:
		k = &p->keys[tag - 0xC1];
		if (n > PGP_ATTR_MAX || vc_pgp_attr_parse(d, n, (int)(tag - 0xC1), &at) != TK_OK)
			return SW_WRONG_DATA;
		if (k->attr_len != n || memcmp(k->attr, d, n) != 0)
			vc_pgp_key_clear(k); /* the key no longer fits its attributes */
		memcpy(k->attr, d, n);
		k->attr_len = (uint8_t)n;
		break;
	case 0xC4:
		if (n != 1 && n != 4)
			return SW_WRONG_LENGTH;
		if (d[0] > 1)
			return SW_WRONG_DATA;
		p->pw1_multi = d[0];
		break;
	case 0xC7:
	case 0xC8:
	case 0xC9:
	case 0xCA:
	case 0xCB:
	case 0xCC:
		if (n != 20)
			return SW_WRONG_LENGTH;
		k = &p->keys[(tag - 0xC7) % 3];
		memcpy(tag <= 0xC9 ? k->fpr : k->ca_fpr, d, 20);
		break;
	case 0xCE:
	case 0xCF:
	case 0xD0:
		if (n != 4)
			return SW_WRONG_LENGTH;
		memcpy(p->keys[tag - 0xCE].date, d, 4);
		break;
	case 0xD3:
		if (n != 0 && (n < PGP_RC_MIN || n > PGP_PW_MAX))
			return SW_WRONG_LENGTH;
		vc_pgp_pw_set(&p->rc, d, n);
		break;
	case 0x7F21:
		if (!fits(n, PGP_CERT_MAX))
			return SW_WRONG_LENGTH;
		k = cert_key(p);
		tk_freezero(k->cert, k->cert_len);
		k->cert = NULL;
		k->cert_len = 0;
		if (n > 0) {
			if ((k->cert = malloc(n)) == NULL)
				return SW_MEMORY_FAILURE;
			memcpy(k->cert, d, n);
			k->cert_len = n;
		}
		break;
	case 0xF9:
		if (vc_pgp_kdf_put(p, d, n) != TK_OK)
			return SW_WRONG_DATA;
		break;
	default:
		return SW_REF_NOT_FOUND;
	}
	c->dirty = true;
	return SW_OK;
}

static uint16_t
get_challenge(tk_vcard_t *c, const tk_apdu_t *a, tk_wbuf_t *out)
{
	size_t n = a->le != 0 ? a->le : 256;
	uint8_t *p;

	(void)c;
	if (a->p1 != 0 || a->p2 != 0 || a->lc != 0)
		return SW_WRONG_P1P2;
	if (n > 256)
		return SW_WRONG_LENGTH;
	if ((p = tk_wbuf_reserve(out, n)) == NULL || vc_random(p, n) != TK_OK)
		return SW_NO_PRECISE;
	return SW_OK;
}

/* TERMINATE DF: with the admin PIN, or once the admin PIN is blocked (a
 * card whose PINs are both lost can still be reset). */
static uint16_t
terminate(tk_vcard_t *c, const tk_apdu_t *a, tk_wbuf_t *out)
{
	struct vc_pgp *p = c->pgp;

	(void)out;
	if (a->p1 != 0 || a->p2 != 0)
		return SW_WRONG_P1P2;
	if (!p->pw3_ok && p->pw3.tries != 0)
		return SW_SECURITY;
	p->terminated = true;
	vc_pgp_clear_session(p);
	c->dirty = true;
	return SW_OK;
}

/* ACTIVATE FILE: a terminated applet goes back to factory state. */
static uint16_t
activate(tk_vcard_t *c, const tk_apdu_t *a, tk_wbuf_t *out)
{
	(void)out;
	if (a->p1 != 0 || a->p2 != 0)
		return SW_WRONG_P1P2;
	if (c->pgp->terminated) {
		vc_pgp_factory(c->pgp);
		c->dirty = true;
	}
	return SW_OK;
}

/* The terminated applet takes SELECT and ACTIVATE FILE only. */
static uint16_t
terminated(tk_vcard_t *c, const tk_apdu_t *a, tk_wbuf_t *out)
{
	(void)c;
	(void)a;
	(void)out;
	return SW_TERMINATED;
}

static uint16_t
dispatch(tk_vcard_t *c, const tk_apdu_t *a, tk_wbuf_t *out)
{
	vc_handler_fn fn;

	if (c->pgp->terminated && a->ins != 0x44)
		return terminated(c, a, out);
	switch (a->ins) {
	case 0xCA:
		fn = get_data;
		break;
	case 0xDA:
		fn = put_data;
		break;
	case 0xDB:
		fn = vc_pgp_import;
		break;
	case 0xA5:
		fn = select_data;
		break;
	case 0x20:
		fn = vc_pgp_verify;
		break;
	case 0x24:
		fn = vc_pgp_change_ref;
		break;
	case 0x2C:
		fn = vc_pgp_reset_retry;
		break;
	case 0x47:
		fn = vc_pgp_generate;
		break;
	case 0x2A:
		fn = vc_pgp_pso;
		break;
	case 0x88:
		fn = vc_pgp_internal_auth;
		break;
	case 0x84:
		fn = get_challenge;
		break;
	case 0xE6:
		fn = terminate;
		break;
	case 0x44:
		fn = activate;
		break;
	default:
		return SW_INS_NOT_SUPPORTED;
	}
	return fn(c, a, out);
}

static bool
known_ins(uint8_t ins)
{
	static const uint8_t ins_list[] = {0xCA, 0xDA, 0xDB, 0xA5, 0x20, 0x24, 0x2C,
	                                   0x47, 0x2A, 0x88, 0x84, 0xE6, 0x44};

	for (size_t i = 0; i < sizeof(ins_list); i++)
		if (ins_list[i] == ins)
			return true;
	return false;
}

vc_handler_fn
vc_pgp_handler(uint8_t ins)
{
	return known_ins(ins) ? dispatch : NULL;
}
