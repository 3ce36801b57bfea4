/* Fuzz target: the CCID class descriptor parser and the configuration walk
 * (ccid/descriptor.c). The first six bytes choose the vendor, product and
 * release the quirk table sees; the rest is a configuration descriptor,
 * and also a class descriptor on its own. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <tokenkit/err.h>

#include "descriptor.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static char text[2048];
	tk_ccid_iface_t f[4];
	tk_ccid_usb_id_t id;
	tk_ccid_desc_t d;
	size_t n = 0;
	int r;

	if (size < 6)
		return 0;
	id.vid = (uint16_t)(data[0] | data[1] << 8);
	id.pid = (uint16_t)(data[2] | data[3] << 8);
	id.release = (uint16_t)(data[4] | data[5] << 8);
	data += 6;
	size -= 6;
	for (int any = 0; any < 2; any++) {
		r = tk_ccid_desc_parse(data, size, any != 0, &d);
		if (r != TK_OK) {
			if (d.features != 0 || d.max_msg_len != 0)
				abort(); /* cleared on failure */
			continue;
		}
		if (d.max_slot_index >= TK_CCID_MAX_SLOTS || d.max_msg_len < TK_CCID_MIN_MSG_LEN ||
		    d.max_msg_len > TK_CCID_MAX_MSG_LEN || d.max_busy_slots == 0)
			abort();
		if (tk_ccid_desc_describe(&d, text, sizeof(text)) != TK_OK ||
		    strlen(text) >= sizeof(text))
			abort();
		(void)tk_ccid_level_name(tk_ccid_desc_level(&d));
	}
	r = tk_ccid_config_parse(data, size, &id, f, 4, &n);
	if (r != TK_OK && n != 0)
		abort();
	for (size_t i = 0; r == TK_OK && i < n && i < 4; i++) {
		if (f[i].ep_bulk_in == 0 || f[i].ep_bulk_out == 0 || !(f[i].ep_bulk_in & 0x80) ||
		    (f[i].ep_bulk_out & 0x80))
			abort();
		if (f[i].desc.max_slot_index >= TK_CCID_MAX_SLOTS)
			abort();
		for (size_t j = 0; j < i; j++)
			if (f[j].number == f[i].number)
				abort(); /* one reader per interface */
	}
	(void)tk_ccid_quirks(&id);
	return 0;
}
