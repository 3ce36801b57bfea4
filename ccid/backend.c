/* tokenkit CCID: the reader backend (tk_reader_ops "ccid", core/reader.h).
 *
 * Every CCID interface libusb sees is a reader; every slot of it (bMaxSlotIndex
 * + 1) is one reader of the slot manager, named
 *   "<Manufacturer Product> (<serial>) [ccid <bus>-<port path> if<N> slot<M>]"
 * so the name stays the same when the reader is plugged into the same port
 * again (the device number changes, the port path does not).
 *
 * Threads: the slot manager's monitor calls enumerate/wait_change; it opens
 * new readers and lets go of the ones that left. One thread handles libusb's
 * events, so its hotplug callbacks run: they only ask for a rescan. Each
 * opened reader has one thread on its interrupt pipe (NotifySlotChange,
 * HardwareError), or polls GetSlotStatus when it has none. Workers use
 * connections (one per slot); a reader's slots share its bulk pipes, which
 * tk_ccid serialises.
 *
 * Claims: opening a reader claims its USB interface for as long as the
 * backend lives. An interface another program holds (pcscd with libccid,
 * GnuPG's scdaemon, another tokenkit) is left alone: not listed, named once
 * in a warning with the program that most likely holds it, and not tried
 * again until it is unplugged (taking a reader its owner let go of for a
 * moment would take it from that owner for good). The slot manager scans
 * this backend after those before it in the spec, so a pcscd started on
 * demand by the PC/SC backend has taken its readers first.
 *
 * Lifetimes: the backend, each reader and each connection are reference
 * counted (a worker stuck in a transfer may return after the manager closed
 * the backend); the libusb context goes with the last reference.
 *
 * Config ("ccid:KEY=VALUE,..."): read_ms=MS, the wait for one reply from
 * the reader (default 3000; time extensions extend it), and
 * pin_ms=MS, the extra wait while the user types on a PIN pad (60000). */
#include <dirent.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <tokenkit/err.h>
#include <tokenkit/log.h>
#include <tokenkit/slot.h>

#include "backend.h"
#include "ccid.h"
#include "clock.h"

#define BE_READERS_MAX 32
#define SKIPPED_MAX 32
#define EVENT_SLICE_MS 100
#define INTR_WAIT_MS 500
#define POLL_STATUS_MS 500
#define RESCAN_MS 5000
#define REOPEN_MS 3000
/* How long letting go of a reader waits for its interrupt thread; one
 * stuck in libusb is left to finish alone (it holds its references). */
#define INTR_JOIN_MS 2000
#define DEFAULT_READ_MS 3000
#define DEFAULT_PIN_MS 60000
#define ESCAPE_CODE 0x42000001u /* SCARD_CTL_CODE(1), as libccid's escape */

typedef struct ccid_be ccid_be_t;

/* One opened CCID interface. */
typedef struct rd {
	atomic_int refs; /* the backend's list, connections, the interrupt thread */
	ccid_be_t *b;
	tk_ccid_dev_t *dev;
	tk_ccid_found_t f; /* as found (its address: the plug it belongs to) */
	char base[TK_READER_NAME_MAX];
	unsigned nslots;
	pthread_t intr;
	bool intr_started;
	atomic_bool intr_stop;
	/* Under b->mtx: */
	bool intr_done;
	struct {
		bool present;
		uint32_t events; /* +1 at each insertion (and hardware error) */
		int conns;
		char name[TK_READER_NAME_MAX];
	} slot[TK_CCID_MAX_SLOTS];
} rd_t;

/* An interface we did not open: another program holds it, or it is not a
 * reader we can use. Remembered per plug, so it is named once. */
typedef struct skipped {
	uint8_t bus, addr, iface;
	bool seen; /* in the current scan */
} skipped_t;

struct ccid_be {
	atomic_int refs; /* the slot manager's, and one per connection */
	libusb_context *ctx;
	tk_ccid_timeouts_t to;
	bool have_hotplug;
	libusb_hotplug_callback_handle hotplug;
	pthread_t events;
	bool events_started;
	atomic_bool stop;
	pthread_mutex_t mtx;
	pthread_cond_t cond; /* CLOCK_MONOTONIC */
	unsigned version, seen;
	bool cancelled;
	bool rescan;
	int64_t last_scan_ms;
	rd_t *rds[BE_READERS_MAX];
	size_t nrds;
	skipped_t skipped[SKIPPED_MAX];
	size_t nskipped;
};

typedef struct cconn {
	ccid_be_t *b;
	rd_t *rd;
	unsigned slot;
	tk_ccid_slot_t *s;
} cconn_t;

/* ---- references ----------------------------------------------------------- */

static void
be_unref(ccid_be_t *b)
{
	if (atomic_fetch_sub(&b->refs, 1) != 1)
		return;
	if (b->have_hotplug)
		libusb_hotplug_deregister_callback(b->ctx, b->hotplug);
	libusb_exit(b->ctx);
	pthread_mutex_destroy(&b->mtx);
	pthread_cond_destroy(&b->cond);
	free(b);
}

