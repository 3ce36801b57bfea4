/* tokenkit: the in-process virtual reader (tk_reader_vcard_ops).
 *
 * Virtual readers, each holding one virtual PIV card (card.c) and one fault
 * state (fault.c), served to the slot manager without pcscd. Selected with
 * the reader spec "vcard:..." (tk_slotmgr_opts_t.readers or
 * $TOKENKIT_READERS); the config after the colon lists readers separated
 * by ';', each a comma-separated list of:
 *   state=PATH      the card's state file (created if missing; without it a
 *                   fresh card lives in memory). One process per file.
 *   control=PATH    a UNIX socket taking the control lines of tokenkit-vcard
 *                   (fault specs, "status"), plus "reset" (another program
 *                   resets the card: the connection sees CARD_RESET)
 *   latency=NAME    the card's latency profile (none, yubikey5)
 *   applet=NAME     the applets of a new card: piv (default), openpgp, both
 *   bwt=MS          how long the reader waits for a mute card before it
 *                   reports it unresponsive (default 1000)
 *   fault=SPEC      a fault from the start (fault.h; words joined by '+',
 *                   e.g. fault=empty+count=1)
 *   no-extended=SW  a card option (tk_vcard_set_option): its ATR announces
 *                   extended length, it answers extended APDUs with SW
 *                   (6700 or 6A82)
 *   short-apdu      a reader that carries short APDUs only: its caps say so
 *                   and it refuses a command in extended form or longer
 *                   than 261 bytes (TK_ERR_TOO_LONG)
 *   empty           no card in this reader
 * "vcard" alone is one reader with a fresh in-memory card. Paths cannot
 * hold ',' or ';'.
 *
 * What the faults look like to the slot manager (a real reader's view):
 *   stall      transmit blocks until the fault is cleared, the card is
 *              removed or reset, or the backend closes (a card that keeps
 *              asking for time extensions)
 *   mute       transmit fails with TK_ERR_UNRESPONSIVE after bwt; a warm
 *              reset or power cycle ends it (mute=cold: only a power cycle)
 *   close=MS   transmit fails with TK_ERR_CARD_REMOVED; the card is back
 *              after MS
 *   garbage    random bytes as the response; short, empty: TK_ERR_COMM
 *   remove/insert, delay=MS as in tokenkit-vcard.
 *
 * This is the place for scenarios a real pcscd with vpcd cannot produce (a
 * held APDU blocks pcscd's whole reader there, so a mute card can never be
 * reset; vpcd wedges on an empty answer).
 *
 * Locks: r->mtx (one reader's presence, power and fault state), then
 * be->mtx (change notification, disconnects); card_mtx (the card's own
 * state) is taken alone. Connections hold a reference on the backend, so a
 * transmit still blocked when the slot manager closes the backend returns
 * TK_ERR_NO_SERVICE and frees nothing under itself; the close waits a
 * bounded time for those connections to go. */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <tokenkit/apdu.h>
#include <tokenkit/err.h>
#include <tokenkit/log.h>
#include <tokenkit/mem.h>

#include "control.h"
#include "fault.h"
#include "clock.h"
#include "reader.h"
#include "vcard.h"
#include "vreader.h"

#define VR_MAX_READERS 16
#define VR_DEFAULT_BWT_MS 1000u
#define VR_MAX_BWT_MS 600000ul
/* how long vr_close waits for the connections it woke to go away */
#define VR_CLOSE_GRACE_MS 1000
#define VR_NAME_PREFIX "tokenkit virtual reader"

typedef struct vr_be vr_be_t;

typedef struct vr_reader {
	vr_be_t *be;
	char name[TK_READER_NAME_MAX];
	char *state_path, *control_path;
	unsigned applets; /* of a new card (0: PIV) */
	uint32_t bwt_ms;
	bool has_card;   /* not "empty" */
	bool short_apdu; /* the reader carries short APDUs only */
	int lfd;         /* control socket, -1: none */

	pthread_mutex_t mtx; /* everything below */
	pthread_cond_t cond; /* held APDUs and delays: fault, presence, power changes */
	tk_fault_t *fault;
	bool present; /* as last published (refresh_locked) */
	bool powered;
	uint64_t insert_gen;   /* +1 on each removal and insertion */
	uint64_t reset_gen;    /* +1 on each reset or power cycle */
	int64_t away_until_us; /* "close" fault: back at this time; 0: not away */
	uint64_t apdus, connects;

	pthread_mutex_t card_mtx; /* the card's own state */
	tk_vcard_t *card;
} vr_reader_t;

