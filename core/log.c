/* tokenkit: logging. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <tokenkit/log.h>
#include <tokenkit/text.h>

#include "env.h"

static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_once_t log_once = PTHREAD_ONCE_INIT;
static int log_level = TK_LOG_WARN;
static bool log_time; /* $TOKENKIT_LOG_TIME=1: each line with the monotonic clock */
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
	const char *t = tk_env("TOKENKIT_LOG_TIME");

	log_time = t != NULL && strcmp(t, "1") == 0;
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
	if (log_sink != NULL) {
		log_sink(log_sink_ctx, level, msg);
	} else {
		/* Messages carry reader names, labels and file contents: one
		 * line each, with no terminal control sequences. */
		char esc[sizeof(msg) * 4], when[32] = "";

		if (log_time) {
			/* CLOCK_MONOTONIC, as a program's own timings: lines of
			 * several threads and programs can be set side by side */
			struct timespec ts;

			clock_gettime(CLOCK_MONOTONIC, &ts);
			snprintf(when, sizeof(when), "[%lld.%03ld] ", (long long)ts.tv_sec,
			         ts.tv_nsec / 1000000);
		}
		tk_text_escape(msg, strlen(msg), TK_TEXT_PLAIN, esc, sizeof(esc));
		fprintf(stderr, "tokenkit: %s%s: %s\n", when,
		        level_names[level <= TK_LOG_TRACE ? level : TK_LOG_TRACE], esc);
	}
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
	case 0xDB: /* PUT DATA: carries key material on OpenPGP cards, and the
	            * PIN-protected management key in PIV printed information */
		return true;
	default:
		/* GENERAL AUTHENTICATE carries a ciphertext, a peer's public
		 * point, a digest or a management-key cryptogram: none of them
		 * a secret (the cryptogram answers a fresh challenge). */
		return false;
	}
}

/* The data field of a command APDU (cases 3 and 4, short or extended), or
 * false when it has none. */
static bool
cmd_data(const uint8_t *cmd, size_t len, const uint8_t **data, size_t *dlen)
{
	size_t lc;

	if (len > 5 && cmd[4] != 0) {
		lc = cmd[4];
		*data = cmd + 5;
	} else if (len > 7 && cmd[4] == 0) {
		lc = (size_t)cmd[5] << 8 | cmd[6];
		*data = cmd + 7;
	} else {
		return false;
	}
	if (lc == 0 || (size_t)(*data - cmd) + lc > len)
		return false;
	*dlen = lc;
	return true;
}

/* PIV data objects behind the PIN (SP 800-73-4 part 1, table 3):
 * fingerprints, facial image, printed information, iris images and the
 * pairing code. Biometrics are personal data; YubiKey tools keep the
 * PIN-protected management key inside the printed information object. */
static bool
piv_private_object(const uint8_t *cmd, size_t len)
{
	const uint8_t *d = NULL;
	size_t n = 0;

	if (!cmd_data(cmd, len, &d, &n) || n < 5 || d[0] != 0x5C || d[1] != 0x03 || d[2] != 0x5F ||
	    d[3] != 0xC1)
		return false;
	return d[4] == 0x03 || d[4] == 0x08 || d[4] == 0x09 || d[4] == 0x21 || d[4] == 0x23;
}

bool
tk_apdu_response_is_sensitive(const uint8_t *cmd, size_t len, bool prev)
{
	if (cmd == NULL || len < 4)
		return true; /* no command to judge by */
	switch (cmd[1]) {
	case 0xC0: /* GET RESPONSE: more of the response before it */
		return prev;
	case 0x86: /* GENERAL AUTHENTICATE: the plaintext of a decryption, */
	case 0x87: /* an ECDH shared secret; at this level an RSA signature
	            * and a decryption are the same command, so signatures
	            * and management-key cryptograms are hidden too */
	case 0x2A: /* PERFORM SECURITY OPERATION: DECIPHER answers with the
	            * plaintext (and the ECDH secret) on OpenPGP cards */
	case 0x88: /* INTERNAL AUTHENTICATE: a private-key operation on data
	            * the host chose, as the two above */
		return true;
	case 0xCA: /* GET DATA: OpenPGP private-use objects 0101..0104 (0103
	            * and 0104 need PW1 / PW3 to be read) */
		return cmd[2] == 0x01 && cmd[3] >= 0x01 && cmd[3] <= 0x04;
	case 0xCB: /* GET DATA, odd INS (PIV): the PIN-protected objects */
		return piv_private_object(cmd, len);
	default:
		/* Public by design: SELECT answers, certificates and other
		 * objects, generated public keys (GENERATE ASYMMETRIC KEY
		 * PAIR), YubiKey attestation certificates, metadata, serial
		 * and version, challenges, PIN retry counters. */
		return false;
	}
}

static size_t
hex_bytes(char *line, size_t cap, const uint8_t *p, size_t n)
{
	size_t o = 0;

	for (size_t i = 0; i < n && o + 4 < cap; i++)
		o += (size_t)snprintf(line + o, cap - o, "%02X ", p[i]);
	if (o > 0)
		line[--o] = '\0';
	else if (cap > 0)
		line[0] = '\0';
	return o;
}

void
tk_log_apdu(int level, const char *prefix, const uint8_t *apdu, size_t len, bool is_command)
{
	char line[3 * 64 + 64];
	size_t shown = len;
	bool redact = is_command && tk_apdu_is_sensitive(apdu, len);

	if (!tk_log_enabled(level))
		return;
	if (!is_command) {
		/* A response whose command is unknown here may hold a secret. */
		tk_log_apdu_response(level, prefix, apdu, len, true);
		return;
	}
	if (redact)
		shown = 4; /* CLA INS P1 P2 */
	if (shown > 64)
		shown = 64;
	hex_bytes(line, sizeof(line), apdu, shown);
	if (redact)
		tk_log(level, "%s %s <redacted %zu bytes>", prefix, line, len - 4);
	else if (shown < len)
		tk_log(level, "%s %s ... (%zu bytes)", prefix, line, len);
	else
		tk_log(level, "%s %s", prefix, line);
}

void
tk_log_apdu_response(int level, const char *prefix, const uint8_t *resp, size_t len, bool secret)
{
	char line[3 * 64 + 64];
	size_t shown = len;

	if (!tk_log_enabled(level) || resp == NULL)
		return;
	if (secret && len > 2) {
		/* the status word is what a reader of the log needs */
		hex_bytes(line, sizeof(line), resp + len - 2, 2);
		tk_log(level, "%s <redacted %zu bytes> %s", prefix, len - 2, line);
		return;
	}
	if (shown > 64)
		shown = 64;
	hex_bytes(line, sizeof(line), resp, shown);
	if (shown < len)
		tk_log(level, "%s %s ... (%zu bytes)", prefix, line, len);
	else
		tk_log(level, "%s %s", prefix, line);
}
