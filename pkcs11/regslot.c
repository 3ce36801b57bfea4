/* tokenkit-pkcs11: registered tokens as slots.
 *
 * The module watches the user's registry store and the system's (core's
 * registry watchers: inotify, and a resync whenever something may have been
 * missed). Every registration there that is not a card's (those are
 * published by the reader holding the card) and whose provider is known
 * (provider.h) is a slot with a token; the slot appears when the
 * registration does (a slot event), its token's objects follow the
 * registration's updates (the objects that did not change keep their
 * handles; a slot event says something changed), and the slot loses its
 * token when the registration goes (its sessions answer
 * CKR_DEVICE_REMOVED once, as for a card taken out). A resync — the
 * store replaced, wiped, restored, or events lost — is logged and followed
 * by what changed, so no slot keeps showing a registration the store no
 * longer has.
 *
 * Slot ids: from P11_REGSLOT_BASE on, one per (store, provider, instance)
 * for the life of the module (a registration that comes back gets its old
 * id), far from the slot manager's reader ids (1, 2, ...).
 *
 * One thread follows the watchers; it opens tokens (provider calls, no card
 * I/O) without the module lock and publishes them under it. The
 * registrations present at C_Initialize are slots before it returns, with
 * no event (as the readers of the first scan). */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <tokenkit/log.h>
#include <tokenkit/registry.h>

#include "p11.h"
#include "provider.h"

#define STORES 2 /* 0: the user's, 1: the system's */
#define POLL_MS 1000

struct regslot {
	CK_SLOT_ID id;
	int store;
	char provider[TK_REG_PROVIDER_MAX + 1];
	char instance[TK_REG_INSTANCE_MAX + 1];
};

static struct {
	tk_registry_watch_t *w[STORES];
	char path[STORES][256];
	int wake[2];
	pthread_t thr;
	bool running;
	bool stop;           /* module lock */
	struct regslot *map; /* module lock */
	size_t n, cap;
	uint64_t seq; /* card_seq of registry tokens: one per publication */
	bool initial; /* C_Initialize's first read: slots without events */
} rs = {.wake = {-1, -1}};

/* After a change of what a registered token's slot shows: its event (the
 * reader slots' rule waits for the first reader scan, which has nothing to
 * do with the registry: a registration is an event once C_Initialize
 * returned, whatever the reader service does). */
static void
changed_locked(struct p11_slot *s)
{
	tk_p11_slot_changed_locked(s);
	s->event = !rs.initial;
	pthread_cond_broadcast(&g_p11.cond);
}

/* The slot id of (store, provider, instance), made when new. 0: no memory. */
static CK_SLOT_ID
slot_id_locked(int store, const tk_registration_t *reg)
{
	const char *p = tk_registration_provider(reg), *i = tk_registration_instance(reg);
	struct regslot *e;

	for (size_t k = 0; k < rs.n; k++)
		if (rs.map[k].store == store && strcmp(rs.map[k].provider, p) == 0 &&
		    strcmp(rs.map[k].instance, i) == 0)
			return rs.map[k].id;
	if (rs.n == rs.cap) {
		size_t ncap = rs.cap ? rs.cap * 2 : 16;
		struct regslot *nm = realloc(rs.map, ncap * sizeof(*nm));

		if (nm == NULL)
			return 0;
		rs.map = nm;
		rs.cap = ncap;
	}
	e = &rs.map[rs.n];
	e->id = P11_REGSLOT_BASE + rs.n;
	e->store = store;
	snprintf(e->provider, sizeof(e->provider), "%s", p);
	snprintf(e->instance, sizeof(e->instance), "%s", i);
	rs.n++;
	return e->id;
}

/* A token of ours for reg (no lock held: provider calls and object
 * building). */
static int
open_token(const tk_registration_t *reg, CK_SLOT_ID id, struct p11_token **out)
{
	struct p11_token *t;
	tk_token_t *tk = NULL;
	int r;

	*out = NULL;
	if ((r = tk_token_open_registration(reg, &tk)) != TK_OK)
		return r;
	if ((t = calloc(1, sizeof(*t))) == NULL) {
		tk_token_free(&tk);
		return TK_ERR_NO_MEMORY;
	}
	t->refs = 1;
	t->tk = tk;
	t->slot = id;
	t->login = -1;
	r = tk_token_info(t->tk, &t->info);
	if (r == TK_OK)
		r = tk_p11_objects_build(t);
	if (r != TK_OK) {
		tk_p11_token_free(t);
		return r;
	}
	*out = t;
	return TK_OK;
}

/* The slot loses its token (registration gone, or not publishable). */
static void
unpublish_locked(struct p11_slot *s, struct p11_token **junk)
{
	struct p11_token *t = s->token;

	*junk = NULL;
	s->token = NULL;
	s->present = false;
	s->state = TK_SLOT_ABSENT;
	s->card_seq = 0;
	s->opened_seq = 0;
	if (t != NULL) {
		tk_p11_login_set_locked(t, -1);
		if (tk_p11_token_forget_locked(t))
			*junk = t;
	}
	changed_locked(s);
}

