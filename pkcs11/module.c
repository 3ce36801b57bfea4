/* tokenkit-pkcs11: C_Initialize/C_Finalize, fork handling, C_GetInfo, the
 * function lists and interfaces, and the functions this module does not
 * implement.
 *
 * Fork: a child process sees CKR_CRYPTOKI_NOT_INITIALIZED until it calls
 * C_Initialize itself. The pthread_atfork child handler only forgets the
 * parent's state (the slot manager's threads and PC/SC contexts do not
 * exist in the child and are never touched there; their memory is leaked
 * on purpose) and re-initialises the module's own lock. */
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include <tokenkit/log.h>
#include <tokenkit/mem.h>

#include "clock.h"
#include "p11.h"
#include "tokens.h"

/* The readers when $TOKENKIT_READERS does not name them (NULL: PC/SC
 * only, what a module inside an application should open). tokenkitd sets
 * it to PC/SC and direct USB: the broker owns the readers. */
const char *tk_p11_default_readers;
bool tk_p11_system_broker;
/* tk_slotmgr_opts_t.txn_carry_ms of the module's manager: 0 in an
 * application (its transactions end at once: other programs share the
 * cards through PC/SC); tokenkitd --carry-transactions sets it. */
int tk_p11_txn_carry_ms;

struct p11_module g_p11 = {
        .lock = PTHREAD_MUTEX_INITIALIZER,
        .pin_lock = PTHREAD_MUTEX_INITIALIZER,
        .cond = PTHREAD_COND_INITIALIZER,
};

/* Serialises C_Initialize and C_Finalize against each other. */
static pthread_mutex_t init_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_once_t once = PTHREAD_ONCE_INIT;

/* --- process exit ---------------------------------------------------------
 * An application may exit without C_Finalize (OpenSSL's command line with
 * libp11's engine does, pkcs11-tool after --change-pin does). exit() then
 * runs OpenSSL's atexit cleanup, which frees its library context, while our
 * background threads (token opens, the registry watcher) may be inside
 * OpenSSL: a SIGSEGV in EVP_Digest, seen in test_p11_openssl_tls and (a
 * token open after a PIN change on a pad) test_ccid_stack.
 *
 * Our handler is registered with OPENSSL_atexit: OPENSSL_cleanup runs it
 * before it frees anything, whoever calls it and whatever the order of the
 * process's atexit handlers. (A first version used atexit() after an
 * OPENSSL_init_crypto(0) meant to register OpenSSL's handler first; but
 * OpenSSL 3.0 returns early for opts 0 and registers its handler at the
 * first real initialisation, which can come later, so OpenSSL's cleanup ran
 * first. OPENSSL_atexit pins the module in memory: it is not unloaded by
 * dlclose, which a handler OpenSSL will call needs anyway.)
 *
 * The handler closes the gate: work that would start later is skipped (its
 * thread does not block: a C_Finalize from a later exit handler still joins
 * it). It cancels every wait for a card (tk_slotmgr_cancel), so the work
 * inside the gate stops at its next card exchange instead of finishing a
 * token open that can last seconds, and it waits up to P11_EXIT_WAIT_MS for
 * that work to leave. Inside, after the cancel, there is only computation
 * and at most one wait for the registry's lock (core/registry.c
 * LOCK_WAIT_MS, 2 s, only while another process holds it): the bound
 * covers it. OpenSSL already counts as stopped while we wait: what the work
 * asks of it then fails cleanly (an error, not a crash). */
#define P11_EXIT_WAIT_MS 3000

static pthread_mutex_t exit_mtx = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t exit_cond;
static int exit_busy;          /* background work inside the gate */
static bool exit_started;      /* the gate is closed */
static tk_slotmgr_t *exit_mgr; /* the manager to cancel: set while it lives */

bool
tk_p11_bg_enter(void)
{
	bool ok;

	pthread_mutex_lock(&exit_mtx);
	ok = !exit_started;
	if (ok)
		exit_busy++;
	pthread_mutex_unlock(&exit_mtx);
	return ok;
}

