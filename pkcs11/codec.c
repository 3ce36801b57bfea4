/* tokenkit-pkcs11: padding codecs done on the host — EMSA-PSS encoding,
 * EME-PKCS1-v1_5 and EME-OAEP decoding (RFC 8017). No card, no session:
 * the unit tests compile this file directly.
 *
 * Decoding runs without data-dependent branches or memory accesses until
 * the verdict; the only thing that leaks is the verdict and the length of
 * the message, which the PKCS#11 API returns anyway. */
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/rand.h>

#include <tokenkit/mem.h>

#include "p11.h"

/* EMSA-PSS-ENCODE (RFC 8017 9.1.1) into em[0..em_len), em_len = modulus bytes. */
int
tk_p11_pss_encode(const EVP_MD *md, const EVP_MD *mgf, const uint8_t *mhash, size_t hlen,
                  size_t salt_len, unsigned mod_bits, uint8_t *em, size_t em_len)
{
	size_t em_bits = mod_bits - 1, elen = (em_bits + 7) / 8, dblen, off;
	uint8_t *salt = NULL, h[EVP_MAX_MD_SIZE];
	static const uint8_t zeros[8] = {0};
	EVP_MD_CTX *ctx = NULL;
	unsigned int hl = 0;
	uint8_t *db;
	int r = TK_ERR_CRYPTO;

	if (mod_bits < 2 || elen > em_len || (size_t)EVP_MD_get_size(md) != hlen ||
	    salt_len > elen || elen < hlen + salt_len + 2)
		return TK_ERR_INVALID_ARG;
	memset(em, 0, em_len);
	off = em_len - elen;
	/* any salt length RFC 8017 allows for this modulus (up to emLen - hLen - 2) */
	salt = malloc(salt_len > 0 ? salt_len : 1);
	if (salt == NULL)
		return TK_ERR_NO_MEMORY;
	if (salt_len > 0 && RAND_bytes_ex(tk_p11_libctx(), salt, salt_len, 0) != 1)
		goto out;
	ctx = EVP_MD_CTX_new();
	if (ctx == NULL) {
		r = TK_ERR_NO_MEMORY;
		goto out;
	}
	if (EVP_DigestInit_ex(ctx, md, NULL) != 1 || EVP_DigestUpdate(ctx, zeros, 8) != 1 ||
	    EVP_DigestUpdate(ctx, mhash, hlen) != 1 || EVP_DigestUpdate(ctx, salt, salt_len) != 1 ||
	    EVP_DigestFinal_ex(ctx, h, &hl) != 1)
		goto out;
	dblen = elen - hlen - 1;
	db = em + off;
	/* mask first, then XOR DB = PS || 01 || salt into it */
	r = tk_p11_mgf1(mgf, h, hlen, db, dblen);
	if (r != TK_OK)
		goto out;
	db[dblen - salt_len - 1] ^= 0x01;
	for (size_t i = 0; i < salt_len; i++)
		db[dblen - salt_len + i] ^= salt[i];
	db[0] &= (uint8_t)(0xFF >> (8 * elen - em_bits));
	memcpy(db + dblen, h, hlen);
	em[em_len - 1] = 0xbc;
	r = TK_OK;
out:
	tk_freezero(salt, salt_len > 0 ? salt_len : 1);
	EVP_MD_CTX_free(ctx);
	return r;
}

/* Constant-time helpers: all-ones (0xFF..) for true, 0 for false. */
static size_t
ct_is_zero(size_t x)
{
	return (size_t)0 - (((x | ((size_t)0 - x)) >> (sizeof(size_t) * 8 - 1)) ^ 1);
}

static size_t
ct_eq(size_t a, size_t b)
{
	return ct_is_zero(a ^ b);
}

static size_t
ct_lt(size_t a, size_t b)
{
	/* a, b < 2^(bits-1) here */
	return (size_t)0 - ((a - b) >> (sizeof(size_t) * 8 - 1));
}

static size_t
ct_sel(size_t mask, size_t a, size_t b)
{
	return (mask & a) | (~mask & b);
}

/* EME-PKCS1-v1_5 decoding (RFC 8017 7.2.2 step 3). */
int
tk_p11_pkcs1_type2_decode(const uint8_t *em, size_t k, uint8_t *out, size_t *out_len)
{
	size_t good, found = 0, zero_at = 0, mlen;

	*out_len = 0;
	if (k < 11)
		return TK_ERR_INVALID_ARG;
	good = ct_eq(em[0], 0) & ct_eq(em[1], 2);
	for (size_t i = 2; i < k; i++) {
		size_t z = ct_eq(em[i], 0);

		zero_at = ct_sel(~found & z, i, zero_at);
		found |= z;
	}
	good &= found;
	good &= ~ct_lt(zero_at, 10); /* at least 8 bytes of padding */
	mlen = k - zero_at - 1;
	if (!good)
		return TK_ERR_MALFORMED;
	memcpy(out, em + zero_at + 1, mlen);
	*out_len = mlen;
	return TK_OK;
}

/* EME-OAEP decoding (RFC 8017 7.1.2 step 3). */
int
tk_p11_oaep_decode(const EVP_MD *md, const EVP_MD *mgf, const uint8_t *label, size_t label_len,
                   const uint8_t *em, size_t k, uint8_t *out, size_t *out_len)
{
	size_t hlen = (size_t)EVP_MD_get_size(md), dblen, good, found = 0, one_at = 0, mlen;
	uint8_t lhash[EVP_MAX_MD_SIZE], seed[EVP_MAX_MD_SIZE], *db = NULL;
	unsigned int hl = 0;
	int r = TK_ERR_MALFORMED;

	*out_len = 0;
	if (k < 2 * hlen + 2)
		return TK_ERR_INVALID_ARG;
	if (EVP_Digest(label, label_len, lhash, &hl, md, NULL) != 1)
		return TK_ERR_CRYPTO;
	dblen = k - hlen - 1;
	db = malloc(dblen);
	if (db == NULL)
		return TK_ERR_NO_MEMORY;
	/* seed = maskedSeed ^ MGF(maskedDB); DB = maskedDB ^ MGF(seed) */
	if (tk_p11_mgf1(mgf, em + 1 + hlen, dblen, seed, hlen) != TK_OK)
		goto out;
	for (size_t i = 0; i < hlen; i++)
		seed[i] ^= em[1 + i];
	if (tk_p11_mgf1(mgf, seed, hlen, db, dblen) != TK_OK)
		goto out;
	for (size_t i = 0; i < dblen; i++)
		db[i] ^= em[1 + hlen + i];
	good = ct_eq(em[0], 0);
	for (size_t i = 0; i < hlen; i++)
		good &= ct_eq(db[i], lhash[i]);
	for (size_t i = hlen; i < dblen; i++) {
		size_t one = ct_eq(db[i], 1), zero = ct_eq(db[i], 0);

		one_at = ct_sel(~found & one, i, one_at);
		/* anything but 00 before the 01 is an error */
		good &= found | one | zero;
		found |= one;
	}
	good &= found;
	mlen = dblen - one_at - 1;
	if (!good)
		goto out;
	memcpy(out, db + one_at + 1, mlen);
	*out_len = mlen;
	r = TK_OK;
out:
	tk_wipe(seed, sizeof(seed));
	tk_freezero(db, dblen);
	return r;
}
