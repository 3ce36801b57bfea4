/* tokenkit: the core token API on top of the card drivers.
 *
 * A token is built when opened: the driver reads (or revalidates from the
 * public-object cache, or with defer_revalidation takes on trust) a model of
 * the card, and this file turns it into objects, pairing each certificate
 * with the private key whose public key equals the certificate's
 * SubjectPublicKeyInfo. tk_token_revalidate may later replace the model and
 * the object list; the superseded ones are kept until tk_token_free so that
 * pointers handed out earlier never dangle, and objects that did not change
 * keep their handles.
 *
 * Login state belongs to one card generation: a reset (ours or anyone's)
 * bumps tk_card_generation(), which ends the login here and makes the
 * driver select its applet again before its next command. A PIN-always
 * key's PIN belongs to one operation: the caller passes it with the
 * operation (tk_token_key_op_auth) and it is verified right before it, in
 * the same card transaction; nothing of it stays here.
 *
 * Locking: two mutexes per token, nothing process-wide. io serialises the
 * calls that talk to the card (the driver state needs no lock of its own;
 * the card is one reader's anyway) and guards the model, which changes only
 * under it. st guards what readers see (object list, info, login state) and
 * is never held across card I/O, so tk_token_info and tk_token_objects
 * answer at once even while a revalidation or a signature is on the card.
 * Order: io, then st. */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <tokenkit/err.h>
#include <tokenkit/log.h>
#include <tokenkit/mem.h>
#include <tokenkit/token.h>

#include "cache.h"
#include "clock.h"
#include "driver.h"
#include "env.h"
#include "provider.h"
#include "token_priv.h"

/* A model and the objects built from it, superseded by a revalidation. */
struct token_gen {
	tk_drv_model_t model;
	tk_object_t *objs;
	size_t nobjs;
	struct token_gen *next;
};

struct tk_token {
	pthread_mutex_t mtx; /* io */
	pthread_mutex_t st;
	tk_card_t *card;           /* NULL for a registered token (prov) */
	const tk_provider_t *prov; /* a registered token's provider */
	const tk_drv_entry_t *drv;
	void *ds;
	tk_drv_model_t model;
	tk_object_t *objs;
	size_t nobjs;
	uint32_t last_handle;  /* handles are never reused on one token */
	struct token_gen *old; /* superseded generations, freed with the token */
	tk_cache_t *records;   /* the public records the model was built from */
	bool use_cache;
	char dir[4096];
	tk_token_info_t info;
	bool logged_in, so_logged_in;
	uint64_t login_gen, so_gen;
};

/* ---- objects and identities -------------------------------------------------- */

/* The public key of a slot's private key: the card's own word (metadata)
 * when it gave one, else the slot's certificate (all a plain PIV card
 * tells about its keys). */
static const uint8_t *
slot_pub(const tk_drv_slot_t *s, size_t *len)
{
	*len = 0;
	if (!s->key_present)
		return NULL;
	if (s->spki != NULL) {
		*len = s->spki_len;
		return s->spki;
	}
	if (s->cert_spki != NULL) {
		*len = s->cert_spki_len;
		return s->cert_spki;
	}
	return NULL;
}

static bool
same_der(const uint8_t *a, size_t al, const uint8_t *b, size_t bl)
{
	return a != NULL && b != NULL && al == bl && memcmp(a, b, al) == 0;
}

/* Same object, field by field (handles aside). */
static bool
same_object(const tk_object_t *a, const tk_object_t *b)
{
	return a->cls == b->cls && a->id_len == b->id_len && memcmp(a->id, b->id, a->id_len) == 0 &&
	       strcmp(a->label, b->label) == 0 && a->key_type == b->key_type &&
	       a->key_bits == b->key_bits && a->usage == b->usage &&
	       a->always_authenticate == b->always_authenticate &&
	       a->has_identity == b->has_identity && a->key_ref == b->key_ref &&
	       a->der_len == b->der_len &&
	       (a->der_len == 0 ||
	        (a->der != NULL && b->der != NULL && memcmp(a->der, b->der, a->der_len) == 0));
}

struct builder {
	tk_object_t *objs;
	size_t n;
};

static tk_object_t *
add_obj(struct builder *bld, int cls, const tk_drv_slot_t *s, const char *label)
{
	tk_object_t *o = &bld->objs[bld->n++];

	memset(o, 0, sizeof(*o));
	o->cls = cls;
	memcpy(o->id, s->id, s->id_len);
	o->id_len = s->id_len;
	snprintf(o->label, sizeof(o->label), "%s", label);
	o->key_ref = s->key_ref;
	return o;
}

/* Handles: an object equal to one of prev keeps its handle; any other
 * gets the next handle never used on this token. */
static void
assign_handles(tk_token_t *t, tk_object_t *objs, size_t n, const tk_object_t *prev, size_t nprev)
{
	bool *taken = nprev > 0 ? calloc(nprev, sizeof(*taken)) : NULL;

	for (size_t i = 0; i < n; i++) {
		objs[i].handle = 0;
		for (size_t k = 0; taken != NULL && k < nprev && objs[i].handle == 0; k++) {
			if (!taken[k] && same_object(&objs[i], &prev[k])) {
				taken[k] = true;
				objs[i].handle = prev[k].handle;
			}
		}
		if (objs[i].handle == 0)
			objs[i].handle = ++t->last_handle;
	}
	free(taken);
}

/* Objects in slot order: private key, public key, certificate. A
 * certificate takes the id of the key it matches (by SPKI, in any slot,
 * its own slot first). A certificate that matches no key is published
 * without identity under its slot's id with the top bit set (9A's stray
 * certificate: 0x81), so it can never be mistaken for a key's. An unpaired
 * certificate (TK_DRV_CERT_UNPAIRED: a PIV attestation, which carries the
 * attested key's SPKI) takes part in no pairing at all: it is published
 * under the id its driver gave, without identity, and the key it names
 * stays paired with its own certificate or with none. The objects point
 * into m. */
