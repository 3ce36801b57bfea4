/* p11bench: time a PKCS#11 module from C_Initialize to the full list of
 * certificates, and its sign throughput. Used by bench/p11bench.sh to compare
 * tokenkit-pkcs11.so with OpenSC's opensc-pkcs11.so on the same virtual cards.
 *
 *   p11bench --module M startup
 *   p11bench --module M --pin P --mech ecdsa|rsa --count N sign
 *
 * Prints "key=value" lines; never judges the figures. */
#include <dlfcn.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <pkcs11-helper-1.0/pkcs11.h>

static CK_FUNCTION_LIST_PTR p11;

static double
now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
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

int
main(int argc, char **argv)
{
	const char *module = NULL, *pin = "123456", *mech = "ecdsa";
	long count = 20;
	int i;

	for (i = 1; i < argc - 1 && strncmp(argv[i], "--", 2) == 0; i += 2) {
		if (strcmp(argv[i], "--module") == 0)
			module = argv[i + 1];
		else if (strcmp(argv[i], "--pin") == 0)
			pin = argv[i + 1];
		else if (strcmp(argv[i], "--mech") == 0)
			mech = argv[i + 1];
		else if (strcmp(argv[i], "--count") == 0)
			count = strtol(argv[i + 1], NULL, 10);
		else
			break;
	}
	if (module == NULL || i != argc - 1 || count <= 0) {
		fprintf(stderr, "usage: p11bench --module M [--pin P] "
		                "[--mech ecdsa|rsa] [--count N] startup|sign\n");
		return 2;
	}
	load(module);
	if (strcmp(argv[i], "startup") == 0)
		return startup();
	if (strcmp(argv[i], "sign") == 0)
		return sign(pin, mech, count);
	fprintf(stderr, "p11bench: unknown mode %s\n", argv[i]);
	return 2;
}
