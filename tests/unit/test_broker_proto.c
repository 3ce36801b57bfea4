/* Unit tests for the broker protocol (pkcs11/bproto.c): what the module
 * writes the broker reads back, value for value; every malformed message is
 * refused with a reason; the framing refuses an oversize length and a
 * deadline ends a wait for a peer that says nothing; the writer's bytes are
 * libcbor's own serializer's. */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "bproto.h"
#include "cborutil.h"
#include "clock.h"

/* Encode a request and decode its payload (after the 4-byte length). */
static const char *
round_trip(uint32_t fn, struct bp_w *body, struct bp_msg *m, uint8_t **buf)
{
	size_t len;

	assert_true(bp_encode_request(fn, 77, body, buf, &len));
	assert_true(len > 4);
	assert_int_equal(((size_t)(*buf)[0] << 24 | (size_t)(*buf)[1] << 16 |
	                  (size_t)(*buf)[2] << 8 | (*buf)[3]),
	                 len - 4);
	return bp_decode(*buf + 4, len - 4, true, m);
}

static void
test_values(void **state)
{
	struct bp_w w, sub;
	struct bp_msg m;
	struct bp_r r, s;
	uint8_t *buf;
	size_t n;
	bool null;
	const uint8_t *b;

	(void)state;
	bp_w_init(&w);
	bp_put_u(&w, 0);
	bp_put_u(&w, 300);
	bp_put_u(&w, UINT64_MAX);
	bp_put_b(&w, "pin", 3);
	bp_put_b(&w, NULL, 0);
	bp_put_null(&w);
	bp_w_init(&sub);
	bp_put_u(&sub, 5);
	bp_put_sub(&w, &sub);
	assert_null(round_trip(BP_C_Login, &w, &m, &buf));
	assert_int_equal(m.head, BP_C_Login);
	assert_int_equal(m.id, 77);
	r = m.body;
	assert_int_equal(bp_get_u(&r), 0);
	assert_int_equal(bp_get_u(&r), 300);
	assert_true(bp_get_u(&r) == UINT64_MAX);
	b = bp_get_b(&r, &n, false, NULL);
	assert_int_equal(n, 3);
	assert_memory_equal(b, "pin", 3);
	(void)bp_get_b(&r, &n, false, NULL);
	assert_int_equal(n, 0);
	assert_null(bp_get_b(&r, &n, true, &null));
	assert_true(null);
	s = bp_get_sub(&r);
	assert_int_equal(bp_get_u(&s), 5);
	assert_true(bp_r_done(&s));
	assert_true(bp_r_done(&r));
	/* reading past the end, or the wrong kind, is noticed */
	(void)bp_get_u(&r);
	assert_false(r.ok);
	r = m.body;
	(void)bp_get_b(&r, &n, false, NULL); /* an integer is no byte string */
	assert_false(r.ok);
	bp_msg_free(&m);
	free(buf);
}

static void
test_response(void **state)
{
	struct bp_w w;
	struct bp_msg m;
	uint8_t *buf;
	size_t len;

	(void)state;
	bp_w_init(&w);
	bp_put_u(&w, 9);
	assert_true(bp_encode_response(12, CKR_PIN_INCORRECT, &w, &buf, &len));
	assert_null(bp_decode(buf + 4, len - 4, false, &m));
	assert_int_equal(m.id, 12);
	assert_int_equal(m.rv, CKR_PIN_INCORRECT);
	assert_int_equal(bp_get_u(&m.body), 9);
	bp_msg_free(&m);
	free(buf);
}

