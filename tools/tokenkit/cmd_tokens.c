/* tokenkit tokens, tokenkit objects: the tokens on the cards in the readers,
 * their identities and objects. */
#include <stdlib.h>
#include <string.h>

#include <openssl/bio.h>
#include <openssl/x509.h>

#include <tokenkit/err.h>
#include <tokenkit/log.h>
#include <tokenkit/token.h>

#include "tool.h"

static const char *
class_name(int cls)
{
	switch (cls) {
	case TK_OBJ_CERT:
		return "certificate";
	case TK_OBJ_PUBKEY:
		return "public-key";
	case TK_OBJ_PRIVKEY:
		return "private-key";
	case TK_OBJ_DATA:
		return "data";
	default:
		return "unknown";
	}
}

static const char *
key_name(int kt)
{
	switch (kt) {
	case TK_KEY_RSA:
		return "RSA";
	case TK_KEY_EC:
		return "EC";
	case TK_KEY_ED25519:
		return "Ed25519";
	case TK_KEY_X25519:
		return "X25519";
	default:
		return "-";
	}
}

/* Subject of a certificate, RFC 2253 form; "" when it does not parse. */
static void
cert_subject(const tk_object_t *o, char *out, size_t cap)
{
	const unsigned char *q = o->der;
	X509 *x;
	BIO *b;
	int n;

	out[0] = '\0';
	if (o->der == NULL || o->der_len == 0 || (x = d2i_X509(NULL, &q, (long)o->der_len)) == NULL)
		return;
	if ((b = BIO_new(BIO_s_mem())) != NULL) {
		if (X509_NAME_print_ex(b, X509_get_subject_name(x), 0, XN_FLAG_RFC2253) >= 0 &&
		    (n = BIO_read(b, out, (int)cap - 1)) > 0)
			out[n] = '\0';
		BIO_free(b);
	}
	X509_free(x);
}

/* Open the token on the card in one slot. */
static int
open_token(tk_slotmgr_t *m, uint32_t slot_id, tk_token_t **t)
{
	tk_token_opts_t o;
	tk_card_t *card = NULL;
	int r, rr;

	*t = NULL;
	if ((r = tk_slotmgr_card(m, slot_id, &card)) != TK_OK)
		return r;
	tk_token_opts_init(&o);
	o.refresh_pin_status = true;
	r = tk_token_open(card, &o, t);
	tk_card_unref(&card);
	if (r == TK_OK && (rr = tk_token_register(*t, NULL, NULL)) != TK_OK)
		tk_log_debug("registry record of the card: %s", tk_strerror(rr));
	return r;
}

static void
print_token_text(const tk_p11ext_token_t *v)
{
	const tk_token_info_t *ti = &v->info;
	const tk_object_t *objs = v->objs;
	char subj[512], hex[2 * TK_OBJECT_ID_MAX + 1];
	size_t n = v->nobjs;

	printf("%u  %s\n", v->slot_id, tool_text(v->reader));
	printf("    driver: %s  label: %s  serial: %s\n", tool_text(ti->driver),
	       tool_text(ti->label), tool_text(ti->serial));
	printf("    PIN tries left: ");
	if (ti->pin_retries >= 0)
		printf("%d%s", ti->pin_retries, ti->pin_locked ? " (blocked)" : "");
	else
		printf("unknown");
	printf("  PUK tries left: ");
	if (ti->puk_retries >= 0)
		printf("%d%s\n", ti->puk_retries, ti->puk_locked ? " (blocked)" : "");
	else
		printf("unknown\n");
	for (size_t i = 0; i < n; i++) {
		const tk_object_t *o = &objs[i];

		if (o->cls != TK_OBJ_CERT || !o->has_identity)
			continue;
		cert_subject(o, subj, sizeof(subj));
		printf("    identity %s  %s %u  %s  %s\n",
		       tool_hex(o->id, o->id_len, hex, sizeof(hex)), key_name(o->key_type),
		       o->key_bits, tool_text(o->label), tool_text(subj));
	}
}

