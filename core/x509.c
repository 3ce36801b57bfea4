/* tokenkit: X.509 certificate and SubjectPublicKeyInfo fields by walking
 * the DER (RFC 5280 4.1, RFC 3279 2.3; what is and is not checked: x509.h). */
#include <stdlib.h>
#include <string.h>

#include <tokenkit/buf.h>
#include <tokenkit/err.h>
#include <tokenkit/token.h>

#include "x509.h"

#define DER_SEQUENCE 0x30
#define DER_SET 0x31
#define DER_INTEGER 0x02
#define DER_BIT_STRING 0x03
#define DER_OCTET_STRING 0x04
#define DER_NULL 0x05
#define DER_OID 0x06
#define DER_BOOLEAN 0x01
#define DER_UTC_TIME 0x17
#define DER_GEN_TIME 0x18
#define DER_CTX0 0xA0 /* [0] EXPLICIT version */
#define DER_CTX1 0x81 /* [1] IMPLICIT issuerUniqueID */
#define DER_CTX2 0x82 /* [2] IMPLICIT subjectUniqueID */
#define DER_CTX3 0xA3 /* [3] EXPLICIT extensions */
#define DER_MAX_TAG_BYTES 4

/* One DER object. */
struct der {
	uint32_t tag;         /* tag bytes, big-endian */
	const uint8_t *start; /* tag, length and value */
	size_t total;
	tk_buf_t value;
};

/* A universal tag in the form DER gives it (X.690 8.1.2, 10.2): SEQUENCE,
 * SET, EXTERNAL and EMBEDDED PDV constructed, the others primitive; 0
 * (end-of-contents) and the reserved 15 never; NULL empty. Other classes
 * are the application's business. */
static int
der_universal_ok(uint32_t tag, size_t len)
{
	unsigned num = tag & 0x1Fu;
	bool constructed = (tag & 0x20u) != 0;

	if (tag > 0xFF || (tag & 0xC0u) != 0)
		return TK_OK;
	if (num == 0 || num == 15 || num == 0x1F)
		return TK_ERR_MALFORMED;
	if (constructed != (num == 16 || num == 17 || num == 8 || num == 11))
		return TK_ERR_MALFORMED;
	if (num == DER_NULL && len != 0)
		return TK_ERR_MALFORMED;
	return TK_OK;
}

/* The next object of b: definite, minimal length within b. On error b does
 * not move. */
static int
der_get(tk_buf_t *b, struct der *d)
{
	tk_buf_t t = *b;
	uint8_t c;
	size_t len = 0, nlen;
	int r;

	memset(d, 0, sizeof(*d));
	d->start = b->data + b->pos;
	if ((r = tk_buf_get_u8(&t, &c)) != TK_OK)
		return r;
	d->tag = c;
	if ((c & 0x1F) == 0x1F) { /* high tag number: bit 8 set on all but the last */
		size_t n = 1;

		do {
			if (n++ == DER_MAX_TAG_BYTES)
				return TK_ERR_MALFORMED;
			if ((r = tk_buf_get_u8(&t, &c)) != TK_OK)
				return r;
			if (n == 2 && (c == 0x80 || c < 0x1F))
				return TK_ERR_MALFORMED; /* padded, or one that fits one byte */
			d->tag = d->tag << 8 | c;
		} while (c & 0x80);
	}
	if ((r = tk_buf_get_u8(&t, &c)) != TK_OK)
		return r;
	if (c < 0x80) {
		len = c;
	} else {
		nlen = c & 0x7Fu;
		if (nlen == 0 || nlen > 4)
			return TK_ERR_MALFORMED; /* indefinite, or a length past 4 GiB */
		for (size_t i = 0; i < nlen; i++) {
			if ((r = tk_buf_get_u8(&t, &c)) != TK_OK)
				return r;
			if (i == 0 && c == 0)
				return TK_ERR_MALFORMED; /* not minimal */
			len = len << 8 | c;
		}
		if (len < 0x80)
			return TK_ERR_MALFORMED; /* the short form would do */
	}
	if ((r = tk_buf_get_sub(&t, &d->value, len)) != TK_OK)
		return r;
	if ((r = der_universal_ok(d->tag, len)) != TK_OK)
		return r;
	d->total = t.pos - b->pos;
	*b = t;
	return TK_OK;
}

