/* The emulated CCID reader: the reader itself (USB CCID 1.1, 6) behind
 * the USB plumbing of ccid_emu.c, and the card's side of the transmission
 * protocols at the TPDU level (ISO/IEC 7816-3: PPS, T=1 blocks, T=0
 * procedure with GET RESPONSE and 6Cxx). Every function runs with the
 * testbed lock held. Faults (ccid_emu_faults_t) act on the replies here. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <tokenkit/atr.h>
#include <tokenkit/err.h>

#include "clock.h"
#include "descriptor.h"
#include "emu_int.h"
#include "message.h"

#define DEFAULT_FIDI 0x11
#define EMU_DEFAULT_MSG 271

/* --- set-up ------------------------------------------------------------------- */

static void
slot_power_state(emu_slot_t *s)
{
	s->powered = false;
	s->protocol = -1;
	s->cmd_len = 0;
	s->cmd_chain = false;
	s->resp_len = s->resp_off = 0;
	s->t1_sending = false;
	s->t1_ns = s->t1_nr = 0;
	s->t1_wtx_left = 0;
	s->t1_last_len = 0;
	s->card_fidi = s->reader_fidi = DEFAULT_FIDI;
	s->exchanged = false;
}

void
emu_iface_init(emu_iface_t *f)
{
	uint32_t level;

	if (f->cfg.nslots < 1 || f->cfg.nslots > EMU_MAX_SLOTS)
		f->cfg.nslots = 1;
	f->max_msg = f->cfg.max_msg_len ? f->cfg.max_msg_len : EMU_DEFAULT_MSG;
	switch (f->cfg.level) {
	case EMU_SHORT_APDU:
		level = TK_CCID_F_LEVEL_SHORT_APDU;
		break;
	case EMU_TPDU:
		level = TK_CCID_F_LEVEL_TPDU;
		break;
	default:
		level = TK_CCID_F_LEVEL_EXT_APDU;
		break;
	}
	if (f->cfg.auto_features != 0)
		f->features = level | (f->cfg.auto_features & ~TK_CCID_F_LEVEL_MASK);
	else if (f->cfg.level == EMU_TPDU)
		/* voltage, clock and baud rate by itself; the ATR's parameters,
		 * PPS and the IFSD are the host's job */
		f->features =
		        level | TK_CCID_F_AUTO_VOLTAGE | TK_CCID_F_AUTO_CLOCK | TK_CCID_F_AUTO_BAUD;
	else
		f->features = level | TK_CCID_F_AUTO_PARAM_ATR | TK_CCID_F_AUTO_VOLTAGE |
		              TK_CCID_F_AUTO_CLOCK | TK_CCID_F_AUTO_BAUD |
		              TK_CCID_F_AUTO_NEGOTIATION | TK_CCID_F_AUTO_PPS;
	g_queue_init(&f->bulk_q);
	g_queue_init(&f->intr_q);
	f->abort_seq = f->abort_slot = -1;
	for (unsigned i = 0; i < EMU_MAX_SLOTS; i++) {
		emu_slot_t *s = &f->slots[i];

		s->cmd = g_malloc(EMU_MAX_APDU);
		s->resp = g_malloc(EMU_MAX_RESP);
		slot_power_state(s);
	}
}

static void
flush(GQueue *q)
{
	emu_msg_t *m;

	while ((m = g_queue_pop_head(q)) != NULL)
		emu_msg_free(m);
}

void
emu_iface_clear(emu_iface_t *f)
{
	flush(&f->bulk_q);
	flush(&f->intr_q);
	for (unsigned i = 0; i < EMU_MAX_SLOTS; i++) {
		g_free(f->slots[i].cmd);
		g_free(f->slots[i].resp);
		f->slots[i].cmd = f->slots[i].resp = NULL;
	}
}

void
emu_iface_reset(emu_iface_t *f)
{
	flush(&f->bulk_q);
	flush(&f->intr_q);
	f->halted_out = f->halted_in = false;
	f->wedged_abort = f->wedged_reset = false;
	f->faults.stall_in = f->faults.stall_out = false;
	f->faults.wedge_abort = f->faults.wedge_reset = false;
	f->faults.mute = 0;
	f->abort_seq = f->abort_slot = -1;
	f->unanswered = false;
	for (unsigned i = 0; i < f->cfg.nslots; i++) {
		emu_slot_t *s = &f->slots[i];

		if (s->powered && s->card.power_off != NULL)
			s->card.power_off(s->card.ctx);
		slot_power_state(s);
	}
}

void
emu_intr(emu_iface_t *f, const uint8_t *p, size_t len)
{
	if (f->ep_intr == 0)
		return;
	emu_queue(&f->intr_q, p, len, 0);
}

