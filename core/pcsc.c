/* tokenkit: the PC/SC reader backend (pcsc-lite).
 *
 * Facts this file is built around (measured, see VPCD.md):
 * - a pcsc-lite context serialises its calls, and a stalled card blocks
 *   SCardTransmit forever (SCardCancel does not release it). So the monitor
 *   has its own context and every connection gets a context of its own: a
 *   blocked reader never blocks the monitor or another reader.
 * - after pcscd restarts every call on an old context fails with
 *   SCARD_E_NO_SERVICE while SCardIsValidContext still says yes: the only
 *   cure is a new context, so we drop ours whenever we see that code.
 * - a card that dies with an APDU outstanding answers "success, 0 bytes".
 * - we never call SCardDisconnect: see conn_disconnect.
 * - pcsc-lite has no fork handler: see "fork" below. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <PCSC/pcsclite.h>
#include <PCSC/reader.h>
#include <PCSC/winscard.h>

#include <tokenkit/buf.h>
#include <tokenkit/err.h>
#include <tokenkit/log.h>
#include <tokenkit/slot.h>

#include "clock.h"
#include "env.h"
#include "pinpad.h"
#include "reader.h"

#define PNP_READER "\\\\?PnP?\\Notification"
#define PCSC_DEFAULT_SOCKET "/run/pcscd/pcscd.comm"

typedef struct pcsc_be {
	pthread_mutex_t mtx; /* guards ctx/have_ctx against cancel */
	SCARDCONTEXT ctx;
	bool have_ctx;
	atomic_bool cancel_pending;
	/* What the last enumerate saw; wait_change waits for a difference. */
	char **names;
	DWORD *states;
	size_t count;
	DWORD pnp_state;
} pcsc_be_t;

typedef struct pcsc_conn {
	SCARDCONTEXT ctx;
	SCARDHANDLE h;
	DWORD proto;
	char *reader;
	tk_reader_caps_t caps;
	uint32_t verify_code, modify_code; /* PIN pad control codes (0: none) */
	bool in_txn;                       /* SCardBeginTransaction without its end */
} pcsc_conn_t;

const char *
tk_pcsc_socket_path(void)
{
	const char *s = tk_env("PCSCLITE_CSOCK_NAME");

	return (s != NULL && *s != '\0') ? s : PCSC_DEFAULT_SOCKET;
}

/* --- fork -----------------------------------------------------------------
 * pcsc-lite's client library keeps one process-wide mutex and no fork
 * handler. SCardEstablishContext holds that mutex across its round trips to
 * pcscd; every other call holds it for a moment while it looks its context
 * or handle up. A child forked while one of our threads held it would block
 * forever in its first SCardEstablishContext. So each of our calls passes a
 * gate: the prepare handler closes it (no call starts), waits until no
 * SCardEstablishContext (or SCardReleaseContext, which takes the mutex
 * after its round trip) is under way and every other call is past its
 * first moments (bounded), and the parent handler opens it again.
 * SCardConnect counts as such a call too: at its end it adds the handle to
 * its context's list without the library mutex, and every handle lookup
 * walks the lists of all contexts, the inherited ones included (a child
 * forked in the middle of the same step in SCardDisconnect crashed in CI;
 * we no longer call that, see conn_disconnect). Should one still be
 * under way at the bound (pcscd not answering), the child never calls
 * pcsc-lite at all: its readers look like a missing service instead of a
 * hang or a crash. Left open: pcsc-lite's own retry loop while another process holds
 * the card (SCardTransmit/SCardBeginTransaction poll every 100 ms) takes the
 * mutex for a moment on each try. The child never uses the contexts and
 * handles it inherited: the module forgets the parent's manager. */
#define FORK_WAIT_MS 1000
#define FORK_YOUNG_US 20000 /* a call this young may still hold the library mutex */

struct gate_call {
	int64_t start_us;
	bool holds; /* may hold the library mutex across a round trip to pcscd,
	             * or change the library's lists without it */
	struct gate_call *next;
};

