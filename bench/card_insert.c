/* card_insert: time from starting a command (one that inserts a card, such
 * as "vpcd-env card start 0") to the PC/SC "card inserted" event that a
 * client waiting in SCardGetStatusChange receives.
 *
 *   card_insert [--reader SUBSTRING] [--timeout SECONDS] -- COMMAND [ARGS...]
 *
 * Prints "key=value" lines: event_ms (insert event seen), command_ms (the
 * command exited), command_status. Never judges the figures. */
#include <getopt.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>

#include <PCSC/winscard.h>
#include <PCSC/wintypes.h>

extern char **environ;

static double
now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

int
main(int argc, char **argv)
{
	static const struct option opts[] = {
	        {"reader", required_argument, NULL, 'r'},
	        {"timeout", required_argument, NULL, 't'},
	        {NULL, 0, NULL, 0},
	};
	const char *want = "Virtual PCD 00 00";
	double timeout_ms = 10000, t0, t_event = -1, t_cmd = -1;
	SCARDCONTEXT ctx = 0;
	SCARD_READERSTATE rs;
	DWORD len = 0;
	char *readers = NULL, *reader = NULL;
	pid_t pid = -1;
	int c, status = 0, rc = 1;
	LONG rv;

	while ((c = getopt_long(argc, argv, "+r:t:", opts, NULL)) != -1) {
		switch (c) {
		case 'r':
			want = optarg;
			break;
		case 't':
			timeout_ms = atof(optarg) * 1000.0;
			break;
		default:
			fprintf(stderr,
			        "usage: card_insert [--reader S] [--timeout SEC] -- CMD...\n");
			return 2;
		}
	}
	if (optind >= argc) {
		fprintf(stderr, "card_insert: command missing\n");
		return 2;
	}
	rv = SCardEstablishContext(SCARD_SCOPE_SYSTEM, NULL, NULL, &ctx);
	if (rv != SCARD_S_SUCCESS) {
		fprintf(stderr, "card_insert: SCardEstablishContext: %s\n",
		        pcsc_stringify_error(rv));
		return 1;
	}
	rv = SCardListReaders(ctx, NULL, NULL, &len);
	if (rv == SCARD_S_SUCCESS && (readers = malloc(len)) != NULL)
		rv = SCardListReaders(ctx, NULL, readers, &len);
	if (rv != SCARD_S_SUCCESS || readers == NULL)
		goto out;
	for (char *r = readers; *r != '\0'; r += strlen(r) + 1)
		if (strstr(r, want) != NULL) {
			reader = r;
			break;
		}
	if (reader == NULL) {
		fprintf(stderr, "card_insert: no reader matching '%s'\n", want);
		goto out;
	}
	memset(&rs, 0, sizeof(rs));
	rs.szReader = reader;
	rs.dwCurrentState = SCARD_STATE_UNAWARE;
	rv = SCardGetStatusChange(ctx, 0, &rs, 1);
	if (rv != SCARD_S_SUCCESS) {
		fprintf(stderr, "card_insert: SCardGetStatusChange: %s\n",
		        pcsc_stringify_error(rv));
		goto out;
	}
	if (rs.dwEventState & SCARD_STATE_PRESENT) {
		fprintf(stderr, "card_insert: %s already has a card\n", reader);
		goto out;
	}
	rs.dwCurrentState = rs.dwEventState & ~(DWORD)SCARD_STATE_CHANGED;

	t0 = now_ms();
	if (posix_spawnp(&pid, argv[optind], NULL, NULL, &argv[optind], environ) != 0) {
		perror("card_insert: spawn");
		goto out;
	}
	while (now_ms() - t0 < timeout_ms) {
		if (t_cmd < 0 && waitpid(pid, &status, WNOHANG) == pid)
			t_cmd = now_ms() - t0;
		rv = SCardGetStatusChange(ctx, 100, &rs, 1);
		if (rv == SCARD_E_TIMEOUT)
			continue;
		if (rv != SCARD_S_SUCCESS) {
			fprintf(stderr, "card_insert: SCardGetStatusChange: %s\n",
			        pcsc_stringify_error(rv));
			break;
		}
		if (rs.dwEventState & SCARD_STATE_PRESENT) {
			t_event = now_ms() - t0;
			break;
		}
		rs.dwCurrentState = rs.dwEventState & ~(DWORD)SCARD_STATE_CHANGED;
	}
	if (t_cmd < 0) {
		/* bounded: give the command the rest of the timeout, then stop it */
		while (now_ms() - t0 < timeout_ms && waitpid(pid, &status, WNOHANG) == 0) {
			struct timespec ts = {0, 5000000};

			nanosleep(&ts, NULL);
		}
		if (waitpid(pid, &status, WNOHANG) == pid || WIFEXITED(status))
			t_cmd = now_ms() - t0;
		else {
			kill(pid, SIGTERM);
			waitpid(pid, &status, 0);
		}
	}
	printf("reader=%s\nevent_ms=%.1f\ncommand_ms=%.1f\ncommand_status=%d\n", reader, t_event,
	       t_cmd, WIFEXITED(status) ? WEXITSTATUS(status) : -1);
	rc = t_event >= 0 ? 0 : 1;
out:
	free(readers);
	SCardReleaseContext(ctx);
	return rc;
}
