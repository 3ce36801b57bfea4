/* tokenkit: hexadecimal text. */
#include <tokenkit/err.h>
#include <tokenkit/hex.h>

static int
nibble(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

int
tk_hex_decode(const char *text, uint8_t *out, size_t cap, size_t *out_len)
{
	size_t n = 0;
	int hi = -1;

	*out_len = 0;
	for (const char *s = text; *s != '\0'; s++) {
		int v;

		if (*s == ' ' || *s == '\t' || *s == ':' || *s == '\n' || *s == '\r') {
			if (hi >= 0)
				return TK_ERR_MALFORMED; /* separator inside a byte */
			continue;
		}
		if ((v = nibble(*s)) < 0)
			return TK_ERR_MALFORMED;
		if (hi < 0) {
			hi = v;
			continue;
		}
		if (n >= cap)
			return TK_ERR_BUFFER_TOO_SMALL;
		out[n++] = (uint8_t)(hi << 4 | v);
		hi = -1;
	}
	if (hi >= 0)
		return TK_ERR_MALFORMED;
	*out_len = n;
	return TK_OK;
}

char *
tk_hex_encode(const uint8_t *p, size_t len, char sep, char *out)
{
	static const char digits[] = "0123456789ABCDEF";
	size_t o = 0;

	for (size_t i = 0; i < len; i++) {
		if (i > 0 && sep != 0)
			out[o++] = sep;
		out[o++] = digits[p[i] >> 4];
		out[o++] = digits[p[i] & 15];
	}
	out[o] = '\0';
	return out;
}
