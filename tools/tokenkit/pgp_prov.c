/* OpenPGP card provisioning helpers of the tool: data object parsers and
 * the encoders of attributes, key import and fingerprints (pgp_prov.h).
 * Every read of card data goes through tk_buf / BER-TLV getters; an object
 * of the wrong size is refused or left out, never cut to fit. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/param_build.h>

#include <tokenkit/err.h>
#include <tokenkit/mem.h>
#include <tokenkit/tlv.h>

#include "pgp_prov.h"

/* Curve OIDs without DER tag and length, as algorithm attributes and
 * OpenPGP key packets hold them (RFC 6637 11, RFC 4880bis 9.2). kdf: the
 * ECDH KDF parameters (hash, key wrap cipher) RFC 6637 13 recommends for the
 * curve and GnuPG gives a key made from a card's: SHA-256/AES-128,
 * SHA-384/AES-192, SHA-512/AES-256. They are part of the fingerprint. */
static const struct {
	uint8_t oid[10];
	uint8_t len;
	const char *name;  /* the tool's name */
	const char *group; /* OpenSSL */
	unsigned bits;
	uint8_t kdf_hash, kdf_cipher;
} curves[] = {
        [PGP_CURVE_P256] = {{0x2A, 0x86, 0x48, 0xCE, 0x3D, 0x03, 0x01, 0x07},
                            8,
                            "nistp256",
                            "P-256",
                            256,
                            0x08,
                            0x07},
        [PGP_CURVE_P384] =
                {{0x2B, 0x81, 0x04, 0x00, 0x22}, 5, "nistp384", "P-384", 384, 0x09, 0x08},
        [PGP_CURVE_P521] =
                {{0x2B, 0x81, 0x04, 0x00, 0x23}, 5, "nistp521", "P-521", 521, 0x0A, 0x09},
        [PGP_CURVE_ED25519] = {{0x2B, 0x06, 0x01, 0x04, 0x01, 0xDA, 0x47, 0x0F, 0x01},
                               9,
                               "ed25519",
                               "ED25519",
                               255,
                               0,
                               0},
        [PGP_CURVE_CV25519] = {{0x2B, 0x06, 0x01, 0x04, 0x01, 0x97, 0x55, 0x01, 0x05, 0x01},
                               10,
                               "cv25519",
                               "X25519",
                               255,
                               0x08,
                               0x07},
};
#define NCURVES (sizeof(curves) / sizeof(curves[0]))

static bool
is_25519(int curve)
{
	return curve == PGP_CURVE_ED25519 || curve == PGP_CURVE_CV25519;
}

/* ---- algorithm attributes --------------------------------------------------------------- */

int
pgp_attr_parse(const uint8_t *p, size_t n, pgp_attr_t *out)
{
	uint16_t nbits, ebits;
	uint8_t id, fmt = 0;
	size_t oid_len;
	tk_buf_t b;

	memset(out, 0, sizeof(*out));
	out->curve = PGP_CURVE_NONE;
	tk_buf_init(&b, p, n);
	if (tk_buf_get_u8(&b, &id) != TK_OK)
		return TK_ERR_MALFORMED;
	if (id == PGP_ID_RSA) {
		if (tk_buf_get_u16be(&b, &nbits) != TK_OK ||
		    tk_buf_get_u16be(&b, &ebits) != TK_OK ||
		    (tk_buf_left(&b) > 0 && tk_buf_get_u8(&b, &fmt) != TK_OK) ||
		    tk_buf_left(&b) != 0)
			return TK_ERR_MALFORMED;
		if (nbits < 1024 || nbits > 16384 || nbits % 16 != 0 || ebits < 2 || ebits > 64 ||
		    fmt > 3)
			return TK_OK; /* well formed, nothing the tool provisions */
		out->id = id;
		out->bits = nbits;
		out->ebits = ebits;
		out->rsa_fmt = fmt;
		snprintf(out->name, sizeof(out->name), "rsa%u", (unsigned)nbits);
		return TK_OK;
	}
	if (id != PGP_ID_ECDH && id != PGP_ID_ECDSA && id != PGP_ID_EDDSA)
		return TK_OK;
	oid_len = tk_buf_left(&b);
	/* an import-format byte may follow the OID: 00, or FF (with the public
	 * key); no curve OID ends in either */
	if (oid_len > 0 && (p[n - 1] == 0x00 || p[n - 1] == 0xFF)) {
		out->ec_pub = p[n - 1] == 0xFF;
		oid_len--;
	}
	if (oid_len == 0)
		return TK_ERR_MALFORMED;
	for (size_t i = 0; i < NCURVES; i++) {
		if (curves[i].len != oid_len || memcmp(curves[i].oid, p + 1, oid_len) != 0)
			continue;
		/* Ed25519 only signs (EdDSA), Curve25519 only agrees (ECDH) */
		if ((i == PGP_CURVE_ED25519) != (id == PGP_ID_EDDSA) ||
		    (i == PGP_CURVE_CV25519 && id != PGP_ID_ECDH))
			break;
		out->id = id;
		out->curve = (int)i;
		out->bits = curves[i].bits;
		snprintf(out->name, sizeof(out->name), "%s", curves[i].name);
		return TK_OK;
	}
	out->ec_pub = false;
	return TK_OK;
}

