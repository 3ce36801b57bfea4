/* tokenkit virtual card: the state file.
 *
 * Format (all integers big-endian):
 *   "TKVCARD1"                      magic and format version
 *   records: type u8, length u32, value
 *     01 PIN      pin[8] tries max
 *     02 PUK      puk[8] tries max
 *     03 MGMT     algorithm touch-policy key[16|24|32]
 *     04 SERIAL   u32
 *     05 OBJECT   tag u32, contents (1 .. 16384 bytes)
 *     06 KEY      slot algorithm pin-policy touch-policy origin, private key DER
 *     07 APPLETS  u8 TK_VCARD_APPLET_* (absent: PIV alone)
 *     20..3A      the OpenPGP applet's records (pgp_state.c), only with it
 *     FF END      empty; the last record (a cut-off file is noticed)
 * PIN, PUK, MGMT and SERIAL appear exactly once (the PIV applet's state is
 * kept even when the card has none, so every file has one shape); objects
 * and keys at most once per tag / slot. Anything else is
 * TK_ERR_MALFORMED.
 *
 * Writes are atomic (tk_fs_write_atomic: a temporary file with an
 * unpredictable name in the same directory, fsync, rename over the old
 * file, fsync of the directory), in a directory checked to be the user's. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/x509.h>

#include <tokenkit/err.h>
#include <tokenkit/log.h>
#include <tokenkit/mem.h>

#include "fsutil.h"
#include "pgp_int.h"
#include "vcard_int.h"

#define MAGIC "TKVCARD1"
#define MAGIC_LEN 8

enum {
	R_PIN = 1,
	R_PUK = 2,
	R_MGMT = 3,
	R_SERIAL = 4,
	R_OBJECT = 5,
	R_KEY = 6,
	R_APPLETS = 7,
	R_END = 0xFF,
};

#define MAX_RECORD (1u << 20)

static void
rec_hdr(tk_wbuf_t *w, uint8_t type, size_t len)
{
	tk_wbuf_put_u8(w, type);
	tk_wbuf_put_u32be(w, (uint32_t)len);
}

static int
encode(const tk_vcard_t *c, tk_wbuf_t *w)
{
	int r = TK_OK;

	tk_wbuf_put_bytes(w, MAGIC, MAGIC_LEN);
	rec_hdr(w, R_PIN, VC_PIN_LEN + 2);
	tk_wbuf_put_bytes(w, c->pin, VC_PIN_LEN);
	tk_wbuf_put_u8(w, c->pin_tries);
	tk_wbuf_put_u8(w, c->pin_max);
	rec_hdr(w, R_PUK, VC_PIN_LEN + 2);
	tk_wbuf_put_bytes(w, c->puk, VC_PIN_LEN);
	tk_wbuf_put_u8(w, c->puk_tries);
	tk_wbuf_put_u8(w, c->puk_max);
	rec_hdr(w, R_MGMT, 2 + c->mgm_len);
	tk_wbuf_put_u8(w, c->mgm_alg);
	tk_wbuf_put_u8(w, c->mgm_touch);
	tk_wbuf_put_bytes(w, c->mgm_key, c->mgm_len);
	rec_hdr(w, R_SERIAL, 4);
	tk_wbuf_put_u32be(w, c->serial);
	for (size_t i = 0; i < c->nobjs; i++) {
		rec_hdr(w, R_OBJECT, 4 + c->objs[i].len);
		tk_wbuf_put_u32be(w, c->objs[i].tag);
		tk_wbuf_put_bytes(w, c->objs[i].data, c->objs[i].len);
	}
	for (int i = 0; i < VC_NSLOTS && r == TK_OK; i++) {
		const struct vc_key *k = &c->keys[i];
		uint8_t *der = NULL, *p;
		int n;

		if (k->alg == 0)
			continue;
		if ((n = i2d_PrivateKey(k->pkey, NULL)) <= 0) {
			r = TK_ERR_CRYPTO;
			break;
		}
		rec_hdr(w, R_KEY, 5 + (size_t)n);
		tk_wbuf_put_u8(w, vc_slot_ref(i));
		tk_wbuf_put_u8(w, k->alg);
		tk_wbuf_put_u8(w, k->pin_policy);
		tk_wbuf_put_u8(w, k->touch_policy);
		tk_wbuf_put_u8(w, k->origin);
		if ((p = der = tk_wbuf_reserve(w, (size_t)n)) == NULL)
			break;
		if (i2d_PrivateKey(k->pkey, &p) != n)
			r = TK_ERR_CRYPTO;
	}
	if (c->applets != TK_VCARD_APPLET_PIV) {
		rec_hdr(w, R_APPLETS, 1);
		tk_wbuf_put_u8(w, (uint8_t)c->applets);
	}
	if (r == TK_OK && c->pgp != NULL)
		r = vc_pgp_state_encode(c->pgp, w);
	rec_hdr(w, R_END, 0);
	if (r == TK_OK)
		r = tk_wbuf_error(w);
	return r;
}

int
vc_state_encode(const tk_vcard_t *c, uint8_t **out, size_t *out_len)
{
	tk_wbuf_t w;
	uint8_t *buf;
	size_t cap;
	int r;

	*out = NULL;
	*out_len = 0;
	/* generous: RSA-4096 private keys are about 2,350 bytes of DER */
	cap = MAGIC_LEN + 128 + (size_t)VC_NSLOTS * (10 + 2600);
	for (size_t i = 0; i < c->nobjs; i++)
		cap += 9 + c->objs[i].len;
	if (c->pgp != NULL)
		cap += vc_pgp_state_size(c->pgp);
	if ((buf = malloc(cap)) == NULL)
		return TK_ERR_NO_MEMORY;
	tk_wbuf_init(&w, buf, cap);
	if ((r = encode(c, &w)) != TK_OK) {
		tk_freezero(buf, cap);
		return r;
	}
	*out = buf;
	*out_len = w.len;
	return TK_OK;
}

