/* apdu_rtt: APDU round-trip time through raw PC/SC (pcscd + reader driver +
 * card), e.g. pcscd + vpcd + tokenkit-vcard.
 *
 *   apdu_rtt [--reader SUBSTRING] [--count N] [--apdu HEX]
 *
 * Sends the APDU (default: SELECT of the PIV application) N times (default
 * 1000) with SCardTransmit and prints "key=value" lines: the reader, count,
 * and min/median/p90/p99/max/mean round-trip times in microseconds. Never
 * judges the figures. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <PCSC/winscard.h>
#include <PCSC/wintypes.h>

#include <tokenkit/hex.h>

#include "clock.h"
#include "stats.h"

int
main(int argc, char **argv)
{
	static const struct option opts[] = {
	        {"reader", required_argument, NULL, 'r'},
	        {"count", required_argument, NULL, 'n'},
	        {"apdu", required_argument, NULL, 'a'},
	        {NULL, 0, NULL, 0},
	};
	const char *want = NULL, *apdu_hex = "00 A4 04 00 09 A0 00 00 03 08 00 00 10 00 00";
	long count = 1000;
	uint8_t cmd[300], resp[258];
	size_t cmd_len = 0;
	SCARDCONTEXT ctx = 0;
	SCARDHANDLE card = 0;
	DWORD proto = 0, rlen, readers_len = 0;
	char *readers = NULL, *reader = NULL;
	double *t = NULL;
	LONG rv;
	int c, rc = 1;

	while ((c = getopt_long(argc, argv, "r:n:a:", opts, NULL)) != -1) {
		switch (c) {
		case 'r':
			want = optarg;
			break;
		case 'n':
			count = strtol(optarg, NULL, 10);
			break;
		case 'a':
			apdu_hex = optarg;
			break;
		default:
			fprintf(stderr, "usage: apdu_rtt [--reader S] [--count N] [--apdu HEX]\n");
			return 2;
		}
	}
	if (count < 1 || count > 10000000 ||
	    tk_hex_decode(apdu_hex, cmd, sizeof(cmd), &cmd_len) != 0 || cmd_len < 4) {
		fprintf(stderr, "apdu_rtt: bad --count or --apdu\n");
		return 2;
	}
	rv = SCardEstablishContext(SCARD_SCOPE_SYSTEM, NULL, NULL, &ctx);
	if (rv != SCARD_S_SUCCESS) {
		fprintf(stderr, "apdu_rtt: SCardEstablishContext: %s\n", pcsc_stringify_error(rv));
		return 1;
	}
	rv = SCardListReaders(ctx, NULL, NULL, &readers_len);
	if (rv == SCARD_S_SUCCESS && (readers = malloc(readers_len)) != NULL)
		rv = SCardListReaders(ctx, NULL, readers, &readers_len);
	if (rv != SCARD_S_SUCCESS || readers == NULL) {
		fprintf(stderr, "apdu_rtt: no readers: %s\n", pcsc_stringify_error(rv));
		goto out;
	}
	/* the first matching reader that has a card */
	for (char *r = readers; *r != '\0'; r += strlen(r) + 1) {
		if (want != NULL && strstr(r, want) == NULL)
			continue;
		rv = SCardConnect(ctx, r, SCARD_SHARE_SHARED, SCARD_PROTOCOL_T0 | SCARD_PROTOCOL_T1,
		                  &card, &proto);
		if (rv == SCARD_S_SUCCESS) {
			reader = r;
			break;
		}
	}
	if (reader == NULL) {
		fprintf(stderr, "apdu_rtt: no card in %s\n", want ? want : "any reader");
		goto out;
	}
	t = calloc((size_t)count, sizeof(*t));
	if (t == NULL)
		goto out;
	for (long i = 0; i < count; i++) {
		const SCARD_IO_REQUEST *pci =
		        proto == SCARD_PROTOCOL_T0 ? SCARD_PCI_T0 : SCARD_PCI_T1;
		double t0 = (double)tk_now_us();

		rlen = sizeof(resp);
		rv = SCardTransmit(card, pci, cmd, (DWORD)cmd_len, NULL, resp, &rlen);
		t[i] = (double)tk_now_us() - t0;
		if (rv != SCARD_S_SUCCESS || rlen < 2) {
			fprintf(stderr, "apdu_rtt: transmit %ld: %s (%lu bytes)\n", i,
			        pcsc_stringify_error(rv), (unsigned long)rlen);
			goto out;
		}
	}
	printf("reader=%s\nprotocol=T=%d\ncount=%ld\nlast_sw=%02X%02X\n", reader,
	       proto == SCARD_PROTOCOL_T0 ? 0 : 1, count, resp[rlen - 2], resp[rlen - 1]);
	printf("total_ms=%.1f\n", bench_stats("rtt", t, (size_t)count) / 1e3);
	rc = 0;
out:
	if (card != 0)
		SCardDisconnect(card, SCARD_LEAVE_CARD);
	free(t);
	free(readers);
	SCardReleaseContext(ctx);
	return rc;
}
