/* p11_rss: memory of a process using a PKCS#11 module while its card comes
 * and goes (issue 8 §4; tests/integration/test_p11_rss.sh).
 *
 *   p11_rss MODULE --slot ID --cycles N [--session] [--pin PIN]
 *           (--remove CMD --insert CMD | --restart CMD) [--no-finalize]
 *
 * One cycle: --remove CMD, wait until slot ID shows no token,
 * --insert CMD, wait until C_GetTokenInfo works there; or --restart CMD
 * (say, restart pcscd), then wait until the slot had an event and its
 * token is back. With --session the process keeps a session on that token
 * (reopened when the card came back as a new token), logs in and makes an
 * ECDSA signature with the first private key each cycle; without it, it
 * never touches that token beyond C_GetTokenInfo. After each cycle it
 * prints "cycle I rss_kb=R heap_kb=H threads=T arenas=A" (VmRSS; heap bytes
 * in use over all malloc arenas; threads of the process; malloc arenas) and
 * at the end one "summary" line. It judges nothing: the test reads the figures. */
#include <dirent.h>
#include <dlfcn.h>
#include <getopt.h>
#include <malloc.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <pkcs11-helper-1.0/pkcs11.h>

#include "clock.h" /* core: tk_now_ms */

#define WAIT_MS 20000

static CK_FUNCTION_LIST_PTR p11;

static long
status_kb(const char *key)
{
	char line[256];
	size_t n = strlen(key);
	long v = -1;
	FILE *f = fopen("/proc/self/status", "r");

	if (f == NULL)
		return -1;
	while (fgets(line, sizeof(line), f) != NULL)
		if (strncmp(line, key, n) == 0 && line[n] == ':')
			v = strtol(line + n + 1, NULL, 10);
	fclose(f);
	return v;
}

static bool
token_there(CK_SLOT_ID slot)
{
	CK_TOKEN_INFO ti;

	return p11->C_GetTokenInfo(slot, &ti) == CKR_OK;
}

static bool
token_shown(CK_SLOT_ID slot)
{
	CK_SLOT_INFO si;

	return p11->C_GetSlotInfo(slot, &si) == CKR_OK && (si.flags & CKF_TOKEN_PRESENT);
}

/* Wait until want(slot) == value; false after WAIT_MS. */
static bool
wait_for(bool (*want)(CK_SLOT_ID), CK_SLOT_ID slot, bool value)
{
	int64_t end = tk_now_ms() + WAIT_MS;

	while (want(slot) != value) {
		if (tk_now_ms() > end)
			return false;
		usleep(5000);
	}
	return true;
}

static void
drain_events(void)
{
	CK_SLOT_ID s;

	while (p11->C_WaitForSlotEvent(CKF_DONT_BLOCK, &s, NULL) == CKR_OK)
		;
}

static bool
wait_event(CK_SLOT_ID slot)
{
	int64_t end = tk_now_ms() + WAIT_MS;

	for (;;) {
		CK_SLOT_ID s = 0;

		if (p11->C_WaitForSlotEvent(CKF_DONT_BLOCK, &s, NULL) == CKR_OK && s == slot)
			return true;
		if (tk_now_ms() > end)
			return false;
		usleep(5000);
	}
}

/* The session on the token: (re)opened and logged in when needed; one
 * signature. Errors are counted, not fatal: the card just came back. */
static int
use_session(CK_SLOT_ID slot, CK_SESSION_HANDLE *h, const char *pin)
{
	CK_OBJECT_CLASS cls = CKO_PRIVATE_KEY;
	CK_ATTRIBUTE t[] = {{CKA_CLASS, &cls, sizeof(cls)}};
	CK_MECHANISM m = {CKM_ECDSA, NULL, 0};
	CK_OBJECT_HANDLE key = CK_INVALID_HANDLE;
	CK_BYTE hash[32] = {1}, sig[256];
	CK_ULONG n = 0, slen = sizeof(sig);
	CK_SESSION_INFO si;
	CK_RV rv;

	rv = *h != CK_INVALID_HANDLE ? p11->C_GetSessionInfo(*h, &si) : CKR_SESSION_HANDLE_INVALID;
	if (rv != CKR_OK) {
		if (*h != CK_INVALID_HANDLE)
			(void)p11->C_CloseSession(*h);
		*h = CK_INVALID_HANDLE;
		rv = p11->C_OpenSession(slot, CKF_SERIAL_SESSION, NULL, NULL, h);
		if (rv != CKR_OK)
			return -1;
		rv = p11->C_GetSessionInfo(*h, &si);
		if (rv != CKR_OK)
			return -1;
	}
	if (si.state == CKS_RO_PUBLIC_SESSION) {
		CK_UTF8CHAR p[64];
		size_t len = strlen(pin);

		if (len > sizeof(p))
			return -1;
		memcpy(p, pin, len);
		if (p11->C_Login(*h, CKU_USER, p, len) != CKR_OK)
			return -1;
	}
	if (p11->C_FindObjectsInit(*h, t, 1) != CKR_OK)
		return -1;
	rv = p11->C_FindObjects(*h, &key, 1, &n);
	(void)p11->C_FindObjectsFinal(*h);
	if (rv != CKR_OK || n != 1)
		return -1;
	if (p11->C_SignInit(*h, &m, key) != CKR_OK)
		return -1;
	return p11->C_Sign(*h, hash, sizeof(hash), sig, &slen) == CKR_OK ? 0 : -1;
}

