/* Unit tests for the OpenPGP card helpers of the tool
 * (tools/tokenkit/pgp_prov.c). Card data objects are written by hand from
 * the OpenPGP card specification 3.4 (4.4.1, 4.4.3.x, 7.2.14); the
 * fingerprint vectors come from GnuPG 2.2.40 (gpg --quick-gen-key /
 * --quick-add-key with --faked-system-time, then --with-key-data: the public
 * key material, the creation time and gpg's fingerprint), not from the code
 * under test. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include <openssl/core_names.h>
#include <openssl/evp.h>

#include <tokenkit/err.h>
#include <tokenkit/hex.h>
#include <tokenkit/tlv.h>

#include "pgp_prov.h"

static const uint8_t oid_p256[] = {0x2A, 0x86, 0x48, 0xCE, 0x3D, 0x03, 0x01, 0x07};
static const uint8_t oid_ed25519[] = {0x2B, 0x06, 0x01, 0x04, 0x01, 0xDA, 0x47, 0x0F, 0x01};
static const uint8_t oid_cv25519[] = {0x2B, 0x06, 0x01, 0x04, 0x01, 0x97, 0x55, 0x01, 0x05, 0x01};

static size_t
hex(const char *s, uint8_t *out, size_t cap)
{
	size_t n = 0;

	assert_int_equal(tk_hex_decode(s, out, cap, &n), TK_OK);
	return n;
}

static size_t
attr(uint8_t id, const uint8_t *oid, size_t oid_len, int last, uint8_t *out)
{
	out[0] = id;
	memcpy(out + 1, oid, oid_len);
	if (last >= 0)
		out[1 + oid_len++] = (uint8_t)last;
	return 1 + oid_len;
}

static void
test_attr_parse(void **state)
{
	uint8_t b[16];
	pgp_attr_t a;
	size_t n;

	(void)state;
	/* RSA 2048, e 32 bits, standard import format (4.4.3.9) */
	n = hex("010800002000", b, sizeof(b));
	assert_int_equal(pgp_attr_parse(b, n, &a), TK_OK);
	assert_int_equal(a.id, PGP_ID_RSA);
	assert_int_equal(a.bits, 2048);
	assert_int_equal(a.ebits, 32);
	assert_int_equal(a.rsa_fmt, 0);
	assert_string_equal(a.name, "rsa2048");
	/* RSA 4096, e 17 bits, CRT with modulus; the format byte may be absent */
	n = hex("011000001103", b, sizeof(b));
	assert_int_equal(pgp_attr_parse(b, n, &a), TK_OK);
	assert_int_equal(a.bits, 4096);
	assert_int_equal(a.ebits, 17);
	assert_int_equal(a.rsa_fmt, 3);
	assert_int_equal(pgp_attr_parse(b, 5, &a), TK_OK);
	assert_int_equal(a.rsa_fmt, 0);
	assert_int_equal(pgp_attr_parse(b, 4, &a), TK_ERR_MALFORMED);
	/* ECDSA P-256; EdDSA Ed25519; ECDH Curve25519 with the public key */
	n = attr(PGP_ID_ECDSA, oid_p256, sizeof(oid_p256), -1, b);
	assert_int_equal(pgp_attr_parse(b, n, &a), TK_OK);
	assert_int_equal(a.curve, PGP_CURVE_P256);
	assert_string_equal(a.name, "nistp256");
	assert_false(a.ec_pub);
	n = attr(PGP_ID_EDDSA, oid_ed25519, sizeof(oid_ed25519), 0x00, b);
	assert_int_equal(pgp_attr_parse(b, n, &a), TK_OK);
	assert_int_equal(a.curve, PGP_CURVE_ED25519);
	n = attr(PGP_ID_ECDH, oid_cv25519, sizeof(oid_cv25519), 0xFF, b);
	assert_int_equal(pgp_attr_parse(b, n, &a), TK_OK);
	assert_int_equal(a.curve, PGP_CURVE_CV25519);
	assert_true(a.ec_pub);
	/* well formed, but Ed25519 does not agree keys: not one we know */
	n = attr(PGP_ID_ECDH, oid_ed25519, sizeof(oid_ed25519), -1, b);
	assert_int_equal(pgp_attr_parse(b, n, &a), TK_OK);
	assert_int_equal(a.id, 0);
	/* an unknown algorithm id; nothing; an OID of nothing */
	assert_int_equal(pgp_attr_parse((const uint8_t *)"\x42\x01", 2, &a), TK_OK);
	assert_int_equal(a.id, 0);
	assert_int_equal(pgp_attr_parse(b, 0, &a), TK_ERR_MALFORMED);
	assert_int_equal(pgp_attr_parse((const uint8_t *)"\x13\xFF", 2, &a), TK_ERR_MALFORMED);
}

