/* tokenkit-pkcs11: slots (readers), tokens (cards), slot events.
 *
 * CK_SLOT_ID is the slot manager's stable slot id. The module follows the
 * manager's events; when a card becomes valid, a thread of its own opens the
 * token (tk_token_open, which uses the on-disk object cache) so that neither
 * C_Initialize nor the event thread ever waits for card I/O. C_Initialize
 * waits (bounded) for the first reader enumeration, so every slot answers
 * from the first call; C_GetSlotList and the calls on one slot wait
 * (bounded) for token opens in flight from cards that make progress, never
 * for a card that does not answer (slot_stalled_locked).
 *
 * A card that leaves its slot leaves its token behind as the slot's lost
 * token (sessions, handles, session objects) for g_p11.grace_ms; when a
 * card is opened there and has the lost token's identity, the lost token
 * takes the new tk token and objects and goes on (resurrect_locked);
 * another card ends it (README: "Removal and return"). */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <tokenkit/log.h>
#include <tokenkit/mem.h>

#include "p11.h"
#include "secmem.h"

/* Wait on the module condition until the absolute deadline; false once it passed. */
static bool
wait_deadline_locked(int64_t end)
{
	int64_t now = tk_now_ms();

	if (end <= now)
		return false;
	/* at most a second at a time: waiters re-check what they wait for */
	tk_cond_wait_until_us(&g_p11.cond, &g_p11.lock,
	                      (end - now > 1000 ? now + 1000 : end) * 1000);
	return true;
}

/* --- tokens -------------------------------------------------------------- */

void
tk_p11_token_free(struct p11_token *t)
{
	if (t == NULL)
		return;
	for (size_t i = 0; i < t->nobjs; i++)
		tk_p11_object_clear(&t->objs[i]);
	free(t->objs);
	while (t->retired != NULL) {
		struct p11_objset *next = t->retired->next;

		for (size_t i = 0; i < t->retired->nobjs; i++)
			tk_p11_object_clear(&t->retired->objs[i]);
		free(t->retired->objs);
		free(t->retired);
		t->retired = next;
	}
	for (size_t i = 0; i < t->nsobjs; i++) {
		tk_p11_object_clear(t->sobjs[i]);
		free(t->sobjs[i]);
	}
	free(t->sobjs);
	tk_wipe(t->so_pin, P11_PIN_MAX);
	tk_secmem_free(&t->user_pin);
	tk_token_free(&t->tk);
	for (size_t i = 0; i < t->nold_tks; i++)
		tk_token_free(&t->old_tks[i]);
	free(t->old_tks);
	free(t);
}

bool
tk_p11_token_unref_locked(struct p11_token *t)
{
	if (t == NULL)
		return false;
	return --t->refs == 0;
}

/* A session of t has an operation set up: it may point into an earlier
 * object table (the key it was set up with). */
static bool
token_ops_active_locked(const struct p11_token *t)
{
	for (size_t i = 0; i < g_p11.nsessions; i++) {
		const struct p11_session *s = g_p11.sessions[i];

		if (s->tok == t &&
		    (s->sign.kind != P11_OP_NONE || s->verify.kind != P11_OP_NONE ||
		     s->decrypt.kind != P11_OP_NONE || s->encrypt.kind != P11_OP_NONE))
			return true;
	}
	return false;
}

/* Moves t's earlier tk tokens and object tables into *shell (a new one per
 * token); false when they must stay for now. */
static bool
gc_token_locked(struct p11_token *t, struct p11_token **shell)
{
	*shell = NULL;
	if (t == NULL || (t->nold_tks == 0 && t->retired == NULL))
		return true;
	if (token_ops_active_locked(t) || (*shell = calloc(1, sizeof(**shell))) == NULL)
		return false;
	(*shell)->old_tks = t->old_tks;
	(*shell)->nold_tks = t->nold_tks;
	(*shell)->retired = t->retired;
	t->old_tks = NULL;
	t->nold_tks = 0;
	t->retired = NULL;
	return true;
}

/* Calls hold a token's tk token and object pointers only while they run
 * (g_p11.calls), token opens and their background checks while they run
 * (g_p11.openers), operations while they are set up: with none of these,
 * what a token kept from before its card came back is unreachable. One
 * token's leftovers per call; the next end of a call takes the next. */
struct p11_token *
tk_p11_gc_take_locked(void)
{
	struct p11_token *shell = NULL;
	bool done = true;

	if (!g_p11.gc_wanted || g_p11.calls != 0 || g_p11.openers != 0)
		return NULL;
	for (size_t i = 0; i < g_p11.nslots && shell == NULL; i++) {
		done = gc_token_locked(g_p11.slots[i].token, &shell) && done;
		if (shell == NULL)
			done = gc_token_locked(g_p11.slots[i].lost, &shell) && done;
	}
	for (size_t i = 0; i < g_p11.nsessions && shell == NULL; i++)
		done = gc_token_locked(g_p11.sessions[i]->tok, &shell) && done;
	/* more to do (another token, or one with an operation set up): at the
	 * next end of a call */
	g_p11.gc_wanted = shell != NULL || !done;
	return shell;
}

void
tk_p11_token_put(struct p11_token *t)
{
	struct p11_token *junk;
	bool last;

	pthread_mutex_lock(&g_p11.lock);
	last = tk_p11_token_unref_locked(t);
	g_p11.calls--;
	junk = tk_p11_gc_take_locked();
	pthread_cond_broadcast(&g_p11.cond);
	pthread_mutex_unlock(&g_p11.lock);
	if (last)
		tk_p11_token_free(t);
	tk_p11_token_free(junk);
}

/* The token's current tk token (it changes when the card comes back). */
tk_token_t *
tk_p11_tk(struct p11_token *t)
{
	tk_token_t *tk;

	pthread_mutex_lock(&g_p11.lock);
	tk = t->tk;
	pthread_mutex_unlock(&g_p11.lock);
	return tk;
}

void
tk_p11_login_set_locked(struct p11_token *t, int login)
{
	t->login = login;
	t->login_serial++;
	if (login != (int)CKU_SO) {
		tk_secmem_free(&t->so_pin);
		t->so_pin_len = 0;
	}
	if (login != (int)CKU_USER) {
		tk_secmem_free(&t->user_pin);
		t->user_pin_len = 0;
	}
}

/* C_WaitForSlotEvent reports the slot: its token changed in a way the
 * application did not make (here: its login ended). */
void
tk_p11_slot_event_locked(CK_SLOT_ID id)
{
	struct p11_slot *sl = tk_p11_slot_find_locked(id);

	if (sl == NULL)
		return;
	sl->event = true;
	pthread_cond_broadcast(&g_p11.cond);
}

/* The card no longer has the user login the token had at login_serial
 * serial (another program logged out, reset the card or selected another
 * application; a wrong PIN): every session of the token is public from now
 * on and the slot has an event, before any call answers
 * CKR_USER_NOT_LOGGED_IN for it. False when nothing changed; true when a
 * newer login than serial exists (a C_Login after the operation began:
 * worth one more try). */
static bool
login_lost(struct p11_token *t, uint64_t serial, const char *why)
{
	bool newer;

	pthread_mutex_lock(&g_p11.lock);
	newer = t->login == (int)CKU_USER && t->login_serial != serial;
	if (!newer && t->login == (int)CKU_USER && !t->detached && !t->removed) {
		tk_log_info("pkcs11: slot %lu: the card forgot the login (%s); sessions are public "
		            "now",
		            (unsigned long)t->slot, why);
		tk_p11_login_set_locked(t, -1);
		tk_p11_slot_event_locked(t->slot);
	}
	pthread_mutex_unlock(&g_p11.lock);
	return newer;
}

