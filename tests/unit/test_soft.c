/* The software token (drivers/soft): the object rules against PKCS#11 3.0
 * section 4 (what each function may and must be given, what may change
 * and how), its record format (exact, strict), and the store: PINs and
 * their durable counters, lock-out, the SO PIN's reset, a PIN change that
 * keeps every key, and two handles (as two processes would) writing the
 * same token without losing each other's objects. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include <openssl/evp.h>

#include <tokenkit/err.h>
#include <tokenkit/registry.h>
#include <tokenkit/soft.h>

#include "../../drivers/soft/soft_int.h"
#include "secmem.h"
#include "soft.h"

static CK_BBOOL yes = CK_TRUE, no = CK_FALSE;

#define A(t, v)                                                                                    \
	{                                                                                          \
		t, (void *)&(v), sizeof(v)                                                         \
	}

/* ---- the rules ------------------------------------------------------------------------ */

static void
test_template_create(void **state)
{
	CK_OBJECT_CLASS data = CKO_DATA, seckey = CKO_SECRET_KEY, pub = CKO_PUBLIC_KEY;
	CK_KEY_TYPE aes = CKK_AES, rsa = CKK_RSA;
	CK_ULONG len16 = 16;
	uint8_t value[16] = {1}, two[2] = {1, 1};
	char label[] = "lbl";
	tk_attrs_t out;
	CK_ULONG u;

	(void)state;
	/* a data object: defaults filled in */
	CK_ATTRIBUTE d1[] = {A(CKA_CLASS, data), {CKA_LABEL, label, 3}};
	assert_int_equal(tk_obj_template(TK_OBJ_CREATE, d1, 2, NULL, 0, 0, &out), TK_OK);
	assert_false(tk_attrs_bool(&out, CKA_TOKEN));
	assert_false(tk_attrs_bool(&out, CKA_PRIVATE));
	assert_true(tk_attrs_bool(&out, CKA_MODIFIABLE));
	assert_true(tk_attrs_bool(&out, CKA_COPYABLE));
	assert_non_null(tk_attrs_get(&out, CKA_APPLICATION));
	assert_null(tk_attrs_get(&out, CKA_ID)); /* not a data object's */
	tk_attrs_clear(&out);

	/* no class */
	CK_ATTRIBUTE d2[] = {{CKA_LABEL, label, 3}};
	assert_int_equal(tk_obj_template(TK_OBJ_CREATE, d2, 1, NULL, 0, 0, &out),
	                 TK_ERR_TEMPLATE_INCOMPLETE);
	/* an attribute of another class: never ignored */
	CK_ATTRIBUTE d3[] = {A(CKA_CLASS, data), A(CKA_SIGN, yes)};
	assert_int_equal(tk_obj_template(TK_OBJ_CREATE, d3, 2, NULL, 0, 0, &out),
	                 TK_ERR_ATTR_TYPE_INVALID);
	/* a boolean of the wrong size */
	CK_ATTRIBUTE d4[] = {A(CKA_CLASS, data), {CKA_TOKEN, two, 2}};
	assert_int_equal(tk_obj_template(TK_OBJ_CREATE, d4, 2, NULL, 0, 0, &out),
	                 TK_ERR_ATTR_VALUE_INVALID);
	/* one attribute twice: the same value only */
	CK_ATTRIBUTE d5[] = {A(CKA_CLASS, data), A(CKA_TOKEN, yes), A(CKA_TOKEN, no)};
	assert_int_equal(tk_obj_template(TK_OBJ_CREATE, d5, 3, NULL, 0, 0, &out),
	                 TK_ERR_TEMPLATE_INCONSISTENT);
	CK_ATTRIBUTE d6[] = {A(CKA_CLASS, data), A(CKA_TOKEN, yes), A(CKA_TOKEN, yes)};
	assert_int_equal(tk_obj_template(TK_OBJ_CREATE, d6, 3, NULL, 0, 0, &out), TK_OK);
	tk_attrs_clear(&out);

	/* an AES key: CKA_VALUE_LEN is the token's to set (footnote 2) */
	CK_ATTRIBUTE k1[] = {A(CKA_CLASS, seckey), A(CKA_KEY_TYPE, aes), A(CKA_VALUE, value),
	                     A(CKA_VALUE_LEN, len16)};
	assert_int_equal(tk_obj_template(TK_OBJ_CREATE, k1, 4, NULL, 0, 0, &out),
	                 TK_ERR_ATTR_READ_ONLY);
	assert_int_equal(tk_obj_template(TK_OBJ_CREATE, k1, 3, NULL, 0, 0, &out), TK_OK);
	/* keys: private, sensitive, not extractable; the token's facts */
	assert_true(tk_attrs_bool(&out, CKA_PRIVATE));
	assert_true(tk_attrs_bool(&out, CKA_SENSITIVE));
	assert_false(tk_attrs_bool(&out, CKA_EXTRACTABLE));
	/* its value came from outside: it has not always been sensitive */
	assert_false(tk_attrs_bool(&out, CKA_ALWAYS_SENSITIVE));
	assert_false(tk_attrs_bool(&out, CKA_NEVER_EXTRACTABLE));
	assert_false(tk_attrs_bool(&out, CKA_LOCAL));
	assert_true(tk_attrs_ulong(&out, CKA_KEY_GEN_MECHANISM, &u));
	assert_int_equal(u, CK_UNAVAILABLE_INFORMATION);
	assert_int_equal(tk_obj_attr_kind(&out, CKA_VALUE), TK_OBJ_ATTR_SECRET);
	assert_int_equal(tk_obj_attr_kind(&out, CKA_MODULUS), TK_OBJ_ATTR_NONE);
	tk_attrs_clear(&out);
	/* no value: incomplete (footnote 1); a key type of another class */
	assert_int_equal(tk_obj_template(TK_OBJ_CREATE, k1, 2, NULL, 0, 0, &out),
	                 TK_ERR_TEMPLATE_INCOMPLETE);
	CK_ATTRIBUTE k2[] = {A(CKA_CLASS, seckey), A(CKA_KEY_TYPE, rsa), A(CKA_VALUE, value)};
	assert_int_equal(tk_obj_template(TK_OBJ_CREATE, k2, 3, NULL, 0, 0, &out),
	                 TK_ERR_ATTR_VALUE_INVALID);
	/* the token's own facts cannot be given */
	CK_ATTRIBUTE k3[] = {A(CKA_CLASS, seckey), A(CKA_KEY_TYPE, aes), A(CKA_VALUE, value),
	                     A(CKA_LOCAL, yes)};
	assert_int_equal(tk_obj_template(TK_OBJ_CREATE, k3, 4, NULL, 0, 0, &out),
	                 TK_ERR_ATTR_READ_ONLY);
	/* CKA_TRUSTED true: the SO's only */
	CK_ATTRIBUTE k4[] = {A(CKA_CLASS, seckey), A(CKA_KEY_TYPE, aes), A(CKA_VALUE, value),
	                     A(CKA_TRUSTED, yes)};
	assert_int_equal(tk_obj_template(TK_OBJ_CREATE, k4, 4, NULL, 0, 0, &out),
	                 TK_ERR_ATTR_READ_ONLY);
	assert_int_equal(tk_obj_template(TK_OBJ_CREATE, k4, 4, NULL, 0, TK_OBJ_SO, &out), TK_OK);
	tk_attrs_clear(&out);
	/* an attribute array this token does not take */
	CK_ATTRIBUTE k5[] = {A(CKA_CLASS, seckey),
	                     A(CKA_KEY_TYPE, aes),
	                     A(CKA_VALUE, value),
	                     {CKA_WRAP_TEMPLATE, NULL, 0}};
	assert_int_equal(tk_obj_template(TK_OBJ_CREATE, k5, 4, NULL, 0, 0, &out),
	                 TK_ERR_ATTR_TYPE_INVALID);

	/* an RSA public key without its modulus */
	CK_ATTRIBUTE p1[] = {A(CKA_CLASS, pub), A(CKA_KEY_TYPE, rsa), A(CKA_PUBLIC_EXPONENT, two)};
	assert_int_equal(tk_obj_template(TK_OBJ_CREATE, p1, 3, NULL, 0, 0, &out),
	                 TK_ERR_TEMPLATE_INCOMPLETE);
}

