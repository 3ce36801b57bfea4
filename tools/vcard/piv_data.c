/* tokenkit virtual card: PIV data objects (SP 800-73-4 part 1, 3.1 and 3.2).
 *
 * Objects are kept as tag → value (the contents of the 53 template, or of
 * 7E / 7F61 for discovery and the biometric group template). */
#include <stdlib.h>
#include <string.h>

#include <tokenkit/err.h>
#include <tokenkit/mem.h>

#include "vcard_int.h"

#define TAG_DISCOVERY 0x7E
#define TAG_BIT 0x7F61
#define TAG_CHUID 0x5FC102
#define TAG_CCC 0x5FC107

/* FASC-N of a non-federal issuer (agency code 9999, system code 9999,
 * credential 999999) in the 5-bit BCD-with-parity encoding of TIG SCEPACS. */
static const uint8_t fascn[25] = {
        0xD4, 0xE7, 0x39, 0xDA, 0x73, 0x9C, 0xED, 0x39, 0xCE, 0x73, 0x9D, 0x83, 0x68,
        0x58, 0x21, 0x08, 0x42, 0x10, 0x84, 0x21, 0xC8, 0x42, 0x10, 0xC3, 0xEB,
};

bool
vc_obj_tag_valid(uint32_t tag)
{
	if (tag == TAG_DISCOVERY || tag == TAG_BIT)
		return true;
	if (tag >= 0x5FC101 && tag <= 0x5FC123)
		return true;
	/* Yubico: admin data 5FFF00, attestation certificate 5FFF01, ... */
	return tag >= 0x5FFF00 && tag <= 0x5FFF15;
}

/* Objects whose read needs the PIN: fingerprints, facial image, printed
 * information (Yubico keeps its PIN-protected data there), iris images. */
static bool
obj_read_needs_pin(uint32_t tag)
{
	return tag == 0x5FC103 || tag == 0x5FC108 || tag == 0x5FC109 || tag == 0x5FC121;
}

const struct vc_obj *
vc_obj_find(const tk_vcard_t *c, uint32_t tag)
{
	for (size_t i = 0; i < c->nobjs; i++)
		if (c->objs[i].tag == tag)
			return &c->objs[i];
	return NULL;
}

static void
obj_remove(tk_vcard_t *c, size_t i)
{
	tk_freezero(c->objs[i].data, c->objs[i].len);
	c->objs[i] = c->objs[c->nobjs - 1];
	memset(&c->objs[c->nobjs - 1], 0, sizeof(c->objs[0]));
	c->nobjs--;
}

/* Store (len > 0) or delete (len == 0) an object. */
int
vc_obj_set(tk_vcard_t *c, uint32_t tag, const uint8_t *data, size_t len)
{
	uint8_t *copy = NULL;
	size_t i;

	if (!vc_obj_tag_valid(tag))
		return TK_ERR_INVALID_ARG;
	if (len > VC_MAX_OBJECT)
		return TK_ERR_TOO_LONG;
	for (i = 0; i < c->nobjs; i++)
		if (c->objs[i].tag == tag)
			break;
	if (len == 0) {
		if (i < c->nobjs)
			obj_remove(c, i);
		return TK_OK;
	}
	if (i == c->nobjs && c->nobjs == VC_MAX_OBJECTS)
		return TK_ERR_NO_SPACE;
	if ((copy = malloc(len)) == NULL)
		return TK_ERR_NO_MEMORY;
	memcpy(copy, data, len);
	if (i < c->nobjs) {
		tk_freezero(c->objs[i].data, c->objs[i].len);
	} else {
		c->nobjs++;
	}
	c->objs[i].tag = tag;
	c->objs[i].data = copy;
	c->objs[i].len = len;
	return TK_OK;
}

void
vc_obj_clear(tk_vcard_t *c)
{
	while (c->nobjs > 0)
		obj_remove(c, c->nobjs - 1);
}

static uint32_t
obj_wrapper(uint32_t tag)
{
	return tag == TAG_DISCOVERY || tag == TAG_BIT ? tag : 0x53;
}

size_t
vc_obj_wire_len(const tk_vcard_t *c, uint32_t tag)
{
	const struct vc_obj *o = vc_obj_find(c, tag);

	if (o == NULL)
		return 0;
	return vc_tlv_hdr_len(obj_wrapper(tag), o->len) + o->len;
}

