/* tokenkit: the software token's object rules (see core/soft.h), and
 * attribute lists.
 *
 * One table per group of attributes as PKCS#11 3.0 section 4 has them
 * (common, storage, data, certificate, X.509, key, public key, private key,
 * secret key, and one per key type); an object's attributes are the union
 * of its class's groups. Each entry says the value's form, the section 4
 * footnotes that apply, and the token's default. The footnotes:
 *   1/3/5   must be given when the object is created / generated / unwrapped
 *   2/4/6   must not be given then (the token sets it)
 *   7       sensitive: not revealed unless CKA_SENSITIVE is false and
 *           CKA_EXTRACTABLE true
 *   8       may be changed after creation (C_SetAttributeValue, C_CopyObject)
 *   10      only the SO may set it to true
 *   11/12   may change only to true / only to false
 * and 4.4's rule that CKA_TOKEN, CKA_PRIVATE and CKA_MODIFIABLE change only
 * in a copy. The defaults ("token-specific", footnote 9) are this token's:
 * keys sensitive and not extractable, private and secret keys private; a
 * private key signs (and an RSA one decrypts), a public key verifies (an
 * RSA one encrypts), an AES key encrypts, decrypts, wraps and unwraps. */
#include <stdlib.h>
#include <string.h>

#include <tokenkit/err.h>
#include <tokenkit/mem.h>

#include "soft.h"

/* ---- attribute lists --------------------------------------------------------------- */

void
tk_attrs_clear(tk_attrs_t *l)
{
	if (l == NULL)
		return;
	for (size_t i = 0; i < l->n; i++)
		tk_freezero(l->a[i].val, l->a[i].len);
	free(l->a);
	l->a = NULL;
	l->n = 0;
}

/* The index of t, or where it would go (*found false). */
static size_t
find(const tk_attrs_t *l, CK_ATTRIBUTE_TYPE t, bool *found)
{
	size_t lo = 0, hi = l->n;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (l->a[mid].type < t)
			lo = mid + 1;
		else
			hi = mid;
	}
	*found = lo < l->n && l->a[lo].type == t;
	return lo;
}

const tk_attr_t *
tk_attrs_get(const tk_attrs_t *l, CK_ATTRIBUTE_TYPE t)
{
	bool found;
	size_t i;

	if (l == NULL)
		return NULL;
	i = find(l, t, &found);
	return found ? &l->a[i] : NULL;
}

int
tk_attrs_set(tk_attrs_t *l, CK_ATTRIBUTE_TYPE t, const void *v, size_t len)
{
	uint8_t *copy = NULL;
	tk_attr_t *na;
	bool found;
	size_t i = find(l, t, &found);

	if (len > 0) {
		if ((copy = malloc(len)) == NULL)
			return TK_ERR_NO_MEMORY;
		memcpy(copy, v, len);
	}
	if (found) {
		tk_freezero(l->a[i].val, l->a[i].len);
		l->a[i].val = copy;
		l->a[i].len = len;
		return TK_OK;
	}
	if ((na = realloc(l->a, (l->n + 1) * sizeof(*na))) == NULL) {
		tk_freezero(copy, len);
		return TK_ERR_NO_MEMORY;
	}
	l->a = na;
	memmove(&na[i + 1], &na[i], (l->n - i) * sizeof(*na));
	na[i].type = t;
	na[i].val = copy;
	na[i].len = len;
	l->n++;
	return TK_OK;
}

int
tk_attrs_set_bool(tk_attrs_t *l, CK_ATTRIBUTE_TYPE t, bool v)
{
	CK_BBOOL b = v ? CK_TRUE : CK_FALSE;

	return tk_attrs_set(l, t, &b, sizeof(b));
}

int
tk_attrs_set_ulong(tk_attrs_t *l, CK_ATTRIBUTE_TYPE t, CK_ULONG v)
{
	return tk_attrs_set(l, t, &v, sizeof(v));
}

void
tk_attrs_del(tk_attrs_t *l, CK_ATTRIBUTE_TYPE t)
{
	bool found;
	size_t i = find(l, t, &found);

	if (!found)
		return;
	tk_freezero(l->a[i].val, l->a[i].len);
	memmove(&l->a[i], &l->a[i + 1], (l->n - i - 1) * sizeof(l->a[0]));
	l->n--;
}

bool
tk_attrs_bool(const tk_attrs_t *l, CK_ATTRIBUTE_TYPE t)
{
	const tk_attr_t *a = tk_attrs_get(l, t);

	return a != NULL && a->len == sizeof(CK_BBOOL) && a->val[0] != CK_FALSE;
}

bool
tk_attrs_ulong(const tk_attrs_t *l, CK_ATTRIBUTE_TYPE t, CK_ULONG *v)
{
	const tk_attr_t *a = tk_attrs_get(l, t);

	if (a == NULL || a->len != sizeof(CK_ULONG))
		return false;
	memcpy(v, a->val, sizeof(*v));
	return true;
}