static int
build_objects(const tk_drv_model_t *m, tk_object_t **out, size_t *nout)
{
	size_t cap = 3 * m->nslots + 1;
	struct builder bld = {NULL, 0};
	int *paired_with;

	*out = NULL;
	*nout = 0;
	if ((bld.objs = calloc(cap, sizeof(*bld.objs))) == NULL)
		return TK_ERR_NO_MEMORY;
	if ((paired_with = calloc(m->nslots + 1, sizeof(*paired_with))) == NULL) {
		free(bld.objs);
		return TK_ERR_NO_MEMORY;
	}
	for (size_t i = 0; i < m->nslots; i++) {
		const tk_drv_slot_t *c = &m->slots[i];

		paired_with[i] = -1;
		if (c->cert == NULL || c->cert_unpaired)
			continue;
		for (size_t pass = 0; pass < 2 && paired_with[i] < 0; pass++) {
			for (size_t k = 0; k < m->nslots; k++) {
				const uint8_t *pub;
				size_t pl;

				if ((pass == 0) != (k == i))
					continue;
				pub = slot_pub(&m->slots[k], &pl);
				if (same_der(pub, pl, c->cert_spki, c->cert_spki_len)) {
					paired_with[i] = (int)k;
					break;
				}
			}
		}
	}
	for (size_t i = 0; i < m->nslots; i++) {
		const tk_drv_slot_t *s = &m->slots[i];
		const uint8_t *pub;
		size_t pl;
		bool has_identity = false;
		tk_object_t *o;

		for (size_t j = 0; j < m->nslots; j++)
			has_identity = has_identity || paired_with[j] == (int)i;
		pub = slot_pub(s, &pl);
		if (s->key_present && s->key_type != TK_KEY_NONE) {
			o = add_obj(&bld, TK_OBJ_PRIVKEY, s, s->key_label);
			o->key_type = s->key_type;
			o->key_bits = s->key_bits;
			o->der = pub;
			o->der_len = pl;
			o->usage = s->usage;
			o->always_authenticate = s->always_authenticate;
			o->has_identity = has_identity;
			if (pub != NULL) {
				o = add_obj(&bld, TK_OBJ_PUBKEY, s, s->pub_label);
				o->key_type = s->key_type;
				o->key_bits = s->key_bits;
				o->der = pub;
				o->der_len = pl;
				o->usage = s->usage;
				o->has_identity = has_identity;
			}
		}
		if (s->cert != NULL) {
			o = add_obj(&bld, TK_OBJ_CERT, s, s->cert_label);
			o->key_type = s->cert_key_type;
			o->key_bits = s->cert_key_bits;
			o->der = s->cert;
			o->der_len = s->cert_len;
			if (paired_with[i] >= 0) {
				const tk_drv_slot_t *k = &m->slots[paired_with[i]];

				memcpy(o->id, k->id, k->id_len);
				o->id_len = k->id_len;
				o->has_identity = true;
			} else if (!s->cert_unpaired) {
				o->id[0] |= 0x80;
				tk_log_info("token: certificate of slot %02X matches no key on the "
				            "card",
				            (unsigned)s->key_ref);
			}
		}
	}
	free(paired_with);
	*out = bld.objs;
	*nout = bld.n;
	return TK_OK;
}

/* ---- life cycle ---------------------------------------------------------------- */

void
tk_token_opts_init(tk_token_opts_t *o)
{
	if (o == NULL)
		return;
	memset(o, 0, sizeof(*o));
	o->cache_dir = NULL;
	o->refresh_pin_status = false;
	o->defer_revalidation = false;
}

static void
copy_str(char *dst, size_t cap, const char *src)
{
	snprintf(dst, cap, "%s", src);
}

/* Called with io held. */
static int
refresh_pin_locked(tk_token_t *t)
{
	tk_drv_pin_status_t pin, puk;
	int r;

	if ((r = tk_drv_pin_status(t->drv, t->ds, TK_USER_USER, &pin)) != TK_OK)
		return r;
	if ((r = tk_drv_pin_status(t->drv, t->ds, TK_USER_SO, &puk)) != TK_OK)
		return r;
	pthread_mutex_lock(&t->st);
	t->info.pin_retries = pin.retries;
	if (pin.max_retries >= 0)
		t->info.pin_max_retries = pin.max_retries;
	t->info.pin_locked = pin.locked;
	t->info.puk_retries = puk.retries;
	t->info.puk_locked = puk.locked;
	pthread_mutex_unlock(&t->st);
	return TK_OK;
}

/* Label, serial and the other strings of info from the model. */
static void
info_from_model(tk_token_t *t)
{
	copy_str(t->info.driver, sizeof(t->info.driver),
	         t->prov != NULL ? t->prov->id : tk_drv_entry_name(t->drv));
	copy_str(t->info.label, sizeof(t->info.label), t->model.label);
	copy_str(t->info.manufacturer, sizeof(t->info.manufacturer), t->model.manufacturer);
	copy_str(t->info.model, sizeof(t->info.model), t->model.model);
	copy_str(t->info.serial, sizeof(t->info.serial), t->model.serial);
	t->info.pin_min_len = t->model.pin_min_len;
	t->info.pin_max_len = t->model.pin_max_len;
}

/* The model of the card the driver t->drv just recognised: its cache
 * entry, and the load. */
static int
load_model(tk_token_t *t, const tk_token_opts_t *opts, const char *identity, tk_cache_t **cached,
           tk_cache_t **fresh, unsigned *flags, int64_t *t_cache)
{
	int r;

	tk_drv_model_init(&t->model, tk_drv_entry_name(t->drv));
	if (identity[0] != '\0' && tk_cache_dir(opts->cache_dir, t->dir, sizeof(t->dir)) == TK_OK) {
		t->use_cache = true;
		(void)tk_cache_load(t->dir, identity, cached); /* absent or bad: no cache */
	}
	/* The records are kept (in memory) even without a cache directory:
	 * tk_token_revalidate compares the card against them. */
	if ((r = tk_cache_new(identity, fresh)) != TK_OK)
		return r;
	*flags = opts->defer_revalidation && *cached != NULL ? TK_DRV_LOAD_TRUST_CACHE : 0;
	/* The caller's revalidation comes soon, off its path: what costs the
	 * card seconds (attestations: a signature each) waits for it. In the
	 * PKCS#11 module an exchange of 100 ms already counts as a stalled
	 * card, whose token C_GetSlotList then does not wait for. */
	if (opts->defer_revalidation)
		*flags |= TK_DRV_LOAD_DEFER_COSTLY;
	*t_cache = tk_now_us();
	return tk_drv_load(t->drv, t->ds, *cached, *fresh, *flags, &t->model);
}

