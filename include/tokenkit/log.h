/* tokenkit: logging with levels and a pluggable sink.
 *
 * The default sink writes to stderr. The level comes from TOKENKIT_LOG
 * (error, warn, info, debug, trace) at first use, or tk_log_set_level().
 * APDU dumps go through tk_log_apdu() and tk_log_apdu_response(), at
 * TK_LOG_TRACE everywhere in tokenkit: they never show the data of
 * commands that carry secrets (PINs, keys) nor of responses that do
 * (decrypted plaintext, ECDH secrets). The default sink escapes control
 * characters and invalid UTF-8 (tk_text_escape), one message per line. */
#ifndef TOKENKIT_LOG_H
#define TOKENKIT_LOG_H

#include <stdarg.h>

#include <tokenkit/common.h>

enum tk_log_level {
	TK_LOG_NONE = 0,
	TK_LOG_ERROR = 1,
	TK_LOG_WARN = 2,
	TK_LOG_INFO = 3,
	TK_LOG_DEBUG = 4,
	TK_LOG_TRACE = 5,
};

typedef void (*tk_log_sink_fn)(void *ctx, int level, const char *msg);

TK_EXPORT void tk_log_set_level(int level);
TK_EXPORT int tk_log_get_level(void);
/* Parse "debug" etc. Returns the level or -1. */
TK_EXPORT int tk_log_level_parse(const char *s);
/* Replace the sink (NULL restores stderr). Thread-safe. */
TK_EXPORT void tk_log_set_sink(tk_log_sink_fn fn, void *ctx);
TK_EXPORT void tk_log(int level, const char *fmt, ...) TK_PRINTF(2, 3);
TK_EXPORT void tk_logv(int level, const char *fmt, va_list ap) TK_PRINTF(2, 0);
TK_EXPORT bool tk_log_enabled(int level);

/* Dump a command APDU (is_command) at level, after prefix. Commands that
 * carry secrets (tk_apdu_is_sensitive) have their data replaced by
 * "<redacted N bytes>". A response passed here (is_command false) shows only
 * its status word: without its command nobody can tell whether it holds a
 * secret; use tk_log_apdu_response. */
TK_EXPORT void tk_log_apdu(int level, const char *prefix, const uint8_t *apdu, size_t len,
                           bool is_command);
/* Dump a response APDU at level, after prefix; with secret (what
 * tk_apdu_response_is_sensitive said of its command) the data is replaced
 * by "<redacted N bytes>" and only the status word is shown. */
TK_EXPORT void tk_log_apdu_response(int level, const char *prefix, const uint8_t *resp, size_t len,
                                    bool secret);
/* True when the command APDU's data field carries a secret: PINs, PUKs,
 * imported keys, management keys, OpenPGP key material. */
TK_EXPORT bool tk_apdu_is_sensitive(const uint8_t *apdu, size_t len);
/* True when the response to the command APDU cmd carries a secret: the
 * answers to GENERAL AUTHENTICATE (decryption, ECDH; signatures too, which
 * are the same command), PERFORM SECURITY OPERATION, INTERNAL
 * AUTHENTICATE, and GET DATA of PIN-protected objects (PIV biometrics,
 * printed information and pairing code; OpenPGP private-use objects). A
 * GET RESPONSE continues the response before it: prev is what this
 * function said for the command that started it (false for the first). A
 * missing or short command counts as secret. */
TK_EXPORT bool tk_apdu_response_is_sensitive(const uint8_t *cmd, size_t len, bool prev);

#define tk_log_error(...) tk_log(TK_LOG_ERROR, __VA_ARGS__)
#define tk_log_warn(...) tk_log(TK_LOG_WARN, __VA_ARGS__)
#define tk_log_info(...) tk_log(TK_LOG_INFO, __VA_ARGS__)
#define tk_log_debug(...) tk_log(TK_LOG_DEBUG, __VA_ARGS__)
#define tk_log_trace(...) tk_log(TK_LOG_TRACE, __VA_ARGS__)

#endif
