/* The software token written through the BUILT module (tokenkit-pkcs11.so,
 * dlopen), against what PKCS#11 3.0 says, not what the module does:
 *  - the token is not write-protected (CK_TOKEN_INFO flags);
 *  - C_CreateObject's answers for each kind of bad template (section 4.1.1:
 *    CKR_ATTRIBUTE_TYPE_INVALID for an attribute of another class,
 *    CKR_ATTRIBUTE_VALUE_INVALID for a bad value, CKR_TEMPLATE_INCOMPLETE
 *    without what the class needs (CKA_CLASS, a certificate's type:
 *    footnote 1), CKR_TEMPLATE_INCONSISTENT for one attribute twice with
 *    two values, CKR_ATTRIBUTE_READ_ONLY for what the token sets
 *    (CKA_LOCAL, footnote 2)), and the session rules of 5.7 (a token
 *    object only in a read/write session: CKR_SESSION_READ_ONLY; a private
 *    one only with the user logged in: CKR_USER_NOT_LOGGED_IN);
 *  - C_SetAttributeValue: CKA_CLASS cannot change (CKR_ATTRIBUTE_READ_ONLY),
 *    CKA_SENSITIVE only to true, CKA_EXTRACTABLE only to false (footnotes
 *    11, 12), nothing of an object with CKA_MODIFIABLE false
 *    (CKR_ACTION_PROHIBITED, 4.4); C_CopyObject of CKA_COPYABLE false and
 *    C_DestroyObject of CKA_DESTROYABLE false: CKR_ACTION_PROHIBITED; a
 *    token object in a read-only session: CKR_SESSION_READ_ONLY;
 *  - a token object stays (C_Finalize, C_Initialize) and keeps its handle
 *    when changed; a session object goes with its session;
 *  - a sensitive key's value: CKR_ATTRIBUTE_SENSITIVE; an extractable,
 *    non-sensitive one's value is the one given;
 *  - C_GenerateKeyPair (EC P-256, Ed25519): CKA_LOCAL true,
 *    CKA_KEY_GEN_MECHANISM, CKA_ALWAYS_SENSITIVE; a signature OpenSSL
 *    verifies with the public key read from the token;
 *  - another process with the module loaded sees a token object we create
 *    and its removal (the registry's events).
 * The token is made with the library (tk_soft_create); no PC/SC daemon. */
#include <dlfcn.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/ecdsa.h>
#include <openssl/evp.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>
#include <pkcs11-helper-1.0/pkcs11.h>

#include <tokenkit/err.h>
#include <tokenkit/registry.h>
#include <tokenkit/soft.h>

/* PKCS#11 3.0 names the packaged header does not carry. */
#ifndef CKA_COPYABLE
#define CKA_COPYABLE 0x171UL
#endif
#ifndef CKA_DESTROYABLE
#define CKA_DESTROYABLE 0x172UL
#endif

#define PIN "123456"
#define SOPIN "12345678"
#define SLOT 0x40000000UL

static char dir[] = "/tmp/test_p11_softobj.XXXXXX";
static void *lib;
static CK_FUNCTION_LIST_PTR f;
static char self[512];

static CK_BBOOL yes = CK_TRUE, no = CK_FALSE;
static CK_OBJECT_CLASS data_cls = CKO_DATA, cert_cls = CKO_CERTIFICATE, sec_cls = CKO_SECRET_KEY,
                       priv_cls = CKO_PRIVATE_KEY, pub_cls = CKO_PUBLIC_KEY;
static CK_KEY_TYPE aes = CKK_AES, ec = CKK_EC;
#define A(t, v)                                                                                    \
	{                                                                                          \
		(t), &(v), sizeof(v)                                                               \
	}
#define S(t, s)                                                                                    \
	{                                                                                          \
		(t), (s), sizeof(s) - 1                                                            \
	}

static int
load_module(void)
{
	char exe[400], path[512];
	CK_C_GetFunctionList gfl;
	ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);

	if (n <= 0)
		return -1;
	exe[n] = '\0';
	snprintf(self, sizeof(self), "%s", exe);
	*strrchr(exe, '/') = '\0';
	snprintf(path, sizeof(path), "%s/../tokenkit-pkcs11.so", exe);
	if ((lib = dlopen(path, RTLD_NOW | RTLD_LOCAL)) == NULL) {
		fprintf(stderr, "dlopen %s: %s\n", path, dlerror());
		return -1;
	}
	gfl = (CK_C_GetFunctionList)dlsym(lib, "C_GetFunctionList");
	return gfl != NULL && gfl(&f) == CKR_OK ? 0 : -1;
}

/* The environment of this program and of its watcher child. */
static void
env(void)
{
	char path[256];

	snprintf(path, sizeof(path), "%s/state", dir);
	setenv("XDG_STATE_HOME", path, 1);
	setenv("XDG_RUNTIME_DIR", dir, 1);
	setenv("PCSCLITE_CSOCK_NAME", "/nonexistent/tokenkit-test/pcscd.comm", 1);
}

static int
setup(void **state)
{
	tk_soft_create_opts_t o;
	char inst[TK_REG_INSTANCE_MAX + 1];

	(void)state;
	if (mkdtemp(dir) == NULL)
		return -1;
	env();
	tk_soft_create_opts_init(&o);
	o.label = "softobj";
	o.pin = (const uint8_t *)PIN;
	o.pin_len = strlen(PIN);
	o.so_pin = (const uint8_t *)SOPIN;
	o.so_pin_len = strlen(SOPIN);
	o.kdf_log2n = 10; /* fast: tests only */
	if (tk_soft_create(&o, inst, sizeof(inst)) != TK_OK || load_module() != 0)
		return -1;
	return f->C_Initialize(NULL) == CKR_OK ? 0 : -1;
}

