/* tokenkit: the plugin loader (see plugin.h). */
#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <tokenkit/err.h>
#include <tokenkit/log.h>

#include "driver.h"
#include "env.h"
#include "plugin.h"

#ifndef TK_PLUGIN_DIR
#define TK_PLUGIN_DIR "/usr/local/lib/tokenkit/plugins"
#endif

#define PLUGIN_NAME_MAX TK_PLUGIN_NAME_MAX
#define PLUGIN_MAX 16

struct loaded {
	uint32_t kind;
	char name[PLUGIN_NAME_MAX + 1];
	char path[PATH_MAX];
	const tk_plugin_desc_t *desc;
};

static pthread_mutex_t plugins_lock = PTHREAD_MUTEX_INITIALIZER;
static struct loaded plugins[PLUGIN_MAX];
static size_t nplugins;

/* A fork while another thread loads a plugin would leave the child's copy
 * of plugins_lock held for ever: hold it across fork(). */
static void
plugins_atfork_prepare(void)
{
	pthread_mutex_lock(&plugins_lock);
}

static void
plugins_atfork_release(void)
{
	pthread_mutex_unlock(&plugins_lock);
}

__attribute__((constructor)) static void
plugins_register_atfork(void)
{
	pthread_atfork(plugins_atfork_prepare, plugins_atfork_release, plugins_atfork_release);
}

/* The plugin's log lines go through the host's level and sink. */
static void
host_log(int level, const char *msg)
{
	tk_log(level, "%s", msg);
}

static const tk_plugin_host_t plugin_host = {
        .abi = TK_PLUGIN_ABI,
        .size = sizeof(tk_plugin_host_t),
        .log = host_log,
        .driver = &tk_drv_host,
};

const tk_plugin_host_t *
tk_plugin_host(void)
{
	return &plugin_host;
}

static const char *
kind_name(uint32_t kind)
{
	switch (kind) {
	case TK_PLUGIN_READER:
		return "reader";
	case TK_PLUGIN_DRIVER:
		return "driver";
	case TK_PLUGIN_PROVIDER:
		return "provider";
	default:
		return NULL;
	}
}

static bool
name_ok(const char *name)
{
	size_t n = 0;

	for (; name[n] != '\0'; n++) {
		char c = name[n];

		if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_'))
			return false;
	}
	return n > 0 && n <= PLUGIN_NAME_MAX;
}

/* Owned by root (or, outside the compiled-in directory, the effective
 * uid), and writable by nobody else. */
static bool
trusted(const struct stat *st, bool root_only, const char *what, const char *path)
{
	if (st->st_uid != 0 && (root_only || st->st_uid != geteuid())) {
		tk_log_warn("plugin: %s %s refused: owned by uid %u, not by root%s", what, path,
		            (unsigned)st->st_uid, root_only ? "" : " or the effective uid");
		return false;
	}
	if ((st->st_mode & (S_IWGRP | S_IWOTH)) != 0) {
		tk_log_warn("plugin: %s %s refused: writable by its group or others (mode %04o)",
		            what, path, (unsigned)(st->st_mode & 07777));
		return false;
	}
	return true;
}

/* The loaded object's descriptor, if it is the plugin asked for. */
static int
check_desc(void *h, const char *path, uint32_t kind, const char *name, const tk_plugin_desc_t **out)
{
	tk_plugin_entry_fn entry;
	const tk_plugin_desc_t *d;
	void *sym = dlsym(h, TK_PLUGIN_ENTRY);
	int r;

	*out = NULL;
	if (sym == NULL) {
		tk_log_warn("plugin: %s refused: no entry point %s", path, TK_PLUGIN_ENTRY);
		return TK_ERR_NOT_FOUND;
	}
	/* POSIX: a function's address from dlsym() converts like this. */
	memcpy(&entry, &sym, sizeof(entry));
	d = entry();
	if (d == NULL) {
		tk_log_warn("plugin: %s refused: its entry point returned no descriptor", path);
		return TK_ERR_NOT_FOUND;
	}
	if (d->abi != TK_PLUGIN_ABI) {
		tk_log_warn("plugin: %s refused: built for plugin ABI %u, this tokenkit has ABI %u",
		            path, (unsigned)d->abi, TK_PLUGIN_ABI);
		return TK_ERR_NOT_FOUND;
	}
	if (d->size < sizeof(*d)) {
		tk_log_warn("plugin: %s refused: descriptor of %u bytes, ABI %u has %zu", path,
		            (unsigned)d->size, TK_PLUGIN_ABI, sizeof(*d));
		return TK_ERR_NOT_FOUND;
	}
	if (d->kind != kind || d->name == NULL || strcmp(d->name, name) != 0 || d->table == NULL) {
		tk_log_warn("plugin: %s refused: not the %s plugin '%s'", path, kind_name(kind),
		            name);
		return TK_ERR_NOT_FOUND;
	}
	if (d->init != NULL && (r = d->init(&plugin_host)) != TK_OK) {
		tk_log_warn("plugin: %s refused: its init failed: %s", path, tk_strerror(r));
		return TK_ERR_NOT_FOUND;
	}
	*out = d;
	return TK_OK;
}

