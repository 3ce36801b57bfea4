/* tokenkit virtual card: PIN, PUK and the management key.
 *
 * VERIFY, CHANGE REFERENCE DATA and RESET RETRY COUNTER (SP 800-73-4 part 2,
 * 3.2.1-3.2.3), management-key authentication with GENERAL AUTHENTICATE
 * (witness and challenge flows, part 2 appendix A), and Yubico's SET
 * MANAGEMENT KEY and SET PIN RETRIES. PINs are compared in constant time
 * and every buffer that held one is wiped. */
#include <string.h>

#include <openssl/evp.h>

#include <tokenkit/err.h>
#include <tokenkit/mem.h>

#include "vcard_int.h"

static const uint8_t default_pin[VC_PIN_LEN] = {'1', '2', '3', '4', '5', '6', 0xFF, 0xFF};
static const uint8_t default_puk[VC_PIN_LEN] = {'1', '2', '3', '4', '5', '6', '7', '8'};
static const uint8_t default_mgm[24] = {
        1, 2, 3, 4, 5, 6, 7, 8, 1, 2, 3, 4, 5, 6, 7, 8, 1, 2, 3, 4, 5, 6, 7, 8,
};

void
vc_auth_defaults(tk_vcard_t *c)
{
	memcpy(c->pin, default_pin, VC_PIN_LEN);
	memcpy(c->puk, default_puk, VC_PIN_LEN);
	c->pin_tries = c->pin_max = VC_DEFAULT_TRIES;
	c->puk_tries = c->puk_max = VC_DEFAULT_TRIES;
	tk_wipe(c->mgm_key, sizeof(c->mgm_key));
	memcpy(c->mgm_key, default_mgm, sizeof(default_mgm));
	c->mgm_len = sizeof(default_mgm);
	c->mgm_alg = ALG_3DES;
	c->mgm_touch = TOUCH_POLICY_NEVER;
}

bool
vc_auth_is_default(const tk_vcard_t *c, uint8_t ref)
{
	switch (ref) {
	case REF_PIN:
		return tk_memeq_ct(c->pin, default_pin, VC_PIN_LEN);
	case REF_PUK:
		return tk_memeq_ct(c->puk, default_puk, VC_PIN_LEN);
	case REF_MGMT:
		return c->mgm_alg == ALG_3DES && c->mgm_len == sizeof(default_mgm) &&
		       tk_memeq_ct(c->mgm_key, default_mgm, sizeof(default_mgm));
	default:
		return false;
	}
}

size_t
vc_mgm_key_len(uint8_t alg)
{
	switch (alg) {
	case ALG_3DES:
		return 24;
	case ALG_AES128:
		return 16;
	case ALG_AES192:
		return 24;
	case ALG_AES256:
		return 32;
	default:
		return 0;
	}
}

static size_t
mgm_block_len(uint8_t alg)
{
	return alg == ALG_3DES ? 8 : 16;
}

/* A PIN or PUK as the card stores it: 6 to 8 bytes, padded with FF to 8. */
static bool
pin_format_ok(const uint8_t *p)
{
	size_t n = 0;

	while (n < VC_PIN_LEN && p[n] != 0xFF)
		n++;
	if (n < 6)
		return false;
	for (size_t i = n; i < VC_PIN_LEN; i++)
		if (p[i] != 0xFF)
			return false;
	return true;
}

/* One failed try: count down and report what is left (63C0 when this try
 * blocked the reference). */
static uint16_t
wrong_try(tk_vcard_t *c, uint8_t *tries)
{
	if (*tries > 0)
		(*tries)--;
	c->dirty = true;
	return SW_RETRIES(*tries);
}

