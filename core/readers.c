/* tokenkit: the reader backend table (see reader.h).
 *
 * Adding a built-in backend is one line in builtin[]; anything else is a
 * plugin (plugin.h), so core never links code it does not ship. */
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
		tk_log_error("reader backend '%s': no such backend (built in: pcsc)", plugin);
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