static void
test_attr_encode(void **state)
{
	uint8_t out[16], want[16];
	pgp_attr_t cur;
	size_t n = 0, wn;

	(void)state;
	assert_int_equal(pgp_attr_encode("nistp256", PGP_SIG, NULL, out, sizeof(out), &n), TK_OK);
	wn = attr(PGP_ID_ECDSA, oid_p256, sizeof(oid_p256), -1, want);
	assert_memory_equal(out, want, wn);
	assert_int_equal(n, wn);
	/* the decryption key agrees keys: ECDH */
	assert_int_equal(pgp_attr_encode("nistp256", PGP_DEC, NULL, out, sizeof(out), &n), TK_OK);
	assert_int_equal(out[0], PGP_ID_ECDH);
	assert_int_equal(pgp_attr_encode("cv25519", PGP_DEC, NULL, out, sizeof(out), &n), TK_OK);
	wn = attr(PGP_ID_ECDH, oid_cv25519, sizeof(oid_cv25519), -1, want);
	assert_int_equal(n, wn);
	assert_memory_equal(out, want, wn);
	assert_int_equal(pgp_attr_encode("ed25519", PGP_AUT, NULL, out, sizeof(out), &n), TK_OK);
	assert_int_equal(out[0], PGP_ID_EDDSA);
	/* keys that cannot have the algorithm; unknown names */
	assert_int_equal(pgp_attr_encode("ed25519", PGP_DEC, NULL, out, sizeof(out), &n),
	                 TK_ERR_INVALID_ARG);
	assert_int_equal(pgp_attr_encode("cv25519", PGP_SIG, NULL, out, sizeof(out), &n),
	                 TK_ERR_INVALID_ARG);
	assert_int_equal(pgp_attr_encode("rsa1024", PGP_SIG, NULL, out, sizeof(out), &n),
	                 TK_ERR_INVALID_ARG);
	/* RSA keeps the card's exponent size and import format */
	assert_int_equal(pgp_attr_encode("rsa3072", PGP_SIG, NULL, out, sizeof(out), &n), TK_OK);
	wn = hex("010C00002000", want, sizeof(want));
	assert_int_equal(n, wn);
	assert_memory_equal(out, want, wn);
	wn = hex("010800001103", want, sizeof(want));
	assert_int_equal(pgp_attr_parse(want, wn, &cur), TK_OK);
	assert_int_equal(pgp_attr_encode("rsa4096", PGP_SIG, &cur, out, sizeof(out), &n), TK_OK);
	wn = hex("011000001103", want, sizeof(want));
	assert_int_equal(n, wn);
	assert_memory_equal(out, want, wn);
	/* too small a buffer */
	assert_int_equal(pgp_attr_encode("cv25519", PGP_DEC, NULL, out, 4, &n), TK_ERR_TOO_LONG);
}

/* Application related data (4.4.1): 6E { 4F AID, 5F52, 73 { C0, C1..C3,
 * C4, C5, CD, DE } }. */
static const char ard_hex[] =
        "6E81E84F10D276000124010304FFFE1234567800005F520A0031C573C001C00590007381C6C00A750001"
        "00100000FF0000C106010800002000C209122A8648CE3D030107C30A162B06010401DA470F01C407017F"
        "7F7F030003C53C0102030405060708090A0B0C0D0E0F1011121314000000000000000000000000000000"
        "00000000002122232425262728292A2B2C2D2E2F3031323334C63C000000000000000000000000000000"
        "000000000000000000000000000000000000000000000000000000000000000000000000000000000000"
        "000000CD0C6553F100000000006553F1FFDE06010102000302";

