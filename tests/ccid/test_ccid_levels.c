/* The CCID layer against the emulated reader at every exchange level,
 * through the real libusb: power on and ATR, APDUs of each case (short,
 * extended, chained, large responses), and the PIV card's SELECT, GET DATA
 * CHUID and an RSA-2048 signature checked with OpenSSL. The reader's
 * counters show which mechanism carried them: XfrBlock chaining by
 * wLevelParameter, command chaining and GET RESPONSE, T=1 chaining, T=0
 * GET RESPONSE, and PPS / SetParameters / IFSD where the reader leaves
 * them to the host. */
#include "ccid_fixture.h"

/* case 1: VERIFY without data asks for the PIN's state (63Cx: tries left) */
static const uint8_t case1[] = {0x00, 0x20, 0x00, 0x80};
/* case 2: GET VERSION (the Yubico command the card answers) */
static const uint8_t case2[] = {0x00, 0xFD, 0x00, 0x00, 0x00};
/* case 3: VERIFY 123456 */
static const uint8_t case3[] = {0x00, 0x20, 0x00, 0x80, 0x08, '1', '2',
                                '3',  '4',  '5',  '6',  0xFF, 0xFF};
/* case 4 extended: GET DATA CHUID with Lc and Le in three bytes */
static const uint8_t case4e[] = {0x00, 0xCB, 0x3F, 0xFF, 0x00, 0x00, 0x05,
                                 0x5C, 0x03, 0x5F, 0xC1, 0x02, 0x00, 0x00};

struct run {
	ccid_emu_counts_t c;
	tk_ccid_stats_t st;
	int proto;
};

static void
level_run(const ccid_emu_reader_cfg_t *rc, bool t0, bool ext_ok, struct run *out)
{
	struct cfx x;
	ccid_emu_dev_cfg_t cfg = {0};
	tk_ccid_slot_t *s;
	struct fx *f;
	uint8_t atr[40], resp[1024];
	size_t n = 0;
	tk_ccid_caps_t caps;

	cfg.iface[0] = *rc;
	cfx_start(&x, &cfg);
	s = cfx_slot(&x, 0, 0);
	if (t0)
		ccid_emu_set_atr(x.dev, 0, 0, cfx_atr_t0, sizeof(cfx_atr_t0));
	/* not powered yet */
	assert_int_equal(tk_ccid_transmit(s, case1, sizeof(case1), resp, sizeof(resp), &n),
	                 TK_ERR_STATE);
	assert_int_equal(tk_ccid_power_on(s, atr, sizeof(atr), &n, &out->proto), TK_OK);
	if (t0) {
		assert_int_equal(n, sizeof(cfx_atr_t0));
		assert_memory_equal(atr, cfx_atr_t0, n);
	} else {
		assert_int_equal(n, tk_vcard_atr(x.vc[0][0], resp, sizeof(resp)));
		assert_memory_equal(atr, resp, n);
	}
	tk_ccid_caps(s, &caps);
	assert_int_equal(caps.protocol, out->proto);
	assert_int_equal(caps.extended_apdu, ext_ok);
	f = cfx_piv(s, atr, n);
	cfx_select_chuid(f, x.vc[0][0]);
	/* every case, raw */
	assert_int_equal(cfx_raw(s, case1, sizeof(case1), resp, sizeof(resp), &n) & 0xFFF0, 0x63C0);
	assert_int_equal(cfx_raw(s, case2, sizeof(case2), resp, sizeof(resp), &n), 0x9000);
	assert_int_equal(n, 3 + 2);
	assert_int_equal(cfx_raw(s, case3, sizeof(case3), resp, sizeof(resp), &n), 0x9000);
	if (ext_ok) {
		assert_int_equal(cfx_raw(s, case4e, sizeof(case4e), resp, sizeof(resp), &n),
		                 0x9000);
		assert_int_equal(resp[0], 0x53);
	} else {
		assert_int_equal(
		        tk_ccid_transmit(s, case4e, sizeof(case4e), resp, sizeof(resp), &n),
		        TK_ERR_NOT_SUPPORTED);
	}
	/* a response bigger than a short APDU's, a command bigger than one */
	cfx_sign(f);
	cfx_free_piv(f);
	ccid_emu_counts(x.dev, 0, &out->c);
	tk_ccid_get_stats(x.d[0], &out->st);
	assert_int_equal(out->c.power_on, 1);
	assert_int_equal(out->c.garbage_sent + out->c.stale_sent, 0);
	cfx_stop(&x);
}

static void
test_extended_apdu_big_messages(void **state)
{
	ccid_emu_reader_cfg_t rc = {.level = EMU_EXT_APDU, .max_msg_len = 4096 + 10};
	struct run r;

	(void)state;
	level_run(&rc, false, true, &r);
	assert_int_equal(r.proto, 1);
	/* everything fits a message: no chaining of any kind */
	assert_int_equal(r.c.xfr_chained, 0);
	assert_int_equal(r.c.resp_parts, 0);
	assert_int_equal(r.c.cla_chained, 0);
	assert_int_equal(r.c.ins[0xC0], 0);
	/* the reader negotiates by itself */
	assert_int_equal(r.c.pps + r.c.set_params, 0);
}

