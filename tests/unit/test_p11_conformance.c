/* PKCS#11 conformance of the BUILT module (tokenkit-pkcs11.so, dlopen)
 * against a provisioned virtual PIV card (p11_vcard_fixture.h), for what
 * issue 8 §2 found lacking. Expected values come from OpenSSL in this
 * program (the card's public keys read at generation), never from the
 * module:
 *  - RSA-PSS: every salt length RFC 8017 allows (0 .. emLen - hLen - 2)
 *    signs and verifies for every hash; one more is refused at C_SignInit;
 *  - CKA_UNIQUE_ID: unique per object, the same in another session and
 *    after C_Finalize + C_Initialize;
 *  - CKF_RNG with a working C_GenerateRandom, C_SeedRandom's argument rules;
 *  - C_Digest* for SHA-1, SHA-2, SHA-3: values, the output conventions and
 *    every misuse, C_DigestKey, a digest beside a signature on one session;
 *  - C_Login with a PIN of impossible length: CKR_PIN_INCORRECT, no APDU;
 *  - raw CKM_ECDSA input longer than any digest: CKR_DATA_LEN_RANGE. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include <openssl/ec.h>
#include <openssl/rsa.h>

#include "p11_vcard_fixture.h"

#ifndef CKA_UNIQUE_ID
#define CKA_UNIQUE_ID 0x4UL /* PKCS#11 3.0; not in the packaged header */
#endif

#define ID_RSA 0x01    /* 9A */
#define ID_PINALL 0x02 /* 9C */
#define ID_ECDH 0x03   /* 9D */
#define ID_P384 0x04   /* 9E */

static const struct {
	CK_MECHANISM_TYPE hash;
	CK_RSA_PKCS_MGF_TYPE mgf;
	const char *name;
} hashes[] = {
        {CKM_SHA_1, CKG_MGF1_SHA1, "SHA1"},      {CKM_SHA224, CKG_MGF1_SHA224, "SHA224"},
        {CKM_SHA256, CKG_MGF1_SHA256, "SHA256"}, {CKM_SHA384, CKG_MGF1_SHA384, "SHA384"},
        {CKM_SHA512, CKG_MGF1_SHA512, "SHA512"},
};

static void
test_setup_group_ok(void **state)
{
	(void)state;
	assert_non_null(pvf.f);
}

/* Verify an RSA-PSS signature over mhash with OpenSSL. */
static bool
pss_verifies(const EVP_MD *md, const EVP_MD *mgf, int salt, const uint8_t *mhash, size_t hlen,
             const uint8_t *sig, size_t sig_len)
{
	EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new(pvf.pub[0], NULL);
	bool ok = ctx != NULL && EVP_PKEY_verify_init(ctx) == 1 &&
	          EVP_PKEY_CTX_set_rsa_padding(ctx, RSA_PKCS1_PSS_PADDING) == 1 &&
	          EVP_PKEY_CTX_set_signature_md(ctx, md) == 1 &&
	          EVP_PKEY_CTX_set_rsa_mgf1_md(ctx, mgf) == 1 &&
	          EVP_PKEY_CTX_set_rsa_pss_saltlen(ctx, salt) == 1 &&
	          EVP_PKEY_verify(ctx, sig, sig_len, mhash, hlen) == 1;

	EVP_PKEY_CTX_free(ctx);
	return ok;
}

static CK_RV
pss_sign(CK_SESSION_HANDLE h, CK_OBJECT_HANDLE key, CK_MECHANISM_TYPE mech,
         CK_RSA_PKCS_PSS_PARAMS *p, uint8_t *in, size_t in_len, uint8_t *sig, CK_ULONG *sig_len)
{
	CK_MECHANISM m = {mech, p, sizeof(*p)};
	CK_RV rv = pvf.f->C_SignInit(h, &m, key);

	if (rv != CKR_OK)
		return rv;
	return pvf.f->C_Sign(h, in, in_len, sig, sig_len);
}

/* RFC 8017 9.1.1: sLen up to emLen - hLen - 2, emLen = ceil((modBits - 1) / 8)
 * = 256 for RSA-2048. Every length signs and verifies, for every hash; the
 * next one is refused at C_SignInit (today's main: sLen > 192 passes
 * C_SignInit and fails in C_Sign with CKR_FUNCTION_FAILED). */
