/* tokenkit CCID: the reader plugin reader-ccid.so.
 *
 * USB CCID readers over libusb (backend.c) as a plugin (core/plugin.h), so
 * that libusb is loaded only into processes that ask for the backend
 * (TOKENKIT_READERS=pcsc+ccid, the tokenkit CLI's default "pcsc+ccid?"):
 * libtokenkit.so and tokenkit-pkcs11.so link neither libusb nor this code,
 * and a browser that loads the module claims no USB device.
 *
 * The plugin holds its own hidden copy of the core primitives it uses; its
 * log lines go to the host's log, whose level and sink decide. */
#include "backend.h"
#include "plugin.h"

static const tk_plugin_desc_t ccid_plugin = {
        .abi = TK_PLUGIN_ABI,
        .size = sizeof(tk_plugin_desc_t),
        .kind = TK_PLUGIN_READER,
        .name = "ccid",
        .init = tk_plugin_guest_init,
        .table = &tk_reader_ccid_ops,
};

const tk_plugin_desc_t *tokenkit_plugin_v1(void);

TK_PLUGIN_EXPORT const tk_plugin_desc_t *
tokenkit_plugin_v1(void)
{
	return &ccid_plugin;
}
