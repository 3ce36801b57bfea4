/* Unit tests for the CCID message codec (ccid/message.c). The frames are
 * laid out by hand from USB CCID 1.1, 6.1-6.3 (10-byte header: type,
 * dwLength little endian, bSlot, bSeq, three message-specific bytes). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include <tokenkit/err.h>

#include "descriptor.h"
#include "message.h"

static void
test_cmd_encode(void **state)
{
	static const uint8_t apdu[] = {0x00, 0xA4, 0x04, 0x00, 0x00};
	/* XfrBlock, 5 bytes, slot 0, seq 7, bBWI 4, wLevelParameter 0001 */
	static const uint8_t want[] = {0x6F, 0x05, 0x00, 0x00, 0x00, 0x00, 0x07, 0x04,
	                               0x01, 0x00, 0x00, 0xA4, 0x04, 0x00, 0x00};
	tk_ccid_cmd_t c = {TK_CCID_PC_XFR_BLOCK, 0, 7, {0x04, 0x01, 0x00}, apdu, sizeof(apdu)};
	uint8_t out[32];
	size_t n = 99;

	(void)state;
	assert_int_equal(tk_ccid_cmd_encode(&c, out, sizeof(out), &n), TK_OK);
	assert_int_equal(n, sizeof(want));
	assert_memory_equal(out, want, sizeof(want));
	assert_int_equal(tk_ccid_cmd_encode(&c, out, 14, &n), TK_ERR_BUFFER_TOO_SMALL);
	assert_int_equal(n, 0);
	c.type = TK_CCID_RDR_DATA_BLOCK; /* a reply type is no command */
	assert_int_equal(tk_ccid_cmd_encode(&c, out, sizeof(out), &n), TK_ERR_INVALID_ARG);
	c.type = TK_CCID_PC_ABORT;
	c.data = NULL;
	assert_int_equal(tk_ccid_cmd_encode(&c, out, sizeof(out), &n), TK_ERR_INVALID_ARG);
}

static void
test_cmd_parse(void **state)
{
	/* IccPowerOn, no data, slot 1, seq 0xFE, bPowerSelect 3 (1.8 V) */
	static const uint8_t on[] = {0x62, 0, 0, 0, 0, 0x01, 0xFE, 0x03, 0, 0};
	uint8_t buf[16];
	tk_ccid_cmd_t c;

	(void)state;
	assert_int_equal(tk_ccid_cmd_parse(on, sizeof(on), &c), TK_OK);
	assert_int_equal(c.type, TK_CCID_PC_ICC_POWER_ON);
	assert_int_equal(c.slot, 1);
	assert_int_equal(c.seq, 0xFE);
	assert_int_equal(c.p[0], 3);
	assert_int_equal(c.len, 0);
	assert_int_equal(tk_ccid_cmd_parse(on, 9, &c), TK_ERR_TRUNCATED);
	assert_int_equal(c.type, 0);
	memcpy(buf, on, sizeof(on));
	buf[10] = 0xAA; /* a byte dwLength does not announce */
	assert_int_equal(tk_ccid_cmd_parse(buf, 11, &c), TK_ERR_MALFORMED);
	buf[1] = 2; /* announces two, one there */
	assert_int_equal(tk_ccid_cmd_parse(buf, 11, &c), TK_ERR_TRUNCATED);
	buf[1] = 0;
	buf[0] = 0x80;
	assert_int_equal(tk_ccid_cmd_parse(buf, 10, &c), TK_ERR_MALFORMED);
}

