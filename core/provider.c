/* tokenkit: token providers (see provider.h). */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <tokenkit/err.h>
#include <tokenkit/log.h>

#include "plugin.h"
#include "provider.h"
#include "registry_priv.h"
#include "soft.h"

#define PROVIDERS_MAX 16
#define PIN_MIN 4
#define PIN_MAX 64

/* Built into the library. */
static const tk_provider_t *const builtin[] = {&tk_soft_provider, NULL};

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static const tk_provider_t *registered[PROVIDERS_MAX];
static size_t nregistered;
/* ids already said to have no provider: said once per process */
static char missing[PROVIDERS_MAX][TK_REG_PROVIDER_MAX + 1];
static size_t nmissing;

static bool
provider_ok(const tk_provider_t *p)
{
	return p != NULL && tk_reg_provider_ok(p->id) && p->open != NULL && p->update != NULL &&
	       p->ops != NULL && p->ops->api >= 1 && p->ops->api <= TK_DRIVER_API &&
	       p->ops->size >= sizeof(tk_driver_t) && p->ops->pin_verify != NULL &&
	       p->ops->pin_status != NULL && p->ops->pin_change != NULL &&
	       p->ops->pin_unblock != NULL && p->ops->key_op != NULL && p->ops->free != NULL;
}

static const tk_provider_t *
find_locked(const char *id)
{
	for (size_t i = 0; builtin[i] != NULL; i++)
		if (strcmp(builtin[i]->id, id) == 0)
			return builtin[i];
	for (size_t i = 0; i < nregistered; i++)
		if (strcmp(registered[i]->id, id) == 0)
			return registered[i];
	return NULL;
}

int
tk_provider_register(const tk_provider_t *p)
{
	int r = TK_OK;

	if (!provider_ok(p))
		return TK_ERR_INVALID_ARG;
	pthread_mutex_lock(&lock);
	if (find_locked(p->id) != NULL)
		r = find_locked(p->id) == p ? TK_OK : TK_ERR_EXISTS;
	else if (nregistered == PROVIDERS_MAX)
		r = TK_ERR_NO_MEMORY;
	else
		registered[nregistered++] = p;
	pthread_mutex_unlock(&lock);
	return r;
}

int
tk_provider_find(const char *id, const tk_provider_t **out)
{
	const tk_plugin_desc_t *d = NULL;
	const tk_provider_t *p;
	bool said = false;

	*out = NULL;
	if (!tk_reg_provider_ok(id))
		return TK_ERR_INVALID_ARG;
	pthread_mutex_lock(&lock);
	p = find_locked(id);
	for (size_t i = 0; i < nmissing && !said; i++)
		said = strcmp(missing[i], id) == 0;
	pthread_mutex_unlock(&lock);
	if (p == NULL && !said && tk_plugin_load(TK_PLUGIN_PROVIDER, id, &d) == TK_OK) {
		p = d->table;
		if (!provider_ok(p) || strcmp(p->id, id) != 0) {
			tk_log_warn("provider: the plugin for '%s' has no usable provider table",
			            id);
			p = NULL;
		} else if (tk_provider_register(p) != TK_OK) {
			p = NULL;
		}
	}
	if (p == NULL) {
		pthread_mutex_lock(&lock);
		if (!said && nmissing < PROVIDERS_MAX) {
			snprintf(missing[nmissing++], sizeof(missing[0]), "%s", id);
			tk_log_info("provider: none for '%s': its registrations are not published",
			            id);
		}
		pthread_mutex_unlock(&lock);
		return TK_ERR_NOT_FOUND;
	}
	*out = p;
	return TK_OK;
}

/* The items of one id: its certificate and its key (indexes; SIZE_MAX when
 * absent), in the order of the id's first appearance. */
struct id_items {
	size_t cert, key;
};

/* Group the items by id. Errors: TK_ERR_MALFORMED (two certificates or two
 * keys with one id), TK_ERR_NOT_SUPPORTED (an id longer than TK_OBJECT_ID_MAX),
 * TK_ERR_NO_MEMORY. */
