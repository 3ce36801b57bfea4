/* tokenkit CCID: slots. Power, the choice of protocol and parameters
 * after the ATR (PPS, SetParameters, IFSD), APDUs at each exchange level,
 * the PIN pad, the ICC power cycle and ABORT (USB CCID 1.1, 3.2, 5.3.1,
 * 6.1; ISO/IEC 7816-3:2006 for the card side). */
#include <string.h>

#include <tokenkit/apdu.h>
#include <tokenkit/err.h>
#include <tokenkit/log.h>
#include <tokenkit/mem.h>

#include "ccid_int.h"
#include "t0.h"

#define DEFAULT_FIDI 0x11 /* Fi 372, Di 1: what every card starts with */
#define DEFAULT_CLOCK_KHZ 4000
#define MAX_RESP_PARTS 1024 /* extended APDU level: response parts */

void
tk_ccid_slots_reset(tk_ccid_dev_t *d)
{
	for (unsigned i = 0; i < TK_CCID_MAX_SLOTS; i++) {
		tk_ccid_slot_t *s = &d->slots[i];

		s->powered = false;
		s->protocol = -1;
		s->atr_len = 0;
		tk_wipe(&s->t1, sizeof(s->t1));
	}
}

static void
cmd_init(tk_ccid_cmd_t *c, uint8_t type, const tk_ccid_slot_t *s)
{
	memset(c, 0, sizeof(*c));
	c->type = type;
	c->slot = (uint8_t)s->index;
}

/* A command whose reply must report success. */
static int
simple(tk_ccid_slot_t *s, tk_ccid_cmd_t *c, int read_ms, tk_ccid_reply_t *rp)
{
	int r;

	if ((r = tk_ccid_command(s->dev, c, read_ms, rp)) != TK_OK)
		return r;
	if ((r = tk_ccid_reply_err(rp)) != TK_OK)
		tk_log_debug("ccid: %s slot %u: %s: %s (bStatus %02x, bError %02x %s)",
		             s->dev->name, s->index, tk_ccid_msg_name(c->type), tk_strerror(r),
		             rp->status, rp->error, tk_ccid_error_name(rp->error));
	return r;
}

int
tk_ccid_slot_status(tk_ccid_slot_t *s, tk_ccid_slot_state_t *st)
{
	tk_ccid_reply_t rp;
	tk_ccid_cmd_t c;
	int r;

	if (st != NULL)
		memset(st, 0, sizeof(*st));
	if (s == NULL || st == NULL)
		return TK_ERR_INVALID_ARG;
	pthread_mutex_lock(&s->dev->lock);
	cmd_init(&c, TK_CCID_PC_GET_SLOT_STATUS, s);
	r = tk_ccid_command(s->dev, &c, 0, &rp);
	if (r == TK_OK) {
		unsigned icc = TK_CCID_ICC_STATUS(rp.status);

		st->present = icc == TK_CCID_ICC_ACTIVE || icc == TK_CCID_ICC_INACTIVE;
		st->active = icc == TK_CCID_ICC_ACTIVE;
		st->clock_status = rp.param;
		/* A failed GetSlotStatus that still tells the slot's state is
		 * an answer: readers report "no card" as a failure. */
		if (TK_CCID_CMD_STATUS(rp.status) == TK_CCID_CMD_FAILED && st->present)
			r = tk_ccid_reply_err(&rp);
		if (!st->active && s->powered) {
			s->powered = false;
			s->protocol = -1;
		}
	}
	pthread_mutex_unlock(&s->dev->lock);
	return r;
}

static int
power_off_locked(tk_ccid_slot_t *s)
{
	tk_ccid_reply_t rp;
	tk_ccid_cmd_t c;
	int r;

	s->powered = false;
	s->protocol = -1;
	cmd_init(&c, TK_CCID_PC_ICC_POWER_OFF, s);
	r = tk_ccid_command(s->dev, &c, 0, &rp);
	/* An absent card is powered off all the same. */
	if (r == TK_OK && (r = tk_ccid_reply_err(&rp)) == TK_ERR_NO_CARD)
		r = TK_OK;
	return r;
}

