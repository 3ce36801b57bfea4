/* tokenkit: importing a PKCS#12 file into a software token
 * (tk_soft_import_p12, include/tokenkit/soft.h).
 *
 * The file is read by OpenSSL in the library's own context (core/ossl.h)
 * with the legacy provider loaded, so that files made with `openssl pkcs12
 * -export -legacy` (RC2, 3DES) import too: that context is made the
 * calling thread's default for the parse only (OSSL_LIB_CTX_set0_default
 * is per thread), and the application's own default is back before we
 * return. The key is paired with its certificate by public key, not by the
 * file's local key ids (a file may name the wrong one); the other
 * certificates are the chain. Every object goes through the token's object
 * rules (the key as an unwrapped one: its value was outside the token) and
 * lands in one write, or nothing does. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pkcs12.h>
#include <openssl/x509.h>

#include <tokenkit/err.h>
#include <tokenkit/log.h>
#include <tokenkit/mem.h>

#include "ossl.h"
#include "soft_int.h"
#include "x509.h"

#define CHAIN_MAX 16

/* What OpenSSL's error queue says a failure was. A reason number means
 * something only within its library (ASN1_R_HEADER_TOO_LONG, which garbage
 * decrypted with a wrong password often gives, has the number of
 * EVP_R_UNSUPPORTED_KEYLENGTH): the EVP reasons count only from EVP. */
static int
openssl_reason(int dflt)
{
	unsigned long e;
	int r = dflt;

	while ((e = ERR_get_error()) != 0) {
		int reason = ERR_GET_REASON(e);
		bool evp = ERR_GET_LIB(e) == ERR_LIB_EVP;

		if (reason == ERR_R_UNSUPPORTED ||
		    (evp &&
		     (reason == EVP_R_UNSUPPORTED_ALGORITHM || reason == EVP_R_UNSUPPORTED_CIPHER ||
		      reason == EVP_R_UNKNOWN_CIPHER || reason == EVP_R_UNSUPPORTED_KEYLENGTH ||
		      reason == EVP_R_UNSUPPORTED_PRF || reason == EVP_R_UNKNOWN_DIGEST ||
		      reason == EVP_R_UNSUPPORTED_KEY_DERIVATION_FUNCTION)))
			r = TK_ERR_NOT_SUPPORTED;
	}
	return r;
}

struct parsed {
	EVP_PKEY *key;
	X509 *cert;
	STACK_OF(X509) * chain;
};

static void
parsed_clear(struct parsed *p)
{
	EVP_PKEY_free(p->key);
	X509_free(p->cert);
	sk_X509_pop_free(p->chain, X509_free);
	memset(p, 0, sizeof(*p));
}

/* The bags of one SafeContents: the first private key into *key, every
 * certificate onto certs (with its friendly name as its alias, for the
 * label). depth bounds nested SafeContents bags. Errors: TK_ERR_PIN_INCORRECT
 * (a key that does not decrypt), TK_ERR_NOT_SUPPORTED (its cipher),
 * TK_ERR_MALFORMED, TK_ERR_NO_MEMORY. */
