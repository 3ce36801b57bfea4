/* tokenkit: card sessions.
 *
 * The front every driver talks to. It logs each APDU (redacted where the
 * command carries a secret), keeps the generation counter drivers use to
 * notice resets, counts transaction nesting, and runs the APDU exchange
 * logic over its own transmit. Moving bytes and enforcing deadlines is the
 * backend's job (the slot manager's worker, or a direct function). */
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include <tokenkit/apdu.h>
#include <tokenkit/err.h>
#include <tokenkit/log.h>

#include "card_priv.h"

#define CARD_MAX_ATR 33
#define CARD_EXT_MAX_CMD 65544
#define CARD_EXT_MAX_RESP 65538
#define CARD_SHORT_MAX_CMD 261
#define CARD_SHORT_MAX_RESP 258

struct tk_card {
	atomic_uint refs;
	char *reader;
	uint8_t atr[CARD_MAX_ATR];
	size_t atr_len;
	tk_card_caps_t caps;
	tk_card_backend_t be;
	void *ctx;
	int default_timeout_ms;
	atomic_bool removed;
	/* whether the response to the last command sent carries a secret: a
	 * GET RESPONSE that follows it carries more of the same */
	atomic_bool resp_secret;
	atomic_bool short_only; /* tk_card_use_short_apdus */
	atomic_uint_fast64_t gen;
	pthread_mutex_t mtx; /* guards tx_depth */
	unsigned tx_depth;
};

int
tk_card_new_backend(const char *reader_name, const uint8_t *atr, size_t atr_len,
                    const tk_card_caps_t *caps, const tk_card_backend_t *be, void *ctx,
                    int default_timeout_ms, tk_card_t **out)
{
	tk_card_t *c = NULL;

	if (out != NULL)
		*out = NULL;
	if (out == NULL || reader_name == NULL || be == NULL || be->transmit == NULL ||
	    atr_len > CARD_MAX_ATR || (atr == NULL && atr_len > 0))
		return TK_ERR_INVALID_ARG;
	c = calloc(1, sizeof(*c));
	if (c == NULL)
		return TK_ERR_NO_MEMORY;
	c->reader = strdup(reader_name);
	if (c->reader == NULL) {
		free(c);
		return TK_ERR_NO_MEMORY;
	}
	if (atr_len > 0)
		memcpy(c->atr, atr, atr_len);
	c->atr_len = atr_len;
	if (caps != NULL) {
		c->caps = *caps;
	} else {
		c->caps.extended_apdu = false;
		c->caps.max_cmd = CARD_SHORT_MAX_CMD;
		c->caps.max_resp = CARD_SHORT_MAX_RESP;
	}
	c->be = *be;
	c->ctx = ctx;
	c->default_timeout_ms =
	        default_timeout_ms > 0 ? default_timeout_ms : TK_CARD_DEFAULT_TIMEOUT_MS;
	atomic_init(&c->refs, 1);
	atomic_init(&c->removed, false);
	atomic_init(&c->short_only, false);
	atomic_init(&c->gen, 0);
	pthread_mutex_init(&c->mtx, NULL);
	*out = c;
	return TK_OK;
}

int
tk_card_new_io(const char *reader, const uint8_t *atr, size_t atr_len, const tk_card_caps_t *caps,
               const tk_card_io_t *io, void *ctx, tk_card_t **out)
{
	tk_card_backend_t be = {0};

	if (out != NULL)
		*out = NULL;
	if (io == NULL)
		return TK_ERR_INVALID_ARG;
	be.transmit = io->transmit;
	be.begin = io->begin;
	be.end = io->end;
	be.reset = io->reset;
	be.present = io->present;
	be.release = io->release;
	be.pinpad = io->pinpad;
	return tk_card_new_backend(reader, atr, atr_len, caps, &be, ctx, 0, out);
}

/* Direct mode: the backend context is the card itself, which carries the
 * function and its context. */
typedef struct direct_ctx {
	tk_transmit_fn fn;
	void *ctx;
} direct_ctx_t;