static void
test_template_generate(void **state)
{
	CK_OBJECT_CLASS pub = CKO_PUBLIC_KEY, priv = CKO_PRIVATE_KEY;
	CK_KEY_TYPE rsa = CKK_RSA, ec = CKK_EC;
	CK_ULONG bits = 2048, u;
	uint8_t n[4] = {1, 2, 3, 4};
	tk_attrs_t fixed = {NULL, 0}, out;

	(void)state;
	assert_int_equal(tk_attrs_set_ulong(&fixed, CKA_CLASS, CKO_PUBLIC_KEY), TK_OK);
	assert_int_equal(tk_attrs_set_ulong(&fixed, CKA_KEY_TYPE, CKK_RSA), TK_OK);
	/* footnote 3: the modulus size must be given; footnote 4: the modulus not */
	assert_int_equal(tk_obj_template(TK_OBJ_GENERATE, NULL, 0, &fixed,
	                                 CKM_RSA_PKCS_KEY_PAIR_GEN, 0, &out),
	                 TK_ERR_TEMPLATE_INCOMPLETE);
	CK_ATTRIBUTE g1[] = {A(CKA_MODULUS_BITS, bits), A(CKA_MODULUS, n)};
	assert_int_equal(
	        tk_obj_template(TK_OBJ_GENERATE, g1, 2, &fixed, CKM_RSA_PKCS_KEY_PAIR_GEN, 0, &out),
	        TK_ERR_ATTR_READ_ONLY);
	/* a class or key type other than the mechanism's */
	CK_ATTRIBUTE g2[] = {A(CKA_MODULUS_BITS, bits), A(CKA_CLASS, priv)};
	assert_int_equal(
	        tk_obj_template(TK_OBJ_GENERATE, g2, 2, &fixed, CKM_RSA_PKCS_KEY_PAIR_GEN, 0, &out),
	        TK_ERR_TEMPLATE_INCONSISTENT);
	CK_ATTRIBUTE g3[] = {A(CKA_MODULUS_BITS, bits), A(CKA_KEY_TYPE, ec)};
	assert_int_equal(
	        tk_obj_template(TK_OBJ_GENERATE, g3, 2, &fixed, CKM_RSA_PKCS_KEY_PAIR_GEN, 0, &out),
	        TK_ERR_TEMPLATE_INCONSISTENT);
	CK_ATTRIBUTE g4[] = {A(CKA_MODULUS_BITS, bits), A(CKA_CLASS, pub), A(CKA_KEY_TYPE, rsa)};
	assert_int_equal(
	        tk_obj_template(TK_OBJ_GENERATE, g4, 3, &fixed, CKM_RSA_PKCS_KEY_PAIR_GEN, 0, &out),
	        TK_OK);
	assert_true(tk_attrs_bool(&out, CKA_LOCAL));
	assert_true(tk_attrs_ulong(&out, CKA_KEY_GEN_MECHANISM, &u));
	assert_int_equal(u, CKM_RSA_PKCS_KEY_PAIR_GEN);
	assert_true(tk_attrs_bool(&out, CKA_VERIFY));
	assert_true(tk_attrs_bool(&out, CKA_ENCRYPT));
	tk_attrs_clear(&out);
	tk_attrs_clear(&fixed);
}

