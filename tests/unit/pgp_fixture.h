/* Shared fixture for the OpenPGP tests: an in-process virtual card with the
 * OpenPGP applet behind tk_card_new_direct (counting APDUs), and
 * provisioning that talks to the card only through APDUs, the way GnuPG
 * does (VERIFY 83, PUT DATA of algorithm attributes, GENERATE ASYMMETRIC
 * KEY PAIR, SELECT DATA + PUT DATA 7F21). The public keys are taken from
 * the generation answers with OpenSSL here, never through the driver. */
#ifndef PGP_FIXTURE_H
#define PGP_FIXTURE_H

#include <ftw.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/param_build.h>
#include <openssl/x509.h>

#include <tokenkit/apdu.h>
#include <tokenkit/card.h>
#include <tokenkit/err.h>
#include <tokenkit/tlv.h>
#include <tokenkit/token.h>

#include "card_apdu.h"
#include "card_priv.h"
#include "vcard.h"

/* Algorithm attributes (C1..C3). */
static const uint8_t __attribute__((unused)) pgx_rsa2048[] = {0x01, 0x08, 0x00, 0x00, 0x20, 0x00};
static const uint8_t __attribute__((unused)) pgx_rsa3072[] = {0x01, 0x0C, 0x00, 0x00, 0x20, 0x00};
static const uint8_t __attribute__((unused))
pgx_ecdsa_p256[] = {0x13, 0x2A, 0x86, 0x48, 0xCE, 0x3D, 0x03, 0x01, 0x07};
static const uint8_t __attribute__((unused))
pgx_ecdh_p256[] = {0x12, 0x2A, 0x86, 0x48, 0xCE, 0x3D, 0x03, 0x01, 0x07};
static const uint8_t __attribute__((unused))
pgx_ecdsa_p384[] = {0x13, 0x2B, 0x81, 0x04, 0x00, 0x22};
static const uint8_t __attribute__((unused))
pgx_ed25519[] = {0x16, 0x2B, 0x06, 0x01, 0x04, 0x01, 0xDA, 0x47, 0x0F, 0x01};
static const uint8_t __attribute__((unused))
pgx_x25519[] = {0x12, 0x2B, 0x06, 0x01, 0x04, 0x01, 0x97, 0x55, 0x01, 0x05, 0x01};

#define PGX_AID_LEN 6
static const uint8_t pgx_aid[PGX_AID_LEN] = {0xD2, 0x76, 0x00, 0x01, 0x24, 0x01};
static const uint8_t __attribute__((unused)) pgx_crt[3] = {0xB6, 0xB8, 0xA4};

struct pgx {
	tk_vcard_t *vc;
	tk_card_t *card;
	unsigned count;   /* APDUs since pgx_count_reset */
	char dir[64];     /* cache directory */
	EVP_PKEY *pub[3]; /* SIG DEC AUT, as the card generated them */
	EVP_PKEY *ca;
};

static int
pgx_xmit(void *ctx, const uint8_t *cmd, size_t cmd_len, uint8_t *resp, size_t resp_cap,
         size_t *resp_len)
{
	struct pgx *f = ctx;

	f->count++;
	if (getenv("PGX_TRACE") != NULL)
		fprintf(stderr, "apdu %02X %02X %02X %02X\n", cmd[0], cmd[1], cmd[2], cmd[3]);
	*resp_len = tk_vcard_process(f->vc, cmd, cmd_len, resp, resp_cap);
	return TK_OK;
}

static __attribute__((unused)) void
pgx_count_reset(struct pgx *f)
{
	f->count = 0;
}

/* One command through the card layer (chaining, 61xx). SW, or 0. */
static __attribute__((unused)) uint16_t
pgx_apdu(struct pgx *f, uint8_t ins, uint8_t p1, uint8_t p2, const uint8_t *data, size_t lc,
         uint8_t *resp, size_t cap, size_t *rlen)
{
	return tk_test_apdu(f->card, 0x00, ins, p1, p2, data, lc, resp, cap, rlen);
}

static __attribute__((unused)) int
pgx_select(struct pgx *f)
{
	return pgx_apdu(f, 0xA4, 0x04, 0x00, pgx_aid, PGX_AID_LEN, NULL, 0, NULL) == 0x9000 ? 0
	                                                                                    : -1;
}

