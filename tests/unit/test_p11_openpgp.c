/* The built PKCS#11 module (tokenkit-pkcs11.so, dlopen'ed) over two
 * virtual OpenPGP cards in the in-process virtual reader, reached through
 * the driver plugin driver-openpgp.so:
 *   card A: SIG RSA-2048 (PW1 for one signature), DEC RSA-2048, AUT Ed25519
 *   card B: SIG P-256, DEC X25519, AUT P-384
 * Every result is checked with OpenSSL against the public keys the cards
 * gave at generation. What it attacks: Ed25519 and X25519 objects and
 * their attributes (PKCS#11 3.0: CKK_EC_EDWARDS / CKK_EC_MONTGOMERY, curve
 * OID in CKA_EC_PARAMS, CKA_EC_POINT), CKM_EDDSA, CKM_ECDH1_DERIVE with an
 * X25519 key, and mechanisms an OpenPGP card cannot do with an RSA key
 * (no raw RSA: PSS, OAEP, X.509 must be refused, not faked). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <openssl/rsa.h>

#include "p11_vcard_fixture.h"
#include "pgp_fixture.h"

static char state_a[PATH_MAX], state_b[PATH_MAX];
static EVP_PKEY *pub_a[3], *pub_b[3];
static CK_SLOT_ID slot_a, slot_b;

static int
provision(const char *path, const uint8_t *const attrs[3], const size_t lens[3], EVP_PKEY *pubs[3])
{
	struct pgx *f = pgx_new(TK_VCARD_APPLET_OPENPGP);
	uint8_t *st = NULL;
	size_t sl = 0;
	FILE *fp;
	int r = -1;

	if (f == NULL)
		return -1;
	for (int k = 0; k < 3; k++) {
		if (pgx_generate(f, k, attrs[k], lens[k]) != 0)
			goto out;
		pubs[k] = f->pub[k];
		EVP_PKEY_up_ref(pubs[k]);
	}
	if (tk_vcard_save_mem(f->vc, &st, &sl) != TK_OK || (fp = fopen(path, "wb")) == NULL)
		goto out;
	r = fwrite(st, 1, sl, fp) == sl ? 0 : -1;
	if (fclose(fp) != 0)
		r = -1;
out:
	tk_freezero(st, sl);
	pgx_free(f);
	return r;
}

static int
group_setup(void **state)
{
	static const uint8_t *const a[3] = {pgx_rsa2048, pgx_rsa2048, pgx_ed25519};
	static const size_t al[3] = {sizeof(pgx_rsa2048), sizeof(pgx_rsa2048), sizeof(pgx_ed25519)};
	static const uint8_t *const b[3] = {pgx_ecdsa_p256, pgx_x25519, pgx_ecdsa_p384};
	static const size_t bl[3] = {sizeof(pgx_ecdsa_p256), sizeof(pgx_x25519),
	                             sizeof(pgx_ecdsa_p384)};
	char spec[3 * PATH_MAX];

	(void)state;
	snprintf(pvf.dir, sizeof(pvf.dir), "/tmp/tk-p11-pgp.XXXXXX");
	if (mkdtemp(pvf.dir) == NULL)
		return -1;
	snprintf(state_a, sizeof(state_a), "%s/a.state", pvf.dir);
	snprintf(state_b, sizeof(state_b), "%s/b.state", pvf.dir);
	snprintf(pvf.cache, sizeof(pvf.cache), "%s/cache", pvf.dir);
	if (mkdir(pvf.cache, 0700) != 0 || provision(state_a, a, al, pub_a) != 0 ||
	    provision(state_b, b, bl, pub_b) != 0)
		return -1;
	snprintf(spec, sizeof(spec), "vcard:state=%s;state=%s", state_a, state_b);
	setenv("TOKENKIT_READERS", spec, 1);
	setenv("XDG_CACHE_HOME", pvf.cache, 1);
	setenv("PCSCLITE_CSOCK_NAME", "/nonexistent/tokenkit-test/pcscd.comm", 1);
	unsetenv("TOKENKIT_DRIVERS");
	pgx_plugin_path();
	return pvf_load();
}

static int
group_teardown(void **state)
{
	(void)state;
	for (int k = 0; k < 3; k++) {
		EVP_PKEY_free(pub_a[k]);
		EVP_PKEY_free(pub_b[k]);
	}
	nftw(pvf.dir, pgx_rm_cb, 8, FTW_DEPTH | FTW_PHYS);
	return 0;
}

static int
init(void **state)
{
	CK_SLOT_ID slots[4];
	CK_ULONG n = 4;

	(void)state;
	assert_int_equal(pvf.f->C_Initialize(NULL), CKR_OK);
	assert_int_equal(pvf.f->C_GetSlotList(CK_TRUE, slots, &n), CKR_OK);
	assert_int_equal(n, 2);
	slot_a = slots[0];
	slot_b = slots[1];
	return 0;
}

static CK_SESSION_HANDLE
session(CK_SLOT_ID slot)
{
	CK_SESSION_HANDLE h = CK_INVALID_HANDLE;

	pvf.slot = slot;
	h = pvf_session(true);
	return h;
}

static bool
has_mech(CK_SLOT_ID slot, CK_MECHANISM_TYPE m)
{
	CK_MECHANISM_TYPE list[64];
	CK_ULONG n = 64;

	assert_int_equal(pvf.f->C_GetMechanismList(slot, list, &n), CKR_OK);
	for (CK_ULONG i = 0; i < n; i++)
		if (list[i] == m)
			return true;
	return false;
}

static void
test_mechanisms(void **state)
{
	CK_MECHANISM_INFO mi;
	CK_TOKEN_INFO ti;

	(void)state;
	assert_int_equal(pvf.f->C_GetTokenInfo(slot_a, &ti), CKR_OK);
	assert_memory_equal(ti.model, "OpenPGP 3.4", 11);
	assert_true(has_mech(slot_a, CKM_RSA_PKCS));
	assert_true(has_mech(slot_a, CKM_SHA256_RSA_PKCS));
	assert_true(has_mech(slot_a, CKM_EDDSA));
	assert_false(has_mech(slot_a, CKM_RSA_PKCS_PSS));
	assert_false(has_mech(slot_a, CKM_RSA_X_509));
	assert_false(has_mech(slot_a, CKM_RSA_PKCS_OAEP));
	assert_false(has_mech(slot_a, CKM_ECDH1_DERIVE));
	assert_true(has_mech(slot_b, CKM_ECDSA_SHA256));
	assert_true(has_mech(slot_b, CKM_ECDH1_DERIVE));
	assert_false(has_mech(slot_b, CKM_EDDSA));
	assert_int_equal(pvf.f->C_GetMechanismInfo(slot_a, CKM_EDDSA, &mi), CKR_OK);
	assert_int_equal(mi.ulMinKeySize, 255);
	assert_true((mi.flags & CKF_SIGN) != 0);
	assert_int_equal(pvf.f->C_GetMechanismInfo(slot_b, CKM_ECDH1_DERIVE, &mi), CKR_OK);
	assert_int_equal(mi.ulMinKeySize, 255);
	assert_true((mi.flags & CKF_DERIVE) != 0);
	assert_int_equal(pvf.f->C_GetMechanismInfo(slot_b, CKM_ECDSA, &mi), CKR_OK);
	assert_int_equal(mi.ulMinKeySize, 256);
	assert_int_equal(mi.ulMaxKeySize, 384);
}

static void
test_25519_attributes(void **state)
{
	CK_SESSION_HANDLE ha = session(slot_a), hb = session(slot_b);
	CK_KEY_TYPE kt = 0;
	uint8_t params[16], point[40], raw[32];
	CK_BBOOL aa = CK_FALSE, derive = CK_FALSE;
	CK_MECHANISM_TYPE allowed[16];
	CK_ATTRIBUTE t[3] = {{CKA_KEY_TYPE, &kt, sizeof(kt)},
	                     {CKA_EC_PARAMS, params, sizeof(params)},
	                     {CKA_EC_POINT, point, sizeof(point)}};
	size_t rl = sizeof(raw);
	CK_OBJECT_HANDLE o;

	(void)state;
	o = pvf_find(ha, CKO_PUBLIC_KEY, 3);
	assert_int_not_equal(o, CK_INVALID_HANDLE);
	assert_int_equal(pvf.f->C_GetAttributeValue(ha, o, t, 3), CKR_OK);
	assert_int_equal(kt, CKK_EC_EDWARDS);
	assert_int_equal(t[1].ulValueLen, 5);
	assert_memory_equal(params, "\x06\x03\x2B\x65\x70", 5);
	assert_int_equal(EVP_PKEY_get_raw_public_key(pub_a[2], raw, &rl), 1);
	assert_int_equal(t[2].ulValueLen, 34);
	assert_memory_equal(point, "\x04\x20", 2);
	assert_memory_equal(point + 2, raw, 32);

	o = pvf_find(hb, CKO_PRIVATE_KEY, 2);
	assert_int_not_equal(o, CK_INVALID_HANDLE);
	t[1].ulValueLen = sizeof(params);
	t[2].ulValueLen = sizeof(point);
	assert_int_equal(pvf.f->C_GetAttributeValue(hb, o, t, 3), CKR_OK);
	assert_int_equal(kt, CKK_EC_MONTGOMERY);
	assert_memory_equal(params, "\x06\x03\x2B\x65\x6E", 5);
	{
		CK_ATTRIBUTE d[1] = {{CKA_DERIVE, &derive, sizeof(derive)}};

		assert_int_equal(pvf.f->C_GetAttributeValue(hb, o, d, 1), CKR_OK);
		assert_true(derive);
	}
	/* the RSA signature key: PIN before each use, no PSS allowed */
	o = pvf_find(ha, CKO_PRIVATE_KEY, 1);
	{
		CK_ATTRIBUTE d[2] = {{CKA_ALWAYS_AUTHENTICATE, &aa, sizeof(aa)},
		                     {CKA_ALLOWED_MECHANISMS, allowed, sizeof(allowed)}};

		assert_int_equal(pvf.f->C_GetAttributeValue(ha, o, d, 2), CKR_OK);
		assert_true(aa);
		for (CK_ULONG i = 0; i < d[1].ulValueLen / sizeof(allowed[0]); i++) {
			assert_int_not_equal(allowed[i], CKM_RSA_PKCS_PSS);
			assert_int_not_equal(allowed[i], CKM_RSA_X_509);
		}
	}
	pvf.f->C_CloseAllSessions(slot_a);
	pvf.f->C_CloseAllSessions(slot_b);
}

