/* Unit tests for the virtual PIV card: drive it in-process with APDUs and
 * check the answers against SP 800-73-4 and the Yubico command formats,
 * with the cryptography checked independently through OpenSSL. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/param_build.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>

#include <tokenkit/err.h>
#include <tokenkit/log.h>
#include <tokenkit/tlv.h>

#include "vcard.h"
#include "vcard_int.h"

static const uint8_t AID[] = {0xA0, 0x00, 0x00, 0x03, 0x08, 0x00, 0x00, 0x10, 0x00, 0x01, 0x00};
static const uint8_t MGM3DES[24] = {1, 2, 3, 4, 5, 6, 7, 8, 1, 2, 3, 4,
                                    5, 6, 7, 8, 1, 2, 3, 4, 5, 6, 7, 8};
static const uint8_t PIN[8] = {'1', '2', '3', '4', '5', '6', 0xFF, 0xFF};
static const uint8_t PUK[8] = {'1', '2', '3', '4', '5', '6', '7', '8'};

static uint8_t resp[TK_APDU_MAX_RESP];
static uint8_t data[70000];
static size_t data_len;

/* One APDU exchange, no chaining of any kind. le: 0 none, else Ne. */
static uint16_t
tx1(tk_vcard_t *c, uint8_t cla, uint8_t ins, uint8_t p1, uint8_t p2, const uint8_t *d, size_t lc,
    size_t le, bool ext)
{
	uint8_t cmd[TK_APDU_MAX_EXT_CMD];
	size_t n = 0, rl;

	cmd[n++] = cla;
	cmd[n++] = ins;
	cmd[n++] = p1;
	cmd[n++] = p2;
	if (!ext) {
		if (lc > 0) {
			cmd[n++] = (uint8_t)lc;
			memcpy(cmd + n, d, lc);
			n += lc;
		}
		if (le > 0)
			cmd[n++] = (uint8_t)(le == 256 ? 0 : le);
	} else {
		cmd[n++] = 0;
		if (lc > 0) {
			cmd[n++] = (uint8_t)(lc >> 8);
			cmd[n++] = (uint8_t)lc;
			memcpy(cmd + n, d, lc);
			n += lc;
		}
		if (le > 0) {
			cmd[n++] = (uint8_t)((le == 65536 ? 0 : le) >> 8);
			cmd[n++] = (uint8_t)(le == 65536 ? 0 : le);
		}
	}
	rl = tk_vcard_process(c, cmd, n, resp, sizeof(resp));
	assert_true(rl >= 2);
	data_len = rl - 2;
	memcpy(data, resp, data_len);
	return (uint16_t)(resp[rl - 2] << 8 | resp[rl - 1]);
}

/* A client exchange: command chaining in 255-byte parts, short APDUs with
 * Le 00, 61xx followed with GET RESPONSE; data collects everything. */
static uint16_t
xfer(tk_vcard_t *c, uint8_t ins, uint8_t p1, uint8_t p2, const uint8_t *d, size_t lc)
{
	static uint8_t all[70000];
	size_t all_len = 0;
	uint16_t sw;

	while (lc > 255) {
		sw = tx1(c, 0x10, ins, p1, p2, d, 255, 0, false);
		assert_int_equal(sw, 0x9000);
		d += 255;
		lc -= 255;
	}
	sw = tx1(c, 0x00, ins, p1, p2, d, lc, 256, false);
	for (int i = 0; i < 300; i++) {
		memcpy(all + all_len, data, data_len);
		all_len += data_len;
		if ((sw >> 8) != 0x61)
			break;
		sw = tx1(c, 0x00, 0xC0, 0, 0, NULL, 0, (sw & 0xFF) ? (sw & 0xFF) : 256, false);
	}
	memcpy(data, all, all_len);
	data_len = all_len;
	return sw;
}

static tk_vcard_t *
new_card(void)
{
	tk_vcard_t *c = NULL;

	assert_int_equal(tk_vcard_open(NULL, &c), TK_OK);
	assert_non_null(c);
	tk_vcard_power_on(c);
	assert_int_equal(tx1(c, 0, 0xA4, 0x04, 0x00, AID, sizeof(AID), 256, false), 0x9000);
	return c;
}

static bool
find(const uint8_t *p, size_t n, uint32_t tag, const uint8_t **v, size_t *vl)
{
	tk_tlv_t t;

	*v = NULL;
	*vl = 0;
	if (tk_ber_find(p, n, tag, &t) != TK_OK)
		return false;
	*v = t.value;
	*vl = t.len;
	return true;
}

static uint16_t
verify_pin(tk_vcard_t *c, const uint8_t pin[8])
{
	return tx1(c, 0, 0x20, 0x00, 0x80, pin, 8, 0, false);
}

static void
block_cipher(const EVP_CIPHER *ciph, const uint8_t *key, bool enc, const uint8_t *in, size_t bl,
             uint8_t *out)
{
	EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
	int n1 = 0, n2 = 0;

	assert_non_null(ctx);
	assert_int_equal(EVP_CipherInit_ex(ctx, ciph, NULL, key, NULL, enc), 1);
	EVP_CIPHER_CTX_set_padding(ctx, 0);
	assert_int_equal(EVP_CipherUpdate(ctx, out, &n1, in, (int)bl), 1);
	assert_int_equal(EVP_CipherFinal_ex(ctx, out + n1, &n2), 1);
	assert_int_equal((size_t)(n1 + n2), bl);
	EVP_CIPHER_CTX_free(ctx);
}

/* yubico-piv-tool's flow: witness 80, then decrypted witness + challenge. */
static uint16_t
mgm_auth_ex(tk_vcard_t *c, uint8_t alg, const EVP_CIPHER *ciph, const uint8_t *key, size_t bl)
{
	uint8_t req[64], w[16], ch[16], exp[16];
	const uint8_t *v;
	size_t vl, n = 0;
	uint16_t sw;

	sw = tx1(c, 0, 0x87, alg, 0x9B, (const uint8_t *)"\x7C\x02\x80\x00", 4, 256, false);
	if (sw != 0x9000)
		return sw;
	assert_true(find(data, data_len, 0x7C, &v, &vl));
	assert_true(find(v, vl, 0x80, &v, &vl));
	assert_int_equal(vl, bl);
	block_cipher(ciph, key, false, v, bl, w);
	memset(ch, 0x5A, sizeof(ch));
	req[n++] = 0x7C;
	req[n++] = (uint8_t)(4 + 2 * bl);
	req[n++] = 0x80;
	req[n++] = (uint8_t)bl;
	memcpy(req + n, w, bl);
	n += bl;
	req[n++] = 0x81;
	req[n++] = (uint8_t)bl;
	memcpy(req + n, ch, bl);
	n += bl;
	sw = tx1(c, 0, 0x87, alg, 0x9B, req, n, 256, false);
	if (sw != 0x9000)
		return sw;
	assert_true(find(data, data_len, 0x7C, &v, &vl));
	assert_true(find(v, vl, 0x82, &v, &vl));
	assert_int_equal(vl, bl);
	block_cipher(ciph, key, true, ch, bl, exp);
	assert_memory_equal(v, exp, bl);
	return sw;
}

static void
mgm_auth(tk_vcard_t *c)
{
	assert_int_equal(mgm_auth_ex(c, 0x03, EVP_des_ede3_ecb(), MGM3DES, 8), 0x9000);
}

/* ---- tests -------------------------------------------------------------- */

static void
test_atr(void **state)
{
	uint8_t atr[40];
	size_t n;
	uint8_t x = 0;

	(void)state;
	n = tk_vcard_atr(NULL, atr, sizeof(atr));
	assert_true(n >= 4 && n <= 33);
	assert_int_equal(atr[0], 0x3B);
	/* K historical bytes: T0 low nibble; TCK makes the XOR of T0..TCK zero */
	for (size_t i = 1; i < n; i++)
		x ^= atr[i];
	assert_int_equal(x, 0);
	/* TD1 (after TA1 TB1 TC1, all present per T0 = Fx) announces T=1 */
	assert_int_equal(atr[1] & 0xF0, 0xF0);
	assert_int_equal(atr[5] & 0x0F, 1);
	assert_int_equal(tk_vcard_atr(NULL, atr, 3), 0);
}

