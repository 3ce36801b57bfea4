/* tk-p11-login: login state under several sessions, threads and processes
 * (issue 8 §3 and §4), against tokenkit-pkcs11.so (dlopen).
 *
 *   tk-p11-login MODULE two-sessions
 *   tk-p11-login MODULE two-procs
 *   tk-p11-login MODULE threads NTHREADS SECONDS
 *   tk-p11-login MODULE procs NPROCS SECONDS [DISTURB_READER]
 *   tk-p11-login MODULE others READER
 *   tk-p11-login MODULE worker SECONDS SEED      (one process of `procs`)
 *   tk-p11-login MODULE login-logout|login-only  (another program of `others`)
 *   tk-p11-login MODULE restarts SECONDS DEADLINE_MS   (broker mode, issue 13)
 *   tk-p11-login MODULE steady SECONDS              (a signer's pace, issue 13)
 *   tk-p11-login MODULE repeat-init [restart]       (pipelined inits, issue 13)
 *   tk-p11-login MODULE decrypt-consent             (a repeated decryption, issue 13)
 *
 * The token is the first one found (or the one in the reader whose name
 * starts with $TK_LOGIN_READER). Its keys: CKA_ID 01 (9A, PIN once) and 02
 * (9C, PIN always); each signature is checked with OpenSSL against the
 * certificate with the same CKA_ID. PIN: $TK_LOGIN_PIN (123456).
 *
 * two-sessions: session A initialises a 9C signature and gives its PIN
 *   (C_Login CKU_CONTEXT_SPECIFIC); session B then signs with 9C without one
 *   and must get CKR_USER_NOT_LOGGED_IN; A's signature must verify. Also:
 *   the context login is spent by one signature, kept across a length query,
 *   works for multi-part signing, and a wrong context PIN answers
 *   CKR_PIN_INCORRECT.
 * two-procs: the same across two processes: A gives its PIN, then process B
 *   gives its own and signs, then A signs (must verify).
 * threads: NTHREADS threads, one session each, mix 9A and 9C signatures for
 *   SECONDS; every call must succeed and every signature verify.
 * procs: NPROCS worker processes for SECONDS (a worker that exits is
 *   replaced); each signs with 9A and 9C in a loop and now and then logs out,
 *   closes its last session or exits. With DISTURB_READER another program
 *   ($TK_LOGIN_DISTURB, called as `CMD READER warm` and `CMD READER select
 *   AID`) resets the card or selects another applet every 150-450 ms.
 *   Checked: no error but CKR_USER_NOT_LOGGED_IN, every signature verifies,
 *   9C never fails, and each CKR_USER_NOT_LOGGED_IN from C_Sign comes with
 *   the session already public (C_GetSessionInfo) and an event for the slot
 *   (C_WaitForSlotEvent, CKF_DONT_BLOCK); the worker then logs in again and
 *   goes on. With $TK_LOGIN_EXPECT_NO_LOSS=1 (the opt-in PIN cache) not one
 *   CKR_USER_NOT_LOGGED_IN from C_Sign is allowed either.
 * others: one thing at a time, by another program, between two 9A
 *   signatures of ours: a card reset, a SELECT of another application, a
 *   login and logout. The next 9A signature answers CKR_USER_NOT_LOGGED_IN
 *   with the session already public and a slot event (with
 *   $TK_LOGIN_EXPECT_NO_LOSS=1: it succeeds); 9C signatures always
 *   succeed; another program's login makes no session of ours logged in.
 * restarts: one session signing with 9A for SECONDS while the broker is
 *   killed and started again (test_broker.sh): the session is opened again
 *   when the module says it ended, the user logs in again when the session
 *   turned public. Checked: every CKR_OK signature verifies, no call takes
 *   longer than DEADLINE_MS + 1 s, and signatures succeed again after the
 *   broker's last start.
 * repeat-init: the same 9A C_SignInit again and again, as a broker client
 *   pipelines it: a second init answers CKR_OPERATION_ACTIVE; a logout by
 *   another session between init and sign makes C_Sign answer
 *   CKR_USER_NOT_LOGGED_IN; with "restart", between one init and its sign
 *   it prints "PAUSE ..." and waits for a line on stdin (the test restarts
 *   the broker meanwhile): C_Sign must fail, and signing works again after.
 * decrypt-consent: decrypt with 9D (CKA_ID 03, RSA PKCS #1 v1.5) twice,
 *   then print "PAUSE ..." and wait for a line on stdin (the test forgets the
 *   consent and makes the prompt deny), then the same C_DecryptInit again: it
 *   must answer the refusal itself (CKR_KEY_FUNCTION_NOT_PERMITTED), since
 *   C_Decrypt has no code for it; a broker client that sent that init with
 *   the next call would answer CKR_OK, then CKR_FUNCTION_FAILED.
 * steady: sign with 9A for SECONDS; prints the signatures, the longest wait
 *   between two of them and how many whole seconds had none (the fairness
 *   figures of bench/broker_fair.sh).
 * Prints "RESULT PASS" / "RESULT FAIL" and the counters (figures for the
 * closing note). Exit 0 on PASS. */
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <openssl/bn.h>
#include <openssl/ecdsa.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>

#include <pkcs11-helper-1.0/pkcs11.h>

#include "../p11_load.h"

#define MAX_PROCS 16
#define MAX_THREADS 32
#define OTHER_AID "D27600012401" /* OpenPGP: another applet of the card */

static CK_FUNCTION_LIST_PTR p;
static const char *module_path;
static char pin[64] = "123456";
static CK_SLOT_ID slot;

static int64_t
now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void
sleep_ms(int64_t ms)
{
	struct timespec ts = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000};

	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
}

static void say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static bool in_worker;

static void
say(const char *fmt, ...)
{
	va_list ap;
	char line[512];

	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	printf("[%d] %s\n", (int)getpid(), line);
	fflush(stdout);
	/* a worker's stdout is its report pipe: its other messages go to
	 * stderr too, where the test shows them on failure */
	if (in_worker && strncmp(line, "WORKER ", 7) != 0)
		fprintf(stderr, "[%d] %s\n", (int)getpid(), line);
}

static const char *
rvn(CK_RV rv)
{
	static __thread char buf[24];

	switch (rv) {
	case CKR_OK:
		return "CKR_OK";
	case CKR_USER_NOT_LOGGED_IN:
		return "CKR_USER_NOT_LOGGED_IN";
	case CKR_USER_ALREADY_LOGGED_IN:
		return "CKR_USER_ALREADY_LOGGED_IN";
	case CKR_PIN_INCORRECT:
		return "CKR_PIN_INCORRECT";
	case CKR_DEVICE_ERROR:
		return "CKR_DEVICE_ERROR";
	case CKR_OPERATION_NOT_INITIALIZED:
		return "CKR_OPERATION_NOT_INITIALIZED";
	case CKR_OPERATION_ACTIVE:
		return "CKR_OPERATION_ACTIVE";
	case CKR_FUNCTION_FAILED:
		return "CKR_FUNCTION_FAILED";
	case CKR_GENERAL_ERROR:
		return "CKR_GENERAL_ERROR";
	case CKR_KEY_FUNCTION_NOT_PERMITTED:
		return "CKR_KEY_FUNCTION_NOT_PERMITTED";
	default:
		snprintf(buf, sizeof(buf), "0x%lx", (unsigned long)rv);
		return buf;
	}
}