void
tk_p11_bg_leave(void)
{
	pthread_mutex_lock(&exit_mtx);
	exit_busy--;
	if (exit_started)
		pthread_cond_broadcast(&exit_cond);
	pthread_mutex_unlock(&exit_mtx);
}

/* C_Initialize (m) and C_Finalize (NULL, before the manager is freed). */
static void
exit_set_mgr(tk_slotmgr_t *m)
{
	pthread_mutex_lock(&exit_mtx);
	exit_mgr = m;
	if (m != NULL && exit_started)
		tk_slotmgr_cancel(m); /* initialised after OpenSSL's cleanup began */
	pthread_mutex_unlock(&exit_mtx);
}

static void
on_exit_close_gate(void)
{
	int64_t end;

	pthread_mutex_lock(&exit_mtx);
	exit_started = true;
	if (exit_mgr != NULL)
		tk_slotmgr_cancel(exit_mgr);
	end = tk_now_us() + (int64_t)P11_EXIT_WAIT_MS * 1000;
	while (exit_busy > 0 && tk_now_us() < end)
		(void)tk_cond_wait_until_us(&exit_cond, &exit_mtx, end);
	if (exit_busy > 0)
		tk_log_warn("pkcs11: OpenSSL is cleaned up while background work still runs (after "
		            "%d ms)",
		            P11_EXIT_WAIT_MS);
	pthread_mutex_unlock(&exit_mtx);
}

static void
init_cond(void)
{
	pthread_cond_destroy(&g_p11.cond);
	tk_cond_init_monotonic(&g_p11.cond);
}

static void
atfork_prepare(void)
{
	pthread_mutex_lock(&init_lock);
	pthread_mutex_lock(&g_p11.lock);
	pthread_mutex_lock(&g_p11.pin_lock);
}

static void
atfork_parent(void)
{
	pthread_mutex_unlock(&g_p11.pin_lock);
	pthread_mutex_unlock(&g_p11.lock);
	pthread_mutex_unlock(&init_lock);
}

static void
atfork_child(void)
{
	/* Forget, never free: the memory belongs to threads that do not exist
	 * here. The PINs the parent kept (operations', and the opt-in user PIN)
	 * are zero in this process: their pages are MADV_WIPEONFORK. */
	pthread_mutex_init(&g_p11.lock, NULL);
	pthread_mutex_init(&g_p11.pin_lock, NULL);
	pthread_mutex_init(&init_lock, NULL);
	init_cond();
	pthread_mutex_init(&exit_mtx, NULL);
	pthread_cond_destroy(&exit_cond);
	tk_cond_init_monotonic(&exit_cond);
	exit_busy = 0;   /* the parent's threads' */
	exit_mgr = NULL; /* the parent's */
	g_p11.initialized = false;
	g_p11.finalizing = false;
	g_p11.mgr = NULL;
	g_p11.sub_id = 0;
	g_p11.scanned = false;
	g_p11.slots = NULL;
	g_p11.nslots = g_p11.slots_cap = 0;
	g_p11.sessions = NULL;
	g_p11.nsessions = g_p11.sessions_cap = 0;
	g_p11.openers = g_p11.waiters = g_p11.calls = 0;
	g_p11.threads = NULL; /* the parent's threads: never joined here */
	g_p11.pid = 0;
	tk_p11_regslots_forget();
	tk_p11_crypto_forget();
}

static void
once_init(void)
{
	init_cond();
	tk_cond_init_monotonic(&exit_cond);
	pthread_atfork(atfork_prepare, atfork_parent, atfork_child);
	/* run by OPENSSL_cleanup before it frees anything ("process exit") */
	if (OPENSSL_atexit(on_exit_close_gate) != 1)
		tk_log_warn("pkcs11: OPENSSL_atexit failed: an exit without C_Finalize may crash");
}

/* No getpid() here: atfork_child (registered before the first
 * initialisation) already leaves a forked child uninitialised, and every
 * call passes through this check: the system call cost a software token's
 * signature about 2 us of its 35 (two per C_SignInit + C_Sign). A child
 * made without fork handlers (vfork, posix_spawn, a raw clone) execs or
 * exits without calling into the module. */