static int
walk_bags(const STACK_OF(PKCS12_SAFEBAG) * bags, const char *password, int depth, EVP_PKEY **key,
          STACK_OF(X509) * certs)
{
	OSSL_LIB_CTX *ctx = tk_ossl_libctx();
	int r = TK_OK;

	for (int i = 0; r == TK_OK && i < sk_PKCS12_SAFEBAG_num(bags); i++) {
		const PKCS12_SAFEBAG *bag = sk_PKCS12_SAFEBAG_value(bags, i);
		PKCS8_PRIV_KEY_INFO *p8 = NULL;
		const PKCS8_PRIV_KEY_INFO *p8c = NULL;
		X509 *c = NULL;
		char *name;

		switch (PKCS12_SAFEBAG_get_nid(bag)) {
		case NID_keyBag:
			p8c = PKCS12_SAFEBAG_get0_p8inf(bag);
			/* fall through */
		case NID_pkcs8ShroudedKeyBag:
			if (*key != NULL) {
				tk_log_info("soft: import: a second key in the file is ignored");
				break;
			}
			if (p8c == NULL) {
				p8 = PKCS12_decrypt_skey_ex(
				        bag, password, password != NULL ? (int)strlen(password) : 0,
				        ctx, NULL);
				if (p8 == NULL) {
					r = openssl_reason(TK_ERR_PIN_INCORRECT);
					break;
				}
				p8c = p8;
			}
			if ((*key = EVP_PKCS82PKEY_ex(p8c, ctx, NULL)) == NULL)
				r = openssl_reason(TK_ERR_NOT_SUPPORTED);
			PKCS8_PRIV_KEY_INFO_free(p8);
			break;
		case NID_certBag:
			if (PKCS12_SAFEBAG_get_bag_nid(bag) != NID_x509Certificate)
				break; /* an SDSI certificate: not ours */
			if ((c = PKCS12_SAFEBAG_get1_cert(bag)) == NULL) {
				r = TK_ERR_MALFORMED;
				break;
			}
			if ((name = PKCS12_get_friendlyname((PKCS12_SAFEBAG *)(uintptr_t)bag)) !=
			    NULL) {
				(void)X509_alias_set1(c, (const unsigned char *)name, -1);
				OPENSSL_free(name);
			}
			if (sk_X509_num(certs) >= CHAIN_MAX + 1 || sk_X509_push(certs, c) <= 0) {
				X509_free(c);
				r = sk_X509_num(certs) >= CHAIN_MAX + 1 ? TK_ERR_TOO_LONG
				                                        : TK_ERR_NO_MEMORY;
			}
			break;
		case NID_safeContentsBag:
			if (depth >= 3) {
				r = TK_ERR_MALFORMED;
				break;
			}
			r = walk_bags(PKCS12_SAFEBAG_get0_safes(bag), password, depth + 1, key,
			              certs);
			break;
		default: /* CRLs, secrets: not imported */
			break;
		}
	}
	return r;
}

/* Key and certificates of a PKCS#12 file. The MAC, when there is one, is
 * checked first (it is keyed with the password: a wrong one fails there);
 * then each of the file's SafeContents is decrypted and walked here, not
 * with PKCS12_parse, which refuses a file without a MAC when given a
 * password (OpenSSL 3.0). Without a MAC, a wrong password shows as a part
 * that does not decrypt or decode. */
static int
read_p12(PKCS12 *p12, const char *password, EVP_PKEY **key, STACK_OF(X509) * certs)
{
	STACK_OF(PKCS7) *safes = NULL;
	bool mac = PKCS12_mac_present(p12) == 1;
	int r = TK_OK;

	if (mac && PKCS12_verify_mac(p12, password, -1) != 1)
		return openssl_reason(TK_ERR_PIN_INCORRECT);
	if ((safes = PKCS12_unpack_authsafes(p12)) == NULL)
		return TK_ERR_MALFORMED;
	for (int i = 0; r == TK_OK && i < sk_PKCS7_num(safes); i++) {
		PKCS7 *p7 = sk_PKCS7_value(safes, i);
		STACK_OF(PKCS12_SAFEBAG) *bags = NULL;

		switch (OBJ_obj2nid(p7->type)) {
		case NID_pkcs7_data:
			bags = PKCS12_unpack_p7data(p7);
			break;
		case NID_pkcs7_encrypted:
			bags = PKCS12_unpack_p7encdata(p7, password, -1);
			break;
		default:
			break; /* enveloped (public-key privacy mode): not read */
		}
		if (bags == NULL) {
			r = openssl_reason(mac ? TK_ERR_MALFORMED : TK_ERR_PIN_INCORRECT);
			break;
		}
		r = walk_bags(bags, password, 0, key, certs);
		sk_PKCS12_SAFEBAG_pop_free(bags, PKCS12_SAFEBAG_free);
	}
	sk_PKCS7_pop_free(safes, PKCS7_free);
	/* without a MAC, garbage from a wrong password shows as a bad part */
	if (r == TK_ERR_MALFORMED && !mac)
		r = TK_ERR_PIN_INCORRECT;
	return r;
}

