/* tokenkit-pkcs11: operation set-up shared by sign/verify/decrypt, and
 * C_Sign*.
 *
 * Hashing, DigestInfo, PKCS#1 v1.5 and EMSA-PSS encoding happen here on the
 * host; the card performs the raw RSA private operation (TK_OP_RSA_RAW),
 * or, on cards without it, PKCS#1 v1.5 itself over the DigestInfo
 * (TK_OP_RSA_PKCS1_SIGN), ECDSA over a hash (TK_OP_ECDSA, r||s) or EdDSA
 * over the message (TK_OP_EDDSA). Raw mechanisms accumulate multi-part
 * input up to P11_MAX_RAW_INPUT bytes. */
#include <stdlib.h>
#include <string.h>

#include <tokenkit/mem.h>

#include "p11.h"

/* DigestInfo prefixes (RFC 8017, 9.2 note 1). */
static const uint8_t di_sha1[] = {0x30, 0x21, 0x30, 0x09, 0x06, 0x05, 0x2b, 0x0e,
                                  0x03, 0x02, 0x1a, 0x05, 0x00, 0x04, 0x14};
static const uint8_t di_sha224[] = {0x30, 0x2d, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01,
                                    0x65, 0x03, 0x04, 0x02, 0x04, 0x05, 0x00, 0x04, 0x1c};
static const uint8_t di_sha256[] = {0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01,
                                    0x65, 0x03, 0x04, 0x02, 0x01, 0x05, 0x00, 0x04, 0x20};
static const uint8_t di_sha384[] = {0x30, 0x41, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01,
                                    0x65, 0x03, 0x04, 0x02, 0x02, 0x05, 0x00, 0x04, 0x30};
static const uint8_t di_sha512[] = {0x30, 0x51, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01,
                                    0x65, 0x03, 0x04, 0x02, 0x03, 0x05, 0x00, 0x04, 0x40};

static const uint8_t *
digest_info_prefix(CK_MECHANISM_TYPE hash, size_t *len)
{
	switch (hash) {
	case CKM_SHA_1:
		*len = sizeof(di_sha1);
		return di_sha1;
	case CKM_SHA224:
		*len = sizeof(di_sha224);
		return di_sha224;
	case CKM_SHA256:
		*len = sizeof(di_sha256);
		return di_sha256;
	case CKM_SHA384:
		*len = sizeof(di_sha384);
		return di_sha384;
	case CKM_SHA512:
		*len = sizeof(di_sha512);
		return di_sha512;
	default:
		*len = 0;
		return NULL;
	}
}

static CK_RV
params_none(const CK_MECHANISM *m)
{
	return m->ulParameterLen == 0 ? CKR_OK : CKR_MECHANISM_PARAM_INVALID;
}

static CK_RV
params_pss(struct p11_op *op, const struct p11_mech *mech, const CK_MECHANISM *m,
           const struct p11_object *key)
{
	const CK_RSA_PKCS_PSS_PARAMS *p = m->pParameter;
	size_t hlen, elen;

	if (p == NULL || m->ulParameterLen != sizeof(*p))
		return CKR_MECHANISM_PARAM_INVALID;
	op->pss_md = tk_p11_md_from_mech(p->hashAlg);
	op->mgf_md = tk_p11_md_from_mgf(p->mgf);
	if (op->pss_md == NULL || op->mgf_md == NULL)
		return CKR_MECHANISM_PARAM_INVALID;
	if (mech->hash != 0 && p->hashAlg != mech->hash)
		return CKR_MECHANISM_PARAM_INVALID;
	hlen = (size_t)EVP_MD_get_size(op->pss_md);
	elen = (key->key_bits - 1 + 7) / 8;
	if (key->key_bits < 2 || p->sLen > elen || elen < hlen + p->sLen + 2)
		return CKR_MECHANISM_PARAM_INVALID;
	op->salt_len = p->sLen;
	return CKR_OK;
}

