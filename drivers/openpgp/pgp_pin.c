/* tokenkit OpenPGP card driver: PW1, PW3 and the KDF-DO.
 *
 * PW1 has two references on the card: 81 enables PSO:COMPUTE DIGITAL
 * SIGNATURE (for one signature when C4 says so), 82 the decryption and
 * authentication keys. A user login verifies 82 (and 81 when PW1 is good
 * for several signatures); the context login of the always-authenticate
 * signature key verifies 81. The security officer is PW3 (83).
 *
 * With a KDF-DO (F9) the card stores a hash of each PIN: the PIN is hashed
 * here (OpenPGP's iterated and salted S2K) and the hash is what VERIFY
 * carries. PIN commands are never resent (a try may have counted). */
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "openpgp.h"

static int
ensure_kdf(pgp_t *p)
{
	uint8_t *raw = NULL;
	size_t len = 0;
	bool absent = false;
	int r;

	if (p->kdf_known)
		return TK_OK;
	memset(&p->kdf, 0, sizeof(p->kdf));
	/* only cards that announce the KDF-DO have one (extended caps bit 1) */
	if (p->ard.has_ext_caps && (p->ard.ext_caps[0] & 0x01) != 0) {
		if ((r = pgp_get_data(p, 0xF9, &raw, &len, &absent)) != TK_OK)
			return r;
		if (!absent && (r = pgp_parse_kdf(raw, len, &p->kdf)) != TK_OK) {
			pgp_log(TK_LOG_WARN, "openpgp: KDF-DO: %s", pgp_host->strerror(r));
			free(raw);
			return r;
		}
		free(raw);
	}
	p->kdf_known = true;
	return TK_OK;
}

/* RFC 4880 3.7.1.3: hash salt || pin, repeated, count bytes in all (at
 * least once whole). */
static int
s2k(const pgp_kdf_t *kdf, const uint8_t salt[8], const uint8_t *pin, size_t len, uint8_t *out,
    size_t *out_len)
{
	const EVP_MD *md = kdf->hash == 0x0A ? EVP_sha512() : EVP_sha256();
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	size_t unit = 8 + len, left = kdf->count < unit ? unit : kdf->count;
	unsigned int ol = 0;
	int ok;

	if (ctx == NULL)
		return TK_ERR_NO_MEMORY;
	ok = EVP_DigestInit_ex(ctx, md, NULL) == 1;
	while (ok && left > 0) {
		size_t s = left < 8 ? left : 8;

		ok = EVP_DigestUpdate(ctx, salt, s) == 1;
		left -= s;
		if (ok && left > 0) {
			size_t q = left < len ? left : len;

			ok = EVP_DigestUpdate(ctx, pin, q) == 1;
			left -= q;
		}
	}
	ok = ok && EVP_DigestFinal_ex(ctx, out, &ol) == 1;
	EVP_MD_CTX_free(ctx);
	*out_len = ol;
	return ok ? TK_OK : TK_ERR_INTERNAL;
}

int
pgp_pin_bytes(const pgp_kdf_t *kdf, int which, const uint8_t *pin, size_t len, uint8_t *out,
              size_t *out_len)
{
	*out_len = 0;
	if (len == 0 || len > PGP_PW_MAX)
		return TK_ERR_INVALID_ARG;
	if (kdf == NULL || !kdf->on) {
		memcpy(out, pin, len);
		*out_len = len;
		return TK_OK;
	}
	/* one salt for all when the KDF-DO gives only PW1's */
	return s2k(kdf, kdf->salt[kdf->has_salt[which] ? which : 0], pin, len, out, out_len);
}

static int
send(pgp_t *p, uint8_t ins, uint8_t p1, uint8_t ref, const uint8_t *data, size_t len, uint16_t *sw)
{
	tk_apdu_t a = {0x00, ins, p1, ref, data, len, 0};
	uint8_t resp[16];
	size_t n = 0;

	*sw = 0;
	return pgp_cmd(p, &a, false, resp, sizeof(resp), &n, sw);
}

/* VERIFY ref with pin (KDF applied). */
static int
verify(pgp_t *p, uint8_t ref, const uint8_t *pin, size_t len, int *retries)
{
	uint8_t buf[64];
	size_t bl = 0;
	uint16_t sw = 0;
	int r;

	*retries = -1;
	if ((r = ensure_kdf(p)) != TK_OK)
		return r;
	if ((r = pgp_pin_bytes(&p->kdf, ref == 0x83 ? 2 : 0, pin, len, buf, &bl)) != TK_OK)
		goto out;
	if ((r = send(p, 0x20, 0x00, ref, buf, bl, &sw)) != TK_OK)
		goto out;
	r = pgp_host->err_from_pin_sw(sw, retries);
	if (r != TK_OK)
		pgp_log(TK_LOG_DEBUG, "openpgp: VERIFY %02X: %s (retries %d)", ref,
		        pgp_host->strerror(r), *retries);
out:
	pgp_host->wipe(buf, sizeof(buf));
	return r;
}

/* VERIFY with P1 FF: the card forgets the verification (3.x). */
static void
forget(pgp_t *p, uint8_t ref)
{
	uint16_t sw = 0;

	if (send(p, 0x20, 0xFF, ref, NULL, 0, &sw) == TK_OK && sw != 0x9000)
		pgp_log(TK_LOG_DEBUG, "openpgp: VERIFY reset %02X: SW %04X", ref, sw);
}

