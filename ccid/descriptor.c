/* tokenkit CCID: class descriptor parser and configuration walk (USB CCID
 * 1.1, 5.1; USB 2.0, 9.6). */
#include <stdio.h>
#include <string.h>

#include <tokenkit/buf.h>
#include <tokenkit/err.h>

#include "descriptor.h"

#define USB_DT_CONFIG 0x02
#define USB_DT_INTERFACE 0x04
#define USB_DT_ENDPOINT 0x05
#define USB_EP_DIR_IN 0x80
#define USB_EP_XFER_MASK 0x03
#define USB_EP_XFER_BULK 0x02
#define USB_EP_XFER_INT 0x03

int
tk_ccid_desc_parse(const uint8_t *p, size_t len, bool any_type, tk_ccid_desc_t *out)
{
	tk_ccid_desc_t d;
	tk_buf_t b;
	uint8_t blen = 0, type = 0;
	uint32_t level;

	if (out != NULL)
		memset(out, 0, sizeof(*out));
	if (p == NULL || out == NULL)
		return TK_ERR_INVALID_ARG;
	memset(&d, 0, sizeof(d));
	if (len < TK_CCID_DESC_LEN)
		return TK_ERR_TRUNCATED;
	tk_buf_init(&b, p, len);
	if (tk_buf_get_u8(&b, &blen) != TK_OK || tk_buf_get_u8(&b, &type) != TK_OK)
		return TK_ERR_TRUNCATED;
	if (blen < TK_CCID_DESC_LEN)
		return TK_ERR_MALFORMED;
	if (blen > len)
		return TK_ERR_TRUNCATED;
	if (type != TK_CCID_DESC_TYPE && !any_type)
		return TK_ERR_MALFORMED;
	/* The length was checked above: these cannot run out. */
	if (tk_buf_get_u16le(&b, &d.bcd_ccid) != TK_OK ||
	    tk_buf_get_u8(&b, &d.max_slot_index) != TK_OK ||
	    tk_buf_get_u8(&b, &d.voltage_support) != TK_OK ||
	    tk_buf_get_u32le(&b, &d.protocols) != TK_OK ||
	    tk_buf_get_u32le(&b, &d.default_clock_khz) != TK_OK ||
	    tk_buf_get_u32le(&b, &d.max_clock_khz) != TK_OK ||
	    tk_buf_get_u8(&b, &d.num_clocks) != TK_OK ||
	    tk_buf_get_u32le(&b, &d.data_rate_bps) != TK_OK ||
	    tk_buf_get_u32le(&b, &d.max_data_rate_bps) != TK_OK ||
	    tk_buf_get_u8(&b, &d.num_data_rates) != TK_OK ||
	    tk_buf_get_u32le(&b, &d.max_ifsd) != TK_OK ||
	    tk_buf_get_u32le(&b, &d.synch_protocols) != TK_OK ||
	    tk_buf_get_u32le(&b, &d.mechanical) != TK_OK ||
	    tk_buf_get_u32le(&b, &d.features) != TK_OK ||
	    tk_buf_get_u32le(&b, &d.max_msg_len) != TK_OK ||
	    tk_buf_get_u8(&b, &d.class_get_response) != TK_OK ||
	    tk_buf_get_u8(&b, &d.class_envelope) != TK_OK ||
	    tk_buf_get_u16le(&b, &d.lcd_layout) != TK_OK ||
	    tk_buf_get_u8(&b, &d.pin_support) != TK_OK ||
	    tk_buf_get_u8(&b, &d.max_busy_slots) != TK_OK)
		return TK_ERR_TRUNCATED;
	if (d.max_slot_index >= TK_CCID_MAX_SLOTS)
		return TK_ERR_MALFORMED;
	if ((d.protocols & (TK_CCID_PROTO_T0 | TK_CCID_PROTO_T1)) == 0)
		return TK_ERR_MALFORMED;
	if (d.max_msg_len < TK_CCID_MIN_MSG_LEN)
		return TK_ERR_MALFORMED;
	/* One exchange level: two bits set would leave us guessing how the
	 * reader frames an XfrBlock. */
	level = d.features & TK_CCID_F_LEVEL_MASK;
	if ((level & (level - 1)) != 0)
		return TK_ERR_MALFORMED;
	if ((level == TK_CCID_F_LEVEL_SHORT_APDU || level == TK_CCID_F_LEVEL_EXT_APDU) &&
	    d.max_msg_len < TK_CCID_SHORT_APDU_MSG_LEN)
		return TK_ERR_MALFORMED;
	if (d.max_msg_len > TK_CCID_MAX_MSG_LEN)
		d.max_msg_len = TK_CCID_MAX_MSG_LEN;
	/* 0 busy slots would mean "never send a command"; the specification's
	 * minimum is 1. */
	if (d.max_busy_slots == 0)
		d.max_busy_slots = 1;
	*out = d;
	return TK_OK;
}

