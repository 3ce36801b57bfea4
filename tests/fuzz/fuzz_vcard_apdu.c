/* Fuzz the virtual PIV card with sequences of command APDUs.
 *
 * Input: one flags byte, then APDUs, each a big-endian u16 length and that
 * many bytes (a short last one takes what is left). Flags: bit 0 select the
 * PIV application first, bit 1 PIN verified, bit 2 management key
 * authenticated (random challenges make that unreachable otherwise), bit 3
 * power-cycle between APDUs whose index is odd.
 *
 * The card is built once (P-256 keys in 9A and 9C, P-384 in 9D, RSA-1024 in
 * 9E) and every input starts from a copy of it; RSA key generation is
 * refused in fuzz mode to keep runs fast. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <tokenkit/apdu.h>
#include <tokenkit/err.h>
#include <tokenkit/log.h>
#include <tokenkit/mem.h>

#include "vcard.h"
#include "vcard_int.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static tk_vcard_t *base;
static uint8_t resp[TK_APDU_MAX_RESP];

static const uint8_t sel[] = {0x00, 0xA4, 0x04, 0x00, 0x05, 0xA0, 0x00, 0x00, 0x03, 0x08};

static void
gen(tk_vcard_t *c, uint8_t slot, uint8_t alg)
{
	uint8_t cmd[] = {0x00, 0x47, 0x00, slot, 0x05, 0xAC, 0x03, 0x80, 0x01, alg, 0x00};

	(void)tk_vcard_process(c, cmd, sizeof(cmd), resp, sizeof(resp));
	/* drain a chained answer */
	while (resp[0] == 0x61) {
		static const uint8_t gr[] = {0x00, 0xC0, 0x00, 0x00, 0x00};
		size_t n = tk_vcard_process(c, gr, sizeof(gr), resp, sizeof(resp));

		if (n < 2 || resp[n - 2] != 0x61)
			break;
	}
}

static int
build_snapshot(void)
{
	tk_vcard_t *c = NULL;
	uint8_t *bytes = NULL;
	size_t len = 0;
	int r;

	if (tk_vcard_open(NULL, &c) != TK_OK)
		return -1;
	tk_vcard_power_on(c);
	(void)tk_vcard_process(c, sel, sizeof(sel), resp, sizeof(resp));
	tk_vcard_test_set_auth(c, true, true);
	gen(c, 0x9A, ALG_ECCP256);
	gen(c, 0x9C, ALG_ECCP256);
	gen(c, 0x9D, ALG_ECCP384);
	gen(c, 0x9E, ALG_RSA1024);
	/* through the state format once, as a card read from disk would be */
	r = tk_vcard_save_mem(c, &bytes, &len);
	tk_vcard_free(&c);
	if (r != TK_OK || tk_vcard_load_mem(bytes, len, &base) != TK_OK)
		r = -1;
	tk_freezero(bytes, len);
	if (base != NULL)
		tk_vcard_test_fuzz_mode(base, true);
	return r == TK_OK ? 0 : -1;
}

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	tk_log_set_level(TK_LOG_NONE);
	if (build_snapshot() != 0)
		abort();
	return 0;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	tk_vcard_t *c = NULL;
	uint8_t flags;
	size_t pos = 1;

	if (base == NULL && build_snapshot() != 0)
		abort();
	if (size < 1)
		return 0;
	flags = data[0];
	if (tk_vcard_test_clone(base, &c) != TK_OK)
		abort();
	(void)tk_vcard_set_latency(c, "yubikey5");
	tk_vcard_power_on(c);
	if (flags & 1)
		(void)tk_vcard_process(c, sel, sizeof(sel), resp, sizeof(resp));
	tk_vcard_test_set_auth(c, (flags & 2) != 0, (flags & 4) != 0);
	for (unsigned i = 0; i < 64 && pos < size; i++) {
		size_t len, n;

		if (size - pos >= 2) {
			len = (size_t)data[pos] << 8 | data[pos + 1];
			pos += 2;
		} else {
			len = size - pos;
		}
		if (len > size - pos)
			len = size - pos;
		(void)tk_vcard_latency_us(c, data + pos, len);
		n = tk_vcard_process(c, data + pos, len, resp, sizeof(resp));
		if (n < 2 || n > sizeof(resp))
			abort();
		/* a tiny response buffer must still get a status word */
		if (tk_vcard_process(c, data + pos, len, resp, 2) != 2)
			abort();
		pos += len;
		if ((flags & 8) && (i & 1))
			tk_vcard_reset(c);
	}
	tk_vcard_free(&c);
	return 0;
}
