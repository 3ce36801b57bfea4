/* tokenkit PIV driver: certificate containers (with compression), public
 * keys from Yubico metadata. */
#include <stdlib.h>
#include <string.h>

#include <zlib.h>

#include <tokenkit/err.h>
#include <tokenkit/log.h>
#include <tokenkit/mem.h>
#include <tokenkit/tlv.h>

#include "piv.h"
#include "x509.h"

int
piv_inflate(const uint8_t *in, size_t in_len, size_t max, uint8_t **out, size_t *out_len)
{
	z_stream zs;
	uint8_t *buf;
	int zr, r = TK_ERR_MALFORMED;

	*out = NULL;
	*out_len = 0;
	if (in_len == 0 || in_len > UINT32_MAX || max == 0 || max > UINT32_MAX - 1)
		return TK_ERR_MALFORMED;
	/* one byte of room past max tells "too long" from "exactly max" */
	if ((buf = malloc(max + 1)) == NULL)
		return TK_ERR_NO_MEMORY;
	memset(&zs, 0, sizeof(zs));
	/* 15 + 32: zlib or gzip header, detected automatically */
	if (inflateInit2(&zs, 15 + 32) != Z_OK) {
		free(buf);
		return TK_ERR_NO_MEMORY;
	}
	zs.next_in = (Bytef *)(uintptr_t)in;
	zs.avail_in = (uInt)in_len;
	zs.next_out = buf;
	zs.avail_out = (uInt)(max + 1);
	zr = inflate(&zs, Z_FINISH);
	if (zr == Z_STREAM_END) {
		r = TK_OK;
	} else if (zs.avail_out == 0) {
		r = TK_ERR_TOO_LONG; /* would inflate past the bound: a bomb or junk */
	} else if (zr == Z_MEM_ERROR) {
		r = TK_ERR_NO_MEMORY;
	}
	if (r == TK_OK && zs.total_out > max)
		r = TK_ERR_TOO_LONG;
	if (r == TK_OK) {
		*out = buf;
		*out_len = zs.total_out;
	} else {
		free(buf);
	}
	inflateEnd(&zs);
	return r;
}

int
piv_parse_cert_object(const uint8_t *p, size_t n, uint8_t **cert, size_t *cert_len)
{
	tk_tlv_t t, e, c = {0};
	bool have_cert = false, compressed = false;
	tk_buf_t b;
	int r;

	*cert = NULL;
	*cert_len = 0;
	if ((r = tk_ber_find(p, n, 0x53, &t)) != TK_OK)
		return r == TK_ERR_NOT_FOUND ? TK_ERR_MALFORMED : r;
	tk_buf_init(&b, t.value, t.len);
	while ((r = tk_ber_get(&b, &e)) == TK_OK) {
		if (e.tag == 0x70 && !have_cert) {
			c = e;
			have_cert = true;
		} else if (e.tag == 0x71) {
			/* CertInfo: bit 0 = compressed (gzip); other bits reserved */
			if (e.len > 1)
				return TK_ERR_MALFORMED;
			compressed = e.len == 1 && (e.value[0] & 0x01) != 0;
		}
	}
	if (r != TK_ERR_NOT_FOUND)
		return r;
	if (!have_cert || c.len == 0)
		return TK_OK; /* an empty container: no certificate */
	if (compressed)
		return piv_inflate(c.value, c.len, PIV_MAX_CERT, cert, cert_len);
	if (c.len > PIV_MAX_CERT)
		return TK_ERR_TOO_LONG;
	if ((*cert = malloc(c.len)) == NULL)
		return TK_ERR_NO_MEMORY;
	memcpy(*cert, c.value, c.len);
	*cert_len = c.len;
	return TK_OK;
}

