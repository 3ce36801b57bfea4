/* tokenkit PIV driver: private-key operations with GENERAL AUTHENTICATE
 * (SP 800-73-4 part 2, 3.2.4): 7C { 82 00, 81 challenge } for RSA and
 * ECDSA, 7C { 82 00, 85 point } for ECDH; the answer is 7C { 82 result }. */
#include <stdlib.h>
#include <string.h>

#include <tokenkit/apdu.h>
#include <tokenkit/buf.h>
#include <tokenkit/err.h>
#include <tokenkit/log.h>
#include <tokenkit/mem.h>
#include <tokenkit/tlv.h>

#include "piv.h"
#include "x509.h"

/* The payload of 7C { 82 ... } in a GENERAL AUTHENTICATE answer. */
static int
ga_result(const uint8_t *resp, size_t n, tk_tlv_t *res)
{
	tk_tlv_t dyn;
	int r;

	if ((r = tk_ber_find(resp, n, 0x7C, &dyn)) != TK_OK)
		return TK_ERR_MALFORMED;
	if ((r = tk_ber_find(dyn.value, dyn.len, 0x82, res)) != TK_OK)
		return TK_ERR_MALFORMED;
	return TK_OK;
}

int
piv_key_op(void *state, const tk_drv_key_t *slot, int op, const uint8_t *in, size_t in_len,
           uint8_t *out, size_t out_cap, size_t *out_len)
{
	piv_t *p = state;
	size_t field = (slot->key_bits + 7) / 8, inner_len, n = 0, cmd_cap;
	uint8_t alg = piv_alg_for(slot->key_type, slot->key_bits);
	uint8_t *cmd = NULL, *resp = NULL, digest[66];
	const uint8_t *payload = in;
	size_t payload_len = in_len;
	uint32_t payload_tag = 0x81;
	tk_apdu_t a;
	tk_wbuf_t w;
	tk_tlv_t res;
	uint16_t sw = 0;
	int r;

	*out_len = 0;
	if (alg == 0)
		return TK_ERR_NOT_SUPPORTED;
	switch (op) {
	case TK_OP_RSA_RAW:
		if (slot->key_type != TK_KEY_RSA || in_len != field)
			return TK_ERR_INVALID_ARG;
		if (out_cap < field)
			return TK_ERR_BUFFER_TOO_SMALL;
		break;
	case TK_OP_ECDSA:
		if (slot->key_type != TK_KEY_EC || in_len == 0 || in_len > 64)
			return TK_ERR_INVALID_ARG;
		if (out_cap < 2 * field)
			return TK_ERR_BUFFER_TOO_SMALL;
		/* FIPS 186-4 6.4: the leftmost field bits of the hash (our fields
		 * are whole bytes); a shorter hash is an integer, left-padded. */
		if (in_len >= field) {
			memcpy(digest, in, field);
		} else {
			memset(digest, 0, field - in_len);
			memcpy(digest + field - in_len, in, in_len);
		}
		payload = digest;
		payload_len = field;
		break;
	case TK_OP_ECDH:
		if (slot->key_type != TK_KEY_EC || in_len != 1 + 2 * field || in[0] != 0x04)
			return TK_ERR_INVALID_ARG;
		if (out_cap < field)
			return TK_ERR_BUFFER_TOO_SMALL;
		payload_tag = 0x85;
		break;
	default:
		return TK_ERR_INVALID_ARG;
	}

	inner_len = 2 + tk_ber_hdr_len(payload_tag, payload_len) + payload_len;
	cmd_cap = tk_ber_hdr_len(0x7C, inner_len) + inner_len;
	if ((cmd = malloc(cmd_cap)) == NULL || (resp = malloc(4096)) == NULL) {
		r = TK_ERR_NO_MEMORY;
		goto out;
	}
	tk_wbuf_init(&w, cmd, cmd_cap);
	tk_ber_put_hdr(&w, 0x7C, inner_len);
	tk_ber_put(&w, 0x82, NULL, 0);
	tk_ber_put(&w, payload_tag, payload, payload_len);
	if ((r = tk_wbuf_error(&w)) != TK_OK)
		goto out;
	a = (tk_apdu_t){0x00, 0x87, alg, (uint8_t)slot->key_ref, cmd, w.len, 65536};

	if ((r = piv_begin(p)) != TK_OK)
		goto out;
	/* Not resent after a card reset: the reset also dropped the PIN. */
	r = piv_cmd(p, &a, false, resp, 4096, &n, &sw);
	piv_end(p);
	if (r != TK_OK)
		goto out;
	if (sw == 0x6D00 || sw == 0x6E00) {
		/* GENERAL AUTHENTICATE is mandatory in PIV, and piv_cmd already
		 * selected the applet again once: it is still not there for this
		 * command, and with it went the PIN. Select again next time; the
		 * PIN is needed again. */
		p->selected = false;
		r = TK_ERR_SECURITY_STATUS;
		goto out;
	}
	if (sw != 0x9000) {
		tk_log_debug("piv: GENERAL AUTHENTICATE %02X/%02X: SW %04X", alg, slot->key_ref,
		             sw);
		r = tk_err_from_sw(sw);
		if (r == TK_OK)
			r = TK_ERR_SW_UNKNOWN;
		goto out;
	}
	if ((r = ga_result(resp, n, &res)) != TK_OK)
		goto out;
	switch (op) {
	case TK_OP_ECDSA:
		r = tk_ecdsa_der_to_raw(res.value, res.len, field, out, out_cap, out_len);
		break;
	case TK_OP_RSA_RAW:
	case TK_OP_ECDH:
		/* RSA results are modulus-sized; a card may drop leading zeros */
		if (res.len == 0 || res.len > field) {
			r = TK_ERR_MALFORMED;
			break;
		}
		memset(out, 0, field - res.len);
		memcpy(out + field - res.len, res.value, res.len);
		*out_len = field;
		r = TK_OK;
		break;
	}
out:
	if (cmd != NULL)
		tk_freezero(cmd, cmd_cap);
	if (resp != NULL)
		tk_freezero(resp, 4096);
	tk_wipe(digest, sizeof(digest));
	return r;
}
