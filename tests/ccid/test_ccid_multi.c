/* Several readers and slots through the real libusb: a composite device
 * with two CCID interfaces is two readers, and a wedged one does not stop
 * the other; a two-slot reader carries two cards; a reader on a
 * vendor-specific interface is found through the quirk table; an
 * interface another program has claimed is reported as shared. */
#include "ccid_fixture.h"

static const uint8_t select_piv[] = {0x00, 0xA4, 0x04, 0x00, 0x09, 0xA0, 0x00, 0x00,
                                     0x03, 0x08, 0x00, 0x00, 0x10, 0x00, 0x00};

static void
selects(tk_ccid_slot_t *s)
{
	uint8_t resp[300];

	assert_int_equal(cfx_raw(s, select_piv, sizeof(select_piv), resp, sizeof(resp), NULL),
	                 0x9000);
}

static void
test_composite(void **state)
{
	ccid_emu_dev_cfg_t cfg = {.ninterfaces = 2};
	ccid_emu_faults_t wedge = {.wedge_reset = true};
	uint8_t resp[300];
	size_t n = 0;
	struct cfx x;

	(void)state;
	cfg.iface[0].level = EMU_EXT_APDU;
	cfg.iface[1].level = EMU_TPDU;
	cfx_start(&x, &cfg);
	assert_int_equal(x.nopen, 2);
	assert_int_equal(tk_ccid_info(x.d[0])->iface.number, 0);
	assert_int_equal(tk_ccid_info(x.d[1])->iface.number, 1);
	assert_int_equal(tk_ccid_level(x.d[0]), TK_CCID_LEVEL_EXT_APDU);
	assert_int_equal(tk_ccid_level(x.d[1]), TK_CCID_LEVEL_TPDU);
	assert_string_not_equal(tk_ccid_name(x.d[0]), tk_ccid_name(x.d[1]));
	assert_int_equal(cfx_power(&x, 0, 0), 1);
	assert_int_equal(cfx_power(&x, 1, 0), 1);
	selects(cfx_slot(&x, 0, 0));
	selects(cfx_slot(&x, 1, 0));
	/* interface 0 wedges; interface 1 keeps working meanwhile */
	ccid_emu_set_faults(x.dev, 0, &wedge);
	assert_int_equal(tk_ccid_transmit(cfx_slot(&x, 0, 0), select_piv, sizeof(select_piv), resp,
	                                  sizeof(resp), &n),
	                 TK_ERR_TIMEOUT);
	for (int i = 0; i < 5; i++)
		selects(cfx_slot(&x, 1, 0));
	{
		ccid_emu_counts_t c0, c1;

		ccid_emu_counts(x.dev, 0, &c0);
		ccid_emu_counts(x.dev, 1, &c1);
		assert_int_equal(c0.mute_dropped, 1);
		assert_int_equal(c1.mute_dropped, 0);
		/* each reader claimed its own interface once */
		assert_int_equal(c0.claims, 1);
		assert_int_equal(c1.claims, 1);
	}
	cfx_stop(&x);
}

static void
test_two_slots(void **state)
{
	ccid_emu_dev_cfg_t cfg = {0};
	uint64_t before0, before1;
	struct cfx x;
	uint8_t atr[40];
	size_t n;
	int proto;

	(void)state;
	cfg.iface[0].level = EMU_TPDU;
	cfg.iface[0].nslots = 2;
	cfx_start(&x, &cfg);
	assert_int_equal(tk_ccid_nslots(x.d[0]), 2);
	assert_null(tk_ccid_slot(x.d[0], 2));
	assert_int_equal(tk_ccid_slot_index(cfx_slot(&x, 0, 1)), 1);
	assert_int_equal(cfx_power(&x, 0, 0), 1);
	assert_int_equal(cfx_power(&x, 0, 1), 1);
	before0 = tk_vcard_apdu_count(x.vc[0][0]);
	before1 = tk_vcard_apdu_count(x.vc[0][1]);
	/* each slot's APDUs reach its own card */
	selects(cfx_slot(&x, 0, 1));
	selects(cfx_slot(&x, 0, 1));
	selects(cfx_slot(&x, 0, 0));
	assert_int_equal(tk_vcard_apdu_count(x.vc[0][0]) - before0, 1);
	assert_int_equal(tk_vcard_apdu_count(x.vc[0][1]) - before1, 2);
	/* slot 1 powered off: slot 0 goes on, slot 1 says so */
	assert_int_equal(tk_ccid_power_off(cfx_slot(&x, 0, 1)), TK_OK);
	selects(cfx_slot(&x, 0, 0));
	assert_int_equal(tk_ccid_transmit(cfx_slot(&x, 0, 1), select_piv, sizeof(select_piv), atr,
	                                  sizeof(atr), &n),
	                 TK_ERR_STATE);
	/* a card out of slot 1 only */
	ccid_emu_remove_card(x.dev, 0, 1, true);
	{
		tk_ccid_intr_t ev;

		assert_int_equal(tk_ccid_wait_event(x.d[0], 2000, &ev), TK_OK);
		assert_int_equal(ev.present, 1); /* slot 0 still has its card */
		assert_int_equal(ev.changed, 2);
	}
	assert_int_equal(tk_ccid_power_on(cfx_slot(&x, 0, 1), atr, sizeof(atr), &n, &proto),
	                 TK_ERR_NO_CARD);
	selects(cfx_slot(&x, 0, 0));
	cfx_stop(&x);
}

