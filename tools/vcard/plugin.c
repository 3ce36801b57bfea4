/* tokenkit virtual card: the reader plugin reader-vcard.so.
 *
 * The in-process virtual reader (vreader.c) as a plugin (core/plugin.h), so
 * that processes get it on request (TOKENKIT_READERS=vcard:... with
 * TOKENKIT_PLUGIN_PATH naming the directory of this file) while
 * libtokenkit.so and tokenkit-pkcs11.so carry no card emulator.
 *
 * The plugin holds its own hidden copy of the core primitives it uses; only
 * its log is the host's: every line goes to the host, whose level and sink
 * decide (so the plugin's own level stays at trace). */

#include "plugin.h"
#include "vreader.h"

static const tk_plugin_desc_t vreader_plugin = {
        .abi = TK_PLUGIN_ABI,
        .size = sizeof(tk_plugin_desc_t),
        .kind = TK_PLUGIN_READER,
        .name = "vcard",
        .init = tk_plugin_guest_init,
        .table = &tk_reader_vcard_ops,
};

const tk_plugin_desc_t *tokenkit_plugin_v1(void);

TK_PLUGIN_EXPORT const tk_plugin_desc_t *
tokenkit_plugin_v1(void)
{
	return &vreader_plugin;
}
