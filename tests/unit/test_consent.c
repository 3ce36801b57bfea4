/* The consent store (include/tokenkit/consent.h, core/consent.c): decisions
 * put, read, replaced, listed oldest first and reset by program, token
 * serial, token label or all; damaged files skipped with a warning naming
 * them; unsafe directories and invalid fields refused; the record format
 * and file names as core/consent_priv.h describes them (the file name is
 * computed here from the description, not by the code under test). */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include <openssl/evp.h>

#include <tokenkit/consent.h>
#include <tokenkit/err.h>
#include <tokenkit/log.h>

#include "consent_priv.h"

struct fx {
	char base[64];
	char store[128];
	char path[4096];
	tk_consent_t *c;
};

/* ---- warnings ---------------------------------------------------------------- */

static char warned[8192];
static unsigned nwarned;

static void
sink(void *ctx, int level, const char *msg)
{
	(void)ctx;
	if (level > TK_LOG_WARN)
		return;
	nwarned++;
	if (strlen(warned) + strlen(msg) + 2 < sizeof(warned)) {
		strcat(warned, msg);
		strcat(warned, "\n");
	}
}

static void
warnings_reset(void)
{
	warned[0] = '\0';
	nwarned = 0;
}

/* ---- fixture -------------------------------------------------------------------- */

static int
setup(void **state)
{
	static struct fx f;

	memset(&f, 0, sizeof(f));
	snprintf(f.base, sizeof(f.base), "/tmp/tk-test-consent-XXXXXX");
	if (mkdtemp(f.base) == NULL)
		return -1;
	/* a missing parent is made too */
	snprintf(f.store, sizeof(f.store), "%s/state/consent", f.base);
	if (tk_consent_open(f.store, &f.c) != TK_OK)
		return -1;
	tk_log_set_level(TK_LOG_WARN);
	tk_log_set_sink(sink, NULL);
	warnings_reset();
	*state = &f;
	return 0;
}

static int
teardown(void **state)
{
	struct fx *f = *state;
	char cmd[256];

	tk_log_set_sink(NULL, NULL);
	tk_consent_free(&f->c);
	snprintf(cmd, sizeof(cmd), "chmod -R u+rwx %s; rm -rf %s", f->base, f->base);
	return system(cmd) == 0 ? 0 : -1;
}

static const char *
in_store(struct fx *f, const char *name)
{
	snprintf(f->path, sizeof(f->path), "%s/%s", f->store, name);
	return f->path;
}

static void
write_bytes(const char *path, const void *p, size_t n)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);

	assert_true(fd >= 0);
	assert_int_equal(write(fd, p, n), (ssize_t)n);
	assert_int_equal(close(fd), 0);
}

static size_t
count_files(const char *dir)
{
	char cmd[256];
	FILE *p;
	size_t n = 0;
	int ch;

	snprintf(cmd, sizeof(cmd), "ls -A %s", dir);
	assert_non_null(p = popen(cmd, "r"));
	while ((ch = fgetc(p)) != EOF)
		n += ch == '\n';
	pclose(p);
	return n;
}

static tk_consent_rec_t *
mkrec(const char *program, uint32_t uid, const char *serial, const char *label, const char *key_id,
      int decision, uint64_t time_us)
{
	static tk_consent_rec_t recs[4];
	static unsigned next;
	tk_consent_rec_t *r = &recs[next++ % 4];

	memset(r, 0, sizeof(*r));
	snprintf(r->program, sizeof(r->program), "%s", program);
	r->uid = uid;
	snprintf(r->token_serial, sizeof(r->token_serial), "%s", serial);
	snprintf(r->token_label, sizeof(r->token_label), "%s", label);
	snprintf(r->key_id, sizeof(r->key_id), "%s", key_id);
	snprintf(r->key_label, sizeof(r->key_label), "key %s", key_id);
	r->decision = decision;
	r->time_us = time_us;
	return r;
}

/* The file name as consent_priv.h describes it, computed here. */
static void
expected_name(const char *program, uint32_t uid, const char *serial, const char *key_id,
              char out[65])
{
	char buf[8192];
	uint8_t md[32];
	unsigned int ml = 0;
	int n = snprintf(buf, sizeof(buf), "%s%c%u%c%s%c%s", program, 0, (unsigned)uid, 0, serial,
	                 0, key_id);

	assert_true(n > 0);
	assert_int_equal(EVP_Digest(buf, (size_t)n, md, &ml, EVP_sha256(), NULL), 1);
	assert_int_equal(ml, 32);
	for (int i = 0; i < 32; i++)
		snprintf(out + 2 * i, 3, "%02x", md[i]);
}

