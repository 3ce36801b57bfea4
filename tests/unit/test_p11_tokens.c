/* The module's parsers of the broker's BP_TOKENS, BP_READERS, BP_CARD_OPEN,
 * BP_CARD_IO and BP_READER_RESET answers (pkcs11/tokens.c, format in pkcs11/bproto.h; the
 * tool gets them through tokenkit/p11ext.h): answers
 * built here with libcbor's own builders (not the broker's writer) come
 * out value for value; every answer that breaks the format is refused
 * whole, never half-read. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <cbor.h>

#include <tokenkit/err.h>
#include <tokenkit/slot.h>

#include "tokens.h"

static void
push(cbor_item_t *a, cbor_item_t *v)
{
	assert_true(cbor_array_push(a, v));
	cbor_decref(&v);
}

static cbor_item_t *
u(uint64_t v)
{
	return cbor_build_uint64(v);
}

static cbor_item_t *
b(const char *s)
{
	return cbor_build_bytestring((cbor_data)s, strlen(s));
}

/* An object: [handle, class, id, label, key type, bits, identity, usage,
 * always-auth, der or null] */
static cbor_item_t *
object(uint32_t handle, int cls, const char *id, const char *label, const char *der)
{
	cbor_item_t *o = cbor_new_definite_array(10);

	push(o, u(handle));
	push(o, u((uint64_t)cls));
	push(o, b(id));
	push(o, b(label));
	push(o, u(TK_KEY_EC));
	push(o, u(256));
	push(o, u(1));
	push(o, u(TK_USAGE_SIGN));
	push(o, u(0));
	push(o, der != NULL ? b(der) : cbor_new_null());
	return o;
}

/* One reader: with a token (rv 0) or without (its CK_RV). */
static cbor_item_t *
slot(uint32_t id, const char *reader, uint64_t rv, cbor_item_t *objects)
{
	cbor_item_t *s = cbor_new_definite_array(rv == 0 ? 11 : 3);

	push(s, u(id));
	push(s, b(reader));
	push(s, u(rv));
	if (rv == 0) {
		push(s, b("piv"));
		push(s, b("PIV card"));
		push(s, b("00c0ffee"));
		push(s, u(3 + 1)); /* 3 tries */
		push(s, u(0));
		push(s, u(0)); /* unknown */
		push(s, u(1));
		push(s, objects);
	}
	return s;
}

/* [version, call id, rv, body] serialised */
static uint8_t *
answer(uint64_t rv, cbor_item_t *body, size_t *len)
{
	cbor_item_t *m = cbor_new_definite_array(4);
	uint8_t *buf = NULL;
	size_t cap = 0;

	push(m, u(1));
	push(m, u(1));
	push(m, u(rv));
	push(m, body);
	*len = cbor_serialize_alloc(m, &buf, &cap);
	cbor_decref(&m);
	assert_true(*len > 0);
	return buf;
}

