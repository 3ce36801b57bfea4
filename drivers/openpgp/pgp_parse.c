/* tokenkit OpenPGP card driver: the card's data objects.
 *
 * Every read goes through the host's tk_buf / BER-TLV getters; a length
 * from the card is checked before anything is copied, and an object of the
 * wrong size is refused rather than cut. */
#include <string.h>

#include "openpgp.h"

/* Curve OIDs as algorithm attributes hold them (no DER tag and length). */
static const struct {
	uint8_t oid[10];
	uint8_t len;
	int key_type;
	unsigned bits;
} curves[] = {
        {{0x2A, 0x86, 0x48, 0xCE, 0x3D, 0x03, 0x01, 0x07}, 8, TK_KEY_EC, 256},
        {{0x2B, 0x81, 0x04, 0x00, 0x22}, 5, TK_KEY_EC, 384},
        {{0x2B, 0x81, 0x04, 0x00, 0x23}, 5, TK_KEY_EC, 521},
        {{0x2B, 0x06, 0x01, 0x04, 0x01, 0xDA, 0x47, 0x0F, 0x01}, 9, TK_KEY_ED25519, 255},
        {{0x2B, 0x06, 0x01, 0x04, 0x01, 0x97, 0x55, 0x01, 0x05, 0x01}, 10, TK_KEY_X25519, 255},
};

int
pgp_parse_algo(const uint8_t *p, size_t n, pgp_algo_t *algo)
{
	const tk_drv_host_t *h = pgp_host;
	uint16_t nbits, ebits;
	size_t oid_len;
	tk_buf_t b;
	uint8_t id;

	memset(algo, 0, sizeof(*algo));
	h->buf_init(&b, p, n);
	if (h->buf_get_u8(&b, &id) != TK_OK)
		return TK_ERR_MALFORMED;
	if (id == PGP_ALGO_RSA) {
		/* n bits, e bits, then an optional import format byte */
		if (h->buf_get_u16be(&b, &nbits) != TK_OK ||
		    h->buf_get_u16be(&b, &ebits) != TK_OK || h->buf_left(&b) > 1)
			return TK_ERR_MALFORMED;
		if (nbits < 1024 || nbits > 8192 || nbits % 8 != 0 || ebits == 0 || ebits > 64)
			return TK_ERR_NOT_SUPPORTED;
		algo->id = id;
		algo->key_type = TK_KEY_RSA;
		algo->bits = nbits;
		algo->ebits = ebits;
		return TK_OK;
	}
	if (id != PGP_ALGO_ECDH && id != PGP_ALGO_ECDSA && id != PGP_ALGO_EDDSA)
		return TK_ERR_NOT_SUPPORTED;
	oid_len = h->buf_left(&b);
	/* an import-format byte may follow the OID: 00, or FF (with public
	 * key); no curve OID we know ends in either */
	if (oid_len > 0 && (p[n - 1] == 0x00 || p[n - 1] == 0xFF))
		oid_len--;
	if (oid_len == 0)
		return TK_ERR_MALFORMED;
	for (size_t i = 0; i < sizeof(curves) / sizeof(curves[0]); i++) {
		if (curves[i].len != oid_len || memcmp(curves[i].oid, p + 1, oid_len) != 0)
			continue;
		/* EdDSA is Ed25519 only, Curve25519 only agrees keys */
		if ((id == PGP_ALGO_EDDSA) != (curves[i].key_type == TK_KEY_ED25519))
			return TK_ERR_NOT_SUPPORTED;
		if (curves[i].key_type == TK_KEY_X25519 && id != PGP_ALGO_ECDH)
			return TK_ERR_NOT_SUPPORTED;
		algo->id = id;
		algo->key_type = curves[i].key_type;
		algo->bits = curves[i].bits;
		return TK_OK;
	}
	return TK_ERR_NOT_SUPPORTED; /* brainpool, secp256k1, ...: not (yet) ours */
}

/* Card capabilities from the historical bytes: compact-TLV after the
 * category indicator 00, the last three bytes being status and SW. */
static void
parse_historical(const uint8_t *p, size_t n, pgp_ard_t *ard)
{
	const tk_drv_host_t *h = pgp_host;
	tk_buf_t b, obj;
	uint8_t cat, tl, caps[3];

	if (n < 4)
		return;
	h->buf_init(&b, p, n - 3);
	if (h->buf_get_u8(&b, &cat) != TK_OK || cat != 0x00)
		return;
	while (h->buf_left(&b) > 0) {
		if (h->buf_get_u8(&b, &tl) != TK_OK || h->buf_get_sub(&b, &obj, tl & 0x0F) != TK_OK)
			return;
		if ((tl >> 4) == 0x7 && (tl & 0x0F) == 3 &&
		    h->buf_get_bytes(&obj, caps, sizeof(caps)) == TK_OK) {
			ard->chaining = (caps[2] & 0x80) != 0;
			ard->ext_lc_le = (caps[2] & 0x40) != 0;
		}
	}
}