int
pgp_attr_encode(const char *name, int key, const pgp_attr_t *cur, uint8_t *out, size_t cap,
                size_t *len)
{
	static const struct {
		const char *name;
		unsigned bits;
		int curve;
	} algs[] = {
	        {"rsa2048", 2048, PGP_CURVE_NONE}, {"rsa3072", 3072, PGP_CURVE_NONE},
	        {"rsa4096", 4096, PGP_CURVE_NONE}, {"nistp256", 0, PGP_CURVE_P256},
	        {"nistp384", 0, PGP_CURVE_P384},   {"ed25519", 0, PGP_CURVE_ED25519},
	        {"cv25519", 0, PGP_CURVE_CV25519},
	};
	tk_wbuf_t w;
	uint8_t id;

	*len = 0;
	if (name == NULL || key < 0 || key >= PGP_NKEYS)
		return TK_ERR_INVALID_ARG;
	tk_wbuf_init(&w, out, cap);
	for (size_t i = 0; i < sizeof(algs) / sizeof(algs[0]); i++) {
		int c = algs[i].curve;

		if (strcmp(name, algs[i].name) != 0)
			continue;
		if (c == PGP_CURVE_NONE) {
			bool keep = cur != NULL && cur->id == PGP_ID_RSA;

			tk_wbuf_put_u8(&w, PGP_ID_RSA);
			tk_wbuf_put_u16be(&w, (uint16_t)algs[i].bits);
			tk_wbuf_put_u16be(&w, (uint16_t)(keep ? cur->ebits : 32));
			tk_wbuf_put_u8(&w, keep ? cur->rsa_fmt : 0);
		} else {
			if ((c == PGP_CURVE_ED25519 && key == PGP_DEC) ||
			    (c == PGP_CURVE_CV25519 && key != PGP_DEC))
				return TK_ERR_INVALID_ARG;
			id = key == PGP_DEC           ? PGP_ID_ECDH
			     : c == PGP_CURVE_ED25519 ? PGP_ID_EDDSA
			                              : PGP_ID_ECDSA;
			tk_wbuf_put_u8(&w, id);
			tk_wbuf_put_bytes(&w, curves[c].oid, curves[c].len);
		}
		if (tk_wbuf_error(&w) != TK_OK)
			return TK_ERR_TOO_LONG;
		*len = w.len;
		return TK_OK;
	}
	return TK_ERR_INVALID_ARG;
}

/* ---- data objects --------------------------------------------------------------------- */

/* p[0..n) is one object of tag `tag` or the value of one: the value. */
static void
unwrap(const uint8_t **p, size_t *n, uint32_t tag)
{
	tk_tlv_t t;
	tk_buf_t b;

	tk_buf_init(&b, *p, *n);
	if (tk_ber_get(&b, &t) == TK_OK && t.tag == tag && tk_buf_left(&b) == 0) {
		*p = t.value;
		*n = t.len;
	}
}