/* Load dir/file if both pass the checks. TK_ERR_NOT_FOUND: not there, or
 * refused (logged). */
static int
try_dir(const char *dir, bool root_only, uint32_t kind, const char *name, const char *file,
        char path[PATH_MAX], const tk_plugin_desc_t **out)
{
	char fdpath[64];
	struct stat st;
	int dfd = -1, fd = -1, r = TK_ERR_NOT_FOUND;
	void *h = NULL;

	*out = NULL;
	if (dir[0] != '/') {
		tk_log_warn("plugin: '%s' in TOKENKIT_PLUGIN_PATH is not an absolute path; skipped",
		            dir);
		return TK_ERR_NOT_FOUND;
	}
	if ((size_t)snprintf(path, PATH_MAX, "%s/%s", dir, file) >= PATH_MAX)
		return TK_ERR_NOT_FOUND;
	dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd < 0) {
		tk_log_debug("plugin: %s: %s", dir, strerror(errno));
		goto out;
	}
	fd = openat(dfd, file, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
	if (fd < 0) {
		if (errno == ENOENT)
			tk_log_debug("plugin: no %s", path);
		else if (errno == ELOOP)
			tk_log_warn("plugin: %s refused: a symbolic link", path);
		else
			tk_log_warn("plugin: %s: %s", path, strerror(errno));
		goto out;
	}
	if (fstat(dfd, &st) != 0 || !trusted(&st, root_only, "directory", dir))
		goto out;
	if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
		tk_log_warn("plugin: %s refused: not a regular file", path);
		goto out;
	}
	if (!trusted(&st, root_only, "file", path))
		goto out;
	/* Load the file that was checked, not whatever the path names now. */
	snprintf(fdpath, sizeof(fdpath), "/proc/self/fd/%d", fd);
	h = dlopen(fdpath, RTLD_NOW | RTLD_LOCAL);
	if (h == NULL) {
		tk_log_warn("plugin: %s refused: %s", path, dlerror());
		goto out;
	}
	r = check_desc(h, path, kind, name, out);
	if (r != TK_OK) {
		dlclose(h);
		goto out;
	}
	/* Pinned for the life of the process. Its descriptor stays open too:
	 * the loader knows the object by the name "/proc/self/fd/N", which
	 * must not come to mean another file. */
	(void)dlopen(fdpath, RTLD_NOW | RTLD_NOLOAD | RTLD_NODELETE);
	fd = -1;
	tk_log_info("plugin: loaded %s", path);
out:
	if (fd >= 0)
		close(fd);
	if (dfd >= 0)
		close(dfd);
	return r;
}

