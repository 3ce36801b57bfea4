/* tokenkit: plugins (private).
 *
 * A plugin is a shared object with one entry point, tokenkit_plugin_v1(),
 * returning a descriptor: the plugin ABI it was built for, the size of the
 * descriptor it knows, a kind (reader backend now, card drivers later), a
 * name and the kind's table (for TK_PLUGIN_READER a tk_reader_ops_t). The
 * ABI number covers the descriptor, the host API and every kind's table: a
 * change to any of them that is not an addition at the end increments it.
 *
 * tk_plugin_load(kind, name) looks for the file "<kind>-<name>.so" (e.g.
 * reader-vcard.so) in each directory of $TOKENKIT_PLUGIN_PATH (colon-
 * separated, absolute paths; read through tk_env(), so never in a set-uid
 * or set-gid process, and not consulted at all when tk_env_privileged()),
 * then in the compiled-in directory TK_PLUGIN_DIR (<libdir>/tokenkit/plugins).
 * A directory or file is refused, with a log line saying why, when its group
 * or others may write it, or when it is owned by anyone but root or the
 * effective uid (the compiled-in directory and its files: root only), or when
 * the file is not a regular file (symbolic links are not followed). The file
 * that passed the checks is the one loaded (dlopen through its descriptor, so
 * nobody can swap it in between). A plugin stays loaded for the life of the
 * process (a reader call abandoned inside it may return much later), and is
 * loaded once: later lookups of the same kind and name return the same
 * descriptor.
 *
 * The plugin carries its own hidden copy of the core primitives it needs;
 * what it must share with the host comes through tk_plugin_host_t, which
 * its init receives once before its table is used. */
#ifndef TK_PLUGIN_H
#define TK_PLUGIN_H

#include <stdint.h>

#define TK_PLUGIN_ABI 1u
#define TK_PLUGIN_ENTRY "tokenkit_plugin_v1"

enum tk_plugin_kind {
	TK_PLUGIN_READER = 1, /* table: const tk_reader_ops_t * (reader.h) */
	TK_PLUGIN_DRIVER = 2, /* card drivers (reserved) */
	/* token providers: table const tk_provider_t * (provider.h); the
	 * plugin's name is the provider id of the registrations it serves */
	TK_PLUGIN_PROVIDER = 3,
};

/* What the host gives a plugin. Valid for the life of the process. */
typedef struct tk_plugin_host {
	uint32_t abi;  /* TK_PLUGIN_ABI */
	uint32_t size; /* sizeof(tk_plugin_host_t) of the host */
	/* The host's log: its level decides what is shown, its sink where.
	 * level is a tk_log_level; msg is one line without a newline. */
	void (*log)(int level, const char *msg);
} tk_plugin_host_t;

typedef struct tk_plugin_desc {
	uint32_t abi;     /* TK_PLUGIN_ABI the plugin was built with */
	uint32_t size;    /* sizeof(tk_plugin_desc_t) as the plugin was built */
	uint32_t kind;    /* enum tk_plugin_kind */
	const char *name; /* as in the file name and the reader spec */
	/* Called once, before table is used; may be NULL. Returns TK_OK or a
	 * tk_err (the plugin is then not used). */
	int (*init)(const tk_plugin_host_t *host);
	const void *table; /* the kind's table */
} tk_plugin_desc_t;

typedef const tk_plugin_desc_t *(*tk_plugin_entry_fn)(void);

/* The entry point every plugin defines (and exports, alone). */
#define TK_PLUGIN_EXPORT __attribute__((visibility("default")))

/* Find, check and load the plugin of this kind and name (see above), and
 * give its descriptor. Errors: TK_ERR_INVALID_ARG (a name that is not
 * [a-z0-9_], at most 32 characters), TK_ERR_NOT_FOUND (no file passed the
 * checks and loaded; each refusal is logged, and a summary at error level
 * says where it looked and what to set), TK_ERR_NO_MEMORY. */
int tk_plugin_load(uint32_t kind, const char *name, const tk_plugin_desc_t **out);

#endif