int
tk_token_open(tk_card_t *card, const tk_token_opts_t *opts, tk_token_t **out)
{
	tk_token_opts_t defaults;
	const tk_drv_entry_t *const *drivers = NULL;
	size_t ndrivers = 0;
	tk_cache_t *cached = NULL, *fresh = NULL;
	char identity[TK_CACHE_MAX_IDENTITY + 1] = "";
	bool in_tx = false;
	tk_token_t *t;
	int64_t t0 = tk_now_us(), t_probe = 0, t_cache = 0, t_load;
	unsigned flags = 0;
	int r = TK_ERR_NOT_SUPPORTED;

	if (out == NULL)
		return TK_ERR_INVALID_ARG;
	*out = NULL;
	if (card == NULL)
		return TK_ERR_INVALID_ARG;
	if (opts == NULL) {
		tk_token_opts_init(&defaults);
		opts = &defaults;
	}
	if ((t = calloc(1, sizeof(*t))) == NULL)
		return TK_ERR_NO_MEMORY;
	if (pthread_mutex_init(&t->mtx, NULL) != 0) {
		free(t);
		return TK_ERR_NO_MEMORY;
	}
	if (pthread_mutex_init(&t->st, NULL) != 0) {
		pthread_mutex_destroy(&t->mtx);
		free(t);
		return TK_ERR_NO_MEMORY;
	}
	t->card = tk_card_ref(card);
	/* One transaction for probe and load: nobody slips in between the
	 * identity check and the objects it vouches for, and a warm open pays
	 * one begin/end round trip. Best effort: drivers take their own. */
	in_tx = tk_card_begin(card) == TK_OK;
	(void)tk_drivers_list(&drivers, &ndrivers);
	r = TK_ERR_NOT_SUPPORTED;
	for (size_t i = 0; i < ndrivers && t->drv == NULL; i++) {
		if (!tk_drv_entry_usable(drivers[i]))
			continue;
		r = tk_drv_probe(drivers[i], card, &t->ds, identity, sizeof(identity));
		/* a driver that failed for its own reasons does not keep the
		 * card from the next one; the card's own failures end here */
		if (r == TK_ERR_NOT_SUPPORTED || r == TK_ERR_INTERNAL)
			continue;
		if (r != TK_OK)
			goto fail;
		t->drv = drivers[i];
		t_probe = tk_now_us();
		r = load_model(t, opts, identity, &cached, &fresh, &flags, &t_cache);
		if (r == TK_ERR_INTERNAL && !tk_drv_entry_usable(drivers[i])) {
			/* it claimed the card, then broke the interface: the
			 * next driver may still know the card */
			tk_drv_free(t->drv, t->ds);
			t->ds = NULL;
			t->drv = NULL;
			t->use_cache = false;
			tk_cache_free(&cached);
			tk_cache_free(&fresh);
			identity[0] = '\0';
			continue;
		}
		if (r != TK_OK)
			goto fail;
	}
	if (t->drv == NULL) {
		r = TK_ERR_NOT_SUPPORTED;
		goto fail;
	}
	t_load = tk_now_us();
	if (in_tx) {
		(void)tk_card_end(card);
		in_tx = false;
	}
	if (t->use_cache && !tk_cache_equal(cached, fresh))
		(void)tk_cache_store(t->dir, fresh); /* a cache we cannot write is no error */
	if ((r = build_objects(&t->model, &t->objs, &t->nobjs)) != TK_OK)
		goto fail;
	assign_handles(t, t->objs, t->nobjs, NULL, 0);
	t->records = fresh;
	fresh = NULL;

	info_from_model(t);
	copy_str(t->info.identity, sizeof(t->info.identity), identity);
	t->info.pin_retries = t->info.pin_max_retries = t->info.puk_retries = -1;
	if (opts->refresh_pin_status && (r = refresh_pin_locked(t)) != TK_OK)
		goto fail;
	/* where an open's time goes (bench/p11bench.sh, TOKENKIT_LOG=debug) */
	tk_log_debug("token: %s: open %.2f ms: card (probe) %.2f, cache file %.2f, load%s %.2f, "
	             "objects %.2f",
	             identity, (tk_now_us() - t0) / 1e3, (t_probe - t0) / 1e3,
	             (t_cache - t_probe) / 1e3, flags & TK_DRV_LOAD_TRUST_CACHE ? " (trusted)" : "",
	             (t_load - t_cache) / 1e3, (tk_now_us() - t_load) / 1e3);
	tk_cache_free(&cached);
	*out = t;
	return TK_OK;
fail:
	if (in_tx)
		(void)tk_card_end(card);
	tk_cache_free(&cached);
	tk_cache_free(&fresh);
	tk_token_free(&t);
	return r;
}

void
tk_token_free(tk_token_t **tp)
{
	tk_token_t *t;

	if (tp == NULL || (t = *tp) == NULL)
		return;
	if (t->drv != NULL)
		tk_drv_free(t->drv, t->ds);
	tk_drv_model_clear(&t->model);
	free(t->objs);
	while (t->old != NULL) {
		struct token_gen *g = t->old;

		t->old = g->next;
		tk_drv_model_clear(&g->model);
		free(g->objs);
		free(g);
	}
	tk_cache_free(&t->records);
	tk_card_unref(&t->card);
	pthread_mutex_destroy(&t->st);
	pthread_mutex_destroy(&t->mtx);
	free(t);
	*tp = NULL;
}

/* Publish model *m and its objects (taken: *m cleared, *objs NULL); the
 * superseded ones stay until tk_token_free. io held. */