static int
parse(const uint8_t *der, size_t len, const char *password, struct parsed *out)
{
	OSSL_LIB_CTX *mine = tk_ossl_libctx(), *theirs = NULL;
	const unsigned char *q = der;
	STACK_OF(X509) *certs = NULL;
	PKCS12 *p12 = NULL;
	int r;

	memset(out, 0, sizeof(*out));
	(void)tk_ossl_legacy(); /* without it old files say "unsupported" */
	ERR_clear_error();
	if (mine != NULL)
		theirs = OSSL_LIB_CTX_set0_default(mine);
	if (len == 0 || len > (size_t)INT32_MAX ||
	    (p12 = d2i_PKCS12(NULL, &q, (long)len)) == NULL || q != der + len) {
		r = TK_ERR_MALFORMED;
		goto out;
	}
	if ((certs = sk_X509_new_null()) == NULL) {
		r = TK_ERR_NO_MEMORY;
		goto out;
	}
	if ((r = read_p12(p12, password, &out->key, certs)) != TK_OK)
		goto out;
	if (out->key == NULL) {
		r = TK_ERR_NOT_FOUND;
		tk_log_info("soft: import: the file holds no private key");
		goto out;
	}
	/* the key's certificate: the one with its public key */
	for (int i = 0; i < sk_X509_num(certs); i++) {
		X509 *c = sk_X509_value(certs, i);

		if (EVP_PKEY_eq(X509_get0_pubkey(c), out->key) == 1) {
			out->cert = sk_X509_delete(certs, i);
			break;
		}
	}
	ERR_clear_error();
	if (out->cert == NULL) {
		r = sk_X509_num(certs) == 0 ? TK_ERR_NOT_FOUND : TK_ERR_TEMPLATE_INCONSISTENT;
		tk_log_info("soft: import: %s",
		            r == TK_ERR_NOT_FOUND ? "the file holds a key without its certificate"
		                                  : "no certificate in the file is the key's");
		goto out;
	}
	out->chain = certs;
	certs = NULL;
out:
	if (mine != NULL)
		OSSL_LIB_CTX_set0_default(theirs);
	sk_X509_pop_free(certs, X509_free);
	PKCS12_free(p12);
	if (r != TK_OK)
		parsed_clear(out);
	ERR_clear_error();
	return r;
}

int
tk_soft_p12_parse(const uint8_t *der, size_t len, const char *password, EVP_PKEY **key, X509 **cert,
                  STACK_OF(X509) * *chain)
{
	struct parsed p;
	int r = parse(der, len, password, &p);

	*key = p.key;
	*cert = p.cert;
	*chain = p.chain;
	return r;
}

/* ---- the objects --------------------------------------------------------------------- */

static int
der_of(X509 *c, uint8_t **der, size_t *len)
{
	unsigned char *p = NULL;
	int n = i2d_X509(c, &p);

	*der = NULL;
	*len = 0;
	if (n <= 0)
		return TK_ERR_CRYPTO;
	if ((*der = malloc((size_t)n)) == NULL) {
		OPENSSL_free(p);
		return TK_ERR_NO_MEMORY;
	}
	memcpy(*der, p, (size_t)n);
	*len = (size_t)n;
	OPENSSL_free(p);
	return TK_OK;
}

/* The label: the caller's, else the file's friendly name for the key's
 * certificate, else the certificate's subject CN. */
static void
pick_label(const tk_soft_import_opts_t *o, X509 *cert, char *out, size_t cap)
{
	const unsigned char *alias;
	int n = 0;

	out[0] = '\0';
	if (o->label != NULL) {
		snprintf(out, cap, "%s", o->label);
		return;
	}
	if ((alias = X509_alias_get0(cert, &n)) != NULL && n > 0) {
		snprintf(out, cap, "%.*s", n, (const char *)alias);
		return;
	}
	if (X509_NAME_get_text_by_NID(X509_get_subject_name(cert), NID_commonName, out, (int)cap) <=
	    0)
		snprintf(out, cap, "imported key");
}

