/* tokenkit CCID: message codec (USB CCID 1.1, 6.1-6.3). */
#include <string.h>

#include <tokenkit/buf.h>
#include <tokenkit/err.h>

#include "descriptor.h"
#include "message.h"

static bool
is_pc_type(uint8_t t)
{
	switch (t) {
	case TK_CCID_PC_SET_PARAMETERS:
	case TK_CCID_PC_ICC_POWER_ON:
	case TK_CCID_PC_ICC_POWER_OFF:
	case TK_CCID_PC_GET_SLOT_STATUS:
	case TK_CCID_PC_SECURE:
	case TK_CCID_PC_T0APDU:
	case TK_CCID_PC_ESCAPE:
	case TK_CCID_PC_GET_PARAMETERS:
	case TK_CCID_PC_RESET_PARAMETERS:
	case TK_CCID_PC_ICC_CLOCK:
	case TK_CCID_PC_XFR_BLOCK:
	case TK_CCID_PC_MECHANICAL:
	case TK_CCID_PC_ABORT:
	case TK_CCID_PC_SET_DATA_RATE:
		return true;
	default:
		return false;
	}
}

static bool
is_rdr_type(uint8_t t)
{
	return t >= TK_CCID_RDR_DATA_BLOCK && t <= TK_CCID_RDR_DATA_RATE;
}

const char *
tk_ccid_msg_name(uint8_t type)
{
	switch (type) {
	case TK_CCID_RDR_NOTIFY_SLOT_CHANGE:
		return "RDR_to_PC_NotifySlotChange";
	case TK_CCID_RDR_HARDWARE_ERROR:
		return "RDR_to_PC_HardwareError";
	case TK_CCID_PC_SET_PARAMETERS:
		return "PC_to_RDR_SetParameters";
	case TK_CCID_PC_ICC_POWER_ON:
		return "PC_to_RDR_IccPowerOn";
	case TK_CCID_PC_ICC_POWER_OFF:
		return "PC_to_RDR_IccPowerOff";
	case TK_CCID_PC_GET_SLOT_STATUS:
		return "PC_to_RDR_GetSlotStatus";
	case TK_CCID_PC_SECURE:
		return "PC_to_RDR_Secure";
	case TK_CCID_PC_T0APDU:
		return "PC_to_RDR_T0APDU";
	case TK_CCID_PC_ESCAPE:
		return "PC_to_RDR_Escape";
	case TK_CCID_PC_GET_PARAMETERS:
		return "PC_to_RDR_GetParameters";
	case TK_CCID_PC_RESET_PARAMETERS:
		return "PC_to_RDR_ResetParameters";
	case TK_CCID_PC_ICC_CLOCK:
		return "PC_to_RDR_IccClock";
	case TK_CCID_PC_XFR_BLOCK:
		return "PC_to_RDR_XfrBlock";
	case TK_CCID_PC_MECHANICAL:
		return "PC_to_RDR_Mechanical";
	case TK_CCID_PC_ABORT:
		return "PC_to_RDR_Abort";
	case TK_CCID_PC_SET_DATA_RATE:
		return "PC_to_RDR_SetDataRateAndClockFrequency";
	case TK_CCID_RDR_DATA_BLOCK:
		return "RDR_to_PC_DataBlock";
	case TK_CCID_RDR_SLOT_STATUS:
		return "RDR_to_PC_SlotStatus";
	case TK_CCID_RDR_PARAMETERS:
		return "RDR_to_PC_Parameters";
	case TK_CCID_RDR_ESCAPE:
		return "RDR_to_PC_Escape";
	case TK_CCID_RDR_DATA_RATE:
		return "RDR_to_PC_DataRateAndClockFrequency";
	default:
		return "unknown";
	}
}