static void
test_set_and_copy(void **state)
{
	CK_OBJECT_CLASS seckey = CKO_SECRET_KEY;
	CK_KEY_TYPE aes = CKK_AES;
	uint8_t value[16] = {1};
	char label[] = "new";
	tk_attrs_t obj, out, ro;

	(void)state;
	CK_ATTRIBUTE k[] = {A(CKA_CLASS, seckey), A(CKA_KEY_TYPE, aes), A(CKA_VALUE, value),
	                    A(CKA_SENSITIVE, no), A(CKA_EXTRACTABLE, yes)};
	assert_int_equal(tk_obj_template(TK_OBJ_CREATE, k, 5, NULL, 0, 0, &obj), TK_OK);
	assert_true(tk_obj_revealable(&obj));
	assert_false(tk_attrs_bool(&obj, CKA_ALWAYS_SENSITIVE));

	CK_ATTRIBUTE s1[] = {{CKA_LABEL, label, 3}};
	assert_int_equal(tk_obj_set(&obj, s1, 1, 0, &out), TK_OK);
	assert_int_equal(tk_attrs_get(&out, CKA_LABEL)->len, 3);
	tk_attrs_clear(&out);
	/* CKA_SENSITIVE only to true, CKA_EXTRACTABLE only to false */
	CK_ATTRIBUTE s2[] = {A(CKA_SENSITIVE, yes), A(CKA_EXTRACTABLE, no)};
	assert_int_equal(tk_obj_set(&obj, s2, 2, 0, &out), TK_OK);
	assert_false(tk_obj_revealable(&out));
	/* ... and never back; CKA_ALWAYS_SENSITIVE stays false */
	assert_false(tk_attrs_bool(&out, CKA_ALWAYS_SENSITIVE));
	CK_ATTRIBUTE s3[] = {A(CKA_SENSITIVE, no)};
	CK_ATTRIBUTE s4[] = {A(CKA_EXTRACTABLE, yes)};
	assert_int_equal(tk_obj_set(&out, s3, 1, 0, &ro), TK_ERR_ATTR_READ_ONLY);
	assert_int_equal(tk_obj_set(&out, s4, 1, 0, &ro), TK_ERR_ATTR_READ_ONLY);
	tk_attrs_clear(&out);
	/* set at creation only; a copy's own attributes; another class's */
	CK_ATTRIBUTE s5[] = {A(CKA_TOKEN, yes)};
	CK_ATTRIBUTE s6[] = {A(CKA_LOCAL, yes)};
	CK_ATTRIBUTE s7[] = {{CKA_MODULUS, value, 4}};
	assert_int_equal(tk_obj_set(&obj, s5, 1, 0, &out), TK_ERR_ATTR_READ_ONLY);
	assert_int_equal(tk_obj_set(&obj, s6, 1, 0, &out), TK_ERR_ATTR_READ_ONLY);
	assert_int_equal(tk_obj_set(&obj, s7, 1, 0, &out), TK_ERR_ATTR_TYPE_INVALID);
	assert_int_equal(tk_obj_copy(&obj, s5, 1, 0, &out), TK_OK);
	assert_true(tk_attrs_bool(&out, CKA_TOKEN));
	tk_attrs_clear(&out);
	/* CKA_MODIFIABLE false: nothing changes; CKA_COPYABLE false: no copy */
	CK_ATTRIBUTE s8[] = {A(CKA_MODIFIABLE, no), A(CKA_COPYABLE, no)};
	assert_int_equal(tk_obj_copy(&obj, s8, 2, 0, &ro), TK_OK);
	assert_int_equal(tk_obj_set(&ro, s1, 1, 0, &out), TK_ERR_ACTION_PROHIBITED);
	assert_int_equal(tk_obj_copy(&ro, NULL, 0, 0, &out), TK_ERR_ACTION_PROHIBITED);
	/* the value it has already is no change */
	CK_ATTRIBUTE s9[] = {A(CKA_COPYABLE, no)};
	assert_int_equal(tk_obj_copy(&obj, s9, 1, 0, &out), TK_OK);
	tk_attrs_clear(&out);
	tk_attrs_clear(&ro);
	tk_attrs_clear(&obj);
}

