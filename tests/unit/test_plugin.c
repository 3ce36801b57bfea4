/* Unit tests for the plugin loader and the reader backend table
 * (core/plugin.c, core/readers.c), with the real virtual reader plugin of
 * this build (<build>/plugins/reader-vcard.so) and the broken plugins of
 * tests/plugins/bad_plugin.c (<build>/test-plugins). What they attack:
 * a plugin directory or file that someone else could write or that someone
 * else owns, a symbolic link, a relative search path, names that walk out
 * of the directory, a plugin for another ABI, another name, without an entry
 * point or with an incomplete table, the environment of a set-gid process,
 * and the plugin's log lines bypassing the host's level and sink. */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include <tokenkit/err.h>
#include <tokenkit/log.h>
#include <tokenkit/slot.h>

#include "env.h"
#include "plugin.h"
#include "reader.h"

#define OTHER_UID 65534 /* nobody */
#define OTHER_GID 65534 /* nogroup */

static char logbuf[16384];
static char tmp[64];

static void
sink(void *ctx, int level, const char *msg)
{
	size_t n = strlen(logbuf);

	(void)ctx;
	(void)level;
	snprintf(logbuf + n, sizeof(logbuf) - n, "%s\n", msg);
}

static void
copy_file(const char *from, const char *to, mode_t mode)
{
	char buf[65536];
	int in = open(from, O_RDONLY | O_CLOEXEC), out;
	ssize_t n;

	assert_true(in >= 0);
	(void)unlink(to);
	out = open(to, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	assert_true(out >= 0);
	while ((n = read(in, buf, sizeof(buf))) > 0)
		assert_int_equal(write(out, buf, (size_t)n), n);
	assert_int_equal(n, 0);
	assert_int_equal(fchmod(out, mode), 0);
	close(out);
	close(in);
}

static bool
installed_system_wide(void)
{
	return access(TK_PLUGIN_DIR "/reader-vcard.so", F_OK) == 0;
}

static int
setup(void **state)
{
	(void)state;
	snprintf(tmp, sizeof(tmp), "/tmp/tk-plugin-XXXXXX");
	if (mkdtemp(tmp) == NULL)
		return -1;
	tk_log_set_sink(sink, NULL);
	tk_log_set_level(TK_LOG_DEBUG);
	return 0;
}

static int
teardown(void **state)
{
	char cmd[128];

	(void)state;
	tk_log_set_sink(NULL, NULL);
	tk_log_set_level(TK_LOG_WARN);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmp);
	return system(cmd) == 0 ? 0 : -1;
}

/* tk_plugin_load("vcard") with TOKENKIT_PLUGIN_PATH=path must fail and
 * log expect. */
static void
assert_refused(const char *path, const char *name, const char *expect)
{
	const tk_plugin_desc_t *d = (const void *)1;

	logbuf[0] = '\0';
	assert_int_equal(setenv("TOKENKIT_PLUGIN_PATH", path, 1), 0);
	assert_int_equal(tk_plugin_load(TK_PLUGIN_READER, name, &d), TK_ERR_NOT_FOUND);
	assert_null(d);
	if (strstr(logbuf, expect) == NULL) {
		fprintf(stderr, "log:\n%s", logbuf);
		fail_msg("expected '%s' in the log", expect);
	}
	/* the summary says what to set */
	assert_non_null(strstr(logbuf, "set TOKENKIT_PLUGIN_PATH"));
}

/* A directory of its own holding a copy of the real plugin. */
static void
make_dir(const char *sub, mode_t dir_mode, mode_t file_mode, char *dir, size_t cap)
{
	char file[256];

	snprintf(dir, cap, "%s/%s", tmp, sub);
	assert_int_equal(mkdir(dir, 0700), 0);
	snprintf(file, sizeof(file), "%s/reader-vcard.so", dir);
	copy_file(TK_TEST_BUILD_DIR "/plugins/reader-vcard.so", file, file_mode);
	assert_int_equal(chmod(dir, dir_mode), 0);
}