static void
test_select(void **state)
{
	tk_vcard_t *c = NULL;
	const uint8_t *v, *w;
	size_t vl, wl;
	static const uint8_t pix[] = {0x00, 0x00, 0x10, 0x00, 0x01, 0x00};
	bool p256 = false;

	(void)state;
	assert_int_equal(tk_vcard_open(NULL, &c), TK_OK);
	/* nothing selected yet */
	assert_int_equal(
	        tx1(c, 0, 0xCB, 0x3F, 0xFF, (const uint8_t *)"\x5C\x01\x7E", 3, 256, false),
	        0x6D00);
	assert_int_equal(
	        tx1(c, 0, 0xA4, 0x04, 0x00, (const uint8_t *)"\xA0\x00\x00\x03\x09", 5, 256, false),
	        0x6A82);
	assert_int_equal(tx1(c, 0, 0xA4, 0x04, 0x00, AID, sizeof(AID), 256, false), 0x9000);
	assert_true(find(data, data_len, 0x61, &v, &vl));
	assert_true(find(v, vl, 0x4F, &w, &wl));
	assert_int_equal(wl, sizeof(pix));
	assert_memory_equal(w, pix, sizeof(pix));
	assert_true(find(v, vl, 0x79, &w, &wl));
	assert_true(find(w, wl, 0x4F, &w, &wl));
	assert_int_equal(wl, 5);
	assert_memory_equal(w, AID, 5);
	assert_true(find(v, vl, 0xAC, &w, &wl));
	for (size_t i = 0; i + 2 < wl; i += 3)
		if (w[i] == 0x80 && w[i + 1] == 1 && w[i + 2] == 0x11)
			p256 = true;
	assert_true(p256);
	/* the truncated (RID only) form used by OpenSC */
	tk_vcard_reset(c);
	assert_int_equal(tx1(c, 0, 0xA4, 0x04, 0x00, AID, 5, 256, false), 0x9000);
	assert_int_equal(tx1(c, 0, 0xA4, 0x00, 0x00, AID, 5, 256, false), 0x6A86);
	/* vendor: version 3 bytes, serial 4 bytes */
	assert_int_equal(tx1(c, 0, 0xFD, 0, 0, NULL, 0, 256, false), 0x9000);
	assert_int_equal(data_len, 3);
	assert_int_equal(data[0], 5);
	assert_int_equal(tx1(c, 0, 0xF8, 0, 0, NULL, 0, 256, false), 0x9000);
	assert_int_equal(data_len, 4);
	assert_int_equal(tx1(c, 0, 0x12, 0, 0, NULL, 0, 0, false), 0x6D00);
	assert_int_equal(tx1(c, 0x80, 0xCB, 0, 0, NULL, 0, 0, false), 0x6E00);
	assert_true(tk_vcard_apdu_count(c) >= 9);
	tk_vcard_free(&c);
	assert_null(c);
}

static void
test_chuid_discovery(void **state)
{
	tk_vcard_t *c = new_card();
	const uint8_t *v, *w;
	size_t vl, wl;

	(void)state;
	assert_int_equal(xfer(c, 0xCB, 0x3F, 0xFF, (const uint8_t *)"\x5C\x03\x5F\xC1\x02", 5),
	                 0x9000);
	assert_true(find(data, data_len, 0x53, &v, &vl));
	assert_true(find(v, vl, 0x30, &w, &wl));
	assert_int_equal(wl, 25);
	assert_true(find(v, vl, 0x34, &w, &wl));
	assert_int_equal(wl, 16);
	assert_true(find(v, vl, 0x35, &w, &wl));
	assert_int_equal(wl, 8);
	assert_memory_equal(w, "20301231", 8);
	assert_true(find(v, vl, 0x3E, &w, &wl));
	assert_int_equal(wl, 0);
	/* discovery object comes in its own 7E template */
	assert_int_equal(xfer(c, 0xCB, 0x3F, 0xFF, (const uint8_t *)"\x5C\x01\x7E", 3), 0x9000);
	assert_true(find(data, data_len, 0x7E, &v, &vl));
	assert_true(find(v, vl, 0x4F, &w, &wl));
	assert_int_equal(wl, sizeof(AID));
	assert_memory_equal(w, AID, sizeof(AID));
	assert_true(find(v, vl, 0x5F2F, &w, &wl));
	assert_int_equal(wl, 2);
	assert_memory_equal(w, "\x40\x00", 2);
	/* CCC exists, certificates and key history do not yet */
	assert_int_equal(xfer(c, 0xCB, 0x3F, 0xFF, (const uint8_t *)"\x5C\x03\x5F\xC1\x07", 5),
	                 0x9000);
	assert_int_equal(xfer(c, 0xCB, 0x3F, 0xFF, (const uint8_t *)"\x5C\x03\x5F\xC1\x05", 5),
	                 0x6A82);
	assert_int_equal(xfer(c, 0xCB, 0x3F, 0xFF, (const uint8_t *)"\x5C\x03\x5F\xC1\x0C", 5),
	                 0x6A82);
	assert_int_equal(xfer(c, 0xCB, 0x3F, 0xFF, (const uint8_t *)"\x5C\x03\x5F\xC1\x02\x00", 6),
	                 0x6A80);
	assert_int_equal(xfer(c, 0xCB, 0x3F, 0xFF, (const uint8_t *)"\x53\x01\x7E", 3), 0x6A80);
	assert_int_equal(xfer(c, 0xCB, 0x00, 0x00, (const uint8_t *)"\x5C\x01\x7E", 3), 0x6A86);
	tk_vcard_free(&c);
}

static void
test_pin(void **state)
{
	tk_vcard_t *c = new_card();
	static const uint8_t bad[8] = {'6', '5', '4', '3', '2', '1', 0xFF, 0xFF};
	uint8_t two[16];

	(void)state;
	assert_int_equal(tx1(c, 0, 0x20, 0x00, 0x80, NULL, 0, 0, false), 0x63C3);
	assert_int_equal(verify_pin(c, bad), 0x63C2);
	assert_int_equal(tx1(c, 0, 0x20, 0x00, 0x80, NULL, 0, 0, false), 0x63C2);
	assert_int_equal(verify_pin(c, PIN), 0x9000);
	assert_int_equal(tx1(c, 0, 0x20, 0x00, 0x80, NULL, 0, 0, false), 0x9000);
	/* a good PIN restores the counter */
	assert_int_equal(tx1(c, 0, 0x20, 0xFF, 0x80, NULL, 0, 0, false), 0x9000);
	assert_int_equal(tx1(c, 0, 0x20, 0x00, 0x80, NULL, 0, 0, false), 0x63C3);
	assert_int_equal(tx1(c, 0, 0x20, 0x00, 0x00, PIN, 8, 0, false), 0x6A88);
	assert_int_equal(tx1(c, 0, 0x20, 0x00, 0x80, PIN, 6, 0, false), 0x6A80);
	/* block it */
	assert_int_equal(verify_pin(c, bad), 0x63C2);
	assert_int_equal(verify_pin(c, bad), 0x63C1);
	assert_int_equal(verify_pin(c, bad), 0x63C0);
	assert_int_equal(verify_pin(c, PIN), 0x6983);
	assert_int_equal(tx1(c, 0, 0x20, 0x00, 0x80, NULL, 0, 0, false), 0x6983);
	/* unblock: wrong PUK costs a PUK try */
	memcpy(two, bad, 8);
	memcpy(two + 8, "99999999", 8);
	assert_int_equal(tx1(c, 0, 0x2C, 0x00, 0x80, two, 16, 0, false), 0x63C2);
	memcpy(two, PUK, 8);
	memcpy(two + 8, "9999\xFF\xFF\xFF\xFF", 8); /* too short: 4 digits */
	assert_int_equal(tx1(c, 0, 0x2C, 0x00, 0x80, two, 16, 0, false), 0x6A80);
	memcpy(two + 8, "99999999", 8);
	assert_int_equal(tx1(c, 0, 0x2C, 0x00, 0x80, two, 16, 0, false), 0x9000);
	assert_int_equal(tx1(c, 0, 0x20, 0x00, 0x80, NULL, 0, 0, false), 0x63C3);
	assert_int_equal(verify_pin(c, PIN), 0x63C2);
	assert_int_equal(verify_pin(c, (const uint8_t *)"99999999"), 0x9000);
	/* change the PIN back: wrong old PIN counts */
	memcpy(two, bad, 8);
	memcpy(two + 8, PIN, 8);
	assert_int_equal(tx1(c, 0, 0x24, 0x00, 0x80, two, 16, 0, false), 0x63C2);
	memcpy(two, "99999999", 8);
	assert_int_equal(tx1(c, 0, 0x24, 0x00, 0x80, two, 16, 0, false), 0x9000);
	assert_int_equal(verify_pin(c, PIN), 0x9000);
	/* change the PUK */
	memcpy(two, PUK, 8);
	memcpy(two + 8, "87654321", 8);
	assert_int_equal(tx1(c, 0, 0x24, 0x00, 0x81, two, 16, 0, false), 0x9000);
	assert_int_equal(tx1(c, 0, 0x24, 0x00, 0x81, two, 16, 0, false), 0x63C2);
	tk_vcard_free(&c);
}