static void
test_malformed(void **state)
{
	static const struct {
		const char *name;
		const char *bytes;
		size_t len;
	} bad[] = {
	        {"empty", "", 0},
	        {"not CBOR", "\xff\xff", 2},
	        {"truncated", "\x84\x01\x00\x01", 4},
	        {"trailing", "\x84\x01\x00\x01\x80\x00", 6},
	        {"not an array", "\xa0", 1},
	        {"3 items", "\x83\x01\x00\x01", 4},
	        {"version 2", "\x84\x02\x00\x01\x80", 5},
	        {"unknown function", "\x84\x01\x19\x01\xf4\x01\x80", 7},
	        {"body not array", "\x84\x01\x00\x01\x01", 5},
	        {"negative header", "\x84\x01\x20\x01\x80", 5},
	        {"count past the end", "\x84\x01\x00\x01\x9a\xff\xff\xff\xff", 9},
	        {"bytes past the end", "\x84\x01\x00\x01\x81\x5a\x00\x01\x00\x00\x00", 11},
	        {"body without its break", "\x84\x01\x00\x01\x9f\x01", 6},
	        {"break in a definite array", "\x84\x01\x00\x01\x82\x01\xff", 7},
	        {"text in the body", "\x84\x01\x00\x01\x81\x61\x61", 7},
	        {"map in the body", "\x84\x01\x00\x01\x81\xa0", 6},
	        {"negative in the body", "\x84\x01\x00\x01\x81\x20", 6},
	        {"chunked bytes", "\x84\x01\x00\x01\x81\x5f\x41\x00\xff", 9},
	        {"tag in the body", "\x84\x01\x00\x01\x81\xc1\x00", 7},
	        {"nested too deep", "\x84\x01\x00\x01\x81\x81\x81\x81\x81\x81\x81\x81\x81\x80", 14},
	        {"too many items", "\x84\x01\x00\x01\x99\x04\x01", 7},
	};
	struct bp_msg m;

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		const char *why = bp_decode((const uint8_t *)bad[i].bytes, bad[i].len, true, &m);
		if (why == NULL)
			fail_msg("%s: accepted", bad[i].name);
		bp_msg_free(&m);
	}
	/* as deep as allowed: taken */
	assert_null(bp_decode((const uint8_t *)"\x84\x01\x00\x01\x81\x81\x81\x81\x81\x81\x81\x80",
	                      12, true, &m));
	bp_msg_free(&m);
	/* a response may carry any id and rv, but the version must match */
	assert_non_null(bp_decode((const uint8_t *)"\x84\x03\x00\x00\x80", 5, false, &m));
	bp_msg_free(&m);
}

static void
test_mechanism(void **state)
{
	struct bp_w w, mech;
	struct bp_msg m;
	CK_MECHANISM mm;
	union bp_mparam p;
	uint8_t *buf;

	(void)state;
	/* RSA-PSS parameters as values */
	bp_w_init(&w);
	bp_w_init(&mech);
	bp_put_u(&mech, CKM_RSA_PKCS_PSS);
	bp_put_u(&mech, BP_MP_PSS);
	bp_put_u(&mech, CKM_SHA256);
	bp_put_u(&mech, CKG_MGF1_SHA256);
	bp_put_u(&mech, 32);
	bp_put_sub(&w, &mech);
	assert_null(round_trip(BP_C_SignInit, &w, &m, &buf));
	assert_true(bp_get_mech(&m.body, &mm, &p));
	assert_int_equal(mm.mechanism, CKM_RSA_PKCS_PSS);
	assert_int_equal(mm.ulParameterLen, sizeof(CK_RSA_PKCS_PSS_PARAMS));
	assert_int_equal(p.pss.hashAlg, CKM_SHA256);
	assert_int_equal(p.pss.mgf, CKG_MGF1_SHA256);
	assert_int_equal(p.pss.sLen, 32);
	bp_msg_free(&m);
	free(buf);

	/* OAEP parameters hold a pointer: never taken as raw bytes */
	bp_w_init(&w);
	bp_w_init(&mech);
	bp_put_u(&mech, CKM_RSA_PKCS_OAEP);
	bp_put_u(&mech, BP_MP_RAW);
	bp_put_b(&mech, "0123456789abcdef0123456789abcdef0123456789", 40);
	bp_put_sub(&w, &mech);
	assert_null(round_trip(BP_C_DecryptInit, &w, &m, &buf));
	assert_false(bp_get_mech(&m.body, &mm, &p));
	bp_msg_free(&m);
	free(buf);

	/* OAEP as values: the label points into the message */
	bp_w_init(&w);
	bp_w_init(&mech);
	bp_put_u(&mech, CKM_RSA_PKCS_OAEP);
	bp_put_u(&mech, BP_MP_OAEP);
	bp_put_u(&mech, CKM_SHA256);
	bp_put_u(&mech, CKG_MGF1_SHA256);
	bp_put_u(&mech, CKZ_DATA_SPECIFIED);
	bp_put_b(&mech, "label", 5);
	bp_put_sub(&w, &mech);
	assert_null(round_trip(BP_C_DecryptInit, &w, &m, &buf));
	assert_true(bp_get_mech(&m.body, &mm, &p));
	assert_int_equal(p.oaep.ulSourceDataLen, 5);
	assert_memory_equal(p.oaep.pSourceData, "label", 5);
	bp_msg_free(&m);
	free(buf);
}