static void
rd_unref(rd_t *rd)
{
	if (atomic_fetch_sub(&rd->refs, 1) != 1)
		return;
	tk_ccid_close(&rd->dev);
	free(rd);
}

static void
changed_locked(ccid_be_t *b)
{
	b->version++;
	pthread_cond_broadcast(&b->cond);
}

/* ---- errors --------------------------------------------------------------- */

/* tk_ccid's errors as the slot manager wants them from a connection: the
 * ladder answers COMM, UNRESPONSIVE, PROTOCOL and IO; a reader that left
 * took its card with it; an unpowered slot is a card that was reset. */
static int
conn_err(int r)
{
	switch (r) {
	case TK_ERR_TIMEOUT:
		return TK_ERR_UNRESPONSIVE;
	case TK_ERR_READER_GONE:
	case TK_ERR_NO_CARD:
		return TK_ERR_CARD_REMOVED;
	case TK_ERR_STATE:
		return TK_ERR_CARD_RESET;
	case TK_ERR_BUSY:
	case TK_ERR_CANCELLED: /* an ABORT ended the command */
		return TK_ERR_COMM;
	default:
		return r;
	}
}

/* ---- who holds a reader ------------------------------------------------------ */

/* The program that holds the usbfs node of bus/addr open, by its open
 * files (readable for our own processes, or all as root); else a running
 * program that usually holds readers. "" when nothing is known. */
static void
holder(uint8_t bus, uint8_t addr, char *out, size_t cap)
{
	char node[32], guess[64] = "";
	DIR *proc;
	struct dirent *de;

	out[0] = '\0';
	snprintf(node, sizeof(node), "/dev/bus/usb/%03u/%03u", bus, addr);
	if ((proc = opendir("/proc")) == NULL)
		return;
	while ((de = readdir(proc)) != NULL && out[0] == '\0') {
		char path[300], comm[32] = "", link[512];
		long pid = strtol(de->d_name, NULL, 10);
		DIR *fds;
		struct dirent *fe;
		FILE *f;

		if (pid <= 0 || pid == (long)getpid())
			continue;
		snprintf(path, sizeof(path), "/proc/%ld/comm", pid);
		if ((f = fopen(path, "r")) != NULL) {
			if (fgets(comm, sizeof(comm), f) != NULL)
				comm[strcspn(comm, "\n")] = '\0';
			fclose(f);
		}
		if (guess[0] == '\0' &&
		    (strcmp(comm, "pcscd") == 0 || strcmp(comm, "scdaemon") == 0))
			snprintf(guess, sizeof(guess), "probably %s (pid %ld)", comm, pid);
		snprintf(path, sizeof(path), "/proc/%ld/fd", pid);
		if ((fds = opendir(path)) == NULL)
			continue;
		while ((fe = readdir(fds)) != NULL) {
			char fd[600];
			ssize_t n;
			size_t ln = strlen(node);

			snprintf(fd, sizeof(fd), "%s/%s", path, fe->d_name);
			n = readlink(fd, link, sizeof(link) - 1);
			if (n <= 0)
				continue;
			link[n] = '\0';
			/* a suffix: under umockdev the node lives in its testbed */
			if ((size_t)n >= ln && strcmp(link + n - ln, node) == 0) {
				snprintf(out, cap, "%s (pid %ld)", comm[0] ? comm : "a program",
				         pid);
				break;
			}
		}
		closedir(fds);
	}
	closedir(proc);
	if (out[0] == '\0')
		snprintf(out, cap, "%s", guess);
}

/* ---- discovery ----------------------------------------------------------------- */

static bool
same_port(const tk_ccid_found_t *a, const tk_ccid_found_t *b)
{
	return a->bus == b->bus && a->nports == b->nports &&
	       memcmp(a->ports, b->ports, a->nports) == 0 && a->iface.number == b->iface.number;
}

static skipped_t *
skipped_find_locked(ccid_be_t *b, const tk_ccid_found_t *f)
{
	for (size_t i = 0; i < b->nskipped; i++)
		if (b->skipped[i].bus == f->bus && b->skipped[i].addr == f->addr &&
		    b->skipped[i].iface == f->iface.number)
			return &b->skipped[i];
	return NULL;
}

static void
skip(ccid_be_t *b, const tk_ccid_found_t *f)
{
	skipped_t *s;

	pthread_mutex_lock(&b->mtx);
	if (skipped_find_locked(b, f) == NULL && b->nskipped < SKIPPED_MAX) {
		s = &b->skipped[b->nskipped++];
		s->bus = f->bus;
		s->addr = f->addr;
		s->iface = f->iface.number;
		s->seen = true;
	}
	pthread_mutex_unlock(&b->mtx);
}

