/* tokenkit virtual card: life cycle, APDU dispatch, chaining, SELECT and the
 * small vendor commands.
 *
 * The card is a pure function of its state and the command: each handler
 * writes its whole response into c->rbuf and returns the status word; this
 * file cuts long responses into 61xx parts, assembles chained commands and
 * saves the state file before a response that reports a change leaves. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/rand.h>

#include <tokenkit/err.h>
#include <tokenkit/log.h>
#include <tokenkit/mem.h>

#include "fsutil.h"
#include "pgp_int.h"
#include "vcard_int.h"

/* PIV AID (SP 800-73-4 part 1, 2.2): RID A0 00 00 03 08, PIX 00 00 10 00 01 00. */
static const uint8_t piv_aid[] = {0xA0, 0x00, 0x00, 0x03, 0x08, 0x00, 0x00, 0x10, 0x00, 0x01, 0x00};
#define PIV_RID_LEN 5
/* Another application on the same card (OpenPGP's RID and application
 * number, any version after it): selecting it deselects PIV, whose PIN
 * state goes with it, as on a multi-application card such as a YubiKey.
 * Without the OpenPGP applet (--applet), it answers nothing but its
 * SELECT. */
static const uint8_t other_aid[] = {0xD2, 0x76, 0x00, 0x01, 0x24, 0x01};

/* Algorithms announced in the application property template. */
static const uint8_t announced_algs[] = {ALG_3DES,    ALG_AES128,  ALG_AES192,  ALG_AES256,
                                         ALG_RSA1024, ALG_RSA2048, ALG_RSA3072, ALG_RSA4096,
                                         ALG_ECCP256, ALG_ECCP384};

static const uint8_t slot_refs[VC_NSLOTS] = {
        0x9A, 0x9C, 0x9D, 0x9E, 0x82, 0x83, 0x84, 0x85, 0x86, 0x87, 0x88, 0x89, 0x8A,
        0x8B, 0x8C, 0x8D, 0x8E, 0x8F, 0x90, 0x91, 0x92, 0x93, 0x94, 0x95, 0xF9,
};

int
vc_slot_index(uint8_t ref)
{
	for (int i = 0; i < VC_NSLOTS; i++)
		if (slot_refs[i] == ref)
			return i;
	return VC_SLOT_NONE;
}

uint8_t
vc_slot_ref(int index)
{
	if (index < 0 || index >= VC_NSLOTS)
		return 0;
	return slot_refs[index];
}

int
vc_random(void *p, size_t n)
{
	if (n > INT32_MAX || RAND_bytes(p, (int)n) != 1)
		return TK_ERR_CRYPTO;
	return TK_OK;
}

static void
chain_drop(tk_vcard_t *c)
{
	if (c->chain != NULL)
		tk_wipe(c->chain, c->chain_len);
	c->chain_len = 0;
	c->chaining = false;
}

static void
pend_drop(tk_vcard_t *c)
{
	if (c->pend != NULL)
		tk_freezero(c->pend, c->pend_len);
	c->pend = NULL;
	c->pend_len = 0;
	c->pend_off = 0;
}

void
vc_clear_session(tk_vcard_t *c)
{
	c->pin_ok = false;
	c->pin_fresh = false;
	c->mgm_ok = false;
	c->mgm_step = MGM_NONE;
	tk_wipe(c->mgm_nonce, sizeof(c->mgm_nonce));
	c->mgm_nonce_len = 0;
	chain_drop(c);
	pend_drop(c);
	if (c->pgp != NULL)
		vc_pgp_clear_session(c->pgp);
}

static void
power_cycle(tk_vcard_t *c)
{
	vc_clear_session(c);
	c->app = VC_APP_NONE;
}

void
tk_vcard_power_on(tk_vcard_t *c)
{
	if (c != NULL)
		power_cycle(c);
}

void
tk_vcard_power_off(tk_vcard_t *c)
{
	if (c != NULL)
		power_cycle(c);
}

void
tk_vcard_reset(tk_vcard_t *c)
{
	if (c != NULL)
		power_cycle(c);
}

