/* p11bench: time a PKCS#11 module from C_Initialize to the full list of
 * certificates, and its sign throughput. Used by bench/p11bench.sh to compare
 * tokenkit-pkcs11.so with OpenSC's opensc-pkcs11.so on the same virtual cards,
 * and by bench/soft_bench.sh to compare software tokens with raw OpenSSL.
 *
 *   p11bench --module M startup
 *   p11bench --module M --pin P --mech ecdsa|rsa --count N sign
 *   p11bench --module M --pin P [--label L] --mech MECH [--threads T] [--seconds S] rate
 *   p11bench --key PEM --mech MECH [--threads T] [--seconds S] rate
 *
 * rate: signatures per second of T threads (each its own session, one login)
 * signing 32 bytes for S seconds; MECH is ecdsa (CKM_ECDSA: the 32 bytes are
 * the SHA-256 hash; SoftHSMv2 2.6 has no CKM_ECDSA_SHA256), ed25519
 * (PureEdDSA), rsa (SHA-256 PKCS#1 v1.5) or rsa-pss (SHA-256, MGF1-SHA-256,
 * 32-byte salt). With --key the same signatures are made by OpenSSL's EVP
 * API in this process (per signature a new EVP_PKEY_CTX, or one
 * EVP_DigestSignInit + EVP_DigestSign on a per-thread context: what a
 * token's C_SignInit + C_Sign has to do).
 *
 * Prints "key=value" lines; never judges the figures. */
#include <dlfcn.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>
#include <pkcs11-helper-1.0/pkcs11.h>

static CK_FUNCTION_LIST_PTR p11;

static double
now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

/* CPU time of the process, all threads */
static double
cpu_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
	return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static void
die(const char *what, CK_RV rv)
{
	fprintf(stderr, "p11bench: %s failed: 0x%lx\n", what, (unsigned long)rv);
	exit(1);
}

static void
load(const char *path)
{
	CK_C_GetFunctionList get;
	void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
	CK_RV rv;

	if (h == NULL) {
		fprintf(stderr, "p11bench: %s\n", dlerror());
		exit(1);
	}
	*(void **)&get = dlsym(h, "C_GetFunctionList");
	if (get == NULL) {
		fprintf(stderr, "p11bench: no C_GetFunctionList in %s\n", path);
		exit(1);
	}
	if ((rv = get(&p11)) != CKR_OK)
		die("C_GetFunctionList", rv);
}

/* APDUs a virtual card has answered so far, from its control socket
 * ("status" → "... card_apdus=N ..."); -1 if it cannot be asked. */
static long
card_apdus(const char *path)
{
	struct sockaddr_un sa;
	char reply[512];
	const char *p;
	size_t len = 0;
	int fd;

	memset(&sa, 0, sizeof(sa));
	sa.sun_family = AF_UNIX;
	if (strlen(path) >= sizeof(sa.sun_path))
		return -1;
	memcpy(sa.sun_path, path, strlen(path) + 1);
	if ((fd = socket(AF_UNIX, SOCK_STREAM, 0)) < 0)
		return -1;
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0 || write(fd, "status\n", 7) != 7) {
		close(fd);
		return -1;
	}
	while (len + 1 < sizeof(reply)) {
		struct pollfd pfd = {.fd = fd, .events = POLLIN};
		ssize_t n;

		if (poll(&pfd, 1, 2000) <= 0 ||
		    (n = read(fd, reply + len, sizeof(reply) - 1 - len)) <= 0)
			break;
		len += (size_t)n;
	}
	close(fd);
	reply[len] = '\0';
	if ((p = strstr(reply, "card_apdus=")) == NULL)
		return -1;
	return strtol(p + strlen("card_apdus="), NULL, 10);
}

