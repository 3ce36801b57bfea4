/* tokenkit: the files of card provisioning — key files to import, and
 * certificates and PKCS#10 requests for a card's key, signed by the card
 * (`tokenkit piv|openpgp import|certificate`).
 *
 * OpenSSL builds the to-be-signed part with a throwaway key of the card
 * key's type (that fills both signature algorithm fields the way OpenSSL
 * encodes them); the card signs those bytes, its signature replaces the
 * throwaway one, and the result must verify with the card key's public key
 * before anyone sees it. */
#include <stdlib.h>
#include <string.h>

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>

#include <tokenkit/err.h>
#include <tokenkit/mem.h>
#include <tokenkit/tlv.h>

#include "piv_prov.h"
#include "tool.h"

X509_NAME *
tool_parse_subject(const char *s)
{
	X509_NAME *n = X509_NAME_new();
	char *copy = s != NULL ? strdup(s) : NULL, *save = NULL, *tok;
	int count = 0;

	if (n == NULL || copy == NULL)
		goto fail;
	for (tok = strtok_r(copy, "/", &save); tok != NULL; tok = strtok_r(NULL, "/", &save)) {
		char *eq = strchr(tok, '=');

		if (eq == NULL || eq == tok || eq[1] == '\0')
			goto fail;
		*eq = '\0';
		if (X509_NAME_add_entry_by_txt(n, tok, MBSTRING_UTF8, (unsigned char *)eq + 1, -1,
		                               -1, 0) != 1)
			goto fail;
		count++;
	}
	if (count == 0)
		goto fail;
	free(copy);
	return n;
fail:
	free(copy);
	X509_NAME_free(n);
	ERR_clear_error();
	return NULL;
}

/* Key files are small; anything near this is not one. */
#define KEYFILE_MAX (1u << 20)

static int
read_keyfile(const char *path, uint8_t **buf, size_t *len)
{
	FILE *f = fopen(path, "rb");
	uint8_t *b = NULL;
	size_t n = 0;
	int r = TK_ERR_IO;

	*buf = NULL;
	*len = 0;
	if (f == NULL || (b = malloc(KEYFILE_MAX)) == NULL)
		goto out;
	n = fread(b, 1, KEYFILE_MAX, f);
	if (ferror(f) || n == KEYFILE_MAX) { /* unreadable or far too big for a key */
		tk_freezero(b, KEYFILE_MAX);
		b = NULL;
		goto out;
	}
	*buf = b;
	*len = n;
	r = TK_OK;
out:
	if (f != NULL)
		fclose(f);
	return r;
}

struct pass_req {
	const char *group;
	const tool_secret_t *pass;
	int rc; /* the exit code when it could not be read */
};

/* A key file's passphrase, asked only when the file is encrypted. */
static int
ask_passphrase(void *ctx, char *buf, size_t cap, size_t *len)
{
	struct pass_req *pr = ctx;

	pr->rc = tool_read_secret(
	        &(tool_ask_t){pr->group, "passphrase of the key file", "--passphrase-fd", 0, 0},
	        pr->pass, buf, cap, len);
	return pr->rc == TOOL_EXIT_OK ? TK_OK : TK_ERR_CANCELLED;
}

int
tool_load_keyfile(const char *cmd, const char *path, const tool_secret_t *pass, EVP_PKEY **key,
                  X509 **cert)
{
	char group[32];
	struct pass_req pr = {group, pass, TOOL_EXIT_OK};
	X509 *x = NULL;
	uint8_t *data = NULL;
	size_t len = 0;
	int r;

	*key = NULL;
	if (cert != NULL)
		*cert = NULL;
	/* prompts and messages name the command's group ("piv") */
	snprintf(group, sizeof(group), "%.*s", (int)strcspn(cmd, " "), cmd);
	if (read_keyfile(path, &data, &len) != TK_OK) {
		fprintf(stderr, "tokenkit %s: cannot read %s\n", cmd, tool_text(path));
		return TOOL_EXIT_ERROR;
	}
	r = piv_load_key_mem(data, len, ask_passphrase, &pr, key, &x);
	tk_freezero(data, KEYFILE_MAX);
	if (cert != NULL)
		*cert = x;
	else
		X509_free(x);
	if (r == TK_OK)
		return TOOL_EXIT_OK;
	if (r == TK_ERR_CANCELLED && pr.rc != TOOL_EXIT_OK)
		return pr.rc;
	fprintf(stderr, "tokenkit %s: %s: %s\n", cmd, tool_text(path),
	        r == TK_ERR_PIN_INCORRECT ? "wrong passphrase"
	                                  : "no private key (PEM or PKCS#12) in the file");
	return TOOL_EXIT_ERROR;
}