static void
test_mgm_auth(void **state)
{
	tk_vcard_t *c = new_card();
	static const uint8_t aes[16] = {0x10, 0x11, 0x12, 0x13, 0x14, 0x15, 0x16, 0x17,
	                                0x18, 0x19, 0x1A, 0x1B, 0x1C, 0x1D, 0x1E, 0x1F};
	uint8_t req[64], wrong[8] = {0}, enc[16];
	const uint8_t *v;
	size_t vl;
	static const uint8_t put[] = {0x5C, 0x03, 0x5F, 0xC1, 0x09, 0x53, 0x02, 0xAB, 0xCD};

	(void)state;
	/* PUT DATA needs the management key */
	assert_int_equal(xfer(c, 0xDB, 0x3F, 0xFF, put, sizeof(put)), 0x6982);
	/* wrong witness answer */
	assert_int_equal(
	        tx1(c, 0, 0x87, 0x03, 0x9B, (const uint8_t *)"\x7C\x02\x80\x00", 4, 256, false),
	        0x9000);
	memcpy(req, "\x7C\x0A\x80\x08", 4);
	memcpy(req + 4, wrong, 8);
	assert_int_equal(tx1(c, 0, 0x87, 0x03, 0x9B, req, 12, 256, false), 0x6982);
	/* wrong algorithm in P1 */
	assert_int_equal(
	        tx1(c, 0, 0x87, 0x08, 0x9B, (const uint8_t *)"\x7C\x02\x80\x00", 4, 256, false),
	        0x6A86);
	mgm_auth(c);
	assert_int_equal(xfer(c, 0xDB, 0x3F, 0xFF, put, sizeof(put)), 0x9000);
	/* printed information needs the PIN to be read */
	assert_int_equal(xfer(c, 0xCB, 0x3F, 0xFF, (const uint8_t *)"\x5C\x03\x5F\xC1\x09", 5),
	                 0x6982);
	assert_int_equal(verify_pin(c, PIN), 0x9000);
	assert_int_equal(xfer(c, 0xCB, 0x3F, 0xFF, (const uint8_t *)"\x5C\x03\x5F\xC1\x09", 5),
	                 0x9000);
	assert_int_equal(data_len, 4);
	assert_memory_equal(data, "\x53\x02\xAB\xCD", 4);

	/* switch to AES-128 and authenticate with the simple challenge flow */
	memcpy(req, "\x08\x9B\x10", 3);
	memcpy(req + 3, aes, 16);
	assert_int_equal(tx1(c, 0, 0xFF, 0xFF, 0xFF, req, 19, 0, false), 0x9000);
	tk_vcard_reset(c);
	assert_int_equal(tx1(c, 0, 0xA4, 0x04, 0x00, AID, sizeof(AID), 256, false), 0x9000);
	assert_int_equal(xfer(c, 0xDB, 0x3F, 0xFF, put, sizeof(put)), 0x6982);
	assert_int_equal(mgm_auth_ex(c, 0x03, EVP_des_ede3_ecb(), MGM3DES, 8), 0x6A86);
	assert_int_equal(
	        tx1(c, 0, 0x87, 0x08, 0x9B, (const uint8_t *)"\x7C\x02\x81\x00", 4, 256, false),
	        0x9000);
	assert_true(find(data, data_len, 0x7C, &v, &vl));
	assert_true(find(v, vl, 0x81, &v, &vl));
	assert_int_equal(vl, 16);
	block_cipher(EVP_aes_128_ecb(), aes, true, v, 16, enc);
	memcpy(req, "\x7C\x12\x82\x10", 4);
	memcpy(req + 4, enc, 16);
	assert_int_equal(tx1(c, 0, 0x87, 0x08, 0x9B, req, 20, 0, false), 0x9000);
	assert_int_equal(xfer(c, 0xDB, 0x3F, 0xFF, put, sizeof(put)), 0x9000);
	/* a response without a challenge is out of sequence */
	assert_int_equal(tx1(c, 0, 0x87, 0x08, 0x9B, req, 20, 0, false), 0x6985);
	/* and the yubico-piv-tool flow with AES */
	assert_int_equal(mgm_auth_ex(c, 0x08, EVP_aes_128_ecb(), aes, 16), 0x9000);
	/* metadata: AES-128, not default any more */
	assert_int_equal(tx1(c, 0, 0xF7, 0x00, 0x9B, NULL, 0, 256, false), 0x9000);
	assert_true(find(data, data_len, 0x01, &v, &vl));
	assert_int_equal(v[0], 0x08);
	assert_true(find(data, data_len, 0x05, &v, &vl));
	assert_int_equal(v[0], 0x00);
	tk_vcard_free(&c);
}

static EVP_PKEY *
ec_pub(const char *group, const uint8_t *pt, size_t len)
{
	OSSL_PARAM_BLD *bld = OSSL_PARAM_BLD_new();
	OSSL_PARAM *params;
	EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_name(NULL, "EC", NULL);
	EVP_PKEY *pk = NULL;

	assert_non_null(bld);
	assert_int_equal(OSSL_PARAM_BLD_push_utf8_string(bld, OSSL_PKEY_PARAM_GROUP_NAME, group, 0),
	                 1);
	assert_int_equal(OSSL_PARAM_BLD_push_octet_string(bld, OSSL_PKEY_PARAM_PUB_KEY, pt, len),
	                 1);
	params = OSSL_PARAM_BLD_to_param(bld);
	assert_int_equal(EVP_PKEY_fromdata_init(ctx), 1);
	assert_int_equal(EVP_PKEY_fromdata(ctx, &pk, EVP_PKEY_PUBLIC_KEY, params), 1);
	OSSL_PARAM_free(params);
	OSSL_PARAM_BLD_free(bld);
	EVP_PKEY_CTX_free(ctx);
	return pk;
}

/* Generate an EC key in slot; returns the public point (65 or 97 bytes). */
static void
gen_ec(tk_vcard_t *c, uint8_t slot, uint8_t alg, uint8_t *pt, size_t *pt_len)
{
	uint8_t req[] = {0xAC, 0x03, 0x80, 0x01, alg};
	const uint8_t *v;
	size_t vl;

	assert_int_equal(xfer(c, 0x47, 0x00, slot, req, sizeof(req)), 0x9000);
	assert_true(find(data, data_len, 0x7F49, &v, &vl));
	assert_true(find(v, vl, 0x86, &v, &vl));
	assert_int_equal(vl, alg == 0x11 ? 65 : 97);
	assert_int_equal(v[0], 0x04);
	memcpy(pt, v, vl);
	*pt_len = vl;
}

