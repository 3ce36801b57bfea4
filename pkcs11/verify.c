/* tokenkit-pkcs11: C_Verify* on the host with the public key (OpenSSL).
 * Signatures are in PKCS#11 form: RSA as a modulus-length block, ECDSA as
 * r||s. */
#include <stdlib.h>
#include <string.h>

#include <openssl/ec.h>
#include <openssl/rsa.h>

#include <tokenkit/mem.h>

#include "p11.h"

/* PureEdDSA over the message: one shot, no digest. */
static CK_RV
verify_eddsa(const struct p11_object *key, const uint8_t *in, size_t in_len, const uint8_t *sig,
             size_t sig_len)
{
	EVP_MD_CTX *mctx;
	CK_RV rv = CKR_FUNCTION_FAILED;

	if (sig_len != 64)
		return CKR_SIGNATURE_LEN_RANGE;
	if (in_len > P11_EDDSA_MAX_INPUT)
		return CKR_DATA_LEN_RANGE; /* as C_Sign answers it */
	if ((mctx = EVP_MD_CTX_new()) == NULL)
		return CKR_HOST_MEMORY;
	if (EVP_DigestVerifyInit_ex(mctx, NULL, NULL, tk_p11_libctx(), NULL, key->pub, NULL) == 1)
		rv = EVP_DigestVerify(mctx, sig, sig_len, in, in_len) == 1 ? CKR_OK
		                                                           : CKR_SIGNATURE_INVALID;
	EVP_MD_CTX_free(mctx);
	return rv;
}

static CK_RV
verify_core(const struct p11_op *op, const uint8_t *in, size_t in_len, const uint8_t *sig,
            size_t sig_len)
{
	const struct p11_object *key = op->obj;
	const struct p11_mech *mech = tk_p11_mech_lookup(op->mech);
	size_t k = (key->key_bits + 7) / 8;
	EVP_PKEY_CTX *ctx =
	        EVP_PKEY_CTX_new_from_pkey(tk_p11_libctx(), tk_p11_object_pub(key), NULL);
	ECDSA_SIG *es = NULL;
	uint8_t *der = NULL, *rec = NULL, *pad = NULL;
	const uint8_t *tbs = in, *s = sig;
	size_t tbs_len = in_len, slen = sig_len;
	int derlen, ok;
	CK_RV rv = CKR_FUNCTION_FAILED;

	if (ctx == NULL)
		return CKR_HOST_MEMORY;
	if (key->key_type == TK_KEY_ED25519) {
		rv = verify_eddsa(key, in, in_len, sig, sig_len);
		goto out;
	}
	if (key->key_type == TK_KEY_EC) {
		BIGNUM *r, *sv;

		if (sig_len != 2 * k) {
			rv = CKR_SIGNATURE_LEN_RANGE;
			goto out;
		}
		es = ECDSA_SIG_new();
		r = BN_bin2bn(sig, (int)k, NULL);
		sv = BN_bin2bn(sig + k, (int)k, NULL);
		if (es == NULL || r == NULL || sv == NULL || ECDSA_SIG_set0(es, r, sv) != 1) {
			BN_free(r);
			BN_free(sv);
			goto out;
		}
		derlen = i2d_ECDSA_SIG(es, &der);
		if (derlen <= 0)
			goto out;
		s = der;
		slen = (size_t)derlen;
		if (EVP_PKEY_verify_init(ctx) != 1)
			goto out;
	} else {
		if (sig_len != k) {
			rv = CKR_SIGNATURE_LEN_RANGE;
			goto out;
		}
		if (op->mech == CKM_RSA_X_509) {
			size_t rl = k;

			if (in_len > k) {
				rv = CKR_DATA_LEN_RANGE;
				goto out;
			}
			rec = malloc(k);
			pad = calloc(1, k);
			if (rec == NULL || pad == NULL) {
				rv = CKR_HOST_MEMORY;
				goto out;
			}
			memcpy(pad + k - in_len, in, in_len);
			if (EVP_PKEY_verify_recover_init(ctx) != 1 ||
			    EVP_PKEY_CTX_set_rsa_padding(ctx, RSA_NO_PADDING) != 1)
				goto out;
			if (EVP_PKEY_verify_recover(ctx, rec, &rl, sig, sig_len) != 1 || rl != k ||
			    memcmp(rec, pad, k) != 0)
				rv = CKR_SIGNATURE_INVALID;
			else
				rv = CKR_OK;
			goto out;
		}
		if (EVP_PKEY_verify_init(ctx) != 1)
			goto out;
		if (mech->pss) {
			if (in_len != (size_t)EVP_MD_get_size(op->pss_md)) {
				rv = CKR_DATA_LEN_RANGE;
				goto out;
			}
			if (EVP_PKEY_CTX_set_rsa_padding(ctx, RSA_PKCS1_PSS_PADDING) != 1 ||
			    EVP_PKEY_CTX_set_signature_md(ctx, op->pss_md) != 1 ||
			    EVP_PKEY_CTX_set_rsa_mgf1_md(ctx, op->mgf_md) != 1 ||
			    EVP_PKEY_CTX_set_rsa_pss_saltlen(ctx, (int)op->salt_len) != 1)
				goto out;
		} else {
			if (EVP_PKEY_CTX_set_rsa_padding(ctx, RSA_PKCS1_PADDING) != 1)
				goto out;
			if (op->md != NULL && EVP_PKEY_CTX_set_signature_md(ctx, op->md) != 1)
				goto out;
		}
	}
	if (key->key_type == TK_KEY_EC && mech->hash == 0 && tbs_len > P11_ECDSA_MAX_INPUT) {
		rv = CKR_DATA_LEN_RANGE; /* as C_Sign answers it */
		goto out;
	}
	ok = EVP_PKEY_verify(ctx, s, slen, tbs, tbs_len);
	rv = ok == 1 ? CKR_OK : CKR_SIGNATURE_INVALID;
out:
	ECDSA_SIG_free(es);
	OPENSSL_free(der);
	free(rec);
	free(pad);
	EVP_PKEY_CTX_free(ctx);
	return rv;
}

