/* tokenkit virtual card, OpenPGP applet: the three keys.
 *
 * GENERATE ASYMMETRIC KEY PAIR (80 generate, 81 read the public key), key
 * import (PUT DATA 3FFF with an extended header list), PSO:COMPUTE DIGITAL
 * SIGNATURE, PSO:DECIPHER and INTERNAL AUTHENTICATE. The card pads RSA
 * itself (PKCS#1 v1.5), returns ECDSA signatures as r||s, EdDSA over the
 * data as given, and for ECDH the X coordinate (NIST curves) or the 32-byte
 * X25519 result. */
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/rsa.h>

#include <tokenkit/err.h>
#include <tokenkit/mem.h>
#include <tokenkit/tlv.h>

#include "pgp_int.h"

/* Elements of the private key template: tags 91..99. */
#define EL_FIRST 0x91
#define EL_COUNT 9
#define EL(tag) ((tag)-EL_FIRST)

int
vc_pgp_crt_key(uint32_t tag)
{
	switch (tag) {
	case 0xB6:
		return PGP_KEY_SIG;
	case 0xB8:
		return PGP_KEY_DEC;
	case 0xA4:
		return PGP_KEY_AUT;
	default:
		return -1;
	}
}

static bool
same_group(EVP_PKEY *pkey, const char *group)
{
	char name[32];
	size_t len = 0;
	int a, b;

	if (EVP_PKEY_get_utf8_string_param(pkey, OSSL_PKEY_PARAM_GROUP_NAME, name, sizeof(name),
	                                   &len) != 1)
		return false;
	a = EC_curve_nist2nid(name) != NID_undef ? EC_curve_nist2nid(name) : OBJ_sn2nid(name);
	b = EC_curve_nist2nid(group);
	return a != NID_undef && a == b;
}

bool
vc_pgp_key_fits(EVP_PKEY *pkey, const struct pgp_attr *at)
{
	switch (at->alg) {
	case PGP_ALG_RSA:
		return EVP_PKEY_get_base_id(pkey) == EVP_PKEY_RSA &&
		       EVP_PKEY_get_bits(pkey) == (int)at->bits;
	case PGP_ALG_EDDSA:
		return EVP_PKEY_get_base_id(pkey) == EVP_PKEY_ED25519;
	case PGP_ALG_ECDH:
		if (strcmp(at->group, "X25519") == 0)
			return EVP_PKEY_get_base_id(pkey) == EVP_PKEY_X25519;
		return EVP_PKEY_get_base_id(pkey) == EVP_PKEY_EC && same_group(pkey, at->group);
	case PGP_ALG_ECDSA:
		return EVP_PKEY_get_base_id(pkey) == EVP_PKEY_EC && same_group(pkey, at->group);
	default:
		return false;
	}
}

static bool
is_25519(const struct pgp_attr *at)
{
	return at->alg == PGP_ALG_EDDSA || strcmp(at->group, "X25519") == 0;
}

static int
keygen(const struct pgp_attr *at, EVP_PKEY **out)
{
	if (at->alg == PGP_ALG_RSA)
		*out = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)at->bits);
	else if (is_25519(at))
		*out = EVP_PKEY_Q_keygen(NULL, NULL, at->group);
	else
		*out = EVP_PKEY_Q_keygen(NULL, NULL, "EC", at->group);
	return *out != NULL ? TK_OK : TK_ERR_CRYPTO;
}

static int
put_bn(tk_wbuf_t *w, uint32_t tag, EVP_PKEY *pkey, const char *param)
{
	BIGNUM *bn = NULL;
	uint8_t *p;
	int n, r = TK_ERR_CRYPTO;

	if (EVP_PKEY_get_bn_param(pkey, param, &bn) != 1)
		return TK_ERR_CRYPTO;
	n = BN_num_bytes(bn);
	vc_tlv_put_hdr(w, tag, (size_t)n);
	if ((p = tk_wbuf_reserve(w, (size_t)n)) != NULL && BN_bn2bin(bn, p) == n)
		r = TK_OK;
	BN_free(bn);
	return r;
}

