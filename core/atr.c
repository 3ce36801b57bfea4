/* tokenkit: Answer-to-Reset (ISO/IEC 7816-3 section 8, ISO/IEC 7816-4 8.1.1). */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include <tokenkit/atr.h>
#include <tokenkit/buf.h>
#include <tokenkit/err.h>
#include <tokenkit/tlv.h>

/* ISO/IEC 7816-3 Table 7: clock rate conversion factor Fi and f(max) in kHz
 * by the high nibble of TA1; 0 marks the reserved codes. */
static const unsigned fi_table[16] = {372, 372, 558, 744,  1116, 1488, 1860, 0,
                                      0,   512, 768, 1024, 1536, 2048, 0,    0};
static const unsigned fmax_table[16] = {4000, 5000, 6000, 8000,  12000, 16000, 20000, 0,
                                        0,    5000, 7500, 10000, 15000, 20000, 0,     0};
/* Table 8: baud rate adjustment factor Di by the low nibble of TA1. */
static const unsigned di_table[16] = {0, 1, 2, 4, 8, 16, 32, 64, 12, 20, 0, 0, 0, 0, 0, 0};

/* The protocol announced by the TD before group idx (idx >= 1). */
static unsigned
group_protocol(const tk_atr_t *a, unsigned idx)
{
	return a->td[idx - 1] & 0x0F;
}

/* Index of the first group of protocol T (groups 3 onwards) holding byte
 * bit, or -1. */
static int
first_specific(const tk_atr_t *a, unsigned t, uint8_t bit)
{
	for (unsigned i = 2; i < a->levels; i++)
		if (group_protocol(a, i) == t && (a->present[i] & bit))
			return (int)i;
	return -1;
}

static void
decode_status(tk_atr_hist_t *h, const uint8_t *v, size_t n)
{
	h->has_status = true;
	if (n == 1 || n == 3) {
		h->has_lcs = true;
		h->lcs = v[0];
	}
	if (n >= 2) {
		h->has_sw = true;
		h->sw = (uint16_t)(v[n - 2] << 8 | v[n - 1]);
	}
}

static bool
decode_compact(tk_atr_hist_t *h, const uint8_t *p, size_t n)
{
	tk_buf_t b;
	tk_tlv_t t;

	tk_buf_init(&b, p, n);
	while (tk_buf_left(&b) > 0) {
		if (tk_ctlv_get(&b, &t) != TK_OK || h->obj[t.tag].present)
			return false;
		h->obj[t.tag].present = true;
		h->obj[t.tag].len = (uint8_t)t.len;
		if (t.len > 0)
			memcpy(h->obj[t.tag].v, t.value, t.len);
	}
	return true;
}

static void
decode_hist(tk_atr_t *a)
{
	tk_atr_hist_t *h = &a->h;
	size_t k = a->hist_len;

	if (k == 0)
		return;
	h->category = a->hist[0];
	switch (h->category) {
	case 0x00:
		/* Compact-TLV objects, then a mandatory 3-byte status indicator. */
		if (k < 4 || !decode_compact(h, a->hist + 1, k - 4))
			goto bad;
		if (h->obj[TK_ATR_CTAG_STATUS].present)
			goto bad;
		decode_status(h, a->hist + k - 3, 3);
		break;
	case 0x10:
		if (k != 2)
			goto bad;
		h->has_dir_ref = true;
		h->dir_ref = a->hist[1];
		break;
	case 0x80:
		/* PC/SC Part 3 (contactless storage cards) puts a BER-TLV AID here:
		 * 80 4F len AID. As compact-TLV, 4F would announce 15 bytes, which
		 * can never fit after the category byte, so this is unambiguous. */
		if (k >= 3 && a->hist[1] == 0x4F && a->hist[2] == k - 3) {
			h->obj[TK_ATR_CTAG_AID].present = true;
			h->obj[TK_ATR_CTAG_AID].len = (uint8_t)(k - 3);
			memcpy(h->obj[TK_ATR_CTAG_AID].v, a->hist + 3, k - 3);
			break;
		}
		if (!decode_compact(h, a->hist + 1, k - 1))
			goto bad;
		if (h->obj[TK_ATR_CTAG_STATUS].present) {
			uint8_t n = h->obj[TK_ATR_CTAG_STATUS].len;

			if (n < 1 || n > 3)
				goto bad;
			decode_status(h, h->obj[TK_ATR_CTAG_STATUS].v, n);
		}
		break;
	default:
		return; /* proprietary or reserved */
	}
	h->valid = true;
	return;
bad:
	memset(h, 0, sizeof(*h));
	h->category = a->hist[0];
}

