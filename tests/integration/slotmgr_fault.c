/* tk-slotmgr-fault: drives one slot manager with two readers (A faulty, B
 * healthy) for the fault-matrix scripts (tests/fault/test_fault_core_*.sh).
 *
 *   tk-slotmgr-fault READER_A READER_B DEADLINE_MS
 *
 * Reads commands from stdin, one per line; every answer is one or more
 * lines, the last being "done <n>" (n counts commands from 1). Events are
 * printed as they come ("event <type> <A|B|-> state=<state>").
 *   card X                  take a card session on reader X (A or B)
 *   tx X ro|rw [MS]         one transmit (ro: SELECT PIV; rw: GENERAL
 *                           AUTHENTICATE, which changes card state) with
 *                           deadline MS (default DEADLINE_MS):
 *                           "tx X result=<err> ms=<elapsed> sw=<SW>"
 *   bg start [MS]           a thread sending SELECT to B every 10 ms, each
 *                           with deadline MS (default DEADLINE_MS)
 *   bg count|stop           "bg ok=N fail=M max_ms=T max_at=S [first_fail=<err>@<ms>
 *                           first_fail_at=S]" (S: when that exchange began, in ms
 *                           since "bg start")
 *                           so far (count) or at the end (stop)
 *   wait X STATE SECONDS    "wait X STATE ok|timeout ms=<elapsed>"
 *   state X                 "state X <state> gen=<generation> rebinds=<n>"
 *   diag X                  counters and the last recovery
 *   reset X [cold]          tk_slotmgr_reset
 *   res                     "res threads=<n> fds=<n>" (/proc/self)
 *   quit                    free everything and exit (stdin EOF does too; a
 *                           daemon started meanwhile may hold the pipe open)
 *   settle SECONDS          wait until threads are back to the first "res"
 *                           count or SECONDS pass (abandoned workers exit
 *                           when their call returns): "settle threads=<n>"
 * Exit status 0 unless the setup failed; the scripts judge the output. */
#include <dirent.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <tokenkit/card.h>
#include <tokenkit/err.h>
#include <tokenkit/slot.h>

#include "../proc_count.h"

static const uint8_t select_piv[] = {0x00, 0xA4, 0x04, 0x00, 0x09, 0xA0, 0x00, 0x00,
                                     0x03, 0x08, 0x00, 0x00, 0x10, 0x00, 0x00};
/* GENERAL AUTHENTICATE with a malformed template: the card refuses it, but
 * it is a state-changing command and must never be repeated by us. */
static const uint8_t gen_auth[] = {0x00, 0x87, 0x07, 0x9A, 0x04, 0x7C, 0x02, 0x81, 0x00, 0x00};

static pthread_mutex_t out_mtx = PTHREAD_MUTEX_INITIALIZER;
static tk_slotmgr_t *mgr;
static const char *names[2];
static uint32_t ids[2];
static tk_card_t *cards[2];
static int deadline_ms;

static struct {
	pthread_t th;
	bool running, stop;
	unsigned long ok, fail;
	int64_t t0_us; /* "bg start" */
	int64_t max_us, max_at_us;
	int deadline_ms;
	int first_fail;        /* the first failed exchange's error... */
	int64_t first_fail_us; /* ...and how long it took */
	int64_t first_fail_at_us;
	pthread_mutex_t mtx;
} bg = {.mtx = PTHREAD_MUTEX_INITIALIZER};

static void say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static void
say(const char *fmt, ...)
{
	va_list ap;

	pthread_mutex_lock(&out_mtx);
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	putchar('\n');
	fflush(stdout);
	pthread_mutex_unlock(&out_mtx);
}

static int64_t
mono_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static void
sleep_ms(int ms)
{
	struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};

	nanosleep(&ts, NULL);
}

static int
which(uint32_t slot)
{
	return slot == ids[0] ? 0 : slot == ids[1] ? 1 : -1;
}