/* Say once, clearly, why a reader is not ours. */
static void
report_skipped(ccid_be_t *b, const tk_ccid_found_t *f, int r)
{
	char product[TK_READER_NAME_MAX], serial[64], port[48], who[128];

	(void)tk_ccid_port_path(f, port, sizeof(port));
	if (tk_ccid_found_names(b->ctx, f, product, sizeof(product), serial, sizeof(serial)) !=
	    TK_OK)
		snprintf(product, sizeof(product), "USB %04x:%04x", f->id.vid, f->id.pid);
	if (r == TK_ERR_SHARING) {
		holder(f->bus, f->addr, who, sizeof(who));
		tk_log_warn("ccid: reader \"%s%s%s%s\" (USB %s interface %u) is in use by %s: the "
		            "ccid backend leaves it alone and does not list it; with "
		            "TOKENKIT_READERS=pcsc+ccid a reader pcscd holds is used through PC/SC",
		            product, serial[0] ? " (" : "", serial, serial[0] ? ")" : "", port,
		            f->iface.number, who[0] ? who : "another program (pcscd or scdaemon?)");
	} else if (r == TK_ERR_IO) {
		tk_log_warn("ccid: reader \"%s\" (USB %s interface %u) cannot be opened: %s (no "
		            "permission on /dev/bus/usb? see the README, \"Direct USB readers\")",
		            product, port, f->iface.number, tk_strerror(r));
	} else {
		tk_log_info("ccid: reader \"%s\" (USB %s interface %u) not used: %s", product, port,
		            f->iface.number, tk_strerror(r));
	}
}

static void *intr_main(void *arg);
static void drop_reader(rd_t *rd);

/* Open a reader found by a scan (monitor thread). */
static void
open_reader(ccid_be_t *b, const tk_ccid_found_t *f)
{
	char port[48];
	rd_t *rd;
	int r;

	rd = calloc(1, sizeof(*rd));
	if (rd == NULL)
		return;
	r = tk_ccid_open(b->ctx, f, &rd->dev);
	if (r != TK_OK) {
		free(rd);
		skip(b, f);
		report_skipped(b, f, r);
		return;
	}
	atomic_init(&rd->refs, 1);
	atomic_init(&rd->intr_stop, false);
	rd->b = b;
	rd->f = *f;
	rd->nslots = tk_ccid_nslots(rd->dev);
	tk_ccid_set_timeouts(rd->dev, &b->to);
	(void)tk_ccid_port_path(f, port, sizeof(port));
	snprintf(rd->base, sizeof(rd->base), "%s%s%s%s", tk_ccid_product(rd->dev),
	         tk_ccid_serial(rd->dev)[0] ? " (" : "", tk_ccid_serial(rd->dev),
	         tk_ccid_serial(rd->dev)[0] ? ")" : "");
	for (unsigned i = 0; i < rd->nslots; i++) {
		tk_ccid_slot_state_t st;
		char tail[96];

		/* the tail makes the name unique; the product part may be cut */
		snprintf(tail, sizeof(tail), " [ccid %s if%u slot%u]", port, f->iface.number, i);
		snprintf(rd->slot[i].name, TK_READER_NAME_MAX, "%.*s%s",
		         (int)(TK_READER_NAME_MAX - 1 - strlen(tail)), rd->base, tail);
		/* What is in the slot now; changes come on the interrupt pipe. */
		if (tk_ccid_slot_status(tk_ccid_slot(rd->dev, i), &st) == TK_OK || st.present) {
			rd->slot[i].present = st.present;
			rd->slot[i].events = st.present ? 1 : 0;
		}
	}
	tk_log_info("ccid: reader %s: %s level, %u slot(s)", rd->base,
	            tk_ccid_level_name(tk_ccid_level(rd->dev)), rd->nslots);
	/* the interrupt thread's references */
	atomic_fetch_add(&rd->refs, 1);
	atomic_fetch_add(&b->refs, 1);
	if (pthread_create(&rd->intr, NULL, intr_main, rd) != 0) {
		atomic_fetch_sub(&rd->refs, 1);
		atomic_fetch_sub(&b->refs, 1);
		tk_log_error("ccid: %s: no event thread", rd->base);
	} else {
		rd->intr_started = true;
	}
	pthread_mutex_lock(&b->mtx);
	if (b->nrds < BE_READERS_MAX) {
		b->rds[b->nrds++] = rd;
		rd = NULL;
	}
	pthread_mutex_unlock(&b->mtx);
	if (rd != NULL) {
		tk_log_warn("ccid: more than %d readers: %s left out", BE_READERS_MAX, rd->base);
		drop_reader(rd);
	}
}

/* Let go of a reader (monitor thread): stop its interrupt thread, waiting
 * a bounded time (a transfer of a device that vanished may not come back
 * from libusb; the thread keeps what it uses). */
