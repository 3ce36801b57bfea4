/* ccid-p11-pad: the PKCS#11 calls of a PIN pad, for test_ccid_stack.sh.
 *
 *   ccid-p11-pad MODULE setpin     C_SetPIN(NULL, 0, NULL, 0) in a R/W session
 *   ccid-p11-pad MODULE setpin-ro  the same in a read-only session
 *   ccid-p11-pad MODULE login      C_Login(CKU_USER, NULL, 0)
 *
 * on the first slot with a token. Prints the call's result ("C_SetPIN:
 * CKR_PIN_INCORRECT") and exits 0 for CKR_OK, else 1. It always ends with
 * C_Finalize, also after an error: pkcs11-tool leaves without it after a
 * failed call and after --change-pin, and under umockdev the emulated
 * reader keeps the USB claim of a process that exits without releasing it
 * (the kernel would drop it), so the next process of the direct run would
 * find the reader held. */
#include <dlfcn.h>
#include <stdio.h>
#include <string.h>

#include <pkcs11-helper-1.0/pkcs11.h>

static const char *
rv_name(CK_RV rv)
{
	switch (rv) {
	case CKR_OK:
		return "CKR_OK";
	case CKR_PIN_INCORRECT:
		return "CKR_PIN_INCORRECT";
	case CKR_PIN_LOCKED:
		return "CKR_PIN_LOCKED";
	case CKR_FUNCTION_CANCELED:
		return "CKR_FUNCTION_CANCELED";
	case CKR_ARGUMENTS_BAD:
		return "CKR_ARGUMENTS_BAD";
	case CKR_SESSION_READ_ONLY:
		return "CKR_SESSION_READ_ONLY";
	default:
		return "another code";
	}
}

int
main(int argc, char **argv)
{
	CK_FUNCTION_LIST_PTR p = NULL;
	CK_C_GetFunctionList gfl;
	CK_SLOT_ID slots[16];
	CK_ULONG n = 16;
	CK_SESSION_HANDLE s = CK_INVALID_HANDLE;
	CK_RV rv;
	const char *call;
	void *lib;

	if (argc != 3 || (strcmp(argv[2], "setpin") != 0 && strcmp(argv[2], "setpin-ro") != 0 &&
	                  strcmp(argv[2], "login") != 0)) {
		fprintf(stderr, "usage: ccid-p11-pad MODULE setpin|setpin-ro|login\n");
		return 2;
	}
	call = strcmp(argv[2], "login") == 0 ? "C_Login" : "C_SetPIN";
	if ((lib = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL)) == NULL) {
		fprintf(stderr, "ccid-p11-pad: %s\n", dlerror());
		return 2;
	}
	*(void **)&gfl = dlsym(lib, "C_GetFunctionList");
	if (gfl == NULL || gfl(&p) != CKR_OK || p->C_Initialize(NULL) != CKR_OK) {
		fprintf(stderr, "ccid-p11-pad: the module does not start\n");
		return 2;
	}
	rv = p->C_GetSlotList(CK_TRUE, slots, &n);
	if (rv == CKR_OK && n == 0)
		rv = CKR_TOKEN_NOT_PRESENT;
	if (rv == CKR_OK && strcmp(argv[2], "setpin-ro") == 0)
		rv = p->C_OpenSession(slots[0], CKF_SERIAL_SESSION, NULL, NULL, &s);
	else if (rv == CKR_OK)
		rv = p->C_OpenSession(slots[0], CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL,
		                      &s);
	if (rv != CKR_OK) {
		fprintf(stderr, "ccid-p11-pad: no session: 0x%lx\n", (unsigned long)rv);
		p->C_Finalize(NULL);
		return 2;
	}
	if (strcmp(argv[2], "login") == 0)
		rv = p->C_Login(s, CKU_USER, NULL, 0);
	else
		rv = p->C_SetPIN(s, NULL, 0, NULL, 0);
	printf("%s: %s (0x%lx)\n", call, rv_name(rv), (unsigned long)rv);
	p->C_CloseSession(s);
	p->C_Finalize(NULL);
	return rv == CKR_OK ? 0 : 1;
}
