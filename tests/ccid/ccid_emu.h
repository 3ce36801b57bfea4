/* An emulated USB CCID reader for tests: the device side of USB CCID 1.1
 * under umockdev, reached through the real libusb (see
 * /work/shared/design/CCID-TESTING.md).
 *
 * ccid_emu_new() creates a umockdev testbed (before anyone calls
 * libusb_init); ccid_emu_add() puts a USB device into it with real
 * descriptors (one or two CCID interfaces, one or two slots each) and
 * answers the usbfs ioctls libusb sends to its node: claims, URBs on the
 * control, bulk and interrupt endpoints, CLEAR_HALT, RESET. Behind the
 * interfaces sits the reader: the CCID messages, the exchange level (short
 * or extended APDU, TPDU with T=1 or T=0), the PIN pad, and faults to
 * inject. The card in a slot is whatever the test plugs in (ccid_emu_card_t).
 * Other processes (pcscd, scdaemon) that run with libumockdev-preload and
 * the testbed's $UMOCKDEV_DIR see the same device.
 *
 * Everything the host sends is counted (ccid_emu_counts), so tests can
 * assert which recovery step ran. All functions are thread-safe. */
#ifndef TK_CCID_EMU_H
#define TK_CCID_EMU_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct ccid_emu ccid_emu_t;
typedef struct ccid_emu_dev ccid_emu_dev_t;

/* The card in a slot. atr may be overridden per slot (ccid_emu_set_atr). */
typedef struct ccid_emu_card {
	void *ctx;
	size_t (*atr)(void *ctx, uint8_t *atr, size_t cap);
	void (*power_on)(void *ctx);
	void (*power_off)(void *ctx);
	/* One APDU in, the response (data + SW) out; returns its length. */
	size_t (*process)(void *ctx, const uint8_t *cmd, size_t len, uint8_t *resp, size_t cap);
} ccid_emu_card_t;

enum ccid_emu_level {
	EMU_EXT_APDU = 0,
	EMU_SHORT_APDU,
	EMU_TPDU,
};

typedef struct ccid_emu_reader_cfg {
	enum ccid_emu_level level;
	unsigned nslots;        /* 1 (default) or 2 */
	uint32_t max_msg_len;   /* 0: 271 for APDU levels and TPDU */
	uint32_t auto_features; /* dwFeatures bits other than the level; 0: a
	                         * typical set for the level (TPDU: none of
	                         * the automatic parameter/PPS/IFSD ones) */
	uint8_t pin_support;    /* bPINSupport */
	bool vendor_class;      /* interface class FF instead of 0B */
	bool no_interrupt;      /* no interrupt-in endpoint */
	bool desc_after_eps;    /* class descriptor after the endpoints */
} ccid_emu_reader_cfg_t;

typedef struct ccid_emu_dev_cfg {
	uint16_t vid, pid, release;
	const char *manufacturer, *product, *serial;
	unsigned ninterfaces; /* 1 or 2 */
	ccid_emu_reader_cfg_t iface[2];
} ccid_emu_dev_cfg_t;

/* Fault injection on one interface. Counters count down as they act. */
typedef struct ccid_emu_faults {
	bool stall_out;       /* bulk-out halted until CLEAR_HALT on it */
	bool stall_in;        /* bulk-in halted until CLEAR_HALT on it */
	unsigned mute;        /* the next N commands get no reply at all */
	bool wedge_abort;     /* nothing answered until an ABORT (or a reset) */
	bool wedge_reset;     /* nothing answered, ABORT neither, until a USB reset */
	unsigned garbage;     /* the next N replies are bytes that are no CCID message */
	unsigned stale;       /* the next reply comes after N frames with other bSeq */
	unsigned time_ext;    /* the next reply comes after N time extensions */
	unsigned time_ext_ms; /* ... spaced this far apart */
	unsigned split;       /* replies in pieces of this many bytes (0: whole) */
	unsigned delay_ms;    /* every reply this late */
	unsigned icc_mute;    /* the next N XfrBlocks: bError ICC_MUTE */
	bool mute_card;       /* XfrBlocks answered ICC_MUTE until the card is powered again */
	unsigned t1_bad_edc;  /* the next N T=1 blocks from the card: wrong EDC */
	unsigned t1_wtx;      /* the next T=1 answer comes after N S(WTX requests) */
	unsigned t1_ifs;      /* the card asks for IFSC = this in its next answer */
	bool reject_pps;      /* the card answers PPS with its defaults */
} ccid_emu_faults_t;

