/* tokenkit-vcard: serve the virtual PIV card to a real pcscd through the
 * vsmartcard vpcd driver (see VPCD.md).
 *
 * The card is the TCP client of vpcd. Messages in both directions are a
 * big-endian uint16 length and that many bytes; length 1 is a control byte
 * (00 power off, 01 power on, 02 reset, 04 get ATR), anything longer is an
 * APDU. The program reconnects whenever the connection fails or drops (a
 * pcscd restart), applies the card's latency profile and the injected
 * faults (fault.h), and takes fault specs over a UNIX control socket. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <tokenkit/apdu.h>
#include <tokenkit/err.h>
#include <tokenkit/log.h>
#include <tokenkit/mem.h>

#include "control.h"
#include "fault.h"
#include "vcard.h"
#include "vpcd_frame.h"

#define FRAME_MAX TK_VPCD_FRAME_MAX
#define RECV_CHUNK 4096
#define BACKOFF_MIN_MS 50u
#define BACKOFF_MAX_MS 500u
#define SEND_TIMEOUT_MS 5000
#define DEFAULT_PORT 35963

static volatile sig_atomic_t stop_requested;

struct server {
	tk_vcard_t *card;
	tk_fault_t *fault;
	const char *host;
	const char *port;
	const char *control_path;
	int fd;  /* connection to vpcd, -1 when none */
	int lfd; /* control socket, -1 when none */
	/* receive state: the frame decoder, on rx (FRAME_MAX bytes) */
	tk_vpcd_dec_t dec;
	uint8_t *rx;
	/* a response waiting for its due time (latency, delay fault) */
	bool resp_pending;
	uint8_t *resp;
	size_t resp_len;
	bool resp_secret; /* the last command's answer carries a secret (log.h) */
	struct timespec resp_due;
	/* an APDU held by stall/mute */
	uint8_t *held;
	size_t held_len;
	/* reconnection */
	struct timespec next_connect;
	uint32_t backoff_ms;
	/* counters for status */
	unsigned long connects, atr_requests, apdus_in;
	bool powered;
};

static void
on_signal(int sig)
{
	(void)sig;
	stop_requested = 1;
}

static void
now(struct timespec *ts)
{
	clock_gettime(CLOCK_MONOTONIC, ts);
}

static void
ts_add_us(struct timespec *ts, uint64_t us)
{
	ts->tv_sec += (time_t)(us / 1000000u);
	ts->tv_nsec += (long)(us % 1000000u) * 1000;
	if (ts->tv_nsec >= 1000000000L) {
		ts->tv_sec++;
		ts->tv_nsec -= 1000000000L;
	}
}

/* a - b in microseconds, may be negative */
static int64_t
ts_diff_us(const struct timespec *a, const struct timespec *b)
{
	return (int64_t)(a->tv_sec - b->tv_sec) * 1000000 + (a->tv_nsec - b->tv_nsec) / 1000;
}

static void
quickack(int fd)
{
	int one = 1;

	/* vpcd sends header and payload separately: without this every APDU
	 * waits for the delayed ACK (VPCD.md). */
	(void)setsockopt(fd, IPPROTO_TCP, TCP_QUICKACK, &one, sizeof(one));
}

static void
drop_connection(struct server *s, const char *why, uint32_t away_ms)
{
	if (s->fd >= 0) {
		tk_log_info("vpcd %s:%s: disconnected (%s)", s->host, s->port, why);
		close(s->fd);
	}
	s->fd = -1;
	tk_vpcd_dec_reset(&s->dec);
	s->resp_pending = false;
	if (s->held_len > 0 || tk_fault_holding(s->fault)) {
		tk_wipe(s->held, FRAME_MAX);
		s->held_len = 0;
		tk_fault_drop_held(s->fault);
	}
	s->atr_requests = 0;
	s->powered = false;
	tk_vcard_power_off(s->card);
	now(&s->next_connect);
	ts_add_us(&s->next_connect, (uint64_t)away_ms * 1000u);
}

