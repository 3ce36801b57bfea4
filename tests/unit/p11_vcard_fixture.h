/* Fixture for the tests that drive the BUILT module (dlopen
 * tokenkit-pkcs11.so) against a provisioned virtual PIV card in the
 * in-process virtual reader: test_p11_conformance.c (PKCS#11 conformance)
 * and test_p11_rv.c (return values under card faults).
 *
 * The card is provisioned through APDUs only (test_piv_fixture.h), saved
 * as a state file and served by the module's in-process virtual reader:
 *   9A  RSA-2048 (sign, decrypt)  CKA_ID 01
 *   9C  P-256 (sign, PIN always)  CKA_ID 02
 *   9D  P-256 (decrypt, derive)   CKA_ID 03
 *   9E  P-384 (sign, no PIN)      CKA_ID 04
 * each with a certificate for its key. PIN 123456.
 *
 * pvf_env() is the ONE place that says how the module finds its card
 * (environment variables); a change of how the virtual reader is loaded
 * goes there. The module is found next to the build root
 * (../tokenkit-pkcs11.so from the test program) or at $TK_P11_MODULE. */
#ifndef P11_VCARD_FIXTURE_H
#define P11_VCARD_FIXTURE_H

#include <dlfcn.h>
#include <limits.h>
#include <sys/stat.h>
#include <time.h>

#include <pkcs11-helper-1.0/pkcs11.h>

#include <tokenkit/mem.h>

#include "control.h"
#include "test_piv_fixture.h"

#define PVF_PIN "123456"
#define PVF_NKEYS 4

struct pvf {
	char dir[64];
	char state[PATH_MAX];
	char ctl[PATH_MAX];
	char cache[PATH_MAX];
	EVP_PKEY *pub[PVF_NKEYS]; /* 9A 9C 9D 9E, public keys read at generation */
	void *lib;
	CK_FUNCTION_LIST_3_0_PTR f;
	CK_SLOT_ID slot;
};

static struct pvf pvf;

static const uint8_t pvf_slot_ref[PVF_NKEYS] = {0x9A, 0x9C, 0x9D, 0x9E};
static const uint8_t pvf_alg[PVF_NKEYS] = {0x07, 0x11, 0x11, 0x14}; /* RSA2048 P-256 P-256 P-384 */
static const uint32_t pvf_tag[PVF_NKEYS] = {0x5FC105, 0x5FC10A, 0x5FC10B, 0x5FC101};

/* How the module reaches the card: the in-process virtual reader with the
 * provisioned state file and a control socket for faults, plus an empty
 * second reader; our own object cache; no PC/SC daemon. Short deadlines
 * keep the fault runs brief (a mute card is given up after 200 ms, an APDU
 * after 1 s). */
static __attribute__((unused)) void
pvf_env(void)
{
	char spec[3 * PATH_MAX];

	snprintf(spec, sizeof(spec), "vcard:state=%s,control=%s,bwt=200;empty", pvf.state, pvf.ctl);
	setenv("TOKENKIT_READERS", spec, 1);
	setenv("XDG_CACHE_HOME", pvf.cache, 1);
	setenv("PCSCLITE_CSOCK_NAME", "/nonexistent/tokenkit-test/pcscd.comm", 1);
	setenv("TOKENKIT_TIMEOUT_MS", "1000", 1);
	if (getenv("TOKENKIT_PLUGIN_PATH") == NULL) {
		/* the in-process reader is a plugin: <build>/plugins, next to
		 * the test programs' directory */
		char exe[PATH_MAX], dir[PATH_MAX + 16];
		ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);

		if (n > 0) {
			exe[n] = '\0';
			*strrchr(exe, '/') = '\0';
			snprintf(dir, sizeof(dir), "%s/../plugins", exe);
			setenv("TOKENKIT_PLUGIN_PATH", dir, 1);
		}
	}
}

static __attribute__((unused)) int
pvf_write_state(tk_vcard_t *vc)
{
	uint8_t *st = NULL;
	size_t st_len = 0;
	FILE *fp;
	int ok;

	if (tk_vcard_save_mem(vc, &st, &st_len) != 0)
		return -1;
	fp = fopen(pvf.state, "wb");
	ok = fp != NULL && fwrite(st, 1, st_len, fp) == st_len;
	if (fp != NULL && fclose(fp) != 0)
		ok = 0;
	tk_freezero(st, st_len);
	return ok ? 0 : -1;
}

static __attribute__((unused)) int
pvf_provision(void)
{
	struct fx *f = fx_new(false);
	char cn[64];
	int r = -1;

	if (f == NULL)
		return -1;
	f->ca = fx_soft_key("P-256");
	if (f->ca == NULL || fx_select(f) != 0 || fx_mgm_auth(f) != 0)
		goto out;
	for (int i = 0; i < PVF_NKEYS; i++) {
		uint8_t *der = NULL;
		int n;

		pvf.pub[i] = fx_generate(f, pvf_slot_ref[i], pvf_alg[i]);
		if (pvf.pub[i] == NULL)
			goto out;
		snprintf(cn, sizeof(cn), "tokenkit conformance %02x", pvf_slot_ref[i]);
		n = fx_make_cert(f, pvf.pub[i], cn, &der);
		if (n <= 0 || fx_put_cert(f, pvf_tag[i], der, (size_t)n, false) != 0) {
			OPENSSL_free(der);
			goto out;
		}
		OPENSSL_free(der);
	}
	r = pvf_write_state(f->vc);
out:
	fx_free(f);
	return r;
}

