/* Fuzz target: tk_text_escape (core/text.c). Whatever the bytes, the output
 * is valid UTF-8 with no control character, no C1 control and no
 * bidirectional control (both modes), a valid JSON string body (JSON mode),
 * as long as the function says, and a cut-short output is a prefix of the
 * whole one. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <tokenkit/text.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* One UTF-8 sequence: its length and code point, 0 when invalid. */
static size_t
seq(const unsigned char *p, size_t n, unsigned *cp)
{
	size_t want = p[0] < 0x80   ? 1
	              : p[0] < 0xC2 ? 0
	              : p[0] < 0xE0 ? 2
	              : p[0] < 0xF0 ? 3
	              : p[0] < 0xF5 ? 4
	                            : 0;

	if (want == 0 || n < want)
		return 0;
	*cp = want == 1 ? p[0] : p[0] & (0x7F >> want);
	for (size_t i = 1; i < want; i++) {
		if ((p[i] & 0xC0) != 0x80)
			return 0;
		*cp = *cp << 6 | (p[i] & 0x3F);
	}
	if ((want == 3 && (*cp < 0x800 || (*cp >= 0xD800 && *cp <= 0xDFFF))) ||
	    (want == 4 && (*cp < 0x10000 || *cp > 0x10FFFF)))
		return 0;
	return want;
}

static void
check(const char *out, size_t len, int json)
{
	const unsigned char *p = (const unsigned char *)out;

	if (strlen(out) != len)
		abort();
	for (size_t i = 0; i < len;) {
		unsigned cp = 0;
		size_t n = seq(p + i, len - i, &cp);

		if (n == 0 || cp < 0x20 || cp == 0x7F || (cp >= 0x80 && cp <= 0x9F) ||
		    cp == 0x202E || cp == 0x2028)
			abort();
		if (json && cp == '"')
			abort(); /* unescaped quote ends the string */
		if (json && cp == '\\') {
			const char *e = out + i + 1;

			if (i + 1 >= len)
				abort();
			if (strchr("\"\\/bfnrt", *e) != NULL && *e != '\0') {
				i += 2;
				continue;
			}
			if (*e != 'u' || i + 6 > len)
				abort();
			for (int k = 1; k <= 4; k++)
				if (strchr("0123456789abcdefABCDEF", e[k]) == NULL || e[k] == '\0')
					abort();
			i += 6;
			continue;
		}
		i += n;
	}
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	size_t need, cut, n;
	char *full, *part;
	int mode;

	if (size < 1 || size > 4096)
		return 0;
	mode = data[0] & 1 ? TK_TEXT_JSON : TK_TEXT_PLAIN;
	need = tk_text_escape((const char *)data + 1, size - 1, mode, NULL, 0);
	if ((full = malloc(need + 1)) == NULL)
		return 0;
	if (tk_text_escape((const char *)data + 1, size - 1, mode, full, need + 1) != need)
		abort();
	check(full, need, mode == TK_TEXT_JSON);
	/* first byte's upper bits: a smaller buffer */
	cut = (size_t)(data[0] >> 1) * (need + 1) / 128;
	if ((part = malloc(cut + 1)) != NULL) {
		n = tk_text_escape((const char *)data + 1, size - 1, mode, part, cut);
		if (n != need || (cut > 0 && strncmp(full, part, strlen(part)) != 0) ||
		    (cut > 0 && strlen(part) >= cut))
			abort();
		free(part);
	}
	free(full);
	return 0;
}
