/* tk-p11-op-errors: what an error does to an operation, and
 * C_SessionCancel, against a module (embedded or in broker mode: the
 * answers must be the same).
 *
 *   tk-p11-op-errors MODULE
 *
 * PKCS#11 3.0 section 5.2: an error other than CKR_BUFFER_TOO_SMALL ends
 * the active operation, so the call after one with bad arguments answers
 * CKR_OPERATION_NOT_INITIALIZED (in broker mode the client refuses such
 * arguments itself and must end the broker's operation as well);
 * C_SessionCancel ends the operations its flags name; an invalid session
 * is reported before bad arguments (C_GenerateKey); a certificate's
 * attributes read with buffers far larger than their values (more in all
 * than one broker answer carries: the broker reads the sizes first) give
 * the values read with buffers of their exact sizes, and a buffer too
 * small or an attribute a certificate lacks still answers as PKCS#11 3.0
 * section 5.7 says (C_GetAttributeValue). One line per check,
 * "ok ..." or "FAIL ..."; exit 1 when any failed, 2 when the module or a
 * token could not be used. Needs a token in some slot (no login). */
#include <dlfcn.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <pkcs11-helper-1.0/pkcs11.h>

static CK_FUNCTION_LIST_3_0_PTR f;
static int failed;

static void
expect(const char *what, CK_RV want, CK_RV got)
{
	if (got == want) {
		printf("ok   %s: 0x%lx\n", what, (unsigned long)got);
	} else {
		printf("FAIL %s: 0x%lx, want 0x%lx\n", what, (unsigned long)got,
		       (unsigned long)want);
		failed = 1;
	}
}

static CK_FUNCTION_LIST_3_0_PTR
load(const char *path)
{
	CK_C_GetInterface gi;
	CK_INTERFACE_PTR itf = NULL;
	CK_VERSION v3 = {3, 0};
	void *lib = dlopen(path, RTLD_NOW | RTLD_LOCAL);

	if (lib == NULL) {
		fprintf(stderr, "tk-p11-op-errors: %s\n", dlerror());
		return NULL;
	}
	*(void **)&gi = dlsym(lib, "C_GetInterface");
	if (gi == NULL || gi((CK_UTF8CHAR_PTR) "PKCS 11", &v3, &itf, 0) != CKR_OK || itf == NULL) {
		fprintf(stderr, "tk-p11-op-errors: no PKCS #11 3.0 interface in %s\n", path);
		return NULL;
	}
	return itf->pFunctionList;
}

/* Attributes of a certificate, each read alone with a buffer of its size;
 * then all at once with BIG bytes for each, one of them with a buffer too
 * small or one attribute a certificate has not. */
#define N_ATTR 6
#define BIG (300u * 1024u)

static void
big_buffers(CK_SESSION_HANDLE s)
{
	static const CK_ATTRIBUTE_TYPE types[N_ATTR] = {CKA_VALUE,   CKA_LABEL,  CKA_ID,
	                                                CKA_SUBJECT, CKA_ISSUER, CKA_CLASS};
	CK_OBJECT_CLASS cls = CKO_CERTIFICATE;
	CK_ATTRIBUTE find = {CKA_CLASS, &cls, sizeof(cls)};
	CK_ATTRIBUTE ref[N_ATTR], t[N_ATTR + 1];
	CK_OBJECT_HANDLE cert;
	CK_ULONG found = 0;
	char what[64];

	if (f->C_FindObjectsInit(s, &find, 1) != CKR_OK ||
	    f->C_FindObjects(s, &cert, 1, &found) != CKR_OK || f->C_FindObjectsFinal(s) != CKR_OK ||
	    found != 1) {
		printf("FAIL no certificate on the token\n");
		failed = 1;
		return;
	}
	for (int i = 0; i < N_ATTR; i++) {
		ref[i] = (CK_ATTRIBUTE){types[i], NULL, 0};
		expect("C_GetAttributeValue, a size", CKR_OK,
		       f->C_GetAttributeValue(s, cert, &ref[i], 1));
		ref[i].pValue = malloc(ref[i].ulValueLen + 1);
		expect("C_GetAttributeValue, a value", CKR_OK,
		       f->C_GetAttributeValue(s, cert, &ref[i], 1));
	}
	for (int round = 0; round < 3; round++) {
		CK_ULONG n = round == 2 ? N_ATTR + 1 : N_ATTR;

		for (CK_ULONG i = 0; i < n; i++) {
			t[i] = (CK_ATTRIBUTE){i < N_ATTR ? types[i] : CKA_MODULUS, calloc(1, BIG),
			                      BIG};
			if (t[i].pValue == NULL)
				abort();
		}
		if (round == 1)
			t[0].ulValueLen = ref[0].ulValueLen - 1; /* CKA_VALUE: one byte short */
		snprintf(what, sizeof(what), "C_GetAttributeValue, %lu KiB buffers%s",
		         (unsigned long)(BIG / 1024),
		         round == 1   ? ", one too small"
		         : round == 2 ? ", one type invalid"
		                      : "");
		expect(what,
		       round == 0   ? CKR_OK
		       : round == 1 ? CKR_BUFFER_TOO_SMALL
		                    : CKR_ATTRIBUTE_TYPE_INVALID,
		       f->C_GetAttributeValue(s, cert, t, n));
		for (CK_ULONG i = 0; i < n; i++) {
			bool unavailable = (round == 1 && i == 0) || i == N_ATTR;
			bool same = unavailable ? t[i].ulValueLen == CK_UNAVAILABLE_INFORMATION
			                        : t[i].ulValueLen == ref[i].ulValueLen &&
			                                  memcmp(t[i].pValue, ref[i].pValue,
			                                         ref[i].ulValueLen) == 0;

			if (!same) {
				printf("FAIL %s: attribute 0x%lx: %lu bytes%s\n", what,
				       (unsigned long)t[i].type, (unsigned long)t[i].ulValueLen,
				       unavailable ? ", want CK_UNAVAILABLE_INFORMATION"
				                   : " or another value than read alone");
				failed = 1;
			}
			free(t[i].pValue);
		}
	}
	for (int i = 0; i < N_ATTR; i++)
		free(ref[i].pValue);
}

