/* tokenkit-pkcs11: error conversion, string padding, small DER and hash helpers. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/evp.h>

#include <tokenkit/log.h>
#include <tokenkit/mem.h>

#include "env.h"
#include "ossl.h"
#include "p11.h"

/* The one place a tk_err becomes a CK_RV. */
CK_RV
tk_err_to_ckr(int err)
{
	switch (err) {
	case TK_OK:
		return CKR_OK;
	case TK_ERR_NO_MEMORY:
		return CKR_HOST_MEMORY;
	case TK_ERR_INVALID_ARG:
		return CKR_ARGUMENTS_BAD;
	case TK_ERR_BUFFER_TOO_SMALL:
		return CKR_BUFFER_TOO_SMALL;
	case TK_ERR_NOT_SUPPORTED:
	case TK_ERR_INS_NOT_SUPPORTED:
	case TK_ERR_CLA_NOT_SUPPORTED:
	case TK_ERR_FUNC_NOT_SUPPORTED:
		return CKR_FUNCTION_NOT_SUPPORTED;
	case TK_ERR_CANCELLED:
		return CKR_FUNCTION_CANCELED;
	case TK_ERR_PIN_INCORRECT:
		return CKR_PIN_INCORRECT;
	case TK_ERR_PIN_LOCKED:
	case TK_ERR_AUTH_METHOD_BLOCKED:
		return CKR_PIN_LOCKED;
	case TK_ERR_SECURITY_STATUS:
	case TK_ERR_LOGIN_REQUIRED:
		return CKR_USER_NOT_LOGGED_IN;
	case TK_ERR_ATTR_TYPE_INVALID:
		return CKR_ATTRIBUTE_TYPE_INVALID;
	case TK_ERR_ATTR_VALUE_INVALID:
		return CKR_ATTRIBUTE_VALUE_INVALID;
	case TK_ERR_ATTR_READ_ONLY:
		return CKR_ATTRIBUTE_READ_ONLY;
	case TK_ERR_TEMPLATE_INCOMPLETE:
		return CKR_TEMPLATE_INCOMPLETE;
	case TK_ERR_TEMPLATE_INCONSISTENT:
		return CKR_TEMPLATE_INCONSISTENT;
	case TK_ERR_ACTION_PROHIBITED:
		return CKR_ACTION_PROHIBITED;
	case TK_ERR_DISK_FULL:
		return CKR_DEVICE_MEMORY;
	case TK_ERR_CARD_REMOVED:
	case TK_ERR_NO_READER:
		return CKR_DEVICE_REMOVED;
	case TK_ERR_NO_CARD:
		return CKR_TOKEN_NOT_PRESENT;
	case TK_ERR_READER_GONE: /* reader or PC/SC service away: the card may come back with it */
	case TK_ERR_TIMEOUT:
	case TK_ERR_COMM:
	case TK_ERR_UNRESPONSIVE:
	case TK_ERR_PROTOCOL:
	case TK_ERR_QUARANTINED:
	case TK_ERR_NO_SERVICE:
	case TK_ERR_SHARING:
	case TK_ERR_IO:
	case TK_ERR_CARD_RESET:
	case TK_ERR_TRUNCATED:
	case TK_ERR_MALFORMED:
	case TK_ERR_SW_UNKNOWN:
	case TK_ERR_STORE_CHANGED: /* a software token's store replaced under a write */
	case TK_ERR_CONFLICT:
	case TK_ERR_UNSAFE:
		return CKR_DEVICE_ERROR;
	case TK_ERR_MEMORY_FAILURE:
	case TK_ERR_NO_SPACE:
		return CKR_DEVICE_MEMORY;
	case TK_ERR_WRONG_DATA:
		return CKR_DATA_INVALID;
	case TK_ERR_WRONG_LENGTH:
	case TK_ERR_TOO_LONG:
		return CKR_DATA_LEN_RANGE;
	case TK_ERR_FILE_NOT_FOUND:
	case TK_ERR_REF_NOT_FOUND:
	case TK_ERR_NOT_FOUND:
		return CKR_KEY_HANDLE_INVALID;
	case TK_ERR_CONDITIONS:
	case TK_ERR_CRYPTO:
	case TK_ERR_STATE:
	case TK_ERR_WRONG_P1P2:
		return CKR_FUNCTION_FAILED;
	default:
		return CKR_GENERAL_ERROR;
	}
}

/* A number of milliseconds from the environment: dflt when unset, empty,
 * not a number or out of [min, max] (with a warning). */
static int
env_ms(const char *name, int min, int max, int dflt)
{
	const char *v = tk_env(name);
	char *end = NULL;
	long n;

	if (v == NULL || *v == '\0')
		return dflt;
	errno = 0;
	n = strtol(v, &end, 10);
	if (errno != 0 || end == v || *end != '\0' || n < min || n > max) {
		tk_log_warn("pkcs11: %s=%s ignored (%d..%d ms)", name, v, min, max);
		return dflt;
	}
	return (int)n;
}

