/* Unit tests for ATR parsing (core/atr.c). Every expected field is worked
 * out by hand from ISO/IEC 7816-3 (TS, T0, TDi chain, Tables 7 and 8, TCK)
 * and ISO/IEC 7816-4 8.1.1 (historical bytes); the working is in comments. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include <tokenkit/atr.h>
#include <tokenkit/err.h>

/* YubiKey 5 NFC. T0 = FD: TA1 TB1 TC1 TD1, K = 13. TA1 = 13 (Fi 372, Di 4),
 * TD1 = 81 (TD2 follows, T=1), TD2 = 31 (TA3 TB3 follow, T=1), TA3 = FE
 * (IFSC 254), TB3 = 15 (BWI 1, CWI 5). Historical: 80, then 73 = card
 * capabilities C0 21 C0, 57 = issuer data "YubiKey". TCK: FD^13^00^00^81^31
 * ^FE^15^80^73^C0^21^C0^57^59^75^62^69^4B^65^79 = 40. */
static const uint8_t yubikey[] = {0x3B, 0xFD, 0x13, 0x00, 0x00, 0x81, 0x31, 0xFE,
                                  0x15, 0x80, 0x73, 0xC0, 0x21, 0xC0, 0x57, 0x59,
                                  0x75, 0x62, 0x69, 0x4B, 0x65, 0x79, 0x40};

static void
test_yubikey(void **state)
{
	tk_atr_t a;

	(void)state;
	assert_int_equal(tk_atr_parse(yubikey, sizeof(yubikey), &a), TK_OK);
	assert_int_equal(a.len, 23);
	assert_int_equal(a.ts, 0x3B);
	assert_false(a.inverse);
	assert_int_equal(a.t0, 0xFD);
	assert_int_equal(a.levels, 3);
	assert_int_equal(a.present[0], TK_ATR_TA | TK_ATR_TB | TK_ATR_TC | TK_ATR_TD);
	assert_int_equal(a.present[1], TK_ATR_TD);
	assert_int_equal(a.present[2], TK_ATR_TA | TK_ATR_TB);
	assert_int_equal(a.ta[0], 0x13);
	assert_int_equal(a.td[0], 0x81);
	assert_int_equal(a.td[1], 0x31);
	assert_int_equal(a.protocols, TK_ATR_PROTO_T1);
	assert_int_equal(a.first_protocol, 1);
	assert_int_equal(a.fi, 372);
	assert_int_equal(a.di, 4);
	assert_int_equal(a.fmax_khz, 5000);
	assert_int_equal(a.extra_guard, 0);
	assert_false(a.specific_mode);
	assert_int_equal(a.ifsc, 254);
	assert_int_equal(a.bwi, 1);
	assert_int_equal(a.cwi, 5);
	assert_false(a.edc_crc);
	assert_true(a.tck_required);
	assert_true(a.tck_present);
	assert_int_equal(a.tck, 0x40);
	assert_int_equal(a.hist_len, 13);
	assert_true(a.h.valid);
	assert_int_equal(a.h.category, 0x80);
	assert_true(a.h.obj[TK_ATR_CTAG_CAPABILITIES].present);
	assert_int_equal(a.h.obj[TK_ATR_CTAG_CAPABILITIES].len, 3);
	assert_memory_equal(a.h.obj[TK_ATR_CTAG_CAPABILITIES].v, "\xC0\x21\xC0", 3);
	assert_true(a.h.obj[TK_ATR_CTAG_ISSUER_DATA].present);
	assert_int_equal(a.h.obj[TK_ATR_CTAG_ISSUER_DATA].len, 7);
	assert_memory_equal(a.h.obj[TK_ATR_CTAG_ISSUER_DATA].v, "YubiKey", 7);
	assert_false(a.h.obj[TK_ATR_CTAG_AID].present);
	assert_false(a.h.has_status);
	/* Third software function table C0: chaining (b8) and extended Lc/Le (b7). */
	assert_true(tk_atr_extended_length(&a));
	assert_true(tk_atr_command_chaining(&a));
}