static int
dec_secret(tk_buf_t *v, uint8_t *secret, uint8_t *tries, uint8_t *max)
{
	if (tk_buf_left(v) != VC_PIN_LEN + 2 || tk_buf_get_bytes(v, secret, VC_PIN_LEN) != TK_OK ||
	    tk_buf_get_u8(v, tries) != TK_OK || tk_buf_get_u8(v, max) != TK_OK)
		return TK_ERR_MALFORMED;
	if (*max == 0 || *max > VC_MAX_TRIES || *tries > *max)
		return TK_ERR_MALFORMED;
	return TK_OK;
}

static int
dec_key(tk_vcard_t *c, tk_buf_t *v)
{
	uint8_t ref, alg, pinp, touchp, origin;
	const uint8_t *der, *p;
	size_t n;
	EVP_PKEY *pkey;
	int idx;

	if (tk_buf_get_u8(v, &ref) != TK_OK || tk_buf_get_u8(v, &alg) != TK_OK ||
	    tk_buf_get_u8(v, &pinp) != TK_OK || tk_buf_get_u8(v, &touchp) != TK_OK ||
	    tk_buf_get_u8(v, &origin) != TK_OK)
		return TK_ERR_MALFORMED;
	if ((idx = vc_slot_index(ref)) == VC_SLOT_NONE || c->keys[idx].alg != 0)
		return TK_ERR_MALFORMED;
	if ((!vc_alg_is_rsa(alg) && !vc_alg_is_ec(alg)) || pinp > 3 || touchp > 3 ||
	    (origin != ORIGIN_GENERATED && origin != ORIGIN_IMPORTED))
		return TK_ERR_MALFORMED;
	n = tk_buf_left(v);
	if (n == 0 || n > 8192 || tk_buf_get_ptr(v, &der, n) != TK_OK)
		return TK_ERR_MALFORMED;
	p = der;
	if ((pkey = d2i_AutoPrivateKey(NULL, &p, (long)n)) == NULL)
		return TK_ERR_MALFORMED;
	if ((size_t)(p - der) != n || vc_pkey_alg(pkey) != alg) {
		EVP_PKEY_free(pkey);
		return TK_ERR_MALFORMED;
	}
	c->keys[idx].alg = alg;
	c->keys[idx].pin_policy = pinp;
	c->keys[idx].touch_policy = touchp;
	c->keys[idx].origin = origin;
	c->keys[idx].pkey = pkey;
	return TK_OK;
}

