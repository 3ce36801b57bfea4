/* tokenkit soft create|import|list|export-cert|delete|init-pin|change-pin|
 * destroy: software tokens (include/tokenkit/soft.h).
 *
 * PINs and passwords: asked on the terminal without echo, or read from a
 * file descriptor for scripts (--pin-fd N, --so-pin-fd N, --password-fd N:
 * one line each; two options may name one descriptor, the lines then come
 * in the order the command asks for them: user PIN, new PIN, SO PIN, file
 * password). Never taken from the command line, unless forced with
 * --insecure-pin / --insecure-so-pin (which every other user sees in ps).
 * Without a terminal in the foreground to ask on and without a
 * descriptor, the command ends at once with "token locked, needs the user
 * PIN" and exit status 7: never a prompt nobody can answer, never a hang. */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include <tokenkit/err.h>
#include <tokenkit/hex.h>
#include <tokenkit/mem.h>
#include <tokenkit/registry.h>
#include <tokenkit/soft.h>
#include <tokenkit/token.h>

#include "tool.h"

#define SECRET_MAX 256
#define P12_MAX (1024 * 1024)

struct opts {
	const char *label, *token, *out, *args[2];
	int nargs;
	int pin_fd, so_pin_fd, password_fd;
	const char *insecure_pin, *insecure_so_pin;
	bool json, replace, extractable, pem, no_password;
	unsigned max_tries, kdf_log2n;
};

static int
usage_err(void)
{
	fprintf(stderr,
	        "usage: tokenkit soft create --label L [--max-tries N] [--kdf-cost LOG2N]\n"
	        "       tokenkit soft import FILE.p12 [--token T] [--label L] [--replace] "
	        "[--extractable] [--no-password]\n"
	        "       tokenkit soft list [--token T] [--json]\n"
	        "       tokenkit soft export-cert WHICH [--token T] [-o FILE] [--pem]\n"
	        "       tokenkit soft delete WHICH [--token T]\n"
	        "       tokenkit soft change-pin|init-pin [--token T]\n"
	        "       tokenkit soft destroy --token T\n"
	        "  secrets: --pin-fd N, --so-pin-fd N, --password-fd N (one line each), or asked\n"
	        "  on the terminal; --insecure-pin P / --insecure-so-pin P put them on the\n"
	        "  command line (visible to every user)\n"
	        "  WHICH: an object's uid, or an identity's CKA_ID (hex) or label\n");
	return TOOL_EXIT_USAGE;
}

static int
parse(int argc, char **argv, struct opts *o)
{
	memset(o, 0, sizeof(*o));
	o->pin_fd = o->so_pin_fd = o->password_fd = -1;
	for (int i = 2; i < argc; i++) {
		const char *a = argv[i];
		bool more = i + 1 < argc;

		if (strcmp(a, "--json") == 0)
			o->json = true;
		else if (strcmp(a, "--replace") == 0)
			o->replace = true;
		else if (strcmp(a, "--extractable") == 0)
			o->extractable = true;
		else if (strcmp(a, "--pem") == 0)
			o->pem = true;
		else if (strcmp(a, "--no-password") == 0)
			o->no_password = true;
		else if (strcmp(a, "--label") == 0 && more)
			o->label = argv[++i];
		else if (strcmp(a, "--token") == 0 && more)
			o->token = argv[++i];
		else if (strcmp(a, "-o") == 0 && more)
			o->out = argv[++i];
		else if (strcmp(a, "--insecure-pin") == 0 && more)
			o->insecure_pin = argv[++i];
		else if (strcmp(a, "--insecure-so-pin") == 0 && more)
			o->insecure_so_pin = argv[++i];
		else if (strcmp(a, "--pin-fd") == 0 && more &&
		         tool_parse_fd(argv[i + 1], &o->pin_fd))
			i++;
		else if (strcmp(a, "--so-pin-fd") == 0 && more &&
		         tool_parse_fd(argv[i + 1], &o->so_pin_fd))
			i++;
		else if (strcmp(a, "--password-fd") == 0 && more &&
		         tool_parse_fd(argv[i + 1], &o->password_fd))
			i++;
		else if (strcmp(a, "--max-tries") == 0 && more &&
		         tool_parse_uint(argv[i + 1], 100, &o->max_tries))
			i++;
		else if (strcmp(a, "--kdf-cost") == 0 && more &&
		         tool_parse_uint(argv[i + 1], 20, &o->kdf_log2n))
			i++;
		else if (a[0] != '-' && o->nargs < 2)
			o->args[o->nargs++] = a;
		else
			return usage_err();
	}
	return TOOL_EXIT_OK;
}

