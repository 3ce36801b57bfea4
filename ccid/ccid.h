/* tokenkit CCID: USB smart-card readers driven directly over libusb
 * (USB CCID 1.1), for the reader backend that plugs into core's
 * tk_reader_ops (core/reader.h).
 *
 * Objects:
 * - tk_ccid_found_t: one CCID interface seen on the bus (tk_ccid_scan, or
 *   tk_ccid_probe for one libusb device from a hotplug callback). A
 *   composite device with two CCID interfaces is two of them.
 * - tk_ccid_dev_t: one opened and claimed interface: one reader. All bulk
 *   traffic of a reader is serialised by the reader's own lock (its slots
 *   share the bulk pipes); the interrupt pipe has its own path
 *   (tk_ccid_wait_event), so a monitor thread can wait for card events
 *   while a worker exchanges APDUs.
 * - tk_ccid_slot_t: one slot of a reader (bMaxSlotIndex + 1 of them), owned
 *   by its reader.
 *
 * Every USB transfer has a deadline (tk_ccid_timeouts_t), and every loop
 * that waits for the reader is bounded: time extensions by count and by a
 * total deadline, frames with a stale sequence number by count, split
 * replies by size. Errors are tk_err values, converted from libusb once
 * (tk_ccid_err_from_libusb). After a failure, tk_ccid_last_fault() says
 * what the USB layer saw, so a recovery ladder can pick its step: a stalled
 * pipe (tk_ccid_clear_halt), a reader that stopped answering
 * (tk_ccid_abort, then tk_ccid_reset_device), a device that went away
 * (tk_ccid_reopen). */
#ifndef TK_CCID_H
#define TK_CCID_H

#include <libusb.h>

#include <tokenkit/common.h>

#include "descriptor.h"
#include "message.h"

#define TK_CCID_MAX_PORTS 8
#define TK_CCID_NAME_MAX 128

typedef struct tk_ccid_found {
	tk_ccid_usb_id_t id;
	uint8_t bus;
	uint8_t addr;
	uint8_t ports[TK_CCID_MAX_PORTS]; /* port path from the root hub */
	uint8_t nports;
	uint8_t str_manufacturer, str_product, str_serial; /* string indices */
	tk_ccid_iface_t iface;
} tk_ccid_found_t;

/* Every CCID interface of every device libusb sees. *out is malloc'd
 * (free()); *count may be 0. Errors: TK_ERR_INVALID_ARG, TK_ERR_NO_MEMORY,
 * TK_ERR_IO (libusb could not list devices). */
int tk_ccid_scan(libusb_context *ctx, tk_ccid_found_t **out, size_t *count);
/* The CCID interfaces of one device (up to cap; *count says how many).
 * Reads only the descriptors libusb caches, never opens the device. */
int tk_ccid_probe(libusb_device *dev, tk_ccid_found_t *out, size_t cap, size_t *count);

typedef struct tk_ccid_timeouts {
	int write_ms;          /* one bulk-out transfer */
	int read_ms;           /* one bulk-in wait (longer when the card asked for more time) */
	int control_ms;        /* one control transfer */
	int command_ms;        /* a whole command, time extensions included */
	unsigned max_time_ext; /* time extensions per command */
	unsigned max_stale;    /* frames with another bSeq discarded per command */
	int pin_ms;            /* extra time for a PIN entry on the pad */
} tk_ccid_timeouts_t;

/* The defaults: 5 s, 10 s, 2 s, 120 s, 600, 16, 60 s. */
void tk_ccid_timeouts_default(tk_ccid_timeouts_t *t);

typedef struct tk_ccid_dev tk_ccid_dev_t;
typedef struct tk_ccid_slot tk_ccid_slot_t;

/* Open and claim the interface f describes (libusb detaches a kernel driver
 * if one is bound). Errors: TK_ERR_INVALID_ARG, TK_ERR_NO_MEMORY,
 * TK_ERR_READER_GONE (the device is not there any more), TK_ERR_SHARING
 * (another program has claimed the interface: pcscd, scdaemon),
 * TK_ERR_NOT_SUPPORTED (character-level reader, or a firmware the quirk
 * table marks as broken), TK_ERR_IO (no permission, other USB errors). */
int tk_ccid_open(libusb_context *ctx, const tk_ccid_found_t *f, tk_ccid_dev_t **out);
/* Release, close and free. Accepts NULL; sets *dp to NULL. */
void tk_ccid_close(tk_ccid_dev_t **dp);

void tk_ccid_set_timeouts(tk_ccid_dev_t *d, const tk_ccid_timeouts_t *t);
/* What the reader is (address refreshed by tk_ccid_reopen). */
const tk_ccid_found_t *tk_ccid_info(const tk_ccid_dev_t *d);
/* "Manufacturer Product [serial] (bus-port.port:interface)", from the
 * string descriptors read at open (missing ones left out). */
