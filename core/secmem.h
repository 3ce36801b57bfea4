/* tokenkit: memory for secrets that outlive one call (private).
 *
 * A PIN kept for an operation or a login lives here rather than on the
 * heap: each allocation is its own anonymous mapping, locked in RAM (mlock:
 * never written to swap), left out of core dumps (MADV_DONTDUMP) and zero in
 * a fork child (MADV_WIPEONFORK, so a child that forgets the parent's state
 * without freeing it holds no copy). Locking is best effort: where
 * RLIMIT_MEMLOCK refuses it the memory is still kept out of dumps and wiped
 * on free (logged once). tk_secmem_free wipes the whole mapping first.
 * Meant for a few small secrets at a time (one page each), not for bulk
 * data. */
#ifndef TK_SECMEM_H
#define TK_SECMEM_H

#include <stddef.h>

/* len bytes (> 0, up to 64 KiB), zeroed. Errors: TK_ERR_INVALID_ARG,
 * TK_ERR_NO_MEMORY. */
int tk_secmem_alloc(size_t len, void **out);
/* A copy of len bytes of src in secret memory (as tk_secmem_alloc). */
int tk_secmem_dup(const void *src, size_t len, void **out);
/* Wipe, unlock and unmap what tk_secmem_alloc returned; *pp becomes NULL.
 * Accepts NULL and *pp == NULL. */
void tk_secmem_free(void **pp);

#endif
