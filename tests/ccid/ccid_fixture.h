/* Shared set-up of the tests/ccid programs: one emulated device with
 * virtual PIV cards in its slots, a libusb context that sees it, its CCID
 * interfaces opened through ccid/, and the PIV steps of
 * tests/unit/test_piv_fixture.h run over a tk_card whose transmit is
 * tk_ccid_transmit (the way the reader backend will use it). */
#ifndef TK_CCID_FIXTURE_H
#define TK_CCID_FIXTURE_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <libusb.h>

#include "ccid.h"
#include "emu_vcard.h"
#include "test_piv_fixture.h"

/* The testbed of this program (made in main, before any libusb_init). */
static ccid_emu_t *cfx_emu;
static unsigned cfx_serial_no;

struct cfx {
	ccid_emu_dev_t *dev;
	ccid_emu_dev_cfg_t cfg;
	char serial[32];
	tk_vcard_t *vc[2][2];
	libusb_context *ctx;
	tk_ccid_dev_t *d[2];
	unsigned nopen;
};

/* A T=0-only ATR: TA1 13 (Fi 372, Di 4), historical bytes 80 31 C0 73 C0
 * 21 80 (card capabilities: chaining, no extended length). */
static const uint8_t __attribute__((unused))
cfx_atr_t0[] = {0x3B, 0x17, 0x13, 0x80, 0x31, 0xC0, 0x73, 0xC0, 0x21, 0x80};

static __attribute__((unused)) void
cfx_main(int argc, char **argv)
{
	ccid_emu_reexec(argc, argv);
	cfx_emu = ccid_emu_new();
	if (cfx_emu == NULL)
		exit(1);
}

static __attribute__((unused)) void
cfx_main_end(void)
{
	ccid_emu_free(&cfx_emu);
}

/* Short deadlines, so a fault costs a fraction of a second. */
static __attribute__((unused)) void
cfx_fast(tk_ccid_dev_t *d)
{
	tk_ccid_timeouts_t t;

	tk_ccid_timeouts_default(&t);
	t.read_ms = 400;
	t.write_ms = 400;
	t.control_ms = 400;
	t.command_ms = 5000;
	tk_ccid_set_timeouts(d, &t);
}

/* Open every CCID interface of x's device (found by its serial). */
static __attribute__((unused)) int
cfx_open_all(struct cfx *x)
{
	tk_ccid_found_t *f = NULL;
	size_t n = 0;
	int r;

	x->nopen = 0;
	/* libusb learns of the new device from its uevent: look a few times */
	for (int tries = 0; tries < 100; tries++) {
		free(f);
		f = NULL;
		if ((r = tk_ccid_scan(x->ctx, &f, &n)) != TK_OK)
			return r;
		for (size_t i = 0; i < n; i++) {
			unsigned bus = 0, devnum = 0;

			ccid_emu_address(x->dev, &bus, &devnum);
			if (f[i].bus == bus && f[i].addr == devnum && x->nopen < 2) {
				if ((r = tk_ccid_open(x->ctx, &f[i], &x->d[x->nopen])) != TK_OK) {
					free(f);
					return r;
				}
				cfx_fast(x->d[x->nopen]);
				x->nopen++;
			}
		}
		if (x->nopen > 0)
			break;
		usleep(20000);
	}
	free(f);
	return x->nopen == x->cfg.ninterfaces ? TK_OK : TK_ERR_NO_READER;
}

/* Add the device (a fresh serial), cards in all slots, a libusb context,
 * and open its interfaces. */
static __attribute__((unused)) void
cfx_start(struct cfx *x, const ccid_emu_dev_cfg_t *cfg)
{
	memset(x, 0, sizeof(*x));
	x->cfg = *cfg;
	snprintf(x->serial, sizeof(x->serial), "T%04u", ++cfx_serial_no);
	x->cfg.serial = x->serial;
	if (x->cfg.vid == 0) {
		x->cfg.vid = 0x04E6;
		x->cfg.pid = 0x5116;
		x->cfg.release = 0x0520;
	}
	if (x->cfg.ninterfaces == 0)
		x->cfg.ninterfaces = 1;
	x->dev = ccid_emu_add(cfx_emu, &x->cfg);
	assert_non_null(x->dev);
	for (unsigned i = 0; i < x->cfg.ninterfaces; i++) {
		for (unsigned s = 0; s < (x->cfg.iface[i].nslots ? x->cfg.iface[i].nslots : 1);
		     s++) {
			ccid_emu_card_t card;

			assert_int_equal(tk_vcard_open(NULL, &x->vc[i][s]), 0);
			card = emu_vcard(x->vc[i][s]);
			ccid_emu_insert(x->dev, i, s, &card, false);
		}
	}
	assert_int_equal(libusb_init(&x->ctx), 0);
	assert_int_equal(cfx_open_all(x), TK_OK);
}

