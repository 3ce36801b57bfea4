/* tokenkit: the plugin loader (private). The descriptor, the host API and
 * the rules a plugin file must pass are public: tokenkit/plugin.h.
 *
 * tk_plugin_load(kind, name) looks for "<kind>-<name>.so" in each directory
 * of $TOKENKIT_PLUGIN_PATH (read through tk_env(), and not consulted at all
 * when tk_env_privileged()), then in the compiled-in directory TK_PLUGIN_DIR,
 * checks directory and file (owner, mode, regular file, no symbolic link),
 * loads the checked file through its descriptor (dlopen of /proc/self/fd/N,
 * so nobody can swap it in between), checks the descriptor and calls the
 * plugin's init with the host API. A plugin is loaded once per process:
 * later lookups of the same kind and name return the same descriptor. */
#ifndef TK_PLUGIN_H
#define TK_PLUGIN_H

#include <stdint.h>

#include <tokenkit/plugin.h>

#define TK_PLUGIN_NAME_MAX 32

/* Find, check and load the plugin of this kind and name (see above), and
 * give its descriptor. Errors: TK_ERR_INVALID_ARG (a name that is not
 * [a-z0-9_], at most 32 characters), TK_ERR_NOT_FOUND (no file passed the
 * checks and loaded; each refusal is logged, and a summary at error level
 * says where it looked and what to set), TK_ERR_NO_MEMORY. */
int tk_plugin_load(uint32_t kind, const char *name, const tk_plugin_desc_t **out);

/* The names of the plugins of this kind present in the search path (files
 * "<kind>-<name>.so" with a valid name, in directories the loader would
 * search), each once, sorted (strcmp). Nothing is loaded or trusted yet:
 * tk_plugin_load checks each. names[i] holds up to TK_PLUGIN_NAME_MAX + 1
 * bytes. Errors: TK_ERR_INVALID_ARG. More than cap names: the first cap in
 * order, with a warning. */
int tk_plugin_list(uint32_t kind, char (*names)[TK_PLUGIN_NAME_MAX + 1], size_t cap, size_t *n);

/* The file a loaded plugin came from ("" when d is not a loaded plugin). */
const char *tk_plugin_path(const tk_plugin_desc_t *d);

/* For an in-tree plugin's init (the plugin links its own hidden copy of
 * the core, core/plugin_guest.c): checks the host's ABI and size and sends
 * the plugin copy's log to the host's log, at every level (the host's level
 * and sink decide). Errors: TK_ERR_NOT_SUPPORTED (another ABI, no log). */
int tk_plugin_guest_init(const tk_plugin_host_t *host);

/* The host API the loader gives plugins (also for code that calls a
 * plugin's functions without loading it: tests, fuzz targets). */
const tk_plugin_host_t *tk_plugin_host(void);

#endif