/* --- module and token ---------------------------------------------------- */

static int
load_module(void)
{
	CK_C_INITIALIZE_ARGS ia;
	CK_SLOT_ID slots[16];
	CK_ULONG n = 16;
	const char *want = getenv("TK_LOGIN_READER");
	CK_RV rv;

	if ((p = tk_test_p11_load("tk-p11-login", module_path)) == NULL)
		return -1;
	memset(&ia, 0, sizeof(ia));
	ia.flags = CKF_OS_LOCKING_OK;
	if ((rv = p->C_Initialize(&ia)) != CKR_OK) {
		say("C_Initialize: %s", rvn(rv));
		return -1;
	}
	/* A card whose exchange takes longer than the module's stall bound
	 * (100 ms; seen under ASan with the machine loaded) is not waited for by
	 * C_GetSlotList while another token can be shown: its token shows up a
	 * moment later (a slot event), as an application that starts then sees
	 * it. Not what this program tests: wait for the token of the reader it
	 * wants (TK_LOGIN_READER, else any), up to 20 s, which only a hang
	 * exceeds. It took the first list with any token before, and gave up
	 * when the wanted reader's was not in it (likely so: 1 of 8 programs of
	 * bench/broker_fair.sh, embedded, ended without its result line). */
	for (int64_t until = now_ms() + 20000;;) {
		n = 16;
		rv = p->C_GetSlotList(CK_TRUE, slots, &n);
		for (CK_ULONG i = 0; rv == CKR_OK && i < n; i++) {
			CK_SLOT_INFO si;

			if (want == NULL ||
			    (p->C_GetSlotInfo(slots[i], &si) == CKR_OK &&
			     memcmp(si.slotDescription, want,
			            strnlen(want, sizeof(si.slotDescription))) == 0)) {
				slot = slots[i];
				return 0;
			}
		}
		if (now_ms() >= until) {
			say("no token in reader %s (%s)", want != NULL ? want : "(any)", rvn(rv));
			return -1;
		}
		usleep(50 * 1000);
	}
}

static CK_OBJECT_HANDLE
find1(CK_SESSION_HANDLE s, CK_OBJECT_CLASS cls, unsigned char id)
{
	CK_ATTRIBUTE t[] = {{CKA_CLASS, &cls, sizeof(cls)}, {CKA_ID, &id, 1}};
	CK_OBJECT_HANDLE h = CK_INVALID_HANDLE;
	CK_ULONG n = 0;

	if (p->C_FindObjectsInit(s, t, 2) != CKR_OK)
		return CK_INVALID_HANDLE;
	if (p->C_FindObjects(s, &h, 1, &n) != CKR_OK || n != 1)
		h = CK_INVALID_HANDLE;
	p->C_FindObjectsFinal(s);
	return h;
}

/* The public key of the certificate with CKA_ID id. */
static EVP_PKEY *
cert_pub(CK_SESSION_HANDLE s, unsigned char id)
{
	CK_OBJECT_HANDLE h = find1(s, CKO_CERTIFICATE, id);
	unsigned char der[4096];
	CK_ATTRIBUTE a = {CKA_VALUE, der, sizeof(der)};
	const unsigned char *q = der;
	X509 *x;
	EVP_PKEY *k;

	if (h == CK_INVALID_HANDLE || p->C_GetAttributeValue(s, h, &a, 1) != CKR_OK)
		return NULL;
	x = d2i_X509(NULL, &q, (long)a.ulValueLen);
	if (x == NULL)
		return NULL;
	k = X509_get_pubkey(x);
	X509_free(x);
	return k;
}

struct key {
	unsigned char id;
	EVP_PKEY *pub;
	bool ec;
	bool always; /* needs C_Login(CKU_CONTEXT_SPECIFIC) before each use */
};

static struct key keys[2] = {{1, NULL, false, false}, {2, NULL, false, true}};

static int
load_keys(CK_SESSION_HANDLE s)
{
	for (int i = 0; i < 2; i++) {
		if (keys[i].pub != NULL)
			continue;
		keys[i].pub = cert_pub(s, keys[i].id);
		if (keys[i].pub == NULL) {
			say("no certificate with CKA_ID %02x", keys[i].id);
			return -1;
		}
		keys[i].ec = EVP_PKEY_get_base_id(keys[i].pub) == EVP_PKEY_EC;
	}
	return 0;
}

static bool
verify(const struct key *k, const unsigned char *msg, size_t mlen, const unsigned char *sig,
       size_t slen)
{
	unsigned char *der = NULL;
	const unsigned char *s = sig;
	int dl = (int)slen;
	EVP_MD_CTX *md = EVP_MD_CTX_new();
	bool ok = false;

	if (k->ec) {
		ECDSA_SIG *es = ECDSA_SIG_new();
		size_t half = slen / 2;

		ECDSA_SIG_set0(es, BN_bin2bn(sig, (int)half, NULL),
		               BN_bin2bn(sig + half, (int)half, NULL));
		dl = i2d_ECDSA_SIG(es, &der);
		ECDSA_SIG_free(es);
		s = der;
	}
	ok = md != NULL && dl > 0 &&
	     EVP_DigestVerifyInit(md, NULL, EVP_sha256(), NULL, k->pub) == 1 &&
	     EVP_DigestVerify(md, s, (size_t)dl, msg, mlen) == 1;
	EVP_MD_CTX_free(md);
	OPENSSL_free(der);
	return ok;
}

/* What one signature attempt came to. */
enum outcome {
	SIGN_OK,
	SIGN_BADSIG,          /* CKR_OK but the signature does not verify */
	SIGN_NOT_LOGGED,      /* CKR_USER_NOT_LOGGED_IN from C_Sign */
	SIGN_INIT_NOT_LOGGED, /* ... from C_SignInit or the context login */
	SIGN_ERROR,
};

struct sign_result {
	enum outcome out;
	CK_RV rv;
	const char *step;
};

/* C_SignInit, (C_Login CKU_CONTEXT_SPECIFIC for 9C,) C_Sign, verify. */
static struct sign_result
sign_once(CK_SESSION_HANDLE s, const struct key *k, bool context_login)
{
	CK_OBJECT_HANDLE h = find1(s, CKO_PRIVATE_KEY, k->id);
	CK_MECHANISM m = {k->ec ? CKM_ECDSA_SHA256 : CKM_SHA256_RSA_PKCS, NULL, 0};
	unsigned char msg[48], sig[512];
	CK_ULONG sl = sizeof(sig);
	struct sign_result res = {SIGN_ERROR, CKR_OK, ""};
	CK_RV rv;

	RAND_bytes(msg, sizeof(msg));
	if (h == CK_INVALID_HANDLE) {
		/* private keys are hidden while the session is public */
		res.out = SIGN_INIT_NOT_LOGGED;
		res.rv = CKR_USER_NOT_LOGGED_IN;
		res.step = "find";
		return res;
	}
	rv = p->C_SignInit(s, &m, h);
	if (rv != CKR_OK) {
		res.out = rv == CKR_USER_NOT_LOGGED_IN ? SIGN_INIT_NOT_LOGGED : SIGN_ERROR;
		res.rv = rv;
		res.step = "C_SignInit";
		return res;
	}
	if (context_login) {
		rv = p->C_Login(s, CKU_CONTEXT_SPECIFIC, (CK_UTF8CHAR_PTR)pin, strlen(pin));
		if (rv != CKR_OK) {
			/* end the operation */
			p->C_Sign(s, msg, sizeof(msg), sig, &sl);
			res.out = rv == CKR_USER_NOT_LOGGED_IN ? SIGN_INIT_NOT_LOGGED : SIGN_ERROR;
			res.rv = rv;
			res.step = "C_Login(context)";
			return res;
		}
	}
	rv = p->C_Sign(s, msg, sizeof(msg), sig, &sl);
	res.rv = rv;
	res.step = "C_Sign";
	if (rv == CKR_OK)
		res.out = verify(k, msg, sizeof(msg), sig, sl) ? SIGN_OK : SIGN_BADSIG;
	else
		res.out = rv == CKR_USER_NOT_LOGGED_IN ? SIGN_NOT_LOGGED : SIGN_ERROR;
	return res;
}