/* ---- secrets ---------------------------------------------------------------------------- */

static int
no_secret(const char *what)
{
	fprintf(stderr, "tokenkit: %s (no terminal to ask on: give it with --%s-fd N)\n",
	        strcmp(what, "password") == 0 ? "the file needs its password"
	                                      : "token locked, needs the user PIN",
	        what);
	return TOOL_EXIT_LOCKED;
}

/* Read the user PIN (asked once). */
static int
read_pin(const struct opts *o, char *pin, size_t cap, size_t *len)
{
	int r = tool_get_secret("user PIN", o->insecure_pin, o->pin_fd, pin, cap, len);

	if (r == TK_ERR_LOGIN_REQUIRED)
		return no_secret("pin");
	if (r != TK_OK) {
		fprintf(stderr, "tokenkit: cannot read the PIN: %s\n", tk_strerror(r));
		return TOOL_EXIT_ERROR;
	}
	return TOOL_EXIT_OK;
}

/* Log in with a PIN read by read_pin. */
static int
login_with(tk_soft_t *s, const char *pin, size_t len)
{
	unsigned left = 0;
	int r = tk_soft_login(s, (const uint8_t *)pin, len, &left);

	if (r == TK_ERR_PIN_INCORRECT) {
		fprintf(stderr, "tokenkit: wrong PIN (%u tries left)\n", left);
		return TOOL_EXIT_ERROR;
	}
	if (r == TK_ERR_PIN_LOCKED) {
		fprintf(stderr, "tokenkit: the user PIN is locked (the SO PIN resets it: "
		                "tokenkit soft init-pin)\n");
		return TOOL_EXIT_ERROR;
	}
	if (r != TK_OK) {
		fprintf(stderr, "tokenkit: login: %s\n", tk_strerror(r));
		return tool_exit_code(r);
	}
	return TOOL_EXIT_OK;
}

/* Log in with the user PIN (asked once). */
static int
login(tk_soft_t *s, const struct opts *o)
{
	char pin[SECRET_MAX];
	size_t len = 0;
	int r = read_pin(o, pin, sizeof(pin), &len);

	if (r == TOOL_EXIT_OK)
		r = login_with(s, pin, len);
	tk_wipe(pin, sizeof(pin));
	return r;
}

static int
open_token(const struct opts *o, tk_soft_t **s)
{
	int r = tk_soft_open(o->token, s);

	if (r == TK_ERR_NOT_FOUND)
		fprintf(stderr, "tokenkit: %s%s%s\n",
		        o->token != NULL ? "no software token "
		                         : "no software token (create one: "
		                           "tokenkit soft create --label L)",
		        o->token != NULL ? tool_text(o->token) : "", "");
	else if (r == TK_ERR_EXISTS)
		fprintf(stderr, "tokenkit: several software tokens: name one with --token\n");
	else if (r != TK_OK)
		fprintf(stderr, "tokenkit: software token: %s\n", tk_strerror(r));
	return r == TK_OK ? TOOL_EXIT_OK : tool_exit_code(r);
}

/* ---- commands --------------------------------------------------------------------------- */

