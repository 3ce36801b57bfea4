/* tokenkit: a broker connection's messages through shared memory
 * (bring.h says how and why). */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <stdalign.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <tokenkit/mem.h>

#include "bring.h"
#include "clock.h"

#define RING_MAGIC 0x746b7231u /* "tkr1" */
#define HEAD_SIZE 4096u
#define END_CLIENT 0
#define END_BROKER 1
/* what an asleep end waits for */
#define WAIT_DATA 1u
#define WAIT_ROOM 2u

/* One counter on a cache line of its own: the two ends write different
 * ones, and each line moves between CPUs only when one is written. */
struct line {
	alignas(64) _Atomic uint32_t v;
};

/* The area's first page. Ring e (written by end e) follows it, e = 0 the
 * client's requests, 1 the broker's answers. */
struct head {
	uint32_t magic, cap;
	struct line asleep[2]; /* end e polls its socket for: WAIT_* bits */
	struct line wpos[2];   /* bytes end e wrote into ring e */
	struct line rpos[2];   /* bytes end e read from ring !e */
};

_Static_assert(sizeof(struct head) <= HEAD_SIZE, "the head fits its page");

struct bp_ring {
	struct head *h;
	uint8_t *area;
	size_t size;
	uint32_t cap;
	int me;
	uint8_t *out, *in;
	uint32_t wpos, rpos; /* ours: the area's copies are only published */
	int block_ms;        /* > 0: the socket blocks with this timeout */
};

static size_t
area_size(uint32_t cap)
{
	return HEAD_SIZE + 2 * (size_t)cap;
}

static struct bp_ring *
ring_map(int fd, uint32_t cap, int me)
{
	struct bp_ring *r = calloc(1, sizeof(*r));
	void *p;

	if (r == NULL)
		return NULL;
	r->size = area_size(cap);
	p = mmap(NULL, r->size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (p == MAP_FAILED) {
		free(r);
		return NULL;
	}
	/* (a forked child, a consent prompt, gets none of it; a core dump
	 * neither) */
	(void)madvise(p, r->size, MADV_DONTFORK);
	(void)madvise(p, r->size, MADV_DONTDUMP);
	r->area = p;
	r->h = p;
	r->cap = cap;
	r->me = me;
	r->out = r->area + HEAD_SIZE + (size_t)me * cap;
	r->in = r->area + HEAD_SIZE + (size_t)!me * cap;
	return r;
}

struct bp_ring *
bp_ring_new(int *memfd)
{
	int fd = memfd_create("tokenkit-broker", MFD_CLOEXEC | MFD_ALLOW_SEALING), e;
	struct bp_ring *r = NULL;

	*memfd = -1;
	if (fd < 0)
		return NULL;
	if (ftruncate(fd, (off_t)area_size(BP_RING_CAP)) != 0 ||
	    fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) != 0 ||
	    (r = ring_map(fd, BP_RING_CAP, END_BROKER)) == NULL) {
		e = errno;
		close(fd);
		errno = e;
		return NULL;
	}
	r->h->magic = RING_MAGIC;
	r->h->cap = BP_RING_CAP;
	*memfd = fd;
	return r;
}

struct bp_ring *
bp_ring_attach(int memfd, uint32_t cap)
{
	struct stat st;
	int seals = fcntl(memfd, F_GET_SEALS);
	struct bp_ring *r;

	/* (an area that could shrink under us would fault on access) */
	if (cap == 0 || cap > 16u * 1024u * 1024u || (cap & (cap - 1)) != 0 || seals < 0 ||
	    (seals & F_SEAL_SHRINK) == 0 || fstat(memfd, &st) != 0 ||
	    (uint64_t)st.st_size != area_size(cap)) {
		errno = EPROTO;
		return NULL;
	}
	r = ring_map(memfd, cap, END_CLIENT);
	if (r != NULL && (r->h->magic != RING_MAGIC || r->h->cap != cap)) {
		bp_ring_free(r);
		errno = EPROTO;
		return NULL;
	}
	return r;
}

void
bp_ring_free(struct bp_ring *r)
{
	if (r == NULL)
		return;
	/* (what the last messages left: read bytes are wiped already) */
	tk_wipe(r->out, r->cap);
	munmap(r->area, r->size);
	free(r);
}

void
bp_ring_block_ms(struct bp_ring *r, int ms)
{
	r->block_ms = ms;
}

uint32_t
bp_ring_cap(const struct bp_ring *r)
{
	return r->cap;
}

static uint32_t
peer_wpos(const struct bp_ring *r)
{
	return atomic_load_explicit(&r->h->wpos[!r->me].v, memory_order_acquire);
}

static uint32_t
peer_rpos(const struct bp_ring *r)
{
	return atomic_load_explicit(&r->h->rpos[!r->me].v, memory_order_acquire);
}

static bool
ready(const struct bp_ring *r, uint32_t what)
{
	if (what == WAIT_DATA)
		return peer_wpos(r) != r->rpos;
	return r->wpos - peer_rpos(r) != r->cap;
}

/* After this end made what the peer may wait for (what): the doorbell, if
 * it sleeps on it. The fence pairs with the sleeper's: either it sees our
 * position or we see it asleep. */