/* P11BENCH_CARDS="sock:sock…": print the cards' total APDU count now. */
static void
mark_apdus(void)
{
	const char *env = getenv("P11BENCH_CARDS");
	char list[1024], *save = NULL;
	long total = 0;

	if (env == NULL || strlen(env) >= sizeof(list))
		return;
	strcpy(list, env);
	for (char *tok = strtok_r(list, ":", &save); tok != NULL;
	     tok = strtok_r(NULL, ":", &save)) {
		long n = card_apdus(tok);

		if (n < 0) {
			fprintf(stderr, "p11bench: cannot ask %s for its APDU count\n", tok);
			return;
		}
		total += n;
	}
	printf("card_apdus_at_list=%ld\n", total);
}

/* With P11BENCH_VERBOSE set, where the start-up time goes. */
static void
stage(const char *what, double t0)
{
	if (getenv("P11BENCH_VERBOSE") != NULL)
		fprintf(stderr, "p11bench: %8.2f ms  %s\n", now_ms() - t0, what);
}

static int
startup(void)
{
	double t0 = now_ms(), t_init, t_list;
	CK_SLOT_ID slots[64];
	CK_ULONG n = 64, certs = 0, bytes = 0;
	CK_RV rv;

	if ((rv = p11->C_Initialize(NULL)) != CKR_OK)
		die("C_Initialize", rv);
	t_init = now_ms();
	if ((rv = p11->C_GetSlotList(CK_TRUE, slots, &n)) != CKR_OK)
		die("C_GetSlotList", rv);
	stage("C_GetSlotList", t0);
	for (CK_ULONG i = 0; i < n; i++) {
		CK_SESSION_HANDLE s;
		CK_OBJECT_CLASS cls = CKO_CERTIFICATE;
		CK_ATTRIBUTE tmpl[] = {{CKA_CLASS, &cls, sizeof(cls)}};
		CK_OBJECT_HANDLE objs[32];
		CK_ULONG got = 0;

		if ((rv = p11->C_OpenSession(slots[i], CKF_SERIAL_SESSION, NULL, NULL, &s)) !=
		    CKR_OK)
			die("C_OpenSession", rv);
		if ((rv = p11->C_FindObjectsInit(s, tmpl, 1)) != CKR_OK)
			die("C_FindObjectsInit", rv);
		stage("C_OpenSession+C_FindObjectsInit", t0);
		if ((rv = p11->C_FindObjects(s, objs, 32, &got)) != CKR_OK)
			die("C_FindObjects", rv);
		p11->C_FindObjectsFinal(s);
		stage("C_FindObjects", t0);
		for (CK_ULONG k = 0; k < got; k++) {
			CK_ATTRIBUTE v = {CKA_VALUE, NULL, 0};
			unsigned char *buf;

			if ((rv = p11->C_GetAttributeValue(s, objs[k], &v, 1)) != CKR_OK)
				die("C_GetAttributeValue(len)", rv);
			if ((buf = malloc(v.ulValueLen)) == NULL)
				exit(1);
			v.pValue = buf;
			if ((rv = p11->C_GetAttributeValue(s, objs[k], &v, 1)) != CKR_OK)
				die("C_GetAttributeValue", rv);
			bytes += v.ulValueLen;
			free(buf);
			certs++;
		}
		p11->C_CloseSession(s);
	}
	t_list = now_ms();
	/* The APDUs sent so far, before anything the module still does in the
	 * background or at C_Finalize. */
	mark_apdus();
	printf("init_ms=%.2f\nstartup_ms=%.2f\ntokens=%lu\ncerts=%lu\ncert_bytes=%lu\n",
	       t_init - t0, t_list - t0, (unsigned long)n, (unsigned long)certs,
	       (unsigned long)bytes);
	p11->C_Finalize(NULL);
	return certs > 0 ? 0 : 2;
}