/* The user login is the card's: a reset (ours in recovery, or another
 * program's), a power cycle or the card's return ends it, and the core
 * token notices (tk_token_info().logged_in). Follow it, so that C_Login
 * works again and sessions show the public state (with a slot event).
 * With a kept PIN (opt-in) the login stays: the next operation verifies
 * the PIN again. CKU_SO is the module's own (the PUK in memory) and is
 * left alone. */
void
tk_p11_login_sync(struct p11_token *t)
{
	tk_token_info_t ti;
	tk_token_t *tk;
	uint64_t serial;

	pthread_mutex_lock(&g_p11.lock);
	if (t->login != (int)CKU_USER || t->detached || t->removed || t->user_pin != NULL) {
		pthread_mutex_unlock(&g_p11.lock);
		return;
	}
	serial = t->login_serial;
	tk = t->tk;
	pthread_mutex_unlock(&g_p11.lock);
	if (tk_token_info(tk, &ti) != TK_OK || ti.logged_in)
		return;
	/* (unless a C_Login or C_Logout changed it meanwhile) */
	(void)login_lost(t, serial, "reset");
}

bool
tk_p11_lost_expired_locked(const struct p11_token *t)
{
	return t->detached && tk_now_ms() - t->detached_at > g_p11.grace_ms;
}

/* For good: sessions answer CKR_DEVICE_REMOVED once, then
 * CKR_SESSION_HANDLE_INVALID. Drops the caller's (slot's) reference. */
bool
tk_p11_token_forget_locked(struct p11_token *t)
{
	if (t == NULL)
		return false;
	t->removed = true;
	return tk_p11_token_unref_locked(t);
}

/* Tokens to free once the module lock is released. */
struct p11_gc {
	struct p11_token *t[8];
	size_t n;
};

static void
gc_add(struct p11_gc *g, struct p11_token *t)
{
	if (t == NULL)
		return;
	if (g->n < sizeof(g->t) / sizeof(g->t[0]))
		g->t[g->n++] = t;
	else
		tk_log_error("pkcs11: token not freed (internal limit)");
}

static void
gc_run(struct p11_gc *g)
{
	for (size_t i = 0; i < g->n; i++)
		tk_p11_token_free(g->t[i]);
	g->n = 0;
}

/* Not a tk_err: the key's handle no longer resolves. */
#define KEY_MISSING 1

/* One try of a private-key operation with the token's current tk token.
 * The key is looked up by handle in the current object table (the card may
 * have come back since the operation was set up, with a new tk token).
 * *serial: the login the try counted on. */
static int
key_op_try(struct p11_token *t, const struct p11_object *key, int op, const tk_key_auth_t *auth,
           const uint8_t *in, size_t in_len, uint8_t *out, size_t out_cap, size_t *out_len,
           uint64_t *serial)
{
	const struct p11_object *cur;
	const tk_object_t *tko = NULL;
	struct p11_softkey sk;
	bool soft = false;
	tk_token_t *tk;

	pthread_mutex_lock(&g_p11.lock);
	tk = t->tk;
	*serial = t->login_serial;
	cur = tk_p11_object_find_locked(t, key->handle);
	if (cur != NULL && cur->cls == key->cls) {
		tko = cur->tko;
		soft = tk_p11_soft_key_take_locked(cur, &sk); /* a software token's key */
	}
	pthread_mutex_unlock(&g_p11.lock);
	if (soft)
		return tk_p11_soft_key_op(tk, &sk, op, in, in_len, out, out_cap, out_len);
	if (tko == NULL)
		return KEY_MISSING;
	return tk_token_key_op_auth(tk, tko, op, auth, in, in_len, out, out_cap, out_len);
}

static bool
login_gone(int r)
{
	return r == TK_ERR_SECURITY_STATUS || r == TK_ERR_CARD_RESET || r == TK_ERR_PIN_INCORRECT ||
	       r == TK_ERR_PIN_LOCKED;
}

/* The kept user PIN (opt-in), copied into secret memory of its own for one
 * operation (C_Logout may wipe the token's copy meanwhile); NULL when none
 * is kept for the login the operation counted on. */
static void *
kept_pin_copy(struct p11_token *t, uint64_t serial, size_t *len)
{
	void *copy = NULL;

	*len = 0;
	if (!g_p11.pin_cache || tk_secmem_alloc(P11_PIN_MAX, &copy) != TK_OK)
		return NULL;
	pthread_mutex_lock(&g_p11.lock);
	if (t->user_pin != NULL && t->login == (int)CKU_USER && t->login_serial == serial &&
	    t->user_pin_len <= P11_PIN_MAX) {
		memcpy(copy, t->user_pin, t->user_pin_len);
		*len = t->user_pin_len;
	}
	pthread_mutex_unlock(&g_p11.lock);
	if (*len == 0)
		tk_secmem_free(&copy);
	return copy;
}

/* A private-key operation on the session's token; for a PIN-always key with
 * the PIN pop's C_Login(CKU_CONTEXT_SPECIFIC) gave (taken here: one use;
 * verified with the operation in one card transaction). Errors are put in
 * context before the one conversion:
 *  - a PIN-always key without its operation's PIN, or whose PIN the card
 *    no longer takes: CKR_USER_NOT_LOGGED_IN (the user's login follows the
 *    card's, tk_p11_login_sync);
 *  - the card lost the user's login (another program logged out, reset the
 *    card or selected another application): with a kept PIN (opt-in) the
 *    operation goes again after a VERIFY, in one transaction; otherwise,
 *    or when the card refuses that PIN, every session of the token turns
 *    public and the slot gets an event (login_lost) before this call
 *    answers CKR_USER_NOT_LOGGED_IN;
 *  - a communication error while the card is being taken out is
 *    CKR_DEVICE_REMOVED. */
