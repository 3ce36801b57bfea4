/* tokenkit PIV driver: VERIFY, retry counters, CHANGE REFERENCE DATA and
 * RESET RETRY COUNTER. None of these is ever sent twice on our own: a PIN
 * command that failed in transit is reported, not repeated (it may have
 * counted a try). The one exception is a command refused before it reached
 * the card because another program had reset it (TK_ERR_CARD_RESET, see
 * tk_card_transmit; pcsc-lite checks the reader's state before it
 * transmits): the applet is selected again and the command sent once more,
 * which counts a try only once. PIN bytes live only in stack buffers that
 * are wiped. */
#include <string.h>

#include <tokenkit/apdu.h>
#include <tokenkit/err.h>
#include <tokenkit/log.h>
#include <tokenkit/mem.h>

#include "piv.h"

static uint8_t
user_ref(const piv_t *p, int user)
{
	if (user == TK_USER_SO)
		return PIV_REF_PUK;
	return p->disc.global_pin_primary ? PIV_REF_GLOBAL_PIN : PIV_REF_PIN;
}

/* PIN padded with FF to 8 bytes. */
static int
pad_pin(const uint8_t *pin, size_t len, size_t min, uint8_t out[PIV_PIN_MAX])
{
	memset(out, 0xFF, PIV_PIN_MAX);
	if (pin == NULL || len < min || len > PIV_PIN_MAX)
		return TK_ERR_INVALID_ARG;
	memcpy(out, pin, len);
	return TK_OK;
}

static int
send_secret(piv_t *p, uint8_t ins, uint8_t ref, const uint8_t *data, size_t len, uint16_t *sw)
{
	tk_apdu_t a = {0x00, ins, 0x00, ref, data, len, 0};
	uint8_t resp[16];
	size_t n = 0;
	int r;

	if ((r = piv_begin(p)) != TK_OK)
		return r;
	/* (again after a reset only: the file's comment) */
	r = piv_cmd(p, &a, true, resp, sizeof(resp), &n, sw);
	piv_end(p);
	return r;
}

/* VERIFY with P1 = FF and no data resets the PIN's verified state
 * (SP 800-73-4 part 2, 3.2.1). Cards without it are left as they are. */
static int
pin_logout(piv_t *p)
{
	tk_apdu_t a = {0x00, 0x20, 0xFF, PIV_REF_PIN, NULL, 0, 0};
	uint8_t resp[16];
	size_t n = 0;
	uint16_t sw = 0;
	int r;

	if ((r = piv_begin(p)) != TK_OK)
		return r;
	a.p2 = user_ref(p, TK_USER_USER);
	r = piv_cmd(p, &a, false, resp, sizeof(resp), &n, &sw);
	piv_end(p);
	if (r == TK_OK && sw != 0x9000)
		tk_log_debug("piv: VERIFY reset: SW %04X", sw);
	return r;
}

int
piv_pin_verify(void *state, int user, const uint8_t *pin, size_t pin_len, int *retries)
{
	piv_t *p = state;
	uint8_t buf[2 * PIV_PIN_MAX];
	uint16_t sw = 0;
	int r;

	*retries = -1;
	if (user != TK_USER_USER && user != TK_USER_CONTEXT && user != TK_USER_SO)
		return TK_ERR_INVALID_ARG;
	if (pin == NULL)
		return user == TK_USER_SO ? TK_OK : pin_logout(p);
	if ((r = pad_pin(pin, pin_len, PIV_PIN_MIN, buf)) != TK_OK)
		goto out;
	if (user == TK_USER_SO) {
		/* PIV has no VERIFY for the PUK. CHANGE REFERENCE DATA from the
		 * PUK to itself checks it with the card's own counting (a wrong
		 * PUK costs a try, as a VERIFY would) and changes nothing. */
		memcpy(buf + PIV_PIN_MAX, buf, PIV_PIN_MAX);
		r = send_secret(p, 0x24, PIV_REF_PUK, buf, sizeof(buf), &sw);
	} else {
		r = send_secret(p, 0x20, user_ref(p, user), buf, PIV_PIN_MAX, &sw);
	}
	if (r != TK_OK)
		goto out;
	r = tk_err_from_pin_sw(sw, retries);
	if (r != TK_OK)
		tk_log_debug("piv: %s: %s (retries %d)",
		             user == TK_USER_SO ? "PUK check" : "VERIFY", tk_strerror(r), *retries);
out:
	tk_wipe(buf, sizeof(buf));
	return r;
}