CK_RV
tk_p11_check_init_locked(void)
{
	if (!g_p11.initialized || g_p11.finalizing)
		return CKR_CRYPTOKI_NOT_INITIALIZED;
	return CKR_OK;
}

CK_RV
tk_p11_enter(void)
{
	CK_RV rv;

	pthread_mutex_lock(&g_p11.lock);
	rv = tk_p11_check_init_locked();
	pthread_mutex_unlock(&g_p11.lock);
	return rv;
}

static CK_RV
check_init_args(const CK_C_INITIALIZE_ARGS *a)
{
	int nfn;

	if (a == NULL)
		return CKR_OK;
	tk_log_debug("C_Initialize: flags 0x%lx, mutex callbacks %s, reserved %s",
	             (unsigned long)a->flags, a->CreateMutex != NULL ? "yes" : "no",
	             a->pReserved != NULL ? "set" : "NULL");
	if (a->pReserved != NULL)
		return CKR_ARGUMENTS_BAD;
	nfn = (a->CreateMutex != NULL) + (a->DestroyMutex != NULL) + (a->LockMutex != NULL) +
	      (a->UnlockMutex != NULL);
	if (nfn != 0 && nfn != 4)
		return CKR_ARGUMENTS_BAD;
	/* CKF_LIBRARY_CANT_CREATE_OS_THREADS: the module cannot work without its
	 * own threads (a worker per reader, token opening); CKR_NEED_TO_CREATE_THREADS
	 * would be the letter of the specification, but GnuTLS passes this flag
	 * to every module and would then not load us at all. Our threads never
	 * call into the application, so we go on and create them. */
	if (a->flags & CKF_LIBRARY_CANT_CREATE_OS_THREADS)
		tk_log_debug("C_Initialize: CKF_LIBRARY_CANT_CREATE_OS_THREADS ignored");
	/* Mutex callbacks without CKF_OS_LOCKING_OK ask us to use them. We use
	 * OS (POSIX) locks in every case: the callbacks real applications pass
	 * (GnuTLS does exactly this) wrap the same OS mutexes, and refusing
	 * with CKR_CANT_LOCK would make the module unusable for them. */
	return CKR_OK;
}

/* Wait on the module condition until pred() is false or the deadline passes. */
static void
wait_until_idle_locked(bool (*pred)(void), int timeout_ms)
{
	int64_t end = tk_now_ms() + timeout_ms;

	while (pred() && tk_now_ms() < end)
		tk_cond_wait_until_us(&g_p11.cond, &g_p11.lock, end * 1000);
}

static bool
busy_calls(void)
{
	return g_p11.waiters > 0 || g_p11.calls > 0;
}

static bool
busy_openers(void)
{
	return g_p11.openers > 0;
}