void
emu_notify_slots(emu_iface_t *f, unsigned changed)
{
	uint8_t m[1 + (EMU_MAX_SLOTS * 2 + 7) / 8] = {TK_CCID_RDR_NOTIFY_SLOT_CHANGE};
	size_t n = 1 + (f->cfg.nslots * 2 + 7) / 8;

	for (unsigned i = 0; i < f->cfg.nslots; i++) {
		unsigned bits = (f->slots[i].present ? 1u : 0u) | (i == changed ? 2u : 0u);

		m[1 + i / 4] |= (uint8_t)(bits << ((i % 4) * 2));
	}
	emu_intr(f, m, n);
}

/* --- replies and the faults that act on them ------------------------------------ */

static uint8_t
icc(const emu_slot_t *s)
{
	return !s->present  ? TK_CCID_ICC_ABSENT
	       : s->powered ? TK_CCID_ICC_ACTIVE
	                    : TK_CCID_ICC_INACTIVE;
}

static void
reply(emu_iface_t *f, uint8_t type, uint8_t slot, uint8_t seq, uint8_t status, uint8_t error,
      uint8_t param, const uint8_t *data, size_t len)
{
	tk_ccid_reply_t rp = {.type = type,
	                      .slot = slot,
	                      .seq = seq,
	                      .status = status,
	                      .error = error,
	                      .param = param,
	                      .data = data,
	                      .len = len};
	ccid_emu_faults_t *ft = &f->faults;
	int64_t due = tk_now_us() + (int64_t)ft->delay_ms * 1000;
	uint8_t *buf = g_malloc(TK_CCID_HDR_LEN + len);
	size_t n = 0;

	for (; ft->stale > 0; ft->stale--) {
		/* replies to commands the host has given up on */
		uint8_t old[TK_CCID_HDR_LEN] = {
		        TK_CCID_RDR_SLOT_STATUS, 0, 0, 0, 0, slot, (uint8_t)(seq - ft->stale),
		        status & 0x03,           0, 0};

		emu_queue(&f->bulk_q, old, sizeof(old), due);
		f->counts.stale_sent++;
	}
	for (; ft->time_ext > 0; ft->time_ext--) {
		uint8_t te[TK_CCID_HDR_LEN] = {
		        type, 0,    0,   0,
		        0,    slot, seq, (uint8_t)(TK_CCID_CMD_TIME_EXTENSION << 6 | (status & 3)),
		        1,    0};

		emu_queue(&f->bulk_q, te, sizeof(te), due);
		due += (int64_t)ft->time_ext_ms * 1000;
		f->counts.time_ext_sent++;
	}
	if (ft->garbage > 0) {
		static const uint8_t junk[] = {0xEE, 0x13, 0x37, 0x00, 0x42, 0xFF, 0x00, 0x01,
		                               0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09};

		ft->garbage--;
		f->counts.garbage_sent++;
		emu_queue(&f->bulk_q, junk, sizeof(junk), due);
		g_free(buf);
		return;
	}
	if (tk_ccid_reply_encode(&rp, buf, TK_CCID_HDR_LEN + len, &n) == TK_OK)
		emu_queue(&f->bulk_q, buf, n, due);
	g_free(buf);
}

static void
fail(emu_iface_t *f, const tk_ccid_cmd_t *c, uint8_t type, uint8_t icc_status, uint8_t error)
{
	reply(f, type, c->slot, c->seq, (uint8_t)(TK_CCID_CMD_FAILED << 6 | icc_status), error, 0,
	      NULL, 0);
}

static void
data_block(emu_iface_t *f, const tk_ccid_cmd_t *c, const emu_slot_t *s, uint8_t chain,
           const uint8_t *data, size_t len)
{
	reply(f, TK_CCID_RDR_DATA_BLOCK, c->slot, c->seq, icc(s), 0, chain, data, len);
}

static size_t
card_apdu(emu_iface_t *f, emu_slot_t *s, const uint8_t *cmd, size_t len, uint8_t *resp, size_t cap)
{
	f->counts.apdus++;
	if (len >= 2) {
		f->counts.ins[cmd[1]]++;
		if (cmd[0] & 0x10)
			f->counts.cla_chained++;
	}
	if (s->card.process == NULL)
		return 0;
	return s->card.process(s->card.ctx, cmd, len, resp, cap);
}

/* --- power ------------------------------------------------------------------------- */

