/* tokenkit virtual card: card logic as a library. It carries a PIV applet,
 * an OpenPGP applet (OpenPGP card 3.4), or both.
 *
 * The card is a pure function of its state and the command APDU: no
 * sockets, no threads. tokenkit-vcard serves it to a real pcscd through vpcd;
 * tests and the in-process virtual reader call it directly. Real
 * cryptography (OpenSSL) for every key operation. */
#ifndef TK_VCARD_H
#define TK_VCARD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct tk_vcard tk_vcard_t;

/* Open the card stored in state_path, creating a fresh PIV card there (PIN
 * 123456, PUK 12345678, the well-known default 3DES management key
 * 010203040506070801020304050607080102030405060708, empty key slots) if
 * the file does not exist. state_path NULL: a fresh in-memory card. State
 * changes are written atomically (temp file, fsync, rename) before the
 * response that reports them is returned. A state file is used by one
 * program at a time (it holds <state_path>.lock): TK_ERR_BUSY when another
 * one has it. Returns 0 or a negative tk_err. */
int tk_vcard_open(const char *state_path, tk_vcard_t **out);

#define TK_VCARD_APPLET_PIV 0x1u
#define TK_VCARD_APPLET_OPENPGP 0x2u
/* tk_vcard_open with the applets a new card gets (0: PIV). A new OpenPGP
 * applet has PW1 123456, PW3 12345678, no resetting code, RSA-2048
 * attributes for its three keys and no keys. An existing state file keeps
 * the applets it has: TK_ERR_CONFLICT when applets (not 0) differs. */
int tk_vcard_open_applets(const char *state_path, unsigned applets, tk_vcard_t **out);
/* "piv", "openpgp", "both" → TK_VCARD_APPLET_*. Errors: TK_ERR_INVALID_ARG. */
int tk_vcard_applets_parse(const char *s, unsigned *out);
void tk_vcard_free(tk_vcard_t **cp);

/* Build an in-memory card from the bytes of a state file (fuzzers, tests).
 * Errors: TK_ERR_MALFORMED (not a valid state file), TK_ERR_NO_MEMORY. */
int tk_vcard_load_mem(const uint8_t *data, size_t len, tk_vcard_t **out);
/* Serialise the card's state (the bytes the state file holds). *out is
 * malloc'd and holds secrets: release it with tk_freezero(*out, *out_len).
 * Errors: TK_ERR_NO_MEMORY, TK_ERR_CRYPTO. */
int tk_vcard_save_mem(const tk_vcard_t *c, uint8_t **out, size_t *out_len);

/* The ATR (offers T=1). Returns its length. */
size_t tk_vcard_atr(const tk_vcard_t *c, uint8_t *atr, size_t cap);

/* Power events: reset clears the selected application and all
 * authentication state (PIN verified, management key authenticated). */
void tk_vcard_power_on(tk_vcard_t *c);
void tk_vcard_power_off(tk_vcard_t *c);
void tk_vcard_reset(tk_vcard_t *c);

/* Process one command APDU (short or extended) and produce the response
 * APDU (data + SW1 SW2, at least 2 bytes). Never fails: card errors are
 * status words. resp_cap must be at least 2; TK_APDU_MAX_RESP is always
 * enough. Returns the response length. */
size_t tk_vcard_process(tk_vcard_t *c, const uint8_t *cmd, size_t cmd_len, uint8_t *resp,
                        size_t resp_cap);

/* Latency profile: microseconds the card would take for this command (a
 * real token's timing), used by the transports to delay the response.
 * "none" (default) and "yubikey5". Returns 0 or TK_ERR_NOT_FOUND. */
int tk_vcard_set_latency(tk_vcard_t *c, const char *profile);
uint64_t tk_vcard_latency_us(const tk_vcard_t *c, const uint8_t *cmd, size_t cmd_len);

/* A card option (not kept in the state file):
 *   no-extended=6700|6A82  the ATR still announces extended Lc/Le, but the
 *                          card parses short APDUs only and answers every
 *                          APDU in extended form with that status word
 *                          (wrong length, or "not found" as a misparsed
 *                          GET DATA does)
 *   no-extended=off        back to normal
 *   firmware=MAJ.MIN.PATCH the version GET VERSION and attestations give
 *                          (default 5.4.3); RSA-3072 and 4096 keys need 5.7
 * Errors: TK_ERR_NOT_FOUND (unknown option), TK_ERR_INVALID_ARG (value). */
int tk_vcard_set_option(tk_vcard_t *c, const char *option);

/* Count of APDUs processed since open (for benchmarks and tests). */
uint64_t tk_vcard_apdu_count(const tk_vcard_t *c);

#endif
