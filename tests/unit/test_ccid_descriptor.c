/* Unit tests for the CCID class descriptor parser, the configuration walk
 * and the quirk table (ccid/descriptor.c, ccid/quirks.c). Every byte below
 * is laid out by hand from USB CCID 1.1 5.1 (Table 5.1-1) and USB 2.0 9.6;
 * the expected fields are read off those comments, not from the parser. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include <tokenkit/err.h>

#include "descriptor.h"

/* A TPDU reader, the field offsets of Table 5.1-1 in the comments. */
static const uint8_t tpdu_desc[TK_CCID_DESC_LEN] = {
        0x36, 0x21,             /* 0 bLength 54, 1 bDescriptorType 21 */
        0x10, 0x01,             /* 2 bcdCCID 1.10 */
        0x00,                   /* 4 bMaxSlotIndex: one slot */
        0x07,                   /* 5 bVoltageSupport 5V 3V 1.8V */
        0x03, 0x00, 0x00, 0x00, /* 6 dwProtocols T=0 T=1 */
        0xA0, 0x0F, 0x00, 0x00, /* 10 dwDefaultClock 4000 kHz */
        0x40, 0x1F, 0x00, 0x00, /* 14 dwMaximumClock 8000 kHz */
        0x00,                   /* 18 bNumClockSupported */
        0x00, 0x2A, 0x00, 0x00, /* 19 dwDataRate 0x2A00 = 10752 */
        0x16, 0x40, 0x05, 0x00, /* 23 dwMaxDataRate 0x054016 = 344086 */
        0x00,                   /* 27 bNumDataRatesSupported */
        0xFE, 0x00, 0x00, 0x00, /* 28 dwMaxIFSD 254 */
        0x00, 0x00, 0x00, 0x00, /* 32 dwSynchProtocols */
        0x00, 0x00, 0x00, 0x00, /* 36 dwMechanical */
        0xBA, 0x00, 0x01, 0x00, /* 40 dwFeatures 000100BA (below) */
        0x0F, 0x01, 0x00, 0x00, /* 44 dwMaxCCIDMessageLength 0x10F = 271 */
        0xFF,                   /* 48 bClassGetResponse */
        0xFF,                   /* 49 bClassEnvelope */
        0x00, 0x00,             /* 50 wLcdLayout */
        0x03,                   /* 52 bPINSupport verify + modify */
        0x01,                   /* 53 bMaxCCIDBusySlots */
};
/* dwFeatures 000100BA = 00010000 (TPDU) | 80 (auto PPS) | 20 (auto baud) |
 * 10 (auto clock) | 08 (auto voltage) | 02 (auto parameters from ATR). */

static void
test_desc_fields(void **state)
{
	tk_ccid_desc_t d;

	(void)state;
	assert_int_equal(tk_ccid_desc_parse(tpdu_desc, sizeof(tpdu_desc), false, &d), TK_OK);
	assert_int_equal(d.bcd_ccid, 0x0110);
	assert_int_equal(d.max_slot_index, 0);
	assert_int_equal(d.voltage_support, 0x07);
	assert_int_equal(d.protocols, TK_CCID_PROTO_T0 | TK_CCID_PROTO_T1);
	assert_int_equal(d.default_clock_khz, 4000);
	assert_int_equal(d.max_clock_khz, 8000);
	assert_int_equal(d.data_rate_bps, 10752);
	assert_int_equal(d.max_data_rate_bps, 344086);
	assert_int_equal(d.max_ifsd, 254);
	assert_int_equal(d.features, 0x000100BA);
	assert_int_equal(d.max_msg_len, 271);
	assert_int_equal(d.class_get_response, 0xFF);
	assert_int_equal(d.class_envelope, 0xFF);
	assert_int_equal(d.pin_support, TK_CCID_PIN_VERIFY | TK_CCID_PIN_MODIFY);
	assert_int_equal(d.max_busy_slots, 1);
	assert_int_equal(tk_ccid_desc_level(&d), TK_CCID_LEVEL_TPDU);
	assert_true(d.features & TK_CCID_F_AUTO_PPS);
	assert_true(d.features & TK_CCID_F_AUTO_PARAM_ATR);
	assert_false(d.features & TK_CCID_F_AUTO_IFSD);
	assert_false(d.features & TK_CCID_F_AUTO_NEGOTIATION);
}

