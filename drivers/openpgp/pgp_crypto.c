/* tokenkit OpenPGP card driver: the key operations.
 *
 * Signature key: PSO:COMPUTE DIGITAL SIGNATURE (00 2A 9E 9A);
 * authentication key: INTERNAL AUTHENTICATE (00 88 00 00); both take what
 * is to be signed (RSA: a DigestInfo, padded by the card; ECDSA: the hash;
 * EdDSA: the message) and answer the signature (RSA modulus-sized, ECDSA
 * r||s, EdDSA R||S). Decryption key: PSO:DECIPHER (00 2A 80 86) with
 * 00 || cryptogram for RSA (the card removes PKCS#1 v1.5 padding) or the
 * cipher DO A6 { 7F49 { 86 point } } for ECDH (the card answers the X
 * coordinate, or the whole point 04||X||Y, or 32 bytes for X25519). */
#include <stdlib.h>
#include <string.h>

#include "openpgp.h"

#define RESP_CAP 1024

/* The cipher DO for an ECDH peer point. */
static int
cipher_do(const uint8_t *pt, size_t len, uint8_t *out, size_t cap, size_t *out_len)
{
	const tk_drv_host_t *h = pgp_host;
	size_t l86 = h->ber_hdr_len(0x86, len) + len, l49 = h->ber_hdr_len(0x7F49, l86) + l86;
	tk_wbuf_t w;

	h->wbuf_init(&w, out, cap);
	h->ber_put_hdr(&w, 0xA6, l49);
	h->ber_put_hdr(&w, 0x7F49, l86);
	h->ber_put(&w, 0x86, pt, len);
	*out_len = w.len;
	return h->wbuf_error(&w);
}

int
pgp_key_op(void *state, const tk_drv_key_t *key, int op, const uint8_t *in, size_t in_len,
           uint8_t *out, size_t out_cap, size_t *out_len)
{
	const tk_drv_host_t *h = pgp_host;
	pgp_t *p = state;
	size_t fb = (key->key_bits + 7) / 8, want, n = 0, cl = 0;
	uint8_t *cmd = NULL, *resp = NULL;
	const uint8_t *res;
	tk_apdu_t a;
	uint16_t sw = 0;
	int r;

	*out_len = 0;
	if (key->key_ref < 1 || key->key_ref > PGP_NKEYS)
		return TK_ERR_INVALID_ARG;
	if ((cmd = malloc(RESP_CAP + 8)) == NULL || (resp = malloc(RESP_CAP)) == NULL) {
		r = TK_ERR_NO_MEMORY;
		goto out;
	}
	switch (op) {
	case TK_OP_RSA_PKCS1_SIGN:
	case TK_OP_ECDSA:
	case TK_OP_EDDSA:
		if (key->key_ref - 1 == PGP_KEY_DEC) {
			r = TK_ERR_INVALID_ARG;
			goto out;
		}
		want = op == TK_OP_RSA_PKCS1_SIGN ? fb : op == TK_OP_ECDSA ? 2 * fb : 64;
		/* ECDSA: the leftmost field bytes of the hash (FIPS 186-4 6.4) */
		cl = op == TK_OP_ECDSA && in_len > fb ? fb : in_len;
		if (cl == 0 || cl > (op == TK_OP_EDDSA ? 4096u : RESP_CAP) ||
		    (op == TK_OP_RSA_PKCS1_SIGN && cl + 11 > fb)) {
			r = TK_ERR_INVALID_ARG;
			goto out;
		}
		if (key->key_ref - 1 == PGP_KEY_SIG)
			a = (tk_apdu_t){0x00, 0x2A, 0x9E, 0x9A, in, cl, 65536};
		else
			a = (tk_apdu_t){0x00, 0x88, 0x00, 0x00, in, cl, 65536};
		break;
	case TK_OP_RSA_PKCS1_DECRYPT:
		if (key->key_ref - 1 != PGP_KEY_DEC || in_len != fb || fb + 1 > RESP_CAP + 8) {
			r = TK_ERR_INVALID_ARG;
			goto out;
		}
		cmd[0] = 0x00; /* padding indicator */
		memcpy(cmd + 1, in, in_len);
		a = (tk_apdu_t){0x00, 0x2A, 0x80, 0x86, cmd, in_len + 1, 65536};
		want = 0;
		break;
	case TK_OP_ECDH:
		if (key->key_ref - 1 != PGP_KEY_DEC ||
		    in_len != (key->key_type == TK_KEY_X25519 ? 32 : 1 + 2 * fb) ||
		    (key->key_type == TK_KEY_EC && in[0] != 0x04)) {
			r = TK_ERR_INVALID_ARG;
			goto out;
		}
		if ((r = cipher_do(in, in_len, cmd, RESP_CAP + 8, &cl)) != TK_OK)
			goto out;
		a = (tk_apdu_t){0x00, 0x2A, 0x80, 0x86, cmd, cl, 65536};
		want = key->key_type == TK_KEY_X25519 ? 32 : fb;
		break;
	default:
		r = TK_ERR_INVALID_ARG;
		goto out;
	}
	if (want > out_cap) {
		r = TK_ERR_BUFFER_TOO_SMALL;
		goto out;
	}
	if ((r = pgp_begin(p)) != TK_OK)
		goto out;
	/* never resent: a reset also dropped the PIN */
	r = pgp_cmd(p, &a, false, resp, RESP_CAP, &n, &sw);
	pgp_end(p);
	if (r != TK_OK)
		goto out;
	if (sw != 0x9000) {
		pgp_log(TK_LOG_DEBUG, "openpgp: %02X %02X%02X with key %u: SW %04X", a.ins, a.p1,
		        a.p2, (unsigned)key->key_ref, sw);
		r = h->err_from_sw(sw);
		if (r == TK_OK)
			r = TK_ERR_SW_UNKNOWN;
		goto out;
	}
	res = resp;
	if (op == TK_OP_ECDH && key->key_type == TK_KEY_EC && n == 1 + 2 * fb && resp[0] == 0x04) {
		/* the whole point: its X coordinate */
		n = fb;
		res = resp + 1;
	}
	if (op == TK_OP_RSA_PKCS1_DECRYPT) {
		if (n + 11 > fb || n > out_cap) {
			r = n > out_cap ? TK_ERR_BUFFER_TOO_SMALL : TK_ERR_MALFORMED;
			goto out;
		}
	} else if (op == TK_OP_RSA_PKCS1_SIGN && n > 0 && n < fb) {
		/* a card may drop leading zero bytes of the signature */
		memset(out, 0, fb - n);
		memcpy(out + fb - n, res, n);
		*out_len = fb;
		goto out;
	} else if (n != want) {
		r = TK_ERR_MALFORMED;
		goto out;
	}
	memcpy(out, res, n);
	*out_len = n;
out:
	if (cmd != NULL)
		h->freezero(cmd, RESP_CAP + 8);
	if (resp != NULL)
		h->freezero(resp, RESP_CAP);
	return r;
}