int
tk_ccid_power_off(tk_ccid_slot_t *s)
{
	int r;

	if (s == NULL)
		return TK_ERR_INVALID_ARG;
	pthread_mutex_lock(&s->dev->lock);
	r = power_off_locked(s);
	pthread_mutex_unlock(&s->dev->lock);
	return r;
}

int
tk_ccid_slot_atr(tk_ccid_slot_t *s, uint8_t *atr, size_t cap, size_t *atr_len, int *protocol)
{
	int r = TK_OK;

	if (atr_len != NULL)
		*atr_len = 0;
	if (protocol != NULL)
		*protocol = -1;
	if (s == NULL || atr == NULL || atr_len == NULL || protocol == NULL)
		return TK_ERR_INVALID_ARG;
	pthread_mutex_lock(&s->dev->lock);
	if (!s->powered) {
		r = TK_ERR_STATE;
	} else if (s->atr_len > cap) {
		r = TK_ERR_BUFFER_TOO_SMALL;
	} else {
		memcpy(atr, s->atr, s->atr_len);
		*atr_len = s->atr_len;
		*protocol = s->protocol;
	}
	pthread_mutex_unlock(&s->dev->lock);
	return r;
}

/* --- XfrBlock at each level ---------------------------------------------- */

static int
xfr(tk_ccid_slot_t *s, uint8_t bwi, uint16_t level, const uint8_t *data, size_t len, int read_ms,
    tk_ccid_reply_t *rp)
{
	tk_ccid_cmd_t c;

	cmd_init(&c, TK_CCID_PC_XFR_BLOCK, s);
	c.p[0] = bwi;
	c.p[1] = (uint8_t)(level & 0xFF);
	c.p[2] = (uint8_t)(level >> 8);
	c.data = data;
	c.len = len;
	return simple(s, &c, read_ms, rp);
}

static int
copy_out(const tk_ccid_reply_t *rp, uint8_t *out, size_t cap, size_t *len)
{
	if (rp->len > cap)
		return TK_ERR_BUFFER_TOO_SMALL;
	if (rp->len > 0)
		memcpy(out, rp->data, rp->len);
	*len = rp->len;
	return TK_OK;
}

/* T=1 blocks travel in XfrBlocks; bBWI carries the card's WTX. */
static int
t1_xfer(void *ctx, const uint8_t *blk, size_t len, uint8_t wtx, uint8_t *rblk, size_t cap,
        size_t *rlen)
{
	tk_ccid_slot_t *s = ctx;
	tk_ccid_reply_t rp;
	int r;

	*rlen = 0;
	r = xfr(s, wtx > 1 ? wtx : 0, 0, blk, len, s->dev->to.read_ms + (int)wtx * s->bwt_ms, &rp);
	if (r != TK_OK)
		return r;
	if (copy_out(&rp, rblk, cap, rlen) != TK_OK)
		return TK_ERR_COMM; /* no T=1 block is that long: a bad block */
	return TK_OK;
}

/* T=0 TPDUs travel in XfrBlocks; the reply is data + SW1 SW2. */
static int
t0_xfer(void *ctx, const uint8_t *tpdu, size_t len, uint8_t *resp, size_t cap, size_t *rlen)
{
	tk_ccid_slot_t *s = ctx;
	tk_ccid_reply_t rp;
	int r;

	*rlen = 0;
	if ((r = xfr(s, 0, 0, tpdu, len, s->dev->to.read_ms + s->bwt_ms, &rp)) != TK_OK)
		return r;
	if (rp.len < 2)
		return TK_ERR_COMM;
	return copy_out(&rp, resp, cap, rlen);
}

