/* tk-pcsc-reset: another program resets the card in a reader (shared access).
 *
 *   tk-pcsc-reset READER [warm|cold]
 *
 * SCardConnect(SCARD_SHARE_SHARED) then SCardReconnect with SCARD_RESET_CARD
 * (warm, default) or SCARD_UNPOWER_CARD (cold), then SCardDisconnect
 * (SCARD_LEAVE_CARD). For the fault matrix (row 7): a process other than the
 * module's resets the card under it. Exit 0 when the reset was done. */
#include <stdio.h>
#include <string.h>

#include <PCSC/winscard.h>

int
main(int argc, char **argv)
{
	SCARDCONTEXT ctx = 0;
	SCARDHANDLE h = 0;
	DWORD proto = 0;
	DWORD how = SCARD_RESET_CARD;
	LONG r;

	if (argc < 2 || argc > 3) {
		fprintf(stderr, "usage: tk-pcsc-reset READER [warm|cold]\n");
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