static void
test_desc_levels(void **state)
{
	uint8_t b[TK_CCID_DESC_LEN];
	tk_ccid_desc_t d;

	(void)state;
	memcpy(b, tpdu_desc, sizeof(b));
	b[42] = 0x02; /* dwFeatures byte 2: 02 -> 00020000 short APDU */
	assert_int_equal(tk_ccid_desc_parse(b, sizeof(b), false, &d), TK_OK);
	assert_int_equal(tk_ccid_desc_level(&d), TK_CCID_LEVEL_SHORT_APDU);
	b[42] = 0x04; /* 00040000 short and extended APDU */
	assert_int_equal(tk_ccid_desc_parse(b, sizeof(b), false, &d), TK_OK);
	assert_int_equal(tk_ccid_desc_level(&d), TK_CCID_LEVEL_EXT_APDU);
	b[42] = 0x00; /* character level */
	assert_int_equal(tk_ccid_desc_parse(b, sizeof(b), false, &d), TK_OK);
	assert_int_equal(tk_ccid_desc_level(&d), TK_CCID_LEVEL_CHARACTER);
	b[42] = 0x03; /* TPDU and short APDU at once: which one? */
	assert_int_equal(tk_ccid_desc_parse(b, sizeof(b), false, &d), TK_ERR_MALFORMED);
	assert_int_equal(d.features, 0); /* cleared on error */
	/* an APDU level with room for less than a header and a short APDU */
	b[42] = 0x04;
	b[44] = 0x0E; /* 0x10E = 270 */
	assert_int_equal(tk_ccid_desc_parse(b, sizeof(b), false, &d), TK_ERR_MALFORMED);
	/* ... is fine at the TPDU level (5.1: then the bulk-out packet size) */
	b[42] = 0x01;
	b[44] = 0x40; /* 0x140 = 320 */
	b[45] = 0x00;
	assert_int_equal(tk_ccid_desc_parse(b, sizeof(b), false, &d), TK_OK);
	assert_int_equal(d.max_msg_len, 64);
	b[44] = 0x3F; /* 63: below a full-speed packet */
	assert_int_equal(tk_ccid_desc_parse(b, sizeof(b), false, &d), TK_ERR_MALFORMED);
	/* larger than any message we build: clamped */
	b[44] = 0x00;
	b[45] = 0x00;
	b[46] = 0x10; /* 0x100000 */
	assert_int_equal(tk_ccid_desc_parse(b, sizeof(b), false, &d), TK_OK);
	assert_int_equal(d.max_msg_len, TK_CCID_MAX_MSG_LEN);
}

static void
test_desc_errors(void **state)
{
	uint8_t b[TK_CCID_DESC_LEN + 2];
	tk_ccid_desc_t d;

	(void)state;
	memcpy(b, tpdu_desc, TK_CCID_DESC_LEN);
	assert_int_equal(tk_ccid_desc_parse(NULL, 54, false, &d), TK_ERR_INVALID_ARG);
	assert_int_equal(tk_ccid_desc_parse(b, 53, false, &d), TK_ERR_TRUNCATED);
	b[0] = 0x35;
	assert_int_equal(tk_ccid_desc_parse(b, 54, false, &d), TK_ERR_MALFORMED);
	b[0] = 0x38; /* longer than what we have */
	assert_int_equal(tk_ccid_desc_parse(b, 54, false, &d), TK_ERR_TRUNCATED);
	b[54] = b[55] = 0;
	assert_int_equal(tk_ccid_desc_parse(b, 56, false, &d),
	                 TK_OK); /* extra bytes: a later revision */
	b[0] = 0x36;
	b[1] = 0xFF; /* pre-1.0 type */
	assert_int_equal(tk_ccid_desc_parse(b, 54, false, &d), TK_ERR_MALFORMED);
	assert_int_equal(tk_ccid_desc_parse(b, 54, true, &d), TK_OK);
	b[1] = 0x21;
	b[4] = 16; /* bMaxSlotIndex 16: 17 slots */
	assert_int_equal(tk_ccid_desc_parse(b, 54, false, &d), TK_ERR_MALFORMED);
	b[4] = 15;
	assert_int_equal(tk_ccid_desc_parse(b, 54, false, &d), TK_OK);
	b[4] = 0;
	b[6] = 0x04; /* only "T=2" */
	assert_int_equal(tk_ccid_desc_parse(b, 54, false, &d), TK_ERR_MALFORMED);
	b[6] = 0x02;
	b[53] = 0; /* no busy slot at all: read as the minimum, 1 */
	assert_int_equal(tk_ccid_desc_parse(b, 54, false, &d), TK_OK);
	assert_int_equal(d.max_busy_slots, 1);
}

