/* Every C_* function of the BUILT module answers only the return values
 * PKCS#11 3.0 lists for it (base specification section 5 plus 5.1's
 * common ones; the table is pkcs11/rv.h), before C_Initialize, on a
 * healthy card, and under each fault the in-process virtual reader can
 * inject into the card in the middle of a session: garbage, short and
 * empty answers, a mute card, a stall that ends after 300 ms, the card
 * taken out (and put back). All 92 functions are called in each phase,
 * with arguments that make them reach the card where they can (sign,
 * decrypt, derive, login, PIN change), plus the misuses that used to
 * answer codes outside the lists (a PIN of impossible length, a single-part
 * call on a multi-part operation, a derive with a key that cannot derive).
 * Issue 8 §4 saw C_Login return CKR_BUFFER_TOO_SMALL during garbage answers. */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include <openssl/rsa.h>

#include "../../pkcs11/rv.h"
#include "p11_vcard_fixture.h"

#define ALLOWED(name, params, args) static const CK_RV al_##name[] = {P11_RV_##name};
P11_RV_FUNCTIONS(ALLOWED)
#undef ALLOWED
#define INDEX(name, params, args) IX_##name,
enum { P11_RV_FUNCTIONS(INDEX) NFN };
#undef INDEX
#define NAME(name, params, args) #name,
static const char *const fn_names[NFN] = {P11_RV_FUNCTIONS(NAME)};
#undef NAME

static bool called[NFN];
static unsigned violations;
static const char *phase = "";

static CK_RV
check(int idx, const CK_RV *allowed, size_t n, CK_RV rv)
{
	called[idx] = true;
	if (getenv("TK_P11_RV_VERBOSE") != NULL) /* what each call answered */
		fprintf(stderr, "[%s] %s: 0x%lx\n", phase, fn_names[idx], (unsigned long)rv);
	for (size_t i = 0; i < n; i++)
		if (allowed[i] == rv)
			return rv;
	fprintf(stderr, "[%s] %s returned 0x%lx: not one of its return values\n", phase,
	        fn_names[idx], (unsigned long)rv);
	violations++;
	return rv;
}

/* Call a function through the module's 3.0 list and check its answer. */
#define CALL(name, ...)                                                                            \
	check(IX_##name, al_##name, sizeof(al_##name) / sizeof(al_##name[0]),                      \
	      pvf.f->name(__VA_ARGS__))

static uint8_t pin[] = PVF_PIN;
#define PINLEN (sizeof(pin) - 1)

struct keys {
	CK_OBJECT_HANDLE rsa, pinall, ecdh, p384, p384_pub, cert;
	uint8_t ct[256]; /* RSA PKCS#1 v1.5 ciphertext for 9A */
};

static void
keys_find(CK_SESSION_HANDLE h, struct keys *k)
{
	EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new(pvf.pub[0], NULL);
	uint8_t msg[] = "secret";
	size_t cl = sizeof(k->ct);

	k->rsa = pvf_find(h, CKO_PRIVATE_KEY, 0x01);
	k->pinall = pvf_find(h, CKO_PRIVATE_KEY, 0x02);
	k->ecdh = pvf_find(h, CKO_PRIVATE_KEY, 0x03);
	k->p384 = pvf_find(h, CKO_PRIVATE_KEY, 0x04);
	k->p384_pub = pvf_find(h, CKO_PUBLIC_KEY, 0x04);
	k->cert = pvf_find(h, CKO_CERTIFICATE, 0x04);
	assert_true(k->rsa && k->pinall && k->ecdh && k->p384 && k->p384_pub && k->cert);
	assert_int_equal(EVP_PKEY_encrypt_init(ctx), 1);
	assert_int_equal(EVP_PKEY_CTX_set_rsa_padding(ctx, RSA_PKCS1_PADDING), 1);
	assert_int_equal(EVP_PKEY_encrypt(ctx, k->ct, &cl, msg, sizeof(msg)), 1);
	EVP_PKEY_CTX_free(ctx);
}

/* Every function but C_Initialize and C_Finalize, on session h (which
 * may name nothing). */
