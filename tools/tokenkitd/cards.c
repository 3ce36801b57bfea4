/* tokenkitd: raw card sessions (BP_CARD_OPEN, BP_CARD_IO; pkcs11/bproto.h)
 * for the tokenkit tool's provisioning commands (piv, openpgp, apdu,
 * attest), so they reach a reader the broker holds (a direct-USB reader is
 * one process's) without stopping the broker.
 *
 * A session is its connection's: it opens the card in one reader and ends
 * with the connection (a tool killed mid-way leaves nothing held). A
 * transaction (BP_CARD_BEGIN .. BP_CARD_END) takes the card's queue turn,
 * as every application's card call does, and the token's card I/O (no
 * revalidation or object read of the broker's own comes in between); a
 * transmit outside a transaction takes both for itself alone. So no other
 * program's command lands between two of the tool's, as with a PC/SC
 * transaction. When a transaction that sent commands ends, and when the
 * session does, the slot's token is brought up to date with the card
 * (tk_p11_token_recheck: what the tool wrote shows at once). While it holds them, the connection
 * must send its next request within CARD_IDLE_MS (serve.c drops it otherwise). Other programs'
 * calls on the card wait their turn: their own deadlines bound them. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <tokenkit/card.h>
#include <tokenkit/consent.h>
#include <tokenkit/err.h>
#include <tokenkit/log.h>
#include <tokenkit/mem.h>
#include <tokenkit/slot.h>

#include "bproto.h"
#include "broker.h"
#include "p11.h"
#include "token_priv.h"

struct raw_card {
	tk_card_t *card;
	CK_SLOT_ID slot;
	struct p11_token *tok; /* the slot's token when it had one at open (its
	                        * reference: g_p11.calls, so its tk tokens stay) */
	tk_token_t *held;      /* its tk token whose card I/O is held */
	struct queue *q;       /* the queue turn, while held */
	bool in_tx;            /* a transaction (BP_CARD_BEGIN) holds it */
	bool sent;             /* commands went to the card since the last recheck */
	pid_t pid;
};

/* With consent on (tokenkitd --consent-prompt / --consent-policy), a
 * program's own commands to a card reach every key on it: the program is
 * asked for as for a key's first use, under the key id CARD_KEY_ID (no card
 * key has a two-byte id: PIV's and OpenPGP's are one byte) and the token's
 * serial (a card no driver takes: its ATR), so `tokenkit consent list`
 * shows the decision and `consent reset` forgets it. CKR_OK, or
 * CKR_FUNCTION_REJECTED. */
#define CARD_KEY_ID "ca4d"

static CK_RV
card_consent(const struct consent_key *who, CK_SLOT_ID slot, tk_card_t *card)
{
	struct consent_key k = *who;
	CK_TOKEN_INFO ti;
	char serial[TK_CONSENT_TOKEN_MAX + 1], label[TK_CONSENT_TOKEN_MAX + 1];
	const uint8_t *atr;
	size_t atr_len = 0;
	bool once = false;

	if (!g_conf.consent)
		return CKR_OK;
	serial[0] = '\0';
	snprintf(label, sizeof(label), "%s", tk_card_reader_name(card));
	if (C_GetTokenInfo(slot, &ti) == CKR_OK) {
		broker_trim(serial, ti.serialNumber, sizeof(ti.serialNumber));
		broker_trim(label, ti.label, sizeof(ti.label));
	}
	if (serial[0] == '\0') { /* no token: the card by its ATR */
		atr = tk_card_atr(card, &atr_len);
		memcpy(serial, "atr-", 4);
		broker_hex(atr, atr_len, serial + 4, sizeof(serial) - 4);
	}
	k.token_serial = serial;
	k.token_label = label;
	k.key_id = CARD_KEY_ID;
	k.key_label = "the card itself: the program's own commands";
	return broker_consent_check(&k, &once);
}

CK_RV
broker_card_open(struct raw_card **out, const struct consent_key *who, struct bp_r *r,
                 struct bp_w *w, bool *bad)
{
	size_t nl = 0;
	const uint8_t *nb = bp_get_b(r, &nl, false, NULL);
	char name[256];
	tk_slotmgr_t *mgr = broker_manager();
	tk_slot_info_t info;
	tk_card_caps_t caps;
	struct raw_card *rc;
	const uint8_t *atr;
	size_t atr_len = 0;
	uint32_t id;
	CK_RV rv;
	int e;

