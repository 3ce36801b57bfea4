/* tokenkitd: BP_TOKENS, BP_READERS and BP_READER_RESET (pkcs11/bproto.h), the readers'
 * tokens and the readers as the tokenkit tool shows them
 * (tools/tokenkit/cmd_tokens.c, cmd_readers.c), for a tool that cannot open
 * the readers itself while the broker holds them (a direct-USB reader is
 * claimed by one process). Read from the embedded module's own tokens and
 * slot manager: no second open of a card. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include <tokenkit/err.h>
#include <tokenkit/log.h>
#include <tokenkit/slot.h>
#include <tokenkit/token.h>

#include "bproto.h"
#include "broker.h"
#include "p11.h"

static void
put_text(struct bp_w *w, const char *s)
{
	bp_put_b(w, s, strlen(s));
}

static void
put_token(struct bp_w *w, tk_token_t *tk)
{
	const tk_object_t *objs = NULL;
	tk_token_info_t ti;
	struct bp_w list;
	size_t n = 0;

	/* the tries left, as the tool's own open asks for them
	 * (refresh_pin_status): no try is spent */
	(void)tk_token_refresh_pin(tk);
	if (tk_token_info(tk, &ti) != TK_OK) {
		memset(&ti, 0, sizeof(ti));
		ti.pin_retries = ti.puk_retries = -1;
	}
	put_text(w, ti.driver);
	put_text(w, ti.label);
	put_text(w, ti.serial);
	bp_put_u(w, ti.pin_retries >= 0 ? (uint64_t)ti.pin_retries + 1 : 0);
	bp_put_u(w, ti.pin_locked);
	bp_put_u(w, ti.puk_retries >= 0 ? (uint64_t)ti.puk_retries + 1 : 0);
	bp_put_u(w, ti.puk_locked);
	bp_w_init(&list);
	if (tk_token_objects(tk, &objs, &n) != TK_OK)
		n = 0;
	for (size_t i = 0; i < n; i++) {
		const tk_object_t *o = &objs[i];
		struct bp_w ob;

		bp_w_init(&ob);
		bp_put_u(&ob, o->handle);
		bp_put_u(&ob, (uint64_t)o->cls);
		bp_put_b(&ob, o->id, o->id_len);
		put_text(&ob, o->label);
		bp_put_u(&ob, (uint64_t)o->key_type);
		bp_put_u(&ob, o->key_bits);
		bp_put_u(&ob, o->has_identity);
		bp_put_u(&ob, o->usage);
		bp_put_u(&ob, o->always_authenticate);
		if (o->cls == TK_OBJ_CERT && o->der != NULL)
			bp_put_b(&ob, o->der, o->der_len);
		else
			bp_put_null(&ob);
		bp_put_sub(&list, &ob);
	}
	bp_put_sub(w, &list);
}

tk_slotmgr_t *
broker_manager(void)
{
	tk_slotmgr_t *mgr;

	pthread_mutex_lock(&g_p11.lock);
	mgr = g_p11.initialized ? g_p11.mgr : NULL;
	pthread_mutex_unlock(&g_p11.lock);
	return mgr;
}

/* The request's reader name (or null: all) into want; then the manager's
 * readers into *infos (free() it), *want_id the one named. CKR_OK, else
 * the request's answer (*bad: it does not parse). */
static CK_RV
list_wanted(struct bp_r *r, bool *bad, char *want, size_t cap, bool *all, uint32_t *want_id,
            tk_slot_info_t **infos, size_t *n)
{
	size_t wl = 0;
	const uint8_t *wb = bp_get_b(r, &wl, true, all);
	tk_slotmgr_t *mgr;
	int e;

	*infos = NULL;
	*n = 0;
	if (!bp_r_done(r) || (!*all && !broker_reader_arg(wb, wl, want, cap))) {
		*bad = true;
		return CKR_ARGUMENTS_BAD;
	}
	if ((mgr = broker_manager()) == NULL)
		return CKR_CRYPTOKI_NOT_INITIALIZED;
	if (!*all && tk_slotmgr_find(mgr, want, want_id) != TK_OK)
		return CKR_SLOT_ID_INVALID;
	if ((e = tk_slotmgr_list(mgr, infos, n)) != TK_OK)
		return e == TK_ERR_NO_MEMORY ? CKR_HOST_MEMORY : CKR_DEVICE_ERROR;
	return CKR_OK;
}