static void
print_token_json(const tk_p11ext_token_t *v)
{
	const tk_token_info_t *ti = &v->info;
	const tk_object_t *objs = v->objs;
	char subj[512], hex[2 * TK_OBJECT_ID_MAX + 1];
	size_t n = v->nobjs, shown = 0;

	printf("{\"slot\": %u, \"reader\": ", v->slot_id);
	tool_json_str(stdout, v->reader);
	printf(", \"driver\": ");
	tool_json_str(stdout, ti->driver);
	printf(", \"label\": ");
	tool_json_str(stdout, ti->label);
	printf(", \"serial\": ");
	tool_json_str(stdout, ti->serial);
	printf(", \"pin_retries\": ");
	if (ti->pin_retries >= 0)
		printf("%d", ti->pin_retries);
	else
		printf("null");
	printf(", \"pin_locked\": %s, \"puk_retries\": ", ti->pin_locked ? "true" : "false");
	if (ti->puk_retries >= 0)
		printf("%d", ti->puk_retries);
	else
		printf("null");
	printf(", \"identities\": [");
	for (size_t i = 0; i < n; i++) {
		const tk_object_t *o = &objs[i];

		if (o->cls != TK_OBJ_CERT || !o->has_identity)
			continue;
		cert_subject(o, subj, sizeof(subj));
		printf("%s{\"id\": \"%s\", \"label\": ", shown++ ? ", " : "",
		       tool_hex(o->id, o->id_len, hex, sizeof(hex)));
		tool_json_str(stdout, o->label);
		printf(", \"key_type\": \"%s\", \"key_bits\": %u, \"subject\": ",
		       key_name(o->key_type), o->key_bits);
		tool_json_str(stdout, subj);
		printf("}");
	}
	printf("]}");
}

static void
print_objects(const tk_p11ext_token_t *v, bool json)
{
	const tk_object_t *objs = v->objs;
	char subj[512], hex[2 * TK_OBJECT_ID_MAX + 1], use[32];
	size_t n = v->nobjs;

	if (json) {
		printf("{\"slot\": %u, \"reader\": ", v->slot_id);
		tool_json_str(stdout, v->reader);
		printf(", \"objects\": [");
	} else {
		printf("%u  %s\n", v->slot_id, tool_text(v->reader));
	}
	for (size_t i = 0; i < n; i++) {
		const tk_object_t *o = &objs[i];

		subj[0] = '\0';
		if (o->cls == TK_OBJ_CERT)
			cert_subject(o, subj, sizeof(subj));
		tool_usage_text(o->usage, use, sizeof(use));
		tool_hex(o->id, o->id_len, hex, sizeof(hex));
		if (json) {
			printf("%s\n  {\"handle\": %u, \"class\": \"%s\", \"id\": \"%s\", "
			       "\"label\": ",
			       i ? "," : "", o->handle, class_name(o->cls), hex);
			tool_json_str(stdout, o->label);
			printf(", \"key_type\": \"%s\", \"key_bits\": %u, \"identity\": %s",
			       key_name(o->key_type), o->key_bits,
			       o->has_identity ? "true" : "false");
			if (o->cls == TK_OBJ_PRIVKEY)
				printf(", \"usage\": \"%s\", \"always_authenticate\": %s", use,
				       o->always_authenticate ? "true" : "false");
			if (o->cls == TK_OBJ_CERT) {
				printf(", \"subject\": ");
				tool_json_str(stdout, subj);
			}
			printf("}");
		} else {
			printf("    %-11s id %-4s %-7s %4u  %-36s%s%s%s\n", class_name(o->cls), hex,
			       key_name(o->key_type), o->key_bits, tool_text(o->label),
			       o->cls == TK_OBJ_PRIVKEY ? use : "",
			       o->always_authenticate ? " always-auth" : "",
			       o->cls != TK_OBJ_PUBKEY && !o->has_identity ? " (no identity)" : "");
			if (subj[0])
				printf("                subject: %s\n", tool_text(subj));
		}
	}
	if (json)
		printf("%s]}", n ? "\n" : "");
}

static void
print_view(const tk_p11ext_token_t *v, bool objects, bool json, size_t shown)
{
	if (json)
		printf("%s\n", shown ? "," : "");
	if (objects)
		print_objects(v, json);
	else if (json)
		print_token_json(v);
	else
		print_token_text(v);
}

/* Through the broker (which holds the readers when it runs). TOOL_EXIT_*,
 * or -1: no broker answers, open the readers here. */