/* Header and payload: the same 10-byte layout both ways. */
static int
frame_encode(uint8_t type, uint8_t slot, uint8_t seq, const uint8_t p[3], const uint8_t *data,
             size_t len, uint8_t *out, size_t cap, size_t *out_len)
{
	tk_wbuf_t w;
	int r;

	if (len > UINT32_MAX - TK_CCID_HDR_LEN || (data == NULL && len > 0))
		return TK_ERR_INVALID_ARG;
	tk_wbuf_init(&w, out, cap);
	tk_wbuf_put_u8(&w, type);
	tk_wbuf_put_u32le(&w, (uint32_t)len);
	tk_wbuf_put_u8(&w, slot);
	tk_wbuf_put_u8(&w, seq);
	tk_wbuf_put_bytes(&w, p, 3);
	if (len > 0)
		tk_wbuf_put_bytes(&w, data, len);
	if ((r = tk_wbuf_error(&w)) != TK_OK)
		return r;
	*out_len = w.len;
	return TK_OK;
}

/* Parse the header of a complete frame; the payload must fill len exactly. */
static int
frame_parse(const uint8_t *msg, size_t len, uint8_t *type, uint8_t *slot, uint8_t *seq,
            uint8_t p[3], const uint8_t **data, size_t *dlen)
{
	tk_buf_t b;
	uint32_t n = 0;

	tk_buf_init(&b, msg, len);
	if (tk_buf_get_u8(&b, type) != TK_OK || tk_buf_get_u32le(&b, &n) != TK_OK ||
	    tk_buf_get_u8(&b, slot) != TK_OK || tk_buf_get_u8(&b, seq) != TK_OK ||
	    tk_buf_get_bytes(&b, p, 3) != TK_OK)
		return TK_ERR_TRUNCATED;
	if (tk_buf_left(&b) < n)
		return TK_ERR_TRUNCATED;
	if (tk_buf_left(&b) > n)
		return TK_ERR_MALFORMED;
	if (tk_buf_get_ptr(&b, data, n) != TK_OK)
		return TK_ERR_TRUNCATED;
	*dlen = n;
	return TK_OK;
}

int
tk_ccid_cmd_encode(const tk_ccid_cmd_t *c, uint8_t *out, size_t cap, size_t *out_len)
{
	if (out_len != NULL)
		*out_len = 0;
	if (c == NULL || out == NULL || out_len == NULL || !is_pc_type(c->type))
		return TK_ERR_INVALID_ARG;
	return frame_encode(c->type, c->slot, c->seq, c->p, c->data, c->len, out, cap, out_len);
}

int
tk_ccid_cmd_parse(const uint8_t *msg, size_t len, tk_ccid_cmd_t *out)
{
	tk_ccid_cmd_t c;
	int r;

	if (out != NULL)
		memset(out, 0, sizeof(*out));
	if (msg == NULL || out == NULL)
		return TK_ERR_INVALID_ARG;
	memset(&c, 0, sizeof(c));
	if ((r = frame_parse(msg, len, &c.type, &c.slot, &c.seq, c.p, &c.data, &c.len)) != TK_OK)
		return r;
	if (!is_pc_type(c.type))
		return TK_ERR_MALFORMED;
	*out = c;
	return TK_OK;
}

int
tk_ccid_reply_size(const uint8_t *msg, size_t len, size_t max_msg, size_t *size)
{
	tk_buf_t b;
	uint8_t type = 0;
	uint32_t n = 0;

	if (size != NULL)
		*size = 0;
	if (msg == NULL || size == NULL)
		return TK_ERR_INVALID_ARG;
	if (len < TK_CCID_HDR_LEN)
		return TK_ERR_TRUNCATED;
	tk_buf_init(&b, msg, len);
	if (tk_buf_get_u8(&b, &type) != TK_OK || tk_buf_get_u32le(&b, &n) != TK_OK)
		return TK_ERR_TRUNCATED;
	if (!is_rdr_type(type))
		return TK_ERR_MALFORMED;
	if (n > max_msg || (size_t)n + TK_CCID_HDR_LEN > max_msg)
		return TK_ERR_TOO_LONG;
	*size = (size_t)n + TK_CCID_HDR_LEN;
	return TK_OK;
}