struct vr_be {
	atomic_int refs; /* the slot manager's + one per connection */
	atomic_bool closing;
	pthread_mutex_t mtx;
	pthread_cond_t cond; /* wait_change */
	uint64_t change_gen, seen_gen;
	bool cancel_pending;
	vr_reader_t *r;
	size_t n;
	pthread_t ctl_thread;
	bool ctl_started;
	int wake_fd; /* eventfd: stop the control thread */
};

typedef struct vr_conn {
	vr_be_t *be;
	vr_reader_t *r;
	uint64_t insert_gen, reset_gen;
	uint8_t *buf; /* TK_APDU_MAX_RESP */
} vr_conn_t;

/* ---- backend lifetime ------------------------------------------------------ */

static void
be_free(vr_be_t *b)
{
	for (size_t i = 0; i < b->n; i++) {
		vr_reader_t *r = &b->r[i];

		if (r->lfd >= 0) {
			close(r->lfd);
			(void)unlink(r->control_path);
		}
		tk_vcard_free(&r->card);
		tk_fault_free(&r->fault);
		free(r->state_path);
		free(r->control_path);
		pthread_mutex_destroy(&r->mtx);
		pthread_mutex_destroy(&r->card_mtx);
		pthread_cond_destroy(&r->cond);
	}
	free(b->r);
	if (b->wake_fd >= 0)
		close(b->wake_fd);
	pthread_mutex_destroy(&b->mtx);
	pthread_cond_destroy(&b->cond);
	free(b);
}

static void
be_unref(vr_be_t *b)
{
	if (atomic_fetch_sub(&b->refs, 1) == 1)
		be_free(b);
}

/* ---- presence ------------------------------------------------------------ */

static void
notify_change(vr_be_t *b)
{
	pthread_mutex_lock(&b->mtx);
	b->change_gen++;
	pthread_cond_broadcast(&b->cond);
	pthread_mutex_unlock(&b->mtx);
}

/* With r->mtx held: bring `present` up to date (a "close" absence that
 * ended, a fault spec that removed or inserted the card) and tell waiters. */
static void
refresh_locked(vr_reader_t *r)
{
	bool present;

	if (r->away_until_us != 0 && tk_now_us() >= r->away_until_us)
		r->away_until_us = 0;
	present = r->has_card && r->away_until_us == 0 && tk_fault_present(r->fault);
	if (present == r->present)
		return;
	r->present = present;
	r->insert_gen++;
	if (!present) {
		/* the card lost power with its contacts */
		r->powered = false;
		pthread_mutex_lock(&r->card_mtx);
		tk_vcard_power_off(r->card);
		pthread_mutex_unlock(&r->card_mtx);
		(void)tk_fault_on_power(r->fault, true);
	}
	tk_log_debug("vreader: %s: card %s", r->name, present ? "inserted" : "removed");
	pthread_cond_broadcast(&r->cond);
	notify_change(r->be);
}

/* With r->mtx held: is this connection's card still there and unreset? */
static int
conn_check_locked(vr_conn_t *c)
{
	vr_reader_t *r = c->r;

	if (atomic_load(&c->be->closing))
		return TK_ERR_NO_SERVICE;
	refresh_locked(r);
	if (!r->present || c->insert_gen != r->insert_gen)
		return TK_ERR_CARD_REMOVED;
	if (c->reset_gen != r->reset_gen)
		return TK_ERR_CARD_RESET;
	return TK_OK;
}

/* With r->mtx held: a reset (power_cycle false) or power cycle of the card. */
static void
power_event_locked(vr_reader_t *r, bool power_cycle)
{
	pthread_mutex_lock(&r->card_mtx);
	if (power_cycle) {
		tk_vcard_power_off(r->card);
		tk_vcard_power_on(r->card);
	} else {
		tk_vcard_reset(r->card);
	}
	pthread_mutex_unlock(&r->card_mtx);
	if (tk_fault_on_power(r->fault, power_cycle))
		tk_log_info("vreader: %s: mute ended by %s", r->name,
		            power_cycle ? "power cycle" : "reset");
	r->powered = true;
	r->reset_gen++;
	pthread_cond_broadcast(&r->cond);
}