static CK_RV
params_oaep(struct p11_op *op, const CK_MECHANISM *m)
{
	const CK_RSA_PKCS_OAEP_PARAMS *p = m->pParameter;

	if (p == NULL || m->ulParameterLen != sizeof(*p))
		return CKR_MECHANISM_PARAM_INVALID;
	op->pss_md = tk_p11_md_from_mech(p->hashAlg);
	op->mgf_md = tk_p11_md_from_mgf(p->mgf);
	if (op->pss_md == NULL || op->mgf_md == NULL)
		return CKR_MECHANISM_PARAM_INVALID;
	if (p->source != 0 && p->source != CKZ_DATA_SPECIFIED)
		return CKR_MECHANISM_PARAM_INVALID;
	if (p->pSourceData == NULL && p->ulSourceDataLen > 0)
		return CKR_MECHANISM_PARAM_INVALID;
	if (p->ulSourceDataLen > 0) {
		op->label = malloc(p->ulSourceDataLen);
		if (op->label == NULL)
			return CKR_HOST_MEMORY;
		memcpy(op->label, p->pSourceData, p->ulSourceDataLen);
		op->label_len = p->ulSourceDataLen;
	}
	return CKR_OK;
}

/* Set up a sign, verify or decrypt operation. On error the operation stays
 * inactive. */
CK_RV
tk_p11_op_init(struct p11_session *s, struct p11_op *op, int kind, CK_MECHANISM_PTR m,
               CK_OBJECT_HANDLE hkey)
{
	const struct p11_mech *mech;
	struct p11_object *key;
	CK_FLAGS need = kind == P11_OP_SIGN      ? CKF_SIGN
	                : kind == P11_OP_VERIFY  ? CKF_VERIFY
	                : kind == P11_OP_ENCRYPT ? CKF_ENCRYPT
	                                         : CKF_DECRYPT;
	unsigned usage = kind == P11_OP_DECRYPT ? TK_USAGE_DECRYPT : TK_USAGE_SIGN;
	bool hidden_private = false;
	CK_RV rv;

	if (op->kind != P11_OP_NONE)
		return CKR_OPERATION_ACTIVE;
	if (m == NULL)
		return CKR_ARGUMENTS_BAD;
	mech = tk_p11_mech_lookup(m->mechanism);
	if (mech == NULL || !(mech->flags & need))
		return CKR_MECHANISM_INVALID;
	pthread_mutex_lock(&g_p11.lock);
	key = tk_p11_object_find_locked(s->tok, hkey);
	if (key != NULL && !tk_p11_object_visible(s->tok, key, s->h)) {
		/* a private key of the token, hidden only until the user logs in
		 * (again, after a card reset or the card's return): say so, so that
		 * the application logs in instead of giving up on the handle */
		hidden_private = (key->tko != NULL || key->soft) && key->cls == CKO_PRIVATE_KEY;
		key = NULL;
	}
	pthread_mutex_unlock(&g_p11.lock);
	if (hidden_private)
		return CKR_USER_NOT_LOGGED_IN;
	if (key == NULL || key->cls == CKO_CERTIFICATE)
		return CKR_KEY_HANDLE_INVALID;
	if (key->tko == NULL && !key->soft && key->list == NULL)
		return CKR_KEY_TYPE_INCONSISTENT; /* a derived session (secret) key */
	if (key->key_type <= TK_KEY_NONE || !(mech->key_types & KT(key->key_type)))
		return CKR_KEY_TYPE_INCONSISTENT;
	if (kind == P11_OP_ENCRYPT &&
	    (key->cls != CKO_PUBLIC_KEY || !(key->usage & TK_USAGE_DECRYPT)))
		return CKR_KEY_FUNCTION_NOT_PERMITTED; /* a public key with CKA_ENCRYPT */
	if (kind == P11_OP_VERIFY || kind == P11_OP_ENCRYPT) {
		if (tk_p11_object_pub(key) == NULL)
			return CKR_KEY_FUNCTION_NOT_PERMITTED;
	} else if (key->cls != CKO_PRIVATE_KEY || !(key->usage & usage)) {
		return CKR_KEY_FUNCTION_NOT_PERMITTED;
	} else if (!(key->ops & tk_p11_mech_ops(mech, need))) {
		/* the card cannot do this one with the key (OpenPGP: no raw RSA,
		 * so no PSS, OAEP or X.509); not in CKA_ALLOWED_MECHANISMS */
		return CKR_MECHANISM_INVALID;
	}
	if (mech->type == CKM_RSA_PKCS_OAEP)
		rv = params_oaep(op, m);
	else if (mech->pss)
		rv = params_pss(op, mech, m, key);
	else
		rv = params_none(m);
	if (rv != CKR_OK)
		goto fail;
	if (mech->hash != 0) {
		op->md = tk_p11_md_from_mech(mech->hash);
		op->mdctx = EVP_MD_CTX_new();
		if (op->mdctx == NULL) {
			rv = CKR_HOST_MEMORY;
			goto fail;
		}
		if (EVP_DigestInit_ex(op->mdctx, op->md, NULL) != 1) {
			rv = CKR_FUNCTION_FAILED;
			goto fail;
		}
	}
	op->mech = mech->type;
	op->key = hkey;
	op->obj = key;
	op->kind = kind;
	return CKR_OK;
fail:
	tk_p11_op_reset(op);
	return rv;
}

