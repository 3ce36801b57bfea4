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
/* Whether name is in the environment at all, privileged process or not:
 * for variables that a library we call reads with plain getenv() (pcsc-lite
 * and PCSCLITE_CSOCK_NAME), so that a privileged process can refuse to
 * call it rather than let it follow the variable. Never use the value. */
bool tk_env_present(const char *name);
/* True in a set-uid / set-gid (AT_SECURE) process. */
bool tk_env_privileged(void);
/* False in a set-uid / set-gid process: there tokenkit reads and writes no
 * file of its own (the object cache, the recovery log), whatever the
 * program or its options ask: the directories come from a less privileged
 * caller's world (its uid's /tmp/tokenkit-<uid>, files it can prepare) and
 * a privileged process must not create, follow or append to them. Says so
 * once per process at debug level. */
bool tk_env_files_allowed(void);

#endif
