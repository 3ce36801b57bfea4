/* tk-registry-test: the registry's proof programs (test_registry_*.sh).
 *
 *   put STORE INSTANCE LABEL EXPECTED CERT.der KEY.pem
 *        one compare-and-swap write of tktest/INSTANCE; prints "ok GEN",
 *        "conflict GEN", or the error's name (exit 1)
 *   storm STORE NREC       writes without end, round robin over NREC
 *        records; prints "ack INSTANCE GEN LABEL" once each write returned
 *   verify STORE ACKS      every record file parses (nothing torn) and every
 *        acknowledged write is there (its generation or a later one; the
 *        same generation carries the acknowledged label)
 *   race STORE ROUNDS      two processes write one record based on the same
 *        generation, ROUNDS times: exactly one wins, the other is told the
 *        winner's generation
 *   fill STORE             writes one record, then ever bigger ones until
 *        the file system is full: the error must be TK_ERR_DISK_FULL and
 *        the record must still be the last one written
 *   provider STORE         a long-lived provider reading commands on stdin:
 *        "register CERT KEY", "renew CERT", "get", "reopen", "quit"
 *   p11 MODULE             a PKCS#11 application reading commands on stdin:
 *        "wait MS", "slots", "sign SLOT", "open SLOT", "session", "quit"
 *
 * Every answer is one line on stdout, flushed at once. */
#include <dlfcn.h>
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <openssl/ecdsa.h>
#include <openssl/evp.h>
#include <openssl/x509.h>
#include <pkcs11-helper-1.0/pkcs11.h>

#include <tokenkit/err.h>
#include <tokenkit/log.h>
#include <tokenkit/registry.h>
#include <tokenkit/token.h>

static tk_registry_t *
open_store(const char *path)
{
	tk_registry_opts_t o;
	tk_registry_t *reg = NULL;
	int r;

	tk_registry_opts_init(&o);
	o.path = path;
	if ((r = tk_registry_open(&o, &reg)) != TK_OK) {
		printf("open %s\n", tk_errname(r));
		exit(1);
	}
	return reg;
}

static uint8_t *
slurp(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	uint8_t *p = malloc(1 << 20);

	*len = 0;
	if (f == NULL || p == NULL) {
		fprintf(stderr, "cannot read %s\n", path);
		exit(2);
	}
	*len = fread(p, 1, 1 << 20, f);
	fclose(f);
	return p;
}

/* tktest/instance: a certificate and its key (by file name). */
static tk_registration_t *
make_reg(const char *instance, const char *label, const char *cert, const char *key)
{
	tk_registration_t *r = NULL;
	tk_reg_item_t it;
	size_t cl = 0;
	uint8_t *der = cert != NULL ? slurp(cert, &cl) : NULL;

	if (tk_registration_new("tktest", instance, &r) != TK_OK ||
	    tk_registration_set_label(r, label) != TK_OK)
		exit(2);
	memset(&it, 0, sizeof(it));
	it.id = (const uint8_t *)"\x01";
	it.id_len = 1;
	if (der != NULL) {
		it.kind = TK_REG_ITEM_CERT;
		it.label = "certificate";
		it.der = der;
		it.der_len = cl;
		if (tk_registration_add_item(r, &it) != TK_OK)
			exit(2);
	}
	if (key != NULL) {
		memset(&it, 0, sizeof(it));
		it.kind = TK_REG_ITEM_KEY;
		it.id = (const uint8_t *)"\x01";
		it.id_len = 1;
		it.label = "key";
		it.key_type = TK_KEY_EC;
		it.key_bits = 256;
		it.usage = TK_USAGE_SIGN;
		it.handle = (const uint8_t *)key;
		it.handle_len = strlen(key);
		if (tk_registration_add_item(r, &it) != TK_OK)
			exit(2);
	}
	free(der);
	return r;
}