CK_RV
tk_p11_C_Initialize(CK_VOID_PTR pInitArgs)
{
	tk_slotmgr_opts_t mo;
	tk_slotmgr_t *mgr = NULL;
	CK_RV rv;
	int r, timeout_ms;

	pthread_once(&once, once_init);
	rv = check_init_args(pInitArgs);
	if (rv != CKR_OK)
		return rv;

	pthread_mutex_lock(&init_lock);
	pthread_mutex_lock(&g_p11.lock);
	if (g_p11.initialized && g_p11.pid == getpid()) {
		pthread_mutex_unlock(&g_p11.lock);
		rv = CKR_CRYPTOKI_ALREADY_INITIALIZED;
		goto out;
	}
	/* (a stale state from a parent process was forgotten by atfork_child) */
	g_p11.finalizing = false;
	g_p11.scanned = false;
	g_p11.scan_end = tk_now_ms() + P11_FIRST_SCAN_WAIT_MS;
	g_p11.pid = getpid();
	if (g_p11.next_session == 0)
		g_p11.next_session = 1;
	if (g_p11.next_sobj == 0)
		g_p11.next_sobj = 0x80000000UL;
	pthread_mutex_unlock(&g_p11.lock);

	/* No APDU here: the manager discovers readers in the background (we
	 * wait for its first enumeration below) and tokens are opened by their
	 * own threads when cards appear. */
	tk_slotmgr_opts_init(&mo);
	mo.default_readers = tk_p11_default_readers;
	mo.txn_carry_ms = tk_p11_txn_carry_ms;
	timeout_ms = tk_p11_timeout_from_env();
	if (timeout_ms > 0)
		mo.transmit_timeout_ms = timeout_ms;
	r = tk_slotmgr_new(&mo, &mgr);
	if (r != TK_OK) {
		tk_log_error("C_Initialize: slot manager: %s", tk_strerror(r));
		/* a bad TOKENKIT_READERS is no bad argument of this call */
		rv = r == TK_ERR_INVALID_ARG ? CKR_GENERAL_ERROR : tk_err_to_ckr(r);
		goto out;
	}
	exit_set_mgr(mgr);
	pthread_mutex_lock(&g_p11.lock);
	g_p11.mgr = mgr;
	g_p11.timeout_ms = mo.transmit_timeout_ms;
	g_p11.grace_ms = tk_p11_grace_from_env();
	g_p11.pin_cache = tk_p11_pin_cache_from_env();
	g_p11.initialized = true;
	pthread_mutex_unlock(&g_p11.lock);
	tk_p11_slots_start();
	tk_p11_regslots_start();
	/* While the manager connects to the readers in the background, load
	 * OpenSSL's configuration and our own library context here, and fetch
	 * the digests (the object cache checks its files with SHA-256): a
	 * first fetch costs 0.5-1 ms of CPU, which the token threads would
	 * otherwise pay on their way to the first object list. */
	OPENSSL_init_crypto(OPENSSL_INIT_LOAD_CONFIG, NULL);
	(void)tk_p11_libctx();
	/* Every reader's slot answers from the first call: the readers found
	 * by the first enumeration are in the slot table when we return
	 * (bounded: see P11_FIRST_SCAN_WAIT_MS). */
	tk_p11_slots_first_scan();
	rv = CKR_OK;
out:
	pthread_mutex_unlock(&init_lock);
	return rv;
}

CK_RV
tk_p11_C_Finalize(CK_VOID_PTR pReserved)
{
	tk_slotmgr_t *mgr;
	int sub;

	if (pReserved != NULL)
		return CKR_ARGUMENTS_BAD;
	pthread_mutex_lock(&init_lock);
	pthread_mutex_lock(&g_p11.lock);
	if (tk_p11_check_init_locked() != CKR_OK) {
		pthread_mutex_unlock(&g_p11.lock);
		pthread_mutex_unlock(&init_lock);
		return CKR_CRYPTOKI_NOT_INITIALIZED;
	}
	/* Wake C_WaitForSlotEvent and make new calls fail. */
	g_p11.finalizing = true;
	pthread_cond_broadcast(&g_p11.cond);
	mgr = g_p11.mgr;
	sub = g_p11.sub_id;
	g_p11.sub_id = 0;
	pthread_mutex_unlock(&g_p11.lock);

	if (sub > 0)
		tk_slotmgr_unsubscribe(mgr, sub);
	tk_p11_regslots_stop();

	pthread_mutex_lock(&g_p11.lock);
	wait_until_idle_locked(busy_calls, P11_FINALIZE_WAIT_MS);
	/* Let token opens and their background checks finish normally (a few
	 * APDUs): cut short, they could leave the object cache half updated. */
	wait_until_idle_locked(busy_openers, P11_FINALIZE_OPEN_WAIT_MS);
	pthread_mutex_unlock(&g_p11.lock);

	/* Freeing the manager makes card I/O still running in token-open
	 * threads (a card that does not answer) fail quickly; then those
	 * threads finish. */
	exit_set_mgr(NULL);
	tk_slotmgr_free(&mgr);

	pthread_mutex_lock(&g_p11.lock);
	wait_until_idle_locked(busy_openers, P11_FINALIZE_WAIT_MS);
	pthread_mutex_unlock(&g_p11.lock);
	/* Nothing of ours runs after C_Finalize: the manager joined its
	 * threads (a reader stuck in pcsc-lite excepted), these are ours. */
	tk_p11_slots_join(P11_FINALIZE_WAIT_MS);

	pthread_mutex_lock(&g_p11.lock);
	g_p11.mgr = NULL;
	tk_p11_sessions_clear_locked();
	tk_p11_slots_clear_locked();
	g_p11.initialized = false;
	g_p11.finalizing = false;
	pthread_mutex_unlock(&g_p11.lock);
	pthread_mutex_unlock(&init_lock);
	return CKR_OK;
}