static CK_RV
login_user(CK_SESSION_HANDLE s)
{
	CK_RV rv = p->C_Login(s, CKU_USER, (CK_UTF8CHAR_PTR)pin, strlen(pin));

	return rv == CKR_USER_ALREADY_LOGGED_IN ? CKR_OK : rv;
}

static bool
session_public(CK_SESSION_HANDLE s)
{
	CK_SESSION_INFO si;

	return p->C_GetSessionInfo(s, &si) == CKR_OK &&
	       (si.state == CKS_RO_PUBLIC_SESSION || si.state == CKS_RW_PUBLIC_SESSION);
}

/* An event for our slot is pending (C_WaitForSlotEvent without blocking);
 * events of other slots are passed over. */
static bool
slot_event_pending(void)
{
	for (int i = 0; i < 64; i++) {
		CK_SLOT_ID sl = (CK_SLOT_ID)-1;
		CK_RV rv = p->C_WaitForSlotEvent(CKF_DONT_BLOCK, &sl, NULL);

		if (rv != CKR_OK)
			return false;
		if (sl == slot)
			return true;
	}
	return false;
}

static void
drain_events(void)
{
	CK_SLOT_ID sl;

	for (int i = 0; i < 64 && p->C_WaitForSlotEvent(CKF_DONT_BLOCK, &sl, NULL) == CKR_OK; i++)
		;
}

static int fails;