static void
test_template(void **state)
{
	struct bp_w w, t;
	struct bp_msg m;
	CK_ATTRIBUTE *a;
	CK_ULONG n;
	CK_OBJECT_CLASS cls = CKO_PRIVATE_KEY;
	uint8_t *buf;

	(void)state;
	bp_w_init(&w);
	bp_w_init(&t);
	bp_put_u(&t, CKA_CLASS);
	bp_put_b(&t, &cls, sizeof(cls));
	bp_put_u(&t, CKA_ID);
	bp_put_b(&t, "\x01", 1);
	bp_put_sub(&w, &t);
	assert_null(round_trip(BP_C_FindObjectsInit, &w, &m, &buf));
	assert_true(bp_get_template(&m.body, &a, &n));
	assert_int_equal(n, 2);
	assert_int_equal(a[0].type, CKA_CLASS);
	assert_int_equal(a[0].ulValueLen, sizeof(cls));
	assert_memory_equal(a[0].pValue, &cls, sizeof(cls));
	assert_int_equal(a[1].type, CKA_ID);
	free(a);
	bp_msg_free(&m);
	free(buf);

	/* a template inside a template (pointers): refused */
	bp_w_init(&w);
	bp_w_init(&t);
	bp_put_u(&t, CKA_WRAP_TEMPLATE);
	bp_put_b(&t, "0123456789abcdef", 16);
	bp_put_sub(&w, &t);
	assert_null(round_trip(BP_C_FindObjectsInit, &w, &m, &buf));
	assert_false(bp_get_template(&m.body, &a, &n));
	bp_msg_free(&m);
	free(buf);
}

static void
test_framing(void **state)
{
	static struct bp_rbuf rb;
	int sv[2];
	uint8_t *msg;
	size_t len;
	int64_t t0;

	(void)state;
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	/* a length over the limit: refused before anything is allocated */
	assert_int_equal(write(sv[0], "\x7f\xff\xff\xff", 4), 4);
	memset(&rb, 0, sizeof(rb));
	assert_int_equal(bp_read_msg(sv[1], &rb, &msg, &len, tk_now_ms() + 1000), -1);
	assert_int_equal(errno, EMSGSIZE);
	assert_null(msg);
	/* a peer that says nothing: the deadline ends the wait */
	memset(&rb, 0, sizeof(rb));
	t0 = tk_now_ms();
	assert_int_equal(bp_read_msg(sv[1], &rb, &msg, &len, tk_now_ms() + 100), -1);
	assert_int_equal(errno, ETIMEDOUT);
	assert_true(tk_now_ms() - t0 >= 100);
	/* half a message, then the peer goes: a reset, not a message */
	assert_int_equal(write(sv[0], "\x00\x00\x00\x05\x84", 5), 5);
	close(sv[0]);
	assert_int_equal(bp_read_msg(sv[1], &rb, &msg, &len, tk_now_ms() + 1000), -1);
	assert_int_equal(errno, ECONNRESET);
	close(sv[1]);
}

/* Messages written back to back (a pipelined request and the next) come
 * out one by one, whole, also when one recv takes one and a part of the
 * next, and whatever the sizes. */