uint16_t
vc_verify(tk_vcard_t *c, const tk_apdu_t *a, tk_wbuf_t *out)
{
	(void)out;
	if (a->p2 == 0x00)
		return SW_REF_NOT_FOUND; /* no global PIN on this card */
	if (a->p2 != REF_PIN)
		return SW_REF_NOT_FOUND;
	if (a->p1 == 0xFF) {
		if (a->lc != 0)
			return SW_WRONG_DATA;
		c->pin_ok = false;
		c->pin_fresh = false;
		return SW_OK;
	}
	if (a->p1 != 0x00)
		return SW_WRONG_P1P2;
	if (a->lc == 0) {
		if (c->pin_tries == 0)
			return SW_AUTH_BLOCKED;
		return c->pin_ok ? SW_OK : SW_RETRIES(c->pin_tries);
	}
	if (a->lc != VC_PIN_LEN)
		return SW_WRONG_DATA;
	if (c->pin_tries == 0)
		return SW_AUTH_BLOCKED;
	if (!tk_memeq_ct(a->data, c->pin, VC_PIN_LEN)) {
		c->pin_ok = false;
		c->pin_fresh = false;
		return wrong_try(c, &c->pin_tries);
	}
	if (c->pin_tries != c->pin_max) {
		c->pin_tries = c->pin_max;
		c->dirty = true;
	}
	c->pin_ok = true;
	c->pin_fresh = true;
	return SW_OK;
}

uint16_t
vc_change_ref(tk_vcard_t *c, const tk_apdu_t *a, tk_wbuf_t *out)
{
	uint8_t *ref, *tries, max;

	(void)out;
	if (a->p1 != 0x00)
		return SW_WRONG_P1P2;
	if (a->p2 == REF_PIN) {
		ref = c->pin;
		tries = &c->pin_tries;
		max = c->pin_max;
	} else if (a->p2 == REF_PUK) {
		ref = c->puk;
		tries = &c->puk_tries;
		max = c->puk_max;
	} else {
		return SW_REF_NOT_FOUND;
	}
	if (a->lc != 2 * VC_PIN_LEN)
		return SW_WRONG_DATA;
	if (*tries == 0)
		return SW_AUTH_BLOCKED;
	if (!tk_memeq_ct(a->data, ref, VC_PIN_LEN)) {
		if (a->p2 == REF_PIN) {
			c->pin_ok = false;
			c->pin_fresh = false;
		}
		return wrong_try(c, tries);
	}
	if (!pin_format_ok(a->data + VC_PIN_LEN))
		return SW_WRONG_DATA;
	memcpy(ref, a->data + VC_PIN_LEN, VC_PIN_LEN);
	*tries = max;
	c->dirty = true;
	return SW_OK;
}

uint16_t
vc_reset_retry(tk_vcard_t *c, const tk_apdu_t *a, tk_wbuf_t *out)
{
	(void)out;
	if (a->p1 != 0x00)
		return SW_WRONG_P1P2;
	if (a->p2 != REF_PIN)
		return SW_REF_NOT_FOUND;
	if (a->lc != 2 * VC_PIN_LEN)
		return SW_WRONG_DATA;
	if (c->puk_tries == 0)
		return SW_AUTH_BLOCKED;
	if (!tk_memeq_ct(a->data, c->puk, VC_PIN_LEN))
		return wrong_try(c, &c->puk_tries);
	if (!pin_format_ok(a->data + VC_PIN_LEN))
		return SW_WRONG_DATA;
	memcpy(c->pin, a->data + VC_PIN_LEN, VC_PIN_LEN);
	c->pin_tries = c->pin_max;
	c->puk_tries = c->puk_max;
	c->dirty = true;
	return SW_OK;
}

/* Encrypt or decrypt one block with the management key. */
static int
mgm_cipher(const tk_vcard_t *c, bool enc, const uint8_t *in, uint8_t *outb)
{
	const EVP_CIPHER *ciph;
	EVP_CIPHER_CTX *ctx;
	size_t bl = mgm_block_len(c->mgm_alg);
	int n1 = 0, n2 = 0, r = TK_ERR_CRYPTO;

	switch (c->mgm_alg) {
	case ALG_3DES:
		ciph = EVP_des_ede3_ecb();
		break;
	case ALG_AES128:
		ciph = EVP_aes_128_ecb();
		break;
	case ALG_AES192:
		ciph = EVP_aes_192_ecb();
		break;
	case ALG_AES256:
		ciph = EVP_aes_256_ecb();
		break;
	default:
		return TK_ERR_INTERNAL;
	}
	if ((ctx = EVP_CIPHER_CTX_new()) == NULL)
		return TK_ERR_NO_MEMORY;
	if (EVP_CipherInit_ex(ctx, ciph, NULL, c->mgm_key, NULL, enc ? 1 : 0) != 1 ||
	    EVP_CIPHER_CTX_set_padding(ctx, 0) != 1 ||
	    EVP_CipherUpdate(ctx, outb, &n1, in, (int)bl) != 1 ||
	    EVP_CipherFinal_ex(ctx, outb + n1, &n2) != 1 || (size_t)(n1 + n2) != bl)
		goto out;
	r = TK_OK;
out:
	EVP_CIPHER_CTX_free(ctx);
	return r;
}