static void
test_ard(void **state)
{
	uint8_t b[300];
	pgp_ard_t a;
	size_t n;

	(void)state;
	n = hex(ard_hex, b, sizeof(b));
	assert_int_equal(pgp_ard_parse(b, n, &a), TK_OK);
	assert_int_equal(a.aid_len, 16);
	assert_int_equal(a.version[0], 3);
	assert_int_equal(a.version[1], 4);
	assert_int_equal(a.manufacturer, 0xFFFE);
	assert_int_equal(a.serial, 0x12345678);
	assert_true(a.have_caps);
	assert_int_equal(a.caps[0], 0x75);
	assert_true(a.have_pw_status);
	assert_int_equal(a.pw_status[0], 1);
	assert_int_equal(a.pw_status[4], 3);
	assert_int_equal(a.pw_status[5], 0);
	assert_int_equal(a.pw_status[6], 3);
	assert_string_equal(a.key[PGP_SIG].attr.name, "rsa2048");
	assert_int_equal(a.key[PGP_DEC].attr.id, PGP_ID_ECDH);
	assert_string_equal(a.key[PGP_DEC].attr.name, "nistp256");
	assert_string_equal(a.key[PGP_AUT].attr.name, "ed25519");
	assert_int_equal(a.key[PGP_SIG].fpr[0], 0x01);
	assert_int_equal(a.key[PGP_SIG].fpr[19], 0x14);
	assert_int_equal(a.key[PGP_AUT].fpr[0], 0x21);
	assert_int_equal(a.key[PGP_SIG].created, 0x6553F100);
	assert_int_equal(a.key[PGP_DEC].created, 0);
	assert_int_equal(a.key[PGP_AUT].created, 0x6553F1FF);
	assert_int_equal(a.key[PGP_SIG].origin, 1);
	assert_int_equal(a.key[PGP_DEC].origin, 0);
	assert_int_equal(a.key[PGP_AUT].origin, 2);
	/* the value alone parses the same */
	assert_int_equal(pgp_ard_parse(b + 3, n - 3, &a), TK_OK);
	assert_int_equal(a.serial, 0x12345678);
	/* cut anywhere inside: malformed, never a read past the end */
	for (size_t cut = 3; cut < n; cut++) {
		int r = pgp_ard_parse(b, cut, &a);

		assert_true(r == TK_OK || r == TK_ERR_MALFORMED);
	}
	assert_int_equal(pgp_ard_parse(b, 20, &a), TK_ERR_MALFORMED);
	/* a fingerprint object of the wrong size is left out, not cut */
	n = hex("4F10D276000124010304FFFE1234567800007304C5021234", b, sizeof(b));
	assert_int_equal(pgp_ard_parse(b, n, &a), TK_OK);
	assert_int_equal(a.key[PGP_SIG].fpr[0], 0);
	assert_int_equal(a.key[PGP_SIG].origin, 0xFF);
	/* without an AID: not OpenPGP application data */
	n = hex("7304C5021234", b, sizeof(b));
	assert_int_equal(pgp_ard_parse(b, n, &a), TK_ERR_MALFORMED);
}

