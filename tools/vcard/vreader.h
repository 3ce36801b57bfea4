/* tokenkit virtual card: the in-process virtual reader backend.
 *
 * Virtual cards with fault injection served to a slot manager without
 * pcscd; config grammar in vreader.c. Not part of libtokenkit.so or
 * tokenkit-pkcs11.so: processes load it as the reader plugin reader-vcard.so
 * (plugin.c); programs that link tkvcard (tests) may add it with
 * tk_reader_backend_register(&tk_reader_vcard_ops). */
#ifndef TK_VCARD_VREADER_H
#define TK_VCARD_VREADER_H

#include "reader.h"

extern const tk_reader_ops_t tk_reader_vcard_ops;

#endif