static int
install_locked(tk_token_t *t, tk_drv_model_t *m, tk_object_t **objs, size_t n)
{
	struct token_gen *g;

	if ((g = calloc(1, sizeof(*g))) == NULL)
		return TK_ERR_NO_MEMORY;
	pthread_mutex_lock(&t->st);
	g->model = t->model;
	g->objs = t->objs;
	g->nobjs = t->nobjs;
	g->next = t->old;
	t->old = g;
	t->model = *m;
	tk_drv_model_init(m, t->model.driver);
	t->objs = *objs;
	t->nobjs = n;
	*objs = NULL;
	info_from_model(t);
	pthread_mutex_unlock(&t->st);
	return TK_OK;
}

int
tk_token_revalidate(tk_token_t *t, bool *changed)
{
	tk_drv_model_t m;
	tk_cache_t *fresh = NULL;
	tk_object_t *objs = NULL;
	size_t n = 0;
	bool same;
	int r;

	if (changed != NULL)
		*changed = false;
	if (t == NULL || changed == NULL)
		return TK_ERR_INVALID_ARG;
	if (t->card == NULL)
		return TK_OK; /* a registered token: tk_token_update_registration */
	tk_drv_model_init(&m, tk_drv_entry_name(t->drv));
	pthread_mutex_lock(&t->mtx);
	if ((r = tk_cache_new(tk_cache_identity(t->records), &fresh)) != TK_OK)
		goto out;
	if ((r = tk_drv_load(t->drv, t->ds, t->records, fresh, 0, &m)) != TK_OK)
		goto out;
	if (tk_cache_equal(t->records, fresh))
		goto out; /* the card is what the token says: nothing moves */
	if (t->use_cache)
		(void)tk_cache_store(t->dir, fresh);
	if ((r = build_objects(&m, &objs, &n)) != TK_OK)
		goto out;
	assign_handles(t, objs, n, t->objs, t->nobjs);
	same = n == t->nobjs;
	for (size_t i = 0; same && i < n; i++)
		same = objs[i].handle == t->objs[i].handle;
	tk_cache_free(&t->records);
	t->records = fresh;
	fresh = NULL;
	if (same) {
		/* some record changed that shows in no object (metadata of an
		 * empty slot, vendor data): keep the published list as it is */
		goto out;
	}
	if ((r = install_locked(t, &m, &objs, n)) != TK_OK)
		goto out;
	*changed = true;
	tk_log_info("token: %s: objects changed on the card; %zu objects now", t->info.identity,
	            t->nobjs);
out:
	pthread_mutex_unlock(&t->mtx);
	free(objs);
	tk_drv_model_clear(&m);
	tk_cache_free(&fresh);
	return r;
}

/* ---- state ------------------------------------------------------------------------ */

/* Drop login state that belongs to an earlier card generation. */
static void
check_generation(tk_token_t *t)
{
	uint64_t g = tk_card_generation(t->card);

	if (t->logged_in && t->login_gen != g)
		t->logged_in = false;
	if (t->so_logged_in && t->so_gen != g)
		t->so_logged_in = false;
}

/* The reader has a PIN pad and the driver can use it. */
static bool
has_pinpad(tk_token_t *t)
{
	tk_card_caps_t caps;

	if (t->card == NULL || t->drv == NULL || !tk_drv_has_pinpad(t->drv))
		return false;
	tk_card_caps(t->card, &caps);
	return caps.pin_pad_verify;
}

/* The reader's PIN pad can change a PIN and the driver can use it. */
static bool
has_pinpad_change(tk_token_t *t)
{
	tk_card_caps_t caps;

	if (t->card == NULL || t->drv == NULL || !tk_drv_has_pinpad_change(t->drv))
		return false;
	tk_card_caps(t->card, &caps);
	return caps.pin_pad_modify;
}

int
tk_token_info(tk_token_t *t, tk_token_info_t *info)
{
	if (info != NULL)
		memset(info, 0, sizeof(*info));
	if (t == NULL || info == NULL)
		return TK_ERR_INVALID_ARG;
	pthread_mutex_lock(&t->st);
	check_generation(t);
	*info = t->info;
	info->logged_in = t->logged_in;
	info->so_logged_in = t->so_logged_in;
	pthread_mutex_unlock(&t->st);
	info->protected_auth_path = has_pinpad(t);
	return TK_OK;
}

int
tk_token_refresh_pin(tk_token_t *t)
{
	int r;

	if (t == NULL)
		return TK_ERR_INVALID_ARG;
	pthread_mutex_lock(&t->mtx);
	r = refresh_pin_locked(t);
	pthread_mutex_unlock(&t->mtx);
	return r;
}

int
tk_token_objects(tk_token_t *t, const tk_object_t **objs, size_t *count)
{
	if (objs != NULL)
		*objs = NULL;
	if (count != NULL)
		*count = 0;
	if (t == NULL || objs == NULL || count == NULL)
		return TK_ERR_INVALID_ARG;
	/* a revalidation may install a new list; the old one stays allocated */
	pthread_mutex_lock(&t->st);
	*objs = t->objs;
	*count = t->nobjs;
	pthread_mutex_unlock(&t->st);
	return TK_OK;
}

static const tk_object_t *
find_handle_locked(const tk_token_t *t, uint32_t handle)
{
	for (size_t i = 0; handle != 0 && i < t->nobjs; i++)
		if (t->objs[i].handle == handle)
			return &t->objs[i];
	return NULL;
}

const tk_object_t *
tk_token_object(tk_token_t *t, uint32_t handle)
{
	const tk_object_t *o;

	if (t == NULL || handle == 0)
		return NULL;
	pthread_mutex_lock(&t->st);
	o = find_handle_locked(t, handle);
	pthread_mutex_unlock(&t->st);
	return o;
}

/* ---- PINs ------------------------------------------------------------------------- */