int
tk_ccid_reply_parse(const uint8_t *msg, size_t len, tk_ccid_reply_t *out)
{
	tk_ccid_reply_t rp;
	uint8_t p[3];
	int r;

	if (out != NULL)
		memset(out, 0, sizeof(*out));
	if (msg == NULL || out == NULL)
		return TK_ERR_INVALID_ARG;
	memset(&rp, 0, sizeof(rp));
	if ((r = frame_parse(msg, len, &rp.type, &rp.slot, &rp.seq, p, &rp.data, &rp.len)) != TK_OK)
		return r;
	if (!is_rdr_type(rp.type))
		return TK_ERR_MALFORMED;
	rp.status = p[0];
	rp.error = p[1];
	rp.param = p[2];
	*out = rp;
	return TK_OK;
}

int
tk_ccid_reply_encode(const tk_ccid_reply_t *rp, uint8_t *out, size_t cap, size_t *out_len)
{
	uint8_t p[3];

	if (out_len != NULL)
		*out_len = 0;
	if (rp == NULL || out == NULL || out_len == NULL || !is_rdr_type(rp->type))
		return TK_ERR_INVALID_ARG;
	p[0] = rp->status;
	p[1] = rp->error;
	p[2] = rp->param;
	return frame_encode(rp->type, rp->slot, rp->seq, p, rp->data, rp->len, out, cap, out_len);
}

/* bError of a failed command -> tk_err (6.2.6, Table 6.2-2). */
static const struct {
	uint8_t error;
	int err;
	const char *name;
} error_table[] = {
        {TK_CCID_ERR_CMD_ABORTED, TK_ERR_CANCELLED, "CMD_ABORTED"},
        {TK_CCID_ERR_ICC_MUTE, TK_ERR_UNRESPONSIVE, "ICC_MUTE"},
        {TK_CCID_ERR_XFR_PARITY, TK_ERR_COMM, "XFR_PARITY_ERROR"},
        {TK_CCID_ERR_XFR_OVERRUN, TK_ERR_COMM, "XFR_OVERRUN"},
        {TK_CCID_ERR_HW_ERROR, TK_ERR_IO, "HW_ERROR"},
        {TK_CCID_ERR_BAD_ATR_TS, TK_ERR_UNRESPONSIVE, "BAD_ATR_TS"},
        {TK_CCID_ERR_BAD_ATR_TCK, TK_ERR_UNRESPONSIVE, "BAD_ATR_TCK"},
        {TK_CCID_ERR_PROTOCOL_NOT_SUPPORTED, TK_ERR_NOT_SUPPORTED, "ICC_PROTOCOL_NOT_SUPPORTED"},
        {TK_CCID_ERR_CLASS_NOT_SUPPORTED, TK_ERR_NOT_SUPPORTED, "ICC_CLASS_NOT_SUPPORTED"},
        {TK_CCID_ERR_PROCEDURE_BYTE_CONFLICT, TK_ERR_PROTOCOL, "PROCEDURE_BYTE_CONFLICT"},
        {TK_CCID_ERR_DEACTIVATED_PROTOCOL, TK_ERR_CARD_RESET, "DEACTIVATED_PROTOCOL"},
        {TK_CCID_ERR_BUSY_AUTO_SEQUENCE, TK_ERR_BUSY, "BUSY_WITH_AUTO_SEQUENCE"},
        {TK_CCID_ERR_PIN_TIMEOUT, TK_ERR_TIMEOUT, "PIN_TIMEOUT"},
        {TK_CCID_ERR_PIN_CANCELLED, TK_ERR_CANCELLED, "PIN_CANCELLED"},
        {TK_CCID_ERR_CMD_SLOT_BUSY, TK_ERR_BUSY, "CMD_SLOT_BUSY"},
        {TK_CCID_ERR_CMD_NOT_SUPPORTED, TK_ERR_NOT_SUPPORTED, "CMD_NOT_SUPPORTED"},
};