static void
test_reply(void **state)
{
	/* DataBlock, 2 bytes, slot 1, seq 9, bStatus 0, bError 0, chain 0 */
	static const uint8_t db[] = {0x80, 0x02, 0x00, 0x00, 0x00, 0x01,
	                             0x09, 0x00, 0x00, 0x00, 0x90, 0x00};
	tk_ccid_reply_t r;
	uint8_t out[16];
	size_t n = 0, size = 0;

	(void)state;
	assert_int_equal(tk_ccid_reply_size(db, 10, 271, &size), TK_OK);
	assert_int_equal(size, 12);
	assert_int_equal(tk_ccid_reply_size(db, 9, 271, &size), TK_ERR_TRUNCATED);
	assert_int_equal(tk_ccid_reply_size(db, 10, 11, &size), TK_ERR_TOO_LONG);
	assert_int_equal(size, 0);
	assert_int_equal(tk_ccid_reply_parse(db, sizeof(db), &r), TK_OK);
	assert_int_equal(r.type, TK_CCID_RDR_DATA_BLOCK);
	assert_int_equal(r.slot, 1);
	assert_int_equal(r.seq, 9);
	assert_int_equal(r.len, 2);
	assert_ptr_equal(r.data, db + 10);
	assert_int_equal(tk_ccid_reply_err(&r), TK_OK);
	assert_int_equal(tk_ccid_reply_parse(db, 11, &r), TK_ERR_TRUNCATED);
	/* and back */
	assert_int_equal(tk_ccid_reply_parse(db, sizeof(db), &r), TK_OK);
	assert_int_equal(tk_ccid_reply_encode(&r, out, sizeof(out), &n), TK_OK);
	assert_int_equal(n, sizeof(db));
	assert_memory_equal(out, db, sizeof(db));
	/* a command where a reply belongs */
	memcpy(out, db, sizeof(db));
	out[0] = 0x6F;
	assert_int_equal(tk_ccid_reply_size(out, 10, 271, &size), TK_ERR_MALFORMED);
	assert_int_equal(tk_ccid_reply_parse(out, sizeof(db), &r), TK_ERR_MALFORMED);
	/* a dwLength that wraps a 32-bit size */
	memcpy(out, db, 10);
	out[1] = out[2] = out[3] = out[4] = 0xFF;
	assert_int_equal(tk_ccid_reply_size(out, 10, TK_CCID_MAX_MSG_LEN, &size), TK_ERR_TOO_LONG);
}

static int
err_of(uint8_t type, uint8_t status, uint8_t error)
{
	tk_ccid_reply_t r = {.type = type, .status = status, .error = error};

	return tk_ccid_reply_err(&r);
}

static void
test_reply_err(void **state)
{
	const uint8_t DB = TK_CCID_RDR_DATA_BLOCK, SS = TK_CCID_RDR_SLOT_STATUS;

	(void)state;
	/* bmCommandStatus 0 whatever bError says */
	assert_int_equal(err_of(DB, 0x00, 0xFE), TK_OK);
	/* 2: time extension */
	assert_int_equal(err_of(DB, 0x80, 0x01), TK_ERR_BUSY);
	/* 3: reserved */
	assert_int_equal(err_of(DB, 0xC0, 0x00), TK_ERR_PROTOCOL);
	/* failed, card present and active (bStatus 40) */
	assert_int_equal(err_of(DB, 0x40, 0xFF), TK_ERR_CANCELLED);
	assert_int_equal(err_of(DB, 0x40, 0xFE), TK_ERR_UNRESPONSIVE);
	assert_int_equal(err_of(DB, 0x40, 0xFD), TK_ERR_COMM);
	assert_int_equal(err_of(DB, 0x40, 0xFC), TK_ERR_COMM);
	assert_int_equal(err_of(DB, 0x40, 0xFB), TK_ERR_IO);
	assert_int_equal(err_of(DB, 0x40, 0xF8), TK_ERR_UNRESPONSIVE);
	assert_int_equal(err_of(DB, 0x40, 0xF7), TK_ERR_UNRESPONSIVE);
	assert_int_equal(err_of(DB, 0x40, 0xF6), TK_ERR_NOT_SUPPORTED);
	assert_int_equal(err_of(DB, 0x40, 0xF5), TK_ERR_NOT_SUPPORTED);
	assert_int_equal(err_of(DB, 0x40, 0xF4), TK_ERR_PROTOCOL);
	assert_int_equal(err_of(DB, 0x40, 0xF2), TK_ERR_BUSY);
	assert_int_equal(err_of(DB, 0x40, 0xF0), TK_ERR_TIMEOUT);
	assert_int_equal(err_of(DB, 0x40, 0xEF), TK_ERR_CANCELLED);
	assert_int_equal(err_of(DB, 0x40, 0xE0), TK_ERR_BUSY);
	assert_int_equal(err_of(DB, 0x40, 0x00), TK_ERR_NOT_SUPPORTED);
	assert_int_equal(err_of(DB, 0x40, 0x05), TK_ERR_INVALID_ARG); /* bad bSlot (offset 5) */
	assert_int_equal(err_of(DB, 0x40, 0x90), TK_ERR_COMM);        /* vendor code */
	/* failed, no card (bStatus 42): the slot says it better */
	assert_int_equal(err_of(DB, 0x42, 0xFE), TK_ERR_NO_CARD);
	assert_int_equal(err_of(SS, 0x42, 0x00), TK_ERR_NO_CARD);
	/* failed, card not powered (41): a transmit finds it reset... */
	assert_int_equal(err_of(DB, 0x41, 0xF3), TK_ERR_CARD_RESET);
	/* ... but a mute card at power-on is a mute card */
	assert_int_equal(err_of(DB, 0x41, 0xFE), TK_ERR_UNRESPONSIVE);
	assert_string_equal(tk_ccid_error_name(0xFE), "ICC_MUTE");
	assert_string_equal(tk_ccid_error_name(0x07), "bad parameter");
	assert_string_equal(tk_ccid_msg_name(0x6F), "PC_to_RDR_XfrBlock");
	assert_string_equal(tk_ccid_msg_name(0x99), "unknown");
}

