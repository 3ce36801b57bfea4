/* tk-slotmgr-probe: drives the slot manager against a real pcscd for the
 * integration tests, and prints what happened (one line per fact, flushed).
 *
 *   tk-slotmgr-probe watch SECONDS
 *       print events ("event <wall-clock ns> <type> slot=<id> ...") until
 *       SECONDS pass or stdin closes
 *   tk-slotmgr-probe rtt READER COUNT
 *       COUNT x SELECT PIV through tk_card_transmit; prints "rtt avg_us=..."
 *   tk-slotmgr-probe parallel READER_A READER_B COUNT
 *       COUNT APDUs on each reader from two threads at once
 *   tk-slotmgr-probe stall STALLED OTHER DEADLINE_MS
 *       one transmit with DEADLINE_MS on STALLED (the card holds it) while
 *       the main thread keeps sending to OTHER; prints the result, the
 *       elapsed time and how many APDUs OTHER answered meanwhile
 *   tk-slotmgr-probe survive READER SECONDS
 *       every 100 ms: get a card session and send one APDU; prints "ok" or
 *       "fail <err>" on every change, plus events, for SECONDS
 *   tk-slotmgr-probe churn READER_A READER_B THREADS ROUNDS
 *       THREADS threads, each ROUNDS times: a slot manager of its own, one
 *       APDU on each reader, the manager freed (its two workers drop their
 *       connections at once while other threads connect); prints
 *       "churn ok=<rounds with both APDUs answered> of=<rounds>". pcsc-lite
 *       1.9.9 crashed in SCardDisconnect under this (see conn_disconnect)
 *   tk-slotmgr-probe txn READER COUNT CARRY_MS HOLD_S
 *       a slot manager with tk_slotmgr_opts_t.txn_carry_ms = CARRY_MS;
 *       COUNT times: begin a transaction, one APDU, end it; prints
 *       "txn ok=<rounds that went through> begun=<transactions pcscd began>
 *       carried=<BEGINs that took over a carried one>" (tk_slotmgr_diag),
 *       then "idle", and keeps the manager (and its connection) HOLD_S
 *       seconds more before "done"
 *
 * Exit status 0 unless the arguments or the setup were wrong; the scripts
 * judge the output. */
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <poll.h>

#include <tokenkit/card.h>
#include <tokenkit/err.h>
#include <tokenkit/slot.h>

static const uint8_t select_piv[] = {0x00, 0xA4, 0x04, 0x00, 0x09, 0xA0, 0x00, 0x00,
                                     0x03, 0x08, 0x00, 0x00, 0x10, 0x00, 0x00};

static pthread_mutex_t out_mtx = PTHREAD_MUTEX_INITIALIZER;

static int64_t
mono_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static long long
wall_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static void say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static void
say(const char *fmt, ...)
{
	va_list ap;

	pthread_mutex_lock(&out_mtx);
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	fflush(stdout);
	pthread_mutex_unlock(&out_mtx);
}

static void
on_event(void *ctx, const tk_event_t *ev)
{
	(void)ctx;
	say("event %lld %s slot=%u state=%s reader=\"%s\" atr_len=%zu\n", wall_ns(),
	    tk_event_type_name(ev->type), ev->slot_id, tk_slot_state_name(ev->state),
	    ev->reader != NULL ? ev->reader : "", ev->atr_len);
}

static tk_slotmgr_t *
open_mgr_carry(bool events, int carry_ms)
{
	tk_slotmgr_opts_t o;
	tk_slotmgr_t *m = NULL;
	int r;

	tk_slotmgr_opts_init(&o);
	o.txn_carry_ms = carry_ms;
	r = tk_slotmgr_new(&o, &m);
	if (r != TK_OK) {
		fprintf(stderr, "probe: tk_slotmgr_new: %s\n", tk_strerror(r));
		exit(2);
	}
	if (events && tk_slotmgr_subscribe(m, on_event, NULL, true) < 0)
		exit(2);
	r = tk_slotmgr_wait_ready(m, 5000);
	say("ready %s\n", tk_errname(r));
	return m;
}