static int
teardown(void **state)
{
	char cmd[300];

	(void)state;
	if (f != NULL)
		f->C_Finalize(NULL);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	return system(cmd) == 0 ? 0 : -1;
}

static CK_SESSION_HANDLE
open_session(bool rw)
{
	CK_SESSION_HANDLE h = 0;

	assert_int_equal(f->C_OpenSession(SLOT, CKF_SERIAL_SESSION | (rw ? CKF_RW_SESSION : 0),
	                                  NULL, NULL, &h),
	                 CKR_OK);
	return h;
}

static void
login(CK_SESSION_HANDLE h)
{
	CK_RV rv = f->C_Login(h, CKU_USER, (CK_UTF8CHAR_PTR)PIN, strlen(PIN));

	assert_true(rv == CKR_OK || rv == CKR_USER_ALREADY_LOGGED_IN);
}

/* The objects matching tpl. */
static CK_ULONG
find(CK_SESSION_HANDLE h, CK_ATTRIBUTE *tpl, CK_ULONG n, CK_OBJECT_HANDLE *out, CK_ULONG cap)
{
	CK_ULONG got = 0;

	assert_int_equal(f->C_FindObjectsInit(h, tpl, n), CKR_OK);
	assert_int_equal(f->C_FindObjects(h, out, cap, &got), CKR_OK);
	assert_int_equal(f->C_FindObjectsFinal(h), CKR_OK);
	return got;
}

static CK_ULONG
count_label(CK_SESSION_HANDLE h, const char *label)
{
	CK_ATTRIBUTE t = {CKA_LABEL, (void *)(uintptr_t)label, strlen(label)};
	CK_OBJECT_HANDLE o[8];

	return find(h, &t, 1, o, 8);
}

static void
test_token_writable(void **state)
{
	CK_TOKEN_INFO ti;

	(void)state;
	assert_int_equal(f->C_GetTokenInfo(SLOT, &ti), CKR_OK);
	assert_false(ti.flags & CKF_WRITE_PROTECTED);
}

static void
test_create_refusals(void **state)
{
	CK_SESSION_HANDLE ro = open_session(false), rw = open_session(true);
	CK_OBJECT_HANDLE o = 0;
	CK_ULONG four = 1;
	uint8_t key[16] = {1, 2, 3};

	(void)state;
	/* 5.7: only session objects in a read-only session; only public ones
	 * without the user's login */
	CK_ATTRIBUTE t1[] = {A(CKA_CLASS, data_cls), A(CKA_TOKEN, yes), S(CKA_LABEL, "ro")};
	assert_int_equal(f->C_CreateObject(ro, t1, 3, &o), CKR_SESSION_READ_ONLY);
	CK_ATTRIBUTE t2[] = {A(CKA_CLASS, data_cls), A(CKA_TOKEN, yes), A(CKA_PRIVATE, yes)};
	assert_int_equal(f->C_CreateObject(rw, t2, 3, &o), CKR_USER_NOT_LOGGED_IN);
	/* 4.1.1: no CKA_CLASS (footnote 1) */
	CK_ATTRIBUTE t3[] = {S(CKA_LABEL, "x"), A(CKA_TOKEN, no)};
	assert_int_equal(f->C_CreateObject(rw, t3, 2, &o), CKR_TEMPLATE_INCOMPLETE);
	/* a certificate without its type (footnote 1) */
	CK_ATTRIBUTE t4[] = {A(CKA_CLASS, cert_cls), S(CKA_VALUE, "x"), A(CKA_TOKEN, no)};
	assert_int_equal(f->C_CreateObject(rw, t4, 3, &o), CKR_TEMPLATE_INCOMPLETE);
	/* an attribute of another class */
	CK_ATTRIBUTE t5[] = {A(CKA_CLASS, data_cls), A(CKA_KEY_TYPE, aes), A(CKA_TOKEN, no)};
	assert_int_equal(f->C_CreateObject(rw, t5, 3, &o), CKR_ATTRIBUTE_TYPE_INVALID);
	/* an invalid value of a valid attribute: a CK_BBOOL of 8 bytes */
	CK_ATTRIBUTE t6[] = {A(CKA_CLASS, data_cls), {CKA_TOKEN, &four, sizeof(four)}};
	assert_int_equal(f->C_CreateObject(rw, t6, 2, &o), CKR_ATTRIBUTE_VALUE_INVALID);
	/* one attribute twice with two values */
	CK_ATTRIBUTE t7[] = {A(CKA_CLASS, data_cls), A(CKA_TOKEN, no), A(CKA_TOKEN, yes)};
	assert_int_equal(f->C_CreateObject(rw, t7, 3, &o), CKR_TEMPLATE_INCONSISTENT);
	/* CKA_LOCAL is the token's to set (footnote 2) */
	CK_ATTRIBUTE t8[] = {A(CKA_CLASS, sec_cls), A(CKA_KEY_TYPE, aes), A(CKA_VALUE, key),
	                     A(CKA_TOKEN, no),      A(CKA_PRIVATE, no),   A(CKA_LOCAL, no)};
	assert_int_equal(f->C_CreateObject(rw, t8, 6, &o), CKR_ATTRIBUTE_READ_ONLY);
	/* the same without CKA_LOCAL: a public session key, in a read-only
	 * session too */
	assert_int_equal(f->C_CreateObject(ro, t8, 5, &o), CKR_OK);
	assert_int_not_equal(o, 0);
	/* a public session data object in a read-only session */
	CK_ATTRIBUTE t9[] = {A(CKA_CLASS, data_cls), A(CKA_TOKEN, no), S(CKA_VALUE, "v")};
	assert_int_equal(f->C_CreateObject(ro, t9, 3, &o), CKR_OK);
	assert_int_equal(f->C_CloseSession(ro), CKR_OK);
	assert_int_equal(f->C_CloseSession(rw), CKR_OK);
}