static int
direct_transmit(void *ctx, const uint8_t *cmd, size_t cmd_len, uint8_t *resp, size_t resp_cap,
                size_t *resp_len, int timeout_ms)
{
	direct_ctx_t *d = ctx;

	(void)timeout_ms;
	return d->fn(d->ctx, cmd, cmd_len, resp, resp_cap, resp_len);
}

static void
direct_release(void *ctx)
{
	free(ctx);
}

int
tk_card_new_direct(const char *reader_name, const uint8_t *atr, size_t atr_len, tk_transmit_fn fn,
                   void *ctx, tk_card_t **out)
{
	static const tk_card_backend_t be = {
	        .transmit = direct_transmit,
	        .release = direct_release,
	};
	const tk_card_caps_t caps = {
	        .extended_apdu = true,
	        .max_cmd = CARD_EXT_MAX_CMD,
	        .max_resp = CARD_EXT_MAX_RESP,
	};
	direct_ctx_t *d = NULL;
	int r;

	if (out != NULL)
		*out = NULL;
	if (fn == NULL)
		return TK_ERR_INVALID_ARG;
	d = calloc(1, sizeof(*d));
	if (d == NULL)
		return TK_ERR_NO_MEMORY;
	d->fn = fn;
	d->ctx = ctx;
	r = tk_card_new_backend(reader_name, atr, atr_len, &caps, &be, d, 0, out);
	if (r != TK_OK)
		free(d);
	return r;
}

tk_card_t *
tk_card_ref(tk_card_t *c)
{
	if (c != NULL)
		atomic_fetch_add(&c->refs, 1);
	return c;
}

void
tk_card_unref(tk_card_t **cp)
{
	tk_card_t *c;

	if (cp == NULL || *cp == NULL)
		return;
	c = *cp;
	*cp = NULL;
	if (atomic_fetch_sub(&c->refs, 1) != 1)
		return;
	if (c->be.release != NULL)
		c->be.release(c->ctx);
	pthread_mutex_destroy(&c->mtx);
	free(c->reader);
	free(c);
}

void
tk_card_set_removed(tk_card_t *c)
{
	if (c != NULL)
		atomic_store(&c->removed, true);
}

void
tk_card_bump_generation(tk_card_t *c)
{
	if (c != NULL)
		atomic_fetch_add(&c->gen, 1);
}

static int
check_usable(const tk_card_t *c)
{
	if (c == NULL)
		return TK_ERR_INVALID_ARG;
	if (atomic_load(&((tk_card_t *)(uintptr_t)c)->removed))
		return TK_ERR_CARD_REMOVED;
	return TK_OK;
}

/* Turn what a backend said into what the caller sees, once. */
static int
after_call(tk_card_t *c, int r)
{
	if (r == TK_ERR_CARD_RESET)
		atomic_fetch_add(&c->gen, 1);
	else if (r == TK_ERR_CARD_REMOVED)
		atomic_store(&c->removed, true);
	return r;
}

int
tk_card_transmit(tk_card_t *c, const uint8_t *cmd, size_t cmd_len, uint8_t *resp, size_t resp_cap,
                 size_t *resp_len, int timeout_ms)
{
	size_t n = 0;
	bool secret;
	int r;

	if (resp_len != NULL)
		*resp_len = 0;
	r = check_usable(c);
	if (r != TK_OK)
		return r;
	if (cmd == NULL || cmd_len < 4 || resp == NULL || resp_len == NULL)
		return TK_ERR_INVALID_ARG;
	if (cmd_len > c->caps.max_cmd)
		return TK_ERR_TOO_LONG;
	if (timeout_ms <= 0)
		timeout_ms = c->default_timeout_ms;
	tk_log_apdu(TK_LOG_TRACE, "card >>", cmd, cmd_len, true);
	secret = tk_apdu_response_is_sensitive(cmd, cmd_len, atomic_load(&c->resp_secret));
	atomic_store(&c->resp_secret, secret);
	r = c->be.transmit(c->ctx, cmd, cmd_len, resp, resp_cap, &n, timeout_ms);
	if (r == TK_OK && n < 2) {
		/* A card that died mid-command answers "success, 0 bytes". */
		r = TK_ERR_COMM;
	}
	if (r == TK_OK && n > resp_cap)
		r = TK_ERR_INTERNAL;
	if (r != TK_OK) {
		tk_log_debug("%s: %s: transmit: %s", __func__, c->reader, tk_strerror(r));
		return after_call(c, r);
	}
	tk_log_apdu_response(TK_LOG_TRACE, "card <<", resp, n, secret);
	*resp_len = n;
	return TK_OK;
}