static void
power_on(emu_iface_t *f, emu_slot_t *s, const tk_ccid_cmd_t *c)
{
	tk_atr_t a;

	if (!s->present) {
		fail(f, c, TK_CCID_RDR_DATA_BLOCK, TK_CCID_ICC_ABSENT, TK_CCID_ERR_ICC_MUTE);
		return;
	}
	if (s->powered && s->card.power_off != NULL)
		s->card.power_off(s->card.ctx);
	slot_power_state(s);
	f->faults.mute_card = false; /* a new activation cures it */
	if (s->card.power_on != NULL)
		s->card.power_on(s->card.ctx);
	if (s->atr_override_len > 0) {
		memcpy(s->atr, s->atr_override, s->atr_override_len);
		s->atr_len = s->atr_override_len;
	} else {
		s->atr_len =
		        s->card.atr != NULL ? s->card.atr(s->card.ctx, s->atr, sizeof(s->atr)) : 0;
	}
	if (s->atr_len == 0 || tk_atr_parse(s->atr, s->atr_len, &a) != TK_OK) {
		fail(f, c, TK_CCID_RDR_DATA_BLOCK, TK_CCID_ICC_INACTIVE, TK_CCID_ERR_ICC_MUTE);
		return;
	}
	s->powered = true;
	s->protocol = (a.protocols & TK_ATR_PROTO_T1) ? 1 : 0;
	s->t1_crc = a.edc_crc;
	s->t1_ifsc = a.ifsc ? a.ifsc : 32;
	s->t1_ifsd = 32;
	/* A reader that negotiates by itself leaves card and reader at the
	 * ATR's rate; one that takes its parameters from the ATR but does no
	 * PPS talks at that rate to a card still at the default one, until the
	 * host sends a PPS. */
	if (f->features & (TK_CCID_F_AUTO_PPS | TK_CCID_F_AUTO_NEGOTIATION))
		s->card_fidi = s->reader_fidi = (a.present[0] & TK_ATR_TA) ? a.ta[0] : DEFAULT_FIDI;
	else if (f->features & TK_CCID_F_AUTO_PARAM_ATR)
		s->reader_fidi = (a.present[0] & TK_ATR_TA) ? a.ta[0] : DEFAULT_FIDI;
	f->counts.power_on++;
	data_block(f, c, s, 0, s->atr, s->atr_len);
}

static void
power_off(emu_iface_t *f, emu_slot_t *s, const tk_ccid_cmd_t *c)
{
	if (s->powered && s->card.power_off != NULL)
		s->card.power_off(s->card.ctx);
	slot_power_state(s);
	f->counts.power_off++;
	reply(f, TK_CCID_RDR_SLOT_STATUS, c->slot, c->seq, icc(s), 0, 0, NULL, 0);
}

static void
parameters(emu_iface_t *f, emu_slot_t *s, const tk_ccid_cmd_t *c)
{
	tk_ccid_params_t p;
	uint8_t buf[8];
	size_t n = 0;

	if (c->type == TK_CCID_PC_SET_PARAMETERS) {
		if (tk_ccid_params_parse(c->p[0], c->data, c->len, &p) != TK_OK) {
			fail(f, c, TK_CCID_RDR_PARAMETERS, icc(s), 10);
			return;
		}
		s->reader_fidi = p.fidi;
		f->counts.set_params++;
	} else if (c->type == TK_CCID_PC_RESET_PARAMETERS) {
		s->reader_fidi = DEFAULT_FIDI;
	}
	memset(&p, 0, sizeof(p));
	p.protocol = s->protocol == 0 ? 0 : 1;
	p.fidi = s->reader_fidi;
	p.tcckst = p.protocol ? (uint8_t)(0x10 | (s->t1_crc ? 1 : 0)) : 0;
	p.waiting = p.protocol ? 0x45 : 10;
	p.ifsc = (uint8_t)s->t1_ifsc;
	(void)tk_ccid_params_encode(&p, buf, sizeof(buf), &n);
	reply(f, TK_CCID_RDR_PARAMETERS, c->slot, c->seq, icc(s), 0, p.protocol, buf, n);
}

/* --- APDU levels -------------------------------------------------------------------- */

static void
send_resp_part(emu_iface_t *f, emu_slot_t *s, const tk_ccid_cmd_t *c)
{
	size_t max = f->max_msg - TK_CCID_HDR_LEN, left = s->resp_len - s->resp_off;
	size_t part = left > max ? max : left;
	uint8_t chain;

	if (s->resp_off == 0)
		chain = part == left ? TK_CCID_CHAIN_COMPLETE : TK_CCID_CHAIN_BEGIN;
	else
		chain = part == left ? TK_CCID_CHAIN_END : TK_CCID_CHAIN_MIDDLE;
	data_block(f, c, s, chain, s->resp + s->resp_off, part);
	s->resp_off += part;
}