static void
test_token_object_life(void **state)
{
	CK_SESSION_HANDLE rw = open_session(true), ro = open_session(false);
	CK_OBJECT_HANDLE o = 0, again[4];
	char got[64];
	CK_BBOOL b = CK_FALSE;
	CK_OBJECT_CLASS cls = CKO_CERTIFICATE;

	(void)state;
	CK_ATTRIBUTE t[] = {A(CKA_CLASS, data_cls), A(CKA_TOKEN, yes), S(CKA_LABEL, "life"),
	                    S(CKA_APPLICATION, "app"), S(CKA_VALUE, "stored value")};
	assert_int_equal(f->C_CreateObject(rw, t, 5, &o), CKR_OK);
	/* another session finds it, with what was given and the defaults */
	assert_int_equal(count_label(ro, "life"), 1);
	CK_ATTRIBUTE r1[] = {{CKA_VALUE, got, sizeof(got)}, A(CKA_MODIFIABLE, b)};
	assert_int_equal(f->C_GetAttributeValue(ro, o, r1, 2), CKR_OK);
	assert_int_equal(r1[0].ulValueLen, strlen("stored value"));
	assert_memory_equal(got, "stored value", r1[0].ulValueLen);
	assert_true(b); /* CKA_MODIFIABLE defaults to true */
	/* changes: the label (kept handle), never the class; none from a
	 * read-only session (5.7) */
	CK_ATTRIBUTE s1[] = {S(CKA_LABEL, "life2")};
	assert_int_equal(f->C_SetAttributeValue(ro, o, s1, 1), CKR_SESSION_READ_ONLY);
	assert_int_equal(f->C_SetAttributeValue(rw, o, s1, 1), CKR_OK);
	assert_int_equal(count_label(ro, "life2"), 1);
	CK_ATTRIBUTE l2 = {CKA_LABEL, "life2", 5};
	assert_int_equal(find(ro, &l2, 1, again, 4), 1);
	assert_int_equal(again[0], o);
	CK_ATTRIBUTE s2[] = {A(CKA_CLASS, cls)};
	assert_int_equal(f->C_SetAttributeValue(rw, o, s2, 1), CKR_ATTRIBUTE_READ_ONLY);
	assert_int_equal(f->C_DestroyObject(ro, o), CKR_SESSION_READ_ONLY);
	/* on the token: there after the module was finalized */
	assert_int_equal(f->C_Finalize(NULL), CKR_OK);
	assert_int_equal(f->C_Initialize(NULL), CKR_OK);
	rw = open_session(true);
	assert_int_equal(find(rw, &l2, 1, again, 4), 1);
	assert_int_equal(f->C_DestroyObject(rw, again[0]), CKR_OK);
	assert_int_equal(count_label(rw, "life2"), 0);
	assert_int_equal(f->C_CloseSession(rw), CKR_OK);
}

static void
test_prohibited(void **state)
{
	CK_SESSION_HANDLE rw = open_session(true);
	CK_OBJECT_HANDLE o = 0, c = 0;

	(void)state;
	CK_ATTRIBUTE t1[] = {A(CKA_CLASS, data_cls), A(CKA_TOKEN, yes), S(CKA_LABEL, "fixed"),
	                     A(CKA_MODIFIABLE, no), A(CKA_COPYABLE, no)};
	assert_int_equal(f->C_CreateObject(rw, t1, 5, &o), CKR_OK);
	CK_ATTRIBUTE s[] = {S(CKA_LABEL, "other")};
	assert_int_equal(f->C_SetAttributeValue(rw, o, s, 1), CKR_ACTION_PROHIBITED);
	assert_int_equal(f->C_CopyObject(rw, o, s, 1, &c), CKR_ACTION_PROHIBITED);
	assert_int_equal(f->C_DestroyObject(rw, o), CKR_OK);
	CK_ATTRIBUTE t2[] = {A(CKA_CLASS, data_cls), A(CKA_TOKEN, yes), S(CKA_LABEL, "stays"),
	                     A(CKA_DESTROYABLE, no)};
	assert_int_equal(f->C_CreateObject(rw, t2, 4, &o), CKR_OK);
	assert_int_equal(f->C_DestroyObject(rw, o), CKR_ACTION_PROHIBITED);
	assert_int_equal(count_label(rw, "stays"), 1);
	/* a copy (CKA_COPYABLE defaults to true) with a new label */
	CK_ATTRIBUTE cl[] = {S(CKA_LABEL, "copied"), A(CKA_TOKEN, no)};
	assert_int_equal(f->C_CopyObject(rw, o, cl, 2, &c), CKR_OK);
	assert_int_not_equal(c, o);
	assert_int_equal(count_label(rw, "copied"), 1);
	assert_int_equal(f->C_CloseSession(rw), CKR_OK);
}

static void
test_session_objects_go(void **state)
{
	CK_SESSION_HANDLE a = open_session(false), b = open_session(false);
	CK_OBJECT_HANDLE o = 0;
	char v[8];

	(void)state;
	CK_ATTRIBUTE t[] = {A(CKA_CLASS, data_cls), S(CKA_LABEL, "fleeting"), S(CKA_VALUE, "v")};
	assert_int_equal(f->C_CreateObject(a, t, 3, &o), CKR_OK);
	assert_int_equal(count_label(b, "fleeting"), 1);
	assert_int_equal(f->C_CloseSession(a), CKR_OK);
	assert_int_equal(count_label(b, "fleeting"), 0);
	CK_ATTRIBUTE r = {CKA_VALUE, v, sizeof(v)};
	assert_int_equal(f->C_GetAttributeValue(b, o, &r, 1), CKR_OBJECT_HANDLE_INVALID);
	assert_int_equal(f->C_CloseSession(b), CKR_OK);
}