static pthread_mutex_t gate_mtx = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t gate_cond;
static struct gate_call *gate_calls; /* under way (gate_mtx) */
static bool gate_closed;             /* a fork is being prepared */
static int64_t gate_holds_end_us;    /* when the last "holds" call ended */
static bool gate_risky_fork;         /* prepare gave up with a "holds" call under way */
static bool gate_poisoned;           /* this process is such a child: no pcsc-lite */

static void
gate_cond_init(void)
{
	tk_cond_init_monotonic(&gate_cond);
}

static void
gate_prepare(void)
{
	int64_t end = tk_now_us() + (int64_t)FORK_WAIT_MS * 1000;

	pthread_mutex_lock(&gate_mtx);
	gate_closed = true;
	for (;;) {
		int64_t now = tk_now_us(), wake = now + 5000;
		bool wait = false, holds = false;

		for (const struct gate_call *c = gate_calls; c != NULL; c = c->next) {
			/* a call that waited for a "holds" call to free the
			 * mutex takes it right after: young again */
			int64_t since =
			        c->start_us > gate_holds_end_us ? c->start_us : gate_holds_end_us;

			holds = holds || c->holds;
			wait = wait || c->holds || now - since < FORK_YOUNG_US;
		}
		gate_risky_fork = holds;
		if (!wait || now >= end)
			break;
		if (wake > end)
			wake = end;
		tk_cond_wait_until_us(&gate_cond, &gate_mtx, wake);
	}
	pthread_mutex_unlock(&gate_mtx);
}

static void
gate_parent(void)
{
	pthread_mutex_lock(&gate_mtx);
	gate_closed = false;
	pthread_cond_broadcast(&gate_cond);
	pthread_mutex_unlock(&gate_mtx);
}

static void
gate_child(void)
{
	/* The calls under way belong to threads that do not exist here. */
	pthread_mutex_init(&gate_mtx, NULL);
	gate_cond_init();
	gate_calls = NULL;
	gate_closed = false;
	if (gate_risky_fork)
		gate_poisoned = true;
}

/* At load time, so before the PKCS#11 module registers its own handlers
 * (at C_Initialize): prepare handlers run in reverse order, so the module
 * first takes its locks (waiting for a C_Finalize in progress, whose worker
 * joins need this gate open), and the gate closes last. */
__attribute__((constructor)) static void
gate_init(void)
{
	gate_cond_init();
	pthread_atfork(gate_prepare, gate_parent, gate_child);
}

/* Before a pcsc-lite call; false: do not call it (a child that may have
 * inherited the library's mutex held). */
static bool
gate_enter(struct gate_call *c, bool holds)
{
	bool ok;

	pthread_mutex_lock(&gate_mtx);
	while (gate_closed)
		pthread_cond_wait(&gate_cond, &gate_mtx);
	ok = !gate_poisoned;
	if (ok) {
		c->start_us = tk_now_us();
		c->holds = holds;
		c->next = gate_calls;
		gate_calls = c;
	}
	pthread_mutex_unlock(&gate_mtx);
	return ok;
}

static void
gate_leave(struct gate_call *c)
{
	pthread_mutex_lock(&gate_mtx);
	for (struct gate_call **pp = &gate_calls; *pp != NULL; pp = &(*pp)->next) {
		if (*pp == c) {
			*pp = c->next;
			break;
		}
	}
	if (c->holds)
		gate_holds_end_us = tk_now_us();
	if (gate_closed)
		pthread_cond_broadcast(&gate_cond);
	pthread_mutex_unlock(&gate_mtx);
}

