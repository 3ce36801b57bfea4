/* The card session of the provisioning commands (cmd_piv*.c,
 * cmd_openpgp.c): the card taken in a transaction with the application
 * selected, commands and their error messages, PIN status words, progress
 * while the card works, and PEM output of what it made. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/pem.h>

#include <tokenkit/apdu.h>
#include <tokenkit/card.h>
#include <tokenkit/err.h>
#include <tokenkit/log.h>
#include <tokenkit/token.h>

#include "tool.h"

/* SELECT's response: an FCI or application property template is small. */
#define SELECT_CAP 4096
/* On-card key generation takes minutes on some cards (RSA-4096). */
#define SLOW_TIMEOUT_MS 300000

int
tool_session_open(tool_session_t *s, const char *cmd, const char *reader, const uint8_t *aid,
                  size_t aid_len, unsigned le, uint16_t *sw)
{
	uint8_t *resp = NULL;
	size_t n = 0;
	int rc, r;

	*sw = 0;
	s->cmd = cmd;
	s->le = le;
	if ((rc = tool_open_card(cmd, reader, &s->m, &s->c)) != TOOL_EXIT_OK)
		return rc;
	if ((r = tk_card_begin(s->c)) != TK_OK)
		return tool_card_err(s, "begin transaction", r);
	s->in_tx = true;
	if ((resp = malloc(SELECT_CAP)) == NULL)
		return tool_card_err(s, "select", TK_ERR_NO_MEMORY);
	r = tool_xfer(s, 0xA4, 0x04, 0x00, aid, aid_len, resp, SELECT_CAP, &n, sw);
	free(resp);
	return r != TK_OK ? tool_card_err(s, "select", r) : TOOL_EXIT_OK;
}

/* After a command that changed the card, its token is opened once with the
 * full check: the public-object cache and the card's registry record then
 * hold what the card now holds, so the next program's warm open (which
 * takes the cache on trust until its background check) does not show the
 * card as it was. */
static void
refresh_token(tool_session_t *s)
{
	tk_token_opts_t o;
	tk_token_t *t = NULL;
	int r;

	tk_token_opts_init(&o);
	if ((r = tk_token_open(s->c, &o, &t)) == TK_OK)
		r = tk_token_register(t, NULL, NULL);
	if (r != TK_OK && r != TK_ERR_NOT_SUPPORTED)
		tk_log_debug("%s: the card's cached objects not brought up to date: %s", s->cmd,
		             tk_strerror(r));
	tk_token_free(&t);
}

void
tool_session_close(tool_session_t *s)
{
	if (s->in_tx)
		(void)tk_card_end(s->c);
	s->in_tx = false;
	/* (a card the broker holds: the broker brings its token up to date
	 * when the transaction ends, cache and registry record included) */
	if (s->changed && s->c != NULL && s->m != NULL)
		refresh_token(s);
	s->changed = false;
	tk_card_unref(&s->c);
	tk_slotmgr_free(&s->m);
}

/* Commands that change what a token shows (keys, certificates, data
 * objects, the whole application): PUT DATA (DA, DB), GENERATE ASYMMETRIC
 * KEY PAIR (47, except OpenPGP's 47 81 that reads a public key), Yubico's
 * IMPORT (FE) and RESET (FB), TERMINATE DF (E6), ACTIVATE FILE (44). */
static bool
changes_card(uint8_t ins, uint8_t p1)
{
	return ins == 0xDA || ins == 0xDB || (ins == 0x47 && p1 != 0x81) || ins == 0xFE ||
	       ins == 0xFB || ins == 0xE6 || ins == 0x44;
}

static void
apdu_of(tool_session_t *s, tk_apdu_t *a, uint8_t ins, uint8_t p1, uint8_t p2, const uint8_t *data,
        size_t lc, bool resp)
{
	*a = (tk_apdu_t){.ins = ins, .p1 = p1, .p2 = p2, .data = data, .lc = lc};
	a->le = resp ? s->le : 0;
	s->changed = s->changed || changes_card(ins, p1);
}

int
tool_xfer(tool_session_t *s, uint8_t ins, uint8_t p1, uint8_t p2, const uint8_t *data, size_t lc,
          uint8_t *resp, size_t cap, size_t *n, uint16_t *sw)
{
	tk_apdu_t a;
	size_t dummy = 0;

	*sw = 0;
	if (n == NULL)
		n = &dummy;
	*n = 0;
	apdu_of(s, &a, ins, p1, p2, data, lc, resp != NULL);
	return tk_card_apdu(s->c, &a, resp, resp != NULL ? cap : 0, n, sw);
}

static int
transmit_slow(void *ctx, const uint8_t *cmd, size_t cmd_len, uint8_t *resp, size_t resp_cap,
              size_t *resp_len)
{
	return tk_card_transmit(ctx, cmd, cmd_len, resp, resp_cap, resp_len, SLOW_TIMEOUT_MS);
}

int
tool_xfer_slow(tool_session_t *s, uint8_t ins, uint8_t p1, uint8_t p2, const uint8_t *data,
               size_t lc, uint8_t *resp, size_t cap, size_t *n, uint16_t *sw)
{
	tk_apdu_opts_t opts = {0};
	tk_card_caps_t caps;
	tk_apdu_t a;

	*sw = 0;
	*n = 0;
	/* tk_card_apdu would wait its default 5 s: the same exchange over a
	 * transmit with the long deadline, extended length as the card allows */
	tk_card_caps(s->c, &caps);
	opts.extended = caps.extended_apdu;
	apdu_of(s, &a, ins, p1, p2, data, lc, true);
	return tk_apdu_exchange(transmit_slow, s->c, &opts, &a, resp, cap, n, sw);
}

