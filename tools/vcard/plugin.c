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
#include <tokenkit/err.h>
#include <tokenkit/log.h>

#include "plugin.h"
#include "vreader.h"

static void (*host_log)(int level, const char *msg);

static void
to_host(void *ctx, int level, const char *msg)
{
	(void)ctx;
	host_log(level, msg);
}

static int
plugin_init(const tk_plugin_host_t *host)
{
	if (host == NULL || host->abi != TK_PLUGIN_ABI || host->size < sizeof(*host) ||
	    host->log == NULL)
		return TK_ERR_NOT_SUPPORTED;
	host_log = host->log;
	tk_log_set_sink(to_host, NULL);
	tk_log_set_level(TK_LOG_TRACE);
	return TK_OK;
}

static const tk_plugin_desc_t vreader_plugin = {
        .abi = TK_PLUGIN_ABI,
        .size = sizeof(tk_plugin_desc_t),
        .kind = TK_PLUGIN_READER,
        .name = "vcard",
        .init = plugin_init,
        .table = &tk_reader_vcard_ops,
};

const tk_plugin_desc_t *tokenkit_plugin_v1(void);

TK_PLUGIN_EXPORT const tk_plugin_desc_t *
tokenkit_plugin_v1(void)
{
	return &vreader_plugin;
}