static void
ard_item(const tk_tlv_t *t, pgp_ard_t *out)
{
	tk_buf_t b;

	tk_buf_init(&b, t->value, t->len);
	switch (t->tag) {
	case 0x4F:
		if (t->len < 6 || t->len > sizeof(out->aid))
			return;
		memcpy(out->aid, t->value, t->len);
		out->aid_len = t->len;
		if (t->len >= 14) {
			(void)tk_buf_skip(&b, 6);
			(void)tk_buf_get_bytes(&b, out->version, 2);
			(void)tk_buf_get_u16be(&b, &out->manufacturer);
			(void)tk_buf_get_u32be(&b, &out->serial);
		}
		break;
	case 0xC0:
		if (t->len >= sizeof(out->caps)) {
			memcpy(out->caps, t->value, sizeof(out->caps));
			out->have_caps = true;
		}
		break;
	case 0xC1:
	case 0xC2:
	case 0xC3: {
		int k = (int)(t->tag - 0xC1);

		if (t->len == 0 || t->len > sizeof(out->key[k].attr_raw))
			return;
		memcpy(out->key[k].attr_raw, t->value, t->len);
		out->key[k].attr_len = t->len;
		(void)pgp_attr_parse(t->value, t->len, &out->key[k].attr);
		break;
	}
	case 0xC4:
		if (t->len >= sizeof(out->pw_status)) {
			memcpy(out->pw_status, t->value, sizeof(out->pw_status));
			out->have_pw_status = true;
		}
		break;
	case 0xC5:
		if (t->len == 60)
			for (int k = 0; k < PGP_NKEYS; k++)
				(void)tk_buf_get_bytes(&b, out->key[k].fpr, 20);
		break;
	case 0xCD:
		if (t->len == 12)
			for (int k = 0; k < PGP_NKEYS; k++)
				(void)tk_buf_get_u32be(&b, &out->key[k].created);
		break;
	case 0xDE:
		/* pairs: key reference (1..3), status */
		while (tk_buf_left(&b) >= 2) {
			uint8_t ref = 0, st = 0;

			(void)tk_buf_get_u8(&b, &ref);
			(void)tk_buf_get_u8(&b, &st);
			if (ref >= 1 && ref <= PGP_NKEYS)
				out->key[ref - 1].origin = st;
		}
		break;
	default:
		break;
	}
}

int
pgp_ard_parse(const uint8_t *p, size_t n, pgp_ard_t *out)
{
	tk_buf_t b, d;
	tk_tlv_t t, u;
	int r;

	memset(out, 0, sizeof(*out));
	for (int k = 0; k < PGP_NKEYS; k++) {
		out->key[k].origin = 0xFF;
		out->key[k].attr.curve = PGP_CURVE_NONE;
	}
	unwrap(&p, &n, 0x6E);
	tk_buf_init(&b, p, n);
	while (tk_buf_left(&b) > 0) {
		if ((r = tk_ber_get(&b, &t)) != TK_OK)
			return TK_ERR_MALFORMED;
		if (t.tag != 0x73) {
			ard_item(&t, out);
			continue;
		}
		/* discretionary data objects */
		tk_buf_init(&d, t.value, t.len);
		while (tk_buf_left(&d) > 0) {
			if (tk_ber_get(&d, &u) != TK_OK)
				return TK_ERR_MALFORMED;
			ard_item(&u, out);
		}
	}
	/* without the AID this is not an OpenPGP application's data */
	return out->aid_len > 0 ? TK_OK : TK_ERR_MALFORMED;
}

int
pgp_cardholder_parse(const uint8_t *p, size_t n, pgp_cardholder_t *out)
{
	tk_buf_t b;
	tk_tlv_t t;

	memset(out, 0, sizeof(*out));
	unwrap(&p, &n, 0x65);
	tk_buf_init(&b, p, n);
	while (tk_buf_left(&b) > 0) {
		if (tk_ber_get(&b, &t) != TK_OK)
			return TK_ERR_MALFORMED;
		if (t.tag == 0x5B && t.len < sizeof(out->name))
			memcpy(out->name, t.value, t.len);
		else if (t.tag == 0x5F2D && t.len < sizeof(out->lang))
			memcpy(out->lang, t.value, t.len);
		else if (t.tag == 0x5F35 && t.len == 1)
			out->sex = t.value[0];
	}
	return TK_OK;
}

int
pgp_sig_counter_parse(const uint8_t *p, size_t n, uint32_t *count)
{
	tk_tlv_t t;
	tk_buf_t b;

	*count = 0;
	unwrap(&p, &n, 0x7A);
	if (tk_ber_find(p, n, 0x93, &t) != TK_OK || t.len != 3)
		return TK_ERR_MALFORMED;
	tk_buf_init(&b, t.value, t.len);
	return tk_buf_get_u24be(&b, count);
}

