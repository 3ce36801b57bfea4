/* tokenkit apdu READER HEX...: send raw APDUs and print the responses. */
#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include <tokenkit/card.h>
#include <tokenkit/err.h>

#include "tool.h"

#define MAX_APDU (4 + 3 + 65535 + 3)
#define MAX_RESP (65536 + 2)
#define MAX_GET_RESPONSE 64

/* Parse hex, allowing spaces, tabs and ':' between byte pairs. On error
 * *bad is the 1-based character position of the problem. */
static int
parse_hex(const char *s, uint8_t *out, size_t cap, size_t *len, size_t *bad, const char **why)
{
	size_t n = 0, i = 0;

	*len = 0;
	*bad = 0;
	while (s[i] != '\0') {
		int hi, lo;

		if (s[i] == ' ' || s[i] == '\t' || s[i] == ':') {
			i++;
			continue;
		}
		if (!isxdigit((unsigned char)s[i])) {
			*bad = i + 1;
			*why = "not a hex digit";
			return TK_ERR_MALFORMED;
		}
		if (!isxdigit((unsigned char)s[i + 1])) {
			*bad = s[i + 1] == '\0' ? i + 1 : i + 2;
			*why = s[i + 1] == '\0'
			               ? "odd number of hex digits (last digit has no pair)"
			               : "not a hex digit";
			return TK_ERR_MALFORMED;
		}
		if (n >= cap) {
			*bad = i + 1;
			*why = "APDU too long";
			return TK_ERR_TOO_LONG;
		}
		hi = isdigit((unsigned char)s[i]) ? s[i] - '0'
		                                  : (tolower((unsigned char)s[i]) - 'a' + 10);
		lo = isdigit((unsigned char)s[i + 1])
		             ? s[i + 1] - '0'
		             : (tolower((unsigned char)s[i + 1]) - 'a' + 10);
		out[n++] = (uint8_t)(hi << 4 | lo);
		i += 2;
	}
	*len = n;
	return TK_OK;
}

static void
print_hex_spaced(const uint8_t *p, size_t len)
{
	for (size_t i = 0; i < len; i++)
		printf("%s%02X", i ? " " : "", p[i]);
}

/* Send one APDU; follow 61xx with GET RESPONSE (bounded) unless raw. */
static int
exchange(tk_card_t *c, const uint8_t *cmd, size_t cmd_len, bool raw, uint8_t *resp,
         size_t *resp_len, uint16_t *sw)
{
	uint8_t part[258];
	uint8_t gr[5] = {0x00, 0xC0, 0x00, 0x00, 0x00};
	size_t n = 0, total = 0;
	int r;

	*resp_len = 0;
	*sw = 0;
	r = tk_card_transmit(c, cmd, cmd_len, resp, MAX_RESP, &n, 0);
	if (r != TK_OK)
		return r;
	total = n - 2;
	*sw = (uint16_t)(resp[n - 2] << 8 | resp[n - 1]);
	for (int k = 0; !raw && (*sw >> 8) == 0x61 && k < MAX_GET_RESPONSE; k++) {
		gr[0] = cmd[0] & 0x03; /* keep the logical channel */
		gr[4] = (uint8_t)(*sw & 0xff);
		r = tk_card_transmit(c, gr, sizeof(gr), part, sizeof(part), &n, 0);
		if (r != TK_OK)
			return r;
		if (total + n - 2 > MAX_RESP - 2)
			return TK_ERR_TOO_LONG;
		memcpy(resp + total, part, n - 2);
		total += n - 2;
		*sw = (uint16_t)(part[n - 2] << 8 | part[n - 1]);
	}
	*resp_len = total;
	return TK_OK;
}

