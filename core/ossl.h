/* tokenkit: the library's own OpenSSL library context (private).
 *
 * Applications may make an engine the default for everything (`openssl
 * s_client -engine pkcs11` does, with libp11 — which then calls the
 * PKCS#11 module, which calls us): our parsing, hashing, key generation
 * and private-key operations must not go through it, and must not call
 * back into the application that called us. Everything tokenkit computes
 * with OpenSSL therefore fetches from this context, which has OpenSSL's
 * "default" provider only (and its "legacy" one once asked for: the
 * ciphers of old PKCS#12 files). Created once, kept for the life of the
 * process. */
#ifndef TK_OSSL_H
#define TK_OSSL_H

#include <stddef.h>
#include <stdint.h>

#include <openssl/types.h>

/* The context (NULL only when OpenSSL could not make one: callers then
 * get OpenSSL's default context). */
OSSL_LIB_CTX *tk_ossl_libctx(void);
/* Load the legacy provider (RC2, RC4, DES ...) into it. TK_OK, or
 * TK_ERR_NOT_SUPPORTED when OpenSSL has none. */
int tk_ossl_legacy(void);
/* SHA-256 of p[0..n) from the context: TK_OK or TK_ERR_CRYPTO. Never
 * OpenSSL's default context, whose locks the application's threads hold
 * (a forked child inherits them held; see ossl.c). */
int tk_ossl_sha256(const void *p, size_t n, uint8_t out[32]);

#endif