/* 7F49 { 81 n, 82 e } or 7F49 { 86 point } (the raw 32 bytes for 25519). */
static int
put_public(tk_wbuf_t *w, EVP_PKEY *pkey, const struct pgp_attr *at)
{
	uint8_t tmp[1100], pt[133];
	size_t len = sizeof(pt);
	tk_wbuf_t t;

	tk_wbuf_init(&t, tmp, sizeof(tmp));
	if (at->alg == PGP_ALG_RSA) {
		if (put_bn(&t, 0x81, pkey, OSSL_PKEY_PARAM_RSA_N) != TK_OK ||
		    put_bn(&t, 0x82, pkey, OSSL_PKEY_PARAM_RSA_E) != TK_OK)
			return TK_ERR_CRYPTO;
	} else if (is_25519(at)) {
		if (EVP_PKEY_get_raw_public_key(pkey, pt, &len) != 1)
			return TK_ERR_CRYPTO;
		vc_tlv_put(&t, 0x86, pt, len);
	} else {
		if (EVP_PKEY_get_octet_string_param(pkey, OSSL_PKEY_PARAM_ENCODED_PUBLIC_KEY, pt,
		                                    sizeof(pt), &len) != 1)
			return TK_ERR_CRYPTO;
		vc_tlv_put(&t, 0x86, pt, len);
	}
	if (tk_wbuf_error(&t) != TK_OK)
		return TK_ERR_CRYPTO;
	vc_tlv_put(w, 0x7F49, tmp, t.len);
	return tk_wbuf_error(w);
}

/* A new key in key slot keyno. */
static void
install(tk_vcard_t *c, int keyno, EVP_PKEY *pkey, uint8_t origin)
{
	struct pgp_key *k = &c->pgp->keys[keyno];

	vc_pgp_key_clear(k);
	k->pkey = pkey;
	k->origin = origin;
	if (keyno == PGP_KEY_SIG)
		c->pgp->sig_count = 0;
	c->dirty = true;
}

/* The one control reference template of a command's data. */
static int
crt_of(const uint8_t *d, size_t n)
{
	tk_tlv_t t;
	tk_buf_t b;

	tk_buf_init(&b, d, n);
	if (tk_ber_get(&b, &t) != TK_OK || tk_buf_left(&b) != 0)
		return -1;
	return vc_pgp_crt_key(t.tag);
}

uint16_t
vc_pgp_generate(tk_vcard_t *c, const tk_apdu_t *a, tk_wbuf_t *out)
{
	struct vc_pgp *p = c->pgp;
	struct pgp_attr at;
	EVP_PKEY *pkey = NULL;
	int keyno;

	if ((a->p1 != 0x80 && a->p1 != 0x81) || a->p2 != 0x00)
		return SW_WRONG_P1P2;
	if ((keyno = crt_of(a->data, a->lc)) < 0)
		return SW_WRONG_DATA;
	if (vc_pgp_attr_parse(p->keys[keyno].attr, p->keys[keyno].attr_len, keyno, &at) != TK_OK)
		return SW_CONDITIONS;
	if (a->p1 == 0x81) {
		if (p->keys[keyno].pkey == NULL)
			return SW_REF_NOT_FOUND;
		return put_public(out, p->keys[keyno].pkey, &at) == TK_OK ? SW_OK : SW_NO_PRECISE;
	}
	if (!p->pw3_ok)
		return SW_SECURITY;
	if (c->fuzz_fast && at.alg == PGP_ALG_RSA)
		return SW_FUNC_NOT_SUPPORTED;
	if (keygen(&at, &pkey) != TK_OK)
		return SW_NO_PRECISE;
	if (put_public(out, pkey, &at) != TK_OK) {
		EVP_PKEY_free(pkey);
		return SW_NO_PRECISE;
	}
	install(c, keyno, pkey, 1);
	return SW_OK;
}

/* ---- import ------------------------------------------------------------------ */

/* The extended header list: 4D { CRT, 7F48 { tag length ... }, 5F48 {
 * the values in that order } }. el[] points into d. */
