/* tokenkit-pkcs11: sessions, login state, PIN management.
 *
 * Login state belongs to the token and is shared by all its sessions (of
 * this application: another program's login, logout or reset shows here
 * only as the card's answers, README "Login state"). A PIN-always key's
 * login (CKU_CONTEXT_SPECIFIC) belongs to one operation of one session:
 * its PIN is kept in that operation (secret memory) until the key
 * operation takes it, and verified again right before that operation in
 * the same card transaction.
 * CKU_SO: PIV has no way to check the PUK without spending or changing it,
 * so C_Login(CKU_SO) checks nothing on the card; it keeps the PUK (in the
 * token's memory, wiped on C_Logout, on the last C_CloseSession and on
 * removal) for C_InitPIN (unblock the PIN with the PUK) and C_SetPIN (change
 * the PUK). A wrong PUK is therefore reported by those calls. */
#include <stdlib.h>
#include <string.h>

#include <tokenkit/log.h>
#include <tokenkit/mem.h>

#include "p11.h"
#include "secmem.h"

/* The operation's C_Login(CKU_CONTEXT_SPECIFIC) PIN (secret memory, owned
 * from now on by op); an earlier one is wiped. */
void
tk_p11_op_pin_set(struct p11_op *op, void *pin, size_t len)
{
	void *old;

	pthread_mutex_lock(&g_p11.pin_lock);
	old = op->ctx_pin;
	op->ctx_pin = pin;
	op->ctx_pin_len = len;
	pthread_mutex_unlock(&g_p11.pin_lock);
	tk_secmem_free(&old);
}

/* The key operation takes the PIN (the caller frees it): one use. */
void
tk_p11_op_pin_take(struct p11_op *op, void **pin, size_t *len)
{
	pthread_mutex_lock(&g_p11.pin_lock);
	*pin = op->ctx_pin;
	*len = op->ctx_pin_len;
	op->ctx_pin = NULL;
	op->ctx_pin_len = 0;
	pthread_mutex_unlock(&g_p11.pin_lock);
}

/* C_Logout: no operation of the token's sessions keeps a PIN. */
void
tk_p11_ops_pins_drop_locked(const struct p11_token *t)
{
	for (size_t i = 0; i < g_p11.nsessions; i++) {
		struct p11_session *s = g_p11.sessions[i];

		if (s->tok != t)
			continue;
		pthread_mutex_lock(&g_p11.pin_lock);
		tk_secmem_free(&s->sign.ctx_pin);
		tk_secmem_free(&s->decrypt.ctx_pin);
		pthread_mutex_unlock(&g_p11.pin_lock);
	}
}

void
tk_p11_op_reset(struct p11_op *op)
{
	void *pin;

	EVP_MD_CTX_free(op->mdctx);
	tk_freezero(op->buf, op->buf_cap);
	free(op->label);
	tk_freezero(op->result, op->result_len);
	/* (C_Logout on another session may be wiping the PIN right now) */
	pthread_mutex_lock(&g_p11.pin_lock);
	pin = op->ctx_pin;
	memset(op, 0, sizeof(*op));
	pthread_mutex_unlock(&g_p11.pin_lock);
	tk_secmem_free(&pin);
}

static struct p11_session *
session_find_locked(CK_SESSION_HANDLE h, size_t *idx)
{
	for (size_t i = 0; i < g_p11.nsessions; i++) {
		if (g_p11.sessions[i]->h == h) {
			if (idx != NULL)
				*idx = i;
			return g_p11.sessions[i];
		}
	}
	return NULL;
}

/* Every operation of the session ends (its op_lock held, or nobody else
 * has the session). */
static void
session_ops_end(struct p11_session *s)
{
	tk_p11_op_reset(&s->sign);
	tk_p11_op_reset(&s->verify);
	tk_p11_op_reset(&s->decrypt);
	tk_p11_op_reset(&s->digest);
	tk_p11_op_reset(&s->encrypt);
}

static void
session_free(struct p11_session *s)
{
	bool last;

	session_ops_end(s);
	free(s->find.handles);
	pthread_mutex_destroy(&s->op_lock);
	pthread_mutex_lock(&g_p11.lock);
	last = tk_p11_token_unref_locked(s->tok);
	pthread_mutex_unlock(&g_p11.lock);
	if (last)
		tk_p11_token_free(s->tok);
	free(s);
}

