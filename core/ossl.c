/* tokenkit: the library's OpenSSL library context (see ossl.h). */
#include <pthread.h>

#include <openssl/crypto.h>
#include <openssl/provider.h>

#include <tokenkit/err.h>
#include <tokenkit/log.h>

#include "ossl.h"

static pthread_once_t once = PTHREAD_ONCE_INIT;
static pthread_once_t legacy_once = PTHREAD_ONCE_INIT;
static OSSL_LIB_CTX *ctx;
static OSSL_PROVIDER *legacy;

static void
init(void)
{
	/* loaded by name: a context that loads a provider explicitly no
	 * longer loads "default" by itself */
	if ((ctx = OSSL_LIB_CTX_new()) != NULL && OSSL_PROVIDER_load(ctx, "default") == NULL) {
		tk_log_warn("openssl: no default provider in a context of our own");
		OSSL_LIB_CTX_free(ctx);
		ctx = NULL;
	}
}

OSSL_LIB_CTX *
tk_ossl_libctx(void)
{
	pthread_once(&once, init);
	return ctx;
}

static void
load_legacy(void)
{
	if (tk_ossl_libctx() != NULL && (legacy = OSSL_PROVIDER_load(ctx, "legacy")) == NULL)
		tk_log_info("openssl: no legacy provider: old PKCS#12 ciphers (RC2) unavailable");
}

int
tk_ossl_legacy(void)
{
	pthread_once(&legacy_once, load_legacy);
	return legacy != NULL ? TK_OK : TK_ERR_NOT_SUPPORTED;
}
