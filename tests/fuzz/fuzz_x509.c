/* Fuzz the DER walk of certificates and SubjectPublicKeyInfo (core/x509.c)
 * against OpenSSL: the first byte picks what the rest is (even: a
 * certificate, odd: a SubjectPublicKeyInfo). Whatever the walk accepts
 * lies inside the input; where OpenSSL accepts the same bytes too, every
 * field must be what OpenSSL says it is (abort otherwise). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/x509.h>

#include <tokenkit/err.h>
#include <tokenkit/token.h>

#include "x509.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void
check_inside(const uint8_t *p, size_t n, const uint8_t *base, size_t size)
{
	if (n == 0)
		return;
	if (p < base || p + n > base + size)
		abort();
}

/* der: what OpenSSL wrote (n bytes, or n < 0), freed here */
static void
check_der(const uint8_t *ours, size_t len, int n, uint8_t *der)
{
	if (n < 0 || der == NULL || (size_t)n != len || memcmp(ours, der, len) != 0)
		abort();
	OPENSSL_free(der);
}

static void
check_bn(const EVP_PKEY *k, const char *name, const uint8_t *p, size_t n)
{
	BIGNUM *bn = NULL;
	uint8_t buf[1024];

	if (EVP_PKEY_get_bn_param(k, name, &bn) != 1)
		abort();
	if ((size_t)BN_num_bytes(bn) != n || n > sizeof(buf))
		abort();
	BN_bn2bin(bn, buf);
	if (memcmp(buf, p, n) != 0)
		abort();
	BN_free(bn);
}

/* Our public key against OpenSSL's, where both read one. */
static void
spki_vs_openssl(const uint8_t *der, size_t len, const tk_spki_t *s)
{
	const unsigned char *q = der;
	X509_PUBKEY *xp = d2i_X509_PUBKEY(NULL, &q, (long)len);
	const unsigned char *raw = NULL;
	EVP_PKEY *k;
	int rl = 0;

	if (xp == NULL || q != der + len || (k = X509_PUBKEY_get0(xp)) == NULL) {
		X509_PUBKEY_free(xp);
		return;
	}
	if (X509_PUBKEY_get0_param(NULL, &raw, &rl, NULL, xp) != 1)
		abort();
	/* Ed25519: tokens speak of the field (255), OpenSSL of the encoding (256) */
	if ((unsigned)EVP_PKEY_get_bits(k) != (s->key_type == TK_KEY_ED25519 ? 256u : s->bits))
		abort();
	if (s->key_type == TK_KEY_ED25519) {
		if (EVP_PKEY_get_base_id(k) != EVP_PKEY_ED25519 || s->bits != 255 ||
		    (size_t)rl != s->point_len || memcmp(raw, s->point, s->point_len) != 0)
			abort();
	} else if (s->key_type == TK_KEY_RSA) {
		if (EVP_PKEY_get_base_id(k) != EVP_PKEY_RSA)
			abort();
		check_bn(k, OSSL_PKEY_PARAM_RSA_N, s->n, s->n_len);
		check_bn(k, OSSL_PKEY_PARAM_RSA_E, s->e, s->e_len);
	} else {
		/* the point as encoded (OpenSSL decoded the same, or it would
		 * have no key) */
		if (EVP_PKEY_get_base_id(k) != EVP_PKEY_EC || (size_t)rl != s->point_len ||
		    memcmp(raw, s->point, s->point_len) != 0)
			abort();
	}
	X509_PUBKEY_free(xp);
}

static void
date_vs_openssl(const char *ours, const ASN1_TIME *t)
{
	struct tm tm;
	char buf[48];

	if (ours[0] == '\0')
		return; /* not RFC 5280's form: we show no date */
	if (t == NULL || ASN1_TIME_to_tm(t, &tm) != 1)
		abort();
	snprintf(buf, sizeof(buf), "%04d%02d%02d", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday);
	if (strcmp(buf, ours) != 0)
		abort();
}

static void
cert_vs_openssl(const uint8_t *der, size_t len, const tk_x509_t *x)
{
	const unsigned char *q = der;
	X509 *c = d2i_X509(NULL, &q, (long)len);
	tk_spki_t s;
	uint8_t *out;
	int n;

	if (c == NULL || q != der + len) {
		X509_free(c);
		return;
	}
	out = NULL;
	n = i2d_X509_NAME(X509_get_subject_name(c), &out);
	check_der(x->subject, x->subject_len, n, out);
	out = NULL;
	n = i2d_X509_NAME(X509_get_issuer_name(c), &out);
	check_der(x->issuer, x->issuer_len, n, out);
	out = NULL;
	n = i2d_ASN1_INTEGER(X509_get0_serialNumber(c), &out);
	check_der(x->serial, x->serial_len, n, out);
	/* OpenSSL writes the key info anew, and an algorithm's parameters of
	 * type ANY in its own words: the same bytes only for keys we take */
	if (tk_spki_parse(x->spki, x->spki_len, &s) == TK_OK) {
		out = NULL;
		n = i2d_X509_PUBKEY(X509_get_X509_PUBKEY(c), &out);
		check_der(x->spki, x->spki_len, n, out);
	}
	date_vs_openssl(x->not_before, X509_get0_notBefore(c));
	date_vs_openssl(x->not_after, X509_get0_notAfter(c));
	X509_free(c);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	tk_x509_t x;
	tk_spki_t s;
	uint8_t *copy = NULL;
	size_t n = 0;
	int kt = 0;
	unsigned kb = 0;

	if (size < 1)
		return 0;
	if ((data[0] & 1) == 0) {
		if (tk_x509_parse(data + 1, size - 1, &x) != TK_OK)
			return 0;
		check_inside(x.serial, x.serial_len, data + 1, size - 1);
		check_inside(x.issuer, x.issuer_len, data + 1, size - 1);
		check_inside(x.subject, x.subject_len, data + 1, size - 1);
		check_inside(x.spki, x.spki_len, data + 1, size - 1);
		cert_vs_openssl(data + 1, size - 1, &x);
		/* the token layer's view agrees with the walk */
		if (tk_x509_spki(data + 1, size - 1, &copy, &n, &kt, &kb) == TK_OK) {
			if (tk_spki_parse(copy, n, &s) != TK_OK || s.key_type != kt || s.bits != kb)
				abort();
			spki_vs_openssl(copy, n, &s);
			free(copy);
		}
		return 0;
	}
	if (tk_spki_parse(data + 1, size - 1, &s) != TK_OK)
		return 0;
	check_inside(s.n, s.n_len, data + 1, size - 1);
	check_inside(s.e, s.e_len, data + 1, size - 1);
	check_inside(s.curve, s.curve_len, data + 1, size - 1);
	check_inside(s.point, s.point_len, data + 1, size - 1);
	if ((s.key_type == TK_KEY_RSA) == (s.n_len == 0) || s.bits == 0)
		abort();
	spki_vs_openssl(data + 1, size - 1, &s);
	return 0;
}