static int
sign(const char *pin, const char *mech, long count)
{
	CK_SLOT_ID slots[64];
	CK_SESSION_HANDLE s = CK_INVALID_HANDLE;
	CK_OBJECT_CLASS cls = CKO_PRIVATE_KEY;
	CK_KEY_TYPE kt = strcmp(mech, "rsa") == 0 ? CKK_RSA : CKK_EC;
	CK_ATTRIBUTE tmpl[] = {{CKA_CLASS, &cls, sizeof(cls)}, {CKA_KEY_TYPE, &kt, sizeof(kt)}};
	CK_OBJECT_HANDLE key = CK_INVALID_HANDLE;
	CK_ULONG nslots = 64;
	CK_MECHANISM m = {kt == CKK_RSA ? CKM_SHA256_RSA_PKCS : CKM_ECDSA_SHA256, NULL, 0};
	unsigned char data[32] = "p11bench data to be signed....", sig[1024];
	double t0 = 0, t1;
	CK_RV rv;

	if ((rv = p11->C_Initialize(NULL)) != CKR_OK)
		die("C_Initialize", rv);
	if ((rv = p11->C_GetSlotList(CK_TRUE, slots, &nslots)) != CKR_OK)
		die("C_GetSlotList", rv);
	/* The first token that holds a private key of the wanted type. */
	for (CK_ULONG i = 0; i < nslots && key == CK_INVALID_HANDLE; i++) {
		CK_ULONG got = 0;

		if ((rv = p11->C_OpenSession(slots[i], CKF_SERIAL_SESSION, NULL, NULL, &s)) !=
		    CKR_OK)
			die("C_OpenSession", rv);
		CK_UTF8CHAR pinbuf[64];
		size_t pinlen = strlen(pin) < sizeof(pinbuf) ? strlen(pin) : sizeof(pinbuf);

		memcpy(pinbuf, pin, pinlen);
		rv = p11->C_Login(s, CKU_USER, pinbuf, (CK_ULONG)pinlen);
		if (rv != CKR_OK && rv != CKR_USER_ALREADY_LOGGED_IN)
			die("C_Login", rv);
		if ((rv = p11->C_FindObjectsInit(s, tmpl, 2)) != CKR_OK)
			die("C_FindObjectsInit", rv);
		if ((rv = p11->C_FindObjects(s, &key, 1, &got)) != CKR_OK)
			die("C_FindObjects", rv);
		p11->C_FindObjectsFinal(s);
		if (got != 1) {
			key = CK_INVALID_HANDLE;
			p11->C_CloseSession(s);
		}
	}
	if (key == CK_INVALID_HANDLE) {
		fprintf(stderr, "p11bench: no %s private key on any token\n", mech);
		return 1;
	}
	/* One warm-up signature (a first use may select or verify). */
	for (long i = -1; i < count; i++) {
		CK_ULONG sl = sizeof(sig);

		if (i == 0)
			t0 = now_ms();
		if ((rv = p11->C_SignInit(s, &m, key)) != CKR_OK)
			die("C_SignInit", rv);
		if ((rv = p11->C_Sign(s, data, sizeof(data), sig, &sl)) != CKR_OK)
			die("C_Sign", rv);
	}
	t1 = now_ms();
	printf("signs=%ld\nsign_ms=%.2f\nsigns_per_s=%.2f\n", count, t1 - t0,
	       count * 1000.0 / (t1 - t0));
	p11->C_Logout(s);
	p11->C_CloseSession(s);
	p11->C_Finalize(NULL);
	return 0;
}

/* ---- rate: threads signing for a fixed time ---------------------------------------------- */

struct rate_cfg {
	const char *mech;
	CK_SLOT_ID slot;
	CK_KEY_TYPE kt;
	EVP_PKEY *pkey; /* raw OpenSSL; NULL: through the module */
	pthread_barrier_t start;
	atomic_bool stop;
};

struct worker {
	pthread_t th;
	struct rate_cfg *cfg;
	long count;
	int failed;
};

static CK_KEY_TYPE
mech_key_type(const char *mech)
{
	if (strcmp(mech, "ed25519") == 0)
		return CKK_EC_EDWARDS;
	return strncmp(mech, "rsa", 3) == 0 ? CKK_RSA : CKK_EC;
}

