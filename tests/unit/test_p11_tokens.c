/* The module's parser of the broker's BP_TOKENS answer (pkcs11/tokens.c,
 * format in pkcs11/bproto.h; the tool gets it through tokenkit/p11ext.h): answers
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

int
main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_two_readers),
	        cmocka_unit_test(test_no_reader_and_errors),
	        cmocka_unit_test(test_refused),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
