/* tokenkit CCID: the class descriptor and the USB configuration walk
 * (USB CCID 1.1, 5.1), and the reader quirk table (STYLE.md rule 16).
 *
 * Both parsers work on the bytes a device sends: the 54-byte CCID class
 * descriptor, and the whole configuration descriptor (wTotalLength bytes)
 * in which the walk finds CCID interfaces. Working on raw bytes lets one
 * walk handle readers that place the class descriptor after their endpoint
 * descriptors instead of before them, and keeps both parsers fuzzable. */
#ifndef TK_CCID_DESCRIPTOR_H
#define TK_CCID_DESCRIPTOR_H

#include <tokenkit/common.h>

#define TK_CCID_DESC_LEN 54
#define TK_CCID_DESC_TYPE 0x21
#define TK_CCID_CLASS 0x0B
#define TK_CCID_VENDOR_CLASS 0xFF
/* bMaxSlotIndex is a byte, but no reader has more than a handful of slots
 * and NotifySlotChange grows with it: more is refused as malformed. */
#define TK_CCID_MAX_SLOTS 16

/* dwFeatures (5.1, Table 5.1-1). */
#define TK_CCID_F_AUTO_PARAM_ATR 0x00000002u  /* parameters from the ATR */
#define TK_CCID_F_AUTO_ACTIVATION 0x00000004u /* powers the card on insertion */
#define TK_CCID_F_AUTO_VOLTAGE 0x00000008u
#define TK_CCID_F_AUTO_CLOCK 0x00000010u
#define TK_CCID_F_AUTO_BAUD 0x00000020u
#define TK_CCID_F_AUTO_NEGOTIATION 0x00000040u /* warm/cold resets or PPS of its own */
#define TK_CCID_F_AUTO_PPS 0x00000080u         /* PPS according to the active parameters */
#define TK_CCID_F_CLOCK_STOP 0x00000100u
#define TK_CCID_F_NAD 0x00000200u       /* NAD other than 00 accepted (T=1) */
#define TK_CCID_F_AUTO_IFSD 0x00000400u /* IFSD exchange as first T=1 exchange */
#define TK_CCID_F_LEVEL_TPDU 0x00010000u
#define TK_CCID_F_LEVEL_SHORT_APDU 0x00020000u
#define TK_CCID_F_LEVEL_EXT_APDU 0x00040000u
#define TK_CCID_F_LEVEL_MASK 0x00070000u
#define TK_CCID_F_USB_WAKEUP 0x00100000u

/* bVoltageSupport */
#define TK_CCID_VOLT_5V 0x01
#define TK_CCID_VOLT_3V 0x02
#define TK_CCID_VOLT_1V8 0x04

/* dwProtocols */
#define TK_CCID_PROTO_T0 0x0001u
#define TK_CCID_PROTO_T1 0x0002u

/* bPINSupport */
#define TK_CCID_PIN_VERIFY 0x01
#define TK_CCID_PIN_MODIFY 0x02

/* Exchange level, from dwFeatures. */
enum tk_ccid_level {
	TK_CCID_LEVEL_CHARACTER = 0,
	TK_CCID_LEVEL_TPDU = 1,
	TK_CCID_LEVEL_SHORT_APDU = 2,
	TK_CCID_LEVEL_EXT_APDU = 3,
};

typedef struct tk_ccid_desc {
	uint16_t bcd_ccid;
	uint8_t max_slot_index;
	uint8_t voltage_support;
	uint32_t protocols;
	uint32_t default_clock_khz;
	uint32_t max_clock_khz;
	uint8_t num_clocks;
	uint32_t data_rate_bps;
	uint32_t max_data_rate_bps;
	uint8_t num_data_rates;
	uint32_t max_ifsd;
	uint32_t synch_protocols;
	uint32_t mechanical;
	uint32_t features;
	uint32_t max_msg_len; /* dwMaxCCIDMessageLength: header (10) + data */
	uint8_t class_get_response;
	uint8_t class_envelope;
	uint16_t lcd_layout;
	uint8_t pin_support;
	uint8_t max_busy_slots;
} tk_ccid_desc_t;

/* Smallest dwMaxCCIDMessageLength we accept. 5.1 asks for at least a
 * header and a short APDU (271) at the extended APDU level, otherwise only
 * the bulk-out packet size; 64 is the full-speed bulk packet size, and
 * below it even a T=1 block of useful size would not fit. */
