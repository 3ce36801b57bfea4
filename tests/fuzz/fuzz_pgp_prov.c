/* Fuzz the OpenPGP card parsers of the tool (tools/tokenkit/pgp_prov.c):
 * the first byte picks what the rest is: 0 application related data (6E),
 * 1 cardholder data (65), 2 the security support template (7A), 3 a
 * KDF-DO (an S2K one with a small count hashes a PIN), 4 algorithm attributes, 5..9 a GENERATE
 * response (7F49) for rsa2048, nistp256, nistp384, ed25519, cv25519. What parses must be usable:
 * attributes the tool knows encode back to the same algorithm, a public key fits its attributes and
 * has a fingerprint. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <tokenkit/err.h>

#include "pgp_prov.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void
check_attr(const uint8_t *p, size_t n)
{
	uint8_t enc[16];
	pgp_attr_t a, b;
	size_t len = 0;
	int key;

	if (pgp_attr_parse(p, n, &a) != TK_OK || a.id == 0)
		return;
	if (a.name[0] == '\0' || memchr(a.name, '\0', sizeof(a.name)) == NULL)
		abort();
	key = a.id == PGP_ID_ECDH ? PGP_DEC : PGP_SIG;
	/* names the tool can write come back as the same algorithm */
	if (pgp_attr_encode(a.name, key, &a, enc, sizeof(enc), &len) != TK_OK)
		return;
	if (pgp_attr_parse(enc, len, &b) != TK_OK || strcmp(a.name, b.name) != 0)
		abort();
}

static void
check_pubkey(int which, const uint8_t *p, size_t n)
{
	static const char *const names[] = {"rsa2048", "nistp256", "nistp384", "ed25519",
	                                    "cv25519"};
	uint8_t enc[16], fpr[20];
	pgp_attr_t at;
	EVP_PKEY *pk = NULL;
	size_t len = 0;
	int key = which == 4 ? PGP_DEC : PGP_SIG;

	if (pgp_attr_encode(names[which], key, NULL, enc, sizeof(enc), &len) != TK_OK ||
	    pgp_attr_parse(enc, len, &at) != TK_OK)
		abort();
	if (pgp_pubkey_parse(&at, p, n, &pk) != TK_OK) {
		if (pk != NULL)
			abort();
		return;
	}
	if (!pgp_key_fits(&at, pk) || pgp_fingerprint(&at, pk, 0x5A000000u, fpr) != TK_OK)
		abort();
	EVP_PKEY_free(pk);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const uint8_t *p = data + 1;
	size_t n = size - 1;
	pgp_ard_t ard;
	pgp_cardholder_t ch;
	uint32_t count;
	pgp_kdf_t kdf;
	uint8_t pin[128];
	size_t pl = 0;

	if (size < 1)
		return 0;
	switch (data[0] % 10) {
	case 0:
		if (pgp_ard_parse(p, n, &ard) == TK_OK &&
		    (ard.aid_len == 0 || ard.aid_len > sizeof(ard.aid)))
			abort();
		break;
	case 1:
		if (pgp_cardholder_parse(p, n, &ch) == TK_OK &&
		    (memchr(ch.name, '\0', sizeof(ch.name)) == NULL ||
		     memchr(ch.lang, '\0', sizeof(ch.lang)) == NULL))
			abort();
		break;
	case 2:
		if (pgp_sig_counter_parse(p, n, &count) == TK_OK && count > 0xFFFFFFu)
			abort();
		break;
	case 3:
		if (pgp_kdf_parse(p, n, &kdf) == TK_OK && kdf.algo == PGP_KDF_ITERSALTED_S2K &&
		    kdf.count <= 65536 &&
		    pgp_kdf_pin(&kdf, PGP_RC, "12345678", 8, pin, sizeof(pin), &pl) == TK_OK &&
		    pl != 32 && pl != 64)
			abort();
		break;
	case 4:
		check_attr(p, n);
		break;
	default:
		check_pubkey(data[0] % 10 - 5, p, n);
		break;
	}
	return 0;
}