/* Extended APDU level: one XfrBlock, or a chain of them when the APDU does
 * not fit one message (6.1.4: wLevelParameter 1 begins, 3 continues, 2
 * ends; the reader asks for the rest with an empty DataBlock whose
 * bChainParameter is 10h). A long response comes the same way, and we ask
 * for each further part with an empty XfrBlock of wLevelParameter 10h. */
static int
apdu_level(tk_ccid_slot_t *s, const uint8_t *cmd, size_t len, uint8_t *resp, size_t cap,
           size_t *rlen)
{
	size_t max = s->dev->f.iface.desc.max_msg_len - TK_CCID_HDR_LEN, off = 0, got = 0;
	tk_ccid_reply_t rp;
	int r;

	if (len <= max) {
		if ((r = xfr(s, 0, TK_CCID_CHAIN_COMPLETE, cmd, len, 0, &rp)) != TK_OK)
			return r;
	} else {
		for (;;) {
			size_t part = len - off > max ? max : len - off;
			bool last = off + part == len;
			uint16_t lp = off == 0 ? TK_CCID_CHAIN_BEGIN
			                       : (last ? TK_CCID_CHAIN_END : TK_CCID_CHAIN_MIDDLE);

			if ((r = xfr(s, 0, lp, cmd + off, part, 0, &rp)) != TK_OK)
				return r;
			off += part;
			if (last)
				break;
			if (rp.param != TK_CCID_CHAIN_CONTINUE || rp.len != 0) {
				tk_log_debug("ccid: %s: command chain: reader answered chain %02x",
				             s->dev->name, rp.param);
				return TK_ERR_PROTOCOL;
			}
		}
	}
	for (int part = 0;; part++) {
		if (rp.len > cap - got)
			return TK_ERR_BUFFER_TOO_SMALL;
		if (rp.len > 0)
			memcpy(resp + got, rp.data, rp.len);
		got += rp.len;
		if (rp.param == TK_CCID_CHAIN_COMPLETE || rp.param == TK_CCID_CHAIN_END)
			break;
		if ((rp.param != TK_CCID_CHAIN_BEGIN && rp.param != TK_CCID_CHAIN_MIDDLE) ||
		    (part == 0) != (rp.param == TK_CCID_CHAIN_BEGIN) || part >= MAX_RESP_PARTS) {
			tk_log_debug("ccid: %s: response chain: unexpected chain %02x in part %d",
			             s->dev->name, rp.param, part);
			return TK_ERR_PROTOCOL;
		}
		if ((r = xfr(s, 0, TK_CCID_CHAIN_CONTINUE, NULL, 0, 0, &rp)) != TK_OK)
			return r;
	}
	*rlen = got;
	return TK_OK;
}

void
tk_ccid_caps(const tk_ccid_slot_t *s, tk_ccid_caps_t *caps)
{
	const tk_ccid_desc_t *d;

	if (caps == NULL)
		return;
	memset(caps, 0, sizeof(*caps));
	caps->protocol = -1;
	if (s == NULL)
		return;
	d = &s->dev->f.iface.desc;
	caps->level = s->dev->level;
	caps->protocol = s->powered ? s->protocol : -1;
	caps->max_cmd = TK_APDU_MAX_EXT_CMD;
	caps->max_resp = TK_APDU_MAX_RESP;
	switch (caps->level) {
	case TK_CCID_LEVEL_EXT_APDU:
		caps->extended_apdu = true;
		break;
	case TK_CCID_LEVEL_TPDU:
		caps->extended_apdu = s->protocol == 1;
		if (s->protocol != 1)
			caps->max_cmd = TK_APDU_MAX_SHORT_CMD;
		break;
	default:
		caps->max_cmd = TK_APDU_MAX_SHORT_CMD;
		caps->max_resp = 256 + 2;
		break;
	}
	/* A PIN pad of a TPDU reader needs the T=1 prologue; none for T=0. */
	if (caps->level != TK_CCID_LEVEL_TPDU || s->protocol == 1) {
		caps->pin_pad_verify = (d->pin_support & TK_CCID_PIN_VERIFY) != 0;
		caps->pin_pad_modify = (d->pin_support & TK_CCID_PIN_MODIFY) != 0;
	}
}

