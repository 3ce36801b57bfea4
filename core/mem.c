/* tokenkit: wiping secrets. */
#include <stdlib.h>
#include <string.h>

#include <tokenkit/mem.h>

void
tk_wipe(void *p, size_t n)
{
	if (p != NULL && n > 0)
		explicit_bzero(p, n);
}

void
tk_freezero(void *p, size_t n)
{
	if (p == NULL)
		return;
	tk_wipe(p, n);
	free(p);
}

bool
tk_memeq_ct(const void *a, const void *b, size_t n)
{
	const volatile uint8_t *x = a, *y = b;
	uint8_t d = 0;

	for (size_t i = 0; i < n; i++)
		d |= x[i] ^ y[i];
	return d == 0;
}
