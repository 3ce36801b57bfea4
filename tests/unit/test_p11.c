/* Unit tests for tokenkit-pkcs11.so through its exported interface (dlopen):
 * function lists and interfaces, C_Initialize arguments, initialise and
 * finalize, fork, slot events, argument validation — with no reader at all
 * (PCSCLITE_CSOCK_NAME points at a socket that does not exist).
 *
 * With TK_P11_TEST_READERS=1 only the thread and fork tests run, against the
 * readers of the pcscd that $PCSCLITE_CSOCK_NAME names
 * (tests/integration/test_p11_threads.sh: two virtual cards).
 *
 * The module is found next to the build root (../tokenkit-pkcs11.so from
 * this program) or at $TK_P11_MODULE. */
#include <dirent.h>
#include <dlfcn.h>
#include <limits.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include <pkcs11-helper-1.0/pkcs11.h>

#include <tokenkit/p11ext.h>

#include "../fault/asan_fork.h" /* the fork tests: no allocator lock held in the child */
#include "../proc_count.h"

static void *lib;
static CK_FUNCTION_LIST_PTR f;      /* 2.40 list from C_GetFunctionList */
static CK_FUNCTION_LIST_3_0_PTR f3; /* 3.0 list from C_GetInterface */

static int64_t
now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static bool
real_readers(void)
{
	const char *e = getenv("TK_P11_TEST_READERS");

	return e != NULL && strcmp(e, "1") == 0;
}

static int
setup(void **state)
{
	char path[PATH_MAX + 64], exe[PATH_MAX];
	const char *env = getenv("TK_P11_MODULE");
	CK_C_GetFunctionList gfl;
	CK_C_GetInterface gi;
	CK_INTERFACE_PTR iface = NULL;
	ssize_t n;

	(void)state;
	if (!real_readers()) {
		setenv("PCSCLITE_CSOCK_NAME", "/nonexistent/tokenkit-test/pcscd.comm", 1);
		setenv("XDG_CACHE_HOME", "/nonexistent/tokenkit-test-cache", 1);
	}
	if (env != NULL) {
		snprintf(path, sizeof(path), "%s", env);
	} else {
		n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
		if (n <= 0)
			return -1;
		exe[n] = '\0';
		*strrchr(exe, '/') = '\0';
		snprintf(path, sizeof(path), "%s/../tokenkit-pkcs11.so", exe);
	}
	lib = dlopen(path, RTLD_NOW | RTLD_LOCAL);
	if (lib == NULL) {
		fprintf(stderr, "dlopen %s: %s\n", path, dlerror());
		return -1;
	}
	gfl = (CK_C_GetFunctionList)dlsym(lib, "C_GetFunctionList");
	gi = (CK_C_GetInterface)dlsym(lib, "C_GetInterface");
	if (gfl == NULL || gi == NULL || gfl(&f) != CKR_OK || gi(NULL, NULL, &iface, 0) != CKR_OK)
		return -1;
	f3 = iface->pFunctionList;
	return 0;
}

static int
teardown(void **state)
{
	(void)state;
	/* (the module stays loaded: glibc unregisters its atfork handlers on dlclose anyway) */
	return 0;
}

static void
test_exports(void **state)
{
	(void)state;
	/* only C_* are exported; tk_* stay inside */
	assert_non_null(dlsym(lib, "C_GetFunctionList"));
	assert_non_null(dlsym(lib, "C_GetInterfaceList"));
	assert_non_null(dlsym(lib, "C_GetInterface"));
	assert_non_null(dlsym(lib, "C_Initialize"));
	assert_non_null(dlsym(lib, "C_SignMessageNext"));
	assert_null(dlsym(lib, "tk_strerror"));
	assert_null(dlsym(lib, "tk_slotmgr_new"));
	assert_null(dlsym(lib, "tk_err_to_ckr"));
}