int
main(int argc, char **argv)
{
	CK_MECHANISM sha = {CKM_SHA256, NULL, 0}, aes = {CKM_AES_KEY_GEN, NULL, 0};
	CK_SLOT_ID slots[16];
	CK_ULONG nslots = 16, len;
	CK_SESSION_HANDLE s;
	CK_OBJECT_HANDLE key;
	CK_BYTE data[] = "tokenkit", out[64];
	CK_ATTRIBUTE none[1] = {{CKA_CLASS, NULL, 0}};

	if (argc != 2) {
		fprintf(stderr, "usage: tk-p11-op-errors MODULE\n");
		return 2;
	}
	if ((f = load(argv[1])) == NULL || f->C_Initialize(NULL) != CKR_OK ||
	    f->C_GetSlotList(CK_TRUE, slots, &nslots) != CKR_OK || nslots == 0 ||
	    f->C_OpenSession(slots[0], CKF_SERIAL_SESSION, NULL, NULL, &s) != CKR_OK) {
		fprintf(stderr, "tk-p11-op-errors: no session on a token\n");
		return 2;
	}

	/* bad arguments end the operation */
	expect("C_DigestInit", CKR_OK, f->C_DigestInit(s, &sha));
	expect("C_Digest, no length", CKR_ARGUMENTS_BAD,
	       f->C_Digest(s, data, sizeof(data), out, NULL));
	len = sizeof(out);
	expect("C_Digest after it", CKR_OPERATION_NOT_INITIALIZED,
	       f->C_Digest(s, data, sizeof(data), out, &len));
	expect("C_DigestInit", CKR_OK, f->C_DigestInit(s, &sha));
	expect("C_DigestUpdate, no data", CKR_ARGUMENTS_BAD, f->C_DigestUpdate(s, NULL, 5));
	expect("C_DigestUpdate after it", CKR_OPERATION_NOT_INITIALIZED,
	       f->C_DigestUpdate(s, data, sizeof(data)));
	expect("C_DigestInit", CKR_OK, f->C_DigestInit(s, &sha));
	expect("C_DigestFinal, no length", CKR_ARGUMENTS_BAD, f->C_DigestFinal(s, out, NULL));
	len = sizeof(out);
	expect("C_DigestFinal after it", CKR_OPERATION_NOT_INITIALIZED,
	       f->C_DigestFinal(s, out, &len));
	/* ... and the same operation can start again, and works */
	expect("C_DigestInit again", CKR_OK, f->C_DigestInit(s, &sha));
	len = sizeof(out);
	expect("C_Digest", CKR_OK, f->C_Digest(s, data, sizeof(data), out, &len));
	if (len != 32) {
		printf("FAIL C_Digest: %lu bytes, want 32\n", (unsigned long)len);
		failed = 1;
	}

	/* C_SessionCancel */
	expect("C_DigestInit", CKR_OK, f->C_DigestInit(s, &sha));
	expect("C_SessionCancel(CKF_DIGEST)", CKR_OK, f->C_SessionCancel(s, CKF_DIGEST));
	expect("C_DigestUpdate after it", CKR_OPERATION_NOT_INITIALIZED,
	       f->C_DigestUpdate(s, data, sizeof(data)));
	expect("C_DigestInit after it", CKR_OK, f->C_DigestInit(s, &sha));
	expect("C_SessionCancel(CKF_SIGN) leaves the digest", CKR_OK,
	       f->C_SessionCancel(s, CKF_SIGN));
	expect("C_DigestUpdate", CKR_OK, f->C_DigestUpdate(s, data, sizeof(data)));
	expect("C_SessionCancel(CKF_DIGEST)", CKR_OK, f->C_SessionCancel(s, CKF_DIGEST));
	expect("C_FindObjectsInit", CKR_OK, f->C_FindObjectsInit(s, NULL, 0));
	expect("C_SessionCancel(CKF_FIND_OBJECTS)", CKR_OK,
	       f->C_SessionCancel(s, CKF_FIND_OBJECTS));
	expect("C_FindObjectsFinal after it", CKR_OPERATION_NOT_INITIALIZED,
	       f->C_FindObjectsFinal(s));
	expect("C_SessionCancel, invalid session", CKR_SESSION_HANDLE_INVALID,
	       f->C_SessionCancel(s + 99999, CKF_DIGEST));

	/* an invalid session before bad arguments */
	expect("C_GenerateKey, invalid session", CKR_SESSION_HANDLE_INVALID,
	       f->C_GenerateKey(s + 99999, &aes, none, 0, &key));
	expect("C_GenerateKey, no mechanism", CKR_ARGUMENTS_BAD,
	       f->C_GenerateKey(s, NULL, none, 0, &key));
	expect("C_GenerateKey, no handle", CKR_ARGUMENTS_BAD,
	       f->C_GenerateKey(s, &aes, none, 0, NULL));

	big_buffers(s);

	f->C_CloseSession(s);
	f->C_Finalize(NULL);
	return failed;
}