int
pgp_pin_verify(void *state, int user, const uint8_t *pin, size_t pin_len, int *retries)
{
	pgp_t *p = state;
	size_t min = user == TK_USER_SO ? PGP_PW3_MIN : PGP_PW1_MIN;
	int r;

	*retries = -1;
	if (user != TK_USER_USER && user != TK_USER_CONTEXT && user != TK_USER_SO)
		return TK_ERR_INVALID_ARG;
	if (pin != NULL && (pin_len < min || pin_len > PGP_PW_MAX))
		return TK_ERR_INVALID_ARG;
	if ((r = pgp_begin(p)) != TK_OK)
		return r;
	if (pin == NULL) {
		if (user != TK_USER_SO) {
			forget(p, 0x81);
			forget(p, 0x82);
		}
	} else if (user == TK_USER_SO) {
		r = verify(p, 0x83, pin, pin_len, retries);
	} else if (user == TK_USER_CONTEXT) {
		r = verify(p, 0x81, pin, pin_len, retries);
	} else {
		r = verify(p, 0x82, pin, pin_len, retries);
		/* PW1 good for several signatures: the signature key needs no
		 * context login, so 81 is verified with the login */
		if (r == TK_OK && p->ard.has_pw_status && p->ard.pw_status[0] != 0)
			r = verify(p, 0x81, pin, pin_len, retries);
	}
	pgp_end(p);
	return r;
}

/* An empty VERIFY tells the state without spending a try: 9000 verified,
 * 63Cx the tries left. */
int
pgp_pin_status(void *state, int user, tk_drv_pin_status_t *st)
{
	pgp_t *p = state;
	uint16_t sw = 0;
	int r, retries;

	st->retries = -1;
	st->max_retries = -1;
	st->verified = false;
	st->locked = false;
	if ((r = pgp_begin(p)) != TK_OK)
		return r;
	r = send(p, 0x20, 0x00, user == TK_USER_SO ? 0x83 : 0x82, NULL, 0, &sw);
	pgp_end(p);
	if (r != TK_OK)
		return r;
	st->max_retries = 3; /* the specification's default; C4 gives no maximum */
	r = pgp_host->err_from_pin_sw(sw, &retries);
	if (r == TK_OK) {
		st->verified = true;
	} else if (r == TK_ERR_PIN_INCORRECT || r == TK_ERR_PIN_LOCKED) {
		st->retries = retries;
		st->locked = r == TK_ERR_PIN_LOCKED;
	}
	return TK_OK;
}

/* CHANGE REFERENCE DATA: old || new, each hashed when the KDF is on. */
int
pgp_pin_change(void *state, int user, const uint8_t *old_pin, size_t old_len,
               const uint8_t *new_pin, size_t new_len)
{
	pgp_t *p = state;
	size_t min = user == TK_USER_SO ? PGP_PW3_MIN : PGP_PW1_MIN, ol = 0, nl = 0;
	int which = user == TK_USER_SO ? 2 : 0, r, retries;
	uint8_t buf[128];
	uint16_t sw = 0;

	if (user != TK_USER_USER && user != TK_USER_SO)
		return TK_ERR_INVALID_ARG;
	if (old_len < min || new_len < min || old_len > PGP_PW_MAX || new_len > PGP_PW_MAX)
		return TK_ERR_INVALID_ARG;
	if ((r = pgp_begin(p)) != TK_OK)
		return r;
	if ((r = ensure_kdf(p)) != TK_OK)
		goto out;
	if (p->kdf.on) {
		if ((r = pgp_pin_bytes(&p->kdf, which, old_pin, old_len, buf, &ol)) != TK_OK ||
		    (r = pgp_pin_bytes(&p->kdf, which, new_pin, new_len, buf + ol, &nl)) != TK_OK)
			goto out;
	} else if (old_len + new_len <= sizeof(buf)) {
		memcpy(buf, old_pin, old_len);
		memcpy(buf + old_len, new_pin, new_len);
		ol = old_len;
		nl = new_len;
	} else {
		r = TK_ERR_INVALID_ARG;
		goto out;
	}
	if ((r = send(p, 0x24, 0x00, user == TK_USER_SO ? 0x83 : 0x81, buf, ol + nl, &sw)) == TK_OK)
		r = pgp_host->err_from_pin_sw(sw, &retries);
out:
	pgp_end(p);
	pgp_host->wipe(buf, sizeof(buf));
	return r;
}

/* With the admin PIN: VERIFY 83, then RESET RETRY COUNTER (P1 02) with the
 * new PW1, in one transaction. */
int
pgp_pin_unblock(void *state, const uint8_t *puk, size_t puk_len, const uint8_t *new_pin,
                size_t new_len)
{
	pgp_t *p = state;
	uint8_t buf[64];
	size_t bl = 0;
	uint16_t sw = 0;
	int r, retries;

	if (puk_len < PGP_PW3_MIN || puk_len > PGP_PW_MAX || new_len < PGP_PW1_MIN ||
	    new_len > PGP_PW_MAX)
		return TK_ERR_INVALID_ARG;
	if ((r = pgp_begin(p)) != TK_OK)
		return r;
	if ((r = verify(p, 0x83, puk, puk_len, &retries)) != TK_OK)
		goto out;
	if ((r = pgp_pin_bytes(&p->kdf, 0, new_pin, new_len, buf, &bl)) != TK_OK)
		goto out;
	if ((r = send(p, 0x2C, 0x02, 0x81, buf, bl, &sw)) == TK_OK)
		r = pgp_host->err_from_pin_sw(sw, &retries);
out:
	pgp_end(p);
	pgp_host->wipe(buf, sizeof(buf));
	return r;
}
