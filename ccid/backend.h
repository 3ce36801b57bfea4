/* tokenkit CCID: the reader backend "ccid" (backend.c), for the plugin
 * reader-ccid.so (plugin.c) and the tests that register it directly. */
#ifndef TK_CCID_BACKEND_H
#define TK_CCID_BACKEND_H

#include "reader.h"

extern const tk_reader_ops_t tk_reader_ccid_ops;

#endif