#define EXPECT(cond, ...)                                                                          \
	do {                                                                                       \
		if (!(cond)) {                                                                     \
			fails++;                                                                   \
			say("FAIL line %d: %s", __LINE__, #cond);                                  \
			say(__VA_ARGS__);                                                          \
		}                                                                                  \
	} while (0)

static CK_SESSION_HANDLE
open_session(void)
{
	CK_SESSION_HANDLE s = CK_INVALID_HANDLE;
	CK_RV rv = p->C_OpenSession(slot, CKF_SERIAL_SESSION, NULL, NULL, &s);

	return rv == CKR_OK ? s : CK_INVALID_HANDLE;
}

/* --- broker restarts, a steady signer ------------------------------------ */

static int
run_restarts(int secs, int deadline_ms)
{
	CK_SESSION_HANDLE s = open_session();
	int64_t end = now_ms() + secs * 1000LL, last_ok = 0, worst = 0;
	long ok = 0, errors = 0, reopened = 0, relogins = 0;

	EXPECT(s != CK_INVALID_HANDLE && login_user(s) == CKR_OK && load_keys(s) == 0,
	       "set-up failed");
	while (fails == 0 && now_ms() < end) {
		int64_t t0 = now_ms(), took;
		struct sign_result r = {SIGN_ERROR, CKR_OK, "open"};

		if (s == CK_INVALID_HANDLE) {
			s = open_session();
			reopened += s != CK_INVALID_HANDLE;
		}
		if (s != CK_INVALID_HANDLE && session_public(s)) {
			r.rv = login_user(s);
			relogins += r.rv == CKR_OK;
		}
		if (s != CK_INVALID_HANDLE && r.rv == CKR_OK)
			r = sign_once(s, &keys[0], false);
		took = now_ms() - t0;
		worst = took > worst ? took : worst;
		EXPECT(took <= deadline_ms + 1000, "a call took %lld ms (%s: %s)", (long long)took,
		       r.step, rvn(r.rv));
		EXPECT(r.out != SIGN_BADSIG, "CKR_OK with a signature that does not verify");
		if (r.out == SIGN_OK) {
			ok++;
			last_ok = now_ms();
			continue;
		}
		errors++;
		if (r.rv == CKR_SESSION_HANDLE_INVALID || r.rv == CKR_SESSION_CLOSED ||
		    r.rv == CKR_TOKEN_NOT_PRESENT || r.rv == CKR_DEVICE_REMOVED)
			s = CK_INVALID_HANDLE;
		sleep_ms(20);
	}
	say("RESTARTS %d s: signatures %ld, errors %ld, sessions reopened %ld, logins again %ld, "
	    "longest call %lld ms, last signature %lld ms before the end",
	    secs, ok, errors, reopened, relogins, (long long)worst, (long long)(end - last_ok));
	EXPECT(ok > 0 && end - last_ok < 3000, "no signature in the last 3 s");
	say("RESULT %s", fails ? "FAIL" : "PASS");
	return fails ? 1 : 0;
}

/* C_SignInit then C_Sign with 9A, the signature checked: its rv. */
static CK_RV
init_then_sign(CK_SESSION_HANDLE s, CK_OBJECT_HANDLE h, const char *between)
{
	CK_MECHANISM m = {keys[0].ec ? CKM_ECDSA_SHA256 : CKM_SHA256_RSA_PKCS, NULL, 0};
	unsigned char msg[48], sig[512];
	CK_ULONG sl = sizeof(sig);
	CK_RV rv;
	char line[64];

	RAND_bytes(msg, sizeof(msg));
	rv = p->C_SignInit(s, &m, h);
	EXPECT(rv == CKR_OK, "C_SignInit: %s", rvn(rv));
	if (between != NULL) {
		/* the test does its part (a broker restart) and says go */
		say("PAUSE %s", between);
		if (fgets(line, sizeof(line), stdin) == NULL)
			say("no go on stdin");
	}
	rv = p->C_Sign(s, msg, sizeof(msg), sig, &sl);
	EXPECT(rv != CKR_OK || verify(&keys[0], msg, sizeof(msg), sig, sl),
	       "CKR_OK with a signature that does not verify");
	return rv;
}

/* repeat-init: the same C_SignInit again and again (a broker client sends
 * such an init with the next call, issue 13): its failure must reach the
 * C_Sign after it, in C_Sign's codes, and never as a signature. */
static int
run_repeat_init(bool restart)
{
	CK_SESSION_HANDLE s = open_session(), s2;
	CK_MECHANISM m = {CKM_ECDSA_SHA256, NULL, 0};
	CK_OBJECT_HANDLE h;
	unsigned char msg[48], sig[512];
	CK_ULONG sl = sizeof(sig);
	CK_RV rv;

	EXPECT(s != CK_INVALID_HANDLE && login_user(s) == CKR_OK && load_keys(s) == 0,
	       "set-up failed");
	h = find1(s, CKO_PRIVATE_KEY, keys[0].id);
	m.mechanism = keys[0].ec ? CKM_ECDSA_SHA256 : CKM_SHA256_RSA_PKCS;
	for (int i = 0; i < 3; i++)
		EXPECT((rv = init_then_sign(s, h, NULL)) == CKR_OK, "sign %d: %s", i, rvn(rv));

	/* the same init twice: the second finds the first active */
	EXPECT((rv = p->C_SignInit(s, &m, h)) == CKR_OK, "C_SignInit: %s", rvn(rv));
	rv = p->C_SignInit(s, &m, h);
	EXPECT(rv == CKR_OPERATION_ACTIVE, "a second C_SignInit: %s", rvn(rv));
	RAND_bytes(msg, sizeof(msg));
	rv = p->C_Sign(s, msg, sizeof(msg), sig, &sl);
	EXPECT(rv == CKR_OK && verify(&keys[0], msg, sizeof(msg), sig, sl), "C_Sign after it: %s",
	       rvn(rv));

	/* another session logs the application out between init and sign */
	for (int i = 0; i < 2; i++)
		EXPECT((rv = init_then_sign(s, h, NULL)) == CKR_OK, "sign: %s", rvn(rv));
	EXPECT((rv = p->C_SignInit(s, &m, h)) == CKR_OK, "C_SignInit: %s", rvn(rv));
	s2 = open_session();
	EXPECT((rv = p->C_Logout(s2)) == CKR_OK, "C_Logout on another session: %s", rvn(rv));
	p->C_CloseSession(s2);
	rv = p->C_Sign(s, msg, sizeof(msg), sig, &sl);
	EXPECT(rv == CKR_USER_NOT_LOGGED_IN, "C_Sign after a logout: %s", rvn(rv));
	EXPECT(session_public(s), "the session still says logged in");
	EXPECT((rv = login_user(s)) == CKR_OK, "login again: %s", rvn(rv));
	EXPECT((rv = init_then_sign(s, h, NULL)) == CKR_OK, "sign after it: %s", rvn(rv));

	if (restart) {
		/* the broker restarts between init and sign: an error, never a
		 * signature by a key the session no longer has */
		EXPECT((rv = init_then_sign(s, h, NULL)) == CKR_OK, "sign: %s", rvn(rv));
		rv = init_then_sign(s, h, "restart the broker");
		EXPECT(rv != CKR_OK, "C_Sign across a broker restart: CKR_OK");
		say("C_Sign across a broker restart: %s", rvn(rv));
		if (rv == CKR_SESSION_HANDLE_INVALID || rv == CKR_SESSION_CLOSED)
			s = open_session();
		EXPECT((rv = login_user(s)) == CKR_OK, "login after the restart: %s", rvn(rv));
		h = find1(s, CKO_PRIVATE_KEY, keys[0].id);
		for (int i = 0; i < 3; i++)
			EXPECT((rv = init_then_sign(s, h, NULL)) == CKR_OK,
			       "sign after the restart: %s", rvn(rv));
	}
	say("RESULT %s", fails ? "FAIL" : "PASS");
	return fails ? 1 : 0;
}

/* C_DecryptInit and C_Decrypt of a random secret encrypted to pub: the
 * init's rv (and the decryption's, checked, when it worked). */
static CK_RV
decrypt_once(CK_SESSION_HANDLE s, CK_OBJECT_HANDLE h, EVP_PKEY *pub)
{
	CK_MECHANISM m = {CKM_RSA_PKCS, NULL, 0};
	unsigned char secret[32], ct[512], pt[512];
	size_t cl = sizeof(ct);
	CK_ULONG pl = sizeof(pt);
	EVP_PKEY_CTX *e = EVP_PKEY_CTX_new(pub, NULL);
	CK_RV rv;

	RAND_bytes(secret, sizeof(secret));
	EXPECT(e != NULL && EVP_PKEY_encrypt_init(e) == 1 &&
	               EVP_PKEY_CTX_set_rsa_padding(e, RSA_PKCS1_PADDING) == 1 &&
	               EVP_PKEY_encrypt(e, ct, &cl, secret, sizeof(secret)) == 1,
	       "OpenSSL could not encrypt to the 9D certificate's key");
	EVP_PKEY_CTX_free(e);
	rv = p->C_DecryptInit(s, &m, h);
	if (rv != CKR_OK)
		return rv;
	rv = p->C_Decrypt(s, ct, (CK_ULONG)cl, pt, &pl);
	EXPECT(rv == CKR_OK && pl == sizeof(secret) && memcmp(pt, secret, pl) == 0,
	       "C_Decrypt after a C_DecryptInit that worked: %s%s", rvn(rv),
	       rv == CKR_OK ? " with the wrong plaintext" : "");
	return CKR_OK;
}

static int
run_decrypt_consent(void)
{
	CK_SESSION_HANDLE s = open_session();
	CK_OBJECT_HANDLE h;
	EVP_PKEY *pub;
	char line[64];
	CK_RV rv;

	EXPECT(s != CK_INVALID_HANDLE && login_user(s) == CKR_OK, "set-up failed");
	pub = cert_pub(s, 3);
	h = find1(s, CKO_PRIVATE_KEY, 3);
	EXPECT(pub != NULL && h != CK_INVALID_HANDLE, "no 9D key and certificate (CKA_ID 03)");
	for (int i = 0; pub != NULL && i < 2; i++)
		EXPECT((rv = decrypt_once(s, h, pub)) == CKR_OK, "decryption %d: %s", i + 1,
		       rvn(rv));
	say("PAUSE forget the consent; the prompt denies");
	if (fgets(line, sizeof(line), stdin) == NULL)
		say("no go on stdin");
	if (pub != NULL) {
		rv = decrypt_once(s, h, pub);
		say("C_DecryptInit after the consent was withdrawn: %s", rvn(rv));
		EXPECT(rv == CKR_KEY_FUNCTION_NOT_PERMITTED,
		       "C_DecryptInit after the consent was withdrawn: %s, not "
		       "CKR_KEY_FUNCTION_NOT_PERMITTED",
		       rvn(rv));
	}
	EVP_PKEY_free(pub);
	say("RESULT %s", fails ? "FAIL" : "PASS");
	return fails ? 1 : 0;
}

static int
run_steady(int secs)
{
	CK_SESSION_HANDLE s = open_session();
	int64_t start = now_ms(), end = start + secs * 1000LL, prev = start, gap = 0;
	long ok = 0, errors = 0, idle_secs = 0;
	bool *had = calloc((size_t)secs + 1, sizeof(bool));

	EXPECT(had != NULL && s != CK_INVALID_HANDLE && login_user(s) == CKR_OK &&
	               load_keys(s) == 0,
	       "set-up failed");
	while (fails == 0 && now_ms() < end) {
		struct sign_result r = sign_once(s, &keys[0], false);
		int64_t t = now_ms();

		EXPECT(r.out != SIGN_BADSIG, "CKR_OK with a signature that does not verify");
		if (r.out != SIGN_OK) {
			errors++;
			continue;
		}
		ok++;
		gap = t - prev > gap ? t - prev : gap;
		prev = t;
		if (t < end)
			had[(t - start) / 1000] = true;
	}
	for (int i = 0; had != NULL && i < secs; i++)
		idle_secs += !had[i];
	free(had);
	say("STEADY %d s: signatures %ld, errors %ld, longest wait %lld ms, seconds without a "
	    "signature %ld",
	    secs, ok, errors, (long long)gap, idle_secs);
	say("RESULT %s", fails ? "FAIL" : "PASS");
	return fails ? 1 : 0;
}

/* --- two sessions, two processes ------------------------------------------ */

static int
run_two_sessions(void)
{
	CK_SESSION_HANDLE a = open_session(), b = open_session();
	CK_UTF8CHAR wrong_pin[] = "999999";
	CK_OBJECT_HANDLE h9c;
	CK_MECHANISM m;
	unsigned char msg[] = "two sessions", sig[512];
	CK_ULONG sl;
	CK_RV rv;
	struct sign_result r;

	EXPECT(a != CK_INVALID_HANDLE && b != CK_INVALID_HANDLE, "sessions");
	EXPECT(login_user(a) == CKR_OK, "login");
	if (fails > 0 || load_keys(a) != 0)
		return 1;
	h9c = find1(a, CKO_PRIVATE_KEY, 2);
	m = (CK_MECHANISM){keys[1].ec ? CKM_ECDSA_SHA256 : CKM_SHA256_RSA_PKCS, NULL, 0};

	/* A gives its PIN for its 9C signature; B signs with 9C without one */
	EXPECT(p->C_SignInit(a, &m, h9c) == CKR_OK, "A C_SignInit");
	EXPECT(p->C_Login(a, CKU_CONTEXT_SPECIFIC, (CK_UTF8CHAR_PTR)pin, strlen(pin)) == CKR_OK,
	       "A context login");
	EXPECT(p->C_SignInit(b, &m, h9c) == CKR_OK, "B C_SignInit");
	sl = sizeof(sig);
	rv = p->C_Sign(b, msg, sizeof(msg), sig, &sl);
	EXPECT(rv == CKR_USER_NOT_LOGGED_IN, "B signed without a PIN of its own: %s%s", rvn(rv),
	       rv == CKR_OK && verify(&keys[1], msg, sizeof(msg), sig, sl) ? " (a valid signature)"
	                                                                   : "");
	/* a length query keeps A's operation and its login */
	sl = 0;
	rv = p->C_Sign(a, msg, sizeof(msg), NULL, &sl);
	EXPECT(rv == CKR_OK && sl > 0, "A length query: %s", rvn(rv));
	sl = sizeof(sig);
	rv = p->C_Sign(a, msg, sizeof(msg), sig, &sl);
	EXPECT(rv == CKR_OK, "A C_Sign: %s", rvn(rv));
	EXPECT(rv != CKR_OK || verify(&keys[1], msg, sizeof(msg), sig, sl), "A's signature");
	EXPECT(!session_public(a), "A's session is still logged in");

	/* the context login was spent by that one signature */
	EXPECT(p->C_SignInit(a, &m, h9c) == CKR_OK, "A C_SignInit again");
	sl = sizeof(sig);
	rv = p->C_Sign(a, msg, sizeof(msg), sig, &sl);
	EXPECT(rv == CKR_USER_NOT_LOGGED_IN, "A signed twice with one PIN: %s", rvn(rv));

	/* B's context login does nothing for A's operation */
	EXPECT(p->C_SignInit(a, &m, h9c) == CKR_OK, "A C_SignInit");
	EXPECT(p->C_SignInit(b, &m, h9c) == CKR_OK, "B C_SignInit");
	EXPECT(p->C_Login(b, CKU_CONTEXT_SPECIFIC, (CK_UTF8CHAR_PTR)pin, strlen(pin)) == CKR_OK,
	       "B context login");
	sl = sizeof(sig);
	rv = p->C_Sign(a, msg, sizeof(msg), sig, &sl);
	EXPECT(rv == CKR_USER_NOT_LOGGED_IN, "A used B's PIN: %s", rvn(rv));
	sl = sizeof(sig);
	rv = p->C_Sign(b, msg, sizeof(msg), sig, &sl);
	EXPECT(rv == CKR_OK && verify(&keys[1], msg, sizeof(msg), sig, sl), "B C_Sign: %s",
	       rvn(rv));

	/* multi-part */
	EXPECT(p->C_SignInit(a, &m, h9c) == CKR_OK, "A C_SignInit");
	EXPECT(p->C_Login(a, CKU_CONTEXT_SPECIFIC, (CK_UTF8CHAR_PTR)pin, strlen(pin)) == CKR_OK,
	       "A context login");
	EXPECT(p->C_SignUpdate(a, msg, 4) == CKR_OK, "update");
	EXPECT(p->C_SignUpdate(a, msg + 4, sizeof(msg) - 4) == CKR_OK, "update");
	sl = sizeof(sig);
	rv = p->C_SignFinal(a, sig, &sl);
	EXPECT(rv == CKR_OK && verify(&keys[1], msg, sizeof(msg), sig, sl), "C_SignFinal: %s",
	       rvn(rv));

	/* a login given and the session closed: nothing left for anyone */
	{
		CK_SESSION_HANDLE c = open_session();

		EXPECT(p->C_SignInit(c, &m, h9c) == CKR_OK, "C C_SignInit");
		EXPECT(p->C_Login(c, CKU_CONTEXT_SPECIFIC, (CK_UTF8CHAR_PTR)pin, strlen(pin)) ==
		               CKR_OK,
		       "C context login");
		EXPECT(p->C_CloseSession(c) == CKR_OK, "close C");
		EXPECT(p->C_SignInit(b, &m, h9c) == CKR_OK, "B C_SignInit");
		sl = sizeof(sig);
		rv = p->C_Sign(b, msg, sizeof(msg), sig, &sl);
		EXPECT(rv == CKR_USER_NOT_LOGGED_IN, "B used closed C's PIN: %s", rvn(rv));
	}

	/* a wrong PIN is refused at the context login */
	EXPECT(p->C_SignInit(a, &m, h9c) == CKR_OK, "A C_SignInit");
	rv = p->C_Login(a, CKU_CONTEXT_SPECIFIC, wrong_pin, 6);
	EXPECT(rv == CKR_PIN_INCORRECT, "wrong context PIN: %s", rvn(rv));
	sl = sizeof(sig);
	rv = p->C_Sign(a, msg, sizeof(msg), sig, &sl);
	EXPECT(rv == CKR_USER_NOT_LOGGED_IN, "signed after a wrong PIN: %s", rvn(rv));
	/* the card forgot the user's PIN with the wrong one: no lie about it */
	r = sign_once(a, &keys[0], false);
	EXPECT(r.out == SIGN_OK || (r.out != SIGN_BADSIG && r.rv == CKR_USER_NOT_LOGGED_IN &&
	                            session_public(a)),
	       "9A after a wrong context PIN: %s at %s", rvn(r.rv), r.step);
	EXPECT(login_user(a) == CKR_OK, "login again");
	r = sign_once(a, &keys[0], false);
	EXPECT(r.out == SIGN_OK, "9A: %s at %s", rvn(r.rv), r.step);

	p->C_CloseAllSessions(slot);
	say("RESULT %s (%d failed checks)", fails == 0 ? "PASS" : "FAIL", fails);
	return fails == 0 ? 0 : 1;
}

static int
xread(int fd, char *c)
{
	ssize_t n;

	do
		n = read(fd, c, 1);
	while (n < 0 && errno == EINTR);
	return n == 1 ? 0 : -1;
}

/* A (the parent) gives its PIN for a 9C signature, then B (a child
 * process) gives its own and signs, then A signs. */
static int
run_two_procs(void)
{
	int go[2], done[2], st = 0;
	pid_t child;
	char c = 0;

	if (pipe(go) != 0 || pipe(done) != 0)
		return 1;
	fflush(stdout);
	child = fork();
	if (child < 0)
		return 1;
	if (load_module() != 0) {
		if (child == 0)
			_exit(1);
		return 1;
	}
	{
		CK_SESSION_HANDLE s = open_session();
		CK_OBJECT_HANDLE h;
		CK_MECHANISM m;
		unsigned char msg[] = "two processes", sig[512];
		CK_ULONG sl = sizeof(sig);
		CK_RV rv;

		EXPECT(s != CK_INVALID_HANDLE && login_user(s) == CKR_OK, "session and login");
		if (fails > 0 || load_keys(s) != 0)
			goto out;
		h = find1(s, CKO_PRIVATE_KEY, 2);
		m = (CK_MECHANISM){keys[1].ec ? CKM_ECDSA_SHA256 : CKM_SHA256_RSA_PKCS, NULL, 0};
		if (child == 0) {
			EXPECT(xread(go[0], &c) == 0, "wait for A");
			for (int i = 0; i < 3; i++) {
				struct sign_result r = sign_once(s, &keys[1], true);

				EXPECT(r.out == SIGN_OK, "B 9C: %s at %s", rvn(r.rv), r.step);
			}
			EXPECT(p->C_SignInit(s, &m, h) == CKR_OK, "B C_SignInit");
			rv = p->C_Sign(s, msg, sizeof(msg), sig, &sl);
			EXPECT(rv == CKR_USER_NOT_LOGGED_IN, "B without a PIN: %s", rvn(rv));
			c = fails == 0 ? 'y' : 'n';
			EXPECT(write(done[1], &c, 1) == 1, "tell A");
			goto out;
		}
		EXPECT(p->C_SignInit(s, &m, h) == CKR_OK, "A C_SignInit");
		EXPECT(p->C_Login(s, CKU_CONTEXT_SPECIFIC, (CK_UTF8CHAR_PTR)pin, strlen(pin)) ==
		               CKR_OK,
		       "A context login");
		EXPECT(write(go[1], "g", 1) == 1, "tell B");
		EXPECT(xread(done[0], &c) == 0 && c == 'y', "B's part");
		rv = p->C_Sign(s, msg, sizeof(msg), sig, &sl);
		EXPECT(rv == CKR_OK && verify(&keys[1], msg, sizeof(msg), sig, sl), "A C_Sign: %s",
		       rvn(rv));
	}
out:
	p->C_Finalize(NULL);
	if (child == 0)
		_exit(fails == 0 ? 0 : 1);
	if (waitpid(child, &st, 0) != child || !WIFEXITED(st) || WEXITSTATUS(st) != 0) {
		fails++;
		say("FAIL: process B (status 0x%x)", st);
	}
	say("RESULT %s (%d failed checks)", fails == 0 ? "PASS" : "FAIL", fails);
	return fails == 0 ? 0 : 1;
}

/* --- another program, one thing at a time ------------------------------------ */

static void disturb(const char *reader, bool reset);

/* Another program logs in (and out, with logout): a process of our own. */
static int
other_program(const char *mode)
{
	pid_t pid;
	int st = 0;

	fflush(stdout);
	pid = fork();
	if (pid == 0) {
		execl("/proc/self/exe", "tk-p11-login", module_path, mode, (char *)NULL);
		_exit(127);
	}
	if (pid < 0 || waitpid(pid, &st, 0) != pid || !WIFEXITED(st))
		return -1;
	return WEXITSTATUS(st);
}

static int
run_login_logout(bool logout)
{
	CK_SESSION_HANDLE s = open_session();
	int rc = 0;

	if (s == CK_INVALID_HANDLE || login_user(s) != CKR_OK)
		rc = 1;
	else if (logout && p->C_Logout(s) != CKR_OK)
		rc = 1;
	/* no C_CloseSession: C_Finalize ends the sessions, like a program
	 * that exits */
	p->C_Finalize(NULL);
	return rc;
}

static int
run_others(const char *reader)
{
	static const char *const what[] = {"a card reset", "a SELECT of another application",
	                                   "a login and logout"};
	bool no_loss = getenv("TK_LOGIN_EXPECT_NO_LOSS") != NULL &&
	               strcmp(getenv("TK_LOGIN_EXPECT_NO_LOSS"), "1") == 0;
	CK_SESSION_HANDLE s = open_session();
	struct sign_result r;

	if (s == CK_INVALID_HANDLE || login_user(s) != CKR_OK || load_keys(s) != 0) {
		say("set-up failed");
		return 1;
	}
	for (int i = 0; i < 3; i++) {
		r = sign_once(s, &keys[0], false);
		EXPECT(r.out == SIGN_OK, "9A before %s: %s at %s", what[i], rvn(r.rv), r.step);
		drain_events();
		if (i < 2)
			disturb(reader, i == 0);
		else
			EXPECT(other_program("login-logout") == 0, "the other program");
		r = sign_once(s, &keys[0], false);
		if (no_loss) {
			EXPECT(r.out == SIGN_OK, "9A after %s (PIN kept): %s at %s", what[i],
			       rvn(r.rv), r.step);
		} else {
			/* the module must not claim a login the card lost, and say so */
			EXPECT(r.out == SIGN_NOT_LOGGED || r.out == SIGN_INIT_NOT_LOGGED,
			       "9A after %s: %s at %s", what[i], rvn(r.rv), r.step);
			EXPECT(session_public(s), "session public after %s", what[i]);
			EXPECT(slot_event_pending(), "slot event after %s", what[i]);
			EXPECT(login_user(s) == CKR_OK, "login again after %s", what[i]);
			r = sign_once(s, &keys[0], false);
			EXPECT(r.out == SIGN_OK, "9A after %s and a new login: %s at %s", what[i],
			       rvn(r.rv), r.step);
		}
		/* the PIN-always key carries its own PIN through all of it */
		if (i < 2)
			disturb(reader, i == 0);
		else
			EXPECT(other_program("login-logout") == 0, "the other program");
		r = sign_once(s, &keys[1], true);
		EXPECT(r.out == SIGN_OK, "9C after %s: %s at %s", what[i], rvn(r.rv), r.step);
		if (!session_public(s)) {
			r = sign_once(s, &keys[0], false);
			EXPECT(r.out == SIGN_OK, "9A after 9C: %s at %s", rvn(r.rv), r.step);
		}
		if (session_public(s))
			EXPECT(login_user(s) == CKR_OK, "login");
	}
	/* another program's login does not log us in */
	EXPECT(p->C_Logout(s) == CKR_OK, "logout");
	EXPECT(other_program("login-only") == 0, "the other program");
	EXPECT(session_public(s), "still public after another program's login");
	r = sign_once(s, &keys[0], false);
	EXPECT(r.out == SIGN_INIT_NOT_LOGGED, "9A while public: %s at %s", rvn(r.rv), r.step);
	p->C_CloseAllSessions(slot);
	say("RESULT %s (%d failed checks)", fails == 0 ? "PASS" : "FAIL", fails);
	return fails == 0 ? 0 : 1;
}

/* --- threads ---------------------------------------------------------------- */

struct tstat {
	int idx;
	int64_t end;
	long ok[2], bad, err;
	char last[128];
};

static void *
thread_main(void *arg)
{
	struct tstat *t = arg;
	CK_SESSION_HANDLE s = open_session();
	unsigned n = (unsigned)t->idx;

	if (s == CK_INVALID_HANDLE) {
		t->err++;
		snprintf(t->last, sizeof(t->last), "C_OpenSession");
		return NULL;
	}
	while (now_ms() < t->end) {
		/* threads start on different keys, then alternate */
		int k = (int)(n++ % 2);
		struct sign_result r = sign_once(s, &keys[k], keys[k].always);

		if (r.out == SIGN_OK) {
			t->ok[k]++;
		} else if (r.out == SIGN_BADSIG) {
			t->bad++;
		} else if (t->err++ == 0) {
			snprintf(t->last, sizeof(t->last), "%s at %s (key %02x)", rvn(r.rv), r.step,
			         keys[k].id);
		}
	}
	p->C_CloseSession(s);
	return NULL;
}

static int
run_threads(int nthreads, int secs)
{
	struct tstat st[MAX_THREADS];
	pthread_t th[MAX_THREADS];
	CK_SESSION_HANDLE s = open_session();
	long ok[2] = {0, 0}, bad = 0, err = 0;

	if (s == CK_INVALID_HANDLE || login_user(s) != CKR_OK || load_keys(s) != 0) {
		say("set-up failed");
		return 1;
	}
	for (int i = 0; i < nthreads; i++) {
		memset(&st[i], 0, sizeof(st[i]));
		st[i].idx = i;
		st[i].end = now_ms() + (int64_t)secs * 1000;
		pthread_create(&th[i], NULL, thread_main, &st[i]);
	}
	for (int i = 0; i < nthreads; i++) {
		pthread_join(th[i], NULL);
		ok[0] += st[i].ok[0];
		ok[1] += st[i].ok[1];
		bad += st[i].bad;
		err += st[i].err;
		if (st[i].err > 0)
			say("thread %d: %ld errors, first %s", i, st[i].err, st[i].last);
	}
	p->C_CloseSession(s);
	say("THREADS %d x %d s: signatures 9A %ld 9C %ld, bad %ld, errors %ld", nthreads, secs,
	    ok[0], ok[1], bad, err);
	fails = (bad > 0 || err > 0 || ok[0] == 0 || ok[1] == 0) ? 1 : 0;
	say("RESULT %s", fails == 0 ? "PASS" : "FAIL");
	return fails;
}

/* --- processes -------------------------------------------------------------- */

/* Counters of one worker, printed as one line for the parent. */
struct wstat {
	long ok[2], bad, lost, lost_unmarked, ctx_fail, err, logouts, closes;
	char last[160];
};

static void
wreport(const struct wstat *w, const char *how)
{
	say("WORKER %s ok9a=%ld ok9c=%ld bad=%ld lost=%ld lost_unmarked=%ld ctx_fail=%ld err=%ld "
	    "logouts=%ld closes=%ld last=%s",
	    how, w->ok[0], w->ok[1], w->bad, w->lost, w->lost_unmarked, w->ctx_fail, w->err,
	    w->logouts, w->closes, w->last[0] ? w->last : "-");
}

static int
run_worker(int secs, unsigned seed)
{
	struct wstat w;
	int64_t end = now_ms() + (int64_t)secs * 1000;
	CK_SESSION_HANDLE s;
	CK_RV rv;

	in_worker = true;

	memset(&w, 0, sizeof(w));
	srand(seed);
	if (getenv("TK_LOGIN_LOGDIR") != NULL) {
		/* one log per worker (the module's, with TOKENKIT_LOG) */
		char path[512];
		int fd;

		snprintf(path, sizeof(path), "%s/worker-%d.log", getenv("TK_LOGIN_LOGDIR"),
		         (int)getpid());
		fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
		if (fd >= 0) {
			dup2(fd, 2);
			close(fd);
		}
	}
	if (load_module() != 0)
		return 2;
	s = open_session();
	if (s == CK_INVALID_HANDLE) {
		say("worker set-up failed: C_OpenSession");
		return 2;
	}
	if ((rv = login_user(s)) != CKR_OK) {
		say("worker set-up failed: C_Login %s", rvn(rv));
		return 2;
	}
	if (load_keys(s) != 0) {
		say("worker set-up failed: the keys' certificates not found");
		return 2;
	}
	drain_events();
	while (now_ms() < end) {
		int dice = rand() % 100, k = dice < 70 ? 0 : 1;
		struct sign_result r;

		if (dice >= 97) {
			/* leave: the last session closes (or the process just ends) */
			if (dice == 99)
				p->C_CloseAllSessions(slot);
			p->C_Finalize(NULL);
			wreport(&w, "exit");
			return 0;
		}
		if (dice >= 93) {
			if (dice >= 96) {
				p->C_CloseSession(s); /* the last one: logs out */
				s = open_session();
				w.closes++;
			} else {
				p->C_Logout(s);
				w.logouts++;
			}
			if (s == CK_INVALID_HANDLE || login_user(s) != CKR_OK) {
				w.err++;
				snprintf(w.last, sizeof(w.last), "re-open / login");
				break;
			}
			continue;
		}
		r = sign_once(s, &keys[k], keys[k].always);
		switch (r.out) {
		case SIGN_OK:
			w.ok[k]++;
			break;
		case SIGN_BADSIG:
			w.bad++;
			break;
		case SIGN_NOT_LOGGED:
			if (keys[k].always) {
				/* the operation's own PIN is not lost to anyone */
				w.ctx_fail++;
				snprintf(w.last, sizeof(w.last), "9C %s at %s", rvn(r.rv), r.step);
			}
			/* the session must say so already, and the slot have an event */
			if (session_public(s) && slot_event_pending()) {
				w.lost++;
			} else {
				w.lost_unmarked++;
				snprintf(w.last, sizeof(w.last), "%s at %s, key %02x, session %s",
				         rvn(r.rv), r.step, keys[k].id,
				         session_public(s) ? "public, no event"
				                           : "still logged in");
			}
			if (login_user(s) != CKR_OK) {
				w.err++;
				snprintf(w.last, sizeof(w.last), "login after loss");
			}
			drain_events();
			break;
		case SIGN_INIT_NOT_LOGGED:
			/* lost before the operation: the session is public already */
			if (session_public(s)) {
				w.lost++;
			} else {
				w.lost_unmarked++;
				snprintf(w.last, sizeof(w.last),
				         "%s at %s, session still logged in", rvn(r.rv), r.step);
			}
			if (login_user(s) != CKR_OK) {
				w.err++;
				snprintf(w.last, sizeof(w.last), "login after loss");
			}
			drain_events();
			break;
		default:
			w.err++;
			snprintf(w.last, sizeof(w.last), "%s at %s, key %02x", rvn(r.rv), r.step,
			         keys[k].id);
			break;
		}
	}
	p->C_Finalize(NULL);
	wreport(&w, "end");
	return 0;
}

static pid_t
spawn_worker(int secs, unsigned seed, int out_fd)
{
	char ssecs[16], sseed[16];
	pid_t pid;

	snprintf(ssecs, sizeof(ssecs), "%d", secs < 1 ? 1 : secs);
	snprintf(sseed, sizeof(sseed), "%u", seed);
	fflush(stdout);
	pid = fork();
	if (pid == 0) {
		dup2(out_fd, 1);
		execl("/proc/self/exe", "tk-p11-login", module_path, "worker", ssecs, sseed,
		      (char *)NULL);
		_exit(127);
	}
	return pid;
}

static void
disturb(const char *reader, bool reset)
{
	const char *cmd = getenv("TK_LOGIN_DISTURB");
	pid_t pid;
	int st;

	if (cmd == NULL)
		return;
	fflush(stdout);
	pid = fork();
	if (pid == 0) {
		int devnull = open("/dev/null", O_WRONLY);

		if (devnull >= 0)
			dup2(devnull, 1);
		if (reset)
			execl(cmd, cmd, reader, "warm", (char *)NULL);
		else
			execl(cmd, cmd, reader, "select", OTHER_AID, (char *)NULL);
		_exit(127);
	}
	if (pid > 0)
		waitpid(pid, &st, 0);
}

static int
run_procs(int nprocs, int secs, const char *disturb_reader)
{
	int64_t end = now_ms() + (int64_t)secs * 1000, next_disturb = now_ms() + 300;
	pid_t pids[MAX_PROCS];
	int pipefd[2];
	long tot[10] = {0}, started = 0, abnormal = 0, resets = 0, selects = 0;
	bool no_loss = getenv("TK_LOGIN_EXPECT_NO_LOSS") != NULL &&
	               strcmp(getenv("TK_LOGIN_EXPECT_NO_LOSS"), "1") == 0;
	FILE *in;
	char line[512];
	unsigned seed = (unsigned)getpid();

	if (pipe(pipefd) != 0)
		return 1;
	for (int i = 0; i < nprocs; i++) {
		pids[i] = spawn_worker(secs, seed + (unsigned)started, pipefd[1]);
		started++;
	}
	/* replace workers that leave, disturb now and then, until the end */
	for (;;) {
		int st = 0;
		pid_t pid = waitpid(-1, &st, WNOHANG);
		int64_t left = end - now_ms();
		bool any = false;

		if (pid > 0) {
			if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
				abnormal++;
				say("worker %d: status 0x%x", (int)pid, st);
			}
			for (int i = 0; i < nprocs; i++) {
				if (pids[i] != pid)
					continue;
				pids[i] = 0;
				if (left > 1000) {
					pids[i] = spawn_worker((int)(left / 1000),
					                       seed + (unsigned)started, pipefd[1]);
					started++;
				}
			}
			continue;
		}
		for (int i = 0; i < nprocs; i++)
			any = any || pids[i] > 0;
		if (!any)
			break;
		if (disturb_reader != NULL && left > 1500 && now_ms() >= next_disturb) {
			bool reset = rand() % 2 == 0;

			disturb(disturb_reader, reset);
			if (reset)
				resets++;
			else
				selects++;
			next_disturb = now_ms() + 150 + rand() % 300;
		}
		sleep_ms(20);
		if (left < -30000) {
			say("workers did not end");
			for (int i = 0; i < nprocs; i++)
				if (pids[i] > 0)
					kill(pids[i], SIGKILL);
		}
	}
	close(pipefd[1]);
	in = fdopen(pipefd[0], "r");
	while (in != NULL && fgets(line, sizeof(line), in) != NULL) {
		long v[10] = {0};
		const char *w = strstr(line, "WORKER ");

		fputs(line, stdout);
		if (w == NULL)
			continue;
		if (sscanf(strstr(w, "ok9a="),
		           "ok9a=%ld ok9c=%ld bad=%ld lost=%ld lost_unmarked=%ld ctx_fail=%ld "
		           "err=%ld "
		           "logouts=%ld closes=%ld",
		           &v[0], &v[1], &v[2], &v[3], &v[4], &v[5], &v[6], &v[7], &v[8]) == 9) {
			for (int i = 0; i < 9; i++)
				tot[i] += v[i];
			tot[9]++;
		}
	}
	if (in != NULL)
		fclose(in);
	say("PROCS %d x %d s (%ld processes, %ld reported, %ld resets and %ld SELECTs by another "
	    "program): signatures 9A %ld 9C %ld, bad %ld, logins lost %ld (marked) %ld "
	    "(unmarked), 9C failures %ld, other errors %ld, logouts %ld, last-session closes %ld",
	    nprocs, secs, started, tot[9], resets, selects, tot[0], tot[1], tot[2], tot[3], tot[4],
	    tot[5], tot[6], tot[7], tot[8]);
	say("FAILURES %ld", tot[2] + tot[4] + tot[5] + tot[6] + abnormal + (started - tot[9]) +
	                            (no_loss ? tot[3] : 0));
	fails = tot[2] > 0 || tot[4] > 0 || tot[5] > 0 || tot[6] > 0 || abnormal > 0 ||
	        tot[9] != started || tot[0] == 0 || tot[1] == 0 || (no_loss && tot[3] > 0);
	say("RESULT %s", fails == 0 ? "PASS" : "FAIL");
	return fails;
}

