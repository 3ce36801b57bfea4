/* tokenkit virtual card: timing profiles.
 *
 * The card never sleeps; transports ask how long a real token would take
 * and delay the response by that much. "yubikey5" uses the published
 * YubiKey 5 PIV timings where they exist (select 1.3 ms, whole certificate
 * read 7.3 ms, VERIFY 9.1 ms, RSA-2048 sign 138.5 ms, P-256 sign 71.6 ms,
 * P-384 sign 118.6 ms); the figures marked "estimate" are not published and
 * only keep the proportions plausible. A chained read spreads its time over
 * its parts so the whole read costs the published figure. */
#include <string.h>

#include <tokenkit/err.h>

#include "vcard_int.h"

enum { PROFILE_NONE = 0, PROFILE_YUBIKEY5 = 1 };

#define US_SMALL 1000u
#define US_SELECT 1300u
#define US_CERT_READ 7300u
#define US_VERIFY 9100u

int
vc_latency_parse(const char *profile)
{
	if (profile == NULL || strcmp(profile, "none") == 0)
		return PROFILE_NONE;
	if (strcmp(profile, "yubikey5") == 0)
		return PROFILE_YUBIKEY5;
	return -1;
}

int
tk_vcard_set_latency(tk_vcard_t *c, const char *profile)
{
	int p = vc_latency_parse(profile);

	if (p < 0)
		return TK_ERR_NOT_FOUND;
	if (c != NULL)
		c->latency_profile = p;
	return TK_OK;
}

static bool
is_cert_object(uint32_t tag)
{
	return tag == 0x5FC105 || tag == 0x5FC10A || tag == 0x5FC10B || tag == 0x5FC101 ||
	       (tag >= 0x5FC10D && tag <= 0x5FC120) || tag == 0x5FFF01;
}

static uint32_t
sign_us(uint8_t alg)
{
	switch (alg) {
	case ALG_RSA1024:
		return 45000; /* estimate */
	case ALG_RSA2048:
		return 138500;
	case ALG_RSA3072:
		return 420000; /* estimate */
	case ALG_RSA4096:
		return 950000; /* estimate */
	case ALG_ECCP256:
		return 71600;
	case ALG_ECCP384:
		return 118600;
	default:
		return US_SMALL;
	}
}

static uint32_t
generate_us(uint8_t alg)
{
	switch (alg) {
	case ALG_RSA1024:
		return 1500000; /* estimate */
	case ALG_RSA2048:
		return 6000000; /* estimate */
	case ALG_RSA3072:
		return 20000000; /* estimate */
	case ALG_RSA4096:
		return 45000000; /* estimate */
	case ALG_ECCP256:
		return 90000; /* estimate */
	case ALG_ECCP384:
		return 150000; /* estimate */
	default:
		return US_SMALL;
	}
}

static size_t
parts(size_t total, size_t ne)
{
	return ne == 0 ? 1 : total == 0 ? 1 : (total + ne - 1) / ne;
}

/* Per-part time of a GET DATA (what the whole read costs / its parts). */
static uint32_t
get_data_us(const tk_vcard_t *c, const tk_apdu_t *a, bool ext)
{
	size_t ne = a->le != 0 ? a->le : ext ? 65536 : 256;
	uint32_t tag;
	size_t len;

	if (vc_parse_tag_list(a->data, a->lc, &tag) != TK_OK || !is_cert_object(tag) ||
	    (len = vc_obj_wire_len(c, tag)) == 0)
		return US_SMALL;
	return (uint32_t)(US_CERT_READ / parts(len, ne));
}

uint64_t
tk_vcard_latency_us(const tk_vcard_t *c, const uint8_t *cmd, size_t cmd_len)
{
	tk_apdu_t a;
	bool ext = false;
	int idx;

	if (c == NULL || c->latency_profile == PROFILE_NONE)
		return 0;
	if (tk_apdu_decode(cmd, cmd_len, &a, &ext) != TK_OK)
		return US_SMALL;
	if (a.cla & 0x10) /* a part of a chained command: just the transfer */
		return US_SMALL;
	switch (a.ins) {
	case 0xA4:
		return US_SELECT;
	case 0xCB:
		return get_data_us(c, &a, ext);
	case 0xC0:
		return c->part_latency_us != 0 ? c->part_latency_us : US_SMALL;
	case 0x20:
		return a.lc > 0 ? US_VERIFY : US_SMALL;
	case 0x87:
		if (a.p2 == REF_MGMT || (idx = vc_slot_index(a.p2)) == VC_SLOT_NONE)
			return US_SMALL;
		return sign_us(a.p1);
	case 0x47:
		for (size_t i = 0; i + 2 < a.lc; i++)
			if (a.data[i] == 0x80 && a.data[i + 1] == 0x01)
				return generate_us(a.data[i + 2]);
		return US_SMALL;
	case 0xF9:
		/* a refusal (no key, an imported one) costs the card nothing */
		if ((idx = vc_slot_index(a.p1)) == VC_SLOT_NONE || c->keys[idx].alg == 0 ||
		    c->keys[idx].origin != ORIGIN_GENERATED)
			return US_SMALL;
		return 200000; /* estimate: one signature by the attestation key */
	default:
		return US_SMALL;
	}
}

/* Remember the per-part time of a read that goes out in several parts so
 * the GET RESPONSEs that follow are charged their share. */
void
vc_latency_note(tk_vcard_t *c, const tk_apdu_t *a, bool ext)
{
	c->part_latency_us = 0;
	if (a->ins == 0xCB && c->latency_profile != PROFILE_NONE)
		c->part_latency_us = get_data_us(c, a, ext);
}
