/* tokenkit: command-line tool — dispatch, help and shared helpers. */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <tokenkit/err.h>
#include <tokenkit/log.h>
#include <tokenkit/slot.h>
#include <tokenkit/text.h>
#include <tokenkit/token.h>

#include "tool.h"

#ifndef TOKENKIT_VERSION
#define TOKENKIT_VERSION "0.1.0"
#endif

static tool_cmd_t *commands;

void
tool_register(tool_cmd_t *cmd)
{
	tool_cmd_t **pp = &commands;

	/* Keep the table sorted by name for help. */
	while (*pp != NULL && strcmp((*pp)->name, cmd->name) < 0)
		pp = &(*pp)->next;
	cmd->next = *pp;
	*pp = cmd;
}

int
tool_exit_code(int err)
{
	switch (err) {
	case TK_OK:
		return TOOL_EXIT_OK;
	case TK_ERR_NO_SERVICE:
		return TOOL_EXIT_NO_SERVICE;
	case TK_ERR_NO_READER:
	case TK_ERR_READER_GONE:
		return TOOL_EXIT_NO_READER;
	case TK_ERR_NO_CARD:
	case TK_ERR_CARD_REMOVED:
	case TK_ERR_QUARANTINED:
		return TOOL_EXIT_NO_CARD;
	case TK_ERR_TIMEOUT:
	case TK_ERR_UNRESPONSIVE: /* the reader gave up waiting for the card */
		return TOOL_EXIT_TIMEOUT;
	case TK_ERR_INVALID_ARG:
	case TK_ERR_MALFORMED:
		return TOOL_EXIT_USAGE;
	case TK_ERR_LOGIN_REQUIRED:
		return TOOL_EXIT_LOCKED;
	default:
		return TOOL_EXIT_ERROR;
	}
}

void
tool_mgr_opts(tk_slotmgr_opts_t *o)
{
	tk_slotmgr_opts_init(o);
	/* The tool runs for a moment, for someone looking at their readers:
	 * it lists direct USB readers too (those no other program holds; the
	 * rest come through PC/SC), where the plugin is installed. The
	 * PKCS#11 module, loaded into long-lived programs, keeps to PC/SC. */
	o->default_readers = TOOL_DEFAULT_READERS;
}

int
tool_open_mgr(tk_slotmgr_t **out, int timeout_ms)
{
	tk_slotmgr_opts_t o;
	int r;

	*out = NULL;
	tool_mgr_opts(&o);
	r = tk_slotmgr_new(&o, out);
	if (r != TK_OK) {
		fprintf(stderr, "tokenkit: cannot start the slot manager: %s\n", tk_strerror(r));
		return tool_exit_code(r);
	}
	r = tk_slotmgr_wait_ready(*out, timeout_ms);
	if (r == TK_OK && tk_slotmgr_backend_status(*out, "pcsc") == TK_ERR_NO_SERVICE) {
		/* other backends work; without a reader from them this is
		 * still "pcscd is not there", with one a note */
		if (!tool_any_reader(*out))
			r = TK_ERR_NO_SERVICE;
		else
			fprintf(stderr,
			        "tokenkit: note: PC/SC daemon (pcscd) not reachable at %s; "
			        "showing the other backends' readers\n",
			        tk_pcsc_socket_path());
	}
	if (r == TK_ERR_NO_SERVICE) {
		fprintf(stderr,
		        "tokenkit: PC/SC daemon (pcscd) is not running or not reachable at %s; "
		        "start it with `systemctl start pcscd` or `pcscd`\n",
		        tk_pcsc_socket_path());
	} else if (r != TK_OK) {
		fprintf(stderr, "tokenkit: reader discovery did not finish: %s\n", tk_strerror(r));
	}
	if (r != TK_OK) {
		tk_slotmgr_free(out);
		return tool_exit_code(r);
	}
	return TOOL_EXIT_OK;
}

bool
tool_any_reader(tk_slotmgr_t *m)
{
	tk_slot_info_t *infos = NULL;
	size_t n = 0;
	bool any = false;

	if (tk_slotmgr_list(m, &infos, &n) != TK_OK)
		return false;
	for (size_t i = 0; i < n; i++)
		any = any || infos[i].state != TK_SLOT_ABSENT;
	free(infos);
	return any;
}

