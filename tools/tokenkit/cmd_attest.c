/* tokenkit attest READER SLOT: PIV key attestation (Yubico's ATTEST).
 *
 * Reads from the card, in one transaction: the attestation for SLOT
 * (00 F9 slot 00), the attestation key's certificate (object 5FFF01), the
 * slot's metadata (GET METADATA, YubiKey 5.3+) and the slot's certificate.
 * Then, off the card: the attestation must be issued and signed by the
 * device certificate, that one must chain to --root when given, and the
 * attested key must be the key the slot holds (by the card's metadata and
 * by the slot's certificate, whichever the card has; at least one). */
#include <stdlib.h>
#include <string.h>

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include <tokenkit/card.h>
#include <tokenkit/err.h>

#include "piv_attest.h"
#include "piv_prov.h"
#include "tool.h"

#define RESP_CAP 16384

static const uint8_t piv_aid[] = {0xA0, 0x00, 0x00, 0x03, 0x08};

/* What was read from the card; the DER buffers are owned. */
struct attest_read {
	uint8_t *att, *devobj, *meta, *certobj;
	size_t att_len, devobj_len, meta_len, certobj_len;
	uint16_t att_sw;
};

static void
attest_read_free(struct attest_read *a)
{
	free(a->att);
	free(a->devobj);
	free(a->meta);
	free(a->certobj);
	memset(a, 0, sizeof(*a));
}

/* One APDU; the response data is copied into a new buffer. */
static int
xfer(tk_card_t *c, uint8_t ins, uint8_t p1, uint8_t p2, const uint8_t *data, size_t lc,
     uint8_t **out, size_t *out_len, uint16_t *sw)
{
	tk_apdu_t a = {0};
	uint8_t *resp = malloc(RESP_CAP);
	int r;

	*out = NULL;
	*out_len = 0;
	*sw = 0;
	if (resp == NULL)
		return TK_ERR_NO_MEMORY;
	a.cla = 0x00;
	a.ins = ins;
	a.p1 = p1;
	a.p2 = p2;
	a.data = data;
	a.lc = lc;
	a.le = 256; /* GET RESPONSE fetches the rest */
	r = tk_card_apdu(c, &a, resp, RESP_CAP, out_len, sw);
	if (r != TK_OK || *sw != 0x9000) {
		free(resp);
		*out_len = 0;
		return r;
	}
	*out = resp;
	return TK_OK;
}

static int
get_data(tk_card_t *c, uint32_t tag, uint8_t **out, size_t *len, uint16_t *sw)
{
	uint8_t cmd[5] = {0x5C, 0x03, (uint8_t)(tag >> 16), (uint8_t)(tag >> 8), (uint8_t)tag};

	return xfer(c, 0xCB, 0x3F, 0xFF, cmd, sizeof(cmd), out, len, sw);
}

static int
read_card(tk_card_t *c, uint8_t ref, struct attest_read *a, const char **why)
{
	uint8_t *sel = NULL;
	size_t n = 0;
	uint16_t sw = 0;
	int r;

	*why = NULL;
	if ((r = tk_card_begin(c)) != TK_OK)
		return r;
	r = xfer(c, 0xA4, 0x04, 0x00, piv_aid, sizeof(piv_aid), &sel, &n, &sw);
	free(sel);
	if (r == TK_OK && sw != 0x9000) {
		*why = "the card has no PIV application";
		r = TK_ERR_FILE_NOT_FOUND;
	}
	if (r != TK_OK)
		goto out;
	r = xfer(c, 0xF9, ref, 0x00, NULL, 0, &a->att, &a->att_len, &a->att_sw);
	if (r != TK_OK)
		goto out;
	if (a->att_sw != 0x9000) {
		*why = a->att_sw == 0x6D00 ? "the card does not do attestation (no ATTEST command)"
		       : a->att_sw == 0x6A80 ? "the slot's key cannot be attested: it was "
		                               "imported, not generated "
		                               "on the card, or the slot is empty"
		       : a->att_sw == 0x6A88 ? "the card has no attestation key"
		                             : "the card refused ATTEST";
		r = tk_err_from_sw(a->att_sw);
		goto out;
	}
	r = get_data(c, 0x5FFF01, &a->devobj, &a->devobj_len, &sw);
	if (r == TK_OK && sw != 0x9000) {
		*why = "the card has no attestation certificate (object 5FFF01)";
		r = tk_err_from_sw(sw);
	}
	if (r != TK_OK)
		goto out;
	/* both optional: older cards lack GET METADATA, a slot may lack a certificate */
	if ((r = xfer(c, 0xF7, 0x00, ref, NULL, 0, &a->meta, &a->meta_len, &sw)) != TK_OK)
		goto out;
	r = get_data(c, piv_slot_object(ref), &a->certobj, &a->certobj_len, &sw);
out:
	(void)tk_card_end(c);
	return r;
}

static X509 *
der_x509(const uint8_t *p, size_t len)
{
	const unsigned char *q = p;
	X509 *x = len <= 65536 ? d2i_X509(NULL, &q, (long)len) : NULL;

	if (x != NULL && q != p + len) { /* trailing bytes: not one certificate */
		X509_free(x);
		x = NULL;
	}
	return x;
}

