/* tokenkit: plugins — shared objects the library and the module load.
 *
 * A plugin has one entry point, tokenkit_plugin_v1(), returning a
 * descriptor: the plugin ABI it was built for, the size of the descriptor it
 * knows, a kind, a name and the kind's table (a reader backend's
 * tk_reader_ops_t, which is private to the tree; a card driver's
 * tk_driver_t, tokenkit/driver.h). The ABI number covers the descriptor,
 * the host API and every kind's table: a change to any of them that is not
 * an addition at the end increments it. Additions at the end are told by
 * the size fields (and, for drivers, tk_driver_t.api).
 *
 * The file is "<kind>-<name>.so" (reader-vcard.so, driver-openpgp.so),
 * found in the directories of $TOKENKIT_PLUGIN_PATH (colon-separated,
 * absolute; never read in a set-uid or set-gid process), then in the
 * compiled-in directory <libdir>/tokenkit/plugins. A directory or file that
 * its group or others may write, that is owned by anyone but root or the
 * effective uid (the compiled-in directory and its files: root only), or a
 * file that is not a regular file, is refused with a log line saying why.
 * The checked file is the one loaded. A plugin stays loaded for the life of
 * the process.
 *
 * A plugin links nothing of tokenkit: what it needs from the host (the log,
 * and for drivers the card session, the token model, the wire-data helpers)
 * comes through tk_plugin_host_t, which its init receives once before its
 * table is used. The library and the PKCS#11 module each carry their own
 * copy of the core; a plugin linked against libtokenkit.so would call a
 * different copy than the one that handed it its card. */
#ifndef TOKENKIT_PLUGIN_H
#define TOKENKIT_PLUGIN_H

#include <tokenkit/common.h>

#define TK_PLUGIN_ABI 1u
#define TK_PLUGIN_ENTRY "tokenkit_plugin_v1"

enum tk_plugin_kind {
	TK_PLUGIN_READER = 1, /* table: const tk_reader_ops_t * (in-tree only) */
	TK_PLUGIN_DRIVER = 2, /* table: const tk_driver_t * (tokenkit/driver.h) */
	/* token providers (in-tree only): table const tk_provider_t *
	 * (core/provider.h); the plugin's name is the provider id of the
	 * registrations it serves */
	TK_PLUGIN_PROVIDER = 3,
};

struct tk_drv_host;

/* What the host gives a plugin. Valid for the life of the process. A
 * member past the end of what size covers is not there (an older host). */
typedef struct tk_plugin_host {
	uint32_t abi;  /* TK_PLUGIN_ABI */
	uint32_t size; /* sizeof(tk_plugin_host_t) of the host */
	/* The host's log: its level decides what is shown, its sink where.
	 * level is a tk_log_level; msg is one line without a newline. */
	void (*log)(int level, const char *msg);
	/* The services card drivers use (tokenkit/driver.h). */
	const struct tk_drv_host *driver;
} tk_plugin_host_t;

typedef struct tk_plugin_desc {
	uint32_t abi;     /* TK_PLUGIN_ABI the plugin was built with */
	uint32_t size;    /* sizeof(tk_plugin_desc_t) as the plugin was built */
	uint32_t kind;    /* enum tk_plugin_kind */
	const char *name; /* as in the file name: [a-z0-9_], 1..32 characters */
	/* Called once, before table is used; may be NULL. Returns TK_OK or a
	 * tk_err (the plugin is then not used). */
	int (*init)(const tk_plugin_host_t *host);
	const void *table; /* the kind's table */
} tk_plugin_desc_t;

typedef const tk_plugin_desc_t *(*tk_plugin_entry_fn)(void);

/* The entry point every plugin defines (and exports, alone):
 *   TK_PLUGIN_EXPORT const tk_plugin_desc_t *tokenkit_plugin_v1(void); */
#define TK_PLUGIN_EXPORT __attribute__((visibility("default")))

#endif