static void
test_two_readers(void **state)
{
	cbor_item_t *body = cbor_new_definite_array(2), *objs = cbor_new_definite_array(2);
	tk_p11ext_token_t *v = NULL;
	size_t len, n = 0;
	uint8_t *buf;

	(void)state;
	push(objs, object(7, TK_OBJ_CERT, "\x01", "Certificate for PIV Authentication", "DER!"));
	push(objs, object(8, TK_OBJ_PRIVKEY, "\x01", "PIV AUTH key", NULL));
	push(body, slot(3, "Virtual PCD 00 00", 0, objs));
	push(body, slot(4, "Virtual PCD 00 01", 0xE1, NULL));
	buf = answer(0, body, &len);
	assert_int_equal(tk_p11_tokens_parse(buf, len, &v, &n), TK_P11EXT_OK);
	assert_int_equal(n, 2);
	assert_int_equal(v[0].slot_id, 3);
	assert_string_equal(v[0].reader, "Virtual PCD 00 00");
	assert_int_equal(v[0].err, TK_OK);
	assert_string_equal(v[0].info.driver, "piv");
	assert_string_equal(v[0].info.serial, "00c0ffee");
	assert_int_equal(v[0].info.pin_retries, 3);
	assert_false(v[0].info.pin_locked);
	assert_int_equal(v[0].info.puk_retries, -1);
	assert_true(v[0].info.puk_locked);
	assert_int_equal(v[0].nobjs, 2);
	assert_int_equal(v[0].objs[0].handle, 7);
	assert_int_equal(v[0].objs[0].cls, TK_OBJ_CERT);
	assert_int_equal(v[0].objs[0].id_len, 1);
	assert_int_equal(v[0].objs[0].id[0], 1);
	assert_string_equal(v[0].objs[0].label, "Certificate for PIV Authentication");
	assert_int_equal(v[0].objs[0].der_len, 4);
	assert_memory_equal(v[0].objs[0].der, "DER!", 4);
	assert_true(v[0].objs[0].has_identity);
	assert_int_equal(v[0].objs[1].cls, TK_OBJ_PRIVKEY);
	assert_null(v[0].objs[1].der);
	assert_int_equal(v[0].objs[1].usage, TK_USAGE_SIGN);
	assert_int_equal(v[1].slot_id, 4);
	assert_int_equal(v[1].err, TK_ERR_NOT_SUPPORTED); /* CKR_TOKEN_NOT_RECOGNIZED */
	assert_int_equal(v[1].nobjs, 0);
	tk_p11_ext.tokens_free(v, n);
	free(buf);
}

static void
test_no_reader_and_errors(void **state)
{
	tk_p11ext_token_t *v = NULL;
	size_t len, n = 7;
	uint8_t *buf;

	(void)state;
	buf = answer(0x3 /* CKR_SLOT_ID_INVALID */, cbor_new_definite_array(0), &len);
	assert_int_equal(tk_p11_tokens_parse(buf, len, &v, &n), TK_P11EXT_NO_READER);
	assert_null(v);
	assert_int_equal(n, 0);
	free(buf);
	buf = answer(0x30 /* CKR_DEVICE_ERROR */, cbor_new_definite_array(0), &len);
	assert_int_equal(tk_p11_tokens_parse(buf, len, &v, &n), TK_P11EXT_BROKER_FAILED);
	free(buf);
	/* no reader with a card */
	buf = answer(0, cbor_new_definite_array(0), &len);
	assert_int_equal(tk_p11_tokens_parse(buf, len, &v, &n), TK_P11EXT_OK);
	assert_int_equal(n, 0);
	free(buf);
}

/* Each answer breaks the format in one place: refused whole. */
static void
test_refused(void **state)
{
	tk_p11ext_token_t *v = NULL;
	size_t len, n = 0;
	uint8_t *buf;
	cbor_item_t *body, *objs, *s, *o;
	char longid[TK_OBJECT_ID_MAX + 2];

	(void)state;
	/* an object whose id is longer than an id can be */
	memset(longid, 'x', sizeof(longid) - 1);
	longid[sizeof(longid) - 1] = '\0';
	body = cbor_new_definite_array(1);
	objs = cbor_new_definite_array(1);
	push(objs, object(1, TK_OBJ_CERT, longid, "c", "d"));
	push(body, slot(1, "r", 0, objs));
	buf = answer(0, body, &len);
	assert_int_equal(tk_p11_tokens_parse(buf, len, &v, &n), TK_P11EXT_BROKER_FAILED);
	assert_null(v);
	free(buf);
	/* an object with a field missing */
	body = cbor_new_definite_array(1);
	objs = cbor_new_definite_array(1);
	o = cbor_new_definite_array(2);
	push(o, u(1));
	push(o, u(1));
	push(objs, o);
	push(body, slot(1, "r", 0, objs));
	buf = answer(0, body, &len);
	assert_int_equal(tk_p11_tokens_parse(buf, len, &v, &n), TK_P11EXT_BROKER_FAILED);
	free(buf);
	/* a reader name that is a number */
	body = cbor_new_definite_array(1);
	s = cbor_new_definite_array(3);
	push(s, u(1));
	push(s, u(2));
	push(s, u(0xE0));
	push(body, s);
	buf = answer(0, body, &len);
	assert_int_equal(tk_p11_tokens_parse(buf, len, &v, &n), TK_P11EXT_BROKER_FAILED);
	free(buf);
	/* a token without its object list */
	body = cbor_new_definite_array(1);
	s = slot(1, "r", 0, cbor_new_null());
	push(body, s);
	buf = answer(0, body, &len);
	assert_int_equal(tk_p11_tokens_parse(buf, len, &v, &n), TK_P11EXT_BROKER_FAILED);
	/* and the good parts of a message cut short */
	assert_int_equal(tk_p11_tokens_parse(buf, len / 2, &v, &n), TK_P11EXT_BROKER_FAILED);
	free(buf);
	assert_int_equal(tk_p11_tokens_parse((const uint8_t *)"", 0, &v, &n),
	                 TK_P11EXT_BROKER_FAILED);
}