static int
parse_import(const uint8_t *d, size_t n, int *keyno, tk_buf_t el[EL_COUNT], bool have[EL_COUNT])
{
	tk_tlv_t outer, crt, tmpl, data;
	tk_buf_t b, in, tl, vals;

	tk_buf_init(&b, d, n);
	if (tk_ber_get(&b, &outer) != TK_OK || outer.tag != 0x4D || tk_buf_left(&b) != 0)
		return TK_ERR_MALFORMED;
	tk_buf_init(&in, outer.value, outer.len);
	if (tk_ber_get(&in, &crt) != TK_OK || (*keyno = vc_pgp_crt_key(crt.tag)) < 0 ||
	    tk_ber_get(&in, &tmpl) != TK_OK || tmpl.tag != 0x7F48 ||
	    tk_ber_get(&in, &data) != TK_OK || data.tag != 0x5F48 || tk_buf_left(&in) != 0)
		return TK_ERR_MALFORMED;
	tk_buf_init(&tl, tmpl.value, tmpl.len);
	tk_buf_init(&vals, data.value, data.len);
	while (tk_buf_left(&tl) > 0) {
		uint8_t tag, l8;
		uint16_t l16;
		size_t len;

		if (tk_buf_get_u8(&tl, &tag) != TK_OK || tk_buf_get_u8(&tl, &l8) != TK_OK)
			return TK_ERR_MALFORMED;
		if (l8 < 0x80) {
			len = l8;
		} else if (l8 == 0x81) {
			if (tk_buf_get_u8(&tl, &l8) != TK_OK)
				return TK_ERR_MALFORMED;
			len = l8;
		} else if (l8 == 0x82) {
			if (tk_buf_get_u16be(&tl, &l16) != TK_OK)
				return TK_ERR_MALFORMED;
			len = l16;
		} else {
			return TK_ERR_MALFORMED;
		}
		if (tag < EL_FIRST || tag >= EL_FIRST + EL_COUNT || have[EL(tag)])
			return TK_ERR_MALFORMED;
		if (tk_buf_get_sub(&vals, &el[EL(tag)], len) != TK_OK)
			return TK_ERR_MALFORMED;
		have[EL(tag)] = true;
	}
	return tk_buf_left(&vals) == 0 ? TK_OK : TK_ERR_MALFORMED;
}

static EVP_PKEY *
import_rsa(const struct pgp_attr *at, const tk_buf_t el[EL_COUNT], const bool have[EL_COUNT])
{
	bool crt = have[EL(0x94)] || have[EL(0x95)] || have[EL(0x96)];
	tk_buf_t cv[3];
	EVP_PKEY *pkey;
	BIGNUM *n = NULL, *given = NULL;
	bool ok = true;

	if (!have[EL(0x91)] || !have[EL(0x92)] || !have[EL(0x93)] || have[EL(0x99)] ||
	    have[EL(0x98)])
		return NULL;
	if ((at->rsa_fmt >= 2 || crt) && !(have[EL(0x94)] && have[EL(0x95)] && have[EL(0x96)]))
		return NULL;
	/* dP, dQ, qInv: 95, 96, 94 */
	cv[0] = el[EL(0x95)];
	cv[1] = el[EL(0x96)];
	cv[2] = el[EL(0x94)];
	pkey = vc_rsa_import(at->bits, &el[EL(0x91)], &el[EL(0x92)], &el[EL(0x93)],
	                     crt ? cv : NULL);
	if (pkey != NULL && have[EL(0x97)]) {
		ok = EVP_PKEY_get_bn_param(pkey, OSSL_PKEY_PARAM_RSA_N, &n) == 1 &&
		     (given = BN_bin2bn(el[EL(0x97)].data, (int)el[EL(0x97)].len, NULL)) != NULL &&
		     BN_cmp(n, given) == 0;
		BN_free(n);
		BN_free(given);
	}
	if (!ok) {
		EVP_PKEY_free(pkey);
		return NULL;
	}
	return pkey;
}

