/* tk-p11-remote-client: a long-running PKCS#11 application, one command per
 * line on stdin, one answer line per command on stdout (test_p11kit_remote.sh
 * drives it through p11-kit's client module while the server side goes away
 * and comes back).
 *
 *   tk-p11-remote-client [--sigpipe default|ignore] MODULE
 *
 * With --sigpipe ignore (the default) SIGPIPE is ignored, as many network
 * programs do; with --sigpipe default it keeps its default action (the
 * process ends), as pkcs11-tool and most command-line programs leave it.
 *
 * Commands and their answers (RV is the CKR_ name, FN the PKCS#11 function
 * that answered it; a failed command names the first function that failed):
 *   init               C_Initialize            init RV
 *   finalize           C_Finalize              finalize RV
 *   slot               the first slot with a token:
 *                      slot CKR_OK SLOTID SERIAL | slot FN RV
 *   open               C_OpenSession (read-only) on that slot: open RV|open FN RV
 *   login              C_Login(CKU_USER, PIN):  login RV
 *   sessioninfo        C_GetSessionInfo:       sessioninfo CKR_OK STATE | sessioninfo FN RV
 *   sign ID IN OUT     CKM_ECDSA with the private key of CKA_ID ID (hex) over the
 *                      bytes of file IN (a hash); the signature is written to OUT
 *                      as DER (openssl's form): sign CKR_OK | sign FN RV
 *   quit               exits 0
 * The first line is "ready PID". PIN: $TK_PIN (123456). */
#include <dlfcn.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/bn.h>
#include <openssl/ecdsa.h>

#include <pkcs11-helper-1.0/pkcs11.h>

#include "../p11_load.h"

static CK_FUNCTION_LIST_PTR p11;
static CK_SLOT_ID slot;
static CK_SESSION_HANDLE sess = CK_INVALID_HANDLE;

static const char *
rv_name(CK_RV rv)
{
	static char other[32];

	switch (rv) {
	case CKR_OK:
		return "CKR_OK";
	case CKR_GENERAL_ERROR:
		return "CKR_GENERAL_ERROR";
	case CKR_FUNCTION_FAILED:
		return "CKR_FUNCTION_FAILED";
	case CKR_ARGUMENTS_BAD:
		return "CKR_ARGUMENTS_BAD";
	case CKR_DEVICE_ERROR:
		return "CKR_DEVICE_ERROR";
	case CKR_DEVICE_REMOVED:
		return "CKR_DEVICE_REMOVED";
	case CKR_TOKEN_NOT_PRESENT:
		return "CKR_TOKEN_NOT_PRESENT";
	case CKR_SLOT_ID_INVALID:
		return "CKR_SLOT_ID_INVALID";
	case CKR_SESSION_HANDLE_INVALID:
		return "CKR_SESSION_HANDLE_INVALID";
	case CKR_SESSION_CLOSED:
		return "CKR_SESSION_CLOSED";
	case CKR_USER_NOT_LOGGED_IN:
		return "CKR_USER_NOT_LOGGED_IN";
	case CKR_USER_ALREADY_LOGGED_IN:
		return "CKR_USER_ALREADY_LOGGED_IN";
	case CKR_PIN_INCORRECT:
		return "CKR_PIN_INCORRECT";
	case CKR_MECHANISM_INVALID:
		return "CKR_MECHANISM_INVALID";
	case CKR_OBJECT_HANDLE_INVALID:
		return "CKR_OBJECT_HANDLE_INVALID";
	case CKR_KEY_HANDLE_INVALID:
		return "CKR_KEY_HANDLE_INVALID";
	case CKR_OPERATION_ACTIVE:
		return "CKR_OPERATION_ACTIVE";
	case CKR_CRYPTOKI_NOT_INITIALIZED:
		return "CKR_CRYPTOKI_NOT_INITIALIZED";
	case CKR_CRYPTOKI_ALREADY_INITIALIZED:
		return "CKR_CRYPTOKI_ALREADY_INITIALIZED";
	default:
		snprintf(other, sizeof(other), "0x%lx", (unsigned long)rv);
		return other;
	}
}

