/* tokenkit virtual card: asymmetric key slots.
 *
 * GENERATE ASYMMETRIC KEY PAIR and GENERAL AUTHENTICATE with a slot key
 * (SP 800-73-4 part 2, 3.2.4 and 3.3.2), Yubico's IMPORT ASYMMETRIC KEY and
 * GET METADATA. All cryptography is OpenSSL 3 EVP. */
#include <string.h>

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/obj_mac.h>
#include <openssl/params.h>
#include <openssl/param_build.h>
#include <openssl/rsa.h>

#include <tokenkit/err.h>
#include <tokenkit/mem.h>

#include "vcard_int.h"

bool
vc_alg_is_rsa(uint8_t alg)
{
	return alg == ALG_RSA1024 || alg == ALG_RSA2048 || alg == ALG_RSA3072 || alg == ALG_RSA4096;
}

bool
vc_alg_is_ec(uint8_t alg)
{
	return alg == ALG_ECCP256 || alg == ALG_ECCP384;
}

unsigned
vc_alg_bits(uint8_t alg)
{
	switch (alg) {
	case ALG_RSA1024:
		return 1024;
	case ALG_RSA2048:
		return 2048;
	case ALG_RSA3072:
		return 3072;
	case ALG_RSA4096:
		return 4096;
	case ALG_ECCP256:
		return 256;
	case ALG_ECCP384:
		return 384;
	default:
		return 0;
	}
}

static const char *
ec_group(uint8_t alg)
{
	return alg == ALG_ECCP256 ? "P-256" : "P-384";
}

void
vc_key_clear(struct vc_key *k)
{
	EVP_PKEY_free(k->pkey);
	memset(k, 0, sizeof(*k));
}

uint8_t
vc_pkey_alg(EVP_PKEY *pkey)
{
	char name[32];
	size_t len = 0;
	int bits = EVP_PKEY_get_bits(pkey);

	switch (EVP_PKEY_get_base_id(pkey)) {
	case EVP_PKEY_RSA:
		for (uint8_t a = 0; a < 0x20; a++)
			if (vc_alg_is_rsa(a) && (int)vc_alg_bits(a) == bits)
				return a;
		return 0;
	case EVP_PKEY_EC:
		if (EVP_PKEY_get_utf8_string_param(pkey, OSSL_PKEY_PARAM_GROUP_NAME, name,
		                                   sizeof(name), &len) != 1)
			return 0;
		if (strcmp(name, "prime256v1") == 0 || strcmp(name, "P-256") == 0)
			return ALG_ECCP256;
		if (strcmp(name, "secp384r1") == 0 || strcmp(name, "P-384") == 0)
			return ALG_ECCP384;
		return 0;
	default:
		return 0;
	}
}

int
vc_keygen(uint8_t alg, EVP_PKEY **out)
{
	*out = NULL;
	if (vc_alg_is_rsa(alg))
		*out = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)vc_alg_bits(alg));
	else if (vc_alg_is_ec(alg))
		*out = EVP_PKEY_Q_keygen(NULL, NULL, "EC", ec_group(alg));
	else
		return TK_ERR_INVALID_ARG;
	return *out != NULL ? TK_OK : TK_ERR_CRYPTO;
}

static int
put_bn(tk_wbuf_t *w, uint32_t tag, const BIGNUM *bn)
{
	int n = BN_num_bytes(bn);
	uint8_t *p;

	vc_tlv_put_hdr(w, tag, (size_t)n);
	if ((p = tk_wbuf_reserve(w, (size_t)n)) == NULL)
		return TK_ERR_BUFFER_TOO_SMALL;
	return BN_bn2bin(bn, p) == n ? TK_OK : TK_ERR_CRYPTO;
}

/* The inner elements of the public key template: 81 n, 82 e / 86 point. */
static int
pubkey_inner(tk_wbuf_t *w, EVP_PKEY *pkey, uint8_t alg)
{
	BIGNUM *n = NULL, *e = NULL;
	uint8_t pt[133];
	size_t len = 0;
	int r = TK_ERR_CRYPTO;

	if (vc_alg_is_ec(alg)) {
		if (EVP_PKEY_get_octet_string_param(pkey, OSSL_PKEY_PARAM_ENCODED_PUBLIC_KEY, pt,
		                                    sizeof(pt), &len) != 1)
			return TK_ERR_CRYPTO;
		vc_tlv_put(w, 0x86, pt, len);
		return tk_wbuf_error(w);
	}
	if (EVP_PKEY_get_bn_param(pkey, OSSL_PKEY_PARAM_RSA_N, &n) != 1 ||
	    EVP_PKEY_get_bn_param(pkey, OSSL_PKEY_PARAM_RSA_E, &e) != 1)
		goto out;
	if ((r = put_bn(w, 0x81, n)) != TK_OK || (r = put_bn(w, 0x82, e)) != TK_OK)
		goto out;
	r = tk_wbuf_error(w);
out:
	BN_free(n);
	BN_free(e);
	return r;
}

