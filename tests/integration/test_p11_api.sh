#!/usr/bin/env bash
# tokenkit-pkcs11.so through the PKCS#11 API itself (a small C client built
# here), against the provisioned virtual card under real pcscd: attribute
# rules, find, login states, operation state rules, mechanism/parameter
# errors, ECDH session objects, card removal and return (while the card is
# out its session answers CKR_DEVICE_REMOVED and the slot has no token;
# C_WaitForSlotEvent sees removal and insertion; the same card back: the old
# session goes on, not logged in, same key handle), and two threads signing
# on two sessions. (A different card, and the grace time: test_p11_recovery.sh.)
#
# Against the sanitizer build: TK_BUILD=build-asan and
# P11CHECK_WRAP="env LD_PRELOAD=$(clang-14 -print-file-name=libclang_rt.asan-x86_64.so)"
# (the client itself is built without sanitizers).
TK_P11_LIB=1 source "$(dirname "${BASH_SOURCE[0]}")/test_p11_pkcs11tool.sh"
p11_require
tk_require_cmd cc
tk_env_start
tk_card_start 0
p11_provision
cd "$TK_TMP"

cat >p11check.c <<'EOF'
#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <pkcs11-helper-1.0/pkcs11.h>

static CK_FUNCTION_LIST_3_0_PTR p;
static int fails;
#define CHECK(expr, want)                                                                   \
	do {                                                                                \
		CK_RV r_ = (expr);                                                          \
		if (r_ != (CK_RV)(want)) {                                                  \
			printf("FAIL line %d: %s = 0x%lx, want 0x%lx\n", __LINE__, #expr,      \
			       (unsigned long)r_, (unsigned long)(want));                   \
			fails++;                                                            \
		}                                                                           \
	} while (0)