static int
cmd_put(int argc, char **argv)
{
	tk_registry_t *reg;
	tk_registration_t *r;
	uint64_t gen = 0;
	int res;

	if (argc != 8)
		return 2;
	reg = open_store(argv[2]);
	r = make_reg(argv[3], argv[4], argv[6], argv[7]);
	res = tk_registry_put(reg, r, strtoull(argv[5], NULL, 0), &gen);
	if (res == TK_OK)
		printf("ok %" PRIu64 "\n", gen);
	else if (res == TK_ERR_CONFLICT)
		printf("conflict %" PRIu64 "\n", gen);
	else
		printf("%s\n", tk_errname(res));
	tk_registration_free(&r);
	tk_registry_free(&reg);
	return res == TK_OK ? 0 : 1;
}

static int
cmd_storm(int argc, char **argv)
{
	tk_registry_t *reg;
	unsigned nrec;
	uint64_t gens[64] = {0};

	if (argc != 4 || (nrec = (unsigned)atoi(argv[3])) == 0 || nrec > 64)
		return 2;
	reg = open_store(argv[2]);
	setvbuf(stdout, NULL, _IOLBF, 0);
	for (unsigned long i = 0;; i++) {
		char instance[32], label[64];
		unsigned k = (unsigned)(i % nrec);
		tk_registration_t *r;
		uint64_t gen = 0;
		int res;

		snprintf(instance, sizeof(instance), "storm%u", k);
		snprintf(label, sizeof(label), "write %lu", i);
		r = make_reg(instance, label, NULL, NULL);
		res = tk_registry_put(reg, r, gens[k], &gen);
		if (res == TK_ERR_CONFLICT) {
			/* a write of ours that landed before a kill of the last run */
			res = tk_registry_put(reg, r, gen, &gen);
		}
		if (res != TK_OK) {
			printf("error %s\n", tk_errname(res));
			return 1;
		}
		gens[k] = gen;
		printf("ack %s %" PRIu64 " %s\n", instance, gen, label);
		tk_registration_free(&r);
	}
}

static int
cmd_verify(int argc, char **argv)
{
	char line[256], instance[64], label[64], num[32];
	tk_registration_t **list = NULL, *r = NULL;
	tk_registry_t *reg;
	size_t n = 0, files = 0, acks = 0;
	uint64_t gen;
	FILE *f;
	int bad = 0;

	if (argc != 4)
		return 2;
	reg = open_store(argv[2]);
	/* every record file parses: count them against what the list gives */
	snprintf(line, sizeof(line), "ls '%s' | grep -c '\\.reg$'", argv[2]);
	if ((f = popen(line, "r")) == NULL || fscanf(f, "%zu", &files) != 1)
		files = 0;
	if (f != NULL)
		pclose(f);
	if (tk_registry_list(reg, &list, &n) != TK_OK || n != files) {
		printf("torn: %zu record files, %zu parse\n", files, n);
		return 1;
	}
	tk_registry_list_free(&list, n);
	if ((f = fopen(argv[3], "r")) == NULL)
		return 2;
	/* the last acknowledgement per record is what must be there (or later) */
	while (fgets(line, sizeof(line), f) != NULL) {
		if (sscanf(line, "ack %63s %31s write %63s", instance, num, label) != 3)
			continue;
		acks++;
		gen = strtoull(num, NULL, 10);
		if (tk_registry_get(reg, "tktest", instance, &r) != TK_OK) {
			printf("lost: %s generation %" PRIu64 " is not there\n", instance, gen);
			bad = 1;
			continue;
		}
		if (tk_registration_generation(r) < gen ||
		    (tk_registration_generation(r) == gen &&
		     strcmp(tk_registration_label(r) + strlen("write "), label) != 0)) {
			printf("lost: %s acknowledged at %" PRIu64 " (write %s), store has %" PRIu64
			       " (%s)\n",
			       instance, gen, label, tk_registration_generation(r),
			       tk_registration_label(r));
			bad = 1;
		}
		tk_registration_free(&r);
	}
	fclose(f);
	printf("%s: %zu records, %zu acknowledged writes checked\n", bad ? "FAIL" : "ok", n, acks);
	tk_registry_free(&reg);
	return bad;
}

