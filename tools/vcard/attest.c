/* tokenkit virtual card: key attestation (Yubico's ATTEST, 00 F9).
 *
 * A fresh card makes an attestation key (P-256, slot F9) and a self-signed
 * CA certificate for it, kept in object 5FFF01 like the token keeps its
 * attestation certificate. ATTEST issues an X.509 certificate for a key that
 * was generated on the card, signed by that key, with the Yubico extensions
 * for firmware version, serial and policy. */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/asn1.h>
#include <openssl/objects.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <tokenkit/err.h>
#include <tokenkit/mem.h>

#include "vcard_int.h"

#define TAG_ATTEST_CERT 0x5FFF01
#define CA_NAME "tokenkit virtual PIV attestation CA"

static int
set_validity(X509 *x)
{
	if (X509_gmtime_adj(X509_getm_notBefore(x), 0) == NULL ||
	    ASN1_TIME_set_string(X509_getm_notAfter(x), "20521231235959Z") != 1)
		return TK_ERR_CRYPTO;
	return TK_OK;
}

static int
set_random_serial(X509 *x)
{
	uint8_t r[8];

	if (vc_random(r, sizeof(r)) != TK_OK)
		return TK_ERR_CRYPTO;
	r[0] &= 0x7F;
	uint64_t v = 0;
	for (size_t i = 0; i < sizeof(r); i++)
		v = (v << 8) | r[i];
	return ASN1_INTEGER_set_uint64(X509_get_serialNumber(x), v | 1) == 1 ? TK_OK
	                                                                     : TK_ERR_CRYPTO;
}

static int
add_ext_nid(X509 *x, X509 *issuer, int nid, const char *value)
{
	X509V3_CTX v3;
	X509_EXTENSION *ext;
	int ok;

	X509V3_set_ctx(&v3, issuer, x, NULL, NULL, 0);
	if ((ext = X509V3_EXT_conf_nid(NULL, &v3, nid, value)) == NULL)
		return TK_ERR_CRYPTO;
	ok = X509_add_ext(x, ext, -1);
	X509_EXTENSION_free(ext);
	return ok == 1 ? TK_OK : TK_ERR_CRYPTO;
}

/* A non-critical extension with the given OID and raw extnValue contents. */
static int
add_ext_raw(X509 *x, const char *oid, const uint8_t *val, size_t len)
{
	ASN1_OBJECT *obj = NULL;
	ASN1_OCTET_STRING *os = NULL;
	X509_EXTENSION *ext = NULL;
	int r = TK_ERR_CRYPTO;

	if ((obj = OBJ_txt2obj(oid, 1)) == NULL || (os = ASN1_OCTET_STRING_new()) == NULL ||
	    ASN1_OCTET_STRING_set(os, val, (int)len) != 1 ||
	    (ext = X509_EXTENSION_create_by_OBJ(NULL, obj, 0, os)) == NULL ||
	    X509_add_ext(x, ext, -1) != 1)
		goto out;
	r = TK_OK;
out:
	X509_EXTENSION_free(ext);
	ASN1_OCTET_STRING_free(os);
	ASN1_OBJECT_free(obj);
	return r;
}

static int
cert_der(X509 *x, uint8_t **der, size_t *der_len)
{
	int n;
	uint8_t *p;

	*der = NULL;
	*der_len = 0;
	if ((n = i2d_X509(x, NULL)) <= 0 || (*der = malloc((size_t)n)) == NULL)
		return TK_ERR_CRYPTO;
	p = *der;
	if (i2d_X509(x, &p) != n) {
		free(*der);
		*der = NULL;
		return TK_ERR_CRYPTO;
	}
	*der_len = (size_t)n;
	return TK_OK;
}

int
vc_attest_create(tk_vcard_t *c)
{
	int idx = vc_slot_index(REF_ATTEST);
	EVP_PKEY *key = NULL;
	X509 *x = NULL;
	X509_NAME *name = NULL;
	uint8_t *der = NULL, *obj = NULL;
	size_t der_len = 0;
	tk_wbuf_t w;
	int r = TK_ERR_CRYPTO;

	if ((r = vc_keygen(ALG_ECCP256, &key)) != TK_OK)
		return r;
	r = TK_ERR_CRYPTO;
	if ((x = X509_new()) == NULL || (name = X509_NAME_new()) == NULL ||
	    X509_set_version(x, 2) != 1 ||
	    X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8, (const unsigned char *)CA_NAME,
	                               -1, -1, 0) != 1 ||
	    X509_set_subject_name(x, name) != 1 || X509_set_issuer_name(x, name) != 1 ||
	    X509_set_pubkey(x, key) != 1)
		goto out;
	if (set_random_serial(x) != TK_OK || set_validity(x) != TK_OK ||
	    add_ext_nid(x, x, NID_basic_constraints, "critical,CA:TRUE") != TK_OK ||
	    add_ext_nid(x, x, NID_key_usage, "critical,keyCertSign,cRLSign") != TK_OK ||
	    add_ext_nid(x, x, NID_subject_key_identifier, "hash") != TK_OK)
		goto out;
	if (X509_sign(x, key, EVP_sha256()) <= 0 || cert_der(x, &der, &der_len) != TK_OK)
		goto out;
	/* certificate object: 70 certificate, 71 certinfo (uncompressed), FE EDC */
	if ((obj = malloc(der_len + 16)) == NULL) {
		r = TK_ERR_NO_MEMORY;
		goto out;
	}
	tk_wbuf_init(&w, obj, der_len + 16);
	vc_tlv_put(&w, 0x70, der, der_len);
	vc_tlv_put(&w, 0x71, "\x00", 1);
	vc_tlv_put(&w, 0xFE, NULL, 0);
	if (tk_wbuf_error(&w) != TK_OK || (r = vc_obj_set(c, TAG_ATTEST_CERT, obj, w.len)) != TK_OK)
		goto out;
	vc_key_clear(&c->keys[idx]);
	c->keys[idx].alg = ALG_ECCP256;
	c->keys[idx].pin_policy = PIN_POLICY_NEVER;
	c->keys[idx].touch_policy = TOUCH_POLICY_NEVER;
	c->keys[idx].origin = ORIGIN_IMPORTED;
	c->keys[idx].pkey = key;
	key = NULL;
	r = TK_OK;