static void
test_function_lists(void **state)
{
	void *const *p;
	size_t n;

	(void)state;
	assert_int_equal(f->version.major, 2);
	assert_int_equal(f->version.minor, 40);
	assert_int_equal(f3->version.major, 3);
	assert_int_equal(f3->version.minor, 0);
	/* every slot is filled (the structs are arrays of pointers after the version) */
	p = (void *const *)&f->C_Initialize;
	n = (sizeof(*f) - offsetof(CK_FUNCTION_LIST, C_Initialize)) / sizeof(void *);
	for (size_t i = 0; i < n; i++)
		assert_non_null(p[i]);
	p = (void *const *)&f3->C_Initialize;
	n = (sizeof(*f3) - offsetof(CK_FUNCTION_LIST_3_0, C_Initialize)) / sizeof(void *);
	for (size_t i = 0; i < n; i++)
		assert_non_null(p[i]);
	assert_ptr_equal(f->C_Sign, f3->C_Sign);
	assert_ptr_equal(f->C_GetFunctionList, dlsym(lib, "C_GetFunctionList"));
	assert_int_equal(f->C_GetFunctionList(NULL), CKR_ARGUMENTS_BAD);
}

static void
test_interfaces(void **state)
{
	CK_INTERFACE list[6];
	CK_ULONG count = 0;
	CK_INTERFACE_PTR i = NULL;
	CK_VERSION v2 = {2, 40}, v3 = {3, 0}, v9 = {9, 9}, v10 = {1, 0}, v11 = {1, 1}, v12 = {1, 2};

	(void)state;
	assert_int_equal(f3->C_GetInterfaceList(NULL, NULL), CKR_ARGUMENTS_BAD);
	assert_int_equal(f3->C_GetInterfaceList(NULL, &count), CKR_OK);
	assert_int_equal(count, 5);
	count = 4;
	assert_int_equal(f3->C_GetInterfaceList(list, &count), CKR_BUFFER_TOO_SMALL);
	assert_int_equal(count, 5);
	count = 6;
	assert_int_equal(f3->C_GetInterfaceList(list, &count), CKR_OK);
	assert_int_equal(count, 5);
	for (int k = 0; k < 2; k++) {
		assert_string_equal(list[k].pInterfaceName, "PKCS 11");
		assert_int_equal(list[k].flags, 0);
	}
	assert_int_equal(((CK_VERSION *)list[0].pFunctionList)->major, 3);
	assert_int_equal(((CK_VERSION *)list[1].pFunctionList)->major, 2);
	/* the module's own (tokenkit/p11ext.h), by the name PKCS#11 3.0 leaves
	 * to vendors, its table starting with its version as PKCS#11's do */
	assert_string_equal(list[2].pInterfaceName, "Vendor tokenkit");
	assert_int_equal(((CK_VERSION *)list[2].pFunctionList)->major, 1);
	assert_int_equal(((CK_VERSION *)list[2].pFunctionList)->minor, 2);
	assert_non_null(((const tk_p11ext_t *)list[2].pFunctionList)->readers);
	assert_non_null(((const tk_p11ext_t *)list[2].pFunctionList)->card_open);
	assert_non_null(((const tk_p11ext_t *)list[2].pFunctionList)->card_io);
	assert_non_null(((const tk_p11ext_t *)list[2].pFunctionList)->card_close);
	assert_int_equal(f3->C_GetInterface((CK_UTF8CHAR_PTR) "Vendor tokenkit", &v12, &i, 0),
	                 CKR_OK);
	assert_ptr_equal(i->pFunctionList, list[2].pFunctionList);
	assert_int_equal(f3->C_GetInterface((CK_UTF8CHAR_PTR) "Vendor tokenkit", NULL, &i, 0),
	                 CKR_OK);
	assert_ptr_equal(i->pFunctionList, list[2].pFunctionList);
	/* programs built against 1.1 and 1.0 still find theirs (versions
	 * match exactly), each with the functions of its version */
	for (int k = 3; k < 5; k++) {
		const tk_p11ext_t *x = list[k].pFunctionList;

		assert_string_equal(list[k].pInterfaceName, "Vendor tokenkit");
		assert_int_equal(x->version.major, 1);
		assert_int_equal(x->version.minor, 4 - k);
		assert_int_equal(f3->C_GetInterface((CK_UTF8CHAR_PTR) "Vendor tokenkit",
		                                    k == 3 ? &v11 : &v10, &i, 0),
		                 CKR_OK);
		assert_ptr_equal(i->pFunctionList, x);
		assert_ptr_equal(x->tokens, ((const tk_p11ext_t *)list[2].pFunctionList)->tokens);
	}
	assert_ptr_equal(((const tk_p11ext_t *)list[3].pFunctionList)->readers,
	                 ((const tk_p11ext_t *)list[2].pFunctionList)->readers);

	assert_int_equal(f3->C_GetInterface(NULL, NULL, NULL, 0), CKR_ARGUMENTS_BAD);
	assert_int_equal(f3->C_GetInterface((CK_UTF8CHAR_PTR) "PKCS 11", &v2, &i, 0), CKR_OK);
	assert_ptr_equal(i->pFunctionList, f);
	assert_int_equal(f3->C_GetInterface((CK_UTF8CHAR_PTR) "PKCS 11", &v3, &i, 0), CKR_OK);
	assert_ptr_equal(i->pFunctionList, f3);
	assert_int_equal(f3->C_GetInterface((CK_UTF8CHAR_PTR) "PKCS 11", NULL, &i, 0), CKR_OK);
	assert_ptr_equal(i->pFunctionList, f3);
	assert_int_equal(f3->C_GetInterface((CK_UTF8CHAR_PTR) "PKCS 11", &v9, &i, 0),
	                 CKR_ARGUMENTS_BAD);
	assert_int_equal(f3->C_GetInterface((CK_UTF8CHAR_PTR) "Vendor X", NULL, &i, 0),
	                 CKR_ARGUMENTS_BAD);
	/* we are not fork-safe (a child must call C_Initialize) */
	assert_int_equal(f3->C_GetInterface(NULL, NULL, &i, CKF_INTERFACE_FORK_SAFE),
	                 CKR_ARGUMENTS_BAD);
}