static void
test_secret_values(void **state)
{
	CK_SESSION_HANDLE rw = open_session(true);
	CK_OBJECT_HANDLE o = 0, p = 0;
	uint8_t key[32], got[128];
	CK_BBOOL b = CK_TRUE;
	EVP_PKEY *pk = NULL;
	uint8_t d[32], pt[65], der[67];
	size_t dl = 0, pl = 0;
	BIGNUM *bn = NULL;
	static uint8_t p256[] = {0x06, 0x08, 0x2A, 0x86, 0x48, 0xCE, 0x3D, 0x03, 0x01, 0x07};

	(void)state;
	login(rw);
	for (size_t i = 0; i < sizeof(key); i++)
		key[i] = (uint8_t)(i * 7 + 1);
	CK_ATTRIBUTE t[] = {A(CKA_CLASS, sec_cls),     A(CKA_KEY_TYPE, aes),
	                    A(CKA_VALUE, key),         A(CKA_TOKEN, yes),
	                    A(CKA_SENSITIVE, no),      A(CKA_EXTRACTABLE, yes),
	                    S(CKA_LABEL, "aes-secret")};
	assert_int_equal(f->C_CreateObject(rw, t, 7, &o), CKR_OK);
	CK_ATTRIBUTE r[] = {{CKA_VALUE, got, sizeof(got)}, A(CKA_ALWAYS_SENSITIVE, b)};
	assert_int_equal(f->C_GetAttributeValue(rw, o, r, 2), CKR_OK);
	assert_int_equal(r[0].ulValueLen, sizeof(key));
	assert_memory_equal(got, key, sizeof(key));
	assert_false(b);
	/* CKA_SENSITIVE only to true (footnote 11), CKA_EXTRACTABLE only to false
	 * (footnote 12) */
	CK_ATTRIBUTE s1[] = {A(CKA_SENSITIVE, yes)};
	assert_int_equal(f->C_SetAttributeValue(rw, o, s1, 1), CKR_OK);
	CK_ATTRIBUTE s2[] = {A(CKA_SENSITIVE, no)};
	assert_int_equal(f->C_SetAttributeValue(rw, o, s2, 1), CKR_ATTRIBUTE_READ_ONLY);
	r[0].ulValueLen = sizeof(got);
	assert_int_equal(f->C_GetAttributeValue(rw, o, r, 1), CKR_ATTRIBUTE_SENSITIVE);
	assert_int_equal(r[0].ulValueLen, CK_UNAVAILABLE_INFORMATION);
	CK_ATTRIBUTE s3[] = {A(CKA_EXTRACTABLE, no)};
	assert_int_equal(f->C_SetAttributeValue(rw, o, s3, 1), CKR_OK);
	CK_ATTRIBUTE s4[] = {A(CKA_EXTRACTABLE, yes)};
	assert_int_equal(f->C_SetAttributeValue(rw, o, s4, 1), CKR_ATTRIBUTE_READ_ONLY);

	/* a private key from its components: its value sensitive (the default) */
	pk = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
	assert_non_null(pk);
	assert_int_equal(EVP_PKEY_get_bn_param(pk, OSSL_PKEY_PARAM_PRIV_KEY, &bn), 1);
	dl = (size_t)BN_bn2binpad(bn, d, sizeof(d));
	assert_int_equal(EVP_PKEY_get_octet_string_param(pk, OSSL_PKEY_PARAM_ENCODED_PUBLIC_KEY, pt,
	                                                 sizeof(pt), &pl),
	                 1);
	der[0] = 0x04;
	der[1] = (uint8_t)pl;
	memcpy(der + 2, pt, pl);
	CK_ATTRIBUTE k[] = {A(CKA_CLASS, priv_cls), A(CKA_KEY_TYPE, ec),
	                    A(CKA_EC_PARAMS, p256), {CKA_VALUE, d, dl},
	                    A(CKA_TOKEN, yes),      S(CKA_LABEL, "ec-created")};
	assert_int_equal(f->C_CreateObject(rw, k, 6, &p), CKR_OK);
	CK_ATTRIBUTE rk[] = {{CKA_VALUE, got, sizeof(got)}};
	assert_int_equal(f->C_GetAttributeValue(rw, p, rk, 1), CKR_ATTRIBUTE_SENSITIVE);
	CK_ATTRIBUTE pub[] = {{CKA_EC_POINT, got, sizeof(got)}};
	assert_int_equal(f->C_GetAttributeValue(rw, p, pub, 1), CKR_OK);
	assert_int_equal(pub[0].ulValueLen, pl + 2);
	assert_memory_equal(got, der, pl + 2);
	/* its public key as given: for host-side C_Verify */
	CK_ATTRIBUTE pt_[] = {A(CKA_CLASS, pub_cls),
	                      A(CKA_KEY_TYPE, ec),
	                      A(CKA_EC_PARAMS, p256),
	                      {CKA_EC_POINT, der, pl + 2},
	                      A(CKA_TOKEN, no)};
	CK_OBJECT_HANDLE q = 0;
	assert_int_equal(f->C_CreateObject(rw, pt_, 5, &q), CKR_OK);
	/* sign with the token's key, verify in the module with the session key */
	{
		CK_MECHANISM m = {CKM_ECDSA_SHA256, NULL, 0};
		uint8_t sig[80];
		CK_ULONG sl = sizeof(sig);

		assert_int_equal(f->C_SignInit(rw, &m, p), CKR_OK);
		assert_int_equal(f->C_Sign(rw, (CK_BYTE_PTR) "msg", 3, sig, &sl), CKR_OK);
		assert_int_equal(f->C_VerifyInit(rw, &m, q), CKR_OK);
		assert_int_equal(f->C_Verify(rw, (CK_BYTE_PTR) "msg", 3, sig, sl), CKR_OK);
	}
	BN_free(bn);
	EVP_PKEY_free(pk);
	assert_int_equal(f->C_Logout(rw), CKR_OK);
	assert_int_equal(f->C_CloseSession(rw), CKR_OK);
}

