/* tokenkit: the per-user recovery log — writer and parser.
 *
 * The parser reads a file other processes write (and anyone with the
 * user's rights could edit), so it treats every byte as untrusted: a
 * bounded cursor, a depth limit, no allocation, outputs cleared first. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* program_invocation_short_name */
#endif
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <tokenkit/err.h>
#include <tokenkit/log.h>

#include "env.h"
#include "fsutil.h"
#include "recovery_log.h"
#include "slotmgr_priv.h"

#define MAX_DEPTH 8

int
tk_recovery_log_path(char *buf, size_t cap)
{
	const char *env = tk_env("TOKENKIT_RECOVERY_LOG");
	const char *xdg = tk_env("XDG_RUNTIME_DIR");
	int n;

	if (buf != NULL && cap > 0)
		buf[0] = '\0';
	if (buf == NULL || cap == 0)
		return TK_ERR_INVALID_ARG;
	if (!tk_env_files_allowed())
		return TK_ERR_NOT_FOUND;
	if (env != NULL) {
		if (env[0] == '\0')
			return TK_ERR_NOT_FOUND;
		n = snprintf(buf, cap, "%s", env);
	} else if (xdg != NULL && xdg[0] == '/') {
		n = snprintf(buf, cap, "%s/tokenkit/recovery.jsonl", xdg);
	} else {
		n = snprintf(buf, cap, "/tmp/tokenkit-%u/recovery.jsonl", (unsigned)geteuid());
	}
	if (n < 0 || (size_t)n >= cap) {
		buf[0] = '\0';
		return TK_ERR_BUFFER_TOO_SMALL;
	}
	return TK_OK;
}

char *
rec_log_resolve(const char *opt)
{
	char buf[4096];

	/* A set-uid program keeps no log, even one it names itself. */
	if (!tk_env_files_allowed())
		return NULL;
	if (opt != NULL)
		return opt[0] != '\0' ? strdup(opt) : NULL;
	if (tk_recovery_log_path(buf, sizeof(buf)) != TK_OK)
		return NULL;
	return strdup(buf);
}

/* Where the log goes when its directory is refused: the user's own state
 * directory, which no other user can prepare. */
static int
fallback_path(char *buf, size_t cap)
{
	const char *state = tk_env("XDG_STATE_HOME");
	const char *home = tk_env("HOME");
	int n;

	if (state != NULL && state[0] == '/')
		n = snprintf(buf, cap, "%s/tokenkit/recovery.jsonl", state);
	else if (home != NULL && home[0] == '/')
		n = snprintf(buf, cap, "%s/.local/state/tokenkit/recovery.jsonl", home);
	else
		return TK_ERR_NOT_FOUND;
	return n < 0 || (size_t)n >= cap ? TK_ERR_TOO_LONG : TK_OK;
}

/* Open the log's directory, checked like every directory tokenkit keeps
 * files in (fsutil.h); the writer creates it. One that is refused (another
 * user made /tmp/tokenkit-<uid> first, a symlink, open permissions) is
 * worth one warning per process, and the log moves to fallback_path().
 * used (ucap bytes) receives the path of the file actually used. */
static int
log_dir_open(const char *path, bool create, int *dfd, char *name, size_t ncap, char *used,
             size_t ucap)
{
	static atomic_bool warned;
	unsigned flags = create ? TK_FS_DIR_CREATE : 0;
	char alt[4096];
	int r;

	*dfd = -1;
	if (snprintf(used, ucap, "%s", path) >= (int)ucap)
		return TK_ERR_TOO_LONG;
	r = tk_fs_parent_open(path, flags, dfd, name, ncap);
	if (r != TK_ERR_UNSAFE)
		return r;
	if (fallback_path(alt, sizeof(alt)) != TK_OK || strcmp(alt, path) == 0 ||
	    (r = tk_fs_parent_open(alt, flags, dfd, name, ncap)) == TK_ERR_UNSAFE) {
		if (!atomic_exchange(&warned, true))
			tk_log_warn("recovery log: the directory of %s is refused (not a private "
			            "directory of uid %u) and there is no safe fallback: no "
			            "recovery log",
			            path, (unsigned)geteuid());
		return TK_ERR_UNSAFE;
	}
	if (!atomic_exchange(&warned, true))
		tk_log_warn("recovery log: the directory of %s is refused (not a private directory "
		            "of uid %u); using %s",
		            path, (unsigned)geteuid(), alt);
	(void)snprintf(used, ucap, "%s", alt);
	return r;
}

/* ---- writing ---------------------------------------------------------- */