/* The attributes of the certificate c as a token object. */
static int
cert_object(X509 *c, const uint8_t *id, size_t id_len, const char *label, tk_attrs_t *out)
{
	CK_OBJECT_CLASS cls = CKO_CERTIFICATE;
	CK_CERTIFICATE_TYPE ct = CKC_X_509;
	CK_BBOOL yes = CK_TRUE, no = CK_FALSE;
	uint8_t *der = NULL;
	size_t len = 0;
	void *secret = NULL;
	size_t sl = 0;
	EVP_PKEY *none = NULL;
	tk_x509_t x;
	int r;

	memset(out, 0, sizeof(*out));
	if ((r = der_of(c, &der, &len)) != TK_OK)
		return r;
	if (tk_x509_parse(der, len, &x) != TK_OK) {
		free(der);
		return TK_ERR_NOT_SUPPORTED; /* OpenSSL read it; our walk does not */
	}
	CK_ATTRIBUTE tpl[] = {
	        {CKA_CLASS, &cls, sizeof(cls)},
	        {CKA_CERTIFICATE_TYPE, &ct, sizeof(ct)},
	        {CKA_TOKEN, &yes, sizeof(yes)},
	        {CKA_PRIVATE, &no, sizeof(no)},
	        {CKA_LABEL, (void *)(uintptr_t)label, strlen(label)},
	        {CKA_ID, (void *)(uintptr_t)id, id_len},
	        {CKA_SUBJECT, (void *)(uintptr_t)x.subject, x.subject_len},
	        {CKA_ISSUER, (void *)(uintptr_t)x.issuer, x.issuer_len},
	        {CKA_SERIAL_NUMBER, (void *)(uintptr_t)x.serial, x.serial_len},
	        {CKA_VALUE, der, len},
	};
	r = tk_obj_template(TK_OBJ_CREATE, tpl, sizeof(tpl) / sizeof(tpl[0]), NULL, 0, 0, out);
	if (r == TK_OK)
		r = tk_soft_obj_material(out, &none, &secret, &sl);
	if (r != TK_OK)
		tk_attrs_clear(out);
	free(der);
	return r;
}

/* The key pair's two objects: the private key as an unwrapped one (it was
 * outside the token: CKA_ALWAYS_SENSITIVE and CKA_NEVER_EXTRACTABLE false,
 * CKA_LOCAL false), and its public key. */
static int
key_objects(EVP_PKEY *k, const tk_attrs_t *certo, const uint8_t *id, size_t id_len,
            const char *label, bool extractable, tk_attrs_t *priv, tk_attrs_t *pub)
{
	CK_KEY_TYPE kt = tk_soft_pkey_type(k);
	CK_BBOOL yes = CK_TRUE, no = CK_FALSE, ext = extractable ? CK_TRUE : CK_FALSE;
	CK_BBOOL rsa = kt == CKK_RSA ? CK_TRUE : CK_FALSE;
	const tk_attr_t *subj = tk_attrs_get(certo, CKA_SUBJECT);
	tk_attrs_t fixed = {NULL, 0};
	int r;

	memset(priv, 0, sizeof(*priv));
	memset(pub, 0, sizeof(*pub));
	CK_ATTRIBUTE ptpl[] = {
	        {CKA_TOKEN, &yes, sizeof(yes)},
	        {CKA_PRIVATE, &yes, sizeof(yes)},
	        {CKA_LABEL, (void *)(uintptr_t)label, strlen(label)},
	        {CKA_ID, (void *)(uintptr_t)id, id_len},
	        {CKA_SUBJECT, subj->val, subj->len},
	        {CKA_SENSITIVE, &yes, sizeof(yes)},
	        {CKA_EXTRACTABLE, &ext, sizeof(ext)},
	        {CKA_SIGN, &yes, sizeof(yes)},
	        {CKA_DECRYPT, &rsa, sizeof(rsa)},
	        {CKA_UNWRAP, &no, sizeof(no)},
	};
	CK_ATTRIBUTE utpl[] = {
	        {CKA_TOKEN, &yes, sizeof(yes)},
	        {CKA_PRIVATE, &no, sizeof(no)},
	        {CKA_LABEL, (void *)(uintptr_t)label, strlen(label)},
	        {CKA_ID, (void *)(uintptr_t)id, id_len},
	        {CKA_SUBJECT, subj->val, subj->len},
	        {CKA_VERIFY, &yes, sizeof(yes)},
	        {CKA_ENCRYPT, &rsa, sizeof(rsa)},
	};
	r = tk_attrs_set_ulong(&fixed, CKA_CLASS, CKO_PRIVATE_KEY);
	if (r == TK_OK)
		r = tk_attrs_set_ulong(&fixed, CKA_KEY_TYPE, kt);
	if (r == TK_OK)
		r = tk_obj_template(TK_OBJ_UNWRAP, ptpl, sizeof(ptpl) / sizeof(ptpl[0]), &fixed, 0,
		                    0, priv);
	if (r == TK_OK)
		r = tk_soft_key_describe(k, true, priv);
	if (r == TK_OK)
		r = tk_attrs_set_ulong(&fixed, CKA_CLASS, CKO_PUBLIC_KEY);
	/* the public key's material is the function's (footnote 1 met) */
	if (r == TK_OK)
		r = tk_soft_key_attrs(k, false, &fixed);
	if (r == TK_OK)
		r = tk_obj_template(TK_OBJ_CREATE, utpl, sizeof(utpl) / sizeof(utpl[0]), &fixed, 0,
		                    0, pub);
	tk_attrs_clear(&fixed);
	if (r != TK_OK) {
		tk_attrs_clear(priv);
		tk_attrs_clear(pub);
	}
	return r;
}

