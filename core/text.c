/* tokenkit: escaping text that someone else chose (see text.h). */
#include <string.h>

#include <tokenkit/text.h>

struct out {
	char *p;
	size_t cap, len; /* len: what the whole text needs */
	bool full;       /* a piece did not fit: nothing more is written */
};

/* Append an escape or character as one piece: all of it or nothing, so a
 * cut-short output never ends in half an escape. */
static void
put(struct out *o, const char *s, size_t n)
{
	if (!o->full && o->len + n < o->cap) {
		memcpy(o->p + o->len, s, n);
		o->p[o->len + n] = '\0';
	} else {
		o->full = true;
	}
	o->len += n;
}

/* prefix ("\\x", "\\u") and v in digits upper- or lower-case hex digits */
static void
put_hex(struct out *o, const char *prefix, unsigned v, int digits, bool lower)
{
	const char *hexd = lower ? "0123456789abcdef" : "0123456789ABCDEF";
	char buf[8];
	size_t pl = strlen(prefix);

	memcpy(buf, prefix, pl);
	for (int i = 0; i < digits; i++)
		buf[pl + (size_t)i] = hexd[(v >> (4 * (digits - 1 - i))) & 15];
	put(o, buf, pl + (size_t)digits);
}

/* One UTF-8 sequence at p (n bytes left): its length and code point, or 0
 * when it is not valid (overlong, surrogate, above U+10FFFF, cut short). */
static size_t
utf8_seq(const unsigned char *p, size_t n, unsigned *cp)
{
	unsigned c = p[0], lo = 0x80, hi = 0xBF;
	size_t want;

	if (c < 0x80) {
		*cp = c;
		return 1;
	}
	if (c >= 0xC2 && c <= 0xDF) {
		want = 2;
		*cp = c & 0x1F;
	} else if (c >= 0xE0 && c <= 0xEF) {
		want = 3;
		*cp = c & 0x0F;
		if (c == 0xE0)
			lo = 0xA0; /* overlong */
		else if (c == 0xED)
			hi = 0x9F; /* UTF-16 surrogates */
	} else if (c >= 0xF0 && c <= 0xF4) {
		want = 4;
		*cp = c & 0x07;
		if (c == 0xF0)
			lo = 0x90; /* overlong */
		else if (c == 0xF4)
			hi = 0x8F; /* above U+10FFFF */
	} else {
		return 0;
	}
	if (n < want || p[1] < lo || p[1] > hi)
		return 0;
	for (size_t i = 1; i < want; i++) {
		if ((p[i] & 0xC0) != 0x80)
			return 0;
		*cp = *cp << 6 | (p[i] & 0x3F);
	}
	return want;
}

/* Code points that are valid but act on the display instead of showing. */
static bool
hidden_control(unsigned cp)
{
	return (cp >= 0x80 && cp <= 0x9F) || cp == 0x061C || cp == 0x200E || cp == 0x200F ||
	       cp == 0x2028 || cp == 0x2029 || (cp >= 0x202A && cp <= 0x202E) ||
	       (cp >= 0x2066 && cp <= 0x2069);
}

static void
escape_ascii(struct out *o, unsigned char c, int mode)
{
	static const struct {
		unsigned char c;
		const char *plain, *json;
	} shorts[] = {
	        {'\\', "\\\\", "\\\\"}, {'\n', "\\n", "\\n"}, {'\r', "\\r", "\\r"},
	        {'\t', "\\t", "\\t"},   {'"', NULL, "\\\""},  {'\b', NULL, "\\b"},
	        {'\f', NULL, "\\f"},
	};

	for (size_t i = 0; i < sizeof(shorts) / sizeof(shorts[0]); i++) {
		const char *e = mode == TK_TEXT_JSON ? shorts[i].json : shorts[i].plain;

		if (shorts[i].c == c && e != NULL) {
			put(o, e, strlen(e));
			return;
		}
	}
	if (c < 0x20 || c == 0x7F)
		put_hex(o, mode == TK_TEXT_JSON ? "\\u" : "\\x", c, mode == TK_TEXT_JSON ? 4 : 2,
		        mode == TK_TEXT_JSON);
	else
		put(o, (const char *)&c, 1);
}

size_t
tk_text_escape(const char *s, size_t len, int mode, char *out, size_t cap)
{
	const unsigned char *p = (const unsigned char *)s;
	struct out o = {out, cap, 0, out == NULL || cap == 0};
	size_t i = 0;

	if (!o.full)
		out[0] = '\0';
	if (s == NULL)
		return 0;
	while (i < len) {
		unsigned cp = 0;
		size_t n = utf8_seq(p + i, len - i, &cp);

		if (n == 0) {
			if (mode == TK_TEXT_JSON)
				put(&o, "\\ufffd", 6);
			else
				put_hex(&o, "\\x", p[i], 2, false);
			i++;
		} else if (n == 1) {
			escape_ascii(&o, p[i], mode);
			i++;
		} else {
			if (hidden_control(cp))
				put_hex(&o, "\\u", cp, 4, mode == TK_TEXT_JSON);
			else
				put(&o, (const char *)p + i, n);
			i += n;
		}
	}
	return o.len;
}