static void
xfr_apdu(emu_iface_t *f, emu_slot_t *s, const tk_ccid_cmd_t *c)
{
	unsigned lp = c->p[1] | (unsigned)c->p[2] << 8;

	if (f->cfg.level == EMU_SHORT_APDU) {
		if (lp != 0) {
			fail(f, c, TK_CCID_RDR_DATA_BLOCK, icc(s), 8);
			return;
		}
		if (c->len > 261) {
			fail(f, c, TK_CCID_RDR_DATA_BLOCK, icc(s), 1);
			return;
		}
		s->resp_len = card_apdu(f, s, c->data, c->len, s->resp, 256 + 2);
		s->resp_off = 0;
		send_resp_part(f, s, c);
		return;
	}
	if (lp != 0)
		f->counts.xfr_chained++;
	switch (lp) {
	case TK_CCID_CHAIN_COMPLETE:
		s->cmd_chain = false;
		s->resp_len = card_apdu(f, s, c->data, c->len, s->resp, EMU_MAX_RESP);
		s->resp_off = 0;
		send_resp_part(f, s, c);
		return;
	case TK_CCID_CHAIN_BEGIN:
		s->cmd_len = 0;
		s->cmd_chain = true;
		/* fall through */
	case TK_CCID_CHAIN_MIDDLE:
	case TK_CCID_CHAIN_END:
		if (!s->cmd_chain || c->len > EMU_MAX_APDU - s->cmd_len) {
			s->cmd_chain = false;
			fail(f, c, TK_CCID_RDR_DATA_BLOCK, icc(s), 8);
			return;
		}
		memcpy(s->cmd + s->cmd_len, c->data, c->len);
		s->cmd_len += c->len;
		if (lp != TK_CCID_CHAIN_END) {
			data_block(f, c, s, TK_CCID_CHAIN_CONTINUE, NULL, 0);
			return;
		}
		s->cmd_chain = false;
		s->resp_len = card_apdu(f, s, s->cmd, s->cmd_len, s->resp, EMU_MAX_RESP);
		s->resp_off = 0;
		send_resp_part(f, s, c);
		return;
	case TK_CCID_CHAIN_CONTINUE:
		f->counts.resp_parts++;
		if (s->resp_off >= s->resp_len) {
			fail(f, c, TK_CCID_RDR_DATA_BLOCK, icc(s), 8);
			return;
		}
		send_resp_part(f, s, c);
		return;
	default:
		fail(f, c, TK_CCID_RDR_DATA_BLOCK, icc(s), 8);
		return;
	}
}

/* --- TPDU: PPS, T=1, T=0 --------------------------------------------------------------- */

static void
pps(emu_iface_t *f, emu_slot_t *s, const tk_ccid_cmd_t *c)
{
	uint8_t x = 0, out[6];
	size_t n = 0;
	uint8_t pps0;

	for (size_t i = 0; i < c->len; i++)
		x ^= c->data[i];
	f->counts.pps++;
	s->exchanged = true;
	if (x != 0 || c->len < 3) {
		fail(f, c, TK_CCID_RDR_DATA_BLOCK, icc(s), TK_CCID_ERR_ICC_MUTE);
		return;
	}
	pps0 = c->data[1];
	out[n++] = 0xFF;
	if (f->faults.reject_pps || !(pps0 & 0x10)) {
		/* the card keeps its default rate */
		out[n++] = pps0 & 0x0F;
		s->card_fidi = DEFAULT_FIDI;
		f->faults.reject_pps = false;
	} else {
		out[n++] = pps0 & 0x1F;
		out[n++] = c->data[2];
		s->card_fidi = c->data[2];
	}
	out[n] = 0;
	for (size_t i = 0; i < n; i++)
		out[n] ^= out[i];
	n++;
	data_block(f, c, s, 0, out, n);
}

static void
t1_send(emu_iface_t *f, emu_slot_t *s, const tk_ccid_cmd_t *c, uint8_t pcb, const uint8_t *inf,
        size_t len)
{
	uint8_t blk[TK_T1_MAX_BLOCK];
	size_t n = 0;

	if (tk_t1_block_build(0, pcb, inf, len, s->t1_crc, s->t1_last, sizeof(s->t1_last),
	                      &s->t1_last_len) != TK_OK)
		return;
	memcpy(blk, s->t1_last, s->t1_last_len);
	n = s->t1_last_len;
	if (f->faults.t1_bad_edc > 0) {
		f->faults.t1_bad_edc--;
		blk[n - 1] ^= 0x5A;
	}
	data_block(f, c, s, 0, blk, n);
}

static void
t1_resend(emu_iface_t *f, emu_slot_t *s, const tk_ccid_cmd_t *c)
{
	uint8_t blk[TK_T1_MAX_BLOCK];
	size_t n = s->t1_last_len;

	if (n == 0) {
		t1_send(f, s, c, TK_T1_PCB_R(s->t1_nr, TK_T1_R_OTHER), NULL, 0);
		return;
	}
	memcpy(blk, s->t1_last, n);
	if (f->faults.t1_bad_edc > 0) {
		f->faults.t1_bad_edc--;
		blk[n - 1] ^= 0x5A;
	}
	data_block(f, c, s, 0, blk, n);
}