static void
note_retries(tk_token_t *t, int user, int r, int retries)
{
	if (r != TK_OK && r != TK_ERR_PIN_INCORRECT && r != TK_ERR_PIN_LOCKED)
		return;
	if (user == TK_USER_SO) {
		t->info.puk_retries = r == TK_OK ? t->info.puk_retries : retries;
		t->info.puk_locked = r == TK_ERR_PIN_LOCKED;
	} else {
		t->info.pin_retries = r == TK_OK ? t->info.pin_max_retries : retries;
		t->info.pin_locked = r == TK_ERR_PIN_LOCKED;
	}
}

/* What a VERIFY (or the PUK check) told about the login; io held. A user
 * PIN the card refused also ends the user's login on the card (PIV resets
 * the security status of a reference whose verification fails), so the
 * token says so rather than find out at the next operation. */
static void
note_verify(tk_token_t *t, int user, int r, int retries)
{
	uint64_t g;

	pthread_mutex_lock(&t->st);
	check_generation(t);
	note_retries(t, user, r, retries);
	g = tk_card_generation(t->card);
	if (r == TK_OK && user == TK_USER_SO) {
		t->so_logged_in = true;
		t->so_gen = g;
	} else if (r == TK_OK) {
		t->logged_in = true;
		t->login_gen = g;
	} else if (user != TK_USER_SO && (r == TK_ERR_PIN_INCORRECT || r == TK_ERR_PIN_LOCKED)) {
		t->logged_in = false;
	}
	pthread_mutex_unlock(&t->st);
}

int
tk_token_login(tk_token_t *t, int user, const uint8_t *pin, size_t pin_len)
{
	int r, retries = -1;

	if (t == NULL || pin == NULL)
		return TK_ERR_INVALID_ARG;
	if (user != TK_USER_SO && user != TK_USER_USER && user != TK_USER_CONTEXT)
		return TK_ERR_INVALID_ARG;
	if (pin_len < t->info.pin_min_len || pin_len > t->info.pin_max_len)
		return TK_ERR_INVALID_ARG;
	pthread_mutex_lock(&t->mtx);
	r = tk_drv_pin_verify(t->drv, t->ds, user, pin, pin_len, &retries);
	note_verify(t, user, r, retries);
	pthread_mutex_unlock(&t->mtx);
	return r;
}

int
tk_token_login_pinpad(tk_token_t *t, int user)
{
	int r, retries = -1;

	if (t == NULL || (user != TK_USER_USER && user != TK_USER_CONTEXT))
		return TK_ERR_INVALID_ARG;
	if (!has_pinpad(t))
		return TK_ERR_NOT_SUPPORTED;
	pthread_mutex_lock(&t->mtx);
	r = tk_drv_pin_verify_pad(t->drv, t->ds, user, &retries);
	note_verify(t, user, r, retries);
	pthread_mutex_unlock(&t->mtx);
	return r;
}

int
tk_token_logout(tk_token_t *t)
{
	int retries, r = TK_OK;
	bool was;

	if (t == NULL)
		return TK_ERR_INVALID_ARG;
	pthread_mutex_lock(&t->mtx);
	pthread_mutex_lock(&t->st);
	check_generation(t);
	was = t->logged_in;
	pthread_mutex_unlock(&t->st);
	if (was)
		r = tk_drv_pin_verify(t->drv, t->ds, TK_USER_USER, NULL, 0, &retries);
	pthread_mutex_lock(&t->st);
	t->logged_in = t->so_logged_in = false;
	pthread_mutex_unlock(&t->st);
	pthread_mutex_unlock(&t->mtx);
	/* the token is logged out here whatever the card said */
	if (r != TK_OK)
		tk_log_debug("token: logout: %s", tk_strerror(r));
	return TK_OK;
}

int
tk_token_change_pin(tk_token_t *t, int user, const uint8_t *old_pin, size_t old_len,
                    const uint8_t *new_pin, size_t new_len)
{
	int r;

	if (t == NULL || old_pin == NULL || new_pin == NULL ||
	    (user != TK_USER_USER && user != TK_USER_SO))
		return TK_ERR_INVALID_ARG;
	pthread_mutex_lock(&t->mtx);
	r = tk_drv_pin_change(t->drv, t->ds, user, old_pin, old_len, new_pin, new_len);
	pthread_mutex_unlock(&t->mtx);
	return r;
}

int
tk_token_change_pin_pad(tk_token_t *t, int user)
{
	int r, retries = -1;

	if (t == NULL || (user != TK_USER_USER && user != TK_USER_SO))
		return TK_ERR_INVALID_ARG;
	if (!has_pinpad_change(t))
		return TK_ERR_NOT_SUPPORTED;
	pthread_mutex_lock(&t->mtx);
	r = tk_drv_pin_change_pad(t->drv, t->ds, user, &retries);
	/* a wrong old PIN cost a try, as a wrong VERIFY does */
	pthread_mutex_lock(&t->st);
	check_generation(t);
	note_retries(t, user, r, retries);
	pthread_mutex_unlock(&t->st);
	pthread_mutex_unlock(&t->mtx);
	return r;
}

int
tk_token_unblock_pin(tk_token_t *t, const uint8_t *puk, size_t puk_len, const uint8_t *new_pin,
                     size_t new_len)
{
	int r;

	if (t == NULL || puk == NULL || new_pin == NULL)
		return TK_ERR_INVALID_ARG;
	pthread_mutex_lock(&t->mtx);
	r = tk_drv_pin_unblock(t->drv, t->ds, puk, puk_len, new_pin, new_len);
	if (r == TK_OK) {
		pthread_mutex_lock(&t->st);
		t->info.pin_locked = false;
		t->info.pin_retries = t->info.pin_max_retries;
		pthread_mutex_unlock(&t->st);
	}
	pthread_mutex_unlock(&t->mtx);
	return r;
}

/* ---- keys ---------------------------------------------------------------------------- */

static bool
in_array(const tk_object_t *o, const tk_object_t *objs, size_t n)
{
	uintptr_t p = (uintptr_t)o, a = (uintptr_t)objs;

	return objs != NULL && p >= a && p < a + n * sizeof(*objs) && (p - a) % sizeof(*objs) == 0;
}