static int
count_threads(void)
{
	DIR *d = opendir("/proc/self/task");
	struct dirent *e;
	int n = 0;

	if (d == NULL)
		return -1;
	while ((e = readdir(d)) != NULL)
		n += e->d_name[0] != '.';
	closedir(d);
	return n;
}

/* malloc arenas in use (each thread that mallocs may bind one; glibc keeps
 * up to 8 per core): from malloc_info's XML, one <heap nr=...> each. */
static int
count_arenas(void)
{
	char *buf = NULL, *p;
	size_t len = 0;
	int n = 0;
	FILE *f = open_memstream(&buf, &len);

	if (f == NULL)
		return -1;
	if (malloc_info(0, f) != 0)
		n = -1;
	fclose(f);
	for (p = buf; n >= 0 && p != NULL && (p = strstr(p, "<heap nr=")) != NULL; p++)
		n++;
	free(buf);
	return n;
}

static int
run(const char *cmd)
{
	int st = system(cmd);

	if (st != 0)
		fprintf(stderr, "p11_rss: '%s': status %d\n", cmd, st);
	return st;
}

int
main(int argc, char **argv)
{
	static const struct option opts[] = {
	        {"slot", required_argument, NULL, 'l'},
	        {"cycles", required_argument, NULL, 'n'},
	        {"session", no_argument, NULL, 's'},
	        {"pin", required_argument, NULL, 'p'},
	        {"remove", required_argument, NULL, 'R'},
	        {"insert", required_argument, NULL, 'I'},
	        {"restart", required_argument, NULL, 'X'},
	        {"no-finalize", no_argument, NULL, 'F'},
	        {NULL, 0, NULL, 0},
	};
	const char *pin = "123456", *rm = NULL, *ins = NULL, *restart = NULL;
	CK_C_INITIALIZE_ARGS args = {.flags = CKF_OS_LOCKING_OK};
	CK_SESSION_HANDLE h = CK_INVALID_HANDLE;
	CK_C_GetFunctionList gfl;
	CK_SLOT_ID slot = 0;
	bool session = false, finalize = true;
	int cycles = 0, c, errors = 0;
	long rss0;
	void *lib;

	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (c) {
		case 'l':
			slot = strtoul(optarg, NULL, 10);
			break;
		case 'n':
			cycles = atoi(optarg);
			break;
		case 's':
			session = true;
			break;
		case 'p':
			pin = optarg;
			break;
		case 'R':
			rm = optarg;
			break;
		case 'I':
			ins = optarg;
			break;
		case 'X':
			restart = optarg;
			break;
		case 'F':
			finalize = false;
			break;
		default:
			return 2;
		}
	}
	if (optind + 1 != argc || slot == 0 || cycles <= 0 ||
	    (restart == NULL && (rm == NULL || ins == NULL))) {
		fprintf(stderr, "usage: p11_rss MODULE --slot ID --cycles N [--session] "
		                "[--pin PIN] (--remove CMD --insert CMD | --restart CMD) "
		                "[--no-finalize]\n");
		return 2;
	}
	lib = dlopen(argv[optind], RTLD_NOW | RTLD_LOCAL);
	gfl = lib != NULL ? (CK_C_GetFunctionList)dlsym(lib, "C_GetFunctionList") : NULL;
	if (gfl == NULL || gfl(&p11) != CKR_OK || p11->C_Initialize(&args) != CKR_OK ||
	    !wait_for(token_there, slot, true)) {
		fprintf(stderr, "p11_rss: no token in slot %lu\n", (unsigned long)slot);
		return 1;
	}
	if (session && use_session(slot, &h, pin) != 0) {
		fprintf(stderr, "p11_rss: no signature in slot %lu at the start\n",
		        (unsigned long)slot);
		return 1;
	}
	rss0 = status_kb("VmRSS");
	printf("start rss_kb=%ld threads=%d\n", rss0, count_threads());
	for (int i = 1; i <= cycles; i++) {
		struct mallinfo2 mi;

		drain_events();
		if (restart != NULL) {
			if (run(restart) != 0 || !wait_event(slot))
				goto fail;
		} else {
			if (run(rm) != 0 || !wait_for(token_shown, slot, false) || run(ins) != 0)
				goto fail;
		}
		if (!wait_for(token_there, slot, true))
			goto fail;
		if (session && use_session(slot, &h, pin) != 0)
			errors++;
		mi = mallinfo2();
		printf("cycle %d rss_kb=%ld heap_kb=%zu threads=%d arenas=%d\n", i,
		       status_kb("VmRSS"), mi.uordblks / 1024, count_threads(), count_arenas());
		fflush(stdout);
	}
	printf("summary cycles=%d errors=%d rss_start_kb=%ld rss_end_kb=%ld\n", cycles, errors,
	       rss0, status_kb("VmRSS"));
	if (!finalize)
		return 0; /* a heap profile then shows what the module holds now */
	if (h != CK_INVALID_HANDLE)
		(void)p11->C_CloseSession(h);
	(void)p11->C_Finalize(NULL);
	return 0;
fail:
	fprintf(stderr, "p11_rss: the card did not go or come back within %d ms\n", WAIT_MS);
	return 1;
}
