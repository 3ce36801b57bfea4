/* tokenkit-pkcs11: the exported C_* functions.
 *
 * Each C_* symbol (and each entry of the function lists) calls its
 * implementation, tk_p11_C_* in the file of its concept, and lets through
 * only the return values PKCS#11 3.0 allows that function (rv.h). Anything
 * else — an internal conversion that does not fit the function, such as
 * CKR_BUFFER_TOO_SMALL out of C_Login when the card answered garbage —
 * becomes CKR_FUNCTION_FAILED, which every function may return, and is
 * logged (debug) so that the conversion at fault can be found and fixed
 * where it happens. One place for every function, so no return path of an
 * implementation can escape the rule. */
#include <tokenkit/log.h>

#include "p11.h"
#include "remote.h"

static CK_RV
allowed_or_failed(const char *fn, const CK_RV *allowed, size_t n, CK_RV rv)
{
	for (size_t i = 0; i < n; i++)
		if (allowed[i] == rv)
			return rv;
	tk_log_debug("pkcs11: %s: 0x%lx is not a %s return value; answering CKR_FUNCTION_FAILED",
	             fn, (unsigned long)rv, fn);
	return CKR_FUNCTION_FAILED;
}

/* One wrapper per function of rv.h's list: the table of its allowed codes
 * and the exported function that calls the implementation through
 * allowed_or_failed(). (A definition generator: 92 hand-written copies of
 * the same three lines would be the alternative.) */
#define P11_WRAP(name, params, args)                                                               \
	static const CK_RV allowed_##name[] = {P11_RV_##name};                                     \
	P11_EXPORT CK_RV name params                                                               \
	{                                                                                          \
		return allowed_or_failed(                                                          \
		        #name, allowed_##name, sizeof(allowed_##name) / sizeof(allowed_##name[0]), \
		        tk_p11_remote_on() ? tk_p11r_##name args : tk_p11_##name args);            \
	}

P11_RV_FUNCTIONS(P11_WRAP)
