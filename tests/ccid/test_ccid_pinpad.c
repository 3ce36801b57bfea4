/* PIN-pad readers (bPINSupport, PC_to_RDR_Secure) through the real libusb:
 * the reader puts the digits the user typed into the APDU we give it, the
 * PIV card checks them. At the APDU level and at the TPDU level with T=1
 * (where our T=1 state supplies the block's prologue and must stay in step
 * afterwards). Cancel and timeout on the pad are errors of their own. */
#include "ccid_fixture.h"

/* PIV VERIFY and CHANGE REFERENCE DATA templates: the pad fills in the
 * PIN, ASCII, left justified, padded with FF to 8 bytes. */
static const uint8_t verify_tpl[] = {0x00, 0x20, 0x00, 0x80, 0x08, 0xFF, 0xFF,
                                     0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF};
static const uint8_t change_tpl[] = {0x00, 0x24, 0x00, 0x80, 0x10, 0xFF, 0xFF,
                                     0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF,
                                     0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF};
static const uint8_t select_piv[] = {0x00, 0xA4, 0x04, 0x00, 0x09, 0xA0, 0x00, 0x00,
                                     0x03, 0x08, 0x00, 0x00, 0x10, 0x00, 0x00};
static const uint8_t pin_state[] = {0x00, 0x20, 0x00, 0x80};

static tk_ccid_pin_op_t
verify_op(void)
{
	tk_ccid_pin_op_t op = {.operation = TK_CCID_PIN_OP_VERIFY,
	                       .timeout = 30,
	                       .format = TK_CCID_PIN_FMT_UNITS_BYTES | TK_CCID_PIN_FMT_ASCII,
	                       .block = 0x08,
	                       .min_len = 6,
	                       .max_len = 8,
	                       .entry_validation = 0x02,
	                       .num_messages = 1,
	                       .lang_id = 0x0409,
	                       .apdu = verify_tpl,
	                       .apdu_len = sizeof(verify_tpl)};

	return op;
}

static uint16_t
pad(tk_ccid_slot_t *s, const tk_ccid_pin_op_t *op)
{
	uint8_t resp[64];
	size_t n = 0;

	assert_int_equal(tk_ccid_secure(s, op, resp, sizeof(resp), &n), TK_OK);
	assert_int_equal(n, 2);
	return (uint16_t)(resp[0] << 8 | resp[1]);
}

