/* tokenkit readers (through the broker when one answers), tokenkit watch. */
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include <tokenkit/atr.h>
#include <tokenkit/err.h>

#include "tool.h"

static void
print_atr_text(const uint8_t *atr, size_t len, const char *indent)
{
	tk_atr_t a;
	char *text;
	int r;

	r = tk_atr_parse(atr, len, &a);
	if (r != TK_OK) {
		printf("%sATR does not parse: %s\n", indent, tk_strerror(r));
		return;
	}
	text = malloc(8192);
	if (text == NULL)
		return;
	(void)tk_atr_describe(&a, text, 8192); /* a cut-short text is still useful */
	for (char *line = text, *nl; line != NULL && *line != '\0'; line = nl) {
		nl = strchr(line, '\n');
		if (nl != NULL)
			*nl++ = '\0';
		printf("%s%s\n", indent, tool_text(line));
	}
	free(text);
}

static void
json_atr_text(const uint8_t *atr, size_t len)
{
	tk_atr_t a;
	char *text;

	if (tk_atr_parse(atr, len, &a) != TK_OK || (text = malloc(8192)) == NULL) {
		printf("null");
		return;
	}
	(void)tk_atr_describe(&a, text, 8192);
	tool_json_str(stdout, text);
	free(text);
}

/* What the backend knows of the reader: exchange level, slots, PIN pad. */
static void
print_details(const tk_slot_info_t *s)
{
	char line[128];
	size_t n = 0;

	line[0] = '\0';
	if (s->exchange[0] != '\0')
		n += (size_t)snprintf(line + n, sizeof(line) - n, "%s level",
		                      tool_text(s->exchange));
	if (s->reader_slots > 0 && n < sizeof(line))
		n += (size_t)snprintf(line + n, sizeof(line) - n, "%s%u slot%s", n ? ", " : "",
		                      s->reader_slots, s->reader_slots == 1 ? "" : "s");
	if (s->pin_pad && n < sizeof(line))
		n += (size_t)snprintf(line + n, sizeof(line) - n, "%sPIN pad", n ? ", " : "");
	if (n > 0)
		printf("%*s%s\n", 27, "", line);
}

static void
print_readers(const tk_slot_info_t *infos, size_t n, bool json, bool atr)
{
	char hex[2 * 33 + 1];
	size_t shown = 0;

	if (json)
		printf("[");
	for (size_t i = 0; i < n; i++) {
		const tk_slot_info_t *s = &infos[i];

		if (s->state == TK_SLOT_ABSENT)
			continue;
		tool_hex(s->atr, s->atr_len, hex, sizeof(hex));
		if (json) {
			printf("%s\n  {\"slot\": %u, \"reader\": ", shown ? "," : "", s->slot_id);
			tool_json_str(stdout, s->reader);
			printf(", \"state\": \"%s\", \"card\": %s, ", tk_slot_state_name(s->state),
			       s->card_seq != 0 ? "true" : "false");
			tool_json_atr_protocol(s);
			printf(", \"backend\": ");
			tool_json_str(stdout, s->backend);
			printf(", \"exchange\": ");
			if (s->exchange[0] != '\0')
				tool_json_str(stdout, s->exchange);
			else
				printf("null");
			printf(", \"reader_slots\": ");
			if (s->reader_slots > 0)
				printf("%u", s->reader_slots);
			else
				printf("null");
			printf(", \"pin_pad\": %s", s->pin_pad ? "true" : "false");
			if (atr) {
				printf(", \"atr_info\": ");
				if (s->atr_len > 0)
					json_atr_text(s->atr, s->atr_len);
				else
					printf("null");
			}
			printf("}");
		} else {
			printf("%u  %-11s %-3s  %-5s  %s%s%s\n", s->slot_id,
			       tk_slot_state_name(s->state), tool_proto_name(s->protocol),
			       tool_text(s->backend), tool_text(s->reader), s->atr_len ? "  " : "",
			       s->atr_len ? hex : "");
			print_details(s);
			if (atr && s->atr_len > 0)
				print_atr_text(s->atr, s->atr_len, "     ");
		}
		shown++;
	}
	if (json)
		printf("%s]\n", shown ? "\n" : "");
	else if (shown == 0)
		printf("no readers\n");
}

/* The broker's readers, when one answers: it holds them (a direct-USB
 * reader is claimed by one process, and its view is the one the
 * applications get). TOOL_EXIT_OK (*infos, *n), TOOL_EXIT_NO_SERVICE, or
 * -1: no broker, open the readers here. */
static int
broker_readers(tk_slot_info_t **infos, size_t *n)
{
	tk_slot_diag_t *d = NULL;
	int rc = tool_broker_readers("readers", NULL, &d, n);

	if (rc != TOOL_EXIT_OK)
		return rc;
	*infos = calloc(*n > 0 ? *n : 1, sizeof(**infos));
	for (size_t i = 0; *infos != NULL && i < *n; i++)
		(*infos)[i] = d[i].info;
	free(d);
	if (*infos == NULL) {
		fprintf(stderr, "tokenkit readers: out of memory\n");
		return TOOL_EXIT_ERROR;
	}
	return TOOL_EXIT_OK;
}

