/* registry_latency: how long from a provider's registration to a slot in a
 * running PKCS#11 module, and how long a registry write takes
 * (bench/registry.sh sets up the store, the test provider and the keys).
 *
 *   registry_latency MODULE STORE CERT.der KEY.pem N
 *
 * The module runs in this process (loaded with dlopen, as an application
 * does); the writes go through this process's own copy of the library, as a
 * provider's would. For each of N rounds: register tktest/benchI (a
 * certificate and a key; timed: the write, with its fsyncs), then block in
 * C_WaitForSlotEvent until the module reports the slot (timed from before
 * the write: registration to slot; polled every 100 µs, at most 5 s); then
 * remove it and wait for that event
 * too. Prints median, 90th and 99th percentile and maximum in ms. Never
 * judges a figure. */
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <pkcs11-helper-1.0/pkcs11.h>

#include <tokenkit/err.h>
#include <tokenkit/log.h>
#include <tokenkit/registry.h>
#include <tokenkit/token.h>

#include "clock.h"

static int
cmp(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

/* C_WaitForSlotEvent, polled every 100 µs (adds at most that much), for
 * at most 5 s: a registration that never becomes a slot (no provider) ends
 * the run instead of hanging it. */
static CK_RV
wait_event(CK_FUNCTION_LIST_PTR p11, CK_SLOT_ID *id)
{
	int64_t end = tk_now_ms() + 5000;
	struct timespec ts = {0, 100 * 1000};
	CK_RV rv;

	while ((rv = p11->C_WaitForSlotEvent(CKF_DONT_BLOCK, id, NULL)) == CKR_NO_EVENT &&
	       tk_now_ms() < end)
		nanosleep(&ts, NULL);
	if (rv != CKR_OK)
		fprintf(stderr, "registry_latency: no slot event within 5 s (0x%lx)\n",
		        (unsigned long)rv);
	return rv;
}

static void
report(const char *what, double *v, int n)
{
	qsort(v, (size_t)n, sizeof(*v), cmp);
	printf("%-28s median %7.3f ms  p90 %7.3f  p99 %7.3f  max %7.3f  (n=%d)\n", what, v[n / 2],
	       v[n * 9 / 10], v[n * 99 / 100], v[n - 1], n);
}

int
main(int argc, char **argv)
{
	CK_FUNCTION_LIST_PTR p11;
	CK_C_GetFunctionList gfl;
	tk_registry_opts_t o;
	tk_registry_t *reg = NULL;
	double *wr, *slot, *rm_wr, *rm_slot;
	uint8_t der[8192];
	size_t dl;
	int n;
	void *h;
	FILE *f;

	if (argc != 6 || (n = atoi(argv[5])) <= 0)
		return 2;
	if ((f = fopen(argv[3], "rb")) == NULL)
		return 2;
	dl = fread(der, 1, sizeof(der), f);
	fclose(f);
	if ((h = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL)) == NULL)
		return 2;
	*(void **)&gfl = dlsym(h, "C_GetFunctionList");
	if (gfl == NULL || gfl(&p11) != CKR_OK || p11->C_Initialize(NULL) != CKR_OK)
		return 2;
	tk_registry_opts_init(&o);
	o.path = argv[2];
	if (tk_registry_open(&o, &reg) != TK_OK)
		return 2;
	wr = calloc((size_t)n, sizeof(double));
	slot = calloc((size_t)n, sizeof(double));
	rm_wr = calloc((size_t)n, sizeof(double));
	rm_slot = calloc((size_t)n, sizeof(double));
	for (int i = 0; i < n; i++) {
		tk_registration_t *r = NULL;
		tk_reg_item_t it;
		char inst[32];
		CK_SLOT_ID id;
		uint64_t gen = 0;
		int64_t t0, t1, t2;

		snprintf(inst, sizeof(inst), "bench%d", i);
		tk_registration_new("tktest", inst, &r);
		tk_registration_set_label(r, inst);
		memset(&it, 0, sizeof(it));
		it.kind = TK_REG_ITEM_CERT;
		it.id = (const uint8_t *)"\x01";
		it.id_len = 1;
		it.label = "cert";
		it.der = der;
		it.der_len = dl;
		tk_registration_add_item(r, &it);
		it.kind = TK_REG_ITEM_KEY;
		it.der = NULL;
		it.der_len = 0;
		it.key_type = TK_KEY_EC;
		it.key_bits = 256;
		it.usage = TK_USAGE_SIGN;
		it.handle = (const uint8_t *)argv[4];
		it.handle_len = strlen(argv[4]);
		tk_registration_add_item(r, &it);
		t0 = tk_now_us();
		if (tk_registry_put(reg, r, 0, &gen) != TK_OK)
			return 1;
		t1 = tk_now_us();
		if (wait_event(p11, &id) != CKR_OK)
			return 1;
		t2 = tk_now_us();
		wr[i] = (double)(t1 - t0) / 1000.0;
		slot[i] = (double)(t2 - t0) / 1000.0;
		t0 = tk_now_us();
		if (tk_registry_remove(reg, "tktest", inst, gen, &gen) != TK_OK)
			return 1;
		t1 = tk_now_us();
		if (wait_event(p11, &id) != CKR_OK)
			return 1;
		t2 = tk_now_us();
		rm_wr[i] = (double)(t1 - t0) / 1000.0;
		rm_slot[i] = (double)(t2 - t0) / 1000.0;
		tk_registration_free(&r);
	}
	report("write (register)", wr, n);
	report("registration -> slot event", slot, n);
	report("write (remove)", rm_wr, n);
	report("removal -> slot event", rm_slot, n);
	p11->C_Finalize(NULL);
	tk_registry_free(&reg);
	return 0;
}
