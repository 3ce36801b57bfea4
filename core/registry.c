/* tokenkit: the registry's stores (see include/tokenkit/registry.h).
 *
 * A handle holds the store directory opened and checked once (fsutil), and
 * the identity it found there: the content of "store-id" and that file's
 * stat (device, inode, size, change and modification times). The identity
 * file is written once, when the store is made, and never again, so any
 * difference in that stat means the store was replaced, restored or wiped.
 * Every operation stats "<path>/store-id" by path (not through the
 * directory descriptor, which would still see the old directory after a
 * rename) before it starts and again when it is done: a read or a write
 * that might have touched another store than the path names fails with
 * TK_ERR_STORE_CHANGED, and so does everything after it on the handle until
 * tk_registry_reopen.
 *
 * Writers of one store serialise on flock() of the store directory (a
 * kill -9 releases it), read the record under the lock, compare its
 * generation with the one the caller based its change on, and replace the
 * file atomically (tk_fs_write_atomic). Readers take no lock: a rename is
 * atomic, so they see the old record or the new one. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <tokenkit/err.h>
#include <tokenkit/log.h>

#include "clock.h"
#include "env.h"
#include "fsutil.h"
#include "registry_int.h"
#include "registry_priv.h"

#ifndef TK_SYSTEM_REGISTRY_DIR
#define TK_SYSTEM_REGISTRY_DIR "/var/lib/tokenkit/registry"
#endif
#define PATH_CAP 4096
#define LOCK_WAIT_MS 2000
#define STORE_ID_MAX 4096

struct tk_registry {
	char path[PATH_CAP];
	unsigned flags;
	int dfd;
	struct stat id_st;
	tk_reg_store_id_t id;
	bool stale; /* the store changed under the handle: until tk_registry_reopen */
};

void
tk_registry_opts_init(tk_registry_opts_t *o)
{
	if (o != NULL)
		memset(o, 0, sizeof(*o));
}

int
tk_registry_default_path(unsigned flags, char *out, size_t cap)
{
	const char *base;
	int n;

	if (cap > 0)
		out[0] = '\0';
	if (flags & TK_REGISTRY_SYSTEM) {
		base = tk_env("TOKENKIT_SYSTEM_REGISTRY");
		n = snprintf(out, cap, "%s",
		             base != NULL && base[0] == '/' ? base : TK_SYSTEM_REGISTRY_DIR);
	} else if (!tk_env_files_allowed()) {
		return TK_ERR_NOT_SUPPORTED;
	} else if ((base = tk_env("XDG_STATE_HOME")) != NULL && base[0] == '/') {
		n = snprintf(out, cap, "%s/tokenkit/registry", base);
	} else if ((base = tk_env("HOME")) != NULL && base[0] == '/') {
		n = snprintf(out, cap, "%s/.local/state/tokenkit/registry", base);
	} else {
		return TK_ERR_NOT_FOUND;
	}
	if (n < 0 || (size_t)n >= cap) {
		if (cap > 0)
			out[0] = '\0';
		return TK_ERR_TOO_LONG;
	}
	return TK_OK;
}

static bool
system_store(const tk_registry_t *reg)
{
	return (reg->flags & TK_REGISTRY_SYSTEM) != 0;
}

static int
read_file(const tk_registry_t *reg, const char *name, size_t max, uint8_t **data, size_t *len)
{
	return system_store(reg) ? tk_fs_read_system(reg->dfd, name, max, data, len)
	                         : tk_fs_read(reg->dfd, name, max, data, len);
}

static int
write_file(const tk_registry_t *reg, const char *name, const uint8_t *data, size_t len)
{
	/* the system store's files are read by every user */
	return tk_fs_write_atomic_mode(reg->dfd, name, data, len, system_store(reg) ? 0644 : 0600);
}

/* The store's write lock, bounded: a writer stuck while holding it (stopped
 * in a debugger) costs the others LOCK_WAIT_MS, then TK_ERR_BUSY. */
static int
lock_store(const tk_registry_t *reg)
{
	int64_t end = tk_now_ms() + LOCK_WAIT_MS;
	long pause_us = 200;

	for (;;) {
		if (flock(reg->dfd, LOCK_EX | LOCK_NB) == 0)
			return TK_OK;
		if (errno != EWOULDBLOCK && errno != EINTR) {
			tk_log_debug("registry: %s: lock: %s", reg->path, strerror(errno));
			return TK_ERR_IO;
		}
		if (tk_now_ms() >= end) {
			tk_log_warn("registry: %s: another writer held the store's lock for %d ms",
			            reg->path, LOCK_WAIT_MS);
			return TK_ERR_BUSY;
		}
		struct timespec ts = {0, pause_us * 1000};

		nanosleep(&ts, NULL);
		if (pause_us < 5000)
			pause_us *= 2;
	}
}