static void
drop_reader(rd_t *rd)
{
	ccid_be_t *b = rd->b;
	int64_t end = tk_now_us() + (int64_t)INTR_JOIN_MS * 1000;
	bool done;

	atomic_store(&rd->intr_stop, true);
	if (rd->intr_started) {
		pthread_mutex_lock(&b->mtx);
		while (!rd->intr_done && tk_now_us() < end)
			tk_cond_wait_until_us(&b->cond, &b->mtx, end);
		done = rd->intr_done;
		pthread_mutex_unlock(&b->mtx);
		if (done) {
			pthread_join(rd->intr, NULL);
		} else {
			tk_log_warn("ccid: %s: its event thread is stuck in libusb; left behind",
			            rd->base);
			pthread_detach(rd->intr);
		}
	}
	rd_unref(rd);
}

/* Bring the reader list in line with the bus (monitor thread). */
static int
scan(ccid_be_t *b)
{
	tk_ccid_found_t *f = NULL;
	rd_t *gone[BE_READERS_MAX];
	size_t n = 0, ngone = 0;
	int r;

	if ((r = tk_ccid_scan(b->ctx, &f, &n)) != TK_OK) {
		tk_log_debug("ccid: scan: %s", tk_strerror(r));
		return r;
	}
	tk_log_debug("ccid: scan: %zu interface(s)", n);
	for (size_t k = 0; k < n; k++)
		tk_log_trace("ccid: scan: bus %u addr %u iface %u", f[k].bus, f[k].addr,
		             f[k].iface.number);
	pthread_mutex_lock(&b->mtx);
	b->last_scan_ms = tk_now_ms();
	/* readers that left, or came back as another plug of the same port */
	for (size_t i = 0; i < b->nrds;) {
		rd_t *rd = b->rds[i];
		bool there = false;

		for (size_t k = 0; k < n && !there; k++)
			there = same_port(&rd->f, &f[k]) && rd->f.addr == f[k].addr &&
			        rd->f.id.vid == f[k].id.vid && rd->f.id.pid == f[k].id.pid;
		if (there) {
			i++;
			continue;
		}
		gone[ngone++] = rd;
		b->rds[i] = b->rds[--b->nrds];
	}
	for (size_t i = 0; i < b->nskipped; i++)
		b->skipped[i].seen = false;
	for (size_t k = 0; k < n; k++) {
		skipped_t *s = skipped_find_locked(b, &f[k]);

		if (s != NULL)
			s->seen = true;
	}
	for (size_t i = 0; i < b->nskipped;) {
		if (b->skipped[i].seen)
			i++;
		else
			b->skipped[i] = b->skipped[--b->nskipped];
	}
	pthread_mutex_unlock(&b->mtx);
	for (size_t i = 0; i < ngone; i++) {
		tk_log_info("ccid: reader %s gone", gone[i]->base);
		drop_reader(gone[i]);
	}
	for (size_t k = 0; k < n; k++) {
		bool known = false;

		pthread_mutex_lock(&b->mtx);
		for (size_t i = 0; i < b->nrds && !known; i++)
			known = same_port(&b->rds[i]->f, &f[k]);
		known = known || skipped_find_locked(b, &f[k]) != NULL;
		pthread_mutex_unlock(&b->mtx);
		if (!known)
			open_reader(b, &f[k]);
	}
	free(f);
	return TK_OK;
}

/* ---- events ------------------------------------------------------------------- */

static int LIBUSB_CALL
on_hotplug(libusb_context *ctx, libusb_device *dev, libusb_hotplug_event event, void *user)
{
	ccid_be_t *b = user;

	(void)ctx, (void)dev, (void)event;
	/* libusb's own thread: ask the monitor to look, nothing more */
	pthread_mutex_lock(&b->mtx);
	b->rescan = true;
	changed_locked(b);
	pthread_mutex_unlock(&b->mtx);
	return 0;
}

static void *
events_main(void *arg)
{
	ccid_be_t *b = arg;

	while (!atomic_load(&b->stop)) {
		struct timeval tv = {0, EVENT_SLICE_MS * 1000};

		(void)libusb_handle_events_timeout_completed(b->ctx, &tv, NULL);
	}
	return NULL;
}

/* With b->mtx held: a slot's card came or went. */
static void
slot_change_locked(rd_t *rd, unsigned i, bool present, bool changed)
{
	if (i >= rd->nslots)
		return;
	if (present && (changed || !rd->slot[i].present))
		rd->slot[i].events++;
	rd->slot[i].present = present;
}

static void
poll_status(rd_t *rd)
{
	ccid_be_t *b = rd->b;

	for (unsigned i = 0; i < rd->nslots; i++) {
		tk_ccid_slot_state_t st;

		if (tk_ccid_slot_status(tk_ccid_slot(rd->dev, i), &st) != TK_OK && !st.present)
			continue;
		pthread_mutex_lock(&b->mtx);
		if (st.present != rd->slot[i].present) {
			slot_change_locked(rd, i, st.present, true);
			changed_locked(b);
		}
		pthread_mutex_unlock(&b->mtx);
	}
}

