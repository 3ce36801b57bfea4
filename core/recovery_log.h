/* tokenkit: the per-user recovery log (private).
 *
 * Every slot manager (in applications through the PKCS#11 module, in the
 * CLI) appends each finished recovery as one JSON line, with one write()
 * on an O_APPEND descriptor, so lines from several processes never
 * interleave. `tokenkit diag` reads it back. The file is size-bounded: past
 * TK_RECOVERY_LOG_MAX bytes it is renamed to "<path>.1" (one generation
 * kept). Lines are at most TK_RECOVERY_LOG_LINE_MAX bytes. */
#ifndef TK_RECOVERY_LOG_H
#define TK_RECOVERY_LOG_H

#include <tokenkit/slot.h>

#define TK_RECOVERY_LOG_MAX (256 * 1024)
#define TK_RECOVERY_LOG_LINE_MAX 4096
/* A file larger than this is not read (several writers may each append a
 * line past TK_RECOVERY_LOG_MAX before one rotates: a few lines at most). */
#define TK_RECOVERY_LOG_READ_MAX (4 * TK_RECOVERY_LOG_MAX)

typedef struct tk_recovery_log_entry {
	int64_t pid;
	char prog[64];
	char reader[128];
	tk_recovery_t rec; /* start_us is 0 (another process's clock) */
} tk_recovery_log_entry_t;

/* Format one line (with the trailing newline) into buf. Returns its length,
 * or 0 when it does not fit. */
size_t tk_recovery_log_format(char *buf, size_t cap, int64_t pid, const char *prog,
                              const char *reader, const tk_recovery_t *r);

/* Parse one line (no newline needed; bytes need not be NUL-terminated).
 * Unknown keys are skipped; missing ones stay zero. Errors:
 * TK_ERR_MALFORMED (not one JSON object of the expected shape),
 * TK_ERR_TOO_DEEP, TK_ERR_TOO_LONG. */
int tk_recovery_log_parse_line(const char *line, size_t len, tk_recovery_log_entry_t *e);

/* Read the log at path (its rotated part first) with the writer's checks
 * (fsutil.h: a private directory of ours, regular files, at most
 * TK_RECOVERY_LOG_READ_MAX bytes each) and hand each parsed line to fn,
 * oldest first; *bad counts lines that do not parse (too long, cut short,
 * malformed) and files that were refused. A refused directory is read at
 * its fallback like the writer writes there; used (ucap bytes) receives
 * the path actually read. fn returns TK_OK to go on. Errors:
 * TK_ERR_NOT_FOUND (no log yet), TK_ERR_UNSAFE, TK_ERR_NOT_SUPPORTED
 * (set-uid process), TK_ERR_INVALID_ARG, TK_ERR_TOO_LONG, fn's error. */
typedef int (*tk_recovery_log_fn)(void *ctx, const tk_recovery_log_entry_t *e);
int tk_recovery_log_read(const char *path, tk_recovery_log_fn fn, void *ctx, size_t *bad,
                         char *used, size_t ucap);

/* Step and error names as written in the log, and back (-1 / 0 when
 * unknown). */
int tk_recovery_step_from_name(const char *name);

#endif
