/* tokenkit: registry watchers (see include/tokenkit/registry.h).
 *
 * A watcher keeps the view it has reported (one registration per record
 * that is live) and turns what inotify says into events by re-reading the
 * record a notification names and comparing it with that view: a record
 * that appeared is "added", one whose generation or content moved is
 * "changed", one that went away, became a tombstone or holds no valid
 * record any more is "removed"; one that cannot be read for a passing
 * reason (EMFILE, EIO) keeps its state and is read again RETRY_MS later.
 * Re-reading (rather than trusting the notification) keeps the events in
 * the order of the store's states, whatever inotify coalesced.
 *
 * Whenever the watcher may have missed something — the inotify queue
 * overflowed, the identity file or the store directory itself was touched,
 * its parent directory changed, the once-a-second identity check failed —
 * it re-reads the whole store, logs that it does, and reports a resync
 * event followed by the differences to its view. A store that is gone
 * (wiped) is looked for again every second, and its return is a resync
 * too. So a watcher never goes silent after a discontinuity, and never
 * reports anything from a store it has not checked to be the one at its
 * path (every read is framed by the handle's identity checks). */
#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <unistd.h>

#include <tokenkit/err.h>
#include <tokenkit/log.h>

#include "clock.h"
#include "registry_int.h"
#include "registry_priv.h"

#define PATH_CAP 4096
#define CHECK_MS 1000
#define RETRY_MS 200
#define STORE_MASK                                                                                 \
	(IN_MOVED_TO | IN_MOVED_FROM | IN_CREATE | IN_DELETE | IN_CLOSE_WRITE | IN_ATTRIB |        \
	 IN_DELETE_SELF | IN_MOVE_SELF | IN_ONLYDIR)
#define PARENT_MASK                                                                                \
	(IN_CREATE | IN_MOVED_TO | IN_MOVED_FROM | IN_DELETE | IN_DELETE_SELF | IN_MOVE_SELF |     \
	 IN_ONLYDIR)

/* The names a batch of notifications touched, in first-seen order. */
struct dirty {
	char (*names)[TK_REG_NAME_MAX];
	size_t n, cap;
};

/* False when out of memory (the caller resyncs: a name was not kept). */
static bool
dirty_add(struct dirty *d, const char *name)
{
	for (size_t i = 0; i < d->n; i++)
		if (strcmp(d->names[i], name) == 0)
			return true;
	if (d->n == d->cap) {
		size_t ncap = d->cap ? d->cap * 2 : 16;
		char(*nn)[TK_REG_NAME_MAX] = realloc(d->names, ncap * sizeof(*nn));

		if (nn == NULL)
			return false;
		d->names = nn;
		d->cap = ncap;
	}
	snprintf(d->names[d->n++], TK_REG_NAME_MAX, "%s", name);
	return true;
}

struct snap {
	char name[TK_REG_NAME_MAX];
	tk_registration_t *reg;
};

struct tk_registry_watch {
	tk_registry_t *reg; /* NULL while the store is gone */
	char path[PATH_CAP];
	char parent[PATH_CAP];
	char base[256];
	unsigned flags;
	int ifd, wd_store, wd_parent;
	struct snap *snap;
	size_t nsnap, capsnap;
	tk_registry_event_t **q;
	size_t qhead, qlen, qcap;
	int64_t next_check;
	struct dirty retry;           /* records whose last read failed for a passing reason */
	const struct dirty *retrying; /* the batch being read again (said already) */
	int64_t next_retry;
};

const char *
tk_registry_event_name(int type)
{
	switch (type) {
	case TK_REGISTRY_ADDED:
		return "added";
	case TK_REGISTRY_CHANGED:
		return "changed";
	case TK_REGISTRY_REMOVED:
		return "removed";
	case TK_REGISTRY_RESYNC:
		return "resync";
	default:
		return "unknown";
	}
}

void
tk_registry_event_free(tk_registry_event_t **evp)
{
	if (evp == NULL || *evp == NULL)
		return;
	tk_registration_free(&(*evp)->reg);
	free(*evp);
	*evp = NULL;
}