/* The interrupt pipe: card insertion and removal, hardware errors. */
static void *
intr_main(void *arg)
{
	rd_t *rd = arg;
	ccid_be_t *b = rd->b;

	while (!atomic_load(&rd->intr_stop)) {
		tk_ccid_intr_t ev;
		int r = tk_ccid_wait_event(rd->dev, INTR_WAIT_MS, &ev);

		if (r == TK_ERR_TIMEOUT || r == TK_ERR_CANCELLED)
			continue; /* (cancelled: a reopen is under way) */
		if (r == TK_ERR_NOT_SUPPORTED) {
			struct timespec ts = {0, POLL_STATUS_MS * 1000000L};

			poll_status(rd); /* no interrupt pipe */
			nanosleep(&ts, NULL);
			continue;
		}
		if (r != TK_OK) {
			struct timespec ts = {0, INTR_WAIT_MS * 1000000L};

			pthread_mutex_lock(&b->mtx);
			if (r == TK_ERR_READER_GONE)
				b->rescan = true;
			changed_locked(b);
			pthread_mutex_unlock(&b->mtx);
			tk_log_debug("ccid: %s: interrupt pipe: %s", rd->base, tk_strerror(r));
			nanosleep(&ts, NULL);
			continue;
		}
		pthread_mutex_lock(&b->mtx);
		if (ev.type == TK_CCID_RDR_NOTIFY_SLOT_CHANGE) {
			for (unsigned i = 0; i < rd->nslots; i++)
				if (ev.changed & (1u << i) ||
				    ((ev.present >> i) & 1u) != rd->slot[i].present)
					slot_change_locked(rd, i, (ev.present >> i) & 1u,
					                   (ev.changed >> i) & 1u);
		} else if (ev.type == TK_CCID_RDR_HARDWARE_ERROR && ev.slot < rd->nslots) {
			/* The card lost its power (overcurrent): its session is
			 * gone, as after a removal and insertion. */
			tk_log_warn("ccid: %s: hardware error %02x in slot %u", rd->base, ev.code,
			            ev.slot);
			if (rd->slot[ev.slot].present)
				rd->slot[ev.slot].events++;
		}
		changed_locked(b);
		pthread_mutex_unlock(&b->mtx);
	}
	pthread_mutex_lock(&b->mtx);
	rd->intr_done = true;
	pthread_cond_broadcast(&b->cond);
	pthread_mutex_unlock(&b->mtx);
	rd_unref(rd);
	be_unref(b);
	return NULL;
}

/* ---- the backend ---------------------------------------------------------------- */

static int
parse_config(ccid_be_t *b, const char *config)
{
	const char *p = config;

	while (p != NULL && *p != '\0') {
		size_t len = strcspn(p, ",");
		char key[16];
		const char *eq = memchr(p, '=', len);
		long v;
		char *end;

		if (eq == NULL || (size_t)(eq - p) >= sizeof(key))
			goto bad;
		memcpy(key, p, (size_t)(eq - p));
		key[eq - p] = '\0';
		v = strtol(eq + 1, &end, 10);
		if (end != p + len || end == eq + 1 || v <= 0 || v > 600000)
			goto bad;
		if (strcmp(key, "read_ms") == 0) {
			b->to.read_ms = (int)v;
			b->to.write_ms = (int)v;
			b->to.control_ms = (int)v;
		} else if (strcmp(key, "pin_ms") == 0) {
			b->to.pin_ms = (int)v;
		} else {
			goto bad;
		}
		p += len;
		if (*p == ',')
			p++;
	}
	return TK_OK;
bad:
	tk_log_error("ccid: config '%s' not understood (want read_ms=MS, pin_ms=MS)", config);
	return TK_ERR_INVALID_ARG;
}

static int
be_open(void **out, const char *config)
{
	ccid_be_t *b;
	int rv, r;

	*out = NULL;
	if ((b = calloc(1, sizeof(*b))) == NULL)
		return TK_ERR_NO_MEMORY;
	tk_ccid_timeouts_default(&b->to);
	b->to.read_ms = b->to.write_ms = DEFAULT_READ_MS;
	b->to.pin_ms = DEFAULT_PIN_MS;
	if ((r = parse_config(b, config)) != TK_OK) {
		free(b);
		return r;
	}
	atomic_init(&b->refs, 1);
	atomic_init(&b->stop, false);
	pthread_mutex_init(&b->mtx, NULL);
	tk_cond_init_monotonic(&b->cond);
	b->rescan = true;
	if ((rv = libusb_init(&b->ctx)) != LIBUSB_SUCCESS) {
		/* no usbfs here (a container, a machine without USB) */
		tk_log_info("ccid: libusb: %s", libusb_error_name(rv));
		pthread_mutex_destroy(&b->mtx);
		pthread_cond_destroy(&b->cond);
		free(b);
		return TK_ERR_NO_SERVICE;
	}
	if (libusb_has_capability(LIBUSB_CAP_HAS_HOTPLUG) &&
	    libusb_hotplug_register_callback(
	            b->ctx, LIBUSB_HOTPLUG_EVENT_DEVICE_ARRIVED | LIBUSB_HOTPLUG_EVENT_DEVICE_LEFT,
	            0, LIBUSB_HOTPLUG_MATCH_ANY, LIBUSB_HOTPLUG_MATCH_ANY, LIBUSB_HOTPLUG_MATCH_ANY,
	            on_hotplug, b, &b->hotplug) == LIBUSB_SUCCESS)
		b->have_hotplug = true;
	if (pthread_create(&b->events, NULL, events_main, b) == 0)
		b->events_started = true;
	*out = b;
	return TK_OK;
}