static __attribute__((unused)) int
pgx_verify(struct pgx *f, uint8_t ref, const char *pin)
{
	return pgx_apdu(f, 0x20, 0x00, ref, (const uint8_t *)pin, strlen(pin), NULL, 0, NULL) ==
	                       0x9000
	               ? 0
	               : -1;
}

static __attribute__((unused)) int
pgx_put(struct pgx *f, uint16_t tag, const uint8_t *v, size_t n)
{
	return pgx_apdu(f, 0xDA, (uint8_t)(tag >> 8), (uint8_t)tag, v, n, NULL, 0, NULL) == 0x9000
	               ? 0
	               : -1;
}

/* The public key in a 7F49 template, read with OpenSSL for attributes. */
static __attribute__((unused)) EVP_PKEY *
pgx_pub(const uint8_t *attr, const uint8_t *p, size_t n)
{
	OSSL_PARAM_BLD *bld = OSSL_PARAM_BLD_new();
	OSSL_PARAM *params = NULL;
	EVP_PKEY_CTX *ctx = NULL;
	EVP_PKEY *k = NULL;
	BIGNUM *bn = NULL, *be = NULL;
	tk_tlv_t t, a, b;
	const char *type = "EC";

	if (tk_ber_find(p, n, 0x7F49, &t) != TK_OK)
		goto out;
	if (attr[0] == 0x01) {
		if (tk_ber_find(t.value, t.len, 0x81, &a) != TK_OK ||
		    tk_ber_find(t.value, t.len, 0x82, &b) != TK_OK)
			goto out;
		bn = BN_bin2bn(a.value, (int)a.len, NULL);
		be = BN_bin2bn(b.value, (int)b.len, NULL);
		OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_N, bn);
		OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_E, be);
		type = "RSA";
	} else {
		if (tk_ber_find(t.value, t.len, 0x86, &a) != TK_OK)
			goto out;
		if (attr[0] == 0x16 || (attr[1] == 0x2B && attr[2] == 0x06)) {
			k = EVP_PKEY_new_raw_public_key(attr[0] == 0x16 ? EVP_PKEY_ED25519
			                                                : EVP_PKEY_X25519,
			                                NULL, a.value, a.len);
			goto out;
		}
		OSSL_PARAM_BLD_push_utf8_string(bld, OSSL_PKEY_PARAM_GROUP_NAME,
		                                attr[1] == 0x2A ? "P-256" : "P-384", 0);
		OSSL_PARAM_BLD_push_octet_string(bld, OSSL_PKEY_PARAM_PUB_KEY, a.value, a.len);
	}
	if ((params = OSSL_PARAM_BLD_to_param(bld)) == NULL ||
	    (ctx = EVP_PKEY_CTX_new_from_name(NULL, type, NULL)) == NULL ||
	    EVP_PKEY_fromdata_init(ctx) != 1 ||
	    EVP_PKEY_fromdata(ctx, &k, EVP_PKEY_PUBLIC_KEY, params) != 1)
		k = NULL;
out:
	BN_free(bn);
	BN_free(be);
	OSSL_PARAM_free(params);
	EVP_PKEY_CTX_free(ctx);
	OSSL_PARAM_BLD_free(bld);
	return k;
}

/* Set key k's attributes and generate it (admin PIN verified first). */
static __attribute__((unused)) int
pgx_generate(struct pgx *f, int k, const uint8_t *attr, size_t attr_len)
{
	uint8_t crt[2] = {pgx_crt[k], 0x00}, resp[2048];
	size_t n = 0;

	if (pgx_put(f, (uint16_t)(0xC1 + k), attr, attr_len) != 0)
		return -1;
	if (pgx_apdu(f, 0x47, 0x80, 0x00, crt, 2, resp, sizeof(resp), &n) != 0x9000)
		return -1;
	EVP_PKEY_free(f->pub[k]);
	f->pub[k] = pgx_pub(attr, resp, n);
	return f->pub[k] != NULL ? 0 : -1;
}

