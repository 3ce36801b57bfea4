/* tokenkit: the environment (see env.h). */
#include <stdatomic.h>
#include <stdlib.h>
#include <sys/auxv.h>

#include <tokenkit/log.h>

#include "env.h"

const char *
tk_env(const char *name)
{
	return secure_getenv(name);
}

bool
tk_env_present(const char *name)
{
	/* the one plain getenv in tokenkit: presence only (see env.h) */
	return getenv(name) != NULL;
}

bool
tk_env_privileged(void)
{
	return getauxval(AT_SECURE) != 0;
}

bool
tk_env_files_allowed(void)
{
	static atomic_bool said;

	if (!tk_env_privileged())
		return true;
	if (!atomic_exchange(&said, true))
		tk_log_debug("set-uid or set-gid process: no disk cache and no recovery log");
	return false;
}