int
tk_vcard_set_option(tk_vcard_t *c, const char *option)
{
	static const char name[] = "no-extended=", fw[] = "firmware=";
	unsigned v[3];
	char end;

	if (c == NULL || option == NULL)
		return TK_ERR_INVALID_ARG;
	if (strncmp(option, fw, sizeof(fw) - 1) == 0) {
		if (sscanf(option + sizeof(fw) - 1, "%u.%u.%u%c", &v[0], &v[1], &v[2], &end) != 3 ||
		    v[0] > 255 || v[1] > 255 || v[2] > 255)
			return TK_ERR_INVALID_ARG;
		for (int i = 0; i < 3; i++)
			c->fw[i] = (uint8_t)v[i];
		return TK_OK;
	}
	if (strncmp(option, name, sizeof(name) - 1) != 0)
		return TK_ERR_NOT_FOUND;
	option += sizeof(name) - 1;
	if (strcmp(option, "6700") == 0)
		c->no_ext_sw = SW_WRONG_LENGTH;
	else if (strcasecmp(option, "6A82") == 0)
		c->no_ext_sw = SW_NOT_FOUND;
	else if (strcmp(option, "off") == 0)
		c->no_ext_sw = 0;
	else
		return TK_ERR_INVALID_ARG;
	return TK_OK;
}

uint64_t
tk_vcard_apdu_count(const tk_vcard_t *c)
{
	return c != NULL ? c->apdus : 0;
}

/* ATR: direct convention, T=1 only, IFSC 254, and historical bytes in
 * compact-TLV that carry the card capabilities and the name the Yubico tools
 * look for. TCK (XOR of T0 .. last byte) is computed, not stored. */
static const uint8_t atr_body[] = {
        0x3B, 0xFD, 0x13, 0x00, 0x00, 0x81, 0x31, 0xFE, 0x15, /* TS T0 TA1 TB1 TC1 TD1 TD2 TA3 TB3
                                                               */
        0x80, 0x73, 0xC0, 0x21, 0xC0, 0x57, 0x59, 0x75, 0x62, 0x69, 0x4B, 0x65, 0x79,
};
/* A card with the OpenPGP applet alone: the historical bytes OpenPGP
 * cards carry (category 00, card service data 31 C5, capabilities 73 C0 01
 * C0: command chaining and extended Lc/Le, status 05 90 00). */
static const uint8_t atr_openpgp[] = {
        0x3B, 0xFA, 0x13, 0x00, 0x00, 0x81, 0x31, 0xFE, 0x15, 0x00,
        0x31, 0xC5, 0x73, 0xC0, 0x01, 0xC0, 0x05, 0x90, 0x00,
};

size_t
tk_vcard_atr(const tk_vcard_t *c, uint8_t *atr, size_t cap)
{
	bool pgp_only = c != NULL && c->applets == TK_VCARD_APPLET_OPENPGP;
	const uint8_t *body = pgp_only ? atr_openpgp : atr_body;
	size_t n = pgp_only ? sizeof(atr_openpgp) : sizeof(atr_body);
	uint8_t tck = 0;

	if (atr == NULL || cap < n + 1)
		return 0;
	memcpy(atr, body, n);
	for (size_t i = 1; i < n; i++)
		tck ^= body[i];
	atr[n] = tck;
	return n + 1;
}

static void
card_free_contents(tk_vcard_t *c)
{
	vc_obj_clear(c);
	for (int i = 0; i < VC_NSLOTS; i++)
		vc_key_clear(&c->keys[i]);
	vc_pgp_free(&c->pgp);
	tk_wipe(c->pin, sizeof(c->pin));
	tk_wipe(c->puk, sizeof(c->puk));
	tk_wipe(c->mgm_key, sizeof(c->mgm_key));
}

void
tk_vcard_free(tk_vcard_t **cp)
{
	tk_vcard_t *c;

	if (cp == NULL || *cp == NULL)
		return;
	c = *cp;
	vc_clear_session(c);
	card_free_contents(c);
	tk_freezero(c->chain, VC_MAX_CHAIN);
	tk_freezero(c->rbuf, VC_RESP_CAP);
	free(c->path);
	if (c->lock_fd >= 0)
		close(c->lock_fd);
	tk_freezero(c, sizeof(*c));
	*cp = NULL;
}

