/* tokenkit: Answer-to-Reset (ISO/IEC 7816-3, 8.2; historical bytes per
 * ISO/IEC 7816-4, 8.1.1).
 *
 * tk_atr_parse() checks the structure of the ATR (TS, T0, the interface bytes
 * chained by TDi, K historical bytes, TCK) and decodes the parameters that
 * matter to a host. The historical bytes are decoded on a best-effort basis:
 * a malformed historical part leaves hist.valid false but does not fail the
 * parse, since the transmission parameters are still usable. */
#ifndef TOKENKIT_ATR_H
#define TOKENKIT_ATR_H

#include <tokenkit/common.h>

#define TK_ATR_MAX_LEN 33
/* Interface byte groups: TA(i)..TD(i) for i = 1..TK_ATR_MAX_LEVELS. An ATR of
 * 33 bytes can chain at most 31 TD bytes. */
#define TK_ATR_MAX_LEVELS 32

/* Bits of tk_atr_t.present[i]. */
#define TK_ATR_TA 0x01
#define TK_ATR_TB 0x02
#define TK_ATR_TC 0x04
#define TK_ATR_TD 0x08

/* Bits of tk_atr_t.protocols: 1u << T. */
#define TK_ATR_PROTO_T0 (1u << 0)
#define TK_ATR_PROTO_T1 (1u << 1)
#define TK_ATR_PROTO_T15 (1u << 15)

/* Compact-TLV tags of the historical bytes (tag 'x' is BER-TLV '4x'). */
enum tk_atr_ctag {
	TK_ATR_CTAG_COUNTRY = 0x1,      /* country code, national data */
	TK_ATR_CTAG_ISSUER_ID = 0x2,    /* issuer identification number */
	TK_ATR_CTAG_SERVICE_DATA = 0x3, /* card service data */
	TK_ATR_CTAG_INITIAL_ACCESS = 0x4,
	TK_ATR_CTAG_ISSUER_DATA = 0x5, /* card issuer's data */
	TK_ATR_CTAG_PRE_ISSUING = 0x6,
	TK_ATR_CTAG_CAPABILITIES = 0x7, /* card capabilities */
	TK_ATR_CTAG_STATUS = 0x8,       /* status indicator */
	TK_ATR_CTAG_AID = 0xF,          /* application identifier */
};

/* Card capabilities, third software function table (ISO/IEC 7816-4). */
#define TK_ATR_CAP3_CHAINING 0x80
#define TK_ATR_CAP3_EXTENDED 0x40

typedef struct tk_atr_hist {
	uint8_t category; /* first historical byte (category indicator) */
	bool valid;       /* category 00, 10 or 80 and well formed */
	/* Compact-TLV objects by tag nibble (category 00 and 80). */
	struct {
		bool present;
		uint8_t len;
		uint8_t v[15];
	} obj[16];
	bool has_status; /* status indicator present (tag 8, or category 00) */
	bool has_lcs;
	uint8_t lcs; /* life cycle status byte */
	bool has_sw;
	uint16_t sw; /* SW1 SW2 of the status indicator */
	bool has_dir_ref;
	uint8_t dir_ref; /* category 10: DIR data reference */
} tk_atr_hist_t;

typedef struct tk_atr {
	uint8_t raw[TK_ATR_MAX_LEN];
	size_t len;
	uint8_t ts;
	bool inverse; /* TS = 3F: inverse convention */
	uint8_t t0;
	/* Interface bytes; index 0 holds TA1 TB1 TC1 TD1. */
	unsigned levels; /* groups present (1 + number of TD bytes) */
	uint8_t present[TK_ATR_MAX_LEVELS];
	uint8_t ta[TK_ATR_MAX_LEVELS], tb[TK_ATR_MAX_LEVELS];
	uint8_t tc[TK_ATR_MAX_LEVELS], td[TK_ATR_MAX_LEVELS];
	uint32_t protocols;      /* offered, 1u << T (T=0 when no TD1) */
	unsigned first_protocol; /* T of TD1, else 0 */
	/* TA1 (or the defaults Fi 372, Di 1, f max 5 MHz). Fi/Di are 0 for
	 * reserved codes. */
	uint8_t fi_code, di_code;
	unsigned fi, di;
	unsigned fmax_khz;
	/* TA2: specific mode. */
	bool specific_mode;
	unsigned specific_protocol;
	bool mode_changeable; /* TA2 bit 8 = 0 */
	bool implicit_params; /* TA2 bit 5 = 1 */
	uint8_t extra_guard;  /* TC1 (N), default 0 */
	uint8_t wi;           /* TC2 for T=0, default 10 */
	/* First TA/TB/TC after T=1 (defaults IFSC 32, CWI 13, BWI 4, LRC). */
	unsigned ifsc;
	uint8_t cwi, bwi;
	bool edc_crc;
	/* First TA after T=15: clock stop (bits 8-7) and classes (bits 6-1). */
	bool has_t15_ta;
	uint8_t clock_stop, classes;
	bool tck_required; /* a protocol other than T=0 is offered */
	bool tck_present;
	uint8_t tck;
	uint8_t hist_len;
	uint8_t hist[15];
	tk_atr_hist_t h;
} tk_atr_t;

/* Parse an ATR. Errors: TK_ERR_INVALID_ARG (NULL), TK_ERR_MALFORMED (TS not
 * 3B/3F, longer than 33 bytes, bytes after the ATR, TD chains beyond the
 * table), TK_ERR_TRUNCATED (fewer bytes than T0/TDi/K announce, missing
 * TCK), TK_ERR_BAD_CHECKSUM (TCK present and the XOR of T0..TCK is not 0).
 * *out is cleared first. */
TK_EXPORT int tk_atr_parse(const uint8_t *atr, size_t len, tk_atr_t *out);

/* Multi-line human-readable description (the `tokenkit readers --atr`
 * output). Always NUL-terminates when cap > 0. Errors: TK_ERR_INVALID_ARG,
 * TK_ERR_BUFFER_TOO_SMALL (text cut short). */
TK_EXPORT int tk_atr_describe(const tk_atr_t *a, char *out, size_t cap);

/* True when the card capabilities in the historical bytes announce extended
 * Lc and Le fields. */
TK_EXPORT bool tk_atr_extended_length(const tk_atr_t *a);
/* True when they announce command chaining. */
TK_EXPORT bool tk_atr_command_chaining(const tk_atr_t *a);

#endif