static bool
token_has_sessions_locked(const struct p11_token *t)
{
	for (size_t i = 0; i < g_p11.nsessions; i++)
		if (g_p11.sessions[i]->tok == t)
			return true;
	return false;
}

/* Remove from the table. Returns true when the caller must session_free(). */
static bool
session_close_locked(struct p11_session *s)
{
	size_t i;

	if (s->closed || session_find_locked(s->h, &i) == NULL)
		return false;
	memmove(&g_p11.sessions[i], &g_p11.sessions[i + 1],
	        (g_p11.nsessions - i - 1) * sizeof(g_p11.sessions[0]));
	g_p11.nsessions--;
	s->closed = true;
	tk_p11_session_objects_drop_locked(s->tok, s->h);
	return --s->refs == 0;
}

/* The last session of a token closed: back to the public state. Returns
 * true when the card must be told (user was logged in). */
static bool
token_forget_login_locked(struct p11_token *t)
{
	bool user = t->login == (int)CKU_USER;

	if (token_has_sessions_locked(t) || t->login < 0)
		return false;
	tk_p11_login_set_locked(t, -1);
	return user && !t->removed && !t->detached;
}

/* A session of a token whose card left: while the card may still come back
 * (the slot's lost token, for g_p11.grace_ms) the session stays and answers
 * CKR_DEVICE_REMOVED, or CKR_DEVICE_ERROR while the reader or the PC/SC
 * service is away (the card was not seen leaving). Once the grace time is
 * over the token ends here (CKR_OK: the caller reports the removal once). */
static CK_RV
session_detached_locked(struct p11_session *s, struct p11_token **fr_tok)
{
	struct p11_token *t = s->tok;
	struct p11_slot *sl;

	*fr_tok = NULL;
	if (!tk_p11_lost_expired_locked(t))
		return t->reader_lost ? CKR_DEVICE_ERROR : CKR_DEVICE_REMOVED;
	sl = tk_p11_slot_find_locked(t->slot);
	if (sl != NULL && sl->lost == t) {
		sl->lost = NULL;
		/* drops the slot's reference (s still holds one, so this is
		 * not the last; freed by the caller if it were) */
		if (tk_p11_token_forget_locked(t))
			*fr_tok = t;
	} else {
		t->removed = true;
	}
	return CKR_OK;
}

CK_RV
tk_p11_session_get(CK_SESSION_HANDLE h, struct p11_session **out)
{
	struct p11_session *s;
	struct p11_token *fr_tok = NULL;
	bool fr = false, ops_lost = false;
	CK_RV rv;

	*out = NULL;
	pthread_mutex_lock(&g_p11.lock);
	rv = tk_p11_check_init_locked();
	if (rv != CKR_OK)
		goto out;
	s = session_find_locked(h, NULL);
	if (s == NULL) {
		rv = CKR_SESSION_HANDLE_INVALID;
		goto out;
	}
	if (s->tok->detached && !s->tok->removed) {
		rv = session_detached_locked(s, &fr_tok);
		if (rv != CKR_OK) {
			s->ops_lost = true;
			goto out;
		}
	}
	if (s->tok->removed) {
		/* once; the handle is invalid from now on */
		fr = session_close_locked(s);
		rv = CKR_DEVICE_REMOVED;
		goto out;
	}
	s->refs++;
	g_p11.calls++;
	ops_lost = s->ops_lost;
	s->ops_lost = false;
	*out = s;
out:
	pthread_mutex_unlock(&g_p11.lock);
	if (fr)
		session_free(s);
	tk_p11_token_free(fr_tok);
	if (*out != NULL) {
		tk_p11_login_sync((*out)->tok);
		pthread_mutex_lock(&(*out)->op_lock);
		/* (a C_SignInit after a C_Sign refused while the card was away
		 * answered CKR_OPERATION_ACTIVE for ever: fault row 9, B's
		 * session, after a pcscd restart) */
		if (ops_lost)
			session_ops_end(*out);
	}
	return rv;
}

void
tk_p11_session_put(struct p11_session *s, CK_RV rv)
{
	struct p11_token *junk;
	bool fr;

	if (s == NULL)
		return;
	(void)rv; /* a removal is followed through the slot events (the card may come back) */
	pthread_mutex_unlock(&s->op_lock);
	pthread_mutex_lock(&g_p11.lock);
	fr = --s->refs == 0;
	g_p11.calls--;
	junk = tk_p11_gc_take_locked();
	pthread_cond_broadcast(&g_p11.cond);
	pthread_mutex_unlock(&g_p11.lock);
	if (fr)
		session_free(s);
	tk_p11_token_free(junk);
}

