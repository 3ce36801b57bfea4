/* tokenkit: lists of threads to join (private; the slot manager's reader
 * workers, the PKCS#11 module's token-open threads).
 *
 * The owner keeps an entry per thread it started, under its own lock. A
 * thread sets `done` (under that lock) as its last touch of the owner's
 * state; from then on joining it waits only for it to return. */
#ifndef TK_THREADS_H
#define TK_THREADS_H

#include <pthread.h>
#include <stdbool.h>

typedef struct tk_thread {
	pthread_t t;
	void *arg;     /* the owner's: what the thread works on, while !done */
	bool done;     /* it will not touch the owner's state again */
	bool detached; /* given up on; the entry stays until the owner frees it */
	struct tk_thread *next;
} tk_thread_t;

/* Under the owner's lock: unlink the entries that are done (all: every
 * entry not detached) into a list of their own, to join outside the lock. */
tk_thread_t *tk_threads_take_locked(tk_thread_t **head, bool all);

/* Join and free the done entries of a taken list; detach the others, whose
 * entries are left to their threads (not freed: one may still write its
 * done flag). Returns how many were detached. */
int tk_threads_join(tk_thread_t *list);

/* Free every entry left (the owner is going away; only detached ones whose
 * threads hold no reference to it can be left). */
void tk_threads_free(tk_thread_t **head);

#endif