static void
test_pss_every_salt_length(void **state)
{
	uint8_t msg[] = "tokenkit PSS salt lengths";
	CK_SESSION_HANDLE h;
	CK_OBJECT_HANDLE key;
	unsigned failures = 0;

	(void)state;
	pvf_init();
	h = pvf_session(true);
	key = pvf_find(h, CKO_PRIVATE_KEY, ID_RSA);
	assert_int_not_equal(key, CK_INVALID_HANDLE);
	for (size_t i = 0; i < sizeof(hashes) / sizeof(hashes[0]); i++) {
		const EVP_MD *md = EVP_get_digestbyname(hashes[i].name);
		size_t hlen = (size_t)EVP_MD_get_size(md), max = 256 - hlen - 2;
		uint8_t mhash[EVP_MAX_MD_SIZE], sig[512];
		unsigned int ml = 0;

		assert_int_equal(EVP_Digest(msg, sizeof(msg), mhash, &ml, md, NULL), 1);
		for (size_t salt = 0; salt <= max + 1; salt++) {
			CK_RSA_PKCS_PSS_PARAMS p = {hashes[i].hash, hashes[i].mgf, salt};
			CK_ULONG sl = sizeof(sig);
			CK_RV rv = pss_sign(h, key, CKM_RSA_PKCS_PSS, &p, mhash, hlen, sig, &sl);

			if (salt == max + 1) {
				if (rv != CKR_MECHANISM_PARAM_INVALID) {
					fprintf(stderr, "%s sLen %zu (too long): 0x%lx\n",
					        hashes[i].name, salt, (unsigned long)rv);
					failures++;
				}
				continue;
			}
			if (rv != CKR_OK || sl != 256 ||
			    !pss_verifies(md, md, (int)salt, mhash, hlen, sig, sl)) {
				fprintf(stderr, "%s sLen %zu: 0x%lx\n", hashes[i].name, salt,
				        (unsigned long)rv);
				failures++;
			}
		}
	}
	assert_int_equal(failures, 0);
	pvf.f->C_Finalize(NULL);
}

/* The hashing PSS mechanisms at the longest salt; a hash for the MGF other
 * than the message hash (RFC 8017 allows it, the module does it); an MGF
 * the module does not know and a hash the mechanism contradicts are refused
 * at C_SignInit. */
static void
test_pss_params(void **state)
{
	uint8_t msg[] = "tokenkit PSS parameters";
	const EVP_MD *sha256 = EVP_sha256(), *sha1 = EVP_sha1();
	uint8_t mhash[32], sig[512];
	unsigned int ml = 0;
	CK_SESSION_HANDLE h;
	CK_OBJECT_HANDLE key;
	CK_ULONG sl = sizeof(sig);
	EVP_MD_CTX *v;

	(void)state;
	pvf_init();
	h = pvf_session(true);
	key = pvf_find(h, CKO_PRIVATE_KEY, ID_RSA);
	assert_int_equal(EVP_Digest(msg, sizeof(msg), mhash, &ml, sha256, NULL), 1);

	CK_RSA_PKCS_PSS_PARAMS longest = {CKM_SHA256, CKG_MGF1_SHA256, 256 - 32 - 2};
	assert_int_equal(
	        pss_sign(h, key, CKM_SHA256_RSA_PKCS_PSS, &longest, msg, sizeof(msg), sig, &sl),
	        CKR_OK);
	v = EVP_MD_CTX_new();
	EVP_PKEY_CTX *pc = NULL;
	assert_int_equal(EVP_DigestVerifyInit(v, &pc, sha256, NULL, pvf.pub[0]), 1);
	assert_int_equal(EVP_PKEY_CTX_set_rsa_padding(pc, RSA_PKCS1_PSS_PADDING), 1);
	assert_int_equal(EVP_PKEY_CTX_set_rsa_pss_saltlen(pc, 256 - 32 - 2), 1);
	assert_int_equal(EVP_DigestVerify(v, sig, sl, msg, sizeof(msg)), 1);
	EVP_MD_CTX_free(v);

	CK_RSA_PKCS_PSS_PARAMS mixed = {CKM_SHA256, CKG_MGF1_SHA1, 40};
	sl = sizeof(sig);
	assert_int_equal(pss_sign(h, key, CKM_RSA_PKCS_PSS, &mixed, mhash, 32, sig, &sl), CKR_OK);
	assert_true(pss_verifies(sha256, sha1, 40, mhash, 32, sig, sl));

	CK_RSA_PKCS_PSS_PARAMS bad_mgf = {CKM_SHA256, 0x999, 32};
	CK_MECHANISM m = {CKM_RSA_PKCS_PSS, &bad_mgf, sizeof(bad_mgf)};
	assert_int_equal(pvf.f->C_SignInit(h, &m, key), CKR_MECHANISM_PARAM_INVALID);
	CK_RSA_PKCS_PSS_PARAMS contra = {CKM_SHA384, CKG_MGF1_SHA384, 32};
	m.mechanism = CKM_SHA256_RSA_PKCS_PSS;
	m.pParameter = &contra;
	assert_int_equal(pvf.f->C_SignInit(h, &m, key), CKR_MECHANISM_PARAM_INVALID);
	CK_RSA_PKCS_PSS_PARAMS huge = {CKM_SHA256, CKG_MGF1_SHA256, (CK_ULONG)-1};
	m.mechanism = CKM_RSA_PKCS_PSS;
	m.pParameter = &huge;
	assert_int_equal(pvf.f->C_SignInit(h, &m, key), CKR_MECHANISM_PARAM_INVALID);
	/* a refused C_SignInit leaves no operation behind */
	m.pParameter = &longest;
	assert_int_equal(pvf.f->C_SignInit(h, &m, key), CKR_OK);
	pvf.f->C_Finalize(NULL);
}