static LONG
establish(SCARDCONTEXT *ctx)
{
	static atomic_bool warned;
	struct gate_call g;
	LONG rv;

	/* pcsc-lite 1.9 reads PCSCLITE_CSOCK_NAME with getenv(), even in a
	 * set-uid process: there it would connect wherever the less privileged
	 * caller points it (a daemon of theirs answering for a card). */
	if (tk_env_privileged() && tk_env_present("PCSCLITE_CSOCK_NAME")) {
		if (!atomic_exchange(&warned, true))
			tk_log_warn("pcsc: PCSCLITE_CSOCK_NAME is set in a set-uid or set-gid "
			            "process and pcsc-lite would follow it: no PC/SC");
		return SCARD_E_NO_SERVICE;
	}
	if (!gate_enter(&g, true))
		return SCARD_E_NO_SERVICE;
	rv = SCardEstablishContext(SCARD_SCOPE_SYSTEM, NULL, NULL, ctx);
	gate_leave(&g);
	return rv;
}

static void
release_context(SCARDCONTEXT ctx)
{
	struct gate_call g;

	if (!gate_enter(&g, true))
		return;                 /* leaked on purpose: see "fork" */
	(void)SCardReleaseContext(ctx); /* NO_SERVICE after a restart: fine */
	gate_leave(&g);
}

static int
scard_err(const char *what, LONG rv)
{
	int r = tk_err_from_scard(rv);

	tk_log_debug("pcsc: %s: %s (0x%08lX)", what, pcsc_stringify_error(rv), (unsigned long)rv);
	return r;
}

static int
be_open(void **out, const char *config)
{
	pcsc_be_t *b;

	*out = NULL;
	if (config != NULL && *config != '\0')
		return TK_ERR_INVALID_ARG; /* "pcsc" takes no options */
	b = calloc(1, sizeof(*b));
	if (b == NULL)
		return TK_ERR_NO_MEMORY;
	pthread_mutex_init(&b->mtx, NULL);
	atomic_init(&b->cancel_pending, false);
	*out = b;
	return TK_OK;
}

static void
forget_readers(pcsc_be_t *b)
{
	for (size_t i = 0; i < b->count; i++)
		free(b->names[i]);
	free(b->names);
	free(b->states);
	b->names = NULL;
	b->states = NULL;
	b->count = 0;
	b->pnp_state = 0;
}

/* Only the monitor thread drops the context, under the lock, so cancel
 * never uses a released one. */
static void
drop_context(pcsc_be_t *b)
{
	pthread_mutex_lock(&b->mtx);
	if (b->have_ctx) {
		release_context(b->ctx);
		b->have_ctx = false;
	}
	pthread_mutex_unlock(&b->mtx);
	forget_readers(b);
}

static void
be_close(void *be)
{
	pcsc_be_t *b = be;

	if (b == NULL)
		return;
	drop_context(b);
	pthread_mutex_destroy(&b->mtx);
	free(b);
}

static int
ensure_context(pcsc_be_t *b)
{
	SCARDCONTEXT ctx;
	LONG rv;

	if (b->have_ctx)
		return TK_OK;
	rv = establish(&ctx);
	if (rv != SCARD_S_SUCCESS)
		return scard_err("SCardEstablishContext", rv);
	pthread_mutex_lock(&b->mtx);
	b->ctx = ctx;
	b->have_ctx = true;
	pthread_mutex_unlock(&b->mtx);
	return TK_OK;
}

static LONG
get_status_change(SCARDCONTEXT ctx, DWORD timeout_ms, SCARD_READERSTATE *rs, DWORD n)
{
	struct gate_call g;
	LONG rv;

	if (!gate_enter(&g, false))
		return SCARD_E_NO_SERVICE;
	rv = SCardGetStatusChange(ctx, timeout_ms, rs, n);
	gate_leave(&g);
	return rv;
}

