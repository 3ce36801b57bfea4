/* Unit tests for core/fsutil.c: the directory and file checks another local
 * user would attack, and the atomic write.
 *
 * Each test works in its own mkdtemp directory. "Another user" is a uid
 * nobody has (4242): as root the tests chown to it; as anybody else those
 * cases are skipped (CI runs as root). */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include <tokenkit/err.h>

#include "fsutil.h"

#define OTHER_UID 4242

struct fx {
	char base[64];
	char path[4096];
};

static int
setup(void **state)
{
	static struct fx f;

	snprintf(f.base, sizeof(f.base), "/tmp/tk-test-fsutil-XXXXXX");
	if (mkdtemp(f.base) == NULL)
		return -1;
	/* A FIFO or a blocking open must fail the test, not hang it. */
	alarm(60);
	*state = &f;
	return 0;
}

static int
teardown(void **state)
{
	struct fx *f = *state;
	char cmd[256];

	alarm(0);
	snprintf(cmd, sizeof(cmd), "chmod -R u+rwx %s; rm -rf %s", f->base, f->base);
	return system(cmd) == 0 ? 0 : -1;
}

static const char *
at(struct fx *f, const char *rel)
{
	snprintf(f->path, sizeof(f->path), "%s/%s", f->base, rel);
	return f->path;
}

static void
write_file(const char *path, const char *text)
{
	FILE *fp = fopen(path, "w");

	assert_non_null(fp);
	assert_int_equal(fputs(text, fp) >= 0, 1);
	assert_int_equal(fclose(fp), 0);
}

static void
expect_file(const char *path, const char *text)
{
	char buf[256] = {0};
	FILE *fp = fopen(path, "r");
	size_t n;

	assert_non_null(fp);
	n = fread(buf, 1, sizeof(buf) - 1, fp);
	fclose(fp);
	buf[n] = '\0';
	assert_string_equal(buf, text);
}

static void
need_root(void)
{
	if (geteuid() != 0)
		skip();
}

static void
test_dir_create(void **state)
{
	struct fx *f = *state;
	struct stat st;
	int dfd = -1;

	assert_int_equal(tk_fs_dir_open(at(f, "a/b/c"), 0, &dfd), TK_ERR_NOT_FOUND);
	assert_int_equal(dfd, -1);
	assert_int_equal(tk_fs_dir_open(at(f, "a/b/c"), TK_FS_DIR_CREATE, &dfd), TK_OK);
	assert_true(dfd >= 0);
	tk_fs_close(&dfd);
	assert_int_equal(dfd, -1);
	/* the directory and the parents it made: 0700 */
	assert_int_equal(stat(at(f, "a/b/c"), &st), 0);
	assert_int_equal(st.st_mode & 0777, 0700);
	assert_int_equal(stat(at(f, "a"), &st), 0);
	assert_int_equal(st.st_mode & 0777, 0700);
	/* an existing private directory of ours is fine, created or not */
	assert_int_equal(tk_fs_dir_open(at(f, "a/b/c"), TK_FS_DIR_CREATE, &dfd), TK_OK);
	tk_fs_close(&dfd);
	assert_int_equal(tk_fs_dir_open(at(f, "a/b/c"), 0, &dfd), TK_OK);
	tk_fs_close(&dfd);
	assert_int_equal(tk_fs_dir_open("", 0, &dfd), TK_ERR_INVALID_ARG);
	assert_int_equal(tk_fs_dir_open(NULL, 0, &dfd), TK_ERR_INVALID_ARG);
}

