/* tokenkit: finding and calling tokenkitd, for its two clients: the module
 * in broker mode (remote.c) and the tokenkit tool (its token listing).
 *
 * Which broker: the user's ($TOKENKIT_BROKER_SOCKET, else
 * $XDG_RUNTIME_DIR/tokenkit/broker.sock, else
 * /run/user/<uid>/tokenkit/broker.sock), else, unless
 * $TOKENKIT_BROKER_SOCKET names one, the system instance's
 * ($TOKENKIT_BROKER_SYSTEM_SOCKET, else BP_SYSTEM_SOCKET). Only a broker of
 * the caller's uid or root's is used (SO_PEERCRED). */
#ifndef TK_P11_BCLIENT_H
#define TK_P11_BCLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "bproto.h"

/* Longest wait for one call to the broker ($TOKENKIT_BROKER_TIMEOUT_MS
 * within the bounds: tk_p11_broker_timeout_ms): the caller gets an error
 * after it, whatever the card, the reader or the broker does. */
#define P11R_TIMEOUT_MS 15000
#define P11R_TIMEOUT_MIN_MS 100
#define P11R_TIMEOUT_MAX_MS 600000
int tk_p11_broker_timeout_ms(void);
/* How long a connect() to the broker's socket may take. */
#define BP_CONNECT_MS 2000
#define BP_SYSTEM_SOCKET "/run/tokenkit/broker.sock"

/* The user's and the system instance's socket paths. -1: too long. */
int tk_p11_broker_path(char *buf, size_t cap);
int tk_p11_broker_system_path(char *buf, size_t cap);
/* A connection (non-blocking, close-on-exec) to the broker at path, or -1. */
int tk_p11_broker_connect(const char *path);
/* Connect to the user's broker, else the system's: a connection or -1;
 * chosen: the path that answered (the user's when neither did; "" when
 * even that is too long). */
int tk_p11_broker_choose(char *chosen, size_t cap);
/* The mode $TOKENKIT_BROKER asks for: -1 "off" (or "0"), 1 "on" (or "1"),
 * 0 unset or "auto" (a broker when one answers). */
int tk_p11_broker_wanted(void);

/* One request and its answer before deadline (ms, monotonic): args is
 * consumed; on success *m is the answer (its bytes *in: free both with
 * bp_msg_free and free). 0, or -1 (errno; the connection is then of no
 * further use). Answers "still working" (BP_RV_STILL) are passed over, each
 * giving the call the broker timeout again (up to BP_STILL_MAX_MS from its
 * start). */
int bp_call_sync(int fd, struct bp_rbuf *rb, uint32_t fn, uint64_t id, struct bp_w *args,
                 int64_t deadline, struct bp_msg *m, uint8_t **in);

#endif
