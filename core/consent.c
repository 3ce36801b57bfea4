/* tokenkit: the consent store (see include/tokenkit/consent.h; the files in
 * consent_priv.h).
 *
 * A handle holds the store directory opened and checked once (fsutil):
 * every file operation is relative to that descriptor. No lock: a decision
 * is one file replaced atomically, so a reader sees the old decision or the
 * new one, and two writers of one decision leave one of theirs. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <tokenkit/err.h>
#include <tokenkit/log.h>

#include "consent_priv.h"
#include "env.h"
#include "fsutil.h"

#define PATH_CAP 4096

struct tk_consent {
	char path[PATH_CAP];
	int dfd;
};

const char *
tk_consent_decision_name(int decision)
{
	switch (decision) {
	case TK_CONSENT_NONE:
		return "none";
	case TK_CONSENT_ONCE:
		return "once";
	case TK_CONSENT_ALWAYS:
		return "always";
	case TK_CONSENT_DENY:
		return "deny";
	default:
		return "?";
	}
}

/* $XDG_STATE_HOME/tokenkit/consent, else ~/.local/state/tokenkit/consent
 * (as the registry's user store, beside it). */
static int
default_path(char *out, size_t cap)
{
	const char *base;
	int n;

	out[0] = '\0';
	if ((base = tk_env("XDG_STATE_HOME")) != NULL && base[0] == '/')
		n = snprintf(out, cap, "%s/tokenkit/consent", base);
	else if ((base = tk_env("HOME")) != NULL && base[0] == '/')
		n = snprintf(out, cap, "%s/.local/state/tokenkit/consent", base);
	else
		return TK_ERR_NOT_FOUND;
	if (n < 0 || (size_t)n >= cap) {
		out[0] = '\0';
		return TK_ERR_TOO_LONG;
	}
	return TK_OK;
}

int
tk_consent_open(const char *dir, tk_consent_t **out)
{
	tk_consent_t *c;
	int r;

	if (out == NULL)
		return TK_ERR_INVALID_ARG;
	*out = NULL;
	/* a set-uid program keeps no decisions of a less privileged caller's */
	if (!tk_env_files_allowed())
		return TK_ERR_NOT_SUPPORTED;
	if (dir != NULL && dir[0] == '\0')
		return TK_ERR_INVALID_ARG;
	if ((c = calloc(1, sizeof(*c))) == NULL)
		return TK_ERR_NO_MEMORY;
	c->dfd = -1;
	if (dir != NULL) {
		if (strlen(dir) >= sizeof(c->path)) {
			r = TK_ERR_TOO_LONG;
			goto fail;
		}
		snprintf(c->path, sizeof(c->path), "%s", dir);
	} else if ((r = default_path(c->path, sizeof(c->path))) != TK_OK) {
		goto fail;
	}
	r = tk_fs_dir_open(c->path, TK_FS_DIR_CREATE, &c->dfd);
	if (r == TK_ERR_UNSAFE)
		tk_log_warn("consent: %s refused: not a private directory of uid %u", c->path,
		            (unsigned)geteuid());
	else if (r != TK_OK)
		tk_log_debug("consent: %s: %s", c->path, tk_strerror(r));
	if (r != TK_OK)
		goto fail;
	*out = c;
	return TK_OK;
fail:
	tk_consent_free(&c);
	return r;
}

void
tk_consent_free(tk_consent_t **cp)
{
	tk_consent_t *c;

	if (cp == NULL || (c = *cp) == NULL)
		return;
	tk_fs_close(&c->dfd);
	free(c);
	*cp = NULL;
}

const char *
tk_consent_path(const tk_consent_t *c)
{
	return c != NULL ? c->path : "";
}

static uint64_t
now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

/* Read and decode the record file name, which must be the name of the
 * decision it holds. A file that is there but is not a record of ours is
 * logged with its name (not a vanished one: a reset may remove it between
 * readdir and open). */
