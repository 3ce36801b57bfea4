/* tokenkit: PC/SC part 10 (IFDs with secure PIN entry) for the PC/SC
 * backend: the feature list a driver answers to CM_IOCTL_GET_FEATURE_REQUEST,
 * and the PIN_VERIFY_STRUCTURE / PIN_MODIFY_STRUCTURE sent with the
 * FEATURE_VERIFY_PIN_DIRECT / FEATURE_MODIFY_PIN_DIRECT control codes (as
 * pcsc-lite lays them out: packed, multi-byte fields little-endian, the
 * host order of the machines pcsc-lite's drivers run on). */
#ifndef TK_PINPAD_H
#define TK_PINPAD_H

#include <tokenkit/card.h>
#include <tokenkit/common.h>

/* Feature tags (PC/SC part 10, 2.3) this code looks at. */
#define TK_PCSC_FEATURE_VERIFY_PIN_START 0x01
#define TK_PCSC_FEATURE_MODIFY_PIN_START 0x03
#define TK_PCSC_FEATURE_VERIFY_PIN_DIRECT 0x06
#define TK_PCSC_FEATURE_MODIFY_PIN_DIRECT 0x07
#define TK_PCSC_FEATURE_MAX 0x20

typedef struct tk_pcsc_features {
	/* The control code of each feature tag the driver lists (0: none). */
	uint32_t code[TK_PCSC_FEATURE_MAX];
} tk_pcsc_features_t;

/* Parse a feature list: TLVs of a tag byte, a length byte (4) and the
 * control code, big-endian. Tags beyond TK_PCSC_FEATURE_MAX are skipped.
 * Errors: TK_ERR_INVALID_ARG, TK_ERR_TRUNCATED (a TLV cut short),
 * TK_ERR_MALFORMED (a length other than 4, a control code of 0, a tag
 * twice). *out is cleared first. */
int tk_pcsc_features_parse(const uint8_t *p, size_t len, tk_pcsc_features_t *out);

/* The PIN_VERIFY_STRUCTURE (op TK_PINPAD_VERIFY) or PIN_MODIFY_STRUCTURE
 * (TK_PINPAD_MODIFY) for req, the APDU at its end. Errors:
 * TK_ERR_INVALID_ARG (no APDU, another op, an APDU of fewer than 5 or more
 * than 261 bytes), TK_ERR_BUFFER_TOO_SMALL. */
int tk_pcsc_pin_encode(const tk_card_pinpad_t *req, uint8_t *out, size_t cap, size_t *out_len);

#endif