static void
test_desc_describe(void **state)
{
	tk_ccid_desc_t d;
	char text[1024], small[24];

	(void)state;
	assert_int_equal(tk_ccid_desc_parse(tpdu_desc, sizeof(tpdu_desc), false, &d), TK_OK);
	assert_int_equal(tk_ccid_desc_describe(&d, text, sizeof(text)), TK_OK);
	assert_non_null(strstr(text, "CCID 1.10, 1 slot(s), TPDU level, protocols T=0 T=1"));
	assert_non_null(strstr(text, "max message 271 bytes"));
	assert_non_null(strstr(text, "PIN pad verify modify"));
	assert_non_null(strstr(text, "auto-PPS"));
	assert_null(strstr(text, "auto-IFSD"));
	assert_int_equal(tk_ccid_desc_describe(&d, small, sizeof(small)), TK_ERR_BUFFER_TOO_SMALL);
	assert_true(strlen(small) < sizeof(small));
	assert_string_equal(tk_ccid_level_name(TK_CCID_LEVEL_EXT_APDU), "extended APDU");
}

/* --- configuration walk ------------------------------------------------------ */

struct cfgbuf {
	uint8_t b[600];
	size_t n;
};

static void
put(struct cfgbuf *c, const uint8_t *p, size_t n)
{
	assert_true(c->n + n <= sizeof(c->b));
	memcpy(c->b + c->n, p, n);
	c->n += n;
}

/* Configuration header; wTotalLength fixed by finish(). */
static void
config(struct cfgbuf *c, uint8_t nifaces)
{
	const uint8_t h[9] = {9, 0x02, 0, 0, nifaces, 1, 0, 0x80, 50};

	c->n = 0;
	put(c, h, sizeof(h));
}

static void
iface(struct cfgbuf *c, uint8_t num, uint8_t alt, uint8_t neps, uint8_t cls)
{
	const uint8_t h[9] = {9, 0x04, num, alt, neps, cls, 0, 0, 0};

	put(c, h, sizeof(h));
}

static void
ep(struct cfgbuf *c, uint8_t addr, uint8_t type, uint16_t mps)
{
	const uint8_t h[7] = {7, 0x05, addr, type, (uint8_t)mps, (uint8_t)(mps >> 8), 0};

	put(c, h, sizeof(h));
}

static void
ccid(struct cfgbuf *c)
{
	put(c, tpdu_desc, sizeof(tpdu_desc));
}

static void
finish(struct cfgbuf *c)
{
	c->b[2] = (uint8_t)c->n;
	c->b[3] = (uint8_t)(c->n >> 8);
}

static const tk_ccid_usb_id_t plain_id = {0x1234, 0x5678, 0x0100};

static void
test_walk_single(void **state)
{
	struct cfgbuf c;
	tk_ccid_iface_t f[4];
	size_t n = 99;

	(void)state;
	config(&c, 1);
	iface(&c, 0, 0, 3, 0x0B);
	ccid(&c);
	ep(&c, 0x01, 0x02, 64);
	ep(&c, 0x82, 0x02, 64);
	ep(&c, 0x83, 0x03, 8);
	finish(&c);
	assert_int_equal(tk_ccid_config_parse(c.b, c.n, &plain_id, f, 4, &n), TK_OK);
	assert_int_equal(n, 1);
	assert_int_equal(f[0].number, 0);
	assert_int_equal(f[0].iface_class, 0x0B);
	assert_int_equal(f[0].ep_bulk_out, 0x01);
	assert_int_equal(f[0].ep_bulk_in, 0x82);
	assert_int_equal(f[0].ep_intr_in, 0x83);
	assert_int_equal(f[0].bulk_in_mps, 64);
	assert_int_equal(f[0].intr_mps, 8);
	assert_int_equal(f[0].desc.max_msg_len, 271);
	assert_int_equal(f[0].quirks, 0);
	/* The same with the class descriptor after the endpoints. */
	config(&c, 1);
	iface(&c, 0, 0, 3, 0x0B);
	ep(&c, 0x02, 0x02, 512);
	ep(&c, 0x81, 0x02, 512);
	ep(&c, 0x83, 0x03, 8);
	ccid(&c);
	finish(&c);
	assert_int_equal(tk_ccid_config_parse(c.b, c.n, &plain_id, f, 4, &n), TK_OK);
	assert_int_equal(n, 1);
	assert_int_equal(f[0].ep_bulk_out, 0x02);
	assert_int_equal(f[0].ep_bulk_in, 0x81);
	assert_int_equal(f[0].bulk_out_mps, 512);
	assert_int_equal(tk_ccid_desc_level(&f[0].desc), TK_CCID_LEVEL_TPDU);
}