/* Queue an event; reg is taken (freed on failure). */
static int
push(tk_registry_watch_t *w, int type, tk_registration_t *reg, const char *reason)
{
	tk_registry_event_t *ev;

	if (w->qhead + w->qlen == w->qcap) {
		if (w->qhead > 0) {
			memmove(w->q, w->q + w->qhead, w->qlen * sizeof(*w->q));
			w->qhead = 0;
		} else {
			size_t ncap = w->qcap ? w->qcap * 2 : 16;
			tk_registry_event_t **nq = realloc(w->q, ncap * sizeof(*nq));

			if (nq == NULL) {
				tk_registration_free(&reg);
				return TK_ERR_NO_MEMORY;
			}
			w->q = nq;
			w->qcap = ncap;
		}
	}
	if ((ev = calloc(1, sizeof(*ev))) == NULL) {
		tk_registration_free(&reg);
		return TK_ERR_NO_MEMORY;
	}
	ev->type = type;
	ev->reg = reg;
	ev->reason = reason;
	w->q[w->qhead + w->qlen++] = ev;
	return TK_OK;
}

/* An event carrying a copy of reg. */
static int
push_copy(tk_registry_watch_t *w, int type, const tk_registration_t *reg)
{
	tk_registration_t *c = NULL;
	int r = tk_registration_dup(reg, &c);

	return r != TK_OK ? r : push(w, type, c, NULL);
}

static struct snap *
snap_find(tk_registry_watch_t *w, const char *name)
{
	for (size_t i = 0; i < w->nsnap; i++)
		if (strcmp(w->snap[i].name, name) == 0)
			return &w->snap[i];
	return NULL;
}

static void
snap_drop(tk_registry_watch_t *w, struct snap *s)
{
	tk_registration_free(&s->reg);
	*s = w->snap[--w->nsnap];
}

static void
snap_clear(tk_registry_watch_t *w)
{
	while (w->nsnap > 0)
		snap_drop(w, &w->snap[w->nsnap - 1]);
}

/* The view now holds cur (taken) under name; the event that says so. */
static int
snap_set(tk_registry_watch_t *w, const char *name, tk_registration_t *cur)
{
	struct snap *s = snap_find(w, name);
	int type, r;

	if (s != NULL) {
		if (s->reg->gen == cur->gen && tk_registration_equal(s->reg, cur)) {
			tk_registration_free(&cur);
			return TK_OK;
		}
		type = TK_REGISTRY_CHANGED;
		tk_registration_free(&s->reg);
	} else {
		if (w->nsnap == w->capsnap) {
			size_t ncap = w->capsnap ? w->capsnap * 2 : 16;
			struct snap *ns = realloc(w->snap, ncap * sizeof(*ns));

			if (ns == NULL) {
				tk_registration_free(&cur);
				return TK_ERR_NO_MEMORY;
			}
			w->snap = ns;
			w->capsnap = ncap;
		}
		s = &w->snap[w->nsnap++];
		snprintf(s->name, sizeof(s->name), "%s", name);
		type = TK_REGISTRY_ADDED;
	}
	s->reg = cur;
	if ((r = push_copy(w, type, cur)) != TK_OK)
		snap_drop(w, s); /* not reported: not in the view either */
	return r;
}

/* The record name is not live any more; stone (taken, may be NULL) is its
 * tombstone when it has one. */
static int
snap_unset(tk_registry_watch_t *w, const char *name, tk_registration_t *stone)
{
	struct snap *s = snap_find(w, name);
	tk_registration_t *last;

	if (s == NULL) {
		tk_registration_free(&stone);
		return TK_OK;
	}
	last = s->reg;
	s->reg = NULL;
	snap_drop(w, s);
	if (stone != NULL) {
		tk_registration_free(&last);
		return push(w, TK_REGISTRY_REMOVED, stone, NULL);
	}
	return push(w, TK_REGISTRY_REMOVED, last, NULL);
}

static void
rm_watch(tk_registry_watch_t *w, int *wd)
{
	if (*wd >= 0)
		(void)inotify_rm_watch(w->ifd, *wd);
	*wd = -1;
}

/* Watch the store directory and its parent (where the store is made,
 * replaced or wiped). Missing ones are left to the periodic check. */
static void
add_watches(tk_registry_watch_t *w)
{
	rm_watch(w, &w->wd_store);
	rm_watch(w, &w->wd_parent);
	w->wd_parent = inotify_add_watch(w->ifd, w->parent, PARENT_MASK);
	w->wd_store = inotify_add_watch(w->ifd, w->path, STORE_MASK);
}

/* What a failed read of a record says about the record itself: it is gone
 * (NOT_FOUND) or what is there is not a record we can ever use (bad frame,
 * checksum, foreign version, too long, a symlink / directory / foreign
 * file in its place). Anything else (EMFILE, EIO, out of memory) says
 * nothing about the record: the view keeps its last state. */