static void
test_yubikey_describe(void **state)
{
	tk_atr_t a;
	char text[2048], small[40];

	(void)state;
	assert_int_equal(tk_atr_parse(yubikey, sizeof(yubikey), &a), TK_OK);
	assert_int_equal(tk_atr_describe(&a, text, sizeof(text)), TK_OK);
	assert_non_null(strstr(text, "ATR: 3B FD 13 00 00 81 31 FE 15 80 73 C0 21 C0 57 59 75 62 "
	                             "69 4B 65 79 40\n"));
	assert_non_null(strstr(text, "TS = 3B: direct convention\n"));
	assert_non_null(strstr(text, "T0 = FD: Y1 = F, K = 13 historical bytes\n"));
	assert_non_null(strstr(text, "TA1 = 13: Fi = 372, f max = 5.0 MHz, Di = 4\n"));
	assert_non_null(strstr(text, "TC1 = 00: extra guard time N = 0\n"));
	assert_non_null(strstr(text, "TD1 = 81: T=1\n"));
	assert_non_null(strstr(text, "TA3 = FE: IFSC = 254 (T=1)\n"));
	assert_non_null(strstr(text, "TB3 = 15: BWI = 1, CWI = 5 (T=1)\n"));
	assert_non_null(strstr(text, "Protocols: T=1\n"));
	assert_non_null(strstr(text, "45 card issuer's data: 59 75 62 69 4B 65 79 \"YubiKey\"\n"));
	assert_non_null(strstr(text, "command chaining: yes, extended Lc/Le: yes"));
	assert_non_null(strstr(text, "TCK = 40 (correct)\n"));

	memset(small, 'x', sizeof(small));
	assert_int_equal(tk_atr_describe(&a, small, sizeof(small)), TK_ERR_BUFFER_TOO_SMALL);
	assert_int_equal(strlen(small), sizeof(small) - 1);
	assert_int_equal(tk_atr_describe(&a, small, 0), TK_ERR_INVALID_ARG);
}

/* "Astrid" T=0 card: T0 = 16 (TA1 only, K = 6). TA1 = 96: FI 9 -> Fi 512,
 * f max 5 MHz; DI 6 -> Di 32. No TD1: T=0 only, so no TCK. The category
 * byte 41 ('A') is proprietary. */
static void
test_t0_card(void **state)
{
	const uint8_t atr[] = {0x3B, 0x16, 0x96, 0x41, 0x73, 0x74, 0x72, 0x69, 0x64};
	uint8_t more[sizeof(atr) + 1];
	tk_atr_t a;
	char text[1024];

	(void)state;
	assert_int_equal(tk_atr_parse(atr, sizeof(atr), &a), TK_OK);
	assert_int_equal(a.levels, 1);
	assert_int_equal(a.present[0], TK_ATR_TA);
	assert_int_equal(a.protocols, TK_ATR_PROTO_T0);
	assert_int_equal(a.first_protocol, 0);
	assert_int_equal(a.fi_code, 9);
	assert_int_equal(a.fi, 512);
	assert_int_equal(a.di_code, 6);
	assert_int_equal(a.di, 32);
	assert_int_equal(a.fmax_khz, 5000);
	assert_int_equal(a.wi, 10);
	assert_false(a.tck_required);
	assert_false(a.tck_present);
	assert_int_equal(a.hist_len, 6);
	assert_memory_equal(a.hist, "Astrid", 6);
	assert_int_equal(a.h.category, 0x41);
	assert_false(a.h.valid);
	assert_false(tk_atr_extended_length(&a));
	assert_int_equal(tk_atr_describe(&a, text, sizeof(text)), TK_OK);
	assert_non_null(strstr(text, "TA1 = 96: Fi = 512, f max = 5.0 MHz, Di = 32\n"));
	assert_non_null(strstr(text, "Protocols: T=0\n"));
	assert_non_null(strstr(text, "category 41: proprietary\n"));

	/* A T=0 card may still send a TCK; it is then checked. XOR of 16 96 41
	 * 73 74 72 69 64 = B9. */
	memcpy(more, atr, sizeof(atr));
	more[sizeof(atr)] = 0xB9;
	assert_int_equal(tk_atr_parse(more, sizeof(more), &a), TK_OK);
	assert_true(a.tck_present);
	assert_false(a.tck_required);
	more[sizeof(atr)] = 0xBA;
	assert_int_equal(tk_atr_parse(more, sizeof(more), &a), TK_ERR_BAD_CHECKSUM);
}