static void
test_walk_composite(void **state)
{
	/* A token: HID (with a HID descriptor, also type 21) on interface 0,
	 * CCID on interfaces 1 and 2, the second without interrupt endpoint. */
	static const uint8_t hid_desc[9] = {9, 0x21, 0x11, 0x01, 0, 1, 0x22, 0x22, 0};
	struct cfgbuf c;
	tk_ccid_iface_t f[4];
	size_t n = 0;

	(void)state;
	config(&c, 3);
	iface(&c, 0, 0, 1, 0x03);
	put(&c, hid_desc, sizeof(hid_desc));
	ep(&c, 0x81, 0x03, 64);
	iface(&c, 1, 0, 3, 0x0B);
	ccid(&c);
	ep(&c, 0x02, 0x02, 64);
	ep(&c, 0x82, 0x02, 64);
	ep(&c, 0x83, 0x03, 8);
	iface(&c, 2, 0, 2, 0x0B);
	ccid(&c);
	ep(&c, 0x04, 0x02, 64);
	ep(&c, 0x84, 0x02, 64);
	finish(&c);
	assert_int_equal(tk_ccid_config_parse(c.b, c.n, &plain_id, f, 4, &n), TK_OK);
	assert_int_equal(n, 2);
	assert_int_equal(f[0].number, 1);
	assert_int_equal(f[1].number, 2);
	assert_int_equal(f[1].ep_intr_in, 0);
	assert_int_equal(f[1].ep_bulk_in, 0x84);
	/* room for one: the count still says two */
	assert_int_equal(tk_ccid_config_parse(c.b, c.n, &plain_id, f, 1, &n), TK_OK);
	assert_int_equal(n, 2);
	assert_int_equal(f[0].number, 1);
}

static void
test_walk_skips(void **state)
{
	uint8_t bad[TK_CCID_DESC_LEN];
	struct cfgbuf c;
	tk_ccid_iface_t f[4];
	size_t n = 0;

	(void)state;
	memcpy(bad, tpdu_desc, sizeof(bad));
	bad[4] = 20; /* bMaxSlotIndex 20: refused */
	config(&c, 3);
	/* no bulk-in endpoint: unusable, skipped */
	iface(&c, 0, 0, 2, 0x0B);
	ccid(&c);
	ep(&c, 0x01, 0x02, 64);
	ep(&c, 0x83, 0x03, 8);
	/* two alternate settings of one interface: one reader, the first */
	iface(&c, 1, 0, 2, 0x0B);
	ccid(&c);
	ep(&c, 0x04, 0x02, 64);
	ep(&c, 0x85, 0x02, 64);
	iface(&c, 1, 1, 2, 0x0B);
	ccid(&c);
	ep(&c, 0x06, 0x02, 64);
	ep(&c, 0x87, 0x02, 64);
	/* a class descriptor the parser refuses: skipped, not fatal */
	iface(&c, 2, 0, 2, 0x0B);
	put(&c, bad, sizeof(bad));
	ep(&c, 0x08, 0x02, 64);
	ep(&c, 0x89, 0x02, 64);
	finish(&c);
	assert_int_equal(tk_ccid_config_parse(c.b, c.n, &plain_id, f, 4, &n), TK_OK);
	assert_int_equal(n, 1);
	assert_int_equal(f[0].number, 1);
	assert_int_equal(f[0].alt, 0);
	assert_int_equal(f[0].ep_bulk_out, 0x04);
	assert_int_equal(f[0].ep_bulk_in, 0x85);
}