static tk_slotmgr_t *
open_mgr(bool events)
{
	return open_mgr_carry(events, 0);
}

/* Find the reader and wait (bounded) for a valid card in it. */
static int
get_card(tk_slotmgr_t *m, const char *reader, int wait_ms, tk_card_t **c)
{
	int64_t end = mono_us() + (int64_t)wait_ms * 1000;
	int r;

	*c = NULL;
	do {
		uint32_t id;

		r = tk_slotmgr_find(m, reader, &id);
		if (r == TK_OK)
			r = tk_slotmgr_card(m, id, c);
		if (r == TK_OK)
			return r;
		usleep(20000);
	} while (mono_us() < end);
	return r;
}

static int
send_select(tk_card_t *c, int timeout_ms)
{
	uint8_t resp[512];
	size_t n = 0;
	int r = tk_card_transmit(c, select_piv, sizeof(select_piv), resp, sizeof(resp), &n,
	                         timeout_ms);

	if (r == TK_OK && (n < 2 || resp[n - 2] != 0x90 || resp[n - 1] != 0x00) &&
	    !(n >= 2 && resp[n - 2] == 0x61))
		r = TK_ERR_SW_UNKNOWN;
	return r;
}

static int
cmd_watch(int secs)
{
	tk_slotmgr_t *m = open_mgr(true);
	int64_t end = mono_us() + (int64_t)secs * 1000000;

	while (mono_us() < end) {
		struct pollfd p = {.fd = 0, .events = POLLIN};
		char buf[64];

		if (poll(&p, 1, 100) > 0 && read(0, buf, sizeof(buf)) <= 0)
			break;
	}
	tk_slotmgr_free(&m);
	return 0;
}

static int
cmd_rtt(const char *reader, int count)
{
	tk_slotmgr_t *m = open_mgr(false);
	tk_card_t *c = NULL;
	int64_t t0, min = INT64_MAX, max = 0, sum = 0;
	int r, ok = 0;

	r = get_card(m, reader, 5000, &c);
	if (r != TK_OK) {
		say("card %s\n", tk_errname(r));
		tk_slotmgr_free(&m);
		return 0;
	}
	for (int i = 0; i < count; i++) {
		int64_t dt;

		t0 = mono_us();
		r = send_select(c, 2000);
		dt = mono_us() - t0;
		if (r != TK_OK) {
			say("apdu %d %s\n", i, tk_errname(r));
			continue;
		}
		ok++;
		sum += dt;
		min = dt < min ? dt : min;
		max = dt > max ? dt : max;
	}
	if (ok > 0)
		say("rtt ok=%d avg_us=%lld min_us=%lld max_us=%lld\n", ok, (long long)(sum / ok),
		    (long long)min, (long long)max);
	else
		say("rtt ok=0\n");
	tk_card_unref(&c);
	tk_slotmgr_free(&m);
	return 0;
}

static int
cmd_txn(const char *reader, int count, int carry_ms, int hold_s)
{
	tk_slotmgr_t *m = open_mgr_carry(false, carry_ms);
	tk_card_t *c = NULL;
	tk_slot_diag_t d;
	uint32_t id = 0;
	int r, ok = 0;

	r = get_card(m, reader, 5000, &c);
	if (r != TK_OK || tk_slotmgr_find(m, reader, &id) != TK_OK) {
		say("card %s\n", tk_errname(r));
		tk_card_unref(&c);
		tk_slotmgr_free(&m);
		return 0;
	}
	for (int i = 0; i < count; i++) {
		r = tk_card_begin(c);
		if (r == TK_OK) {
			r = send_select(c, 5000);
			int e = tk_card_end(c);
			r = r != TK_OK ? r : e;
		}
		if (r == TK_OK)
			ok++;
		else
			say("round %d %s\n", i, tk_errname(r));
	}
	r = tk_slotmgr_diag(m, id, &d);
	say("txn ok=%d begun=%llu carried=%llu (%s)\n", ok, (unsigned long long)d.txn_begun,
	    (unsigned long long)d.txn_carried, tk_errname(r));
	say("idle\n");
	sleep((unsigned)hold_s);
	say("done\n");
	tk_card_unref(&c);
	tk_slotmgr_free(&m);
	return 0;
}