/* One card is in one reader: the first program to open a state file holds
 * <path>.lock until it frees the card; another one gets TK_ERR_BUSY instead
 * of two copies of the card overwriting each other's changes. The lock
 * file is opened like every file tokenkit keeps (fsutil.h): a symlink or a
 * FIFO planted in its place is refused. */
static int
lock_state(tk_vcard_t *c, int dfd, const char *name, const char *path)
{
	char lock[300];
	int n = snprintf(lock, sizeof(lock), "%s.lock", name), r;

	if (n < 0 || (size_t)n >= sizeof(lock))
		return TK_ERR_TOO_LONG;
	if ((r = tk_fs_open(dfd, lock, O_RDWR | O_CREAT, &c->lock_fd)) != TK_OK) {
		tk_log_error("vcard: %s.lock: %s", path, tk_strerror(r));
		return r;
	}
	if (flock(c->lock_fd, LOCK_EX | LOCK_NB) != 0) {
		int e = errno;

		tk_log_error("vcard: %s: %s", path,
		             e == EWOULDBLOCK ? "in use by another program (one card, one reader)"
		                              : strerror(e));
		return e == EWOULDBLOCK ? TK_ERR_BUSY : TK_ERR_IO;
	}
	return TK_OK;
}

static int
card_alloc(tk_vcard_t **out)
{
	tk_vcard_t *c;

	*out = NULL;
	if ((c = calloc(1, sizeof(*c))) == NULL)
		return TK_ERR_NO_MEMORY;
	c->chain = malloc(VC_MAX_CHAIN);
	c->rbuf = malloc(VC_RESP_CAP);
	if (c->chain == NULL || c->rbuf == NULL) {
		free(c->chain);
		free(c->rbuf);
		free(c);
		return TK_ERR_NO_MEMORY;
	}
	c->lock_fd = -1;
	c->applets = TK_VCARD_APPLET_PIV;
	c->fw[0] = 5; /* a YubiKey 5 of firmware 5.4.3 unless told otherwise */
	c->fw[1] = 4;
	c->fw[2] = 3;
	*out = c;
	return TK_OK;
}

/* Factory state without the serial and the attestation key. */
static int
card_factory(tk_vcard_t *c)
{
	vc_auth_defaults(c);
	return vc_obj_defaults(c);
}

static int
card_create(tk_vcard_t *c)
{
	uint8_t r[4];
	int rv;

	if ((rv = vc_random(r, sizeof(r))) != TK_OK)
		return rv;
	/* eight decimal digits, like the serials printed on real tokens */
	c->serial = 10000000u + ((uint32_t)r[0] << 24 | (uint32_t)r[1] << 16 | (uint32_t)r[2] << 8 |
	                         r[3]) % 90000000u;
	if ((rv = card_factory(c)) != TK_OK)
		return rv;
	if ((c->applets & TK_VCARD_APPLET_OPENPGP) != 0 && (rv = vc_pgp_new(&c->pgp)) != TK_OK)
		return rv;
	return vc_attest_create(c);
}

int
tk_vcard_load_mem(const uint8_t *data, size_t len, tk_vcard_t **out)
{
	tk_vcard_t *c = NULL;
	int r;

	if (out == NULL)
		return TK_ERR_INVALID_ARG;
	*out = NULL;
	if ((r = card_alloc(&c)) != TK_OK)
		return r;
	if ((r = vc_state_decode(c, data, len)) != TK_OK) {
		tk_vcard_free(&c);
		return r;
	}
	*out = c;
	return TK_OK;
}

int
tk_vcard_save_mem(const tk_vcard_t *c, uint8_t **out, size_t *out_len)
{
	if (out == NULL || out_len == NULL)
		return TK_ERR_INVALID_ARG;
	*out = NULL;
	*out_len = 0;
	if (c == NULL)
		return TK_ERR_INVALID_ARG;
	return vc_state_encode(c, out, out_len);
}

int
tk_vcard_applets_parse(const char *s, unsigned *out)
{
	*out = 0;
	if (s == NULL)
		return TK_ERR_INVALID_ARG;
	if (strcmp(s, "piv") == 0)
		*out = TK_VCARD_APPLET_PIV;
	else if (strcmp(s, "openpgp") == 0)
		*out = TK_VCARD_APPLET_OPENPGP;
	else if (strcmp(s, "both") == 0)
		*out = TK_VCARD_APPLET_PIV | TK_VCARD_APPLET_OPENPGP;
	else
		return TK_ERR_INVALID_ARG;
	return TK_OK;
}