/* ---- the control channel ------------------------------------------------- */

static void
control_command(vr_reader_t *r, const char *line, char *reply, size_t cap)
{
	char err[160], f[128];

	pthread_mutex_lock(&r->mtx);
	if (strcmp(line, "status") == 0) {
		refresh_locked(r);
		tk_fault_describe(r->fault, f, sizeof(f));
		pthread_mutex_lock(&r->card_mtx);
		snprintf(reply, cap,
		         "ok connected=%d powered=%d connects=%llu apdus=%llu card_apdus=%llu %s\n",
		         r->present ? 1 : 0, r->powered ? 1 : 0, (unsigned long long)r->connects,
		         (unsigned long long)r->apdus,
		         (unsigned long long)tk_vcard_apdu_count(r->card), f);
		pthread_mutex_unlock(&r->card_mtx);
	} else if (strcmp(line, "reset") == 0) {
		refresh_locked(r);
		if (r->present) {
			power_event_locked(r, false);
			tk_log_info("vreader: %s: card reset by the control channel", r->name);
			snprintf(reply, cap, "ok\n");
		} else {
			snprintf(reply, cap, "error: no card\n");
		}
	} else if (tk_fault_apply(r->fault, line, err, sizeof(err)) == TK_OK) {
		tk_log_info("vreader: %s: fault: %s", r->name, line);
		if (tk_fault_release_ready(r->fault) || !tk_fault_present(r->fault))
			pthread_cond_broadcast(&r->cond);
		refresh_locked(r);
		snprintf(reply, cap, "ok\n");
	} else {
		snprintf(reply, cap, "error: %s\n", err);
	}
	pthread_mutex_unlock(&r->mtx);
}

static void
control_serve(vr_reader_t *r)
{
	char line[300], reply[400];
	int c = accept4(r->lfd, NULL, NULL, SOCK_CLOEXEC);

	if (c < 0)
		return;
	if (tk_vc_control_read_line(c, line, sizeof(line)) == 0) {
		control_command(r, line, reply, sizeof(reply));
		(void)send(c, reply, strlen(reply), MSG_NOSIGNAL);
	}
	close(c);
}

static void *
control_main(void *arg)
{
	vr_be_t *b = arg;
	struct pollfd pfd[VR_MAX_READERS + 1];
	vr_reader_t *who[VR_MAX_READERS + 1];

	for (;;) {
		nfds_t n = 0;

		pfd[n].fd = b->wake_fd;
		pfd[n].events = POLLIN;
		who[n++] = NULL;
		for (size_t i = 0; i < b->n; i++) {
			if (b->r[i].lfd < 0)
				continue;
			pfd[n].fd = b->r[i].lfd;
			pfd[n].events = POLLIN;
			who[n++] = &b->r[i];
		}
		if (poll(pfd, n, -1) < 0) {
			if (errno == EINTR)
				continue;
			tk_log_error("vreader: control poll: %s", strerror(errno));
			return NULL;
		}
		if (pfd[0].revents != 0 || atomic_load(&b->closing))
			return NULL;
		for (nfds_t i = 1; i < n; i++) {
			if (pfd[i].revents & POLLIN)
				control_serve(who[i]);
		}
	}
}

/* ---- configuration --------------------------------------------------------- */

static int
parse_ms(const char *s, uint32_t *out)
{
	char *end;
	unsigned long v;

	if (s[0] < '0' || s[0] > '9')
		return TK_ERR_INVALID_ARG;
	errno = 0;
	v = strtoul(s, &end, 10);
	if (errno != 0 || *end != '\0' || v == 0 || v > VR_MAX_BWT_MS)
		return TK_ERR_INVALID_ARG;
	*out = (uint32_t)v;
	return TK_OK;
}

