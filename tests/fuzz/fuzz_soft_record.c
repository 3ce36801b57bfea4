/* Fuzz the software token's record (drivers/soft/soft_rec.c): the state a
 * soft token keeps in its registration's configuration (PIN wraps and
 * counters, objects with their attributes and sealed parts). Decoding is
 * strict (one encoding): what decodes must encode back to the same bytes,
 * and decode again to the same state. The registry's frame and checksum
 * around it are fuzz_registry's. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <tokenkit/err.h>

#include "../../drivers/soft/soft_int.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static bool
same(const struct soft_state *a, const struct soft_state *b)
{
	if (a->max_tries != b->max_tries || memcmp(a->fails, b->fails, sizeof(a->fails)) != 0 ||
	    memcmp(a->wrap, b->wrap, sizeof(a->wrap)) != 0 || a->n != b->n)
		return false;
	for (size_t i = 0; i < a->n; i++) {
		const struct soft_obj *x = &a->objs[i], *y = &b->objs[i];

		if (memcmp(x->uid, y->uid, sizeof(x->uid)) != 0 ||
		    !tk_attrs_equal(&x->attrs, &y->attrs) || x->sealed_len != y->sealed_len ||
		    (x->sealed_len > 0 && memcmp(x->sealed, y->sealed, x->sealed_len) != 0))
			return false;
	}
	return true;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct soft_state st, st2;
	uint8_t *enc = NULL;
	size_t el = 0;

	if (tk_soft_state_decode(data, size, &st) != TK_OK)
		return 0;
	if (tk_soft_state_encode(&st, &enc, &el) != TK_OK || el != size ||
	    memcmp(enc, data, size) != 0)
		abort();
	if (tk_soft_state_decode(enc, el, &st2) != TK_OK || !same(&st, &st2))
		abort();
	tk_soft_state_clear(&st);
	tk_soft_state_clear(&st2);
	free(enc);
	return 0;
}