/* One private key of the type in a session of slot (logged in already). */
static CK_OBJECT_HANDLE
find_key(CK_SESSION_HANDLE s, CK_KEY_TYPE kt)
{
	CK_OBJECT_CLASS cls = CKO_PRIVATE_KEY;
	CK_ATTRIBUTE tmpl[] = {{CKA_CLASS, &cls, sizeof(cls)}, {CKA_KEY_TYPE, &kt, sizeof(kt)}};
	CK_OBJECT_HANDLE key = CK_INVALID_HANDLE;
	CK_ULONG got = 0;
	CK_RV rv;

	if ((rv = p11->C_FindObjectsInit(s, tmpl, 2)) != CKR_OK)
		die("C_FindObjectsInit", rv);
	if ((rv = p11->C_FindObjects(s, &key, 1, &got)) != CKR_OK)
		die("C_FindObjects", rv);
	p11->C_FindObjectsFinal(s);
	return got == 1 ? key : CK_INVALID_HANDLE;
}

static void *
p11_worker(void *arg)
{
	struct worker *w = arg;
	struct rate_cfg *c = w->cfg;
	CK_RSA_PKCS_PSS_PARAMS pss = {CKM_SHA256, CKG_MGF1_SHA256, 32};
	CK_MECHANISM m = {CKM_ECDSA, NULL, 0};
	unsigned char data[32] = "p11bench data to be signed....", sig[1024];
	CK_SESSION_HANDLE s;
	CK_OBJECT_HANDLE key;
	CK_RV rv;

	if (strcmp(c->mech, "ed25519") == 0)
		m.mechanism = CKM_EDDSA;
	else if (strcmp(c->mech, "rsa") == 0)
		m.mechanism = CKM_SHA256_RSA_PKCS;
	else if (strcmp(c->mech, "rsa-pss") == 0) {
		m.mechanism = CKM_SHA256_RSA_PKCS_PSS;
		m.pParameter = &pss;
		m.ulParameterLen = sizeof(pss);
	}
	if ((rv = p11->C_OpenSession(c->slot, CKF_SERIAL_SESSION, NULL, NULL, &s)) != CKR_OK)
		die("C_OpenSession", rv);
	if ((key = find_key(s, c->kt)) == CK_INVALID_HANDLE)
		die("finding the key in a thread's session", CKR_GENERAL_ERROR);
	pthread_barrier_wait(&c->start);
	while (!atomic_load(&c->stop)) {
		CK_ULONG sl = sizeof(sig);

		if ((rv = p11->C_SignInit(s, &m, key)) != CKR_OK ||
		    (rv = p11->C_Sign(s, data, sizeof(data), sig, &sl)) != CKR_OK) {
			fprintf(stderr, "p11bench: sign failed: 0x%lx\n", (unsigned long)rv);
			w->failed = 1;
			break;
		}
		w->count++;
	}
	p11->C_CloseSession(s);
	return NULL;
}

static void *
evp_worker(void *arg)
{
	struct worker *w = arg;
	struct rate_cfg *c = w->cfg;
	const EVP_MD *md = strcmp(c->mech, "ed25519") == 0 ? NULL : EVP_sha256();
	bool pss = strcmp(c->mech, "rsa-pss") == 0;
	unsigned char data[32] = "p11bench data to be signed....", sig[1024];
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();

	if (ctx == NULL)
		die("EVP_MD_CTX_new", 0);
	pthread_barrier_wait(&c->start);
	while (!atomic_load(&c->stop)) {
		EVP_PKEY_CTX *pctx = NULL;
		size_t sl = sizeof(sig);

		if (strcmp(c->mech, "ecdsa") == 0) {
			/* the 32 bytes are the hash, as for CKM_ECDSA */
			pctx = EVP_PKEY_CTX_new_from_pkey(NULL, c->pkey, NULL);
			if (pctx == NULL || EVP_PKEY_sign_init(pctx) != 1 ||
			    EVP_PKEY_CTX_set_signature_md(pctx, EVP_sha256()) != 1 ||
			    EVP_PKEY_sign(pctx, sig, &sl, data, sizeof(data)) != 1) {
				fprintf(stderr, "p11bench: EVP sign failed\n");
				w->failed = 1;
			}
			EVP_PKEY_CTX_free(pctx);
			if (w->failed)
				break;
			w->count++;
			continue;
		}
		if (EVP_DigestSignInit(ctx, &pctx, md, NULL, c->pkey) != 1 ||
		    (pss && (EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PSS_PADDING) != 1 ||
		             EVP_PKEY_CTX_set_rsa_pss_saltlen(pctx, 32) != 1 ||
		             EVP_PKEY_CTX_set_rsa_mgf1_md(pctx, EVP_sha256()) != 1)) ||
		    EVP_DigestSign(ctx, sig, &sl, data, sizeof(data)) != 1) {
			fprintf(stderr, "p11bench: EVP sign failed\n");
			w->failed = 1;
			break;
		}
		w->count++;
	}
	EVP_MD_CTX_free(ctx);
	return NULL;
}