static void
be_close(void *be)
{
	ccid_be_t *b = be;
	rd_t *rds[BE_READERS_MAX];
	size_t n;

	if (b == NULL)
		return;
	atomic_store(&b->stop, true);
	if (b->events_started) {
		libusb_interrupt_event_handler(b->ctx);
		pthread_join(b->events, NULL);
	}
	pthread_mutex_lock(&b->mtx);
	n = b->nrds;
	memcpy(rds, b->rds, n * sizeof(rds[0]));
	b->nrds = 0;
	pthread_mutex_unlock(&b->mtx);
	for (size_t i = 0; i < n; i++)
		drop_reader(rds[i]);
	be_unref(b);
}

static int
be_enumerate(void *be, tk_reader_desc_t **out, size_t *count)
{
	ccid_be_t *b = be;
	tk_reader_desc_t *d;
	size_t n = 0, cap = 0;
	bool rescan;

	*out = NULL;
	*count = 0;
	pthread_mutex_lock(&b->mtx);
	rescan = b->rescan || !b->have_hotplug || tk_now_ms() - b->last_scan_ms > RESCAN_MS;
	b->rescan = false;
	pthread_mutex_unlock(&b->mtx);
	if (rescan)
		(void)scan(b);
	pthread_mutex_lock(&b->mtx);
	b->seen = b->version;
	for (size_t i = 0; i < b->nrds; i++)
		cap += b->rds[i]->nslots;
	d = calloc(cap + 1, sizeof(*d));
	if (d == NULL) {
		pthread_mutex_unlock(&b->mtx);
		return TK_ERR_NO_MEMORY;
	}
	for (size_t i = 0; i < b->nrds; i++) {
		rd_t *rd = b->rds[i];

		for (unsigned k = 0; k < rd->nslots; k++, n++) {
			snprintf(d[n].name, sizeof(d[n].name), "%s", rd->slot[k].name);
			d[n].card_present = rd->slot[k].present;
			d[n].event_count = rd->slot[k].events;
			snprintf(d[n].exchange, sizeof(d[n].exchange), "%s",
			         tk_ccid_level_name(tk_ccid_level(rd->dev)));
			d[n].reader_slots = (uint8_t)rd->nslots;
		}
	}
	pthread_mutex_unlock(&b->mtx);
	*out = d;
	*count = n;
	return TK_OK;
}

static int
be_wait_change(void *be, int timeout_ms)
{
	ccid_be_t *b = be;
	int64_t end = tk_now_us() + (int64_t)(timeout_ms > 0 ? timeout_ms : 0) * 1000;
	int r = TK_ERR_TIMEOUT;

	pthread_mutex_lock(&b->mtx);
	for (;;) {
		if (b->cancelled) {
			b->cancelled = false;
			r = TK_ERR_CANCELLED;
			break;
		}
		if (b->version != b->seen) {
			r = TK_OK;
			break;
		}
		if (tk_now_us() >= end)
			break;
		tk_cond_wait_until_us(&b->cond, &b->mtx, end);
	}
	pthread_mutex_unlock(&b->mtx);
	return r;
}

static void
be_cancel(void *be)
{
	ccid_be_t *b = be;

	pthread_mutex_lock(&b->mtx);
	b->cancelled = true;
	pthread_cond_broadcast(&b->cond);
	pthread_mutex_unlock(&b->mtx);
}

/* With b->mtx held: the reader and slot called name. */
static rd_t *
find_locked(ccid_be_t *b, const char *name, unsigned *slot)
{
	for (size_t i = 0; i < b->nrds; i++)
		for (unsigned k = 0; k < b->rds[i]->nslots; k++)
			if (strcmp(b->rds[i]->slot[k].name, name) == 0) {
				*slot = k;
				return b->rds[i];
			}
	return NULL;
}

/* ---- connections --------------------------------------------------------------- */

