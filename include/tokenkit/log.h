/* tokenkit: logging with levels and a pluggable sink.
 *
 * The default sink writes to stderr. The level comes from TOKENKIT_LOG
 * (error, warn, info, debug, trace) at first use, or tk_log_set_level().
 * APDU dumps go through tk_log_apdu(), which never shows the data of
 * VERIFY, CHANGE REFERENCE DATA, RESET RETRY COUNTER or key-import
 * commands. */
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

/* Dump an APDU (command when is_command, else response) at level, after
 * prefix. Commands that carry secrets have their data replaced by
 * "<redacted N bytes>". */
TK_EXPORT void tk_log_apdu(int level, const char *prefix, const uint8_t *apdu, size_t len,
                           bool is_command);
/* True when the command APDU's data field carries a secret. */
TK_EXPORT bool tk_apdu_is_sensitive(const uint8_t *apdu, size_t len);

#define tk_log_error(...) tk_log(TK_LOG_ERROR, __VA_ARGS__)
#define tk_log_warn(...) tk_log(TK_LOG_WARN, __VA_ARGS__)
#define tk_log_info(...) tk_log(TK_LOG_INFO, __VA_ARGS__)
#define tk_log_debug(...) tk_log(TK_LOG_DEBUG, __VA_ARGS__)
#define tk_log_trace(...) tk_log(TK_LOG_TRACE, __VA_ARGS__)

#endif