int
tk_attrs_dup(const tk_attrs_t *src, tk_attrs_t *dst)
{
	memset(dst, 0, sizeof(*dst));
	if (src->n == 0)
		return TK_OK;
	if ((dst->a = calloc(src->n, sizeof(*dst->a))) == NULL)
		return TK_ERR_NO_MEMORY;
	for (size_t i = 0; i < src->n; i++) {
		dst->a[i].type = src->a[i].type;
		dst->a[i].len = src->a[i].len;
		if (src->a[i].len == 0)
			continue;
		if ((dst->a[i].val = malloc(src->a[i].len)) == NULL) {
			dst->n = i;
			tk_attrs_clear(dst);
			return TK_ERR_NO_MEMORY;
		}
		memcpy(dst->a[i].val, src->a[i].val, src->a[i].len);
	}
	dst->n = src->n;
	return TK_OK;
}

bool
tk_attrs_equal(const tk_attrs_t *a, const tk_attrs_t *b)
{
	if (a->n != b->n)
		return false;
	for (size_t i = 0; i < a->n; i++)
		if (a->a[i].type != b->a[i].type || a->a[i].len != b->a[i].len ||
		    (a->a[i].len > 0 && memcmp(a->a[i].val, b->a[i].val, a->a[i].len) != 0))
			return false;
	return true;
}

/* ---- the tables ------------------------------------------------------------------- */

enum kind { K_BOOL = 1, K_ULONG, K_BYTES, K_DATE, K_MECHS };

/* footnotes and this token's own rules */
#define F_REQ_CREATE 0x0001u  /* 1 */
#define F_NO_CREATE 0x0002u   /* 2 */
#define F_REQ_GEN 0x0004u     /* 3 */
#define F_NO_GEN 0x0008u      /* 4 */
#define F_REQ_UNWRAP 0x0010u  /* 5 */
#define F_NO_UNWRAP 0x0020u   /* 6 */
#define F_SENSITIVE 0x0040u   /* 7 */
#define F_MODIFIABLE 0x0080u  /* 8 */
#define F_SO_TRUE 0x0100u     /* 10 */
#define F_LATCH_TRUE 0x0200u  /* 11 */
#define F_LATCH_FALSE 0x0400u /* 12 */
#define F_COPY 0x0800u        /* 4.4: changes in a copy only */
#define F_UNSUPPORTED 0x1000u /* an attribute this token does not take */
#define F_EXTRA 0x2000u       /* set by the token only, read-only: TK_OBJ_ATTR_DERIVED */
#define F_TOKEN_SET (F_NO_CREATE | F_NO_GEN | F_NO_UNWRAP)

enum dflt {
	D_NONE = 0, /* absent unless given or set by the token */
	D_FALSE,
	D_TRUE,
	D_EMPTY,
	D_ZERO,
	D_SHA1,    /* CKM_SHA_1 */
	D_PRIVATE, /* true for private and secret keys */
	D_CAP,     /* a key's capability: see cap_default */
};

struct rule {
	CK_ATTRIBUTE_TYPE type;
	uint8_t kind;
	uint16_t flags;
	uint8_t dflt;
};

#define END                                                                                        \
	{                                                                                          \
		0, 0, 0, 0                                                                         \
	}

static const struct rule common[] = {
        {CKA_CLASS, K_ULONG, F_REQ_CREATE | F_REQ_UNWRAP, D_NONE},
        END,
};

static const struct rule storage[] = {
        {CKA_TOKEN, K_BOOL, F_COPY, D_FALSE},
        {CKA_PRIVATE, K_BOOL, F_COPY, D_PRIVATE},
        {CKA_MODIFIABLE, K_BOOL, F_COPY, D_TRUE},
        {CKA_LABEL, K_BYTES, F_MODIFIABLE, D_EMPTY},
        {CKA_COPYABLE, K_BOOL, F_MODIFIABLE | F_LATCH_FALSE, D_TRUE},
        {CKA_DESTROYABLE, K_BOOL, F_MODIFIABLE, D_TRUE},
        {CKA_UNIQUE_ID, K_BYTES, F_TOKEN_SET, D_NONE},
        END,
};

static const struct rule data[] = {
        {CKA_APPLICATION, K_BYTES, F_MODIFIABLE, D_EMPTY},
        {CKA_OBJECT_ID, K_BYTES, F_MODIFIABLE, D_EMPTY},
        {CKA_VALUE, K_BYTES, F_MODIFIABLE, D_EMPTY},
        END,
};