static int
copy_exact(const tk_tlv_t *t, void *dst, size_t want)
{
	if (t->len != want)
		return TK_ERR_MALFORMED;
	memcpy(dst, t->value, want);
	return TK_OK;
}

static int
ard_element(const tk_tlv_t *e, pgp_ard_t *ard)
{
	int r = TK_OK;

	switch (e->tag) {
	case 0x4F:
		/* RID+PIX (6), version (2), manufacturer (2), serial (4), RFU */
		if (e->len != 16 || memcmp(e->value, "\xD2\x76\x00\x01\x24\x01", 6) != 0)
			return TK_ERR_MALFORMED;
		memcpy(ard->aid, e->value, 16);
		ard->version = (uint16_t)(e->value[6] << 8 | e->value[7]);
		ard->manufacturer = (uint16_t)(e->value[8] << 8 | e->value[9]);
		ard->serial = (uint32_t)e->value[10] << 24 | (uint32_t)e->value[11] << 16 |
		              (uint32_t)e->value[12] << 8 | e->value[13];
		break;
	case 0x5F52:
		parse_historical(e->value, e->len, ard);
		break;
	case 0xC0:
		/* v2 and later: 10 bytes; v1 cards have 1 */
		if (e->len == 0 || e->len > sizeof(ard->ext_caps))
			return TK_ERR_MALFORMED;
		memcpy(ard->ext_caps, e->value, e->len);
		ard->has_ext_caps = true;
		break;
	case 0xC1:
	case 0xC2:
	case 0xC3:
		/* an algorithm we do not know leaves that key unpublished */
		ard->has_algo[e->tag - 0xC1] =
		        pgp_parse_algo(e->value, e->len, &ard->algo[e->tag - 0xC1]) == TK_OK;
		break;
	case 0xC4:
		if (e->len < 7)
			return TK_ERR_MALFORMED;
		memcpy(ard->pw_status, e->value, 7);
		ard->has_pw_status = true;
		break;
	case 0xC5:
		r = copy_exact(e, ard->fpr, sizeof(ard->fpr));
		ard->has_fpr = r == TK_OK;
		break;
	case 0xCD:
		r = copy_exact(e, ard->date, sizeof(ard->date));
		ard->has_dates = r == TK_OK;
		break;
	case 0xDE:
		/* pairs: key reference 01..03, status */
		if (e->len != 6)
			return TK_ERR_MALFORMED;
		for (size_t i = 0; i < 6; i += 2) {
			if (e->value[i] < 1 || e->value[i] > PGP_NKEYS)
				return TK_ERR_MALFORMED;
			ard->key_info[e->value[i] - 1] = e->value[i + 1];
		}
		ard->has_key_info = true;
		break;
	default:
		break;
	}
	return r;
}

int
pgp_parse_ard(const uint8_t *p, size_t n, pgp_ard_t *ard)
{
	const tk_drv_host_t *h = pgp_host;
	tk_tlv_t t, e, d;
	tk_buf_t b, in;
	int r;

	memset(ard, 0, sizeof(*ard));
	if ((r = h->ber_find(p, n, 0x6E, &t)) != TK_OK)
		return r == TK_ERR_NOT_FOUND ? TK_ERR_MALFORMED : r;
	h->buf_init(&b, t.value, t.len);
	while ((r = h->ber_get(&b, &e)) == TK_OK) {
		if (e.tag != 0x73) {
			if ((r = ard_element(&e, ard)) != TK_OK)
				return r;
			continue;
		}
		/* discretionary data objects */
		h->buf_init(&in, e.value, e.len);
		while ((r = h->ber_get(&in, &d)) == TK_OK)
			if ((r = ard_element(&d, ard)) != TK_OK)
				return r;
		if (r != TK_ERR_NOT_FOUND)
			return r;
	}
	if (r != TK_ERR_NOT_FOUND)
		return r;
	/* without the AID there is no card identity to speak of */
	return ard->version != 0 ? TK_OK : TK_ERR_MALFORMED;
}

