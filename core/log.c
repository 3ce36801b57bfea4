/* tokenkit: logging. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <tokenkit/log.h>

#include "env.h"

static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_once_t log_once = PTHREAD_ONCE_INIT;
static int log_level = TK_LOG_WARN;
static tk_log_sink_fn log_sink;
static void *log_sink_ctx;

/* A fork while another thread writes a log line would leave the child's
 * copy of log_lock held for ever: hold it across fork(). */
static void
log_atfork_prepare(void)
{
	pthread_mutex_lock(&log_lock);
}

static void
log_atfork_release(void)
{
	pthread_mutex_unlock(&log_lock);
}

__attribute__((constructor)) static void
log_register_atfork(void)
{
	pthread_atfork(log_atfork_prepare, log_atfork_release, log_atfork_release);
}

static const char *const level_names[] = {"none", "error", "warn", "info", "debug", "trace"};

int
tk_log_level_parse(const char *s)
{
	if (s == NULL)
		return -1;
	for (int i = 0; i < (int)(sizeof(level_names) / sizeof(level_names[0])); i++)
		if (strcasecmp(s, level_names[i]) == 0)
			return i;
	if (strcasecmp(s, "warning") == 0)
		return TK_LOG_WARN;
	return -1;
}

static void
log_init(void)
{
	int l = tk_log_level_parse(tk_env("TOKENKIT_LOG"));

	if (l >= 0)
		__atomic_store_n(&log_level, l, __ATOMIC_RELAXED);
}

void
tk_log_set_level(int level)
{
	pthread_once(&log_once, log_init);
	__atomic_store_n(&log_level, level, __ATOMIC_RELAXED);
}

int
tk_log_get_level(void)
{
	pthread_once(&log_once, log_init);
	return __atomic_load_n(&log_level, __ATOMIC_RELAXED);
}

bool
tk_log_enabled(int level)
{
	return level > TK_LOG_NONE && level <= tk_log_get_level();
}

void
tk_log_set_sink(tk_log_sink_fn fn, void *ctx)
{
	pthread_mutex_lock(&log_lock);
	log_sink = fn;
	log_sink_ctx = ctx;
	pthread_mutex_unlock(&log_lock);
}

void
tk_logv(int level, const char *fmt, va_list ap)
{
	char msg[1024];

	if (!tk_log_enabled(level))
		return;
	vsnprintf(msg, sizeof(msg), fmt, ap);
	pthread_mutex_lock(&log_lock);
	if (log_sink != NULL)
		log_sink(log_sink_ctx, level, msg);
	else
		fprintf(stderr, "tokenkit: %s: %s\n",
		        level_names[level <= TK_LOG_TRACE ? level : TK_LOG_TRACE], msg);
	pthread_mutex_unlock(&log_lock);
}

void
tk_log(int level, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	tk_logv(level, fmt, ap);
	va_end(ap);
}

bool
tk_apdu_is_sensitive(const uint8_t *apdu, size_t len)
{
	if (apdu == NULL || len < 4)
		return false;
	switch (apdu[1]) {
	case 0x20: /* VERIFY */
	case 0x21: /* VERIFY, odd INS: the PIN inside a BER-TLV data field */
	case 0x24: /* CHANGE REFERENCE DATA */
	case 0x25: /* CHANGE REFERENCE DATA, odd INS */
	case 0x2C: /* RESET RETRY COUNTER */
	case 0x2D: /* RESET RETRY COUNTER, odd INS */
	case 0xFE: /* vendor key import (PIV) */
	case 0xFF: /* vendor set management key (PIV) */
	case 0xDA: /* PUT DATA: resetting code and AES key on OpenPGP cards */
	case 0xDB: /* PUT DATA: carries key material on OpenPGP cards */
		return true;
	case 0x87: /* GENERAL AUTHENTICATE: management-key responses */
		return false;
	default:
		return false;
	}
}

void
tk_log_apdu(int level, const char *prefix, const uint8_t *apdu, size_t len, bool is_command)
{
	char line[3 * 64 + 64];
	size_t shown = len, o = 0;
	bool redact = is_command && tk_apdu_is_sensitive(apdu, len);

	if (!tk_log_enabled(level))
		return;
	if (redact)
		shown = 4; /* CLA INS P1 P2 */
	if (shown > 64)
		shown = 64;
	for (size_t i = 0; i < shown && o + 4 < sizeof(line); i++)
		o += (size_t)snprintf(line + o, sizeof(line) - o, "%02X ", apdu[i]);
	if (o > 0)
		line[o - 1] = '\0';
	else
		line[0] = '\0';
	if (redact)
		tk_log(level, "%s %s <redacted %zu bytes>", prefix, line, len - 4);
	else if (shown < len)
		tk_log(level, "%s %s ... (%zu bytes)", prefix, line, len);
	else
		tk_log(level, "%s %s", prefix, line);
}