static bool
gone_or_bad(int r)
{
	switch (r) {
	case TK_ERR_NOT_FOUND:
	case TK_ERR_TRUNCATED:
	case TK_ERR_MALFORMED:
	case TK_ERR_TOO_DEEP:
	case TK_ERR_TOO_LONG:
	case TK_ERR_BAD_CHECKSUM:
	case TK_ERR_NOT_SUPPORTED:
	case TK_ERR_UNSAFE:
	case TK_ERR_INVALID_ARG:
		return true;
	default:
		return false;
	}
}

/* A read of name failed for a passing reason (r): keep its last known state
 * (unpublishing a token for a moment is worse than serving it RETRY_MS
 * longer) and read it again soon, without a notification to prompt it. */
static int
retry_later(tk_registry_watch_t *w, const char *name, int r)
{
	bool said = false;

	for (size_t i = 0; i < w->retry.n; i++)
		if (strcmp(w->retry.names[i], name) == 0)
			return TK_OK; /* said already */
	for (size_t i = 0; w->retrying != NULL && i < w->retrying->n && !said; i++)
		said = strcmp(w->retrying->names[i], name) == 0;
	if (said)
		tk_log_debug("registry: %s/%s: still cannot read it (%s)", w->path, name,
		             tk_strerror(r));
	else
		tk_log_warn("registry: %s/%s: cannot read it now (%s); keeping its last state and "
		            "reading it again",
		            w->path, name, tk_strerror(r));
	if (w->retry.n == 0)
		w->next_retry = tk_now_ms() + RETRY_MS;
	return dirty_add(&w->retry, name) ? TK_OK : TK_ERR_NO_MEMORY;
}

/* A record of the view that a full scan did not list: gone, a tombstone,
 * bad, or only unreadable for now (the scan skips those too, as it skips
 * bad ones). */
static int
gone_from_scan(tk_registry_watch_t *w, const char *name)
{
	tk_registration_t *cur = NULL;
	int r = TK_ERR_NOT_FOUND;

	if (w->reg != NULL)
		r = tk_registry_read_name(w->reg, name, &cur);
	if (r == TK_OK && !cur->removed)
		return snap_set(w, name, cur); /* the scan's read was the one that failed */
	if (r == TK_OK)
		return snap_unset(w, name, cur);
	if (r != TK_ERR_STORE_CHANGED && !gone_or_bad(r))
		return retry_later(w, name, r);
	return snap_unset(w, name, NULL);
}

/* Re-read the whole store and report a resync, then what differs. */
static int
resync(tk_registry_watch_t *w, const char *why)
{
	tk_registration_t **list = NULL;
	tk_registry_opts_t o;
	size_t n = 0;
	bool changed = false;
	const char *reason = why;
	int r;

	add_watches(w); /* before reading: nothing may fall in between */
	if (w->reg == NULL) {
		tk_registry_opts_init(&o);
		o.path = w->path;
		o.flags = w->flags | TK_REGISTRY_NO_CREATE;
		r = tk_registry_open(&o, &w->reg);
		reason = "store back";
	} else {
		r = tk_registry_reopen(w->reg, &changed);
		if (changed)
			reason = "store replaced";
	}
	if (r == TK_OK)
		r = tk_registry_scan(w->reg, false, &list, &n);
	if (r != TK_OK) {
		tk_registry_free(&w->reg);
		reason = "store gone";
	}
	tk_log_info("registry: %s: %s; %s", w->path, reason,
	            r == TK_OK ? "re-reading the store"
	                       : "its registrations are gone until it comes back");
	if ((r = push(w, TK_REGISTRY_RESYNC, NULL, reason)) != TK_OK)
		goto out;
	/* what went away, then what is there now */
	for (size_t i = w->nsnap; i-- > 0;) {
		char name[TK_REG_NAME_MAX];
		bool still = false;

		for (size_t k = 0; k < n && !still; k++)
			still = tk_reg_file_name(list[k]->provider, list[k]->instance, name,
			                         sizeof(name)) == TK_OK &&
			        strcmp(name, w->snap[i].name) == 0;
		if (!still && (r = gone_from_scan(w, w->snap[i].name)) != TK_OK)
			goto out;
	}
	for (size_t k = 0; k < n; k++) {
		char name[TK_REG_NAME_MAX];

		if (tk_reg_file_name(list[k]->provider, list[k]->instance, name, sizeof(name)) !=
		    TK_OK)
			continue;
		r = snap_set(w, name, list[k]);
		list[k] = NULL;
		if (r != TK_OK)
			goto out;
	}
	r = TK_OK;
out:
	tk_registry_list_free(&list, n);
	w->next_check = tk_now_ms() + CHECK_MS;
	return r;
}