int
tk_vcard_open(const char *state_path, tk_vcard_t **out)
{
	return tk_vcard_open_applets(state_path, 0, out);
}

int
tk_vcard_open_applets(const char *state_path, unsigned applets, tk_vcard_t **out)
{
	tk_vcard_t *c = NULL;
	uint8_t *file = NULL;
	size_t file_len = 0;
	char name[256];
	int dfd = -1, r;

	if (out == NULL)
		return TK_ERR_INVALID_ARG;
	*out = NULL;
	if ((applets & ~(TK_VCARD_APPLET_PIV | TK_VCARD_APPLET_OPENPGP)) != 0)
		return TK_ERR_INVALID_ARG;
	if ((r = card_alloc(&c)) != TK_OK)
		return r;
	if (applets != 0)
		c->applets = applets;
	if (state_path == NULL) {
		if ((r = card_create(c)) != TK_OK)
			goto fail;
		goto done;
	}
	if ((c->path = strdup(state_path)) == NULL) {
		r = TK_ERR_NO_MEMORY;
		goto fail;
	}
	/* The state holds the card's keys and PINs: its directory must be
	 * the user's own, with nobody else allowed to write there. */
	r = tk_fs_parent_open(state_path, VC_STATE_DIR_FLAGS, &dfd, name, sizeof(name));
	if (r != TK_OK) {
		tk_log_error("vcard: %s: %s%s", state_path, tk_strerror(r),
		             r == TK_ERR_UNSAFE ? " (its directory must belong to this user and "
		                                  "not be writable by others)"
		                                : "");
		goto fail;
	}
	if ((r = lock_state(c, dfd, name, state_path)) != TK_OK)
		goto fail;
	r = tk_fs_read(dfd, name, VC_STATE_MAX, &file, &file_len);
	if (r == TK_ERR_NOT_FOUND) {
		if ((r = card_create(c)) != TK_OK || (r = vc_state_save(c)) != TK_OK)
			goto fail;
	} else if (r != TK_OK) {
		tk_log_error("vcard: %s: %s", state_path, tk_strerror(r));
		goto fail;
	} else if ((r = vc_state_decode(c, file, file_len)) != TK_OK) {
		tk_log_error("vcard: %s: %s", state_path, tk_strerror(r));
		goto fail;
	} else if (applets != 0 && applets != c->applets) {
		tk_log_error("vcard: %s holds other applets than asked for", state_path);
		r = TK_ERR_CONFLICT;
		goto fail;
	}
done:
	tk_fs_close(&dfd);
	tk_freezero(file, file_len);
	*out = c;
	return TK_OK;
fail:
	tk_fs_close(&dfd);
	tk_freezero(file, file_len);
	tk_vcard_free(&c);
	return r;
}

/* A copy of src's persistent state in memory (keys are shared: they are
 * immutable once made). Fuzzers start every input from one prepared card. */
int
tk_vcard_test_clone(const tk_vcard_t *src, tk_vcard_t **out)
{
	tk_vcard_t *c = NULL;
	int r;

	*out = NULL;
	if ((r = card_alloc(&c)) != TK_OK)
		return r;
	memcpy(c->pin, src->pin, sizeof(c->pin));
	memcpy(c->puk, src->puk, sizeof(c->puk));
	memcpy(c->fw, src->fw, sizeof(c->fw));
	c->pin_tries = src->pin_tries;
	c->pin_max = src->pin_max;
	c->puk_tries = src->puk_tries;
	c->puk_max = src->puk_max;
	c->mgm_alg = src->mgm_alg;
	c->mgm_touch = src->mgm_touch;
	memcpy(c->mgm_key, src->mgm_key, sizeof(c->mgm_key));
	c->mgm_len = src->mgm_len;
	c->serial = src->serial;
	for (size_t i = 0; i < src->nobjs; i++) {
		if ((r = vc_obj_set(c, src->objs[i].tag, src->objs[i].data, src->objs[i].len)) !=
		    TK_OK) {
			tk_vcard_free(&c);
			return r;
		}
	}
	for (int i = 0; i < VC_NSLOTS; i++) {
		if (src->keys[i].pkey == NULL)
			continue;
		if (EVP_PKEY_up_ref(src->keys[i].pkey) != 1) {
			tk_vcard_free(&c);
			return TK_ERR_CRYPTO;
		}
		c->keys[i] = src->keys[i];
	}
	c->applets = src->applets;
	if (src->pgp != NULL && (r = vc_pgp_clone(src->pgp, &c->pgp)) != TK_OK) {
		tk_vcard_free(&c);
		return r;
	}
	c->latency_profile = src->latency_profile;
	c->no_ext_sw = src->no_ext_sw;
	c->fuzz_fast = src->fuzz_fast;
	*out = c;
	return TK_OK;
}

