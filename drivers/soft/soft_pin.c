/* tokenkit: the software token's cryptography at rest: the data key (DEK)
 * wrapped under a key derived from a PIN (scrypt, OpenSSL's EVP_KDF
 * "SCRYPT": OpenSSL 3.0 has no Argon2), and objects' secret parts sealed
 * under the DEK. Both are AES-256-GCM; the additional data binds a wrap to
 * its role (user, SO) and a sealed part to its object (uid, class, key
 * type), so neither can be moved to another place of the record. */
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/kdf.h>
#include <openssl/rand.h>

#include <tokenkit/err.h>
#include <tokenkit/mem.h>

#include "ossl.h"
#include "secmem.h"
#include "soft_int.h"

#define KEK_LEN 32

static const char wrap_domain[] = "tokenkit soft DEK v1";
static const char seal_domain[] = "tokenkit soft object v1";

static int
scrypt(const uint8_t *pin, size_t pin_len, const struct soft_wrap *w, uint8_t kek[KEK_LEN])
{
	EVP_KDF *kdf = EVP_KDF_fetch(tk_ossl_libctx(), "SCRYPT", NULL);
	EVP_KDF_CTX *c = kdf != NULL ? EVP_KDF_CTX_new(kdf) : NULL;
	uint64_t n = (uint64_t)1 << w->log2n;
	uint32_t r = w->r, p = w->p;
	OSSL_PARAM params[6];
	int res = TK_ERR_CRYPTO;

	params[0] = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_PASSWORD,
	                                              (void *)(uintptr_t)pin, pin_len);
	params[1] = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_SALT,
	                                              (void *)(uintptr_t)w->salt, sizeof(w->salt));
	params[2] = OSSL_PARAM_construct_uint64(OSSL_KDF_PARAM_SCRYPT_N, &n);
	params[3] = OSSL_PARAM_construct_uint32(OSSL_KDF_PARAM_SCRYPT_R, &r);
	params[4] = OSSL_PARAM_construct_uint32(OSSL_KDF_PARAM_SCRYPT_P, &p);
	params[5] = OSSL_PARAM_construct_end();
	if (c != NULL && EVP_KDF_derive(c, kek, KEK_LEN, params) == 1)
		res = TK_OK;
	EVP_KDF_CTX_free(c);
	EVP_KDF_free(kdf);
	return res;
}

/* AES-256-GCM, one shot. enc: out gets the ciphertext and tag; else in
 * holds them and a wrong tag is TK_ERR_BAD_CHECKSUM. */
static int
gcm(bool enc, const uint8_t key[32], const uint8_t nonce[SOFT_NONCE_LEN], const uint8_t *aad,
    size_t aad_len, const uint8_t *in, size_t in_len, uint8_t *out, uint8_t tag[SOFT_TAG_LEN])
{
	EVP_CIPHER *ciph = EVP_CIPHER_fetch(tk_ossl_libctx(), "AES-256-GCM", NULL);
	EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();
	int n = 0, res = TK_ERR_CRYPTO;

	if (ciph == NULL || c == NULL || in_len > INT32_MAX)
		goto out;
	if (EVP_CipherInit_ex2(c, ciph, key, nonce, enc ? 1 : 0, NULL) != 1)
		goto out;
	if (aad_len > 0 && EVP_CipherUpdate(c, NULL, &n, aad, (int)aad_len) != 1)
		goto out;
	if (in_len > 0 && EVP_CipherUpdate(c, out, &n, in, (int)in_len) != 1)
		goto out;
	if (!enc && EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_SET_TAG, SOFT_TAG_LEN, tag) != 1)
		goto out;
	if (EVP_CipherFinal_ex(c, out + n, &n) != 1) {
		res = enc ? TK_ERR_CRYPTO : TK_ERR_BAD_CHECKSUM;
		goto out;
	}
	if (enc && EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_GET_TAG, SOFT_TAG_LEN, tag) != 1)
		goto out;
	res = TK_OK;
out:
	EVP_CIPHER_CTX_free(c);
	EVP_CIPHER_free(ciph);
	return res;
}

static size_t
wrap_aad(int role, uint8_t *aad)
{
	memcpy(aad, wrap_domain, sizeof(wrap_domain));
	aad[sizeof(wrap_domain)] = (uint8_t)role;
	return sizeof(wrap_domain) + 1;
}