static uint16_t
sign(tk_vcard_t *c, uint8_t alg, uint8_t slot, const uint8_t *in, size_t in_len, uint8_t tag_in)
{
	static uint8_t req[1100];
	size_t n = 0, inner = 2 + 1 + (in_len > 255 ? 3u : in_len > 127 ? 2u : 1u) + in_len;

	req[n++] = 0x7C;
	if (inner > 255) {
		req[n++] = 0x82;
		req[n++] = (uint8_t)(inner >> 8);
		req[n++] = (uint8_t)inner;
	} else if (inner > 127) {
		req[n++] = 0x81;
		req[n++] = (uint8_t)inner;
	} else {
		req[n++] = (uint8_t)inner;
	}
	req[n++] = 0x82;
	req[n++] = 0x00;
	req[n++] = tag_in;
	if (in_len > 255) {
		req[n++] = 0x82;
		req[n++] = (uint8_t)(in_len >> 8);
		req[n++] = (uint8_t)in_len;
	} else if (in_len > 127) {
		req[n++] = 0x81;
		req[n++] = (uint8_t)in_len;
	} else {
		req[n++] = (uint8_t)in_len;
	}
	memcpy(req + n, in, in_len);
	n += in_len;
	return xfer(c, 0x87, alg, slot, req, n);
}

static void
sig_from_resp(const uint8_t **v, size_t *vl)
{
	assert_true(find(data, data_len, 0x7C, v, vl));
	assert_true(find(*v, *vl, 0x82, v, vl));
}

static void
test_p256_sign(void **state)
{
	tk_vcard_t *c = new_card();
	uint8_t pt[100], hash[32], sig[128];
	size_t pt_len, sl;
	const uint8_t *v;
	size_t vl;
	EVP_PKEY *pk;
	EVP_PKEY_CTX *ctx;
	unsigned hl = 0;

	(void)state;
	/* GENERATE needs the management key */
	assert_int_equal(xfer(c, 0x47, 0x00, 0x9A, (const uint8_t *)"\xAC\x03\x80\x01\x11", 5),
	                 0x6982);
	mgm_auth(c);
	assert_int_equal(xfer(c, 0x47, 0x00, 0x9A, (const uint8_t *)"\xAC\x03\x80\x01\x42", 5),
	                 0x6A80);
	gen_ec(c, 0x9A, 0x11, pt, &pt_len);
	assert_int_equal(EVP_Digest("hello", 5, hash, &hl, EVP_sha256(), NULL), 1);
	assert_int_equal(sign(c, 0x11, 0x9A, hash, 32, 0x81), 0x6982);
	assert_int_equal(verify_pin(c, PIN), 0x9000);
	/* wrong algorithm for the slot */
	assert_int_equal(sign(c, 0x14, 0x9A, hash, 32, 0x81), 0x6A86);
	assert_int_equal(sign(c, 0x11, 0x9A, hash, 32, 0x81), 0x9000);
	sig_from_resp(&v, &vl);
	assert_true(vl >= 8 && vl <= 72);
	assert_int_equal(v[0], 0x30); /* DER ECDSA-Sig-Value */
	memcpy(sig, v, vl);
	sl = vl;
	pk = ec_pub("P-256", pt, pt_len);
	ctx = EVP_PKEY_CTX_new_from_pkey(NULL, pk, NULL);
	assert_int_equal(EVP_PKEY_verify_init(ctx), 1);
	assert_int_equal(EVP_PKEY_verify(ctx, sig, sl, hash, 32), 1);
	hash[0] ^= 1;
	assert_int_not_equal(EVP_PKEY_verify(ctx, sig, sl, hash, 32), 1);
	EVP_PKEY_CTX_free(ctx);
	EVP_PKEY_free(pk);
	/* PIN policy "once": still fine after a signature; cleared by reset */
	assert_int_equal(sign(c, 0x11, 0x9A, hash, 32, 0x81), 0x9000);
	tk_vcard_reset(c);
	assert_int_equal(tx1(c, 0, 0xA4, 0x04, 0x00, AID, sizeof(AID), 256, false), 0x9000);
	assert_int_equal(sign(c, 0x11, 0x9A, hash, 32, 0x81), 0x6982);
	/* empty slot */
	assert_int_equal(verify_pin(c, PIN), 0x9000);
	assert_int_equal(sign(c, 0x11, 0x9D, hash, 32, 0x81), 0x6A88);
	tk_vcard_free(&c);
}

static void
test_9c_always(void **state)
{
	tk_vcard_t *c = new_card();
	uint8_t pt[100], hash[32];
	size_t pt_len;

	(void)state;
	memset(hash, 0x33, sizeof(hash));
	mgm_auth(c);
	gen_ec(c, 0x9C, 0x14, pt, &pt_len);
	assert_int_equal(verify_pin(c, PIN), 0x9000);
	assert_int_equal(sign(c, 0x14, 0x9C, hash, 32, 0x81), 0x9000);
	assert_int_equal(sign(c, 0x14, 0x9C, hash, 32, 0x81), 0x6982);
	assert_int_equal(verify_pin(c, PIN), 0x9000);
	assert_int_equal(sign(c, 0x14, 0x9C, hash, 32, 0x81), 0x9000);
	/* 9E: no PIN at all */
	gen_ec(c, 0x9E, 0x11, pt, &pt_len);
	tk_vcard_reset(c);
	assert_int_equal(tx1(c, 0, 0xA4, 0x04, 0x00, AID, sizeof(AID), 256, false), 0x9000);
	assert_int_equal(sign(c, 0x11, 0x9E, hash, 32, 0x81), 0x9000);
	tk_vcard_free(&c);
}

static void
test_ecdh(void **state)
{
	tk_vcard_t *c = new_card();
	uint8_t pt[100], peer_pt[100], mine[64];
	size_t pt_len, peer_len = 0, ml = sizeof(mine);
	EVP_PKEY *peer, *cardpub;
	EVP_PKEY_CTX *ctx;
	const uint8_t *v;
	size_t vl;

	(void)state;
	mgm_auth(c);
	gen_ec(c, 0x9D, 0x11, pt, &pt_len);
	peer = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
	assert_non_null(peer);
	assert_int_equal(EVP_PKEY_get_octet_string_param(peer, OSSL_PKEY_PARAM_ENCODED_PUBLIC_KEY,
	                                                 peer_pt, sizeof(peer_pt), &peer_len),
	                 1);
	assert_int_equal(verify_pin(c, PIN), 0x9000);
	assert_int_equal(sign(c, 0x11, 0x9D, peer_pt, peer_len, 0x85), 0x9000);
	sig_from_resp(&v, &vl);
	assert_int_equal(vl, 32);
	cardpub = ec_pub("P-256", pt, pt_len);
	ctx = EVP_PKEY_CTX_new_from_pkey(NULL, peer, NULL);
	assert_int_equal(EVP_PKEY_derive_init(ctx), 1);
	assert_int_equal(EVP_PKEY_derive_set_peer(ctx, cardpub), 1);
	assert_int_equal(EVP_PKEY_derive(ctx, mine, &ml), 1);
	assert_int_equal(ml, 32);
	assert_memory_equal(v, mine, 32);
	/* a point not on the curve is refused */
	peer_pt[10] ^= 0x01;
	assert_int_equal(sign(c, 0x11, 0x9D, peer_pt, peer_len, 0x85), 0x6A80);
	EVP_PKEY_CTX_free(ctx);
	EVP_PKEY_free(cardpub);
	EVP_PKEY_free(peer);
	tk_vcard_free(&c);
}

static BIGNUM *
bn(const uint8_t *p, size_t n)
{
	BIGNUM *b = BN_bin2bn(p, (int)n, NULL);

	assert_non_null(b);
	return b;
}