int
pgp_kdf_parse(const uint8_t *p, size_t n, pgp_kdf_t *out)
{
	tk_tlv_t t;
	tk_buf_t b;

	memset(out, 0, sizeof(*out));
	unwrap(&p, &n, 0xF9);
	if (n == 0)
		return TK_OK; /* an empty KDF-DO: no KDF */
	if (tk_ber_find(p, n, 0x81, &t) != TK_OK || t.len != 1)
		return TK_ERR_MALFORMED;
	out->algo = t.value[0];
	if (out->algo != PGP_KDF_ITERSALTED_S2K)
		return TK_OK;
	if (tk_ber_find(p, n, 0x82, &t) != TK_OK || t.len != 1)
		return TK_ERR_MALFORMED;
	out->hash = t.value[0];
	if (tk_ber_find(p, n, 0x83, &t) != TK_OK || t.len != 4)
		return TK_ERR_MALFORMED;
	tk_buf_init(&b, t.value, t.len);
	(void)tk_buf_get_u32be(&b, &out->count);
	for (int i = 0; i < 3; i++) {
		if (tk_ber_find(p, n, (uint32_t)(0x84 + i), &t) != TK_OK)
			continue;
		if (t.len != sizeof(out->salt[i]))
			return TK_ERR_MALFORMED;
		memcpy(out->salt[i], t.value, t.len);
		out->have_salt[i] = true;
	}
	return out->have_salt[PGP_PW1] ? TK_OK : TK_ERR_MALFORMED;
}

/* Iterated and salted S2K: salt || pin repeated until count bytes went
 * through the hash (at least once whole). */
static int
s2k(const EVP_MD *md, const uint8_t salt[8], const char *pin, size_t len, uint32_t count,
    uint8_t *out)
{
	uint8_t block[4096];
	size_t unit = 8 + len, per, left;
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	int r = TK_ERR_CRYPTO;

	if (ctx == NULL || unit > sizeof(block))
		goto out;
	/* a block of whole units: fewer calls into the hash for the
	 * millions of bytes a card's count asks for */
	per = sizeof(block) / unit * unit;
	for (size_t off = 0; off < per; off += unit) {
		memcpy(block + off, salt, 8);
		memcpy(block + off + 8, pin, len);
	}
	left = count < unit ? unit : count;
	if (EVP_DigestInit_ex(ctx, md, NULL) != 1)
		goto out;
	while (left > 0) {
		size_t take = left < per ? left : per;

		if (EVP_DigestUpdate(ctx, block, take) != 1)
			goto out;
		left -= take;
	}
	if (EVP_DigestFinal_ex(ctx, out, NULL) == 1)
		r = TK_OK;
out:
	tk_wipe(block, sizeof(block));
	EVP_MD_CTX_free(ctx);
	return r;
}

int
pgp_kdf_pin(const pgp_kdf_t *k, int which, const char *pin, size_t len, uint8_t *out, size_t cap,
            size_t *olen)
{
	const EVP_MD *md;
	int s;

	*olen = 0;
	if (which < PGP_PW1 || which > PGP_PW3)
		return TK_ERR_INVALID_ARG;
	if (k == NULL || k->algo == PGP_KDF_NONE) {
		if (len > cap)
			return TK_ERR_TOO_LONG;
		memcpy(out, pin, len);
		*olen = len;
		return TK_OK;
	}
	if (k->algo != PGP_KDF_ITERSALTED_S2K)
		return TK_ERR_NOT_SUPPORTED;
	md = k->hash == 0x08 ? EVP_sha256() : k->hash == 0x0A ? EVP_sha512() : NULL;
	if (md == NULL || !k->have_salt[PGP_PW1])
		return TK_ERR_NOT_SUPPORTED;
	if ((size_t)EVP_MD_get_size(md) > cap)
		return TK_ERR_TOO_LONG;
	s = k->have_salt[which] ? which : PGP_PW1;
	if (s2k(md, k->salt[s], pin, len, k->count, out) != TK_OK)
		return TK_ERR_CRYPTO;
	*olen = (size_t)EVP_MD_get_size(md);
	return TK_OK;
}

/* ---- public keys ---------------------------------------------------------------------- */

