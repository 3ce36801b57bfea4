/* tokenkit: hexadecimal text. */
#ifndef TOKENKIT_HEX_H
#define TOKENKIT_HEX_H

#include <tokenkit/common.h>

/* Decode hex text into out. Spaces, tabs, ':' and newlines between byte
 * pairs are ignored. Errors: TK_ERR_MALFORMED (odd digit count or a non-hex
 * character), TK_ERR_BUFFER_TOO_SMALL. */
TK_EXPORT int tk_hex_decode(const char *text, uint8_t *out, size_t cap, size_t *out_len);
/* Encode len bytes as upper-case hex with sep between bytes (0 for none).
 * out must have room for 3*len+1 chars. Returns out. */
TK_EXPORT char *tk_hex_encode(const uint8_t *p, size_t len, char sep, char *out);

#endif