static const struct rule cert[] = {
        {CKA_CERTIFICATE_TYPE, K_ULONG, F_REQ_CREATE, D_NONE},
        {CKA_TRUSTED, K_BOOL, F_SO_TRUE | F_MODIFIABLE, D_FALSE},
        {CKA_CERTIFICATE_CATEGORY, K_ULONG, 0, D_ZERO},
        {CKA_CHECK_VALUE, K_BYTES, 0, D_NONE},
        {CKA_START_DATE, K_DATE, 0, D_EMPTY},
        {CKA_END_DATE, K_DATE, 0, D_EMPTY},
        {CKA_PUBLIC_KEY_INFO, K_BYTES, 0, D_NONE},
        END,
};

/* X.509 public-key certificates (table-local footnotes: CKA_VALUE must be
 * given, and only CKA_ID, CKA_ISSUER and CKA_SERIAL_NUMBER change). A
 * certificate only by URL (CKA_URL, empty CKA_VALUE) is not taken. */
static const struct rule x509[] = {
        {CKA_SUBJECT, K_BYTES, F_REQ_CREATE, D_NONE},
        {CKA_ID, K_BYTES, F_MODIFIABLE, D_EMPTY},
        {CKA_ISSUER, K_BYTES, F_MODIFIABLE, D_EMPTY},
        {CKA_SERIAL_NUMBER, K_BYTES, F_MODIFIABLE, D_EMPTY},
        {CKA_VALUE, K_BYTES, F_REQ_CREATE, D_NONE},
        {CKA_URL, K_BYTES, 0, D_EMPTY},
        {CKA_HASH_OF_SUBJECT_PUBLIC_KEY, K_BYTES, 0, D_EMPTY},
        {CKA_HASH_OF_ISSUER_PUBLIC_KEY, K_BYTES, 0, D_EMPTY},
        {CKA_JAVA_MIDP_SECURITY_DOMAIN, K_ULONG, 0, D_ZERO},
        {CKA_NAME_HASH_ALGORITHM, K_ULONG, 0, D_SHA1},
        END,
};

static const struct rule key[] = {
        {CKA_KEY_TYPE, K_ULONG, F_REQ_CREATE | F_REQ_UNWRAP, D_NONE},
        {CKA_ID, K_BYTES, F_MODIFIABLE, D_EMPTY},
        {CKA_START_DATE, K_DATE, F_MODIFIABLE, D_EMPTY},
        {CKA_END_DATE, K_DATE, F_MODIFIABLE, D_EMPTY},
        {CKA_DERIVE, K_BOOL, F_MODIFIABLE, D_FALSE},
        {CKA_LOCAL, K_BOOL, F_TOKEN_SET, D_NONE},
        {CKA_KEY_GEN_MECHANISM, K_ULONG, F_TOKEN_SET, D_NONE},
        {CKA_ALLOWED_MECHANISMS, K_MECHS, 0, D_EMPTY},
        END,
};

static const struct rule pub[] = {
        {CKA_SUBJECT, K_BYTES, F_MODIFIABLE, D_EMPTY},
        {CKA_ENCRYPT, K_BOOL, F_MODIFIABLE, D_CAP},
        {CKA_VERIFY, K_BOOL, F_MODIFIABLE, D_CAP},
        {CKA_VERIFY_RECOVER, K_BOOL, F_MODIFIABLE, D_FALSE},
        {CKA_WRAP, K_BOOL, F_MODIFIABLE, D_FALSE},
        {CKA_TRUSTED, K_BOOL, F_SO_TRUE | F_MODIFIABLE, D_FALSE},
        {CKA_WRAP_TEMPLATE, K_BYTES, F_UNSUPPORTED, D_NONE},
        {CKA_PUBLIC_KEY_INFO, K_BYTES, 0, D_NONE},
        END,
};

static const struct rule priv[] = {
        {CKA_SUBJECT, K_BYTES, F_MODIFIABLE, D_EMPTY},
        {CKA_SENSITIVE, K_BOOL, F_MODIFIABLE | F_LATCH_TRUE, D_TRUE},
        {CKA_DECRYPT, K_BOOL, F_MODIFIABLE, D_CAP},
        {CKA_SIGN, K_BOOL, F_MODIFIABLE, D_CAP},
        {CKA_SIGN_RECOVER, K_BOOL, F_MODIFIABLE, D_FALSE},
        {CKA_UNWRAP, K_BOOL, F_MODIFIABLE, D_FALSE},
        {CKA_EXTRACTABLE, K_BOOL, F_MODIFIABLE | F_LATCH_FALSE, D_FALSE},
        {CKA_ALWAYS_SENSITIVE, K_BOOL, F_TOKEN_SET, D_NONE},
        {CKA_NEVER_EXTRACTABLE, K_BOOL, F_TOKEN_SET, D_NONE},
        {CKA_WRAP_WITH_TRUSTED, K_BOOL, F_MODIFIABLE | F_LATCH_TRUE, D_FALSE},
        {CKA_UNWRAP_TEMPLATE, K_BYTES, F_UNSUPPORTED, D_NONE},
        {CKA_DERIVE_TEMPLATE, K_BYTES, F_UNSUPPORTED, D_NONE},
        {CKA_ALWAYS_AUTHENTICATE, K_BOOL, 0, D_FALSE},
        {CKA_PUBLIC_KEY_INFO, K_BYTES, F_MODIFIABLE, D_NONE},
        END,
};