static EVP_PKEY *
rsa_key(const uint8_t *n, size_t nl, const uint8_t *e, size_t el)
{
	OSSL_PARAM_BLD *bld = OSSL_PARAM_BLD_new();
	BIGNUM *bn = BN_bin2bn(n, (int)nl, NULL), *be = BN_bin2bn(e, (int)el, NULL);
	OSSL_PARAM *params = NULL;
	EVP_PKEY_CTX *ctx = NULL;
	EVP_PKEY *pk = NULL;

	if (bld == NULL || bn == NULL || be == NULL ||
	    OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_N, bn) != 1 ||
	    OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_E, be) != 1 ||
	    (params = OSSL_PARAM_BLD_to_param(bld)) == NULL ||
	    (ctx = EVP_PKEY_CTX_new_from_name(NULL, "RSA", NULL)) == NULL ||
	    EVP_PKEY_fromdata_init(ctx) != 1 ||
	    EVP_PKEY_fromdata(ctx, &pk, EVP_PKEY_PUBLIC_KEY, params) != 1)
		pk = NULL;
	EVP_PKEY_CTX_free(ctx);
	OSSL_PARAM_free(params);
	OSSL_PARAM_BLD_free(bld);
	BN_free(bn);
	BN_free(be);
	return pk;
}

static EVP_PKEY *
ec_key(const char *group, const uint8_t *pt, size_t len)
{
	/* OSSL_PARAM wants writable pointers */
	char grp[16];
	uint8_t point[140];
	OSSL_PARAM params[3];
	EVP_PKEY_CTX *ctx = NULL, *chk = NULL;
	EVP_PKEY *pk = NULL;

	if (len > sizeof(point) || strlen(group) >= sizeof(grp))
		return NULL;
	snprintf(grp, sizeof(grp), "%s", group);
	memcpy(point, pt, len);
	ctx = EVP_PKEY_CTX_new_from_name(NULL, "EC", NULL);
	params[0] = OSSL_PARAM_construct_utf8_string(OSSL_PKEY_PARAM_GROUP_NAME, grp, 0);
	params[1] = OSSL_PARAM_construct_octet_string(OSSL_PKEY_PARAM_PUB_KEY, point, len);
	params[2] = OSSL_PARAM_construct_end();
	if (ctx == NULL || EVP_PKEY_fromdata_init(ctx) != 1 ||
	    EVP_PKEY_fromdata(ctx, &pk, EVP_PKEY_PUBLIC_KEY, params) != 1)
		goto out;
	/* a point off the curve is not a key */
	if ((chk = EVP_PKEY_CTX_new_from_pkey(NULL, pk, NULL)) == NULL ||
	    EVP_PKEY_public_check(chk) != 1) {
		EVP_PKEY_free(pk);
		pk = NULL;
	}
out:
	EVP_PKEY_CTX_free(chk);
	EVP_PKEY_CTX_free(ctx);
	return pk;
}

int
pgp_pubkey_parse(const pgp_attr_t *at, const uint8_t *p, size_t n, EVP_PKEY **out)
{
	tk_tlv_t t, tn, te, tp;
	const uint8_t *v;
	size_t vl, fb;
	tk_buf_t b;

	*out = NULL;
	tk_buf_init(&b, p, n);
	if (tk_ber_get(&b, &t) != TK_OK || t.tag != 0x7F49 || tk_buf_left(&b) != 0)
		return TK_ERR_MALFORMED;
	if (at->id == PGP_ID_RSA) {
		if (tk_ber_find(t.value, t.len, 0x81, &tn) != TK_OK ||
		    tk_ber_find(t.value, t.len, 0x82, &te) != TK_OK)
			return TK_ERR_MALFORMED;
		/* no leading zero bytes beyond what the size allows, odd e */
		while (tn.len > 0 && tn.value[0] == 0) {
			tn.value++;
			tn.len--;
		}
		if (tn.len != at->bits / 8 || (tn.value[0] & 0x80) == 0 || te.len == 0 ||
		    te.len > 8 || (te.value[te.len - 1] & 1) == 0)
			return TK_ERR_MALFORMED;
		*out = rsa_key(tn.value, tn.len, te.value, te.len);
	} else if (at->id != 0 && at->curve != PGP_CURVE_NONE) {
		if (tk_ber_find(t.value, t.len, 0x86, &tp) != TK_OK)
			return TK_ERR_MALFORMED;
		v = tp.value;
		vl = tp.len;
		if (is_25519(at->curve)) {
			/* some cards prefix the native point format byte 40 */
			if (vl == 33 && v[0] == 0x40) {
				v++;
				vl--;
			}
			if (vl != 32)
				return TK_ERR_MALFORMED;
			*out = EVP_PKEY_new_raw_public_key(
			        at->curve == PGP_CURVE_ED25519 ? EVP_PKEY_ED25519 : EVP_PKEY_X25519,
			        NULL, v, vl);
		} else {
			fb = (at->bits + 7) / 8;
			if (vl != 1 + 2 * fb || v[0] != 0x04)
				return TK_ERR_MALFORMED;
			*out = ec_key(curves[at->curve].group, v, vl);
		}
	} else {
		return TK_ERR_NOT_SUPPORTED;
	}
	ERR_clear_error();
	return *out != NULL ? TK_OK : TK_ERR_MALFORMED;
}