static void
test_small_objects(void **state)
{
	uint8_t b[128];
	pgp_cardholder_t ch;
	uint32_t count = 0;
	pgp_kdf_t kdf;
	size_t n;

	(void)state;
	/* 65 { 5B "Doe<<Jane", 5F2D "deen", 5F35 "2" } */
	n = hex("65165B09446F653C3C4A616E655F2D046465656E5F350132", b, sizeof(b));
	assert_int_equal(pgp_cardholder_parse(b, n, &ch), TK_OK);
	assert_string_equal(ch.name, "Doe<<Jane");
	assert_string_equal(ch.lang, "deen");
	assert_int_equal(ch.sex, '2');
	assert_int_equal(pgp_cardholder_parse(b, n - 1, &ch), TK_ERR_MALFORMED);
	/* a 40-byte name does not fit the 39 the specification allows: left out */
	n = hex("65"
	        "2A5B28"
	        "41414141414141414141414141414141414141414141414141414141414141414141414141414141",
	        b, sizeof(b));
	assert_int_equal(pgp_cardholder_parse(b, n, &ch), TK_OK);
	assert_string_equal(ch.name, "");
	/* 7A { 93 counter } */
	n = hex("7A059303012345", b, sizeof(b));
	assert_int_equal(pgp_sig_counter_parse(b, n, &count), TK_OK);
	assert_int_equal(count, 0x012345);
	n = hex("7A0493020123", b, sizeof(b));
	assert_int_equal(pgp_sig_counter_parse(b, n, &count), TK_ERR_MALFORMED);
	/* KDF-DO: none; iterated and salted S2K; empty */
	n = hex("F903810100", b, sizeof(b));
	assert_int_equal(pgp_kdf_parse(b, n, &kdf), TK_OK);
	assert_int_equal(kdf.algo, PGP_KDF_NONE);
	n = hex("F9168101038201088304000003E88408A1A2A3A4A5A6A7A8", b, sizeof(b));
	assert_int_equal(pgp_kdf_parse(b, n, &kdf), TK_OK);
	assert_int_equal(kdf.algo, PGP_KDF_ITERSALTED_S2K);
	assert_int_equal(kdf.hash, 0x08);
	assert_int_equal(kdf.count, 1000);
	assert_true(kdf.have_salt[PGP_PW1]);
	assert_false(kdf.have_salt[PGP_RC]);
	assert_int_equal(kdf.salt[PGP_PW1][7], 0xA8);
	assert_int_equal(pgp_kdf_parse(b, 0, &kdf), TK_OK);
	assert_int_equal(kdf.algo, PGP_KDF_NONE);
	n = hex("8102", b, sizeof(b));
	assert_int_equal(pgp_kdf_parse(b, n, &kdf), TK_ERR_MALFORMED);
	/* S2K without its PW1 salt; a salt of the wrong size */
	n = hex("F90C8101038201088304000003E8", b, sizeof(b));
	assert_int_equal(pgp_kdf_parse(b, n, &kdf), TK_ERR_MALFORMED);
	n = hex("F9158101038201088304000003E88407A1A2A3A4A5A6A7", b, sizeof(b));
	assert_int_equal(pgp_kdf_parse(b, n, &kdf), TK_ERR_MALFORMED);
}

/* The KDF-DO GnuPG 2.2.40's kdf-setup wrote to the virtual card: 87 and 88
 * are its S2K hashes of the initial PINs 123456 and 12345678 (with the PW1
 * and PW3 salts, 65011712 bytes, SHA-256). */
static const char gnupg_kdf[] =
        "810103820108830403E0000084 08F64B3AFE75E988CD8508A9FBD591EEFF2D548608A7D7D2EF80CB0B69"
        "8720E075DE7E99B2C57E9FC1ED1161D8F84BD45AC3D602F749748EBC08B2444E811A"
        "88205117F50BBF6476E2F684B67799DD650BB624D8EC132F5246889C5380F89B06C8";

static void
test_kdf_pin(void **state)
{
	uint8_t b[128], out[128];
	pgp_kdf_t kdf;
	tk_tlv_t t87, t88;
	size_t n, ol = 0;
	char h[sizeof(gnupg_kdf)];
	size_t j = 0;

	(void)state;
	for (size_t i = 0; gnupg_kdf[i] != '\0'; i++)
		if (gnupg_kdf[i] != ' ')
			h[j++] = gnupg_kdf[i];
	h[j] = '\0';
	n = hex(h, b, sizeof(b));
	assert_int_equal(pgp_kdf_parse(b, n, &kdf), TK_OK);
	assert_int_equal(kdf.count, 0x03E00000);
	assert_int_equal(tk_ber_find(b, n, 0x87, &t87), TK_OK);
	assert_int_equal(tk_ber_find(b, n, 0x88, &t88), TK_OK);
	assert_int_equal(pgp_kdf_pin(&kdf, PGP_PW1, "123456", 6, out, sizeof(out), &ol), TK_OK);
	assert_int_equal(ol, 32);
	assert_memory_equal(out, t87.value, 32);
	assert_int_equal(pgp_kdf_pin(&kdf, PGP_PW3, "12345678", 8, out, sizeof(out), &ol), TK_OK);
	assert_memory_equal(out, t88.value, 32);
	/* PW1's salt is not PW3's */
	assert_int_equal(pgp_kdf_pin(&kdf, PGP_PW3, "123456", 6, out, sizeof(out), &ol), TK_OK);
	assert_memory_not_equal(out, t87.value, 32);
	/* no KDF: the PIN itself */
	memset(&kdf, 0, sizeof(kdf));
	assert_int_equal(pgp_kdf_pin(&kdf, PGP_PW1, "123456", 6, out, sizeof(out), &ol), TK_OK);
	assert_int_equal(ol, 6);
	assert_memory_equal(out, "123456", 6);
	/* a KDF the tool does not know */
	kdf.algo = 0x07;
	assert_int_equal(pgp_kdf_pin(&kdf, PGP_PW1, "123456", 6, out, sizeof(out), &ol),
	                 TK_ERR_NOT_SUPPORTED);
}

