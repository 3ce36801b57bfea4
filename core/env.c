/* tokenkit: the environment (see env.h). */
#include <stdlib.h>
#include <sys/auxv.h>

#include "env.h"

const char *
tk_env(const char *name)
{
	return secure_getenv(name);
}

bool
tk_env_privileged(void)
{
	return getauxval(AT_SECURE) != 0;
}