/* What another user (or a careless umask) leaves where our directory goes. */
static void
test_dir_refused(void **state)
{
	struct fx *f = *state;
	char target[4096];
	int dfd = -1;

	/* a symlink to a directory of ours: the attacker's symlink in /tmp
	 * would point at the victim's directory */
	assert_int_equal(mkdir(at(f, "real"), 0700), 0);
	snprintf(target, sizeof(target), "%s", f->path);
	assert_int_equal(symlink(target, at(f, "link")), 0);
	assert_int_equal(tk_fs_dir_open(at(f, "link"), TK_FS_DIR_CREATE, &dfd), TK_ERR_UNSAFE);
	assert_int_equal(dfd, -1);
	/* group-writable, other-writable, readable */
	assert_int_equal(mkdir(at(f, "g"), 0700), 0);
	assert_int_equal(chmod(f->path, 0770), 0);
	assert_int_equal(tk_fs_dir_open(f->path, TK_FS_DIR_CREATE, &dfd), TK_ERR_UNSAFE);
	assert_int_equal(tk_fs_dir_open(f->path, TK_FS_DIR_READABLE, &dfd), TK_ERR_UNSAFE);
	assert_int_equal(chmod(f->path, 0703), 0);
	assert_int_equal(tk_fs_dir_open(f->path, TK_FS_DIR_READABLE, &dfd), TK_ERR_UNSAFE);
	assert_int_equal(chmod(f->path, 0755), 0);
	assert_int_equal(tk_fs_dir_open(f->path, 0, &dfd), TK_ERR_UNSAFE);
	/* a home directory that is 0755 holds the user's own state files */
	assert_int_equal(tk_fs_dir_open(f->path, TK_FS_DIR_READABLE, &dfd), TK_OK);
	tk_fs_close(&dfd);
	/* a file, a FIFO where the directory goes */
	write_file(at(f, "file"), "x");
	assert_int_equal(tk_fs_dir_open(f->path, TK_FS_DIR_CREATE, &dfd), TK_ERR_UNSAFE);
	assert_int_equal(mkfifo(at(f, "fifo"), 0600), 0);
	assert_int_equal(tk_fs_dir_open(f->path, TK_FS_DIR_CREATE, &dfd), TK_ERR_UNSAFE);
	/* the sticky, world-writable /tmp itself is nobody's private directory */
	assert_int_equal(tk_fs_dir_open("/tmp", TK_FS_DIR_READABLE, &dfd), TK_ERR_UNSAFE);
}

static void
test_dir_other_owner(void **state)
{
	struct fx *f = *state;
	int dfd = -1;
	char name[64];

	need_root();
	/* /tmp/tokenkit-<uid> made first by someone else, private to them */
	assert_int_equal(mkdir(at(f, "theirs"), 0700), 0);
	assert_int_equal(chown(f->path, OTHER_UID, OTHER_UID), 0);
	assert_int_equal(tk_fs_dir_open(f->path, TK_FS_DIR_CREATE, &dfd), TK_ERR_UNSAFE);
	assert_int_equal(tk_fs_dir_open(f->path, TK_FS_DIR_READABLE, &dfd), TK_ERR_UNSAFE);
	assert_int_equal(tk_fs_parent_open(at(f, "theirs/recovery.jsonl"), TK_FS_DIR_CREATE, &dfd,
	                                   name, sizeof(name)),
	                 TK_ERR_UNSAFE);
	assert_int_equal(dfd, -1);
}

static void
test_parent_open(void **state)
{
	struct fx *f = *state;
	char name[16];
	int dfd = -1;

	assert_int_equal(tk_fs_parent_open(at(f, "d/file.jsonl"), TK_FS_DIR_CREATE, &dfd, name,
	                                   sizeof(name)),
	                 TK_OK);
	assert_string_equal(name, "file.jsonl");
	tk_fs_close(&dfd);
	assert_int_equal(tk_fs_parent_open(at(f, "d/"), 0, &dfd, name, sizeof(name)),
	                 TK_ERR_INVALID_ARG);
	assert_int_equal(tk_fs_parent_open(at(f, "d/.."), 0, &dfd, name, sizeof(name)),
	                 TK_ERR_INVALID_ARG);
	assert_int_equal(tk_fs_parent_open(at(f, "d/."), 0, &dfd, name, sizeof(name)),
	                 TK_ERR_INVALID_ARG);
	assert_int_equal(
	        tk_fs_parent_open(at(f, "d/a-much-longer-name"), 0, &dfd, name, sizeof(name)),
	        TK_ERR_TOO_LONG);
	assert_int_equal(dfd, -1);
	assert_false(tk_fs_name_ok("a/b"));
	assert_false(tk_fs_name_ok(""));
	assert_true(tk_fs_name_ok(".hidden"));
}