/* A reader of a BP_READERS answer (its fields in pkcs11/bproto.h) with `cut`
 * fields: those past it left out, or zeros added after them. Its numbers
 * are each field's place (transmits 14, errors 15, ...), the steps
 * [100, 101, ...], the last error TK_ERR_TIMEOUT. A broker before 0.2 sent
 * READER_FIELDS_0_1 (no transaction counters). */
#define READER_FIELDS 37
#define READER_FIELDS_0_1 35
static cbor_item_t *
reader(uint32_t id, const char *name, uint64_t state, const char *atr, size_t atr_len,
       uint64_t proto, size_t cut)
{
	cbor_item_t *f[READER_FIELDS], *steps = cbor_new_definite_array(TK_STEP_COUNT);
	cbor_item_t *r = cbor_new_definite_array(cut);
	size_t k = 0;

	for (int i = 0; i < TK_STEP_COUNT; i++)
		push(steps, u(100 + (uint64_t)i));
	f[k++] = u(id);
	f[k++] = b(name);
	f[k++] = u(state);
	f[k++] = u(state >= TK_SLOT_PROBING ? 42 : 0);
	f[k++] = cbor_build_bytestring((cbor_data)atr, atr_len);
	f[k++] = u(proto);
	f[k++] = u(6); /* busy ms */
	f[k++] = b("ccid");
	f[k++] = b("extended APDU");
	f[k++] = u(2); /* reader slots */
	f[k++] = u(1); /* PIN pad */
	while (k < 28)
		f[k] = u(k), k++; /* generation 11 ... failed recoveries 27 */
	f[k++] = steps;
	f[k++] = u((uint64_t)-TK_ERR_TIMEOUT);
	while (k < READER_FIELDS)
		f[k] = u(1000 + k), k++; /* latency samples 1030, p50 1031, ... */
	for (size_t i = 0; i < READER_FIELDS; i++) {
		if (i < cut)
			push(r, f[i]);
		else
			cbor_decref(&f[i]);
	}
	for (size_t i = READER_FIELDS; i < cut; i++)
		push(r, u(0));
	return r;
}