/* The current object for key: key itself, or, for a pointer into a list a
 * revalidation superseded, the current object with its handle (which is
 * the same object: handles survive only unchanged). NULL for anything else. */
static const tk_object_t *
current_locked(const tk_token_t *t, const tk_object_t *key)
{
	if (in_array(key, t->objs, t->nobjs))
		return key;
	for (const struct token_gen *g = t->old; g != NULL; g = g->next)
		if (in_array(key, g->objs, g->nobjs))
			return find_handle_locked(t, key->handle);
	return NULL;
}

static const tk_drv_slot_t *
key_slot_locked(const tk_token_t *t, const tk_object_t *key)
{
	if ((key = current_locked(t, key)) == NULL || key->cls != TK_OBJ_PRIVKEY)
		return NULL;
	for (size_t i = 0; i < t->model.nslots; i++)
		if (t->model.slots[i].key_ref == key->key_ref)
			return &t->model.slots[i];
	return NULL;
}

/* A kept PIN (the caller's, opt-in) is sent again only while the card's
 * counter shows no failed try since the last good VERIFY: a PIN changed by
 * another program then costs one try in all, whatever number of programs
 * keep the old one, and never blocks the card. Where the card does not
 * tell its maximum, at least this many tries must be left. */
#define KEPT_PIN_MIN_TRIES 3
/* Transaction attempts after the card reports a reset at its start. */
#define KEY_OP_BEGIN_TRIES 3

/* Before a kept PIN goes to the card: an empty VERIFY (no try spent) tells
 * the tries left, or that the PIN is verified already (the card's login
 * came back: someone logged in again), in which case nothing is sent.
 * io held, inside the operation's transaction. */
static int
kept_pin_guard(tk_token_t *t, bool *verified)
{
	tk_drv_pin_status_t st;
	int max, r;

	*verified = false;
	if ((r = tk_drv_pin_status(t->drv, t->ds, TK_USER_USER, &st)) != TK_OK)
		return r;
	if (st.verified) {
		*verified = true;
		return TK_OK;
	}
	pthread_mutex_lock(&t->st);
	max = st.max_retries >= 0 ? st.max_retries : t->info.pin_max_retries;
	pthread_mutex_unlock(&t->st);
	if (st.retries < 0 || (max > 0 ? st.retries < max : st.retries < KEPT_PIN_MIN_TRIES)) {
		tk_log_info("token: the kept PIN is not sent again: %d tries left (of %d)",
		            st.retries, max);
		return TK_ERR_SECURITY_STATUS;
	}
	return TK_OK;
}

void
tk_token_io_hold(tk_token_t *t)
{
	pthread_mutex_lock(&t->mtx);
}

void
tk_token_io_release(tk_token_t *t)
{
	pthread_mutex_unlock(&t->mtx);
}

/* One card transaction: VERIFY with pin when one is given (TK_USER_CONTEXT:
 * the PIN of this operation of a PIN-always key; TK_USER_USER: a kept PIN,
 * checked by kept_pin_guard first), then the key operation. Nobody (no
 * other thread: io is held; no other program: the card transaction) gets a
 * command in between. */
static int
key_op_tx(tk_token_t *t, const tk_drv_slot_t *s, int op, int user, const uint8_t *pin,
          size_t pin_len, const uint8_t *in, size_t in_len, uint8_t *out, size_t out_cap,
          size_t *out_len)
{
	bool verified = false;
	int r, retries = -1;

	/* taking the transaction changed nothing on the card: again (the
	 * generation moved on, so the login checks below see the reset). A
	 * registered token has no card: its provider serialises itself. */
	r = t->card != NULL ? tk_card_begin(t->card) : TK_OK;
	for (int i = 0; i < KEY_OP_BEGIN_TRIES && r == TK_ERR_CARD_RESET; i++)
		r = tk_card_begin(t->card);
	if (r != TK_OK)
		return r;
	if (pin != NULL && user == TK_USER_USER)
		r = kept_pin_guard(t, &verified);
	if (r == TK_OK && pin != NULL) {
		if (!verified)
			r = tk_drv_pin_verify(t->drv, t->ds, user, pin, pin_len, &retries);
		note_verify(t, user, r, retries);
	}
	if (r == TK_OK)
		r = tk_drv_key_op(t->drv, t->ds, s, op, in, in_len, out, out_cap, out_len);
	if (r == TK_ERR_SECURITY_STATUS || r == TK_ERR_CARD_RESET) {
		pthread_mutex_lock(&t->st);
		check_generation(t);
		/* the card forgot the PIN: another program logged out, reset the
		 * card or selected another application */
		if (r == TK_ERR_SECURITY_STATUS && s->needs_login && !s->always_authenticate)
			t->logged_in = false;
		pthread_mutex_unlock(&t->st);
	}
	if (t->card != NULL)
		(void)tk_card_end(t->card);
	return r;
}