static void
test_eddsa(void **state)
{
	CK_SESSION_HANDLE h = session(slot_a);
	CK_MECHANISM m = {CKM_EDDSA, NULL, 0};
	uint8_t sig[64], msg[300];
	CK_ULONG sl = sizeof(sig);
	EVP_MD_CTX *md = EVP_MD_CTX_new();

	(void)state;
	memset(msg, 'e', sizeof(msg));
	assert_int_equal(pvf.f->C_SignInit(h, &m, pvf_find(h, CKO_PRIVATE_KEY, 3)), CKR_OK);
	assert_int_equal(pvf.f->C_Sign(h, msg, sizeof(msg), sig, &sl), CKR_OK);
	assert_int_equal(sl, 64);
	assert_int_equal(EVP_DigestVerifyInit(md, NULL, NULL, NULL, pub_a[2]), 1);
	assert_int_equal(EVP_DigestVerify(md, sig, sl, msg, sizeof(msg)), 1);
	/* and the module's own verification, with the public key object */
	assert_int_equal(pvf.f->C_VerifyInit(h, &m, pvf_find(h, CKO_PUBLIC_KEY, 3)), CKR_OK);
	assert_int_equal(pvf.f->C_Verify(h, msg, sizeof(msg), sig, sl), CKR_OK);
	sig[5] ^= 1;
	assert_int_equal(pvf.f->C_VerifyInit(h, &m, pvf_find(h, CKO_PUBLIC_KEY, 3)), CKR_OK);
	assert_int_equal(pvf.f->C_Verify(h, msg, sizeof(msg), sig, sl), CKR_SIGNATURE_INVALID);
	/* EdDSA with the RSA key: the wrong type */
	assert_int_equal(pvf.f->C_SignInit(h, &m, pvf_find(h, CKO_PRIVATE_KEY, 1)),
	                 CKR_KEY_TYPE_INCONSISTENT);
	EVP_MD_CTX_free(md);
	pvf.f->C_CloseAllSessions(slot_a);
}

