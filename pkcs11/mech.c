/* tokenkit-pkcs11: the mechanism table, C_GetMechanismList/Info.
 *
 * A token lists the mechanisms its private keys can serve (RSA ones when it
 * holds an RSA key allowed to sign or decrypt, EC ones for EC keys), with
 * key sizes taken from those keys. CKF_VERIFY: verification is done on the
 * host with the public key. The digests (CKF_DIGEST) are the host's and
 * listed for every token. */
#include <string.h>

#include "p11.h"

#define EC_FLAGS (CKF_EC_F_P | CKF_EC_OID | CKF_EC_UNCOMPRESS)

static const struct p11_mech mechs[] = {
        {CKM_RSA_PKCS, TK_KEY_RSA, CKF_SIGN | CKF_VERIFY | CKF_DECRYPT, 0, false, true},
        {CKM_RSA_X_509, TK_KEY_RSA, CKF_SIGN | CKF_VERIFY | CKF_DECRYPT, 0, false, true},
        {CKM_RSA_PKCS_PSS, TK_KEY_RSA, CKF_SIGN | CKF_VERIFY, 0, true, true},
        {CKM_RSA_PKCS_OAEP, TK_KEY_RSA, CKF_DECRYPT, 0, false, false},
        {CKM_SHA1_RSA_PKCS, TK_KEY_RSA, CKF_SIGN | CKF_VERIFY, CKM_SHA_1, false, false},
        {CKM_SHA224_RSA_PKCS, TK_KEY_RSA, CKF_SIGN | CKF_VERIFY, CKM_SHA224, false, false},
        {CKM_SHA256_RSA_PKCS, TK_KEY_RSA, CKF_SIGN | CKF_VERIFY, CKM_SHA256, false, false},
        {CKM_SHA384_RSA_PKCS, TK_KEY_RSA, CKF_SIGN | CKF_VERIFY, CKM_SHA384, false, false},
        {CKM_SHA512_RSA_PKCS, TK_KEY_RSA, CKF_SIGN | CKF_VERIFY, CKM_SHA512, false, false},
        {CKM_SHA1_RSA_PKCS_PSS, TK_KEY_RSA, CKF_SIGN | CKF_VERIFY, CKM_SHA_1, true, false},
        {CKM_SHA224_RSA_PKCS_PSS, TK_KEY_RSA, CKF_SIGN | CKF_VERIFY, CKM_SHA224, true, false},
        {CKM_SHA256_RSA_PKCS_PSS, TK_KEY_RSA, CKF_SIGN | CKF_VERIFY, CKM_SHA256, true, false},
        {CKM_SHA384_RSA_PKCS_PSS, TK_KEY_RSA, CKF_SIGN | CKF_VERIFY, CKM_SHA384, true, false},
        {CKM_SHA512_RSA_PKCS_PSS, TK_KEY_RSA, CKF_SIGN | CKF_VERIFY, CKM_SHA512, true, false},
        {CKM_ECDSA, TK_KEY_EC, CKF_SIGN | CKF_VERIFY | EC_FLAGS, 0, false, true},
        {CKM_ECDSA_SHA1, TK_KEY_EC, CKF_SIGN | CKF_VERIFY | EC_FLAGS, CKM_SHA_1, false, false},
        {CKM_ECDSA_SHA224, TK_KEY_EC, CKF_SIGN | CKF_VERIFY | EC_FLAGS, CKM_SHA224, false, false},
        {CKM_ECDSA_SHA256, TK_KEY_EC, CKF_SIGN | CKF_VERIFY | EC_FLAGS, CKM_SHA256, false, false},
        {CKM_ECDSA_SHA384, TK_KEY_EC, CKF_SIGN | CKF_VERIFY | EC_FLAGS, CKM_SHA384, false, false},
        {CKM_ECDSA_SHA512, TK_KEY_EC, CKF_SIGN | CKF_VERIFY | EC_FLAGS, CKM_SHA512, false, false},
        {CKM_ECDH1_DERIVE, TK_KEY_EC, CKF_DERIVE | EC_FLAGS, 0, false, false},
        /* digests: on the host (digest.c), whatever keys the token holds */
        {CKM_SHA_1, TK_KEY_NONE, CKF_DIGEST, 0, false, false},
        {CKM_SHA224, TK_KEY_NONE, CKF_DIGEST, 0, false, false},
        {CKM_SHA256, TK_KEY_NONE, CKF_DIGEST, 0, false, false},
        {CKM_SHA384, TK_KEY_NONE, CKF_DIGEST, 0, false, false},
        {CKM_SHA512, TK_KEY_NONE, CKF_DIGEST, 0, false, false},
        {CKM_SHA3_224, TK_KEY_NONE, CKF_DIGEST, 0, false, false},
        {CKM_SHA3_256, TK_KEY_NONE, CKF_DIGEST, 0, false, false},
        {CKM_SHA3_384, TK_KEY_NONE, CKF_DIGEST, 0, false, false},
        {CKM_SHA3_512, TK_KEY_NONE, CKF_DIGEST, 0, false, false},
};
#define NMECHS (sizeof(mechs) / sizeof(mechs[0]))