static int
list_names(pcsc_be_t *b, char ***names_out, size_t *count_out)
{
	DWORD len = 0;
	char *buf = NULL, **names = NULL;
	size_t n = 0;
	struct gate_call g;
	LONG rv = SCARD_E_NO_SERVICE;
	int r = TK_OK;

	*names_out = NULL;
	*count_out = 0;
	if (!gate_enter(&g, false))
		return TK_ERR_NO_SERVICE;
	/* Bounded: the list can grow between the two calls; try a few times. */
	for (int tries = 0; tries < 4; tries++) {
		rv = SCardListReaders(b->ctx, NULL, NULL, &len);
		if (rv != SCARD_S_SUCCESS)
			break;
		free(buf);
		buf = calloc(1, (size_t)len + 1);
		if (buf == NULL) {
			gate_leave(&g);
			return TK_ERR_NO_MEMORY;
		}
		rv = SCardListReaders(b->ctx, NULL, buf, &len);
		if (rv == (LONG)SCARD_E_INSUFFICIENT_BUFFER)
			continue;
		break;
	}
	gate_leave(&g);
	if (rv == (LONG)SCARD_E_NO_READERS_AVAILABLE)
		goto out;
	if (rv != SCARD_S_SUCCESS) {
		r = scard_err("SCardListReaders", rv);
		goto out;
	}
	for (const char *p = buf; p < buf + len && *p != '\0'; p += strlen(p) + 1)
		n++;
	names = calloc(n + 1, sizeof(*names));
	if (names == NULL) {
		r = TK_ERR_NO_MEMORY;
		goto out;
	}
	n = 0;
	for (const char *p = buf; p < buf + len && *p != '\0'; p += strlen(p) + 1) {
		names[n] = strdup(p);
		if (names[n] == NULL) {
			r = TK_ERR_NO_MEMORY;
			goto out;
		}
		n++;
	}
	*names_out = names;
	*count_out = n;
	names = NULL;
out:
	if (names != NULL) {
		for (size_t i = 0; i < n; i++)
			free(names[i]);
		free(names);
	}
	free(buf);
	return r;
}

static int
be_enumerate(void *be, tk_reader_desc_t **descs_out, size_t *count_out)
{
	pcsc_be_t *b = be;
	SCARD_READERSTATE *rs = NULL;
	tk_reader_desc_t *descs = NULL;
	char **names = NULL;
	size_t n = 0;
	LONG rv;
	int r;

	*descs_out = NULL;
	*count_out = 0;
	r = ensure_context(b);
	if (r != TK_OK)
		goto fail;
	r = list_names(b, &names, &n);
	if (r != TK_OK)
		goto fail;
	rs = calloc(n + 1, sizeof(*rs));
	descs = calloc(n + 1, sizeof(*descs));
	if (rs == NULL || descs == NULL) {
		r = TK_ERR_NO_MEMORY;
		goto fail;
	}
	for (size_t i = 0; i < n; i++) {
		rs[i].szReader = names[i];
		rs[i].dwCurrentState = SCARD_STATE_UNAWARE;
	}
	rs[n].szReader = PNP_READER;
	rs[n].dwCurrentState = 0;
	rv = get_status_change(b->ctx, 0, rs, (DWORD)(n + 1));
	if (rv != SCARD_S_SUCCESS && rv != (LONG)SCARD_E_TIMEOUT) {
		r = scard_err("SCardGetStatusChange", rv);
		goto fail;
	}
	for (size_t i = 0; i < n; i++) {
		DWORD st = rs[i].dwEventState;

		snprintf(descs[i].name, sizeof(descs[i].name), "%s", names[i]);
		descs[i].card_present = (st & SCARD_STATE_PRESENT) != 0;
		descs[i].card_mute = (st & SCARD_STATE_MUTE) != 0;
		descs[i].exclusive = (st & SCARD_STATE_EXCLUSIVE) != 0;
		descs[i].event_count = (uint32_t)(st >> 16);
		if (descs[i].card_present && rs[i].cbAtr <= TK_READER_ATR_MAX) {
			memcpy(descs[i].atr, rs[i].rgbAtr, rs[i].cbAtr);
			descs[i].atr_len = rs[i].cbAtr;
		}
	}
	forget_readers(b);
	b->names = names;
	b->count = n;
	names = NULL;
	b->states = calloc(n + 1, sizeof(*b->states));
	if (b->states == NULL) {
		b->count = 0;
		for (size_t i = 0; i < n; i++)
			free(b->names[i]);
		free(b->names);
		b->names = NULL;
		r = TK_ERR_NO_MEMORY;
		goto fail;
	}
	for (size_t i = 0; i < n; i++)
		b->states[i] = rs[i].dwEventState & ~(DWORD)SCARD_STATE_CHANGED;
	b->pnp_state = rs[n].dwEventState & ~(DWORD)SCARD_STATE_CHANGED;
	if ((b->pnp_state >> 16) != n)
		b->pnp_state = (DWORD)n << 16;
	free(rs);
	*descs_out = descs;
	*count_out = n;
	return TK_OK;
fail:
	if (names != NULL) {
		for (size_t i = 0; i < n; i++)
			free(names[i]);
		free(names);
	}
	free(rs);
	free(descs);
	if (r == TK_ERR_NO_SERVICE)
		drop_context(b);
	return r;
}