const char *
tk_ccid_error_name(uint8_t error)
{
	for (size_t i = 0; i < sizeof(error_table) / sizeof(error_table[0]); i++)
		if (error_table[i].error == error)
			return error_table[i].name;
	if (error >= 0x01 && error <= 0x7F)
		return "bad parameter";
	return "vendor error";
}

int
tk_ccid_reply_err(const tk_ccid_reply_t *rp)
{
	unsigned icc, cmd;

	if (rp == NULL)
		return TK_ERR_INVALID_ARG;
	icc = TK_CCID_ICC_STATUS(rp->status);
	cmd = TK_CCID_CMD_STATUS(rp->status);
	switch (cmd) {
	case TK_CCID_CMD_OK:
		return TK_OK;
	case TK_CCID_CMD_TIME_EXTENSION:
		return TK_ERR_BUSY;
	case TK_CCID_CMD_FAILED:
		break;
	default:
		return TK_ERR_PROTOCOL;
	}
	/* The slot's state explains a failure better than the error code,
	 * which readers fill in unevenly for these cases. */
	if (icc == TK_CCID_ICC_ABSENT)
		return TK_ERR_NO_CARD;
	if (icc == TK_CCID_ICC_INACTIVE && rp->type == TK_CCID_RDR_DATA_BLOCK &&
	    rp->error != TK_CCID_ERR_ICC_MUTE && rp->error != TK_CCID_ERR_BAD_ATR_TS &&
	    rp->error != TK_CCID_ERR_BAD_ATR_TCK && rp->error != TK_CCID_ERR_CMD_ABORTED)
		return TK_ERR_CARD_RESET;
	for (size_t i = 0; i < sizeof(error_table) / sizeof(error_table[0]); i++)
		if (error_table[i].error == rp->error)
			return error_table[i].err;
	if (rp->error >= 0x01 && rp->error <= 0x7F)
		return TK_ERR_INVALID_ARG;
	return TK_ERR_COMM;
}

int
tk_ccid_params_encode(const tk_ccid_params_t *p, uint8_t *out, size_t cap, size_t *out_len)
{
	tk_wbuf_t w;
	int r;

	if (out_len != NULL)
		*out_len = 0;
	if (p == NULL || out == NULL || out_len == NULL || p->protocol > 1)
		return TK_ERR_INVALID_ARG;
	tk_wbuf_init(&w, out, cap);
	tk_wbuf_put_u8(&w, p->fidi);
	tk_wbuf_put_u8(&w, p->tcckst);
	tk_wbuf_put_u8(&w, p->guard);
	tk_wbuf_put_u8(&w, p->waiting);
	tk_wbuf_put_u8(&w, p->clock_stop);
	if (p->protocol == 1) {
		tk_wbuf_put_u8(&w, p->ifsc);
		tk_wbuf_put_u8(&w, p->nad);
	}
	if ((r = tk_wbuf_error(&w)) != TK_OK)
		return r;
	*out_len = w.len;
	return TK_OK;
}

int
tk_ccid_params_parse(uint8_t protocol, const uint8_t *data, size_t len, tk_ccid_params_t *out)
{
	tk_ccid_params_t p;
	tk_buf_t b;

	if (out != NULL)
		memset(out, 0, sizeof(*out));
	if (out == NULL || (data == NULL && len > 0))
		return TK_ERR_INVALID_ARG;
	if (protocol > 1)
		return TK_ERR_MALFORMED;
	memset(&p, 0, sizeof(p));
	p.protocol = protocol;
	tk_buf_init(&b, data, len);
	if (tk_buf_get_u8(&b, &p.fidi) != TK_OK || tk_buf_get_u8(&b, &p.tcckst) != TK_OK ||
	    tk_buf_get_u8(&b, &p.guard) != TK_OK || tk_buf_get_u8(&b, &p.waiting) != TK_OK ||
	    tk_buf_get_u8(&b, &p.clock_stop) != TK_OK)
		return TK_ERR_TRUNCATED;
	if (protocol == 1 &&
	    (tk_buf_get_u8(&b, &p.ifsc) != TK_OK || tk_buf_get_u8(&b, &p.nad) != TK_OK))
		return TK_ERR_TRUNCATED;
	if (tk_buf_left(&b) != 0)
		return TK_ERR_MALFORMED;
	*out = p;
	return TK_OK;
}