static EVP_PKEY *
import_ecc(const struct pgp_attr *at, const tk_buf_t el[EL_COUNT], const bool have[EL_COUNT])
{
	size_t fb = (at->bits + 7) / 8;
	uint8_t s[66], pub[133];
	size_t pl = sizeof(pub);
	EVP_PKEY *pkey = NULL;
	const tk_buf_t *d = &el[EL(0x92)];
	tk_buf_t sv;

	for (int t = 0x91; t <= 0x98; t++)
		if (have[EL(t)] != (t == 0x92))
			return NULL;
	if (d->len == 0 || d->len > fb || fb > sizeof(s))
		return NULL;
	/* left-padded to the field length: big-endian scalars may be shorter */
	memset(s, 0, fb - d->len);
	memcpy(s + fb - d->len, d->data, d->len);
	if (at->alg == PGP_ALG_EDDSA) {
		pkey = EVP_PKEY_new_raw_private_key(EVP_PKEY_ED25519, NULL, s, 32);
	} else if (strcmp(at->group, "X25519") == 0) {
		uint8_t le[32];

		/* OpenPGP keeps the X25519 scalar big-endian, RFC 7748
		 * little-endian */
		for (size_t i = 0; i < 32; i++)
			le[i] = s[31 - i];
		pkey = EVP_PKEY_new_raw_private_key(EVP_PKEY_X25519, NULL, le, 32);
		tk_wipe(le, sizeof(le));
	} else {
		tk_buf_init(&sv, s, fb);
		pkey = vc_ec_import(at->group, &sv);
	}
	tk_wipe(s, sizeof(s));
	if (pkey == NULL || !have[EL(0x99)])
		return pkey;
	/* the public key, when given, must be the private key's */
	if ((is_25519(at)
	             ? EVP_PKEY_get_raw_public_key(pkey, pub, &pl)
	             : EVP_PKEY_get_octet_string_param(pkey, OSSL_PKEY_PARAM_ENCODED_PUBLIC_KEY,
	                                               pub, sizeof(pub), &pl)) != 1 ||
	    pl != el[EL(0x99)].len || memcmp(pub, el[EL(0x99)].data, pl) != 0) {
		EVP_PKEY_free(pkey);
		return NULL;
	}
	return pkey;
}

uint16_t
vc_pgp_import(tk_vcard_t *c, const tk_apdu_t *a, tk_wbuf_t *out)
{
	struct vc_pgp *p = c->pgp;
	tk_buf_t el[EL_COUNT];
	bool have[EL_COUNT] = {false};
	struct pgp_attr at;
	EVP_PKEY *pkey;
	int keyno;

	(void)out;
	if (a->p1 != 0x3F || a->p2 != 0xFF)
		return SW_WRONG_P1P2;
	if (!p->pw3_ok)
		return SW_SECURITY;
	memset(el, 0, sizeof(el));
	if (parse_import(a->data, a->lc, &keyno, el, have) != TK_OK)
		return SW_WRONG_DATA;
	if (vc_pgp_attr_parse(p->keys[keyno].attr, p->keys[keyno].attr_len, keyno, &at) != TK_OK)
		return SW_CONDITIONS;
	pkey = at.alg == PGP_ALG_RSA ? import_rsa(&at, el, have) : import_ecc(&at, el, have);
	if (pkey == NULL)
		return SW_WRONG_DATA;
	install(c, keyno, pkey, 2);
	return SW_OK;
}

/* ---- key operations ------------------------------------------------------------- */

/* Sign in with key keyno as its attributes say. */
static uint16_t
sign_with(struct vc_pgp *p, int keyno, const uint8_t *in, size_t n, tk_wbuf_t *out)
{
	struct pgp_key *k = &p->keys[keyno];
	size_t fb, len = 0;
	struct pgp_attr at;
	EVP_MD_CTX *mctx;
	uint8_t *sig;
	int r = TK_ERR_CRYPTO;

	if (k->pkey == NULL)
		return SW_REF_NOT_FOUND;
	if (vc_pgp_attr_parse(k->attr, k->attr_len, keyno, &at) != TK_OK ||
	    !vc_pgp_key_fits(k->pkey, &at))
		return SW_CONDITIONS;
	fb = (at.bits + 7) / 8;
	switch (at.alg) {
	case PGP_ALG_RSA:
		if (n == 0 || n + 11 > fb)
			return SW_WRONG_LENGTH;
		if ((sig = tk_wbuf_reserve(out, fb)) == NULL)
			return SW_NO_PRECISE;
		len = fb;
		r = vc_rsa_sign_pkcs1(k->pkey, in, n, sig, &len);
		if (r == TK_OK && len != fb)
			r = TK_ERR_CRYPTO;
		break;
	case PGP_ALG_ECDSA:
		if (n == 0 || n > 64)
			return SW_WRONG_LENGTH;
		if ((sig = tk_wbuf_reserve(out, 2 * fb)) == NULL)
			return SW_NO_PRECISE;
		r = vc_ecdsa_sign_rs(k->pkey, fb, in, n, sig);
		break;
	case PGP_ALG_EDDSA:
		if (n > PGP_EDDSA_MAX)
			return SW_WRONG_LENGTH;
		if ((sig = tk_wbuf_reserve(out, 64)) == NULL || (mctx = EVP_MD_CTX_new()) == NULL)
			return SW_NO_PRECISE;
		len = 64;
		if (EVP_DigestSignInit(mctx, NULL, NULL, NULL, k->pkey) == 1 &&
		    EVP_DigestSign(mctx, sig, &len, in, n) == 1 && len == 64)
			r = TK_OK;
		EVP_MD_CTX_free(mctx);
		break;
	default:
		return SW_CONDITIONS; /* an ECDH key does not sign */
	}
	return r == TK_OK ? SW_OK : SW_NO_PRECISE;
}