/* One command with PINs typed on the reader's pad (req: the template and
 * the PIN format), the card's answer mapped as a typed PIN's would be. */
static int
pad_exchange(piv_t *p, const tk_card_pinpad_t *req, const char *what, int *retries)
{
	uint8_t resp[16];
	size_t n = 0;
	uint16_t sw;
	int r;

	if ((r = piv_begin(p)) != TK_OK)
		return r;
	r = tk_card_pinpad(p->card, req, resp, sizeof(resp), &n);
	piv_end(p);
	if (r != TK_OK) {
		tk_log_debug("piv: %s on the PIN pad: %s", what, tk_strerror(r));
		return r;
	}
	sw = (uint16_t)(resp[n - 2] << 8 | resp[n - 1]);
	r = tk_err_from_pin_sw(sw, retries);
	if (r != TK_OK)
		tk_log_debug("piv: %s on the PIN pad: %s (retries %d)", what, tk_strerror(r),
		             *retries);
	return r;
}

/* The command template and PIN format of both pad commands: INS ins for
 * reference ref with nblocks PIN blocks of 8 bytes, padded with FF; the
 * reader puts each PIN's digits as ASCII at the start of its block
 * (SP 800-73-4 part 2, 3.2.1 and 3.2.2; bmFormatString 82h: units of
 * bytes, position 0, left justified, ASCII; bmPINBlockString 08h: no
 * length field, an 8-byte block; PINs of 6 to 8 digits). */
static void
pad_template(tk_card_pinpad_t *req, uint8_t ins, uint8_t ref, size_t nblocks,
             uint8_t apdu[5 + 2 * PIV_PIN_MAX])
{
	apdu[0] = 0x00;
	apdu[1] = ins;
	apdu[2] = 0x00;
	apdu[3] = ref;
	apdu[4] = (uint8_t)(nblocks * PIV_PIN_MAX);
	memset(apdu + 5, 0xFF, nblocks * PIV_PIN_MAX);
	memset(req, 0, sizeof(*req));
	req->op = nblocks == 2 ? TK_PINPAD_MODIFY : TK_PINPAD_VERIFY;
	req->timeout_s = PIV_PINPAD_TIMEOUT_S;
	req->format = 0x82;
	req->block = PIV_PIN_MAX;
	req->length_format = 0x00;
	req->min_len = PIV_PIN_MIN;
	req->max_len = PIV_PIN_MAX;
	req->apdu = apdu;
	req->apdu_len = 5 + nblocks * PIV_PIN_MAX;
}

/* VERIFY with the PIN typed on the reader's pad (SP 800-73-4 part 2,
 * 3.2.1: 00 20 00 ref, one block). The PUK has no VERIFY in PIV. */
int
piv_pin_verify_pad(void *state, int user, int *retries)
{
	piv_t *p = state;
	uint8_t apdu[5 + 2 * PIV_PIN_MAX];
	tk_card_pinpad_t req;

	*retries = -1;
	if (user != TK_USER_USER && user != TK_USER_CONTEXT)
		return TK_ERR_NOT_SUPPORTED;
	pad_template(&req, 0x20, user_ref(p, user), 1, apdu);
	return pad_exchange(p, &req, "VERIFY", retries);
}

/* CHANGE REFERENCE DATA with both PINs typed on the reader's pad
 * (SP 800-73-4 part 2, 3.2.2: 00 24 00 ref, Lc 16, the old PIN's block at
 * offset 0 of the data and the new one's at offset 8). bConfirmPIN 03h:
 * the reader asks for the current PIN, then the new one twice (CCID 1.1,
 * 6.1.11.7). User PIN or PUK. */
int
piv_pin_change_pad(void *state, int user, int *retries)
{
	piv_t *p = state;
	uint8_t apdu[5 + 2 * PIV_PIN_MAX];
	tk_card_pinpad_t req;

	*retries = -1;
	if (user != TK_USER_USER && user != TK_USER_SO)
		return TK_ERR_NOT_SUPPORTED;
	pad_template(&req, 0x24, user_ref(p, user), 2, apdu);
	req.offset_old = 0;
	req.offset_new = PIV_PIN_MAX;
	req.confirm = 0x03;
	return pad_exchange(p, &req, "CHANGE REFERENCE DATA", retries);
}

