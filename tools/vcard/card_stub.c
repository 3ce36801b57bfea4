/* placeholder so tkvcard has a source until the card lands */
#include "vcard.h"