static void
test_readers(void **state)
{
	static const char atr[] = "\x3b\xf8\x13\x00\x00\x81\x31\xfe\x15\x59\x75\x62\x69\x6b"
	                          "\x65\x79\x34\xd4";
	cbor_item_t *body = cbor_new_definite_array(2);
	tk_slot_diag_t *v = NULL;
	size_t len, n = 0;
	uint8_t *buf;

	(void)state;
	push(body, reader(0, "Yubico YubiKey CCID 00 00", TK_SLOT_VALID, atr, sizeof(atr) - 1, 2,
	                  READER_FIELDS));
	push(body, reader(1, "Virtual PCD 00 01", TK_SLOT_EMPTY, "", 0, 0, READER_FIELDS));
	buf = answer(0, body, &len);
	assert_int_equal(tk_p11_readers_parse(buf, len, &v, &n), TK_P11EXT_OK);
	assert_int_equal(n, 2);
	assert_int_equal(v[0].info.slot_id, 0);
	assert_string_equal(v[0].info.reader, "Yubico YubiKey CCID 00 00");
	assert_int_equal(v[0].info.state, TK_SLOT_VALID);
	assert_int_equal(v[0].info.card_seq, 42);
	assert_int_equal(v[0].info.atr_len, sizeof(atr) - 1);
	assert_memory_equal(v[0].info.atr, atr, sizeof(atr) - 1);
	assert_int_equal(v[0].info.protocol, 1); /* T=1 */
	assert_int_equal(v[0].info.busy_ms, 6);
	assert_string_equal(v[0].info.backend, "ccid");
	assert_string_equal(v[0].info.exchange, "extended APDU");
	assert_int_equal(v[0].info.reader_slots, 2);
	assert_true(v[0].info.pin_pad);
	assert_int_equal(v[0].generation, 11);
	assert_int_equal(v[0].rebinds, 12);
	assert_true(v[0].stuck);
	assert_int_equal(v[0].transmits, 14);
	assert_int_equal(v[0].info.transmits, 14);
	assert_int_equal(v[0].errors, 15);
	assert_int_equal(v[0].info.errors, 15);
	assert_int_equal(v[0].timeouts, 16);
	assert_int_equal(v[0].err_comm, 17);
	assert_int_equal(v[0].err_other, 21);
	assert_int_equal(v[0].connects, 22);
	assert_int_equal(v[0].retried_ok, 25);
	assert_int_equal(v[0].recoveries, 26);
	assert_int_equal(v[0].recoveries_failed, 27);
	for (int i = 0; i < TK_STEP_COUNT; i++)
		assert_int_equal(v[0].step_ok[i], 100 + i);
	assert_int_equal(v[0].last_err, TK_ERR_TIMEOUT);
	assert_int_equal(v[0].lat_samples, 1030);
	assert_int_equal(v[0].lat_p50_us, 1031);
	assert_int_equal(v[0].lat_max_us, 1034);
	assert_int_equal(v[0].txn_begun, 1035);
	assert_int_equal(v[0].txn_carried, 1036);
	assert_int_equal(v[0].nhistory, 0);
	assert_int_equal(v[1].info.state, TK_SLOT_EMPTY);
	assert_int_equal(v[1].info.card_seq, 0);
	assert_int_equal(v[1].info.atr_len, 0);
	assert_int_equal(v[1].info.protocol, -1); /* none */
	free(v);
	free(buf);
	/* a broker before 0.2: the same without the transaction counters */
	body = cbor_new_definite_array(1);
	push(body, reader(0, "r", TK_SLOT_VALID, atr, sizeof(atr) - 1, 2, READER_FIELDS_0_1));
	buf = answer(0, body, &len);
	assert_int_equal(tk_p11_readers_parse(buf, len, &v, &n), TK_P11EXT_OK);
	assert_int_equal(n, 1);
	assert_int_equal(v[0].lat_max_us, 1034);
	assert_int_equal(v[0].txn_begun, 0);
	assert_int_equal(v[0].txn_carried, 0);
	free(v);
	free(buf);
	/* none at all; no reader of the name asked for */
	buf = answer(0, cbor_new_definite_array(0), &len);
	assert_int_equal(tk_p11_readers_parse(buf, len, &v, &n), TK_P11EXT_OK);
	assert_int_equal(n, 0);
	free(v);
	free(buf);
	buf = answer(0x3 /* CKR_SLOT_ID_INVALID */, cbor_new_definite_array(0), &len);
	assert_int_equal(tk_p11_readers_parse(buf, len, &v, &n), TK_P11EXT_NO_READER);
	assert_null(v);
	free(buf);
}