struct uid {
	CK_OBJECT_CLASS cls;
	uint8_t id[16];
	CK_ULONG id_len;
	char uid[128];
	CK_ULONG uid_len;
};

/* Every object the logged-in user sees, with its CKA_UNIQUE_ID. */
static size_t
collect_uids(CK_SESSION_HANDLE h, struct uid *out, size_t cap)
{
	CK_OBJECT_HANDLE objs[32];
	CK_ULONG n = 0;

	assert_int_equal(pvf.f->C_FindObjectsInit(h, NULL, 0), CKR_OK);
	assert_int_equal(pvf.f->C_FindObjects(h, objs, 32, &n), CKR_OK);
	assert_int_equal(pvf.f->C_FindObjectsFinal(h), CKR_OK);
	assert_true(n <= cap);
	for (CK_ULONG i = 0; i < n; i++) {
		struct uid *u = &out[i];
		CK_ATTRIBUTE t[3] = {{CKA_CLASS, &u->cls, sizeof(u->cls)},
		                     {CKA_ID, u->id, sizeof(u->id)},
		                     {CKA_UNIQUE_ID, u->uid, sizeof(u->uid)}};

		memset(u, 0, sizeof(*u));
		t[0].pValue = &u->cls;
		t[1].pValue = u->id;
		t[2].pValue = u->uid;
		assert_int_equal(pvf.f->C_GetAttributeValue(h, objs[i], t, 3), CKR_OK);
		u->id_len = t[1].ulValueLen;
		u->uid_len = t[2].ulValueLen;
		assert_true(u->uid_len > 0);
	}
	return n;
}

static const struct uid *
uid_of(const struct uid *set, size_t n, CK_OBJECT_CLASS cls, const uint8_t *id, CK_ULONG id_len)
{
	for (size_t i = 0; i < n; i++)
		if (set[i].cls == cls && set[i].id_len == id_len &&
		    memcmp(set[i].id, id, id_len) == 0)
			return &set[i];
	return NULL;
}

/* The CKA_UNIQUE_ID of a secret key derived with 9D (ECDH). */
static void
secret_uid(CK_SESSION_HANDLE h, struct uid *u)
{
	uint8_t peer_pt[65], *pt = NULL;
	EVP_PKEY *peer = fx_soft_key("P-256");
	CK_OBJECT_HANDLE secret = CK_INVALID_HANDLE;
	CK_ECDH1_DERIVE_PARAMS ep = {CKD_NULL, 0, NULL, 65, peer_pt};
	CK_MECHANISM dm = {CKM_ECDH1_DERIVE, &ep, sizeof(ep)};
	CK_OBJECT_CLASS sk = CKO_SECRET_KEY;
	CK_ATTRIBUTE tpl = {CKA_CLASS, &sk, sizeof(sk)};
	CK_ATTRIBUTE a = {CKA_UNIQUE_ID, u->uid, sizeof(u->uid)};

	assert_int_equal(EVP_PKEY_get1_encoded_public_key(peer, &pt), 65);
	memcpy(peer_pt, pt, 65);
	OPENSSL_free(pt);
	EVP_PKEY_free(peer);
	assert_int_equal(
	        pvf.f->C_DeriveKey(h, &dm, pvf_find(h, CKO_PRIVATE_KEY, ID_ECDH), &tpl, 1, &secret),
	        CKR_OK);
	assert_int_equal(pvf.f->C_GetAttributeValue(h, secret, &a, 1), CKR_OK);
	u->uid_len = a.ulValueLen;
	assert_true(u->uid_len > 0);
}

/* Unique per object (today's main: every object of a token has the same
 * value), the same in a second session and after a module restart. */
static void
test_unique_id(void **state)
{
	struct uid a[33], b[32], c[32];
	size_t na, nb, nc;
	CK_SESSION_HANDLE h;

	(void)state;
	pvf_init();
	h = pvf_session(true);
	na = collect_uids(h, a, 32);
	assert_true(na >= 3 * PVF_NKEYS); /* certificate, public and private key per slot */
	for (size_t i = 0; i < na; i++)
		for (size_t j = i + 1; j < na; j++)
			assert_false(a[i].uid_len == a[j].uid_len &&
			             memcmp(a[i].uid, a[j].uid, a[i].uid_len) == 0);
	nb = collect_uids(pvf_session(true), b, 32);
	assert_int_equal(nb, na);
	/* a session object (an ECDH result) has one too, unlike every other */
	secret_uid(h, &a[na]);
	for (size_t i = 0; i < na; i++)
		assert_false(a[i].uid_len == a[na].uid_len &&
		             memcmp(a[i].uid, a[na].uid, a[i].uid_len) == 0);
	pvf.f->C_Finalize(NULL);

	pvf_init();
	nc = collect_uids(pvf_session(true), c, 32);
	assert_int_equal(nc, na);
	for (size_t i = 0; i < na; i++) {
		const struct uid *x = uid_of(b, nb, a[i].cls, a[i].id, a[i].id_len);
		const struct uid *y = uid_of(c, nc, a[i].cls, a[i].id, a[i].id_len);

		assert_non_null(x);
		assert_non_null(y);
		assert_memory_equal(x->uid, a[i].uid, a[i].uid_len);
		assert_int_equal(y->uid_len, a[i].uid_len);
		assert_memory_equal(y->uid, a[i].uid, a[i].uid_len);
	}
	pvf.f->C_Finalize(NULL);
}