int
tk_ccid_transmit(tk_ccid_slot_t *s, const uint8_t *cmd, size_t len, uint8_t *resp, size_t cap,
                 size_t *rlen)
{
	tk_apdu_t a;
	bool extended = false;
	size_t n = 0;
	int r;

	if (rlen != NULL)
		*rlen = 0;
	if (s == NULL || cmd == NULL || len < 4 || resp == NULL || rlen == NULL)
		return TK_ERR_INVALID_ARG;
	if (tk_apdu_decode(cmd, len, &a, &extended) == TK_OK && extended &&
	    s->dev->level == TK_CCID_LEVEL_SHORT_APDU)
		return TK_ERR_NOT_SUPPORTED;
	tk_log_apdu(TK_LOG_TRACE, "ccid >", cmd, len, true);
	pthread_mutex_lock(&s->dev->lock);
	if (!s->powered) {
		r = TK_ERR_STATE;
		goto out;
	}
	switch (s->dev->level) {
	case TK_CCID_LEVEL_EXT_APDU:
	case TK_CCID_LEVEL_SHORT_APDU:
		r = apdu_level(s, cmd, len, resp, cap, &n);
		break;
	case TK_CCID_LEVEL_TPDU:
		if (s->protocol == 1) {
			r = tk_t1_transceive(&s->t1, t1_xfer, s, cmd, len, resp, cap, &n);
			s->dev->st.t1_retransmits = s->t1.retransmits;
			s->dev->st.t1_resynchs = s->t1.resynchs;
			s->dev->st.t1_wtx = s->t1.wtx_requests;
		} else {
			r = tk_t0_transceive(t0_xfer, s, cmd, len, resp, cap, &n);
		}
		break;
	default:
		r = TK_ERR_NOT_SUPPORTED;
		break;
	}
	if (r == TK_OK && n < 2)
		r = TK_ERR_COMM;
	if (r == TK_ERR_CARD_RESET || r == TK_ERR_NO_CARD) {
		s->powered = false;
		s->protocol = -1;
	}
out:
	pthread_mutex_unlock(&s->dev->lock);
	if (r != TK_OK) {
		tk_wipe(resp, n);
		return r;
	}
	tk_log_apdu(TK_LOG_TRACE, "ccid <", resp, n, false);
	*rlen = n;
	return TK_OK;
}

/* --- power on and the transmission parameters ------------------------------ */

static unsigned
fi_of(uint8_t fidi)
{
	static const unsigned fi[16] = {372, 372, 558, 744,  1116, 1488, 1860, 0,
	                                0,   512, 768, 1024, 1536, 2048, 0,    0};

	return fi[fidi >> 4];
}

static unsigned
di_of(uint8_t fidi)
{
	static const unsigned di[16] = {0, 1, 2, 4, 8, 16, 32, 64, 12, 20, 0, 0, 0, 0, 0, 0};

	return di[fidi & 0x0F];
}

/* The rate a Fi/Di pair gives at the reader's default clock must be one the
 * reader can do. */
static bool
rate_ok(const tk_ccid_desc_t *d, uint8_t fidi)
{
	uint64_t f = (d->default_clock_khz ? d->default_clock_khz : DEFAULT_CLOCK_KHZ) * 1000ull;
	unsigned fi = fi_of(fidi), di = di_of(fidi);

	if (fi == 0 || di == 0)
		return false;
	return d->max_data_rate_bps == 0 || f * di / fi <= d->max_data_rate_bps;
}

