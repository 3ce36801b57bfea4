/* Reader plugins that break one rule of core/plugin.h each, for
 * tests/unit/test_plugin.c. Built once per variant (tests/CMakeLists.txt):
 *   TK_BAD_ABI        built for plugin ABI 99          (reader-badabi.so)
 *   TK_BAD_NAME       its descriptor names another one (reader-wrongname.so)
 *   TK_BAD_NO_ENTRY   no tokenkit_plugin_v1            (reader-noentry.so)
 *   TK_BAD_TABLE      a reader table without functions (reader-badtable.so) */
#include "plugin.h"
#include "reader.h"

#if defined(TK_BAD_NO_ENTRY)
int tk_test_plugin_something(void);

TK_PLUGIN_EXPORT int
tk_test_plugin_something(void)
{
	return 0;
}
#else
static const tk_reader_ops_t incomplete = {.name = "badtable"};

static const tk_plugin_desc_t desc = {
#if defined(TK_BAD_ABI)
        .abi = 99,
        .name = "badabi",
#elif defined(TK_BAD_NAME)
        .abi = TK_PLUGIN_ABI,
        .name = "other",
#else
        .abi = TK_PLUGIN_ABI,
        .name = "badtable",
#endif
        .size = sizeof(tk_plugin_desc_t),
        .kind = TK_PLUGIN_READER,
        .table = &incomplete,
};

const tk_plugin_desc_t *tokenkit_plugin_v1(void);

TK_PLUGIN_EXPORT const tk_plugin_desc_t *
tokenkit_plugin_v1(void)
{
	return &desc;
}
#endif
