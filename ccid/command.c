/* tokenkit CCID: one command and its reply on the bulk pipes (USB CCID
 * 1.1, 6 and 6.2.6).
 *
 * What a real reader may do between our command and its reply, and what
 * we do about it (every case bounded):
 * - answer in pieces (a reply spread over several bulk-in transfers):
 *   read on until 10 + dwLength bytes are there;
 * - ask for more time (bmCommandStatus 2, time extension): wait again, at
 *   most max_time_ext times and command_ms in all;
 * - send a reply that belongs to an earlier command (after a timeout or an
 *   ABORT): bSeq differs, discard it, at most max_stale of them;
 * - send bytes that are no CCID message: drain the pipe and fail with
 *   TK_ERR_COMM;
 * - say nothing: the bulk-in wait times out (TK_ERR_TIMEOUT). */
#include <string.h>

#include <tokenkit/err.h>
#include <tokenkit/log.h>

#include "ccid_int.h"
#include "clock.h"

#define MAX_PIECES 64  /* bulk-in transfers that make one reply */
#define DRAIN_MS 20    /* a drain read waits this long for more */
#define DRAIN_READS 32 /* and gives up after this many */

static uint8_t
reply_type_for(uint8_t cmd)
{
	switch (cmd) {
	case TK_CCID_PC_ICC_POWER_ON:
	case TK_CCID_PC_XFR_BLOCK:
	case TK_CCID_PC_SECURE:
		return TK_CCID_RDR_DATA_BLOCK;
	case TK_CCID_PC_GET_PARAMETERS:
	case TK_CCID_PC_RESET_PARAMETERS:
	case TK_CCID_PC_SET_PARAMETERS:
		return TK_CCID_RDR_PARAMETERS;
	case TK_CCID_PC_ESCAPE:
		return TK_CCID_RDR_ESCAPE;
	case TK_CCID_PC_SET_DATA_RATE:
		return TK_CCID_RDR_DATA_RATE;
	default: /* power off, slot status, abort, clock, T0APDU, mechanical */
		return TK_CCID_RDR_SLOT_STATUS;
	}
}

void
tk_ccid_drain(tk_ccid_dev_t *d)
{
	enum tk_ccid_fault keep = tk_ccid_last_fault(d);
	size_t got = 0;

	/* (the read that ends the drain times out: not a fault to report) */
	for (int i = 0; i < DRAIN_READS; i++)
		if (tk_ccid_bulk_in(d, d->rbuf, d->rcap, &got, DRAIN_MS) != TK_OK)
			break;
	tk_ccid_set_fault(d, keep);
}

/* Read one whole reply into d->rbuf: *len bytes. */
static int
read_reply(tk_ccid_dev_t *d, int read_ms, int64_t end_ms, size_t *len)
{
	size_t have = 0, need = 0, got = 0;
	int r;

	*len = 0;
	for (int piece = 0; piece < MAX_PIECES; piece++) {
		int64_t left = end_ms - tk_now_ms();
		int wait = left < read_ms ? (int)left : read_ms;

		if (wait <= 0) {
			tk_ccid_set_fault(d, TK_CCID_FAULT_TIMEOUT);
			return TK_ERR_TIMEOUT;
		}
		if ((r = tk_ccid_bulk_in(d, d->rbuf + have, d->rcap - have, &got, wait)) != TK_OK)
			return r;
		if (piece > 0)
			d->st.split_replies++;
		have += got;
		if (need == 0 && have >= TK_CCID_HDR_LEN) {
			r = tk_ccid_reply_size(d->rbuf, have, d->f.iface.desc.max_msg_len, &need);
			if (r != TK_OK) {
				tk_log_debug("ccid: %s: reply header: %s", d->name, tk_strerror(r));
				goto garbage;
			}
		}
		if (need != 0 && have >= need) {
			if (have > need)
				goto garbage; /* two messages in one transfer */
			*len = have;
			return TK_OK;
		}
		if (have >= d->rcap)
			goto garbage;
	}
	tk_log_debug("ccid: %s: reply in more than %d pieces", d->name, MAX_PIECES);
garbage:
	d->st.garbage++;
	tk_ccid_drain(d);
	tk_ccid_set_fault(d, TK_CCID_FAULT_GARBAGE);
	return TK_ERR_COMM;
}

int
tk_ccid_command(tk_ccid_dev_t *d, tk_ccid_cmd_t *cmd, int read_ms, tk_ccid_reply_t *reply)
{
	uint8_t want = reply_type_for(cmd->type);
	unsigned te = 0, stale = 0;
	int64_t end;
	size_t wlen = 0, len = 0;
	int r;

	memset(reply, 0, sizeof(*reply));
	if (d->h == NULL) {
		tk_ccid_set_fault(d, TK_CCID_FAULT_GONE);
		return TK_ERR_READER_GONE;
	}
	if (read_ms <= 0)
		read_ms = d->to.read_ms;
	cmd->seq = d->seq++;
	if ((r = tk_ccid_cmd_encode(cmd, d->wbuf, d->wcap, &wlen)) != TK_OK)
		return r == TK_ERR_BUFFER_TOO_SMALL ? TK_ERR_TOO_LONG : r;
	d->st.commands++;
	tk_log_trace("ccid: %s: %s slot %u seq %u, %zu bytes", d->name, tk_ccid_msg_name(cmd->type),
	             cmd->slot, cmd->seq, cmd->len);
	if ((r = tk_ccid_bulk_out(d, d->wbuf, wlen, d->to.write_ms)) != TK_OK)
		return r;
	end = tk_now_ms() + d->to.command_ms;
	for (;;) {
		if ((r = read_reply(d, read_ms, end, &len)) != TK_OK)
			return r;
		if ((r = tk_ccid_reply_parse(d->rbuf, len, reply)) != TK_OK) {
			d->st.garbage++;
			tk_ccid_set_fault(d, TK_CCID_FAULT_GARBAGE);
			return TK_ERR_COMM;
		}
		if (reply->seq != cmd->seq || reply->slot != cmd->slot) {
			/* A late answer to something we gave up on. */
			d->st.stale_frames++;
			tk_log_debug("ccid: %s: discarded %s seq %u (waiting for %u)", d->name,
			             tk_ccid_msg_name(reply->type), reply->seq, cmd->seq);
			if (++stale > d->to.max_stale) {
				tk_ccid_set_fault(d, TK_CCID_FAULT_SEQUENCE);
				return TK_ERR_COMM;
			}
			continue;
		}
		if (TK_CCID_CMD_STATUS(reply->status) == TK_CCID_CMD_TIME_EXTENSION) {
			d->st.time_extensions++;
			if (++te > d->to.max_time_ext) {
				tk_log_debug("ccid: %s: more than %u time extensions", d->name,
				             d->to.max_time_ext);
				tk_ccid_set_fault(d, TK_CCID_FAULT_TIMEOUT);
				return TK_ERR_TIMEOUT;
			}
			continue;
		}
		if (reply->type != want) {
			tk_log_debug("ccid: %s: %s answered with %s", d->name,
			             tk_ccid_msg_name(cmd->type), tk_ccid_msg_name(reply->type));
			tk_ccid_set_fault(d, TK_CCID_FAULT_GARBAGE);
			return TK_ERR_PROTOCOL;
		}
		tk_ccid_set_fault(d, TK_CCID_FAULT_NONE);
		return TK_OK;
	}
}