static CK_RV
mx_create(CK_VOID_PTR_PTR m)
{
	*m = NULL;
	return CKR_OK;
}

static CK_RV
mx_other(CK_VOID_PTR m)
{
	(void)m;
	return CKR_OK;
}

static void
test_not_initialized(void **state)
{
	CK_ULONG n = 0;
	CK_SLOT_ID slot;
	CK_INFO info;

	(void)state;
	assert_int_equal(f->C_GetSlotList(CK_FALSE, NULL, &n), CKR_CRYPTOKI_NOT_INITIALIZED);
	assert_int_equal(f->C_GetInfo(&info), CKR_CRYPTOKI_NOT_INITIALIZED);
	assert_int_equal(f->C_Finalize(NULL), CKR_CRYPTOKI_NOT_INITIALIZED);
	assert_int_equal(f->C_OpenSession(0, CKF_SERIAL_SESSION, NULL, NULL, &slot),
	                 CKR_CRYPTOKI_NOT_INITIALIZED);
	assert_int_equal(f->C_WaitForSlotEvent(CKF_DONT_BLOCK, &slot, NULL),
	                 CKR_CRYPTOKI_NOT_INITIALIZED);
	assert_int_equal(f->C_DigestInit(1, NULL), CKR_CRYPTOKI_NOT_INITIALIZED);
}

