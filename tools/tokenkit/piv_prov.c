/* Parsers of PIV card data for `tokenkit piv` (see piv_prov.h). */
#include <string.h>

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/pem.h>

#include <tokenkit/buf.h>
#include <tokenkit/err.h>
#include <tokenkit/tlv.h>

#include "piv_attest.h"
#include "piv_prov.h"

uint32_t
piv_slot_object(uint8_t ref)
{
	switch (ref) {
	case 0x9A:
		return 0x5FC105;
	case 0x9C:
		return 0x5FC10A;
	case 0x9D:
		return 0x5FC10B;
	case 0x9E:
		return 0x5FC101;
	default: /* retired 82..95 */
		return ref >= 0x82 && ref <= 0x95 ? 0x5FC10Du + (ref - 0x82u) : 0;
	}
}

int
piv_parse_slot(const char *s, uint8_t *ref)
{
	unsigned v = 0;

	*ref = 0;
	if (strncmp(s, "0x", 2) == 0 || strncmp(s, "0X", 2) == 0)
		s += 2;
	if (strlen(s) != 2)
		return TK_ERR_INVALID_ARG;
	for (int i = 0; i < 2; i++) {
		char ch = s[i];
		unsigned d = ch >= '0' && ch <= '9'   ? (unsigned)(ch - '0')
		             : ch >= 'a' && ch <= 'f' ? (unsigned)(ch - 'a' + 10)
		             : ch >= 'A' && ch <= 'F' ? (unsigned)(ch - 'A' + 10)
		                                      : 16u;

		if (d > 15)
			return TK_ERR_INVALID_ARG;
		v = v * 16 + d;
	}
	if (piv_slot_object((uint8_t)v) == 0)
		return TK_ERR_INVALID_ARG;
	*ref = (uint8_t)v;
	return TK_OK;
}

int
piv_pubkey_from_generate(uint8_t alg, const uint8_t *p, size_t len, EVP_PKEY **out)
{
	tk_buf_t b;
	tk_tlv_t t;

	*out = NULL;
	if (alg != PIV_ALG_RSA2048 && alg != PIV_ALG_ECCP256 && alg != PIV_ALG_ECCP384)
		return TK_ERR_INVALID_ARG;
	tk_buf_init(&b, p, len);
	if (tk_ber_get(&b, &t) != TK_OK || t.tag != 0x7F49 || t.value == NULL)
		return TK_ERR_MALFORMED;
	/* nothing but padding after the template */
	if (tk_buf_left(&b) != 0 && tk_ber_get(&b, &(tk_tlv_t){0}) != TK_ERR_NOT_FOUND)
		return TK_ERR_MALFORMED;
	return tool_piv_pubkey(alg, t.value, t.len, out) == TK_OK ? TK_OK : TK_ERR_MALFORMED;
}

int
piv_pubkey_from_metadata(const uint8_t *p, size_t len, uint8_t *alg, EVP_PKEY **out)
{
	tool_piv_meta_t m;

	*alg = 0;
	*out = NULL;
	if (tool_piv_metadata_parse(p, len, &m) != TK_OK || m.alg == 0 || m.pub == NULL)
		return TK_ERR_MALFORMED;
	if (m.alg != PIV_ALG_RSA2048 && m.alg != PIV_ALG_ECCP256 && m.alg != PIV_ALG_ECCP384)
		return TK_ERR_NOT_SUPPORTED;
	*alg = m.alg;
	return tool_piv_pubkey(m.alg, m.pub, m.pub_len, out) == TK_OK ? TK_OK : TK_ERR_MALFORMED;
}

int
piv_auth_response(const uint8_t *p, size_t len, uint32_t tag, const uint8_t **v, size_t *vlen)
{
	tk_buf_t b, in;
	tk_tlv_t t, x;
	bool found = false;

	*v = NULL;
	*vlen = 0;
	tk_buf_init(&b, p, len);
	if (tk_ber_get(&b, &t) != TK_OK || t.tag != 0x7C || tk_buf_left(&b) != 0 || t.value == NULL)
		return TK_ERR_MALFORMED;
	tk_buf_init(&in, t.value, t.len);
	while (tk_buf_left(&in) > 0) {
		int r = tk_ber_get(&in, &x);

		if (r == TK_ERR_NOT_FOUND)
			break; /* trailing padding */
		if (r != TK_OK)
			return TK_ERR_MALFORMED;
		if (x.tag != tag)
			continue;
		if (found || x.len == 0)
			return TK_ERR_MALFORMED;
		found = true;
		*v = x.value;
		*vlen = x.len;
	}
	return found ? TK_OK : TK_ERR_MALFORMED;
}

X509 *
piv_load_cert(const char *path)
{
	BIO *b = BIO_new_file(path, "r");
	X509 *x = NULL;

	if (b == NULL)
		return NULL;
	x = PEM_read_bio_X509(b, NULL, NULL, NULL);
	if (x == NULL) { /* DER */
		(void)BIO_reset(b);
		x = d2i_X509_bio(b, NULL);
	}
	BIO_free(b);
	ERR_clear_error();
	return x;
}