/* ---- the record ---------------------------------------------------------------------- */

static void
test_record(void **state)
{
	struct soft_state st, back;
	uint8_t *enc = NULL, *enc2 = NULL;
	size_t len = 0, len2 = 0;
	CK_MECHANISM_TYPE mechs[2] = {CKM_ECDSA, CKM_EDDSA};

	(void)state;
	memset(&st, 0, sizeof(st));
	st.max_tries = 5;
	st.fails[SOFT_USER] = 2;
	st.wrap[SOFT_SO].present = true;
	st.wrap[SOFT_SO].log2n = 12;
	st.wrap[SOFT_SO].r = 8;
	st.wrap[SOFT_SO].p = 1;
	st.objs = calloc(1, sizeof(*st.objs));
	st.n = 1;
	memset(st.objs[0].uid, 0x5A, TK_SOFT_UID_LEN);
	assert_int_equal(tk_attrs_set_ulong(&st.objs[0].attrs, CKA_CLASS, CKO_PRIVATE_KEY), TK_OK);
	assert_int_equal(tk_attrs_set_ulong(&st.objs[0].attrs, CKA_KEY_TYPE, CKK_EC), TK_OK);
	assert_int_equal(
	        tk_attrs_set(&st.objs[0].attrs, CKA_ALLOWED_MECHANISMS, mechs, sizeof(mechs)),
	        TK_OK);
	assert_int_equal(tk_attrs_set(&st.objs[0].attrs, CKA_LABEL, "k", 1), TK_OK);
	st.objs[0].sealed = calloc(1, 40);
	st.objs[0].sealed_len = 40;
	assert_int_equal(tk_soft_state_encode(&st, &enc, &len), TK_OK);
	/* CK_ULONG as 8 bytes big-endian, whatever the host */
	assert_int_equal(tk_soft_state_decode(enc, len, &back), TK_OK);
	assert_int_equal(back.n, 1);
	assert_int_equal(back.fails[SOFT_USER], 2);
	assert_true(tk_attrs_equal(&back.objs[0].attrs, &st.objs[0].attrs));
	assert_int_equal(back.objs[0].sealed_len, 40);
	assert_int_equal(tk_soft_state_encode(&back, &enc2, &len2), TK_OK);
	assert_int_equal(len, len2);
	assert_memory_equal(enc, enc2, len);
	tk_soft_state_clear(&back);
	free(enc2);

	/* strict: a trailing byte, a cut, another version, a counter past the
	 * maximum */
	uint8_t *bad = malloc(len + 1);

	memcpy(bad, enc, len);
	bad[len] = 0;
	assert_int_equal(tk_soft_state_decode(bad, len + 1, &back), TK_ERR_MALFORMED);
	for (size_t cut = 0; cut < len; cut++)
		assert_int_not_equal(tk_soft_state_decode(bad, cut, &back), TK_OK);
	bad[6] = 2;
	assert_int_equal(tk_soft_state_decode(bad, len, &back), TK_ERR_NOT_SUPPORTED);
	bad[6] = 1;
	bad[8] = 6;
	assert_int_equal(tk_soft_state_decode(bad, len, &back), TK_ERR_MALFORMED);
	free(bad);
	free(enc);

	/* a secret attribute in the clear is refused */
	assert_int_equal(tk_attrs_set(&st.objs[0].attrs, CKA_VALUE, "x", 1), TK_OK);
	assert_int_equal(tk_soft_state_encode(&st, &enc, &len), TK_OK);
	assert_int_equal(tk_soft_state_decode(enc, len, &back), TK_ERR_MALFORMED);
	free(enc);
	tk_soft_state_clear(&st);
}