static void
test_initialize_args(void **state)
{
	CK_C_INITIALIZE_ARGS a;
	int dummy;

	(void)state;
	memset(&a, 0, sizeof(a));
	a.pReserved = &dummy;
	assert_int_equal(f->C_Initialize(&a), CKR_ARGUMENTS_BAD);
	memset(&a, 0, sizeof(a));
	a.CreateMutex = mx_create; /* some but not all callbacks */
	assert_int_equal(f->C_Initialize(&a), CKR_ARGUMENTS_BAD);
	a.DestroyMutex = mx_other;
	a.LockMutex = mx_other;
	a.UnlockMutex = mx_other;
	/* callbacks without CKF_OS_LOCKING_OK (GnuTLS does this): accepted, OS locks used */
	assert_int_equal(f->C_Initialize(&a), CKR_OK);
	assert_int_equal(f->C_Finalize(NULL), CKR_OK);
	/* what GnuTLS passes: accepted (we need our threads; they never call the application) */
	a.flags = CKF_OS_LOCKING_OK | CKF_LIBRARY_CANT_CREATE_OS_THREADS;
	assert_int_equal(f->C_Initialize(&a), CKR_OK);
	assert_int_equal(f->C_Finalize(NULL), CKR_OK);
	/* callbacks plus CKF_OS_LOCKING_OK: fine, we use OS locks */
	a.flags = CKF_OS_LOCKING_OK;
	assert_int_equal(f->C_Initialize(&a), CKR_OK);
	assert_int_equal(f->C_Initialize(&a), CKR_CRYPTOKI_ALREADY_INITIALIZED);
	assert_int_equal(f->C_Finalize(&dummy), CKR_ARGUMENTS_BAD);
	assert_int_equal(f->C_Finalize(NULL), CKR_OK);
	/* flags only, no callbacks */
	memset(&a, 0, sizeof(a));
	a.flags = CKF_OS_LOCKING_OK;
	assert_int_equal(f->C_Initialize(&a), CKR_OK);
	assert_int_equal(f->C_Finalize(NULL), CKR_OK);
	/* NULL */
	assert_int_equal(f->C_Initialize(NULL), CKR_OK);
	assert_int_equal(f->C_Finalize(NULL), CKR_OK);
	assert_int_equal(f->C_Finalize(NULL), CKR_CRYPTOKI_NOT_INITIALIZED);
}