static void
decode_params(tk_atr_t *a)
{
	int i;

	a->fi = 372;
	a->di = 1;
	a->fmax_khz = 5000;
	a->fi_code = 1;
	a->di_code = 1;
	if (a->present[0] & TK_ATR_TA) {
		a->fi_code = a->ta[0] >> 4;
		a->di_code = a->ta[0] & 0x0F;
		a->fi = fi_table[a->fi_code];
		a->fmax_khz = fmax_table[a->fi_code];
		a->di = di_table[a->di_code];
	}
	if (a->present[0] & TK_ATR_TC)
		a->extra_guard = a->tc[0];
	a->wi = 10;
	if (a->levels > 1) {
		if (a->present[1] & TK_ATR_TA) {
			a->specific_mode = true;
			a->specific_protocol = a->ta[1] & 0x0F;
			a->mode_changeable = (a->ta[1] & 0x80) == 0;
			a->implicit_params = (a->ta[1] & 0x10) != 0;
		}
		if (a->present[1] & TK_ATR_TC)
			a->wi = a->tc[1];
	}
	a->ifsc = 32;
	a->cwi = 13;
	a->bwi = 4;
	if ((i = first_specific(a, 1, TK_ATR_TA)) >= 0)
		a->ifsc = a->ta[i];
	if ((i = first_specific(a, 1, TK_ATR_TB)) >= 0) {
		a->cwi = a->tb[i] & 0x0F;
		a->bwi = a->tb[i] >> 4;
	}
	if ((i = first_specific(a, 1, TK_ATR_TC)) >= 0)
		a->edc_crc = (a->tc[i] & 0x01) != 0;
	if ((i = first_specific(a, 15, TK_ATR_TA)) >= 0) {
		a->has_t15_ta = true;
		a->clock_stop = a->ta[i] >> 6;
		a->classes = a->ta[i] & 0x3F;
	}
}

int
tk_atr_parse(const uint8_t *atr, size_t len, tk_atr_t *out)
{
	tk_buf_t b;
	uint8_t y, x = 0;
	unsigned lvl = 0;
	int r;

	if (out == NULL)
		return TK_ERR_INVALID_ARG;
	memset(out, 0, sizeof(*out));
	if (atr == NULL && len > 0)
		return TK_ERR_INVALID_ARG;
	if (len > TK_ATR_MAX_LEN)
		return TK_ERR_MALFORMED;
	tk_buf_init(&b, atr, len);
	if ((r = tk_buf_get_u8(&b, &out->ts)) != TK_OK)
		goto fail;
	if (out->ts != 0x3B && out->ts != 0x3F) {
		r = TK_ERR_MALFORMED;
		goto fail;
	}
	out->inverse = out->ts == 0x3F;
	if ((r = tk_buf_get_u8(&b, &out->t0)) != TK_OK)
		goto fail;
	y = out->t0 >> 4;
	for (;;) {
		if (lvl >= TK_ATR_MAX_LEVELS) {
			r = TK_ERR_MALFORMED;
			goto fail;
		}
		if ((y & 0x1) && (r = tk_buf_get_u8(&b, &out->ta[lvl])) != TK_OK)
			goto fail;
		if ((y & 0x2) && (r = tk_buf_get_u8(&b, &out->tb[lvl])) != TK_OK)
			goto fail;
		if ((y & 0x4) && (r = tk_buf_get_u8(&b, &out->tc[lvl])) != TK_OK)
			goto fail;
		if ((y & 0x8) && (r = tk_buf_get_u8(&b, &out->td[lvl])) != TK_OK)
			goto fail;
		out->present[lvl] = y;
		lvl++;
		if (!(y & 0x8))
			break;
		{
			unsigned t = out->td[lvl - 1] & 0x0F;

			out->protocols |= 1u << t;
			if (lvl == 1)
				out->first_protocol = t;
			if (t != 0)
				out->tck_required = true;
		}
		y = out->td[lvl - 1] >> 4;
	}
	out->levels = lvl;
	if (!(out->present[0] & TK_ATR_TD))
		out->protocols = TK_ATR_PROTO_T0;
	out->hist_len = out->t0 & 0x0F;
	if ((r = tk_buf_get_bytes(&b, out->hist, out->hist_len)) != TK_OK)
		goto fail;
	/* TCK is mandatory unless only T=0 is offered; a T=0 card that sends
	 * one anyway gets it checked too. */
	if (out->tck_required || tk_buf_left(&b) == 1) {
		if ((r = tk_buf_get_u8(&b, &out->tck)) != TK_OK)
			goto fail;
		out->tck_present = true;
	}
	if (tk_buf_left(&b) != 0) {
		r = TK_ERR_MALFORMED;
		goto fail;
	}
	memcpy(out->raw, atr, len);
	out->len = len;
	if (out->tck_present) {
		for (size_t i = 1; i < len; i++)
			x ^= atr[i];
		if (x != 0) {
			r = TK_ERR_BAD_CHECKSUM;
			goto fail;
		}
	}
	decode_params(out);
	decode_hist(out);
	return TK_OK;
fail:
	memset(out, 0, sizeof(*out));
	return r;
}

