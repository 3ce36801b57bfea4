/* tk-p11-soft-keys: a software token's key management through a module
 * (embedded or in broker mode): C_GenerateKey (an AES key-wrapping key),
 * C_GenerateKeyPair (EC P-256, extractable), C_WrapKey (length query, then
 * the key; CKM_AES_KEY_WRAP_PAD), C_UnwrapKey, C_CopyObject of the
 * unwrapped key, and a signature with the copy that OpenSSL verifies with
 * the public key of the key that was wrapped; then too-small buffers that
 * add up to more than one broker answer carries (C_GetAttributeValue). Session
 * objects only.
 *
 *   tk-p11-soft-keys MODULE TOKEN-LABEL PIN
 *
 * One line per step, "ok ..." or "FAIL ..."; exit 1 when a step failed, 2
 * when the token could not be used. */
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/asn1.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/params.h>
#include <openssl/sha.h>

#include <pkcs11-helper-1.0/pkcs11.h>

#include "../p11_load.h"

static CK_FUNCTION_LIST_PTR f;

static int
step(const char *what, CK_RV rv)
{
	printf("%s %s: 0x%lx\n", rv == CKR_OK ? "ok  " : "FAIL", what, (unsigned long)rv);
	return rv == CKR_OK ? 0 : 1;
}

/* The slot of the token labelled label (blank-padded in CK_TOKEN_INFO). */
static int
find_token(const char *label, CK_SLOT_ID *out)
{
	CK_SLOT_ID slots[32];
	CK_ULONG n = 32;
	CK_TOKEN_INFO ti;
	char want[32];

	memset(want, ' ', sizeof(want));
	memcpy(want, label, strlen(label) < 32 ? strlen(label) : 32);
	if (f->C_GetSlotList(CK_TRUE, slots, &n) != CKR_OK)
		return -1;
	for (CK_ULONG i = 0; i < n; i++)
		if (f->C_GetTokenInfo(slots[i], &ti) == CKR_OK &&
		    memcmp(ti.label, want, sizeof(want)) == 0) {
			*out = slots[i];
			return 0;
		}
	return -1;
}

/* Verify the (r || s) P-256 signature sig over digest with the public key
 * whose CKA_EC_POINT (a DER OCTET STRING) is point. */
static int
verify(CK_BYTE *point, CK_ULONG plen, const CK_BYTE *digest, const CK_BYTE *sig)
{
	const unsigned char *q = point;
	unsigned char *der = NULL;
	long len = 0;
	int tag, cls, derlen, ok = 0;
	char group[] = "prime256v1";
	EVP_PKEY *pk = NULL;
	EVP_PKEY_CTX *pc = NULL, *vc = NULL;
	ECDSA_SIG *es = ECDSA_SIG_new();

	if (es == NULL || (ASN1_get_object(&q, &len, &tag, &cls, (long)plen) & 0x80) ||
	    tag != V_ASN1_OCTET_STRING ||
	    ECDSA_SIG_set0(es, BN_bin2bn(sig, 32, NULL), BN_bin2bn(sig + 32, 32, NULL)) != 1 ||
	    (derlen = i2d_ECDSA_SIG(es, &der)) <= 0)
		goto out;
	OSSL_PARAM params[] = {
	        OSSL_PARAM_construct_utf8_string(OSSL_PKEY_PARAM_GROUP_NAME, group, 0),
	        OSSL_PARAM_construct_octet_string(OSSL_PKEY_PARAM_PUB_KEY, point + (q - point),
	                                          (size_t)len),
	        OSSL_PARAM_construct_end()};
	if ((pc = EVP_PKEY_CTX_new_from_name(NULL, "EC", NULL)) == NULL ||
	    EVP_PKEY_fromdata_init(pc) != 1 ||
	    EVP_PKEY_fromdata(pc, &pk, EVP_PKEY_PUBLIC_KEY, params) != 1 ||
	    (vc = EVP_PKEY_CTX_new(pk, NULL)) == NULL || EVP_PKEY_verify_init(vc) != 1)
		goto out;
	ok = EVP_PKEY_verify(vc, der, (size_t)derlen, digest, 32) == 1;
out:
	EVP_PKEY_CTX_free(vc);
	EVP_PKEY_CTX_free(pc);
	EVP_PKEY_free(pk);
	OPENSSL_free(der);
	ECDSA_SIG_free(es);
	return ok;
}