/* One reader's part of the config (modified in place). */
static int
parse_reader(vr_reader_t *r, char *spec, const char **latency, const char **card_opt)
{
	char *save = NULL;

	*latency = NULL;
	*card_opt = NULL;
	r->has_card = true;
	r->bwt_ms = VR_DEFAULT_BWT_MS;
	for (char *w = strtok_r(spec, ",", &save); w != NULL; w = strtok_r(NULL, ",", &save)) {
		char *eq = strchr(w, '=');
		const char *v = eq != NULL ? eq + 1 : NULL;

		if (eq != NULL)
			*eq = '\0';
		if (strcmp(w, "empty") == 0 && v == NULL) {
			r->has_card = false;
		} else if (strcmp(w, "short-apdu") == 0 && v == NULL) {
			r->short_apdu = true;
		} else if (strcmp(w, "no-extended") == 0 && v != NULL) {
			*eq = '='; /* the card takes the option whole */
			*card_opt = w;
		} else if (strcmp(w, "state") == 0 && v != NULL && *v != '\0') {
			free(r->state_path);
			if ((r->state_path = strdup(v)) == NULL)
				return TK_ERR_NO_MEMORY;
		} else if (strcmp(w, "control") == 0 && v != NULL && *v != '\0') {
			free(r->control_path);
			if ((r->control_path = strdup(v)) == NULL)
				return TK_ERR_NO_MEMORY;
		} else if (strcmp(w, "latency") == 0 && v != NULL) {
			*latency = v;
		} else if (strcmp(w, "applet") == 0 && v != NULL) {
			if (tk_vcard_applets_parse(v, &r->applets) != TK_OK) {
				tk_log_error("vreader: bad applet '%s' (piv, openpgp, both)", v);
				return TK_ERR_INVALID_ARG;
			}
		} else if (strcmp(w, "fault") == 0 && v != NULL) {
			/* words joined by '+' here, as ',' separates options */
			char words[128], err[160];
			int n = snprintf(words, sizeof(words), "%s", v);

			for (char *p = words; *p != '\0'; p++)
				*p = *p == '+' ? ' ' : *p;
			if (n < 0 || (size_t)n >= sizeof(words) ||
			    tk_fault_apply(r->fault, words, err, sizeof(err)) != TK_OK) {
				tk_log_error("vreader: bad fault '%s'", v);
				return TK_ERR_INVALID_ARG;
			}
		} else if (strcmp(w, "bwt") == 0 && v != NULL && parse_ms(v, &r->bwt_ms) == TK_OK) {
			continue;
		} else {
			tk_log_error("vreader: bad reader option '%s%s%s'", w, v ? "=" : "",
			             v ? v : "");
			return TK_ERR_INVALID_ARG;
		}
	}
	return TK_OK;
}

static int
reader_init(vr_be_t *b, vr_reader_t *r, size_t idx, char *spec)
{
	const char *latency, *card_opt;
	int e;

	r->be = b;
	r->lfd = -1;
	pthread_mutex_init(&r->mtx, NULL);
	pthread_mutex_init(&r->card_mtx, NULL);
	tk_cond_init_monotonic(&r->cond);
	snprintf(r->name, sizeof(r->name), "%s %zu", VR_NAME_PREFIX, idx);
	if ((e = tk_fault_new(&r->fault)) != TK_OK)
		return e;
	if ((e = parse_reader(r, spec, &latency, &card_opt)) != TK_OK)
		return e;
	if ((e = tk_vcard_open_applets(r->state_path, r->applets, &r->card)) != TK_OK) {
		tk_log_error("vreader: %s: card state %s: %s", r->name,
		             r->state_path ? r->state_path : "(memory)", tk_strerror(e));
		return e;
	}
	if (latency != NULL && tk_vcard_set_latency(r->card, latency) != TK_OK) {
		tk_log_error("vreader: %s: unknown latency profile '%s'", r->name, latency);
		return TK_ERR_INVALID_ARG;
	}
	if (card_opt != NULL && tk_vcard_set_option(r->card, card_opt) != TK_OK) {
		tk_log_error("vreader: %s: bad card option '%s'", r->name, card_opt);
		return TK_ERR_INVALID_ARG;
	}
	if (r->control_path != NULL && (r->lfd = tk_vc_control_listen(r->control_path)) < 0)
		return TK_ERR_IO;
	r->present = r->has_card && tk_fault_present(r->fault);
	r->insert_gen = r->has_card ? 1 : 0;
	return TK_OK;
}

