/* Driver plugins that break the driver interface, one rule each, for
 * tests/unit/test_driver.c. Built once per variant (tests/CMakeLists.txt),
 * against the public headers only, as an out-of-tree driver would be:
 *   TK_BAD_IDENTITY   probe claims every card with an identity that is not
 *                     "badid:..."                              (driver-badid.so)
 *   TK_BAD_CODE       probe returns a number that is no tk_err  (driver-badcode.so)
 *   TK_BAD_MODEL      load describes a key the host refuses and no token
 *                                                            (driver-badmodel.so)
 *   TK_BAD_API        built for a driver API newer than the host's
 *                                                              (driver-newapi.so)
 *   TK_BAD_INCOMPLETE a table without key_op                (driver-incomplete.so)
 * Each probe says so in the host's log ("NAME probe called"), so the test
 * can count the calls. */
#include <stdio.h>
#include <string.h>

#include <tokenkit/driver.h>
#include <tokenkit/plugin.h>

#if defined(TK_BAD_IDENTITY)
#define NAME "badid"
#elif defined(TK_BAD_CODE)
#define NAME "badcode"
#elif defined(TK_BAD_MODEL)
#define NAME "badmodel"
#elif defined(TK_BAD_API)
#define NAME "newapi"
#else
#define NAME "incomplete"
#endif

static const tk_drv_host_t *host;

static int
probe(tk_card_t *card, void **state, char *identity, size_t cap)
{
	(void)card;
	host->log(TK_LOG_WARN, NAME " probe called");
	*state = NULL;
#if defined(TK_BAD_IDENTITY)
	snprintf(identity, cap, "someone-else:1");
	return 0;
#elif defined(TK_BAD_CODE)
	(void)identity;
	(void)cap;
	return 12345;
#else
	snprintf(identity, cap, NAME ":1");
	return 0;
#endif
}

static int
load(void *state, const tk_cache_t *cached, tk_cache_t *fresh, unsigned flags, tk_drv_model_t *m)
{
	tk_drv_key_desc_t d;

	(void)state;
	(void)cached;
	(void)fresh;
	(void)flags;
	memset(&d, 0, sizeof(d));
	d.size = sizeof(d);
	d.key_ref = 1;
	d.id[0] = 1;
	d.id_len = 1;
	d.key_present = true;
	d.key_type = TK_KEY_RSA;
	d.key_bits = 2048;
	d.usage = TK_USAGE_DERIVE; /* RSA does not derive: refused, and ignored here */
	(void)host->model_add_key(m, &d);
	return 0;
}

static int
pin_verify(void *state, int user, const uint8_t *pin, size_t len, int *retries)
{
	(void)state;
	(void)user;
	(void)pin;
	(void)len;
	*retries = -1;
	return TK_ERR_NOT_SUPPORTED;
}

static int
pin_status(void *state, int user, tk_drv_pin_status_t *st)
{
	(void)state;
	(void)user;
	(void)st;
	return TK_ERR_NOT_SUPPORTED;
}

static int
pin_change(void *state, int user, const uint8_t *o, size_t ol, const uint8_t *n, size_t nl)
{
	(void)state;
	(void)user;
	(void)o;
	(void)ol;
	(void)n;
	(void)nl;
	return TK_ERR_NOT_SUPPORTED;
}

static int
pin_unblock(void *state, const uint8_t *p, size_t pl, const uint8_t *n, size_t nl)
{
	(void)state;
	(void)p;
	(void)pl;
	(void)n;
	(void)nl;
	return TK_ERR_NOT_SUPPORTED;
}

static int
key_op(void *state, const tk_drv_key_t *key, int op, const uint8_t *in, size_t in_len, uint8_t *out,
       size_t cap, size_t *out_len)
{
	(void)state;
	(void)key;
	(void)op;
	(void)in;
	(void)in_len;
	(void)out;
	(void)cap;
	*out_len = 0;
	return TK_ERR_NOT_SUPPORTED;
}

static void
drv_free(void *state)
{
	(void)state;
}

static const tk_driver_t driver = {
#if defined(TK_BAD_API)
        .api = TK_DRIVER_API + 1,
#else
        .api = TK_DRIVER_API,
#endif
        .size = sizeof(tk_driver_t),
        .name = NAME,
        .probe = probe,
        .load = load,
        .pin_verify = pin_verify,
        .pin_status = pin_status,
        .pin_change = pin_change,
        .pin_unblock = pin_unblock,
#if !defined(TK_BAD_INCOMPLETE)
        .key_op = key_op,
#endif
        .free = drv_free,
};

static int
init(const tk_plugin_host_t *h)
{
	host = h->driver;
#if defined(TK_BAD_INCOMPLETE)
	(void)key_op;
#endif
	return 0;
}

static const tk_plugin_desc_t desc = {
        .abi = TK_PLUGIN_ABI,
        .size = sizeof(tk_plugin_desc_t),
        .kind = TK_PLUGIN_DRIVER,
        .name = NAME,
        .init = init,
        .table = &driver,
};

const tk_plugin_desc_t *tokenkit_plugin_v1(void);

TK_PLUGIN_EXPORT const tk_plugin_desc_t *
tokenkit_plugin_v1(void)
{
	return &desc;
}