const struct p11_mech *
tk_p11_mech_lookup(CK_MECHANISM_TYPE type)
{
	for (size_t i = 0; i < NMECHS; i++)
		if (mechs[i].type == type)
			return &mechs[i];
	return NULL;
}

/* The functions of m that a key with these usages serves (0: none). */
static CK_FLAGS
usable_flags(const struct p11_mech *m, int key_type, unsigned usage)
{
	CK_FLAGS f = 0;

	if (m->key_type != key_type || m->key_type == TK_KEY_NONE)
		return 0;
	if ((m->flags & CKF_SIGN) && (usage & TK_USAGE_SIGN))
		f |= CKF_SIGN | CKF_VERIFY;
	if ((m->flags & CKF_DECRYPT) && (usage & TK_USAGE_DECRYPT))
		f |= CKF_DECRYPT;
	if ((m->flags & CKF_DERIVE) && (usage & TK_USAGE_DERIVE))
		f |= CKF_DERIVE;
	return f;
}

static CK_FLAGS
token_flags(const struct p11_token *t, const struct p11_mech *m)
{
	CK_FLAGS f = 0;

	if (m->flags & CKF_DIGEST)
		return CKF_DIGEST; /* no key, no card */
	for (size_t i = 0; i < t->nobjs; i++) {
		const struct p11_object *o = &t->objs[i];

		if (o->cls == CKO_PRIVATE_KEY)
			f |= usable_flags(m, o->key_type, o->usage);
	}
	if (f == 0)
		return 0;
	return f | CKF_HW | (m->flags & EC_FLAGS);
}

size_t
tk_p11_mech_list(const struct p11_token *t, CK_MECHANISM_TYPE *out, size_t cap)
{
	size_t n = 0;

	for (size_t i = 0; i < NMECHS; i++) {
		if (token_flags(t, &mechs[i]) == 0)
			continue;
		if (out != NULL && n < cap)
			out[n] = mechs[i].type;
		n++;
	}
	return n;
}

CK_RV
tk_p11_mech_allowed_for_key(const struct p11_object *key, CK_MECHANISM_TYPE *out, size_t cap,
                            size_t *count)
{
	unsigned usage = key->usage;

	*count = 0;
	/* public keys: what their private key could do, seen from the verifier */
	if (key->cls == CKO_PUBLIC_KEY)
		usage = TK_USAGE_SIGN | (key->key_type == TK_KEY_EC ? TK_USAGE_DERIVE : 0) |
		        (key->key_type == TK_KEY_RSA ? TK_USAGE_DECRYPT : 0);
	for (size_t i = 0; i < NMECHS; i++) {
		if (usable_flags(&mechs[i], key->key_type, usage) == 0)
			continue;
		if (*count == cap)
			return CKR_BUFFER_TOO_SMALL;
		out[(*count)++] = mechs[i].type;
	}
	return CKR_OK;
}

CK_RV
tk_p11_C_GetMechanismList(CK_SLOT_ID slotID, CK_MECHANISM_TYPE_PTR pMechanismList,
                          CK_ULONG_PTR pulCount)
{
	struct p11_token *t = NULL;
	size_t n;
	CK_RV rv = tk_p11_slot_token(slotID, &t);

	if (rv != CKR_OK)
		return rv;
	if (pulCount == NULL) {
		rv = CKR_ARGUMENTS_BAD;
		goto out;
	}
	pthread_mutex_lock(&g_p11.lock); /* the object table may be swapped by revalidation */
	n = tk_p11_mech_list(t, NULL, 0);
	if (pMechanismList != NULL) {
		if (*pulCount < n)
			rv = CKR_BUFFER_TOO_SMALL;
		else
			tk_p11_mech_list(t, pMechanismList, n);
	}
	pthread_mutex_unlock(&g_p11.lock);
	*pulCount = n;
out:
	tk_p11_token_put(t);
	return rv;
}

CK_RV
tk_p11_C_GetMechanismInfo(CK_SLOT_ID slotID, CK_MECHANISM_TYPE type, CK_MECHANISM_INFO_PTR pInfo)
{
	struct p11_token *t = NULL;
	const struct p11_mech *m;
	CK_FLAGS f;
	CK_RV rv = tk_p11_slot_token(slotID, &t);

	if (rv != CKR_OK)
		return rv;
	if (pInfo == NULL) {
		rv = CKR_ARGUMENTS_BAD;
		goto out;
	}
	m = tk_p11_mech_lookup(type);
	pthread_mutex_lock(&g_p11.lock);
	f = m != NULL ? token_flags(t, m) : 0;
	if (f != 0) {
		memset(pInfo, 0, sizeof(*pInfo));
		pInfo->flags = f;
		if (m->key_type != TK_KEY_NONE) {
			pInfo->ulMinKeySize = m->key_type == TK_KEY_RSA ? t->rsa_min : t->ec_min;
			pInfo->ulMaxKeySize = m->key_type == TK_KEY_RSA ? t->rsa_max : t->ec_max;
		}
	}
	pthread_mutex_unlock(&g_p11.lock);
	if (f == 0)
		rv = CKR_MECHANISM_INVALID;
out:
	tk_p11_token_put(t);
	return rv;
}
