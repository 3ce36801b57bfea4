/* tokenkit: the per-user recovery log (private).
 *
 * Every slot manager (in applications through the PKCS#11 module, in the
 * CLI) appends each finished recovery as one JSON line, with one write()
 * on an O_APPEND descriptor, so lines from several processes never
 * interleave. `tokenkit diag` reads it back. The file is size-bounded: past
 * TK_RECOVERY_LOG_MAX bytes it is renamed to "<path>.1" (one generation
 * kept). Lines are at most TK_RECOVERY_LOG_LINE_MAX bytes. The entry type
 * and the line parser are public (tokenkit/slot.h). */
#ifndef TK_RECOVERY_LOG_H
#define TK_RECOVERY_LOG_H

#include <tokenkit/slot.h>

#define TK_RECOVERY_LOG_MAX (256 * 1024)
#define TK_RECOVERY_LOG_LINE_MAX 4096
/* A file larger than this is not read (several writers may each append a
 * line past TK_RECOVERY_LOG_MAX before one rotates: a few lines at most). */
#define TK_RECOVERY_LOG_READ_MAX (4 * TK_RECOVERY_LOG_MAX)

/* Format one line (with the trailing newline) into buf. Returns its length,
 * or 0 when it does not fit. */
size_t tk_recovery_log_format(char *buf, size_t cap, int64_t pid, const char *prog,
                              const char *reader, const tk_recovery_t *r);

/* Step and error names as written in the log, and back (-1 / 0 when
 * unknown). */
int tk_recovery_step_from_name(const char *name);

#endif