/* A certificate for pub, issued by the fixture's CA; DER in *der. */
static __attribute__((unused)) int
pgx_make_cert(struct pgx *f, EVP_PKEY *pub, const char *cn, uint8_t **der)
{
	X509 *x = X509_new();
	X509_NAME *nm = X509_NAME_new();
	int n = -1;

	X509_set_version(x, 2);
	ASN1_INTEGER_set(X509_get_serialNumber(x), 7);
	X509_gmtime_adj(X509_getm_notBefore(x), 0);
	X509_gmtime_adj(X509_getm_notAfter(x), 86400L * 365);
	X509_NAME_add_entry_by_txt(nm, "CN", MBSTRING_ASC, (const unsigned char *)cn, -1, -1, 0);
	X509_set_subject_name(x, nm);
	X509_set_issuer_name(x, nm);
	X509_set_pubkey(x, pub);
	if (X509_sign(x, f->ca, EVP_sha256()) > 0)
		n = i2d_X509(x, der);
	X509_NAME_free(nm);
	X509_free(x);
	return n;
}

/* The cardholder certificate of key k (SELECT DATA occurrence 2 - k). */
static __attribute__((unused)) int
pgx_put_cert(struct pgx *f, int k, const uint8_t *der, size_t n)
{
	static const uint8_t sel[] = {0x60, 0x04, 0x5C, 0x02, 0x7F, 0x21};

	if (pgx_apdu(f, 0xA5, (uint8_t)(2 - k), 0x04, sel, sizeof(sel), NULL, 0, NULL) != 0x9000)
		return -1;
	return pgx_put(f, 0x7F21, der, n);
}

/* The session ends: what the driver sees starts from a reset card. */
static __attribute__((unused)) void
pgx_reset(struct pgx *f)
{
	tk_vcard_reset(f->vc);
	tk_card_bump_generation(f->card);
	pgx_count_reset(f);
}

static int
pgx_rm_cb(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return remove(path);
}

static __attribute__((unused)) void
pgx_free(struct pgx *f)
{
	if (f == NULL)
		return;
	for (int i = 0; i < 3; i++)
		EVP_PKEY_free(f->pub[i]);
	EVP_PKEY_free(f->ca);
	tk_card_unref(&f->card);
	tk_vcard_free(&f->vc);
	if (f->dir[0] != '\0')
		nftw(f->dir, pgx_rm_cb, 8, FTW_DEPTH | FTW_PHYS);
	free(f);
}

/* A fresh in-memory card with these applets, selected, admin PIN verified. */
static __attribute__((unused)) struct pgx *
pgx_new(unsigned applets)
{
	struct pgx *f = calloc(1, sizeof(*f));
	uint8_t atr[40];
	size_t atr_len;

	if (f == NULL)
		return NULL;
	snprintf(f->dir, sizeof(f->dir), "/tmp/tk-test-pgp.XXXXXX");
	if (mkdtemp(f->dir) == NULL) {
		f->dir[0] = '\0';
		goto fail;
	}
	if (tk_vcard_open_applets(NULL, applets, &f->vc) != TK_OK)
		goto fail;
	atr_len = tk_vcard_atr(f->vc, atr, sizeof(atr));
	if (tk_card_new_direct("virtual", atr, atr_len, pgx_xmit, f, &f->card) != TK_OK)
		goto fail;
	if ((f->ca = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256")) == NULL)
		goto fail;
	if (pgx_select(f) != 0 || pgx_verify(f, 0x83, "12345678") != 0)
		goto fail;
	return f;
fail:
	pgx_free(f);
	return NULL;
}

/* The driver plugins of this build (<build>/plugins next to the test
 * programs' directory), unless the environment says otherwise. */
static __attribute__((unused)) void
pgx_plugin_path(void)
{
	char exe[PATH_MAX], dir[PATH_MAX + 16];
	ssize_t n;

	if (getenv("TOKENKIT_PLUGIN_PATH") != NULL)
		return;
	if ((n = readlink("/proc/self/exe", exe, sizeof(exe) - 1)) <= 0)
		return;
	exe[n] = '\0';
	*strrchr(exe, '/') = '\0';
	snprintf(dir, sizeof(dir), "%s/../plugins", exe);
	setenv("TOKENKIT_PLUGIN_PATH", dir, 1);
}

#endif