static int
read_record(const tk_consent_t *c, const char *name, tk_consent_rec_t *rec)
{
	char want[TK_CONSENT_NAME_LEN + 1];
	uint8_t *data = NULL;
	size_t len = 0;
	int r;

	memset(rec, 0, sizeof(*rec));
	r = tk_fs_read(c->dfd, name, TK_CONSENT_RECORD_MAX, &data, &len);
	if (r == TK_OK)
		r = tk_consent_rec_decode(data, len, rec);
	free(data);
	if (r == TK_OK && (tk_consent_file_name(rec->program, rec->uid, rec->token_serial,
	                                        rec->key_id, want) != TK_OK ||
	                   strcmp(want, name) != 0))
		r = TK_ERR_MALFORMED; /* copied or renamed: not the decision its name says */
	if (r != TK_OK && r != TK_ERR_NOT_FOUND && r != TK_ERR_NO_MEMORY)
		tk_log_warn("consent: skipping %s/%s: %s%s", c->path, name, tk_strerror(r),
		            r == TK_ERR_NOT_SUPPORTED ? " (a record of another format version)"
		            : r == TK_ERR_TOO_LONG    ? " (larger than a record can be)"
		                                      : "");
	if (r != TK_OK)
		memset(rec, 0, sizeof(*rec));
	return r;
}

int
tk_consent_get(tk_consent_t *c, const char *program, uint32_t uid, const char *token_serial,
               const char *key_id, tk_consent_rec_t *rec)
{
	char name[TK_CONSENT_NAME_LEN + 1];
	int r;

	if (rec != NULL)
		memset(rec, 0, sizeof(*rec));
	if (c == NULL || rec == NULL)
		return TK_ERR_INVALID_ARG;
	if ((r = tk_consent_file_name(program, uid, token_serial, key_id, name)) != TK_OK)
		return r;
	return read_record(c, name, rec);
}

int
tk_consent_put(tk_consent_t *c, const tk_consent_rec_t *rec)
{
	char name[TK_CONSENT_NAME_LEN + 1];
	tk_consent_rec_t *copy;
	uint8_t *data = NULL;
	size_t len = 0;
	int r;

	if (c == NULL || !tk_consent_rec_ok(rec))
		return TK_ERR_INVALID_ARG;
	if ((r = tk_consent_file_name(rec->program, rec->uid, rec->token_serial, rec->key_id,
	                              name)) != TK_OK)
		return r;
	if (rec->time_us == 0) {
		if ((copy = malloc(sizeof(*copy))) == NULL)
			return TK_ERR_NO_MEMORY;
		*copy = *rec;
		copy->time_us = now_us();
		r = tk_consent_rec_encode(copy, &data, &len);
		free(copy);
	} else {
		r = tk_consent_rec_encode(rec, &data, &len);
	}
	if (r == TK_OK && (r = tk_fs_write_atomic(c->dfd, name, data, len)) != TK_OK)
		tk_log_warn("consent: %s/%s: %s", c->path, name, tk_strerror(r));
	free(data);
	return r;
}

/* Each record name in the store, in directory order: fn(ctx, name) (TK_OK
 * to go on). */
static int
each_name(tk_consent_t *c, int (*fn)(tk_consent_t *c, const char *name, void *ctx), void *ctx)
{
	struct dirent *de;
	DIR *d;
	int fd, r = TK_OK;

	if ((fd = dup(c->dfd)) < 0 || (d = fdopendir(fd)) == NULL) {
		int e = errno;

		tk_log_warn("consent: %s: %s", c->path, strerror(e));
		if (fd >= 0)
			close(fd);
		return e == ENOMEM ? TK_ERR_NO_MEMORY : TK_ERR_IO;
	}
	/* the duplicate shares its offset with c->dfd: start at the top */
	rewinddir(d);
	for (;;) {
		errno = 0;
		if ((de = readdir(d)) == NULL) {
			if (errno != 0) {
				tk_log_warn("consent: %s: %s", c->path, strerror(errno));
				r = TK_ERR_IO;
			}
			break;
		}
		if (!tk_consent_name_ok(de->d_name))
			continue;
		if ((r = fn(c, de->d_name, ctx)) != TK_OK)
			break;
	}
	closedir(d);
	return r;
}

struct list_ctx {
	tk_consent_rec_t *recs;
	size_t n, cap;
};