enum tk_ccid_level
tk_ccid_desc_level(const tk_ccid_desc_t *d)
{
	if (d == NULL)
		return TK_CCID_LEVEL_CHARACTER;
	switch (d->features & TK_CCID_F_LEVEL_MASK) {
	case TK_CCID_F_LEVEL_TPDU:
		return TK_CCID_LEVEL_TPDU;
	case TK_CCID_F_LEVEL_SHORT_APDU:
		return TK_CCID_LEVEL_SHORT_APDU;
	case TK_CCID_F_LEVEL_EXT_APDU:
		return TK_CCID_LEVEL_EXT_APDU;
	default:
		return TK_CCID_LEVEL_CHARACTER;
	}
}

const char *
tk_ccid_level_name(enum tk_ccid_level level)
{
	switch (level) {
	case TK_CCID_LEVEL_TPDU:
		return "TPDU";
	case TK_CCID_LEVEL_SHORT_APDU:
		return "short APDU";
	case TK_CCID_LEVEL_EXT_APDU:
		return "extended APDU";
	default:
		return "character";
	}
}

static const struct {
	uint32_t bit;
	const char *name;
} feature_names[] = {
        {TK_CCID_F_AUTO_PARAM_ATR, "auto-parameters-from-ATR"},
        {TK_CCID_F_AUTO_ACTIVATION, "auto-activation"},
        {TK_CCID_F_AUTO_VOLTAGE, "auto-voltage"},
        {TK_CCID_F_AUTO_CLOCK, "auto-clock"},
        {TK_CCID_F_AUTO_BAUD, "auto-baud"},
        {TK_CCID_F_AUTO_NEGOTIATION, "auto-negotiation"},
        {TK_CCID_F_AUTO_PPS, "auto-PPS"},
        {TK_CCID_F_CLOCK_STOP, "clock-stop"},
        {TK_CCID_F_NAD, "NAD"},
        {TK_CCID_F_AUTO_IFSD, "auto-IFSD"},
        {TK_CCID_F_USB_WAKEUP, "USB-wakeup"},
};

