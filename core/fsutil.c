/* tokenkit: safe access to tokenkit's own files (see fsutil.h). */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include <tokenkit/err.h>
#include <tokenkit/log.h>
#include <tokenkit/mem.h>

#include "fsutil.h"

#define PATH_CAP 4096
#define TMP_TRIES 16

void
tk_fs_close(int *fd)
{
	if (fd != NULL && *fd >= 0) {
		(void)close(*fd);
		*fd = -1;
	}
}

bool
tk_fs_name_ok(const char *name)
{
	return name != NULL && name[0] != '\0' && strchr(name, '/') == NULL &&
	       strcmp(name, ".") != 0 && strcmp(name, "..") != 0;
}

/* The checks shared by lstat and fstat: a directory of ours, private. */
static int
dir_st_ok(const char *path, const struct stat *st, unsigned flags)
{
	mode_t forbidden = (flags & (TK_FS_DIR_READABLE | TK_FS_DIR_SYSTEM)) ? 022 : 077;
	bool owner_ok = st->st_uid == geteuid() || ((flags & TK_FS_DIR_SYSTEM) && st->st_uid == 0);

	if (!S_ISDIR(st->st_mode)) {
		tk_log_debug("fs: %s: %s", path,
		             S_ISLNK(st->st_mode) ? "a symbolic link" : "not a directory");
		return TK_ERR_UNSAFE;
	}
	if (!owner_ok) {
		tk_log_debug("fs: %s: owned by uid %u, not %u", path, (unsigned)st->st_uid,
		             (unsigned)geteuid());
		return TK_ERR_UNSAFE;
	}
	if ((st->st_mode & forbidden) != 0) {
		tk_log_debug("fs: %s: mode %04o gives others access", path,
		             (unsigned)(st->st_mode & 07777));
		return TK_ERR_UNSAFE;
	}
	return TK_OK;
}

/* mkdir -p for the parents of path, 0700 for those it makes. Existing
 * parents are left as they are: only the last component must be ours. */
static int
make_parents(const char *path)
{
	char tmp[PATH_CAP];
	size_t l = strlen(path);

	if (l >= sizeof(tmp))
		return TK_ERR_TOO_LONG;
	memcpy(tmp, path, l + 1);
	for (size_t i = 1; i < l; i++) {
		if (tmp[i] != '/')
			continue;
		tmp[i] = '\0';
		if (mkdir(tmp, 0700) != 0 && errno != EEXIST) {
			tk_log_debug("fs: mkdir %s: %s", tmp, strerror(errno));
			return TK_ERR_IO;
		}
		tmp[i] = '/';
	}
	return TK_OK;
}

int
tk_fs_dir_open(const char *path, unsigned flags, int *dfd)
{
	struct stat ls, fs;
	int fd = -1, r;

	if (dfd != NULL)
		*dfd = -1;
	if (path == NULL || path[0] == '\0' || dfd == NULL ||
	    ((flags & TK_FS_DIR_SYSTEM) && (flags & TK_FS_DIR_CREATE)))
		return TK_ERR_INVALID_ARG;
	if (strlen(path) >= PATH_CAP)
		return TK_ERR_TOO_LONG;
	if (lstat(path, &ls) != 0) {
		if (errno != ENOENT) {
			tk_log_debug("fs: %s: %s", path, strerror(errno));
			return TK_ERR_IO;
		}
		if (!(flags & TK_FS_DIR_CREATE))
			return TK_ERR_NOT_FOUND;
		if ((r = make_parents(path)) != TK_OK)
			return r;
		/* EEXIST: someone made it meanwhile; the checks below decide. */
		if (mkdir(path, 0700) != 0 && errno != EEXIST) {
			tk_log_debug("fs: mkdir %s: %s", path, strerror(errno));
			return TK_ERR_IO;
		}
		if (lstat(path, &ls) != 0)
			return TK_ERR_IO;
	}
	if ((r = dir_st_ok(path, &ls, flags)) != TK_OK)
		return r;
	fd = open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0) {
		/* ELOOP / ENOTDIR: replaced by a symlink or a file since lstat */
		tk_log_debug("fs: %s: %s", path, strerror(errno));
		return errno == ELOOP || errno == ENOTDIR ? TK_ERR_UNSAFE : TK_ERR_IO;
	}
	if (fstat(fd, &fs) != 0) {
		r = TK_ERR_IO;
		goto fail;
	}
	if (fs.st_dev != ls.st_dev || fs.st_ino != ls.st_ino) {
		tk_log_debug("fs: %s: replaced while it was being checked", path);
		r = TK_ERR_UNSAFE;
		goto fail;
	}
	if ((r = dir_st_ok(path, &fs, flags)) != TK_OK)
		goto fail;
	*dfd = fd;
	return TK_OK;
