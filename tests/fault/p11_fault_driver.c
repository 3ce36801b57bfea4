/* tk-p11-fault: drives tokenkit-pkcs11.so through one fault scenario.
 *
 *   tk-p11-fault [--bench] [--pin PIN] [--readers A B] MODULE [SCRIPT]
 *   (script on stdin without SCRIPT)
 *
 * Loads MODULE, finds token A (reader "Virtual PCD 00 00", or the first name
 * given with --readers) and token B ("Virtual PCD 00 01"), logs in on both and starts a thread that
 * signs on B all the time (CKM_ECDSA_SHA256, key CKA_ID 01, every signature verified with OpenSSL
 * against the certificate with CKA_ID 01). The main thread runs the scenario, one command per line,
 * and prints one result line per step; it stops at the first failed expectation (exit 1). At the
 * end it checks that B never failed outside the windows a scenario allows (b-window), that B never
 * went longer than 3 s without a signature outside them, that every signature verified, and that no
 * thread or file descriptor leaked. With
 * --bench failed expectations are reported but never change the exit code.
 *
 * Commands (T is A or B; RVS is one CKR_ name, several joined by '|', or
 * ERR for any error; MS milliseconds):
 *   sign T expect RVS [within MS]   one C_SignInit + C_Sign (verified when OK)
 *   sign T until RVS within MS      repeat (every 20 ms) until the result is in RVS
 *   recover T within MS [same-session]  sign until OK, logging in again when not
 *                                   logged in and (without same-session) opening a new
 *                                   session when the old one is gone
 *   login T [expect RVS]            C_Login(CKU_USER) on T's session
 *   relogin T                       C_Login only when the session is not logged in
 *   open T [expect RVS]             a new session on T's slot (becomes T's session)
 *   session T expect STATE|RVS      C_GetSessionInfo: RO_PUBLIC, RO_USER, ... or an error
 *   find T                          look the key and certificate up again (new card)
 *   handles-same T                  the objects have the handles they had at the start
 *   handles-new T                   none of T's current handles (after find) is one
 *                                   of the handles of the start
 *   serial T same|different         the token serial number compared with the start
 *   slot T same                     the reader's slot id is the one it had at the start
 *   token T present|absent [within MS]
 *   slotinfo T
 *   waitevent [dontblock] expect RVS [slot T]
 *   waitevent-drain
 *   waitevent-bg                    a thread blocks in C_WaitForSlotEvent(0)
 *   waitevent-blocked               that thread has not returned yet
 *   waitevent-join expect RVS within MS
 *   fork-check                      fork: the child sees CKR_CRYPTOKI_NOT_INITIALIZED,
 *                                   initialises, signs on A; the parent goes on
 *   finalize [expect RVS]           stops the B signer first
 *   initialize                      C_Initialize again, tokens found, logged in
 *   exec CMD...                     /bin/sh -c CMD, must exit 0
 *   exec-bg CMD...                  the same in the background (reaped at the end)
 *   sleep MS
 *   mark NAME                       remember the time under NAME (not after a
 *                                   failed step: --bench then shows no figure)
 *   b-window open MAXGAP | close    B may fail / pause up to MAXGAP ms in between
 *   b-ok-since NAME within MS       wait for a B signature made after mark NAME
 *   b-back-since NAME within MS     wait for B's first failure after mark NAME, then
 *                                   its next signature (marks b-fail and b-back)
 *   b-stop                          stop the B signer (joined, bounded)
 *   b-reopens MAX                   B had to open a new session at most MAX times
 *   bench NAME FROM TO              print "BENCH NAME ms" (time between two marks)
 *   bench-rate NAME FROM TO BFROM BTO  B's rate FROM..TO (at least 1 s; up to now when
 *                                   TO was never marked) as a fraction of its rate BFROM..BTO
 *   report                          B's counters so far
 */
#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <execinfo.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
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
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/x509.h>

#include <pkcs11-helper-1.0/pkcs11.h>

#include "../proc_count.h"
#include "asan_fork.h" /* fork-check: the child must not inherit a held allocator lock */

extern char **environ;

#define MAX_WORDS 32
#define B_DEFAULT_MAXGAP_MS 3000
#define LEAK_GRACE_MS 8000

static CK_FUNCTION_LIST_3_0_PTR p11;
static void *lib;
static bool bench_mode;
static char pin[64] = "123456";
static int64_t t_start;
static int failures;
static pid_t my_pid;

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

/* --- CKR names ----------------------------------------------------------- */

static const struct {
	CK_RV rv;
	const char *name;
} rv_names[] = {
        {CKR_OK, "CKR_OK"},
        {CKR_GENERAL_ERROR, "CKR_GENERAL_ERROR"},
        {CKR_FUNCTION_FAILED, "CKR_FUNCTION_FAILED"},
        {CKR_ARGUMENTS_BAD, "CKR_ARGUMENTS_BAD"},
        {CKR_NO_EVENT, "CKR_NO_EVENT"},
        {CKR_CANT_LOCK, "CKR_CANT_LOCK"},
        {CKR_DEVICE_ERROR, "CKR_DEVICE_ERROR"},
        {CKR_DEVICE_MEMORY, "CKR_DEVICE_MEMORY"},
        {CKR_DEVICE_REMOVED, "CKR_DEVICE_REMOVED"},
        {CKR_FUNCTION_CANCELED, "CKR_FUNCTION_CANCELED"},
        {CKR_KEY_HANDLE_INVALID, "CKR_KEY_HANDLE_INVALID"},
        {CKR_OBJECT_HANDLE_INVALID, "CKR_OBJECT_HANDLE_INVALID"},
        {CKR_OPERATION_ACTIVE, "CKR_OPERATION_ACTIVE"},
        {CKR_OPERATION_NOT_INITIALIZED, "CKR_OPERATION_NOT_INITIALIZED"},
        {CKR_PIN_INCORRECT, "CKR_PIN_INCORRECT"},
        {CKR_SESSION_CLOSED, "CKR_SESSION_CLOSED"},
        {CKR_SESSION_HANDLE_INVALID, "CKR_SESSION_HANDLE_INVALID"},
        {CKR_SLOT_ID_INVALID, "CKR_SLOT_ID_INVALID"},
        {CKR_TOKEN_NOT_PRESENT, "CKR_TOKEN_NOT_PRESENT"},
        {CKR_TOKEN_NOT_RECOGNIZED, "CKR_TOKEN_NOT_RECOGNIZED"},
        {CKR_USER_ALREADY_LOGGED_IN, "CKR_USER_ALREADY_LOGGED_IN"},
        {CKR_USER_NOT_LOGGED_IN, "CKR_USER_NOT_LOGGED_IN"},
        {CKR_CRYPTOKI_NOT_INITIALIZED, "CKR_CRYPTOKI_NOT_INITIALIZED"},
        {CKR_CRYPTOKI_ALREADY_INITIALIZED, "CKR_CRYPTOKI_ALREADY_INITIALIZED"},
        {CKR_BUFFER_TOO_SMALL, "CKR_BUFFER_TOO_SMALL"},
        {CKR_SIGNATURE_INVALID, "CKR_SIGNATURE_INVALID"},
};

/* pseudo result: the card answered CKR_OK but the signature did not verify */
#define RV_BADSIG ((CK_RV)0x7ffffff1UL)
/* pseudo result: the call did not return in time (background waits) */
#define RV_HANG ((CK_RV)0x7ffffff2UL)

static const char *
rv_name(CK_RV rv)
{
	static __thread char buf[32];

	if (rv == RV_BADSIG)
		return "BAD-SIGNATURE";
	if (rv == RV_HANG)
		return "NO-RETURN";
	for (size_t i = 0; i < sizeof(rv_names) / sizeof(rv_names[0]); i++)
		if (rv_names[i].rv == rv)
			return rv_names[i].name;
	snprintf(buf, sizeof(buf), "0x%lx", (unsigned long)rv);
	return buf;
}

/* An RVS word: names joined by '|'; ERR matches every error. */
static bool
rv_parse_set(const char *s, CK_RV *set, size_t *n, bool *any_err)
{
	char tmp[256], *save = NULL, *w;

	*n = 0;
	*any_err = false;
	snprintf(tmp, sizeof(tmp), "%s", s);
	for (w = strtok_r(tmp, "|", &save); w != NULL; w = strtok_r(NULL, "|", &save)) {
		bool found = false;

		if (strcmp(w, "ERR") == 0) {
			*any_err = true;
			continue;
		}
		for (size_t i = 0; i < sizeof(rv_names) / sizeof(rv_names[0]); i++) {
			if (strcmp(rv_names[i].name, w) == 0 ||
			    strcmp(rv_names[i].name + 4, w) == 0) {
				if (*n < 16)
					set[(*n)++] = rv_names[i].rv;
				found = true;
			}
		}
		if (!found)
			return false;
	}
	return true;
}

