/* Unit tests for a broker connection's shared memory (pkcs11/bring.c): the
 * bytes one end writes the other reads, in order, across the rings' wrap and
 * in messages larger than a ring; a reader that sleeps is woken by the
 * writer's doorbell; a deadline ends a wait for a silent peer and a closed
 * socket ends it at once; positions a peer could not have written are
 * refused; what was read is wiped from the area; an area that could shrink,
 * or is not one of ours, is not attached; and bp_read_msg / bp_send frame
 * messages through it as through the socket. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "bproto.h"
#include "bring.h"
#include "clock.h"

/* A broker end and a client end of one area, over a socket pair. */
struct pair {
	struct bp_ring *broker, *client;
	int sv[2]; /* [0] the broker's socket, [1] the client's */
	int memfd;
};

static void
pair_open(struct pair *p)
{
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, p->sv), 0);
	p->broker = bp_ring_new(&p->memfd);
	assert_non_null(p->broker);
	assert_true(p->memfd >= 0);
	p->client = bp_ring_attach(p->memfd, bp_ring_cap(p->broker));
	assert_non_null(p->client);
}

static void
pair_close(struct pair *p)
{
	bp_ring_free(p->broker);
	bp_ring_free(p->client);
	close(p->memfd);
	close(p->sv[0]);
	close(p->sv[1]);
}

static uint8_t
pattern(size_t i)
{
	return (uint8_t)(i * 7 + (i >> 8) * 13 + 1);
}

struct writer {
	struct bp_ring *r;
	int sock, spin_us;
	size_t total;
	int rc;
};

/* writes total pattern bytes in pieces of varied sizes */
static void *
writer_main(void *arg)
{
	struct writer *w = arg;
	uint8_t *buf = malloc(w->total);
	size_t off = 0, piece = 1;

	for (size_t i = 0; i < w->total; i++)
		buf[i] = pattern(i);
	w->rc = 0;
	while (off < w->total && w->rc == 0) {
		size_t k = piece < w->total - off ? piece : w->total - off;
		w->rc = bp_ring_write(w->r, w->sock, buf + off, k, tk_now_ms() + 20000, w->spin_us);
		off += k;
		piece = piece * 3 % 100003 + 1; /* 1, 4, 13, ... up to ~100 KiB */
	}
	free(buf);
	return NULL;
}

/* The reader waits with a deadline (poll), or without one as the broker
 * does (a blocking recv on its socket). */
static void
stream(int spin_us, bool deadline)
{
	struct pair p;
	struct writer w;
	pthread_t th;
	size_t total = 3 * 1024 * 1024 + 17, got = 0, bad = 0;
	uint8_t buf[5000];

	pair_open(&p);
	w = (struct writer){p.client, p.sv[1], spin_us, total, -1};
	assert_int_equal(pthread_create(&th, NULL, writer_main, &w), 0);
	while (got < total) {
		size_t want = 1 + got % sizeof(buf);
		ssize_t n = bp_ring_read(p.broker, p.sv[0], buf, want,
		                         deadline ? tk_now_ms() + 20000 : -1, spin_us);
		assert_true(n > 0);
		for (ssize_t i = 0; i < n; i++)
			bad += buf[i] != pattern(got + (size_t)i);
		got += (size_t)n;
	}
	pthread_join(th, NULL);
	assert_int_equal(w.rc, 0);
	assert_int_equal(bad, 0);
	assert_int_equal(got, total);
	assert_false(bp_ring_pending(p.broker));
	pair_close(&p);
}

/* 3 MiB through a 64 KiB ring: it wraps, the writer waits for room. */
static void
test_stream_spinning(void **state)
{
	(void)state;
	stream(50, true);
}

/* With no spin at all every wait sleeps on the socket: nothing is lost
 * between "asleep" and the doorbell (else the reader waits 20 s, fails). */
static void
test_stream_sleeping(void **state)
{
	(void)state;
	stream(0, true);
	stream(0, false);
}