CK_RV
tk_p11_C_GetInfo(CK_INFO_PTR pInfo)
{
	CK_RV rv = tk_p11_enter();

	if (rv != CKR_OK)
		return rv;
	if (pInfo == NULL)
		return CKR_ARGUMENTS_BAD;
	memset(pInfo, 0, sizeof(*pInfo));
	pInfo->cryptokiVersion.major = 3;
	pInfo->cryptokiVersion.minor = 0;
	tk_p11_pad(pInfo->manufacturerID, sizeof(pInfo->manufacturerID), P11_MANUFACTURER);
	pInfo->flags = 0;
	tk_p11_pad(pInfo->libraryDescription, sizeof(pInfo->libraryDescription), P11_LIBRARY_DESC);
	pInfo->libraryVersion.major = TK_P11_VERSION_MAJOR;
	pInfo->libraryVersion.minor = TK_P11_VERSION_MINOR;
	return CKR_OK;
}

/* --- functions this module does not implement -------------------------- */

static CK_RV
not_supported(void)
{
	CK_RV rv = tk_p11_enter();

	return rv != CKR_OK ? rv : CKR_FUNCTION_NOT_SUPPORTED;
}

CK_RV
tk_p11_C_GetOperationState(CK_SESSION_HANDLE h, CK_BYTE_PTR s, CK_ULONG_PTR l)
{
	return not_supported();
}

CK_RV
tk_p11_C_SetOperationState(CK_SESSION_HANDLE h, CK_BYTE_PTR s, CK_ULONG l, CK_OBJECT_HANDLE e,
                           CK_OBJECT_HANDLE a)
{
	return not_supported();
}

CK_RV
tk_p11_C_EncryptUpdate(CK_SESSION_HANDLE h, CK_BYTE_PTR d, CK_ULONG dl, CK_BYTE_PTR e,
                       CK_ULONG_PTR el)
{
	return not_supported();
}

CK_RV
tk_p11_C_EncryptFinal(CK_SESSION_HANDLE h, CK_BYTE_PTR e, CK_ULONG_PTR el)
{
	return not_supported();
}

CK_RV
tk_p11_C_SignRecoverInit(CK_SESSION_HANDLE h, CK_MECHANISM_PTR m, CK_OBJECT_HANDLE k)
{
	return not_supported();
}

CK_RV
tk_p11_C_SignRecover(CK_SESSION_HANDLE h, CK_BYTE_PTR d, CK_ULONG dl, CK_BYTE_PTR s,
                     CK_ULONG_PTR sl)
{
	return not_supported();
}

CK_RV
tk_p11_C_VerifyRecoverInit(CK_SESSION_HANDLE h, CK_MECHANISM_PTR m, CK_OBJECT_HANDLE k)
{
	return not_supported();
}

CK_RV
tk_p11_C_VerifyRecover(CK_SESSION_HANDLE h, CK_BYTE_PTR s, CK_ULONG sl, CK_BYTE_PTR d,
                       CK_ULONG_PTR dl)
{
	return not_supported();
}

CK_RV
tk_p11_C_DigestEncryptUpdate(CK_SESSION_HANDLE h, CK_BYTE_PTR p, CK_ULONG pl, CK_BYTE_PTR e,
                             CK_ULONG_PTR el)
{
	return not_supported();
}

CK_RV
tk_p11_C_DecryptDigestUpdate(CK_SESSION_HANDLE h, CK_BYTE_PTR e, CK_ULONG el, CK_BYTE_PTR p,
                             CK_ULONG_PTR pl)
{
	return not_supported();
}