/* $TOKENKIT_TIMEOUT_MS: the deadline of one APDU exchange (and of one
 * recovery step) in milliseconds, P11_TIMEOUT_MIN_MS..P11_TIMEOUT_MAX_MS;
 * 0 (the slot manager's default, TK_CARD_DEFAULT_TIMEOUT_MS) when unset
 * or not a number in range. */
int
tk_p11_timeout_from_env(void)
{
	return env_ms("TOKENKIT_TIMEOUT_MS", P11_TIMEOUT_MIN_MS, P11_TIMEOUT_MAX_MS, 0);
}

/* $TOKENKIT_P11_GRACE_MS: how long a token whose card left waits for the
 * same card (0..P11_LOST_GRACE_MAX_MS; 0: never, sessions end at removal);
 * P11_LOST_GRACE_MS when unset or invalid. */
int
tk_p11_grace_from_env(void)
{
	return env_ms("TOKENKIT_P11_GRACE_MS", 0, P11_LOST_GRACE_MAX_MS, P11_LOST_GRACE_MS);
}

/* $TOKENKIT_P11_PIN_CACHE=1: keep the user PIN while logged in and verify
 * it again when the card lost the login (README: "Login state"). Off
 * unless the user turns it on: PINs are never kept by default. */
bool
tk_p11_pin_cache_from_env(void)
{
	const char *v = tk_env("TOKENKIT_P11_PIN_CACHE");

	if (v == NULL || *v == '\0' || strcmp(v, "0") == 0)
		return false;
	if (strcmp(v, "1") == 0) {
		tk_log_info("pkcs11: TOKENKIT_P11_PIN_CACHE=1: the user PIN is kept (locked "
		            "memory) while logged in");
		return true;
	}
	tk_log_warn("pkcs11: TOKENKIT_P11_PIN_CACHE=%s ignored (0 or 1)", v);
	return false;
}

/* Blank-padded, not NUL-terminated, as CK_*_INFO fields are. */
void
tk_p11_pad(CK_UTF8CHAR *dst, size_t cap, const char *src)
{
	size_t n = src != NULL ? strlen(src) : 0;

	if (n > cap)
		n = cap;
	/* never cut a UTF-8 sequence in half */
	while (n > 0 && n < strlen(src) && ((unsigned char)src[n] & 0xC0) == 0x80)
		n--;
	memset(dst, ' ', cap);
	if (n > 0)
		memcpy(dst, src, n);
}

/* The usual two-call convention for output buffers. */
CK_RV
tk_p11_copy_out(const void *src, size_t len, CK_BYTE_PTR out, CK_ULONG_PTR out_len)
{
	if (out_len == NULL)
		return CKR_ARGUMENTS_BAD;
	if (out == NULL) {
		*out_len = len;
		return CKR_OK;
	}
	if (*out_len < len) {
		*out_len = len;
		return CKR_BUFFER_TOO_SMALL;
	}
	if (len > 0)
		memcpy(out, src, len);
	*out_len = len;
	return CKR_OK;
}

/* DER OCTET STRING around in (definite length). */
int
tk_p11_der_octet_string(const uint8_t *in, size_t in_len, uint8_t **out, size_t *out_len)
{
	uint8_t hdr[6];
	size_t h = 0;
	uint8_t *p;

	*out = NULL;
	*out_len = 0;
	hdr[h++] = 0x04;
	if (in_len < 0x80) {
		hdr[h++] = (uint8_t)in_len;
	} else if (in_len <= 0xFF) {
		hdr[h++] = 0x81;
		hdr[h++] = (uint8_t)in_len;
	} else if (in_len <= 0xFFFF) {
		hdr[h++] = 0x82;
		hdr[h++] = (uint8_t)(in_len >> 8);
		hdr[h++] = (uint8_t)in_len;
	} else {
		return TK_ERR_TOO_LONG;
	}
	p = malloc(h + in_len);
	if (p == NULL)
		return TK_ERR_NO_MEMORY;
	memcpy(p, hdr, h);
	memcpy(p + h, in, in_len);
	*out = p;
	*out_len = h + in_len;
	return TK_OK;
}

/* If in is exactly one DER OCTET STRING, its contents; else NULL. */
const uint8_t *
tk_p11_der_unwrap_octet_string(const uint8_t *in, size_t in_len, size_t *out_len)
{
	size_t len, h;

	*out_len = 0;
	if (in == NULL || in_len < 2 || in[0] != 0x04)
		return NULL;
	if (in[1] < 0x80) {
		len = in[1];
		h = 2;
	} else if (in[1] == 0x81 && in_len >= 3) {
		len = in[2];
		h = 3;
	} else if (in[1] == 0x82 && in_len >= 4) {
		len = ((size_t)in[2] << 8) | in[3];
		h = 4;
	} else {
		return NULL;
	}
	if (h + len != in_len)
		return NULL;
	*out_len = len;
	return in + h;
}

