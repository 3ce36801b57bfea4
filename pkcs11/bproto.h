/* tokenkit: the broker protocol (tokenkitd <-> the module in broker mode).
 *
 * One message is a 4-byte big-endian length and that many bytes of CBOR
 * (libcbor), at most BP_MAX_MSG. A request is the array
 *   [BP_VERSION, function, call id, [arguments...]]
 * and its response
 *   [BP_VERSION, call id, CK_RV, [results...]]
 * where function is the PKCS#11 function's place in rv.h's list (BP_C_*) or
 * BP_HELLO, the first request of every connection:
 *   [client id (16 bytes), features] -> [instance id (16 bytes), client
 *   serial, broker pid]
 * (features: BP_FEAT_* bits; a broker passes over bits it does not know,
 * and takes a hello without them as features 0.)
 * The instance id changes with every start of the broker, the client serial
 * whenever the broker made new state for the client id (its sessions and
 * logins are gone): either one tells the client to re-sync.
 * BP_TOKENS, after a hello, is the tokenkit tool's view of the readers (what
 * `tokenkit tokens` and `tokenkit objects` show, which PKCS#11 does not
 * carry: PIN tries, the driver, identities before a login):
 *   [reader name or null] -> CKR_SLOT_ID_INVALID when no reader has that
 *   name (tk_slotmgr_find), else [slot...], one per reader with a card (or
 *   the one named), each [slot id, reader, CK_RV of its token, and when
 *   that is CKR_OK: driver, label, serial, PIN tries + 1 (0: unknown), PIN
 *   blocked, PUK tries + 1, PUK blocked, [object...]], an object being
 *   [handle, class, id, label, key type, key bits, identity, usage,
 *   always authenticate, certificate DER or null] (tokenkit/token.h's
 *   values; text as byte strings).
 * BP_READERS, after a hello, is the broker's readers as `tokenkit readers`
 * and `tokenkit diag` show them (tokenkit/slot.h's tk_slot_diag_t, without
 * its history):
 *   [reader name or null] -> CKR_SLOT_ID_INVALID as BP_TOKENS, else
 *   [reader...], one per reader that is there (or the one named), each
 *   [slot id, name, state, card sequence, ATR, protocol + 1 (0: none), busy
 *   ms, backend, exchange, slots of the reader, PIN pad, generation,
 *   rebinds, stuck, transmits, errors, timeouts, communication errors,
 *   removed, reset, no service, other errors, connects, failed connects,
 *   abandoned workers, retried ok, recoveries, failed recoveries, [how
 *   often each recovery step worked, TK_STEP_NONE first], the last error
 *   negated (a tk_err), latency samples, p50, p90, p99, max (us)].
 * BP_CARD_OPEN, after a hello, opens the card in a reader for the tokenkit
 * tool's own commands (tools/tokenkitd/cards.c; one per connection, ended
 * with it):
 *   [reader name] -> CKR_SLOT_ID_INVALID as BP_TOKENS, else [error, and
 *   when that is 0: slot id, reader, ATR, protocol + 1 (0: none), extended
 *   APDUs, largest command, largest response, PIN pad verifies, PIN pad
 *   changes]
 * and BP_CARD_IO works on it:
 *   [operation (enum bp_card_op), command (BP_CARD_TRANSMIT; the template
 *   of BP_CARD_PINPAD) or null, response capacity, timeout ms, and for
 *   BP_CARD_PINPAD [verify 0 / change 1, seconds for the user, format,
 *   block, length format, min, max, old PIN's offset, new PIN's offset,
 *   confirm] (tk_card_pinpad_t)] -> [error, response or null]
 * where an error is a tk_err negated (0: success).
 * BP_READER_RESET, after a hello, is `tokenkit reset`: a forced recovery of
 * one reader (tk_slotmgr_reset):
 *   [reader name, cold] -> CKR_SLOT_ID_INVALID as BP_TOKENS, else
 *   [its outcome (an error), the record's id, time (ms since the epoch),
 *   fault (an error), what, [[step, result (an error), us]...], steps,
 *   cured by, outcome (an error), us, quarantine probes].
 *
 * Arguments and results are unsigned integers, byte strings, null and
 * nested arrays only; what a function sends is in its client stub
 * (remote.c) and its handler (tools/tokenkitd/serve.c), which use the
 * reader and writer below. A message that does not parse, is over the size
 * limit, of another version or names an unknown function closes its
 * connection (with a logged reason) and touches nothing else. */
#ifndef TK_P11_BPROTO_H
#define TK_P11_BPROTO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cbor.h>

#include "rv.h"