/* One record named by a notification. */
static int
refresh(tk_registry_watch_t *w, const char *name)
{
	tk_registration_t *cur = NULL;
	int r;

	if (w->reg == NULL)
		return TK_OK;
	r = tk_registry_read_name(w->reg, name, &cur);
	if (r == TK_ERR_STORE_CHANGED)
		return resync(w, "store replaced");
	if (r != TK_OK && !gone_or_bad(r))
		return retry_later(w, name, r);
	if (r != TK_OK)
		return snap_unset(w, name, NULL); /* gone, or not a record (logged) */
	if (cur->removed)
		return snap_unset(w, name, cur);
	return snap_set(w, name, cur);
}

/* Read what inotify has; turn it into events. */
static int
drain(tk_registry_watch_t *w)
{
	char buf[16384] __attribute__((aligned(__alignof__(struct inotify_event))));
	char provider[TK_REG_PROVIDER_MAX + 1], instance[TK_REG_INSTANCE_MAX + 1];
	struct dirty d = {NULL, 0, 0};
	const char *why = NULL;
	size_t lost = 0;
	int r = TK_OK;

	for (;;) {
		ssize_t len = read(w->ifd, buf, sizeof(buf));

		if (len < 0 && errno == EINTR)
			continue;
		if (len <= 0)
			break;
		for (char *p = buf; p < buf + len;) {
			const struct inotify_event *e = (const struct inotify_event *)(void *)p;
			const char *name = e->len > 0 ? e->name : "";

			p += sizeof(*e) + e->len;
			if (e->mask & IN_Q_OVERFLOW) {
				why = "inotify queue overflow (events lost)";
			} else if (e->wd == w->wd_parent && e->wd >= 0) {
				if ((e->mask & (IN_DELETE_SELF | IN_MOVE_SELF | IN_IGNORED)) ||
				    strcmp(name, w->base) == 0)
					why = why != NULL ? why
					                  : "store directory replaced or moved";
			} else if (e->wd == w->wd_store && e->wd >= 0) {
				if (e->mask & (IN_DELETE_SELF | IN_MOVE_SELF | IN_IGNORED))
					why = why != NULL ? why
					                  : "store directory replaced or moved";
				else if (strcmp(name, TK_REG_STORE_ID) == 0)
					why = why != NULL ? why : "store identity changed";
				else if (tk_reg_file_parse(name, provider, instance) &&
				         !dirty_add(&d, name))
					lost++;
			}
		}
	}
	if (why == NULL && lost > 0)
		why = "out of memory while reading notifications";
	if (why == NULL && w->reg != NULL && tk_registry_check(w->reg) != TK_OK)
		why = "store replaced";
	if (why != NULL)
		r = resync(w, why);
	for (size_t i = 0; why == NULL && r == TK_OK && i < d.n; i++)
		r = refresh(w, d.names[i]);
	free(d.names);
	return r;
}

/* Read again the records whose last read failed for a passing reason
 * (refresh puts those that fail again back on the list). */
static int
retry(tk_registry_watch_t *w)
{
	struct dirty d = w->retry;
	int r = TK_OK;

	memset(&w->retry, 0, sizeof(w->retry));
	w->retrying = &d;
	for (size_t i = 0; i < d.n; i++) {
		int one = refresh(w, d.names[i]);

		r = r != TK_OK ? r : one;
	}
	w->retrying = NULL;
	free(d.names);
	return r;
}

/* Once a second: the store is still the one we read (or back, if gone). */
static int
tick(tk_registry_watch_t *w)
{
	struct stat st;
	char ip[PATH_CAP + 16];
	int n;

	w->next_check = tk_now_ms() + CHECK_MS;
	if (w->reg != NULL) {
		if (tk_registry_check(w->reg) != TK_OK)
			return resync(w, "store replaced");
		if (w->wd_store < 0 || w->wd_parent < 0)
			add_watches(w);
		return TK_OK;
	}
	n = snprintf(ip, sizeof(ip), "%s/%s", w->path, TK_REG_STORE_ID);
	if (n > 0 && (size_t)n < sizeof(ip) && stat(ip, &st) == 0)
		return resync(w, "store back");
	add_watches(w);
	return TK_OK;
}

