/* tokenkit: card sessions, private part.
 *
 * A tk_card_t is a thin, reference-counted front over a "card backend": the
 * slot manager's per-reader worker for real readers, or a plain transmit
 * function for tests and in-process virtual cards (tk_card_new_direct). The
 * front does the APDU logging, the generation counter and the APDU exchange
 * logic; the backend only moves bytes and enforces deadlines. */
#ifndef TK_CARD_PRIV_H
#define TK_CARD_PRIV_H

#include <tokenkit/card.h>

/* What a card session needs from whoever owns the connection (the public
 * tk_card_io_t, card.h, is the part of it a caller outside the tree gets:
 * that one stays as it is, this one grows with the tree). Every call
 * gets the caller's deadline (milliseconds, > 0) and must return by then
 * (+100 ms). Any member but transmit may be NULL (TK_ERR_NOT_SUPPORTED /
 * "present" / generation 0). */
typedef struct tk_card_backend {
	int (*transmit)(void *ctx, const uint8_t *cmd, size_t cmd_len, uint8_t *resp,
	                size_t resp_cap, size_t *resp_len, int timeout_ms);
	int (*begin)(void *ctx, int timeout_ms);
	int (*end)(void *ctx, int timeout_ms);
	int (*reset)(void *ctx, bool cold, int timeout_ms);
	bool (*present)(void *ctx);
	/* Resets and reconnects seen by the backend (added to the card's own). */
	uint64_t (*generation)(void *ctx);
	/* The insertion the handle is bound to, and how often it was re-bound
	 * to a new connection after a service restart (NULL: 0). */
	uint64_t (*card_seq)(void *ctx);
	uint64_t (*rebinds)(void *ctx);
	/* Called once, when the last reference to the card goes. */
	void (*release)(void *ctx);
	/* PIN entry on the reader's pad (tk_card_pinpad); timeout_ms covers
	 * the user's typing. NULL: no pad. */
	int (*pinpad)(void *ctx, const tk_card_pinpad_t *req, uint8_t *resp, size_t resp_cap,
	              size_t *resp_len, int timeout_ms);
} tk_card_backend_t;

/* Build a card over a backend. atr_len <= 33. caps may be NULL (short APDUs,
 * 261/258). Errors: TK_ERR_INVALID_ARG, TK_ERR_NO_MEMORY. On failure the
 * backend's release is NOT called. */
int tk_card_new_backend(const char *reader_name, const uint8_t *atr, size_t atr_len,
                        const tk_card_caps_t *caps, const tk_card_backend_t *be, void *ctx,
                        int default_timeout_ms, tk_card_t **out);

/* A card over a plain transmit function: no worker, no deadline (fn is
 * called directly in the caller's thread), caps: extended allowed, max
 * 65544 / 65538. For tests and in-process virtual cards. ctx is borrowed.
 * Errors: TK_ERR_INVALID_ARG, TK_ERR_NO_MEMORY. */
int tk_card_new_direct(const char *reader_name, const uint8_t *atr, size_t atr_len,
                       tk_transmit_fn fn, void *ctx, tk_card_t **out);

/* Tests and the owner of a direct card: mark the card removed (further
 * calls fail with TK_ERR_CARD_REMOVED) or bump the generation as if the
 * card had been reset by someone else. */
void tk_card_set_removed(tk_card_t *c);
void tk_card_bump_generation(tk_card_t *c);

#endif
