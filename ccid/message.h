/* tokenkit CCID: the message codec (USB CCID 1.1, 6).
 *
 * Bulk-out commands (PC_to_RDR_*) are encoded from a small struct; bulk-in
 * replies (RDR_to_PC_*) and interrupt-in messages (6.3) are parsed into
 * structs whose data points into the caller's buffer. The reply's bStatus
 * and bError become a tk_err through one table (tk_ccid_reply_err). The
 * PIN-pad structures of PC_to_RDR_Secure (6.1.11) are encoded and parsed
 * here too (the emulated reader in tests/ccid parses what we encode). */
#ifndef TK_CCID_MESSAGE_H
#define TK_CCID_MESSAGE_H

#include <tokenkit/common.h>

#define TK_CCID_HDR_LEN 10

enum tk_ccid_msg_type {
	/* interrupt-in */
	TK_CCID_RDR_NOTIFY_SLOT_CHANGE = 0x50,
	TK_CCID_RDR_HARDWARE_ERROR = 0x51,
	/* bulk-out */
	TK_CCID_PC_SET_PARAMETERS = 0x61,
	TK_CCID_PC_ICC_POWER_ON = 0x62,
	TK_CCID_PC_ICC_POWER_OFF = 0x63,
	TK_CCID_PC_GET_SLOT_STATUS = 0x65,
	TK_CCID_PC_SECURE = 0x69,
	TK_CCID_PC_T0APDU = 0x6A,
	TK_CCID_PC_ESCAPE = 0x6B,
	TK_CCID_PC_GET_PARAMETERS = 0x6C,
	TK_CCID_PC_RESET_PARAMETERS = 0x6D,
	TK_CCID_PC_ICC_CLOCK = 0x6E,
	TK_CCID_PC_XFR_BLOCK = 0x6F,
	TK_CCID_PC_MECHANICAL = 0x71,
	TK_CCID_PC_ABORT = 0x72,
	TK_CCID_PC_SET_DATA_RATE = 0x73,
	/* bulk-in */
	TK_CCID_RDR_DATA_BLOCK = 0x80,
	TK_CCID_RDR_SLOT_STATUS = 0x81,
	TK_CCID_RDR_PARAMETERS = 0x82,
	TK_CCID_RDR_ESCAPE = 0x83,
	TK_CCID_RDR_DATA_RATE = 0x84,
};

/* Class-specific control requests (5.3). */
#define TK_CCID_REQ_ABORT 0x01
#define TK_CCID_REQ_GET_CLOCK_FREQUENCIES 0x02
#define TK_CCID_REQ_GET_DATA_RATES 0x03

/* bStatus: bmICCStatus (bits 1-0) and bmCommandStatus (bits 7-6). */
#define TK_CCID_ICC_ACTIVE 0
#define TK_CCID_ICC_INACTIVE 1
#define TK_CCID_ICC_ABSENT 2
#define TK_CCID_CMD_OK 0
#define TK_CCID_CMD_FAILED 1
#define TK_CCID_CMD_TIME_EXTENSION 2
#define TK_CCID_ICC_STATUS(s) ((s)&0x03)
#define TK_CCID_CMD_STATUS(s) (((s) >> 6) & 0x03)

/* bError values (6.2.6). */
#define TK_CCID_ERR_CMD_ABORTED 0xFF
#define TK_CCID_ERR_ICC_MUTE 0xFE
#define TK_CCID_ERR_XFR_PARITY 0xFD
#define TK_CCID_ERR_XFR_OVERRUN 0xFC
#define TK_CCID_ERR_HW_ERROR 0xFB
#define TK_CCID_ERR_BAD_ATR_TS 0xF8
#define TK_CCID_ERR_BAD_ATR_TCK 0xF7
#define TK_CCID_ERR_PROTOCOL_NOT_SUPPORTED 0xF6
#define TK_CCID_ERR_CLASS_NOT_SUPPORTED 0xF5
#define TK_CCID_ERR_PROCEDURE_BYTE_CONFLICT 0xF4
#define TK_CCID_ERR_DEACTIVATED_PROTOCOL 0xF3
#define TK_CCID_ERR_BUSY_AUTO_SEQUENCE 0xF2
#define TK_CCID_ERR_PIN_TIMEOUT 0xF0
#define TK_CCID_ERR_PIN_CANCELLED 0xEF
#define TK_CCID_ERR_CMD_SLOT_BUSY 0xE0
#define TK_CCID_ERR_CMD_NOT_SUPPORTED 0x00

/* bChainParameter of RDR_to_PC_DataBlock and wLevelParameter of
 * PC_to_RDR_XfrBlock at the extended APDU level (6.1.4, 6.2.1). */