static size_t put(char *buf, size_t cap, size_t at, const char *fmt, ...)
        __attribute__((format(printf, 4, 5)));

static size_t
put(char *buf, size_t cap, size_t at, const char *fmt, ...)
{
	va_list ap;
	int n;

	if (at >= cap)
		return cap;
	va_start(ap, fmt);
	n = vsnprintf(buf + at, cap - at, fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= cap - at)
		return cap;
	return at + (size_t)n;
}

static size_t
put_str(char *buf, size_t cap, size_t at, const char *s)
{
	at = put(buf, cap, at, "\"");
	for (; s != NULL && *s != '\0' && at < cap; s++) {
		unsigned char c = (unsigned char)*s;

		if (c == '"' || c == '\\')
			at = put(buf, cap, at, "\\%c", c);
		else if (c < 0x20 || c == 0x7F)
			at = put(buf, cap, at, "\\u%04x", c);
		else
			at = put(buf, cap, at, "%c", c);
	}
	return put(buf, cap, at, "\"");
}

size_t
tk_recovery_log_format(char *buf, size_t cap, int64_t pid, const char *prog, const char *reader,
                       const tk_recovery_t *r)
{
	size_t at = 0, n;

	if (buf == NULL || cap == 0 || r == NULL)
		return 0;
	at = put(buf, cap, at,
	         "{\"v\":1,\"time_ms\":%lld,\"pid\":%lld,\"prog\":", (long long)r->wall_ms,
	         (long long)pid);
	at = put_str(buf, cap, at, prog);
	at = put(buf, cap, at, ",\"reader\":");
	at = put_str(buf, cap, at, reader);
	at = put(buf, cap, at,
	         ",\"id\":%llu,\"fault\":%d,\"fault_name\":", (unsigned long long)r->id, r->fault);
	at = put_str(buf, cap, at, tk_errname(r->fault));
	at = put(buf, cap, at, ",\"what\":");
	at = put_str(buf, cap, at, r->what);
	at = put(buf, cap, at, ",\"steps\":[");
	n = r->nsteps < TK_RECOVERY_MAX_STEPS ? r->nsteps : TK_RECOVERY_MAX_STEPS;
	for (size_t i = 0; i < n; i++) {
		at = put(buf, cap, at, "%s{\"step\":\"%s\",\"result\":%d,\"us\":%lld}",
		         i > 0 ? "," : "", tk_recovery_step_name(r->steps[i].step),
		         r->steps[i].result, (long long)r->steps[i].duration_us);
	}
	at = put(buf, cap, at,
	         "],\"nsteps\":%zu,\"cured_by\":\"%s\",\"outcome\":%d,\"outcome_name\":\"%s\","
	         "\"duration_us\":%lld,\"probes\":%u}\n",
	         r->nsteps, tk_recovery_step_name(r->cured_by), r->outcome, tk_errname(r->outcome),
	         (long long)r->duration_us, r->probes);
	return at >= cap ? 0 : at;
}

/* Open the log for appending: a regular file of ours (fsutil.h), never a
 * symlink or a FIFO someone planted. */
static int
open_append(int dfd, const char *name, int *fd)
{
	return tk_fs_open(dfd, name, O_WRONLY | O_APPEND | O_CREAT, fd);
}

void
rec_log_append(const char *path, const char *reader, const tk_recovery_t *r)
{
	char line[TK_RECOVERY_LOG_LINE_MAX];
	char name[256], old[260], used[4096];
	struct stat st;
	size_t len;
	ssize_t n;
	int dfd = -1, fd = -1, rv;

	if (path == NULL || path[0] == '\0' || !tk_env_files_allowed())
		return;
	len = tk_recovery_log_format(line, sizeof(line), (int64_t)getpid(),
	                             program_invocation_short_name, reader, r);
	if (len == 0)
		return;
	rv = log_dir_open(path, true, &dfd, name, sizeof(name), used, sizeof(used));
	if (rv == TK_OK)
		rv = open_append(dfd, name, &fd);
	if (rv != TK_OK) {
		tk_log_debug("recovery log: cannot write to %s: %s", used, tk_strerror(rv));
		goto out;
	}
	if (fstat(fd, &st) == 0 && st.st_size > TK_RECOVERY_LOG_MAX &&
	    snprintf(old, sizeof(old), "%s.1", name) < (int)sizeof(old)) {
		/* Rotate. Two processes may both rotate; the second rename then
		 * drops the first one's fresh file: bounded, and only history. */
		(void)renameat(dfd, name, dfd, old);
		tk_fs_close(&fd);
		if (open_append(dfd, name, &fd) != TK_OK)
			goto out;
	}
	n = write(fd, line, len);
	if (n != (ssize_t)len)
		tk_log_debug("recovery log: short write to %s", used);
out:
	tk_fs_close(&fd);
	tk_fs_close(&dfd);
}