static void
call_all(CK_SESSION_HANDLE h, struct keys *k)
{
	uint8_t buf[1024], sig[512], hash[64] = {1, 2, 3}, label[32], peer[65];
	CK_ULONG n, bl;
	CK_INFO info;
	CK_SLOT_ID slots[8], ev;
	CK_SLOT_INFO si;
	CK_TOKEN_INFO ti;
	CK_MECHANISM_TYPE mechs[64];
	CK_MECHANISM_INFO mi;
	CK_SESSION_INFO sinfo;
	CK_SESSION_HANDLE h2 = CK_INVALID_HANDLE;
	CK_OBJECT_HANDLE objs[16], o1 = 0, o2 = 0;
	CK_FUNCTION_LIST_PTR fl;
	CK_INTERFACE ifs[4];
	CK_INTERFACE_PTR ifp;
	CK_ATTRIBUTE val = {CKA_VALUE, buf, sizeof(buf)};
	CK_ATTRIBUTE lab = {CKA_LABEL, label, 4};
	CK_OBJECT_CLASS data_cls = CKO_DATA;
	CK_ATTRIBUTE data_tpl[] = {{CKA_CLASS, &data_cls, sizeof(data_cls)}};
	CK_OBJECT_CLASS sk = CKO_SECRET_KEY;
	CK_ATTRIBUTE sk_tpl[] = {{CKA_CLASS, &sk, sizeof(sk)}};
	CK_MECHANISM ecdsa = {CKM_ECDSA, NULL, 0}, ecdsa256 = {CKM_ECDSA_SHA256, NULL, 0};
	CK_MECHANISM rsa_pkcs = {CKM_RSA_PKCS, NULL, 0}, sha256 = {CKM_SHA256, NULL, 0};
	CK_MECHANISM aes_gen = {CKM_AES_KEY_GEN, NULL, 0}, ec_gen = {CKM_EC_KEY_PAIR_GEN, NULL, 0};
	CK_MECHANISM aes = {CKM_AES_ECB, NULL, 0};
	CK_ECDH1_DERIVE_PARAMS ep = {CKD_NULL, 0, NULL, sizeof(peer), peer};
	CK_MECHANISM ecdh = {CKM_ECDH1_DERIVE, &ep, sizeof(ep)};
	EVP_PKEY *pk = fx_soft_key("P-256");
	uint8_t *pt = NULL;

	assert_int_equal(EVP_PKEY_get1_encoded_public_key(pk, &pt), sizeof(peer));
	memcpy(peer, pt, sizeof(peer));
	OPENSSL_free(pt);
	EVP_PKEY_free(pk);
	memset(label, ' ', sizeof(label));

	/* general, slots, token */
	CALL(C_GetInfo, &info);
	n = 8;
	CALL(C_GetSlotList, CK_TRUE, slots, &n);
	n = 0;
	CALL(C_GetSlotList, CK_FALSE, slots, &n); /* too small */
	CALL(C_GetSlotInfo, pvf.slot, &si);
	CALL(C_GetTokenInfo, pvf.slot, &ti);
	CALL(C_WaitForSlotEvent, CKF_DONT_BLOCK, &ev, NULL);
	n = 64;
	CALL(C_GetMechanismList, pvf.slot, mechs, &n);
	CALL(C_GetMechanismInfo, pvf.slot, CKM_ECDSA, &mi);
	CALL(C_InitToken, pvf.slot, pin, PINLEN, label);
	CALL(C_GetFunctionList, &fl);
	n = 4;
	CALL(C_GetInterfaceList, ifs, &n);
	CALL(C_GetInterface, NULL, NULL, &ifp, 0);

	/* sessions and login */
	CALL(C_OpenSession, pvf.slot, CKF_SERIAL_SESSION, NULL, NULL, &h2);
	CALL(C_GetSessionInfo, h, &sinfo);
	CALL(C_Login, h, CKU_USER, pin, PINLEN);
	CALL(C_Login, h, CKU_USER, pin, 2);
	CALL(C_LoginUser, h, CKU_USER, pin, PINLEN, label, 1);
	CALL(C_GetOperationState, h, NULL, &bl);
	CALL(C_SetOperationState, h, buf, 4, 0, 0);

	/* objects */
	CALL(C_FindObjectsInit, h, NULL, 0);
	CALL(C_FindObjects, h, objs, 16, &n);
	CALL(C_FindObjectsFinal, h);
	CALL(C_GetAttributeValue, h, k->cert, &val, 1);
	CALL(C_GetObjectSize, h, k->cert, &n);
	CALL(C_SetAttributeValue, h, k->cert, &lab, 1);
	CALL(C_CreateObject, h, data_tpl, 1, &o1);
	CALL(C_CopyObject, h, k->cert, NULL, 0, &o1);
	CALL(C_DestroyObject, h, k->cert);
	CALL(C_GenerateKey, h, &aes_gen, NULL, 0, &o1);
	CALL(C_GenerateKeyPair, h, &ec_gen, NULL, 0, NULL, 0, &o1, &o2);

	/* signatures on the card: single part, multi-part with a single-part
	 * call in between, RSA, the PIN-always key with its context login */
	CALL(C_SignInit, h, &ecdsa, k->p384);
	bl = sizeof(sig);
	CALL(C_Sign, h, hash, 48, sig, &bl);
	CALL(C_SignInit, h, &ecdsa256, k->p384);
	CALL(C_SignUpdate, h, hash, 10);
	bl = sizeof(sig);
	CALL(C_Sign, h, hash, 10, sig, &bl);
	CALL(C_SignFinal, h, sig, &bl);
	CALL(C_SignInit, h, &rsa_pkcs, k->rsa);
	bl = sizeof(sig);
	CALL(C_Sign, h, hash, 32, sig, &bl);
	CALL(C_SignInit, h, &ecdsa, k->pinall);
	CALL(C_Login, h, CKU_CONTEXT_SPECIFIC, pin, PINLEN);
	bl = sizeof(sig);
	CALL(C_Sign, h, hash, 32, sig, &bl);
	CALL(C_SignRecoverInit, h, &rsa_pkcs, k->rsa);
	CALL(C_SignRecover, h, hash, 32, sig, &bl);

	/* verification (host side) */
	CALL(C_VerifyInit, h, &ecdsa, k->p384_pub);
	CALL(C_Verify, h, hash, 48, sig, 96);
	CALL(C_VerifyInit, h, &ecdsa256, k->p384_pub);
	CALL(C_VerifyUpdate, h, hash, 10);
	CALL(C_VerifyFinal, h, sig, 96);
	CALL(C_VerifyRecoverInit, h, &ecdsa, k->p384_pub);
	CALL(C_VerifyRecover, h, sig, 96, buf, &bl);

	/* decryption on the card */
	CALL(C_DecryptInit, h, &rsa_pkcs, k->rsa);
	bl = sizeof(buf);
	CALL(C_Decrypt, h, k->ct, sizeof(k->ct), buf, &bl);
	CALL(C_DecryptInit, h, &rsa_pkcs, k->rsa);
	bl = sizeof(buf);
	CALL(C_DecryptUpdate, h, k->ct, sizeof(k->ct), buf, &bl);
	bl = sizeof(buf);
	CALL(C_DecryptFinal, h, buf, &bl);
	CALL(C_EncryptInit, h, &aes, k->rsa);
	CALL(C_Encrypt, h, hash, 16, buf, &bl);
	CALL(C_EncryptUpdate, h, hash, 16, buf, &bl);
	CALL(C_EncryptFinal, h, buf, &bl);

	/* digests (host side) */
	CALL(C_DigestInit, h, &sha256);
	bl = sizeof(buf);
	CALL(C_Digest, h, hash, 10, buf, &bl);
	CALL(C_DigestInit, h, &sha256);
	CALL(C_DigestUpdate, h, hash, 10);
	bl = sizeof(buf);
	CALL(C_Digest, h, hash, 10, buf, &bl);
	CALL(C_DigestKey, h, k->cert);
	CALL(C_DigestFinal, h, buf, &bl);
	CALL(C_DigestEncryptUpdate, h, hash, 16, buf, &bl);
	CALL(C_DecryptDigestUpdate, h, hash, 16, buf, &bl);
	CALL(C_SignEncryptUpdate, h, hash, 16, buf, &bl);
	CALL(C_DecryptVerifyUpdate, h, hash, 16, buf, &bl);

	/* keys: ECDH on the card, with a key that derives and one that cannot */
	CALL(C_DeriveKey, h, &ecdh, k->ecdh, sk_tpl, 1, &o1);
	CALL(C_DeriveKey, h, &ecdh, k->pinall, sk_tpl, 1, &o1);
	CALL(C_WrapKey, h, &aes, k->rsa, k->rsa, buf, &bl);
	CALL(C_UnwrapKey, h, &aes, k->rsa, buf, 16, sk_tpl, 1, &o1);
	CALL(C_GenerateRandom, h, buf, 32);
	CALL(C_SeedRandom, h, buf, 32);

	/* PINs: the same PIN again (no try is spent on a wrong one) */
	CALL(C_SetPIN, h, pin, PINLEN, pin, PINLEN);
	CALL(C_InitPIN, h, pin, PINLEN);

	/* message-based functions, legacy and cancel */
	CALL(C_MessageEncryptInit, h, &aes, k->rsa);
	CALL(C_EncryptMessage, h, NULL, 0, NULL, 0, hash, 16, buf, &bl);
	CALL(C_EncryptMessageBegin, h, NULL, 0, NULL, 0);
	CALL(C_EncryptMessageNext, h, NULL, 0, hash, 16, buf, &bl, 0);
	CALL(C_MessageEncryptFinal, h);
	CALL(C_MessageDecryptInit, h, &aes, k->rsa);
	CALL(C_DecryptMessage, h, NULL, 0, NULL, 0, hash, 16, buf, &bl);
	CALL(C_DecryptMessageBegin, h, NULL, 0, NULL, 0);
	CALL(C_DecryptMessageNext, h, NULL, 0, hash, 16, buf, &bl, 0);
	CALL(C_MessageDecryptFinal, h);
	CALL(C_MessageSignInit, h, &ecdsa, k->p384);
	CALL(C_SignMessage, h, NULL, 0, hash, 32, sig, &bl);
	CALL(C_SignMessageBegin, h, NULL, 0);
	CALL(C_SignMessageNext, h, NULL, 0, hash, 32, sig, &bl);
	CALL(C_MessageSignFinal, h);
	CALL(C_MessageVerifyInit, h, &ecdsa, k->p384_pub);
	CALL(C_VerifyMessage, h, NULL, 0, hash, 32, sig, 96);
	CALL(C_VerifyMessageBegin, h, NULL, 0);
	CALL(C_VerifyMessageNext, h, NULL, 0, hash, 32, sig, 96);
	CALL(C_MessageVerifyFinal, h);
	CALL(C_GetFunctionStatus, h);
	CALL(C_CancelFunction, h);
	CALL(C_SessionCancel, h, CKF_SIGN);

	/* and out */
	CALL(C_Logout, h);
	CALL(C_CloseSession, h2);
	CALL(C_CloseAllSessions, pvf.slot);
}