static void
test_vendor_class(void **state)
{
	/* SCM SCR335: CCID on a vendor-specific interface */
	ccid_emu_dev_cfg_t cfg = {.vid = 0x04E6, .pid = 0x5115, .release = 0x0100};
	struct cfx x;

	(void)state;
	cfg.iface[0].level = EMU_EXT_APDU;
	cfg.iface[0].vendor_class = true;
	cfx_start(&x, &cfg);
	assert_int_equal(tk_ccid_info(x.d[0])->iface.iface_class, 0xFF);
	assert_true(tk_ccid_info(x.d[0])->iface.quirks & TK_CCID_Q_VENDOR_CLASS);
	assert_int_equal(cfx_power(&x, 0, 0), 1);
	selects(cfx_slot(&x, 0, 0));
	cfx_stop(&x);
}

static void
test_not_a_reader(void **state)
{
	/* the same interface on a device the table does not name: not ours */
	ccid_emu_dev_cfg_t cfg = {
	        .vid = 0x1209, .pid = 0x0001, .release = 0x0100, .ninterfaces = 1};
	ccid_emu_dev_t *dev;
	libusb_context *ctx = NULL;
	tk_ccid_found_t *f = NULL;
	unsigned bus, devnum;
	size_t n = 0;

	(void)state;
	cfg.iface[0].vendor_class = true;
	cfg.serial = "NOTREADER";
	dev = ccid_emu_add(cfx_emu, &cfg);
	assert_non_null(dev);
	ccid_emu_address(dev, &bus, &devnum);
	assert_int_equal(libusb_init(&ctx), 0);
	assert_int_equal(tk_ccid_scan(ctx, &f, &n), TK_OK);
	for (size_t i = 0; i < n; i++)
		assert_false(f[i].addr == devnum);
	free(f);
	libusb_exit(ctx);
	ccid_emu_unplug(dev);
}

static void
test_claimed_elsewhere(void **state)
{
	ccid_emu_dev_cfg_t cfg = {0};
	libusb_context *other = NULL;
	tk_ccid_dev_t *second = NULL;
	tk_ccid_found_t info;
	struct cfx x;

	(void)state;
	cfg.iface[0].level = EMU_EXT_APDU;
	cfx_start(&x, &cfg);
	/* another program (another libusb context, another file handle)
	 * wants the same interface */
	assert_int_equal(libusb_init(&other), 0);
	assert_int_equal(tk_ccid_open(other, tk_ccid_info(x.d[0]), &second), TK_ERR_SHARING);
	assert_null(second);
	/* once we let go, it can have it */
	info = *tk_ccid_info(x.d[0]);
	tk_ccid_close(&x.d[0]);
	assert_int_equal(tk_ccid_open(other, &info, &second), TK_OK);
	tk_ccid_close(&second);
	libusb_exit(other);
	cfx_stop(&x);
}

int
main(int argc, char **argv)
{
	/* clang-format off */
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_composite),
		cmocka_unit_test(test_two_slots),
		cmocka_unit_test(test_vendor_class),
		cmocka_unit_test(test_not_a_reader),
		cmocka_unit_test(test_claimed_elsewhere),
	};
	/* clang-format on */
	int r;

	cfx_main(argc, argv);
	r = cmocka_run_group_tests(tests, NULL, NULL);
	cfx_main_end();
	return r;
}