static bool
same_group(EVP_PKEY *pk, const char *group)
{
	char name[32];
	size_t len = 0;

	if (EVP_PKEY_get_utf8_string_param(pk, OSSL_PKEY_PARAM_GROUP_NAME, name, sizeof(name),
	                                   &len) != 1)
		return false;
	/* OpenSSL names the NIST curves prime256v1, secp384r1, secp521r1 */
	return strcmp(name, group) == 0 ||
	       (strcmp(group, "P-256") == 0 && strcmp(name, "prime256v1") == 0) ||
	       (strcmp(group, "P-384") == 0 && strcmp(name, "secp384r1") == 0) ||
	       (strcmp(group, "P-521") == 0 && strcmp(name, "secp521r1") == 0);
}

bool
pgp_key_fits(const pgp_attr_t *at, EVP_PKEY *pk)
{
	if (pk == NULL || at->id == 0)
		return false;
	if (at->id == PGP_ID_RSA)
		return EVP_PKEY_get_base_id(pk) == EVP_PKEY_RSA &&
		       EVP_PKEY_get_bits(pk) == (int)at->bits;
	if (at->curve == PGP_CURVE_ED25519)
		return EVP_PKEY_get_base_id(pk) == EVP_PKEY_ED25519;
	if (at->curve == PGP_CURVE_CV25519)
		return EVP_PKEY_get_base_id(pk) == EVP_PKEY_X25519;
	return at->curve != PGP_CURVE_NONE && EVP_PKEY_get_base_id(pk) == EVP_PKEY_EC &&
	       same_group(pk, curves[at->curve].group);
}

/* ---- fingerprint ---------------------------------------------------------------------- */

/* An OpenPGP MPI (RFC 4880 3.2): bit count, then the bytes from the first
 * non-zero one. */
static void
put_mpi(tk_wbuf_t *w, const uint8_t *v, size_t len)
{
	unsigned bits;

	while (len > 0 && v[0] == 0) {
		v++;
		len--;
	}
	bits = (unsigned)len * 8;
	for (uint8_t top = len > 0 ? v[0] : 0x80; len > 0 && (top & 0x80) == 0; top <<= 1)
		bits--;
	tk_wbuf_put_u16be(w, (uint16_t)bits);
	tk_wbuf_put_bytes(w, v, len);
}

static int
put_bn_mpi(tk_wbuf_t *w, EVP_PKEY *pk, const char *param)
{
	uint8_t buf[1024];
	BIGNUM *bn = NULL;
	int len, r = TK_ERR_CRYPTO;

	if (EVP_PKEY_get_bn_param(pk, param, &bn) == 1 && BN_num_bytes(bn) <= (int)sizeof(buf) &&
	    (len = BN_bn2bin(bn, buf)) >= 0) {
		put_mpi(w, buf, (size_t)len);
		r = TK_OK;
	}
	BN_free(bn);
	return r;
}

/* The EC point as OpenPGP keeps it: 04 || x || y, or 40 || native (25519). */
static int
ec_point(const pgp_attr_t *at, EVP_PKEY *pk, uint8_t *pt, size_t cap, size_t *len)
{
	size_t l = cap - 1;

	*len = 0;
	if (is_25519(at->curve)) {
		if (EVP_PKEY_get_raw_public_key(pk, pt + 1, &l) != 1 || l != 32)
			return TK_ERR_CRYPTO;
		pt[0] = 0x40;
		*len = l + 1;
		return TK_OK;
	}
	if (EVP_PKEY_get_octet_string_param(pk, OSSL_PKEY_PARAM_ENCODED_PUBLIC_KEY, pt, cap, &l) !=
	    1)
		return TK_ERR_CRYPTO;
	*len = l;
	return TK_OK;
}

