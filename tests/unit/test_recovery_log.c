/* Unit tests for the recovery log (core/recovery_log.c): the line format
 * and its parser, hostile lines, the path rules and the size bound. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include <tokenkit/err.h>
#include <tokenkit/log.h>
#include <tokenkit/slot.h>

#include "recovery_log.h"
#include "slotmgr_priv.h"

static tk_recovery_t
sample(void)
{
	tk_recovery_t r;

	memset(&r, 0, sizeof(r));
	r.id = 7;
	r.wall_ms = 1764300000123LL;
	r.fault = TK_ERR_TIMEOUT;
	snprintf(r.what, sizeof(r.what), "deadline");
	r.nsteps = 3;
	r.steps[0] = (tk_recovery_step_rec_t){TK_STEP_STUCK, TK_OK, 4000000};
	r.steps[1] = (tk_recovery_step_rec_t){TK_STEP_RECONNECT, TK_ERR_COMM, 1500};
	r.steps[2] = (tk_recovery_step_rec_t){TK_STEP_WARM_RESET, TK_OK, 9000};
	r.cured_by = TK_STEP_WARM_RESET;
	r.outcome = TK_OK;
	r.duration_us = 4010500;
	r.probes = 0;
	return r;
}

static void
test_roundtrip(void **state)
{
	tk_recovery_t r = sample();
	tk_recovery_log_entry_t e;
	char line[TK_RECOVERY_LOG_LINE_MAX];
	size_t n;

	(void)state;
	n = tk_recovery_log_format(line, sizeof(line), 4242, "prog \"x\"", "Reader\\1\n", &r);
	assert_true(n > 0);
	assert_int_equal(line[n - 1], '\n');
	assert_null(memchr(line, '\n', n - 1)); /* one line, whatever the names hold */
	assert_int_equal(tk_recovery_log_parse_line(line, n, &e), TK_OK);
	assert_int_equal(e.pid, 4242);
	assert_string_equal(e.prog, "prog \"x\"");
	assert_string_equal(e.reader, "Reader\\1\n");
	assert_int_equal(e.rec.id, 7);
	assert_int_equal(e.rec.wall_ms, 1764300000123LL);
	assert_int_equal(e.rec.fault, TK_ERR_TIMEOUT);
	assert_string_equal(e.rec.what, "deadline");
	assert_int_equal(e.rec.nsteps, 3);
	assert_int_equal(e.rec.steps[0].step, TK_STEP_STUCK);
	assert_int_equal(e.rec.steps[1].result, TK_ERR_COMM);
	assert_int_equal(e.rec.steps[2].duration_us, 9000);
	assert_int_equal(e.rec.cured_by, TK_STEP_WARM_RESET);
	assert_int_equal(e.rec.duration_us, 4010500);
	/* Too small a buffer: nothing, not half a line. */
	assert_int_equal(tk_recovery_log_format(line, 40, 1, "p", "r", &r), 0);
}

static void
test_hostile_lines(void **state)
{
	static const char *bad[] = {
	        "",
	        "[]",
	        "{",
	        "{\"pid\":}",
	        "{\"pid\":1,}",
	        "{\"pid\":1} trailing",
	        "{\"reader\":\"abc}",
	        "{\"reader\":\"a\\x\"}",
	        "{\"reader\":\"a\\u12\"}",
	        "{\"pid\":99999999999999999999}",
	        "{\"steps\":[{\"step\":1,}]}",
	        "{\"steps\":{}}",
	        "{\"x\":[[[[[[[[[[[[1]]]]]]]]]]]]}",
	        "{\"reader\":\"tab\there\"}",
	        "{\"x\":tru}",
	};
	tk_recovery_log_entry_t e;
	char big[TK_RECOVERY_LOG_LINE_MAX + 16];

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		int r = tk_recovery_log_parse_line(bad[i], strlen(bad[i]), &e);

		if (r == TK_OK)
			fail_msg("accepted: %s", bad[i]);
		assert_int_equal(e.pid, 0);
	}
	memset(big, ' ', sizeof(big));
	big[0] = '{';
	big[sizeof(big) - 1] = '}';
	assert_int_equal(tk_recovery_log_parse_line(big, sizeof(big), &e), TK_ERR_TOO_LONG);
	/* Long strings are cut, NUL-terminated; unknown keys and values are
	 * skipped; \u escapes beyond ASCII become '?'. */
	{
		char line[1024];
		int n = snprintf(
		        line, sizeof(line),
		        "{\"future\":{\"a\":[1,-2.5e3,true,false,null]},\"prog\":\"%0300d\","
		        "\"reader\":\"caf\\u00e9\\u0041\",\"id\":5}",
		        0);

		assert_int_equal(tk_recovery_log_parse_line(line, (size_t)n, &e), TK_OK);
		assert_int_equal(strlen(e.prog), sizeof(e.prog) - 1);
		assert_string_equal(e.reader, "caf?A");
		assert_int_equal(e.rec.id, 5);
	}
	assert_int_equal(tk_recovery_log_parse_line(NULL, 0, &e), TK_ERR_INVALID_ARG);
}