int
tk_ccid_intr_parse(const uint8_t *msg, size_t len, unsigned nslots, tk_ccid_intr_t *out)
{
	tk_ccid_intr_t in;
	tk_buf_t b;
	uint8_t state[(TK_CCID_MAX_SLOTS * 2 + 7) / 8];
	size_t need;

	if (out != NULL)
		memset(out, 0, sizeof(*out));
	if (msg == NULL || out == NULL || nslots == 0 || nslots > TK_CCID_MAX_SLOTS)
		return TK_ERR_INVALID_ARG;
	memset(&in, 0, sizeof(in));
	tk_buf_init(&b, msg, len);
	if (tk_buf_get_u8(&b, &in.type) != TK_OK)
		return TK_ERR_TRUNCATED;
	switch (in.type) {
	case TK_CCID_RDR_NOTIFY_SLOT_CHANGE:
		/* bmSlotICCState: 2 bits per slot, slot 0 in bits 1-0 of
		 * the first byte (bit 0 present, bit 1 changed). */
		need = (nslots * 2 + 7) / 8;
		if (tk_buf_get_bytes(&b, state, need) != TK_OK)
			return TK_ERR_TRUNCATED;
		for (unsigned s = 0; s < nslots; s++) {
			unsigned v = (unsigned)(state[s / 4] >> ((s % 4) * 2));

			if (v & 0x01)
				in.present |= (uint16_t)(1u << s);
			if (v & 0x02)
				in.changed |= (uint16_t)(1u << s);
		}
		break;
	case TK_CCID_RDR_HARDWARE_ERROR:
		if (tk_buf_get_u8(&b, &in.slot) != TK_OK || tk_buf_get_u8(&b, &in.seq) != TK_OK ||
		    tk_buf_get_u8(&b, &in.code) != TK_OK)
			return TK_ERR_TRUNCATED;
		if (tk_buf_left(&b) != 0)
			return TK_ERR_MALFORMED;
		break;
	default:
		return TK_ERR_MALFORMED;
	}
	*out = in;
	return TK_OK;
}

int
tk_ccid_pin_encode(const tk_ccid_pin_op_t *op, uint8_t *out, size_t cap, size_t *out_len)
{
	tk_wbuf_t w;
	int r;

	if (out_len != NULL)
		*out_len = 0;
	if (op == NULL || out == NULL || out_len == NULL || op->apdu == NULL || op->apdu_len < 4 ||
	    op->apdu_len > 261)
		return TK_ERR_INVALID_ARG;
	if (op->operation != TK_CCID_PIN_OP_VERIFY && op->operation != TK_CCID_PIN_OP_MODIFY)
		return TK_ERR_INVALID_ARG;
	tk_wbuf_init(&w, out, cap);
	tk_wbuf_put_u8(&w, op->operation);
	tk_wbuf_put_u8(&w, op->timeout);
	tk_wbuf_put_u8(&w, op->format);
	tk_wbuf_put_u8(&w, op->block);
	tk_wbuf_put_u8(&w, op->length_format);
	if (op->operation == TK_CCID_PIN_OP_MODIFY) {
		tk_wbuf_put_u8(&w, op->offset_old);
		tk_wbuf_put_u8(&w, op->offset_new);
	}
	/* wPINMaxExtraDigit is XXYY (XX minimum, YY maximum), little endian. */
	tk_wbuf_put_u8(&w, op->max_len);
	tk_wbuf_put_u8(&w, op->min_len);
	if (op->operation == TK_CCID_PIN_OP_MODIFY)
		tk_wbuf_put_u8(&w, op->confirm);
	tk_wbuf_put_u8(&w, op->entry_validation);
	tk_wbuf_put_u8(&w, op->num_messages);
	tk_wbuf_put_u16le(&w, op->lang_id);
	tk_wbuf_put_u8(&w, op->msg_index[0]);
	if (op->operation == TK_CCID_PIN_OP_MODIFY) {
		if (op->num_messages != 0)
			tk_wbuf_put_u8(&w, op->msg_index[1]);
		if (op->num_messages >= 3)
			tk_wbuf_put_u8(&w, op->msg_index[2]);
	}
	tk_wbuf_put_bytes(&w, op->teo_prologue, 3);
	tk_wbuf_put_bytes(&w, op->apdu, op->apdu_len);
	if ((r = tk_wbuf_error(&w)) != TK_OK)
		return r;
	*out_len = w.len;
	return TK_OK;
}