static void
test_no_readers(void **state)
{
	int64_t t0 = now_ms(), t1;
	CK_ULONG n = 99;
	CK_SLOT_ID slots[4];
	CK_SESSION_HANDLE h = 0;
	CK_SLOT_INFO si;
	CK_TOKEN_INFO ti;
	CK_INFO info;

	(void)state;
	assert_int_equal(f->C_Initialize(NULL), CKR_OK);
	t1 = now_ms();
	assert_true(t1 - t0 < 500); /* no APDU, no waiting */
	assert_int_equal(f->C_GetSlotList(CK_FALSE, NULL, NULL), CKR_ARGUMENTS_BAD);
	assert_int_equal(f->C_GetSlotList(CK_FALSE, NULL, &n), CKR_OK);
	assert_int_equal(n, 0);
	assert_true(now_ms() - t1 < 5000); /* bounded, even with no daemon */
	n = 4;
	assert_int_equal(f->C_GetSlotList(CK_TRUE, slots, &n), CKR_OK);
	assert_int_equal(n, 0);

	assert_int_equal(f->C_GetInfo(NULL), CKR_ARGUMENTS_BAD);
	assert_int_equal(f->C_GetInfo(&info), CKR_OK);
	assert_int_equal(info.cryptokiVersion.major, 3);
	assert_int_equal(info.cryptokiVersion.minor, 0);
	assert_memory_equal(info.manufacturerID, "tokenkit                        ", 32);
	assert_int_equal(info.flags, 0);

	assert_int_equal(f->C_GetSlotInfo(4242, &si), CKR_SLOT_ID_INVALID);
	assert_int_equal(f->C_GetTokenInfo(4242, &ti), CKR_SLOT_ID_INVALID);
	assert_int_equal(f->C_OpenSession(4242, CKF_SERIAL_SESSION, NULL, NULL, &h),
	                 CKR_SLOT_ID_INVALID);
	assert_int_equal(f->C_OpenSession(4242, 0, NULL, NULL, &h),
	                 CKR_SESSION_PARALLEL_NOT_SUPPORTED);
	assert_int_equal(f->C_OpenSession(4242, CKF_SERIAL_SESSION, NULL, NULL, NULL),
	                 CKR_ARGUMENTS_BAD);
	assert_int_equal(f->C_CloseAllSessions(4242), CKR_SLOT_ID_INVALID);
	assert_int_equal(f->C_GetMechanismList(4242, NULL, &n), CKR_SLOT_ID_INVALID);
	assert_int_equal(f->C_CloseSession(1), CKR_SESSION_HANDLE_INVALID);
	assert_int_equal(f->C_Login(1, CKU_USER, (CK_UTF8CHAR_PTR) "123456", 6),
	                 CKR_SESSION_HANDLE_INVALID);
	assert_int_equal(f->C_SignInit(1, NULL, 1), CKR_SESSION_HANDLE_INVALID);
	assert_int_equal(f->C_FindObjectsInit(1, NULL, 0), CKR_SESSION_HANDLE_INVALID);
	assert_int_equal(f->C_GetAttributeValue(1, 1, NULL, 0), CKR_SESSION_HANDLE_INVALID);
	assert_int_equal(f->C_DeriveKey(1, NULL, 1, NULL, 0, NULL), CKR_SESSION_HANDLE_INVALID);
	assert_int_equal(f3->C_SessionCancel(1, CKF_SIGN), CKR_SESSION_HANDLE_INVALID);

	/* functions not offered */
	assert_int_equal(f->C_DigestInit(1, NULL), CKR_SESSION_HANDLE_INVALID);
	assert_int_equal(f->C_DigestEncryptUpdate(1, NULL, 0, NULL, NULL),
	                 CKR_FUNCTION_NOT_SUPPORTED);
	assert_int_equal(f->C_GetFunctionStatus(1), CKR_FUNCTION_NOT_PARALLEL);
	assert_int_equal(f->C_GenerateRandom(1, (CK_BYTE_PTR)slots, 4), CKR_SESSION_HANDLE_INVALID);
	assert_int_equal(f3->C_MessageSignInit(1, NULL, 1), CKR_FUNCTION_NOT_SUPPORTED);

	assert_int_equal(f->C_WaitForSlotEvent(CKF_DONT_BLOCK, NULL, NULL), CKR_ARGUMENTS_BAD);
	assert_int_equal(f->C_WaitForSlotEvent(CKF_DONT_BLOCK, slots, NULL), CKR_NO_EVENT);
	assert_int_equal(f->C_Finalize(NULL), CKR_OK);
}

struct waiter {
	CK_RV rv;
	int64_t returned;
};

static void *
wait_thread(void *arg)
{
	struct waiter *w = arg;
	CK_SLOT_ID slot;

	w->rv = f->C_WaitForSlotEvent(0, &slot, NULL);
	w->returned = now_ms();
	return NULL;
}

static void
test_finalize_wakes_waiter(void **state)
{
	struct waiter w = {CKR_OK, 0};
	pthread_t th;
	int64_t t0;

	(void)state;
	assert_int_equal(f->C_Initialize(NULL), CKR_OK);
	assert_int_equal(pthread_create(&th, NULL, wait_thread, &w), 0);
	usleep(200 * 1000);
	assert_int_equal(w.returned, 0); /* still blocked: there are no events */
	t0 = now_ms();
	assert_int_equal(f->C_Finalize(NULL), CKR_OK);
	pthread_join(th, NULL);
	assert_int_equal(w.rv, CKR_CRYPTOKI_NOT_INITIALIZED);
	assert_true(w.returned - t0 < 2000);
}

/* In a forked child: cmocka's signal handlers would jump back into the test
 * runner and run the rest of the suite in the child; let a crash be a crash
 * that the parent sees in the wait status instead. */