static void
test_deadline_and_close(void **state)
{
	struct pair p;
	uint8_t b[8];
	int64_t t0;

	(void)state;
	pair_open(&p);
	t0 = tk_now_ms();
	assert_int_equal(bp_ring_read(p.broker, p.sv[0], b, sizeof(b), t0 + 300, 0), -1);
	assert_int_equal(errno, ETIMEDOUT);
	assert_true(tk_now_ms() >= t0 + 300);
	/* bytes on the socket are doorbells, not data */
	assert_int_equal(send(p.sv[1], "xyz", 3, 0), 3);
	assert_int_equal(bp_ring_read(p.broker, p.sv[0], b, sizeof(b), tk_now_ms() + 100, 0), -1);
	assert_int_equal(errno, ETIMEDOUT);
	/* the peer's end: at once, deadline or not */
	close(p.sv[1]);
	p.sv[1] = -1;
	assert_int_equal(bp_ring_read(p.broker, p.sv[0], b, sizeof(b), -1, 50), -1);
	assert_int_equal(errno, ECONNRESET);
	pair_close(&p);
}

static void
test_full_ring_deadline(void **state)
{
	struct pair p;
	size_t cap;
	uint8_t *big;

	(void)state;
	pair_open(&p);
	cap = bp_ring_cap(p.client);
	big = calloc(1, cap + 1);
	/* nobody reads: one byte more than the ring holds waits, then fails */
	assert_int_equal(bp_ring_write(p.client, p.sv[1], big, cap + 1, tk_now_ms() + 200, 20), -1);
	assert_int_equal(errno, ETIMEDOUT);
	free(big);
	pair_close(&p);
}

/* The area's head as the tests poke it: the client's write position is the
 * third cache line's counter, its read position the fifth's (bring.c). */
static uint32_t *
head_u32(int memfd, size_t line)
{
	void *m = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, memfd, 0);

	assert_true(m != MAP_FAILED);
	return (uint32_t *)((uint8_t *)m + 64 * line);
}

static void
test_hostile_positions(void **state)
{
	struct pair p;
	uint8_t b[16];
	uint32_t *cw, *cr;

	(void)state;
	pair_open(&p);
	cw = head_u32(p.memfd, 3); /* wpos[client] */
	cr = head_u32(p.memfd, 5); /* rpos[client] */
	/* a client that claims to have written more than the ring holds */
	*cw = 70000;
	assert_int_equal(bp_ring_read(p.broker, p.sv[0], b, sizeof(b), tk_now_ms() + 100, 0), -1);
	assert_int_equal(errno, EPROTO);
	/* one that claims to have read what the broker never wrote */
	*cr = 5;
	assert_int_equal(bp_ring_write(p.broker, p.sv[0], b, sizeof(b), tk_now_ms() + 100, 0), -1);
	assert_int_equal(errno, EPROTO);
	munmap((uint8_t *)cw - 64 * 3, 4096);
	munmap((uint8_t *)cr - 64 * 5, 4096);
	pair_close(&p);
}

static void
test_read_bytes_wiped(void **state)
{
	struct pair p;
	static const uint8_t pin[] = "PIN-123456-PIN";
	uint8_t b[sizeof(pin)];
	const uint8_t *area;
	size_t size = 4096 + 2 * (size_t)BP_RING_CAP;

	(void)state;
	pair_open(&p);
	assert_int_equal(bp_ring_write(p.client, p.sv[1], pin, sizeof(pin), -1, 0), 0);
	area = mmap(NULL, size, PROT_READ, MAP_SHARED, p.memfd, 0);
	assert_true(area != MAP_FAILED);
	assert_non_null(memmem(area, size, pin, sizeof(pin))); /* (it was there) */
	assert_int_equal(bp_ring_read(p.broker, p.sv[0], b, sizeof(b), -1, 0), (ssize_t)sizeof(b));
	assert_memory_equal(b, pin, sizeof(pin));
	assert_null(memmem(area, size, pin, 4)); /* (not even part of it) */
	munmap((void *)(uintptr_t)area, size);
	pair_close(&p);
}