static int
vr_open(void **out, const char *config)
{
	vr_be_t *b;
	char *cfg;
	size_t n = 1;
	int e = TK_OK;
	bool controls = false;

	*out = NULL;
	if (config == NULL)
		config = "";
	for (const char *p = config; *p != '\0'; p++)
		n += *p == ';';
	if (n > VR_MAX_READERS) {
		tk_log_error("vreader: at most %d readers", VR_MAX_READERS);
		return TK_ERR_INVALID_ARG;
	}
	b = calloc(1, sizeof(*b));
	cfg = strdup(config);
	if (b == NULL || cfg == NULL || (b->r = calloc(n, sizeof(*b->r))) == NULL) {
		free(b);
		free(cfg);
		return TK_ERR_NO_MEMORY;
	}
	atomic_init(&b->refs, 1);
	atomic_init(&b->closing, false);
	pthread_mutex_init(&b->mtx, NULL);
	tk_cond_init_monotonic(&b->cond);
	b->wake_fd = -1;
	b->change_gen = 1;
	/* strtok_r would merge empty parts; split by hand so "a;;b" is an error */
	for (char *part = cfg; e == TK_OK && part != NULL;) {
		char *semi = strchr(part, ';');

		if (semi != NULL)
			*semi = '\0';
		if (*part == '\0' && n > 1) {
			tk_log_error("vreader: empty reader in '%s'", config);
			e = TK_ERR_INVALID_ARG;
			break;
		}
		e = reader_init(b, &b->r[b->n], b->n, part);
		b->n++;
		controls = controls || b->r[b->n - 1].lfd >= 0;
		part = semi != NULL ? semi + 1 : NULL;
	}
	free(cfg);
	if (e == TK_OK && controls) {
		b->wake_fd = eventfd(0, EFD_CLOEXEC);
		if (b->wake_fd < 0 || pthread_create(&b->ctl_thread, NULL, control_main, b) != 0)
			e = TK_ERR_NO_MEMORY;
		else
			b->ctl_started = true;
	}
	if (e != TK_OK) {
		be_free(b);
		return e;
	}
	tk_log_info("vreader: %zu virtual reader(s)", b->n);
	*out = b;
	return TK_OK;
}

static void
vr_close(void *be)
{
	vr_be_t *b = be;
	struct timespec ts;
	int64_t until;

	if (b == NULL)
		return;
	atomic_store(&b->closing, true);
	if (b->ctl_started) {
		uint64_t one = 1;

		if (write(b->wake_fd, &one, sizeof(one)) != (ssize_t)sizeof(one))
			tk_log_warn("vreader: cannot wake the control thread");
		pthread_join(b->ctl_thread, NULL);
	}
	/* wake every held transmit: it returns TK_ERR_NO_SERVICE */
	for (size_t i = 0; i < b->n; i++) {
		pthread_mutex_lock(&b->r[i].mtx);
		pthread_cond_broadcast(&b->r[i].cond);
		pthread_mutex_unlock(&b->r[i].mtx);
	}
	/* Every call now returns TK_ERR_NO_SERVICE at once, so a worker the
	 * slot manager abandoned in a held transmit disconnects promptly. Wait
	 * for that: the last reference frees the cards (OpenSSL keys), which
	 * must happen before our caller returns, not in a detached thread
	 * while the process runs its exit handlers (OPENSSL_cleanup). */
	until = tk_now_us() + (int64_t)VR_CLOSE_GRACE_MS * 1000;
	tk_abstime_at_us(&ts, until);
	pthread_mutex_lock(&b->mtx);
	pthread_cond_broadcast(&b->cond);
	while (atomic_load(&b->refs) > 1 && tk_now_us() < until)
		(void)pthread_cond_timedwait(&b->cond, &b->mtx, &ts);
	if (atomic_load(&b->refs) > 1)
		tk_log_warn("vreader: %d connection(s) still open at close",
		            atomic_load(&b->refs) - 1);
	pthread_mutex_unlock(&b->mtx);
	be_unref(b);
}

/* ---- enumeration ------------------------------------------------------------ */

static int
vr_enumerate(void *be, tk_reader_desc_t **descs, size_t *count)
{
	vr_be_t *b = be;
	tk_reader_desc_t *d;

	*descs = NULL;
	*count = 0;
	d = calloc(b->n, sizeof(*d));
	if (d == NULL)
		return TK_ERR_NO_MEMORY;
	/* seen before the readers are read: a change during the scan is
	 * reported by the next wait_change */
	pthread_mutex_lock(&b->mtx);
	b->seen_gen = b->change_gen;
	pthread_mutex_unlock(&b->mtx);
	for (size_t i = 0; i < b->n; i++) {
		vr_reader_t *r = &b->r[i];

		pthread_mutex_lock(&r->mtx);
		refresh_locked(r);
		snprintf(d[i].name, sizeof(d[i].name), "%s", r->name);
		d[i].card_present = r->present;
		d[i].event_count = (uint32_t)r->insert_gen;
		if (r->present) {
			pthread_mutex_lock(&r->card_mtx);
			d[i].atr_len = tk_vcard_atr(r->card, d[i].atr, sizeof(d[i].atr));
			pthread_mutex_unlock(&r->card_mtx);
		}
		pthread_mutex_unlock(&r->mtx);
	}
	*descs = d;
	*count = b->n;
	return TK_OK;
}