CK_RV
tk_p11_C_SignEncryptUpdate(CK_SESSION_HANDLE h, CK_BYTE_PTR p, CK_ULONG pl, CK_BYTE_PTR e,
                           CK_ULONG_PTR el)
{
	return not_supported();
}

CK_RV
tk_p11_C_DecryptVerifyUpdate(CK_SESSION_HANDLE h, CK_BYTE_PTR e, CK_ULONG el, CK_BYTE_PTR p,
                             CK_ULONG_PTR pl)
{
	return not_supported();
}

/* Legacy functions: always CKR_FUNCTION_NOT_PARALLEL (PKCS#11 3.0 5.20). */
CK_RV
tk_p11_C_GetFunctionStatus(CK_SESSION_HANDLE h)
{
	CK_RV rv = tk_p11_enter();

	return rv != CKR_OK ? rv : CKR_FUNCTION_NOT_PARALLEL;
}
CK_RV
tk_p11_C_CancelFunction(CK_SESSION_HANDLE h)
{
	CK_RV rv = tk_p11_enter();

	return rv != CKR_OK ? rv : CKR_FUNCTION_NOT_PARALLEL;
}
CK_RV
tk_p11_C_MessageEncryptInit(CK_SESSION_HANDLE h, CK_MECHANISM_PTR m, CK_OBJECT_HANDLE k)
{
	return not_supported();
}

CK_RV
tk_p11_C_EncryptMessage(CK_SESSION_HANDLE h, CK_VOID_PTR p, CK_ULONG pl, CK_BYTE_PTR a, CK_ULONG al,
                        CK_BYTE_PTR t, CK_ULONG tl, CK_BYTE_PTR c, CK_ULONG_PTR cl)
{
	return not_supported();
}

CK_RV
tk_p11_C_EncryptMessageBegin(CK_SESSION_HANDLE h, CK_VOID_PTR p, CK_ULONG pl, CK_BYTE_PTR a,
                             CK_ULONG al)
{
	return not_supported();
}

CK_RV
tk_p11_C_EncryptMessageNext(CK_SESSION_HANDLE h, CK_VOID_PTR p, CK_ULONG pl, CK_BYTE_PTR t,
                            CK_ULONG tl, CK_BYTE_PTR c, CK_ULONG_PTR cl, CK_FLAGS f)
{
	return not_supported();
}

CK_RV
tk_p11_C_MessageEncryptFinal(CK_SESSION_HANDLE h)
{
	return not_supported();
}

CK_RV
tk_p11_C_MessageDecryptInit(CK_SESSION_HANDLE h, CK_MECHANISM_PTR m, CK_OBJECT_HANDLE k)
{
	return not_supported();
}

CK_RV
tk_p11_C_DecryptMessage(CK_SESSION_HANDLE h, CK_VOID_PTR p, CK_ULONG pl, CK_BYTE_PTR a, CK_ULONG al,
                        CK_BYTE_PTR c, CK_ULONG cl, CK_BYTE_PTR t, CK_ULONG_PTR tl)
{
	return not_supported();
}

CK_RV
tk_p11_C_DecryptMessageBegin(CK_SESSION_HANDLE h, CK_VOID_PTR p, CK_ULONG pl, CK_BYTE_PTR a,
                             CK_ULONG al)
{
	return not_supported();
}

CK_RV
tk_p11_C_DecryptMessageNext(CK_SESSION_HANDLE h, CK_VOID_PTR p, CK_ULONG pl, CK_BYTE_PTR c,
                            CK_ULONG cl, CK_BYTE_PTR t, CK_ULONG_PTR tl, CK_FLAGS f)
{
	return not_supported();
}

CK_RV
tk_p11_C_MessageDecryptFinal(CK_SESSION_HANDLE h)
{
	return not_supported();
}

CK_RV
tk_p11_C_MessageSignInit(CK_SESSION_HANDLE h, CK_MECHANISM_PTR m, CK_OBJECT_HANDLE k)
{
	return not_supported();
}