static void
test_refused_files(void **state)
{
	char dir[200], file[256];

	(void)state;
	if (installed_system_wide())
		skip(); /* the compiled-in directory would answer */
	make_dir("group-writable-dir", 0770, 0755, dir, sizeof(dir));
	assert_refused(dir, "vcard", "writable by its group or others");
	make_dir("world-writable-file", 0755, 0757, dir, sizeof(dir));
	assert_refused(dir, "vcard", "writable by its group or others");
	make_dir("link", 0755, 0755, dir, sizeof(dir));
	snprintf(file, sizeof(file), "%s/reader-vcard.so", dir);
	assert_int_equal(unlink(file), 0);
	assert_int_equal(symlink(TK_TEST_BUILD_DIR "/plugins/reader-vcard.so", file), 0);
	assert_refused(dir, "vcard", "a symbolic link");
	assert_refused("relative/plugins", "vcard", "not an absolute path");
	if (geteuid() == 0) {
		make_dir("other-owner-file", 0755, 0755, dir, sizeof(dir));
		snprintf(file, sizeof(file), "%s/reader-vcard.so", dir);
		assert_int_equal(chown(file, OTHER_UID, OTHER_GID), 0);
		assert_refused(dir, "vcard", "owned by uid 65534");
		make_dir("other-owner-dir", 0755, 0755, dir, sizeof(dir));
		assert_int_equal(chown(dir, OTHER_UID, OTHER_GID), 0);
		assert_refused(dir, "vcard", "owned by uid 65534");
	}
}

static void
test_refused_plugins(void **state)
{
	const char *dir = TK_TEST_BUILD_DIR "/test-plugins";
	const tk_reader_ops_t *ops = (const void *)1;
	tk_slotmgr_opts_t o;
	tk_slotmgr_t *m = NULL;

	(void)state;
	assert_refused(dir, "badabi", "built for plugin ABI 99, this tokenkit has ABI 1");
	assert_refused(dir, "wrongname", "not the reader plugin 'wrongname'");
	assert_refused(dir, "noentry", "no entry point tokenkit_plugin_v1");
	assert_refused(dir, "absent", "no loadable reader-absent.so");
	/* loads, but is no usable reader backend */
	assert_int_equal(setenv("TOKENKIT_PLUGIN_PATH", dir, 1), 0);
	assert_int_equal(tk_reader_backend_find("badtable", 8, &ops), TK_ERR_INVALID_ARG);
	assert_null(ops);
	tk_slotmgr_opts_init(&o);
	o.recovery_log = "";
	o.readers = "badtable:x";
	assert_int_equal(tk_slotmgr_new(&o, &m), TK_ERR_INVALID_ARG);
	assert_null(m);
}

static void
test_bad_names(void **state)
{
	static const char *const bad[] = {
	        "", "../vcard", "vcard/x", "VCARD", "v card", "a123456789012345678901234567890123"};
	const tk_plugin_desc_t *d = (const void *)1;

	(void)state;
	assert_int_equal(setenv("TOKENKIT_PLUGIN_PATH", TK_TEST_BUILD_DIR "/plugins", 1), 0);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		assert_int_equal(tk_plugin_load(TK_PLUGIN_READER, bad[i], &d), TK_ERR_INVALID_ARG);
		assert_null(d);
	}
	assert_int_equal(tk_plugin_load(77, "vcard", &d), TK_ERR_INVALID_ARG);
}

/* This program, copied and made set-gid (nogroup), looks for the plugin
 * with TOKENKIT_PLUGIN_PATH set; the plain copy is the control. Child exit
 * status: 10 when privileged, plus 0 when it loaded the plugin, else 1. */
static int
run_child(char *exe)
{
	pid_t pid = fork();
	int st = 0;

	assert_true(pid >= 0);
	if (pid == 0) {
		char child_arg[] = "--child";
		char *argv[] = {exe, child_arg, NULL};
		char env_path[300];
		char *envp[] = {env_path, NULL};

		snprintf(env_path, sizeof(env_path), "TOKENKIT_PLUGIN_PATH=%s/plugins",
		         TK_TEST_BUILD_DIR);
		execve(exe, argv, envp);
		_exit(127);
	}
	assert_int_equal(waitpid(pid, &st, 0), pid);
	assert_true(WIFEXITED(st));
	return WEXITSTATUS(st);
}