static int
cmd_create(const struct opts *o)
{
	tk_soft_create_opts_t co;
	char pin[SECRET_MAX], again[SECRET_MAX], so[SECRET_MAX], inst[TK_REG_INSTANCE_MAX + 1];
	size_t pl = 0, al = 0, sl = 0;
	bool asked = o->insecure_pin == NULL && o->pin_fd < 0;
	int r;

	if (o->label == NULL)
		return usage_err();
	r = tool_get_secret("new user PIN", o->insecure_pin, o->pin_fd, pin, sizeof(pin), &pl);
	if (r == TK_OK && asked)
		r = tool_get_secret("new user PIN again", NULL, -1, again, sizeof(again), &al);
	if (r == TK_OK && asked && (al != pl || memcmp(pin, again, pl) != 0)) {
		fprintf(stderr, "tokenkit: the PINs differ\n");
		r = TK_ERR_INVALID_ARG;
	}
	if (r == TK_OK)
		r = tool_get_secret("new SO PIN", o->insecure_so_pin, o->so_pin_fd, so, sizeof(so),
		                    &sl);
	if (r == TK_ERR_LOGIN_REQUIRED) {
		fprintf(stderr, "tokenkit: the new PINs are needed (no terminal to ask on: "
		                "--pin-fd N --so-pin-fd M)\n");
		r = TOOL_EXIT_LOCKED;
		goto out;
	}
	if (r != TK_OK) {
		r = r == TK_ERR_INVALID_ARG ? TOOL_EXIT_USAGE : TOOL_EXIT_ERROR;
		goto out;
	}
	tk_soft_create_opts_init(&co);
	co.label = o->label;
	co.pin = (const uint8_t *)pin;
	co.pin_len = pl;
	co.so_pin = (const uint8_t *)so;
	co.so_pin_len = sl;
	co.max_tries = o->max_tries;
	co.kdf_log2n = o->kdf_log2n;
	r = tk_soft_create(&co, inst, sizeof(inst));
	if (r == TK_ERR_INVALID_ARG)
		fprintf(stderr, "tokenkit: the label is 1..32 bytes, the PINs %d..%d\n",
		        TK_SOFT_PIN_MIN, TK_SOFT_PIN_MAX);
	else if (r == TK_ERR_EXISTS)
		fprintf(stderr, "tokenkit: a software token labelled '%s' exists\n",
		        tool_text(o->label));
	else if (r != TK_OK)
		fprintf(stderr, "tokenkit: cannot create the token: %s\n", tk_strerror(r));
	else
		printf("created software token %s (%s)\n", inst, tool_text(o->label));
	r = r == TK_OK ? TOOL_EXIT_OK : tool_exit_code(r);
out:
	tk_wipe(pin, sizeof(pin));
	tk_wipe(again, sizeof(again));
	tk_wipe(so, sizeof(so));
	return r;
}

static int
read_file(const char *path, uint8_t **data, size_t *len)
{
	FILE *f = fopen(path, "rb");
	uint8_t *buf;
	size_t n;

	*data = NULL;
	*len = 0;
	if (f == NULL) {
		fprintf(stderr, "tokenkit: %s: %s\n", tool_text(path), strerror(errno));
		return TOOL_EXIT_ERROR;
	}
	if ((buf = malloc(P12_MAX + 1)) == NULL) {
		fclose(f);
		return TOOL_EXIT_ERROR;
	}
	n = fread(buf, 1, P12_MAX + 1, f);
	fclose(f);
	if (n > P12_MAX) {
		fprintf(stderr, "tokenkit: %s: larger than a PKCS#12 file can be here (1 MiB)\n",
		        tool_text(path));
		free(buf);
		return TOOL_EXIT_ERROR;
	}
	*data = buf;
	*len = n;
	return TOOL_EXIT_OK;
}

