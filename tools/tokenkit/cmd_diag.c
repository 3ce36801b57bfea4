/* tokenkit diag, tokenkit reset: reader supervision, counters, latency and
 * the recovery history.
 *
 * The live view (state, ATR, counters, latency) is the broker's when one
 * answers (tokenkitd holds the readers, and its counters are the ones the
 * applications' APDUs move), else this process's own slot manager; the
 * recovery history comes from the per-user recovery log, which
 * every slot manager (applications through the PKCS#11 module, this tool)
 * appends to, so it shows what happened in other processes too. */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <tokenkit/err.h>
#include <tokenkit/slot.h>

#include "tool.h"

#define HISTORY_DEFAULT 32
#define HISTORY_MAX 1024

static void
print_time(int64_t wall_ms)
{
	time_t t = (time_t)(wall_ms / 1000);
	struct tm tm;
	char buf[32];

	if (gmtime_r(&t, &tm) == NULL || strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%S", &tm) == 0)
		snprintf(buf, sizeof(buf), "?");
	printf("%s.%03dZ", buf, (int)(wall_ms % 1000));
}

static void
print_dur(int64_t us)
{
	if (us >= 1000000)
		printf("%.2f s", (double)us / 1e6);
	else
		printf("%.1f ms", (double)us / 1e3);
}

static void
print_record_text(const tk_recovery_t *r)
{
	size_t n = r->nsteps < TK_RECOVERY_MAX_STEPS ? r->nsteps : TK_RECOVERY_MAX_STEPS;

	printf("fault %s (%s)\n", r->fault == TK_OK ? "none" : tk_errname(r->fault),
	       tool_text(r->what));
	printf("      steps:");
	for (size_t i = 0; i < n; i++) {
		printf("%s %s %s ", i ? "," : "", tk_recovery_step_name(r->steps[i].step),
		       r->steps[i].result == TK_OK ? "ok" : tk_errname(r->steps[i].result));
		print_dur(r->steps[i].duration_us);
	}
	if (r->nsteps > n)
		printf(", ... (%zu steps)", r->nsteps);
	if (n == 0)
		printf(" none");
	printf("\n      ");
	if (r->outcome == TK_OK)
		printf("cured by %s", tk_recovery_step_name(r->cured_by));
	else
		printf("ended: %s", tk_strerror(r->outcome));
	printf(" after ");
	print_dur(r->duration_us);
	if (r->probes > 0)
		printf(" (%u quarantine probes)", r->probes);
	printf("\n");
}

static void
json_record(const tk_recovery_t *r)
{
	size_t n = r->nsteps < TK_RECOVERY_MAX_STEPS ? r->nsteps : TK_RECOVERY_MAX_STEPS;

	printf("\"time_ms\": %lld, \"fault\": \"%s\", \"what\": ", (long long)r->wall_ms,
	       tk_errname(r->fault));
	tool_json_str(stdout, r->what);
	printf(", \"steps\": [");
	for (size_t i = 0; i < n; i++)
		printf("%s{\"step\": \"%s\", \"result\": \"%s\", \"us\": %lld}", i ? ", " : "",
		       tk_recovery_step_name(r->steps[i].step), tk_errname(r->steps[i].result),
		       (long long)r->steps[i].duration_us);
	printf("], \"nsteps\": %zu, \"cured_by\": \"%s\", \"outcome\": \"%s\", "
	       "\"duration_us\": %lld, \"probes\": %u",
	       r->nsteps, tk_recovery_step_name(r->cured_by), tk_errname(r->outcome),
	       (long long)r->duration_us, r->probes);
}

static void
print_diag_text(const tk_slot_diag_t *d)
{
	char hex[2 * 33 + 1];
	const tk_slot_info_t *s = &d->info;

	printf("%s (slot %u, %s", tool_text(s->reader), s->slot_id, tool_text(s->backend));
	if (s->exchange[0] != '\0')
		printf(", %s level", tool_text(s->exchange));
	printf(")\n");
	printf("  state %s%s, protocol %s, generation %llu", tk_slot_state_name(s->state),
	       d->stuck ? " (a call is stuck in the reader driver)" : "",
	       tool_proto_name(s->protocol), (unsigned long long)d->generation);
	if (d->rebinds > 0)
		printf(", re-bound %llu time(s) after service restarts",
		       (unsigned long long)d->rebinds);
	printf("\n");
	if (s->atr_len > 0)
		printf("  ATR %s\n", tool_hex(s->atr, s->atr_len, hex, sizeof(hex)));
	printf("  transmits %llu, errors %llu (comm %llu, removed %llu, reset %llu, "
	       "no service %llu, other %llu), timeouts %llu\n",
	       (unsigned long long)d->transmits, (unsigned long long)d->errors,
	       (unsigned long long)d->err_comm, (unsigned long long)d->err_removed,
	       (unsigned long long)d->err_reset, (unsigned long long)d->err_no_service,
	       (unsigned long long)d->err_other, (unsigned long long)d->timeouts);
	printf("  connects %llu (failed %llu), abandoned workers %llu, retried ok %llu\n",
	       (unsigned long long)d->connects, (unsigned long long)d->connect_failures,
	       (unsigned long long)d->abandoned_workers, (unsigned long long)d->retried_ok);
	printf("  transactions begun %llu, carried over %llu\n", (unsigned long long)d->txn_begun,
	       (unsigned long long)d->txn_carried);
	if (d->lat_samples > 0)
		printf("  APDU latency (last %u): p50 %.2f ms, p90 %.2f ms, p99 %.2f ms, max %.2f "
		       "ms\n",
		       d->lat_samples, d->lat_p50_us / 1e3, d->lat_p90_us / 1e3,
		       d->lat_p99_us / 1e3, d->lat_max_us / 1e3);
	printf("  recoveries here %llu (failed %llu)", (unsigned long long)d->recoveries,
	       (unsigned long long)d->recoveries_failed);
	for (int k = 1; k < TK_STEP_COUNT; k++)
		if (d->step_ok[k] > 0)
			printf(", %s %llu", tk_recovery_step_name(k),
			       (unsigned long long)d->step_ok[k]);
	printf("\n");
	if (d->last_err != TK_OK)
		printf("  last error %s\n", tk_errname(d->last_err));
}

static void
print_diag_json(const tk_slot_diag_t *d)
{
	const tk_slot_info_t *s = &d->info;

	printf("{\"slot\": %u, \"reader\": ", s->slot_id);
	tool_json_str(stdout, s->reader);
	printf(", \"backend\": ");
	tool_json_str(stdout, s->backend);
	printf(", \"state\": \"%s\", \"stuck\": %s, ", tk_slot_state_name(s->state),
	       d->stuck ? "true" : "false");
	tool_json_atr_protocol(s);
	printf(", \"generation\": %llu, \"rebinds\": %llu, \"transmits\": %llu, \"errors\": "
	       "{\"total\": %llu, \"comm\": %llu, \"removed\": %llu, \"reset\": %llu, "
	       "\"no_service\": %llu, \"other\": %llu}, \"timeouts\": %llu, \"connects\": %llu, "
	       "\"connect_failures\": %llu, \"abandoned_workers\": %llu, \"retried_ok\": %llu, "
	       "\"recoveries\": %llu, \"recoveries_failed\": %llu, \"txn_begun\": %llu, "
	       "\"txn_carried\": %llu, \"last_error\": \"%s\"",
	       (unsigned long long)d->generation, (unsigned long long)d->rebinds,
	       (unsigned long long)d->transmits, (unsigned long long)d->errors,
	       (unsigned long long)d->err_comm, (unsigned long long)d->err_removed,
	       (unsigned long long)d->err_reset, (unsigned long long)d->err_no_service,
	       (unsigned long long)d->err_other, (unsigned long long)d->timeouts,
	       (unsigned long long)d->connects, (unsigned long long)d->connect_failures,
	       (unsigned long long)d->abandoned_workers, (unsigned long long)d->retried_ok,
	       (unsigned long long)d->recoveries, (unsigned long long)d->recoveries_failed,
	       (unsigned long long)d->txn_begun, (unsigned long long)d->txn_carried,
	       tk_errname(d->last_err));
	printf(", \"step_ok\": {");
	for (int k = 1; k < TK_STEP_COUNT; k++)
		printf("%s\"%s\": %llu", k > 1 ? ", " : "", tk_recovery_step_name(k),
		       (unsigned long long)d->step_ok[k]);
	printf("}, \"latency_us\": {\"samples\": %u, \"p50\": %u, \"p90\": %u, \"p99\": %u, "
	       "\"max\": %u}}",
	       d->lat_samples, d->lat_p50_us, d->lat_p90_us, d->lat_p99_us, d->lat_max_us);
}

struct history {
	const char *filter;
	tk_recovery_log_entry_t *ring;
	size_t keep, total;
};

static int
keep_entry(void *ctx, const tk_recovery_log_entry_t *e)
{
	struct history *h = ctx;

	if (h->filter == NULL || strstr(e->reader, h->filter) != NULL)
		h->ring[h->total++ % h->keep] = *e;
	return TK_OK;
}

/* The last `keep` entries of the log (and its rotated part) whose reader
 * contains `filter` (NULL: all), oldest first. The log is read with the
 * writer's checks; used receives the file actually read. */
static size_t
read_history(const char *path, const char *filter, tk_recovery_log_entry_t *ring, size_t keep,
             size_t *bad, char *used, size_t ucap)
{
	struct history h = {filter, ring, keep, 0};

	(void)tk_recovery_log_read(path, keep_entry, &h, bad, used, ucap);
	if (used[0] == '\0')
		snprintf(used, ucap, "%s", path);
	if (h.total > keep) {
		/* Rotate the ring so the oldest kept entry comes first. */
		tk_recovery_log_entry_t *tmp = malloc(keep * sizeof(*tmp));

		if (tmp != NULL) {
			for (size_t i = 0; i < keep; i++)
				tmp[i] = ring[(h.total + i) % keep];
			memcpy(ring, tmp, keep * sizeof(*tmp));
			free(tmp);
		}
		return keep;
	}
	return h.total;
}

/* This process's own view: the readers' supervision data into *out (free()
 * it), *n; only the reader named (*reader then its full name, for the
 * history filter). TOOL_EXIT_OK, or TOOL_EXIT_NO_SERVICE (no PC/SC: the
 * history is still shown); other errors end the command. */
static int
local_diag(const char **reader, tk_slotmgr_t **m, tk_slot_diag_t **out, size_t *n)
{
	tk_slot_info_t *infos = NULL;
	size_t count = 0;
	uint32_t only = 0;
	int rc = tool_open_mgr(m, 5000);

	*out = NULL;
	*n = 0;
	if (*m == NULL)
		return rc;
	tool_settle(*m, 3000);
	if (*reader != NULL && tk_slotmgr_find(*m, *reader, &only) != TK_OK) {
		fprintf(stderr, "tokenkit diag: no reader '%s' now; showing its history\n",
		        *reader);
		return TOOL_EXIT_OK;
	}
	if (tk_slotmgr_list(*m, &infos, &count) != TK_OK || count == 0 ||
	    (*out = calloc(count, sizeof(**out))) == NULL) {
		free(infos);
		return TOOL_EXIT_OK;
	}
	for (size_t i = 0; i < count; i++) {
		if (infos[i].state == TK_SLOT_ABSENT ||
		    (*reader != NULL && infos[i].slot_id != only) ||
		    tk_slotmgr_diag(*m, infos[i].slot_id, &(*out)[*n]) != TK_OK)
			continue;
		(*n)++;
	}
	free(infos);
	return TOOL_EXIT_OK;
}

static int
cmd_diag(int argc, char **argv)
{
	bool json = false, live;
	const char *reader = NULL, *log_opt = NULL;
	size_t keep = HISTORY_DEFAULT, nh = 0, bad = 0, n = 0;
	tk_slotmgr_t *m = NULL;
	tk_slot_diag_t *d = NULL;
	tk_recovery_log_entry_t *hist = NULL;
	char path[4096], used[4096], name[sizeof(d->info.reader)];
	int rc = TOOL_EXIT_OK;

	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--json") == 0) {
			json = true;
		} else if (strcmp(argv[i], "--log") == 0 && i + 1 < argc) {
			log_opt = argv[++i];
		} else if (strcmp(argv[i], "--last") == 0 && i + 1 < argc) {
			long v = strtol(argv[++i], NULL, 10);

			if (v <= 0 || v > HISTORY_MAX) {
				fprintf(stderr, "tokenkit diag: --last takes 1..%d\n", HISTORY_MAX);
				return TOOL_EXIT_USAGE;
			}
			keep = (size_t)v;
		} else if (argv[i][0] != '-' && reader == NULL) {
			reader = argv[i];
		} else {
			fprintf(stderr, "tokenkit diag: unknown argument '%s'\n", argv[i]);
			return TOOL_EXIT_USAGE;
		}
	}
	path[0] = '\0';
	if (log_opt != NULL)
		snprintf(path, sizeof(path), "%s", log_opt);
	else if (tk_recovery_log_path(path, sizeof(path)) != TK_OK)
		path[0] = '\0';

	/* the live view: the broker's when one answers (it holds the readers
	 * and its counters are the applications'), else this process's own */
	rc = tool_broker_readers("diag", reader, &d, &n);
	live = rc == TOOL_EXIT_OK;
	if (rc == TOOL_EXIT_NO_READER)
		fprintf(stderr, "tokenkit diag: no reader '%s' now; showing its history\n", reader);
	if (rc < 0) {
		rc = local_diag(&reader, &m, &d, &n);
		if (rc != TOOL_EXIT_OK && rc != TOOL_EXIT_NO_SERVICE)
			return rc;
		live = m != NULL;
	}
	if (reader != NULL && n == 1) {
		/* the full name, for the history filter */
		snprintf(name, sizeof(name), "%s", d[0].info.reader);
		reader = name;
	}
	hist = calloc(keep, sizeof(*hist));
	if (hist == NULL) {
		fprintf(stderr, "tokenkit diag: out of memory\n");
		rc = TOOL_EXIT_ERROR;
		goto out;
	}
	if (json)
		printf("{\"readers\": [");
	for (size_t i = 0; i < n; i++) {
		if (json) {
			printf("%s\n  ", i ? "," : "");
			print_diag_json(&d[i]);
		} else {
			print_diag_text(&d[i]);
		}
	}
	used[0] = '\0';
	if (path[0] != '\0')
		nh = read_history(path, reader, hist, keep, &bad, used, sizeof(used));
	if (json) {
		printf("%s],\n \"log\": ", n ? "\n " : "");
		tool_json_str(stdout, used);
		printf(", \"unreadable_lines\": %zu, \"history\": [", bad);
		for (size_t i = 0; i < nh; i++) {
			printf("%s\n  {\"pid\": %lld, \"prog\": ", i ? "," : "",
			       (long long)hist[i].pid);
			tool_json_str(stdout, hist[i].prog);
			printf(", \"reader\": ");
			tool_json_str(stdout, hist[i].reader);
			printf(", ");
			json_record(&hist[i].rec);
			printf("}");
		}
		printf("%s]}\n", nh ? "\n " : "");
	} else {
		if (n == 0 && live && reader == NULL)
			printf("no readers\n");
		if (path[0] == '\0') {
			printf("recovery log disabled (TOKENKIT_RECOVERY_LOG is empty)\n");
		} else if (nh == 0) {
			printf("recovery history (%s): none\n", tool_text(used));
		} else {
			printf("recovery history (%s), oldest first:\n", tool_text(used));
			for (size_t i = 0; i < nh; i++) {
				printf("  ");
				print_time(hist[i].rec.wall_ms);
				printf("  %s  pid %lld (%s)  ", tool_text(hist[i].reader),
				       (long long)hist[i].pid, tool_text(hist[i].prog));
				print_record_text(&hist[i].rec);
			}
		}
		if (bad > 0)
			printf("  (%zu unreadable line(s) skipped)\n", bad);
	}
	rc = TOOL_EXIT_OK;