int
vc_pubkey_put(tk_wbuf_t *w, EVP_PKEY *pkey, uint8_t alg)
{
	uint8_t tmp[1100];
	tk_wbuf_t t;
	int r;

	tk_wbuf_init(&t, tmp, sizeof(tmp));
	if ((r = pubkey_inner(&t, pkey, alg)) != TK_OK)
		return r;
	vc_tlv_put(w, 0x7F49, tmp, t.len);
	return tk_wbuf_error(w);
}

/* Slot defaults when the key was created with policy "default" (00). */
static uint8_t
slot_pin_policy(uint8_t ref, const struct vc_key *k)
{
	if (k->pin_policy != PIN_POLICY_DEFAULT)
		return k->pin_policy;
	switch (ref) {
	case 0x9C:
		return PIN_POLICY_ALWAYS;
	case 0x9E:
		return PIN_POLICY_NEVER;
	case REF_ATTEST:
		return PIN_POLICY_NEVER;
	default:
		return PIN_POLICY_ONCE;
	}
}

static uint8_t
slot_touch_policy(const struct vc_key *k)
{
	return k->touch_policy != TOUCH_POLICY_DEFAULT ? k->touch_policy : TOUCH_POLICY_NEVER;
}

/* Parse the optional AA (PIN policy) and AB (touch policy) elements. */
static bool
policy_ok(const tk_buf_t *v, uint8_t *out)
{
	if (v->len != 1 || v->data[0] > 3)
		return false;
	*out = v->data[0];
	return true;
}

/* RSA-3072 and 4096 came with YubiKey firmware 5.7; older keys refuse them. */
static bool
alg_on_firmware(const tk_vcard_t *c, uint8_t alg)
{
	return (alg != ALG_RSA3072 && alg != ALG_RSA4096) || c->fw[0] * 100 + c->fw[1] >= 507;
}

/* Put a new key (generated or imported) into slot idx, replacing the old one. */
static void
install_key(tk_vcard_t *c, int idx, struct vc_key *nk, uint8_t alg, uint8_t pinp, uint8_t touchp,
            uint8_t origin)
{
	nk->alg = alg;
	nk->pin_policy = pinp;
	nk->touch_policy = touchp;
	nk->origin = origin;
	vc_key_clear(&c->keys[idx]);
	c->keys[idx] = *nk;
	c->dirty = true;
}

uint16_t
vc_generate(tk_vcard_t *c, const tk_apdu_t *a, tk_wbuf_t *out)
{
	tk_buf_t b, tmpl, v;
	uint32_t t;
	uint8_t alg = 0, pinp = 0, touchp = 0;
	bool have_alg = false;
	int idx;
	struct vc_key nk = {0};

	if (a->p1 != 0x00)
		return SW_WRONG_P1P2;
	if ((idx = vc_slot_index(a->p2)) == VC_SLOT_NONE || a->p2 == REF_ATTEST)
		return SW_WRONG_P1P2;
	if (!c->mgm_ok)
		return SW_SECURITY;
	tk_buf_init(&b, a->data, a->lc);
	if (vc_tlv_get(&b, &t, &tmpl) != TK_OK || t != 0xAC || tk_buf_left(&b) != 0)
		return SW_WRONG_DATA;
	while (tk_buf_left(&tmpl) > 0) {
		if (vc_tlv_get(&tmpl, &t, &v) != TK_OK)
			return SW_WRONG_DATA;
		if (t == 0x80 && v.len == 1) {
			alg = v.data[0];
			have_alg = true;
		} else if (t == 0xAA) {
			if (!policy_ok(&v, &pinp))
				return SW_WRONG_DATA;
		} else if (t == 0xAB) {
			if (!policy_ok(&v, &touchp))
				return SW_WRONG_DATA;
		} else {
			return SW_WRONG_DATA;
		}
	}
	if (!have_alg || (!vc_alg_is_rsa(alg) && !vc_alg_is_ec(alg)) || !alg_on_firmware(c, alg))
		return SW_WRONG_DATA;
	if (c->fuzz_fast && vc_alg_is_rsa(alg))
		return SW_FUNC_NOT_SUPPORTED;
	if (vc_keygen(alg, &nk.pkey) != TK_OK)
		return SW_NO_PRECISE;
	if (vc_pubkey_put(out, nk.pkey, alg) != TK_OK) {
		vc_key_clear(&nk);
		return SW_NO_PRECISE;
	}
	install_key(c, idx, &nk, alg, pinp, touchp, ORIGIN_GENERATED);
	return SW_OK;
}