fail:
	tk_fs_close(&fd);
	return r;
}

int
tk_fs_parent_open(const char *path, unsigned flags, int *dfd, char *name, size_t cap)
{
	char dir[PATH_CAP];
	const char *slash, *base;
	size_t dl, bl;

	if (dfd != NULL)
		*dfd = -1;
	if (name != NULL && cap > 0)
		name[0] = '\0';
	if (path == NULL || dfd == NULL || name == NULL || cap == 0)
		return TK_ERR_INVALID_ARG;
	slash = strrchr(path, '/');
	base = slash != NULL ? slash + 1 : path;
	bl = strlen(base);
	if (bl >= cap)
		return TK_ERR_TOO_LONG;
	memcpy(name, base, bl + 1);
	if (!tk_fs_name_ok(name)) {
		name[0] = '\0';
		return TK_ERR_INVALID_ARG;
	}
	if (slash == NULL) {
		memcpy(dir, ".", 2);
	} else {
		dl = slash == path ? 1 : (size_t)(slash - path); /* "/name": the root */
		if (dl >= sizeof(dir))
			return TK_ERR_TOO_LONG;
		memcpy(dir, path, dl);
		dir[dl] = '\0';
	}
	return tk_fs_dir_open(dir, flags, dfd);
}

/* tk_fs_open; system: a system directory's file (owned by root or the
 * effective uid, no group or other write bits). */
static int
open_checked(int dfd, const char *name, int oflags, bool system, int *fd)
{
	struct stat st;
	bool owner_ok;
	int f, r;

	if (fd != NULL)
		*fd = -1;
	if (dfd < 0 || fd == NULL || !tk_fs_name_ok(name) || (oflags & O_TRUNC) != 0)
		return TK_ERR_INVALID_ARG;
	f = openat(dfd, name, oflags | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC | O_NOCTTY, 0600);
	if (f < 0) {
		int e = errno;

		tk_log_debug("fs: open %s: %s", name, strerror(e));
		if (e == ENOENT)
			return TK_ERR_NOT_FOUND;
		if (e == ENOSPC || e == EDQUOT)
			return TK_ERR_DISK_FULL;
		/* ELOOP: a symlink; ENXIO: a FIFO with no reader (O_WRONLY);
		 * EISDIR: a directory; EEXIST only with the caller's O_EXCL */
		if (e == ELOOP || e == ENXIO || e == EISDIR || e == ENODEV)
			return TK_ERR_UNSAFE;
		return e == EEXIST ? TK_ERR_EXISTS : TK_ERR_IO;
	}
	if (fstat(f, &st) != 0) {
		r = TK_ERR_IO;
		goto fail;
	}
	owner_ok = st.st_uid == geteuid() || (system && st.st_uid == 0);
	if (!S_ISREG(st.st_mode) || !owner_ok || st.st_nlink != 1 ||
	    (system && (st.st_mode & 022) != 0)) {
		tk_log_debug("fs: %s: %s", name,
		             !S_ISREG(st.st_mode) ? "not a regular file"
		             : !owner_ok          ? "owned by another user"
		             : st.st_nlink != 1   ? "has other hard links"
		                                  : "writable by others");
		r = TK_ERR_UNSAFE;
		goto fail;
	}
	*fd = f;
	return TK_OK;
fail:
	(void)close(f);
	return r;
}

int
tk_fs_open(int dfd, const char *name, int oflags, int *fd)
{
	return open_checked(dfd, name, oflags, false, fd);
}

static int
read_checked(int dfd, const char *name, bool system, size_t max, uint8_t **out, size_t *len)
{
	struct stat st;
	uint8_t *p = NULL;
	size_t got = 0, size = 0;
	int fd = -1, r;

	if (out != NULL)
		*out = NULL;
	if (len != NULL)
		*len = 0;
	if (out == NULL || len == NULL)
		return TK_ERR_INVALID_ARG;
	if ((r = open_checked(dfd, name, O_RDONLY, system, &fd)) != TK_OK)
		return r;
	if (fstat(fd, &st) != 0 || st.st_size < 0) {
		r = TK_ERR_IO;
		goto out;
	}
	if ((uint64_t)st.st_size > max) {
		tk_log_debug("fs: %s: %lld bytes, more than %zu", name, (long long)st.st_size, max);
		r = TK_ERR_TOO_LONG;
		goto out;
	}
	size = (size_t)st.st_size;
	if ((p = malloc(size + 1)) == NULL) {
		r = TK_ERR_NO_MEMORY;
		goto out;
	}
	/* A file that grows meanwhile is read to the size fstat gave (an
	 * appended log line is read next time); one that shrinks, to its end. */
	while (got < size) {
		ssize_t n = read(fd, p + got, size - got);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			r = TK_ERR_IO;
			goto out;
		}
		if (n == 0)
			break;
		got += (size_t)n;
	}
	p[got] = '\0';
	*out = p;
	*len = got;
	p = NULL;
	r = TK_OK;