static void
test_rsa2048(void **state)
{
	tk_vcard_t *c = new_card();
	const uint8_t *v, *w;
	size_t vl, wl;
	uint8_t block[256], res[256];
	BIGNUM *n, *e, *m, *s;
	BN_CTX *bctx = BN_CTX_new();

	(void)state;
	mgm_auth(c);
	/* 7F49 with a 256-byte modulus is longer than 256: comes in parts */
	assert_int_equal(tx1(c, 0, 0x47, 0x00, 0x9A, (const uint8_t *)"\xAC\x03\x80\x01\x07", 5,
	                     256, false) >>
	                         8,
	                 0x61);
	assert_int_equal(data_len, 256);
	assert_int_equal(tx1(c, 0, 0xC0, 0, 0, NULL, 0, 256, false), 0x9000);
	/* and whole when asked again through the client loop */
	assert_int_equal(xfer(c, 0x47, 0x00, 0x9A, (const uint8_t *)"\xAC\x03\x80\x01\x07", 5),
	                 0x9000);
	assert_true(find(data, data_len, 0x7F49, &v, &vl));
	assert_true(find(v, vl, 0x81, &w, &wl));
	assert_int_equal(wl, 256);
	n = bn(w, wl);
	assert_int_equal(BN_num_bits(n), 2048);
	assert_true(find(v, vl, 0x82, &w, &wl));
	e = bn(w, wl);
	assert_true(BN_is_word(e, 65537));
	/* PKCS#1 v1.5 type 1 block as a host would build it */
	memset(block, 0xFF, sizeof(block));
	block[0] = 0x00;
	block[1] = 0x01;
	block[200] = 0x00;
	memset(block + 201, 0x42, 55);
	assert_int_equal(verify_pin(c, PIN), 0x9000);
	/* command chaining: 256 bytes + headers do not fit one short APDU */
	assert_int_equal(sign(c, 0x07, 0x9A, block, 256, 0x81), 0x9000);
	sig_from_resp(&v, &vl);
	assert_int_equal(vl, 256);
	memcpy(res, v, 256);
	s = bn(res, 256);
	m = BN_new();
	assert_int_equal(BN_mod_exp(m, s, e, n, bctx), 1);
	assert_int_equal(BN_bn2binpad(m, res, 256), 256);
	assert_memory_equal(res, block, 256);
	/* wrong length input */
	assert_int_equal(sign(c, 0x07, 0x9A, block, 255, 0x81), 0x6A80);
	BN_free(n);
	BN_free(e);
	BN_free(m);
	BN_free(s);
	BN_CTX_free(bctx);
	tk_vcard_free(&c);
}

static size_t
put_el(uint8_t *p, uint8_t tag, const BIGNUM *b, int len)
{
	size_t n = 0;

	p[n++] = tag;
	if (len > 127)
		p[n++] = 0x81;
	p[n++] = (uint8_t)len;
	assert_int_equal(BN_bn2binpad(b, p + n, len), len);
	return n + (size_t)len;
}

static void
test_import(void **state)
{
	tk_vcard_t *c = new_card();
	EVP_PKEY *k = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256"), *r;
	BIGNUM *d = NULL, *bnv[5] = {NULL};
	static const char *names[5] = {OSSL_PKEY_PARAM_RSA_FACTOR1, OSSL_PKEY_PARAM_RSA_FACTOR2,
	                               OSSL_PKEY_PARAM_RSA_EXPONENT1, OSSL_PKEY_PARAM_RSA_EXPONENT2,
	                               OSSL_PKEY_PARAM_RSA_COEFFICIENT1};
	uint8_t req[800], pub[100], hash[32], block[128], expect[128];
	size_t n = 0, pl = 0, el = sizeof(expect);
	const uint8_t *v;
	size_t vl;
	EVP_PKEY_CTX *ctx;

	(void)state;
	assert_non_null(k);
	assert_int_equal(EVP_PKEY_get_bn_param(k, OSSL_PKEY_PARAM_PRIV_KEY, &d), 1);
	n = put_el(req, 0x06, d, 32);
	memcpy(req + n, "\xAA\x01\x01", 3); /* PIN policy never */
	n += 3;
	assert_int_equal(xfer(c, 0xFE, 0x11, 0x9A, req, n), 0x6982);
	mgm_auth(c);
	assert_int_equal(xfer(c, 0xFE, 0x11, 0x9A, req, n - 3 + 1), 0x6A80); /* truncated */
	assert_int_equal(xfer(c, 0xFE, 0x11, 0x9A, req, n), 0x9000);
	/* metadata: algorithm, policy (never, touch never), origin imported, key */
	assert_int_equal(xfer(c, 0xF7, 0x00, 0x9A, NULL, 0), 0x9000);
	assert_true(find(data, data_len, 0x01, &v, &vl));
	assert_int_equal(v[0], 0x11);
	assert_true(find(data, data_len, 0x02, &v, &vl));
	assert_int_equal(vl, 2);
	assert_int_equal(v[0], 1);
	assert_true(find(data, data_len, 0x03, &v, &vl));
	assert_int_equal(v[0], 2);
	assert_true(find(data, data_len, 0x04, &v, &vl));
	assert_true(find(v, vl, 0x86, &v, &vl));
	assert_int_equal(EVP_PKEY_get_octet_string_param(k, OSSL_PKEY_PARAM_ENCODED_PUBLIC_KEY, pub,
	                                                 sizeof(pub), &pl),
	                 1);
	assert_int_equal(vl, pl);
	assert_memory_equal(v, pub, pl);
	/* no PIN needed (policy never); signature verifies under our key */
	memset(hash, 0x17, sizeof(hash));
	assert_int_equal(sign(c, 0x11, 0x9A, hash, 32, 0x81), 0x9000);
	sig_from_resp(&v, &vl);
	ctx = EVP_PKEY_CTX_new_from_pkey(NULL, k, NULL);
	assert_int_equal(EVP_PKEY_verify_init(ctx), 1);
	assert_int_equal(EVP_PKEY_verify(ctx, v, vl, hash, 32), 1);
	EVP_PKEY_CTX_free(ctx);
	/* an imported key cannot be attested */
	assert_int_equal(xfer(c, 0xF9, 0x9A, 0x00, NULL, 0), 0x6A80);

	/* RSA-1024 from its CRT elements; compare the raw operation */
	r = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)1024);
	assert_non_null(r);
	n = 0;
	for (int i = 0; i < 5; i++) {
		assert_int_equal(EVP_PKEY_get_bn_param(r, names[i], &bnv[i]), 1);
		n += put_el(req + n, (uint8_t)(i + 1), bnv[i], 64);
	}
	assert_int_equal(xfer(c, 0xFE, 0x06, 0x9D, req, n), 0x9000);
	req[n - 1] ^= 1; /* inconsistent qInv */
	assert_int_equal(xfer(c, 0xFE, 0x06, 0x9D, req, n), 0x6A80);
	memset(block, 0, sizeof(block));
	block[1] = 1;
	memset(block + 2, 0x5C, 100);
	ctx = EVP_PKEY_CTX_new_from_pkey(NULL, r, NULL);
	assert_int_equal(EVP_PKEY_decrypt_init(ctx), 1);
	assert_int_equal(EVP_PKEY_CTX_set_rsa_padding(ctx, RSA_NO_PADDING), 1);
	assert_int_equal(EVP_PKEY_decrypt(ctx, expect, &el, block, 128), 1);
	EVP_PKEY_CTX_free(ctx);
	assert_int_equal(verify_pin(c, PIN), 0x9000);
	assert_int_equal(sign(c, 0x06, 0x9D, block, 128, 0x81), 0x9000);
	sig_from_resp(&v, &vl);
	assert_int_equal(vl, 128);
	assert_memory_equal(v, expect, el);
	for (int i = 0; i < 5; i++)
		BN_free(bnv[i]);
	BN_clear_free(d);
	EVP_PKEY_free(r);
	EVP_PKEY_free(k);
	tk_vcard_free(&c);
}

static void
test_metadata(void **state)
{
	tk_vcard_t *c = new_card();
	const uint8_t *v;
	size_t vl;
	uint8_t two[16];

	(void)state;
	assert_int_equal(xfer(c, 0xF7, 0x00, 0x80, NULL, 0), 0x9000);
	assert_true(find(data, data_len, 0x01, &v, &vl));
	assert_int_equal(v[0], 0xFF);
	assert_true(find(data, data_len, 0x05, &v, &vl));
	assert_int_equal(v[0], 1);
	assert_true(find(data, data_len, 0x06, &v, &vl));
	assert_int_equal(vl, 2);
	assert_int_equal(v[0], 3);
	assert_int_equal(v[1], 3);
	memcpy(two, PIN, 8);
	memcpy(two + 8, "11223344", 8);
	assert_int_equal(tx1(c, 0, 0x24, 0x00, 0x80, two, 16, 0, false), 0x9000);
	assert_int_equal(verify_pin(c, PIN), 0x63C2);
	assert_int_equal(xfer(c, 0xF7, 0x00, 0x80, NULL, 0), 0x9000);
	assert_true(find(data, data_len, 0x05, &v, &vl));
	assert_int_equal(v[0], 0);
	assert_true(find(data, data_len, 0x06, &v, &vl));
	assert_int_equal(v[1], 2);
	assert_int_equal(xfer(c, 0xF7, 0x00, 0x81, NULL, 0), 0x9000);
	assert_true(find(data, data_len, 0x05, &v, &vl));
	assert_int_equal(v[0], 1);
	assert_int_equal(xfer(c, 0xF7, 0x00, 0x9B, NULL, 0), 0x9000);
	assert_true(find(data, data_len, 0x01, &v, &vl));
	assert_int_equal(v[0], 0x03);
	assert_true(find(data, data_len, 0x05, &v, &vl));
	assert_int_equal(v[0], 1);
	assert_int_equal(xfer(c, 0xF7, 0x00, 0x9A, NULL, 0), 0x6A82);
	assert_int_equal(xfer(c, 0xF7, 0x00, 0x42, NULL, 0), 0x6A86);
	/* the attestation key exists from the start */
	assert_int_equal(xfer(c, 0xF7, 0x00, 0xF9, NULL, 0), 0x9000);
	tk_vcard_free(&c);
}

