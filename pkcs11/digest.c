/* tokenkit-pkcs11: C_DigestInit/C_Digest/C_DigestUpdate/C_DigestKey/
 * C_DigestFinal — SHA-1, SHA-2 and SHA-3 on the host, through the module's
 * own OpenSSL library context (no card involved).
 *
 * A session's digest is an operation state of its own (s->digest), beside
 * signing, verification and decryption: a digest and a signature may run
 * at once on one session (one active operation of each kind, as the
 * dual-function calls of PKCS#11 presuppose).
 *
 * Operation life (PKCS#11 3.0 5.12, 5.2 for the output convention): a
 * length query (NULL output) and CKR_BUFFER_TOO_SMALL keep the operation
 * going; any other error, and every successful C_Digest/C_DigestFinal, ends
 * it. */
#include <string.h>

#include <tokenkit/mem.h>

#include "p11.h"

static CK_RV
digest_init(struct p11_session *s, const CK_MECHANISM *m)
{
	struct p11_op *op = &s->digest;
	const struct p11_mech *mech;
	const EVP_MD *md;

	if (op->kind != P11_OP_NONE)
		return CKR_OPERATION_ACTIVE;
	if (m == NULL)
		return CKR_ARGUMENTS_BAD;
	mech = tk_p11_mech_lookup(m->mechanism);
	md = tk_p11_md_for_digest(m->mechanism);
	if (mech == NULL || !(mech->flags & CKF_DIGEST) || md == NULL)
		return CKR_MECHANISM_INVALID;
	if (m->pParameter != NULL || m->ulParameterLen != 0)
		return CKR_MECHANISM_PARAM_INVALID;
	op->mdctx = EVP_MD_CTX_new();
	if (op->mdctx == NULL)
		return CKR_HOST_MEMORY;
	if (EVP_DigestInit_ex(op->mdctx, md, NULL) != 1) {
		tk_p11_op_reset(op);
		return CKR_FUNCTION_FAILED;
	}
	op->md = md;
	op->mech = m->mechanism;
	op->kind = P11_OP_DIGEST;
	return CKR_OK;
}

/* The output rules of C_Digest and C_DigestFinal. Returns true when the
 * caller must go on and finish the digest into out. */
static bool
output_rules(struct p11_op *op, CK_BYTE_PTR out, CK_ULONG_PTR out_len, CK_RV *rv)
{
	CK_ULONG need = (CK_ULONG)EVP_MD_get_size(op->md);

	if (out_len == NULL) {
		*rv = CKR_ARGUMENTS_BAD;
		tk_p11_op_reset(op);
		return false;
	}
	if (out == NULL) {
		*out_len = need;
		*rv = CKR_OK;
		return false;
	}
	if (*out_len < need) {
		*out_len = need;
		*rv = CKR_BUFFER_TOO_SMALL;
		return false;
	}
	return true;
}

static CK_RV
digest_finish(struct p11_session *s, const uint8_t *data, size_t len, bool single, CK_BYTE_PTR out,
              CK_ULONG_PTR out_len)
{
	struct p11_op *op = &s->digest;
	unsigned int hl = 0;
	CK_RV rv;

	if (op->kind != P11_OP_DIGEST)
		return CKR_OPERATION_NOT_INITIALIZED;
	/* C_Digest cannot end a multi-part digest (5.12): an error, which
	 * ends the operation like every C_Digest error; CKR_OPERATION_ACTIVE
	 * is not among its answers */
	if (single && op->multi) {
		tk_p11_op_reset(op);
		return CKR_FUNCTION_FAILED;
	}
	if (single && data == NULL && len > 0) {
		tk_p11_op_reset(op);
		return CKR_ARGUMENTS_BAD;
	}
	if (!output_rules(op, out, out_len, &rv))
		return rv;
	rv = CKR_FUNCTION_FAILED;
	if (single && len > 0 && EVP_DigestUpdate(op->mdctx, data, len) != 1)
		goto out;
	if (EVP_DigestFinal_ex(op->mdctx, out, &hl) != 1)
		goto out;
	*out_len = hl;
	rv = CKR_OK;
out:
	tk_p11_op_reset(op);
	return rv;
}

/* C_DigestKey: the value of a secret key (the session keys ECDH derives).
 * Certificates and the card's public and private keys have no secret value
 * to digest: CKR_KEY_INDIGESTIBLE. Digested under the module lock, since
 * another session may destroy the object meanwhile (no card I/O here). */