out:
	if (p != NULL)
		tk_freezero(p, size + 1);
	tk_fs_close(&fd);
	return r;
}

int
tk_fs_read(int dfd, const char *name, size_t max, uint8_t **out, size_t *len)
{
	return read_checked(dfd, name, false, max, out, len);
}

int
tk_fs_read_system(int dfd, const char *name, size_t max, uint8_t **out, size_t *len)
{
	return read_checked(dfd, name, true, max, out, len);
}

/* A full file system is worth its own error: the caller can say so. */
static int
io_err(int e)
{
	return e == ENOSPC || e == EDQUOT ? TK_ERR_DISK_FULL : TK_ERR_IO;
}

static int
write_all(int fd, const uint8_t *p, size_t n)
{
	while (n > 0) {
		ssize_t w = write(fd, p, n);

		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0)
			return io_err(errno);
		if (w == 0)
			return TK_ERR_IO;
		p += w;
		n -= (size_t)w;
	}
	return TK_OK;
}

/* ".<name>.tmp-<16 hex digits from getrandom>": another user who can see
 * the directory still cannot guess the next name (the directory is private
 * anyway; O_EXCL is the second line). */
static int
tmp_name(const char *name, char *out, size_t cap)
{
	static const char hexd[] = "0123456789abcdef";
	uint8_t rnd[8];
	char hex[2 * sizeof(rnd) + 1];
	int n;

	if (getrandom(rnd, sizeof(rnd), 0) != (ssize_t)sizeof(rnd))
		return TK_ERR_IO;
	for (size_t i = 0; i < sizeof(rnd); i++) {
		hex[2 * i] = hexd[rnd[i] >> 4];
		hex[2 * i + 1] = hexd[rnd[i] & 15];
	}
	hex[sizeof(hex) - 1] = '\0';
	n = snprintf(out, cap, ".%s.tmp-%s", name, hex);
	return n < 0 || (size_t)n >= cap ? TK_ERR_TOO_LONG : TK_OK;
}

int
tk_fs_write_atomic(int dfd, const char *name, const uint8_t *data, size_t len)
{
	return tk_fs_write_atomic_mode(dfd, name, data, len, 0600);
}

int
tk_fs_write_atomic_mode(int dfd, const char *name, const uint8_t *data, size_t len, unsigned mode)
{
	char tmp[300];
	int fd = -1, r = TK_ERR_IO;
	bool made = false;

	if (dfd < 0 || !tk_fs_name_ok(name) || (data == NULL && len > 0) || (mode & ~0644u) != 0)
		return TK_ERR_INVALID_ARG;
	if (strlen(name) > 255)
		return TK_ERR_TOO_LONG;
	for (int i = 0; i < TMP_TRIES && !made; i++) {
		if ((r = tmp_name(name, tmp, sizeof(tmp))) != TK_OK)
			return r;
		r = tk_fs_open(dfd, tmp, O_WRONLY | O_CREAT | O_EXCL, &fd);
		made = r == TK_OK;
		if (r != TK_OK && r != TK_ERR_EXISTS)
			return r;
	}
	if (!made)
		return TK_ERR_IO;
	if ((r = write_all(fd, data, len)) != TK_OK)
		goto fail;
	if ((mode != 0600 && fchmod(fd, mode) != 0) || fsync(fd) != 0) {
		r = io_err(errno);
		goto fail;
	}
	if (close(fd) != 0) {
		r = io_err(errno);
		fd = -1;
		goto fail;
	}
	fd = -1;
	/* rename replaces whatever name is (a planted symlink included)
	 * without following it; a directory there makes it fail */
	if (renameat(dfd, tmp, dfd, name) != 0) {
		int e = errno;

		tk_log_debug("fs: rename to %s: %s", name, strerror(e));
		r = e == EISDIR || e == ENOTEMPTY || e == EEXIST ? TK_ERR_UNSAFE : TK_ERR_IO;
		goto fail;
	}
	/* The rename itself is durable only once the directory is. */
	if (fsync(dfd) != 0)
		tk_log_debug("fs: fsync of the directory of %s: %s", name, strerror(errno));
	return TK_OK;
fail:
	tk_fs_close(&fd);
	(void)unlinkat(dfd, tmp, 0);
	return r;
}