/* A broker that knows more recovery steps than we do: the ones we know. */
static void
test_readers_more_steps(void **state)
{
	cbor_item_t *body = cbor_new_definite_array(1), *r, *steps;
	tk_slot_diag_t *v = NULL;
	size_t len, n = 0;
	uint8_t *buf;

	(void)state;
	r = reader(0, "r", TK_SLOT_VALID, ";", 1, 1, READER_FIELDS);
	steps = cbor_array_get(r, 28);
	assert_non_null(steps);
	cbor_decref(&steps);
	steps = cbor_new_definite_array(TK_STEP_COUNT + 2);
	for (int i = 0; i < TK_STEP_COUNT + 2; i++)
		push(steps, u(200 + (uint64_t)i));
	assert_true(cbor_array_replace(r, 28, steps));
	cbor_decref(&steps);
	push(body, r);
	buf = answer(0, body, &len);
	assert_int_equal(tk_p11_readers_parse(buf, len, &v, &n), TK_P11EXT_OK);
	assert_int_equal(n, 1);
	assert_int_equal(v[0].step_ok[TK_STEP_COUNT - 1], 200 + TK_STEP_COUNT - 1);
	assert_int_equal(v[0].last_err, TK_ERR_TIMEOUT);
	free(v);
	free(buf);
}

/* Each answer breaks the format in one place: refused whole. */
static void
test_readers_refused(void **state)
{
	char atr34[34];
	struct {
		const char *what;
		cbor_item_t *r;
		uint64_t rv;
	} bad[] = {
	        {"a state past the last",
	         reader(0, "r", TK_SLOT_QUARANTINED + 1, "", 0, 0, READER_FIELDS), 0},
	        {"an ATR longer than ATRs are", NULL, 0},
	        {"a protocol past T=1", reader(0, "r", TK_SLOT_VALID, ";", 1, 3, READER_FIELDS), 0},
	        {"a field missing", reader(0, "r", TK_SLOT_EMPTY, "", 0, 0, READER_FIELDS - 1), 0},
	        {"a field too many", reader(0, "r", TK_SLOT_EMPTY, "", 0, 0, READER_FIELDS + 1), 0},
	        {"one transaction counter of two",
	         reader(0, "r", TK_SLOT_EMPTY, "", 0, 0, READER_FIELDS_0_1 + 1), 0},
	        {"the broker's error", reader(0, "r", TK_SLOT_EMPTY, "", 0, 0, READER_FIELDS),
	         0x30},
	};
	tk_slot_diag_t *v = (tk_slot_diag_t *)1;
	size_t len, n = 7;
	uint8_t *buf;

	(void)state;
	memset(atr34, 0x3b, sizeof(atr34));
	bad[1].r = reader(0, "r", TK_SLOT_VALID, atr34, sizeof(atr34), 1, READER_FIELDS);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		cbor_item_t *body = cbor_new_definite_array(2);

		push(body, reader(0, "good", TK_SLOT_EMPTY, "", 0, 0, READER_FIELDS));
		push(body, bad[i].r);
		buf = answer(bad[i].rv, body, &len);
		if (tk_p11_readers_parse(buf, len, &v, &n) != TK_P11EXT_BROKER_FAILED)
			fail_msg("%s: taken", bad[i].what);
		assert_null(v);
		assert_int_equal(n, 0);
		free(buf);
	}
	/* a good answer cut short */
	buf = answer(0, cbor_new_definite_array(0), &len);
	assert_int_equal(tk_p11_readers_parse(buf, len - 1, &v, &n), TK_P11EXT_BROKER_FAILED);
	free(buf);
}

/* BP_CARD_OPEN: [error, slot, reader, ATR, protocol + 1, extended, max
 * command, max response, pad verifies, pad changes] */
#define CARD_OPEN_FIELDS 10
static cbor_item_t *
card_open_body(size_t fields, const char *atr, size_t atr_len, uint64_t proto, uint64_t max_cmd)
{
	cbor_item_t *a = cbor_new_definite_array(fields);
	cbor_item_t *items[CARD_OPEN_FIELDS];

	items[0] = u(0);
	items[1] = u(7);
	items[2] = b("Virtual PCD 00 00");
	items[3] = cbor_build_bytestring((cbor_data)atr, atr_len);
	items[4] = u(proto);
	items[5] = u(1);
	items[6] = u(max_cmd);
	items[7] = u(65538);
	items[8] = u(1);
	items[9] = u(0);
	for (size_t i = 0; i < CARD_OPEN_FIELDS; i++) {
		if (i < fields)
			push(a, items[i]);
		else
			cbor_decref(&items[i]);
	}
	for (size_t i = CARD_OPEN_FIELDS; i < fields; i++)
		push(a, u(0));
	return a;
}