int
piv_alg_info(uint8_t alg, int *key_type, unsigned *bits)
{
	*key_type = TK_KEY_NONE;
	*bits = 0;
	switch (alg) {
	case PIV_ALG_RSA1024:
		*key_type = TK_KEY_RSA;
		*bits = 1024;
		break;
	case PIV_ALG_RSA2048:
		*key_type = TK_KEY_RSA;
		*bits = 2048;
		break;
	case PIV_ALG_RSA3072:
		*key_type = TK_KEY_RSA;
		*bits = 3072;
		break;
	case PIV_ALG_RSA4096:
		*key_type = TK_KEY_RSA;
		*bits = 4096;
		break;
	case PIV_ALG_P256:
		*key_type = TK_KEY_EC;
		*bits = 256;
		break;
	case PIV_ALG_P384:
		*key_type = TK_KEY_EC;
		*bits = 384;
		break;
	default:
		return TK_ERR_NOT_SUPPORTED;
	}
	return TK_OK;
}

uint8_t
piv_alg_for(int key_type, unsigned bits)
{
	if (key_type == TK_KEY_RSA) {
		switch (bits) {
		case 1024:
			return PIV_ALG_RSA1024;
		case 2048:
			return PIV_ALG_RSA2048;
		case 3072:
			return PIV_ALG_RSA3072;
		case 4096:
			return PIV_ALG_RSA4096;
		default:
			return 0;
		}
	}
	if (key_type == TK_KEY_EC) {
		switch (bits) {
		case 256:
			return PIV_ALG_P256;
		case 384:
			return PIV_ALG_P384;
		default:
			return 0;
		}
	}
	return 0;
}

int
piv_pubkey_to_spki(uint8_t alg, const uint8_t *p, size_t n, uint8_t **spki, size_t *spki_len)
{
	tk_tlv_t mod, exp, pt;
	int key_type, r;
	unsigned bits;

	*spki = NULL;
	*spki_len = 0;
	if ((r = piv_alg_info(alg, &key_type, &bits)) != TK_OK)
		return r;
	if (key_type == TK_KEY_RSA) {
		if (tk_ber_find(p, n, 0x81, &mod) != TK_OK ||
		    tk_ber_find(p, n, 0x82, &exp) != TK_OK)
			return TK_ERR_MALFORMED;
		return tk_spki_build(TK_KEY_RSA, bits, mod.value, mod.len, exp.value, exp.len, spki,
		                     spki_len);
	}
	if (tk_ber_find(p, n, 0x86, &pt) != TK_OK)
		return TK_ERR_MALFORMED;
	return tk_spki_build(TK_KEY_EC, bits, pt.value, pt.len, NULL, 0, spki, spki_len);
}

void
piv_metadata_clear(piv_metadata_t *md)
{
	free(md->spki);
	memset(md, 0, sizeof(*md));
}

/* Yubico metadata: 01 algorithm, 02 policy (PIN, touch), 03 origin,
 * 04 public key (81/82 or 86), 05 default value, 06 retries (total, left). */
int
piv_parse_metadata(const uint8_t *p, size_t n, piv_metadata_t *md)
{
	tk_tlv_t e, pub = {0};
	bool have_pub = false;
	tk_buf_t b;
	int r;

	memset(md, 0, sizeof(*md));
	tk_buf_init(&b, p, n);
	while ((r = tk_ber_get(&b, &e)) == TK_OK) {
		switch (e.tag) {
		case 0x01:
			if (e.len != 1)
				return TK_ERR_MALFORMED;
			md->alg = e.value[0];
			md->has_alg = true;
			break;
		case 0x02:
			if (e.len < 1 || e.len > 2)
				return TK_ERR_MALFORMED;
			md->pin_policy = e.value[0];
			md->touch_policy = e.len > 1 ? e.value[1] : 0;
			md->has_policy = true;
			break;
		case 0x04:
			pub = e;
			have_pub = true;
			break;
		case 0x06:
			if (e.len != 2)
				return TK_ERR_MALFORMED;
			md->retries_total = e.value[0];
			md->retries_left = e.value[1];
			md->has_retries = true;
			break;
		default:
			break;
		}
	}
	if (r != TK_ERR_NOT_FOUND)
		return r;
	if (have_pub) {
		if (!md->has_alg)
			return TK_ERR_MALFORMED;
		if ((r = piv_pubkey_to_spki(md->alg, pub.value, pub.len, &md->spki,
		                            &md->spki_len)) != TK_OK) {
			piv_metadata_clear(md);
			return r;
		}
	}
	return TK_OK;
}
