/* tokenkit: showing text that someone else chose.
 *
 * Reader names (a USB product string), card labels and serials, X.509
 * names, the program and reader names in the recovery log: printed as they
 * are, they could move the cursor, recolour or rewrite a terminal (ANSI
 * escape sequences, C1 controls such as U+009B), forge extra lines in a
 * log, reorder what is shown (Unicode bidirectional overrides), or make
 * JSON output invalid (raw control characters, invalid UTF-8).
 * tk_text_escape() is the one place that turns such bytes into text that
 * shows what they are and does nothing else. */
#ifndef TOKENKIT_TEXT_H
#define TOKENKIT_TEXT_H

#include <tokenkit/common.h>

enum tk_text_mode {
	/* For a terminal or a log line: '\\' becomes "\\\\"; \n, \r and \t
	 * become "\\n", "\\r", "\\t"; other C0 controls, DEL and each byte
	 * that is not part of valid UTF-8 become "\\xNN"; C1 controls
	 * (U+0080..U+009F), line and paragraph separators (U+2028, U+2029)
	 * and bidirectional controls (U+061C, U+200E, U+200F,
	 * U+202A..U+202E, U+2066..U+2069) become "\\uNNNN". Other valid
	 * UTF-8 passes through. */
	TK_TEXT_PLAIN = 0,
	/* The inside of a JSON string (RFC 8259): '"' and '\\' escaped, the
	 * short forms \b \f \n \r \t, other controls and the code points
	 * above as \uNNNN, and each byte that is not part of valid UTF-8 as
	 * \ufffd (JSON text is UTF-8; the byte itself cannot be kept). */
	TK_TEXT_JSON = 1,
};

/* Escape len bytes at s (NUL bytes included) for mode into out, cap bytes,
 * always NUL-terminated when cap > 0; an escape is never cut in half.
 * Returns the length the whole escaped text needs, without the NUL (like
 * snprintf): the output is complete when that is less than cap. */
TK_EXPORT size_t tk_text_escape(const char *s, size_t len, int mode, char *out, size_t cap);

#endif
