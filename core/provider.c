/* tokenkit: token providers (see provider.h). */
#include <pthread.h>
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
	       p->ops != NULL && p->ops->pin_verify != NULL && p->ops->pin_status != NULL &&
	       p->ops->key_op != NULL && p->ops->free != NULL;
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

/* The slot of item id in m, made when absent. */
static int
slot_for(tk_drv_model_t *m, const tk_reg_item_t *it, tk_drv_slot_t **out)
{
	for (size_t i = 0; i < m->nslots; i++) {
		tk_drv_slot_t *s = &m->slots[i];

		if (s->id_len == it->id_len && memcmp(s->id, it->id, it->id_len) == 0) {
			*out = s;
			return TK_OK;
		}
	}
	_Static_assert(sizeof((*out)->id) >= TK_REG_ID_MAX, "a model slot takes every item id");
	if (tk_drv_model_add_slot(m, out) != TK_OK)
		return TK_ERR_NO_MEMORY;
	memcpy((*out)->id, it->id, it->id_len);
	(*out)->id_len = it->id_len;
	(*out)->key_ref = UINT32_MAX; /* until a key item names it */
	(*out)->needs_login = true;
	return TK_OK;
}

static uint8_t *
copy_of(const uint8_t *p, size_t n)
{
	uint8_t *c = malloc(n + 1);

	if (c != NULL && n > 0)
		memcpy(c, p, n);
	return c;
}

int
tk_reg_model(const tk_registration_t *reg, tk_drv_model_t *m)
{
	size_t n = tk_registration_item_count(reg);
	tk_reg_item_t it;
	tk_drv_slot_t *s;
	int r = TK_OK;

	memset(m, 0, sizeof(*m));
	snprintf(m->label, sizeof(m->label), "%s", tk_registration_label(reg));
	snprintf(m->manufacturer, sizeof(m->manufacturer), "%s", tk_registration_provider(reg));
	snprintf(m->model, sizeof(m->model), "registered");
	snprintf(m->serial, sizeof(m->serial), "%s", tk_registration_instance(reg));
	m->pin_min_len = PIN_MIN;
	m->pin_max_len = PIN_MAX;
	for (size_t i = 0; r == TK_OK && i < n; i++) {
		(void)tk_registration_item(reg, i, &it);
		if ((r = slot_for(m, &it, &s)) != TK_OK)
			break;
		if (it.kind == TK_REG_ITEM_CERT) {
			if (s->cert != NULL) {
				r = TK_ERR_MALFORMED;
				break;
			}
			snprintf(s->cert_label, sizeof(s->cert_label), "%s", it.label);
			if ((s->cert = copy_of(it.der, it.der_len)) == NULL) {
				r = TK_ERR_NO_MEMORY;
				break;
			}
			s->cert_len = it.der_len;
			r = tk_x509_spki(s->cert, s->cert_len, &s->cert_spki, &s->cert_spki_len,
			                 &s->cert_key_type, &s->cert_key_bits);
			continue;
		}
		if (s->key_present) {
			r = TK_ERR_MALFORMED;
			break;
		}
		s->key_present = true;
		s->key_ref = (uint32_t)i;
		s->key_type = it.key_type;
		s->key_bits = it.key_bits;
		s->usage = it.usage;
		snprintf(s->key_label, sizeof(s->key_label), "%s", it.label);
		snprintf(s->pub_label, sizeof(s->pub_label), "%s", it.label);
		if (it.der_len > 0) {
			if ((s->spki = copy_of(it.der, it.der_len)) == NULL) {
				r = TK_ERR_NO_MEMORY;
				break;
			}
			s->spki_len = it.der_len;
		}
	}
	/* slots without a key: a reference no key has */
	for (size_t i = 0; r == TK_OK && i < m->nslots; i++)
		if (m->slots[i].key_ref == UINT32_MAX)
			m->slots[i].key_ref = 0x80000000u | (uint32_t)i;
	if (r != TK_OK) {
		tk_log_info("provider: %s/%s: items not usable: %s", tk_registration_provider(reg),
		            tk_registration_instance(reg), tk_strerror(r));
		tk_drv_model_clear(m);
	}
	return r;
}
