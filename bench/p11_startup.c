/* p11_startup: drive a PKCS#11 module through a start-up sequence and time
 * every step (bench/slotlist.sh; tests/integration/test_p11_first_call.sh and
 * test_p11_slot_events.sh).
 *
 *   p11_startup MODULE ACTION...
 *
 * Actions, run in order; each prints one line "ACTION rv=CKR_... ms=T at=A
 * [key=value...]" (T: the step's own time, A: ms since C_Initialize began):
 *   init                 C_Initialize (OS locking)
 *   slotlist             C_GetSlotList(TRUE) count (timed), then the lists:
 *                        slots=ID,... (all) tokens=ID,... (with a token)
 *   slotinfo:ID          C_GetSlotInfo: token=0|1
 *   tokeninfo:ID         C_GetTokenInfo
 *   open:ID              C_OpenSession (closed again)
 *   open-all:ID,ID,...   open:ID for each, one line each
 *   mechs:ID             C_GetMechanismList: n=
 *   event                C_WaitForSlotEvent(CKF_DONT_BLOCK): slot=ID
 *   wait-event:MS        the same every 10 ms until an event, at most MS
 *   wait-token:ID:MS     until C_GetTokenInfo works on ID, at most MS
 *   exec:CMD             system(CMD): status=
 *   after:MS:CMD         CMD runs in the background MS ms from now
 *   sleep:MS
 *   finalize             C_Finalize
 *   linger:MS            (read before the module is loaded, wherever it
 *                        stands) once the program exits, wait MS ms after
 *                        the exit handlers registered later (the module's,
 *                        OpenSSL's) have run: a thread of the module still
 *                        in OpenSSL then would find it freed
 * The program exits without C_Finalize when the actions do not call it.
 * It never judges a figure; the exit status is 0 unless the arguments or
 * the module are unusable. */
#include <dlfcn.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <pkcs11-helper-1.0/pkcs11.h>

#include "../tests/p11_load.h"

#include "clock.h" /* core: tk_now_ms */

static CK_FUNCTION_LIST_PTR p11;
static int64_t t_init = -1;

static const char *
rv_name(CK_RV rv)
{
	static char other[32];

	switch (rv) {
	case CKR_OK:
		return "CKR_OK";
	case CKR_SLOT_ID_INVALID:
		return "CKR_SLOT_ID_INVALID";
	case CKR_TOKEN_NOT_PRESENT:
		return "CKR_TOKEN_NOT_PRESENT";
	case CKR_TOKEN_NOT_RECOGNIZED:
		return "CKR_TOKEN_NOT_RECOGNIZED";
	case CKR_DEVICE_ERROR:
		return "CKR_DEVICE_ERROR";
	case CKR_DEVICE_REMOVED:
		return "CKR_DEVICE_REMOVED";
	case CKR_NO_EVENT:
		return "CKR_NO_EVENT";
	case CKR_GENERAL_ERROR:
		return "CKR_GENERAL_ERROR";
	case CKR_CRYPTOKI_NOT_INITIALIZED:
		return "CKR_CRYPTOKI_NOT_INITIALIZED";
	case CKR_BUFFER_TOO_SMALL:
		return "CKR_BUFFER_TOO_SMALL";
	default:
		snprintf(other, sizeof(other), "0x%lx", (unsigned long)rv);
		return other;
	}
}

static void
report(const char *what, CK_RV rv, int64_t t0, const char *extra)
{
	int64_t t = tk_now_ms();

	printf("%s rv=%s ms=%lld at=%lld%s%s\n", what, rv_name(rv), (long long)(t - t0),
	       (long long)(t_init >= 0 ? t - t_init : -1), extra[0] ? " " : "", extra);
	fflush(stdout);
}

static void
ids(char *buf, size_t cap, const CK_SLOT_ID *list, CK_ULONG n)
{
	size_t k = 0;

	buf[0] = '\0';
	for (CK_ULONG i = 0; i < n && k + 24 < cap; i++)
		k += (size_t)snprintf(buf + k, cap - k, "%s%lu", i ? "," : "",
		                      (unsigned long)list[i]);
}