static void
test_card_open(void **state)
{
	static const char atr[] = "\x3b\xfd\x13\x00";
	tk_p11ext_card_info_t info;
	cbor_item_t *body;
	uint8_t *buf;
	size_t len;

	(void)state;
	buf = answer(0, card_open_body(CARD_OPEN_FIELDS, atr, 4, 2, 65544), &len);
	assert_int_equal(tk_p11_card_open_parse(buf, len, &info), TK_P11EXT_OK);
	assert_int_equal(info.err, TK_OK);
	assert_int_equal(info.slot_id, 7);
	assert_string_equal(info.reader, "Virtual PCD 00 00");
	assert_int_equal(info.atr_len, 4);
	assert_memory_equal(info.atr, atr, 4);
	assert_int_equal(info.protocol, 1);
	assert_true(info.caps.extended_apdu);
	assert_int_equal(info.caps.max_cmd, 65544);
	assert_int_equal(info.caps.max_resp, 65538);
	assert_true(info.caps.pin_pad_verify);
	assert_false(info.caps.pin_pad_modify);
	free(buf);
	/* the card is not usable: the error alone, negated */
	body = cbor_new_definite_array(1);
	push(body, u((uint64_t)-TK_ERR_NO_CARD));
	buf = answer(0, body, &len);
	assert_int_equal(tk_p11_card_open_parse(buf, len, &info), TK_P11EXT_OK);
	assert_int_equal(info.err, TK_ERR_NO_CARD);
	free(buf);
	/* no such reader */
	buf = answer(0x3 /* CKR_SLOT_ID_INVALID */, cbor_new_definite_array(0), &len);
	assert_int_equal(tk_p11_card_open_parse(buf, len, &info), TK_P11EXT_NO_READER);
	free(buf);
	/* consent refused */
	buf = answer(0x200 /* CKR_FUNCTION_REJECTED */, cbor_new_definite_array(0), &len);
	assert_int_equal(tk_p11_card_open_parse(buf, len, &info), TK_P11EXT_REFUSED);
	free(buf);
}

static void
test_card_open_refused(void **state)
{
	char atr34[34];
	struct {
		const char *what;
		cbor_item_t *body;
		uint64_t rv;
	} bad[] = {
	        {"a field missing", card_open_body(CARD_OPEN_FIELDS - 1, "\x3b", 1, 2, 261), 0},
	        {"a field too many", card_open_body(CARD_OPEN_FIELDS + 1, "\x3b", 1, 2, 261), 0},
	        {"a protocol past T=1", card_open_body(CARD_OPEN_FIELDS, "\x3b", 1, 3, 261), 0},
	        {"a command limit below an APDU's header",
	         card_open_body(CARD_OPEN_FIELDS, "\x3b", 1, 2, 4), 0},
	        {"an ATR longer than ATRs are", NULL, 0},
	        {"the broker's error", card_open_body(CARD_OPEN_FIELDS, "\x3b", 1, 2, 261), 0x30},
	        {"an error with more after it", NULL, 0},
	        {"nothing", cbor_new_definite_array(0), 0},
	};
	tk_p11ext_card_info_t info;
	uint8_t *buf;
	size_t len;

	(void)state;
	memset(atr34, 0x3b, sizeof(atr34));
	bad[4].body = card_open_body(CARD_OPEN_FIELDS, atr34, sizeof(atr34), 2, 261);
	bad[6].body = cbor_new_definite_array(2);
	push(bad[6].body, u((uint64_t)-TK_ERR_NO_CARD));
	push(bad[6].body, u(7));
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		buf = answer(bad[i].rv, bad[i].body, &len);
		if (tk_p11_card_open_parse(buf, len, &info) != TK_P11EXT_BROKER_FAILED)
			fail_msg("%s: taken", bad[i].what);
		free(buf);
	}
	buf = answer(0, card_open_body(CARD_OPEN_FIELDS, "\x3b", 1, 2, 261), &len);
	assert_int_equal(tk_p11_card_open_parse(buf, len - 1, &info), TK_P11EXT_BROKER_FAILED);
	free(buf);
}

