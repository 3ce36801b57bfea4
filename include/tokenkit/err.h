/* tokenkit: one error type for the whole library.
 *
 * TK_OK is 0, errors are negative and grouped by layer. Foreign codes are
 * converted once, where they are received: tk_err_from_scard(),
 * tk_err_from_sw() and (in the module) tk_err_to_ckr(). */
#ifndef TOKENKIT_ERR_H
#define TOKENKIT_ERR_H

#include <tokenkit/common.h>

/* X(name, value, message) */
#define TK_ERR_LIST(X)                                                                             \
	X(TK_OK, 0, "success")                                                                     \
	/* internal and arguments: -1 .. -99 */                                                    \
	X(TK_ERR_INTERNAL, -1, "internal error")                                                   \
	X(TK_ERR_NO_MEMORY, -2, "out of memory")                                                   \
	X(TK_ERR_INVALID_ARG, -3, "invalid argument")                                              \
	X(TK_ERR_BUFFER_TOO_SMALL, -4, "buffer too small")                                         \
	X(TK_ERR_NOT_SUPPORTED, -5, "not supported")                                               \
	X(TK_ERR_NOT_FOUND, -6, "not found")                                                       \
	X(TK_ERR_EXISTS, -7, "already exists")                                                     \
	X(TK_ERR_BUSY, -8, "busy")                                                                 \
	X(TK_ERR_CANCELLED, -9, "cancelled")                                                       \
	X(TK_ERR_IO, -10, "input/output error")                                                    \
	X(TK_ERR_STATE, -11, "operation not valid in this state")                                  \
	X(TK_ERR_CONFLICT, -12, "generation conflict")                                             \
	X(TK_ERR_CRYPTO, -13, "cryptographic library error")                                       \
	X(TK_ERR_UNSAFE, -14, "refused: file or directory not private (owner, mode or type)")      \
	X(TK_ERR_STORE_CHANGED, -15, "the store changed under this handle (replaced or wiped)")    \
	X(TK_ERR_DISK_FULL, -16, "no space left on the file system")                               \
	/* parsing of wire and file data: -100 .. -199 */                                          \
	X(TK_ERR_TRUNCATED, -100, "data truncated")                                                \
	X(TK_ERR_MALFORMED, -101, "malformed data")                                                \
	X(TK_ERR_TOO_DEEP, -102, "nesting too deep")                                               \
	X(TK_ERR_TOO_LONG, -103, "data too long")                                                  \
	X(TK_ERR_BAD_CHECKSUM, -104, "bad checksum")                                               \
	/* transport (reader, daemon, USB): -200 .. -299 */                                        \
	X(TK_ERR_NO_SERVICE, -200, "smart-card service not available")                             \
	X(TK_ERR_NO_READER, -201, "no such reader")                                                \
	X(TK_ERR_NO_CARD, -202, "no card in reader")                                               \
	X(TK_ERR_CARD_REMOVED, -203, "card removed")                                               \
	X(TK_ERR_CARD_RESET, -204, "card was reset")                                               \
	X(TK_ERR_TIMEOUT, -205, "timed out")                                                       \
	X(TK_ERR_COMM, -206, "communication error")                                                \
	X(TK_ERR_SHARING, -207, "reader in use by another program")                                \
	X(TK_ERR_UNRESPONSIVE, -208, "card is unresponsive")                                       \
	X(TK_ERR_PROTOCOL, -209, "protocol error")                                                 \
	X(TK_ERR_READER_GONE, -210, "reader removed")                                              \
	X(TK_ERR_QUARANTINED, -211, "reader quarantined after repeated faults")                    \
	/* card status words: -300 .. -399 */                                                      \
	X(TK_ERR_SW_UNKNOWN, -300, "card returned an unexpected status")                           \
	X(TK_ERR_PIN_INCORRECT, -301, "PIN incorrect")                                             \
	X(TK_ERR_PIN_LOCKED, -302, "PIN blocked")                                                  \
	X(TK_ERR_SECURITY_STATUS, -303, "security status not satisfied")                           \
	X(TK_ERR_FILE_NOT_FOUND, -304, "file or application not found")                            \
	X(TK_ERR_WRONG_LENGTH, -305, "wrong length")                                               \
	X(TK_ERR_INS_NOT_SUPPORTED, -306, "instruction not supported")                             \
	X(TK_ERR_CLA_NOT_SUPPORTED, -307, "class not supported")                                   \
	X(TK_ERR_WRONG_DATA, -308, "incorrect data in command")                                    \
	X(TK_ERR_WRONG_P1P2, -309, "incorrect parameters P1-P2")                                   \
	X(TK_ERR_CONDITIONS, -310, "conditions of use not satisfied")                              \
	X(TK_ERR_AUTH_METHOD_BLOCKED, -311, "authentication method blocked")                       \
	X(TK_ERR_MEMORY_FAILURE, -312, "card memory failure")                                      \
	X(TK_ERR_NO_SPACE, -313, "not enough memory on card")                                      \
	X(TK_ERR_REF_NOT_FOUND, -314, "referenced data not found")                                 \
	X(TK_ERR_FUNC_NOT_SUPPORTED, -315, "function not supported by card")                       \
	/* objects and their attributes (the software token; PKCS#11 section 4) */                 \
	X(TK_ERR_ATTR_TYPE_INVALID, -400, "attribute not valid for this object")                   \
	X(TK_ERR_ATTR_VALUE_INVALID, -401, "invalid attribute value")                              \
	X(TK_ERR_ATTR_READ_ONLY, -402, "attribute cannot be set or changed")                       \
	X(TK_ERR_TEMPLATE_INCOMPLETE, -403, "attributes missing to make the object")               \
	X(TK_ERR_TEMPLATE_INCONSISTENT, -404, "attributes contradict each other")                  \
	X(TK_ERR_ACTION_PROHIBITED, -405, "the object does not allow this")                        \
	X(TK_ERR_LOGIN_REQUIRED, -406, "token locked, needs the user PIN")

enum tk_err {
#define TK_ERR_ENUM(name, value, msg) name = value,
	TK_ERR_LIST(TK_ERR_ENUM)
#undef TK_ERR_ENUM
};

/* Message for an error code; never NULL ("unknown error" for others). */
TK_EXPORT const char *tk_strerror(int err);
/* Symbolic name ("TK_ERR_TIMEOUT"); never NULL. */
TK_EXPORT const char *tk_errname(int err);

/* Convert a PC/SC LONG (SCARD_*) to a tk_err. */
TK_EXPORT int tk_err_from_scard(long rv);
/* Convert a status word to a tk_err: 9000 → TK_OK, 63Cx → TK_ERR_PIN_INCORRECT,
 * 6983 → TK_ERR_PIN_LOCKED, and so on through one table. */
TK_EXPORT int tk_err_from_sw(uint16_t sw);
/* The status word of a PIN command (VERIFY, CHANGE REFERENCE DATA, RESET
 * RETRY COUNTER): TK_OK for 9000; 63Cx: TK_ERR_PIN_INCORRECT with
 * *retries = x (TK_ERR_PIN_LOCKED when x is 0); 6983: TK_ERR_PIN_LOCKED
 * with *retries = 0; anything else as tk_err_from_sw() with *retries = -1. */
TK_EXPORT int tk_err_from_pin_sw(uint16_t sw, int *retries);

#endif
