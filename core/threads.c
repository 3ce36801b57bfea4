/* tokenkit: lists of threads to join (see threads.h). */
#include <stdlib.h>

#include "threads.h"

tk_thread_t *
tk_threads_take_locked(tk_thread_t **head, bool all)
{
	tk_thread_t **pp = head, *taken = NULL;

	while (*pp != NULL) {
		tk_thread_t *t = *pp;

		if (!t->detached && (t->done || all)) {
			*pp = t->next;
			t->next = taken;
			taken = t;
		} else {
			pp = &t->next;
		}
	}
	return taken;
}

int
tk_threads_join(tk_thread_t *t)
{
	int detached = 0;

	while (t != NULL) {
		tk_thread_t *next = t->next;

		if (t->done) {
			pthread_join(t->t, NULL);
			free(t);
		} else {
			pthread_detach(t->t);
			t->detached = true;
			detached++;
		}
		t = next;
	}
	return detached;
}

void
tk_threads_free(tk_thread_t **head)
{
	while (*head != NULL) {
		tk_thread_t *next = (*head)->next;

		free(*head);
		*head = next;
	}
}