#define PINPAD_DEFAULT_S 30

int
tk_card_pinpad(tk_card_t *c, const tk_card_pinpad_t *req, uint8_t *resp, size_t resp_cap,
               size_t *resp_len)
{
	size_t n = 0;
	int r, wait_s;

	if (resp_len != NULL)
		*resp_len = 0;
	r = check_usable(c);
	if (r != TK_OK)
		return r;
	if (req == NULL || req->apdu == NULL || req->apdu_len < 5 || req->apdu_len > 261 ||
	    (req->op != TK_PINPAD_VERIFY && req->op != TK_PINPAD_MODIFY) || resp == NULL ||
	    resp_len == NULL)
		return TK_ERR_INVALID_ARG;
	if (c->be.pinpad == NULL || (req->op == TK_PINPAD_VERIFY && !c->caps.pin_pad_verify) ||
	    (req->op == TK_PINPAD_MODIFY && !c->caps.pin_pad_modify))
		return TK_ERR_NOT_SUPPORTED;
	/* the template holds padding only; logged redacted all the same */
	tk_log_apdu(TK_LOG_TRACE, "card >> (PIN pad)", req->apdu, req->apdu_len, true);
	wait_s = req->timeout_s > 0 ? req->timeout_s : PINPAD_DEFAULT_S;
	/* the user's time, and a confirmation for a change, on top of the
	 * exchange itself */
	r = c->be.pinpad(c->ctx, req, resp, resp_cap, &n,
	                 c->default_timeout_ms +
	                         wait_s * 1000 * (req->op == TK_PINPAD_MODIFY ? 3 : 1));
	if (r == TK_OK && n < 2)
		r = TK_ERR_COMM;
	if (r == TK_OK && n > resp_cap)
		r = TK_ERR_INTERNAL;
	if (r != TK_OK) {
		tk_log_debug("%s: %s: PIN pad: %s", __func__, c->reader, tk_strerror(r));
		return after_call(c, r);
	}
	tk_log_apdu_response(TK_LOG_TRACE, "card <<", resp, n, false);
	*resp_len = n;
	return TK_OK;
}

static int
card_xmit(void *ctx, const uint8_t *cmd, size_t cmd_len, uint8_t *resp, size_t resp_cap,
          size_t *resp_len)
{
	return tk_card_transmit(ctx, cmd, cmd_len, resp, resp_cap, resp_len, 0);
}

static int
card_apdu(tk_card_t *c, bool allow_extended, const tk_apdu_t *apdu, uint8_t *resp, size_t resp_cap,
          size_t *resp_len, uint16_t *sw)
{
	tk_apdu_opts_t opts;
	int r;

	if (resp_len != NULL)
		*resp_len = 0;
	if (sw != NULL)
		*sw = 0;
	r = check_usable(c);
	if (r != TK_OK)
		return r;
	if (apdu == NULL || resp_len == NULL || sw == NULL || (resp == NULL && resp_cap > 0))
		return TK_ERR_INVALID_ARG;
	memset(&opts, 0, sizeof(opts));
	opts.extended = allow_extended && c->caps.extended_apdu && !atomic_load(&c->short_only);
	if (opts.extended && c->caps.max_cmd > 9) {
		size_t chunk = c->caps.max_cmd - 9; /* header, extended Lc and Le */
		opts.max_chunk = chunk > 65535 ? 65535 : chunk;
	}
	return tk_apdu_exchange(card_xmit, c, &opts, apdu, resp, resp_cap, resp_len, sw);
}

int
tk_card_apdu(tk_card_t *c, const tk_apdu_t *apdu, uint8_t *resp, size_t resp_cap, size_t *resp_len,
             uint16_t *sw)
{
	return card_apdu(c, true, apdu, resp, resp_cap, resp_len, sw);
}