int
main(int argc, char **argv)
{
	const char *mode;
	int rc;

	if (argc < 3) {
		fprintf(stderr, "usage: tk-p11-login MODULE two-sessions|two-procs|threads N SECS|"
		                "procs N SECS [READER]|worker SECS SEED\n");
		return 2;
	}
	module_path = argv[1];
	mode = argv[2];
	if (getenv("TK_LOGIN_PIN") != NULL)
		snprintf(pin, sizeof(pin), "%s", getenv("TK_LOGIN_PIN"));
	setvbuf(stdout, NULL, _IOLBF, 0);
	if (strcmp(mode, "worker") == 0 && argc == 5)
		return run_worker(atoi(argv[3]), (unsigned)strtoul(argv[4], NULL, 10));
	if (strcmp(mode, "procs") == 0 && (argc == 5 || argc == 6)) {
		int n = atoi(argv[3]);

		if (n < 1 || n > MAX_PROCS)
			return 2;
		return run_procs(n, atoi(argv[4]), argc == 6 ? argv[5] : NULL);
	}
	if (strcmp(mode, "two-procs") == 0)
		return run_two_procs();
	if (load_module() != 0)
		return 1;
	if (strcmp(mode, "login-logout") == 0 || strcmp(mode, "login-only") == 0)
		return run_login_logout(strcmp(mode, "login-logout") == 0);
	if (strcmp(mode, "two-sessions") == 0) {
		rc = run_two_sessions();
	} else if (strcmp(mode, "others") == 0 && argc == 4) {
		rc = run_others(argv[3]);
	} else if (strcmp(mode, "restarts") == 0 && argc == 5) {
		rc = run_restarts(atoi(argv[3]), atoi(argv[4]));
	} else if (strcmp(mode, "repeat-init") == 0 && argc <= 4) {
		rc = run_repeat_init(argc == 4 && strcmp(argv[3], "restart") == 0);
	} else if (strcmp(mode, "decrypt-consent") == 0 && argc == 3) {
		rc = run_decrypt_consent();
	} else if (strcmp(mode, "steady") == 0 && argc == 4) {
		rc = run_steady(atoi(argv[3]));
	} else if (strcmp(mode, "threads") == 0 && argc == 5 && atoi(argv[3]) >= 1 &&
	           atoi(argv[3]) <= MAX_THREADS) {
		rc = run_threads(atoi(argv[3]), atoi(argv[4]));
	} else {
		fprintf(stderr, "tk-p11-login: bad arguments\n");
		rc = 2;
	}
	/* every thread of the module ends before the process does */
	p->C_Finalize(NULL);
	return rc;
}