static void
test_walk_vendor_class(void **state)
{
	const tk_ccid_usb_id_t scr335 = {0x04E6, 0x5115, 0x0100};
	uint8_t legacy[TK_CCID_DESC_LEN];
	struct cfgbuf c;
	tk_ccid_iface_t f[2];
	size_t n = 9;

	(void)state;
	memcpy(legacy, tpdu_desc, sizeof(legacy));
	legacy[1] = 0xFF; /* descriptor type of a pre-1.0 reader */
	config(&c, 1);
	iface(&c, 0, 0, 3, 0xFF);
	put(&c, legacy, sizeof(legacy));
	ep(&c, 0x01, 0x02, 64);
	ep(&c, 0x82, 0x02, 64);
	ep(&c, 0x83, 0x03, 8);
	finish(&c);
	/* Any vendor-specific interface is not a reader ... */
	assert_int_equal(tk_ccid_config_parse(c.b, c.n, &plain_id, f, 2, &n), TK_OK);
	assert_int_equal(n, 0);
	/* ... one on a device the quirk table names is. */
	assert_int_equal(tk_ccid_config_parse(c.b, c.n, &scr335, f, 2, &n), TK_OK);
	assert_int_equal(n, 1);
	assert_int_equal(f[0].iface_class, 0xFF);
	assert_true(f[0].quirks & TK_CCID_Q_VENDOR_CLASS);
	assert_int_equal(tk_ccid_desc_level(&f[0].desc), TK_CCID_LEVEL_TPDU);
}

static void
test_walk_broken_chain(void **state)
{
	struct cfgbuf c;
	tk_ccid_iface_t f[2];
	size_t n = 5;

	(void)state;
	config(&c, 1);
	iface(&c, 0, 0, 2, 0x0B);
	ccid(&c);
	ep(&c, 0x01, 0x02, 64);
	ep(&c, 0x82, 0x02, 64);
	finish(&c);
	/* wTotalLength beyond the bytes */
	assert_int_equal(tk_ccid_config_parse(c.b, c.n - 1, &plain_id, f, 2, &n), TK_ERR_TRUNCATED);
	assert_int_equal(n, 0);
	/* bytes after wTotalLength belong to nobody: ignored */
	c.b[c.n] = 0x00;
	assert_int_equal(tk_ccid_config_parse(c.b, c.n + 1, &plain_id, f, 2, &n), TK_OK);
	assert_int_equal(n, 1);
	/* a descriptor of length 0 would loop for ever */
	c.b[9] = 0;
	assert_int_equal(tk_ccid_config_parse(c.b, c.n, &plain_id, f, 2, &n), TK_ERR_MALFORMED);
	c.b[9] = 9;
	/* not a configuration descriptor first */
	c.b[1] = 0x04;
	assert_int_equal(tk_ccid_config_parse(c.b, c.n, &plain_id, f, 2, &n), TK_ERR_MALFORMED);
	c.b[1] = 0x02;
	/* wTotalLength shorter than the configuration descriptor itself */
	c.b[2] = 5;
	c.b[3] = 0;
	assert_int_equal(tk_ccid_config_parse(c.b, c.n, &plain_id, f, 2, &n), TK_ERR_MALFORMED);
	assert_int_equal(tk_ccid_config_parse(c.b, 0, &plain_id, f, 2, &n), TK_ERR_TRUNCATED);
	assert_int_equal(tk_ccid_config_parse(NULL, 9, &plain_id, f, 2, &n), TK_ERR_INVALID_ARG);
}

static void
test_quirks(void **state)
{
	tk_ccid_usb_id_t id = {0x04E6, 0x5111, 0x0600}; /* SCR331-DI, firmware 6.00 */

	(void)state;
	assert_int_equal(tk_ccid_quirks(&id), TK_CCID_Q_BAD_FIRMWARE);
	id.release = 0x0620; /* the release that fixed it */
	assert_int_equal(tk_ccid_quirks(&id), 0);
	id.pid = 0x5115; /* SCR335: vendor class, whatever the release */
	assert_int_equal(tk_ccid_quirks(&id), TK_CCID_Q_VENDOR_CLASS);
	id.vid = 0x1050; /* not in the table */
	assert_int_equal(tk_ccid_quirks(&id), 0);
	assert_int_equal(tk_ccid_quirks(NULL), 0);
	assert_string_not_equal(tk_ccid_quirk_name(TK_CCID_Q_VENDOR_CLASS), "");
	assert_string_equal(tk_ccid_quirk_name(0), "");
}

int
main(void)
{
	/* clang-format off */
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_desc_fields),
		cmocka_unit_test(test_desc_levels),
		cmocka_unit_test(test_desc_errors),
		cmocka_unit_test(test_desc_describe),
		cmocka_unit_test(test_walk_single),
		cmocka_unit_test(test_walk_composite),
		cmocka_unit_test(test_walk_skips),
		cmocka_unit_test(test_walk_vendor_class),
		cmocka_unit_test(test_walk_broken_chain),
		cmocka_unit_test(test_quirks),
	};
	/* clang-format on */

	return cmocka_run_group_tests(tests, NULL, NULL);
}