/* Too-small buffers that add up to more than one broker answer carries
 * (20 x 59 KiB for a 60 KiB value, a session data object's CKA_VALUE; the
 * software token keeps values up to 64 KiB):
 * CKR_BUFFER_TOO_SMALL and CK_UNAVAILABLE_INFORMATION for each, as
 * embedded, and the value that fits beside them (the broker once answered
 * CKR_HOST_MEMORY: it counted each too-small buffer at its full size). */
#define DATA_LEN (60u * 1024u)
#define SHORT_BUF (59u * 1024u)
#define N_SHORT 20

static int
too_small_buffers(CK_SESSION_HANDLE s)
{
	CK_OBJECT_CLASS cls = CKO_DATA;
	CK_BBOOL no = CK_FALSE;
	CK_BYTE *value = malloc(DATA_LEN);
	char label[] = "too small";
	CK_ATTRIBUTE tmpl[] = {{CKA_CLASS, &cls, sizeof(cls)},
	                       {CKA_TOKEN, &no, sizeof(no)},
	                       {CKA_LABEL, label, sizeof(label) - 1},
	                       {CKA_VALUE, value, DATA_LEN}};
	CK_ATTRIBUTE t[N_SHORT + 1];
	CK_OBJECT_HANDLE obj;
	CK_RV rv;
	int failed = 0;

	if (value == NULL)
		abort();
	for (size_t i = 0; i < DATA_LEN; i++)
		value[i] = (CK_BYTE)(i * 7);
	rv = f->C_CreateObject(s, tmpl, 4, &obj);
	free(value);
	if (step("C_CreateObject, a 60 KiB session data object", rv) != 0)
		return 1;
	for (int i = 0; i < N_SHORT; i++) {
		t[i] = (CK_ATTRIBUTE){CKA_VALUE, malloc(SHORT_BUF), SHORT_BUF};
		if (t[i].pValue == NULL)
			abort();
	}
	t[N_SHORT] = (CK_ATTRIBUTE){CKA_LABEL, calloc(1, 64), 64};
	rv = f->C_GetAttributeValue(s, obj, t, N_SHORT + 1);
	if (rv != CKR_BUFFER_TOO_SMALL) {
		printf("FAIL C_GetAttributeValue, 20 x 59 KiB buffers for a 60 KiB value: 0x%lx, "
		       "want CKR_BUFFER_TOO_SMALL\n",
		       (unsigned long)rv);
		failed = 1;
	}
	for (int i = 0; i < N_SHORT; i++) {
		if (t[i].ulValueLen != CK_UNAVAILABLE_INFORMATION) {
			printf("FAIL too small buffer %d: %lu bytes, want "
			       "CK_UNAVAILABLE_INFORMATION\n",
			       i, (unsigned long)t[i].ulValueLen);
			failed = 1;
		}
		free(t[i].pValue);
	}
	if (t[N_SHORT].ulValueLen != sizeof(label) - 1 ||
	    memcmp(t[N_SHORT].pValue, label, sizeof(label) - 1) != 0) {
		printf("FAIL the label beside them: %lu bytes\n",
		       (unsigned long)t[N_SHORT].ulValueLen);
		failed = 1;
	}
	free(t[N_SHORT].pValue);
	if (!failed)
		printf("ok   C_GetAttributeValue, 20 x 59 KiB buffers for a 60 KiB value: "
		       "CKR_BUFFER_TOO_SMALL\n");
	return failed | step("C_DestroyObject", f->C_DestroyObject(s, obj));
}