const char *tk_ccid_name(const tk_ccid_dev_t *d);
/* "Manufacturer Product" ("USB vvvv:pppp" when the reader names neither),
 * and the serial number ("" when it has none). */
const char *tk_ccid_product(const tk_ccid_dev_t *d);
const char *tk_ccid_serial(const tk_ccid_dev_t *d);
/* The port path "bus-port[.port...]" of f: the same after a replug into the
 * same port. Errors: TK_ERR_INVALID_ARG, TK_ERR_BUFFER_TOO_SMALL. */
int tk_ccid_port_path(const tk_ccid_found_t *f, char *out, size_t cap);
/* The names of a reader that is not ours (another program claimed it):
 * opens the device without claiming anything and reads its strings.
 * Errors: TK_ERR_READER_GONE, TK_ERR_IO (no permission), ... */
int tk_ccid_found_names(libusb_context *ctx, const tk_ccid_found_t *f, char *product, size_t pcap,
                        char *serial, size_t scap);
enum tk_ccid_level tk_ccid_level(const tk_ccid_dev_t *d);
unsigned tk_ccid_nslots(const tk_ccid_dev_t *d);
/* Slot i (0 .. nslots-1), or NULL. */
tk_ccid_slot_t *tk_ccid_slot(tk_ccid_dev_t *d, unsigned i);
tk_ccid_dev_t *tk_ccid_slot_dev(tk_ccid_slot_t *s);
unsigned tk_ccid_slot_index(const tk_ccid_slot_t *s);

/* --- slots ------------------------------------------------------------- */

typedef struct tk_ccid_slot_state {
	bool present;
	bool active; /* powered, the ATR is valid */
	uint8_t clock_status;
} tk_ccid_slot_state_t;

/* PC_to_RDR_GetSlotStatus. Errors: transport errors (below). */
int tk_ccid_slot_status(tk_ccid_slot_t *s, tk_ccid_slot_state_t *st);

/* Power the card on (voltage: the reader's choice when it selects
 * automatically, else 1.8 V, 3 V, 5 V as supported, lowest first), parse
 * the ATR, pick the protocol, and set the transmission up as the reader's
 * dwFeatures require (PPS, SetParameters, IFSD). atr gets up to cap bytes
 * (33 always suffice); *protocol is 0 (T=0) or 1 (T=1). Errors:
 * TK_ERR_NO_CARD, TK_ERR_UNRESPONSIVE (mute at every voltage, or no
 * parsable ATR), TK_ERR_NOT_SUPPORTED (no protocol both card and reader
 * speak), transport errors. */
int tk_ccid_power_on(tk_ccid_slot_t *s, uint8_t *atr, size_t cap, size_t *atr_len, int *protocol);
int tk_ccid_power_off(tk_ccid_slot_t *s);
/* The ATR and protocol of a powered slot (as tk_ccid_power_on gave them).
 * Errors: TK_ERR_STATE (not powered), TK_ERR_BUFFER_TOO_SMALL. */
int tk_ccid_slot_atr(tk_ccid_slot_t *s, uint8_t *atr, size_t cap, size_t *atr_len, int *protocol);
/* Power off, then on: the ICC power cycle of the recovery ladder. */
int tk_ccid_power_cycle(tk_ccid_slot_t *s, uint8_t *atr, size_t cap, size_t *atr_len,
                        int *protocol);

/* What a powered slot can carry. */
typedef struct tk_ccid_caps {
	enum tk_ccid_level level;
	int protocol;       /* 0, 1, or -1 when not powered */
	bool extended_apdu; /* extended APDUs pass (the card must still accept them) */
	size_t max_cmd;     /* largest command APDU */
	size_t max_resp;    /* largest response APDU, SW included */
	bool pin_pad_verify;
	bool pin_pad_modify;
} tk_ccid_caps_t;
void tk_ccid_caps(const tk_ccid_slot_t *s, tk_ccid_caps_t *caps);

/* Exchange one command APDU; the exchange level is handled here: extended
 * APDU level (XfrBlock chaining by wLevelParameter when a message is too
 * small), short APDU level (extended APDUs refused), TPDU with T=1 (block
 * protocol) or T=0 (case mapping, GET RESPONSE, wrong Le). The response
 * includes SW1 SW2. Errors: TK_ERR_INVALID_ARG, TK_ERR_STATE (not powered),
 * TK_ERR_NOT_SUPPORTED (an extended APDU the level cannot carry),
 * TK_ERR_BUFFER_TOO_SMALL, TK_ERR_CARD_RESET (the card lost power),
 * TK_ERR_NO_CARD, TK_ERR_UNRESPONSIVE, TK_ERR_COMM, TK_ERR_PROTOCOL,
 * transport errors. */
