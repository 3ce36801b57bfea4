/* The library's own OpenSSL context (core/ossl.c): SHA-256 from it, and a
 * forked child that starts a context of its own instead of the parent's,
 * whose locks a thread of the parent may have held at fork(). */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include <openssl/evp.h>

#include <tokenkit/err.h>

#include "ossl.h"

/* FIPS 180-2, appendix B.1: SHA-256("abc") */
static const uint8_t abc_digest[32] = {0xba, 0x78, 0x16, 0xbf, 0x8f, 0x01, 0xcf, 0xea,
                                       0x41, 0x41, 0x40, 0xde, 0x5d, 0xae, 0x22, 0x23,
                                       0xb0, 0x03, 0x61, 0xa3, 0x96, 0x17, 0x7a, 0x9c,
                                       0xb4, 0x10, 0xff, 0x61, 0xf2, 0x00, 0x15, 0xad};

static void
test_sha256(void **state)
{
	uint8_t out[32];

	(void)state;
	assert_int_equal(tk_ossl_sha256("abc", 3, out), TK_OK);
	assert_memory_equal(out, abc_digest, 32);
	/* the empty message: FIPS 180-2 gives e3b0c442...b855 */
	assert_int_equal(tk_ossl_sha256("", 0, out), TK_OK);
	assert_int_equal(out[0], 0xe3);
	assert_int_equal(out[31], 0x55);
}

/* In the child: a fresh context (not the parent's), usable, and the same
 * one on every later call. Exit code bits name what failed. */
static int
child_checks(const OSSL_LIB_CTX *parent_ctx)
{
	static const int sigs[] = {SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGABRT};
	OSSL_LIB_CTX *c1, *c2;
	EVP_MD *md;
	uint8_t out[32];
	int code = 0;

	/* cmocka's handlers would run the rest of the suite in the child */
	for (size_t i = 0; i < sizeof(sigs) / sizeof(sigs[0]); i++)
		signal(sigs[i], SIG_DFL);
	c1 = tk_ossl_libctx();
	c2 = tk_ossl_libctx();
	if (c1 == NULL || c1 == parent_ctx)
		code |= 1;
	if (c2 != c1)
		code |= 2;
	if (tk_ossl_sha256("abc", 3, out) != TK_OK || memcmp(out, abc_digest, 32) != 0)
		code |= 4;
	md = EVP_MD_fetch(c1, "SHA384", NULL);
	if (md == NULL || EVP_MD_get0_provider(md) == NULL)
		code |= 8;
	EVP_MD_free(md);
	return code;
}

static void
test_fork_fresh_context(void **state)
{
	OSSL_LIB_CTX *mine = tk_ossl_libctx();
	uint8_t out[32];
	int status = 0;
	pid_t pid;

	(void)state;
	assert_non_null(mine);
	assert_int_equal(tk_ossl_sha256("abc", 3, out), TK_OK);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0)
		_exit(child_checks(mine));
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
	/* the parent keeps its own */
	assert_ptr_equal(tk_ossl_libctx(), mine);
	assert_int_equal(tk_ossl_sha256("abc", 3, out), TK_OK);
	assert_memory_equal(out, abc_digest, 32);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_sha256),
	        cmocka_unit_test(test_fork_fresh_context),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
