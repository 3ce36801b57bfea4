/* One command through a tk_card_t for test fixtures: chaining, 61xx and
 * extended length as the card layer does them. Returns the status word, 0
 * when the exchange itself failed; the response data go to resp (may be
 * NULL: then Le is absent and the data are dropped). */
#ifndef TK_TEST_CARD_APDU_H
#define TK_TEST_CARD_APDU_H

#include <tokenkit/apdu.h>
#include <tokenkit/card.h>
#include <tokenkit/err.h>

static __attribute__((unused)) uint16_t
tk_test_apdu(tk_card_t *card, uint8_t cla, uint8_t ins, uint8_t p1, uint8_t p2, const uint8_t *data,
             size_t lc, uint8_t *resp, size_t cap, size_t *rlen)
{
	tk_apdu_t a = {cla, ins, p1, p2, data, lc, resp != NULL ? 65536 : 0};
	uint8_t dummy[8];
	size_t n = 0;
	uint16_t sw = 0;

	if (resp == NULL) {
		resp = dummy;
		cap = sizeof(dummy);
	}
	if (tk_card_apdu(card, &a, resp, cap, &n, &sw) != TK_OK)
		return 0;
	if (rlen != NULL)
		*rlen = n;
	return sw;
}

#endif