static void
test_attach_refuses(void **state)
{
	int fd, sealed;
	struct bp_ring *r;
	int memfd;

	(void)state;
	/* an area that could shrink under the client */
	fd = memfd_create("t", MFD_CLOEXEC);
	assert_true(fd >= 0);
	assert_int_equal(ftruncate(fd, 4096 + 2 * BP_RING_CAP), 0);
	r = bp_ring_attach(fd, BP_RING_CAP);
	assert_null(r);
	assert_int_equal(errno, EPROTO);
	close(fd);
	/* the right seals and size, not ours (no magic) */
	fd = memfd_create("t", MFD_CLOEXEC | MFD_ALLOW_SEALING);
	assert_int_equal(ftruncate(fd, 4096 + 2 * BP_RING_CAP), 0);
	assert_int_equal(fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW), 0);
	assert_null(bp_ring_attach(fd, BP_RING_CAP));
	/* a capacity other than its size, or not a power of two */
	assert_null(bp_ring_attach(fd, BP_RING_CAP / 2));
	assert_null(bp_ring_attach(fd, 3000));
	close(fd);
	/* the broker's own: it cannot be resized by anyone */
	assert_non_null(r = bp_ring_new(&memfd));
	sealed = fcntl(memfd, F_GET_SEALS);
	assert_true((sealed & F_SEAL_SHRINK) && (sealed & F_SEAL_GROW) && (sealed & F_SEAL_SEAL));
	assert_int_not_equal(ftruncate(memfd, 4096), 0);
	bp_ring_free(r);
	close(memfd);
}

struct echo {
	int sock;
	struct bp_rbuf rb;
	int n;
};

/* the broker's side: each message back, framed again */
static void *
echo_main(void *arg)
{
	struct echo *e = arg;
	uint8_t *msg, hdr[4];
	size_t len;

	for (int i = 0; i < e->n; i++) {
		if (bp_read_msg(e->sock, &e->rb, &msg, &len, tk_now_ms() + 20000) < 0)
			return NULL;
		hdr[0] = (uint8_t)(len >> 24);
		hdr[1] = (uint8_t)(len >> 16);
		hdr[2] = (uint8_t)(len >> 8);
		hdr[3] = (uint8_t)len;
		if (bp_send(e->sock, &e->rb, hdr, 4, tk_now_ms() + 20000) < 0 ||
		    bp_send(e->sock, &e->rb, msg, len, tk_now_ms() + 20000) < 0)
			return NULL;
		free(msg);
	}
	return NULL;
}

/* Messages of 1 byte to the protocol's largest, two at a time. */
static void
test_framed_messages(void **state)
{
	struct pair p;
	struct echo e = {0};
	struct bp_rbuf rb = {0};
	pthread_t th;
	static const size_t sizes[] = {1, 4095, 4096, 70000, BP_MAX_MSG, 2, 65536};
	size_t n = sizeof(sizes) / sizeof(sizes[0]);
	uint8_t *buf = malloc(BP_MAX_MSG + 4), *msg;
	size_t len;

	(void)state;
	pair_open(&p);
	e.sock = p.sv[0];
	e.rb.ring = p.broker;
	e.rb.spin_us = 50;
	e.n = (int)n;
	rb.ring = p.client;
	rb.spin_us = 50;
	assert_int_equal(pthread_create(&th, NULL, echo_main, &e), 0);
	for (size_t i = 0; i < n; i++) {
		size_t sz = sizes[i];
		buf[0] = (uint8_t)(sz >> 24);
		buf[1] = (uint8_t)(sz >> 16);
		buf[2] = (uint8_t)(sz >> 8);
		buf[3] = (uint8_t)sz;
		for (size_t j = 0; j < sz; j++)
			buf[4 + j] = pattern(j + i);
		assert_int_equal(bp_send(p.sv[1], &rb, buf, sz + 4, tk_now_ms() + 20000), 0);
		assert_int_equal(bp_read_msg(p.sv[1], &rb, &msg, &len, tk_now_ms() + 20000), 0);
		assert_int_equal(len, sz);
		assert_memory_equal(msg, buf + 4, sz);
		free(msg);
	}
	pthread_join(th, NULL);
	free(buf);
	/* (the rbufs do not own the rings here) */
	pair_close(&p);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_stream_spinning),
	        cmocka_unit_test(test_stream_sleeping),
	        cmocka_unit_test(test_deadline_and_close),
	        cmocka_unit_test(test_full_ring_deadline),
	        cmocka_unit_test(test_hostile_positions),
	        cmocka_unit_test(test_read_bytes_wiped),
	        cmocka_unit_test(test_attach_refuses),
	        cmocka_unit_test(test_framed_messages),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