static const struct rule secret[] = {
        {CKA_SENSITIVE, K_BOOL, F_MODIFIABLE | F_LATCH_TRUE, D_TRUE},
        {CKA_ENCRYPT, K_BOOL, F_MODIFIABLE, D_CAP},
        {CKA_DECRYPT, K_BOOL, F_MODIFIABLE, D_CAP},
        {CKA_SIGN, K_BOOL, F_MODIFIABLE, D_CAP},
        {CKA_VERIFY, K_BOOL, F_MODIFIABLE, D_CAP},
        {CKA_WRAP, K_BOOL, F_MODIFIABLE, D_CAP},
        {CKA_UNWRAP, K_BOOL, F_MODIFIABLE, D_CAP},
        {CKA_EXTRACTABLE, K_BOOL, F_MODIFIABLE | F_LATCH_FALSE, D_FALSE},
        {CKA_ALWAYS_SENSITIVE, K_BOOL, F_TOKEN_SET, D_NONE},
        {CKA_NEVER_EXTRACTABLE, K_BOOL, F_TOKEN_SET, D_NONE},
        {CKA_CHECK_VALUE, K_BYTES, 0, D_NONE},
        {CKA_WRAP_WITH_TRUSTED, K_BOOL, F_MODIFIABLE | F_LATCH_TRUE, D_FALSE},
        {CKA_TRUSTED, K_BOOL, F_SO_TRUE | F_MODIFIABLE, D_FALSE},
        {CKA_WRAP_TEMPLATE, K_BYTES, F_UNSUPPORTED, D_NONE},
        {CKA_UNWRAP_TEMPLATE, K_BYTES, F_UNSUPPORTED, D_NONE},
        {CKA_DERIVE_TEMPLATE, K_BYTES, F_UNSUPPORTED, D_NONE},
        END,
};

static const struct rule rsa_pub[] = {
        {CKA_MODULUS, K_BYTES, F_REQ_CREATE | F_NO_GEN, D_NONE},
        {CKA_MODULUS_BITS, K_ULONG, F_NO_CREATE | F_REQ_GEN, D_NONE},
        {CKA_PUBLIC_EXPONENT, K_BYTES, F_REQ_CREATE, D_NONE},
        END,
};

static const struct rule rsa_priv[] = {
        {CKA_MODULUS, K_BYTES, F_REQ_CREATE | F_NO_GEN | F_NO_UNWRAP, D_NONE},
        {CKA_PUBLIC_EXPONENT, K_BYTES, F_NO_GEN | F_NO_UNWRAP, D_NONE},
        {CKA_PRIVATE_EXPONENT, K_BYTES, F_REQ_CREATE | F_NO_GEN | F_NO_UNWRAP | F_SENSITIVE,
         D_NONE},
        {CKA_PRIME_1, K_BYTES, F_NO_GEN | F_NO_UNWRAP | F_SENSITIVE, D_NONE},
        {CKA_PRIME_2, K_BYTES, F_NO_GEN | F_NO_UNWRAP | F_SENSITIVE, D_NONE},
        {CKA_EXPONENT_1, K_BYTES, F_NO_GEN | F_NO_UNWRAP | F_SENSITIVE, D_NONE},
        {CKA_EXPONENT_2, K_BYTES, F_NO_GEN | F_NO_UNWRAP | F_SENSITIVE, D_NONE},
        {CKA_COEFFICIENT, K_BYTES, F_NO_GEN | F_NO_UNWRAP | F_SENSITIVE, D_NONE},
        {CKA_MODULUS_BITS, K_ULONG, F_EXTRA, D_NONE},
        END,
};

/* EC (NIST curves) and Edwards (Ed25519) keys share their attributes */
static const struct rule ec_pub[] = {
        {CKA_EC_PARAMS, K_BYTES, F_REQ_CREATE | F_REQ_GEN, D_NONE},
        {CKA_EC_POINT, K_BYTES, F_REQ_CREATE | F_NO_GEN, D_NONE},
        END,
};

static const struct rule ec_priv[] = {
        {CKA_EC_PARAMS, K_BYTES, F_REQ_CREATE | F_NO_GEN | F_NO_UNWRAP, D_NONE},
        {CKA_VALUE, K_BYTES, F_REQ_CREATE | F_NO_GEN | F_NO_UNWRAP | F_SENSITIVE, D_NONE},
        {CKA_EC_POINT, K_BYTES, F_EXTRA, D_NONE},
        END,
};

