/* tokenkit virtual card: the control channel.
 *
 * A virtual card (tokenkit-vcard, or a card of the in-process virtual
 * reader) may listen on a UNIX stream socket for one-line commands: a fault
 * spec (fault.h) or "status". Each client sends one line, gets one line
 * back ("ok ..." or "error: ...") and is closed. */
#ifndef TK_VCARD_CONTROL_H
#define TK_VCARD_CONTROL_H

#include <stddef.h>

/* Listen on path (replacing a stale socket; mode 0600). Returns the
 * non-blocking, close-on-exec listening fd, or -1 (logged). */
int tk_vc_control_listen(const char *path);

/* Read one command line from an accepted client, bounded in time (1 s)
 * and size; the newline is removed. Returns 0 or -1 (timeout). */
int tk_vc_control_read_line(int fd, char *line, size_t cap);

/* Client side: send cmd to the socket at path and read the reply into
 * reply (NUL-terminated). Returns 0 for an "ok" reply, 1 for any other
 * reply, 2 when the socket cannot be reached. */
int tk_vc_control_send(const char *path, const char *cmd, char *reply, size_t cap);

#endif