/* BP_CARD_IO: [error, response or null] */
static uint8_t *
io_answer(uint64_t rv, uint64_t err, const char *resp, size_t resp_len, size_t *len)
{
	cbor_item_t *body = cbor_new_definite_array(2);

	push(body, u(err));
	push(body,
	     resp != NULL ? cbor_build_bytestring((cbor_data)resp, resp_len) : cbor_new_null());
	return answer(rv, body, len);
}

static void
test_card_io(void **state)
{
	uint8_t resp[8];
	uint8_t *buf;
	size_t len, n = 99;

	(void)state;
	buf = io_answer(0, 0, "\x01\x02\x90\x00", 4, &len);
	assert_int_equal(tk_p11_card_io_parse(buf, len, resp, sizeof(resp), &n), TK_OK);
	assert_int_equal(n, 4);
	assert_memory_equal(resp, "\x01\x02\x90\x00", 4);
	/* too big for the caller's buffer: the broker's fault, not taken */
	assert_int_equal(tk_p11_card_io_parse(buf, len, resp, 3, &n), TK_ERR_NO_SERVICE);
	assert_int_equal(n, 0);
	free(buf);
	/* the card's error reaches the caller as it is */
	buf = io_answer(0, (uint64_t)-TK_ERR_CARD_REMOVED, NULL, 0, &len);
	assert_int_equal(tk_p11_card_io_parse(buf, len, resp, sizeof(resp), &n),
	                 TK_ERR_CARD_REMOVED);
	free(buf);
	/* an operation without an answer (BEGIN) */
	buf = io_answer(0, 0, NULL, 0, &len);
	assert_int_equal(tk_p11_card_io_parse(buf, len, resp, sizeof(resp), &n), TK_OK);
	assert_int_equal(n, 0);
	free(buf);
	/* refused: an error with an answer, the broker's own error, a cut answer */
	buf = io_answer(0, (uint64_t)-TK_ERR_TIMEOUT, "\x90\x00", 2, &len);
	assert_int_equal(tk_p11_card_io_parse(buf, len, resp, sizeof(resp), &n), TK_ERR_NO_SERVICE);
	free(buf);
	buf = io_answer(0x6 /* CKR_FUNCTION_FAILED */, 0, NULL, 0, &len);
	assert_int_equal(tk_p11_card_io_parse(buf, len, resp, sizeof(resp), &n), TK_ERR_NO_SERVICE);
	free(buf);
	buf = io_answer(0, 0, "\x90\x00", 2, &len);
	assert_int_equal(tk_p11_card_io_parse(buf, len - 1, resp, sizeof(resp), &n),
	                 TK_ERR_NO_SERVICE);
	free(buf);
}

/* BP_READER_RESET: [outcome, id, time, fault, what, [[step, result, us]...],
 * steps, cured by, outcome, us, probes] */
static cbor_item_t *
reset_body(size_t fields, uint64_t step, size_t nsteps_listed, uint64_t nsteps)
{
	cbor_item_t *a = cbor_new_definite_array(fields), *steps;
	cbor_item_t *items[11];

	steps = cbor_new_definite_array(nsteps_listed);
	for (size_t i = 0; i < nsteps_listed; i++) {
		cbor_item_t *one = cbor_new_definite_array(3);

		push(one, u(step));
		push(one, u(i + 1 < nsteps_listed ? (uint64_t)-TK_ERR_COMM : 0));
		push(one, u(1000 * (i + 1)));
		push(steps, one);
	}
	items[0] = u(0);
	items[1] = u(3);
	items[2] = u(1796693147281);
	items[3] = u(0);
	items[4] = b("forced");
	items[5] = steps;
	items[6] = u(nsteps);
	items[7] = u(step);
	items[8] = u(0);
	items[9] = u(500150);
	items[10] = u(2);
	for (size_t i = 0; i < 11; i++) {
		if (i < fields)
			push(a, items[i]);
		else
			cbor_decref(&items[i]);
	}
	for (size_t i = 11; i < fields; i++)
		push(a, u(0));
	return a;
}