static void answer(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static void
answer(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	putchar('\n');
	fflush(stdout);
}

/* the command's name, then "CKR_OK" or the failing function and its rv */
static void
answer_rv(const char *cmd, const char *fn, CK_RV rv)
{
	if (rv == CKR_OK)
		answer("%s CKR_OK", cmd);
	else
		answer("%s %s %s", cmd, fn, rv_name(rv));
}

static void
cmd_slot(void)
{
	CK_SLOT_ID list[16];
	CK_ULONG n = 16;
	CK_TOKEN_INFO ti;
	CK_RV rv = p11->C_GetSlotList(CK_TRUE, list, &n);

	if (rv != CKR_OK) {
		answer_rv("slot", "C_GetSlotList", rv);
		return;
	}
	if (n == 0) {
		answer("slot C_GetSlotList no-token");
		return;
	}
	rv = p11->C_GetTokenInfo(list[0], &ti);
	if (rv != CKR_OK) {
		answer_rv("slot", "C_GetTokenInfo", rv);
		return;
	}
	slot = list[0];
	n = sizeof(ti.serialNumber);
	while (n > 0 && ti.serialNumber[n - 1] == ' ')
		n--;
	answer("slot CKR_OK %lu %.*s", (unsigned long)slot, (int)n, (const char *)ti.serialNumber);
}

static const char *
state_name(CK_STATE s)
{
	switch (s) {
	case CKS_RO_PUBLIC_SESSION:
		return "RO_PUBLIC";
	case CKS_RO_USER_FUNCTIONS:
		return "RO_USER";
	case CKS_RW_PUBLIC_SESSION:
		return "RW_PUBLIC";
	case CKS_RW_USER_FUNCTIONS:
		return "RW_USER";
	case CKS_RW_SO_FUNCTIONS:
		return "RW_SO";
	default:
		return "?";
	}
}

static int
hex_id(const char *s, unsigned char *out, size_t max, size_t *len)
{
	size_t n = strlen(s);

	if (n == 0 || n % 2 != 0 || n / 2 > max)
		return -1;
	for (size_t i = 0; i < n / 2; i++) {
		unsigned int b;

		if (sscanf(s + 2 * i, "%2x", &b) != 1)
			return -1;
		out[i] = (unsigned char)b;
	}
	*len = n / 2;
	return 0;
}

/* r||s (two halves) to the DER SEQUENCE openssl verifies */
static int
write_der_sig(const char *path, const unsigned char *rs, size_t len)
{
	ECDSA_SIG *sig = ECDSA_SIG_new();
	BIGNUM *r = BN_bin2bn(rs, (int)(len / 2), NULL);
	BIGNUM *s = BN_bin2bn(rs + len / 2, (int)(len / 2), NULL);
	unsigned char *der = NULL;
	int dlen = -1;
	FILE *f;

	if (sig == NULL || r == NULL || s == NULL || ECDSA_SIG_set0(sig, r, s) != 1) {
		BN_free(r);
		BN_free(s);
		ECDSA_SIG_free(sig);
		return -1;
	}
	dlen = i2d_ECDSA_SIG(sig, &der);
	ECDSA_SIG_free(sig);
	if (dlen <= 0)
		return -1;
	f = fopen(path, "wb");
	if (f == NULL || fwrite(der, 1, (size_t)dlen, f) != (size_t)dlen) {
		if (f != NULL)
			fclose(f);
		OPENSSL_free(der);
		return -1;
	}
	OPENSSL_free(der);
	return fclose(f) == 0 ? 0 : -1;
}

static void
cmd_sign(const char *idhex, const char *in, const char *out)
{
	CK_OBJECT_CLASS cls = CKO_PRIVATE_KEY;
	unsigned char id[32], data[128], sig[512];
	size_t idlen = 0, dlen;
	CK_ATTRIBUTE t[2] = {{CKA_CLASS, &cls, sizeof(cls)}, {CKA_ID, id, 0}};
	CK_OBJECT_HANDLE key;
	CK_ULONG n = 0, slen = sizeof(sig);
	CK_MECHANISM mech = {CKM_ECDSA, NULL, 0};
	FILE *f;
	CK_RV rv;

	if (hex_id(idhex, id, sizeof(id), &idlen) != 0) {
		answer("sign bad-id");
		return;
	}
	t[1].ulValueLen = idlen;
	f = fopen(in, "rb");
	if (f == NULL) {
		answer("sign cannot-read %s", in);
		return;
	}
	dlen = fread(data, 1, sizeof(data), f);
	fclose(f);
	rv = p11->C_FindObjectsInit(sess, t, 2);
	if (rv != CKR_OK) {
		answer_rv("sign", "C_FindObjectsInit", rv);
		return;
	}
	rv = p11->C_FindObjects(sess, &key, 1, &n);
	(void)p11->C_FindObjectsFinal(sess);
	if (rv != CKR_OK) {
		answer_rv("sign", "C_FindObjects", rv);
		return;
	}
	if (n != 1) {
		answer("sign C_FindObjects no-key");
		return;
	}
	rv = p11->C_SignInit(sess, &mech, key);
	if (rv != CKR_OK) {
		answer_rv("sign", "C_SignInit", rv);
		return;
	}
	rv = p11->C_Sign(sess, data, (CK_ULONG)dlen, sig, &slen);
	if (rv != CKR_OK) {
		answer_rv("sign", "C_Sign", rv);
		return;
	}
	if (slen == 0 || slen % 2 != 0 || write_der_sig(out, sig, slen) != 0) {
		answer("sign C_Sign bad-signature-length %lu", (unsigned long)slen);
		return;
	}
	answer("sign CKR_OK");
}

static void
run(char *line)
{
	char *w[4] = {NULL, NULL, NULL, NULL};
	int nw = 0;
	const char *env_pin = getenv("TK_PIN");
	char pin[64];
	CK_C_INITIALIZE_ARGS args = {NULL, NULL, NULL, NULL, CKF_OS_LOCKING_OK, NULL};
	CK_SESSION_INFO si;
	CK_RV rv;

	for (char *save = NULL, *tok = strtok_r(line, " \t\r\n", &save); tok != NULL && nw < 4;
	     tok = strtok_r(NULL, " \t\r\n", &save))
		w[nw++] = tok;
	if (nw == 0)
		return;
	snprintf(pin, sizeof(pin), "%s", env_pin != NULL ? env_pin : "123456");
	if (strcmp(w[0], "init") == 0) {
		answer("init %s", rv_name(p11->C_Initialize(&args)));
	} else if (strcmp(w[0], "finalize") == 0) {
		sess = CK_INVALID_HANDLE;
		answer("finalize %s", rv_name(p11->C_Finalize(NULL)));
	} else if (strcmp(w[0], "slot") == 0) {
		cmd_slot();
	} else if (strcmp(w[0], "open") == 0) {
		rv = p11->C_OpenSession(slot, CKF_SERIAL_SESSION, NULL, NULL, &sess);
		answer_rv("open", "C_OpenSession", rv);
	} else if (strcmp(w[0], "login") == 0) {
		rv = p11->C_Login(sess, CKU_USER, (CK_UTF8CHAR_PTR)pin, (CK_ULONG)strlen(pin));
		answer_rv("login", "C_Login", rv);
	} else if (strcmp(w[0], "sessioninfo") == 0) {
		rv = p11->C_GetSessionInfo(sess, &si);
		if (rv == CKR_OK)
			answer("sessioninfo CKR_OK %s", state_name(si.state));
		else
			answer_rv("sessioninfo", "C_GetSessionInfo", rv);
	} else if (strcmp(w[0], "sign") == 0 && nw == 4) {
		cmd_sign(w[1], w[2], w[3]);
	} else if (strcmp(w[0], "quit") == 0) {
		answer("quit");
		exit(0);
	} else {
		answer("unknown %s", w[0]);
	}
}

int
main(int argc, char **argv)
{
	const char *module = NULL;
	char line[1024];
	bool bad = false;

	signal(SIGPIPE, SIG_IGN);
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--sigpipe") == 0 && i + 1 < argc) {
			i++;
			if (strcmp(argv[i], "default") == 0)
				signal(SIGPIPE, SIG_DFL);
			else if (strcmp(argv[i], "ignore") != 0)
				bad = true;
		} else if (module == NULL) {
			module = argv[i];
		} else {
			bad = true;
		}
	}
	if (module == NULL || bad) {
		fprintf(stderr, "usage: tk-p11-remote-client [--sigpipe default|ignore] MODULE\n");
		return 2;
	}
	if ((p11 = tk_test_p11_load("tk-p11-remote-client", module)) == NULL)
		return 2;
	answer("ready %d", (int)getpid());
	while (fgets(line, sizeof(line), stdin) != NULL)
		run(line);
	return 0;
}