static const char *
kname(int kt)
{
	return kt == TK_KEY_RSA       ? "RSA"
	       : kt == TK_KEY_EC      ? "EC"
	       : kt == TK_KEY_ED25519 ? "Ed25519"
	                              : "?";
}

static int
cmd_import(const struct opts *o)
{
	tk_soft_import_opts_t io;
	tk_soft_import_result_t res;
	tk_soft_t *s = NULL;
	char pin[SECRET_MAX], pw[SECRET_MAX], hex[2 * 20 + 1];
	uint8_t *data = NULL;
	size_t dl = 0, pwl = 0, pinl = 0;
	int r;

	if (o->nargs != 1)
		return usage_err();
	if ((r = read_file(o->args[0], &data, &dl)) != TOOL_EXIT_OK)
		return r;
	if ((r = open_token(o, &s)) != TOOL_EXIT_OK)
		goto out;
	/* both secrets first (in the documented order: PIN, then password) */
	if ((r = read_pin(o, pin, sizeof(pin), &pinl)) != TOOL_EXIT_OK)
		goto out;
	memset(&io, 0, sizeof(io));
	if (!o->no_password) {
		r = tool_get_secret("PKCS#12 password", NULL, o->password_fd, pw, sizeof(pw), &pwl);
		if (r == TK_ERR_LOGIN_REQUIRED) {
			r = no_secret("password");
			goto out;
		}
		if (r != TK_OK) {
			fprintf(stderr, "tokenkit: cannot read the password: %s\n", tk_strerror(r));
			r = TOOL_EXIT_ERROR;
			goto out;
		}
		io.password = pw;
	}
	io.label = o->label;
	io.replace = o->replace;
	io.extractable = o->extractable;
	/* The file is read (and its password checked) before the login: a
	 * wrong password, a bad file, a duplicate costs no PIN try and writes
	 * nothing at all (a login writes the try counter). */
	r = tk_soft_import_p12(s, data, dl, &io, &res);
	if (r == TK_ERR_LOGIN_REQUIRED) {
		if ((r = login_with(s, pin, pinl)) != TOOL_EXIT_OK)
			goto out;
		r = tk_soft_import_p12(s, data, dl, &io, &res);
	}
	switch (r) {
	case TK_OK:
		tk_hex_encode(res.id, res.id_len, 0, hex);
		printf("imported %s-%u key with its certificate, id %s, label '%s'%s",
		       kname(res.key_type), res.key_bits, hex, tool_text(res.label),
		       res.replaced ? " (replacing the one there)" : "");
		if (res.chain > 0)
			printf(", and %zu chain certificate%s", res.chain,
			       res.chain > 1 ? "s" : "");
		printf("\n");
		break;
	case TK_ERR_PIN_INCORRECT:
		fprintf(stderr, "tokenkit: %s: wrong password\n", tool_text(o->args[0]));
		break;
	case TK_ERR_MALFORMED:
		fprintf(stderr, "tokenkit: %s: not a PKCS#12 file\n", tool_text(o->args[0]));
		break;
	case TK_ERR_NOT_SUPPORTED:
		fprintf(stderr,
		        "tokenkit: %s: an algorithm this token does not take (the file's "
		        "encryption, or the key's kind: RSA, EC P-256/384/521 and Ed25519 are)\n",
		        tool_text(o->args[0]));
		break;
	case TK_ERR_NOT_FOUND:
		fprintf(stderr, "tokenkit: %s: a key without its certificate, or no key\n",
		        tool_text(o->args[0]));
		break;
	case TK_ERR_TEMPLATE_INCONSISTENT:
		fprintf(stderr, "tokenkit: %s: the certificate is not the key's\n",
		        tool_text(o->args[0]));
		break;
	case TK_ERR_EXISTS:
		fprintf(stderr, "tokenkit: this identity is on the token already; nothing changed "
		                "(--replace replaces it)\n");
		break;
	default:
		fprintf(stderr, "tokenkit: import: %s\n", tk_strerror(r));
		break;
	}
	r = r == TK_OK ? TOOL_EXIT_OK : tool_exit_code(r);
out:
	tk_wipe(pin, sizeof(pin));
	tk_wipe(pw, sizeof(pw));
	free(data);
	tk_soft_close(&s);
	return r;
}