static void
test_params(void **state)
{
	/* T=1: Fi/Di 13, LRC direct (10), guard 0, BWI 4 CWI 5 (45),
	 * clock stop 0, IFSC FE, NAD 0 */
	static const uint8_t t1[] = {0x13, 0x10, 0x00, 0x45, 0x00, 0xFE, 0x00};
	tk_ccid_params_t p = {1, 0x13, 0x10, 0x00, 0x45, 0x00, 0xFE, 0x00};
	uint8_t out[8];
	size_t n = 0;

	(void)state;
	assert_int_equal(tk_ccid_params_encode(&p, out, sizeof(out), &n), TK_OK);
	assert_int_equal(n, 7);
	assert_memory_equal(out, t1, 7);
	p.protocol = 0;
	assert_int_equal(tk_ccid_params_encode(&p, out, sizeof(out), &n), TK_OK);
	assert_int_equal(n, 5);
	p.protocol = 2;
	assert_int_equal(tk_ccid_params_encode(&p, out, sizeof(out), &n), TK_ERR_INVALID_ARG);
	assert_int_equal(tk_ccid_params_parse(1, t1, 7, &p), TK_OK);
	assert_int_equal(p.fidi, 0x13);
	assert_int_equal(p.waiting, 0x45);
	assert_int_equal(p.ifsc, 0xFE);
	assert_int_equal(tk_ccid_params_parse(1, t1, 6, &p), TK_ERR_TRUNCATED);
	assert_int_equal(tk_ccid_params_parse(0, t1, 7, &p), TK_ERR_MALFORMED); /* T=0 is 5 */
	assert_int_equal(tk_ccid_params_parse(0, t1, 5, &p), TK_OK);
	assert_int_equal(tk_ccid_params_parse(3, t1, 5, &p), TK_ERR_MALFORMED);
}

