/* T=1 at the TPDU level against the emulated reader's card, through the
 * real libusb: chaining both ways, the card's waiting time extensions and
 * IFS request, blocks lost or damaged on the way (R-block recovery), a
 * link that needs S(RESYNCH), a card that needs a power cycle, and a card
 * that declines the PPS. */
#include "ccid_fixture.h"

static const uint8_t select_piv[] = {0x00, 0xA4, 0x04, 0x00, 0x09, 0xA0, 0x00, 0x00,
                                     0x03, 0x08, 0x00, 0x00, 0x10, 0x00, 0x00};

static const uint8_t long_select[] = {0x00, 0xA4, 0x04, 0x00, 0x10, 0xA0, 0x00, 0x00,
                                      0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07,
                                      0x08, 0x09, 0x0A, 0x0B, 0x0C, 0x00};

static struct cfx x;
static uint8_t resp[70000];
static size_t rn;

static int
setup(void **state)
{
	ccid_emu_dev_cfg_t cfg = {0};

	(void)state;
	cfg.iface[0].level = EMU_TPDU;
	cfx_start(&x, &cfg);
	return 0;
}

static int
teardown(void **state)
{
	(void)state;
	cfx_stop(&x);
	return 0;
}

static int
sel(void)
{
	return tk_ccid_transmit(cfx_slot(&x, 0, 0), select_piv, sizeof(select_piv), resp,
	                        sizeof(resp), &rn);
}

static void
works(void)
{
	assert_int_equal(sel(), TK_OK);
	assert_int_equal(rn, 78);
	assert_int_equal(resp[76], 0x90);
}

static void
test_bad_edc(void **state)
{
	ccid_emu_faults_t f = {.t1_bad_edc = 1};

	(void)state;
	assert_int_equal(cfx_power(&x, 0, 0), 1);
	cfx_fault(&x, 0, &f);
	works();
	/* we asked again with an R-block, the card sent the block again */
	assert_int_equal(cfx_counts(&x, 0).t1_r_blocks, 1);
	assert_int_equal(cfx_stats(&x, 0).t1_retransmits, 1);
	/* two damaged blocks in a chained answer (the 270-byte public key
	 * of a generated RSA key) */
	{
		struct fx *pf;
		EVP_PKEY *key;
		uint8_t atr[40];
		size_t n = tk_vcard_atr(x.vc[0][0], atr, sizeof(atr));

		pf = cfx_piv(cfx_slot(&x, 0, 0), atr, n);
		assert_int_equal(fx_select(pf), 0);
		assert_int_equal(fx_mgm_auth(pf), 0);
		f.t1_bad_edc = 2;
		cfx_fault(&x, 0, &f);
		key = fx_generate(pf, 0x9A, 0x07);
		assert_non_null(key);
		EVP_PKEY_free(key);
		cfx_free_piv(pf);
	}
	assert_int_equal(cfx_stats(&x, 0).t1_retransmits, 3);
	assert_int_equal(cfx_stats(&x, 0).t1_resynchs, 0);
}

static void
test_wtx_and_ifs(void **state)
{
	ccid_emu_faults_t f = {.t1_wtx = 3};
	unsigned blocks;

	(void)state;
	assert_int_equal(cfx_power(&x, 0, 0), 1);
	cfx_fault(&x, 0, &f);
	works();
	assert_int_equal(cfx_counts(&x, 0).t1_wtx_resp, 3);
	assert_int_equal(cfx_stats(&x, 0).t1_wtx, 3);
	/* the card asks for an IFSC of 16: our next 22-byte APDU (a SELECT
	 * of an application the card does not have) goes in two blocks */
	f.t1_wtx = 0;
	f.t1_ifs = 16;
	cfx_fault(&x, 0, &f);
	works();
	blocks = cfx_counts(&x, 0).t1_blocks;
	assert_int_equal(tk_ccid_transmit(cfx_slot(&x, 0, 0), long_select, sizeof(long_select),
	                                  resp, sizeof(resp), &rn),
	                 TK_OK);
	assert_int_equal(rn, 2);
	assert_int_equal(resp[0], 0x6A);
	assert_int_equal(cfx_counts(&x, 0).t1_blocks - blocks, 2);
}

