/* Fuzz target: the broker protocol's parsers (pkcs11/bproto.c) — what
 * tokenkitd reads from any client and the module reads from the broker: a
 * framed message read from a socket, its decoding as a request and as a
 * response, and the readers of every argument kind the broker's handlers
 * use (integers, byte strings, null, nested arrays, mechanisms with their
 * parameters, attribute templates). Nothing may crash, leak or read out of
 * bounds; a decoded mechanism's parameters lie inside the message. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "bproto.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Walk whatever the body holds, the way the handlers take it apart. */
static void
walk(struct bp_r *r, int depth)
{
	while (r->ok && r->i < r->n && depth < 8) {
		struct bp_r save = *r, sub;
		size_t len;
		bool null;
		CK_MECHANISM m;
		union bp_mparam p;
		CK_ATTRIBUTE *t;
		CK_ULONG n;

		if (bp_get_null(r))
			continue;
		(void)bp_get_u(r);
		if (r->ok)
			continue;
		*r = save;
		if (bp_get_b(r, &len, true, &null) != NULL || (r->ok && null))
			continue;
		*r = save;
		if (bp_get_mech(r, &m, &p))
			continue;
		*r = save;
		if (bp_get_template(r, &t, &n)) {
			free(t);
			continue;
		}
		*r = save;
		sub = bp_get_sub(r);
		if (!r->ok)
			break;
		walk(&sub, depth + 1);
	}
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct bp_msg m;
	int sv[2];
	uint8_t *msg = NULL;
	size_t len = 0;

	for (int request = 0; request < 2; request++) {
		if (bp_decode(data, size, request != 0, &m) == NULL)
			walk(&m.body, 0);
		bp_msg_free(&m);
	}
	/* the same bytes as they arrive on a socket (length prefix first) */
	if (size <= 65536 && socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0) {
		if (write(sv[0], data, size) == (ssize_t)size) {
			shutdown(sv[0], SHUT_WR);
			/* (one after another, as pipelined requests come) */
			static struct bp_rbuf rb;
			memset(&rb, 0, sizeof(rb));
			while (bp_read_msg(sv[1], &rb, &msg, &len, 0) == 0) {
				if (bp_decode(msg, len, true, &m) == NULL)
					walk(&m.body, 0);
				bp_msg_free(&m);
				free(msg);
			}
		}
		close(sv[0]);
		close(sv[1]);
	}
	return 0;
}