#define TK_CCID_CHAIN_COMPLETE 0x00 /* the whole APDU / response */
#define TK_CCID_CHAIN_BEGIN 0x01    /* begins, more follows */
#define TK_CCID_CHAIN_END 0x02      /* continues and ends */
#define TK_CCID_CHAIN_MIDDLE 0x03   /* continues, more follows */
#define TK_CCID_CHAIN_CONTINUE 0x10 /* empty: send / next part please */

/* A command. p holds bytes 7-9 (bBWI + wLevelParameter, bPowerSelect,
 * bProtocolNum, ... as the message type defines them). */
typedef struct tk_ccid_cmd {
	uint8_t type;
	uint8_t slot;
	uint8_t seq;
	uint8_t p[3];
	const uint8_t *data;
	size_t len;
} tk_ccid_cmd_t;

/* Encode c into out. Errors: TK_ERR_INVALID_ARG (not a PC_to_RDR type, data
 * NULL with len > 0), TK_ERR_BUFFER_TOO_SMALL. *out_len is 0 on error. */
int tk_ccid_cmd_encode(const tk_ccid_cmd_t *c, uint8_t *out, size_t cap, size_t *out_len);
/* Parse a command (the emulated reader's side). data points into msg.
 * Errors: TK_ERR_TRUNCATED (header or dwLength bytes missing),
 * TK_ERR_MALFORMED (not a PC_to_RDR type, bytes after dwLength). */
int tk_ccid_cmd_parse(const uint8_t *msg, size_t len, tk_ccid_cmd_t *out);

/* A bulk-in reply. */
typedef struct tk_ccid_reply {
	uint8_t type;
	uint8_t slot;
	uint8_t seq;
	uint8_t status; /* bStatus */
	uint8_t error;  /* bError */
	uint8_t param;  /* bChainParameter / bClockStatus / bProtocolNum */
	const uint8_t *data;
	size_t len;
} tk_ccid_reply_t;

/* The size of the whole reply whose first bytes are in msg (reassembly of
 * replies split over several bulk-in transfers). Errors: TK_ERR_TRUNCATED
 * (fewer than 10 bytes: not known yet), TK_ERR_MALFORMED (not an RDR_to_PC
 * type), TK_ERR_TOO_LONG (10 + dwLength beyond max_msg). */
int tk_ccid_reply_size(const uint8_t *msg, size_t len, size_t max_msg, size_t *size);
/* Parse a complete reply. Errors: TK_ERR_TRUNCATED, TK_ERR_MALFORMED (not
 * an RDR_to_PC type, len beyond 10 + dwLength). */
int tk_ccid_reply_parse(const uint8_t *msg, size_t len, tk_ccid_reply_t *out);
/* Encode a reply (the emulated reader's side). */
int tk_ccid_reply_encode(const tk_ccid_reply_t *r, uint8_t *out, size_t cap, size_t *out_len);

/* The reply's outcome as a tk_err, from bStatus and bError through one
 * table: TK_OK when the command was processed; a failed command by its
 * bError (ICC_MUTE: TK_ERR_UNRESPONSIVE, CMD_ABORTED: TK_ERR_CANCELLED,
 * PIN_TIMEOUT: TK_ERR_TIMEOUT, PIN_CANCELLED: TK_ERR_CANCELLED, slot busy:
 * TK_ERR_BUSY, parity/overrun: TK_ERR_COMM, hardware: TK_ERR_IO, command
 * or protocol not supported: TK_ERR_NOT_SUPPORTED, bad parameter offset:
 * TK_ERR_INVALID_ARG), except that an absent card is TK_ERR_NO_CARD and a
 * card that is not powered (when a transmit failed) TK_ERR_CARD_RESET. A
 * time extension is TK_ERR_BUSY (the transport waits for the real reply
 * before asking). */
int tk_ccid_reply_err(const tk_ccid_reply_t *r);
/* A name for a bError value ("ICC_MUTE", "bad parameter", ...). */
const char *tk_ccid_error_name(uint8_t error);
/* A name for a message type ("PC_to_RDR_XfrBlock", ...), "unknown" else. */
const char *tk_ccid_msg_name(uint8_t type);

/* --- protocol data structures (6.1.7, SetParameters / Parameters) ----- */

typedef struct tk_ccid_params {
	uint8_t protocol;   /* 0 or 1 */
	uint8_t fidi;       /* bmFindexDindex (TA1) */
	uint8_t tcckst;     /* bmTCCKST0 / bmTCCKST1 */
	uint8_t guard;      /* bGuardTimeT0 / T1 (TC1) */
	uint8_t waiting;    /* bWaitingIntegerT0 (WI) / bmWaitingIntegersT1 (BWI<<4 | CWI) */
	uint8_t clock_stop; /* bClockStop */
	uint8_t ifsc;       /* T=1 only */
	uint8_t nad;        /* T=1 only */
} tk_ccid_params_t;

