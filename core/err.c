/* tokenkit: error messages and conversion of foreign error codes. */
#include <PCSC/pcsclite.h>
#include <PCSC/winscard.h>

#include <tokenkit/err.h>

const char *
tk_strerror(int err)
{
	switch (err) {
#define TK_ERR_MSG(name, value, msg)                                                               \
	case value:                                                                                \
		return msg;
		TK_ERR_LIST(TK_ERR_MSG)
#undef TK_ERR_MSG
	}
	return "unknown error";
}

const char *
tk_errname(int err)
{
	switch (err) {
#define TK_ERR_NAME(name, value, msg)                                                              \
	case value:                                                                                \
		return #name;
		TK_ERR_LIST(TK_ERR_NAME)
#undef TK_ERR_NAME
	}
	return "TK_ERR_UNKNOWN";
}

int
tk_err_from_scard(long rv)
{
	int64_t v = rv;

	/* PC/SC codes are 32-bit: also match one that was held in an int and
	 * sign-extended on its way to long. */
	if (v < INT32_MIN || v > (int64_t)UINT32_MAX)
		return TK_ERR_IO;
	switch ((uint32_t)v) {
	case SCARD_S_SUCCESS:
		return TK_OK;
	case SCARD_E_NO_MEMORY:
		return TK_ERR_NO_MEMORY;
	case SCARD_E_INVALID_PARAMETER:
	case SCARD_E_INVALID_VALUE:
	case SCARD_E_INVALID_HANDLE:
		return TK_ERR_INVALID_ARG;
	case SCARD_E_INSUFFICIENT_BUFFER:
		return TK_ERR_BUFFER_TOO_SMALL;
	case SCARD_E_CANCELLED:
		return TK_ERR_CANCELLED;
	case SCARD_E_TIMEOUT:
		return TK_ERR_TIMEOUT;
	case SCARD_E_NO_SERVICE:
	case SCARD_E_SERVICE_STOPPED:
		return TK_ERR_NO_SERVICE;
	case SCARD_E_NO_READERS_AVAILABLE:
	case SCARD_E_UNKNOWN_READER:
	case SCARD_E_READER_UNAVAILABLE:
		return TK_ERR_NO_READER;
	case SCARD_E_NO_SMARTCARD:
		return TK_ERR_NO_CARD;
	case SCARD_W_REMOVED_CARD:
		return TK_ERR_CARD_REMOVED;
	case SCARD_W_RESET_CARD:
		return TK_ERR_CARD_RESET;
	case SCARD_W_UNRESPONSIVE_CARD:
	case SCARD_W_UNPOWERED_CARD:
		return TK_ERR_UNRESPONSIVE;
	case SCARD_E_SHARING_VIOLATION:
		return TK_ERR_SHARING;
	case SCARD_E_PROTO_MISMATCH:
	case SCARD_W_UNSUPPORTED_CARD:
	case SCARD_E_CARD_UNSUPPORTED:
		return TK_ERR_PROTOCOL;
	case SCARD_E_NOT_TRANSACTED:
	case SCARD_F_COMM_ERROR:
		return TK_ERR_COMM;
	case SCARD_E_UNSUPPORTED_FEATURE:
		return TK_ERR_NOT_SUPPORTED;
	default:
		return TK_ERR_IO;
	}
}

static const struct {
	uint16_t sw, mask;
	int err;
} sw_table[] = {
        {0x9000, 0xffff, TK_OK},
        {0x63c0, 0xfff0, TK_ERR_PIN_INCORRECT},
        {0x6300, 0xffff, TK_ERR_PIN_INCORRECT},
        {0x6581, 0xffff, TK_ERR_MEMORY_FAILURE},
        {0x6700, 0xffff, TK_ERR_WRONG_LENGTH},
        {0x6882, 0xffff, TK_ERR_FUNC_NOT_SUPPORTED},
        {0x6883, 0xffff, TK_ERR_FUNC_NOT_SUPPORTED},
        {0x6884, 0xffff, TK_ERR_FUNC_NOT_SUPPORTED},
        {0x6982, 0xffff, TK_ERR_SECURITY_STATUS},
        {0x6983, 0xffff, TK_ERR_PIN_LOCKED},
        {0x6984, 0xffff, TK_ERR_REF_NOT_FOUND},
        {0x6985, 0xffff, TK_ERR_CONDITIONS},
        {0x6a80, 0xffff, TK_ERR_WRONG_DATA},
        {0x6a81, 0xffff, TK_ERR_FUNC_NOT_SUPPORTED},
        {0x6a82, 0xffff, TK_ERR_FILE_NOT_FOUND},
        {0x6a84, 0xffff, TK_ERR_NO_SPACE},
        {0x6a86, 0xffff, TK_ERR_WRONG_P1P2},
        {0x6a88, 0xffff, TK_ERR_REF_NOT_FOUND},
        {0x6b00, 0xffff, TK_ERR_WRONG_P1P2},
        {0x6d00, 0xffff, TK_ERR_INS_NOT_SUPPORTED},
        {0x6e00, 0xffff, TK_ERR_CLA_NOT_SUPPORTED},
};

int
tk_err_from_sw(uint16_t sw)
{
	for (size_t i = 0; i < sizeof(sw_table) / sizeof(sw_table[0]); i++)
		if ((sw & sw_table[i].mask) == sw_table[i].sw)
			return sw_table[i].err;
	return TK_ERR_SW_UNKNOWN;
}

int
tk_err_from_pin_sw(uint16_t sw, int *retries)
{
	*retries = -1;
	if (sw == 0x9000)
		return TK_OK;
	if ((sw & 0xFFF0) == 0x63C0) {
		*retries = sw & 0x0F;
		return *retries == 0 ? TK_ERR_PIN_LOCKED : TK_ERR_PIN_INCORRECT;
	}
	if (sw == 0x6983) {
		*retries = 0;
		return TK_ERR_PIN_LOCKED;
	}
	return tk_err_from_sw(sw);
}