static void
test_pipelined(void **state)
{
	static struct bp_rbuf rb;
	static uint8_t wire[3 * 8192];
	const size_t sizes[] = {1, 4000, 3, 4093, 9000, 2, 4092};
	size_t n = 0, len;
	uint8_t *msg;
	int sv[2];

	(void)state;
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	for (size_t k = 0; k < sizeof(sizes) / sizeof(sizes[0]); k++) {
		wire[n++] = (uint8_t)(sizes[k] >> 24);
		wire[n++] = (uint8_t)(sizes[k] >> 16);
		wire[n++] = (uint8_t)(sizes[k] >> 8);
		wire[n++] = (uint8_t)sizes[k];
		for (size_t i = 0; i < sizes[k]; i++)
			wire[n++] = (uint8_t)(k * 31 + i);
	}
	assert_true(n <= sizeof(wire));
	assert_int_equal(write(sv[0], wire, n), (ssize_t)n);
	close(sv[0]);
	memset(&rb, 0, sizeof(rb));
	for (size_t k = 0; k < sizeof(sizes) / sizeof(sizes[0]); k++) {
		assert_int_equal(bp_read_msg(sv[1], &rb, &msg, &len, tk_now_ms() + 1000), 0);
		assert_int_equal(len, sizes[k]);
		for (size_t i = 0; i < len; i++)
			assert_int_equal(msg[i], (uint8_t)(k * 31 + i));
		free(msg);
	}
	/* and then the end of the stream */
	assert_int_equal(bp_read_msg(sv[1], &rb, &msg, &len, tk_now_ms() + 1000), -1);
	assert_int_equal(errno, ECONNRESET);
	close(sv[1]);
}

/* The message as an item tree, serialized by libcbor (cbor_serialize): the
 * reference for the writer, which uses libcbor's encoders instead. */
static void
tree_push(cbor_item_t *arr, cbor_item_t *it)
{
	assert_non_null(it);
	assert_true(cbor_array_push(arr, it));
	cbor_decref(&it);
}

/* The writer's bytes are the ones libcbor's serializer gives for the same
 * message built as an item tree (the wire format before the writer encoded
 * in place), at every width boundary of integers and lengths. */
static void
test_bytes_as_libcbor(void **state)
{
	static const uint64_t us[] = {0,     23,    24,         255,        256,
	                              65535, 65536, UINT32_MAX, 1ull << 32, UINT64_MAX};
	static const size_t bs[] = {0, 1, 23, 24, 255, 256, 300, 70000};
	static uint8_t data[70000];
	struct bp_w w, sub, empty;
	cbor_item_t *msg, *body, *tsub;
	unsigned char *want = NULL;
	size_t want_cap = 0, want_len, len;
	uint8_t *buf;

	(void)state;
	for (size_t i = 0; i < sizeof(data); i++)
		data[i] = (uint8_t)(i * 7 + 1);
	bp_w_init(&w);
	body = cbor_new_indefinite_array();
	for (size_t i = 0; i < sizeof(us) / sizeof(us[0]); i++) {
		bp_put_u(&w, us[i]);
		tree_push(body, tk_cbor_uint(us[i]));
	}
	for (size_t i = 0; i < sizeof(bs) / sizeof(bs[0]); i++) {
		bp_put_b(&w, data, bs[i]);
		tree_push(body, cbor_build_bytestring(data, bs[i]));
	}
	bp_put_null(&w);
	tree_push(body, cbor_new_null());
	bp_w_init(&sub);
	bp_put_u(&sub, 9);
	bp_put_b(&sub, "ab", 2);
	bp_w_init(&empty);
	bp_put_sub(&sub, &empty);
	bp_put_sub(&w, &sub);
	tsub = cbor_new_indefinite_array();
	tree_push(tsub, tk_cbor_uint(9));
	tree_push(tsub, cbor_build_bytestring((const unsigned char *)"ab", 2));
	tree_push(tsub, cbor_new_indefinite_array());
	tree_push(body, tsub);
	assert_int_equal(w.n, sizeof(us) / sizeof(us[0]) + sizeof(bs) / sizeof(bs[0]) + 2);
	msg = cbor_new_definite_array(4);
	tree_push(msg, tk_cbor_uint(BP_VERSION));
	tree_push(msg, tk_cbor_uint(BP_C_Sign));
	tree_push(msg, tk_cbor_uint(1ull << 40));
	tree_push(msg, body);
	want_len = cbor_serialize_alloc(msg, &want, &want_cap);
	assert_true(want_len > 0);
	cbor_decref(&msg);
	assert_true(bp_encode_request(BP_C_Sign, 1ull << 40, &w, &buf, &len));
	assert_int_equal(len, want_len + 4);
	assert_memory_equal(buf + 4, want, want_len);
	free(want);
	free(buf);
}