static const struct rule aes[] = {
        {CKA_VALUE, K_BYTES, F_REQ_CREATE | F_NO_GEN | F_NO_UNWRAP | F_SENSITIVE, D_NONE},
        {CKA_VALUE_LEN, K_ULONG, F_NO_CREATE | F_REQ_GEN | F_NO_UNWRAP, D_NONE},
        END,
};

static const struct rule generic[] = {
        {CKA_VALUE, K_BYTES, F_REQ_CREATE | F_NO_GEN | F_NO_UNWRAP | F_SENSITIVE, D_NONE},
        {CKA_VALUE_LEN, K_ULONG, F_NO_CREATE | F_REQ_GEN, D_NONE},
        END,
};

#define GROUPS_MAX 6

/* The groups of an object of class cls and key type kt. Errors:
 * TK_ERR_ATTR_VALUE_INVALID (a class, key type or certificate type this
 * token does not hold). */
static int
groups_of(CK_OBJECT_CLASS cls, CK_KEY_TYPE kt, const struct rule *g[GROUPS_MAX])
{
	size_t n = 0;

	memset(g, 0, GROUPS_MAX * sizeof(g[0]));
	g[n++] = common;
	g[n++] = storage;
	switch (cls) {
	case CKO_DATA:
		g[n++] = data;
		return TK_OK;
	case CKO_CERTIFICATE:
		g[n++] = cert;
		g[n++] = x509;
		return TK_OK;
	case CKO_PUBLIC_KEY:
	case CKO_PRIVATE_KEY:
		g[n++] = key;
		g[n++] = cls == CKO_PUBLIC_KEY ? pub : priv;
		if (kt == CKK_RSA)
			g[n++] = cls == CKO_PUBLIC_KEY ? rsa_pub : rsa_priv;
		else if (kt == CKK_EC || kt == CKK_EC_EDWARDS)
			g[n++] = cls == CKO_PUBLIC_KEY ? ec_pub : ec_priv;
		else
			return TK_ERR_ATTR_VALUE_INVALID;
		return TK_OK;
	case CKO_SECRET_KEY:
		g[n++] = key;
		g[n++] = secret;
		if (kt == CKK_AES)
			g[n++] = aes;
		else if (kt == CKK_GENERIC_SECRET)
			g[n++] = generic;
		else
			return TK_ERR_ATTR_VALUE_INVALID;
		return TK_OK;
	default:
		return TK_ERR_ATTR_VALUE_INVALID;
	}
}

/* The rule for t among the groups (the later group wins: a key type's
 * CKA_VALUE over a class's), or NULL. */
static const struct rule *
rule_of(const struct rule *const g[GROUPS_MAX], CK_ATTRIBUTE_TYPE t)
{
	const struct rule *hit = NULL;

	for (size_t i = 0; i < GROUPS_MAX && g[i] != NULL; i++)
		for (const struct rule *r = g[i]; r->kind != 0; r++)
			if (r->type == t)
				hit = r;
	return hit;
}

static bool
date_ok(const uint8_t *p, size_t len)
{
	if (len == 0)
		return true;
	if (len != sizeof(CK_DATE))
		return false;
	for (size_t i = 0; i < len; i++)
		if (p[i] < '0' || p[i] > '9')
			return false;
	return true;
}

static int
value_ok(const struct rule *r, const CK_ATTRIBUTE *a)
{
	const uint8_t *p = a->pValue;
	size_t len = a->ulValueLen;

	if (p == NULL && len > 0)
		return TK_ERR_ATTR_VALUE_INVALID;
	if (len > TK_SOFT_ATTR_MAX)
		return TK_ERR_ATTR_VALUE_INVALID;
	switch (r->kind) {
	case K_BOOL:
		return len == sizeof(CK_BBOOL) && (p[0] == CK_TRUE || p[0] == CK_FALSE)
		               ? TK_OK
		               : TK_ERR_ATTR_VALUE_INVALID;
	case K_ULONG:
		return len == sizeof(CK_ULONG) ? TK_OK : TK_ERR_ATTR_VALUE_INVALID;
	case K_DATE:
		return date_ok(p, len) ? TK_OK : TK_ERR_ATTR_VALUE_INVALID;
	case K_MECHS:
		return len % sizeof(CK_MECHANISM_TYPE) == 0 ? TK_OK : TK_ERR_ATTR_VALUE_INVALID;
	default:
		return TK_OK;
	}
}

/* The flags that forbid giving an attribute to a function, and that
 * require it. */
static unsigned
forbidden_for(int how)
{
	switch (how) {
	case TK_OBJ_CREATE:
		return F_NO_CREATE;
	case TK_OBJ_GENERATE:
	case TK_OBJ_DERIVE:
		return F_NO_GEN;
	default:
		return F_NO_UNWRAP;
	}
}

static unsigned
required_for(int how)
{
	switch (how) {
	case TK_OBJ_CREATE:
		return F_REQ_CREATE;
	case TK_OBJ_GENERATE:
		return F_REQ_GEN;
	case TK_OBJ_UNWRAP:
		return F_REQ_UNWRAP;
	default:
		return 0;
	}
}