/* ---- reading ---------------------------------------------------------- */

static int
read_lines(const uint8_t *p, size_t len, tk_recovery_log_fn fn, void *ctx, size_t *bad)
{
	const char *at = (const char *)p, *end = at + len;

	while (at < end) {
		const char *nl = memchr(at, '\n', (size_t)(end - at));
		size_t l = (size_t)((nl != NULL ? nl : end) - at);
		tk_recovery_log_entry_t e;

		/* a line cut short by a writer still busy with it, or an
		 * over-long or unparsable one, is counted and skipped */
		if (l > 0) {
			if (nl == NULL || tk_recovery_log_parse_line(at, l, &e) != TK_OK) {
				(*bad)++;
			} else {
				int r = fn(ctx, &e);

				if (r != TK_OK)
					return r;
			}
		}
		at += l + (nl != NULL);
	}
	return TK_OK;
}

int
tk_recovery_log_read(const char *path, tk_recovery_log_fn fn, void *ctx, size_t *bad, char *used,
                     size_t ucap)
{
	char name[256], files[2][260];
	int dfd = -1, r;

	if (bad != NULL)
		*bad = 0;
	if (used != NULL && ucap > 0)
		used[0] = '\0';
	if (path == NULL || fn == NULL || bad == NULL || used == NULL || ucap == 0)
		return TK_ERR_INVALID_ARG;
	if (!tk_env_files_allowed())
		return TK_ERR_NOT_SUPPORTED;
	if ((r = log_dir_open(path, false, &dfd, name, sizeof(name), used, ucap)) != TK_OK)
		return r;
	snprintf(files[0], sizeof(files[0]), "%s.1", name); /* the rotated part first */
	snprintf(files[1], sizeof(files[1]), "%s", name);
	for (int k = 0; k < 2 && r == TK_OK; k++) {
		uint8_t *data = NULL;
		size_t len = 0;
		int rr = tk_fs_read(dfd, files[k], TK_RECOVERY_LOG_READ_MAX, &data, &len);

		if (rr == TK_OK) {
			r = read_lines(data, len, fn, ctx, bad);
		} else if (rr != TK_ERR_NOT_FOUND) {
			tk_log_warn("recovery log: %s%s not read: %s", used, k == 0 ? ".1" : "",
			            tk_strerror(rr));
			(*bad)++;
		}
		free(data);
	}
	tk_fs_close(&dfd);
	return r;
}

/* ---- parsing ---------------------------------------------------------- */

typedef struct cur {
	const char *p, *end;
	int depth;
} cur_t;

static void
ws(cur_t *c)
{
	while (c->p < c->end && (*c->p == ' ' || *c->p == '\t' || *c->p == '\r' || *c->p == '\n'))
		c->p++;
}

static bool
eat(cur_t *c, char ch)
{
	ws(c);
	if (c->p < c->end && *c->p == ch) {
		c->p++;
		return true;
	}
	return false;
}

static int
hexval(char h)
{
	if (h >= '0' && h <= '9')
		return h - '0';
	if (h >= 'a' && h <= 'f')
		return h - 'a' + 10;
	if (h >= 'A' && h <= 'F')
		return h - 'A' + 10;
	return -1;
}

/* A string into out (truncated to cap - 1, always NUL-terminated; out may
 * be NULL to skip). Non-ASCII and NUL \u escapes become '?'. */
static int
get_str(cur_t *c, char *out, size_t cap)
{
	size_t k = 0;

	if (out != NULL && cap > 0)
		out[0] = '\0';
	if (!eat(c, '"'))
		return TK_ERR_MALFORMED;
	for (;;) {
		unsigned char ch;

		if (c->p >= c->end)
			return TK_ERR_MALFORMED;
		ch = (unsigned char)*c->p++;
		if (ch == '"')
			break;
		if (ch < 0x20)
			return TK_ERR_MALFORMED;
		if (ch == '\\') {
			if (c->p >= c->end)
				return TK_ERR_MALFORMED;
			ch = (unsigned char)*c->p++;
			switch (ch) {
			case '"':
			case '\\':
			case '/':
				break;
			case 'b':
				ch = '\b';
				break;
			case 'f':
				ch = '\f';
				break;
			case 'n':
				ch = '\n';
				break;
			case 'r':
				ch = '\r';
				break;
			case 't':
				ch = '\t';
				break;
			case 'u': {
				int v = 0;

				if (c->end - c->p < 4)
					return TK_ERR_MALFORMED;
				for (int i = 0; i < 4; i++) {
					int h = hexval(c->p[i]);

					if (h < 0)
						return TK_ERR_MALFORMED;
					v = v * 16 + h;
				}
				c->p += 4;
				ch = v > 0 && v < 0x80 ? (unsigned char)v : '?';
				break;
			}
			default:
				return TK_ERR_MALFORMED;
			}
		}
		if (out != NULL && k + 1 < cap) {
			out[k++] = (char)ch;
			out[k] = '\0';
		}
	}
	return TK_OK;
}