/* The earliest end of a "close" absence, 0: none. */
static int64_t
next_return_us(vr_be_t *b)
{
	int64_t t = 0;

	for (size_t i = 0; i < b->n; i++) {
		int64_t a;

		pthread_mutex_lock(&b->r[i].mtx);
		a = b->r[i].away_until_us;
		pthread_mutex_unlock(&b->r[i].mtx);
		if (a != 0 && (t == 0 || a < t))
			t = a;
	}
	return t;
}

static int
vr_wait_change(void *be, int timeout_ms)
{
	vr_be_t *b = be;
	int64_t end = tk_now_us() + (int64_t)(timeout_ms < 0 ? 0 : timeout_ms) * 1000;
	int r = TK_ERR_TIMEOUT;

	for (;;) {
		int64_t back = next_return_us(b), until = end;
		struct timespec ts;

		if (back != 0 && tk_now_us() >= back) {
			/* a card's absence ended: publish it */
			for (size_t i = 0; i < b->n; i++) {
				pthread_mutex_lock(&b->r[i].mtx);
				refresh_locked(&b->r[i]);
				pthread_mutex_unlock(&b->r[i].mtx);
			}
			continue;
		}
		if (back != 0 && back < until)
			until = back;
		pthread_mutex_lock(&b->mtx);
		if (b->cancel_pending) {
			b->cancel_pending = false;
			r = TK_ERR_CANCELLED;
		} else if (atomic_load(&b->closing)) {
			r = TK_ERR_CANCELLED;
		} else if (b->change_gen != b->seen_gen) {
			r = TK_OK;
		} else if (tk_now_us() < until) {
			tk_abstime_at_us(&ts, until);
			(void)pthread_cond_timedwait(&b->cond, &b->mtx, &ts);
			pthread_mutex_unlock(&b->mtx);
			continue;
		}
		pthread_mutex_unlock(&b->mtx);
		if (r != TK_ERR_TIMEOUT || tk_now_us() >= end)
			return r;
	}
}

static void
vr_cancel(void *be)
{
	vr_be_t *b = be;

	pthread_mutex_lock(&b->mtx);
	b->cancel_pending = true;
	pthread_cond_broadcast(&b->cond);
	pthread_mutex_unlock(&b->mtx);
}

/* ---- connections ------------------------------------------------------------ */

static vr_reader_t *
find_reader(vr_be_t *b, const char *name)
{
	for (size_t i = 0; i < b->n; i++) {
		if (strcmp(b->r[i].name, name) == 0)
			return &b->r[i];
	}
	return NULL;
}

static size_t
atr_of(vr_reader_t *r, uint8_t *atr)
{
	size_t n;

	pthread_mutex_lock(&r->card_mtx);
	n = tk_vcard_atr(r->card, atr, TK_READER_ATR_MAX);
	pthread_mutex_unlock(&r->card_mtx);
	return n;
}

static int
vr_connect(void *be, const char *reader, void **conn, uint8_t *atr, size_t *atr_len, int *protocol)
{
	vr_be_t *b = be;
	vr_reader_t *r = find_reader(b, reader);
	vr_conn_t *c;

	*conn = NULL;
	if (atomic_load(&b->closing))
		return TK_ERR_NO_SERVICE;
	if (r == NULL)
		return TK_ERR_NO_READER;
	c = calloc(1, sizeof(*c));
	if (c == NULL || (c->buf = malloc(TK_APDU_MAX_RESP)) == NULL) {
		free(c);
		return TK_ERR_NO_MEMORY;
	}
	pthread_mutex_lock(&r->mtx);
	refresh_locked(r);
	if (!r->present) {
		pthread_mutex_unlock(&r->mtx);
		free(c->buf);
		free(c);
		return TK_ERR_NO_CARD;
	}
	if (!r->powered) {
		pthread_mutex_lock(&r->card_mtx);
		tk_vcard_power_on(r->card);
		pthread_mutex_unlock(&r->card_mtx);
		r->powered = true;
	}
	r->connects++;
	c->be = b;
	c->r = r;
	c->insert_gen = r->insert_gen;
	c->reset_gen = r->reset_gen;
	pthread_mutex_unlock(&r->mtx);
	atomic_fetch_add(&b->refs, 1);
	*atr_len = atr_of(r, atr);
	*protocol = 1;
	*conn = c;
	return TK_OK;
}

