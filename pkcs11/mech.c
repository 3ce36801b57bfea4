/* tokenkit-pkcs11: the mechanism table, C_GetMechanismList/Info.
 *
 * A token lists the mechanisms its private keys can serve (RSA ones when it
 * holds an RSA key allowed to sign or decrypt, EC ones for EC keys, EdDSA
 * for Ed25519 and ECDH for X25519 keys), with key sizes taken from those
 * keys. A mechanism needs a card operation the key has (tk_token_key_ops):
 * an OpenPGP card pads PKCS#1 v1.5 itself and offers no raw RSA, so its RSA
 * keys serve CKM_RSA_PKCS and the hashing PKCS#1 v1.5 mechanisms, never
 * PSS, OAEP or X.509. CKF_VERIFY: verification is done on the
 * host with the public key. The digests (CKF_DIGEST) are the host's and
 * listed for every token. */
#include <string.h>

#include "p11.h"

#define EC_FLAGS (CKF_EC_F_P | CKF_EC_OID | CKF_EC_UNCOMPRESS)

#define RSA KT(TK_KEY_RSA)
#define EC KT(TK_KEY_EC)
#define ED KT(TK_KEY_ED25519)
#define X25519 KT(TK_KEY_X25519)
#define AES (1u << 30) /* a software token's AES keys (no tk key type) */