static void
test_intr(void **state)
{
	tk_ccid_intr_t ev;
	/* one slot: present (bit 0) and changed (bit 1) */
	static const uint8_t one[] = {0x50, 0x03};
	/* two slots: slot 0 present, unchanged (01); slot 1 present,
	 * changed (11) -> 0b1101 */
	static const uint8_t two[] = {0x50, 0x0D};
	/* five slots take two bytes; slot 4 is bits 1-0 of the second:
	 * removed (changed, not present: 10) */
	static const uint8_t five[] = {0x50, 0x00, 0x02};
	/* HardwareError: slot 0, seq 7, overcurrent */
	static const uint8_t hw[] = {0x51, 0x00, 0x07, 0x01};

	(void)state;
	assert_int_equal(tk_ccid_intr_parse(one, sizeof(one), 1, &ev), TK_OK);
	assert_int_equal(ev.type, TK_CCID_RDR_NOTIFY_SLOT_CHANGE);
	assert_int_equal(ev.present, 1);
	assert_int_equal(ev.changed, 1);
	assert_int_equal(tk_ccid_intr_parse(two, sizeof(two), 2, &ev), TK_OK);
	assert_int_equal(ev.present, 3);
	assert_int_equal(ev.changed, 2);
	/* a reader that pads: bits beyond its slots are ignored */
	assert_int_equal(tk_ccid_intr_parse(two, sizeof(two), 1, &ev), TK_OK);
	assert_int_equal(ev.present, 1);
	assert_int_equal(ev.changed, 0);
	assert_int_equal(tk_ccid_intr_parse(five, 2, 5, &ev), TK_ERR_TRUNCATED);
	assert_int_equal(tk_ccid_intr_parse(five, 3, 5, &ev), TK_OK);
	assert_int_equal(ev.present, 0);
	assert_int_equal(ev.changed, 1u << 4);
	assert_int_equal(tk_ccid_intr_parse(hw, sizeof(hw), 1, &ev), TK_OK);
	assert_int_equal(ev.type, TK_CCID_RDR_HARDWARE_ERROR);
	assert_int_equal(ev.seq, 7);
	assert_int_equal(ev.code, 1);
	assert_int_equal(tk_ccid_intr_parse(hw, 3, 1, &ev), TK_ERR_TRUNCATED);
	assert_int_equal(tk_ccid_intr_parse(five, 3, 1, &ev), TK_OK);
	assert_int_equal(tk_ccid_intr_parse((const uint8_t[]){0x52, 0}, 2, 1, &ev),
	                 TK_ERR_MALFORMED);
	assert_int_equal(tk_ccid_intr_parse(one, 0, 1, &ev), TK_ERR_TRUNCATED);
	assert_int_equal(tk_ccid_intr_parse(one, 2, 0, &ev), TK_ERR_INVALID_ARG);
	assert_int_equal(tk_ccid_intr_parse(one, 2, 17, &ev), TK_ERR_INVALID_ARG);
}

/* PIV VERIFY template: 00 20 00 80 08 and eight FF pad bytes. */
static const uint8_t piv_verify[] = {0x00, 0x20, 0x00, 0x80, 0x08, 0xFF, 0xFF,
                                     0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF};

static void
test_pin_verify(void **state)
{
	/* bPINOperation 00, bTimeOut 1E, bmFormatString 82 (bytes, position
	 * 0, left, ASCII), bmPINBlockString 08, bmPINLengthFormat 00,
	 * wPINMaxExtraDigit 0608 (min 6, max 8) as 08 06, validation 02,
	 * messages 01, wLangId 0409 as 09 04, bMsgIndex 00, prologue 000000,
	 * then the APDU. */
	static const uint8_t want[] = {0x00, 0x1E, 0x82, 0x08, 0x00, 0x08, 0x06, 0x02,
	                               0x01, 0x09, 0x04, 0x00, 0x00, 0x00, 0x00};
	tk_ccid_pin_op_t op = {.operation = TK_CCID_PIN_OP_VERIFY,
	                       .timeout = 30,
	                       .format = TK_CCID_PIN_FMT_UNITS_BYTES | TK_CCID_PIN_FMT_ASCII,
	                       .block = 0x08,
	                       .min_len = 6,
	                       .max_len = 8,
	                       .entry_validation = 0x02,
	                       .num_messages = 1,
	                       .lang_id = 0x0409,
	                       .apdu = piv_verify,
	                       .apdu_len = sizeof(piv_verify)};
	tk_ccid_pin_op_t back;
	uint8_t out[64];
	size_t n = 0;

	(void)state;
	assert_int_equal(tk_ccid_pin_encode(&op, out, sizeof(out), &n), TK_OK);
	assert_int_equal(n, sizeof(want) + sizeof(piv_verify));
	assert_memory_equal(out, want, sizeof(want));
	assert_memory_equal(out + sizeof(want), piv_verify, sizeof(piv_verify));
	assert_int_equal(tk_ccid_pin_parse(out, n, &back), TK_OK);
	assert_int_equal(back.min_len, 6);
	assert_int_equal(back.max_len, 8);
	assert_int_equal(back.lang_id, 0x0409);
	assert_int_equal(back.apdu_len, sizeof(piv_verify));
	assert_memory_equal(back.apdu, piv_verify, sizeof(piv_verify));
	assert_int_equal(tk_ccid_pin_parse(out, sizeof(want) + 3, &back), TK_ERR_MALFORMED);
	assert_int_equal(tk_ccid_pin_parse(out, 9, &back), TK_ERR_TRUNCATED);
	out[0] = 0x04; /* cancel: a follow-up step we never send */
	assert_int_equal(tk_ccid_pin_parse(out, n, &back), TK_ERR_NOT_SUPPORTED);
	out[0] = 0x07;
	assert_int_equal(tk_ccid_pin_parse(out, n, &back), TK_ERR_MALFORMED);
	op.apdu_len = 3;
	assert_int_equal(tk_ccid_pin_encode(&op, out, sizeof(out), &n), TK_ERR_INVALID_ARG);
	op.apdu_len = sizeof(piv_verify);
	op.operation = 2;
	assert_int_equal(tk_ccid_pin_encode(&op, out, sizeof(out), &n), TK_ERR_INVALID_ARG);
	op.operation = TK_CCID_PIN_OP_VERIFY;
	assert_int_equal(tk_ccid_pin_encode(&op, out, 20, &n), TK_ERR_BUFFER_TOO_SMALL);
}