/* Does an R-block with nr ask for our last block again? Yes when that was
 * an S-request, or the I-block with N(S) = nr. */
static bool
t1_lost(const emu_slot_t *s, uint8_t nr)
{
	uint8_t pcb = s->t1_last[1];

	if (s->t1_last_len == 0)
		return false;
	if ((pcb & 0xE0) == 0xC0)
		return true;
	return (pcb & 0x80) == 0 && ((pcb >> 6) & 1) == nr;
}

static void
t1_chunk(emu_iface_t *f, emu_slot_t *s, const tk_ccid_cmd_t *c)
{
	size_t left = s->resp_len - s->resp_off;
	size_t chunk = left > s->t1_ifsd ? s->t1_ifsd : left;
	bool more = chunk < left;

	s->t1_chunk = chunk;
	s->t1_sending = more;
	t1_send(f, s, c, TK_T1_PCB_I(s->t1_ns, more), s->resp + s->resp_off, chunk);
	if (!more) {
		s->t1_ns ^= 1;
		s->resp_off += chunk;
	}
}

/* After the APDU: waiting time extensions first if asked, then the answer. */
static void
t1_answer(emu_iface_t *f, emu_slot_t *s, const tk_ccid_cmd_t *c)
{
	uint8_t v;

	if (s->t1_wtx_left > 0) {
		s->t1_wtx_left--;
		v = 1;
		t1_send(f, s, c, TK_T1_PCB_S(TK_T1_S_WTX, false), &v, 1);
		return;
	}
	if (f->faults.t1_ifs != 0) {
		v = (uint8_t)f->faults.t1_ifs;
		f->faults.t1_ifs = 0;
		t1_send(f, s, c, TK_T1_PCB_S(TK_T1_S_IFS, false), &v, 1);
		return;
	}
	s->resp_off = 0;
	t1_chunk(f, s, c);
}

static void
t1_card(emu_iface_t *f, emu_slot_t *s, const tk_ccid_cmd_t *c)
{
	tk_t1_block_t k;
	int r;

	f->counts.t1_blocks++;
	r = tk_t1_block_parse(c->data, c->len, s->t1_crc, &k);
	if (r != TK_OK) {
		t1_send(f, s, c,
		        TK_T1_PCB_R(s->t1_nr,
		                    r == TK_ERR_BAD_CHECKSUM ? TK_T1_R_EDC : TK_T1_R_OTHER),
		        NULL, 0);
		return;
	}
	switch (k.kind) {
	case TK_T1_S:
		if (!k.sresponse && k.stype == TK_T1_S_IFS) {
			f->counts.t1_ifs_req++;
			s->t1_ifsd = k.inf[0];
			t1_send(f, s, c, TK_T1_PCB_S(TK_T1_S_IFS, true), k.inf, 1);
		} else if (!k.sresponse && k.stype == TK_T1_S_RESYNCH) {
			f->counts.t1_resynch++;
			s->t1_ns = s->t1_nr = 0;
			s->t1_sending = false;
			s->cmd_len = 0;
			t1_send(f, s, c, TK_T1_PCB_S(TK_T1_S_RESYNCH, true), NULL, 0);
		} else if (!k.sresponse && k.stype == TK_T1_S_ABORT) {
			s->t1_sending = false;
			s->cmd_len = 0;
			t1_send(f, s, c, TK_T1_PCB_S(TK_T1_S_ABORT, true), NULL, 0);
		} else if (k.sresponse && (k.stype == TK_T1_S_WTX || k.stype == TK_T1_S_IFS)) {
			if (k.stype == TK_T1_S_WTX)
				f->counts.t1_wtx_resp++;
			else
				s->t1_ifsc = k.inf[0];
			t1_answer(f, s, c);
		} else {
			t1_send(f, s, c, TK_T1_PCB_R(s->t1_nr, TK_T1_R_OTHER), NULL, 0);
		}
		return;
	case TK_T1_R:
		f->counts.t1_r_blocks++;
		if (s->t1_sending && k.nr != s->t1_ns) {
			/* next part of our chain, please */
			s->t1_ns ^= 1;
			s->resp_off += s->t1_chunk;
			t1_chunk(f, s, c);
		} else if (t1_lost(s, k.nr)) {
			t1_resend(f, s, c);
		} else {
			/* we have nothing outstanding: send your I-block again */
			t1_send(f, s, c, TK_T1_PCB_R(s->t1_nr, TK_T1_R_OK), NULL, 0);
		}
		return;
	case TK_T1_I:
		if (s->t1_sending) {
			t1_send(f, s, c, TK_T1_PCB_R(s->t1_nr, TK_T1_R_OTHER), NULL, 0);
			return;
		}
		if (k.ns != s->t1_nr) {
			/* the host sends its block again: our answer was lost */
			t1_resend(f, s, c);
			return;
		}
		if (k.len > EMU_MAX_APDU - s->cmd_len) {
			s->cmd_len = 0;
			t1_send(f, s, c, TK_T1_PCB_R(s->t1_nr, TK_T1_R_OTHER), NULL, 0);
			return;
		}
		memcpy(s->cmd + s->cmd_len, k.inf, k.len);
		s->cmd_len += k.len;
		s->t1_nr ^= 1;
		if (k.more) {
			t1_send(f, s, c, TK_T1_PCB_R(s->t1_nr, TK_T1_R_OK), NULL, 0);
			return;
		}
		s->resp_len = card_apdu(f, s, s->cmd, s->cmd_len, s->resp, EMU_MAX_RESP);
		s->cmd_len = 0;
		s->t1_wtx_left = f->faults.t1_wtx;
		f->faults.t1_wtx = 0;
		t1_answer(f, s, c);
		return;
	}
}

