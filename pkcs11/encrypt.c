/* tokenkit-pkcs11: C_EncryptInit / C_Encrypt with a software token's RSA
 * public keys (CKA_ENCRYPT true), on the host with OpenSSL: CKM_RSA_PKCS
 * (PKCS#1 v1.5) and CKM_RSA_PKCS_OAEP (its hash, MGF1 hash and label from
 * CK_RSA_PKCS_OAEP_PARAMS). Single-part only, as PKCS#11 3.0 (2.1.6,
 * 2.1.8) has these mechanisms. A card's public keys encrypt nothing here
 * (CKR_FUNCTION_NOT_SUPPORTED, as before). */
#include <string.h>

#include <openssl/rsa.h>

#include "p11.h"

CK_RV
tk_p11_C_EncryptInit(CK_SESSION_HANDLE hSession, CK_MECHANISM_PTR pMechanism, CK_OBJECT_HANDLE hKey)
{
	struct p11_session *s;
	CK_RV rv = tk_p11_session_get(hSession, &s);

	if (rv != CKR_OK)
		return rv;
	if (!s->tok->soft)
		rv = CKR_FUNCTION_NOT_SUPPORTED;
	else if (pMechanism != NULL && pMechanism->mechanism != CKM_RSA_PKCS &&
	         pMechanism->mechanism != CKM_RSA_PKCS_OAEP)
		rv = CKR_MECHANISM_INVALID;
	else
		rv = tk_p11_op_init(s, &s->encrypt, P11_OP_ENCRYPT, pMechanism, hKey);
	tk_p11_session_put(s, rv);
	return rv;
}

CK_RV
tk_p11_C_Encrypt(CK_SESSION_HANDLE hSession, CK_BYTE_PTR pData, CK_ULONG ulDataLen,
                 CK_BYTE_PTR pEncryptedData, CK_ULONG_PTR pulEncryptedDataLen)
{
	struct p11_session *s;
	struct p11_op *op;
	EVP_PKEY_CTX *ctx = NULL;
	uint8_t *label = NULL;
	size_t k, max, out;
	CK_RV rv = tk_p11_session_get(hSession, &s);

	if (rv != CKR_OK)
		return rv;
	op = &s->encrypt;
	if (op->kind != P11_OP_ENCRYPT) {
		rv = CKR_OPERATION_NOT_INITIALIZED;
		goto put;
	}
	if (pulEncryptedDataLen == NULL || (pData == NULL && ulDataLen > 0)) {
		rv = CKR_ARGUMENTS_BAD;
		goto out;
	}
	k = (op->obj->key_bits + 7) / 8;
	/* the most a block of k bytes carries (RFC 8017 7.1.1, 7.2.1) */
	max = op->mech == CKM_RSA_PKCS_OAEP ? k - 2 * (size_t)EVP_MD_get_size(op->pss_md) - 2
	                                    : k - 11;
	if (ulDataLen > max) {
		rv = CKR_DATA_LEN_RANGE;
		goto out;
	}
	if (pEncryptedData == NULL) {
		*pulEncryptedDataLen = k; /* a length query: the operation stays */
		goto put;
	}
	if (*pulEncryptedDataLen < k) {
		*pulEncryptedDataLen = k;
		rv = CKR_BUFFER_TOO_SMALL;
		goto put;
	}
	out = *pulEncryptedDataLen;
	ctx = EVP_PKEY_CTX_new_from_pkey(tk_p11_libctx(), tk_p11_object_pub(op->obj), NULL);
	if (ctx == NULL || EVP_PKEY_encrypt_init(ctx) != 1) {
		rv = CKR_FUNCTION_FAILED;
		goto out;
	}
	if (op->mech == CKM_RSA_PKCS_OAEP) {
		if (op->label_len > 0 &&
		    (label = OPENSSL_memdup(op->label, op->label_len)) == NULL) {
			rv = CKR_HOST_MEMORY;
			goto out;
		}
		if (EVP_PKEY_CTX_set_rsa_padding(ctx, RSA_PKCS1_OAEP_PADDING) != 1 ||
		    EVP_PKEY_CTX_set_rsa_oaep_md(ctx, op->pss_md) != 1 ||
		    EVP_PKEY_CTX_set_rsa_mgf1_md(ctx, op->mgf_md) != 1 ||
		    (label != NULL &&
		     EVP_PKEY_CTX_set0_rsa_oaep_label(ctx, label, (int)op->label_len) != 1)) {
			rv = CKR_FUNCTION_FAILED;
			goto out;
		}
		label = NULL; /* the context's now */
	} else if (EVP_PKEY_CTX_set_rsa_padding(ctx, RSA_PKCS1_PADDING) != 1) {
		rv = CKR_FUNCTION_FAILED;
		goto out;
	}
	if (EVP_PKEY_encrypt(ctx, pEncryptedData, &out, pData, ulDataLen) != 1) {
		rv = CKR_FUNCTION_FAILED;
		goto out;
	}
	*pulEncryptedDataLen = out;
out:
	/* every other end ends the operation */
	tk_p11_op_reset(op);
put:
	OPENSSL_free(label);
	EVP_PKEY_CTX_free(ctx);
	tk_p11_session_put(s, rv);
	return rv;
}