/* An ECDSA (r || s) signature over msg verified by OpenSSL with the public
 * point (uncompressed) and curve of a key read from the token. */
static bool
ecdsa_verifies(const uint8_t *point, size_t plen, const uint8_t *sig, size_t sl, const char *msg)
{
	OSSL_PARAM params[] = {
	        OSSL_PARAM_utf8_string(OSSL_PKEY_PARAM_GROUP_NAME, "P-256", 0),
	        OSSL_PARAM_octet_string(OSSL_PKEY_PARAM_PUB_KEY, (void *)(uintptr_t)point, plen),
	        OSSL_PARAM_END};
	EVP_PKEY_CTX *pc = EVP_PKEY_CTX_new_from_name(NULL, "EC", NULL);
	EVP_PKEY *pk = NULL;
	EVP_MD_CTX *mc = EVP_MD_CTX_new();
	ECDSA_SIG *es = ECDSA_SIG_new();
	unsigned char *der = NULL;
	int dl;
	bool ok;

	ok = pc != NULL && EVP_PKEY_fromdata_init(pc) == 1 &&
	     EVP_PKEY_fromdata(pc, &pk, EVP_PKEY_PUBLIC_KEY, params) == 1 && es != NULL &&
	     ECDSA_SIG_set0(es, BN_bin2bn(sig, (int)sl / 2, NULL),
	                    BN_bin2bn(sig + sl / 2, (int)sl / 2, NULL)) == 1 &&
	     (dl = i2d_ECDSA_SIG(es, &der)) > 0 &&
	     EVP_DigestVerifyInit(mc, NULL, EVP_sha256(), NULL, pk) == 1 &&
	     EVP_DigestVerify(mc, der, (size_t)dl, (const uint8_t *)msg, strlen(msg)) == 1;
	OPENSSL_free(der);
	ECDSA_SIG_free(es);
	EVP_MD_CTX_free(mc);
	EVP_PKEY_free(pk);
	EVP_PKEY_CTX_free(pc);
	return ok;
}

static void
test_generate(void **state)
{
	CK_SESSION_HANDLE rw = open_session(true), ro = open_session(false);
	CK_OBJECT_HANDLE pub = 0, priv = 0;
	CK_MECHANISM m = {CKM_EC_KEY_PAIR_GEN, NULL, 0};
	static uint8_t p256[] = {0x06, 0x08, 0x2A, 0x86, 0x48, 0xCE, 0x3D, 0x03, 0x01, 0x07};
	CK_MECHANISM_TYPE mech = 0;
	CK_BBOOL local = CK_FALSE, always = CK_FALSE;
	uint8_t point[80], sig[80], mod[8] = {1};
	CK_ULONG sl = sizeof(sig);

	(void)state;
	login(rw);
	CK_ATTRIBUTE pt[] = {A(CKA_EC_PARAMS, p256), A(CKA_TOKEN, yes), S(CKA_LABEL, "gen"),
	                     A(CKA_VERIFY, yes)};
	CK_ATTRIBUTE kt[] = {A(CKA_TOKEN, yes), S(CKA_LABEL, "gen"), A(CKA_SIGN, yes)};
	/* 5.7: a token key only from a read/write session */
	assert_int_equal(f->C_GenerateKeyPair(ro, &m, pt, 4, kt, 3, &pub, &priv),
	                 CKR_SESSION_READ_ONLY);
	/* the key's own values are the token's to make (footnote 4) */
	CK_ATTRIBUTE bad[] = {A(CKA_EC_PARAMS, p256), A(CKA_EC_POINT, mod)};
	assert_int_equal(f->C_GenerateKeyPair(rw, &m, bad, 2, kt, 3, &pub, &priv),
	                 CKR_ATTRIBUTE_READ_ONLY);
	assert_int_equal(f->C_GenerateKeyPair(rw, &m, pt, 4, kt, 3, &pub, &priv), CKR_OK);
	CK_ATTRIBUTE r[] = {A(CKA_LOCAL, local), A(CKA_KEY_GEN_MECHANISM, mech),
	                    A(CKA_ALWAYS_SENSITIVE, always)};
	assert_int_equal(f->C_GetAttributeValue(rw, priv, r, 3), CKR_OK);
	assert_true(local);
	assert_int_equal(mech, CKM_EC_KEY_PAIR_GEN);
	assert_true(always);
	CK_ATTRIBUTE rp[] = {{CKA_EC_POINT, point, sizeof(point)}};
	assert_int_equal(f->C_GetAttributeValue(rw, pub, rp, 1), CKR_OK);
	assert_true(rp[0].ulValueLen == 67 && point[0] == 0x04 && point[1] == 65);
	CK_MECHANISM sm = {CKM_ECDSA_SHA256, NULL, 0};
	assert_int_equal(f->C_SignInit(rw, &sm, priv), CKR_OK);
	assert_int_equal(f->C_Sign(rw, (CK_BYTE_PTR) "generated", 9, sig, &sl), CKR_OK);
	assert_true(ecdsa_verifies(point + 2, 65, sig, sl, "generated"));
	/* both on the token */
	assert_int_equal(f->C_Finalize(NULL), CKR_OK);
	assert_int_equal(f->C_Initialize(NULL), CKR_OK);
	rw = open_session(true);
	login(rw);
	assert_int_equal(count_label(rw, "gen"), 2);
	/* Ed25519, a session pair */
	CK_MECHANISM me = {CKM_EC_EDWARDS_KEY_PAIR_GEN, NULL, 0};
	static uint8_t ed[] = {0x06, 0x03, 0x2B, 0x65, 0x70};
	CK_ATTRIBUTE ept[] = {A(CKA_EC_PARAMS, ed), A(CKA_TOKEN, no)};
	CK_ATTRIBUTE ekt[] = {A(CKA_TOKEN, no), A(CKA_SIGN, yes)};
	assert_int_equal(f->C_GenerateKeyPair(rw, &me, ept, 2, ekt, 2, &pub, &priv), CKR_OK);
	CK_MECHANISM em = {CKM_EDDSA, NULL, 0};
	sl = sizeof(sig);
	assert_int_equal(f->C_SignInit(rw, &em, priv), CKR_OK);
	assert_int_equal(f->C_Sign(rw, (CK_BYTE_PTR) "ed", 2, sig, &sl), CKR_OK);
	assert_int_equal(sl, 64);
	assert_int_equal(f->C_VerifyInit(rw, &em, pub), CKR_OK);
	assert_int_equal(f->C_Verify(rw, (CK_BYTE_PTR) "ed", 2, sig, sl), CKR_OK);
	assert_int_equal(f->C_CloseSession(rw), CKR_OK);
}