static int
be_wait_change(void *be, int timeout_ms)
{
	pcsc_be_t *b = be;
	SCARD_READERSTATE *rs;
	SCARDCONTEXT ctx;
	LONG rv;
	int r = TK_OK;

	if (atomic_exchange(&b->cancel_pending, false))
		return TK_ERR_CANCELLED;
	if (!b->have_ctx)
		return TK_ERR_NO_SERVICE;
	rs = calloc(b->count + 1, sizeof(*rs));
	if (rs == NULL)
		return TK_ERR_NO_MEMORY;
	for (size_t i = 0; i < b->count; i++) {
		rs[i].szReader = b->names[i];
		rs[i].dwCurrentState = b->states[i];
	}
	rs[b->count].szReader = PNP_READER;
	rs[b->count].dwCurrentState = b->pnp_state;
	ctx = b->ctx;
	rv = get_status_change(ctx, (DWORD)timeout_ms, rs, (DWORD)(b->count + 1));
	switch (rv) {
	case SCARD_S_SUCCESS:
		r = TK_OK;
		break;
	case SCARD_E_TIMEOUT:
		r = TK_ERR_TIMEOUT;
		break;
	case SCARD_E_CANCELLED:
		atomic_store(&b->cancel_pending, false);
		r = TK_ERR_CANCELLED;
		break;
	case SCARD_E_UNKNOWN_READER:
	case SCARD_E_READER_UNAVAILABLE:
		r = TK_OK; /* a reader went away: re-enumerate */
		break;
	default:
		r = scard_err("SCardGetStatusChange", rv);
		break;
	}
	free(rs);
	if (r == TK_ERR_NO_SERVICE)
		drop_context(b);
	return r;
}

static void
be_cancel(void *be)
{
	pcsc_be_t *b = be;
	struct gate_call g;

	atomic_store(&b->cancel_pending, true);
	pthread_mutex_lock(&b->mtx);
	if (b->have_ctx && gate_enter(&g, false)) {
		(void)SCardCancel(b->ctx);
		gate_leave(&g);
	}
	pthread_mutex_unlock(&b->mtx);
}

static int
read_atr(pcsc_conn_t *c, uint8_t *atr, size_t *atr_len, int *protocol)
{
	BYTE buf[MAX_ATR_SIZE];
	DWORD alen = sizeof(buf), state = 0, proto = 0;
	struct gate_call g;
	LONG rv;

	if (!gate_enter(&g, false))
		return TK_ERR_NO_SERVICE;
	rv = SCardStatus(c->h, NULL, NULL, &state, &proto, buf, &alen);
	gate_leave(&g);
	if (rv != SCARD_S_SUCCESS)
		return scard_err("SCardStatus", rv);
	if (alen > TK_READER_ATR_MAX)
		alen = TK_READER_ATR_MAX;
	if (atr != NULL && atr_len != NULL) {
		memcpy(atr, buf, alen);
		*atr_len = alen;
	}
	if (proto != 0)
		c->proto = proto;
	if (protocol != NULL)
		*protocol = c->proto == SCARD_PROTOCOL_T0 ? 0 : 1;
	return TK_OK;
}

