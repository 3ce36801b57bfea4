/* tokenkit: memory for secrets that outlive one call. */
#include <stdatomic.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <tokenkit/err.h>
#include <tokenkit/log.h>
#include <tokenkit/mem.h>

#include "secmem.h"

/* The mapping's size sits in front of the caller's bytes (and is wiped with
 * them), so that free needs no length that could disagree with alloc's. */
#define SECMEM_HDR 16
#define SECMEM_MAX (64 * 1024)

static atomic_bool lock_warned;

int
tk_secmem_alloc(size_t len, void **out)
{
	long pg = sysconf(_SC_PAGESIZE);
	size_t page = pg > 0 ? (size_t)pg : 4096, total;
	uint8_t *m;

	if (out != NULL)
		*out = NULL;
	if (out == NULL || len == 0 || len > SECMEM_MAX)
		return TK_ERR_INVALID_ARG;
	total = (len + SECMEM_HDR + page - 1) / page * page;
	m = mmap(NULL, total, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (m == MAP_FAILED)
		return TK_ERR_NO_MEMORY;
#ifdef MADV_DONTDUMP
	(void)madvise(m, total, MADV_DONTDUMP);
#endif
#ifdef MADV_WIPEONFORK
	(void)madvise(m, total, MADV_WIPEONFORK);
#endif
	if (mlock(m, total) != 0 && !atomic_exchange(&lock_warned, true))
		tk_log_info("secmem: cannot lock secret memory in RAM (RLIMIT_MEMLOCK?); it is "
		            "still kept out of core dumps and wiped after use");
	memcpy(m, &total, sizeof(total));
	*out = m + SECMEM_HDR;
	return TK_OK;
}

int
tk_secmem_dup(const void *src, size_t len, void **out)
{
	int r;

	if (out != NULL)
		*out = NULL;
	if (src == NULL)
		return TK_ERR_INVALID_ARG;
	r = tk_secmem_alloc(len, out);
	if (r == TK_OK)
		memcpy(*out, src, len);
	return r;
}

void
tk_secmem_free(void **pp)
{
	uint8_t *m;
	size_t total;

	if (pp == NULL || *pp == NULL)
		return;
	m = (uint8_t *)*pp - SECMEM_HDR;
	*pp = NULL;
	memcpy(&total, m, sizeof(total));
	tk_wipe(m, total);
	(void)munlock(m, total);
	(void)munmap(m, total);
}