static int
cmd_race(int argc, char **argv)
{
	unsigned rounds;
	tk_registry_t *reg;
	tk_registration_t *r;
	uint64_t gen = 0;
	int failures = 0;

	if (argc != 4 || (rounds = (unsigned)atoi(argv[3])) == 0)
		return 2;
	reg = open_store(argv[2]);
	r = make_reg("race", "base", NULL, NULL);
	if (tk_registry_put(reg, r, TK_REG_GEN_ANY, &gen) != TK_OK)
		return 1;
	tk_registration_free(&r);
	tk_registry_free(&reg);
	for (unsigned round = 0; round < rounds; round++) {
		int go[2], res[2][2];
		pid_t pid[2];
		char buf[2][64];
		uint64_t base = gen;

		if (pipe(go) != 0)
			return 2;
		for (int c = 0; c < 2; c++) {
			if (pipe(res[c]) != 0)
				return 2;
			if ((pid[c] = fork()) == 0) {
				char label[32], one;
				tk_registry_t *mine = open_store(argv[2]);
				tk_registration_t *w;
				uint64_t g = 0;
				int rr;

				close(go[1]);
				snprintf(label, sizeof(label), "writer %d round %u", c, round);
				w = make_reg("race", label, NULL, NULL);
				/* both based on the same generation, released together */
				(void)!read(go[0], &one, 1);
				rr = tk_registry_put(mine, w, base, &g);
				snprintf(buf[0], sizeof(buf[0]), "%s %" PRIu64 "\n",
				         rr == TK_OK ? "won" : tk_errname(rr), g);
				(void)!write(res[c][1], buf[0], strlen(buf[0]));
				_exit(0);
			}
			close(res[c][1]);
		}
		close(go[0]);
		close(go[1]); /* go */
		int won = 0, told = 0;
		uint64_t won_gen = 0, told_gen = 0;

		for (int c = 0; c < 2; c++) {
			ssize_t k = read(res[c][0], buf[c], sizeof(buf[c]) - 1);

			buf[c][k > 0 ? k : 0] = '\0';
			close(res[c][0]);
			waitpid(pid[c], NULL, 0);
			if (strncmp(buf[c], "won ", 4) == 0) {
				won++;
				won_gen = strtoull(buf[c] + 4, NULL, 10);
			} else if (strncmp(buf[c], "TK_ERR_CONFLICT ", 16) == 0) {
				told++;
				told_gen = strtoull(buf[c] + 16, NULL, 10);
			}
		}
		if (won != 1 || told != 1 || won_gen != base + 1 || told_gen != won_gen) {
			printf("round %u: %s / %s", round, buf[0], buf[1]);
			failures++;
		}
		gen = base + 1;
	}
	printf("%s: %u rounds, %d without exactly one winner and one told\n",
	       failures ? "FAIL" : "ok", rounds, failures);
	return failures != 0;
}