/* The library's own OpenSSL library context (core/ossl.h: applications may
 * make an engine the default for everything, and our parsing, hashing and
 * verification must not go through it), and the digests fetched from it
 * once. */
static pthread_once_t crypto_once = PTHREAD_ONCE_INIT;
static OSSL_LIB_CTX *libctx;
#define NMDS 9
static EVP_MD *mds[NMDS];
static const char *const md_names[NMDS] = {"SHA1",     "SHA224",   "SHA256",   "SHA384",  "SHA512",
                                           "SHA3-224", "SHA3-256", "SHA3-384", "SHA3-512"};

static void
crypto_init(void)
{
	libctx = tk_ossl_libctx();
	for (size_t i = 0; libctx != NULL && i < NMDS; i++)
		mds[i] = EVP_MD_fetch(libctx, md_names[i], NULL);
}

/* In a forked child (module.c's atfork_child): the parent's context and
 * digests are forgotten with it (core/ossl.c), fetched again from the
 * child's own at first use. */
void
tk_p11_crypto_forget(void)
{
	static const pthread_once_t fresh = PTHREAD_ONCE_INIT;

	crypto_once = fresh;
	libctx = NULL;
	for (size_t i = 0; i < NMDS; i++)
		mds[i] = NULL;
}

OSSL_LIB_CTX *
tk_p11_libctx(void)
{
	pthread_once(&crypto_once, crypto_init);
	return libctx;
}

static const EVP_MD *
md_at(size_t i)
{
	static const EVP_MD *(*const fallback[NMDS])(void) = {
	        EVP_sha1,     EVP_sha224,   EVP_sha256,   EVP_sha384,  EVP_sha512,
	        EVP_sha3_224, EVP_sha3_256, EVP_sha3_384, EVP_sha3_512};

	pthread_once(&crypto_once, crypto_init);
	return mds[i] != NULL ? mds[i] : fallback[i]();
}

const EVP_MD *
tk_p11_md_from_mech(CK_MECHANISM_TYPE hash_mech)
{
	switch (hash_mech) {
	case CKM_SHA_1:
		return md_at(0);
	case CKM_SHA224:
		return md_at(1);
	case CKM_SHA256:
		return md_at(2);
	case CKM_SHA384:
		return md_at(3);
	case CKM_SHA512:
		return md_at(4);
	default:
		return NULL;
	}
}

/* The hashes C_DigestInit offers: those above plus SHA-3 (which the
 * signature mechanisms do not use). */
const EVP_MD *
tk_p11_md_for_digest(CK_MECHANISM_TYPE mech)
{
	switch (mech) {
	case CKM_SHA3_224:
		return md_at(5);
	case CKM_SHA3_256:
		return md_at(6);
	case CKM_SHA3_384:
		return md_at(7);
	case CKM_SHA3_512:
		return md_at(8);
	default:
		return tk_p11_md_from_mech(mech);
	}
}

const EVP_MD *
tk_p11_md_from_mgf(CK_RSA_PKCS_MGF_TYPE mgf)
{
	switch (mgf) {
	case CKG_MGF1_SHA1:
		return md_at(0);
	case CKG_MGF1_SHA224:
		return md_at(1);
	case CKG_MGF1_SHA256:
		return md_at(2);
	case CKG_MGF1_SHA384:
		return md_at(3);
	case CKG_MGF1_SHA512:
		return md_at(4);
	default:
		return NULL;
	}
}

/* MGF1 (RFC 8017 B.2.1): mask = H(seed||C0) || H(seed||C1) || ... */
int
tk_p11_mgf1(const EVP_MD *md, const uint8_t *seed, size_t seed_len, uint8_t *mask, size_t mask_len)
{
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	uint8_t h[EVP_MAX_MD_SIZE];
	size_t hlen = (size_t)EVP_MD_get_size(md);
	size_t done = 0;
	uint32_t counter = 0;
	int r = TK_ERR_CRYPTO;

	if (ctx == NULL)
		return TK_ERR_NO_MEMORY;
	while (done < mask_len) {
		uint8_t c[4] = {(uint8_t)(counter >> 24), (uint8_t)(counter >> 16),
		                (uint8_t)(counter >> 8), (uint8_t)counter};
		unsigned int outl = 0;
		size_t n;

		if (EVP_DigestInit_ex(ctx, md, NULL) != 1 ||
		    EVP_DigestUpdate(ctx, seed, seed_len) != 1 ||
		    EVP_DigestUpdate(ctx, c, sizeof(c)) != 1 ||
		    EVP_DigestFinal_ex(ctx, h, &outl) != 1)
			goto out;
		n = mask_len - done < hlen ? mask_len - done : hlen;
		memcpy(mask + done, h, n);
		done += n;
		counter++;
	}
	r = TK_OK;
out:
	tk_wipe(h, sizeof(h));
	EVP_MD_CTX_free(ctx);
	return r;
}