void
tk_vcard_test_set_auth(tk_vcard_t *c, bool pin, bool mgm)
{
	c->pin_ok = pin;
	c->pin_fresh = pin;
	c->mgm_ok = mgm;
}

void
tk_vcard_test_set_pgp_auth(tk_vcard_t *c, bool pw1, bool pw3)
{
	if (c->pgp == NULL)
		return;
	c->pgp->pw1_81 = c->pgp->pw1_82 = pw1;
	c->pgp->pw3_ok = pw3;
}

void
tk_vcard_test_fuzz_mode(tk_vcard_t *c, bool on)
{
	c->fuzz_fast = on;
}

/* ---- SELECT and vendor commands --------------------------------------- */

static uint16_t
do_select(tk_vcard_t *c, const tk_apdu_t *a, tk_wbuf_t *out)
{
	tk_wbuf_t t;
	uint8_t tmp[96];
	static const char label[] = "tokenkit virtual PIV";

	if (a->p1 != 0x04)
		return SW_WRONG_P1P2;
	if ((c->applets & TK_VCARD_APPLET_OPENPGP) != 0 && vc_pgp_aid_match(a->data, a->lc)) {
		if (c->app != VC_APP_PGP)
			vc_clear_session(c);
		c->app = VC_APP_PGP;
		return vc_pgp_select(c, a, out);
	}
	/* the OpenPGP applet's AID on a card without that applet: answered,
	 * and PIV is no longer selected */
	if (a->lc >= sizeof(other_aid) && a->lc <= 16 &&
	    memcmp(a->data, other_aid, sizeof(other_aid)) == 0) {
		vc_clear_session(c);
		c->app = VC_APP_NONE;
		return SW_OK;
	}
	/* the full AID, the AID without version, or the RID alone */
	if ((c->applets & TK_VCARD_APPLET_PIV) == 0 || a->lc < PIV_RID_LEN ||
	    a->lc > sizeof(piv_aid) || memcmp(a->data, piv_aid, a->lc) != 0)
		return SW_NOT_FOUND;
	if (c->app != VC_APP_PIV)
		vc_clear_session(c);
	c->app = VC_APP_PIV;
	if (a->p2 == 0x0C) /* no response data requested */
		return SW_OK;

	tk_wbuf_init(&t, tmp, sizeof(tmp));
	vc_tlv_put(&t, 0x4F, piv_aid + PIV_RID_LEN, sizeof(piv_aid) - PIV_RID_LEN);
	vc_tlv_put_hdr(&t, 0x79, 2 + PIV_RID_LEN);
	vc_tlv_put(&t, 0x4F, piv_aid, PIV_RID_LEN);
	vc_tlv_put(&t, 0x50, label, sizeof(label) - 1);
	vc_tlv_put_hdr(&t, 0xAC, sizeof(announced_algs) * 3 + 3);
	for (size_t i = 0; i < sizeof(announced_algs); i++)
		vc_tlv_put(&t, 0x80, &announced_algs[i], 1);
	vc_tlv_put(&t, 0x06, "\x00", 1);
	if (tk_wbuf_error(&t) != TK_OK)
		return SW_NO_PRECISE;
	vc_tlv_put(out, 0x61, tmp, t.len);
	return SW_OK;
}

