/* Threads and open descriptors of this process, for the leak checks of the
 * test programs (unit tests, fault drivers). Header-only: each program stays
 * one source file. */
#ifndef TK_TEST_PROC_COUNT_H
#define TK_TEST_PROC_COUNT_H

#include <dirent.h>
#include <stdbool.h>
#include <string.h>
#include <unistd.h>

/* Entries of a /proc directory, -1 when it cannot be read. */
static inline int
tk_test_count_dir(const char *path)
{
	DIR *d = opendir(path);
	struct dirent *e;
	int n = 0;

	if (d == NULL)
		return -1;
	while ((e = readdir(d)) != NULL)
		if (e->d_name[0] != '.')
			n++;
	closedir(d);
	return n;
}

static inline int
tk_test_threads(void)
{
	return tk_test_count_dir("/proc/self/task");
}

/* A loaded plugin (core/plugin.c) keeps the descriptor it was loaded from
 * for the life of the process, so that its /proc/self/fd/N name never
 * comes to mean another file: that is no leak. */
static inline bool
tk_test_is_plugin_fd(int dfd, const char *name)
{
	char target[4096];
	const char *base;
	ssize_t n = readlinkat(dfd, name, target, sizeof(target) - 1);
	size_t l;

	if (n <= 0)
		return false;
	target[n] = '\0';
	base = strrchr(target, '/');
	base = base != NULL ? base + 1 : target;
	l = strlen(base);
	return (strncmp(base, "driver-", 7) == 0 || strncmp(base, "reader-", 7) == 0) && l > 3 &&
	       strcmp(base + l - 3, ".so") == 0;
}

/* Open descriptors, not counting the one that reads the directory nor
 * those of loaded plugins. */
static inline int
tk_test_fds(void)
{
	DIR *d = opendir("/proc/self/fd");
	struct dirent *e;
	int n = 0;

	if (d == NULL)
		return -1;
	while ((e = readdir(d)) != NULL)
		if (e->d_name[0] != '.' && !tk_test_is_plugin_fd(dirfd(d), e->d_name))
			n++;
	closedir(d);
	return n - 1;
}

#endif