static __attribute__((unused)) void
cfx_stop(struct cfx *x)
{
	for (unsigned i = 0; i < 2; i++)
		tk_ccid_close(&x->d[i]);
	if (x->ctx != NULL)
		libusb_exit(x->ctx);
	x->ctx = NULL;
	if (x->dev != NULL)
		ccid_emu_unplug(x->dev);
	for (unsigned i = 0; i < 2; i++)
		for (unsigned s = 0; s < 2; s++)
			tk_vcard_free(&x->vc[i][s]);
}

static __attribute__((unused)) tk_ccid_slot_t *
cfx_slot(struct cfx *x, unsigned iface, unsigned slot)
{
	assert_true(iface < x->nopen);
	return tk_ccid_slot(x->d[iface], slot);
}

static __attribute__((unused)) void
cfx_fault(struct cfx *x, unsigned iface, const ccid_emu_faults_t *f)
{
	ccid_emu_set_faults(x->dev, iface, f);
}

static __attribute__((unused)) ccid_emu_counts_t
cfx_counts(struct cfx *x, unsigned iface)
{
	ccid_emu_counts_t c;

	ccid_emu_counts(x->dev, iface, &c);
	return c;
}

static __attribute__((unused)) tk_ccid_stats_t
cfx_stats(struct cfx *x, unsigned iface)
{
	tk_ccid_stats_t s;

	tk_ccid_get_stats(x->d[iface], &s);
	return s;
}

/* Power on and check the ATR is the card's (or atr/atr_len when given). */
static __attribute__((unused)) int
cfx_power(struct cfx *x, unsigned iface, unsigned slot)
{
	uint8_t atr[40], want[40];
	size_t n = 0, wn;
	int proto = -1;

	assert_int_equal(tk_ccid_power_on(cfx_slot(x, iface, slot), atr, sizeof(atr), &n, &proto),
	                 TK_OK);
	wn = tk_vcard_atr(x->vc[iface][slot], want, sizeof(want));
	assert_int_equal(n, wn);
	assert_memory_equal(atr, want, wn);
	return proto;
}

/* --- a tk_card over a CCID slot ------------------------------------------------ */

static int
cfx_be_xmit(void *ctx, const uint8_t *cmd, size_t cmd_len, uint8_t *resp, size_t resp_cap,
            size_t *resp_len, int timeout_ms)
{
	(void)timeout_ms;
	return tk_ccid_transmit(ctx, cmd, cmd_len, resp, resp_cap, resp_len);
}

/* A struct fx (test_piv_fixture.h) whose card talks through slot s; the
 * card's caps are the slot's. */
static __attribute__((unused)) struct fx *
cfx_piv(tk_ccid_slot_t *s, const uint8_t *atr, size_t atr_len)
{
	static const tk_card_backend_t be = {.transmit = cfx_be_xmit};
	struct fx *f = calloc(1, sizeof(*f));
	tk_ccid_caps_t c;
	tk_card_caps_t caps;

	assert_non_null(f);
	tk_ccid_caps(s, &c);
	caps.extended_apdu = c.extended_apdu;
	caps.max_cmd = c.max_cmd;
	caps.max_resp = c.max_resp;
	assert_int_equal(tk_card_new_backend("ccid", atr, atr_len, &caps, &be, s, 30000, &f->card),
	                 TK_OK);
	return f;
}

