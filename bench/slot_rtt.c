/* slot_rtt: APDU round trip and card-insertion latency through the slot
 * manager, over any reader spec (e.g. "ccid" against the emulated USB
 * reader, "pcsc" against pcscd + libccid on the same emulation).
 *
 *   slot_rtt --readers SPEC [--reader SUBSTRING] [--count N] [--apdu HEX]
 *   slot_rtt --readers SPEC [--reader SUBSTRING] --insert CONTROL [--count N]
 *
 * The first form sends the APDU (default: SELECT of the PIV application)
 * N times (default 1000) with tk_card_transmit. The second takes the card
 * out and puts it back N times (default 20) through the control FIFO of
 * tests/ccid's ccid-emu-serve ("remove 0 0", "insert 0 0") and times each
 * insertion from the write to the slot manager's card-inserted event.
 * Both print the time from tk_slotmgr_new to the reader's slot with its
 * card (first_slot_us); the first also to the end of the first APDU
 * (first_apdu_us). Prints "key=value" lines; never judges the figures. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <tokenkit/err.h>
#include <tokenkit/hex.h>
#include <tokenkit/slot.h>

#include "clock.h"
#include "stats.h"

/* The slot of the first reader whose name holds want and has a card. */
static int
find_slot(tk_slotmgr_t *m, const char *want, uint32_t *id, char *name, size_t cap)
{
	/* polled every 2 ms (10 s at most): the time to the first slot is a figure */
	for (int tries = 0; tries < 5000; tries++) {
		tk_slot_info_t *in = NULL;
		size_t n = 0;

		if (tk_slotmgr_list(m, &in, &n) != TK_OK)
			return TK_ERR_INTERNAL;
		for (size_t i = 0; i < n; i++) {
			if ((want == NULL || strstr(in[i].reader, want) != NULL) &&
			    in[i].state == TK_SLOT_VALID) {
				*id = in[i].slot_id;
				snprintf(name, cap, "%s", in[i].reader);
				free(in);
				return TK_OK;
			}
		}
		free(in);
		usleep(2000);
	}
	return TK_ERR_NO_READER;
}

static struct {
	pthread_mutex_t mtx;
	pthread_cond_t cond;
	uint32_t slot;
	uint64_t inserted, removed;
	double last_insert_us;
} ev = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, 0, 0, 0};

static void
on_event(void *ctx, const tk_event_t *e)
{
	(void)ctx;
	pthread_mutex_lock(&ev.mtx);
	if (e->slot_id == ev.slot && e->type == TK_EVENT_CARD_INSERTED) {
		ev.inserted++;
		ev.last_insert_us = (double)tk_now_us();
	} else if (e->slot_id == ev.slot && e->type == TK_EVENT_CARD_REMOVED) {
		ev.removed++;
	}
	pthread_cond_broadcast(&ev.cond);
	pthread_mutex_unlock(&ev.mtx);
}

/* Wait until *counter reaches want (10 s at most). */
static int
wait_count(uint64_t *counter, uint64_t want)
{
	struct timespec dl;
	int r = 0;

	clock_gettime(CLOCK_REALTIME, &dl);
	dl.tv_sec += 10;
	pthread_mutex_lock(&ev.mtx);
	while (*counter < want && r != ETIMEDOUT)
		r = pthread_cond_timedwait(&ev.cond, &ev.mtx, &dl);
	pthread_mutex_unlock(&ev.mtx);
	return *counter >= want ? 0 : -1;
}

static int
control(int fd, const char *line)
{
	size_t n = strlen(line);

	return write(fd, line, n) == (ssize_t)n ? 0 : -1;
}

static int
insertions(tk_slotmgr_t *m, uint32_t id, const char *ctl, long count)
{
	double *lat = calloc((size_t)count, sizeof(double));
	int fd = open(ctl, O_WRONLY), sub, rc = 1;
	long done = 0;

	if (lat == NULL || fd < 0) {
		fprintf(stderr, "slot_rtt: %s: %s\n", ctl, strerror(errno));
		goto out;
	}
	ev.slot = id;
	sub = tk_slotmgr_subscribe(m, on_event, NULL, false);
	for (; done < count; done++) {
		uint64_t rem, ins;
		double t0;

		pthread_mutex_lock(&ev.mtx);
		rem = ev.removed;
		ins = ev.inserted;
		pthread_mutex_unlock(&ev.mtx);
		if (control(fd, "remove 0 0\n") != 0 || wait_count(&ev.removed, rem + 1) != 0)
			break;
		usleep(20000);
		t0 = (double)tk_now_us();
		if (control(fd, "insert 0 0\n") != 0 || wait_count(&ev.inserted, ins + 1) != 0)
			break;
		pthread_mutex_lock(&ev.mtx);
		lat[done] = ev.last_insert_us - t0;
		pthread_mutex_unlock(&ev.mtx);
		usleep(50000);
	}
	tk_slotmgr_unsubscribe(m, sub);
	if (done == 0) {
		fprintf(stderr, "slot_rtt: no insertion seen\n");
		goto out;
	}
	bench_stats("insert", lat, (size_t)done);
	rc = done == count ? 0 : 1;
out:
	if (fd >= 0)
		close(fd);
	free(lat);
	return rc;
}

