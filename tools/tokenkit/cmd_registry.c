/* tokenkit registry list|show|remove|watch: the token-registration
 * registry (the user's store, or with --system the system's). */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <tokenkit/err.h>
#include <tokenkit/registry.h>
#include <tokenkit/token.h>

#include "tool.h"

struct opts {
	bool json, system;
	const char *path;
	const char *args[2];
	int nargs;
};

static int
usage_err(void)
{
	fprintf(stderr, "usage: tokenkit registry list|show PROVIDER/INSTANCE|remove "
	                "PROVIDER/INSTANCE|watch [--json] [--system] [--store DIR]\n");
	return TOOL_EXIT_USAGE;
}

static int
parse(int argc, char **argv, struct opts *o)
{
	memset(o, 0, sizeof(*o));
	for (int i = 2; i < argc; i++) {
		if (strcmp(argv[i], "--json") == 0)
			o->json = true;
		else if (strcmp(argv[i], "--system") == 0)
			o->system = true;
		else if (strcmp(argv[i], "--store") == 0 && i + 1 < argc)
			o->path = argv[++i];
		else if (argv[i][0] != '-' && o->nargs < 2)
			o->args[o->nargs++] = argv[i];
		else
			return usage_err();
	}
	return TOOL_EXIT_OK;
}

static int
open_reg(const struct opts *o, tk_registry_t **reg)
{
	tk_registry_opts_t ro;
	int r;

	tk_registry_opts_init(&ro);
	ro.path = o->path;
	ro.flags = o->system ? TK_REGISTRY_SYSTEM : 0;
	r = tk_registry_open(&ro, reg);
	if (r != TK_OK)
		fprintf(stderr, "tokenkit: registry%s%s: %s\n", o->path != NULL ? " " : "",
		        o->path != NULL ? tool_text(o->path) : "", tk_strerror(r));
	return r;
}

/* "provider/instance" */
static int
split(const char *arg, char *provider, size_t pcap, char *instance, size_t icap)
{
	const char *slash = arg != NULL ? strchr(arg, '/') : NULL;

	if (slash == NULL || (size_t)(slash - arg) >= pcap || strlen(slash + 1) >= icap) {
		fprintf(stderr, "tokenkit: name a registration as PROVIDER/INSTANCE\n");
		return TK_ERR_INVALID_ARG;
	}
	memcpy(provider, arg, (size_t)(slash - arg));
	provider[slash - arg] = '\0';
	snprintf(instance, icap, "%s", slash + 1);
	return TK_OK;
}

static const char *
kind_name(int kind)
{
	return kind == TK_REG_ITEM_CERT ? "certificate" : kind == TK_REG_ITEM_KEY ? "key" : "?";
}