typedef struct job {
	tk_card_t *c;
	int count, ok, timeout_ms, result;
	int64_t elapsed_us;
} job_t;

static void *
job_loop(void *p)
{
	job_t *j = p;

	for (int i = 0; i < j->count; i++)
		if (send_select(j->c, 2000) == TK_OK)
			j->ok++;
	return NULL;
}

static int
cmd_parallel(const char *ra, const char *rb, int count)
{
	tk_slotmgr_t *m = open_mgr(false);
	job_t a = {.count = count}, b = {.count = count};
	pthread_t ta, tb;
	int64_t t0;

	if (get_card(m, ra, 5000, &a.c) != TK_OK || get_card(m, rb, 5000, &b.c) != TK_OK) {
		say("card missing\n");
		goto out;
	}
	t0 = mono_us();
	pthread_create(&ta, NULL, job_loop, &a);
	pthread_create(&tb, NULL, job_loop, &b);
	pthread_join(ta, NULL);
	pthread_join(tb, NULL);
	say("parallel a_ok=%d b_ok=%d total_ms=%lld\n", a.ok, b.ok,
	    (long long)((mono_us() - t0) / 1000));
out:
	tk_card_unref(&a.c);
	tk_card_unref(&b.c);
	tk_slotmgr_free(&m);
	return 0;
}

static void *
job_once(void *p)
{
	job_t *j = p;
	int64_t t0 = mono_us();

	j->result = send_select(j->c, j->timeout_ms);
	j->elapsed_us = mono_us() - t0;
	return NULL;
}

static int
cmd_stall(const char *stalled, const char *other, int deadline_ms)
{
	tk_slotmgr_t *m = open_mgr(true);
	job_t s = {.timeout_ms = deadline_ms};
	tk_card_t *o = NULL;
	pthread_t t;
	int other_ok = 0, other_fail = 0, r;
	int64_t t0;

	if (get_card(m, stalled, 5000, &s.c) != TK_OK || get_card(m, other, 5000, &o) != TK_OK) {
		say("card missing\n");
		goto out;
	}
	say("stall-start\n");
	t0 = mono_us();
	pthread_create(&t, NULL, job_once, &s);
	/* Keep the other reader busy for the deadline plus a second. */
	while (mono_us() - t0 < (int64_t)(deadline_ms + 1000) * 1000) {
		if (send_select(o, 2000) == TK_OK)
			other_ok++;
		else
			other_fail++;
	}
	pthread_join(t, NULL);
	say("stalled result=%s elapsed_ms=%lld\n", tk_errname(s.result),
	    (long long)(s.elapsed_us / 1000));
	say("other ok=%d fail=%d\n", other_ok, other_fail);
	/* A second call on the stuck reader must not wait for its deadline. */
	t0 = mono_us();
	r = send_select(s.c, deadline_ms);
	say("stalled-again result=%s elapsed_ms=%lld\n", tk_errname(r),
	    (long long)((mono_us() - t0) / 1000));
	/* Wait for the script to release the card (stdin line), then check
	 * that the reader comes back. */
	say("waiting-release\n");
	{
		char line[64];
		if (fgets(line, sizeof(line), stdin) == NULL)
			goto out;
	}
	tk_card_unref(&s.c);
	r = get_card(m, stalled, 10000, &s.c);
	if (r == TK_OK)
		r = send_select(s.c, 2000);
	say("after-release result=%s\n", tk_errname(r));
out:
	tk_card_unref(&s.c);
	tk_card_unref(&o);
	tk_slotmgr_free(&m);
	return 0;
}

