/* Unit tests for the PKCS#11 module's object handle numbering
 * (tk_p11_objects_number_locked, pkcs11/object.c): handles are module-wide,
 * an object of the same card keeps its handle across a revalidation or the
 * card's return, and any other object (another card's, a changed one) gets
 * a number never used before in the process. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

/* The module's internals (tokenkit_p11_internal): no card, no slot manager. */
#include "p11.h"

#define NOBJ 4

/* One card's objects: certificate, public key and private key of 9A, and
 * the certificate of 9C; card selects the DER contents. */
struct card {
	tk_object_t tko[NOBJ];
	uint8_t der[NOBJ][8];
	struct p11_object objs[NOBJ];
};

static void
card_init(struct card *c, uint8_t card)
{
	static const int cls[NOBJ] = {TK_OBJ_CERT, TK_OBJ_PUBKEY, TK_OBJ_PRIVKEY, TK_OBJ_CERT};
	static const CK_OBJECT_CLASS ckcls[NOBJ] = {CKO_CERTIFICATE, CKO_PUBLIC_KEY,
	                                            CKO_PRIVATE_KEY, CKO_CERTIFICATE};

	memset(c, 0, sizeof(*c));
	for (size_t i = 0; i < NOBJ; i++) {
		tk_object_t *o = &c->tko[i];

		o->handle = (uint32_t)(i + 1); /* the core's own numbers: the same on every card */
		o->cls = cls[i];
		o->id[0] = i == 3 ? 2 : 1;
		o->id_len = 1;
		o->key_type = TK_KEY_EC;
		o->key_ref = i == 3 ? 0x9C : 0x9A;
		memset(c->der[i], card, sizeof(c->der[i]));
		c->der[i][0] = (uint8_t)i;
		o->der = c->der[i];
		o->der_len = sizeof(c->der[i]);
		c->objs[i].cls = ckcls[i];
		c->objs[i].tko = o;
	}
}

static bool
handles_distinct(const struct p11_object *a, size_t n, const struct p11_object *b, size_t m)
{
	for (size_t i = 0; i < n; i++)
		for (size_t j = 0; j < m; j++)
			if (a[i].handle == b[j].handle)
				return false;
	return true;
}

static void
test_fresh_numbers(void **state)
{
	struct card a, b;

	(void)state;
	card_init(&a, 0xA0);
	card_init(&b, 0xB0);
	tk_p11_objects_number_locked(a.objs, NOBJ, NULL, 0);
	tk_p11_objects_number_locked(b.objs, NOBJ, NULL, 0);
	for (size_t i = 0; i < NOBJ; i++) {
		assert_int_not_equal(a.objs[i].handle, CK_INVALID_HANDLE);
		assert_int_not_equal(b.objs[i].handle, CK_INVALID_HANDLE);
		for (size_t j = 0; j < i; j++)
			assert_int_not_equal(a.objs[i].handle, a.objs[j].handle);
	}
	/* two tokens whose core handles are both 1..4 never share a PKCS#11 handle */
	assert_true(handles_distinct(a.objs, NOBJ, b.objs, NOBJ));
}

static void
test_same_card_back(void **state)
{
	struct card before, after;
	struct p11_object tmp;

	(void)state;
	card_init(&before, 0xA0);
	tk_p11_objects_number_locked(before.objs, NOBJ, NULL, 0);
	/* the same card read again (another tk token: other memory, other
	 * order, other core handles) */
	card_init(&after, 0xA0);
	for (size_t i = 0; i < NOBJ; i++)
		after.tko[i].handle += 10;
	tmp = after.objs[0];
	after.objs[0] = after.objs[2];
	after.objs[2] = tmp;
	tk_p11_objects_number_locked(after.objs, NOBJ, before.objs, NOBJ);
	assert_int_equal(after.objs[0].handle, before.objs[2].handle);
	assert_int_equal(after.objs[1].handle, before.objs[1].handle);
	assert_int_equal(after.objs[2].handle, before.objs[0].handle);
	assert_int_equal(after.objs[3].handle, before.objs[3].handle);
}

static void
test_changed_object(void **state)
{
	struct card before, after;

	(void)state;
	card_init(&before, 0xA0);
	tk_p11_objects_number_locked(before.objs, NOBJ, NULL, 0);
	card_init(&after, 0xA0);
	after.der[3][5] ^= 1; /* the 9C certificate was replaced */
	tk_p11_objects_number_locked(after.objs, NOBJ, before.objs, NOBJ);
	for (size_t i = 0; i < 3; i++)
		assert_int_equal(after.objs[i].handle, before.objs[i].handle);
	assert_true(handles_distinct(&after.objs[3], 1, before.objs, NOBJ));
	/* a key of the same slot with another CKA_ID is another object too */
	card_init(&after, 0xA0);
	after.tko[2].id[0] = 7;
	tk_p11_objects_number_locked(after.objs, NOBJ, before.objs, NOBJ);
	assert_true(handles_distinct(&after.objs[2], 1, before.objs, NOBJ));
}

static void
test_other_card(void **state)
{
	struct card a, c;

	(void)state;
	card_init(&a, 0xA0);
	tk_p11_objects_number_locked(a.objs, NOBJ, NULL, 0);
	card_init(&c, 0xC0); /* same slots and ids, other keys and certificates */
	tk_p11_objects_number_locked(c.objs, NOBJ, a.objs, NOBJ);
	assert_true(handles_distinct(c.objs, NOBJ, a.objs, NOBJ));
}

static void
test_duplicates_keep_distinct_handles(void **state)
{
	struct card before, after;

	(void)state;
	card_init(&before, 0xA0);
	before.tko[3] = before.tko[0];
	before.tko[3].der = before.der[0];
	before.objs[3].cls = before.objs[0].cls;
	tk_p11_objects_number_locked(before.objs, NOBJ, NULL, 0);
	card_init(&after, 0xA0);
	after.tko[3] = after.tko[0];
	after.tko[3].der = after.der[0];
	after.objs[3].cls = after.objs[0].cls;
	tk_p11_objects_number_locked(after.objs, NOBJ, before.objs, NOBJ);
	assert_int_not_equal(after.objs[0].handle, after.objs[3].handle);
	assert_int_equal(after.objs[0].handle, before.objs[0].handle);
	assert_int_equal(after.objs[3].handle, before.objs[3].handle);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_fresh_numbers),
	        cmocka_unit_test(test_same_card_back),
	        cmocka_unit_test(test_changed_object),
	        cmocka_unit_test(test_other_card),
	        cmocka_unit_test(test_duplicates_keep_distinct_handles),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
