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

#include <tokenkit/card.h>
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
/* Print s as a JSON string (quotes and escapes included): text from a
 * reader, a card or a file, escaped by tk_text_escape (valid JSON and
 * UTF-8 whatever the bytes). */
void tool_json_str(FILE *f, const char *s);
/* s escaped for a terminal (tk_text_escape, TK_TEXT_PLAIN): every reader
 * name, label, serial, X.509 name or log field printed as text goes through
 * it. The result lives in one of four per-thread buffers (so up to four
 * in one printf), cut short at 2 KiB. */
const char *tool_text(const char *s);
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

#endif
