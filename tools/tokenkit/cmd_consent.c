/* tokenkit consent list|reset: the decisions the broker (tokenkitd) keeps
 * about which program may use which private key. The broker makes them;
 * here they are shown and forgotten, so no "deny" is permanent. */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <tokenkit/consent.h>
#include <tokenkit/err.h>

#include "tool.h"

struct opts {
	bool json;
	const char *program, *token;
};

static int
usage_err(void)
{
	fprintf(stderr, "usage: tokenkit consent list [--json]\n"
	                "       tokenkit consent reset [--program PROGRAM] [--token TOKEN] "
	                "[--json]\n");
	return TOOL_EXIT_USAGE;
}

static int
parse(int argc, char **argv, bool reset, struct opts *o)
{
	memset(o, 0, sizeof(*o));
	for (int i = 2; i < argc; i++) {
		if (strcmp(argv[i], "--json") == 0)
			o->json = true;
		else if (reset && strcmp(argv[i], "--program") == 0 && i + 1 < argc)
			o->program = argv[++i];
		else if (reset && strcmp(argv[i], "--token") == 0 && i + 1 < argc)
			o->token = argv[++i];
		else
			return usage_err();
	}
	/* decisions are kept by the executable's absolute path: a bare name
	 * would match nothing, and silently */
	if (o->program != NULL && o->program[0] != '/') {
		fprintf(stderr,
		        "tokenkit consent reset: --program takes the program's absolute path, "
		        "as `tokenkit consent list` shows it\n");
		return TOOL_EXIT_USAGE;
	}
	return TOOL_EXIT_OK;
}

static void
time_text(uint64_t us, char *out, size_t cap)
{
	time_t t = (time_t)(us / 1000000u);
	struct tm tm;

	if (us == 0 || gmtime_r(&t, &tm) == NULL ||
	    strftime(out, cap, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
		snprintf(out, cap, "-");
}

static void
print_json(const tk_consent_rec_t *r)
{
	char when[32];

	time_text(r->time_us, when, sizeof(when));
	printf("{\"time\":\"%s\",\"time_us\":%" PRIu64 ",\"decision\":\"%s\",\"program\":", when,
	       r->time_us, tk_consent_decision_name(r->decision));
	tool_json_str(stdout, r->program);
	printf(",\"uid\":%" PRIu32 ",\"token_serial\":", r->uid);
	tool_json_str(stdout, r->token_serial);
	printf(",\"token_label\":");
	tool_json_str(stdout, r->token_label);
	printf(",\"key_id\":");
	tool_json_str(stdout, r->key_id);
	printf(",\"key_label\":");
	tool_json_str(stdout, r->key_label);
	printf("}");
}

/* 2024-05-01T09:30:00Z  deny    /usr/bin/ssh  uid 1000  token "PIV" (0123)  key "AUTH" (01) */
static void
print_text(const tk_consent_rec_t *r)
{
	char when[32];

	time_text(r->time_us, when, sizeof(when));
	/* tool_text: at most four in one printf */
	printf("%s  %-6s  %s  uid %" PRIu32 "  token \"%s\" (%s)", when,
	       tk_consent_decision_name(r->decision), tool_text(r->program), r->uid,
	       tool_text(r->token_label), tool_text(r->token_serial));
	printf("  key \"%s\" (%s)\n", tool_text(r->key_label), tool_text(r->key_id));
}

static int
cmd_list(tk_consent_t *c, const struct opts *o)
{
	tk_consent_rec_t *recs = NULL;
	size_t n = 0;
	int r = tk_consent_list(c, &recs, &n);

	if (r != TK_OK) {
		fprintf(stderr, "tokenkit consent list: %s: %s\n", tool_text(tk_consent_path(c)),
		        tk_strerror(r));
		return tool_exit_code(r);
	}
	if (o->json) {
		printf("{\"store\":");
		tool_json_str(stdout, tk_consent_path(c));
		printf(",\"decisions\":[");
		for (size_t i = 0; i < n; i++) {
			printf("%s", i ? "," : "");
			print_json(&recs[i]);
		}
		printf("]}\n");
	} else if (n == 0) {
		printf("no consent decisions in %s\n", tool_text(tk_consent_path(c)));
	} else {
		for (size_t i = 0; i < n; i++)
			print_text(&recs[i]);
	}
	tk_consent_list_free(&recs);
	return TOOL_EXIT_OK;
}

static int
cmd_reset(tk_consent_t *c, const struct opts *o)
{
	size_t removed = 0;
	int r = tk_consent_reset(c, o->program, o->token, &removed);

	if (r != TK_OK) {
		fprintf(stderr, "tokenkit consent reset: %s: %s (%zu forgotten before that)\n",
		        tool_text(tk_consent_path(c)), tk_strerror(r), removed);
		return tool_exit_code(r);
	}
	if (o->json)
		printf("{\"removed\":%zu}\n", removed);
	else
		printf("forgot %zu consent decision%s\n", removed, removed == 1 ? "" : "s");
	return TOOL_EXIT_OK;
}

static int
run(int argc, char **argv)
{
	const char *sub = argc > 1 ? argv[1] : "";
	bool reset = strcmp(sub, "reset") == 0;
	tk_consent_t *c = NULL;
	struct opts o;
	int rc;

	if (!reset && strcmp(sub, "list") != 0)
		return usage_err();
	if ((rc = parse(argc, argv, reset, &o)) != TOOL_EXIT_OK)
		return rc;
	if ((rc = tk_consent_open(NULL, &c)) != TK_OK) {
		fprintf(stderr, "tokenkit consent: %s%s\n", tk_strerror(rc),
		        rc == TK_ERR_NOT_SUPPORTED ? " (not in a set-uid or set-gid program)"
		        : rc == TK_ERR_NOT_FOUND
		                ? " (no home directory: set HOME or XDG_STATE_HOME)"
		                : "");
		return tool_exit_code(rc);
	}
	rc = reset ? cmd_reset(c, &o) : cmd_list(c, &o);
	tk_consent_free(&c);
	return rc;
}

TOOL_COMMAND(consent, "consent", "list|reset [--json] [--program PROGRAM] [--token TOKEN]",
             "per-program key-use decisions of the broker", run)