int
vc_obj_defaults(tk_vcard_t *c)
{
	static const uint8_t piv_aid[] = {0xA0, 0x00, 0x00, 0x03, 0x08, 0x00,
	                                  0x00, 0x10, 0x00, 0x01, 0x00};
	uint8_t buf[128], rnd[16];
	tk_wbuf_t w;
	int r;

	/* Discovery: PIV AID, PIN usage policy "PIV PIN only" (40 00). */
	tk_wbuf_init(&w, buf, sizeof(buf));
	vc_tlv_put(&w, 0x4F, piv_aid, sizeof(piv_aid));
	vc_tlv_put(&w, 0x5F2F, "\x40\x00", 2);
	if ((r = vc_obj_set(c, TAG_DISCOVERY, buf, w.len)) != TK_OK)
		return r;

	/* CHUID: FASC-N, GUID, expiration date, empty signature, EDC. */
	if ((r = vc_random(rnd, sizeof(rnd))) != TK_OK)
		return r;
	tk_wbuf_init(&w, buf, sizeof(buf));
	vc_tlv_put(&w, 0x30, fascn, sizeof(fascn));
	vc_tlv_put(&w, 0x34, rnd, 16);
	vc_tlv_put(&w, 0x35, "20301231", 8);
	vc_tlv_put(&w, 0x3E, NULL, 0);
	vc_tlv_put(&w, 0xFE, NULL, 0);
	if ((r = vc_obj_set(c, TAG_CHUID, buf, w.len)) != TK_OK)
		return r;

	/* CCC: card identifier (GSC-RID A0 00 00 01 16, manufacturer FF, card
	 * type 02 (Java Card), 14 random bytes), version 2.1 of the container
	 * and grammar, PKCS#15 00, data model 10, the rest empty. */
	if ((r = vc_random(rnd, 14)) != TK_OK)
		return r;
	tk_wbuf_init(&w, buf, sizeof(buf));
	vc_tlv_put_hdr(&w, 0xF0, 21);
	tk_wbuf_put_bytes(&w, "\xA0\x00\x00\x01\x16\xFF\x02", 7);
	tk_wbuf_put_bytes(&w, rnd, 14);
	vc_tlv_put(&w, 0xF1, "\x21", 1);
	vc_tlv_put(&w, 0xF2, "\x21", 1);
	vc_tlv_put(&w, 0xF3, NULL, 0);
	vc_tlv_put(&w, 0xF4, "\x00", 1);
	vc_tlv_put(&w, 0xF5, "\x10", 1);
	vc_tlv_put(&w, 0xF6, NULL, 0);
	vc_tlv_put(&w, 0xF7, NULL, 0);
	vc_tlv_put(&w, 0xFA, NULL, 0);
	vc_tlv_put(&w, 0xFB, NULL, 0);
	vc_tlv_put(&w, 0xFC, NULL, 0);
	vc_tlv_put(&w, 0xFD, NULL, 0);
	vc_tlv_put(&w, 0xFE, NULL, 0);
	if (tk_wbuf_error(&w) != TK_OK)
		return TK_ERR_INTERNAL;
	return vc_obj_set(c, TAG_CCC, buf, w.len);
}

/* The tag list of GET DATA / PUT DATA: 5C with a one to three byte tag. */
int
vc_parse_tag_list(const uint8_t *p, size_t n, uint32_t *tag)
{
	tk_buf_t b, v;
	uint32_t t, val = 0;
	uint8_t x;
	int r;

	*tag = 0;
	tk_buf_init(&b, p, n);
	if ((r = vc_tlv_get(&b, &t, &v)) != TK_OK)
		return r;
	if (t != 0x5C || tk_buf_left(&v) < 1 || tk_buf_left(&v) > 3)
		return TK_ERR_MALFORMED;
	while (tk_buf_get_u8(&v, &x) == TK_OK)
		val = (val << 8) | x;
	*tag = val;
	return TK_OK;
}

uint16_t
vc_get_data(tk_vcard_t *c, const tk_apdu_t *a, tk_wbuf_t *out)
{
	const struct vc_obj *o;
	uint32_t tag;

	if (a->p1 != 0x3F || a->p2 != 0xFF)
		return SW_WRONG_P1P2;
	if (vc_parse_tag_list(a->data, a->lc, &tag) != TK_OK)
		return SW_WRONG_DATA;
	/* the tag list must be all of the data */
	if (a->lc != vc_tlv_hdr_len(0x5C, 0) + (tag > 0xFFFF ? 3u : tag > 0xFF ? 2u : 1u))
		return SW_WRONG_DATA;
	if (!vc_obj_tag_valid(tag) || (o = vc_obj_find(c, tag)) == NULL)
		return SW_NOT_FOUND;
	if (obj_read_needs_pin(tag) && !c->pin_ok)
		return SW_SECURITY;
	vc_tlv_put(out, obj_wrapper(tag), o->data, o->len);
	return SW_OK;
}

uint16_t
vc_put_data(tk_vcard_t *c, const tk_apdu_t *a, tk_wbuf_t *out)
{
	tk_buf_t b, v, lst;
	uint32_t t, tag;
	int r;

	(void)out;
	if (a->p1 != 0x3F || a->p2 != 0xFF)
		return SW_WRONG_P1P2;
	if (!c->mgm_ok)
		return SW_SECURITY;
	tk_buf_init(&b, a->data, a->lc);
	if (vc_tlv_get(&b, &t, &v) != TK_OK)
		return SW_WRONG_DATA;
	if (t == TAG_DISCOVERY || t == TAG_BIT) {
		/* these two are written as their own template, without 5C */
		tag = t;
	} else if (t == 0x5C) {
		lst = v;
		if (vc_parse_tag_list(a->data, (size_t)(lst.data + lst.len - a->data), &tag) !=
		    TK_OK)
			return SW_WRONG_DATA;
		if (vc_tlv_get(&b, &t, &v) != TK_OK || t != 0x53)
			return SW_WRONG_DATA;
	} else {
		return SW_WRONG_DATA;
	}
	if (tk_buf_left(&b) != 0 || !vc_obj_tag_valid(tag))
		return SW_WRONG_DATA;
	r = vc_obj_set(c, tag, v.data, v.len);
	if (r == TK_ERR_TOO_LONG || r == TK_ERR_NO_SPACE)
		return SW_NO_SPACE;
	if (r != TK_OK)
		return SW_MEMORY_FAILURE;
	c->dirty = true;
	return SW_OK;
}