/* GnuPG's vectors: key material, creation time, fingerprint. */
static void
check_fpr(const char *name, int key, const uint8_t *pub, size_t pl, uint32_t created,
          const char *want_hex)
{
	uint8_t enc[16], tmpl[200], fpr[20], want[20];
	pgp_attr_t at;
	EVP_PKEY *pk = NULL;
	size_t n = 0, tn = 0;

	assert_int_equal(pgp_attr_encode(name, key, NULL, enc, sizeof(enc), &n), TK_OK);
	assert_int_equal(pgp_attr_parse(enc, n, &at), TK_OK);
	/* the key as a card gives it: 7F49 { 86 point } */
	tmpl[tn++] = 0x7F;
	tmpl[tn++] = 0x49;
	tmpl[tn++] = (uint8_t)(pl + 2);
	tmpl[tn++] = 0x86;
	tmpl[tn++] = (uint8_t)pl;
	memcpy(tmpl + tn, pub, pl);
	tn += pl;
	assert_int_equal(pgp_pubkey_parse(&at, tmpl, tn, &pk), TK_OK);
	assert_int_equal(pgp_fingerprint(&at, pk, created, fpr), TK_OK);
	hex(want_hex, want, sizeof(want));
	assert_memory_equal(fpr, want, 20);
	/* another second, another fingerprint */
	assert_int_equal(pgp_fingerprint(&at, pk, created + 1, fpr), TK_OK);
	assert_memory_not_equal(fpr, want, 20);
	EVP_PKEY_free(pk);
}

static void
test_fingerprint_ecc(void **state)
{
	uint8_t pt[100];
	size_t n;

	(void)state;
	n = hex("661AEC75D0BC648AED675750F87E443005424D78D1EDE0FD7EBA16C499891735", pt, sizeof(pt));
	check_fpr("ed25519", PGP_SIG, pt, n, 1700000000,
	          "3F1DACD4EDCA24FF69A56D4493B146166D5D2D6C");
	/* ECDH: the KDF parameters (03 01 08 07) are in the fingerprint */
	n = hex("78648B5AB63CE73000757BF421B093B9D087754072A17EE770C8CC379ACDBA4A", pt, sizeof(pt));
	check_fpr("cv25519", PGP_DEC, pt, n, 1700000100,
	          "6D2ACC9413A3DA2DFEFFAFF61AC25061DA22BAF0");
	n = hex("04BA8372D8D49A2992CE88097248BC729AB3926D670606B13901000BA7F0974FFDB25C7AC0FB0317C9"
	        "2BEA68FA19289AC22C07C6F70170745FC311B1E11F34A218D068FE3C09570B946B8D1AE4DD7F1224"
	        "2DBE0FBF21AF343A786FADF1687FA334",
	        pt, sizeof(pt));
	check_fpr("nistp384", PGP_SIG, pt, n, 1700000000,
	          "1BBDC94FF4EDF655C11C912F6DB3982CE7C91A14");
	/* ECDH P-384: KDF parameters 03 01 09 08 (SHA-384, AES-192) */
	n = hex("046873C7FEED64FD44D0B9B497179D3DCD8EB1FDBDCADC85DBDB7BEDDC713AF3CEC61F0E84813C7F3C"
	        "1B53CF0CFC8C05DC6AA109DD30EE88D34168F315186FEF877B86EBED660C98CCC39F14C24F9D4B53"
	        "674B8410CC0D2A6D6F02BC4824F34F6B",
	        pt, sizeof(pt));
	check_fpr("nistp384", PGP_DEC, pt, n, 1700000200,
	          "C8E20D88E49EE076482FC53191557FFA6511380A");
}