/* The next object, which must carry tag. */
static int
der_expect(tk_buf_t *b, uint32_t tag, struct der *d)
{
	tk_buf_t save = *b;
	int r = der_get(b, d);

	if (r == TK_OK && d->tag != tag) {
		*b = save;
		return TK_ERR_MALFORMED;
	}
	return r;
}

/* Peek: is the next object's first tag byte tag? */
static bool
der_next_is(const tk_buf_t *b, uint8_t tag)
{
	uint8_t c;

	return tk_buf_peek_u8(b, &c) == TK_OK && c == tag;
}

static int
der_end(const tk_buf_t *b)
{
	return tk_buf_left(b) == 0 ? TK_OK : TK_ERR_MALFORMED;
}

/* A minimal INTEGER value (X.690 8.3.2: no leading 00 before a byte below
 * 80, no leading FF before a byte from 80 on). */
static int
der_integer_ok(const tk_buf_t *v)
{
	const uint8_t *p = v->data + v->pos;
	size_t n = tk_buf_left(v);

	if (n == 0)
		return TK_ERR_MALFORMED;
	if (n > 1 && ((p[0] == 0x00 && p[1] < 0x80) || (p[0] == 0xFF && p[1] >= 0x80)))
		return TK_ERR_MALFORMED;
	return TK_OK;
}

/* A positive INTEGER's magnitude (no leading zero). */
static int
der_unsigned(const struct der *d, const uint8_t **p, size_t *n)
{
	tk_buf_t v = d->value;
	const uint8_t *q = v.data + v.pos;
	size_t len = tk_buf_left(&v);
	int r;

	if ((r = der_integer_ok(&v)) != TK_OK)
		return r;
	if (q[0] >= 0x80)
		return TK_ERR_MALFORMED; /* negative */
	if (q[0] == 0x00) {
		q++;
		len--;
	}
	if (len == 0)
		return TK_ERR_MALFORMED; /* zero */
	*p = q;
	*n = len;
	return TK_OK;
}

/* A BIT STRING value (X.690 8.6.2, 11.2): the count of unused bits (at
 * most 7, 0 when there are no bits), then the bits, the unused ones 0.
 * whole: no unused bits at all (a key). */
static int
der_bits_ok(const struct der *d, bool whole)
{
	const uint8_t *p = d->value.data + d->value.pos;
	size_t n = tk_buf_left(&d->value);

	if (n == 0 || p[0] > 7 || (n == 1 && p[0] != 0) || (whole && p[0] != 0))
		return TK_ERR_MALFORMED;
	if (p[0] != 0 && (p[n - 1] & ((1u << p[0]) - 1u)) != 0)
		return TK_ERR_MALFORMED;
	return TK_OK;
}

static bool
der_is_oid(const struct der *d, const uint8_t *oid, size_t len)
{
	return tk_buf_left(&d->value) == len && memcmp(d->value.data + d->value.pos, oid, len) == 0;
}

/* An OBJECT IDENTIFIER value: subidentifiers in base 128, each minimal. */
static int
der_oid_ok(const struct der *d)
{
	const uint8_t *p = d->value.data + d->value.pos;
	size_t n = tk_buf_left(&d->value);

	if (n == 0 || (p[n - 1] & 0x80) != 0)
		return TK_ERR_MALFORMED;
	for (size_t i = 0; i < n; i++)
		if (p[i] == 0x80 && (i == 0 || (p[i - 1] & 0x80) == 0))
			return TK_ERR_MALFORMED; /* a subidentifier padded with zeros */
	return TK_OK;
}

/* AlgorithmIdentifier ::= SEQUENCE { algorithm OID, parameters ANY OPTIONAL } */
static int
der_algorithm(tk_buf_t *b, struct der *oid, struct der *params, bool *has_params)
{
	struct der seq;
	int r;

	*has_params = false;
	if ((r = der_expect(b, DER_SEQUENCE, &seq)) != TK_OK)
		return r;
	if ((r = der_expect(&seq.value, DER_OID, oid)) != TK_OK || (r = der_oid_ok(oid)) != TK_OK)
		return r;
	if (tk_buf_left(&seq.value) > 0) {
		if ((r = der_get(&seq.value, params)) != TK_OK)
			return r;
		*has_params = true;
	}
	return der_end(&seq.value);
}