static void
test_pin_modify(void **state)
{
	static const uint8_t apdu[] = {0x00, 0x24, 0x00, 0x80, 0x10};
	/* 01, timeout 1E, 82, 08, 00, offset old 00, new 08, 08 06,
	 * bConfirmPIN 01, validation 02, messages 00, 09 04, bMsgIndex1 00:
	 * no second or third index with no messages; prologue */
	static const uint8_t none[] = {0x01, 0x1E, 0x82, 0x08, 0x00, 0x00, 0x08, 0x08, 0x06,
	                               0x01, 0x02, 0x00, 0x09, 0x04, 0x00, 0x00, 0x00, 0x00};
	/* with three messages: bMsgIndex1..3 = 00 01 02 */
	static const uint8_t three[] = {0x01, 0x1E, 0x82, 0x08, 0x00, 0x00, 0x08, 0x08, 0x06, 0x01,
	                                0x02, 0x03, 0x09, 0x04, 0x00, 0x01, 0x02, 0x00, 0x00, 0x00};
	tk_ccid_pin_op_t op = {.operation = TK_CCID_PIN_OP_MODIFY,
	                       .timeout = 30,
	                       .format = 0x82,
	                       .block = 0x08,
	                       .offset_new = 8,
	                       .min_len = 6,
	                       .max_len = 8,
	                       .confirm = 1,
	                       .entry_validation = 2,
	                       .lang_id = 0x0409,
	                       .msg_index = {0, 1, 2},
	                       .apdu = apdu,
	                       .apdu_len = sizeof(apdu)};
	tk_ccid_pin_op_t back;
	uint8_t out[64];
	size_t n = 0;

	(void)state;
	assert_int_equal(tk_ccid_pin_encode(&op, out, sizeof(out), &n), TK_OK);
	assert_int_equal(n, sizeof(none) + sizeof(apdu));
	assert_memory_equal(out, none, sizeof(none));
	assert_int_equal(tk_ccid_pin_parse(out, n, &back), TK_OK);
	assert_int_equal(back.offset_new, 8);
	assert_int_equal(back.confirm, 1);
	assert_int_equal(back.msg_index[1], 0);
	op.num_messages = 3;
	assert_int_equal(tk_ccid_pin_encode(&op, out, sizeof(out), &n), TK_OK);
	assert_int_equal(n, sizeof(three) + sizeof(apdu));
	assert_memory_equal(out, three, sizeof(three));
	assert_int_equal(tk_ccid_pin_parse(out, n, &back), TK_OK);
	assert_int_equal(back.msg_index[2], 2);
	assert_int_equal(back.apdu_len, sizeof(apdu));
}

int
main(void)
{
	/* clang-format off */
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_cmd_encode),
		cmocka_unit_test(test_cmd_parse),
		cmocka_unit_test(test_reply),
		cmocka_unit_test(test_reply_err),
		cmocka_unit_test(test_params),
		cmocka_unit_test(test_intr),
		cmocka_unit_test(test_pin_verify),
		cmocka_unit_test(test_pin_modify),
	};
	/* clang-format on */

	return cmocka_run_group_tests(tests, NULL, NULL);
}