static int
cmd_apdu(int argc, char **argv)
{
	const char *reader = NULL;
	uint8_t **cmds = NULL, *resp = NULL;
	size_t *lens = NULL, ncmd = 0;
	bool raw = false, in_tx = false;
	tk_slotmgr_t *m = NULL;
	tk_card_t *c = NULL;
	int rc = TOOL_EXIT_OK, r;

	cmds = calloc((size_t)argc, sizeof(*cmds));
	lens = calloc((size_t)argc, sizeof(*lens));
	resp = malloc(MAX_RESP);
	if (cmds == NULL || lens == NULL || resp == NULL) {
		fprintf(stderr, "tokenkit apdu: out of memory\n");
		rc = TOOL_EXIT_ERROR;
		goto out;
	}
	/* Check every argument before touching the card. */
	for (int i = 1; i < argc; i++) {
		size_t bad = 0;
		const char *why = "";

		if (strcmp(argv[i], "--raw") == 0) {
			raw = true;
			continue;
		}
		if (reader == NULL) {
			reader = argv[i];
			continue;
		}
		cmds[ncmd] = malloc(MAX_APDU);
		if (cmds[ncmd] == NULL) {
			rc = TOOL_EXIT_ERROR;
			goto out;
		}
		r = parse_hex(argv[i], cmds[ncmd], MAX_APDU, &lens[ncmd], &bad, &why);
		if (r == TK_OK && lens[ncmd] < 4) {
			fprintf(stderr,
			        "tokenkit apdu: argument %d ('%s'): an APDU needs at least 4 bytes "
			        "(CLA INS P1 P2), got %zu\n",
			        i, argv[i], lens[ncmd]);
			rc = TOOL_EXIT_USAGE;
			goto out;
		}
		if (r != TK_OK) {
			fprintf(stderr,
			        "tokenkit apdu: argument %d ('%s'): malformed hex at position %zu: "
			        "%s\n",
			        i, argv[i], bad, why);
			rc = TOOL_EXIT_USAGE;
			goto out;
		}
		ncmd++;
	}
	if (reader == NULL || ncmd == 0) {
		fprintf(stderr, "usage: tokenkit apdu [--raw] READER HEX...\n");
		rc = TOOL_EXIT_USAGE;
		goto out;
	}
	rc = tool_open_card("apdu", reader, &m, &c);
	if (rc != TOOL_EXIT_OK)
		goto out;
	r = tk_card_begin(c);
	if (r != TK_OK) {
		fprintf(stderr, "tokenkit apdu: %s: begin transaction: %s\n",
		        tool_text(tk_card_reader_name(c)), tk_strerror(r));
		rc = tool_exit_code(r);
		goto out;
	}
	in_tx = true;
	for (size_t k = 0; k < ncmd; k++) {
		size_t n = 0;
		uint16_t sw = 0;

		printf("> ");
		print_hex_spaced(cmds[k], lens[k]);
		printf("\n");
		fflush(stdout);
		r = exchange(c, cmds[k], lens[k], raw, resp, &n, &sw);
		if (r != TK_OK) {
			fprintf(stderr, "tokenkit apdu: %s: %s\n",
			        tool_text(tk_card_reader_name(c)), tk_strerror(r));
			if (r == TK_ERR_TIMEOUT || r == TK_ERR_UNRESPONSIVE || r == TK_ERR_COMM ||
			    r == TK_ERR_QUARANTINED)
				fprintf(stderr,
				        "tokenkit apdu: the reader is being recovered (reset, "
				        "power "
				        "cycle); `tokenkit diag '%s'` shows what happened\n",
				        tool_text(tk_card_reader_name(c)));
			rc = tool_exit_code(r);
			goto out;
		}
		printf("< ");
		print_hex_spaced(resp, n);
		printf("%sSW=%04X (%s)\n", n ? " " : "", sw,
		       sw == 0x9000 ? "success" : tk_strerror(tk_err_from_sw(sw)));
		fflush(stdout);
	}
out:
	if (in_tx)
		(void)tk_card_end(c);
	tk_card_unref(&c);
	tk_slotmgr_free(&m);
	for (size_t k = 0; cmds != NULL && k < (size_t)argc; k++)
		free(cmds[k]);
	free(cmds);
	free(lens);
	free(resp);
	return rc;
}

TOOL_COMMAND(apdu, "apdu", "[--raw] READER HEX...",
             "send APDUs (61xx followed with GET RESPONSE unless --raw)", cmd_apdu)