static int
rate(const char *keyfile, const char *pin, const char *label, const char *mech, int threads,
     double seconds)
{
	struct rate_cfg c = {.mech = mech, .kt = mech_key_type(mech)};
	struct worker w[64];
	CK_SESSION_HANDLE main_s = CK_INVALID_HANDLE;
	long total = 0;
	int failed = 0;
	double t0, t1, cpu0, cpu1;

	if (threads < 1 || threads > 64 || seconds <= 0)
		return 2;
	if (keyfile != NULL) {
		FILE *f = fopen(keyfile, "r");

		if (f == NULL || (c.pkey = PEM_read_PrivateKey(f, NULL, NULL, NULL)) == NULL) {
			fprintf(stderr, "p11bench: cannot read the key %s\n", keyfile);
			return 1;
		}
		fclose(f);
	} else {
		CK_C_INITIALIZE_ARGS ia = {.flags = CKF_OS_LOCKING_OK};
		CK_SLOT_ID slots[64];
		CK_ULONG n = 64;
		CK_RV rv;
		bool found = false;

		if ((rv = p11->C_Initialize(&ia)) != CKR_OK)
			die("C_Initialize", rv);
		if ((rv = p11->C_GetSlotList(CK_TRUE, slots, &n)) != CKR_OK)
			die("C_GetSlotList", rv);
		for (CK_ULONG i = 0; i < n && !found; i++) {
			CK_TOKEN_INFO ti;
			char tl[33];
			size_t len = sizeof(ti.label);

			if (label != NULL) {
				if (p11->C_GetTokenInfo(slots[i], &ti) != CKR_OK)
					continue;
				while (len > 0 && ti.label[len - 1] == ' ')
					len--;
				memcpy(tl, ti.label, len);
				tl[len] = '\0';
				if (strcmp(tl, label) != 0)
					continue;
			}
			if ((rv = p11->C_OpenSession(slots[i], CKF_SERIAL_SESSION, NULL, NULL,
			                             &main_s)) != CKR_OK)
				die("C_OpenSession", rv);
			{
				CK_UTF8CHAR pinbuf[64];
				size_t pl =
				        strlen(pin) < sizeof(pinbuf) ? strlen(pin) : sizeof(pinbuf);

				memcpy(pinbuf, pin, pl);
				rv = p11->C_Login(main_s, CKU_USER, pinbuf, (CK_ULONG)pl);
			}
			if (rv != CKR_OK && rv != CKR_USER_ALREADY_LOGGED_IN)
				die("C_Login", rv);
			found = find_key(main_s, c.kt) != CK_INVALID_HANDLE;
			if (found)
				c.slot = slots[i];
			else
				p11->C_CloseSession(main_s);
		}
		if (!found) {
			fprintf(stderr, "p11bench: no %s private key on any token\n", mech);
			return 1;
		}
	}
	pthread_barrier_init(&c.start, NULL, (unsigned)threads + 1);
	atomic_init(&c.stop, false);
	for (int i = 0; i < threads; i++) {
		w[i] = (struct worker){.cfg = &c};
		if (pthread_create(&w[i].th, NULL, c.pkey != NULL ? evp_worker : p11_worker,
		                   &w[i]) != 0)
			die("pthread_create", 0);
	}
	pthread_barrier_wait(&c.start);
	t0 = now_ms();
	cpu0 = cpu_ms();
	{
		struct timespec ts = {(time_t)seconds,
		                      (long)((seconds - (double)(time_t)seconds) * 1e9)};

		while (nanosleep(&ts, &ts) != 0)
			;
	}
	atomic_store(&c.stop, true);
	for (int i = 0; i < threads; i++) {
		pthread_join(w[i].th, NULL);
		total += w[i].count;
		failed |= w[i].failed;
	}
	t1 = now_ms();
	cpu1 = cpu_ms();
	pthread_barrier_destroy(&c.start);
	/* per CPU second of the whole process (the module's own threads too):
	 * what a core does, whatever else the machine runs meanwhile */
	printf("threads=%d\nsigns=%ld\nseconds=%.3f\nsigns_per_s=%.1f\ncpu_seconds=%.3f\n"
	       "signs_per_cpu_s=%.1f\n",
	       threads, total, (t1 - t0) / 1e3, total * 1000.0 / (t1 - t0), (cpu1 - cpu0) / 1e3,
	       cpu1 > cpu0 ? total * 1000.0 / (cpu1 - cpu0) : 0.0);
	if (c.pkey != NULL) {
		EVP_PKEY_free(c.pkey);
	} else {
		p11->C_Logout(main_s);
		p11->C_CloseSession(main_s);
		p11->C_Finalize(NULL);
	}
	return failed;
}