int
tk_token_key_op_auth(tk_token_t *t, const tk_object_t *key, int op, const tk_key_auth_t *auth,
                     const uint8_t *in, size_t in_len, uint8_t *out, size_t out_cap,
                     size_t *out_len)
{
	const tk_drv_slot_t *s;
	bool logged, kept;
	unsigned need;
	int r;

	if (out_len != NULL)
		*out_len = 0;
	if (t == NULL || key == NULL || in == NULL || out == NULL || out_len == NULL)
		return TK_ERR_INVALID_ARG;
	need = op == TK_OP_ECDSA || op == TK_OP_EDDSA || op == TK_OP_RSA_PKCS1_SIGN ? TK_USAGE_SIGN
	       : op == TK_OP_ECDH              ? TK_USAGE_DERIVE
	       : op == TK_OP_RSA_PKCS1_DECRYPT ? TK_USAGE_DECRYPT
	       : op == TK_OP_RSA_RAW           ? (TK_USAGE_SIGN | TK_USAGE_DECRYPT)
	                                       : 0;
	pthread_mutex_lock(&t->mtx);
	pthread_mutex_lock(&t->st);
	/* the model (and so s) changes only under io, which we hold */
	s = key_slot_locked(t, key);
	if (s == NULL || need == 0 || (s->usage & need) == 0 || (s->ops & TK_OP_BIT(op)) == 0) {
		pthread_mutex_unlock(&t->st);
		r = TK_ERR_INVALID_ARG;
		goto out;
	}
	check_generation(t);
	logged = t->logged_in;
	pthread_mutex_unlock(&t->st);
	/* Refused here, without an APDU, when the card would refuse too. */
	if (s->always_authenticate) {
		if (auth == NULL || auth->op_pin == NULL)
			r = TK_ERR_SECURITY_STATUS;
		else
			r = key_op_tx(t, s, op, TK_USER_CONTEXT, auth->op_pin, auth->op_pin_len, in,
			              in_len, out, out_cap, out_len);
		goto out;
	}
	kept = s->needs_login && auth != NULL && auth->user_pin != NULL;
	if (s->needs_login && !logged && !kept) {
		r = TK_ERR_SECURITY_STATUS;
		goto out;
	}
	r = key_op_tx(t, s, op, TK_USER_USER, kept && !logged ? auth->user_pin : NULL,
	              kept ? auth->user_pin_len : 0, in, in_len, out, out_cap, out_len);
	if (kept && logged && (r == TK_ERR_SECURITY_STATUS || r == TK_ERR_CARD_RESET)) {
		/* the card lost the login meanwhile: the kept PIN again, with the
		 * operation, in a transaction of their own */
		r = key_op_tx(t, s, op, TK_USER_USER, auth->user_pin, auth->user_pin_len, in,
		              in_len, out, out_cap, out_len);
	}
out:
	pthread_mutex_unlock(&t->mtx);
	return r;
}

int
tk_token_key_op(tk_token_t *t, const tk_object_t *key, int op, const uint8_t *in, size_t in_len,
                uint8_t *out, size_t out_cap, size_t *out_len)
{
	return tk_token_key_op_auth(t, key, op, NULL, in, in_len, out, out_cap, out_len);
}

unsigned
tk_token_key_ops(tk_token_t *t, const tk_object_t *key)
{
	const tk_drv_slot_t *s;
	unsigned ops = 0;

	if (t == NULL || key == NULL)
		return 0;
	pthread_mutex_lock(&t->mtx);
	pthread_mutex_lock(&t->st);
	if ((s = key_slot_locked(t, key)) != NULL)
		ops = s->ops;
	pthread_mutex_unlock(&t->st);
	pthread_mutex_unlock(&t->mtx);
	return ops;
}

bool
tk_token_present(tk_token_t *t)
{
	/* a registered token is there while it is registered: whoever holds
	 * it hears of its removal from the registry */
	return t != NULL && (t->card == NULL ? t->prov != NULL : tk_card_present(t->card));
}

tk_card_t *
tk_token_card(tk_token_t *t)
{
	return t != NULL ? t->card : NULL;
}

/* ---- registered tokens (provider.h) ------------------------------------------------- */

static int
token_alloc(tk_token_t **out)
{
	tk_token_t *t;

	*out = NULL;
	if ((t = calloc(1, sizeof(*t))) == NULL)
		return TK_ERR_NO_MEMORY;
	if (pthread_mutex_init(&t->mtx, NULL) != 0) {
		free(t);
		return TK_ERR_NO_MEMORY;
	}
	if (pthread_mutex_init(&t->st, NULL) != 0) {
		pthread_mutex_destroy(&t->mtx);
		free(t);
		return TK_ERR_NO_MEMORY;
	}
	*out = t;
	return TK_OK;
}

int
tk_token_open_registration(const tk_registration_t *reg, tk_token_t **out)
{
	const tk_provider_t *p = NULL;
	tk_token_t *t = NULL;
	int r;

	if (out == NULL)
		return TK_ERR_INVALID_ARG;
	*out = NULL;
	if (reg == NULL || tk_registration_removed(reg))
		return TK_ERR_INVALID_ARG;
	if ((r = tk_provider_find(tk_registration_provider(reg), &p)) != TK_OK)
		return r;
	if ((r = token_alloc(&t)) != TK_OK)
		return r;
	if ((t->drv = tk_drv_entry_of(p->ops)) == NULL) {
		r = TK_ERR_NO_MEMORY;
		goto fail;
	}
	tk_drv_model_init(&t->model, p->id);
	if ((r = p->open(reg, &t->ds, &t->model)) != TK_OK) {
		t->drv = NULL; /* no state to free */
		goto fail;
	}
	t->prov = p;
	if ((r = build_objects(&t->model, &t->objs, &t->nobjs)) != TK_OK)
		goto fail;
	assign_handles(t, t->objs, t->nobjs, NULL, 0);
	info_from_model(t);
	snprintf(t->info.identity, sizeof(t->info.identity), "%s/%s", tk_registration_provider(reg),
	         tk_registration_instance(reg));
	t->info.pin_retries = t->info.pin_max_retries = t->info.puk_retries = -1;
	*out = t;
	return TK_OK;
fail:
	/* (a provider whose open fails leaves no state behind) */
	tk_token_free(&t);
	return r;
}

int
tk_token_update_registration(tk_token_t *t, const tk_registration_t *reg, bool *changed)
{
	tk_drv_model_t m;
	tk_object_t *objs = NULL;
	size_t n = 0;
	bool same;
	int r;

	if (changed != NULL)
		*changed = false;
	if (t == NULL || t->prov == NULL || reg == NULL || changed == NULL ||
	    strcmp(t->prov->id, tk_registration_provider(reg)) != 0)
		return TK_ERR_INVALID_ARG;
	tk_drv_model_init(&m, t->prov->id);
	pthread_mutex_lock(&t->mtx);
	if ((r = t->prov->update(t->ds, reg, &m)) != TK_OK)
		goto out;
	if ((r = build_objects(&m, &objs, &n)) != TK_OK)
		goto out;
	assign_handles(t, objs, n, t->objs, t->nobjs);
	same = n == t->nobjs && strcmp(m.label, t->model.label) == 0;
	for (size_t i = 0; same && i < n; i++)
		same = objs[i].handle == t->objs[i].handle;
	if (same)
		goto out; /* nothing a user of the token sees: nothing moves */
	if ((r = install_locked(t, &m, &objs, n)) != TK_OK)
		goto out;
	*changed = true;
	tk_log_info("token: %s: registration updated; %zu objects now", t->info.identity, t->nobjs);
out:
	pthread_mutex_unlock(&t->mtx);
	free(objs);
	tk_drv_model_clear(&m);
	return r;
}