static void
reset_called(void)
{
	memset(called, 0, sizeof(called));
	violations = 0;
}

static void
assert_all_called(void)
{
	for (int i = 0; i < NFN; i++) {
		if (!called[i])
			fprintf(stderr, "%s was not called\n", fn_names[i]);
		assert_true(called[i]);
	}
}

static void
test_not_initialized(void **state)
{
	struct keys k;

	(void)state;
	memset(&k, 0, sizeof(k));
	reset_called();
	phase = "before C_Initialize";
	pvf.slot = 1;
	call_all(1, &k);
	CALL(C_Finalize, NULL);
	CALL(C_Initialize, NULL);
	CALL(C_Finalize, NULL);
	assert_all_called();
	assert_int_equal(violations, 0);
}

/* A healthy phase, or one with a fault injected after the session is set
 * up; the fault ends with end_spec before C_Finalize. */
static void
run_phase(const char *name, const char *fault, const char *end_spec)
{
	CK_SESSION_HANDLE h;
	struct keys k;

	reset_called();
	phase = name;
	CALL(C_Initialize, NULL);
	pvf_init_slot();
	h = pvf_session(true);
	keys_find(h, &k);
	if (fault != NULL)
		assert_int_equal(pvf_ctl(fault, NULL, 0), 0);
	call_all(h, &k);
	CALL(C_Initialize, NULL); /* already */
	if (end_spec != NULL)
		assert_int_equal(pvf_ctl(end_spec, NULL, 0), 0);
	CALL(C_Finalize, NULL);
	assert_all_called();
	assert_int_equal(violations, 0);
}