/* ---- the store ------------------------------------------------------------------------ */

static char dir[] = "/tmp/test_soft.XXXXXX";

static int
setup(void **state)
{
	char path[256];

	(void)state;
	if (mkdtemp(dir) == NULL)
		return -1;
	snprintf(path, sizeof(path), "%s/state", dir);
	setenv("XDG_STATE_HOME", path, 1);
	return 0;
}

static int
teardown(void **state)
{
	char cmd[300];

	(void)state;
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	return system(cmd) == 0 ? 0 : -1;
}

#define PIN "123456"
#define SOPIN "87654321"

static void
make_token(const char *label, char *inst, size_t cap)
{
	tk_soft_create_opts_t o;

	tk_soft_create_opts_init(&o);
	o.label = label;
	o.pin = (const uint8_t *)PIN;
	o.pin_len = strlen(PIN);
	o.so_pin = (const uint8_t *)SOPIN;
	o.so_pin_len = strlen(SOPIN);
	o.max_tries = 3;
	o.kdf_log2n = 10; /* fast: tests only */
	assert_int_equal(tk_soft_create(&o, inst, cap), TK_OK);
}

static void
test_store_pins(void **state)
{
	char inst[TK_REG_INSTANCE_MAX + 1];
	tk_soft_t *a = NULL, *b = NULL;
	tk_soft_pin_info_t pi;
	tk_soft_create_opts_t o;
	unsigned left = 0;

	(void)state;
	make_token("pins", inst, sizeof(inst));
	/* one label, one token */
	tk_soft_create_opts_init(&o);
	o.label = "pins";
	o.pin = (const uint8_t *)PIN;
	o.pin_len = 6;
	o.so_pin = (const uint8_t *)SOPIN;
	o.so_pin_len = 8;
	o.kdf_log2n = 10;
	assert_int_equal(tk_soft_create(&o, inst, sizeof(inst)), TK_ERR_EXISTS);
	assert_int_equal(tk_soft_open("pins", &a), TK_OK);
	assert_int_equal(tk_soft_open(tk_soft_instance(a), &b), TK_OK);

	/* a wrong PIN is counted in the store: the other handle sees it */
	assert_int_equal(tk_soft_login(a, (const uint8_t *)"000000", 6, &left),
	                 TK_ERR_PIN_INCORRECT);
	assert_int_equal(left, 2);
	assert_int_equal(tk_soft_pin_info(b, &pi), TK_OK);
	assert_int_equal(pi.tries_left, 2);
	/* a good one resets it */
	assert_int_equal(tk_soft_login(b, (const uint8_t *)PIN, 6, &left), TK_OK);
	assert_int_equal(tk_soft_pin_info(a, &pi), TK_OK);
	assert_int_equal(pi.tries_left, 3);
	/* locked after three, even for the right PIN */
	for (int i = 0; i < 3; i++)
		assert_int_not_equal(tk_soft_login(a, (const uint8_t *)"000000", 6, NULL), TK_OK);
	assert_int_equal(tk_soft_login(a, (const uint8_t *)PIN, 6, NULL), TK_ERR_PIN_LOCKED);
	assert_int_equal(tk_soft_pin_info(b, &pi), TK_OK);
	assert_true(pi.locked);
	/* the SO PIN sets a new one */
	assert_int_equal(
	        tk_soft_init_pin(b, (const uint8_t *)"wrongso!", 8, (const uint8_t *)"4321", 4),
	        TK_ERR_PIN_INCORRECT);
	assert_int_equal(tk_soft_init_pin(b, (const uint8_t *)SOPIN, 8, (const uint8_t *)"4321", 4),
	                 TK_OK);
	assert_int_equal(tk_soft_pin_info(a, &pi), TK_OK);
	assert_false(pi.locked);
	assert_int_equal(pi.so_tries_left, 3);
	assert_int_equal(tk_soft_login(a, (const uint8_t *)PIN, 6, NULL), TK_ERR_PIN_INCORRECT);
	assert_int_equal(tk_soft_login(a, (const uint8_t *)"4321", 4, NULL), TK_OK);
	/* a change: the old PIN opens nothing any more */
	assert_int_equal(tk_soft_change_pin(a, (const uint8_t *)"4321", 4, (const uint8_t *)PIN, 6),
	                 TK_OK);
	assert_int_equal(tk_soft_login(b, (const uint8_t *)"4321", 4, NULL), TK_ERR_PIN_INCORRECT);
	assert_int_equal(tk_soft_login(b, (const uint8_t *)PIN, 6, NULL), TK_OK);
	tk_soft_close(&a);
	tk_soft_close(&b);
}

