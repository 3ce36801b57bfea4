/* tk-setuid-probe: what a set-uid (or set-gid) program that uses tokenkit
 * does, for tests/integration/test_hostile_env.sh, which installs a copy
 * 4755 root (or 2755) and runs it as another user with an environment that
 * points everywhere that user controls.
 *
 *   tk-setuid-probe api
 *       a slot manager with default options; on every card: open its token
 *       (default options: the disk cache) and force a recovery (the
 *       recovery log)
 *   tk-setuid-probe module PATH
 *       dlopen the PKCS#11 module, C_Initialize, list the slots and their
 *       tokens (opened in the background: the disk cache), C_Finalize
 *
 * Prints one line per fact ("secure 1", "slots 1", "token 0 ok", "reset 0
 * TK_OK", "p11 slots 1"); the script judges the file system, the sockets
 * and the output. Exit status 0 unless the arguments were wrong. */
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/auxv.h>
#include <unistd.h>

#include <pkcs11-helper-1.0/pkcs11.h>

#include <tokenkit/card.h>
#include <tokenkit/err.h>
#include <tokenkit/slot.h>
#include <tokenkit/token.h>

/* Under ASan: a set-gid process is not dumpable, so LeakSanitizer can
 * neither trace it nor read ASAN_OPTIONS from /proc/self/environ; leaks are
 * checked everywhere else. (An unused function in other builds.) */
const char *__lsan_default_options(void);
const char *
__lsan_default_options(void)
{
	return "detect_leaks=0";
}

static void
run_api(void)
{
	tk_slotmgr_t *m = NULL;
	tk_slot_info_t *infos = NULL;
	size_t n = 0;
	int r;

	r = tk_slotmgr_new(NULL, &m);
	printf("slotmgr %s\n", tk_errname(r));
	if (r != TK_OK)
		return;
	printf("ready %s\n", tk_errname(tk_slotmgr_wait_ready(m, 5000)));
	if (tk_slotmgr_list(m, &infos, &n) != TK_OK)
		n = 0;
	printf("slots %zu\n", n);
	for (size_t i = 0; i < n; i++) {
		tk_card_t *card = NULL;
		tk_token_t *t = NULL;
		tk_token_opts_t o;
		tk_recovery_t rec;

		if (infos[i].card_seq == 0)
			continue;
		r = tk_slotmgr_card(m, infos[i].slot_id, &card);
		if (r == TK_OK) {
			tk_token_opts_init(&o);
			r = tk_token_open(card, &o, &t);
		}
		printf("token %u %s\n", infos[i].slot_id, tk_errname(r));
		tk_token_free(&t);
		tk_card_unref(&card);
		r = tk_slotmgr_reset(m, infos[i].slot_id, false, 5000, &rec);
		printf("reset %u %s\n", infos[i].slot_id, tk_errname(r));
	}
	free(infos);
	tk_slotmgr_free(&m);
}

static void
run_module(const char *path)
{
	CK_C_GetFunctionList get;
	CK_FUNCTION_LIST_PTR f = NULL;
	CK_SLOT_ID slots[16];
	CK_ULONG n = 16;
	void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
	CK_RV rv;

	if (h == NULL) {
		printf("dlopen failed: %s\n", dlerror());
		return;
	}
	get = (CK_C_GetFunctionList)dlsym(h, "C_GetFunctionList");
	if (get == NULL || get(&f) != CKR_OK) {
		printf("no C_GetFunctionList\n");
		return;
	}
	rv = f->C_Initialize(NULL);
	printf("p11 init 0x%lx\n", (unsigned long)rv);
	if (rv != CKR_OK)
		return;
	rv = f->C_GetSlotList(CK_TRUE, slots, &n);
	printf("p11 slots %lu (0x%lx)\n", rv == CKR_OK ? (unsigned long)n : 0UL, (unsigned long)rv);
	for (CK_ULONG i = 0; rv == CKR_OK && i < n; i++) {
		CK_TOKEN_INFO ti;

		printf("p11 token %lu 0x%lx\n", (unsigned long)slots[i],
		       (unsigned long)f->C_GetTokenInfo(slots[i], &ti));
	}
	printf("p11 finalize 0x%lx\n", (unsigned long)f->C_Finalize(NULL));
}

int
main(int argc, char **argv)
{
	printf("secure %lu uid %u euid %u gid %u egid %u\n", getauxval(AT_SECURE),
	       (unsigned)getuid(), (unsigned)geteuid(), (unsigned)getgid(), (unsigned)getegid());
	fflush(stdout);
	if (argc == 2 && strcmp(argv[1], "api") == 0)
		run_api();
	else if (argc == 3 && strcmp(argv[1], "module") == 0)
		run_module(argv[2]);
	else {
		fprintf(stderr, "usage: tk-setuid-probe api | module PATH\n");
		return 2;
	}
	printf("done\n");
	return 0;
}