int
main(int argc, char **argv)
{
	static CK_BYTE p256[] = {0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07};
	CK_BBOOL yes = CK_TRUE, no = CK_FALSE;
	CK_ULONG aes_len = 32;
	CK_OBJECT_CLASS priv_class = CKO_PRIVATE_KEY;
	CK_KEY_TYPE ec = CKK_EC;
	CK_MECHANISM aes_gen = {CKM_AES_KEY_GEN, NULL, 0}, ec_gen = {CKM_EC_KEY_PAIR_GEN, NULL, 0},
	             wrap = {CKM_AES_KEY_WRAP_PAD, NULL, 0}, ecdsa = {CKM_ECDSA, NULL, 0};
	CK_ATTRIBUTE kek_t[] = {{CKA_TOKEN, &no, sizeof(no)},
	                        {CKA_VALUE_LEN, &aes_len, sizeof(aes_len)},
	                        {CKA_WRAP, &yes, sizeof(yes)},
	                        {CKA_UNWRAP, &yes, sizeof(yes)}};
	CK_ATTRIBUTE pub_t[] = {{CKA_TOKEN, &no, sizeof(no)},
	                        {CKA_EC_PARAMS, p256, sizeof(p256)},
	                        {CKA_VERIFY, &yes, sizeof(yes)}};
	CK_ATTRIBUTE priv_t[] = {{CKA_TOKEN, &no, sizeof(no)},
	                         {CKA_SIGN, &yes, sizeof(yes)},
	                         {CKA_EXTRACTABLE, &yes, sizeof(yes)},
	                         {CKA_SENSITIVE, &yes, sizeof(yes)}};
	CK_ATTRIBUTE unwrap_t[] = {{CKA_TOKEN, &no, sizeof(no)},
	                           {CKA_CLASS, &priv_class, sizeof(priv_class)},
	                           {CKA_KEY_TYPE, &ec, sizeof(ec)},
	                           {CKA_SIGN, &yes, sizeof(yes)},
	                           {CKA_LABEL, "unwrapped", 9}};
	CK_ATTRIBUTE copy_t[] = {{CKA_LABEL, "copy", 4}};
	CK_OBJECT_HANDLE kek, pub, priv, unwrapped, copy;
	CK_BYTE wrapped[4096], point[128], digest[32], sig[64];
	CK_ULONG wlen = 0, slen = sizeof(sig);
	CK_ATTRIBUTE pt = {CKA_EC_POINT, point, sizeof(point)};
	CK_SLOT_ID slot;
	CK_SESSION_HANDLE s;
	int failed = 0;

	if (argc != 4) {
		fprintf(stderr, "usage: tk-p11-soft-keys MODULE TOKEN-LABEL PIN\n");
		return 2;
	}
	if ((f = tk_test_p11_load("tk-p11-soft-keys", argv[1])) == NULL ||
	    f->C_Initialize(NULL) != CKR_OK || find_token(argv[2], &slot) != 0 ||
	    f->C_OpenSession(slot, CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL, &s) != CKR_OK ||
	    f->C_Login(s, CKU_USER, (CK_UTF8CHAR_PTR)argv[3], strlen(argv[3])) != CKR_OK) {
		fprintf(stderr, "tk-p11-soft-keys: no logged-in session on token %s\n", argv[2]);
		return 2;
	}
	failed |= step("C_GenerateKey (AES-256, wrap)",
	               f->C_GenerateKey(s, &aes_gen, kek_t, 4, &kek));
	failed |= step("C_GenerateKeyPair (EC P-256, extractable)",
	               f->C_GenerateKeyPair(s, &ec_gen, pub_t, 3, priv_t, 4, &pub, &priv));
	if (failed)
		return 1;
	failed |= step("C_WrapKey, length", f->C_WrapKey(s, &wrap, kek, priv, NULL, &wlen));
	if (wlen == 0 || wlen > sizeof(wrapped)) {
		printf("FAIL C_WrapKey length %lu\n", (unsigned long)wlen);
		return 1;
	}
	failed |= step("C_WrapKey", f->C_WrapKey(s, &wrap, kek, priv, wrapped, &wlen));
	failed |= step("C_UnwrapKey",
	               f->C_UnwrapKey(s, &wrap, kek, wrapped, wlen, unwrap_t, 5, &unwrapped));
	failed |= step("C_CopyObject", f->C_CopyObject(s, unwrapped, copy_t, 1, &copy));
	if (failed)
		return 1;
	SHA256((const unsigned char *)"tokenkit", 8, digest);
	failed |= step("C_SignInit with the copy", f->C_SignInit(s, &ecdsa, copy));
	failed |= step("C_Sign", f->C_Sign(s, digest, sizeof(digest), sig, &slen));
	failed |= step("C_GetAttributeValue(CKA_EC_POINT)", f->C_GetAttributeValue(s, pub, &pt, 1));
	if (!failed && (slen != 64 || !verify(point, pt.ulValueLen, digest, sig))) {
		printf("FAIL the signature does not verify with the wrapped key's public key\n");
		failed = 1;
	} else if (!failed) {
		printf("ok   the signature verifies (OpenSSL) with the wrapped key's public key\n");
	}
	failed |= too_small_buffers(s);
	f->C_Logout(s);
	f->C_CloseSession(s);
	f->C_Finalize(NULL);
	return failed;
}