static void
unlock_store(const tk_registry_t *reg)
{
	(void)flock(reg->dfd, LOCK_UN);
}

static bool
same_stat(const struct stat *a, const struct stat *b)
{
	return a->st_dev == b->st_dev && a->st_ino == b->st_ino && a->st_size == b->st_size &&
	       a->st_ctim.tv_sec == b->st_ctim.tv_sec && a->st_ctim.tv_nsec == b->st_ctim.tv_nsec &&
	       a->st_mtim.tv_sec == b->st_mtim.tv_sec && a->st_mtim.tv_nsec == b->st_mtim.tv_nsec;
}

static int
id_path(const tk_registry_t *reg, char *out, size_t cap)
{
	int n = snprintf(out, cap, "%s/%s", reg->path, TK_REG_STORE_ID);

	return n < 0 || (size_t)n >= cap ? TK_ERR_TOO_LONG : TK_OK;
}

/* Make the store's identity (the store lock held). */
static int
create_identity(tk_registry_t *reg)
{
	tk_reg_store_id_t id;
	uint8_t *data = NULL;
	size_t len = 0;
	int r;

	if (getrandom(id.id, sizeof(id.id), 0) != (ssize_t)sizeof(id.id))
		return TK_ERR_IO;
	id.created = tk_reg_now_us();
	if ((r = tk_reg_store_id_encode(&id, &data, &len)) != TK_OK)
		return r;
	r = write_file(reg, TK_REG_STORE_ID, data, len);
	free(data);
	if (r == TK_OK)
		tk_log_info("registry: %s: new store", reg->path);
	return r;
}

/* Read (and with create, make) the identity; remember its stat. */
static int
load_identity(tk_registry_t *reg, bool create)
{
	char ip[PATH_CAP + 16];
	struct stat by_path, by_fd;
	uint8_t *data = NULL;
	size_t len = 0;
	int r;

	r = read_file(reg, TK_REG_STORE_ID, STORE_ID_MAX, &data, &len);
	if (r == TK_ERR_NOT_FOUND && create) {
		if ((r = lock_store(reg)) != TK_OK)
			return r;
		/* another process may have made it meanwhile */
		r = read_file(reg, TK_REG_STORE_ID, STORE_ID_MAX, &data, &len);
		if (r == TK_ERR_NOT_FOUND && (r = create_identity(reg)) == TK_OK)
			r = read_file(reg, TK_REG_STORE_ID, STORE_ID_MAX, &data, &len);
		unlock_store(reg);
	}
	if (r != TK_OK)
		goto out;
	if ((r = tk_reg_store_id_decode(data, len, &reg->id)) != TK_OK) {
		tk_log_warn("registry: %s/%s: %s", reg->path, TK_REG_STORE_ID, tk_strerror(r));
		goto out;
	}
	/* The directory we hold and the one the path names are the same. */
	if ((r = id_path(reg, ip, sizeof(ip))) != TK_OK)
		goto out;
	if (fstatat(reg->dfd, TK_REG_STORE_ID, &by_fd, AT_SYMLINK_NOFOLLOW) != 0 ||
	    stat(ip, &by_path) != 0 || !same_stat(&by_fd, &by_path)) {
		r = TK_ERR_STORE_CHANGED;
		goto out;
	}
	reg->id_st = by_path;
out:
	free(data);
	return r;
}

static int
open_store(tk_registry_t *reg)
{
	bool sys = system_store(reg);
	bool create = !(reg->flags & TK_REGISTRY_NO_CREATE) && (!sys || geteuid() == 0);
	int r;

	tk_fs_close(&reg->dfd);
	r = tk_fs_dir_open(reg->path,
	                   sys      ? TK_FS_DIR_SYSTEM
	                   : create ? TK_FS_DIR_CREATE
	                            : 0,
	                   &reg->dfd);
	if (r == TK_ERR_UNSAFE)
		tk_log_warn("registry: %s refused: not a %s directory of uid %u", reg->path,
		            sys ? "system (root's, not writable by others)" : "private",
		            (unsigned)geteuid());
	if (r == TK_OK && (r = load_identity(reg, create)) == TK_ERR_UNSAFE)
		tk_log_warn("registry: %s/%s refused (not a file of ours)", reg->path,
		            TK_REG_STORE_ID);
	if (r != TK_OK)
		tk_fs_close(&reg->dfd);
	return r;
}