CK_RV
tk_p11_C_SignMessage(CK_SESSION_HANDLE h, CK_VOID_PTR p, CK_ULONG pl, CK_BYTE_PTR d, CK_ULONG dl,
                     CK_BYTE_PTR s, CK_ULONG_PTR sl)
{
	return not_supported();
}

CK_RV
tk_p11_C_SignMessageBegin(CK_SESSION_HANDLE h, CK_VOID_PTR p, CK_ULONG pl)
{
	return not_supported();
}

CK_RV
tk_p11_C_SignMessageNext(CK_SESSION_HANDLE h, CK_VOID_PTR p, CK_ULONG pl, CK_BYTE_PTR d,
                         CK_ULONG dl, CK_BYTE_PTR s, CK_ULONG_PTR sl)
{
	return not_supported();
}

CK_RV
tk_p11_C_MessageSignFinal(CK_SESSION_HANDLE h)
{
	return not_supported();
}

CK_RV
tk_p11_C_MessageVerifyInit(CK_SESSION_HANDLE h, CK_MECHANISM_PTR m, CK_OBJECT_HANDLE k)
{
	return not_supported();
}

CK_RV
tk_p11_C_VerifyMessage(CK_SESSION_HANDLE h, CK_VOID_PTR p, CK_ULONG pl, CK_BYTE_PTR d, CK_ULONG dl,
                       CK_BYTE_PTR s, CK_ULONG sl)
{
	return not_supported();
}

CK_RV
tk_p11_C_VerifyMessageBegin(CK_SESSION_HANDLE h, CK_VOID_PTR p, CK_ULONG pl)
{
	return not_supported();
}

CK_RV
tk_p11_C_VerifyMessageNext(CK_SESSION_HANDLE h, CK_VOID_PTR p, CK_ULONG pl, CK_BYTE_PTR d,
                           CK_ULONG dl, CK_BYTE_PTR s, CK_ULONG sl)
{
	return not_supported();
}

CK_RV
tk_p11_C_MessageVerifyFinal(CK_SESSION_HANDLE h)
{
	return not_supported();
}

/* --- function lists and interfaces -------------------------------------- */

// clang-format off
#define P11_V2_FUNCTIONS(X) \
	X(C_Initialize) X(C_Finalize) X(C_GetInfo) X(C_GetFunctionList) X(C_GetSlotList) \
	X(C_GetSlotInfo) X(C_GetTokenInfo) X(C_GetMechanismList) X(C_GetMechanismInfo) \
	X(C_InitToken) X(C_InitPIN) X(C_SetPIN) X(C_OpenSession) X(C_CloseSession) \
	X(C_CloseAllSessions) X(C_GetSessionInfo) X(C_GetOperationState) \
	X(C_SetOperationState) X(C_Login) X(C_Logout) X(C_CreateObject) X(C_CopyObject) \
	X(C_DestroyObject) X(C_GetObjectSize) X(C_GetAttributeValue) \
	X(C_SetAttributeValue) X(C_FindObjectsInit) X(C_FindObjects) \
	X(C_FindObjectsFinal) X(C_EncryptInit) X(C_Encrypt) X(C_EncryptUpdate) \
	X(C_EncryptFinal) X(C_DecryptInit) X(C_Decrypt) X(C_DecryptUpdate) \
	X(C_DecryptFinal) X(C_DigestInit) X(C_Digest) X(C_DigestUpdate) X(C_DigestKey) \
	X(C_DigestFinal) X(C_SignInit) X(C_Sign) X(C_SignUpdate) X(C_SignFinal) \
	X(C_SignRecoverInit) X(C_SignRecover) X(C_VerifyInit) X(C_Verify) \
	X(C_VerifyUpdate) X(C_VerifyFinal) X(C_VerifyRecoverInit) X(C_VerifyRecover) \
	X(C_DigestEncryptUpdate) X(C_DecryptDigestUpdate) X(C_SignEncryptUpdate) \
	X(C_DecryptVerifyUpdate) X(C_GenerateKey) X(C_GenerateKeyPair) X(C_WrapKey) \
	X(C_UnwrapKey) X(C_DeriveKey) X(C_SeedRandom) X(C_GenerateRandom) \
	X(C_GetFunctionStatus) X(C_CancelFunction) X(C_WaitForSlotEvent)