int
tk_ccid_desc_describe(const tk_ccid_desc_t *d, char *out, size_t cap)
{
	size_t used = 0;
	int n;

	if (out != NULL && cap > 0)
		out[0] = '\0';
	if (d == NULL || out == NULL || cap == 0)
		return TK_ERR_INVALID_ARG;
	n = snprintf(out, cap,
	             "CCID %x.%02x, %u slot(s), %s level, protocols%s%s, voltages%s%s%s\n"
	             "clock %u kHz (max %u), data rate %u bps (max %u), max IFSD %u\n"
	             "max message %u bytes, busy slots %u, PIN pad%s%s\nfeatures 0x%08x:",
	             d->bcd_ccid >> 8, d->bcd_ccid & 0xFF, d->max_slot_index + 1u,
	             tk_ccid_level_name(tk_ccid_desc_level(d)),
	             (d->protocols & TK_CCID_PROTO_T0) ? " T=0" : "",
	             (d->protocols & TK_CCID_PROTO_T1) ? " T=1" : "",
	             (d->voltage_support & TK_CCID_VOLT_5V) ? " 5V" : "",
	             (d->voltage_support & TK_CCID_VOLT_3V) ? " 3V" : "",
	             (d->voltage_support & TK_CCID_VOLT_1V8) ? " 1.8V" : "", d->default_clock_khz,
	             d->max_clock_khz, d->data_rate_bps, d->max_data_rate_bps, d->max_ifsd,
	             d->max_msg_len, d->max_busy_slots,
	             (d->pin_support & TK_CCID_PIN_VERIFY) ? " verify" : "",
	             (d->pin_support & TK_CCID_PIN_MODIFY)
	                     ? " modify"
	                     : ((d->pin_support & TK_CCID_PIN_VERIFY) ? "" : " none"),
	             d->features);
	if (n < 0 || (size_t)n >= cap)
		return TK_ERR_BUFFER_TOO_SMALL;
	used = (size_t)n;
	for (size_t i = 0; i < sizeof(feature_names) / sizeof(feature_names[0]); i++) {
		if ((d->features & feature_names[i].bit) == 0)
			continue;
		n = snprintf(out + used, cap - used, " %s", feature_names[i].name);
		if (n < 0 || (size_t)n >= cap - used)
			return TK_ERR_BUFFER_TOO_SMALL;
		used += (size_t)n;
	}
	return TK_OK;
}

/* --- configuration walk ---------------------------------------------------- */

/* What the walk has seen of the interface it is in. */
struct section {
	bool open;
	uint8_t number, alt, iface_class, iface_string;
	bool have_desc;
	tk_ccid_iface_t f;
};

static void
section_close(struct section *s, tk_ccid_iface_t *out, size_t cap, size_t *count)
{
	if (!s->open)
		return;
	s->open = false;
	if (!s->have_desc || s->f.ep_bulk_in == 0 || s->f.ep_bulk_out == 0)
		return;
	/* One reader per interface number: the first alternate setting that
	 * qualifies. */
	for (size_t i = 0; i < *count && i < cap; i++)
		if (out[i].number == s->number)
			return;
	s->f.number = s->number;
	s->f.alt = s->alt;
	s->f.iface_class = s->iface_class;
	s->f.iface_string = s->iface_string;
	if (*count < cap)
		out[*count] = s->f;
	(*count)++;
}

static void
section_endpoint(struct section *s, tk_buf_t *d)
{
	uint8_t addr = 0, attr = 0;
	uint16_t mps = 0;

	if (tk_buf_get_u8(d, &addr) != TK_OK || tk_buf_get_u8(d, &attr) != TK_OK ||
	    tk_buf_get_u16le(d, &mps) != TK_OK)
		return;
	mps &= 0x07FF; /* bits 12-11: extra transactions per microframe */
	if (mps == 0)
		return;
	switch (attr & USB_EP_XFER_MASK) {
	case USB_EP_XFER_BULK:
		if ((addr & USB_EP_DIR_IN) != 0 && s->f.ep_bulk_in == 0) {
			s->f.ep_bulk_in = addr;
			s->f.bulk_in_mps = mps;
		} else if ((addr & USB_EP_DIR_IN) == 0 && s->f.ep_bulk_out == 0) {
			s->f.ep_bulk_out = addr;
			s->f.bulk_out_mps = mps;
		}
		break;
	case USB_EP_XFER_INT:
		if ((addr & USB_EP_DIR_IN) != 0 && s->f.ep_intr_in == 0) {
			s->f.ep_intr_in = addr;
			s->f.intr_mps = mps;
		}
		break;
	default:
		break;
	}
}