/* CKF_RNG when C_GenerateRandom works (today's main: clear);
 * C_SeedRandom accepts seed material and checks its arguments. */
static void
test_rng(void **state)
{
	CK_TOKEN_INFO ti;
	CK_SESSION_HANDLE h;
	uint8_t a[64], b[64], seed[16] = {1, 2, 3};
	CK_RV rv;

	(void)state;
	pvf_init();
	h = pvf_session(false);
	assert_int_equal(pvf.f->C_GetTokenInfo(pvf.slot, &ti), CKR_OK);
	assert_true(ti.flags & CKF_RNG);
	assert_int_equal(pvf.f->C_GenerateRandom(h, a, sizeof(a)), CKR_OK);
	assert_int_equal(pvf.f->C_GenerateRandom(h, b, sizeof(b)), CKR_OK);
	assert_memory_not_equal(a, b, sizeof(a));
	assert_int_equal(pvf.f->C_GenerateRandom(h, NULL, 1), CKR_ARGUMENTS_BAD);
	assert_int_equal(pvf.f->C_GenerateRandom(h, a, 0), CKR_OK);

	rv = pvf.f->C_SeedRandom(h, seed, sizeof(seed));
	assert_true(rv == CKR_OK || rv == CKR_RANDOM_SEED_NOT_SUPPORTED);
	assert_int_equal(pvf.f->C_SeedRandom(h, NULL, 1), CKR_ARGUMENTS_BAD);
	assert_int_equal(pvf.f->C_SeedRandom(h + 1000, seed, sizeof(seed)),
	                 CKR_SESSION_HANDLE_INVALID);
	/* seeding never makes the output predictable: still different */
	assert_int_equal(pvf.f->C_GenerateRandom(h, b, sizeof(b)), CKR_OK);
	assert_memory_not_equal(a, b, sizeof(a));
	pvf.f->C_Finalize(NULL);
	assert_int_equal(pvf.f->C_SeedRandom(h, seed, sizeof(seed)), CKR_CRYPTOKI_NOT_INITIALIZED);
}

static const struct {
	CK_MECHANISM_TYPE mech;
	const char *name;
} digests[] = {
        {CKM_SHA_1, "SHA1"},        {CKM_SHA224, "SHA224"},     {CKM_SHA256, "SHA256"},
        {CKM_SHA384, "SHA384"},     {CKM_SHA512, "SHA512"},     {CKM_SHA3_224, "SHA3-224"},
        {CKM_SHA3_256, "SHA3-256"}, {CKM_SHA3_384, "SHA3-384"}, {CKM_SHA3_512, "SHA3-512"},
};

/* Values (single- and multi-part against OpenSSL), the mechanism list, the
 * output conventions. */
