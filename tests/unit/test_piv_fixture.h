/* Shared fixture for the PIV driver and token tests: an in-process virtual
 * card (tkvcard) behind tk_card_new_direct with a counting transmit, and a
 * provisioning helper that talks to the card only through APDUs, with all
 * expected values computed here with OpenSSL.
 *
 * Card layout after fx_provision():
 *   9A  P-256 generated, certificate for it (plain)
 *   9C  RSA-2048 generated, certificate for it (gzip-compressed)
 *   9D  P-256 generated, certificate for it (plain)
 *   9E  P-384 generated, certificate for a DIFFERENT key (must not pair)
 */
#ifndef TEST_PIV_FIXTURE_H
#define TEST_PIV_FIXTURE_H

#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/param_build.h>
#include <openssl/x509.h>
#include <zlib.h>

#include <tokenkit/apdu.h>
#include <tokenkit/card.h>
#include <tokenkit/err.h>
#include <tokenkit/token.h>

#include "card_apdu.h"
#include "card_priv.h"
#include "vcard.h"

#define FX_LOG_MAX 512

struct fx {
	tk_vcard_t *vc;
	tk_card_t *card;
	unsigned count;          /* APDUs sent since fx_count_reset */
	size_t bytes;            /* response bytes since fx_count_reset */
	uint8_t ins[FX_LOG_MAX]; /* INS of each APDU */
	unsigned tx[FX_LOG_MAX]; /* the card transaction each APDU was sent in (0: none) */
	unsigned tx_now;         /* fx_tx_reader: the transaction open now, 0: none */
	unsigned tx_count;       /* ... and how many were begun */
	char dir[256];           /* cache directory of this test */
	EVP_PKEY *pub[4];        /* card public keys: 9A 9C 9D 9E */
	EVP_PKEY *ca;            /* software key that signs the certificates */
	EVP_PKEY *stray;         /* key of 9E's certificate (not the card's) */
	uint8_t *cert[4];        /* certificate DER as stored, per slot */
	int cert_len[4];
	long serial;
	bool no_vendor; /* answer 6D00 to the Yubico commands (F7 FD F8) */
	/* another program resets the card now: the next command is refused
	 * before it reaches the card (TK_ERR_CARD_RESET, as pcsc-lite's
	 * SCardTransmit answers SCARD_W_RESET_CARD) and not counted */
	bool reset_pending;
};

static const uint8_t __attribute__((unused)) fx_slots[4] = {0x9A, 0x9C, 0x9D, 0x9E};
static const uint32_t __attribute__((unused)) fx_tags[4] = {0x5FC105, 0x5FC10A, 0x5FC10B, 0x5FC101};

static __attribute__((unused)) int
fx_xmit(void *ctx, const uint8_t *cmd, size_t cmd_len, uint8_t *resp, size_t resp_cap,
        size_t *resp_len)
{
	struct fx *f = ctx;

	if (f->reset_pending) {
		f->reset_pending = false;
		tk_vcard_reset(f->vc);
		return TK_ERR_CARD_RESET;
	}
	if (f->count < FX_LOG_MAX) {
		f->ins[f->count] = cmd_len > 1 ? cmd[1] : 0;
		f->tx[f->count] = f->tx_now;
	}
	f->count++;
	if (f->no_vendor && cmd_len > 1 && (cmd[1] == 0xF7 || cmd[1] == 0xFD || cmd[1] == 0xF8)) {
		resp[0] = 0x6D;
		resp[1] = 0x00;
		*resp_len = 2;
		f->bytes += 2;
		return TK_OK;
	}
	*resp_len = tk_vcard_process(f->vc, cmd, cmd_len, resp, resp_cap);
	f->bytes += *resp_len;
	return TK_OK;
}

static __attribute__((unused)) void
fx_count_reset(struct fx *f)
{
	f->count = 0;
	f->bytes = 0;
}