static const struct p11_mech mechs[] = {
        /* CKF_ENCRYPT: with a software token's public keys (encrypt.c) */
        {CKM_RSA_PKCS, RSA, CKF_SIGN | CKF_VERIFY | CKF_DECRYPT | CKF_ENCRYPT, 0, false, true},
        {CKM_RSA_X_509, RSA, CKF_SIGN | CKF_VERIFY | CKF_DECRYPT, 0, false, true},
        {CKM_RSA_PKCS_PSS, RSA, CKF_SIGN | CKF_VERIFY, 0, true, true},
        {CKM_RSA_PKCS_OAEP, RSA, CKF_DECRYPT | CKF_ENCRYPT, 0, false, false},
        {CKM_SHA1_RSA_PKCS, RSA, CKF_SIGN | CKF_VERIFY, CKM_SHA_1, false, false},
        {CKM_SHA224_RSA_PKCS, RSA, CKF_SIGN | CKF_VERIFY, CKM_SHA224, false, false},
        {CKM_SHA256_RSA_PKCS, RSA, CKF_SIGN | CKF_VERIFY, CKM_SHA256, false, false},
        {CKM_SHA384_RSA_PKCS, RSA, CKF_SIGN | CKF_VERIFY, CKM_SHA384, false, false},
        {CKM_SHA512_RSA_PKCS, RSA, CKF_SIGN | CKF_VERIFY, CKM_SHA512, false, false},
        {CKM_SHA1_RSA_PKCS_PSS, RSA, CKF_SIGN | CKF_VERIFY, CKM_SHA_1, true, false},
        {CKM_SHA224_RSA_PKCS_PSS, RSA, CKF_SIGN | CKF_VERIFY, CKM_SHA224, true, false},
        {CKM_SHA256_RSA_PKCS_PSS, RSA, CKF_SIGN | CKF_VERIFY, CKM_SHA256, true, false},
        {CKM_SHA384_RSA_PKCS_PSS, RSA, CKF_SIGN | CKF_VERIFY, CKM_SHA384, true, false},
        {CKM_SHA512_RSA_PKCS_PSS, RSA, CKF_SIGN | CKF_VERIFY, CKM_SHA512, true, false},
        {CKM_ECDSA, EC, CKF_SIGN | CKF_VERIFY | EC_FLAGS, 0, false, true},
        {CKM_ECDSA_SHA1, EC, CKF_SIGN | CKF_VERIFY | EC_FLAGS, CKM_SHA_1, false, false},
        {CKM_ECDSA_SHA224, EC, CKF_SIGN | CKF_VERIFY | EC_FLAGS, CKM_SHA224, false, false},
        {CKM_ECDSA_SHA256, EC, CKF_SIGN | CKF_VERIFY | EC_FLAGS, CKM_SHA256, false, false},
        {CKM_ECDSA_SHA384, EC, CKF_SIGN | CKF_VERIFY | EC_FLAGS, CKM_SHA384, false, false},
        {CKM_ECDSA_SHA512, EC, CKF_SIGN | CKF_VERIFY | EC_FLAGS, CKM_SHA512, false, false},
        {CKM_ECDH1_DERIVE, EC | X25519, CKF_DERIVE | EC_FLAGS, 0, false, false},
        {CKM_EDDSA, ED, CKF_SIGN | CKF_VERIFY, 0, false, true},
        /* key generation: software tokens only (softobj.c) */
        {CKM_RSA_PKCS_KEY_PAIR_GEN, RSA, CKF_GENERATE_KEY_PAIR, 0, false, false},
        {CKM_EC_KEY_PAIR_GEN, EC, CKF_GENERATE_KEY_PAIR | EC_FLAGS, 0, false, false},
        {CKM_EC_EDWARDS_KEY_PAIR_GEN, ED, CKF_GENERATE_KEY_PAIR, 0, false, false},
        {CKM_AES_KEY_GEN, AES, CKF_GENERATE, 0, false, false},
        {CKM_AES_KEY_WRAP_PAD, AES, CKF_WRAP | CKF_UNWRAP, 0, false, false},
        /* digests: on the host (digest.c), whatever keys the token holds */
        {CKM_SHA_1, 0, CKF_DIGEST, 0, false, false},
        {CKM_SHA224, 0, CKF_DIGEST, 0, false, false},
        {CKM_SHA256, 0, CKF_DIGEST, 0, false, false},
        {CKM_SHA384, 0, CKF_DIGEST, 0, false, false},
        {CKM_SHA512, 0, CKF_DIGEST, 0, false, false},
        {CKM_SHA3_224, 0, CKF_DIGEST, 0, false, false},
        {CKM_SHA3_256, 0, CKF_DIGEST, 0, false, false},
        {CKM_SHA3_384, 0, CKF_DIGEST, 0, false, false},
        {CKM_SHA3_512, 0, CKF_DIGEST, 0, false, false},
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

unsigned
tk_p11_mech_ops(const struct p11_mech *m, CK_FLAGS fn)
{
	if (m->key_types & RSA) {
		bool pkcs1 = !m->pss && m->type != CKM_RSA_X_509 && m->type != CKM_RSA_PKCS_OAEP;
		unsigned ops = TK_OP_BIT(TK_OP_RSA_RAW);

		if (pkcs1 && fn == CKF_SIGN)
			ops |= TK_OP_BIT(TK_OP_RSA_PKCS1_SIGN);
		if (pkcs1 && fn == CKF_DECRYPT)
			ops |= TK_OP_BIT(TK_OP_RSA_PKCS1_DECRYPT);
		return ops;
	}
	if (m->type == CKM_EDDSA)
		return TK_OP_BIT(TK_OP_EDDSA);
	if (fn == CKF_DERIVE)
		return TK_OP_BIT(TK_OP_ECDH);
	if (fn == CKF_SIGN)
		return TK_OP_BIT(TK_OP_ECDSA);
	return 0;
}

/* The functions of m that a key of this type, usage and card operations
 * serves (0: none). */
static CK_FLAGS
usable_flags(const struct p11_mech *m, int key_type, unsigned usage, unsigned ops)
{
	CK_FLAGS f = 0;

	if (key_type <= TK_KEY_NONE || !(m->key_types & KT(key_type)))
		return 0;
	if ((m->flags & CKF_SIGN) && (usage & TK_USAGE_SIGN) &&
	    (ops & tk_p11_mech_ops(m, CKF_SIGN)))
		f |= CKF_SIGN | CKF_VERIFY;
	if ((m->flags & CKF_DECRYPT) && (usage & TK_USAGE_DECRYPT) &&
	    (ops & tk_p11_mech_ops(m, CKF_DECRYPT)))
		f |= CKF_DECRYPT;
	if ((m->flags & CKF_DERIVE) && (usage & TK_USAGE_DERIVE) &&
	    (ops & tk_p11_mech_ops(m, CKF_DERIVE)))
		f |= CKF_DERIVE;
	return f;
}

/* A software token does every mechanism of its key types with the key
 * sizes it holds (it may generate or be given any of them), on the host:
 * no CKF_HW. */
static CK_FLAGS
soft_flags(const struct p11_mech *m, unsigned *min, unsigned *max)
{
	if (m->key_types & RSA) {
		/* generated: 2048 to 4096; imported or created: from 1024 */
		*min = (m->flags & CKF_GENERATE_KEY_PAIR) ? 2048 : 1024;
		*max = 4096;
	} else if (m->key_types & EC) {
		*min = 256;
		*max = 521;
	} else if (m->key_types & ED) {
		*min = *max = 255;
	} else if (m->key_types & AES) {
		*min = 16; /* bytes (PKCS#11 3.0 2.14) */
		*max = 32;
	}
	return m->flags;
}

/* What m does on t, and the sizes of the keys it does it with. */
static CK_FLAGS
token_flags(const struct p11_token *t, const struct p11_mech *m, unsigned *min, unsigned *max)
{
	CK_FLAGS f = 0;

	*min = *max = 0;
	if (m->flags & CKF_DIGEST)
		return CKF_DIGEST; /* no key, no card */
	if (t->soft)
		return soft_flags(m, min, max);
	for (size_t i = 0; i < t->nobjs; i++) {
		const struct p11_object *o = &t->objs[i];
		CK_FLAGS of;

		if (o->cls != CKO_PRIVATE_KEY)
			continue;
		of = usable_flags(m, o->key_type, o->usage, o->ops);
		if (of == 0 || o->key_bits == 0)
			continue;
		f |= of;
		if (*min == 0 || o->key_bits < *min)
			*min = o->key_bits;
		if (o->key_bits > *max)
			*max = o->key_bits;
	}
	if (f == 0)
		return 0;
	return f | CKF_HW | (m->flags & EC_FLAGS);
}

size_t
tk_p11_mech_list(const struct p11_token *t, CK_MECHANISM_TYPE *out, size_t cap)
{
	size_t n = 0;

	unsigned min, max;

	for (size_t i = 0; i < NMECHS; i++) {
		if (token_flags(t, &mechs[i], &min, &max) == 0)
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
	unsigned usage = key->usage, ops = key->ops;

	*count = 0;
	/* public keys: what their private key could do, seen from the verifier
	 * (who works on the host, with every padding) */
	if (key->cls == CKO_PUBLIC_KEY) {
		usage = TK_USAGE_SIGN | TK_USAGE_DECRYPT | TK_USAGE_DERIVE;
		ops = ~0u;
	}
	for (size_t i = 0; i < NMECHS; i++) {
		if (usable_flags(&mechs[i], key->key_type, usage, ops) == 0)
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
	unsigned min = 0, max = 0;
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
	f = m != NULL ? token_flags(t, m, &min, &max) : 0;
	if (f != 0) {
		memset(pInfo, 0, sizeof(*pInfo));
		pInfo->flags = f;
		pInfo->ulMinKeySize = min;
		pInfo->ulMaxKeySize = max;
	}
	pthread_mutex_unlock(&g_p11.lock);
	if (f == 0)
		rv = CKR_MECHANISM_INVALID;
out:
	tk_p11_token_put(t);
	return rv;
}