/* Encode the abProtocolDataStructure (5 bytes for T=0, 7 for T=1).
 * Errors: TK_ERR_INVALID_ARG (protocol not 0 or 1), TK_ERR_BUFFER_TOO_SMALL. */
int tk_ccid_params_encode(const tk_ccid_params_t *p, uint8_t *out, size_t cap, size_t *out_len);
/* Parse one (from RDR_to_PC_Parameters, bProtocolNum as protocol). Errors:
 * TK_ERR_INVALID_ARG, TK_ERR_TRUNCATED, TK_ERR_MALFORMED (protocol not 0
 * or 1, trailing bytes). */
int tk_ccid_params_parse(uint8_t protocol, const uint8_t *data, size_t len, tk_ccid_params_t *out);

/* --- interrupt-in messages (6.3) ---------------------------------------- */

typedef struct tk_ccid_intr {
	uint8_t type;
	/* NotifySlotChange: bit n = slot n (up to TK_CCID_MAX_SLOTS). */
	uint16_t present;
	uint16_t changed;
	/* HardwareError */
	uint8_t slot;
	uint8_t seq;
	uint8_t code; /* 01: overcurrent */
} tk_ccid_intr_t;

/* Parse an interrupt message of a reader with nslots slots. A
 * NotifySlotChange carries 2 bits per slot, rounded up to whole bytes;
 * longer messages are accepted (readers pad) but bits beyond nslots are
 * ignored. Errors: TK_ERR_INVALID_ARG (nslots 0 or above TK_CCID_MAX_SLOTS),
 * TK_ERR_TRUNCATED, TK_ERR_MALFORMED (unknown type, HardwareError of the
 * wrong length). */
int tk_ccid_intr_parse(const uint8_t *msg, size_t len, unsigned nslots, tk_ccid_intr_t *out);

/* --- PIN-pad structures (6.1.11) ----------------------------------------- */

#define TK_CCID_PIN_OP_VERIFY 0x00
#define TK_CCID_PIN_OP_MODIFY 0x01

typedef struct tk_ccid_pin_op {
	uint8_t operation;     /* TK_CCID_PIN_OP_VERIFY or _MODIFY */
	uint8_t timeout;       /* bTimeOut, seconds (0: the reader's default) */
	uint8_t format;        /* bmFormatString */
	uint8_t block;         /* bmPINBlockString */
	uint8_t length_format; /* bmPINLengthFormat */
	uint8_t offset_old;    /* modify: bInsertionOffsetOld */
	uint8_t offset_new;    /* modify: bInsertionOffsetNew */
	uint8_t min_len;       /* wPINMaxExtraDigit, high byte */
	uint8_t max_len;       /* wPINMaxExtraDigit, low byte */
	uint8_t confirm;       /* modify: bConfirmPIN */
	uint8_t entry_validation;
	uint8_t num_messages; /* bNumberMessage (0xFF: the reader's default) */
	uint16_t lang_id;
	uint8_t msg_index[3]; /* verify uses [0]; modify up to three (6.1.11.7) */
	uint8_t teo_prologue[3];
	const uint8_t *apdu; /* abPINApdu: the command the PIN goes into */
	size_t apdu_len;
} tk_ccid_pin_op_t;

/* bmFormatString fields */
#define TK_CCID_PIN_FMT_BINARY 0x00
#define TK_CCID_PIN_FMT_BCD 0x01
#define TK_CCID_PIN_FMT_ASCII 0x02
#define TK_CCID_PIN_FMT_LEFT 0x00 /* bit 2: 0 left, 1 right justified */
#define TK_CCID_PIN_FMT_RIGHT 0x04
#define TK_CCID_PIN_FMT_POS(n) (((n)&0x0F) << 3) /* position in the APDU data */
#define TK_CCID_PIN_FMT_UNITS_BYTES 0x80

/* Encode the abData of PC_to_RDR_Secure (bPINOperation first). Modify
 * carries bMsgIndex2 only when bNumberMessage is not 0 and bMsgIndex3 only
 * when it is 3 or more (6.1.11.7, as readers implement it). Errors:
 * TK_ERR_INVALID_ARG (other operation, no APDU, APDU of fewer than 4 or
 * more than 261 bytes), TK_ERR_BUFFER_TOO_SMALL. */
int tk_ccid_pin_encode(const tk_ccid_pin_op_t *op, uint8_t *out, size_t cap, size_t *out_len);
/* Parse the abData of PC_to_RDR_Secure; apdu points into data. Errors:
 * TK_ERR_TRUNCATED, TK_ERR_MALFORMED (unknown operation, APDU shorter than
 * 4 bytes), TK_ERR_NOT_SUPPORTED (operations 2-6: the reader's
 * follow-up steps). */
int tk_ccid_pin_parse(const uint8_t *data, size_t len, tk_ccid_pin_op_t *out);

#endif