static int
cmd_fill(int argc, char **argv)
{
	tk_registry_t *reg;
	tk_registration_t *r, *got = NULL;
	uint8_t *blob = calloc(1, TK_REG_CONFIG_MAX);
	uint64_t gen = 0, last = 0;
	char label[32];
	int res = TK_OK;

	if (argc != 3 || blob == NULL)
		return 2;
	reg = open_store(argv[2]);
	for (unsigned i = 0; i < 100000 && res == TK_OK; i++) {
		snprintf(label, sizeof(label), "fill %u", i);
		/* a new record each time (the old one stays), each as big as allowed */
		snprintf(label, sizeof(label), "f%u", i);
		r = make_reg(label, "fill", NULL, NULL);
		tk_registration_set_config(r, blob, TK_REG_CONFIG_MAX);
		res = tk_registry_put(reg, r, 0, &gen);
		tk_registration_free(&r);
		if (res == TK_OK && i == 0) {
			/* and one record rewritten in place, to check it survives */
			r = make_reg("keep", "before the disk was full", NULL, NULL);
			res = tk_registry_put(reg, r, TK_REG_GEN_ANY, &last);
			tk_registration_free(&r);
		}
	}
	printf("full: %s\n", tk_errname(res));
	/* the record being replaced when the disk was full keeps its old state */
	r = make_reg("keep", "after", NULL, NULL);
	tk_registration_set_config(r, blob, TK_REG_CONFIG_MAX);
	res = tk_registry_put(reg, r, last, &gen);
	tk_registration_free(&r);
	printf("rewrite: %s\n", tk_errname(res));
	if (tk_registry_get(reg, "tktest", "keep", &got) != TK_OK) {
		printf("keep: gone\n");
		return 1;
	}
	printf("keep: generation %" PRIu64 " label %s\n", tk_registration_generation(got),
	       tk_registration_label(got));
	tk_registration_free(&got);
	free(blob);
	tk_registry_free(&reg);
	return 0;
}

/* ---- the provider of the acceptance scenario -------------------------------------- */

static int
cmd_provider(int argc, char **argv)
{
	char line[1024], a[512], b[512];
	tk_registry_t *reg;
	tk_registration_t *cur = NULL;
	char key[512] = "";

	if (argc != 3)
		return 2;
	reg = open_store(argv[2]);
	setvbuf(stdout, NULL, _IOLBF, 0);
	printf("ready\n");
	while (fgets(line, sizeof(line), stdin) != NULL) {
		uint64_t gen = 0;
		int res = TK_OK;

		if (sscanf(line, "register %511s %511s", a, b) == 2) {
			snprintf(key, sizeof(key), "%s", b);
			tk_registration_free(&cur);
			cur = make_reg("setoken", "setoken", a, key);
			res = tk_registry_put(reg, cur, 0, &gen);
		} else if (sscanf(line, "renew %511s", a) == 1 && cur != NULL) {
			/* the renewal is based on the generation the provider holds */
			uint64_t based = tk_registration_generation(cur);
			tk_registration_t *next = make_reg("setoken", "setoken", a, key);

			res = tk_registry_put(reg, next, based, &gen);
			if (res == TK_OK) {
				tk_registration_free(&cur);
				cur = next;
			} else {
				tk_registration_free(&next);
			}
		} else if (strncmp(line, "get", 3) == 0) {
			tk_registration_t *got = NULL;

			res = tk_registry_get(reg, "tktest", "setoken", &got);
			gen = tk_registration_generation(got);
			tk_registration_free(&got);
		} else if (strncmp(line, "reopen", 6) == 0) {
			bool changed = false;

			res = tk_registry_reopen(reg, &changed);
			gen = changed;
		} else if (strncmp(line, "quit", 4) == 0) {
			break;
		} else {
			printf("?\n");
			continue;
		}
		printf("%s %" PRIu64 "\n", res == TK_OK ? "ok" : tk_errname(res), gen);
	}
	tk_registration_free(&cur);
	tk_registry_free(&reg);
	return 0;
}

/* ---- the PKCS#11 application ------------------------------------------------------- */

static CK_FUNCTION_LIST_PTR p11;

static void
cert_digest(CK_SESSION_HANDLE s, char *out, size_t cap, EVP_PKEY **pub)
{
	CK_OBJECT_CLASS cls = CKO_CERTIFICATE;
	CK_ATTRIBUTE tmpl = {CKA_CLASS, &cls, sizeof(cls)};
	CK_OBJECT_HANDLE h;
	CK_ULONG count = 0;
	uint8_t der[8192], md[32];
	CK_ATTRIBUTE val = {CKA_VALUE, der, sizeof(der)};
	unsigned int ml = 0;

	snprintf(out, cap, "none");
	if (p11->C_FindObjectsInit(s, &tmpl, 1) != CKR_OK)
		return;
	if (p11->C_FindObjects(s, &h, 1, &count) == CKR_OK && count == 1 &&
	    p11->C_GetAttributeValue(s, h, &val, 1) == CKR_OK) {
		const unsigned char *q = der;
		X509 *x = d2i_X509(NULL, &q, (long)val.ulValueLen);

		EVP_Digest(der, val.ulValueLen, md, &ml, EVP_sha256(), NULL);
		for (unsigned i = 0; i < 8; i++)
			snprintf(out + 2 * i, cap - 2 * i, "%02x", md[i]);
		if (pub != NULL && x != NULL)
			*pub = X509_get_pubkey(x);
		X509_free(x);
	}
	p11->C_FindObjectsFinal(s);
}