CK_RV
tk_p11_key_op(struct p11_session *s, struct p11_op *pop, const struct p11_object *key, int op,
              const uint8_t *in, size_t in_len, uint8_t *out, size_t out_cap, size_t *out_len)
{
	struct p11_token *t = s->tok;
	tk_key_auth_t auth;
	void *op_pin = NULL, *kept = NULL;
	size_t op_pin_len = 0, kept_len = 0;
	uint64_t serial = 0;
	int r = TK_OK, kept_tries = 0;

	*out_len = 0;
	memset(&auth, 0, sizeof(auth));
	if (pop != NULL)
		tk_p11_op_pin_take(pop, &op_pin, &op_pin_len);
	auth.op_pin = op_pin;
	auth.op_pin_len = op_pin_len;
	/* at most: the try, two tries with the kept PIN (another program may
	 * reset the card again before the first: its transaction then begins
	 * with pcsc-lite's "card reset"; seen once in about 1,500 operations
	 * under a reset every 150-450 ms), a try on a newer login */
	for (int attempt = 0; attempt < 4; attempt++) {
		r = key_op_try(t, key, op, &auth, in, in_len, out, out_cap, out_len, &serial);
		if (r == TK_OK || r == KEY_MISSING || !login_gone(r))
			break;
		if (key->always_auth) {
			/* this operation's PIN is spent (or was never given) */
			tk_p11_login_sync(t);
			r = TK_ERR_SECURITY_STATUS;
			break;
		}
		if ((r == TK_ERR_SECURITY_STATUS || r == TK_ERR_CARD_RESET) && kept_tries < 2) {
			if (auth.user_pin == NULL) {
				kept = kept_pin_copy(t, serial, &kept_len);
				auth.user_pin = kept;
				auth.user_pin_len = kept_len;
			}
			if (auth.user_pin != NULL) {
				kept_tries++;
				continue;
			}
		}
		if (auth.user_pin != NULL && (r == TK_ERR_PIN_INCORRECT || r == TK_ERR_PIN_LOCKED))
			tk_log_info("pkcs11: slot %lu: the card refused the kept PIN (changed "
			            "elsewhere?); it is not kept any more",
			            (unsigned long)t->slot);
		if (!login_lost(t, serial,
		                r == TK_ERR_CARD_RESET        ? "card reset"
		                : r == TK_ERR_SECURITY_STATUS ? "security status lost"
		                                              : "PIN refused")) {
			r = TK_ERR_SECURITY_STATUS;
			break;
		}
		/* a C_Login came after the try began: once more, on that login */
		tk_secmem_free(&kept);
		auth.user_pin = NULL;
		auth.user_pin_len = 0;
		r = TK_ERR_SECURITY_STATUS;
	}
	tk_secmem_free(&op_pin);
	tk_secmem_free(&kept);
	if (r == KEY_MISSING)
		return CKR_KEY_HANDLE_INVALID;
	if (r == TK_ERR_COMM) {
		/* A card taken out with a command outstanding answers "success,
		 * no bytes" on PC/SC: look whether the slot loses the card. The
		 * slot manager turned the reader "recovering" before this error
		 * came back, so the same card valid again means its recovery
		 * found the card there: no need to wait any longer. */
		int64_t end = tk_now_ms() + P11_REMOVAL_SETTLE_MS;
		bool left = false;

		pthread_mutex_lock(&g_p11.lock);
		for (;;) {
			const struct p11_slot *sl = tk_p11_slot_find_locked(t->slot);
			tk_slot_info_t info;

			left = sl == NULL || sl->token != t;
			if (left || tk_p11_check_init_locked() != CKR_OK)
				break;
			if (tk_slotmgr_info(g_p11.mgr, (uint32_t)t->slot, &info) == TK_OK &&
			    info.state == TK_SLOT_VALID && info.card_seq == t->card_seq)
				break;
			if (!wait_deadline_locked(end < tk_now_ms() + 20 ? end : tk_now_ms() + 20))
				break;
		}
		left = left && !t->reader_lost;
		pthread_mutex_unlock(&g_p11.lock);
		if (left)
			r = TK_ERR_CARD_REMOVED;
	}
	return tk_err_to_ckr(r);
}

/* --- the slot table ------------------------------------------------------ */

struct p11_slot *
tk_p11_slot_find_locked(CK_SLOT_ID id)
{
	for (size_t i = 0; i < g_p11.nslots; i++)
		if (g_p11.slots[i].id == id)
			return &g_p11.slots[i];
	return NULL;
}

/* Kept sorted by id so that C_GetSlotList is stable. */
static struct p11_slot *
slot_get_locked(CK_SLOT_ID id, const char *reader)
{
	struct p11_slot *s = tk_p11_slot_find_locked(id);
	size_t pos;

	if (s != NULL)
		goto out;
	if (g_p11.nslots == g_p11.slots_cap) {
		size_t cap = g_p11.slots_cap ? g_p11.slots_cap * 2 : 8;
		struct p11_slot *n = realloc(g_p11.slots, cap * sizeof(*n));

		if (n == NULL)
			return NULL;
		g_p11.slots = n;
		g_p11.slots_cap = cap;
	}
	for (pos = 0; pos < g_p11.nslots && g_p11.slots[pos].id < id; pos++)
		;
	memmove(&g_p11.slots[pos + 1], &g_p11.slots[pos], (g_p11.nslots - pos) * sizeof(*s));
	g_p11.nslots++;
	s = &g_p11.slots[pos];
	memset(s, 0, sizeof(*s));
	s->id = id;
	s->state = TK_SLOT_ABSENT;
out:
	if (reader != NULL && reader[0] != '\0')
		snprintf(s->reader, sizeof(s->reader), "%s", reader);
	return s;
}

/* --- what a slot shows, and whether its token is worth waiting for ------- */

enum { SLOT_VIEW_READER = 1u, SLOT_VIEW_TOKEN = 2u };

/* The slot's card is on its way to a token: being connected, opened, or
 * about to be (after a transient failure, or once it is valid). */
static bool
slot_opening_locked(const struct p11_slot *s)
{
	if (!s->present || s->token != NULL || s->card_seq == 0)
		return false;
	if (s->opening || s->state == TK_SLOT_PROBING || s->state == TK_SLOT_RECOVERING)
		return true;
	return s->state == TK_SLOT_VALID && s->opened_seq != s->card_seq;
}

static bool
stall_latched(const struct p11_slot *s)
{
	return s->card_seq != 0 && s->stalled_seq == s->card_seq;
}

/* What C_GetSlotInfo shows: the reader, and a token (published, or coming
 * from a card that has not stalled). */
static unsigned
slot_view_locked(const struct p11_slot *s)
{
	unsigned v = 0;

	if (!s->present)
		return 0;
	v |= SLOT_VIEW_READER;
	if (s->token != NULL || (slot_opening_locked(s) && !stall_latched(s)))
		v |= SLOT_VIEW_TOKEN;
	return v;
}

/* After a change of the slot. A slot event (C_WaitForSlotEvent) is a change
 * of what the slot shows — a reader added or removed, a token inserted or
 * removed — after the first reader scan, which is where every application
 * starts from: an empty reader that stays empty has none, nor has a card
 * present at C_Initialize whose token is then published. */
static void
slot_changed_locked(struct p11_slot *s)
{
	unsigned v = slot_view_locked(s);

	if (v == s->view)
		return;
	s->view = v;
	if (g_p11.scanned)
		s->event = true;
}

struct p11_slot *
tk_p11_slot_add_locked(CK_SLOT_ID id, const char *reader)
{
	return slot_get_locked(id, reader);
}

void
tk_p11_slot_changed_locked(struct p11_slot *s)
{
	slot_changed_locked(s);
}

/* The slot manager has been recovering the card being opened for
 * stall_ms, or began after the card stalled (a deadline passed: waiting
 * more is waiting for a wedged card). A recovery after a quick fault (an
 * error from the reader or the service, say while pcscd resets the card
 * for a client that left) usually ends in one reconnect: it is waited for
 * like one exchange, so that the application still finds the token (seen:
 * pkcs11-tool's only card "recovering" at its first call, "No slot with a
 * token was found"). */
static bool
recovery_stalled_locked(struct p11_slot *s, const tk_slot_info_t *info, int64_t stall_ms,
                        int64_t *next)
{
	int64_t now = tk_now_ms();

	if (info->state != TK_SLOT_RECOVERING) {
		s->recovering_at = 0;
		return info->state == TK_SLOT_QUARANTINED || info->state == TK_SLOT_MUTE;
	}
	if (stall_latched(s))
		return true;
	if (s->recovering_at == 0 || s->recovering_seq != s->card_seq) {
		s->recovering_at = now;
		s->recovering_seq = s->card_seq;
	}
	if (now - s->recovering_at >= stall_ms)
		return true;
	*next = P11_STALL_POLL_MS;
	return false;
}