static int
conn_connect(void *be, const char *reader, void **out, uint8_t *atr, size_t *atr_len, int *protocol)
{
	ccid_be_t *b = be;
	cconn_t *c;
	rd_t *rd;
	unsigned k = 0;
	int r;

	*out = NULL;
	pthread_mutex_lock(&b->mtx);
	rd = find_locked(b, reader, &k);
	if (rd != NULL)
		atomic_fetch_add(&rd->refs, 1);
	pthread_mutex_unlock(&b->mtx);
	if (rd == NULL)
		return TK_ERR_NO_READER;
	if ((c = calloc(1, sizeof(*c))) == NULL) {
		rd_unref(rd);
		return TK_ERR_NO_MEMORY;
	}
	c->b = b;
	c->rd = rd;
	c->slot = k;
	c->s = tk_ccid_slot(rd->dev, k);
	r = tk_ccid_power_on(c->s, atr, TK_READER_ATR_MAX, atr_len, protocol);
	if (r != TK_OK) {
		rd_unref(rd);
		free(c);
		r = conn_err(r);
		return r == TK_ERR_CARD_REMOVED ? TK_ERR_NO_CARD : r;
	}
	atomic_fetch_add(&b->refs, 1);
	pthread_mutex_lock(&b->mtx);
	rd->slot[k].conns++;
	pthread_mutex_unlock(&b->mtx);
	*out = c;
	return TK_OK;
}

static int
conn_transmit(void *conn, const uint8_t *cmd, size_t cmd_len, uint8_t *resp, size_t resp_cap,
              size_t *resp_len)
{
	cconn_t *c = conn;

	return conn_err(tk_ccid_transmit(c->s, cmd, cmd_len, resp, resp_cap, resp_len));
}

static int
conn_control(void *conn, uint32_t code, const uint8_t *in, size_t in_len, uint8_t *out,
             size_t out_cap, size_t *out_len)
{
	cconn_t *c = conn;

	*out_len = 0;
	if (code != ESCAPE_CODE)
		return TK_ERR_NOT_SUPPORTED;
	return conn_err(tk_ccid_escape(c->s, in, in_len, out, out_cap, out_len));
}

static int
conn_reset(void *conn, int how, uint8_t *atr, size_t *atr_len, int *protocol)
{
	cconn_t *c = conn;
	tk_ccid_slot_state_t st;
	int r;

	*atr_len = 0;
	switch (how) {
	case TK_READER_RECONNECT:
		/* the card as it is; powered again if it lost its power */
		r = tk_ccid_slot_status(c->s, &st);
		if (r != TK_OK && !st.present)
			return conn_err(r);
		if (!st.present)
			return TK_ERR_NO_CARD;
		if (st.active &&
		    tk_ccid_slot_atr(c->s, atr, TK_READER_ATR_MAX, atr_len, protocol) == TK_OK)
			return TK_OK;
		r = tk_ccid_power_on(c->s, atr, TK_READER_ATR_MAX, atr_len, protocol);
		break;
	case TK_READER_WARM_RESET:
		/* IccPowerOn to an active card: a warm reset (CCID 6.1.1) */
		r = tk_ccid_power_on(c->s, atr, TK_READER_ATR_MAX, atr_len, protocol);
		break;
	default:
		r = tk_ccid_power_cycle(c->s, atr, TK_READER_ATR_MAX, atr_len, protocol);
		break;
	}
	r = conn_err(r);
	return r == TK_ERR_CARD_REMOVED ? TK_ERR_NO_CARD : r;
}

/* The interface is ours alone: no transactions to take. */
static int
conn_begin(void *conn)
{
	(void)conn;
	return TK_OK;
}

static int
conn_status(void *conn)
{
	cconn_t *c = conn;
	tk_ccid_slot_state_t st;
	int r = tk_ccid_slot_status(c->s, &st);

	if (r != TK_OK && !st.present)
		return conn_err(r);
	if (!st.present)
		return TK_ERR_CARD_REMOVED;
	return st.active ? TK_OK : TK_ERR_CARD_RESET;
}

static void
conn_caps(void *conn, tk_reader_caps_t *caps)
{
	cconn_t *c = conn;
	tk_ccid_caps_t cc;

	memset(caps, 0, sizeof(*caps));
	tk_ccid_caps(c->s, &cc);
	caps->extended_apdu = cc.extended_apdu;
	caps->max_cmd = cc.max_cmd;
	caps->max_resp = cc.max_resp;
	caps->pin_pad_verify = cc.pin_pad_verify;
	caps->pin_pad_modify = cc.pin_pad_modify;
	caps->can_control = true;
}

static void
conn_disconnect(void *conn)
{
	cconn_t *c = conn;
	ccid_be_t *b;

	if (c == NULL)
		return;
	b = c->b;
	/* The card keeps its power, as PC/SC leaves it: the next connection
	 * (a recovery step, the same card after a restart) finds it as is. */
	pthread_mutex_lock(&b->mtx);
	c->rd->slot[c->slot].conns--;
	pthread_mutex_unlock(&b->mtx);
	rd_unref(c->rd);
	free(c);
	be_unref(b);
}