/* Extended length unless the reader says it cannot; PIN pad from the
 * CCID feature list (PC/SC part 10). */
static void
probe_caps(pcsc_conn_t *c)
{
	uint8_t feat[256];
	DWORD maxin = 0, alen = sizeof(maxin), flen = 0;
	struct gate_call g;
	LONG rv;

	c->caps.extended_apdu = true;
	c->caps.max_cmd = 65544;
	c->caps.max_resp = 65538;
	if (!gate_enter(&g, false))
		return;
	rv = SCardGetAttrib(c->h, SCARD_ATTR_MAXINPUT, (LPBYTE)&maxin, &alen);
	gate_leave(&g);
	if (rv == SCARD_S_SUCCESS && alen == sizeof(maxin) && maxin > 0) {
		if (maxin < 261) {
			c->caps.extended_apdu = false;
			c->caps.max_cmd = 261;
			c->caps.max_resp = 258;
		} else if (maxin < c->caps.max_cmd) {
			c->caps.max_cmd = maxin;
		}
	}
	if (!gate_enter(&g, false))
		return;
	rv = SCardControl(c->h, CM_IOCTL_GET_FEATURE_REQUEST, NULL, 0, feat, sizeof(feat), &flen);
	gate_leave(&g);
	if (rv == SCARD_S_SUCCESS && flen <= sizeof(feat)) {
		tk_pcsc_features_t f;
		int r;

		c->caps.can_control = true;
		r = tk_pcsc_features_parse(feat, flen, &f);
		if (r != TK_OK) {
			tk_log_debug("pcsc: %s: feature list: %s", c->reader, tk_strerror(r));
			return;
		}
		/* the DIRECT forms: one control call that waits for the user
		 * (the START/FINISH pairs are for readers with a display) */
		c->verify_code = f.code[TK_PCSC_FEATURE_VERIFY_PIN_DIRECT];
		c->modify_code = f.code[TK_PCSC_FEATURE_MODIFY_PIN_DIRECT];
		c->caps.pin_pad_verify = c->verify_code != 0;
		c->caps.pin_pad_modify = c->modify_code != 0;
	}
}

static int
conn_connect(void *be, const char *reader, void **out, uint8_t *atr, size_t *atr_len, int *protocol)
{
	pcsc_conn_t *c;
	struct gate_call g;
	LONG rv;
	int r;

	(void)be;
	*out = NULL;
	if (atr_len != NULL)
		*atr_len = 0;
	c = calloc(1, sizeof(*c));
	if (c == NULL)
		return TK_ERR_NO_MEMORY;
	c->reader = strdup(reader);
	if (c->reader == NULL) {
		free(c);
		return TK_ERR_NO_MEMORY;
	}
	rv = establish(&c->ctx);
	if (rv != SCARD_S_SUCCESS) {
		r = scard_err("SCardEstablishContext", rv);
		free(c->reader);
		free(c);
		return r;
	}
	if (!gate_enter(&g, true)) {
		r = TK_ERR_NO_SERVICE;
		goto fail;
	}
	rv = SCardConnect(c->ctx, reader, SCARD_SHARE_SHARED, SCARD_PROTOCOL_T0 | SCARD_PROTOCOL_T1,
	                  &c->h, &c->proto);
	gate_leave(&g);
	if (rv != SCARD_S_SUCCESS) {
		r = scard_err("SCardConnect", rv);
		if (r == TK_ERR_CARD_REMOVED)
			r = TK_ERR_NO_CARD;
		goto fail;
	}
	r = read_atr(c, atr, atr_len, protocol);
	if (r != TK_OK)
		goto fail; /* releasing the context closes the handle */
	probe_caps(c);
	*out = c;
	return TK_OK;
fail:
	release_context(c->ctx);
	free(c->reader);
	free(c);
	return r;
}