static int
cmd_survive(const char *reader, int secs)
{
	tk_slotmgr_t *m = open_mgr(true);
	int64_t end = mono_us() + (int64_t)secs * 1000000;
	tk_card_t *c = NULL;
	int last = 1, r;

	while (mono_us() < end) {
		if (c == NULL || !tk_card_present(c)) {
			uint32_t id;

			tk_card_unref(&c);
			r = tk_slotmgr_find(m, reader, &id);
			if (r == TK_OK)
				r = tk_slotmgr_card(m, id, &c);
		} else {
			r = TK_OK;
		}
		if (r == TK_OK)
			r = send_select(c, 2000);
		if (r != last) {
			if (r == TK_OK)
				say("ok %lld\n", wall_ns());
			else
				say("fail %s %lld\n", tk_errname(r), wall_ns());
			last = r;
		}
		if (r != TK_OK)
			tk_card_unref(&c);
		usleep(100000);
	}
	tk_card_unref(&c);
	tk_slotmgr_free(&m);
	return 0;
}

struct churn {
	const char *reader[2];
	int rounds, ok;
};

static void *
churn_thread(void *arg)
{
	struct churn *ch = arg;

	for (int i = 0; i < ch->rounds; i++) {
		tk_slotmgr_t *m = NULL;
		tk_slotmgr_opts_t o;
		int answered = 0;

		tk_slotmgr_opts_init(&o);
		if (tk_slotmgr_new(&o, &m) != TK_OK)
			continue;
		(void)tk_slotmgr_wait_ready(m, 5000);
		for (int k = 0; k < 2; k++) {
			tk_card_t *c = NULL;

			if (get_card(m, ch->reader[k], 5000, &c) == TK_OK &&
			    send_select(c, 5000) == TK_OK)
				answered++;
			tk_card_unref(&c);
		}
		tk_slotmgr_free(&m);
		if (answered == 2)
			ch->ok++;
	}
	return NULL;
}

static int
cmd_churn(const char *a, const char *b, int threads, int rounds)
{
	struct churn ch[16];
	pthread_t t[16];
	int ok = 0;

	if (threads < 1 || threads > 16)
		return 2;
	for (int i = 0; i < threads; i++) {
		ch[i] = (struct churn){.reader = {a, b}, .rounds = rounds};
		if (pthread_create(&t[i], NULL, churn_thread, &ch[i]) != 0)
			return 2;
	}
	for (int i = 0; i < threads; i++) {
		pthread_join(t[i], NULL);
		ok += ch[i].ok;
	}
	say("churn ok=%d of=%d\n", ok, threads * rounds);
	return 0;
}

int
main(int argc, char **argv)
{
	if (argc == 3 && strcmp(argv[1], "watch") == 0)
		return cmd_watch(atoi(argv[2]));
	if (argc == 4 && strcmp(argv[1], "rtt") == 0)
		return cmd_rtt(argv[2], atoi(argv[3]));
	if (argc == 5 && strcmp(argv[1], "parallel") == 0)
		return cmd_parallel(argv[2], argv[3], atoi(argv[4]));
	if (argc == 5 && strcmp(argv[1], "stall") == 0)
		return cmd_stall(argv[2], argv[3], atoi(argv[4]));
	if (argc == 4 && strcmp(argv[1], "survive") == 0)
		return cmd_survive(argv[2], atoi(argv[3]));
	if (argc == 6 && strcmp(argv[1], "txn") == 0)
		return cmd_txn(argv[2], atoi(argv[3]), atoi(argv[4]), atoi(argv[5]));
	if (argc == 6 && strcmp(argv[1], "churn") == 0)
		return cmd_churn(argv[2], argv[3], atoi(argv[4]), atoi(argv[5]));
	fprintf(stderr, "usage: see the comment at the top of slotmgr_probe.c\n");
	return 2;
}