static void
t0_card(emu_iface_t *f, emu_slot_t *s, const tk_ccid_cmd_t *c)
{
	uint8_t *r = s->resp, out[258], apdu[5 + 256];
	size_t n, dl, le;

	if (c->len < 5) {
		fail(f, c, TK_CCID_RDR_DATA_BLOCK, icc(s), 1);
		return;
	}
	le = c->data[4] ? c->data[4] : 256;
	if (c->len == 5) {
		if (c->data[1] == 0xC0 && s->resp_off < s->resp_len) {
			/* GET RESPONSE from what a case 4 command left */
			size_t left = s->resp_len - s->resp_off, give = left < le ? left : le;

			f->counts.t0_get_response++;
			memcpy(out, r + s->resp_off, give);
			s->resp_off += give;
			left -= give;
			out[give] = left ? 0x61 : s->t0_sw1;
			out[give + 1] = left ? (uint8_t)(left > 255 ? 0 : left) : s->t0_sw2;
			data_block(f, c, s, 0, out, give + 2);
			return;
		}
		if (c->data[1] == 0xC0)
			f->counts.t0_get_response++;
		/* case 1 or 2: P3 is Le */
		n = card_apdu(f, s, c->data, 5, out, sizeof(out));
		if (n < 2) {
			fail(f, c, TK_CCID_RDR_DATA_BLOCK, icc(s), TK_CCID_ERR_ICC_MUTE);
			return;
		}
		dl = n - 2;
		if (dl > 0 && dl < le && out[dl] == 0x90) {
			/* wrong Le: a T=0 card says how much it has */
			uint8_t sw[2] = {0x6C, (uint8_t)dl};

			data_block(f, c, s, 0, sw, 2);
			return;
		}
		data_block(f, c, s, 0, out, n);
		return;
	}
	/* case 3 or 4: P3 is Lc, no Le; data waits for GET RESPONSE */
	if (c->len - 5 != c->data[4]) {
		uint8_t sw[2] = {0x67, 0x00};

		data_block(f, c, s, 0, sw, 2);
		return;
	}
	memcpy(apdu, c->data, c->len);
	n = card_apdu(f, s, apdu, c->len, r, EMU_MAX_RESP);
	if (n < 2) {
		fail(f, c, TK_CCID_RDR_DATA_BLOCK, icc(s), TK_CCID_ERR_ICC_MUTE);
		return;
	}
	dl = n - 2;
	s->resp_len = dl;
	s->resp_off = 0;
	s->t0_sw1 = r[dl];
	s->t0_sw2 = r[dl + 1];
	if (dl > 0) {
		uint8_t sw[2] = {0x61, (uint8_t)(dl > 255 ? 0 : dl)};

		data_block(f, c, s, 0, sw, 2);
		return;
	}
	data_block(f, c, s, 0, r + dl, 2);
}

/* --- PIN pad -------------------------------------------------------------------------- */

/* Write a PIN into the APDU's data at byte offset off, as bmFormatString says. */
static bool
put_pin(const tk_ccid_pin_op_t *op, uint8_t *apdu, size_t len, size_t off, const char *pin)
{
	unsigned type = op->format & 0x03;
	size_t n = strlen(pin), at = 5 + off;

	if (n < op->min_len || n > op->max_len)
		return false;
	if (type == TK_CCID_PIN_FMT_BCD) {
		for (size_t i = 0; i < n; i++) {
			size_t b = at + i / 2;

			if (b >= len)
				return false;
			if (i % 2 == 0)
				apdu[b] = (uint8_t)((apdu[b] & 0x0F) | (pin[i] - '0') << 4);
			else
				apdu[b] = (uint8_t)((apdu[b] & 0xF0) | (pin[i] - '0'));
		}
		return true;
	}
	if (at + n > len)
		return false;
	for (size_t i = 0; i < n; i++)
		apdu[at + i] =
		        type == TK_CCID_PIN_FMT_ASCII ? (uint8_t)pin[i] : (uint8_t)(pin[i] - '0');
	return true;
}

