/* tokenkit virtual card, OpenPGP applet: PW1, PW3 and the resetting code
 * (VERIFY, CHANGE REFERENCE DATA, RESET RETRY COUNTER) and the KDF-DO.
 *
 * PW1 is checked under two references: 81 enables PSO:COMPUTE DIGITAL
 * SIGNATURE (once, unless C4 says otherwise), 82 the other key
 * operations. Secrets are compared in constant time and every wrong try
 * counts, stored before the answer leaves (c->dirty). */
#include <string.h>

#include <tokenkit/err.h>
#include <tokenkit/mem.h>
#include <tokenkit/tlv.h>

#include "pgp_int.h"

void
vc_pgp_pw_set(struct pgp_pw *pw, const uint8_t *v, size_t len)
{
	tk_wipe(pw->v, sizeof(pw->v));
	pw->len = (uint8_t)len;
	if (len > 0)
		memcpy(pw->v, v, len);
	pw->tries = len > 0 ? PGP_TRIES : 0;
}

/* Check a secret against pw, counting the try. SW_OK or the refusal. */
static uint16_t
check(tk_vcard_t *c, struct pgp_pw *pw, const uint8_t *v, size_t len)
{
	bool ok;

	if (pw->len == 0 || pw->tries == 0)
		return SW_AUTH_BLOCKED;
	ok = len == pw->len && tk_memeq_ct(v, pw->v, len);
	if (!ok) {
		pw->tries--;
		c->dirty = true;
		return pw->tries == 0 ? SW_AUTH_BLOCKED : SW_RETRIES(pw->tries);
	}
	if (pw->tries != PGP_TRIES) {
		pw->tries = PGP_TRIES;
		c->dirty = true;
	}
	return SW_OK;
}

static bool *
verified_flag(struct vc_pgp *p, uint8_t ref)
{
	switch (ref) {
	case 0x81:
		return &p->pw1_81;
	case 0x82:
		return &p->pw1_82;
	case 0x83:
		return &p->pw3_ok;
	default:
		return NULL;
	}
}

/* VERIFY: P1 00 with data checks; without data it tells the state (9000
 * verified, 63Cx tries left); P1 FF without data forgets the verification. */
uint16_t
vc_pgp_verify(tk_vcard_t *c, const tk_apdu_t *a, tk_wbuf_t *out)
{
	struct vc_pgp *p = c->pgp;
	struct pgp_pw *pw = a->p2 == 0x83 ? &p->pw3 : &p->pw1;
	bool *flag = verified_flag(p, a->p2);
	uint16_t sw;

	(void)out;
	if (flag == NULL || (a->p1 != 0x00 && a->p1 != 0xFF))
		return SW_WRONG_P1P2;
	if (a->p1 == 0xFF) {
		if (a->lc != 0)
			return SW_WRONG_LENGTH;
		*flag = false;
		return SW_OK;
	}
	if (a->lc == 0) {
		if (*flag)
			return SW_OK;
		return pw->tries == 0 ? SW_AUTH_BLOCKED : SW_RETRIES(pw->tries);
	}
	*flag = false;
	sw = check(c, pw, a->data, a->lc);
	if (sw == SW_OK)
		*flag = true;
	return sw;
}

/* CHANGE REFERENCE DATA: old || new, split at the old secret's length. */
uint16_t
vc_pgp_change_ref(tk_vcard_t *c, const tk_apdu_t *a, tk_wbuf_t *out)
{
	struct vc_pgp *p = c->pgp;
	struct pgp_pw *pw;
	size_t min, nl;
	uint16_t sw;

	(void)out;
	if (a->p1 != 0x00 || (a->p2 != 0x81 && a->p2 != 0x83))
		return SW_WRONG_P1P2;
	pw = a->p2 == 0x81 ? &p->pw1 : &p->pw3;
	min = a->p2 == 0x81 ? PGP_PW1_MIN : PGP_PW3_MIN;
	if (a->lc <= pw->len)
		return SW_WRONG_LENGTH;
	nl = a->lc - pw->len;
	if (nl < min || nl > PGP_PW_MAX)
		return SW_WRONG_LENGTH;
	if ((sw = check(c, pw, a->data, pw->len)) != SW_OK)
		return sw;
	vc_pgp_pw_set(pw, a->data + (a->lc - nl), nl);
	if (a->p2 == 0x81)
		p->pw1_81 = p->pw1_82 = false;
	else
		p->pw3_ok = false;
	c->dirty = true;
	return SW_OK;
}