static void
test_reset(void **state)
{
	tk_recovery_t rec;
	uint8_t *buf;
	size_t len;
	int err = 1;

	(void)state;
	buf = answer(0, reset_body(11, TK_STEP_WARM_RESET, 2, 2), &len);
	assert_int_equal(tk_p11_reset_parse(buf, len, &err, &rec), TK_P11EXT_OK);
	assert_int_equal(err, TK_OK);
	assert_int_equal(rec.id, 3);
	assert_int_equal(rec.wall_ms, 1796693147281);
	assert_string_equal(rec.what, "forced");
	assert_int_equal(rec.nsteps, 2);
	assert_int_equal(rec.steps[0].step, TK_STEP_WARM_RESET);
	assert_int_equal(rec.steps[0].result, TK_ERR_COMM);
	assert_int_equal(rec.steps[1].result, TK_OK);
	assert_int_equal(rec.steps[1].duration_us, 2000);
	assert_int_equal(rec.cured_by, TK_STEP_WARM_RESET);
	assert_int_equal(rec.outcome, TK_OK);
	assert_int_equal(rec.duration_us, 500150);
	assert_int_equal(rec.probes, 2);
	free(buf);
	/* more steps than listed (the record keeps TK_RECOVERY_MAX_STEPS) */
	buf = answer(0, reset_body(11, TK_STEP_COLD_RESET, 1, 40), &len);
	assert_int_equal(tk_p11_reset_parse(buf, len, &err, &rec), TK_P11EXT_OK);
	assert_int_equal(rec.nsteps, 40);
	free(buf);
	buf = answer(0x3 /* CKR_SLOT_ID_INVALID */, cbor_new_definite_array(0), &len);
	assert_int_equal(tk_p11_reset_parse(buf, len, &err, &rec), TK_P11EXT_NO_READER);
	free(buf);
	/* refused: a field missing or too many, a step past the last, more
	 * steps listed than counted or than a record holds, the broker's error */
	{
		cbor_item_t *bad[] = {
		        reset_body(10, TK_STEP_WARM_RESET, 1, 1),
		        reset_body(12, TK_STEP_WARM_RESET, 1, 1),
		        reset_body(11, TK_STEP_COUNT, 1, 1),
		        reset_body(11, TK_STEP_WARM_RESET, 2, 1),
		        reset_body(11, TK_STEP_WARM_RESET, TK_RECOVERY_MAX_STEPS + 1,
		                   TK_RECOVERY_MAX_STEPS + 1),
		};
		for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
			buf = answer(0, bad[i], &len);
			if (tk_p11_reset_parse(buf, len, &err, &rec) != TK_P11EXT_BROKER_FAILED)
				fail_msg("bad reset answer %zu: taken", i);
			free(buf);
		}
		buf = answer(0x30, reset_body(11, TK_STEP_WARM_RESET, 1, 1), &len);
		assert_int_equal(tk_p11_reset_parse(buf, len, &err, &rec), TK_P11EXT_BROKER_FAILED);
		free(buf);
	}
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_two_readers),
	        cmocka_unit_test(test_no_reader_and_errors),
	        cmocka_unit_test(test_refused),
	        cmocka_unit_test(test_readers),
	        cmocka_unit_test(test_readers_more_steps),
	        cmocka_unit_test(test_readers_refused),
	        cmocka_unit_test(test_card_open),
	        cmocka_unit_test(test_card_open_refused),
	        cmocka_unit_test(test_card_io),
	        cmocka_unit_test(test_reset),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
