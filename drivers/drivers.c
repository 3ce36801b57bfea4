/* tokenkit: the built-in card drivers, in probing order.
 *
 * A built-in driver lives in drivers/NAME/ (its .c files join the library
 * by themselves), defines `const tk_driver_t tk_NAME_driver` and adds one
 * X(NAME) line below. A driver built as a plugin has a CMakeLists.txt in its
 * directory instead and no line here (drivers/openpgp; HACKING.md, "Writing
 * a driver"). */
#include <stddef.h>

#include "driver.h"

#define BUILTIN_DRIVERS(X) X(piv)

#define DECLARE(name) extern const tk_driver_t tk_##name##_driver;
BUILTIN_DRIVERS(DECLARE)
#undef DECLARE

#define ENTRY(name) &tk_##name##_driver,
const tk_driver_t *const tk_builtin_drivers[] = {BUILTIN_DRIVERS(ENTRY) NULL};
#undef ENTRY
