/* Secret memory (core/secmem.c): zeroed, usable, locked in RAM where the
 * limit allows, out of core dumps, zero in a fork child, wiped and gone
 * after free. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include <tokenkit/err.h>

#include "secmem.h"

#if defined(__SANITIZE_ADDRESS__)
#define SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define SANITIZED 1
#endif
#endif
#ifndef SANITIZED
#define SANITIZED 0
#endif

/* The flags of the mapping that holds p, from /proc/self/smaps ("VmFlags:
 * ... lo ... dd ..."): lo locked, dd not dumped, wf wiped on fork. */
static int
vm_flags(const void *p, char *out, size_t cap)
{
	FILE *f = fopen("/proc/self/smaps", "r");
	char line[512];
	bool inside = false;
	uintptr_t a = (uintptr_t)p;

	out[0] = '\0';
	if (f == NULL)
		return -1;
	while (fgets(line, sizeof(line), f) != NULL) {
		unsigned long lo, hi;

		if (sscanf(line, "%lx-%lx ", &lo, &hi) == 2 && strchr(line, ' ') != NULL &&
		    line[strspn(line, "0123456789abcdef")] == '-') {
			inside = a >= lo && a < hi;
			continue;
		}
		if (inside && strncmp(line, "VmFlags:", 8) == 0) {
			size_t n = strlen(line + 8);

			n = n < cap - 1 ? n : cap - 1;
			memcpy(out, line + 8, n);
			out[n] = '\0';
			fclose(f);
			return 0;
		}
	}
	fclose(f);
	return -1;
}

static bool
has_flag(const char *flags, const char *flag)
{
	char pat[8];

	snprintf(pat, sizeof(pat), " %s", flag);
	return strstr(flags, pat) != NULL;
}

static void
test_alloc_free(void **state)
{
	uint8_t *p = NULL;
	void *v = NULL;
	char flags[512];
	struct rlimit rl;

	(void)state;
	assert_int_equal(tk_secmem_alloc(0, &v), TK_ERR_INVALID_ARG);
	assert_null(v);
	assert_int_equal(tk_secmem_alloc(1u << 20, &v), TK_ERR_INVALID_ARG);
	assert_int_equal(tk_secmem_alloc(64, NULL), TK_ERR_INVALID_ARG);
	assert_int_equal(tk_secmem_alloc(64, &v), TK_OK);
	p = v;
	for (size_t i = 0; i < 64; i++)
		assert_int_equal(p[i], 0);
	memset(p, 0xA5, 64);
	assert_int_equal(vm_flags(p, flags, sizeof(flags)), 0);
	assert_true(has_flag(flags, "dd"));
	assert_true(has_flag(flags, "wf"));
	/* (ASan's mlock interceptor locks nothing) */
	if (!SANITIZED && getrlimit(RLIMIT_MEMLOCK, &rl) == 0 && rl.rlim_cur >= 64 * 1024)
		assert_true(has_flag(flags, "lo"));
	tk_secmem_free(&v);
	assert_null(v);
	tk_secmem_free(&v); /* NULL is fine */
	tk_secmem_free(NULL);
}

static void
test_dup(void **state)
{
	static const uint8_t pin[] = "123456";
	void *v = NULL;

	(void)state;
	assert_int_equal(tk_secmem_dup(NULL, 6, &v), TK_ERR_INVALID_ARG);
	assert_int_equal(tk_secmem_dup(pin, 6, &v), TK_OK);
	assert_memory_equal(v, pin, 6);
	tk_secmem_free(&v);
}

/* A fork child (where the PKCS#11 module forgets its parent's state
 * without freeing it) holds zeros, not the secret. */
static void
test_fork_child_sees_zeros(void **state)
{
	uint8_t *p;
	void *v = NULL;
	pid_t pid;
	int st = 0;

	(void)state;
	assert_int_equal(tk_secmem_alloc(32, &v), TK_OK);
	p = v;
	memset(p, 0x5C, 32);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		uint8_t acc = 0;

		for (size_t i = 0; i < 32; i++)
			acc |= p[i];
		_exit(acc == 0 ? 0 : 1);
	}
	assert_int_equal(waitpid(pid, &st, 0), pid);
	assert_true(WIFEXITED(st));
	assert_int_equal(WEXITSTATUS(st), 0);
	assert_int_equal(p[0], 0x5C); /* the parent keeps it */
	tk_secmem_free(&v);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_alloc_free),
	        cmocka_unit_test(test_dup),
	        cmocka_unit_test(test_fork_child_sees_zeros),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