static void
test_fingerprint_rsa(void **state)
{
	static const char n_hex[] =
	        "B451B750D1A005B045D1116E3D7D51D3E7DB462D219D63B9330404412D19AE9E7782741CA7577608A1"
	        "8B380AEFB7F460B4EF4BFFC5B8BEDEE2650BA7C9E603ED6E8FB0867942569F89C9870D2FA8B11E96C9"
	        "B503F4DA3FA84B7A80FBCFE2BD1A14B3272441BFDA002CF51A4192597CFFA2444F98DEACE9F989827F"
	        "BD1CA4749A2A2D91CA65C55F38C037AC495F19E680CB7D6DABF90DBE3D0CFCACBA87F3C01C2ABF92CE"
	        "E96B8ACF082E3232359F62B55C6CFE47689D738F73F7E0BCF5A69BD1E63441397E1A4CEFEDA8FE748B"
	        "3E69618626C0A8DFD1344BC9F2D8DA295CA7D43CFE59D3FEC033D996B203F25041D9DE0B69DA46EBE5"
	        "BDC51CEE34305967EA23";
	uint8_t tmpl[300], fpr[20], want[20], enc[16];
	pgp_attr_t at;
	EVP_PKEY *pk = NULL;
	size_t n = 0, tn;

	(void)state;
	assert_int_equal(pgp_attr_encode("rsa2048", PGP_SIG, NULL, enc, sizeof(enc), &n), TK_OK);
	assert_int_equal(pgp_attr_parse(enc, n, &at), TK_OK);
	/* 7F49 82 0109 { 81 82 0100 n, 82 03 010001 } */
	memcpy(tmpl, "\x7F\x49\x82\x01\x09\x81\x82\x01\x00", 9);
	tn = 9 + hex(n_hex, tmpl + 9, 256);
	memcpy(tmpl + tn, "\x82\x03\x01\x00\x01", 5);
	tn += 5;
	assert_int_equal(tn, 5 + 0x109);
	assert_int_equal(pgp_pubkey_parse(&at, tmpl, tn, &pk), TK_OK);
	assert_int_equal(pgp_fingerprint(&at, pk, 1700000300, fpr), TK_OK);
	hex("BE3E62DE7426E21C8187AA763BDC53558F3F8700", want, sizeof(want));
	assert_memory_equal(fpr, want, 20);
	EVP_PKEY_free(pk);
	/* the modulus one byte short of the attributes' size */
	tmpl[9] = 0x00;
	assert_int_equal(pgp_pubkey_parse(&at, tmpl, tn, &pk), TK_ERR_MALFORMED);
	assert_null(pk);
}

static void
test_pubkey_refused(void **state)
{
	uint8_t enc[16], b[200];
	pgp_attr_t at;
	EVP_PKEY *pk = NULL;
	size_t n = 0, tn;

	(void)state;
	assert_int_equal(pgp_attr_encode("nistp256", PGP_SIG, NULL, enc, sizeof(enc), &n), TK_OK);
	assert_int_equal(pgp_attr_parse(enc, n, &at), TK_OK);
	/* a P-256 point off the curve (x = 1, y = 1) */
	memset(b, 0, sizeof(b));
	memcpy(b, "\x7F\x49\x43\x86\x41\x04", 6);
	b[6 + 31] = 1;
	b[6 + 63] = 1;
	assert_int_equal(pgp_pubkey_parse(&at, b, 6 + 64, &pk), TK_ERR_MALFORMED);
	assert_null(pk);
	/* a point of the wrong length; not a 7F49; something after it */
	assert_int_equal(pgp_pubkey_parse(&at, b, 6 + 63, &pk), TK_ERR_MALFORMED);
	b[1] = 0x48;
	assert_int_equal(pgp_pubkey_parse(&at, b, 6 + 64, &pk), TK_ERR_MALFORMED);
	/* Ed25519 with the 40 prefix some cards give */
	assert_int_equal(pgp_attr_encode("ed25519", PGP_SIG, NULL, enc, sizeof(enc), &n), TK_OK);
	assert_int_equal(pgp_attr_parse(enc, n, &at), TK_OK);
	tn = hex("7F4923862140661AEC75D0BC648AED675750F87E443005424D78D1EDE0FD7EBA16C499891735", b,
	         sizeof(b));
	assert_int_equal(pgp_pubkey_parse(&at, b, tn, &pk), TK_OK);
	EVP_PKEY_free(pk);
	pk = NULL;
	b[tn] = 0x00;
	assert_int_equal(pgp_pubkey_parse(&at, b, tn + 1, &pk), TK_ERR_MALFORMED);
}

/* The header list and values of a key import (4.4.3.12). */
struct import {
	size_t count;
	uint8_t tags[9];
	size_t lens[9];
	const uint8_t *vals[9];
	uint32_t crt;
};