static int
list_one(tk_consent_t *c, const char *name, void *vctx)
{
	struct list_ctx *l = vctx;
	int r;

	if (l->n == l->cap) {
		size_t cap = l->cap ? 2 * l->cap : 8;
		tk_consent_rec_t *nr = realloc(l->recs, cap * sizeof(*nr));

		if (nr == NULL)
			return TK_ERR_NO_MEMORY;
		l->recs = nr;
		l->cap = cap;
	}
	r = read_record(c, name, &l->recs[l->n]);
	if (r == TK_OK)
		l->n++;
	return r == TK_ERR_NO_MEMORY ? r : TK_OK; /* the others are skipped (logged) */
}

static int
rec_cmp(const void *pa, const void *pb)
{
	const tk_consent_rec_t *a = pa, *b = pb;
	int d;

	if (a->time_us != b->time_us)
		return a->time_us < b->time_us ? -1 : 1;
	if ((d = strcmp(a->program, b->program)) != 0)
		return d;
	if (a->uid != b->uid)
		return a->uid < b->uid ? -1 : 1;
	if ((d = strcmp(a->token_serial, b->token_serial)) != 0)
		return d;
	return strcmp(a->key_id, b->key_id);
}

int
tk_consent_list(tk_consent_t *c, tk_consent_rec_t **recs, size_t *count)
{
	struct list_ctx l = {NULL, 0, 0};
	int r;

	if (recs != NULL)
		*recs = NULL;
	if (count != NULL)
		*count = 0;
	if (c == NULL || recs == NULL || count == NULL)
		return TK_ERR_INVALID_ARG;
	if ((r = each_name(c, list_one, &l)) != TK_OK) {
		free(l.recs);
		return r;
	}
	if (l.n == 0) {
		free(l.recs);
		return TK_OK;
	}
	qsort(l.recs, l.n, sizeof(*l.recs), rec_cmp);
	*recs = l.recs;
	*count = l.n;
	return TK_OK;
}

void
tk_consent_list_free(tk_consent_rec_t **recs)
{
	if (recs == NULL)
		return;
	free(*recs);
	*recs = NULL;
}

struct reset_ctx {
	const char *program, *token;
	size_t removed;
	tk_consent_rec_t rec;
};

static int
reset_one(tk_consent_t *c, const char *name, void *vctx)
{
	struct reset_ctx *x = vctx;
	int r = read_record(c, name, &x->rec);

	if (r == TK_ERR_NOT_FOUND)
		return TK_OK;
	if (r == TK_ERR_NO_MEMORY || r == TK_ERR_IO)
		return r;
	if (r == TK_OK) {
		if (x->program != NULL && strcmp(x->program, x->rec.program) != 0)
			return TK_OK;
		if (x->token != NULL && strcmp(x->token, x->rec.token_serial) != 0 &&
		    strcmp(x->token, x->rec.token_label) != 0)
			return TK_OK;
	} else if (x->program != NULL || x->token != NULL) {
		return TK_OK; /* not a decision we can match: left alone (logged) */
	}
	/* a record that does not parse is forgotten only by a reset of all */
	if (unlinkat(c->dfd, name, 0) != 0) {
		int e = errno;

		if (e == ENOENT)
			return TK_OK;
		tk_log_warn("consent: %s/%s: cannot remove: %s", c->path, name, strerror(e));
		/* a directory in a record's place: not ours to remove */
		return e == EISDIR || e == EPERM ? TK_OK : TK_ERR_IO;
	}
	if (r == TK_OK)
		x->removed++; /* a damaged file was no decision */
	return TK_OK;
}

int
tk_consent_reset(tk_consent_t *c, const char *program, const char *token, size_t *removed)
{
	struct reset_ctx *x;
	int r;

	if (removed != NULL)
		*removed = 0;
	if (c == NULL)
		return TK_ERR_INVALID_ARG;
	/* the record is large (an executable path): not on the stack */
	if ((x = calloc(1, sizeof(*x))) == NULL)
		return TK_ERR_NO_MEMORY;
	x->program = program;
	x->token = token;
	r = each_name(c, reset_one, x);
	if (r == TK_OK && x->removed > 0 && fsync(c->dfd) != 0)
		tk_log_debug("consent: %s: fsync: %s", c->path, strerror(errno));
	if (removed != NULL)
		*removed = x->removed;
	free(x);
	return r;
}
