/* tokenkit: the reader backend table and the reader spec (see reader.h).
 *
 * Adding a built-in backend is one line in builtin[]; anything else is a
 * plugin (plugin.h), so core never links code it does not ship (the CCID
 * backend's libusb among it). */
#include <pthread.h>
#include <string.h>

#include <tokenkit/err.h>
#include <tokenkit/log.h>

#include "plugin.h"
#include "reader.h"

#define BACKEND_NAME_MAX 32
#define REGISTERED_MAX 8

static const tk_reader_ops_t *const builtin[] = {&tk_reader_pcsc_ops};

static pthread_mutex_t registered_lock = PTHREAD_MUTEX_INITIALIZER;
static const tk_reader_ops_t *registered[REGISTERED_MAX];
static size_t nregistered;

static bool
name_is(const tk_reader_ops_t *ops, const char *name, size_t len)
{
	return strlen(ops->name) == len && memcmp(ops->name, name, len) == 0;
}

/* Every function the slot manager calls is there (control is optional). */
static bool
complete(const tk_reader_ops_t *o)
{
	return o->name != NULL && o->open != NULL && o->close != NULL && o->enumerate != NULL &&
	       o->wait_change != NULL && o->cancel != NULL && o->connect != NULL &&
	       o->transmit != NULL && o->reset != NULL && o->begin != NULL && o->end != NULL &&
	       o->status != NULL && o->caps != NULL && o->disconnect != NULL;
}

int
tk_reader_backend_register(const tk_reader_ops_t *ops)
{
	int r = TK_OK;

	if (ops == NULL || !complete(ops))
		return TK_ERR_INVALID_ARG;
	pthread_mutex_lock(&registered_lock);
	for (size_t i = 0; i < nregistered; i++) {
		if (strcmp(registered[i]->name, ops->name) == 0) {
			r = registered[i] == ops ? TK_OK : TK_ERR_EXISTS;
			goto out;
		}
	}
	if (nregistered == REGISTERED_MAX) {
		r = TK_ERR_NO_MEMORY;
		goto out;
	}
	registered[nregistered++] = ops;
out:
	pthread_mutex_unlock(&registered_lock);
	return r;
}

int
tk_reader_backend_find(const char *name, size_t name_len, const tk_reader_ops_t **out)
{
	const tk_plugin_desc_t *d = NULL;
	const tk_reader_ops_t *ops = NULL;
	char plugin[BACKEND_NAME_MAX + 1];
	int r;

	if (out != NULL)
		*out = NULL;
	if (out == NULL || name == NULL)
		return TK_ERR_INVALID_ARG;
	for (size_t i = 0; i < sizeof(builtin) / sizeof(builtin[0]); i++) {
		if (name_is(builtin[i], name, name_len)) {
			*out = builtin[i];
			return TK_OK;
		}
	}
	pthread_mutex_lock(&registered_lock);
	for (size_t i = 0; i < nregistered && ops == NULL; i++)
		if (name_is(registered[i], name, name_len))
			ops = registered[i];
	pthread_mutex_unlock(&registered_lock);
	if (ops != NULL) {
		*out = ops;
		return TK_OK;
	}
	if (name_len == 0 || name_len > BACKEND_NAME_MAX) {
		tk_log_error("reader backend '%.*s': no such backend", (int)name_len, name);
		return TK_ERR_NOT_FOUND;
	}
	memcpy(plugin, name, name_len);
	plugin[name_len] = '\0';
	r = tk_plugin_load(TK_PLUGIN_READER, plugin, &d);
	if (r == TK_ERR_INVALID_ARG) {
		tk_log_error("reader backend '%s': no such backend (built in: pcsc; plugins: ccid, "
		             "vcard)",
		             plugin);
		return TK_ERR_NOT_FOUND;
	}
	if (r != TK_OK)
		return r;
	ops = d->table;
	if (!complete(ops) || strcmp(ops->name, plugin) != 0) {
		tk_log_error("reader backend '%s': the plugin's table is incomplete", plugin);
		return TK_ERR_INVALID_ARG;
	}
	*out = ops;
	return TK_OK;
}

/* ---- reader specs ----------------------------------------------------------- */

static bool
name_char(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_';
}

/* Length of a backend name at p (0: none). */
static size_t
name_len(const char *p)
{
	size_t n = 0;

	while (name_char(p[n]))
		n++;
	return n;
}

/* Does an item begin at p (just after a '+')? A name, an optional '?',
 * then ':', '+' or the end. */
static bool
item_begins(const char *p)
{
	size_t n = name_len(p);

	if (n == 0 || n > TK_READER_BACKEND_NAME_MAX)
		return false;
	if (p[n] == '?')
		n++;
	return p[n] == ':' || p[n] == '+' || p[n] == '\0';
}

int
tk_reader_spec_parse(char *spec, tk_reader_spec_item_t *items, size_t max, size_t *n)
{
	char *p = spec;
	size_t k = 0;

	if (n != NULL)
		*n = 0;
	if (spec == NULL || items == NULL || n == NULL || max == 0)
		return TK_ERR_INVALID_ARG;
	for (;;) {
		size_t len = name_len(p);
		tk_reader_spec_item_t *it;

		if (len == 0 || len > TK_READER_BACKEND_NAME_MAX)
			return TK_ERR_INVALID_ARG;
		if (k == max)
			return TK_ERR_TOO_LONG;
		it = &items[k];
		memset(it, 0, sizeof(*it));
		memcpy(it->name, p, len);
		p += len;
		if (*p == '?') {
			it->optional = true;
			p++;
		}
		for (size_t j = 0; j < k; j++)
			if (strcmp(items[j].name, it->name) == 0)
				return TK_ERR_INVALID_ARG;
		k++;
		if (*p == ':') {
			*p++ = '\0';
			it->config = p;
			/* up to the '+' that begins the next item, or the end */
			while (*p != '\0' && !(*p == '+' && item_begins(p + 1)))
				p++;
		}
		if (*p == '\0')
			break;
		if (*p != '+')
			return TK_ERR_INVALID_ARG;
		*p++ = '\0';
	}
	*n = k;
	return TK_OK;
}
