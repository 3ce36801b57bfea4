/* tokenkit: the one place secrets are wiped. */
#ifndef TOKENKIT_MEM_H
#define TOKENKIT_MEM_H

#include <tokenkit/common.h>

/* Overwrite n bytes at p with zeros in a way the compiler cannot elide. */
TK_EXPORT void tk_wipe(void *p, size_t n);
/* tk_wipe(p, n), then free(p). Accepts NULL. */
TK_EXPORT void tk_freezero(void *p, size_t n);
/* Constant-time comparison; returns true when equal. */
TK_EXPORT bool tk_memeq_ct(const void *a, const void *b, size_t n);

#endif