static void
test_digest_values(void **state)
{
	static uint8_t data[] = "The quick brown fox jumps over the lazy dog";
	CK_MECHANISM_TYPE list[128];
	CK_ULONG nl = 128;
	CK_SESSION_HANDLE h;

	(void)state;
	pvf_init();
	h = pvf_session(false);
	assert_int_equal(pvf.f->C_GetMechanismList(pvf.slot, list, &nl), CKR_OK);
	for (size_t i = 0; i < sizeof(digests) / sizeof(digests[0]); i++) {
		CK_MECHANISM m = {digests[i].mech, NULL, 0};
		CK_MECHANISM_INFO mi;
		const EVP_MD *md = EVP_get_digestbyname(digests[i].name);
		uint8_t want[EVP_MAX_MD_SIZE], got[EVP_MAX_MD_SIZE + 8];
		unsigned int wl = 0;
		CK_ULONG gl;
		bool listed = false;

		for (CK_ULONG j = 0; j < nl; j++)
			listed |= list[j] == digests[i].mech;
		assert_true(listed);
		assert_int_equal(pvf.f->C_GetMechanismInfo(pvf.slot, digests[i].mech, &mi), CKR_OK);
		assert_true(mi.flags & CKF_DIGEST);
		assert_non_null(md);
		assert_int_equal(EVP_Digest(data, sizeof(data) - 1, want, &wl, md, NULL), 1);

		/* single part, with a length query and a short buffer first */
		assert_int_equal(pvf.f->C_DigestInit(h, &m), CKR_OK);
		gl = 0;
		assert_int_equal(pvf.f->C_Digest(h, data, sizeof(data) - 1, NULL, &gl), CKR_OK);
		assert_int_equal(gl, wl);
		gl = wl - 1;
		memset(got, 0xAB, sizeof(got));
		assert_int_equal(pvf.f->C_Digest(h, data, sizeof(data) - 1, got, &gl),
		                 CKR_BUFFER_TOO_SMALL);
		assert_int_equal(gl, wl);
		assert_int_equal(got[0], 0xAB);
		gl = sizeof(got);
		assert_int_equal(pvf.f->C_Digest(h, data, sizeof(data) - 1, got, &gl), CKR_OK);
		assert_int_equal(gl, wl);
		assert_memory_equal(got, want, wl);
		/* the operation ended */
		assert_int_equal(pvf.f->C_DigestFinal(h, got, &gl), CKR_OPERATION_NOT_INITIALIZED);

		/* multi-part, with a zero-length part in between */
		assert_int_equal(pvf.f->C_DigestInit(h, &m), CKR_OK);
		assert_int_equal(pvf.f->C_DigestUpdate(h, data, 10), CKR_OK);
		assert_int_equal(pvf.f->C_DigestUpdate(h, NULL, 0), CKR_OK);
		assert_int_equal(pvf.f->C_DigestUpdate(h, data + 10, sizeof(data) - 11), CKR_OK);
		gl = 0;
		assert_int_equal(pvf.f->C_DigestFinal(h, NULL, &gl), CKR_OK);
		assert_int_equal(gl, wl);
		gl = 1;
		assert_int_equal(pvf.f->C_DigestFinal(h, got, &gl), CKR_BUFFER_TOO_SMALL);
		assert_int_equal(gl, wl);
		gl = sizeof(got);
		assert_int_equal(pvf.f->C_DigestFinal(h, got, &gl), CKR_OK);
		assert_int_equal(gl, wl);
		assert_memory_equal(got, want, wl);
	}
	pvf.f->C_Finalize(NULL);
}

/* Every misuse answers the specification's code. */
static void
test_digest_misuse(void **state)
{
	CK_MECHANISM sha256 = {CKM_SHA256, NULL, 0}, md5 = {CKM_MD5, NULL, 0};
	CK_MECHANISM with_param = {CKM_SHA256, "x", 1};
	uint8_t out[64], data[4] = {1, 2, 3, 4};
	CK_ULONG ol = sizeof(out);
	CK_SESSION_HANDLE h;
	CK_OBJECT_HANDLE cert, priv;

	(void)state;
	pvf_init();
	h = pvf_session(true);
	cert = pvf_find(h, CKO_CERTIFICATE, ID_P384);
	priv = pvf_find(h, CKO_PRIVATE_KEY, ID_P384);

	/* not initialised */
	assert_int_equal(pvf.f->C_Digest(h, data, 4, out, &ol), CKR_OPERATION_NOT_INITIALIZED);
	assert_int_equal(pvf.f->C_DigestUpdate(h, data, 4), CKR_OPERATION_NOT_INITIALIZED);
	assert_int_equal(pvf.f->C_DigestKey(h, cert), CKR_OPERATION_NOT_INITIALIZED);
	assert_int_equal(pvf.f->C_DigestFinal(h, out, &ol), CKR_OPERATION_NOT_INITIALIZED);
	/* bad session, mechanism, arguments */
	assert_int_equal(pvf.f->C_DigestInit(h + 1000, &sha256), CKR_SESSION_HANDLE_INVALID);
	assert_int_equal(pvf.f->C_DigestInit(h, NULL), CKR_ARGUMENTS_BAD);
	assert_int_equal(pvf.f->C_DigestInit(h, &md5), CKR_MECHANISM_INVALID);
	assert_int_equal(pvf.f->C_DigestInit(h, &with_param), CKR_MECHANISM_PARAM_INVALID);
	/* already active */
	assert_int_equal(pvf.f->C_DigestInit(h, &sha256), CKR_OK);
	assert_int_equal(pvf.f->C_DigestInit(h, &sha256), CKR_OPERATION_ACTIVE);
	/* no length pointer: ends the operation */
	assert_int_equal(pvf.f->C_Digest(h, data, 4, out, NULL), CKR_ARGUMENTS_BAD);
	assert_int_equal(pvf.f->C_Digest(h, data, 4, out, &ol), CKR_OPERATION_NOT_INITIALIZED);
	/* NULL data with a length: ends it */
	assert_int_equal(pvf.f->C_DigestInit(h, &sha256), CKR_OK);
	assert_int_equal(pvf.f->C_DigestUpdate(h, NULL, 4), CKR_ARGUMENTS_BAD);
	assert_int_equal(pvf.f->C_DigestUpdate(h, data, 4), CKR_OPERATION_NOT_INITIALIZED);
	/* C_Digest cannot end a multi-part digest: an error, which ends the
	 * operation (5.12: every C_Digest error but CKR_BUFFER_TOO_SMALL) */
	assert_int_equal(pvf.f->C_DigestInit(h, &sha256), CKR_OK);
	assert_int_equal(pvf.f->C_DigestUpdate(h, data, 4), CKR_OK);
	assert_int_equal(pvf.f->C_Digest(h, data, 4, out, &ol), CKR_FUNCTION_FAILED);
	ol = sizeof(out);
	assert_int_equal(pvf.f->C_DigestFinal(h, out, &ol), CKR_OPERATION_NOT_INITIALIZED);
	/* keys that cannot be digested, handles that name nothing: the error
	 * ends the operation */
	assert_int_equal(pvf.f->C_DigestInit(h, &sha256), CKR_OK);
	assert_int_equal(pvf.f->C_DigestKey(h, cert), CKR_KEY_HANDLE_INVALID);
	assert_int_equal(pvf.f->C_DigestFinal(h, out, &ol), CKR_OPERATION_NOT_INITIALIZED);
	assert_int_equal(pvf.f->C_DigestInit(h, &sha256), CKR_OK);
	assert_int_equal(pvf.f->C_DigestKey(h, priv), CKR_KEY_INDIGESTIBLE);
	assert_int_equal(pvf.f->C_DigestFinal(h, out, &ol), CKR_OPERATION_NOT_INITIALIZED);
	assert_int_equal(pvf.f->C_DigestInit(h, &sha256), CKR_OK);
	assert_int_equal(pvf.f->C_DigestKey(h, 0x7fff1234), CKR_KEY_HANDLE_INVALID);
	/* the session goes away with its digest */
	assert_int_equal(pvf.f->C_DigestInit(h, &sha256), CKR_OK);
	assert_int_equal(pvf.f->C_CloseSession(h), CKR_OK);
	assert_int_equal(pvf.f->C_DigestUpdate(h, data, 4), CKR_SESSION_HANDLE_INVALID);
	pvf.f->C_Finalize(NULL);
	assert_int_equal(pvf.f->C_DigestInit(h, &sha256), CKR_CRYPTOKI_NOT_INITIALIZED);
}