static void
act_slotlist(void)
{
	CK_SLOT_ID all[64], tok[64];
	CK_ULONG n = 0, na = 64, nt = 64;
	char extra[512], a[200], t[200];
	int64_t t0 = tk_now_ms();
	CK_RV rv = p11->C_GetSlotList(CK_TRUE, NULL, &n);

	if (rv != CKR_OK) {
		report("slotlist", rv, t0, "");
		return;
	}
	snprintf(extra, sizeof(extra), "n=%lu", (unsigned long)n);
	report("slotlist", rv, t0, extra);
	if (p11->C_GetSlotList(CK_TRUE, tok, &nt) != CKR_OK)
		nt = 0;
	if (p11->C_GetSlotList(CK_FALSE, all, &na) != CKR_OK)
		na = 0;
	ids(a, sizeof(a), all, na);
	ids(t, sizeof(t), tok, nt);
	printf("slots=%s tokens=%s\n", a, t);
	fflush(stdout);
}

static void
act_slot(const char *what, CK_SLOT_ID id)
{
	char extra[64];
	int64_t t0 = tk_now_ms();
	CK_RV rv;

	snprintf(extra, sizeof(extra), "slot=%lu", (unsigned long)id);
	if (strcmp(what, "slotinfo") == 0) {
		CK_SLOT_INFO si;

		rv = p11->C_GetSlotInfo(id, &si);
		if (rv == CKR_OK)
			snprintf(extra, sizeof(extra), "slot=%lu token=%d", (unsigned long)id,
			         (si.flags & CKF_TOKEN_PRESENT) ? 1 : 0);
	} else if (strcmp(what, "tokeninfo") == 0) {
		CK_TOKEN_INFO ti;

		rv = p11->C_GetTokenInfo(id, &ti);
	} else if (strcmp(what, "open") == 0) {
		CK_SESSION_HANDLE h = CK_INVALID_HANDLE;

		rv = p11->C_OpenSession(id, CKF_SERIAL_SESSION, NULL, NULL, &h);
		if (rv == CKR_OK)
			(void)p11->C_CloseSession(h);
	} else {
		CK_ULONG n = 0;

		rv = p11->C_GetMechanismList(id, NULL, &n);
		if (rv == CKR_OK)
			snprintf(extra, sizeof(extra), "slot=%lu n=%lu", (unsigned long)id,
			         (unsigned long)n);
	}
	report(what, rv, t0, extra);
}

static void
act_event(int64_t wait_ms)
{
	int64_t t0 = tk_now_ms();
	char extra[64] = "";
	CK_SLOT_ID slot = 0;
	CK_RV rv;

	for (;;) {
		rv = p11->C_WaitForSlotEvent(CKF_DONT_BLOCK, &slot, NULL);
		if (rv != CKR_NO_EVENT || tk_now_ms() - t0 >= wait_ms)
			break;
		usleep(10000);
	}
	if (rv == CKR_OK)
		snprintf(extra, sizeof(extra), "slot=%lu", (unsigned long)slot);
	report("event", rv, t0, extra);
}

static void
act_wait_token(CK_SLOT_ID id, int64_t wait_ms)
{
	int64_t t0 = tk_now_ms();
	char extra[32];
	CK_TOKEN_INFO ti;
	CK_RV rv;

	for (;;) {
		rv = p11->C_GetTokenInfo(id, &ti);
		if (rv == CKR_OK || tk_now_ms() - t0 >= wait_ms)
			break;
		usleep(10000);
	}
	snprintf(extra, sizeof(extra), "slot=%lu", (unsigned long)id);
	report("wait-token", rv, t0, extra);
}

struct later {
	int64_t at;
	char *cmd;
};

static void *
later_main(void *arg)
{
	struct later *l = arg;
	int64_t d = l->at - tk_now_ms();

	if (d > 0)
		usleep((useconds_t)d * 1000);
	if (system(l->cmd) == -1)
		perror("system");
	free(l->cmd);
	free(l);
	return NULL;
}

