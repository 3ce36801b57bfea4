/* Threads and open descriptors of this process, for the leak checks of the
 * test programs (unit tests, fault drivers). Header-only: each program stays
 * one source file. */
#ifndef TK_TEST_PROC_COUNT_H
#define TK_TEST_PROC_COUNT_H

#include <dirent.h>

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

/* Open descriptors, not counting the one that reads the directory. */
static inline int
tk_test_fds(void)
{
	return tk_test_count_dir("/proc/self/fd") - 1;
}

#endif