static int
conn_transmit(void *conn, const uint8_t *cmd, size_t cmd_len, uint8_t *resp, size_t resp_cap,
              size_t *resp_len)
{
	pcsc_conn_t *c = conn;
	const SCARD_IO_REQUEST *pci;
	struct gate_call g;
	DWORD rlen;
	LONG rv;

	*resp_len = 0;
	if (resp_cap > MAX_BUFFER_SIZE_EXTENDED)
		resp_cap = MAX_BUFFER_SIZE_EXTENDED;
	rlen = (DWORD)resp_cap;
	pci = c->proto == SCARD_PROTOCOL_T0 ? SCARD_PCI_T0 : SCARD_PCI_T1;
	if (!gate_enter(&g, false))
		return TK_ERR_NO_SERVICE;
	rv = SCardTransmit(c->h, pci, cmd, (DWORD)cmd_len, NULL, resp, &rlen);
	gate_leave(&g);
	if (rv == (LONG)SCARD_E_PROTO_MISMATCH) {
		/* pcsc-lite says so only while the card's protocol is undefined,
		 * and this connection had one: between another client's reset of
		 * the card (SCardReconnect, SCardDisconnect or SCardEndTransaction
		 * with SCARD_RESET_CARD) and the next negotiation (winscard.c),
		 * where the reset may not have been flagged to us yet. The card
		 * was reset under us: the same as SCARD_W_RESET_CARD (the worker
		 * reconnects, negotiating again; the caller selects again and
		 * knows its login is gone), not a fault for the recovery ladder.
		 * Seen: test_p11_login, 6 processes and resets by another
		 * program, one C_Sign failed with a device error. */
		tk_log_debug("pcsc: %s: SCardTransmit: protocol undefined: the card was reset",
		             c->reader);
		return TK_ERR_CARD_RESET;
	}
	if (rv != SCARD_S_SUCCESS)
		return scard_err("SCardTransmit", rv);
	if (rlen < 2 || rlen > resp_cap) {
		tk_log_debug("pcsc: %s: response of %lu bytes", c->reader, (unsigned long)rlen);
		return TK_ERR_COMM;
	}
	*resp_len = rlen;
	return TK_OK;
}

static int
conn_control(void *conn, uint32_t code, const uint8_t *in, size_t in_len, uint8_t *out,
             size_t out_cap, size_t *out_len)
{
	pcsc_conn_t *c = conn;
	DWORD n = 0;
	struct gate_call g;
	LONG rv;

	*out_len = 0;
	if (!gate_enter(&g, false))
		return TK_ERR_NO_SERVICE;
	rv = SCardControl(c->h, code, in, (DWORD)in_len, out, (DWORD)out_cap, &n);
	gate_leave(&g);
	if (rv != SCARD_S_SUCCESS)
		return scard_err("SCardControl", rv);
	*out_len = n;
	return TK_OK;
}

/* PIN entry through FEATURE_VERIFY_PIN_DIRECT / MODIFY_PIN_DIRECT: the
 * driver (libccid) turns it into PC_to_RDR_Secure and answers with the
 * card's response, or with 64 00 when nobody typed and 64 01 when the
 * user cancelled (its translation of the reader's PIN timeout and cancel
 * errors). */
static int
conn_pinpad(void *conn, const tk_card_pinpad_t *req, uint8_t *resp, size_t cap, size_t *rlen)
{
	pcsc_conn_t *c = conn;
	uint8_t buf[64 + 261];
	uint32_t code = req->op == TK_PINPAD_MODIFY ? c->modify_code : c->verify_code;
	size_t n = 0;
	int r;

	*rlen = 0;
	if (code == 0)
		return TK_ERR_NOT_SUPPORTED;
	if ((r = tk_pcsc_pin_encode(req, buf, sizeof(buf), &n)) != TK_OK)
		return r;
	r = conn_control(conn, code, buf, n, resp, cap, rlen);
	if (r == TK_OK && *rlen < 2)
		r = TK_ERR_COMM;
	if (r == TK_OK && *rlen == 2 && resp[0] == 0x64 && (resp[1] == 0x00 || resp[1] == 0x01)) {
		r = resp[1] == 0x00 ? TK_ERR_TIMEOUT : TK_ERR_CANCELLED;
		*rlen = 0;
	}
	return r;
}

