/* tokenkit: tokens, private part (for the broker). */
#ifndef TK_TOKEN_PRIV_H
#define TK_TOKEN_PRIV_H

#include <tokenkit/token.h>

/* Hold the token's card I/O: until tk_token_io_release (from the same
 * thread), no other thread of this process talks to the token's card
 * through the token (operations, revalidations, opens of its objects wait).
 * The broker's raw card sessions (tools/tokenkitd/cards.c) hold it across
 * the APDUs of a transaction another program sends. Order: after the
 * broker's card queue, before anything of the token's own. */
void tk_token_io_hold(tk_token_t *t);
void tk_token_io_release(tk_token_t *t);

#endif