int
pgp_fingerprint(const pgp_attr_t *at, EVP_PKEY *pk, uint32_t created, uint8_t fpr[20])
{
	uint8_t body[1200], hdr[3], pt[140];
	size_t pl = 0;
	tk_wbuf_t w;
	EVP_MD_CTX *md = NULL;
	unsigned ol = 0;
	int r = TK_ERR_CRYPTO;

	memset(fpr, 0, 20);
	if (!pgp_key_fits(at, pk))
		return TK_ERR_INVALID_ARG;
	/* the public key packet's body: version 4, creation time, algorithm */
	tk_wbuf_init(&w, body, sizeof(body));
	tk_wbuf_put_u8(&w, 4);
	tk_wbuf_put_u32be(&w, created);
	tk_wbuf_put_u8(&w, at->id);
	if (at->id == PGP_ID_RSA) {
		if (put_bn_mpi(&w, pk, OSSL_PKEY_PARAM_RSA_N) != TK_OK ||
		    put_bn_mpi(&w, pk, OSSL_PKEY_PARAM_RSA_E) != TK_OK)
			goto out;
	} else {
		if (ec_point(at, pk, pt, sizeof(pt), &pl) != TK_OK)
			goto out;
		tk_wbuf_put_u8(&w, curves[at->curve].len);
		tk_wbuf_put_bytes(&w, curves[at->curve].oid, curves[at->curve].len);
		put_mpi(&w, pt, pl);
		if (at->id == PGP_ID_ECDH) {
			/* KDF parameters: size 3, reserved 1, hash, cipher */
			tk_wbuf_put_u8(&w, 3);
			tk_wbuf_put_u8(&w, 1);
			tk_wbuf_put_u8(&w, curves[at->curve].kdf_hash);
			tk_wbuf_put_u8(&w, curves[at->curve].kdf_cipher);
		}
	}
	if (tk_wbuf_error(&w) != TK_OK || w.len > 0xFFFF)
		goto out;
	/* SHA-1 over 99, the two-octet length and the body (RFC 4880 12.2) */
	hdr[0] = 0x99;
	hdr[1] = (uint8_t)(w.len >> 8);
	hdr[2] = (uint8_t)w.len;
	if ((md = EVP_MD_CTX_new()) != NULL && EVP_DigestInit_ex(md, EVP_sha1(), NULL) == 1 &&
	    EVP_DigestUpdate(md, hdr, sizeof(hdr)) == 1 && EVP_DigestUpdate(md, body, w.len) == 1 &&
	    EVP_DigestFinal_ex(md, fpr, &ol) == 1 && ol == 20)
		r = TK_OK;
out:
	EVP_MD_CTX_free(md);
	ERR_clear_error();
	return r;
}

/* ---- key import ----------------------------------------------------------------------- */

/* An element of the import: its tag and length into the header list, its
 * value (big-endian, left-padded to len) into the values. */
static int
put_el(tk_wbuf_t *hl, tk_wbuf_t *vals, uint8_t tag, const BIGNUM *bn, size_t len)
{
	uint8_t *p;

	tk_wbuf_put_u8(hl, tag);
	if (len < 0x80) {
		tk_wbuf_put_u8(hl, (uint8_t)len);
	} else if (len < 0x100) {
		tk_wbuf_put_u8(hl, 0x81);
		tk_wbuf_put_u8(hl, (uint8_t)len);
	} else {
		tk_wbuf_put_u8(hl, 0x82);
		tk_wbuf_put_u16be(hl, (uint16_t)len);
	}
	if (BN_num_bytes(bn) > (int)len || (p = tk_wbuf_reserve(vals, len)) == NULL)
		return TK_ERR_TOO_LONG;
	return BN_bn2binpad(bn, p, (int)len) == (int)len ? TK_OK : TK_ERR_CRYPTO;
}

static int
rsa_elements(const pgp_attr_t *at, EVP_PKEY *pk, tk_wbuf_t *hl, tk_wbuf_t *vals)
{
	static const char *const names[] = {
	        OSSL_PKEY_PARAM_RSA_E,         OSSL_PKEY_PARAM_RSA_FACTOR1,
	        OSSL_PKEY_PARAM_RSA_FACTOR2,   OSSL_PKEY_PARAM_RSA_COEFFICIENT1,
	        OSSL_PKEY_PARAM_RSA_EXPONENT1, OSSL_PKEY_PARAM_RSA_EXPONENT2,
	        OSSL_PKEY_PARAM_RSA_N};
	/* 91 e, 92 p, 93 q, 94 1/q mod p, 95 d mod (p-1), 96 d mod (q-1), 97 n */
	const size_t half = at->bits / 16;
	const size_t lens[] = {(at->ebits + 7) / 8, half, half, half, half, half, at->bits / 8};
	BIGNUM *bn[7] = {NULL};
	int r = TK_OK;

	for (int i = 0; i < 7 && r == TK_OK; i++) {
		bool want =
		        i < 3 || (i < 6 && at->rsa_fmt >= 2) || (i == 6 && at->rsa_fmt % 2 == 1);

		if (!want)
			continue;
		if (EVP_PKEY_get_bn_param(pk, names[i], &bn[i]) != 1)
			r = TK_ERR_CRYPTO;
		else
			r = put_el(hl, vals, (uint8_t)(0x91 + i), bn[i], lens[i]);
	}
	for (int i = 0; i < 7; i++)
		BN_clear_free(bn[i]);
	return r;
}