CK_RV
tk_p11_C_VerifyInit(CK_SESSION_HANDLE hSession, CK_MECHANISM_PTR pMechanism, CK_OBJECT_HANDLE hKey)
{
	struct p11_session *s;
	CK_RV rv = tk_p11_session_get(hSession, &s);

	if (rv != CKR_OK)
		return rv;
	rv = tk_p11_op_init(s, &s->verify, P11_OP_VERIFY, pMechanism, hKey);
	tk_p11_session_put(s, rv);
	return rv;
}

static CK_RV
verify_finish(struct p11_session *s, const uint8_t *data, size_t len, bool single,
              const uint8_t *sig, size_t sig_len)
{
	struct p11_op *op = &s->verify;
	uint8_t hash[EVP_MAX_MD_SIZE];
	const uint8_t *in = NULL;
	size_t in_len = 0;
	CK_RV rv;

	if (op->kind != P11_OP_VERIFY)
		return CKR_OPERATION_NOT_INITIALIZED;
	/* the single-part call on a multi-part operation: an error, and (as
	 * every error of C_Verify, PKCS#11 3.0 5.15) the end of the operation;
	 * CKR_OPERATION_ACTIVE is not among its answers */
	if (single && op->multi) {
		tk_p11_op_reset(op);
		return CKR_FUNCTION_FAILED;
	}
	if ((single && data == NULL && len > 0) || (sig == NULL && sig_len > 0))
		rv = CKR_ARGUMENTS_BAD;
	else
		rv = tk_p11_op_input(op, data, len, single, hash, &in, &in_len);
	if (rv == CKR_OK)
		rv = verify_core(op, in, in_len, sig, sig_len);
	tk_p11_op_reset(op);
	return rv;
}

CK_RV
tk_p11_C_Verify(CK_SESSION_HANDLE hSession, CK_BYTE_PTR pData, CK_ULONG ulDataLen,
                CK_BYTE_PTR pSignature, CK_ULONG ulSignatureLen)
{
	struct p11_session *s;
	CK_RV rv = tk_p11_session_get(hSession, &s);

	if (rv != CKR_OK)
		return rv;
	rv = verify_finish(s, pData, ulDataLen, true, pSignature, ulSignatureLen);
	tk_p11_session_put(s, rv);
	return rv;
}

CK_RV
tk_p11_C_VerifyUpdate(CK_SESSION_HANDLE hSession, CK_BYTE_PTR pPart, CK_ULONG ulPartLen)
{
	struct p11_session *s;
	CK_RV rv = tk_p11_session_get(hSession, &s);

	if (rv != CKR_OK)
		return rv;
	if (s->verify.kind != P11_OP_VERIFY) {
		rv = CKR_OPERATION_NOT_INITIALIZED;
	} else if (pPart == NULL && ulPartLen > 0) {
		rv = CKR_ARGUMENTS_BAD;
		tk_p11_op_reset(&s->verify);
	} else {
		rv = tk_p11_op_update(&s->verify, pPart, ulPartLen);
		if (rv != CKR_OK)
			tk_p11_op_reset(&s->verify);
	}
	tk_p11_session_put(s, rv);
	return rv;
}

CK_RV
tk_p11_C_VerifyFinal(CK_SESSION_HANDLE hSession, CK_BYTE_PTR pSignature, CK_ULONG ulSignatureLen)
{
	struct p11_session *s;
	CK_RV rv = tk_p11_session_get(hSession, &s);

	if (rv != CKR_OK)
		return rv;
	rv = verify_finish(s, NULL, 0, false, pSignature, ulSignatureLen);
	tk_p11_session_put(s, rv);
	return rv;
}