static int
child_main(void)
{
	const tk_plugin_desc_t *d = NULL;
	bool privileged = tk_env_privileged();

	return (privileged ? 10 : 0) +
	       (tk_plugin_load(TK_PLUGIN_READER, "vcard", &d) == TK_OK ? 0 : 1);
}

static void
test_privileged_ignores_environment(void **state)
{
	char exe[256];
	int st;

	(void)state;
	if (geteuid() != 0 || installed_system_wide())
		skip();
	/* in the build tree: /tmp may be mounted nosuid */
	snprintf(exe, sizeof(exe), "%s/test_plugin_child.%d", TK_TEST_BUILD_DIR, (int)getpid());
	copy_file("/proc/self/exe", exe, 0755);
	st = run_child(exe);
	assert_int_equal(st, 0); /* the control: the environment works */
	assert_int_equal(chown(exe, 0, OTHER_GID), 0);
	assert_int_equal(chmod(exe, 02755), 0);
	st = run_child(exe);
	(void)unlink(exe);
	if (st == 1) {
		fprintf(stderr, "the set-gid copy ran unprivileged (nosuid mount?)\n");
		skip();
	}
	assert_int_equal(st, 11);
}

static void
test_loads_and_logs_through_host(void **state)
{
	const tk_plugin_desc_t *d = NULL, *d2 = NULL;
	const tk_reader_ops_t *ops = NULL;
	tk_slotmgr_opts_t o;
	tk_slotmgr_t *m = NULL;
	tk_slot_info_t *infos = NULL;
	size_t n = 0;
	char path[512];

	(void)state;
	/* empty, relative and missing entries are passed over */
	snprintf(path, sizeof(path), "::relative:/nonexistent:%s/plugins", TK_TEST_BUILD_DIR);
	assert_int_equal(setenv("TOKENKIT_PLUGIN_PATH", path, 1), 0);
	assert_int_equal(tk_plugin_load(TK_PLUGIN_READER, "vcard", &d), TK_OK);
	assert_non_null(d);
	assert_int_equal(d->abi, TK_PLUGIN_ABI);
	assert_int_equal(d->kind, TK_PLUGIN_READER);
	assert_string_equal(d->name, "vcard");
	/* once per process */
	assert_int_equal(unsetenv("TOKENKIT_PLUGIN_PATH"), 0);
	assert_int_equal(tk_plugin_load(TK_PLUGIN_READER, "vcard", &d2), TK_OK);
	assert_ptr_equal(d, d2);
	assert_int_equal(tk_reader_backend_find("vcard:x", 5, &ops), TK_OK);
	assert_ptr_equal(ops, d->table);

	/* the plugin's log lines reach the host's sink, at the host's level */
	tk_slotmgr_opts_init(&o);
	o.recovery_log = "";
	o.readers = "vcard:empty;empty";
	tk_log_set_level(TK_LOG_INFO);
	logbuf[0] = '\0';
	assert_int_equal(tk_slotmgr_new(&o, &m), TK_OK);
	assert_int_equal(tk_slotmgr_wait_ready(m, 5000), TK_OK);
	assert_int_equal(tk_slotmgr_list(m, &infos, &n), TK_OK);
	assert_int_equal(n, 2);
	assert_string_equal(infos[1].reader, "tokenkit virtual reader 1");
	free(infos);
	tk_slotmgr_free(&m);
	assert_non_null(strstr(logbuf, "vreader: 2 virtual reader(s)"));
	tk_log_set_level(TK_LOG_WARN);
	logbuf[0] = '\0';
	assert_int_equal(tk_slotmgr_new(&o, &m), TK_OK);
	assert_int_equal(tk_slotmgr_wait_ready(m, 5000), TK_OK);
	tk_slotmgr_free(&m);
	assert_null(strstr(logbuf, "vreader:"));
}

int
main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_bad_names),
	        cmocka_unit_test(test_refused_files),
	        cmocka_unit_test(test_refused_plugins),
	        cmocka_unit_test(test_privileged_ignores_environment),
	        /* last: the plugin stays loaded in this process */
	        cmocka_unit_test(test_loads_and_logs_through_host),
	};

	if (argc == 2 && strcmp(argv[1], "--child") == 0)
		return child_main();
	return cmocka_run_group_tests(tests, setup, teardown);
}