/* PSO:DECIPHER: RSA 00 || cryptogram; ECDH A6 { 7F49 { 86 point } }. */
static uint16_t
decipher(struct vc_pgp *p, const uint8_t *in, size_t n, tk_wbuf_t *out)
{
	struct pgp_key *k = &p->keys[PGP_KEY_DEC];
	uint8_t res[512];
	size_t len = sizeof(res), fb;
	struct pgp_attr at;
	tk_tlv_t a6, pk, pt;
	int r;

	if (k->pkey == NULL)
		return SW_REF_NOT_FOUND;
	if (vc_pgp_attr_parse(k->attr, k->attr_len, PGP_KEY_DEC, &at) != TK_OK ||
	    !vc_pgp_key_fits(k->pkey, &at))
		return SW_CONDITIONS;
	fb = (at.bits + 7) / 8;
	if (at.alg == PGP_ALG_RSA) {
		if (n != fb + 1 || in[0] != 0x00)
			return SW_WRONG_DATA;
		r = vc_rsa_decrypt(k->pkey, RSA_PKCS1_PADDING, in + 1, fb, res, &len);
	} else {
		if (n == 0 || in[0] == 0x02)
			return SW_FUNC_NOT_SUPPORTED; /* no symmetric (AES) decryption here */
		if (tk_ber_find(in, n, 0xA6, &a6) != TK_OK ||
		    tk_ber_find(a6.value, a6.len, 0x7F49, &pk) != TK_OK ||
		    tk_ber_find(pk.value, pk.len, 0x86, &pt) != TK_OK)
			return SW_WRONG_DATA;
		r = vc_ecdh(k->pkey, pt.value, pt.len, res, &len);
		if (r == TK_ERR_INVALID_ARG) {
			tk_wipe(res, sizeof(res));
			return SW_WRONG_DATA;
		}
	}
	if (r == TK_OK)
		tk_wbuf_put_bytes(out, res, len);
	tk_wipe(res, sizeof(res));
	return r == TK_OK ? SW_OK : SW_WRONG_DATA;
}

uint16_t
vc_pgp_pso(tk_vcard_t *c, const tk_apdu_t *a, tk_wbuf_t *out)
{
	struct vc_pgp *p = c->pgp;
	uint16_t sw;

	if (a->p1 == 0x9E && a->p2 == 0x9A) {
		if (!p->pw1_81)
			return SW_SECURITY;
		sw = sign_with(p, PGP_KEY_SIG, a->data, a->lc, out);
		if (!p->pw1_multi)
			p->pw1_81 = false; /* one signature per VERIFY 81 */
		if (sw == SW_OK) {
			if (p->sig_count < PGP_SIG_COUNT_MAX)
				p->sig_count++;
			c->dirty = true;
		}
		return sw;
	}
	if (a->p1 == 0x80 && a->p2 == 0x86) {
		if (!p->pw1_82)
			return SW_SECURITY;
		return decipher(p, a->data, a->lc, out);
	}
	return SW_WRONG_P1P2;
}

uint16_t
vc_pgp_internal_auth(tk_vcard_t *c, const tk_apdu_t *a, tk_wbuf_t *out)
{
	if (a->p1 != 0x00 || a->p2 != 0x00)
		return SW_WRONG_P1P2;
	if (!c->pgp->pw1_82)
		return SW_SECURITY;
	return sign_with(c->pgp, PGP_KEY_AUT, a->data, a->lc, out);
}