/* An RSA public key of our own (OpenSSL) on the token: the module encrypts
 * with OAEP and PKCS#1 v1.5, OpenSSL decrypts. */
static void
test_encrypt(void **state)
{
	CK_SESSION_HANDLE rw = open_session(true);
	EVP_PKEY *pk = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048);
	BIGNUM *n = NULL, *e = NULL;
	uint8_t nb[256], eb[8], enc[256], dec[256];
	CK_ULONG el = sizeof(enc);
	size_t dl = sizeof(dec);
	int nl, elen;
	CK_OBJECT_HANDLE o = 0, v = 0;
	CK_KEY_TYPE rsa = CKK_RSA;
	CK_RSA_PKCS_OAEP_PARAMS op = {CKM_SHA256, CKG_MGF1_SHA256, CKZ_DATA_SPECIFIED, "lbl", 3};
	CK_MECHANISM oaep = {CKM_RSA_PKCS_OAEP, &op, sizeof(op)};
	CK_MECHANISM v15 = {CKM_RSA_PKCS, NULL, 0};
	EVP_PKEY_CTX *c;

	(void)state;
	assert_non_null(pk);
	assert_int_equal(EVP_PKEY_get_bn_param(pk, OSSL_PKEY_PARAM_RSA_N, &n), 1);
	assert_int_equal(EVP_PKEY_get_bn_param(pk, OSSL_PKEY_PARAM_RSA_E, &e), 1);
	nl = BN_bn2bin(n, nb);
	elen = BN_bn2bin(e, eb);
	CK_ATTRIBUTE t[] = {A(CKA_CLASS, pub_cls),
	                    A(CKA_KEY_TYPE, rsa),
	                    {CKA_MODULUS, nb, (CK_ULONG)nl},
	                    {CKA_PUBLIC_EXPONENT, eb, (CK_ULONG)elen},
	                    A(CKA_ENCRYPT, yes),
	                    A(CKA_TOKEN, yes),
	                    S(CKA_LABEL, "rsa-enc")};
	assert_int_equal(f->C_CreateObject(rw, t, 7, &o), CKR_OK);
	assert_int_equal(f->C_EncryptInit(rw, &oaep, o), CKR_OK);
	assert_int_equal(f->C_Encrypt(rw, (CK_BYTE_PTR) "secret", 6, enc, &el), CKR_OK);
	assert_int_equal(el, 256);
	c = EVP_PKEY_CTX_new(pk, NULL);
	assert_true(c != NULL && EVP_PKEY_decrypt_init(c) == 1 &&
	            EVP_PKEY_CTX_set_rsa_padding(c, RSA_PKCS1_OAEP_PADDING) == 1 &&
	            EVP_PKEY_CTX_set_rsa_oaep_md(c, EVP_sha256()) == 1 &&
	            EVP_PKEY_CTX_set_rsa_mgf1_md(c, EVP_sha256()) == 1 &&
	            EVP_PKEY_CTX_set0_rsa_oaep_label(c, OPENSSL_memdup("lbl", 3), 3) == 1 &&
	            EVP_PKEY_decrypt(c, dec, &dl, enc, el) == 1);
	EVP_PKEY_CTX_free(c);
	assert_int_equal(dl, 6);
	assert_memory_equal(dec, "secret", 6);
	/* PKCS#1 v1.5 */
	el = sizeof(enc);
	dl = sizeof(dec);
	assert_int_equal(f->C_EncryptInit(rw, &v15, o), CKR_OK);
	assert_int_equal(f->C_Encrypt(rw, (CK_BYTE_PTR) "v15", 3, enc, &el), CKR_OK);
	c = EVP_PKEY_CTX_new(pk, NULL);
	assert_true(c != NULL && EVP_PKEY_decrypt_init(c) == 1 &&
	            EVP_PKEY_CTX_set_rsa_padding(c, RSA_PKCS1_PADDING) == 1 &&
	            EVP_PKEY_decrypt(c, dec, &dl, enc, el) == 1);
	EVP_PKEY_CTX_free(c);
	assert_int_equal(dl, 3);
	assert_memory_equal(dec, "v15", 3);
	/* a key without CKA_ENCRYPT encrypts nothing */
	CK_ATTRIBUTE t2[] = {A(CKA_CLASS, pub_cls),
	                     A(CKA_KEY_TYPE, rsa),
	                     {CKA_MODULUS, nb, (CK_ULONG)nl},
	                     {CKA_PUBLIC_EXPONENT, eb, (CK_ULONG)elen},
	                     A(CKA_ENCRYPT, no),
	                     A(CKA_TOKEN, no)};
	assert_int_equal(f->C_CreateObject(rw, t2, 6, &v), CKR_OK);
	assert_int_equal(f->C_EncryptInit(rw, &oaep, v), CKR_KEY_FUNCTION_NOT_PERMITTED);
	BN_free(n);
	BN_free(e);
	EVP_PKEY_free(pk);
	assert_int_equal(f->C_CloseSession(rw), CKR_OK);
}