void
tool_settle(tk_slotmgr_t *m, int timeout_ms)
{
	struct timespec ts = {0, 20 * 1000000L};

	for (int waited = 0; waited < timeout_ms; waited += 20) {
		tk_slot_info_t *infos = NULL;
		size_t n = 0;
		bool busy = false;

		if (tk_slotmgr_list(m, &infos, &n) != TK_OK)
			return;
		for (size_t i = 0; i < n; i++)
			busy = busy || infos[i].state == TK_SLOT_PROBING;
		free(infos);
		if (!busy)
			return;
		nanosleep(&ts, NULL);
	}
}

void
tool_json_str(FILE *f, const char *s)
{
	size_t len = s != NULL ? strlen(s) : 0;
	size_t need = tk_text_escape(s, len, TK_TEXT_JSON, NULL, 0);
	char *buf = malloc(need + 1);

	fputc('"', f);
	if (buf != NULL) {
		tk_text_escape(s, len, TK_TEXT_JSON, buf, need + 1);
		fputs(buf, f);
		free(buf);
	}
	fputc('"', f);
}

const char *
tool_text(const char *s)
{
	static _Thread_local char bufs[4][2048];
	static _Thread_local unsigned next;
	char *b = bufs[next++ % 4];

	tk_text_escape(s, s != NULL ? strlen(s) : 0, TK_TEXT_PLAIN, b, sizeof(bufs[0]));
	return b;
}

const char *
tool_hex(const uint8_t *p, size_t len, char *buf, size_t cap)
{
	static const char digits[] = "0123456789ABCDEF";
	size_t o = 0;

	for (size_t i = 0; i < len && o + 2 < cap; i++) {
		buf[o++] = digits[p[i] >> 4];
		buf[o++] = digits[p[i] & 15];
	}
	if (cap > 0)
		buf[o] = '\0';
	return buf;
}

void
tool_usage_text(unsigned u, char *out, size_t cap)
{
	snprintf(out, cap, "%s%s%s", u & TK_USAGE_SIGN ? "sign," : "",
	         u & TK_USAGE_DECRYPT ? "decrypt," : "", u & TK_USAGE_DERIVE ? "derive," : "");
	if (out[0] != '\0')
		out[strlen(out) - 1] = '\0';
}

const char *
tool_proto_name(int p)
{
	return p == 0 ? "T=0" : p == 1 ? "T=1" : "-";
}

void
tool_json_atr_protocol(const tk_slot_info_t *s)
{
	char hex[2 * sizeof(s->atr) + 1];

	printf("\"atr\": ");
	if (s->atr_len > 0)
		printf("\"%s\"", tool_hex(s->atr, s->atr_len, hex, sizeof(hex)));
	else
		printf("null");
	printf(", \"protocol\": ");
	if (s->protocol >= 0)
		printf("\"%s\"", tool_proto_name(s->protocol));
	else
		printf("null");
}

void
tool_print_readers_hint(FILE *f, tk_slotmgr_t *m)
{
	tk_slot_info_t *infos = NULL;
	size_t n = 0, shown = 0;

	if (tk_slotmgr_list(m, &infos, &n) != TK_OK)
		return;
	for (size_t i = 0; i < n; i++) {
		if (infos[i].state == TK_SLOT_ABSENT)
			continue;
		if (shown++ == 0)
			fprintf(f, "available readers:\n");
		fprintf(f, "  %u: %s\n", infos[i].slot_id, tool_text(infos[i].reader));
	}
	if (shown == 0)
		fprintf(f, "no readers available\n");
	free(infos);
}

