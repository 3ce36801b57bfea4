/* tokenkit: the files tokenkit keeps for itself, kept safely (private).
 *
 * The object cache, the recovery log, the virtual card's state and the
 * token registry live in directories that another local user may try to
 * prepare for us: make the directory first (in /tmp, or wherever a
 * variable points), make it a symlink to somewhere else, open it up to a
 * group, or plant a symlink, a FIFO, a device node or a huge file where our
 * file goes. Every access therefore starts from one directory descriptor
 * that was checked once (tk_fs_dir_open: not a symlink, owned by the
 * effective uid, no group or other permission bits), and every file
 * operation is relative to that descriptor (openat, renameat), so renaming
 * or replacing a component of the path afterwards changes nothing.
 *
 * Files are opened O_NOFOLLOW|O_NONBLOCK|O_CLOEXEC|O_NOCTTY (a planted
 * symlink fails, a FIFO never blocks, no descriptor leaks into children)
 * and must be regular files owned by the effective uid. Replacing a file is
 * atomic: a temporary file with an unpredictable name in the same
 * directory, created O_EXCL, written, fsync'd, renamed over the target,
 * then the directory fsync'd; a crash at any instant leaves the old file or
 * the new one (and at worst an orphaned ".<name>.tmp-*" file).
 *
 * Callers log refusals: TK_ERR_UNSAFE names a directory or file that is not
 * ours or not private, which is worth a warning; the functions themselves
 * log only at debug level. Common errors: TK_ERR_INVALID_ARG, TK_ERR_UNSAFE,
 * TK_ERR_NOT_FOUND, TK_ERR_IO, TK_ERR_TOO_LONG (path or file over its cap),
 * TK_ERR_NO_MEMORY. */
#ifndef TK_FSUTIL_H
#define TK_FSUTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum tk_fs_dir_flags {
	/* Create the directory when it is missing (mode 0700), and its
	 * missing parents (0700, as the XDG base directory specification
	 * asks). An existing directory is checked like any other. */
	TK_FS_DIR_CREATE = 1u << 0,
	/* Accept group and other read and search bits (never write bits): a
	 * directory the user named for a file of their own, e.g. the
	 * virtual card's state file in a home directory that is 0755. */
	TK_FS_DIR_READABLE = 1u << 1,
	/* A system directory others read from (the registry's system store):
	 * owned by root or the effective uid, group and other may read and
	 * search, never write. Not with TK_FS_DIR_CREATE. */
	TK_FS_DIR_SYSTEM = 1u << 2,
};

/* Open the directory at path, checked: lstat and then fstat on the opened
 * descriptor (O_DIRECTORY|O_NOFOLLOW) agree on the inode, it is a
 * directory owned by the effective uid, and it has no group/other bits
 * (with TK_FS_DIR_READABLE: no group/other write bits). *dfd is -1 on
 * error. Errors: TK_ERR_NOT_FOUND (missing and not TK_FS_DIR_CREATE),
 * TK_ERR_UNSAFE (a symlink, not a directory, another owner, open
 * permissions, swapped between the checks), TK_ERR_IO. */
int tk_fs_dir_open(const char *path, unsigned flags, int *dfd);

/* The directory part of path opened as tk_fs_dir_open does ("." for a
 * bare name), and in name (cap bytes) its last component. Errors: those of
 * tk_fs_dir_open; TK_ERR_INVALID_ARG for an empty last component, "." or
 * ".."; TK_ERR_TOO_LONG. */
int tk_fs_parent_open(const char *path, unsigned flags, int *dfd, char *name, size_t cap);

/* True when name is one plain path component (not empty, no '/', not "."
 * or ".."): what every function below takes. */
bool tk_fs_name_ok(const char *name);

/* Open name in dfd with oflags (O_RDONLY, O_WRONLY|O_APPEND|O_CREAT,
 * O_RDWR|O_CREAT, O_EXCL as the caller likes; never O_TRUNC, which would
 * act before the checks: TK_ERR_INVALID_ARG) plus
 * O_NOFOLLOW|O_NONBLOCK|O_CLOEXEC|O_NOCTTY, mode 0600 when created, and
 * check with fstat that it is a regular file owned by the effective uid
 * with one link (a hard link to someone else's file is refused). *fd is -1
 * on error. Errors: TK_ERR_NOT_FOUND (missing, no O_CREAT), TK_ERR_UNSAFE
 * (symlink, FIFO, device, directory, another owner, several links),
 * TK_ERR_EXISTS (O_EXCL), TK_ERR_IO. */
int tk_fs_open(int dfd, const char *name, int oflags, int *fd);

/* Read name in dfd (opened as tk_fs_open does) whole into a new buffer
 * (*out, NUL-terminated past *len, freed by the caller, with tk_freezero
 * when it may hold secrets). Errors: those of tk_fs_open, TK_ERR_TOO_LONG
 * (larger than max bytes: nothing is read). */
int tk_fs_read(int dfd, const char *name, size_t max, uint8_t **out, size_t *len);

/* tk_fs_read for a file of a TK_FS_DIR_SYSTEM directory: owned by root or
 * the effective uid, not writable by group or others (readable by them). */
int tk_fs_read_system(int dfd, const char *name, size_t max, uint8_t **out, size_t *len);

/* Replace name in dfd with data, atomically (see above), mode 0600.
 * Errors: TK_ERR_IO (the old file, if any, is untouched), TK_ERR_DISK_FULL
 * (ENOSPC or EDQUOT while writing: the old file is untouched),
 * TK_ERR_UNSAFE (name is a directory). */
int tk_fs_write_atomic(int dfd, const char *name, const uint8_t *data, size_t len);
/* The same with another mode (0644 for a system directory's files that
 * others read; never group or other write bits: TK_ERR_INVALID_ARG). */
int tk_fs_write_atomic_mode(int dfd, const char *name, const uint8_t *data, size_t len,
                            unsigned mode);

/* Close *fd if open and set it to -1. */
void tk_fs_close(int *fd);

#endif