static const char *
cname(int cls)
{
	switch (cls) {
	case TK_SOFT_CERT:
		return "certificate";
	case TK_SOFT_PUBKEY:
		return "public-key";
	case TK_SOFT_PRIVKEY:
		return "private-key";
	case TK_SOFT_SECRET:
		return "secret-key";
	default:
		return "data";
	}
}

static void
list_one(tk_soft_t *s, bool json, bool first)
{
	tk_soft_object_t *objs = NULL;
	tk_soft_pin_info_t pi;
	char hex[2 * 64 + 1];
	size_t n = 0;

	(void)tk_soft_pin_info(s, &pi);
	(void)tk_soft_objects(s, &objs, &n);
	if (json) {
		printf("%s{\"instance\":", first ? "" : ",");
		tool_json_str(stdout, tk_soft_instance(s));
		printf(",\"label\":");
		tool_json_str(stdout, tk_soft_label(s));
		printf(",\"pin_tries_left\":%u,\"pin_max_tries\":%u,\"pin_locked\":%s,"
		       "\"objects\":[",
		       pi.tries_left, pi.max_tries, pi.locked ? "true" : "false");
		for (size_t i = 0; i < n; i++) {
			printf("%s{\"class\":\"%s\",\"uid\":\"%s\",\"id\":\"%s\",\"label\":",
			       i > 0 ? "," : "", cname(objs[i].cls), objs[i].uid,
			       tk_hex_encode(objs[i].id, objs[i].id_len, 0, hex));
			tool_json_str(stdout, objs[i].label);
			printf(",\"key\":\"%s\",\"bits\":%u,\"identity\":%s}",
			       kname(objs[i].key_type), objs[i].key_bits,
			       objs[i].has_identity ? "true" : "false");
		}
		printf("]}");
	} else {
		printf("%s  %s  (PIN: %u of %u tries left%s)\n", tk_soft_instance(s),
		       tool_text(tk_soft_label(s)), pi.tries_left, pi.max_tries,
		       pi.locked ? ", locked" : "");
		for (size_t i = 0; i < n; i++)
			printf("  %-12s %s  id %s  %s-%u%s  %s\n", cname(objs[i].cls), objs[i].uid,
			       objs[i].id_len > 0
			               ? tk_hex_encode(objs[i].id, objs[i].id_len, 0, hex)
			               : "-",
			       kname(objs[i].key_type), objs[i].key_bits,
			       objs[i].has_identity ? " identity" : "", tool_text(objs[i].label));
	}
	free(objs);
}

static int
cmd_list(const struct opts *o)
{
	char **inst = NULL;
	size_t n = 0;
	bool first = true;
	int r;

	if (o->token != NULL) {
		tk_soft_t *s = NULL;

		if ((r = open_token(o, &s)) != TOOL_EXIT_OK)
			return r;
		if (o->json)
			printf("[");
		list_one(s, o->json, true);
		if (o->json)
			printf("]\n");
		tk_soft_close(&s);
		return TOOL_EXIT_OK;
	}
	if ((r = tk_soft_list(&inst, &n)) != TK_OK) {
		fprintf(stderr, "tokenkit: software tokens: %s\n", tk_strerror(r));
		return tool_exit_code(r);
	}
	if (o->json)
		printf("[");
	for (size_t i = 0; i < n; i++) {
		tk_soft_t *s = NULL;

		if (tk_soft_open(inst[i], &s) == TK_OK) {
			list_one(s, o->json, first);
			first = false;
			tk_soft_close(&s);
		}
		free(inst[i]);
	}
	free(inst);
	if (o->json)
		printf("]\n");
	else if (n == 0)
		printf("no software tokens (create one: tokenkit soft create --label L)\n");
	return TOOL_EXIT_OK;
}