int
tool_open_card(const char *cmd, const char *reader, tk_slotmgr_t **m, tk_card_t **c)
{
	tk_slot_info_t info;
	uint32_t id;
	int rc, r;

	*m = NULL;
	*c = NULL;
	/* a broker holds the readers: its card (*m stays NULL) */
	if ((rc = tool_broker_card(cmd, reader, c)) >= 0)
		return rc;
	if ((rc = tool_open_mgr(m, 5000)) != TOOL_EXIT_OK)
		return rc;
	tool_settle(*m, 3000);
	r = tk_slotmgr_find(*m, reader, &id);
	if (r != TK_OK) {
		/* A slot number works too. */
		char *end = NULL;
		unsigned long v = strtoul(reader, &end, 10);

		if (end != NULL && *end == '\0' && end != reader &&
		    tk_slotmgr_info(*m, (uint32_t)v, &info) == TK_OK &&
		    info.state != TK_SLOT_ABSENT) {
			id = (uint32_t)v;
			r = TK_OK;
		}
	}
	if (r != TK_OK) {
		fprintf(stderr,
		        "tokenkit %s: no reader matches '%s' (exact name, unique prefix or "
		        "substring, or slot id)\n",
		        cmd, tool_text(reader));
		tool_print_readers_hint(stderr, *m);
		tk_slotmgr_free(m);
		return TOOL_EXIT_NO_READER;
	}
	r = tk_slotmgr_card(*m, id, c);
	if (r != TK_OK) {
		(void)tk_slotmgr_info(*m, id, &info);
		fprintf(stderr, "tokenkit %s: %s (slot %u, %s): %s\n", cmd, tool_text(info.reader),
		        id, tk_slot_state_name(info.state), tk_strerror(r));
		tk_slotmgr_free(m);
		return tool_exit_code(r);
	}
	return TOOL_EXIT_OK;
}

static void
usage(FILE *f)
{
	fprintf(f, "usage: tokenkit COMMAND [ARGS]\n\ncommands:\n");
	for (const tool_cmd_t *c = commands; c != NULL; c = c->next)
		fprintf(f, "  %-8s %-22s %s\n", c->name, c->usage, c->summary);
	fprintf(f, "  %-8s %-22s %s\n", "help", "", "this text");
	fprintf(f, "\noptions: --version, --log LEVEL (error, warn, info, debug, trace;\n"
	           "         also TOKENKIT_LOG=LEVEL)\n"
	           "\nexit codes:\n"
	           "  0  success\n"
	           "  1  the operation failed\n"
	           "  2  bad command line (unknown option, malformed hex)\n"
	           "  3  PC/SC daemon (pcscd) not reachable\n"
	           "  4  no such reader\n"
	           "  5  no usable card in the reader (absent, mute, unresponsive)\n"
	           "  6  the card did not answer in time\n"
	           "  7  token locked, needs the user PIN (or a file its password) and there is\n"
	           "     no terminal to ask on: give it with --pin-fd N\n");
}

int
main(int argc, char **argv)
{
	int i = 1;

	while (i < argc && argv[i][0] == '-') {
		if (strcmp(argv[i], "--version") == 0 || strcmp(argv[i], "-V") == 0) {
			printf("tokenkit %s\n", TOKENKIT_VERSION);
			return TOOL_EXIT_OK;
		} else if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
			usage(stdout);
			return TOOL_EXIT_OK;
		} else if (strcmp(argv[i], "--log") == 0 && i + 1 < argc) {
			int lvl = tk_log_level_parse(argv[i + 1]);

			if (lvl < 0) {
				fprintf(stderr, "tokenkit: unknown log level '%s'\n", argv[i + 1]);
				return TOOL_EXIT_USAGE;
			}
			tk_log_set_level(lvl);
			i += 2;
		} else {
			fprintf(stderr, "tokenkit: unknown option '%s' (try `tokenkit help`)\n",
			        argv[i]);
			return TOOL_EXIT_USAGE;
		}
	}
	if (i >= argc) {
		usage(stderr);
		return TOOL_EXIT_USAGE;
	}
	if (strcmp(argv[i], "help") == 0) {
		usage(stdout);
		return TOOL_EXIT_OK;
	}
	for (const tool_cmd_t *c = commands; c != NULL; c = c->next)
		if (strcmp(c->name, argv[i]) == 0)
			return c->run(argc - i, argv + i);
	fprintf(stderr, "tokenkit: unknown command '%s' (try `tokenkit help`)\n", argv[i]);
	return TOOL_EXIT_USAGE;
}