int
tk_registry_open(const tk_registry_opts_t *opts, tk_registry_t **out)
{
	tk_registry_opts_t defaults;
	tk_registry_t *reg;
	int r;

	if (out == NULL)
		return TK_ERR_INVALID_ARG;
	*out = NULL;
	if (opts == NULL) {
		tk_registry_opts_init(&defaults);
		opts = &defaults;
	}
	/* a set-uid program uses no user's store, whoever names it */
	if (!(opts->flags & TK_REGISTRY_SYSTEM) && !tk_env_files_allowed())
		return TK_ERR_NOT_SUPPORTED;
	if ((reg = calloc(1, sizeof(*reg))) == NULL)
		return TK_ERR_NO_MEMORY;
	reg->dfd = -1;
	reg->flags = opts->flags;
	if (opts->path != NULL) {
		if (opts->path[0] == '\0' || strlen(opts->path) >= sizeof(reg->path)) {
			r = opts->path[0] == '\0' ? TK_ERR_INVALID_ARG : TK_ERR_TOO_LONG;
			goto fail;
		}
		snprintf(reg->path, sizeof(reg->path), "%s", opts->path);
	} else if ((r = tk_registry_default_path(opts->flags, reg->path, sizeof(reg->path))) !=
	           TK_OK) {
		goto fail;
	}
	if ((r = open_store(reg)) != TK_OK)
		goto fail;
	*out = reg;
	return TK_OK;
fail:
	tk_registry_free(&reg);
	return r;
}

void
tk_registry_free(tk_registry_t **rp)
{
	tk_registry_t *reg;

	if (rp == NULL || (reg = *rp) == NULL)
		return;
	tk_fs_close(&reg->dfd);
	free(reg);
	*rp = NULL;
}

const char *
tk_registry_path(const tk_registry_t *reg)
{
	return reg != NULL ? reg->path : "";
}

unsigned
tk_registry_flags(const tk_registry_t *reg)
{
	return reg != NULL ? reg->flags : 0;
}

void
tk_registry_identity(const tk_registry_t *reg, char id[33], uint64_t *created)
{
	static const char hexd[] = "0123456789abcdef";

	for (size_t i = 0; i < TK_REG_ID_LEN; i++) {
		id[2 * i] = reg != NULL ? hexd[reg->id.id[i] >> 4] : '0';
		id[2 * i + 1] = reg != NULL ? hexd[reg->id.id[i] & 15] : '0';
	}
	id[32] = '\0';
	if (created != NULL)
		*created = reg != NULL ? reg->id.created : 0;
}

bool
tk_registry_same_identity(const tk_registry_t *a, const tk_registry_t *b)
{
	return a != NULL && b != NULL && memcmp(a->id.id, b->id.id, TK_REG_ID_LEN) == 0 &&
	       a->id.created == b->id.created;
}

int
tk_registry_check(tk_registry_t *reg)
{
	char ip[PATH_CAP + 16];
	struct stat st;

	if (reg == NULL)
		return TK_ERR_INVALID_ARG;
	if (reg->stale)
		return TK_ERR_STORE_CHANGED;
	if (id_path(reg, ip, sizeof(ip)) != TK_OK || stat(ip, &st) != 0 ||
	    !same_stat(&st, &reg->id_st)) {
		tk_log_info("registry: %s: the store changed under this handle (replaced, restored "
		            "or wiped); every call fails until it is reopened",
		            reg->path);
		reg->stale = true;
		return TK_ERR_STORE_CHANGED;
	}
	return TK_OK;
}

int
tk_registry_reopen(tk_registry_t *reg, bool *changed)
{
	tk_reg_store_id_t before;
	int r;

	if (changed != NULL)
		*changed = false;
	if (reg == NULL)
		return TK_ERR_INVALID_ARG;
	before = reg->id;
	if ((r = open_store(reg)) != TK_OK) {
		reg->stale = true;
		return r;
	}
	reg->stale = false;
	if (changed != NULL)
		*changed = memcmp(before.id, reg->id.id, TK_REG_ID_LEN) != 0 ||
		           before.created != reg->id.created;
	return TK_OK;
}

/* ---- records -------------------------------------------------------------------- */

/* Read and parse one record file (any state, tombstones included). A file
 * that is there but does not parse is logged with its name. */
