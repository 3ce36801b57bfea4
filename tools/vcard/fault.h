/* tokenkit virtual card: fault injection.
 *
 * A fault state driven by short text specs, shared by every transport that
 * serves a virtual card (tokenkit-vcard over vpcd, the in-process virtual
 * reader). The transport asks the state what to do with each command APDU
 * and each power event; the state never does I/O itself.
 *
 * Spec grammar: words separated by spaces or commas.
 *   none          clear every fault, re-insert a removed card (a held APDU
 *                 is released and answered)
 *   delay=MS      delay every response by MS milliseconds
 *   stall         hold the next APDU unanswered until the fault is cleared
 *   close[=MS]    after reading the next command, drop the connection (the
 *                 card vanishes with an APDU outstanding) and come back
 *                 after MS milliseconds (default 1000)
 *   garbage       answer random bytes
 *   short         answer 1 byte
 *   empty         answer 0 bytes
 *   remove        disconnect and stay away until "insert"
 *   insert        come back after "remove"
 *   mute          answer no APDU until a power-off or reset arrives
 *   mute=cold     answer no APDU until a power-off (a warm reset is not
 *                 enough)
 *   count=N       (with one of the above) apply to the next N APDUs only;
 *                 without it a fault lasts until "none"
 * A spec that names a new per-APDU fault replaces the previous one;
 * remove/insert only change presence. */
#ifndef TK_VCARD_FAULT_H
#define TK_VCARD_FAULT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct tk_fault tk_fault_t;

/* What the transport does with one command APDU. */
enum tk_fault_action {
	TK_FAULT_PASS = 0, /* process normally (after *delay_ms, maybe 0) */
	TK_FAULT_HOLD,     /* stall: the card keeps the reader waiting (time
	                      extensions) until the fault is cleared */
	TK_FAULT_MUTE,     /* mute: the card sends nothing; a reader gives up
	                      after its waiting time, a power event ends it */
	TK_FAULT_CLOSE,    /* drop the connection; come back after tk_fault_away_ms() */
	TK_FAULT_GARBAGE,  /* answer tk_fault_garbage() bytes */
	TK_FAULT_SHORT,    /* answer 1 byte */
	TK_FAULT_EMPTY,    /* answer 0 bytes */
};

/* Errors: TK_ERR_NO_MEMORY. */
int tk_fault_new(tk_fault_t **out);
void tk_fault_free(tk_fault_t **fp);

/* Apply a spec (grammar above). Errors: TK_ERR_INVALID_ARG for an unknown
 * word or a bad number; the state is unchanged then. When err is not NULL
 * it receives a one-line reason. */
int tk_fault_apply(tk_fault_t *f, const char *spec, char *err, size_t err_cap);

/* Decide the fate of the next command APDU; consumes one unit of count.
 * *delay_ms receives the extra delay for TK_FAULT_PASS and answers. */
enum tk_fault_action tk_fault_on_apdu(tk_fault_t *f, uint32_t *delay_ms);

/* A power-off (power_cycle true) or a warm reset arrived: ends "mute" (a
 * warm reset does not end "mute=cold"). Returns true when a held APDU must
 * be dropped unanswered. */
bool tk_fault_on_power(tk_fault_t *f, bool power_cycle);

/* True while an APDU held by stall/mute may now be answered (the fault
 * was cleared); the transport then answers it and calls tk_fault_released(). */
bool tk_fault_release_ready(const tk_fault_t *f);
void tk_fault_released(tk_fault_t *f);
bool tk_fault_holding(const tk_fault_t *f);
/* The transport dropped the held APDU (connection lost). */
void tk_fault_drop_held(tk_fault_t *f);

/* Presence: false after "remove" until "insert". */
bool tk_fault_present(const tk_fault_t *f);
/* How long to stay away after TK_FAULT_CLOSE. */
uint32_t tk_fault_away_ms(const tk_fault_t *f);

/* Fill buf with 2..cap random bytes (cap >= 2); returns the length. */
size_t tk_fault_garbage(uint8_t *buf, size_t cap);

/* One-line description ("stall count=1 held"), for "status". */
void tk_fault_describe(const tk_fault_t *f, char *buf, size_t cap);

#endif