static __attribute__((unused)) unsigned
fx_count_ins(const struct fx *f, uint8_t ins)
{
	unsigned n = 0;

	for (unsigned i = 0; i < f->count && i < FX_LOG_MAX; i++)
		n += f->ins[i] == ins;
	return n;
}

/* One APDU through the card layer; returns the SW, data into resp. */
static __attribute__((unused)) uint16_t
fx_apdu(struct fx *f, uint8_t cla, uint8_t ins, uint8_t p1, uint8_t p2, const uint8_t *data,
        size_t lc, uint8_t *resp, size_t cap, size_t *rlen)
{
	return tk_test_apdu(f->card, cla, ins, p1, p2, data, lc, resp, cap, rlen);
}

static __attribute__((unused)) int
fx_select(struct fx *f)
{
	static const uint8_t aid[] = {0xA0, 0x00, 0x00, 0x03, 0x08, 0x00,
	                              0x00, 0x10, 0x00, 0x01, 0x00};
	uint8_t resp[256];

	return fx_apdu(f, 0, 0xA4, 0x04, 0x00, aid, sizeof(aid), resp, sizeof(resp), NULL) == 0x9000
	               ? 0
	               : -1;
}

/* Management key authentication with the default 3DES key (witness). */
static __attribute__((unused)) int
fx_mgm_auth(struct fx *f)
{
	static const uint8_t key[24] = {1, 2, 3, 4, 5, 6, 7, 8, 1, 2, 3, 4,
	                                5, 6, 7, 8, 1, 2, 3, 4, 5, 6, 7, 8};
	uint8_t req[4] = {0x7C, 0x02, 0x80, 0x00}, resp[64], plain[8], ans[12];
	EVP_CIPHER_CTX *cx;
	size_t n = 0;
	int ol = 0, ok;

	if (fx_apdu(f, 0, 0x87, 0x03, 0x9B, req, sizeof(req), resp, sizeof(resp), &n) != 0x9000 ||
	    n != 12 || resp[0] != 0x7C || resp[2] != 0x80 || resp[3] != 8)
		return -1;
	cx = EVP_CIPHER_CTX_new();
	ok = EVP_DecryptInit_ex(cx, EVP_des_ede3_ecb(), NULL, key, NULL) == 1 &&
	     EVP_CIPHER_CTX_set_padding(cx, 0) == 1 &&
	     EVP_DecryptUpdate(cx, plain, &ol, resp + 4, 8) == 1 && ol == 8;
	EVP_CIPHER_CTX_free(cx);
	if (!ok)
		return -1;
	memcpy(ans, "\x7C\x0A\x80\x08", 4);
	memcpy(ans + 4, plain, 8);
	return fx_apdu(f, 0, 0x87, 0x03, 0x9B, ans, sizeof(ans), NULL, 0, NULL) == 0x9000 ? 0 : -1;
}

/* Public key from a GENERATE answer (7F49 { 81, 82 } or { 86 }), built by
 * the test itself. */