#define TK_CCID_MIN_MSG_LEN 64
/* What a header and a short APDU take: the minimum at the APDU levels. */
#define TK_CCID_SHORT_APDU_MSG_LEN (10 + 261)
/* Largest we use (a header and an extended APDU with both length fields);
 * a larger announced value is clamped to this. */
#define TK_CCID_MAX_MSG_LEN (10 + 65544)

/* Parse a CCID class descriptor (bLength at p[0]). any_type accepts a
 * descriptor type other than 0x21: readers made before the specification
 * was final, on a vendor-specific interface, are known by their length
 * alone (the CCID drivers of pcsc-lite and GnuPG check no type either).
 * Errors:
 * TK_ERR_INVALID_ARG, TK_ERR_TRUNCATED (fewer than 54 bytes, or bLength
 * beyond len), TK_ERR_MALFORMED (bLength below 54, wrong type, bMaxSlotIndex
 * of TK_CCID_MAX_SLOTS or more, no protocol, more than one exchange level,
 * dwMaxCCIDMessageLength below TK_CCID_MIN_MSG_LEN, or below
 * TK_CCID_SHORT_APDU_MSG_LEN at an APDU level). *out is cleared
 * first. */
int tk_ccid_desc_parse(const uint8_t *p, size_t len, bool any_type, tk_ccid_desc_t *out);

/* The exchange level of a parsed descriptor. */
enum tk_ccid_level tk_ccid_desc_level(const tk_ccid_desc_t *d);
/* "TPDU", "short APDU", "extended APDU", "character". */
const char *tk_ccid_level_name(enum tk_ccid_level level);

/* Human-readable description (several lines) for diagnostics. Always
 * NUL-terminates when cap > 0. Errors: TK_ERR_INVALID_ARG,
 * TK_ERR_BUFFER_TOO_SMALL (cut short). */
int tk_ccid_desc_describe(const tk_ccid_desc_t *d, char *out, size_t cap);

/* --- quirks ------------------------------------------------------------- */

/* The USB identity quirks are looked up by. */
typedef struct tk_ccid_usb_id {
	uint16_t vid, pid;
	uint16_t release; /* bcdDevice */
} tk_ccid_usb_id_t;

/* Quirk bits. */
#define TK_CCID_Q_VENDOR_CLASS 0x0001u /* CCID on a vendor-specific (0xFF) interface */
#define TK_CCID_Q_BAD_FIRMWARE 0x0002u /* this release is known to misbehave */

/* The quirks of a device (0 when none). */
uint32_t tk_ccid_quirks(const tk_ccid_usb_id_t *id);
/* A short text for each quirk bit set in q (diagnostics), "" for 0. */
const char *tk_ccid_quirk_name(uint32_t bit);

/* --- configuration walk -------------------------------------------------- */

/* One CCID interface of a configuration: one reader. */
typedef struct tk_ccid_iface {
	uint8_t number;      /* bInterfaceNumber */
	uint8_t alt;         /* bAlternateSetting */
	uint8_t iface_class; /* 0x0B, or 0xFF with TK_CCID_Q_VENDOR_CLASS */
	uint8_t iface_string;
	uint8_t ep_bulk_out, ep_bulk_in, ep_intr_in; /* addresses; ep_intr_in 0 if none */
	uint16_t bulk_out_mps, bulk_in_mps, intr_mps;
	uint32_t quirks;
	tk_ccid_desc_t desc;
} tk_ccid_iface_t;

/* Walk a configuration descriptor (as the device sends it, wTotalLength
 * bytes) and list its CCID interfaces: interface class 0x0B, or 0xFF on a
 * device whose quirks say so, that carry a valid class descriptor, one
 * bulk-out and one bulk-in endpoint (an interrupt-in endpoint is optional).
 * The class descriptor may sit anywhere between the interface descriptor
 * and the next one. Only the first alternate setting of an interface that
 * qualifies is listed. Interfaces that look like CCID but are unusable
 * (bad class descriptor, missing endpoints) are skipped, not fatal: a
 * composite device may still have good ones. Up to cap entries are
 * written; *count gets how many there are in total. Errors:
 * TK_ERR_INVALID_ARG, TK_ERR_TRUNCATED / TK_ERR_MALFORMED (the descriptor
 * chain itself is broken: bLength 0 or 1, a descriptor running past the
 * end, not a configuration descriptor first). *count is 0 on error. */
int tk_ccid_config_parse(const uint8_t *cfg, size_t len, const tk_ccid_usb_id_t *id,
                         tk_ccid_iface_t *out, size_t cap, size_t *count);

#endif