#define TRUE_(c)                                                                            \
	do {                                                                                \
		if (!(c)) {                                                                 \
			printf("FAIL line %d: %s\n", __LINE__, #c);                          \
			fails++;                                                            \
		}                                                                           \
	} while (0)

static CK_SLOT_ID slot;
static const char *pin = "123456";

static CK_OBJECT_HANDLE
find1(CK_SESSION_HANDLE s, CK_OBJECT_CLASS cls, unsigned char id)
{
	CK_ATTRIBUTE t[] = {{CKA_CLASS, &cls, sizeof(cls)}, {CKA_ID, &id, 1}};
	CK_OBJECT_HANDLE h[4];
	CK_ULONG n = 0;

	CHECK(p->C_FindObjectsInit(s, t, 2), CKR_OK);
	CHECK(p->C_FindObjectsInit(s, t, 2), CKR_OPERATION_ACTIVE);
	CHECK(p->C_FindObjects(s, h, 4, &n), CKR_OK);
	CHECK(p->C_FindObjectsFinal(s), CKR_OK);
	CHECK(p->C_FindObjectsFinal(s), CKR_OPERATION_NOT_INITIALIZED);
	TRUE_(n == 1);
	return n == 1 ? h[0] : CK_INVALID_HANDLE;
}

static void
attrs(CK_SESSION_HANDLE s)
{
	CK_OBJECT_HANDLE cert = find1(s, CKO_CERTIFICATE, 2), pub = find1(s, CKO_PUBLIC_KEY, 2);
	CK_OBJECT_HANDLE priv = find1(s, CKO_PRIVATE_KEY, 2), ecpriv = find1(s, CKO_PRIVATE_KEY, 1);
	unsigned char buf[4096], small[4], mod[512], pubmod[512];
	CK_BBOOL b = 9;
	CK_ULONG ul = 0;
	CK_ATTRIBUTE t[4];

	/* sensitive, unknown, too small and fine in one call */
	t[0] = (CK_ATTRIBUTE){CKA_PRIVATE_EXPONENT, buf, sizeof(buf)};
	t[1] = (CK_ATTRIBUTE){CKA_SENSITIVE, &b, sizeof(b)};
	CHECK(p->C_GetAttributeValue(s, priv, t, 2), CKR_ATTRIBUTE_SENSITIVE);
	TRUE_(t[0].ulValueLen == CK_UNAVAILABLE_INFORMATION);
	TRUE_(t[1].ulValueLen == 1 && b == CK_TRUE);
	t[0] = (CK_ATTRIBUTE){0x7fff1234UL, buf, sizeof(buf)};
	t[1] = (CK_ATTRIBUTE){CKA_MODULUS, small, sizeof(small)};
	t[2] = (CK_ATTRIBUTE){CKA_KEY_TYPE, &ul, sizeof(ul)};
	CHECK(p->C_GetAttributeValue(s, priv, t, 3), CKR_ATTRIBUTE_TYPE_INVALID);
	TRUE_(t[0].ulValueLen == CK_UNAVAILABLE_INFORMATION);
	TRUE_(t[1].ulValueLen == CK_UNAVAILABLE_INFORMATION);
	TRUE_(t[2].ulValueLen == sizeof(CK_ULONG) && ul == CKK_RSA);
	t[0] = (CK_ATTRIBUTE){CKA_MODULUS, small, sizeof(small)};
	CHECK(p->C_GetAttributeValue(s, priv, t, 1), CKR_BUFFER_TOO_SMALL);
	TRUE_(t[0].ulValueLen == CK_UNAVAILABLE_INFORMATION);
	/* length query, then the value; the private key's modulus is the public key's */
	t[0] = (CK_ATTRIBUTE){CKA_MODULUS, NULL, 0};
	CHECK(p->C_GetAttributeValue(s, priv, t, 1), CKR_OK);
	TRUE_(t[0].ulValueLen == 256);
	t[0].pValue = mod;
	CHECK(p->C_GetAttributeValue(s, priv, t, 1), CKR_OK);
	t[0] = (CK_ATTRIBUTE){CKA_MODULUS, pubmod, sizeof(pubmod)};
	CHECK(p->C_GetAttributeValue(s, pub, t, 1), CKR_OK);
	TRUE_(t[0].ulValueLen == 256 && memcmp(mod, pubmod, 256) == 0);
	/* key attributes */
	t[0] = (CK_ATTRIBUTE){CKA_EXTRACTABLE, &b, 1};
	CHECK(p->C_GetAttributeValue(s, priv, t, 1), CKR_OK);
	TRUE_(b == CK_FALSE);
	t[0] = (CK_ATTRIBUTE){CKA_ALWAYS_AUTHENTICATE, &b, 1};
	CHECK(p->C_GetAttributeValue(s, priv, t, 1), CKR_OK);
	TRUE_(b == CK_TRUE);
	t[0] = (CK_ATTRIBUTE){CKA_PRIVATE, &b, 1};
	CHECK(p->C_GetAttributeValue(s, priv, t, 1), CKR_OK);
	TRUE_(b == CK_TRUE);
	CHECK(p->C_GetAttributeValue(s, cert, t, 1), CKR_OK);
	TRUE_(b == CK_FALSE);
	t[0] = (CK_ATTRIBUTE){CKA_CERTIFICATE_TYPE, &ul, sizeof(ul)};
	CHECK(p->C_GetAttributeValue(s, cert, t, 1), CKR_OK);
	TRUE_(ul == CKC_X_509);
	t[0] = (CK_ATTRIBUTE){CKA_EC_POINT, buf, sizeof(buf)};
	CHECK(p->C_GetAttributeValue(s, ecpriv, t, 1), CKR_OK);
	TRUE_(t[0].ulValueLen == 67 && buf[0] == 0x04 && buf[1] == 65 && buf[2] == 0x04);
	t[0] = (CK_ATTRIBUTE){CKA_VALUE, buf, sizeof(buf)};
	CHECK(p->C_GetAttributeValue(s, cert, t, 1), CKR_OK);
	TRUE_(t[0].ulValueLen > 100 && buf[0] == 0x30);
	printf("CERTLEN %lu\n", (unsigned long)t[0].ulValueLen);
	fwrite(buf, 1, t[0].ulValueLen, fopen("cert02.der", "wb"));
	CHECK(p->C_GetAttributeValue(s, 0x7ffffff0UL, t, 1), CKR_OBJECT_HANDLE_INVALID);
	/* writes */
	CHECK(p->C_DestroyObject(s, cert), CKR_TOKEN_WRITE_PROTECTED);
	b = CK_TRUE;
	t[0] = (CK_ATTRIBUTE){CKA_LABEL, "x", 1};
	CHECK(p->C_SetAttributeValue(s, cert, t, 1), CKR_TOKEN_WRITE_PROTECTED);
}

static void
sign_rules(CK_SESSION_HANDLE s)
{
	CK_OBJECT_HANDLE ec = find1(s, CKO_PRIVATE_KEY, 1), rsa = find1(s, CKO_PRIVATE_KEY, 2);
	CK_OBJECT_HANDLE dec = find1(s, CKO_PRIVATE_KEY, 3), ecpub = find1(s, CKO_PUBLIC_KEY, 1);
	CK_MECHANISM m = {CKM_ECDSA_SHA256, NULL, 0}, bad = {CKM_RSA_PKCS_OAEP, NULL, 0};
	CK_RSA_PKCS_PSS_PARAMS pss = {CKM_SHA256, CKG_MGF1_SHA256, 999};
	CK_MECHANISM mpss = {CKM_SHA256_RSA_PKCS_PSS, &pss, sizeof(pss)};
	unsigned char sig[512];
	CK_ULONG n;
	const char *msg = "message";

	CHECK(p->C_SignInit(s, &m, rsa), CKR_KEY_TYPE_INCONSISTENT);
	CHECK(p->C_SignInit(s, &bad, rsa), CKR_MECHANISM_INVALID);
	CHECK(p->C_SignInit(s, &mpss, rsa), CKR_MECHANISM_PARAM_INVALID);
	pss.hashAlg = CKM_SHA384;
	pss.sLen = 32;
	CHECK(p->C_SignInit(s, &mpss, rsa), CKR_MECHANISM_PARAM_INVALID);
	CHECK(p->C_SignInit(s, NULL, rsa), CKR_ARGUMENTS_BAD);
	CHECK(p->C_SignInit(s, &m, 0x7ffffff0UL), CKR_KEY_HANDLE_INVALID);
	CHECK(p->C_SignInit(s, &m, ecpub), CKR_KEY_FUNCTION_NOT_PERMITTED);
	{
		CK_MECHANISM d = {CKM_RSA_PKCS, NULL, 0};
		CHECK(p->C_DecryptInit(s, &d, rsa), CKR_KEY_FUNCTION_NOT_PERMITTED);
		CHECK(p->C_DecryptInit(s, &d, dec), CKR_OK);
		n = sizeof(sig);
		CHECK(p->C_Decrypt(s, sig, 10, sig, &n), CKR_ENCRYPTED_DATA_LEN_RANGE);
		CHECK(p->C_Decrypt(s, sig, 256, sig, &n), CKR_OPERATION_NOT_INITIALIZED);
	}
	CHECK(p->C_Sign(s, (CK_BYTE_PTR)msg, 7, sig, &n), CKR_OPERATION_NOT_INITIALIZED);
	CHECK(p->C_Login(s, CKU_CONTEXT_SPECIFIC, (CK_UTF8CHAR_PTR)pin, 6),
	      CKR_OPERATION_NOT_INITIALIZED);
	/* ECDSA: length query and a small buffer keep the operation; success ends it */
	CHECK(p->C_SignInit(s, &m, ec), CKR_OK);
	CHECK(p->C_SignInit(s, &m, ec), CKR_OPERATION_ACTIVE);
	n = 0;
	CHECK(p->C_Sign(s, (CK_BYTE_PTR)msg, 7, NULL, &n), CKR_OK);
	TRUE_(n == 64);
	n = 10;
	CHECK(p->C_Sign(s, (CK_BYTE_PTR)msg, 7, sig, &n), CKR_BUFFER_TOO_SMALL);
	TRUE_(n == 64);
	n = sizeof(sig);
	CHECK(p->C_Sign(s, (CK_BYTE_PTR)msg, 7, sig, &n), CKR_OK);
	TRUE_(n == 64);
	n = sizeof(sig);
	CHECK(p->C_Sign(s, (CK_BYTE_PTR)msg, 7, sig, &n), CKR_OPERATION_NOT_INITIALIZED);
	/* verify on the host, single- and multi-part; a wrong signature fails */
	CHECK(p->C_VerifyInit(s, &m, ecpub), CKR_OK);
	CHECK(p->C_Verify(s, (CK_BYTE_PTR)msg, 7, sig, 64), CKR_OK);
	CHECK(p->C_VerifyInit(s, &m, ecpub), CKR_OK);
	CHECK(p->C_VerifyUpdate(s, (CK_BYTE_PTR)msg, 3), CKR_OK);
	CHECK(p->C_VerifyUpdate(s, (CK_BYTE_PTR)msg + 3, 4), CKR_OK);
	CHECK(p->C_VerifyFinal(s, sig, 64), CKR_OK);
	sig[5] ^= 1;
	CHECK(p->C_VerifyInit(s, &m, ecpub), CKR_OK);
	CHECK(p->C_Verify(s, (CK_BYTE_PTR)msg, 7, sig, 64), CKR_SIGNATURE_INVALID);
	/* multi-part signing */
	CHECK(p->C_SignInit(s, &m, ec), CKR_OK);
	CHECK(p->C_SignUpdate(s, (CK_BYTE_PTR)msg, 4), CKR_OK);
	CHECK(p->C_SignUpdate(s, (CK_BYTE_PTR)msg + 4, 3), CKR_OK);
	n = sizeof(sig);
	CHECK(p->C_SignFinal(s, sig, &n), CKR_OK);
	CHECK(p->C_VerifyInit(s, &m, ecpub), CKR_OK);
	CHECK(p->C_Verify(s, (CK_BYTE_PTR)msg, 7, sig, n), CKR_OK);
	/* always-authenticate key: context login after C_SignInit */
	{
		CK_MECHANISM r = {CKM_SHA256_RSA_PKCS, NULL, 0};
		CK_OBJECT_HANDLE rpub = find1(s, CKO_PUBLIC_KEY, 2);

		CHECK(p->C_SignInit(s, &r, rsa), CKR_OK);
		CHECK(p->C_Login(s, CKU_CONTEXT_SPECIFIC, (CK_UTF8CHAR_PTR)pin, 6), CKR_OK);
		n = sizeof(sig);
		CHECK(p->C_Sign(s, (CK_BYTE_PTR)msg, 7, sig, &n), CKR_OK);
		TRUE_(n == 256);
		CHECK(p->C_VerifyInit(s, &r, rpub), CKR_OK);
		CHECK(p->C_Verify(s, (CK_BYTE_PTR)msg, 7, sig, n), CKR_OK);
		/* raw RSA-PKCS: DigestInfo too long for nothing, data too long → DATA_LEN_RANGE */
		r.mechanism = CKM_RSA_PKCS;
		CHECK(p->C_SignInit(s, &r, rsa), CKR_OK);
		n = sizeof(sig);
		CHECK(p->C_Sign(s, sig, 250, sig, &n), CKR_DATA_LEN_RANGE);
		CHECK(p->C_Sign(s, sig, 20, sig, &n), CKR_OPERATION_NOT_INITIALIZED);
	}
}

static void
derive(CK_SESSION_HANDLE s)
{
	CK_OBJECT_HANDLE k = find1(s, CKO_PRIVATE_KEY, 5), out = 0;
	unsigned char point[65], val[64];
	FILE *f = fopen("peer.raw", "rb");
	size_t got = f ? fread(point, 1, sizeof(point), f) : 0;
	CK_ECDH1_DERIVE_PARAMS prm = {CKD_NULL, 0, NULL, 65, point};
	CK_MECHANISM m = {CKM_ECDH1_DERIVE, &prm, sizeof(prm)};
	CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
	CK_KEY_TYPE kt = CKK_GENERIC_SECRET;
	CK_BBOOL yes = CK_TRUE, no = CK_FALSE;
	CK_ATTRIBUTE tpl[] = {{CKA_CLASS, &cls, sizeof(cls)}, {CKA_KEY_TYPE, &kt, sizeof(kt)},
	                      {CKA_TOKEN, &no, 1}, {CKA_EXTRACTABLE, &yes, 1},
	                      {CKA_SENSITIVE, &no, 1}};
	CK_ATTRIBUTE t = {CKA_VALUE, val, sizeof(val)};

	TRUE_(got == 65);
	if (f)
		fclose(f);
	/* default: sensitive, not extractable */
	CHECK(p->C_DeriveKey(s, &m, k, tpl, 3, &out), CKR_OK);
	CHECK(p->C_GetAttributeValue(s, out, &t, 1), CKR_ATTRIBUTE_SENSITIVE);
	CHECK(p->C_DestroyObject(s, out), CKR_OK);
	CHECK(p->C_DestroyObject(s, out), CKR_OBJECT_HANDLE_INVALID);
	CHECK(p->C_DeriveKey(s, &m, k, tpl, 5, &out), CKR_OK);
	t.ulValueLen = sizeof(val);
	CHECK(p->C_GetAttributeValue(s, out, &t, 1), CKR_OK);
	TRUE_(t.ulValueLen == 32);
	fwrite(val, 1, t.ulValueLen, fopen("shared.bin", "wb"));
	tpl[2].pValue = &yes; /* a token object on a write-protected token */
	CHECK(p->C_DeriveKey(s, &m, k, tpl, 3, &out), CKR_TOKEN_WRITE_PROTECTED);
	prm.kdf = CKD_SHA256_KDF;
	CHECK(p->C_DeriveKey(s, &m, k, tpl, 3, &out), CKR_MECHANISM_PARAM_INVALID);
}

static void
login_states(CK_SESSION_HANDLE s)
{
	CK_SESSION_INFO si;
	CK_SESSION_HANDLE s2;

	CHECK(p->C_GetSessionInfo(s, &si), CKR_OK);
	TRUE_(si.state == CKS_RO_PUBLIC_SESSION && si.slotID == slot);
	CHECK(p->C_Logout(s), CKR_USER_NOT_LOGGED_IN);
	CHECK(p->C_Login(s, 77, (CK_UTF8CHAR_PTR)pin, 6), CKR_USER_TYPE_INVALID);
	CHECK(p->C_Login(s, CKU_USER, (CK_UTF8CHAR_PTR)pin, 6), CKR_OK);
	CHECK(p->C_Login(s, CKU_USER, (CK_UTF8CHAR_PTR)pin, 6), CKR_USER_ALREADY_LOGGED_IN);
	CHECK(p->C_Login(s, CKU_SO, (CK_UTF8CHAR_PTR) "12345678", 8),
	      CKR_USER_ANOTHER_ALREADY_LOGGED_IN);
	/* the login is shared by the token's sessions */
	CHECK(p->C_OpenSession(slot, CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL, &s2), CKR_OK);
	CHECK(p->C_GetSessionInfo(s2, &si), CKR_OK);
	TRUE_(si.state == CKS_RW_USER_FUNCTIONS);
	CHECK(p->C_GetSessionInfo(s, &si), CKR_OK);
	TRUE_(si.state == CKS_RO_USER_FUNCTIONS);
	CHECK(p->C_SetPIN(s, (CK_UTF8CHAR_PTR)pin, 6, (CK_UTF8CHAR_PTR)pin, 6), CKR_SESSION_READ_ONLY);
	CHECK(p->C_CloseSession(s2), CKR_OK);
	CHECK(p->C_CloseSession(s2), CKR_SESSION_HANDLE_INVALID);
}

/* SO = PUK (checked by the card only when used), C_InitPIN = unblock, C_SetPIN */
static void
pins(void)
{
	CK_SESSION_HANDLE rw, ro;
	CK_SESSION_INFO si;
	CK_TOKEN_INFO ti;
	const char *puk = "12345678", *newpin = "654321";

	CHECK(p->C_OpenSession(slot, CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL, &rw), CKR_OK);
	/* user PIN change and back */
	CHECK(p->C_SetPIN(rw, (CK_UTF8CHAR_PTR)pin, 6, (CK_UTF8CHAR_PTR)newpin, 6), CKR_OK);
	CHECK(p->C_Login(rw, CKU_USER, (CK_UTF8CHAR_PTR)pin, 6), CKR_PIN_INCORRECT);
	CHECK(p->C_GetTokenInfo(slot, &ti), CKR_OK);
	TRUE_(ti.flags & CKF_USER_PIN_COUNT_LOW);
	CHECK(p->C_Login(rw, CKU_USER, (CK_UTF8CHAR_PTR)newpin, 6), CKR_OK);
	CHECK(p->C_GetTokenInfo(slot, &ti), CKR_OK);
	TRUE_(!(ti.flags & CKF_USER_PIN_COUNT_LOW));
	CHECK(p->C_Logout(rw), CKR_OK);
	/* SO: not with a read-only session open; then C_InitPIN resets the PIN */
	CHECK(p->C_OpenSession(slot, CKF_SERIAL_SESSION, NULL, NULL, &ro), CKR_OK);
	CHECK(p->C_Login(rw, CKU_SO, (CK_UTF8CHAR_PTR)puk, 8), CKR_SESSION_READ_ONLY_EXISTS);
	CHECK(p->C_CloseSession(ro), CKR_OK);
	CHECK(p->C_InitPIN(rw, (CK_UTF8CHAR_PTR)pin, 6), CKR_USER_NOT_LOGGED_IN);
	CHECK(p->C_Login(rw, CKU_SO, (CK_UTF8CHAR_PTR)puk, 8), CKR_OK);
	CHECK(p->C_GetSessionInfo(rw, &si), CKR_OK);
	TRUE_(si.state == CKS_RW_SO_FUNCTIONS);
	CHECK(p->C_OpenSession(slot, CKF_SERIAL_SESSION, NULL, NULL, &ro),
	      CKR_SESSION_READ_WRITE_SO_EXISTS);
	CHECK(p->C_Login(rw, CKU_USER, (CK_UTF8CHAR_PTR)pin, 6), CKR_USER_ANOTHER_ALREADY_LOGGED_IN);
	CHECK(p->C_InitPIN(rw, (CK_UTF8CHAR_PTR)pin, 6), CKR_OK);
	CHECK(p->C_Logout(rw), CKR_OK);
	/* a wrong PUK shows at C_InitPIN (not as CKR_PIN_INCORRECT: no
	 * C_InitPIN return value) */
	CHECK(p->C_Login(rw, CKU_SO, (CK_UTF8CHAR_PTR) "87654321", 8), CKR_OK);
	CHECK(p->C_InitPIN(rw, (CK_UTF8CHAR_PTR)pin, 6), CKR_USER_NOT_LOGGED_IN);
	CHECK(p->C_Logout(rw), CKR_OK);
	CHECK(p->C_GetTokenInfo(slot, &ti), CKR_OK);
	TRUE_(ti.flags & CKF_SO_PIN_COUNT_LOW);
	/* the PIN set by C_InitPIN works */
	CHECK(p->C_Login(rw, CKU_USER, (CK_UTF8CHAR_PTR)pin, 6), CKR_OK);
	CHECK(p->C_Logout(rw), CKR_OK);
	CHECK(p->C_CloseSession(rw), CKR_OK);
}

struct thr {
	CK_SESSION_HANDLE s;
	CK_OBJECT_HANDLE k;
	int ok;
};

static void *
signer(void *arg)
{
	struct thr *t = arg;
	CK_MECHANISM m = {CKM_ECDSA_SHA256, NULL, 0};
	unsigned char sig[128];

	for (int i = 0; i < 10; i++) {
		CK_ULONG n = sizeof(sig);

		if (p->C_SignInit(t->s, &m, t->k) == CKR_OK &&
		    p->C_Sign(t->s, (CK_BYTE_PTR) "abc", 3, sig, &n) == CKR_OK && n == 64)
			t->ok++;
	}
	return NULL;
}

static void
threads(CK_SESSION_HANDLE s)
{
	struct thr a = {s, 0, 0}, b = {0, 0, 0};
	pthread_t ta, tb;

	CHECK(p->C_OpenSession(slot, CKF_SERIAL_SESSION, NULL, NULL, &b.s), CKR_OK);
	a.k = b.k = find1(s, CKO_PRIVATE_KEY, 1);
	pthread_create(&ta, NULL, signer, &a);
	pthread_create(&tb, NULL, signer, &b);
	pthread_join(ta, NULL);
	pthread_join(tb, NULL);
	TRUE_(a.ok == 10 && b.ok == 10);
	CHECK(p->C_CloseSession(b.s), CKR_OK);
}

static void
removal(CK_SESSION_HANDLE s)
{
	CK_SLOT_ID ev = 999;
	CK_MECHANISM m = {CKM_ECDSA_SHA256, NULL, 0};
	CK_OBJECT_HANDLE k = find1(s, CKO_PRIVATE_KEY, 1);
	CK_TOKEN_INFO ti;
	CK_SESSION_INFO si;
	CK_SESSION_HANDLE s2;
	CK_ULONG n;

	while (p->C_WaitForSlotEvent(CKF_DONT_BLOCK, &ev, NULL) == CKR_OK)
		; /* drain */
	printf("READY-REMOVE\n");
	fflush(stdout);
	CHECK(p->C_WaitForSlotEvent(0, &ev, NULL), CKR_OK);
	TRUE_(ev == slot);
	usleep(300 * 1000);
	/* the card may come back: the session stays and says the card is out */
	CHECK(p->C_SignInit(s, &m, k), CKR_DEVICE_REMOVED);
	CHECK(p->C_SignInit(s, &m, k), CKR_DEVICE_REMOVED);
	CHECK(p->C_GetSessionInfo(s, &si), CKR_DEVICE_REMOVED);
	CHECK(p->C_OpenSession(slot, CKF_SERIAL_SESSION, NULL, NULL, &s2), CKR_TOKEN_NOT_PRESENT);
	n = 0;
	CHECK(p->C_GetSlotList(CK_TRUE, NULL, &n), CKR_OK);
	TRUE_(n == 0);
	CHECK(p->C_GetTokenInfo(slot, &ti), CKR_TOKEN_NOT_PRESENT);
	printf("READY-INSERT\n");
	fflush(stdout);
	for (int i = 0; i < 100; i++) {
		CK_SLOT_ID l[4];

		n = 4;
		if (p->C_GetSlotList(CK_TRUE, l, &n) == CKR_OK && n == 1 && l[0] == slot)
			break;
		usleep(100 * 1000);
	}
	TRUE_(n == 1);
	/* the same card is back: the old session goes on, not logged in, and
	 * the key keeps its handle */
	CHECK(p->C_GetSessionInfo(s, &si), CKR_OK);
	TRUE_(si.state == CKS_RO_PUBLIC_SESSION && si.slotID == slot);
	CHECK(p->C_SignInit(s, &m, k), CKR_USER_NOT_LOGGED_IN);
	CHECK(p->C_Login(s, CKU_USER, (CK_UTF8CHAR_PTR)pin, 6), CKR_OK);
	TRUE_(find1(s, CKO_PRIVATE_KEY, 1) == k);
	CHECK(p->C_SignInit(s, &m, k), CKR_OK);
	{
		unsigned char sig[64];
		n = sizeof(sig);
		CHECK(p->C_Sign(s, (CK_BYTE_PTR) "x", 1, sig, &n), CKR_OK);
	}
	/* and new sessions share its login */
	CHECK(p->C_OpenSession(slot, CKF_SERIAL_SESSION, NULL, NULL, &s2), CKR_OK);
	CHECK(p->C_GetSessionInfo(s2, &si), CKR_OK);
	TRUE_(si.state == CKS_RO_USER_FUNCTIONS);
	CHECK(p->C_CloseSession(s2), CKR_OK);
}

int
main(int argc, char **argv)
{
	void *lib = dlopen(argv[1], RTLD_NOW);
	CK_C_GetInterface gi;
	CK_INTERFACE_PTR iface;
	CK_SESSION_HANDLE s;
	CK_SLOT_ID slots[8];
	CK_ULONG n = 8;
	CK_TOKEN_INFO ti;

	if (lib == NULL || argc < 3)
		return 2;
	gi = (CK_C_GetInterface)dlsym(lib, "C_GetInterface");
	if (gi(NULL, NULL, &iface, 0) != CKR_OK)
		return 2;
	p = iface->pFunctionList;
	CHECK(p->C_Initialize(NULL), CKR_OK);
	CHECK(p->C_GetSlotList(CK_TRUE, slots, &n), CKR_OK);
	if (n != 1) {
		printf("FAIL: %lu tokens\n", (unsigned long)n);
		return 1;
	}
	slot = slots[0];
	CHECK(p->C_GetTokenInfo(slot, &ti), CKR_OK);
	printf("FLAGS 0x%lx\n", (unsigned long)ti.flags);
	CHECK(p->C_OpenSession(slot, CKF_SERIAL_SESSION, NULL, NULL, &s), CKR_OK);
	if (strcmp(argv[2], "api") == 0) {
		CK_OBJECT_CLASS pk = CKO_PRIVATE_KEY;
		CK_ATTRIBUTE t = {CKA_CLASS, &pk, sizeof(pk)};
		CK_OBJECT_HANDLE h[8];
		CK_ULONG cnt = 0;

		/* private keys are private objects: invisible until the user logs in */
		CHECK(p->C_FindObjectsInit(s, &t, 1), CKR_OK);
		CHECK(p->C_FindObjects(s, h, 8, &cnt), CKR_OK);
		CHECK(p->C_FindObjectsFinal(s), CKR_OK);
		TRUE_(cnt == 0);
		login_states(s);
		CHECK(p->C_FindObjectsInit(s, &t, 1), CKR_OK);
		CHECK(p->C_FindObjects(s, h, 8, &cnt), CKR_OK);
		CHECK(p->C_FindObjectsFinal(s), CKR_OK);
		TRUE_(cnt == 5);
		attrs(s);
		sign_rules(s);
		derive(s);
		threads(s);
		CHECK(p->C_CloseSession(s), CKR_OK);
		pins();
		CHECK(p->C_OpenSession(slot, CKF_SERIAL_SESSION, NULL, NULL, &s), CKR_OK);
	} else if (strcmp(argv[2], "removal") == 0) {
		CHECK(p->C_Login(s, CKU_USER, (CK_UTF8CHAR_PTR)pin, 6), CKR_OK);
		removal(s);
	}
	CHECK(p->C_Finalize(NULL), CKR_OK);
	printf(fails ? "FAILURES %d\n" : "ALL OK\n", fails);
	return fails != 0;
}
EOF
tk_run "build the API client" cc -std=gnu11 -Wall -O1 -o p11check p11check.c -ldl -lpthread

# peer key for ECDH (raw uncompressed point) and the expected secret
openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out peer.key 2>/dev/null
openssl pkey -in peer.key -pubout -outform DER | tail -c 65 >peer.raw

# P11CHECK_WRAP overrides; in a sanitizer build lib.sh's tk_host preloads the
# ASan runtime the module needs
if [[ -n "${P11CHECK_WRAP:-}" ]]; then
	read -r -a WRAP <<<"$P11CHECK_WRAP"
else
	WRAP=("${TK_HOST_ENV[@]}")
fi
tk_run "API rules" "${WRAP[@]}" ./p11check "$TK_P11_MODULE" api
tk_expect 'ALL OK'
openssl x509 -in cert9c.pem -outform DER -out cert9c.der
cmp cert02.der cert9c.der || tk_fail "CKA_VALUE of the certificate differs from the one imported"
openssl pkeyutl -derive -inkey peer.key -peerkey pub82.pem -out shared-ossl.bin
cmp shared.bin shared-ossl.bin || tk_fail "derived CKA_VALUE differs from openssl's ECDH"

# removal and reinsertion while a client holds a session
"${WRAP[@]}" ./p11check "$TK_P11_MODULE" removal >removal.out 2>&1 &
pid=$!
for ((i = 0; i < 100; i++)); do grep -q READY-REMOVE removal.out && break; sleep 0.1; done
grep -q READY-REMOVE removal.out || { cat removal.out >&2; tk_fail "client not ready"; }
tk_card_stop 0
for ((i = 0; i < 100; i++)); do grep -q READY-INSERT removal.out && break; sleep 0.1; done
grep -q READY-INSERT removal.out || { cat removal.out >&2; kill "$pid"; tk_fail "removal not seen"; }
tk_card_start 0
rc=0
wait "$pid" || rc=$?
TK_OUT=$(cat removal.out)
[[ $rc == 0 ]] || { printf '%s\n' "$TK_OUT" >&2; tk_fail "removal client exit $rc"; }
tk_expect 'ALL OK'

tk_pass