void
tk_p11_sessions_close_slot_locked(CK_SLOT_ID slot)
{
	size_t i = 0;

	while (i < g_p11.nsessions) {
		struct p11_session *s = g_p11.sessions[i];

		if (s->slot != slot) {
			i++;
			continue;
		}
		if (session_close_locked(s)) {
			/* finalize / slot teardown: nobody else holds it */
			session_ops_end(s);
			free(s->find.handles);
			pthread_mutex_destroy(&s->op_lock);
			if (tk_p11_token_unref_locked(s->tok))
				tk_p11_token_free(s->tok);
			free(s);
		}
	}
}

void
tk_p11_sessions_clear_locked(void)
{
	while (g_p11.nsessions > 0)
		tk_p11_sessions_close_slot_locked(g_p11.sessions[0]->slot);
	free(g_p11.sessions);
	g_p11.sessions = NULL;
	g_p11.sessions_cap = 0;
}

CK_RV
tk_p11_C_OpenSession(CK_SLOT_ID slotID, CK_FLAGS flags, CK_VOID_PTR pApplication, CK_NOTIFY Notify,
                     CK_SESSION_HANDLE_PTR phSession)
{
	struct p11_token *t = NULL;
	struct p11_session *s = NULL;
	CK_RV rv;

	rv = tk_p11_enter();
	if (rv != CKR_OK)
		return rv;
	if (phSession == NULL)
		return CKR_ARGUMENTS_BAD;
	if (!(flags & CKF_SERIAL_SESSION))
		return CKR_SESSION_PARALLEL_NOT_SUPPORTED;
	rv = tk_p11_slot_token(slotID, &t);
	if (rv != CKR_OK)
		return rv;
	s = calloc(1, sizeof(*s));
	if (s == NULL) {
		tk_p11_token_put(t);
		return CKR_HOST_MEMORY;
	}
	pthread_mutex_init(&s->op_lock, NULL);
	s->slot = slotID;
	s->flags = flags & (CKF_SERIAL_SESSION | CKF_RW_SESSION);
	s->refs = 1;

	pthread_mutex_lock(&g_p11.lock);
	rv = tk_p11_check_init_locked();
	if (rv != CKR_OK)
		goto out;
	if (!(flags & CKF_RW_SESSION) && t->login == (int)CKU_SO) {
		rv = CKR_SESSION_READ_WRITE_SO_EXISTS;
		goto out;
	}
	if (g_p11.nsessions == g_p11.sessions_cap) {
		size_t cap = g_p11.sessions_cap ? g_p11.sessions_cap * 2 : 16;
		struct p11_session **n = realloc(g_p11.sessions, cap * sizeof(*n));

		if (n == NULL) {
			rv = CKR_HOST_MEMORY;
			goto out;
		}
		g_p11.sessions = n;
		g_p11.sessions_cap = cap;
	}
	s->h = g_p11.next_session++;
	s->tok = t;
	t->refs++; /* the session's own reference */
	g_p11.sessions[g_p11.nsessions++] = s;
	*phSession = s->h;
	s = NULL;
out:
	pthread_mutex_unlock(&g_p11.lock);
	if (s != NULL) {
		pthread_mutex_destroy(&s->op_lock);
		free(s);
	}
	tk_p11_token_put(t);
	return rv;
}

static CK_RV
close_where(bool (*match)(const struct p11_session *, uintptr_t), uintptr_t arg, bool *found)
{
	struct p11_session *gone[32];
	struct p11_token *logout = NULL;
	size_t ngone = 0;
	bool more = true;

	*found = false;
	while (more) {
		more = false;
		ngone = 0;
		pthread_mutex_lock(&g_p11.lock);
		for (size_t i = 0; i < g_p11.nsessions;) {
			struct p11_session *s = g_p11.sessions[i];
			struct p11_token *t = s->tok;

			if (!match(s, arg)) {
				i++;
				continue;
			}
			if (ngone == sizeof(gone) / sizeof(gone[0])) {
				more = true;
				break;
			}
			*found = true;
			/* t stays referenced by s until session_free() */
			if (session_close_locked(s))
				gone[ngone++] = s;
			if (token_forget_login_locked(t) && logout == NULL) {
				logout = t;
				t->refs++;
				g_p11.calls++;
			}
		}
		pthread_mutex_unlock(&g_p11.lock);
		for (size_t i = 0; i < ngone; i++)
			session_free(gone[i]);
	}
	if (logout != NULL) {
		tk_token_logout(tk_p11_tk(logout));
		tk_p11_token_put(logout);
	}
	return CKR_OK;
}