/* The card being opened in the slot makes no progress: its reader has been
 * inside one exchange with the card (APDU, reset, status) for stall_ms
 * (P11_STALL_MS; P11_STALL_SELF_MS for a call about this slot), or the slot
 * manager has been recovering it as long (recovery_stalled_locked), or has
 * given up on it for now (quarantined, mute). Then no call waits for its
 * token, and the slot shows none until the token is published (a slot
 * event) or the card leaves. A card that answers, however slowly its token
 * opens, is waited for (each exchange within stall_ms).
 * *recheck_ms (may be NULL) is lowered to when the answer may change. */
static bool
slot_stalled_locked(struct p11_slot *s, int64_t *recheck_ms, int64_t stall_ms)
{
	tk_slot_info_t info;
	int64_t next = P11_STALL_POLL_MS;

	if (!slot_opening_locked(s))
		return false;
	/* the latch spares the neighbours' calls; a call about this slot
	 * looks again (the card may only have been slow once) */
	if (stall_latched(s) && stall_ms <= P11_STALL_MS)
		return true;
	if (g_p11.mgr == NULL || tk_slotmgr_info(g_p11.mgr, (uint32_t)s->id, &info) != TK_OK)
		return false;
	if (info.card_seq == s->card_seq && (recovery_stalled_locked(s, &info, stall_ms, &next) ||
	                                     (int64_t)info.busy_ms >= stall_ms)) {
		tk_log_info(
		        "pkcs11: slot %lu (%s): the card makes no progress (%s, %u ms in a call); "
		        "its token is not waited for",
		        (unsigned long)s->id, s->reader, tk_slot_state_name(info.state),
		        (unsigned)info.busy_ms);
		s->stalled_seq = s->card_seq;
		/* no event: the token was only expected, never shown as opened */
		s->view = slot_view_locked(s);
		return true;
	}
	/* making progress (or the manager has another card by now, whose events
	 * are on their way): look again when the current exchange reaches
	 * stall_ms, or soon when there is none (the next may hang) */
	if (info.busy_ms > 0 && stall_ms - (int64_t)info.busy_ms + 1 < next)
		next = stall_ms - (int64_t)info.busy_ms + 1;
	if (recheck_ms != NULL && next < *recheck_ms)
		*recheck_ms = next;
	return false;
}

/* A token is coming in some slot from a card that makes progress. How
 * long one exchange may last before its card counts as making none: while
 * some other token is there to show, P11_STALL_MS (the application starts
 * with what is ready; the slow card's token follows with a slot event);
 * while there is none, P11_STALL_SELF_MS, as for a call about that slot —
 * returning at once would show the application no token at all when its
 * only card merely had one slow exchange (seen under load: pkcs11-tool
 * "No slot with a token was found", a test's worker finding no token). A
 * card that never answers costs C_GetSlotList 1 s then, not 100 ms. */
static bool
opens_progressing_locked(int64_t *recheck_ms)
{
	int64_t stall_ms = P11_STALL_SELF_MS;
	bool any = false;

	for (size_t i = 0; i < g_p11.nslots; i++)
		if (g_p11.slots[i].present && g_p11.slots[i].token != NULL)
			stall_ms = P11_STALL_MS;
	for (size_t i = 0; i < g_p11.nslots; i++) {
		struct p11_slot *s = &g_p11.slots[i];

		if (slot_opening_locked(s) && !slot_stalled_locked(s, recheck_ms, stall_ms))
			any = true;
	}
	return any;
}

/* Wait on the module condition until now + step_ms, but not past end;
 * false once end has passed. */
static bool
wait_step_locked(int64_t end, int64_t step_ms)
{
	int64_t at = tk_now_ms() + step_ms;

	return wait_deadline_locked(at < end ? at : end);
}

/* The slot's lost token ends for good. */
static void
slot_forget_lost_locked(struct p11_slot *s, struct p11_gc *gc)
{
	struct p11_token *t = s->lost;

	s->lost = NULL;
	if (tk_p11_token_forget_locked(t))
		gc_add(gc, t);
}

static void
slot_expire_lost_locked(struct p11_slot *s, struct p11_gc *gc)
{
	if (s->lost != NULL && tk_p11_lost_expired_locked(s->lost)) {
		tk_log_info("pkcs11: slot %lu: the card did not come back; its sessions end",
		            (unsigned long)s->id);
		slot_forget_lost_locked(s, gc);
	}
}

/* The card left the slot (taken out, reset away, or its reader or the
 * PC/SC service went): the slot shows no token. The token is kept as the
 * slot's lost token, with its sessions, handles and session objects, for
 * the same card (same identity) to come back within g_p11.grace_ms;
 * meanwhile its sessions answer CKR_DEVICE_REMOVED (reader_lost:
 * CKR_DEVICE_ERROR). The login ends now: the PIN is never kept. */
static void
slot_detach_token_locked(struct p11_slot *s, bool reader_lost, struct p11_gc *gc)
{
	struct p11_token *t = s->token;

	s->token = NULL;
	s->opened_seq = 0; /* the same insertion may come back (re-bound): open it again */
	s->stalled_seq = 0;
	if (t == NULL) {
		if (reader_lost && s->lost != NULL)
			s->lost->reader_lost = true;
		return;
	}
	slot_forget_lost_locked(s, gc);
	t->detached = true;
	t->reader_lost = reader_lost;
	t->detached_at = tk_now_ms();
	tk_p11_login_set_locked(t, -1);
	if (t->info.identity[0] == '\0' || g_p11.grace_ms <= 0) {
		/* nothing to recognise it by when it comes back (or no waiting) */
		if (tk_p11_token_forget_locked(t))
			gc_add(gc, t);
		return;
	}
	s->lost = t; /* the slot's reference moves over */
}

void
tk_p11_slots_clear_locked(void)
{
	for (size_t i = 0; i < g_p11.nslots; i++) {
		struct p11_gc gc = {.n = 0};

		slot_detach_token_locked(&g_p11.slots[i], false, &gc);
		slot_forget_lost_locked(&g_p11.slots[i], &gc);
		/* finalize only: no other thread uses the module now */
		gc_run(&gc);
	}
	free(g_p11.slots);
	g_p11.slots = NULL;
	g_p11.nslots = g_p11.slots_cap = 0;
}

/* --- opening tokens ------------------------------------------------------ */

struct open_job {
	CK_SLOT_ID id;
	uint64_t seq;
	uint64_t gen;
	tk_thread_t *thr;
};

static bool
open_threads_running_locked(void)
{
	for (const tk_thread_t *t = g_p11.threads; t != NULL; t = t->next)
		if (!t->done)
			return true;
	return false;
}

void
tk_p11_slots_join(int timeout_ms)
{
	int64_t end = tk_now_ms() + timeout_ms;
	tk_thread_t *all;

	pthread_mutex_lock(&g_p11.lock);
	while (open_threads_running_locked() && wait_deadline_locked(end))
		;
	all = tk_threads_take_locked(&g_p11.threads, true);
	pthread_mutex_unlock(&g_p11.lock);
	if (tk_threads_join(all) > 0)
		tk_log_warn("pkcs11: a token-open thread is still running; detached");
}

/* The open thread's last touch of module state: after it the thread only
 * returns, so whoever joins it does not wait long. */