static int
private_dir(struct fx *f, const char *rel)
{
	int dfd = -1;

	assert_int_equal(tk_fs_dir_open(at(f, rel), TK_FS_DIR_CREATE, &dfd), TK_OK);
	return dfd;
}

static void
test_read(void **state)
{
	struct fx *f = *state;
	int dfd = private_dir(f, "d");
	uint8_t *p = (uint8_t *)"x";
	size_t n = 7;

	write_file(at(f, "d/ok"), "hello");
	assert_int_equal(tk_fs_read(dfd, "ok", 5, &p, &n), TK_OK);
	assert_int_equal(n, 5);
	assert_memory_equal(p, "hello", 6); /* NUL-terminated */
	free(p);
	/* over the cap: nothing read */
	assert_int_equal(tk_fs_read(dfd, "ok", 4, &p, &n), TK_ERR_TOO_LONG);
	assert_null(p);
	assert_int_equal(n, 0);
	assert_int_equal(tk_fs_read(dfd, "missing", 100, &p, &n), TK_ERR_NOT_FOUND);
	assert_int_equal(tk_fs_read(dfd, "../d/ok", 100, &p, &n), TK_ERR_INVALID_ARG);
	tk_fs_close(&dfd);
}

/* An oversized file: refused by its size, without reading or allocating
 * it (a sparse 4 GiB file costs no disk). */
static void
test_read_huge(void **state)
{
	struct fx *f = *state;
	int dfd = private_dir(f, "d"), fd;
	uint8_t *p = NULL;
	size_t n = 0;

	fd = open(at(f, "d/huge"), O_WRONLY | O_CREAT | O_EXCL, 0600);
	assert_true(fd >= 0);
	assert_int_equal(ftruncate(fd, (off_t)4 << 30), 0);
	close(fd);
	assert_int_equal(tk_fs_read(dfd, "huge", 8u << 20, &p, &n), TK_ERR_TOO_LONG);
	assert_null(p);
	tk_fs_close(&dfd);
}

/* Planted where our file goes: a symlink to the victim's file, a FIFO
 * (which would block an open without O_NONBLOCK), a hard link, a
 * directory, a file of another user. */