/* A digest and a signature at once on one session (separate operation
 * states); C_DigestKey on the value of an ECDH-derived secret key equals
 * the hash of that value. */
static void
test_digest_beside_sign_and_key(void **state)
{
	static uint8_t part1[] = "digest and sign ", part2[] = "on one session";
	CK_MECHANISM sha384 = {CKM_SHA384, NULL, 0}, ecdsa = {CKM_ECDSA_SHA384, NULL, 0};
	uint8_t all[64], dg[48], want[48], sig[96], val[64], peer_pt[65], *pt = NULL;
	CK_ULONG dl = sizeof(dg), sl = sizeof(sig);
	unsigned int wl = 0;
	CK_SESSION_HANDLE h;
	CK_OBJECT_HANDLE p384, ecdh, secret = CK_INVALID_HANDLE;
	EVP_PKEY *peer;
	EVP_MD_CTX *v;
	ECDSA_SIG *es;
	uint8_t *der = NULL;
	size_t alen = 0, ptl;
	int derlen;

	(void)state;
	pvf_init();
	h = pvf_session(true);
	p384 = pvf_find(h, CKO_PRIVATE_KEY, ID_P384);
	assert_int_equal(pvf.f->C_DigestInit(h, &sha384), CKR_OK);
	assert_int_equal(pvf.f->C_SignInit(h, &ecdsa, p384), CKR_OK);
	assert_int_equal(pvf.f->C_DigestUpdate(h, part1, sizeof(part1) - 1), CKR_OK);
	assert_int_equal(pvf.f->C_SignUpdate(h, part1, sizeof(part1) - 1), CKR_OK);
	assert_int_equal(pvf.f->C_DigestUpdate(h, part2, sizeof(part2) - 1), CKR_OK);
	assert_int_equal(pvf.f->C_SignUpdate(h, part2, sizeof(part2) - 1), CKR_OK);
	assert_int_equal(pvf.f->C_SignFinal(h, sig, &sl), CKR_OK);
	assert_int_equal(pvf.f->C_DigestFinal(h, dg, &dl), CKR_OK);
	memcpy(all, part1, sizeof(part1) - 1);
	alen = sizeof(part1) - 1;
	memcpy(all + alen, part2, sizeof(part2) - 1);
	alen += sizeof(part2) - 1;
	assert_int_equal(EVP_Digest(all, alen, want, &wl, EVP_sha384(), NULL), 1);
	assert_int_equal(dl, 48);
	assert_memory_equal(dg, want, 48);
	/* the signature is over the same data */
	assert_int_equal(sl, 96);
	es = ECDSA_SIG_new();
	ECDSA_SIG_set0(es, BN_bin2bn(sig, 48, NULL), BN_bin2bn(sig + 48, 48, NULL));
	derlen = i2d_ECDSA_SIG(es, &der);
	ECDSA_SIG_free(es);
	v = EVP_MD_CTX_new();
	assert_int_equal(EVP_DigestVerifyInit(v, NULL, EVP_sha384(), NULL, pvf.pub[3]), 1);
	assert_int_equal(EVP_DigestVerify(v, der, (size_t)derlen, all, alen), 1);
	EVP_MD_CTX_free(v);
	OPENSSL_free(der);

	/* C_DigestKey of a secret key derived with 9D (ECDH) */
	ecdh = pvf_find(h, CKO_PRIVATE_KEY, ID_ECDH);
	peer = fx_soft_key("P-256");
	ptl = EVP_PKEY_get1_encoded_public_key(peer, &pt);
	assert_int_equal(ptl, 65);
	memcpy(peer_pt, pt, 65);
	OPENSSL_free(pt);
	CK_ECDH1_DERIVE_PARAMS ep = {CKD_NULL, 0, NULL, 65, peer_pt};
	CK_MECHANISM dm = {CKM_ECDH1_DERIVE, &ep, sizeof(ep)};
	CK_OBJECT_CLASS sk = CKO_SECRET_KEY;
	CK_KEY_TYPE gen = CKK_GENERIC_SECRET;
	CK_BBOOL no = CK_FALSE, yes = CK_TRUE;
	CK_ATTRIBUTE tpl[] = {{CKA_CLASS, &sk, sizeof(sk)},
	                      {CKA_KEY_TYPE, &gen, sizeof(gen)},
	                      {CKA_SENSITIVE, &no, sizeof(no)},
	                      {CKA_EXTRACTABLE, &yes, sizeof(yes)}};
	assert_int_equal(pvf.f->C_DeriveKey(h, &dm, ecdh, tpl, 4, &secret), CKR_OK);
	CK_ATTRIBUTE va = {CKA_VALUE, val, sizeof(val)};
	assert_int_equal(pvf.f->C_GetAttributeValue(h, secret, &va, 1), CKR_OK);
	assert_int_equal(va.ulValueLen, 32);
	assert_int_equal(EVP_Digest(val, 32, want, &wl, EVP_sha384(), NULL), 1);
	assert_int_equal(pvf.f->C_DigestInit(h, &sha384), CKR_OK);
	assert_int_equal(pvf.f->C_DigestKey(h, secret), CKR_OK);
	dl = sizeof(dg);
	assert_int_equal(pvf.f->C_DigestFinal(h, dg, &dl), CKR_OK);
	assert_memory_equal(dg, want, 48);
	EVP_PKEY_free(peer);
	pvf.f->C_Finalize(NULL);
}