static void
test_healthy(void **state)
{
	(void)state;
	run_phase("healthy card", NULL, NULL);
}

static void
test_fault_garbage(void **state)
{
	(void)state;
	run_phase("garbage answers", "garbage", "none");
}

static void
test_fault_short(void **state)
{
	(void)state;
	run_phase("1-byte answers", "short", "none");
}

static void
test_fault_empty(void **state)
{
	(void)state;
	run_phase("empty answers", "empty", "none");
}

static void
test_fault_mute(void **state)
{
	(void)state;
	run_phase("mute card", "mute", "none");
}

static void
test_fault_remove(void **state)
{
	(void)state;
	run_phase("card removed", "remove", "insert");
}

/* A stall that someone ends after 300 ms: the call that met it goes on. */
static void *
end_stall(void *arg)
{
	struct timespec ts = {0, 300 * 1000 * 1000};

	(void)arg;
	nanosleep(&ts, NULL);
	pvf_ctl("none", NULL, 0);
	return NULL;
}

static void
test_fault_stall(void **state)
{
	CK_SESSION_HANDLE h;
	struct keys k;
	pthread_t t;

	(void)state;
	reset_called();
	phase = "stall for 300 ms";
	CALL(C_Initialize, NULL);
	pvf_init_slot();
	h = pvf_session(true);
	keys_find(h, &k);
	assert_int_equal(pvf_ctl("stall", NULL, 0), 0);
	assert_int_equal(pthread_create(&t, NULL, end_stall, NULL), 0);
	call_all(h, &k);
	pthread_join(t, NULL);
	CALL(C_Finalize, NULL);
	assert_all_called();
	assert_int_equal(violations, 0);
}