static void
test_extended_apdu_small_messages(void **state)
{
	ccid_emu_reader_cfg_t rc = {.level = EMU_EXT_APDU, .max_msg_len = 271};
	struct run r;

	(void)state;
	level_run(&rc, false, true, &r);
	/* the 266-byte signature command does not fit 261 bytes: begin +
	 * end XfrBlocks; the 270-byte public key comes in two parts */
	assert_true(r.c.xfr_chained >= 2);
	assert_true(r.c.resp_parts >= 1);
	/* still one APDU to the card each */
	assert_int_equal(r.c.cla_chained, 0);
	assert_int_equal(r.c.ins[0xC0], 0);
}

static void
test_short_apdu(void **state)
{
	ccid_emu_reader_cfg_t rc = {.level = EMU_SHORT_APDU};
	struct run r;

	(void)state;
	level_run(&rc, false, false, &r);
	assert_int_equal(r.c.xfr_chained, 0);
	/* the layer above chains the signature command and fetches long
	 * answers with GET RESPONSE */
	assert_true(r.c.cla_chained >= 1);
	assert_true(r.c.ins[0xC0] >= 1);
}

static void
test_tpdu_t1(void **state)
{
	ccid_emu_reader_cfg_t rc = {.level = EMU_TPDU};
	struct run r;

	(void)state;
	level_run(&rc, false, true, &r);
	assert_int_equal(r.proto, 1);
	/* the reader left it to us: PPS to TA1 13, SetParameters, IFSD */
	assert_int_equal(r.c.pps, 1);
	assert_int_equal(r.c.set_params, 1);
	assert_int_equal(r.c.t1_ifs_req, 1);
	/* the 270-byte answer is more than IFSD 254: the card chains and we
	 * ask for the rest with R-blocks */
	assert_true(r.c.t1_r_blocks >= 1);
	assert_int_equal(r.st.t1_retransmits, 0);
	assert_int_equal(r.c.cla_chained, 0);
}

static void
test_tpdu_t1_auto(void **state)
{
	ccid_emu_reader_cfg_t rc = {.level = EMU_TPDU,
	                            .auto_features = TK_CCID_F_AUTO_PARAM_ATR | TK_CCID_F_AUTO_PPS |
	                                             TK_CCID_F_AUTO_IFSD | TK_CCID_F_AUTO_VOLTAGE |
	                                             TK_CCID_F_AUTO_CLOCK | TK_CCID_F_AUTO_BAUD};
	struct run r;

	(void)state;
	level_run(&rc, false, true, &r);
	/* a reader that does it all: we send none of it */
	assert_int_equal(r.c.pps, 0);
	assert_int_equal(r.c.set_params, 0);
	assert_int_equal(r.c.t1_ifs_req, 0);
}

static void
test_tpdu_t0(void **state)
{
	ccid_emu_reader_cfg_t rc = {.level = EMU_TPDU};
	struct run r;

	(void)state;
	level_run(&rc, true, false, &r);
	assert_int_equal(r.proto, 0);
	assert_int_equal(r.c.pps, 1);
	assert_int_equal(r.c.set_params, 1);
	/* case 4 answers come back with GET RESPONSE */
	assert_true(r.c.t0_get_response >= 1);
	assert_int_equal(r.c.t1_blocks, 0);
}

static void
test_descriptor_seen(void **state)
{
	ccid_emu_dev_cfg_t cfg = {0};
	const tk_ccid_found_t *fi;
	struct cfx x;

	(void)state;
	cfg.iface[0].level = EMU_TPDU;
	cfg.iface[0].pin_support = TK_CCID_PIN_VERIFY;
	cfg.iface[0].desc_after_eps = true;
	cfx_start(&x, &cfg);
	fi = tk_ccid_info(x.d[0]);
	assert_int_equal(fi->id.vid, 0x04E6);
	assert_int_equal(fi->id.pid, 0x5116);
	assert_int_equal(fi->iface.desc.max_msg_len, 271);
	assert_int_equal(fi->iface.desc.pin_support, TK_CCID_PIN_VERIFY);
	assert_int_equal(tk_ccid_level(x.d[0]), TK_CCID_LEVEL_TPDU);
	assert_int_equal(tk_ccid_nslots(x.d[0]), 1);
	assert_non_null(strstr(tk_ccid_name(x.d[0]), x.serial));
	assert_non_null(strstr(tk_ccid_name(x.d[0]), "Emulated CCID Reader"));
	cfx_stop(&x);
}

int
main(int argc, char **argv)
{
	/* clang-format off */
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_descriptor_seen),
		cmocka_unit_test(test_extended_apdu_big_messages),
		cmocka_unit_test(test_extended_apdu_small_messages),
		cmocka_unit_test(test_short_apdu),
		cmocka_unit_test(test_tpdu_t1),
		cmocka_unit_test(test_tpdu_t1_auto),
		cmocka_unit_test(test_tpdu_t0),
	};
	/* clang-format on */
	int r;

	cfx_main(argc, argv);
	r = cmocka_run_group_tests(tests, NULL, NULL);
	cfx_main_end();
	return r;
}