/* ---- IMPORT ------------------------------------------------------------- */

/* IMPORT ASYMMETRIC KEY (Yubico): 00 FE <alg> <slot>, data 01 p, 02 q,
 * 03 dP, 04 dQ, 05 qInv (RSA) or 06 private scalar (EC), then AA / AB. */
uint16_t
vc_import(tk_vcard_t *c, const tk_apdu_t *a, tk_wbuf_t *out)
{
	tk_buf_t b, v, el[6] = {{0}};
	bool have[6] = {false};
	uint32_t t;
	uint8_t alg = a->p1, pinp = 0, touchp = 0;
	struct vc_key nk = {0};
	int idx;

	(void)out;
	if ((idx = vc_slot_index(a->p2)) == VC_SLOT_NONE)
		return SW_WRONG_P1P2;
	if ((!vc_alg_is_rsa(alg) && !vc_alg_is_ec(alg)) || !alg_on_firmware(c, alg))
		return SW_WRONG_P1P2;
	if (!c->mgm_ok)
		return SW_SECURITY;
	tk_buf_init(&b, a->data, a->lc);
	while (tk_buf_left(&b) > 0) {
		if (vc_tlv_get(&b, &t, &v) != TK_OK)
			return SW_WRONG_DATA;
		if (t >= 0x01 && t <= 0x06 && !have[t - 1]) {
			el[t - 1] = v;
			have[t - 1] = true;
		} else if (t == 0xAA) {
			if (!policy_ok(&v, &pinp))
				return SW_WRONG_DATA;
		} else if (t == 0xAB) {
			if (!policy_ok(&v, &touchp))
				return SW_WRONG_DATA;
		} else {
			return SW_WRONG_DATA;
		}
	}
	if (vc_alg_is_rsa(alg)) {
		for (int i = 0; i < 5; i++)
			if (!have[i])
				return SW_WRONG_DATA;
		if (have[5])
			return SW_WRONG_DATA;
		nk.pkey = vc_rsa_import(vc_alg_bits(alg), NULL, &el[0], &el[1], &el[2]);
	} else {
		for (int i = 0; i < 5; i++)
			if (have[i])
				return SW_WRONG_DATA;
		if (!have[5])
			return SW_WRONG_DATA;
		nk.pkey = vc_ec_import(ec_group(alg), &el[5]);
	}
	if (nk.pkey == NULL)
		return SW_WRONG_DATA;
	install_key(c, idx, &nk, alg, pinp, touchp, ORIGIN_IMPORTED);
	return SW_OK;
}

/* ---- key operations ----------------------------------------------------- */

static int
op_rsa_raw(EVP_PKEY *pkey, uint8_t alg, const tk_buf_t *in, uint8_t *res, size_t *res_len)
{
	size_t k = vc_alg_bits(alg) / 8, outl = *res_len;
	int r;

	if (in->len != k)
		return TK_ERR_INVALID_ARG;
	if ((r = vc_rsa_decrypt(pkey, RSA_NO_PADDING, in->data, in->len, res, &outl)) != TK_OK)
		return r;
	if (outl > k)
		return TK_ERR_CRYPTO;
	if (outl < k) { /* keep the modulus length */
		memmove(res + (k - outl), res, outl);
		memset(res, 0, k - outl);
	}
	*res_len = k;
	return TK_OK;
}

/* GENERAL AUTHENTICATE: 9B goes to the management key; a key slot signs
 * (7C{82 00, 81 input}) or agrees a key (7C{82 00, 85 point}). */
