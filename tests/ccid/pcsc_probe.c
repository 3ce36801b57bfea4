/* ccid-pcsc-probe: a small PC/SC client for the independent check of the
 * emulated reader (tests/ccid/test_ccid_pcscd.sh). For every reader whose
 * name contains NAME it connects, sends SELECT PIV and GET DATA CHUID, and
 * with --pinpad verifies the PIN on the reader's pad through the driver's
 * FEATURE_VERIFY_PIN_DIRECT (PC/SC part 10): libccid turns that into
 * PC_to_RDR_Secure, which the emulated reader must understand.
 *
 *   ccid-pcsc-probe NAME COUNT [--pinpad]
 *
 * Exits 0 when COUNT readers answered as the PIV card should. */
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <PCSC/reader.h>
#include <PCSC/winscard.h>

static const BYTE select_piv[] = {0x00, 0xA4, 0x04, 0x00, 0x09, 0xA0, 0x00, 0x00,
                                  0x03, 0x08, 0x00, 0x00, 0x10, 0x00, 0x00};
static const BYTE get_chuid[] = {0x00, 0xCB, 0x3F, 0xFF, 0x05, 0x5C, 0x03, 0x5F, 0xC1, 0x02, 0x00};
static const BYTE verify_tpl[] = {0x00, 0x20, 0x00, 0x80, 0x08, 0xFF, 0xFF,
                                  0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF};

/* One APDU; a 61xx answer (T=0 cards answer case 4 so) is completed with
 * GET RESPONSE, as a PC/SC application does. */
static int
xmit(SCARDHANDLE h, DWORD proto, const BYTE *cmd, DWORD len, BYTE *resp, DWORD *rlen)
{
	const SCARD_IO_REQUEST *pci = proto == SCARD_PROTOCOL_T0 ? SCARD_PCI_T0 : SCARD_PCI_T1;
	BYTE gr[5] = {0x00, 0xC0, 0x00, 0x00, 0x00};
	DWORD cap = *rlen;
	LONG rv;

	/* T=0 carries a case 4 command without its Le (ISO/IEC 7816-3, 12.2):
	 * applications drop it (OpenSC does), the driver passes TPDUs on */
	if (proto == SCARD_PROTOCOL_T0 && len > 5 && len == 5u + cmd[4] + 1)
		len--;
	rv = SCardTransmit(h, pci, cmd, len, NULL, resp, rlen);

	if (rv == SCARD_S_SUCCESS && *rlen == 2 && resp[0] == 0x61) {
		gr[4] = resp[1];
		*rlen = cap;
		rv = SCardTransmit(h, pci, gr, sizeof(gr), NULL, resp, rlen);
	}
	if (rv != SCARD_S_SUCCESS) {
		fprintf(stderr, "SCardTransmit: %s\n", pcsc_stringify_error(rv));
		return -1;
	}
	return 0;
}

/* The control code of FEATURE_VERIFY_PIN_DIRECT, 0 if the driver has none. */
static DWORD
verify_ioctl(SCARDHANDLE h)
{
	BYTE buf[256];
	DWORD n = 0;

	if (SCardControl(h, CM_IOCTL_GET_FEATURE_REQUEST, NULL, 0, buf, sizeof(buf), &n) !=
	    SCARD_S_SUCCESS)
		return 0;
	/* tag, length 4, control code big endian */
	for (DWORD i = 0; i + 6 <= n; i += 6)
		if (buf[i] == FEATURE_VERIFY_PIN_DIRECT && buf[i + 1] == 4)
			return (DWORD)buf[i + 2] << 24 | (DWORD)buf[i + 3] << 16 |
			       (DWORD)buf[i + 4] << 8 | buf[i + 5];
	return 0;
}