struct import {
	const tk_soft_import_opts_t *o;
	tk_attrs_t priv, pub, cert, chain[CHAIN_MAX];
	size_t nchain;
	EVP_PKEY *key;
	tk_soft_change_t ch[3 + CHAIN_MAX + 3 * 8];
	size_t n;
	size_t chain_added;
	bool replaced;
};

static bool
same_attr(const tk_attrs_t *a, const tk_attrs_t *b, CK_ATTRIBUTE_TYPE t)
{
	const tk_attr_t *x = tk_attrs_get(a, t), *y = tk_attrs_get(b, t);

	return x != NULL && y != NULL && x->len == y->len && x->len > 0 &&
	       memcmp(x->val, y->val, x->len) == 0;
}

static void
add(struct import *im, const tk_attrs_t *attrs, EVP_PKEY *key)
{
	tk_soft_change_t *c = &im->ch[im->n++];

	memset(c, 0, sizeof(*c));
	c->op = TK_SOFT_ADD;
	c->attrs = attrs;
	c->key = key;
}

/* Under the write's lock: what goes in, seeing what is there. */
static int
plan(const tk_soft_snap_t *sn, void *arg)
{
	struct import *im = arg;
	size_t removed = 0;

	im->n = 0;
	im->chain_added = 0;
	im->replaced = false;
	/* the same key already there: say so (or replace it, with its public
	 * key and certificate) */
	for (size_t i = 0; i < sn->n; i++) {
		const tk_soft_obj_t *o = &sn->objs[i];
		CK_OBJECT_CLASS cls = tk_obj_class(&o->attrs);

		if (cls != CKO_PRIVATE_KEY && cls != CKO_PUBLIC_KEY && cls != CKO_CERTIFICATE)
			continue;
		if (!same_attr(&o->attrs, &im->priv, CKA_PUBLIC_KEY_INFO))
			continue;
		if (cls == CKO_PRIVATE_KEY && !im->o->replace)
			return TK_ERR_EXISTS;
		if (removed == 3 * 8)
			return TK_ERR_TOO_LONG;
		im->ch[im->n].op = TK_SOFT_REMOVE;
		memcpy(im->ch[im->n].uid, o->uid, TK_SOFT_UID_LEN);
		im->n++;
		removed++;
		im->replaced = im->replaced || cls == CKO_PRIVATE_KEY;
	}
	add(im, &im->priv, im->key);
	add(im, &im->pub, NULL);
	add(im, &im->cert, NULL);
	/* chain certificates already there are not doubled */
	for (size_t k = 0; k < im->nchain; k++) {
		bool have = false;

		for (size_t i = 0; i < sn->n && !have; i++)
			have = tk_obj_class(&sn->objs[i].attrs) == CKO_CERTIFICATE &&
			       same_attr(&sn->objs[i].attrs, &im->chain[k], CKA_VALUE);
		if (!have) {
			add(im, &im->chain[k], NULL);
			im->chain_added++;
		}
	}
	return TK_OK;
}