static void
on_event(void *ctx, const tk_event_t *ev)
{
	int w = which(ev->slot_id);

	(void)ctx;
	say("event %s %s state=%s", tk_event_type_name(ev->type),
	    w < 0    ? "-"
	    : w == 0 ? "A"
	             : "B",
	    tk_slot_state_name(ev->state));
}

static void *
bg_main(void *arg)
{
	uint8_t resp[258];
	size_t n;

	(void)arg;
	for (;;) {
		int64_t t0 = mono_us(), dt;
		int r;
		tk_card_t *c;

		pthread_mutex_lock(&bg.mtx);
		if (bg.stop) {
			pthread_mutex_unlock(&bg.mtx);
			break;
		}
		c = tk_card_ref(cards[1]);
		pthread_mutex_unlock(&bg.mtx);
		r = c != NULL ? tk_card_transmit(c, select_piv, sizeof(select_piv), resp,
		                                 sizeof(resp), &n, bg.deadline_ms)
		              : TK_ERR_NO_CARD;
		tk_card_unref(&c);
		dt = mono_us() - t0;
		pthread_mutex_lock(&bg.mtx);
		if (r == TK_OK && n >= 2 && resp[n - 2] == 0x90) {
			bg.ok++;
		} else if (bg.fail++ == 0) {
			bg.first_fail = r != TK_OK ? r : TK_ERR_COMM;
			bg.first_fail_us = dt;
			bg.first_fail_at_us = t0 - bg.t0_us;
		}
		if (dt > bg.max_us) {
			bg.max_us = dt;
			bg.max_at_us = t0 - bg.t0_us;
		}
		pthread_mutex_unlock(&bg.mtx);
		sleep_ms(10);
	}
	return NULL;
}

static void
bg_say(void)
{
	char first[96] = "";

	pthread_mutex_lock(&bg.mtx);
	if (bg.fail > 0)
		snprintf(first, sizeof(first), " first_fail=%s@%lld first_fail_at=%lld",
		         tk_errname(bg.first_fail), (long long)(bg.first_fail_us / 1000),
		         (long long)(bg.first_fail_at_us / 1000));
	say("bg ok=%lu fail=%lu max_ms=%lld max_at=%lld%s", bg.ok, bg.fail,
	    (long long)(bg.max_us / 1000), (long long)(bg.max_at_us / 1000), first);
	pthread_mutex_unlock(&bg.mtx);
}

static int
reader_arg(const char *s)
{
	return s != NULL && strcmp(s, "B") == 0 ? 1 : 0;
}

static void
cmd_card(int x)
{
	int r;

	pthread_mutex_lock(&bg.mtx);
	tk_card_unref(&cards[x]);
	pthread_mutex_unlock(&bg.mtx);
	/* The card may be probing or recovering: a bounded wait. */
	for (int i = 0; i < 50; i++) {
		tk_card_t *c = NULL;

		r = tk_slotmgr_card(mgr, ids[x], &c);
		if (r == TK_OK) {
			pthread_mutex_lock(&bg.mtx);
			cards[x] = c;
			pthread_mutex_unlock(&bg.mtx);
			break;
		}
		sleep_ms(100);
	}
	say("card %c result=%s", 'A' + x, tk_errname(r));
}

static void
cmd_tx(int x, const char *kind, int ms)
{
	uint8_t resp[258];
	size_t n = 0;
	int64_t t0 = mono_us();
	bool ro = kind == NULL || strcmp(kind, "rw") != 0;
	int r;

	if (cards[x] == NULL) {
		say("tx %c result=TK_ERR_NO_CARD ms=0 sw=-", 'A' + x);
		return;
	}
	r = tk_card_transmit(cards[x], ro ? select_piv : gen_auth,
	                     ro ? sizeof(select_piv) : sizeof(gen_auth), resp, sizeof(resp), &n,
	                     ms > 0 ? ms : deadline_ms);
	if (r == TK_OK && n >= 2)
		say("tx %c result=%s ms=%lld sw=%02X%02X", 'A' + x, tk_errname(r),
		    (long long)((mono_us() - t0) / 1000), resp[n - 2], resp[n - 1]);
	else
		say("tx %c result=%s ms=%lld sw=-", 'A' + x, tk_errname(r),
		    (long long)((mono_us() - t0) / 1000));
}