static void
p11_slots(void)
{
	CK_SLOT_ID ids[64];
	CK_ULONG n = 64;

	if (p11->C_GetSlotList(CK_TRUE, ids, &n) != CKR_OK) {
		printf("slots error\n");
		return;
	}
	printf("slots");
	for (CK_ULONG i = 0; i < n; i++) {
		CK_TOKEN_INFO ti;
		CK_SESSION_HANDLE s;
		char dg[64];

		if (ids[i] < 0x40000000UL || p11->C_GetTokenInfo(ids[i], &ti) != CKR_OK)
			continue;
		if (p11->C_OpenSession(ids[i], CKF_SERIAL_SESSION, NULL, NULL, &s) != CKR_OK)
			continue;
		cert_digest(s, dg, sizeof(dg), NULL);
		p11->C_CloseSession(s);
		printf(" %lu:%.8s:%s", (unsigned long)ids[i], (const char *)ti.label, dg);
	}
	printf("\n");
}

static void
p11_sign(CK_SLOT_ID slot)
{
	CK_OBJECT_CLASS cls = CKO_PRIVATE_KEY;
	CK_ATTRIBUTE tmpl = {CKA_CLASS, &cls, sizeof(cls)};
	CK_MECHANISM mech = {CKM_ECDSA, NULL, 0};
	CK_SESSION_HANDLE s;
	CK_OBJECT_HANDLE key;
	CK_ULONG count = 0, sl = 128;
	uint8_t hash[32], sig[128], der[160], *dp = der;
	EVP_PKEY *pub = NULL;
	char dg[64];
	CK_RV rv;
	int ok = 0;

	memset(hash, 0x5a, sizeof(hash));
	if ((rv = p11->C_OpenSession(slot, CKF_SERIAL_SESSION, NULL, NULL, &s)) != CKR_OK) {
		printf("sign open 0x%lx\n", (unsigned long)rv);
		return;
	}
	cert_digest(s, dg, sizeof(dg), &pub);
	rv = p11->C_Login(s, CKU_USER, (CK_UTF8CHAR_PTR) "1234", 4);
	if (rv == CKR_OK)
		rv = p11->C_FindObjectsInit(s, &tmpl, 1);
	if (rv == CKR_OK)
		rv = p11->C_FindObjects(s, &key, 1, &count);
	p11->C_FindObjectsFinal(s);
	if (rv == CKR_OK && count != 1)
		rv = CKR_KEY_HANDLE_INVALID;
	if (rv == CKR_OK)
		rv = p11->C_SignInit(s, &mech, key);
	if (rv == CKR_OK)
		rv = p11->C_Sign(s, hash, sizeof(hash), sig, &sl);
	if (rv == CKR_OK && pub != NULL && sl == 64) {
		ECDSA_SIG *es = ECDSA_SIG_new();
		EVP_PKEY_CTX *c = EVP_PKEY_CTX_new(pub, NULL);
		int dl;

		ECDSA_SIG_set0(es, BN_bin2bn(sig, 32, NULL), BN_bin2bn(sig + 32, 32, NULL));
		dl = i2d_ECDSA_SIG(es, &dp);
		ok = c != NULL && EVP_PKEY_verify_init(c) == 1 &&
		     EVP_PKEY_verify(c, der, (size_t)dl, hash, sizeof(hash)) == 1;
		EVP_PKEY_CTX_free(c);
		ECDSA_SIG_free(es);
	}
	p11->C_Logout(s);
	p11->C_CloseSession(s);
	EVP_PKEY_free(pub);
	printf("sign 0x%lx %s cert %s\n", (unsigned long)rv, ok ? "verified" : "unverified", dg);
}

