/* Fuzz the virtual card's OpenPGP applet with sequences of command APDUs
 * (tools/vcard/pgp_*.c: data objects, PINs, KDF-DO, key import templates,
 * PSO and INTERNAL AUTHENTICATE data, SELECT DATA).
 *
 * Input: one flags byte, then APDUs, each a big-endian u16 length and that
 * many bytes (a short last one takes what is left). Flags: bit 0 select the
 * OpenPGP application first, bit 1 PW1 verified (81 and 82), bit 2 PW3
 * verified, bit 3 power-cycle between APDUs whose index is odd.
 *
 * The card is built once (Ed25519 signature key, X25519 decryption key,
 * P-256 authentication key), goes through the state format, and every
 * input starts from a copy; RSA key generation is refused in fuzz mode. */
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

static const uint8_t sel[] = {0x00, 0xA4, 0x04, 0x00, 0x06, 0xD2, 0x76, 0x00, 0x01, 0x24, 0x01};

static void
apdu(tk_vcard_t *c, const uint8_t *cmd, size_t n)
{
	static const uint8_t gr[] = {0x00, 0xC0, 0x00, 0x00, 0x00};
	size_t rl = tk_vcard_process(c, cmd, n, resp, sizeof(resp));

	/* drain a chained answer */
	while (rl >= 2 && resp[rl - 2] == 0x61)
		rl = tk_vcard_process(c, gr, sizeof(gr), resp, sizeof(resp));
}

static void
attr_and_generate(tk_vcard_t *c, uint8_t do_tag, uint8_t crt, const uint8_t *attr, size_t n)
{
	uint8_t put[32] = {0x00, 0xDA, 0x00, do_tag, (uint8_t)n};
	uint8_t gen[] = {0x00, 0x47, 0x80, 0x00, 0x02, crt, 0x00, 0x00};

	memcpy(put + 5, attr, n);
	apdu(c, put, 5 + n);
	apdu(c, gen, sizeof(gen));
}

static int
build_snapshot(void)
{
	static const uint8_t ed[] = {0x16, 0x2B, 0x06, 0x01, 0x04, 0x01, 0xDA, 0x47, 0x0F, 0x01};
	static const uint8_t x[] = {0x12, 0x2B, 0x06, 0x01, 0x04, 0x01,
	                            0x97, 0x55, 0x01, 0x05, 0x01};
	static const uint8_t p256[] = {0x13, 0x2A, 0x86, 0x48, 0xCE, 0x3D, 0x03, 0x01, 0x07};
	tk_vcard_t *c = NULL;
	uint8_t *bytes = NULL;
	size_t len = 0;
	int r;

	if (tk_vcard_open_applets(NULL, TK_VCARD_APPLET_OPENPGP, &c) != TK_OK)
		return -1;
	tk_vcard_power_on(c);
	apdu(c, sel, sizeof(sel));
	tk_vcard_test_set_pgp_auth(c, true, true);
	attr_and_generate(c, 0xC1, 0xB6, ed, sizeof(ed));
	attr_and_generate(c, 0xC2, 0xB8, x, sizeof(x));
	attr_and_generate(c, 0xC3, 0xA4, p256, sizeof(p256));
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
	uint8_t flags, *st = NULL;
	size_t pos = 1, sl = 0;

	if (base == NULL && build_snapshot() != 0)
		abort();
	if (size < 1)
		return 0;
	flags = data[0];
	if (tk_vcard_test_clone(base, &c) != TK_OK)
		abort();
	tk_vcard_power_on(c);
	if (flags & 1)
		(void)tk_vcard_process(c, sel, sizeof(sel), resp, sizeof(resp));
	tk_vcard_test_set_pgp_auth(c, (flags & 2) != 0, (flags & 4) != 0);
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
		n = tk_vcard_process(c, data + pos, len, resp, sizeof(resp));
		if (n < 2 || n > sizeof(resp))
			abort();
		pos += len;
		if ((flags & 8) && (i & 1))
			tk_vcard_reset(c);
	}
	/* whatever the commands did, the state still round-trips */
	if (tk_vcard_save_mem(c, &st, &sl) == TK_OK) {
		tk_vcard_t *back = NULL;

		if (tk_vcard_load_mem(st, sl, &back) != TK_OK)
			abort();
		tk_vcard_free(&back);
		tk_freezero(st, sl);
	}
	tk_vcard_free(&c);
	return 0;
}
