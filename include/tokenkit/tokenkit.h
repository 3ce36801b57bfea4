/* tokenkit: umbrella header; includes every public header. */
#ifndef TOKENKIT_TOKENKIT_H
#define TOKENKIT_TOKENKIT_H

#include <tokenkit/common.h>
#include <tokenkit/err.h>
#include <tokenkit/mem.h>
#include <tokenkit/buf.h>
#include <tokenkit/hex.h>
#include <tokenkit/log.h>
#include <tokenkit/text.h>
#include <tokenkit/tlv.h>
#include <tokenkit/apdu.h>
#include <tokenkit/atr.h>
#include <tokenkit/card.h>
#include <tokenkit/slot.h>
#include <tokenkit/token.h>
#include <tokenkit/consent.h>

#endif