static void
open_thread_done(tk_thread_t *thr)
{
	pthread_mutex_lock(&g_p11.lock);
	thr->done = true;
	pthread_cond_broadcast(&g_p11.cond);
	pthread_mutex_unlock(&g_p11.lock);
}

/* A failure worth another open of the same insertion: the card or its
 * reader may answer next time. A protocol or I/O error may be the reader's
 * or the service's (pcscd answers SCARD_E_PROTO_MISMATCH while it resets
 * the card for a client that left; the slot manager then recovers the
 * reader) or the card's own for good: P11_OPEN_RETRIES_ODD more opens. */
static bool
transient(struct p11_slot *s, uint64_t seq, int r)
{
	if (r == TK_ERR_PROTOCOL || r == TK_ERR_IO) {
		if (s->odd_fails_seq != seq) {
			s->odd_fails_seq = seq;
			s->odd_fails = 0;
		}
		return s->odd_fails++ < P11_OPEN_RETRIES_ODD;
	}
	return r == TK_ERR_NO_CARD || r == TK_ERR_TIMEOUT || r == TK_ERR_UNRESPONSIVE ||
	       r == TK_ERR_COMM || r == TK_ERR_CARD_RESET || r == TK_ERR_NO_SERVICE ||
	       r == TK_ERR_SHARING || r == TK_ERR_QUARANTINED;
}

void
tk_p11_token_recheck(struct p11_token *t)
{
	bool changed = false, stop, revalidated;
	tk_token_t *tk;
	int r;

	pthread_mutex_lock(&g_p11.lock);
	stop = g_p11.finalizing || t->removed || t->detached;
	tk = t->tk;
	pthread_mutex_unlock(&g_p11.lock);
	if (stop)
		return;
	r = tk_token_revalidate(tk, &changed);
	if (r == TK_OK && changed) {
		r = tk_p11_objects_rebuild(t);
		tk_log_debug("pkcs11: slot %lu: objects changed on the card; table rebuilt: %s",
		             (unsigned long)t->slot, tk_strerror(r));
	} else if (r != TK_OK) {
		tk_log_info("pkcs11: slot %lu: revalidation: %s", (unsigned long)t->slot,
		            tk_strerror(r));
	}
	revalidated = r == TK_OK;
	r = tk_token_refresh_pin(tk);
	if (r != TK_OK)
		tk_log_debug("pkcs11: slot %lu: PIN counters: %s", (unsigned long)t->slot,
		             tk_strerror(r));
	/* the card's record in the user's registry, from objects the card
	 * confirmed (a cache entry taken on trust is not written there) */
	if (revalidated && (r = tk_token_register(tk, NULL, NULL)) != TK_OK)
		tk_log_debug("pkcs11: slot %lu: registry record: %s", (unsigned long)t->slot,
		             tk_strerror(r));
}

/* Background work on a published token (tk_p11_token_recheck). Ends the
 * opener's count. */
static void
after_open(struct p11_token *t)
{
	struct p11_token *junk;
	bool last;

	tk_p11_token_recheck(t);
	pthread_mutex_lock(&g_p11.lock);
	last = tk_p11_token_unref_locked(t);
	g_p11.openers--;
	junk = tk_p11_gc_take_locked();
	pthread_cond_broadcast(&g_p11.cond);
	pthread_mutex_unlock(&g_p11.lock);
	if (last)
		tk_p11_token_free(t);
	tk_p11_token_free(junk);
}

/* The same card came back to the slot (by identity): its lost token L
 * takes the new insertion's tk token and objects from T (an unpublished
 * shell afterwards). L keeps its sessions, session objects and the handles
 * of the objects that did not change; nobody is logged in. False (and
 * nothing changed) when out of memory or after P11_MAX_RETURNS returns. */
static bool
resurrect_locked(struct p11_token *l, struct p11_token *t)
{
	struct p11_objset *old;
	tk_token_t **tks;

	if (l->returns >= P11_MAX_RETURNS) {
		tk_log_info("pkcs11: slot %lu: the card came back %d times; a new token this time",
		            (unsigned long)l->slot, P11_MAX_RETURNS);
		return false;
	}
	old = calloc(1, sizeof(*old));
	tks = realloc(l->old_tks, (l->nold_tks + 1) * sizeof(*tks));
	if (tks != NULL)
		l->old_tks = tks;
	if (old == NULL || tks == NULL) {
		free(old);
		return false;
	}
	tk_p11_objects_number_locked(t->objs, t->nobjs, l->objs, l->nobjs);
	/* calls that started before may still use the old tk token and table
	 * (freed when none can: tk_p11_gc_take_locked) */
	l->old_tks[l->nold_tks++] = l->tk;
	l->returns++;
	g_p11.gc_wanted = true;
	l->tk = t->tk;
	t->tk = NULL;
	old->objs = l->objs;
	old->nobjs = l->nobjs;
	old->next = l->retired;
	l->retired = old;
	l->objs = t->objs;
	l->nobjs = t->nobjs;
	t->objs = NULL;
	t->nobjs = 0;
	l->rsa_sign = t->rsa_sign;
	l->rsa_decrypt = t->rsa_decrypt;
	l->ec_sign = t->ec_sign;
	l->ec_derive = t->ec_derive;
	l->rsa_min = t->rsa_min;
	l->rsa_max = t->rsa_max;
	l->ec_min = t->ec_min;
	l->ec_max = t->ec_max;
	l->info = t->info;
	l->card_seq = t->card_seq;
	l->detached = false;
	l->reader_lost = false;
	tk_p11_login_set_locked(l, -1);
	return true;
}