static void
parse_import(const uint8_t *p, size_t n, struct import *im)
{
	tk_tlv_t outer, crt, hl, vals;
	tk_buf_t b, in, h;
	size_t off = 0;

	memset(im, 0, sizeof(*im));
	tk_buf_init(&b, p, n);
	assert_int_equal(tk_ber_get(&b, &outer), TK_OK);
	assert_int_equal(outer.tag, 0x4D);
	assert_int_equal(tk_buf_left(&b), 0);
	tk_buf_init(&in, outer.value, outer.len);
	assert_int_equal(tk_ber_get(&in, &crt), TK_OK);
	assert_int_equal(crt.len, 0);
	im->crt = crt.tag;
	assert_int_equal(tk_ber_get(&in, &hl), TK_OK);
	assert_int_equal(hl.tag, 0x7F48);
	assert_int_equal(tk_ber_get(&in, &vals), TK_OK);
	assert_int_equal(vals.tag, 0x5F48);
	assert_int_equal(tk_buf_left(&in), 0);
	tk_buf_init(&h, hl.value, hl.len);
	while (tk_buf_left(&h) > 0) {
		uint8_t tag, l;
		uint16_t l16;
		size_t len;

		assert_true(im->count < 9);
		assert_int_equal(tk_buf_get_u8(&h, &tag), TK_OK);
		assert_int_equal(tk_buf_get_u8(&h, &l), TK_OK);
		len = l;
		if (l == 0x81) {
			assert_int_equal(tk_buf_get_u8(&h, &l), TK_OK);
			len = l;
		} else if (l == 0x82) {
			assert_int_equal(tk_buf_get_u16be(&h, &l16), TK_OK);
			len = l16;
		}
		im->tags[im->count] = tag;
		im->lens[im->count] = len;
		im->vals[im->count] = vals.value + off;
		im->count++;
		off += len;
	}
	assert_int_equal(off, vals.len);
}

static void
assert_bn_equal(EVP_PKEY *pk, const char *param, const uint8_t *v, size_t len)
{
	BIGNUM *bn = NULL, *got = BN_bin2bn(v, (int)len, NULL);

	assert_int_equal(EVP_PKEY_get_bn_param(pk, param, &bn), 1);
	assert_int_equal(BN_cmp(bn, got), 0);
	BN_free(bn);
	BN_free(got);
}

static void
test_import_rsa(void **state)
{
	static const char *const params[] = {
	        OSSL_PKEY_PARAM_RSA_E,         OSSL_PKEY_PARAM_RSA_FACTOR1,
	        OSSL_PKEY_PARAM_RSA_FACTOR2,   OSSL_PKEY_PARAM_RSA_COEFFICIENT1,
	        OSSL_PKEY_PARAM_RSA_EXPONENT1, OSSL_PKEY_PARAM_RSA_EXPONENT2,
	        OSSL_PKEY_PARAM_RSA_N};
	EVP_PKEY *pk = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048);
	uint8_t buf[2048], enc[16];
	struct import im;
	pgp_attr_t at;
	tk_wbuf_t w;
	size_t n;

	(void)state;
	assert_non_null(pk);
	/* format 3: e, p, q, 1/q mod p, dp, dq, n */
	n = hex("010800002003", enc, sizeof(enc));
	assert_int_equal(pgp_attr_parse(enc, n, &at), TK_OK);
	tk_wbuf_init(&w, buf, sizeof(buf));
	assert_int_equal(pgp_import_encode(&at, PGP_SIG, pk, &w), TK_OK);
	parse_import(buf, w.len, &im);
	assert_int_equal(im.crt, 0xB6);
	assert_int_equal(im.count, 7);
	for (size_t i = 0; i < 7; i++) {
		assert_int_equal(im.tags[i], 0x91 + i);
		assert_bn_equal(pk, params[i], im.vals[i], im.lens[i]);
	}
	assert_int_equal(im.lens[0], 4);   /* e: 32 bits as the attributes say */
	assert_int_equal(im.lens[1], 128); /* p, q, ...: half the modulus */
	assert_int_equal(im.lens[6], 256);
	/* format 0: e, p, q only; the decryption key's template */
	n = hex("010800002000", enc, sizeof(enc));
	assert_int_equal(pgp_attr_parse(enc, n, &at), TK_OK);
	tk_wbuf_init(&w, buf, sizeof(buf));
	assert_int_equal(pgp_import_encode(&at, PGP_DEC, pk, &w), TK_OK);
	parse_import(buf, w.len, &im);
	assert_int_equal(im.crt, 0xB8);
	assert_int_equal(im.count, 3);
	/* a key of another size than the attributes */
	n = hex("010C00002000", enc, sizeof(enc));
	assert_int_equal(pgp_attr_parse(enc, n, &at), TK_OK);
	tk_wbuf_init(&w, buf, sizeof(buf));
	assert_int_equal(pgp_import_encode(&at, PGP_SIG, pk, &w), TK_ERR_INVALID_ARG);
	/* too small a buffer */
	n = hex("010800002003", enc, sizeof(enc));
	assert_int_equal(pgp_attr_parse(enc, n, &at), TK_OK);
	tk_wbuf_init(&w, buf, 100);
	assert_int_equal(pgp_import_encode(&at, PGP_SIG, pk, &w), TK_ERR_TOO_LONG);
	EVP_PKEY_free(pk);
}