static void
name_text(const X509_NAME *n, char *buf, size_t cap)
{
	BIO *b = BIO_new(BIO_s_mem());
	int len;

	buf[0] = '\0';
	if (b == NULL)
		return;
	if (X509_NAME_print_ex(b, n, 0, XN_FLAG_RFC2253) >= 0 &&
	    (len = BIO_read(b, buf, (int)cap - 1)) > 0)
		buf[len] = '\0';
	BIO_free(b);
}

/* The verdict, filled as checks pass. */
struct verdict {
	uint8_t ref;
	bool chain_ok, key_ok, by_meta, by_cert, root_given;
	const char *error;
	char issuer[512], root[512];
	uint8_t alg;
	tool_attest_info_t info;
	tool_piv_meta_t meta;
	bool has_meta;
};

/* Every check; the first that fails sets v->error and returns non-zero. */
static int
check(const struct attest_read *a, X509 *root, struct verdict *v)
{
	X509 *att = NULL, *dev = NULL, *slotcert = NULL;
	EVP_PKEY *metakey = NULL;
	const uint8_t *p = NULL;
	size_t n = 0;
	int r = TK_ERR_CRYPTO;

	if ((att = der_x509(a->att, a->att_len)) == NULL) {
		v->error = "the attestation from the card is not an X.509 certificate";
		goto out;
	}
	if (tool_piv_object_cert(a->devobj, a->devobj_len, &p, &n) != TK_OK ||
	    (dev = der_x509(p, n)) == NULL) {
		v->error = "object 5FFF01 holds no readable attestation certificate";
		goto out;
	}
	name_text(X509_get_issuer_name(dev), v->issuer, sizeof(v->issuer));
	if (root != NULL)
		name_text(X509_get_subject_name(root), v->root, sizeof(v->root));
	if (tool_attest_verify(att, dev, root, &v->error) != TK_OK)
		goto out;
	v->chain_ok = true;
	if (tool_attest_info(att, &v->info) != TK_OK) {
		v->error = "the attestation's Yubico extensions are malformed";
		goto out;
	}
	/* the attested key against what the slot holds */
	if (a->meta != NULL && tool_piv_metadata_parse(a->meta, a->meta_len, &v->meta) == TK_OK &&
	    v->meta.pub != NULL) {
		v->has_meta = true;
		v->alg = v->meta.alg;
		if (tool_piv_pubkey(v->meta.alg, v->meta.pub, v->meta.pub_len, &metakey) != TK_OK) {
			v->error = "the card's metadata holds no readable public key for the slot";
			goto out;
		}
		if (EVP_PKEY_eq(metakey, X509_get0_pubkey(att)) != 1) {
			v->error = "the attested key is not the key in the slot (card metadata)";
			goto out;
		}
		v->by_meta = true;
		if (v->meta.has_origin && v->meta.origin != 1) {
			v->error = "the card's metadata says the slot's key was imported";
			goto out;
		}
		if (v->meta.has_policy && v->info.has_policy &&
		    (v->meta.pin_policy != v->info.pin_policy ||
		     v->meta.touch_policy != v->info.touch_policy)) {
			v->error =
			        "the attested PIN/touch policy is not the slot's (card metadata)";
			goto out;
		}
	}
	if (a->certobj != NULL &&
	    tool_piv_object_cert(a->certobj, a->certobj_len, &p, &n) == TK_OK &&
	    (slotcert = der_x509(p, n)) != NULL) {
		if (EVP_PKEY_eq(X509_get0_pubkey(slotcert), X509_get0_pubkey(att)) != 1) {
			v->error = "the slot's certificate is not for the attested key";
			goto out;
		}
		v->by_cert = true;
	}
	if (!v->by_meta && !v->by_cert) {
		v->error = "cannot tell which key the slot holds (no metadata, no certificate): "
		           "the attested key was not checked against the slot";
		goto out;
	}
	v->key_ok = true;
	r = TK_OK;
out:
	ERR_clear_error();
	EVP_PKEY_free(metakey);
	X509_free(slotcert);
	X509_free(dev);
	X509_free(att);
	return r;
}