static int
get_int(cur_t *c, int64_t *v)
{
	bool neg = false;
	uint64_t acc = 0;
	int digits = 0;

	*v = 0;
	ws(c);
	if (c->p < c->end && *c->p == '-') {
		neg = true;
		c->p++;
	}
	while (c->p < c->end && *c->p >= '0' && *c->p <= '9') {
		if (acc > (uint64_t)INT64_MAX / 10)
			return TK_ERR_MALFORMED;
		acc = acc * 10 + (uint64_t)(*c->p - '0');
		if (acc > (uint64_t)INT64_MAX)
			return TK_ERR_MALFORMED;
		c->p++;
		digits++;
	}
	if (digits == 0)
		return TK_ERR_MALFORMED;
	*v = neg ? -(int64_t)acc : (int64_t)acc;
	return TK_OK;
}

static int skip_value(cur_t *c);

static int
skip_container(cur_t *c, char open, char close)
{
	int r;

	if (!eat(c, open))
		return TK_ERR_MALFORMED;
	if (++c->depth > MAX_DEPTH)
		return TK_ERR_TOO_DEEP;
	if (eat(c, close)) {
		c->depth--;
		return TK_OK;
	}
	for (;;) {
		if (open == '{') {
			r = get_str(c, NULL, 0);
			if (r != TK_OK)
				return r;
			if (!eat(c, ':'))
				return TK_ERR_MALFORMED;
		}
		r = skip_value(c);
		if (r != TK_OK)
			return r;
		if (eat(c, close))
			break;
		if (!eat(c, ','))
			return TK_ERR_MALFORMED;
	}
	c->depth--;
	return TK_OK;
}

static bool
lit(cur_t *c, const char *word)
{
	size_t n = strlen(word);

	if ((size_t)(c->end - c->p) >= n && memcmp(c->p, word, n) == 0) {
		c->p += n;
		return true;
	}
	return false;
}

static int
skip_value(cur_t *c)
{
	ws(c);
	if (c->p >= c->end)
		return TK_ERR_MALFORMED;
	switch (*c->p) {
	case '"':
		return get_str(c, NULL, 0);
	case '{':
		return skip_container(c, '{', '}');
	case '[':
		return skip_container(c, '[', ']');
	case 't':
		return lit(c, "true") ? TK_OK : TK_ERR_MALFORMED;
	case 'f':
		return lit(c, "false") ? TK_OK : TK_ERR_MALFORMED;
	case 'n':
		return lit(c, "null") ? TK_OK : TK_ERR_MALFORMED;
	default: {
		const char *start = c->p;

		while (c->p < c->end && strchr("-+.eE0123456789", *c->p) != NULL)
			c->p++;
		return c->p > start ? TK_OK : TK_ERR_MALFORMED;
	}
	}
}

int
tk_recovery_step_from_name(const char *name)
{
	for (int i = 0; i < TK_STEP_COUNT; i++)
		if (strcmp(name, tk_recovery_step_name(i)) == 0)
			return i;
	return -1;
}

static int
clamp_int(int64_t v)
{
	return v < -1000000 ? -1000000 : v > 1000000 ? 1000000 : (int)v;
}

static int
parse_step(cur_t *c, tk_recovery_step_rec_t *st)
{
	char key[32], name[32];
	int64_t v;
	int r;

	memset(st, 0, sizeof(*st));
	if (!eat(c, '{'))
		return TK_ERR_MALFORMED;
	if (eat(c, '}'))
		return TK_OK;
	for (;;) {
		r = get_str(c, key, sizeof(key));
		if (r != TK_OK)
			return r;
		if (!eat(c, ':'))
			return TK_ERR_MALFORMED;
		if (strcmp(key, "step") == 0) {
			r = get_str(c, name, sizeof(name));
			st->step = r == TK_OK && tk_recovery_step_from_name(name) > 0
			                   ? tk_recovery_step_from_name(name)
			                   : TK_STEP_NONE;
		} else if (strcmp(key, "result") == 0) {
			r = get_int(c, &v);
			st->result = clamp_int(v);
		} else if (strcmp(key, "us") == 0) {
			r = get_int(c, &v);
			st->duration_us = v;
		} else {
			r = skip_value(c);
		}
		if (r != TK_OK)
			return r;
		if (eat(c, '}'))
			return TK_OK;
		if (!eat(c, ','))
			return TK_ERR_MALFORMED;
	}
}