/* A T=0 card with compact-TLV historical bytes: T0 = 7F (TA1 TB1 TC1, K = 15),
 * TA1 = 96. Historical: 80 | 31 80 (service data: b8, selection by full DF
 * name) | 65 B0 84 41 3D F6 (pre-issuing) | 12 0F FE (country) | 82 90 00
 * (status indicator, SW 9000). */
static void
test_category_80_status(void **state)
{
	const uint8_t atr[] = {0x3B, 0x7F, 0x96, 0x00, 0x00, 0x80, 0x31, 0x80, 0x65, 0xB0,
	                       0x84, 0x41, 0x3D, 0xF6, 0x12, 0x0F, 0xFE, 0x82, 0x90, 0x00};
	tk_atr_t a;

	(void)state;
	assert_int_equal(tk_atr_parse(atr, sizeof(atr), &a), TK_OK);
	assert_int_equal(a.hist_len, 15);
	assert_false(a.tck_present);
	assert_true(a.h.valid);
	assert_true(a.h.obj[TK_ATR_CTAG_SERVICE_DATA].present);
	assert_int_equal(a.h.obj[TK_ATR_CTAG_SERVICE_DATA].v[0], 0x80);
	assert_int_equal(a.h.obj[TK_ATR_CTAG_PRE_ISSUING].len, 5);
	assert_int_equal(a.h.obj[TK_ATR_CTAG_COUNTRY].len, 2);
	assert_true(a.h.has_status);
	assert_true(a.h.has_sw);
	assert_false(a.h.has_lcs);
	assert_int_equal(a.h.sw, 0x9000);
	assert_false(a.h.obj[TK_ATR_CTAG_CAPABILITIES].present);
	assert_false(tk_atr_extended_length(&a));
}

/* Inverse convention: TS = 3F. T0 = 65 (TB1 TC1, K = 5); TB1 = 25, TC1 = 00;
 * T=0 only, no TCK. Historical 2C 09 69 90 00 (proprietary category 2C). */
static void
test_inverse(void **state)
{
	const uint8_t atr[] = {0x3F, 0x65, 0x25, 0x00, 0x2C, 0x09, 0x69, 0x90, 0x00};
	tk_atr_t a;
	char text[1024];

	(void)state;
	assert_int_equal(tk_atr_parse(atr, sizeof(atr), &a), TK_OK);
	assert_true(a.inverse);
	assert_int_equal(a.present[0], TK_ATR_TB | TK_ATR_TC);
	assert_int_equal(a.tb[0], 0x25);
	assert_int_equal(a.fi, 372); /* defaults without TA1 */
	assert_int_equal(a.di, 1);
	assert_int_equal(a.protocols, TK_ATR_PROTO_T0);
	assert_int_equal(a.hist_len, 5);
	assert_int_equal(tk_atr_describe(&a, text, sizeof(text)), TK_OK);
	assert_non_null(strstr(text, "TS = 3F: inverse convention\n"));
	assert_non_null(strstr(text, "(defaults)"));
}

/* T=0 and T=1, category 00: T0 = 88 (TD1, K = 8), TD1 = 80 (TD2, T=0),
 * TD2 = 01 (T=1). Historical 00 | 73 C8 40 C0 | 00 90 00 (LCS 00, SW 9000).
 * TCK = 88^80^01^00^73^C8^40^C0^00^90^00 = A2. */
static void
test_category_00(void **state)
{
	const uint8_t atr[] = {0x3B, 0x88, 0x80, 0x01, 0x00, 0x73, 0xC8,
	                       0x40, 0xC0, 0x00, 0x90, 0x00, 0xA2};
	tk_atr_t a;

	(void)state;
	assert_int_equal(tk_atr_parse(atr, sizeof(atr), &a), TK_OK);
	assert_int_equal(a.protocols, TK_ATR_PROTO_T0 | TK_ATR_PROTO_T1);
	assert_int_equal(a.first_protocol, 0);
	assert_int_equal(a.levels, 3);
	assert_true(a.tck_required);
	assert_int_equal(a.ifsc, 32); /* no TA for T=1: default */
	assert_int_equal(a.cwi, 13);
	assert_int_equal(a.bwi, 4);
	assert_true(a.h.valid);
	assert_int_equal(a.h.category, 0x00);
	assert_true(a.h.has_lcs);
	assert_int_equal(a.h.lcs, 0x00);
	assert_int_equal(a.h.sw, 0x9000);
	assert_true(tk_atr_extended_length(&a));
}