static void
test_path_rules(void **state)
{
	char buf[512], want[512];

	(void)state;
	setenv("TOKENKIT_RECOVERY_LOG", "/x/y.jsonl", 1);
	assert_int_equal(tk_recovery_log_path(buf, sizeof(buf)), TK_OK);
	assert_string_equal(buf, "/x/y.jsonl");
	setenv("TOKENKIT_RECOVERY_LOG", "", 1);
	assert_int_equal(tk_recovery_log_path(buf, sizeof(buf)), TK_ERR_NOT_FOUND);
	assert_null(rec_log_resolve(NULL));
	unsetenv("TOKENKIT_RECOVERY_LOG");
	setenv("XDG_RUNTIME_DIR", "/run/user/77", 1);
	assert_int_equal(tk_recovery_log_path(buf, sizeof(buf)), TK_OK);
	assert_string_equal(buf, "/run/user/77/tokenkit/recovery.jsonl");
	unsetenv("XDG_RUNTIME_DIR");
	assert_int_equal(tk_recovery_log_path(buf, sizeof(buf)), TK_OK);
	snprintf(want, sizeof(want), "/tmp/tokenkit-%u/recovery.jsonl", (unsigned)getuid());
	assert_string_equal(buf, want);
	assert_int_equal(tk_recovery_log_path(buf, 8), TK_ERR_BUFFER_TOO_SMALL);
	{
		char *p = rec_log_resolve("");

		assert_null(p);
		p = rec_log_resolve("/a/b");
		assert_string_equal(p, "/a/b");
		free(p);
	}
}

static void
test_append_and_rotate(void **state)
{
	char dir[128], path[160], old[170];
	tk_recovery_t r = sample();
	struct stat st;
	FILE *f;
	char line[TK_RECOVERY_LOG_LINE_MAX];
	int lines = 0;

	(void)state;
	snprintf(dir, sizeof(dir), "/tmp/tk-test-reclog-%d", (int)getpid());
	snprintf(path, sizeof(path), "%s/recovery.jsonl", dir);
	snprintf(old, sizeof(old), "%s.1", path);
	rec_log_append(path, "Reader A", &r);
	assert_int_equal(stat(dir, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0700);
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0600);
	/* Past the bound the file is rotated to .1 once. */
	while (stat(old, &st) != 0) {
		rec_log_append(path, "Reader A", &r);
		assert_true(++lines < 10000);
	}
	assert_true(st.st_size > TK_RECOVERY_LOG_MAX);
	assert_int_equal(stat(path, &st), 0);
	assert_true(st.st_size < TK_RECOVERY_LOG_MAX);
	f = fopen(path, "r");
	assert_non_null(f);
	lines = 0;
	while (fgets(line, sizeof(line), f) != NULL) {
		tk_recovery_log_entry_t e;

		assert_int_equal(tk_recovery_log_parse_line(line, strlen(line), &e), TK_OK);
		assert_string_equal(e.reader, "Reader A");
		lines++;
	}
	fclose(f);
	assert_int_equal(lines, 1);
	unlink(path);
	unlink(old);
	rmdir(dir);
}

static int warnings;

static void
count_warnings(void *ctx, int level, const char *msg)
{
	(void)ctx;
	(void)msg;
	if (level == TK_LOG_WARN)
		warnings++;
}

static int
count_lines(const char *path)
{
	char line[TK_RECOVERY_LOG_LINE_MAX];
	FILE *f = fopen(path, "r");
	int n = 0;

	if (f == NULL)
		return -1;
	while (fgets(line, sizeof(line), f) != NULL)
		n++;
	fclose(f);
	return n;
}

struct got {
	int n;
	char reader[128];
};

static int
got_entry(void *ctx, const tk_recovery_log_entry_t *e)
{
	struct got *g = ctx;

	g->n++;
	snprintf(g->reader, sizeof(g->reader), "%s", e->reader);
	return TK_OK;
}

/* /tmp/tokenkit-<uid> made first by another user (or opened up to
 * others): one warning, and the log goes to the user's own state directory
 * instead, where `tokenkit diag` reads it too. Nothing is written into the
 * refused directory. */