static int
cmd_p11(int argc, char **argv)
{
	CK_C_GetFunctionList gfl;
	CK_SESSION_HANDLE kept = CK_INVALID_HANDLE;
	char line[256];
	void *h;
	CK_RV rv;

	if (argc != 3 || (h = dlopen(argv[2], RTLD_NOW | RTLD_LOCAL)) == NULL)
		return 2;
	*(void **)&gfl = dlsym(h, "C_GetFunctionList");
	if (gfl == NULL || gfl(&p11) != CKR_OK)
		return 2;
	setvbuf(stdout, NULL, _IOLBF, 0);
	if ((rv = p11->C_Initialize(NULL)) != CKR_OK) {
		printf("init 0x%lx\n", (unsigned long)rv);
		return 1;
	}
	printf("ready\n");
	while (fgets(line, sizeof(line), stdin) != NULL) {
		unsigned long v;

		if (sscanf(line, "wait %lu", &v) == 1) {
			/* C_WaitForSlotEvent (non-blocking, polled) until v ms */
			struct timespec t0, t1, ts = {0, 2 * 1000000L};
			CK_SLOT_ID slot;
			long ms = 0;

			clock_gettime(CLOCK_MONOTONIC, &t0);
			for (;;) {
				rv = p11->C_WaitForSlotEvent(CKF_DONT_BLOCK, &slot, NULL);
				clock_gettime(CLOCK_MONOTONIC, &t1);
				ms = (t1.tv_sec - t0.tv_sec) * 1000 +
				     (t1.tv_nsec - t0.tv_nsec) / 1000000;
				if (rv != CKR_NO_EVENT || ms >= (long)v)
					break;
				nanosleep(&ts, NULL);
			}
			if (rv == CKR_OK)
				printf("event %lu\n", (unsigned long)slot);
			else
				printf("timeout\n");
		} else if (strncmp(line, "slots", 5) == 0) {
			p11_slots();
		} else if (sscanf(line, "sign %lu", &v) == 1) {
			p11_sign(v);
		} else if (sscanf(line, "open %lu", &v) == 1) {
			rv = p11->C_OpenSession(v, CKF_SERIAL_SESSION, NULL, NULL, &kept);
			printf("open 0x%lx\n", (unsigned long)rv);
		} else if (strncmp(line, "session", 7) == 0) {
			CK_SESSION_INFO si;

			rv = p11->C_GetSessionInfo(kept, &si);
			printf("session 0x%lx\n", (unsigned long)rv);
		} else if (strncmp(line, "quit", 4) == 0) {
			break;
		} else {
			printf("?\n");
		}
	}
	p11->C_Finalize(NULL);
	return 0;
}

int
main(int argc, char **argv)
{
	signal(SIGPIPE, SIG_IGN);
	tk_log_set_level(TK_LOG_WARN);
	if (argc < 2)
		return 2;
	if (strcmp(argv[1], "put") == 0)
		return cmd_put(argc, argv);
	if (strcmp(argv[1], "storm") == 0)
		return cmd_storm(argc, argv);
	if (strcmp(argv[1], "verify") == 0)
		return cmd_verify(argc, argv);
	if (strcmp(argv[1], "race") == 0)
		return cmd_race(argc, argv);
	if (strcmp(argv[1], "fill") == 0)
		return cmd_fill(argc, argv);
	if (strcmp(argv[1], "provider") == 0)
		return cmd_provider(argc, argv);
	if (strcmp(argv[1], "p11") == 0)
		return cmd_p11(argc, argv);
	return 2;
}