/* A capability's default for this key (D_CAP). */
static bool
cap_default(CK_OBJECT_CLASS cls, CK_KEY_TYPE kt, CK_ATTRIBUTE_TYPE t)
{
	switch (cls) {
	case CKO_PRIVATE_KEY:
		return t == CKA_SIGN || (t == CKA_DECRYPT && kt == CKK_RSA);
	case CKO_PUBLIC_KEY:
		return t == CKA_VERIFY || (t == CKA_ENCRYPT && kt == CKK_RSA);
	default: /* secret keys */
		if (kt == CKK_AES)
			return t == CKA_ENCRYPT || t == CKA_DECRYPT || t == CKA_WRAP ||
			       t == CKA_UNWRAP;
		return t == CKA_SIGN || t == CKA_VERIFY;
	}
}

static int
set_default(tk_attrs_t *l, const struct rule *r, CK_OBJECT_CLASS cls, CK_KEY_TYPE kt)
{
	switch (r->dflt) {
	case D_FALSE:
		return tk_attrs_set_bool(l, r->type, false);
	case D_TRUE:
		return tk_attrs_set_bool(l, r->type, true);
	case D_EMPTY:
		return tk_attrs_set(l, r->type, NULL, 0);
	case D_ZERO:
		return tk_attrs_set_ulong(l, r->type, 0);
	case D_SHA1:
		return tk_attrs_set_ulong(l, r->type, CKM_SHA_1);
	case D_PRIVATE:
		return tk_attrs_set_bool(l, r->type,
		                         cls == CKO_PRIVATE_KEY || cls == CKO_SECRET_KEY);
	case D_CAP:
		return tk_attrs_set_bool(l, r->type, cap_default(cls, kt, r->type));
	default:
		return TK_OK;
	}
}

/* The class and key type of a new object: from fixed, else the
 * template (each must agree with the other). */
static int
pick_ulong(CK_ATTRIBUTE_TYPE t, const CK_ATTRIBUTE *tpl, CK_ULONG n, const tk_attrs_t *fixed,
           CK_ULONG *v, bool *have)
{
	bool from_fixed = tk_attrs_ulong(fixed, t, v);

	*have = from_fixed;
	for (CK_ULONG i = 0; i < n; i++) {
		CK_ULONG u;

		if (tpl[i].type != t)
			continue;
		if (tpl[i].pValue == NULL || tpl[i].ulValueLen != sizeof(CK_ULONG))
			return TK_ERR_ATTR_VALUE_INVALID;
		memcpy(&u, tpl[i].pValue, sizeof(u));
		if (*have && u != *v)
			return TK_ERR_TEMPLATE_INCONSISTENT;
		*v = u;
		*have = true;
	}
	return TK_OK;
}