CK_RV
broker_tokens(struct bp_r *r, struct bp_w *w, bool *bad)
{
	char want[256];
	bool none = false;
	size_t n = 0;
	tk_slot_info_t *infos = NULL;
	uint32_t want_id = 0;
	CK_RV lrv = list_wanted(r, bad, want, sizeof(want), &none, &want_id, &infos, &n);

	if (lrv != CKR_OK)
		return lrv;
	for (size_t i = 0; i < n; i++) {
		const tk_slot_info_t *s = &infos[i];
		struct p11_token *t = NULL;
		struct bp_w one;
		CK_RV rv;

		if (!none ? s->slot_id != want_id : s->card_seq == 0)
			continue;
		rv = tk_p11_slot_token(s->slot_id, &t);
		bp_w_init(&one);
		bp_put_u(&one, s->slot_id);
		put_text(&one, s->reader);
		bp_put_u(&one, rv);
		if (rv == CKR_OK)
			put_token(&one, tk_p11_tk(t));
		if (t != NULL)
			tk_p11_token_put(t);
		bp_put_sub(w, &one);
	}
	free(infos);
	return w->ok ? CKR_OK : CKR_HOST_MEMORY;
}

CK_RV
broker_readers(struct bp_r *r, struct bp_w *w, bool *bad)
{
	char want[256];
	bool all = false;
	size_t n = 0;
	tk_slot_info_t *infos = NULL;
	tk_slot_diag_t *d;
	uint32_t want_id = 0;
	CK_RV lrv = list_wanted(r, bad, want, sizeof(want), &all, &want_id, &infos, &n);
	tk_slotmgr_t *mgr = broker_manager();

	if (lrv != CKR_OK)
		return lrv;
	if (mgr == NULL || (d = malloc(sizeof(*d))) == NULL) {
		free(infos);
		return CKR_HOST_MEMORY;
	}
	for (size_t i = 0; i < n; i++) {
		const tk_slot_info_t *s = &d->info;
		struct bp_w one, steps;

		if (infos[i].state == TK_SLOT_ABSENT || (!all && infos[i].slot_id != want_id) ||
		    tk_slotmgr_diag(mgr, infos[i].slot_id, d) != TK_OK)
			continue;
		bp_w_init(&one);
		bp_put_u(&one, s->slot_id);
		put_text(&one, s->reader);
		bp_put_u(&one, (uint64_t)s->state);
		bp_put_u(&one, s->card_seq);
		bp_put_b(&one, s->atr, s->atr_len <= sizeof(s->atr) ? s->atr_len : 0);
		bp_put_u(&one,
		         s->protocol >= 0 && s->protocol <= 1 ? (uint64_t)s->protocol + 1 : 0);
		bp_put_u(&one, s->busy_ms);
		put_text(&one, s->backend);
		put_text(&one, s->exchange);
		bp_put_u(&one, s->reader_slots);
		bp_put_u(&one, s->pin_pad);
		bp_put_u(&one, d->generation);
		bp_put_u(&one, d->rebinds);
		bp_put_u(&one, d->stuck);
		bp_put_u(&one, d->transmits);
		bp_put_u(&one, d->errors);
		bp_put_u(&one, d->timeouts);
		bp_put_u(&one, d->err_comm);
		bp_put_u(&one, d->err_removed);
		bp_put_u(&one, d->err_reset);
		bp_put_u(&one, d->err_no_service);
		bp_put_u(&one, d->err_other);
		bp_put_u(&one, d->connects);
		bp_put_u(&one, d->connect_failures);
		bp_put_u(&one, d->abandoned_workers);
		bp_put_u(&one, d->retried_ok);
		bp_put_u(&one, d->recoveries);
		bp_put_u(&one, d->recoveries_failed);
		bp_w_init(&steps);
		for (int k = 0; k < TK_STEP_COUNT; k++)
			bp_put_u(&steps, d->step_ok[k]);
		bp_put_sub(&one, &steps);
		bp_put_u(&one, d->last_err <= 0 ? (uint64_t) - (int64_t)d->last_err : 0);
		bp_put_u(&one, d->lat_samples);
		bp_put_u(&one, d->lat_p50_us);
		bp_put_u(&one, d->lat_p90_us);
		bp_put_u(&one, d->lat_p99_us);
		bp_put_u(&one, d->lat_max_us);
		bp_put_u(&one, d->txn_begun); /* (since 0.2: a client reads them when there) */
		bp_put_u(&one, d->txn_carried);
		bp_put_sub(w, &one);
	}
	free(d);
	free(infos);
	return w->ok ? CKR_OK : CKR_HOST_MEMORY;
}

