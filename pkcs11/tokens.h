/* The module's own interface (tokenkit/p11ext.h): its table, listed by
 * C_GetInterfaceList, and the parser of the broker's answer on its own for
 * the unit test and the fuzz target. */
#ifndef TK_P11_TOKENS_H
#define TK_P11_TOKENS_H

#include <stddef.h>
#include <stdint.h>

#include <tokenkit/p11ext.h>

extern tk_p11ext_t tk_p11_ext, tk_p11_ext_1_1, tk_p11_ext_1_0;

/* A BP_TOKENS answer (a message's payload, without its length):
 * TK_P11EXT_* as tk_p11ext_t.tokens. */
int tk_p11_tokens_parse(const uint8_t *p, size_t len, tk_p11ext_token_t **out, size_t *count);
/* A BP_READERS answer: TK_P11EXT_OK (*out: free() it, *count),
 * TK_P11EXT_NO_READER or TK_P11EXT_BROKER_FAILED. */
int tk_p11_readers_parse(const uint8_t *p, size_t len, tk_slot_diag_t **out, size_t *count);

/* A BP_CARD_OPEN answer: TK_P11EXT_OK (*info; info->err TK_OK: the card
 * is open), TK_P11EXT_NO_READER, TK_P11EXT_REFUSED (consent) or
 * TK_P11EXT_BROKER_FAILED. */
int tk_p11_card_open_parse(const uint8_t *p, size_t len, tk_p11ext_card_info_t *info);
/* A BP_CARD_IO answer: the card's tk_err, the card's answer into resp (at
 * most cap bytes, *resp_len), or TK_ERR_NO_SERVICE: it does not parse. */
int tk_p11_card_io_parse(const uint8_t *p, size_t len, uint8_t *resp, size_t cap, size_t *resp_len);

/* A BP_READER_RESET answer: TK_P11EXT_OK (*err the outcome, *rec the
 * broker's record), TK_P11EXT_NO_READER or TK_P11EXT_BROKER_FAILED. */
int tk_p11_reset_parse(const uint8_t *p, size_t len, int *err, tk_recovery_t *rec);

#endif