static int
parse_steps(cur_t *c, tk_recovery_t *rec)
{
	size_t n = 0;
	int r;

	if (!eat(c, '['))
		return TK_ERR_MALFORMED;
	if (eat(c, ']'))
		return TK_OK;
	for (;;) {
		tk_recovery_step_rec_t st;

		r = parse_step(c, &st);
		if (r != TK_OK)
			return r;
		if (n < TK_RECOVERY_MAX_STEPS)
			rec->steps[n] = st;
		n++;
		if (eat(c, ']'))
			break;
		if (!eat(c, ','))
			return TK_ERR_MALFORMED;
	}
	if (rec->nsteps < n)
		rec->nsteps = n;
	return TK_OK;
}

int
tk_recovery_log_parse_line(const char *line, size_t len, tk_recovery_log_entry_t *e)
{
	cur_t c;
	char key[32], name[32];
	int64_t v;
	int r;

	if (e != NULL)
		memset(e, 0, sizeof(*e));
	if (line == NULL || e == NULL)
		return TK_ERR_INVALID_ARG;
	if (len > TK_RECOVERY_LOG_LINE_MAX)
		return TK_ERR_TOO_LONG;
	c.p = line;
	c.end = line + len;
	c.depth = 1;
	if (!eat(&c, '{'))
		return TK_ERR_MALFORMED;
	if (eat(&c, '}'))
		goto done;
	for (;;) {
		r = get_str(&c, key, sizeof(key));
		if (r != TK_OK)
			goto fail;
		if (!eat(&c, ':')) {
			r = TK_ERR_MALFORMED;
			goto fail;
		}
		if (strcmp(key, "prog") == 0) {
			r = get_str(&c, e->prog, sizeof(e->prog));
		} else if (strcmp(key, "reader") == 0) {
			r = get_str(&c, e->reader, sizeof(e->reader));
		} else if (strcmp(key, "what") == 0) {
			r = get_str(&c, e->rec.what, sizeof(e->rec.what));
		} else if (strcmp(key, "cured_by") == 0) {
			r = get_str(&c, name, sizeof(name));
			e->rec.cured_by = r == TK_OK && tk_recovery_step_from_name(name) > 0
			                          ? tk_recovery_step_from_name(name)
			                          : TK_STEP_NONE;
		} else if (strcmp(key, "steps") == 0) {
			r = parse_steps(&c, &e->rec);
		} else if (strcmp(key, "pid") == 0 || strcmp(key, "time_ms") == 0 ||
		           strcmp(key, "id") == 0 || strcmp(key, "fault") == 0 ||
		           strcmp(key, "outcome") == 0 || strcmp(key, "duration_us") == 0 ||
		           strcmp(key, "probes") == 0 || strcmp(key, "nsteps") == 0) {
			r = get_int(&c, &v);
			if (r != TK_OK)
				goto fail;
			if (key[0] == 'p' && key[1] == 'i')
				e->pid = v;
			else if (key[0] == 't')
				e->rec.wall_ms = v;
			else if (key[0] == 'i')
				e->rec.id = v < 0 ? 0 : (uint64_t)v;
			else if (key[0] == 'f')
				e->rec.fault = clamp_int(v);
			else if (key[0] == 'o')
				e->rec.outcome = clamp_int(v);
			else if (key[0] == 'd')
				e->rec.duration_us = v;
			else if (key[0] == 'n')
				e->rec.nsteps = v < 0 ? 0 : v > 1000000 ? 1000000 : (size_t)v;
			else
				e->rec.probes = v < 0 ? 0 : v > 1000000 ? 1000000 : (uint32_t)v;
		} else {
			r = skip_value(&c);
		}
		if (r != TK_OK)
			goto fail;
		if (eat(&c, '}'))
			break;
		if (!eat(&c, ',')) {
			r = TK_ERR_MALFORMED;
			goto fail;
		}
	}
done:
	ws(&c);
	if (c.p != c.end) {
		r = TK_ERR_MALFORMED;
		goto fail;
	}
	return TK_OK;
fail:
	memset(e, 0, sizeof(*e));
	return r;
}