static void
secure(emu_iface_t *f, emu_slot_t *s, const tk_ccid_cmd_t *c)
{
	tk_ccid_pin_op_t op;
	uint8_t apdu[300];
	bool ok;

	if (tk_ccid_pin_parse(c->data, c->len, &op) != TK_OK || op.apdu_len > sizeof(apdu)) {
		fail(f, c, TK_CCID_RDR_DATA_BLOCK, icc(s), 10);
		return;
	}
	f->counts.secure++;
	if ((op.operation == TK_CCID_PIN_OP_VERIFY && !(f->cfg.pin_support & TK_CCID_PIN_VERIFY)) ||
	    (op.operation == TK_CCID_PIN_OP_MODIFY && !(f->cfg.pin_support & TK_CCID_PIN_MODIFY))) {
		fail(f, c, TK_CCID_RDR_DATA_BLOCK, icc(s), TK_CCID_ERR_CMD_NOT_SUPPORTED);
		return;
	}
	if (!s->powered) {
		fail(f, c, TK_CCID_RDR_DATA_BLOCK, icc(s), TK_CCID_ERR_ICC_MUTE);
		return;
	}
	if (f->pin_action != EMU_PIN_ENTER) {
		fail(f, c, TK_CCID_RDR_DATA_BLOCK, icc(s),
		     f->pin_action == EMU_PIN_CANCEL ? TK_CCID_ERR_PIN_CANCELLED
		                                     : TK_CCID_ERR_PIN_TIMEOUT);
		return;
	}
	memcpy(apdu, op.apdu, op.apdu_len);
	if (op.operation == TK_CCID_PIN_OP_VERIFY) {
		f->counts.pin_entries++;
		ok = put_pin(&op, apdu, op.apdu_len, (op.format >> 3) & 0x0F, f->pin);
	} else {
		/* bConfirmPIN (CCID 1.1, 6.1.11.7): bit 1, the pad asks for
		 * the current PIN (else the template keeps what it holds
		 * there); the new PIN; bit 0, the new PIN again */
		f->counts.modify_secure++;
		ok = true;
		if (op.confirm & 0x02) {
			f->counts.pin_entries++;
			ok = put_pin(&op, apdu, op.apdu_len, op.offset_old, f->pin);
		}
		f->counts.pin_entries++;
		ok = ok && put_pin(&op, apdu, op.apdu_len, op.offset_new, f->new_pin);
		if (ok && (op.confirm & 0x01)) {
			f->counts.pin_entries++;
			ok = f->confirm_pin[0] == '\0' || strcmp(f->confirm_pin, f->new_pin) == 0;
		}
	}
	if (!ok) {
		fail(f, c, TK_CCID_RDR_DATA_BLOCK, icc(s), TK_CCID_ERR_PIN_CANCELLED);
		return;
	}
	memcpy(f->last_pin_apdu, apdu, op.apdu_len);
	f->last_pin_apdu_len = op.apdu_len;
	if (f->cfg.level == EMU_TPDU) {
		/* The reader sent the I-block whose prologue the host gave. */
		if (s->protocol != 1 || ((op.teo_prologue[1] >> 6) & 1) != s->t1_nr) {
			fail(f, c, TK_CCID_RDR_DATA_BLOCK, icc(s), TK_CCID_ERR_XFR_PARITY);
			return;
		}
		s->t1_nr ^= 1;
		s->resp_len = card_apdu(f, s, apdu, op.apdu_len, s->resp, EMU_MAX_RESP);
		t1_answer(f, s, c);
		return;
	}
	s->resp_len = card_apdu(f, s, apdu, op.apdu_len, s->resp, EMU_MAX_RESP);
	s->resp_off = 0;
	send_resp_part(f, s, c);
}

/* --- the reader ----------------------------------------------------------------------- */

void
emu_abort_request(emu_iface_t *f, unsigned slot, unsigned seq)
{
	f->counts.abort_requests++;
	if (f->wedged_reset)
		return;
	f->abort_slot = (int)slot;
	f->abort_seq = (int)seq;
}

static void
abort_msg(emu_iface_t *f, const tk_ccid_cmd_t *c)
{
	if (f->abort_seq != c->seq || f->abort_slot != c->slot) {
		fail(f, c, TK_CCID_RDR_SLOT_STATUS, TK_CCID_ICC_ACTIVE,
		     TK_CCID_ERR_CMD_NOT_SUPPORTED);
		return;
	}
	if (f->unanswered) {
		/* the aborted command ends now */
		tk_ccid_cmd_t old = {.slot = f->unanswered_slot, .seq = f->unanswered_seq};

		fail(f, &old, TK_CCID_RDR_DATA_BLOCK, TK_CCID_ICC_ACTIVE, TK_CCID_ERR_CMD_ABORTED);
		f->unanswered = false;
	}
	f->abort_seq = f->abort_slot = -1;
	f->wedged_abort = false;
	f->faults.wedge_abort = false;
	f->faults.mute = 0;
	f->counts.aborts_done++;
	reply(f, TK_CCID_RDR_SLOT_STATUS, c->slot, c->seq,
	      c->slot < f->cfg.nslots ? icc(&f->slots[c->slot]) : 0, 0, 0, NULL, 0);
}