static __attribute__((unused)) EVP_PKEY *
fx_pub_from_gen(uint8_t alg, const uint8_t *p, size_t n)
{
	OSSL_PARAM_BLD *bld = OSSL_PARAM_BLD_new();
	OSSL_PARAM *params = NULL;
	EVP_PKEY_CTX *ctx = NULL;
	EVP_PKEY *k = NULL;
	BIGNUM *bn = NULL, *be = NULL;
	size_t i = 0;

	/* skip 7F49 and its length */
	if (n < 4 || p[0] != 0x7F || p[1] != 0x49)
		goto out;
	i = 2;
	if (p[i] == 0x82)
		i += 3;
	else if (p[i] == 0x81)
		i += 2;
	else
		i += 1;
	if (alg == 0x07) {
		size_t ml;

		if (p[i] != 0x81 || p[i + 1] != 0x82)
			goto out;
		ml = (size_t)p[i + 2] << 8 | p[i + 3];
		bn = BN_bin2bn(p + i + 4, (int)ml, NULL);
		i += 4 + ml;
		if (p[i] != 0x82)
			goto out;
		be = BN_bin2bn(p + i + 2, p[i + 1], NULL);
		OSSL_PARAM_BLD_push_BN(bld, "n", bn);
		OSSL_PARAM_BLD_push_BN(bld, "e", be);
		ctx = EVP_PKEY_CTX_new_from_name(NULL, "RSA", NULL);
	} else {
		if (p[i] != 0x86)
			goto out;
		OSSL_PARAM_BLD_push_utf8_string(bld, "group",
		                                alg == 0x11 ? "prime256v1" : "secp384r1", 0);
		OSSL_PARAM_BLD_push_octet_string(bld, "pub", p + i + 2, p[i + 1]);
		ctx = EVP_PKEY_CTX_new_from_name(NULL, "EC", NULL);
	}
	params = OSSL_PARAM_BLD_to_param(bld);
	if (EVP_PKEY_fromdata_init(ctx) != 1 ||
	    EVP_PKEY_fromdata(ctx, &k, EVP_PKEY_PUBLIC_KEY, params) != 1)
		k = NULL;
out:
	OSSL_PARAM_free(params);
	OSSL_PARAM_BLD_free(bld);
	EVP_PKEY_CTX_free(ctx);
	BN_free(bn);
	BN_free(be);
	return k;
}

static __attribute__((unused)) EVP_PKEY *
fx_generate(struct fx *f, uint8_t slot, uint8_t alg)
{
	uint8_t req[5] = {0xAC, 0x03, 0x80, 0x01, alg}, resp[1024];
	size_t n = 0;

	if (fx_apdu(f, 0, 0x47, 0x00, slot, req, sizeof(req), resp, sizeof(resp), &n) != 0x9000)
		return NULL;
	return fx_pub_from_gen(alg, resp, n);
}

static __attribute__((unused)) EVP_PKEY *
fx_soft_key(const char *curve)
{
	return EVP_PKEY_Q_keygen(NULL, NULL, "EC", curve);
}