static void
child_default_signals(void)
{
	static const int sigs[] = {SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGABRT, SIGSYS};

	for (size_t i = 0; i < sizeof(sigs) / sizeof(sigs[0]); i++)
		signal(sigs[i], SIG_DFL);
}

static void
test_fork(void **state)
{
	CK_ULONG n = 0;
	pid_t pid;
	int status = 0;

	(void)state;
	assert_int_equal(f->C_Initialize(NULL), CKR_OK);
	assert_int_equal(f->C_GetSlotList(CK_FALSE, NULL, &n), CKR_OK);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		int code = 0;

		child_default_signals();
		/* the child must initialise again */
		if (f->C_GetSlotList(CK_FALSE, NULL, &n) != CKR_CRYPTOKI_NOT_INITIALIZED)
			code |= 1;
		if (f->C_Finalize(NULL) != CKR_CRYPTOKI_NOT_INITIALIZED)
			code |= 2;
		if (f->C_Initialize(NULL) != CKR_OK)
			code |= 4;
		if (f->C_GetSlotList(CK_FALSE, NULL, &n) != CKR_OK || n != 0)
			code |= 8;
		if (f->C_Finalize(NULL) != CKR_OK)
			code |= 16;
		_exit(code);
	}
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
	/* the parent is untouched */
	assert_int_equal(f->C_GetSlotList(CK_FALSE, NULL, &n), CKR_OK);
	assert_int_equal(f->C_Initialize(NULL), CKR_CRYPTOKI_ALREADY_INITIALIZED);
	assert_int_equal(f->C_Finalize(NULL), CKR_OK);
}

static void
test_reinitialize_cycles(void **state)
{
	CK_ULONG n = 0;

	(void)state;
	for (int i = 0; i < 5; i++) {
		assert_int_equal(f->C_Initialize(NULL), CKR_OK);
		assert_int_equal(f->C_GetSlotList(CK_FALSE, NULL, &n), CKR_OK);
		assert_int_equal(f->C_Finalize(NULL), CKR_OK);
	}
}

/* The slots from the first call, their tokens within
 * a bound that only a hang exceeds (a loaded machine may show a token a
 * moment after the first C_GetSlotList: a card that did not answer within
 * P11_STALL_MS is not waited for). */
static bool
sees_tokens(CK_ULONG want)
{
	int64_t end = now_ms() + 20000;
	CK_ULONG n = 0;

	if (f->C_GetSlotList(CK_FALSE, NULL, &n) != CKR_OK || n != want)
		return false;
	do {
		if (f->C_GetSlotList(CK_TRUE, NULL, &n) != CKR_OK)
			return false;
		if (n == want)
			return true;
		usleep(20000);
	} while (now_ms() < end);
	return false;
}

/* Use every token: sessions, token info (PIN counters), an object search. */
static void
use_tokens(void)
{
	CK_SLOT_ID slots[8];
	CK_ULONG n = 8;

	/* two virtual cards (real readers), none otherwise */
	assert_true(sees_tokens(real_readers() ? 2 : 0));
	assert_int_equal(f->C_GetSlotList(CK_TRUE, slots, &n), CKR_OK);
	assert_int_equal(n, real_readers() ? 2 : 0);
	for (CK_ULONG i = 0; i < n; i++) {
		CK_SESSION_HANDLE h;
		CK_TOKEN_INFO ti;
		CK_OBJECT_HANDLE o[4];
		CK_ULONG k = 0;

		assert_int_equal(f->C_GetTokenInfo(slots[i], &ti), CKR_OK);
		assert_int_equal(f->C_OpenSession(slots[i], CKF_SERIAL_SESSION, NULL, NULL, &h),
		                 CKR_OK);
		assert_int_equal(f->C_FindObjectsInit(h, NULL, 0), CKR_OK);
		assert_int_equal(f->C_FindObjects(h, o, 4, &k), CKR_OK);
		assert_int_equal(f->C_FindObjectsFinal(h), CKR_OK);
	}
}