int
tk_plugin_load(uint32_t kind, const char *name, const tk_plugin_desc_t **out)
{
	const char *env = NULL, *kn = kind_name(kind);
	char file[PLUGIN_NAME_MAX + 16], path[PATH_MAX] = "";
	char *copy = NULL, *save = NULL, *dir;
	int r = TK_ERR_NOT_FOUND;
	bool privileged = tk_env_privileged();

	if (out != NULL)
		*out = NULL;
	if (out == NULL || kn == NULL || name == NULL || !name_ok(name))
		return TK_ERR_INVALID_ARG;
	snprintf(file, sizeof(file), "%s-%s.so", kn, name);
	pthread_mutex_lock(&plugins_lock);
	for (size_t i = 0; i < nplugins; i++) {
		if (plugins[i].kind == kind && strcmp(plugins[i].name, name) == 0) {
			*out = plugins[i].desc;
			r = TK_OK;
			goto out;
		}
	}
	if (nplugins == PLUGIN_MAX) {
		r = TK_ERR_NO_MEMORY;
		goto out;
	}
	/* A set-uid or set-gid process loads nothing its caller names. */
	if (!privileged)
		env = tk_env("TOKENKIT_PLUGIN_PATH");
	if (env != NULL && (copy = strdup(env)) == NULL) {
		r = TK_ERR_NO_MEMORY;
		goto out;
	}
	for (dir = copy != NULL ? strtok_r(copy, ":", &save) : NULL; dir != NULL && r != TK_OK;
	     dir = strtok_r(NULL, ":", &save))
		r = try_dir(dir, false, kind, name, file, path, out);
	if (r != TK_OK)
		r = try_dir(TK_PLUGIN_DIR, true, kind, name, file, path, out);
	if (r != TK_OK) {
		tk_log_error("plugin: no usable %s plugin '%s': no loadable %s in "
		             "$TOKENKIT_PLUGIN_PATH (%s) or %s; set TOKENKIT_PLUGIN_PATH to the "
		             "directory that holds it (in a build tree: <build>/plugins)",
		             kn, name, file,
		             privileged    ? "ignored in a set-uid or set-gid process"
		             : env != NULL ? env
		                           : "not set",
		             TK_PLUGIN_DIR);
		goto out;
	}
	plugins[nplugins].kind = kind;
	snprintf(plugins[nplugins].name, sizeof(plugins[nplugins].name), "%s", name);
	snprintf(plugins[nplugins].path, sizeof(plugins[nplugins].path), "%s", path);
	plugins[nplugins].desc = *out;
	nplugins++;
out:
	pthread_mutex_unlock(&plugins_lock);
	free(copy);
	return r;
}

const char *
tk_plugin_path(const tk_plugin_desc_t *d)
{
	const char *p = "";

	pthread_mutex_lock(&plugins_lock);
	for (size_t i = 0; d != NULL && i < nplugins; i++)
		if (plugins[i].desc == d)
			p = plugins[i].path; /* entries are never removed or changed */
	pthread_mutex_unlock(&plugins_lock);
	return p;
}

static int
name_cmp(const void *a, const void *b)
{
	return strcmp(a, b);
}

/* Add the plugin names of one directory (prefix "<kind>-", suffix ".so")
 * to names, skipping those already there. */
static void
list_dir(const char *dir, const char *prefix, char (*names)[PLUGIN_NAME_MAX + 1], size_t cap,
         size_t *n, bool *full)
{
	size_t pl = strlen(prefix);
	struct dirent *e;
	DIR *d;

	if (dir[0] != '/' || (d = opendir(dir)) == NULL)
		return;
	while ((e = readdir(d)) != NULL) {
		size_t l = strlen(e->d_name);
		char name[PLUGIN_NAME_MAX + 1];
		bool dup = false;

		if (l <= pl + 3 || strncmp(e->d_name, prefix, pl) != 0 ||
		    strcmp(e->d_name + l - 3, ".so") != 0 || l - pl - 3 > PLUGIN_NAME_MAX)
			continue;
		memcpy(name, e->d_name + pl, l - pl - 3);
		name[l - pl - 3] = '\0';
		if (!name_ok(name))
			continue;
		for (size_t i = 0; i < *n && !dup; i++)
			dup = strcmp(names[i], name) == 0;
		if (dup)
			continue;
		if (*n == cap) {
			*full = true;
			continue;
		}
		memcpy(names[(*n)++], name, sizeof(name));
	}
	closedir(d);
}

int
tk_plugin_list(uint32_t kind, char (*names)[PLUGIN_NAME_MAX + 1], size_t cap, size_t *n)
{
	const char *kn = kind_name(kind), *env = NULL;
	char prefix[16], *copy = NULL, *save = NULL, *dir;
	bool full = false;

	if (n != NULL)
		*n = 0;
	if (kn == NULL || names == NULL || n == NULL)
		return TK_ERR_INVALID_ARG;
	snprintf(prefix, sizeof(prefix), "%s-", kn);
	if (!tk_env_privileged())
		env = tk_env("TOKENKIT_PLUGIN_PATH");
	if (env != NULL && (copy = strdup(env)) == NULL)
		return TK_ERR_NO_MEMORY;
	for (dir = copy != NULL ? strtok_r(copy, ":", &save) : NULL; dir != NULL;
	     dir = strtok_r(NULL, ":", &save))
		list_dir(dir, prefix, names, cap, n, &full);
	list_dir(TK_PLUGIN_DIR, prefix, names, cap, n, &full);
	free(copy);
	if (full)
		tk_log_warn("plugin: more than %zu %s plugins; the rest are not used", cap, kn);
	qsort(names, *n, sizeof(names[0]), name_cmp);
	return TK_OK;
}