static void *
open_thread(void *arg)
{
	struct open_job job = *(struct open_job *)arg;
	tk_slotmgr_t *mgr;
	tk_card_t *card = NULL;
	tk_token_t *tk = NULL;
	struct p11_token *t = NULL, *published = NULL;
	struct p11_gc gc = {.n = 0};
	struct p11_slot *s;
	tk_thread_t *reap;
	tk_token_opts_t o;
	bool bg = false;
	int r;

	free(arg);
	pthread_mutex_lock(&g_p11.lock);
	/* earlier open threads that finished: joined here, outside the lock */
	reap = tk_threads_take_locked(&g_p11.threads, false);
	if (g_p11.gen != job.gen || g_p11.finalizing || g_p11.mgr == NULL) {
		r = TK_ERR_CANCELLED;
		pthread_mutex_unlock(&g_p11.lock);
		goto done;
	}
	mgr = g_p11.mgr;
	g_p11.calls++; /* C_Finalize frees the manager only when no call uses it */
	pthread_mutex_unlock(&g_p11.lock);
	(void)tk_threads_join(reap);
	reap = NULL;

	r = tk_slotmgr_card(mgr, (uint32_t)job.id, &card);

	pthread_mutex_lock(&g_p11.lock);
	g_p11.calls--;
	pthread_cond_broadcast(&g_p11.cond);
	pthread_mutex_unlock(&g_p11.lock);
	if (r != TK_OK)
		goto done;

	/* OpenSSL from here on (the cache's digests, keys): not while exiting */
	if (!tk_p11_bg_enter()) {
		tk_card_unref(&card);
		r = TK_ERR_CANCELLED;
		goto done;
	}
	bg = true;
	/* Publish from the cache as soon as the card proved its identity; check
	 * the objects and read the PIN counters right after, in this thread. */
	tk_token_opts_init(&o);
	o.defer_revalidation = true;
	o.refresh_pin_status = false;
	r = tk_token_open(card, &o, &tk);
	tk_card_unref(&card);
	if (r != TK_OK)
		goto done;

	t = calloc(1, sizeof(*t));
	if (t == NULL) {
		r = TK_ERR_NO_MEMORY;
		goto done;
	}
	t->refs = 1;
	t->tk = tk;
	tk = NULL;
	t->slot = job.id;
	t->card_seq = job.seq;
	t->login = -1;
	r = tk_token_info(t->tk, &t->info);
	if (r == TK_OK)
		r = tk_p11_objects_build(t);
done:
	if (r != TK_OK && r != TK_ERR_CANCELLED)
		tk_log_info("pkcs11: slot %lu: token not opened: %s", (unsigned long)job.id,
		            tk_strerror(r));
	pthread_mutex_lock(&g_p11.lock);
	s = g_p11.gen == job.gen ? tk_p11_slot_find_locked(job.id) : NULL;
	if (s != NULL) {
		s->opening = false;
		if (r == TK_OK && !g_p11.finalizing && s->present && s->card_seq == job.seq) {
			if (s->token != NULL)
				slot_detach_token_locked(s, false, &gc);
			slot_expire_lost_locked(s, &gc);
			if (s->lost != NULL && t->info.identity[0] != '\0' &&
			    strcmp(s->lost->info.identity, t->info.identity) == 0 &&
			    resurrect_locked(s->lost, t)) {
				tk_log_info(
				        "pkcs11: slot %lu: the same card is back; its sessions and "
				        "handles go on (not logged in)",
				        (unsigned long)job.id);
				published = s->lost; /* the slot's reference moves back */
				s->lost = NULL;
			} else {
				/* another card: the old one's sessions end, new handles */
				slot_forget_lost_locked(s, &gc);
				tk_p11_objects_number_locked(t->objs, t->nobjs, NULL, 0);
				published = t;
				t = NULL;
			}
			s->token = published;
			s->opened_seq = job.seq;
			published->refs++; /* ours, for the checks below */
		} else if (r != TK_OK && s->opened_seq == job.seq && transient(s, job.seq, r)) {
			/* try again soon (next event, C_GetSlotList or token wait) */
			s->opened_seq = 0;
			s->retry_at = tk_now_ms() + P11_OPEN_RETRY_MS;
		}
		slot_changed_locked(s);
	}
	if (published == NULL) {
		g_p11.openers--;
		gc_add(&gc, tk_p11_gc_take_locked());
	}
	/* Wake C_GetSlotList now: a published token is ready, and revalidation
	 * and PIN counters (after_open) happen off the caller's critical path. */
	pthread_cond_broadcast(&g_p11.cond);
	pthread_mutex_unlock(&g_p11.lock);
	tk_p11_token_free(t);
	gc_run(&gc);
	tk_token_free(&tk);
	if (published != NULL)
		after_open(published);
	if (bg)
		tk_p11_bg_leave();
	(void)tk_threads_join(reap);
	open_thread_done(job.thr);
	return NULL;
}

static void
maybe_open_locked(struct p11_slot *s)
{
	struct open_job *job;
	tk_thread_t *thr;

	if (!s->present || s->state != TK_SLOT_VALID || s->card_seq == 0 || s->opening ||
	    s->opened_seq == s->card_seq || tk_now_ms() < s->retry_at)
		return;
	if (s->token != NULL && s->token->card_seq == s->card_seq)
		return;
	job = malloc(sizeof(*job));
	thr = calloc(1, sizeof(*thr));
	if (job == NULL || thr == NULL) {
		free(job);
		free(thr);
		return;
	}
	job->id = s->id;
	job->seq = s->card_seq;
	job->gen = g_p11.gen;
	job->thr = thr;
	/* Joinable: C_Finalize joins it, so nothing of ours runs after. The
	 * thread marks itself done under the module lock, held here. */
	if (pthread_create(&thr->t, NULL, open_thread, job) != 0) {
		free(job);
		free(thr);
	} else {
		thr->next = g_p11.threads;
		g_p11.threads = thr;
		s->opening = true;
		s->opened_seq = s->card_seq;
		g_p11.openers++;
	}
}

static void
on_event(void *ctx, const tk_event_t *ev)
{
	uint64_t gen = (uint64_t)(uintptr_t)ctx;
	struct p11_gc gc = {.n = 0};
	struct p11_slot *s;

	pthread_mutex_lock(&g_p11.lock);
	if (g_p11.gen != gen || !g_p11.initialized || g_p11.finalizing)
		goto out;
	if (ev->type == TK_EVENT_SERVICE_LOST || ev->type == TK_EVENT_SERVICE_RESTORED) {
		/* The readers' own events tell what changed. While the service
		 * is away the lost tokens' sessions answer CKR_DEVICE_ERROR. */
		for (size_t i = 0; ev->type == TK_EVENT_SERVICE_LOST && i < g_p11.nslots; i++)
			if (g_p11.slots[i].lost != NULL)
				g_p11.slots[i].lost->reader_lost = true;
		goto out;
	}
	s = slot_get_locked(ev->slot_id, ev->reader);
	if (s == NULL)
		goto out;
	switch (ev->type) {
	case TK_EVENT_READER_ADDED:
		s->present = true;
		s->state = ev->state;
		break;
	case TK_EVENT_READER_REMOVED:
		s->present = false;
		s->state = TK_SLOT_ABSENT;
		s->card_seq = 0;
		slot_detach_token_locked(s, true, &gc);
		break;
	case TK_EVENT_CARD_INSERTED:
		s->present = true;
		s->state = ev->state;
		if (s->card_seq != ev->card_seq) {
			slot_detach_token_locked(s, false, &gc);
			s->card_seq = ev->card_seq;
		}
		break;
	case TK_EVENT_CARD_REMOVED:
		s->state = ev->state;
		s->card_seq = 0;
		/* state ABSENT: the reader itself is going (unplugged, or the
		 * PC/SC service went away), not the card taken out */
		slot_detach_token_locked(s, ev->state == TK_SLOT_ABSENT, &gc);
		break;
	case TK_EVENT_STATE_CHANGED:
		s->present = ev->state != TK_SLOT_ABSENT;
		s->state = ev->state;
		if (ev->card_seq != 0 && ev->card_seq != s->card_seq) {
			slot_detach_token_locked(s, false, &gc);
			s->card_seq = ev->card_seq;
		}
		if (ev->state == TK_SLOT_EMPTY && s->card_seq != 0) {
			s->card_seq = 0;
			slot_detach_token_locked(s, false, &gc);
		}
		break;
	default:
		break;
	}
	slot_expire_lost_locked(s, &gc);
	maybe_open_locked(s);
	slot_changed_locked(s);
	pthread_cond_broadcast(&g_p11.cond);
out:
	pthread_mutex_unlock(&g_p11.lock);
	gc_run(&gc);
}

void
tk_p11_slots_start(void)
{
	tk_slotmgr_t *mgr;
	uint64_t gen;
	int id;

	pthread_mutex_lock(&g_p11.lock);
	gen = ++g_p11.gen;
	mgr = g_p11.mgr;
	pthread_mutex_unlock(&g_p11.lock);
	id = tk_slotmgr_subscribe(mgr, on_event, (void *)(uintptr_t)gen, true);
	pthread_mutex_lock(&g_p11.lock);
	g_p11.sub_id = id > 0 ? id : 0;
	pthread_mutex_unlock(&g_p11.lock);
	if (id <= 0)
		tk_log_warn("pkcs11: slot events: %s", tk_strerror(id));
}