static void
test_rsa_card_padding(void **state)
{
	CK_SESSION_HANDLE h = session(slot_a);
	CK_MECHANISM m = {CKM_SHA256_RSA_PKCS, NULL, 0}, dm = {CKM_RSA_PKCS, NULL, 0};
	CK_RSA_PKCS_PSS_PARAMS pss = {CKM_SHA256, CKG_MGF1_SHA256, 32};
	CK_MECHANISM pm = {CKM_SHA256_RSA_PKCS_PSS, &pss, sizeof(pss)};
	CK_RSA_PKCS_OAEP_PARAMS oaep = {CKM_SHA256, CKG_MGF1_SHA256, CKZ_DATA_SPECIFIED, NULL, 0};
	CK_MECHANISM om = {CKM_RSA_PKCS_OAEP, &oaep, sizeof(oaep)};
	CK_OBJECT_HANDLE sig = pvf_find(h, CKO_PRIVATE_KEY, 1),
	                 dec = pvf_find(h, CKO_PRIVATE_KEY, 2);
	uint8_t out[256], ct[256];
	CK_ULONG ol = sizeof(out);
	size_t cl = sizeof(ct);
	EVP_MD_CTX *md = EVP_MD_CTX_new();
	EVP_PKEY_CTX *c;

	(void)state;
	assert_int_equal(pvf.f->C_SignInit(h, &pm, sig), CKR_MECHANISM_INVALID);
	assert_int_equal(pvf.f->C_SignInit(h, &m, sig), CKR_OK);
	assert_int_equal(pvf.f->C_Login(h, CKU_CONTEXT_SPECIFIC, (CK_UTF8CHAR_PTR) "123456", 6),
	                 CKR_OK);
	assert_int_equal(pvf.f->C_Sign(h, (CK_BYTE_PTR) "data", 4, out, &ol), CKR_OK);
	assert_int_equal(ol, 256);
	assert_int_equal(EVP_DigestVerifyInit(md, NULL, EVP_sha256(), NULL, pub_a[0]), 1);
	assert_int_equal(EVP_DigestVerify(md, out, ol, (const uint8_t *)"data", 4), 1);

	c = EVP_PKEY_CTX_new(pub_a[1], NULL);
	assert_int_equal(EVP_PKEY_encrypt_init(c), 1);
	assert_int_equal(EVP_PKEY_CTX_set_rsa_padding(c, RSA_PKCS1_PADDING), 1);
	assert_int_equal(EVP_PKEY_encrypt(c, ct, &cl, (const uint8_t *)"wrapped key", 11), 1);
	EVP_PKEY_CTX_free(c);
	assert_int_equal(pvf.f->C_DecryptInit(h, &om, dec), CKR_MECHANISM_INVALID);
	assert_int_equal(pvf.f->C_DecryptInit(h, &dm, dec), CKR_OK);
	ol = sizeof(out);
	assert_int_equal(pvf.f->C_Decrypt(h, ct, cl, out, &ol), CKR_OK);
	assert_int_equal(ol, 11);
	assert_memory_equal(out, "wrapped key", 11);
	EVP_MD_CTX_free(md);
	pvf.f->C_CloseAllSessions(slot_a);
}