/* Empty VERIFY: 63Cx tells the tries left without spending one, 9000 that
 * the PIN is verified now. The PUK has no such query in PIV; Yubico's
 * metadata command (00 F7 00 81) tells its counter where the card has it. */
int
piv_pin_status(void *state, int user, tk_drv_pin_status_t *st)
{
	piv_t *p = state;
	uint8_t resp[256];
	size_t n = 0;
	uint16_t sw = 0;
	int r, retries;

	st->retries = -1;
	st->max_retries = -1;
	st->verified = false;
	st->locked = false;
	if ((r = piv_begin(p)) != TK_OK)
		return r;
	if (user == TK_USER_SO) {
		tk_apdu_t a = {0x00, 0xF7, 0x00, PIV_REF_PUK, NULL, 0, 256};
		piv_metadata_t md;

		if (p->meta_supported == 0)
			goto out;
		if ((r = piv_cmd(p, &a, true, resp, sizeof(resp), &n, &sw)) != TK_OK)
			goto out;
		if (sw != 0x9000 || piv_parse_metadata(resp, n, &md) != TK_OK)
			goto out;
		if (md.has_retries) {
			st->retries = md.retries_left;
			st->max_retries = md.retries_total;
			st->locked = md.retries_left == 0;
		}
		piv_metadata_clear(&md);
	} else {
		tk_apdu_t a = {0x00, 0x20, 0x00, user_ref(p, user), NULL, 0, 0};

		if ((r = piv_cmd(p, &a, true, resp, sizeof(resp), &n, &sw)) != TK_OK)
			goto out;
		r = tk_err_from_pin_sw(sw, &retries);
		if (r == TK_OK) {
			st->verified = true;
		} else if (r == TK_ERR_PIN_INCORRECT || r == TK_ERR_PIN_LOCKED) {
			st->retries = retries;
			st->locked = r == TK_ERR_PIN_LOCKED;
			r = TK_OK;
		} else {
			tk_log_debug("piv: PIN status: SW %04X", sw);
			r = TK_OK; /* the card does not say: unknown */
		}
	}
out:
	piv_end(p);
	return r;
}

int
piv_pin_change(void *state, int user, const uint8_t *old_pin, size_t old_len,
               const uint8_t *new_pin, size_t new_len)
{
	piv_t *p = state;
	uint8_t buf[2 * PIV_PIN_MAX];
	uint16_t sw = 0;
	int r, retries;

	if (user != TK_USER_USER && user != TK_USER_SO)
		return TK_ERR_INVALID_ARG;
	if ((r = pad_pin(old_pin, old_len, PIV_PIN_MIN, buf)) != TK_OK ||
	    (r = pad_pin(new_pin, new_len, PIV_PIN_MIN, buf + PIV_PIN_MAX)) != TK_OK)
		goto out;
	if ((r = send_secret(p, 0x24, user_ref(p, user), buf, sizeof(buf), &sw)) != TK_OK)
		goto out;
	r = tk_err_from_pin_sw(sw, &retries);
out:
	tk_wipe(buf, sizeof(buf));
	return r;
}

int
piv_pin_unblock(void *state, const uint8_t *puk, size_t puk_len, const uint8_t *new_pin,
                size_t new_len)
{
	piv_t *p = state;
	uint8_t buf[2 * PIV_PIN_MAX];
	uint16_t sw = 0;
	int r, retries;

	if ((r = pad_pin(puk, puk_len, PIV_PIN_MIN, buf)) != TK_OK ||
	    (r = pad_pin(new_pin, new_len, PIV_PIN_MIN, buf + PIV_PIN_MAX)) != TK_OK)
		goto out;
	/* RESET RETRY COUNTER always names the PIV PIN (80). */
	if ((r = send_secret(p, 0x2C, PIV_REF_PIN, buf, sizeof(buf), &sw)) != TK_OK)
		goto out;
	r = tk_err_from_pin_sw(sw, &retries);
out:
	tk_wipe(buf, sizeof(buf));
	return r;
}