static void
kick(struct bp_ring *r, int sock, uint32_t what)
{
	atomic_thread_fence(memory_order_seq_cst);
	if ((atomic_load_explicit(&r->h->asleep[!r->me].v, memory_order_relaxed) & what) != 0)
		/* (a full socket holds doorbells enough) */
		(void)send(sock, "", 1, MSG_NOSIGNAL | MSG_DONTWAIT);
}

/* Until what is ready, the deadline, or the peer's end. 0 (ready, or
 * perhaps: the caller looks again), or -1 with errno. */
static int
ring_wait(struct bp_ring *r, int sock, uint32_t what, int64_t deadline, int spin_us)
{
	struct pollfd pfd = {.fd = sock, .events = POLLIN};
	uint8_t bell[64];
	int timeout, n;
	ssize_t got;

	if (spin_us > 0) {
		/* (never past the deadline) */
		int64_t end = tk_now_us() + spin_us;
		if (deadline >= 0 && end > deadline * 1000)
			end = deadline * 1000;
		do {
			if (ready(r, what))
				return 0;
			sched_yield(); /* the CPU to whoever else wants it */
		} while (tk_now_us() < end);
	}
	atomic_store_explicit(&r->h->asleep[r->me].v, what, memory_order_relaxed);
	atomic_thread_fence(memory_order_seq_cst);
	for (;;) {
		if (ready(r, what)) {
			n = 0;
			break;
		}
		/* One system call where the socket allows: one that blocks
		 * (the broker's) when there is no deadline, one whose own
		 * timeout (a client's, block_ms) ends before the deadline.
		 * Else poll keeps to the deadline, and a recv takes what it
		 * saw. */
		if (deadline < 0 || (r->block_ms > 0 && deadline - tk_now_ms() > r->block_ms)) {
			got = recv(sock, bell, sizeof(bell), 0);
			if (got > 0 || (got < 0 && errno == EINTR))
				continue;
			if (got == 0 || (errno != EAGAIN && errno != EWOULDBLOCK)) {
				if (got == 0)
					errno = ECONNRESET;
				n = -1;
				break;
			}
			if (deadline >= 0)
				continue; /* (its timeout: the deadline is looked at again) */
		}
		timeout = -1;
		if (deadline >= 0) {
			int64_t left = deadline - tk_now_ms();
			timeout = left <= 0 ? 0 : left > 60000 ? 60000 : (int)left;
		}
		n = poll(&pfd, 1, timeout);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			break;
		if (n == 0) {
			if (timeout != 0)
				continue;
			errno = ETIMEDOUT;
			n = -1;
			break;
		}
		got = recv(sock, bell, sizeof(bell), MSG_DONTWAIT);
		if (got == 0 ||
		    (got < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) {
			if (got == 0)
				errno = ECONNRESET;
			n = -1;
			break;
		}
	}
	atomic_store_explicit(&r->h->asleep[r->me].v, 0, memory_order_relaxed);
	return n < 0 ? -1 : 0;
}

int
bp_ring_write(struct bp_ring *r, int sock, const uint8_t *p, size_t n, int64_t deadline,
              int spin_us)
{
	while (n > 0) {
		uint32_t used = r->wpos - peer_rpos(r), at, k, first;

		if (used > r->cap) { /* the peer claims what we never wrote */
			errno = EPROTO;
			return -1;
		}
		if (used == r->cap) {
			if (ring_wait(r, sock, WAIT_ROOM, deadline, spin_us) < 0)
				return -1;
			continue;
		}
		k = r->cap - used;
		if (n < k)
			k = (uint32_t)n;
		at = r->wpos & (r->cap - 1);
		first = r->cap - at < k ? r->cap - at : k;
		memcpy(r->out + at, p, first);
		memcpy(r->out, p + first, k - first);
		r->wpos += k;
		p += k;
		n -= k;
		atomic_store_explicit(&r->h->wpos[r->me].v, r->wpos, memory_order_release);
		kick(r, sock, WAIT_DATA);
	}
	return 0;
}

ssize_t
bp_ring_read(struct bp_ring *r, int sock, uint8_t *p, size_t n, int64_t deadline, int spin_us)
{
	uint32_t avail, at, k, first;

	if (n == 0)
		return 0;
	for (;;) {
		avail = peer_wpos(r) - r->rpos;
		if (avail > r->cap) { /* more than the ring holds */
			errno = EPROTO;
			return -1;
		}
		if (avail > 0)
			break;
		if (ring_wait(r, sock, WAIT_DATA, deadline, spin_us) < 0)
			return -1;
	}
	k = n < avail ? (uint32_t)n : avail;
	at = r->rpos & (r->cap - 1);
	first = r->cap - at < k ? r->cap - at : k;
	/* copied out, then wiped: what the peer changes in the ring after
	 * this is not ours to see */
	memcpy(p, r->in + at, first);
	memcpy(p + first, r->in, k - first);
	tk_wipe(r->in + at, first);
	tk_wipe(r->in, k - first);
	r->rpos += k;
	atomic_store_explicit(&r->h->rpos[r->me].v, r->rpos, memory_order_release);
	kick(r, sock, WAIT_ROOM);
	return (ssize_t)k;
}

int
bp_ring_pending(const struct bp_ring *r)
{
	return peer_wpos(r) != r->rpos;
}
