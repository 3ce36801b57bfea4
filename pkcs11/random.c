/* tokenkit-pkcs11: C_GenerateRandom and C_SeedRandom.
 *
 * PIV cards offer no random generator (no GET CHALLENGE in SP 800-73), so
 * the token's RNG is the host's: OpenSSL's DRBG of the module's own library
 * context (tk_p11_libctx(), seeded from the operating system). The token
 * says so with CKF_RNG, as PKCS#11 asks of a token whose C_GenerateRandom
 * works (the README tells where the bytes come from). C_SeedRandom mixes
 * the caller's bytes in as additional input of a reseed: they can add to
 * the DRBG's state, never replace its own entropy. */
#include <openssl/evp.h>
#include <openssl/rand.h>

#include "p11.h"

CK_RV
tk_p11_C_SeedRandom(CK_SESSION_HANDLE hSession, CK_BYTE_PTR pSeed, CK_ULONG ulSeedLen)
{
	struct p11_session *s;
	EVP_RAND_CTX *drbg;
	CK_RV rv = tk_p11_session_get(hSession, &s);

	if (rv != CKR_OK)
		return rv;
	if (pSeed == NULL && ulSeedLen > 0) {
		rv = CKR_ARGUMENTS_BAD;
		goto out;
	}
	if (ulSeedLen == 0)
		goto out;
	/* the DRBG that C_GenerateRandom draws from (RAND_bytes_ex) */
	drbg = RAND_get0_public(tk_p11_libctx());
	if (drbg == NULL || EVP_RAND_reseed(drbg, 0, NULL, 0, pSeed, ulSeedLen) != 1)
		rv = CKR_FUNCTION_FAILED;
out:
	tk_p11_session_put(s, rv);
	return rv;
}

CK_RV
tk_p11_C_GenerateRandom(CK_SESSION_HANDLE hSession, CK_BYTE_PTR pRandomData, CK_ULONG ulRandomLen)
{
	struct p11_session *s;
	CK_RV rv = tk_p11_session_get(hSession, &s);

	if (rv != CKR_OK)
		return rv;
	if (pRandomData == NULL && ulRandomLen > 0)
		rv = CKR_ARGUMENTS_BAD;
	else if (ulRandomLen > 0 &&
	         RAND_bytes_ex(tk_p11_libctx(), pRandomData, ulRandomLen, 0) != 1)
		rv = CKR_FUNCTION_FAILED;
	tk_p11_session_put(s, rv);
	return rv;
}