/* Feed a multi-part operation: hash, or accumulate (bounded). */
CK_RV
tk_p11_op_update(struct p11_op *op, const uint8_t *part, size_t len)
{
	op->multi = true;
	if (op->mdctx != NULL)
		return EVP_DigestUpdate(op->mdctx, part, len) == 1 ? CKR_OK : CKR_FUNCTION_FAILED;
	if (len > P11_MAX_RAW_INPUT - op->buf_len)
		return CKR_DATA_LEN_RANGE;
	if (op->buf == NULL) {
		op->buf = malloc(P11_MAX_RAW_INPUT);
		if (op->buf == NULL)
			return CKR_HOST_MEMORY;
		op->buf_cap = P11_MAX_RAW_INPUT;
	}
	if (len > 0)
		memcpy(op->buf + op->buf_len, part, len);
	op->buf_len += len;
	return CKR_OK;
}

/* The input of the signature primitive: the digest for hashing mechanisms
 * (single-part: of data; multi-part: of what was fed), else the raw data. */
CK_RV
tk_p11_op_input(struct p11_op *op, const uint8_t *data, size_t len, bool single, uint8_t *hash,
                const uint8_t **in, size_t *in_len)
{
	unsigned int hl = 0;

	if (op->mdctx != NULL) {
		if (single && EVP_DigestUpdate(op->mdctx, data, len) != 1)
			return CKR_FUNCTION_FAILED;
		if (EVP_DigestFinal_ex(op->mdctx, hash, &hl) != 1)
			return CKR_FUNCTION_FAILED;
		*in = hash;
		*in_len = hl;
		return CKR_OK;
	}
	if (single) {
		*in = data;
		*in_len = len;
	} else {
		*in = op->buf;
		*in_len = op->buf_len;
	}
	return CKR_OK;
}

static size_t
signature_len(const struct p11_object *key)
{
	size_t fb = (key->key_bits + 7) / 8;

	if (key->key_type == TK_KEY_ED25519)
		return 64;
	return key->key_type == TK_KEY_EC ? 2 * fb : fb;
}

/* PKCS#1 v1.5 by the card (no raw RSA there): it gets T, the DigestInfo
 * (or, for CKM_RSA_PKCS, the caller's data) and pads it itself. */
static CK_RV
sign_pkcs1_card(struct p11_session *s, struct p11_op *op, const uint8_t *in, size_t in_len,
                uint8_t *out, size_t *out_len)
{
	const struct p11_object *key = op->obj;
	const struct p11_mech *mech = tk_p11_mech_lookup(op->mech);
	size_t k = (key->key_bits + 7) / 8, plen = 0, got = 0;
	const uint8_t *prefix = digest_info_prefix(mech->hash, &plen);
	uint8_t t[19 + 64];
	CK_RV rv;

	if (plen + in_len + 11 > k || plen + in_len > sizeof(t))
		return CKR_DATA_LEN_RANGE;
	if (plen > 0)
		memcpy(t, prefix, plen);
	memcpy(t + plen, in, in_len);
	rv = tk_p11_key_op(s, op, key, TK_OP_RSA_PKCS1_SIGN, t, plen + in_len, out, k, &got);
	tk_wipe(t, sizeof(t));
	if (rv != CKR_OK)
		return rv;
	if (got != k)
		return CKR_DEVICE_ERROR;
	*out_len = k;
	return CKR_OK;
}