/* TA2 = 81: specific mode, T=1, bit 8 set (cannot change), bit 5 clear.
 * T0 = 90 (TA1, TD1, K = 0), TA1 = 18 (Fi 372 f max 5 MHz, Di 12),
 * TD1 = 11 (TA2, T=1). TCK = 90^18^11^81 = 18. */
static void
test_specific_mode(void **state)
{
	const uint8_t atr[] = {0x3B, 0x90, 0x18, 0x11, 0x81, 0x18};
	tk_atr_t a;

	(void)state;
	assert_int_equal(tk_atr_parse(atr, sizeof(atr), &a), TK_OK);
	assert_int_equal(a.di, 12);
	assert_int_equal(a.fi, 372);
	assert_true(a.specific_mode);
	assert_int_equal(a.specific_protocol, 1);
	assert_false(a.mode_changeable);
	assert_false(a.implicit_params);
	assert_int_equal(a.hist_len, 0);
	assert_false(a.h.valid);
}

/* Global bytes after T=15: T0 = 80 (TD1), TD1 = 80 (TD2, T=0), TD2 = 1F (TA3,
 * T=15), TA3 = 07: clock stop 0, classes A, B and C. TCK = 80^80^1F^07 = 18.
 * Category 10: 3B 02 10 05 is DIR data reference 05. */
static void
test_t15_and_category_10(void **state)
{
	const uint8_t atr[] = {0x3B, 0x80, 0x80, 0x1F, 0x07, 0x18};
	const uint8_t dir[] = {0x3B, 0x02, 0x10, 0x05};
	tk_atr_t a;

	(void)state;
	assert_int_equal(tk_atr_parse(atr, sizeof(atr), &a), TK_OK);
	assert_int_equal(a.protocols, TK_ATR_PROTO_T0 | TK_ATR_PROTO_T15);
	assert_true(a.tck_required);
	assert_true(a.has_t15_ta);
	assert_int_equal(a.clock_stop, 0);
	assert_int_equal(a.classes, 0x07);

	assert_int_equal(tk_atr_parse(dir, sizeof(dir), &a), TK_OK);
	assert_true(a.h.valid);
	assert_true(a.h.has_dir_ref);
	assert_int_equal(a.h.dir_ref, 0x05);
}

/* A MIFARE Classic 1K on a PC/SC contactless reader (PC/SC Part 3): T0 = 8F
 * (TD1, K = 15), TD1 = 80 (TD2, T=0), TD2 = 01 (T=1). Historical: 80 4F 0C
 * then the 12-byte AID: RID A0 00 00 03 06, standard 03 (ISO 14443 A part
 * 3), card name 00 01, 4 bytes RFU. TCK: 8F^80^01^80^4F^0C^A0^03^06^03^01
 * = 6A. */
static void
test_pcsc_part3(void **state)
{
	const uint8_t atr[] = {0x3B, 0x8F, 0x80, 0x01, 0x80, 0x4F, 0x0C, 0xA0, 0x00, 0x00,
	                       0x03, 0x06, 0x03, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x6A};
	tk_atr_t a;
	char text[2048];

	(void)state;
	assert_int_equal(tk_atr_parse(atr, sizeof(atr), &a), TK_OK);
	assert_int_equal(a.protocols, TK_ATR_PROTO_T0 | TK_ATR_PROTO_T1);
	assert_int_equal(a.hist_len, 15);
	assert_true(a.h.valid);
	assert_true(a.h.obj[TK_ATR_CTAG_AID].present);
	assert_int_equal(a.h.obj[TK_ATR_CTAG_AID].len, 12);
	assert_memory_equal(a.h.obj[TK_ATR_CTAG_AID].v,
	                    "\xA0\x00\x00\x03\x06\x03\x00\x01\x00\x00\x00\x00", 12);
	assert_false(tk_atr_extended_length(&a));
	assert_int_equal(tk_atr_describe(&a, text, sizeof(text)), TK_OK);
	assert_non_null(strstr(text, "4F application identifier: A0 00 00 03 06 03 00 01 00 00 00 "
	                             "00\n"));
	assert_non_null(strstr(text, "PC/SC storage card: standard 03, card name 0001\n"));
}