static bool
match_handle(const struct p11_session *s, uintptr_t h)
{
	return s->h == (CK_SESSION_HANDLE)h;
}

static bool
match_slot(const struct p11_session *s, uintptr_t slot)
{
	return s->slot == (CK_SLOT_ID)slot;
}

CK_RV
tk_p11_C_CloseSession(CK_SESSION_HANDLE hSession)
{
	bool found;
	CK_RV rv = tk_p11_enter();

	if (rv != CKR_OK)
		return rv;
	close_where(match_handle, (uintptr_t)hSession, &found);
	return found ? CKR_OK : CKR_SESSION_HANDLE_INVALID;
}

CK_RV
tk_p11_C_CloseAllSessions(CK_SLOT_ID slotID)
{
	bool found, known;
	CK_RV rv;

	tk_p11_slots_first_scan();
	pthread_mutex_lock(&g_p11.lock);
	rv = tk_p11_check_init_locked();
	known = tk_p11_slot_find_locked(slotID) != NULL;
	pthread_mutex_unlock(&g_p11.lock);
	if (rv != CKR_OK)
		return rv;
	if (!known)
		return CKR_SLOT_ID_INVALID;
	close_where(match_slot, (uintptr_t)slotID, &found);
	return CKR_OK;
}

CK_RV
tk_p11_C_GetSessionInfo(CK_SESSION_HANDLE hSession, CK_SESSION_INFO_PTR pInfo)
{
	struct p11_session *s;
	int login;
	CK_RV rv = tk_p11_session_get(hSession, &s);

	if (rv != CKR_OK)
		return rv;
	if (pInfo == NULL) {
		rv = CKR_ARGUMENTS_BAD;
		goto out;
	}
	pthread_mutex_lock(&g_p11.lock);
	login = s->tok->login;
	pthread_mutex_unlock(&g_p11.lock);
	memset(pInfo, 0, sizeof(*pInfo));
	pInfo->slotID = s->slot;
	pInfo->flags = s->flags;
	pInfo->ulDeviceError = 0;
	if (login == (int)CKU_SO)
		pInfo->state = CKS_RW_SO_FUNCTIONS;
	else if (login == (int)CKU_USER)
		pInfo->state =
		        (s->flags & CKF_RW_SESSION) ? CKS_RW_USER_FUNCTIONS : CKS_RO_USER_FUNCTIONS;
	else
		pInfo->state =
		        (s->flags & CKF_RW_SESSION) ? CKS_RW_PUBLIC_SESSION : CKS_RO_PUBLIC_SESSION;
out:
	tk_p11_session_put(s, rv);
	return rv;
}

/* What a C_Login(CKU_USER) answer means for CKF_USER_PIN_COUNT_LOW: a
 * refused PIN sets it until the next successful user login. */
static void
note_user_login(struct p11_token *t, CK_RV rv)
{
	if (rv != CKR_OK && rv != CKR_PIN_INCORRECT)
		return;
	pthread_mutex_lock(&g_p11.lock);
	t->user_pin_refused = rv == CKR_PIN_INCORRECT;
	pthread_mutex_unlock(&g_p11.lock);
}

/* After a refused PIN or PUK, read the retry counters again (no try is
 * spent) so that C_GetTokenInfo shows COUNT_LOW / FINAL_TRY / LOCKED. */
static void
refresh_after(struct p11_token *t, CK_RV rv)
{
	if (rv == CKR_PIN_INCORRECT || rv == CKR_PIN_LOCKED)
		tk_token_refresh_pin(tk_p11_tk(t));
}

static bool
ro_sessions_locked(const struct p11_token *t)
{
	for (size_t i = 0; i < g_p11.nsessions; i++)
		if (g_p11.sessions[i]->tok == t && !(g_p11.sessions[i]->flags & CKF_RW_SESSION))
			return true;
	return false;
}