static uint16_t
do_version(tk_vcard_t *c, const tk_apdu_t *a, tk_wbuf_t *out)
{
	(void)c;
	(void)a;
	tk_wbuf_put_bytes(out, c->fw, sizeof(c->fw));
	return SW_OK;
}

static uint16_t
do_serial(tk_vcard_t *c, const tk_apdu_t *a, tk_wbuf_t *out)
{
	(void)a;
	tk_wbuf_put_u32be(out, c->serial);
	return SW_OK;
}

/* RESET (Yubico): only a card whose PIN and PUK are both blocked goes back
 * to factory state; serial and attestation key survive. */
static uint16_t
do_reset(tk_vcard_t *c, const tk_apdu_t *a, tk_wbuf_t *out)
{
	const struct vc_obj *o;
	uint8_t *att = NULL;
	size_t att_len = 0;
	uint16_t sw = SW_OK;

	(void)out;
	if (a->p1 != 0 || a->p2 != 0)
		return SW_WRONG_P1P2;
	if (c->pin_tries != 0 || c->puk_tries != 0)
		return SW_CONDITIONS;
	if ((o = vc_obj_find(c, 0x5FFF01)) != NULL) {
		if ((att = malloc(o->len + 1)) == NULL)
			return SW_MEMORY_FAILURE;
		memcpy(att, o->data, o->len);
		att_len = o->len;
	}
	vc_obj_clear(c);
	for (int i = 0; i < VC_NSLOTS; i++)
		if (vc_slot_ref(i) != REF_ATTEST)
			vc_key_clear(&c->keys[i]);
	vc_clear_session(c);
	if (card_factory(c) != TK_OK ||
	    (att != NULL && vc_obj_set(c, 0x5FFF01, att, att_len) != TK_OK))
		sw = SW_MEMORY_FAILURE;
	free(att);
	c->dirty = true;
	return sw;
}

static vc_handler_fn
handler_for(uint8_t ins)
{
	switch (ins) {
	case 0xCB:
		return vc_get_data;
	case 0xDB:
		return vc_put_data;
	case 0x20:
		return vc_verify;
	case 0x24:
		return vc_change_ref;
	case 0x2C:
		return vc_reset_retry;
	case 0x87:
		return vc_key_auth;
	case 0x47:
		return vc_generate;
	case 0xFE:
		return vc_import;
	case 0xF7:
		return vc_metadata;
	case 0xF9:
		return vc_attest;
	case 0xFF:
		return vc_set_mgm_key;
	case 0xFA:
		return vc_set_pin_retries;
	case 0xFB:
		return do_reset;
	case 0xFD:
		return do_version;
	case 0xF8:
		return do_serial;
	default:
		return NULL;
	}
}

/* ---- the APDU loop ------------------------------------------------------ */

static size_t
put_sw(uint8_t *resp, size_t off, uint16_t sw)
{
	resp[off] = (uint8_t)(sw >> 8);
	resp[off + 1] = (uint8_t)sw;
	return off + 2;
}

/* Send up to ne bytes of the pending response, then 61xx or 9000. */
static size_t
send_part(tk_vcard_t *c, size_t ne, uint8_t *resp, size_t resp_cap)
{
	size_t left = c->pend_len - c->pend_off;
	size_t n = left < ne ? left : ne;

	if (n > resp_cap - 2)
		n = resp_cap - 2;
	if (n > 0)
		memcpy(resp, c->pend + c->pend_off, n);
	c->pend_off += n;
	left -= n;
	if (left == 0) {
		pend_drop(c);
		return put_sw(resp, n, SW_OK);
	}
	return put_sw(resp, n, (uint16_t)(0x6100 | (left > 0xFF ? 0 : left)));
}