	if (!bp_r_done(r) || !broker_reader_arg(nb, nl, name, sizeof(name))) {
		*bad = true;
		return CKR_ARGUMENTS_BAD;
	}
	if (*out != NULL) /* one card per connection */
		return CKR_FUNCTION_FAILED;
	if (mgr == NULL)
		return CKR_CRYPTOKI_NOT_INITIALIZED;
	if (tk_slotmgr_find(mgr, name, &id) != TK_OK || tk_slotmgr_info(mgr, id, &info) != TK_OK)
		return CKR_SLOT_ID_INVALID;
	if ((rc = calloc(1, sizeof(*rc))) == NULL)
		return CKR_HOST_MEMORY;
	rc->slot = id;
	rc->pid = who->pid;
	if ((e = tk_slotmgr_card(mgr, id, &rc->card)) != TK_OK) {
		free(rc);
		bp_put_u(w, broker_err(e));
		return w->ok ? CKR_OK : CKR_HOST_MEMORY;
	}
	if ((rv = card_consent(who, id, rc->card)) != CKR_OK) {
		tk_card_unref(&rc->card);
		free(rc);
		return rv;
	}
	/* the token's reference now, outside any hold (its lock order) */
	if (tk_p11_slot_token(id, &rc->tok) != CKR_OK)
		rc->tok = NULL;
	*out = rc;
	tk_card_caps(rc->card, &caps);
	atr = tk_card_atr(rc->card, &atr_len);
	bp_put_u(w, broker_err(TK_OK));
	bp_put_u(w, id);
	bp_put_b(w, info.reader, strlen(info.reader));
	bp_put_b(w, atr, atr_len);
	bp_put_u(w, info.protocol >= 0 && info.protocol <= 1 ? (uint64_t)info.protocol + 1 : 0);
	bp_put_u(w, caps.extended_apdu);
	bp_put_u(w, caps.max_cmd);
	bp_put_u(w, caps.max_resp);
	bp_put_u(w, caps.pin_pad_verify);
	bp_put_u(w, caps.pin_pad_modify);
	tk_log_info("tokenkitd: pid %ld opened the card in %s for its own commands", (long)who->pid,
	            info.reader);
	return w->ok ? CKR_OK : CKR_HOST_MEMORY;
}

/* The card's queue turn and the token's card I/O: what a transaction
 * holds. */
static void
hold(struct raw_card *rc)
{
	rc->q = broker_queue_enter(rc->slot);
	/* (the token's tk token changes when its card comes back after a
	 * service restart: the one held is the one let go; the reference
	 * taken at open keeps it) */
	rc->held = rc->tok != NULL ? tk_p11_tk(rc->tok) : NULL;
	if (rc->held != NULL)
		tk_token_io_hold(rc->held);
}

static void
release(struct raw_card *rc)
{
	if (rc->held != NULL)
		tk_token_io_release(rc->held);
	rc->held = NULL;
	broker_queue_leave(rc->q);
	rc->q = NULL;
}

/* After the program's commands, the broker's token shows what the card
 * now holds (a key or certificate it wrote), before the answer that ends
 * them: the program's next call through the module sees it. */
static void
recheck(struct raw_card *rc)
{
	if (!rc->sent || rc->tok == NULL)
		return;
	rc->sent = false;
	tk_p11_token_recheck(rc->tok);
}

bool
broker_card_held(const struct raw_card *rc)
{
	return rc != NULL && rc->in_tx;
}

/* BP_CARD_PINPAD's [op, seconds, format, block, length format, min, max,
 * old offset, new offset, confirm] into *p (its apdu not set). */
static bool
get_pinpad(struct bp_r *r, tk_card_pinpad_t *p)
{
	struct bp_r a = bp_get_sub(r);
	uint64_t v[10];

	if (a.n != 10)
		return false;
	for (size_t i = 0; i < 10; i++)
		if ((v[i] = bp_get_u(&a)) > 0xFF)
			return false;
	if (!bp_r_done(&a) || v[0] > TK_PINPAD_MODIFY)
		return false;
	*p = (tk_card_pinpad_t){.op = (int)v[0],
	                        .timeout_s = (uint8_t)v[1],
	                        .format = (uint8_t)v[2],
	                        .block = (uint8_t)v[3],
	                        .length_format = (uint8_t)v[4],
	                        .min_len = (uint8_t)v[5],
	                        .max_len = (uint8_t)v[6],
	                        .offset_old = (uint8_t)v[7],
	                        .offset_new = (uint8_t)v[8],
	                        .confirm = (uint8_t)v[9]};
	return true;
}