void *
tk_token_provider_state(tk_token_t *t, const tk_provider_t *p)
{
	return t != NULL && p != NULL && t->prov == p ? t->ds : NULL;
}

/* ---- a card token's record in the registry ---------------------------------------
 * Card tokens register themselves when first seen: provider = the driver,
 * instance = the card's identity, the token's label, and one item per
 * certificate and private key (public key, type, size, usages; the driver's
 * key reference as the provider handle), flagged TK_REG_FLAG_CARD: the
 * reader that holds the card publishes the token, never the registry. Why
 * this record is not the public-object cache: core/cache.h. The record is
 * written only when it differs from the store's, so a known card costs one
 * read of one small file. */

/* The driver's key reference, big-endian, without leading zero bytes. */
static size_t
key_ref_bytes(uint32_t ref, uint8_t out[4])
{
	size_t n = 0;

	for (int shift = 24; shift >= 0; shift -= 8)
		if (n > 0 || (ref >> shift) != 0 || shift == 0)
			out[n++] = (uint8_t)(ref >> shift);
	return n;
}

static int
card_registration(tk_token_t *t, tk_registration_t **out)
{
	tk_registration_t *reg = NULL;
	size_t skipped = 0;
	int r;

	pthread_mutex_lock(&t->st);
	r = tk_registration_new(t->info.driver, t->info.identity, &reg);
	if (r == TK_OK)
		r = tk_registration_set_label(reg, t->info.label);
	for (size_t i = 0; r == TK_OK && i < t->nobjs; i++) {
		const tk_object_t *o = &t->objs[i];
		uint8_t ref[4];
		tk_reg_item_t it = {.id = o->id, .id_len = o->id_len, .label = o->label};
		int ra;

		if (o->cls == TK_OBJ_CERT) {
			it.kind = TK_REG_ITEM_CERT;
			it.der = o->der;
			it.der_len = o->der_len;
		} else if (o->cls == TK_OBJ_PRIVKEY) {
			it.kind = TK_REG_ITEM_KEY;
			it.der = o->der;
			it.der_len = o->der != NULL ? o->der_len : 0;
			it.key_type = o->key_type;
			it.key_bits = o->key_bits;
			it.usage = o->usage;
			it.handle = ref;
			it.handle_len = key_ref_bytes(o->key_ref, ref);
		} else {
			continue; /* public keys repeat the private keys'; data objects are not
			             offered */
		}
		/* an object a registration cannot carry (no id, a key of no known
		 * type, too many) is left out of the record, not out of the token */
		ra = tk_registration_add_item(reg, &it);
		if (ra == TK_ERR_NO_MEMORY)
			r = ra;
		else if (ra != TK_OK)
			skipped++;
	}
	pthread_mutex_unlock(&t->st);
	if (r != TK_OK) {
		tk_registration_free(&reg);
		return r;
	}
	if (skipped > 0)
		tk_log_debug("token: %s: %zu objects left out of its registration",
		             t->info.identity, skipped);
	tk_registration_set_flags(reg, TK_REG_FLAG_CARD);
	*out = reg;
	return TK_OK;
}

static bool
registering_wanted(void)
{
	const char *v = tk_env("TOKENKIT_REGISTER_CARDS");

	return v == NULL || strcmp(v, "0") != 0;
}

/* Up to this many compare-and-swap rounds against other processes opening
 * the same card at the same moment (each writes the same record). */
#define REGISTER_TRIES 3

int
tk_token_register(tk_token_t *t, tk_registry_t *store, bool *written)
{
	tk_registry_t *own = NULL, *reg = store;
	tk_registration_t *want = NULL, *cur = NULL;
	uint64_t gen = 0, expected = 0;
	int r;

	if (written != NULL)
		*written = false;
	if (t == NULL)
		return TK_ERR_INVALID_ARG;
	if (t->prov != NULL || t->info.identity[0] == '\0')
		return TK_ERR_NOT_SUPPORTED; /* a registered token, or a card with no identity */
	if (reg == NULL) {
		if (!registering_wanted())
			return TK_OK;
		if ((r = tk_registry_open(NULL, &own)) != TK_OK)
			return r;
		reg = own;
	}
	if ((r = card_registration(t, &want)) != TK_OK)
		goto out;
	for (int i = 0; i < REGISTER_TRIES; i++) {
		tk_registration_free(&cur);
		r = tk_registry_get(reg, t->info.driver, t->info.identity, &cur);
		if (r == TK_ERR_NOT_FOUND) {
			expected = 0;
		} else if (r != TK_OK) {
			goto out; /* a bad record is logged by the registry and left alone */
		} else if (!(tk_registration_flags(cur) & TK_REG_FLAG_CARD)) {
			tk_log_warn(
			        "token: %s: the registry holds a registration %s/%s that is not a "
			        "card's; left alone",
			        t->info.identity, t->info.driver, t->info.identity);
			r = TK_ERR_CONFLICT;
			goto out;
		} else if (tk_registration_equal(cur, want)) {
			goto out; /* as the store has it: nothing to write */
		} else {
			expected = tk_registration_generation(cur);
		}
		r = tk_registry_put(reg, want, expected, &gen);
		if (r != TK_ERR_CONFLICT)
			break;
	}
	if (r == TK_OK) {
		if (written != NULL)
			*written = true;
		tk_log_info("token: %s: %s in the registry (generation %llu)", t->info.identity,
		            expected == 0 ? "registered" : "registration updated",
		            (unsigned long long)gen);
	}
out:
	tk_registration_free(&cur);
	tk_registration_free(&want);
	tk_registry_free(&own);
	return r;
}