#define P11_V3_FUNCTIONS(X) \
	X(C_GetInterfaceList) X(C_GetInterface) X(C_LoginUser) X(C_SessionCancel) \
	X(C_MessageEncryptInit) X(C_EncryptMessage) X(C_EncryptMessageBegin) \
	X(C_EncryptMessageNext) X(C_MessageEncryptFinal) X(C_MessageDecryptInit) \
	X(C_DecryptMessage) X(C_DecryptMessageBegin) X(C_DecryptMessageNext) \
	X(C_MessageDecryptFinal) X(C_MessageSignInit) X(C_SignMessage) \
	X(C_SignMessageBegin) X(C_SignMessageNext) X(C_MessageSignFinal) \
	X(C_MessageVerifyInit) X(C_VerifyMessage) X(C_VerifyMessageBegin) \
	X(C_VerifyMessageNext) X(C_MessageVerifyFinal)
// clang-format on

#define P11_FN_INIT(name) .name = name,

static CK_FUNCTION_LIST list_v2 = {.version = {2, 40}, P11_V2_FUNCTIONS(P11_FN_INIT)};

static CK_FUNCTION_LIST_3_0 list_v3 = {.version = {3, 0},
                                       P11_V2_FUNCTIONS(P11_FN_INIT) P11_V3_FUNCTIONS(P11_FN_INIT)};

static char iface_name[] = "PKCS 11";
static char ext_name[] = TK_P11EXT_NAME;

/* The first entry is the default interface. Not CKF_INTERFACE_FORK_SAFE:
 * a child must call C_Initialize again. The last two are the module's own
 * (tokenkit/p11ext.h; its table starts with its version, as PKCS#11's),
 * the newest first. */
static CK_INTERFACE interfaces[] = {
        {iface_name, &list_v3, 0},      {iface_name, &list_v2, 0},      {ext_name, &tk_p11_ext, 0},
        {ext_name, &tk_p11_ext_1_1, 0}, {ext_name, &tk_p11_ext_1_0, 0},
};
#define NIFACES (sizeof(interfaces) / sizeof(interfaces[0]))

CK_RV
tk_p11_C_GetFunctionList(CK_FUNCTION_LIST_PTR_PTR ppFunctionList)
{
	if (ppFunctionList == NULL)
		return CKR_ARGUMENTS_BAD;
	*ppFunctionList = &list_v2;
	return CKR_OK;
}

CK_RV
tk_p11_C_GetInterfaceList(CK_INTERFACE_PTR pInterfacesList, CK_ULONG_PTR pulCount)
{
	if (pulCount == NULL)
		return CKR_ARGUMENTS_BAD;
	if (pInterfacesList == NULL) {
		*pulCount = NIFACES;
		return CKR_OK;
	}
	if (*pulCount < NIFACES) {
		*pulCount = NIFACES;
		return CKR_BUFFER_TOO_SMALL;
	}
	memcpy(pInterfacesList, interfaces, sizeof(interfaces));
	*pulCount = NIFACES;
	return CKR_OK;
}

CK_RV
tk_p11_C_GetInterface(CK_UTF8CHAR_PTR pInterfaceName, CK_VERSION_PTR pVersion,
                      CK_INTERFACE_PTR_PTR ppInterface, CK_FLAGS flags)
{
	if (ppInterface == NULL)
		return CKR_ARGUMENTS_BAD;
	*ppInterface = NULL;
	for (size_t i = 0; i < NIFACES; i++) {
		const CK_VERSION *v = (const CK_VERSION *)interfaces[i].pFunctionList;

		if (pInterfaceName != NULL &&
		    strcmp((const char *)pInterfaceName, interfaces[i].pInterfaceName) != 0)
			continue;
		if (pVersion != NULL &&
		    (pVersion->major != v->major || pVersion->minor != v->minor))
			continue;
		if ((interfaces[i].flags & flags) != flags)
			continue;
		*ppInterface = &interfaces[i];
		return CKR_OK;
	}
	return CKR_ARGUMENTS_BAD;
}