static void
test_reader_parity_errors(void **state)
{
	ccid_emu_faults_t f = {.icc_mute = 2};

	(void)state;
	assert_int_equal(cfx_power(&x, 0, 0), 1);
	/* the reader reports the card mute twice: two R-blocks; the card,
	 * which never saw our I-block, asks for it with an R-block of its
	 * own, and we send it again: three retransmissions */
	cfx_fault(&x, 0, &f);
	works();
	assert_int_equal(cfx_stats(&x, 0).t1_retransmits, 3);
	assert_int_equal(cfx_counts(&x, 0).t1_resynch, 0);
	/* five times: beyond three retries, the link is resynchronised and
	 * the exchange reported lost; the next one works */
	f.icc_mute = 4;
	cfx_fault(&x, 0, &f);
	assert_int_equal(sel(), TK_ERR_COMM);
	assert_int_equal(cfx_counts(&x, 0).t1_resynch, 1);
	works();
}

static void
test_card_needs_power_cycle(void **state)
{
	ccid_emu_faults_t f = {.mute_card = true};
	uint8_t atr[40];
	size_t n;
	int proto;

	(void)state;
	assert_int_equal(cfx_power(&x, 0, 0), 1);
	cfx_fault(&x, 0, &f);
	/* retries, then three S(RESYNCH) unanswered: the card needs a reset */
	assert_int_equal(sel(), TK_ERR_UNRESPONSIVE);
	assert_int_equal(cfx_stats(&x, 0).t1_resynchs, 3);
	assert_int_equal(tk_ccid_power_cycle(cfx_slot(&x, 0, 0), atr, sizeof(atr), &n, &proto),
	                 TK_OK);
	works();
	assert_int_equal(cfx_counts(&x, 0).power_on, 2);
	/* PPS and the parameters again after the new activation */
	assert_int_equal(cfx_counts(&x, 0).pps, 2);
	assert_int_equal(cfx_counts(&x, 0).set_params, 2);
}

static void
test_pps_declined(void **state)
{
	ccid_emu_faults_t f = {.reject_pps = true};

	(void)state;
	cfx_fault(&x, 0, &f);
	/* the card answers the PPS without PPS1: it stays at Fi 372 / Di 1,
	 * and the reader must be told so (it would be at TA1 otherwise) */
	assert_int_equal(cfx_power(&x, 0, 0), 1);
	assert_int_equal(cfx_counts(&x, 0).pps, 1);
	assert_int_equal(cfx_counts(&x, 0).power_on, 1);
	assert_int_equal(cfx_counts(&x, 0).set_params, 1);
	works();
}

static void
test_crc(void **state)
{
	/* The card's ATR with TD2 = 71 (TA3 TB3 TC3 follow), TC3 = 01: the
	 * error detection code is a CRC (ISO/IEC 7816-3, 11.4.4). */
	uint8_t atr[] = {0x3B, 0xFD, 0x13, 0x00, 0x00, 0x81, 0x71, 0xFE, 0x15, 0x01, 0x80, 0x73,
	                 0xC0, 0x21, 0xC0, 0x57, 0x59, 0x75, 0x62, 0x69, 0x4B, 0x65, 0x79, 0x00};
	ccid_emu_faults_t f = {.t1_bad_edc = 1};
	uint8_t got[40];
	size_t n = 0;
	int proto = -1;

	(void)state;
	for (size_t i = 1; i + 1 < sizeof(atr); i++)
		atr[sizeof(atr) - 1] ^= atr[i];
	ccid_emu_set_atr(x.dev, 0, 0, atr, sizeof(atr));
	assert_int_equal(tk_ccid_power_on(cfx_slot(&x, 0, 0), got, sizeof(got), &n, &proto), TK_OK);
	assert_int_equal(n, sizeof(atr));
	assert_int_equal(proto, 1);
	works();
	/* a damaged CRC is caught and the block asked for again */
	cfx_fault(&x, 0, &f);
	works();
	assert_int_equal(cfx_stats(&x, 0).t1_retransmits, 1);
}

int
main(int argc, char **argv)
{
	/* clang-format off */
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_bad_edc, setup, teardown),
		cmocka_unit_test_setup_teardown(test_wtx_and_ifs, setup, teardown),
		cmocka_unit_test_setup_teardown(test_reader_parity_errors, setup, teardown),
		cmocka_unit_test_setup_teardown(test_card_needs_power_cycle, setup, teardown),
		cmocka_unit_test_setup_teardown(test_pps_declined, setup, teardown),
		cmocka_unit_test_setup_teardown(test_crc, setup, teardown),
	};
	/* clang-format on */
	int r;

	cfx_main(argc, argv);
	r = cmocka_run_group_tests(tests, NULL, NULL);
	cfx_main_end();
	return r;
}
