/* tokenkit: what every CBOR codec of tokenkit shares (private).
 *
 * libcbor's cbor_load allocates what a definite array or map header
 * announces before it has seen the items: five bytes can ask for gigabytes.
 * Every decoder of data from outside (the broker protocol, registry
 * records, consent records) first asks tk_cbor_sane, which walks the item
 * headers (libcbor's streaming decoder, which allocates nothing) and
 * refuses any count or length that the bytes left could not hold. */
#ifndef TK_CBORUTIL_H
#define TK_CBORUTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cbor.h>

enum tk_cbor_check {
	TK_CBOR_SANE = 0,
	TK_CBOR_TRUNCATED, /* the bytes end inside an item, or a count or length
	                    * claims more than there is */
	TK_CBOR_INSANE,    /* not CBOR */
};
int tk_cbor_check(const uint8_t *p, size_t len);
static inline bool
tk_cbor_sane(const uint8_t *p, size_t len)
{
	return tk_cbor_check(p, len) == TK_CBOR_SANE;
}

/* One whole, checked item (tk_cbor_check, then cbor_load; nothing after
 * it): *out, or TK_ERR_TRUNCATED, TK_ERR_MALFORMED, TK_ERR_NO_MEMORY. */
int tk_cbor_load(const uint8_t *p, size_t len, cbor_item_t **out);

/* v in its shortest encoding (libcbor writes the width it is given); NULL
 * when out of memory. */
cbor_item_t *tk_cbor_uint(uint64_t v);

/* map[key] = val, taking val's reference (also on failure; NULL val is an
 * allocation that failed). false when out of memory. */
bool tk_cbor_map_put(cbor_item_t *map, const char *key, cbor_item_t *val);

/* The text of a definite text string, copied NUL-terminated into out of
 * cap bytes, its length in *len (when not NULL); false for anything else,
 * a longer one or one holding a NUL. */
bool tk_cbor_text(const cbor_item_t *it, char *out, size_t cap, size_t *len);

/* An unsigned integer no larger than max. */
bool tk_cbor_get_uint(const cbor_item_t *it, uint64_t max, uint64_t *v);

#endif