static void
test_attest(void **state)
{
	tk_vcard_t *c = new_card();
	uint8_t pt[100], cert_pt[100];
	size_t pt_len, cpl = 0;
	const uint8_t *v, *p;
	size_t vl;
	X509 *ca, *x;
	EVP_PKEY *capk, *xpk;

	(void)state;
	assert_int_equal(xfer(c, 0xF9, 0x9A, 0x00, NULL, 0), 0x6A80); /* empty */
	mgm_auth(c);
	gen_ec(c, 0x9A, 0x11, pt, &pt_len);
	assert_int_equal(xfer(c, 0xF9, 0x9A, 0x00, NULL, 0), 0x9000);
	p = data;
	x = d2i_X509(NULL, &p, (long)data_len);
	assert_non_null(x);
	assert_int_equal((size_t)(p - data), data_len);
	/* the attestation CA certificate in 5FFF01 */
	assert_int_equal(xfer(c, 0xCB, 0x3F, 0xFF, (const uint8_t *)"\x5C\x03\x5F\xFF\x01", 5),
	                 0x9000);
	assert_true(find(data, data_len, 0x53, &v, &vl));
	assert_true(find(v, vl, 0x70, &v, &vl));
	p = v;
	ca = d2i_X509(NULL, &p, (long)vl);
	assert_non_null(ca);
	capk = X509_get0_pubkey(ca);
	assert_int_equal(X509_verify(ca, capk), 1);
	assert_int_equal(X509_verify(x, capk), 1);
	assert_int_equal(X509_NAME_cmp(X509_get_issuer_name(x), X509_get_subject_name(ca)), 0);
	xpk = X509_get0_pubkey(x);
	assert_int_equal(EVP_PKEY_get_octet_string_param(xpk, OSSL_PKEY_PARAM_ENCODED_PUBLIC_KEY,
	                                                 cert_pt, sizeof(cert_pt), &cpl),
	                 1);
	assert_int_equal(cpl, pt_len);
	assert_memory_equal(cert_pt, pt, pt_len);
	X509_free(x);
	X509_free(ca);
	tk_vcard_free(&c);
}

static void
test_chaining(void **state)
{
	tk_vcard_t *c = new_card();
	static uint8_t obj[1600], req[1700];
	size_t n = 0;
	uint16_t sw;
	const uint8_t *v;
	size_t vl;

	(void)state;
	for (size_t i = 0; i < sizeof(obj); i++)
		obj[i] = (uint8_t)(i * 7 + 3);
	memcpy(req, "\x5C\x03\x5F\xC1\x05\x53\x82", 7);
	n = 7;
	req[n++] = (uint8_t)(sizeof(obj) >> 8);
	req[n++] = (uint8_t)sizeof(obj);
	memcpy(req + n, obj, sizeof(obj));
	n += sizeof(obj);
	mgm_auth(c);
	assert_int_equal(xfer(c, 0xDB, 0x3F, 0xFF, req, n), 0x9000);
	/* short read: 256-byte parts and 61xx */
	sw = tx1(c, 0, 0xCB, 0x3F, 0xFF, (const uint8_t *)"\x5C\x03\x5F\xC1\x05", 5, 256, false);
	assert_int_equal(sw, 0x6100); /* 1604 - 256 left: more than 255 */
	assert_int_equal(data_len, 256);
	assert_int_equal(xfer(c, 0xCB, 0x3F, 0xFF, (const uint8_t *)"\x5C\x03\x5F\xC1\x05", 5),
	                 0x9000);
	assert_int_equal(data_len, 4 + sizeof(obj));
	assert_true(find(data, data_len, 0x53, &v, &vl));
	assert_int_equal(vl, sizeof(obj));
	assert_memory_equal(v, obj, sizeof(obj));
	/* a short Le first (OpenSC reads the header), the remainder count */
	sw = tx1(c, 0, 0xCB, 0x3F, 0xFF, (const uint8_t *)"\x5C\x03\x5F\xC1\x05", 5, 8, false);
	assert_int_equal(sw, 0x6100);
	assert_int_equal(data_len, 8);
	assert_memory_equal(data, "\x53\x82\x06\x40", 4);
	/* extended Le 65536: the whole object at once */
	sw = tx1(c, 0, 0xCB, 0x3F, 0xFF, (const uint8_t *)"\x5C\x03\x5F\xC1\x05", 5, 65536, true);
	assert_int_equal(sw, 0x9000);
	assert_int_equal(data_len, 4 + sizeof(obj));
	assert_memory_equal(data + 4, obj, sizeof(obj));
	/* the last part announces the exact remainder */
	sw = tx1(c, 0, 0xCB, 0x3F, 0xFF, (const uint8_t *)"\x5C\x03\x5F\xC1\x05", 5, 1500, true);
	assert_int_equal(sw, 0x6168); /* 1604 - 1500 = 104 */
	assert_int_equal(tx1(c, 0, 0xC0, 0, 0, NULL, 0, 0x68, false), 0x9000);
	assert_int_equal(data_len, 0x68);
	assert_memory_equal(data, obj + sizeof(obj) - 0x68, 0x68);
	/* GET RESPONSE with nothing pending */
	assert_int_equal(tx1(c, 0, 0xC0, 0, 0, NULL, 0, 0, false), 0x6985);
	/* a chain broken by another command starts over */
	assert_int_equal(tx1(c, 0x10, 0xDB, 0x3F, 0xFF, req, 100, 0, false), 0x9000);
	assert_int_equal(tx1(c, 0, 0xFD, 0, 0, NULL, 0, 0, false), 0x9000);
	assert_int_equal(tx1(c, 0, 0xDB, 0x3F, 0xFF, req + 100, 100, 0, false), 0x6A80);
	/* delete with an empty 53 */
	assert_int_equal(
	        xfer(c, 0xDB, 0x3F, 0xFF, (const uint8_t *)"\x5C\x03\x5F\xC1\x05\x53\x00", 7),
	        0x9000);
	assert_int_equal(xfer(c, 0xCB, 0x3F, 0xFF, (const uint8_t *)"\x5C\x03\x5F\xC1\x05", 5),
	                 0x6A82);
	tk_vcard_free(&c);
}

static void
block_both(tk_vcard_t *c)
{
	static const uint8_t bad[16] = "0000000000000000";

	for (int i = 0; i < 3; i++)
		verify_pin(c, bad);
	for (int i = 0; i < 3; i++)
		tx1(c, 0, 0x2C, 0x00, 0x80, bad, 16, 0, false);
}

