#!/usr/bin/env bash
# OpenSC recognises the virtual card as a PIV card and drives it through its
# own tools: card driver name, raw APDUs, PKCS#11 token, PIN handling.
source "$(dirname "$0")/lib.sh"
tk_require_cmd opensc-tool pkcs11-tool
tk_require_file "$OPENSC_P11"

tk_env_start
tk_card_start 0
P11=(pkcs11-tool --module "$OPENSC_P11")

tk_run "readers" opensc-tool -l
tk_expect "^0 +Yes +.*$TK_READER0"

tk_run "card driver" opensc-tool -r 0 -n
tk_expect 'Personal Identity Verification|PIV'

tk_run "ATR offers T=1" opensc-tool -r 0 -a
tk_expect '^3[Bb]'

# SELECT the PIV application: application property template, 90 00
tk_run "SELECT PIV" opensc-tool -r 0 -s '00 A4 04 00 09 A0 00 00 03 08 00 00 10 00 00'
tk_expect '61 .*|SW1=0x90, SW2=0x00|90 00'
tk_expect_not 'SW1=0x6[ADE]'

# an object that does not exist: 6A 82
tk_run "GET DATA of an empty object" opensc-tool -r 0 -s '00 A4 04 00 09 A0 00 00 03 08 00 00 10 00 00' \
	-s '00 CB 3F FF 05 5C 03 5F C1 0A 00'
tk_expect 'SW1=0x6A, SW2=0x82'

# empty VERIFY reports the retry counter: 63 Cx
tk_run "VERIFY status" opensc-tool -r 0 -s '00 A4 04 00 09 A0 00 00 03 08 00 00 10 00 00' \
	-s '00 20 00 80'
tk_expect 'SW1=0x63, SW2=0xC[0-9A-F]'

tk_run "PKCS#11 slots" "${P11[@]}" -L
tk_expect 'token label'
tk_expect 'PIV'

tk_run "PIN login" "${P11[@]}" --login --pin 123456 -O
tk_run_fails "wrong PIN" "${P11[@]}" --login --pin 000000 -O
tk_expect 'CKR_PIN_INCORRECT'
tk_run "right PIN resets the counter" "${P11[@]}" --login --pin 123456 -O
tk_run "VERIFY status after success" opensc-tool -r 0 -s '00 A4 04 00 09 A0 00 00 03 08 00 00 10 00 00' \
	-s '00 20 00 80'
tk_expect 'SW1=0x63, SW2=0xC3|SW1=0x90, SW2=0x00'
tk_pass