/* A certificate for pub, issued by ca; DER in *der. */
static __attribute__((unused)) int
fx_make_cert(struct fx *f, EVP_PKEY *pub, const char *cn, uint8_t **der)
{
	X509 *x = X509_new();
	X509_NAME *nm = X509_NAME_new();
	int n = -1;

	X509_set_version(x, 2);
	ASN1_INTEGER_set(X509_get_serialNumber(x), ++f->serial);
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

static __attribute__((unused)) int
fx_gzip(const uint8_t *in, size_t n, uint8_t *out, size_t cap, size_t *out_len)
{
	z_stream zs;
	int r;

	memset(&zs, 0, sizeof(zs));
	if (deflateInit2(&zs, 9, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK)
		return -1;
	zs.next_in = (Bytef *)(uintptr_t)in;
	zs.avail_in = (uInt)n;
	zs.next_out = out;
	zs.avail_out = (uInt)cap;
	r = deflate(&zs, Z_FINISH);
	*out_len = zs.total_out;
	deflateEnd(&zs);
	return r == Z_STREAM_END ? 0 : -1;
}

static __attribute__((unused)) size_t
fx_put_len(uint8_t *p, size_t len)
{
	if (len < 0x80) {
		p[0] = (uint8_t)len;
		return 1;
	}
	if (len < 0x100) {
		p[0] = 0x81;
		p[1] = (uint8_t)len;
		return 2;
	}
	p[0] = 0x82;
	p[1] = (uint8_t)(len >> 8);
	p[2] = (uint8_t)len;
	return 3;
}

/* PUT DATA of a certificate container { 70 cert, 71 info, FE }. */
static __attribute__((unused)) int
fx_put_cert(struct fx *f, uint32_t tag, const uint8_t *cert, size_t cert_len, bool compress)
{
	uint8_t body[8192], cmd[8300], z[8192];
	const uint8_t *c = cert;
	size_t cl = cert_len, bl = 0, ml = 0;

	if (compress) {
		if (fx_gzip(cert, cert_len, z, sizeof(z), &cl) != 0)
			return -1;
		c = z;
	}
	body[bl++] = 0x70;
	bl += fx_put_len(body + bl, cl);
	memcpy(body + bl, c, cl);
	bl += cl;
	memcpy(body + bl, compress ? "\x71\x01\x01\xFE\x00" : "\x71\x01\x00\xFE\x00", 5);
	bl += 5;
	cmd[ml++] = 0x5C;
	cmd[ml++] = 0x03;
	cmd[ml++] = (uint8_t)(tag >> 16);
	cmd[ml++] = (uint8_t)(tag >> 8);
	cmd[ml++] = (uint8_t)tag;
	cmd[ml++] = 0x53;
	ml += fx_put_len(cmd + ml, bl);
	memcpy(cmd + ml, body, bl);
	ml += bl;
	return fx_apdu(f, 0, 0xDB, 0x3F, 0xFF, cmd, ml, NULL, 0, NULL) == 0x9000 ? 0 : -1;
}

static __attribute__((unused)) int
fx_rm_cb(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return remove(path);
}

static __attribute__((unused)) void
fx_free(struct fx *f)
{
	for (int i = 0; i < 4; i++) {
		EVP_PKEY_free(f->pub[i]);
		OPENSSL_free(f->cert[i]);
	}
	EVP_PKEY_free(f->ca);
	EVP_PKEY_free(f->stray);
	tk_card_unref(&f->card);
	tk_vcard_free(&f->vc);
	if (f->dir[0] != '\0')
		nftw(f->dir, fx_rm_cb, 8, FTW_DEPTH | FTW_PHYS);
	free(f);
}

/* A fresh card, provisioned as described at the top. Returns NULL on
 * failure. */
static __attribute__((unused)) struct fx *
fx_new(bool provision)
{
	static const uint8_t algs[4] = {0x11, 0x07, 0x11, 0x14};
	struct fx *f = calloc(1, sizeof(*f));
	uint8_t atr[40];
	size_t atr_len;

	if (f == NULL)
		return NULL;
	snprintf(f->dir, sizeof(f->dir), "/tmp/tk-test-piv.XXXXXX");
	if (mkdtemp(f->dir) == NULL) {
		f->dir[0] = '\0';
		goto fail;
	}
	if (tk_vcard_open(NULL, &f->vc) != 0)
		goto fail;
	atr_len = tk_vcard_atr(f->vc, atr, sizeof(atr));
	if (tk_card_new_direct("virtual", atr, atr_len, fx_xmit, f, &f->card) != TK_OK)
		goto fail;
	if (!provision)
		return f;
	if ((f->ca = fx_soft_key("P-256")) == NULL || (f->stray = fx_soft_key("P-384")) == NULL)
		goto fail;
	if (fx_select(f) != 0 || fx_mgm_auth(f) != 0)
		goto fail;
	for (int i = 0; i < 4; i++) {
		if ((f->pub[i] = fx_generate(f, fx_slots[i], algs[i])) == NULL)
			goto fail;
		f->cert_len[i] = fx_make_cert(f, i == 3 ? f->stray : f->pub[i], "tokenkit test",
		                              &f->cert[i]);
		if (f->cert_len[i] <= 0)
			goto fail;
		if (fx_put_cert(f, fx_tags[i], f->cert[i], (size_t)f->cert_len[i], i == 1) != 0)
			goto fail;
	}
	/* the session ends: what the driver sees starts from a reset card */
	tk_vcard_reset(f->vc);
	tk_card_bump_generation(f->card);
	fx_count_reset(f);
	return f;
fail:
	fx_free(f);
	return NULL;
}

static int
fx_be_xmit(void *ctx, const uint8_t *cmd, size_t cmd_len, uint8_t *resp, size_t resp_cap,
           size_t *resp_len, int timeout_ms)
{
	(void)timeout_ms;
	return fx_xmit(ctx, cmd, cmd_len, resp, resp_cap, resp_len);
}

static int
fx_be_begin(void *ctx, int timeout_ms)
{
	struct fx *f = ctx;

	(void)timeout_ms;
	f->tx_now = ++f->tx_count;
	return TK_OK;
}

static int
fx_be_end(void *ctx, int timeout_ms)
{
	struct fx *f = ctx;

	(void)timeout_ms;
	f->tx_now = 0;
	return TK_OK;
}

/* Replace the card with one behind a reader with transactions (PC/SC's
 * SCardBeginTransaction): f->tx tells which one each APDU was sent in. */
static __attribute__((unused)) int
fx_tx_reader(struct fx *f)
{
	static const tk_card_backend_t be = {
	        .transmit = fx_be_xmit, .begin = fx_be_begin, .end = fx_be_end};
	tk_card_caps_t caps = {.extended_apdu = true, .max_cmd = 65544, .max_resp = 65538};
	uint8_t atr[40];
	size_t atr_len = tk_vcard_atr(f->vc, atr, sizeof(atr));

	tk_card_unref(&f->card);
	return tk_card_new_backend("transactions", atr, atr_len, &caps, &be, f, 0, &f->card);
}

/* Replace the card with one behind a reader that takes short APDUs only
 * (261-byte commands, 258-byte responses). */
static __attribute__((unused)) int
fx_short_reader(struct fx *f)
{
	static const tk_card_backend_t be = {.transmit = fx_be_xmit};
	tk_card_caps_t caps = {.extended_apdu = false, .max_cmd = 261, .max_resp = 258};
	uint8_t atr[40];
	size_t atr_len = tk_vcard_atr(f->vc, atr, sizeof(atr));

	tk_card_unref(&f->card);
	return tk_card_new_backend("short", atr, atr_len, &caps, &be, f, 0, &f->card);
}

/* cmocka set-up and tear-down: a fresh provisioned card per test. */
static __attribute__((unused)) int
fx_setup(void **state)
{
	struct fx *f = fx_new(true);

	if (f == NULL)
		return -1;
	*state = f;
	return 0;
}

static __attribute__((unused)) int
fx_teardown(void **state)
{
	fx_free(*state);
	return 0;
}

static __attribute__((unused)) void
fx_opts(struct fx *f, tk_token_opts_t *o, bool cache)
{
	tk_token_opts_init(o);
	o->cache_dir = cache ? f->dir : "";
}

/* Open the token (cache: in this test's directory; deferred: a valid cache
 * entry taken on trust, tk_token_revalidate later); NULL on failure. */
static __attribute__((unused)) tk_token_t *
fx_open(struct fx *f, bool cache, bool deferred)
{
	tk_token_opts_t o;
	tk_token_t *t = NULL;

	fx_opts(f, &o, cache);
	o.defer_revalidation = deferred;
	if (tk_token_open(f->card, &o, &t) != TK_OK)
		return NULL;
	return t;
}

static __attribute__((unused)) const tk_object_t *
fx_find(tk_token_t *t, int cls, uint8_t id)
{
	const tk_object_t *objs;
	size_t n;

	if (tk_token_objects(t, &objs, &n) != TK_OK)
		return NULL;
	for (size_t i = 0; i < n; i++)
		if (objs[i].cls == cls && objs[i].id_len == 1 && objs[i].id[0] == id)
			return &objs[i];
	return NULL;
}

/* DER SubjectPublicKeyInfo of k (test's own encoding). */
static __attribute__((unused)) int
fx_spki(EVP_PKEY *k, uint8_t **der)
{
	*der = NULL;
	return i2d_PUBKEY(k, der);
}

#endif