bool
tk_atr_extended_length(const tk_atr_t *a)
{
	if (a == NULL || !a->h.valid || a->h.obj[TK_ATR_CTAG_CAPABILITIES].len < 3)
		return false;
	return (a->h.obj[TK_ATR_CTAG_CAPABILITIES].v[2] & TK_ATR_CAP3_EXTENDED) != 0;
}

bool
tk_atr_command_chaining(const tk_atr_t *a)
{
	if (a == NULL || !a->h.valid || a->h.obj[TK_ATR_CTAG_CAPABILITIES].len < 3)
		return false;
	return (a->h.obj[TK_ATR_CTAG_CAPABILITIES].v[2] & TK_ATR_CAP3_CHAINING) != 0;
}

/* describe ---------------------------------------------------------------- */

struct out {
	char *p;
	size_t cap, len;
	bool cut;
};

static void out_printf(struct out *o, const char *fmt, ...) TK_PRINTF(2, 3);

static void
out_printf(struct out *o, const char *fmt, ...)
{
	va_list ap;
	int n;

	if (o->cut)
		return;
	va_start(ap, fmt);
	n = vsnprintf(o->p + o->len, o->cap - o->len, fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= o->cap - o->len) {
		o->cut = true;
		o->len = o->cap - 1;
		o->p[o->len] = '\0';
		return;
	}
	o->len += (size_t)n;
}

static void
out_hex(struct out *o, const uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		out_printf(o, "%s%02X", i > 0 ? " " : "", p[i]);
}

static void
out_text(struct out *o, const uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (p[i] < 0x20 || p[i] > 0x7E)
			return;
	out_printf(o, " \"");
	for (size_t i = 0; i < n; i++)
		out_printf(o, "%c", (char)p[i]);
	out_printf(o, "\"");
}

static const char *
ctag_name(unsigned tag)
{
	switch (tag) {
	case TK_ATR_CTAG_COUNTRY:
		return "country code and national data";
	case TK_ATR_CTAG_ISSUER_ID:
		return "issuer identification number";
	case TK_ATR_CTAG_SERVICE_DATA:
		return "card service data";
	case TK_ATR_CTAG_INITIAL_ACCESS:
		return "initial access data";
	case TK_ATR_CTAG_ISSUER_DATA:
		return "card issuer's data";
	case TK_ATR_CTAG_PRE_ISSUING:
		return "pre-issuing data";
	case TK_ATR_CTAG_CAPABILITIES:
		return "card capabilities";
	case TK_ATR_CTAG_STATUS:
		return "status indicator";
	case TK_ATR_CTAG_AID:
		return "application identifier";
	default:
		return "reserved";
	}
}