/* With r->mtx held: wait for a held APDU's fate. TK_OK: the fault was
 * cleared and the APDU is to be answered. */
static int
hold_locked(vr_conn_t *c, bool mute)
{
	vr_reader_t *r = c->r;
	int64_t until = mute ? tk_now_us() + (int64_t)r->bwt_ms * 1000 : 0;

	for (;;) {
		struct timespec ts;
		int e = conn_check_locked(c);

		if (e != TK_OK) {
			if (tk_fault_holding(r->fault))
				tk_fault_drop_held(r->fault);
			return e;
		}
		if (tk_fault_release_ready(r->fault)) {
			tk_fault_released(r->fault);
			return TK_OK;
		}
		if (!tk_fault_holding(r->fault)) /* dropped by a power event */
			return TK_ERR_CARD_RESET;
		if (mute && tk_now_us() >= until) {
			/* the reader gives up on the card; the card stays mute */
			tk_fault_drop_held(r->fault);
			return TK_ERR_UNRESPONSIVE;
		}
		if (mute) {
			tk_abstime_at_us(&ts, until);
			(void)pthread_cond_timedwait(&r->cond, &r->mtx, &ts);
		} else {
			(void)pthread_cond_wait(&r->cond, &r->mtx);
		}
	}
}

/* With r->mtx held: sleep until at_us unless the card goes away. */
static int
delay_locked(vr_conn_t *c, int64_t at_us)
{
	struct timespec ts;
	int e;

	tk_abstime_at_us(&ts, at_us);
	while ((e = conn_check_locked(c)) == TK_OK && tk_now_us() < at_us)
		(void)pthread_cond_timedwait(&c->r->cond, &c->r->mtx, &ts);
	return e;
}

/* A command a short-APDU reader can carry: at most 261 bytes and not in
 * the extended encoding. */
static bool
short_form(const uint8_t *cmd, size_t len)
{
	tk_apdu_t a;
	bool ext = false;

	if (len > TK_APDU_MAX_SHORT_CMD)
		return false;
	/* what the card makes of a malformed one is the card's business */
	return tk_apdu_decode(cmd, len, &a, &ext) != TK_OK || !ext;
}

static int
vr_transmit(void *conn, const uint8_t *cmd, size_t cmd_len, uint8_t *resp, size_t resp_cap,
            size_t *resp_len)
{
	vr_conn_t *c = conn;
	vr_reader_t *r = c->r;
	uint32_t delay_ms = 0;
	uint64_t lat_us;
	size_t n;
	int e;

	*resp_len = 0;
	if (r->short_apdu && !short_form(cmd, cmd_len)) {
		tk_log_error("vreader: %s: a %zu-byte command in extended form: this reader "
		             "carries short APDUs only",
		             r->name, cmd_len);
		return TK_ERR_TOO_LONG;
	}
	pthread_mutex_lock(&r->mtx);
	if ((e = conn_check_locked(c)) != TK_OK)
		goto out;
	r->apdus++;
	switch (tk_fault_on_apdu(r->fault, &delay_ms)) {
	case TK_FAULT_PASS:
		break;
	case TK_FAULT_HOLD:
		tk_log_info("vreader: %s: fault: holding the APDU", r->name);
		e = hold_locked(c, false);
		break;
	case TK_FAULT_MUTE:
		e = hold_locked(c, true);
		break;
	case TK_FAULT_CLOSE:
		tk_log_info("vreader: %s: fault: card gone with an APDU outstanding", r->name);
		r->away_until_us = tk_now_us() + (int64_t)tk_fault_away_ms(r->fault) * 1000;
		refresh_locked(r);
		e = TK_ERR_CARD_REMOVED;
		goto out;
	case TK_FAULT_GARBAGE:
		if (resp_cap < 2) {
			e = TK_ERR_BUFFER_TOO_SMALL;
			goto out;
		}
		*resp_len = tk_fault_garbage(resp, resp_cap);
		goto out;
	case TK_FAULT_SHORT:
	case TK_FAULT_EMPTY:
		e = TK_ERR_COMM; /* fewer than the two status bytes */
		goto out;
	}
	if (e != TK_OK)
		goto out;
	pthread_mutex_unlock(&r->mtx);

	pthread_mutex_lock(&r->card_mtx);
	lat_us = tk_vcard_latency_us(r->card, cmd, cmd_len);
	n = tk_vcard_process(r->card, cmd, cmd_len, c->buf, TK_APDU_MAX_RESP);
	pthread_mutex_unlock(&r->card_mtx);

	pthread_mutex_lock(&r->mtx);
	if (delay_ms != 0 || lat_us != 0)
		e = delay_locked(c, tk_now_us() + (int64_t)delay_ms * 1000 + (int64_t)lat_us);
	else
		e = conn_check_locked(c);
	if (e == TK_OK) {
		if (n > resp_cap) {
			e = TK_ERR_BUFFER_TOO_SMALL;
		} else {
			memcpy(resp, c->buf, n);
			*resp_len = n;
		}
	}
	tk_wipe(c->buf, n);
out:
	pthread_mutex_unlock(&r->mtx);
	return e;
}

