/* tokenkit tokens / objects: what one reader's token shows, wherever it
 * came from (the tool's own open, or the broker: tokens_broker.c). */
#ifndef TK_TOOL_TOKENS_VIEW_H
#define TK_TOOL_TOKENS_VIEW_H

#include <stddef.h>
#include <stdint.h>

#include <tokenkit/token.h>

struct tokens_view {
	uint32_t slot_id;
	char reader[128];
	unsigned long rv; /* the broker's CK_RV for this reader's token (0: the token is here) */
	tk_token_info_t info;
	const tk_object_t *objs;
	size_t nobjs;
	tk_object_t *owned; /* objs, when this view owns them (the broker's) */
	uint8_t **ders;     /* ... and their certificates' DER (owned[i].der) */
};

enum {
	TOKENS_OK,
	TOKENS_NO_BROKER,     /* none answers, TOKENKIT_BROKER=off, or TOKENKIT_READERS names
	                       * the readers: open the readers here */
	TOKENS_BROKER_FAILED, /* one answered, then failed (logged) */
	TOKENS_NO_READER,     /* no reader of the name asked for */
};

/* The broker's view: every reader with a card, or only the one named
 * (want, as tk_slotmgr_find matches it). TOKENS_*. */
int tokens_from_broker(const char *want, struct tokens_view **out, size_t *count);
void tokens_views_free(struct tokens_view *v, size_t n);
/* The parser of the broker's answer (a message's payload, without its
 * length), on its own for the tests and the fuzz target. TOKENS_*. */
int tokens_parse_answer(const uint8_t *p, size_t len, struct tokens_view **out, size_t *count);
/* What a reader's rv (not 0) means, and the tool's exit code for it. */
const char *tokens_view_error(const struct tokens_view *v, int *exit_code);

#endif