int tk_ccid_transmit(tk_ccid_slot_t *s, const uint8_t *cmd, size_t len, uint8_t *resp, size_t cap,
                     size_t *rlen);

/* PIN entry on the reader's pad (PC_to_RDR_Secure, verify or modify): the
 * reader puts the digits into op->apdu and answers with the card's response
 * (SW included). Errors: TK_ERR_NOT_SUPPORTED (no such pad function, or a
 * TPDU reader with T=0), TK_ERR_TIMEOUT (nobody typed), TK_ERR_CANCELLED
 * (cancel pressed), others as tk_ccid_transmit. */
int tk_ccid_secure(tk_ccid_slot_t *s, const tk_ccid_pin_op_t *op, uint8_t *resp, size_t cap,
                   size_t *rlen);

/* PC_to_RDR_Escape (vendor commands). Errors as tk_ccid_transmit. */
int tk_ccid_escape(tk_ccid_slot_t *s, const uint8_t *in, size_t len, uint8_t *out, size_t cap,
                   size_t *olen);

/* --- events (interrupt-in) ------------------------------------------------ */

/* Wait up to timeout_ms for one interrupt message. TK_OK with *ev filled;
 * TK_ERR_TIMEOUT; TK_ERR_NOT_SUPPORTED (the reader has no interrupt
 * endpoint: poll tk_ccid_slot_status); TK_ERR_READER_GONE; TK_ERR_IO. A
 * message that does not parse is skipped (TK_ERR_TIMEOUT if nothing else
 * came). Safe to call from one thread while another exchanges APDUs. */
int tk_ccid_wait_event(tk_ccid_dev_t *d, int timeout_ms, tk_ccid_intr_t *ev);

/* --- recovery primitives ---------------------------------------------------- */

enum tk_ccid_fault {
	TK_CCID_FAULT_NONE = 0,
	TK_CCID_FAULT_TIMEOUT,  /* a transfer ran out of time */
	TK_CCID_FAULT_STALL,    /* an endpoint is halted */
	TK_CCID_FAULT_GARBAGE,  /* the reader answered something that is not CCID */
	TK_CCID_FAULT_SEQUENCE, /* only replies to other commands came */
	TK_CCID_FAULT_GONE,     /* the device disappeared */
	TK_CCID_FAULT_OTHER,
};
/* What went wrong at the USB level in the last failed call (NONE after a
 * success). */
enum tk_ccid_fault tk_ccid_last_fault(const tk_ccid_dev_t *d);
const char *tk_ccid_fault_name(enum tk_ccid_fault f);

/* CCID ABORT (5.3.1): the class request on the control pipe with the slot
 * and a new sequence number, then PC_to_RDR_Abort with the same number, and
 * its RDR_to_PC_SlotStatus (late replies to the aborted command are
 * discarded). Errors: transport errors; TK_ERR_TIMEOUT when the reader
 * ignores the abort too (the next step is a USB reset). */
int tk_ccid_abort(tk_ccid_slot_t *s);
/* CLEAR_FEATURE(ENDPOINT_HALT) on the bulk-out and bulk-in endpoints (and
 * the interrupt one), then drain what the reader had queued. */
int tk_ccid_clear_halt(tk_ccid_dev_t *d);
/* libusb_reset_device: a USB port reset. Every slot of the reader loses
 * power. TK_ERR_READER_GONE when the device came back as a new device
 * (tk_ccid_reopen it). */
int tk_ccid_reset_device(tk_ccid_dev_t *d);
/* Close the handle and find the same reader again (same vendor, product
 * and port path; serial number when it has one), waiting up to timeout_ms
 * for it to appear: after an unplug and replug, or a reset that made it
 * re-enumerate. Slots restart unpowered. Errors: TK_ERR_READER_GONE (not
 * back in time), errors of tk_ccid_open. */
int tk_ccid_reopen(tk_ccid_dev_t *d, int timeout_ms);

/* Counters since open (diagnostics, tests). */
typedef struct tk_ccid_stats {
	uint64_t commands;
	uint64_t time_extensions;
	uint64_t stale_frames;
	uint64_t split_replies;
	uint64_t garbage;
	uint64_t t1_retransmits;
	uint64_t t1_resynchs;
	uint64_t t1_wtx;
	uint64_t aborts;
	uint64_t clear_halts;
	uint64_t resets;
	uint64_t reopens;
	uint64_t pps;
} tk_ccid_stats_t;
void tk_ccid_get_stats(tk_ccid_dev_t *d, tk_ccid_stats_t *st);

/* libusb error -> tk_err. */
int tk_ccid_err_from_libusb(int rv);

#endif