static __attribute__((unused)) int
pvf_load(void)
{
	char path[PATH_MAX + 64], exe[PATH_MAX];
	const char *env = getenv("TK_P11_MODULE");
	CK_C_GetInterface gi;
	CK_INTERFACE_PTR iface = NULL;
	CK_VERSION v3 = {3, 0};
	ssize_t n;

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
	pvf.lib = dlopen(path, RTLD_NOW | RTLD_LOCAL);
	if (pvf.lib == NULL) {
		fprintf(stderr, "dlopen %s: %s\n", path, dlerror());
		return -1;
	}
	gi = (CK_C_GetInterface)dlsym(pvf.lib, "C_GetInterface");
	if (gi == NULL || gi(NULL, &v3, &iface, 0) != CKR_OK || iface == NULL)
		return -1;
	pvf.f = iface->pFunctionList;
	return 0;
}

/* Group set-up: a provisioned card, the environment, the module. */
static __attribute__((unused)) int
pvf_setup(void **state)
{
	(void)state;
	snprintf(pvf.dir, sizeof(pvf.dir), "/tmp/tk-p11-vcard.XXXXXX");
	if (mkdtemp(pvf.dir) == NULL)
		return -1;
	snprintf(pvf.state, sizeof(pvf.state), "%s/card.state", pvf.dir);
	snprintf(pvf.ctl, sizeof(pvf.ctl), "%s/card.ctl", pvf.dir);
	snprintf(pvf.cache, sizeof(pvf.cache), "%s/cache", pvf.dir);
	if (mkdir(pvf.cache, 0700) != 0 || pvf_provision() != 0)
		return -1;
	pvf_env();
	return pvf_load();
}

static __attribute__((unused)) int
pvf_teardown(void **state)
{
	(void)state;
	for (int i = 0; i < PVF_NKEYS; i++)
		EVP_PKEY_free(pvf.pub[i]);
	if (pvf.dir[0] != '\0')
		nftw(pvf.dir, fx_rm_cb, 8, FTW_DEPTH | FTW_PHYS);
	/* (the module stays loaded: -z nodelete) */
	return 0;
}

/* Per-test teardown: whatever a failed assertion left initialised. */
static __attribute__((unused)) int
pvf_fin(void **state)
{
	(void)state;
	pvf.f->C_Finalize(NULL);
	return 0;
}

/* The virtual card's slot: the first slot with a token. */
static __attribute__((unused)) void
pvf_init_slot(void)
{
	CK_SLOT_ID slots[8];
	CK_ULONG n = 8;

	assert_int_equal(pvf.f->C_GetSlotList(CK_TRUE, slots, &n), CKR_OK);
	assert_true(n >= 1);
	pvf.slot = slots[0];
}

/* C_Initialize and the card's slot. */
static __attribute__((unused)) void
pvf_init(void)
{
	assert_int_equal(pvf.f->C_Initialize(NULL), CKR_OK);
	pvf_init_slot();
}

/* A session on the card, logged in as the user when login is true. */
static __attribute__((unused)) CK_SESSION_HANDLE
pvf_session(bool login)
{
	CK_SESSION_HANDLE h = CK_INVALID_HANDLE;
	CK_RV rv;

	assert_int_equal(
	        pvf.f->C_OpenSession(pvf.slot, CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL, &h),
	        CKR_OK);
	if (login) {
		rv = pvf.f->C_Login(h, CKU_USER, (CK_UTF8CHAR_PTR)PVF_PIN, strlen(PVF_PIN));
		assert_true(rv == CKR_OK || rv == CKR_USER_ALREADY_LOGGED_IN);
	}
	return h;
}

/* The object of this class with CKA_ID {id} (0 when there is none). */
static __attribute__((unused)) CK_OBJECT_HANDLE
pvf_find(CK_SESSION_HANDLE h, CK_OBJECT_CLASS cls, uint8_t id)
{
	CK_ATTRIBUTE t[2] = {{CKA_CLASS, &cls, sizeof(cls)}, {CKA_ID, &id, 1}};
	CK_OBJECT_HANDLE o = CK_INVALID_HANDLE;
	CK_ULONG n = 0;

	assert_int_equal(pvf.f->C_FindObjectsInit(h, t, 2), CKR_OK);
	assert_int_equal(pvf.f->C_FindObjects(h, &o, 1, &n), CKR_OK);
	assert_int_equal(pvf.f->C_FindObjectsFinal(h), CKR_OK);
	return n == 1 ? o : CK_INVALID_HANDLE;
}

/* A line for the card's control socket (a fault spec, "status"). */
static __attribute__((unused)) int
pvf_ctl(const char *cmd, char *reply, size_t cap)
{
	char buf[256];

	if (reply == NULL) {
		reply = buf;
		cap = sizeof(buf);
	}
	return tk_vc_control_send(pvf.ctl, cmd, reply, cap);
}

/* APDUs the card has processed (control "status"), or -1. */
static __attribute__((unused)) long long
pvf_card_apdus(void)
{
	char reply[256];
	const char *p;

	if (pvf_ctl("status", reply, sizeof(reply)) != 0)
		return -1;
	p = strstr(reply, "card_apdus=");
	return p != NULL ? strtoll(p + strlen("card_apdus="), NULL, 10) : -1;
}

#endif
