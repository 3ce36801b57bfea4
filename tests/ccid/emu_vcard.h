/* The virtual PIV card (tools/vcard) as the card in an emulated reader. */
#ifndef TK_EMU_VCARD_H
#define TK_EMU_VCARD_H

#include "ccid_emu.h"
#include "vcard.h"

ccid_emu_card_t emu_vcard(tk_vcard_t *c);

#endif