static int
conn_pinpad(void *conn, const tk_card_pinpad_t *req, uint8_t *resp, size_t cap, size_t *rlen)
{
	cconn_t *c = conn;
	tk_ccid_pin_op_t op;
	int r;

	*rlen = 0;
	memset(&op, 0, sizeof(op));
	op.operation = req->op == TK_PINPAD_MODIFY ? TK_CCID_PIN_OP_MODIFY : TK_CCID_PIN_OP_VERIFY;
	op.timeout = req->timeout_s;
	op.format = req->format;
	op.block = req->block;
	op.length_format = req->length_format;
	op.min_len = req->min_len;
	op.max_len = req->max_len;
	op.entry_validation = 0x02; /* the validation key */
	op.lang_id = 0x0409;
	if (op.operation == TK_CCID_PIN_OP_MODIFY) {
		op.offset_old = req->offset_old;
		op.offset_new = req->offset_new;
		op.confirm = req->confirm;
		op.num_messages = 3;
		op.msg_index[1] = 1;
		op.msg_index[2] = 2;
	} else {
		op.num_messages = 1;
	}
	op.apdu = req->apdu;
	op.apdu_len = req->apdu_len;
	r = tk_ccid_secure(c->s, &op, resp, cap, rlen);
	/* nobody typed (the pad's timeout) and cancel pressed stay what they
	 * are: the user's answer, not a reader fault */
	if (r == TK_ERR_TIMEOUT || r == TK_ERR_CANCELLED)
		return r;
	return conn_err(r);
}

/* ---- the USB steps of the recovery ladder ------------------------------------------ */

static int
be_fault_step(void *be, const char *name)
{
	ccid_be_t *b = be;
	enum tk_ccid_fault f = TK_CCID_FAULT_NONE;
	unsigned k;
	rd_t *rd;

	pthread_mutex_lock(&b->mtx);
	rd = find_locked(b, name, &k);
	if (rd != NULL)
		f = tk_ccid_last_fault(rd->dev);
	pthread_mutex_unlock(&b->mtx);
	switch (f) {
	case TK_CCID_FAULT_STALL:
		return TK_STEP_CLEAR_HALT;
	case TK_CCID_FAULT_TIMEOUT:
		return TK_STEP_ABORT; /* it stopped answering: end the command */
	default:
		/* garbage and stale frames are drained by the transport;
		 * the card-level ladder does the rest */
		return 0;
	}
}

/* With b->mtx held: another interface of rd's device has a card in use,
 * which a USB reset would power-cycle. */
static bool
sibling_in_use_locked(ccid_be_t *b, const rd_t *rd, char *who, size_t cap)
{
	for (size_t i = 0; i < b->nrds; i++) {
		const rd_t *o = b->rds[i];

		if (o == rd || o->f.bus != rd->f.bus || o->f.addr != rd->f.addr)
			continue;
		for (unsigned k = 0; k < o->nslots; k++)
			if (o->slot[k].conns > 0) {
				snprintf(who, cap, "%s", o->slot[k].name);
				return true;
			}
	}
	return false;
}

static int
be_recover(void *be, const char *name, int step)
{
	ccid_be_t *b = be;
	char who[TK_READER_NAME_MAX];
	unsigned k = 0;
	rd_t *rd;
	bool busy = false;
	int r;

	pthread_mutex_lock(&b->mtx);
	rd = find_locked(b, name, &k);
	if (rd != NULL) {
		atomic_fetch_add(&rd->refs, 1);
		busy = step == TK_STEP_USB_RESET && sibling_in_use_locked(b, rd, who, sizeof(who));
	}
	pthread_mutex_unlock(&b->mtx);
	if (rd == NULL)
		return TK_ERR_NO_READER;
	switch (step) {
	case TK_STEP_CLEAR_HALT:
		r = tk_ccid_clear_halt(rd->dev);
		break;
	case TK_STEP_ABORT:
		r = tk_ccid_abort(tk_ccid_slot(rd->dev, k));
		break;
	case TK_STEP_USB_RESET:
		if (busy) {
			tk_log_warn("ccid: %s: no USB reset: it would reset \"%s\" too, another "
			            "interface of the device, in use; this reader alone stays "
			            "quarantined",
			            name, who);
			r = TK_ERR_BUSY;
			break;
		}
		r = tk_ccid_reset_device(rd->dev);
		if (r == TK_ERR_READER_GONE) /* it came back as a new device */
			r = tk_ccid_reopen(rd->dev, REOPEN_MS);
		break;
	default:
		r = TK_ERR_NOT_SUPPORTED;
		break;
	}
	rd_unref(rd);
	return r;
}

const tk_reader_ops_t tk_reader_ccid_ops = {
        .name = "ccid",
        .open = be_open,
        .close = be_close,
        .enumerate = be_enumerate,
        .wait_change = be_wait_change,
        .cancel = be_cancel,
        .connect = conn_connect,
        .transmit = conn_transmit,
        .control = conn_control,
        .reset = conn_reset,
        .begin = conn_begin,
        .end = conn_begin,
        .status = conn_status,
        .caps = conn_caps,
        .disconnect = conn_disconnect,
        .pinpad = conn_pinpad,
        .fault_step = be_fault_step,
        .recover = be_recover,
};
