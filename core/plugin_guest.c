/* tokenkit: the plugin side of the in-tree plugins that link their own
 * hidden copy of the core (reader-ccid.so, reader-vcard.so, the test
 * provider): one init for all of them (core/plugin.h). */
#include <stddef.h>

#include <tokenkit/err.h>
#include <tokenkit/log.h>

#include "plugin.h"

static void (*host_log)(int level, const char *msg);

static void
to_host(void *ctx, int level, const char *msg)
{
	(void)ctx;
	host_log(level, msg);
}

int
tk_plugin_guest_init(const tk_plugin_host_t *host)
{
	if (host == NULL || host->abi != TK_PLUGIN_ABI || host->size < sizeof(*host) ||
	    host->log == NULL)
		return TK_ERR_NOT_SUPPORTED;
	host_log = host->log;
	tk_log_set_sink(to_host, NULL);
	/* every line goes to the host, whose level decides */
	tk_log_set_level(TK_LOG_TRACE);
	return TK_OK;
}