out:
	free(hist);
	free(d);
	tk_slotmgr_free(&m);
	return rc;
}

TOOL_COMMAND(diag, "diag", "[READER] [--json] [--last N] [--log PATH]",
             "reader supervision: state, counters, APDU latency, recovery history", cmd_diag)

static int
cmd_reset(int argc, char **argv)
{
	bool cold = false, json = false;
	const char *reader = NULL;
	tk_slotmgr_t *m = NULL;
	tk_recovery_t rec;
	uint32_t id;
	int rc, r;

	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--cold") == 0) {
			cold = true;
		} else if (strcmp(argv[i], "--json") == 0) {
			json = true;
		} else if (argv[i][0] != '-' && reader == NULL) {
			reader = argv[i];
		} else {
			fprintf(stderr, "tokenkit reset: unknown argument '%s'\n", argv[i]);
			return TOOL_EXIT_USAGE;
		}
	}
	if (reader == NULL) {
		fprintf(stderr, "usage: tokenkit reset READER [--cold]\n");
		return TOOL_EXIT_USAGE;
	}
	/* a broker holds the readers: it resets its own */
	rc = tool_broker_reset("reset", reader, cold, &r, &rec);
	if (rc == TOOL_EXIT_NO_READER)
		fprintf(stderr, "tokenkit reset: no reader '%s' (`tokenkit readers` lists them)\n",
		        reader);
	if (rc >= 0 && rc != TOOL_EXIT_OK)
		return rc;
	if (rc < 0) {
		if ((rc = tool_open_mgr(&m, 5000)) != TOOL_EXIT_OK)
			return rc;
		tool_settle(m, 3000);
		r = tk_slotmgr_find(m, reader, &id);
		if (r != TK_OK) {
			fprintf(stderr, "tokenkit reset: no reader '%s'\n", reader);
			tool_print_readers_hint(stderr, m);
			tk_slotmgr_free(&m);
			return TOOL_EXIT_NO_READER;
		}
		r = tk_slotmgr_reset(m, id, cold, 0, &rec);
	}
	if (json) {
		printf("{\"result\": \"%s\", ", tk_errname(r));
		json_record(&rec);
		printf("}\n");
	} else if (rec.id != 0) {
		printf("%s: ", reader);
		print_record_text(&rec);
	} else {
		printf("%s: %s\n", reader, tk_strerror(r));
	}
	tk_slotmgr_free(&m);
	return r == TK_OK ? TOOL_EXIT_OK : tool_exit_code(r);
}

TOOL_COMMAND(reset, "reset", "READER [--cold] [--json]",
             "force a recovery (warm reset, or a power cycle with --cold) and show it", cmd_reset)