static int
ms_left(int64_t end)
{
	int64_t left = end - tk_now_ms();

	return left <= 0 ? 0 : left > INT32_MAX ? INT32_MAX : (int)left;
}

void
tk_p11_slots_first_scan(void)
{
	tk_slotmgr_t *mgr;
	int64_t end;
	int r;

	pthread_mutex_lock(&g_p11.lock);
	if (g_p11.scanned || tk_p11_check_init_locked() != CKR_OK) {
		pthread_mutex_unlock(&g_p11.lock);
		return;
	}
	mgr = g_p11.mgr;
	end = g_p11.scan_end;
	g_p11.calls++; /* C_Finalize frees the manager only when no call uses it */
	pthread_mutex_unlock(&g_p11.lock);

	/* No service at all is an answer too: no readers (yet). */
	r = tk_slotmgr_wait_ready(mgr, ms_left(end));
	if (r == TK_OK || r == TK_ERR_NO_SERVICE)
		r = tk_slotmgr_sync(mgr, ms_left(end)); /* its events are in the table */

	pthread_mutex_lock(&g_p11.lock);
	if (!g_p11.scanned && (r == TK_OK || tk_now_ms() >= end)) {
		if (r != TK_OK)
			tk_log_warn("pkcs11: no answer from the reader service within %d ms (%s); "
			            "its readers appear as slot events when it answers",
			            P11_FIRST_SCAN_WAIT_MS, tk_strerror(r));
		g_p11.scanned = true;
	}
	g_p11.calls--;
	pthread_cond_broadcast(&g_p11.cond);
	pthread_mutex_unlock(&g_p11.lock);
}

CK_RV
tk_p11_C_GetSlotList(CK_BBOOL tokenPresent, CK_SLOT_ID_PTR pSlotList, CK_ULONG_PTR pulCount)
{
	int64_t end = tk_now_ms() + P11_GETSLOTLIST_WAIT_MS;
	tk_slotmgr_t *mgr;
	CK_ULONG n = 0;
	CK_RV rv;

	if (pulCount == NULL)
		return tk_p11_enter() != CKR_OK ? CKR_CRYPTOKI_NOT_INITIALIZED : CKR_ARGUMENTS_BAD;
	tk_p11_slots_first_scan();
	pthread_mutex_lock(&g_p11.lock);
	rv = tk_p11_check_init_locked();
	if (rv != CKR_OK) {
		pthread_mutex_unlock(&g_p11.lock);
		return rv;
	}
	mgr = g_p11.mgr;
	g_p11.calls++;
	pthread_mutex_unlock(&g_p11.lock);

	/* What the manager knows now (a card inserted a moment ago) is in the
	 * table before we look. */
	(void)tk_slotmgr_sync(mgr, ms_left(end));

	pthread_mutex_lock(&g_p11.lock);
	/* Tokens on their way from cards that make progress are worth the
	 * wait; a card that does not answer is not (slot_stalled_locked). */
	for (;;) {
		int64_t recheck = P11_OPEN_RETRY_MS;

		if (tk_p11_check_init_locked() != CKR_OK)
			break;
		for (size_t i = 0; i < g_p11.nslots; i++)
			maybe_open_locked(&g_p11.slots[i]);
		if (!opens_progressing_locked(&recheck) || !wait_step_locked(end, recheck))
			break;
	}
	rv = tk_p11_check_init_locked();
	if (rv != CKR_OK)
		goto out;
	for (size_t i = 0; i < g_p11.nslots; i++) {
		const struct p11_slot *s = &g_p11.slots[i];

		if (s->present && s->token == NULL && s->card_seq != 0)
			tk_log_info("pkcs11: slot %lu (%s): card without token (%s%s)",
			            (unsigned long)s->id, s->reader, tk_slot_state_name(s->state),
			            slot_opening_locked(s) ? ", still opening" : "");
		if (!s->present)
			continue;
		if (tokenPresent && s->token == NULL)
			continue;
		if (pSlotList != NULL && n < *pulCount)
			pSlotList[n] = s->id;
		n++;
	}
	if (pSlotList != NULL && n > *pulCount)
		rv = CKR_BUFFER_TOO_SMALL;
	*pulCount = n;
out:
	g_p11.calls--;
	pthread_cond_broadcast(&g_p11.cond);
	pthread_mutex_unlock(&g_p11.lock);
	return rv;
}

CK_RV
tk_p11_C_GetSlotInfo(CK_SLOT_ID slotID, CK_SLOT_INFO_PTR pInfo)
{
	struct p11_slot *s;
	CK_RV rv;

	tk_p11_slots_first_scan();
	pthread_mutex_lock(&g_p11.lock);
	rv = tk_p11_check_init_locked();
	if (rv != CKR_OK)
		goto out;
	s = tk_p11_slot_find_locked(slotID);
	if (s == NULL) {
		rv = CKR_SLOT_ID_INVALID;
		goto out;
	}
	if (pInfo == NULL) {
		rv = CKR_ARGUMENTS_BAD;
		goto out;
	}
	memset(pInfo, 0, sizeof(*pInfo));
	tk_p11_pad(pInfo->slotDescription, sizeof(pInfo->slotDescription), s->reader);
	tk_p11_pad(pInfo->manufacturerID, sizeof(pInfo->manufacturerID), P11_MANUFACTURER);
	/* a registered token's slot: no hardware; removable (unregistered) */
	pInfo->flags = CKF_REMOVABLE_DEVICE | (s->registry ? 0 : CKF_HW_SLOT);
	(void)slot_stalled_locked(s, NULL, P11_STALL_MS);
	if (slot_view_locked(s) & SLOT_VIEW_TOKEN)
		pInfo->flags |= CKF_TOKEN_PRESENT;
out:
	pthread_mutex_unlock(&g_p11.lock);
	return rv;
}

/* A reference to the slot's token, waiting (bounded) for an open in flight
 * while its card makes progress. A card that makes none answers
 * CKR_TOKEN_NOT_PRESENT at once (the slot shows no token either) until its
 * token is published. */
CK_RV
tk_p11_slot_token(CK_SLOT_ID id, struct p11_token **out)
{
	int64_t end = tk_now_ms() + P11_GETSLOTLIST_WAIT_MS;
	struct p11_slot *s;
	CK_RV rv;

	*out = NULL;
	tk_p11_slots_first_scan();
	pthread_mutex_lock(&g_p11.lock);
	for (;;) {
		int64_t recheck = P11_OPEN_RETRY_MS;

		rv = tk_p11_check_init_locked();
		if (rv != CKR_OK)
			goto out;
		s = tk_p11_slot_find_locked(id);
		if (s == NULL) {
			rv = CKR_SLOT_ID_INVALID;
			goto out;
		}
		maybe_open_locked(s);
		if (!slot_opening_locked(s) ||
		    slot_stalled_locked(s, &recheck, P11_STALL_SELF_MS) ||
		    !wait_step_locked(end, recheck))
			break;
	}
	if (!s->present || s->token == NULL) {
		rv = s->present && s->card_seq != 0 && s->state == TK_SLOT_VALID &&
		                     !slot_opening_locked(s)
		             ? CKR_TOKEN_NOT_RECOGNIZED
		             : CKR_TOKEN_NOT_PRESENT;
		goto out;
	}
	s->token->refs++;
	g_p11.calls++;
	*out = s->token;
out:
	pthread_mutex_unlock(&g_p11.lock);
	return rv;
}