static void
mgm_reset_step(tk_vcard_t *c)
{
	c->mgm_step = MGM_NONE;
	tk_wipe(c->mgm_nonce, sizeof(c->mgm_nonce));
	c->mgm_nonce_len = 0;
}

/* GENERAL AUTHENTICATE with key reference 9B. The dynamic authentication
 * template 7C holds 80 (witness), 81 (challenge) and 82 (response):
 *   7C{80 00}             → 7C{80 E(K, W)}           card issues a witness
 *   7C{80 W', 81 C}       → 7C{82 E(K, C)}           W' = W: host is authenticated
 *   7C{80 W'}             → 9000                      (witness only)
 *   7C{81 00}             → 7C{81 C}                  card issues a challenge
 *   7C{82 R}              → 9000 when R = E(K, C) */
uint16_t
vc_mgm_auth(tk_vcard_t *c, const tk_apdu_t *a, tk_wbuf_t *out)
{
	tk_buf_t b, tmpl, e80 = {0}, e81 = {0}, e82 = {0}, v;
	bool h80 = false, h81 = false, h82 = false;
	uint8_t blk[16], blk2[16];
	size_t bl;
	uint32_t t;
	uint16_t sw = SW_SECURITY;

	if (a->p1 != c->mgm_alg) {
		mgm_reset_step(c);
		return SW_WRONG_P1P2;
	}
	bl = mgm_block_len(c->mgm_alg);
	tk_buf_init(&b, a->data, a->lc);
	if (vc_tlv_get(&b, &t, &tmpl) != TK_OK || t != 0x7C || tk_buf_left(&b) != 0)
		return SW_WRONG_DATA;
	while (tk_buf_left(&tmpl) > 0) {
		if (vc_tlv_get(&tmpl, &t, &v) != TK_OK)
			return SW_WRONG_DATA;
		if (t == 0x80 && !h80) {
			e80 = v;
			h80 = true;
		} else if (t == 0x81 && !h81) {
			e81 = v;
			h81 = true;
		} else if (t == 0x82 && !h82) {
			e82 = v;
			h82 = true;
		} else {
			return SW_WRONG_DATA;
		}
	}

	if (h80 && e80.len == 0 && !h81 && !h82) {
		/* issue a witness */
		mgm_reset_step(c);
		c->mgm_ok = false;
		if (vc_random(c->mgm_nonce, bl) != TK_OK ||
		    mgm_cipher(c, true, c->mgm_nonce, blk) != TK_OK)
			return SW_NO_PRECISE;
		c->mgm_nonce_len = bl;
		c->mgm_step = MGM_WITNESS;
		vc_tlv_put_hdr(out, 0x7C, 2 + bl);
		vc_tlv_put(out, 0x80, blk, bl);
		sw = SW_OK;
		goto out;
	}
	if (h81 && e81.len == 0 && !h80 && !h82) {
		/* issue a challenge */
		mgm_reset_step(c);
		c->mgm_ok = false;
		if (vc_random(c->mgm_nonce, bl) != TK_OK)
			return SW_NO_PRECISE;
		c->mgm_nonce_len = bl;
		c->mgm_step = MGM_CHALLENGE;
		vc_tlv_put_hdr(out, 0x7C, 2 + bl);
		vc_tlv_put(out, 0x81, c->mgm_nonce, bl);
		sw = SW_OK;
		goto out;
	}
	if (h80 && e80.len > 0) {
		/* witness answered, maybe with a challenge for us */
		if (c->mgm_step != MGM_WITNESS || e80.len != bl ||
		    !tk_memeq_ct(e80.data, c->mgm_nonce, bl)) {
			sw = c->mgm_step != MGM_WITNESS ? SW_CONDITIONS : SW_SECURITY;
			goto fail;
		}
		if (h81 && e81.len != bl) {
			sw = SW_WRONG_DATA;
			goto fail;
		}
		if (h82 && e82.len != 0) {
			sw = SW_WRONG_DATA;
			goto fail;
		}
		mgm_reset_step(c);
		c->mgm_ok = true;
		if (h81) {
			if (mgm_cipher(c, true, e81.data, blk) != TK_OK) {
				c->mgm_ok = false;
				return SW_NO_PRECISE;
			}
			vc_tlv_put_hdr(out, 0x7C, 2 + bl);
			vc_tlv_put(out, 0x82, blk, bl);
		}
		sw = SW_OK;
		goto out;
	}
	if (h82 && e82.len > 0 && !h80 && !h81) {
		if (c->mgm_step != MGM_CHALLENGE) {
			sw = SW_CONDITIONS;
			goto fail;
		}
		if (e82.len != bl || mgm_cipher(c, true, c->mgm_nonce, blk2) != TK_OK ||
		    !tk_memeq_ct(e82.data, blk2, bl)) {
			sw = SW_SECURITY;
			goto fail;
		}
		mgm_reset_step(c);
		c->mgm_ok = true;
		sw = SW_OK;
		goto out;
	}
	sw = SW_WRONG_DATA;
fail:
	mgm_reset_step(c);
	c->mgm_ok = false;
out:
	tk_wipe(blk, sizeof(blk));
	tk_wipe(blk2, sizeof(blk2));
	return sw;
}