int
tk_ccid_config_parse(const uint8_t *cfg, size_t len, const tk_ccid_usb_id_t *id,
                     tk_ccid_iface_t *out, size_t cap, size_t *count)
{
	struct section s;
	tk_buf_t b, d;
	uint32_t quirks;
	uint16_t total = 0;
	uint8_t blen = 0, type = 0;
	bool first = true;
	int r;

	if (count != NULL)
		*count = 0;
	if (out != NULL && cap > 0)
		memset(out, 0, cap * sizeof(*out));
	if (cfg == NULL || id == NULL || count == NULL || (out == NULL && cap > 0))
		return TK_ERR_INVALID_ARG;
	quirks = tk_ccid_quirks(id);
	memset(&s, 0, sizeof(s));
	tk_buf_init(&b, cfg, len);
	while (tk_buf_left(&b) > 0) {
		const uint8_t *start = b.data + b.pos;

		if ((r = tk_buf_peek_u8(&b, &blen)) != TK_OK)
			goto fail;
		if (blen < 2) {
			r = TK_ERR_MALFORMED;
			goto fail;
		}
		if ((r = tk_buf_get_sub(&b, &d, blen)) != TK_OK)
			goto fail;
		(void)tk_buf_skip(&d, 1);
		(void)tk_buf_get_u8(&d, &type);
		if (first) {
			/* wTotalLength bounds the walk: bytes after it belong
			 * to no configuration. */
			if (type != USB_DT_CONFIG || blen < 9) {
				r = TK_ERR_MALFORMED;
				goto fail;
			}
			(void)tk_buf_get_u16le(&d, &total);
			if (total < blen) {
				r = TK_ERR_MALFORMED;
				goto fail;
			}
			if (total > len) {
				r = TK_ERR_TRUNCATED;
				goto fail;
			}
			b.len = total;
			first = false;
			continue;
		}
		switch (type) {
		case USB_DT_INTERFACE: {
			uint8_t num = 0, alt = 0, neps = 0, cls = 0, sub = 0, proto = 0, str = 0;

			section_close(&s, out, cap, count);
			if (blen < 9)
				break;
			(void)tk_buf_get_u8(&d, &num);
			(void)tk_buf_get_u8(&d, &alt);
			(void)tk_buf_get_u8(&d, &neps);
			(void)tk_buf_get_u8(&d, &cls);
			(void)tk_buf_get_u8(&d, &sub);
			(void)tk_buf_get_u8(&d, &proto);
			(void)tk_buf_get_u8(&d, &str);
			if (cls != TK_CCID_CLASS &&
			    !(cls == TK_CCID_VENDOR_CLASS && (quirks & TK_CCID_Q_VENDOR_CLASS)))
				break;
			memset(&s, 0, sizeof(s));
			s.open = true;
			s.number = num;
			s.alt = alt;
			s.iface_class = cls;
			s.iface_string = str;
			s.f.quirks = quirks;
			break;
		}
		case USB_DT_ENDPOINT:
			if (s.open && blen >= 7)
				section_endpoint(&s, &d);
			break;
		default:
			/* The class descriptor: type 21 on a CCID-class
			 * interface (the parser checks); on a vendor-specific
			 * one, any descriptor of exactly its length. */
			if (!s.open || s.have_desc)
				break;
			if (s.iface_class != TK_CCID_CLASS && blen != TK_CCID_DESC_LEN)
				break;
			if (tk_ccid_desc_parse(start, blen, s.iface_class != TK_CCID_CLASS,
			                       &s.f.desc) == TK_OK)
				s.have_desc = true;
			break;
		}
	}
	if (first) {
		r = TK_ERR_TRUNCATED;
		goto fail;
	}
	section_close(&s, out, cap, count);
	return TK_OK;
fail:
	*count = 0;
	if (out != NULL && cap > 0)
		memset(out, 0, cap * sizeof(*out));
	return r;
}