static void
test_errors(void **state)
{
	uint8_t buf[40];
	tk_atr_t a;

	(void)state;
	/* Bad TCK */
	memcpy(buf, yubikey, sizeof(yubikey));
	buf[sizeof(yubikey) - 1] = 0x41;
	assert_int_equal(tk_atr_parse(buf, sizeof(yubikey), &a), TK_ERR_BAD_CHECKSUM);
	assert_int_equal(a.len, 0);
	assert_int_equal(a.ts, 0);
	/* A flipped historical byte breaks the checksum too. */
	memcpy(buf, yubikey, sizeof(yubikey));
	buf[15] ^= 0x01;
	assert_int_equal(tk_atr_parse(buf, sizeof(yubikey), &a), TK_ERR_BAD_CHECKSUM);
	/* Missing TCK (required for T=1) */
	assert_int_equal(tk_atr_parse(yubikey, sizeof(yubikey) - 1, &a), TK_ERR_TRUNCATED);
	/* Missing historical bytes, missing interface bytes */
	assert_int_equal(tk_atr_parse(yubikey, 12, &a), TK_ERR_TRUNCATED);
	assert_int_equal(tk_atr_parse(yubikey, 4, &a), TK_ERR_TRUNCATED);
	assert_int_equal(tk_atr_parse(yubikey, 1, &a), TK_ERR_TRUNCATED);
	assert_int_equal(tk_atr_parse(yubikey, 0, &a), TK_ERR_TRUNCATED);
	/* Bad TS */
	assert_int_equal(tk_atr_parse((const uint8_t *)"\x3C\x00", 2, &a), TK_ERR_MALFORMED);
	/* Bytes after the ATR */
	memcpy(buf, yubikey, sizeof(yubikey));
	buf[23] = 0x00;
	buf[24] = 0x00;
	assert_int_equal(tk_atr_parse(buf, 25, &a), TK_ERR_MALFORMED);
	/* Longer than 33 bytes */
	memset(buf, 0, sizeof(buf));
	buf[0] = 0x3B;
	assert_int_equal(tk_atr_parse(buf, 34, &a), TK_ERR_MALFORMED);
	assert_int_equal(tk_atr_parse(NULL, 3, &a), TK_ERR_INVALID_ARG);
	assert_int_equal(tk_atr_parse(yubikey, sizeof(yubikey), NULL), TK_ERR_INVALID_ARG);
	/* Malformed category-80 historical bytes do not fail the ATR: 3B 02 80 75
	 * (object of 5 bytes, none left). */
	assert_int_equal(tk_atr_parse((const uint8_t *)"\x3B\x02\x80\x75", 4, &a), TK_OK);
	assert_false(a.h.valid);
	assert_int_equal(a.h.category, 0x80);
}

/* TD chain of 31 levels fits 33 bytes: 3B 80 then 30 x 80 then 00. Each TD
 * announces only the next TD; T=0 throughout, so no TCK. */
static void
test_long_chain(void **state)
{
	uint8_t buf[33];
	tk_atr_t a;

	(void)state;
	buf[0] = 0x3B;
	buf[1] = 0x80;
	for (size_t i = 2; i < 32; i++)
		buf[i] = 0x80;
	buf[32] = 0x00;
	assert_int_equal(tk_atr_parse(buf, 33, &a), TK_OK);
	assert_int_equal(a.levels, 32);
	assert_int_equal(a.protocols, TK_ATR_PROTO_T0);
	/* The chain goes on past the end. */
	buf[32] = 0x80;
	assert_int_equal(tk_atr_parse(buf, 33, &a), TK_ERR_TRUNCATED);
}

int
main(void)
{
	/* clang-format off */
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_yubikey),
		cmocka_unit_test(test_yubikey_describe),
		cmocka_unit_test(test_t0_card),
		cmocka_unit_test(test_category_80_status),
		cmocka_unit_test(test_inverse),
		cmocka_unit_test(test_category_00),
		cmocka_unit_test(test_specific_mode),
		cmocka_unit_test(test_t15_and_category_10),
		cmocka_unit_test(test_pcsc_part3),
		cmocka_unit_test(test_errors),
		cmocka_unit_test(test_long_chain),
	};
	/* clang-format on */

	return cmocka_run_group_tests(tests, NULL, NULL);
}