static CK_RV
digest_key(struct p11_session *s, CK_OBJECT_HANDLE hkey)
{
	struct p11_op *op = &s->digest;
	const struct p11_object *o;
	const struct p11_attr *v = NULL;
	CK_RV rv = CKR_OK;

	if (op->kind != P11_OP_DIGEST)
		return CKR_OPERATION_NOT_INITIALIZED;
	op->multi = true;
	pthread_mutex_lock(&g_p11.lock);
	o = tk_p11_object_find_locked(s->tok, hkey);
	if (o == NULL || !tk_p11_object_visible(s->tok, o, s->h) ||
	    (o->cls != CKO_SECRET_KEY && o->cls != CKO_PUBLIC_KEY && o->cls != CKO_PRIVATE_KEY))
		rv = CKR_KEY_HANDLE_INVALID;
	else if (o->cls != CKO_SECRET_KEY || (v = tk_p11_attr_find(o, CKA_VALUE)) == NULL ||
	         v->len == 0)
		rv = CKR_KEY_INDIGESTIBLE;
	else if (EVP_DigestUpdate(op->mdctx, v->val, v->len) != 1)
		rv = CKR_FUNCTION_FAILED;
	pthread_mutex_unlock(&g_p11.lock);
	if (rv != CKR_OK)
		tk_p11_op_reset(op);
	return rv;
}

CK_RV
tk_p11_C_DigestInit(CK_SESSION_HANDLE hSession, CK_MECHANISM_PTR pMechanism)
{
	struct p11_session *s;
	CK_RV rv = tk_p11_session_get(hSession, &s);

	if (rv != CKR_OK)
		return rv;
	rv = digest_init(s, pMechanism);
	tk_p11_session_put(s, rv);
	return rv;
}

CK_RV
tk_p11_C_Digest(CK_SESSION_HANDLE hSession, CK_BYTE_PTR pData, CK_ULONG ulDataLen,
                CK_BYTE_PTR pDigest, CK_ULONG_PTR pulDigestLen)
{
	struct p11_session *s;
	CK_RV rv = tk_p11_session_get(hSession, &s);

	if (rv != CKR_OK)
		return rv;
	rv = digest_finish(s, pData, ulDataLen, true, pDigest, pulDigestLen);
	tk_p11_session_put(s, rv);
	return rv;
}

CK_RV
tk_p11_C_DigestUpdate(CK_SESSION_HANDLE hSession, CK_BYTE_PTR pPart, CK_ULONG ulPartLen)
{
	struct p11_session *s;
	struct p11_op *op;
	CK_RV rv = tk_p11_session_get(hSession, &s);

	if (rv != CKR_OK)
		return rv;
	op = &s->digest;
	if (op->kind != P11_OP_DIGEST) {
		rv = CKR_OPERATION_NOT_INITIALIZED;
	} else if (pPart == NULL && ulPartLen > 0) {
		rv = CKR_ARGUMENTS_BAD;
		tk_p11_op_reset(op);
	} else {
		/* a zero-length part is a part: it changes nothing but makes the
		 * operation multi-part */
		op->multi = true;
		if (ulPartLen > 0 && EVP_DigestUpdate(op->mdctx, pPart, ulPartLen) != 1) {
			rv = CKR_FUNCTION_FAILED;
			tk_p11_op_reset(op);
		}
	}
	tk_p11_session_put(s, rv);
	return rv;
}

CK_RV
tk_p11_C_DigestKey(CK_SESSION_HANDLE hSession, CK_OBJECT_HANDLE hKey)
{
	struct p11_session *s;
	CK_RV rv = tk_p11_session_get(hSession, &s);

	if (rv != CKR_OK)
		return rv;
	rv = digest_key(s, hKey);
	tk_p11_session_put(s, rv);
	return rv;
}

CK_RV
tk_p11_C_DigestFinal(CK_SESSION_HANDLE hSession, CK_BYTE_PTR pDigest, CK_ULONG_PTR pulDigestLen)
{
	struct p11_session *s;
	CK_RV rv = tk_p11_session_get(hSession, &s);

	if (rv != CKR_OK)
		return rv;
	rv = digest_finish(s, NULL, 0, false, pDigest, pulDigestLen);
	tk_p11_session_put(s, rv);
	return rv;
}