/* ---- tests ---------------------------------------------------------------------- */

static void
test_put_get(void **state)
{
	struct fx *f = *state;
	tk_consent_rec_t *in = mkrec("/usr/bin/ssh", 1000, "0123abcd", "PIV_II", "01",
	                             TK_CONSENT_ALWAYS, 1700000000123456ull);
	tk_consent_rec_t got;
	char name[65];
	struct stat st;

	assert_int_equal(tk_consent_get(f->c, "/usr/bin/ssh", 1000, "0123abcd", "01", &got),
	                 TK_ERR_NOT_FOUND);
	assert_int_equal(tk_consent_put(f->c, in), TK_OK);
	memset(&got, 0x55, sizeof(got));
	assert_int_equal(tk_consent_get(f->c, "/usr/bin/ssh", 1000, "0123abcd", "01", &got), TK_OK);
	assert_string_equal(got.program, "/usr/bin/ssh");
	assert_int_equal(got.uid, 1000);
	assert_string_equal(got.token_serial, "0123abcd");
	assert_string_equal(got.token_label, "PIV_II");
	assert_string_equal(got.key_id, "01");
	assert_string_equal(got.key_label, "key 01");
	assert_int_equal(got.decision, TK_CONSENT_ALWAYS);
	assert_true(got.time_us == 1700000000123456ull);

	/* each name field tells decisions apart */
	assert_int_equal(tk_consent_get(f->c, "/usr/bin/ssh", 1001, "0123abcd", "01", &got),
	                 TK_ERR_NOT_FOUND);
	assert_int_equal(got.decision, TK_CONSENT_NONE);
	assert_int_equal(tk_consent_get(f->c, "/usr/bin/scp", 1000, "0123abcd", "01", &got),
	                 TK_ERR_NOT_FOUND);
	assert_int_equal(tk_consent_get(f->c, "/usr/bin/ssh", 1000, "0123abce", "01", &got),
	                 TK_ERR_NOT_FOUND);
	assert_int_equal(tk_consent_get(f->c, "/usr/bin/ssh", 1000, "0123abcd", "02", &got),
	                 TK_ERR_NOT_FOUND);

	/* the file: named by the hash, private, in a private directory */
	expected_name("/usr/bin/ssh", 1000, "0123abcd", "01", name);
	assert_int_equal(stat(in_store(f, name), &st), 0);
	assert_true(S_ISREG(st.st_mode));
	assert_int_equal(st.st_mode & 0777, 0600);
	assert_int_equal(stat(f->store, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0700);
	assert_string_equal(tk_consent_path(f->c), f->store);
	assert_int_equal(count_files(f->store), 1);
}

static uint64_t
realtime_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static void
test_time_now(void **state)
{
	struct fx *f = *state;
	/* CLOCK_REALTIME, as the store: time() reads the coarse clock, which
	 * can still show the last second after the store's clock passed it (CI
	 * failed on "after" once) */
	uint64_t before = realtime_us(), after;
	tk_consent_rec_t got;

	assert_int_equal(
	        tk_consent_put(f->c, mkrec("/bin/a", 0, "S", "", "ab", TK_CONSENT_ONCE, 0)), TK_OK);
	after = realtime_us();
	assert_int_equal(tk_consent_get(f->c, "/bin/a", 0, "S", "ab", &got), TK_OK);
	assert_true(got.time_us >= before && got.time_us <= after);
	assert_int_equal(got.decision, TK_CONSENT_ONCE);
	assert_string_equal(got.token_label, "");
}

static void
test_replace(void **state)
{
	struct fx *f = *state;
	tk_consent_rec_t got, *recs = NULL;
	size_t n = 0;

	assert_int_equal(tk_consent_put(f->c, mkrec("/usr/bin/ssh", 1000, "S1", "Old label", "01",
	                                            TK_CONSENT_DENY, 100)),
	                 TK_OK);
	assert_int_equal(tk_consent_put(f->c, mkrec("/usr/bin/ssh", 1000, "S1", "New label", "01",
	                                            TK_CONSENT_ALWAYS, 200)),
	                 TK_OK);
	assert_int_equal(tk_consent_get(f->c, "/usr/bin/ssh", 1000, "S1", "01", &got), TK_OK);
	assert_int_equal(got.decision, TK_CONSENT_ALWAYS);
	assert_string_equal(got.token_label, "New label");
	assert_true(got.time_us == 200);
	assert_int_equal(tk_consent_list(f->c, &recs, &n), TK_OK);
	assert_int_equal(n, 1);
	assert_int_equal(recs[0].decision, TK_CONSENT_ALWAYS);
	tk_consent_list_free(&recs);
	assert_null(recs);
	/* no temporary file left behind */
	assert_int_equal(count_files(f->store), 1);
}

static void
test_list_order(void **state)
{
	struct fx *f = *state;
	tk_consent_rec_t *recs = NULL;
	size_t n = 99;

	assert_int_equal(tk_consent_list(f->c, &recs, &n), TK_OK);
	assert_int_equal(n, 0);
	assert_null(recs);
	assert_int_equal(
	        tk_consent_put(f->c, mkrec("/bin/c", 1, "S", "L", "0c", TK_CONSENT_DENY, 3000000)),
	        TK_OK);
	assert_int_equal(tk_consent_put(f->c, mkrec("/bin/a", 1, "S", "L", "0a", TK_CONSENT_ALWAYS,
	                                            1000000)),
	                 TK_OK);
	assert_int_equal(
	        tk_consent_put(f->c, mkrec("/bin/b", 1, "S", "L", "0b", TK_CONSENT_ONCE, 2000000)),
	        TK_OK);
	assert_int_equal(tk_consent_list(f->c, &recs, &n), TK_OK);
	assert_int_equal(n, 3);
	assert_string_equal(recs[0].program, "/bin/a");
	assert_string_equal(recs[1].program, "/bin/b");
	assert_string_equal(recs[2].program, "/bin/c");
	assert_int_equal(recs[0].decision, TK_CONSENT_ALWAYS);
	assert_int_equal(recs[1].decision, TK_CONSENT_ONCE);
	assert_int_equal(recs[2].decision, TK_CONSENT_DENY);
	assert_string_equal(recs[2].key_id, "0c");
	tk_consent_list_free(&recs);
	tk_consent_list_free(NULL);
	assert_int_equal(nwarned, 0);
}

/* Four decisions: two programs, two tokens (serial S1 "Work", S2 "Home"). */
static void
put_four(struct fx *f)
{
	assert_int_equal(tk_consent_put(f->c, mkrec("/usr/bin/ssh", 1000, "S1", "Work", "01",
	                                            TK_CONSENT_ALWAYS, 1)),
	                 TK_OK);
	assert_int_equal(tk_consent_put(f->c, mkrec("/usr/bin/ssh", 1000, "S2", "Home", "01",
	                                            TK_CONSENT_DENY, 2)),
	                 TK_OK);
	assert_int_equal(tk_consent_put(f->c, mkrec("/usr/bin/firefox", 1000, "S1", "Work", "02",
	                                            TK_CONSENT_DENY, 3)),
	                 TK_OK);
	assert_int_equal(tk_consent_put(f->c, mkrec("/usr/bin/firefox", 1000, "S2", "Home", "02",
	                                            TK_CONSENT_ONCE, 4)),
	                 TK_OK);
}

static void
test_reset_program(void **state)
{
	struct fx *f = *state;
	tk_consent_rec_t *recs = NULL, got;
	size_t n = 0, removed = 99;

	put_four(f);
	/* exact match only: no prefix, no base name */
	assert_int_equal(tk_consent_reset(f->c, "/usr/bin/ss", NULL, &removed), TK_OK);
	assert_int_equal(removed, 0);
	assert_int_equal(tk_consent_reset(f->c, "ssh", NULL, &removed), TK_OK);
	assert_int_equal(removed, 0);
	assert_int_equal(tk_consent_reset(f->c, "/usr/bin/ssh", NULL, &removed), TK_OK);
	assert_int_equal(removed, 2);
	assert_int_equal(tk_consent_get(f->c, "/usr/bin/ssh", 1000, "S2", "01", &got),
	                 TK_ERR_NOT_FOUND);
	assert_int_equal(tk_consent_list(f->c, &recs, &n), TK_OK);
	assert_int_equal(n, 2);
	assert_string_equal(recs[0].program, "/usr/bin/firefox");
	assert_string_equal(recs[1].program, "/usr/bin/firefox");
	tk_consent_list_free(&recs);
	/* program and token together */
	assert_int_equal(tk_consent_reset(f->c, "/usr/bin/firefox", "Home", NULL), TK_OK);
	assert_int_equal(tk_consent_list(f->c, &recs, &n), TK_OK);
	assert_int_equal(n, 1);
	assert_string_equal(recs[0].token_serial, "S1");
	tk_consent_list_free(&recs);
}

static void
test_reset_serial(void **state)
{
	struct fx *f = *state;
	tk_consent_rec_t *recs = NULL;
	size_t n = 0, removed = 0;

	put_four(f);
	assert_int_equal(tk_consent_reset(f->c, NULL, "S", &removed), TK_OK);
	assert_int_equal(removed, 0);
	assert_int_equal(tk_consent_reset(f->c, NULL, "S2", &removed), TK_OK);
	assert_int_equal(removed, 2);
	assert_int_equal(tk_consent_list(f->c, &recs, &n), TK_OK);
	assert_int_equal(n, 2);
	assert_string_equal(recs[0].token_serial, "S1");
	assert_string_equal(recs[1].token_serial, "S1");
	tk_consent_list_free(&recs);
}

static void
test_reset_label(void **state)
{
	struct fx *f = *state;
	tk_consent_rec_t *recs = NULL;
	size_t n = 0, removed = 0;

	put_four(f);
	assert_int_equal(tk_consent_reset(f->c, NULL, "work", &removed), TK_OK);
	assert_int_equal(removed, 0);
	assert_int_equal(tk_consent_reset(f->c, NULL, "Work", &removed), TK_OK);
	assert_int_equal(removed, 2);
	assert_int_equal(tk_consent_list(f->c, &recs, &n), TK_OK);
	assert_int_equal(n, 2);
	assert_string_equal(recs[0].token_label, "Home");
	assert_string_equal(recs[1].token_label, "Home");
	tk_consent_list_free(&recs);
}

static void
test_reset_all(void **state)
{
	struct fx *f = *state;
	tk_consent_rec_t *recs = NULL;
	size_t n = 0, removed = 0;

	put_four(f);
	write_bytes(in_store(f, "README"), "not a record", 12);
	assert_int_equal(tk_consent_reset(f->c, NULL, NULL, &removed), TK_OK);
	assert_int_equal(removed, 4);
	assert_int_equal(tk_consent_list(f->c, &recs, &n), TK_OK);
	assert_int_equal(n, 0);
	assert_null(recs);
	/* what is not a record's name is not ours to remove */
	assert_int_equal(count_files(f->store), 1);
	assert_int_equal(tk_consent_reset(f->c, NULL, NULL, &removed), TK_OK);
	assert_int_equal(removed, 0);
}

/* Damaged files: skipped with a warning naming each, the rest listed; a
 * reset of one program leaves them, a reset of all removes them. */
static void
test_corrupt_skipped(void **state)
{
	struct fx *f = *state;
	tk_consent_rec_t *good1 = mkrec("/bin/good1", 5, "S", "L", "aa", TK_CONSENT_ALWAYS, 10);
	tk_consent_rec_t *good2 = mkrec("/bin/good2", 5, "S", "L", "bb", TK_CONSENT_DENY, 20);
	tk_consent_rec_t *trunc = mkrec("/bin/trunc", 5, "S", "L", "cc", TK_CONSENT_DENY, 30);
	tk_consent_rec_t *ver = mkrec("/bin/version", 5, "S", "L", "dd", TK_CONSENT_DENY, 40);
	tk_consent_rec_t *recs = NULL, got;
	char garbage[65], huge[65], moved[65], tname[65], vname[65], g1name[65];
	static uint8_t big[TK_CONSENT_RECORD_MAX + 1];
	uint8_t *enc = NULL;
	size_t el = 0, n = 0, removed = 0;

	assert_int_equal(tk_consent_put(f->c, good1), TK_OK);
	assert_int_equal(tk_consent_put(f->c, good2), TK_OK);
	/* not CBOR at all */
	memset(garbage, 'e', 64);
	garbage[64] = '\0';
	write_bytes(in_store(f, garbage), "\xff\x00garbage", 9);
	/* a record cut short, under its own name */
	assert_int_equal(tk_consent_rec_encode(trunc, &enc, &el), TK_OK);
	expected_name(trunc->program, trunc->uid, trunc->token_serial, trunc->key_id, tname);
	write_bytes(in_store(f, tname), enc, el - 3);
	free(enc);
	/* a record of version 2, under its own name */
	assert_int_equal(tk_consent_rec_encode(ver, &enc, &el), TK_OK);
	assert_int_equal(enc[9], 0x01);
	enc[9] = 0x02;
	expected_name(ver->program, ver->uid, ver->token_serial, ver->key_id, vname);
	write_bytes(in_store(f, vname), enc, el);
	free(enc);
	/* larger than any record */
	memset(huge, 'f', 64);
	huge[64] = '\0';
	memset(big, 0xa0, sizeof(big));
	write_bytes(in_store(f, huge), big, sizeof(big));
	/* a valid record under another decision's name */
	assert_int_equal(tk_consent_rec_encode(good1, &enc, &el), TK_OK);
	memset(moved, '1', 64);
	moved[64] = '\0';
	write_bytes(in_store(f, moved), enc, el);
	free(enc);
	/* an interrupted write's temporary file: not a record, not a warning */
	write_bytes(in_store(f, ".0000.tmp-abc"), "x", 1);

	warnings_reset();
	assert_int_equal(tk_consent_list(f->c, &recs, &n), TK_OK);
	assert_int_equal(n, 2);
	assert_string_equal(recs[0].program, "/bin/good1");
	assert_string_equal(recs[1].program, "/bin/good2");
	tk_consent_list_free(&recs);
	assert_int_equal(nwarned, 5);
	assert_non_null(strstr(warned, garbage));
	assert_non_null(strstr(warned, tname));
	assert_non_null(strstr(warned, vname));
	assert_non_null(strstr(warned, "another format version"));
	assert_non_null(strstr(warned, huge));
	assert_non_null(strstr(warned, moved));
	assert_null(strstr(warned, ".tmp-"));

	/* get: the damaged decision is no decision, and says why */
	assert_int_equal(tk_consent_get(f->c, trunc->program, 5, "S", "cc", &got),
	                 TK_ERR_TRUNCATED);
	assert_int_equal(got.decision, TK_CONSENT_NONE);
	assert_int_equal(tk_consent_get(f->c, ver->program, 5, "S", "dd", &got),
	                 TK_ERR_NOT_SUPPORTED);
	/* a new decision replaces a damaged one */
	assert_int_equal(tk_consent_put(f->c, trunc), TK_OK);
	assert_int_equal(tk_consent_get(f->c, trunc->program, 5, "S", "cc", &got), TK_OK);
	assert_int_equal(got.decision, TK_CONSENT_DENY);

	assert_int_equal(tk_consent_reset(f->c, "/bin/good1", NULL, &removed), TK_OK);
	assert_int_equal(removed, 1);
	expected_name(good1->program, good1->uid, good1->token_serial, good1->key_id, g1name);
	assert_int_equal(access(in_store(f, g1name), F_OK), -1);
	assert_int_equal(access(in_store(f, garbage), F_OK), 0);
	assert_int_equal(tk_consent_reset(f->c, NULL, NULL, &removed), TK_OK);
	assert_int_equal(removed, 2); /* good2, trunc: the damaged files are not decisions */
	assert_int_equal(access(in_store(f, garbage), F_OK), -1);
	assert_int_equal(access(in_store(f, huge), F_OK), -1);
	assert_int_equal(access(in_store(f, moved), F_OK), -1);
	assert_int_equal(access(in_store(f, vname), F_OK), -1);
	assert_int_equal(count_files(f->store), 1); /* the temporary file */
}

static void
test_unsafe_dir(void **state)
{
	struct fx *f = *state;
	tk_consent_t *c = NULL;
	char dir[256], link[256];

	/* open to everyone */
	snprintf(dir, sizeof(dir), "%s/open", f->base);
	assert_int_equal(mkdir(dir, 0700), 0);
	assert_int_equal(chmod(dir, 0777), 0);
	assert_int_equal(tk_consent_open(dir, &c), TK_ERR_UNSAFE);
	assert_null(c);
	assert_non_null(strstr(warned, dir));
	/* group-readable is not private either */
	assert_int_equal(chmod(dir, 0750), 0);
	assert_int_equal(tk_consent_open(dir, &c), TK_ERR_UNSAFE);
	assert_int_equal(chmod(dir, 0700), 0);
	assert_int_equal(tk_consent_open(dir, &c), TK_OK);
	tk_consent_free(&c);
	assert_null(c);
	tk_consent_free(NULL);
	/* a symlink to a private directory */
	snprintf(link, sizeof(link), "%s/link", f->base);
	assert_int_equal(symlink(dir, link), 0);
	assert_int_equal(tk_consent_open(link, &c), TK_ERR_UNSAFE);
	assert_null(c);
	/* a file in the directory's place */
	snprintf(dir, sizeof(dir), "%s/file", f->base);
	write_bytes(dir, "x", 1);
	assert_int_equal(tk_consent_open(dir, &c), TK_ERR_UNSAFE);
	assert_int_equal(tk_consent_open("", &c), TK_ERR_INVALID_ARG);
	assert_int_equal(tk_consent_open(NULL, NULL), TK_ERR_INVALID_ARG);
}

/* A symlink planted where a decision goes is not followed. */
static void
test_planted_symlink(void **state)
{
	struct fx *f = *state;
	tk_consent_rec_t *in = mkrec("/usr/bin/ssh", 1, "S", "L", "01", TK_CONSENT_DENY, 5);
	tk_consent_rec_t got;
	char name[65], target[256];
	struct stat st;

	snprintf(target, sizeof(target), "%s/target", f->base);
	write_bytes(target, "mine", 4);
	expected_name(in->program, in->uid, in->token_serial, in->key_id, name);
	assert_int_equal(symlink(target, in_store(f, name)), 0);
	assert_int_equal(tk_consent_get(f->c, "/usr/bin/ssh", 1, "S", "01", &got), TK_ERR_UNSAFE);
	assert_int_equal(tk_consent_put(f->c, in), TK_OK);
	assert_int_equal(lstat(in_store(f, name), &st), 0);
	assert_true(S_ISREG(st.st_mode));
	assert_int_equal(stat(target, &st), 0);
	assert_int_equal(st.st_size, 4);
	assert_int_equal(tk_consent_get(f->c, "/usr/bin/ssh", 1, "S", "01", &got), TK_OK);
	assert_int_equal(got.decision, TK_CONSENT_DENY);
}

static void
test_invalid_fields(void **state)
{
	struct fx *f = *state;
	tk_consent_rec_t *r, got;
	size_t removed;

#define REFUSED(mutate)                                                                            \
	do {                                                                                       \
		r = mkrec("/usr/bin/ssh", 1, "S", "L", "01", TK_CONSENT_ALWAYS, 1);                \
		mutate;                                                                            \
		assert_int_equal(tk_consent_put(f->c, r), TK_ERR_INVALID_ARG);                     \
	} while (0)
	REFUSED(r->program[0] = '\0');
	REFUSED(snprintf(r->program, sizeof(r->program), "usr/bin/ssh"));
	REFUSED(memset(r->program, 'a', sizeof(r->program)); r->program[0] = '/');
	REFUSED(r->token_serial[0] = '\0');
	REFUSED(memset(r->token_serial, 'a', sizeof(r->token_serial)));
	REFUSED(memset(r->token_label, 'a', sizeof(r->token_label)));
	REFUSED(memset(r->key_label, 'a', sizeof(r->key_label)));
	REFUSED(r->key_id[0] = '\0');
	REFUSED(snprintf(r->key_id, sizeof(r->key_id), "0A"));
	REFUSED(snprintf(r->key_id, sizeof(r->key_id), "012"));
	REFUSED(snprintf(r->key_id, sizeof(r->key_id), "0g"));
	REFUSED(snprintf(r->key_id, sizeof(r->key_id), "01 02"));
	REFUSED(memset(r->key_id, 'a', sizeof(r->key_id)));
	REFUSED(r->decision = TK_CONSENT_NONE);
	REFUSED(r->decision = 4);
	REFUSED(r->decision = -1);
#undef REFUSED
	assert_int_equal(tk_consent_put(f->c, NULL), TK_ERR_INVALID_ARG);
	assert_int_equal(tk_consent_put(NULL, mkrec("/a", 1, "S", "", "01", TK_CONSENT_ONCE, 1)),
	                 TK_ERR_INVALID_ARG);
	assert_int_equal(count_files(f->store), 0);

	/* the longest fields are fine */
	r = mkrec("/", 0xffffffffu, "S", "", "01", TK_CONSENT_ONCE, UINT64_MAX);
	memset(r->program + 1, 'p', TK_CONSENT_PROGRAM_MAX - 1);
	r->program[TK_CONSENT_PROGRAM_MAX] = '\0';
	memset(r->token_serial, 's', TK_CONSENT_TOKEN_MAX);
	memset(r->token_label, 'l', TK_CONSENT_TOKEN_MAX);
	memset(r->key_label, 'k', TK_CONSENT_TOKEN_MAX);
	memset(r->key_id, 'f', TK_CONSENT_KEY_MAX);
	assert_int_equal(tk_consent_put(f->c, r), TK_OK);
	assert_int_equal(tk_consent_get(f->c, r->program, r->uid, r->token_serial, r->key_id, &got),
	                 TK_OK);
	assert_int_equal(memcmp(&got, r, sizeof(got)), 0);

	assert_int_equal(tk_consent_get(f->c, "ssh", 1, "S", "01", &got), TK_ERR_INVALID_ARG);
	assert_int_equal(tk_consent_get(f->c, "/bin/ssh", 1, "", "01", &got), TK_ERR_INVALID_ARG);
	assert_int_equal(tk_consent_get(f->c, "/bin/ssh", 1, "S", "0X", &got), TK_ERR_INVALID_ARG);
	assert_int_equal(tk_consent_get(f->c, NULL, 1, "S", "01", &got), TK_ERR_INVALID_ARG);
	assert_int_equal(tk_consent_get(f->c, "/bin/ssh", 1, "S", "01", NULL), TK_ERR_INVALID_ARG);
	assert_int_equal(tk_consent_reset(NULL, NULL, NULL, &removed), TK_ERR_INVALID_ARG);
	assert_int_equal(removed, 0);
}

static void
test_codec(void **state)
{
	tk_consent_rec_t *in = mkrec("/usr/bin/ssh", 1000, "0123", "PIV", "9a01", TK_CONSENT_DENY,
	                             1700000000000000ull);
	tk_consent_rec_t out;
	uint8_t *enc = NULL, *bad;
	size_t el = 0;

	(void)state;
	assert_int_equal(tk_consent_rec_encode(in, &enc, &el), TK_OK);
	/* a map of 9 pairs, "version" first, version 1 */
	assert_true(el > 10);
	assert_int_equal(enc[0], 0xa9);
	assert_int_equal(enc[1], 0x67);
	assert_memory_equal(enc + 2, "version", 7);
	assert_int_equal(enc[9], 0x01);
	assert_int_equal(tk_consent_rec_decode(enc, el, &out), TK_OK);
	assert_int_equal(memcmp(&out, in, sizeof(out)), 0);
	/* every truncation fails */
	for (size_t n = 0; n < el; n++)
		assert_int_not_equal(tk_consent_rec_decode(enc, n, &out), TK_OK);
	/* trailing bytes */
	assert_non_null(bad = malloc(el + 1));
	memcpy(bad, enc, el);
	bad[el] = 0;
	assert_int_equal(tk_consent_rec_decode(bad, el + 1, &out), TK_ERR_MALFORMED);
	assert_int_equal(out.decision, TK_CONSENT_NONE);
	/* version 0: another version */
	memcpy(bad, enc, el);
	bad[9] = 0x00;
	assert_int_equal(tk_consent_rec_decode(bad, el, &out), TK_ERR_NOT_SUPPORTED);
	/* decision 4, then 0 */
	memcpy(bad, enc, el);
	{
		uint8_t *k = memmem(bad, el, "decision", 8);

		assert_non_null(k);
		assert_int_equal(k[8], TK_CONSENT_DENY);
		k[8] = 4;
		assert_int_equal(tk_consent_rec_decode(bad, el, &out), TK_ERR_MALFORMED);
		k[8] = 0;
		assert_int_equal(tk_consent_rec_decode(bad, el, &out), TK_ERR_MALFORMED);
	}
	/* a relative program path in a record */
	memcpy(bad, enc, el);
	{
		uint8_t *p = memmem(bad, el, "/usr/bin/ssh", 12);

		assert_non_null(p);
		p[0] = 'u';
		assert_int_equal(tk_consent_rec_decode(bad, el, &out), TK_ERR_MALFORMED);
		p[0] = '\0'; /* a NUL inside a string */
		assert_int_equal(tk_consent_rec_decode(bad, el, &out), TK_ERR_MALFORMED);
	}
	free(bad);
	free(enc);
	assert_int_equal(tk_consent_rec_decode(NULL, 0, &out), TK_ERR_TRUNCATED);
	assert_int_equal(tk_consent_rec_decode((const uint8_t *)"\xa0", 1, &out), TK_ERR_MALFORMED);
	/* a head that claims more items or bytes than there are: refused
	 * before libcbor allocates for the claim */
	{
		static const uint8_t huge_array[] = {0xa1, 0x61, 'x',  0x9b, 0xff, 0xff,
		                                     0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
		static const uint8_t huge_map[] = {0xbb, 0x7f, 0xff, 0xff, 0xff,
		                                   0xff, 0xff, 0xff, 0xff};
		static const uint8_t huge_text[] = {0xa1, 0x7a, 0xff, 0xff, 0xff, 0xf0, 'a'};
		static const uint8_t indefinite[] = {0xbf, 0x61, 'x', 0x01, 0xff};

		assert_int_equal(tk_consent_rec_decode(huge_array, sizeof(huge_array), &out),
		                 TK_ERR_TRUNCATED);
		assert_int_equal(tk_consent_rec_decode(huge_map, sizeof(huge_map), &out),
		                 TK_ERR_TRUNCATED);
		assert_int_equal(tk_consent_rec_decode(huge_text, sizeof(huge_text), &out),
		                 TK_ERR_TRUNCATED);
		assert_int_equal(tk_consent_rec_decode(indefinite, sizeof(indefinite), &out),
		                 TK_ERR_MALFORMED);
	}
	/* the version in a wider integer than needed: not our encoding */
	{
		static const uint8_t wide[] = {0xa1, 0x67, 'v', 'e',  'r', 's',
		                               'i',  'o',  'n', 0x18, 0x01};

		assert_int_equal(tk_consent_rec_decode(wide, sizeof(wide), &out), TK_ERR_MALFORMED);
	}
	assert_int_equal(
	        tk_consent_rec_encode(mkrec("x", 1, "S", "", "01", TK_CONSENT_ONCE, 1), &enc, &el),
	        TK_ERR_INVALID_ARG);
	assert_null(enc);
}

static void
test_names(void **state)
{
	char name[65], want[65];

	(void)state;
	assert_string_equal(tk_consent_decision_name(TK_CONSENT_NONE), "none");
	assert_string_equal(tk_consent_decision_name(TK_CONSENT_ONCE), "once");
	assert_string_equal(tk_consent_decision_name(TK_CONSENT_ALWAYS), "always");
	assert_string_equal(tk_consent_decision_name(TK_CONSENT_DENY), "deny");
	assert_string_equal(tk_consent_decision_name(7), "?");
	assert_int_equal(tk_consent_file_name("/usr/bin/ssh", 4294967295u, "SERIAL", "0a0b", name),
	                 TK_OK);
	expected_name("/usr/bin/ssh", 4294967295u, "SERIAL", "0a0b", want);
	assert_string_equal(name, want);
	assert_true(tk_consent_name_ok(name));
	assert_false(tk_consent_name_ok("abc"));
	name[3] = 'A';
	assert_false(tk_consent_name_ok(name));
	assert_int_equal(tk_consent_file_name("rel", 0, "S", "01", name), TK_ERR_INVALID_ARG);
	assert_string_equal(name, "");
}

/* The default store: $XDG_STATE_HOME/tokenkit/consent, else
 * ~/.local/state/tokenkit/consent; a relative XDG_STATE_HOME is ignored. */
static void
test_default_path(void **state)
{
	struct fx *f = *state;
	char *old_xdg = getenv("XDG_STATE_HOME") ? strdup(getenv("XDG_STATE_HOME")) : NULL;
	char *old_home = getenv("HOME") ? strdup(getenv("HOME")) : NULL;
	char want[256], xdg[200], home[200];
	tk_consent_t *c = NULL;
	struct stat st;

	snprintf(xdg, sizeof(xdg), "%s/xdg", f->base);
	snprintf(home, sizeof(home), "%s/home", f->base);
	setenv("XDG_STATE_HOME", xdg, 1);
	setenv("HOME", home, 1);
	assert_int_equal(tk_consent_open(NULL, &c), TK_OK);
	snprintf(want, sizeof(want), "%s/tokenkit/consent", xdg);
	assert_string_equal(tk_consent_path(c), want);
	assert_int_equal(stat(want, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0700);
	tk_consent_free(&c);

	setenv("XDG_STATE_HOME", "relative/state", 1);
	assert_int_equal(tk_consent_open(NULL, &c), TK_OK);
	snprintf(want, sizeof(want), "%s/.local/state/tokenkit/consent", home);
	assert_string_equal(tk_consent_path(c), want);
	tk_consent_free(&c);
	unsetenv("XDG_STATE_HOME");
	unsetenv("HOME");
	assert_int_equal(tk_consent_open(NULL, &c), TK_ERR_NOT_FOUND);
	assert_null(c);

	if (old_xdg != NULL)
		setenv("XDG_STATE_HOME", old_xdg, 1);
	if (old_home != NULL)
		setenv("HOME", old_home, 1);
	free(old_xdg);
	free(old_home);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test_setup_teardown(test_put_get, setup, teardown),
	        cmocka_unit_test_setup_teardown(test_time_now, setup, teardown),
	        cmocka_unit_test_setup_teardown(test_replace, setup, teardown),
	        cmocka_unit_test_setup_teardown(test_list_order, setup, teardown),
	        cmocka_unit_test_setup_teardown(test_reset_program, setup, teardown),
	        cmocka_unit_test_setup_teardown(test_reset_serial, setup, teardown),
	        cmocka_unit_test_setup_teardown(test_reset_label, setup, teardown),
	        cmocka_unit_test_setup_teardown(test_reset_all, setup, teardown),
	        cmocka_unit_test_setup_teardown(test_corrupt_skipped, setup, teardown),
	        cmocka_unit_test_setup_teardown(test_unsafe_dir, setup, teardown),
	        cmocka_unit_test_setup_teardown(test_planted_symlink, setup, teardown),
	        cmocka_unit_test_setup_teardown(test_invalid_fields, setup, teardown),
	        cmocka_unit_test(test_codec),
	        cmocka_unit_test(test_names),
	        cmocka_unit_test_setup_teardown(test_default_path, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