int
main(int argc, char **argv)
{
	const char *module = NULL, *pin = "123456", *mech = "ecdsa", *key = NULL, *label = NULL;
	long count = 20;
	int i, threads = 1;
	double seconds = 2;

	for (i = 1; i < argc - 1 && strncmp(argv[i], "--", 2) == 0; i += 2) {
		if (strcmp(argv[i], "--module") == 0)
			module = argv[i + 1];
		else if (strcmp(argv[i], "--pin") == 0)
			pin = argv[i + 1];
		else if (strcmp(argv[i], "--mech") == 0)
			mech = argv[i + 1];
		else if (strcmp(argv[i], "--count") == 0)
			count = strtol(argv[i + 1], NULL, 10);
		else if (strcmp(argv[i], "--key") == 0)
			key = argv[i + 1];
		else if (strcmp(argv[i], "--label") == 0)
			label = argv[i + 1];
		else if (strcmp(argv[i], "--threads") == 0)
			threads = (int)strtol(argv[i + 1], NULL, 10);
		else if (strcmp(argv[i], "--seconds") == 0)
			seconds = strtod(argv[i + 1], NULL);
		else
			break;
	}
	if ((module == NULL && key == NULL) || i != argc - 1 || count <= 0) {
		fprintf(stderr, "usage: p11bench --module M [--pin P] "
		                "[--mech ecdsa|rsa] [--count N] startup|sign\n"
		                "       p11bench --module M|--key PEM [--pin P] [--label L] "
		                "[--mech ecdsa|ed25519|rsa|rsa-pss] [--threads T] "
		                "[--seconds S] rate\n");
		return 2;
	}
	if (strcmp(argv[i], "rate") == 0 && key != NULL)
		return rate(key, pin, label, mech, threads, seconds);
	if (module == NULL)
		return 2;
	load(module);
	if (strcmp(argv[i], "rate") == 0)
		return rate(NULL, pin, label, mech, threads, seconds);
	if (strcmp(argv[i], "startup") == 0)
		return startup();
	if (strcmp(argv[i], "sign") == 0)
		return sign(pin, mech, count);
	fprintf(stderr, "p11bench: unknown mode %s\n", argv[i]);
	return 2;
}
