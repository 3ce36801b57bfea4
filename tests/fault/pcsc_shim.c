/* tk-pcsc-shim.so (LD_PRELOAD, tests only): pcsc-lite's SCardTransmit,
 * except that when the file $TK_PCSC_SHIM_TRIGGER exists and the command's
 * INS is $TK_PCSC_SHIM_INS (hex) (and the reader $TK_PCSC_SHIM_READER, when
 * set), that one call answers
 * SCARD_E_PROTO_MISMATCH without reaching the card (the file is removed:
 * once per file). This is what pcsc-lite answers a client whose card
 * another client is resetting (the protocol is undefined until the next
 * negotiation), a window too narrow to hit on purpose. Built without
 * sanitizers so that any program can preload it. */
#include <dlfcn.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <winscard.h>

typedef LONG (*transmit_fn)(SCARDHANDLE, const SCARD_IO_REQUEST *, LPCBYTE, DWORD,
                            SCARD_IO_REQUEST *, LPBYTE, LPDWORD);
typedef LONG (*status_fn)(SCARDHANDLE, LPSTR, LPDWORD, LPDWORD, LPDWORD, LPBYTE, LPDWORD);

/* Whether the card's reader is $TK_PCSC_SHIM_READER (any, when unset). */
static bool
our_reader(status_fn status, SCARDHANDLE h)
{
	const char *want = getenv("TK_PCSC_SHIM_READER");
	char name[256];
	DWORD name_len = sizeof(name), state, proto, atr_len = 0;

	if (want == NULL)
		return true;
	return status(h, name, &name_len, &state, &proto, NULL, &atr_len) == SCARD_S_SUCCESS &&
	       strcmp(name, want) == 0;
}

__attribute__((visibility("default"))) LONG
SCardTransmit(SCARDHANDLE h, const SCARD_IO_REQUEST *send_pci, LPCBYTE send, DWORD send_len,
              SCARD_IO_REQUEST *recv_pci, LPBYTE recv, LPDWORD recv_len)
{
	static transmit_fn real;
	static status_fn status;
	const char *trigger = getenv("TK_PCSC_SHIM_TRIGGER");
	const char *ins = getenv("TK_PCSC_SHIM_INS");

	/* (pcsc-lite itself: a program may have it only in a module it
	 * dlopen()ed locally, out of RTLD_NEXT's reach) */
	if (real == NULL) {
		void *lib = dlopen("libpcsclite.so.1", RTLD_NOW);
		if (lib != NULL) {
			status = (status_fn)(void (*)(void))dlsym(lib, "SCardStatus");
			real = (transmit_fn)(void (*)(void))dlsym(lib, "SCardTransmit");
		}
	}
	if (real == NULL || status == NULL)
		return SCARD_F_INTERNAL_ERROR;
	if (trigger != NULL && ins != NULL && send != NULL && send_len >= 4 &&
	    send[1] == (BYTE)strtoul(ins, NULL, 16) && access(trigger, F_OK) == 0 &&
	    our_reader(status, h) && unlink(trigger) == 0) {
		fprintf(stderr, "tk-pcsc-shim: INS %02X: SCARD_E_PROTO_MISMATCH\n", send[1]);
		if (recv_len != NULL)
			*recv_len = 0;
		return SCARD_E_PROTO_MISMATCH;
	}
	return real(h, send_pci, send, send_len, recv_pci, recv, recv_len);
}