static void
pinpad_run(enum ccid_emu_level level)
{
	ccid_emu_dev_cfg_t cfg = {0};
	tk_ccid_pin_op_t op = verify_op();
	uint8_t resp[300], apdu[64];
	tk_ccid_caps_t caps;
	tk_ccid_slot_t *s;
	ccid_emu_counts_t c;
	struct cfx x;
	size_t n = 0, n_resp = 0;

	cfg.iface[0].level = level;
	cfg.iface[0].pin_support = TK_CCID_PIN_VERIFY | TK_CCID_PIN_MODIFY;
	cfx_start(&x, &cfg);
	s = cfx_slot(&x, 0, 0);
	/* not powered */
	assert_int_equal(tk_ccid_secure(s, &op, resp, sizeof(resp), &n), TK_ERR_STATE);
	assert_int_equal(cfx_power(&x, 0, 0), 1);
	tk_ccid_caps(s, &caps);
	assert_true(caps.pin_pad_verify);
	assert_true(caps.pin_pad_modify);
	assert_int_equal(cfx_raw(s, select_piv, sizeof(select_piv), resp, sizeof(resp), NULL),
	                 0x9000);

	/* the right PIN */
	ccid_emu_pin_input(x.dev, 0, EMU_PIN_ENTER, "123456", NULL);
	assert_int_equal(pad(s, &op), 0x9000);
	assert_int_equal(ccid_emu_last_pin_apdu(x.dev, 0, apdu, sizeof(apdu)), 13);
	assert_memory_equal(apdu,
	                    "\x00\x20\x00\x80\x08"
	                    "123456\xFF\xFF",
	                    13);
	/* the card says so too; and the T=1 numbers are still in step */
	assert_int_equal(cfx_raw(s, pin_state, sizeof(pin_state), resp, sizeof(resp), NULL),
	                 0x9000);

	/* a wrong one: two tries left */
	ccid_emu_pin_input(x.dev, 0, EMU_PIN_ENTER, "654321", NULL);
	assert_int_equal(pad(s, &op), 0x63C2);

	/* cancel on the pad, and nobody typing */
	ccid_emu_pin_input(x.dev, 0, EMU_PIN_CANCEL, NULL, NULL);
	assert_int_equal(tk_ccid_secure(s, &op, resp, sizeof(resp), &n), TK_ERR_CANCELLED);
	ccid_emu_pin_input(x.dev, 0, EMU_PIN_TIMEOUT, NULL, NULL);
	assert_int_equal(tk_ccid_secure(s, &op, resp, sizeof(resp), &n), TK_ERR_TIMEOUT);
	assert_int_equal(cfx_raw(s, pin_state, sizeof(pin_state), resp, sizeof(resp), NULL),
	                 0x63C2);

	/* change 123456 -> 87654321 on the pad, then only the new one works */
	op.operation = TK_CCID_PIN_OP_MODIFY;
	op.apdu = change_tpl;
	op.apdu_len = sizeof(change_tpl);
	op.offset_old = 0;
	op.offset_new = 8;
	op.confirm = 0x03; /* the current PIN asked for, the new one confirmed */
	op.num_messages = 0;
	/* the confirmation differs: the pad ends the entry, the card sees nothing */
	ccid_emu_counts(x.dev, 0, &c);
	n = c.apdus;
	ccid_emu_pin_input(x.dev, 0, EMU_PIN_ENTER, "123456", "87654321");
	ccid_emu_pin_confirm(x.dev, 0, "87654320");
	assert_int_equal(tk_ccid_secure(s, &op, resp, sizeof(resp), &n_resp), TK_ERR_CANCELLED);
	ccid_emu_counts(x.dev, 0, &c);
	assert_int_equal(c.apdus, n);
	ccid_emu_pin_input(x.dev, 0, EMU_PIN_ENTER, "123456", "87654321");
	assert_int_equal(pad(s, &op), 0x9000);
	assert_int_equal(ccid_emu_last_pin_apdu(x.dev, 0, apdu, sizeof(apdu)), 21);
	assert_memory_equal(apdu + 5,
	                    "123456\xFF\xFF"
	                    "87654321",
	                    16);
	op = verify_op();
	ccid_emu_pin_input(x.dev, 0, EMU_PIN_ENTER, "123456", NULL);
	assert_int_equal(pad(s, &op) & 0xFFF0, 0x63C0);
	ccid_emu_pin_input(x.dev, 0, EMU_PIN_ENTER, "87654321", NULL);
	assert_int_equal(pad(s, &op), 0x9000);
	assert_int_equal(cfx_raw(s, select_piv, sizeof(select_piv), resp, sizeof(resp), NULL),
	                 0x9000);
	ccid_emu_counts(x.dev, 0, &c);
	assert_int_equal(c.secure, 8);
	assert_int_equal(c.msgs[TK_CCID_PC_SECURE], 8);
	assert_int_equal(c.modify_secure, 2);
	/* verify 2, the two changes 3 each, verify 2 (cancel and timeout: none) */
	assert_int_equal(c.pin_entries, 10);
	cfx_stop(&x);
}

static void
test_pinpad_apdu_level(void **state)
{
	(void)state;
	pinpad_run(EMU_EXT_APDU);
}

static void
test_pinpad_tpdu_t1(void **state)
{
	(void)state;
	pinpad_run(EMU_TPDU);
}

static void
test_no_pinpad(void **state)
{
	ccid_emu_dev_cfg_t cfg = {0};
	tk_ccid_pin_op_t op = verify_op();
	tk_ccid_caps_t caps;
	ccid_emu_counts_t c;
	uint8_t resp[16];
	struct cfx x;
	size_t n = 0;

	(void)state;
	cfg.iface[0].level = EMU_EXT_APDU;
	cfx_start(&x, &cfg);
	assert_int_equal(cfx_power(&x, 0, 0), 1);
	tk_ccid_caps(cfx_slot(&x, 0, 0), &caps);
	assert_false(caps.pin_pad_verify);
	assert_false(caps.pin_pad_modify);
	assert_int_equal(tk_ccid_secure(cfx_slot(&x, 0, 0), &op, resp, sizeof(resp), &n),
	                 TK_ERR_NOT_SUPPORTED);
	ccid_emu_counts(x.dev, 0, &c);
	assert_int_equal(c.msgs[TK_CCID_PC_SECURE], 0);
	cfx_stop(&x);
}

int
main(int argc, char **argv)
{
	/* clang-format off */
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_pinpad_apdu_level),
		cmocka_unit_test(test_pinpad_tpdu_t1),
		cmocka_unit_test(test_no_pinpad),
	};
	/* clang-format on */
	int r;

	cfx_main(argc, argv);
	r = cmocka_run_group_tests(tests, NULL, NULL);
	cfx_main_end();
	return r;
}