static void
test_x25519_derive_and_ecdsa(void **state)
{
	CK_SESSION_HANDLE h = session(slot_b);
	EVP_PKEY *peer = EVP_PKEY_Q_keygen(NULL, NULL, "X25519");
	uint8_t raw[34], want[32], val[32], sig[64], hash[32];
	size_t rl = 32, wl = sizeof(want);
	CK_ECDH1_DERIVE_PARAMS p = {CKD_NULL, 0, NULL, 32, raw + 2};
	CK_MECHANISM m = {CKM_ECDH1_DERIVE, &p, sizeof(p)};
	CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
	CK_KEY_TYPE kt = CKK_GENERIC_SECRET;
	CK_BBOOL no = CK_FALSE, yes = CK_TRUE;
	CK_ATTRIBUTE tpl[4] = {{CKA_CLASS, &cls, sizeof(cls)},
	                       {CKA_KEY_TYPE, &kt, sizeof(kt)},
	                       {CKA_SENSITIVE, &no, sizeof(no)},
	                       {CKA_EXTRACTABLE, &yes, sizeof(yes)}};
	CK_ATTRIBUTE v = {CKA_VALUE, val, sizeof(val)};
	CK_MECHANISM em = {CKM_ECDSA, NULL, 0};
	CK_OBJECT_HANDLE k = CK_INVALID_HANDLE;
	CK_ULONG sl = sizeof(sig);
	EVP_PKEY_CTX *c;
	ECDSA_SIG *es;
	uint8_t *der = NULL;
	int dl;

	(void)state;
	assert_int_equal(EVP_PKEY_get_raw_public_key(peer, raw + 2, &rl), 1);
	c = EVP_PKEY_CTX_new(peer, NULL);
	assert_int_equal(EVP_PKEY_derive_init(c), 1);
	assert_int_equal(EVP_PKEY_derive_set_peer(c, pub_b[1]), 1);
	assert_int_equal(EVP_PKEY_derive(c, want, &wl), 1);
	EVP_PKEY_CTX_free(c);
	for (int form = 0; form < 2; form++) {
		/* the raw u-coordinate, then wrapped in a DER OCTET STRING */
		if (form == 1) {
			raw[0] = 0x04;
			raw[1] = 0x20;
			p.pPublicData = raw;
			p.ulPublicDataLen = 34;
		}
		assert_int_equal(
		        pvf.f->C_DeriveKey(h, &m, pvf_find(h, CKO_PRIVATE_KEY, 2), tpl, 4, &k),
		        CKR_OK);
		v.ulValueLen = sizeof(val);
		assert_int_equal(pvf.f->C_GetAttributeValue(h, k, &v, 1), CKR_OK);
		assert_int_equal(v.ulValueLen, 32);
		assert_memory_equal(val, want, 32);
	}
	p.ulPublicDataLen = 31;
	assert_int_equal(pvf.f->C_DeriveKey(h, &m, pvf_find(h, CKO_PRIVATE_KEY, 2), tpl, 4, &k),
	                 CKR_MECHANISM_PARAM_INVALID);

	/* ECDSA with the P-256 signature key (PIN right before) */
	memset(hash, 0x33, sizeof(hash));
	assert_int_equal(pvf.f->C_SignInit(h, &em, pvf_find(h, CKO_PRIVATE_KEY, 1)), CKR_OK);
	assert_int_equal(pvf.f->C_Login(h, CKU_CONTEXT_SPECIFIC, (CK_UTF8CHAR_PTR) "123456", 6),
	                 CKR_OK);
	assert_int_equal(pvf.f->C_Sign(h, hash, sizeof(hash), sig, &sl), CKR_OK);
	assert_int_equal(sl, 64);
	es = ECDSA_SIG_new();
	ECDSA_SIG_set0(es, BN_bin2bn(sig, 32, NULL), BN_bin2bn(sig + 32, 32, NULL));
	dl = i2d_ECDSA_SIG(es, &der);
	c = EVP_PKEY_CTX_new(pub_b[0], NULL);
	assert_int_equal(EVP_PKEY_verify_init(c), 1);
	assert_int_equal(EVP_PKEY_verify(c, der, (size_t)dl, hash, sizeof(hash)), 1);
	EVP_PKEY_CTX_free(c);
	OPENSSL_free(der);
	ECDSA_SIG_free(es);
	EVP_PKEY_free(peer);
	pvf.f->C_CloseAllSessions(slot_b);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test_setup_teardown(test_mechanisms, init, pvf_fin),
	        cmocka_unit_test_setup_teardown(test_25519_attributes, init, pvf_fin),
	        cmocka_unit_test_setup_teardown(test_eddsa, init, pvf_fin),
	        cmocka_unit_test_setup_teardown(test_rsa_card_padding, init, pvf_fin),
	        cmocka_unit_test_setup_teardown(test_x25519_derive_and_ecdsa, init, pvf_fin),
	};

	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
