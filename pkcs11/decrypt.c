/* tokenkit-pkcs11: C_Decrypt* — the card does the raw RSA private
 * operation, the host removes PKCS#1 v1.5 or OAEP padding without
 * data-dependent branches or memory accesses until the verdict. A card
 * without the raw operation (OpenPGP) removes PKCS#1 v1.5 padding itself
 * (TK_OP_RSA_PKCS1_DECRYPT): CKM_RSA_PKCS only.
 *
 * A length query (pData NULL) before the card operation answers the upper
 * bound; once the card has answered, the plaintext is kept (and wiped at the
 * end) so that a CKR_BUFFER_TOO_SMALL retry does not cost another card
 * operation or PIN entry. */
#include <stdlib.h>
#include <string.h>

#include <tokenkit/mem.h>

#include "p11.h"

static size_t
max_plain(const struct p11_op *op, size_t k)
{
	size_t hlen;

	if (op->mech == CKM_RSA_X_509)
		return k;
	if (op->mech == CKM_RSA_PKCS_OAEP) {
		hlen = (size_t)EVP_MD_get_size(op->pss_md);
		return k > 2 * hlen + 2 ? k - 2 * hlen - 2 : 0;
	}
	return k > 11 ? k - 11 : 0;
}

static CK_RV
decrypt_card(struct p11_session *s, struct p11_op *op, const uint8_t *enc, size_t k)
{
	uint8_t *raw = NULL, *em = NULL;
	size_t got = 0;
	int r;
	CK_RV rv;

	raw = malloc(k);
	em = calloc(1, k);
	op->result = malloc(k);
	if (raw == NULL || em == NULL || op->result == NULL) {
		rv = CKR_HOST_MEMORY;
		goto out;
	}
	if (!(op->obj->ops & TK_OP_BIT(TK_OP_RSA_RAW))) {
		/* op_init let only CKM_RSA_PKCS through for such a key */
		rv = tk_p11_key_op(s, op, op->obj, TK_OP_RSA_PKCS1_DECRYPT, enc, k, op->result, k,
		                   &op->result_len);
		if (rv == CKR_OK && op->result_len > max_plain(op, k))
			rv = CKR_DEVICE_ERROR;
		if (rv == CKR_OK)
			op->have_result = true;
		goto out;
	}
	rv = tk_p11_key_op(s, op, op->obj, TK_OP_RSA_RAW, enc, k, raw, k, &got);
	if (rv != CKR_OK)
		goto out;
	if (got == 0 || got > k) {
		rv = CKR_DEVICE_ERROR;
		goto out;
	}
	memcpy(em + k - got, raw, got);
	if (op->mech == CKM_RSA_X_509) {
		memcpy(op->result, em, k);
		op->result_len = k;
		r = TK_OK;
	} else if (op->mech == CKM_RSA_PKCS_OAEP) {
		r = tk_p11_oaep_decode(op->pss_md, op->mgf_md, op->label, op->label_len, em, k,
		                       op->result, &op->result_len);
	} else {
		r = tk_p11_pkcs1_type2_decode(em, k, op->result, &op->result_len);
	}
	if (r != TK_OK) {
		rv = CKR_ENCRYPTED_DATA_INVALID;
		goto out;
	}
	op->have_result = true;
	rv = CKR_OK;
out:
	tk_freezero(raw, k);
	tk_freezero(em, k);
	if (rv != CKR_OK) {
		tk_freezero(op->result, k);
		op->result = NULL;
		op->result_len = 0;
	}
	return rv;
}

