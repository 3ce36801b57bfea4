/* tokenkit virtual card, OpenPGP applet: its records in the state file
 * (state.c has the file's frame). All integers big-endian.
 *   20 PW1      tries, length, secret
 *   21 PW3      tries, length, secret
 *   22 RC       tries, length, secret (length 0: no resetting code)
 *   23 FLAGS    PW1 multi-use, terminated, sex, signature counter u32
 *   24 NAME, 25 LANGUAGE, 26 URL, 27 LOGIN DATA, 28 KDF-DO: the bytes
 *   30+k KEYMETA   attribute length, attributes, origin, fingerprint[20],
 *                  CA fingerprint[20], date[4]     (k: 0 SIG, 1 DEC, 2 AUT)
 *   34+k KEY       the private key, DER
 *   38+k CERT      the cardholder certificate
 * PW1, PW3, RC, FLAGS and the three KEYMETA records are required, every
 * record appears at most once, and a key must fit its attributes. */
#include <stdlib.h>
#include <string.h>

#include <openssl/x509.h>

#include <tokenkit/err.h>
#include <tokenkit/mem.h>
#include <tokenkit/tlv.h>

#include "pgp_int.h"

enum {
	P_PW1 = 0x20,
	P_PW3 = 0x21,
	P_RC = 0x22,
	P_FLAGS = 0x23,
	P_NAME = 0x24,
	P_LANG = 0x25,
	P_URL = 0x26,
	P_LOGIN = 0x27,
	P_KDF = 0x28,
	P_KEYMETA = 0x30,
	P_KEY = 0x34,
	P_CERT = 0x38,
	P_LAST = 0x3A,
};

#define SEEN(type) (1u << ((type)-P_PW1))
#define REQUIRED                                                                                   \
	(SEEN(P_PW1) | SEEN(P_PW3) | SEEN(P_RC) | SEEN(P_FLAGS) | SEEN(P_KEYMETA) |                \
	 SEEN(P_KEYMETA + 1) | SEEN(P_KEYMETA + 2))

bool
vc_pgp_state_type(uint8_t type)
{
	if (type >= P_PW1 && type <= P_KDF)
		return true;
	/* three of each: 30..32, 34..36, 38..3A */
	return type >= P_KEYMETA && type <= P_LAST && (type & 0x03) != 0x03;
}

static void
hdr(tk_wbuf_t *w, uint8_t type, size_t len)
{
	tk_wbuf_put_u8(w, type);
	tk_wbuf_put_u32be(w, (uint32_t)len);
}

static void
put_pw(tk_wbuf_t *w, uint8_t type, const struct pgp_pw *pw)
{
	hdr(w, type, 2 + (size_t)pw->len);
	tk_wbuf_put_u8(w, pw->tries);
	tk_wbuf_put_u8(w, pw->len);
	tk_wbuf_put_bytes(w, pw->v, pw->len);
}

static void
put_bytes(tk_wbuf_t *w, uint8_t type, const uint8_t *p, size_t n)
{
	if (n == 0)
		return;
	hdr(w, type, n);
	tk_wbuf_put_bytes(w, p, n);
}

size_t
vc_pgp_state_size(const struct vc_pgp *p)
{
	size_t n = 1024;

	for (int i = 0; i < PGP_NKEYS; i++)
		n += 16 + p->keys[i].cert_len + 2600; /* RSA-4096 private DER: ~2350 */
	return n;
}

int
vc_pgp_state_encode(const struct vc_pgp *p, tk_wbuf_t *w)
{
	put_pw(w, P_PW1, &p->pw1);
	put_pw(w, P_PW3, &p->pw3);
	put_pw(w, P_RC, &p->rc);
	hdr(w, P_FLAGS, 7);
	tk_wbuf_put_u8(w, p->pw1_multi);
	tk_wbuf_put_u8(w, p->terminated ? 1 : 0);
	tk_wbuf_put_u8(w, p->sex);
	tk_wbuf_put_u32be(w, p->sig_count);
	put_bytes(w, P_NAME, p->name, p->name_len);
	put_bytes(w, P_LANG, p->lang, p->lang_len);
	put_bytes(w, P_URL, p->url, p->url_len);
	put_bytes(w, P_LOGIN, p->login, p->login_len);
	put_bytes(w, P_KDF, p->kdf, p->kdf_len);
	for (int i = 0; i < PGP_NKEYS; i++) {
		const struct pgp_key *k = &p->keys[i];
		uint8_t *der;
		int n;

		hdr(w, (uint8_t)(P_KEYMETA + i), 1 + (size_t)k->attr_len + 1 + 44);
		tk_wbuf_put_u8(w, k->attr_len);
		tk_wbuf_put_bytes(w, k->attr, k->attr_len);
		tk_wbuf_put_u8(w, k->origin);
		tk_wbuf_put_bytes(w, k->fpr, 20);
		tk_wbuf_put_bytes(w, k->ca_fpr, 20);
		tk_wbuf_put_bytes(w, k->date, 4);
		put_bytes(w, (uint8_t)(P_CERT + i), k->cert, k->cert_len);
		if (k->pkey == NULL)
			continue;
		if ((n = i2d_PrivateKey(k->pkey, NULL)) <= 0)
			return TK_ERR_CRYPTO;
		hdr(w, (uint8_t)(P_KEY + i), (size_t)n);
		if ((der = tk_wbuf_reserve(w, (size_t)n)) == NULL)
			break;
		if (i2d_PrivateKey(k->pkey, &der) != n)
			return TK_ERR_CRYPTO;
	}
	return tk_wbuf_error(w);
}