int
pgp_parse_cardholder(const uint8_t *p, size_t n, char *name, size_t cap)
{
	const tk_drv_host_t *h = pgp_host;
	size_t sl, gl, out = 0;
	const uint8_t *v, *sep;
	tk_tlv_t t, nm;
	int r;

	if (cap == 0)
		return TK_ERR_INVALID_ARG;
	name[0] = '\0';
	if ((r = h->ber_find(p, n, 0x65, &t)) == TK_OK)
		r = h->ber_find(t.value, t.len, 0x5B, &nm);
	else if (r == TK_ERR_NOT_FOUND)
		r = h->ber_find(p, n, 0x5B, &nm);
	if (r == TK_ERR_NOT_FOUND)
		return TK_OK; /* no name */
	if (r != TK_OK)
		return r;
	if (nm.len > 39)
		return TK_ERR_MALFORMED;
	v = nm.value;
	/* ISO 7501-1: Surname<<Given<Names; '<' is a space */
	sep = NULL;
	for (size_t i = 0; i + 1 < nm.len && sep == NULL; i++)
		if (v[i] == '<' && v[i + 1] == '<')
			sep = v + i;
	sl = sep != NULL ? (size_t)(sep - v) : nm.len;
	gl = sep != NULL ? nm.len - sl - 2 : 0;
	for (int part = sep != NULL ? 0 : 1; part < 2; part++) {
		const uint8_t *s = part == 0 ? sep + 2 : v;
		size_t l = part == 0 ? gl : sl;

		if (l > 0 && out > 0 && out + 1 < cap)
			name[out++] = ' ';
		for (size_t i = 0; i < l && out + 1 < cap; i++) {
			uint8_t c = s[i] == '<' ? ' ' : s[i];

			name[out++] = c >= 0x20 && c < 0x7F ? (char)c : '?';
		}
	}
	name[out] = '\0';
	return TK_OK;
}

int
pgp_parse_kdf(const uint8_t *p, size_t n, pgp_kdf_t *kdf)
{
	const tk_drv_host_t *h = pgp_host;
	tk_tlv_t e;
	tk_buf_t b;
	bool have_algo = false, have_hash = false, have_count = false;
	int r;

	memset(kdf, 0, sizeof(*kdf));
	h->buf_init(&b, p, n);
	while ((r = h->ber_get(&b, &e)) == TK_OK) {
		switch (e.tag) {
		case 0x81:
			if (e.len != 1 || (e.value[0] != 0x00 && e.value[0] != 0x03))
				return TK_ERR_MALFORMED;
			kdf->on = e.value[0] == 0x03;
			have_algo = true;
			break;
		case 0x82:
			if (e.len != 1 || (e.value[0] != 0x08 && e.value[0] != 0x0A))
				return TK_ERR_MALFORMED;
			kdf->hash = e.value[0];
			have_hash = true;
			break;
		case 0x83:
			if (e.len != 4)
				return TK_ERR_MALFORMED;
			kdf->count = (uint32_t)e.value[0] << 24 | (uint32_t)e.value[1] << 16 |
			             (uint32_t)e.value[2] << 8 | e.value[3];
			have_count = true;
			break;
		case 0x84:
		case 0x85:
		case 0x86:
			if (e.len != 8)
				return TK_ERR_MALFORMED;
			memcpy(kdf->salt[e.tag - 0x84], e.value, 8);
			kdf->has_salt[e.tag - 0x84] = true;
			break;
		default:
			break; /* initial hashes (87, 88) and later additions */
		}
	}
	if (r != TK_ERR_NOT_FOUND || !have_algo)
		return TK_ERR_MALFORMED;
	if (!kdf->on)
		return TK_OK;
	/* the count bounds the hashing we do per PIN: at most 64 MiB */
	if (!have_hash || !have_count || !kdf->has_salt[0] || kdf->count == 0 ||
	    kdf->count > (64u << 20))
		return TK_ERR_MALFORMED;
	return TK_OK;
}

int
pgp_parse_pubkey(const pgp_algo_t *algo, const uint8_t *p, size_t n, uint8_t **spki,
                 size_t *spki_len)
{
	const tk_drv_host_t *h = pgp_host;
	tk_tlv_t t, a, b;
	const uint8_t *v;
	size_t vl;
	int r;

	*spki = NULL;
	*spki_len = 0;
	if ((r = h->ber_find(p, n, 0x7F49, &t)) != TK_OK)
		return r == TK_ERR_NOT_FOUND ? TK_ERR_MALFORMED : r;
	if (algo->key_type == TK_KEY_RSA) {
		if (h->ber_find(t.value, t.len, 0x81, &a) != TK_OK ||
		    h->ber_find(t.value, t.len, 0x82, &b) != TK_OK)
			return TK_ERR_MALFORMED;
		return h->spki_build(TK_KEY_RSA, algo->bits, a.value, a.len, b.value, b.len, spki,
		                     spki_len);
	}
	if (h->ber_find(t.value, t.len, 0x86, &a) != TK_OK)
		return TK_ERR_MALFORMED;
	v = a.value;
	vl = a.len;
	/* 25519 keys: 32 bytes, some cards with GnuPG's 40 prefix */
	if (algo->key_type != TK_KEY_EC && vl == 33 && v[0] == 0x40) {
		v++;
		vl--;
	}
	return h->spki_build(algo->key_type, algo->bits, v, vl, NULL, 0, spki, spki_len);
}