int
tk_obj_template(int how, const CK_ATTRIBUTE *tpl, CK_ULONG n, const tk_attrs_t *fixed,
                CK_MECHANISM_TYPE mech, unsigned flags, tk_attrs_t *out)
{
	const struct rule *g[GROUPS_MAX];
	tk_attrs_t none = {NULL, 0};
	CK_ULONG cls = 0, kt = CK_UNAVAILABLE_INFORMATION, ct = 0;
	unsigned forbid = forbidden_for(how), need = required_for(how);
	bool have_cls, have_kt, have_ct;
	int r;

	memset(out, 0, sizeof(*out));
	if (fixed == NULL)
		fixed = &none;
	if (tpl == NULL && n > 0)
		return TK_ERR_INVALID_ARG;
	if ((r = pick_ulong(CKA_CLASS, tpl, n, fixed, &cls, &have_cls)) != TK_OK)
		return r;
	if (!have_cls)
		return TK_ERR_TEMPLATE_INCOMPLETE;
	if (cls == CKO_PUBLIC_KEY || cls == CKO_PRIVATE_KEY || cls == CKO_SECRET_KEY) {
		if ((r = pick_ulong(CKA_KEY_TYPE, tpl, n, fixed, &kt, &have_kt)) != TK_OK)
			return r;
		if (!have_kt)
			return TK_ERR_TEMPLATE_INCOMPLETE;
	}
	if ((r = groups_of(cls, kt, g)) != TK_OK)
		return r;
	if (cls == CKO_CERTIFICATE) {
		if ((r = pick_ulong(CKA_CERTIFICATE_TYPE, tpl, n, fixed, &ct, &have_ct)) != TK_OK)
			return r;
		if (!have_ct)
			return TK_ERR_TEMPLATE_INCOMPLETE;
		if (ct != CKC_X_509)
			return TK_ERR_ATTR_VALUE_INVALID;
	}
	/* the function's own attributes first: the template may only agree */
	if ((r = tk_attrs_dup(fixed, out)) != TK_OK)
		return r;
	for (CK_ULONG i = 0; i < n; i++) {
		const CK_ATTRIBUTE *a = &tpl[i];
		const struct rule *rl = rule_of(g, a->type);
		const tk_attr_t *prev;

		if (rl == NULL || (rl->flags & (F_UNSUPPORTED | F_EXTRA))) {
			r = TK_ERR_ATTR_TYPE_INVALID;
			goto fail;
		}
		if ((r = value_ok(rl, a)) != TK_OK)
			goto fail;
		prev = tk_attrs_get(out, a->type);
		if (prev != NULL) {
			/* given twice (or also by the function): the same value only */
			if (prev->len != a->ulValueLen ||
			    (a->ulValueLen > 0 &&
			     memcmp(prev->val, a->pValue, a->ulValueLen) != 0)) {
				r = TK_ERR_TEMPLATE_INCONSISTENT;
				goto fail;
			}
			continue;
		}
		if (rl->flags & forbid) {
			r = TK_ERR_ATTR_READ_ONLY;
			goto fail;
		}
		if ((rl->flags & F_SO_TRUE) && !(flags & TK_OBJ_SO) &&
		    ((const uint8_t *)a->pValue)[0] != CK_FALSE) {
			r = TK_ERR_ATTR_READ_ONLY;
			goto fail;
		}
		if ((r = tk_attrs_set(out, a->type, a->pValue, a->ulValueLen)) != TK_OK)
			goto fail;
	}
	/* what the function needs, then the defaults */
	for (size_t k = 0; k < GROUPS_MAX && g[k] != NULL; k++) {
		for (const struct rule *rl = g[k]; rl->kind != 0; rl++) {
			if (tk_attrs_get(out, rl->type) != NULL || rule_of(g, rl->type) != rl)
				continue;
			if (rl->flags & need) {
				r = TK_ERR_TEMPLATE_INCOMPLETE;
				goto fail;
			}
			if ((r = set_default(out, rl, cls, kt)) != TK_OK)
				goto fail;
		}
	}
	/* what the token says of a key */
	if (cls == CKO_PUBLIC_KEY || cls == CKO_PRIVATE_KEY || cls == CKO_SECRET_KEY) {
		r = tk_attrs_set_bool(out, CKA_LOCAL, how == TK_OBJ_GENERATE);
		if (r == TK_OK)
			r = tk_attrs_set_ulong(out, CKA_KEY_GEN_MECHANISM,
			                       how == TK_OBJ_GENERATE ? mech
			                                              : CK_UNAVAILABLE_INFORMATION);
		if (r == TK_OK && cls != CKO_PUBLIC_KEY && how != TK_OBJ_DERIVE) {
			/* only a key made here has always been sensitive (never
			 * extractable): one given to C_CreateObject was in the
			 * caller's hands, in the clear */
			bool fresh = how == TK_OBJ_GENERATE;

			r = tk_attrs_set_bool(out, CKA_ALWAYS_SENSITIVE,
			                      fresh && tk_attrs_bool(out, CKA_SENSITIVE));
			if (r == TK_OK)
				r = tk_attrs_set_bool(out, CKA_NEVER_EXTRACTABLE,
				                      fresh &&
				                              !tk_attrs_bool(out, CKA_EXTRACTABLE));
		}
		if (r != TK_OK)
			goto fail;
	}
	return TK_OK;
fail:
	tk_attrs_clear(out);
	return r;
}

/* The groups of an existing object. */
static int
groups_of_obj(const tk_attrs_t *obj, const struct rule *g[GROUPS_MAX])
{
	return groups_of(tk_obj_class(obj), tk_obj_key_type(obj), g);
}

/* One change of an existing object's attribute (C_SetAttributeValue, or
 * C_CopyObject's template with copy). */
static int
change_one(const struct rule *const g[GROUPS_MAX], const tk_attrs_t *cur, const CK_ATTRIBUTE *a,
           bool copy, unsigned flags, tk_attrs_t *out)
{
	const struct rule *rl = rule_of(g, a->type);
	const tk_attr_t *now;
	bool to_true;
	int r;

	if (rl == NULL || (rl->flags & F_UNSUPPORTED))
		return TK_ERR_ATTR_TYPE_INVALID;
	if ((r = value_ok(rl, a)) != TK_OK)
		return r;
	now = tk_attrs_get(cur, a->type);
	/* the value it has already: no change */
	if (now != NULL && now->len == a->ulValueLen &&
	    (a->ulValueLen == 0 || memcmp(now->val, a->pValue, a->ulValueLen) == 0))
		return TK_OK;
	if (!(rl->flags & F_MODIFIABLE) && !(copy && (rl->flags & F_COPY)))
		return TK_ERR_ATTR_READ_ONLY;
	if (rl->kind == K_BOOL) {
		to_true = ((const uint8_t *)a->pValue)[0] != CK_FALSE;
		if ((rl->flags & F_LATCH_TRUE) && !to_true)
			return TK_ERR_ATTR_READ_ONLY;
		if ((rl->flags & F_LATCH_FALSE) && to_true)
			return TK_ERR_ATTR_READ_ONLY;
		if ((rl->flags & F_SO_TRUE) && to_true && !(flags & TK_OBJ_SO))
			return TK_ERR_ATTR_READ_ONLY;
	}
	return tk_attrs_set(out, a->type, a->pValue, a->ulValueLen);
}