/* C_Finalize joins every thread the module started (reader workers, token
 * opens, the manager's monitor and event threads): right after it the
 * process has the threads it had before C_Initialize. Rounds alternate
 * between finalizing at once (workers still connecting, tokens opening)
 * and after using the tokens. */
static void
test_finalize_joins_threads(void **state)
{
	(void)state;
	for (int round = 0; round < 6; round++) {
		int before = tk_test_threads(), during;

		assert_true(before > 0);
		assert_int_equal(f->C_Initialize(NULL), CKR_OK);
		if (round % 2 == 1)
			use_tokens();
		during = tk_test_threads();
		assert_int_equal(f->C_Finalize(NULL), CKR_OK);
		if (tk_test_threads() != before)
			fprintf(stderr,
			        "round %d: threads %d before C_Initialize, %d before "
			        "C_Finalize, %d after it\n",
			        round, before, during, tk_test_threads());
		assert_int_equal(tk_test_threads(), before);
	}
}

/* Fork right after C_Initialize, while the workers connect to the readers
 * (pcsc-lite's process-wide mutex is taken then): the child initialises,
 * sees the tokens and finalizes without hanging; the parent goes on. */
static void
test_fork_while_connecting(void **state)
{
	(void)state;
	for (int round = 0; round < 5; round++) {
		CK_ULONG n = 0;
		int64_t end;
		pid_t pid, r = 0;
		int status = 0, before = tk_test_threads();

		assert_int_equal(f->C_Initialize(NULL), CKR_OK);
		pid = fork();
		assert_true(pid >= 0);
		if (pid == 0) {
			int code = 0;

			child_default_signals();
			if (f->C_GetSlotList(CK_TRUE, NULL, &n) != CKR_CRYPTOKI_NOT_INITIALIZED)
				code |= 1;
			if (f->C_Initialize(NULL) != CKR_OK)
				code |= 2;
			else if (!sees_tokens(real_readers() ? 2 : 0))
				code |= 4;
			if (f->C_Finalize(NULL) != CKR_OK)
				code |= 8;
			_exit(code);
		}
		/* "did not hang": a minute */
		end = now_ms() + 60000;
		while (now_ms() < end && (r = waitpid(pid, &status, WNOHANG)) == 0)
			usleep(10000);
		if (r != pid) {
			kill(pid, SIGKILL);
			waitpid(pid, &status, 0);
			fail_msg("round %d: the child hung", round);
		}
		if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
			fail_msg("round %d: child status 0x%x (exit code bits: 1 slot list before "
			         "C_Initialize, 2 C_Initialize, 4 slot list after, 8 C_Finalize)",
			         round, status);
		assert_true(sees_tokens(real_readers() ? 2 : 0));
		assert_int_equal(f->C_Finalize(NULL), CKR_OK);
		assert_int_equal(tk_test_threads(), before);
	}
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_exports),
	        cmocka_unit_test(test_function_lists),
	        cmocka_unit_test(test_interfaces),
	        cmocka_unit_test(test_not_initialized),
	        cmocka_unit_test(test_initialize_args),
	        cmocka_unit_test(test_no_readers),
	        cmocka_unit_test(test_finalize_wakes_waiter),
	        cmocka_unit_test(test_fork),
	        cmocka_unit_test(test_reinitialize_cycles),
	        cmocka_unit_test(test_finalize_joins_threads),
	        cmocka_unit_test(test_fork_while_connecting),
	};
	const struct CMUnitTest real[] = {
	        cmocka_unit_test(test_finalize_joins_threads),
	        cmocka_unit_test(test_fork_while_connecting),
	};

	if (real_readers())
		return cmocka_run_group_tests(real, setup, teardown);
	return cmocka_run_group_tests(tests, setup, teardown);
}