static void
cmd_wait(int x, const char *state, int secs)
{
	int64_t t0 = mono_us(), end = t0 + (int64_t)secs * 1000000;
	tk_slot_info_t info;

	do {
		if (tk_slotmgr_info(mgr, ids[x], &info) == TK_OK &&
		    strcmp(tk_slot_state_name(info.state), state) == 0) {
			say("wait %c %s ok ms=%lld", 'A' + x, state,
			    (long long)((mono_us() - t0) / 1000));
			return;
		}
		sleep_ms(10);
	} while (mono_us() < end);
	say("wait %c %s timeout ms=%lld", 'A' + x, state, (long long)((mono_us() - t0) / 1000));
}

static void
cmd_diag(int x)
{
	tk_slot_diag_t *d = calloc(1, sizeof(*d));

	if (d == NULL || tk_slotmgr_diag(mgr, ids[x], d) != TK_OK) {
		say("diag %c failed", 'A' + x);
		free(d);
		return;
	}
	say("diag %c state=%s transmits=%llu errors=%llu timeouts=%llu comm=%llu "
	    "recoveries=%llu failed=%llu retried_ok=%llu abandoned=%llu stuck=%d p50_us=%u "
	    "max_us=%u",
	    'A' + x, tk_slot_state_name(d->info.state), (unsigned long long)d->transmits,
	    (unsigned long long)d->errors, (unsigned long long)d->timeouts,
	    (unsigned long long)d->err_comm, (unsigned long long)d->recoveries,
	    (unsigned long long)d->recoveries_failed, (unsigned long long)d->retried_ok,
	    (unsigned long long)d->abandoned_workers, d->stuck ? 1 : 0, d->lat_p50_us,
	    d->lat_max_us);
	for (size_t i = 0; i < d->nhistory; i++) {
		const tk_recovery_t *r = &d->history[i];

		say("recovery %c id=%llu fault=%s what=%s cured_by=%s outcome=%s nsteps=%zu "
		    "ms=%lld",
		    'A' + x, (unsigned long long)r->id, tk_errname(r->fault), r->what,
		    tk_recovery_step_name(r->cured_by), tk_errname(r->outcome), r->nsteps,
		    (long long)(r->duration_us / 1000));
	}
	free(d);
}