/* Waits (bounded) until the card is idle: no APDU for 300 ms (the token's
 * background checks after opening are done). */
static long long
card_idle(void)
{
	long long last = pvf_card_apdus(), now;
	struct timespec ts = {0, 100 * 1000 * 1000};
	int quiet = 0;

	for (int i = 0; i < 100 && quiet < 3; i++) {
		nanosleep(&ts, NULL);
		now = pvf_card_apdus();
		quiet = now == last ? quiet + 1 : 0;
		last = now;
	}
	return last;
}

/* A PIN outside the token's length range: CKR_PIN_INCORRECT (not
 * CKR_PIN_LEN_RANGE, which C_Login may not return), no APDU sent (no
 * VERIFY, no try spent), CKF_USER_PIN_COUNT_LOW until the right PIN
 * then works. */
static void
test_login_pin_length(void **state)
{
	CK_TOKEN_INFO ti;
	CK_SESSION_HANDLE h;
	long long before, after;
	char longpin[80];

	(void)state;
	pvf_init();
	h = pvf_session(false);
	assert_int_equal(pvf.f->C_GetTokenInfo(pvf.slot, &ti), CKR_OK);
	assert_true(ti.ulMinPinLen > 2);
	assert_true(ti.ulMaxPinLen < sizeof(longpin));
	memset(longpin, '1', sizeof(longpin));
	before = card_idle();
	assert_true(before >= 0);
	assert_int_equal(pvf.f->C_Login(h, CKU_USER, (CK_UTF8CHAR_PTR) "12", 2), CKR_PIN_INCORRECT);
	assert_int_equal(pvf.f->C_Login(h, CKU_USER, (CK_UTF8CHAR_PTR)longpin, ti.ulMaxPinLen + 1),
	                 CKR_PIN_INCORRECT);
	assert_int_equal(pvf.f->C_Login(h, CKU_USER, (CK_UTF8CHAR_PTR)longpin, 0),
	                 CKR_PIN_INCORRECT);
	after = pvf_card_apdus();
	assert_int_equal(after, before);
	/* "an incorrect user login PIN has been entered at least once since the
	 * last successful authentication" (PKCS#11 3.0, CK_TOKEN_INFO): COUNT_LOW,
	 * although the card's counter is untouched; not FINAL_TRY */
	assert_int_equal(pvf.f->C_GetTokenInfo(pvf.slot, &ti), CKR_OK);
	assert_true(ti.flags & CKF_USER_PIN_COUNT_LOW);
	assert_false(ti.flags & (CKF_USER_PIN_FINAL_TRY | CKF_USER_PIN_LOCKED));
	assert_int_equal(pvf.f->C_Login(h, CKU_USER, (CK_UTF8CHAR_PTR)PVF_PIN, strlen(PVF_PIN)),
	                 CKR_OK);
	assert_int_equal(pvf.f->C_GetTokenInfo(pvf.slot, &ti), CKR_OK);
	assert_false(ti.flags & CKF_USER_PIN_COUNT_LOW);
	pvf.f->C_Finalize(NULL);
}