/* Name ::= SEQUENCE OF SET OF SEQUENCE { type OID, value ANY } */
static int
der_name(tk_buf_t *b, struct der *name)
{
	struct der rdn, atv, x;
	int r;

	if ((r = der_expect(b, DER_SEQUENCE, name)) != TK_OK)
		return r;
	while (tk_buf_left(&name->value) > 0) {
		if ((r = der_expect(&name->value, DER_SET, &rdn)) != TK_OK)
			return r;
		if (tk_buf_left(&rdn.value) == 0)
			return TK_ERR_MALFORMED; /* SET SIZE (1..MAX) */
		while (tk_buf_left(&rdn.value) > 0) {
			if ((r = der_expect(&rdn.value, DER_SEQUENCE, &atv)) != TK_OK ||
			    (r = der_expect(&atv.value, DER_OID, &x)) != TK_OK ||
			    (r = der_oid_ok(&x)) != TK_OK ||
			    (r = der_get(&atv.value, &x)) != TK_OK ||
			    (r = der_end(&atv.value)) != TK_OK)
				return r;
		}
	}
	return TK_OK;
}

static bool
digits(const uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (p[i] < '0' || p[i] > '9')
			return false;
	return true;
}

static unsigned
num2(const uint8_t *p)
{
	return (unsigned)(p[0] - '0') * 10u + (unsigned)(p[1] - '0');
}