static void
describe_fidi(struct out *o, const tk_atr_t *a)
{
	out_printf(o, ": Fi = ");
	if (a->fi != 0)
		out_printf(o, "%u, f max = %u.%u MHz", a->fi, a->fmax_khz / 1000,
		           a->fmax_khz % 1000 / 100);
	else
		out_printf(o, "RFU");
	out_printf(o, ", Di = ");
	if (a->di != 0)
		out_printf(o, "%u", a->di);
	else
		out_printf(o, "RFU");
}

static void
describe_iface(struct out *o, const tk_atr_t *a, unsigned i, char which, uint8_t v)
{
	unsigned t = i > 0 ? group_protocol(a, i) : 0;

	out_printf(o, "T%c%u = %02X", which, i + 1, v);
	if (i == 0 && which == 'A')
		describe_fidi(o, a);
	else if (i < 2 && which == 'B')
		out_printf(o, ": programming voltage (deprecated)");
	else if (i == 0 && which == 'C')
		out_printf(o, ": extra guard time N = %u", v);
	else if (i == 1 && which == 'A')
		out_printf(o, ": specific mode T=%u, %s, %s parameters", v & 0x0F,
		           v & 0x80 ? "not changeable" : "changeable",
		           v & 0x10 ? "implicit" : "TA1");
	else if (i == 1 && which == 'C')
		out_printf(o, ": waiting integer WI = %u (T=0)", v);
	else if (which == 'D')
		out_printf(o, ": T=%u%s", v & 0x0F,
		           (v & 0x0F) == 15 ? " (global bytes follow)" : "");
	else if (t == 1 && which == 'A' && first_specific(a, 1, TK_ATR_TA) == (int)i)
		out_printf(o, ": IFSC = %u (T=1)", v);
	else if (t == 1 && which == 'B' && first_specific(a, 1, TK_ATR_TB) == (int)i)
		out_printf(o, ": BWI = %u, CWI = %u (T=1)", v >> 4, v & 0x0F);
	else if (t == 1 && which == 'C' && first_specific(a, 1, TK_ATR_TC) == (int)i)
		out_printf(o, ": error detection %s (T=1)", v & 1 ? "CRC" : "LRC");
	else if (t == 15 && which == 'A' && first_specific(a, 15, TK_ATR_TA) == (int)i)
		out_printf(o, ": clock stop %u, classes%s%s%s", v >> 6, v & 1 ? " A (5 V)" : "",
		           v & 2 ? " B (3 V)" : "", v & 4 ? " C (1.8 V)" : "");
	else if (t == 15 && which == 'B')
		out_printf(o, ": SPU %02X", v);
	else
		out_printf(o, ": for T=%u", t);
	out_printf(o, "\n");
}

static void
describe_caps(struct out *o, const uint8_t *v, size_t n)
{
	static const char *const sel[8] = {"record identifier",
	                                   "record number",
	                                   "short EF identifier",
	                                   "implicit DF selection",
	                                   "selection by file identifier",
	                                   "selection by path",
	                                   "selection by partial DF name",
	                                   "selection by full DF name"};

	if (n >= 1) {
		out_printf(o, "    selection methods:");
		for (int b = 7; b >= 0; b--)
			if (v[0] & (1u << b))
				out_printf(o, " [%s]", sel[b]);
		out_printf(o, "\n");
	}
	if (n >= 2)
		out_printf(o, "    data coding byte %02X: data unit %u quartets, FF tags %s\n",
		           v[1], 1u << (v[1] & 0x0F), v[1] & 0x10 ? "valid" : "invalid (padding)");
	if (n >= 3) {
		unsigned ch = (v[2] & 0x07) + 1;

		out_printf(o,
		           "    command chaining: %s, extended Lc/Le: %s, logical channels: %u%s\n",
		           v[2] & 0x80 ? "yes" : "no", v[2] & 0x40 ? "yes" : "no", ch,
		           ch == 8 ? " or more" : "");
	}
}