int
tk_registry_watch_new(const tk_registry_t *reg, tk_registry_watch_t **out)
{
	tk_registry_watch_t *w;
	tk_registration_t **list = NULL;
	tk_registry_opts_t o;
	const char *slash;
	size_t n = 0;
	int r;

	if (out == NULL)
		return TK_ERR_INVALID_ARG;
	*out = NULL;
	if (reg == NULL)
		return TK_ERR_INVALID_ARG;
	if ((w = calloc(1, sizeof(*w))) == NULL)
		return TK_ERR_NO_MEMORY;
	w->ifd = w->wd_store = w->wd_parent = -1;
	snprintf(w->path, sizeof(w->path), "%s", tk_registry_path(reg));
	w->flags = tk_registry_flags(reg);
	slash = strrchr(w->path, '/');
	if (slash == NULL || slash[1] == '\0' || strlen(slash + 1) >= sizeof(w->base)) {
		r = TK_ERR_INVALID_ARG;
		goto fail;
	}
	snprintf(w->base, sizeof(w->base), "%s", slash + 1);
	snprintf(w->parent, sizeof(w->parent), "%.*s",
	         slash == w->path ? 1 : (int)(slash - w->path), w->path);
	if ((w->ifd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC)) < 0) {
		tk_log_warn("registry: inotify: %s", strerror(errno));
		r = TK_ERR_IO;
		goto fail;
	}
	add_watches(w); /* before the first read: nothing may fall in between */
	tk_registry_opts_init(&o);
	o.path = w->path;
	o.flags = w->flags | TK_REGISTRY_NO_CREATE;
	if ((r = tk_registry_open(&o, &w->reg)) != TK_OK)
		goto fail;
	if ((r = tk_registry_scan(w->reg, false, &list, &n)) != TK_OK)
		goto fail;
	for (size_t k = 0; k < n && r == TK_OK; k++) {
		char name[TK_REG_NAME_MAX];

		if (tk_reg_file_name(list[k]->provider, list[k]->instance, name, sizeof(name)) !=
		    TK_OK)
			continue;
		r = snap_set(w, name, list[k]);
		list[k] = NULL;
	}
	tk_registry_list_free(&list, n);
	if (r != TK_OK)
		goto fail;
	w->next_check = tk_now_ms() + CHECK_MS;
	*out = w;
	return TK_OK;
fail:
	tk_registry_watch_free(&w);
	return r;
}

void
tk_registry_watch_free(tk_registry_watch_t **wp)
{
	tk_registry_watch_t *w;

	if (wp == NULL || (w = *wp) == NULL)
		return;
	if (w->ifd >= 0)
		close(w->ifd);
	snap_clear(w);
	free(w->snap);
	free(w->retry.names);
	for (size_t i = 0; i < w->qlen; i++)
		tk_registry_event_free(&w->q[w->qhead + i]);
	free(w->q);
	tk_registry_free(&w->reg);
	free(w);
	*wp = NULL;
}

int
tk_registry_watch_fd(const tk_registry_watch_t *w)
{
	return w != NULL ? w->ifd : -1;
}

int
tk_registry_watch_next(tk_registry_watch_t *w, int timeout_ms, tk_registry_event_t **ev)
{
	int64_t end = tk_now_ms() + (timeout_ms > 0 ? timeout_ms : 0);
	bool drained = false;
	int r;

	if (ev != NULL)
		*ev = NULL;
	if (w == NULL || ev == NULL)
		return TK_ERR_INVALID_ARG;
	for (;;) {
		int64_t now = tk_now_ms(), wait;
		struct pollfd pfd = {.fd = w->ifd, .events = POLLIN};

		if (w->qlen > 0) {
			*ev = w->q[w->qhead];
			w->q[w->qhead] = NULL;
			w->qhead++;
			w->qlen--;
			if (w->qlen == 0)
				w->qhead = 0;
			return TK_OK;
		}
		if (now >= w->next_check) {
			if ((r = tick(w)) != TK_OK)
				return r;
			continue;
		}
		if (w->retry.n > 0 && now >= w->next_retry) {
			if ((r = retry(w)) != TK_OK)
				return r;
			continue;
		}
		if (drained && now >= end)
			return TK_ERR_TIMEOUT;
		wait = end - now;
		if (w->next_check - now < wait)
			wait = w->next_check - now;
		if (w->retry.n > 0 && w->next_retry - now < wait)
			wait = w->next_retry - now;
		if (wait < 0)
			wait = 0;
		if (poll(&pfd, 1, (int)wait) < 0 && errno != EINTR)
			return TK_ERR_IO;
		if ((r = drain(w)) != TK_OK)
			return r;
		drained = true;
	}
}