/* YYYYMMDDHHMMSS, all digits: a real moment? */
static bool
valid_time(const uint8_t *t)
{
	static const uint8_t mdays[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
	unsigned y = num2(t) * 100u + num2(t + 2), mo = num2(t + 4), d = num2(t + 6);
	bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;

	if (mo < 1 || mo > 12 || d < 1 || num2(t + 8) > 23 || num2(t + 10) > 59 ||
	    num2(t + 12) > 59)
		return false;
	return d <= mdays[mo - 1] + (mo == 2 && leap ? 1u : 0u);
}

/* Time ::= UTCTime | GeneralizedTime. The date as YYYYMMDD when the time
 * has RFC 5280's form (4.1.2.5: YYMMDDHHMMSSZ, YYYYMMDDHHMMSSZ) and is a
 * real moment, else "". */
static int
der_time(tk_buf_t *b, char out[9])
{
	struct der t;
	const uint8_t *p;
	uint8_t full[14];
	size_t n;
	int r;

	out[0] = '\0';
	if ((r = der_get(b, &t)) != TK_OK)
		return r;
	if (t.tag != DER_UTC_TIME && t.tag != DER_GEN_TIME)
		return TK_ERR_MALFORMED;
	p = t.value.data + t.value.pos;
	n = tk_buf_left(&t.value);
	if (t.tag == DER_UTC_TIME && n == 13 && p[12] == 'Z' && digits(p, 12)) {
		/* RFC 5280: YY from 50 on is 19YY, below 50 20YY */
		memcpy(full, p[0] >= '5' ? "19" : "20", 2);
		memcpy(full + 2, p, 12);
	} else if (t.tag == DER_GEN_TIME && n == 15 && p[14] == 'Z' && digits(p, 14)) {
		memcpy(full, p, 14);
	} else {
		return TK_OK;
	}
	if (valid_time(full)) {
		memcpy(out, full, 8);
		out[8] = '\0';
	}
	return TK_OK;
}

/* Extensions ::= SEQUENCE SIZE (1..MAX) OF Extension
 * Extension ::= SEQUENCE { extnID OID, critical BOOLEAN DEFAULT FALSE,
 *                          extnValue OCTET STRING } */
static int
der_extensions(const struct der *ctx3)
{
	tk_buf_t in = ctx3->value;
	struct der list, ext, x;
	int r;

	if ((r = der_expect(&in, DER_SEQUENCE, &list)) != TK_OK || (r = der_end(&in)) != TK_OK)
		return r;
	if (tk_buf_left(&list.value) == 0)
		return TK_ERR_MALFORMED;
	while (tk_buf_left(&list.value) > 0) {
		if ((r = der_expect(&list.value, DER_SEQUENCE, &ext)) != TK_OK ||
		    (r = der_expect(&ext.value, DER_OID, &x)) != TK_OK ||
		    (r = der_oid_ok(&x)) != TK_OK)
			return r;
		if (der_next_is(&ext.value, DER_BOOLEAN) &&
		    ((r = der_get(&ext.value, &x)) != TK_OK || tk_buf_left(&x.value) != 1))
			return r != TK_OK ? r : TK_ERR_MALFORMED;
		if ((r = der_expect(&ext.value, DER_OCTET_STRING, &x)) != TK_OK ||
		    (r = der_end(&ext.value)) != TK_OK)
			return r;
	}
	return TK_OK;
}

/* The TBSCertificate (RFC 5280 4.1). */
static int
parse_tbs(tk_buf_t *tbs, tk_x509_t *out)
{
	struct der x, y, validity, spki;
	bool has_params;
	int r;

	if (der_next_is(tbs, DER_CTX0)) {
		tk_buf_t v;

		if ((r = der_get(tbs, &x)) != TK_OK)
			return r;
		v = x.value;
		/* Version ::= INTEGER { v1(0), v2(1), v3(2) }; v1 is never written */
		if ((r = der_expect(&v, DER_INTEGER, &y)) != TK_OK || (r = der_end(&v)) != TK_OK)
			return r;
		if (tk_buf_left(&y.value) != 1 || y.value.data[y.value.pos] > 2)
			return TK_ERR_MALFORMED;
	}
	if ((r = der_expect(tbs, DER_INTEGER, &x)) != TK_OK ||
	    (r = der_integer_ok(&x.value)) != TK_OK)
		return r;
	out->serial = x.start;
	out->serial_len = x.total;
	if ((r = der_algorithm(tbs, &x, &y, &has_params)) != TK_OK)
		return r;
	if ((r = der_name(tbs, &x)) != TK_OK)
		return r;
	out->issuer = x.start;
	out->issuer_len = x.total;
	if ((r = der_expect(tbs, DER_SEQUENCE, &validity)) != TK_OK ||
	    (r = der_time(&validity.value, out->not_before)) != TK_OK ||
	    (r = der_time(&validity.value, out->not_after)) != TK_OK ||
	    (r = der_end(&validity.value)) != TK_OK)
		return r;
	if ((r = der_name(tbs, &x)) != TK_OK)
		return r;
	out->subject = x.start;
	out->subject_len = x.total;
	/* SubjectPublicKeyInfo ::= SEQUENCE { algorithm, subjectPublicKey BIT STRING } */
	if ((r = der_expect(tbs, DER_SEQUENCE, &spki)) != TK_OK)
		return r;
	out->spki = spki.start;
	out->spki_len = spki.total;
	if ((r = der_algorithm(&spki.value, &x, &y, &has_params)) != TK_OK ||
	    (r = der_expect(&spki.value, DER_BIT_STRING, &x)) != TK_OK ||
	    (r = der_bits_ok(&x, true)) != TK_OK || (r = der_end(&spki.value)) != TK_OK)
		return r;
	/* [1] issuerUniqueID, [2] subjectUniqueID, [3] extensions, in order */
	if (der_next_is(tbs, DER_CTX1) && (r = der_get(tbs, &x)) != TK_OK)
		return r;
	if (der_next_is(tbs, DER_CTX2) && (r = der_get(tbs, &x)) != TK_OK)
		return r;
	if (der_next_is(tbs, DER_CTX3) &&
	    ((r = der_get(tbs, &x)) != TK_OK || (r = der_extensions(&x)) != TK_OK))
		return r;
	return der_end(tbs);
}

/* Clear out (out_size bytes) and read the one SEQUENCE that is all of der. */
static int
der_whole(const uint8_t *der, size_t len, void *out, size_t out_size, struct der *seq)
{
	tk_buf_t b;
	int r;

	if (out != NULL)
		memset(out, 0, out_size);
	if (der == NULL || out == NULL)
		return TK_ERR_INVALID_ARG;
	tk_buf_init(&b, der, len);
	if ((r = der_expect(&b, DER_SEQUENCE, seq)) != TK_OK)
		return r;
	return der_end(&b);
}

int
tk_x509_parse(const uint8_t *der, size_t len, tk_x509_t *out)
{
	struct der cert, tbs, alg, params, sig;
	bool has_params;
	int r;

	/* Certificate ::= SEQUENCE { tbsCertificate, signatureAlgorithm, signatureValue } */
	if ((r = der_whole(der, len, out, sizeof(*out), &cert)) != TK_OK)
		return r;
	if ((r = der_expect(&cert.value, DER_SEQUENCE, &tbs)) != TK_OK ||
	    (r = parse_tbs(&tbs.value, out)) != TK_OK)
		goto fail;
	if ((r = der_algorithm(&cert.value, &alg, &params, &has_params)) != TK_OK ||
	    (r = der_expect(&cert.value, DER_BIT_STRING, &sig)) != TK_OK ||
	    (r = der_bits_ok(&sig, false)) != TK_OK || (r = der_end(&cert.value)) != TK_OK)
		goto fail;
	return TK_OK;
fail:
	memset(out, 0, sizeof(*out));
	return r;
}

/* ---- public keys ----------------------------------------------------------------- */

static const uint8_t oid_rsa[] = {0x2A, 0x86, 0x48, 0x86, 0xF7, 0x0D, 0x01, 0x01, 0x01};
static const uint8_t oid_ec[] = {0x2A, 0x86, 0x48, 0xCE, 0x3D, 0x02, 0x01};
static const uint8_t oid_ed25519[] = {0x2B, 0x65, 0x70}; /* RFC 8410 */

static const struct curve {
	uint8_t oid[8];
	size_t oid_len;
	unsigned bits;
	size_t field; /* bytes of one coordinate */
} curves[] = {
        {{0x2A, 0x86, 0x48, 0xCE, 0x3D, 0x03, 0x01, 0x07}, 8, 256, 32}, /* P-256 */
        {{0x2B, 0x81, 0x04, 0x00, 0x22}, 5, 384, 48},                   /* P-384 */
        {{0x2B, 0x81, 0x04, 0x00, 0x23}, 5, 521, 66},                   /* P-521 */
};

static unsigned
bit_length(const uint8_t *p, size_t n)
{
	unsigned b = 0;

	for (uint8_t top = p[0]; top != 0; top >>= 1)
		b++;
	return (unsigned)(n - 1) * 8u + b;
}

/* RSAPublicKey ::= SEQUENCE { modulus INTEGER, publicExponent INTEGER } */
static int
spki_rsa(tk_buf_t *key, tk_spki_t *out)
{
	struct der seq, n, e;
	int r;

	if ((r = der_expect(key, DER_SEQUENCE, &seq)) != TK_OK || (r = der_end(key)) != TK_OK ||
	    (r = der_expect(&seq.value, DER_INTEGER, &n)) != TK_OK ||
	    (r = der_expect(&seq.value, DER_INTEGER, &e)) != TK_OK ||
	    (r = der_end(&seq.value)) != TK_OK)
		return r;
	if ((r = der_unsigned(&n, &out->n, &out->n_len)) != TK_OK ||
	    (r = der_unsigned(&e, &out->e, &out->e_len)) != TK_OK)
		return r;
	out->key_type = TK_KEY_RSA;
	out->bits = bit_length(out->n, out->n_len);
	return TK_OK;
}

/* ECPoint (RFC 5480 2.2): 04 || X || Y, or 02/03 || X, on a named curve. */
static int
spki_ec(const struct der *params, tk_buf_t *key, tk_spki_t *out)
{
	const struct curve *c = NULL;
	const uint8_t *pt = key->data + key->pos;
	size_t n = tk_buf_left(key);

	if (params->tag != DER_OID)
		return TK_ERR_NOT_SUPPORTED; /* explicit parameters, implicitCA */
	for (size_t i = 0; i < sizeof(curves) / sizeof(curves[0]) && c == NULL; i++)
		if (der_is_oid(params, curves[i].oid, curves[i].oid_len))
			c = &curves[i];
	if (c == NULL)
		return TK_ERR_NOT_SUPPORTED;
	if (n == 0 || !((pt[0] == 0x04 && n == 1 + 2 * c->field) ||
	                ((pt[0] == 0x02 || pt[0] == 0x03) && n == 1 + c->field)))
		return TK_ERR_MALFORMED;
	out->key_type = TK_KEY_EC;
	out->bits = c->bits;
	out->curve = params->start;
	out->curve_len = params->total;
	out->point = pt;
	out->point_len = n;
	return TK_OK;
}

/* id-Ed25519 (RFC 8410 3): no parameters, the key is the 32-byte encoding
 * of the point. curve is the algorithm's OID (what CKA_EC_PARAMS holds for
 * an Edwards key), point the 32 bytes. */
static int
spki_ed25519(const struct der *oid, bool has_params, tk_buf_t *key, tk_spki_t *out)
{
	if (has_params || tk_buf_left(key) != 32)
		return TK_ERR_MALFORMED;
	out->key_type = TK_KEY_ED25519;
	out->bits = 255;
	out->curve = oid->start;
	out->curve_len = oid->total;
	out->point = key->data + key->pos;
	out->point_len = 32;
	return TK_OK;
}

int
tk_spki_parse(const uint8_t *der, size_t len, tk_spki_t *out)
{
	struct der spki, oid, params, bits;
	uint8_t unused;
	bool has_params;
	int r;

	if ((r = der_whole(der, len, out, sizeof(*out), &spki)) != TK_OK)
		return r;
	if ((r = der_algorithm(&spki.value, &oid, &params, &has_params)) != TK_OK ||
	    (r = der_expect(&spki.value, DER_BIT_STRING, &bits)) != TK_OK ||
	    (r = der_bits_ok(&bits, true)) != TK_OK || (r = der_end(&spki.value)) != TK_OK)
		goto fail;
	/* the key is a whole number of bytes (der_bits_ok): skip the count */
	(void)tk_buf_get_u8(&bits.value, &unused);
	if (der_is_oid(&oid, oid_rsa, sizeof(oid_rsa))) {
		/* parameters NULL (RFC 3279), or left out */
		if (has_params && (params.tag != DER_NULL || tk_buf_left(&params.value) != 0)) {
			r = TK_ERR_MALFORMED;
			goto fail;
		}
		r = spki_rsa(&bits.value, out);
	} else if (der_is_oid(&oid, oid_ec, sizeof(oid_ec))) {
		r = has_params ? spki_ec(&params, &bits.value, out) : TK_ERR_MALFORMED;
	} else if (der_is_oid(&oid, oid_ed25519, sizeof(oid_ed25519))) {
		r = spki_ed25519(&oid, has_params, &bits.value, out);
	} else {
		r = TK_ERR_NOT_SUPPORTED;
	}
	if (r == TK_OK)
		return TK_OK;
fail:
	memset(out, 0, sizeof(*out));
	return r;
}

/* ---- the token layer's view -------------------------------------------------- */

int
tk_spki_info(const uint8_t *spki, size_t spki_len, int *key_type, unsigned *key_bits)
{
	tk_spki_t k;
	int r;

	*key_type = TK_KEY_NONE;
	*key_bits = 0;
	if ((r = tk_spki_parse(spki, spki_len, &k)) != TK_OK)
		return r == TK_ERR_TRUNCATED ? TK_ERR_MALFORMED : r;
	*key_type = k.key_type;
	*key_bits = k.bits;
	return TK_OK;
}

int
tk_x509_spki(const uint8_t *cert, size_t cert_len, uint8_t **spki, size_t *spki_len, int *key_type,
             unsigned *key_bits)
{
	tk_x509_t x;
	int r;

	*spki = NULL;
	*spki_len = 0;
	*key_type = TK_KEY_NONE;
	*key_bits = 0;
	if ((r = tk_x509_parse(cert, cert_len, &x)) != TK_OK)
		return r == TK_ERR_TRUNCATED ? TK_ERR_MALFORMED : r;
	if ((r = tk_spki_info(x.spki, x.spki_len, key_type, key_bits)) != TK_OK)
		return r;
	if ((*spki = malloc(x.spki_len)) == NULL) {
		*key_type = TK_KEY_NONE;
		*key_bits = 0;
		return TK_ERR_NO_MEMORY;
	}
	memcpy(*spki, x.spki, x.spki_len);
	*spki_len = x.spki_len;
	return TK_OK;
}
