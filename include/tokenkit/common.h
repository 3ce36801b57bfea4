/* tokenkit: shared definitions for every public header. */
#ifndef TOKENKIT_COMMON_H
#define TOKENKIT_COMMON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#if defined(TK_BUILDING_LIBRARY)
#define TK_EXPORT __attribute__((visibility("default")))
#else
#define TK_EXPORT
#endif

#define TK_PRINTF(f, a) __attribute__((format(printf, f, a)))

#endif
