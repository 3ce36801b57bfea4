/* Fuzz target: the PKCS#11 module's conversion of a card's certificate (and
 * public key) into attributes (pkcs11/object.c through tk_p11_object_build):
 * the DER certificate read by OpenSSL, its names, serial, dates and
 * SubjectPublicKeyInfo, then the public and private key objects paired with
 * it by CKA_ID (modulus and exponent, or curve and point, from that SPKI).
 *
 * Input: one flag byte, then the DER.
 *   bit 0     the key type the card claims: EC (else RSA)
 *   bit 1     the certificate and the private key are an identity
 *   bit 2     the DER is a public key's SubjectPublicKeyInfo, not a
 *             certificate
 *   bits 3-4  the key size the card claims: 0 (unknown), 256, 384, 2048
 * Invariants: a certificate that converts keeps its DER as CKA_VALUE and has
 * a subject, issuer and serial; a key object is never dropped (what cannot
 * be read from the SPKI is left out). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <tokenkit/log.h>

#include "p11.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void
must_have(const struct p11_object *o, CK_ATTRIBUTE_TYPE type)
{
	if (tk_p11_attr_find(o, type) == NULL)
		abort();
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const unsigned bits[] = {0, 256, 384, 2048};
	struct p11_object objs[3];
	struct p11_token t;
	tk_object_t k[3];
	const struct p11_attr *v;
	uint8_t flags;
	int r;

	if (size < 1)
		return 0;
	tk_log_set_level(TK_LOG_NONE);
	flags = data[0];
	data++;
	size--;
	memset(&t, 0, sizeof(t));
	memset(k, 0, sizeof(k));
	snprintf(t.info.serial, sizeof(t.info.serial), "fuzz");
	t.objs = objs;
	for (int i = 0; i < 3; i++) {
		k[i].handle = (uint32_t)i + 1;
		k[i].id[0] = 1;
		k[i].id_len = 1;
		k[i].key_type = flags & 1 ? TK_KEY_EC : TK_KEY_RSA;
		k[i].key_bits = bits[(flags >> 3) & 3];
		k[i].has_identity = (flags & 2) != 0;
		snprintf(k[i].label, sizeof(k[i].label), "object %d", i);
	}
	k[0].cls = TK_OBJ_CERT;
	k[1].cls = TK_OBJ_PUBKEY;
	k[2].cls = TK_OBJ_PRIVKEY;
	k[2].usage = TK_USAGE_SIGN | TK_USAGE_DECRYPT | TK_USAGE_DERIVE;
	if (flags & 4) {
		/* a public key object with its own SPKI, and its private key */
		k[1].der = data;
		k[1].der_len = size;
	} else {
		k[0].der = data;
		k[0].der_len = size;
		r = tk_p11_object_build(&t, &k[0], &objs[0]);
		if (r != TK_OK)
			return 0;
		v = tk_p11_attr_find(&objs[0], CKA_VALUE);
		if (v == NULL || v->len != size || memcmp(v->val, data, size) != 0)
			abort();
		must_have(&objs[0], CKA_SUBJECT);
		must_have(&objs[0], CKA_ISSUER);
		must_have(&objs[0], CKA_SERIAL_NUMBER);
		must_have(&objs[0], CKA_PUBLIC_KEY_INFO);
		t.nobjs = 1;
	}
	for (int i = 1; i < 3; i++) {
		if (tk_p11_object_build(&t, &k[i], &objs[t.nobjs]) != TK_OK)
			abort();
		must_have(&objs[t.nobjs], CKA_KEY_TYPE);
		t.nobjs++;
	}
	for (size_t i = 0; i < t.nobjs; i++)
		tk_p11_object_clear(&objs[i]);
	return 0;
}