static void
unpublish(int store, const tk_registration_t *reg, const char *why)
{
	struct p11_token *junk = NULL;
	struct p11_slot *s;
	CK_SLOT_ID id;

	pthread_mutex_lock(&g_p11.lock);
	id = slot_id_locked(store, reg);
	s = id != 0 ? tk_p11_slot_find_locked(id) : NULL;
	if (s != NULL && s->token != NULL) {
		tk_log_info("pkcs11: slot %lu: registration %s/%s %s; its token is gone",
		            (unsigned long)id, tk_registration_provider(reg),
		            tk_registration_instance(reg), why);
		unpublish_locked(s, &junk);
	}
	pthread_mutex_unlock(&g_p11.lock);
	tk_p11_token_free(junk);
}

/* A newer state of a published registration: the token follows it. */
static void
update(struct p11_token *t, const tk_registration_t *reg)
{
	tk_token_info_t ti;
	bool changed = false;
	int r;

	r = tk_token_update_registration(tk_p11_tk(t), reg, &changed);
	/* a software token's objects are its store's: any newer state */
	if (r == TK_OK && !changed && t->soft)
		changed = tk_p11_soft_stale(t);
	if (r == TK_OK && changed)
		r = tk_p11_objects_rebuild(t);
	if (r == TK_OK && changed && tk_token_info(tk_p11_tk(t), &ti) == TK_OK) {
		pthread_mutex_lock(&g_p11.lock);
		t->info = ti;
		tk_p11_slot_event_locked(t->slot); /* the token changed: look again */
		pthread_mutex_unlock(&g_p11.lock);
	}
	tk_log_info("pkcs11: slot %lu: registration %s/%s at generation %llu%s%s",
	            (unsigned long)t->slot, tk_registration_provider(reg),
	            tk_registration_instance(reg),
	            (unsigned long long)tk_registration_generation(reg),
	            r != TK_OK ? ": not followed: "
	            : changed  ? ": objects updated"
	                       : "",
	            r != TK_OK ? tk_strerror(r) : "");
}

static void
publish(int store, const tk_registration_t *reg)
{
	struct p11_token *t = NULL, *cur = NULL, *junk = NULL;
	struct p11_slot *s;
	char desc[128];
	CK_SLOT_ID id;
	int r;

	pthread_mutex_lock(&g_p11.lock);
	id = slot_id_locked(store, reg);
	s = id != 0 ? tk_p11_slot_find_locked(id) : NULL;
	if (s != NULL && s->token != NULL) {
		cur = s->token;
		cur->refs++;
	}
	pthread_mutex_unlock(&g_p11.lock);
	if (id == 0)
		return;
	if (cur != NULL) {
		update(cur, reg);
		pthread_mutex_lock(&g_p11.lock);
		if (tk_p11_token_unref_locked(cur))
			junk = cur;
		pthread_mutex_unlock(&g_p11.lock);
		tk_p11_token_free(junk);
		return;
	}
	r = open_token(reg, id, &t);
	if (r != TK_OK) {
		if (r != TK_ERR_NOT_FOUND) /* no provider: said once by the lookup */
			tk_log_info("pkcs11: registration %s/%s: no token: %s",
			            tk_registration_provider(reg), tk_registration_instance(reg),
			            tk_strerror(r));
		return;
	}
	snprintf(desc, sizeof(desc), "registered %s %s/%s", store == 0 ? "token" : "system token",
	         tk_registration_provider(reg), tk_registration_instance(reg));
	pthread_mutex_lock(&g_p11.lock);
	if (rs.stop || tk_p11_check_init_locked() != CKR_OK ||
	    (s = tk_p11_slot_add_locked(id, desc)) == NULL || s->token != NULL) {
		pthread_mutex_unlock(&g_p11.lock);
		tk_p11_token_free(t);
		return;
	}
	tk_p11_objects_number_locked(t->objs, t->nobjs, NULL, 0); /* handles: module-wide */
	s->registry = true;
	s->present = true;
	s->state = TK_SLOT_VALID;
	s->card_seq = t->card_seq = ++rs.seq;
	s->opened_seq = s->card_seq; /* nothing for the reader logic to open */
	s->token = t;
	changed_locked(s);
	pthread_mutex_unlock(&g_p11.lock);
	tk_log_info("pkcs11: slot %lu: registration %s/%s (generation %llu) published",
	            (unsigned long)id, tk_registration_provider(reg), tk_registration_instance(reg),
	            (unsigned long long)tk_registration_generation(reg));
}