static int
cmd_readers(int argc, char **argv)
{
	bool json = false, atr = false;
	tk_slotmgr_t *m = NULL;
	tk_slot_info_t *infos = NULL;
	size_t n = 0;
	int rc, r;

	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--json") == 0) {
			json = true;
		} else if (strcmp(argv[i], "--atr") == 0) {
			atr = true;
		} else {
			fprintf(stderr, "tokenkit readers: unknown argument '%s'\n", argv[i]);
			return TOOL_EXIT_USAGE;
		}
	}
	if ((rc = broker_readers(&infos, &n)) >= 0) {
		if (rc == TOOL_EXIT_OK)
			print_readers(infos, n, json, atr);
		free(infos);
		return rc;
	}
	rc = tool_open_mgr(&m, 5000);
	if (rc != TOOL_EXIT_OK)
		return rc;
	tool_settle(m, 3000);
	r = tk_slotmgr_list(m, &infos, &n);
	if (r != TK_OK) {
		fprintf(stderr, "tokenkit readers: %s\n", tk_strerror(r));
		tk_slotmgr_free(&m);
		return tool_exit_code(r);
	}
	print_readers(infos, n, json, atr);
	free(infos);
	tk_slotmgr_free(&m);
	return TOOL_EXIT_OK;
}

TOOL_COMMAND(readers, "readers", "[--json] [--atr]",
             "list readers: slot id, state, protocol, backend, name, ATR; exchange level, "
             "slots, PIN pad",
             cmd_readers)

/* watch: one line per event, flushed, until SIGINT/SIGTERM. The callback
 * runs in the manager's event thread; stdout is only written there. */
typedef struct watch {
	bool json;
} watch_t;

static void
on_event(void *ctx, const tk_event_t *ev)
{
	const watch_t *w = ctx;
	char hex[2 * 33 + 1];
	double t = (double)ev->time_us / 1e6;

	tool_hex(ev->atr, ev->atr != NULL ? ev->atr_len : 0, hex, sizeof(hex));
	if (w->json) {
		printf("{\"seq\": %llu, \"time\": %.6f, \"event\": \"%s\", \"backend\": ",
		       (unsigned long long)ev->seq, t, tk_event_type_name(ev->type));
		tool_json_str(stdout, ev->backend != NULL ? ev->backend : "");
		if (ev->type != TK_EVENT_SERVICE_LOST && ev->type != TK_EVENT_SERVICE_RESTORED) {
			printf(", \"slot\": %u, \"reader\": ", ev->slot_id);
			tool_json_str(stdout, ev->reader != NULL ? ev->reader : "");
			printf(", \"old_state\": \"%s\", \"state\": \"%s\", \"card\": %llu",
			       tk_slot_state_name(ev->old_state), tk_slot_state_name(ev->state),
			       (unsigned long long)ev->card_seq);
			if (ev->atr_len > 0)
				printf(", \"atr\": \"%s\"", hex);
		}
		printf("}\n");
	} else {
		printf("%.3f %-16s backend=%s", t, tk_event_type_name(ev->type),
		       tool_text(ev->backend != NULL ? ev->backend : ""));
		if (ev->type != TK_EVENT_SERVICE_LOST && ev->type != TK_EVENT_SERVICE_RESTORED) {
			printf(" slot=%u state=%s->%s reader=\"%s\"", ev->slot_id,
			       tk_slot_state_name(ev->old_state), tk_slot_state_name(ev->state),
			       tool_text(ev->reader != NULL ? ev->reader : ""));
			if (ev->atr_len > 0)
				printf(" atr=%s", hex);
		}
		printf("\n");
	}
	fflush(stdout);
}

static int
cmd_watch(int argc, char **argv)
{
	watch_t w = {false};
	tk_slotmgr_opts_t o;
	tk_slotmgr_t *m = NULL;
	sigset_t set;
	int sig = 0, r;

	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--json") == 0) {
			w.json = true;
		} else {
			fprintf(stderr, "tokenkit watch: unknown argument '%s'\n", argv[i]);
			return TOOL_EXIT_USAGE;
		}
	}
	/* Block the signals before any thread starts, then wait for them here. */
	sigemptyset(&set);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGTERM);
	pthread_sigmask(SIG_BLOCK, &set, NULL);
	tool_mgr_opts(&o);
	r = tk_slotmgr_new(&o, &m);
	if (r != TK_OK) {
		fprintf(stderr, "tokenkit watch: %s\n", tk_strerror(r));
		return tool_exit_code(r);
	}
	/* A daemon that is not running yet is reported, not fatal: the events
	 * show when it comes. */
	if (tk_slotmgr_wait_ready(m, 5000) == TK_ERR_NO_SERVICE)
		fprintf(stderr, "tokenkit watch: PC/SC daemon (pcscd) is not running or not "
		                "reachable; waiting for it\n");
	r = tk_slotmgr_subscribe(m, on_event, &w, true);
	if (r < 0) {
		fprintf(stderr, "tokenkit watch: %s\n", tk_strerror(r));
		tk_slotmgr_free(&m);
		return tool_exit_code(r);
	}
	(void)sigwait(&set, &sig);
	tk_slotmgr_unsubscribe(m, r);
	tk_slotmgr_free(&m);
	return TOOL_EXIT_OK;
}

TOOL_COMMAND(watch, "watch", "[--json]", "print reader and card events until interrupted",
             cmd_watch)