static int
ec_elements(const pgp_attr_t *at, EVP_PKEY *pk, tk_wbuf_t *hl, tk_wbuf_t *vals)
{
	uint8_t raw[32], pt[140];
	size_t rl = sizeof(raw), pl = 0, fb = (at->bits + 7) / 8;
	BIGNUM *d = NULL, *pub = NULL;
	int r = TK_ERR_CRYPTO;

	if (is_25519(at->curve)) {
		if (EVP_PKEY_get_raw_private_key(pk, raw, &rl) != 1 || rl != 32)
			goto out;
		/* OpenPGP keeps the X25519 scalar big-endian, RFC 7748
		 * little-endian; an Ed25519 seed is a byte string */
		d = at->curve == PGP_CURVE_CV25519 ? BN_lebin2bn(raw, 32, NULL)
		                                   : BN_bin2bn(raw, 32, NULL);
	} else if (EVP_PKEY_get_bn_param(pk, OSSL_PKEY_PARAM_PRIV_KEY, &d) != 1) {
		d = NULL;
	}
	if (d == NULL || (r = put_el(hl, vals, 0x92, d, fb)) != TK_OK)
		goto out;
	if (at->ec_pub) {
		r = TK_ERR_CRYPTO;
		if (ec_point(at, pk, pt, sizeof(pt), &pl) != TK_OK)
			goto out;
		/* the card wants the point as 7F49 86 holds it: 04 x y, or
		 * the 32 bytes of a 25519 key */
		if (is_25519(at->curve)) {
			pub = BN_bin2bn(pt + 1, (int)pl - 1, NULL);
			pl--;
		} else {
			pub = BN_bin2bn(pt, (int)pl, NULL);
		}
		if (pub == NULL)
			goto out;
		r = put_el(hl, vals, 0x99, pub, pl);
	}
out:
	tk_wipe(raw, sizeof(raw));
	BN_clear_free(d);
	BN_free(pub);
	return r;
}

int
pgp_import_encode(const pgp_attr_t *at, int key, EVP_PKEY *pk, tk_wbuf_t *w)
{
	static const uint8_t crt[PGP_NKEYS] = {0xB6, 0xB8, 0xA4};
	uint8_t hlbuf[32], *vbuf = NULL;
	const size_t vcap = 4096;
	tk_wbuf_t hl, vals;
	size_t inner;
	int r;

	if (key < 0 || key >= PGP_NKEYS || !pgp_key_fits(at, pk))
		return TK_ERR_INVALID_ARG;
	if ((vbuf = malloc(vcap)) == NULL)
		return TK_ERR_NO_MEMORY;
	tk_wbuf_init(&hl, hlbuf, sizeof(hlbuf));
	tk_wbuf_init(&vals, vbuf, vcap);
	r = at->id == PGP_ID_RSA ? rsa_elements(at, pk, &hl, &vals)
	                         : ec_elements(at, pk, &hl, &vals);
	if (r == TK_OK && (tk_wbuf_error(&hl) != TK_OK || tk_wbuf_error(&vals) != TK_OK))
		r = TK_ERR_TOO_LONG;
	if (r != TK_OK)
		goto out;
	/* 4D { CRT, 7F48 { header list }, 5F48 { values } } */
	inner = 2 + tk_ber_hdr_len(0x7F48, hl.len) + hl.len + tk_ber_hdr_len(0x5F48, vals.len) +
	        vals.len;
	tk_ber_put_hdr(w, 0x4D, inner);
	tk_ber_put(w, crt[key], NULL, 0);
	tk_ber_put(w, 0x7F48, hlbuf, hl.len);
	tk_ber_put(w, 0x5F48, vbuf, vals.len);
	r = tk_wbuf_error(w) == TK_OK ? TK_OK : TK_ERR_TOO_LONG;
out:
	tk_freezero(vbuf, vcap);
	ERR_clear_error();
	return r;
}