int
tk_ccid_pin_parse(const uint8_t *data, size_t len, tk_ccid_pin_op_t *out)
{
	tk_ccid_pin_op_t op;
	tk_buf_t b;
	bool modify;
	uint8_t n;

	if (out != NULL)
		memset(out, 0, sizeof(*out));
	if (data == NULL || out == NULL)
		return TK_ERR_INVALID_ARG;
	memset(&op, 0, sizeof(op));
	tk_buf_init(&b, data, len);
	if (tk_buf_get_u8(&b, &op.operation) != TK_OK)
		return TK_ERR_TRUNCATED;
	if (op.operation >= 0x02 && op.operation <= 0x06)
		return TK_ERR_NOT_SUPPORTED;
	if (op.operation > 0x06)
		return TK_ERR_MALFORMED;
	modify = op.operation == TK_CCID_PIN_OP_MODIFY;
	if (tk_buf_get_u8(&b, &op.timeout) != TK_OK || tk_buf_get_u8(&b, &op.format) != TK_OK ||
	    tk_buf_get_u8(&b, &op.block) != TK_OK || tk_buf_get_u8(&b, &op.length_format) != TK_OK)
		return TK_ERR_TRUNCATED;
	if (modify && (tk_buf_get_u8(&b, &op.offset_old) != TK_OK ||
	               tk_buf_get_u8(&b, &op.offset_new) != TK_OK))
		return TK_ERR_TRUNCATED;
	if (tk_buf_get_u8(&b, &op.max_len) != TK_OK || tk_buf_get_u8(&b, &op.min_len) != TK_OK)
		return TK_ERR_TRUNCATED;
	if (modify && tk_buf_get_u8(&b, &op.confirm) != TK_OK)
		return TK_ERR_TRUNCATED;
	if (tk_buf_get_u8(&b, &op.entry_validation) != TK_OK ||
	    tk_buf_get_u8(&b, &op.num_messages) != TK_OK ||
	    tk_buf_get_u16le(&b, &op.lang_id) != TK_OK ||
	    tk_buf_get_u8(&b, &op.msg_index[0]) != TK_OK)
		return TK_ERR_TRUNCATED;
	n = op.num_messages;
	if (modify && n != 0 && tk_buf_get_u8(&b, &op.msg_index[1]) != TK_OK)
		return TK_ERR_TRUNCATED;
	if (modify && n >= 3 && tk_buf_get_u8(&b, &op.msg_index[2]) != TK_OK)
		return TK_ERR_TRUNCATED;
	if (tk_buf_get_bytes(&b, op.teo_prologue, 3) != TK_OK)
		return TK_ERR_TRUNCATED;
	op.apdu_len = tk_buf_left(&b);
	if (op.apdu_len < 4)
		return TK_ERR_MALFORMED;
	if (tk_buf_get_ptr(&b, &op.apdu, op.apdu_len) != TK_OK)
		return TK_ERR_TRUNCATED;
	*out = op;
	return TK_OK;
}
