/* tokenkitd: the broker (README "The broker"; protocol in pkcs11/bproto.h).
 *
 * main.c: options, the listening socket (ours, or systemd's LISTEN_FDS),
 * the embedded module, the accept loop. serve.c: one thread per
 * connection, the clients (by their client id and pid) and what belongs to
 * each (sessions, logins, slot view, consent given once), the per-card
 * queues, and the handler of every function. consent.c: asking.
 * report.c: the tokenkit tool's view of the tokens and readers (BP_TOKENS,
 * BP_READERS). */
#ifndef TK_BROKER_H
#define TK_BROKER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <pkcs11-helper-1.0/pkcs11.h>

#define BROKER_WRITE_MS 5000 /* a client that does not read its answer is dropped */
#define BROKER_PROMPT_MS 60000

struct broker_conf {
	bool consent;            /* ask before a program's first use of a private key */
	const char *prompt;      /* the prompt program, or NULL */
	const char *policy;      /* the policy file, or NULL */
	const char *consent_dir; /* the consent store (NULL: default) */
	uid_t uid;               /* ours: the only uid served, */
	bool system;             /* unless this is the system instance */
	uint8_t instance[16];
};

extern struct broker_conf g_conf;

/* serve.c */
void broker_serve_init(void);
void broker_serve_conn(int fd); /* takes fd; runs a thread */
/* report.c: BP_TOKENS and BP_READERS, arguments r, results into w; *bad:
 * they do not parse. */
struct bp_r;
struct bp_w;
CK_RV broker_tokens(struct bp_r *r, struct bp_w *w, bool *bad);
CK_RV broker_readers(struct bp_r *r, struct bp_w *w, bool *bad);
/* report.c: BP_READER_RESET (`tokenkit reset`: a forced recovery) */
CK_RV broker_reader_reset(struct bp_r *r, struct bp_w *w, bool *bad);

/* report.c: the embedded module's slot manager, or NULL before
 * C_Initialize. */
struct tk_slotmgr;
struct tk_slotmgr *broker_manager(void);
/* report.c: a request's reader name (p, n bytes) into out (cap bytes,
 * terminated): false when it is empty, too long or holds a NUL. */
bool broker_reader_arg(const uint8_t *p, size_t n, char *out, size_t cap);
/* report.c: a tk_err as the protocol's error (negated; 0: success). */
uint64_t broker_err(int err);
/* serve.c: a blank-padded PKCS#11 text field (n bytes) into dst (n + 1
 * bytes), trailing blanks dropped; n bytes of p as lower-case hex into out
 * (cap bytes, cut short to fit). */
void broker_trim(char *dst, const CK_UTF8CHAR *src, size_t n);
void broker_hex(const uint8_t *p, size_t n, char *out, size_t cap);

/* serve.c: the card's queue (one per hardware slot): turns in order of
 * arrival; enter waits for this caller's. */
struct queue;
struct queue *broker_queue_enter(CK_SLOT_ID slot);
void broker_queue_leave(struct queue *q); /* NULL: nothing */

/* cards.c: a connection's raw card session (BP_CARD_OPEN, BP_CARD_IO),
 * arguments r, results into w (*bad: they do not parse); close ends what
 * it holds (the connection's end). held: a transaction holds the card's
 * queue. */
struct raw_card;
struct consent_key;
/* who: the program (exe, uid, pid, still); with consent on, its commands
 * to a card are a use of every key on it, asked for as such */
CK_RV broker_card_open(struct raw_card **rc, const struct consent_key *who, struct bp_r *r,
                       struct bp_w *w, bool *bad);
CK_RV broker_card_io(struct raw_card *rc, struct bp_r *r, struct bp_w *w, bool *bad);
bool broker_card_held(const struct raw_card *rc);
void broker_card_close(struct raw_card **rc);
#define BROKER_CARD_IDLE_MS 60000 /* a held card's next request, at the latest */

/* consent.c: whether program (exe, uid) may use the key; logs denials.
 * CKR_OK, CKR_FUNCTION_REJECTED. */
struct consent_key {
	const char *exe;
	uid_t uid;
	pid_t pid;
	const char *token_serial, *token_label;
	const char *key_id, *key_label; /* hex id */
	/* called at least every BP_STILL_MS while the check waits (for
	 * another prompt, or a person): the client waits on (or NULL) */
	void (*still)(void);
};
/* *once: allowed for this run only (the caller remembers it per client). */
CK_RV broker_consent_check(const struct consent_key *k, bool *once);

#endif
