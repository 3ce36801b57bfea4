/* Fuzz the consent store's record decoder (core/consent_rec.c): any bytes
 * a file in the store may hold. What decodes is a valid decision (the
 * writer's checks), encodes back to the same bytes (there is one encoding)
 * and decodes again to the same record; its file name can be computed. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <tokenkit/err.h>

#include "consent_priv.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	/* large: a path of 4 KiB; static, one input at a time */
	static tk_consent_rec_t rec, again;
	char name[TK_CONSENT_NAME_LEN + 1];
	uint8_t *enc = NULL;
	size_t el = 0;

	if (tk_consent_rec_decode(data, size, &rec) != TK_OK)
		return 0;
	if (!tk_consent_rec_ok(&rec))
		abort();
	if (tk_consent_rec_encode(&rec, &enc, &el) != TK_OK || el != size ||
	    memcmp(enc, data, size) != 0)
		abort();
	if (tk_consent_rec_decode(enc, el, &again) != TK_OK ||
	    memcmp(&rec, &again, sizeof(rec)) != 0)
		abort();
	if (tk_consent_file_name(rec.program, rec.uid, rec.token_serial, rec.key_id, name) !=
	            TK_OK ||
	    !tk_consent_name_ok(name))
		abort();
	free(enc);
	return 0;
}