static void
count_sessions_locked(const struct p11_token *t, CK_ULONG *all, CK_ULONG *rw)
{
	*all = *rw = 0;
	for (size_t i = 0; i < g_p11.nsessions; i++) {
		if (g_p11.sessions[i]->tok != t)
			continue;
		(*all)++;
		if (g_p11.sessions[i]->flags & CKF_RW_SESSION)
			(*rw)++;
	}
}

CK_RV
tk_p11_C_GetTokenInfo(CK_SLOT_ID slotID, CK_TOKEN_INFO_PTR pInfo)
{
	struct p11_token *t = NULL;
	tk_token_info_t ti;
	tk_token_t *tk;
	CK_RV rv;
	int r, max;
	bool user_pin_refused;

	rv = tk_p11_slot_token(slotID, &t);
	if (rv != CKR_OK)
		return rv;
	if (pInfo == NULL) {
		rv = CKR_ARGUMENTS_BAD;
		goto out;
	}
	tk = tk_p11_tk(t);
	r = tk_token_info(tk, &ti);
	if (r == TK_OK && ti.pin_retries < 0) {
		/* Counters not read yet (the background read after opening may
		 * still be on its way): one empty VERIFY, no try spent. */
		if (tk_token_refresh_pin(tk) == TK_OK)
			r = tk_token_info(tk, &ti);
	}
	if (r != TK_OK) {
		rv = tk_err_to_ckr(r);
		goto out;
	}
	memset(pInfo, 0, sizeof(*pInfo));
	tk_p11_pad(pInfo->label, sizeof(pInfo->label), ti.label);
	tk_p11_pad(pInfo->manufacturerID, sizeof(pInfo->manufacturerID), ti.manufacturer);
	tk_p11_pad(pInfo->model, sizeof(pInfo->model), ti.model);
	tk_p11_pad(pInfo->serialNumber, sizeof(pInfo->serialNumber), ti.serial);
	/* CKF_RNG: C_GenerateRandom works, from the host's DRBG (random.c) */
	pInfo->flags =
	        CKF_LOGIN_REQUIRED | CKF_USER_PIN_INITIALIZED | CKF_TOKEN_INITIALIZED | CKF_RNG;
	if (!t->soft) /* a software token takes new objects (softobj.c) */
		pInfo->flags |= CKF_WRITE_PROTECTED;
	/* a PIN pad: C_Login with a NULL PIN has the user type it there */
	if (ti.protected_auth_path)
		pInfo->flags |= CKF_PROTECTED_AUTHENTICATION_PATH;
	/* COUNT_LOW: fewer tries left than the card allows, or a user PIN
	 * refused since the last successful user login (PKCS#11's definition;
	 * also a PIN refused before it reached the card). Where the card does
	 * not say how many it allows (tk_token_info has no PUK maximum, and the
	 * PIN maximum needs the metadata command), assume PIV's usual 3. */
	max = ti.pin_max_retries > 0 ? ti.pin_max_retries : P11_DEFAULT_MAX_TRIES;
	pthread_mutex_lock(&g_p11.lock);
	user_pin_refused = t->user_pin_refused;
	pthread_mutex_unlock(&g_p11.lock);
	if (ti.pin_locked || ti.pin_retries == 0)
		pInfo->flags |= CKF_USER_PIN_LOCKED;
	else if (ti.pin_retries == 1)
		pInfo->flags |= CKF_USER_PIN_FINAL_TRY;
	else if ((ti.pin_retries > 0 && ti.pin_retries < max) || user_pin_refused)
		pInfo->flags |= CKF_USER_PIN_COUNT_LOW;
	if (ti.puk_locked || ti.puk_retries == 0)
		pInfo->flags |= CKF_SO_PIN_LOCKED;
	else if (ti.puk_retries == 1)
		pInfo->flags |= CKF_SO_PIN_FINAL_TRY;
	else if (ti.puk_retries > 0 && ti.puk_retries < P11_DEFAULT_MAX_TRIES)
		pInfo->flags |= CKF_SO_PIN_COUNT_LOW;
	pInfo->ulMaxSessionCount = CK_EFFECTIVELY_INFINITE;
	pInfo->ulMaxRwSessionCount = CK_EFFECTIVELY_INFINITE;
	pthread_mutex_lock(&g_p11.lock);
	count_sessions_locked(t, &pInfo->ulSessionCount, &pInfo->ulRwSessionCount);
	pthread_mutex_unlock(&g_p11.lock);
	pInfo->ulMaxPinLen = ti.pin_max_len > 0 ? ti.pin_max_len : 8;
	pInfo->ulMinPinLen = ti.pin_min_len > 0 ? ti.pin_min_len : 6;
	pInfo->ulTotalPublicMemory = CK_UNAVAILABLE_INFORMATION;
	pInfo->ulFreePublicMemory = CK_UNAVAILABLE_INFORMATION;
	pInfo->ulTotalPrivateMemory = CK_UNAVAILABLE_INFORMATION;
	pInfo->ulFreePrivateMemory = CK_UNAVAILABLE_INFORMATION;
	/* token.h has no hardware/firmware versions yet */
	pInfo->hardwareVersion.major = 0;
	pInfo->firmwareVersion.major = 0;
	memset(pInfo->utcTime, ' ', sizeof(pInfo->utcTime));
out:
	tk_p11_token_put(t);
	return rv;
}

CK_RV
tk_p11_C_WaitForSlotEvent(CK_FLAGS flags, CK_SLOT_ID_PTR pSlot, CK_VOID_PTR pReserved)
{
	CK_RV rv;

	pthread_mutex_lock(&g_p11.lock);
	rv = tk_p11_check_init_locked();
	if (rv != CKR_OK)
		goto out;
	if (pSlot == NULL || pReserved != NULL) {
		rv = CKR_ARGUMENTS_BAD;
		goto out;
	}
	g_p11.waiters++;
	for (;;) {
		bool found = false;

		if (tk_p11_check_init_locked() != CKR_OK) {
			rv = CKR_CRYPTOKI_NOT_INITIALIZED;
			break;
		}
		for (size_t i = 0; i < g_p11.nslots; i++) {
			if (g_p11.slots[i].event) {
				g_p11.slots[i].event = false;
				*pSlot = g_p11.slots[i].id;
				found = true;
				break;
			}
		}
		if (found) {
			rv = CKR_OK;
			break;
		}
		if (flags & CKF_DONT_BLOCK) {
			rv = CKR_NO_EVENT;
			break;
		}
		/* woken by events and by C_Finalize; the timeout only re-checks */
		wait_deadline_locked(tk_now_ms() + 1000);
	}
	g_p11.waiters--;
	pthread_cond_broadcast(&g_p11.cond);
out:
	pthread_mutex_unlock(&g_p11.lock);
	return rv;
}

CK_RV
tk_p11_C_InitToken(CK_SLOT_ID slotID, CK_UTF8CHAR_PTR pPin, CK_ULONG ulPinLen,
                   CK_UTF8CHAR_PTR pLabel)
{
	struct p11_token *t = NULL;
	CK_RV rv = tk_p11_slot_token(slotID, &t);

	if (rv != CKR_OK)
		return rv;
	tk_p11_token_put(t);
	return CKR_TOKEN_WRITE_PROTECTED;
}