/* A whole message already read with the last one is said to be there; a
 * part of one is not. */
static void
test_rbuf_ready(void **state)
{
	static struct bp_rbuf rb;
	static const uint8_t two[] = {0, 0, 0, 2, 0x80, 0x80, 0, 0, 0, 2, 0x82, 1};
	uint8_t *msg;
	size_t len;
	int sv[2];

	(void)state;
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	memset(&rb, 0, sizeof(rb));
	assert_false(bp_rbuf_ready(&rb));
	assert_int_equal(write(sv[0], two, 10), 10); /* the first and a header */
	assert_int_equal(bp_read_msg(sv[1], &rb, &msg, &len, tk_now_ms() + 1000), 0);
	free(msg);
	assert_false(bp_rbuf_ready(&rb));
	assert_int_equal(write(sv[0], two + 10, 2), 2);
	assert_int_equal(bp_read_msg(sv[1], &rb, &msg, &len, tk_now_ms() + 1000), 0);
	assert_int_equal(len, 2);
	assert_int_equal(msg[0], 0x82);
	free(msg);
	assert_int_equal(write(sv[0], two, 12), 12); /* two whole ones */
	assert_int_equal(bp_read_msg(sv[1], &rb, &msg, &len, tk_now_ms() + 1000), 0);
	free(msg);
	assert_true(bp_rbuf_ready(&rb));
	assert_int_equal(bp_read_msg(sv[1], &rb, &msg, &len, tk_now_ms() + 1000), 0);
	free(msg);
	assert_false(bp_rbuf_ready(&rb));
	close(sv[0]);
	close(sv[1]);
}

static void *
late_writer(void *arg)
{
	int fd = *(int *)arg;
	struct timespec ts = {0, 150 * 1000 * 1000};

	nanosleep(&ts, NULL);
	if (write(fd, "\x00\x00\x00\x01\x80", 5) != 5)
		return (void *)1;
	return NULL;
}

/* A blocking socket with SO_RCVTIMEO (the module's, bp_rbuf.block_ms):
 * an answer that comes while recv waits is read; a peer that says nothing
 * still ends at the deadline, not at the socket's own timeout, and not
 * before the deadline either. The same with reads that spin first
 * (bp_rbuf.spin_us). */
static void
blocking_reads(int spin_us)
{
	static struct bp_rbuf rb;
	struct timeval tv = {0, 100 * 1000};
	uint8_t *msg;
	size_t len;
	pthread_t th;
	void *res;
	int64_t t0;
	int sv[2];

	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	assert_int_equal(setsockopt(sv[1], SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)), 0);
	memset(&rb, 0, sizeof(rb));
	rb.block_ms = 100;
	rb.spin_us = spin_us;
	/* nothing: several socket timeouts, then poll up to the deadline */
	t0 = tk_now_ms();
	assert_int_equal(bp_read_msg(sv[1], &rb, &msg, &len, t0 + 450), -1);
	assert_int_equal(errno, ETIMEDOUT);
	assert_true(tk_now_ms() - t0 >= 450);
	/* an answer while recv blocks */
	assert_int_equal(pthread_create(&th, NULL, late_writer, &sv[0]), 0);
	assert_int_equal(bp_read_msg(sv[1], &rb, &msg, &len, tk_now_ms() + 5000), 0);
	assert_int_equal(len, 1);
	assert_int_equal(msg[0], 0x80);
	free(msg);
	assert_int_equal(pthread_join(th, &res), 0);
	assert_null(res);
	/* the peer goes: a reset */
	close(sv[0]);
	assert_int_equal(bp_read_msg(sv[1], &rb, &msg, &len, tk_now_ms() + 5000), -1);
	assert_int_equal(errno, ECONNRESET);
	close(sv[1]);
}