/* Block (T=1) or work (T=0) waiting time in ms at the reader's clock. */
static int
waiting_ms(const tk_ccid_slot_t *s, uint8_t fidi)
{
	const tk_ccid_desc_t *d = &s->dev->f.iface.desc;
	uint64_t khz = d->default_clock_khz ? d->default_clock_khz : DEFAULT_CLOCK_KHZ;
	uint64_t fi = fi_of(fidi) ? fi_of(fidi) : 372, us;

	if (s->protocol == 1)
		us = ((1ull << (s->atr_info.bwi & 0x0F)) * 960u * 372u * 1000u) / khz;
	else
		us = (960ull * (s->atr_info.wi ? s->atr_info.wi : 10) * fi * 1000u) / khz;
	return (int)(us / 1000 + 1);
}

/* PPS (ISO/IEC 7816-3, 9) through an XfrBlock. The card echoes what it
 * accepts: the same PPS1, or none (9.3: it keeps Fi/Di at their defaults,
 * and that is a success). *fidi gets the parameters now in force. */
static int
pps(tk_ccid_slot_t *s, int protocol, uint8_t *fidi)
{
	uint8_t req[4], n = 0, x = 0;
	tk_ccid_reply_t rp;
	int r;

	req[n++] = 0xFF;
	req[n++] = (uint8_t)((*fidi != DEFAULT_FIDI ? 0x10 : 0x00) | protocol);
	if (*fidi != DEFAULT_FIDI)
		req[n++] = *fidi;
	req[n] = 0;
	for (uint8_t i = 0; i < n; i++)
		req[n] ^= req[i];
	n++;
	s->dev->st.pps++;
	if ((r = xfr(s, 0, 0, req, n, 0, &rp)) != TK_OK)
		return r;
	for (size_t i = 0; i < rp.len; i++)
		x ^= rp.data[i];
	if (rp.len == n && memcmp(rp.data, req, n) == 0)
		return TK_OK;
	if (rp.len == 3 && x == 0 && rp.data[0] == 0xFF && rp.data[1] == (req[1] & 0x0F)) {
		*fidi = DEFAULT_FIDI;
		return TK_OK;
	}
	tk_log_debug("ccid: %s slot %u: PPS not accepted", s->dev->name, s->index);
	return TK_ERR_PROTOCOL;
}

static int
set_parameters(tk_ccid_slot_t *s, uint8_t fidi)
{
	const tk_atr_t *a = &s->atr_info;
	uint8_t buf[8];
	tk_ccid_params_t p;
	tk_ccid_reply_t rp;
	tk_ccid_cmd_t c;
	size_t n = 0;
	int r;

	memset(&p, 0, sizeof(p));
	p.protocol = (uint8_t)s->protocol;
	p.fidi = fidi;
	p.guard = a->extra_guard;
	if (s->protocol == 1) {
		p.tcckst =
		        (uint8_t)(0x10 | (a->edc_crc ? 0x01 : 0x00) | (a->inverse ? 0x02 : 0x00));
		p.waiting = (uint8_t)((a->bwi & 0x0F) << 4 | (a->cwi & 0x0F));
		p.ifsc = (uint8_t)(a->ifsc ? a->ifsc : 32);
	} else {
		p.tcckst = a->inverse ? 0x02 : 0x00;
		p.waiting = a->wi ? a->wi : 10;
	}
	if ((r = tk_ccid_params_encode(&p, buf, sizeof(buf), &n)) != TK_OK)
		return r;
	cmd_init(&c, TK_CCID_PC_SET_PARAMETERS, s);
	c.p[0] = (uint8_t)s->protocol;
	c.data = buf;
	c.len = n;
	return simple(s, &c, 0, &rp);
}

/* The card's protocol: the specific mode's, else T=1 when both sides have
 * it (what PPS asks for), else T=0. */
static int
choose_protocol(const tk_ccid_slot_t *s, int *protocol)
{
	const tk_atr_t *a = &s->atr_info;
	uint32_t rd = s->dev->f.iface.desc.protocols;

	if (a->specific_mode) {
		if (a->specific_protocol > 1 ||
		    !(rd & (a->specific_protocol ? TK_CCID_PROTO_T1 : TK_CCID_PROTO_T0)))
			return TK_ERR_NOT_SUPPORTED;
		*protocol = (int)a->specific_protocol;
		return TK_OK;
	}
	if ((a->protocols & TK_ATR_PROTO_T1) && (rd & TK_CCID_PROTO_T1))
		*protocol = 1;
	else if ((a->protocols & TK_ATR_PROTO_T0) && (rd & TK_CCID_PROTO_T0))
		*protocol = 0;
	else
		return TK_ERR_NOT_SUPPORTED;
	return TK_OK;
}