static int
try_connect(struct server *s)
{
	struct addrinfo hints, *res = NULL, *ai;
	int fd = -1, one = 1, r;

	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	r = getaddrinfo(s->host, s->port, &hints, &res);
	if (r != 0) {
		tk_log_error("vpcd %s:%s: %s", s->host, s->port, gai_strerror(r));
		return TK_ERR_INVALID_ARG;
	}
	for (ai = res; ai != NULL; ai = ai->ai_next) {
		fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
		if (fd < 0)
			continue;
		if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0)
			break;
		close(fd);
		fd = -1;
	}
	freeaddrinfo(res);
	if (fd < 0)
		return TK_ERR_IO;
	(void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	quickack(fd);
	if (fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK) != 0) {
		close(fd);
		return TK_ERR_IO;
	}
	s->fd = fd;
	s->connects++;
	s->backoff_ms = BACKOFF_MIN_MS;
	tk_log_info("vpcd %s:%s: connected (card inserted)", s->host, s->port);
	return TK_OK;
}

/* Send one frame; bounded by SEND_TIMEOUT_MS. */
static int
send_frame(struct server *s, const uint8_t *p, size_t len)
{
	uint8_t hdr[TK_VPCD_HDR_LEN];
	const uint8_t *parts[2] = {hdr, p};
	size_t lens[2] = {sizeof(hdr), len};
	int r;

	if (s->fd < 0)
		return TK_ERR_IO;
	if ((r = tk_vpcd_frame_header(len, hdr)) != TK_OK) {
		tk_log_error("%s: %zu bytes: %s", __func__, len, tk_strerror(r));
		return r;
	}
	for (int i = 0; i < 2; i++) {
		size_t off = 0;

		while (off < lens[i]) {
			ssize_t n = send(s->fd, parts[i] + off, lens[i] - off, MSG_NOSIGNAL);

			if (n > 0) {
				off += (size_t)n;
				continue;
			}
			if (n < 0 && errno == EINTR)
				continue;
			if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
				struct pollfd pfd = {.fd = s->fd, .events = POLLOUT};

				if (poll(&pfd, 1, SEND_TIMEOUT_MS) > 0)
					continue;
			}
			drop_connection(s, "send failed", s->backoff_ms);
			return TK_ERR_IO;
		}
	}
	return TK_OK;
}

static void
queue_response(struct server *s, size_t len, uint64_t delay_us)
{
	s->resp_len = len;
	now(&s->resp_due);
	ts_add_us(&s->resp_due, delay_us);
	s->resp_pending = true;
}

static void
flush_response(struct server *s)
{
	struct timespec t;

	if (!s->resp_pending)
		return;
	now(&t);
	if (ts_diff_us(&s->resp_due, &t) > 0)
		return;
	s->resp_pending = false;
	tk_log_apdu_response(TK_LOG_TRACE, "card >>", s->resp, s->resp_len, s->resp_secret);
	(void)send_frame(s, s->resp, s->resp_len);
}

/* Run the card on an APDU and queue the answer after its latency. */
static void
answer_apdu(struct server *s, const uint8_t *cmd, size_t len, uint32_t extra_ms)
{
	uint8_t *out = s->resp;
	size_t n;
	uint64_t lat = tk_vcard_latency_us(s->card, cmd, len);

	n = tk_vcard_process(s->card, cmd, len, out, TK_APDU_MAX_RESP);
	if (n > FRAME_MAX) {
		tk_log_error("response of %zu bytes does not fit a vpcd frame", n);
		out[0] = 0x6F;
		out[1] = 0x00;
		n = 2;
	}
	queue_response(s, n, lat + (uint64_t)extra_ms * 1000u);
}

