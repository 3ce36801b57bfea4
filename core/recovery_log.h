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

/* Step and error names as written in the log, and back (-1 / 0 when
 * unknown). */
int tk_recovery_step_from_name(const char *name);

#endif
