/* tokenkit OpenPGP card driver: the plugin's entry point (driver-openpgp.so).
 *
 * The plugin links nothing of tokenkit: the host's services come with
 * init, and the table is the driver. */
#include <tokenkit/plugin.h>

#include "openpgp.h"

static int
plugin_init(const tk_plugin_host_t *host)
{
	if (host == NULL || host->abi != TK_PLUGIN_ABI || host->size < sizeof(*host))
		return TK_ERR_NOT_SUPPORTED;
	return pgp_set_host(host->driver);
}

static const tk_plugin_desc_t openpgp_plugin = {
        .abi = TK_PLUGIN_ABI,
        .size = sizeof(tk_plugin_desc_t),
        .kind = TK_PLUGIN_DRIVER,
        .name = "openpgp",
        .init = plugin_init,
        .table = &pgp_driver,
};

const tk_plugin_desc_t *tokenkit_plugin_v1(void);

TK_PLUGIN_EXPORT const tk_plugin_desc_t *
tokenkit_plugin_v1(void)
{
	return &openpgp_plugin;
}