static void
test_reset(void **state)
{
	tk_vcard_t *c = new_card();
	uint8_t pt[100], guid[16];
	size_t pt_len;
	const uint8_t *v;
	size_t vl;

	(void)state;
	assert_int_equal(xfer(c, 0xCB, 0x3F, 0xFF, (const uint8_t *)"\x5C\x03\x5F\xC1\x02", 5),
	                 0x9000);
	assert_true(find(data + 2, data_len - 2, 0x34, &v, &vl));
	memcpy(guid, v, 16);
	mgm_auth(c);
	gen_ec(c, 0x9A, 0x11, pt, &pt_len);
	assert_int_equal(tx1(c, 0, 0xFB, 0, 0, NULL, 0, 0, false), 0x6985);
	verify_pin(c, (const uint8_t *)"00000000");
	assert_int_equal(tx1(c, 0, 0xFB, 0, 0, NULL, 0, 0, false), 0x6985);
	block_both(c);
	assert_int_equal(tx1(c, 0, 0x20, 0x00, 0x80, NULL, 0, 0, false), 0x6983);
	assert_int_equal(tx1(c, 0, 0xFB, 0, 0, NULL, 0, 0, false), 0x9000);
	assert_int_equal(tx1(c, 0, 0x20, 0x00, 0x80, NULL, 0, 0, false), 0x63C3);
	assert_int_equal(verify_pin(c, PIN), 0x9000);
	assert_int_equal(xfer(c, 0xF7, 0x00, 0x9A, NULL, 0), 0x6A82);
	assert_int_equal(xfer(c, 0xF7, 0x00, 0xF9, NULL, 0), 0x9000);
	assert_int_equal(xfer(c, 0xCB, 0x3F, 0xFF, (const uint8_t *)"\x5C\x03\x5F\xC1\x02", 5),
	                 0x9000);
	assert_true(find(data + 2, data_len - 2, 0x34, &v, &vl));
	assert_memory_not_equal(v, guid, 16);
	mgm_auth(c); /* default management key again */
	tk_vcard_free(&c);
}

static void
test_pin_retries(void **state)
{
	tk_vcard_t *c = new_card();
	static const uint8_t bad[8] = {'0', '0', '0', '0', '0', '0', 0xFF, 0xFF};
	uint8_t req[40];
	const uint8_t *v;
	size_t vl;

	(void)state;
	assert_int_equal(tx1(c, 0, 0xFA, 5, 6, NULL, 0, 0, false), 0x6982);
	mgm_auth(c);
	assert_int_equal(tx1(c, 0, 0xFA, 5, 6, NULL, 0, 0, false), 0x6982); /* PIN too */
	assert_int_equal(verify_pin(c, PIN), 0x9000);
	assert_int_equal(tx1(c, 0, 0xFA, 0, 6, NULL, 0, 0, false), 0x6A86);
	assert_int_equal(tx1(c, 0, 0xFA, 5, 6, NULL, 0, 0, false), 0x9000);
	assert_int_equal(xfer(c, 0xF7, 0x00, 0x80, NULL, 0), 0x9000);
	assert_true(find(data, data_len, 0x06, &v, &vl));
	assert_int_equal(vl, 2);
	assert_int_equal(v[0], 5);
	assert_int_equal(v[1], 5);
	assert_int_equal(xfer(c, 0xF7, 0x00, 0x81, NULL, 0), 0x9000);
	assert_true(find(data, data_len, 0x06, &v, &vl));
	assert_int_equal(v[0], 6);
	assert_int_equal(verify_pin(c, bad), 0x63C4);
	/* SET MANAGEMENT KEY with touch (FF FE): AES-256, touch policy shows */
	memcpy(req, "\x0C\x9B\x20", 3);
	memset(req + 3, 0x77, 32);
	assert_int_equal(tx1(c, 0, 0xFF, 0xFF, 0xFE, req, 35, 0, false), 0x9000);
	assert_int_equal(xfer(c, 0xF7, 0x00, 0x9B, NULL, 0), 0x9000);
	assert_true(find(data, data_len, 0x01, &v, &vl));
	assert_int_equal(v[0], 0x0C);
	assert_true(find(data, data_len, 0x02, &v, &vl));
	assert_int_equal(v[1], 2);
	/* wrong key length for the algorithm */
	assert_int_equal(tx1(c, 0, 0xFF, 0xFF, 0xFF, req, 34, 0, false), 0x6A80);
	assert_int_equal(mgm_auth_ex(c, 0x0C, EVP_aes_256_ecb(), req + 3, 16), 0x9000);
	tk_vcard_free(&c);
}

static char *
tmp_path(void)
{
	static char dir[] = "/tmp/tkvcard-test-XXXXXX";
	static char path[64];

	if (path[0] == 0) {
		assert_non_null(mkdtemp(dir));
		snprintf(path, sizeof(path), "%s/card.state", dir);
	}
	unlink(path);
	return path;
}

static void
write_file(const char *path, const uint8_t *p, size_t n)
{
	FILE *f = fopen(path, "wb");

	assert_non_null(f);
	assert_int_equal(fwrite(p, 1, n, f), n);
	fclose(f);
}

static void
test_persist(void **state)
{
	const char *path = tmp_path();
	tk_vcard_t *c = NULL;
	uint8_t pt[100], two[16], serial[4], hash[32];
	size_t pt_len;
	const uint8_t *v;
	size_t vl;

	(void)state;
	assert_int_equal(tk_vcard_open(path, &c), TK_OK);
	assert_int_equal(access(path, R_OK), 0); /* created at once */
	tk_vcard_power_on(c);
	assert_int_equal(tx1(c, 0, 0xA4, 0x04, 0x00, AID, sizeof(AID), 256, false), 0x9000);
	assert_int_equal(tx1(c, 0, 0xF8, 0, 0, NULL, 0, 0, false), 0x9000);
	memcpy(serial, data, 4);
	memcpy(two, PIN, 8);
	memcpy(two + 8, "24681357", 8);
	assert_int_equal(tx1(c, 0, 0x24, 0x00, 0x80, two, 16, 0, false), 0x9000);
	mgm_auth(c);
	gen_ec(c, 0x9D, 0x11, pt, &pt_len);
	assert_int_equal(xfer(c, 0xDB, 0x3F, 0xFF,
	                      (const uint8_t *)"\x5C\x03\x5F\xC1\x0C\x53\x03\xC1\x01\x00", 10),
	                 0x9000);
	assert_int_equal(verify_pin(c, PIN), 0x63C2); /* the counter is state too */
	tk_vcard_free(&c);

	assert_int_equal(tk_vcard_open(path, &c), TK_OK);
	assert_int_equal(tx1(c, 0, 0xA4, 0x04, 0x00, AID, sizeof(AID), 256, false), 0x9000);
	assert_int_equal(tx1(c, 0, 0xF8, 0, 0, NULL, 0, 0, false), 0x9000);
	assert_memory_equal(data, serial, 4);
	assert_int_equal(tx1(c, 0, 0x20, 0x00, 0x80, NULL, 0, 0, false), 0x63C2);
	assert_int_equal(verify_pin(c, (const uint8_t *)"24681357"), 0x9000);
	assert_int_equal(xfer(c, 0xCB, 0x3F, 0xFF, (const uint8_t *)"\x5C\x03\x5F\xC1\x0C", 5),
	                 0x9000);
	assert_memory_equal(data, "\x53\x03\xC1\x01\x00", 5);
	assert_int_equal(xfer(c, 0xF7, 0x00, 0x9D, NULL, 0), 0x9000);
	assert_true(find(data, data_len, 0x04, &v, &vl));
	assert_true(find(v, vl, 0x86, &v, &vl));
	assert_memory_equal(v, pt, pt_len);
	memset(hash, 1, sizeof(hash));
	assert_int_equal(sign(c, 0x11, 0x9D, hash, 32, 0x81), 0x9000);
	/* one card, one reader: a second program cannot open it meanwhile */
	{
		tk_vcard_t *c2 = NULL;

		tk_log_set_level(TK_LOG_NONE);
		assert_int_equal(tk_vcard_open(path, &c2), TK_ERR_BUSY);
		assert_null(c2);
		tk_vcard_free(&c);
		assert_int_equal(tk_vcard_open(path, &c2), TK_OK);
		tk_vcard_free(&c2);
	}
	/* no temporary files are left behind: the state and its lock file */
	{
		char cmd[200];

		snprintf(cmd, sizeof(cmd), "test $(ls %.60s* | wc -l) -eq 2 && test -e %.60s.lock",
		         path, path);
		assert_int_equal(system(cmd), 0);
	}
}

