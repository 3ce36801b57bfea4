/* tokenkit: the library's OpenSSL library context (see ossl.h). */
#include <pthread.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/provider.h>

#include <tokenkit/err.h>
#include <tokenkit/log.h>

#include "ossl.h"

static pthread_once_t once = PTHREAD_ONCE_INIT;
static pthread_once_t legacy_once = PTHREAD_ONCE_INIT;
static OSSL_LIB_CTX *ctx;
static OSSL_PROVIDER *legacy;
static EVP_MD *sha256; /* fetched from ctx once */

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
	if (ctx != NULL)
		sha256 = EVP_MD_fetch(ctx, "SHA256", NULL);
}

/* A forked child starts a context of its own at its first use. OpenSSL 3.0
 * takes no locks around fork(): a thread of the parent inside OpenSSL with
 * the context's lock held (a fetch filling the method cache, the random
 * generator) leaves that lock held for good in the child, whose first use
 * of the context then waits forever (seen: fault row 12, the child's
 * C_Initialize and token threads in a read-write lock wait). The parent's
 * context is forgotten, not freed: its locks may be held. */
static void
forget_in_child(void)
{
	static const pthread_once_t fresh = PTHREAD_ONCE_INIT;

	once = fresh;
	legacy_once = fresh;
	ctx = NULL;
	legacy = NULL;
	sha256 = NULL;
}

__attribute__((constructor)) static void
register_fork_handler(void)
{
	pthread_atfork(NULL, NULL, forget_in_child);
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

int
tk_ossl_sha256(const void *p, size_t n, uint8_t out[32])
{
	unsigned int dl = 0;

	pthread_once(&once, init);
	if (sha256 == NULL || EVP_Digest(p, n, out, &dl, sha256, NULL) != 1 || dl != 32)
		return TK_ERR_CRYPTO;
	return TK_OK;
}
