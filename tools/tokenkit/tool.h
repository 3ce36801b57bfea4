/* tokenkit command-line tool: the command table and shared helpers.
 *
 * Each cmd_<group>.c registers its commands with TOOL_COMMAND(); main.c
 * dispatches on the first argument and builds `tokenkit help` from the
 * table. A new command group is a new file: nothing else to edit. */
#ifndef TK_TOOL_H
#define TK_TOOL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <openssl/evp.h>
#include <openssl/x509.h>

#include <tokenkit/card.h>
#include <tokenkit/p11ext.h>
#include <tokenkit/slot.h>

/* Exit codes (listed by `tokenkit help`). */
enum {
	TOOL_EXIT_OK = 0,
	TOOL_EXIT_ERROR = 1,      /* operation failed */
	TOOL_EXIT_USAGE = 2,      /* bad command line (unknown option, malformed hex) */
	TOOL_EXIT_NO_SERVICE = 3, /* PC/SC daemon not reachable */
	TOOL_EXIT_NO_READER = 4,  /* no such reader */
	TOOL_EXIT_NO_CARD = 5,    /* no usable card in the reader */
	TOOL_EXIT_TIMEOUT = 6,    /* the card did not answer in time */
	/* a PIN (or a file's password) is needed and there is no way to ask for
	 * it: "token locked, needs the user PIN" */
	TOOL_EXIT_LOCKED = 7,
};

typedef struct tool_cmd {
	const char *name;
	const char *usage;                 /* "[--json] [--atr]" */
	const char *summary;               /* one line */
	int (*run)(int argc, char **argv); /* argv[0] is the command name */
	struct tool_cmd *next;
} tool_cmd_t;

void tool_register(tool_cmd_t *cmd);