static int
pinpad(SCARDHANDLE h)
{
	BYTE buf[offsetof(PIN_VERIFY_STRUCTURE, abData) + sizeof(verify_tpl)], resp[16];
	PIN_VERIFY_STRUCTURE *v = (PIN_VERIFY_STRUCTURE *)buf;
	DWORD code = verify_ioctl(h), n = 0;
	LONG rv;

	if (code == 0) {
		fprintf(stderr, "no FEATURE_VERIFY_PIN_DIRECT\n");
		return -1;
	}
	memset(buf, 0, sizeof(buf));
	v->bTimerOut = 30;
	v->bTimerOut2 = 30;
	v->bmFormatString = 0x82; /* bytes, position 0, left, ASCII */
	v->bmPINBlockString = 0x08;
	v->bmPINLengthFormat = 0x00;
	v->wPINMaxExtraDigit = 0x0608; /* 6 to 8 digits */
	v->bEntryValidationCondition = 0x02;
	v->bNumberMessage = 0x01;
	v->wLangId = 0x0409;
	v->bMsgIndex = 0;
	v->ulDataLength = sizeof(verify_tpl);
	memcpy(v->abData, verify_tpl, sizeof(verify_tpl));
	rv = SCardControl(h, code, buf, sizeof(buf), resp, sizeof(resp), &n);
	if (rv != SCARD_S_SUCCESS || n != 2 || resp[0] != 0x90 || resp[1] != 0x00) {
		fprintf(stderr, "VERIFY on the pad: %s, %lu bytes %02X%02X\n",
		        pcsc_stringify_error(rv), (unsigned long)n, n > 0 ? resp[0] : 0,
		        n > 1 ? resp[1] : 0);
		return -1;
	}
	return 0;
}

static int
probe(SCARDCONTEXT ctx, const char *reader, int with_pinpad)
{
	BYTE resp[1024];
	DWORD proto = 0, n;
	SCARDHANDLE h;
	LONG rv;
	int r = -1;

	rv = SCardConnect(ctx, reader, SCARD_SHARE_SHARED, SCARD_PROTOCOL_T0 | SCARD_PROTOCOL_T1,
	                  &h, &proto);
	if (rv != SCARD_S_SUCCESS) {
		fprintf(stderr, "%s: SCardConnect: %s\n", reader, pcsc_stringify_error(rv));
		return -1;
	}
	n = sizeof(resp);
	if (xmit(h, proto, select_piv, sizeof(select_piv), resp, &n) != 0 || n < 2 ||
	    resp[n - 2] != 0x90 || resp[0] != 0x61)
		goto out;
	n = sizeof(resp);
	if (xmit(h, proto, get_chuid, sizeof(get_chuid), resp, &n) != 0 || n < 3 ||
	    resp[n - 2] != 0x90 || resp[0] != 0x53)
		goto out;
	if (with_pinpad && pinpad(h) != 0)
		goto out;
	printf("%s: T=%d, PIV answered, CHUID %lu bytes%s\n", reader,
	       proto == SCARD_PROTOCOL_T0 ? 0 : 1, (unsigned long)(n - 2),
	       with_pinpad ? ", PIN verified on the pad" : "");
	r = 0;
out:
	if (r != 0)
		fprintf(stderr, "%s: unexpected answer\n", reader);
	SCardDisconnect(h, SCARD_LEAVE_CARD);
	return r;
}

int
main(int argc, char **argv)
{
	SCARDCONTEXT ctx;
	char *readers = NULL;
	DWORD len = SCARD_AUTOALLOCATE;
	int want, ok = 0, with_pinpad;
	LONG rv;

	if (argc < 3) {
		fprintf(stderr, "usage: ccid-pcsc-probe NAME COUNT [--pinpad]\n");
		return 2;
	}
	want = atoi(argv[2]);
	with_pinpad = argc > 3 && strcmp(argv[3], "--pinpad") == 0;
	if ((rv = SCardEstablishContext(SCARD_SCOPE_SYSTEM, NULL, NULL, &ctx)) != SCARD_S_SUCCESS) {
		fprintf(stderr, "SCardEstablishContext: %s\n", pcsc_stringify_error(rv));
		return 1;
	}
	rv = SCardListReaders(ctx, NULL, (LPSTR)&readers, &len);
	if (rv != SCARD_S_SUCCESS) {
		fprintf(stderr, "SCardListReaders: %s\n", pcsc_stringify_error(rv));
		SCardReleaseContext(ctx);
		return 1;
	}
	for (const char *r = readers; *r != '\0'; r += strlen(r) + 1)
		if (strstr(r, argv[1]) != NULL && probe(ctx, r, with_pinpad) == 0)
			ok++;
	SCardFreeMemory(ctx, readers);
	SCardReleaseContext(ctx);
	printf("%d of %d readers answered\n", ok, want);
	return ok == want ? 0 : 1;
}
