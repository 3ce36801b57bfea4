/* Fuzz target: the recovery log line parser (core/recovery_log.c), which
 * reads a per-user file that several processes write.
 *
 * The input is parsed as one line; a line that parses is formatted back and
 * must parse again to the same record (the writer and the parser agree). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <tokenkit/err.h>

#include "recovery_log.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static char line[TK_RECOVERY_LOG_LINE_MAX * 2];
	tk_recovery_log_entry_t e, f;
	size_t n;

	if (tk_recovery_log_parse_line((const char *)data, size, &e) != TK_OK)
		return 0;
	if (strnlen(e.prog, sizeof(e.prog)) >= sizeof(e.prog) ||
	    strnlen(e.reader, sizeof(e.reader)) >= sizeof(e.reader) ||
	    strnlen(e.rec.what, sizeof(e.rec.what)) >= sizeof(e.rec.what))
		abort();
	if (e.rec.nsteps > TK_RECOVERY_MAX_STEPS)
		e.rec.nsteps = TK_RECOVERY_MAX_STEPS;
	n = tk_recovery_log_format(line, sizeof(line), e.pid, e.prog, e.reader, &e.rec);
	if (n == 0)
		abort(); /* anything the parser accepts fits one line */
	if (tk_recovery_log_parse_line(line, n, &f) != TK_OK)
		abort();
	if (f.pid != e.pid || strcmp(f.prog, e.prog) != 0 || strcmp(f.reader, e.reader) != 0 ||
	    f.rec.fault != e.rec.fault || f.rec.outcome != e.rec.outcome ||
	    f.rec.cured_by != e.rec.cured_by || f.rec.nsteps != e.rec.nsteps ||
	    f.rec.duration_us != e.rec.duration_us || f.rec.id != e.rec.id)
		abort();
	for (size_t i = 0; i < e.rec.nsteps; i++)
		if (f.rec.steps[i].step != e.rec.steps[i].step ||
		    f.rec.steps[i].result != e.rec.steps[i].result ||
		    f.rec.steps[i].duration_us != e.rec.steps[i].duration_us)
			abort();
	return 0;
}