static void
handle_apdu(struct server *s, const uint8_t *cmd, size_t len)
{
	uint32_t extra_ms = 0;
	enum tk_fault_action a;

	s->apdus_in++;
	tk_log_apdu(TK_LOG_TRACE, "card <<", cmd, len, true);
	s->resp_secret = tk_apdu_response_is_sensitive(cmd, len, s->resp_secret);
	a = tk_fault_on_apdu(s->fault, &extra_ms);
	switch (a) {
	case TK_FAULT_PASS:
		answer_apdu(s, cmd, len, extra_ms);
		break;
	case TK_FAULT_HOLD:
	case TK_FAULT_MUTE: /* vpcd has no reader timeout: both hold */
		tk_log_info("fault: holding APDU unanswered");
		memcpy(s->held, cmd, len);
		s->held_len = len;
		break;
	case TK_FAULT_CLOSE:
		tk_log_info("fault: closing with an APDU outstanding");
		drop_connection(s, "fault close", tk_fault_away_ms(s->fault));
		break;
	case TK_FAULT_GARBAGE:
		queue_response(s, tk_fault_garbage(s->resp, 64), 0);
		break;
	case TK_FAULT_SHORT:
		s->resp[0] = 0x90;
		queue_response(s, 1, 0);
		break;
	case TK_FAULT_EMPTY:
		queue_response(s, 0, 0);
		break;
	}
}

static void
handle_message(struct server *s, const uint8_t *m, size_t len)
{
	uint8_t atr[33];
	size_t n;

	if (len >= 2) {
		handle_apdu(s, m, len);
		return;
	}
	if (len == 0) {
		tk_log_warn("vpcd sent an empty message");
		return;
	}
	switch (m[0]) {
	case 0x00:
		tk_log_debug("vpcd: power off");
		s->powered = false;
		tk_vcard_power_off(s->card);
		if (tk_fault_on_power(s->fault, true)) {
			s->held_len = 0;
			tk_log_info("fault: mute ended by power off");
		}
		break;
	case 0x01:
		tk_log_debug("vpcd: power on");
		s->powered = true;
		tk_vcard_power_on(s->card);
		break;
	case 0x02:
		tk_log_debug("vpcd: reset");
		s->powered = true;
		tk_vcard_reset(s->card);
		if (tk_fault_on_power(s->fault, false)) {
			s->held_len = 0;
			tk_log_info("fault: mute ended by reset");
		}
		break;
	case 0x04:
		s->atr_requests++;
		n = tk_vcard_atr(s->card, atr, sizeof(atr));
		if (s->atr_requests == 1)
			tk_log_debug("vpcd: first ATR request");
		(void)send_frame(s, atr, n);
		break;
	default:
		tk_log_warn("vpcd: unknown control byte %02X", m[0]);
		break;
	}
}

/* Read what is available; handle each complete message. Never reads past
 * the end of the current message: the next one waits in the socket until
 * this one's answer has gone out (resp_pending). */
static void
read_vpcd(struct server *s)
{
	uint8_t chunk[RECV_CHUNK];

	for (int rounds = 0; rounds < 64 && s->fd >= 0 && !s->resp_pending; rounds++) {
		const uint8_t *msg;
		size_t want = tk_vpcd_dec_want(&s->dec), used, len;
		ssize_t n;
		int r;

		n = recv(s->fd, chunk, want < sizeof(chunk) ? want : sizeof(chunk), 0);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return;
		if (n <= 0) {
			drop_connection(s, n == 0 ? "closed by vpcd" : strerror(errno),
			                s->backoff_ms);
			return;
		}
		quickack(s->fd);
		r = tk_vpcd_dec_feed(&s->dec, chunk, (size_t)n, &used, &msg, &len);
		tk_wipe(chunk, (size_t)n);
		if (r != TK_OK) {
			/* cannot happen: rx takes the longest frame */
			tk_log_error("%s: %s", __func__, tk_strerror(r));
			drop_connection(s, "bad frame", s->backoff_ms);
			return;
		}
		if (msg != NULL) {
			handle_message(s, msg, len);
			tk_vpcd_dec_reset(&s->dec);
		}
	}
}

/* ---- control channel ---------------------------------------------------- */