static size_t
process(tk_vcard_t *c, const uint8_t *cmd, size_t cmd_len, uint8_t *resp, size_t resp_cap)
{
	tk_apdu_t a, whole;
	bool ext = false;
	vc_handler_fn fn;
	tk_wbuf_t out;
	uint16_t sw;
	size_t ne;

	if (tk_apdu_decode(cmd, cmd_len, &a, &ext) != TK_OK)
		return put_sw(resp, 0, SW_WRONG_LENGTH);
	if (ext && c->no_ext_sw != 0) {
		/* a short-only parser: whatever it made of the bytes, it fails */
		pend_drop(c);
		chain_drop(c);
		return put_sw(resp, 0, c->no_ext_sw);
	}
	if ((a.cla & ~0x10u) != 0)
		return put_sw(resp, 0, SW_CLA_NOT_SUPPORTED);
	ne = a.le != 0 ? a.le : ext ? 65536 : 256;

	if (a.ins == 0xC0) { /* GET RESPONSE */
		if (c->pend == NULL)
			return put_sw(resp, 0, SW_CONDITIONS);
		if (a.p1 != 0 || a.p2 != 0)
			return put_sw(resp, 0, SW_WRONG_P1P2);
		return send_part(c, ne, resp, resp_cap);
	}
	pend_drop(c);
	vc_latency_note(c, &a, ext);

	/* Command chaining (ISO 7816-4 5.1.1.1): collect, answer 9000. */
	if (a.cla & 0x10) {
		if (c->chaining &&
		    (a.ins != c->chain_ins || a.p1 != c->chain_p1 || a.p2 != c->chain_p2))
			chain_drop(c);
		if (a.lc > VC_MAX_CHAIN - c->chain_len) {
			chain_drop(c);
			return put_sw(resp, 0, SW_WRONG_LENGTH);
		}
		if (a.lc > 0)
			memcpy(c->chain + c->chain_len, a.data, a.lc);
		c->chain_len += a.lc;
		c->chaining = true;
		c->chain_ins = a.ins;
		c->chain_p1 = a.p1;
		c->chain_p2 = a.p2;
		return put_sw(resp, 0, SW_OK);
	}
	whole = a;
	if (c->chaining) {
		if (a.ins == c->chain_ins && a.p1 == c->chain_p1 && a.p2 == c->chain_p2) {
			if (a.lc > VC_MAX_CHAIN - c->chain_len) {
				chain_drop(c);
				return put_sw(resp, 0, SW_WRONG_LENGTH);
			}
			if (a.lc > 0)
				memcpy(c->chain + c->chain_len, a.data, a.lc);
			c->chain_len += a.lc;
			whole.data = c->chain;
			whole.lc = c->chain_len;
		} else {
			chain_drop(c);
		}
	}

	if (a.ins == 0xA4)
		fn = do_select;
	else if (c->app == VC_APP_PGP)
		fn = vc_pgp_handler(a.ins);
	else if (c->app == VC_APP_PIV)
		fn = handler_for(a.ins);
	else
		fn = NULL;
	if (fn == NULL) {
		chain_drop(c);
		return put_sw(resp, 0, SW_INS_NOT_SUPPORTED);
	}

	tk_wbuf_init(&out, c->rbuf, VC_RESP_CAP);
	sw = fn(c, &whole, &out);
	chain_drop(c);
	if (tk_wbuf_error(&out) != TK_OK) {
		tk_wipe(c->rbuf, VC_RESP_CAP);
		return put_sw(resp, 0, SW_NO_PRECISE);
	}
	if (c->dirty) {
		c->dirty = false;
		if (vc_state_save(c) != TK_OK) {
			tk_wipe(c->rbuf, out.len);
			return put_sw(resp, 0, SW_MEMORY_FAILURE);
		}
	}
	/* no handler answers data with a warning: an error carries no data */
	if (out.len == 0 || sw != SW_OK) {
		tk_wipe(c->rbuf, out.len);
		return put_sw(resp, 0, sw);
	}
	if ((c->pend = malloc(out.len)) == NULL) {
		tk_wipe(c->rbuf, out.len);
		return put_sw(resp, 0, SW_MEMORY_FAILURE);
	}
	memcpy(c->pend, c->rbuf, out.len);
	tk_wipe(c->rbuf, out.len);
	c->pend_len = out.len;
	c->pend_off = 0;
	return send_part(c, ne, resp, resp_cap);
}

size_t
tk_vcard_process(tk_vcard_t *c, const uint8_t *cmd, size_t cmd_len, uint8_t *resp, size_t resp_cap)
{
	if (resp == NULL || resp_cap < 2)
		return 0;
	if (c == NULL || cmd == NULL)
		return put_sw(resp, 0, SW_NO_PRECISE);
	c->apdus++;
	return process(c, cmd, cmd_len, resp, resp_cap);
}