static int
change(const tk_attrs_t *cur, const CK_ATTRIBUTE *tpl, CK_ULONG n, bool copy, unsigned flags,
       tk_attrs_t *out)
{
	const struct rule *g[GROUPS_MAX];
	int r;

	memset(out, 0, sizeof(*out));
	if (tpl == NULL && n > 0)
		return TK_ERR_INVALID_ARG;
	if ((r = groups_of_obj(cur, g)) != TK_OK)
		return r;
	if ((r = tk_attrs_dup(cur, out)) != TK_OK)
		return r;
	for (CK_ULONG i = 0; i < n && r == TK_OK; i++) {
		/* twice in one template: the same value only */
		for (CK_ULONG j = 0; j < i && r == TK_OK; j++)
			if (tpl[j].type == tpl[i].type &&
			    (tpl[j].ulValueLen != tpl[i].ulValueLen ||
			     (tpl[i].ulValueLen > 0 && tpl[i].pValue != NULL &&
			      tpl[j].pValue != NULL &&
			      memcmp(tpl[j].pValue, tpl[i].pValue, tpl[i].ulValueLen) != 0)))
				r = TK_ERR_TEMPLATE_INCONSISTENT;
		if (r == TK_OK)
			r = change_one(g, cur, &tpl[i], copy, flags, out);
	}
	if (r != TK_OK)
		tk_attrs_clear(out);
	return r;
}

int
tk_obj_copy(const tk_attrs_t *src, const CK_ATTRIBUTE *tpl, CK_ULONG n, unsigned flags,
            tk_attrs_t *out)
{
	memset(out, 0, sizeof(*out));
	if (!tk_attrs_bool(src, CKA_COPYABLE))
		return TK_ERR_ACTION_PROHIBITED;
	return change(src, tpl, n, true, flags, out);
}

int
tk_obj_set(const tk_attrs_t *cur, const CK_ATTRIBUTE *tpl, CK_ULONG n, unsigned flags,
           tk_attrs_t *out)
{
	memset(out, 0, sizeof(*out));
	if (!tk_attrs_bool(cur, CKA_MODIFIABLE))
		return TK_ERR_ACTION_PROHIBITED;
	return change(cur, tpl, n, false, flags, out);
}

int
tk_obj_attr_kind(const tk_attrs_t *obj, CK_ATTRIBUTE_TYPE t)
{
	const struct rule *g[GROUPS_MAX], *rl;

	if (groups_of_obj(obj, g) != TK_OK || (rl = rule_of(g, t)) == NULL ||
	    (rl->flags & F_UNSUPPORTED))
		return TK_OBJ_ATTR_NONE;
	if (rl->flags & F_SENSITIVE)
		return TK_OBJ_ATTR_SECRET;
	if (rl->flags & F_EXTRA)
		return TK_OBJ_ATTR_DERIVED;
	return TK_OBJ_ATTR_PLAIN;
}

bool
tk_obj_revealable(const tk_attrs_t *obj)
{
	return !tk_attrs_bool(obj, CKA_SENSITIVE) && tk_attrs_bool(obj, CKA_EXTRACTABLE);
}

CK_OBJECT_CLASS
tk_obj_class(const tk_attrs_t *obj)
{
	CK_ULONG v = CK_UNAVAILABLE_INFORMATION;

	(void)tk_attrs_ulong(obj, CKA_CLASS, &v);
	return v;
}

CK_KEY_TYPE
tk_obj_key_type(const tk_attrs_t *obj)
{
	CK_ULONG v = CK_UNAVAILABLE_INFORMATION;

	(void)tk_attrs_ulong(obj, CKA_KEY_TYPE, &v);
	return v;
}

int
tk_obj_attr_form(CK_ATTRIBUTE_TYPE t)
{
	static const struct rule *const all[] = {common,   storage, data,    cert,   x509,
	                                         key,      pub,     priv,    secret, rsa_pub,
	                                         rsa_priv, ec_pub,  ec_priv, aes,    generic};

	for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++)
		for (const struct rule *r = all[i]; r->kind != 0; r++)
			if (r->type == t)
				return r->kind == K_ULONG   ? TK_OBJ_FORM_ULONG
				       : r->kind == K_MECHS ? TK_OBJ_FORM_ULONGS
				                            : TK_OBJ_FORM_BYTES;
	return TK_OBJ_FORM_BYTES;
}
