/* tokenkit: the environment (private).
 *
 * Every environment lookup in tokenkit goes through tk_env(). It uses
 * secure_getenv(): in a set-uid or set-gid process (AT_SECURE) no variable
 * is seen at all, so a less privileged caller cannot steer a privileged
 * program's files, logs, sockets, timeouts or readers. Code that must
 * behave differently there (no disk cache, no recovery log, no plugins
 * from the environment) asks tk_env_privileged(). */
#ifndef TK_ENV_H
#define TK_ENV_H

#include <stdbool.h>

/* The variable's value, or NULL when unset or in a privileged process. */
const char *tk_env(const char *name);
/* True in a set-uid / set-gid (AT_SECURE) process. */
bool tk_env_privileged(void);

#endif