static void
test_open_planted(void **state)
{
	struct fx *f = *state;
	int dfd = private_dir(f, "d"), fd = -1;
	uint8_t *p = NULL;
	size_t n = 0;
	char victim[4096];

	write_file(at(f, "victim"), "precious");
	snprintf(victim, sizeof(victim), "%s", f->path);
	assert_int_equal(symlink(victim, at(f, "d/link")), 0);
	assert_int_equal(tk_fs_read(dfd, "link", 100, &p, &n), TK_ERR_UNSAFE);
	assert_int_equal(tk_fs_open(dfd, "link", O_WRONLY | O_APPEND | O_CREAT, &fd),
	                 TK_ERR_UNSAFE);
	assert_int_equal(fd, -1);
	/* a dangling symlink: O_CREAT would create its target */
	snprintf(victim, sizeof(victim), "%s/created-through-link", f->base);
	assert_int_equal(symlink(victim, at(f, "d/dangling")), 0);
	assert_int_equal(tk_fs_open(dfd, "dangling", O_RDWR | O_CREAT, &fd), TK_ERR_UNSAFE);
	assert_int_equal(access(victim, F_OK), -1);
	snprintf(victim, sizeof(victim), "%s/victim", f->base);
	expect_file(victim, "precious");

	assert_int_equal(mkfifo(at(f, "d/fifo"), 0600), 0);
	assert_int_equal(tk_fs_read(dfd, "fifo", 100, &p, &n), TK_ERR_UNSAFE);
	assert_int_equal(tk_fs_open(dfd, "fifo", O_WRONLY | O_APPEND | O_CREAT, &fd),
	                 TK_ERR_UNSAFE);
	assert_int_equal(tk_fs_open(dfd, "fifo", O_RDWR | O_CREAT, &fd), TK_ERR_UNSAFE);

	assert_int_equal(link(victim, at(f, "d/hard")), 0);
	assert_int_equal(tk_fs_open(dfd, "hard", O_WRONLY | O_APPEND | O_CREAT, &fd),
	                 TK_ERR_UNSAFE);
	expect_file(victim, "precious");

	assert_int_equal(mkdir(at(f, "d/dir"), 0700), 0);
	assert_int_equal(tk_fs_read(dfd, "dir", 100, &p, &n), TK_ERR_UNSAFE);
	assert_int_equal(tk_fs_open(dfd, "dir", O_WRONLY | O_APPEND | O_CREAT, &fd), TK_ERR_UNSAFE);
	assert_int_equal(tk_fs_write_atomic(dfd, "dir", (const uint8_t *)"x", 1), TK_ERR_UNSAFE);

	assert_int_equal(tk_fs_open(dfd, "new", O_RDONLY | O_TRUNC, &fd), TK_ERR_INVALID_ARG);
	assert_int_equal(tk_fs_open(dfd, "new", O_WRONLY | O_APPEND | O_CREAT, &fd), TK_OK);
	assert_true(fd >= 0);
	tk_fs_close(&fd);
	tk_fs_close(&dfd);
	assert_null(p);
}

static void
test_open_other_owner(void **state)
{
	struct fx *f = *state;
	int dfd, fd = -1;
	uint8_t *p = NULL;
	size_t n = 0;

	need_root();
	dfd = private_dir(f, "d");
	write_file(at(f, "d/theirs"), "planted");
	assert_int_equal(chown(f->path, OTHER_UID, OTHER_UID), 0);
	assert_int_equal(tk_fs_read(dfd, "theirs", 100, &p, &n), TK_ERR_UNSAFE);
	assert_int_equal(tk_fs_open(dfd, "theirs", O_WRONLY | O_APPEND, &fd), TK_ERR_UNSAFE);
	tk_fs_close(&dfd);
}

static int
count_entries(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	int n = 0;

	assert_non_null(d);
	while ((e = readdir(d)) != NULL)
		if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0)
			n++;
	closedir(d);
	return n;
}