static int
get_pw(tk_buf_t *v, struct pgp_pw *pw, bool may_be_empty)
{
	uint8_t tries, len;

	if (tk_buf_get_u8(v, &tries) != TK_OK || tk_buf_get_u8(v, &len) != TK_OK ||
	    len > PGP_PW_MAX || tk_buf_left(v) != len || tries > PGP_TRIES ||
	    (len == 0 && (!may_be_empty || tries != 0)))
		return TK_ERR_MALFORMED;
	tk_wipe(pw->v, sizeof(pw->v));
	if (tk_buf_get_bytes(v, pw->v, len) != TK_OK)
		return TK_ERR_MALFORMED;
	pw->len = len;
	pw->tries = tries;
	return TK_OK;
}

static int
get_small(tk_buf_t *v, uint8_t *dst, uint8_t *len, size_t max)
{
	size_t n = tk_buf_left(v);

	if (n == 0 || n > max || tk_buf_get_bytes(v, dst, n) != TK_OK)
		return TK_ERR_MALFORMED;
	*len = (uint8_t)n;
	return TK_OK;
}

static int
get_keymeta(tk_buf_t *v, struct pgp_key *k)
{
	uint8_t alen;

	if (tk_buf_get_u8(v, &alen) != TK_OK || alen == 0 || alen > PGP_ATTR_MAX ||
	    tk_buf_get_bytes(v, k->attr, alen) != TK_OK || tk_buf_get_u8(v, &k->origin) != TK_OK ||
	    k->origin > 2 || tk_buf_get_bytes(v, k->fpr, 20) != TK_OK ||
	    tk_buf_get_bytes(v, k->ca_fpr, 20) != TK_OK ||
	    tk_buf_get_bytes(v, k->date, 4) != TK_OK || tk_buf_left(v) != 0)
		return TK_ERR_MALFORMED;
	k->attr_len = alen;
	return TK_OK;
}

static int
get_key(tk_buf_t *v, struct pgp_key *k)
{
	size_t n = tk_buf_left(v);
	const uint8_t *der, *q;

	if (n == 0 || n > 8192 || tk_buf_get_ptr(v, &der, n) != TK_OK)
		return TK_ERR_MALFORMED;
	q = der;
	if ((k->pkey = d2i_AutoPrivateKey(NULL, &q, (long)n)) == NULL)
		return TK_ERR_MALFORMED;
	return (size_t)(q - der) == n ? TK_OK : TK_ERR_MALFORMED;
}

static int
get_cert(tk_buf_t *v, struct pgp_key *k)
{
	size_t n = tk_buf_left(v);

	if (n == 0 || n > PGP_CERT_MAX || (k->cert = malloc(n)) == NULL)
		return TK_ERR_MALFORMED;
	k->cert_len = n;
	return tk_buf_get_bytes(v, k->cert, n) == TK_OK ? TK_OK : TK_ERR_MALFORMED;
}

int
vc_pgp_state_record(struct vc_pgp *p, uint8_t type, tk_buf_t *v, unsigned *seen)
{
	int k = type & 0x03;
	uint8_t term;

	if (!vc_pgp_state_type(type) || (*seen & SEEN(type)) != 0)
		return TK_ERR_MALFORMED;
	*seen |= SEEN(type);
	switch (type) {
	case P_PW1:
		return get_pw(v, &p->pw1, false);
	case P_PW3:
		return get_pw(v, &p->pw3, false);
	case P_RC:
		return get_pw(v, &p->rc, true);
	case P_FLAGS:
		if (tk_buf_get_u8(v, &p->pw1_multi) != TK_OK || tk_buf_get_u8(v, &term) != TK_OK ||
		    tk_buf_get_u8(v, &p->sex) != TK_OK ||
		    tk_buf_get_u32be(v, &p->sig_count) != TK_OK || tk_buf_left(v) != 0 ||
		    p->pw1_multi > 1 || term > 1 || p->sig_count > PGP_SIG_COUNT_MAX)
			return TK_ERR_MALFORMED;
		p->terminated = term == 1;
		return TK_OK;
	case P_NAME:
		return get_small(v, p->name, &p->name_len, PGP_NAME_MAX);
	case P_LANG:
		return get_small(v, p->lang, &p->lang_len, PGP_LANG_MAX);
	case P_URL:
		return get_small(v, p->url, &p->url_len, PGP_URL_MAX);
	case P_LOGIN:
		return get_small(v, p->login, &p->login_len, PGP_LOGIN_MAX);
	case P_KDF:
		if (get_small(v, p->kdf, &p->kdf_len, PGP_KDF_MAX) != TK_OK ||
		    tk_ber_validate(p->kdf, p->kdf_len, 0) != TK_OK)
			return TK_ERR_MALFORMED;
		return TK_OK;
	default:
		break;
	}
	if (type < P_KEY)
		return get_keymeta(v, &p->keys[k]);
	if (type < P_CERT)
		return get_key(v, &p->keys[k]);
	return get_cert(v, &p->keys[k]);
}

int
vc_pgp_state_check(const struct vc_pgp *p, unsigned seen)
{
	struct pgp_attr at;

	if ((seen & REQUIRED) != REQUIRED)
		return TK_ERR_MALFORMED;
	for (int i = 0; i < PGP_NKEYS; i++) {
		const struct pgp_key *k = &p->keys[i];

		if (vc_pgp_attr_parse(k->attr, k->attr_len, i, &at) != TK_OK)
			return TK_ERR_MALFORMED;
		if (k->pkey != NULL && (k->origin == 0 || !vc_pgp_key_fits(k->pkey, &at)))
			return TK_ERR_MALFORMED;
	}
	return TK_OK;
}