static CK_RV
check_pin_len(const struct p11_token *t, CK_ULONG len)
{
	size_t min = t->info.pin_min_len > 0 ? t->info.pin_min_len : 1;
	size_t max = t->info.pin_max_len > 0 ? t->info.pin_max_len : 64;

	if (len < min || len > max)
		return CKR_PIN_LEN_RANGE;
	return CKR_OK;
}

/* C_Login with a NULL PIN: the user types it on the reader's PIN pad
 * (CKF_PROTECTED_AUTHENTICATION_PATH). Only for CKU_USER: the PUK has no
 * VERIFY in PIV (C_Login(CKU_SO) keeps it for later calls), and a
 * CKU_CONTEXT_SPECIFIC PIN is verified with its operation, in one card
 * transaction, which a pad entry at C_Login time cannot be. */
static CK_RV
login_pinpad(struct p11_session *s, struct p11_token *t, CK_USER_TYPE user)
{
	tk_token_info_t ti;
	int r, login;
	CK_RV rv = CKR_OK;

	(void)s;
	if (user != CKU_USER)
		return CKR_ARGUMENTS_BAD;
	if (tk_token_info(tk_p11_tk(t), &ti) != TK_OK || !ti.protected_auth_path)
		return CKR_ARGUMENTS_BAD;
	pthread_mutex_lock(&g_p11.lock);
	login = t->login;
	if (login == (int)CKU_USER)
		rv = CKR_USER_ALREADY_LOGGED_IN;
	else if (login == (int)CKU_SO)
		rv = CKR_USER_ANOTHER_ALREADY_LOGGED_IN;
	pthread_mutex_unlock(&g_p11.lock);
	if (rv != CKR_OK)
		return rv;
	r = tk_token_login_pinpad(tk_p11_tk(t), TK_USER_USER);
	if (r == TK_ERR_TIMEOUT || r == TK_ERR_CANCELLED) {
		/* nobody typed, or cancel was pressed: the user's answer */
		tk_log_info("pkcs11: C_Login on the PIN pad: %s", tk_strerror(r));
		return CKR_FUNCTION_CANCELED;
	}
	rv = tk_err_to_ckr(r);
	if (r != TK_OK)
		tk_log_info("pkcs11: C_Login(user) on the PIN pad: %s", tk_strerror(r));
	refresh_after(t, rv);
	note_user_login(t, rv);
	if (r == TK_OK) {
		/* no PIN to keep: it never was on the host */
		pthread_mutex_lock(&g_p11.lock);
		tk_p11_login_set_locked(t, CKU_USER);
		pthread_mutex_unlock(&g_p11.lock);
	}
	return rv;
}