X509 *
tool_load_cert(const char *path)
{
	BIO *b = BIO_new_file(path, "rb");
	X509 *x = NULL;

	if (b == NULL)
		return NULL;
	x = PEM_read_bio_X509(b, NULL, NULL, NULL);
	if (x == NULL && BIO_reset(b) == 0) /* DER */
		x = d2i_X509_bio(b, NULL);
	BIO_free(b);
	ERR_clear_error();
	return x;
}

bool
tool_cert_opt(const char *a, const char *v, tool_cert_opts_t *c, bool *bad)
{
	if (v == NULL)
		return false;
	if (strcmp(a, "--self-sign") == 0)
		c->self_sign = v;
	else if (strcmp(a, "--csr") == 0)
		c->csr = v;
	else if (strcmp(a, "--import") == 0)
		c->import = v;
	else if (strcmp(a, "--days") == 0)
		*bad = !tool_parse_uint(v, 36500, &c->days) || c->days == 0;
	else
		return false;
	return true;
}

const EVP_MD *
tool_cert_md(EVP_PKEY *pk)
{
	switch (EVP_PKEY_get_base_id(pk)) {
	case EVP_PKEY_ED25519:
		return NULL; /* PureEdDSA: the card signs the bytes themselves */
	case EVP_PKEY_EC:
		return EVP_PKEY_get_bits(pk) > 256 ? EVP_sha384() : EVP_sha256();
	default:
		return EVP_sha256();
	}
}

/* A throwaway key of pk's type (RSA: any size; EC: the same curve). */
static EVP_PKEY *
like_key(EVP_PKEY *pk)
{
	char group[64];

	switch (EVP_PKEY_get_base_id(pk)) {
	case EVP_PKEY_RSA:
		return EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048);
	case EVP_PKEY_EC:
		if (EVP_PKEY_get_utf8_string_param(pk, OSSL_PKEY_PARAM_GROUP_NAME, group,
		                                   sizeof(group), NULL) != 1)
			return NULL;
		return EVP_PKEY_Q_keygen(NULL, NULL, "EC", group);
	case EVP_PKEY_ED25519:
		return EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
	default:
		return NULL;
	}
}

/* Certificate (or request) = SEQUENCE { tbs, algorithm, BIT STRING
 * signature }: DER the caller frees, *len its length. */
static uint8_t *
assemble_der(const uint8_t *tbs, size_t tl, const uint8_t *alg, size_t al, const uint8_t *sig,
             size_t sl, size_t *len)
{
	size_t bits = tk_ber_hdr_len(0x03, sl + 1) + sl + 1, body = tl + al + bits;
	size_t cap = tk_ber_hdr_len(0x30, body) + body;
	uint8_t *buf = malloc(cap);
	tk_wbuf_t w;

	*len = 0;
	if (buf == NULL)
		return NULL;
	tk_wbuf_init(&w, buf, cap);
	tk_ber_put_hdr(&w, 0x30, body);
	tk_wbuf_put_bytes(&w, tbs, tl);
	tk_wbuf_put_bytes(&w, alg, al);
	tk_ber_put_hdr(&w, 0x03, sl + 1);
	tk_wbuf_put_u8(&w, 0x00);
	tk_wbuf_put_bytes(&w, sig, sl);
	if (tk_wbuf_error(&w) != TK_OK) {
		free(buf);
		return NULL;
	}
	*len = w.len;
	return buf;
}

/* The unsigned certificate (self-signed: issuer = subject, a random
 * 16-byte serial, valid for days) or request for pk, signed with tmp. */