#define BP_VERSION 1
#define BP_MAX_MSG (1024u * 1024u)
#define BP_ID_LEN 16
/* What one argument may carry: a PIN, a certificate, data to sign. */
#define BP_MAX_BYTES (256u * 1024u)
#define BP_MAX_ITEMS 1024 /* attributes in a template, handles in a list */

/* A client with BP_FEAT_STILL takes "still working" answers to a call that
 * waits on a person (a consent prompt): [BP_VERSION, call id, BP_RV_STILL,
 * []], at least every BP_STILL_MS until the real answer. Each gives the call
 * the client's own timeout again, up to BP_STILL_MAX_MS from its start: a
 * broker that stops answering is still given up on at the deadline. */
#define BP_FEAT_STILL 1u
/* A client with BP_FEAT_SHM takes a shared-memory area for the connection
 * (bring.h): the hello's answer then carries the rings' capacity after the
 * broker's pid, and the area's memfd with its first byte; 0 or nothing:
 * none, the socket carries the messages. */
#define BP_FEAT_SHM 2u
#define BP_RV_STILL ((uint64_t)1 << 32) /* (no CK_RV) */
#define BP_STILL_MS 1000
#define BP_STILL_MAX_MS (5 * 60 * 1000)

enum bp_fn {
#define BP_ENUM(name, params, args) BP_##name,
	P11_RV_FUNCTIONS(BP_ENUM)
#undef BP_ENUM
	        BP_FN_COUNT,
	BP_HELLO = 1000,
	BP_TOKENS = 1001,
	BP_READERS = 1002,
	BP_CARD_OPEN = 1003,
	BP_CARD_IO = 1004,
	BP_READER_RESET = 1005,
};

/* BP_CARD_IO's operations. */
enum bp_card_op {
	BP_CARD_TRANSMIT = 1,
	BP_CARD_BEGIN,
	BP_CARD_END,
	BP_CARD_RESET_WARM,
	BP_CARD_RESET_COLD,
	BP_CARD_STATUS,
	BP_CARD_PINPAD,
};

/* Whether a request of fn names a session first (every function but
 * BP_HELLO, BP_TOKENS, BP_READERS, BP_CARD_*, BP_READER_RESET and the
 * slot-level ones). */
bool bp_fn_has_session(uint32_t fn);

/* --- writing ------------------------------------------------------------ */

struct bp_w {
	uint8_t *buf; /* the items, encoded */
	size_t len, cap;
	size_t n; /* items written */
	bool ok;  /* false after any failure (memory, BP_MAX_MSG) */
};

void bp_w_init(struct bp_w *w);
void bp_w_free(struct bp_w *w);
void bp_put_u(struct bp_w *w, uint64_t v);
void bp_put_b(struct bp_w *w, const void *p, size_t n); /* NULL p with n 0: empty */
void bp_put_null(struct bp_w *w);
void bp_put_sub(struct bp_w *w, struct bp_w *sub); /* sub is moved in */

/* The whole message (request: head = function; response: head = CK_RV),
 * framed, in a new buffer (free()). body is consumed. false on failure. */
bool bp_encode_request(uint32_t fn, uint64_t call_id, struct bp_w *body, uint8_t **out,
                       size_t *len);
bool bp_encode_response(uint64_t call_id, uint64_t rv, struct bp_w *body, uint8_t **out,
                        size_t *len);

/* --- reading ------------------------------------------------------------ */

struct bp_r {
	const uint8_t *p; /* the message (borrowed) */
	size_t pos, end;  /* the next item; where the array's items end */
	size_t i, n;      /* items taken; items in the array */
	bool ok;          /* false after the first item of the wrong kind or a missing one */
};

uint64_t bp_get_u(struct bp_r *r);
/* A byte string (NULL for null when nullable; *len 0) — pointing into the
 * message's bytes. */
uint8_t *bp_get_b(struct bp_r *r, size_t *len, bool nullable, bool *is_null);
bool bp_get_null(struct bp_r *r); /* true and consumed when the next item is null */
struct bp_r bp_get_sub(struct bp_r *r);
/* All items consumed and none of the wrong kind. */
bool bp_r_done(const struct bp_r *r);

struct bp_msg {
	uint32_t head; /* request: function; response: CK_RV (low 32 bits of) */
	uint64_t rv;   /* response */
	uint64_t id;
	struct bp_r body;
	/* the bytes, when the message was given them (bp_msg_free wipes and
	 * frees them); else the caller keeps them until bp_msg_free */
	uint8_t *own;
	size_t own_len;
};