static void
print_text(const struct verdict *v)
{
	FILE *f = v->error == NULL ? stdout : stderr;

	if (v->error == NULL)
		fprintf(f, "slot %02X: attestation verified\n", v->ref);
	else
		fprintf(f, "slot %02X: attestation NOT verified: %s\n", v->ref,
		        tool_text(v->error));
	if (!v->chain_ok)
		return;
	if (v->root_given)
		fprintf(f,
		        "  chain:        up to the root you gave (%s), through the device's "
		        "attestation certificate\n",
		        tool_text(v->root));
	else
		fprintf(f,
		        "  chain:        verified only up to the device's attestation certificate "
		        "(issued by %s); no --root given, so this does not prove who made the "
		        "device\n",
		        tool_text(v->issuer));
	if (v->key_ok)
		fprintf(f,
		        "  key:          %s, generated on the device, is the slot's key "
		        "(%s%s%s)\n",
		        v->has_meta ? tool_piv_alg_name(v->alg) : "the attested key",
		        v->by_meta ? "card metadata" : "", v->by_meta && v->by_cert ? ", " : "",
		        v->by_cert ? "slot certificate" : "");
	if (v->info.has_serial)
		fprintf(f, "  serial:       %llu\n", (unsigned long long)v->info.serial);
	if (v->info.has_firmware)
		fprintf(f, "  firmware:     %u.%u.%u\n", v->info.firmware[0], v->info.firmware[1],
		        v->info.firmware[2]);
	if (v->info.has_policy)
		fprintf(f, "  PIN policy:   %s\n  touch policy: %s\n",
		        tool_pin_policy_name(v->info.pin_policy),
		        tool_touch_policy_name(v->info.touch_policy));
	if (v->info.has_form_factor)
		fprintf(f, "  form factor:  %u\n", v->info.form_factor);
}

static void
print_json(const struct verdict *v)
{
	printf("{\"slot\": \"%02X\", \"verified\": %s, \"error\": ", v->ref,
	       v->error == NULL ? "true" : "false");
	if (v->error != NULL)
		tool_json_str(stdout, v->error);
	else
		printf("null");
	printf(", \"chain_verified\": %s, \"root\": ", v->chain_ok ? "true" : "false");
	if (v->root_given)
		tool_json_str(stdout, v->root);
	else
		printf("null");
	printf(", \"device_issuer\": ");
	tool_json_str(stdout, v->issuer);
	printf(", \"key_matches_slot\": %s, \"checked_by\": [%s%s%s]", v->key_ok ? "true" : "false",
	       v->by_meta ? "\"metadata\"" : "", v->by_meta && v->by_cert ? ", " : "",
	       v->by_cert ? "\"certificate\"" : "");
	if (v->info.has_serial)
		printf(", \"serial\": %llu", (unsigned long long)v->info.serial);
	if (v->info.has_firmware)
		printf(", \"firmware\": \"%u.%u.%u\"", v->info.firmware[0], v->info.firmware[1],
		       v->info.firmware[2]);
	if (v->info.has_policy)
		printf(", \"pin_policy\": \"%s\", \"touch_policy\": \"%s\"",
		       tool_pin_policy_name(v->info.pin_policy),
		       tool_touch_policy_name(v->info.touch_policy));
	printf("}\n");
}

static int
cmd_attest(int argc, char **argv)
{
	const char *reader = NULL, *slot = NULL, *root_path = NULL, *why = NULL;
	struct attest_read a = {0};
	struct verdict v = {0};
	tk_slotmgr_t *m = NULL;
	tk_card_t *c = NULL;
	X509 *root = NULL;
	bool json = false;
	int rc = TOOL_EXIT_USAGE, r;

	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--json") == 0)
			json = true;
		else if (strcmp(argv[i], "--root") == 0 && i + 1 < argc)
			root_path = argv[++i];
		else if (argv[i][0] == '-')
			goto usage;
		else if (reader == NULL)
			reader = argv[i];
		else if (slot == NULL)
			slot = argv[i];
		else
			goto usage;
	}
	if (reader == NULL || slot == NULL)
		goto usage;
	if (piv_parse_slot(slot, &v.ref) != TK_OK) {
		fprintf(stderr,
		        "tokenkit attest: '%s' is not a key slot (9a, 9c, 9d, 9e, 82..95)\n",
		        tool_text(slot));
		return TOOL_EXIT_USAGE;
	}
	if (root_path != NULL && (root = tool_load_cert(root_path)) == NULL) {
		fprintf(stderr, "tokenkit attest: cannot read a certificate (PEM or DER) from %s\n",
		        tool_text(root_path));
		return TOOL_EXIT_ERROR;
	}
	v.root_given = root != NULL;
	if ((rc = tool_open_card("attest", reader, &m, &c)) != TOOL_EXIT_OK)
		goto out;
	r = read_card(c, v.ref, &a, &why);
	if (r != TK_OK) {
		fprintf(stderr, "tokenkit attest: %s: slot %02X: %s\n",
		        tool_text(tk_card_reader_name(c)), v.ref,
		        why != NULL ? why : tk_strerror(r));
		rc = why != NULL ? TOOL_EXIT_ERROR : tool_exit_code(r);
		goto out;
	}
	rc = check(&a, root, &v) == TK_OK ? TOOL_EXIT_OK : TOOL_EXIT_ERROR;
	if (json)
		print_json(&v);
	else
		print_text(&v);
out:
	attest_read_free(&a);
	X509_free(root);
	tk_card_unref(&c);
	tk_slotmgr_free(&m);
	return rc;
usage:
	fprintf(stderr, "usage: tokenkit attest READER SLOT [--root CERT.pem] [--json]\n");
	return TOOL_EXIT_USAGE;
}

TOOL_COMMAND(attest, "attest", "READER SLOT [--root CERT] [--json]",
             "verify a PIV key attestation (YubiKey ATTEST) and show what it proves", cmd_attest)