static void
status_line(struct server *s, char *out, size_t cap)
{
	char f[128];

	tk_fault_describe(s->fault, f, sizeof(f));
	snprintf(out, cap,
	         "ok connected=%d seen=%d powered=%d atr_requests=%lu connects=%lu apdus=%lu "
	         "card_apdus=%llu %s\n",
	         s->fd >= 0 ? 1 : 0, s->fd >= 0 && s->atr_requests > 0 ? 1 : 0, s->powered ? 1 : 0,
	         s->atr_requests, s->connects, s->apdus_in,
	         (unsigned long long)tk_vcard_apdu_count(s->card), f);
}

static void
after_fault_change(struct server *s)
{
	if (!tk_fault_present(s->fault)) {
		if (s->fd >= 0)
			drop_connection(s, "fault remove", 0);
		return;
	}
	if (s->fd < 0) {
		/* insert: come back now */
		now(&s->next_connect);
	}
	if (tk_fault_release_ready(s->fault)) {
		tk_fault_released(s->fault);
		if (s->held_len > 0 && s->fd >= 0) {
			tk_log_info("fault cleared: answering the held APDU");
			answer_apdu(s, s->held, s->held_len, 0);
		}
		s->held_len = 0;
	}
}

static void
serve_control(struct server *s)
{
	char line[300], reply[400], err[160];
	int c = accept4(s->lfd, NULL, NULL, SOCK_CLOEXEC);

	if (c < 0)
		return;
	if (tk_vc_control_read_line(c, line, sizeof(line)) != 0) {
		close(c);
		return;
	}
	if (strcmp(line, "status") == 0) {
		status_line(s, reply, sizeof(reply));
	} else if (tk_fault_apply(s->fault, line, err, sizeof(err)) == TK_OK) {
		tk_log_info("fault: %s", line);
		after_fault_change(s);
		snprintf(reply, sizeof(reply), "ok\n");
	} else {
		snprintf(reply, sizeof(reply), "error: %s\n", err);
	}
	(void)send(c, reply, strlen(reply), MSG_NOSIGNAL);
	close(c);
}

/* --send: be a client of a running card's control socket. */
static int
control_send(const char *path, const char *cmd)
{
	char reply[512];
	int r = tk_vc_control_send(path, cmd, reply, sizeof(reply));

	if (r == 2) {
		fprintf(stderr, "tokenkit-vcard: %s: %s\n", path, strerror(errno));
		return 2;
	}
	fputs(reply, stdout);
	return r;
}

/* ---- main loop ------------------------------------------------------------ */

static int
poll_timeout_ms(struct server *s)
{
	struct timespec t;
	int64_t us = -1;

	now(&t);
	if (s->resp_pending)
		us = ts_diff_us(&s->resp_due, &t);
	else if (s->fd < 0 && tk_fault_present(s->fault))
		us = ts_diff_us(&s->next_connect, &t);
	if (us < 0 && (s->resp_pending || (s->fd < 0 && tk_fault_present(s->fault))))
		return 0;
	if (us < 0)
		return 1000;
	if (us > 1000000)
		return 1000;
	return (int)((us + 999) / 1000);
}

static void
wait_precisely(struct server *s)
{
	struct timespec t;
	int64_t us;

	/* poll() has millisecond granularity; latency profiles need better */
	if (!s->resp_pending)
		return;
	now(&t);
	us = ts_diff_us(&s->resp_due, &t);
	if (us > 0 && us < 2000)
		clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &s->resp_due, NULL);
}