static bool
build_tbs(unsigned days, X509_NAME *name, EVP_PKEY *pk, EVP_PKEY *tmp, const EVP_MD *md, X509 *x,
          X509_REQ *req)
{
	uint8_t serial[16];
	BIGNUM *bn = NULL;
	bool ok;

	if (req != NULL)
		return X509_REQ_set_version(req, 0) == 1 &&
		       X509_REQ_set_subject_name(req, name) == 1 &&
		       X509_REQ_set_pubkey(req, pk) == 1 && X509_REQ_sign(req, tmp, md) > 0;
	if (RAND_bytes(serial, sizeof(serial)) != 1)
		return false;
	serial[0] &= 0x7F; /* positive */
	serial[0] |= 0x40; /* and 16 bytes long */
	ok = (bn = BN_bin2bn(serial, sizeof(serial), NULL)) != NULL &&
	     BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(x)) != NULL &&
	     X509_set_version(x, 2) == 1 && X509_set_subject_name(x, name) == 1 &&
	     X509_set_issuer_name(x, name) == 1 &&
	     X509_gmtime_adj(X509_getm_notBefore(x), 0) != NULL &&
	     X509_time_adj_ex(X509_getm_notAfter(x), (int)days, 0, NULL) != NULL &&
	     X509_set_pubkey(x, pk) == 1 && X509_sign(x, tmp, md) > 0;
	BN_free(bn);
	return ok;
}

int
tool_card_signed(const char *cmd, const tool_card_signer_t *s, const char *subject, unsigned days,
                 X509 **xout, X509_REQ **rout)
{
	const bool request = rout != NULL;
	X509_NAME *name = tool_parse_subject(subject);
	X509 *x = request ? NULL : X509_new(), *xd = NULL;
	X509_REQ *req = request ? X509_REQ_new() : NULL, *rd = NULL;
	EVP_PKEY *tmp = NULL;
	const EVP_MD *md = tool_cert_md(s->pk);
	const X509_ALGOR *sa = NULL;
	const ASN1_BIT_STRING *unused = NULL;
	unsigned char *tbs = NULL, *algder = NULL;
	uint8_t *sig = NULL, *der = NULL;
	const unsigned char *q;
	size_t sl = 0, dl = 0;
	int tl, al, rc = TOOL_EXIT_ERROR;

	if (xout != NULL)
		*xout = NULL;
	if (rout != NULL)
		*rout = NULL;
	if (name == NULL) {
		fprintf(stderr, "tokenkit %s: bad subject '%s' (write /CN=name/O=org)\n", cmd,
		        tool_text(subject));
		rc = TOOL_EXIT_USAGE;
		goto out;
	}
	if ((x == NULL && req == NULL) || (tmp = like_key(s->pk)) == NULL ||
	    !build_tbs(days, name, s->pk, tmp, md, x, req))
		goto crypto;
	if (request) {
		tl = i2d_re_X509_REQ_tbs(req, &tbs);
		X509_REQ_get0_signature(req, &unused, &sa);
	} else {
		tl = i2d_re_X509_tbs(x, &tbs);
		X509_get0_signature(&unused, &sa, x);
	}
	if (tl <= 0 || (al = i2d_X509_ALGOR(sa, &algder)) <= 0)
		goto crypto;
	if ((rc = s->sign(s->ctx, md, tbs, (size_t)tl, &sig, &sl)) != TOOL_EXIT_OK)
		goto out;
	rc = TOOL_EXIT_ERROR;
	if ((der = assemble_der(tbs, (size_t)tl, algder, (size_t)al, sig, sl, &dl)) != NULL) {
		q = der;
		if (request)
			rd = d2i_X509_REQ(NULL, &q, (long)dl);
		else
			xd = d2i_X509(NULL, &q, (long)dl);
	}
	/* the card's signature must verify with the key's public key */
	if (request ? rd == NULL || X509_REQ_verify(rd, s->pk) != 1
	            : xd == NULL || X509_verify(xd, s->pk) != 1) {
		fprintf(stderr,
		        "tokenkit %s: the card's signature does not verify with the key's public "
		        "key\n",
		        cmd);
		goto out;
	}
	if (request)
		*rout = rd;
	else
		*xout = xd;
	rd = NULL;
	xd = NULL;
	rc = TOOL_EXIT_OK;
	goto out;
crypto:
	fprintf(stderr, "tokenkit %s: cannot build the %s (OpenSSL)\n", cmd,
	        request ? "request" : "certificate");
out:
	ERR_clear_error();
	free(der);
	OPENSSL_free(tbs);
	OPENSSL_free(algder);
	free(sig);
	EVP_PKEY_free(tmp);
	X509_NAME_free(name);
	X509_free(x);
	X509_free(xd);
	X509_REQ_free(req);
	X509_REQ_free(rd);
	return rc;
}