out:
	free(obj);
	free(der);
	X509_NAME_free(name);
	X509_free(x);
	EVP_PKEY_free(key);
	return r;
}

static X509 *
ca_cert(const tk_vcard_t *c)
{
	const struct vc_obj *o = vc_obj_find(c, TAG_ATTEST_CERT);
	const unsigned char *p;
	tk_buf_t v;

	if (o == NULL || vc_tlv_find(o->data, o->len, 0x70, &v) != TK_OK || v.len > LONG_MAX)
		return NULL;
	p = v.data;
	return d2i_X509(NULL, &p, (long)v.len);
}

uint16_t
vc_attest(tk_vcard_t *c, const tk_apdu_t *a, tk_wbuf_t *out)
{
	int idx = vc_slot_index(a->p1);
	struct vc_key *k, *ak = &c->keys[vc_slot_index(REF_ATTEST)];
	X509 *ca = NULL, *x = NULL;
	X509_NAME *name = NULL;
	uint8_t *der = NULL, ser[8], pol[2];
	size_t der_len = 0;
	char cn[48];
	uint16_t sw = SW_NO_PRECISE;
	ASN1_INTEGER *ai = NULL;
	uint8_t *sp = NULL;
	int sl;

	if (a->p2 != 0x00 || idx == VC_SLOT_NONE || a->p1 == REF_ATTEST)
		return SW_WRONG_P1P2;
	k = &c->keys[idx];
	if (k->alg == 0 || k->origin != ORIGIN_GENERATED)
		return SW_WRONG_DATA;
	if (ak->pkey == NULL || (ca = ca_cert(c)) == NULL)
		return SW_REF_NOT_FOUND;
	snprintf(cn, sizeof(cn), "YubiKey PIV Attestation %02x", a->p1);
	if ((x = X509_new()) == NULL || (name = X509_NAME_new()) == NULL ||
	    X509_set_version(x, 2) != 1 ||
	    X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8, (const unsigned char *)cn, -1, -1,
	                               0) != 1 ||
	    X509_set_subject_name(x, name) != 1 ||
	    X509_set_issuer_name(x, X509_get_subject_name(ca)) != 1 ||
	    X509_set_pubkey(x, k->pkey) != 1 || set_random_serial(x) != TK_OK ||
	    set_validity(x) != TK_OK)
		goto out;
	/* Yubico attestation extensions: firmware version, serial, policy */
	if (add_ext_raw(x, "1.3.6.1.4.1.41482.3.3", c->fw, 3) != TK_OK)
		goto out;
	if ((ai = ASN1_INTEGER_new()) == NULL || ASN1_INTEGER_set_uint64(ai, c->serial) != 1 ||
	    (sl = i2d_ASN1_INTEGER(ai, &sp)) <= 0 || (size_t)sl > sizeof(ser))
		goto out;
	memcpy(ser, sp, (size_t)sl);
	if (add_ext_raw(x, "1.3.6.1.4.1.41482.3.7", ser, (size_t)sl) != TK_OK)
		goto out;
	pol[0] = k->pin_policy != PIN_POLICY_DEFAULT ? k->pin_policy
	         : a->p1 == 0x9C                     ? PIN_POLICY_ALWAYS
	         : a->p1 == 0x9E                     ? PIN_POLICY_NEVER
	                                             : PIN_POLICY_ONCE;
	pol[1] = k->touch_policy != TOUCH_POLICY_DEFAULT ? k->touch_policy : TOUCH_POLICY_NEVER;
	if (add_ext_raw(x, "1.3.6.1.4.1.41482.3.8", pol, 2) != TK_OK)
		goto out;
	if (X509_sign(x, ak->pkey, EVP_sha256()) <= 0 || cert_der(x, &der, &der_len) != TK_OK)
		goto out;
	tk_wbuf_put_bytes(out, der, der_len);
	sw = SW_OK;
out:
	OPENSSL_free(sp);
	ASN1_INTEGER_free(ai);
	free(der);
	X509_NAME_free(name);
	X509_free(x);
	X509_free(ca);
	return sw;
}