static int
group_items(const tk_registration_t *reg, struct id_items **out, size_t *nout)
{
	size_t n = tk_registration_item_count(reg), ng = 0;
	struct id_items *g = calloc(n > 0 ? n : 1, sizeof(*g));
	tk_reg_item_t it, first;
	int r = TK_OK;

	*out = NULL;
	*nout = 0;
	if (g == NULL)
		return TK_ERR_NO_MEMORY;
	for (size_t i = 0; r == TK_OK && i < n; i++) {
		size_t j;

		(void)tk_registration_item(reg, i, &it);
		if (it.id_len < 1 || it.id_len > TK_OBJECT_ID_MAX) {
			tk_log_info("provider: item ids of 1 to %d bytes are supported",
			            TK_OBJECT_ID_MAX);
			r = TK_ERR_NOT_SUPPORTED;
			break;
		}
		for (j = 0; j < ng; j++) {
			size_t k = g[j].cert != SIZE_MAX ? g[j].cert : g[j].key;

			(void)tk_registration_item(reg, k, &first);
			if (first.id_len == it.id_len && memcmp(first.id, it.id, it.id_len) == 0)
				break;
		}
		if (j == ng) {
			g[ng].cert = g[ng].key = SIZE_MAX;
			ng++;
		}
		if (it.kind == TK_REG_ITEM_CERT && g[j].cert == SIZE_MAX)
			g[j].cert = i;
		else if (it.kind != TK_REG_ITEM_CERT && g[j].key == SIZE_MAX)
			g[j].key = i;
		else
			r = TK_ERR_MALFORMED;
	}
	if (r != TK_OK) {
		free(g);
		return r;
	}
	*out = g;
	*nout = ng;
	return TK_OK;
}

int
tk_reg_model(const tk_registration_t *reg, tk_drv_model_t *m)
{
	tk_drv_token_desc_t tok;
	struct id_items *g = NULL;
	size_t ng = 0;
	tk_reg_item_t it;
	int r;

	tk_drv_model_clear(m);
	memset(&tok, 0, sizeof(tok));
	tok.size = sizeof(tok);
	snprintf(tok.label, sizeof(tok.label), "%s", tk_registration_label(reg));
	snprintf(tok.manufacturer, sizeof(tok.manufacturer), "%s", tk_registration_provider(reg));
	snprintf(tok.model, sizeof(tok.model), "registered");
	snprintf(tok.serial, sizeof(tok.serial), "%s", tk_registration_instance(reg));
	tok.pin_min_len = PIN_MIN;
	tok.pin_max_len = PIN_MAX;
	if ((r = tk_drv_model_set_token(m, &tok)) != TK_OK ||
	    (r = group_items(reg, &g, &ng)) != TK_OK)
		goto out;
	for (size_t i = 0; r == TK_OK && i < ng; i++) {
		const uint8_t *id = NULL;
		size_t id_len = 0;
		tk_drv_key_desc_t d;

		memset(&d, 0, sizeof(d));
		d.size = sizeof(d);
		d.needs_login = true;
		/* a slot without a key: a reference no key has */
		d.key_ref = 0x80000000u | (uint32_t)i;
		if (g[i].cert != SIZE_MAX) {
			(void)tk_registration_item(reg, g[i].cert, &it);
			id = it.id;
			id_len = it.id_len;
			snprintf(d.cert_label, sizeof(d.cert_label), "%s", it.label);
			d.cert = it.der;
			d.cert_len = it.der_len;
		}
		if (g[i].key != SIZE_MAX) {
			(void)tk_registration_item(reg, g[i].key, &it);
			id = it.id;
			id_len = it.id_len;
			d.key_present = true;
			d.key_ref = (uint32_t)g[i].key;
			d.key_type = it.key_type;
			d.key_bits = it.key_bits;
			d.usage = it.usage;
			snprintf(d.key_label, sizeof(d.key_label), "%s", it.label);
			snprintf(d.pub_label, sizeof(d.pub_label), "%s", it.label);
			d.spki = it.der_len > 0 ? it.der : NULL;
			d.spki_len = it.der_len;
			if (d.spki != NULL)
				d.key_type = TK_KEY_NONE; /* from the public key, checked */
		}
		r = tk_drv_model_add_key_id(m, &d, id, id_len);
	}
out:
	free(g);
	if (r != TK_OK) {
		tk_log_info("provider: %s/%s: items not usable: %s", tk_registration_provider(reg),
		            tk_registration_instance(reg), tk_strerror(r));
		tk_drv_model_clear(m);
	}
	return r;
}
