/* tokenkit piv: what the commands print with --json (one object on
 * standard output, on success only; errors stay on standard error). */
#include <stdlib.h>
#include <string.h>

#include <tokenkit/err.h>
#include <tokenkit/tlv.h>

#include "cmd_piv.h"
#include "piv_attest.h"
#include "piv_prov.h"
#include "tool.h"

int
tries_left(tool_session_t *p, uint8_t ref)
{
	uint8_t resp[RESP_CAP];
	size_t n = 0;
	uint16_t sw = 0;
	tk_tlv_t t;

	/* GET METADATA (Yubico 5.3+): 06 { total, left } */
	if (tool_xfer(p, 0xF7, 0x00, ref, NULL, 0, resp, RESP_CAP, &n, &sw) == TK_OK &&
	    sw == 0x9000 && tk_ber_find(resp, n, 0x06, &t) == TK_OK && t.len == 2)
		return t.value[1];
	/* the PIN: an empty VERIFY tells (63Cx), without spending a try */
	if (ref == 0x80 && tool_xfer(p, 0x20, 0x00, 0x80, NULL, 0, NULL, 0, NULL, &sw) == TK_OK) {
		if ((sw & 0xFFF0) == 0x63C0)
			return sw & 0xF;
		if (sw == 0x6983)
			return 0;
	}
	return -1;
}

void
pj_begin(tool_session_t *p)
{
	uint8_t resp[RESP_CAP];
	size_t n = 0;
	uint16_t sw = 0;

	printf("{\"command\": ");
	tool_json_str(stdout, p->cmd);
	printf(", \"reader\": ");
	tool_json_str(stdout, tk_card_reader_name(p->c));
	/* Yubico GET SERIAL: four bytes, big-endian */
	if (tool_xfer(p, 0xF8, 0x00, 0x00, NULL, 0, resp, RESP_CAP, &n, &sw) == TK_OK &&
	    sw == 0x9000 && n == 4)
		printf(", \"serial\": %lu", (unsigned long)resp[0] << 24 |
		                                    (unsigned long)resp[1] << 16 |
		                                    (unsigned long)resp[2] << 8 | resp[3]);
	else
		printf(", \"serial\": null");
}

void
pj_str(const char *key, const char *v)
{
	printf(", \"%s\": ", key);
	if (v != NULL)
		tool_json_str(stdout, v);
	else
		printf("null");
}

void
pj_int(const char *key, long v)
{
	if (v >= 0)
		printf(", \"%s\": %ld", key, v);
	else
		printf(", \"%s\": null", key);
}

void
pj_bool(const char *key, bool v)
{
	printf(", \"%s\": %s", key, v ? "true" : "false");
}

void
pj_end(void)
{
	printf("}\n");
	fflush(stdout);
}

int
pj_pem(const char *key, EVP_PKEY *pk, X509 *x, X509_REQ *req)
{
	char *s = tool_pem_string(pk, x, req);

	if (s == NULL)
		return TK_ERR_NO_MEMORY;
	pj_str(key, s);
	free(s);
	return TK_OK;
}

void
pj_slot(tool_session_t *p, uint8_t ref)
{
	uint8_t resp[RESP_CAP];
	char slot[3];
	size_t n = 0;
	uint16_t sw = 0;
	tool_piv_meta_t m;
	bool meta;

	snprintf(slot, sizeof(slot), "%02X", ref);
	pj_str("slot", slot);
	meta = tool_xfer(p, 0xF7, 0x00, ref, NULL, 0, resp, RESP_CAP, &n, &sw) == TK_OK &&
	       sw == 0x9000 && tool_piv_metadata_parse(resp, n, &m) == TK_OK;
	pj_str("algorithm", meta && m.alg != 0 ? tool_piv_alg_name(m.alg) : NULL);
	pj_str("pin_policy", meta && m.has_policy ? tool_pin_policy_name(m.pin_policy) : NULL);
	pj_str("touch_policy",
	       meta && m.has_policy ? tool_touch_policy_name(m.touch_policy) : NULL);
	pj_str("origin", !meta || !m.has_origin ? NULL
	                 : m.origin == 1        ? "generated"
	                 : m.origin == 2        ? "imported"
	                                        : "?");
}