int
tk_card_apdu_short(tk_card_t *c, const tk_apdu_t *apdu, uint8_t *resp, size_t resp_cap,
                   size_t *resp_len, uint16_t *sw)
{
	return card_apdu(c, false, apdu, resp, resp_cap, resp_len, sw);
}

void
tk_card_use_short_apdus(tk_card_t *c)
{
	if (c != NULL)
		atomic_store(&c->short_only, true);
}

int
tk_card_begin(tk_card_t *c)
{
	int r;

	r = check_usable(c);
	if (r != TK_OK)
		return r;
	pthread_mutex_lock(&c->mtx);
	if (c->tx_depth == 0 && c->be.begin != NULL) {
		r = after_call(c, c->be.begin(c->ctx, c->default_timeout_ms));
		if (r != TK_OK) {
			tk_log_debug("%s: %s: %s", __func__, c->reader, tk_strerror(r));
			goto out;
		}
	}
	c->tx_depth++;
out:
	pthread_mutex_unlock(&c->mtx);
	return r;
}

int
tk_card_end(tk_card_t *c)
{
	int r = TK_OK;

	if (c == NULL)
		return TK_ERR_INVALID_ARG;
	pthread_mutex_lock(&c->mtx);
	if (c->tx_depth == 0) {
		r = TK_ERR_STATE;
		goto out;
	}
	c->tx_depth--;
	/* The transaction is ours to end even when the card is gone: the
	 * backend releases what it still holds. */
	if (c->tx_depth == 0 && c->be.end != NULL)
		r = after_call(c, c->be.end(c->ctx, c->default_timeout_ms));
out:
	pthread_mutex_unlock(&c->mtx);
	return r;
}

int
tk_card_reset(tk_card_t *c, bool cold)
{
	int r;

	r = check_usable(c);
	if (r != TK_OK)
		return r;
	if (c->be.reset == NULL)
		return TK_ERR_NOT_SUPPORTED;
	r = c->be.reset(c->ctx, cold, c->default_timeout_ms);
	if (r == TK_OK || r == TK_ERR_CARD_RESET) {
		atomic_fetch_add(&c->gen, 1);
		r = TK_OK;
	}
	return after_call(c, r);
}

const uint8_t *
tk_card_atr(const tk_card_t *c, size_t *len)
{
	if (len != NULL)
		*len = 0;
	if (c == NULL)
		return NULL;
	if (len != NULL)
		*len = c->atr_len;
	return c->atr;
}

const char *
tk_card_reader_name(const tk_card_t *c)
{
	return c != NULL ? c->reader : NULL;
}

uint64_t
tk_card_generation(const tk_card_t *c)
{
	tk_card_t *mc = (tk_card_t *)(uintptr_t)c;
	uint64_t g;

	if (c == NULL)
		return 0;
	g = atomic_load(&mc->gen);
	if (c->be.generation != NULL)
		g += c->be.generation(c->ctx);
	return g;
}

bool
tk_card_present(const tk_card_t *c)
{
	tk_card_t *mc = (tk_card_t *)(uintptr_t)c;

	if (c == NULL || atomic_load(&mc->removed))
		return false;
	if (c->be.present != NULL && !c->be.present(c->ctx)) {
		/* A backend that re-binds (slot manager) may take a card back
		 * after a service outage: no latch there; a card that is really
		 * gone never returns under the same card_seq anyway. */
		if (c->be.card_seq == NULL)
			atomic_store(&mc->removed, true);
		return false;
	}
	return true;
}

uint64_t
tk_card_seq(const tk_card_t *c)
{
	if (c == NULL || c->be.card_seq == NULL)
		return 0;
	return c->be.card_seq(c->ctx);
}

uint64_t
tk_card_rebinds(const tk_card_t *c)
{
	if (c == NULL || c->be.rebinds == NULL)
		return 0;
	return c->be.rebinds(c->ctx);
}

void
tk_card_caps(const tk_card_t *c, tk_card_caps_t *caps)
{
	if (caps == NULL)
		return;
	memset(caps, 0, sizeof(*caps));
	if (c == NULL)
		return;
	*caps = c->caps;
	if (atomic_load(&((tk_card_t *)(uintptr_t)c)->short_only))
		caps->extended_apdu = false;
}