/* After the ATR: what the reader does not do by itself (dwFeatures). */
static int
setup_protocol(tk_ccid_slot_t *s)
{
	const tk_ccid_desc_t *d = &s->dev->f.iface.desc;
	const tk_atr_t *a = &s->atr_info;
	uint8_t fidi = DEFAULT_FIDI;
	bool tpdu = s->dev->level == TK_CCID_LEVEL_TPDU;
	int r;

	if ((a->present[0] & TK_ATR_TA) && (!a->specific_mode || !a->implicit_params))
		fidi = a->ta[0];
	if (!rate_ok(d, fidi))
		fidi = DEFAULT_FIDI;
	if (tpdu && !a->specific_mode &&
	    !(d->features & (TK_CCID_F_AUTO_PPS | TK_CCID_F_AUTO_NEGOTIATION)) &&
	    (fidi != DEFAULT_FIDI || (unsigned)s->protocol != a->first_protocol)) {
		if ((r = pps(s, s->protocol, &fidi)) != TK_OK) {
			/* The card stays at its defaults (after a new reset);
			 * that works, only slower. */
			if (r != TK_ERR_PROTOCOL && r != TK_ERR_UNRESPONSIVE && r != TK_ERR_COMM)
				return r;
			return TK_ERR_PROTOCOL;
		}
	}
	if (tpdu && !(d->features & TK_CCID_F_AUTO_PARAM_ATR) &&
	    (r = set_parameters(s, fidi)) != TK_OK)
		return r;
	s->bwt_ms = waiting_ms(s, fidi);
	if (s->protocol == 1) {
		tk_t1_init(&s->t1, a->ifsc ? a->ifsc : 32, a->edc_crc);
		if (tpdu && !(d->features & TK_CCID_F_AUTO_IFSD)) {
			size_t ifsd = TK_T1_MAX_INF;

			if (d->max_ifsd > 0 && d->max_ifsd < ifsd)
				ifsd = d->max_ifsd;
			if (d->max_msg_len - TK_CCID_HDR_LEN - 5 < ifsd)
				ifsd = d->max_msg_len - TK_CCID_HDR_LEN - 5;
			if ((r = tk_t1_negotiate_ifsd(&s->t1, t1_xfer, s, ifsd)) != TK_OK)
				return r;
		}
	}
	return TK_OK;
}

static int
icc_power_on(tk_ccid_slot_t *s)
{
	const tk_ccid_desc_t *d = &s->dev->f.iface.desc;
	/* bPowerSelect: 0 automatic, 1 5V, 2 3V, 3 1.8V. */
	uint8_t volts[3], nv = 0;
	tk_ccid_reply_t rp;
	tk_ccid_cmd_t c;
	int r = TK_ERR_UNRESPONSIVE;

	if ((d->features & TK_CCID_F_AUTO_VOLTAGE) || s->dev->level >= TK_CCID_LEVEL_SHORT_APDU ||
	    (d->voltage_support & 0x07) == 0) {
		volts[nv++] = 0;
	} else {
		/* Lowest class first (ISO/IEC 7816-3, 6.2.4). */
		if (d->voltage_support & TK_CCID_VOLT_1V8)
			volts[nv++] = 3;
		if (d->voltage_support & TK_CCID_VOLT_3V)
			volts[nv++] = 2;
		if (d->voltage_support & TK_CCID_VOLT_5V)
			volts[nv++] = 1;
	}
	for (uint8_t i = 0; i < nv; i++) {
		cmd_init(&c, TK_CCID_PC_ICC_POWER_ON, s);
		c.p[0] = volts[i];
		r = simple(s, &c, 0, &rp);
		if (r == TK_OK && rp.len > 0 && rp.len <= TK_ATR_MAX_LEN) {
			memcpy(s->atr, rp.data, rp.len);
			s->atr_len = rp.len;
			return TK_OK;
		}
		if (r == TK_OK)
			r = TK_ERR_UNRESPONSIVE; /* no ATR, or one too long to be one */
		if (r != TK_ERR_UNRESPONSIVE && r != TK_ERR_NOT_SUPPORTED)
			return r;
		(void)power_off_locked(s);
	}
	return r;
}