int
tool_card_result(tool_session_t *s, const char *what, int r, uint16_t sw)
{
	if (r != TK_OK)
		return tool_card_err(s, what, r);
	return sw == 0x9000 ? TOOL_EXIT_OK : tool_sw_err(s, what, sw);
}

int
tool_card_err(tool_session_t *s, const char *what, int r)
{
	fprintf(stderr, "tokenkit %s: %s: %s: %s\n", s->cmd, tool_text(tk_card_reader_name(s->c)),
	        what, tk_strerror(r));
	return tool_exit_code(r);
}

int
tool_sw_err(tool_session_t *s, const char *what, uint16_t sw)
{
	fprintf(stderr, "tokenkit %s: %s: %s: the card answered %04X (%s)\n", s->cmd,
	        tool_text(tk_card_reader_name(s->c)), what, sw, tk_strerror(tk_err_from_sw(sw)));
	return TOOL_EXIT_ERROR;
}

int
tool_xfer_ok(tool_session_t *s, const char *what, uint8_t ins, uint8_t p1, uint8_t p2,
             const uint8_t *data, size_t lc)
{
	uint16_t sw = 0;
	int r = tool_xfer(s, ins, p1, p2, data, lc, NULL, 0, NULL, &sw);

	return tool_card_result(s, what, r, sw);
}

int
tool_pin_sw(tool_session_t *s, const char *what, uint16_t sw)
{
	if ((sw & 0xFFF0) == 0x63C0) {
		fprintf(stderr, "tokenkit %s: wrong %s (%u tries left)\n", s->cmd, what, sw & 0xFu);
		return TOOL_EXIT_ERROR;
	}
	if (sw == 0x6983) {
		fprintf(stderr, "tokenkit %s: the %s is blocked\n", s->cmd, what);
		return TOOL_EXIT_ERROR;
	}
	/* security status not satisfied: some cards' answer to a wrong PIN
	 * that does not count down */
	if (sw == 0x6982) {
		fprintf(stderr, "tokenkit %s: wrong %s\n", s->cmd, what);
		return TOOL_EXIT_ERROR;
	}
	return sw == 0x9000 ? TOOL_EXIT_OK : tool_sw_err(s, what, sw);
}

/* ---- progress ------------------------------------------------------------------------ */

struct tool_progress {
	pthread_t t;
	atomic_bool stop;
	const char *what;
};

static void *
progress_main(void *arg)
{
	struct tool_progress *pr = arg;
	const struct timespec tick = {0, 100 * 1000 * 1000};
	unsigned ticks = 0;

	/* a line that counts seconds, redrawn in place; how long it took at
	 * the end */
	while (!atomic_load(&pr->stop)) {
		if (ticks % 10 == 0)
			fprintf(stderr, "\r%s... %u s", pr->what, ticks / 10);
		nanosleep(&tick, NULL);
		ticks++;
	}
	fprintf(stderr, "\r%s... done (%u s)\n", pr->what, ticks / 10);
	return NULL;
}

struct tool_progress *
tool_progress_start(const char *what, bool quiet)
{
	struct tool_progress *pr;

	if (quiet || !isatty(2) || (pr = calloc(1, sizeof(*pr))) == NULL)
		return NULL;
	pr->what = what;
	atomic_init(&pr->stop, false);
	if (pthread_create(&pr->t, NULL, progress_main, pr) != 0) {
		free(pr);
		return NULL;
	}
	return pr;
}

void
tool_progress_stop(struct tool_progress **prp)
{
	struct tool_progress *pr = *prp;

	*prp = NULL;
	if (pr == NULL)
		return;
	atomic_store(&pr->stop, true);
	pthread_join(pr->t, NULL);
	free(pr);
}

/* ---- PEM ----------------------------------------------------------------------------- */

static int
pem_write(BIO *b, EVP_PKEY *pk, X509 *x, X509_REQ *req)
{
	return pk != NULL  ? PEM_write_bio_PUBKEY(b, pk)
	       : x != NULL ? PEM_write_bio_X509(b, x)
	                   : PEM_write_bio_X509_REQ(b, req);
}

static int
write_pem(const char *path, EVP_PKEY *pk, X509 *x, X509_REQ *req)
{
	BIO *b = path != NULL ? BIO_new_file(path, "w") : BIO_new_fp(stdout, BIO_NOCLOSE);
	int ok;

	if (b == NULL) {
		ERR_clear_error();
		return TK_ERR_IO;
	}
	ok = pem_write(b, pk, x, req);
	ok = BIO_free(b) == 1 && ok == 1;
	ERR_clear_error();
	return ok ? TK_OK : TK_ERR_IO;
}

int
tool_output_pem(const char *cmd, const char *path, bool json, const char *what, EVP_PKEY *pk,
                X509 *x, X509_REQ *req)
{
	if ((path == NULL && json) || write_pem(path, pk, x, req) == TK_OK)
		return TOOL_EXIT_OK;
	if (path != NULL)
		fprintf(stderr, "tokenkit %s: cannot write %s\n", cmd, tool_text(path));
	else
		fprintf(stderr, "tokenkit %s: cannot write the %s\n", cmd, what);
	return TOOL_EXIT_ERROR;
}

char *
tool_pem_string(EVP_PKEY *pk, X509 *x, X509_REQ *req)
{
	BIO *b = BIO_new(BIO_s_mem());
	char *data = NULL, *s = NULL;
	long len;

	/* the memory BIO's bytes are not NUL-terminated */
	if (b != NULL && pem_write(b, pk, x, req) == 1 && (len = BIO_get_mem_data(b, &data)) > 0 &&
	    (s = malloc((size_t)len + 1)) != NULL) {
		memcpy(s, data, (size_t)len);
		s[len] = '\0';
	}
	BIO_free(b);
	ERR_clear_error();
	return s;
}