int
tk_soft_wrap(const uint8_t dek[SOFT_DEK_LEN], int role, const uint8_t *pin, size_t pin_len,
             unsigned log2n, struct soft_wrap *w)
{
	uint8_t kek[KEK_LEN], aad[sizeof(wrap_domain) + 1];
	int r;

	memset(w, 0, sizeof(*w));
	w->log2n = (uint8_t)log2n;
	w->r = SOFT_SCRYPT_R;
	w->p = SOFT_SCRYPT_P;
	if (RAND_bytes_ex(tk_ossl_libctx(), w->salt, sizeof(w->salt), 0) != 1 ||
	    RAND_bytes_ex(tk_ossl_libctx(), w->nonce, sizeof(w->nonce), 0) != 1)
		return TK_ERR_CRYPTO;
	if ((r = scrypt(pin, pin_len, w, kek)) != TK_OK)
		goto out;
	r = gcm(true, kek, w->nonce, aad, wrap_aad(role, aad), dek, SOFT_DEK_LEN, w->ct, w->tag);
	if (r == TK_OK)
		w->present = true;
out:
	tk_wipe(kek, sizeof(kek));
	return r;
}

int
tk_soft_unwrap(const struct soft_wrap *w, int role, const uint8_t *pin, size_t pin_len,
               uint8_t dek[SOFT_DEK_LEN])
{
	uint8_t kek[KEK_LEN], aad[sizeof(wrap_domain) + 1], tag[SOFT_TAG_LEN];
	int r;

	if (!w->present)
		return TK_ERR_PIN_INCORRECT;
	if ((r = scrypt(pin, pin_len, w, kek)) != TK_OK)
		goto out;
	memcpy(tag, w->tag, sizeof(tag));
	r = gcm(false, kek, w->nonce, aad, wrap_aad(role, aad), w->ct, SOFT_DEK_LEN, dek, tag);
	if (r == TK_ERR_BAD_CHECKSUM) {
		/* the only way a wrap made by us fails to open: another PIN */
		tk_wipe(dek, SOFT_DEK_LEN);
		r = TK_ERR_PIN_INCORRECT;
	}
out:
	tk_wipe(kek, sizeof(kek));
	return r;
}

/* domain | NUL | uid | class (8, big-endian) | key type (8) */
#define SEAL_AAD_LEN (sizeof(seal_domain) + TK_SOFT_UID_LEN + 16)

static void
seal_aad(const struct soft_obj *o, uint8_t aad[SEAL_AAD_LEN])
{
	uint64_t v[2] = {tk_obj_class(&o->attrs), tk_obj_key_type(&o->attrs)};
	size_t n = 0;

	memcpy(aad, seal_domain, sizeof(seal_domain));
	n += sizeof(seal_domain);
	memcpy(aad + n, o->uid, TK_SOFT_UID_LEN);
	n += TK_SOFT_UID_LEN;
	for (size_t k = 0; k < 2; k++)
		for (int s = 56; s >= 0; s -= 8)
			aad[n++] = (uint8_t)(v[k] >> s);
}

int
tk_soft_seal(const uint8_t dek[SOFT_DEK_LEN], const struct soft_obj *o, const uint8_t *pt,
             size_t pt_len, uint8_t **out, size_t *out_len)
{
	uint8_t aad[SEAL_AAD_LEN], *buf;
	size_t n = SOFT_NONCE_LEN + pt_len + SOFT_TAG_LEN;
	int r;

	*out = NULL;
	*out_len = 0;
	if (n > SOFT_SEALED_MAX)
		return TK_ERR_TOO_LONG;
	if ((buf = malloc(n)) == NULL)
		return TK_ERR_NO_MEMORY;
	seal_aad(o, aad);
	if (RAND_bytes_ex(tk_ossl_libctx(), buf, SOFT_NONCE_LEN, 0) != 1) {
		free(buf);
		return TK_ERR_CRYPTO;
	}
	r = gcm(true, dek, buf, aad, sizeof(aad), pt, pt_len, buf + SOFT_NONCE_LEN,
	        buf + SOFT_NONCE_LEN + pt_len);
	if (r != TK_OK) {
		tk_freezero(buf, n);
		return r;
	}
	*out = buf;
	*out_len = n;
	return TK_OK;
}

int
tk_soft_unseal(const uint8_t dek[SOFT_DEK_LEN], const struct soft_obj *o, void **pt, size_t *pt_len)
{
	uint8_t aad[SEAL_AAD_LEN], tag[SOFT_TAG_LEN];
	size_t n;
	void *buf = NULL;
	int r;

	*pt = NULL;
	*pt_len = 0;
	if (o->sealed == NULL || o->sealed_len < SOFT_NONCE_LEN + SOFT_TAG_LEN)
		return TK_ERR_MALFORMED;
	n = o->sealed_len - SOFT_NONCE_LEN - SOFT_TAG_LEN;
	if ((r = tk_secmem_alloc(n > 0 ? n : 1, &buf)) != TK_OK)
		return r;
	seal_aad(o, aad);
	memcpy(tag, o->sealed + SOFT_NONCE_LEN + n, sizeof(tag));
	r = gcm(false, dek, o->sealed, aad, sizeof(aad), o->sealed + SOFT_NONCE_LEN, n, buf, tag);
	if (r != TK_OK) {
		tk_secmem_free(&buf);
		return r;
	}
	*pt = buf;
	*pt_len = n;
	return TK_OK;
}