CK_RV
tk_p11_C_Login(CK_SESSION_HANDLE hSession, CK_USER_TYPE userType, CK_UTF8CHAR_PTR pPin,
               CK_ULONG ulPinLen)
{
	struct p11_session *s;
	struct p11_token *t;
	struct p11_op *op = NULL;
	int r, login;
	CK_RV rv = tk_p11_session_get(hSession, &s);

	if (rv != CKR_OK)
		return rv;
	t = s->tok;
	if (pPin == NULL) {
		/* the protected authentication path (a PIN pad), for the user */
		rv = login_pinpad(s, t, userType);
		goto out;
	}
	pthread_mutex_lock(&g_p11.lock);
	login = t->login;
	switch (userType) {
	case CKU_USER:
		if (login == (int)CKU_USER)
			rv = CKR_USER_ALREADY_LOGGED_IN;
		else if (login == (int)CKU_SO)
			rv = CKR_USER_ANOTHER_ALREADY_LOGGED_IN;
		break;
	case CKU_SO:
		if (login == (int)CKU_SO)
			rv = CKR_USER_ALREADY_LOGGED_IN;
		else if (login == (int)CKU_USER)
			rv = CKR_USER_ANOTHER_ALREADY_LOGGED_IN;
		else if (ro_sessions_locked(t))
			rv = CKR_SESSION_READ_ONLY_EXISTS;
		break;
	case CKU_CONTEXT_SPECIFIC:
		if (s->sign.kind != P11_OP_NONE)
			op = &s->sign;
		else if (s->decrypt.kind != P11_OP_NONE)
			op = &s->decrypt;
		else
			rv = CKR_OPERATION_NOT_INITIALIZED;
		break;
	default:
		rv = CKR_USER_TYPE_INVALID;
		break;
	}
	pthread_mutex_unlock(&g_p11.lock);
	if (rv != CKR_OK)
		goto out;
	/* CKR_PIN_LEN_RANGE is not a C_Login answer: a PIN the card could never
	 * take is simply wrong, refused without sending VERIFY (no try spent) */
	if (check_pin_len(t, ulPinLen) != CKR_OK) {
		rv = CKR_PIN_INCORRECT;
		if (userType == CKU_USER)
			note_user_login(t, rv);
		goto out;
	}

	switch (userType) {
	case CKU_USER:
		r = tk_token_login(tk_p11_tk(t), TK_USER_USER, pPin, ulPinLen);
		rv = tk_err_to_ckr(r);
		if (r != TK_OK)
			tk_log_info("pkcs11: C_Login(user): %s", tk_strerror(r));
		refresh_after(t, rv);
		note_user_login(t, rv);
		if (r == TK_OK) {
			void *kept = NULL;

			/* opt-in: kept (secret memory) while logged in */
			if (g_p11.pin_cache && tk_secmem_dup(pPin, ulPinLen, &kept) != TK_OK)
				tk_log_warn("pkcs11: C_Login: the PIN cannot be kept");
			pthread_mutex_lock(&g_p11.lock);
			tk_p11_login_set_locked(t, CKU_USER);
			t->user_pin = kept;
			t->user_pin_len = kept != NULL ? ulPinLen : 0;
			pthread_mutex_unlock(&g_p11.lock);
		}
		break;
	case CKU_SO: {
		void *kept = NULL;

		if (ulPinLen > P11_PIN_MAX) {
			rv = CKR_PIN_INCORRECT;
			break;
		}
		if (tk_secmem_dup(pPin, ulPinLen, &kept) != TK_OK) {
			rv = CKR_HOST_MEMORY;
			break;
		}
		pthread_mutex_lock(&g_p11.lock);
		if (t->login < 0) {
			tk_p11_login_set_locked(t, CKU_SO);
			t->so_pin = kept;
			t->so_pin_len = ulPinLen;
			kept = NULL;
		} else {
			rv = CKR_USER_ANOTHER_ALREADY_LOGGED_IN;
		}
		pthread_mutex_unlock(&g_p11.lock);
		tk_secmem_free(&kept);
		break;
	}
	default: /* CKU_CONTEXT_SPECIFIC */
		/* Checked on the card now (a wrong PIN is this call's error), kept
		 * for the operation, verified again with it. */
		r = tk_token_login(tk_p11_tk(t), TK_USER_CONTEXT, pPin, ulPinLen);
		rv = tk_err_to_ckr(r);
		refresh_after(t, rv);
		if (r == TK_OK) {
			void *copy = NULL;

			r = tk_secmem_dup(pPin, ulPinLen, &copy);
			rv = tk_err_to_ckr(r);
			if (r == TK_OK)
				tk_p11_op_pin_set(op, copy, ulPinLen);
		}
		break;
	}
out:
	tk_p11_session_put(s, rv);
	return rv;
}

/* PIV has no user names: the name is ignored. */
/* For the broker (tools/tokenkitd), whose clients are one application to
 * this module: a client's C_Login(CKU_USER) while another client keeps the
 * token logged in. Its PIN is verified on the card all the same (a wrong
 * one answers as C_Login would, and the card then decides whether the
 * login lasts: the module follows it at the next key operation); the
 * module's login stays as it is. */
CK_RV
tk_p11_login_verify(CK_SESSION_HANDLE hSession, CK_UTF8CHAR_PTR pPin, CK_ULONG ulPinLen)
{
	struct p11_session *s;
	struct p11_token *t;
	int r;
	CK_RV rv = tk_p11_session_get(hSession, &s);

	if (rv != CKR_OK)
		return rv;
	t = s->tok;
	if (pPin == NULL) {
		rv = CKR_ARGUMENTS_BAD; /* (a PIN pad: not through the broker) */
	} else if (check_pin_len(t, ulPinLen) != CKR_OK) {
		rv = CKR_PIN_INCORRECT;
		note_user_login(t, rv);
	} else {
		r = tk_token_login(tk_p11_tk(t), TK_USER_USER, pPin, ulPinLen);
		rv = tk_err_to_ckr(r);
		refresh_after(t, rv);
		note_user_login(t, rv);
	}
	tk_p11_session_put(s, rv);
	return rv;
}

