/* tokenkit piv: what the command's files share (cmd_piv.c: options,
 * secrets, the card, the management key, generate, certificate, PIN;
 * cmd_piv_keys.c: import and reset). Private to the tool. */
#ifndef TK_TOOL_CMD_PIV_H
#define TK_TOOL_CMD_PIV_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <openssl/evp.h>
#include <openssl/x509.h>

#include <tokenkit/card.h>
#include <tokenkit/slot.h>

#include "tool.h"

#define RESP_CAP 4096

struct opts {
	const char *args[3];
	int nargs;
	const char *algorithm, *out, *new_algorithm;
	tool_cert_opts_t cert;
	bool default_mgm, no_cert, yes, block, json;
	bool pad;                         /* --pad: PINs typed on the reader's PIN pad */
	uint8_t pin_policy, touch_policy; /* 0: the slot's default */
	tool_secret_t mgm, new_mgm, pin, new_pin, puk, new_puk, pass;
};

/* PIV commands ask short APDUs' Le (cards without extended length). */
#define PIV_LE 256

/* The usage message; TOOL_EXIT_USAGE. */
int usage_err(void);
/* Read a secret (tool_read_secret, messages "tokenkit piv: ..."). */
int read_secret(const char *what, const tool_secret_t *s, char *buf, size_t cap, size_t *len,
                const char *fdopt);
/* Take the card in READER, in a transaction, with PIV selected. */
int piv_open(tool_session_t *p, const char *cmd, const char *reader);
/* Mutual authentication with the management key from o's sources. */
int mgm_auth(tool_session_t *p, const struct opts *o);
/* PUT DATA of the slot's certificate object. */
int put_cert(tool_session_t *p, uint8_t ref, X509 *x);

/* cmd_piv_keys.c */
/* piv_open for a command that writes a key of algorithm alg (PIV_ALG_*):
 * the card's firmware must know the algorithm and o's PIN and touch
 * policies (a message and an exit code when not), then mutual
 * authentication with the management key. */
int piv_open_for_key(tool_session_t *p, const char *cmd, const struct opts *o, uint8_t alg);
int piv_import(const struct opts *o);
int piv_reset(const struct opts *o);

/* cmd_piv_out.c: --json output (one object on stdout: pj_begin, fields,
 * pj_end). */
/* Tries left of the PIN (80) or PUK (81); -1 when the card does not say. */
int tries_left(tool_session_t *p, uint8_t ref);
/* {"command", "reader", "serial" (Yubico GET SERIAL, or null) */
void pj_begin(tool_session_t *p);
void pj_str(const char *key, const char *v); /* NULL: null */
void pj_int(const char *key, long v);        /* negative: null */
void pj_bool(const char *key, bool v);
/* a public key, a certificate or a request as a PEM string */
int pj_pem(const char *key, EVP_PKEY *pk, X509 *x, X509_REQ *req);
/* "slot" and, from GET METADATA, "algorithm", "pin_policy", "touch_policy",
 * "origin" (null when the card does not say) */
void pj_slot(tool_session_t *p, uint8_t ref);
void pj_end(void);

#endif