static void
test_corrupt_state(void **state)
{
	const char *path = tmp_path();
	tk_vcard_t *c = NULL;
	uint8_t *good = NULL;
	size_t good_len = 0;

	(void)state;
	tk_log_set_level(TK_LOG_NONE); /* the refusals are logged as errors */
	assert_int_equal(tk_vcard_open(NULL, &c), TK_OK);
	assert_int_equal(tk_vcard_save_mem(c, &good, &good_len), TK_OK);
	tk_vcard_free(&c);
	assert_true(good_len > 8);
	assert_memory_equal(good, "TKVCARD1", 8);
	/* the bytes load back */
	assert_int_equal(tk_vcard_load_mem(good, good_len, &c), TK_OK);
	tk_vcard_free(&c);

	write_file(path, (const uint8_t *)"garbage", 7);
	assert_int_equal(tk_vcard_open(path, &c), TK_ERR_MALFORMED);
	assert_null(c);
	/* every truncation is refused (a record cut anywhere) */
	for (size_t n = 0; n < good_len; n += 1 + n / 8) {
		write_file(path, good, n);
		assert_int_equal(tk_vcard_open(path, &c), TK_ERR_MALFORMED);
	}
	/* a wrong version */
	good[7] = '2';
	assert_int_equal(tk_vcard_load_mem(good, good_len, &c), TK_ERR_MALFORMED);
	good[7] = '1';
	/* a bad retry counter in the PIN record (type 01, length 10) */
	assert_int_equal(good[8], 0x01);
	good[8 + 5 + 8] = 9; /* tries 9 > max 3 */
	assert_int_equal(tk_vcard_load_mem(good, good_len, &c), TK_ERR_MALFORMED);
	good[8 + 5 + 8] = 3;
	/* an unknown record type */
	good[8] = 0x42;
	assert_int_equal(tk_vcard_load_mem(good, good_len, &c), TK_ERR_MALFORMED);
	good[8] = 0x01;
	/* the end record is missing */
	assert_int_equal(tk_vcard_load_mem(good, good_len - 5, &c), TK_ERR_MALFORMED);
	/* bytes after the end record */
	good = realloc(good, good_len + 1);
	assert_non_null(good);
	good[good_len] = 0;
	assert_int_equal(tk_vcard_load_mem(good, good_len + 1, &c), TK_ERR_MALFORMED);
	assert_int_equal(tk_vcard_load_mem(good, good_len, &c), TK_OK);
	tk_vcard_free(&c);
	free(good);
	unlink(path);
}

static void
test_latency(void **state)
{
	tk_vcard_t *c = new_card();
	static uint8_t req[1300];
	static const uint8_t sel[] = {0, 0xA4, 4, 0, 5, 0xA0, 0, 0, 3, 8, 0};
	static const uint8_t vfy[] = {0,   0x20, 0,   0x80, 8,    '1', '2',
	                              '3', '4',  '5', '6',  0xFF, 0xFF};
	static const uint8_t gd[] = {0, 0xCB, 0x3F, 0xFF, 5, 0x5C, 3, 0x5F, 0xC1, 0x05, 0};
	static const uint8_t gr[] = {0, 0xC0, 0, 0, 0};
	uint8_t r[300];
	uint64_t total = 0;
	size_t rl;
	uint8_t pt[100];
	size_t pt_len;
	static const uint8_t sig[] = {0, 0x87, 0x11, 0x9A, 4, 0x7C, 0x02, 0x82, 0x00, 0};

	(void)state;
	assert_int_equal(tk_vcard_latency_us(c, sel, sizeof(sel)), 0);
	assert_int_equal(tk_vcard_set_latency(c, "nonsense"), TK_ERR_NOT_FOUND);
	assert_int_equal(tk_vcard_set_latency(c, "yubikey5"), TK_OK);
	assert_int_equal(tk_vcard_latency_us(c, sel, sizeof(sel)), 1300);
	assert_int_equal(tk_vcard_latency_us(c, vfy, sizeof(vfy)), 9100);
	assert_int_equal(tk_vcard_latency_us(c, vfy, 4), 1000);
	mgm_auth(c);
	gen_ec(c, 0x9A, 0x11, pt, &pt_len);
	assert_int_equal(tk_vcard_latency_us(c, sig, sizeof(sig)), 71600);
	/* a 1,004-byte certificate object read in 4 parts costs 7.3 ms in all */
	memcpy(req, "\x5C\x03\x5F\xC1\x05\x53\x82\x03\xE8", 9);
	memset(req + 9, 0x30, 1000);
	assert_int_equal(xfer(c, 0xDB, 0x3F, 0xFF, req, 1009), 0x9000);
	total += tk_vcard_latency_us(c, gd, sizeof(gd));
	rl = tk_vcard_process(c, gd, sizeof(gd), r, sizeof(r));
	for (int i = 0; i < 10 && r[rl - 2] == 0x61; i++) {
		total += tk_vcard_latency_us(c, gr, sizeof(gr));
		rl = tk_vcard_process(c, gr, sizeof(gr), r, sizeof(r));
	}
	assert_int_equal(r[rl - 2], 0x90);
	assert_true(total >= 7296 && total <= 7300);
	tk_vcard_free(&c);
}

/* The firmware option: GET VERSION reports it, and RSA-3072 / 4096 (INS 47
 * and FE) exist only from YubiKey firmware 5.7 on. */
static void
test_firmware_rsa3072(void **state)
{
	tk_vcard_t *c = new_card();
	uint8_t imp[4] = {0x06, 0x02, 0x00, 0x01}; /* an EC scalar for a P-256 import */

	(void)state;
	assert_int_equal(xfer(c, 0xFD, 0x00, 0x00, NULL, 0), 0x9000);
	assert_int_equal(data_len, 3);
	assert_memory_equal(data, "\x05\x04\x03", 3);
	mgm_auth(c);
	/* 5.4.3: no RSA-3072 or 4096, by GENERATE or IMPORT */
	assert_int_equal(xfer(c, 0x47, 0x00, 0x9A, (const uint8_t *)"\xAC\x03\x80\x01\x05", 5),
	                 0x6A80);
	assert_int_equal(xfer(c, 0x47, 0x00, 0x9A, (const uint8_t *)"\xAC\x03\x80\x01\x16", 5),
	                 0x6A80);
	assert_int_equal(xfer(c, 0xFE, 0x05, 0x9A, imp, sizeof(imp)), 0x6A86);
	assert_int_equal(xfer(c, 0xFE, 0x16, 0x9A, imp, sizeof(imp)), 0x6A86);
	assert_int_equal(tk_vcard_set_option(c, "firmware=5.7"), TK_ERR_INVALID_ARG);
	assert_int_equal(tk_vcard_set_option(c, "firmware=5.7.1x"), TK_ERR_INVALID_ARG);
	assert_int_equal(tk_vcard_set_option(c, "firmware=5.7.256"), TK_ERR_INVALID_ARG);
	assert_int_equal(tk_vcard_set_option(c, "firmware=5.7.1"), TK_OK);
	assert_int_equal(xfer(c, 0xFD, 0x00, 0x00, NULL, 0), 0x9000);
	assert_memory_equal(data, "\x05\x07\x01", 3);
	assert_int_equal(xfer(c, 0x47, 0x00, 0x9A, (const uint8_t *)"\xAC\x03\x80\x01\x05", 5),
	                 0x9000);
	assert_int_equal(xfer(c, 0xF7, 0x00, 0x9A, NULL, 0), 0x9000);
	assert_memory_equal(data, "\x01\x01\x05", 3);
	tk_vcard_free(&c);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_atr),
	        cmocka_unit_test(test_select),
	        cmocka_unit_test(test_chuid_discovery),
	        cmocka_unit_test(test_pin),
	        cmocka_unit_test(test_mgm_auth),
	        cmocka_unit_test(test_p256_sign),
	        cmocka_unit_test(test_firmware_rsa3072),
	        cmocka_unit_test(test_9c_always),
	        cmocka_unit_test(test_ecdh),
	        cmocka_unit_test(test_rsa2048),
	        cmocka_unit_test(test_import),
	        cmocka_unit_test(test_metadata),
	        cmocka_unit_test(test_attest),
	        cmocka_unit_test(test_chaining),
	        cmocka_unit_test(test_reset),
	        cmocka_unit_test(test_pin_retries),
	        cmocka_unit_test(test_persist),
	        cmocka_unit_test(test_corrupt_state),
	        cmocka_unit_test(test_latency),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