#define TOOL_COMMAND(id, name_, usage_, summary_, fn_)                                             \
	static tool_cmd_t tool_cmd_##id = {name_, usage_, summary_, fn_, NULL};                    \
	__attribute__((constructor)) static void tool_register_##id(void)                          \
	{                                                                                          \
		tool_register(&tool_cmd_##id);                                                     \
	}

/* The tool's reader backends when neither $TOKENKIT_READERS nor a command
 * line says: PC/SC, and USB CCID readers no other program holds. */
#define TOOL_DEFAULT_READERS "pcsc+ccid?"
/* Slot manager options with the tool's defaults. */
void tool_mgr_opts(tk_slotmgr_opts_t *o);
/* Start a slot manager and wait for its first scan. On failure prints the
 * reason (for a missing pcscd: how to start it) and returns an exit code. */
int tool_open_mgr(tk_slotmgr_t **m, int timeout_ms);
/* Does the manager list a reader now? */
bool tool_any_reader(tk_slotmgr_t *m);
/* Wait (bounded) until no slot is still probing its card. */
void tool_settle(tk_slotmgr_t *m, int timeout_ms);
/* Map a tk_err to an exit code. */
int tool_exit_code(int err);
/* The module's own interface (tool_p11ext.c), for what the tool asks the
 * broker; NULL when the module is not found (the readers are opened here). */
const tk_p11ext_t *tool_p11ext(void);
/* A TK_P11EXT_* code as command cmd's exit: TOOL_EXIT_OK,
 * TOOL_EXIT_NO_READER, TOOL_EXIT_NO_SERVICE (said on stderr), or -1 (no
 * broker: open the readers here). */
int tool_p11ext_exit(const char *cmd, int rc);
/* The broker's readers with their counters (tk_p11ext_t.readers), for
 * command cmd: TOOL_EXIT_OK (*out: free() it, *n), TOOL_EXIT_NO_READER (no
 * reader named want there), TOOL_EXIT_NO_SERVICE (said on stderr), or -1:
 * no broker answers, open the readers here. */
int tool_broker_readers(const char *cmd, const char *want, tk_slot_diag_t **out, size_t *n);
/* A forced recovery of the broker's reader (tk_p11ext_t.reader_reset), for
 * command cmd: TOOL_EXIT_OK (*err its outcome, *rec its record),
 * TOOL_EXIT_NO_READER, TOOL_EXIT_NO_SERVICE (said on stderr), or -1: no
 * broker answers, reset the reader here. */
int tool_broker_reset(const char *cmd, const char *reader, bool cold, int *err, tk_recovery_t *rec);
/* The card in a reader the broker holds (tk_p11ext_t.card_open), as a
 * card whose commands go through the broker, for command cmd: TOOL_EXIT_OK
 * (*c), another exit code (said on stderr), or -1: no broker answers, open
 * the readers here. */
int tool_broker_card(const char *cmd, const char *reader, tk_card_t **c);
/* Print s as a JSON string (quotes and escapes included): text from a
 * reader, a card or a file, escaped by tk_text_escape (valid JSON and
 * UTF-8 whatever the bytes). */
void tool_json_str(FILE *f, const char *s);
/* s escaped for a terminal (tk_text_escape, TK_TEXT_PLAIN): every reader
 * name, label, serial, X.509 name or log field printed as text goes through
 * it. The result lives in one of four per-thread buffers (so up to four
 * in one printf), cut short at 2 KiB. */
const char *tool_text(const char *s);
/* A key's usage (TK_USAGE_*) as "sign,decrypt,derive" (empty: none). */
void tool_usage_text(unsigned u, char *out, size_t cap);
/* A slot's protocol: "T=0", "T=1" or "-". */
const char *tool_proto_name(int p);
/* A slot's `"atr": "3B..." | null, "protocol": "T=1" | null` in JSON. */
void tool_json_atr_protocol(const tk_slot_info_t *s);
/* Upper-case hex without separators into a static-size buffer. */
const char *tool_hex(const uint8_t *p, size_t len, char *buf, size_t cap);
/* Print the readers the manager knows (for "unknown reader" errors). */
void tool_print_readers_hint(FILE *f, tk_slotmgr_t *m);
/* Start a slot manager and take the card in READER (exact name, unique
 * prefix or substring, or slot id). On failure prints why, prefixed with
 * `tokenkit CMD`, frees what it made and returns an exit code. */
int tool_open_card(const char *cmd, const char *reader, tk_slotmgr_t **m, tk_card_t **c);

/* Decimal number at most max / a file descriptor number (at most 1024). */
bool tool_parse_uint(const char *s, unsigned max, unsigned *v);
bool tool_parse_fd(const char *s, int *fd);
/* One line from fd, read a byte at a time (another secret may follow on
 * the same descriptor); NUL-terminated, the newline dropped. */
int tool_read_line(int fd, char *buf, size_t cap, size_t *len);
/* A secret: from insecure (the command line, only when forced), fd (when
 * >= 0), or asked as "WHAT: " on the controlling terminal without echo.
 * TK_ERR_LOGIN_REQUIRED: none of them. */
int tool_get_secret(const char *what, const char *insecure, int fd, char *buf, size_t cap,
                    size_t *len);
/* Ask QUESTION on the controlling terminal: TK_OK for "yes",
 * TK_ERR_CANCELLED for anything else, TK_ERR_LOGIN_REQUIRED: no terminal. */
int tool_confirm(const char *question);

/* The longest secret (PIN, passphrase, key in hex) a command reads. */
#define TOOL_SECRET_CAP 160

/* Where a secret comes from: the command line (only with an --insecure-...
 * option), a descriptor (fd >= 0, one line), else the terminal. */
typedef struct tool_secret {
	const char *insecure;
	int fd;
} tool_secret_t;

/* A command's secret options: NAME ("pin") is `--NAME-fd N` and
 * `--insecure-NAME V`. */
typedef struct tool_secret_opt {
	const char *name;
	tool_secret_t *s;
} tool_secret_opt_t;

/* Every source of t: neither the command line nor a descriptor. */
void tool_secrets_init(const tool_secret_opt_t *t, size_t n);
/* Is option a (value v) one of t's? Then it is taken into its source.
 * False for another option, a missing value or a bad descriptor number. */
bool tool_secret_opt(const char *a, const char *v, const tool_secret_opt_t *t, size_t n);

/* How a command asks for one secret. */
typedef struct tool_ask {
	const char *group; /* "piv": messages begin "tokenkit piv: " */
	const char *what;  /* "admin PIN": the prompt and the messages' name */
	const char *fdopt; /* "--admin-pin-fd": named when there is no terminal */
	size_t min, max;   /* the lengths accepted; max 0: any that fits */
} tool_ask_t;

/* A secret from s (tool_get_secret); a message and an exit code when there
 * is none (TOOL_EXIT_LOCKED: no terminal), it cannot be read, or its length
 * is out of bounds (TOOL_EXIT_USAGE). */
int tool_read_secret(const tool_ask_t *a, const tool_secret_t *s, char *buf, size_t cap,
                     size_t *len);
/* A new secret: from s, else the next line of old's descriptor (old may be
 * NULL), else the terminal twice (the two must agree: a typo would lock
 * the user out). */
int tool_read_new_secret(const tool_ask_t *a, const tool_secret_t *s, const tool_secret_t *old,
                         char *buf, size_t cap, size_t *len);
/* The question (printf's fmt) asked with tool_confirm, unless yes (--yes)
 * answered it already; the exit code with the messages of CMD ("piv
 * reset"): TOOL_EXIT_USAGE without a terminal (give --yes), TOOL_EXIT_ERROR
 * when not confirmed; nothing was changed either way. */
int tool_confirm_cmd(const char *cmd, bool yes, const char *fmt, ...)
        __attribute__((format(printf, 3, 4)));

/* cardcmd.c: a command's session with one card application. */
typedef struct tool_session {
	const char *cmd; /* "piv generate", for messages */
	tk_slotmgr_t *m;
	tk_card_t *c;
	bool in_tx;
	unsigned le;  /* Le of a command with a response: 256, or 65536 (extended) */
	bool changed; /* a command that changes the card was sent: the token is
	               * opened once at tool_session_close (cache, registry) */
} tool_session_t;

/* Take the card in READER (tool_open_card), begin a transaction and SELECT
 * the application aid, asking le bytes of each response; *sw: SELECT's
 * status word, for the caller to judge. A message and an exit code on
 * failure; tool_session_close in every case. */
int tool_session_open(tool_session_t *s, const char *cmd, const char *reader, const uint8_t *aid,
                      size_t aid_len, unsigned le, uint16_t *sw);
void tool_session_close(tool_session_t *s);
/* One command (tk_card_apdu); resp NULL: none expected. A tk_err. */
int tool_xfer(tool_session_t *s, uint8_t ins, uint8_t p1, uint8_t p2, const uint8_t *data,
              size_t lc, uint8_t *resp, size_t cap, size_t *n, uint16_t *sw);
/* tool_xfer for a command the card takes long over (on-card key
 * generation): a deadline of 5 minutes instead of 5 s; resp and n needed. */
int tool_xfer_slow(tool_session_t *s, uint8_t ins, uint8_t p1, uint8_t p2, const uint8_t *data,
                   size_t lc, uint8_t *resp, size_t cap, size_t *n, uint16_t *sw);
/* "tokenkit CMD: READER: what: ..." for a failed exchange / an unexpected
 * status word; the exit code. */
int tool_card_err(tool_session_t *s, const char *what, int r);
int tool_sw_err(tool_session_t *s, const char *what, uint16_t sw);
/* The exit code of an exchange that returned r and sw: tool_card_err when
 * r is an error, tool_sw_err when sw is not 9000. */
int tool_card_result(tool_session_t *s, const char *what, int r, uint16_t sw);
/* A command without a response that must answer 9000: the exit code,
 * with the message of tool_card_err / tool_sw_err when it does not. */
int tool_xfer_ok(tool_session_t *s, const char *what, uint8_t ins, uint8_t p1, uint8_t p2,
                 const uint8_t *data, size_t lc);
/* A status word of a PIN command: 63Cx (tries left), 6983 (blocked) and
 * 6982 (refused) explained; TOOL_EXIT_OK for 9000. */
int tool_pin_sw(tool_session_t *s, const char *what, uint16_t sw);

/* A line counting seconds on standard error while the card works (on-card
 * key generation): only on a terminal and unless quiet; NULL when none. */
struct tool_progress *tool_progress_start(const char *what, bool quiet);
void tool_progress_stop(struct tool_progress **pr);

/* What the card made (one of a public key, a certificate or a request) as
 * PEM: to path, else, unless json (the JSON object carries it), to
 * standard output. On failure "tokenkit CMD: cannot write PATH" (or "the
 * WHAT") and TOOL_EXIT_ERROR. */
int tool_output_pem(const char *cmd, const char *path, bool json, const char *what, EVP_PKEY *pk,
                    X509 *x, X509_REQ *req);
/* One of them as a PEM string (NUL-terminated, the caller frees it; for
 * JSON); NULL on failure. */
char *tool_pem_string(EVP_PKEY *pk, X509 *x, X509_REQ *req);

/* ---- certificates signed by the card (cardcert.c) ---- */

/* A private key to import from a file: PEM (PKCS#8 or the traditional
 * forms, encrypted or not) or PKCS#12, whose certificate for that key goes
 * to *cert (may be NULL; NULL when none). The passphrase, only when the
 * file is encrypted, from pass (or the terminal; --passphrase-fd named).
 * TOOL_EXIT_OK, or a message naming cmd and an exit code. */
int tool_load_keyfile(const char *cmd, const char *path, const tool_secret_t *pass, EVP_PKEY **key,
                      X509 **cert);
/* A certificate from a file, PEM or DER; NULL when there is none. */
X509 *tool_load_cert(const char *path);

/* The options of a `certificate` command. */
typedef struct tool_cert_opts {
	const char *self_sign, *csr,
	        *import; /* --self-sign SUBJECT, --csr SUBJECT, --import FILE */
	unsigned days;   /* --days N (set the default before parsing) */
} tool_cert_opts_t;
/* True when a (with its value v) is one of them; *bad when the value does
 * not parse. */
bool tool_cert_opt(const char *a, const char *v, tool_cert_opts_t *c, bool *bad);

/* "/CN=name/O=org" (openssl's -subj form; the leading slash optional);
 * NULL when it does not parse. */
X509_NAME *tool_parse_subject(const char *s);
/* The hash a certificate for pk's key is signed with: SHA-384 for keys on
 * curves above 256 bits, NULL for Ed25519 (the card signs the bytes), else
 * SHA-256. */
const EVP_MD *tool_cert_md(EVP_PKEY *pk);

typedef struct tool_card_signer {
	EVP_PKEY *pk; /* the card key's public key */
	/* The card signs tbs: hashed with md (NULL: the bytes themselves,
	 * Ed25519); the signature as a certificate carries it (ECDSA: DER
	 * ECDSA-Sig-Value), malloc'ed. It asks for the PIN it needs. */
	int (*sign)(void *ctx, const EVP_MD *md, const uint8_t *tbs, size_t tbs_len, uint8_t **sig,
	            size_t *sig_len);
	void *ctx;
} tool_card_signer_t;

/* A self-signed certificate for the card's key (subject, valid for days;
 * rout NULL) or a PKCS#10 request (xout NULL), signed by the card and
 * checked with the key's public key. TOOL_EXIT_OK, or a message and
 * TOOL_EXIT_USAGE (a subject that does not parse) / TOOL_EXIT_ERROR. */
int tool_card_signed(const char *cmd, const tool_card_signer_t *s, const char *subject,
                     unsigned days, X509 **xout, X509_REQ **rout);

#endif