static int
conn_reset(void *conn, int how, uint8_t *atr, size_t *atr_len, int *protocol)
{
	pcsc_conn_t *c = conn;
	DWORD init = how == TK_READER_COLD_RESET   ? SCARD_UNPOWER_CARD
	             : how == TK_READER_WARM_RESET ? SCARD_RESET_CARD
	                                           : SCARD_LEAVE_CARD;
	struct gate_call g;
	LONG rv;

	if (!gate_enter(&g, false))
		return TK_ERR_NO_SERVICE;
	rv = SCardReconnect(c->h, SCARD_SHARE_SHARED, SCARD_PROTOCOL_T0 | SCARD_PROTOCOL_T1, init,
	                    &c->proto);
	gate_leave(&g);
	if (rv != SCARD_S_SUCCESS)
		return scard_err("SCardReconnect", rv);
	return read_atr(c, atr, atr_len, protocol);
}

static int
conn_begin(void *conn)
{
	struct gate_call g;
	LONG rv;

	if (!gate_enter(&g, false))
		return TK_ERR_NO_SERVICE;
	rv = SCardBeginTransaction(((pcsc_conn_t *)conn)->h);
	gate_leave(&g);
	if (rv == SCARD_S_SUCCESS)
		((pcsc_conn_t *)conn)->in_txn = true;
	return rv == SCARD_S_SUCCESS ? TK_OK : scard_err("SCardBeginTransaction", rv);
}

static int
conn_end(void *conn)
{
	struct gate_call g;
	LONG rv;

	if (!gate_enter(&g, false))
		return TK_ERR_NO_SERVICE;
	rv = SCardEndTransaction(((pcsc_conn_t *)conn)->h, SCARD_LEAVE_CARD);
	gate_leave(&g);
	((pcsc_conn_t *)conn)->in_txn = false; /* failed: the handle is gone or the card reset */
	return rv == SCARD_S_SUCCESS ? TK_OK : scard_err("SCardEndTransaction", rv);
}

static int
conn_status(void *conn)
{
	return read_atr(conn, NULL, NULL, NULL);
}

static void
conn_caps(void *conn, tk_reader_caps_t *caps)
{
	*caps = ((pcsc_conn_t *)conn)->caps;
}

/* No SCardDisconnect: pcsc-lite 1.9.9 ends it by walking every context's
 * handle list without its library mutex (to drop the handle from its own),
 * so a disconnect in one worker while another worker releases its context
 * (which frees that context's list under the mutex) read freed memory: a
 * SIGSEGV inside SCardDisconnect, seen at C_Finalize when every worker drops
 * its card at once. Each connection has a context of its own, and releasing
 * it does everything a disconnect did: pcscd closes the handle as
 * SCARD_LEAVE_CARD, and the library frees the handle's entry under its
 * mutex. pcscd resets the card instead when the handle still holds a
 * transaction, so that is ended first. Left open, as it is inside
 * pcsc-lite: SCardConnect's end links the new handle into its list without
 * the mutex, a window of a few stores in which another thread's handle
 * lookup could follow the new entry's link before it is set. */
static void
conn_disconnect(void *conn)
{
	pcsc_conn_t *c = conn;

	if (c == NULL)
		return;
	if (c->in_txn)
		(void)conn_end(c);
	release_context(c->ctx);
	free(c->reader);
	free(c);
}

const tk_reader_ops_t tk_reader_pcsc_ops = {
        .name = "pcsc",
        .open = be_open,
        .close = be_close,
        .enumerate = be_enumerate,
        .wait_change = be_wait_change,
        .cancel = be_cancel,
        .connect = conn_connect,
        .transmit = conn_transmit,
        .control = conn_control,
        .reset = conn_reset,
        .begin = conn_begin,
        .end = conn_end,
        .status = conn_status,
        .caps = conn_caps,
        .disconnect = conn_disconnect,
        .pinpad = conn_pinpad,
};
