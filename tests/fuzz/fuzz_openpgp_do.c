/* Fuzz the OpenPGP driver's parsers of card data (drivers/openpgp/
 * pgp_parse.c): application related data (6E), algorithm attributes,
 * cardholder data (65), KDF-DO (F9) and public key templates (7F49), with
 * the core's host services as the plugin gets them.
 *
 * Input: one selector byte (low 3 bits: 0 ARD, 1 algorithm attributes,
 * 2 cardholder, 3 KDF-DO, 4 public key template; for 4 the next bits pick
 * the key: RSA-2048, P-256, P-384, Ed25519, X25519), then the bytes. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <tokenkit/log.h>

#include "openpgp.h"
#include "plugin.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	tk_log_set_level(TK_LOG_NONE);
	if (pgp_set_host(tk_plugin_host()->driver) != TK_OK)
		abort();
	return 0;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const pgp_algo_t keys[5] = {
	        {PGP_ALGO_RSA, TK_KEY_RSA, 2048, 17},   {PGP_ALGO_ECDSA, TK_KEY_EC, 256, 0},
	        {PGP_ALGO_ECDSA, TK_KEY_EC, 384, 0},    {PGP_ALGO_EDDSA, TK_KEY_ED25519, 255, 0},
	        {PGP_ALGO_ECDH, TK_KEY_X25519, 255, 0},
	};
	pgp_ard_t ard;
	pgp_algo_t algo;
	pgp_kdf_t kdf;
	char name[40];
	uint8_t *spki = NULL;
	size_t sl = 0;

	if (pgp_host == NULL && LLVMFuzzerInitialize(NULL, NULL) != 0)
		abort();
	if (size < 1)
		return 0;
	switch (data[0] & 7) {
	case 0:
		if (pgp_parse_ard(data + 1, size - 1, &ard) == TK_OK && ard.version == 0)
			abort();
		break;
	case 1:
		if (pgp_parse_algo(data + 1, size - 1, &algo) == TK_OK &&
		    (algo.key_type == TK_KEY_NONE || algo.bits == 0))
			abort();
		break;
	case 2:
		if (pgp_parse_cardholder(data + 1, size - 1, name, sizeof(name)) == TK_OK &&
		    strlen(name) >= sizeof(name))
			abort();
		break;
	case 3:
		if (pgp_parse_kdf(data + 1, size - 1, &kdf) == TK_OK && kdf.on &&
		    (kdf.count == 0 || !kdf.has_salt[0]))
			abort();
		break;
	default:
		if (pgp_parse_pubkey(&keys[(data[0] >> 3) % 5], data + 1, size - 1, &spki, &sl) ==
		    TK_OK) {
			int kt;
			unsigned kb;

			if (pgp_host->spki_info(spki, sl, &kt, &kb) != TK_OK)
				abort();
		}
		free(spki);
		break;
	}
	return 0;
}