static void
test_refused_dir_fallback(void **state)
{
	char dir[] = "/tmp/tk-test-reclog-XXXXXX", bad[128], path[160], alt[200], used[256];
	char cmd[300];
	tk_recovery_t r = sample();
	struct got g = {0};
	size_t nbad = 0;

	(void)state;
	assert_non_null(mkdtemp(dir));
	snprintf(bad, sizeof(bad), "%s/tokenkit-victim", dir);
	snprintf(path, sizeof(path), "%s/recovery.jsonl", bad);
	snprintf(alt, sizeof(alt), "%s/state/tokenkit/recovery.jsonl", dir);
	assert_int_equal(mkdir(bad, 0700), 0);
	if (geteuid() == 0)
		assert_int_equal(chown(bad, 4242, 4242), 0);
	else
		assert_int_equal(chmod(bad, 0777), 0);
	snprintf(cmd, sizeof(cmd), "%s/state", dir);
	setenv("XDG_STATE_HOME", cmd, 1);
	tk_log_set_sink(count_warnings, NULL);
	warnings = 0;
	rec_log_append(path, "Reader A", &r);
	rec_log_append(path, "Reader A", &r);
	tk_log_set_sink(NULL, NULL);
	assert_int_equal(warnings, 1);
	snprintf(cmd, sizeof(cmd), "test -z \"$(ls -A %s)\"", bad);
	assert_int_equal(system(cmd), 0);
	assert_int_equal(count_lines(alt), 2);
	/* the reader follows the writer */
	assert_int_equal(tk_recovery_log_read(path, got_entry, &g, &nbad, used, sizeof(used)),
	                 TK_OK);
	assert_int_equal(g.n, 2);
	assert_int_equal(nbad, 0);
	assert_string_equal(used, alt);
	unsetenv("XDG_STATE_HOME");
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	assert_int_equal(system(cmd), 0);
}

/* A FIFO where the log goes: the writer must neither block nor write. */
static void
test_append_fifo(void **state)
{
	char dir[] = "/tmp/tk-test-reclog-XXXXXX", path[160], cmd[200];
	tk_recovery_t r = sample();
	struct stat st;

	(void)state;
	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/recovery.jsonl", dir);
	assert_int_equal(mkfifo(path, 0600), 0);
	alarm(30); /* an open that blocks fails the test */
	rec_log_append(path, "Reader A", &r);
	alarm(0);
	assert_int_equal(lstat(path, &st), 0);
	assert_true(S_ISFIFO(st.st_mode));
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	assert_int_equal(system(cmd), 0);
}

/* The reader caps line length and file size and keeps the writer's
 * checks: over-long, cut-short and malformed lines are counted, a file
 * over the cap or a symlink is not read. */
static void
test_read_checks(void **state)
{
	char dir[] = "/tmp/tk-test-reclog-XXXXXX", path[160], old[170], used[256], cmd[200];
	char line[TK_RECOVERY_LOG_LINE_MAX];
	tk_recovery_t r = sample();
	struct got g = {0};
	size_t nbad = 0, n;
	FILE *f;

	(void)state;
	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/recovery.jsonl", dir);
	snprintf(old, sizeof(old), "%s.1", path);
	f = fopen(path, "w");
	assert_non_null(f);
	n = tk_recovery_log_format(line, sizeof(line), 1, "prog", "Evil\x1b[2J", &r);
	assert_true(n > 0);
	fwrite(line, 1, n, f);
	fputs("{\"reader\":\"", f);
	for (int i = 0; i < TK_RECOVERY_LOG_LINE_MAX; i++)
		fputc('x', f);
	fputs("\"}\n", f);
	fputs("not json\n", f);
	fwrite(line, 1, n - 10, f); /* cut short, no newline */
	fclose(f);
	assert_int_equal(tk_recovery_log_read(path, got_entry, &g, &nbad, used, sizeof(used)),
	                 TK_OK);
	assert_int_equal(g.n, 1);
	assert_string_equal(g.reader, "Evil\x1b[2J"); /* escaped where it is shown */
	assert_int_equal(nbad, 3);
	assert_string_equal(used, path);

	/* over the cap (a sparse file: no disk used) */
	assert_int_equal(truncate(path, (off_t)TK_RECOVERY_LOG_READ_MAX + 1), 0);
	g.n = 0;
	tk_log_set_level(TK_LOG_NONE);
	assert_int_equal(tk_recovery_log_read(path, got_entry, &g, &nbad, used, sizeof(used)),
	                 TK_OK);
	assert_int_equal(g.n, 0);
	assert_int_equal(nbad, 1);
	/* a symlink in place of the rotated part */
	assert_int_equal(unlink(path), 0);
	assert_int_equal(symlink("/etc/passwd", old), 0);
	assert_int_equal(tk_recovery_log_read(path, got_entry, &g, &nbad, used, sizeof(used)),
	                 TK_OK);
	assert_int_equal(g.n, 0);
	assert_int_equal(nbad, 1);
	tk_log_set_level(TK_LOG_WARN);
	assert_int_equal(tk_recovery_log_read(NULL, got_entry, &g, &nbad, used, sizeof(used)),
	                 TK_ERR_INVALID_ARG);
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	assert_int_equal(system(cmd), 0);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_roundtrip),
	        cmocka_unit_test(test_hostile_lines),
	        cmocka_unit_test(test_path_rules),
	        cmocka_unit_test(test_append_and_rotate),
	        cmocka_unit_test(test_refused_dir_fallback),
	        cmocka_unit_test(test_append_fifo),
	        cmocka_unit_test(test_read_checks),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