struct rvset {
	CK_RV v[16];
	size_t n;
	bool any_err;
	char text[256];
};

static bool
rvset_parse(struct rvset *r, const char *s)
{
	snprintf(r->text, sizeof(r->text), "%s", s);
	return rv_parse_set(s, r->v, &r->n, &r->any_err);
}

static bool
rvset_has(const struct rvset *r, CK_RV rv)
{
	if (rv == RV_BADSIG || rv == RV_HANG)
		return false;
	if (r->any_err && rv != CKR_OK)
		return true;
	for (size_t i = 0; i < r->n; i++)
		if (r->v[i] == rv)
			return true;
	return false;
}

/* --- output -------------------------------------------------------------- */

static pthread_mutex_t out_lock = PTHREAD_MUTEX_INITIALIZER;

static void out(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void
out(const char *fmt, ...)
{
	va_list ap;

	pthread_mutex_lock(&out_lock);
	printf("[%7lld ms] ", (long long)(now_ms() - t_start));
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	putchar('\n');
	fflush(stdout);
	pthread_mutex_unlock(&out_lock);
}

/* --- tokens -------------------------------------------------------------- */

struct tok {
	const char *name;
	const char *reader;
	CK_SLOT_ID slot, slot0;
	CK_SESSION_HANDLE sess;
	CK_OBJECT_HANDLE key, cert, pub;
	CK_OBJECT_HANDLE key0, cert0, pub0;
	char serial[17], serial0[17];
	EVP_PKEY *pk;
};

static struct tok tok_a = {.name = "A", .reader = "Virtual PCD 00 00"};
static struct tok tok_b = {.name = "B", .reader = "Virtual PCD 00 01"};

static struct tok *
tok_by_name(const char *s)
{
	if (s != NULL && strcmp(s, "A") == 0)
		return &tok_a;
	if (s != NULL && strcmp(s, "B") == 0)
		return &tok_b;
	return NULL;
}

/* The slot whose description starts with the reader name (then blanks). */
static CK_RV
find_slot(const char *reader, CK_SLOT_ID *out_slot)
{
	CK_SLOT_ID list[32];
	CK_ULONG n = 32;
	CK_RV rv = p11->C_GetSlotList(CK_FALSE, list, &n);
	size_t len = strlen(reader);

	if (rv != CKR_OK)
		return rv;
	for (CK_ULONG i = 0; i < n; i++) {
		CK_SLOT_INFO si;

		if (p11->C_GetSlotInfo(list[i], &si) != CKR_OK)
			continue;
		if (memcmp(si.slotDescription, reader, len) == 0 &&
		    (len == sizeof(si.slotDescription) || si.slotDescription[len] == ' ')) {
			*out_slot = list[i];
			return CKR_OK;
		}
	}
	return CKR_SLOT_ID_INVALID;
}

static bool
token_present(CK_SLOT_ID slot)
{
	CK_SLOT_INFO si;
	CK_TOKEN_INFO ti;

	if (p11->C_GetSlotInfo(slot, &si) != CKR_OK || !(si.flags & CKF_TOKEN_PRESENT))
		return false;
	return p11->C_GetTokenInfo(slot, &ti) == CKR_OK;
}

static CK_RV
find_one(CK_SESSION_HANDLE s, CK_OBJECT_CLASS cls, CK_OBJECT_HANDLE *h)
{
	unsigned char id = 1;
	CK_ATTRIBUTE t[] = {{CKA_CLASS, &cls, sizeof(cls)}, {CKA_ID, &id, 1}};
	CK_ULONG n = 0;
	CK_RV rv;

	*h = CK_INVALID_HANDLE;
	rv = p11->C_FindObjectsInit(s, t, 2);
	if (rv != CKR_OK)
		return rv;
	rv = p11->C_FindObjects(s, h, 1, &n);
	p11->C_FindObjectsFinal(s);
	if (rv == CKR_OK && n != 1) {
		*h = CK_INVALID_HANDLE;
		rv = CKR_OBJECT_HANDLE_INVALID;
	}
	return rv;
}

/* --- OpenSSL across fork ------------------------------------------------
 * fork-check forks while the B signer draws random bytes and verifies.
 * OpenSSL 3.0 takes none of its locks around fork(): a thread inside it
 * with a lock of the default context held (a fetch filling the method
 * cache, the random generator's reseed) leaves that lock held for good in
 * the child, whose own verification then waits forever (seen: row 12, the
 * child's threads in a read-write lock wait). Keeping its own threads out of
 * OpenSSL across fork() is the application's part (POSIX: only what the
 * program itself makes safe works in a child of a threaded process); the
 * module's part is its own context, which a child starts afresh
 * (core/ossl.c). So this program's OpenSSL calls run under ossl_lock for
 * reading, and fork's prepare handler takes it for writing. Registered in
 * main, after asan_fork.h's constructor: prepare handlers run in reverse
 * order, so ours waits while the other threads may still allocate. */
static pthread_rwlock_t ossl_lock;

static void
ossl_lock_init(void)
{
	pthread_rwlockattr_t a;

	/* a writer waiting for fork() goes before new readers */
	pthread_rwlockattr_init(&a);
	pthread_rwlockattr_setkind_np(&a, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
	pthread_rwlock_init(&ossl_lock, &a);
	pthread_rwlockattr_destroy(&a);
}

static void
ossl_fork_prepare(void)
{
	pthread_rwlock_wrlock(&ossl_lock);
}

static void
ossl_fork_parent(void)
{
	pthread_rwlock_unlock(&ossl_lock);
}

static void
ossl_enter(void)
{
	pthread_rwlock_rdlock(&ossl_lock);
}

static void
ossl_leave(void)
{
	pthread_rwlock_unlock(&ossl_lock);
}

/* Certificate → public key for verification. */
static CK_RV
load_pubkey(struct tok *t)
{
	unsigned char der[4096];
	const unsigned char *q = der;
	CK_ATTRIBUTE a = {CKA_VALUE, der, sizeof(der)};
	CK_RV rv = p11->C_GetAttributeValue(t->sess, t->cert, &a, 1);
	X509 *x;

	if (rv != CKR_OK)
		return rv;
	ossl_enter();
	x = d2i_X509(NULL, &q, (long)a.ulValueLen);
	EVP_PKEY_free(t->pk);
	t->pk = x != NULL ? X509_get_pubkey(x) : NULL;
	X509_free(x);
	ossl_leave();
	return t->pk != NULL ? CKR_OK : CKR_GENERAL_ERROR;
}

static CK_RV
token_serial(CK_SLOT_ID slot, char out_serial[17])
{
	CK_TOKEN_INFO ti;
	CK_RV rv = p11->C_GetTokenInfo(slot, &ti);

	out_serial[0] = '\0';
	if (rv == CKR_OK) {
		memcpy(out_serial, ti.serialNumber, 16);
		out_serial[16] = '\0';
	}
	return rv;
}

/* Find the objects (the key needs a login) and the verification key. */
static CK_RV
tok_find(struct tok *t)
{
	CK_RV rv;

	rv = find_one(t->sess, CKO_CERTIFICATE, &t->cert);
	if (rv == CKR_OK)
		rv = find_one(t->sess, CKO_PUBLIC_KEY, &t->pub);
	if (rv == CKR_OK)
		rv = find_one(t->sess, CKO_PRIVATE_KEY, &t->key);
	if (rv == CKR_OK)
		rv = load_pubkey(t);
	return rv;
}

/* Wait for the token, open a session, log in, find the objects. */
static CK_RV
tok_setup(struct tok *t, int64_t timeout_ms, bool first)
{
	int64_t end = now_ms() + timeout_ms;
	CK_RV rv;

	for (;;) {
		rv = find_slot(t->reader, &t->slot);
		if (rv == CKR_OK && token_present(t->slot))
			break;
		if (now_ms() > end)
			return rv == CKR_OK ? CKR_TOKEN_NOT_PRESENT : rv;
		sleep_ms(50);
	}
	rv = p11->C_OpenSession(t->slot, CKF_SERIAL_SESSION, NULL, NULL, &t->sess);
	if (rv == CKR_OK)
		rv = p11->C_Login(t->sess, CKU_USER, (CK_UTF8CHAR_PTR)pin, (CK_ULONG)strlen(pin));
	if (rv == CKR_OK)
		rv = tok_find(t);
	if (rv == CKR_OK)
		rv = token_serial(t->slot, t->serial);
	if (rv == CKR_OK && first) {
		t->slot0 = t->slot;
		t->key0 = t->key;
		t->cert0 = t->cert;
		t->pub0 = t->pub;
		memcpy(t->serial0, t->serial, sizeof(t->serial0));
	}
	return rv;
}

/* --- signing ------------------------------------------------------------- */

static bool
verify_raw(EVP_PKEY *pk, const unsigned char *msg, size_t mlen, const unsigned char *sig,
           size_t slen)
{
	ECDSA_SIG *es = NULL;
	BIGNUM *r = NULL, *s = NULL;
	unsigned char *der = NULL;
	EVP_MD_CTX *md = NULL;
	int dlen;
	bool ok = false;

	if (pk == NULL || slen != 64)
		return false;
	ossl_enter();
	es = ECDSA_SIG_new();
	r = BN_bin2bn(sig, 32, NULL);
	s = BN_bin2bn(sig + 32, 32, NULL);
	if (es == NULL || r == NULL || s == NULL || ECDSA_SIG_set0(es, r, s) != 1)
		goto out;
	r = s = NULL;
	dlen = i2d_ECDSA_SIG(es, &der);
	if (dlen <= 0)
		goto out;
	md = EVP_MD_CTX_new();
	if (md == NULL || EVP_DigestVerifyInit(md, NULL, EVP_sha256(), NULL, pk) != 1)
		goto out;
	ok = EVP_DigestVerify(md, der, (size_t)dlen, msg, mlen) == 1;
out:
	EVP_MD_CTX_free(md);
	OPENSSL_free(der);
	BN_free(r);
	BN_free(s);
	ECDSA_SIG_free(es);
	ossl_leave();
	return ok;
}

/* One signature with the token's key on the given session; verified. */
static CK_RV
sign_once(CK_SESSION_HANDLE sess, CK_OBJECT_HANDLE key, EVP_PKEY *pk)
{
	CK_MECHANISM m = {CKM_ECDSA_SHA256, NULL, 0};
	unsigned char msg[32], sig[256];
	CK_ULONG n = sizeof(sig);
	CK_RV rv;

	ossl_enter();
	rv = RAND_bytes(msg, sizeof(msg)) == 1 ? CKR_OK : CKR_GENERAL_ERROR;
	ossl_leave();
	if (rv != CKR_OK)
		return rv;
	rv = p11->C_SignInit(sess, &m, key);
	if (rv != CKR_OK)
		return rv;
	rv = p11->C_Sign(sess, msg, sizeof(msg), sig, &n);
	if (rv != CKR_OK)
		return rv;
	return verify_raw(pk, msg, sizeof(msg), sig, n) ? CKR_OK : RV_BADSIG;
}

/* --- the B signer -------------------------------------------------------- */

struct window {
	int64_t open, close; /* close 0: still open */
	int64_t maxgap;
};

static struct {
	pthread_mutex_t lock;
	pthread_t th;
	bool running, stop, done;
	int64_t *ok_at; /* times of successful signatures */
	size_t nok, cap;
	int64_t *fail_at; /* times of failures */
	size_t nfail, fcap;
	uint64_t fails, badsig, relogins, reopens;
	int64_t lat_max, lat_sum;
	int64_t first_fail_at;
	CK_RV first_fail_rv;
	struct window win[32];
	size_t nwin;
	int64_t started, stopped;
	uint64_t fails_outside;
	struct {
		CK_RV rv;
		uint64_t n;
	} byrv[8];
	int64_t fail_outside_at;
	CK_RV fail_outside_rv;
} bs = {.lock = PTHREAD_MUTEX_INITIALIZER};

static bool
in_window_locked(int64_t t)
{
	for (size_t i = 0; i < bs.nwin; i++)
		if (t >= bs.win[i].open && (bs.win[i].close == 0 || t <= bs.win[i].close))
			return true;
	return false;
}

static void
b_record(CK_RV rv, int64_t t0, int64_t t1)
{
	pthread_mutex_lock(&bs.lock);
	if (rv == CKR_OK) {
		if (bs.nok == bs.cap) {
			size_t cap = bs.cap ? bs.cap * 2 : 4096;
			int64_t *n = realloc(bs.ok_at, cap * sizeof(*n));

			if (n != NULL) {
				bs.ok_at = n;
				bs.cap = cap;
			}
		}
		if (bs.nok < bs.cap)
			bs.ok_at[bs.nok++] = t1;
		if (t1 - t0 > bs.lat_max)
			bs.lat_max = t1 - t0;
		bs.lat_sum += t1 - t0;
	} else {
		if (bs.nfail == bs.fcap) {
			size_t cap = bs.fcap ? bs.fcap * 2 : 1024;
			int64_t *n = realloc(bs.fail_at, cap * sizeof(*n));

			if (n != NULL) {
				bs.fail_at = n;
				bs.fcap = cap;
			}
		}
		if (bs.nfail < bs.fcap)
			bs.fail_at[bs.nfail++] = t1;
		bs.fails++;
		if (rv == RV_BADSIG)
			bs.badsig++;
		for (size_t i = 0; i < sizeof(bs.byrv) / sizeof(bs.byrv[0]); i++) {
			if (bs.byrv[i].n == 0 || bs.byrv[i].rv == rv) {
				bs.byrv[i].rv = rv;
				bs.byrv[i].n++;
				break;
			}
		}
		if (bs.first_fail_at == 0) {
			bs.first_fail_at = t1;
			bs.first_fail_rv = rv;
		}
		/* a failure counts against B unless a window covers it */
		if (rv == RV_BADSIG || !(in_window_locked(t0) || in_window_locked(t1))) {
			if (bs.fails_outside == 0) {
				bs.fail_outside_at = t1;
				bs.fail_outside_rv = rv;
			}
			bs.fails_outside++;
		}
	}
	pthread_mutex_unlock(&bs.lock);
}

static void *
b_thread(void *arg)
{
	struct tok *t = &tok_b;
	bool stop = false;

	(void)arg;
	while (!stop) {
		int64_t t0 = now_ms(), t1;
		CK_RV rv = sign_once(t->sess, t->key, t->pk);

		t1 = now_ms();
		b_record(rv, t0, t1);
		if (rv == CKR_USER_NOT_LOGGED_IN) {
			if (p11->C_Login(t->sess, CKU_USER, (CK_UTF8CHAR_PTR)pin,
			                 (CK_ULONG)strlen(pin)) == CKR_OK) {
				pthread_mutex_lock(&bs.lock);
				bs.relogins++;
				pthread_mutex_unlock(&bs.lock);
			}
		} else if (rv == CKR_SESSION_HANDLE_INVALID || rv == CKR_SESSION_CLOSED ||
		           rv == CKR_DEVICE_REMOVED || rv == CKR_TOKEN_NOT_PRESENT) {
			CK_SESSION_HANDLE s;
			CK_SLOT_ID slot;

			if (find_slot(t->reader, &slot) == CKR_OK &&
			    p11->C_OpenSession(slot, CKF_SERIAL_SESSION, NULL, NULL, &s) ==
			            CKR_OK) {
				p11->C_CloseSession(t->sess);
				t->sess = s;
				t->slot = slot;
				if (p11->C_Login(s, CKU_USER, (CK_UTF8CHAR_PTR)pin,
				                 (CK_ULONG)strlen(pin)) == CKR_OK)
					tok_find(t);
				pthread_mutex_lock(&bs.lock);
				bs.reopens++;
				pthread_mutex_unlock(&bs.lock);
			}
		}
		if (rv != CKR_OK)
			sleep_ms(20);
		pthread_mutex_lock(&bs.lock);
		stop = bs.stop;
		pthread_mutex_unlock(&bs.lock);
	}
	pthread_mutex_lock(&bs.lock);
	bs.done = true;
	pthread_mutex_unlock(&bs.lock);
	return NULL;
}

static bool
b_start(void)
{
	bs.stop = bs.done = false;
	bs.started = now_ms();
	if (pthread_create(&bs.th, NULL, b_thread, NULL) != 0)
		return false;
	bs.running = true;
	return true;
}

/* Stop and join, bounded: false when the thread is stuck in the module. */
static bool
b_stop(int64_t timeout_ms)
{
	int64_t end = now_ms() + timeout_ms;
	bool done = false;

	if (!bs.running)
		return true;
	pthread_mutex_lock(&bs.lock);
	bs.stop = true;
	pthread_mutex_unlock(&bs.lock);
	while (now_ms() < end) {
		pthread_mutex_lock(&bs.lock);
		done = bs.done;
		pthread_mutex_unlock(&bs.lock);
		if (done)
			break;
		sleep_ms(10);
	}
	if (!done)
		return false;
	pthread_join(bs.th, NULL);
	bs.running = false;
	bs.stopped = now_ms();
	return true;
}

/* Successful B signatures in [from, to]. */
static size_t
b_count(int64_t from, int64_t to)
{
	size_t c = 0;

	pthread_mutex_lock(&bs.lock);
	for (size_t i = 0; i < bs.nok; i++)
		if (bs.ok_at[i] >= from && bs.ok_at[i] <= to)
			c++;
	pthread_mutex_unlock(&bs.lock);
	return c;
}

/* The longest time without a B signature that no window excuses, over
 * [bs.started, until]; a gap that touches a window is held to the largest
 * maxgap of the windows it touches. Returns false and describes the gap
 * when one is too long. */
static bool
b_gaps_ok(int64_t until, char *why, size_t cap)
{
	int64_t prev = bs.started;
	bool ok = true;

	pthread_mutex_lock(&bs.lock);
	for (size_t i = 0; i <= bs.nok && ok; i++) {
		int64_t cur = i < bs.nok ? bs.ok_at[i] : until;
		int64_t limit = B_DEFAULT_MAXGAP_MS;

		for (size_t w = 0; w < bs.nwin; w++) {
			int64_t wc = bs.win[w].close ? bs.win[w].close : until;

			if (prev <= wc && cur >= bs.win[w].open && bs.win[w].maxgap > limit)
				limit = bs.win[w].maxgap;
		}
		if (cur - prev > limit) {
			snprintf(why, cap,
			         "B made no signature for %lld ms (from %lld to %lld ms, limit "
			         "%lld)",
			         (long long)(cur - prev), (long long)(prev - t_start),
			         (long long)(cur - t_start), (long long)limit);
			ok = false;
		}
		prev = cur;
	}
	pthread_mutex_unlock(&bs.lock);
	return ok;
}

static void
b_report(const char *what)
{
	pthread_mutex_lock(&bs.lock);
	out("%s: B signatures=%zu failures=%llu (outside windows %llu%s%s) bad=%llu relogins=%llu "
	    "reopens=%llu latency avg=%.1f ms max=%lld ms",
	    what, bs.nok, (unsigned long long)bs.fails, (unsigned long long)bs.fails_outside,
	    bs.fails_outside ? ", first " : "", bs.fails_outside ? rv_name(bs.fail_outside_rv) : "",
	    (unsigned long long)bs.badsig, (unsigned long long)bs.relogins,
	    (unsigned long long)bs.reopens, bs.nok ? (double)bs.lat_sum / (double)bs.nok : 0.0,
	    (long long)bs.lat_max);
	for (size_t i = 0; i < sizeof(bs.byrv) / sizeof(bs.byrv[0]) && bs.byrv[i].n != 0; i++)
		out("  B failed %llu times with %s", (unsigned long long)bs.byrv[i].n,
		    rv_name(bs.byrv[i].rv));
	pthread_mutex_unlock(&bs.lock);
}

/* --- threads and descriptors --------------------------------------------- */

static void
list_fds(void)
{
	DIR *d = opendir("/proc/self/fd");
	struct dirent *e;

	if (d == NULL)
		return;
	while ((e = readdir(d)) != NULL) {
		char path[300], target[256];
		ssize_t n;

		if (e->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "/proc/self/fd/%s", e->d_name);
		n = readlink(path, target, sizeof(target) - 1);
		target[n > 0 ? n : 0] = '\0';
		out("  fd %s -> %s", e->d_name, target);
	}
	closedir(d);
}

/* Threads and fds back to at most the baseline within the grace time. */
static bool
leaks_ok(const char *what, int threads0, int fds0)
{
	int64_t end = now_ms() + LEAK_GRACE_MS;
	int th, fd;

	for (;;) {
		th = tk_test_threads();
		fd = tk_test_fds();
		if ((th <= threads0 && fd <= fds0) || now_ms() > end)
			break;
		sleep_ms(100);
	}
	if (th <= threads0 && fd <= fds0) {
		out("%s: threads %d (baseline %d), fds %d (baseline %d): no leak", what, th,
		    threads0, fd, fds0);
		return true;
	}
	out("%s: LEAK: threads %d (baseline %d), fds %d (baseline %d) after %d ms", what, th,
	    threads0, fd, fds0, LEAK_GRACE_MS);
	list_fds();
	return false;
}

/* --- module -------------------------------------------------------------- */

static CK_RV
module_load(const char *path)
{
	CK_C_GetInterface gi;
	CK_INTERFACE_PTR iface = NULL;
	CK_RV rv;

	lib = dlopen(path, RTLD_NOW | RTLD_LOCAL);
	if (lib == NULL) {
		fprintf(stderr, "dlopen %s: %s\n", path, dlerror());
		return CKR_GENERAL_ERROR;
	}
	*(void **)(&gi) = dlsym(lib, "C_GetInterface");
	if (gi == NULL)
		return CKR_GENERAL_ERROR;
	rv = gi((CK_UTF8CHAR_PTR) "PKCS 11", NULL, &iface, 0);
	if (rv != CKR_OK)
		return rv;
	p11 = iface->pFunctionList;
	return CKR_OK;
}

static bool initialized;

static CK_RV
module_init(void)
{
	CK_RV rv = p11->C_Initialize(NULL);

	if (rv != CKR_OK)
		return rv;
	initialized = true;
	rv = tok_setup(&tok_a, 15000, tok_a.slot0 == 0 && tok_a.cert0 == 0);
	if (rv != CKR_OK) {
		out("token A: setup: %s", rv_name(rv));
		return rv;
	}
	rv = tok_setup(&tok_b, 15000, tok_b.slot0 == 0 && tok_b.cert0 == 0);
	if (rv != CKR_OK)
		out("token B: setup: %s", rv_name(rv));
	return rv;
}

/* --- background C_WaitForSlotEvent --------------------------------------- */

static struct {
	pthread_mutex_t lock;
	pthread_t th;
	bool running, done;
	CK_RV rv;
	CK_SLOT_ID slot;
	int64_t t0, t1;
} we = {.lock = PTHREAD_MUTEX_INITIALIZER};

static void *
we_thread(void *arg)
{
	CK_SLOT_ID slot = 0;
	CK_RV rv;

	(void)arg;
	rv = p11->C_WaitForSlotEvent(0, &slot, NULL);
	pthread_mutex_lock(&we.lock);
	we.rv = rv;
	we.slot = slot;
	we.t1 = now_ms();
	we.done = true;
	pthread_mutex_unlock(&we.lock);
	return NULL;
}

/* --- background commands ------------------------------------------------- */

static pid_t bg_pids[64];
static size_t nbg;

static int
spawn_sh(const char *cmd, pid_t *pid)
{
	char *argv[] = {(char *)(uintptr_t) "sh", (char *)(uintptr_t) "-c", (char *)(uintptr_t)cmd,
	                NULL};

	return posix_spawn(pid, "/bin/sh", NULL, NULL, argv, environ);
}

static int
run_sh(const char *cmd)
{
	pid_t pid;
	int st = 0;

	if (spawn_sh(cmd, &pid) != 0)
		return -1;
	while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
		;
	return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

/* --- fork ---------------------------------------------------------------- */

/* In the child: no module state until C_Initialize; then a signature on A. */
static int
fork_child(void)
{
	CK_ULONG n = 0;
	CK_RV rv;
	struct tok t = {.name = "A", .reader = tok_a.reader};
	int bad = 0;

	rv = p11->C_GetSlotList(CK_FALSE, NULL, &n);
	printf("child: C_GetSlotList before C_Initialize: %s\n", rv_name(rv));
	bad += rv != CKR_CRYPTOKI_NOT_INITIALIZED;
	rv = sign_once(tok_a.sess, tok_a.key, tok_a.pk);
	printf("child: sign on the parent's session: %s\n", rv_name(rv));
	bad += rv != CKR_CRYPTOKI_NOT_INITIALIZED;
	rv = p11->C_Initialize(NULL);
	printf("child: C_Initialize: %s\n", rv_name(rv));
	bad += rv != CKR_OK;
	if (rv == CKR_OK) {
		rv = tok_setup(&t, 15000, false);
		printf("child: token A set up: %s\n", rv_name(rv));
		bad += rv != CKR_OK;
		if (rv == CKR_OK) {
			rv = sign_once(t.sess, t.key, t.pk);
			printf("child: sign on A: %s\n", rv_name(rv));
			bad += rv != CKR_OK;
		}
		rv = p11->C_Finalize(NULL);
		printf("child: C_Finalize: %s\n", rv_name(rv));
		bad += rv != CKR_OK;
	}
	EVP_PKEY_free(t.pk);
	fflush(stdout);
	return bad == 0 ? 0 : 1;
}

/* --- the scenario -------------------------------------------------------- */

static struct {
	char name[32];
	int64_t t;
} marks[64];
static size_t nmarks;

static int64_t
mark_get(const char *name)
{
	for (size_t i = nmarks; i > 0; i--)
		if (strcmp(marks[i - 1].name, name) == 0)
			return marks[i - 1].t;
	return -1;
}

static void
mark_set(const char *name, int64_t t)
{
	if (nmarks < sizeof(marks) / sizeof(marks[0])) {
		snprintf(marks[nmarks].name, sizeof(marks[nmarks].name), "%s", name);
		marks[nmarks++].t = t;
	}
}

static int step;
static bool last_failed;

/* Result line of one step; false when the expectation failed. */
static bool step_result(bool ok, const char *line, const char *fmt, ...)
        __attribute__((format(printf, 3, 4)));
static bool
step_result(bool ok, const char *line, const char *fmt, ...)
{
	char buf[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	out("step %d: %s -> %s: %s", step, line, ok ? "ok" : "FAIL", buf);
	last_failed = !ok;
	if (!ok)
		failures++;
	return ok;
}

/* "within MS" anywhere in the words: MS, else dflt. */
static int64_t
opt_num(char **w, int nw, const char *key, int64_t dflt)
{
	for (int i = 0; i + 1 < nw; i++)
		if (strcmp(w[i], key) == 0)
			return strtoll(w[i + 1], NULL, 10);
	return dflt;
}

static const char *
opt_str(char **w, int nw, const char *key)
{
	for (int i = 0; i + 1 < nw; i++)
		if (strcmp(w[i], key) == 0)
			return w[i + 1];
	return NULL;
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

static bool
cmd_sign(const char *line, char **w, int nw)
{
	struct tok *t = tok_by_name(w[1]);
	const char *mode = nw > 2 ? w[2] : "";
	const char *exp = nw > 3 ? w[3] : NULL;
	struct rvset set;
	int64_t within = opt_num(w, nw, "within", -1), t0 = now_ms(), el;
	CK_RV rv;
	int tries = 0;

	if (t == NULL || exp == NULL || !rvset_parse(&set, exp) ||
	    (strcmp(mode, "expect") != 0 && strcmp(mode, "until") != 0))
		return step_result(false, line, "usage: sign A|B expect|until RVS [within MS]");
	if (t == &tok_b && bs.running)
		return step_result(false, line,
		                   "B is busy signing in the background (b-stop first)");
	if (strcmp(mode, "expect") == 0) {
		rv = sign_once(t->sess, t->key, t->pk);
		el = now_ms() - t0;
		if (!rvset_has(&set, rv))
			return step_result(false, line, "got %s after %lld ms", rv_name(rv),
			                   (long long)el);
		if (within >= 0 && el > within)
			return step_result(false, line, "%s, but after %lld ms", rv_name(rv),
			                   (long long)el);
		return step_result(true, line, "%s after %lld ms", rv_name(rv), (long long)el);
	}
	if (within < 0)
		return step_result(false, line, "until needs within MS");
	for (;;) {
		int64_t c0 = now_ms();

		rv = sign_once(t->sess, t->key, t->pk);
		tries++;
		el = now_ms() - t0;
		if (rvset_has(&set, rv))
			break;
		if (rv == RV_BADSIG)
			return step_result(false, line, "a signature did not verify");
		if (el > within)
			return step_result(
			        false, line, "still %s after %lld ms (%d tries, last took %lld ms)",
			        rv_name(rv), (long long)el, tries, (long long)(now_ms() - c0));
		sleep_ms(20);
	}
	return step_result(true, line, "%s after %lld ms (%d tries)", rv_name(rv), (long long)el,
	                   tries);
}

static bool
cmd_recover(const char *line, struct tok *t, int64_t within, bool same_session)
{
	int64_t t0 = now_ms(), el;
	int tries = 0, logins = 0, opens = 0;
	CK_RV rv;

	if (t == NULL || within < 0)
		return step_result(false, line, "usage: recover A|B within MS");
	if (t == &tok_b && bs.running)
		return step_result(false, line,
		                   "B is busy signing in the background (b-stop first)");
	for (;;) {
		rv = sign_once(t->sess, t->key, t->pk);
		tries++;
		el = now_ms() - t0;
		if (rv == CKR_OK)
			break;
		if (rv == RV_BADSIG)
			return step_result(false, line, "a signature did not verify");
		if (el > within)
			return step_result(false, line, "still %s after %lld ms (%d tries)",
			                   rv_name(rv), (long long)el, tries);
		if (rv == CKR_USER_NOT_LOGGED_IN) {
			if (p11->C_Login(t->sess, CKU_USER, (CK_UTF8CHAR_PTR)pin,
			                 (CK_ULONG)strlen(pin)) == CKR_OK)
				logins++;
		} else if (rv == CKR_SESSION_HANDLE_INVALID || rv == CKR_SESSION_CLOSED ||
		           rv == CKR_DEVICE_REMOVED || rv == CKR_TOKEN_NOT_PRESENT) {
			CK_SESSION_HANDLE s;
			CK_SLOT_ID slot;

			if (same_session && rv != CKR_TOKEN_NOT_PRESENT)
				return step_result(false, line,
				                   "the session did not survive: %s after %lld ms",
				                   rv_name(rv), (long long)el);
			if (!same_session && find_slot(t->reader, &slot) == CKR_OK &&
			    p11->C_OpenSession(slot, CKF_SERIAL_SESSION, NULL, NULL, &s) ==
			            CKR_OK) {
				t->sess = s;
				t->slot = slot;
				opens++;
				if (p11->C_Login(s, CKU_USER, (CK_UTF8CHAR_PTR)pin,
				                 (CK_ULONG)strlen(pin)) == CKR_OK) {
					logins++;
					tok_find(t);
				}
			}
		}
		sleep_ms(20);
	}
	return step_result(true, line,
	                   "CKR_OK after %lld ms (%d tries, %d logins, %d new sessions)",
	                   (long long)el, tries, logins, opens);
}

static bool
cmd_token(const char *line, char **w, int nw)
{
	struct tok *t = tok_by_name(w[1]);
	bool want = nw > 2 && strcmp(w[2], "present") == 0;
	int64_t within = opt_num(w, nw, "within", 0), t0 = now_ms(), slowest = 0, el;
	bool is;

	if (t == NULL || nw < 3 || (!want && strcmp(w[2], "absent") != 0))
		return step_result(false, line, "usage: token A|B present|absent [within MS]");
	for (;;) {
		CK_SLOT_ID slot;
		CK_SLOT_INFO si;
		int64_t c0 = now_ms();

		/* present: the slot says so and C_GetTokenInfo works; absent: the
		 * slot says no token (or the reader is gone) */
		is = find_slot(t->reader, &slot) == CKR_OK &&
		     p11->C_GetSlotInfo(slot, &si) == CKR_OK && (si.flags & CKF_TOKEN_PRESENT);
		if (is && want)
			is = token_present(slot);
		if (now_ms() - c0 > slowest)
			slowest = now_ms() - c0;
		if (is == want || now_ms() - t0 > within)
			break;
		sleep_ms(20);
	}
	el = now_ms() - t0;
	return step_result(is == want && el <= within, line,
	                   "%s after %lld ms (slowest check %lld ms)", is ? "present" : "absent",
	                   (long long)el, (long long)slowest);
}

static bool
cmd_handles_same(const char *line, struct tok *t)
{
	CK_OBJECT_HANDLE c, pb, k;
	CK_SESSION_INFO si;
	CK_RV rv;
	bool logged;

	if (t == NULL)
		return step_result(false, line, "usage: handles-same A|B");
	rv = p11->C_GetSessionInfo(t->sess, &si);
	if (rv != CKR_OK)
		return step_result(false, line, "C_GetSessionInfo: %s", rv_name(rv));
	logged = si.state == CKS_RO_USER_FUNCTIONS || si.state == CKS_RW_USER_FUNCTIONS;
	rv = find_one(t->sess, CKO_CERTIFICATE, &c);
	if (rv == CKR_OK)
		rv = find_one(t->sess, CKO_PUBLIC_KEY, &pb);
	if (rv != CKR_OK)
		return step_result(false, line, "find: %s", rv_name(rv));
	if (c != t->cert0 || pb != t->pub0)
		return step_result(false, line,
		                   "certificate %lu (was %lu), public key %lu (was %lu)",
		                   (unsigned long)c, (unsigned long)t->cert0, (unsigned long)pb,
		                   (unsigned long)t->pub0);
	if (!logged)
		return step_result(true, line,
		                   "certificate %lu, public key %lu (not logged in: "
		                   "private key not visible)",
		                   (unsigned long)c, (unsigned long)pb);
	rv = find_one(t->sess, CKO_PRIVATE_KEY, &k);
	if (rv != CKR_OK || k != t->key0)
		return step_result(false, line, "private key %lu (was %lu): %s", (unsigned long)k,
		                   (unsigned long)t->key0, rv_name(rv));
	return step_result(true, line, "certificate %lu, public key %lu, private key %lu",
	                   (unsigned long)c, (unsigned long)pb, (unsigned long)k);
}

/* A child that hangs: where each of its threads waits (name, wait channel,
 * current syscall), for the log; gdb is not always installed. */
static void
dump_tasks(pid_t pid)
{
	char path[96], buf[256];
	struct dirent *e;
	DIR *d;

	snprintf(path, sizeof(path), "/proc/%d/task", (int)pid);
	if ((d = opendir(path)) == NULL)
		return;
	while ((e = readdir(d)) != NULL) {
		static const char *const files[] = {"comm", "wchan", "syscall"};

		if (e->d_name[0] == '.')
			continue;
		fprintf(stderr, "child %d task %s:", (int)pid, e->d_name);
		for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
			FILE *f;

			snprintf(path, sizeof(path), "/proc/%d/task/%.16s/%s", (int)pid, e->d_name,
			         files[i]);
			if ((f = fopen(path, "r")) == NULL)
				continue;
			if (fgets(buf, sizeof(buf), f) != NULL) {
				buf[strcspn(buf, "\n")] = '\0';
				fprintf(stderr, " %s=%s", files[i], buf);
			}
			fclose(f);
		}
		fprintf(stderr, "\n");
	}
	closedir(d);
}

static bool
cmd_fork_check(const char *line)
{
	pid_t pid;
	int st = 0;
	int64_t end;
	pid_t r = 0;

	fflush(stdout);
	fflush(stderr);
	pid = fork();
	if (pid < 0)
		return step_result(false, line, "fork: %s", strerror(errno));
	if (pid == 0)
		_exit(fork_child());
	end = now_ms() + 60000;
	while (now_ms() < end) {
		r = waitpid(pid, &st, WNOHANG);
		if (r == pid || (r < 0 && errno != EINTR))
			break;
		sleep_ms(20);
	}
	if (r != pid) {
		dump_tasks(pid);
		kill(pid, SIGKILL);
		waitpid(pid, &st, 0);
		return step_result(false, line, "child %d did not finish within 60 s", (int)pid);
	}
	if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
		return step_result(false, line, "child failed (status 0x%x)", st);
	return step_result(true, line, "child %d: not initialised until C_Initialize, then signed",
	                   (int)pid);
}

static bool
cmd_finalize(const char *line, char **w, int nw)
{
	struct rvset set;
	int64_t t0 = now_ms();
	CK_RV rv;

	if (!rvset_parse(&set, nw > 2 && strcmp(w[1], "expect") == 0 ? w[2] : "CKR_OK"))
		return step_result(false, line, "bad RVS");
	if (!b_stop(15000))
		return step_result(false, line, "the B signer did not stop within 15 s");
	rv = p11->C_Finalize(NULL);
	if (rv == CKR_OK)
		initialized = false;
	return step_result(rvset_has(&set, rv), line, "%s after %lld ms", rv_name(rv),
	                   (long long)(now_ms() - t0));
}

static bool
cmd_waitevent(const char *line, char **w, int nw)
{
	const char *exp = opt_str(w, nw, "expect");
	const char *sl = opt_str(w, nw, "slot");
	bool dontblock = nw > 1 && strcmp(w[1], "dontblock") == 0;
	struct rvset set;
	CK_SLOT_ID slot = 0;
	CK_RV rv;

	if (exp == NULL || !rvset_parse(&set, exp))
		return step_result(false, line,
		                   "usage: waitevent [dontblock] expect RVS [slot A|B]");
	rv = p11->C_WaitForSlotEvent(dontblock ? CKF_DONT_BLOCK : 0, &slot, NULL);
	if (!rvset_has(&set, rv))
		return step_result(false, line, "got %s", rv_name(rv));
	if (rv == CKR_OK && sl != NULL && tok_by_name(sl) != NULL && slot != tok_by_name(sl)->slot)
		return step_result(false, line, "event on slot %lu, not %s's slot %lu",
		                   (unsigned long)slot, sl, (unsigned long)tok_by_name(sl)->slot);
	return step_result(true, line, "%s (slot %lu)", rv_name(rv), (unsigned long)slot);
}

static bool
cmd_waitevent_join(const char *line, char **w, int nw)
{
	const char *exp = opt_str(w, nw, "expect");
	int64_t within = opt_num(w, nw, "within", 5000), end = now_ms() + within;
	struct rvset set;
	bool done = false;

	if (exp == NULL || !rvset_parse(&set, exp) || !we.running)
		return step_result(
		        false, line,
		        "usage: waitevent-join expect RVS within MS (after waitevent-bg)");
	while (now_ms() <= end) {
		pthread_mutex_lock(&we.lock);
		done = we.done;
		pthread_mutex_unlock(&we.lock);
		if (done)
			break;
		sleep_ms(10);
	}
	if (!done)
		return step_result(false, line, "C_WaitForSlotEvent still blocked after %lld ms",
		                   (long long)within);
	pthread_join(we.th, NULL);
	we.running = false;
	return step_result(rvset_has(&set, we.rv), line, "%s (slot %lu) after blocking %lld ms",
	                   rv_name(we.rv), (unsigned long)we.slot, (long long)(we.t1 - we.t0));
}

static bool
run_line(char *line)
{
	char copy[1024], *w[MAX_WORDS], *save = NULL, *tk;
	int nw = 0;
	struct tok *t;
	struct rvset set;
	CK_RV rv;

	line[strcspn(line, "\r\n")] = '\0';
	while (*line == ' ' || *line == '\t')
		line++;
	if (*line == '\0' || *line == '#')
		return true;
	snprintf(copy, sizeof(copy), "%s", line);
	for (tk = strtok_r(copy, " \t", &save); tk != NULL && nw < MAX_WORDS;
	     tk = strtok_r(NULL, " \t", &save))
		w[nw++] = tk;
	if (nw == 0)
		return true;
	step++;
	t = nw > 1 ? tok_by_name(w[1]) : NULL;

	if (strcmp(w[0], "sign") == 0 && nw >= 4)
		return cmd_sign(line, w, nw);
	if (strcmp(w[0], "recover") == 0)
		return cmd_recover(line, t, opt_num(w, nw, "within", -1),
		                   strcmp(w[nw - 1], "same-session") == 0);
	if (strcmp(w[0], "login") == 0 && t != NULL) {
		int64_t t0 = now_ms();

		if (!rvset_parse(&set,
		                 opt_str(w, nw, "expect") ? opt_str(w, nw, "expect") : "CKR_OK"))
			return step_result(false, line, "bad RVS");
		rv = p11->C_Login(t->sess, CKU_USER, (CK_UTF8CHAR_PTR)pin, (CK_ULONG)strlen(pin));
		return step_result(rvset_has(&set, rv), line, "%s after %lld ms", rv_name(rv),
		                   (long long)(now_ms() - t0));
	}
	if (strcmp(w[0], "relogin") == 0 && t != NULL) {
		CK_SESSION_INFO si;

		rv = p11->C_GetSessionInfo(t->sess, &si);
		if (rv != CKR_OK)
			return step_result(false, line, "C_GetSessionInfo: %s", rv_name(rv));
		if (si.state == CKS_RO_USER_FUNCTIONS || si.state == CKS_RW_USER_FUNCTIONS)
			return step_result(true, line, "still logged in");
		rv = p11->C_Login(t->sess, CKU_USER, (CK_UTF8CHAR_PTR)pin, (CK_ULONG)strlen(pin));
		return step_result(rv == CKR_OK, line, "was %s; C_Login: %s", state_name(si.state),
		                   rv_name(rv));
	}
	if (strcmp(w[0], "open") == 0 && t != NULL) {
		CK_SESSION_HANDLE s = CK_INVALID_HANDLE;
		CK_SLOT_ID slot = t->slot;

		if (!rvset_parse(&set,
		                 opt_str(w, nw, "expect") ? opt_str(w, nw, "expect") : "CKR_OK"))
			return step_result(false, line, "bad RVS");
		if (find_slot(t->reader, &slot) == CKR_OK)
			t->slot = slot;
		rv = p11->C_OpenSession(t->slot, CKF_SERIAL_SESSION, NULL, NULL, &s);
		if (rv == CKR_OK)
			t->sess = s;
		return step_result(rvset_has(&set, rv), line, "%s (session %lu)", rv_name(rv),
		                   (unsigned long)s);
	}
	if (strcmp(w[0], "session") == 0 && t != NULL && nw >= 4) {
		CK_SESSION_INFO si;
		const char *got;

		rv = p11->C_GetSessionInfo(t->sess, &si);
		got = rv == CKR_OK ? state_name(si.state) : rv_name(rv);
		if (rv != CKR_OK) {
			bool ok = rvset_parse(&set, w[3]) && rvset_has(&set, rv);

			return step_result(ok, line, "%s", got);
		}
		return step_result(strstr(w[3], got) != NULL, line, "%s", got);
	}
	if (strcmp(w[0], "find") == 0 && t != NULL) {
		rv = tok_find(t);
		return step_result(rv == CKR_OK, line, "%s: key %lu, certificate %lu", rv_name(rv),
		                   (unsigned long)t->key, (unsigned long)t->cert);
	}
	if (strcmp(w[0], "handles-same") == 0)
		return cmd_handles_same(line, t);
	if (strcmp(w[0], "handles-new") == 0 && t != NULL) {
		CK_OBJECT_HANDLE now[3] = {t->cert, t->pub, t->key};
		CK_OBJECT_HANDLE old[3] = {t->cert0, t->pub0, t->key0};
		bool fresh = true;

		for (int i = 0; i < 3; i++)
			for (int j = 0; j < 3; j++)
				if (now[i] == old[j])
					fresh = false;
		return step_result(fresh, line,
		                   "now certificate %lu, public key %lu, private key %lu; "
		                   "at the start %lu, %lu, %lu",
		                   (unsigned long)now[0], (unsigned long)now[1],
		                   (unsigned long)now[2], (unsigned long)old[0],
		                   (unsigned long)old[1], (unsigned long)old[2]);
	}
	if (strcmp(w[0], "serial") == 0 && t != NULL && nw >= 3) {
		char s[17];
		bool same;

		rv = token_serial(t->slot, s);
		same = rv == CKR_OK && strcmp(s, t->serial0) == 0;
		if (rv != CKR_OK)
			return step_result(false, line, "C_GetTokenInfo: %s", rv_name(rv));
		return step_result(same == (strcmp(w[2], "same") == 0), line,
		                   "serial '%s' (was '%s')", s, t->serial0);
	}
	if (strcmp(w[0], "slot") == 0 && t != NULL) {
		CK_SLOT_ID slot = 0;

		rv = find_slot(t->reader, &slot);
		return step_result(rv == CKR_OK && slot == t->slot0, line, "%s: slot %lu (was %lu)",
		                   rv_name(rv), (unsigned long)slot, (unsigned long)t->slot0);
	}
	if (strcmp(w[0], "token") == 0 && t != NULL)
		return cmd_token(line, w, nw);
	if (strcmp(w[0], "slotinfo") == 0 && t != NULL) {
		CK_SLOT_INFO si;
		CK_TOKEN_INFO ti;
		CK_RV rv2;

		rv = p11->C_GetSlotInfo(t->slot, &si);
		rv2 = p11->C_GetTokenInfo(t->slot, &ti);
		return step_result(true, line,
		                   "slot %lu: C_GetSlotInfo %s flags 0x%lx; C_GetTokenInfo %s",
		                   (unsigned long)t->slot, rv_name(rv),
		                   rv == CKR_OK ? (unsigned long)si.flags : 0UL, rv_name(rv2));
	}
	if (strcmp(w[0], "waitevent") == 0)
		return cmd_waitevent(line, w, nw);
	if (strcmp(w[0], "waitevent-drain") == 0) {
		CK_SLOT_ID slot;
		int n = 0;

		while (n < 100 && p11->C_WaitForSlotEvent(CKF_DONT_BLOCK, &slot, NULL) == CKR_OK)
			n++;
		return step_result(n < 100, line, "%d events drained", n);
	}
	if (strcmp(w[0], "waitevent-bg") == 0) {
		if (we.running)
			return step_result(false, line, "a waiter is already running");
		we.done = false;
		we.t0 = now_ms();
		if (pthread_create(&we.th, NULL, we_thread, NULL) != 0)
			return step_result(false, line, "pthread_create failed");
		we.running = true;
		return step_result(true, line, "waiting");
	}
	if (strcmp(w[0], "waitevent-blocked") == 0) {
		bool done;

		pthread_mutex_lock(&we.lock);
		done = we.done;
		pthread_mutex_unlock(&we.lock);
		return step_result(we.running && !done, line,
		                   done ? "returned %s" : "still blocked%s",
		                   done ? rv_name(we.rv) : "");
	}
	if (strcmp(w[0], "waitevent-join") == 0)
		return cmd_waitevent_join(line, w, nw);
	if (strcmp(w[0], "fork-check") == 0)
		return cmd_fork_check(line);
	if (strcmp(w[0], "finalize") == 0)
		return cmd_finalize(line, w, nw);
	if (strcmp(w[0], "initialize") == 0) {
		int64_t t0 = now_ms();

		rv = module_init();
		return step_result(rv == CKR_OK, line, "%s after %lld ms", rv_name(rv),
		                   (long long)(now_ms() - t0));
	}
	if ((strcmp(w[0], "exec") == 0 || strcmp(w[0], "exec-bg") == 0) && nw >= 2) {
		const char *cmd = line + strlen(w[0]);
		int64_t t0 = now_ms();
		int st;

		while (*cmd == ' ' || *cmd == '\t')
			cmd++;
		if (strcmp(w[0], "exec-bg") == 0) {
			pid_t pid;

			if (nbg == sizeof(bg_pids) / sizeof(bg_pids[0]) || spawn_sh(cmd, &pid) != 0)
				return step_result(false, line, "spawn failed");
			bg_pids[nbg++] = pid;
			return step_result(true, line, "started, pid %d", (int)pid);
		}
		st = run_sh(cmd);
		return step_result(st == 0, line, "exit %d after %lld ms", st,
		                   (long long)(now_ms() - t0));
	}
	if (strcmp(w[0], "sleep") == 0 && nw >= 2) {
		sleep_ms(strtoll(w[1], NULL, 10));
		return step_result(true, line, "slept");
	}
	if (strcmp(w[0], "mark") == 0 && nw >= 2) {
		int64_t tm = now_ms();

		if (last_failed) {
			out("MARK %s skipped (the step before failed)", w[1]);
			return true;
		}
		mark_set(w[1], tm);
		out("MARK %s %lld", w[1], (long long)(tm - t_start));
		return true;
	}
	if (strcmp(w[0], "b-window") == 0 && nw >= 2) {
		pthread_mutex_lock(&bs.lock);
		if (strcmp(w[1], "open") == 0 && bs.nwin < sizeof(bs.win) / sizeof(bs.win[0])) {
			bs.win[bs.nwin].open = now_ms();
			bs.win[bs.nwin].close = 0;
			bs.win[bs.nwin].maxgap =
			        nw > 2 ? strtoll(w[2], NULL, 10) : B_DEFAULT_MAXGAP_MS;
			bs.nwin++;
		} else if (strcmp(w[1], "close") == 0 && bs.nwin > 0) {
			bs.win[bs.nwin - 1].close = now_ms();
		}
		pthread_mutex_unlock(&bs.lock);
		return step_result(true, line, "B window %s", w[1]);
	}
	if (strcmp(w[0], "b-ok-since") == 0 && nw >= 2) {
		int64_t m = mark_get(w[1]), within = opt_num(w, nw, "within", 5000);
		int64_t first = -1;

		if (m < 0)
			return step_result(false, line, "no mark %s", w[1]);
		for (;;) {
			pthread_mutex_lock(&bs.lock);
			for (size_t i = bs.nok; i > 0 && bs.ok_at[i - 1] > m; i--)
				first = bs.ok_at[i - 1];
			pthread_mutex_unlock(&bs.lock);
			if (first >= 0 || now_ms() - m > within)
				break;
			sleep_ms(10);
		}
		if (first < 0)
			return step_result(false, line, "no B signature within %lld ms of mark %s",
			                   (long long)within, w[1]);
		mark_set("b-ok", first);
		return step_result(first - m <= within, line,
		                   "first B signature %lld ms after mark %s",
		                   (long long)(first - m), w[1]);
	}
	if (strcmp(w[0], "b-back-since") == 0 && nw >= 2) {
		int64_t m = mark_get(w[1]), within = opt_num(w, nw, "within", 5000);
		int64_t fail = -1, back = -1;

		if (m < 0)
			return step_result(false, line, "no mark %s", w[1]);
		for (;;) {
			pthread_mutex_lock(&bs.lock);
			for (size_t i = 0; fail < 0 && i < bs.nfail; i++)
				if (bs.fail_at[i] > m)
					fail = bs.fail_at[i];
			if (fail >= 0)
				for (size_t i = bs.nok; i > 0 && bs.ok_at[i - 1] > fail; i--)
					back = bs.ok_at[i - 1];
			pthread_mutex_unlock(&bs.lock);
			if (back >= 0 || now_ms() - m > within)
				break;
			sleep_ms(10);
		}
		if (fail < 0)
			return step_result(false, line, "B did not fail within %lld ms of mark %s",
			                   (long long)within, w[1]);
		if (back < 0)
			return step_result(false, line,
			                   "B failed %lld ms after mark %s and did not sign again "
			                   "within %lld ms",
			                   (long long)(fail - m), w[1], (long long)within);
		mark_set("b-fail", fail);
		mark_set("b-back", back);
		return step_result(true, line,
		                   "B failed %lld ms after mark %s, signed again %lld ms later",
		                   (long long)(fail - m), w[1], (long long)(back - fail));
	}
	if (strcmp(w[0], "b-stop") == 0) {
		bool ok = b_stop(15000);

		return step_result(ok, line, ok ? "stopped" : "still in the module after 15 s");
	}
	if (strcmp(w[0], "b-reopens") == 0 && nw >= 2) {
		uint64_t n;

		pthread_mutex_lock(&bs.lock);
		n = bs.reopens;
		pthread_mutex_unlock(&bs.lock);
		return step_result(n <= (uint64_t)strtoull(w[1], NULL, 10), line,
		                   "B opened a new session %llu times", (unsigned long long)n);
	}
	if (strcmp(w[0], "bench") == 0 && nw >= 4) {
		int64_t a = mark_get(w[2]), b = mark_get(w[3]);

		out("BENCH %s %lld", w[1], a >= 0 && b >= 0 ? (long long)(b - a) : -1LL);
		return true;
	}
	if (strcmp(w[0], "bench-rate") == 0 && nw >= 6) {
		int64_t a = mark_get(w[2]), b = mark_get(w[3]), c = mark_get(w[4]),
		        d = mark_get(w[5]);
		double r1 = 0, r0 = 0;

		if (a >= 0 && b < 0) /* the fault never ended: up to now */
			b = now_ms();
		if (a < 0 || b < a || c < 0 || d <= c) {
			out("BENCH %s -1 (marks missing)", w[1]);
			return true;
		}
		if (b - a < 1000) /* at least 1 s, or the rate is noise */
			b = a + 1000;
		while (now_ms() < b)
			sleep_ms(10);
		r1 = (double)b_count(a, b) * 1000.0 / (double)(b - a);
		r0 = (double)b_count(c, d) * 1000.0 / (double)(d - c);
		out("BENCH %s %.3f (during %.1f/s, without fault %.1f/s, over %lld ms)", w[1],
		    r0 > 0 ? r1 / r0 : 0.0, r1, r0, (long long)(b - a));
		return true;
	}
	if (strcmp(w[0], "report") == 0) {
		b_report("report");
		return true;
	}
	return step_result(false, line, "unknown command or missing arguments");
}

/* --- main ---------------------------------------------------------------- */

static void
usage(void)
{
	fprintf(stderr,
	        "usage: tk-p11-fault [--bench] [--pin PIN] [--readers A B] MODULE [SCRIPT]\n");
	exit(2);
}

/* A fatal signal in this process (the module under test crashing) prints
 * the faulting thread's stack to stderr, which the test's log keeps, then
 * takes its default action. A crash seen once in a long CI loop (issue 8,
 * section 7: "driver exit 139" inside C_Finalize) left nothing else to go
 * on. Module frames show as tokenkit-pkcs11.so(+0xOFFSET): addr2line -f -e
 * build/tokenkit-pkcs11.so 0xOFFSET names them. The sanitizer build keeps
 * its own, better reports. */
#if defined(__has_feature)
#if __has_feature(address_sanitizer)
#define FAULT_DRIVER_ASAN 1
#endif
#endif
#if defined(__SANITIZE_ADDRESS__)
#define FAULT_DRIVER_ASAN 1
#endif

#ifndef FAULT_DRIVER_ASAN
static void
crash_report(int sig)
{
	static const char head[] = "p11_fault_driver: fatal signal, the faulting thread's stack:\n";
	void *frames[64];
	int n = backtrace(frames, 64);

	if (write(2, head, sizeof(head) - 1) < 0)
		_exit(128 + sig);
	backtrace_symbols_fd(frames, n, 2);
	raise(sig); /* SA_RESETHAND: the default action now */
}
#endif

static void
crash_report_install(void)
{
#ifndef FAULT_DRIVER_ASAN
	static const int sigs[] = {SIGSEGV, SIGBUS, SIGILL, SIGFPE};
	struct sigaction sa;
	void *warm[1];

	(void)backtrace(warm, 1); /* loads libgcc now, not inside the handler */
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = crash_report;
	sa.sa_flags = SA_RESETHAND | SA_NODEFER;
	sigemptyset(&sa.sa_mask);
	for (size_t i = 0; i < sizeof(sigs) / sizeof(sigs[0]); i++)
		(void)sigaction(sigs[i], &sa, NULL);
#endif
}

int
main(int argc, char **argv)
{
	const char *module = NULL, *script = NULL;
	FILE *in = stdin;
	char line[1024];
	int threads_pre, fds_pre, threads0, fds0;
	bool ok = true, end_ok = true;
	char why[256];
	CK_RV rv;

	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--bench") == 0)
			bench_mode = true;
		else if (strcmp(argv[i], "--pin") == 0 && i + 1 < argc)
			snprintf(pin, sizeof(pin), "%s", argv[++i]);
		else if (strcmp(argv[i], "--readers") == 0 && i + 2 < argc) {
			tok_a.reader = argv[++i];
			tok_b.reader = argv[++i];
		} else if (module == NULL)
			module = argv[i];
		else if (script == NULL)
			script = argv[i];
		else
			usage();
	}
	if (module == NULL)
		usage();
	ossl_lock_init();
	pthread_atfork(ossl_fork_prepare, ossl_fork_parent, ossl_lock_init);
	crash_report_install();
	if (script != NULL && (in = fopen(script, "r")) == NULL) {
		perror(script);
		return 2;
	}
	t_start = now_ms();
	my_pid = getpid();
	/* (the module's log lines carry this clock with TOKENKIT_LOG_TIME=1) */
	out("PID %d (start at monotonic %lld.%03lld s)", (int)my_pid, (long long)(t_start / 1000),
	    (long long)(t_start % 1000));
	threads_pre = tk_test_threads();
	fds_pre = tk_test_fds();
	if (module_load(module) != CKR_OK) {
		out("RESULT FAIL: cannot load %s", module);
		return 1;
	}
	rv = module_init();
	if (rv != CKR_OK) {
		out("RESULT FAIL: set-up: %s", rv_name(rv));
		return 1;
	}
	out("set up: A slot %lu serial '%s' key %lu; B slot %lu serial '%s' key %lu",
	    (unsigned long)tok_a.slot, tok_a.serial, (unsigned long)tok_a.key,
	    (unsigned long)tok_b.slot, tok_b.serial, (unsigned long)tok_b.key);
	/* let the module's start-up work (token opens, revalidation) finish */
	sleep_ms(1000);
	threads0 = tk_test_threads();
	fds0 = tk_test_fds();
	out("baseline: threads %d, fds %d (before C_Initialize: %d, %d)", threads0, fds0,
	    threads_pre, fds_pre);
	if (!b_start()) {
		out("RESULT FAIL: cannot start the B signer");
		return 1;
	}
	while (fgets(line, sizeof(line), in) != NULL) {
		ok = run_line(line);
		if (!ok && !bench_mode)
			break;
	}
	if (in != stdin)
		fclose(in);

	/* the end: B's record, leaks, same process */
	if (!b_stop(15000)) {
		out("END: the B signer is stuck in the module");
		end_ok = false;
	} else {
		int64_t until = bs.stopped;

		b_report("END");
		if (bs.nok == 0) {
			out("END: B made no signature at all");
			end_ok = false;
		}
		if (bs.fails_outside != 0 || bs.badsig != 0) {
			out("END: B failed outside the allowed windows (%llu times, first %s at "
			    "%lld ms)",
			    (unsigned long long)bs.fails_outside, rv_name(bs.fail_outside_rv),
			    (long long)(bs.fail_outside_at - t_start));
			end_ok = false;
		}
		if (!b_gaps_ok(until, why, sizeof(why))) {
			out("END: %s", why);
			end_ok = false;
		}
	}
	for (size_t i = 0; i < nbg; i++) {
		int st;

		if (waitpid(bg_pids[i], &st, 0) == bg_pids[i] &&
		    !(WIFEXITED(st) && WEXITSTATUS(st) == 0))
			out("END: background command %d exited with status 0x%x", (int)bg_pids[i],
			    st);
	}
	if (we.running) {
		out("END: a C_WaitForSlotEvent waiter was never joined");
		end_ok = false;
	}
	if (initialized) {
		if (!leaks_ok("END (initialised)", threads0, fds0))
			end_ok = false;
		rv = p11->C_Finalize(NULL);
		if (rv != CKR_OK) {
			out("END: C_Finalize: %s", rv_name(rv));
			end_ok = false;
		}
	}
	if (!leaks_ok("END (finalised)", threads_pre, fds_pre))
		end_ok = false;
	EVP_PKEY_free(tok_a.pk);
	EVP_PKEY_free(tok_b.pk);
	free(bs.ok_at);
	free(bs.fail_at);
	out("END pid %d (same process as PID %d: %s)", (int)getpid(), (int)my_pid,
	    getpid() == my_pid ? "yes" : "no");
	if (failures == 0 && end_ok) {
		out("RESULT PASS");
		return 0;
	}
	out("RESULT FAIL: %d failed steps%s", failures, end_ok ? "" : ", end checks failed");
	return bench_mode ? 0 : 1;
}
