/* The virtual PIV card (tools/vcard) as the card in an emulated reader. */
#include "emu_vcard.h"

static size_t
vc_atr(void *ctx, uint8_t *atr, size_t cap)
{
	return tk_vcard_atr(ctx, atr, cap);
}

static void
vc_on(void *ctx)
{
	tk_vcard_power_on(ctx);
}

static void
vc_off(void *ctx)
{
	tk_vcard_power_off(ctx);
}

static size_t
vc_process(void *ctx, const uint8_t *cmd, size_t len, uint8_t *resp, size_t cap)
{
	return tk_vcard_process(ctx, cmd, len, resp, cap);
}

ccid_emu_card_t
emu_vcard(tk_vcard_t *c)
{
	ccid_emu_card_t card = {c, vc_atr, vc_on, vc_off, vc_process};

	return card;
}