static CK_RV
sign_core(struct p11_session *s, struct p11_op *op, const uint8_t *in, size_t in_len, uint8_t *out,
          size_t *out_len)
{
	const struct p11_object *key = op->obj;
	size_t k = (key->key_bits + 7) / 8, got = 0;
	const struct p11_mech *mech = tk_p11_mech_lookup(op->mech);
	uint8_t *em = NULL;
	int r;
	CK_RV rv;

	if (key->key_type == TK_KEY_EC) {
		if (in_len == 0 || in_len > P11_ECDSA_MAX_INPUT)
			return CKR_DATA_LEN_RANGE;
		rv = tk_p11_key_op(s, op, key, TK_OP_ECDSA, in, in_len, out, 2 * k, &got);
		if (rv != CKR_OK)
			return rv;
		if (got != 2 * k)
			return CKR_DEVICE_ERROR;
		*out_len = got;
		return CKR_OK;
	}
	if (key->key_type == TK_KEY_ED25519) {
		if (in_len > P11_EDDSA_MAX_INPUT)
			return CKR_DATA_LEN_RANGE;
		rv = tk_p11_key_op(s, op, key, TK_OP_EDDSA, in, in_len, out, 64, &got);
		if (rv != CKR_OK)
			return rv;
		if (got != 64)
			return CKR_DEVICE_ERROR;
		*out_len = got;
		return CKR_OK;
	}
	if (k < 64)
		return CKR_KEY_SIZE_RANGE;
	if (!mech->pss && op->mech != CKM_RSA_X_509 && !(key->ops & TK_OP_BIT(TK_OP_RSA_RAW)))
		return sign_pkcs1_card(s, op, in, in_len, out, out_len);
	em = malloc(k);
	if (em == NULL)
		return CKR_HOST_MEMORY;
	if (mech->pss) {
		size_t hlen = (size_t)EVP_MD_get_size(op->pss_md);

		if (in_len != hlen) {
			rv = CKR_DATA_LEN_RANGE;
			goto out;
		}
		r = tk_p11_pss_encode(op->pss_md, op->mgf_md, in, hlen, op->salt_len, key->key_bits,
		                      em, k);
		if (r != TK_OK) {
			rv = CKR_FUNCTION_FAILED;
			goto out;
		}
	} else if (op->mech == CKM_RSA_X_509) {
		if (in_len > k) {
			rv = CKR_DATA_LEN_RANGE;
			goto out;
		}
		memset(em, 0, k - in_len);
		memcpy(em + k - in_len, in, in_len);
	} else {
		size_t plen = 0;
		const uint8_t *prefix = digest_info_prefix(mech->hash, &plen);
		size_t tlen = plen + in_len;

		if (tlen + 11 > k) {
			rv = CKR_DATA_LEN_RANGE;
			goto out;
		}
		em[0] = 0x00;
		em[1] = 0x01;
		memset(em + 2, 0xFF, k - tlen - 3);
		em[k - tlen - 1] = 0x00;
		if (plen > 0)
			memcpy(em + k - tlen, prefix, plen);
		memcpy(em + k - in_len, in, in_len);
	}
	rv = tk_p11_key_op(s, op, key, TK_OP_RSA_RAW, em, k, out, k, &got);
	if (rv != CKR_OK)
		goto out;
	if (got > k || got == 0) {
		rv = CKR_DEVICE_ERROR;
		goto out;
	}
	if (got < k) {
		memmove(out + (k - got), out, got);
		memset(out, 0, k - got);
	}
	*out_len = k;
	rv = CKR_OK;
out:
	tk_freezero(em, k);
	return rv;
}

/* Length query and buffer rules shared by C_Sign and C_SignFinal. Returns
 * true when the caller must go on and sign. */