static int
run(struct server *s, const sigset_t *waitmask)
{
	while (!stop_requested) {
		struct pollfd pfd[2];
		struct timespec to, t;
		nfds_t n = 0;
		int ms, vi = -1, li = -1;

		if (s->fd < 0 && tk_fault_present(s->fault)) {
			now(&t);
			if (ts_diff_us(&t, &s->next_connect) >= 0 && try_connect(s) != TK_OK) {
				now(&s->next_connect);
				ts_add_us(&s->next_connect, (uint64_t)s->backoff_ms * 1000u);
				s->backoff_ms = s->backoff_ms * 2 > BACKOFF_MAX_MS
				                        ? BACKOFF_MAX_MS
				                        : s->backoff_ms * 2;
			}
		}
		wait_precisely(s);
		flush_response(s);
		if (s->fd >= 0 && !s->resp_pending) {
			vi = (int)n;
			pfd[n].fd = s->fd;
			pfd[n].events = POLLIN;
			n++;
		}
		if (s->lfd >= 0) {
			li = (int)n;
			pfd[n].fd = s->lfd;
			pfd[n].events = POLLIN;
			n++;
		}
		ms = poll_timeout_ms(s);
		to.tv_sec = ms / 1000;
		to.tv_nsec = (long)(ms % 1000) * 1000000L;
		if (ppoll(pfd, n, &to, waitmask) < 0) {
			if (errno == EINTR)
				continue;
			tk_log_error("poll: %s", strerror(errno));
			return 1;
		}
		if (vi >= 0 && (pfd[vi].revents & (POLLIN | POLLHUP | POLLERR)))
			read_vpcd(s);
		if (li >= 0 && (pfd[li].revents & POLLIN))
			serve_control(s);
	}
	tk_log_info("stopping");
	return 0;
}

static void
usage(FILE *f)
{
	fprintf(f,
	        "usage: tokenkit-vcard [--state FILE] --vpcd [HOST:]PORT [--latency "
	        "none|yubikey5]\n"
	        "                      [--applet piv|openpgp|both] [--control PATH] [--fault "
	        "SPEC]\n"
	        "                      [--option OPT]...\n"
	        "       tokenkit-vcard --control PATH --send 'SPEC|status'\n"
	        "Serves the virtual card to pcscd through vpcd (default 127.0.0.1:%d).\n"
	        "--applet chooses the applets of a new card (default piv).\n"
	        "Fault specs: none, delay=MS, stall, close[=MS], garbage, short, empty,\n"
	        "remove, insert, mute, with optional count=N. TOKENKIT_LOG=trace shows APDUs.\n"
	        "Card options: no-extended=6700|6A82 (the ATR announces extended length, the\n"
	        "card answers every extended APDU with that status word); firmware=5.7.1\n"
	        "(the YubiKey firmware version it reports; default 5.4.3).\n",
	        DEFAULT_PORT);
}

/* arg is a copy (the caller's argv stays intact for ps). */
static int
split_hostport(char *arg, const char **host, const char **port)
{
	char *colon = strrchr(arg, ':');

	if (colon == NULL) {
		*host = "127.0.0.1";
		*port = arg;
	} else {
		*colon = '\0';
		*host = arg[0] != '\0' ? arg : "127.0.0.1";
		*port = colon + 1;
	}
	return (*port)[0] != '\0' ? 0 : -1;
}