CK_RV
tk_p11_C_LoginUser(CK_SESSION_HANDLE hSession, CK_USER_TYPE userType, CK_UTF8CHAR_PTR pPin,
                   CK_ULONG ulPinLen, CK_UTF8CHAR_PTR pUsername, CK_ULONG ulUsernameLen)
{
	if (pUsername == NULL && ulUsernameLen > 0)
		return tk_p11_enter() != CKR_OK ? CKR_CRYPTOKI_NOT_INITIALIZED : CKR_ARGUMENTS_BAD;
	return tk_p11_C_Login(hSession, userType, pPin, ulPinLen);
}

CK_RV
tk_p11_C_Logout(CK_SESSION_HANDLE hSession)
{
	struct p11_session *s;
	int login;
	CK_RV rv = tk_p11_session_get(hSession, &s);

	if (rv != CKR_OK)
		return rv;
	pthread_mutex_lock(&g_p11.lock);
	login = s->tok->login;
	tk_p11_login_set_locked(s->tok, -1);
	tk_p11_ops_pins_drop_locked(s->tok);
	pthread_mutex_unlock(&g_p11.lock);
	if (login < 0)
		rv = CKR_USER_NOT_LOGGED_IN;
	else if (login == (int)CKU_USER)
		rv = tk_err_to_ckr(tk_token_logout(tk_p11_tk(s->tok)));
	tk_p11_session_put(s, rv);
	return rv;
}

/* C_SetPIN with both PINs NULL on a token with a protected authentication
 * path: the old and the new PIN are typed on the reader's PIN pad (PKCS#11
 * 3.0, 5.6). The user's PIN, or the SO's when the SO is logged in. A kept
 * PIN of that user no longer holds: it is dropped (the new one never was
 * on the host), so C_InitPIN then answers CKR_USER_NOT_LOGGED_IN and a
 * kept user PIN is asked for again. */
static CK_RV
setpin_pad(struct p11_session *s, struct p11_token *t)
{
	tk_token_info_t ti;
	void *stale = NULL;
	bool so;
	int r;
	CK_RV rv;

	if (tk_token_info(tk_p11_tk(t), &ti) != TK_OK || !ti.protected_auth_path)
		return CKR_ARGUMENTS_BAD;
	if (!(s->flags & CKF_RW_SESSION))
		return CKR_SESSION_READ_ONLY;
	pthread_mutex_lock(&g_p11.lock);
	so = t->login == (int)CKU_SO;
	pthread_mutex_unlock(&g_p11.lock);
	r = tk_token_change_pin_pad(tk_p11_tk(t), so ? TK_USER_SO : TK_USER_USER);
	if (r == TK_ERR_TIMEOUT || r == TK_ERR_CANCELLED) {
		/* nobody typed, or cancel was pressed: the user's answer (as
		 * C_Login on the pad) */
		tk_log_info("pkcs11: C_SetPIN on the PIN pad: %s", tk_strerror(r));
		return CKR_FUNCTION_CANCELED;
	}
	if (r == TK_ERR_NOT_SUPPORTED) {
		/* the pad can verify but not change: NULL PINs are no PINs */
		tk_log_info("pkcs11: C_SetPIN: the PIN pad cannot change PINs");
		return CKR_ARGUMENTS_BAD;
	}
	rv = tk_err_to_ckr(r);
	if (r != TK_OK)
		tk_log_info("pkcs11: C_SetPIN on the PIN pad: %s", tk_strerror(r));
	refresh_after(t, rv);
	if (r == TK_OK) {
		pthread_mutex_lock(&g_p11.lock);
		if (so && t->login == (int)CKU_SO) {
			stale = t->so_pin;
			t->so_pin = NULL;
			t->so_pin_len = 0;
		} else if (!so && t->user_pin != NULL) {
			stale = t->user_pin;
			t->user_pin = NULL;
			t->user_pin_len = 0;
		}
		pthread_mutex_unlock(&g_p11.lock);
		tk_secmem_free(&stale);
	}
	return rv;
}