static int
cmd_export_cert(const struct opts *o)
{
	tk_soft_t *s = NULL;
	uint8_t *der = NULL;
	size_t len = 0;
	FILE *f = stdout;
	int r;

	if (o->nargs != 1)
		return usage_err();
	if ((r = open_token(o, &s)) != TOOL_EXIT_OK)
		return r;
	r = tk_soft_export_cert(s, o->args[0], &der, &len);
	if (r == TK_ERR_NOT_FOUND)
		fprintf(stderr, "tokenkit: no certificate '%s' on the token\n",
		        tool_text(o->args[0]));
	else if (r == TK_ERR_EXISTS)
		fprintf(stderr, "tokenkit: '%s' names several certificates: give its uid\n",
		        tool_text(o->args[0]));
	if (r != TK_OK)
		goto out;
	if (o->out != NULL && (f = fopen(o->out, "wb")) == NULL) {
		fprintf(stderr, "tokenkit: %s: %s\n", tool_text(o->out), strerror(errno));
		r = TK_ERR_IO;
		goto out;
	}
	if (o->pem) {
		static const char b64[] =
		        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
		size_t col = 0;

		fputs("-----BEGIN CERTIFICATE-----\n", f);
		for (size_t i = 0; i < len; i += 3) {
			uint32_t v = (uint32_t)der[i] << 16;
			size_t k = len - i < 3 ? len - i : 3;

			if (k > 1)
				v |= (uint32_t)der[i + 1] << 8;
			if (k > 2)
				v |= der[i + 2];
			fputc(b64[(v >> 18) & 63], f);
			fputc(b64[(v >> 12) & 63], f);
			fputc(k > 1 ? b64[(v >> 6) & 63] : '=', f);
			fputc(k > 2 ? b64[v & 63] : '=', f);
			if ((col += 4) == 64) {
				fputc('\n', f);
				col = 0;
			}
		}
		if (col > 0)
			fputc('\n', f);
		fputs("-----END CERTIFICATE-----\n", f);
	} else {
		fwrite(der, 1, len, f);
	}
	if (f != stdout && fclose(f) != 0)
		r = TK_ERR_IO;
out:
	free(der);
	tk_soft_close(&s);
	return r == TK_OK ? TOOL_EXIT_OK : tool_exit_code(r);
}

static int
cmd_delete(const struct opts *o)
{
	tk_soft_t *s = NULL;
	size_t n = 0;
	int r;

	if (o->nargs != 1)
		return usage_err();
	if ((r = open_token(o, &s)) != TOOL_EXIT_OK)
		return r;
	r = tk_soft_delete(s, o->args[0], &n);
	if (r == TK_ERR_LOGIN_REQUIRED) {
		/* a private object: with the PIN */
		if ((r = login(s, o)) != TOOL_EXIT_OK)
			goto out;
		r = tk_soft_delete(s, o->args[0], &n);
	}
	if (r == TK_OK)
		printf("deleted %zu object%s\n", n, n == 1 ? "" : "s");
	else if (r == TK_ERR_NOT_FOUND)
		fprintf(stderr, "tokenkit: nothing named '%s' on the token\n",
		        tool_text(o->args[0]));
	else if (r == TK_ERR_EXISTS)
		fprintf(stderr, "tokenkit: '%s' names several objects: give a uid\n",
		        tool_text(o->args[0]));
	else
		fprintf(stderr, "tokenkit: delete: %s\n", tk_strerror(r));
	r = r == TK_OK ? TOOL_EXIT_OK : tool_exit_code(r);
out:
	tk_soft_close(&s);
	return r;
}