/* An AES key added by one handle: the other (logged in before) opens it;
 * after a PIN change too. */
static void
test_store_two_writers(void **state)
{
	char inst[TK_REG_INSTANCE_MAX + 1];
	tk_soft_t *a = NULL, *b = NULL;
	tk_soft_change_t ch[2];
	tk_attrs_t attrs = {NULL, 0};
	uint8_t key[16];
	void *got = NULL;
	size_t glen = 0, n;
	tk_soft_snap_t *sn;

	(void)state;
	make_token("writers", inst, sizeof(inst));
	assert_int_equal(tk_soft_open(inst, &a), TK_OK);
	assert_int_equal(tk_soft_open(inst, &b), TK_OK);
	assert_int_equal(tk_attrs_set_ulong(&attrs, CKA_CLASS, CKO_SECRET_KEY), TK_OK);
	assert_int_equal(tk_attrs_set_ulong(&attrs, CKA_KEY_TYPE, CKK_AES), TK_OK);
	assert_int_equal(tk_attrs_set_bool(&attrs, CKA_TOKEN, true), TK_OK);
	memset(key, 0x42, sizeof(key));
	memset(ch, 0, sizeof(ch));
	ch[0].op = TK_SOFT_ADD;
	ch[0].attrs = &attrs;
	ch[0].secret = key;
	ch[0].secret_len = sizeof(key);
	n = 1;
	/* a sealed part needs the login */
	assert_int_equal(tk_soft_write(a, ch, &n, NULL, NULL), TK_ERR_LOGIN_REQUIRED);
	assert_int_equal(tk_soft_login(a, (const uint8_t *)PIN, 6, NULL), TK_OK);
	assert_int_equal(tk_soft_login(b, (const uint8_t *)PIN, 6, NULL), TK_OK);
	assert_int_equal(tk_soft_write(a, ch, &n, NULL, NULL), TK_OK);
	/* b wrote nothing since: its next write reads a's first (no lost
	 * update), and b's view follows */
	ch[1] = ch[0];
	ch[1].secret = NULL;
	ch[1].secret_len = 0;
	n = 1;
	assert_int_equal(tk_soft_write(b, &ch[1], &n, NULL, NULL), TK_OK);
	sn = tk_soft_snapshot(b);
	assert_int_equal(sn->n, 2);
	tk_soft_snap_put(&sn);
	assert_int_equal(tk_soft_object_secret(b, ch[0].uid, &got, &glen), TK_OK);
	assert_int_equal(glen, sizeof(key));
	assert_memory_equal(got, key, sizeof(key));
	tk_secmem_free(&got);
	/* a PIN change rewraps one key, not the objects */
	assert_int_equal(
	        tk_soft_change_pin(a, (const uint8_t *)PIN, 6, (const uint8_t *)"999999", 6),
	        TK_OK);
	tk_soft_close(&b);
	assert_int_equal(tk_soft_open(inst, &b), TK_OK);
	assert_int_equal(tk_soft_login(b, (const uint8_t *)"999999", 6, NULL), TK_OK);
	assert_int_equal(tk_soft_object_secret(b, ch[0].uid, &got, &glen), TK_OK);
	assert_memory_equal(got, key, sizeof(key));
	tk_secmem_free(&got);
	/* removal */
	ch[0].op = TK_SOFT_REMOVE;
	n = 1;
	assert_int_equal(tk_soft_write(b, ch, &n, NULL, NULL), TK_OK);
	assert_int_equal(tk_soft_write(a, ch, &n, NULL, NULL), TK_ERR_NOT_FOUND);
	tk_attrs_clear(&attrs);
	tk_soft_close(&a);
	tk_soft_close(&b);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_template_create), cmocka_unit_test(test_template_generate),
	        cmocka_unit_test(test_set_and_copy),    cmocka_unit_test(test_record),
	        cmocka_unit_test(test_store_pins),      cmocka_unit_test(test_store_two_writers),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