CK_RV
tk_p11_C_SetPIN(CK_SESSION_HANDLE hSession, CK_UTF8CHAR_PTR pOldPin, CK_ULONG ulOldLen,
                CK_UTF8CHAR_PTR pNewPin, CK_ULONG ulNewLen)
{
	struct p11_session *s;
	struct p11_token *t;
	bool so;
	int r;
	CK_RV rv = tk_p11_session_get(hSession, &s);

	if (rv != CKR_OK)
		return rv;
	t = s->tok;
	if (pOldPin == NULL && pNewPin == NULL && ulOldLen == 0 && ulNewLen == 0) {
		/* the protected authentication path (a PIN pad) */
		rv = setpin_pad(s, t);
		goto out;
	}
	if (pOldPin == NULL || pNewPin == NULL) {
		rv = CKR_ARGUMENTS_BAD;
		goto out;
	}
	if (!(s->flags & CKF_RW_SESSION)) {
		rv = CKR_SESSION_READ_ONLY;
		goto out;
	}
	rv = check_pin_len(t, ulNewLen);
	if (rv != CKR_OK)
		goto out;
	if (ulNewLen > P11_PIN_MAX) {
		rv = CKR_PIN_LEN_RANGE;
		goto out;
	}
	pthread_mutex_lock(&g_p11.lock);
	so = t->login == (int)CKU_SO;
	pthread_mutex_unlock(&g_p11.lock);
	r = tk_token_change_pin(tk_p11_tk(t), so ? TK_USER_SO : TK_USER_USER, pOldPin, ulOldLen,
	                        pNewPin, ulNewLen);
	rv = tk_err_to_ckr(r);
	refresh_after(t, rv);
	if (r == TK_OK && so) {
		void *kept = NULL;

		if (tk_secmem_dup(pNewPin, ulNewLen, &kept) != TK_OK)
			kept = NULL; /* C_InitPIN then answers CKR_USER_NOT_LOGGED_IN */
		pthread_mutex_lock(&g_p11.lock);
		if (t->login == (int)CKU_SO) {
			void *old = t->so_pin;

			t->so_pin = kept;
			t->so_pin_len = kept != NULL ? ulNewLen : 0;
			kept = old;
		}
		pthread_mutex_unlock(&g_p11.lock);
		tk_secmem_free(&kept);
	} else if (r == TK_OK) {
		/* a kept user PIN (opt-in) follows the change */
		void *kept = NULL;

		if (g_p11.pin_cache && tk_secmem_dup(pNewPin, ulNewLen, &kept) != TK_OK)
			kept = NULL;
		pthread_mutex_lock(&g_p11.lock);
		if (t->user_pin != NULL && t->login == (int)CKU_USER) {
			tk_secmem_free(&t->user_pin);
			t->user_pin = kept;
			t->user_pin_len = kept != NULL ? ulNewLen : 0;
			kept = NULL;
		}
		pthread_mutex_unlock(&g_p11.lock);
		tk_secmem_free(&kept);
	}
out:
	tk_p11_session_put(s, rv);
	return rv;
}

CK_RV
tk_p11_C_InitPIN(CK_SESSION_HANDLE hSession, CK_UTF8CHAR_PTR pPin, CK_ULONG ulPinLen)
{
	struct p11_session *s;
	struct p11_token *t;
	uint8_t puk[P11_PIN_MAX];
	size_t puk_len = 0;
	CK_RV rv = tk_p11_session_get(hSession, &s);

	if (rv != CKR_OK)
		return rv;
	t = s->tok;
	pthread_mutex_lock(&g_p11.lock);
	if (t->login != (int)CKU_SO || !(s->flags & CKF_RW_SESSION) || t->so_pin == NULL) {
		rv = CKR_USER_NOT_LOGGED_IN;
	} else {
		memcpy(puk, t->so_pin, t->so_pin_len);
		puk_len = t->so_pin_len;
	}
	pthread_mutex_unlock(&g_p11.lock);
	if (rv != CKR_OK)
		goto out;
	if (pPin == NULL) {
		rv = CKR_ARGUMENTS_BAD;
		goto out;
	}
	rv = check_pin_len(t, ulPinLen);
	if (rv != CKR_OK)
		goto out;
	rv = tk_err_to_ckr(tk_token_unblock_pin(tk_p11_tk(t), puk, puk_len, pPin, ulPinLen));
	refresh_after(t, rv);
	/* The PUK of C_Login(CKU_SO) is checked only here; C_InitPIN may not
	 * answer CKR_PIN_INCORRECT/CKR_PIN_LOCKED (those are about the SO's
	 * login, not the new PIN): the SO was, in effect, not logged in. */
	if (rv == CKR_PIN_INCORRECT || rv == CKR_PIN_LOCKED)
		rv = CKR_USER_NOT_LOGGED_IN;
out:
	tk_wipe(puk, sizeof(puk));
	tk_p11_session_put(s, rv);
	return rv;
}