static void
test_write_atomic(void **state)
{
	struct fx *f = *state;
	int dfd = private_dir(f, "d");
	struct stat st;
	char victim[4096], pred[4096];

	assert_int_equal(tk_fs_write_atomic(dfd, "state", (const uint8_t *)"one", 3), TK_OK);
	expect_file(at(f, "d/state"), "one");
	assert_int_equal(stat(f->path, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0600);
	assert_int_equal(tk_fs_write_atomic(dfd, "state", (const uint8_t *)"two!", 4), TK_OK);
	expect_file(at(f, "d/state"), "two!");
	assert_int_equal(tk_fs_write_atomic(dfd, "empty", NULL, 0), TK_OK);
	/* no temporary file is left behind */
	assert_int_equal(count_entries(at(f, "d")), 2);

	/* a symlink planted at the target is replaced, never followed */
	write_file(at(f, "victim"), "precious");
	snprintf(victim, sizeof(victim), "%s", f->path);
	assert_int_equal(unlink(at(f, "d/state")), 0);
	assert_int_equal(symlink(victim, at(f, "d/state")), 0);
	/* and the names the old code used for its temporary file */
	snprintf(pred, sizeof(pred), "%s/d/state.tmp.%ld", f->base, (long)getpid());
	assert_int_equal(symlink(victim, pred), 0);
	assert_int_equal(tk_fs_write_atomic(dfd, "state", (const uint8_t *)"three", 5), TK_OK);
	assert_int_equal(lstat(at(f, "d/state"), &st), 0);
	assert_true(S_ISREG(st.st_mode));
	expect_file(at(f, "d/state"), "three");
	expect_file(victim, "precious");

	assert_int_equal(tk_fs_write_atomic(dfd, "a/b", (const uint8_t *)"x", 1),
	                 TK_ERR_INVALID_ARG);
	assert_int_equal(tk_fs_write_atomic(-1, "x", (const uint8_t *)"x", 1), TK_ERR_INVALID_ARG);
	tk_fs_close(&dfd);
}

/* A writer killed at any instant leaves the old file or the new one, whole:
 * a child rewrites the file with two different contents in a loop and is
 * SIGKILLed at a random moment, many times. */
static void
test_write_crash(void **state)
{
	struct fx *f = *state;
	enum { A_LEN = 200000, B_LEN = 70000, ROUNDS = 40 };
	uint8_t *a = malloc(A_LEN), *b = malloc(B_LEN), *p = NULL;
	int dfd = private_dir(f, "d");
	unsigned seed = (unsigned)time(NULL);
	int seen_a = 0, seen_b = 0;
	size_t n = 0;

	assert_non_null(a);
	assert_non_null(b);
	memset(a, 'A', A_LEN);
	memset(b, 'B', B_LEN);
	assert_int_equal(tk_fs_write_atomic(dfd, "f", a, A_LEN), TK_OK);
	for (int round = 0; round < ROUNDS; round++) {
		struct timespec ts = {0, (long)(rand_r(&seed) % 20000) * 1000L};
		pid_t pid = fork();
		int st;

		assert_true(pid >= 0);
		if (pid == 0) {
			for (unsigned k = 0;; k++)
				(void)tk_fs_write_atomic(dfd, "f", k & 1 ? b : a,
				                         k & 1 ? B_LEN : A_LEN);
		}
		nanosleep(&ts, NULL);
		kill(pid, SIGKILL);
		assert_int_equal(waitpid(pid, &st, 0), pid);
		assert_int_equal(tk_fs_read(dfd, "f", 1u << 20, &p, &n), TK_OK);
		if (n == A_LEN && memcmp(p, a, A_LEN) == 0)
			seen_a++;
		else if (n == B_LEN && memcmp(p, b, B_LEN) == 0)
			seen_b++;
		else
			fail_msg("round %d: a file of %zu bytes, neither the old nor the new",
			         round, n);
		free(p);
		p = NULL;
	}
	print_message("atomic write: %d kills left A, %d left B\n", seen_a, seen_b);
	tk_fs_close(&dfd);
	free(a);
	free(b);
}

int
main(void)
{
	/* clang-format off */
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_dir_create, setup, teardown),
		cmocka_unit_test_setup_teardown(test_dir_refused, setup, teardown),
		cmocka_unit_test_setup_teardown(test_dir_other_owner, setup, teardown),
		cmocka_unit_test_setup_teardown(test_parent_open, setup, teardown),
		cmocka_unit_test_setup_teardown(test_read, setup, teardown),
		cmocka_unit_test_setup_teardown(test_read_huge, setup, teardown),
		cmocka_unit_test_setup_teardown(test_open_planted, setup, teardown),
		cmocka_unit_test_setup_teardown(test_open_other_owner, setup, teardown),
		cmocka_unit_test_setup_teardown(test_write_atomic, setup, teardown),
		cmocka_unit_test_setup_teardown(test_write_crash, setup, teardown),
	};
	/* clang-format on */

	return cmocka_run_group_tests(tests, NULL, NULL);
}
