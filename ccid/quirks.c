/* tokenkit CCID: reader quirks, as data (STYLE.md rule 16).
 *
 * One table keyed by USB vendor/product and, where a fault is tied to a
 * firmware, by release (bcdDevice). Add a reader by adding a row. The facts
 * come from the readers' own behaviour as documented by the free CCID
 * drivers that met them (pcsc-lite's CCID driver, GnuPG's ccid-driver). */
#include <stddef.h>

#include "descriptor.h"

struct quirk_row {
	uint16_t vid, pid;
	/* Releases below this one have the quirk; 0: every release. */
	uint16_t release_below;
	uint32_t quirks;
};

static const struct quirk_row quirk_table[] = {
        /* CCID on a vendor-specific interface (class FF), from before the
         * class code was assigned. */
        {0x04E6, 0x5115, 0, TK_CCID_Q_VENDOR_CLASS}, /* SCM SCR335 */
        {0x046A, 0x003E, 0, TK_CCID_Q_VENDOR_CLASS}, /* Cherry ST-2000 */
        /* Firmware releases that answer wrongly (framing, time extensions);
         * the fixed release is the bound. */
        {0x04E6, 0xE001, 0x0516, TK_CCID_Q_BAD_FIRMWARE}, /* SCM SCR331 */
        {0x04E6, 0x5111, 0x0620, TK_CCID_Q_BAD_FIRMWARE}, /* SCM SCR331-DI */
        {0x04E6, 0xE003, 0x0510, TK_CCID_Q_BAD_FIRMWARE}, /* SCM SPR532 */
        {0x0D46, 0x3001, 0x0037, TK_CCID_Q_BAD_FIRMWARE}, /* Kobil KAAN Base */
        {0x0D46, 0x3002, 0x0037, TK_CCID_Q_BAD_FIRMWARE}, /* Kobil KAAN Advanced */
        {0x09C3, 0x0008, 0x0203, TK_CCID_Q_BAD_FIRMWARE}, /* ActivCard V2 */
        {0x0DC3, 0x1004, 0x0502, TK_CCID_Q_BAD_FIRMWARE}, /* Athena ASE IIIe USBv2 */
        {0x058F, 0x9520, 0x0102, TK_CCID_Q_BAD_FIRMWARE}, /* Alcor AU9520-G */
};

uint32_t
tk_ccid_quirks(const tk_ccid_usb_id_t *id)
{
	uint32_t q = 0;

	if (id == NULL)
		return 0;
	for (size_t i = 0; i < sizeof(quirk_table) / sizeof(quirk_table[0]); i++) {
		const struct quirk_row *row = &quirk_table[i];

		if (row->vid != id->vid || row->pid != id->pid)
			continue;
		if (row->release_below != 0 && id->release >= row->release_below)
			continue;
		q |= row->quirks;
	}
	return q;
}

const char *
tk_ccid_quirk_name(uint32_t bit)
{
	switch (bit) {
	case TK_CCID_Q_VENDOR_CLASS:
		return "CCID on a vendor-specific interface";
	case TK_CCID_Q_BAD_FIRMWARE:
		return "firmware release known to misbehave";
	default:
		return "";
	}
}