uint64_t
broker_err(int err)
{
	return err < 0 ? (uint64_t) - (int64_t)err : 0;
}

bool
broker_reader_arg(const uint8_t *p, size_t n, char *out, size_t cap)
{
	if (n == 0 || n >= cap || memchr(p, 0, n) != NULL)
		return false;
	memcpy(out, p, n);
	out[n] = '\0';
	return true;
}

CK_RV
broker_reader_reset(struct bp_r *r, struct bp_w *w, bool *bad)
{
	size_t nl = 0;
	const uint8_t *nb = bp_get_b(r, &nl, false, NULL);
	uint64_t cold = bp_get_u(r);
	char name[256];
	tk_slotmgr_t *mgr = broker_manager();
	tk_recovery_t rec;
	struct bp_w steps;
	uint32_t id;
	size_t n;
	int e;

	if (!bp_r_done(r) || !broker_reader_arg(nb, nl, name, sizeof(name)) || cold > 1) {
		*bad = true;
		return CKR_ARGUMENTS_BAD;
	}
	if (mgr == NULL)
		return CKR_CRYPTOKI_NOT_INITIALIZED;
	if (tk_slotmgr_find(mgr, name, &id) != TK_OK)
		return CKR_SLOT_ID_INVALID;
	memset(&rec, 0, sizeof(rec));
	e = tk_slotmgr_reset(mgr, id, cold != 0, 0, &rec);
	tk_log_info("tokenkitd: a forced %s reset of %s: %s", cold ? "cold" : "warm", name,
	            tk_strerror(e));
	n = rec.nsteps < TK_RECOVERY_MAX_STEPS ? rec.nsteps : TK_RECOVERY_MAX_STEPS;
	bp_put_u(w, broker_err(e));
	bp_put_u(w, rec.id);
	bp_put_u(w, rec.wall_ms > 0 ? (uint64_t)rec.wall_ms : 0);
	bp_put_u(w, broker_err(rec.fault));
	put_text(w, rec.what);
	bp_w_init(&steps);
	for (size_t i = 0; i < n; i++) {
		struct bp_w one;

		bp_w_init(&one);
		bp_put_u(&one, rec.steps[i].step >= 0 ? (uint64_t)rec.steps[i].step : 0);
		bp_put_u(&one, broker_err(rec.steps[i].result));
		bp_put_u(&one,
		         rec.steps[i].duration_us > 0 ? (uint64_t)rec.steps[i].duration_us : 0);
		bp_put_sub(&steps, &one);
	}
	bp_put_sub(w, &steps);
	bp_put_u(w, rec.nsteps);
	bp_put_u(w, rec.cured_by >= 0 ? (uint64_t)rec.cured_by : 0);
	bp_put_u(w, broker_err(rec.outcome));
	bp_put_u(w, rec.duration_us > 0 ? (uint64_t)rec.duration_us : 0);
	bp_put_u(w, rec.probes);
	return w->ok ? CKR_OK : CKR_HOST_MEMORY;
}