static int
read_record(const tk_registry_t *reg, const char *name, tk_registration_t **out)
{
	uint8_t *data = NULL;
	size_t len = 0;
	int r;

	*out = NULL;
	r = read_file(reg, name, TK_REG_RECORD_MAX, &data, &len);
	if (r == TK_OK)
		r = tk_reg_decode(data, len, out);
	free(data);
	if (r != TK_OK && r != TK_ERR_NOT_FOUND && r != TK_ERR_NO_MEMORY)
		tk_log_warn("registry: skipping %s/%s: %s%s", reg->path, name, tk_strerror(r),
		            r == TK_ERR_NOT_SUPPORTED ? " (a record of another format version)"
		                                      : "");
	return r;
}

int
tk_registry_read_name(tk_registry_t *reg, const char *name, tk_registration_t **out)
{
	char provider[TK_REG_PROVIDER_MAX + 1], instance[TK_REG_INSTANCE_MAX + 1];
	int r;

	*out = NULL;
	if (!tk_reg_file_parse(name, provider, instance))
		return TK_ERR_INVALID_ARG;
	if ((r = tk_registry_check(reg)) != TK_OK)
		return r;
	r = read_record(reg, name, out);
	if (r == TK_OK &&
	    (strcmp((*out)->provider, provider) != 0 || strcmp((*out)->instance, instance) != 0)) {
		tk_log_warn("registry: skipping %s/%s: it holds %s/%s", reg->path, name,
		            (*out)->provider, (*out)->instance);
		tk_registration_free(out);
		r = TK_ERR_MALFORMED;
	}
	if (r == TK_OK && (r = tk_reg_set_store(*out, reg->path)) != TK_OK)
		tk_registration_free(out);
	/* what we read came from the store the path names */
	if (tk_registry_check(reg) != TK_OK) {
		tk_registration_free(out);
		return TK_ERR_STORE_CHANGED;
	}
	return r;
}

int
tk_registry_get(tk_registry_t *reg, const char *provider, const char *instance,
                tk_registration_t **out)
{
	char name[TK_REG_NAME_MAX];
	int r;

	if (out != NULL)
		*out = NULL;
	if (reg == NULL || out == NULL)
		return TK_ERR_INVALID_ARG;
	if ((r = tk_reg_file_name(provider, instance, name, sizeof(name))) != TK_OK)
		return r;
	if ((r = tk_registry_read_name(reg, name, out)) != TK_OK)
		return r;
	if ((*out)->removed) {
		tk_registration_free(out);
		return TK_ERR_NOT_FOUND;
	}
	return TK_OK;
}

static int
cmp_reg(const void *a, const void *b)
{
	const tk_registration_t *x = *(tk_registration_t *const *)a;
	const tk_registration_t *y = *(tk_registration_t *const *)b;
	int c = strcmp(x->provider, y->provider);

	return c != 0 ? c : strcmp(x->instance, y->instance);
}

int
tk_registry_scan(tk_registry_t *reg, bool tombstones, tk_registration_t ***out, size_t *count)
{
	tk_registration_t **list = NULL, *one;
	size_t n = 0, cap = 0;
	struct dirent *de;
	DIR *d = NULL;
	int fd, r = TK_OK;

	*out = NULL;
	*count = 0;
	if ((r = tk_registry_check(reg)) != TK_OK)
		return r;
	if ((fd = dup(reg->dfd)) < 0 || (d = fdopendir(fd)) == NULL) {
		if (fd >= 0)
			close(fd);
		return TK_ERR_IO;
	}
	rewinddir(d);
	while ((de = readdir(d)) != NULL) {
		if (de->d_name[0] == '.' || tk_registry_read_name(reg, de->d_name, &one) != TK_OK)
			continue; /* temporary files, store-id, bad records (logged) */
		if (one->removed && !tombstones) {
			tk_registration_free(&one);
			continue;
		}
		if (n == cap) {
			size_t ncap = cap ? cap * 2 : 16;
			tk_registration_t **nl = realloc(list, ncap * sizeof(*nl));

			if (nl == NULL) {
				tk_registration_free(&one);
				r = TK_ERR_NO_MEMORY;
				break;
			}
			list = nl;
			cap = ncap;
		}
		list[n++] = one;
	}
	closedir(d);
	if (r == TK_OK)
		r = tk_registry_check(reg);
	if (r != TK_OK) {
		tk_registry_list_free(&list, n);
		return r;
	}
	if (n > 1)
		qsort(list, n, sizeof(*list), cmp_reg);
	*out = list;
	*count = n;
	return TK_OK;
}