/* SELECT PIV, GET DATA CHUID (compared with the card's own answer). */
static __attribute__((unused)) void
cfx_select_chuid(struct fx *f, tk_vcard_t *vc)
{
	static const uint8_t chuid[] = {0x5C, 0x03, 0x5F, 0xC1, 0x02};
	static const uint8_t direct[] = {0x00, 0xCB, 0x3F, 0xFF, 0x05, 0x5C,
	                                 0x03, 0x5F, 0xC1, 0x02, 0x00};
	uint8_t resp[512], want[512];
	size_t n = 0, wn;

	assert_int_equal(fx_select(f), 0);
	assert_int_equal(
	        fx_apdu(f, 0, 0xCB, 0x3F, 0xFF, chuid, sizeof(chuid), resp, sizeof(resp), &n),
	        0x9000);
	/* the same card asked directly (its state is not changed by it) */
	wn = tk_vcard_process(vc, direct, sizeof(direct), want, sizeof(want));
	assert_true(wn > 2);
	assert_int_equal(n, wn - 2);
	assert_memory_equal(resp, want, n);
	assert_int_equal(resp[0], 0x53);
}

/* Management key, an RSA-2048 key in 9A (a response of some 270 bytes),
 * VERIFY PIN, a signature (a 262-byte command) checked with OpenSSL. */
static __attribute__((unused)) void
cfx_sign(struct fx *f)
{
	static const uint8_t pin[8] = {'1', '2', '3', '4', '5', '6', 0xFF, 0xFF};
	static const uint8_t digest_info[19] = {0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60,
	                                        0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02,
	                                        0x01, 0x05, 0x00, 0x04, 0x20};
	static const char msg[] = "tokenkit signs through an emulated USB CCID reader";
	uint8_t block[256], cmd[300], resp[600], hash[32];
	EVP_PKEY *pub;
	EVP_MD_CTX *md;
	size_t n = 0, cl = 0;
	unsigned hl = 0;

	assert_int_equal(fx_select(f), 0);
	assert_int_equal(fx_mgm_auth(f), 0);
	pub = fx_generate(f, 0x9A, 0x07);
	assert_non_null(pub);
	assert_int_equal(fx_apdu(f, 0, 0x20, 0x00, 0x80, pin, sizeof(pin), NULL, 0, NULL), 0x9000);
	/* EMSA-PKCS1-v1_5 of SHA-256(msg), built here */
	assert_int_equal(EVP_Digest(msg, sizeof(msg) - 1, hash, &hl, EVP_sha256(), NULL), 1);
	memset(block, 0xFF, sizeof(block));
	block[0] = 0x00;
	block[1] = 0x01;
	block[256 - 32 - 19 - 1] = 0x00;
	memcpy(block + 256 - 32 - 19, digest_info, 19);
	memcpy(block + 256 - 32, hash, 32);
	/* 7C 82 0106 { 82 00, 81 82 0100 block } */
	memcpy(cmd, "\x7C\x82\x01\x06\x82\x00\x81\x82\x01\x00", 10);
	memcpy(cmd + 10, block, 256);
	cl = 266;
	assert_int_equal(fx_apdu(f, 0, 0x87, 0x07, 0x9A, cmd, cl, resp, sizeof(resp), &n), 0x9000);
	/* 7C 82 0104 82 82 0100 signature */
	assert_int_equal(n, 8 + 256);
	assert_memory_equal(resp, "\x7C\x82\x01\x04\x82\x82\x01\x00", 8);
	md = EVP_MD_CTX_new();
	assert_int_equal(EVP_DigestVerifyInit(md, NULL, EVP_sha256(), NULL, pub), 1);
	assert_int_equal(EVP_DigestVerify(md, resp + 8, 256, (const uint8_t *)msg, sizeof(msg) - 1),
	                 1);
	EVP_MD_CTX_free(md);
	EVP_PKEY_free(pub);
}

/* Raw transmit through the slot: the response SW. */
static __attribute__((unused)) uint16_t
cfx_raw(tk_ccid_slot_t *s, const uint8_t *cmd, size_t len, uint8_t *resp, size_t cap, size_t *rlen)
{
	size_t n = 0;

	assert_int_equal(tk_ccid_transmit(s, cmd, len, resp, cap, &n), TK_OK);
	assert_true(n >= 2);
	if (rlen != NULL)
		*rlen = n;
	return (uint16_t)(resp[n - 2] << 8 | resp[n - 1]);
}

static __attribute__((unused)) void
cfx_free_piv(struct fx *f)
{
	f->vc = NULL; /* the fixture's cards are freed by cfx_stop */
	fx_free(f);
}

#endif
