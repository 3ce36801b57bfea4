/* The module's own interface (tokenkit/p11ext.h), for what the tool asks
 * the broker: tokenkit-pkcs11.so is loaded once, from next to the tool (a
 * build tree holds both in its root) or from where it is installed
 * relative to the tool's directory (TK_TOOL_MODULE_REL), never from a path
 * the environment names. The module decides, as for every application,
 * whether a broker answers. */
#include <dlfcn.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <pkcs11-helper-1.0/pkcs11.h>

#include <tokenkit/log.h>

#include "tool.h"

#ifndef TK_TOOL_MODULE_REL
#define TK_TOOL_MODULE_REL "../lib/pkcs11/tokenkit-pkcs11.so"
#endif

static pthread_once_t ext_once = PTHREAD_ONCE_INIT;
static const tk_p11ext_t *ext;

static bool
load_from(const char *path)
{
	CK_RV (*get)(CK_UTF8CHAR_PTR, CK_VERSION_PTR, CK_INTERFACE_PTR_PTR, CK_FLAGS);
	CK_VERSION v = {TK_P11EXT_MAJOR, TK_P11EXT_MINOR};
	CK_INTERFACE_PTR i = NULL;
	void *h;

	if (access(path, R_OK) != 0)
		return false;
	if ((h = dlopen(path, RTLD_NOW | RTLD_LOCAL)) == NULL) {
		tk_log_debug("tool: the module %s does not load: %s", path, dlerror());
		return false;
	}
	*(void **)&get = dlsym(h, "C_GetInterface");
	if (get == NULL || get((CK_UTF8CHAR_PTR)TK_P11EXT_NAME, &v, &i, 0) != CKR_OK || i == NULL ||
	    i->pFunctionList == NULL) {
		tk_log_debug("tool: %s has no interface \"%s\" %d.%d", path, TK_P11EXT_NAME,
		             TK_P11EXT_MAJOR, TK_P11EXT_MINOR);
		dlclose(h);
		return false;
	}
	ext = i->pFunctionList; /* (the module stays loaded) */
	tk_log_debug("tool: the broker is asked through %s", path);
	return true;
}

static void
load(void)
{
	char dir[PATH_MAX], path[PATH_MAX + 64];
	ssize_t n = readlink("/proc/self/exe", dir, sizeof(dir) - 1);
	char *slash;

	if (n <= 0)
		return;
	dir[n] = '\0';
	if ((slash = strrchr(dir, '/')) == NULL)
		return;
	*slash = '\0';
	snprintf(path, sizeof(path), "%s/tokenkit-pkcs11.so", dir);
	if (load_from(path))
		return;
	snprintf(path, sizeof(path), "%s/%s", dir, TK_TOOL_MODULE_REL);
	if (!load_from(path))
		tk_log_debug("tool: no tokenkit-pkcs11.so next to the tool or at %s: "
		             "the readers are opened here",
		             path);
}

const tk_p11ext_t *
tool_p11ext(void)
{
	pthread_once(&ext_once, load);
	return ext;
}

int
tool_p11ext_exit(const char *cmd, int rc)
{
	switch (rc) {
	case TK_P11EXT_OK:
		return TOOL_EXIT_OK;
	case TK_P11EXT_NO_READER:
		return TOOL_EXIT_NO_READER;
	case TK_P11EXT_BROKER_FAILED:
		fprintf(stderr, "tokenkit %s: the broker (tokenkitd) failed to answer\n", cmd);
		return TOOL_EXIT_NO_SERVICE;
	default:
		return -1;
	}
}

int
tool_broker_readers(const char *cmd, const char *want, tk_slot_diag_t **out, size_t *n)
{
	const tk_p11ext_t *x = tool_p11ext();

	*out = NULL;
	*n = 0;
	if (x == NULL || x->readers == NULL)
		return -1;
	return tool_p11ext_exit(cmd, x->readers(want, out, n));
}