static int
vr_control(void *conn, uint32_t code, const uint8_t *in, size_t in_len, uint8_t *out,
           size_t out_cap, size_t *out_len)
{
	*out_len = 0;
	return TK_ERR_NOT_SUPPORTED;
}

static int
vr_reset(void *conn, int how, uint8_t *atr, size_t *atr_len, int *protocol)
{
	vr_conn_t *c = conn;
	vr_reader_t *r = c->r;
	int e;

	pthread_mutex_lock(&r->mtx);
	e = conn_check_locked(c);
	if (e == TK_ERR_CARD_RESET || (e == TK_OK && how != TK_READER_RECONNECT)) {
		if (how != TK_READER_RECONNECT)
			power_event_locked(r, how == TK_READER_COLD_RESET);
		c->reset_gen = r->reset_gen;
		e = TK_OK;
	}
	pthread_mutex_unlock(&r->mtx);
	if (e == TK_OK) {
		*atr_len = atr_of(r, atr);
		*protocol = 1;
	}
	return e;
}

static int
vr_status(void *conn)
{
	vr_conn_t *c = conn;
	int e;

	pthread_mutex_lock(&c->r->mtx);
	e = conn_check_locked(c);
	pthread_mutex_unlock(&c->r->mtx);
	return e;
}

static int
vr_begin(void *conn)
{
	/* One process holds the virtual card: there is nobody to exclude. */
	return vr_status(conn);
}

static int
vr_end(void *conn)
{
	return TK_OK;
}

static void
vr_caps(void *conn, tk_reader_caps_t *caps)
{
	vr_conn_t *c = conn;

	memset(caps, 0, sizeof(*caps));
	if (c->r->short_apdu) {
		caps->max_cmd = TK_APDU_MAX_SHORT_CMD;
		caps->max_resp = 256 + 2;
		return;
	}
	caps->extended_apdu = true;
	caps->max_cmd = TK_APDU_MAX_RESP + 7;
	caps->max_resp = TK_APDU_MAX_RESP;
}

static void
vr_disconnect(void *conn)
{
	vr_conn_t *c = conn;
	vr_be_t *b;
	bool last;

	if (c == NULL)
		return;
	b = c->be;
	free(c->buf);
	free(c);
	/* under b->mtx: vr_close may be waiting for this */
	pthread_mutex_lock(&b->mtx);
	last = atomic_fetch_sub(&b->refs, 1) == 1;
	pthread_cond_broadcast(&b->cond);
	pthread_mutex_unlock(&b->mtx);
	if (last)
		be_free(b);
}

const tk_reader_ops_t tk_reader_vcard_ops = {
        .name = "vcard",
        .open = vr_open,
        .close = vr_close,
        .enumerate = vr_enumerate,
        .wait_change = vr_wait_change,
        .cancel = vr_cancel,
        .connect = vr_connect,
        .transmit = vr_transmit,
        .control = vr_control,
        .reset = vr_reset,
        .begin = vr_begin,
        .end = vr_end,
        .status = vr_status,
        .caps = vr_caps,
        .disconnect = vr_disconnect,
};