/* RESET RETRY COUNTER for PW1: P1 00 with resetting code || new PW1, P1
 * 02 with the new PW1 alone after PW3. */
uint16_t
vc_pgp_reset_retry(tk_vcard_t *c, const tk_apdu_t *a, tk_wbuf_t *out)
{
	struct vc_pgp *p = c->pgp;
	const uint8_t *nv = a->data;
	size_t nl = a->lc;
	uint16_t sw;

	(void)out;
	if (a->p2 != 0x81 || (a->p1 != 0x00 && a->p1 != 0x02))
		return SW_WRONG_P1P2;
	if (a->p1 == 0x02) {
		if (!p->pw3_ok)
			return SW_SECURITY;
	} else {
		if (p->rc.len == 0)
			return SW_SECURITY;
		if (a->lc <= p->rc.len)
			return SW_WRONG_LENGTH;
		if ((sw = check(c, &p->rc, a->data, p->rc.len)) != SW_OK)
			return sw;
		nv = a->data + p->rc.len;
		nl = a->lc - p->rc.len;
	}
	if (nl < PGP_PW1_MIN || nl > PGP_PW_MAX)
		return SW_WRONG_LENGTH;
	vc_pgp_pw_set(&p->pw1, nv, nl);
	p->pw1_81 = p->pw1_82 = false;
	c->dirty = true;
	return SW_OK;
}

/* KDF-DO: 81 01 00 (no KDF: the PINs go back to their defaults), or 81 01
 * 03 (iterated and salted S2K), 82 01 08|0A (SHA-256|SHA-512), 83 04
 * count, 84 salt PW1, [85 salt RC, 86 salt PW3], 87 hash of the initial
 * PW1, 88 hash of the initial PW3: the PINs become those hashes. */
int
vc_pgp_kdf_put(struct vc_pgp *p, const uint8_t *v, size_t n)
{
	tk_tlv_t t81, t82, t83, t84, t87, t88, e;
	size_t hl;
	tk_buf_t b;

	if (n > PGP_KDF_MAX || tk_ber_find(v, n, 0x81, &t81) != TK_OK || t81.len != 1)
		return TK_ERR_MALFORMED;
	/* nothing but known primitive objects, each well formed */
	tk_buf_init(&b, v, n);
	while (tk_ber_get(&b, &e) == TK_OK)
		if (e.tag < 0x81 || e.tag > 0x88)
			return TK_ERR_MALFORMED;
	if (tk_buf_left(&b) != 0)
		return TK_ERR_MALFORMED;
	if (t81.value[0] == 0x00) {
		vc_pgp_pw_set(&p->pw1, (const uint8_t *)"123456", 6);
		vc_pgp_pw_set(&p->pw3, (const uint8_t *)"12345678", 8);
		p->kdf_len = 0;
		vc_pgp_clear_session(p);
		return TK_OK;
	}
	if (t81.value[0] != 0x03 || tk_ber_find(v, n, 0x82, &t82) != TK_OK || t82.len != 1 ||
	    (t82.value[0] != 0x08 && t82.value[0] != 0x0A) ||
	    tk_ber_find(v, n, 0x83, &t83) != TK_OK || t83.len != 4 ||
	    tk_ber_find(v, n, 0x84, &t84) != TK_OK || t84.len != 8 ||
	    tk_ber_find(v, n, 0x87, &t87) != TK_OK || tk_ber_find(v, n, 0x88, &t88) != TK_OK)
		return TK_ERR_MALFORMED;
	hl = t82.value[0] == 0x08 ? 32 : 64;
	if (t87.len != hl || t88.len != hl)
		return TK_ERR_MALFORMED;
	memcpy(p->kdf, v, n);
	p->kdf_len = (uint8_t)n;
	vc_pgp_pw_set(&p->pw1, t87.value, hl);
	vc_pgp_pw_set(&p->pw3, t88.value, hl);
	vc_pgp_clear_session(p);
	return TK_OK;
}