/* C_Login(CKU_SO) keeps the PUK (PIV cannot check it without using it);
 * a wrong one shows at C_InitPIN, which may not answer CKR_PIN_INCORRECT. */
static void
test_initpin_wrong_puk(void **state)
{
	uint8_t wrong[] = "87654321";
	CK_SESSION_HANDLE h;
	CK_RV rv;

	(void)state;
	reset_called();
	phase = "C_InitPIN after a wrong PUK";
	pvf_init();
	h = pvf_session(false);
	assert_int_equal(CALL(C_Login, h, CKU_SO, wrong, sizeof(wrong) - 1), CKR_OK);
	rv = CALL(C_InitPIN, h, pin, PINLEN);
	assert_int_not_equal(rv, CKR_OK);
	CALL(C_Finalize, NULL);
	assert_int_equal(violations, 0);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test_teardown(test_not_initialized, pvf_fin),
	        cmocka_unit_test_teardown(test_healthy, pvf_fin),
	        cmocka_unit_test_teardown(test_fault_garbage, pvf_fin),
	        cmocka_unit_test_teardown(test_fault_short, pvf_fin),
	        cmocka_unit_test_teardown(test_fault_empty, pvf_fin),
	        cmocka_unit_test_teardown(test_fault_mute, pvf_fin),
	        cmocka_unit_test_teardown(test_fault_stall, pvf_fin),
	        cmocka_unit_test_teardown(test_fault_remove, pvf_fin),
	        cmocka_unit_test_teardown(test_initpin_wrong_puk, pvf_fin),
	};

	return cmocka_run_group_tests(tests, pvf_setup, pvf_teardown);
}