static void
apply(int store, const tk_registry_event_t *ev)
{
	const tk_registration_t *reg = ev->reg;

	if (ev->type == TK_REGISTRY_RESYNC) {
		tk_log_info("pkcs11: registry %s: %s; its slots follow the store as re-read",
		            rs.path[store], ev->reason);
		return;
	}
	if (reg == NULL)
		return;
	if (ev->type == TK_REGISTRY_REMOVED)
		unpublish(store, reg, "removed");
	else if (tk_registration_flags(reg) & TK_REG_FLAG_CARD)
		unpublish(store, reg, "is a card's now"); /* its reader publishes it */
	else
		publish(store, reg);
}

/* Every event a watcher has now. */
static void
drain(int store)
{
	tk_registry_event_t *ev = NULL;
	int r;

	while ((r = tk_registry_watch_next(rs.w[store], 0, &ev)) == TK_OK) {
		apply(store, ev);
		tk_registry_event_free(&ev);
	}
	if (r != TK_ERR_TIMEOUT)
		tk_log_warn("pkcs11: registry %s: %s", rs.path[store], tk_strerror(r));
}

static void *
watch_thread(void *arg)
{
	(void)arg;
	for (;;) {
		struct pollfd pfd[STORES + 1];
		bool stop;

		pthread_mutex_lock(&g_p11.lock);
		stop = rs.stop;
		pthread_mutex_unlock(&g_p11.lock);
		if (stop)
			break;
		for (int i = 0; i < STORES; i++) {
			pfd[i].fd = rs.w[i] != NULL ? tk_registry_watch_fd(rs.w[i]) : -1;
			pfd[i].events = POLLIN;
		}
		pfd[STORES].fd = rs.wake[0];
		pfd[STORES].events = POLLIN;
		if (poll(pfd, STORES + 1, POLL_MS) < 0 && errno != EINTR)
			break;
		/* (also without news: the watchers check their stores every
		 * second; records carry a SHA-256: not while the process exits) */
		if (!tk_p11_bg_enter()) {
			/* (its news stays unread: wait for C_Finalize's wake-up
			 * or the process's end, not in a loop) */
			(void)poll(&pfd[STORES], 1, POLL_MS);
			continue;
		}
		for (int i = 0; i < STORES; i++)
			if (rs.w[i] != NULL)
				drain(i);
		tk_p11_bg_leave();
	}
	return NULL;
}

static void
watch_store(int store, unsigned flags)
{
	tk_registry_opts_t o;
	tk_registry_t *reg = NULL;
	int r;

	tk_registry_opts_init(&o);
	o.flags = flags;
	r = tk_registry_open(&o, &reg);
	if (r == TK_OK) {
		snprintf(rs.path[store], sizeof(rs.path[store]), "%s", tk_registry_path(reg));
		r = tk_registry_watch_new(reg, &rs.w[store]);
	}
	tk_registry_free(&reg);
	if (r == TK_OK)
		drain(store);
	else if (r == TK_ERR_NOT_SUPPORTED || (r == TK_ERR_NOT_FOUND && store == 1))
		tk_log_debug("pkcs11: no %s registry: %s", store == 0 ? "user" : "system",
		             tk_strerror(r));
	else
		tk_log_warn("pkcs11: %s registry not watched: %s", store == 0 ? "user" : "system",
		            tk_strerror(r));
}

void
tk_p11_regslots_start(void)
{
	pthread_mutex_lock(&g_p11.lock);
	rs.stop = false;
	pthread_mutex_unlock(&g_p11.lock);
	rs.initial = true;
	if (!tk_p11_system_broker) /* (a system broker's user is nobody's) */
		watch_store(0, 0);
	watch_store(1, TK_REGISTRY_SYSTEM | TK_REGISTRY_NO_CREATE);
	rs.initial = false;
	if (rs.w[0] == NULL && rs.w[1] == NULL)
		return;
	if (pipe2(rs.wake, O_CLOEXEC | O_NONBLOCK) != 0 ||
	    pthread_create(&rs.thr, NULL, watch_thread, NULL) != 0) {
		tk_log_warn("pkcs11: registry watcher not started: %s", strerror(errno));
		tk_p11_regslots_stop();
		return;
	}
	rs.running = true;
}

void
tk_p11_regslots_stop(void)
{
	pthread_mutex_lock(&g_p11.lock);
	rs.stop = true;
	pthread_mutex_unlock(&g_p11.lock);
	if (rs.running) {
		(void)!write(rs.wake[1], "x", 1);
		pthread_join(rs.thr, NULL);
		rs.running = false;
	}
	for (int i = 0; i < 2; i++) {
		if (rs.wake[i] >= 0)
			close(rs.wake[i]);
		rs.wake[i] = -1;
	}
	for (int i = 0; i < STORES; i++)
		tk_registry_watch_free(&rs.w[i]);
	/* the slot ids stay: a module initialised again gives the same ids */
}

void
tk_p11_regslots_forget(void)
{
	/* the parent's watcher thread does not exist here; its watchers and
	 * descriptors are the parent's (never touched, leaked on purpose) */
	rs.running = false;
	rs.stop = false;
	rs.wake[0] = rs.wake[1] = -1;
	for (int i = 0; i < STORES; i++)
		rs.w[i] = NULL;
}