static bool
sign_length_rules(struct p11_op *op, CK_BYTE_PTR sig, CK_ULONG_PTR sig_len, CK_RV *rv)
{
	size_t need = signature_len(op->obj);

	if (sig_len == NULL) {
		*rv = CKR_ARGUMENTS_BAD;
		tk_p11_op_reset(op);
		return false;
	}
	if (sig == NULL) {
		*sig_len = need;
		*rv = CKR_OK;
		return false;
	}
	if (*sig_len < need) {
		*sig_len = need;
		*rv = CKR_BUFFER_TOO_SMALL;
		return false;
	}
	return true;
}

CK_RV
tk_p11_C_SignInit(CK_SESSION_HANDLE hSession, CK_MECHANISM_PTR pMechanism, CK_OBJECT_HANDLE hKey)
{
	struct p11_session *s;
	CK_RV rv = tk_p11_session_get(hSession, &s);

	if (rv != CKR_OK)
		return rv;
	rv = tk_p11_op_init(s, &s->sign, P11_OP_SIGN, pMechanism, hKey);
	tk_p11_session_put(s, rv);
	return rv;
}

static CK_RV
sign_finish(struct p11_session *s, const uint8_t *data, size_t len, bool single, CK_BYTE_PTR sig,
            CK_ULONG_PTR sig_len)
{
	struct p11_op *op = &s->sign;
	uint8_t hash[EVP_MAX_MD_SIZE];
	const uint8_t *in = NULL;
	size_t in_len = 0, out_len = 0;
	CK_RV rv;

	if (op->kind != P11_OP_SIGN)
		return CKR_OPERATION_NOT_INITIALIZED;
	/* the single-part call on a multi-part operation: an error, and (as
	 * every error of C_Sign, PKCS#11 3.0 5.13) the end of the operation;
	 * CKR_OPERATION_ACTIVE is not among its answers */
	if (single && op->multi) {
		tk_p11_op_reset(op);
		return CKR_FUNCTION_FAILED;
	}
	if (single && data == NULL && len > 0) {
		tk_p11_op_reset(op);
		return CKR_ARGUMENTS_BAD;
	}
	if (!sign_length_rules(op, sig, sig_len, &rv))
		return rv;
	rv = tk_p11_op_input(op, data, len, single, hash, &in, &in_len);
	if (rv == CKR_OK)
		rv = sign_core(s, op, in, in_len, sig, &out_len);
	if (rv == CKR_OK)
		*sig_len = out_len;
	tk_p11_op_reset(op);
	return rv;
}

CK_RV
tk_p11_C_Sign(CK_SESSION_HANDLE hSession, CK_BYTE_PTR pData, CK_ULONG ulDataLen,
              CK_BYTE_PTR pSignature, CK_ULONG_PTR pulSignatureLen)
{
	struct p11_session *s;
	CK_RV rv = tk_p11_session_get(hSession, &s);

	if (rv != CKR_OK)
		return rv;
	rv = sign_finish(s, pData, ulDataLen, true, pSignature, pulSignatureLen);
	tk_p11_session_put(s, rv);
	return rv;
}

CK_RV
tk_p11_C_SignUpdate(CK_SESSION_HANDLE hSession, CK_BYTE_PTR pPart, CK_ULONG ulPartLen)
{
	struct p11_session *s;
	CK_RV rv = tk_p11_session_get(hSession, &s);

	if (rv != CKR_OK)
		return rv;
	if (s->sign.kind != P11_OP_SIGN) {
		rv = CKR_OPERATION_NOT_INITIALIZED;
	} else if (pPart == NULL && ulPartLen > 0) {
		rv = CKR_ARGUMENTS_BAD;
		tk_p11_op_reset(&s->sign);
	} else {
		rv = tk_p11_op_update(&s->sign, pPart, ulPartLen);
		if (rv != CKR_OK)
			tk_p11_op_reset(&s->sign);
	}
	tk_p11_session_put(s, rv);
	return rv;
}

CK_RV
tk_p11_C_SignFinal(CK_SESSION_HANDLE hSession, CK_BYTE_PTR pSignature, CK_ULONG_PTR pulSignatureLen)
{
	struct p11_session *s;
	CK_RV rv = tk_p11_session_get(hSession, &s);

	if (rv != CKR_OK)
		return rv;
	rv = sign_finish(s, NULL, 0, false, pSignature, pulSignatureLen);
	tk_p11_session_put(s, rv);
	return rv;
}