static int
act_after(const char *spec)
{
	char *end = NULL;
	long ms = strtol(spec, &end, 10);
	struct later *l;
	pthread_t t;

	if (end == NULL || *end != ':' || ms < 0)
		return -1;
	l = calloc(1, sizeof(*l));
	if (l == NULL)
		return -1;
	l->at = tk_now_ms() + ms;
	l->cmd = strdup(end + 1);
	if (l->cmd == NULL || pthread_create(&t, NULL, later_main, l) != 0) {
		free(l->cmd);
		free(l);
		return -1;
	}
	pthread_detach(t);
	return 0;
}

static int
run(const char *a)
{
	const char *arg = strchr(a, ':');
	char extra[32];
	int64_t t0 = tk_now_ms();
	CK_RV rv;

	arg = arg != NULL ? arg + 1 : "";
	if (strcmp(a, "init") == 0) {
		CK_C_INITIALIZE_ARGS args = {.flags = CKF_OS_LOCKING_OK};

		t_init = t0;
		report("init", p11->C_Initialize(&args), t0, "");
	} else if (strcmp(a, "finalize") == 0) {
		report("finalize", p11->C_Finalize(NULL), t0, "");
	} else if (strcmp(a, "slotlist") == 0) {
		act_slotlist();
	} else if (strcmp(a, "event") == 0) {
		act_event(0);
	} else if (strncmp(a, "wait-event:", 11) == 0) {
		act_event(atoll(arg));
	} else if (strncmp(a, "wait-token:", 11) == 0) {
		const char *ms = strchr(arg, ':');

		if (ms == NULL)
			return -1;
		act_wait_token(strtoul(arg, NULL, 10), atoll(ms + 1));
	} else if (strncmp(a, "slotinfo:", 9) == 0 || strncmp(a, "tokeninfo:", 10) == 0 ||
	           strncmp(a, "open:", 5) == 0 || strncmp(a, "mechs:", 6) == 0) {
		char what[16];

		snprintf(what, sizeof(what), "%.*s", (int)(arg - a - 1), a);
		act_slot(what, strtoul(arg, NULL, 10));
	} else if (strncmp(a, "open-all:", 9) == 0) {
		for (const char *p = arg; *p != '\0';) {
			char *end = NULL;
			unsigned long id = strtoul(p, &end, 10);

			if (end == p)
				return -1;
			act_slot("open", id);
			p = *end == ',' ? end + 1 : end;
		}
	} else if (strncmp(a, "exec:", 5) == 0) {
		int st = system(arg);

		snprintf(extra, sizeof(extra), "status=%d", st);
		rv = st == 0 ? CKR_OK : CKR_GENERAL_ERROR;
		report("exec", rv, t0, extra);
	} else if (strncmp(a, "after:", 6) == 0) {
		return act_after(arg);
	} else if (strncmp(a, "sleep:", 6) == 0) {
		usleep((useconds_t)atoll(arg) * 1000);
	} else if (strncmp(a, "linger:", 7) == 0) {
		/* (main) */
	} else {
		return -1;
	}
	return 0;
}

static long linger_ms;

static void
linger(void)
{
	usleep((useconds_t)linger_ms * 1000);
}

int
main(int argc, char **argv)
{
	if (argc < 2) {
		fprintf(stderr, "usage: p11_startup MODULE ACTION...\n");
		return 2;
	}
	for (int i = 2; i < argc; i++) {
		if (strncmp(argv[i], "linger:", 7) == 0 && linger_ms == 0) {
			linger_ms = atol(argv[i] + 7);
			(void)atexit(linger);
		}
	}
	if ((p11 = tk_test_p11_load("p11_startup", argv[1])) == NULL)
		return 1;
	for (int i = 2; i < argc; i++) {
		if (run(argv[i]) != 0) {
			fprintf(stderr, "p11_startup: bad action '%s'\n", argv[i]);
			return 2;
		}
	}
	return 0;
}