static void
describe_hist(struct out *o, const tk_atr_t *a)
{
	const tk_atr_hist_t *h = &a->h;

	if (a->hist_len == 0)
		return;
	out_printf(o, "Historical bytes: ");
	out_hex(o, a->hist, a->hist_len);
	out_printf(o, "\n");
	if (!h->valid) {
		if (h->category == 0x00 || h->category == 0x10 || h->category == 0x80)
			out_printf(o, "  category %02X: malformed\n", h->category);
		else
			out_printf(o, "  category %02X: proprietary\n", h->category);
		return;
	}
	if (h->has_dir_ref) {
		out_printf(o, "  category 10: DIR data reference %02X\n", h->dir_ref);
		return;
	}
	out_printf(o, "  category %02X: compact-TLV%s\n", h->category,
	           h->category == 0x00 ? " and status indicator" : "");
	for (unsigned t = 1; t < 16; t++) {
		if (!h->obj[t].present || h->obj[t].len > sizeof(h->obj[t].v))
			continue;
		out_printf(o, "  %X%X %s: ", 4u, t, ctag_name(t));
		out_hex(o, h->obj[t].v, h->obj[t].len);
		if (t == TK_ATR_CTAG_ISSUER_DATA || t == TK_ATR_CTAG_PRE_ISSUING)
			out_text(o, h->obj[t].v, h->obj[t].len);
		out_printf(o, "\n");
		if (t == TK_ATR_CTAG_CAPABILITIES)
			describe_caps(o, h->obj[t].v, h->obj[t].len);
		if (t == TK_ATR_CTAG_AID && h->obj[t].len == 12 &&
		    memcmp(h->obj[t].v, "\xA0\x00\x00\x03\x06", 5) == 0)
			out_printf(o, "    PC/SC storage card: standard %02X, card name %02X%02X\n",
			           h->obj[t].v[5], h->obj[t].v[6], h->obj[t].v[7]);
	}
	if (h->has_lcs)
		out_printf(o, "  life cycle status: %02X\n", h->lcs);
	if (h->has_sw)
		out_printf(o, "  status word: %04X\n", h->sw);
}

int
tk_atr_describe(const tk_atr_t *a, char *text, size_t cap)
{
	struct out o = {text, cap, 0, false};

	if (a == NULL || text == NULL || cap == 0)
		return TK_ERR_INVALID_ARG;
	text[0] = '\0';
	if (a->len == 0 || a->len > TK_ATR_MAX_LEN || a->levels > TK_ATR_MAX_LEVELS ||
	    a->hist_len > sizeof(a->hist))
		return TK_ERR_INVALID_ARG;
	out_printf(&o, "ATR: ");
	out_hex(&o, a->raw, a->len);
	out_printf(&o, "\nTS = %02X: %s convention\n", a->ts, a->inverse ? "inverse" : "direct");
	out_printf(&o, "T0 = %02X: Y1 = %X, K = %u historical bytes\n", a->t0, a->t0 >> 4,
	           a->t0 & 0x0F);
	for (unsigned i = 0; i < a->levels; i++) {
		if (a->present[i] & TK_ATR_TA)
			describe_iface(&o, a, i, 'A', a->ta[i]);
		if (a->present[i] & TK_ATR_TB)
			describe_iface(&o, a, i, 'B', a->tb[i]);
		if (a->present[i] & TK_ATR_TC)
			describe_iface(&o, a, i, 'C', a->tc[i]);
		if (a->present[i] & TK_ATR_TD)
			describe_iface(&o, a, i, 'D', a->td[i]);
	}
	out_printf(&o, "Protocols:");
	for (unsigned t = 0; t < 16; t++)
		if (a->protocols & (1u << t))
			out_printf(&o, " T=%u", t);
	out_printf(&o, "\n");
	if (!(a->present[0] & TK_ATR_TA))
		out_printf(&o, "Fi = 372, Di = 1, f max = 5.0 MHz (defaults)\n");
	describe_hist(&o, a);
	if (a->tck_present)
		out_printf(&o, "TCK = %02X (correct)\n", a->tck);
	return o.cut ? TK_ERR_BUFFER_TOO_SMALL : TK_OK;
}