/* SET MANAGEMENT KEY (Yubico): 00 FF FF FF (FF FE: touch required) with
 * data <algorithm> 9B <length> <key>. */
uint16_t
vc_set_mgm_key(tk_vcard_t *c, const tk_apdu_t *a, tk_wbuf_t *out)
{
	tk_buf_t b;
	uint8_t alg, ref, len;
	const uint8_t *key;

	(void)out;
	if (a->p1 != 0xFF || (a->p2 != 0xFF && a->p2 != 0xFE))
		return SW_WRONG_P1P2;
	if (!c->mgm_ok)
		return SW_SECURITY;
	tk_buf_init(&b, a->data, a->lc);
	if (tk_buf_get_u8(&b, &alg) != TK_OK || tk_buf_get_u8(&b, &ref) != TK_OK ||
	    tk_buf_get_u8(&b, &len) != TK_OK || tk_buf_get_ptr(&b, &key, len) != TK_OK ||
	    tk_buf_left(&b) != 0)
		return SW_WRONG_DATA;
	if (ref != REF_MGMT || vc_mgm_key_len(alg) == 0 || vc_mgm_key_len(alg) != len)
		return SW_WRONG_DATA;
	tk_wipe(c->mgm_key, sizeof(c->mgm_key));
	memcpy(c->mgm_key, key, len);
	c->mgm_len = len;
	c->mgm_alg = alg;
	c->mgm_touch = a->p2 == 0xFE ? 2 : TOUCH_POLICY_NEVER;
	mgm_reset_step(c);
	c->dirty = true;
	return SW_OK;
}

/* SET PIN RETRIES (Yubico): 00 FA <pin tries> <puk tries>. Needs the
 * management key and the PIN; PIN and PUK go back to their defaults. */
uint16_t
vc_set_pin_retries(tk_vcard_t *c, const tk_apdu_t *a, tk_wbuf_t *out)
{
	(void)out;
	if (!c->mgm_ok || !c->pin_ok)
		return SW_SECURITY;
	if (a->p1 == 0 || a->p2 == 0 || a->p1 > VC_MAX_TRIES || a->p2 > VC_MAX_TRIES)
		return SW_WRONG_P1P2;
	memcpy(c->pin, default_pin, VC_PIN_LEN);
	memcpy(c->puk, default_puk, VC_PIN_LEN);
	c->pin_tries = c->pin_max = a->p1;
	c->puk_tries = c->puk_max = a->p2;
	c->dirty = true;
	return SW_OK;
}