int
tk_soft_import_p12(tk_soft_t *s, const uint8_t *p12, size_t len, const tk_soft_import_opts_t *o,
                   tk_soft_import_result_t *res)
{
	tk_soft_import_opts_t dflt;
	struct parsed p;
	struct import *im = NULL;
	tk_soft_snap_t *sn = NULL;
	EVP_MD *sha1 = NULL;
	uint8_t id[20];
	unsigned int id_len = 0;
	char label[65];
	int r;

	if (res != NULL)
		memset(res, 0, sizeof(*res));
	if (s == NULL || p12 == NULL)
		return TK_ERR_INVALID_ARG;
	if (o == NULL) {
		memset(&dflt, 0, sizeof(dflt));
		o = &dflt;
	}
	if ((r = parse(p12, len, o->password, &p)) != TK_OK)
		return r;
	if (tk_soft_pkey_type(p.key) == CK_UNAVAILABLE_INFORMATION) {
		tk_log_info("soft: import: a key of a kind this token does not hold");
		r = TK_ERR_NOT_SUPPORTED;
		goto out;
	}
	/* CKA_ID: SHA-1 of the public key (RFC 5280 4.2.1.2, method 1) */
	if ((sha1 = EVP_MD_fetch(tk_ossl_libctx(), "SHA1", NULL)) == NULL ||
	    X509_pubkey_digest(p.cert, sha1, id, &id_len) != 1 || id_len != sizeof(id)) {
		r = TK_ERR_CRYPTO;
		goto out;
	}
	pick_label(o, p.cert, label, sizeof(label));
	if ((im = calloc(1, sizeof(*im))) == NULL) {
		r = TK_ERR_NO_MEMORY;
		goto out;
	}
	im->o = o;
	im->key = p.key;
	if ((r = cert_object(p.cert, id, id_len, label, &im->cert)) != TK_OK ||
	    (r = key_objects(p.key, &im->cert, id, id_len, label, o->extractable, &im->priv,
	                     &im->pub)) != TK_OK)
		goto out;
	for (int i = 0; i < sk_X509_num(p.chain); i++) {
		X509 *c = sk_X509_value(p.chain, i);
		char cn[65] = "";

		if (X509_NAME_get_text_by_NID(X509_get_subject_name(c), NID_commonName, cn,
		                              (int)sizeof(cn)) <= 0)
			snprintf(cn, sizeof(cn), "CA certificate");
		/* a chain certificate has no key here: no CKA_ID */
		if ((r = cert_object(c, NULL, 0, cn, &im->chain[im->nchain])) != TK_OK)
			goto out;
		im->nchain++;
	}
	/* What the token holds already is seen without the PIN (only sealed
	 * parts need it): a duplicate is refused before the login, which
	 * writes (its try counter). The write checks again under its lock. */
	sn = tk_soft_snapshot(s);
	r = sn != NULL ? plan(sn, im) : TK_ERR_NO_MEMORY;
	tk_soft_snap_put(&sn);
	if (r == TK_OK && !tk_soft_user_logged_in(s))
		r = TK_ERR_LOGIN_REQUIRED;
	if (r == TK_OK)
		r = tk_soft_write(s, im->ch, &im->n, plan, im);
	if (r == TK_OK && res != NULL) {
		snprintf(res->label, sizeof(res->label), "%s", label);
		memcpy(res->id, id, sizeof(id));
		res->id_len = sizeof(id);
		res->key_type = tk_soft_pkey_type(p.key) == CKK_RSA  ? TK_KEY_RSA
		                : tk_soft_pkey_type(p.key) == CKK_EC ? TK_KEY_EC
		                                                     : TK_KEY_ED25519;
		res->key_bits =
		        res->key_type == TK_KEY_ED25519 ? 255 : (unsigned)EVP_PKEY_get_bits(p.key);
		res->chain = im->chain_added;
		res->replaced = im->replaced;
	}
out:
	if (im != NULL) {
		tk_attrs_clear(&im->priv);
		tk_attrs_clear(&im->pub);
		tk_attrs_clear(&im->cert);
		for (size_t k = 0; k < im->nchain; k++)
			tk_attrs_clear(&im->chain[k]);
		free(im);
	}
	EVP_MD_free(sha1);
	parsed_clear(&p);
	return r;
}