/* The longest a tool may have a command take: key generation on a slow
 * card (the tool's own limit is 300 s). */
#define CARD_MAX_TIMEOUT_MS 600000

CK_RV
broker_card_io(struct raw_card *rc, struct bp_r *r, struct bp_w *w, bool *bad)
{
	uint64_t op = bp_get_u(r);
	size_t cl = 0;
	bool none = false;
	const uint8_t *cmd = bp_get_b(r, &cl, true, &none);
	uint64_t cap = bp_get_u(r), tmo = bp_get_u(r);
	bool sends = op == BP_CARD_TRANSMIT || op == BP_CARD_PINPAD;
	tk_card_pinpad_t pad = {0};
	uint8_t *resp = NULL;
	size_t n = 0;
	int e = TK_OK;

	if (op == BP_CARD_PINPAD && !get_pinpad(r, &pad))
		r->ok = false;
	if (!bp_r_done(r) || op < BP_CARD_TRANSMIT || op > BP_CARD_PINPAD || sends == none ||
	    cap > BP_MAX_BYTES || tmo == 0 || tmo > CARD_MAX_TIMEOUT_MS) {
		*bad = true;
		return CKR_ARGUMENTS_BAD;
	}
	if (rc == NULL)
		return CKR_FUNCTION_FAILED; /* no BP_CARD_OPEN first */
	switch (op) {
	case BP_CARD_TRANSMIT:
	case BP_CARD_PINPAD:
		if ((resp = malloc(cap > 0 ? cap : 1)) == NULL)
			return CKR_HOST_MEMORY;
		if (!rc->in_tx)
			hold(rc);
		if (op == BP_CARD_TRANSMIT) {
			e = tk_card_transmit(rc->card, cmd, cl, resp, cap, &n, (int)tmo);
		} else {
			pad.apdu = cmd;
			pad.apdu_len = cl;
			e = tk_card_pinpad(rc->card, &pad, resp, cap, &n);
		}
		rc->sent = true;
		if (!rc->in_tx)
			release(rc);
		break;
	case BP_CARD_BEGIN:
		if (rc->in_tx) {
			e = TK_ERR_STATE;
			break;
		}
		hold(rc);
		if ((e = tk_card_begin(rc->card)) == TK_OK)
			rc->in_tx = true;
		else
			release(rc);
		break;
	case BP_CARD_END:
		if (!rc->in_tx) {
			e = TK_ERR_STATE;
			break;
		}
		e = tk_card_end(rc->card);
		rc->in_tx = false;
		release(rc);
		recheck(rc);
		break;
	case BP_CARD_RESET_WARM:
	case BP_CARD_RESET_COLD:
		if (!rc->in_tx)
			hold(rc);
		e = tk_card_reset(rc->card, op == BP_CARD_RESET_COLD);
		if (!rc->in_tx)
			release(rc);
		break;
	default: /* BP_CARD_STATUS */
		e = tk_card_present(rc->card) ? TK_OK : TK_ERR_CARD_REMOVED;
		break;
	}
	bp_put_u(w, broker_err(e));
	if (e == TK_OK && sends)
		bp_put_b(w, resp, n);
	else
		bp_put_null(w);
	tk_freezero(resp, cap > 0 ? cap : 1); /* (it may hold what the card decrypted) */
	return w->ok ? CKR_OK : CKR_HOST_MEMORY;
}

void
broker_card_close(struct raw_card **rcp)
{
	struct raw_card *rc = *rcp;

	if (rc == NULL)
		return;
	*rcp = NULL;
	if (rc->in_tx) {
		(void)tk_card_end(rc->card);
		release(rc);
	}
	recheck(rc);
	if (rc->tok != NULL)
		tk_p11_token_put(rc->tok);
	tk_log_info("tokenkitd: pid %ld closed the card in %s", (long)rc->pid,
	            tk_card_reader_name(rc->card));
	tk_card_unref(&rc->card);
	free(rc);
}