static int
power_on_locked(tk_ccid_slot_t *s, uint8_t *atr, size_t cap, size_t *atr_len, int *protocol)
{
	int r, proto = -1;

	s->powered = false;
	s->protocol = -1;
	for (int attempt = 0; attempt < 2; attempt++) {
		if ((r = icc_power_on(s)) != TK_OK)
			return r;
		r = tk_atr_parse(s->atr, s->atr_len, &s->atr_info);
		if (r == TK_ERR_BAD_CHECKSUM) {
			/* the rest of it is still usable */
			tk_log_debug("ccid: %s slot %u: ATR with a bad TCK", s->dev->name,
			             s->index);
		} else if (r != TK_OK) {
			(void)power_off_locked(s);
			return TK_ERR_UNRESPONSIVE;
		}
		if ((r = choose_protocol(s, &proto)) != TK_OK) {
			(void)power_off_locked(s);
			return r;
		}
		if (attempt == 1) {
			/* After a failed PPS: the card's first protocol at the
			 * default rate. */
			proto = (int)s->atr_info.first_protocol;
			s->atr_info.present[0] &= (uint8_t)~TK_ATR_TA;
		}
		s->protocol = proto;
		r = setup_protocol(s);
		if (r == TK_OK)
			break;
		if (r != TK_ERR_PROTOCOL || attempt == 1) {
			(void)power_off_locked(s);
			return r;
		}
		(void)power_off_locked(s);
	}
	s->powered = true;
	if (s->atr_len > cap)
		return TK_ERR_BUFFER_TOO_SMALL;
	memcpy(atr, s->atr, s->atr_len);
	*atr_len = s->atr_len;
	*protocol = s->protocol;
	tk_log_debug("ccid: %s slot %u: powered, T=%d", s->dev->name, s->index, s->protocol);
	return TK_OK;
}

static int
power(tk_ccid_slot_t *s, bool cycle, uint8_t *atr, size_t cap, size_t *atr_len, int *protocol)
{
	int r = TK_OK;

	if (atr_len != NULL)
		*atr_len = 0;
	if (protocol != NULL)
		*protocol = -1;
	if (s == NULL || atr == NULL || atr_len == NULL || protocol == NULL)
		return TK_ERR_INVALID_ARG;
	pthread_mutex_lock(&s->dev->lock);
	if (cycle)
		r = power_off_locked(s);
	if (r == TK_OK)
		r = power_on_locked(s, atr, cap, atr_len, protocol);
	pthread_mutex_unlock(&s->dev->lock);
	return r;
}

int
tk_ccid_power_on(tk_ccid_slot_t *s, uint8_t *atr, size_t cap, size_t *atr_len, int *protocol)
{
	return power(s, false, atr, cap, atr_len, protocol);
}

int
tk_ccid_power_cycle(tk_ccid_slot_t *s, uint8_t *atr, size_t cap, size_t *atr_len, int *protocol)
{
	return power(s, true, atr, cap, atr_len, protocol);
}

/* --- PIN pad, escape, abort ------------------------------------------------- */

