/* tokenkit-pkcs11: broker mode (remote.c), the module as a client of
 * tokenkitd.
 *
 * The mode is chosen once per process, at the first call into the module
 * ($TOKENKIT_BROKER: "off" embedded, "on" broker, unset or "auto": broker
 * when a broker answers on its socket, embedded otherwise). In broker mode
 * rv.c sends every C_* function here (tk_p11r_C_*), and nothing of the
 * embedded module runs in the process. tokenkitd itself runs the embedded
 * module and calls tk_p11_remote_disable() first. */
#ifndef TK_P11_REMOTE_H
#define TK_P11_REMOTE_H

#include <stdbool.h>
#include <stddef.h>

#include "bclient.h"
#include "rv.h"

bool tk_p11_remote_on(void);
void tk_p11_remote_disable(void);

#define P11R_DECLARE(name, params, args) CK_RV tk_p11r_##name params;
P11_RV_FUNCTIONS(P11R_DECLARE)
#undef P11R_DECLARE

#endif