int
main(int argc, char **argv)
{
	tk_slotmgr_opts_t o;
	char line[256];
	unsigned long seq = 0;
	int base_threads = -1, r;

	setvbuf(stdout, NULL, _IOLBF, 0);
	if (argc != 4) {
		fprintf(stderr, "usage: %s READER_A READER_B DEADLINE_MS\n", argv[0]);
		return 2;
	}
	names[0] = argv[1];
	names[1] = argv[2];
	deadline_ms = atoi(argv[3]);
	tk_slotmgr_opts_init(&o);
	o.transmit_timeout_ms = deadline_ms;
	o.backoff_min_ms = 250;
	o.backoff_max_ms = 2000;
	r = tk_slotmgr_new(&o, &mgr);
	if (r == TK_OK)
		r = tk_slotmgr_wait_ready(mgr, 10000);
	for (int x = 0; r == TK_OK && x < 2; x++)
		r = tk_slotmgr_find(mgr, names[x], &ids[x]);
	if (r != TK_OK) {
		fprintf(stderr, "setup: %s\n", tk_strerror(r));
		tk_slotmgr_free(&mgr);
		return 1;
	}
	if (tk_slotmgr_subscribe(mgr, on_event, NULL, false) <= 0)
		return 1;
	say("ready");
	while (fgets(line, sizeof(line), stdin) != NULL) {
		char *argv2[6] = {0};
		int n = 0;

		for (char *tok = strtok(line, " \t\n"); tok != NULL && n < 6;
		     tok = strtok(NULL, " \t\n"))
			argv2[n++] = tok;
		if (n == 0)
			continue;
		seq++;
		if (strcmp(argv2[0], "quit") == 0) {
			say("done %lu", seq);
			break;
		} else if (strcmp(argv2[0], "card") == 0) {
			cmd_card(reader_arg(argv2[1]));
		} else if (strcmp(argv2[0], "tx") == 0) {
			cmd_tx(reader_arg(argv2[1]), argv2[2], argv2[3] ? atoi(argv2[3]) : 0);
		} else if (strcmp(argv2[0], "bg") == 0 && argv2[1] != NULL) {
			if (strcmp(argv2[1], "start") == 0 && !bg.running) {
				bg.stop = false;
				bg.ok = bg.fail = 0;
				bg.max_us = bg.max_at_us = 0;
				bg.t0_us = mono_us();
				bg.deadline_ms = argv2[2] != NULL ? atoi(argv2[2]) : deadline_ms;
				bg.running = pthread_create(&bg.th, NULL, bg_main, NULL) == 0;
			} else if (strcmp(argv2[1], "stop") == 0 && bg.running) {
				pthread_mutex_lock(&bg.mtx);
				bg.stop = true;
				pthread_mutex_unlock(&bg.mtx);
				pthread_join(bg.th, NULL);
				bg.running = false;
				bg_say();
			} else if (strcmp(argv2[1], "count") == 0 && bg.running) {
				bg_say();
			}
		} else if (strcmp(argv2[0], "wait") == 0 && n >= 4) {
			cmd_wait(reader_arg(argv2[1]), argv2[2], atoi(argv2[3]));
		} else if (strcmp(argv2[0], "state") == 0) {
			int x = reader_arg(argv2[1]);
			tk_slot_info_t info;

			(void)tk_slotmgr_info(mgr, ids[x], &info);
			say("state %c %s gen=%llu rebinds=%llu present=%d", 'A' + x,
			    tk_slot_state_name(info.state),
			    (unsigned long long)tk_card_generation(cards[x]),
			    (unsigned long long)tk_card_rebinds(cards[x]),
			    tk_card_present(cards[x]) ? 1 : 0);
		} else if (strcmp(argv2[0], "diag") == 0) {
			cmd_diag(reader_arg(argv2[1]));
		} else if (strcmp(argv2[0], "reset") == 0) {
			int x = reader_arg(argv2[1]);
			tk_recovery_t rec;

			r = tk_slotmgr_reset(mgr, ids[x], argv2[2] != NULL, 0, &rec);
			say("reset %c result=%s cured_by=%s", 'A' + x, tk_errname(r),
			    tk_recovery_step_name(rec.cured_by));
		} else if (strcmp(argv2[0], "res") == 0) {
			if (base_threads < 0)
				base_threads = tk_test_threads();
			say("res threads=%d fds=%d", tk_test_threads(), tk_test_fds());
		} else if (strcmp(argv2[0], "settle") == 0 && n >= 2) {
			int64_t end = mono_us() + (int64_t)atoi(argv2[1]) * 1000000;

			while (tk_test_threads() > base_threads && mono_us() < end)
				sleep_ms(20);
			say("settle threads=%d fds=%d", tk_test_threads(), tk_test_fds());
		} else {
			say("unknown command %s", argv2[0]);
		}
		say("done %lu", seq);
	}
	if (bg.running) {
		pthread_mutex_lock(&bg.mtx);
		bg.stop = true;
		pthread_mutex_unlock(&bg.mtx);
		pthread_join(bg.th, NULL);
	}
	tk_card_unref(&cards[0]);
	tk_card_unref(&cards[1]);
	tk_slotmgr_free(&mgr);
	return 0;
}