int
tk_ccid_secure(tk_ccid_slot_t *s, const tk_ccid_pin_op_t *op, uint8_t *resp, size_t cap,
               size_t *rlen)
{
	uint8_t buf[64 + 261];
	tk_ccid_pin_op_t o;
	tk_ccid_caps_t caps;
	tk_ccid_reply_t rp;
	tk_ccid_cmd_t c;
	size_t n = 0;
	int r;

	if (rlen != NULL)
		*rlen = 0;
	if (s == NULL || op == NULL || resp == NULL || rlen == NULL)
		return TK_ERR_INVALID_ARG;
	pthread_mutex_lock(&s->dev->lock);
	tk_ccid_caps(s, &caps);
	if (!s->powered) {
		r = TK_ERR_STATE;
		goto out;
	}
	if ((op->operation == TK_CCID_PIN_OP_VERIFY && !caps.pin_pad_verify) ||
	    (op->operation == TK_CCID_PIN_OP_MODIFY && !caps.pin_pad_modify)) {
		r = TK_ERR_NOT_SUPPORTED;
		goto out;
	}
	o = *op;
	memset(o.teo_prologue, 0, sizeof(o.teo_prologue));
	if (s->dev->level == TK_CCID_LEVEL_TPDU)
		tk_t1_prologue(&s->t1, o.apdu_len, o.teo_prologue);
	if ((r = tk_ccid_pin_encode(&o, buf, sizeof(buf), &n)) != TK_OK)
		goto out;
	cmd_init(&c, TK_CCID_PC_SECURE, s);
	c.data = buf;
	c.len = n;
	r = simple(s, &c, s->dev->to.read_ms + s->dev->to.pin_ms, &rp);
	if (r != TK_OK)
		goto out;
	if (s->dev->level == TK_CCID_LEVEL_TPDU)
		r = tk_t1_continue(&s->t1, t1_xfer, s, rp.data, rp.len, resp, cap, &n);
	else
		r = copy_out(&rp, resp, cap, &n);
	if (r == TK_OK && n < 2)
		r = TK_ERR_COMM;
	if (r == TK_OK)
		*rlen = n;
out:
	pthread_mutex_unlock(&s->dev->lock);
	return r;
}

int
tk_ccid_escape(tk_ccid_slot_t *s, const uint8_t *in, size_t len, uint8_t *out, size_t cap,
               size_t *olen)
{
	tk_ccid_reply_t rp;
	tk_ccid_cmd_t c;
	int r;

	if (olen != NULL)
		*olen = 0;
	if (s == NULL || (in == NULL && len > 0) || out == NULL || olen == NULL)
		return TK_ERR_INVALID_ARG;
	pthread_mutex_lock(&s->dev->lock);
	cmd_init(&c, TK_CCID_PC_ESCAPE, s);
	c.data = in;
	c.len = len;
	if ((r = simple(s, &c, 0, &rp)) == TK_OK)
		r = copy_out(&rp, out, cap, olen);
	pthread_mutex_unlock(&s->dev->lock);
	return r;
}

int
tk_ccid_abort(tk_ccid_slot_t *s)
{
	tk_ccid_dev_t *d;
	tk_ccid_reply_t rp;
	tk_ccid_cmd_t c;
	int r;

	if (s == NULL)
		return TK_ERR_INVALID_ARG;
	d = s->dev;
	pthread_mutex_lock(&d->lock);
	d->st.aborts++;
	if (d->h == NULL) {
		r = TK_ERR_READER_GONE;
		goto out;
	}
	/* 5.3.1: the control request first, then the bulk message with the
	 * same slot and sequence number. tk_ccid_command assigns d->seq. */
	if ((r = tk_ccid_abort_request(d, (uint8_t)s->index, d->seq)) != TK_OK)
		goto out;
	cmd_init(&c, TK_CCID_PC_ABORT, s);
	if ((r = tk_ccid_command(d, &c, 0, &rp)) != TK_OK)
		goto out;
	r = tk_ccid_reply_err(&rp);
	if (r == TK_ERR_NO_CARD)
		r = TK_OK;
out:
	pthread_mutex_unlock(&d->lock);
	return r;
}