/* Parse one message's payload (without its length prefix). request:
 * [version, function, id, body]; else [version, id, rv, body]. The body's
 * readers point into p: it must live (unchanged) until bp_msg_free. Errors:
 * NULL reason is success; else a static string for the log. */
const char *bp_decode(const uint8_t *p, size_t len, bool request, struct bp_msg *m);
void bp_msg_free(struct bp_msg *m);

/* --- PKCS#11 values ------------------------------------------------------ */

/* A mechanism goes as [type, kind, parameters...]: its parameters as values,
 * never as the application's pointers (remote.c writes them). */
enum bp_mech_kind { BP_MP_NONE, BP_MP_RAW, BP_MP_PSS, BP_MP_OAEP, BP_MP_ECDH, BP_MP_EDDSA };

/* Room for the parameters bp_get_mech decodes (pointing into the message). */
union bp_mparam {
	CK_RSA_PKCS_PSS_PARAMS pss;
	CK_RSA_PKCS_OAEP_PARAMS oaep;
	CK_ECDH1_DERIVE_PARAMS ecdh;
	CK_EDDSA_PARAMS eddsa;
	uint8_t raw[256];
};

/* The broker's readers of a mechanism and of a template of values
 * ([type, bytes]...; the values point into the message; *out is calloc'ed,
 * free() it). false: not one. */
bool bp_get_mech(struct bp_r *r, CK_MECHANISM *m, union bp_mparam *p);
bool bp_get_template(struct bp_r *r, CK_ATTRIBUTE **out, CK_ULONG *count);

/* --- the wire ----------------------------------------------------------- */

/* Write all of buf before deadline (ms, monotonic; <0: none). 0, or -1
 * (errno: ETIMEDOUT, EPIPE, ...). */
int bp_write_all(int fd, const uint8_t *buf, size_t len, int64_t deadline);
/* bp_write_all, with the descriptor pass going with the first byte
 * (SCM_RIGHTS). */
int bp_write_fd(int fd, const uint8_t *buf, size_t len, int pass, int64_t deadline);
/* What was read from a connection beyond the message taken: a client may
 * send its next request before it reads the answer to the last (a
 * pipelined C_*Init, remote.c), so one recv can bring more than one
 * message. One per connection, zeroed to start; bp_rbuf_wipe when done
 * (it may hold a PIN). */
struct bp_rbuf {
	size_t off, len;
	/* > 0: fd blocks, with SO_RCVTIMEO of this many ms (the module's
	 * connections): a read that has at least that long before its
	 * deadline waits in recv alone, one system call instead of poll and
	 * recv; nearer the deadline, poll keeps to it exactly */
	int block_ms;
	/* > 0: before a read first waits, it tries again without waiting
	 * for up to this many microseconds. An answer that comes within
	 * that time is read on a CPU that never went idle: on a virtual
	 * machine an idle vCPU's wake-up costs tens of microseconds, more
	 * than a software token's signature (see the README's broker
	 * figures). */
	int spin_us;
	/* non-NULL: the connection's bytes go through this shared memory,
	 * the socket carries doorbells (bring.h); freed by bp_rbuf_wipe */
	struct bp_ring *ring;
	/* true: a file descriptor passed with the bytes read is kept in
	 * passed_fd (else the kernel closes it); set passed_fd to -1 too */
	bool take_fd;
	int passed_fd;
	uint8_t b[4096];
};
void bp_rbuf_wipe(struct bp_rbuf *rb);
/* The spin_us both ends use: BP_SPIN_US, or TOKENKIT_BROKER_SPIN_US
 * (0 to BP_SPIN_MAX_US; 0 turns spinning off). */
#define BP_SPIN_US 50
#define BP_SPIN_MAX_US 1000
int bp_spin_us(void);
/* Whether a connection's messages may go through shared memory (bring.h):
 * yes unless TOKENKIT_BROKER_SHM is off or 0, on the end that asks
 * (the module) and the one that offers (the broker). */
bool bp_shm_wanted(void);
/* Whether a whole message is there already, read with the last one. */
bool bp_rbuf_ready(const struct bp_rbuf *rb);
/* Read one framed payload (malloc'd) before deadline (<0: none, and fd
 * blocks). 0; -1 with errno (ETIMEDOUT, ECONNRESET for a close, EMSGSIZE
 * for an oversize length). */
int bp_read_msg(int fd, struct bp_rbuf *rb, uint8_t **out, size_t *len, int64_t deadline);
/* Write buf on the connection: through rb's ring when it has one, else
 * bp_write_all on fd. */
int bp_send(int fd, struct bp_rbuf *rb, const uint8_t *buf, size_t len, int64_t deadline);

#endif