static int
run_broker(const char *cmd, const char *want, bool objects, bool json)
{
	const tk_p11ext_t *x = tool_p11ext();
	tk_p11ext_token_t *v = NULL;
	size_t n = 0, shown = 0;
	int rc = TOOL_EXIT_OK;

	if (x == NULL)
		return -1;
	if ((rc = tool_p11ext_exit(cmd, x->tokens(want, &v, &n))) != TOOL_EXIT_OK) {
		if (rc == TOOL_EXIT_NO_READER)
			fprintf(stderr, "tokenkit %s: no reader '%s'\n", cmd, want);
		return rc;
	}
	if (json)
		printf("[");
	for (size_t i = 0; i < n; i++) {
		if (v[i].err != TK_OK) {
			if (want != NULL) {
				fprintf(stderr, "tokenkit %s: %s: %s\n", cmd,
				        tool_text(v[i].reader), tk_strerror(v[i].err));
				rc = v[i].err == TK_ERR_NOT_SUPPORTED ? TOOL_EXIT_NO_CARD
				                                      : tool_exit_code(v[i].err);
			}
			continue;
		}
		print_view(&v[i], objects, json, shown++);
	}
	if (json)
		printf("%s]\n", shown ? "\n" : "");
	else if (shown == 0 && rc == TOOL_EXIT_OK)
		printf("no tokens\n");
	x->tokens_free(v, n);
	return rc;
}

/* Both commands: for each slot with a card (or the one named), open its
 * token and print — through the broker when one answers. */
static int
run(int argc, char **argv, bool objects)
{
	const char *want = NULL;
	bool json = false;
	tk_slotmgr_t *m = NULL;
	tk_slot_info_t *infos = NULL;
	size_t n = 0, shown = 0;
	uint32_t want_id = 0;
	int rc = TOOL_EXIT_OK, r;

	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--json") == 0) {
			json = true;
		} else if (objects && argv[i][0] != '-' && want == NULL) {
			want = argv[i];
		} else {
			fprintf(stderr, "tokenkit %s: unknown argument '%s'\n", argv[0], argv[i]);
			return TOOL_EXIT_USAGE;
		}
	}
	if ((rc = run_broker(argv[0], want, objects, json)) >= 0)
		return rc;
	rc = tool_open_mgr(&m, 5000);
	if (rc != TOOL_EXIT_OK)
		return rc;
	tool_settle(m, 3000);
	if (want != NULL && (r = tk_slotmgr_find(m, want, &want_id)) != TK_OK) {
		fprintf(stderr, "tokenkit %s: no reader '%s'\n", argv[0], want);
		tool_print_readers_hint(stderr, m);
		tk_slotmgr_free(&m);
		return TOOL_EXIT_NO_READER;
	}
	if ((r = tk_slotmgr_list(m, &infos, &n)) != TK_OK) {
		fprintf(stderr, "tokenkit %s: %s\n", argv[0], tk_strerror(r));
		tk_slotmgr_free(&m);
		return tool_exit_code(r);
	}
	if (json)
		printf("[");
	for (size_t i = 0; i < n; i++) {
		const tk_slot_info_t *s = &infos[i];
		tk_p11ext_token_t v = {.slot_id = s->slot_id};
		tk_token_t *t = NULL;

		if (want != NULL ? s->slot_id != want_id : s->card_seq == 0)
			continue;
		if ((r = open_token(m, s->slot_id, &t)) != TK_OK) {
			if (want != NULL) {
				fprintf(stderr, "tokenkit %s: %s: %s\n", argv[0],
				        tool_text(s->reader), tk_strerror(r));
				rc = r == TK_ERR_NOT_SUPPORTED ? TOOL_EXIT_NO_CARD
				                               : tool_exit_code(r);
			}
			continue;
		}
		snprintf(v.reader, sizeof(v.reader), "%s", s->reader);
		(void)tk_token_info(t, &v.info);
		(void)tk_token_objects(t, &v.objs, &v.nobjs);
		print_view(&v, objects, json, shown++);
		tk_token_free(&t);
	}
	if (json)
		printf("%s]\n", shown ? "\n" : "");
	else if (shown == 0 && rc == TOOL_EXIT_OK)
		printf("no tokens\n");
	free(infos);
	tk_slotmgr_free(&m);
	return rc;
}

static int
cmd_tokens(int argc, char **argv)
{
	return run(argc, argv, false);
}

static int
cmd_objects(int argc, char **argv)
{
	return run(argc, argv, true);
}

TOOL_COMMAND(tokens, "tokens", "[--json]",
             "list tokens: driver, label, serial, PIN tries, identities", cmd_tokens)
TOOL_COMMAND(objects, "objects", "[READER] [--json]",
             "list a token's objects: class, id, label, key, certificate subject", cmd_objects)