static void
test_import_ecc(void **state)
{
	EVP_PKEY *x = EVP_PKEY_Q_keygen(NULL, NULL, "X25519");
	EVP_PKEY *p256 = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
	uint8_t buf[512], enc[16], raw[32], pt[65];
	size_t n = 0, rl = sizeof(raw), pl = 0;
	struct import im;
	pgp_attr_t at;
	tk_wbuf_t w;

	(void)state;
	assert_non_null(x);
	assert_non_null(p256);
	/* X25519: the scalar big-endian (the reverse of RFC 7748's bytes) */
	assert_int_equal(pgp_attr_encode("cv25519", PGP_DEC, NULL, enc, sizeof(enc), &n), TK_OK);
	assert_int_equal(pgp_attr_parse(enc, n, &at), TK_OK);
	tk_wbuf_init(&w, buf, sizeof(buf));
	assert_int_equal(pgp_import_encode(&at, PGP_DEC, x, &w), TK_OK);
	parse_import(buf, w.len, &im);
	assert_int_equal(im.count, 1);
	assert_int_equal(im.tags[0], 0x92);
	assert_int_equal(im.lens[0], 32);
	assert_int_equal(EVP_PKEY_get_raw_private_key(x, raw, &rl), 1);
	for (size_t i = 0; i < 32; i++)
		assert_int_equal(im.vals[0][i], raw[31 - i]);
	/* P-256 with the public key (attributes ending FF): 92 d, 99 point */
	n = attr(PGP_ID_ECDSA, oid_p256, sizeof(oid_p256), 0xFF, enc);
	assert_int_equal(pgp_attr_parse(enc, n, &at), TK_OK);
	tk_wbuf_init(&w, buf, sizeof(buf));
	assert_int_equal(pgp_import_encode(&at, PGP_AUT, p256, &w), TK_OK);
	parse_import(buf, w.len, &im);
	assert_int_equal(im.crt, 0xA4);
	assert_int_equal(im.count, 2);
	assert_int_equal(im.tags[0], 0x92);
	assert_int_equal(im.lens[0], 32);
	assert_bn_equal(p256, OSSL_PKEY_PARAM_PRIV_KEY, im.vals[0], 32);
	assert_int_equal(im.tags[1], 0x99);
	assert_int_equal(EVP_PKEY_get_octet_string_param(p256, OSSL_PKEY_PARAM_ENCODED_PUBLIC_KEY,
	                                                 pt, sizeof(pt), &pl),
	                 1);
	assert_int_equal(im.lens[1], pl);
	assert_memory_equal(im.vals[1], pt, pl);
	/* an X25519 key is not a P-256 key */
	tk_wbuf_init(&w, buf, sizeof(buf));
	assert_int_equal(pgp_import_encode(&at, PGP_AUT, x, &w), TK_ERR_INVALID_ARG);
	EVP_PKEY_free(x);
	EVP_PKEY_free(p256);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_attr_parse),
	        cmocka_unit_test(test_attr_encode),
	        cmocka_unit_test(test_ard),
	        cmocka_unit_test(test_small_objects),
	        cmocka_unit_test(test_fingerprint_ecc),
	        cmocka_unit_test(test_fingerprint_rsa),
	        cmocka_unit_test(test_pubkey_refused),
	        cmocka_unit_test(test_import_rsa),
	        cmocka_unit_test(test_import_ecc),
	        cmocka_unit_test(test_kdf_pin),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