static const char *
key_name(int kt)
{
	return kt == TK_KEY_RSA       ? "rsa"
	       : kt == TK_KEY_EC      ? "ec"
	       : kt == TK_KEY_ED25519 ? "ed25519"
	                              : "";
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
print_json(const tk_registration_t *r, bool items)
{
	char created[32], updated[32], hex[2 * TK_REG_HANDLE_MAX + 1], usage[32];
	const uint8_t *cfg;
	size_t cfg_len, n = tk_registration_item_count(r);

	time_text(tk_registration_created(r), created, sizeof(created));
	time_text(tk_registration_updated(r), updated, sizeof(updated));
	tk_registration_config(r, &cfg, &cfg_len);
	printf("{\"provider\":");
	tool_json_str(stdout, tk_registration_provider(r));
	printf(",\"instance\":");
	tool_json_str(stdout, tk_registration_instance(r));
	printf(",\"label\":");
	tool_json_str(stdout, tk_registration_label(r));
	printf(",\"generation\":%" PRIu64 ",\"created\":\"%s\",\"updated\":\"%s\",\"card\":%s,"
	       "\"removed\":%s,\"config_bytes\":%zu,\"item_count\":%zu",
	       tk_registration_generation(r), created, updated,
	       tk_registration_flags(r) & TK_REG_FLAG_CARD ? "true" : "false",
	       tk_registration_removed(r) ? "true" : "false", cfg_len, n);
	if (items) {
		printf(",\"items\":[");
		for (size_t i = 0; i < n; i++) {
			tk_reg_item_t it;

			(void)tk_registration_item(r, i, &it);
			printf("%s{\"kind\":\"%s\",\"id\":\"%s\",\"label\":", i ? "," : "",
			       kind_name(it.kind), tool_hex(it.id, it.id_len, hex, sizeof(hex)));
			tool_json_str(stdout, it.label);
			printf(",\"der_bytes\":%zu", it.der_len);
			if (it.kind == TK_REG_ITEM_KEY) {
				tool_usage_text(it.usage, usage, sizeof(usage));
				printf(",\"type\":\"%s\",\"bits\":%u,\"usage\":\"%s\",\"handle\":"
				       "\"%s\"",
				       key_name(it.key_type), it.key_bits, usage,
				       tool_hex(it.handle, it.handle_len, hex, sizeof(hex)));
			}
			printf("}");
		}
		printf("]");
	}
	printf("}");
}

static void
print_text(const tk_registration_t *r, bool items)
{
	char created[32], updated[32], hex[2 * TK_REG_HANDLE_MAX + 1], usage[32];
	size_t n = tk_registration_item_count(r);

	time_text(tk_registration_created(r), created, sizeof(created));
	time_text(tk_registration_updated(r), updated, sizeof(updated));
	printf("%s/%s  \"%s\"  generation %" PRIu64 "%s  %zu items  updated %s\n",
	       tool_text(tk_registration_provider(r)), tool_text(tk_registration_instance(r)),
	       tool_text(tk_registration_label(r)), tk_registration_generation(r),
	       tk_registration_flags(r) & TK_REG_FLAG_CARD ? "  (card)" : "", n, updated);
	if (!items)
		return;
	printf("  created %s\n", created);
	for (size_t i = 0; i < n; i++) {
		tk_reg_item_t it;

		(void)tk_registration_item(r, i, &it);
		printf("  %-11s id %s  \"%s\"  %zu bytes", kind_name(it.kind),
		       tool_hex(it.id, it.id_len, hex, sizeof(hex)), tool_text(it.label),
		       it.der_len);
		if (it.kind == TK_REG_ITEM_KEY) {
			tool_usage_text(it.usage, usage, sizeof(usage));
			printf("  %s %u  %s", key_name(it.key_type), it.key_bits, usage);
		}
		printf("\n");
	}
}

static int
cmd_list(tk_registry_t *reg, const struct opts *o)
{
	tk_registration_t **list = NULL;
	size_t n = 0;
	int r = tk_registry_list(reg, &list, &n);

	if (r != TK_OK) {
		fprintf(stderr, "tokenkit: registry %s: %s\n", tool_text(tk_registry_path(reg)),
		        tk_strerror(r));
		return tool_exit_code(r);
	}
	if (o->json) {
		char id[33];

		tk_registry_identity(reg, id, NULL);
		printf("{\"store\":");
		tool_json_str(stdout, tk_registry_path(reg));
		printf(",\"store_id\":\"%s\",\"registrations\":[", id);
		for (size_t i = 0; i < n; i++) {
			printf("%s", i ? "," : "");
			print_json(list[i], false);
		}
		printf("]}\n");
	} else {
		for (size_t i = 0; i < n; i++)
			print_text(list[i], false);
		if (n == 0)
			printf("no registrations in %s\n", tool_text(tk_registry_path(reg)));
	}
	tk_registry_list_free(&list, n);
	return TOOL_EXIT_OK;
}

static int
cmd_show(tk_registry_t *reg, const struct opts *o)
{
	char provider[TK_REG_PROVIDER_MAX + 1], instance[TK_REG_INSTANCE_MAX + 1];
	tk_registration_t *r = NULL;
	int res;

	if (o->nargs != 1 ||
	    split(o->args[0], provider, sizeof(provider), instance, sizeof(instance)) != TK_OK)
		return usage_err();
	res = tk_registry_get(reg, provider, instance, &r);
	if (res != TK_OK) {
		fprintf(stderr, "tokenkit: %s: %s\n", tool_text(o->args[0]), tk_strerror(res));
		return tool_exit_code(res);
	}
	if (o->json) {
		print_json(r, true);
		printf("\n");
	} else {
		print_text(r, true);
	}
	tk_registration_free(&r);
	return TOOL_EXIT_OK;
}

static int
cmd_remove(tk_registry_t *reg, const struct opts *o)
{
	char provider[TK_REG_PROVIDER_MAX + 1], instance[TK_REG_INSTANCE_MAX + 1];
	tk_registration_t *r = NULL;
	uint64_t gen = 0;
	int res;

	if (o->nargs != 1 ||
	    split(o->args[0], provider, sizeof(provider), instance, sizeof(instance)) != TK_OK)
		return usage_err();
	/* what we saw is what we remove: a registration changed meanwhile is
	 * not removed behind its provider's back */
	res = tk_registry_get(reg, provider, instance, &r);
	if (res == TK_OK)
		res = tk_registry_remove(reg, provider, instance, tk_registration_generation(r),
		                         &gen);
	tk_registration_free(&r);
	if (res == TK_ERR_CONFLICT) {
		fprintf(stderr,
		        "tokenkit: %s changed meanwhile (now generation %" PRIu64 "); "
		        "not removed\n",
		        tool_text(o->args[0]), gen);
		return TOOL_EXIT_ERROR;
	}
	if (res != TK_OK) {
		fprintf(stderr, "tokenkit: %s: %s\n", tool_text(o->args[0]), tk_strerror(res));
		return tool_exit_code(res);
	}
	if (o->json)
		printf("{\"removed\":true,\"generation\":%" PRIu64 "}\n", gen);
	else
		printf("removed %s (generation %" PRIu64 ")\n", tool_text(o->args[0]), gen);
	return TOOL_EXIT_OK;
}

/* Until interrupted: one line per event, flushed at once. */
static int
cmd_watch(tk_registry_t *reg, const struct opts *o)
{
	tk_registry_watch_t *w = NULL;
	tk_registry_event_t *ev = NULL;
	int r = tk_registry_watch_new(reg, &w);

	if (r != TK_OK) {
		fprintf(stderr, "tokenkit: watch: %s\n", tk_strerror(r));
		return tool_exit_code(r);
	}
	for (;;) {
		r = tk_registry_watch_next(w, 1000, &ev);
		if (r == TK_ERR_TIMEOUT)
			continue;
		if (r != TK_OK)
			break;
		if (o->json) {
			printf("{\"event\":\"%s\"", tk_registry_event_name(ev->type));
			if (ev->reason != NULL) {
				printf(",\"reason\":");
				tool_json_str(stdout, ev->reason);
			}
			if (ev->reg != NULL) {
				printf(",\"registration\":");
				print_json(ev->reg, false);
			}
			printf("}\n");
		} else if (ev->type == TK_REGISTRY_RESYNC) {
			printf("resync: %s\n", ev->reason);
		} else {
			printf("%s: ", tk_registry_event_name(ev->type));
			print_text(ev->reg, false);
		}
		fflush(stdout);
		tk_registry_event_free(&ev);
	}
	fprintf(stderr, "tokenkit: watch: %s\n", tk_strerror(r));
	tk_registry_watch_free(&w);
	return tool_exit_code(r);
}

static int
run(int argc, char **argv)
{
	tk_registry_t *reg = NULL;
	struct opts o;
	const char *sub = argc > 1 ? argv[1] : "";
	int rc;

	if (argc < 2 || (rc = parse(argc, argv, &o)) != TOOL_EXIT_OK)
		return argc < 2 ? usage_err() : rc;
	if (strcmp(sub, "list") != 0 && strcmp(sub, "show") != 0 && strcmp(sub, "remove") != 0 &&
	    strcmp(sub, "watch") != 0)
		return usage_err();
	if ((rc = open_reg(&o, &reg)) != TK_OK)
		return tool_exit_code(rc);
	if (strcmp(sub, "list") == 0)
		rc = cmd_list(reg, &o);
	else if (strcmp(sub, "show") == 0)
		rc = cmd_show(reg, &o);
	else if (strcmp(sub, "remove") == 0)
		rc = cmd_remove(reg, &o);
	else
		rc = cmd_watch(reg, &o);
	tk_registry_free(&reg);
	return rc;
}

TOOL_COMMAND(registry, "registry", "list|show|remove|watch", "token registrations (--json)", run)