int
tk_registry_list(tk_registry_t *reg, tk_registration_t ***out, size_t *count)
{
	if (out != NULL)
		*out = NULL;
	if (count != NULL)
		*count = 0;
	if (reg == NULL || out == NULL || count == NULL)
		return TK_ERR_INVALID_ARG;
	return tk_registry_scan(reg, false, out, count);
}

void
tk_registry_list_free(tk_registration_t ***list, size_t count)
{
	if (list == NULL || *list == NULL)
		return;
	for (size_t i = 0; i < count; i++)
		tk_registration_free(&(*list)[i]);
	free(*list);
	*list = NULL;
}

/* The compare-and-swap write: next is what to store (its generation and
 * timestamps are set here); with tombstone, the record must be live and
 * becomes removed. */
static int
cas_write(tk_registry_t *reg, tk_registration_t *next, uint64_t expected, bool tombstone,
          uint64_t *gen)
{
	char name[TK_REG_NAME_MAX];
	tk_registration_t *cur = NULL;
	uint8_t *data = NULL;
	size_t len = 0;
	uint64_t cur_gen;
	bool live;
	int r;

	if (system_store(reg) && geteuid() != 0)
		return TK_ERR_NOT_SUPPORTED;
	if ((r = tk_reg_file_name(next->provider, next->instance, name, sizeof(name))) != TK_OK)
		return r;
	if ((r = tk_registry_check(reg)) != TK_OK)
		return r;
	if ((r = lock_store(reg)) != TK_OK)
		return r;
	/* under the lock: the store is still the one we hold, and the record
	 * is what the lock keeps it */
	if ((r = tk_registry_check(reg)) != TK_OK)
		goto out;
	r = read_record(reg, name, &cur);
	if (r != TK_OK && r != TK_ERR_NOT_FOUND && r != TK_ERR_NO_MEMORY) {
		/* unreadable (logged): there is no generation to compare with;
		 * it counts as absent, and the write replaces it */
		r = TK_ERR_NOT_FOUND;
	}
	if (r != TK_OK && r != TK_ERR_NOT_FOUND)
		goto out;
	cur_gen = cur != NULL ? cur->gen : 0;
	live = cur != NULL && !cur->removed;
	if (tombstone && !live) {
		r = TK_ERR_NOT_FOUND;
		goto out;
	}
	if (expected != TK_REG_GEN_ANY && expected != cur_gen && !(expected == 0 && !live)) {
		*gen = live ? cur_gen : 0;
		r = TK_ERR_CONFLICT;
		goto out;
	}
	next->gen = cur_gen + 1;
	next->updated = tk_reg_now_us();
	next->created = live ? cur->created : next->updated;
	next->removed = tombstone;
	if ((r = tk_reg_encode(next, &data, &len)) != TK_OK)
		goto out;
	if ((r = write_file(reg, name, data, len)) != TK_OK) {
		tk_log_warn("registry: cannot write %s/%s: %s", reg->path, name, tk_strerror(r));
		goto out;
	}
	/* It went to the store the path names only if that store is the same
	 * now as before: otherwise nothing is promised. */
	if ((r = tk_registry_check(reg)) != TK_OK)
		goto out;
	*gen = next->gen;
out:
	unlock_store(reg);
	free(data);
	tk_registration_free(&cur);
	return r;
}

int
tk_registry_put(tk_registry_t *reg, tk_registration_t *r, uint64_t expected, uint64_t *gen)
{
	tk_registration_t *next = NULL;
	int res;

	if (gen != NULL)
		*gen = 0;
	if (reg == NULL || r == NULL || gen == NULL || r->removed)
		return TK_ERR_INVALID_ARG;
	if ((res = tk_registration_dup(r, &next)) != TK_OK)
		return res;
	res = cas_write(reg, next, expected, false, gen);
	if (res == TK_OK) {
		r->gen = next->gen;
		r->created = next->created;
		r->updated = next->updated;
	}
	tk_registration_free(&next);
	return res;
}

int
tk_registry_remove(tk_registry_t *reg, const char *provider, const char *instance,
                   uint64_t expected, uint64_t *gen)
{
	tk_registration_t *stone = NULL;
	int r;

	if (gen != NULL)
		*gen = 0;
	if (reg == NULL || gen == NULL)
		return TK_ERR_INVALID_ARG;
	/* a tombstone keeps names only: no items, handles or configuration */
	if ((r = tk_registration_new(provider, instance, &stone)) != TK_OK)
		return r;
	r = cas_write(reg, stone, expected, true, gen);
	tk_registration_free(&stone);
	return r;
}