static int
cmd_pins(const struct opts *o, bool init)
{
	char old[SECRET_MAX], neu[SECRET_MAX], again[SECRET_MAX];
	size_t ol = 0, nl = 0, al = 0;
	tk_soft_t *s = NULL;
	int r;

	if ((r = open_token(o, &s)) != TOOL_EXIT_OK)
		return r;
	if (init)
		r = tool_get_secret("SO PIN", o->insecure_so_pin, o->so_pin_fd, old, sizeof(old),
		                    &ol);
	else
		r = tool_get_secret("user PIN", o->insecure_pin, o->pin_fd, old, sizeof(old), &ol);
	if (r == TK_OK)
		r = tool_get_secret("new user PIN", NULL, o->pin_fd >= 0 ? o->pin_fd : -1, neu,
		                    sizeof(neu), &nl);
	/* typed on a terminal: twice, as at create */
	if (r == TK_OK && o->pin_fd < 0)
		r = tool_get_secret("new user PIN again", NULL, -1, again, sizeof(again), &al);
	if (r == TK_OK && o->pin_fd < 0 && (al != nl || memcmp(neu, again, nl) != 0)) {
		fprintf(stderr, "tokenkit: the PINs differ\n");
		r = TOOL_EXIT_USAGE;
		goto out;
	}
	if (r == TK_ERR_LOGIN_REQUIRED) {
		r = no_secret(init ? "so-pin" : "pin");
		goto out;
	}
	if (r == TK_OK)
		r = init ? tk_soft_init_pin(s, (const uint8_t *)old, ol, (const uint8_t *)neu, nl)
		         : tk_soft_change_pin(s, (const uint8_t *)old, ol, (const uint8_t *)neu,
		                              nl);
	if (r == TK_OK)
		printf("the user PIN is changed\n");
	else
		fprintf(stderr, "tokenkit: %s: %s\n", init ? "init-pin" : "change-pin",
		        r == TK_ERR_PIN_INCORRECT ? "wrong PIN" : tk_strerror(r));
	r = r == TK_OK ? TOOL_EXIT_OK : tool_exit_code(r);
out:
	tk_wipe(old, sizeof(old));
	tk_wipe(neu, sizeof(neu));
	tk_wipe(again, sizeof(again));
	tk_soft_close(&s);
	return r;
}

static int
cmd_destroy(const struct opts *o)
{
	tk_soft_t *s = NULL;
	int r;

	/* by name only: no "the only one there is" for this */
	if (o->token == NULL)
		return usage_err();
	if ((r = open_token(o, &s)) != TOOL_EXIT_OK)
		return r;
	r = tk_soft_destroy_token(s);
	if (r == TK_OK)
		printf("software token %s removed\n", tk_soft_instance(s));
	else
		fprintf(stderr, "tokenkit: destroy: %s\n", tk_strerror(r));
	tk_soft_close(&s);
	return r == TK_OK ? TOOL_EXIT_OK : tool_exit_code(r);
}

static int
run(int argc, char **argv)
{
	struct opts o;
	int r;

	if (argc < 2)
		return usage_err();
	if ((r = parse(argc, argv, &o)) != TOOL_EXIT_OK)
		return r;
	if (strcmp(argv[1], "create") == 0)
		return cmd_create(&o);
	if (strcmp(argv[1], "import") == 0)
		return cmd_import(&o);
	if (strcmp(argv[1], "list") == 0)
		return cmd_list(&o);
	if (strcmp(argv[1], "export-cert") == 0)
		return cmd_export_cert(&o);
	if (strcmp(argv[1], "delete") == 0)
		return cmd_delete(&o);
	if (strcmp(argv[1], "change-pin") == 0)
		return cmd_pins(&o, false);
	if (strcmp(argv[1], "init-pin") == 0)
		return cmd_pins(&o, true);
	if (strcmp(argv[1], "destroy") == 0)
		return cmd_destroy(&o);
	return usage_err();
}

TOOL_COMMAND(soft, "soft", "create|import|list|...", "software tokens (PKCS#12 identities)", run)