static bool
ecdsa_verifies(EVP_PKEY *pub, const uint8_t *tbs, size_t tbs_len, const uint8_t *sig, size_t n)
{
	ECDSA_SIG *es = ECDSA_SIG_new();
	EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new(pub, NULL);
	uint8_t *der = NULL;
	int derlen;
	bool ok;

	ECDSA_SIG_set0(es, BN_bin2bn(sig, (int)n / 2, NULL),
	               BN_bin2bn(sig + n / 2, (int)n / 2, NULL));
	derlen = i2d_ECDSA_SIG(es, &der);
	ok = derlen > 0 && EVP_PKEY_verify_init(ctx) == 1 &&
	     EVP_PKEY_verify(ctx, der, (size_t)derlen, tbs, tbs_len) == 1;
	OPENSSL_free(der);
	ECDSA_SIG_free(es);
	EVP_PKEY_CTX_free(ctx);
	return ok;
}

/* Raw CKM_ECDSA: a digest, truncated to the key's order (P-384 takes the
 * leftmost 48 bytes of a 64-byte input); longer than the longest digest is
 * CKR_DATA_LEN_RANGE (today's main: CKR_ARGUMENTS_BAD), single- and
 * multi-part, signing and verifying. */
static void
test_ecdsa_input_length(void **state)
{
	CK_MECHANISM m = {CKM_ECDSA, NULL, 0};
	uint8_t in[200], sig[96];
	CK_ULONG sl;
	CK_SESSION_HANDLE h;
	CK_OBJECT_HANDLE key, pub;

	(void)state;
	for (size_t i = 0; i < sizeof(in); i++)
		in[i] = (uint8_t)(i * 7 + 1);
	pvf_init();
	h = pvf_session(true);
	key = pvf_find(h, CKO_PRIVATE_KEY, ID_P384);
	pub = pvf_find(h, CKO_PUBLIC_KEY, ID_P384);
	for (size_t len = 20; len <= 64; len += 4) {
		sl = sizeof(sig);
		assert_int_equal(pvf.f->C_SignInit(h, &m, key), CKR_OK);
		assert_int_equal(pvf.f->C_Sign(h, in, len, sig, &sl), CKR_OK);
		assert_int_equal(sl, 96);
		assert_true(ecdsa_verifies(pvf.pub[3], in, len, sig, sl));
	}
	sl = sizeof(sig);
	assert_int_equal(pvf.f->C_SignInit(h, &m, key), CKR_OK);
	assert_int_equal(pvf.f->C_Sign(h, in, 65, sig, &sl), CKR_DATA_LEN_RANGE);
	sl = sizeof(sig);
	assert_int_equal(pvf.f->C_SignInit(h, &m, key), CKR_OK);
	assert_int_equal(pvf.f->C_SignUpdate(h, in, 40), CKR_OK);
	assert_int_equal(pvf.f->C_SignUpdate(h, in + 40, 40), CKR_OK);
	assert_int_equal(pvf.f->C_SignFinal(h, sig, &sl), CKR_DATA_LEN_RANGE);
	/* the error ended the operation */
	assert_int_equal(pvf.f->C_SignFinal(h, sig, &sl), CKR_OPERATION_NOT_INITIALIZED);
	assert_int_equal(pvf.f->C_VerifyInit(h, &m, pub), CKR_OK);
	assert_int_equal(pvf.f->C_Verify(h, in, 65, sig, 96), CKR_DATA_LEN_RANGE);
	pvf.f->C_Finalize(NULL);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test_teardown(test_setup_group_ok, pvf_fin),
	        cmocka_unit_test_teardown(test_pss_every_salt_length, pvf_fin),
	        cmocka_unit_test_teardown(test_pss_params, pvf_fin),
	        cmocka_unit_test_teardown(test_unique_id, pvf_fin),
	        cmocka_unit_test_teardown(test_rng, pvf_fin),
	        cmocka_unit_test_teardown(test_digest_values, pvf_fin),
	        cmocka_unit_test_teardown(test_digest_misuse, pvf_fin),
	        cmocka_unit_test_teardown(test_digest_beside_sign_and_key, pvf_fin),
	        cmocka_unit_test_teardown(test_login_pin_length, pvf_fin),
	        cmocka_unit_test_teardown(test_ecdsa_input_length, pvf_fin),
	};

	return cmocka_run_group_tests(tests, pvf_setup, pvf_teardown);
}
