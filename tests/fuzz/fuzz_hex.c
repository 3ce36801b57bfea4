/* Fuzz target: hexadecimal text (core/hex.c). Decoded bytes are encoded and
 * decoded again and must come back the same. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <tokenkit/err.h>
#include <tokenkit/hex.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *text, *enc;
	uint8_t *out, *back;
	size_t cap, n = 0, m = 0;
	int r;

	if (size < 1 || size > 8192)
		return 0;
	/* First byte: output capacity as a fraction of what could be needed. */
	cap = (size_t)data[0] * size / 255 / 2 + 1;
	text = malloc(size);
	out = malloc(cap);
	enc = malloc(3 * cap + 1);
	back = malloc(cap);
	if (text == NULL || out == NULL || enc == NULL || back == NULL)
		goto out;
	memcpy(text, data + 1, size - 1);
	text[size - 1] = '\0';
	r = tk_hex_decode(text, out, cap, &n);
	if (r != TK_OK) {
		if (n != 0 || (r != TK_ERR_MALFORMED && r != TK_ERR_BUFFER_TOO_SMALL))
			abort();
		goto out;
	}
	if (n > cap)
		abort();
	tk_hex_encode(out, n, (char)(data[0] & 1 ? ' ' : 0), enc);
	if (strlen(enc) != (n == 0 ? 0 : (data[0] & 1 ? 3 * n - 1 : 2 * n)))
		abort();
	if (tk_hex_decode(enc, back, cap, &m) != TK_OK || m != n ||
	    (n > 0 && memcmp(out, back, n) != 0))
		abort();
out:
	free(text);
	free(out);
	free(enc);
	free(back);
	return 0;
}