/* AES keys: generated (CKA_LOCAL), and one of a known value that wraps an
 * extractable private key (RFC 5649): OpenSSL unwraps the blob to the key
 * whose public point the token shows; the module unwraps it into a key
 * that signs for the original public key. */
static void
test_aes_wrap(void **state)
{
	CK_SESSION_HANDLE rw = open_session(true);
	CK_OBJECT_HANDLE g = 0, kek = 0, pub = 0, priv = 0, un = 0, ne = 0, nepub = 0;
	CK_MECHANISM gm = {CKM_AES_KEY_GEN, NULL, 0}, km = {CKM_EC_KEY_PAIR_GEN, NULL, 0};
	CK_MECHANISM wm = {CKM_AES_KEY_WRAP_PAD, NULL, 0}, sm = {CKM_ECDSA_SHA256, NULL, 0};
	CK_ULONG len32 = 32, wl = 0;
	CK_BBOOL local = CK_FALSE;
	uint8_t kv[32], wrapped[512], p8[512], point[80], sig[80];
	const uint8_t *pp = p8;
	int p8l = 0, fl = 0;
	CK_ULONG sl = sizeof(sig);
	EVP_CIPHER_CTX *x;
	EVP_CIPHER *kw;
	EVP_PKEY *back;
	size_t ptl = 0;
	uint8_t bpt[70];

	(void)state;
	login(rw);
	CK_ATTRIBUTE gt[] = {A(CKA_VALUE_LEN, len32), A(CKA_TOKEN, yes), S(CKA_LABEL, "aes-gen")};
	assert_int_equal(f->C_GenerateKey(rw, &gm, gt, 3, &g), CKR_OK);
	CK_ATTRIBUTE gr[] = {A(CKA_LOCAL, local)};
	assert_int_equal(f->C_GetAttributeValue(rw, g, gr, 1), CKR_OK);
	assert_true(local);
	/* CKA_VALUE_LEN is the generator's to need (footnote 3) */
	assert_int_equal(f->C_GenerateKey(rw, &gm, gt + 1, 2, &g), CKR_TEMPLATE_INCOMPLETE);

	for (size_t i = 0; i < sizeof(kv); i++)
		kv[i] = (uint8_t)(0xA0 ^ i);
	CK_ATTRIBUTE kt[] = {A(CKA_CLASS, sec_cls), A(CKA_KEY_TYPE, aes), A(CKA_VALUE, kv),
	                     A(CKA_WRAP, yes),      A(CKA_UNWRAP, yes),   A(CKA_TOKEN, no)};
	assert_int_equal(f->C_CreateObject(rw, kt, 6, &kek), CKR_OK);
	static uint8_t p256[] = {0x06, 0x08, 0x2A, 0x86, 0x48, 0xCE, 0x3D, 0x03, 0x01, 0x07};
	CK_ATTRIBUTE pt[] = {A(CKA_EC_PARAMS, p256), A(CKA_TOKEN, no), A(CKA_VERIFY, yes)};
	CK_ATTRIBUTE prt[] = {A(CKA_TOKEN, yes), A(CKA_SIGN, yes), A(CKA_EXTRACTABLE, yes),
	                      S(CKA_LABEL, "wrapped")};
	assert_int_equal(f->C_GenerateKeyPair(rw, &km, pt, 3, prt, 4, &pub, &priv), CKR_OK);
	assert_int_equal(f->C_WrapKey(rw, &wm, kek, priv, NULL, &wl), CKR_OK);
	assert_true(wl > 0 && wl <= sizeof(wrapped));
	assert_int_equal(f->C_WrapKey(rw, &wm, kek, priv, wrapped, &wl), CKR_OK);
	/* OpenSSL opens it with the AES key we know */
	x = EVP_CIPHER_CTX_new();
	kw = EVP_CIPHER_fetch(NULL, "AES-256-WRAP-PAD", NULL);
	assert_true(x != NULL && kw != NULL && EVP_DecryptInit_ex2(x, kw, kv, NULL, NULL) == 1 &&
	            EVP_DecryptUpdate(x, p8, &p8l, wrapped, (int)wl) == 1 &&
	            EVP_DecryptFinal_ex(x, p8 + p8l, &fl) == 1);
	EVP_CIPHER_CTX_free(x);
	EVP_CIPHER_free(kw);
	back = d2i_AutoPrivateKey(NULL, &pp, p8l + fl);
	assert_non_null(back);
	assert_int_equal(EVP_PKEY_get_octet_string_param(back, OSSL_PKEY_PARAM_ENCODED_PUBLIC_KEY,
	                                                 bpt, sizeof(bpt), &ptl),
	                 1);
	CK_ATTRIBUTE rp[] = {{CKA_EC_POINT, point, sizeof(point)}};
	assert_int_equal(f->C_GetAttributeValue(rw, pub, rp, 1), CKR_OK);
	assert_int_equal(rp[0].ulValueLen, ptl + 2);
	assert_memory_equal(point + 2, bpt, ptl);
	EVP_PKEY_free(back);
	/* the module unwraps it: a key that signs for the same public key */
	CK_KEY_TYPE ec_ = CKK_EC;
	CK_ATTRIBUTE ut[] = {A(CKA_CLASS, priv_cls), A(CKA_KEY_TYPE, ec_), A(CKA_TOKEN, no),
	                     A(CKA_SIGN, yes)};
	assert_int_equal(f->C_UnwrapKey(rw, &wm, kek, wrapped, wl, ut, 4, &un), CKR_OK);
	CK_ATTRIBUTE ur[] = {A(CKA_LOCAL, local)};
	assert_int_equal(f->C_GetAttributeValue(rw, un, ur, 1), CKR_OK);
	assert_false(local);
	assert_int_equal(f->C_SignInit(rw, &sm, un), CKR_OK);
	assert_int_equal(f->C_Sign(rw, (CK_BYTE_PTR) "unwrapped", 9, sig, &sl), CKR_OK);
	assert_int_equal(f->C_VerifyInit(rw, &sm, pub), CKR_OK);
	assert_int_equal(f->C_Verify(rw, (CK_BYTE_PTR) "unwrapped", 9, sig, sl), CKR_OK);
	/* a corrupted blob: CKR_WRAPPED_KEY_INVALID */
	wrapped[3] ^= 1;
	assert_int_equal(f->C_UnwrapKey(rw, &wm, kek, wrapped, wl, ut, 4, &un),
	                 CKR_WRAPPED_KEY_INVALID);
	/* a key that is not extractable (the default): CKR_KEY_UNEXTRACTABLE */
	CK_ATTRIBUTE nt[] = {A(CKA_TOKEN, no), A(CKA_SIGN, yes)};
	assert_int_equal(f->C_GenerateKeyPair(rw, &km, pt, 3, nt, 2, &nepub, &ne), CKR_OK);
	wl = sizeof(wrapped);
	assert_int_equal(f->C_WrapKey(rw, &wm, kek, ne, wrapped, &wl), CKR_KEY_UNEXTRACTABLE);
	assert_int_equal(f->C_CloseSession(rw), CKR_OK);
}

