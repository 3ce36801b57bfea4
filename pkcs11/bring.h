/* tokenkit: a broker connection's messages through shared memory. */
#ifndef TK_P11_BRING_H
#define TK_P11_BRING_H

/*
 * A socket costs a system call to send and one to receive every message,
 * and the spin that keeps a software token's round trip off an idle vCPU's
 * wake-up (bproto.h, bp_rbuf.spin_us) is a recv and a sched_yield each
 * turn. With a ring, a message is a copy into memory both ends map, a
 * waiting end sees it without a system call, and the socket is left for
 * what it does well: liveness (the peer's end closes it) and waiting with a
 * deadline (poll).
 *
 * The broker makes one area per connection (a memfd, sealed against
 * resizing) and passes it in its answer to a hello that asks for it
 * (BP_FEAT_SHM); from then on both ends' bytes go through it and the same
 * framing as on the socket (bp_read_msg, bp_send). Two rings, one per
 * direction, each written by one end and read by the other (single
 * producer, single consumer; positions count bytes, modulo 2^32). An end
 * that waits spins for spin_us, then says so in the area (asleep) and
 * polls its socket; the other end, after it wrote what the sleeper waits
 * for, sends it one byte there (a doorbell). Every byte that arrives on
 * the socket then is a doorbell.
 *
 * Neither end trusts the other's positions: one that claims more than a
 * ring holds fails the read or write (EPROTO). An end's own positions are
 * its private copies; what it reads it copies out first and wipes from the
 * ring (a PIN, plaintext). The area is not inherited by a child process
 * (MADV_DONTFORK) and not dumped (MADV_DONTDUMP).
 */

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* Each direction's capacity (a power of two); larger messages go in parts
 * while the reader takes them. */
#define BP_RING_CAP (64u * 1024u)

struct bp_ring;

/* The broker's end of a new area; *memfd (close-on-exec) for the client.
 * NULL with errno. */
struct bp_ring *bp_ring_new(int *memfd);
/* The client's end of the area memfd (the broker's, with capacity cap).
 * NULL with errno (EPROTO: not such an area). memfd stays the caller's. */
struct bp_ring *bp_ring_attach(int memfd, uint32_t cap);
/* Unmap (NULL: nothing). */
void bp_ring_free(struct bp_ring *r);
uint32_t bp_ring_cap(const struct bp_ring *r);
/* The connection's socket blocks, with a receive timeout of ms (> 0): an
 * end that waits longer than its spin then waits in recv alone. (Without a
 * deadline a wait blocks in recv anyway when the socket does.) */
void bp_ring_block_ms(struct bp_ring *r, int ms);

/* Write all of p before deadline (ms, monotonic; <0: none), waiting for
 * room; sock is the connection's (its doorbell). 0, or -1 with errno
 * (ETIMEDOUT, ECONNRESET, EPROTO). */
int bp_ring_write(struct bp_ring *r, int sock, const uint8_t *p, size_t n, int64_t deadline,
                  int spin_us);
/* Read 1 to n bytes before deadline: their number, or -1 with errno. */
ssize_t bp_ring_read(struct bp_ring *r, int sock, uint8_t *p, size_t n, int64_t deadline,
                     int spin_us);
/* Whether bytes are waiting to be read. */
int bp_ring_pending(const struct bp_ring *r);

#endif