int
main(int argc, char **argv)
{
	static const struct option opts[] = {
	        {"readers", required_argument, NULL, 'R'}, {"reader", required_argument, NULL, 'r'},
	        {"count", required_argument, NULL, 'n'},   {"apdu", required_argument, NULL, 'a'},
	        {"insert", required_argument, NULL, 'i'},  {NULL, 0, NULL, 0},
	};
	const char *spec = NULL, *want = NULL, *ctl = NULL;
	const char *apdu_hex = "00 A4 04 00 09 A0 00 00 03 08 00 00 10 00 00";
	long count = -1;
	uint8_t cmd[300], resp[300];
	size_t cmd_len = 0, n;
	tk_slotmgr_opts_t o;
	tk_slotmgr_t *m = NULL;
	tk_card_t *card = NULL;
	char name[256];
	double *rtt, t_start;
	uint32_t id = 0;
	int c, r, rc = 1;

	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (c) {
		case 'R':
			spec = optarg;
			break;
		case 'r':
			want = optarg;
			break;
		case 'n':
			count = strtol(optarg, NULL, 10);
			break;
		case 'a':
			apdu_hex = optarg;
			break;
		case 'i':
			ctl = optarg;
			break;
		default:
			fprintf(stderr,
			        "usage: slot_rtt --readers SPEC [--reader SUBSTRING] [--count N] "
			        "[--apdu HEX | --insert CONTROL]\n");
			return 2;
		}
	}
	if (count < 0)
		count = ctl != NULL ? 20 : 1000;
	if (count < 1 || tk_hex_decode(apdu_hex, cmd, sizeof(cmd), &cmd_len) != TK_OK) {
		fprintf(stderr, "slot_rtt: bad --count or --apdu\n");
		return 2;
	}
	t_start = (double)tk_now_us();
	tk_slotmgr_opts_init(&o);
	o.readers = spec;
	o.recovery_log = "";
	if ((r = tk_slotmgr_new(&o, &m)) != TK_OK ||
	    (r = tk_slotmgr_wait_ready(m, 10000)) != TK_OK ||
	    (r = find_slot(m, want, &id, name, sizeof(name))) != TK_OK) {
		fprintf(stderr, "slot_rtt: %s\n", tk_strerror(r));
		goto out;
	}
	printf("readers=%s\nreader=%s\nfirst_slot_us=%.0f\n", spec != NULL ? spec : "(default)",
	       name, (double)tk_now_us() - t_start);
	if (ctl != NULL) {
		rc = insertions(m, id, ctl, count);
		goto out;
	}
	if ((r = tk_slotmgr_card(m, id, &card)) != TK_OK) {
		fprintf(stderr, "slot_rtt: card: %s\n", tk_strerror(r));
		goto out;
	}
	if ((rtt = calloc((size_t)count, sizeof(double))) == NULL)
		goto out;
	/* one for the road: the first exchange sets things up */
	(void)tk_card_transmit(card, cmd, cmd_len, resp, sizeof(resp), &n, 0);
	printf("first_apdu_us=%.0f\n", (double)tk_now_us() - t_start);
	for (long i = 0; i < count; i++) {
		double t0 = (double)tk_now_us();

		r = tk_card_transmit(card, cmd, cmd_len, resp, sizeof(resp), &n, 0);
		rtt[i] = (double)tk_now_us() - t0;
		if (r != TK_OK) {
			fprintf(stderr, "slot_rtt: transmit %ld: %s\n", i, tk_strerror(r));
			free(rtt);
			goto out;
		}
	}
	bench_stats("rtt", rtt, (size_t)count);
	free(rtt);
	rc = 0;
out:
	tk_card_unref(&card);
	tk_slotmgr_free(&m);
	return rc;
}