static void
test_blocking_reads(void **state)
{
	(void)state;
	blocking_reads(0);
	blocking_reads(BP_SPIN_MAX_US);
}

/* Spinning reads (bp_rbuf.spin_us): what is there is read at once; a
 * request later than the spin is still read on the broker's socket
 * (blocking, no deadline); a deadline nearer than the spin ends the spin
 * there. TOKENKIT_BROKER_SPIN_US sets the spin within bounds. */
static void
test_spinning_reads(void **state)
{
	static struct bp_rbuf rb;
	struct timeval tv = {0, 100 * 1000};
	uint8_t *msg;
	size_t len;
	pthread_t th;
	void *res;
	int64_t t0;
	int sv[2];

	(void)state;
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	memset(&rb, 0, sizeof(rb));
	rb.spin_us = BP_SPIN_MAX_US;
	/* there already */
	assert_int_equal(write(sv[0], "\x00\x00\x00\x01\x81", 5), 5);
	assert_int_equal(bp_read_msg(sv[1], &rb, &msg, &len, -1), 0);
	assert_int_equal(len, 1);
	assert_int_equal(msg[0], 0x81);
	free(msg);
	/* the broker's read: blocking socket, no deadline, a late request */
	assert_int_equal(pthread_create(&th, NULL, late_writer, &sv[0]), 0);
	assert_int_equal(bp_read_msg(sv[1], &rb, &msg, &len, -1), 0);
	assert_int_equal(len, 1);
	assert_int_equal(msg[0], 0x80);
	free(msg);
	assert_int_equal(pthread_join(th, &res), 0);
	assert_null(res);
	/* a deadline already past: no spin at all, just what is there (a
	 * spin of 20 s, far beyond what bp_spin_us gives, would show) */
	assert_int_equal(setsockopt(sv[1], SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)), 0);
	rb.block_ms = 100;
	rb.spin_us = 20 * 1000 * 1000;
	t0 = tk_now_ms();
	assert_int_equal(bp_read_msg(sv[1], &rb, &msg, &len, tk_now_ms() - 1), -1);
	assert_int_equal(errno, ETIMEDOUT);
	assert_true(tk_now_ms() - t0 < 10 * 1000);
	close(sv[0]);
	close(sv[1]);

	unsetenv("TOKENKIT_BROKER_SPIN_US");
	assert_int_equal(bp_spin_us(), BP_SPIN_US);
	setenv("TOKENKIT_BROKER_SPIN_US", "0", 1);
	assert_int_equal(bp_spin_us(), 0);
	setenv("TOKENKIT_BROKER_SPIN_US", "1000", 1);
	assert_int_equal(bp_spin_us(), BP_SPIN_MAX_US);
	setenv("TOKENKIT_BROKER_SPIN_US", "1001", 1);
	assert_int_equal(bp_spin_us(), BP_SPIN_US);
	setenv("TOKENKIT_BROKER_SPIN_US", "20us", 1);
	assert_int_equal(bp_spin_us(), BP_SPIN_US);
	unsetenv("TOKENKIT_BROKER_SPIN_US");
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_values),         cmocka_unit_test(test_response),
	        cmocka_unit_test(test_malformed),      cmocka_unit_test(test_mechanism),
	        cmocka_unit_test(test_template),       cmocka_unit_test(test_framing),
	        cmocka_unit_test(test_pipelined),      cmocka_unit_test(test_bytes_as_libcbor),
	        cmocka_unit_test(test_rbuf_ready),     cmocka_unit_test(test_blocking_reads),
	        cmocka_unit_test(test_spinning_reads),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
