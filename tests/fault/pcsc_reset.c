/* tk-pcsc-reset: another program resets the card in a reader (shared access),
 * or selects another application on it.
 *
 *   tk-pcsc-reset READER [warm|cold]
 *   tk-pcsc-reset READER select AID
 *
 * SCardConnect(SCARD_SHARE_SHARED) then SCardReconnect with SCARD_RESET_CARD
 * (warm, default) or SCARD_UNPOWER_CARD (cold), then SCardDisconnect
 * (SCARD_LEAVE_CARD). For the fault matrix (row 7): a process other than the
 * module's resets the card under it. With `select`, one SELECT by AID (hex)
 * instead, in a transaction, leaving the card as it is: another program
 * talks to another applet of the card (tests/integration/test_p11_login.sh).
 * Exit 0 when the reset was done or the SELECT answered 9000. */
#include <stdio.h>
#include <string.h>

#include <PCSC/winscard.h>

static int
parse_aid(const char *hex, BYTE *out, size_t cap, size_t *len)
{
	size_t n = strlen(hex);

	if (n == 0 || n % 2 != 0 || n / 2 > cap)
		return -1;
	for (size_t i = 0; i < n / 2; i++) {
		unsigned v;

		if (sscanf(hex + 2 * i, "%2x", &v) != 1)
			return -1;
		out[i] = (BYTE)v;
	}
	*len = n / 2;
	return 0;
}

/* SELECT by AID; 0 when the card answered 9000. */
static LONG
select_aid(SCARDHANDLE h, DWORD proto, const BYTE *aid, size_t aid_len, int *ok)
{
	BYTE cmd[5 + 16], resp[258];
	DWORD rlen = sizeof(resp);
	SCARD_IO_REQUEST pci = {proto, sizeof(SCARD_IO_REQUEST)};
	LONG r;

	*ok = 0;
	cmd[0] = 0x00;
	cmd[1] = 0xA4;
	cmd[2] = 0x04;
	cmd[3] = 0x00;
	cmd[4] = (BYTE)aid_len;
	memcpy(cmd + 5, aid, aid_len);
	r = SCardBeginTransaction(h);
	if (r != SCARD_S_SUCCESS)
		return r;
	r = SCardTransmit(h, &pci, cmd, 5 + (DWORD)aid_len, NULL, resp, &rlen);
	SCardEndTransaction(h, SCARD_LEAVE_CARD);
	if (r == SCARD_S_SUCCESS && rlen >= 2) {
		printf("select: SW %02X%02X\n", resp[rlen - 2], resp[rlen - 1]);
		*ok = resp[rlen - 2] == 0x90 && resp[rlen - 1] == 0x00;
	}
	return r;
}

int
main(int argc, char **argv)
{
	SCARDCONTEXT ctx = 0;
	SCARDHANDLE h = 0;
	DWORD proto = 0;
	DWORD how = SCARD_RESET_CARD;
	BYTE aid[16];
	size_t aid_len = 0;
	int do_select = 0, ok = 0;
	LONG r;

	if (argc == 4 && strcmp(argv[2], "select") == 0 &&
	    parse_aid(argv[3], aid, sizeof(aid), &aid_len) == 0) {
		do_select = 1;
	} else if (argc < 2 || argc > 3) {
		fprintf(stderr, "usage: tk-pcsc-reset READER [warm|cold] | READER select AID\n");
		return 2;
	}
	if (argc == 3 && strcmp(argv[2], "cold") == 0)
		how = SCARD_UNPOWER_CARD;
	r = SCardEstablishContext(SCARD_SCOPE_SYSTEM, NULL, NULL, &ctx);
	if (r != SCARD_S_SUCCESS) {
		fprintf(stderr, "SCardEstablishContext: %s\n", pcsc_stringify_error(r));
		return 1;
	}
	r = SCardConnect(ctx, argv[1], SCARD_SHARE_SHARED, SCARD_PROTOCOL_T0 | SCARD_PROTOCOL_T1,
	                 &h, &proto);
	if (r != SCARD_S_SUCCESS) {
		fprintf(stderr, "SCardConnect %s: %s\n", argv[1], pcsc_stringify_error(r));
		SCardReleaseContext(ctx);
		return 1;
	}
	if (do_select) {
		r = select_aid(h, proto, aid, aid_len, &ok);
		if (r != SCARD_S_SUCCESS)
			fprintf(stderr, "select: %s\n", pcsc_stringify_error(r));
		SCardDisconnect(h, SCARD_LEAVE_CARD);
		SCardReleaseContext(ctx);
		return r == SCARD_S_SUCCESS && ok ? 0 : 1;
	}
	r = SCardReconnect(h, SCARD_SHARE_SHARED, SCARD_PROTOCOL_T0 | SCARD_PROTOCOL_T1, how,
	                   &proto);
	if (r != SCARD_S_SUCCESS)
		fprintf(stderr, "SCardReconnect: %s\n", pcsc_stringify_error(r));
	else
		printf("reset (%s) %s\n", how == SCARD_RESET_CARD ? "warm" : "cold", argv[1]);
	SCardDisconnect(h, SCARD_LEAVE_CARD);
	SCardReleaseContext(ctx);
	return r == SCARD_S_SUCCESS ? 0 : 1;
}