void
emu_bulk_out(emu_iface_t *f, const uint8_t *p, size_t len)
{
	tk_ccid_cmd_t c;
	emu_slot_t *s;

	if (tk_ccid_cmd_parse(p, len, &c) != TK_OK)
		return; /* not a message: a real reader ignores it too */
	f->counts.msgs[c.type]++;
	if (f->wedged_reset) {
		f->counts.mute_dropped++;
		return;
	}
	if (c.type == TK_CCID_PC_ABORT) {
		abort_msg(f, &c);
		return;
	}
	if (f->wedged_abort || f->faults.mute > 0) {
		if (f->faults.mute > 0)
			f->faults.mute--;
		f->counts.mute_dropped++;
		f->unanswered = true;
		f->unanswered_seq = c.seq;
		f->unanswered_slot = c.slot;
		return;
	}
	if (c.slot >= f->cfg.nslots) {
		fail(f, &c, TK_CCID_RDR_SLOT_STATUS, TK_CCID_ICC_ABSENT, 5);
		return;
	}
	s = &f->slots[c.slot];
	switch (c.type) {
	case TK_CCID_PC_ICC_POWER_ON:
		power_on(f, s, &c);
		break;
	case TK_CCID_PC_ICC_POWER_OFF:
		power_off(f, s, &c);
		break;
	case TK_CCID_PC_GET_SLOT_STATUS:
		reply(f, TK_CCID_RDR_SLOT_STATUS, c.slot, c.seq, icc(s), 0, 0, NULL, 0);
		break;
	case TK_CCID_PC_GET_PARAMETERS:
	case TK_CCID_PC_RESET_PARAMETERS:
	case TK_CCID_PC_SET_PARAMETERS:
		parameters(f, s, &c);
		break;
	case TK_CCID_PC_ESCAPE:
		reply(f, TK_CCID_RDR_ESCAPE, c.slot, c.seq, icc(s), 0, 0, c.data, c.len);
		break;
	case TK_CCID_PC_ICC_CLOCK:
		reply(f, TK_CCID_RDR_SLOT_STATUS, c.slot, c.seq, icc(s), 0, 0, NULL, 0);
		break;
	case TK_CCID_PC_SECURE:
		if (!s->present) {
			fail(f, &c, TK_CCID_RDR_DATA_BLOCK, TK_CCID_ICC_ABSENT,
			     TK_CCID_ERR_ICC_MUTE);
			break;
		}
		secure(f, s, &c);
		break;
	case TK_CCID_PC_XFR_BLOCK:
		if (!s->present) {
			fail(f, &c, TK_CCID_RDR_DATA_BLOCK, TK_CCID_ICC_ABSENT,
			     TK_CCID_ERR_ICC_MUTE);
			break;
		}
		if (!s->powered) {
			fail(f, &c, TK_CCID_RDR_DATA_BLOCK, TK_CCID_ICC_INACTIVE,
			     TK_CCID_ERR_DEACTIVATED_PROTOCOL);
			break;
		}
		if (f->faults.icc_mute > 0 || f->faults.mute_card) {
			if (f->faults.icc_mute > 0)
				f->faults.icc_mute--;
			fail(f, &c, TK_CCID_RDR_DATA_BLOCK, TK_CCID_ICC_ACTIVE,
			     TK_CCID_ERR_ICC_MUTE);
			break;
		}
		if (f->cfg.level != EMU_TPDU) {
			xfr_apdu(f, s, &c);
			break;
		}
		if (!s->exchanged && c.len >= 3 && c.data[0] == 0xFF) {
			pps(f, s, &c);
			break;
		}
		s->exchanged = true;
		if (s->card_fidi != s->reader_fidi) {
			/* reader and card at different rates: noise */
			fail(f, &c, TK_CCID_RDR_DATA_BLOCK, TK_CCID_ICC_ACTIVE,
			     TK_CCID_ERR_XFR_PARITY);
			break;
		}
		if (s->protocol == 1)
			t1_card(f, s, &c);
		else
			t0_card(f, s, &c);
		break;
	default:
		fail(f, &c, TK_CCID_RDR_SLOT_STATUS, icc(s), TK_CCID_ERR_CMD_NOT_SUPPORTED);
		break;
	}
}
