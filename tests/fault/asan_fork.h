/* Test programs that fork while other threads run (tests/fault
 * fork-check, tests/unit/test_p11.c): make the ASan runtime fork-safe.
 *
 * The ASan runtime of clang before 16 takes none of its own locks around
 * fork(): a thread allocating at that moment (the fault driver's B signer, a
 * module worker) leaves an allocator lock held for good in the child, whose
 * token threads then hang in malloc while holding the card's PC/SC
 * transaction, so the parent's reader B stalls until the child exits (seen:
 * fault row 12 failing about once in 40 runs). Hold the runtime's locks
 * across fork(), as newer runtimes do themselves. Registered before main,
 * hence before the module's handlers: its prepare handler takes its locks
 * first (a thread holding one may be allocating), ours last. Weak: absent
 * from other builds. Include once per program. */
#ifndef TK_TEST_ASAN_FORK_H
#define TK_TEST_ASAN_FORK_H

#include <pthread.h>

#if defined(__clang__) && defined(__has_feature)
#if __has_feature(address_sanitizer) && __clang_major__ < 16
#define TK_ASAN_FORK_LOCKS 1
#endif
#endif

#ifdef TK_ASAN_FORK_LOCKS
void san_lock_threads(void) __asm__("_ZN6__lsan18LockThreadRegistryEv") __attribute__((weak));
void san_unlock_threads(void) __asm__("_ZN6__lsan20UnlockThreadRegistryEv") __attribute__((weak));
void san_lock_alloc(void) __asm__("_ZN6__lsan13LockAllocatorEv") __attribute__((weak));
void san_unlock_alloc(void) __asm__("_ZN6__lsan15UnlockAllocatorEv") __attribute__((weak));
void san_lock_depot(void) __asm__("_ZN11__sanitizer17StackDepotLockAllEv") __attribute__((weak));
void san_unlock_depot(void) __asm__("_ZN11__sanitizer19StackDepotUnlockAllEv")
        __attribute__((weak));

static void
san_fork_prepare(void)
{
	san_lock_threads();
	san_lock_alloc();
	san_lock_depot();
}

static void
san_fork_after(void)
{
	san_unlock_depot();
	san_unlock_alloc();
	san_unlock_threads();
}

__attribute__((constructor)) static void
san_fork_register(void)
{
	if (san_lock_threads && san_unlock_threads && san_lock_alloc && san_unlock_alloc &&
	    san_lock_depot && san_unlock_depot)
		pthread_atfork(san_fork_prepare, san_fork_after, san_fork_after);
}
#endif

#endif