/* ---- two processes ------------------------------------------------------------------- */

/* The child: the module of another process, waiting for an object
 * labelled argv[2] to be there (or gone, argv[3] "gone"); prints "seen"
 * within 20 s, else "not seen". */
static int
watch(const char *label, bool gone)
{
	CK_SESSION_HANDLE h = 0;
	char line[8];

	CK_RV rv = CKR_GENERAL_ERROR;

	if (load_module() != 0 || (rv = f->C_Initialize(NULL)) != CKR_OK ||
	    (rv = f->C_OpenSession(SLOT, CKF_SERIAL_SESSION, NULL, NULL, &h)) != CKR_OK) {
		printf("start 0x%lx\n", (unsigned long)rv);
		fflush(stdout);
		return 2;
	}
	printf("ready\n");
	fflush(stdout);
	if (fgets(line, sizeof(line), stdin) == NULL)
		return 2;
	for (int i = 0; i < 400; i++) {
		CK_ATTRIBUTE t = {CKA_LABEL, (void *)(uintptr_t)label, strlen(label)};
		CK_OBJECT_HANDLE o;
		CK_ULONG n = 0;

		if ((rv = f->C_FindObjectsInit(h, &t, 1)) != CKR_OK ||
		    (rv = f->C_FindObjects(h, &o, 1, &n)) != CKR_OK ||
		    (rv = f->C_FindObjectsFinal(h)) != CKR_OK) {
			printf("find 0x%lx\n", (unsigned long)rv);
			fflush(stdout);
			return 2;
		}
		if ((n == 1) != gone) {
			printf("seen\n");
			fflush(stdout);
			f->C_Finalize(NULL);
			return 0;
		}
		struct timespec ts = {0, 50 * 1000 * 1000};
		nanosleep(&ts, NULL);
	}
	printf("not seen\n");
	fflush(stdout);
	f->C_Finalize(NULL);
	return 1;
}

/* Start the watcher; returns its pid, fds to write to and read from. */
static pid_t
spawn_watch(const char *label, bool gone, FILE **to, FILE **from)
{
	int in[2], out[2];
	pid_t pid;

	assert_int_equal(pipe(in), 0);
	assert_int_equal(pipe(out), 0);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		dup2(in[0], 0);
		dup2(out[1], 1);
		close(in[1]);
		close(out[0]);
		execl(self, self, "watch", label, gone ? "gone" : "there", (char *)NULL);
		_exit(127);
	}
	close(in[0]);
	close(out[1]);
	*to = fdopen(in[1], "w");
	*from = fdopen(out[0], "r");
	return pid;
}

static void
expect_line(FILE *from, const char *want)
{
	char line[32];

	assert_non_null(fgets(line, sizeof(line), from));
	line[strcspn(line, "\n")] = '\0';
	assert_string_equal(line, want);
}

static void
test_two_processes(void **state)
{
	CK_SESSION_HANDLE rw = open_session(true);
	CK_OBJECT_HANDLE o = 0;
	FILE *to, *from;
	int status = 0;
	pid_t pid;

	(void)state;
	pid = spawn_watch("shared", false, &to, &from);
	expect_line(from, "ready");
	CK_ATTRIBUTE t[] = {A(CKA_CLASS, data_cls), A(CKA_TOKEN, yes), S(CKA_LABEL, "shared")};
	assert_int_equal(f->C_CreateObject(rw, t, 3, &o), CKR_OK);
	fputs("go\n", to);
	fflush(to);
	expect_line(from, "seen");
	fclose(to);
	fclose(from);
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);

	pid = spawn_watch("shared", true, &to, &from);
	expect_line(from, "ready");
	assert_int_equal(f->C_DestroyObject(rw, o), CKR_OK);
	fputs("go\n", to);
	fflush(to);
	expect_line(from, "seen");
	fclose(to);
	fclose(from);
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	assert_int_equal(f->C_CloseSession(rw), CKR_OK);
}

int
main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_token_writable),     cmocka_unit_test(test_create_refusals),
	        cmocka_unit_test(test_token_object_life),  cmocka_unit_test(test_prohibited),
	        cmocka_unit_test(test_session_objects_go), cmocka_unit_test(test_secret_values),
	        cmocka_unit_test(test_generate),           cmocka_unit_test(test_encrypt),
	        cmocka_unit_test(test_aes_wrap),           cmocka_unit_test(test_two_processes),
	};

	if (argc == 4 && strcmp(argv[1], "watch") == 0)
		return watch(argv[2], strcmp(argv[3], "gone") == 0);
	return cmocka_run_group_tests(tests, setup, teardown);
}