int
main(int argc, char **argv)
{
	static const struct option opts[] = {
	        {"state", required_argument, NULL, 's'},
	        {"vpcd", required_argument, NULL, 'v'},
	        {"latency", required_argument, NULL, 'l'},
	        {"control", required_argument, NULL, 'c'},
	        {"fault", required_argument, NULL, 'f'},
	        {"send", required_argument, NULL, 'S'},
	        {"option", required_argument, NULL, 'o'},
	        {"applet", required_argument, NULL, 'a'},
	        {"help", no_argument, NULL, 'h'},
	        {NULL, 0, NULL, 0},
	};
	const char *state = NULL, *latency = NULL, *fault_spec = NULL, *send_cmd = NULL;
	const char *options[8];
	size_t noptions = 0;
	char *vpcd_arg = NULL, *vpcd_copy = NULL, err[160], dflt_port[8];
	struct server s;
	struct sigaction sa;
	sigset_t block, orig;
	unsigned applets = 0;
	int c, r, rc = 1;

	memset(&s, 0, sizeof(s));
	s.fd = -1;
	s.lfd = -1;
	s.backoff_ms = BACKOFF_MIN_MS;
	while ((c = getopt_long(argc, argv, "s:v:l:c:f:S:o:a:h", opts, NULL)) != -1) {
		switch (c) {
		case 's':
			state = optarg;
			break;
		case 'v':
			vpcd_arg = optarg;
			break;
		case 'l':
			latency = optarg;
			break;
		case 'c':
			s.control_path = optarg;
			break;
		case 'f':
			fault_spec = optarg;
			break;
		case 'S':
			send_cmd = optarg;
			break;
		case 'o':
			if (noptions == sizeof(options) / sizeof(options[0])) {
				fprintf(stderr, "tokenkit-vcard: too many --option\n");
				return 2;
			}
			options[noptions++] = optarg;
			break;
		case 'a':
			if (tk_vcard_applets_parse(optarg, &applets) != TK_OK) {
				fprintf(stderr, "tokenkit-vcard: bad --applet '%s'\n", optarg);
				return 2;
			}
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (optind != argc) {
		usage(stderr);
		return 2;
	}
	if (send_cmd != NULL) {
		if (s.control_path == NULL) {
			fprintf(stderr, "tokenkit-vcard: --send needs --control PATH\n");
			return 2;
		}
		return control_send(s.control_path, send_cmd);
	}
	snprintf(dflt_port, sizeof(dflt_port), "%d", DEFAULT_PORT);
	s.host = "127.0.0.1";
	s.port = dflt_port;
	if (vpcd_arg != NULL && (vpcd_copy = strdup(vpcd_arg)) == NULL)
		return 1;
	if (vpcd_copy != NULL && split_hostport(vpcd_copy, &s.host, &s.port) != 0) {
		fprintf(stderr, "tokenkit-vcard: bad --vpcd '%s'\n", vpcd_arg);
		free(vpcd_copy);
		return 2;
	}

	if (tk_fault_new(&s.fault) != TK_OK)
		return 1;
	if (fault_spec != NULL && tk_fault_apply(s.fault, fault_spec, err, sizeof(err)) != TK_OK) {
		fprintf(stderr, "tokenkit-vcard: --fault: %s\n", err);
		rc = 2;
		goto out;
	}
	s.rx = malloc(FRAME_MAX);
	s.held = malloc(FRAME_MAX);
	s.resp = malloc(TK_APDU_MAX_RESP);
	if (s.rx == NULL || s.held == NULL || s.resp == NULL)
		goto out;
	tk_vpcd_dec_init(&s.dec, s.rx, FRAME_MAX);
	r = tk_vcard_open_applets(state, applets, &s.card);
	if (r != TK_OK) {
		tk_log_error("card state %s: %s", state ? state : "(memory)", tk_strerror(r));
		goto out;
	}
	if (latency != NULL && tk_vcard_set_latency(s.card, latency) != TK_OK) {
		fprintf(stderr, "tokenkit-vcard: unknown latency profile '%s'\n", latency);
		rc = 2;
		goto out;
	}
	for (size_t i = 0; i < noptions; i++) {
		if (tk_vcard_set_option(s.card, options[i]) != TK_OK) {
			fprintf(stderr, "tokenkit-vcard: bad --option '%s'\n", options[i]);
			rc = 2;
			goto out;
		}
	}
	if (s.control_path != NULL) {
		s.lfd = tk_vc_control_listen(s.control_path);
		if (s.lfd < 0)
			goto out;
	}

	/* Signals are delivered only inside ppoll(), so the flag is never missed. */
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);
	sigemptyset(&block);
	sigaddset(&block, SIGTERM);
	sigaddset(&block, SIGINT);
	sigprocmask(SIG_BLOCK, &block, &orig);
	sigdelset(&orig, SIGTERM);
	sigdelset(&orig, SIGINT);

	tk_log_info("serving card %s to vpcd %s:%s", state ? state : "(memory)", s.host, s.port);
	now(&s.next_connect);
	rc = run(&s, &orig);
out:
	if (s.fd >= 0)
		close(s.fd);
	if (s.lfd >= 0) {
		close(s.lfd);
		(void)unlink(s.control_path);
	}
	tk_freezero(s.rx, s.rx ? FRAME_MAX : 0);
	tk_freezero(s.held, s.held ? FRAME_MAX : 0);
	tk_freezero(s.resp, s.resp ? TK_APDU_MAX_RESP : 0);
	tk_vcard_free(&s.card);
	tk_fault_free(&s.fault);
	free(vpcd_copy);
	return rc;
}