typedef struct ccid_emu_counts {
	unsigned msgs[256];      /* bulk-out messages by bMessageType */
	unsigned abort_requests; /* ABORT class requests on the control pipe */
	unsigned aborts_done;    /* PC_to_RDR_Abort that matched one */
	unsigned clear_halt_out, clear_halt_in, clear_halt_intr;
	unsigned resets; /* USBDEVFS_RESET */
	unsigned claims;
	unsigned power_on, power_off; /* card power, all slots */
	unsigned apdus;               /* APDUs the cards processed */
	unsigned ins[256];            /* ... by INS */
	unsigned cla_chained;         /* ... with CLA bit 5 set (command chaining) */
	unsigned xfr_chained;         /* XfrBlocks with a wLevelParameter other than 0 */
	unsigned resp_parts;          /* response parts asked for with wLevelParameter 10h */
	unsigned pps;
	unsigned set_params;
	unsigned t1_blocks;   /* T=1 blocks from the host */
	unsigned t1_r_blocks; /* ... of them R-blocks */
	unsigned t1_ifs_req;  /* ... S(IFS request) */
	unsigned t1_resynch;  /* ... S(RESYNCH request) */
	unsigned t1_wtx_resp; /* ... S(WTX response) */
	unsigned t0_get_response;
	unsigned secure;
	unsigned modify_secure; /* ... of them PIN modifications */
	unsigned pin_entries;   /* PINs the pad's user was asked for */
	unsigned mute_dropped;  /* commands a fault swallowed */
	unsigned stale_sent, time_ext_sent, garbage_sent;
} ccid_emu_counts_t;

/* The PIN pad's user. */
enum ccid_emu_pin_action { EMU_PIN_ENTER = 0, EMU_PIN_CANCEL, EMU_PIN_TIMEOUT };

/* Create the testbed. Returns NULL (and prints why) on failure. */
ccid_emu_t *ccid_emu_new(void);
/* Remove every device and the testbed. Accepts NULL. */
void ccid_emu_free(ccid_emu_t **ep);
/* The testbed's root ($UMOCKDEV_DIR for other processes). */
const char *ccid_emu_root(const ccid_emu_t *e);

/* Add a device; NULL on failure. Sends the "add" uevents. */
ccid_emu_dev_t *ccid_emu_add(ccid_emu_t *e, const ccid_emu_dev_cfg_t *cfg);
/* Its bus number and current device number. */
void ccid_emu_address(const ccid_emu_dev_t *d, unsigned *bus, unsigned *devnum);

/* Put a card into a slot (copied; card->ctx must outlive it) or take it
 * out. notify: send NotifySlotChange on the interrupt endpoint. */
void ccid_emu_insert(ccid_emu_dev_t *d, unsigned iface, unsigned slot, const ccid_emu_card_t *card,
                     bool notify);
void ccid_emu_remove_card(ccid_emu_dev_t *d, unsigned iface, unsigned slot, bool notify);
/* The ATR the slot answers with instead of the card's (len 0: the card's). */
void ccid_emu_set_atr(ccid_emu_dev_t *d, unsigned iface, unsigned slot, const uint8_t *atr,
                      size_t len);
/* Replace the interface's faults. */
void ccid_emu_set_faults(ccid_emu_dev_t *d, unsigned iface, const ccid_emu_faults_t *f);
/* RDR_to_PC_HardwareError on the interrupt endpoint. */
void ccid_emu_hw_error(ccid_emu_dev_t *d, unsigned iface, unsigned slot, uint8_t code);
/* What the PIN pad's user does next: enter pin (and new_pin for a change;
 * the confirmation repeats new_pin), cancel, or let the entry time out. */
void ccid_emu_pin_input(ccid_emu_dev_t *d, unsigned iface, enum ccid_emu_pin_action action,
                        const char *pin, const char *new_pin);
/* For the next changes: what the user types when the pad asks for the new
 * PIN again (bConfirmPIN bit 0); NULL or "": new_pin again. An entry that
 * differs ends the change as a cancel (CCID has no error of its own for
 * it) and nothing reaches the card. ccid_emu_pin_input resets it. */
void ccid_emu_pin_confirm(ccid_emu_dev_t *d, unsigned iface, const char *confirm);
/* The last APDU the PIN pad built (PIN included), for checks. */
size_t ccid_emu_last_pin_apdu(ccid_emu_dev_t *d, unsigned iface, uint8_t *out, size_t cap);

void ccid_emu_counts(ccid_emu_dev_t *d, unsigned iface, ccid_emu_counts_t *out);
void ccid_emu_reset_counts(ccid_emu_dev_t *d, unsigned iface);

/* Unplug: the device node goes away (ioctls on it fail with ENODEV), the
 * "remove" uevents are sent. Replug: it comes back at the same port with a
 * new device number, cards and faults kept, state as after power-up. */
void ccid_emu_unplug(ccid_emu_dev_t *d);
void ccid_emu_replug(ccid_emu_dev_t *d);

/* Run the calling program under libumockdev-preload: when it is not
 * preloaded yet, re-exec argv with it appended to LD_PRELOAD (after an
 * ASan runtime that may be there). Returns only when preloaded; exits 77
 * when umockdev is not installed. Call first in main(). */
void ccid_emu_reexec(int argc, char **argv);

#endif