int
vc_state_decode(tk_vcard_t *c, const uint8_t *data, size_t len)
{
	tk_buf_t b, v;
	uint8_t magic[MAGIC_LEN], type, mgm[34];
	uint32_t rlen, tag;
	unsigned seen = 0, pgp_seen = 0;
	uint8_t applets;
	bool end = false;
	int r = TK_ERR_MALFORMED;

	tk_buf_init(&b, data, len);
	if (tk_buf_get_bytes(&b, magic, MAGIC_LEN) != TK_OK || memcmp(magic, MAGIC, MAGIC_LEN) != 0)
		return TK_ERR_MALFORMED;
	while (tk_buf_left(&b) > 0) {
		if (end)
			goto fail;
		if (tk_buf_get_u8(&b, &type) != TK_OK || tk_buf_get_u32be(&b, &rlen) != TK_OK ||
		    rlen > MAX_RECORD || tk_buf_get_sub(&b, &v, rlen) != TK_OK)
			goto fail;
		if (type >= R_PIN && type <= R_SERIAL) {
			if (seen & (1u << type))
				goto fail;
			seen |= 1u << type;
		}
		switch (type) {
		case R_PIN:
			if (dec_secret(&v, c->pin, &c->pin_tries, &c->pin_max) != TK_OK)
				goto fail;
			break;
		case R_PUK:
			if (dec_secret(&v, c->puk, &c->puk_tries, &c->puk_max) != TK_OK)
				goto fail;
			break;
		case R_MGMT:
			if (rlen < 2 || rlen > sizeof(mgm) ||
			    tk_buf_get_bytes(&v, mgm, rlen) != TK_OK)
				goto fail;
			if (vc_mgm_key_len(mgm[0]) != rlen - 2 || mgm[1] > 3) {
				tk_wipe(mgm, sizeof(mgm));
				goto fail;
			}
			c->mgm_alg = mgm[0];
			c->mgm_touch = mgm[1];
			c->mgm_len = rlen - 2;
			memcpy(c->mgm_key, mgm + 2, c->mgm_len);
			tk_wipe(mgm, sizeof(mgm));
			break;
		case R_SERIAL:
			if (rlen != 4 || tk_buf_get_u32be(&v, &c->serial) != TK_OK)
				goto fail;
			break;
		case R_OBJECT:
			if (tk_buf_get_u32be(&v, &tag) != TK_OK || tk_buf_left(&v) == 0 ||
			    !vc_obj_tag_valid(tag) || vc_obj_find(c, tag) != NULL)
				goto fail;
			if (vc_obj_set(c, tag, v.data + v.pos, tk_buf_left(&v)) != TK_OK)
				goto fail;
			break;
		case R_KEY:
			if ((r = dec_key(c, &v)) != TK_OK)
				goto fail;
			break;
		case R_APPLETS:
			if ((seen & (1u << R_APPLETS)) != 0 || rlen != 1 ||
			    tk_buf_get_u8(&v, &applets) != TK_OK || applets == 0 ||
			    (applets & ~(TK_VCARD_APPLET_PIV | TK_VCARD_APPLET_OPENPGP)) != 0)
				goto fail;
			seen |= 1u << R_APPLETS;
			c->applets = applets;
			break;
		case R_END:
			if (rlen != 0)
				goto fail;
			end = true;
			break;
		default:
			if (!vc_pgp_state_type(type))
				goto fail;
			if (c->pgp == NULL && vc_pgp_new(&c->pgp) != TK_OK)
				goto fail;
			if (vc_pgp_state_record(c->pgp, type, &v, &pgp_seen) != TK_OK)
				goto fail;
			break;
		}
	}
	seen &= ~(1u << R_APPLETS);
	if (!end || seen != ((1u << R_PIN) | (1u << R_PUK) | (1u << R_MGMT) | (1u << R_SERIAL)))
		goto fail;
	/* the OpenPGP records exactly when the card has the applet */
	if ((c->applets & TK_VCARD_APPLET_OPENPGP) != 0
	            ? c->pgp == NULL || vc_pgp_state_check(c->pgp, pgp_seen) != TK_OK
	            : c->pgp != NULL)
		goto fail;
	return TK_OK;
fail:
	return TK_ERR_MALFORMED;
}

int
vc_state_save(tk_vcard_t *c)
{
	uint8_t *data = NULL;
	size_t len = 0;
	char name[256];
	int dfd = -1, r;

	if (c->path == NULL)
		return TK_OK;
	if ((r = vc_state_encode(c, &data, &len)) != TK_OK)
		return r;
	/* the directory is checked again: it is the one the keys go to */
	if ((r = tk_fs_parent_open(c->path, VC_STATE_DIR_FLAGS, &dfd, name, sizeof(name))) == TK_OK)
		r = tk_fs_write_atomic(dfd, name, data, len);
	if (r != TK_OK)
		tk_log_error("vcard: saving %s failed: %s", c->path, tk_strerror(r));
	tk_fs_close(&dfd);
	tk_freezero(data, len);
	return r;
}