static CK_RV
decrypt_finish(struct p11_session *s, const uint8_t *enc, size_t enc_len, bool single,
               CK_BYTE_PTR out, CK_ULONG_PTR out_len)
{
	struct p11_op *op = &s->decrypt;
	size_t k;
	CK_RV rv;

	if (op->kind != P11_OP_DECRYPT)
		return CKR_OPERATION_NOT_INITIALIZED;
	/* the single-part call on a multi-part operation: an error, and (as
	 * every error of C_Decrypt, PKCS#11 3.0 5.10) the end of the operation;
	 * CKR_OPERATION_ACTIVE is not among its answers */
	if (single && op->multi) {
		tk_p11_op_reset(op);
		return CKR_FUNCTION_FAILED;
	}
	k = (op->obj->key_bits + 7) / 8;
	if (out_len == NULL || (single && enc == NULL && enc_len > 0)) {
		rv = CKR_ARGUMENTS_BAD;
		goto end;
	}
	if (!single) {
		enc = op->buf;
		enc_len = op->buf_len;
	}
	if (!op->have_result) {
		if (enc_len != k) {
			rv = CKR_ENCRYPTED_DATA_LEN_RANGE;
			goto end;
		}
		if (out == NULL) {
			*out_len = max_plain(op, k);
			return CKR_OK;
		}
		rv = decrypt_card(s, op, enc, k);
		if (rv != CKR_OK)
			goto end;
	}
	if (out == NULL) {
		*out_len = op->result_len;
		return CKR_OK;
	}
	if (*out_len < op->result_len) {
		*out_len = op->result_len;
		return CKR_BUFFER_TOO_SMALL;
	}
	memcpy(out, op->result, op->result_len);
	*out_len = op->result_len;
	rv = CKR_OK;
end:
	tk_p11_op_reset(op);
	return rv;
}

CK_RV
tk_p11_C_DecryptInit(CK_SESSION_HANDLE hSession, CK_MECHANISM_PTR pMechanism, CK_OBJECT_HANDLE hKey)
{
	struct p11_session *s;
	CK_RV rv = tk_p11_session_get(hSession, &s);

	if (rv != CKR_OK)
		return rv;
	rv = tk_p11_op_init(s, &s->decrypt, P11_OP_DECRYPT, pMechanism, hKey);
	tk_p11_session_put(s, rv);
	return rv;
}

CK_RV
tk_p11_C_Decrypt(CK_SESSION_HANDLE hSession, CK_BYTE_PTR pEncryptedData,
                 CK_ULONG ulEncryptedDataLen, CK_BYTE_PTR pData, CK_ULONG_PTR pulDataLen)
{
	struct p11_session *s;
	CK_RV rv = tk_p11_session_get(hSession, &s);

	if (rv != CKR_OK)
		return rv;
	rv = decrypt_finish(s, pEncryptedData, ulEncryptedDataLen, true, pData, pulDataLen);
	tk_p11_session_put(s, rv);
	return rv;
}

/* RSA has no partial output: parts are collected (at most one block). */
CK_RV
tk_p11_C_DecryptUpdate(CK_SESSION_HANDLE hSession, CK_BYTE_PTR pEncryptedPart,
                       CK_ULONG ulEncryptedPartLen, CK_BYTE_PTR pPart, CK_ULONG_PTR pulPartLen)
{
	struct p11_session *s;
	CK_RV rv = tk_p11_session_get(hSession, &s);

	if (rv != CKR_OK)
		return rv;
	if (s->decrypt.kind != P11_OP_DECRYPT) {
		rv = CKR_OPERATION_NOT_INITIALIZED;
	} else if ((pEncryptedPart == NULL && ulEncryptedPartLen > 0) || pulPartLen == NULL) {
		rv = CKR_ARGUMENTS_BAD;
		tk_p11_op_reset(&s->decrypt);
	} else if (s->decrypt.buf_len + ulEncryptedPartLen > (s->decrypt.obj->key_bits + 7) / 8) {
		rv = CKR_ENCRYPTED_DATA_LEN_RANGE;
		tk_p11_op_reset(&s->decrypt);
	} else {
		rv = tk_p11_op_update(&s->decrypt, pEncryptedPart, ulEncryptedPartLen);
		if (rv != CKR_OK)
			tk_p11_op_reset(&s->decrypt);
		else
			*pulPartLen = 0;
	}
	tk_p11_session_put(s, rv);
	return rv;
}

CK_RV
tk_p11_C_DecryptFinal(CK_SESSION_HANDLE hSession, CK_BYTE_PTR pLastPart,
                      CK_ULONG_PTR pulLastPartLen)
{
	struct p11_session *s;
	CK_RV rv = tk_p11_session_get(hSession, &s);

	if (rv != CKR_OK)
		return rv;
	rv = decrypt_finish(s, NULL, 0, false, pLastPart, pulLastPartLen);
	tk_p11_session_put(s, rv);
	return rv;
}