uint16_t
vc_key_auth(tk_vcard_t *c, const tk_apdu_t *a, tk_wbuf_t *out)
{
	tk_buf_t b, tmpl, v, e81 = {0}, e85 = {0};
	bool h81 = false, h82 = false, h85 = false;
	uint8_t res[600];
	size_t res_len = sizeof(res);
	struct vc_key *k;
	uint32_t t;
	int idx, r;

	if (a->p2 == REF_MGMT)
		return vc_mgm_auth(c, a, out);
	if ((idx = vc_slot_index(a->p2)) == VC_SLOT_NONE || a->p2 == REF_ATTEST)
		return SW_WRONG_P1P2;
	k = &c->keys[idx];
	if (k->alg == 0)
		return SW_REF_NOT_FOUND;
	if (k->alg != a->p1)
		return SW_WRONG_P1P2;
	tk_buf_init(&b, a->data, a->lc);
	if (vc_tlv_get(&b, &t, &tmpl) != TK_OK || t != 0x7C || tk_buf_left(&b) != 0)
		return SW_WRONG_DATA;
	while (tk_buf_left(&tmpl) > 0) {
		if (vc_tlv_get(&tmpl, &t, &v) != TK_OK)
			return SW_WRONG_DATA;
		if (t == 0x81 && !h81) {
			e81 = v;
			h81 = true;
		} else if (t == 0x82 && !h82 && v.len == 0) {
			h82 = true;
		} else if (t == 0x85 && !h85) {
			e85 = v;
			h85 = true;
		} else {
			return SW_WRONG_DATA;
		}
	}
	if (!h82 || h81 == h85 || (h85 && !vc_alg_is_ec(k->alg)) || (h81 && e81.len == 0))
		return SW_WRONG_DATA;

	switch (slot_pin_policy(a->p2, k)) {
	case PIN_POLICY_NEVER:
		break;
	case PIN_POLICY_ALWAYS:
		if (!c->pin_ok || !c->pin_fresh)
			return SW_SECURITY;
		c->pin_fresh = false; /* one use per VERIFY */
		break;
	default:
		if (!c->pin_ok)
			return SW_SECURITY;
		break;
	}

	if (h85)
		r = e85.len == 1 + 2 * (vc_alg_bits(k->alg) / 8)
		            ? vc_ecdh(k->pkey, e85.data, e85.len, res, &res_len)
		            : TK_ERR_INVALID_ARG;
	else if (vc_alg_is_ec(k->alg))
		r = vc_ecdsa_sign(k->pkey, vc_alg_bits(k->alg) / 8, e81.data, e81.len, res,
		                  &res_len);
	else
		r = op_rsa_raw(k->pkey, k->alg, &e81, res, &res_len);
	if (r != TK_OK) {
		tk_wipe(res, sizeof(res));
		return r == TK_ERR_INVALID_ARG || vc_alg_is_rsa(k->alg) ? SW_WRONG_DATA
		                                                        : SW_NO_PRECISE;
	}
	vc_tlv_put_hdr(out, 0x7C, vc_tlv_hdr_len(0x82, res_len) + res_len);
	vc_tlv_put(out, 0x82, res, res_len);
	tk_wipe(res, sizeof(res));
	return SW_OK;
}

/* GET METADATA (Yubico): 01 algorithm, 02 policy, 03 origin, 04 public
 * key, 05 default value, 06 retries. */
uint16_t
vc_metadata(tk_vcard_t *c, const tk_apdu_t *a, tk_wbuf_t *out)
{
	uint8_t tmp[1100], pol[2];
	tk_wbuf_t t;
	struct vc_key *k;
	int idx;

	if (a->p1 != 0x00)
		return SW_WRONG_P1P2;
	if (a->p2 == REF_PIN || a->p2 == REF_PUK) {
		uint8_t tries[2] = {a->p2 == REF_PIN ? c->pin_max : c->puk_max,
		                    a->p2 == REF_PIN ? c->pin_tries : c->puk_tries};

		vc_tlv_put(out, 0x01, "\xFF", 1);
		vc_tlv_put(out, 0x05, vc_auth_is_default(c, a->p2) ? "\x01" : "\x00", 1);
		vc_tlv_put(out, 0x06, tries, 2);
		return SW_OK;
	}
	if (a->p2 == REF_MGMT) {
		pol[0] = 0;
		pol[1] = c->mgm_touch;
		vc_tlv_put(out, 0x01, &c->mgm_alg, 1);
		vc_tlv_put(out, 0x02, pol, 2);
		vc_tlv_put(out, 0x05, vc_auth_is_default(c, REF_MGMT) ? "\x01" : "\x00", 1);
		return SW_OK;
	}
	if ((idx = vc_slot_index(a->p2)) == VC_SLOT_NONE)
		return SW_WRONG_P1P2;
	k = &c->keys[idx];
	if (k->alg == 0) /* an empty slot reads like a missing object */
		return SW_NOT_FOUND;
	pol[0] = slot_pin_policy(a->p2, k);
	pol[1] = slot_touch_policy(k);
	tk_wbuf_init(&t, tmp, sizeof(tmp));
	if (pubkey_inner(&t, k->pkey, k->alg) != TK_OK)
		return SW_NO_PRECISE;
	vc_tlv_put(out, 0x01, &k->alg, 1);
	vc_tlv_put(out, 0x02, pol, 2);
	vc_tlv_put(out, 0x03, &k->origin, 1);
	vc_tlv_put(out, 0x04, tmp, t.len);
	return SW_OK;
}
