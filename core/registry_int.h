/* tokenkit: what the registry's own files share (private). */
#ifndef TK_REGISTRY_INT_H
#define TK_REGISTRY_INT_H

#include <tokenkit/registry.h>

/* The default store directory for flags (TK_REGISTRY_SYSTEM or not).
 * Errors: TK_ERR_NOT_SUPPORTED (the user's store in a set-uid process),
 * TK_ERR_NOT_FOUND (no home), TK_ERR_TOO_LONG. */
int tk_registry_default_path(unsigned flags, char *out, size_t cap);
unsigned tk_registry_flags(const tk_registry_t *reg);
bool tk_registry_same_identity(const tk_registry_t *a, const tk_registry_t *b);
/* One record by file name (tombstones included), between two identity
 * checks. Errors: TK_ERR_INVALID_ARG (not a record's name), those of
 * tk_registry_get. */
int tk_registry_read_name(tk_registry_t *reg, const char *name, tk_registration_t **out);
/* tk_registry_list, with tombstones when asked. */
int tk_registry_scan(tk_registry_t *reg, bool tombstones, tk_registration_t ***out, size_t *count);

#endif
